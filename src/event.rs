//! The types that travel between stages: what a channel said ([`Record`]) and what citypulse
//! publishes ([`Event`]).
//!
//! A decoder (`channels/`) turns raw bytes into a [`Record`], which still holds the raw author
//! identifier. The stages (`stages.rs`) mask and hash it and build an [`Event`], which holds no
//! raw personal data; only [`Event`] is ever serialised to an output. Keeping the two types apart
//! makes "no raw identifier in any output" a property of the types, not of care at call sites.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Version of the output JSON schema documented in the README. Bump on any breaking change.
pub const SCHEMA_VERSION: u32 = 1;

/// The four doors a citizen's voice comes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Channel {
    #[serde(rename = "weibo")]
    Weibo,
    #[serde(rename = "wechat")]
    Wechat,
    #[serde(rename = "12345")]
    Hotline12345,
    #[serde(rename = "110")]
    Police110,
}

impl Channel {
    pub const ALL: [Channel; 4] = [
        Channel::Weibo,
        Channel::Wechat,
        Channel::Hotline12345,
        Channel::Police110,
    ];

    /// The channel's name on the command line, in configs, metrics labels and output events.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Weibo => "weibo",
            Channel::Wechat => "wechat",
            Channel::Hotline12345 => "12345",
            Channel::Police110 => "110",
        }
    }

    /// Social channels carry public opinion as well as reports; hotlines carry only reports.
    pub fn is_social(self) -> bool {
        matches!(self, Channel::Weibo | Channel::Wechat)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a channel name that is not one of the four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown channel '{0}' (expected one of: weibo, wechat, 12345, 110)")]
pub struct UnknownChannel(pub String);

impl FromStr for Channel {
    type Err = UnknownChannel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "weibo" => Ok(Channel::Weibo),
            "wechat" => Ok(Channel::Wechat),
            "12345" => Ok(Channel::Hotline12345),
            "110" => Ok(Channel::Police110),
            other => Err(UnknownChannel(other.to_string())),
        }
    }
}

/// Where an input record came from, so a consumer can trace an output back to its input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRef {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// WGS-84 coordinates in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Coordinates {
    pub lat: f64,
    pub lon: f64,
}

/// Weibo engagement counts; absent on the other channels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Engagement {
    pub reposts: u64,
    pub comments: u64,
    pub likes: u64,
    pub followers: u64,
}

/// What a decoder read from one input record, normalised across channels but not yet masked.
///
/// Holds raw personal data (`author`, phone numbers inside `text`): it must never be
/// serialised, which is why it does not implement `Serialize`.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub channel: Channel,
    /// The channel's own id for the record: Weibo `idstr`, WeChat `MsgId`, 12345 工单编号,
    /// 110 `jjdbh`. Together with the channel it identifies the record across replays.
    pub native_id: String,
    /// When the citizen spoke (post time, call time), with the zone it was given in
    /// (China Standard Time when the record gave none).
    pub occurred_at: DateTime<FixedOffset>,
    pub title: Option<String>,
    /// The citizen's own words. Never empty.
    pub text: String,
    /// Text quoted by the record but not written by this citizen (a Weibo repost's original).
    pub context: Option<String>,
    pub district: Option<String>,
    pub address: Option<String>,
    pub coordinates: Option<Coordinates>,
    /// Raw author or caller identifier (Weibo user id, WeChat OpenID, caller phone).
    /// Replaced by a keyed hash before an [`Event`] is built.
    pub author: Option<String>,
    /// Kind of report: the 12345 诉求类型 (咨询/投诉/建议/举报/求助), 110 警情类别 when given,
    /// otherwise the channel's default (微博 → 舆情, 微信 → 留言, 110 → 报警).
    pub report_kind: Option<String>,
    pub engagement: Option<Engagement>,
}

/// How sure the pipeline is about where an event should go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// Sent to `department` on `citypulse.routed`.
    Routed,
    /// The model was not sure: sent to `citypulse.triage` for a person to route.
    Triage,
    /// A social post that is not a report (chatter, ads, greetings): counted as public opinion
    /// on `citypulse.ignored`, not sent to a department.
    Ignored,
}

impl Route {
    pub const ALL: [Route; 3] = [Route::Routed, Route::Triage, Route::Ignored];

    pub fn as_str(self) -> &'static str {
        match self {
            Route::Routed => "routed",
            Route::Triage => "triage",
            Route::Ignored => "ignored",
        }
    }
}

/// A time as chrono's own `Serialize` writes it (RFC 3339, `Z` for UTC, fractions only when
/// there are any), formatted once into a string: chrono's impl goes through
/// `collect_str`, which sends each of its ~25 characters through serde_json's escaper on its
/// own (~4 % of `process`'s instructions on Weibo posts, two times per event).
fn rfc3339<S: serde::Serializer>(
    time: &DateTime<FixedOffset>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

/// One output event: a masked, segmented, classified and routed citizen report.
/// The JSON form is the public contract of the output topics (see the README).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub schema_version: u32,
    /// `"{channel}:{native_id}"`: stable across replays, so consumers can deduplicate.
    pub id: String,
    pub channel: Channel,
    #[serde(serialize_with = "rfc3339")]
    pub received_at: DateTime<FixedOffset>,
    #[serde(serialize_with = "rfc3339")]
    pub occurred_at: DateTime<FixedOffset>,
    pub title: Option<String>,
    /// Masked text.
    pub text: String,
    /// Masked quoted text (a Weibo repost's original), when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    pub district: Option<String>,
    /// Masked address.
    pub address: Option<String>,
    pub coordinates: Option<Coordinates>,
    /// HMAC-SHA256 of the author identifier under the deployment's key; never the raw id.
    pub author_hash: Option<String>,
    pub report_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engagement: Option<Engagement>,
    pub keywords: Vec<String>,
    /// One of the seven first-level categories, in Chinese (城乡建设, 环境保护, …).
    pub category: String,
    /// The model's probability for `category`, in [0, 1].
    pub category_confidence: f32,
    /// The responsible department, or the triage desk when `route` is triage.
    pub department: String,
    /// 1 = life or safety at risk now … 4 = routine.
    pub priority: u8,
    /// One of happy, angry, sad, fear, surprise, neutral.
    pub emotion: String,
    /// From -1 (negative) to 1 (positive); near 0 for neutral text.
    pub sentiment: f32,
    /// Probability that the message is a report or request for the government (1 for hotline
    /// and 110 records, which always are).
    pub relevance: f32,
    pub route: Route,
    pub source: Option<SourceRef>,
    /// Shared by every event about the same incident (near-duplicate reports in one district,
    /// close in time, on any channel); null until detection has seen a second such report.
    #[serde(default)]
    pub incident_id: Option<String>,
}

/// JSON bytes of an event besides its texts: 548–704 on the 1,830 events of the comparison
/// set (ids, times, keywords, labels, scores, source).
const JSON_BYTES_BESIDES_TEXT: usize = 768;

impl Event {
    /// About how many bytes the event's JSON takes, to size its buffer once: `serde_json`
    /// otherwise starts at 128 bytes and doubles, reallocating and copying four times for an
    /// event with 1 KB of text.
    pub fn json_size_hint(&self) -> usize {
        let texts = [&self.title, &self.context, &self.address]
            .into_iter()
            .flatten()
            .map(String::len)
            .sum::<usize>();
        JSON_BYTES_BESIDES_TEXT + self.text.len() + texts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_round_trip_through_str_and_json() {
        for channel in Channel::ALL {
            assert_eq!(channel.as_str().parse::<Channel>().unwrap(), channel);
            let json = serde_json::to_string(&channel).unwrap();
            assert_eq!(json, format!("\"{}\"", channel.as_str()));
        }
        let err = "sms".parse::<Channel>().unwrap_err();
        assert!(err.to_string().contains("sms"));
    }

    proptest::proptest! {
        /// `rfc3339` writes what chrono's own `Serialize` writes, for any instant, offset and
        /// sub-second part (none, milli, micro, nano), and reads back to the same time.
        #[test]
        fn times_serialize_as_chrono_does(
            seconds in -2_000_000_000i64..8_000_000_000,
            nanos in proptest::sample::select(vec![0u32, 250_000_000, 123_000, 7, 999_999_999]),
            offset_minutes in -(14 * 60)..=(14 * 60),
        ) {
            let offset = FixedOffset::east_opt(offset_minutes * 60).expect("within ±14 h");
            let time = chrono::DateTime::from_timestamp(seconds, nanos)
                .expect("in range")
                .with_timezone(&offset);
            let mut ours = Vec::new();
            rfc3339(&time, &mut serde_json::Serializer::new(&mut ours)).expect("writes");
            let ours = String::from_utf8(ours).expect("UTF-8");
            proptest::prop_assert_eq!(&ours, &serde_json::to_string(&time).expect("writes"));
            let back: DateTime<FixedOffset> = serde_json::from_str(&ours).expect("reads");
            proptest::prop_assert_eq!(back, time);
        }
    }

    #[test]
    fn utc_times_serialize_with_z_as_chrono_does() {
        let utc = FixedOffset::east_opt(0).expect("UTC");
        let time = chrono::DateTime::from_timestamp(1_764_000_000, 0)
            .expect("in range")
            .with_timezone(&utc);
        let mut ours = Vec::new();
        rfc3339(&time, &mut serde_json::Serializer::new(&mut ours)).expect("writes");
        assert_eq!(ours, b"\"2025-11-24T16:00:00Z\"");
        assert_eq!(ours, serde_json::to_vec(&time).expect("writes"));
    }
}
