//! The dispatch console in a real browser: Debian's `chromium`, driven over WebDriver by
//! `chromedriver` from this test (fantoccini), against a running `citypulse demo`.
//!
//! A dispatcher opens `/`, is sent to the login form, logs in with the token, and waits with
//! the page open: the demo's incident must appear in the alert list live (over the SSE feed,
//! without a reload). They open it, acknowledge it, and see the acknowledgement; a second,
//! already open console sees it arrive live too; `/api/alerts` shows it; and it is on the
//! alerts topic of the demo's embedded broker. A screenshot is saved to `target/console.png`.
//!
//! Chromium and chromedriver are required: without them the test fails and says how to
//! install them (CI installs them in `.ci/run`).

mod common;

use citypulse::config::PipelineConfig;
use citypulse::demo::runner::DEMO_PIPELINE;
use common::process::{free_port, http, Running};
use fantoccini::{Client, ClientBuilder, Locator};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message};
use serde_json::{json, Value};
use std::fs::{self};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const TOKEN: &str = "browser-test-token-0123456789";
/// The demo's incident fires within about a minute of its start on a loaded machine; this
/// bounds the wait for it generously.
const ALERT_WAIT: Duration = Duration::from_secs(240);
const DISPATCHER: &str = "测试调度员";

fn get(url: &str, bearer: Option<&str>) -> Result<(u16, String), String> {
    let mut request = http().get(url);
    if let Some(token) = bearer {
        request = request.header("Authorization", format!("Bearer {token}"));
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
async fn wait_until(limit: Duration, mut ready: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ready().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    ready().await
}

fn require_browser() {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|path| !Path::new(path).is_file())
        .collect();
    assert!(
        missing.is_empty(),
        "the console's browser test needs {missing:?}: install Debian's `chromium` and \
         `chromium-driver` (apt-get install -y chromium chromium-driver; .ci/run does this)"
    );
}

/// chromedriver on a free port, once it reports ready.
async fn start_chromedriver(dir: &Path) -> (Running, String) {
    let port = free_port();
    let mut command = Command::new(CHROMEDRIVER);
    command.arg(format!("--port={port}")).current_dir(dir);
    let mut driver = Running::spawn("chromedriver", &mut command, dir.join("chromedriver.log"));
    let url = format!("http://127.0.0.1:{port}");
    let status = format!("{url}/status");
    let up = wait_until(Duration::from_secs(30), async || {
        driver.assert_alive();
        matches!(get(&status, None), Ok((200, body)) if body.contains("\"ready\":true"))
    })
    .await;
    assert!(
        up,
        "chromedriver did not become ready:\n{}",
        driver.log_tail()
    );
    (driver, url)
}

/// A headless Chromium session with its own profile directory.
async fn browser(driver: &str, profile: &Path) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            // Without the background-networking flags Chromium stalls on this closed network.
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--lang=zh-CN", "--window-size=1440,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(driver)
        .await
        .unwrap_or_else(|e| panic!("cannot open a Chromium session through chromedriver: {e}"))
}

/// `citypulse demo` on a free port with the test's token, once `/healthz` answers.
async fn start_demo(dir: &Path) -> (Running, String) {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_citypulse"));
    command
        .args(["demo", "--duration", "600"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("CITYPULSE_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .current_dir(dir);
    let mut demo = Running::spawn("citypulse demo", &mut command, dir.join("demo.log"));
    let base = format!("http://127.0.0.1:{port}");
    let health = format!("{base}/healthz");
    let up = wait_until(Duration::from_secs(60), async || {
        demo.assert_alive();
        matches!(get(&health, None), Ok((200, _)))
    })
    .await;
    assert!(up, "the demo did not answer in 60 s:\n{}", demo.log_tail());
    (demo, base)
}

/// The text content of the first element matching `css`, or "" when there is none.
async fn text_of(client: &Client, css: &str) -> String {
    client
        .execute(
            "const node = document.querySelector(arguments[0]); return node ? node.textContent : '';",
            vec![json!(css)],
        )
        .await
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

async fn log_in(client: &Client, base: &str) {
    client
        .goto(&format!("{base}/"))
        .await
        .expect("open the console");
    let url = client.current_url().await.expect("current url");
    assert_eq!(
        url.path(),
        "/login",
        "without a session the console sends the browser to the login form"
    );
    let field = client
        .find(Locator::Css("#token"))
        .await
        .expect("the token field");
    field.send_keys(TOKEN).await.expect("type the token");
    client
        .find(Locator::Css("#login-submit"))
        .await
        .expect("the login button")
        .click()
        .await
        .expect("submit the form");
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#active-list"))
        .await
        .expect("the console after logging in");
    let url = client.current_url().await.expect("current url");
    assert_eq!(
        url.path(),
        "/",
        "logged in, the browser is back on the console"
    );
    // Marks this page load: a reload would drop it, so its presence later proves the alert
    // arrived live.
    client
        .execute("window.__sameLoad = 'yes'; return true;", vec![])
        .await
        .expect("mark the page load");
}

async fn same_page_load(client: &Client) -> bool {
    client
        .execute("return window.__sameLoad === 'yes';", vec![])
        .await
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

/// The first message on the demo broker's alerts topic keyed `alert_id` that carries an `ack`.
async fn ack_on_alerts_topic(brokers: &str, alert_id: &str) -> Option<Value> {
    let config = PipelineConfig::parse(DEMO_PIPELINE).expect("the demo pipeline parses");
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "console-browser-test")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer of the demo broker");
    consumer
        .subscribe(&[&config.kafka.alerts_topic])
        .expect("subscribe to the alerts topic");
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let Ok(Ok(message)) = tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await
        else {
            continue;
        };
        if message.key() != Some(alert_id.as_bytes()) {
            continue;
        }
        let Some(payload) = message
            .payload()
            .and_then(|p| serde_json::from_slice::<Value>(p).ok())
        else {
            continue;
        };
        if payload.get("ack").is_some() {
            return Some(payload);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatcher_logs_in_sees_an_alert_live_and_acknowledges_it() {
    require_browser();
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut demo, base) = start_demo(dir.path()).await;
    let (_driver, driver_url) = start_chromedriver(dir.path()).await;

    // Without a token the API and the feed refuse; the page sends a browser to the form.
    assert_eq!(
        get(&format!("{base}/api/alerts"), None).map(|(s, _)| s),
        Ok(401)
    );
    assert_eq!(
        get(&format!("{base}/alerts/stream"), None).map(|(s, _)| s),
        Ok(401)
    );

    let first = browser(&driver_url, &dir.path().join("profile-1")).await;
    log_in(&first, &base).await;
    let board: Value = serde_json::from_str(
        &get(&format!("{base}/api/alerts"), Some(TOKEN))
            .expect("the board")
            .1,
    )
    .expect("board JSON");
    let active_at_login = board["active"].as_array().map_or(0, Vec::len);
    let items_at_login = first
        .find_all(Locator::Css("#active-list li.alert-item"))
        .await
        .expect("the list")
        .len();
    eprintln!(
        "logged in after {:.1} s; {active_at_login} active alert(s) on the board",
        started.elapsed().as_secs_f64()
    );

    // The incident must appear in the open page, pushed over the feed.
    let appeared = wait_until(ALERT_WAIT, async || {
        demo.assert_alive();
        first
            .find_all(Locator::Css("#active-list li.alert-item"))
            .await
            .map(|items| items.len() > items_at_login)
            .unwrap_or(false)
    })
    .await;
    assert!(
        appeared,
        "no alert appeared in the console within {ALERT_WAIT:?}; the demo says:\n{}",
        demo.log_tail()
    );
    assert!(
        same_page_load(&first).await,
        "the alert must arrive without a reload"
    );
    eprintln!(
        "alert appeared live after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        text_of(&first, "#connection").await,
        "实时推送已连接",
        "the feed shows as connected"
    );

    // A second console, open before the acknowledgement, must see it arrive live too.
    let second = browser(&driver_url, &dir.path().join("profile-2")).await;
    log_in(&second, &base).await;

    let alert_id = first
        .find(Locator::Css("#active-list li.alert-item"))
        .await
        .expect("the new alert")
        .attr("data-alert-id")
        .await
        .expect("read the alert id")
        .expect("items carry their alert id");
    // The list is redrawn whenever the feed brings news, which can make a found element stale
    // just before the click: find it again and retry.
    let item_css = format!("li.alert-item[data-alert-id=\"{alert_id}\"]");
    let clicked = wait_until(Duration::from_secs(10), async || {
        match first.find(Locator::Css(&item_css)).await {
            Ok(item) => item.click().await.is_ok(),
            Err(_) => false,
        }
    })
    .await;
    assert!(clicked, "the alert item can be clicked");
    let detail_open = wait_until(Duration::from_secs(10), async || {
        text_of(&first, "#detail-id").await == alert_id
    })
    .await;
    assert!(detail_open, "the detail panel shows the alert");
    assert!(!text_of(&first, "#detail-district").await.is_empty());
    assert!(!text_of(&first, "#detail-channels").await.is_empty());
    assert_eq!(text_of(&first, "#detail-ack").await, "尚未确认");
    assert!(
        !first
            .find_all(Locator::Css("#detail-spark svg polyline"))
            .await
            .expect("the sparkline")
            .is_empty(),
        "the incident's size over time is drawn"
    );

    first
        .find(Locator::Css("#ack-by"))
        .await
        .expect("the name field")
        .send_keys(DISPATCHER)
        .await
        .expect("type the name");
    first
        .find(Locator::Css("#ack-button"))
        .await
        .expect("the acknowledge button")
        .click()
        .await
        .expect("acknowledge");
    let acknowledged = wait_until(Duration::from_secs(30), async || {
        text_of(&first, "#detail-ack").await.contains(DISPATCHER)
    })
    .await;
    assert!(
        acknowledged,
        "the acknowledgement shows in the detail panel; error line: {:?}",
        text_of(&first, "#ack-error").await
    );
    assert!(text_of(&first, "#detail-ack").await.starts_with("已确认"));
    eprintln!(
        "acknowledged after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let selector = format!("#active-list li[data-alert-id=\"{alert_id}\"] .ack-tag, #history-list li[data-alert-id=\"{alert_id}\"] .ack-tag");
    let seen_by_second = wait_until(Duration::from_secs(15), async || {
        text_of(&second, &selector).await == format!("已确认 · {DISPATCHER}")
    })
    .await;
    assert!(
        seen_by_second,
        "the other open console shows the acknowledgement: {:?}",
        text_of(&second, &selector).await
    );
    assert!(
        same_page_load(&second).await,
        "the other console got it without a reload"
    );

    let (status, body) = get(&format!("{base}/api/alerts"), Some(TOKEN)).expect("the board");
    assert_eq!(status, 200);
    let board: Value = serde_json::from_str(&body).expect("board JSON");
    let entry = board["active"]
        .as_array()
        .into_iter()
        .chain(board["recent"].as_array())
        .flatten()
        .find(|entry| entry["alert_id"] == alert_id.as_str())
        .unwrap_or_else(|| panic!("{alert_id} on the board: {body}"));
    assert_eq!(entry["acknowledged_by"], DISPATCHER, "{entry}");

    let log = demo.log();
    let brokers = log
        .lines()
        .find_map(|line| line.split("embedded Kafka broker at ").nth(1))
        .map(str::trim)
        .unwrap_or_else(|| panic!("the demo names its broker:\n{log}"))
        .to_string();
    let message = ack_on_alerts_topic(&brokers, &alert_id)
        .await
        .unwrap_or_else(|| panic!("no acknowledgement of {alert_id} on the alerts topic"));
    assert_eq!(message["ack"]["alert_id"], alert_id.as_str());
    assert_eq!(message["ack"]["by"], DISPATCHER);

    // The first console with the acknowledged alert open: the screenshot for the README.
    let png = first.screenshot().await.expect("a screenshot");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    fs::create_dir_all(&out).expect("target directory");
    fs::write(out.join("console.png"), &png).expect("write target/console.png");
    eprintln!(
        "screenshot: {} ({} bytes); whole test {:.1} s",
        out.join("console.png").display(),
        png.len(),
        started.elapsed().as_secs_f64()
    );

    let _ = second.close().await;
    let _ = first.close().await;
}
