//! Event time for the [`Detector`]: admitting events against the watermark, moving time on,
//! forgetting slowly (baseline decay) and quickly (window expiry), and the district table cap.
//!
//! Time is only what the caller passes in — event times and [`Detector::advance_to`] — so a
//! test steps time instead of sleeping, and a replay sees exactly the same clock.

use super::detector::{CategoryState, DistrictState};
use super::sketch::TermWindows;
use super::{Alert, Detector};
use chrono::{DateTime, Duration, FixedOffset};
use std::collections::BTreeMap;

/// Events this many in a row beyond `max_future_secs` mean the stream itself jumped ahead.
const FUTURE_STREAK: u32 = 3;

impl Detector {
    /// Advances event time without an event (a source watermark or a tick), resolving threads
    /// that went quiet. Time never moves backwards: an earlier instant changes nothing.
    pub fn advance_to(&mut self, now: DateTime<FixedOffset>) -> Vec<Alert> {
        if self.now.is_some_and(|n| now <= n) {
            return Vec::new();
        }
        self.now = Some(now);
        self.profile.roll(super::detector::local_secs(now));
        let halflife = self.config.baseline_halflife_hours.max(1) * 3600;
        let epoch = now.timestamp().div_euclid(halflife);
        match self.decay_epoch {
            Some(previous) if epoch > previous => {
                // After a long gap everything has decayed to nothing anyway; cap the loop.
                for _ in 0..(epoch - previous).min(64) {
                    self.halve();
                }
                self.decay_epoch = Some(epoch);
            }
            Some(_) => {}
            None => self.decay_epoch = Some(epoch),
        }
        let bucket = self.bucket(now);
        if self.last_bucket != Some(bucket) {
            self.last_bucket = Some(bucket);
            self.expire(bucket);
        }
        self.threads.resolve_quiet(now)
    }

    /// Decides whether an event enters the windows. `None`: dropped (late, or an unbelievable
    /// future time) and counted. `Some(alerts)`: admitted, with what moving time on caused.
    pub(super) fn admit(&mut self, at: DateTime<FixedOffset>) -> Option<Vec<Alert>> {
        let Some(now) = self.now else {
            return Some(self.advance_to(at));
        };
        if at < now - Duration::seconds(self.config.allowed_lateness_secs) {
            self.late_dropped += 1;
            return None;
        }
        if at > now + Duration::seconds(self.config.max_future_secs) {
            self.future_streak += 1;
            if self.future_streak < FUTURE_STREAK {
                self.future_dropped += 1;
                return None;
            }
        }
        self.future_streak = 0;
        Some(self.advance_to(at))
    }

    pub(super) fn bucket(&self, at: DateTime<FixedOffset>) -> i64 {
        at.timestamp().div_euclid(self.config.bucket_secs.max(1))
    }

    pub(super) fn now_bucket(&self) -> i64 {
        self.now.map_or(0, |now| self.bucket(now))
    }

    /// Halves every learned count: the baselines follow slow change and forget old incidents.
    fn halve(&mut self) {
        self.sketch.halve();
        self.city_events /= 2.0;
        self.city_alarmed /= 2.0;
        for state in self.districts.values_mut() {
            state.events /= 2.0;
            state.alarmed /= 2.0;
            for category in state.categories.values_mut() {
                category.share /= 2.0;
            }
        }
    }

    /// Drops window buckets that slid out, and closes clusters that went quiet (unless their
    /// incident thread is still open).
    fn expire(&mut self, bucket: i64) {
        let config = &self.config;
        let burst = config.buckets(config.burst_window_secs);
        let emotion = config.buckets(config.emotion_window_secs);
        let incident = config.buckets(config.incident_window_secs);
        self.city_window
            .expire(bucket, burst.max(emotion).max(incident));
        let Some(now) = self.now else { return };
        let gap = Duration::seconds(config.cluster_gap_secs);
        let threads = &self.threads;
        for (name, state) in &mut self.districts {
            // Also the district's volume for the term baselines of the other windows.
            state
                .all_window
                .expire(bucket, emotion.max(burst).max(incident));
            state.alarmed_window.expire(bucket, emotion);
            for category in state.categories.values_mut() {
                category.window.expire(bucket, burst);
            }
            state.terms.expire(bucket);
            state.clusters.retain_mut(|cluster| {
                cluster.expire(bucket, incident);
                now - cluster.last_seen < gap
                    || threads.is_active(&super::detector::incident_key(name, &cluster.id))
            });
        }
    }

    /// Makes room for `district`. When the table is full, the district with the fewest
    /// (decayed) events and no live alert thread is forgotten, least recently seen first among
    /// equals — so a flood of made-up district names churns among itself while the real
    /// districts, with their history, stay. `false` when every district has a live thread.
    pub(super) fn ensure_district(&mut self, district: &str, at: DateTime<FixedOffset>) -> bool {
        if self.districts.contains_key(district) {
            return true;
        }
        if self.districts.len() >= self.config.max_districts {
            let threads = &self.threads;
            let victim = self
                .districts
                .iter()
                .filter(|(name, _)| !threads.active.keys().any(|k| &k.district == *name))
                .min_by(|(a_name, a), (b_name, b)| {
                    a.events
                        .total_cmp(&b.events)
                        .then(a.last_seen.cmp(&b.last_seen))
                        .then(a_name.cmp(b_name))
                })
                .map(|(name, _)| name.clone());
            match victim {
                Some(victim) => {
                    self.districts.remove(&victim);
                }
                None => return false,
            }
        }
        let terms = TermWindows::new(
            self.config.max_terms_per_district,
            self.config.buckets(self.config.burst_window_secs),
        );
        self.districts.insert(
            district.to_string(),
            DistrictState {
                last_seen: at,
                clusters: Vec::new(),
                categories: BTreeMap::<String, CategoryState>::new(),
                terms,
                events: 0.0,
                alarmed: 0.0,
                all_window: Default::default(),
                alarmed_window: Default::default(),
            },
        );
        true
    }
}
