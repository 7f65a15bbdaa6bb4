//! The HTTP endpoints of a running instance: the operator's `/metrics`, `/healthz`, `/readyz`;
//! the dispatch console at `/` (embedded HTML, CSS and JavaScript, Chinese interface) with its
//! login form; the live alert feed `/alerts/stream` (server-sent events, resumable with
//! `Last-Event-ID`); the JSON API `/api/alerts`, `/api/alerts/{alert_id}/ack` and
//! `/api/overview`; and, when configured, the push-ingest routes of [`crate::ingest`].
//!
//! Sits beside the pipeline, reading its [`Metrics`], [`Health`] and [`AlertFeed`]. Everything
//! but the probes, `/metrics`, the login page and the WeChat callback needs the access token
//! ([`crate::auth`]).

use crate::alert_feed::{
    Ack, AckError, AckPublishError, AckPublisher, AlertFeed, FeedItem, FeedMessage,
};
use crate::auth::{self, AccessToken};
use crate::health::Health;
use crate::metrics::Metrics;
use axum::extract::{DefaultBodyLimit, FromRef, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::stream::{self, Stream, StreamExt};
use prometheus::core::Collector;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::broadcast;

/// Request bodies on the console's routes (login form, acknowledgements) are small.
pub const CONSOLE_BODY_LIMIT: usize = 64 * 1024;
/// Longest alert id accepted in a path; detection's ids are far shorter.
const MAX_ALERT_ID_BYTES: usize = 128;

const INDEX_HTML: &str = include_str!("console/index.html");
const CONSOLE_CSS: &str = include_str!("console/console.css");
const CONSOLE_JS: &str = include_str!("console/console.js");

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    pub metrics: Metrics,
    pub health: Arc<Health>,
    pub alerts: AlertFeed,
    /// The access token of the console, the API and the feed.
    pub auth: AccessToken,
    /// Where acknowledgements go: the broker (alerts topic), then the feed.
    pub acks: AckPublisher,
    /// Push ingestion (WeChat callback, `POST /ingest/{channel}`), when configured.
    pub ingest: Option<crate::ingest::IngestState>,
}

impl FromRef<AppState> for AccessToken {
    fn from_ref(state: &AppState) -> AccessToken {
        state.auth.clone()
    }
}

pub fn router(state: AppState) -> Router {
    let limit = DefaultBodyLimit::max(CONSOLE_BODY_LIMIT);
    let mut open = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route(
            "/console.css",
            get(|| asset("text/css; charset=utf-8", CONSOLE_CSS)),
        )
        .route_layer(limit)
        .with_state(state.clone());
    let mut protected = Router::new()
        .route("/", get(index))
        .route(
            "/console.js",
            get(|| asset("text/javascript; charset=utf-8", CONSOLE_JS)),
        )
        .route("/alerts/stream", get(alert_stream))
        .route(
            "/api/alerts",
            get(|State(state): State<AppState>| async move { Json(state.alerts.board()) }),
        )
        .route("/api/alerts/{alert_id}/ack", post(acknowledge))
        .route("/api/overview", get(overview))
        .route_layer(limit)
        .with_state(state.clone());
    if let Some(ingest) = &state.ingest {
        open = open.merge(crate::ingest::public_routes(ingest.clone()));
        protected = protected.merge(crate::ingest::protected_routes(ingest.clone()));
    }
    let protected = protected.route_layer(axum::middleware::from_fn_with_state(
        state.auth.clone(),
        auth::require_token,
    ));
    open.merge(protected)
}

/// Serve until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Headers of the console's pages: never cached (they hold live state), no framing, and a
/// content policy that allows only the console's own script and styles — so even a slip in
/// escaping could not run a script that came with the data.
pub fn page_headers() -> [(HeaderName, HeaderValue); 4] {
    [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                 img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ]
}

async fn index() -> Response {
    (page_headers(), INDEX_HTML).into_response()
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // The assets are compiled into the binary: a new binary may bring new ones.
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.health.not_ready_reasons() {
        None => (StatusCode::OK, Json(serde_json::json!({"ready": true}))),
        Some(reasons) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"ready": false, "reasons": reasons})),
        ),
    }
}

#[derive(Deserialize)]
struct StreamQuery {
    /// Resume after this seq, like `Last-Event-ID` (which wins when both are given): a browser's
    /// `EventSource` cannot send the header on its first connection, so the console passes the
    /// seq of the board it loaded here.
    after: Option<u64>,
}

/// Server-sent events: each alert message as `event: alert`, each acknowledgement as
/// `event: ack`, both with `id: <seq>` and the JSON as `data`. A client that reconnects with
/// `Last-Event-ID` (or `?after=`) first gets what it missed (as far as the replay ring reaches),
/// then the live stream. A client too slow to keep up is disconnected and resumes the same way.
async fn alert_stream(
    State(state): State<AppState>,
    Query(query): Query<StreamQuery>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let last_seen = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or(query.after);
    let (backlog, live) = state.alerts.subscribe(last_seen);
    let live = stream::unfold(live, |mut receiver| async move {
        match receiver.recv().await {
            Ok(message) => Some((message, receiver)),
            // Lagged or closed: end the stream; the client resumes with Last-Event-ID.
            Err(broadcast::error::RecvError::Lagged(_) | broadcast::error::RecvError::Closed) => {
                None
            }
        }
    });
    let events = stream::iter(backlog)
        .chain(live)
        .map(|message| Ok(sse_event(&message)));
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

fn sse_event(message: &FeedMessage) -> SseEvent {
    let (kind, data) = match &message.item {
        FeedItem::Alert(alert) => ("alert", serde_json::to_string(alert)),
        FeedItem::Ack(ack) => ("ack", serde_json::to_string(ack)),
    };
    SseEvent::default()
        .event(kind)
        .id(message.seq.to_string())
        .data(data.unwrap_or_else(|_| "{}".into()))
}

/// The body of `POST /api/alerts/{alert_id}/ack`; both fields optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AckRequest {
    by: Option<String>,
    note: Option<String>,
}

#[derive(Serialize)]
struct AckAnswer {
    seq: u64,
    ack: Ack,
}

fn json_error(status: StatusCode, error: &str, detail: String) -> Response {
    (
        status,
        Json(serde_json::json!({"error": error, "detail": detail})),
    )
        .into_response()
}

/// Acknowledge an alert thread: answered once the broker has the acknowledgement on the
/// alerts topic and every console has been sent it; 404 for an id not on the board, 503 when
/// the broker cannot take it.
async fn acknowledge(
    State(state): State<AppState>,
    Path(alert_id): Path<String>,
    Json(request): Json<AckRequest>,
) -> Response {
    if alert_id.len() > MAX_ALERT_ID_BYTES {
        return json_error(
            StatusCode::NOT_FOUND,
            "unknown_alert",
            "alert id too long".into(),
        );
    }
    let now = chrono::Utc::now().with_timezone(&crate::pipeline::china_standard_time());
    let ack = match Ack::new(
        &alert_id,
        request.by.as_deref(),
        request.note.as_deref(),
        now,
    ) {
        Ok(ack) => ack,
        Err(error) => {
            return json_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_ack",
                error.to_string(),
            )
        }
    };
    match state.acks.publish(ack.clone()).await {
        Ok(seq) => (StatusCode::OK, Json(AckAnswer { seq, ack })).into_response(),
        Err(AckPublishError::Rejected(error @ AckError::UnknownAlert { .. })) => {
            json_error(StatusCode::NOT_FOUND, "unknown_alert", error.to_string())
        }
        Err(AckPublishError::Rejected(error)) => json_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_ack",
            error.to_string(),
        ),
        Err(error) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_published",
            error.to_string(),
        ),
    }
}

/// What `/api/overview` returns: the console's counters, read from the metrics registry
/// (totals since this instance started).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Overview {
    pub events_in: u64,
    pub events_in_by_channel: BTreeMap<String, u64>,
    pub routed: u64,
    /// Routed events per department, largest first.
    pub routed_by_department: Vec<DepartmentCount>,
    /// Events sent to the manual triage topic — the queue people work through.
    pub triage: u64,
    pub triage_by_channel: BTreeMap<String, u64>,
    pub ignored: u64,
    pub dead_letters: u64,
    pub in_flight: i64,
    pub active_incidents: i64,
    pub active_alerts: i64,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct DepartmentCount {
    pub department: String,
    pub count: u64,
}

/// The sum of a counter family's samples per value of `label`.
fn counter_by(family: &impl Collector, label: &str) -> BTreeMap<String, u64> {
    let mut sums = BTreeMap::new();
    for metric in family.collect().iter().flat_map(|f| f.get_metric()) {
        let key = metric
            .get_label()
            .iter()
            .find(|pair| pair.name() == label)
            .map(|pair| pair.value().to_string())
            .unwrap_or_default();
        *sums.entry(key).or_default() += metric.get_counter().get_value() as u64;
    }
    sums
}

impl Overview {
    pub fn from_metrics(metrics: &Metrics) -> Overview {
        let events_in_by_channel = counter_by(&metrics.events_in, "channel");
        let triage_by_channel = counter_by(&metrics.triaged, "channel");
        let mut routed_by_department: Vec<DepartmentCount> =
            counter_by(&metrics.routed, "department")
                .into_iter()
                .map(|(department, count)| DepartmentCount { department, count })
                .collect();
        routed_by_department
            .sort_by(|a, b| b.count.cmp(&a.count).then(a.department.cmp(&b.department)));
        let active_alerts = metrics
            .active_alerts
            .collect()
            .iter()
            .flat_map(|f| f.get_metric())
            .map(|m| m.get_gauge().get_value() as i64)
            .sum();
        Overview {
            events_in: events_in_by_channel.values().sum(),
            events_in_by_channel,
            routed: routed_by_department.iter().map(|d| d.count).sum(),
            routed_by_department,
            triage: triage_by_channel.values().sum(),
            triage_by_channel,
            ignored: counter_by(&metrics.ignored, "channel").values().sum(),
            dead_letters: counter_by(&metrics.dead_letters, "reason").values().sum(),
            in_flight: metrics.in_flight.get(),
            active_incidents: metrics.active_incidents.get(),
            active_alerts,
        }
    }
}

async fn overview(State(state): State<AppState>) -> Json<Overview> {
    Json(Overview::from_metrics(&state.metrics))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert_feed::AckQueue;
    use crate::detect::{Alert, AlertStatus};

    const TOKEN: &str = "test-token-0123456789";

    fn state_with(alerts: AlertFeed) -> (AppState, AckQueue) {
        let (acks, queue) = AckPublisher::new(alerts.clone());
        let state = AppState {
            metrics: Metrics::new(),
            health: Arc::new(Health::new()),
            alerts,
            auth: AccessToken::new("CITYPULSE_TOKEN", TOKEN).unwrap(),
            acks,
            ingest: None,
        };
        (state, queue)
    }

    async fn spawn(state: AppState) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, state, std::future::pending()));
        format!("http://{address}")
    }

    struct Answer {
        status: u16,
        head: String,
        body: String,
    }

    /// One plain HTTP/1.0 request (the server closes after answering), which keeps the tests
    /// free of an HTTP client dependency.
    async fn request(
        base: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let host = base.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
        let mut text = format!("{method} {path} HTTP/1.0\r\nHost: {host}\r\n");
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() {
            text.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        text.push_str("\r\n");
        text.push_str(body);
        stream.write_all(text.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response[9..12].parse().unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        Answer {
            status,
            head: head.to_ascii_lowercase(),
            body: body.to_string(),
        }
    }

    async fn get(base: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
        request(base, "GET", path, headers, "").await
    }

    fn bearer() -> (&'static str, String) {
        ("Authorization", format!("Bearer {TOKEN}"))
    }

    fn sample(id: &str) -> Alert {
        serde_json::from_value(serde_json::json!({
            "alert_id": id, "kind": "incident", "status": "firing", "severity": "warning",
            "district": "雨花区", "category": "城乡建设", "terms": ["停水"], "count": 10,
            "baseline": 0.5, "channels": ["12345", "weibo"],
            "first_seen": "2026-11-25T10:00:00+08:00", "last_seen": "2026-11-25T10:20:00+08:00",
            "at": "2026-11-25T10:20:00+08:00", "event_ids": ["12345:A1"], "incident_id": null
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn readyz_says_why_until_models_and_partitions_are_there() {
        let (state, _queue) = state_with(AlertFeed::new());
        let health = state.health.clone();
        let base = spawn(state).await;
        let answer = get(&base, "/readyz", &[]).await;
        assert_eq!(answer.status, 503);
        assert!(
            answer.body.contains("models not loaded")
                && answer.body.contains("no input partitions")
        );
        health.set_models_loaded(true);
        health.set_partitions_assigned(true);
        assert_eq!(get(&base, "/readyz", &[]).await.status, 200);
        let answer = get(&base, "/healthz", &[]).await;
        assert_eq!((answer.status, answer.body.as_str()), (200, "ok\n"));
        let answer = get(&base, "/metrics", &[]).await;
        assert_eq!(answer.status, 200, "probes and metrics need no token");
        assert!(answer.body.contains("citypulse_events_in_total"));
    }

    #[tokio::test]
    async fn api_feed_and_console_answer_401_without_the_token() {
        let (state, _queue) = state_with(AlertFeed::new());
        let base = spawn(state).await;
        for path in [
            "/api/alerts",
            "/api/overview",
            "/alerts/stream",
            "/console.js",
        ] {
            let answer = get(&base, path, &[]).await;
            assert_eq!(answer.status, 401, "{path} without a token");
            assert!(
                answer.head.contains("www-authenticate: bearer"),
                "{path}: {}",
                answer.head
            );
            let wrong = get(
                &base,
                path,
                &[("Authorization", "Bearer wrong-token-0123456789")],
            )
            .await;
            assert_eq!(wrong.status, 401, "{path} with a wrong token");
        }
        let answer = get(&base, "/api/alerts", &[]).await;
        let json: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(json["error"], "unauthorized");
        let ack = request(
            &base,
            "POST",
            "/api/alerts/a/ack",
            &[("Content-Type", "application/json")],
            "{}",
        )
        .await;
        assert_eq!(ack.status, 401);
        let (name, value) = bearer();
        assert_eq!(
            get(&base, "/api/alerts", &[(name, &value)]).await.status,
            200
        );
        assert_eq!(
            get(&base, "/api/overview", &[(name, &value)]).await.status,
            200
        );
        // A browser opening the console is sent to the form, which is open, with its stylesheet.
        let page = get(&base, "/", &[]).await;
        assert_eq!(page.status, 303);
        assert!(page.head.contains("location: /login"), "{}", page.head);
        let login = get(&base, "/login", &[]).await;
        assert_eq!(login.status, 200);
        assert!(login.body.contains("name=\"token\""));
        assert_eq!(get(&base, "/console.css", &[]).await.status, 200);
    }

    #[tokio::test]
    async fn the_login_form_sets_a_session_cookie_that_opens_the_console() {
        let (state, _queue) = state_with(AlertFeed::new());
        let base = spawn(state).await;
        let form = [("Content-Type", "application/x-www-form-urlencoded")];
        let wrong = request(&base, "POST", "/login", &form, "token=nope-nope-nope-nope").await;
        assert_eq!(wrong.status, 401);
        assert!(!wrong.head.contains("set-cookie"));
        assert!(wrong.body.contains("令牌不正确") && !wrong.body.contains("login-error\" hidden"));
        let right = request(&base, "POST", "/login", &form, &format!("token={TOKEN}")).await;
        assert_eq!(right.status, 303);
        assert!(right.head.contains("location: /"), "{}", right.head);
        let cookie_line = right
            .head
            .lines()
            .find(|l| l.starts_with("set-cookie:"))
            .expect("a session cookie");
        for attribute in ["httponly", "samesite=strict", "path=/"] {
            assert!(cookie_line.contains(attribute), "{cookie_line}");
        }
        assert!(
            !cookie_line.contains(&TOKEN.to_ascii_lowercase()),
            "not the raw token"
        );
        let pair = cookie_line["set-cookie:".len()..]
            .split(';')
            .next()
            .unwrap()
            .trim()
            .to_string();
        let page = get(&base, "/", &[("Cookie", &pair)]).await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("调度台") && page.head.contains("content-security-policy"));
        assert_eq!(
            get(&base, "/api/alerts", &[("Cookie", &pair)]).await.status,
            200
        );
        let logout = request(&base, "POST", "/logout", &[("Cookie", &pair)], "").await;
        assert!(logout.head.contains("max-age=0"), "{}", logout.head);
    }

    /// Read from a streaming response until `needle` has arrived.
    async fn read_until(stream: &mut tokio::net::TcpStream, buffer: &mut Vec<u8>, needle: &str) {
        use tokio::io::AsyncReadExt;
        let mut chunk = [0u8; 4096];
        while !String::from_utf8_lossy(buffer).contains(needle) {
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
                .await
                .expect("stream answers in time")
                .unwrap();
            assert!(n > 0, "stream closed before {needle}");
            buffer.extend_from_slice(&chunk[..n]);
        }
    }

    async fn open_stream(base: &str, extra: &str) -> tokio::net::TcpStream {
        use tokio::io::AsyncWriteExt;
        let host = base.trim_start_matches("http://").to_string();
        let mut stream = tokio::net::TcpStream::connect(&host).await.unwrap();
        stream
            .write_all(
                format!(
                    "GET /alerts/stream HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n{extra}\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        stream
    }

    #[tokio::test]
    async fn alert_stream_resumes_after_last_event_id_and_then_goes_live() {
        let alerts = AlertFeed::new();
        alerts.publish(sample("alert-1"));
        alerts.publish(sample("alert-2"));
        let (state, _queue) = state_with(alerts.clone());
        let base = spawn(state).await;
        let mut stream = open_stream(&base, "Last-Event-ID: 1\r\n").await;
        let mut received = Vec::new();
        read_until(&mut stream, &mut received, "alert-2").await;
        let text = String::from_utf8_lossy(&received).into_owned();
        assert!(text.contains("text/event-stream"), "{text}");
        assert!(text.contains("id: 2"), "{text}");
        assert!(
            !text.contains("alert-1"),
            "already seen before Last-Event-ID: {text}"
        );
        let mut sample3 = sample("alert-3");
        sample3.status = AlertStatus::Firing;
        alerts.publish(sample3);
        read_until(&mut stream, &mut received, "alert-3").await;
        let text = String::from_utf8_lossy(&received).into_owned();
        assert!(
            text.contains("event: alert") && text.contains("id: 3"),
            "{text}"
        );
        // `?after=` does the same for a browser's first connection.
        let mut stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
            .await
            .unwrap();
        {
            use tokio::io::AsyncWriteExt;
            let host = base.trim_start_matches("http://");
            stream
                .write_all(format!("GET /alerts/stream?after=2 HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n").as_bytes())
                .await
                .unwrap();
        }
        let mut received = Vec::new();
        read_until(&mut stream, &mut received, "alert-3").await;
        assert!(!String::from_utf8_lossy(&received).contains("alert-2"));
        let (name, value) = bearer();
        let answer = get(&base, "/api/alerts", &[(name, &value)]).await;
        assert_eq!(answer.status, 200);
        let board: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(board["active"].as_array().unwrap().len(), 3);
        assert_eq!(board["seq"], 3);
        assert_eq!(board["active"][0]["history"][0]["count"], 10);
    }

    #[tokio::test]
    async fn an_ack_reaches_the_broker_then_the_board_and_every_feed() {
        let alerts = AlertFeed::new();
        alerts.publish(sample("alert-1"));
        let (state, mut queue) = state_with(alerts.clone());
        let base = spawn(state).await;
        // The broker stand-in: records what it was given, refuses acknowledgements by "故障".
        let produced = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = produced.clone();
        tokio::spawn(async move {
            while let Some(pending) = queue.recv().await {
                if pending.ack.by == "故障" {
                    pending.failed("broker unreachable".into());
                } else {
                    seen.lock().unwrap().push(pending.ack.clone());
                    pending.delivered();
                }
            }
        });
        let mut stream = open_stream(&base, "").await;
        let mut received = Vec::new();
        read_until(&mut stream, &mut received, "text/event-stream").await;

        let (name, value) = bearer();
        let json = [(name, value.as_str()), ("Content-Type", "application/json")];
        let body = r#"{"by": "张三", "note": "已派单 <b>"}"#;
        let answer = request(&base, "POST", "/api/alerts/alert-1/ack", &json, body).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let reply: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(reply["ack"]["by"], "张三");
        assert_eq!(
            produced.lock().unwrap().len(),
            1,
            "on the broker before the answer"
        );
        read_until(&mut stream, &mut received, "event: ack").await;
        let text = String::from_utf8_lossy(&received).into_owned();
        assert!(
            text.contains("\"by\":\"张三\"") && text.contains("id: 2"),
            "{text}"
        );
        let board = alerts.board();
        assert_eq!(board.active[0].acknowledged_by.as_deref(), Some("张三"));
        assert_eq!(board.active[0].ack_note.as_deref(), Some("已派单 <b>"));

        let unknown = request(&base, "POST", "/api/alerts/nope/ack", &json, "{}").await;
        assert_eq!(unknown.status, 404, "{}", unknown.body);
        let refused = request(
            &base,
            "POST",
            "/api/alerts/alert-1/ack",
            &json,
            r#"{"by": "故障"}"#,
        )
        .await;
        assert_eq!(refused.status, 503, "{}", refused.body);
        assert!(refused.body.contains("broker unreachable"));
        assert_eq!(
            alerts.board().active[0].acknowledged_by.as_deref(),
            Some("张三"),
            "unchanged"
        );
        let invalid = request(
            &base,
            "POST",
            "/api/alerts/alert-1/ack",
            &json,
            &format!(r#"{{"by": "{}"}}"#, "长".repeat(65)),
        )
        .await;
        assert_eq!(invalid.status, 422, "{}", invalid.body);
        let huge = format!(r#"{{"note": "{}"}}"#, "x".repeat(CONSOLE_BODY_LIMIT));
        let too_big = request(&base, "POST", "/api/alerts/alert-1/ack", &json, &huge).await;
        assert_eq!(too_big.status, 413);
        assert_eq!(
            produced.lock().unwrap().len(),
            1,
            "nothing else reached the broker"
        );
    }

    #[tokio::test]
    async fn overview_reports_routed_volume_per_department_and_the_triage_queue() {
        let (state, _queue) = state_with(AlertFeed::new());
        let metrics = state.metrics.clone();
        metrics
            .routed
            .with_label_values(&["水务局", "城乡建设"])
            .inc_by(5);
        metrics
            .routed
            .with_label_values(&["水务局", "环境保护"])
            .inc_by(2);
        metrics
            .routed
            .with_label_values(&["交警支队", "交通运输"])
            .inc_by(3);
        metrics.triaged.with_label_values(&["weibo"]).inc_by(4);
        metrics.events_in.with_label_values(&["12345"]).inc_by(20);
        metrics.active_incidents.set(1);
        let base = spawn(state).await;
        let (name, value) = bearer();
        let answer = get(&base, "/api/overview", &[(name, &value)]).await;
        assert_eq!(answer.status, 200);
        let overview: Overview = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(
            overview.routed_by_department,
            vec![
                DepartmentCount {
                    department: "水务局".into(),
                    count: 7
                },
                DepartmentCount {
                    department: "交警支队".into(),
                    count: 3
                },
            ]
        );
        assert_eq!(
            (overview.routed, overview.triage, overview.events_in),
            (10, 4, 20)
        );
        assert_eq!(overview.triage_by_channel["weibo"], 4);
        assert_eq!(overview.active_incidents, 1);
    }
}
