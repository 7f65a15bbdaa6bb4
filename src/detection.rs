//! Wiring for detection in `run`: the internal topic `citypulse.events` (keyed by district) in,
//! alert messages out to `citypulse.alerts`, the live feed and the metrics.
//!
//! The routing pipeline (`pipeline.rs`) writes every event to the internal topic as well, keyed
//! by district, so all events of a district land on one partition. This task consumes that
//! topic in its own consumer group: instances in the group each own a share of the districts
//! and together raise the same alerts as one instance would. Detection state is rebuilt on
//! every assignment by re-reading the topic's recent past (`detect_rebuild_secs`); alerts raised
//! while re-reading what was already processed (below the committed offset) are not published
//! again.

use crate::alert_feed::AlertFeed;
use crate::config::PipelineConfig;
use crate::detect::{Alert, DetectInput, Detector};
use crate::event::Event;
use crate::kafka::offsets::PartitionKey;
use crate::metrics::Metrics;
use chrono::{DateTime, FixedOffset, Utc};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The internal topic's payload: the event and the content tokens detection clusters on.
#[derive(Debug, Serialize, Deserialize)]
pub struct InternalEvent {
    pub event: Event,
    pub tokens: Vec<String>,
}

/// The internal topic's key: the district, so one instance sees all of a district's events.
pub fn district_key(event: &Event) -> &str {
    event.district.as_deref().unwrap_or("未知区县")
}

/// What detection reads from one output event.
pub fn detect_input<'a>(event: &'a Event, tokens: &'a [String]) -> DetectInput<'a> {
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
        relevant: event.route != crate::event::Route::Ignored,
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
    rebuild: Duration,
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
            tracing::info!(
                partitions = assignment.count(),
                "detection partitions assigned; rebuilding state"
            );
        }
    }
}

/// Consume the internal topic and raise alerts until `stop` is cancelled.
pub async fn run(
    config: &PipelineConfig,
    feed: AlertFeed,
    metrics: Metrics,
    stop: CancellationToken,
) -> Result<(), KafkaError> {
    let assignment = Arc::new(Assignment::default());
    let mut client = crate::kafka::consumer_config(&config.kafka);
    client.set("group.id", format!("{}-detect", config.kafka.group_id));
    // Small fetches per partition, so that when detection catches up on a backlog (a restart,
    // a rebalance) the districts' partitions are read interleaved and event time moves forward
    // evenly: detection drops events more than the allowed lateness behind the newest one.
    client.set("max.partition.fetch.bytes", "16384");
    let consumer: StreamConsumer<DetectionContext> =
        client.create_with_context(DetectionContext {
            assignment: assignment.clone(),
            rebuild: Duration::from_secs(config.detect_rebuild_secs()),
        })?;
    consumer.subscribe(&[&config.kafka.events_topic])?;
    let producer: FutureProducer = crate::kafka::producer_config(&config.kafka).create()?;
    let alerts_topic = config.kafka.alerts_topic.clone();
    let lateness = chrono::Duration::seconds(config.detect.allowed_lateness_secs);

    let mut detector = Detector::new(config.detect.clone());
    let mut generation = assignment.generation.load(Ordering::SeqCst);
    let mut next_offsets: HashMap<PartitionKey, i64> = HashMap::new();
    // The newest event time seen, and when it arrived.
    let mut latest_event: Option<(DateTime<FixedOffset>, Instant)> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let message = tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {
                // Let quiet alerts resolve when no event arrives: event time moves on from the
                // latest event as fast as the wall clock since it arrived. Anchored to the events,
                // not to the wall clock, so replaying an old stream works as a live one does.
                if let Some((event_time, arrived)) = latest_event {
                    let idle = chrono::Duration::from_std(arrived.elapsed()).unwrap_or_default();
                    for alert in detector.advance_to(event_time + idle - lateness) {
                        publish(&producer, &alerts_topic, &feed, &metrics, alert).await;
                    }
                }
                commit(&consumer, &mut next_offsets);
                report(&detector, &metrics);
                continue;
            }
            message = consumer.recv() => match message {
                Ok(message) => message,
                Err(error) => {
                    tracing::warn!(%error, "detection consumer error");
                    continue;
                }
            },
        };
        let current = assignment.generation.load(Ordering::SeqCst);
        if current != generation {
            generation = current;
            detector = Detector::new(config.detect.clone());
            next_offsets.clear();
            latest_event = None;
        }
        let key = PartitionKey {
            topic: message.topic().to_string(),
            partition: message.partition(),
        };
        let offset = message.offset();
        let replaying = assignment
            .replay_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            .is_some_and(|until| offset < *until);
        match message
            .payload()
            .map(serde_json::from_slice::<InternalEvent>)
        {
            Some(Ok(internal)) => {
                let occurred = internal.event.occurred_at;
                if latest_event.is_none_or(|(latest, _)| occurred > latest) {
                    latest_event = Some((occurred, Instant::now()));
                }
                let observation =
                    detector.observe(&detect_input(&internal.event, &internal.tokens));
                if !replaying {
                    for alert in observation.alerts {
                        publish(&producer, &alerts_topic, &feed, &metrics, alert).await;
                    }
                }
            }
            // Written by citypulse itself, so unreadable means a version mismatch: say so, go on.
            Some(Err(error)) => {
                tracing::error!(%error, offset, "detection: unreadable internal event skipped")
            }
            None => {}
        }
        next_offsets.insert(key, offset + 1);
    }
    commit(&consumer, &mut next_offsets);
    Ok(())
}

async fn publish(
    producer: &FutureProducer,
    topic: &str,
    feed: &AlertFeed,
    metrics: &Metrics,
    alert: Alert,
) {
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
    match serde_json::to_vec(&alert) {
        Ok(payload) => {
            let record = FutureRecord::to(topic)
                .key(&alert.alert_id)
                .payload(&payload);
            // Alerts are rare and matter: wait for the broker, retrying for as long as it takes.
            if let Err((error, _)) = producer.send(record, Duration::from_secs(30)).await {
                metrics
                    .delivery_failures
                    .with_label_values(&["alert"])
                    .inc();
                tracing::error!(%error, "alert not delivered to Kafka (still on the live feed)");
            }
        }
        Err(error) => tracing::error!(%error, "cannot serialise alert"),
    }
    feed.publish(alert);
}

fn commit(consumer: &StreamConsumer<DetectionContext>, next: &mut HashMap<PartitionKey, i64>) {
    if next.is_empty() {
        return;
    }
    let offsets: Vec<(PartitionKey, i64)> = next.drain().collect();
    if let Err(error) = crate::kafka::commit_offsets(consumer, &offsets, CommitMode::Async) {
        tracing::warn!(%error, "detection offset commit failed; retried next time");
        next.extend(offsets);
    }
}

fn report(detector: &Detector, metrics: &Metrics) {
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
