//! The collector served for real on loopback ports, writing into an in-memory sink:
//! real HTTP targets served by the test (metrics.json and Prometheus text) found
//! through a file_sd targets file that changes, the push paths over HTTP and gRPC,
//! and malformed bodies that are refused with counters while scraping goes on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use collector::model::SeriesKey;
use collector::sink::{MemorySink, Sink};
use prost::Message;
use service_kit::{ServerConfig, Shutdown};

struct Targets {
    addr: SocketAddr,
    hits: Arc<AtomicU64>,
}

async fn serve_targets() -> Targets {
    let hits = Arc::new(AtomicU64::new(0));
    let h1 = hits.clone();
    let app = Router::new()
        .route(
            "/admin/metrics.json",
            get(move || {
                let n = h1.fetch_add(1, Ordering::Relaxed);
                async move {
                    (
                        [("content-type", "application/json")],
                        format!(
                            r#"{{"srv/http/requests":{},"jvm/heap/used":1024.5,"srv/http/latency_ms.p99":12,"pool/[I@579b7698/size":3}}"#,
                            100 + n
                        ),
                    )
                }
            }),
        )
        .route(
            "/metrics",
            get(|| async {
                "# TYPE http_requests_total counter\nhttp_requests_total{code=\"200\",method=\"get\"} 7\nhttp_requests_total{code=\"500\",method=\"get\"} 1\n# TYPE temp gauge\ntemp 21.5\n"
            }),
        )
        .route("/garbage", get(|| async { "this is { not a metric line\n" }))
        .route(
            "/gzip",
            get(|| async {
                // Gzip with the header (reqwest inflates it) and without (the parser does).
                let body = gzip(b"# TYPE zipped gauge\nzipped 3.25\n");
                ([("content-encoding", "gzip")], body)
            }),
        )
        .route(
            "/rawgzip",
            get(|| async { gzip(b"# TYPE zipped gauge\nzipped 4.5\n") }),
        )
        .route(
            "/truncated.json",
            get(|| async { ([("content-type", "application/json")], r#"{"a":1,"b":"#) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Targets { addr, hits }
}

fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(body).unwrap();
    enc.finish().unwrap()
}

struct Collector {
    http: String,
    grpc: String,
    sink: Arc<MemorySink>,
    shutdown: Shutdown,
    _dir: tempfile::TempDir,
}

async fn start(targets_file: &std::path::Path, dir: tempfile::TempDir) -> Collector {
    let mut config = collector::Config::default();
    config.common.listen_host = "127.0.0.1".into();
    config.common.data_dir = dir.path().to_owned();
    config.common.targets = targets_file.to_owned();
    config.server = ServerConfig::with_ports(0, 0);
    config.scrape.interval = Duration::from_secs(1);
    config.scrape.timeout = Duration::from_millis(800);
    config.discovery.targets_reload = Duration::from_millis(200);
    let sink = Arc::new(MemorySink::new("memory"));
    let server = collector::bind_with_sinks(config, vec![sink.clone() as Arc<dyn Sink>])
        .await
        .unwrap();
    let http = format!("http://{}", server.http_addr());
    let grpc = format!("http://{}", server.grpc_addr());
    let shutdown = Shutdown::new();
    let token = shutdown.clone();
    tokio::spawn(async move { server.run(token).await.unwrap() });
    Collector {
        http,
        grpc,
        sink,
        shutdown,
        _dir: dir,
    }
}

async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not reached in time");
}

fn write_targets(path: &std::path::Path, addr: SocketAddr, with_text: bool) {
    let mut groups = vec![
        format!(
            r#"{{"targets":["{addr}"],"labels":{{"job":"web","__metrics_path__":"/admin/metrics.json"}}}}"#
        ),
        format!(
            r#"{{"targets":["{addr}"],"labels":{{"job":"bad","instance":"garbage","__metrics_path__":"/garbage"}}}}"#
        ),
        format!(
            r#"{{"targets":["{addr}"],"labels":{{"job":"bad","instance":"truncated","__metrics_path__":"/truncated.json"}}}}"#
        ),
    ];
    if with_text {
        groups.push(format!(
            r#"{{"targets":["{addr}"],"labels":{{"job":"prom","instance":"p1"}}}}"#
        ));
        groups.push(format!(
            r#"{{"targets":["{addr}"],"labels":{{"job":"zip","instance":"z1","__metrics_path__":"/gzip"}}}}"#
        ));
        groups.push(format!(
            r#"{{"targets":["{addr}"],"labels":{{"job":"zip","instance":"z2","__metrics_path__":"/rawgzip"}}}}"#
        ));
    }
    std::fs::write(path, format!("[{}]", groups.join(","))).unwrap();
}

async fn metrics_json(c: &Collector) -> serde_json::Value {
    reqwest::get(format!("{}/admin/metrics.json", c.http))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_follow_the_targets_file_and_bad_targets_do_not_hurt_others() {
    let t = serve_targets().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("targets.json");
    write_targets(&file, t.addr, false);
    let c = start(&file, dir).await;
    let src = t.addr.to_string();
    let key = |m: &str| SeriesKey::new("web", src.clone(), m);
    until("metrics.json scraped twice", async || {
        c.sink.series(&key("srv/http/requests")).len() >= 2
    })
    .await;
    let up = c.sink.series(&key("up"));
    assert!(up.iter().all(|(_, v)| *v == 1.0), "{up:?}");
    assert_eq!(c.sink.series(&key("jvm/heap/used"))[0].1, 1024.5);
    assert!(c.sink.series(&key("pool/[I@579b7698/size")).is_empty());
    let rejected = c
        .sink
        .series(&key("scrape_samples_rejected{reason=\"jvm_identity\"}"));
    assert!(rejected.iter().all(|(_, v)| *v == 1.0) && !rejected.is_empty());
    // Consecutive scrapes are an interval apart (their offset is fixed).
    let reqs = c.sink.series(&key("srv/http/requests"));
    let gap = reqs[1].0 - reqs[0].0;
    assert!((900..=1100).contains(&gap), "{reqs:?}");
    // The malformed targets are down, counted, and named on the admin page.
    for inst in ["garbage", "truncated"] {
        let up = c.sink.series(&SeriesKey::new("bad", inst, "up"));
        assert!(
            !up.is_empty() && up.iter().all(|(_, v)| *v == 0.0),
            "{inst}: {up:?}"
        );
    }
    let stats = metrics_json(&c).await;
    assert!(
        stats["collector/scrape/errors/parse"].as_u64().unwrap() >= 2,
        "{stats}"
    );
    assert!(stats["collector/rejected/jvm_identity"].as_u64().unwrap() >= 1);
    assert!(stats["collector/scrapes"].as_u64().unwrap() >= 4);
    assert_eq!(stats["collector/dropped_samples"].as_f64().unwrap(), 0.0);
    let rejected: serde_json::Value = reqwest::get(format!("{}/admin/collector/rejected", c.http))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let web = rejected
        .as_object()
        .unwrap()
        .iter()
        .find(|(id, _)| id.starts_with("web|"))
        .unwrap()
        .1;
    assert_eq!(web[0]["metric"], "pool/[I@579b7698/size");
    assert_eq!(web[0]["reason"], "jvm_identity");
    let targets: serde_json::Value = reqwest::get(format!("{}/admin/collector/targets", c.http))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let garbage = targets
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["target"]["source"] == "garbage")
        .unwrap();
    assert!(
        garbage["last_error"].as_str().unwrap().contains("line 1"),
        "{garbage}"
    );

    // A new target in the file is picked up; its Prometheus labels map to the metric.
    write_targets(&file, t.addr, true);
    until("text target scraped", async || {
        !c.sink
            .series(&SeriesKey::new(
                "prom",
                "p1",
                "http_requests_total{code=\"500\",method=\"get\"}",
            ))
            .is_empty()
    })
    .await;
    assert_eq!(
        c.sink.series(&SeriesKey::new("prom", "p1", "temp"))[0].1,
        21.5
    );
    // A broken file keeps the last good targets.
    std::fs::write(&file, "[{").unwrap();
    let before = t.hits.load(Ordering::Relaxed);
    until("scraping goes on", async || {
        t.hits.load(Ordering::Relaxed) >= before + 2
    })
    .await;
    assert!(
        metrics_json(&c).await["collector/discovery/file_sd_errors"]
            .as_u64()
            .unwrap()
            >= 1
    );
    c.shutdown.cancel();
}

/// Labels and samples of one remote_write series.
type RwSeries<'a> = (&'a [(&'a str, &'a str)], &'a [(i64, f64)]);

fn remote_write_body(series: &[RwSeries<'_>]) -> Vec<u8> {
    let req = collector::prompb::WriteRequest {
        timeseries: series
            .iter()
            .map(|(labels, samples)| collector::prompb::TimeSeries {
                labels: labels
                    .iter()
                    .map(|(n, v)| collector::prompb::Label {
                        name: (*n).into(),
                        value: (*v).into(),
                    })
                    .collect(),
                samples: samples
                    .iter()
                    .map(|(t, v)| collector::prompb::Sample {
                        value: *v,
                        timestamp: *t,
                    })
                    .collect(),
            })
            .collect(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_paths_store_and_bad_bodies_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("none.json");
    std::fs::write(&file, "[]").unwrap();
    let c = start(&file, dir).await;
    let http = reqwest::Client::new();
    let post = |path: &str, body: Vec<u8>| http.post(format!("{}{path}", c.http)).body(body).send();

    // remote_write
    let body = remote_write_body(&[
        (
            &[
                ("__name__", "rw_total"),
                ("job", "node"),
                ("instance", "h:9100"),
                ("cpu", "0"),
            ],
            &[(1_000_000, 1.0), (1_015_000, 2.5)],
        ),
        (
            &[("__name__", "bad"), ("instance", "x")],
            &[(1_000_000, 1.0)],
        ),
    ]);
    let r = http
        .post(format!("{}/api/v1/write", c.http))
        .header("content-encoding", "snappy")
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "one series has no job");
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["accepted"], 2);
    assert!(j["error"].as_str().unwrap().contains("series 1"), "{j}");
    assert_eq!(
        c.sink
            .series(&SeriesKey::new("node", "h:9100", "rw_total{cpu=\"0\"}")),
        vec![(1_000_000, 1.0), (1_015_000, 2.5)]
    );
    let ok = remote_write_body(&[(&[("__name__", "x"), ("job", "j")], &[(5, 5.0)])]);
    let r = http
        .post(format!("{}/api/v1/write", c.http))
        .header("content-encoding", "snappy")
        .body(ok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        c.sink.series(&SeriesKey::new("j", "global", "x")),
        vec![(5, 5.0)]
    );
    let r = post("/api/v1/write", b"definitely not snappy".to_vec())
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let j: serde_json::Value = r.json().await.unwrap();
    assert!(j["error"].as_str().unwrap().contains("not snappy"), "{j}");

    // import
    let r = post(
        "/api/v1/import/prometheus",
        b"# TYPE m counter\nm_total{job=\"imp\",instance=\"a\"} 1 1700000000000\nm_total{job=\"imp\",instance=\"a\"} 2 1700000060000\n".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        c.sink.series(&SeriesKey::new("imp", "a", "m_total")),
        vec![(1_700_000_000_000, 1.0), (1_700_000_060_000, 2.0)]
    );
    let r = post(
        "/api/v1/import/prometheus",
        b"ok{job=\"imp\",instance=\"b\"} 1 1700000000000\nthis line is garbage\n".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["line"], 2, "{j}");
    assert!(
        c.sink.series(&SeriesKey::new("imp", "b", "ok")).is_empty(),
        "nothing of a bad body is stored"
    );

    // JSON push of ephemeral tasks: summed across tasks, idempotent per task and interval.
    let push = |task: &str, v: f64| {
        format!(r#"{{"service":"batch","task_id":"{task}","interval_start_ms":1700000000000,"metrics":[{{"metric":"jobs/processed","kind":"counter","value":{v}}}]}}"#)
            .into_bytes()
    };
    for (task, v) in [("t1", 3.0), ("t2", 4.0), ("t1", 3.0), ("t1", 5.0)] {
        let r = post("/api/v1/push", push(task, v)).await.unwrap();
        assert_eq!(r.status(), 204);
    }
    assert_eq!(
        c.sink
            .series(&SeriesKey::new("batch", "tasks", "jobs/processed")),
        vec![(1_700_000_000_000, 9.0)]
    );
    let r = post(
        "/api/v1/push",
        br#"{"service":"batch","task_id":"t"#.to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("EOF"));

    // gRPC push joins the same rollup.
    let mut client = proto::collector::collector_client::CollectorClient::connect(c.grpc.clone())
        .await
        .unwrap();
    let resp = client
        .push(proto::collector::PushRequest {
            service: "batch".into(),
            task_id: "t3".into(),
            interval_start_ms: 1_700_000_000_000,
            interval_ms: 60_000,
            metrics: vec![
                proto::collector::PushedMetric {
                    metric: "jobs/processed".into(),
                    kind: proto::collector::MetricKind::Counter as i32,
                    value: 1.0,
                },
                proto::collector::PushedMetric {
                    metric: "req/123e4567-e89b-12d3-a456-426614174000".into(),
                    kind: proto::collector::MetricKind::Counter as i32,
                    value: 1.0,
                },
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.accepted, 1);
    assert_eq!(resp.rejections[0].index, 1);
    let rejected: serde_json::Value = reqwest::get(format!("{}/admin/collector/rejected", c.http))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let push = rejected["push"].as_array().unwrap();
    assert_eq!(push.last().unwrap()["reason"], "uuid", "{rejected}");
    assert_eq!(
        c.sink
            .series(&SeriesKey::new("batch", "tasks", "jobs/processed")),
        vec![(1_700_000_000_000, 10.0)]
    );

    // A 100 MB body is refused; the collector keeps serving.
    // The server answers 413 as soon as it sees the length, and may close the
    // connection while the client is still sending.
    match post("/api/v1/import/prometheus", vec![b'a'; 100 << 20]).await {
        Ok(r) => assert_eq!(r.status(), 413),
        Err(e) => assert!(e.is_request(), "{e}"),
    }
    let stats = metrics_json(&c).await;
    eprintln!("{stats}");
    assert!(
        stats["collector/http/bad_body/not_snappy"]
            .as_u64()
            .unwrap()
            >= 1,
        "{stats}"
    );
    assert!(stats["collector/http/bad_body/not_text"].as_u64().unwrap() >= 1);
    assert!(stats["collector/http/bad_body/not_json"].as_u64().unwrap() >= 1);
    let health = reqwest::get(format!("{}/health", c.http)).await.unwrap();
    assert!(health.status().is_success());
    c.shutdown.cancel();
}
