//! Every metric citypulse exports, in one place, with fixed label sets.
//!
//! Stages and I/O record what happened through [`Metrics`]; `/metrics` renders the registry.
//! Labels come only from small fixed sets (channels, decode reason codes, stage names, the
//! departments and categories named in the pipeline file and the model), never from user text,
//! so the series count is bounded.

use crate::event::{Channel, Route};
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::Arc;

/// The emotion labels of `citypulse_emotion_total` (the emotion model's six classes).
pub const EMOTIONS: [&str; 6] = ["happy", "angry", "sad", "fear", "surprise", "neutral"];

/// The processing stages timed by `citypulse_stage_duration_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Decode,
    Mask,
    Segment,
    Classify,
    Route,
    /// Detection inside stage 1 (`pipeline.inline_detection`), the detector's lock included.
    Detect,
    Produce,
}

impl Stage {
    pub const ALL: [Stage; 7] = [
        Stage::Decode,
        Stage::Mask,
        Stage::Segment,
        Stage::Classify,
        Stage::Route,
        Stage::Detect,
        Stage::Produce,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Mask => "mask",
            Stage::Segment => "segment",
            Stage::Classify => "classify",
            Stage::Route => "route",
            Stage::Detect => "detect",
            Stage::Produce => "produce",
        }
    }
}

/// The series of one channel that every event of it touches, resolved once.
#[derive(Clone)]
pub struct ChannelSeries {
    pub events_in: IntCounter,
    pub triaged: IntCounter,
    pub ignored: IntCounter,
    pub skipped: IntCounter,
    pub sentiment: Histogram,
    /// In the order of [`EMOTIONS`].
    emotions: Vec<IntCounter>,
}

impl ChannelSeries {
    /// The counter of `emotion`, if it is one of [`EMOTIONS`].
    pub fn emotion(&self, emotion: &str) -> Option<&IntCounter> {
        let index = EMOTIONS.iter().position(|known| *known == emotion)?;
        self.emotions.get(index)
    }
}

/// Series whose labels come from a small fixed set and that the process path touches on every
/// event, looked up once at start. `with_label_values` hashes its labels and clones a handle
/// under a lock on each call: about eleven calls per event otherwise.
#[derive(Default)]
struct FixedSeries {
    /// By `Channel as usize`.
    channels: Vec<ChannelSeries>,
    /// By `Stage as usize`.
    stage_duration: Vec<Histogram>,
    /// By `Route as usize`.
    category_confidence: Vec<Histogram>,
}

impl FixedSeries {
    fn resolve(metrics: &MetricHandles) -> Self {
        let channels = Channel::ALL
            .iter()
            .map(|channel| {
                let label = [channel.as_str()];
                ChannelSeries {
                    events_in: metrics.events_in.with_label_values(&label),
                    triaged: metrics.triaged.with_label_values(&label),
                    ignored: metrics.ignored.with_label_values(&label),
                    skipped: metrics.skipped.with_label_values(&label),
                    sentiment: metrics.sentiment.with_label_values(&label),
                    emotions: EMOTIONS
                        .iter()
                        .map(|emotion| {
                            metrics
                                .emotions
                                .with_label_values(&[channel.as_str(), emotion])
                        })
                        .collect(),
                }
            })
            .collect();
        FixedSeries {
            channels,
            stage_duration: Stage::ALL
                .iter()
                .map(|stage| metrics.stage_duration.with_label_values(&[stage.as_str()]))
                .collect(),
            category_confidence: Route::ALL
                .iter()
                .map(|route| {
                    metrics
                        .category_confidence
                        .with_label_values(&[route.as_str()])
                })
                .collect(),
        }
    }
}

/// Handles to every metric, shared: a clone is one reference count. The pipeline clones them
/// for every record it settles; cloning each handle instead (an `Arc` inside every prometheus
/// type: 23 here and 53 in [`FixedSeries`], whose vectors were copied too) cost ~76 reference
/// counts and at least five allocations a clone (heaptrack). Fields are read through `Deref`
/// ([`MetricHandles`]).
#[derive(Clone)]
pub struct Metrics(Arc<MetricHandles>);

impl std::ops::Deref for Metrics {
    type Target = MetricHandles;

    fn deref(&self) -> &MetricHandles {
        &self.0
    }
}

/// Every metric's handle (see [`Metrics`]).
pub struct MetricHandles {
    registry: Registry,
    pub events_in: IntCounterVec,
    pub routed: IntCounterVec,
    pub triaged: IntCounterVec,
    pub ignored: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub skipped: IntCounterVec,
    pub stage_duration: HistogramVec,
    pub in_flight: IntGauge,
    pub commits: IntCounter,
    pub commit_failures: IntCounter,
    pub delivery_failures: IntCounterVec,
    pub partitions_assigned: IntGauge,
    pub alerts: IntCounterVec,
    pub active_alerts: IntGaugeVec,
    pub active_incidents: IntGauge,
    pub top_burst_score: Gauge,
    pub events_by_district: IntCounterVec,
    pub category_confidence: HistogramVec,
    pub consumer_lag: IntGaugeVec,
    pub end_to_end_latency: prometheus::Histogram,
    pub emotions: IntCounterVec,
    pub sentiment: HistogramVec,
    /// Resolved from the vectors above, for the per-event path.
    fixed: FixedSeries,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels)
                .expect("metric definitions are static and valid");
            registry
                .register(Box::new(metric.clone()))
                .expect("each metric is registered once");
            metric
        };
        let events_in = counter_vec(
            "citypulse_events_in_total",
            "Input records consumed, by channel.",
            &["channel"],
        );
        let routed = counter_vec(
            "citypulse_routed_total",
            "Events routed to a department, by department and category.",
            &["department", "category"],
        );
        let triaged = counter_vec(
            "citypulse_triage_total",
            "Events sent to manual triage, by channel.",
            &["channel"],
        );
        let ignored = counter_vec(
            "citypulse_ignored_total",
            "Social posts that are not reports (counted as public opinion, not routed), by channel.",
            &["channel"],
        );
        let dead_letters = counter_vec(
            "citypulse_dead_letters_total",
            "Records written to the dead-letter topic, by channel and reason.",
            &["channel", "reason"],
        );
        let skipped = counter_vec(
            "citypulse_skipped_total",
            "Records that are not citizen reports (WeChat event pushes …), by channel.",
            &["channel"],
        );
        let delivery_failures = counter_vec(
            "citypulse_delivery_failures_total",
            "Output messages the broker did not acknowledge, by topic role.",
            &["output"],
        );
        let stage_duration = HistogramVec::new(
            HistogramOpts::new(
                "citypulse_stage_duration_seconds",
                "Time spent per record in each stage.",
            )
            .buckets(vec![
                1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1.0,
            ]),
            &["stage"],
        )
        .expect("static histogram definition");
        registry
            .register(Box::new(stage_duration.clone()))
            .expect("registered once");
        let gauge = |name: &str, help: &str| {
            let metric = IntGauge::new(name, help).expect("static gauge definition");
            registry
                .register(Box::new(metric.clone()))
                .expect("registered once");
            metric
        };
        let in_flight = gauge(
            "citypulse_in_flight_records",
            "Records consumed whose outputs are not yet all acknowledged.",
        );
        let partitions_assigned = gauge(
            "citypulse_partitions_assigned",
            "Input partitions currently assigned to this instance.",
        );
        let counter = |name: &str, help: &str| {
            let metric = IntCounter::new(name, help).expect("static counter definition");
            registry
                .register(Box::new(metric.clone()))
                .expect("registered once");
            metric
        };
        let commits = counter(
            "citypulse_offset_commits_total",
            "Offset commits sent to the group coordinator.",
        );
        let commit_failures = counter(
            "citypulse_offset_commit_failures_total",
            "Offset commits that failed (retried at the next interval).",
        );
        let alerts = counter_vec(
            "citypulse_alerts_total",
            "Alert lifecycle messages, by kind, status and severity.",
            &["kind", "status", "severity"],
        );
        let active_alerts = IntGaugeVec::new(
            Opts::new(
                "citypulse_active_alerts",
                "Alert threads currently firing or updated, by kind.",
            ),
            &["kind"],
        )
        .expect("static gauge definition");
        registry
            .register(Box::new(active_alerts.clone()))
            .expect("registered once");
        let active_incidents = gauge(
            "citypulse_active_incidents",
            "Incident threads currently firing or updated.",
        );
        let top_burst_score = Gauge::new(
            "citypulse_top_burst_score",
            "Highest burst score (-log10 p under the baseline) among active alerts.",
        )
        .expect("static gauge definition");
        registry
            .register(Box::new(top_burst_score.clone()))
            .expect("registered once");
        let events_by_district = counter_vec(
            "citypulse_events_by_district_total",
            "Citizen reports by district (known districts; others as 其他, none as 未知).",
            &["district"],
        );
        let category_confidence = HistogramVec::new(
            HistogramOpts::new(
                "citypulse_category_confidence",
                "The category model's confidence per event, by route.",
            )
            .buckets(vec![0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0]),
            &["route"],
        )
        .expect("static histogram definition");
        registry
            .register(Box::new(category_confidence.clone()))
            .expect("registered once");
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "citypulse_consumer_lag_messages",
                "Messages behind the end of the input topics, summed over this instance's partitions.",
            ),
            &["topic"],
        )
        .expect("static gauge definition");
        registry
            .register(Box::new(consumer_lag.clone()))
            .expect("registered once");
        let end_to_end_latency = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "citypulse_end_to_end_latency_seconds",
                "From the input record's broker timestamp to the acknowledgement of its last output.",
            )
            // Fine around the 20 ms objective, so its p99 is read off closely.
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.0175, 0.02, 0.025, 0.03,
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )
        .expect("static histogram definition");
        registry
            .register(Box::new(end_to_end_latency.clone()))
            .expect("registered once");
        let emotions = counter_vec(
            "citypulse_emotion_total",
            "Events by channel and detected emotion.",
            &["channel", "emotion"],
        );
        let sentiment = HistogramVec::new(
            HistogramOpts::new(
                "citypulse_sentiment_score",
                "Sentiment score per event, from -1 (negative) to 1 (positive), by channel.",
            )
            .buckets(vec![-0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0]),
            &["channel"],
        )
        .expect("static histogram definition");
        registry
            .register(Box::new(sentiment.clone()))
            .expect("registered once");
        let mut metrics = MetricHandles {
            // Resolved below, from the vectors once they are in place.
            fixed: FixedSeries::default(),
            registry,
            events_in,
            routed,
            triaged,
            ignored,
            dead_letters,
            skipped,
            stage_duration,
            in_flight,
            commits,
            commit_failures,
            delivery_failures,
            partitions_assigned,
            alerts,
            active_alerts,
            active_incidents,
            top_burst_score,
            events_by_district,
            category_confidence,
            consumer_lag,
            end_to_end_latency,
            emotions,
            sentiment,
        };
        metrics.touch_fixed_labels();
        metrics.fixed = FixedSeries::resolve(&metrics);
        Metrics(Arc::new(metrics))
    }

    /// The series of `channel` that every event touches.
    pub fn channel(&self, channel: Channel) -> &ChannelSeries {
        &self.fixed.channels[channel as usize]
    }

    /// `citypulse_category_confidence` of events that took `route`.
    pub fn category_confidence_of(&self, route: Route) -> &Histogram {
        &self.fixed.category_confidence[route as usize]
    }

    /// Pre-create the routed series for every department × category the config can produce.
    pub fn register_routes(&self, departments: &[&str], categories: &[String]) {
        for department in departments {
            for category in categories {
                self.routed
                    .with_label_values(&[department, category.as_str()]);
            }
        }
    }

    /// The `district` label of an event: the district if it is a known one, so the label set
    /// stays fixed whatever the texts say.
    pub fn district_label(district: Option<&str>) -> &str {
        match district {
            None => "未知",
            Some(name)
                if crate::channels::district::CHANGSHA_DISTRICTS
                    .iter()
                    .any(|(_, known)| *known == name) =>
            {
                name
            }
            Some(_) => "其他",
        }
    }

    pub fn observe_stage(&self, stage: Stage, seconds: f64) {
        self.fixed.stage_duration[stage as usize].observe(seconds);
    }

    /// The registry in Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("encoding into a Vec cannot fail");
        String::from_utf8(buffer).expect("the text encoder writes UTF-8")
    }
}

impl MetricHandles {
    /// Create the series of the fixed label sets at zero, so dashboards and `rate()` see them
    /// before the first event.
    ///
    /// The series of [`FixedSeries`] (per channel, per stage, confidence per route) are created
    /// when it resolves them; these are the rest.
    fn touch_fixed_labels(&self) {
        for output in ["event", "dlq", "alert"] {
            self.delivery_failures.with_label_values(&[output]);
        }
        for (_, district) in crate::channels::district::CHANGSHA_DISTRICTS {
            self.events_by_district.with_label_values(&[district]);
        }
        for kind in crate::detect::AlertKind::ALL {
            self.active_alerts.with_label_values(&[kind.as_str()]);
            for status in ["firing", "updated", "resolved"] {
                for severity in crate::detect::Severity::ALL {
                    self.alerts
                        .with_label_values(&[kind.as_str(), status, severity.as_str()]);
                }
            }
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_series_exist_before_any_event() {
        let text = Metrics::new().render();
        assert!(text.contains("citypulse_events_in_total{channel=\"110\"} 0"));
        assert!(text.contains("citypulse_stage_duration_seconds_bucket{stage=\"segment\""));
    }

    #[test]
    fn routes_are_registered_for_every_department_and_category() {
        let metrics = Metrics::new();
        metrics.register_routes(&["生态环境局"], &["环境保护".to_string()]);
        assert!(metrics
            .render()
            .contains("citypulse_routed_total{category=\"环境保护\",department=\"生态环境局\"} 0"));
    }

    #[test]
    fn resolved_series_are_the_labelled_ones() {
        let metrics = Metrics::new();
        for (n, channel) in Channel::ALL.into_iter().enumerate() {
            let series = metrics.channel(channel);
            let times = n as u64 + 1;
            series.events_in.inc_by(times);
            series.triaged.inc_by(times + 10);
            series.ignored.inc_by(times + 20);
            series.skipped.inc_by(times + 30);
            series.sentiment.observe(-0.5);
            let label = [channel.as_str()];
            assert_eq!(metrics.events_in.with_label_values(&label).get(), times);
            assert_eq!(metrics.triaged.with_label_values(&label).get(), times + 10);
            assert_eq!(metrics.ignored.with_label_values(&label).get(), times + 20);
            assert_eq!(metrics.skipped.with_label_values(&label).get(), times + 30);
            assert_eq!(
                metrics
                    .sentiment
                    .with_label_values(&label)
                    .get_sample_count(),
                1
            );
            for (e, emotion) in EMOTIONS.into_iter().enumerate() {
                let counter = series.emotion(emotion).expect("a known emotion");
                counter.inc_by(e as u64 + 100);
                assert_eq!(
                    metrics
                        .emotions
                        .with_label_values(&[channel.as_str(), emotion])
                        .get(),
                    e as u64 + 100,
                    "{channel} {emotion}"
                );
            }
            assert!(series.emotion("bored").is_none());
        }
        for (n, stage) in Stage::ALL.into_iter().enumerate() {
            for _ in 0..=n {
                metrics.observe_stage(stage, 0.001);
            }
            let histogram = metrics.stage_duration.with_label_values(&[stage.as_str()]);
            assert_eq!(
                histogram.get_sample_count(),
                n as u64 + 1,
                "{}",
                stage.as_str()
            );
        }
        for (n, route) in Route::ALL.into_iter().enumerate() {
            for _ in 0..=n {
                metrics.category_confidence_of(route).observe(0.9);
            }
            let histogram = metrics
                .category_confidence
                .with_label_values(&[route.as_str()]);
            assert_eq!(
                histogram.get_sample_count(),
                n as u64 + 1,
                "{}",
                route.as_str()
            );
        }
    }
}
