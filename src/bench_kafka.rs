//! `citypulse bench-kafka`: the end-to-end benchmark through Kafka behind the README's
//! performance section — the same `run` flow (stage 1 consumes, segments, classifies and
//! publishes the internal event; stage 2 detects and routes) against the embedded broker
//! (librdkafka's mock cluster, spoken to over the Kafka protocol on loopback).
//!
//! It sits beside `bench` (which times the stages in memory) and measures what a deployment
//! sees: records in the input topic → outputs acknowledged by the broker. Two phases per
//! workload:
//! - **throughput**: `messages` records are produced as fast as the pipeline takes them (at
//!   most [`MAX_BACKLOG`] ahead, as the mock broker keeps only a few MB per partition); the
//!   rate is the records settled (every output acknowledged, end of stage 2) per second
//!   between the first and the last settling, and per CPU-second of the whole process (the
//!   broker, the bench's producer, the clients and both stages share it, so that figure is
//!   conservative);
//! - **latency**: records are then produced at a steady `rate` for `latency_seconds`, and the
//!   pipeline's own `citypulse_end_to_end_latency_seconds` histogram (input's broker timestamp
//!   → last output acknowledged) gives p50 and p99, interpolated within its buckets as
//!   Prometheus' `histogram_quantile` does, and the share of records within 20 ms. Resident
//!   memory is sampled once a second meanwhile ([`RssTrace`]): a long `--latency-seconds` run
//!   shows whether it stays flat once the windows and caches have filled.
//!
//! "One core" is the affinity the process is started with (`taskset -c 0 citypulse
//! bench-kafka`); the report prints how many CPUs it was allowed. `--load-core N` instead
//! keeps core N for the load — the broker and the bench's producers — and runs citypulse's
//! threads on the other cores ([`crate::cpu_affinity`]), as a broker on another machine
//! would; the report then splits the CPU time between the two sides.

use crate::alert_feed::AlertFeed;
use crate::assets;
use crate::bench::{long_workload, proc_status_kb, short_workload, Workload};
use crate::config::PipelineConfig;
use crate::cpu_affinity::LoadCore;
use crate::detection;
use crate::health::Health;
use crate::inline_detection::InlineDetection;
use crate::kafka::producer::Producer;
use crate::metrics::Metrics;
use crate::pipeline::{self, china_standard_time};
use crate::stages::Stages;
use crate::text::mask::AuthorHasher;
use chrono::{Duration as TimeDelta, Utc};
use futures::channel::oneshot::Canceled;
use prometheus::core::Metric;
use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::FutureRecord;
use rdkafka::ClientConfig;
use std::collections::VecDeque;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum KafkaBenchError {
    #[error(transparent)]
    Workload(#[from] crate::bench::BenchError),
    #[error("cannot load the stages: {0}")]
    Assets(#[from] assets::AssetError),
    #[error("embedded broker: {0}")]
    Broker(#[source] KafkaError),
    #[error("bench producer: {0}")]
    Producer(#[source] KafkaError),
    #[error("--messages, --partitions and --rate must be positive")]
    Options,
    #[error("placing threads: {0}")]
    Affinity(#[from] std::io::Error),
}

/// Which workloads to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkloadChoice {
    Long,
    Short,
    Both,
}

/// What to measure; the command-line arguments of `citypulse bench-kafka`.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaBenchOptions {
    /// Records produced while the pipeline runs (throughput phase).
    #[arg(long, default_value_t = 50_000)]
    pub messages: usize,
    /// Partitions of the input and internal topics, and pipeline workers.
    #[arg(long, default_value_t = 1)]
    pub partitions: usize,
    /// Records per second of the latency phase.
    #[arg(long, default_value_t = 5_000.0)]
    pub rate: f64,
    /// Seconds of the latency phase (0 skips it).
    #[arg(long, default_value_t = 10.0)]
    pub latency_seconds: f64,
    /// Long 12345 work orders, short Weibo posts, or both.
    #[arg(long, value_enum, default_value_t = WorkloadChoice::Both)]
    pub workload: WorkloadChoice,
    /// A librdkafka property for the pipeline's clients (`kafka.client`), e.g.
    /// `--client linger.ms=1`; repeatable.
    #[arg(long, value_parser = parse_key_value)]
    pub client: Vec<(String, String)>,
    /// The shared data directory; generated texts where it is absent.
    #[arg(long, default_value = "../shared/data")]
    pub shared_data: PathBuf,
    /// Run the embedded broker and the bench's producers on this core, and citypulse on the
    /// other cores the process may use (`bench-kafka --load-core 1`: citypulse on core 0).
    #[arg(long)]
    pub load_core: Option<usize>,
    /// Detection inside stage 1 (`pipeline.inline_detection`, one instance): no internal
    /// topic and no stage 2.
    #[arg(long)]
    pub inline_detection: bool,
    /// Seed of the generator used when the shared data is absent.
    #[arg(skip = 7u64)]
    pub seed: u64,
}

impl Default for KafkaBenchOptions {
    /// The command line's defaults.
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            options: KafkaBenchOptions,
        }
        <Defaults as clap::Parser>::parse_from(["bench-kafka"]).options
    }
}

/// `KEY=VALUE` of `--client`.
fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.trim().to_string()))
        }
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

/// Quantiles of the end-to-end latency during the steady-rate phase.
#[derive(Debug, Clone)]
pub struct LatencyReport {
    pub target_rate: f64,
    /// Records produced per second in fact (the producer shares the CPU).
    pub produced_rate: f64,
    pub samples: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Share of records whose outputs were acknowledged within 20 ms.
    pub within_20ms: f64,
    /// Resident memory while the phase ran.
    pub rss: RssTrace,
}

/// Seconds between two resident-memory samples of the latency phase.
const RSS_SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Most samples kept: a day at one a second. Beyond it every second sample is dropped and the
/// interval doubles, so a longer run still covers its whole length.
const MAX_RSS_SAMPLES: usize = 86_400;

/// Resident set size (VmRSS, kB) sampled at a fixed interval over the latency phase. Steady
/// means the last quarter's mean is not above the second quarter's: the first quarter is left
/// out because detection windows, token caches and the broker's buffers fill then.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RssTrace {
    pub interval: Duration,
    pub samples_kb: Vec<u64>,
}

impl RssTrace {
    fn push(&mut self, kb: u64) {
        if self.samples_kb.len() >= MAX_RSS_SAMPLES {
            let halved: Vec<u64> = self.samples_kb.iter().copied().step_by(2).collect();
            self.samples_kb = halved;
            self.interval *= 2;
        }
        self.samples_kb.push(kb);
    }

    pub fn max_kb(&self) -> Option<u64> {
        self.samples_kb.iter().copied().max()
    }

    /// Mean of the last quarter of the samples minus the mean of the second quarter, in kB;
    /// `None` with fewer than 4 samples.
    pub fn late_growth_kb(&self) -> Option<f64> {
        let n = self.samples_kb.len();
        if n < 4 {
            return None;
        }
        let mean = |part: &[u64]| part.iter().sum::<u64>() as f64 / part.len() as f64;
        let quarter = n / 4;
        Some(mean(&self.samples_kb[n - quarter..]) - mean(&self.samples_kb[quarter..2 * quarter]))
    }
}

impl fmt::Display for RssTrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mb = |kb: u64| kb as f64 / 1024.0;
        let (Some(first), Some(last), Some(max)) = (
            self.samples_kb.first(),
            self.samples_kb.last(),
            self.max_kb(),
        ) else {
            return write!(f, "RSS: not sampled");
        };
        write!(
            f,
            "RSS over the phase ({} samples, every {} s): start {:.1} MB, max {:.1} MB, end {:.1} MB",
            self.samples_kb.len(),
            self.interval.as_secs(),
            mb(*first),
            mb(max),
            mb(*last)
        )?;
        if let Some(growth) = self.late_growth_kb() {
            write!(
                f,
                "; last quarter vs second quarter {:+.1} MB",
                growth / 1024.0
            )?;
        }
        Ok(())
    }
}

/// Samples VmRSS every [`RSS_SAMPLE_EVERY`] until `stop` is cancelled.
fn sample_rss(stop: CancellationToken) -> tokio::task::JoinHandle<RssTrace> {
    tokio::spawn(async move {
        let mut trace = RssTrace {
            interval: RSS_SAMPLE_EVERY,
            samples_kb: Vec::new(),
        };
        let mut tick = tokio::time::interval(RSS_SAMPLE_EVERY);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {
                    if let Some(kb) = proc_status_kb("VmRSS") {
                        trace.push(kb);
                    }
                }
            }
        }
        if let Some(kb) = proc_status_kb("VmRSS") {
            trace.push(kb);
        }
        trace
    })
}

#[derive(Debug, Clone)]
pub struct KafkaWorkloadReport {
    pub name: &'static str,
    pub source: String,
    pub messages: usize,
    /// Records done (outputs acknowledged, or skipped or dead-lettered) in the throughput
    /// phase, of `messages`.
    pub completed: u64,
    /// Of those, the ones settled after the first (the rate's window opens at the first).
    pub settled: u64,
    pub seconds: f64,
    pub cpu_seconds: f64,
    /// Of `cpu_seconds`, the load core's (with `--load-core`).
    pub load_cpu_seconds: Option<f64>,
    pub latency: Option<LatencyReport>,
    /// With `--inline-detection`: the restart's rebuild, re-reading the output topics the
    /// run left (events re-read, seconds).
    pub rebuild: Option<(u64, f64)>,
}

impl KafkaWorkloadReport {
    pub fn msgs_per_sec(&self) -> f64 {
        self.settled as f64 / self.seconds.max(1e-9)
    }
    pub fn msgs_per_cpu_sec(&self) -> f64 {
        self.settled as f64 / self.cpu_seconds.max(1e-9)
    }
    /// Settled records per CPU-second of citypulse's own threads, with `--load-core`.
    pub fn msgs_per_citypulse_cpu_sec(&self) -> Option<f64> {
        self.load_cpu_seconds
            .map(|load| self.settled as f64 / (self.cpu_seconds - load).max(1e-9))
    }
}

#[derive(Debug, Clone)]
pub struct KafkaBenchReport {
    pub workloads: Vec<KafkaWorkloadReport>,
    pub partitions: usize,
    /// `kafka.client` settings given on the command line.
    pub client: Vec<(String, String)>,
    pub cpus_allowed: usize,
    /// With `--load-core`: the load's core and citypulse's.
    pub placement: Option<(usize, Vec<usize>)>,
    /// Whether detection ran inside stage 1 (`--inline-detection`).
    pub inline_detection: bool,
    pub peak_rss_kb: Option<u64>,
}

/// Runs the chosen workloads, each on a fresh embedded broker; progress goes to stderr.
pub async fn run(options: &KafkaBenchOptions) -> Result<KafkaBenchReport, KafkaBenchError> {
    if options.messages == 0 || options.partitions == 0 || options.rate <= 0.0 {
        return Err(KafkaBenchError::Options);
    }
    let cpus_allowed = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Before anything starts a thread, so that citypulse's threads all inherit their cores.
    let load_core = options.load_core.map(LoadCore::reserve).transpose()?;
    let mut config = PipelineConfig::default();
    config.pipeline.workers = options.partitions;
    config.pipeline.inline_detection = options.inline_detection;
    config.kafka.client.extend(options.client.iter().cloned());
    let metrics = Metrics::new();
    let stages = Arc::new(assets::load_stages(
        &config,
        AuthorHasher::new(b"bench-key-not-for-real-output"),
        metrics.clone(),
    )?);
    let mut workloads = Vec::new();
    if options.workload != WorkloadChoice::Short {
        workloads.push(Arc::new(long_workload(&options.shared_data, options.seed)?));
    }
    if options.workload != WorkloadChoice::Long {
        workloads.push(Arc::new(short_workload(
            &options.shared_data,
            options.seed,
        )?));
    }
    let mut reports = Vec::new();
    for (n, workload) in workloads.iter().enumerate() {
        let mut config = config.clone();
        config.kafka.group_id = format!("citypulse-bench-{n}");
        reports.push(
            measure(
                options,
                config,
                stages.clone(),
                workload,
                load_core.as_ref(),
            )
            .await?,
        );
    }
    Ok(KafkaBenchReport {
        workloads: reports,
        partitions: options.partitions,
        client: options.client.clone(),
        cpus_allowed,
        placement: load_core
            .as_ref()
            .map(|l| (l.core(), l.citypulse_cores().to_vec())),
        inline_detection: options.inline_detection,
        peak_rss_kb: proc_status_kb("VmHWM"),
    })
}

async fn measure(
    options: &KafkaBenchOptions,
    mut config: PipelineConfig,
    stages: Arc<Stages>,
    workload: &Arc<Workload>,
    load_core: Option<&LoadCore>,
) -> Result<KafkaWorkloadReport, KafkaBenchError> {
    let cluster = start_load(load_core, || {
        MockCluster::new(1).map_err(KafkaBenchError::Broker)
    })?;
    // The mock broker holds a fetch of a caught-up partition open for the whole
    // `fetch.wait.max.ms` even when data arrives meanwhile (Apache Kafka answers at once), so
    // with librdkafka's default of 500 ms a consumer that catches up would idle in 500 ms
    // steps. A 1 ms wait stands in for the real broker's prompt answer.
    config
        .kafka
        .client
        .entry("fetch.wait.max.ms".to_string())
        .or_insert_with(|| "1".to_string());
    config.kafka.brokers = cluster.bootstrap_servers();
    let partitions = i32::try_from(options.partitions).map_err(|_| KafkaBenchError::Options)?;
    let input_topic = config
        .input_topics()
        .into_iter()
        .find(|(channel, _)| *channel == workload.channel)
        .map(|(_, topic)| topic)
        .unwrap_or_else(|| format!("bench.{}", workload.channel.as_str()));
    config
        .kafka
        .input_topics
        .retain(|channel, _| channel == workload.channel.as_str());
    config
        .kafka
        .input_topics
        .insert(workload.channel.as_str().to_string(), input_topic.clone());
    for topic in [
        &input_topic,
        &config.kafka.events_topic,
        &config.kafka.routed_topic,
        &config.kafka.triage_topic,
        &config.kafka.dlq_topic,
        &config.kafka.ignored_topic,
        &config.kafka.alerts_topic,
    ] {
        cluster
            .create_topic(topic, partitions, 1)
            .map_err(KafkaBenchError::Broker)?;
    }

    let latency_records = (options.rate * options.latency_seconds).ceil() as usize;
    // Event times one second apart, ending about now: detection sees a steady stream in
    // order, and nothing it would drop as from the future.
    let first_at = Utc::now().with_timezone(&china_standard_time())
        - TimeDelta::seconds((options.messages + latency_records) as i64);
    let at = move |i: usize| first_at + TimeDelta::seconds(i as i64);

    let metrics = stages.metrics.clone();
    // A record is done when the end of the flow (stage 2, or stage 1 with inline detection)
    // saw its outputs acknowledged (the latency histogram counts it), or when stage 1 ended
    // its way (skipped, or dead-lettered).
    let settled = || {
        metrics.end_to_end_latency.get_sample_count()
            + counter_sum(&metrics.skipped)
            + counter_sum(&metrics.dead_letters)
    };
    let consumed = || {
        metrics
            .events_in
            .with_label_values(&[workload.channel.as_str()])
            .get()
    };
    let settled_before = settled();
    let health = Arc::new(Health::new());
    health.set_models_loaded(true);
    let stop = CancellationToken::new();
    let pipeline_task = {
        let (config, stages, health, stop) =
            (config.clone(), stages.clone(), health.clone(), stop.clone());
        tokio::spawn(async move { pipeline::run(&config, stages, health, stop).await })
    };
    let detection_task = (!config.pipeline.inline_detection).then(|| {
        let (config, metrics, health, stop) = (
            config.clone(),
            metrics.clone(),
            health.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            detection::run_with_health(&config, AlertFeed::new(), metrics, health, stop).await
        })
    });
    let waited = Instant::now();
    while health.not_ready_reasons().is_some() && waited.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    eprintln!(
        "bench-kafka: {}: producing {} records to {input_topic} ({} partitions) …",
        workload.name, options.messages, options.partitions
    );
    // The mock broker keeps only the newest few MB of each partition, so the producer may not
    // run far ahead of the pipeline: it keeps at most `MAX_BACKLOG` records unconsumed, which
    // is still always work waiting for the pipeline.
    let producing = {
        let brokers = config.kafka.brokers.clone();
        let topic = input_topic.clone();
        let (metrics, channel) = (metrics.clone(), workload.channel);
        let consumed_before = consumed();
        let workload = workload.clone();
        let count = options.messages;
        let bulk = start_load(load_core, || producer(&brokers, "5"))?;
        tokio::spawn(async move {
            // Built as they go out rather than all before: the bench's own buffers would
            // otherwise dominate the peak RSS it reports.
            let records = (0..count).map(|i| workload.record(i, at(i)));
            let backlog = move |produced: usize| {
                let consumed = metrics
                    .events_in
                    .with_label_values(&[channel.as_str()])
                    .get();
                produced.saturating_sub((consumed - consumed_before) as usize)
            };
            produce_records(&bulk, &topic, records, None, Some(&backlog)).await
        })
    };
    // Stops the producer should the measurement give up on a stall.
    let mut producing = AbortOnDrop(producing);

    // Throughput: from the first record settled to the last.
    let target = settled_before + options.messages as u64;
    let cpu_now = || CpuSample {
        process: process_cpu_seconds(),
        load: load_core.map(LoadCore::load_cpu_seconds),
    };
    let mut first: Option<(Instant, u64, CpuSample)> = None;
    let mut last_progress = (Instant::now(), settled_before);
    let mut end = None;
    loop {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let now = settled();
        if now > last_progress.1 {
            last_progress = (Instant::now(), now);
        }
        if first.is_none() && now > settled_before {
            first = Some((Instant::now(), now, cpu_now()));
        }
        if now >= target {
            end = Some((Instant::now(), now, cpu_now()));
            break;
        }
        // Group formation takes seconds; a stall after progress means something is wrong.
        let patience = if first.is_some() { 30 } else { 90 };
        if last_progress.0.elapsed() > Duration::from_secs(patience) {
            eprintln!(
                "bench-kafka: no progress for {patience} s at {} of {} records; reporting what settled",
                now - settled_before,
                options.messages
            );
            break;
        }
    }
    match (&mut producing.0).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(error),
        Err(_) => return Err(KafkaBenchError::Producer(KafkaError::Canceled)),
    }
    let (seconds, cpu, settled_count) = match (&first, &end) {
        (Some((t0, n0, c0)), Some((t1, n1, c1))) => {
            (t1.duration_since(*t0).as_secs_f64(), c1.since(c0), n1 - n0)
        }
        (Some((t0, n0, c0)), None) => (
            last_progress.0.duration_since(*t0).as_secs_f64(),
            cpu_now().since(c0),
            last_progress.1 - n0,
        ),
        _ => (0.0, CpuSample::default(), 0),
    };

    let latency = if latency_records > 0 && end.is_some() {
        eprintln!(
            "bench-kafka: {}: {latency_records} records at {} records/s …",
            workload.name, options.rate
        );
        let records = (options.messages..options.messages + latency_records)
            .map(|i| workload.record(i, at(i)));
        let before = buckets(&metrics);
        let stop_sampling = CancellationToken::new();
        let sampling = sample_rss(stop_sampling.clone());
        let paced = start_load(load_core, || producer(&config.kafka.brokers, "0"))?;
        let started = Instant::now();
        produce_records(&paced, &input_topic, records, Some(options.rate), None).await?;
        let produced_rate = latency_records as f64 / started.elapsed().as_secs_f64();
        let target = target + latency_records as u64;
        let waited = Instant::now();
        while settled() < target && waited.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let after = buckets(&metrics);
        stop_sampling.cancel();
        let rss = sampling.await.unwrap_or_default();
        Some(latency_report(
            &before,
            &after,
            options.rate,
            produced_rate,
            rss,
        ))
    } else {
        None
    };

    // What a restart of inline detection would do now: rebuild from the outputs just written.
    let rebuild = if config.pipeline.inline_detection && end.is_some() {
        let inline = InlineDetection::new(&config, AlertFeed::new(), metrics.clone());
        let (config, stages) = (config.clone(), stages.clone());
        let started = Instant::now();
        let rebuilt = tokio::task::spawn_blocking(move || {
            inline.rebuild(&config, &stages, &CancellationToken::new())
        })
        .await;
        match rebuilt {
            Ok(Ok(rebuilt)) => Some((rebuilt.events, started.elapsed().as_secs_f64())),
            _ => None,
        }
    } else {
        None
    };

    stop.cancel();
    let _ = pipeline_task.await;
    if let Some(detection_task) = detection_task {
        let _ = detection_task.await;
    }
    drop(cluster);
    Ok(KafkaWorkloadReport {
        name: workload.name,
        source: workload.source.clone(),
        messages: options.messages,
        completed: last_progress.1.max(end.map_or(0, |(_, n, _)| n)) - settled_before,
        settled: settled_count,
        seconds,
        cpu_seconds: cpu.process,
        load_cpu_seconds: cpu.load,
        latency,
        rebuild,
    })
}

/// CPU seconds of the whole process, and of the load core's threads with `--load-core`.
#[derive(Debug, Clone, Copy, Default)]
struct CpuSample {
    process: f64,
    load: Option<f64>,
}

impl CpuSample {
    fn since(&self, earlier: &CpuSample) -> CpuSample {
        CpuSample {
            process: self.process - earlier.process,
            load: self.load.zip(earlier.load).map(|(now, then)| now - then),
        }
    }
}

/// Start load (the broker, a producer) on the load core when there is one.
fn start_load<T>(
    load_core: Option<&LoadCore>,
    start: impl FnOnce() -> Result<T, KafkaBenchError>,
) -> Result<T, KafkaBenchError> {
    match load_core {
        Some(load_core) => load_core.start_load(start)?,
        None => start(),
    }
}

fn producer(brokers: &str, linger_ms: &str) -> Result<Producer, KafkaBenchError> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", linger_ms)
        .set("queue.buffering.max.messages", "200000")
        .create()
        .map_err(KafkaBenchError::Producer)
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Maximum records produced but not yet consumed in the throughput phase (see `measure`).
const MAX_BACKLOG: usize = 2_000;

/// Produces `records` (keyed by their index) and waits for every acknowledgement. With a
/// rate, records go out at that pace; with `backlog` (records produced so far → records not
/// yet consumed), the producer waits while [`MAX_BACKLOG`] are unconsumed; else as fast as
/// the producer's queue takes them.
async fn produce_records(
    producer: &Producer,
    topic: &str,
    records: impl Iterator<Item = Vec<u8>>,
    rate: Option<f64>,
    backlog: Option<&(dyn Fn(usize) -> usize + Send + Sync)>,
) -> Result<(), KafkaBenchError> {
    let started = Instant::now();
    // Delivery reports still awaited, oldest first. Bounded: a long run would otherwise hold
    // one report per record produced and its growth would be read as the pipeline's.
    let mut deliveries = VecDeque::with_capacity(MAX_PENDING_DELIVERIES);
    for (i, payload) in records.enumerate() {
        if let Some(rate) = rate {
            let due = started + Duration::from_secs_f64(i as f64 / rate);
            if due > Instant::now() + Duration::from_millis(1) {
                tokio::time::sleep_until(due.into()).await;
            }
        }
        if let Some(backlog) = backlog {
            while backlog(i) >= MAX_BACKLOG {
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
        }
        let key = i.to_string();
        let record = FutureRecord::to(topic).key(&key).payload(&payload);
        let delivery = producer
            .send_when_queued(record, None)
            .await
            .map_err(|(error, _)| KafkaBenchError::Producer(error))?;
        deliveries.push_back(delivery);
        if deliveries.len() >= MAX_PENDING_DELIVERIES {
            if let Some(oldest) = deliveries.pop_front() {
                delivered(oldest.await)?;
            }
        }
    }
    for delivery in deliveries {
        delivered(delivery.await)?;
    }
    producer
        .flush(Duration::from_secs(10))
        .map_err(KafkaBenchError::Producer)
}

/// Delivery reports the bench's producer keeps in flight before it waits for the oldest.
const MAX_PENDING_DELIVERIES: usize = 10_000;

/// The outcome of one delivery report.
fn delivered(report: Result<OwnedDeliveryResult, Canceled>) -> Result<(), KafkaBenchError> {
    match report {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((error, _))) => Err(KafkaBenchError::Producer(error)),
        Err(Canceled) => Err(KafkaBenchError::Producer(KafkaError::Canceled)),
    }
}

/// The sum over every label of a counter family.
fn counter_sum(counters: &prometheus::IntCounterVec) -> u64 {
    use prometheus::core::Collector;
    counters
        .collect()
        .iter()
        .flat_map(|family| family.get_metric())
        .map(|metric| metric.get_counter().get_value() as u64)
        .sum()
}

/// `(upper bound, cumulative count)` of the end-to-end latency histogram, `+Inf` last.
fn buckets(metrics: &Metrics) -> Vec<(f64, u64)> {
    let metric = metrics.end_to_end_latency.metric();
    let histogram = metric.get_histogram();
    let mut buckets: Vec<(f64, u64)> = histogram
        .get_bucket()
        .iter()
        .map(|b| (b.upper_bound(), b.cumulative_count()))
        .collect();
    buckets.push((f64::INFINITY, histogram.get_sample_count()));
    buckets
}

fn latency_report(
    before: &[(f64, u64)],
    after: &[(f64, u64)],
    target_rate: f64,
    produced_rate: f64,
    rss: RssTrace,
) -> LatencyReport {
    let diff: Vec<(f64, u64)> = after
        .iter()
        .zip(before)
        .map(|(&(bound, a), &(_, b))| (bound, a.saturating_sub(b)))
        .collect();
    let samples = diff.last().map_or(0, |&(_, n)| n);
    let within_20ms = diff
        .iter()
        .find(|(bound, _)| (*bound - 0.02).abs() < 1e-9)
        .map_or(f64::NAN, |&(_, n)| n as f64 / samples.max(1) as f64);
    LatencyReport {
        target_rate,
        produced_rate,
        samples,
        p50_ms: histogram_quantile(0.50, &diff) * 1e3,
        p99_ms: histogram_quantile(0.99, &diff) * 1e3,
        within_20ms,
        rss,
    }
}

/// Prometheus' `histogram_quantile` on cumulative `(upper bound, count)` buckets: linear
/// within the bucket the rank falls in; the highest finite bound when it falls in `+Inf`.
fn histogram_quantile(q: f64, buckets: &[(f64, u64)]) -> f64 {
    let Some(&(_, total)) = buckets.last() else {
        return f64::NAN;
    };
    if total == 0 {
        return f64::NAN;
    }
    let rank = q * total as f64;
    let mut lower = (0.0, 0u64);
    for &(bound, count) in buckets {
        if count as f64 >= rank {
            if bound.is_infinite() {
                return lower.0;
            }
            let in_bucket = (count - lower.1) as f64;
            if in_bucket == 0.0 {
                return bound;
            }
            return lower.0 + (bound - lower.0) * (rank - lower.1 as f64) / in_bucket;
        }
        lower = (bound, count);
    }
    lower.0
}

/// CPU seconds of the whole process so far (`/proc/self/stat`, in the kernel's 100 Hz ticks).
fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the command name (which may hold spaces) start at state, field 3.
    let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => (user + system) / 100.0,
        _ => f64::NAN,
    }
}

impl fmt::Display for KafkaBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "embedded broker (librdkafka mock cluster) on loopback; {} partition(s), {} worker(s); {} CPU(s) allowed",
            self.partitions, self.partitions, self.cpus_allowed
        )?;
        writeln!(
            f,
            "detection: {}",
            if self.inline_detection {
                "inline, in stage 1's workers (--inline-detection; no internal topic)"
            } else {
                "stage 2, behind the internal topic citypulse.events"
            }
        )?;
        if let Some((load_core, citypulse_cores)) = &self.placement {
            writeln!(
                f,
                "--load-core: broker and bench producers on core {load_core}, citypulse on {citypulse_cores:?}"
            )?;
        }
        if !self.client.is_empty() {
            let settings: Vec<String> = self
                .client
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            writeln!(f, "client settings: {}", settings.join(" "))?;
        }
        for w in &self.workloads {
            writeln!(f, "== {} ({}) ==", w.name, w.source)?;
            writeln!(
                f,
                "throughput: {} of {} records done; {} settled in {:.2} s after the first = {:.0} msg/s; {:.2} CPU-s = {:.0} msg per CPU-second (broker, clients and both stages)",
                w.completed,
                w.messages,
                w.settled,
                w.seconds,
                w.msgs_per_sec(),
                w.cpu_seconds,
                w.msgs_per_cpu_sec()
            )?;
            if let (Some(load), Some(rate)) = (w.load_cpu_seconds, w.msgs_per_citypulse_cpu_sec()) {
                writeln!(
                    f,
                    "of which the load core {load:.2} CPU-s; citypulse {:.2} CPU-s = {rate:.0} msg per citypulse CPU-second",
                    w.cpu_seconds - load
                )?;
            }
            match &w.latency {
                Some(l) => {
                    writeln!(
                        f,
                        "latency at {:.0} msg/s (produced {:.0}/s), {} records: p50 {:.1} ms, p99 {:.1} ms (within histogram buckets); {:.1} % within 20 ms",
                        l.target_rate,
                        l.produced_rate,
                        l.samples,
                        l.p50_ms,
                        l.p99_ms,
                        l.within_20ms * 100.0
                    )?;
                    writeln!(f, "{}", l.rss)?;
                }
                None => writeln!(f, "latency: not measured")?,
            }
            if let Some((events, seconds)) = w.rebuild {
                writeln!(
                    f,
                    "restart's rebuild of inline detection: {events} output events re-read and cut again in {seconds:.2} s = {:.0} events/s",
                    events as f64 / seconds.max(1e-9)
                )?;
            }
        }
        writeln!(
            f,
            "peak RSS (VmHWM): {}",
            self.peak_rss_kb.map_or("n/a".to_string(), |kb| format!(
                "{:.1} MB",
                kb as f64 / 1024.0
            ))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates_within_the_bucket_like_prometheus() {
        // 100 samples: 50 ≤ 1 ms, 40 in (1, 2] ms, 10 in (2, 4] ms.
        let buckets = [(0.001, 50), (0.002, 90), (0.004, 100), (f64::INFINITY, 100)];
        assert!((histogram_quantile(0.5, &buckets) - 0.001).abs() < 1e-12);
        // Rank 70 is halfway through the second bucket.
        assert!((histogram_quantile(0.7, &buckets) - 0.0015).abs() < 1e-12);
        // Rank 99 is 9/10 through the third.
        assert!((histogram_quantile(0.99, &buckets) - 0.0038).abs() < 1e-12);
    }

    #[test]
    fn quantile_in_the_overflow_bucket_is_the_highest_bound() {
        let buckets = [(0.01, 1), (0.02, 1), (f64::INFINITY, 10)];
        assert_eq!(histogram_quantile(0.99, &buckets), 0.02);
        assert!(histogram_quantile(0.5, &[(0.01, 0), (f64::INFINITY, 0)]).is_nan());
    }

    #[test]
    fn latency_report_counts_only_the_phase() {
        let before = [(0.02, 10), (0.05, 10), (f64::INFINITY, 10)];
        let after = [(0.02, 100), (0.05, 110), (f64::INFINITY, 110)];
        let report = latency_report(&before, &after, 5000.0, 4990.0, RssTrace::default());
        assert_eq!(report.samples, 100);
        assert!((report.within_20ms - 0.9).abs() < 1e-12);
    }

    /// The whole benchmark over the embedded broker on a small generated workload: every
    /// record produced is settled, and the latency phase observes every one of its records.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_record_is_settled_through_the_embedded_broker() {
        let options = KafkaBenchOptions {
            shared_data: PathBuf::from("/nonexistent/citypulse-bench-data"),
            messages: 400,
            rate: 400.0,
            latency_seconds: 0.5,
            workload: WorkloadChoice::Short,
            ..KafkaBenchOptions::default()
        };
        let report = run(&options).await.expect("bench runs");
        let short = &report.workloads[0];
        assert_eq!(short.completed, 400);
        assert!(short.settled < 400, "{}", short.settled);
        let latency = short.latency.as_ref().expect("latency measured");
        assert_eq!(latency.samples, 200);
        assert!(latency.p50_ms.is_finite() && latency.p99_ms >= latency.p50_ms);
        // One sample when the phase starts and one when it ends, at least.
        assert!(latency.rss.samples_kb.len() >= 2, "{:?}", latency.rss);
        assert!(latency.rss.max_kb().is_some_and(|kb| kb > 10_000));
    }

    /// The same with detection inside stage 1: nothing waits on a stage 2, and the restart's
    /// rebuild re-reads every event the run wrote.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inline_detection_settles_every_record_and_its_rebuild_rereads_them() {
        let options = KafkaBenchOptions {
            shared_data: PathBuf::from("/nonexistent/citypulse-bench-data"),
            messages: 400,
            rate: 400.0,
            latency_seconds: 0.5,
            workload: WorkloadChoice::Short,
            inline_detection: true,
            ..KafkaBenchOptions::default()
        };
        let report = run(&options).await.expect("bench runs");
        let short = &report.workloads[0];
        assert_eq!(short.completed, 400);
        assert_eq!(
            short.latency.as_ref().expect("latency measured").samples,
            200
        );
        let (events, _) = short.rebuild.expect("rebuild measured");
        assert_eq!(events, 600, "every event of both phases re-read");
        assert!(report.to_string().contains("detection: inline"));
    }

    #[test]
    fn rss_trace_compares_the_last_quarter_with_the_second() {
        let mut trace = RssTrace {
            interval: RSS_SAMPLE_EVERY,
            samples_kb: Vec::new(),
        };
        assert_eq!(trace.late_growth_kb(), None);
        assert_eq!(trace.to_string(), "RSS: not sampled");
        // Warm-up 100 → 200, then flat at 200 but for one spike: steady.
        for kb in [100, 150, 200, 200, 200, 900, 200, 200] {
            trace.push(kb);
        }
        assert_eq!(trace.late_growth_kb(), Some(0.0));
        assert_eq!(trace.max_kb(), Some(900));
        // Still growing at the end: the last quarter (300, 400) against the second (200, 200).
        trace.samples_kb = vec![100, 150, 200, 200, 250, 250, 300, 400];
        assert_eq!(trace.late_growth_kb(), Some(150.0));
        assert!(trace.to_string().contains("+0.1 MB"), "{trace}");
    }

    #[test]
    fn rss_trace_stays_bounded_and_spans_the_whole_run() {
        let mut trace = RssTrace {
            interval: RSS_SAMPLE_EVERY,
            samples_kb: Vec::new(),
        };
        for kb in 0..(MAX_RSS_SAMPLES as u64 + 1) {
            trace.push(kb);
        }
        assert_eq!(trace.samples_kb.len(), MAX_RSS_SAMPLES / 2 + 1);
        assert_eq!(trace.interval, RSS_SAMPLE_EVERY * 2);
        assert_eq!(trace.samples_kb.first(), Some(&0));
        assert_eq!(trace.samples_kb.last(), Some(&(MAX_RSS_SAMPLES as u64)));
    }

    #[test]
    fn defaults_are_the_command_lines_and_client_settings_parse() {
        let options = KafkaBenchOptions::default();
        assert_eq!((options.messages, options.partitions), (50_000, 1));
        assert_eq!((options.rate, options.latency_seconds), (5_000.0, 10.0));
        assert_eq!(options.seed, 7);
        assert_eq!(
            parse_key_value(" linger.ms = 1"),
            Ok(("linger.ms".to_string(), "1".to_string()))
        );
        assert!(parse_key_value("linger.ms").is_err());
        assert!(parse_key_value("=1").is_err());
    }

    #[test]
    fn process_cpu_time_is_read() {
        let cpu = process_cpu_seconds();
        assert!(cpu.is_finite() && cpu >= 0.0, "{cpu}");
    }
}
