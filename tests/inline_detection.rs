//! Inline detection (`pipeline.inline_detection`) over the Kafka protocol on an embedded broker:
//! one instance detects inside stage 1, with no internal topic and no stage 2. Its routed events
//! carry their incident ids and its alerts are published; a restart rebuilds detection state
//! from the output topics, so an incident goes on under the same id; and a second instance in
//! the group stops both with a reason instead of splitting the districts between two detectors.

mod common;

use citypulse::alert_feed::AlertFeed;
use citypulse::config::PipelineConfig;
use citypulse::detect::{AlertKind, AlertStatus};
use citypulse::pipeline::{self, PipelineError};
use citypulse::stages::Outcome;
use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

fn inline_config(input_partitions: i32) -> (impl Drop, PipelineConfig) {
    let (cluster, mut config) = cluster_with_topics(input_partitions);
    config.pipeline.inline_detection = true;
    config.kafka.group_id = format!("inline-{}", rand::random::<u32>());
    (cluster, config)
}

/// One instance of `run` with inline detection: stage 1 only.
struct Instance {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), PipelineError>>,
    feed: AlertFeed,
    stages: std::sync::Arc<citypulse::stages::Stages>,
}

impl Instance {
    fn start(config: &PipelineConfig) -> Self {
        let shutdown = CancellationToken::new();
        let feed = AlertFeed::new();
        let stages = stages(config);
        let task = {
            let (config, stages, feed, stop) = (
                config.clone(),
                stages.clone(),
                feed.clone(),
                shutdown.clone(),
            );
            tokio::spawn(async move {
                pipeline::run_with_feed(&config, stages, health(), feed, stop).await
            })
        };
        Instance {
            shutdown,
            task,
            feed,
            stages,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().expect("stops cleanly");
    }
}

/// Messages ever written to a topic (its high watermarks summed).
fn messages_on(config: &PipelineConfig, topic: &str) -> i64 {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.brokers)
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .unwrap()
                .1
        })
        .sum()
}

/// Event id → incident id of the events among `outputs`.
fn incidents(outputs: &[OutputMessage]) -> BTreeMap<String, Option<String>> {
    outputs
        .iter()
        .filter(|m| m.topic != "citypulse.dlq")
        .map(|m| {
            let event = m.json();
            (
                event["id"].as_str().unwrap().to_string(),
                event["incident_id"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_routed_once_with_their_incident_and_nothing_crosses_the_internal_topic() {
    let (_cluster, config) = inline_config(2);
    let reports = water_main_reports(&config);
    let mut inputs: Vec<(String, Vec<u8>)> = reports
        .iter()
        .map(|(topic, bytes, _)| (topic.clone(), bytes.clone()))
        .collect();
    let topic = config.kafka.input_topics["12345"].clone();
    for i in 0..20 {
        let text = "公交车早高峰经常不按时到站，等了四十分钟才来一辆，希望增加班次。";
        inputs.push((topic.clone(), hotline_order(&format!("BUS{i:03}"), text)));
    }
    inputs.push((topic.clone(), b"{not json".to_vec()));
    produce(&config.kafka.brokers, &inputs).await;

    let instance = Instance::start(&config);
    let outputs = read_outputs(&config, inputs.len(), Duration::from_secs(60)).await;
    let detect_timings = instance
        .stages
        .metrics
        .stage_duration
        .with_label_values(&["detect"])
        .get_sample_count();
    instance.stop().await;
    assert_eq!(
        detect_timings,
        (inputs.len() - 1) as u64,
        "the detect stage is timed once per event"
    );

    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for message in outputs.iter().filter(|m| m.topic != config.kafka.dlq_topic) {
        *seen
            .entry(message.json()["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(
        seen.len(),
        inputs.len() - 1,
        "every good record out: {seen:?}"
    );
    assert!(
        seen.values().all(|&n| n == 1),
        "each exactly once: {seen:?}"
    );
    let dead: Vec<_> = outputs
        .iter()
        .filter(|m| m.topic == config.kafka.dlq_topic)
        .collect();
    assert_eq!(dead.len(), 1, "the bad record dead-lettered");
    assert_eq!(dead[0].headers["citypulse.reason"], "invalid_json");

    let incidents = incidents(&outputs);
    let report_ids: BTreeSet<&String> = reports.iter().map(|(_, _, id)| id).collect();
    let shared: BTreeSet<&String> = incidents
        .iter()
        .filter(|(id, _)| report_ids.contains(id))
        .filter_map(|(_, incident)| incident.as_ref())
        .collect();
    let carrying = incidents
        .iter()
        .filter(|(id, incident)| report_ids.contains(id) && incident.is_some())
        .count();
    assert_eq!(shared.len(), 1, "one incident id: {incidents:?}");
    assert!(
        carrying >= reports.len() - 1,
        "every report from the second on carries it: {incidents:?}"
    );
    assert_eq!(
        messages_on(&config, &config.kafka.events_topic),
        0,
        "inline detection writes nothing to the internal topic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_injected_incidents_alert_on_the_topic_and_the_feed() {
    let (_cluster, mut config) = inline_config(2);
    config.detect.warmup_events = 0;
    let instance = Instance::start(&config);
    let stream = incident_stream();
    // Records the stages skip (not citizen reports) have no output.
    let checker = stages(&config);
    let expected = stream
        .iter()
        .filter(|(at, channel, bytes)| {
            !matches!(
                checker.process(*channel, bytes, None, *at),
                Outcome::Skipped { .. }
            )
        })
        .count();
    let inputs: Vec<(String, Vec<u8>)> = stream
        .into_iter()
        .map(|(_, channel, bytes)| (config.kafka.input_topics[channel.as_str()].clone(), bytes))
        .collect();
    for chunk in inputs.chunks(50) {
        produce(&config.kafka.brokers, chunk).await;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let routed = read_outputs(&config, expected, Duration::from_secs(60)).await;
    assert_eq!(routed.len(), expected, "every record out once");
    let feed = instance.feed.clone();
    instance.stop().await;

    let alerts = read_alerts(&config).await;
    let incident_districts: BTreeSet<String> = alerts
        .iter()
        .filter(|a| a.kind == AlertKind::Incident)
        .filter_map(|a| a.district.clone())
        .collect();
    for district in ["雨花区", "岳麓区"] {
        assert!(
            incident_districts.contains(district),
            "no incident alert in {district}: {incident_districts:?}"
        );
    }
    let mut first_status: BTreeMap<&str, AlertStatus> = BTreeMap::new();
    for alert in &alerts {
        first_status
            .entry(alert.alert_id.as_str())
            .or_insert(alert.status);
    }
    assert!(
        first_status.values().all(|s| *s == AlertStatus::Firing),
        "every thread starts by firing: {first_status:?}"
    );
    for alert in &alerts {
        assert!(
            feed.contains(&alert.alert_id),
            "{} is on the topic but not on the live feed",
            alert.alert_id
        );
    }
    assert_eq!(messages_on(&config, &config.kafka.events_topic), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_instance_goes_on_with_the_same_incident() {
    let (_cluster, config) = inline_config(1);
    let reports = water_main_reports(&config);
    let (before, after) = reports.split_at(3);
    let records = |part: &[(String, Vec<u8>, String)]| -> Vec<(String, Vec<u8>)> {
        part.iter()
            .map(|(topic, bytes, _)| (topic.clone(), bytes.clone()))
            .collect()
    };
    produce(&config.kafka.brokers, &records(before)).await;
    let first = Instance::start(&config);
    let early = read_outputs(&config, before.len(), Duration::from_secs(60)).await;
    first.stop().await;
    let early = incidents(&early);
    let opened: BTreeSet<&String> = early.values().flatten().collect();
    assert_eq!(
        opened.len(),
        1,
        "the first run opened one incident: {early:?}"
    );

    produce(&config.kafka.brokers, &records(after)).await;
    let second = Instance::start(&config);
    let all = read_outputs(&config, reports.len(), Duration::from_secs(60)).await;
    second.stop().await;
    let all = incidents(&all);
    assert_eq!(all.len(), reports.len(), "each report once: {all:?}");
    for (_, _, id) in after {
        assert_eq!(
            all[id].as_ref(),
            opened.iter().next().copied(),
            "{id} joined the incident opened before the restart: {all:?}"
        );
    }
}

/// With two instances in the group, one stops with the reason, and the other goes on owning
/// every input partition — or, when `other_may_stop`, stops with the reason too. Under the
/// eager protocol both usually get half and both stop, but the first may leave before the
/// second's assignment is final, which then gives the second everything.
async fn one_stops_and_a_survivor_owns_every_partition(
    config: &PipelineConfig,
    first: Instance,
    second: Instance,
    other_may_stop: bool,
) {
    let check_reason = |result: Result<(), PipelineError>| {
        let error = result.expect_err("stops with an error").to_string();
        assert!(
            error.contains("inline detection needs every input partition")
                && error.contains(&config.kafka.group_id)
                && error.contains("pipeline.inline_detection = false"),
            "{error}"
        );
    };
    let waited = std::time::Instant::now();
    while !first.task.is_finished() && !second.task.is_finished() {
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "neither instance stopped"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (stopped, other) = if first.task.is_finished() {
        (first, second)
    } else {
        (second, first)
    };
    check_reason(stopped.task.await.unwrap());
    let all: i64 = 4 * 2;
    let waited = std::time::Instant::now();
    loop {
        if other_may_stop && other.task.is_finished() {
            check_reason(other.task.await.unwrap());
            eprintln!("both instances stopped");
            return;
        }
        if other.stages.metrics.partitions_assigned.get() == all {
            eprintln!("one instance stopped, the other owns every partition");
            break;
        }
        assert!(
            !other.task.is_finished() && waited.elapsed() < Duration::from_secs(60),
            "the other instance did not go on to take every partition (has {})",
            other.stages.metrics.partitions_assigned.get()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    other.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_in_the_group_stops_inline_detection_with_the_reason() {
    let (_cluster, config) = inline_config(2);
    let first = Instance::start(&config);
    // The first instance owns every partition before the second joins.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!first.task.is_finished(), "one instance owns everything");
    let second = Instance::start(&config);
    one_stops_and_a_survivor_owns_every_partition(&config, first, second, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_not_up_yet_is_waited_for_not_a_reason_to_stop() {
    let (_cluster, mut config) = inline_config(1);
    // Nothing listens here: the rebuild's queries time out, and it tries again.
    config.kafka.brokers = "127.0.0.1:9".to_string();
    let instance = Instance::start(&config);
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert!(
        !instance.task.is_finished(),
        "inline detection gave up on a broker that is not up yet"
    );
    instance.stop().await;
}

/// With the cooperative protocol a rebalance hands over and takes away only some partitions;
/// the check reads the whole assignment. One of the two instances stops with the reason (the
/// first, once it has given some partitions up), and the other then owns every partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_cooperative_protocol_one_instance_stops_and_the_other_owns_all() {
    let (_cluster, mut config) = inline_config(2);
    config.kafka.client.insert(
        "partition.assignment.strategy".to_string(),
        "cooperative-sticky".to_string(),
    );
    let first = Instance::start(&config);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!first.task.is_finished(), "one instance owns everything");
    let second = Instance::start(&config);
    one_stops_and_a_survivor_owns_every_partition(&config, first, second, false).await;
}
