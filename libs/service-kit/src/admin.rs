//! The admin endpoints every service serves on its HTTP port: `/health`, `/ready`,
//! `/admin/metrics.json` (twitter-server shape) and `/metrics` (Prometheus text).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use stats::StatsReceiver;

/// Whether a service is ready to take traffic (shared by the service and `/ready`).
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// A flag that starts not ready.
    pub fn new() -> Self {
        Self::default()
    }
    /// Marks the service ready or not.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }
    /// Whether the service is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

#[derive(Clone)]
struct AdminState {
    name: &'static str,
    stats: StatsReceiver,
    readiness: Readiness,
}

/// The admin routes of service `name`.
pub fn router(name: &'static str, stats: StatsReceiver, readiness: Readiness) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/admin/metrics.json", get(metrics_json))
        .route("/metrics", get(metrics_text))
        .with_state(AdminState {
            name,
            stats,
            readiness,
        })
}

async fn health(State(s): State<AdminState>) -> impl IntoResponse {
    (StatusCode::OK, format!("{} OK\n", s.name))
}

async fn ready(State(s): State<AdminState>) -> impl IntoResponse {
    if s.readiness.is_ready() {
        (StatusCode::OK, format!("{} ready\n", s.name))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{} not ready\n", s.name),
        )
    }
}

#[derive(Deserialize)]
struct JsonParams {
    pretty: Option<bool>,
}

async fn metrics_json(State(s): State<AdminState>, Query(p): Query<JsonParams>) -> Response {
    let body = s.stats.metrics_json();
    let body = if p.pretty.unwrap_or(false) {
        serde_json::from_str::<serde_json::Value>(&body)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or(body)
    } else {
        body
    };
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn metrics_text(State(s): State<AdminState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.stats.prometheus_text(),
    )
        .into_response()
}
