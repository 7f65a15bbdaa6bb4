//! Detection settings: windows, thresholds, lifecycle timings and state caps.
//!
//! Read from the `[detect]` table of the pipeline file (every key optional, unknown keys
//! rejected) and handed to [`crate::detect::Detector::new`]. Durations are in event-time
//! seconds; scores are −log10 of a Poisson tail probability, so 8 means "one chance in 10^8
//! under the baseline".

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// Width of one window bucket. Windows slide by this step.
    pub bucket_secs: i64,
    /// Events older than (the latest event time of their own source − this) are late:
    /// counted and dropped. The watermark lags the slowest source by this much.
    pub allowed_lateness_secs: i64,
    /// An event further than this ahead of the current event time is not believed (a phone
    /// with a wrong clock) unless several in a row agree, which means the stream jumped.
    pub max_future_secs: i64,

    /// A report joins an open cluster when the cluster explains at least this share of the
    /// report's IDF-weighted terms (0–1, see `cluster::Cluster::similarity`).
    pub cluster_similarity: f64,
    /// A cluster with no new report for this long is closed.
    pub cluster_gap_secs: i64,
    /// Reports of a cluster counted for firing must fall within this window.
    pub incident_window_secs: i64,
    /// Reports needed before an incident can fire.
    pub incident_min_reports: u64,
    /// Score an incident's anchor term must reach (see the module doc of `detector`).
    pub incident_min_score: f64,
    /// A term of a report is an anchor when it is bursting in the district at this score (and
    /// at least three recent reports); reports sharing an anchor join one cluster.
    pub anchor_min_score: f64,
    /// ... and when its baseline over the burst window is at most this many reports: only
    /// normally rare terms anchor.
    pub anchor_max_baseline: f64,
    /// A term is "core" to a cluster when at least this share of its reports contain it.
    pub core_term_share: f64,

    /// Window of district × category and district × term bursts.
    pub burst_window_secs: i64,
    /// Window count needed before a burst can fire.
    pub burst_min_count: u64,
    /// Window count must be at least this multiple of the baseline.
    pub burst_min_ratio: f64,
    pub burst_min_score: f64,

    /// Window of emotion surges.
    pub emotion_window_secs: i64,
    /// Angry or fearful messages in the window needed before a surge can fire.
    pub emotion_min_count: u64,
    /// The window's share of angry or fearful messages must exceed the district's usual share
    /// by at least this much (absolute, 0–1).
    pub emotion_min_share_rise: f64,
    pub emotion_min_score: f64,

    /// No burst, surge or incident fires in a district before it has seen this many events to
    /// build its baselines: a cold start is not an alert storm. Per district, so that a
    /// district's alerts do not depend on how many other districts an instance owns.
    pub warmup_events: u64,
    /// Learned shares (how common a term or category is in a district) halve this often, so
    /// the baseline follows slow change and forgets old incidents.
    pub baseline_halflife_hours: i64,
    /// Weight of today's count in each district's per-hour-of-day rate profile (EWMA).
    pub hourly_ewma_alpha: f64,
    /// In `run`: a partition of the internal topic that delivered nothing for this many
    /// seconds of processing (wall-clock) time stops holding the watermark back (see
    /// `detect::watermark`).
    pub idle_partition_secs: u64,

    /// A firing thread sends `updated` when its count grew by this share since the last
    /// message (or its severity or channels changed).
    pub update_growth: f64,
    /// A thread resolves after this long without a new contributing report (incident) or
    /// below its threshold (burst, surge).
    pub resolve_quiet_secs: i64,
    /// After resolving, the same key (district and subject) does not fire again for this long.
    pub cooldown_secs: i64,

    /// Districts tracked at once. When full, the district with the fewest recent events that
    /// has no live alert is forgotten (least recently seen among equals); if all have live alerts the new district's events are dropped
    /// from detection (counted in `district_overflow`).
    pub max_districts: usize,
    /// Open clusters per district; when full the least recently grown non-alerting cluster is
    /// closed.
    pub max_clusters_per_district: usize,
    /// Candidate terms tracked per district (space-saving: the smallest is replaced).
    pub max_terms_per_district: usize,
    /// Categories tracked per district; further categories are ignored for bursts.
    pub max_categories_per_district: usize,
    /// Distinct terms considered per event (the rest are ignored).
    pub max_terms_per_event: usize,
    /// Terms kept in a cluster's profile.
    pub max_cluster_terms: usize,
    /// Count-min sketch width (counters per row) of each district's term sketch; four rows of
    /// 4-byte counters, so the default takes 256 KiB per district (64 MiB at
    /// `max_districts`) whatever the vocabulary. One sketch per district, not one shared:
    /// hash collisions with other districts' terms would make a district's baselines depend on
    /// which districts an instance owns.
    pub sketch_width: usize,
    /// Resolved alerts kept for `recent_alerts`.
    pub max_recent_alerts: usize,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            bucket_secs: 60,
            allowed_lateness_secs: 300,
            max_future_secs: 3600,
            cluster_similarity: 0.5,
            cluster_gap_secs: 3600,
            incident_window_secs: 2400,
            incident_min_reports: 5,
            incident_min_score: 8.0,
            anchor_min_score: 4.0,
            anchor_max_baseline: 0.5,
            core_term_share: 0.5,
            burst_window_secs: 3600,
            burst_min_count: 10,
            burst_min_ratio: 3.0,
            burst_min_score: 10.0,
            emotion_window_secs: 3600,
            emotion_min_count: 10,
            emotion_min_share_rise: 0.3,
            emotion_min_score: 10.0,
            warmup_events: 200,
            baseline_halflife_hours: 24,
            hourly_ewma_alpha: 0.3,
            idle_partition_secs: 30,
            update_growth: 0.5,
            resolve_quiet_secs: 1800,
            cooldown_secs: 3600,
            max_districts: 256,
            max_clusters_per_district: 128,
            max_terms_per_district: 512,
            max_categories_per_district: 32,
            max_terms_per_event: 48,
            max_cluster_terms: 64,
            sketch_width: 1 << 14,
            max_recent_alerts: 200,
        }
    }
}

impl DetectConfig {
    /// Every problem with the values, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let positive = [
            ("bucket_secs", self.bucket_secs),
            ("cluster_gap_secs", self.cluster_gap_secs),
            ("incident_window_secs", self.incident_window_secs),
            ("burst_window_secs", self.burst_window_secs),
            ("emotion_window_secs", self.emotion_window_secs),
            ("baseline_halflife_hours", self.baseline_halflife_hours),
            ("resolve_quiet_secs", self.resolve_quiet_secs),
        ];
        for (key, value) in positive {
            if value <= 0 {
                problems.push(format!("detect.{key} = {value} must be > 0"));
            }
        }
        for (key, value) in [
            ("allowed_lateness_secs", self.allowed_lateness_secs),
            ("max_future_secs", self.max_future_secs),
            ("cooldown_secs", self.cooldown_secs),
        ] {
            if value < 0 {
                problems.push(format!("detect.{key} = {value} must be >= 0"));
            }
        }
        for (key, value) in [
            ("cluster_similarity", self.cluster_similarity),
            ("core_term_share", self.core_term_share),
            ("emotion_min_share_rise", self.emotion_min_share_rise),
            ("hourly_ewma_alpha", self.hourly_ewma_alpha),
        ] {
            if !(0.0..=1.0).contains(&value) {
                problems.push(format!("detect.{key} = {value} is outside [0, 1]"));
            }
        }
        for (key, value) in [
            ("max_districts", self.max_districts),
            ("max_clusters_per_district", self.max_clusters_per_district),
            ("max_terms_per_district", self.max_terms_per_district),
            (
                "max_categories_per_district",
                self.max_categories_per_district,
            ),
            ("max_terms_per_event", self.max_terms_per_event),
            ("max_cluster_terms", self.max_cluster_terms),
            ("sketch_width", self.sketch_width),
        ] {
            if value == 0 {
                problems.push(format!("detect.{key} must be > 0"));
            }
        }
        problems
    }

    /// Buckets a window of `secs` spans (at least one).
    pub(crate) fn buckets(&self, secs: i64) -> usize {
        usize::try_from((secs + self.bucket_secs - 1) / self.bucket_secs.max(1))
            .unwrap_or(1)
            .max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_unknown_keys_are_rejected() {
        assert!(DetectConfig::default().problems().is_empty());
        let parsed: DetectConfig = toml::from_str("incident_min_reports = 4").expect("valid");
        assert_eq!(parsed.incident_min_reports, 4);
        assert_eq!(parsed.bucket_secs, 60);
        let error = toml::from_str::<DetectConfig>("incident_min_report = 4").unwrap_err();
        assert!(error.to_string().contains("incident_min_report"), "{error}");
    }

    #[test]
    fn every_bad_value_is_named() {
        let config = DetectConfig {
            bucket_secs: 0,
            cluster_similarity: 1.5,
            max_districts: 0,
            ..DetectConfig::default()
        };
        let problems = config.problems().join("; ");
        for key in ["bucket_secs", "cluster_similarity", "max_districts"] {
            assert!(problems.contains(key), "{problems}");
        }
    }
}
