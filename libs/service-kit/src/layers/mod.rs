//! The tower layers every server stacks: request stats and load shedding, plus the
//! protocol-specific answers (HTTP status or gRPC status) for shed and panicked requests.

pub mod shed;
pub mod stats;

pub use shed::ShedLayer;
pub use stats::{Protocol, RequestStatsLayer};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

/// A gRPC "trailers-only" error answer: HTTP 200 with the status in the headers.
pub fn grpc_error(code: tonic::Code, message: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", HeaderValue::from(code as i32));
    if let Ok(v) = HeaderValue::from_str(&percent_encode(message)) {
        h.insert("grpc-message", v);
    }
    r
}

/// A JSON error answer in the Prometheus envelope shape.
pub fn http_error(status: StatusCode, error_type: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({"status": "error", "errorType": error_type, "error": message});
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// grpc-message is percent-encoded (gRPC over HTTP/2 spec).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The answer to a request whose handler panicked, per protocol.
pub fn panic_response(protocol: Protocol) -> Response<Full<Bytes>> {
    match protocol {
        Protocol::Http => http_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the handler panicked; the panic is logged",
        ),
        Protocol::Grpc => grpc_error(
            tonic::Code::Internal,
            "the handler panicked; the panic is logged",
        ),
    }
}
