//! The [`Detector`]: event time, per-district state and the tests that open alert threads.
//!
//! Every admitted event updates the city's hour-of-day profile and the district's windows;
//! relevant reports also feed the term sketch and the incident clusters. Then four tests run,
//! each comparing a window count `k` with what the baseline expects (`λ`, see
//! [`super::baseline`]):
//! - **incident**: the event's cluster holds at least `incident_min_reports` recent reports and
//!   one of its core terms (the *anchor*) is improbable at that count in this district;
//! - **category burst** and **term burst**: a district × category or district × term window
//!   count well above its baseline;
//! - **emotion surge**: the district's share of angry or fearful messages well above usual.
//!
//! A burst or surge in a district with an active incident on the same thing (anchor terms,
//! category) is merged into the incident's thread instead of opening its own; two clusters of
//! one incident that fire separately are merged into one. Clustering and the incident test
//! are in `incidents.rs`, the other tests in `bursts.rs`, the lifecycle in
//! [`super::threads`], the event-time bookkeeping in `time.rs`.

use super::baseline::{HourProfile, SparseWindow};
use super::cluster::{Cluster, Member};
use super::config::DetectConfig;
use super::sketch::{CountMin, TermWindows};
use super::threads::{ThreadKey, Threads};
use super::{Alert, AlertKind, DetectInput, DetectorStats, Observation};
use chrono::{DateTime, FixedOffset};
use std::collections::{BTreeMap, BTreeSet};

/// Emotions that make a surge: the ones a dispatch centre must watch.
const ALARMED: [&str; 2] = ["angry", "fear"];
/// Additive prior (in events) on every learned count, so an unseen term is rare, not impossible.
pub(super) const PRIOR: f64 = 0.5;

/// One district × category.
#[derive(Debug, Clone, Default)]
pub(super) struct CategoryState {
    pub window: SparseWindow,
    /// Decayed count of the district's reports in this category.
    pub share: f64,
}

/// Everything detection keeps about one district.
pub(super) struct DistrictState {
    pub last_seen: DateTime<FixedOffset>,
    /// Open clusters, oldest first.
    pub clusters: Vec<Cluster>,
    pub categories: BTreeMap<String, CategoryState>,
    pub terms: TermWindows,
    /// Decayed counts of the district's events (all, and angry or fearful).
    pub events: f64,
    pub alarmed: f64,
    pub all_window: SparseWindow,
    pub alarmed_window: SparseWindow,
}

pub struct Detector {
    pub(super) config: DetectConfig,
    /// The latest event time admitted (or given to `advance_to`).
    pub(super) now: Option<DateTime<FixedOffset>>,
    pub(super) future_streak: u32,
    pub(super) decay_epoch: Option<i64>,
    pub(super) last_bucket: Option<i64>,
    pub(super) profile: HourProfile,
    pub(super) city_window: SparseWindow,
    /// Decayed counts of all events in the city, and of the angry or fearful ones.
    pub(super) city_events: f64,
    pub(super) city_alarmed: f64,
    pub(super) sketch: CountMin,
    pub(super) districts: BTreeMap<String, DistrictState>,
    pub(super) threads: Threads,
    pub(super) cluster_seq: u64,
    pub(super) events_observed: u64,
    pub(super) late_dropped: u64,
    pub(super) future_dropped: u64,
    pub(super) district_overflow: u64,
    pub(super) merged: u64,
}

impl Detector {
    pub fn new(config: DetectConfig) -> Self {
        Detector {
            profile: HourProfile::new(config.hourly_ewma_alpha),
            sketch: CountMin::new(config.sketch_width),
            threads: Threads::new(
                config.update_growth,
                config.resolve_quiet_secs,
                config.cooldown_secs,
                config.max_recent_alerts,
            ),
            config,
            now: None,
            future_streak: 0,
            decay_epoch: None,
            last_bucket: None,
            city_window: SparseWindow::default(),
            city_events: 0.0,
            city_alarmed: 0.0,
            districts: BTreeMap::new(),
            cluster_seq: 0,
            events_observed: 0,
            late_dropped: 0,
            future_dropped: 0,
            district_overflow: 0,
            merged: 0,
        }
    }

    pub fn config(&self) -> &DetectConfig {
        &self.config
    }

    /// Feeds one event in (roughly) event-time order. Returns the event's incident id (once
    /// its cluster holds two reports) and every alert message this caused, in order.
    pub fn observe(&mut self, input: &DetectInput) -> Observation {
        let at = input.occurred_at;
        let mut alerts = match self.admit(at) {
            Some(alerts) => alerts,
            None => return Observation::default(),
        };
        self.events_observed += 1;
        let bucket = self.bucket(at);
        let alarmed = input.emotion.is_some_and(|e| ALARMED.contains(&e));
        self.profile.observe(local_secs(at));
        self.city_window.add(bucket, 1);
        self.city_events += 1.0;
        self.city_alarmed += f64::from(u8::from(alarmed));
        let Some(district) = input.district.filter(|d| !d.is_empty()) else {
            return Observation {
                incident_id: None,
                alerts,
            };
        };
        if !self.ensure_district(district, at) {
            self.district_overflow += 1;
            return Observation {
                incident_id: None,
                alerts,
            };
        }
        let mut incident_id = None;
        if let Some(state) = self.districts.get_mut(district) {
            state.last_seen = state.last_seen.max(at);
            state.events += 1.0;
            state.alarmed += f64::from(u8::from(alarmed));
            state.all_window.add(bucket, 1);
            if alarmed {
                state.alarmed_window.add(bucket, 1);
            }
        }
        if input.relevant {
            let terms = self.weighted_terms(district, input);
            let member = Member {
                event_id: input.event_id,
                channel: input.channel,
                at,
                bucket,
                priority: input.priority,
                emotional: alarmed,
                category: input.category,
            };
            let counts = self.count_terms(district, &terms, bucket);
            let anchors = self.anchors(district, &counts);
            let cluster = self.cluster(district, &member, &terms, &anchors);
            let (id, incident) = self.test_incident(district, cluster);
            incident_id = id;
            alerts.extend(incident);
            alerts.extend(self.test_category(district, input, bucket));
            for (term, k) in counts {
                if k < self.config.burst_min_count {
                    continue;
                }
                alerts.extend(self.test_term(district, &term, k, input));
            }
        }
        alerts.extend(self.test_emotion(district, input));
        Observation {
            incident_id,
            alerts,
        }
    }

    /// Active (firing or updated) alerts, newest first.
    pub fn active_alerts(&self) -> Vec<Alert> {
        let mut alerts: Vec<Alert> = self
            .threads
            .active
            .values()
            .map(|t| t.sent.clone())
            .collect();
        alerts.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| a.alert_id.cmp(&b.alert_id)));
        alerts
    }

    /// The last message of recently resolved threads, newest first, at most `limit`.
    pub fn recent_alerts(&self, limit: usize) -> Vec<Alert> {
        self.threads
            .recent
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect()
    }

    pub fn stats(&self) -> DetectorStats {
        let mut stats = DetectorStats {
            emitted_by_kind: self.threads.emitted_by_kind,
            fired_by_severity: self.threads.fired_by_severity,
            events_observed: self.events_observed,
            late_dropped: self.late_dropped,
            future_dropped: self.future_dropped,
            district_overflow: self.district_overflow,
            merged_bursts: self.merged,
            districts: self.districts.len(),
            threads: self.threads.active.len() + self.threads.cooldowns(),
            recent_alerts: self.threads.recent.len(),
            ..DetectorStats::default()
        };
        for (key, thread) in &self.threads.active {
            let i = AlertKind::ALL
                .iter()
                .position(|k| *k == key.kind)
                .unwrap_or(0);
            stats.active_by_kind[i] += 1;
            stats
                .top_scores
                .push((thread.alert_id.clone(), thread.current.score));
        }
        stats.active_incidents = stats.active_by_kind[0];
        stats
            .top_scores
            .sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        stats.top_scores.truncate(5);
        for state in self.districts.values() {
            stats.open_clusters += state.clusters.len();
            stats.tracked_terms += state.terms.len();
            stats.tracked_categories += state.categories.len();
        }
        stats
    }

    // ---- state updates ----------------------------------------------------------------------

    /// The event's distinct terms (keywords first, then tokens of two or more characters), at
    /// most `max_terms_per_event`, each with its IDF weight in the district.
    fn weighted_terms(&mut self, district: &str, input: &DetectInput) -> Vec<(String, f64)> {
        let mut seen = BTreeSet::new();
        let mut terms = Vec::new();
        for term in input.keywords.iter().chain(input.tokens) {
            if terms.len() >= self.config.max_terms_per_event {
                break;
            }
            if term.chars().nth(1).is_none() || !seen.insert(term.as_str()) {
                continue;
            }
            terms.push(term.clone());
        }
        let docs = self.districts.get(district).map_or(1.0, |d| d.events);
        let weighted: Vec<(String, f64)> = terms
            .into_iter()
            .map(|t| {
                let df = f64::from(self.sketch.estimate(district, &t));
                let idf = ((docs + 1.0) / (df + 1.0)).ln().max(0.0) + 1.0;
                (t, idf)
            })
            .collect();
        for (term, _) in &weighted {
            self.sketch.add(district, term);
        }
        weighted
    }

    /// Counts the report's terms in the district's term windows; returns each term with its
    /// guaranteed window count.
    fn count_terms(
        &mut self,
        district: &str,
        terms: &[(String, f64)],
        bucket: i64,
    ) -> Vec<(String, u64)> {
        let now = self.now_bucket();
        let Some(state) = self.districts.get_mut(district) else {
            return Vec::new();
        };
        terms
            .iter()
            .map(|(term, _)| (term.clone(), state.terms.add(term, bucket, now)))
            .collect()
    }

    // ---- tests --------------------------------------------------------------------------------

    /// Expected events in the whole city over the last `secs`: the hour-of-day profile, or what
    /// was observed when that is more (a busy day, or an hour not learned yet).
    pub(super) fn expected_city(&self, secs: i64) -> f64 {
        let now = self.now_bucket();
        let observed = self.city_window.total(now, self.config.buckets(secs)) as f64;
        let learned = self
            .now
            .and_then(|n| self.profile.rate_at(local_secs(n)))
            .map_or(0.0, |rate| rate * secs as f64 / 3600.0);
        observed.max(learned)
    }

    /// Expected events in `district` over the last `secs`: its share of the city's expected
    /// volume, or what it observed when that is more.
    fn expected_district(&self, district: &str, secs: i64) -> f64 {
        let Some(state) = self.districts.get(district) else {
            return 0.0;
        };
        let observed = state
            .all_window
            .total(self.now_bucket(), self.config.buckets(secs)) as f64;
        let share = state.events / (self.city_events + 1.0);
        observed.max(self.expected_city(secs) * share)
    }

    /// λ for `k` recent reports with `term` in `district`: the district's expected volume times
    /// the term's share of the district's reports, learned outside this window. District-based,
    /// so a flood elsewhere in the city does not blind a quiet district.
    pub(super) fn term_lambda(&self, district: &str, term: &str, k: u64, secs: i64) -> f64 {
        let long_run = (f64::from(self.sketch.estimate(district, term)) - k as f64).max(0.0);
        let docs = self.districts.get(district).map_or(0.0, |d| d.events);
        self.expected_district(district, secs) * (long_run + PRIOR) / (docs + 1.0)
    }

    pub(super) fn warm(&self) -> bool {
        self.events_observed >= self.config.warmup_events
    }
}

pub(super) fn incident_key(district: &str, incident_id: &str) -> ThreadKey {
    ThreadKey {
        kind: AlertKind::Incident,
        district: district.to_string(),
        subject: incident_id.to_string(),
    }
}

/// Seconds since the epoch on the event's own wall clock, so hour slots are local hours.
pub(super) fn local_secs(at: DateTime<FixedOffset>) -> i64 {
    at.timestamp() + i64::from(at.offset().local_minus_utc())
}
