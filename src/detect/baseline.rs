//! What "normal" looks like: event-time sliding windows, a district's hour-of-day rate profile,
//! and how surprising a count is against an expectation.
//!
//! Used by the [`super::detector`] for every test it runs: a window count `k` is compared with
//! the count `λ` the baseline expects over the same window, and the score is −log10 of the
//! Poisson probability of seeing `k` or more. The expectation is the district's volume for
//! this hour of the day (so a busy morning raises it and a quiet night lowers it) times the
//! share of that volume a category or term usually has.

use std::collections::VecDeque;

/// Counts per time bucket over the last `len` buckets, storing only non-empty buckets.
///
/// Bucket numbers are event-time seconds divided by the bucket width; the caller passes them.
/// The newest bucket is held in place: most windows (a term seen in one minute, a small
/// cluster) never span two buckets and so never allocate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseWindow {
    /// (bucket, count) of every bucket but the newest, oldest first; at most one entry per
    /// bucket, all older than `newest`.
    older: VecDeque<(i64, u64)>,
    /// The newest bucket held; `None` exactly when the window is empty.
    newest: Option<(i64, u64)>,
    /// Sum of every held count: a window expired up to the range asked for answers
    /// [`SparseWindow::total`] without walking its buckets, which every event does many times.
    sum: u64,
    /// The oldest and newest bucket held (when any), kept beside the buckets so that a scan
    /// of many windows for their totals does not chase each one's heap buffer.
    span: (i64, i64),
}

impl SparseWindow {
    /// Adds `amount` at `bucket`. A bucket older than the newest one held (a late event within
    /// the allowed lateness) is added in place.
    pub fn add(&mut self, bucket: i64, amount: u64) {
        self.sum += amount;
        self.span = match self.newest {
            None => (bucket, bucket),
            Some(_) => (self.span.0.min(bucket), self.span.1.max(bucket)),
        };
        // The common case first: the newest bucket again, or a newer one.
        match &mut self.newest {
            Some((b, count)) if *b == bucket => {
                *count += amount;
                return;
            }
            Some((b, count)) if *b < bucket => {
                self.older.push_back((*b, *count));
                self.newest = Some((bucket, amount));
                return;
            }
            None => {
                self.newest = Some((bucket, amount));
                return;
            }
            Some(_) => {}
        }
        match self.older.iter().rposition(|(b, _)| *b <= bucket) {
            Some(i) if self.older[i].0 == bucket => self.older[i].1 += amount,
            Some(i) => self.older.insert(i + 1, (bucket, amount)),
            None => self.older.push_front((bucket, amount)),
        }
    }

    /// Forgets buckets that fell out of a window of `len` buckets ending at `now`.
    pub fn expire(&mut self, now: i64, len: usize) {
        let oldest = now - len as i64 + 1;
        while self.older.front().is_some_and(|(b, _)| *b < oldest) {
            if let Some((_, count)) = self.older.pop_front() {
                self.sum -= count;
            }
        }
        // Every older bucket precedes the newest, so the newest goes only once they are gone.
        if let Some((b, count)) = self.newest {
            if self.older.is_empty() && b < oldest {
                self.sum -= count;
                self.newest = None;
            }
        }
        self.span.0 = self
            .older
            .front()
            .or(self.newest.as_ref())
            .map_or(0, |(b, _)| *b);
        if self.newest.is_none() {
            self.span = (0, 0);
        }
    }

    /// Total over the `len` buckets ending at `now` (inclusive).
    pub fn total(&self, now: i64, len: usize) -> u64 {
        let oldest = now - len as i64 + 1;
        if self.newest.is_none() {
            return 0;
        }
        if self.span.0 >= oldest && self.span.1 <= now {
            return self.sum;
        }
        self.iter()
            .filter(|(b, _)| *b >= oldest && *b <= now)
            .map(|(_, c)| c)
            .sum()
    }

    /// (bucket, count) pairs, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (i64, u64)> + '_ {
        self.older.iter().copied().chain(self.newest)
    }

    /// The oldest bucket with a count, if any.
    pub fn oldest(&self) -> Option<i64> {
        self.newest.is_some().then_some(self.span.0)
    }

    /// The newest bucket with a count, if any.
    pub fn newest(&self) -> Option<i64> {
        self.newest.is_some().then_some(self.span.1)
    }

    /// Empties the window, keeping its buffer for the next use (a term table's slot reused).
    pub fn clear(&mut self) {
        self.older.clear();
        self.newest = None;
        self.sum = 0;
        self.span = (0, 0);
    }

    pub fn is_empty(&self) -> bool {
        self.newest.is_none()
    }
}

/// A district's event rate per hour of the day, learned online (EWMA per hour slot).
///
/// An hour is learned when the district's event time leaves it. Hours in which nothing at all
/// arrived are not learned: that is more often an outage upstream than a quiet hour, and
/// learning it would make the next ordinary hour look like a burst.
#[derive(Debug, Clone, PartialEq)]
pub struct HourProfile {
    alpha: f64,
    /// Events per hour for each local hour of the day; `None` until that hour was seen.
    rates: [Option<f64>; 24],
    /// The hour being counted: (absolute local hour number, count).
    current: Option<(i64, u64)>,
}

impl HourProfile {
    pub fn new(alpha: f64) -> Self {
        HourProfile {
            alpha,
            rates: [None; 24],
            current: None,
        }
    }

    /// Counts one event at `local_secs` (seconds since the epoch, shifted to local time).
    pub fn observe(&mut self, local_secs: i64) {
        self.roll(local_secs);
        if let Some((_, count)) = &mut self.current {
            *count += 1;
        }
    }

    /// Moves to the hour of `local_secs`, learning the hour left behind.
    pub fn roll(&mut self, local_secs: i64) {
        let hour = local_secs.div_euclid(3600);
        match self.current {
            Some((current, _)) if current >= hour => {}
            Some((current, count)) => {
                let slot = current.rem_euclid(24) as usize;
                let count = count as f64;
                self.rates[slot] = Some(match self.rates[slot] {
                    Some(rate) => self.alpha * count + (1.0 - self.alpha) * rate,
                    None => count,
                });
                self.current = Some((hour, 0));
            }
            None => self.current = Some((hour, 0)),
        }
    }

    /// The learned rate (events per hour) for the hour of day of `local_secs`, if learned.
    pub fn rate_at(&self, local_secs: i64) -> Option<f64> {
        self.rates[local_secs.div_euclid(3600).rem_euclid(24) as usize]
    }

    /// Hour slots learned so far.
    pub fn learned_slots(&self) -> usize {
        self.rates.iter().filter(|r| r.is_some()).count()
    }
}

/// −log10 of P(X ≥ k) for X ~ Poisson(λ): 0 when `k` is not above `λ`, larger the more
/// surprising. λ is floored at 1e-6 so an unseen term is very unlikely, not impossible.
pub fn poisson_surprise(k: u64, lambda: f64) -> f64 {
    let lambda = if lambda.is_finite() {
        lambda.max(1e-6)
    } else {
        return 0.0;
    };
    let kf = k as f64;
    if kf <= lambda {
        return 0.0;
    }
    // ln P(X = k), then the tail as P(X = k) · Σ_j Π_{i=1..j} λ / (k + i).
    let ln_pk = -lambda + kf * lambda.ln() - ln_factorial(k);
    let mut sum = 1.0;
    let mut term = 1.0;
    for i in 1..10_000u64 {
        term *= lambda / (kf + i as f64);
        sum += term;
        if term < 1e-12 * sum {
            break;
        }
    }
    let ln_tail = ln_pk + sum.ln();
    (-ln_tail / std::f64::consts::LN_10).max(0.0)
}

/// ln(k!): exact sum for small k, Stirling's series beyond (error below 1e-10 there).
fn ln_factorial(k: u64) -> f64 {
    if k < 64 {
        return (2..=k).map(|i| (i as f64).ln()).sum();
    }
    let n = k as f64;
    n * n.ln() - n + 0.5 * (2.0 * std::f64::consts::PI * n).ln() + 1.0 / (12.0 * n)
        - 1.0 / (360.0 * n * n * n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_counts_only_its_buckets_and_accepts_late_buckets() {
        let mut w = SparseWindow::default();
        w.add(10, 1);
        w.add(12, 2);
        w.add(11, 4); // late, within the window
        w.add(12, 1);
        assert_eq!(w.total(12, 3), 8);
        assert_eq!(w.total(13, 3), 7, "bucket 10 slid out");
        assert_eq!(w.total(20, 3), 0);
        w.expire(13, 3);
        assert_eq!(w.total(13, 3), 7);
        w.expire(30, 3);
        assert!(w.is_empty());
        w.add(5, 1);
        assert_eq!(w.newest(), Some(5));
    }

    #[test]
    fn window_keeps_buckets_in_order_whichever_way_they_arrive() {
        let mut w = SparseWindow::default();
        assert_eq!((w.oldest(), w.newest(), w.total(5, 10)), (None, None, 0));
        w.add(20, 1);
        w.add(22, 1);
        w.add(18, 2); // late, before every bucket held
        w.add(21, 3); // late, between two held
        w.add(22, 1);
        assert_eq!(
            w.iter().collect::<Vec<_>>(),
            [(18, 2), (20, 1), (21, 3), (22, 2)]
        );
        assert_eq!((w.oldest(), w.newest()), (Some(18), Some(22)));
        assert_eq!(w.total(22, 2), 5, "buckets 21 and 22");
        w.expire(22, 2);
        assert_eq!(w.iter().collect::<Vec<_>>(), [(21, 3), (22, 2)]);
        assert_eq!((w.oldest(), w.total(22, 100)), (Some(21), 5));
        w.expire(23, 1);
        assert!(w.is_empty());
        assert_eq!((w.oldest(), w.total(23, 100)), (None, 0));
        w.add(7, 4);
        assert_eq!(
            (w.oldest(), w.newest(), w.total(7, 1)),
            (Some(7), Some(7), 4)
        );
    }

    #[test]
    fn hour_profile_learns_each_hour_of_day_separately() {
        let mut p = HourProfile::new(0.5);
        let h = |day: i64, hour: i64| (day * 24 + hour) * 3600;
        for _ in 0..10 {
            p.observe(h(0, 9));
        }
        p.observe(h(0, 3)); // an earlier hour arriving late does not roll back
        p.observe(h(0, 10));
        assert_eq!(p.rate_at(h(1, 9)), Some(11.0));
        assert_eq!(p.rate_at(h(1, 10)), None, "hour 10 is still being counted");
        for _ in 0..21 {
            p.observe(h(1, 9));
        }
        p.roll(h(1, 12));
        assert_eq!(p.rate_at(h(2, 9)), Some(16.0), "EWMA of 11 and 21");
        assert_eq!(p.rate_at(h(2, 10)), Some(1.0));
        // Hour 11 of day 1 saw nothing: not learned.
        assert_eq!(p.rate_at(h(2, 11)), None);
        assert_eq!(p.learned_slots(), 2);
    }

    #[test]
    fn poisson_surprise_matches_known_tails() {
        // P(X >= 1 | 0.5) = 1 - e^-0.5.
        let expected = -(1.0 - (-0.5f64).exp()).log10();
        assert!((poisson_surprise(1, 0.5) - expected).abs() < 1e-9);
        assert_eq!(poisson_surprise(1, 1.0), 0.0, "k not above λ");
        // P(X >= 10 | 1) ≈ 1.114e-7.
        assert!((poisson_surprise(10, 1.0) - 6.953).abs() < 0.01);
        // Large counts go through Stirling and stay finite and monotone.
        let a = poisson_surprise(500, 300.0);
        let b = poisson_surprise(600, 300.0);
        assert!(a.is_finite() && b > a && a > 10.0);
        assert_eq!(poisson_surprise(5, f64::NAN), 0.0);
        assert!(poisson_surprise(5, 0.0) > 20.0);
    }
}
