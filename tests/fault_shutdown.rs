//! Shutdown against a real broker (issue 6, item 8): SIGTERM under load drains and commits
//! within the configured time and exits 0, having committed exactly the work it finished; a
//! restart then repeats nothing; a second SIGTERM during a drain exits at once.
//!
//! Needs `tansu` (see tests/tansu/mod.rs). Prints its figures for the README.

mod common;
mod tansu;

use citypulse::config::PipelineConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};
use tansu::*;

const BACKLOG: usize = 30_000;
/// Long enough that a busy tansu answering both groups' heartbeats late does not evict a member,
/// and that the next run rejoins within the session of the last one (Kafka's default, 45 s).
/// tansu 0.6 expires a static member whose old incarnation's last heartbeat is older than the
/// session even right after the new one synced, and then never assigns the group again. With
/// 20 s that happened in about one run in five while a consumer close could hang (a rebalance
/// callback asking librdkafka's terminated group a question, since fixed; see
/// `PipelineContext::post_rebalance`): citypulse abandoned the close after 10 s, and the
/// restart, with its checks before it and tansu's 2 × 3 s static-member pauses, came 24 s after
/// the old member's last heartbeat. Any slow stop would do the same.
const SESSION_TIMEOUT_MS: i64 = 45_000;
const SHUTDOWN_TIMEOUT_SECS: i64 = 20;
/// Beyond the drain: the final commit and leaving the group (bounded at 10 s in pipeline.rs),
/// and process teardown.
const SLACK: Duration = Duration::from_secs(12);

/// A clean stop against a healthy broker closes both consumers without reaching the close's
/// 10 s bound. A rebalance callback that asks librdkafka's group thread anything after the
/// revoke's unassign hung one close in half of these runs (README, Reliability).
fn assert_closed_promptly(app: &App) {
    let log = std::fs::read_to_string(&app.stderr).unwrap_or_default();
    assert!(
        !log.contains("closing the consumer timed out"),
        "a consumer close hung on a healthy broker; stderr:\n{}",
        app.stderr_tail()
    );
}

/// Committed exactly what was finished: every output of `outputs` (those of the stage that
/// reads the input topics) lies below its input's commit point, and every input below a commit
/// point has one.
fn assert_commits_cover_exactly(outputs: &[Output], committed: &BTreeMap<(String, i32), i64>) {
    let mut output_sources: BTreeMap<(String, i32), BTreeSet<i64>> = BTreeMap::new();
    for output in outputs {
        let source = output.source.as_ref().expect("outputs name their input");
        output_sources
            .entry((source.topic.clone(), source.partition))
            .or_default()
            .insert(source.offset);
    }
    for (partition, offsets) in &output_sources {
        let point = committed.get(partition).copied().unwrap_or_else(|| {
            panic!("{partition:?} has outputs but no committed offset after a clean stop")
        });
        let beyond = offsets.iter().filter(|&&o| o >= point).count();
        let below_without_output = (0..point).filter(|o| !offsets.contains(o)).count();
        assert_eq!(
            beyond, 0,
            "{partition:?}: {beyond} outputs past the commit point {point}"
        );
        assert_eq!(
            below_without_output, 0,
            "{partition:?}: {below_without_output} inputs below the commit point {point} without output"
        );
    }
}

/// The pipeline file of these tests: drains bounded by [`SHUTDOWN_TIMEOUT_SECS`], sessions of
/// [`SESSION_TIMEOUT_MS`], and a static member (`instance_id`), so that the run after an abrupt
/// exit takes its partitions back at once.
fn shutdown_pipeline(dir: &std::path::Path, instance_id: &str, inline: bool) -> std::path::PathBuf {
    write_pipeline(
        dir,
        &[
            inline_detection(inline),
            (
                "pipeline",
                "shutdown_timeout_secs",
                int(SHUTDOWN_TIMEOUT_SECS),
            ),
            ("kafka", "session_timeout_ms", int(SESSION_TIMEOUT_MS)),
            (
                "kafka",
                "instance_id",
                toml::Value::String(instance_id.into()),
            ),
        ],
    )
}

/// Starts a run, sends it SIGTERM 1.5 s after it is ready (well inside the backlog) and checks
/// that it exits 0 within `shutdown_timeout_secs` + [`SLACK`], having closed its consumers
/// promptly. Returns how long the stop took.
fn sigterm_under_load(
    dir: &std::path::Path,
    pipeline: &std::path::Path,
    bootstrap: &str,
    tag: &str,
) -> Duration {
    let mut app = App::start(dir, pipeline, bootstrap, tag);
    app.wait_readyz(200, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(1500));
    app.signal(libc::SIGTERM);
    let signalled = Instant::now();
    let status = app.wait_exit(
        Duration::from_secs(SHUTDOWN_TIMEOUT_SECS as u64) + SLACK + Duration::from_secs(30),
    );
    let drain_time = signalled.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "{tag}: SIGTERM under load exits 0, got {status:?} after {drain_time:?}; stderr:\n{}",
        app.stderr_tail()
    );
    assert!(
        drain_time <= Duration::from_secs(SHUTDOWN_TIMEOUT_SECS as u64) + SLACK,
        "{tag}: drain took {drain_time:?}, more than shutdown_timeout_secs \
         {SHUTDOWN_TIMEOUT_SECS} s + {SLACK:?}"
    );
    assert_closed_promptly(&app);
    drain_time
}

/// With no new input, a restart writes nothing within 5 s of being ready, and stops cleanly.
fn restart_writes_nothing(
    dir: &std::path::Path,
    pipeline: &std::path::Path,
    bootstrap: &str,
    tag: &str,
    reader: &mut OutputReader,
) {
    let before = reader.outputs.len();
    let mut app = App::start(dir, pipeline, bootstrap, tag);
    app.wait_readyz(200, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(5));
    reader.catch_up(Duration::from_secs(30));
    assert_eq!(
        reader.outputs.len(),
        before,
        "{tag}: a restart with nothing new produced outputs"
    );
    app.stop_cleanly(Duration::from_secs(60), tag);
}

#[test]
fn sigterm_drains_commits_and_exits_in_time_and_a_second_one_exits_at_once() {
    let started = Instant::now();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let dir = test_dir();
    let broker = Broker::start(dir.path());
    let bootstrap = broker.bootstrap();
    let pipeline = shutdown_pipeline(dir.path(), "citypulse-shutdown", false);
    let config = PipelineConfig::load(&pipeline).expect("pipeline loads");
    runtime.block_on(create_topics(&bootstrap, &config));
    let producer = producer(&bootstrap);
    let mut landed = runtime.block_on(produce(&producer, mixed_inputs(&config, BACKLOG, 11, 0)));
    let partitions: BTreeSet<(String, i32)> = landed
        .iter()
        .map(|(s, _)| (s.topic.clone(), s.partition))
        .collect();
    let topics = final_topics(&config);
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    let mut reader = OutputReader::new(&bootstrap, &topic_refs, &config.kafka.dlq_topic);

    // 1. SIGTERM under load.
    let drain_time = sigterm_under_load(dir.path(), &pipeline, &bootstrap, "first");
    reader.catch_up(Duration::from_secs(30));
    let done_first = reader.outputs.len();
    // Committed exactly what was finished, in both stages. Stage 1 (the input group) outputs to
    // the internal topic and the DLQ: every such output lies below its input's commit point,
    // and every input below a commit point has one.
    let mut stage_one = OutputReader::new(
        &bootstrap,
        &[&config.kafka.events_topic, &config.kafka.dlq_topic],
        &config.kafka.dlq_topic,
    );
    stage_one.catch_up(Duration::from_secs(30));
    let committed = committed(&bootstrap, &config.kafka.group_id, &partitions);
    assert_commits_cover_exactly(&stage_one.outputs, &committed);
    // Stage 2 (the detection group) routes internal events: every internal event below its
    // commit point is on a final topic (its id), and nothing final comes from beyond it.
    let internal_partitions: BTreeSet<(String, i32)> = stage_one
        .outputs
        .iter()
        .filter(|o| o.topic == config.kafka.events_topic)
        .map(|o| (o.topic.clone(), o.partition))
        .collect();
    let detect_group = format!("{}-detect", config.kafka.group_id);
    let committed_internal = tansu::committed(&bootstrap, &detect_group, &internal_partitions);
    let routed_ids: BTreeSet<&str> = reader
        .outputs
        .iter()
        .filter_map(|o| o.event_id.as_deref())
        .collect();
    let mut routed_internal = 0usize;
    for output in stage_one
        .outputs
        .iter()
        .filter(|o| o.topic == config.kafka.events_topic)
    {
        let point = committed_internal
            .get(&(output.topic.clone(), output.partition))
            .copied()
            .unwrap_or(0);
        let id = output
            .event_id
            .as_deref()
            .expect("internal events carry an id");
        if output.offset < point {
            routed_internal += 1;
            assert!(
                routed_ids.contains(id),
                "internal event {id} at offset {} is below stage 2's commit point {point} but was not routed",
                output.offset
            );
        }
    }
    eprintln!(
        "shutdown: stage 1 committed {} inputs, stage 2 committed {routed_internal} internal events, all with outputs",
        committed.values().sum::<i64>()
    );
    let committed_total: i64 = committed.values().sum();

    // 2. A restart finishes the backlog without repeating anything.
    let mut app = App::start(dir.path(), &pipeline, &bootstrap, "second");
    let wanted: BTreeSet<&SourceKey> = landed.iter().map(|(s, _)| s).collect();
    reader.wait_covered(
        &wanted,
        &mut app,
        Duration::from_secs(180),
        "after the restart",
    );
    app.signal(libc::SIGTERM);
    let signalled = Instant::now();
    let status = app.wait_exit(Duration::from_secs(60));
    let idle_stop = signalled.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "second run exits 0: {status:?}"
    );
    assert_closed_promptly(&app);
    reader.catch_up(Duration::from_secs(30));
    let (_, duplicates) = check_every_input(&landed, &reader.outputs, &config.kafka.dlq_topic);
    assert_eq!(duplicates, 0, "a clean stop repeats nothing on restart");
    drop(app);

    // 3. With no new input, a restart outputs nothing.
    restart_writes_nothing(dir.path(), &pipeline, &bootstrap, "third", &mut reader);

    // 4. A second SIGTERM during the drain exits at once.
    landed.extend(runtime.block_on(produce(
        &producer,
        mixed_inputs(&config, BACKLOG, 12, BACKLOG as u64),
    )));
    let mut app = App::start(dir.path(), &pipeline, &bootstrap, "fourth");
    app.wait_readyz(200, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(1500));
    app.signal(libc::SIGTERM);
    // Two SIGTERMs that arrive before the signal task has read the first are one signal to
    // it: send the second once the first is in the log (the drain has begun).
    let first_seen = Instant::now();
    while !std::fs::read_to_string(&app.stderr)
        .unwrap_or_default()
        .contains("signal received: draining")
    {
        assert!(
            first_seen.elapsed() < Duration::from_secs(10),
            "the first SIGTERM was not logged; stderr:\n{}",
            app.stderr_tail()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    app.signal(libc::SIGTERM);
    let second = Instant::now();
    let status = app.wait_exit(Duration::from_secs(10));
    let second_exit = second.elapsed();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(130),
        "a second SIGTERM exits with 130 at once, got {status:?} (signal {:?}) after {second_exit:?}; stderr:\n{}",
        status.and_then(|s| s.signal()),
        app.stderr_tail()
    );
    assert!(
        second_exit <= Duration::from_secs(1),
        "the second SIGTERM took {second_exit:?}"
    );
    drop(app);

    // Nothing lost after the abrupt exit either; the next run is the same static member, so it
    // does not wait for the group to expire the one that exited without leaving.
    let mut app = App::start(dir.path(), &pipeline, &bootstrap, "fifth");
    let wanted: BTreeSet<&SourceKey> = landed.iter().map(|(s, _)| s).collect();
    reader.wait_covered(
        &wanted,
        &mut app,
        Duration::from_secs(180),
        "after the restart",
    );
    app.signal(libc::SIGTERM);
    assert!(app
        .wait_exit(Duration::from_secs(60))
        .is_some_and(|s| s.success()));
    reader.catch_up(Duration::from_secs(30));
    let (_, duplicates_after_abrupt) =
        check_every_input(&landed, &reader.outputs, &config.kafka.dlq_topic);
    eprintln!(
        "shutdown: SIGTERM under load after 1.5 s of a {BACKLOG}-record backlog: exit 0 in \
         {drain_time:.2?} (limit {SHUTDOWN_TIMEOUT_SECS} s + {SLACK:?}), {done_first} outputs, \
         committed offsets sum {committed_total}, all outputs below the commit points; restart \
         repeated 0; idle stop {idle_stop:.2?}; restart with no new input: 0 outputs; second \
         SIGTERM 30 ms into a drain: exit 130 in {second_exit:.3?}, {duplicates_after_abrupt} \
         records repeated after it; wall time {:.1?}",
        started.elapsed()
    );
    drop(broker);
}

/// Inline detection (`pipeline.inline_detection`): stage 1's workers also detect and write every
/// output straight to its final topic, and a start rebuilds detection state from those topics
/// before consuming. A SIGTERM under load must still drain, commit exactly the finished work
/// and exit 0 in time, and the restart must rebuild and then repeat nothing; with nothing new,
/// a further restart writes nothing.
#[test]
fn with_inline_detection_sigterm_commits_exactly_the_finished_work_and_a_restart_repeats_nothing() {
    let started = Instant::now();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let dir = test_dir();
    let broker = Broker::start(dir.path());
    let bootstrap = broker.bootstrap();
    let pipeline = shutdown_pipeline(dir.path(), "citypulse-shutdown-inline", true);
    let config = PipelineConfig::load(&pipeline).expect("pipeline loads");
    runtime.block_on(create_topics(&bootstrap, &config));
    let landed = runtime.block_on(produce(
        &producer(&bootstrap),
        mixed_inputs(&config, BACKLOG, 13, 0),
    ));
    let partitions: BTreeSet<(String, i32)> = landed
        .iter()
        .map(|(s, _)| (s.topic.clone(), s.partition))
        .collect();
    let topics = final_topics(&config);
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    let mut reader = OutputReader::new(&bootstrap, &topic_refs, &config.kafka.dlq_topic);

    // 1. SIGTERM under load.
    let drain_time = sigterm_under_load(dir.path(), &pipeline, &bootstrap, "inline-first");
    reader.catch_up(Duration::from_secs(30));
    let done_first = reader.outputs.len();
    assert!(
        done_first > 0 && done_first < BACKLOG,
        "inline: the stop came mid-backlog ({done_first} of {BACKLOG} done)"
    );
    let committed = committed(&bootstrap, &config.kafka.group_id, &partitions);
    assert_commits_cover_exactly(&reader.outputs, &committed);
    let committed_total: i64 = committed.values().sum();

    // 2. The restart rebuilds from what the first run wrote, then finishes the backlog without
    // repeating anything.
    let mut app = App::start(dir.path(), &pipeline, &bootstrap, "inline-second");
    let wanted: BTreeSet<&SourceKey> = landed.iter().map(|(s, _)| s).collect();
    reader.wait_covered(
        &wanted,
        &mut app,
        Duration::from_secs(180),
        "inline: after the restart",
    );
    app.stop_cleanly(Duration::from_secs(60), "inline: the second run");
    assert_closed_promptly(&app);
    let log = std::fs::read_to_string(&app.stderr).unwrap_or_default();
    assert!(
        log.contains("inline detection: state rebuilt"),
        "inline: the restart rebuilt detection state first; stderr:\n{}",
        app.stderr_tail()
    );
    reader.catch_up(Duration::from_secs(30));
    let (_, duplicates) = check_every_input(&landed, &reader.outputs, &config.kafka.dlq_topic);
    assert_eq!(
        duplicates, 0,
        "inline: a clean stop repeats nothing on restart"
    );
    drop(app);

    // 3. With no new input, a restart outputs nothing.
    restart_writes_nothing(
        dir.path(),
        &pipeline,
        &bootstrap,
        "inline-third",
        &mut reader,
    );
    eprintln!(
        "shutdown, inline detection: SIGTERM under load after 1.5 s of a {BACKLOG}-record \
         backlog: exit 0 in {drain_time:.2?} (limit {SHUTDOWN_TIMEOUT_SECS} s + {SLACK:?}), \
         {done_first} outputs, committed offsets sum {committed_total}, exactly the finished \
         work; restart rebuilt, then repeated 0; restart with no new input: 0 outputs; wall \
         time {:.1?}",
        started.elapsed()
    );
    drop(broker);
}
