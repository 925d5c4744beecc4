//! Request stats in the spirit of Finagle's StatsFilter: for the server as a whole and
//! per endpoint (gRPC method or HTTP route), `requests`, `success`, `failures`,
//! `request_latency_ms` (histogram) and a `pending` gauge; and per answer status, as
//! twitter-server does, `srv/http/status/<code>` and `srv/http/status/<class>XX`
//! (so 4xx answers, which are the client's failure and count as success, still show)
//! and `srv/grpc/status/<CODE>` for gRPC errors answered before any message.
//!
//! Names: `srv/<protocol>/requests` for the total, `srv/<protocol>/<endpoint>/requests`
//! per endpoint, where the endpoint is the gRPC method (`aerie.storage.v1.Storage.Write`)
//! or the matched HTTP route (`api_v1_query`, `unmatched` for 404s). The number of
//! distinct endpoints is capped so that a client sending arbitrary paths cannot
//! create unbounded series; past the cap requests count under `other`.
//!
//! Classification: HTTP 5xx is a failure; for gRPC a non-200 HTTP status or a
//! `grpc-status` other than 0 in the response headers (tonic's "trailers-only" error
//! answers) is a failure. An error status sent in the trailers after a streamed body
//! is not seen here. Latency is measured to the response head.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::MatchedPath;
use http::{Request, Response};
use parking_lot::RwLock;
use pin_project_lite::pin_project;
use stats::{Counter, Gauge, Histogram, StatsReceiver};
use tower::{Layer, Service};

/// Most distinct endpoints tracked per server.
pub const MAX_ENDPOINTS: usize = 256;

/// Which protocol a stack serves; decides naming, classification and rejections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Grpc,
}

impl Protocol {
    fn scope(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
        }
    }
}

#[derive(Clone, Debug)]
struct EndpointStats {
    name: Arc<str>,
    requests: Counter,
    success: Counter,
    failures: Counter,
    latency: Histogram,
}

impl EndpointStats {
    fn new(scope: &StatsReceiver) -> Self {
        Self {
            name: scope.prefix().into(),
            requests: scope.counter("requests"),
            success: scope.counter("success"),
            failures: scope.counter("failures"),
            latency: scope.histogram("request_latency_ms"),
        }
    }
}

#[derive(Debug)]
struct Shared {
    protocol: Protocol,
    scope: StatsReceiver,
    total: EndpointStats,
    endpoints: RwLock<HashMap<String, EndpointStats>>,
    pending: Arc<AtomicI64>,
    _pending_gauge: Gauge,
    statuses: RwLock<HashMap<&'static str, Counter>>,
}

/// Layer of [`RequestStats`].
#[derive(Clone, Debug)]
pub struct RequestStatsLayer {
    shared: Arc<Shared>,
}

impl RequestStatsLayer {
    /// Stats under `srv/<protocol>/` of `stats`.
    pub fn new(stats: &StatsReceiver, protocol: Protocol) -> Self {
        let scope = stats.scope("srv").scope(protocol.scope());
        let pending = Arc::new(AtomicI64::new(0));
        let p = pending.clone();
        let gauge = scope.gauge("pending", move || p.load(Ordering::Relaxed) as f64);
        Self {
            shared: Arc::new(Shared {
                protocol,
                total: EndpointStats::new(&scope),
                scope,
                endpoints: RwLock::new(HashMap::new()),
                pending,
                _pending_gauge: gauge,
                statuses: RwLock::new(HashMap::new()),
            }),
        }
    }
}

/// gRPC status names by code (grpc/doc/statuscodes.md).
const GRPC_CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The status labels an answer counts under: code and class for HTTP, the
/// status name for gRPC (`OK` when the head carries no error).
fn status_labels<B>(protocol: Protocol, resp: &Response<B>) -> [Option<&'static str>; 2] {
    match protocol {
        Protocol::Http => {
            let code = resp.status();
            let class = match code.as_u16() / 100 {
                1 => "1XX",
                2 => "2XX",
                3 => "3XX",
                4 => "4XX",
                _ => "5XX",
            };
            [status_code_str(code.as_u16()), Some(class)]
        }
        Protocol::Grpc => {
            let name = resp
                .headers()
                .get("grpc-status")
                .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
                .and_then(|v| v.parse::<usize>().ok())
                .map_or("OK", |c| GRPC_CODES.get(c).copied().unwrap_or("UNKNOWN"));
            [Some(name), None]
        }
    }
}

/// A static name of a well-known HTTP status code.
fn status_code_str(code: u16) -> Option<&'static str> {
    const CODES: [(u16, &str); 24] = [
        (200, "200"),
        (201, "201"),
        (202, "202"),
        (204, "204"),
        (301, "301"),
        (302, "302"),
        (304, "304"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (406, "406"),
        (408, "408"),
        (409, "409"),
        (411, "411"),
        (413, "413"),
        (415, "415"),
        (422, "422"),
        (429, "429"),
        (500, "500"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
    ];
    CODES.iter().find(|(c, _)| *c == code).map(|(_, s)| *s)
}

impl Shared {
    fn count_status<B>(&self, resp: &Response<B>) {
        for label in status_labels(self.protocol, resp).into_iter().flatten() {
            if let Some(c) = self.statuses.read().get(label) {
                c.incr();
                continue;
            }
            self.statuses
                .write()
                .entry(label)
                .or_insert_with(|| self.scope.scope("status").counter(label))
                .incr();
        }
    }

    fn endpoint<B>(&self, req: &Request<B>) -> EndpointStats {
        let key: &str = match self.protocol {
            Protocol::Grpc => req.uri().path(),
            Protocol::Http => req
                .extensions()
                .get::<MatchedPath>()
                .map(MatchedPath::as_str)
                .unwrap_or("unmatched"),
        };
        if let Some(s) = self.endpoints.read().get(key) {
            return s.clone();
        }
        let mut map = self.endpoints.write();
        if let Some(s) = map.get(key) {
            return s.clone();
        }
        let name = if map.len() >= MAX_ENDPOINTS {
            "other".to_owned()
        } else {
            endpoint_name(self.protocol, key)
        };
        let s = EndpointStats::new(&self.scope.scope(&name));
        map.insert(key.to_owned(), s.clone());
        s
    }
}

/// `/aerie.storage.v1.Storage/Write` -> `aerie.storage.v1.Storage.Write`;
/// `/api/v1/query` -> `api_v1_query`; `/` -> `root`.
fn endpoint_name(protocol: Protocol, path: &str) -> String {
    let trimmed = path.trim_start_matches('/');
    let name = match protocol {
        Protocol::Grpc => trimmed.replace('/', "."),
        Protocol::Http => trimmed.replace('/', "_"),
    };
    if name.is_empty() { "root".into() } else { name }
}

impl<S> Layer<S> for RequestStatsLayer {
    type Service = RequestStats<S>;
    fn layer(&self, inner: S) -> RequestStats<S> {
        RequestStats {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// See the module doc.
#[derive(Clone, Debug)]
pub struct RequestStats<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, B, ResB> Service<Request<B>> for RequestStats<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = StatsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let endpoint = self.shared.endpoint(&req);
        self.shared.total.requests.incr();
        endpoint.requests.incr();
        self.shared.pending.fetch_add(1, Ordering::Relaxed);
        StatsFuture {
            inner: self.inner.call(req),
            record: Some(Record {
                shared: self.shared.clone(),
                endpoint,
                start: Instant::now(),
            }),
        }
    }
}

/// What a finished (or dropped) request records.
struct Record {
    shared: Arc<Shared>,
    endpoint: EndpointStats,
    start: Instant,
}

impl Record {
    fn finish(self, ok: bool) {
        let ms = self.start.elapsed().as_millis() as u64;
        for s in [&self.shared.total, &self.endpoint] {
            s.latency.add(ms);
            if ok {
                s.success.incr();
            } else {
                s.failures.incr();
            }
        }
        // `Drop` decrements pending.
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        self.shared.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project! {
    /// Future of [`RequestStats`]; a request dropped before answering counts as a failure.
    pub struct StatsFuture<F> {
        #[pin]
        inner: F,
        record: Option<Record>,
    }

    impl<F> PinnedDrop for StatsFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(r) = this.project().record.take() {
                r.finish(false);
            }
        }
    }
}

impl<F, ResB, E> Future for StatsFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = match this.inner.poll(cx) {
            Poll::Ready(out) => out,
            Poll::Pending => return Poll::Pending,
        };
        if let Some(r) = this.record.take() {
            let ok = match &out {
                Ok(resp) => {
                    r.shared.count_status(resp);
                    if resp.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
                        tracing::warn!(
                            endpoint = %r.endpoint.name,
                            "request body over the server's max_request_bytes refused (413)"
                        );
                    }
                    is_success(r.shared.protocol, resp)
                }
                Err(_) => false,
            };
            r.finish(ok);
        }
        Poll::Ready(out)
    }
}

fn is_success<B>(protocol: Protocol, resp: &Response<B>) -> bool {
    match protocol {
        Protocol::Http => !resp.status().is_server_error(),
        Protocol::Grpc => {
            resp.status() == http::StatusCode::OK
                && resp
                    .headers()
                    .get("grpc-status")
                    .is_none_or(|v| v.as_bytes() == b"0")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_names() {
        assert_eq!(
            endpoint_name(Protocol::Grpc, "/aerie.storage.v1.Storage/Write"),
            "aerie.storage.v1.Storage.Write"
        );
        assert_eq!(
            endpoint_name(Protocol::Http, "/api/v1/query"),
            "api_v1_query"
        );
        assert_eq!(endpoint_name(Protocol::Http, "/"), "root");
    }

    #[test]
    fn status_labels_name_codes_and_classes() {
        let mut h = Response::new(());
        *h.status_mut() = http::StatusCode::PAYLOAD_TOO_LARGE;
        assert_eq!(
            status_labels(Protocol::Http, &h),
            [Some("413"), Some("4XX")]
        );
        *h.status_mut() = http::StatusCode::from_u16(599).unwrap();
        assert_eq!(status_labels(Protocol::Http, &h), [None, Some("5XX")]);
        let mut g = Response::new(());
        assert_eq!(status_labels(Protocol::Grpc, &g), [Some("OK"), None]);
        g.headers_mut().insert("grpc-status", "3".parse().unwrap());
        assert_eq!(
            status_labels(Protocol::Grpc, &g),
            [Some("INVALID_ARGUMENT"), None]
        );
        g.headers_mut().insert("grpc-status", "99".parse().unwrap());
        assert_eq!(status_labels(Protocol::Grpc, &g), [Some("UNKNOWN"), None]);
    }

    #[test]
    fn grpc_classification() {
        let mut r = Response::new(());
        assert!(is_success(Protocol::Grpc, &r));
        r.headers_mut().insert("grpc-status", "0".parse().unwrap());
        assert!(is_success(Protocol::Grpc, &r));
        r.headers_mut().insert("grpc-status", "13".parse().unwrap());
        assert!(!is_success(Protocol::Grpc, &r));
        let mut h = Response::new(());
        *h.status_mut() = http::StatusCode::NOT_FOUND;
        assert!(
            is_success(Protocol::Http, &h),
            "4xx is the client's failure"
        );
        *h.status_mut() = http::StatusCode::BAD_GATEWAY;
        assert!(!is_success(Protocol::Http, &h));
    }
}
