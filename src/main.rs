//! The `citypulse` command line: `run`, `demo`, `process`, `check`, `train`, `eval`.
//!
//! Each command parses its flags, loads what it needs through the library and hands over to
//! it; no processing logic lives here.

use anyhow::Context;
use citypulse::alert_feed::{AckPublisher, AlertFeed};
use citypulse::assets;
use citypulse::auth::{self, AccessToken};
use citypulse::config::PipelineConfig;
use citypulse::demo::runner::{run_demo, DemoOptions};
use citypulse::detect::Detector;
use citypulse::event::Channel;
use citypulse::health::Health;
use citypulse::http::{self, AppState};
use citypulse::ingest::IngestState;
use citypulse::metrics::Metrics;
use citypulse::model::{self, CategoryModel};
use citypulse::process::process_lines;
use citypulse::text::mask::AuthorHasher;
use citypulse::{detection, pipeline};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::{BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "citypulse",
    version,
    about = "One live stream from a city's Weibo, WeChat, 12345 and 110 channels: decode, mask, segment, classify, route."
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline against a Kafka cluster until SIGINT/SIGTERM.
    Run {
        /// The pipeline file (see pipelines/city.toml).
        #[arg(long)]
        pipeline: PathBuf,
        /// Override kafka.brokers, e.g. `broker1:9092,broker2:9092`.
        #[arg(long)]
        brokers: Option<String>,
        /// Override http.listen, e.g. `0.0.0.0:9464`.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Override kafka.instance_id (static group membership), e.g. the pod name;
        /// `@hostname` takes the host's name (a container's, stable across its restarts).
        #[arg(long, env = "CITYPULSE_INSTANCE_ID")]
        instance_id: Option<String>,
    },
    /// Run everything on an embedded broker with generated traffic: nothing to install.
    Demo {
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        duration: Option<u64>,
        #[arg(long, default_value = "127.0.0.1:9464")]
        listen: SocketAddr,
        /// The simulated clock runs this many times faster than the wall clock (traffic is
        /// ~200 records per simulated hour, after a replayed day of history).
        #[arg(long, default_value_t = 60.0)]
        speed: f64,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Run the stages over a file or stdin: one record per line in, one JSON line out.
    Process {
        /// Every line is a raw record of this channel (weibo, wechat, 12345, 110); without it,
        /// every line is an envelope {"channel": CH, "record": R}.
        #[arg(long)]
        channel: Option<Channel>,
        /// Input file (default: stdin).
        #[arg(long)]
        input: Option<PathBuf>,
        /// Output file (default: stdout).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Pipeline file for routing rules and models (default: the embedded defaults).
        #[arg(long)]
        pipeline: Option<PathBuf>,
    },
    /// Check a pipeline file and the models it names; report every problem at once.
    Check {
        #[arg(long)]
        pipeline: PathBuf,
    },
    /// Train the category model on a segmented TSV (label<TAB>tokens) and write the model file.
    Train {
        #[arg(
            long,
            default_value = "../shared/data/routing/routing_train_segmented.tsv"
        )]
        data: PathBuf,
        #[arg(long, default_value = "models/category.json")]
        out: PathBuf,
        /// Folds of cross-validation reported before the final fit (0 or 1: none).
        #[arg(long, default_value_t = 5)]
        folds: usize,
        #[arg(long, default_value_t = 20_201_127)]
        seed: u64,
        /// L2 regularisation strength (linfa's alpha, on the loss summed over rows).
        #[arg(long, default_value_t = model::train::ALPHA)]
        alpha: f32,
        /// L-BFGS iteration cap of each fit.
        #[arg(long, default_value_t = model::train::MAX_ITERATIONS)]
        max_iterations: u64,
    },
    /// Evaluate a model on labelled data: per-class figures, confusion matrix, coverage and
    /// accuracy at each confidence threshold (category, emotion, or the sentiment's sign).
    Eval {
        /// category: a segmented TSV (label<TAB>tokens) or the raw sample TSV (with 留言详情);
        /// emotion: an SMP2020-EWECT JSON array; polarity: a weibo_senti TSV (label<TAB>text).
        #[arg(long)]
        data: PathBuf,
        #[arg(long, value_enum, default_value_t = Task::Category)]
        task: Task,
        /// The model file to evaluate (category.json, or sentiment.json for emotion and
        /// polarity; default: the embedded one).
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// Throughput benchmark of the `process` path against raw jieba-rs, one and two threads,
    /// on long citizen messages and short Weibo posts; prints the README's performance figures.
    Bench {
        /// Seconds per measurement (raw jieba, one thread, two threads) and workload.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// The shared data directory; generated texts where it is absent.
        #[arg(long, default_value = "../shared/data")]
        shared_data: PathBuf,
    },
    /// End-to-end benchmark through Kafka (the embedded broker on loopback): records settled
    /// per second and per CPU-second, then p50/p99 latency from the input's broker timestamp
    /// to its outputs' acknowledgement at a steady rate. Pin with `taskset -c 0` for one core.
    BenchKafka(citypulse::bench_kafka::KafkaBenchOptions),
    /// Measure early warning: a generated multi-day stream on all four channels with injected
    /// incidents of known start and place, through the stages and detection; prints per
    /// incident whether and when it alerted, precision, false alerts per day, duplicate threads.
    EvalAlerts {
        /// Simulated days (the first is warm-up, without incidents).
        #[arg(long, default_value_t = 7)]
        days: u32,
        #[arg(long, default_value_t = 10)]
        incidents: usize,
        /// Mean generated records per hour (the mid-morning peak is about 1.8 times this).
        #[arg(long, default_value_t = 200.0)]
        records_per_hour: f64,
        #[arg(long, default_value_t = 20_261_125)]
        seed: u64,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Task {
    /// The category model on a segmented TSV or the raw routing sample.
    Category,
    /// The emotion head on an SMP2020-EWECT JSON file (emoticons stripped).
    Emotion,
    /// The sign of the sentiment score on a weibo_senti TSV (`label<TAB>text`, emoticons
    /// stripped).
    Polarity,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, &cli.command);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(execute(cli.command));
    // A consumer close that librdkafka never finishes (a broker that holds the connection but
    // stopped answering; rust-rdkafka issue 509) is left running on the blocking pool once its
    // bound has passed (`pipeline::final_commit`). Dropping the runtime would wait for it for
    // ever; everything that matters has been committed or logged by now, so give it a moment
    // and exit.
    runtime.shutdown_timeout(BLOCKING_TASKS_AT_EXIT);
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// How long the exit waits for blocking tasks still running after the command finished.
const BLOCKING_TASKS_AT_EXIT: Duration = Duration::from_secs(1);

fn init_logging(format: LogFormat, command: &Command) {
    // `process` writes its results on stdout and should be quiet on stderr unless asked.
    let default = match command {
        Command::Process { .. } => "warn",
        _ => "info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn execute(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run {
            pipeline,
            brokers,
            listen,
            instance_id,
        } => run(pipeline, brokers, listen, instance_id).await,
        Command::Demo {
            duration,
            listen,
            speed,
            seed,
        } => {
            let shutdown = shutdown_on_signals();
            run_demo(
                DemoOptions {
                    duration: duration.map(Duration::from_secs),
                    listen,
                    speed,
                    seed,
                    summary_every: Duration::from_secs(3),
                },
                shutdown,
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Process {
            channel,
            input,
            output,
            pipeline,
        } => process(channel, input, output, pipeline),
        Command::Check { pipeline } => check(pipeline),
        Command::Train {
            data,
            out,
            folds,
            seed,
            alpha,
            max_iterations,
        } => {
            let mut options = model::train::TrainOptions::new(data, out);
            options.folds = folds;
            options.seed = seed;
            options.alpha = alpha;
            options.max_iterations = max_iterations;
            let report = model::train::train_category_model(&options)?;
            println!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            seconds,
            shared_data,
        } => {
            let options = citypulse::bench::BenchOptions {
                seconds,
                shared_data,
                ..Default::default()
            };
            let report = citypulse::bench::run(&options)?;
            citypulse::bench::print(&report, std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchKafka(options) => {
            let report = citypulse::bench_kafka::run(&options).await?;
            print!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Command::EvalAlerts {
            days,
            incidents,
            records_per_hour,
            seed,
        } => {
            let options = citypulse::detect::EvalOptions {
                days,
                incidents,
                records_per_hour,
                seed,
                ..Default::default()
            };
            let report = citypulse::detect::evaluate_alerts(&options)?;
            println!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval { data, task, model } => {
            let models = citypulse::config::ModelsConfig::default();
            match task {
                Task::Category => {
                    let model = match model {
                        Some(path) => CategoryModel::load(&path)?,
                        None => assets::load_category_model(&models)?,
                    };
                    let segmenter = assets::load_segmenter(&models)?;
                    let examples = labelled_examples(&data, &segmenter)?;
                    println!("{}", model::eval::evaluate(&model, &examples)?);
                }
                Task::Emotion | Task::Polarity => {
                    let sentiment = match model {
                        Some(path) => model::sentiment::SentimentModel::load(&path)?,
                        None => assets::load_sentiment_model(&models)?,
                    };
                    // The token stream the model was trained on: with or without stop words.
                    let segmenter = match sentiment.segmenter_for(&models)? {
                        Some(own) => own,
                        None => assets::load_segmenter(&models)?,
                    };
                    let report = if matches!(task, Task::Emotion) {
                        model::sentiment::evaluate_emotion_file(&sentiment, &segmenter, &data)?
                    } else {
                        model::sentiment::evaluate_polarity_file(&sentiment, &segmenter, &data)?
                    };
                    println!("{report}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Labelled examples from either training format: the segmented TSV (`label<TAB>tokens`) as
/// it is, or the raw sample (with 留言主题 and 留言详情), segmented here by citypulse itself —
/// the same path live events take.
fn labelled_examples(
    path: &std::path::Path,
    segmenter: &citypulse::text::segment::Segmenter,
) -> anyhow::Result<Vec<model::data::Labelled>> {
    let header = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    if header.contains("留言详情") {
        let raw = model::data::read_raw_sample(path)?;
        Ok(raw
            .into_iter()
            .map(|row| model::data::Labelled {
                tokens: segmenter.segment(&row.text, 0).owned_tokens(),
                label: row.label,
            })
            .collect())
    } else {
        Ok(model::data::read_segmented_tsv(path)?)
    }
}

async fn run(
    pipeline_path: PathBuf,
    brokers: Option<String>,
    listen: Option<SocketAddr>,
    instance_id: Option<String>,
) -> anyhow::Result<ExitCode> {
    let mut config = PipelineConfig::load(&pipeline_path)?;
    if let Some(brokers) = brokers {
        config.kafka.brokers = brokers;
    }
    if let Some(instance_id) = instance_id.filter(|id| !id.is_empty()) {
        let instance_id = if instance_id == "@hostname" {
            let path = "/proc/sys/kernel/hostname";
            std::fs::read_to_string(path)
                .with_context(|| format!("--instance-id @hostname: reading {path}"))?
                .trim()
                .to_string()
        } else {
            instance_id
        };
        config.kafka.instance_id = Some(instance_id);
        let issues = config.validate();
        if !issues.is_empty() {
            let listed: Vec<String> = issues.iter().map(ToString::to_string).collect();
            anyhow::bail!("--instance-id: {}", listed.join("; "));
        }
    }
    if let Some(listen) = listen {
        config.http.listen = listen.to_string();
    }
    let hasher = AuthorHasher::from_env(&config.privacy.author_key_env).with_context(|| {
        format!(
            "refusing to start: author hashes need a secret key in ${} (at least 16 bytes)",
            config.privacy.author_key_env
        )
    })?;
    let token = AccessToken::from_env(auth::TOKEN_ENV)
        .map_err(|error| anyhow::anyhow!("refusing to start: {error}"))?;
    let metrics = Metrics::new();
    let health = Arc::new(Health::new());
    let alerts = AlertFeed::new();
    let acks = AckPublisher::for_kafka(alerts.clone(), &config.kafka, metrics.clone())
        .context("cannot create the acknowledgement producer")?;
    let ingest = IngestState::from_env(&config).context("cannot set up push ingestion")?;
    let listen: SocketAddr = config
        .http
        .listen
        .parse()
        .context("http.listen was validated")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let shutdown = shutdown_on_signals();
    let server = {
        let stop = shutdown.clone();
        tokio::spawn(http::serve(
            listener,
            AppState {
                metrics: metrics.clone(),
                health: health.clone(),
                alerts: alerts.clone(),
                auth: token,
                acks,
                ingest: Some(ingest),
            },
            async move { stop.cancelled().await },
        ))
    };
    let stages = Arc::new(assets::load_stages(&config, hasher, metrics)?);
    health.set_models_loaded(true);
    tracing::info!(pipeline = %pipeline_path.display(), brokers = %config.kafka.brokers, %listen, "citypulse running");
    // Inline detection runs inside stage 1 (`pipeline::run_with_feed`); otherwise stage 2
    // is a task of its own.
    let detection = (config.pipeline.detection && !config.pipeline.inline_detection).then(|| {
        let (config, alerts, metrics, health, stop) = (
            config.clone(),
            alerts.clone(),
            stages.metrics.clone(),
            health.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            detection::run_with_health(&config, alerts, metrics, health, stop).await
        })
    });
    let result = pipeline::run_with_feed(&config, stages, health, alerts, shutdown.clone()).await;
    shutdown.cancel();
    // Detection is stage 2 of the flow (it routes the events): its failure fails the run.
    let mut detection_failed = None;
    if let Some(detection) = detection {
        match detection.await {
            Ok(Err(error)) => {
                tracing::error!(%error, "detection stopped with an error");
                detection_failed = Some(anyhow::Error::from(error));
            }
            Err(error) => {
                tracing::error!(%error, "detection task failed");
                detection_failed = Some(anyhow::anyhow!("detection task failed: {error}"));
            }
            Ok(Ok(())) => {}
        }
    }
    let _ = server.await;
    result?;
    if let Some(error) = detection_failed {
        return Err(error);
    }
    tracing::info!("stopped cleanly");
    Ok(ExitCode::SUCCESS)
}

fn process(
    channel: Option<Channel>,
    input: Option<PathBuf>,
    output: Option<PathBuf>,
    pipeline: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let config = match &pipeline {
        Some(path) => PipelineConfig::load(path)?,
        None => PipelineConfig::default(),
    };
    let hasher = match AuthorHasher::from_env(&config.privacy.author_key_env) {
        Ok(hasher) => hasher,
        Err(_) => {
            // Without a key, hash under a random one: still no raw identifier in the output,
            // but hashes are comparable only within this run.
            eprintln!(
                "note: ${} not set; author hashes use a random key for this run only",
                config.privacy.author_key_env
            );
            let key: [u8; 32] = rand::random();
            AuthorHasher::new(&key)
        }
    };
    let stages = assets::load_stages(&config, hasher, Metrics::new())?;
    let reader: Box<dyn std::io::BufRead> = match &input {
        Some(path) => Box::new(BufReader::new(
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
        )),
        None => Box::new(std::io::stdin().lock()),
    };
    let writer: Box<dyn Write> = match &output {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut detector = Detector::new(config.detect.clone());
    let summary = process_lines(&stages, Some(&mut detector), channel, reader, writer)?;
    eprintln!(
        "processed {} lines: {} routed, {} triage, {} skipped, {} errors; {} alert messages",
        summary.lines,
        summary.routed,
        summary.triaged,
        summary.skipped,
        summary.errors,
        summary.alerts
    );
    Ok(if summary.nothing_good() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn check(pipeline: PathBuf) -> anyhow::Result<ExitCode> {
    let config = match PipelineConfig::load(&pipeline) {
        Ok(config) => config,
        Err(errors) => {
            eprint!("{errors}");
            return Ok(ExitCode::from(2));
        }
    };
    // Models and rules together: a rule naming a category the model lacks is a typo.
    let hasher = AuthorHasher::new(b"check-only-key-never-used-for-output");
    if let Err(error) = assets::load_stages(&config, hasher, Metrics::new()) {
        eprintln!("{} has 1 problem(s):\n  - {error}", pipeline.display());
        return Ok(ExitCode::from(2));
    }
    println!("{}: OK", pipeline.display());
    Ok(ExitCode::SUCCESS)
}

/// Cancelled on the first SIGINT or SIGTERM (drain and commit); a second one exits at once.
fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(error) => {
                    tracing::error!(%error, "cannot listen for SIGTERM");
                    return;
                }
            };
        for count in 0.. {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            if count == 0 {
                tracing::info!("signal received: draining and committing (again to exit at once)");
                trigger.cancel();
            } else {
                tracing::warn!("second signal: exiting now");
                std::process::exit(130);
            }
        }
    });
    token
}
