//! Counters, gauges and approximate histograms, exported as twitter-server metrics.json and Prometheus text.
//!
//! This is the instrumentation every Aerie service uses, in the spirit of
//! Finagle's `StatsReceiver`:
//!
//! ```text
//!  StatsReceiver::new()            one registry per process (clones share it)
//!     .scope("srv").scope("http")  names join with '/': "srv/http/..."
//!         .counter("requests")  -> Counter    (add to the thread's own cell, no lookup after creation)
//!         .histogram("latency_ms") -> Histogram (log-linear buckets, atomic add)
//!         .gauge("pending", f)  -> Gauge      (f is called at export; drop unregisters)
//!
//!  registry --metrics_json()-----> {"srv/http/latency_ms.p99": 12, "srv/http/requests": 7, ...}
//!           --prometheus_text()--> # TYPE srv_http_requests counter / srv_http_requests 7 ...
//! ```
//!
//! ```
//! use stats::StatsReceiver;
//!
//! let stats = StatsReceiver::new();
//! let http = stats.scope("srv").scope("http");
//! let requests = http.counter("requests"); // look up once, keep the handle
//! let latency = http.histogram("request_latency_ms");
//! let _pending = http.gauge("pending", || 3.0); // exported while the handle lives
//!
//! requests.incr();
//! latency.add(12);
//!
//! assert!(stats.metrics_json().contains(r#""srv/http/requests":1"#));
//! assert!(stats.prometheus_text().contains("\nsrv_http_requests 1\n"));
//! ```
//!
//! Handles are looked up (or created) once; recording through a handle is a few
//! relaxed atomic operations on memory owned by that handle: no lock, no map
//! lookup, no allocation.
//!
//! Naming rules:
//! - full names are the scopes and the metric name joined with `/`; empty parts
//!   are skipped, so `scope("")` is the same receiver;
//! - the same full name asked for twice gives the same counter (or histogram);
//!   counters, histograms and gauges live in separate namespaces;
//! - a gauge registered under a name that already has a gauge replaces it, and
//!   dropping the replaced handle does not remove its successor.
//!
//! Export formats are described in [`json`] (twitter-server `/admin/metrics.json`)
//! and [`prometheus`] (text exposition format 0.0.4).

mod counter;
mod histogram;
pub mod json;
pub mod prometheus;
mod receiver;
mod stripe;

pub use counter::Counter;
pub use histogram::{Histogram, HistogramSnapshot, MAX_RELATIVE_ERROR, QUANTILES};
pub use receiver::{Gauge, StatsReceiver};
