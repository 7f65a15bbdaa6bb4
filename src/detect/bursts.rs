//! The burst tests of the [`Detector`]: district × category, district × term, and emotion
//! surges, each merged into an active incident of the district when it is the same thing.
//!
//! A burst is the incident's when its term or category is in a third of the incident's
//! reports, or the incident's reports make at least half of the burst's count. A test is "hot" when the window count is at least the configured minimum, a multiple of
//! its baseline, and improbable under it (score = −log10 of the Poisson tail). A hot test
//! opens or feeds its thread; a thread not hot for `resolve_quiet_secs` resolves.

use super::baseline::poisson_surprise;
use super::cluster::{Cluster, SAMPLE_IDS};
use super::detector::{CategoryState, IncidentProbe, PRIOR};
use super::sketch::{Cells, Term};
use super::threads::{severity, Evidence, Snapshot, ThreadKey};
use super::{Alert, AlertKind, DetectInput, Detector};
use chrono::{DateTime, FixedOffset, TimeZone};

/// The prior share of angry or fearful messages a new district is shrunk towards.
const USUAL_ALARMED_SHARE: f64 = 0.2;

/// A hot test, before it becomes a snapshot.
struct Hot {
    count: u64,
    baseline: f64,
    score: f64,
    first_seen: DateTime<FixedOffset>,
}

impl Detector {
    pub(super) fn test_category(
        &mut self,
        district: &str,
        input: &DetectInput,
        bucket: i64,
    ) -> Option<Alert> {
        let now_bucket = self.clock_bucket(district);
        let len = self.config.buckets(self.config.burst_window_secs);
        let max = self.config.max_categories_per_district;
        let state = self.districts.get_mut(district)?;
        if !state.categories.contains_key(input.category) && state.categories.len() >= max {
            return None;
        }
        if !state.categories.contains_key(input.category) {
            state
                .categories
                .insert(input.category.to_string(), CategoryState::default());
        }
        let entry = state.categories.get_mut(input.category)?;
        entry.window.add(bucket, 1);
        entry.share += 1.0;
        let k = entry.window.total(now_bucket, len);
        let long_run = (entry.share - k as f64).max(0.0);
        let oldest = entry.window.oldest().unwrap_or(bucket);
        if k < self.config.burst_min_count {
            return None;
        }
        let docs = state.events;
        let lambda = self.expected_district(district, self.config.burst_window_secs)
            * (long_run + PRIOR)
            / (docs + 1.0);
        let thresholds = (self.config.burst_min_count, self.config.burst_min_score);
        let hot = self.hot(district, (k, lambda), thresholds, oldest, input.occurred_at)?;
        let covered = self.incident_covers(district, None, |c| {
            c.categories
                .get(input.category)
                .is_some_and(|n| n * 3 >= c.size || n * 2 >= k)
        });
        if covered {
            self.merged += 1;
            return None;
        }
        let key = ThreadKey {
            kind: AlertKind::CategoryBurst,
            district: district.to_string(),
            subject: input.category.to_string(),
        };
        let snap = self.burst_snapshot(&key, hot, input, Some(input.category), Vec::new());
        self.emit(key, snap)
    }

    pub(super) fn test_term(
        &mut self,
        district: &str,
        term: &Term,
        cells: &Cells,
        k: u64,
        input: &DetectInput,
    ) -> Option<Alert> {
        let secs = self.config.burst_window_secs;
        let lambda = self.term_lambda_at(district, cells, k, secs);
        let window_start = self.clock_bucket(district) - self.config.buckets(secs) as i64 + 1;
        let thresholds = (self.config.burst_min_count, self.config.burst_min_score);
        let hot = self.hot(
            district,
            (k, lambda),
            thresholds,
            window_start,
            input.occurred_at,
        )?;
        let covered = self.incident_covers(district, Some(term), |c| {
            c.terms
                .get(term)
                .is_some_and(|p| p.count * 3 >= c.size || p.count * 2 >= k)
        });
        if covered {
            self.merged += 1;
            return None;
        }
        let key = ThreadKey {
            kind: AlertKind::TermBurst,
            district: district.to_string(),
            subject: term.as_str().to_string(),
        };
        let snap = self.burst_snapshot(&key, hot, input, None, vec![term.as_str().to_string()]);
        self.emit(key, snap)
    }

    pub(super) fn test_emotion(&mut self, district: &str, input: &DetectInput) -> Option<Alert> {
        let now_bucket = self.clock_bucket(district);
        let len = self.config.buckets(self.config.emotion_window_secs);
        let state = self.districts.get(district)?;
        let alarmed = state.alarmed_window.total(now_bucket, len);
        let all = state.all_window.total(now_bucket, len);
        if alarmed < self.config.emotion_min_count {
            return None;
        }
        // The district's usual share, shrunk towards a fixed prior while the district is new
        // (not towards the city's share: that would make the district's alerts depend on
        // events another instance may be counting).
        let usual_alarmed = (state.alarmed - alarmed as f64).max(0.0);
        let usual_all = (state.events - all as f64).max(0.0);
        let usual = (usual_alarmed + 20.0 * USUAL_ALARMED_SHARE) / (usual_all + 20.0);
        let share = alarmed as f64 / all.max(1) as f64;
        if share < usual + self.config.emotion_min_share_rise {
            return None;
        }
        let oldest = state.alarmed_window.oldest().unwrap_or(now_bucket);
        let thresholds = (self.config.emotion_min_count, self.config.emotion_min_score);
        let hot = self.hot(
            district,
            (alarmed, all as f64 * usual),
            thresholds,
            oldest,
            input.occurred_at,
        )?;
        if self.incident_covers(district, None, |_| true) {
            self.merged += 1;
            return None;
        }
        let key = ThreadKey {
            kind: AlertKind::EmotionSurge,
            district: district.to_string(),
            subject: String::new(),
        };
        let snap = self.burst_snapshot(&key, hot, input, None, Vec::new());
        self.emit(key, snap)
    }

    /// The common part of every burst test; `None` when the count is not a burst.
    fn hot(
        &self,
        district: &str,
        (count, baseline): (u64, f64),
        (min_count, min_score): (u64, f64),
        oldest_bucket: i64,
        at: DateTime<FixedOffset>,
    ) -> Option<Hot> {
        let score = poisson_surprise(count, baseline);
        let config = &self.config;
        let is_hot = self.warm(district)
            && count >= min_count
            && count as f64 >= config.burst_min_ratio * baseline
            && score >= min_score;
        let first_seen = at
            .offset()
            .timestamp_opt(oldest_bucket * config.bucket_secs, 0)
            .single()
            .unwrap_or(at);
        is_hot.then_some(Hot {
            count,
            baseline,
            score,
            first_seen,
        })
    }

    /// Whether an open cluster of the district whose incident thread is live — or resolved
    /// but still in cooldown, its reports still in the windows — satisfies `covers`. With
    /// `holding`, only clusters whose profile holds that term are looked at (`covers` must
    /// then be false for the others).
    fn incident_covers(
        &self,
        district: &str,
        holding: Option<&Term>,
        covers: impl Fn(&Cluster) -> bool,
    ) -> bool {
        let Some(state) = self.districts.get(district) else {
            return false;
        };
        let now = state.last_seen;
        let mut probe = IncidentProbe::new(district);
        let live_and_covers = |c: &Cluster| {
            let key = probe.key(&c.id);
            covers(c) && (self.threads.is_active(key) || self.threads.in_cooldown(key, now))
        };
        match holding {
            Some(term) => state
                .clusters
                .may_hold(term)
                .filter_map(|i| state.clusters.get(i))
                .any(live_and_covers),
            None => state.clusters.iter().any(live_and_covers),
        }
    }

    /// What a burst thread says now: its figures plus the channels and samples gathered so far.
    fn burst_snapshot(
        &self,
        key: &ThreadKey,
        hot: Hot,
        input: &DetectInput,
        category: Option<&str>,
        terms: Vec<String>,
    ) -> Snapshot {
        let previous = self.threads.active.get(key).map(|t| &t.current);
        let mut channels = previous.map_or_else(Vec::new, |p| p.channels.clone());
        if !channels.contains(&input.channel) {
            channels.push(input.channel);
            channels.sort();
        }
        let mut event_ids = previous.map_or_else(Vec::new, |p| p.event_ids.clone());
        if event_ids.len() < SAMPLE_IDS {
            event_ids.push(input.event_id.to_string());
        }
        let evidence = Evidence {
            count: hot.count,
            baseline: hot.baseline,
            channels: channels.len(),
            police: channels.contains(&crate::event::Channel::Police110),
            min_priority: input.priority,
            emotional_share: 0.0,
        };
        let severity =
            severity(&evidence).max(previous.map_or(severity(&evidence), |p| p.severity));
        Snapshot {
            severity,
            category: category.map(str::to_string),
            merge_terms: terms.iter().cloned().collect(),
            terms,
            count: hot.count,
            baseline: hot.baseline,
            channels,
            first_seen: previous.map_or(hot.first_seen, |p| p.first_seen),
            last_seen: input.occurred_at,
            event_ids,
            incident_id: None,
            score: hot.score,
        }
    }

    fn emit(&mut self, key: ThreadKey, snap: Snapshot) -> Option<Alert> {
        let now = self.clock(&key.district).unwrap_or(snap.last_seen);
        self.threads.evidence(key, snap, now)
    }
}
