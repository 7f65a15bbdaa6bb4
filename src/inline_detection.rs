//! Detection inside stage 1, for a deployment of one instance (`pipeline.inline_detection`).
//!
//! ```text
//! raw.* ─> stage 1 workers: decode … classify ─> InlineDetection::observe ─> routed / triage / ignored
//!                                                 (one detector, locked)     citypulse.alerts, feed
//! ```
//! The two-stage flow re-keys every event by district onto `citypulse.events` so that each
//! district's state lives in one instance of stage 2; that hop is a produce, a fetch and a JSON
//! pass per event. One instance that owns every input partition sees every district anyway, so
//! its workers can observe each event themselves, right after classifying it, and route it with
//! its `incident_id`. The workers share one [`Detector`] behind a mutex (detection is a small
//! share of an event's cost); each input partition is one ordered stream for lateness and the
//! watermark, as an internal partition × input partition is in stage 2.
//!
//! What stage 2 gets from its topic, this mode must get otherwise:
//! - **One owner.** [`crate::kafka::SoleOwner`] checks every assignment; an instance given
//!   only some partitions stops with an error naming the group.
//! - **State after a restart.** [`InlineDetection::rebuild`] re-reads the last
//!   `detect_rebuild_secs` of the routed, triage and ignored topics before the first record is
//!   consumed, cuts each event's text again for its tokens (output events do not carry them)
//!   and observes it without raising alerts: those were published before. A cluster keeps the
//!   incident id its reports were published with, whichever of them is re-read first.

use crate::alert_feed::AlertFeed;
use crate::config::PipelineConfig;
use crate::detect::{Alert, DetectInput, Detector, Observation, SourceId, Watermarks};
use crate::detection::{detect_input, event_source, new_watermarks, report};
use crate::event::Event;
use crate::kafka::offsets::PartitionKey;
use crate::kafka::reader_config;
use crate::metrics::Metrics;
use crate::stages::Stages;
use crate::text::tokens::TokenList;
use chrono::Utc;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The detector and watermarks that stage 1's workers share.
pub struct InlineDetection {
    state: Mutex<State>,
    metrics: Metrics,
    pub(crate) feed: AlertFeed,
}

struct State {
    detector: Detector,
    watermarks: Watermarks,
}

/// What [`InlineDetection::rebuild`] read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rebuilt {
    /// Output events observed again.
    pub events: u64,
    /// Messages that were not events of this version (skipped, logged once).
    pub unreadable: u64,
}

/// How long the rebuild may wait for the broker's answer to one metadata or offset query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

impl InlineDetection {
    pub fn new(config: &PipelineConfig, feed: AlertFeed, metrics: Metrics) -> Self {
        InlineDetection {
            state: Mutex::new(State {
                detector: Detector::new(config.detect.clone()),
                watermarks: new_watermarks(config),
            }),
            metrics,
            feed,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic under the lock (a bug in the detector) may leave one event half counted;
        // the state stays within its bounds, so the other workers go on with it.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Observes one event read from input partition `input` and returns its incident id.
    /// `publish` gets each alert it raised, still under the lock: the workers take turns, so
    /// a thread's messages reach the producer (and the feed) in the order they were raised.
    pub fn observe(
        &self,
        input: &PartitionKey,
        event: &Event,
        tokens: &TokenList,
        publish: impl FnMut(Alert),
    ) -> Option<String> {
        let source = event_source(0, Some((&input.topic, input.partition)));
        let mut state = self.lock();
        state
            .watermarks
            .seen(source, event.occurred_at, Instant::now());
        let Observation {
            incident_id,
            alerts,
        } = state
            .detector
            .observe_from(source, &detect_input(event, tokens));
        alerts.into_iter().for_each(publish);
        incident_id
    }

    /// Every second: publishes (as [`Self::observe`] does) the alerts that resolve as the
    /// watermark passes them, and updates the gauges.
    pub fn tick(&self, publish: impl FnMut(Alert)) {
        let mut state = self.lock();
        if let Some(watermark) = state.watermarks.watermark(Instant::now()) {
            state
                .detector
                .advance_to(watermark)
                .into_iter()
                .for_each(publish);
        }
        report(&state.detector, &self.metrics);
    }

    /// Rebuilds the detector from the last `detect_rebuild_secs` of the routed, triage and
    /// ignored topics, before stage 1 consumes anything. Blocking; stops early when `stop` is
    /// cancelled. Alerts raised on the way are dropped: they were published when the events
    /// were first processed. An error comes only from the broker's answers before the first
    /// event is read (consumer errors while reading are logged and waited out), so a failed
    /// rebuild has observed nothing and may be tried again.
    pub fn rebuild(
        &self,
        config: &PipelineConfig,
        stages: &Stages,
        stop: &CancellationToken,
    ) -> Result<Rebuilt, KafkaError> {
        let secs = config.detect_rebuild_secs();
        let mut rebuilt = Rebuilt::default();
        if secs == 0 {
            return Ok(rebuilt);
        }
        let kafka = &config.kafka;
        let reader: BaseConsumer =
            reader_config(kafka, &format!("{}-rebuild", kafka.group_id)).create()?;
        let since = Utc::now().timestamp_millis() - (secs as i64) * 1000;
        let mut by_time = TopicPartitionList::new();
        // Where each partition ends now: the rebuild reads up to there, not into new output.
        let mut ends: HashMap<(String, i32), i64> = HashMap::new();
        for topic in [
            &kafka.routed_topic,
            &kafka.triage_topic,
            &kafka.ignored_topic,
        ] {
            let metadata = reader.fetch_metadata(Some(topic), QUERY_TIMEOUT)?;
            for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
                let (low, high) = reader.fetch_watermarks(topic, partition.id(), QUERY_TIMEOUT)?;
                if high > low {
                    ends.insert((topic.clone(), partition.id()), high);
                    by_time.add_partition_offset(topic, partition.id(), Offset::Offset(since))?;
                }
            }
        }
        if ends.is_empty() {
            tracing::info!(
                secs,
                "inline detection: nothing to rebuild, the output topics are empty"
            );
            return Ok(rebuilt);
        }
        let starts = reader.offsets_for_times(by_time, QUERY_TIMEOUT)?;
        let mut assignment = TopicPartitionList::new();
        // Partitions read from their start because the broker gave no offset for the time.
        let mut from_start = 0;
        for element in starts.elements() {
            let key = (element.topic().to_string(), element.partition());
            let Some(&end) = ends.get(&key) else {
                continue;
            };
            let start = match element.offset() {
                Offset::Offset(start) if start < end => Some(start),
                // No offset for the time: either nothing is that recent, or the broker cannot
                // look offsets up by time (librdkafka's mock cluster, topics without
                // timestamps). The last message's own timestamp tells which; in the second
                // case the partition is read from its start, older messages skipped.
                _ => match last_timestamp(&reader, &key.0, key.1, end)? {
                    Some(last) if last >= since => {
                        from_start += 1;
                        Some(reader.fetch_watermarks(&key.0, key.1, QUERY_TIMEOUT)?.0)
                    }
                    _ => None,
                },
            };
            match start {
                Some(start) => {
                    assignment.add_partition_offset(&key.0, key.1, Offset::Offset(start))?
                }
                None => {
                    ends.remove(&key);
                }
            }
        }
        if ends.is_empty() {
            tracing::info!(
                secs,
                "inline detection: nothing to rebuild, no output within the horizon"
            );
            return Ok(rebuilt);
        }
        reader.assign(&assignment)?;
        tracing::info!(
            partitions = ends.len(),
            from_start,
            secs,
            "inline detection: rebuilding state from the output topics"
        );
        let mut watermarks = new_watermarks(config);
        let started = Instant::now();
        let mut last_progress = Instant::now();
        while !ends.is_empty() && !stop.is_cancelled() {
            let message = match reader.poll(Duration::from_millis(200)) {
                None => {
                    // The ends were read before: a partition that stays silent has lost its
                    // tail (retention), so give up on it rather than wait forever.
                    if last_progress.elapsed() > QUERY_TIMEOUT {
                        tracing::warn!(
                            partitions = ends.len(),
                            "inline detection: rebuild stopped waiting for partitions that do not reach their end"
                        );
                        break;
                    }
                    continue;
                }
                // Transient (a broker reconnecting): the silence bound above still ends the
                // rebuild if it does not pass.
                Some(Err(error)) => {
                    tracing::warn!(%error, "inline detection: consumer error during the rebuild");
                    continue;
                }
                Some(Ok(message)) => message,
            };
            last_progress = Instant::now();
            let key = (message.topic().to_string(), message.partition());
            if ends
                .get(&key)
                .is_some_and(|end| message.offset() + 1 >= *end)
            {
                ends.remove(&key);
            }
            if message.timestamp().to_millis().is_some_and(|at| at < since) {
                continue;
            }
            let event = message
                .payload()
                .and_then(|payload| serde_json::from_slice::<Event>(payload).ok());
            let Some(event) = event else {
                if rebuilt.unreadable == 0 {
                    tracing::warn!(
                        topic = %key.0,
                        offset = message.offset(),
                        "inline detection: an output message is not an event this version reads; skipped in the rebuild"
                    );
                }
                rebuilt.unreadable += 1;
                continue;
            };
            let tokens = stages.detection_tokens(event.title.as_deref(), &event.text);
            let source = rebuild_source(&key.0, key.1, &event);
            let mut state = self.lock();
            watermarks.seen(source, event.occurred_at, Instant::now());
            let input = DetectInput {
                // The id it was published with: the re-read order may start its cluster at
                // another report.
                incident_id: event.incident_id.as_deref(),
                ..detect_input(&event, &tokens)
            };
            state.detector.observe_from(source, &input);
            rebuilt.events += 1;
            if rebuilt.events % 1024 == 0 {
                if let Some(watermark) = watermarks.watermark(Instant::now()) {
                    state.detector.advance_to(watermark);
                }
            }
        }
        let mut state = self.lock();
        if let Some(watermark) = watermarks.watermark(Instant::now()) {
            state.detector.advance_to(watermark);
        }
        report(&state.detector, &self.metrics);
        tracing::info!(
            events = rebuilt.events,
            unreadable = rebuilt.unreadable,
            secs = started.elapsed().as_secs_f64(),
            "inline detection: state rebuilt"
        );
        Ok(rebuilt)
    }
}

/// The broker timestamp of a partition's last message (`end` is its high watermark); `None`
/// when it has none or does not arrive within [`QUERY_TIMEOUT`].
fn last_timestamp(
    reader: &BaseConsumer,
    topic: &str,
    partition: i32,
    end: i64,
) -> Result<Option<i64>, KafkaError> {
    let mut last = TopicPartitionList::new();
    last.add_partition_offset(topic, partition, Offset::Offset(end - 1))?;
    reader.assign(&last)?;
    let asked = Instant::now();
    let mut timestamp = None;
    while asked.elapsed() < QUERY_TIMEOUT {
        if let Some(message) = reader.poll(Duration::from_millis(100)) {
            timestamp = message?.timestamp().to_millis();
            break;
        }
    }
    reader.unassign()?;
    Ok(timestamp)
}

/// The ordered stream a re-read output event belongs to: its output partition together with
/// the input partition it came from (one output partition interleaves several input
/// partitions, each in order), apart from the live streams of the input partitions.
fn rebuild_source(topic: &str, partition: i32, event: &Event) -> SourceId {
    use std::hash::{Hash, Hasher};
    let mut hasher = rustc_hash::FxHasher::default();
    ("rebuild", topic, partition).hash(&mut hasher);
    if let Some(source) = &event.source {
        (&source.topic, source.partition).hash(&mut hasher);
    }
    hasher.finish() as SourceId
}
