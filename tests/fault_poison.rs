//! Poison pills against a real broker (issue 6, item 3): inputs that make a stage fail —
//! malformed JSON and XML, invalid UTF-8, a record over 512 KiB, records that parse but lack
//! what a report needs, and a record that decodes but whose output Kafka refuses — go to the
//! dead-letter topic with their reason, and the same process goes on routing the good records
//! behind them, never restarting. Both flows go through it: the default two stages, and
//! inline detection, where stage 1's workers also run the detector (under its lock) and send
//! every output straight to its final topic.
//!
//! Needs `tansu` (see tests/tansu/mod.rs). Prints its figures for the README.

mod common;
mod tansu;

use citypulse::config::PipelineConfig;
use citypulse::event::Channel;
use common::{hotline_order, police_call, wechat_text, weibo_post};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tansu::*;

/// The same pill this many times in a row: a crash loop would show as a new pid or an exit.
const REPEATS: usize = 50;

struct Pill {
    name: &'static str,
    channel: Channel,
    payload: Vec<u8>,
    reason: &'static str,
}

/// A Weibo post that decodes and is processed, but whose internal event (text plus its
/// tokens) is over the producer's 1 MB message limit, and its event id.
fn oversized_internal_event() -> (Vec<u8>, String) {
    let long_text: String = "小区门口马路坑洼积水严重，".repeat(13_000);
    (
        weibo_post(9_100_000_009, &long_text),
        "weibo:9100000009".to_string(),
    )
}

fn pills() -> Vec<Pill> {
    let big_text = "路".repeat(200 * 1024);
    vec![
        Pill {
            name: "malformed JSON",
            channel: Channel::Hotline12345,
            payload: "{\"工单编号\": \"P1\", \"诉求内容\": ".into(),
            reason: "invalid_json",
        },
        Pill {
            name: "malformed XML",
            channel: Channel::Wechat,
            payload: b"<xml><MsgType>text</MsgType><Content><![CDATA[x]]></Conte".to_vec(),
            reason: "invalid_xml",
        },
        Pill {
            name: "invalid UTF-8",
            channel: Channel::Police110,
            payload: b"{\"jjdbh\":\"P3\",\"bjnr\":\"\xe5\xb7\"}".to_vec(),
            reason: "invalid_utf8",
        },
        Pill {
            name: "over 512 KiB",
            channel: Channel::Weibo,
            payload: weibo_post(9_100_000_001, &big_text),
            reason: "too_large",
        },
        Pill {
            name: "required field missing",
            channel: Channel::Police110,
            payload: br#"{"jjdbh":"P5","bjsj":"2026-11-25 22:40:10"}"#.to_vec(),
            reason: "missing_field",
        },
        Pill {
            name: "wrong JSON type",
            channel: Channel::Weibo,
            payload:
                br#"{"id":9100000006,"created_at":"Wed Nov 25 09:12:03 +0800 2026","text":{"a":1}}"#
                    .to_vec(),
            reason: "wrong_type",
        },
        Pill {
            name: "empty text",
            channel: Channel::Hotline12345,
            payload: hotline_order("P7", "   "),
            reason: "empty_text",
        },
        Pill {
            name: "JSON null instead of a document",
            channel: Channel::Hotline12345,
            payload: b"null".to_vec(),
            reason: "wrong_type",
        },
        Pill {
            name: "decodes, but its output is too large for Kafka",
            channel: Channel::Weibo,
            payload: oversized_internal_event().0,
            reason: "output_rejected",
        },
    ]
}

fn good(channel: Channel, n: u64) -> (Vec<u8>, String) {
    let text = TEXTS[n as usize % TEXTS.len()];
    match channel {
        Channel::Hotline12345 => (
            hotline_order(&format!("OK{n}"), text),
            format!("12345:OK{n}"),
        ),
        Channel::Police110 => (police_call(&format!("JOK{n}"), text), format!("110:JOK{n}")),
        Channel::Weibo => (
            weibo_post(9_200_000_000 + n, text),
            format!("weibo:{}", 9_200_000_000 + n),
        ),
        Channel::Wechat => (
            wechat_text(9_300_000_000 + n, text),
            format!("wechat:{}", 9_300_000_000 + n),
        ),
    }
}

#[test]
fn poison_pills_are_dead_lettered_with_their_reason_and_the_same_process_goes_on() {
    poison("poison", false);
}

#[test]
fn with_inline_detection_poison_pills_are_dead_lettered_and_the_same_process_goes_on() {
    poison("poison-inline", true);
}

/// The whole scenario, in the two-stage flow or with `inline` detection; `flow` names the run
/// in its messages and files.
fn poison(flow: &str, inline: bool) {
    let started = Instant::now();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let dir = test_dir();
    let broker = Broker::start(dir.path());
    let bootstrap = broker.bootstrap();
    let pipeline = write_pipeline(dir.path(), &[inline_detection(inline)]);
    let config = PipelineConfig::load(&pipeline).expect("pipeline loads");
    runtime.block_on(create_topics(&bootstrap, &config));
    let mut app = App::start(dir.path(), &pipeline, &bootstrap, flow);
    app.wait_readyz(200, Duration::from_secs(60));
    let pid = app.pid();

    // Each pill between two good records of its channel, all on partition 0 so the good one
    // behind it is read after it; then the first pill again and again.
    let topic = |c: Channel| config.kafka.input_topics[c.as_str()].clone();
    let mut inputs = Vec::new();
    let mut pills = pills();
    if inline {
        // Inline detection writes no internal event: the routed one, without the tokens, is
        // under the limit, so this record is an ordinary report there.
        pills.retain(|p| p.reason != "output_rejected");
        let (payload, id) = oversized_internal_event();
        inputs.push(Input {
            topic: topic(Channel::Weibo),
            partition: Some(0),
            payload,
            expect: Expect::Event(id),
        });
    }
    let mut n = 0;
    let mut good_input = |channel: Channel, inputs: &mut Vec<Input>| {
        n += 1;
        let (payload, id) = good(channel, n);
        inputs.push(Input {
            topic: topic(channel),
            partition: Some(0),
            payload,
            expect: Expect::Event(id),
        });
    };
    let mut pill_names = BTreeMap::new();
    for (i, pill) in pills.iter().enumerate() {
        good_input(pill.channel, &mut inputs);
        pill_names.insert(inputs.len(), i);
        inputs.push(Input {
            topic: topic(pill.channel),
            partition: Some(0),
            payload: pill.payload.clone(),
            expect: Expect::DeadLetter(Some(pill.reason)),
        });
        good_input(pill.channel, &mut inputs);
    }
    for _ in 0..REPEATS {
        inputs.push(Input {
            topic: topic(pills[0].channel),
            partition: Some(0),
            payload: pills[0].payload.clone(),
            expect: Expect::DeadLetter(Some(pills[0].reason)),
        });
    }
    good_input(pills[0].channel, &mut inputs);
    let landed = runtime.block_on(produce(&producer(&bootstrap), inputs));

    let topics = final_topics(&config);
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    let mut reader = OutputReader::new(&bootstrap, &topic_refs, &config.kafka.dlq_topic);
    let wanted: BTreeSet<&SourceKey> = landed.iter().map(|(s, _)| s).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        reader.catch_up(Duration::from_secs(60));
        let covered: BTreeSet<&SourceKey> = reader
            .outputs
            .iter()
            .filter_map(|o| o.source.as_ref())
            .collect();
        let missing: Vec<_> = wanted.difference(&covered).collect();
        if missing.is_empty() {
            break;
        }
        if let Some(status) = app.try_exit() {
            panic!(
                "{flow}: citypulse exited ({status}) on the pills; stderr:\n{}",
                app.stderr_tail()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{flow}: no output for {missing:?}; stderr:\n{}",
            app.stderr_tail()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        app.try_exit().is_none(),
        "{flow}: still running after the pills"
    );
    assert_eq!(app.pid(), pid, "{flow}: the same process throughout");
    assert_eq!(
        app.readyz(),
        Some(200),
        "{flow}: still ready after the pills"
    );

    // The record whose output Kafka refused may also have reached its event topic before the
    // internal topic refused it; only its dead letter is checked here.
    let refused: Vec<&SourceKey> = landed
        .iter()
        .filter(|(_, e)| *e == Expect::DeadLetter(Some("output_rejected")))
        .map(|(s, _)| s)
        .collect();
    let outputs: Vec<Output> = reader
        .outputs
        .iter()
        .filter(|o| {
            o.topic == config.kafka.dlq_topic
                || !refused.contains(&o.source.as_ref().expect("source"))
        })
        .cloned()
        .collect();
    let (_, duplicates) = check_every_input(&landed, &outputs, &config.kafka.dlq_topic);
    assert_eq!(duplicates, 0, "{flow}: no restart, so nothing is repeated");

    let by_source: BTreeMap<&SourceKey, &Output> = reader
        .outputs
        .iter()
        .filter(|o| o.topic == config.kafka.dlq_topic)
        .map(|o| (o.source.as_ref().expect("source"), o))
        .collect();
    for (index, pill_index) in &pill_names {
        let pill = &pills[*pill_index];
        let (source, _) = &landed[*index];
        let dead = by_source[source];
        let error = dead
            .headers
            .get("citypulse.error")
            .cloned()
            .unwrap_or_default();
        assert!(
            !error.is_empty(),
            "{flow}, {}: the dead letter says what went wrong",
            pill.name
        );
        assert_eq!(
            dead.headers.get("citypulse.channel").map(String::as_str),
            Some(pill.channel.as_str())
        );
        if pill.payload.len() > citypulse::channels::MAX_RECORD_BYTES {
            assert_eq!(
                dead.payload.len(),
                citypulse::channels::MAX_RECORD_BYTES,
                "{flow}, {}: cut to the limit",
                pill.name
            );
            assert_eq!(
                dead.headers.get("citypulse.truncated_from"),
                Some(&pill.payload.len().to_string()),
            );
        } else {
            assert_eq!(
                dead.payload, pill.payload,
                "{flow}, {}: the original bytes",
                pill.name
            );
        }
        eprintln!(
            "{flow}: pill {:<48} {:>7} bytes -> DLQ {:<16} {error}",
            pill.name,
            pill.payload.len(),
            pill.reason
        );
    }
    let (_, metrics) = app.get("/metrics").expect("/metrics answers");
    let dead_lettered: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("citypulse_dead_letters_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let expected_dead = pills.len() + REPEATS;
    assert_eq!(
        dead_lettered as usize, expected_dead,
        "{flow}: citypulse_dead_letters_total counts every pill"
    );
    app.signal(libc::SIGTERM);
    let status = app.wait_exit(Duration::from_secs(40));
    assert!(
        status.is_some_and(|s| s.success()),
        "{flow}: clean exit: {status:?}"
    );
    eprintln!(
        "{flow}: {} pill kinds + {REPEATS} repeats dead-lettered with their reason, {} good records \
         routed around them, one process (pid {pid}) throughout, wall time {:.1?}",
        pills.len(),
        landed.len() - expected_dead,
        started.elapsed()
    );
    drop(broker);
}
