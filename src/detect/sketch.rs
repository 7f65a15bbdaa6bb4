//! Bounded term statistics: how common a term usually is in a district, and how often it was
//! seen lately — in fixed memory whatever the vocabulary.
//!
//! The [`super::detector`] keeps one [`CountMin`] for the whole city (district × term → decayed
//! count, the long-run share behind every term baseline) and one [`TermWindows`] per district
//! (space-saving: the recent counts of the terms that occur most, with an error bound). A flood
//! of a million distinct terms only churns the smallest entries; the sketch never grows.

use super::baseline::SparseWindow;
use rustc_hash::FxHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

const ROWS: usize = 4;

/// A count-min sketch with periodic halving. Estimates never undercount (before halving
/// rounds down), so a baseline drawn from it errs towards "already common": toward fewer
/// alerts, never more.
#[derive(Debug, Clone, PartialEq)]
pub struct CountMin {
    width: usize,
    counters: Vec<u32>,
}

impl CountMin {
    pub fn new(width: usize) -> Self {
        let width = width.max(1);
        CountMin {
            width,
            counters: vec![0; width * ROWS],
        }
    }

    /// FxHash is fixed across runs and platforms of one word size, which keeps replays
    /// identical; collisions only ever add to an estimate.
    fn cells(&self, district: &str, term: &str) -> [usize; ROWS] {
        let mut cells = [0; ROWS];
        for (row, cell) in cells.iter_mut().enumerate() {
            let mut hasher = FxHasher::default();
            (row as u64 ^ 0x9E37_79B9_7F4A_7C15).hash(&mut hasher);
            district.hash(&mut hasher);
            term.hash(&mut hasher);
            *cell = row * self.width + (hasher.finish() % self.width as u64) as usize;
        }
        cells
    }

    /// Conservative update: only the counters at the current minimum rise, which keeps
    /// estimates far tighter under a flood of distinct terms and still never undercounts.
    pub fn add(&mut self, district: &str, term: &str) {
        let cells = self.cells(district, term);
        let min = cells.iter().map(|&c| self.counters[c]).min().unwrap_or(0);
        for cell in cells {
            if self.counters[cell] == min {
                self.counters[cell] = min.saturating_add(1);
            }
        }
    }

    pub fn estimate(&self, district: &str, term: &str) -> u32 {
        self.cells(district, term)
            .iter()
            .map(|&cell| self.counters[cell])
            .min()
            .unwrap_or(0)
    }

    /// Halves every counter: the sketch forgets at the same pace as the other baselines.
    pub fn halve(&mut self) {
        for counter in &mut self.counters {
            *counter >>= 1;
        }
    }

    /// Counters held (fixed at construction).
    pub fn len(&self) -> usize {
        self.counters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }
}

/// One tracked term: its recent counts and how much of them may belong to terms it replaced.
#[derive(Debug, Clone, PartialEq)]
struct Tracked {
    window: SparseWindow,
    /// Space-saving error: the count the entry inherited when it replaced another term.
    error: u64,
    /// Insertion order, to break ties between equally small entries deterministically.
    seq: u64,
}

/// Space-saving recent counts of the most frequent terms of one district, at most `capacity`
/// terms. A term that arrives when the table is full replaces the entry with the smallest
/// window count (oldest first among equals) and inherits that count as its error, so
/// `count − error` is a guaranteed lower bound of its true recent count.
#[derive(Debug, Clone, PartialEq)]
pub struct TermWindows {
    capacity: usize,
    len_buckets: usize,
    terms: HashMap<String, Tracked>,
    seq: u64,
    /// Entries that had the smallest count at the last scan, last to be replaced first: a
    /// flood of new terms then costs one scan per `capacity` replacements, not one each.
    candidates: Vec<(u64, u64, String)>,
}

impl TermWindows {
    pub fn new(capacity: usize, len_buckets: usize) -> Self {
        TermWindows {
            capacity: capacity.max(1),
            len_buckets,
            terms: HashMap::new(),
            seq: 0,
            candidates: Vec::new(),
        }
    }

    /// Counts `term` at `bucket` (the current bucket is `now`) and returns its guaranteed
    /// window count (count − error).
    pub fn add(&mut self, term: &str, bucket: i64, now: i64) -> u64 {
        let len = self.len_buckets;
        if !self.terms.contains_key(term) {
            let mut error = 0;
            if self.terms.len() >= self.capacity {
                if let Some((count, victim)) = self.victim(now) {
                    self.terms.remove(&victim);
                    error = count;
                }
            }
            self.seq += 1;
            let mut window = SparseWindow::default();
            if error > 0 {
                window.add(now, error);
            }
            self.terms.insert(
                term.to_string(),
                Tracked {
                    window,
                    error,
                    seq: self.seq,
                },
            );
        }
        match self.terms.get_mut(term) {
            Some(entry) => {
                entry.window.add(bucket, 1);
                entry.window.total(now, len).saturating_sub(entry.error)
            }
            None => 0,
        }
    }

    /// The entry to replace: the smallest window count, oldest first among equals. Candidates
    /// from the last scan are used while they still hold that count.
    fn victim(&mut self, now: i64) -> Option<(u64, String)> {
        let len = self.len_buckets;
        for _ in 0..2 {
            while let Some((count, seq, term)) = self.candidates.pop() {
                let current = self
                    .terms
                    .get(&term)
                    .map(|e| (e.window.total(now, len), e.seq));
                if current == Some((count, seq)) {
                    return Some((count, term));
                }
            }
            let smallest = self
                .terms
                .values()
                .map(|e| e.window.total(now, len))
                .min()?;
            self.candidates = self
                .terms
                .iter()
                .map(|(t, e)| (e.window.total(now, len), e.seq, t))
                .filter(|(count, _, _)| *count == smallest)
                .map(|(count, seq, t)| (count, seq, t.clone()))
                .collect();
            // Popped from the end: the oldest (smallest seq) goes first.
            self.candidates.sort_by_key(|c| std::cmp::Reverse(c.1));
        }
        None
    }

    /// Drops entries whose window is empty; called as time moves on.
    pub fn expire(&mut self, now: i64) {
        let len = self.len_buckets;
        self.terms.retain(|_, entry| {
            entry.window.expire(now, len);
            if entry.window.is_empty() {
                return false;
            }
            // Once the inherited count has slid out of the window the count is exact again.
            if entry.window.total(now, len) < entry.error {
                entry.error = entry.window.total(now, len);
            }
            true
        });
    }

    pub fn len(&self) -> usize {
        self.terms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_min_never_undercounts_and_halves() {
        let mut sketch = CountMin::new(64);
        for i in 0..500 {
            sketch.add("雨花区", &format!("term{i}"));
        }
        for _ in 0..7 {
            sketch.add("雨花区", "爆管");
        }
        assert!(sketch.estimate("雨花区", "爆管") >= 7);
        assert_eq!(CountMin::new(1 << 12).estimate("芙蓉区", "爆管"), 0);
        let mut small = CountMin::new(1 << 12);
        for _ in 0..9 {
            small.add("芙蓉区", "爆管");
        }
        small.halve();
        assert_eq!(small.estimate("芙蓉区", "爆管"), 4);
        assert_eq!(
            small.estimate("雨花区", "爆管"),
            0,
            "districts are separate keys"
        );
    }

    #[test]
    fn space_saving_keeps_heavy_terms_while_singletons_churn() {
        let mut windows = TermWindows::new(16, 10);
        for _ in 0..5 {
            windows.add("爆管", 100, 100);
        }
        // 40 singletons over 15 free slots: the smallest entries churn, each inheriting the
        // count of the one it replaced, and stay below the heavy term.
        for i in 0..40 {
            windows.add(&format!("noise{i}"), 100, 100);
        }
        assert!(windows.len() <= 16);
        assert_eq!(
            windows.add("爆管", 101, 101),
            6,
            "heavy term kept with an exact count"
        );
        // A newcomer that replaced a counted entry reports only its guaranteed part.
        assert_eq!(windows.add("停水", 101, 101), 1);
        windows.expire(200);
        assert!(windows.is_empty());
    }
}
