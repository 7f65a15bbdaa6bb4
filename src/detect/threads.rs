//! The alert lifecycle: one thread per incident or burst, `firing` → `updated` → `resolved`,
//! with cooldowns, and how severe a thread is.
//!
//! The [`super::detector`] runs its tests and hands each result here as a [`Snapshot`] (what
//! the thread would say now); this module decides whether that is news — a new thread, or
//! material growth of one — and emits the message. Time passing without fresh evidence resolves
//! threads ([`Threads::resolve_quiet`]). Threads live in ordered maps so that their messages
//! come out in the same order on every replay.

use super::cluster::{content_id, SAMPLE_IDS};
use super::{Alert, AlertKind, AlertStatus, Severity};
use crate::event::Channel;
use chrono::{DateTime, Duration, FixedOffset};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// What a thread is about: its kind, district and subject (the cluster's incident id, the
/// category, the term, or nothing for an emotion surge).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ThreadKey {
    pub kind: AlertKind,
    pub district: String,
    pub subject: String,
}

/// What a thread would say now, before the lifecycle decides whether to say it.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub severity: Severity,
    pub category: Option<String>,
    pub terms: Vec<String>,
    pub count: u64,
    pub baseline: f64,
    pub channels: Vec<Channel>,
    pub first_seen: DateTime<FixedOffset>,
    pub last_seen: DateTime<FixedOffset>,
    pub event_ids: Vec<String>,
    pub incident_id: Option<String>,
    /// The burst score (−log10 p) behind the thread.
    pub score: f64,
    /// Terms another cluster or burst of the district may share to merge into this thread
    /// (an incident's core terms, a term burst's term).
    pub merge_terms: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Thread {
    pub alert_id: String,
    /// The last message sent, to measure growth against.
    pub sent: Alert,
    /// What the thread would say now (the resolved message carries it).
    pub current: Snapshot,
    /// Event time of the last evidence; quiet since then resolves the thread.
    pub last_hot: DateTime<FixedOffset>,
}

/// The evidence behind a severity, each point raising it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Evidence {
    pub count: u64,
    pub baseline: f64,
    pub channels: usize,
    pub police: bool,
    pub min_priority: u8,
    pub emotional_share: f64,
}

/// Volume against baseline, corroborating channels, 110 involvement, urgency and emotion each
/// add points; 0–2 is info, 3–4 warning, 5 or more critical.
pub fn severity(e: &Evidence) -> Severity {
    let mut points = 0;
    points += match e.count {
        0..=9 => 0,
        10..=29 => 1,
        _ => 2,
    };
    if e.count as f64 >= 10.0 * e.baseline.max(0.1) {
        points += 1;
    }
    points += match e.channels {
        0 | 1 => 0,
        2 => 1,
        _ => 2,
    };
    points += u32::from(e.police);
    points += match e.min_priority {
        1 => 2,
        2 => 1,
        _ => 0,
    };
    points += u32::from(e.emotional_share >= 0.4);
    match points {
        0..=2 => Severity::Info,
        3..=4 => Severity::Warning,
        _ => Severity::Critical,
    }
}

pub struct Threads {
    pub active: BTreeMap<ThreadKey, Thread>,
    /// Keys that resolved recently, with the event time until which they may not fire again.
    cooldown: BTreeMap<ThreadKey, DateTime<FixedOffset>>,
    /// Last messages of resolved threads, newest last.
    pub recent: VecDeque<Alert>,
    max_recent: usize,
    update_growth: f64,
    resolve_quiet: Duration,
    cooldown_for: Duration,
    pub emitted_by_kind: [[u64; 3]; 4],
    pub fired_by_severity: [u64; 3],
}

fn kind_index(kind: AlertKind) -> usize {
    AlertKind::ALL.iter().position(|k| *k == kind).unwrap_or(0)
}

impl Threads {
    pub fn new(
        update_growth: f64,
        resolve_quiet_secs: i64,
        cooldown_secs: i64,
        max_recent: usize,
    ) -> Self {
        Threads {
            active: BTreeMap::new(),
            cooldown: BTreeMap::new(),
            recent: VecDeque::new(),
            max_recent,
            update_growth,
            resolve_quiet: Duration::seconds(resolve_quiet_secs),
            cooldown_for: Duration::seconds(cooldown_secs),
            emitted_by_kind: [[0; 3]; 4],
            fired_by_severity: [0; 3],
        }
    }

    pub fn is_active(&self, key: &ThreadKey) -> bool {
        self.active.contains_key(key)
    }

    pub fn in_cooldown(&self, key: &ThreadKey, now: DateTime<FixedOffset>) -> bool {
        self.cooldown.get(key).is_some_and(|until| *until > now)
    }

    /// The first active thread of `kind` in `district` whose merge terms satisfy `overlaps`.
    pub fn find_active(
        &self,
        kind: AlertKind,
        district: &str,
        overlaps: impl Fn(&Snapshot) -> bool,
    ) -> Option<&ThreadKey> {
        self.active
            .iter()
            .find(|(k, t)| k.kind == kind && k.district == district && overlaps(&t.current))
            .map(|(k, _)| k)
    }

    /// Records fresh evidence for `key`. Opens the thread (`firing`) when it is new and not in
    /// cooldown; sends `updated` when the count grew by the configured share, the severity
    /// rose or a channel joined; otherwise stays silent.
    pub fn evidence(
        &mut self,
        key: ThreadKey,
        snap: Snapshot,
        now: DateTime<FixedOffset>,
    ) -> Option<Alert> {
        if let Some(thread) = self.active.get_mut(&key) {
            thread.last_hot = now;
            let grown = snap.count as f64 >= thread.sent.count as f64 * (1.0 + self.update_growth)
                && snap.count >= thread.sent.count + 2;
            let worse = snap.severity > thread.sent.severity;
            let joined = snap
                .channels
                .iter()
                .any(|c| !thread.sent.channels.contains(c));
            thread.current = snap;
            if !(grown || worse || joined) {
                return None;
            }
            let alert = message(
                &thread.alert_id,
                &key,
                &thread.current,
                AlertStatus::Updated,
                now,
            );
            thread.sent = alert.clone();
            self.emitted_by_kind[kind_index(key.kind)][1] += 1;
            return Some(alert);
        }
        if self.in_cooldown(&key, now) {
            return None;
        }
        let first_id = snap.event_ids.first().map(String::as_str).unwrap_or("");
        let alert_id = content_id(
            "alert",
            &[key.kind.as_str(), &key.district, &key.subject, first_id],
        );
        let alert = message(&alert_id, &key, &snap, AlertStatus::Firing, now);
        self.emitted_by_kind[kind_index(key.kind)][0] += 1;
        self.fired_by_severity[Severity::ALL
            .iter()
            .position(|s| *s == snap.severity)
            .unwrap_or(0)] += 1;
        self.active.insert(
            key,
            Thread {
                alert_id,
                sent: alert.clone(),
                current: snap,
                last_hot: now,
            },
        );
        Some(alert)
    }

    /// Marks `key` as still hot without new figures (a burst merged into it).
    pub fn keep_hot(&mut self, key: &ThreadKey, now: DateTime<FixedOffset>) {
        if let Some(thread) = self.active.get_mut(key) {
            thread.last_hot = thread.last_hot.max(now);
        }
    }

    /// Resolves every thread with no evidence for the quiet period, in key order. `now` is a
    /// watermark: no admitted event of any district is older, so no thread resolved here could
    /// still have been fed.
    pub fn resolve_quiet(&mut self, now: DateTime<FixedOffset>) -> Vec<Alert> {
        let alerts = self.resolve_where(now, |_| true);
        self.cooldown.retain(|_, until| *until > now);
        alerts
    }

    /// Resolves the quiet threads of one district at that district's own clock. Cooldowns of
    /// other districts are left alone: their clocks may be behind this one.
    pub fn resolve_quiet_in(&mut self, district: &str, now: DateTime<FixedOffset>) -> Vec<Alert> {
        let alerts = self.resolve_where(now, |k| k.district == district);
        self.cooldown
            .retain(|k, until| k.district != district || *until > now);
        alerts
    }

    /// The resolved message says when the thread went quiet (`last_hot` + the quiet period),
    /// not when time was next seen to move: that instant, and the cooldown counted from it,
    /// are then the same whichever clock (the district's next event or a watermark) noticed.
    fn resolve_where(
        &mut self,
        now: DateTime<FixedOffset>,
        select: impl Fn(&ThreadKey) -> bool,
    ) -> Vec<Alert> {
        let quiet: Vec<ThreadKey> = self
            .active
            .iter()
            .filter(|(k, t)| select(k) && now - t.last_hot >= self.resolve_quiet)
            .map(|(k, _)| k.clone())
            .collect();
        let mut alerts = Vec::new();
        for key in quiet {
            let Some(thread) = self.active.remove(&key) else {
                continue;
            };
            let at = thread.last_hot + self.resolve_quiet;
            let alert = message(
                &thread.alert_id,
                &key,
                &thread.current,
                AlertStatus::Resolved,
                at,
            );
            self.emitted_by_kind[kind_index(key.kind)][2] += 1;
            self.cooldown.insert(key, at + self.cooldown_for);
            self.recent.push_back(alert.clone());
            while self.recent.len() > self.max_recent {
                self.recent.pop_front();
            }
            alerts.push(alert);
        }
        alerts
    }

    pub fn cooldowns(&self) -> usize {
        self.cooldown.len()
    }
}

fn message(
    alert_id: &str,
    key: &ThreadKey,
    snap: &Snapshot,
    status: AlertStatus,
    at: DateTime<FixedOffset>,
) -> Alert {
    Alert {
        alert_id: alert_id.to_string(),
        kind: key.kind,
        status,
        severity: snap.severity,
        district: Some(key.district.clone()),
        category: snap.category.clone(),
        terms: snap.terms.clone(),
        count: snap.count,
        baseline: (snap.baseline * 1000.0).round() / 1000.0,
        channels: snap.channels.clone(),
        first_seen: snap.first_seen,
        last_seen: snap.last_seen,
        at,
        event_ids: snap.event_ids.iter().take(SAMPLE_IDS).cloned().collect(),
        incident_id: snap.incident_id.clone(),
    }
}
