//! Throughput figures printed by `collector-bench`, and the synthetic bodies they
//! (and tests) use: parse rate of both scrape formats on one core, the push paths
//! (import and remote_write, decode to routed Write requests) on one core, and
//! end-to-end scrape capacity of one core against local HTTP targets.
//!
//! Storage is replaced by a sink that encodes each batch as the gRPC Write request
//! it would send and then drops it, so the figures are the collector's own cost.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prost::Message;
use service_kit::Shutdown;
use stats::StatsReceiver;

use crate::config::{PushConfig, RoutingConfig};
use crate::discovery::Target;
use crate::grpc;
use crate::hygiene::{Limits, RejectStats, SourceGuard};
use crate::model::{Series, sample_count};
use crate::parse::{json, text};
use crate::prompb;
use crate::push::Pusher;
use crate::router::Router;
use crate::scrape::Scraper;
use crate::sink::{Sink, WriteFuture, WriteOutcome};

/// A Prometheus text body of about `n` samples, shaped like real exporters: families
/// with HELP/TYPE, labelled counters, gauges and a histogram.
pub fn prometheus_body(n: usize) -> String {
    let mut out = String::with_capacity(n * 80);
    let mut i = 0;
    let mut fam = 0;
    while i < n {
        let name = format!("app_component{fam}_requests_total");
        out.push_str(&format!(
            "# HELP {name} Requests handled by component {fam}.\n# TYPE {name} counter\n"
        ));
        for code in ["200", "404", "500"] {
            for method in ["get", "post", "put"] {
                if i >= n {
                    break;
                }
                out.push_str(&format!(
                    "{name}{{code=\"{code}\",method=\"{method}\"}} {}\n",
                    1000 + i * 7
                ));
                i += 1;
            }
        }
        let gauge = format!("app_component{fam}_queue_depth");
        out.push_str(&format!("# TYPE {gauge} gauge\n"));
        if i < n {
            out.push_str(&format!("{gauge} {}.25\n", i % 97));
            i += 1;
        }
        fam += 1;
    }
    out
}

/// A twitter-server metrics.json body of `n` entries: counters, gauges and Finagle
/// histogram keys.
pub fn metrics_json_body(n: usize) -> String {
    let mut out = String::with_capacity(n * 48);
    out.push('{');
    let stats = json::HISTOGRAM_STATS;
    for i in 0..n {
        if i > 0 {
            out.push(',');
        }
        let h = i / stats.len();
        let stat = stats[i % stats.len()];
        if i % 3 == 0 {
            out.push_str(&format!(
                "\"srv/http/component{h}/requests\":{}",
                100_000 + i
            ));
        } else {
            out.push_str(&format!(
                "\"srv/http/component{h}/request_latency_ms.{stat}\":{}.5",
                i % 1000
            ));
        }
    }
    out.push('}');
    out
}

fn rate(label: &str, samples_per_iter: usize, mut f: impl FnMut() -> usize) -> f64 {
    // Warm up, then run for about a second.
    for _ in 0..20 {
        f();
    }
    let start = Instant::now();
    let mut samples = 0usize;
    while start.elapsed() < Duration::from_secs(1) {
        for _ in 0..20 {
            samples += f();
        }
    }
    assert!(samples >= samples_per_iter);
    let per_sec = samples as f64 / start.elapsed().as_secs_f64();
    println!("{label:<48} {:>12.0} samples/s per core", per_sec);
    per_sec
}

/// Prints the parse figures (one core, the calling thread).
pub fn parse_figures() {
    let prom = prometheus_body(1000);
    let js = metrics_json_body(1000);
    rate("parse prometheus text (1,000-sample bodies)", 1000, || {
        text::parse(&prom, false, |s| {
            std::hint::black_box(s.value);
        })
        .unwrap()
    });
    rate("parse metrics.json (1,000-sample bodies)", 1000, || {
        json::parse(&js, |_, v| {
            std::hint::black_box(v);
        })
        .unwrap()
    });
    // Parse plus canonical names and hygiene, as a scrape does it.
    let stats = RejectStats::new(&StatsReceiver::new());
    let limits = Limits {
        max_name_bytes: 512,
        max_series_per_source: 100_000,
        keep_rejected: 16,
    };
    let mut guard = SourceGuard::new(limits);
    let mut name = String::new();
    rate("parse + names + hygiene, prometheus text", 1000, || {
        guard.begin();
        let mut ok = 0;
        text::parse(&prom, false, |s| {
            name.clear();
            let mut labels = s.labels.to_vec();
            text::canonical_metric(s.name, &mut labels, |_| false, &mut name);
            let finite = s.must_be_finite();
            if guard.admit(&name, s.value, finite, &stats).is_ok() {
                ok += 1;
            }
        })
        .unwrap();
        ok
    });
    let mut guard = SourceGuard::new(limits);
    rate("parse + hygiene, metrics.json", 1000, || {
        guard.begin();
        let mut ok = 0;
        json::parse(&js, |n, v| {
            if guard.admit(n, v, json::must_be_finite(n), &stats).is_ok() {
                ok += 1;
            }
        })
        .unwrap();
        ok
    });
}

/// A sink that encodes every batch as its storage Write request, counts, and drops it.
#[derive(Debug, Default)]
struct EncodingSink {
    samples: AtomicU64,
}

impl Sink for EncodingSink {
    fn name(&self) -> &str {
        "bench"
    }

    fn write(&self, batch: &[Series]) -> WriteFuture {
        let bytes = grpc::write_request(batch).encode_to_vec();
        std::hint::black_box(bytes);
        let n = sample_count(batch) as u64;
        self.samples.fetch_add(n, Ordering::Relaxed);
        Box::pin(async move {
            Ok(WriteOutcome {
                accepted: n,
                rejections: Vec::new(),
            })
        })
    }
}

fn spill_dir(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!("collector-bench-{what}-{}", std::process::id()))
}

fn bench_router(
    sink: Arc<EncodingSink>,
    what: &str,
    stats: &StatsReceiver,
) -> (Arc<Router>, PathBuf) {
    let dir = spill_dir(what);
    let router = Router::new(
        vec![sink as Arc<dyn Sink>],
        &RoutingConfig::default(),
        &dir,
        stats,
    )
    .expect("the bench spill directory opens");
    (Arc::new(router), dir)
}

/// Prints the push-path figures: body to acknowledged Write, one core.
pub fn push_figures() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let stats = StatsReceiver::new();
    let sink = Arc::new(EncodingSink::default());
    let (router, dir) = bench_router(sink.clone(), "push", &stats);
    let pusher = Pusher::new(
        router,
        PushConfig::default(),
        crate::hygiene::Limits {
            max_name_bytes: 512,
            max_series_per_source: 100_000,
            keep_rejected: 16,
        },
        RejectStats::new(&stats),
        &stats,
    );
    // Import: 10,000 lines of 100 series x 100 timestamps (a backfill), ms timestamps.
    let mut body = String::new();
    for t in 0..100 {
        for s in 0..100 {
            body.push_str(&format!(
                "http_requests_total{{job=\"bench\",instance=\"host{}:9100\",code=\"{}\",method=\"get\"}} {} {}\n",
                s / 4,
                200 + s % 4,
                t * 10 + s,
                1_700_000_000_000i64 + t * 15_000
            ));
        }
    }
    rate(
        "import: text -> routed Write (10,000-line bodies)",
        10_000,
        || {
            rt.block_on(pusher.import(&body))
                .expect("import stores")
                .accepted as usize
        },
    );
    // remote_write: 2,000 series x 5 samples, snappy protobuf as Prometheus sends it.
    let req = prompb::WriteRequest {
        timeseries: (0..2000)
            .map(|i| prompb::TimeSeries {
                labels: vec![
                    prompb::Label {
                        name: "__name__".into(),
                        value: format!("node_metric_{}", i % 50),
                    },
                    prompb::Label {
                        name: "cpu".into(),
                        value: (i % 8).to_string(),
                    },
                    prompb::Label {
                        name: "instance".into(),
                        value: format!("host{}:9100", i / 50),
                    },
                    prompb::Label {
                        name: "job".into(),
                        value: "node".into(),
                    },
                ],
                samples: (0..5)
                    .map(|t| prompb::Sample {
                        value: (i * t) as f64,
                        timestamp: 1_700_000_000_000 + t * 15_000,
                    })
                    .collect(),
            })
            .collect(),
    };
    let wire = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy compresses");
    rate(
        "remote_write: snappy protobuf -> routed Write",
        10_000,
        || {
            let raw = snap::raw::Decoder::new()
                .decompress_vec(&wire)
                .expect("snappy");
            let req = prompb::WriteRequest::decode(raw.as_slice()).expect("protobuf");
            rt.block_on(pusher.remote_write(req))
                .expect("remote_write stores")
                .accepted as usize
        },
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Prints end-to-end scrape capacity: targets of 1,000 Prometheus-text metrics each
/// that one collector core (a current-thread runtime: fetch, parse, hygiene, route,
/// encode) scrapes per minute; the targets are served from another thread.
pub fn scrape_capacity() {
    const METRICS: usize = 1000;
    const TARGETS: usize = 200;
    let body: &'static str = Box::leak(prometheus_body(METRICS).into_boxed_str());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/{target}/metrics",
                axum::routing::get(move || async move { body }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a loopback port");
            tx.send(listener.local_addr().expect("bound"))
                .expect("main waits");
            axum::serve(listener, app)
                .await
                .expect("the target server runs");
        });
    });
    let addr = rx.recv().expect("the target server starts");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let stats = StatsReceiver::new();
    let sink = Arc::new(EncodingSink::default());
    let (router, dir) = bench_router(sink.clone(), "scrape", &stats);
    let limits = Limits {
        max_name_bytes: 512,
        max_series_per_source: 100_000,
        keep_rejected: 16,
    };
    let scraper = Arc::new(Scraper::new(32 << 20, limits, &stats));
    let targets: Vec<Target> = (0..TARGETS)
        .map(|i| Target {
            service: "bench".into(),
            source: format!("target-{i}"),
            url: format!("http://{addr}/t{i}/metrics"),
            interval: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            roles: Vec::new(),
            labels: Default::default(),
            local: false,
        })
        .collect();
    let (scrapes, secs) = rt.block_on(async {
        let shutdown = Shutdown::new();
        router.start(&shutdown);
        let count = Arc::new(AtomicU64::new(0));
        let run_for = Duration::from_secs(3);
        let started = Instant::now();
        // Scrape every target back to back, 16 at a time, for a few seconds.
        let workers: Vec<_> = (0..16)
            .map(|w| {
                let (scraper, router, count) = (scraper.clone(), router.clone(), count.clone());
                let mine: Vec<Target> = targets.iter().skip(w).step_by(16).cloned().collect();
                tokio::spawn(async move {
                    let mut guards: Vec<_> = mine.iter().map(|_| scraper.guard()).collect();
                    while started.elapsed() < run_for {
                        for (t, g) in mine.iter().zip(guards.iter_mut()) {
                            let s = scraper.scrape(t, g).await;
                            assert!(s.status.up, "{:?}", s.status.last_error);
                            router.submit(s.series);
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.await.expect("a scrape worker");
        }
        // Let the shipper drain what was routed.
        while router.totals().queued_samples > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let secs = started.elapsed().as_secs_f64();
        shutdown.cancel();
        router.stopped().await;
        (count.load(Ordering::Relaxed), secs)
    });
    let _ = std::fs::remove_dir_all(dir);
    let per_min = scrapes as f64 / secs * 60.0;
    println!(
        "{:<48} {:>12.0} targets/min per core ({} samples/s routed)",
        "scrape end to end (1,000-metric text targets)",
        per_min,
        (sink.samples.load(Ordering::Relaxed) as f64 / secs) as u64
    );
}

/// The bench binary's entry point.
pub fn main() {
    println!("collector-bench: one core per figure");
    parse_figures();
    push_figures();
    scrape_capacity();
}
