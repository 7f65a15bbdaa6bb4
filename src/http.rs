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
}
