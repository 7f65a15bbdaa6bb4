//! Broker outage against a real broker (issue 6, item 2): while sources keep producing, the
//! broker process is killed mid-stream and started again on the same port and SQLite storage.
//! citypulse must say it is not ready while the broker is gone, hold its memory, become ready
//! again, and in the end have every input in its outputs. Both flows go through it: the
//! default two stages, and inline detection, whose workers also publish alerts under the
//! detector's lock while the producer cannot deliver.
//!
//! Needs `tansu` (see tests/tansu/mod.rs). Prints its figures for the README.

mod common;
mod tansu;

use citypulse::config::PipelineConfig;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tansu::*;

/// Live traffic: this many records per second, for this long.
const RATE: usize = 500;
const TRAFFIC_SECS: usize = 40;
const OUTAGE: Duration = Duration::from_secs(20);
/// `/readyz` must turn 503 this soon after the broker dies (statistics come every 5 s).
const NOT_READY_WITHIN: Duration = Duration::from_secs(20);
/// Resident memory of citypulse while the broker is away may not exceed this.
const RSS_LIMIT_KIB: u64 = 768 * 1024;

#[test]
fn broker_outage_turns_readiness_off_holds_memory_and_loses_nothing() {
    outage("outage", &[]);
}

#[test]
fn broker_outage_with_inline_detection_turns_readiness_off_holds_memory_and_loses_nothing() {
    outage("outage-inline", &[inline_detection(true)]);
}

/// The whole scenario for one pipeline file (`overrides` of `pipelines/city.toml`); `flow`
/// names the run in its messages and files.
fn outage(flow: &str, overrides: &[(&str, &str, toml::Value)]) {
    let started = Instant::now();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let dir = test_dir();
    let mut broker = Broker::start(dir.path());
    let bootstrap = broker.bootstrap();
    let pipeline = write_pipeline(dir.path(), overrides);
    let config = PipelineConfig::load(&pipeline).expect("pipeline loads");
    runtime.block_on(create_topics(&bootstrap, &config));

    let mut app = App::start(dir.path(), &pipeline, &bootstrap, flow);
    let ready_at_start = app.wait_readyz(200, Duration::from_secs(60));
    let pid = app.pid();

    // Sources keep producing through the outage; their producer retries until the broker is
    // back, like any well-configured Kafka client.
    let inputs = mixed_inputs(&config, RATE * TRAFFIC_SECS, 7, 0);
    let traffic = {
        let producer = producer(&bootstrap);
        runtime.spawn(async move {
            let mut landed = Vec::new();
            let mut inputs = inputs.into_iter().peekable();
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            while inputs.peek().is_some() {
                tick.tick().await;
                let batch: Vec<Input> = inputs.by_ref().take(RATE / 10).collect();
                // Not awaited here: the batch's deliveries settle while the next ones go out.
                landed.push(tokio::spawn(produce_detached(producer.clone(), batch)));
            }
            let mut all = Vec::new();
            for batch in landed {
                all.extend(batch.await.expect("producer batch task"));
            }
            all
        })
    };

    std::thread::sleep(Duration::from_secs(8));
    let rss_before = app.rss_kib().expect("citypulse RSS readable");
    broker.stop(libc::SIGKILL);
    let stopped = Instant::now();
    let mut not_ready_after = None;
    let mut rss_max = rss_before;
    let mut rss_samples = Vec::new();
    while stopped.elapsed() < OUTAGE {
        if let Some(status) = app.try_exit() {
            panic!(
                "{flow}: citypulse exited ({status}) during the broker outage; stderr:\n{}",
                app.stderr_tail()
            );
        }
        if not_ready_after.is_none() && app.readyz() == Some(503) {
            not_ready_after = Some(stopped.elapsed());
        }
        if let Some(rss) = app.rss_kib() {
            rss_max = rss_max.max(rss);
            rss_samples.push(rss);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let not_ready_after = not_ready_after.unwrap_or_else(|| {
        panic!(
            "{flow}: /readyz never said 503 during a {OUTAGE:?} broker outage (last: {:?}); \
             stderr:\n{}",
            app.get("/readyz"),
            app.stderr_tail()
        )
    });
    assert!(
        not_ready_after <= NOT_READY_WITHIN,
        "{flow}: /readyz took {not_ready_after:?} to say 503"
    );
    let (_, reasons) = app
        .get("/readyz")
        .expect("/readyz answers during the outage");
    let half = rss_samples.len() / 2;
    let first_half_max = rss_samples[..half].iter().copied().max().unwrap_or(0);
    let second_half_max = rss_samples[half..].iter().copied().max().unwrap_or(0);

    broker.restart();
    let restarted = Instant::now();
    let ready_after = app.wait_readyz(200, Duration::from_secs(90));
    assert_eq!(app.pid(), pid, "{flow}: same process throughout");

    let landed = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(120), traffic).await })
        .expect("every input acknowledged within 2 minutes of the broker's return")
        .expect("traffic task");
    let topics = final_topics(&config);
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    let mut reader = OutputReader::new(&bootstrap, &topic_refs, &config.kafka.dlq_topic);
    let wanted: BTreeSet<&SourceKey> = landed.iter().map(|(s, _)| s).collect();
    reader.wait_covered(
        &wanted,
        &mut app,
        Duration::from_secs(180),
        &format!("{flow}: after the outage"),
    );
    let caught_up_after = restarted.elapsed();
    app.stop_cleanly(
        Duration::from_secs(40),
        &format!("{flow}: the run after the outage"),
    );
    reader.catch_up(Duration::from_secs(30));
    let (distinct, duplicates) =
        check_every_input(&landed, &reader.outputs, &config.kafka.dlq_topic);
    eprintln!(
        "{flow}: inputs {} at {RATE}/s, outputs {}, distinct {distinct}, duplicates \
         {duplicates}; broker down {OUTAGE:?}: /readyz 503 after {not_ready_after:.1?} \
         ({reasons}), 200 again {ready_after:.1?} after the restart, all caught up after \
         {caught_up_after:.1?}; RSS before {} MiB, max during outage {} MiB (first half {} \
         MiB, second half {} MiB); first ready {ready_at_start:.1?}; wall time {:.1?}",
        landed.len(),
        reader.outputs.len(),
        rss_before / 1024,
        rss_max / 1024,
        first_half_max / 1024,
        second_half_max / 1024,
        started.elapsed()
    );
    assert!(
        reasons.contains("broker"),
        "{flow}: /readyz names the broker as the reason: {reasons}"
    );
    assert!(
        rss_max <= RSS_LIMIT_KIB,
        "{flow}: RSS reached {} MiB during the outage (limit {} MiB)",
        rss_max / 1024,
        RSS_LIMIT_KIB / 1024
    );
    // Bounded, not merely below a limit: no growth worth speaking of in the outage's second half.
    assert!(
        second_half_max <= first_half_max + 32 * 1024,
        "{flow}: RSS still growing while the broker was away: {} MiB then {} MiB",
        first_half_max / 1024,
        second_half_max / 1024
    );
}

/// Produce one batch and report where each record landed.
async fn produce_detached(
    producer: rdkafka::producer::FutureProducer,
    batch: Vec<Input>,
) -> Vec<(SourceKey, Expect)> {
    produce(&producer, batch).await
}
