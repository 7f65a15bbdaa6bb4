//! Bounded term statistics: how common a term usually is in a district, and how often it was
//! seen lately — in fixed memory whatever the vocabulary.
//!
//! The [`super::detector`] keeps, per district, one [`CountMin`] (term → decayed count, the
//! long-run share behind every term baseline) and one [`TermWindows`] (space-saving: the recent
//! counts of the terms that occur most, with an error bound). Per district, so that collisions
//! never mix districts: a district's baselines depend only on its own events. A flood of a
//! million distinct terms only churns the smallest entries; the sketches never grow.

use super::baseline::SparseWindow;
use rustc_hash::FxHasher;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

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

    fn cells(&self, district: &str, term: &str) -> Cells {
        DistrictHashers::new(district).cells(self, term)
    }

    /// Conservative update: only the counters at the current minimum rise, which keeps
    /// estimates far tighter under a flood of distinct terms and still never undercounts.
    pub fn add(&mut self, district: &str, term: &str) {
        self.add_at(&self.cells(district, term));
    }

    /// [`CountMin::add`] at cells already located with [`DistrictHashers::cells`].
    pub fn add_at(&mut self, cells: &Cells) {
        let min = self.estimate_at(cells);
        for &cell in &cells.0 {
            if let Some(counter) = self.counters.get_mut(cell).filter(|c| **c == min) {
                *counter = min.saturating_add(1);
            }
        }
    }

    pub fn estimate(&self, district: &str, term: &str) -> u32 {
        self.estimate_at(&self.cells(district, term))
    }

    /// [`CountMin::estimate`] at cells already located with [`DistrictHashers::cells`].
    pub fn estimate_at(&self, cells: &Cells) -> u32 {
        cells
            .0
            .iter()
            .map(|&cell| self.counters.get(cell).copied().unwrap_or(0))
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

/// A term with its hash computed once, when the event's terms are collected: every map of
/// terms (term windows, cluster profiles) is keyed by it with [`TermHasher`], so the text is
/// hashed once per event instead of once per map and open cluster. Terms of up to
/// [`INLINE_BYTES`] bytes (seven Han characters: nearly all of them) are held in place, so
/// making one for each of an event's terms and copying it into a window or a profile touches
/// neither the allocator nor a reference count; longer ones share their text. Ordered by text.
#[derive(Clone)]
pub struct Term {
    hash: u64,
    text: TermText,
}

/// Longest term held in place rather than shared.
const INLINE_BYTES: usize = 22;

#[derive(Clone)]
enum TermText {
    Inline { len: u8, bytes: [u8; INLINE_BYTES] },
    Shared(Arc<str>),
}

impl Term {
    pub fn new(text: &str) -> Self {
        let mut hasher = FxHasher::default();
        text.hash(&mut hasher);
        // FxHash's low bits are weak; the maps take their bucket from the low bits and the
        // cluster filters from the high ones, so mix them all (MurmurHash3's finaliser).
        let mut h = hasher.finish();
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        let text = if text.len() <= INLINE_BYTES {
            let mut bytes = [0u8; INLINE_BYTES];
            bytes[..text.len()].copy_from_slice(text.as_bytes());
            TermText::Inline {
                len: text.len() as u8,
                bytes,
            }
        } else {
            TermText::Shared(Arc::from(text))
        };
        Term { hash: h, text }
    }

    fn bytes(&self) -> &[u8] {
        match &self.text {
            TermText::Inline { len, bytes } => &bytes[..usize::from(*len)],
            TermText::Shared(text) => text.as_bytes(),
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.text {
            // Copied whole from a `&str`, so always valid; the check costs a few bytes' scan.
            TermText::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            TermText::Shared(text) => text,
        }
    }

    /// The mixed hash of the text.
    pub fn hash_value(&self) -> u64 {
        self.hash
    }
}

impl std::fmt::Debug for Term {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Term").field(&self.as_str()).finish()
    }
}

impl PartialEq for Term {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.bytes() == other.bytes()
    }
}

impl Eq for Term {}

impl Hash for Term {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialOrd for Term {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Term {
    /// Byte order, which is `str`'s order.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.bytes().cmp(other.bytes())
    }
}

impl std::fmt::Display for Term {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Hashes a [`Term`] by passing its precomputed hash through.
#[derive(Debug, Clone, Copy, Default)]
pub struct TermHasher(u64);

impl Hasher for TermHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }

    /// Only [`Term`] keys are meant for this hasher; anything else still hashes correctly.
    fn write(&mut self, bytes: &[u8]) {
        let mut hasher = FxHasher::with_seed(self.0 as usize);
        hasher.write(bytes);
        self.0 = hasher.finish();
    }
}

/// A map keyed by [`Term`].
pub type TermMap<V> = HashMap<Term, V, BuildHasherDefault<TermHasher>>;

/// A set of [`Term`]s.
pub type TermSet = HashSet<Term, BuildHasherDefault<TermHasher>>;

/// Where one district × term lands in a [`CountMin`]: one counter per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cells([usize; ROWS]);

/// The row hashers with the district already hashed in: an event hashes its district once,
/// not once per term and row. FxHash is fixed across runs and platforms of one word size,
/// which keeps replays identical; collisions only ever add to an estimate.
#[derive(Clone)]
pub struct DistrictHashers([FxHasher; ROWS]);

impl DistrictHashers {
    pub fn new(district: &str) -> Self {
        DistrictHashers(std::array::from_fn(|row| {
            let mut hasher = FxHasher::default();
            (row as u64 ^ 0x9E37_79B9_7F4A_7C15).hash(&mut hasher);
            district.hash(&mut hasher);
            hasher
        }))
    }

    /// The cells of `term` in `sketch` (a sketch of the district these hashers were made for).
    pub fn cells(&self, sketch: &CountMin, term: &str) -> Cells {
        let width = sketch.width;
        Cells(std::array::from_fn(|row| {
            let mut hasher = self.0[row].clone();
            term.hash(&mut hasher);
            row * width + (hasher.finish() % width as u64) as usize
        }))
    }
}

/// One slot of a [`TermWindows`] table: a tracked term with its recent counts and how much
/// of them may belong to terms it replaced, or a free slot (`seq == 0`).
#[derive(Debug, Clone, PartialEq)]
struct Slot {
    term: Term,
    window: SparseWindow,
    /// Space-saving error: the count the entry inherited when it replaced another term.
    error: u64,
    /// Insertion order (from 1), to break ties between equally small entries
    /// deterministically; with the slot it names the entry, so a listing made for an entry
    /// since replaced or dropped no longer matches. 0 marks a free slot.
    seq: u64,
    /// The bucket under which the entry waits in [`TermWindows::due`]: at most its oldest one.
    due: i64,
}

/// Space-saving recent counts of the most frequent terms of one district, at most `capacity`
/// terms. A term that arrives when the table is full replaces the entry with the smallest
/// window count (oldest first among equals) and inherits that count as its error, so
/// `count − error` is a guaranteed lower bound of its true recent count.
///
/// Entries live in a slab of at most `capacity` slots; the term map only points into it. The
/// bookkeeping lists (replacement candidates, expiry) name slots, not terms, so checking or
/// replacing an entry costs no hashing and no copy of its text.
#[derive(Debug, Clone, PartialEq)]
pub struct TermWindows {
    capacity: usize,
    len_buckets: usize,
    /// Term → its slot. Probed for every term of every event; never read in iteration order.
    index: TermMap<u32>,
    /// Live and free slots; never more than `capacity`.
    slots: Vec<Slot>,
    /// Slots freed by expiry, reused before the slab grows.
    free: Vec<u32>,
    seq: u64,
    /// (count, seq, slot) of the entries that had the smallest count at the last scan, last
    /// to be replaced first: a flood of new terms then costs one scan per `capacity`
    /// replacements, not one each.
    candidates: Vec<(u64, u64, u32)>,
    /// (slot, seq) of entries by a bucket no later than their oldest: only those whose bucket
    /// slid out of the window can change when time moves on, so expiry visits them and not
    /// the table. An entry is listed once under its `due` bucket; other listings are
    /// left-overs (replaced entries, or an earlier bucket added late) and are skipped.
    due: BTreeMap<i64, Vec<(u32, u64)>>,
    /// Emptied lists of `due`, reused for new buckets (at most [`SPARE_LISTS`]), so a new
    /// minute does not grow a list from nothing again.
    spare: Vec<Vec<(u32, u64)>>,
}

/// Emptied expiry lists kept for reuse by one [`TermWindows`].
const SPARE_LISTS: usize = 8;

/// Lists `item` under `bucket` in an expiry map, on a spare list when the bucket is new.
fn list_due(
    due: &mut BTreeMap<i64, Vec<(u32, u64)>>,
    spare: &mut Vec<Vec<(u32, u64)>>,
    bucket: i64,
    item: (u32, u64),
) {
    due.entry(bucket)
        .or_insert_with(|| spare.pop().unwrap_or_default())
        .push(item);
}

impl TermWindows {
    pub fn new(capacity: usize, len_buckets: usize) -> Self {
        TermWindows {
            capacity: capacity.max(1),
            len_buckets,
            index: TermMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            seq: 0,
            candidates: Vec::new(),
            due: BTreeMap::new(),
            spare: Vec::new(),
        }
    }

    /// Counts `term` at `bucket` (the current bucket is `now`) and returns its guaranteed
    /// window count (count − error).
    pub fn add(&mut self, term: &Term, bucket: i64, now: i64) -> u64 {
        let len = self.len_buckets;
        let live = self.index.len();
        let vacant = match self.index.entry(term.clone()) {
            Entry::Occupied(found) => {
                let slot = *found.get();
                let Some(entry) = self.slots.get_mut(slot as usize) else {
                    return 0;
                };
                entry.window.add(bucket, 1);
                if bucket < entry.due {
                    entry.due = bucket;
                    list_due(&mut self.due, &mut self.spare, bucket, (slot, entry.seq));
                }
                return entry.window.total(now, len).saturating_sub(entry.error);
            }
            Entry::Vacant(vacant) => vacant,
        };
        let mut error = 0;
        let mut replaced = None;
        if live >= self.capacity {
            if let Some((count, victim)) =
                Self::victim(&mut self.candidates, &self.slots, live, len, now)
            {
                error = count;
                replaced = Some(victim);
            }
        }
        self.seq += 1;
        let slot = match replaced.or_else(|| self.free.pop()) {
            Some(slot) => slot,
            None => {
                self.slots.push(Slot {
                    term: term.clone(),
                    window: SparseWindow::default(),
                    error: 0,
                    seq: 0,
                    due: 0,
                });
                // At most `capacity` slots (a `usize` table), far below `u32::MAX`.
                (self.slots.len() - 1) as u32
            }
        };
        vacant.insert(slot);
        let Some(entry) = self.slots.get_mut(slot as usize) else {
            return 0;
        };
        if replaced.is_some() {
            // Inserted first and removed after: one probe fewer than the other way round,
            // and the map, never iterated, is the same.
            self.index.remove(&entry.term);
        }
        entry.window.clear();
        if error > 0 {
            entry.window.add(now, error);
        }
        entry.window.add(bucket, 1);
        let count = entry.window.total(now, len).saturating_sub(error);
        let due = entry.window.oldest().unwrap_or(bucket);
        entry.term = term.clone();
        entry.error = error;
        entry.seq = self.seq;
        entry.due = due;
        list_due(&mut self.due, &mut self.spare, due, (slot, self.seq));
        count
    }

    /// The entry to replace, as (its window count, its slot): the smallest window count,
    /// oldest first among equals. Candidates from the last scan are used while they still
    /// hold that count.
    fn victim(
        candidates: &mut Vec<(u64, u64, u32)>,
        slots: &[Slot],
        live: usize,
        len: usize,
        now: i64,
    ) -> Option<(u64, u32)> {
        for _ in 0..2 {
            while let Some((count, seq, slot)) = candidates.pop() {
                let current = slots
                    .get(slot as usize)
                    .filter(|e| e.seq == seq)
                    .map(|e| e.window.total(now, len));
                if current == Some(count) {
                    return Some((count, slot));
                }
            }
            if live == 0 {
                return None;
            }
            // One pass: the entries at the smallest count seen so far.
            let mut smallest = u64::MAX;
            for (slot, entry) in slots.iter().enumerate() {
                if entry.seq == 0 {
                    continue;
                }
                let count = entry.window.total(now, len);
                if count < smallest {
                    smallest = count;
                    candidates.clear();
                }
                if count == smallest {
                    candidates.push((count, entry.seq, slot as u32));
                }
            }
            // Popped from the end: the oldest (smallest seq) goes first.
            candidates.sort_unstable_by_key(|c| std::cmp::Reverse(c.1));
        }
        None
    }

    /// Drops entries whose window is empty; called as time moves on.
    ///
    /// An entry whose buckets are all still in the window is left as it is: its count did
    /// not drop, so neither can its error need lowering (the error is at most the count after
    /// every expiry, and counts only grow in between).
    pub fn expire(&mut self, now: i64) {
        let len = self.len_buckets;
        let oldest = now - len as i64 + 1;
        while let Some(listed) = self.due.first_entry() {
            if *listed.key() >= oldest {
                break;
            }
            let (bucket, mut entries) = listed.remove_entry();
            for (slot, seq) in entries.drain(..) {
                let Some(entry) = self.slots.get_mut(slot as usize) else {
                    continue;
                };
                if entry.seq != seq || entry.due != bucket {
                    continue;
                }
                entry.window.expire(now, len);
                let Some(first) = entry.window.oldest() else {
                    self.index.remove(&entry.term);
                    entry.seq = 0;
                    self.free.push(slot);
                    continue;
                };
                // Once the inherited count has slid out of the window the count is exact again.
                if entry.window.total(now, len) < entry.error {
                    entry.error = entry.window.total(now, len);
                }
                entry.due = first;
                list_due(&mut self.due, &mut self.spare, first, (slot, seq));
            }
            if self.spare.len() < SPARE_LISTS {
                self.spare.push(entries);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_shared_terms_compare_hash_and_order_as_their_text() {
        let short = "爆管"; // 6 bytes: inline
        let edge = "一二三四五六七"; // 21 bytes: inline
        let long = "一二三四五六七八"; // 24 bytes: shared
        let mut words = vec![long, "a", edge, short, "", "一二三四五六七八九"];
        let mut terms: Vec<Term> = words.iter().map(|w| Term::new(w)).collect();
        for (t, w) in terms.iter().zip(&words) {
            assert_eq!(t.as_str(), *w);
            assert_eq!(t.to_string(), *w);
            assert_eq!(t, &Term::new(w));
            assert_eq!(t.clone().as_str(), *w);
        }
        assert_ne!(Term::new(edge), Term::new(long));
        terms.sort();
        words.sort();
        let sorted: Vec<&str> = terms.iter().map(Term::as_str).collect();
        assert_eq!(sorted, words, "terms sort as their text does");
        let mut map = TermMap::default();
        map.insert(Term::new(long), 1);
        map.insert(Term::new(short), 2);
        assert_eq!(map.get(&Term::new(long)), Some(&1));
        assert_eq!(map.get(&Term::new(short)), Some(&2));
        assert_eq!(map.get(&Term::new(edge)), None);
    }

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
            windows.add(&Term::new("爆管"), 100, 100);
        }
        // 40 singletons over 15 free slots: the smallest entries churn, each inheriting the
        // count of the one it replaced, and stay below the heavy term.
        for i in 0..40 {
            windows.add(&Term::new(&format!("noise{i}")), 100, 100);
        }
        assert!(windows.len() <= 16);
        assert_eq!(
            windows.add(&Term::new("爆管"), 101, 101),
            6,
            "heavy term kept with an exact count"
        );
        // A newcomer that replaced a counted entry reports only its guaranteed part.
        assert_eq!(windows.add(&Term::new("停水"), 101, 101), 1);
        windows.expire(200);
        assert!(windows.is_empty());
    }

    #[test]
    fn expiry_forgets_exactly_the_buckets_that_slid_out_late_ones_included() {
        let (a, b, c) = (Term::new("爆管"), Term::new("停水"), Term::new("积水"));
        let mut windows = TermWindows::new(2, 10);
        windows.add(&a, 100, 100);
        assert_eq!(windows.add(&a, 105, 105), 2);
        assert_eq!(windows.add(&b, 105, 105), 1);
        // Full: the newcomer replaces the smaller entry and reports only its own report.
        assert_eq!(windows.add(&c, 106, 106), 1);
        windows.expire(110);
        assert_eq!(windows.add(&a, 110, 110), 2, "bucket 100 slid out");
        windows.expire(116);
        assert_eq!(windows.len(), 1, "the newcomer's only bucket slid out");
        // A late report puts an older bucket in front of the entry; it slides out first.
        assert_eq!(windows.add(&a, 108, 116), 2);
        windows.expire(118);
        assert_eq!(windows.add(&a, 118, 118), 2, "late bucket 108 slid out");
        windows.expire(130);
        assert!(windows.is_empty());
    }
}
