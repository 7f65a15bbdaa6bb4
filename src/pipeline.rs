//! Wiring for `run`, stage 1: a Kafka source and sinks around the stages, with bounded queues,
//! offset tracking and a graceful shutdown.
//!
//! ```text
//! consumer task ──(bounded, by partition)──> worker threads ──(bounded)──> ack task
//!   recv, begin offset,                       stages::process,              await broker acks,
//!   commit every interval                     produce outputs               complete offset
//! ```
//! Both queues carry batches (`MAX_BATCH` records at most). The consumer task hands a worker
//! every record librdkafka already holds for it at once. A worker hands on its
//! acknowledgements at the end of a batch, or sooner once `ACK_FLUSH` has passed. Handed over
//! one by one, each record woke the other thread and cost two context switches: on one core,
//! the woken thread runs at once.
//!
//! By default a good event is routed here and, with detection on (`pipeline.detection`), also
//! written to the internal topic `citypulse.events`, keyed by district, for stage 2's alerts.
//! With `pipeline.route_after_detection` it goes only to the internal topic, and stage 2
//! (`detection.rs`) assigns its incident and routes it with [`event_message`], so routed events
//! carry their `incident_id`. With `pipeline.inline_detection` (one instance) there is no
//! internal topic: the workers observe each event in [`InlineDetection`] themselves and route
//! it with its `incident_id`, and publish the alerts it raised. Bad input goes to the
//! dead-letter topic in every case.
//!
//! At-least-once: an input offset is committed only once every output it caused (internal,
//! routed, triage, dead-letter or, inline, alert message) was acknowledged by the broker. Records of one
//! partition always go to the same worker, so per-partition order is kept on the outputs. When
//! the in-flight limit is reached the consumer stops reading until acknowledgements catch up, so
//! a slow or absent broker pauses the pipeline instead of growing memory.

use crate::alert_feed::AlertFeed;
use crate::channels::MAX_RECORD_BYTES;
use crate::config::PipelineConfig;
use crate::detect::Alert;
use crate::detection::{
    announce, await_resolved_alerts, district_key, InternalEvent, INPUT_TIMESTAMP_HEADER,
};
use crate::event::{Channel, Event, Route, SourceRef};
use crate::health::Health;
use crate::inline_detection::InlineDetection;
use crate::kafka::offsets::{OffsetTracker, PartitionKey};
use crate::kafka::producer::{DeliveryFuture, Producer};
use crate::kafka::{
    commit_offsets, consumer_config, create_producer, lock, PipelineContext, SoleOwner,
};
use crate::metrics::{Metrics, Stage};
use crate::stages::{DeadLetter, Outcome, Stages};
use crate::text::tokens::TokenList;
use chrono::{FixedOffset, Utc};
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

/// Why the pipeline stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("cannot create Kafka client: {0}")]
    Client(#[source] KafkaError),
    #[error("cannot subscribe to {topics:?}: {source}")]
    Subscribe {
        topics: Vec<String>,
        #[source]
        source: KafkaError,
    },
    /// Inline detection found another instance in its group.
    #[error("{0}")]
    NotSoleOwner(String),
    #[error("inline detection could not rebuild its state from the output topics: {0}")]
    Rebuild(#[source] KafkaError),
    #[error("the broker refused an output on {topic}: {source}; stopping without committing it")]
    Delivery {
        topic: String,
        #[source]
        source: KafkaError,
    },
}

/// Most records in one hand-over between the consumer task, a worker and the ack task.
const MAX_BATCH: usize = 64;
/// How long a worker may hold finished records' acknowledgements within a batch before handing
/// them on (checked after each record): a record is committed, and its latency observed when
/// stage 1 routes, about this much later at most.
const ACK_FLUSH: Duration = Duration::from_millis(1);

/// How long inline detection waits before trying its rebuild again (broker not reachable).
const REBUILD_RETRY: Duration = Duration::from_secs(5);

/// One input record, copied out of the consumer's buffer so the consumer can move on. Stage 2
/// builds one per internal message, so both stages dead-letter the same way.
pub(crate) struct InputRecord {
    pub(crate) partition: PartitionKey,
    pub(crate) offset: i64,
    pub(crate) channel: Option<Channel>,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) payload: Vec<u8>,
    /// When the original input entered Kafka, for the end-to-end latency histogram.
    pub(crate) timestamp_ms: Option<i64>,
}

/// The outputs of one input record, waiting for the broker's acknowledgement.
pub(crate) struct PendingAck {
    pub(crate) partition: PartitionKey,
    pub(crate) offset: i64,
    pub(crate) deliveries: Vec<(String, Result<DeliveryFuture, KafkaError>)>,
    /// Kept so a per-message refusal of an output can still dead-letter the original.
    pub(crate) original: InputRecord,
}

/// Output topic names, resolved once.
pub(crate) struct OutputTopics {
    pub(crate) routed: String,
    pub(crate) triage: String,
    pub(crate) ignored: String,
    pub(crate) dlq: String,
    pub(crate) alerts: String,
    /// The internal topic for detection, when detection runs.
    pub(crate) events: Option<String>,
    /// Whether stage 2 routes (detection on and `pipeline.route_after_detection`); otherwise
    /// stage 1 routes and stage 2 only raises alerts.
    pub(crate) route_after_detection: bool,
}

impl OutputTopics {
    pub(crate) fn new(config: &PipelineConfig) -> Self {
        OutputTopics {
            routed: config.kafka.routed_topic.clone(),
            triage: config.kafka.triage_topic.clone(),
            ignored: config.kafka.ignored_topic.clone(),
            dlq: config.kafka.dlq_topic.clone(),
            alerts: config.kafka.alerts_topic.clone(),
            events: (config.pipeline.detection && !config.pipeline.inline_detection)
                .then(|| config.kafka.events_topic.clone()),
            route_after_detection: config.pipeline.detection
                && !config.pipeline.inline_detection
                && config.pipeline.route_after_detection,
        }
    }

    /// The role of an output topic, the label of the delivery-failure counter.
    fn role(&self, topic: &str) -> &'static str {
        if topic == self.dlq {
            "dlq"
        } else if topic == self.alerts {
            "alert"
        } else {
            "event"
        }
    }
}

/// Records whose outputs are not all acknowledged: how many and how many bytes.
struct InFlight {
    tracker: Arc<Mutex<OffsetTracker>>,
    bytes: AtomicUsize,
    /// Woken whenever records complete, so a consumer waiting at the limit resumes.
    completed: Notify,
}

/// Largest total payload of in-flight records before the consumer waits (each stage).
pub(crate) const MAX_IN_FLIGHT_BYTES: usize = 64 * 1024 * 1024;

/// China Standard Time, the zone of every timestamp citypulse writes.
pub fn china_standard_time() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset")
}

/// Run the pipeline until `shutdown` is cancelled (then drain and commit) or a fatal error.
pub async fn run(
    config: &PipelineConfig,
    stages: Arc<Stages>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> Result<(), PipelineError> {
    run_with_feed(config, stages, health, AlertFeed::new(), shutdown).await
}

/// [`run`], putting the alerts of inline detection (`pipeline.inline_detection`) on `feed`.
pub async fn run_with_feed(
    config: &PipelineConfig,
    stages: Arc<Stages>,
    health: Arc<Health>,
    feed: AlertFeed,
    shutdown: CancellationToken,
) -> Result<(), PipelineError> {
    let metrics = stages.metrics.clone();
    // A fatal error anywhere stops the consumer the same way a signal does.
    let stop = shutdown.child_token();
    let inline = match config.pipeline.inline_detection && config.pipeline.detection {
        true => {
            let inline = Arc::new(InlineDetection::new(config, feed, metrics.clone()));
            // Before the first record: live events must follow the re-read ones. A broker that
            // is not up yet (a fresh deployment) is waited for, as the consumer would: the
            // rebuild fails only before it has observed anything, so it can start again.
            loop {
                let (rebuilding, config, stages, stopping) =
                    (inline.clone(), config.clone(), stages.clone(), stop.clone());
                let rebuilding = tokio::task::spawn_blocking(move || {
                    rebuilding.rebuild(&config, &stages, &stopping)
                });
                // A stop does not wait for a broker query of the rebuild to time out: the
                // task is left to end on its own (bounded by its queries' timeout).
                let rebuilt = tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    joined = rebuilding => joined.map_err(|_| PipelineError::Rebuild(KafkaError::Canceled))?,
                };
                match rebuilt {
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(%error, "inline detection: cannot rebuild its state yet; retrying in 5 s");
                        tokio::select! {
                            _ = stop.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(REBUILD_RETRY) => {}
                        }
                    }
                }
            }
            Some(inline)
        }
        false => None,
    };
    let sole_owner = inline.is_some().then(|| {
        let topics = config.input_topics().into_iter().map(|(_, t)| t).collect();
        Arc::new(SoleOwner::new(&config.kafka.group_id, topics, stop.clone()))
    });
    let in_flight = Arc::new(InFlight {
        tracker: Arc::new(Mutex::new(OffsetTracker::new())),
        bytes: AtomicUsize::new(0),
        completed: Notify::new(),
    });
    let mut client = consumer_config(&config.kafka);
    // Statistics feed the consumer-lag gauge (see `PipelineContext::stats`).
    client.set("statistics.interval.ms", "5000");
    let consumer: Arc<StreamConsumer<PipelineContext>> = Arc::new(
        client
            .create_with_context(PipelineContext {
                tracker: in_flight.tracker.clone(),
                health: health.clone(),
                metrics: metrics.clone(),
                sole_owner: sole_owner.clone(),
                owned: Mutex::new(rdkafka::TopicPartitionList::new()),
                cooperative: crate::kafka::cooperative_protocol(&client),
            })
            .map_err(PipelineError::Client)?,
    );
    let producer = create_producer(&config.kafka).map_err(PipelineError::Client)?;
    let channel_of_topic: HashMap<String, Channel> = config
        .input_topics()
        .into_iter()
        .map(|(channel, topic)| (topic, channel))
        .collect();
    let topics: Vec<String> = channel_of_topic.keys().cloned().collect();
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topic_refs)
        .map_err(|source| PipelineError::Subscribe {
            topics: topics.clone(),
            source,
        })?;
    tracing::info!(?topics, group = %config.kafka.group_id, "subscribed");

    let outputs = Arc::new(OutputTopics::new(config));
    // With detection on, this stage's outputs are not the end of the flow: stage 2 observes
    // the end-to-end latency from the input timestamp carried on the internal message.
    let observe_latency = !outputs.route_after_detection;
    let settings = &config.pipeline;
    // Each queue holds `queue_capacity` records, give or take a batch.
    let batch = MAX_BATCH.min(settings.queue_capacity);
    let batches = settings.queue_capacity.div_ceil(batch);
    let (ack_tx, ack_rx) = mpsc::channel::<Vec<PendingAck>>(batches);
    let mut worker_txs = Vec::with_capacity(settings.workers);
    let mut workers = Vec::with_capacity(settings.workers);
    for _ in 0..settings.workers {
        let (tx, rx) = mpsc::channel::<Vec<InputRecord>>(batches);
        worker_txs.push(tx);
        let (stages, producer, outputs, ack_tx, inline) = (
            stages.clone(),
            producer.clone(),
            outputs.clone(),
            ack_tx.clone(),
            inline.clone(),
        );
        workers.push(tokio::task::spawn_blocking(move || {
            let output = Output {
                stages: &stages,
                producer: &producer,
                topics: &outputs,
                inline: inline.as_deref(),
            };
            worker_loop(rx, &output, &ack_tx)
        }));
    }
    drop(ack_tx);
    let ticker = inline.map(|inline| {
        tokio::spawn(tick_loop(
            inline,
            producer.clone(),
            outputs.clone(),
            metrics.clone(),
            stop.clone(),
        ))
    });
    let acker = tokio::spawn(ack_loop(
        ack_rx,
        in_flight.clone(),
        producer.clone(),
        outputs,
        observe_latency,
        metrics.clone(),
        stop.clone(),
    ));

    consume_loop(
        &consumer,
        &channel_of_topic,
        worker_txs,
        batch,
        &in_flight,
        settings.max_in_flight,
        Duration::from_millis(settings.commit_interval_ms),
        &metrics,
        &stop,
    )
    .await;
    health.set_shutting_down();

    // Drain: workers finish their queues, then the ack task awaits every delivery.
    let drain = async {
        for worker in workers {
            if let Err(error) = worker.await {
                tracing::error!(%error, "a worker thread failed");
            }
        }
        acker.await
    };
    let grace = Duration::from_secs(settings.shutdown_timeout_secs);
    let fatal = match tokio::time::timeout(grace, drain).await {
        Ok(Ok(result)) => result.err(),
        Ok(Err(join_error)) => {
            tracing::error!(%join_error, "the ack task failed");
            None
        }
        Err(_) => {
            tracing::warn!(
                secs = settings.shutdown_timeout_secs,
                "drain timed out; committing what was acknowledged, the rest will be re-read"
            );
            None
        }
    };
    final_commit(consumer, in_flight.tracker.clone(), &metrics).await;
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    if let Some(reason) = sole_owner.and_then(|sole| sole.violation()) {
        return Err(PipelineError::NotSoleOwner(reason));
    }
    match fatal {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// Hands one alert of inline detection to the producer (keyed by its id) and puts it on the
/// live feed; the delivery, unless the alert could not be serialised (logged).
fn publish_alert(
    producer: &Producer,
    outputs: &OutputTopics,
    metrics: &Metrics,
    inline: &InlineDetection,
    alert: Alert,
) -> Option<(String, Result<DeliveryFuture, KafkaError>)> {
    let delivery = announce(&alert, metrics).map(|payload| {
        let record = FutureRecord::to(&outputs.alerts)
            .key(&alert.alert_id)
            .payload(&payload);
        (outputs.alerts.clone(), enqueue(producer, record))
    });
    inline.feed.publish(alert);
    delivery
}

/// Inline detection's clock: every second, publish the alerts that resolve as the watermark
/// passes them (quiet incidents, bursts that ended). Not tied to a record, so a failed
/// delivery is counted and logged; the alert is still on the live feed.
async fn tick_loop(
    inline: Arc<InlineDetection>,
    producer: Producer,
    outputs: Arc<OutputTopics>,
    metrics: Metrics,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Under the detector's lock, which waits for queue space in the producer: not on the
        // runtime's threads.
        let (inline, producer, outputs, metrics) = (
            inline.clone(),
            producer.clone(),
            outputs.clone(),
            metrics.clone(),
        );
        let published = tokio::task::spawn_blocking(move || {
            let mut deliveries = Vec::new();
            inline.tick(|alert| {
                deliveries.extend(publish_alert(&producer, &outputs, &metrics, &inline, alert));
            });
            (deliveries, metrics)
        })
        .await;
        let Ok((deliveries, metrics)) = published else {
            continue;
        };
        if deliveries.is_empty() {
            continue;
        }
        tokio::spawn(await_resolved_alerts(deliveries, metrics));
    }
}

#[allow(clippy::too_many_arguments)]
async fn consume_loop(
    consumer: &StreamConsumer<PipelineContext>,
    channel_of_topic: &HashMap<String, Channel>,
    worker_txs: Vec<mpsc::Sender<Vec<InputRecord>>>,
    batch_limit: usize,
    in_flight: &InFlight,
    max_in_flight: usize,
    commit_interval: Duration,
    metrics: &Metrics,
    stop: &CancellationToken,
) {
    let mut commit_tick = tokio::time::interval(commit_interval);
    commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let is_full = || {
        let count = lock(&in_flight.tracker).in_flight();
        metrics.in_flight.set(count as i64);
        count >= max_in_flight || in_flight.bytes.load(Ordering::Relaxed) >= MAX_IN_FLIGHT_BYTES
    };
    let mut batches: Vec<Vec<InputRecord>> = worker_txs.iter().map(|_| Vec::new()).collect();
    loop {
        let full = is_full();
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = commit_tick.tick() => commit_finished(consumer, &in_flight.tracker, metrics),
            // At the limit: wait for acknowledgements (or the tick) instead of reading more.
            _ = in_flight.completed.notified(), if full => {}
            message = consumer.recv(), if !full => {
                let mut next = Some(message);
                let mut taken = 0;
                // This record and every one librdkafka already holds, up to a batch and the
                // in-flight limit, without waiting for more.
                while let Some(message) = next.take() {
                    // Errors count too, so a run of them cannot hold the loop here.
                    taken += 1;
                    match message {
                        Ok(message) => {
                            let record = begin(&message, channel_of_topic, in_flight);
                            let worker = worker_for(&record.partition, worker_txs.len());
                            batches[worker].push(record);
                        }
                        Err(error) => tracing::warn!(%error, "consumer error"),
                    }
                    if taken < batch_limit && !is_full() {
                        next = consumer.recv().now_or_never();
                    }
                }
                for (worker, batch) in batches.iter_mut().enumerate() {
                    if batch.is_empty() {
                        continue;
                    }
                    let batch = std::mem::replace(batch, Vec::with_capacity(batch_limit));
                    if worker_txs[worker].send(batch).await.is_err() {
                        tracing::error!("a worker stopped early; stopping");
                        return;
                    }
                }
            }
        }
    }
}

/// Copy a consumed message into an input record and mark its offset begun.
fn begin(
    message: &BorrowedMessage<'_>,
    channel_of_topic: &HashMap<String, Channel>,
    in_flight: &InFlight,
) -> InputRecord {
    let partition = PartitionKey {
        topic: message.topic().to_string(),
        partition: message.partition(),
    };
    let record = InputRecord {
        channel: channel_of_topic.get(&partition.topic).copied(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        timestamp_ms: message.timestamp().to_millis(),
        partition,
    };
    lock(&in_flight.tracker).begin(&record.partition, record.offset);
    in_flight
        .bytes
        .fetch_add(record.payload.len(), Ordering::Relaxed);
    record
}

/// Records of one partition always go to the same worker, keeping their order.
fn worker_for(partition: &PartitionKey, workers: usize) -> usize {
    use std::hash::{BuildHasher, BuildHasherDefault};
    let hasher = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
    (hasher.hash_one(partition) % workers as u64) as usize
}

/// Commit every partition whose commit point moved. Asynchronous: a failure is reported to the
/// context's commit callback, which offers the offsets again next time. Shared with stage 2.
pub(crate) fn commit_finished<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    tracker: &Mutex<OffsetTracker>,
    metrics: &Metrics,
) {
    let mut tracker = lock(tracker);
    let offsets = tracker.committable();
    if offsets.is_empty() {
        return;
    }
    match commit_offsets(consumer, &offsets, CommitMode::Async) {
        Ok(()) => {
            tracker.mark_committed(&offsets);
            metrics.commits.inc();
        }
        Err(error) => {
            metrics.commit_failures.inc();
            tracing::warn!(%error, "offset commit failed; retried at the next interval");
        }
    }
}

/// Commit what the tracker allows, synchronously, and leave the group. Shared with stage 2.
pub(crate) async fn final_commit<C: ConsumerContext + 'static>(
    consumer: Arc<StreamConsumer<C>>,
    tracker: Arc<Mutex<OffsetTracker>>,
    metrics: &Metrics,
) {
    let metrics = metrics.clone();
    let closing = tokio::task::spawn_blocking(move || {
        let offsets = lock(&tracker).committable();
        if !offsets.is_empty() {
            match commit_offsets(consumer.as_ref(), &offsets, CommitMode::Sync) {
                Ok(()) => {
                    lock(&tracker).mark_committed(&offsets);
                    metrics.commits.inc();
                    tracing::info!(partitions = offsets.len(), "final offsets committed");
                }
                Err(error) => {
                    metrics.commit_failures.inc();
                    tracing::warn!(%error, "final commit failed; uncommitted records will be re-read");
                }
            }
        }
        consumer.unsubscribe();
        // Dropping the consumer leaves the group; librdkafka can hang here if the broker is
        // gone, hence the timeout around this whole task.
        drop(consumer);
    });
    if tokio::time::timeout(Duration::from_secs(10), closing)
        .await
        .is_err()
    {
        tracing::warn!("closing the consumer timed out");
    }
}

/// What a worker needs to turn a record into its outputs.
struct Output<'a> {
    stages: &'a Stages,
    producer: &'a Producer,
    topics: &'a OutputTopics,
    /// Detection, when it runs in stage 1.
    inline: Option<&'a InlineDetection>,
}

/// A worker: run the stages on each record of its queue and hand the outputs to the producer.
fn worker_loop(
    mut queue: mpsc::Receiver<Vec<InputRecord>>,
    output: &Output<'_>,
    acks: &mpsc::Sender<Vec<PendingAck>>,
) {
    let mut finished = Vec::new();
    let mut flushed = Instant::now();
    while let Some(batch) = queue.blocking_recv() {
        let last = batch.len().saturating_sub(1);
        for (n, record) in batch.into_iter().enumerate() {
            finished.push(run_record(record, output));
            if n == last || flushed.elapsed() >= ACK_FLUSH {
                if acks.blocking_send(std::mem::take(&mut finished)).is_err() {
                    // The ack task stopped on a fatal error; nothing more will be committed.
                    return;
                }
                flushed = Instant::now();
            }
        }
    }
}

/// Run the stages on one record and hand its outputs to the producer.
fn run_record(record: InputRecord, output: &Output<'_>) -> PendingAck {
    let Output {
        stages,
        producer,
        topics: outputs,
        inline,
    } = *output;
    let cst = china_standard_time();
    let source = SourceRef {
        topic: record.partition.topic.clone(),
        partition: record.partition.partition,
        offset: record.offset,
    };
    let outcome = match record.channel {
        Some(channel) => stages.process(
            channel,
            &record.payload,
            Some(source),
            Utc::now().with_timezone(&cst),
        ),
        None => Outcome::DeadLetter(DeadLetter {
            reason: "unknown_topic",
            message: format!(
                "topic {} is not mapped to a channel",
                record.partition.topic
            ),
        }),
    };
    let mut started = Instant::now();
    let deliveries = match outcome {
        Outcome::Event { mut event, tokens } => {
            // The alerts it raised are outputs of this record too: it is committed only once
            // they are acknowledged, as in stage 2.
            let mut alerts = Vec::new();
            if let Some(inline) = inline {
                event.incident_id = inline.observe(&record.partition, &event, &tokens, |alert| {
                    alerts.extend(publish_alert(
                        producer,
                        outputs,
                        &stages.metrics,
                        inline,
                        alert,
                    ));
                });
                let detected = Instant::now();
                stages.metrics.observe_stage(
                    Stage::Detect,
                    detected.duration_since(started).as_secs_f64(),
                );
                started = detected;
            }
            let routed = |event: &Event| {
                event_message(event).map(|message| {
                    let topic = message.topic(outputs).to_string();
                    let delivery = enqueue(
                        producer,
                        FutureRecord::to(&topic)
                            .key(&message.key)
                            .payload(&message.payload),
                    );
                    (topic, delivery)
                })
            };
            let produced = match &outputs.events {
                // Routing after detection: the repartition step only. Stage 2 reads every
                // event keyed by district, assigns its incident and routes it.
                Some(events_topic) if outputs.route_after_detection => {
                    internal_message(producer, events_topic, *event, tokens, &record)
                        .map(|delivery| vec![delivery])
                }
                // Routed here, and written to the internal topic for detection's alerts.
                Some(events_topic) => routed(&event).and_then(|delivery| {
                    let internal =
                        internal_message(producer, events_topic, *event, tokens, &record)?;
                    Ok(vec![delivery, internal])
                }),
                None => routed(&event).map(|delivery| vec![delivery]),
            };
            let mut deliveries = match produced {
                Ok(deliveries) => deliveries,
                Err(error) => vec![dead_letter(
                    producer,
                    &outputs.dlq,
                    &record,
                    &DeadLetter {
                        reason: "internal_error",
                        message: format!("cannot serialise event: {error}"),
                    },
                )],
            };
            deliveries.extend(alerts);
            deliveries
        }
        Outcome::DeadLetter(dead) => vec![dead_letter(producer, &outputs.dlq, &record, &dead)],
        Outcome::Skipped { reason } => {
            tracing::debug!(offset = record.offset, topic = %record.partition.topic, %reason, "skipped");
            Vec::new()
        }
    };
    stages
        .metrics
        .observe_stage(Stage::Produce, started.elapsed().as_secs_f64());
    PendingAck {
        partition: record.partition.clone(),
        offset: record.offset,
        deliveries,
        original: record,
    }
}

/// Write one event to the internal topic, keyed by district, with the input record's timestamp
/// in a header so stage 2 can measure the latency end to end.
fn internal_message(
    producer: &Producer,
    events_topic: &str,
    event: Event,
    tokens: TokenList,
    record: &InputRecord,
) -> Result<(String, Result<DeliveryFuture, KafkaError>), serde_json::Error> {
    let internal = InternalEvent { event, tokens };
    let wrapper = r#"{"event":,"tokens":}"#.len();
    let mut payload = Vec::with_capacity(
        wrapper + internal.event.json_size_hint() + internal.tokens.json_size_hint(),
    );
    serde_json::to_writer(&mut payload, &internal)?;
    let key = district_key(&internal.event);
    let mut message = FutureRecord::to(events_topic).key(key).payload(&payload);
    if let Some(ms) = record.timestamp_ms {
        let ms = ms.to_string();
        message = message.headers(OwnedHeaders::new().insert(header(INPUT_TIMESTAMP_HEADER, &ms)));
    }
    Ok((events_topic.to_string(), enqueue(producer, message)))
}

/// An output event as a Kafka message: where it goes by its route, and its key (the department
/// for routed events, so one department's queue is one partition's order; else the event id).
pub(crate) struct EventMessage {
    pub(crate) route: Route,
    pub(crate) key: String,
    pub(crate) payload: Vec<u8>,
}

impl EventMessage {
    pub(crate) fn topic<'a>(&self, outputs: &'a OutputTopics) -> &'a str {
        match self.route {
            Route::Routed => &outputs.routed,
            Route::Triage => &outputs.triage,
            Route::Ignored => &outputs.ignored,
        }
    }
}

/// The output message of an event: shared by stage 1 (detection off) and stage 2.
pub(crate) fn event_message(event: &Event) -> Result<EventMessage, serde_json::Error> {
    let mut payload = Vec::with_capacity(event.json_size_hint());
    serde_json::to_writer(&mut payload, event)?;
    let key = match event.route {
        Route::Routed => event.department.clone(),
        Route::Triage | Route::Ignored => event.id.clone(),
    };
    Ok(EventMessage {
        route: event.route,
        key,
        payload,
    })
}

/// Send the original bytes to the dead-letter topic (see [`dead_letter_record`]).
fn dead_letter(
    producer: &Producer,
    dlq_topic: &str,
    record: &InputRecord,
    dead: &DeadLetter,
) -> (String, Result<DeliveryFuture, KafkaError>) {
    (
        dlq_topic.to_string(),
        enqueue(producer, dead_letter_record(dlq_topic, record, dead)),
    )
}

/// The dead-letter message of a record: its original bytes, with headers naming the error and
/// where the record came from.
pub(crate) fn dead_letter_record<'a>(
    dlq_topic: &'a str,
    record: &'a InputRecord,
    dead: &DeadLetter,
) -> FutureRecord<'a, [u8], [u8]> {
    let partition = record.partition.partition.to_string();
    let offset = record.offset.to_string();
    let channel = record.channel.map_or("unknown", Channel::as_str);
    let mut headers = OwnedHeaders::new_with_capacity(7)
        .insert(header("citypulse.error", &dead.message))
        .insert(header("citypulse.reason", dead.reason))
        .insert(header("citypulse.channel", channel))
        .insert(header("citypulse.source.topic", &record.partition.topic))
        .insert(header("citypulse.source.partition", &partition))
        .insert(header("citypulse.source.offset", &offset));
    // A record rejected for its size would be refused by the broker again: keep its start and
    // say how long it was, so the dead-letter message always fits.
    let payload = if record.payload.len() > MAX_RECORD_BYTES {
        headers = headers.insert(header(
            "citypulse.truncated_from",
            &record.payload.len().to_string(),
        ));
        &record.payload[..MAX_RECORD_BYTES]
    } else {
        &record.payload[..]
    };
    let mut message = FutureRecord::to(dlq_topic)
        .payload(payload)
        .headers(headers);
    if let Some(key) = &record.key {
        message = message.key(&key[..]);
    }
    message
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

/// Hand a message to the producer, waiting while its local queue is full (see
/// [`Producer::send_when_queued`]). A message the producer refuses outright (too large …) comes
/// back as an error for the ack task to settle.
fn enqueue<K, P>(
    producer: &Producer,
    message: FutureRecord<'_, K, P>,
) -> Result<DeliveryFuture, KafkaError>
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    producer
        .send_when_queued_blocking(message)
        .map_err(|(error, _)| error)
}

/// [`enqueue`] for async callers: waits for queue space without blocking the runtime's thread.
pub(crate) async fn enqueue_async<K, P>(
    producer: &Producer,
    message: FutureRecord<'_, K, P>,
) -> Result<DeliveryFuture, KafkaError>
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    producer
        .send_when_queued(message, None)
        .await
        .map_err(|(error, _)| error)
}

/// Errors that concern one message, not the broker or the topic: re-sending will not help, so
/// the record is dead-lettered instead of stopping the pipeline (no crash loop on one record).
fn refused_for_this_message(error: &KafkaError) -> bool {
    matches!(
        error,
        KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidRecord
        )
    )
}

/// Await the acknowledgements of every record's outputs, completing offsets as they arrive.
/// Returns the first fatal error, after draining what can still be acknowledged.
async fn ack_loop(
    mut queue: mpsc::Receiver<Vec<PendingAck>>,
    in_flight: Arc<InFlight>,
    producer: Producer,
    outputs: Arc<OutputTopics>,
    observe_latency: bool,
    metrics: Metrics,
    stop: CancellationToken,
) -> Result<(), PipelineError> {
    let mut pending = FuturesUnordered::new();
    let mut fatal = None;
    loop {
        tokio::select! {
            Some(acks) = queue.recv() => {
                for ack in acks {
                    pending.push(settle(ack, producer.clone(), outputs.clone(), metrics.clone()));
                }
            }
            Some(settled) = pending.next(), if !pending.is_empty() => match settled {
                Ok(settled) => {
                    if observe_latency {
                        settled.observe_latency(&metrics);
                    }
                    let mut tracker = lock(&in_flight.tracker);
                    tracker.complete(&settled.partition, settled.offset);
                    metrics.in_flight.set(tracker.in_flight() as i64);
                    drop(tracker);
                    in_flight.bytes.fetch_sub(settled.bytes, Ordering::Relaxed);
                    in_flight.completed.notify_one();
                }
                Err(error) => {
                    tracing::error!(%error, "fatal delivery error; stopping");
                    stop.cancel();
                    fatal.get_or_insert(error);
                }
            },
            else => break,
        }
    }
    fatal.map_or(Ok(()), Err)
}

/// A record whose outputs were all acknowledged.
pub(crate) struct Settled {
    pub(crate) partition: PartitionKey,
    pub(crate) offset: i64,
    pub(crate) bytes: usize,
    pub(crate) timestamp_ms: Option<i64>,
}

impl Settled {
    /// The time from the input entering Kafka to its last output being acknowledged.
    pub(crate) fn observe_latency(&self, metrics: &Metrics) {
        if let Some(ms) = self.timestamp_ms {
            let age = Utc::now().timestamp_millis() - ms;
            metrics
                .end_to_end_latency
                .observe(age.max(0) as f64 / 1000.0);
        }
    }
}

/// Wait for one record's outputs. A per-message refusal dead-letters the original record.
pub(crate) async fn settle(
    ack: PendingAck,
    producer: Producer,
    outputs: Arc<OutputTopics>,
    metrics: Metrics,
) -> Result<Settled, PipelineError> {
    let dlq_topic = &outputs.dlq;
    for (topic, delivery) in ack.deliveries {
        let error = match delivery {
            Ok(future) => match future.await {
                Ok(Ok(_)) => continue,
                Ok(Err((error, _))) => error,
                Err(_canceled) => KafkaError::Canceled,
            },
            Err(error) => error,
        };
        metrics
            .delivery_failures
            .with_label_values(&[outputs.role(&topic)])
            .inc();
        if topic == *dlq_topic || !refused_for_this_message(&error) {
            return Err(PipelineError::Delivery {
                topic,
                source: error,
            });
        }
        tracing::warn!(%error, %topic, offset = ack.offset, "output refused; dead-lettering the record");
        let dead = DeadLetter {
            reason: "output_rejected",
            message: format!("output to {topic} refused by Kafka: {error}"),
        };
        let retry = enqueue_async(
            &producer,
            dead_letter_record(dlq_topic, &ack.original, &dead),
        )
        .await;
        let result = match retry {
            Ok(future) => match future.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((error, _))) => Err(error),
                Err(_canceled) => Err(KafkaError::Canceled),
            },
            Err(error) => Err(error),
        };
        result.map_err(|source| PipelineError::Delivery {
            topic: dlq_topic.clone(),
            source,
        })?;
        let channel = ack.original.channel.map_or("unknown", Channel::as_str);
        metrics
            .dead_letters
            .with_label_values(&[channel, dead.reason])
            .inc();
    }
    Ok(Settled {
        partition: ack.partition,
        offset: ack.offset,
        bytes: ack.original.payload.len(),
        timestamp_ms: ack.original.timestamp_ms,
    })
}
