//! Push ingestion over HTTP: the WeChat official-account callback (`GET`/`POST /ingest/wechat`,
//! signature-verified) and `POST /ingest/{channel}` for sources that push rather than produce.
//! Each accepted body is written, unchanged, to the channel's input topic, and the request is
//! answered only after the broker acknowledged it — so pushed sources lose nothing either.
//!
//! Sits in front of the pipeline: it feeds the same input topics `run` consumes. Nothing here
//! parses a body beyond its size and emptiness: the channel decoders do that and dead-letter bad
//! input, so a record the decoders cannot read is still kept (on the dead-letter topic) rather
//! than refused at the door with nobody to see it.
//!
//! Delivery: the pipeline's producer ([`crate::kafka::producer`]) with `acks=all` and
//! idempotence, whose `message.timeout.ms` is the produce timeout, so a record that missed its
//! deadline is failed by librdkafka too (and not written late behind the 503). A sender that
//! retries after a 503 may still cause a duplicate when the acknowledgement, not the write, was
//! lost; the pipeline's event ids absorb that (at-least-once, as everywhere else).

use crate::channels::MAX_RECORD_BYTES;
use crate::config::PipelineConfig;
use crate::event::Channel;
use crate::kafka::producer::Producer;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureRecord;
use serde::Deserialize;
use sha1::{Digest, Sha1};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// Environment variable holding the WeChat official-account token (the one entered in the
/// account's server configuration). Unset: the WeChat callback answers 404.
pub const WECHAT_TOKEN_ENV: &str = "CITYPULSE_WECHAT_TOKEN";
/// Environment variable: how long a request waits for the broker's acknowledgement, in ms.
pub const PRODUCE_TIMEOUT_ENV: &str = "CITYPULSE_INGEST_TIMEOUT_MS";
/// Environment variable: the largest accepted distance between WeChat's `timestamp` and our
/// clock, in seconds.
pub const MAX_SKEW_ENV: &str = "CITYPULSE_WECHAT_MAX_SKEW_SECS";
/// Environment variable: how many ingest requests may be in progress at once.
pub const MAX_IN_FLIGHT_ENV: &str = "CITYPULSE_INGEST_MAX_IN_FLIGHT";

/// WeChat waits 5 s for an answer and then retries; answering 503 a little before that tells it
/// the same thing sooner and keeps our request from outliving WeChat's.
pub const DEFAULT_PRODUCE_TIMEOUT: Duration = Duration::from_millis(4000);
/// Five minutes: generous for clock drift, short enough that a captured request cannot be
/// replayed for long.
pub const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(300);
/// With bodies of up to [`MAX_RECORD_BYTES`], at most 128 MiB of request bodies are held at
/// once; a sender beyond that gets 503 at once rather than a queue that grows with the flood.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// Bounds of the settings, so a typo cannot make a request wait for an hour.
const PRODUCE_TIMEOUT_MS_RANGE: std::ops::RangeInclusive<u64> = 100..=120_000;
const MAX_SKEW_SECS_RANGE: std::ops::RangeInclusive<u64> = 1..=86_400;
const MAX_IN_FLIGHT_RANGE: std::ops::RangeInclusive<u64> = 1..=10_000;
/// Longest accepted query value (`signature`, `nonce`, `echostr`, `key` …). WeChat's are a few
/// dozen characters; the bound keeps hashing and the Kafka key small.
const MAX_PARAM_BYTES: usize = 256;
/// Slack on top of the produce timeout before the request gives up on its own, so librdkafka's
/// more precise error (e.g. "message timed out", "unknown topic") usually wins the race.
const TIMEOUT_GRACE: Duration = Duration::from_millis(500);
/// Channel names accepted in the path besides [`Channel`]'s own (`12345`, `110`).
const CHANNEL_ALIASES: [(&str, Channel); 2] = [
    ("hotline12345", Channel::Hotline12345),
    ("police110", Channel::Police110),
];

/// Why the ingest state could not be built. Each variant names the variable or client at fault.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A setting read from the environment is malformed; the value is not repeated when it is a
    /// secret.
    #[error("environment variable {var} {reason}")]
    InvalidVar { var: &'static str, reason: String },
    #[error("ingest producer for brokers '{brokers}' could not be created: {source}")]
    Producer {
        brokers: String,
        #[source]
        source: KafkaError,
    },
}

/// The WeChat token: kept out of `Debug` output and logs.
#[derive(Clone)]
pub struct WechatToken(String);

impl WechatToken {
    /// WeChat's rule for the token: 3 to 32 English letters or digits.
    pub fn parse(value: &str) -> Result<Self, IngestError> {
        let valid =
            (3..=32).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_alphanumeric());
        if valid {
            Ok(WechatToken(value.to_string()))
        } else {
            Err(IngestError::InvalidVar {
                var: WECHAT_TOKEN_ENV,
                reason: "must be 3 to 32 ASCII letters or digits (WeChat's token rule)".into(),
            })
        }
    }
}

impl fmt::Debug for WechatToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WechatToken(<redacted>)")
    }
}

/// The settings that come from the environment rather than the pipeline file (the token is a
/// secret; the timings are deployment-specific).
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// `None` disables the WeChat callback.
    pub wechat_token: Option<WechatToken>,
    /// How long a request waits for the broker's acknowledgement before answering 503.
    pub produce_timeout: Duration,
    /// Largest accepted |WeChat timestamp − now|; older or newer signed requests are refused.
    pub max_clock_skew: Duration,
    /// Requests in progress at once (each holds its body); beyond it, 503 at once.
    pub max_in_flight: usize,
}

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings {
            wechat_token: None,
            produce_timeout: DEFAULT_PRODUCE_TIMEOUT,
            max_clock_skew: DEFAULT_MAX_SKEW,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

impl IngestSettings {
    /// Read [`WECHAT_TOKEN_ENV`], [`PRODUCE_TIMEOUT_ENV`], [`MAX_SKEW_ENV`] and
    /// [`MAX_IN_FLIGHT_ENV`]; unset ones take their defaults.
    pub fn from_env() -> Result<Self, IngestError> {
        Self::from_lookup(|var| std::env::var(var).ok())
    }

    /// The same as [`from_env`](Self::from_env) over any variable source.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, IngestError> {
        // Empty counts as unset, as compose passes `${VAR:-}` through when it is not given.
        let wechat_token = match lookup(WECHAT_TOKEN_ENV).filter(|v| !v.trim().is_empty()) {
            None => None,
            Some(value) => Some(WechatToken::parse(&value)?),
        };
        let number = |var: &'static str, range: std::ops::RangeInclusive<u64>, unit: &str| {
            let Some(value) = lookup(var) else {
                return Ok(None);
            };
            match value.trim().parse::<u64>() {
                Ok(n) if range.contains(&n) => Ok(Some(n)),
                _ => Err(IngestError::InvalidVar {
                    var,
                    reason: format!(
                        "is '{value}', expected a whole number of {unit} within {}..={}",
                        range.start(),
                        range.end()
                    ),
                }),
            }
        };
        let produce_timeout = number(
            PRODUCE_TIMEOUT_ENV,
            PRODUCE_TIMEOUT_MS_RANGE,
            "milliseconds",
        )?
        .map_or(DEFAULT_PRODUCE_TIMEOUT, Duration::from_millis);
        let max_clock_skew = number(MAX_SKEW_ENV, MAX_SKEW_SECS_RANGE, "seconds")?
            .map_or(DEFAULT_MAX_SKEW, Duration::from_secs);
        let max_in_flight = number(MAX_IN_FLIGHT_ENV, MAX_IN_FLIGHT_RANGE, "requests")?
            .map_or(DEFAULT_MAX_IN_FLIGHT, |n| n as usize);
        Ok(IngestSettings {
            wechat_token,
            produce_timeout,
            max_clock_skew,
            max_in_flight,
        })
    }
}

/// What the ingest handlers need: the producer, the input topics and the WeChat token.
/// Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct IngestState {
    inner: Arc<Inner>,
}

struct Inner {
    producer: Producer,
    /// The configured input topic of each channel; a channel missing here is refused with 404.
    topics: BTreeMap<Channel, String>,
    /// One permit per request in progress, taken before the body is read.
    permits: Arc<Semaphore>,
    settings: IngestSettings,
}

impl IngestState {
    /// Build from the pipeline file and the environment ([`IngestSettings::from_env`]).
    pub fn from_env(config: &PipelineConfig) -> Result<Self, IngestError> {
        Self::new(config, IngestSettings::from_env()?)
    }

    /// Build from the pipeline file and explicit settings. The producer uses the pipeline's
    /// Kafka client settings (brokers, security) with the produce timeout as its delivery
    /// timeout; it connects lazily, so this succeeds while the broker is down.
    pub fn new(config: &PipelineConfig, settings: IngestSettings) -> Result<Self, IngestError> {
        let mut client = crate::kafka::producer_config(&config.kafka);
        client
            .set(
                "message.timeout.ms",
                settings.produce_timeout.as_millis().to_string(),
            )
            // A pushed record has a waiting caller: send it now rather than batch it.
            .set("linger.ms", "1");
        let producer = client.create().map_err(|source| IngestError::Producer {
            brokers: config.kafka.brokers.clone(),
            source,
        })?;
        Ok(IngestState {
            inner: Arc::new(Inner {
                producer,
                topics: config.input_topics().into_iter().collect(),
                // Clamped like the environment variable: `Semaphore::new` panics on absurd counts.
                permits: Arc::new(Semaphore::new(
                    settings
                        .max_in_flight
                        .clamp(1, *MAX_IN_FLIGHT_RANGE.end() as usize),
                )),
                settings,
            }),
        })
    }

    /// Whether `GET`/`POST /ingest/wechat` will accept anything (a token is configured).
    pub fn wechat_enabled(&self) -> bool {
        self.inner.settings.wechat_token.is_some()
    }

    /// Write `body` unchanged to `channel`'s input topic and wait for the acknowledgement.
    async fn produce(
        &self,
        channel: Channel,
        key: Option<&str>,
        body: &[u8],
    ) -> Result<Accepted, Rejection> {
        let topic = self.topic(channel)?;
        let timeout = self.inner.settings.produce_timeout;
        let mut record = FutureRecord::<str, [u8]>::to(topic).payload(body);
        if let Some(key) = key {
            record = record.key(key);
        }
        // The enqueue wait is bounded by the same timeout: a full local queue is backpressure,
        // answered with 503 like a slow broker.
        let send = self.inner.producer.send(record, timeout);
        match tokio::time::timeout(timeout + TIMEOUT_GRACE, send).await {
            Ok(Ok(delivery)) => {
                tracing::debug!(
                    channel = channel.as_str(),
                    topic,
                    partition = delivery.partition,
                    offset = delivery.offset,
                    bytes = body.len(),
                    "pushed record acknowledged"
                );
                Ok(Accepted {
                    topic: topic.to_string(),
                    partition: delivery.partition,
                    offset: delivery.offset,
                })
            }
            Ok(Err((error, _))) => Err(Rejection::BrokerFailed {
                topic: topic.to_string(),
                error: error.to_string(),
            }),
            Err(_) => Err(Rejection::BrokerTimeout {
                topic: topic.to_string(),
                after_ms: timeout.as_millis() as u64,
            }),
        }
    }

    fn topic(&self, channel: Channel) -> Result<&str, Rejection> {
        self.inner
            .topics
            .get(&channel)
            .map(String::as_str)
            .ok_or_else(|| Rejection::UnknownChannel {
                name: channel.as_str().to_string(),
                known: self.known_channels(),
            })
    }

    fn known_channels(&self) -> Vec<&'static str> {
        self.inner.topics.keys().map(|c| c.as_str()).collect()
    }

    /// Check WeChat's `signature` over the token, `timestamp` and `nonce`, and the timestamp's
    /// freshness.
    fn verify_wechat(&self, query: &WechatQuery) -> Result<(), Rejection> {
        let Some(token) = &self.inner.settings.wechat_token else {
            return Err(Rejection::WechatDisabled);
        };
        let signature = required("signature", &query.signature)?;
        let timestamp = required("timestamp", &query.timestamp)?;
        let nonce = required("nonce", &query.nonce)?;
        let sent_at: i64 = timestamp.parse().map_err(|_| Rejection::BadParam {
            param: "timestamp",
            reason: "is not a whole number of seconds since 1970",
        })?;
        // Signature first: an unsigned caller learns nothing about our clock.
        let expected = wechat_signature(&token.0, timestamp, nonce);
        let given = hex::decode(signature).map_err(|_| Rejection::BadSignature)?;
        if !bool::from(given.as_slice().ct_eq(expected.as_slice())) {
            return Err(Rejection::BadSignature);
        }
        let skew = chrono::Utc::now().timestamp().abs_diff(sent_at);
        let max = self.inner.settings.max_clock_skew.as_secs();
        if skew > max {
            return Err(Rejection::StaleTimestamp {
                skew_secs: skew,
                max_secs: max,
            });
        }
        Ok(())
    }
}

/// WeChat's signature: SHA-1 over the byte-wise sorted concatenation of token, timestamp and
/// nonce (official-account docs, "接入概述").
pub fn wechat_signature(token: &str, timestamp: &str, nonce: &str) -> [u8; 20] {
    let mut parts = [token, timestamp, nonce];
    parts.sort_unstable();
    let mut hasher = Sha1::new();
    for part in parts {
        hasher.update(part.as_bytes());
    }
    hasher.finalize().into()
}

/// Routes that authenticate themselves (WeChat's signature), outside the console token:
/// `GET /ingest/wechat` (URL check) and `POST /ingest/wechat` (message push).
pub fn public_routes(state: IngestState) -> Router {
    Router::new()
        .route("/ingest/wechat", get(wechat_url_check).post(wechat_message))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            limit_in_flight,
        ))
        .route_layer(DefaultBodyLimit::max(MAX_RECORD_BYTES))
        .with_state(state)
}

/// Routes behind the `CITYPULSE_TOKEN` bearer check: `POST /ingest/{channel}`.
///
/// Merged with [`public_routes`], the static `/ingest/wechat` wins over `{channel}`, so a WeChat
/// push always goes through the signature check.
pub fn protected_routes(state: IngestState) -> Router {
    Router::new()
        .route("/ingest/{channel}", post(push))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            limit_in_flight,
        ))
        .route_layer(DefaultBodyLimit::max(MAX_RECORD_BYTES))
        .with_state(state)
}

/// Runs before the handler's extractors, so a refused request's body is never buffered.
async fn limit_in_flight(
    State(state): State<IngestState>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(_permit) = state.inner.permits.clone().try_acquire_owned() else {
        let rejection = Rejection::Busy {
            limit: state.inner.settings.max_in_flight,
        };
        tracing::warn!(status = 503, reason = %rejection, "push refused");
        return rejection.into_response();
    };
    next.run(request).await
}

/// The query WeChat sends on both the URL check and message pushes.
#[derive(Debug, Default, Deserialize)]
struct WechatQuery {
    signature: Option<String>,
    timestamp: Option<String>,
    nonce: Option<String>,
    /// URL check only: echoed back to prove we hold the token.
    echostr: Option<String>,
    /// Message pushes: the sender's OpenID, used as the Kafka key so one citizen's messages
    /// keep their order.
    openid: Option<String>,
    /// `aes` in safe and compatible mode, which this endpoint does not decrypt.
    encrypt_type: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct PushQuery {
    /// Kafka key; records with the same key keep their order.
    key: Option<String>,
}

/// The broker's acknowledgement, returned to a pushing source.
#[derive(Debug, serde::Serialize)]
struct Accepted {
    topic: String,
    partition: i32,
    offset: i64,
}

async fn wechat_url_check(
    State(state): State<IngestState>,
    Query(query): Query<WechatQuery>,
) -> Result<String, Rejection> {
    state
        .verify_wechat(&query)
        .inspect_err(|r| r.log(Channel::Wechat))?;
    let echostr = required("echostr", &query.echostr).inspect_err(|r| r.log(Channel::Wechat))?;
    tracing::info!("WeChat server URL check answered");
    Ok(echostr.to_string())
}

async fn wechat_message(
    State(state): State<IngestState>,
    Query(query): Query<WechatQuery>,
    body: Bytes,
) -> Result<&'static str, Rejection> {
    let result = async {
        state.verify_wechat(&query)?;
        if query
            .encrypt_type
            .as_deref()
            .is_some_and(|mode| mode != "raw")
        {
            return Err(Rejection::EncryptedMode);
        }
        check_body(&body)?;
        let key = optional("openid", &query.openid)?;
        state.produce(Channel::Wechat, key, &body).await
    }
    .await;
    result.inspect_err(|r| r.log(Channel::Wechat))?;
    // The reply WeChat expects; anything else makes it retry and show the user an error.
    Ok("success")
}

async fn push(
    State(state): State<IngestState>,
    Path(name): Path<String>,
    Query(query): Query<PushQuery>,
    body: Bytes,
) -> Result<(StatusCode, Json<Accepted>), Rejection> {
    let Some(channel) = parse_channel(&name) else {
        return Err(Rejection::UnknownChannel {
            name: truncate(&name),
            known: state.known_channels(),
        });
    };
    let result = async {
        check_body(&body)?;
        let key = optional("key", &query.key)?;
        state.produce(channel, key, &body).await
    }
    .await
    .inspect_err(|r| r.log(channel))?;
    Ok((StatusCode::ACCEPTED, Json(result)))
}

fn parse_channel(name: &str) -> Option<Channel> {
    name.parse().ok().or_else(|| {
        CHANNEL_ALIASES
            .iter()
            .find(|(alias, _)| *alias == name)
            .map(|(_, channel)| *channel)
    })
}

fn check_body(body: &[u8]) -> Result<(), Rejection> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Err(Rejection::EmptyBody)
    } else {
        Ok(())
    }
}

fn required<'a>(param: &'static str, value: &'a Option<String>) -> Result<&'a str, Rejection> {
    optional(param, value)?.ok_or(Rejection::MissingParam(param))
}

/// An empty value counts as absent.
fn optional<'a>(
    param: &'static str,
    value: &'a Option<String>,
) -> Result<Option<&'a str>, Rejection> {
    match value.as_deref() {
        None | Some("") => Ok(None),
        Some(v) if v.len() > MAX_PARAM_BYTES => Err(Rejection::BadParam {
            param,
            reason: "is longer than 256 bytes",
        }),
        Some(v) => Ok(Some(v)),
    }
}

/// A caller-chosen name echoed in an error: bounded, so the error stays small.
fn truncate(name: &str) -> String {
    name.chars().take(64).collect()
}

/// Why a push was refused, each mapped to the status a sender can act on.
#[derive(Debug, thiserror::Error)]
enum Rejection {
    #[error("query parameter `{0}` is missing")]
    MissingParam(&'static str),
    #[error("query parameter `{param}` {reason}")]
    BadParam {
        param: &'static str,
        reason: &'static str,
    },
    #[error("signature does not match (check the token configured at WeChat)")]
    BadSignature,
    #[error(
        "timestamp is {skew_secs} s away from this server's clock, over the {max_secs} s limit"
    )]
    StaleTimestamp { skew_secs: u64, max_secs: u64 },
    #[error("the WeChat callback is not enabled here ({WECHAT_TOKEN_ENV} is not set)")]
    WechatDisabled,
    #[error(
        "encrypted (safe/compatible) mode is not supported; set the account to plain-text mode"
    )]
    EncryptedMode,
    #[error("request body is empty")]
    EmptyBody,
    #[error("unknown channel '{name}'")]
    UnknownChannel {
        name: String,
        known: Vec<&'static str>,
    },
    #[error("broker did not accept the record for topic '{topic}': {error}")]
    BrokerFailed { topic: String, error: String },
    #[error("broker did not acknowledge the record for topic '{topic}' within {after_ms} ms")]
    BrokerTimeout { topic: String, after_ms: u64 },
    #[error("{limit} ingest requests are already in progress; retry shortly")]
    Busy { limit: usize },
}

impl Rejection {
    fn status(&self) -> StatusCode {
        match self {
            Rejection::MissingParam(_) | Rejection::BadParam { .. } | Rejection::EmptyBody => {
                StatusCode::BAD_REQUEST
            }
            Rejection::BadSignature | Rejection::StaleTimestamp { .. } => StatusCode::UNAUTHORIZED,
            Rejection::WechatDisabled | Rejection::UnknownChannel { .. } => StatusCode::NOT_FOUND,
            Rejection::EncryptedMode => StatusCode::NOT_IMPLEMENTED,
            Rejection::BrokerFailed { .. }
            | Rejection::BrokerTimeout { .. }
            | Rejection::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// One log line per refused request. Neither the body nor the key is logged: both may hold
    /// personal data.
    fn log(&self, channel: Channel) {
        let status = self.status().as_u16();
        if status == 503 {
            tracing::warn!(channel = channel.as_str(), status, reason = %self, "push not acknowledged");
        } else {
            tracing::info!(channel = channel.as_str(), status, reason = %self, "push refused");
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut body = serde_json::json!({ "error": self.to_string() });
        if let Rejection::UnknownChannel { known, .. } = &self {
            body["known_channels"] = serde_json::json!(known);
            body["aliases"] = serde_json::json!(CHANNEL_ALIASES
                .iter()
                .map(|(alias, channel)| (*alias, channel.as_str()))
                .collect::<BTreeMap<_, _>>());
        }
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // The broker may be back in a moment; WeChat retries on its own schedule anyway.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_an_independently_computed_sha1() {
        // printf '%s' 1764033123982341567citypulse | sha1sum
        let expected = "7a06a3452902ab23320e8ada8f1e0182a16ce896";
        let signature = wechat_signature("citypulse", "1764033123", "982341567");
        assert_eq!(hex::encode(signature), expected);
        // The order of the arguments does not matter: they are sorted.
        assert_eq!(
            wechat_signature("982341567", "citypulse", "1764033123"),
            signature
        );
    }

    #[test]
    fn settings_default_when_unset_and_name_the_bad_variable() {
        let settings = IngestSettings::from_lookup(|_| None).unwrap();
        assert!(settings.wechat_token.is_none());
        assert_eq!(settings.produce_timeout, DEFAULT_PRODUCE_TIMEOUT);
        assert_eq!(settings.max_clock_skew, DEFAULT_MAX_SKEW);

        let set = |var: &'static str, value: &'static str| {
            move |name: &str| (name == var).then(|| value.to_string())
        };
        let settings = IngestSettings::from_lookup(set(PRODUCE_TIMEOUT_ENV, "1500")).unwrap();
        assert_eq!(settings.produce_timeout, Duration::from_millis(1500));

        for (var, value) in [
            (PRODUCE_TIMEOUT_ENV, "soon"),
            (PRODUCE_TIMEOUT_ENV, "0"),
            (MAX_SKEW_ENV, "-5"),
            (MAX_IN_FLIGHT_ENV, "0"),
            (WECHAT_TOKEN_ENV, "ab"),
            (WECHAT_TOKEN_ENV, "has space"),
        ] {
            let error = IngestSettings::from_lookup(set(var, value)).unwrap_err();
            assert!(error.to_string().contains(var), "{error}");
        }
    }

    #[test]
    fn token_is_never_printed() {
        let error = IngestSettings::from_lookup(|name| {
            (name == WECHAT_TOKEN_ENV).then(|| "secret token!".to_string())
        })
        .unwrap_err();
        assert!(!error.to_string().contains("secret"), "{error}");
        let token = WechatToken::parse("Secret123").unwrap();
        assert!(!format!("{token:?}").contains("Secret123"));
    }

    #[test]
    fn channel_names_and_aliases() {
        assert_eq!(parse_channel("12345"), Some(Channel::Hotline12345));
        assert_eq!(parse_channel("hotline12345"), Some(Channel::Hotline12345));
        assert_eq!(parse_channel("police110"), Some(Channel::Police110));
        assert_eq!(parse_channel("weibo"), Some(Channel::Weibo));
        assert_eq!(parse_channel("fax"), None);
    }

    #[test]
    fn whitespace_only_bodies_are_empty() {
        assert!(matches!(check_body(b""), Err(Rejection::EmptyBody)));
        assert!(matches!(check_body(b" \r\n\t"), Err(Rejection::EmptyBody)));
        assert!(check_body(b"<xml/>").is_ok());
    }
}
