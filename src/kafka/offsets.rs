//! Which input offsets are safe to commit: the at-least-once bookkeeping, free of I/O.
//!
//! The consumer loop calls [`OffsetTracker::begin`] for each record it hands to a worker; the
//! delivery task calls [`OffsetTracker::complete`] once every output the record caused was
//! acknowledged by the broker. The committer asks for [`OffsetTracker::committable`]: per
//! partition, the lowest offset still in flight (or one past the highest finished), so a commit
//! never passes a record whose outputs might be lost. Records finish out of order across workers;
//! the tracker tolerates that.

use std::collections::{BTreeSet, HashMap};

/// A topic partition, owned.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    pub topic: String,
    pub partition: i32,
}

#[derive(Debug, Default)]
struct PartitionState {
    /// Offsets handed out and not yet finished.
    in_flight: BTreeSet<i64>,
    /// One past the highest offset ever begun: the commit point once nothing is in flight.
    next_after_begun: Option<i64>,
    /// The last offset committed, so unchanged partitions are not committed again.
    last_committed: Option<i64>,
}

/// Per-partition in-flight offsets. Bounded by the caller: the consumer stops handing out
/// records when [`OffsetTracker::in_flight`] reaches the pipeline's `max_in_flight`.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<PartitionKey, PartitionState>,
    in_flight: usize,
}

impl OffsetTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// A record at `offset` was handed to a worker.
    pub fn begin(&mut self, key: &PartitionKey, offset: i64) {
        let state = match self.partitions.get_mut(key) {
            Some(state) => state,
            None => self.partitions.entry(key.clone()).or_default(),
        };
        if state.in_flight.insert(offset) {
            self.in_flight += 1;
        }
        state.next_after_begun = Some(
            state
                .next_after_begun
                .map_or(offset + 1, |n| n.max(offset + 1)),
        );
    }

    /// Every output of the record at `offset` was acknowledged. Completions for partitions this
    /// instance no longer owns (after a rebalance) are ignored.
    pub fn complete(&mut self, key: &PartitionKey, offset: i64) {
        if let Some(state) = self.partitions.get_mut(key) {
            if state.in_flight.remove(&offset) {
                self.in_flight -= 1;
            }
        }
    }

    /// Records begun and not yet complete, over all partitions.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The offsets to commit now (Kafka's convention: the next offset to read), for partitions
    /// whose commit point moved since the last call to [`OffsetTracker::mark_committed`].
    pub fn committable(&self) -> Vec<(PartitionKey, i64)> {
        let mut out: Vec<(PartitionKey, i64)> = self
            .partitions
            .iter()
            .filter_map(|(key, state)| {
                let point = state
                    .in_flight
                    .first()
                    .copied()
                    .or(state.next_after_begun)?;
                (state.last_committed != Some(point)).then(|| (key.clone(), point))
            })
            .collect();
        out.sort();
        out
    }

    /// The broker accepted a commit of these offsets.
    pub fn mark_committed(&mut self, offsets: &[(PartitionKey, i64)]) {
        for (key, offset) in offsets {
            if let Some(state) = self.partitions.get_mut(key) {
                state.last_committed = Some(*offset);
            }
        }
    }

    /// A commit of these partitions failed: offer their commit points again.
    pub fn commit_failed(&mut self, keys: &[PartitionKey]) {
        for key in keys {
            if let Some(state) = self.partitions.get_mut(key) {
                state.last_committed = None;
            }
        }
    }

    /// Partitions were revoked: forget them. Their in-flight records will be re-read by the
    /// next owner from the last commit (at-least-once).
    pub fn forget(&mut self, keys: &[PartitionKey]) {
        for key in keys {
            if let Some(state) = self.partitions.remove(key) {
                self.in_flight -= state.in_flight.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(partition: i32) -> PartitionKey {
        PartitionKey {
            topic: "raw.12345".into(),
            partition,
        }
    }

    #[test]
    fn commit_point_stops_at_the_lowest_unfinished_offset() {
        let mut tracker = OffsetTracker::new();
        for offset in 10..15 {
            tracker.begin(&p(0), offset);
        }
        tracker.complete(&p(0), 10);
        tracker.complete(&p(0), 12);
        tracker.complete(&p(0), 13);
        assert_eq!(tracker.committable(), vec![(p(0), 11)]);
        assert_eq!(tracker.in_flight(), 2);
        tracker.complete(&p(0), 11);
        tracker.complete(&p(0), 14);
        assert_eq!(tracker.committable(), vec![(p(0), 15)]);
        assert_eq!(tracker.in_flight(), 0);
    }

    #[test]
    fn nothing_committable_until_something_is_begun_and_unchanged_points_are_not_repeated() {
        let mut tracker = OffsetTracker::new();
        assert!(tracker.committable().is_empty());
        tracker.begin(&p(1), 0);
        assert_eq!(tracker.committable(), vec![(p(1), 0)]);
        tracker.mark_committed(&[(p(1), 0)]);
        assert!(tracker.committable().is_empty());
        tracker.commit_failed(&[p(1)]);
        assert_eq!(tracker.committable(), vec![(p(1), 0)]);
        tracker.mark_committed(&[(p(1), 0)]);
        tracker.complete(&p(1), 0);
        assert_eq!(tracker.committable(), vec![(p(1), 1)]);
    }

    #[test]
    fn partitions_are_independent_and_forgotten_on_revoke() {
        let mut tracker = OffsetTracker::new();
        tracker.begin(&p(0), 5);
        tracker.begin(&p(1), 7);
        tracker.complete(&p(1), 7);
        assert_eq!(tracker.committable(), vec![(p(0), 5), (p(1), 8)]);
        tracker.forget(&[p(0)]);
        assert_eq!(tracker.in_flight(), 0);
        tracker.complete(&p(0), 5);
        assert_eq!(tracker.committable(), vec![(p(1), 8)]);
    }

    #[test]
    fn duplicate_begin_counts_once() {
        let mut tracker = OffsetTracker::new();
        tracker.begin(&p(0), 3);
        tracker.begin(&p(0), 3);
        assert_eq!(tracker.in_flight(), 1);
        tracker.complete(&p(0), 3);
        tracker.complete(&p(0), 3);
        assert_eq!(tracker.in_flight(), 0);
    }
}
