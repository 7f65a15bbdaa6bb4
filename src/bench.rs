//! `citypulse bench`: the end-to-end throughput benchmark behind the README's performance
//! section.
//!
//! It sits beside `process` rather than in the flow: it builds records in memory, runs them
//! through the same [`Stages::process`] path `process` uses (decode → mask → segment →
//! classify → route), then in-line detection and JSON serialisation, exactly as `process` does
//! but without file I/O, and compares the rate with raw jieba-rs `cut` (HMM on) on the same
//! texts in the same run. Segmenting Chinese is the one cost citypulse cannot avoid, so that
//! ratio and the per-message time outside segmentation are the figures that matter.
//!
//! Two workloads: long citizen messages (the raw texts of `../shared/data/routing` as 12345
//! work orders, ~1.2 KB each) and short Weibo posts (`../shared/data/sentiment`, ~60
//! characters). Where the shared data is absent both come from the demo generator. Each is
//! measured on one thread, then on two threads with one partition each, as `run` gives each
//! partition its own worker.

use crate::assets;
use crate::channels::{self, Decoded};
use crate::config::PipelineConfig;
use crate::demo::generator::{GeneratorConfig, TrafficGenerator, DISTRICTS};
use crate::detect::{DetectConfig, Detector};
use crate::detection::detect_input;
use crate::event::Channel;
use crate::metrics::{Metrics, Stage};
use crate::pipeline::china_standard_time;
use crate::stages::{Outcome, Stages};
use crate::text::mask::AuthorHasher;
use chrono::{DateTime, Duration as TimeDelta, FixedOffset, TimeZone, Utc};
use jieba_rs::Jieba;
use std::fmt;
use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Distinct records per workload: enough that caches see realistic variety, few enough that
/// the inputs (a few MB) do not blur the peak-RSS figure.
const MAX_RECORDS: usize = 4000;
/// Long messages are at least this many bytes (the issue's ~1.2 KB citizen messages).
const LONG_MIN_BYTES: usize = 600;
/// Short posts: between these many characters (the issue's ~60-character Weibo posts).
const SHORT_CHARS: std::ops::RangeInclusive<usize> = 20..=110;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot load the stages: {0}")]
    Assets(#[from] assets::AssetError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("workload {0}: no usable message")]
    Empty(&'static str),
    #[error("a benchmark thread panicked")]
    Thread,
}

/// What to measure and for how long.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The shared data directory (`../shared/data`); generated texts when it is absent.
    pub shared_data: PathBuf,
    /// Wall time of each measurement (raw jieba, one thread, two threads), per workload.
    pub seconds: f64,
    /// Seed of the generator used when the shared data is absent.
    pub seed: u64,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            shared_data: PathBuf::from("../shared/data"),
            seconds: 3.0,
            seed: 7,
        }
    }
}

/// Records of one channel, and the text in them that citypulse segments.
pub(crate) struct Workload {
    pub(crate) name: &'static str,
    pub(crate) source: String,
    pub(crate) channel: Channel,
    /// The distinct (title, text) pairs records are made of, cycled.
    items: Vec<(Option<String>, String)>,
    /// The same pairs as JSON string literals (quoted and escaped), written into each record.
    items_json: Vec<(String, String)>,
    records: Vec<Vec<u8>>,
    /// Title and text of each record as raw jieba gets them.
    texts: Vec<String>,
}

impl Workload {
    fn new(
        name: &'static str,
        source: String,
        channel: Channel,
        items: Vec<(Option<String>, String)>,
    ) -> Self {
        let items_json = items
            .iter()
            .map(|(title, body)| {
                let literal =
                    |text: &str| serde_json::to_string(text).expect("a string always serialises");
                (
                    literal(title.as_deref().unwrap_or(DEFAULT_TITLE)),
                    literal(body),
                )
            })
            .collect();
        let mut workload = Workload {
            name,
            source,
            channel,
            items,
            items_json,
            records: Vec::with_capacity(MAX_RECORDS),
            texts: Vec::with_capacity(MAX_RECORDS),
        };
        for i in 0..MAX_RECORDS {
            workload.records.push(workload.record(i, time_of(i)));
            let (title, body) = workload.item(i);
            workload.texts.push(match title {
                Some(title) => format!("{title}。{body}"),
                None => body.to_string(),
            });
        }
        workload
    }

    /// Distinct texts among the records: the records cycle through the items, or take the
    /// first of them when there are more items than records.
    fn distinct_texts(&self) -> usize {
        self.items.len().min(self.records.len())
    }

    fn item(&self, i: usize) -> (Option<&str>, &str) {
        let (title, body) = &self.items[i % self.items.len()];
        (title.as_deref(), body)
    }

    /// Record `i` of the workload as its channel's wire format, with event time `at`: a 12345
    /// work order for the long workload, a Weibo status for the short one.
    ///
    /// Written from the text's JSON literal and the record's numbers, without building a
    /// `serde_json::Value`: `bench-kafka` makes its records as they go out, on the core it
    /// measures, and building each through a `Value` cost about 35 allocations a record there.
    pub(crate) fn record(&self, i: usize, at: DateTime<FixedOffset>) -> Vec<u8> {
        let (title, body) = &self.items_json[i % self.items_json.len()];
        let mut out = Vec::with_capacity(title.len() + body.len() + 320);
        let written = match self.channel {
            Channel::Weibo => {
                let id = 5_000_000_000_000_000u64 + i as u64;
                write!(
                    out,
                    r#"{{"id":{id},"idstr":"{id}","created_at":"{created}","text":{body},"user":{{"idstr":"{user}","screen_name":"市民{screen}","location":"湖南 长沙","followers_count":{followers},"verified":false}},"reposts_count":{reposts},"comments_count":{comments},"attitudes_count":{attitudes}}}"#,
                    created = at.format("%a %b %d %H:%M:%S %z %Y"),
                    user = 1_000_000_000 + (i * 7919) % 100_000,
                    screen = i % 997,
                    followers = (i * 37) % 5000,
                    reposts = i % 7,
                    comments = i % 11,
                    attitudes = i % 23,
                )
            }
            _ => write!(
                out,
                r#"{{"工单编号":"B{i:07}","来电时间":"{called}","来电号码":"139{phone:08}","诉求类型":"投诉","诉求标题":{title},"诉求内容":{body},"所属区县":"{district}"}}"#,
                called = at.format("%Y-%m-%d %H:%M:%S"),
                phone = (i * 7919) % 100_000_000,
                district = DISTRICTS[i % DISTRICTS.len()].name,
            ),
        };
        written.expect("writing into a Vec cannot fail");
        out
    }
}

/// The title of a work order whose text came without one.
const DEFAULT_TITLE: &str = "市民来电反映问题";

/// Mean microseconds per message of each stage on the one-thread run.
#[derive(Debug, Clone, Default)]
pub struct StageTimes {
    pub decode: f64,
    pub mask: f64,
    pub segment: f64,
    pub classify: f64,
    pub route: f64,
    pub detect: f64,
    pub serialize: f64,
}

/// The figures of one workload.
#[derive(Debug, Clone)]
pub struct WorkloadReport {
    pub name: &'static str,
    /// Where the texts came from.
    pub source: String,
    /// Records the measurements cycle through.
    pub records: usize,
    /// Distinct (title, text) pairs those records are made of: the long sample has a few
    /// hundred, so the token caches are warm after the first pass, as in a live stream whose
    /// vocabulary repeats.
    pub distinct_texts: usize,
    pub mean_text_bytes: f64,
    pub mean_text_chars: f64,
    pub jieba_msgs_per_sec: f64,
    pub jieba_mb_per_sec: f64,
    pub process_msgs_per_sec: f64,
    pub process_mb_per_sec: f64,
    /// Per-message latency of the whole path on one thread, microseconds.
    pub p50_us: f64,
    pub p99_us: f64,
    pub stages: StageTimes,
    pub two_thread_msgs_per_sec: f64,
}

impl WorkloadReport {
    /// citypulse's rate over raw jieba's on the same texts.
    pub fn ratio_to_jieba(&self) -> f64 {
        self.process_msgs_per_sec / self.jieba_msgs_per_sec
    }

    /// Microseconds per message spent outside jieba's own `cut`: the whole path's time less
    /// raw jieba's on the same text.
    pub fn overhead_us(&self) -> f64 {
        1e6 / self.process_msgs_per_sec - 1e6 / self.jieba_msgs_per_sec
    }

    /// Two threads over one.
    pub fn speedup(&self) -> f64 {
        self.two_thread_msgs_per_sec / self.process_msgs_per_sec
    }
}

#[derive(Debug, Clone)]
pub struct BenchReport {
    pub workloads: Vec<WorkloadReport>,
    /// VmRSS once every model is loaded and the inputs are built, kB.
    pub rss_loaded_kb: Option<u64>,
    /// VmHWM at the end, kB.
    pub peak_rss_kb: Option<u64>,
    pub threads_available: usize,
}

/// Runs both workloads and returns the figures; progress goes to stderr.
pub fn run(options: &BenchOptions) -> Result<BenchReport, BenchError> {
    let config = PipelineConfig::default();
    let stages = assets::load_stages(
        &config,
        AuthorHasher::new(b"bench-key-not-for-real-output"),
        Metrics::new(),
    )?;
    let workloads = [
        long_workload(&options.shared_data, options.seed)?,
        short_workload(&options.shared_data, options.seed)?,
    ];
    let jieba = Jieba::new();
    let rss_loaded_kb = proc_status_kb("VmRSS");
    let seconds = Duration::from_secs_f64(options.seconds.max(0.1));
    let mut reports = Vec::new();
    for workload in &workloads {
        eprintln!(
            "bench: {} ({} records of {} distinct texts from {})",
            workload.name,
            workload.records.len(),
            workload.distinct_texts(),
            workload.source
        );
        reports.push(measure(&stages, &config, &jieba, workload, seconds)?);
    }
    Ok(BenchReport {
        workloads: reports,
        rss_loaded_kb,
        peak_rss_kb: proc_status_kb("VmHWM"),
        threads_available: std::thread::available_parallelism().map_or(1, |n| n.get()),
    })
}

fn measure(
    stages: &Stages,
    config: &PipelineConfig,
    jieba: &Jieba,
    workload: &Workload,
    seconds: Duration,
) -> Result<WorkloadReport, BenchError> {
    let n = workload.texts.len() as f64;
    let text_bytes: usize = workload.texts.iter().map(String::len).sum();
    let text_chars: usize = workload.texts.iter().map(|t| t.chars().count()).sum();

    // Warm-up: page in the dictionaries and models, size the thread-local buffers.
    let mut worker = Worker::new(stages, config);
    for record in &workload.records {
        worker.one(workload.channel, record, 1);
    }

    let (messages, bytes, elapsed) = until(seconds, workload.texts.len(), |i| {
        let text = &workload.texts[i];
        black_box(jieba.cut(black_box(text), true));
        text.len()
    });
    let jieba_rate = messages as f64 / elapsed;
    let jieba_mb = bytes as f64 / elapsed / 1e6;

    let before = stage_sums(&stages.metrics);
    let mut worker = Worker::new(stages, config);
    let mut latencies: Vec<u32> = Vec::new();
    let (messages, bytes, elapsed) = until(seconds, workload.records.len(), |i| {
        let started = Instant::now();
        worker.one(workload.channel, &workload.records[i], i);
        latencies.push(u32::try_from(started.elapsed().as_nanos()).unwrap_or(u32::MAX));
        workload.texts[i].len()
    });
    let after = stage_sums(&stages.metrics);
    let process_rate = messages as f64 / elapsed;
    let per = |k: usize| (after[k] - before[k]) * 1e6 / messages as f64;
    let stage_times = StageTimes {
        decode: per(0),
        mask: per(1),
        segment: per(2),
        classify: per(3),
        route: per(4),
        detect: worker.detect.as_secs_f64() * 1e6 / messages as f64,
        serialize: worker.serialize.as_secs_f64() * 1e6 / messages as f64,
    };
    latencies.sort_unstable();
    let quantile = |q: f64| {
        let at = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(at).map_or(0.0, |&ns| f64::from(ns) / 1e3)
    };

    let two = two_threads(stages, config, workload, seconds)?;
    Ok(WorkloadReport {
        name: workload.name,
        source: workload.source.clone(),
        records: workload.records.len(),
        distinct_texts: workload.distinct_texts(),
        mean_text_bytes: text_bytes as f64 / n,
        mean_text_chars: text_chars as f64 / n,
        jieba_msgs_per_sec: jieba_rate,
        jieba_mb_per_sec: jieba_mb,
        process_msgs_per_sec: process_rate,
        process_mb_per_sec: bytes as f64 / elapsed / 1e6,
        p50_us: quantile(0.50),
        p99_us: quantile(0.99),
        stages: stage_times,
        two_thread_msgs_per_sec: two,
    })
}

/// Calls `step(i)` for i cycling over `0..len` until `seconds` have passed; returns the
/// calls, the sum of what `step` returned, and the seconds the calling thread spent on a CPU
/// (wall seconds where the kernel does not say). CPU time rather than wall time: on a shared
/// machine other processes' work would otherwise count as ours. The clock is read every 64
/// calls so that reading it costs nothing measurable.
fn until(seconds: Duration, len: usize, mut step: impl FnMut(usize) -> usize) -> (u64, u64, f64) {
    let started = Instant::now();
    let cpu_started = thread_cpu_ns();
    let (mut calls, mut total, mut i) = (0u64, 0u64, 0usize);
    loop {
        for _ in 0..64 {
            total += step(i) as u64;
            calls += 1;
            i = (i + 1) % len;
        }
        let elapsed = started.elapsed();
        if elapsed >= seconds {
            let spent = match (cpu_started, thread_cpu_ns()) {
                (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e9,
                _ => elapsed.as_secs_f64(),
            };
            return (calls, total, spent);
        }
    }
}

/// Nanoseconds the calling thread has run on a CPU (`/proc/thread-self/schedstat`, Linux).
fn thread_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// Partition-parallel: two threads, each with its own detector and output buffer, sharing the
/// read-only stages, as `run`'s per-partition workers do.
fn two_threads(
    stages: &Stages,
    config: &PipelineConfig,
    workload: &Workload,
    seconds: Duration,
) -> Result<f64, BenchError> {
    // Each thread replays the whole workload, as two partitions with the same traffic would:
    // giving each half the records would also halve the events its detector holds between
    // replays and make a thread cheaper than the one-thread run it is compared with.
    let partitions: Vec<Vec<&[u8]>> = (0..2)
        .map(|_| workload.records.iter().map(Vec::as_slice).collect())
        .collect();
    let results: Vec<Option<(u64, f64)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = partitions
            .iter()
            .map(|records| {
                scope.spawn(move || {
                    let mut worker = Worker::new(stages, config);
                    let (calls, _, elapsed) = until(seconds, records.len(), |i| {
                        worker.one(workload.channel, records[i], i);
                        0
                    });
                    (calls, elapsed)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().ok()).collect()
    });
    let mut calls = 0;
    let mut elapsed = 0f64;
    for result in results {
        let (c, e) = result.ok_or(BenchError::Thread)?;
        calls += c;
        elapsed = elapsed.max(e);
    }
    Ok(calls as f64 / elapsed)
}

/// One worker of the `process` path: stages, in-line detection, serialisation into a buffer
/// that stands in for the output file.
struct Worker<'a> {
    stages: &'a Stages,
    detector: Detector,
    output: Vec<u8>,
    cst: FixedOffset,
    detect_config: DetectConfig,
    detect: Duration,
    serialize: Duration,
}

impl<'a> Worker<'a> {
    fn new(stages: &'a Stages, config: &PipelineConfig) -> Self {
        Worker {
            stages,
            detector: Detector::new(config.detect.clone()),
            detect_config: config.detect.clone(),
            output: Vec::with_capacity(64 * 1024),
            cst: china_standard_time(),
            detect: Duration::ZERO,
            serialize: Duration::ZERO,
        }
    }

    /// What `process_lines` does with one record, minus reading the line. Record `i == 0`
    /// starts a new pass over the inputs, whose event times start over: detection starts
    /// afresh too, as a replay of that stretch of time would.
    fn one(&mut self, channel: Channel, record: &[u8], i: usize) {
        if i == 0 {
            self.detector = Detector::new(self.detect_config.clone());
        }
        let received_at = Utc::now().with_timezone(&self.cst);
        let outcome = self.stages.process(channel, record, None, received_at);
        let started = Instant::now();
        let Outcome::Event { mut event, tokens } = outcome else {
            return;
        };
        let observation = self.detector.observe(&detect_input(&event, &tokens));
        event.incident_id = observation.incident_id;
        let detected = Instant::now();
        self.detect += detected - started;
        // Writing into a Vec cannot fail; the result is ignored rather than unwrapped.
        let _ = serde_json::to_writer(&mut self.output, &*event);
        self.output.push(b'\n');
        for alert in observation.alerts {
            let _ = serde_json::to_writer(&mut self.output, &serde_json::json!({"alert": alert}));
            self.output.push(b'\n');
        }
        if self.output.len() > 1 << 20 {
            self.output.clear();
        }
        self.serialize += detected.elapsed();
    }
}

/// Sum of seconds observed per stage (decode, mask, segment, classify, route) so far.
fn stage_sums(metrics: &Metrics) -> [f64; 5] {
    let stages = [
        Stage::Decode,
        Stage::Mask,
        Stage::Segment,
        Stage::Classify,
        Stage::Route,
    ];
    stages.map(|s| {
        metrics
            .stage_duration
            .with_label_values(&[s.as_str()])
            .get_sample_sum()
    })
}

/// A `kB` field of `/proc/self/status` (Linux only; `None` elsewhere).
pub fn proc_status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

fn read(path: &Path) -> Result<Option<String>, BenchError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(BenchError::Read {
            path: path.display().to_string(),
            source,
        }),
    }
}

fn base_time() -> DateTime<FixedOffset> {
    china_standard_time()
        .with_ymd_and_hms(2026, 11, 25, 8, 0, 0)
        .single()
        .unwrap_or_else(|| Utc::now().with_timezone(&china_standard_time()))
}

/// Event time of record `i`: ten seconds apart, so detection sees a day's traffic spread
/// rather than one instant.
fn time_of(i: usize) -> DateTime<FixedOffset> {
    base_time() + TimeDelta::seconds(10 * i as i64)
}

/// Long citizen messages as 12345 work orders: title + body of the routing sample, or
/// generated reports joined until they are as long.
pub(crate) fn long_workload(shared: &Path, seed: u64) -> Result<Workload, BenchError> {
    let path = shared.join("routing/routing_sample_raw.tsv");
    let (source, pairs) = match read(&path)? {
        Some(data) => {
            let pairs: Vec<(String, String)> = data
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let columns: Vec<&str> = line.split('\t').collect();
                    (columns.len() >= 6).then(|| (columns[2].to_string(), columns[4].to_string()))
                })
                .filter(|(_, body)| !body.trim().is_empty())
                .collect();
            (path.display().to_string(), pairs)
        }
        None => {
            eprintln!(
                "bench: {} absent; long messages come from the demo generator",
                path.display()
            );
            let mut texts = generated_texts(Channel::Hotline12345, seed, 4000).into_iter();
            let mut pairs = Vec::new();
            while pairs.len() < 400 {
                let mut body = String::new();
                for text in texts.by_ref() {
                    body.push_str(&text);
                    if body.len() >= 1200 {
                        break;
                    }
                }
                if body.len() < LONG_MIN_BYTES {
                    break;
                }
                pairs.push(("市民来电反映问题".to_string(), body));
            }
            ("demo generator (12345 reports joined)".to_string(), pairs)
        }
    };
    if pairs.is_empty() {
        return Err(BenchError::Empty("long"));
    }
    let items = pairs
        .into_iter()
        .map(|(title, body)| (Some(title), body))
        .collect();
    Ok(Workload::new(
        "long citizen messages (12345)",
        source,
        Channel::Hotline12345,
        items,
    ))
}

/// The short-post workload of `bench`, for other benchmarks (the criterion benches).
pub struct ShortPosts {
    pub channel: Channel,
    /// The records in wire format.
    pub records: Vec<Vec<u8>>,
    /// Each record's text as raw jieba gets it.
    pub texts: Vec<String>,
}

/// The records `bench` measures short posts on (the same seed when the shared data is absent).
pub fn short_post_records(shared: &Path) -> Result<ShortPosts, BenchError> {
    let workload = short_workload(shared, BenchOptions::default().seed)?;
    Ok(ShortPosts {
        channel: workload.channel,
        records: workload.records,
        texts: workload.texts,
    })
}

/// Short Weibo posts as Weibo statuses: weibo_senti posts of about 60 characters, or
/// generated Weibo reports and chatter.
pub(crate) fn short_workload(shared: &Path, seed: u64) -> Result<Workload, BenchError> {
    let path = shared.join("sentiment/weibo_senti_train.tsv");
    let (source, posts) = match read(&path)? {
        Some(data) => {
            let posts: Vec<String> = data
                .lines()
                .skip(1)
                .filter_map(|line| line.split_once('\t').map(|(_, text)| text.trim()))
                .filter(|text| SHORT_CHARS.contains(&text.chars().count()))
                .map(str::to_string)
                .collect();
            (path.display().to_string(), posts)
        }
        None => {
            eprintln!(
                "bench: {} absent; short posts come from the demo generator",
                path.display()
            );
            (
                "demo generator (Weibo)".to_string(),
                generated_texts(Channel::Weibo, seed, MAX_RECORDS),
            )
        }
    };
    if posts.is_empty() {
        return Err(BenchError::Empty("short"));
    }
    let items = posts.into_iter().map(|post| (None, post)).collect();
    Ok(Workload::new(
        "short Weibo posts",
        source,
        Channel::Weibo,
        items,
    ))
}

/// Texts of generated records of one channel (reports and chatter; what fails to decode or
/// is no report is passed over).
fn generated_texts(channel: Channel, seed: u64, count: usize) -> Vec<String> {
    let mut generator = TrafficGenerator::new(GeneratorConfig {
        seed,
        malformed_share: 0.0,
        ..GeneratorConfig::default()
    });
    (0..count)
        .filter_map(|i| {
            let record = generator.next_record_on(channel, time_of(i));
            match channels::decode(channel, &record.bytes) {
                Ok(Decoded::Report(r)) => Some(match r.title {
                    Some(title) => format!("{title}。{}", r.text),
                    None => r.text,
                }),
                _ => None,
            }
        })
        .collect()
}

fn mb(kb: Option<u64>) -> String {
    kb.map_or("n/a".to_string(), |kb| {
        format!("{:.1} MB", kb as f64 / 1024.0)
    })
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for w in &self.workloads {
            writeln!(f, "== {} ==", w.name)?;
            writeln!(
                f,
                "texts: {} records cycling {} distinct texts from {}; {:.0} bytes, {:.0} characters on average",
                w.records, w.distinct_texts, w.source, w.mean_text_bytes, w.mean_text_chars
            )?;
            writeln!(
                f,
                "raw jieba-rs cut (HMM), 1 thread: {:>9.0} msg/s  {:>6.1} MB/s",
                w.jieba_msgs_per_sec, w.jieba_mb_per_sec
            )?;
            writeln!(
                f,
                "citypulse process,     1 thread:  {:>9.0} msg/s  {:>6.1} MB/s  = {:.2} x raw jieba",
                w.process_msgs_per_sec,
                w.process_mb_per_sec,
                w.ratio_to_jieba()
            )?;
            writeln!(
                f,
                "citypulse process,     2 threads: {:>9.0} msg/s  = {:.2} x one thread",
                w.two_thread_msgs_per_sec,
                w.speedup()
            )?;
            writeln!(
                f,
                "per message: {:.1} us outside jieba's cut; latency p50 {:.1} us, p99 {:.1} us",
                w.overhead_us(),
                w.p50_us,
                w.p99_us
            )?;
            let s = &w.stages;
            writeln!(
                f,
                "stages, us/msg: decode {:.2}  mask {:.2}  segment {:.2}  classify {:.2}  \
                 route {:.2}  detect {:.2}  serialize {:.2}",
                s.decode, s.mask, s.segment, s.classify, s.route, s.detect, s.serialize
            )?;
            writeln!(f)?;
        }
        writeln!(
            f,
            "RSS with all models loaded: {}; peak RSS (VmHWM): {}; {} hardware threads",
            mb(self.rss_loaded_kb),
            mb(self.peak_rss_kb),
            self.threads_available
        )
    }
}

/// Writes the report to `out` (the command prints it on stdout).
pub fn print(report: &BenchReport, mut out: impl Write) -> std::io::Result<()> {
    write!(out, "{report}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The record as a `serde_json::Value` would build it: what `record` must write.
    fn expected_record(
        channel: Channel,
        i: usize,
        at: DateTime<FixedOffset>,
        title: Option<&str>,
        body: &str,
    ) -> serde_json::Value {
        match channel {
            Channel::Weibo => {
                let id = 5_000_000_000_000_000u64 + i as u64;
                serde_json::json!({
                    "id": id,
                    "idstr": id.to_string(),
                    "created_at": at.format("%a %b %d %H:%M:%S %z %Y").to_string(),
                    "text": body,
                    "user": {
                        "idstr": format!("{}", 1_000_000_000 + (i * 7919) % 100_000),
                        "screen_name": format!("市民{}", i % 997),
                        "location": "湖南 长沙",
                        "followers_count": (i * 37) % 5000,
                        "verified": false,
                    },
                    "reposts_count": i % 7,
                    "comments_count": i % 11,
                    "attitudes_count": i % 23,
                })
            }
            _ => serde_json::json!({
                "工单编号": format!("B{i:07}"),
                "来电时间": at.format("%Y-%m-%d %H:%M:%S").to_string(),
                "来电号码": format!("139{:08}", (i * 7919) % 100_000_000),
                "诉求类型": "投诉",
                "诉求标题": title.unwrap_or(DEFAULT_TITLE),
                "诉求内容": body,
                "所属区县": DISTRICTS[i % DISTRICTS.len()].name,
            }),
        }
    }

    #[test]
    fn records_are_the_json_a_value_would_give_and_decode() {
        let items = vec![
            (
                Some("路灯\"不亮\"".to_string()),
                "第一行\n第二行\t反斜杠\\ 和 \u{1} 控制符".to_string(),
            ),
            (
                None,
                "雨花区砂子塘街道油烟扰民，电话13873112345".to_string(),
            ),
        ];
        for channel in [Channel::Weibo, Channel::Hotline12345] {
            let workload = Workload::new("test", "fixture".into(), channel, items.clone());
            for i in [0, 1, 2, 996, 12_345] {
                let at = time_of(i);
                let bytes = workload.record(i, at);
                let written: serde_json::Value =
                    serde_json::from_slice(&bytes).expect("the record is JSON");
                let (title, body) = &items[i % items.len()];
                assert_eq!(
                    written,
                    expected_record(channel, i, at, title.as_deref(), body),
                    "{channel:?} record {i}"
                );
                assert!(
                    matches!(channels::decode(channel, &bytes), Ok(Decoded::Report(_))),
                    "{channel:?} record {i} decodes"
                );
            }
        }
    }

    #[test]
    fn proc_status_reads_a_kb_field() {
        if cfg!(target_os = "linux") {
            let rss = proc_status_kb("VmRSS").expect("Linux has /proc/self/status");
            assert!(rss > 0);
            assert!(proc_status_kb("NoSuchField").is_none());
        }
    }

    #[test]
    fn until_cycles_and_counts() {
        let mut seen = [0u32; 3];
        let (calls, total, elapsed) = until(Duration::ZERO, 3, |i| {
            seen[i] += 1;
            2
        });
        assert_eq!(
            calls, 64,
            "one round of 64 calls before the first clock read"
        );
        assert_eq!(total, 128);
        assert!(elapsed >= 0.0);
        assert_eq!(seen, [22, 21, 21]);
    }

    #[test]
    fn generated_workloads_stand_in_for_absent_data() {
        let missing = Path::new("/nonexistent/shared/data");
        let long = long_workload(missing, 7).expect("generator texts");
        assert!(long.records.len() == MAX_RECORDS);
        let mean = long.texts.iter().map(String::len).sum::<usize>() / long.texts.len();
        assert!(mean >= LONG_MIN_BYTES, "long texts average {mean} bytes");
        let short = short_workload(missing, 7).expect("generator texts");
        let first = channels::decode(Channel::Weibo, &short.records[0]);
        assert!(matches!(first, Ok(Decoded::Report(_))), "{first:?}");
    }
}
