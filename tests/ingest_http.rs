//! Push ingestion over real HTTP into the embedded broker: WeChat's URL check and signed pushes,
//! `POST /ingest/{channel}`, the size limit, and a broker that is gone.
//!
//! The server is `axum::serve` on port 0 with the public and protected routers merged as
//! `http.rs` merges them (without the console token, which is `auth.rs`'s to test); the client is
//! `ureq`, so every request crosses a socket.

mod common;

use citypulse::channels::MAX_RECORD_BYTES;
use citypulse::config::PipelineConfig;
use citypulse::ingest::{
    protected_routes, public_routes, wechat_signature, IngestSettings, IngestState, WechatToken,
};
use common::{cluster_with_topics, hotline_order, wechat_text};
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::time::{Duration, Instant};

const TOKEN: &str = "citypulseToken1";

fn settings(produce_timeout: Duration) -> IngestSettings {
    IngestSettings {
        wechat_token: Some(WechatToken::parse(TOKEN).expect("valid token")),
        produce_timeout,
        max_clock_skew: Duration::from_secs(300),
        ..IngestSettings::default()
    }
}

/// Serve both routers on 127.0.0.1:0; returns the base URL.
async fn spawn(state: IngestState) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let app = public_routes(state.clone()).merge(protected_routes(state));
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

struct Reply {
    status: u16,
    retry_after: Option<String>,
    body: String,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One blocking `ureq` request, off the async runtime. `body: None` means GET.
async fn call(url: String, body: Option<Vec<u8>>) -> Reply {
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut response = match body {
            None => agent.get(&url).call(),
            Some(body) => agent.post(&url).send(&body[..]),
        }
        .unwrap_or_else(|e| panic!("{url}: {e}"));
        Reply {
            status: response.status().as_u16(),
            retry_after: response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            body: response.body_mut().read_to_string().expect("response body"),
        }
    })
    .await
    .expect("request task")
}

/// A signed WeChat query string for `timestamp`.
fn signed_query(timestamp: i64, nonce: &str) -> String {
    let timestamp = timestamp.to_string();
    let signature = hex::encode(wechat_signature(TOKEN, &timestamp, nonce));
    format!("signature={signature}&timestamp={timestamp}&nonce={nonce}")
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Messages of partition 0 of `topic` from the start, until `count` arrived (or 10 s).
async fn read_topic(config: &PipelineConfig, topic: &str, count: usize) -> Vec<OwnedMessage> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.brokers)
        .set("group.id", "ingest-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .expect("partition");
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    while out.len() < count {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, consumer.recv()).await {
            Ok(Ok(message)) => out.push(message.detach()),
            Ok(Err(e)) => panic!("reading {topic}: {e}"),
            Err(_) => break,
        }
    }
    out
}

/// How many records partition 0 of `topic` holds (its high watermark), asked of the broker.
async fn records_on(config: &PipelineConfig, topic: &str) -> i64 {
    let brokers = config.kafka.brokers.clone();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .expect("watermark client");
        let (_, high) = consumer
            .fetch_watermarks(&topic, 0, Duration::from_secs(5))
            .expect("watermarks");
        high
    })
    .await
    .expect("watermark task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wechat_url_check_echoes_only_for_a_fresh_valid_signature() {
    let (_cluster, config) = cluster_with_topics(1);
    let state = IngestState::new(&config, settings(Duration::from_secs(5))).expect("state");
    let base = spawn(state).await;
    let url = |query: String| format!("{base}/ingest/wechat?{query}");

    let good = call(
        url(format!(
            "{}&echostr=5837397749806512349",
            signed_query(now(), "1381429")
        )),
        None,
    )
    .await;
    assert_eq!(
        (good.status, good.body.as_str()),
        (200, "5837397749806512349")
    );

    let wrong_token = hex::encode(wechat_signature(
        "someoneElse",
        &now().to_string(),
        "1381429",
    ));
    let forged = call(
        url(format!(
            "signature={wrong_token}&timestamp={}&nonce=1381429&echostr=1",
            now()
        )),
        None,
    )
    .await;
    assert_eq!(forged.status, 401, "{}", forged.body);
    assert!(forged.json()["error"]
        .as_str()
        .unwrap()
        .contains("signature"));

    let not_hex = call(
        url(format!(
            "signature=zz&timestamp={}&nonce=1&echostr=1",
            now()
        )),
        None,
    )
    .await;
    assert_eq!(not_hex.status, 401, "{}", not_hex.body);

    // Correctly signed, but an hour old: a replay.
    let stale = call(
        url(format!(
            "{}&echostr=1",
            signed_query(now() - 3600, "1381429")
        )),
        None,
    )
    .await;
    assert_eq!(stale.status, 401, "{}", stale.body);
    assert!(stale.json()["error"]
        .as_str()
        .unwrap()
        .contains("timestamp"));

    let no_nonce = call(
        url(format!("signature=00&timestamp={}&echostr=1", now())),
        None,
    )
    .await;
    assert_eq!(no_nonce.status, 400, "{}", no_nonce.body);
    assert!(no_nonce.json()["error"].as_str().unwrap().contains("nonce"));

    let no_echostr = call(url(signed_query(now(), "1381429")), None).await;
    assert_eq!(no_echostr.status, 400, "{}", no_echostr.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wechat_push_lands_byte_for_byte_only_with_a_valid_signature() {
    let (_cluster, config) = cluster_with_topics(1);
    let topic = config.kafka.input_topics["wechat"].clone();
    let state = IngestState::new(&config, settings(Duration::from_secs(5))).expect("state");
    let base = spawn(state).await;
    let body = wechat_text(
        24_000_001,
        "小区门口的路灯坏了一个星期，晚上很黑，请尽快修理。",
    );

    let forged = format!(
        "{base}/ingest/wechat?signature={}&timestamp={}&nonce=77&openid=oUser1",
        "a".repeat(40),
        now()
    );
    let reply = call(forged, Some(body.clone())).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    let stale = format!(
        "{base}/ingest/wechat?{}&openid=oUser1",
        signed_query(now() - 3600, "77")
    );
    assert_eq!(call(stale, Some(body.clone())).await.status, 401);
    let empty = format!("{base}/ingest/wechat?{}", signed_query(now(), "78"));
    assert_eq!(call(empty, Some(b"  \n".to_vec())).await.status, 400);
    let encrypted = format!(
        "{base}/ingest/wechat?{}&encrypt_type=aes&msg_signature=00",
        signed_query(now(), "79")
    );
    assert_eq!(call(encrypted, Some(body.clone())).await.status, 501);
    assert_eq!(
        records_on(&config, &topic).await,
        0,
        "a refused push was produced"
    );

    let signed = format!(
        "{base}/ingest/wechat?{}&openid=oUser1",
        signed_query(now(), "80")
    );
    let reply = call(signed, Some(body.clone())).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "success"));

    let messages = read_topic(&config, &topic, 1).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].payload(),
        Some(&body[..]),
        "body changed on the way"
    );
    assert_eq!(messages[0].key(), Some(&b"oUser1"[..]));
    assert_eq!(records_on(&config, &topic).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wechat_callback_is_off_without_a_token() {
    let (_cluster, config) = cluster_with_topics(1);
    let state = IngestState::new(&config, IngestSettings::default()).expect("state");
    assert!(!state.wechat_enabled());
    let base = spawn(state).await;
    let reply = call(
        format!(
            "{base}/ingest/wechat?{}&echostr=1",
            signed_query(now(), "1")
        ),
        None,
    )
    .await;
    assert_eq!(reply.status, 404);
    assert!(
        reply.body.contains("CITYPULSE_WECHAT_TOKEN"),
        "{}",
        reply.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_push_answers_with_the_acknowledged_offset() {
    let (_cluster, config) = cluster_with_topics(1);
    let topic = config.kafka.input_topics["12345"].clone();
    let state = IngestState::new(&config, settings(Duration::from_secs(5))).expect("state");
    let base = spawn(state).await;

    let first = hotline_order(
        "GD20260001",
        "楼上装修每天早上七点开始打电钻，严重影响休息。",
    );
    let second = hotline_order("GD20260002", "小区垃圾三天没人清运，气味很大。");
    let reply = call(
        format!("{base}/ingest/hotline12345?key=GD20260001"),
        Some(first.clone()),
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let ack = reply.json();
    assert_eq!(ack["topic"], topic.as_str());
    assert_eq!(ack["partition"], 0);
    assert_eq!(ack["offset"], 0);
    // The channel's own name works as well as the alias.
    let reply = call(format!("{base}/ingest/12345"), Some(second.clone())).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(reply.json()["offset"], 1);

    let messages = read_topic(&config, &topic, 2).await;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].offset(), 0);
    assert_eq!(messages[0].payload(), Some(&first[..]));
    assert_eq!(messages[0].key(), Some(&b"GD20260001"[..]));
    assert_eq!(messages[1].payload(), Some(&second[..]));
    assert_eq!(messages[1].key(), None, "no ?key= means no key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_limited_to_the_decoders_record_size_and_channels_to_the_known_four() {
    let (_cluster, config) = cluster_with_topics(1);
    let topic = config.kafka.input_topics["110"].clone();
    let state = IngestState::new(&config, settings(Duration::from_secs(5))).expect("state");
    let base = spawn(state).await;

    let over = vec![b'x'; MAX_RECORD_BYTES + 1];
    let reply = call(format!("{base}/ingest/police110"), Some(over)).await;
    assert_eq!(reply.status, 413, "{}", reply.body);
    let signed = format!("{base}/ingest/wechat?{}", signed_query(now(), "5"));
    let reply = call(signed, Some(vec![b'<'; MAX_RECORD_BYTES + 1])).await;
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert_eq!(records_on(&config, &topic).await, 0);

    // Exactly at the limit is still accepted: the decoders decide what it is.
    let at_limit = vec![b'x'; MAX_RECORD_BYTES];
    let reply = call(format!("{base}/ingest/110"), Some(at_limit)).await;
    assert_eq!(reply.status, 202, "{}", reply.body);

    let reply = call(format!("{base}/ingest/110"), Some(Vec::new())).await;
    assert_eq!(reply.status, 400, "{}", reply.body);

    let reply = call(format!("{base}/ingest/fax"), Some(b"{}".to_vec())).await;
    assert_eq!(reply.status, 404, "{}", reply.body);
    let known = reply.json()["known_channels"].clone();
    assert_eq!(
        known,
        serde_json::json!(["weibo", "wechat", "12345", "110"])
    );
    assert_eq!(records_on(&config, &topic).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_is_gone_gets_503_within_the_timeout_not_a_hang() {
    let (cluster, config) = cluster_with_topics(1);
    let timeout = Duration::from_millis(1000);
    let state = IngestState::new(&config, settings(timeout)).expect("state");
    let base = spawn(state).await;
    // Warm up: the producer has connected and knows the topic's leader. On a loaded machine the
    // first connection can take longer than the short timeout under test, so retry a few times.
    let mut reply = call(format!("{base}/ingest/weibo"), Some(b"{\"id\":1}".to_vec())).await;
    for _ in 0..10 {
        if reply.status == 202 {
            break;
        }
        reply = call(format!("{base}/ingest/weibo"), Some(b"{\"id\":1}".to_vec())).await;
    }
    assert_eq!(reply.status, 202, "{}", reply.body);

    cluster.broker_down(1).expect("broker down");
    let started = Instant::now();
    let reply = call(format!("{base}/ingest/weibo"), Some(b"{\"id\":2}".to_vec())).await;
    let took = started.elapsed();
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.retry_after.as_deref(), Some("1"));
    assert!(reply.json()["error"]
        .as_str()
        .unwrap()
        .contains("raw.weibo"));
    assert!(took < timeout * 4, "answered after {took:?}");

    let signed = format!("{base}/ingest/wechat?{}", signed_query(now(), "9"));
    let reply = call(signed, Some(wechat_text(1, "停电了"))).await;
    assert_eq!(reply.status, 503, "WeChat must retry: {}", reply.body);
}

/// A broker address where nothing listens: a port bound and released at once.
fn dead_broker_config() -> PipelineConfig {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut config = PipelineConfig::default();
    config.kafka.brokers = format!("127.0.0.1:{port}");
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_beyond_the_in_flight_limit_are_refused_at_once() {
    let config = dead_broker_config();
    let timeout = Duration::from_millis(2000);
    let state = IngestState::new(
        &config,
        IngestSettings {
            max_in_flight: 1,
            ..settings(timeout)
        },
    )
    .expect("state");
    let base = spawn(state).await;
    // The first push waits for a broker that never answers, holding the one permit.
    let waiting = tokio::spawn(call(format!("{base}/ingest/weibo"), Some(b"{}".to_vec())));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let reply = call(format!("{base}/ingest/12345"), Some(b"{}".to_vec())).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(reply.json()["error"]
        .as_str()
        .unwrap()
        .contains("in progress"));
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    let first = waiting.await.expect("first push");
    assert_eq!(first.status, 503);
    assert!(first.json()["error"]
        .as_str()
        .unwrap()
        .contains("raw.weibo"));
    // The permit came back with the first answer.
    let reply = call(format!("{base}/ingest/12345"), Some(b"{}".to_vec())).await;
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("raw.12345"),
        "{}",
        reply.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_broker_at_all_gets_503() {
    let config = dead_broker_config();
    let timeout = Duration::from_millis(800);
    let state = IngestState::new(&config, settings(timeout)).expect("the producer connects lazily");
    let base = spawn(state).await;
    let started = Instant::now();
    let reply = call(
        format!("{base}/ingest/12345"),
        Some(hotline_order("GD1", "路灯不亮")),
    )
    .await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(started.elapsed() < timeout * 4, "{:?}", started.elapsed());
}
