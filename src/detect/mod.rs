//! Early warning: incident clustering, bursts and the alert lifecycle — pure, I/O-free, on
//! event time.
//!
//! Sits at the end of the flow, after routing (`stages.rs` → detect): the caller builds one
//! [`DetectInput`] per output event and feeds it in roughly event-time order — `process` to
//! [`Detector::observe`] (one stream), `run` to [`Detector::observe_from`] with the partition of
//! the internal topic `citypulse.events` (keyed by district) it came from, moving the watermark
//! with [`Detector::advance_to`] and [`Watermarks`]. State that decides an alert is per
//! district, so instances owning different districts together raise what one instance would.
//! The [`Alert`] messages that come back go to `citypulse.alerts`, the SSE feed and the
//! `{"alert": …}` lines of `process`. Nothing here reads a clock, sleeps or draws a random
//! number: time is only what the events (or [`Detector::advance_to`]) say, ids are derived from
//! content, and every collection that reaches the output is sorted, so replaying the same
//! events gives byte-identical alerts.
//!
//! # Layout
//! - [`config`]: every threshold and window, with documented defaults.
//! - [`baseline`]: bucketed sliding windows, the hour-of-day rate profile and the Poisson
//!   surprise score.
//! - [`sketch`]: bounded term statistics — a decaying count-min sketch for how common a term
//!   is in a district, and space-saving windows for the recent counts of candidate terms.
//! - [`cluster`]: incident clustering of near-duplicate reports within one district.
//! - [`detector`]: the [`Detector`] — per-district state and the flow of one event;
//!   `incidents.rs` holds clustering and the incident test, `bursts.rs` the category, term and
//!   emotion tests, `time.rs` the watermark, decay, expiry and the district cap.
//! - [`threads`]: the alert lifecycle (firing → updated → resolved, cooldowns) and severity.
//! - [`watermark`]: the watermark over several sources (partitions), with idle sources left out.
//! - [`eval`]: the `eval-alerts` evaluation on generated traffic with injected incidents.

pub mod baseline;
mod bursts;
pub mod cluster;
pub mod config;
pub mod detector;
pub mod eval;
mod incidents;
pub mod sketch;
pub mod threads;
mod time;
pub mod watermark;

pub use config::DetectConfig;
pub use detector::Detector;
pub use eval::{evaluate_alerts, EvalAlertsReport, EvalOptions};
pub use watermark::{SourceId, Watermarks};

use crate::event::Channel;
use crate::text::tokens::TokenList;
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What detection needs from one output event (built by the caller from `event::Event` and the
/// event's tokens).
#[derive(Debug, Clone, Copy)]
pub struct DetectInput<'a> {
    pub event_id: &'a str,
    pub channel: Channel,
    pub occurred_at: DateTime<FixedOffset>,
    pub district: Option<&'a str>,
    pub category: &'a str,
    /// Content tokens in text order (`text::segment`), stop words removed.
    pub tokens: &'a TokenList,
    pub keywords: &'a [String],
    /// 1 = life or safety at risk now … 4 = routine.
    pub priority: u8,
    /// `"angry"`, `"fear"`, … or `None` when no emotion was found.
    pub emotion: Option<&'a str>,
    /// False for chatter on social channels: counted for emotion, never part of an incident or
    /// a burst.
    pub relevant: bool,
    /// The incident id the event was published with, when it is observed again to rebuild
    /// state from output events (inline detection's restart); `None` otherwise. Those are
    /// re-read in another order than they first came (several topics and partitions), so a
    /// cluster may now start at a later report: it then keeps the id already published instead
    /// of deriving one from that report.
    pub incident_id: Option<&'a str>,
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// Near-duplicate reports about one thing in one district.
    Incident,
    /// A district × category count far above its baseline.
    CategoryBurst,
    /// A district × term count far above its baseline.
    TermBurst,
    /// The share of angry or fearful messages in a district jumped.
    EmotionSurge,
}

impl AlertKind {
    pub const ALL: [AlertKind; 4] = [
        AlertKind::Incident,
        AlertKind::CategoryBurst,
        AlertKind::TermBurst,
        AlertKind::EmotionSurge,
    ];

    /// The name in JSON and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Incident => "incident",
            AlertKind::CategoryBurst => "category_burst",
            AlertKind::TermBurst => "term_burst",
            AlertKind::EmotionSurge => "emotion_surge",
        }
    }
}

/// Where an alert thread is in its life: one `firing`, any number of `updated`, one `resolved`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    Firing,
    Updated,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Updated => "updated",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// How urgently the dispatch centre should look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// One alert lifecycle message, the payload of `citypulse.alerts` (key: `alert_id`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Alert {
    /// Stable for the whole thread (firing → updated → resolved), derived from its content.
    pub alert_id: String,
    pub kind: AlertKind,
    pub status: AlertStatus,
    pub severity: Severity,
    pub district: Option<String>,
    pub category: Option<String>,
    /// The terms that characterise the alert, most telling first.
    pub terms: Vec<String>,
    /// Reports behind the alert (incident size, or the window count of a burst).
    pub count: u64,
    /// What the count would normally be over the same window.
    pub baseline: f64,
    /// Channels that corroborate, sorted.
    pub channels: Vec<Channel>,
    pub first_seen: DateTime<FixedOffset>,
    pub last_seen: DateTime<FixedOffset>,
    /// The event time at which this message was emitted.
    pub at: DateTime<FixedOffset>,
    /// A sample of the events behind the alert, oldest first, at most 10.
    pub event_ids: Vec<String>,
    /// The incident the alert belongs to, when it is (or was merged into) an incident thread.
    pub incident_id: Option<String>,
}

/// What [`Detector::observe`] says about one event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    /// The incident the event belongs to, once its cluster holds at least two reports.
    pub incident_id: Option<String>,
    /// Alert messages this event caused, in emission order.
    pub alerts: Vec<Alert>,
}

/// Counters for metrics and for checking that state stays bounded.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DetectorStats {
    /// Incident threads currently firing or updated.
    pub active_incidents: usize,
    /// Active threads per kind, in [`AlertKind::ALL`] order.
    pub active_by_kind: [usize; 4],
    /// Messages emitted since start, per kind × status (firing, updated, resolved).
    pub emitted_by_kind: [[u64; 3]; 4],
    /// Threads fired since start, per severity at firing, in [`Severity::ALL`] order.
    pub fired_by_severity: [u64; 3],
    /// The highest burst scores (−log10 p) among active threads, highest first, at most 5.
    pub top_scores: Vec<(String, f64)>,
    pub events_observed: u64,
    /// Events older than the watermark: counted, kept out of every window.
    pub late_dropped: u64,
    /// Events too far ahead of the current event time to be believed (see
    /// [`DetectConfig::max_future_secs`]).
    pub future_dropped: u64,
    /// Bursts, surges and clusters merged into an existing incident thread instead of opening
    /// their own.
    pub merged_bursts: u64,
    /// Events dropped because the district table was full of districts with live alerts.
    pub district_overflow: u64,
    pub districts: usize,
    pub open_clusters: usize,
    pub tracked_terms: usize,
    pub tracked_categories: usize,
    pub threads: usize,
    pub recent_alerts: usize,
}

impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}] {} {} {} in {} ({}): {} reports vs {:.1} expected on {} — {}",
            self.at.format("%Y-%m-%d %H:%M:%S"),
            self.status.as_str(),
            self.severity.as_str(),
            self.kind.as_str(),
            self.district.as_deref().unwrap_or("?"),
            self.category.as_deref().unwrap_or("-"),
            self.count,
            self.baseline,
            self.channels
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join("+"),
            self.terms.join(" "),
        )
    }
}

#[cfg(test)]
mod tests;
