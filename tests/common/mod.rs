//! Shared helpers for the Kafka tests: an embedded broker (librdkafka's mock cluster, spoken to
//! over the real Kafka protocol), a producer of raw records and a reader of the output topics.
#![allow(dead_code)]

pub mod process;

use chrono::{DateTime, FixedOffset, TimeZone};
use citypulse::assets;
use citypulse::config::PipelineConfig;
use citypulse::demo::generator::{GeneratorConfig, IncidentKind, TrafficGenerator};
use citypulse::health::Health;
use citypulse::metrics::Metrics;
use citypulse::stages::Stages;
use citypulse::text::mask::AuthorHasher;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const TEST_KEY: &[u8] = b"test-author-key-0123456789";

/// A mock cluster with the input and output topics of the default pipeline.
pub fn cluster_with_topics(
    input_partitions: i32,
) -> (MockCluster<'static, DefaultProducerContext>, PipelineConfig) {
    let cluster = MockCluster::new(1).expect("mock cluster starts");
    let mut config = PipelineConfig::default();
    config.kafka.brokers = cluster.bootstrap_servers();
    config.kafka.group_id = format!("citypulse-test-{}", std::process::id());
    config.pipeline.commit_interval_ms = 200;
    config.pipeline.workers = 2;
    for (_, topic) in config.input_topics() {
        cluster
            .create_topic(&topic, input_partitions, 1)
            .expect("topic created");
    }
    for topic in [
        &config.kafka.routed_topic,
        &config.kafka.triage_topic,
        &config.kafka.dlq_topic,
        &config.kafka.ignored_topic,
        &config.kafka.alerts_topic,
    ] {
        cluster.create_topic(topic, 2, 1).expect("topic created");
    }
    // Keyed by district: enough partitions that two instances each own several districts.
    cluster
        .create_topic(&config.kafka.events_topic, 6, 1)
        .expect("topic created");
    (cluster, config)
}

pub fn stages(config: &PipelineConfig) -> Arc<Stages> {
    Arc::new(
        assets::load_stages(config, AuthorHasher::new(TEST_KEY), Metrics::new())
            .expect("embedded assets load"),
    )
}

pub fn health() -> Arc<Health> {
    let health = Arc::new(Health::new());
    health.set_models_loaded(true);
    health
}

/// Produce raw records to topics, waiting for every acknowledgement.
pub async fn produce(brokers: &str, records: &[(String, Vec<u8>)]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("producer");
    for (topic, payload) in records {
        producer
            .send(
                FutureRecord::<(), _>::to(topic).payload(payload),
                Duration::from_secs(10),
            )
            .await
            .expect("input record acknowledged");
    }
}

/// One message read from an output topic.
#[derive(Debug, Clone)]
pub struct OutputMessage {
    pub topic: String,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

impl OutputMessage {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).expect("output payload is JSON")
    }
}

/// Read the output topics from the beginning until `expected` messages arrived, or `timeout`.
pub async fn read_outputs(
    config: &PipelineConfig,
    expected: usize,
    timeout: Duration,
) -> Vec<OutputMessage> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.brokers)
        .set("group.id", format!("reader-{}", rand::random::<u64>()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    consumer
        .subscribe(&[
            &config.kafka.routed_topic,
            &config.kafka.triage_topic,
            &config.kafka.ignored_topic,
            &config.kafka.dlq_topic,
        ])
        .expect("subscribe");
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < expected {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        let Ok(Ok(message)) = tokio::time::timeout(remaining, consumer.recv()).await else {
            break;
        };
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(OutputMessage {
            topic: message.topic().to_string(),
            key: message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: message.payload().unwrap_or_default().to_vec(),
            headers,
        });
    }
    // A short grace period to catch anything beyond the expected count (duplicates).
    while let Ok(Ok(message)) =
        tokio::time::timeout(Duration::from_millis(1500), consumer.recv()).await
    {
        out.push(OutputMessage {
            topic: message.topic().to_string(),
            key: message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: message.payload().unwrap_or_default().to_vec(),
            headers: BTreeMap::new(),
        });
    }
    out
}

/// A 12345 work order in the Chinese-key format.
pub fn hotline_order(id: &str, content: &str) -> Vec<u8> {
    serde_json::json!({
        "工单编号": id,
        "来电时间": "2026-11-25 09:12:03",
        "来电号码": "13912345678",
        "诉求类型": "投诉",
        "诉求标题": "反映问题",
        "诉求内容": content,
        "事发地址": "雨花区韶山路",
        "所属区县": "雨花区",
        "来源渠道": "电话"
    })
    .to_string()
    .into_bytes()
}

/// A 110 dispatch record.
pub fn police_call(id: &str, content: &str) -> Vec<u8> {
    serde_json::json!({
        "jjdbh": id,
        "bjsj": "2026-11-25 22:40:10",
        "bjrdh": "13787654321",
        "afdd": "岳麓区桃子湖路",
        "bjnr": content,
        "jqlb": "治安",
        "x": 112.93,
        "y": 28.18,
        "xzqh": "430104"
    })
    .to_string()
    .into_bytes()
}

/// A Weibo status.
pub fn weibo_post(id: u64, text: &str) -> Vec<u8> {
    serde_json::json!({
        "id": id,
        "idstr": id.to_string(),
        "created_at": "Wed Nov 25 09:12:03 +0800 2026",
        "text": text,
        "user": {"idstr": "5566778899", "screen_name": "长沙小市民", "location": "湖南 长沙", "followers_count": 321, "verified": false},
        "reposts_count": 3, "comments_count": 5, "attitudes_count": 12
    })
    .to_string()
    .into_bytes()
}

/// A WeChat text message callback.
pub fn wechat_text(msg_id: u64, content: &str) -> Vec<u8> {
    format!(
        "<xml><ToUserName><![CDATA[gh_citypulse]]></ToUserName><FromUserName><![CDATA[oUser{msg_id}]]></FromUserName><CreateTime>1764033123</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>"
    )
    .into_bytes()
}

pub fn wechat_subscribe() -> Vec<u8> {
    b"<xml><ToUserName><![CDATA[gh_citypulse]]></ToUserName><FromUserName><![CDATA[oNewFan]]></FromUserName><CreateTime>1764033123</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event></xml>".to_vec()
}

/// A burst water main in 雨花区, reported minutes apart on three channels in nearly the same
/// words (as in `kafka_e2e.rs`), for the tests of inline detection: (input topic, record, event id), in event-time order.
pub fn water_main_reports(config: &PipelineConfig) -> Vec<(String, Vec<u8>, String)> {
    let topic = |channel: &str| config.kafka.input_topics[channel].clone();
    let text = |i: usize| {
        format!(
            "雨花区韶山路与劳动路交叉口自来水管爆裂，路面大量积水{}，附近小区全部停水，请尽快派人抢修。",
            ["", "，车辆无法通行", "，水还在往外冒", "，已经一个小时了"][i % 4]
        )
    };
    let order = |i: usize| {
        serde_json::json!({
            "工单编号": format!("WM{i:04}"),
            "来电时间": format!("2026-11-25 10:0{}:00", 2 * i),
            "来电号码": "13912345678",
            "诉求类型": "求助",
            "诉求标题": "自来水管爆裂",
            "诉求内容": text(i),
            "事发地址": "雨花区韶山路与劳动路交叉口",
            "所属区县": "雨花区",
            "来源渠道": "电话"
        })
        .to_string()
        .into_bytes()
    };
    let call = serde_json::json!({
        "jjdbh": "JWM0001",
        "bjsj": "2026-11-25 10:05:00",
        "bjrdh": "13787654321",
        "afdd": "雨花区韶山路与劳动路交叉口",
        "bjnr": text(1),
        "jqlb": "求助",
        "xzqh": "430111"
    });
    let post = serde_json::json!({
        "id": 4900000999u64,
        "idstr": "4900000999",
        "created_at": "Wed Nov 25 10:07:00 +0800 2026",
        "text": text(2),
        "user": {"idstr": "5566778899", "screen_name": "长沙小市民", "location": "湖南 长沙", "followers_count": 321, "verified": false},
        "reposts_count": 3, "comments_count": 5, "attitudes_count": 12
    });
    vec![
        (topic("12345"), order(0), "12345:WM0000".into()),
        (topic("12345"), order(1), "12345:WM0001".into()),
        (topic("12345"), order(2), "12345:WM0002".into()),
        (
            topic("110"),
            call.to_string().into_bytes(),
            "110:JWM0001".into(),
        ),
        (
            topic("weibo"),
            post.to_string().into_bytes(),
            "weibo:4900000999".into(),
        ),
    ]
}

/// A stream in event-time order: background traffic over three hours across the districts, and
/// two incidents in different districts (雨花区 and 岳麓区), for the detection tests.
pub fn incident_stream() -> Vec<(DateTime<FixedOffset>, citypulse::event::Channel, Vec<u8>)> {
    let start = FixedOffset::east_opt(8 * 3600)
        .unwrap()
        .with_ymd_and_hms(2026, 11, 25, 8, 0, 0)
        .unwrap();
    let mut generator = TrafficGenerator::new(GeneratorConfig {
        seed: 11,
        malformed_share: 0.0,
        ..GeneratorConfig::default()
    });
    let mut records = Vec::new();
    for i in 0..1800 {
        let at = start + chrono::Duration::seconds(i * 6);
        let record = generator.next_record(at);
        records.push((at, record.channel, record.bytes));
    }
    for (kind, district, offset_minutes) in [
        (IncidentKind::WaterMainBurst, "雨花区", 100),
        (IncidentKind::GasSmell, "岳麓区", 130),
    ] {
        let begin = start + chrono::Duration::minutes(offset_minutes);
        for (at, record) in
            generator.incident(kind, district, begin, chrono::Duration::minutes(30), 16)
        {
            records.push((at, record.channel, record.bytes));
        }
    }
    records.sort_by_key(|(at, _, _)| *at);
    records
}

/// Every alert on the alerts topic from its start, read by a new group until 6 s pass
/// without one.
pub async fn read_alerts(config: &PipelineConfig) -> Vec<citypulse::detect::Alert> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.brokers)
        .set(
            "group.id",
            format!("alert-reader-{}", rand::random::<u32>()),
        )
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("alert reader");
    consumer
        .subscribe(&[&config.kafka.alerts_topic])
        .expect("subscribe to the alerts topic");
    let mut alerts = Vec::new();
    while let Ok(Ok(message)) = tokio::time::timeout(Duration::from_secs(6), consumer.recv()).await
    {
        let payload = message.payload().expect("an alert has a payload");
        alerts.push(serde_json::from_slice(payload).expect("an alert parses"));
    }
    alerts
}
