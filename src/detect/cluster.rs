//! Incident clustering: reports about the same thing in one district, close in time, across
//! channels, share one cluster and so one `incident_id`.
//!
//! Called by the [`super::detector`] for every relevant report that names a district. Each
//! report is compared with the district's open clusters — how much of its IDF-weighted terms
//! the cluster explains — and joins the best one above the threshold, or starts its own. This is the single-pass clustering of topic
//! detection and tracking rather than a SimHash: one incident arrives in several wordings (a
//! short post, a long 12345 work order, a terse 110 record) that share few words but the rare
//! ones — the place, "爆管", "煤气" — and weighting by rarity is what links them, where a
//! SimHash only links copies of one wording.

use super::baseline::SparseWindow;
use super::sketch::{Term, TermMap};
use crate::event::Channel;
use chrono::{DateTime, FixedOffset};
use sha2::{Digest, Sha256};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

/// Sample event ids kept per cluster (and per alert).
pub const SAMPLE_IDS: usize = 10;

/// A short stable id from content: the first 16 hex digits of SHA-256 over the parts.
pub fn content_id(prefix: &str, parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    let digest = hasher.finalize();
    format!("{prefix}-{}", hex::encode(&digest[..8]))
}

/// One term of a cluster's profile.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileTerm {
    /// Reports of the cluster containing the term.
    pub count: u64,
    /// Those reports per time bucket, for the incident window.
    pub window: SparseWindow,
    /// The term's IDF weight when it entered the profile, for ranking the cluster's terms.
    pub weight: f64,
}

/// One report, as the clusterer sees it.
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    pub event_id: &'a str,
    pub channel: Channel,
    pub at: DateTime<FixedOffset>,
    pub bucket: i64,
    pub priority: u8,
    pub emotional: bool,
    pub category: &'a str,
    /// The incident id it was published with, when state is rebuilt ([`super::DetectInput`]).
    pub published_incident: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// The incident id: derived from the district and the first report's id, or the id that
    /// report was published with when state is rebuilt from output events.
    pub id: String,
    pub first_seen: DateTime<FixedOffset>,
    pub last_seen: DateTime<FixedOffset>,
    pub size: u64,
    /// Reports per time bucket.
    pub members: SparseWindow,
    /// Probed for the terms an event shares with the cluster (found through the district's
    /// [`Clusters`] index). Nothing reads the map in its iteration order.
    pub terms: TermMap<ProfileTerm>,
    pub channels: BTreeSet<Channel>,
    /// Reports per category (bounded: at most 8 categories kept).
    pub categories: BTreeMap<String, u64>,
    pub sample_ids: Vec<String>,
    pub min_priority: u8,
    pub emotional: u64,
    /// Creation order within the detector, to break ties deterministically.
    pub seq: u64,
    /// The cluster's bit in its district's signatures (set by [`Clusters::push`]).
    slot: usize,
}

impl Cluster {
    pub fn new(district: &str, first: &Member<'_>, seq: u64) -> Self {
        Cluster {
            id: match first.published_incident {
                Some(published) => published.to_string(),
                None => content_id("inc", &[district, first.event_id]),
            },
            first_seen: first.at,
            last_seen: first.at,
            size: 0,
            members: SparseWindow::default(),
            terms: TermMap::default(),
            channels: BTreeSet::new(),
            categories: BTreeMap::new(),
            sample_ids: Vec::new(),
            min_priority: u8::MAX,
            emotional: 0,
            seq,
            slot: 0,
        }
    }

    /// How much of the report the cluster explains: the share of the report's squared term
    /// weight carried by terms the cluster has, each counted in full once at least half of the
    /// cluster's reports contain it. Containment rather than cosine, because a short post
    /// about an incident is wholly inside the incident's long work orders.
    pub fn similarity(&self, terms: &[(Term, f64)], terms_weight: f64) -> f64 {
        if self.size == 0 || terms_weight <= 0.0 {
            return 0.0;
        }
        let size = self.size as f64;
        let explained: f64 = terms
            .iter()
            .filter_map(|(t, w)| {
                let share = self.terms.get(t)?.count as f64 / size;
                Some(w * w * (2.0 * share).min(1.0))
            })
            .sum();
        explained / terms_weight
    }

    /// Adds one report with its weighted terms. The profile keeps at most `max_terms` terms:
    /// when full, a new term replaces a term seen only once (the alphabetically first), or is
    /// left out when every term was seen more than once.
    pub fn add(&mut self, member: &Member<'_>, terms: &[(Term, f64)], max_terms: usize) {
        self.add_noting(member, terms, max_terms, |_, _| {});
    }

    /// [`Cluster::add`], telling `changed` each term that enters (`true`) or leaves (`false`)
    /// the profile, so an index of the profiles can follow.
    fn add_noting(
        &mut self,
        member: &Member<'_>,
        terms: &[(Term, f64)],
        max_terms: usize,
        mut changed: impl FnMut(&Term, bool),
    ) {
        self.size += 1;
        self.members.add(member.bucket, 1);
        self.first_seen = self.first_seen.min(member.at);
        self.last_seen = self.last_seen.max(member.at);
        self.channels.insert(member.channel);
        self.min_priority = self.min_priority.min(member.priority);
        self.emotional += u64::from(member.emotional);
        if let Some(count) = self.categories.get_mut(member.category) {
            *count += 1;
        } else if self.categories.len() < 8 {
            self.categories.insert(member.category.to_string(), 1);
        }
        if self.sample_ids.len() < SAMPLE_IDS {
            self.sample_ids.push(member.event_id.to_string());
        }
        // Terms seen once, alphabetically first on top: built when the first replacement is
        // needed, fed with the terms this report adds, checked when popped (a term may have
        // been counted again since) — the same victim as a scan of the profile each time.
        let mut once: Option<BinaryHeap<Reverse<Term>>> = None;
        if self.terms.is_empty() {
            // A new cluster takes in a whole report at once: size the profile for it rather
            // than grow it step by step (nothing reads the map in its iteration order).
            self.terms.reserve(terms.len().min(max_terms));
        }
        for (term, weight) in terms {
            if let Some(entry) = self.terms.get_mut(term) {
                entry.count += 1;
                entry.window.add(member.bucket, 1);
                continue;
            }
            if self.terms.len() >= max_terms {
                let heap = once.get_or_insert_with(|| {
                    self.terms
                        .iter()
                        .filter(|(_, p)| p.count <= 1)
                        .map(|(t, _)| Reverse(t.clone()))
                        .collect()
                });
                let victim = std::iter::from_fn(|| heap.pop())
                    .find(|Reverse(t)| self.terms.get(t).is_some_and(|p| p.count <= 1));
                match victim {
                    Some(Reverse(victim)) => {
                        self.terms.remove(&victim);
                        changed(&victim, false);
                    }
                    None => continue,
                }
            }
            let mut window = SparseWindow::default();
            window.add(member.bucket, 1);
            self.terms.insert(
                term.clone(),
                ProfileTerm {
                    count: 1,
                    window,
                    weight: *weight,
                },
            );
            changed(term, true);
            if let Some(heap) = once.as_mut() {
                heap.push(Reverse(term.clone()));
            }
        }
    }

    /// Takes in another cluster of the same district (two wordings of one incident that grew
    /// apart). Its terms, channels and samples join this one; the other is dropped by the caller.
    pub fn absorb(&mut self, other: Cluster, max_terms: usize) {
        self.absorb_noting(other, max_terms, |_| {});
    }

    /// [`Cluster::absorb`], telling `entered` each term that enters this profile.
    fn absorb_noting(&mut self, other: Cluster, max_terms: usize, mut entered: impl FnMut(&Term)) {
        self.size += other.size;
        for (bucket, count) in other.members.iter() {
            self.members.add(bucket, count);
        }
        self.first_seen = self.first_seen.min(other.first_seen);
        self.last_seen = self.last_seen.max(other.last_seen);
        self.channels.extend(other.channels);
        self.min_priority = self.min_priority.min(other.min_priority);
        self.emotional += other.emotional;
        for (category, count) in other.categories {
            if let Some(mine) = self.categories.get_mut(&category) {
                *mine += count;
            } else if self.categories.len() < 8 {
                self.categories.insert(category, count);
            }
        }
        for id in other.sample_ids {
            if self.sample_ids.len() < SAMPLE_IDS && !self.sample_ids.contains(&id) {
                self.sample_ids.push(id);
            }
        }
        let mut incoming: Vec<(Term, ProfileTerm)> = other.terms.into_iter().collect();
        incoming.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(&b.0)));
        for (term, profile) in incoming {
            if let Some(mine) = self.terms.get_mut(&term) {
                mine.count += profile.count;
                for (bucket, count) in profile.window.iter() {
                    mine.window.add(bucket, count);
                }
            } else if self.terms.len() < max_terms {
                entered(&term);
                self.terms.insert(term, profile);
            }
        }
    }

    /// Reports within the `len` buckets ending at `now`.
    pub fn recent(&self, now: i64, len: usize) -> u64 {
        self.members.total(now, len)
    }

    /// Terms contained in at least `share` of the cluster's recent reports, with their recent
    /// count, most frequent first (ties alphabetical).
    pub fn core_terms(&self, now: i64, len: usize, share: f64) -> Vec<(&str, u64)> {
        let recent = self.recent(now, len) as f64;
        let mut core: Vec<(&str, u64)> = self
            .terms
            .iter()
            .map(|(t, p)| (t, p.window.total(now, len)))
            .filter(|(_, k)| *k > 0 && *k as f64 >= share * recent)
            .map(|(t, k)| (t.as_str(), k))
            .collect();
        core.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        core
    }

    /// The most characteristic terms: most reports first, rarer (heavier) first among equals.
    pub fn top_terms(&self, n: usize) -> Vec<String> {
        let mut terms: Vec<(&Term, &ProfileTerm)> = self.terms.iter().collect();
        terms.sort_by(|a, b| {
            let score = |p: &ProfileTerm| p.count as f64 * p.weight;
            score(b.1).total_cmp(&score(a.1)).then_with(|| a.0.cmp(b.0))
        });
        terms
            .into_iter()
            .take(n)
            .map(|(t, _)| t.as_str().to_string())
            .collect()
    }

    /// The category most of the reports have (ties alphabetical).
    pub fn main_category(&self) -> Option<String> {
        self.categories
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
            .map(|(c, _)| c.clone())
    }

    /// Forgets window buckets older than the `len` buckets ending at `now`.
    pub fn expire(&mut self, now: i64, len: usize) {
        self.members.expire(now, len);
        for profile in self.terms.values_mut() {
            profile.window.expire(now, len);
        }
    }
}

/// Rows of the clusters' signatures: each term sets [`SIGNATURE_HASHES`] of them.
const SIGNATURE_ROWS: usize = 1024;
const SIGNATURE_HASHES: usize = 3;
/// Terms a profile may lose (their bits stay set) before its signature is rebuilt.
const STALE_REBUILD: u32 = 32;

/// Which open clusters may hold a term: a Bloom filter per cluster (1024 bits, three per
/// term, from the term's hash), stored bit-sliced — per bit, one bit per cluster slot — so a
/// term finds its candidate clusters with three row reads instead of a test per cluster. No
/// false negatives; a false positive (about 0.5% of clusters with a full profile) only costs
/// a probe of that cluster's profile.
#[derive(Debug, Clone, Default, PartialEq)]
struct Signatures {
    /// Words per row: one bit per slot.
    words: usize,
    /// [`SIGNATURE_ROWS`] rows of `words` words, row after row.
    rows: Vec<u64>,
    /// Per slot, terms that left the profile since its bits were last built: their bits stay
    /// set until a rebuild.
    stale: Vec<u32>,
}

impl Signatures {
    fn positions(term: &Term) -> [usize; SIGNATURE_HASHES] {
        // The high bits: the term maps take their buckets from the low ones.
        let hash = term.hash_value();
        std::array::from_fn(|k| (hash >> (34 + 10 * k)) as usize % SIGNATURE_ROWS)
    }

    /// Makes room for `slot`.
    fn ensure(&mut self, slot: usize) {
        let words = slot / 64 + 1;
        if words > self.words {
            let mut rows = vec![0u64; SIGNATURE_ROWS * words];
            if self.words > 0 {
                for (new, old) in rows
                    .chunks_exact_mut(words)
                    .zip(self.rows.chunks_exact(self.words))
                {
                    new[..old.len()].copy_from_slice(old);
                }
            }
            self.rows = rows;
            self.words = words;
        }
        if self.stale.len() <= slot {
            self.stale.resize(slot + 1, 0);
        }
    }

    fn insert(&mut self, slot: usize, term: &Term) {
        let (word, bit) = (slot / 64, 1u64 << (slot % 64));
        for row in Self::positions(term) {
            if let Some(w) = self.rows.get_mut(row * self.words + word) {
                *w |= bit;
            }
        }
    }

    /// Clears the slot's bits, `terms` being the profile's terms: only their rows when no
    /// term left the profile since the bits were built (then they set every bit), else every
    /// row.
    fn clear<'a>(&mut self, slot: usize, terms: impl Iterator<Item = &'a Term>) {
        let (word, bit) = (slot / 64, 1u64 << (slot % 64));
        let Some(stale) = self.stale.get_mut(slot) else {
            return;
        };
        if *stale == 0 {
            for term in terms {
                for row in Self::positions(term) {
                    if let Some(w) = self.rows.get_mut(row * self.words + word) {
                        *w &= !bit;
                    }
                }
            }
            return;
        }
        *stale = 0;
        for row in self.rows.chunks_exact_mut(self.words.max(1)) {
            if let Some(w) = row.get_mut(word) {
                *w &= !bit;
            }
        }
    }

    /// Rebuilds the slot's bits from the profile's terms once enough are stale.
    fn rebuild_if_stale<'a>(&mut self, slot: usize, terms: impl Iterator<Item = &'a Term>) {
        if self.stale.get(slot).is_none_or(|s| *s < STALE_REBUILD) {
            return;
        }
        self.clear(slot, std::iter::empty());
        for term in terms {
            self.insert(slot, term);
        }
    }
}

/// A district's open clusters, oldest first (so in [`Cluster::seq`] order), with the
/// signatures that tell which of them may hold a term.
///
/// A report is compared only with the clusters that share one of its terms, and a burst
/// looks only at the clusters holding its term, instead of probing every open cluster for
/// every term. Every change of a profile goes through these methods, so the signatures follow
/// it. Each cluster holds a slot (a bit in every signature row) from opening to closing; there
/// are as many slots as clusters were ever open at once — at most `max_clusters_per_district`
/// — so the signatures take 1024 × ⌈slots / 64⌉ words (16 KiB at the default cap). Read
/// access is the slice of clusters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Clusters {
    list: Vec<Cluster>,
    signatures: Signatures,
    /// Per slot, the index of its cluster in `list` (`usize::MAX` when free).
    position: Vec<usize>,
    free: Vec<usize>,
    /// Per slot, the similarity being summed for the report at hand, and the slots it
    /// touched: kept to spare an allocation per report (at most one entry per slot).
    explained: Vec<f64>,
    touched: Vec<usize>,
}

impl std::ops::Deref for Clusters {
    type Target = [Cluster];

    fn deref(&self) -> &[Cluster] {
        &self.list
    }
}

impl Clusters {
    /// Opens `cluster` (a new cluster: its seq is the highest so far).
    pub fn push(&mut self, mut cluster: Cluster) {
        let slot = self.free.pop().unwrap_or(self.position.len());
        self.signatures.ensure(slot);
        if self.position.len() <= slot {
            self.position.resize(slot + 1, usize::MAX);
        }
        cluster.slot = slot;
        for term in cluster.terms.keys() {
            self.signatures.insert(slot, term);
        }
        self.position[slot] = self.list.len();
        self.list.push(cluster);
    }

    /// Closes the cluster at `index` and returns it.
    pub fn remove(&mut self, index: usize) -> Cluster {
        let cluster = self.list.remove(index);
        self.release(&cluster);
        self.reposition();
        cluster
    }

    /// Keeps only the clusters for which `keep` holds, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&Cluster) -> bool) {
        let mut closed = false;
        let mut list = std::mem::take(&mut self.list);
        list.retain(|cluster| {
            let kept = keep(cluster);
            if !kept {
                self.release(cluster);
                closed = true;
            }
            kept
        });
        self.list = list;
        if closed {
            self.reposition();
        }
    }

    /// Adds a report to the cluster at `index` (see [`Cluster::add`]).
    pub fn add(&mut self, index: usize, member: &Member<'_>, terms: &[(Term, f64)], max: usize) {
        let Some(cluster) = self.list.get_mut(index) else {
            return;
        };
        let slot = cluster.slot;
        let signatures = &mut self.signatures;
        cluster.add_noting(member, terms, max, |term, entered| {
            if entered {
                signatures.insert(slot, term);
            } else if let Some(stale) = signatures.stale.get_mut(slot) {
                *stale += 1;
            }
        });
        signatures.rebuild_if_stale(slot, cluster.terms.keys());
    }

    /// Moves the cluster at `from` into the one at `into` (see [`Cluster::absorb`]); returns
    /// where `into` is afterwards.
    pub fn absorb(&mut self, into: usize, from: usize, max_terms: usize) -> usize {
        if into == from || into >= self.list.len() || from >= self.list.len() {
            return into;
        }
        let other = self.remove(from);
        let into = if into > from { into - 1 } else { into };
        if let Some(cluster) = self.list.get_mut(into) {
            let slot = cluster.slot;
            let signatures = &mut self.signatures;
            cluster.absorb_noting(other, max_terms, |term| signatures.insert(slot, term));
        }
        into
    }

    /// Forgets window buckets of the cluster at `index` (see [`Cluster::expire`]).
    pub fn expire(&mut self, index: usize, now: i64, len: usize) {
        if let Some(cluster) = self.list.get_mut(index) {
            cluster.expire(now, len);
        }
    }

    /// Indices of the clusters that may hold `term` (every one that does, and rarely one that
    /// does not: check its profile), in no particular order.
    pub fn may_hold<'a>(&'a self, term: &Term) -> impl Iterator<Item = usize> + 'a {
        self.slots_for(term)
            .filter_map(|slot| self.position.get(slot).copied())
            .filter(|&i| i < self.list.len())
    }

    /// The cluster most similar to a report with `terms` ([`Cluster::similarity`]) among those
    /// at least `threshold` similar; the older one among equals.
    pub fn most_similar(&mut self, terms: &[(Term, f64)], threshold: f64) -> Option<usize> {
        let weight = terms.iter().map(|(_, w)| w * w).sum::<f64>();
        let better =
            |a: &(f64, usize), b: &(f64, usize)| a.0.total_cmp(&b.0).then_with(|| b.1.cmp(&a.1));
        if threshold.is_nan() || threshold <= 0.0 {
            // A cluster sharing no term is 0 similar, which such a threshold admits: only a
            // scan of every cluster sees those.
            return self
                .list
                .iter()
                .enumerate()
                .map(|(i, c)| (c.similarity(terms, weight), i))
                .filter(|(s, _)| *s >= threshold)
                .max_by(better)
                .map(|(_, i)| i);
        }
        // The same sum as `similarity`, term by term in the report's order, over the clusters
        // that hold each term: the others explain nothing and stay below any threshold > 0.
        // NaN marks a slot no term has reached yet (a share never is NaN).
        let mut explained = std::mem::take(&mut self.explained);
        let mut touched = std::mem::take(&mut self.touched);
        explained.clear();
        explained.resize(self.position.len(), f64::NAN);
        touched.clear();
        for (term, w) in terms {
            for slot in self.slots_for(term) {
                let Some(cluster) = self.position.get(slot).and_then(|&i| self.list.get(i)) else {
                    continue;
                };
                let Some(profile) = cluster.terms.get(term) else {
                    continue;
                };
                let Some(sum) = explained.get_mut(slot) else {
                    continue;
                };
                if sum.is_nan() {
                    *sum = 0.0;
                    touched.push(slot);
                }
                let share = profile.count as f64 / cluster.size as f64;
                *sum += w * w * (2.0 * share).min(1.0);
            }
        }
        let best = touched
            .iter()
            .filter_map(|&slot| {
                let i = *self.position.get(slot)?;
                let cluster = self.list.get(i)?;
                let similarity = if cluster.size == 0 || weight <= 0.0 {
                    0.0
                } else {
                    explained.get(slot)? / weight
                };
                Some((similarity, i))
            })
            .filter(|(s, _)| *s >= threshold)
            .max_by(better)
            .map(|(_, i)| i);
        self.explained = explained;
        self.touched = touched;
        best
    }

    /// Slots whose signature admits `term`.
    fn slots_for<'a>(&'a self, term: &Term) -> impl Iterator<Item = usize> + 'a {
        let words = self.signatures.words;
        let rows = Signatures::positions(term).map(|p| {
            self.signatures
                .rows
                .get(p * words..(p + 1) * words)
                .unwrap_or_default()
        });
        (0..words).flat_map(move |w| {
            let mut bits = rows
                .iter()
                .fold(u64::MAX, |m, row| m & row.get(w).copied().unwrap_or(0));
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let bit = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                Some(w * 64 + bit)
            })
        })
    }

    /// Frees a closed cluster's slot.
    fn release(&mut self, cluster: &Cluster) {
        let slot = cluster.slot;
        self.signatures.clear(slot, cluster.terms.keys());
        if let Some(position) = self.position.get_mut(slot) {
            *position = usize::MAX;
        }
        self.free.push(slot);
    }

    /// Records where each cluster is after clusters were closed.
    fn reposition(&mut self) {
        for (i, cluster) in self.list.iter().enumerate() {
            if let Some(position) = self.position.get_mut(cluster.slot) {
                *position = i;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_full_profile_replaces_the_first_term_seen_once_even_one_just_added() {
        let at = FixedOffset::east_opt(8 * 3600)
            .and_then(|tz| tz.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).single())
            .expect("valid time");
        let member = Member {
            event_id: "12345:1",
            channel: Channel::Hotline12345,
            at,
            bucket: 100,
            priority: 3,
            emotional: false,
            category: "城乡建设",
            published_incident: None,
        };
        let terms = |words: &[&str]| -> Vec<(Term, f64)> {
            words.iter().map(|w| (Term::new(w), 1.0)).collect()
        };
        let mut cluster = Cluster::new("雨花区", &member, 1);
        cluster.add(&member, &terms(&["b", "a"]), 2);
        // "b" is counted again; "c" replaces "a"; "a0" then replaces "c", added just before.
        cluster.add(&member, &terms(&["b", "c", "a0"]), 2);
        let mut held: Vec<(&str, u64)> = cluster
            .terms
            .iter()
            .map(|(t, p)| (t.as_str(), p.count))
            .collect();
        held.sort();
        assert_eq!(held, vec![("a0", 1), ("b", 2)]);
        // The similarity sees every held term.
        let probe = terms(&["b", "a0", "c"]);
        let expected = (1.0 + 1.0) / 3.0;
        assert!((cluster.similarity(&probe, 3.0) - expected).abs() < 1e-12);
    }

    /// What the detector did before the signatures: every open cluster scored in turn.
    fn scan_most_similar(list: &[Cluster], terms: &[(Term, f64)], threshold: f64) -> Option<usize> {
        let weight = terms.iter().map(|(_, w)| w * w).sum::<f64>();
        list.iter()
            .enumerate()
            .map(|(i, c)| (c.similarity(terms, weight), i))
            .filter(|(s, _)| *s >= threshold)
            .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.cmp(&a.1)))
            .map(|(_, i)| i)
    }

    #[test]
    fn signatures_find_the_same_clusters_as_a_scan_of_every_cluster() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let at = FixedOffset::east_opt(8 * 3600)
            .and_then(|tz| tz.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).single())
            .expect("valid time");
        let mut rng = StdRng::seed_from_u64(7);
        let mut clusters = Clusters::default();
        let mut seq = 0;
        let (mut compared, mut matched) = (0, 0);
        for step in 0..3000 {
            // A small vocabulary, so reports share terms and clusters grow, fill their
            // profiles (8 terms) and lose terms.
            let n = rng.random_range(1..12);
            let terms: Vec<(Term, f64)> = (0..n)
                .map(|_| {
                    let r: f64 = rng.random();
                    let word = format!("词{}", (r * r * 300.0) as usize);
                    (Term::new(&word), 1.0 + rng.random::<f64>() * 4.0)
                })
                .collect();
            let mut distinct = terms.clone();
            distinct.sort_by(|a, b| a.0.cmp(&b.0));
            distinct.dedup_by(|a, b| a.0 == b.0);
            let threshold = [0.0, 0.3, 0.5][step % 3];
            let expected = scan_most_similar(&clusters, &distinct, threshold);
            assert_eq!(
                clusters.most_similar(&distinct, threshold),
                expected,
                "step {step}"
            );
            compared += 1;
            for (term, _) in &distinct {
                let mut may: Vec<usize> = clusters.may_hold(term).collect();
                may.sort_unstable();
                for (i, c) in clusters.iter().enumerate() {
                    if c.terms.contains_key(term) {
                        assert!(
                            may.binary_search(&i).is_ok(),
                            "step {step}: missed cluster {i}"
                        );
                    }
                }
            }
            let id = format!("12345:{step}");
            let member = Member {
                event_id: &id,
                channel: Channel::Hotline12345,
                at,
                bucket: step as i64 / 10,
                priority: 3,
                emotional: false,
                category: "城乡建设",
                published_incident: None,
            };
            let index = match expected.filter(|_| threshold > 0.0) {
                Some(i) => {
                    matched += 1;
                    i
                }
                None => {
                    seq += 1;
                    clusters.push(Cluster::new("雨花区", &member, seq));
                    clusters.len() - 1
                }
            };
            clusters.add(index, &member, &distinct, 8);
            match rng.random_range(0..10) {
                0 if clusters.len() > 2 => {
                    let from = rng.random_range(0..clusters.len());
                    let into = rng.random_range(0..clusters.len());
                    clusters.absorb(into, from, 8);
                }
                1 if clusters.len() > 40 => {
                    clusters.remove(rng.random_range(0..clusters.len()));
                }
                2 => {
                    let cut = seq.saturating_sub(60);
                    clusters.retain(|c| c.seq > cut);
                }
                _ => {}
            }
        }
        assert!(
            matched > 300 && compared == 3000,
            "the stream exercised joins: {matched}"
        );
    }
}
