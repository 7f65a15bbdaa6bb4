//! Harness for the fault tests: a real out-of-process Kafka broker (tansu, SQLite storage) and
//! the `citypulse run` binary as a child process, plus what the tests need around them —
//! producing inputs and remembering where each landed, reading every output back with the input
//! it came from, committed offsets, `/readyz`, signals and resident memory.
//!
//! Every child process lives in a guard that kills it on drop, so a failing test leaves nothing
//! behind. Every wait has a deadline and says what it saw when it runs out.
#![allow(dead_code)]

use citypulse::config::PipelineConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Keys the binary refuses to start without (at least 16 bytes each).
pub const AUTHOR_KEY: &str = "fault-test-author-key-0123456789";
pub const TOKEN: &str = "fault-test-console-token-0123456789";

/// Partitions per input topic: several, so a restart resumes many commit points at once.
pub const INPUT_PARTITIONS: i32 = 3;

/// The tansu binary: on PATH or in ~/.cargo/bin. The fault tests cannot run without it.
pub fn tansu_binary() -> PathBuf {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("tansu"))
                .collect()
        })
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".cargo/bin/tansu"));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the fault tests need the `tansu` Kafka broker, found neither on PATH nor in \
             ~/.cargo/bin; install it with `cargo install tansu --locked --features libsql` \
             (about 8 minutes)"
            )
        })
}

pub use crate::common::process::free_port;

/// Send a signal to a process we started.
pub fn send_signal(pid: u32, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("child pids fit pid_t");
    // SAFETY: kill(2) with a pid of our own child and a valid signal number has no memory effects.
    let result = unsafe { libc::kill(pid, signal) };
    assert_eq!(
        result,
        0,
        "kill({pid}, {signal}) failed: {}",
        std::io::Error::last_os_error()
    );
}

/// Poll `child` until it exits or `timeout` passes.
fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(error) => panic!("cannot wait for child {}: {error}", child.id()),
        }
    }
}

/// A tansu broker process with its SQLite file in `dir`. Restarts reuse port and storage.
pub struct Broker {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    starts: usize,
}

/// The test's working directory (broker database, pipeline file, every log). Removed at the
/// end unless `CITYPULSE_KEEP_TEST_DIR` is set, for reading the broker's and citypulse's logs
/// after a failure; the path is printed either way.
pub fn test_dir() -> tempfile::TempDir {
    let keep = std::env::var_os("CITYPULSE_KEEP_TEST_DIR").is_some();
    let dir = tempfile::Builder::new()
        .prefix("citypulse-fault-")
        .disable_cleanup(keep)
        .tempdir()
        .expect("a temporary directory");
    eprintln!(
        "test directory: {}{}",
        dir.path().display(),
        if keep { " (kept)" } else { "" }
    );
    dir
}

impl Broker {
    /// Start a broker on a free port and wait until it answers metadata requests.
    pub fn start(dir: &Path) -> Broker {
        let mut broker = Broker {
            dir: dir.to_path_buf(),
            port: free_port(),
            child: None,
            starts: 0,
        };
        broker.spawn();
        broker
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = File::create(self.dir.join(format!("tansu-{}.log", self.starts)))
            .expect("broker log file can be created in the test directory");
        let child = Command::new(tansu_binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(&self.dir)
            // `CITYPULSE_TANSU_LOG=warn,tansu_broker::coordinator=info` shows group membership.
            .env(
                "RUST_LOG",
                std::env::var("CITYPULSE_TANSU_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle clones"))
            .stderr(log)
            .spawn()
            .expect("tansu starts");
        self.child = Some(child);
        self.starts += 1;
        self.wait_answering(Duration::from_secs(30));
        self.index_headers();
    }

    /// tansu 0.6 reads each fetched record's headers with a query that scans the whole
    /// `header` table (its `header_fetch.sql` filters on `(topition, offset_id)`, which no
    /// index covers). Every citypulse output carries headers, so a fetch costs the number of
    /// headers ever written per record returned: after 100,000 outputs it serves ~200 records/s
    /// and, its storage busy, stops answering heartbeats and metadata in time — groups then never
    /// settle. The index changes no result, only the query plan (~350× faster fetches measured).
    /// tansu creates its schema before it answers, so the table exists by now.
    fn index_headers(&self) {
        let db = self.dir.join("tansu.db");
        let connection = rusqlite::Connection::open(&db)
            .unwrap_or_else(|e| panic!("open tansu's database {}: {e}", db.display()));
        connection
            .busy_timeout(Duration::from_secs(10))
            .expect("busy timeout");
        connection
            .execute_batch(
                "create index if not exists citypulse_test_header_record \
                 on header (topition, offset_id);",
            )
            .unwrap_or_else(|e| panic!("index tansu's header table in {}: {e}", db.display()));
    }

    /// Wait until a metadata request succeeds.
    fn wait_answering(&mut self, timeout: Duration) {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("log_level", "0")
            .create()
            .expect("probe client");
        let deadline = Instant::now() + timeout;
        loop {
            if consumer
                .fetch_metadata(None, Duration::from_millis(500))
                .is_ok()
            {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "tansu exited with {status} at start; its log:\n{}",
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "tansu on port {} did not answer within {timeout:?}; its log:\n{}",
                self.port,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stop the broker with `signal` and wait for it to be gone.
    pub fn stop(&mut self, signal: libc::c_int) {
        let mut child = self.child.take().expect("broker is running");
        send_signal(child.id(), signal);
        if wait_exit(&mut child, Duration::from_secs(15)).is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start again on the same port and storage.
    pub fn restart(&mut self) {
        self.spawn();
    }

    pub fn log_tail(&self) -> String {
        let path = self
            .dir
            .join(format!("tansu-{}.log", self.starts.saturating_sub(1)));
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The pipeline file the tests run: pipelines/city.toml with the broker, the listen address
/// and the given `[section] key = value` overrides, written to `dir`.
pub fn write_pipeline(dir: &Path, overrides: &[(&str, &str, toml::Value)]) -> PathBuf {
    let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/city.toml");
    let text = std::fs::read_to_string(&reference).expect("pipelines/city.toml is readable");
    let mut table: toml::Table = text.parse().expect("pipelines/city.toml is TOML");
    for (section, key, value) in overrides {
        table
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .unwrap_or_else(|| panic!("[{section}] is a table"))
            .insert(key.to_string(), value.clone());
    }
    // librdkafka's debug contexts (e.g. `cgrp,consumer`) in citypulse's clients, for reading
    // a failure's group protocol in the kept test directory's logs.
    if let Ok(debug) = std::env::var("CITYPULSE_TEST_RDKAFKA_DEBUG") {
        let kafka = table
            .entry("kafka".to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .expect("[kafka] is a table");
        kafka
            .entry("client".to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .expect("[kafka.client] is a table")
            .insert("debug".to_string(), toml::Value::String(debug));
    }
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, toml::to_string(&table).expect("table serialises"))
        .expect("pipeline file written");
    PipelineConfig::load(&path).unwrap_or_else(|e| panic!("test pipeline invalid: {e}"));
    path
}

/// Create every topic of `config`: inputs with [`INPUT_PARTITIONS`], outputs with two.
pub async fn create_topics(bootstrap: &str, config: &PipelineConfig) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let mut topics: Vec<(String, i32)> = config
        .input_topics()
        .into_iter()
        .map(|(_, topic)| (topic, INPUT_PARTITIONS))
        .collect();
    let kafka = &config.kafka;
    for topic in [
        &kafka.routed_topic,
        &kafka.triage_topic,
        &kafka.ignored_topic,
        &kafka.dlq_topic,
        &kafka.events_topic,
        &kafka.alerts_topic,
    ] {
        topics.push((topic.clone(), 2));
    }
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    let results = admin
        .create_topics(
            &new,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create_topics request answered");
    for result in results {
        if let Err((topic, code)) = result {
            panic!("cannot create topic {topic}: {code}");
        }
    }
}

/// Where an input record landed: identifies it in every output (event `source`, DLQ headers).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceKey {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// What an input should become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// An event with this id on routed, triage or ignored.
    Event(String),
    /// A dead letter with this `citypulse.reason` (any reason when `None`).
    DeadLetter(Option<&'static str>),
}

/// One input to produce.
pub struct Input {
    pub topic: String,
    /// A fixed partition, for tests that need records in order; else the partitioner's choice.
    pub partition: Option<i32>,
    pub payload: Vec<u8>,
    pub expect: Expect,
}

pub fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("message.max.bytes", "2000000")
        .set("queue.buffering.max.messages", "200000")
        // Retry for ever: a test producer keeps its records through a broker outage.
        .set("message.timeout.ms", "0")
        .create()
        .expect("producer")
}

/// Produce `inputs` in order and return where each landed, with what it should become.
pub async fn produce(producer: &FutureProducer, inputs: Vec<Input>) -> Vec<(SourceKey, Expect)> {
    let mut landed = Vec::with_capacity(inputs.len());
    for chunk in inputs.chunks(5000) {
        let mut pending = Vec::with_capacity(chunk.len());
        for input in chunk {
            let delivery = loop {
                let mut record = FutureRecord::<(), _>::to(&input.topic).payload(&input.payload);
                if let Some(partition) = input.partition {
                    record = record.partition(partition);
                }
                match producer.send_result(record) {
                    Ok(delivery) => break delivery,
                    Err((error, _)) => {
                        // Queue full: let acknowledgements drain it.
                        assert!(
                            matches!(
                                error,
                                rdkafka::error::KafkaError::MessageProduction(
                                    rdkafka::types::RDKafkaErrorCode::QueueFull
                                )
                            ),
                            "produce to {} refused: {error}",
                            input.topic
                        );
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            };
            pending.push((input, delivery));
        }
        for (input, delivery) in pending {
            let (partition, offset) = match delivery.await {
                Ok(Ok(delivered)) => (delivered.partition, delivered.offset),
                Ok(Err((error, _))) => panic!("input to {} not acknowledged: {error}", input.topic),
                Err(_) => panic!("producer dropped a delivery to {}", input.topic),
            };
            landed.push((
                SourceKey {
                    topic: input.topic.clone(),
                    partition,
                    offset,
                },
                input.expect.clone(),
            ));
        }
    }
    landed
}

/// One message on an output topic, with the input it came from.
#[derive(Debug, Clone)]
pub struct Output {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
    /// From the event's `source` or the dead letter's `citypulse.source.*` headers.
    pub source: Option<SourceKey>,
    /// The event's `id` (not for dead letters).
    pub event_id: Option<String>,
}

fn source_of(
    topic: &str,
    dlq: &str,
    payload: &[u8],
    headers: &BTreeMap<String, String>,
) -> (Option<SourceKey>, Option<String>) {
    if topic == dlq {
        let source = (|| {
            Some(SourceKey {
                topic: headers.get("citypulse.source.topic")?.clone(),
                partition: headers.get("citypulse.source.partition")?.parse().ok()?,
                offset: headers.get("citypulse.source.offset")?.parse().ok()?,
            })
        })();
        return (source, None);
    }
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return (None, None);
    };
    // The internal topic wraps the event: {"event": {...}, "tokens": [...]}.
    let json = json.get("event").cloned().unwrap_or(json);
    let source = (|| {
        let source = json.get("source")?;
        Some(SourceKey {
            topic: source.get("topic")?.as_str()?.to_string(),
            partition: i32::try_from(source.get("partition")?.as_i64()?).ok()?,
            offset: source.get("offset")?.as_i64()?,
        })
    })();
    let id = json.get("id").and_then(|v| v.as_str()).map(str::to_string);
    (source, id)
}

/// Reads output topics from the beginning, up to their high watermarks, on demand. Keeps
/// everything it read, so the test can look at outputs as they appeared over the run.
pub struct OutputReader {
    consumer: BaseConsumer,
    dlq: String,
    /// Next offset to read per (topic, partition).
    positions: BTreeMap<(String, i32), i64>,
    pub outputs: Vec<Output>,
}

impl OutputReader {
    pub fn new(bootstrap: &str, topics: &[&str], dlq: &str) -> OutputReader {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "fault-test-reader")
            .set("enable.auto.commit", "false")
            .set("fetch.max.bytes", "4000000")
            .create()
            .expect("reader");
        let metadata = consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .expect("metadata for the output topics");
        let mut list = TopicPartitionList::new();
        let mut positions = BTreeMap::new();
        for topic in topics {
            let meta = metadata
                .topics()
                .iter()
                .find(|t| t.name() == *topic)
                .unwrap_or_else(|| panic!("output topic {topic} exists"));
            for partition in meta.partitions() {
                list.add_partition_offset(topic, partition.id(), Offset::Beginning)
                    .expect("partition added");
                positions.insert((topic.to_string(), partition.id()), 0);
            }
        }
        consumer.assign(&list).expect("reader assigned");
        OutputReader {
            consumer,
            dlq: dlq.to_string(),
            positions,
            outputs: Vec::new(),
        }
    }

    /// How many of `wanted` have no output read so far.
    pub fn missing(&self, wanted: &BTreeSet<&SourceKey>) -> usize {
        let covered: BTreeSet<&SourceKey> = self
            .outputs
            .iter()
            .filter_map(|o| o.source.as_ref())
            .collect();
        wanted.difference(&covered).count()
    }

    /// Read until the outputs cover every input in `wanted`, for at most `limit`; panics
    /// naming `after` (what happened before) and the app's log when `app` exits first or the
    /// limit passes.
    pub fn wait_covered(
        &mut self,
        wanted: &BTreeSet<&SourceKey>,
        app: &mut App,
        limit: Duration,
        after: &str,
    ) {
        let deadline = Instant::now() + limit;
        loop {
            self.catch_up(Duration::from_secs(60));
            let missing = self.missing(wanted);
            if missing == 0 {
                return;
            }
            assert!(
                app.try_exit().is_none() && Instant::now() < deadline,
                "{missing} inputs without output {after}; stderr:\n{}",
                app.stderr_tail()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Read until every partition reaches the high watermark it has now.
    pub fn catch_up(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut targets = BTreeMap::new();
        for (topic, partition) in self.positions.keys() {
            // tansu can be slow to answer metadata while it is busy: retry until the deadline.
            let high = loop {
                match self
                    .consumer
                    .fetch_watermarks(topic, *partition, Duration::from_secs(10))
                {
                    Ok((_, high)) => break high,
                    Err(e) if Instant::now() < deadline => {
                        eprintln!("watermarks of {topic}/{partition}: {e}; retrying");
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    Err(e) => panic!("watermarks of {topic}/{partition}: {e}"),
                }
            };
            targets.insert((topic.clone(), *partition), high);
        }
        while targets.iter().any(|(k, high)| self.positions[k] < *high) {
            assert!(
                Instant::now() < deadline,
                "outputs not read to their watermarks within {timeout:?}: at {:?}, want {targets:?}",
                self.positions
            );
            let Some(result) = self.consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let message = match result {
                Ok(message) => message,
                Err(error) => {
                    eprintln!("reader: {error}");
                    continue;
                }
            };
            let headers: BTreeMap<String, String> = message
                .headers()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let payload = message.payload().unwrap_or_default().to_vec();
            let (source, event_id) = source_of(message.topic(), &self.dlq, &payload, &headers);
            self.positions.insert(
                (message.topic().to_string(), message.partition()),
                message.offset() + 1,
            );
            self.outputs.push(Output {
                topic: message.topic().to_string(),
                partition: message.partition(),
                offset: message.offset(),
                key: message.key().map(<[u8]>::to_vec),
                payload,
                headers,
                source,
                event_id,
            });
        }
    }
}

/// The group's committed offsets (next offset to read) for `partitions`; absent when none.
pub fn committed(
    bootstrap: &str,
    group: &str,
    partitions: &BTreeSet<(String, i32)>,
) -> BTreeMap<(String, i32), i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("offset reader");
    let mut list = TopicPartitionList::new();
    for (topic, partition) in partitions {
        list.add_partition(topic, *partition);
    }
    let list = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .expect("committed offsets answered");
    list.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(offset) => Some(((e.topic().to_string(), e.partition()), offset)),
            _ => None,
        })
        .collect()
}

/// A running `citypulse run`, its logs in the test directory.
pub struct App {
    child: Child,
    pub listen: SocketAddr,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    http: ureq::Agent,
}

impl App {
    /// Start `citypulse run`; `tag` names its log files.
    pub fn start(dir: &Path, pipeline: &Path, bootstrap: &str, tag: &str) -> App {
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .expect("an address");
        let stdout = dir.join(format!("citypulse-{tag}.out"));
        let stderr = dir.join(format!("citypulse-{tag}.err"));
        let child = Command::new(env!("CARGO_BIN_EXE_citypulse"))
            .arg("run")
            .arg("--pipeline")
            .arg(pipeline)
            .args(["--brokers", bootstrap, "--listen", &listen.to_string()])
            .env("CITYPULSE_AUTHOR_KEY", AUTHOR_KEY)
            .env("CITYPULSE_TOKEN", TOKEN)
            .env(
                "RUST_LOG",
                // librdkafka's debug lines come through the `log` crate at debug level.
                if std::env::var_os("CITYPULSE_TEST_RDKAFKA_DEBUG").is_some() {
                    "info,librdkafka=debug,rdkafka=debug"
                } else {
                    "info"
                },
            )
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("stdout log"))
            .stderr(File::create(&stderr).expect("stderr log"))
            .spawn()
            .expect("citypulse starts");
        let http = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(3)))
                .build(),
        );
        App {
            child,
            listen,
            stdout,
            stderr,
            http,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Status and body of `GET path` (with the console token), or `None` when nothing answers.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut response = self
            .http
            .get(format!("http://{}{path}", self.listen))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .call()
            .ok()?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        Some((status, body))
    }

    /// `/readyz` status, `None` when the server does not answer.
    pub fn readyz(&self) -> Option<u16> {
        self.get("/readyz").map(|(status, _)| status)
    }

    /// Wait until `/readyz` answers `want`; returns how long it took.
    pub fn wait_readyz(&mut self, want: u16, timeout: Duration) -> Duration {
        let started = Instant::now();
        let mut last = None;
        while started.elapsed() < timeout {
            if let Some(status) = self.try_exit() {
                panic!(
                    "citypulse exited ({status}) while waiting for /readyz {want}; stderr:\n{}",
                    self.stderr_tail()
                );
            }
            last = self.get("/readyz");
            if last.as_ref().map(|(s, _)| *s) == Some(want) {
                return started.elapsed();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "/readyz did not answer {want} within {timeout:?}; last answer {last:?}; stderr:\n{}",
            self.stderr_tail()
        );
    }

    pub fn signal(&self, signal: libc::c_int) {
        send_signal(self.pid(), signal);
    }

    /// SIGTERM, and assert an exit 0 within `timeout`; `what` names the run in the failure.
    pub fn stop_cleanly(&mut self, timeout: Duration, what: &str) {
        self.signal(libc::SIGTERM);
        let status = self.wait_exit(timeout);
        assert!(
            status.is_some_and(|s| s.success()),
            "{what} stops cleanly on SIGTERM, got {status:?}; stderr:\n{}",
            self.stderr_tail()
        );
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_exit(&mut self.child, timeout)
    }

    /// Resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    }

    pub fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A value for [`write_pipeline`] overrides.
pub fn int(value: i64) -> toml::Value {
    toml::Value::Integer(value)
}

/// The [`write_pipeline`] override that turns inline detection (`pipeline.inline_detection`)
/// on or off.
pub fn inline_detection(on: bool) -> (&'static str, &'static str, toml::Value) {
    ("pipeline", "inline_detection", toml::Value::Boolean(on))
}

/// Uncommitted work at a kill: inputs at or past the group's commit point that already have an
/// output. Exactly these are processed again by the next run.
pub fn uncommitted_window(outputs: &[Output], committed: &BTreeMap<(String, i32), i64>) -> usize {
    let mut done: BTreeSet<&SourceKey> = BTreeSet::new();
    for output in outputs {
        if let Some(source) = &output.source {
            done.insert(source);
        }
    }
    done.iter()
        .filter(|s| {
            let point = committed
                .get(&(s.topic.clone(), s.partition))
                .copied()
                .unwrap_or(0);
            s.offset >= point
        })
        .count()
}

/// Check that every input appears in the outputs as expected; returns (outputs per input
/// count, duplicate outputs). Panics naming the first inputs missing or mismatched.
pub fn check_every_input(
    inputs: &[(SourceKey, Expect)],
    outputs: &[Output],
    dlq: &str,
) -> (usize, usize) {
    let mut by_source: BTreeMap<&SourceKey, Vec<&Output>> = BTreeMap::new();
    let mut unattributed = 0;
    for output in outputs {
        match &output.source {
            Some(source) => by_source.entry(source).or_default().push(output),
            None => unattributed += 1,
        }
    }
    assert_eq!(unattributed, 0, "outputs without a source reference");
    let mut missing = Vec::new();
    let mut wrong = Vec::new();
    let mut duplicates = 0;
    for (source, expect) in inputs {
        let Some(found) = by_source.get(source) else {
            missing.push(source.clone());
            continue;
        };
        duplicates += found.len() - 1;
        for output in found {
            let fits = match expect {
                Expect::Event(id) => output.topic != dlq && output.event_id.as_deref() == Some(id),
                Expect::DeadLetter(reason) => {
                    output.topic == dlq
                        && reason.is_none_or(|r| {
                            output.headers.get("citypulse.reason").map(String::as_str) == Some(r)
                        })
                }
            };
            if !fits {
                wrong.push(format!(
                    "{source:?} expected {expect:?}, got {} {:?} reason {:?}",
                    output.topic,
                    output.event_id,
                    output.headers.get("citypulse.reason")
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} inputs have no output, e.g. {:?}",
        missing.len(),
        inputs.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        wrong.is_empty(),
        "{} outputs do not match their input, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
    let known: BTreeSet<&SourceKey> = inputs.iter().map(|(s, _)| s).collect();
    let strays: Vec<&&SourceKey> = by_source.keys().filter(|s| !known.contains(**s)).collect();
    assert!(
        strays.is_empty(),
        "outputs for inputs never produced: {strays:?}"
    );
    (by_source.len(), duplicates)
}

/// Citizen reports of our own making, one per department and a few chatty posts.
pub const TEXTS: &[&str] = &[
    "小区门口的马路挖开一个多月没人管，晚上没有路灯，老人经过容易摔倒，请尽快修复路面。",
    "附近化工厂每天晚上排放刺鼻气味，窗户都不敢开，怀疑偷排废气，请环保部门来检测。",
    "公交车早高峰经常不按时到站，等了四十分钟才来一辆，希望增加班次。",
    "孩子学校乱收补课费，每学期要交两千元，家长意见很大。",
    "公司拖欠我们三个月工资，老板联系不上，请劳动部门帮忙。",
    "社区诊所医生态度恶劣，打疫苗排队三小时，希望卫生部门整顿。",
    "超市卖过期食品，买的牛奶已经过了保质期，店家拒绝退换。",
    "楼下餐馆油烟直排，噪音到凌晨两点，严重影响休息。",
    "今天天气真好，周末和朋友去橘子洲头散步，开心。",
    "路口红绿灯坏了两天，车辆乱成一团，差点撞到行人。",
];

/// Malformed inputs per channel, with the reason the dead letter must carry.
fn bad_record(channel: citypulse::event::Channel, i: usize) -> (Vec<u8>, &'static str) {
    use citypulse::event::Channel;
    match (channel, i % 3) {
        (Channel::Weibo | Channel::Hotline12345, 0) => (
            format!("{{\"broken\": \"{i}\", ").into_bytes(),
            "invalid_json",
        ),
        (Channel::Wechat, 0) => (
            format!("<xml><MsgId>{i}</MsgId>").into_bytes(),
            "invalid_xml",
        ),
        (Channel::Police110, 0) => (vec![0xff, 0xfe, b'0' + (i % 10) as u8], "invalid_utf8"),
        (Channel::Weibo, _) => (
            format!(r#"{{"id":{i},"created_at":"Wed Nov 25 09:12:03 +0800 2026","text":["hi"]}}"#)
                .into_bytes(),
            "wrong_type",
        ),
        (Channel::Police110, _) => (
            format!(r#"{{"jjdbh":"BAD{i}","bjsj":"2026-11-25 22:40:10"}}"#).into_bytes(),
            "missing_field",
        ),
        (Channel::Hotline12345, _) => (
            format!(r#"{{"工单编号":"BAD{i}","来电时间":"2026-11-25 09:12:03"}}"#).into_bytes(),
            "missing_field",
        ),
        (Channel::Wechat, _) => (vec![0xc3, 0x28, b'<', b'x'], "invalid_utf8"),
    }
}

/// `count` inputs over the four channels (weighted like a city's day: hotline and Weibo
/// heaviest), one in a hundred malformed; each good record carries a unique native id.
pub fn mixed_inputs(config: &PipelineConfig, count: usize, seed: u64, id_base: u64) -> Vec<Input> {
    use citypulse::event::Channel;
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let topic = |channel: Channel| config.kafka.input_topics[channel.as_str()].clone();
    (0..count)
        .map(|i| {
            let n = id_base + i as u64;
            let channel = match rng.random_range(0..10) {
                0..=2 => Channel::Hotline12345,
                3..=4 => Channel::Police110,
                5..=7 => Channel::Weibo,
                _ => Channel::Wechat,
            };
            let text = TEXTS[rng.random_range(0..TEXTS.len())];
            if rng.random_range(0..100) == 0 {
                let (payload, reason) = bad_record(channel, i);
                return Input {
                    topic: topic(channel),
                    partition: None,
                    payload,
                    expect: Expect::DeadLetter(Some(reason)),
                };
            }
            let (payload, id) = match channel {
                Channel::Hotline12345 => {
                    let id = format!("GD{n:010}");
                    (
                        crate::common::hotline_order(&id, text),
                        format!("12345:{id}"),
                    )
                }
                Channel::Police110 => {
                    let id = format!("J{n:010}");
                    (crate::common::police_call(&id, text), format!("110:{id}"))
                }
                Channel::Weibo => {
                    let id = 5_000_000_000 + n;
                    (crate::common::weibo_post(id, text), format!("weibo:{id}"))
                }
                Channel::Wechat => {
                    let id = 8_000_000_000 + n;
                    (crate::common::wechat_text(id, text), format!("wechat:{id}"))
                }
            };
            Input {
                topic: topic(channel),
                partition: None,
                payload,
                expect: Expect::Event(id),
            }
        })
        .collect()
}

/// The four topics every input ends up on.
pub fn final_topics(config: &PipelineConfig) -> Vec<String> {
    let kafka = &config.kafka;
    vec![
        kafka.routed_topic.clone(),
        kafka.triage_topic.clone(),
        kafka.ignored_topic.clone(),
        kafka.dlq_topic.clone(),
    ]
}
