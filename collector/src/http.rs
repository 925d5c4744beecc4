//! The collector's HTTP API: the push paths (`/api/v1/write` remote_write,
//! `/api/v1/import/prometheus`, `/api/v1/push`) and its admin pages
//! (`/admin/collector/targets`, `/admin/collector/rejected`).
//!
//! Success answers 204 No Content. Errors answer JSON `{"error": "...", ...}` naming
//! the bad line or item: 400 for a bad body (nothing of it stored when it does not
//! parse; the valid part stored when only some items are rejected), 413 for a body
//! over the limit, 503 when storage did not accept the push (safe to retry).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use prost::Message;
use serde::{Deserialize, Serialize};
use serde_json::json;
use stats::{Counter, StatsReceiver};

use crate::membership::Membership;
use crate::parse::{self, ParseError};
use crate::prompb;
use crate::push::{ImportOrPush, Kind, PushError, PushMetric, PushOutcome, PushTask, Pusher};
use crate::scheduler::Statuses;

/// Counters of bodies refused before they reached storage.
#[derive(Debug, Clone)]
struct BadBodies {
    too_large: Counter,
    not_snappy: Counter,
    not_protobuf: Counter,
    not_text: Counter,
    not_json: Counter,
}

#[derive(Clone)]
struct Api {
    pusher: Arc<Pusher>,
    statuses: Statuses,
    membership: Option<Arc<Membership>>,
    max_decoded_bytes: usize,
    bad: BadBodies,
}

/// The routes, with their stats under `stats` (scoped `http/bad_body/`).
pub fn router(
    pusher: Arc<Pusher>,
    statuses: Statuses,
    membership: Option<Arc<Membership>>,
    max_decoded_bytes: usize,
    stats: &StatsReceiver,
) -> Router {
    let s = stats.scope("bad_body");
    let api = Api {
        pusher,
        statuses,
        membership,
        max_decoded_bytes,
        bad: BadBodies {
            too_large: s.counter("too_large"),
            not_snappy: s.counter("not_snappy"),
            not_protobuf: s.counter("not_protobuf"),
            not_text: s.counter("not_text"),
            not_json: s.counter("not_json"),
        },
    };
    Router::new()
        .route("/api/v1/write", post(remote_write))
        .route("/api/v1/import/prometheus", post(import))
        .route("/api/v1/push", post(push))
        .route("/admin/collector/targets", get(targets))
        .route("/admin/collector/rejected", get(rejected))
        .route("/admin/collector/membership", get(membership_page))
        .with_state(api)
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": message.to_string() }))).into_response()
}

fn body_or_error(api: &Api, body: Result<Bytes, BytesRejection>) -> Result<Bytes, Box<Response>> {
    body.map_err(|e| {
        let status = e.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            api.bad.too_large.incr();
        }
        tracing::warn!(error = %e.body_text(), "push body refused");
        Box::new(error(status, e.body_text()))
    })
}

fn push_error(e: PushError) -> Response {
    match &e {
        PushError::Invalid(_) => error(StatusCode::BAD_REQUEST, &e),
        PushError::Storage(s) if s.is_retryable() => {
            tracing::warn!(error = %e, "push not stored");
            error(StatusCode::SERVICE_UNAVAILABLE, &e)
        }
        PushError::Storage(_) => error(StatusCode::BAD_REQUEST, &e),
    }
}

/// 204 when everything was stored, else 400 listing the rejected items.
fn outcome(o: PushOutcome, what: &str) -> Response {
    if o.rejections.is_empty() && o.storage_rejections.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let n = o.rejections.len() + o.storage_rejections.len();
    let first = o
        .rejections
        .first()
        .map(|r| format!("{what} {}: {}", r.index, r.detail))
        .or_else(|| {
            o.storage_rejections
                .first()
                .map(|r| format!("storage refused an item ({}): {}", r.reason, r.detail))
        })
        .unwrap_or_default();
    let items: Vec<_> = o
        .rejections
        .iter()
        .take(100)
        .map(|r| json!({ what: r.index, "reason": r.reason, "detail": r.detail }))
        .chain(o.storage_rejections.iter().take(100).map(|r| {
            json!({ "storage_item": r.index, "sample": r.sample_index, "reason": r.reason, "detail": r.detail })
        }))
        .collect();
    (
        StatusCode::BAD_REQUEST,
        Json(json!({
            "error": format!("{n} item(s) rejected; first: {first}"),
            "accepted": o.accepted,
            "rejected": n,
            "rejections": items,
        })),
    )
        .into_response()
}

async fn remote_write(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body_or_error(&api, body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if let Some(enc) = headers.get(http::header::CONTENT_ENCODING)
        && enc.as_bytes() != b"snappy"
    {
        api.bad.not_snappy.incr();
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "remote_write body must be snappy-compressed protobuf, not Content-Encoding {:?}",
                String::from_utf8_lossy(enc.as_bytes())
            ),
        );
    }
    let len = match snap::raw::decompress_len(&body) {
        Ok(n) => n,
        Err(e) => {
            api.bad.not_snappy.incr();
            tracing::warn!(error = %e, bytes = body.len(), "remote_write body is not snappy");
            return error(
                StatusCode::BAD_REQUEST,
                format!("remote_write body is not snappy-compressed: {e}"),
            );
        }
    };
    if len > api.max_decoded_bytes {
        api.bad.too_large.incr();
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "remote_write body decompresses to {len} bytes, over the limit of {}",
                api.max_decoded_bytes
            ),
        );
    }
    let raw = match snap::raw::Decoder::new().decompress_vec(&body) {
        Ok(raw) => raw,
        Err(e) => {
            api.bad.not_snappy.incr();
            tracing::warn!(error = %e, bytes = body.len(), "remote_write body is not snappy");
            return error(
                StatusCode::BAD_REQUEST,
                format!("remote_write body is not snappy-compressed: {e}"),
            );
        }
    };
    let req = match prompb::WriteRequest::decode(raw.as_slice()) {
        Ok(r) => r,
        Err(e) => {
            api.bad.not_protobuf.incr();
            tracing::warn!(error = %e, "remote_write body is not a WriteRequest");
            return error(
                StatusCode::BAD_REQUEST,
                format!("remote_write body is not a prometheus.WriteRequest: {e}"),
            );
        }
    };
    match api.pusher.remote_write(req).await {
        Ok(o) => outcome(o, "series"),
        Err(e) => push_error(e),
    }
}

async fn import(State(api): State<Api>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body_or_error(&api, body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let decoded = parse::maybe_gunzip(&body, api.max_decoded_bytes);
    let text = match decoded
        .as_deref()
        .map_err(Clone::clone)
        .and_then(parse::utf8)
    {
        Ok(t) => t,
        Err(e) => {
            api.bad.not_text.incr();
            let status = if matches!(e, ParseError::TooLarge { .. }) {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            return error(status, format!("import body rejected: {e}"));
        }
    };
    match api.pusher.import(text).await {
        Ok(o) => outcome(o, "sample"),
        Err(ImportOrPush::Parse(e)) => {
            api.bad.not_text.incr();
            tracing::warn!(error = %e, "import body rejected");
            (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": format!("import body rejected, nothing stored: {e}"), "line": e.line })),
            )
                .into_response()
        }
        Err(ImportOrPush::Push(e)) => push_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonPush {
    service: String,
    task_id: String,
    interval_start_ms: i64,
    #[serde(default)]
    interval_ms: i64,
    metrics: Vec<JsonMetric>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonMetric {
    metric: String,
    kind: JsonKind,
    value: f64,
}

#[derive(Deserialize, Serialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum JsonKind {
    Counter,
    Gauge,
}

async fn push(State(api): State<Api>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body_or_error(&api, body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let req: JsonPush = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            api.bad.not_json.incr();
            tracing::warn!(error = %e, "push body rejected");
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": format!("push body is not push JSON: {e}"), "line": e.line(), "column": e.column() })),
            )
                .into_response();
        }
    };
    let task = PushTask {
        service: req.service,
        task_id: req.task_id,
        interval_start_ms: req.interval_start_ms,
        interval_ms: req.interval_ms,
        metrics: req
            .metrics
            .into_iter()
            .map(|m| PushMetric {
                metric: m.metric,
                kind: Some(match m.kind {
                    JsonKind::Counter => Kind::Counter,
                    JsonKind::Gauge => Kind::Gauge,
                }),
                value: m.value,
            })
            .collect(),
    };
    match api.pusher.push(task).await {
        Ok(o) => outcome(o, "metric"),
        Err(e) => push_error(e),
    }
}

async fn targets(State(api): State<Api>) -> Response {
    let statuses: Vec<_> = api.statuses.lock().values().cloned().collect();
    Json(statuses).into_response()
}

async fn rejected(State(api): State<Api>) -> Response {
    let by_target: BTreeMap<String, _> = api
        .statuses
        .lock()
        .iter()
        .map(|(id, s)| (id.clone(), s.rejected.clone()))
        .chain(std::iter::once(("push".to_owned(), api.pusher.rejected())))
        .collect();
    Json(by_target).into_response()
}

async fn membership_page(State(api): State<Api>) -> Response {
    match &api.membership {
        Some(m) => Json(m.snapshot()).into_response(),
        None => Json(json!({ "enabled": false })).into_response(),
    }
}
