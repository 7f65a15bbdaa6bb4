//! Detection scales out: two instances in one consumer group on the embedded broker raise the
//! same alerts as one instance does on the same input. Events are re-keyed by district onto
//! `citypulse.events`, so each instance owns a share of the districts, and every piece of
//! detection state that decides an alert is per district.

mod common;

use citypulse::alert_feed::AlertFeed;
use citypulse::config::PipelineConfig;
use citypulse::detect::{Alert, AlertStatus};
use citypulse::metrics::Metrics;
use citypulse::{detection, pipeline};
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Alert threads as (alert id, statuses in order); `at` and counts depend on delivery timing
/// only through the stream's order, which is kept per district.
fn threads(alerts: &[Alert]) -> BTreeMap<String, Vec<AlertStatus>> {
    let mut out: BTreeMap<String, Vec<AlertStatus>> = BTreeMap::new();
    for alert in alerts {
        out.entry(alert.alert_id.clone())
            .or_default()
            .push(alert.status);
    }
    out
}

/// Run `instances` full instances over the stream and return every alert they published.
async fn run_instances(instances: usize) -> Vec<Alert> {
    let (cluster, mut config) = cluster_with_topics(2);
    config.kafka.group_id = format!("scale-{instances}-{}", rand::random::<u32>());
    // Three hours of traffic is a cold start: no warm-up, so the injected incidents can fire.
    config.detect.warmup_events = 0;
    let feeds: Vec<AlertFeed> = (0..instances).map(|_| AlertFeed::new()).collect();
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();
    for feed in &feeds {
        let (config_a, config_b) = (config.clone(), config.clone());
        let stages = stages(&config);
        let metrics = Metrics::new();
        let (stop_a, stop_b, feed) = (stop.clone(), stop.clone(), feed.clone());
        tasks.push(tokio::spawn(async move {
            pipeline::run(&config_a, stages, health(), stop_a)
                .await
                .map_err(|e| e.to_string())
        }));
        tasks.push(tokio::spawn(async move {
            detection::run(&config_b, feed, metrics, stop_b)
                .await
                .map_err(|e| e.to_string())
        }));
    }
    // Let both instances join before the records flow, so partitions are shared from the start.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let inputs: Vec<(String, Vec<u8>)> = incident_stream()
        .into_iter()
        .map(|(_, channel, bytes)| (config.kafka.input_topics[channel.as_str()].clone(), bytes))
        .collect();
    // Paced, so the partitions of the internal topic are consumed at about the same event time.
    for chunk in inputs.chunks(50) {
        produce(&config.kafka.brokers, chunk).await;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    stop.cancel();
    for task in tasks {
        task.await.unwrap().expect("instance stops cleanly");
    }
    let alerts = read_alerts(&config).await;
    drop(cluster);
    alerts
}

/// Incident threads per district.
fn incident_districts(alerts: &[Alert]) -> BTreeSet<String> {
    alerts
        .iter()
        .filter(|a| a.kind == citypulse::detect::AlertKind::Incident)
        .filter_map(|a| a.district.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_districts_and_both_injected_incidents_alert() {
    let one = run_instances(1).await;
    let two = run_instances(2).await;
    for (name, alerts) in [("one instance", &one), ("two instances", &two)] {
        let districts = incident_districts(alerts);
        for district in ["雨花区", "岳麓区"] {
            assert!(
                districts.contains(district),
                "{name}: no incident alert in {district}: {:?}",
                threads(alerts)
            );
        }
        assert!(
            threads(alerts)
                .values()
                .all(|statuses| statuses[0] == AlertStatus::Firing),
            "{name}: every thread starts by firing"
        );
    }
}

/// One alert message as compared between runs: the thread's id, kind, status and count.
type Message = (citypulse::detect::AlertKind, AlertStatus, u64);

fn messages(alerts: &[Alert]) -> BTreeMap<String, Vec<Message>> {
    let mut out: BTreeMap<String, Vec<Message>> = BTreeMap::new();
    for alert in alerts {
        out.entry(alert.alert_id.clone()).or_default().push((
            alert.kind,
            alert.status,
            alert.count,
        ));
    }
    out
}

/// The stream as the routing pipeline writes it to the internal topic (events keyed by district),
/// produced in one fixed order, so that both runs read the same partitions: the routing stage's
/// own interleaving of its input partitions is not what this test is about.
async fn produce_internal(config: &PipelineConfig) {
    use citypulse::detection::{district_key, InternalEvent};
    use citypulse::stages::Outcome;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let stages = stages(config);
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.brokers)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for (at, channel, bytes) in incident_stream() {
        let Outcome::Event { event, tokens } = stages.process(channel, &bytes, None, at) else {
            continue;
        };
        let internal = InternalEvent {
            event: *event,
            tokens,
        };
        let payload = serde_json::to_vec(&internal).unwrap();
        let key = district_key(&internal.event).to_string();
        producer
            .send(
                FutureRecord::to(&config.kafka.events_topic)
                    .key(&key)
                    .payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .expect("internal event acknowledged");
    }
}

/// Run `instances` detection instances over the internal topic and return every alert they
/// published.
async fn run_detection(instances: usize) -> Vec<Alert> {
    let (cluster, mut config) = cluster_with_topics(2);
    config.kafka.group_id = format!("exact-{instances}-{}", rand::random::<u32>());
    config.detect.warmup_events = 0;
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();
    for _ in 0..instances {
        let (config, stop) = (config.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            detection::run(&config, AlertFeed::new(), Metrics::new(), stop)
                .await
                .map_err(|e| e.to_string())
        }));
    }
    // Both instances join before the events flow, so partitions are shared from the start.
    tokio::time::sleep(Duration::from_secs(8)).await;
    produce_internal(&config).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop.cancel();
    for task in tasks {
        task.await.unwrap().expect("instance stops cleanly");
    }
    let alerts = read_alerts(&config).await;
    drop(cluster);
    alerts
}

/// Exact scale-out: the same alert threads, each with the same kinds, statuses and counts in
/// the same order, from two instances as from one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_raise_the_same_alerts_as_one() {
    let one = run_detection(1).await;
    let two = run_detection(2).await;
    let districts = incident_districts(&one);
    assert!(
        districts.contains("雨花区") && districts.contains("岳麓区"),
        "both injected incidents alert: {:?}",
        messages(&one)
    );
    assert_eq!(messages(&one), messages(&two));
}
