//! Incident clustering and the incident test, as methods of the [`Detector`].
//!
//! A relevant report first gets its *anchors*: its terms that are bursting in the district
//! and normally rare there. Reports sharing an anchor go to one cluster (merging clusters that
//! grew apart); otherwise the report joins the cluster that explains most of its weighted
//! terms ([`super::cluster`]), or starts one. The incident test then asks whether the cluster's
//! recent reports are improbable under the baseline for its best core term, and a second
//! cluster about the same thing folds into the thread that already fired.

use super::baseline::poisson_surprise;
use super::cluster::{Cluster, Member};
use super::detector::{incident_key, IncidentProbe, Scratch};
use super::sketch::Term;
use super::threads::{severity, Evidence, Snapshot};
use super::{Alert, AlertKind, Detector};
use crate::event::Channel;

impl Detector {
    /// The report's terms that are bursting in the district right now (at least three recent
    /// reports, improbable under the baseline) and normally rare there — "爆管", not the name
    /// of a busy road, which would pull unrelated reports in — with their scores.
    pub(super) fn anchors(&self, district: &str, scratch: &Scratch) -> Vec<(Term, f64)> {
        let secs = self.config.burst_window_secs;
        scratch
            .terms
            .iter()
            .zip(&scratch.cells)
            .zip(&scratch.counts)
            .filter(|(_, k)| **k >= 3)
            .filter_map(|(((t, _), cells), k)| {
                let lambda = self.term_lambda_at(district, cells, *k, secs);
                let score = poisson_surprise(*k, lambda);
                (lambda <= self.config.anchor_max_baseline && score >= self.config.anchor_min_score)
                    .then(|| (t.clone(), score))
            })
            .collect()
    }

    /// Puts the report in a cluster and returns the cluster's index. A report holding a
    /// bursting anchor term joins the clusters that have it as a core term — merging them into
    /// one, since reports sharing a bursting rare term are one incident however they are
    /// worded. Otherwise it joins the most similar cluster, or starts its own.
    pub(super) fn cluster(
        &mut self,
        district: &str,
        member: &Member,
        terms: &[(Term, f64)],
        anchors: &[(Term, f64)],
    ) -> Option<usize> {
        let now_bucket = self.clock_bucket(district);
        let config = &self.config;
        let max_terms = config.max_cluster_terms;
        let window = config.buckets(config.incident_window_secs);
        let state = self.districts.get_mut(district)?;
        let clusters = &state.clusters;
        let mut anchored: Vec<usize> = anchors
            .iter()
            .flat_map(|(t, _)| {
                clusters.may_hold(t).filter(|&i| {
                    clusters
                        .get(i)
                        .is_some_and(|c| c.terms.get(t).is_some_and(|p| p.count * 2 >= c.size))
                })
            })
            .collect();
        anchored.sort_unstable();
        anchored.dedup();
        // The survivor keeps its id: the one with a live incident thread, else the largest,
        // else the oldest (clusters are kept in creation order).
        let threads = &self.threads;
        let mut probe = IncidentProbe::new(district);
        let survivor = anchored.iter().copied().min_by_key(|&i| {
            let c = &state.clusters[i];
            let live = threads.is_active(probe.key(&c.id));
            (!live, std::cmp::Reverse(c.size), i)
        });
        if let Some(survivor) = survivor {
            let mut keep = survivor;
            for &i in anchored.iter().rev().filter(|&&i| i != survivor) {
                keep = state.clusters.absorb(keep, i, max_terms);
                self.merged += 1;
            }
            state.clusters.expire(keep, now_bucket, window);
            state.clusters.add(keep, member, terms, max_terms);
            return Some(keep);
        }
        let best = state
            .clusters
            .most_similar(terms, config.cluster_similarity);
        let index = match best {
            Some(i) => i,
            None => {
                if state.clusters.len() >= config.max_clusters_per_district {
                    let threads = &self.threads;
                    let victim = state
                        .clusters
                        .iter()
                        .enumerate()
                        .filter(|(_, c)| !threads.is_active(probe.key(&c.id)))
                        .min_by_key(|(_, c)| (c.last_seen, c.seq))
                        .map(|(i, _)| i);
                    match victim {
                        Some(i) => {
                            state.clusters.remove(i);
                        }
                        None => return None,
                    }
                }
                self.cluster_seq += 1;
                state
                    .clusters
                    .push(Cluster::new(district, member, self.cluster_seq));
                state.clusters.len() - 1
            }
        };
        state.clusters.expire(index, now_bucket, window);
        state.clusters.add(index, member, terms, max_terms);
        Some(index)
    }

    pub(super) fn test_incident(
        &mut self,
        district: &str,
        index: Option<usize>,
    ) -> (Option<String>, Vec<Alert>) {
        let Some(index) = index else {
            return (None, Vec::new());
        };
        let now_bucket = self.clock_bucket(district);
        let len = self.config.buckets(self.config.incident_window_secs);
        let Some(cluster) = self
            .districts
            .get(district)
            .and_then(|d| d.clusters.get(index))
        else {
            return (None, Vec::new());
        };
        let id = (cluster.size >= 2).then(|| cluster.id.clone());
        let key = incident_key(district, &cluster.id);
        let active = self.threads.is_active(&key);
        let recent = cluster.recent(now_bucket, len);
        if !active && (recent < self.config.incident_min_reports || !self.warm(district)) {
            return (id, Vec::new());
        }
        let snap = self.incident_snapshot(district, cluster, now_bucket, len);
        if !active && snap.score < self.config.incident_min_score {
            return (id, Vec::new());
        }
        if !active {
            // Another cluster of the same incident already fired — it shares this one's anchor,
            // or two core terms (a place named in two wordings) — merge into its thread.
            let anchor = snap.terms.first().cloned().unwrap_or_default();
            let core = &snap.merge_terms;
            let target = self
                .threads
                .find_active(AlertKind::Incident, district, |t| {
                    t.merge_terms.contains(&anchor) || t.merge_terms.intersection(core).count() >= 2
                })
                .map(|k| k.subject.clone());
            if let Some(target) = target {
                return self.merge_clusters(district, index, &target);
            }
        }
        let now = self.clock(district).unwrap_or(snap.last_seen);
        let alert = self.threads.evidence(key, snap, now);
        (id, alert.into_iter().collect())
    }

    /// Moves cluster `index` into the open cluster `target` (an incident id) and updates its
    /// thread. When the target has already closed, the cluster fires on its own.
    fn merge_clusters(
        &mut self,
        district: &str,
        index: usize,
        target: &str,
    ) -> (Option<String>, Vec<Alert>) {
        let now_bucket = self.clock_bucket(district);
        let len = self.config.buckets(self.config.incident_window_secs);
        let max_terms = self.config.max_cluster_terms;
        let Some(state) = self.districts.get_mut(district) else {
            return (None, Vec::new());
        };
        let Some(into) = state.clusters.iter().position(|c| c.id == target) else {
            return (None, Vec::new());
        };
        self.merged += 1;
        let into = state.clusters.absorb(into, index, max_terms);
        let Some(cluster) = self
            .districts
            .get(district)
            .and_then(|d| d.clusters.get(into))
        else {
            return (None, Vec::new());
        };
        let snap = self.incident_snapshot(district, cluster, now_bucket, len);
        let key = incident_key(district, &cluster.id);
        let id = Some(cluster.id.clone());
        let now = self.clock(district).unwrap_or(snap.last_seen);
        (
            id,
            self.threads.evidence(key, snap, now).into_iter().collect(),
        )
    }

    fn incident_snapshot(
        &self,
        district: &str,
        cluster: &Cluster,
        now_bucket: i64,
        len: usize,
    ) -> Snapshot {
        let secs = self.config.incident_window_secs;
        let core = cluster.core_terms(now_bucket, len, self.config.core_term_share);
        let mut scored: Vec<(f64, f64, &str)> = core
            .iter()
            .map(|(term, k)| {
                let lambda = self.term_lambda(district, term, *k, secs);
                (poisson_surprise(*k, lambda), lambda, *term)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.2.cmp(b.2)));
        let (score, baseline) = scored.first().map_or((0.0, 0.0), |(s, l, _)| (*s, *l));
        let mut terms: Vec<String> = scored
            .iter()
            .take(3)
            .map(|(_, _, t)| t.to_string())
            .collect();
        for term in cluster.top_terms(8) {
            if terms.len() >= 6 {
                break;
            }
            if !terms.contains(&term) {
                terms.push(term);
            }
        }
        let merge_terms = scored.iter().map(|(_, _, t)| t.to_string()).collect();
        let channels: Vec<Channel> = cluster.channels.iter().copied().collect();
        let evidence = Evidence {
            count: cluster.size,
            baseline,
            channels: channels.len(),
            police: cluster.channels.contains(&Channel::Police110),
            min_priority: cluster.min_priority,
            emotional_share: cluster.emotional as f64 / cluster.size.max(1) as f64,
        };
        Snapshot {
            severity: severity(&evidence),
            category: cluster.main_category(),
            terms,
            count: cluster.size,
            baseline,
            channels,
            first_seen: cluster.first_seen,
            last_seen: cluster.last_seen,
            event_ids: cluster.sample_ids.clone(),
            incident_id: Some(cluster.id.clone()),
            score,
            merge_terms,
        }
    }
}
