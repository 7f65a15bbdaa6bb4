//! `citypulse process` on fixture files, run as a user would run the binary: one output line per
//! input line, events for good records, errors with line numbers for bad ones, no raw personal
//! data in the output, and the exit codes.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

const KEY: &str = "process-test-key-0123456789";

fn run_process(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_citypulse"));
    command
        .arg("process")
        .args(args)
        .env("CITYPULSE_AUTHOR_KEY", KEY)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    match stdin {
        None => command.output().expect("citypulse runs"),
        Some(bytes) => {
            use std::io::Write;
            let mut child = command
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("citypulse runs");
            child.stdin.take().unwrap().write_all(bytes).unwrap();
            child.wait_with_output().unwrap()
        }
    }
}

fn output_lines(output: &Output) -> Vec<Value> {
    String::from_utf8(output.stdout.clone())
        .expect("output is UTF-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("each output line is JSON"))
        .collect()
}

/// Counts of events, skips and errors, and the error lines with their reasons.
fn tally(lines: &[Value]) -> (usize, usize, BTreeMap<u64, String>) {
    let (mut events, mut skipped, mut errors) = (0, 0, BTreeMap::new());
    for line in lines {
        if line.get("error").is_some() {
            let number = line["line"].as_u64().expect("error names its line");
            errors.insert(number, line["reason"].as_str().unwrap().to_string());
        } else if line.get("skipped").is_some() {
            skipped += 1;
        } else {
            events += 1;
            for field in [
                "schema_version",
                "id",
                "channel",
                "received_at",
                "occurred_at",
                "title",
                "text",
                "district",
                "address",
                "coordinates",
                "author_hash",
                "report_kind",
                "keywords",
                "category",
                "category_confidence",
                "department",
                "priority",
                "route",
                "source",
            ] {
                assert!(line.get(field).is_some(), "event lacks `{field}`: {line}");
            }
        }
    }
    (events, skipped, errors)
}

/// Every mainland mobile number and 18-digit run in a text.
fn personal_numbers(text: &str) -> Vec<String> {
    let pattern = regex::Regex::new(r"1[3-9]\d{9}|\d{17}[\dXx]").unwrap();
    pattern
        .find_iter(text)
        .map(|m| m.as_str().to_string())
        .collect()
}

#[test]
fn each_channel_fixture_gives_one_line_per_record_and_masks_personal_numbers() {
    // (file, channel, good, skipped, bad line numbers) — as tests/fixtures/channels/README.md says.
    let cases = [
        ("weibo.jsonl", "weibo", 7, 0, 8..=12),
        ("wechat.xmll", "wechat", 6, 3, 10..=14),
        ("12345.jsonl", "12345", 6, 0, 7..=11),
        ("110.jsonl", "110", 6, 0, 7..=11),
    ];
    for (file, channel, good, skipped, bad) in cases {
        let path = Path::new("tests/fixtures/channels").join(file);
        let output = run_process(
            &["--channel", channel, "--input", path.to_str().unwrap()],
            None,
        );
        assert!(output.status.success(), "{file}: exit {:?}", output.status);
        let lines = output_lines(&output);
        let (events, skips, errors) = tally(&lines);
        assert_eq!((events, skips), (good, skipped), "{file}: events and skips");
        assert_eq!(
            errors.keys().copied().collect::<Vec<_>>(),
            bad.collect::<Vec<u64>>(),
            "{file}: bad lines"
        );
        let input =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(&path)).unwrap();
        // The free-text fields of every event (ids are the channels' own record numbers).
        let output_text: String = lines
            .iter()
            .filter(|l| l.get("channel").is_some())
            .flat_map(|l| {
                ["title", "text", "context", "address", "author_hash"].map(|f| l[f].to_string())
            })
            .collect();
        // Only numbers from good lines must be masked; bad lines carry no text to the output.
        for number in personal_numbers(&input) {
            let is_personal = number.len() == 11 || citypulse_checks_id(&number);
            if is_personal {
                assert!(
                    !output_text.contains(&number),
                    "{file}: {number} appears in the output"
                );
            }
        }
        for line in lines.iter().filter(|l| l.get("channel").is_some()) {
            assert_eq!(line["channel"], channel);
            assert!(line["id"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{channel}:")));
        }
    }
}

/// Whether an 18-character run is a resident ID number (right check digit), as the masker sees it.
fn citypulse_checks_id(number: &str) -> bool {
    number.len() == 18
        && citypulse::text::mask::id_check_char(&number.as_bytes()[..17])
            .is_some_and(|c| c.eq_ignore_ascii_case(&number.as_bytes()[17]))
}

#[test]
fn envelopes_mix_channels_and_report_bad_envelopes_by_line() {
    let output = run_process(&["--input", "tests/fixtures/envelopes.jsonl"], None);
    assert!(output.status.success(), "exit {:?}", output.status);
    let lines = output_lines(&output);
    assert_eq!(lines.len(), 14, "one output per non-blank input line");
    let (events, skipped, errors) = tally(&lines);
    assert_eq!((events, skipped), (9, 1));
    assert_eq!(
        errors,
        BTreeMap::from([
            (10, "missing_field".to_string()),
            (11, "invalid_envelope".to_string()),
            (12, "invalid_envelope".to_string()),
            (13, "invalid_envelope".to_string()),
        ])
    );
    let channels: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.get("channel").and_then(Value::as_str))
        .collect();
    for channel in ["weibo", "wechat", "12345", "110"] {
        assert!(channels.contains(&channel), "{channel} in {channels:?}");
    }
    let last = lines.last().unwrap();
    assert_eq!(
        last["id"], "12345:S1",
        "a record given as a JSON string is read too"
    );
}

#[test]
fn envelope_and_channel_modes_give_the_same_event() {
    let record = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/channels/110.jsonl"),
    )
    .unwrap()
    .lines()
    .next()
    .unwrap()
    .to_string();
    let envelope = format!("{{\"channel\":\"110\",\"record\":{record}}}\n");
    let direct = output_lines(&run_process(
        &["--channel", "110"],
        Some(format!("{record}\n").as_bytes()),
    ));
    let wrapped = output_lines(&run_process(&[], Some(envelope.as_bytes())));
    let strip = |mut v: Value| {
        v.as_object_mut().unwrap().remove("received_at");
        v
    };
    assert_eq!(strip(direct[0].clone()), strip(wrapped[0].clone()));
    assert_eq!(direct[0]["department"], "公安局指挥中心");
}

#[test]
fn exit_code_fails_only_when_no_line_was_good() {
    // The Weibo fixture read as 110 records: not one line is a 110 record.
    let output = run_process(
        &[
            "--channel",
            "110",
            "--input",
            "tests/fixtures/channels/weibo.jsonl",
        ],
        None,
    );
    assert!(!output.status.success());
    let lines = output_lines(&output);
    assert_eq!(lines.len(), 12, "still one line per input line");
    assert!(lines.iter().all(|l| l.get("error").is_some()));
}

#[test]
fn invalid_utf8_and_oversized_lines_are_errors_not_crashes() {
    let mut input = b"\xff\xfe\xfd\n".to_vec();
    input.extend(std::iter::repeat_n(b'a', 2 * 1024 * 1024));
    input.push(b'\n');
    let output = run_process(&["--channel", "12345"], Some(&input));
    let lines = output_lines(&output);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["reason"], "invalid_utf8");
    assert_eq!(lines[0]["line"], 1);
    assert_eq!(lines[1]["reason"], "too_large");
    assert_eq!(lines[1]["line"], 2);
}

/// The size hint that sizes an event's output buffer once covers the JSON of every fixture event
/// (texts with few escapes), without reserving far more than it takes.
#[test]
fn json_size_hints_cover_the_fixture_events() {
    for (file, channel) in [
        ("weibo.jsonl", "weibo"),
        ("wechat.xmll", "wechat"),
        ("12345.jsonl", "12345"),
        ("110.jsonl", "110"),
    ] {
        let path = Path::new("tests/fixtures/channels").join(file);
        let output = run_process(
            &["--channel", channel, "--input", path.to_str().unwrap()],
            None,
        );
        let stdout = String::from_utf8(output.stdout).expect("output is UTF-8");
        let mut events = 0;
        for line in stdout.lines().filter(|l| l.contains("\"schema_version\"")) {
            let event: citypulse::event::Event = serde_json::from_str(line).expect("an event");
            let written = serde_json::to_vec(&event).expect("serialises").len();
            let hint = event.json_size_hint();
            assert!(
                (written..=written + 1024).contains(&hint),
                "{file}: hint {hint} for {written} bytes"
            );
            events += 1;
        }
        assert!(events > 0, "{file}: no events");
    }
}
