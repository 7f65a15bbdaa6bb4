//! Detector tests on hand-built inputs with stepped event time: clustering, the lifecycle,
//! lateness, determinism and the state caps.

use super::*;
use crate::demo::generator::daily_rhythm;
use crate::text::tokens::TokenList;
use chrono::{Duration, FixedOffset, TimeZone};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DISTRICTS: [&str; 9] = [
    "芙蓉区",
    "天心区",
    "岳麓区",
    "开福区",
    "雨花区",
    "望城区",
    "长沙县",
    "浏阳市",
    "宁乡市",
];
const CATEGORIES: [&str; 4] = ["城乡建设", "环境保护", "交通运输", "劳动和社会保障"];

fn t0() -> DateTime<FixedOffset> {
    let china = FixedOffset::east_opt(8 * 3600).expect("valid offset");
    china
        .with_ymd_and_hms(2026, 11, 2, 0, 0, 0)
        .single()
        .expect("valid date")
}

/// An owned event, so tests can build sequences and borrow them as [`DetectInput`]s.
#[derive(Debug, Clone)]
struct Ev {
    id: String,
    channel: Channel,
    at: DateTime<FixedOffset>,
    district: Option<String>,
    category: String,
    tokens: TokenList,
    priority: u8,
    emotion: Option<&'static str>,
    relevant: bool,
}

impl Ev {
    fn input(&self) -> DetectInput<'_> {
        DetectInput {
            event_id: &self.id,
            channel: self.channel,
            occurred_at: self.at,
            district: self.district.as_deref(),
            category: &self.category,
            tokens: &self.tokens,
            keywords: &[],
            priority: self.priority,
            emotion: self.emotion,
            relevant: self.relevant,
            incident_id: None,
        }
    }
}

/// Background: `hours` of ordinary reports following the daily rhythm (mean `per_hour`),
/// each with five words from a 400-word everyday vocabulary, skewed so a few words are common.
fn background(seed: u64, start: DateTime<FixedOffset>, hours: i64, per_hour: f64) -> Vec<Ev> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut events = Vec::new();
    for hour in 0..hours {
        let n = (per_hour * daily_rhythm((hour % 24) as u32)).round() as usize;
        let mut secs: Vec<i64> = (0..n).map(|_| rng.random_range(0..3600)).collect();
        secs.sort_unstable();
        for s in secs {
            let tokens = (0..5)
                .map(|_| {
                    let r: f64 = rng.random();
                    format!("常用词{}", (r * r * 400.0) as usize)
                })
                .collect();
            events.push(Ev {
                id: format!("12345:bg{seed}-{}", events.len()),
                channel: Channel::ALL[rng.random_range(0..4)],
                at: start + Duration::seconds(hour * 3600 + s),
                district: Some(DISTRICTS[rng.random_range(0..9)].to_string()),
                category: CATEGORIES[rng.random_range(0..4)].to_string(),
                tokens,
                priority: 4,
                emotion: rng.random_bool(0.2).then_some("angry"),
                relevant: true,
            });
        }
    }
    events
}

/// Reports about one burst water main, in three wordings, on rotating channels.
fn incident(start: DateTime<FixedOffset>, n: usize, every_secs: i64) -> Vec<Ev> {
    const WORDINGS: [&[&str]; 3] = [
        &["雨花区", "韶山路", "爆管", "停水", "积水", "抢修"],
        &["爆管", "水柱", "韶山路", "绕行"],
        &["报警人", "韶山路", "自来水管", "爆管", "车辆", "被困"],
    ];
    (0..n)
        .map(|i| Ev {
            id: format!("{}:inc-{i}", Channel::ALL[i % 4].as_str()),
            channel: Channel::ALL[i % 4],
            at: start + Duration::seconds(i as i64 * every_secs),
            district: Some("雨花区".to_string()),
            category: "城乡建设".to_string(),
            tokens: WORDINGS[i % 3].iter().map(|t| t.to_string()).collect(),
            priority: if i % 4 == 3 { 2 } else { 3 },
            emotion: None,
            relevant: true,
        })
        .collect()
}

fn run(detector: &mut Detector, events: &[Ev]) -> (Vec<Alert>, Vec<Option<String>>) {
    let mut alerts = Vec::new();
    let mut ids = Vec::new();
    for event in events {
        let observation = detector.observe(&event.input());
        alerts.extend(observation.alerts);
        ids.push(observation.incident_id);
    }
    (alerts, ids)
}

fn merged(mut a: Vec<Ev>, b: Vec<Ev>) -> Vec<Ev> {
    a.extend(b);
    a.sort_by_key(|e| e.at);
    a
}

#[test]
fn ordinary_days_with_a_busy_morning_raise_no_alert() {
    let mut detector = Detector::new(DetectConfig::default());
    let (alerts, _) = run(&mut detector, &background(1, t0(), 72, 150.0));
    assert!(
        alerts.is_empty(),
        "{}",
        alerts
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(detector.stats().events_observed > 10_000);
}

#[test]
fn an_incident_across_channels_is_one_thread_that_fires_updates_and_resolves() {
    let mut detector = Detector::new(DetectConfig::default());
    let start = t0() + Duration::hours(34);
    let events = merged(background(2, t0(), 36, 150.0), incident(start, 16, 120));
    let (mut alerts, ids) = run(&mut detector, &events);
    alerts.extend(detector.advance_to(start + Duration::hours(3)));
    let threads: std::collections::BTreeSet<&str> =
        alerts.iter().map(|a| a.alert_id.as_str()).collect();
    assert_eq!(threads.len(), 1, "{alerts:#?}");
    let first = &alerts[0];
    assert_eq!(
        (first.status, first.kind),
        (AlertStatus::Firing, AlertKind::Incident)
    );
    // Fires at the fifth report, 8 minutes in.
    assert_eq!(first.at, start + Duration::seconds(4 * 120));
    assert_eq!(first.district.as_deref(), Some("雨花区"));
    assert!(
        first.terms.contains(&"爆管".to_string()),
        "{:?}",
        first.terms
    );
    let middle = &alerts[1..alerts.len() - 1];
    assert!(!middle.is_empty(), "material growth sends an update");
    assert!(
        middle.iter().all(|a| a.status == AlertStatus::Updated),
        "{alerts:#?}"
    );
    let resolved = alerts.last().expect("a last message");
    assert_eq!(resolved.status, AlertStatus::Resolved);
    assert_eq!(resolved.count, 16);
    assert_eq!(resolved.channels.len(), 4);
    // Resolved by the first event (or tick) after half an hour without a report.
    let quiet_from = start + Duration::seconds(15 * 120 + 1800);
    assert!(resolved.at >= quiet_from && resolved.at < quiet_from + Duration::minutes(2));
    // Every report of the incident from the third on carries the incident id.
    let incident_ids: std::collections::BTreeSet<&String> = events
        .iter()
        .zip(&ids)
        .filter(|(e, _)| e.id.contains(":inc-"))
        .filter_map(|(_, id)| id.as_ref())
        .collect();
    assert_eq!(incident_ids.len(), 1, "{incident_ids:?}");
    assert_eq!(first.incident_id.as_ref(), incident_ids.first().copied());
    assert!(detector.active_alerts().is_empty());
    assert_eq!(detector.recent_alerts(5), vec![resolved.clone()]);
}

#[test]
fn no_refire_within_the_cooldown() {
    let config = DetectConfig::default();
    let mut detector = Detector::new(config.clone());
    let start = t0() + Duration::hours(34);
    let first = incident(start, 8, 60);
    // The same thing again just after the first thread resolved (quiet 30 min), within the
    // hour of cooldown: the cluster is still open and stays silent.
    let again_at = start + Duration::seconds(8 * 60 + config.resolve_quiet_secs + 120);
    let mut second = incident(again_at, 8, 60);
    for e in &mut second {
        e.id = e.id.replace("inc-", "again-");
    }
    let events = merged(merged(background(3, t0(), 36, 150.0), first), second);
    let (alerts, _) = run(&mut detector, &events);
    let firing = alerts
        .iter()
        .filter(|a| a.status == AlertStatus::Firing)
        .count();
    assert_eq!(firing, 1, "{alerts:#?}");
    assert_eq!(
        alerts
            .iter()
            .filter(|a| a.status == AlertStatus::Resolved)
            .count(),
        1
    );
}

#[test]
fn late_and_far_future_events_are_counted_and_dropped() {
    let mut detector = Detector::new(DetectConfig::default());
    let events = background(4, t0(), 2, 100.0);
    run(&mut detector, &events);
    let now = events.last().map(|e| e.at).expect("events");
    let mut late = events[0].clone();
    late.at = now - Duration::minutes(10);
    let observation = detector.observe(&late.input());
    assert_eq!(observation, Observation::default());
    let mut future = events[0].clone();
    future.at = now + Duration::days(365);
    detector.observe(&future.input());
    let stats = detector.stats();
    assert_eq!((stats.late_dropped, stats.future_dropped), (1, 1));
    // Within the allowed lateness an event still counts.
    let mut slightly = events[0].clone();
    slightly.at = now - Duration::minutes(2);
    detector.observe(&slightly.input());
    assert_eq!(detector.stats().events_observed, events.len() as u64 + 1);
    // Three in a row far ahead: the stream really jumped.
    for _ in 0..3 {
        detector.observe(&future.input());
    }
    assert_eq!(detector.stats().future_dropped, 3);
}

#[test]
fn the_same_input_gives_byte_identical_alerts() {
    let start = t0() + Duration::hours(30);
    let events = merged(background(5, t0(), 33, 150.0), incident(start, 12, 90));
    let render = || {
        let mut detector = Detector::new(DetectConfig::default());
        let (mut alerts, _) = run(&mut detector, &events);
        alerts.extend(detector.advance_to(start + Duration::hours(4)));
        serde_json::to_string(&alerts).expect("alerts serialise")
    };
    let first = render();
    assert!(first.contains("\"firing\""), "{first}");
    assert_eq!(first, render());
}

/// Alerts in a canonical order (per thread, in emission order), for comparing runs whose
/// districts interleave differently.
fn canonical(alerts: &[Alert]) -> Vec<Alert> {
    let mut sorted = alerts.to_vec();
    sorted.sort_by(|a, b| {
        let status = |x: &Alert| x.status as u8;
        (&a.alert_id, a.at, status(a), a.count).cmp(&(&b.alert_id, b.at, status(b), b.count))
    });
    sorted
}

/// Two partitions of the internal topic, the second delivering an hour of event time behind the
/// first (a backlog being replayed while the other is live): nothing is dropped as late and the
/// alerts — ids, statuses, counts, times, every field — are those of the in-order run.
#[test]
fn a_partition_an_hour_behind_loses_nothing_and_alerts_as_an_in_order_run() {
    use super::watermark::Watermarks;
    let config = DetectConfig::default();
    let start = t0() + Duration::hours(34);
    let mut events = merged(background(6, t0(), 38, 150.0), incident(start, 16, 120));
    // A second incident in a district of the lagging partition.
    for e in incident(start + Duration::minutes(50), 12, 100) {
        events.push(Ev {
            id: e.id.replace("inc-", "lag-"),
            district: Some("望城区".to_string()),
            ..e
        });
    }
    events.sort_by_key(|e| e.at);
    let end = events.last().map(|e| e.at).expect("events") + Duration::hours(3);

    let mut reference = Detector::new(config.clone());
    let (mut expected, expected_ids) = run(&mut reference, &events);
    expected.extend(reference.advance_to(end));

    // Partition 1 holds four of the nine districts (雨花区 among them) and arrives an hour late.
    let partition = |e: &Ev| {
        i32::from(
            DISTRICTS[..5].contains(&e.district.as_deref().unwrap_or(""))
                && e.district.as_deref() != Some("芙蓉区"),
        )
    };
    let lag = Duration::hours(1);
    let mut arrivals: Vec<(DateTime<FixedOffset>, usize)> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            (
                e.at + if partition(e) == 1 {
                    lag
                } else {
                    Duration::zero()
                },
                i,
            )
        })
        .collect();
    arrivals.sort();
    let processing_start = std::time::Instant::now();
    let mut marks = Watermarks::new(
        config.allowed_lateness_secs,
        std::time::Duration::from_secs(config.idle_partition_secs),
    );
    marks.assign([0, 1], processing_start);
    let mut detector = Detector::new(config.clone());
    let mut alerts = Vec::new();
    let mut ids = vec![None; events.len()];
    for (step, (_, i)) in arrivals.iter().enumerate() {
        // 20 ms of processing per message: both partitions keep delivering, neither is idle.
        let now = processing_start + std::time::Duration::from_millis(20 * step as u64);
        let event = &events[*i];
        marks.seen(partition(event), event.at, now);
        let observation = detector.observe_from(partition(event), &event.input());
        alerts.extend(observation.alerts);
        ids[*i] = observation.incident_id;
        if let Some(watermark) = marks.watermark(now) {
            alerts.extend(detector.advance_to(watermark));
        }
    }
    alerts.extend(detector.advance_to(end));

    assert_eq!(detector.stats().late_dropped, 0);
    assert_eq!(reference.stats().late_dropped, 0);
    assert!(
        expected
            .iter()
            .any(|a| a.district.as_deref() == Some("望城区"))
            && expected
                .iter()
                .any(|a| a.district.as_deref() == Some("雨花区")),
        "both incidents alert: {expected:#?}"
    );
    assert_eq!(canonical(&alerts), canonical(&expected));
    assert_eq!(ids, expected_ids);

    // The same arrivals judged against one watermark for the whole stream lose the lagging
    // partition's events: what this test guards against.
    let mut single = Detector::new(config);
    for (_, i) in &arrivals {
        single.observe(&events[*i].input());
    }
    assert!(single.stats().late_dropped > 1000, "{:?}", single.stats());
}

/// Inline detection rebuilds from output events, re-read in another order than they first
/// came: a cluster that now starts at a later report keeps the incident id already published,
/// so reports after the restart join the incident under that id.
#[test]
fn a_cluster_rebuilt_from_a_later_report_keeps_the_published_incident_id() {
    // One wording, so every report joins the first one's cluster.
    let mut reports = incident(t0(), 4, 60);
    let wording = reports[0].tokens.clone();
    for report in &mut reports[1..] {
        report.tokens = wording.clone();
    }
    let mut first = Detector::new(DetectConfig::default());
    let (_, ids) = run(&mut first, &reports[..3]);
    assert_eq!(ids[0], None, "the first report opens the cluster");
    let published = ids[1].clone().expect("the second report joins it");
    assert_eq!(ids[2].as_ref(), Some(&published));

    let rebuild = |use_published: bool| {
        let mut detector = Detector::new(DetectConfig::default());
        // Re-read with the third report first, then the first and the second.
        for i in [2, 0, 1] {
            let mut input = reports[i].input();
            if use_published {
                input.incident_id = ids[i].as_deref();
            }
            detector.observe_from(1, &input);
        }
        detector.observe_from(2, &reports[3].input()).incident_id
    };
    assert_eq!(
        rebuild(true).as_ref(),
        Some(&published),
        "the report after the restart joins the published incident"
    );
    assert_ne!(
        rebuild(false).as_ref(),
        Some(&published),
        "without the published id the rebuilt cluster would be named after the third report"
    );
}
