//! End to end over the Kafka protocol on an embedded broker, both stages of `run` (routing, then
//! detection routing each event with its incident id): a known mix of good and bad records in,
//! exact outputs out, a cluster of reports sharing one incident id; and a stop/restart in the
//! same groups that loses nothing and duplicates nothing.

mod common;

use citypulse::alert_feed::AlertFeed;
use citypulse::config::PipelineConfig;
use citypulse::metrics::Metrics;
use citypulse::{detection, pipeline};
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const TEXTS: &[&str] = &[
    "小区门口的马路挖开一个多月没人管，晚上没有路灯，老人经过容易摔倒，请尽快修复路面。",
    "附近化工厂每天晚上排放刺鼻气味，窗户都不敢开，怀疑偷排废气，请环保部门来检测。",
    "公交车早高峰经常不按时到站，等了四十分钟才来一辆，希望增加班次。",
    "孩子学校乱收补课费，每学期要交两千元，家长意见很大。",
    "公司拖欠我们三个月工资，老板联系不上，电话13812345678，请劳动部门帮忙。",
    "社区诊所医生态度恶劣，打疫苗排队三小时，希望卫生部门整顿。",
];

/// Raw records to produce: (topic, bytes).
type Inputs = Vec<(String, Vec<u8>)>;

/// Both stages of `run`, as `citypulse run` starts them: routing and detection.
struct Instance {
    shutdown: CancellationToken,
    routing: JoinHandle<Result<(), pipeline::PipelineError>>,
    detection: JoinHandle<Result<(), pipeline::PipelineError>>,
}

impl Instance {
    fn start(config: &PipelineConfig) -> Self {
        let shutdown = CancellationToken::new();
        let routing = {
            let (config, stages, stop) = (config.clone(), stages(config), shutdown.clone());
            tokio::spawn(async move { pipeline::run(&config, stages, health(), stop).await })
        };
        let detection = {
            let (config, stop) = (config.clone(), shutdown.clone());
            tokio::spawn(async move {
                detection::run(&config, AlertFeed::new(), Metrics::new(), stop).await
            })
        };
        Instance {
            shutdown,
            routing,
            detection,
        }
    }

    /// Stop as SIGTERM does: both stages drain and commit.
    async fn stop(self) {
        self.shutdown.cancel();
        self.routing.await.unwrap().expect("routing stops cleanly");
        self.detection
            .await
            .unwrap()
            .expect("detection stops cleanly");
    }
}

/// A burst water main in 雨花区, reported a few minutes apart on three channels in nearly the
/// same words: one incident.
fn water_main_reports(config: &PipelineConfig) -> (Inputs, Vec<String>) {
    let topic = |channel: &str| config.kafka.input_topics[channel].clone();
    let text = |i: usize| {
        format!(
            "雨花区韶山路与劳动路交叉口自来水管爆裂，路面大量积水{}，附近小区全部停水，请尽快派人抢修。",
            ["", "，车辆无法通行", "，水还在往外冒", "，已经一个小时了"][i % 4]
        )
    };
    let mut inputs = Vec::new();
    let mut ids = Vec::new();
    for i in 0..3 {
        let order = serde_json::json!({
            "工单编号": format!("WM{i:04}"),
            "来电时间": format!("2026-11-25 10:0{}:00", 2 * i),
            "来电号码": "13912345678",
            "诉求类型": "求助",
            "诉求标题": "自来水管爆裂",
            "诉求内容": text(i),
            "事发地址": "雨花区韶山路与劳动路交叉口",
            "所属区县": "雨花区",
            "来源渠道": "电话"
        });
        inputs.push((topic("12345"), order.to_string().into_bytes()));
        ids.push(format!("12345:WM{i:04}"));
    }
    let call = serde_json::json!({
        "jjdbh": "JWM0001",
        "bjsj": "2026-11-25 10:03:00",
        "bjrdh": "13787654321",
        "afdd": "雨花区韶山路与劳动路交叉口",
        "bjnr": text(1),
        "jqlb": "求助",
        "xzqh": "430111"
    });
    inputs.push((topic("110"), call.to_string().into_bytes()));
    ids.push("110:JWM0001".to_string());
    let post = serde_json::json!({
        "id": 4900000999u64,
        "idstr": "4900000999",
        "created_at": "Wed Nov 25 10:05:00 +0800 2026",
        "text": text(2),
        "user": {"idstr": "5566778899", "screen_name": "长沙小市民", "location": "湖南 长沙", "followers_count": 321, "verified": false},
        "reposts_count": 3, "comments_count": 5, "attitudes_count": 12
    });
    inputs.push((topic("weibo"), post.to_string().into_bytes()));
    ids.push("weibo:4900000999".to_string());
    (inputs, ids)
}

/// The inputs, the ids of the good records, and how many are bad.
fn good_and_bad_inputs(
    config: &citypulse::config::PipelineConfig,
) -> (Inputs, BTreeSet<String>, usize) {
    let topic = |channel: &str| config.kafka.input_topics[channel].clone();
    let mut inputs = Vec::new();
    let mut good_ids = BTreeSet::new();
    for (i, text) in TEXTS.iter().enumerate() {
        inputs.push((
            topic("12345"),
            hotline_order(&format!("GD2026{i:04}"), text),
        ));
        good_ids.insert(format!("12345:GD2026{i:04}"));
        inputs.push((topic("110"), police_call(&format!("J4301{i:04}"), text)));
        good_ids.insert(format!("110:J4301{i:04}"));
        inputs.push((topic("weibo"), weibo_post(4900000000 + i as u64, text)));
        good_ids.insert(format!("weibo:{}", 4900000000 + i as u64));
        inputs.push((topic("wechat"), wechat_text(7000 + i as u64, text)));
        good_ids.insert(format!("wechat:{}", 7000 + i as u64));
    }
    // Not a citizen report: skipped, not published.
    inputs.push((topic("wechat"), wechat_subscribe()));
    let bad = vec![
        (
            topic("12345"),
            b"{\"\xe5\xb7\xa5\xe5\x8d\x95\xe7\xbc\x96\xe5\x8f\xb7\": \"GD1\", ".to_vec(),
        ),
        (
            topic("110"),
            br#"{"jjdbh":"J1","bjsj":"2026-11-25 22:40:10"}"#.to_vec(),
        ),
        (
            topic("weibo"),
            br#"{"id":1,"created_at":"Wed Nov 25 09:12:03 +0800 2026","text":["hi"]}"#.to_vec(),
        ),
        (topic("wechat"), b"<xml><MsgType>text</MsgType>".to_vec()),
        (topic("110"), vec![0xff, 0xfe, 0x00]),
    ];
    let bad_count = bad.len();
    inputs.extend(bad);
    (inputs, good_ids, bad_count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_mix_comes_out_exactly_once_with_reasons_for_the_bad() {
    let (cluster, config) = cluster_with_topics(2);
    assert!(config.pipeline.detection, "detection runs by default");
    assert!(
        config.pipeline.route_after_detection,
        "routing after detection, so routed events carry their incident id, is the default"
    );
    let (mut inputs, mut good_ids, bad_count) = good_and_bad_inputs(&config);
    let (reports, report_ids) = water_main_reports(&config);
    inputs.extend(reports);
    good_ids.extend(report_ids.iter().cloned());
    produce(&config.kafka.brokers, &inputs).await;

    let shutdown = CancellationToken::new();
    let health = health();
    let task = {
        let (config, stages, health, stop) = (
            config.clone(),
            stages(&config),
            health.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move { pipeline::run(&config, stages, health, stop).await })
    };
    let detection_task = {
        let (config, stop) = (config.clone(), shutdown.clone());
        tokio::spawn(async move {
            detection::run(&config, AlertFeed::new(), Metrics::new(), stop).await
        })
    };
    let outputs = read_outputs(&config, good_ids.len() + bad_count, Duration::from_secs(60)).await;
    assert!(health.not_ready_reasons().is_none(), "ready while running");
    shutdown.cancel();
    task.await.unwrap().expect("pipeline stops cleanly");
    detection_task
        .await
        .unwrap()
        .expect("detection stops cleanly");

    let mut seen_ids = BTreeMap::new();
    let mut incident_ids = BTreeMap::new();
    let mut dead = Vec::new();
    for message in &outputs {
        if message.topic == config.kafka.dlq_topic {
            dead.push(message.clone());
            continue;
        }
        let event = message.json();
        let id = event["id"].as_str().unwrap().to_string();
        *seen_ids.entry(id.clone()).or_insert(0) += 1;
        if report_ids.contains(&id) {
            incident_ids.insert(id.clone(), event["incident_id"].as_str().map(str::to_owned));
        }
        let route = event["route"].as_str().unwrap();
        if message.topic == config.kafka.routed_topic {
            assert_eq!(route, "routed");
            assert_eq!(
                message.key.as_deref(),
                event["department"].as_str(),
                "routed key is the department"
            );
        } else if message.topic == config.kafka.triage_topic {
            assert_eq!(route, "triage");
        } else {
            assert_eq!(message.topic, config.kafka.ignored_topic);
            assert_eq!(route, "ignored");
            assert!(
                id.starts_with("weibo:") || id.starts_with("wechat:"),
                "only social posts are ignored"
            );
        }
        if id.starts_with("110:") {
            assert_eq!(event["department"], "公安局指挥中心");
            assert_eq!(route, "routed");
        }
        let text = String::from_utf8_lossy(&message.payload);
        for raw in [
            "13812345678",
            "13912345678",
            "13787654321",
            "5566778899",
            "oUser700",
        ] {
            assert!(!text.contains(raw), "raw identifier {raw} leaked in {text}");
        }
        assert_eq!(event["schema_version"], 1);
        assert!(event["source"]["topic"]
            .as_str()
            .unwrap()
            .starts_with("raw."));
    }
    assert_eq!(
        seen_ids.keys().cloned().collect::<BTreeSet<_>>(),
        good_ids,
        "every good record routed, triaged or ignored"
    );
    assert!(
        seen_ids.values().all(|&n| n == 1),
        "each exactly once: {seen_ids:?}"
    );
    // The reports' order on the internal topic depends on the interleaving of the input
    // partitions; whichever came first opened the cluster, every later one carries its id.
    let shared: BTreeSet<&String> = incident_ids.values().flatten().collect();
    let carrying = incident_ids.values().filter(|id| id.is_some()).count();
    assert_eq!(
        shared.len(),
        1,
        "the reports of one burst water main share one incident id: {incident_ids:?}"
    );
    assert!(
        carrying >= report_ids.len() - 1,
        "every report from the second on carries the incident id: {incident_ids:?}"
    );
    assert_eq!(dead.len(), bad_count, "every bad record dead-lettered once");
    let mut reasons: Vec<&str> = dead
        .iter()
        .map(|m| m.headers["citypulse.reason"].as_str())
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            "invalid_json",
            "invalid_utf8",
            "invalid_xml",
            "missing_field",
            "wrong_type"
        ]
    );
    for message in &dead {
        assert!(!message.headers["citypulse.error"].is_empty());
        assert!(message.headers["citypulse.source.topic"].starts_with("raw."));
        assert!(message.headers["citypulse.source.offset"]
            .parse::<i64>()
            .is_ok());
        assert!(
            inputs.iter().any(|(_, bytes)| bytes == &message.payload),
            "DLQ carries the original bytes"
        );
    }
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_and_restarting_in_the_same_group_loses_nothing() {
    let (cluster, mut config) = cluster_with_topics(3);
    // The one-hop flow (stage 1 routes); the default two-stage flow, whose both commits a
    // restart must honour, is restarted by tests/fault_shutdown.rs and fault_crash.rs.
    config.pipeline.route_after_detection = false;
    let topic = config.kafka.input_topics["12345"].clone();
    let first: Vec<(String, Vec<u8>)> = (0..300)
        .map(|i| {
            (
                topic.clone(),
                hotline_order(&format!("A{i:05}"), TEXTS[i % TEXTS.len()]),
            )
        })
        .collect();
    produce(&config.kafka.brokers, &first).await;

    let instance = Instance::start(&config);
    // Stop mid-stream: as soon as some outputs exist.
    let early = read_outputs(&config, 50, Duration::from_secs(60)).await;
    assert!(
        early.len() >= 50,
        "pipeline produced output before the stop"
    );
    instance.stop().await;

    let second: Vec<(String, Vec<u8>)> = (300..500)
        .map(|i| {
            (
                topic.clone(),
                hotline_order(&format!("A{i:05}"), TEXTS[i % TEXTS.len()]),
            )
        })
        .collect();
    produce(&config.kafka.brokers, &second).await;
    let instance = Instance::start(&config);
    let outputs = read_outputs(&config, 500, Duration::from_secs(90)).await;
    instance.stop().await;

    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for message in &outputs {
        let id = message.json()["id"].as_str().unwrap().to_string();
        *counts.entry(id).or_default() += 1;
    }
    let missing: Vec<String> = (0..500)
        .map(|i| format!("12345:A{i:05}"))
        .filter(|id| !counts.contains_key(id))
        .collect();
    assert!(missing.is_empty(), "lost across the restart: {missing:?}");
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    assert_eq!(
        duplicates, 0,
        "a graceful stop commits everything it finished"
    );
    drop(cluster);
}
