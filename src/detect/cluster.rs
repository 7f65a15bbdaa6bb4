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
use crate::event::Channel;
use chrono::{DateTime, FixedOffset};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};

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
    pub terms: HashMap<String, ProfileTerm>,
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
            terms: HashMap::new(),
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
    pub fn similarity(&self, terms: &[(String, f64)], terms_weight: f64) -> f64 {
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
    pub fn add(&mut self, member: &Member<'_>, terms: &[(String, f64)], max_terms: usize) {
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
        for (term, weight) in terms {
            if !self.terms.contains_key(term) && self.terms.len() >= max_terms {
                let victim = self
                    .terms
                    .iter()
                    .filter(|(_, p)| p.count <= 1)
                    .map(|(t, _)| t)
                    .min()
                    .cloned();
                match victim {
                    Some(victim) => {
                        self.terms.remove(&victim);
                    }
                    None => continue,
                }
            }
            let entry = self
                .terms
                .entry(term.clone())
                .or_insert_with(|| ProfileTerm {
                    count: 0,
                    window: SparseWindow::default(),
                    weight: *weight,
                });
            entry.count += 1;
            entry.window.add(member.bucket, 1);
        }
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
        let mut incoming: Vec<(String, ProfileTerm)> = other.terms.into_iter().collect();
        incoming.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(&b.0)));
        for (term, profile) in incoming {
            if let Some(mine) = self.terms.get_mut(&term) {
                mine.count += profile.count;
                for (bucket, count) in profile.window.iter() {
                    mine.window.add(bucket, count);
                }
            } else if self.terms.len() < max_terms {
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
        let mut terms: Vec<(&String, &ProfileTerm)> = self.terms.iter().collect();
        terms.sort_by(|a, b| {
            let score = |p: &ProfileTerm| p.count as f64 * p.weight;
            score(b.1).total_cmp(&score(a.1)).then_with(|| a.0.cmp(b.0))
        });
        terms.into_iter().take(n).map(|(t, _)| t.clone()).collect()
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
