//! Detection end to end: the evaluation on generated traffic at a small size with its goals
//! asserted, and the memory bound under a flood of distinct terms and districts.

use chrono::{DateTime, Duration, FixedOffset, TimeZone};
use citypulse::demo::generator::daily_rhythm;
use citypulse::detect::eval::{evaluate_alerts, EvalOptions};
use citypulse::detect::{AlertKind, AlertStatus, DetectConfig, DetectInput, Detector};
use citypulse::event::Channel;
use citypulse::text::tokens::TokenList;

#[test]
fn small_evaluation_meets_the_goals() {
    let options = EvalOptions {
        days: 2,
        incidents: 3,
        ..EvalOptions::default()
    };
    let report = evaluate_alerts(&options).expect("embedded models load");
    println!("{report}");
    assert_eq!(report.incidents.len(), 3);
    assert!(report.events > 8000, "{report}");
    assert!(report.goals_met(), "{report}");
}

/// The full-size run behind the figures in the README (`cargo test --release -- --ignored`).
#[test]
#[ignore = "a week of traffic: about a minute in a debug build"]
fn week_long_evaluation_meets_the_goals() {
    let report = evaluate_alerts(&EvalOptions::default()).expect("embedded models load");
    println!("{report}");
    assert!(report.goals_met(), "{report}");
}

fn t0() -> DateTime<FixedOffset> {
    let china = FixedOffset::east_opt(8 * 3600).expect("valid offset");
    china
        .with_ymd_and_hms(2026, 11, 2, 0, 0, 0)
        .single()
        .expect("valid date")
}

/// Resident set size of this process in KiB, from /proc (Linux); `None` elsewhere.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct Owned {
    id: String,
    channel: Channel,
    at: DateTime<FixedOffset>,
    district: String,
    tokens: TokenList,
}

impl Owned {
    fn input(&self) -> DetectInput<'_> {
        DetectInput {
            event_id: &self.id,
            channel: self.channel,
            occurred_at: self.at,
            district: Some(&self.district),
            category: "城乡建设",
            tokens: &self.tokens,
            keywords: &[],
            priority: 3,
            emotion: None,
            relevant: true,
            incident_id: None,
        }
    }
}

/// A flood of 10^6 distinct terms (and 15,000 distinct district names) over a day of ordinary
/// traffic: every state size stays under its cap, and a real incident in its midst still
/// fires.
#[test]
fn a_flood_of_distinct_terms_and_districts_keeps_state_bounded_and_incidents_alert() {
    let config = DetectConfig::default();
    let mut detector = Detector::new(config.clone());
    let rss_before = rss_kib();
    let districts = ["芙蓉区", "天心区", "岳麓区", "开福区", "雨花区"];
    let mut seq = 0u64;
    let mut next_id = || {
        seq += 1;
        seq
    };
    // A day of ordinary traffic: five words from a small everyday vocabulary.
    for hour in 0..24i64 {
        let n = (100.0 * daily_rhythm(hour as u32)) as i64;
        for i in 0..n {
            let id = next_id();
            let event = Owned {
                id: format!("12345:bg{id}"),
                channel: Channel::ALL[(id % 4) as usize],
                at: t0() + Duration::seconds(hour * 3600 + i * 3600 / n),
                district: districts[(id % 5) as usize].to_string(),
                tokens: (0..5)
                    .map(|k| format!("常用词{}", (id * 7 + k * 13) % 300))
                    .collect(),
            };
            detector.observe(&event.input());
        }
    }
    // The flood: about 20,000 events over the next hour, each with as many never-seen terms
    // as detection reads from one event (10^6 in all); three in four from a never-seen
    // district, the rest in the four other districts. A burst water main starts in the middle
    // of it in 雨花区.
    let flood_start = t0() + Duration::hours(24);
    let incident_start = flood_start + Duration::minutes(20);
    let mut incident_alerts = Vec::new();
    let mut term = 0u64;
    let per_event = config.max_terms_per_event as u64;
    let events = (1_000_000 / per_event + 1) as i64;
    for i in 0..events {
        let at = flood_start + Duration::milliseconds(i * 180);
        let id = next_id();
        let district = if i % 4 != 0 {
            format!("假区{i}")
        } else {
            // The other real districts: the incident's own district keeps its usual traffic.
            districts[(i % 4) as usize].to_string()
        };
        let tokens = (0..per_event)
            .map(|_| {
                term += 1;
                format!("洪水词{term}")
            })
            .collect();
        let event = Owned {
            id: format!("weibo:flood{id}"),
            channel: Channel::Weibo,
            at,
            district,
            tokens,
        };
        incident_alerts.extend(detector.observe(&event.input()).alerts);
        if i % 400 == 0 && at >= incident_start && incident_alerts.len() < 20 {
            let report = (i - 6000) / 400;
            let event = Owned {
                id: format!("12345:real{report}"),
                channel: Channel::ALL[(report % 4) as usize],
                at,
                district: "雨花区".to_string(),
                tokens: ["雨花区", "韶山路", "爆管", "停水", "抢修"]
                    .into_iter()
                    .collect(),
            };
            incident_alerts.extend(detector.observe(&event.input()).alerts);
        }
    }
    assert!(term >= 1_000_000, "{term} distinct terms");
    let stats = detector.stats();
    let rss_after = rss_kib();
    eprintln!("flood: RSS before {rss_before:?} KiB, after {rss_after:?} KiB; {stats:?}");
    assert!(stats.districts <= config.max_districts, "{stats:?}");
    assert!(stats.open_clusters <= config.max_districts * config.max_clusters_per_district);
    assert!(stats.tracked_terms <= config.max_districts * config.max_terms_per_district);
    assert!(stats.tracked_categories <= config.max_districts * config.max_categories_per_district);
    assert!(stats.recent_alerts <= config.max_recent_alerts);
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        assert!(
            after.saturating_sub(before) < 256 * 1024,
            "RSS grew {before} → {after} KiB"
        );
    }
    let fired = incident_alerts
        .iter()
        .find(|a| a.kind == AlertKind::Incident && a.status == AlertStatus::Firing)
        .unwrap_or_else(|| panic!("no incident fired: {incident_alerts:#?}"));
    assert_eq!(fired.district.as_deref(), Some("雨花区"));
    assert!(fired.terms.contains(&"爆管".to_string()), "{fired:?}");
}
