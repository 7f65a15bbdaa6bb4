//! SIGTERM while the broker has stopped answering: the process still exits in bounded time.
//!
//! A broker that holds its connections open but answers nothing (frozen with SIGSTOP here; in
//! production a hung JVM or a network partition) makes librdkafka's consumer close wait on it,
//! possibly for ever (rust-rdkafka issue 509). citypulse bounds that close at
//! 10 s per stage, and the process must then exit instead of waiting on the abandoned close.
//!
//! Needs `tansu` (see tests/tansu/mod.rs).

mod common;
mod tansu;

use citypulse::config::PipelineConfig;
use std::time::{Duration, Instant};
use tansu::*;

const SHUTDOWN_TIMEOUT_SECS: i64 = 5;
/// The drain, the consumer close's own bound (10 s in pipeline.rs), and process teardown.
const EXIT_WITHIN: Duration = Duration::from_secs(SHUTDOWN_TIMEOUT_SECS as u64 + 10 + 8);

#[test]
fn sigterm_with_a_frozen_broker_exits_within_the_close_bound() {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let dir = test_dir();
    let broker = Broker::start(dir.path());
    let bootstrap = broker.bootstrap();
    let pipeline = write_pipeline(
        dir.path(),
        &[(
            "pipeline",
            "shutdown_timeout_secs",
            int(SHUTDOWN_TIMEOUT_SECS),
        )],
    );
    let config = PipelineConfig::load(&pipeline).expect("pipeline loads");
    runtime.block_on(create_topics(&bootstrap, &config));
    let producer = producer(&bootstrap);
    runtime.block_on(produce(&producer, mixed_inputs(&config, 200, 5, 0)));

    let mut app = App::start(dir.path(), &pipeline, &bootstrap, "frozen");
    app.wait_readyz(200, Duration::from_secs(60));
    let mut reader = OutputReader::new(
        &bootstrap,
        &[&config.kafka.events_topic],
        &config.kafka.dlq_topic,
    );
    // Both groups have joined and work: stage 1 has written to the internal topic.
    let deadline = Instant::now() + Duration::from_secs(60);
    while reader.outputs.is_empty() {
        assert!(Instant::now() < deadline, "no internal events within 60 s");
        reader.catch_up(Duration::from_secs(5));
    }
    drop(reader);

    let broker_pid = broker.pid().expect("broker runs");
    send_signal(broker_pid, libc::SIGSTOP);
    app.signal(libc::SIGTERM);
    let signalled = Instant::now();
    let status = app.wait_exit(EXIT_WITHIN + Duration::from_secs(60));
    let took = signalled.elapsed();
    send_signal(broker_pid, libc::SIGCONT);
    let log = std::fs::read_to_string(&app.stderr).unwrap_or_default();
    assert!(
        status.is_some(),
        "citypulse did not exit within {:?} of SIGTERM with the broker frozen; stderr:\n{}",
        EXIT_WITHIN + Duration::from_secs(60),
        app.stderr_tail()
    );
    assert!(
        took <= EXIT_WITHIN,
        "exit took {took:?}, more than {EXIT_WITHIN:?}; stderr:\n{}",
        app.stderr_tail()
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "a stop whose commit could not reach the broker still exits 0 (the records are re-read): \
         {status:?}; stderr:\n{}",
        app.stderr_tail()
    );
    // The case this test is for happened: a close hung and was abandoned (usually both
    // stages', sometimes one).
    let abandoned_closes = log.matches("closing the consumer timed out").count();
    assert!(
        abandoned_closes >= 1,
        "no consumer close hung on the frozen broker, so this run tested nothing; stderr:\n{}",
        app.stderr_tail()
    );
    eprintln!(
        "frozen broker: exit 0 in {took:.2?} (bound {EXIT_WITHIN:?}), {abandoned_closes} \
         consumer closes abandoned"
    );
    drop(broker);
}

/// The broker freezes before citypulse has joined its groups (inline detection's rebuild and
/// stage 2's rebuild both query it first): a SIGTERM still ends the process at once, in both
/// flows.
#[test]
fn sigterm_while_starting_against_a_frozen_broker_exits_at_once() {
    for inline in [false, true] {
        let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
        let dir = test_dir();
        let broker = Broker::start(dir.path());
        let bootstrap = broker.bootstrap();
        let pipeline = write_pipeline(
            dir.path(),
            &[
                (
                    "pipeline",
                    "shutdown_timeout_secs",
                    int(SHUTDOWN_TIMEOUT_SECS),
                ),
                inline_detection(inline),
            ],
        );
        let config = PipelineConfig::load(&pipeline).expect("pipeline loads");
        runtime.block_on(create_topics(&bootstrap, &config));
        let broker_pid = broker.pid().expect("broker runs");
        send_signal(broker_pid, libc::SIGSTOP);
        let mut app = App::start(dir.path(), &pipeline, &bootstrap, "frozen-start");
        std::thread::sleep(Duration::from_secs(3));
        assert!(
            app.try_exit().is_none(),
            "citypulse gave up on a broker that does not answer yet; stderr:\n{}",
            app.stderr_tail()
        );
        app.signal(libc::SIGTERM);
        let signalled = Instant::now();
        let status = app.wait_exit(EXIT_WITHIN + Duration::from_secs(60));
        let took = signalled.elapsed();
        send_signal(broker_pid, libc::SIGCONT);
        // Nothing to drain or close yet: a stop does not wait for a broker query to time out.
        let bound = Duration::from_secs(3);
        assert!(
            status.is_some_and(|s| s.success()) && took <= bound,
            "inline {inline}: exit {status:?} after {took:?} (bound {bound:?}); stderr:\n{}",
            app.stderr_tail()
        );
        eprintln!("frozen broker at start, inline {inline}: exit {status:?} in {took:.2?}");
        drop(broker);
    }
}
