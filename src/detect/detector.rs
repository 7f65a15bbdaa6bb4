//! The [`Detector`]: event time, per-district state and the tests that open alert threads.
//!
//! Every piece of state that influences an alert is the district's own — its clock (the latest
//! event time admitted in it), hour-of-day profile, term sketch, windows, clusters, warm-up
//! count and alert threads — so the decisions for a district depend only on that district's
//! events, in the order they arrive. That is what lets several instances, each owning a share
//! of the districts (`run` keys the internal topic by district), raise exactly the alerts one
//! instance would, and lets one lagging partition replay without disturbing the others. The
//! only city-wide things left are the watermark (which resolves quiet threads, see `time.rs`)
//! and the district table's cap, which evicts across districts only when more than
//! `max_districts` districts are live.
//!
//! Every admitted event updates the district's hour-of-day profile and windows; relevant
//! reports also feed the term sketch and the incident clusters. Then four tests run,
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
use super::cluster::{Clusters, Member};
use super::config::DetectConfig;
use super::sketch::{Cells, CountMin, DistrictHashers, Term, TermSet, TermWindows};
use super::threads::{ThreadKey, Threads};
use super::watermark::SourceId;
use super::{Alert, AlertKind, DetectInput, DetectorStats, Observation};
use chrono::{DateTime, Duration, FixedOffset};
use std::collections::BTreeMap;

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
    /// The district's clock: the latest event time admitted in it. Its windows and tests are
    /// evaluated at this instant, never at another district's.
    pub last_seen: DateTime<FixedOffset>,
    /// Events admitted in the district since it entered the table (the warm-up count).
    pub observed: u64,
    /// The district's event rate per hour of the day.
    pub profile: HourProfile,
    /// How common each term usually is in the district (decayed counts).
    pub sketch: CountMin,
    /// Half-life periods elapsed on the district's clock, and the last window bucket expired.
    pub decay_epoch: i64,
    pub last_bucket: i64,
    /// Open clusters, oldest first.
    pub clusters: Clusters,
    pub categories: BTreeMap<String, CategoryState>,
    pub terms: TermWindows,
    /// Decayed counts of the district's events (all, and angry or fearful).
    pub events: f64,
    pub alarmed: f64,
    pub all_window: SparseWindow,
    pub alarmed_window: SparseWindow,
}

/// A source of events (a partition of the internal topic; `process` has one): the latest event
/// time it delivered, against which its own events are late or too far ahead.
#[derive(Debug, Clone, Copy)]
pub(super) struct SourceClock {
    pub latest: DateTime<FixedOffset>,
    pub future_streak: u32,
}

pub struct Detector {
    pub(super) config: DetectConfig,
    /// Per source, the latest event time admitted from it. An event is late when it is more
    /// than the allowed lateness behind its own source — not behind another source, so a
    /// partition replaying a backlog an hour behind the live ones loses nothing.
    pub(super) sources: BTreeMap<SourceId, SourceClock>,
    /// The watermark: no event older than this is expected from any source any more. It only
    /// resolves quiet threads; `observe` moves it for a single source, `advance_to` for many.
    pub(super) watermark: Option<DateTime<FixedOffset>>,
    pub(super) districts: BTreeMap<String, DistrictState>,
    pub(super) threads: Threads,
    pub(super) cluster_seq: u64,
    pub(super) events_observed: u64,
    pub(super) late_dropped: u64,
    pub(super) future_dropped: u64,
    pub(super) district_overflow: u64,
    pub(super) merged: u64,
    /// Buffers of the event being observed, kept for the next one.
    scratch: Scratch,
}

/// The working buffers of one relevant event — its terms, their sketch cells and window
/// counts — kept between events so that observing one allocates none of them. Each holds at
/// most `max_terms_per_event` entries, so what they keep is bounded by that setting.
#[derive(Default)]
pub(super) struct Scratch {
    /// The event's terms taken so far, to skip repeats.
    seen: TermSet,
    /// The event's distinct terms with their IDF weights, in the order they were taken.
    pub terms: Vec<(Term, f64)>,
    /// Each term's cells in the district's sketch (same order).
    pub cells: Vec<Cells>,
    /// Each term's guaranteed count in the district's term windows (same order).
    pub counts: Vec<u64>,
}

impl Detector {
    pub fn new(config: DetectConfig) -> Self {
        Detector {
            threads: Threads::new(
                config.update_growth,
                config.resolve_quiet_secs,
                config.cooldown_secs,
                config.max_recent_alerts,
            ),
            config,
            sources: BTreeMap::new(),
            watermark: None,
            districts: BTreeMap::new(),
            cluster_seq: 0,
            events_observed: 0,
            late_dropped: 0,
            future_dropped: 0,
            district_overflow: 0,
            merged: 0,
            scratch: Scratch::default(),
        }
    }

    pub fn config(&self) -> &DetectConfig {
        &self.config
    }

    /// Feeds one event of a single stream in (roughly) event-time order — `process` and the
    /// evaluation. Returns the event's incident id (once its cluster holds two reports) and
    /// every alert message this caused, in order. The watermark follows the stream: its latest
    /// event time minus the allowed lateness.
    pub fn observe(&mut self, input: &DetectInput) -> Observation {
        let mut observation = self.observe_from(0, input);
        if let Some(clock) = self.sources.get(&0) {
            let watermark = clock.latest - Duration::seconds(self.config.allowed_lateness_secs);
            observation.alerts.extend(self.advance_to(watermark));
        }
        observation
    }

    /// Feeds one event from `source` (a partition of the internal topic), each source in
    /// (roughly) event-time order. Lateness is judged against the source's own latest event,
    /// and every district's state moves on its own clock; the caller moves the watermark with
    /// [`Detector::advance_to`] (see [`super::watermark::Watermarks`]).
    pub fn observe_from(&mut self, source: SourceId, input: &DetectInput) -> Observation {
        let at = input.occurred_at;
        if !self.admit(source, at) {
            return Observation::default();
        }
        self.events_observed += 1;
        let bucket = self.bucket(at);
        let alarmed = input.emotion.is_some_and(|e| ALARMED.contains(&e));
        let Some(district) = input.district.filter(|d| !d.is_empty()) else {
            return Observation::default();
        };
        if !self.ensure_district(district, at) {
            self.district_overflow += 1;
            return Observation::default();
        }
        let mut alerts = self.tick_district(district, at);
        let mut incident_id = None;
        if let Some(state) = self.districts.get_mut(district) {
            state.observed += 1;
            state.profile.observe(local_secs(at));
            state.events += 1.0;
            state.alarmed += f64::from(u8::from(alarmed));
            state.all_window.add(bucket, 1);
            if alarmed {
                state.alarmed_window.add(bucket, 1);
            }
        }
        if input.relevant {
            // Taken out for the event (and put back) so the tests can borrow `self` mutably.
            let mut scratch = std::mem::take(&mut self.scratch);
            self.weighted_terms(district, input, &mut scratch);
            let member = Member {
                event_id: input.event_id,
                channel: input.channel,
                at,
                bucket,
                priority: input.priority,
                emotional: alarmed,
                category: input.category,
                published_incident: input.incident_id,
            };
            self.count_terms(district, &mut scratch, bucket);
            let anchors = self.anchors(district, &scratch);
            let cluster = self.cluster(district, &member, &scratch.terms, &anchors);
            let (id, incident) = self.test_incident(district, cluster);
            incident_id = id;
            alerts.extend(incident);
            alerts.extend(self.test_category(district, input, bucket));
            let terms = scratch.terms.iter().zip(&scratch.cells);
            for (((term, _), cells), &k) in terms.zip(&scratch.counts) {
                if k < self.config.burst_min_count {
                    continue;
                }
                alerts.extend(self.test_term(district, term, cells, k, input));
            }
            self.scratch = scratch;
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
    /// most `max_terms_per_event`, each with its IDF weight in the district and its cells in
    /// the district's sketch, into `scratch`; then counts them in the sketch.
    fn weighted_terms(&mut self, district: &str, input: &DetectInput, scratch: &mut Scratch) {
        let max = self.config.max_terms_per_event;
        scratch.seen.clear();
        scratch.terms.clear();
        scratch.cells.clear();
        let Some(state) = self.districts.get_mut(district) else {
            return;
        };
        // Cells are located from the input's text while the terms are taken (a `Term` would
        // have to check its text again to lend it out), all before any is read, so the reads
        // (cache misses, mostly) of different terms overlap.
        let hashers = DistrictHashers::new(district);
        for text in input
            .keywords
            .iter()
            .map(String::as_str)
            .chain(input.tokens.iter())
        {
            if scratch.terms.len() >= max {
                break;
            }
            if text.chars().nth(1).is_none() {
                continue;
            }
            let term = Term::new(text);
            if scratch.seen.insert(term.clone()) {
                scratch.terms.push((term, 0.0));
                scratch.cells.push(hashers.cells(&state.sketch, text));
            }
        }
        let docs = state.events;
        // Every estimate is read before any count is added, as two terms may share a cell.
        for ((_, weight), cells) in scratch.terms.iter_mut().zip(&scratch.cells) {
            let df = f64::from(state.sketch.estimate_at(cells));
            *weight = ((docs + 1.0) / (df + 1.0)).ln().max(0.0) + 1.0;
        }
        for cells in &scratch.cells {
            state.sketch.add_at(cells);
        }
    }

    /// Counts the report's terms in the district's term windows, each term's guaranteed
    /// window count into `scratch.counts`, in the order of `scratch.terms`.
    fn count_terms(&mut self, district: &str, scratch: &mut Scratch, bucket: i64) {
        let now = self.clock_bucket(district);
        scratch.counts.clear();
        let Some(state) = self.districts.get_mut(district) else {
            return;
        };
        for (term, _) in &scratch.terms {
            scratch.counts.push(state.terms.add(term, bucket, now));
        }
    }

    // ---- tests --------------------------------------------------------------------------------

    /// Expected events in `district` over the last `secs` (ending at its clock): its
    /// hour-of-day profile, or what it observed when that is more (a busy day, or an hour not
    /// learned yet).
    pub(super) fn expected_district(&self, district: &str, secs: i64) -> f64 {
        let Some(state) = self.districts.get(district) else {
            return 0.0;
        };
        let observed = state
            .all_window
            .total(self.bucket(state.last_seen), self.config.buckets(secs))
            as f64;
        let learned = state
            .profile
            .rate_at(local_secs(state.last_seen))
            .map_or(0.0, |rate| rate * secs as f64 / 3600.0);
        observed.max(learned)
    }

    /// λ for `k` recent reports with `term` in `district`: the district's expected volume times
    /// the term's share of the district's reports, learned outside this window. District-based,
    /// so a flood elsewhere in the city does not blind a quiet district.
    pub(super) fn term_lambda(&self, district: &str, term: &str, k: u64, secs: i64) -> f64 {
        let Some(state) = self.districts.get(district) else {
            return 0.0;
        };
        let cells = DistrictHashers::new(district).cells(&state.sketch, term);
        self.term_lambda_at(district, &cells, k, secs)
    }

    /// [`Detector::term_lambda`] for a term already located in the district's sketch (by
    /// [`DistrictHashers::cells`] with the district's hashers).
    pub(super) fn term_lambda_at(&self, district: &str, cells: &Cells, k: u64, secs: i64) -> f64 {
        let Some(state) = self.districts.get(district) else {
            return 0.0;
        };
        let long_run = (f64::from(state.sketch.estimate_at(cells)) - k as f64).max(0.0);
        self.expected_district(district, secs) * (long_run + PRIOR) / (state.events + 1.0)
    }

    /// Whether the district has seen enough events for its baselines to mean something.
    pub(super) fn warm(&self, district: &str) -> bool {
        self.districts
            .get(district)
            .is_some_and(|d| d.observed >= self.config.warmup_events)
    }
}

pub(super) fn incident_key(district: &str, incident_id: &str) -> ThreadKey {
    ThreadKey {
        kind: AlertKind::Incident,
        district: district.to_string(),
        subject: incident_id.to_string(),
    }
}

/// The incident keys of one district's clusters, one after the other in one buffer: checking
/// every open cluster for a live thread then allocates once, not twice per cluster.
pub(super) struct IncidentProbe(ThreadKey);

impl IncidentProbe {
    pub(super) fn new(district: &str) -> Self {
        IncidentProbe(incident_key(district, ""))
    }

    /// The key of incident `incident_id` of the probe's district.
    pub(super) fn key(&mut self, incident_id: &str) -> &ThreadKey {
        self.0.subject.clear();
        self.0.subject.push_str(incident_id);
        &self.0
    }
}

/// Seconds since the epoch on the event's own wall clock, so hour slots are local hours.
pub(super) fn local_secs(at: DateTime<FixedOffset>) -> i64 {
    at.timestamp() + i64::from(at.offset().local_minus_utc())
}
