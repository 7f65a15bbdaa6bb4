//! The watermark of a detector fed from several sources (the partitions of the internal topic
//! in `run`): the minimum over the sources of each one's latest event time, minus the allowed
//! lateness — so a partition replaying a backlog, or lagging an hour behind the others, holds
//! the watermark back instead of having its events judged late.
//!
//! Pure: processing time is passed in as an [`Instant`], so tests step it instead of sleeping.
//! `detection.rs` calls [`Watermarks::seen`] for every message and hands
//! [`Watermarks::watermark`] to [`super::Detector::advance_to`] on every tick.
//!
//! # Idle sources
//! A partition that delivers nothing would hold the watermark back forever, and with it the
//! resolution of every quiet alert. A source that has delivered nothing for `idle_after` of
//! processing time is therefore left out of the minimum. Processing time, not event time,
//! because "idle" is a fact about delivery: a partition with a backlog keeps delivering (the
//! consumer reads partitions interleaved), however old its events are, while an empty one
//! delivers nothing at all. A partition assigned but not yet read counts as active (with no
//! time yet, so it holds the watermark) until `idle_after` has passed since its assignment:
//! that gives its backlog the chance to arrive first. When every source is idle the
//! watermark moves on from the newest event as fast as processing time passes since it
//! arrived, so alerts still resolve on a stream that has stopped.

use chrono::{DateTime, Duration as EventDuration, FixedOffset};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Identifies a source of events: the partition number in `run`, 0 for a single stream.
pub type SourceId = i32;

#[derive(Debug, Clone, Copy)]
struct Source {
    /// Latest event time delivered, `None` until the first event.
    latest: Option<DateTime<FixedOffset>>,
    /// When the source last delivered (or was assigned).
    active_at: Instant,
}

/// Per-source latest event times and the watermark they allow. Bounded by the number of
/// sources assigned (the partitions of one topic).
#[derive(Debug, Clone)]
pub struct Watermarks {
    lateness: EventDuration,
    idle_after: Duration,
    sources: BTreeMap<SourceId, Source>,
    /// The newest event time over all sources and when it arrived.
    newest: Option<(DateTime<FixedOffset>, Instant)>,
}

impl Watermarks {
    pub fn new(allowed_lateness_secs: i64, idle_after: Duration) -> Self {
        Watermarks {
            lateness: EventDuration::seconds(allowed_lateness_secs.max(0)),
            idle_after,
            sources: BTreeMap::new(),
            newest: None,
        }
    }

    /// The sources now assigned, replacing any earlier assignment (a rebalance starts over).
    pub fn assign(&mut self, sources: impl IntoIterator<Item = SourceId>, now: Instant) {
        self.sources = sources
            .into_iter()
            .map(|id| {
                (
                    id,
                    Source {
                        latest: None,
                        active_at: now,
                    },
                )
            })
            .collect();
        self.newest = None;
    }

    /// `source` delivered an event of time `at`, at processing time `now`. A source not
    /// assigned before is added.
    pub fn seen(&mut self, source: SourceId, at: DateTime<FixedOffset>, now: Instant) {
        let entry = self.sources.entry(source).or_insert(Source {
            latest: None,
            active_at: now,
        });
        entry.latest = Some(entry.latest.map_or(at, |l| l.max(at)));
        entry.active_at = entry.active_at.max(now);
        if self.newest.is_none_or(|(newest, _)| at > newest) {
            self.newest = Some((at, now));
        }
    }

    /// The watermark at processing time `now`: the minimum over the active sources of their
    /// latest event time, minus the allowed lateness; `None` while an active source has not
    /// delivered yet, or nothing has arrived at all.
    pub fn watermark(&self, now: Instant) -> Option<DateTime<FixedOffset>> {
        let mut active = self
            .sources
            .values()
            .filter(|s| now.saturating_duration_since(s.active_at) < self.idle_after)
            .peekable();
        if active.peek().is_some() {
            let mut min: Option<DateTime<FixedOffset>> = None;
            for source in active {
                let latest = source.latest?;
                min = Some(min.map_or(latest, |m| m.min(latest)));
            }
            return min.map(|m| m - self.lateness);
        }
        let (newest, arrived) = self.newest?;
        let idle = EventDuration::from_std(now.saturating_duration_since(arrived)).ok()?;
        Some(newest + idle - self.lateness)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(minute: i64) -> DateTime<FixedOffset> {
        FixedOffset::east_opt(8 * 3600)
            .and_then(|z| z.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).single())
            .expect("valid time")
            + EventDuration::minutes(minute)
    }

    #[test]
    fn the_lagging_source_holds_the_watermark() {
        let start = Instant::now();
        let mut marks = Watermarks::new(300, Duration::from_secs(30));
        marks.assign([0, 1], start);
        marks.seen(0, t(60), start);
        assert_eq!(marks.watermark(start), None, "source 1 not read yet");
        marks.seen(1, t(0), start + Duration::from_secs(1));
        assert_eq!(marks.watermark(start + Duration::from_secs(1)), Some(t(-5)));
        marks.seen(1, t(10), start + Duration::from_secs(2));
        marks.seen(0, t(61), start + Duration::from_secs(2));
        assert_eq!(marks.watermark(start + Duration::from_secs(2)), Some(t(5)));
    }

    #[test]
    fn idle_sources_stop_holding_it_and_all_idle_moves_on_with_processing_time() {
        let start = Instant::now();
        let mut marks = Watermarks::new(300, Duration::from_secs(30));
        marks.assign([0, 1, 2], start);
        marks.seen(0, t(60), start);
        marks.seen(1, t(30), start);
        // Source 2 never delivers: held until 30 s after the assignment.
        assert_eq!(marks.watermark(start + Duration::from_secs(29)), None);
        marks.seen(0, t(61), start + Duration::from_secs(29));
        marks.seen(1, t(31), start + Duration::from_secs(29));
        assert_eq!(
            marks.watermark(start + Duration::from_secs(31)),
            Some(t(26))
        );
        // Source 1 goes quiet: after 30 s only source 0 counts.
        marks.seen(0, t(62), start + Duration::from_secs(50));
        assert_eq!(
            marks.watermark(start + Duration::from_secs(60)),
            Some(t(57))
        );
        // Everything quiet: from the newest event, as fast as processing time passes.
        let quiet = start + Duration::from_secs(50 + 90);
        assert_eq!(
            marks.watermark(quiet),
            Some(t(62) + EventDuration::seconds(90) - EventDuration::minutes(5))
        );
    }
}
