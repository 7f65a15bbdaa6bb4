//! Wiring for `run`, stage 2: detection. The internal topic `citypulse.events` (keyed by
//! district) in; alert messages out to `citypulse.alerts`, the live feed and the metrics; and,
//! with `pipeline.route_after_detection`, each event, now carrying its `incident_id`, out to the
//! routed / triage / ignored topic by its route (otherwise stage 1 has routed it already).
//!
//! ```text
//! raw.* ─> stage 1 (pipeline.rs) ─> citypulse.events ─> stage 2 (here) ─> routed / triage / ignored
//!          decode … route            keyed by district    Detector          citypulse.alerts, feed
//!          (bad input ─> DLQ)                             observe_from
//! ```
//! Stage 2 consumes the internal topic in its own consumer group (`<group>-detect`): instances
//! in the group each own a share of the districts and together raise the same alerts as one
//! instance would: all detection state that decides an alert is per district (see
//! `detect::detector`). Detection state is rebuilt on every assignment by re-reading the
//! topic's recent past (`detect_rebuild_secs`); messages below the committed offset were
//! processed before, so re-reading them only rebuilds state: they produce neither events nor
//! alerts and are never marked begun, so the commit never moves backwards.
//!
//! Stage 1 wrote each event as JSON once. Stage 2 reads only the fields it needs
//! (`EventFacts`) and sends that JSON on with its `incident_id` filled in
//! (`with_incident_id`); it does not parse the whole event and write it again.
//!
//! At-least-once, as in stage 1: each internal offset is begun in an [`OffsetTracker`] and
//! completed once the routed event and every alert it caused were acknowledged; the commit
//! point never passes an unfinished offset. Acknowledgements are awaited concurrently, up to
//! `pipeline.max_in_flight` records (and [`MAX_IN_FLIGHT_BYTES`]); at the limit the consumer
//! stops reading. On revoke, what finished is committed and the partitions are forgotten; on
//! shutdown the acknowledgements are drained for up to `pipeline.shutdown_timeout_secs` and
//! what finished is committed.
//!
//! Event time is per ordered stream ([`event_source`]: an internal partition × the input
//! partition its events came from, as stage 1 keeps each input partition in order but its
//! workers drift apart): an event is late only against its own stream's latest event, and the
//! watermark that resolves quiet alerts is the minimum over the streams ([`Watermarks`]),
//! streams idle for `detect.idle_partition_secs` left out. So one partition catching up on a
//! backlog while the others are live loses nothing.

use crate::alert_feed::AlertFeed;
use crate::config::PipelineConfig;
use crate::detect::{Alert, DetectInput, Detector, Watermarks};
use crate::event::{Channel, Event, Route, SCHEMA_VERSION};
use crate::health::Health;
use crate::kafka::offsets::{OffsetTracker, PartitionKey};
use crate::kafka::producer::{DeliveryFuture, Producer};
use crate::kafka::{commit_offsets, consumer_config, create_producer, lock};
use crate::metrics::Metrics;
use crate::pipeline::{
    commit_finished, dead_letter_record, enqueue_async, event_message, final_commit, settle,
    EventMessage, InputRecord, OutputTopics, PendingAck, PipelineError, Settled,
    MAX_IN_FLIGHT_BYTES,
};
use crate::stages::DeadLetter;
use crate::text::tokens::TokenList;
use chrono::{DateTime, FixedOffset, Utc};
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Header of an internal message: when the input record it came from entered Kafka (epoch
/// milliseconds), so stage 2 measures the latency end to end.
pub const INPUT_TIMESTAMP_HEADER: &str = "citypulse.input_timestamp_ms";

/// The internal topic's payload: the event and the content tokens detection clusters on.
#[derive(Debug, Serialize, Deserialize)]
pub struct InternalEvent {
    pub event: Event,
    pub tokens: TokenList,
}

/// Stage 2's reading of an internal message: the event's JSON kept as written, to be sent on
/// with its incident id filled in ([`with_incident_id`]) rather than parsed into an [`Event`]
/// and written out again — stage 1 serialised it once already.
#[derive(Deserialize)]
struct InternalView<'a> {
    #[serde(borrow)]
    event: &'a serde_json::value::RawValue,
    tokens: TokenList,
}

/// The fields of an internal event that detection and routing read; the texts, which are most
/// of its bytes, are skipped. Strings borrow the message where they hold no escapes.
#[derive(Deserialize)]
struct EventFacts<'a> {
    schema_version: u32,
    #[serde(borrow)]
    id: Cow<'a, str>,
    channel: Channel,
    occurred_at: DateTime<FixedOffset>,
    #[serde(borrow)]
    district: Option<Cow<'a, str>>,
    keywords: Vec<String>,
    #[serde(borrow)]
    category: Cow<'a, str>,
    #[serde(borrow)]
    department: Cow<'a, str>,
    priority: u8,
    #[serde(borrow)]
    emotion: Cow<'a, str>,
    route: Route,
    #[serde(borrow)]
    source: Option<SourceFacts<'a>>,
}

#[derive(Deserialize)]
struct SourceFacts<'a> {
    #[serde(borrow)]
    topic: Cow<'a, str>,
    partition: i32,
}

impl EventFacts<'_> {
    fn detect_input<'a>(&'a self, tokens: &'a TokenList) -> DetectInput<'a> {
        DetectInput {
            event_id: &self.id,
            channel: self.channel,
            occurred_at: self.occurred_at,
            district: self.district.as_deref(),
            category: &self.category,
            tokens,
            keywords: &self.keywords,
            priority: self.priority,
            emotion: Some(&self.emotion),
            relevant: self.route != Route::Ignored,
            incident_id: None,
        }
    }

    /// The output message's key, as [`crate::pipeline::event_message`] gives it.
    fn output_key(&self) -> &str {
        match self.route {
            Route::Routed => &self.department,
            Route::Triage | Route::Ignored => &self.id,
        }
    }
}

/// How an event's JSON ends while it has no incident: `incident_id` is the last field of
/// [`Event`] and is always written.
const NO_INCIDENT_YET: &str = r#""incident_id":null}"#;

/// The output JSON of an internal event: `event_json` (as stage 1 serialised the [`Event`])
/// with its `incident_id` set, byte for byte what serialising the event with that id gives.
/// `None` if the JSON does not end as an event without an incident does.
fn with_incident_id(event_json: &str, incident_id: Option<&str>) -> Option<Vec<u8>> {
    let head = event_json.strip_suffix(NO_INCIDENT_YET)?;
    let mut json = Vec::with_capacity(event_json.len() + 48);
    json.extend_from_slice(head.as_bytes());
    json.extend_from_slice(br#""incident_id":"#);
    serde_json::to_writer(&mut json, &incident_id).ok()?;
    json.push(b'}');
    Some(json)
}

/// Read an internal message for stage 2: its event's JSON as written, and the facts in it.
fn read_internal(payload: &[u8]) -> Result<(InternalView<'_>, EventFacts<'_>), String> {
    let unreadable = |error: serde_json::Error| format!("unreadable internal event: {error}");
    let view: InternalView = serde_json::from_slice(payload).map_err(unreadable)?;
    let facts: EventFacts = serde_json::from_str(view.event.get()).map_err(unreadable)?;
    if facts.schema_version != SCHEMA_VERSION {
        return Err(format!(
            "internal event of schema version {}, this version reads {SCHEMA_VERSION}",
            facts.schema_version
        ));
    }
    Ok((view, facts))
}

/// The output message of an internal event with its incident id: the event's JSON as stage 1
/// wrote it with the id filled in, or, should it not end as expected, the event parsed, given
/// the id and written again.
fn output_message(
    event_json: &str,
    facts: &EventFacts,
    incident_id: Option<String>,
) -> Result<EventMessage, serde_json::Error> {
    match with_incident_id(event_json, incident_id.as_deref()) {
        Some(payload) => Ok(EventMessage {
            route: facts.route,
            key: facts.output_key().to_string(),
            payload,
        }),
        None => {
            let mut event: Event = serde_json::from_str(event_json)?;
            event.incident_id = incident_id;
            event_message(&event)
        }
    }
}

/// The ordered stream an internal event came from: its internal partition together with the
/// input partition stage 1 read it from. Stage 1 keeps each input partition in order, but its
/// workers drift apart, so one internal partition interleaves several ordered streams; judging
/// lateness per interleaved stream (not per internal partition) keeps a worker that runs ahead
/// from making another worker's events late. Deterministic, so a replay sees the same sources.
pub fn event_source(
    internal_partition: i32,
    input: Option<(&str, i32)>,
) -> crate::detect::SourceId {
    use std::hash::{Hash, Hasher};
    let mut hasher = rustc_hash::FxHasher::default();
    internal_partition.hash(&mut hasher);
    if let Some((topic, partition)) = input {
        topic.hash(&mut hasher);
        partition.hash(&mut hasher);
    }
    // Truncation is fine: a collision only merges two sources' lateness clocks.
    hasher.finish() as crate::detect::SourceId
}

/// The internal topic's key: the district, so one instance sees all of a district's events.
pub fn district_key(event: &Event) -> &str {
    event.district.as_deref().unwrap_or("未知区县")
}

/// What detection reads from one output event.
pub fn detect_input<'a>(event: &'a Event, tokens: &'a TokenList) -> DetectInput<'a> {
    DetectInput {
        event_id: &event.id,
        channel: event.channel,
        occurred_at: event.occurred_at,
        district: event.district.as_deref(),
        category: &event.category,
        tokens,
        keywords: &event.keywords,
        priority: event.priority,
        emotion: Some(&event.emotion),
        relevant: event.route != Route::Ignored,
        incident_id: None,
    }
}

/// Shared between the consumer's rebalance callback and the detection loop.
#[derive(Default)]
struct Assignment {
    /// Bumped on every assignment: the loop starts a fresh detector when it changes.
    generation: AtomicU64,
    /// Per partition, the committed offset: messages below it were processed before (by this
    /// or another instance) and are re-read only to rebuild state.
    replay_until: Mutex<HashMap<PartitionKey, i64>>,
}

struct DetectionContext {
    assignment: Arc<Assignment>,
    /// Told whether this instance holds detection partitions (readiness, when stage 2 routes).
    health: Arc<Health>,
    rebuild: Duration,
    tracker: Arc<Mutex<OffsetTracker>>,
    metrics: Metrics,
}

impl ClientContext for DetectionContext {}

impl ConsumerContext for DetectionContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS {
            self.health.set_detection_assigned(false);
            self.release(consumer, partitions);
            if let Err(error) = consumer.unassign() {
                tracing::warn!(%error, "detection: unassign failed");
            }
            return;
        }
        let committed = consumer
            .committed_offsets(partitions.clone(), Duration::from_secs(10))
            .unwrap_or_else(|_| partitions.clone());
        let since = Utc::now().timestamp_millis() - self.rebuild.as_millis() as i64;
        let mut by_time = partitions.clone();
        let _ = by_time.set_all_offsets(Offset::Offset(since));
        let starts = consumer
            .offsets_for_times(by_time, Duration::from_secs(10))
            .unwrap_or_else(|_| partitions.clone());
        let mut replay = HashMap::new();
        let mut assignment = TopicPartitionList::new();
        for element in partitions.elements() {
            let (topic, partition) = (element.topic(), element.partition());
            let key = PartitionKey {
                topic: topic.to_string(),
                partition,
            };
            let committed = committed
                .find_partition(topic, partition)
                .and_then(|e| e.offset().to_raw())
                .filter(|o| *o >= 0);
            let start = starts
                .find_partition(topic, partition)
                .map(|e| e.offset())
                .unwrap_or(Offset::Beginning);
            // Re-read from the rebuild horizon, but never skip what was not yet processed.
            let start = match (start, committed) {
                (Offset::Offset(s), Some(c)) => Offset::Offset(s.min(c)),
                (Offset::End, Some(c)) => Offset::Offset(c),
                (Offset::Offset(s), None) => Offset::Offset(s),
                _ => Offset::Beginning,
            };
            replay.insert(key, committed.unwrap_or(0));
            let _ = assignment.add_partition_offset(topic, partition, start);
        }
        *self
            .assignment
            .replay_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = replay;
        self.assignment.generation.fetch_add(1, Ordering::SeqCst);
        if let Err(error) = consumer.assign(&assignment) {
            tracing::error!(%error, "detection: assign failed");
        } else {
            self.health.set_detection_assigned(assignment.count() > 0);
            tracing::info!(
                partitions = assignment.count(),
                "detection partitions assigned; rebuilding state"
            );
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(error) = result {
            self.metrics.commit_failures.inc();
            tracing::warn!(%error, partitions = offsets.count(), "detection: offset commit failed; retried at the next interval");
            lock(&self.tracker).commit_failed(&partition_keys(offsets));
        }
    }
}

impl DetectionContext {
    /// Partitions are leaving: commit what finished on them and forget them, so the next owner
    /// re-reads (and routes again) only records whose outputs were not all acknowledged.
    fn release(&self, consumer: &BaseConsumer<Self>, partitions: &TopicPartitionList) {
        let keys = partition_keys(partitions);
        let mut tracker = lock(&self.tracker);
        let finished: Vec<(PartitionKey, i64)> = tracker
            .committable()
            .into_iter()
            .filter(|(key, _)| keys.contains(key))
            .collect();
        if !finished.is_empty() {
            match commit_offsets(consumer, &finished, CommitMode::Sync) {
                Ok(()) => self.metrics.commits.inc(),
                Err(error) => {
                    self.metrics.commit_failures.inc();
                    tracing::warn!(%error, "detection: commit before revoke failed; the next owner re-reads more");
                }
            }
        }
        tracker.forget(&keys);
        tracing::info!(partitions = keys.len(), "detection partitions revoked");
    }
}

fn partition_keys(list: &TopicPartitionList) -> Vec<PartitionKey> {
    list.elements()
        .iter()
        .map(|e| PartitionKey {
            topic: e.topic().to_string(),
            partition: e.partition(),
        })
        .collect()
}

/// The outcome of one entry of the acknowledgement set: a record whose outputs were all
/// acknowledged (with the assignment generation it was begun in), or `None` for alerts not
/// caused by a record (quiet threads resolving on the watermark).
type Acked = Result<Option<(Settled, u64)>, PipelineError>;

/// Stage 2 between messages: the detector and the outputs awaiting acknowledgement.
struct DetectStage<'c> {
    config: &'c PipelineConfig,
    detector: Detector,
    watermarks: Watermarks,
    generation: u64,
    assignment: Arc<Assignment>,
    tracker: Arc<Mutex<OffsetTracker>>,
    producer: Producer,
    outputs: Arc<OutputTopics>,
    feed: AlertFeed,
    metrics: Metrics,
    /// Payload bytes of the records awaiting acknowledgement.
    bytes: usize,
}

/// Consume the internal topic, assign incidents, route the events and raise alerts until `stop`
/// is cancelled (then drain and commit). A fatal delivery error cancels `stop` too, so the
/// routing stage sharing the token stops rather than feed a stage that no longer runs.
pub async fn run(
    config: &PipelineConfig,
    feed: AlertFeed,
    metrics: Metrics,
    stop: CancellationToken,
) -> Result<(), PipelineError> {
    run_with_health(config, feed, metrics, Arc::new(Health::new()), stop).await
}

/// [`run`], reporting to `health` whether this instance holds detection partitions — what
/// readiness needs when stage 2 routes (`pipeline.route_after_detection`).
pub async fn run_with_health(
    config: &PipelineConfig,
    feed: AlertFeed,
    metrics: Metrics,
    health: Arc<Health>,
    stop: CancellationToken,
) -> Result<(), PipelineError> {
    if config.pipeline.detection && config.pipeline.route_after_detection {
        health.require_detection_partitions();
    }
    let tracker = Arc::new(Mutex::new(OffsetTracker::new()));
    let assignment = Arc::new(Assignment::default());
    let mut client = consumer_config(&config.kafka);
    client.set("group.id", format!("{}-detect", config.kafka.group_id));
    if let Some(instance) = &config.kafka.instance_id {
        // Its own static name in its own group, so that no broker can mistake the two
        // consumers of one instance for one member.
        client.set("group.instance.id", format!("{instance}-detect"));
    }
    // Small fetches per partition, so that when detection catches up on a backlog (a restart,
    // a rebalance) the partitions are read interleaved: the watermark, the minimum over the
    // partitions, then moves forward evenly and quiet alerts resolve on time.
    client.set("max.partition.fetch.bytes", "16384");
    // Stage 2 sits on the routed events' path: a fetch of a quiet internal topic should not
    // stay open for librdkafka's default 500 ms on a broker that answers only when the wait
    // ends (librdkafka's mock cluster does; Apache Kafka answers as soon as data arrives).
    // `kafka.client` may set it otherwise.
    if !config.kafka.client.contains_key("fetch.wait.max.ms") {
        client.set("fetch.wait.max.ms", "50");
    }
    let consumer: Arc<StreamConsumer<DetectionContext>> = Arc::new(
        client
            .create_with_context(DetectionContext {
                assignment: assignment.clone(),
                health,
                rebuild: Duration::from_secs(config.detect_rebuild_secs()),
                tracker: tracker.clone(),
                metrics: metrics.clone(),
            })
            .map_err(PipelineError::Client)?,
    );
    let events_topic = config.kafka.events_topic.clone();
    consumer
        .subscribe(&[&events_topic])
        .map_err(|source| PipelineError::Subscribe {
            topics: vec![events_topic.clone()],
            source,
        })?;
    let producer = create_producer(&config.kafka).map_err(PipelineError::Client)?;
    let settings = &config.pipeline;
    let mut stage = DetectStage {
        config,
        detector: Detector::new(config.detect.clone()),
        watermarks: new_watermarks(config),
        generation: assignment.generation.load(Ordering::SeqCst),
        assignment,
        tracker: tracker.clone(),
        producer,
        outputs: Arc::new(OutputTopics::new(config)),
        feed,
        metrics: metrics.clone(),
        bytes: 0,
    };
    // Outside `stage`, which is borrowed across awaits and so must be `Sync`.
    let mut pending: FuturesUnordered<BoxFuture<'static, Acked>> = FuturesUnordered::new();

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut commit_tick = tokio::time::interval(Duration::from_millis(settings.commit_interval_ms));
    commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut fatal = None;
    loop {
        let full = pending.len() >= settings.max_in_flight || stage.bytes >= MAX_IN_FLIGHT_BYTES;
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            Some(acked) = pending.next(), if !pending.is_empty() => {
                if let Err(error) = stage.acked(acked) {
                    tracing::error!(%error, "detection: fatal delivery error; stopping");
                    fatal = Some(error);
                    stop.cancel();
                    break;
                }
            }
            _ = commit_tick.tick() => commit_finished(&consumer, &tracker, &metrics),
            _ = tick.tick() => pending.extend(stage.tick().await),
            // At the limit only acknowledgements (above) are awaited until some complete.
            message = consumer.recv(), if !full => match message {
                Ok(message) => pending.extend(stage.message(&message).await),
                Err(error) => tracing::warn!(%error, "detection consumer error"),
            },
        }
    }

    // Drain: await what is still unacknowledged, then commit what finished.
    let grace = Duration::from_secs(settings.shutdown_timeout_secs);
    let drain = async {
        while let Some(acked) = pending.next().await {
            if let Err(error) = stage.acked(acked) {
                tracing::error!(%error, "detection: fatal delivery error while draining");
                fatal.get_or_insert(error);
            }
        }
    };
    if tokio::time::timeout(grace, drain).await.is_err() {
        tracing::warn!(
            secs = settings.shutdown_timeout_secs,
            "detection drain timed out; committing what was acknowledged, the rest will be re-read"
        );
    }
    final_commit(consumer, tracker, &metrics).await;
    fatal.map_or(Ok(()), Err)
}

pub(crate) fn new_watermarks(config: &PipelineConfig) -> Watermarks {
    Watermarks::new(
        config.detect.allowed_lateness_secs,
        Duration::from_secs(config.detect.idle_partition_secs),
    )
}

impl DetectStage<'_> {
    /// Every second: quiet alerts resolve as the watermark passes them. When every partition
    /// is idle it moves on from the latest event as fast as the wall clock since that arrived:
    /// anchored to the events, not to the wall clock, so replaying an old stream works as a
    /// live one does.
    async fn tick(&mut self) -> Option<BoxFuture<'static, Acked>> {
        if let Some(watermark) = self.watermarks.watermark(Instant::now()) {
            let mut deliveries = Vec::new();
            for alert in self.detector.advance_to(watermark) {
                deliveries.extend(self.alert(alert).await);
            }
            if !deliveries.is_empty() {
                let metrics = self.metrics.clone();
                report(&self.detector, &self.metrics);
                return Some(Box::pin(async move {
                    await_resolved_alerts(deliveries, metrics).await;
                    Ok(None)
                }));
            }
        }
        report(&self.detector, &self.metrics);
        None
    }

    /// A new assignment (the rebalance callback bumped the generation): start from empty
    /// state, rebuilt from the re-read history.
    fn reset_if_reassigned(&mut self) {
        let current = self.assignment.generation.load(Ordering::SeqCst);
        if current == self.generation {
            return;
        }
        self.generation = current;
        self.detector = Detector::new(self.config.detect.clone());
        self.watermarks = new_watermarks(self.config);
        let assigned: Vec<i32> = self
            .assignment
            .replay_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .map(|k| k.partition)
            .collect();
        self.watermarks.assign(assigned, Instant::now());
    }

    /// One internal message: observe it, then (unless re-read to rebuild state) route the
    /// event with its incident id and publish the alerts it caused.
    async fn message(
        &mut self,
        message: &BorrowedMessage<'_>,
    ) -> Option<BoxFuture<'static, Acked>> {
        self.reset_if_reassigned();
        let partition = PartitionKey {
            topic: message.topic().to_string(),
            partition: message.partition(),
        };
        let offset = message.offset();
        let replaying = self
            .assignment
            .replay_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&partition)
            .is_some_and(|until| offset < *until);
        let parsed = match message.payload() {
            Some(payload) => read_internal(payload),
            None => Err("internal message without payload".to_string()),
        };
        let internal = match parsed {
            Ok(internal) => Some(internal),
            Err(reason) => {
                // Written by citypulse itself, so unreadable means a version mismatch.
                tracing::error!(%reason, offset, "detection: internal message dead-lettered");
                None
            }
        };
        let observation = internal.as_ref().map(|(view, facts)| {
            let input = facts.source.as_ref().map(|s| (&*s.topic, s.partition));
            let source = event_source(partition.partition, input);
            self.watermarks
                .seen(source, facts.occurred_at, Instant::now());
            self.detector
                .observe_from(source, &facts.detect_input(&view.tokens))
        });
        if replaying {
            return None;
        }
        let record = InputRecord {
            channel: internal.as_ref().map(|(_, facts)| facts.channel),
            offset,
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            timestamp_ms: input_timestamp(message),
            partition,
        };
        lock(&self.tracker).begin(&record.partition, offset);
        let mut deliveries = Vec::new();
        match (internal, observation) {
            (Some(_), Some(observation)) if !self.outputs.route_after_detection => {
                // Stage 1 routed the event already; this stage raises the alerts.
                for alert in observation.alerts {
                    deliveries.extend(self.alert(alert).await);
                }
            }
            (Some((view, facts)), Some(observation)) => {
                match output_message(view.event.get(), &facts, observation.incident_id) {
                    Ok(routed) => {
                        let topic = routed.topic(&self.outputs).to_string();
                        let delivery = enqueue_async(
                            &self.producer,
                            FutureRecord::to(&topic)
                                .key(&routed.key)
                                .payload(&routed.payload),
                        )
                        .await;
                        deliveries.push((topic, delivery));
                    }
                    Err(error) => {
                        let dead = DeadLetter {
                            reason: "internal_error",
                            message: format!("cannot serialise event: {error}"),
                        };
                        deliveries.push(self.dead_letter(&record, &dead).await);
                    }
                }
                for alert in observation.alerts {
                    deliveries.extend(self.alert(alert).await);
                }
            }
            _ => {
                let dead = DeadLetter {
                    reason: "invalid_internal_event",
                    message: "the internal message is not an event this version reads".into(),
                };
                deliveries.push(self.dead_letter(&record, &dead).await);
            }
        }
        self.bytes += record.payload.len();
        let generation = self.generation;
        let ack = PendingAck {
            partition: record.partition.clone(),
            offset,
            deliveries,
            original: record,
        };
        let settling = settle(
            ack,
            self.producer.clone(),
            self.outputs.clone(),
            self.metrics.clone(),
        );
        Some(Box::pin(async move {
            settling.await.map(|settled| Some((settled, generation)))
        }))
    }

    async fn dead_letter(
        &self,
        record: &InputRecord,
        dead: &DeadLetter,
    ) -> (String, Result<DeliveryFuture, KafkaError>) {
        let dlq = &self.outputs.dlq;
        let delivery = enqueue_async(&self.producer, dead_letter_record(dlq, record, dead)).await;
        self.metrics
            .dead_letters
            .with_label_values(&[
                record
                    .channel
                    .map_or("unknown", crate::event::Channel::as_str),
                dead.reason,
            ])
            .inc();
        (dlq.clone(), delivery)
    }

    /// Count and log an alert, put it on the live feed and hand it to the producer (keyed by
    /// alert id). `None` when it cannot be serialised (logged).
    async fn alert(&self, alert: Alert) -> Option<(String, Result<DeliveryFuture, KafkaError>)> {
        let delivery = match announce(&alert, &self.metrics) {
            Some(payload) => {
                let topic = &self.outputs.alerts;
                let delivery = enqueue_async(
                    &self.producer,
                    FutureRecord::to(topic)
                        .key(&alert.alert_id)
                        .payload(&payload),
                )
                .await;
                Some((topic.clone(), delivery))
            }
            None => None,
        };
        self.feed.publish(alert);
        delivery
    }

    /// An entry of the acknowledgement set finished: complete its offset (unless it belongs
    /// to an assignment since revoked: the next owner re-reads it).
    fn acked(&mut self, acked: Acked) -> Result<(), PipelineError> {
        let Some((settled, generation)) = acked? else {
            return Ok(());
        };
        self.bytes = self.bytes.saturating_sub(settled.bytes);
        if self.outputs.route_after_detection {
            settled.observe_latency(&self.metrics);
        }
        if generation == self.assignment.generation.load(Ordering::SeqCst) {
            lock(&self.tracker).complete(&settled.partition, settled.offset);
        }
        Ok(())
    }
}

/// Counts and logs an alert and serialises it for the alerts topic (keyed by its id); `None`
/// when it cannot be serialised (logged). The caller produces it and puts it on the feed.
pub(crate) fn announce(alert: &Alert, metrics: &Metrics) -> Option<Vec<u8>> {
    metrics
        .alerts
        .with_label_values(&[
            alert.kind.as_str(),
            alert.status.as_str(),
            alert.severity.as_str(),
        ])
        .inc();
    tracing::info!(
        alert_id = %alert.alert_id, kind = alert.kind.as_str(), status = alert.status.as_str(),
        district = alert.district.as_deref().unwrap_or("-"), count = alert.count, "alert"
    );
    serde_json::to_vec(alert)
        .inspect_err(|error| {
            tracing::error!(%error, alert_id = %alert.alert_id, "cannot serialise alert");
        })
        .ok()
}

/// Awaits the deliveries of alerts that no record caused (threads resolving on the
/// watermark): nothing to hold back, so a failure is counted and logged, and the alert is
/// still on the live feed.
pub(crate) async fn await_resolved_alerts(
    deliveries: Vec<(String, Result<DeliveryFuture, KafkaError>)>,
    metrics: Metrics,
) {
    for (topic, delivery) in deliveries {
        if let Err(error) = acknowledged(delivery).await {
            metrics
                .delivery_failures
                .with_label_values(&["alert"])
                .inc();
            tracing::error!(%error, %topic, "alert not delivered to Kafka (still on the live feed)");
        }
    }
}

/// The input record's timestamp, carried from stage 1 in a header.
fn input_timestamp(message: &BorrowedMessage<'_>) -> Option<i64> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|header| header.key == INPUT_TIMESTAMP_HEADER)
        .and_then(|header| header.value)
        .and_then(|value| std::str::from_utf8(value).ok())
        .and_then(|value| value.parse().ok())
}

async fn acknowledged(delivery: Result<DeliveryFuture, KafkaError>) -> Result<(), KafkaError> {
    match delivery?.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((error, _))) => Err(error),
        Err(_canceled) => Err(KafkaError::Canceled),
    }
}

pub(crate) fn report(detector: &Detector, metrics: &Metrics) {
    let stats = detector.stats();
    tracing::debug!(
        observed = stats.events_observed,
        late = stats.late_dropped,
        future = stats.future_dropped,
        districts = stats.districts,
        "detection state"
    );
    metrics.active_incidents.set(stats.active_incidents as i64);
    for (kind, active) in crate::detect::AlertKind::ALL
        .iter()
        .zip(stats.active_by_kind)
    {
        metrics
            .active_alerts
            .with_label_values(&[kind.as_str()])
            .set(active as i64);
    }
    let top = stats.top_scores.first().map_or(0.0, |(_, score)| *score);
    metrics.top_burst_score.set(top);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::SourceRef;
    use crate::stages::Outcome;
    use crate::text::mask::AuthorHasher;

    /// Real events: every record of the channel fixtures through the stages, plus copies whose
    /// short strings need escaping (so they cannot be borrowed from the message).
    fn events() -> Vec<(Event, TokenList)> {
        let config = PipelineConfig::default();
        let stages =
            crate::assets::load_stages(&config, AuthorHasher::new(b"test"), Metrics::new())
                .expect("embedded stages load");
        let received = DateTime::parse_from_rfc3339("2026-11-28T08:00:00+08:00").unwrap();
        let source = SourceRef {
            topic: "raw.weibo".into(),
            partition: 3,
            offset: 7,
        };
        let mut events = Vec::new();
        for (file, channel) in [
            ("weibo.jsonl", Channel::Weibo),
            ("wechat.xmll", Channel::Wechat),
            ("12345.jsonl", Channel::Hotline12345),
            ("110.jsonl", Channel::Police110),
        ] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/channels")
                .join(file);
            let bytes = std::fs::read(&path).unwrap();
            for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let outcome = stages.process(channel, line, Some(source.clone()), received);
                if let Outcome::Event { event, tokens } = outcome {
                    events.push((*event, tokens));
                }
            }
        }
        assert!(events.len() >= 20, "only {} fixture events", events.len());
        let (mut escaped, tokens) = events[0].clone();
        escaped.id = "weibo:\"quoted\"\\1".into();
        escaped.district = Some("雨花\n区".into());
        escaped.category = "城乡\t建设".into();
        escaped.emotion = "an\u{2028}gry".into();
        escaped.source = None;
        events.push((escaped, tokens));
        events
    }

    /// The internal message as stage 1 writes it.
    fn internal_json(event: &Event, tokens: &TokenList) -> Vec<u8> {
        let internal = InternalEvent {
            event: event.clone(),
            tokens: tokens.clone(),
        };
        serde_json::to_vec(&internal).unwrap()
    }

    #[test]
    fn the_event_passed_on_is_byte_for_byte_the_event_written_with_its_incident() {
        let incidents = [None, Some("雨花区-城乡建设-17"), Some("a \"quoted\" \\ id")];
        for (event, tokens) in events() {
            let json = internal_json(&event, &tokens);
            let (view, facts) = read_internal(&json).expect("stage 1's message reads");
            assert!(view.event.get().ends_with(NO_INCIDENT_YET), "{}", event.id);
            for incident in incidents {
                let mut expected = event.clone();
                expected.incident_id = incident.map(str::to_string);
                let expected = event_message(&expected).unwrap();
                let got =
                    output_message(view.event.get(), &facts, incident.map(str::to_string)).unwrap();
                assert_eq!(
                    String::from_utf8(got.payload).unwrap(),
                    String::from_utf8(expected.payload).unwrap(),
                    "{}",
                    event.id
                );
                assert_eq!((got.route, got.key), (expected.route, expected.key));
            }
        }
    }

    #[test]
    fn detection_reads_the_same_facts_as_from_the_whole_event() {
        for (event, tokens) in events() {
            let json = internal_json(&event, &tokens);
            let (view, facts) = read_internal(&json).unwrap();
            let (fast, whole) = (
                facts.detect_input(&view.tokens),
                detect_input(&event, &tokens),
            );
            assert_eq!(fast.event_id, whole.event_id);
            assert_eq!(fast.channel, whole.channel);
            assert_eq!(fast.occurred_at, whole.occurred_at);
            assert_eq!(fast.district, whole.district);
            assert_eq!(fast.category, whole.category);
            assert_eq!(
                fast.tokens.iter().collect::<Vec<_>>(),
                tokens.iter().collect::<Vec<_>>()
            );
            assert_eq!(fast.keywords, whole.keywords);
            assert_eq!(fast.priority, whole.priority);
            assert_eq!(fast.emotion, whole.emotion);
            assert_eq!(fast.relevant, whole.relevant);
            let input = facts.source.as_ref().map(|s| (&*s.topic, s.partition));
            let from_event = event
                .source
                .as_ref()
                .map(|s| (s.topic.as_str(), s.partition));
            assert_eq!(event_source(5, input), event_source(5, from_event));
        }
    }

    #[test]
    fn an_event_that_already_carries_an_incident_is_parsed_and_written_again() {
        let (mut event, tokens) = events().swap_remove(0);
        event.incident_id = Some("old".into());
        let json = internal_json(&event, &tokens);
        let (view, facts) = read_internal(&json).unwrap();
        assert!(with_incident_id(view.event.get(), Some("new")).is_none());
        let got = output_message(view.event.get(), &facts, Some("new".into())).unwrap();
        event.incident_id = Some("new".into());
        assert_eq!(got.payload, event_message(&event).unwrap().payload);
    }

    #[test]
    fn an_internal_event_of_another_schema_version_is_refused_by_name() {
        let (mut event, tokens) = events().swap_remove(0);
        event.schema_version = SCHEMA_VERSION + 1;
        let error = read_internal(&internal_json(&event, &tokens))
            .err()
            .unwrap();
        assert!(error.contains("schema version 2"), "{error}");
        let error = read_internal(br#"{"event":{"id":1},"tokens":[]}"#)
            .err()
            .unwrap();
        assert!(error.starts_with("unreadable internal event"), "{error}");
    }
}
