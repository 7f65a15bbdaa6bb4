//! Kafka clients: how citypulse's consumer and producer are configured, and the consumer's
//! rebalance hooks.
//!
//! Sits at the edges of the flow: `pipeline.rs` reads input records through the consumer built
//! here and writes outputs through the producer. Offsets are committed by hand, only after every
//! output a record caused was acknowledged ([`offsets::OffsetTracker`]).

pub mod offsets;
pub mod producer;

use crate::config::KafkaConfig;
use crate::health::Health;
use crate::metrics::Metrics;
use offsets::{OffsetTracker, PartitionKey};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// State the consumer's callbacks share with the pipeline.
pub struct PipelineContext {
    pub tracker: Arc<Mutex<OffsetTracker>>,
    pub health: Arc<Health>,
    pub metrics: Metrics,
    /// Set when this instance must own every input partition (inline detection).
    pub sole_owner: Option<Arc<SoleOwner>>,
    /// The partitions this instance owns, kept from the rebalances themselves: asking
    /// librdkafka (`assignment()`, `rebalance_protocol()`) from inside a rebalance callback
    /// can block for ever while the consumer closes (see `post_rebalance`).
    pub owned: Mutex<TopicPartitionList>,
    /// Whether the group uses the cooperative protocol: [`cooperative_protocol`] of the
    /// consumer's configuration.
    pub cooperative: bool,
}

/// Whether a consumer with this configuration rebalances cooperatively (incrementally).
/// librdkafka does so exactly when its `partition.assignment.strategy` names only
/// `cooperative-sticky`; it refuses to mix cooperative and eager assignors.
pub fn cooperative_protocol(client: &ClientConfig) -> bool {
    client
        .get("partition.assignment.strategy")
        .is_some_and(|strategy| {
            strategy
                .split(',')
                .all(|assignor| assignor.trim() == "cooperative-sticky")
        })
}

/// Inline detection's condition: one instance owns every partition of the input topics, so it
/// sees every event of every district. Checked after every rebalance against the whole
/// assignment; an instance left with only some partitions (another one joined the group)
/// records why and cancels `stop`.
pub struct SoleOwner {
    pub group: String,
    /// The input topics the instance subscribes to: it must own every partition of each.
    pub topics: Vec<String>,
    pub stop: CancellationToken,
    violation: Mutex<Option<String>>,
}

impl SoleOwner {
    pub fn new(group: &str, topics: Vec<String>, stop: CancellationToken) -> Self {
        SoleOwner {
            group: group.to_string(),
            topics,
            stop,
            violation: Mutex::new(None),
        }
    }

    /// Why the condition failed, once it has.
    pub fn violation(&self) -> Option<String> {
        self.violation
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Compares the whole assignment with the partition counts the broker reports for every
    /// input topic (a topic the assignment lacks is owned 0 times).
    fn check<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        assignment: &TopicPartitionList,
    ) {
        for topic in &self.topics {
            let topic = topic.as_str();
            let owned = assignment
                .elements()
                .iter()
                .filter(|e| e.topic() == topic)
                .count();
            let total = match consumer.fetch_metadata(Some(topic), Duration::from_secs(10)) {
                Ok(metadata) => metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == topic)
                    .map_or(0, |t| t.partitions().len()),
                Err(error) => {
                    tracing::warn!(%error, topic, "cannot read the partition count to check that inline detection owns every partition");
                    continue;
                }
            };
            if owned < total {
                let reason = format!(
                    "inline detection needs every input partition, but group {} gave this \
                     instance {owned} of the {total} partitions of {topic}: another instance \
                     has joined. Run one instance, or set pipeline.inline_detection = false \
                     (detection in stage 2 scales out)",
                    self.group
                );
                tracing::error!("{reason}");
                *self
                    .violation
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reason);
                self.stop.cancel();
                return;
            }
        }
    }
}

impl ClientContext for PipelineContext {
    /// librdkafka's statistics (every `statistics.interval.ms`): publish the consumer lag per
    /// input topic, summed over the partitions this instance owns, and whether any broker is
    /// connected — the signal that readiness has returned after an outage.
    fn stats(&self, statistics: rdkafka::Statistics) {
        if !statistics.brokers.is_empty() {
            let reachable = statistics
                .brokers
                .values()
                .any(|broker| broker.state == "UP");
            self.health.set_brokers_reachable(reachable);
        }
        for (topic, stats) in statistics.topics {
            let lag: i64 = stats
                .partitions
                .values()
                .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
                .map(|p| p.consumer_lag)
                .sum();
            self.metrics
                .consumer_lag
                .with_label_values(&[topic.as_str()])
                .set(lag);
        }
    }

    /// Global client errors. All brokers down makes the instance not ready at once; the next
    /// statistics with a connected broker make it ready again.
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::Global(RDKafkaErrorCode::AllBrokersDown)) {
            self.health.set_brokers_reachable(false);
        }
        tracing::warn!(%error, reason, "Kafka client error");
    }
}

impl ConsumerContext for PipelineContext {
    /// rdkafka's own `rebalance`, but with the protocol known from the configuration: the
    /// default asks librdkafka for it before (un)assigning, a request to the group thread
    /// that a closing consumer's terminated group never answers — seen hanging a close under
    /// `cooperative-sticky` (thread dump: `ConsumerContext::rebalance` → `rebalance_protocol`
    /// → `rd_kafka_op_req`).
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let partitions: &TopicPartitionList = partitions;
        let rebalance = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => Rebalance::Assign(partitions),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => Rebalance::Revoke(partitions),
            _ => Rebalance::Error(KafkaError::Rebalance(err.into())),
        };
        self.pre_rebalance(consumer, &rebalance);
        let assign = err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
        let applied = match (assign, self.cooperative) {
            (true, true) => consumer.incremental_assign(partitions),
            (true, false) => consumer.assign(partitions),
            (false, true) => consumer.incremental_unassign(partitions),
            (false, false) => consumer.unassign(),
        };
        if let Err(error) = applied {
            tracing::warn!(%error, assign, "applying a rebalance failed");
        }
        self.post_rebalance(consumer, &rebalance);
    }

    /// Before partitions leave this instance, commit what is finished on them, so the next
    /// owner re-reads only records whose outputs were not all acknowledged.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let keys = partition_keys(revoked);
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
                    tracing::warn!(%error, "commit before revoke failed; the next owner re-reads more");
                }
            }
        }
        tracker.forget(&keys);
        self.metrics.in_flight.set(tracker.in_flight() as i64);
        tracing::info!(partitions = keys.len(), "partitions revoked");
    }

    /// Counts what this instance owns now. Read from the whole assignment: under the
    /// cooperative protocol (`partition.assignment.strategy = cooperative-sticky`) a rebalance
    /// adds or takes away only some partitions.
    ///
    /// Nothing here may ask librdkafka's group thread a question. On close, the revoke's
    /// unassign (just before this callback) lets the group terminate, and a request to it
    /// then is never answered: `rebalance_protocol()` here hung a consumer's close in 5 of 10
    /// `fault_shutdown` runs against tansu (a thread dump showed it waiting in
    /// `rd_kafka_op_req`), which then needed the 10 s bound of `final_commit`.
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Error(error) = rebalance {
            tracing::error!(%error, "rebalance failed");
            return;
        }
        let assignment = {
            let mut owned = self
                .owned
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let cooperative = self.cooperative;
            let mut now = TopicPartitionList::new();
            let keep = |e: &rdkafka::topic_partition_list::TopicPartitionListElem<'_>,
                        changed: &TopicPartitionList| {
                changed.find_partition(e.topic(), e.partition()).is_none()
            };
            match rebalance {
                // Eager: the list is the whole new assignment. Cooperative: what it adds.
                Rebalance::Assign(added) => {
                    if cooperative {
                        for e in owned.elements().iter().filter(|e| keep(e, added)) {
                            now.add_partition(e.topic(), e.partition());
                        }
                    }
                    for e in added.elements() {
                        now.add_partition(e.topic(), e.partition());
                    }
                }
                // Eager: everything goes. Cooperative: only what it lists.
                Rebalance::Revoke(taken) => {
                    if cooperative {
                        for e in owned.elements().iter().filter(|e| keep(e, taken)) {
                            now.add_partition(e.topic(), e.partition());
                        }
                    }
                }
                Rebalance::Error(_) => return,
            }
            *owned = now.clone();
            now
        };
        let count = assignment.count();
        // An instance with no partitions sees no events: only a partial share is a problem.
        if let Some(sole) = self.sole_owner.as_ref().filter(|_| count > 0) {
            sole.check(consumer, &assignment);
        }
        self.metrics.partitions_assigned.set(count as i64);
        self.health.set_partitions_assigned(count > 0);
        if let Rebalance::Assign(added) = rebalance {
            tracing::info!(
                partitions = count,
                added = added.count(),
                "partitions assigned"
            );
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(error) = result {
            self.metrics.commit_failures.inc();
            tracing::warn!(%error, partitions = offsets.count(), "offset commit failed; retried at the next interval");
            // Forget that these were committed so the next interval sends them again.
            let mut tracker = lock(&self.tracker);
            let keys = partition_keys(offsets);
            tracker.commit_failed(&keys);
        }
    }
}

/// The partitions of a librdkafka list, as owned keys.
fn partition_keys(list: &TopicPartitionList) -> Vec<PartitionKey> {
    list.elements()
        .iter()
        .map(|e| PartitionKey {
            topic: e.topic().to_string(),
            partition: e.partition(),
        })
        .collect()
}

/// Lock the tracker. A poisoned lock means a thread panicked while holding it; the tracker's
/// state is plain data updated in one step, so it is still consistent and we go on.
pub fn lock(tracker: &Mutex<OffsetTracker>) -> std::sync::MutexGuard<'_, OffsetTracker> {
    tracker
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Commit explicit offsets (the next offset to read, per partition).
pub fn commit_offsets<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    offsets: &[(PartitionKey, i64)],
    mode: CommitMode,
) -> KafkaResult<()> {
    let mut list = TopicPartitionList::with_capacity(offsets.len());
    for (key, offset) in offsets {
        list.add_partition_offset(&key.topic, key.partition, Offset::Offset(*offset))?;
    }
    consumer.commit(&list, mode)
}

fn base_client_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &kafka.brokers);
    for (key, value) in &kafka.client {
        config.set(key, value);
    }
    config
}

/// The input consumer: manual commits only, starting from the earliest offset of a new group so
/// a first deployment processes what is already waiting.
pub fn consumer_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = base_client_config(kafka);
    config
        .set("group.id", &kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", kafka.session_timeout_ms.to_string())
        .set("enable.partition.eof", "false");
    if let Some(instance) = &kafka.instance_id {
        config.set("group.instance.id", instance);
    }
    // librdkafka prefetches up to 64 MB (and 100,000 records a partition) while the pipeline
    // is behind; 16 MB is still seconds of input at full speed and keeps a backlog from
    // costing a quarter of the memory budget. Tuning: `kafka.client` may choose otherwise.
    for (key, value) in [
        ("queued.max.messages.kbytes", "16384"),
        ("queued.min.messages", "10000"),
    ] {
        if !kafka.client.contains_key(key) {
            config.set(key, value);
        }
    }
    config
}

/// A consumer that reads partitions it is assigned by hand, outside any group's membership,
/// and commits nothing: for re-reading a topic's recent past.
pub fn reader_config(kafka: &KafkaConfig, group_id: &str) -> ClientConfig {
    let mut config = base_client_config(kafka);
    config
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        // Small fetches, so that the partitions are read interleaved and event time moves
        // forward evenly over them.
        .set("max.partition.fetch.bytes", "16384");
    config
}

/// The output producer: idempotent (broker-side retries never duplicate or reorder), acks from
/// all replicas, and a bounded local queue so a slow broker pushes back on the workers.
pub fn producer_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = base_client_config(kafka);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", kafka.delivery_timeout_ms.to_string());
    // Tuning, not correctness: `kafka.client` may choose otherwise (a lower `linger.ms` trades
    // larger produce requests for latency).
    for (key, value) in [
        ("linger.ms", "5"),
        ("queue.buffering.max.messages", "100000"),
    ] {
        if !kafka.client.contains_key(key) {
            config.set(key, value);
        }
    }
    config
}

pub fn create_producer(kafka: &KafkaConfig) -> KafkaResult<producer::Producer> {
    producer_config(kafka).create()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_is_cooperative_only_when_every_assignor_is_cooperative_sticky() {
        let with = |strategy: Option<&str>| {
            let mut client = ClientConfig::new();
            if let Some(strategy) = strategy {
                client.set("partition.assignment.strategy", strategy);
            }
            cooperative_protocol(&client)
        };
        assert!(with(Some("cooperative-sticky")));
        assert!(with(Some(" cooperative-sticky ")));
        // librdkafka's default is range,roundrobin: eager.
        assert!(!with(None));
        assert!(!with(Some("range,roundrobin")));
        assert!(!with(Some("roundrobin")));
        // librdkafka refuses such a mix when the consumer is created.
        assert!(!with(Some("range,cooperative-sticky")));
    }
}
