//! `citypulse eval` run as a user would run it, for each task on its fixture: the report names
//! the examples and classes, the category report recommends a triage threshold, and a file in
//! the wrong format is an error that names the file.

use std::process::{Command, Output};

fn eval(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_citypulse"))
        .arg("eval")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("citypulse runs")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "eval failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("report is UTF-8")
}

#[test]
fn emotion_task_reports_the_six_emotions_of_the_json_file() {
    let report = stdout(&eval(&[
        "--task",
        "emotion",
        "--data",
        "tests/fixtures/sentiment_tiny.json",
    ]));
    assert!(report.starts_with("examples 24 "), "{report}");
    for emotion in ["happy", "angry", "sad", "fear", "surprise", "neutral"] {
        assert!(
            report.lines().any(|l| l.starts_with(emotion)),
            "{emotion} missing:\n{report}"
        );
    }
    assert!(report.contains("confusion"), "{report}");
}

#[test]
fn polarity_task_reports_the_sign_of_the_sentiment_score() {
    let report = stdout(&eval(&[
        "--task",
        "polarity",
        "--data",
        "tests/fixtures/sentiment_tiny.tsv",
    ]));
    assert!(report.starts_with("examples 16 "), "{report}");
    assert!(
        report.lines().any(|l| l.starts_with("negative")),
        "{report}"
    );
    assert!(
        report.lines().any(|l| l.starts_with("positive")),
        "{report}"
    );
}

#[test]
fn category_task_reports_thresholds_and_a_triage_recommendation() {
    let report = stdout(&eval(&["--data", "tests/fixtures/routing_tiny.tsv"]));
    assert!(report.contains("threshold  coverage  accuracy"), "{report}");
    assert!(
        report.contains("triage threshold for ≥ 97 % right on this data")
            || report.contains("no threshold reaches 97 % right on this data"),
        "{report}"
    );
}

#[test]
fn a_file_of_the_wrong_format_names_the_file() {
    let output = eval(&[
        "--task",
        "emotion",
        "--data",
        "tests/fixtures/sentiment_tiny.tsv",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("tests/fixtures/sentiment_tiny.tsv"),
        "{stderr}"
    );
}
