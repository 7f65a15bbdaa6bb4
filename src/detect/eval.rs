//! `citypulse eval-alerts`: detection measured on a generated multi-day stream with injected
//! incidents of known start and place.
//!
//! Drives the whole flow the way `process` does — demo generator bytes → the stages (decode,
//! mask, segment, classify, route) → [`Detector`] — and scores the alert threads against the
//! truth: per incident whether and when it alerted (delay after its fifth report), and overall
//! precision, false alerts per simulated day and duplicate threads per incident. Deterministic
//! for a seed: the same options print the same report.

use super::{Alert, AlertStatus, DetectConfig, DetectInput, Detector, DetectorStats, Severity};
use crate::assets::{load_stages, AssetError};
use crate::config::PipelineConfig;
use crate::demo::generator::{
    daily_rhythm, GeneratedRecord, GeneratorConfig, IncidentKind, RecordKind, TrafficGenerator,
    DISTRICTS,
};
use crate::metrics::Metrics;
use crate::stages::{Outcome, Stages};
use crate::text::mask::AuthorHasher;
use chrono::{DateTime, Duration, FixedOffset, TimeZone};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOptions {
    /// Simulated days; the first is warm-up and gets no incident.
    pub days: u32,
    pub incidents: usize,
    /// Mean records per hour over the day (the peak is about 1.8 times this).
    pub records_per_hour: f64,
    /// Reports per incident are drawn from this range, spread over `incident_span_minutes`.
    pub incident_reports: (usize, usize),
    pub incident_span_minutes: i64,
    pub seed: u64,
    pub detect: DetectConfig,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            days: 7,
            incidents: 10,
            records_per_hour: 200.0,
            incident_reports: (10, 30),
            incident_span_minutes: 40,
            seed: 20261125,
            detect: DetectConfig::default(),
        }
    }
}

/// What became of one injected incident.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentOutcome {
    pub kind: IncidentKind,
    pub district: &'static str,
    pub start: DateTime<FixedOffset>,
    pub reports: usize,
    pub fifth_report: Option<DateTime<FixedOffset>>,
    /// When its first alert thread fired.
    pub alerted_at: Option<DateTime<FixedOffset>>,
    pub severity: Option<Severity>,
    /// Alert threads attributed to it (1 is the goal).
    pub threads: usize,
}

impl IncidentOutcome {
    /// Event-time delay from the fifth report to the alert, in seconds.
    pub fn delay_secs(&self) -> Option<i64> {
        Some((self.alerted_at? - self.fifth_report?).num_seconds())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EvalAlertsReport {
    pub days: u32,
    pub records: usize,
    pub events: usize,
    /// Every alert message, in emission order.
    pub alerts: Vec<Alert>,
    pub incidents: Vec<IncidentOutcome>,
    pub threads: usize,
    /// Threads matching no injected incident.
    pub false_threads: Vec<Alert>,
    pub stats: DetectorStats,
}

impl EvalAlertsReport {
    pub fn true_threads(&self) -> usize {
        self.threads - self.false_threads.len()
    }

    pub fn precision(&self) -> f64 {
        if self.threads == 0 {
            1.0
        } else {
            self.true_threads() as f64 / self.threads as f64
        }
    }

    pub fn false_per_day(&self) -> f64 {
        self.false_threads.len() as f64 / f64::from(self.days.max(1))
    }

    /// Threads beyond the first, summed over incidents.
    pub fn duplicate_threads(&self) -> usize {
        self.incidents
            .iter()
            .map(|i| i.threads.saturating_sub(1))
            .sum()
    }

    pub fn missed(&self) -> usize {
        self.incidents
            .iter()
            .filter(|i| i.alerted_at.is_none())
            .count()
    }

    pub fn median_delay_secs(&self) -> Option<f64> {
        let mut delays: Vec<i64> = self
            .incidents
            .iter()
            .filter_map(|i| i.delay_secs())
            .collect();
        delays.sort_unstable();
        let n = delays.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => Some(delays[n / 2] as f64),
            _ => Some((delays[n / 2 - 1] + delays[n / 2]) as f64 / 2.0),
        }
    }

    /// The goals: every incident alerts, median delay ≤ 2 min, no false alert, at most
    /// one thread per incident.
    pub fn goals_met(&self) -> bool {
        self.missed() == 0
            && self.median_delay_secs().is_some_and(|d| d <= 120.0)
            && self.false_threads.is_empty()
            && self.duplicate_threads() == 0
    }
}

/// Loads the stages as `process` would (default pipeline, embedded models) and evaluates.
pub fn evaluate_alerts(options: &EvalOptions) -> Result<EvalAlertsReport, AssetError> {
    let stages = load_stages(
        &PipelineConfig::default(),
        AuthorHasher::new(b"citypulse eval-alerts"),
        Metrics::new(),
    )?;
    Ok(evaluate_alerts_with(&stages, options))
}

/// An injected incident and its records' ids.
struct Injected {
    outcome: IncidentOutcome,
    span_end: DateTime<FixedOffset>,
}

pub fn evaluate_alerts_with(stages: &Stages, options: &EvalOptions) -> EvalAlertsReport {
    let china =
        FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| panic!("+08:00 is a valid offset"));
    let start = china
        .with_ymd_and_hms(2026, 11, 2, 0, 0, 0)
        .single()
        .unwrap_or_else(|| panic!("a fixed start date is valid"));
    let mut generator = TrafficGenerator::new(GeneratorConfig {
        seed: options.seed,
        ..GeneratorConfig::default()
    });
    let mut rng = StdRng::seed_from_u64(options.seed ^ 0x5eed);
    let mut stream: Vec<(DateTime<FixedOffset>, GeneratedRecord, Option<usize>)> = Vec::new();
    for hour in 0..i64::from(options.days) * 24 {
        let rate = options.records_per_hour * daily_rhythm((hour % 24) as u32);
        let n = rate.floor() as usize + usize::from(rng.random::<f64>() < rate.fract());
        let mut offsets: Vec<i64> = (0..n).map(|_| rng.random_range(0..3600)).collect();
        offsets.sort_unstable();
        for secs in offsets {
            let at = start + Duration::seconds(hour * 3600 + secs);
            stream.push((at, generator.next_record(at), None));
        }
    }
    let mut injected = schedule(options, start, &mut rng, &mut generator, &mut stream);
    // Stable: background before incident records at the same second, as generated.
    stream.sort_by_key(|(at, _, _)| *at);

    let mut detector = Detector::new(options.detect.clone());
    let mut alerts: Vec<Alert> = Vec::new();
    let mut events = 0;
    let mut seen_reports = vec![0usize; injected.len()];
    for (at, record, incident) in &stream {
        let Outcome::Event { event, tokens } =
            stages.process(record.channel, &record.bytes, None, *at)
        else {
            continue;
        };
        events += 1;
        if let Some(i) = *incident {
            seen_reports[i] += 1;
            if seen_reports[i] == 5 {
                injected[i].outcome.fifth_report = Some(event.occurred_at);
            }
        }
        let input = DetectInput {
            event_id: &event.id,
            channel: event.channel,
            occurred_at: event.occurred_at,
            district: event.district.as_deref(),
            category: &event.category,
            tokens: &tokens,
            keywords: &event.keywords,
            priority: event.priority,
            emotion: emotion_of(&event.text),
            // Stands in for the pipeline's relevance verdict: the generator knows the truth.
            relevant: record.kind != RecordKind::Chatter,
            incident_id: None,
        };
        alerts.extend(detector.observe(&input).alerts);
    }
    if let Some((last, _, _)) = stream.last() {
        alerts.extend(detector.advance_to(*last + Duration::hours(3)));
    }
    score(
        options,
        stream.len(),
        events,
        alerts,
        injected,
        detector.stats(),
    )
}

/// Places the incidents: after the first (warm-up) day, cycling through kinds and districts,
/// the factory smell at night and the others in the daytime.
fn schedule(
    options: &EvalOptions,
    start: DateTime<FixedOffset>,
    rng: &mut StdRng,
    generator: &mut TrafficGenerator,
    stream: &mut Vec<(DateTime<FixedOffset>, GeneratedRecord, Option<usize>)>,
) -> Vec<Injected> {
    let mut injected = Vec::new();
    let days = i64::from(options.days.max(2)) - 1;
    for i in 0..options.incidents {
        let kind = IncidentKind::ALL[i % IncidentKind::ALL.len()];
        let district = DISTRICTS[(i * 4 + 1) % DISTRICTS.len()].name;
        let day = 1 + (i as i64 % days);
        let hour = match kind {
            IncidentKind::FactorySmellAtNight => rng.random_range(0..4),
            _ => rng.random_range(7..21),
        };
        let at =
            start + Duration::hours(day * 24 + hour) + Duration::minutes(rng.random_range(0..60));
        let (low, high) = options.incident_reports;
        let count = rng.random_range(low.min(high)..=high.max(low));
        let span = Duration::minutes(options.incident_span_minutes);
        for (time, record) in generator.incident(kind, district, at, span, count) {
            stream.push((time, record, Some(injected.len())));
        }
        injected.push(Injected {
            outcome: IncidentOutcome {
                kind,
                district,
                start: at,
                reports: count,
                fifth_report: None,
                alerted_at: None,
                severity: None,
                threads: 0,
            },
            span_end: at + span,
        });
    }
    injected
}

/// Attributes each alert thread to the incident of its district whose time it overlaps
/// (from the incident's start to an hour after its last report), or to none.
fn score(
    options: &EvalOptions,
    records: usize,
    events: usize,
    alerts: Vec<Alert>,
    mut injected: Vec<Injected>,
    stats: DetectorStats,
) -> EvalAlertsReport {
    let firing: Vec<&Alert> = alerts
        .iter()
        .filter(|a| a.status == AlertStatus::Firing)
        .collect();
    let threads = alerts
        .iter()
        .map(|a| a.alert_id.as_str())
        .collect::<BTreeSet<_>>()
        .len();
    let mut false_threads = Vec::new();
    let mut severity: BTreeMap<usize, Severity> = BTreeMap::new();
    for alert in firing {
        let matched = injected.iter().position(|inj| {
            alert.district.as_deref() == Some(inj.outcome.district)
                && alert.at >= inj.outcome.start
                && alert.at <= inj.span_end + Duration::hours(1)
        });
        match matched {
            Some(i) => {
                let outcome = &mut injected[i].outcome;
                outcome.threads += 1;
                if outcome.alerted_at.is_none_or(|t| alert.at < t) {
                    outcome.alerted_at = Some(alert.at);
                }
                let worst = alerts
                    .iter()
                    .filter(|a| a.alert_id == alert.alert_id)
                    .map(|a| a.severity)
                    .max()
                    .unwrap_or(alert.severity);
                severity.insert(i, worst.max(severity.get(&i).copied().unwrap_or(worst)));
            }
            None => false_threads.push(alert.clone()),
        }
    }
    for (i, worst) in severity {
        injected[i].outcome.severity = Some(worst);
    }
    EvalAlertsReport {
        days: options.days,
        records,
        events,
        alerts,
        incidents: injected.into_iter().map(|i| i.outcome).collect(),
        threads,
        false_threads,
        stats,
    }
}

/// A rough stand-in for the pipeline's emotion stage: Weibo's angry emoticons and words of
/// anger or fear.
fn emotion_of(text: &str) -> Option<&'static str> {
    const ANGRY: [&str; 6] = ["[怒]", "[抓狂]", "[哼]", "气死", "愤怒", "太过分"];
    const FEAR: [&str; 5] = ["吓死", "害怕", "危险", "担心", "恐怖"];
    if ANGRY.iter().any(|w| text.contains(w)) {
        Some("angry")
    } else if FEAR.iter().any(|w| text.contains(w)) {
        Some("fear")
    } else {
        None
    }
}

impl fmt::Display for EvalAlertsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} simulated days: {} records, {} events, {} alert messages in {} threads",
            self.days,
            self.records,
            self.events,
            self.alerts.len(),
            self.threads
        )?;
        writeln!(f, "\nincident                  district  start             reports  5th report  alerted   delay  severity  threads")?;
        for i in &self.incidents {
            let time = |t: Option<DateTime<FixedOffset>>| {
                t.map_or("-".to_string(), |t| t.format("%H:%M:%S").to_string())
            };
            writeln!(
                f,
                "{:<25} {:<8} {}  {:>7}  {:>10}  {:>8}  {:>6}  {:<8}  {:>7}",
                format!("{:?}", i.kind),
                i.district,
                i.start.format("%m-%d %H:%M"),
                i.reports,
                time(i.fifth_report),
                time(i.alerted_at),
                i.delay_secs()
                    .map_or("MISSED".to_string(), |d| format!("{d}s")),
                i.severity.map_or("-", Severity::as_str),
                i.threads,
            )?;
        }
        writeln!(f)?;
        let median = self
            .median_delay_secs()
            .map_or("-".to_string(), |d| format!("{d:.0} s"));
        let goal = |ok: bool| if ok { "ok" } else { "FAILED" };
        writeln!(
            f,
            "incidents alerted:        {}/{}  [{}]",
            self.incidents.len() - self.missed(),
            self.incidents.len(),
            goal(self.missed() == 0)
        )?;
        writeln!(
            f,
            "median delay after 5th:   {median}  (goal ≤ 120 s) [{}]",
            goal(self.median_delay_secs().is_some_and(|d| d <= 120.0))
        )?;
        writeln!(f, "precision:                {:.3}", self.precision())?;
        writeln!(
            f,
            "false alerts per day:     {:.2}  (goal 0) [{}]",
            self.false_per_day(),
            goal(self.false_threads.is_empty())
        )?;
        writeln!(
            f,
            "duplicate threads:        {}  (goal 0) [{}]",
            self.duplicate_threads(),
            goal(self.duplicate_threads() == 0)
        )?;
        for alert in &self.false_threads {
            writeln!(f, "  false: {alert}")?;
        }
        let s = &self.stats;
        writeln!(
            f,
            "state at end: {} districts, {} open clusters, {} tracked terms, {} threads; {} late, {} merged",
            s.districts, s.open_clusters, s.tracked_terms, s.threads, s.late_dropped, s.merged_bursts
        )
    }
}
