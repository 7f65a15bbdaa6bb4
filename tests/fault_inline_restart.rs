//! Inline detection (`pipeline.inline_detection`) restarted against a real broker: the
//! `citypulse run` binary routes the first reports of an incident and stops on SIGTERM; started
//! again, it rebuilds detection state from the output topics (by broker time, which tansu can
//! look up, unlike the embedded mock broker) and the reports after the restart join the same
//! incident. And SIGKILLs under load: every run rebuilds before it consumes, no input is lost,
//! and every repeat is work that was output but not yet committed at a kill.
//!
//! Needs `tansu` (see tests/tansu/mod.rs).

mod common;
mod tansu;

use citypulse::config::PipelineConfig;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tansu::*;

/// Reads the outputs until `ids` all have an event; event id → incident id.
fn incidents(
    reader: &mut OutputReader,
    ids: &[&str],
    app: &mut App,
) -> BTreeMap<String, Option<String>> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        reader.catch_up(Duration::from_secs(10));
        let found: BTreeMap<String, Option<String>> = reader
            .outputs
            .iter()
            .filter_map(|output| {
                let id = output.event_id.clone()?;
                let event: serde_json::Value = serde_json::from_slice(&output.payload).ok()?;
                Some((id, event["incident_id"].as_str().map(str::to_owned)))
            })
            .collect();
        if ids.iter().all(|id| found.contains_key(*id)) {
            return found;
        }
        assert!(
            app.try_exit().is_none() && Instant::now() < deadline,
            "events missing: have {found:?}; stderr:\n{}",
            app.stderr_tail()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The log text without its terminal colour codes (`ESC [ … m`).
fn without_colours(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn a_restart_rebuilds_from_the_output_topics_and_the_incident_goes_on() {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let dir = test_dir();
    let broker = Broker::start(dir.path());
    let bootstrap = broker.bootstrap();
    let pipeline = write_pipeline(dir.path(), &[inline_detection(true)]);
    let config = PipelineConfig::load(&pipeline).expect("pipeline loads");
    runtime.block_on(create_topics(&bootstrap, &config));
    let reports = common::water_main_reports(&config);
    let (before, after) = reports.split_at(3);
    let inputs = |part: &[(String, Vec<u8>, String)]| -> Vec<Input> {
        part.iter()
            .map(|(topic, payload, id)| Input {
                topic: topic.clone(),
                // One partition, so the reports reach the pipeline in event-time order.
                partition: Some(0),
                payload: payload.clone(),
                expect: Expect::Event(id.clone()),
            })
            .collect()
    };
    let producer = producer(&bootstrap);
    runtime.block_on(produce(&producer, inputs(before)));
    let topics = final_topics(&config);
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    let mut reader = OutputReader::new(&bootstrap, &topic_refs, &config.kafka.dlq_topic);

    let mut first = App::start(dir.path(), &pipeline, &bootstrap, "first");
    first.wait_readyz(200, Duration::from_secs(60));
    let ids: Vec<&str> = before.iter().map(|(_, _, id)| id.as_str()).collect();
    let early = incidents(&mut reader, &ids, &mut first);
    first.stop_cleanly(Duration::from_secs(60), "the first run");
    let opened: BTreeSet<String> = early.values().flatten().cloned().collect();
    assert_eq!(
        opened.len(),
        1,
        "one incident before the restart: {early:?}"
    );
    assert!(
        !reader
            .outputs
            .iter()
            .any(|o| o.topic == config.kafka.events_topic),
        "inline detection writes no internal events"
    );

    runtime.block_on(produce(&producer, inputs(after)));
    let mut second = App::start(dir.path(), &pipeline, &bootstrap, "second");
    second.wait_readyz(200, Duration::from_secs(60));
    let ids: Vec<&str> = reports.iter().map(|(_, _, id)| id.as_str()).collect();
    let all = incidents(&mut reader, &ids, &mut second);
    second.signal(libc::SIGTERM);
    second.wait_exit(Duration::from_secs(60));
    let log = without_colours(
        &std::fs::read_to_string(dir.path().join("citypulse-second.err")).unwrap_or_default(),
    );
    assert!(
        log.lines()
            .any(|line| line.contains("state rebuilt") && line.contains("events=3")),
        "the restart rebuilt from the three routed reports; stderr:\n{log}"
    );
    assert!(
        log.lines()
            .any(|line| line.contains("rebuilding state") && line.contains("from_start=0")),
        "tansu looked the rebuild's offsets up by time; stderr:\n{log}"
    );
    for (_, _, id) in after {
        assert_eq!(
            all[id].as_ref(),
            opened.iter().next(),
            "{id} joined the incident opened before the restart: {all:?}"
        );
    }
    eprintln!("inline restart on tansu: incidents {all:?}");
}

/// New inputs before each run, so that every kill lands in the middle of work.
const CRASH_RECORDS_PER_RUN: usize = 8_000;
const CRASH_KILLS: usize = 5;
const CRASH_SEED: u64 = 20_261_128;

#[test]
fn sigkill_under_load_loses_nothing_and_every_run_rebuilds_first() {
    let started = Instant::now();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let dir = test_dir();
    let broker = Broker::start(dir.path());
    let bootstrap = broker.bootstrap();
    let pipeline = write_pipeline(
        dir.path(),
        &[
            inline_detection(true),
            ("pipeline", "max_in_flight", int(2000)),
            ("pipeline", "commit_interval_ms", int(200)),
            // As in fault_crash.rs: one static member, whose session outlasts a restart and
            // tansu's pauses for static members, takes its partitions back at once.
            ("kafka", "session_timeout_ms", int(15_000)),
            (
                "kafka",
                "instance_id",
                toml::Value::String("citypulse-inline-crash".into()),
            ),
        ],
    );
    let config = PipelineConfig::load(&pipeline).expect("pipeline loads");
    runtime.block_on(create_topics(&bootstrap, &config));
    let producer = producer(&bootstrap);
    let topics = final_topics(&config);
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    let mut reader = OutputReader::new(&bootstrap, &topic_refs, &config.kafka.dlq_topic);

    let mut rng = rand::rngs::StdRng::seed_from_u64(CRASH_SEED);
    let mut landed = Vec::new();
    let mut windows = Vec::with_capacity(CRASH_KILLS);
    let mut rebuilt = Vec::with_capacity(CRASH_KILLS);
    for kill in 0..CRASH_KILLS {
        landed.extend(runtime.block_on(produce(
            &producer,
            mixed_inputs(
                &config,
                CRASH_RECORDS_PER_RUN,
                CRASH_SEED + kill as u64,
                (kill * CRASH_RECORDS_PER_RUN) as u64,
            ),
        )));
        let tag = format!("crash{kill}");
        let mut app = App::start(dir.path(), &pipeline, &bootstrap, &tag);
        // Ready means the rebuild is done and the partitions are owned.
        app.wait_readyz(200, Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(rng.random_range(100..1000)));
        assert!(
            app.try_exit().is_none(),
            "citypulse exited on its own before kill {kill}; stderr:\n{}",
            app.stderr_tail()
        );
        app.kill();
        let log = without_colours(
            &std::fs::read_to_string(dir.path().join(format!("citypulse-{tag}.err")))
                .unwrap_or_default(),
        );
        // Every run rebuilds before it consumes; the first finds nothing to read.
        let events = log.lines().find_map(|line| {
            if line.contains("inline detection: nothing to rebuild") {
                Some(0)
            } else if line.contains("inline detection: state rebuilt") {
                line.split("events=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse::<u64>()
                    .ok()
            } else {
                None
            }
        });
        let events =
            events.unwrap_or_else(|| panic!("run {kill} logged no rebuild; stderr:\n{log}"));
        rebuilt.push(events);
        reader.catch_up(Duration::from_secs(120));
        let input_partitions: BTreeSet<(String, i32)> = landed
            .iter()
            .map(|(s, _): &(SourceKey, Expect)| (s.topic.clone(), s.partition))
            .collect();
        let committed = committed(&bootstrap, &config.kafka.group_id, &input_partitions);
        windows.push(uncommitted_window(&reader.outputs, &committed));
    }
    // Runs after the first re-read what the ones before them routed.
    assert!(
        rebuilt.iter().skip(1).all(|&n| n > 0),
        "later runs rebuilt from the routed events: {rebuilt:?}"
    );

    let mut app = App::start(dir.path(), &pipeline, &bootstrap, "crash-final");
    let wanted: BTreeSet<&SourceKey> = landed.iter().map(|(s, _)| s).collect();
    reader.wait_covered(
        &wanted,
        &mut app,
        Duration::from_secs(300),
        "after the last restart",
    );
    app.stop_cleanly(Duration::from_secs(60), "the final run");
    reader.catch_up(Duration::from_secs(30));
    let (distinct, duplicates) =
        check_every_input(&landed, &reader.outputs, &config.kafka.dlq_topic);
    let window_total: usize = windows.iter().sum();
    assert!(
        duplicates <= window_total,
        "{duplicates} inputs output twice, more than the {window_total} output but uncommitted \
         at the kills ({windows:?})"
    );
    eprintln!(
        "inline crash: {} inputs, {CRASH_KILLS} SIGKILLs, {distinct} distinct inputs out, \
         {duplicates} duplicates (uncommitted at the kills: {windows:?}), events rebuilt per \
         run {rebuilt:?}, wall time {:.1?}",
        landed.len(),
        started.elapsed()
    );
    drop(broker);
}
