//! `citypulse demo`: the whole pipeline on one machine with nothing installed.
//!
//! Starts an embedded Kafka-protocol broker (librdkafka's mock cluster), creates the topics,
//! feeds it generated traffic on all four channels with an incident injected, runs the same
//! pipeline as `run` against it, serves `/metrics`, and prints what a dispatcher would see on
//! the output topics, read back over the Kafka protocol by a consumer of its own.

use crate::alert_feed::{AckPublisher, AlertFeed};
use crate::assets;
use crate::auth::{self, AccessToken};
use crate::config::PipelineConfig;
use crate::demo::generator::{
    daily_rhythm, GeneratedRecord, GeneratorConfig, IncidentKind, TrafficGenerator,
};
use crate::detect::Alert;
use crate::detection;
use crate::event::{Channel, Event, Route};
use crate::health::Health;
use crate::http::{self, AppState};
use crate::kafka::producer::Producer;
use crate::metrics::Metrics;
use crate::pipeline::{self, china_standard_time};
use crate::text::mask::AuthorHasher;
use anyhow::Context;
use chrono::Utc;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::FutureRecord;
use rdkafka::{ClientConfig, Message};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The demo's pipeline file, embedded so the demo runs from any directory.
pub const DEMO_PIPELINE: &str = include_str!("../../pipelines/demo.toml");

/// Used only when `CITYPULSE_AUTHOR_KEY` is not set: the demo's data is made up, so a made-up
/// key is fine; `run` refuses to start without a real one.
const DEMO_AUTHOR_KEY: &[u8] = b"citypulse-demo-key-not-for-production";

#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Stop after this long; `None` runs until Ctrl-C.
    pub duration: Option<Duration>,
    pub listen: SocketAddr,
    /// How many times faster than the wall clock the simulated event clock runs.
    pub speed: f64,
    pub seed: u64,
    /// Print the live summary every this often.
    pub summary_every: Duration,
}

/// What the dispatcher's view saw on the output topics.
#[derive(Debug, Default)]
struct Tally {
    routed_by_department: BTreeMap<String, u64>,
    triaged: u64,
    dead_letters_by_reason: BTreeMap<String, u64>,
    by_channel: BTreeMap<String, u64>,
    latest: Vec<Event>,
    alerts: u64,
    ignored: u64,
}

pub async fn run_demo(options: DemoOptions, shutdown: CancellationToken) -> anyhow::Result<()> {
    let cluster = MockCluster::new(1).context("cannot start the embedded broker")?;
    let brokers = cluster.bootstrap_servers();
    let mut config = PipelineConfig::parse(DEMO_PIPELINE)
        .map_err(|issues| anyhow::anyhow!("embedded demo pipeline is invalid: {issues:?}"))?;
    config.kafka.brokers = brokers.clone();
    config.http.listen = options.listen.to_string();
    for (_, topic) in config.input_topics() {
        cluster.create_topic(&topic, 2, 1)?;
    }
    for topic in [
        &config.kafka.routed_topic,
        &config.kafka.triage_topic,
        &config.kafka.dlq_topic,
        &config.kafka.ignored_topic,
        &config.kafka.events_topic,
        &config.kafka.alerts_topic,
    ] {
        cluster.create_topic(topic, 2, 1)?;
    }
    println!("citypulse demo: embedded Kafka broker at {brokers}");

    let hasher = match AuthorHasher::from_env(&config.privacy.author_key_env) {
        Ok(hasher) => hasher,
        Err(_) => AuthorHasher::new(DEMO_AUTHOR_KEY),
    };
    let metrics = Metrics::new();
    let health = Arc::new(Health::new());
    let alerts = AlertFeed::new();
    let stages = Arc::new(assets::load_stages(&config, hasher, metrics.clone())?);
    health.set_models_loaded(true);

    // The console needs a token like `run`; a demo without one gets a fresh one, shown below.
    let (token, shown_token) = match std::env::var_os(auth::TOKEN_ENV) {
        Some(_) => (
            AccessToken::from_env(auth::TOKEN_ENV)?,
            format!("${}", auth::TOKEN_ENV),
        ),
        None => AccessToken::generate(),
    };
    let acks = AckPublisher::for_kafka(alerts.clone(), &config.kafka, metrics.clone())
        .context("cannot create the acknowledgement producer")?;

    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let address = listener.local_addr()?;
    println!("metrics: http://{address}/metrics   readiness: http://{address}/readyz");
    println!("dispatch console: http://{address}/   access token: {shown_token}");
    // Push ingestion works in the demo too (`POST /ingest/12345` …) against the embedded broker;
    // the WeChat callback is on when $CITYPULSE_WECHAT_TOKEN is set.
    let ingest =
        crate::ingest::IngestState::from_env(&config).context("cannot set up push ingestion")?;
    let http_stop = shutdown.clone();
    let server = tokio::spawn(http::serve(
        listener,
        AppState {
            metrics: metrics.clone(),
            health: health.clone(),
            alerts: alerts.clone(),
            auth: token,
            acks,
            ingest: Some(ingest),
        },
        async move { http_stop.cancelled().await },
    ));

    let pipeline_stop = shutdown.child_token();
    let pipeline_task = {
        let (config, stages, health, stop) = (
            config.clone(),
            stages.clone(),
            health.clone(),
            pipeline_stop.clone(),
        );
        tokio::spawn(async move { pipeline::run(&config, stages, health, stop).await })
    };
    let detection_stop = shutdown.child_token();
    let detection_task = {
        let (config, alerts, metrics, health, stop) = (
            config.clone(),
            alerts.clone(),
            metrics.clone(),
            health.clone(),
            detection_stop.clone(),
        );
        tokio::spawn(async move {
            detection::run_with_health(&config, alerts, metrics, health, stop).await
        })
    };
    let traffic_stop = shutdown.child_token();
    // Traffic starts once both consumer groups have their partitions: a backlog would be read
    // one partition at a time, out of event-time order, and detection drops late events.
    let ready = health.clone();
    let wait_for_groups = async move {
        for _ in 0..300 {
            if ready.not_ready_reasons().is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(4)).await;
    };
    println!("citypulse demo: waiting for the consumer groups to form …");
    wait_for_groups.await;
    let traffic = spawn_traffic(&config, &options, traffic_stop.clone())?;
    let viewer_stop = shutdown.child_token();
    let (viewer, tally) = spawn_viewer(&config, viewer_stop.clone())?;

    let mut ticker = tokio::time::interval(options.summary_every);
    ticker.tick().await;
    let deadline = async {
        match options.duration {
            Some(duration) => tokio::time::sleep(duration).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = &mut deadline => break,
            _ = ticker.tick() => print_summary(&tally.lock().unwrap_or_else(|e| e.into_inner()), &metrics),
        }
    }
    println!("\nstopping: traffic first, then the pipeline drains and commits …");
    traffic_stop.cancel();
    let _ = traffic.await;
    // Let the pipeline and the viewer catch up with the last records before stopping them.
    tokio::time::sleep(Duration::from_secs(2)).await;
    pipeline_stop.cancel();
    let result = pipeline_task.await.context("pipeline task failed")?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    detection_stop.cancel();
    if let Ok(Err(error)) = detection_task.await {
        tracing::warn!(%error, "detection stopped with an error");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    viewer_stop.cancel();
    let _ = viewer.await;
    print_summary(&tally.lock().unwrap_or_else(|e| e.into_inner()), &metrics);
    shutdown.cancel();
    let _ = server.await;
    drop(cluster);
    result.map_err(Into::into)
}

/// Generated records per hour of event time, on average over the day (the mid-morning peak is
/// about 1.8 times this): a city of a few million on four channels, and the rate the detection
/// defaults are tuned for.
const RECORDS_PER_HOUR: f64 = 200.0;

/// Produce traffic on a simulated clock running `options.speed` times faster than the wall
/// clock, so a demo of a few minutes shows what a dispatcher sees over hours: first a day of
/// history (so detection has learned each district's normal volume and words), then live
/// traffic with an incident — a water main bursting in 雨花区, reported on every channel.
fn spawn_traffic(
    config: &PipelineConfig,
    options: &DemoOptions,
    stop: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let producer: Producer = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.brokers)
        .set("linger.ms", "5")
        .create()?;
    let topics: BTreeMap<Channel, String> = config.input_topics().into_iter().collect();
    let mut generator = TrafficGenerator::new(GeneratorConfig {
        seed: options.seed,
        ..GeneratorConfig::default()
    });
    let speed = options.speed.max(1.0);
    Ok(tokio::spawn(async move {
        let cst = china_standard_time();
        let wall_start = std::time::Instant::now();
        let live_start = Utc::now().with_timezone(&cst);
        let send = |record: GeneratedRecord| {
            let producer = producer.clone();
            let topic = topics.get(&record.channel).cloned();
            async move {
                let Some(topic) = topic else { return };
                let sent = producer
                    .send(
                        FutureRecord::<(), _>::to(&topic).payload(&record.bytes),
                        Duration::from_secs(5),
                    )
                    .await;
                if let Err((error, _)) = sent {
                    tracing::warn!(%error, "demo traffic could not be produced");
                }
            }
        };
        // Yesterday, as fast as the broker takes it.
        let mut at = live_start - chrono::Duration::hours(24);
        let mut history = Vec::new();
        while at < live_start {
            history.push(generator.next_record(at));
            at += next_gap(at, 1.0);
        }
        println!(
            "citypulse demo: replaying {} records of the past 24 hours …",
            history.len()
        );
        // In small steps of event time, so every channel (and so every partition of the
        // internal topic) moves forward together: detection drops events that arrive more than
        // its allowed lateness behind the newest one.
        let mut history = history.into_iter().peekable();
        while history.peek().is_some() {
            futures::future::join_all(history.by_ref().take(8).map(send)).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            if stop.is_cancelled() {
                return;
            }
        }
        println!("citypulse demo: live, simulated clock at {speed}× (an incident starts in a few seconds)");
        let mut incident = generator.incident(
            IncidentKind::WaterMainBurst,
            "雨花区",
            live_start + chrono::Duration::minutes(5),
            chrono::Duration::minutes(30),
            24,
        );
        incident.sort_by_key(|(at, _)| *at);
        let mut incident = incident.into_iter().peekable();
        let mut next_background = live_start;
        let mut ticker = tokio::time::interval(Duration::from_millis(100));
        while !stop.is_cancelled() {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let elapsed =
                chrono::Duration::from_std(wall_start.elapsed().mul_f64(speed)).unwrap_or_default();
            let now = live_start + elapsed;
            let mut due = Vec::new();
            while next_background <= now {
                due.push(generator.next_record(next_background));
                next_background += next_gap(next_background, 1.0);
            }
            while let Some((_, record)) = incident.next_if(|(at, _)| *at <= now) {
                due.push(record);
            }
            for record in due {
                send(record).await;
            }
        }
    }))
}

/// Event time to the next background record: Poisson-like spacing at the daily rhythm.
fn next_gap(at: chrono::DateTime<chrono::FixedOffset>, scale: f64) -> chrono::Duration {
    use chrono::Timelike;
    let per_hour = RECORDS_PER_HOUR * daily_rhythm(at.hour()) * scale;
    chrono::Duration::milliseconds((3_600_000.0 / per_hour.max(1.0)) as i64)
}

/// The dispatcher's view: read the output topics back and tally them.
fn spawn_viewer(
    config: &PipelineConfig,
    stop: CancellationToken,
) -> anyhow::Result<(JoinHandle<()>, Arc<std::sync::Mutex<Tally>>)> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.brokers)
        .set("group.id", "citypulse-demo-viewer")
        .set("auto.offset.reset", "earliest")
        .create()?;
    let routed = config.kafka.routed_topic.clone();
    let triage = config.kafka.triage_topic.clone();
    let dlq = config.kafka.dlq_topic.clone();
    let alerts_topic = config.kafka.alerts_topic.clone();
    let ignored = config.kafka.ignored_topic.clone();
    consumer.subscribe(&[&routed, &triage, &ignored, &dlq, &alerts_topic])?;
    let tally = Arc::new(std::sync::Mutex::new(Tally::default()));
    let shared = tally.clone();
    let handle = tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                _ = stop.cancelled() => break,
                message = consumer.recv() => message,
            };
            let Ok(message) = message else { continue };
            let mut tally = shared.lock().unwrap_or_else(|e| e.into_inner());
            if message.topic() == alerts_topic {
                if let Some(alert) = message
                    .payload()
                    .and_then(|p| serde_json::from_slice::<Alert>(p).ok())
                {
                    print_alert(&alert);
                    tally.alerts += 1;
                }
                continue;
            }
            if message.topic() == dlq {
                let reason = message
                    .headers()
                    .and_then(|headers| {
                        use rdkafka::message::Headers;
                        headers
                            .iter()
                            .find(|h| h.key == "citypulse.reason")
                            .and_then(|h| h.value)
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                    })
                    .unwrap_or_else(|| "unknown".into());
                *tally.dead_letters_by_reason.entry(reason).or_default() += 1;
                continue;
            }
            let Some(event) = message
                .payload()
                .and_then(|p| serde_json::from_slice::<Event>(p).ok())
            else {
                continue;
            };
            *tally
                .by_channel
                .entry(event.channel.as_str().to_string())
                .or_default() += 1;
            match event.route {
                Route::Routed => {
                    *tally
                        .routed_by_department
                        .entry(event.department.clone())
                        .or_default() += 1
                }
                Route::Triage => tally.triaged += 1,
                Route::Ignored => tally.ignored += 1,
            }
            tally.latest.push(event);
            if tally.latest.len() > 4 {
                tally.latest.remove(0);
            }
        }
        drop(consumer);
    });
    Ok((handle, tally))
}

/// An alert message as the dispatcher sees it arrive on `citypulse.alerts`.
fn print_alert(alert: &Alert) {
    let marker = match alert.status {
        crate::detect::AlertStatus::Firing => "🔴 FIRING  ",
        crate::detect::AlertStatus::Updated => "🟠 UPDATED ",
        crate::detect::AlertStatus::Resolved => "🟢 RESOLVED",
    };
    let channels: Vec<&str> = alert.channels.iter().map(|c| c.as_str()).collect();
    println!(
        "\n  {marker} [{}] {} {} {} — {} reports (baseline {:.1}) on {} · terms: {} · id {}",
        alert.severity.as_str(),
        alert.kind.as_str(),
        alert.district.as_deref().unwrap_or("-"),
        alert.category.as_deref().unwrap_or(""),
        alert.count,
        alert.baseline,
        channels.join("+"),
        alert.terms.join("、"),
        alert.alert_id,
    );
}

fn print_summary(tally: &Tally, metrics: &Metrics) {
    let routed: u64 = tally.routed_by_department.values().sum();
    let dead: u64 = tally.dead_letters_by_reason.values().sum();
    println!();
    println!(
        "── {} ── read back from Kafka: {routed} routed, {} triage, {} ignored (chatter), {dead} dead letters, {} alert messages; in flight {}",
        Utc::now().with_timezone(&china_standard_time()).format("%H:%M:%S"),
        tally.triaged,
        tally.ignored,
        tally.alerts,
        metrics.in_flight.get(),
    );
    let channels: Vec<String> = tally
        .by_channel
        .iter()
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    println!("  by channel:    {}", channels.join(" · "));
    let departments: Vec<String> = tally
        .routed_by_department
        .iter()
        .map(|(d, n)| format!("{d} {n}"))
        .collect();
    println!("  by department: {}", departments.join(" · "));
    if !tally.dead_letters_by_reason.is_empty() {
        let reasons: Vec<String> = tally
            .dead_letters_by_reason
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        println!("  dead letters:  {}", reasons.join(" · "));
    }
    for event in tally.latest.iter().rev() {
        let text: String = event.text.chars().take(40).collect();
        println!(
            "  [{:>5}] P{} {:<6} {:<8} → {} ({} {:.2}) {}: {}",
            event.channel.as_str(),
            event.priority,
            event.emotion,
            event.district.as_deref().unwrap_or("未知区县"),
            event.department,
            event.category,
            event.category_confidence,
            event.route.as_str(),
            text
        );
    }
}
