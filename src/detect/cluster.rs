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
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// The incident id: derived from the district and the first report's id.
    pub id: String,
    pub first_seen: DateTime<FixedOffset>,
    pub last_seen: DateTime<FixedOffset>,
    pub size: u64,
    /// Reports per time bucket.
    pub members: SparseWindow,
    /// Every event probes every open cluster of its district for each of its terms (through
    /// `filter` first). Nothing reads the map in its iteration order.
    pub terms: TermMap<ProfileTerm>,
    /// Which terms the profile may hold: no false negatives, so a term it rules out is
    /// certainly absent and costs no map probe.
    filter: TermFilter,
    pub channels: BTreeSet<Channel>,
    /// Reports per category (bounded: at most 8 categories kept).
    pub categories: BTreeMap<String, u64>,
    pub sample_ids: Vec<String>,
    pub min_priority: u8,
    pub emotional: u64,
    /// Creation order within the detector, to break ties deterministically.
    pub seq: u64,
}

impl Cluster {
    pub fn new(district: &str, first: &Member<'_>, seq: u64) -> Self {
        Cluster {
            id: content_id("inc", &[district, first.event_id]),
            first_seen: first.at,
            last_seen: first.at,
            size: 0,
            members: SparseWindow::default(),
            terms: TermMap::default(),
            filter: TermFilter::default(),
            channels: BTreeSet::new(),
            categories: BTreeMap::new(),
            sample_ids: Vec::new(),
            min_priority: u8::MAX,
            emotional: 0,
            seq,
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
                if !self.filter.may_hold(t) {
                    return None;
                }
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
                        self.filter.removed();
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
            self.filter.insert(term);
            if let Some(heap) = once.as_mut() {
                heap.push(Reverse(term.clone()));
            }
        }
        self.filter.rebuild_if_stale(self.terms.keys());
    }

    /// Takes in another cluster of the same district (two wordings of one incident that grew
    /// apart). Its terms, channels and samples join this one; the other is dropped by the caller.
    pub fn absorb(&mut self, other: Cluster, max_terms: usize) {
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
                self.filter.insert(&term);
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
            .map(|(t, p)| (t.as_str(), p.window.total(now, len)))
            .filter(|(_, k)| *k > 0 && *k as f64 >= share * recent)
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

/// A Bloom filter over a cluster profile's terms (512 bits, two per term, from the term's
/// hash). Removing a term leaves its bits set — they only cost a probe — until enough are
/// stale to rebuild from the profile.
#[derive(Debug, Clone, Default, PartialEq)]
struct TermFilter {
    bits: [u64; 8],
    stale: usize,
}

impl TermFilter {
    fn positions(term: &Term) -> [usize; 2] {
        let hash = term.hash_value();
        [(hash >> 55) as usize, ((hash >> 46) & 511) as usize]
    }

    fn insert(&mut self, term: &Term) {
        for p in Self::positions(term) {
            self.bits[p / 64] |= 1 << (p % 64);
        }
    }

    fn may_hold(&self, term: &Term) -> bool {
        Self::positions(term)
            .iter()
            .all(|&p| self.bits[p / 64] & (1 << (p % 64)) != 0)
    }

    fn removed(&mut self) {
        self.stale += 1;
    }

    fn rebuild_if_stale<'a>(&mut self, terms: impl Iterator<Item = &'a Term>) {
        if self.stale < 32 {
            return;
        }
        *self = TermFilter::default();
        for term in terms {
            self.insert(term);
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
        // The filter still admits every held term and the similarity sees them.
        let probe = terms(&["b", "a0", "c"]);
        let expected = (1.0 + 1.0) / 3.0;
        assert!((cluster.similarity(&probe, 3.0) - expected).abs() < 1e-12);
    }
}
