//! The HTTP endpoints of a running instance: `/metrics`, `/healthz`, `/readyz`, the live alert
//! feed `/alerts/stream` (server-sent events, resumable with `Last-Event-ID`) and `/api/alerts`.
//!
//! Sits beside the pipeline, reading its [`Metrics`], [`Health`] and [`AlertFeed`].

use crate::alert_feed::{AlertFeed, FeedMessage};
use crate::health::Health;
use crate::metrics::Metrics;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use futures::stream::{self, Stream, StreamExt};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::broadcast;

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    pub metrics: Metrics,
    pub health: Arc<Health>,
    pub alerts: AlertFeed,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/alerts/stream", get(alert_stream))
        .route(
            "/api/alerts",
            get(|State(state): State<AppState>| async move { Json(state.alerts.board()) }),
        )
        .with_state(state)
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

/// Server-sent events: each alert message as `event: alert`, `id: <seq>`, `data: <alert JSON>`.
/// A client that reconnects with `Last-Event-ID` first gets what it missed (as far as the replay
/// ring reaches), then the live stream. A client too slow to keep up is disconnected and resumes
/// the same way.
async fn alert_stream(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let last_seen = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
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
    let data = serde_json::to_string(&message.alert).unwrap_or_else(|_| "{}".into());
    SseEvent::default()
        .event("alert")
        .id(message.seq.to_string())
        .data(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn spawn(state: AppState) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, state, std::future::pending()));
        format!("http://{address}")
    }

    async fn get_text(url: &str) -> (u16, String) {
        // A plain HTTP/1.0 request keeps the test free of an HTTP client dependency.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let rest = url.trim_start_matches("http://");
        let (host, path) = rest.split_once('/').unwrap();
        let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
        stream
            .write_all(format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response.split_once("\r\n\r\n").unwrap().1.to_string();
        (status, body)
    }

    #[tokio::test]
    async fn readyz_says_why_until_models_and_partitions_are_there() {
        let health = Arc::new(Health::new());
        let base = spawn(AppState {
            metrics: Metrics::new(),
            health: health.clone(),
            alerts: AlertFeed::new(),
        })
        .await;
        let (status, body) = get_text(&format!("{base}/readyz")).await;
        assert_eq!(status, 503);
        assert!(body.contains("models not loaded") && body.contains("no input partitions"));
        health.set_models_loaded(true);
        health.set_partitions_assigned(true);
        let (status, _) = get_text(&format!("{base}/readyz")).await;
        assert_eq!(status, 200);
        let (status, body) = get_text(&format!("{base}/healthz")).await;
        assert_eq!((status, body.as_str()), (200, "ok\n"));
        let (status, body) = get_text(&format!("{base}/metrics")).await;
        assert_eq!(status, 200);
        assert!(body.contains("citypulse_events_in_total"));
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

    #[tokio::test]
    async fn alert_stream_resumes_after_last_event_id_and_then_goes_live() {
        use crate::detect::AlertStatus;
        use tokio::io::AsyncWriteExt;
        let alerts = AlertFeed::new();
        let sample = |id: &str| {
            let mut alert: crate::detect::Alert = serde_json::from_value(serde_json::json!({
                "alert_id": id, "kind": "incident", "status": "firing", "severity": "warning",
                "district": "雨花区", "category": "城乡建设", "terms": ["停水"], "count": 10,
                "baseline": 0.5, "channels": ["12345", "weibo"],
                "first_seen": "2026-11-25T10:00:00+08:00", "last_seen": "2026-11-25T10:20:00+08:00",
                "at": "2026-11-25T10:20:00+08:00", "event_ids": ["12345:A1"], "incident_id": null
            }))
            .unwrap();
            alert.status = AlertStatus::Firing;
            alert
        };
        alerts.publish(sample("alert-1"));
        alerts.publish(sample("alert-2"));
        let base = spawn(AppState {
            metrics: Metrics::new(),
            health: Arc::new(Health::new()),
            alerts: alerts.clone(),
        })
        .await;
        let host = base.trim_start_matches("http://").to_string();
        let mut stream = tokio::net::TcpStream::connect(&host).await.unwrap();
        stream
            .write_all(
                format!("GET /alerts/stream HTTP/1.1\r\nHost: {host}\r\nLast-Event-ID: 1\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        let mut received = Vec::new();
        read_until(&mut stream, &mut received, "alert-2").await;
        let text = String::from_utf8_lossy(&received).into_owned();
        assert!(text.contains("text/event-stream"), "{text}");
        assert!(text.contains("id: 2"), "{text}");
        assert!(
            !text.contains("alert-1"),
            "already seen before Last-Event-ID: {text}"
        );
        alerts.publish(sample("alert-3"));
        read_until(&mut stream, &mut received, "alert-3").await;
        let text = String::from_utf8_lossy(&received).into_owned();
        assert!(
            text.contains("event: alert") && text.contains("id: 3"),
            "{text}"
        );
        let (status, body) = get_text(&format!("{base}/api/alerts")).await;
        assert_eq!(status, 200);
        let board: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(board["active"].as_array().unwrap().len(), 3);
    }
}
