//! Floods through the real path: a flood of 12345 work orders, each from a never-seen caller,
//! about a never-seen district, carrying never-seen terms, goes through the real stages
//! (decode → mask → segment → classify → route) and detection. Memory must stay within a
//! stated bound, throughput must not collapse as the flood goes on, the metrics must not grow a
//! series per author or district, and a real incident after the flood must still alert.
//!
//! CI runs a reduced flood; the full one (10^6 events, so 10^6 distinct authors, 10^6 distinct
//! districts and 2·10^6 distinct terms) is
//! `CITYPULSE_FLOOD_EVENTS=1000000 cargo test --release --test floods -- --nocapture`,
//! with its figures in `fuzz/README.md`.

use chrono::{DateTime, Duration, FixedOffset, TimeZone};
use citypulse::assets;
use citypulse::config::PipelineConfig;
use citypulse::detect::{AlertKind, AlertStatus, DetectConfig, Detector};
use citypulse::detection::detect_input;
use citypulse::event::Channel;
use citypulse::metrics::Metrics;
use citypulse::stages::{Outcome, Stages};
use citypulse::text::mask::AuthorHasher;
use std::time::Instant;

/// Flood events in CI: a fifth of the documented run, well inside the 90-second budget.
const DEFAULT_FLOOD_EVENTS: usize = 200_000;

/// RSS growth allowed from the end of the warm-up to the end of the flood. Detection's caps
/// (districts, clusters, terms per district, the 2 MiB sketch) bound its state at a few tens of
/// MiB whatever the flood; the rest is allocator slack.
const MAX_RSS_GROWTH_MIB: u64 = 160;

/// The last tenth of the flood must run at least this share of the first tenth's rate.
const MIN_THROUGHPUT_RATIO: f64 = 0.5;

/// Every tenth flood event is ordinary traffic in a real district, so the real districts stay
/// live (and are not the ones evicted) while unknown districts pour in.
const BACKGROUND_EVERY: usize = 10;

/// The flood is spread over this much event time, whatever its size.
const FLOOD_HOURS: i64 = 6;

const REAL_DISTRICTS: [&str; 5] = ["芙蓉区", "天心区", "岳麓区", "开福区", "雨花区"];

/// Everyday complaints, written for this test: the baseline vocabulary of a quiet city.
const EVERYDAY: [&str; 10] = [
    "小区楼下烧烤油烟很大，晚上窗户都不敢开，希望有关部门管一管",
    "路口的红绿灯时间太短，老人过马路来不及，建议延长绿灯时间",
    "公交车到站时间不准，早上等了四十分钟，希望增加班次",
    "楼上装修噪音从早到晚，周末也不停，影响休息",
    "学校门口乱停车严重，接孩子的时候堵得走不动",
    "菜市场周边垃圾没人清运，气味很大，苍蝇很多",
    "人行道上的井盖松动，踩上去会响，担心有人摔倒",
    "物业费涨价没有公示，业主意见很大，请求核实",
    "路灯坏了好几天，晚上回家一片漆黑，很不安全",
    "广场舞音响声音太大，晚上十点以后还在跳",
];

fn flood_events() -> usize {
    match std::env::var("CITYPULSE_FLOOD_EVENTS") {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("CITYPULSE_FLOOD_EVENTS={value:?} is not a count")),
        Err(_) => DEFAULT_FLOOD_EVENTS,
    }
}

fn t0() -> DateTime<FixedOffset> {
    FixedOffset::east_opt(8 * 3600)
        .expect("UTC+8 is a valid offset")
        .with_ymd_and_hms(2026, 11, 2, 0, 0, 0)
        .single()
        .expect("a valid date")
}

/// Resident set size of this process in KiB, from /proc (Linux); `None` elsewhere.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A never-seen ASCII word for `n` (`zq` and base-26 digits): jieba keeps a run of Latin
/// letters as one token and the segmenter counts it as content, so it reaches detection.
fn term(n: u64) -> String {
    let mut word = String::from("zq");
    let mut n = n;
    loop {
        word.push(char::from(b'a' + (n % 26) as u8));
        n /= 26;
        if n == 0 {
            break;
        }
    }
    word
}

/// A 12345 work order; the caller number is the author, so a distinct one per event floods
/// the author dimension.
fn work_order(
    id: &str,
    at: DateTime<FixedOffset>,
    caller: u64,
    district: &str,
    text: &str,
) -> Vec<u8> {
    serde_json::json!({
        "工单编号": id,
        "来电时间": at.format("%Y-%m-%d %H:%M:%S").to_string(),
        "来电号码": format!("1{:010}", 3_000_000_000 + caller),
        "诉求类型": "投诉",
        "诉求内容": text,
        "所属区县": district,
    })
    .to_string()
    .into_bytes()
}

/// The path under test: the real stages and a detector, as `process` wires them.
struct Path {
    stages: Stages,
    detector: Detector,
}

impl Path {
    /// Run one record through the stages and detection; returns the incident alerts it fired.
    fn push(
        &mut self,
        record: &[u8],
        received_at: DateTime<FixedOffset>,
    ) -> Vec<(String, AlertStatus)> {
        match self
            .stages
            .process(Channel::Hotline12345, record, None, received_at)
        {
            Outcome::Event { event, tokens } => self
                .detector
                .observe(&detect_input(&event, &tokens))
                .alerts
                .into_iter()
                .filter(|a| a.kind == AlertKind::Incident)
                .map(|a| (a.district.unwrap_or_default(), a.status))
                .collect(),
            Outcome::Skipped { reason } => panic!("a work order was skipped: {reason}"),
            Outcome::DeadLetter(dead) => {
                panic!("a generated work order was dead-lettered: {}", dead.message)
            }
        }
    }

    /// Series in the metrics exposition: must not grow with distinct authors or districts.
    fn metric_series(&self) -> usize {
        self.stages
            .metrics
            .render()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .count()
    }
}

#[test]
fn a_flood_of_distinct_authors_terms_and_districts_stays_bounded_and_incidents_still_alert() {
    let stages = assets::load_stages(
        &PipelineConfig::default(),
        AuthorHasher::new(b"flood-author-key-0123456789"),
        Metrics::new(),
    )
    .expect("embedded assets load");
    let config = DetectConfig::default();
    let mut path = Path {
        stages,
        detector: Detector::new(config.clone()),
    };
    let mut caller = 0u64;
    let mut next_caller = || {
        caller += 1;
        caller
    };

    // A day of ordinary traffic in the real districts: the baselines detection compares with.
    let warmup = 4800i64;
    for i in 0..warmup {
        let at = t0() + Duration::seconds(i * 86_400 / warmup);
        let district = REAL_DISTRICTS[(i % 5) as usize];
        let text = format!("{}{}", district, EVERYDAY[(i % 10) as usize]);
        let record = work_order(&format!("W{i}"), at, next_caller(), district, &text);
        path.push(&record, at);
    }
    let rss_before = rss_kib();
    let series_before = path.metric_series();

    // The flood: each event from a new caller, about a new district, with two new terms.
    let n = flood_events();
    let flood_start = t0() + Duration::days(1);
    let step_ms = FLOOD_HOURS * 3_600_000 / n.max(1) as i64;
    let tenth = (n / 10).max(1);
    let mut tenth_secs = Vec::new();
    let mut tenth_started = Instant::now();
    let started = Instant::now();
    let mut terms = 0u64;
    for i in 0..n {
        let at = flood_start + Duration::milliseconds(i as i64 * step_ms);
        let record = if i % BACKGROUND_EVERY == 0 {
            let district = REAL_DISTRICTS[(i / BACKGROUND_EVERY) % 5];
            let text = format!("{district}{}", EVERYDAY[(i / BACKGROUND_EVERY) % 10]);
            work_order(&format!("B{i}"), at, next_caller(), district, &text)
        } else {
            let (a, b) = (term(terms), term(terms + 1));
            terms += 2;
            let district = format!("虚构{i}区");
            let text = format!("{a} {b} 这里出现了新情况，请处理");
            work_order(&format!("F{i}"), at, next_caller(), &district, &text)
        };
        path.push(&record, at);
        if (i + 1) % tenth == 0 {
            tenth_secs.push(tenth_started.elapsed().as_secs_f64());
            tenth_started = Instant::now();
        }
    }
    let flood_secs = started.elapsed().as_secs_f64();
    let rss_after = rss_kib();
    let series_after = path.metric_series();
    let stats = path.detector.stats();

    // A burst water main in 雨花区 after the flood: twenty reports over ten minutes, each from a
    // different caller, in different words.
    let incident_start = flood_start + Duration::hours(FLOOD_HOURS) + Duration::minutes(5);
    let mut incident_alerts = Vec::new();
    for k in 0..20i64 {
        let at = incident_start + Duration::seconds(k * 30);
        let text = match k % 4 {
            0 => "雨花区韶山路水管爆管了，路面全是水，家里停水，请尽快抢修",
            1 => "韶山路这边爆管，水冒得很高，整栋楼停水",
            2 => "雨花区韶山路爆管停水，车都过不去，希望马上派人抢修",
            _ => "韶山路口自来水管爆管，一直在喷水，附近小区全部停水",
        };
        let record = work_order(&format!("R{k}"), at, next_caller(), "雨花区", text);
        incident_alerts.extend(path.push(&record, at));
    }

    let rate = |secs: f64| tenth as f64 / secs.max(1e-9);
    let first = tenth_secs.first().copied().map(rate).unwrap_or(0.0);
    let last = tenth_secs.last().copied().map(rate).unwrap_or(0.0);
    let mib = |kib: Option<u64>| kib.map(|k| k / 1024);
    eprintln!(
        "flood: {n} events ({} distinct flood districts, {terms} distinct terms, {caller} distinct \
         callers) in {flood_secs:.1} s = {:.0} events/s; first tenth {first:.0}/s, last tenth \
         {last:.0}/s; RSS {:?} → {:?} MiB; metric series {series_before} → {series_after}; {stats:?}",
        n - n.div_ceil(BACKGROUND_EVERY),
        n as f64 / flood_secs,
        mib(rss_before),
        mib(rss_after),
    );

    assert!(terms as usize >= n, "{terms} distinct terms for {n} events");
    assert!(stats.districts <= config.max_districts, "{stats:?}");
    assert!(stats.open_clusters <= config.max_districts * config.max_clusters_per_district);
    assert!(stats.tracked_terms <= config.max_districts * config.max_terms_per_district);
    assert!(stats.tracked_categories <= config.max_districts * config.max_categories_per_district);
    assert!(stats.recent_alerts <= config.max_recent_alerts);
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        let growth_mib = after.saturating_sub(before) / 1024;
        assert!(
            growth_mib <= MAX_RSS_GROWTH_MIB,
            "RSS grew {growth_mib} MiB ({before} → {after} KiB), over the {MAX_RSS_GROWTH_MIB} MiB bound"
        );
    } else {
        eprintln!("floods: no /proc/self/status here; RSS bound not checked");
    }
    assert!(
        series_after <= series_before + 64,
        "metric series grew with the flood: {series_before} → {series_after}"
    );
    assert!(
        last >= first * MIN_THROUGHPUT_RATIO,
        "throughput collapsed: first tenth {first:.0}/s, last tenth {last:.0}/s ({tenth_secs:?})"
    );
    assert!(
        incident_alerts
            .iter()
            .any(|(district, status)| district == "雨花区" && *status == AlertStatus::Firing),
        "no incident fired in 雨花区 after the flood: {incident_alerts:?}"
    );
}
