//! The Grafana / Prometheus / docker-compose half of the deployment, checked with the real
//! tools: `promtool` on the config, the rules and a live `/metrics` scrape; a real Prometheus
//! server scraping `citypulse demo` that must answer every PromQL expression of the dashboards
//! and the rules; docker-compose's own validation of `docker-compose.yml`; and the consistency
//! of the dashboards, the provisioning, the compose file and `dashboards/README.md`.
//!
//! The tools are Debian's `prometheus` and `docker-compose` packages, installed by `.ci/run`.
//! Outside CI a test whose tool is missing skips with a loud message; in CI it fails.

mod common;

use common::process::{free_port, http, Running};
use regex::Regex;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const RULES: &str = "dashboards/prometheus/citypulse-rules.yml";
const PROMETHEUS_CONFIG: &str = "dashboards/prometheus/prometheus.yml";
const DASHBOARDS: &str = "dashboards/grafana/dashboards";
const COMPOSE: &str = "docker-compose.yml";
/// The datasource uid of `grafana/provisioning/datasources/prometheus.yml`.
const DATASOURCE_UID: &str = "prometheus";

/// Grafana's built-in variables and what the tests send instead. `1m` covers many 1-second
/// scrapes (Grafana's `$__rate_interval` is at least four scrape intervals).
const GRAFANA_VARIABLES: [(&str, &str); 4] = [
    ("$__rate_interval", "1m"),
    ("$__interval_ms", "5000"),
    ("$__interval", "5s"),
    ("$__range", "5m"),
];

/// Alerts that must not fire while the demo pipeline is healthy.
const HEALTH_ALERTS: [&str; 5] = [
    "CitypulseDown",
    "CitypulseStalled",
    "CitypulseDeadLetterRate",
    "CitypulseDeliveryFailures",
    "CitypulseOffsetCommitsFailing",
];
/// Alerts the demo's injected incident must raise. Its severity (critical or warning) depends on
/// which channels have reported when it fires, so `CitypulseCriticalAlertFired` is only required
/// to load, evaluate and answer with data, like every other rule.
const DEMO_ALERTS: [&str; 1] = ["CitypulseAlertActive"];

fn repo(path: &str) -> PathBuf {
    Path::new(ROOT).join(path)
}

fn read(path: &str) -> String {
    fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
}

/// True when every tool is on PATH. A missing tool skips the test loudly outside CI and fails
/// it in CI, where `.ci/run` installs them.
fn have_tools(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| which(t).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: {missing:?} not on PATH in CI; .ci/run should have installed Debian's \
         `prometheus` and `docker-compose` packages"
    );
    // Straight to stderr in one write, not eprintln!: the test harness captures eprintln! of
    // passing tests, and a skip must be seen.
    let message = format!(
        "\n########## SKIPPED {test}: {missing:?} not on PATH. ##########\n\
         ########## apt-get install prometheus docker-compose (what .ci/run does) to run it. ##########\n"
    );
    let _ = std::io::stderr().write_all(message.as_bytes());
    false
}

/// Status and body of a GET, or the transport error as text.
fn get(agent: &ureq::Agent, url: &str, query: &[(&str, &str)]) -> Result<(u16, String), String> {
    let mut request = agent.get(url);
    for (key, value) in query {
        request = request.query(*key, *value);
    }
    let mut response = request.call().map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    Ok((status, body))
}

/// Polls `ready` every 250 ms until it holds or `limit` has passed.
fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    ready()
}

/// `citypulse demo` on a free loopback port, once `/metrics` answers.
fn start_demo(dir: &Path, duration_secs: u64) -> (Running, String) {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_citypulse"));
    command
        .args(["demo", "--duration", &duration_secs.to_string()])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .current_dir(dir);
    let mut demo = Running::spawn("citypulse demo", &mut command, dir.join("demo.log"));
    let url = format!("http://127.0.0.1:{port}/metrics");
    let agent = http();
    let up = wait_until(Duration::from_secs(60), || {
        demo.assert_alive();
        matches!(get(&agent, &url, &[]), Ok((200, _)))
    });
    assert!(
        up,
        "demo's {url} did not answer in 60 s:\n{}",
        demo.log_tail()
    );
    (demo, url)
}

/// The sum of one metric family's samples in a text exposition (0 when absent).
fn sample_sum(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Every series name a text exposition offers, histogram and summary parts included.
fn exposed_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        names.insert(name.to_string());
        let suffixes: &[&str] = match kind {
            "histogram" => &["_bucket", "_sum", "_count"],
            "summary" => &["_sum", "_count"],
            _ => &[],
        };
        names.extend(suffixes.iter().map(|suffix| format!("{name}{suffix}")));
    }
    names
}

/// Replaces Grafana's built-in variables by fixed values Prometheus understands.
fn substitute_grafana_variables(expr: &str) -> String {
    GRAFANA_VARIABLES
        .iter()
        .fold(expr.to_string(), |text, (variable, value)| {
            text.replace(variable, value)
        })
}

/// The expression with every comparison made non-filtering (`a > 0` → `a > bool 0`), so it
/// returns one sample per compared series whether or not the condition holds: a rule that
/// rightly does not fire on a healthy demo still shows that the series it compares exist and
/// match. Label matchers (`{a!="b"}`) and strings are left alone.
fn comparisons_as_bool(expr: &str) -> String {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = String::with_capacity(expr.len() + 16);
    let mut braces = 0usize;
    let mut quote: Option<char> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = quote {
            out.push(c);
            if c == '\\' && q != '`' {
                if let Some(&next) = chars.get(i + 1) {
                    out.push(next);
                    i += 1;
                }
            } else if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '{' => braces += 1,
            '}' => braces = braces.saturating_sub(1),
            _ => {}
        }
        let next = chars.get(i + 1).copied();
        let operator_len = match (c, next) {
            _ if braces > 0 => 0,
            ('=', Some('=')) | ('!', Some('=')) | ('>', Some('=')) | ('<', Some('=')) => 2,
            ('>', _) | ('<', _) => 1,
            _ => 0,
        };
        if operator_len == 0 {
            out.push(c);
            i += 1;
            continue;
        }
        out.extend(&chars[i..i + operator_len]);
        i += operator_len;
        let rest: String = chars[i..].iter().collect();
        let already_bool = rest
            .trim_start()
            .strip_prefix("bool")
            .is_some_and(|after| !after.starts_with(|ch: char| ch.is_alphanumeric() || ch == '_'));
        if !already_bool {
            out.push_str(" bool");
        }
    }
    out
}

/// Every `expr` of a Grafana dashboard, with the title of the panel it belongs to.
fn dashboard_expressions(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(value: &Value, panel: &str, found: &mut Vec<(String, String)>) {
        match value {
            Value::Object(map) => {
                let title = map
                    .get("title")
                    .and_then(Value::as_str)
                    .filter(|_| map.contains_key("gridPos"))
                    .unwrap_or(panel);
                if let Some(Value::String(expr)) = map.get("expr") {
                    found.push((title.to_string(), expr.clone()));
                }
                for child in map.values() {
                    walk(child, title, found);
                }
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, panel, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(dashboard, "", &mut found);
    found
}

fn dashboards() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = fs::read_dir(repo(DASHBOARDS))
        .unwrap_or_else(|e| panic!("cannot list {DASHBOARDS}: {e}"))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            let json =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
            (name, json)
        })
        .collect()
}

/// Every expression the dashboards send, variables substituted, labelled for messages.
fn all_dashboard_queries() -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for (file, dashboard) in dashboards() {
        for (panel, expr) in dashboard_expressions(&dashboard) {
            queries.push((
                format!("{file} / {panel}"),
                substitute_grafana_variables(&expr),
            ));
        }
    }
    queries
}

/// Names of the rules in the rules file, as written.
fn rule_names_in_file() -> BTreeSet<String> {
    let pattern = Regex::new(r"(?m)^\s*-\s*(?:alert|record):\s*(\S+)\s*$").expect("static regex");
    pattern
        .captures_iter(&read(RULES))
        .map(|c| c[1].to_string())
        .collect()
}

/// `create TOPIC PARTITIONS` lines of the compose file's topic creation.
fn compose_topics() -> BTreeMap<String, u32> {
    let pattern = Regex::new(r"(?m)^\s*create\s+(\S+)\s+(\d+)\b").expect("static regex");
    pattern
        .captures_iter(&read(COMPOSE))
        .map(|c| (c[1].to_string(), c[2].parse().unwrap_or(0)))
        .collect()
}

/// The topics table of `dashboards/README.md`: `| \`topic\` | partitions | …`.
fn readme_topics() -> BTreeMap<String, u32> {
    let pattern = Regex::new(r"(?m)^\|\s*`([a-z0-9_.]+)`\s*\|\s*(\d+)\s*\|").expect("static regex");
    pattern
        .captures_iter(&read("dashboards/README.md"))
        .map(|c| (c[1].to_string(), c[2].parse().unwrap_or(0)))
        .collect()
}

#[test]
fn comparisons_become_non_filtering() {
    assert_eq!(comparisons_as_bool("up == 0"), "up == bool 0");
    assert_eq!(
        comparisons_as_bool(r#"a{x!="y", z=~"w"} >= 1 and b < 2"#),
        r#"a{x!="y", z=~"w"} >= bool 1 and b < bool 2"#
    );
    assert_eq!(comparisons_as_bool("a > bool 0"), "a > bool 0");
    assert_eq!(comparisons_as_bool("a > boolean"), "a > bool boolean");
    assert_eq!(
        comparisons_as_bool(r#"a{l="x>y"} != on (k) b"#),
        r#"a{l="x>y"} != bool on (k) b"#
    );
    assert_eq!(
        comparisons_as_bool("sum(rate(x[5m])) / clamp_min(y, 1e-9)"),
        "sum(rate(x[5m])) / clamp_min(y, 1e-9)"
    );
}

#[test]
fn grafana_variables_are_substituted() {
    assert_eq!(
        substitute_grafana_variables("rate(x[$__rate_interval]) + increase(y[$__range])"),
        "rate(x[1m]) + increase(y[5m])"
    );
    assert_eq!(
        substitute_grafana_variables("z[$__interval] $__interval_ms"),
        "z[5s] 5000"
    );
}

#[test]
fn dashboards_are_well_formed_and_use_the_provisioned_datasource() {
    let boards = dashboards();
    let titles: BTreeSet<&str> = boards
        .iter()
        .filter_map(|(_, d)| d["title"].as_str())
        .collect();
    assert_eq!(
        boards.len(),
        2,
        "a leaders' overview and an operations board"
    );
    assert_eq!(titles.len(), 2, "dashboard titles must differ");
    let mut uids = BTreeSet::new();
    for (file, dashboard) in &boards {
        let uid = dashboard["uid"].as_str().unwrap_or_default();
        assert!(!uid.is_empty() && uid.len() <= 40, "{file}: uid {uid:?}");
        assert!(uids.insert(uid.to_string()), "{file}: uid {uid} used twice");
        let panels = dashboard["panels"]
            .as_array()
            .unwrap_or_else(|| panic!("{file}: no panels"));
        let mut ids = BTreeSet::new();
        for panel in panels {
            let title = panel["title"].as_str().unwrap_or("?");
            let id = panel["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("{file} / {title}: no numeric id"));
            assert!(ids.insert(id), "{file}: panel id {id} used twice");
            let grid = &panel["gridPos"];
            let (x, w) = (grid["x"].as_u64(), grid["w"].as_u64());
            assert!(
                matches!((x, w), (Some(x), Some(w)) if w > 0 && x + w <= 24),
                "{file} / {title}: gridPos {grid} outside Grafana's 24 columns"
            );
            if panel["type"] == "row" {
                continue;
            }
            assert_eq!(
                panel["datasource"]["uid"], DATASOURCE_UID,
                "{file} / {title}: panel datasource"
            );
            let targets = panel["targets"].as_array().cloned().unwrap_or_default();
            assert!(!targets.is_empty(), "{file} / {title}: no query");
            for target in targets {
                assert_eq!(
                    target["datasource"]["uid"], DATASOURCE_UID,
                    "{file} / {title}: target datasource"
                );
                let expr = target["expr"].as_str().unwrap_or_default();
                assert!(!expr.trim().is_empty(), "{file} / {title}: empty expr");
                let sent = substitute_grafana_variables(expr);
                assert!(
                    !sent.contains('$'),
                    "{file} / {title}: a variable the tests cannot substitute in {expr}"
                );
            }
        }
    }
    let provisioning = read("dashboards/grafana/provisioning/datasources/prometheus.yml");
    assert!(
        provisioning.contains(&format!("uid: {DATASOURCE_UID}")),
        "the provisioned datasource must have uid {DATASOURCE_UID}"
    );
}

#[test]
fn provisioning_topics_and_notes_agree_with_the_compose_file() {
    let compose = read(COMPOSE);
    let provider = read("dashboards/grafana/provisioning/dashboards/citypulse.yml");
    let path = Regex::new(r"(?m)^\s*path:\s*(\S+)\s*$")
        .expect("static regex")
        .captures(&provider)
        .map(|c| c[1].to_string())
        .expect("the dashboard provider names a path");
    assert!(
        compose.contains(&format!("./{DASHBOARDS}:{path}:ro")),
        "docker-compose.yml must mount {DASHBOARDS} at the provider's path {path}"
    );
    assert!(compose.contains("./dashboards/grafana/provisioning:/etc/grafana/provisioning:ro"));
    assert!(compose.contains("./dashboards/prometheus:/etc/prometheus:ro"));

    let config = citypulse::config::PipelineConfig::parse(&read("pipelines/city.toml"))
        .unwrap_or_else(|issues| panic!("pipelines/city.toml is invalid: {issues:?}"));
    let kafka = &config.kafka;
    let mut needed: Vec<String> = config.input_topics().into_iter().map(|(_, t)| t).collect();
    needed.extend(
        [
            &kafka.routed_topic,
            &kafka.triage_topic,
            &kafka.dlq_topic,
            &kafka.events_topic,
            &kafka.alerts_topic,
        ]
        .map(String::clone),
    );
    let created = compose_topics();
    for topic in &needed {
        assert!(
            created.get(topic).is_some_and(|&n| n > 0),
            "docker-compose.yml does not create {topic} (creates {created:?})"
        );
    }
    assert_eq!(
        created,
        readme_topics(),
        "partition counts of docker-compose.yml and dashboards/README.md differ"
    );
}

#[test]
fn promtool_accepts_the_config_and_the_rules_and_refuses_a_broken_rule() {
    if !have_tools(
        "promtool_accepts_the_config_and_the_rules_and_refuses_a_broken_rule",
        &["promtool"],
    ) {
        return;
    }
    let run = |args: &[&str]| {
        Command::new("promtool")
            .args(args)
            .current_dir(ROOT)
            .output()
            .unwrap_or_else(|e| panic!("cannot run promtool {args:?}: {e}"))
    };
    let config = run(&["check", "config", PROMETHEUS_CONFIG]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&config.stdout),
        String::from_utf8_lossy(&config.stderr)
    );
    assert!(config.status.success(), "promtool check config:\n{text}");
    assert!(
        text.contains("1 rule files found"),
        "the config must load the rules file:\n{text}"
    );

    let rules = run(&["check", "rules", RULES]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&rules.stdout),
        String::from_utf8_lossy(&rules.stderr)
    );
    assert!(rules.status.success(), "promtool check rules:\n{text}");
    let count = rule_names_in_file().len();
    assert!(
        text.contains(&format!("SUCCESS: {count} rules found")),
        "promtool must see all {count} rules:\n{text}"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let broken = dir.path().join("broken.yml");
    fs::write(
        &broken,
        "groups:\n  - name: b\n    rules:\n      - alert: B\n        expr: rate(citypulse_events_in_total[5m]\n",
    )
    .expect("write the broken rules");
    let refused = run(&["check", "rules", &broken.to_string_lossy()]);
    assert!(
        !refused.status.success(),
        "promtool accepted an unbalanced parenthesis"
    );
}

#[test]
fn promtool_lints_a_live_metrics_scrape() {
    if !have_tools("promtool_lints_a_live_metrics_scrape", &["promtool"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut demo, url) = start_demo(dir.path(), 60);
    let agent = http();
    let mut scrape = String::new();
    // Lint a scrape with processed records and dead letters, not only the zeroed series.
    let busy = wait_until(Duration::from_secs(40), || {
        demo.assert_alive();
        if let Ok((200, body)) = get(&agent, &url, &[]) {
            scrape = body;
        }
        sample_sum(&scrape, "citypulse_routed_total") > 0.0
            && sample_sum(&scrape, "citypulse_dead_letters_total") > 0.0
    });
    assert!(
        busy,
        "the demo routed nothing or wrote no dead letter in 40 s:\n{}",
        demo.log_tail()
    );
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run promtool check metrics: {e}"));
    lint.stdin
        .take()
        .expect("stdin is piped")
        .write_all(scrape.as_bytes())
        .expect("write the scrape to promtool");
    let output = lint.wait_with_output().expect("promtool check metrics");
    assert!(
        output.status.success(),
        "promtool check metrics found problems:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    drop(demo);
}

/// One Prometheus API answer: `status` and, for queries, the number of result elements.
fn query(agent: &ureq::Agent, base: &str, expr: &str) -> Result<usize, String> {
    let (status, body) = get(agent, &format!("{base}/api/v1/query"), &[("query", expr)])?;
    let json: Value = serde_json::from_str(&body)
        .map_err(|e| format!("HTTP {status}, not JSON ({e}): {body}"))?;
    if json["status"] != "success" {
        return Err(format!(
            "HTTP {status}: {} {}",
            json["errorType"], json["error"]
        ));
    }
    let data = &json["data"];
    Ok(match data["resultType"].as_str() {
        Some("scalar") | Some("string") => 1,
        _ => data["result"].as_array().map_or(0, Vec::len),
    })
}

fn api(agent: &ureq::Agent, url: &str) -> Value {
    let (status, body) = get(agent, url, &[]).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(status, 200, "GET {url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {body}"))
}

#[test]
fn prometheus_answers_every_dashboard_and_rule_expression() {
    if !have_tools(
        "prometheus_answers_every_dashboard_and_rule_expression",
        &["prometheus"],
    ) {
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut demo, metrics_url) = start_demo(dir.path(), 150);
    let target = metrics_url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_string();

    let config = dir.path().join("prometheus.yml");
    fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules:?}\n\
             scrape_configs:\n  - job_name: citypulse\n    static_configs:\n      - targets: [{target:?}]\n",
            rules = repo(RULES).to_string_lossy(),
        ),
    )
    .expect("write the Prometheus config");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut command = Command::new("prometheus");
    command
        .arg(format!("--config.file={}", config.to_string_lossy()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").to_string_lossy()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .current_dir(dir.path());
    let mut prometheus = Running::spawn("prometheus", &mut command, dir.path().join("prom.log"));
    let agent = http();
    let ready = wait_until(Duration::from_secs(60), || {
        prometheus.assert_alive();
        matches!(get(&agent, &format!("{base}/-/ready"), &[]), Ok((200, _)))
    });
    assert!(
        ready,
        "Prometheus not ready in 60 s:\n{}",
        prometheus.log_tail()
    );

    // Scrapes, rate() windows, librdkafka's 5-second statistics (consumer lag) and the demo's
    // incident (~20 s after start) all have to be there before every query can have data.
    let preconditions = [
        r#"up{job="citypulse"} == 1"#,
        "citypulse_consumer_lag_messages",
        "citypulse_dead_letters_total",
        r#"count_over_time(up{job="citypulse"}[1m]) >= 10"#,
        r#"ALERTS{alertname="CitypulseAlertActive", alertstate="firing"}"#,
    ];
    let mut missing: Vec<&str> = preconditions.to_vec();
    let settled = wait_until(Duration::from_secs(100), || {
        demo.assert_alive();
        prometheus.assert_alive();
        missing.retain(|expr| !matches!(query(&agent, &base, expr), Ok(n) if n > 0));
        missing.is_empty()
    });
    assert!(
        settled,
        "after {:?} Prometheus still has nothing for {missing:?}\n--- demo:\n{}\n--- prometheus:\n{}",
        started.elapsed(),
        demo.log_tail(),
        prometheus.log_tail()
    );

    // The rules as Prometheus loaded them: all of the file's, each evaluated without error.
    let rules = api(&agent, &format!("{base}/api/v1/rules"));
    let mut loaded = BTreeMap::new();
    for group in rules["data"]["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        for rule in group["rules"].as_array().cloned().unwrap_or_default() {
            let name = rule["name"].as_str().unwrap_or_default().to_string();
            assert_eq!(
                rule["health"], "ok",
                "rule {name} does not evaluate: {}",
                rule["lastError"]
            );
            let expr = rule["query"].as_str().unwrap_or_default().to_string();
            loaded.insert(name, expr);
        }
    }
    assert_eq!(
        loaded.keys().cloned().collect::<BTreeSet<_>>(),
        rule_names_in_file(),
        "Prometheus loaded other rules than {RULES} has"
    );

    let mut queries = all_dashboard_queries();
    queries.extend(
        loaded
            .iter()
            .map(|(name, expr)| (format!("rule {name}"), expr.clone())),
    );
    let mut failures = Vec::new();
    for (origin, expr) in &queries {
        if let Err(error) = query(&agent, &base, expr) {
            failures.push(format!("{origin}: does not parse: {error}\n    {expr}"));
            continue;
        }
        let probe = comparisons_as_bool(expr);
        match query(&agent, &base, &probe) {
            Ok(0) => failures.push(format!("{origin}: no data\n    {probe}")),
            Ok(_) => {}
            Err(error) => failures.push(format!("{origin}: {error}\n    {probe}")),
        }
    }

    // Every metric an expression names must be one citypulse exports.
    let (_, scrape) = get(&agent, &metrics_url, &[]).unwrap_or_else(|e| panic!("scrape: {e}"));
    let exported = exposed_names(&scrape);
    let metric = Regex::new(r"\bcitypulse_[a-z0-9_]+\b").expect("static regex");
    for (origin, expr) in &queries {
        for name in metric.find_iter(expr).map(|m| m.as_str()) {
            if !exported.contains(name) {
                failures.push(format!("{origin}: {name} is not exported by citypulse"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} expressions failed:\n{}",
        failures.len(),
        queries.len(),
        failures.join("\n")
    );

    // The demo's incident is a firing citypulse alert, hence a firing Prometheus alert; the
    // healthy pipeline raises none of the health alerts.
    let alerts = api(&agent, &format!("{base}/api/v1/alerts"));
    let states: BTreeMap<String, String> = alerts["data"]["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|a| {
            (
                a["labels"]["alertname"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                a["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for name in DEMO_ALERTS {
        assert_eq!(
            states.get(name).map(String::as_str),
            Some("firing"),
            "{name} should fire during the demo's incident: {states:?}"
        );
    }
    for name in HEALTH_ALERTS {
        assert!(
            !states.contains_key(name),
            "{name} is {:?} on a healthy demo",
            states[name]
        );
    }
    eprintln!(
        "prometheus test: {} expressions ({} rules) answered after {:?}",
        queries.len(),
        loaded.len(),
        started.elapsed()
    );
    drop(prometheus);
    drop(demo);
}

#[test]
fn docker_compose_validates_the_deployment() {
    if !have_tools(
        "docker_compose_validates_the_deployment",
        &["docker-compose"],
    ) {
        return;
    }
    let secrets = [
        ("CITYPULSE_AUTHOR_KEY", "0123456789abcdef0123456789abcdef"),
        ("CITYPULSE_TOKEN", "test-token"),
        ("GRAFANA_ADMIN_PASSWORD", "test-password"),
    ];
    let compose = |args: &[&str], without: Option<&str>| {
        let mut command = Command::new("docker-compose");
        command
            .args(["--project-name", "citypulse", "-f", COMPOSE])
            .args(args)
            .current_dir(ROOT);
        for (key, value) in secrets {
            command.env(key, value);
        }
        if let Some(key) = without {
            command.env_remove(key);
        }
        let output = command
            .output()
            .unwrap_or_else(|e| panic!("cannot run docker-compose {args:?}: {e}"));
        (
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    };
    let (ok, text) = compose(&["config", "--quiet"], None);
    assert!(ok, "docker-compose config rejects {COMPOSE}:\n{text}");

    let (ok, text) = compose(&["config", "--services"], None);
    assert!(ok, "docker-compose config --services:\n{text}");
    let services: BTreeSet<&str> = text.lines().map(str::trim).collect();
    let expected: BTreeSet<&str> = [
        "citypulse",
        "grafana",
        "kafka",
        "kafka-topics",
        "prometheus",
    ]
    .into_iter()
    .collect();
    assert_eq!(services, expected);

    let (ok, text) = compose(&["config", "--quiet"], Some("CITYPULSE_AUTHOR_KEY"));
    assert!(
        !ok && text.contains("CITYPULSE_AUTHOR_KEY"),
        "without CITYPULSE_AUTHOR_KEY the deployment must refuse to start:\n{text}"
    );
}
