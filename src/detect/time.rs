//! Event time for the [`Detector`]: admitting events per source, each district's own clock
//! (baseline decay, window expiry, quiet threads), the watermark, and the district table cap.
//!
//! Time is only what the caller passes in — event times and [`Detector::advance_to`] — so a
//! test steps time instead of sleeping, and a replay sees exactly the same clock.
//!
//! Two clocks, for two jobs. A district's state moves on the district's own clock (the latest
//! event time admitted in it): its windows, decay and cluster expiry then depend only on its
//! own events, whoever else is consumed alongside. Threads of a district that has gone quiet
//! still have to resolve, which its own clock cannot do; the watermark does that. The
//! watermark is never ahead of an event still to be admitted (see
//! [`super::watermark::Watermarks`]), and a resolution says when the thread went quiet rather
//! than when that was noticed, so a thread resolves before the same events of its district
//! whichever of the two clocks gets there first.

use super::baseline::HourProfile;
use super::detector::{CategoryState, DistrictState, SourceClock};
use super::sketch::{CountMin, TermWindows};
use super::watermark::SourceId;
use super::{Alert, Detector};
use chrono::{DateTime, Duration, FixedOffset};
use std::collections::BTreeMap;

/// Events this many in a row beyond `max_future_secs` mean the stream itself jumped ahead.
const FUTURE_STREAK: u32 = 3;
/// Sources tracked at once. Sources are the partitions of one topic, a small fixed set; past
/// this the source that delivered the oldest events is forgotten.
const MAX_SOURCES: usize = 4096;

impl Detector {
    /// Moves the watermark on (a source watermark or a tick): no event older than `watermark`
    /// is expected any more. Resolves the threads that went quiet by then. The watermark never
    /// moves backwards: an earlier instant changes nothing.
    pub fn advance_to(&mut self, watermark: DateTime<FixedOffset>) -> Vec<Alert> {
        if self.watermark.is_some_and(|w| watermark <= w) {
            return Vec::new();
        }
        self.watermark = Some(watermark);
        self.threads.resolve_quiet(watermark)
    }

    /// The current watermark, if time has started.
    pub fn watermark(&self) -> Option<DateTime<FixedOffset>> {
        self.watermark
    }

    /// Decides whether an event from `source` enters the windows: `false` when it is more than
    /// the allowed lateness behind its source's latest event, or unbelievably far ahead of it
    /// (counted either way).
    pub(super) fn admit(&mut self, source: SourceId, at: DateTime<FixedOffset>) -> bool {
        let lateness = Duration::seconds(self.config.allowed_lateness_secs);
        let future = Duration::seconds(self.config.max_future_secs);
        let Some(clock) = self.sources.get_mut(&source) else {
            if self.sources.len() >= MAX_SOURCES {
                let stalest = self
                    .sources
                    .iter()
                    .min_by_key(|(id, c)| (c.latest, **id))
                    .map(|(id, _)| *id);
                if let Some(id) = stalest {
                    self.sources.remove(&id);
                }
            }
            self.sources.insert(
                source,
                SourceClock {
                    latest: at,
                    future_streak: 0,
                },
            );
            return true;
        };
        if at < clock.latest - lateness {
            self.late_dropped += 1;
            return false;
        }
        if at > clock.latest + future {
            clock.future_streak += 1;
            if clock.future_streak < FUTURE_STREAK {
                self.future_dropped += 1;
                return false;
            }
        }
        clock.future_streak = 0;
        clock.latest = clock.latest.max(at);
        true
    }

    pub(super) fn bucket(&self, at: DateTime<FixedOffset>) -> i64 {
        at.timestamp().div_euclid(self.config.bucket_secs.max(1))
    }

    /// The window bucket of the district's clock.
    pub(super) fn clock_bucket(&self, district: &str) -> i64 {
        self.districts
            .get(district)
            .map_or(0, |d| self.bucket(d.last_seen))
    }

    /// The district's clock (its latest admitted event time).
    pub(super) fn clock(&self, district: &str) -> Option<DateTime<FixedOffset>> {
        self.districts.get(district).map(|d| d.last_seen)
    }

    /// Moves the district's clock to `at` (if later): resolves its quiet threads, then halves
    /// its learned counts once per half-life passed and expires its windows and clusters.
    /// Resolution comes first because a cluster whose thread is still live is kept open.
    pub(super) fn tick_district(
        &mut self,
        district: &str,
        at: DateTime<FixedOffset>,
    ) -> Vec<Alert> {
        let halflife = self.config.baseline_halflife_hours.max(1) * 3600;
        let Some(state) = self.districts.get_mut(district) else {
            return Vec::new();
        };
        if at <= state.last_seen {
            return Vec::new();
        }
        let clock = state.last_seen.max(at);
        state.last_seen = clock;
        let epoch = clock.timestamp().div_euclid(halflife);
        if epoch > state.decay_epoch {
            // After a long gap everything has decayed to nothing anyway; cap the loop.
            for _ in 0..(epoch - state.decay_epoch).min(64) {
                state.halve();
            }
            state.decay_epoch = epoch;
        }
        let alerts = self.threads.resolve_quiet_in(district, clock);
        let bucket = self.bucket(clock);
        if self
            .districts
            .get(district)
            .is_some_and(|d| d.last_bucket != bucket)
        {
            self.expire(district, bucket, clock);
        }
        alerts
    }

    /// Drops window buckets of the district that slid out, and closes its clusters that went
    /// quiet (unless their incident thread is still open).
    fn expire(&mut self, district: &str, bucket: i64, now: DateTime<FixedOffset>) {
        let config = &self.config;
        let burst = config.buckets(config.burst_window_secs);
        let emotion = config.buckets(config.emotion_window_secs);
        let incident = config.buckets(config.incident_window_secs);
        let gap = Duration::seconds(config.cluster_gap_secs);
        let threads = &self.threads;
        let Some(state) = self.districts.get_mut(district) else {
            return;
        };
        state.last_bucket = bucket;
        // Also the district's volume for the term baselines of the other windows.
        state
            .all_window
            .expire(bucket, emotion.max(burst).max(incident));
        state.alarmed_window.expire(bucket, emotion);
        for category in state.categories.values_mut() {
            category.window.expire(bucket, burst);
        }
        state.terms.expire(bucket);
        // A cluster's own windows are expired when a report joins it (`incidents.rs`), not
        // here: only totals over the window are ever read from them, so an old bucket kept a
        // little longer changes nothing, and walking every term of every open cluster on each
        // new bucket was a large share of detection.
        let mut probe = super::detector::IncidentProbe::new(district);
        state.clusters.retain(|cluster| {
            now - cluster.last_seen < gap || threads.is_active(probe.key(&cluster.id))
        });
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
        let halflife = self.config.baseline_halflife_hours.max(1) * 3600;
        self.districts.insert(
            district.to_string(),
            DistrictState {
                last_seen: at,
                observed: 0,
                profile: HourProfile::new(self.config.hourly_ewma_alpha),
                sketch: CountMin::new(self.config.sketch_width),
                decay_epoch: at.timestamp().div_euclid(halflife),
                last_bucket: self.bucket(at),
                clusters: Default::default(),
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

impl DistrictState {
    /// Halves every learned count: the baselines follow slow change and forget old incidents.
    fn halve(&mut self) {
        self.sketch.halve();
        self.events /= 2.0;
        self.alarmed /= 2.0;
        for category in self.categories.values_mut() {
            category.share /= 2.0;
        }
    }
}
