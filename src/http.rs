//! The HTTP endpoints of a running instance: `/metrics`, `/healthz`, `/readyz`.
//!
//! Sits beside the pipeline, reading its [`Metrics`] and [`Health`]; later the alert feed, the
//! console and the ingest endpoints join here.

use crate::health::Health;
use crate::metrics::Metrics;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    pub metrics: Metrics,
    pub health: Arc<Health>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
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
