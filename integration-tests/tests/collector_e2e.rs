//! The collector end to end with real parts, read back from the real storage over
//! gRPC: HTTP targets served by the test (metrics.json and Prometheus text), Debian's
//! `prometheus-node-exporter`, self-monitoring of the cluster, a real `prometheus`
//! remote_writing into the collector, and an outage of storage under load that
//! loses nothing.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use integration_tests::{ClusterOptions, TestCluster};
use proto::common::{Matcher, Pattern, TimeRange, pattern};
use proto::storage::ReadRequest;
use proto::storage::storage_client::StorageClient;
use service_kit::{Common, ServerConfig, Shutdown};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A tiny HTTP/1.1 server: every GET is answered by `body(path, hit)` (content type
/// and body), with the number of earlier hits of that path; connections close after
/// one answer.
#[derive(Clone)]
struct TargetServer {
    addr: SocketAddr,
    hits: Arc<Mutex<HashMap<String, u64>>>,
}

type Body = Arc<dyn Fn(&str, u64) -> (&'static str, String) + Send + Sync>;

impl TargetServer {
    async fn start(body: Body) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let h = hits.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let (h, body) = (h.clone(), body.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        if buf.len() > 65536 {
                            return;
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).into_owned();
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let hit = {
                        let mut m = h.lock().unwrap();
                        let e = m.entry(path.clone()).or_insert(0);
                        *e += 1;
                        *e - 1
                    };
                    let (ct, text) = body(&path, hit);
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: {ct}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                        text.len()
                    );
                    let _ = conn.write_all(resp.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Self { addr, hits }
    }

    fn hits(&self, path: &str) -> u64 {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn until<T>(what: &str, secs: u64, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..secs * 5 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{what}: not reached within {secs} s");
}

fn exact(s: &str) -> Option<Pattern> {
    Some(Pattern {
        kind: Some(pattern::Kind::Exact(s.to_owned())),
    })
}

fn glob(s: &str) -> Option<Pattern> {
    Some(Pattern {
        kind: Some(pattern::Kind::Glob(s.to_owned())),
    })
}

/// Every series (key -> samples) storage holds for the matcher, over all time.
async fn read(
    storage: &str,
    service: Option<Pattern>,
    source: Option<Pattern>,
    metric: Option<Pattern>,
) -> BTreeMap<(String, String, String), Vec<(i64, f64)>> {
    let mut out: BTreeMap<(String, String, String), Vec<(i64, f64)>> = BTreeMap::new();
    let Ok(mut client) = StorageClient::connect(storage.to_owned()).await else {
        return out;
    };
    let req = ReadRequest {
        matcher: Some(Matcher {
            service,
            source,
            metric,
        }),
        range: Some(TimeRange {
            start_ms: 0,
            end_ms: i64::MAX / 2,
        }),
        max_series: 0,
        max_samples: 0,
    };
    let Ok(resp) = client.read(req).await else {
        return out;
    };
    let mut stream = resp.into_inner();
    while let Ok(Some(chunk)) = stream.message().await {
        for s in chunk.series {
            let k = s.key.unwrap_or_default();
            out.entry((k.service, k.source, k.metric))
                .or_default()
                .extend(s.samples.iter().map(|x| (x.timestamp_ms, x.value)));
        }
    }
    out
}

async fn stats(http: &str) -> serde_json::Value {
    reqwest::get(format!("{http}/admin/metrics.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn write_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn start_node_exporter() -> (Proc, u16) {
    let port = test_support::pick_port().unwrap();
    let child = Command::new("prometheus-node-exporter")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus-node-exporter is installed (scripts/setup-test-env.sh)");
    let proc = Proc(child);
    test_support::wait_for_port(
        SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(20),
    )
    .unwrap();
    (proc, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_targets_node_exporter_and_self_monitoring_land_in_storage() {
    let targets = TargetServer::start(Arc::new(|path, _| match path {
        "/admin/metrics.json" => (
            "application/json",
            r#"{"srv/http/requests":12345,"jvm/heap/used_bytes":1.5e9,"srv/http/latency_ms.p99":17.25}"#.into(),
        ),
        _ => (
            "text/plain; version=0.0.4",
            "# TYPE http_requests_total counter\nhttp_requests_total{code=\"200\"} 7\n# TYPE temp_celsius gauge\ntemp_celsius 21.5\n".into(),
        ),
    }))
    .await;
    let (_node, node_port) = start_node_exporter();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("targets.json");
    let a = targets.addr;
    write_file(
        &file,
        &format!(
            r#"[{{"targets":["{a}"],"labels":{{"job":"web","__metrics_path__":"/admin/metrics.json"}}}},
                {{"targets":["{a}"],"labels":{{"job":"prom","instance":"p1"}}}},
                {{"targets":["127.0.0.1:{node_port}"],"labels":{{"job":"node"}}}}]"#
        ),
    );
    let cluster = TestCluster::start_with(ClusterOptions {
        targets: file.clone(),
        scrape_interval: Some(Duration::from_secs(1)),
        ..Default::default()
    })
    .await
    .unwrap();
    let storage = cluster.endpoints("storage").grpc_url();
    let collector = cluster.endpoints("collector").http_url();

    // metrics.json and Prometheus text, exactly as served.
    let src = a.to_string();
    let web = until("metrics.json in storage", 60, async || {
        let r = read(&storage, exact("web"), exact(&src), None).await;
        (r.get(&("web".into(), src.clone(), "srv/http/requests".into()))?
            .len()
            >= 2)
            .then_some(r)
    })
    .await;
    let v = |m: &str| web[&("web".to_owned(), src.clone(), m.to_owned())].clone();
    assert!(v("srv/http/requests").iter().all(|(_, x)| *x == 12345.0));
    assert!(v("jvm/heap/used_bytes").iter().all(|(_, x)| *x == 1.5e9));
    assert!(
        v("srv/http/latency_ms.p99")
            .iter()
            .all(|(_, x)| *x == 17.25)
    );
    assert!(v("up").iter().all(|(_, x)| *x == 1.0));
    assert!(v("scrape_samples_scraped").iter().all(|(_, x)| *x == 3.0));
    let prom = until("text target in storage", 30, async || {
        let r = read(&storage, exact("prom"), exact("p1"), None).await;
        (!r.is_empty()).then_some(r)
    })
    .await;
    let pv = |m: &str| prom[&("prom".to_owned(), "p1".to_owned(), m.to_owned())][0].1;
    assert_eq!(pv("http_requests_total{code=\"200\"}"), 7.0);
    assert_eq!(pv("temp_celsius"), 21.5);

    // node_exporter: hundreds of real series, up.
    let node_src = format!("127.0.0.1:{node_port}");
    let node = until("node_exporter in storage", 60, async || {
        let r = read(&storage, exact("node"), exact(&node_src), None).await;
        (r.len() > 100).then_some(r)
    })
    .await;
    assert!(
        node.keys()
            .any(|k| k.2.starts_with("node_cpu_seconds_total{")),
        "{:?}",
        node.keys().take(5).collect::<Vec<_>>()
    );
    assert!(
        node[&("node".to_owned(), node_src.clone(), "up".to_owned())]
            .iter()
            .all(|(_, x)| *x == 1.0)
    );

    // Self-monitoring: service aerie, one source per component.
    let own = until("self-monitoring in storage", 60, async || {
        let r = read(&storage, exact("aerie"), None, exact("srv/http/requests")).await;
        (r.len() == 5).then_some(r)
    })
    .await;
    let sources: Vec<&str> = own.keys().map(|k| k.1.as_str()).collect();
    assert_eq!(
        sources,
        [
            "alerter",
            "collector",
            "query-federator",
            "storage",
            "tracer"
        ]
    );
    until("collector/scrapes of the collector", 30, async || {
        let r = read(
            &storage,
            exact("aerie"),
            exact("collector"),
            exact("collector/scrapes"),
        )
        .await;
        (!r.is_empty()).then_some(())
    })
    .await;

    let s = stats(&collector).await;
    assert_eq!(s["collector/dropped_samples"].as_f64(), Some(0.0), "{s}");
    assert_eq!(s["collector/targets"].as_f64(), Some(8.0), "{s}");
    assert!(s["collector/sent_samples"].as_f64().unwrap() > 500.0);
    cluster.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_remote_writes_into_storage_exactly() {
    let targets = TargetServer::start(Arc::new(|_, hit| {
        (
            "text/plain; version=0.0.4",
            format!("# TYPE fixed_value gauge\nfixed_value{{kind=\"a\"}} 42.5\n# TYPE hits_total counter\nhits_total {hit}\n"),
        )
    }))
    .await;
    let cluster = TestCluster::start().await.unwrap();
    let storage = cluster.endpoints("storage").grpc_url();
    let collector = cluster.endpoints("collector").http_url();
    let dir = tempfile::tempdir().unwrap();
    let prom_port = test_support::pick_port().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: rw\n    static_configs:\n      - targets: ['{}']\nremote_write:\n  - url: {collector}/api/v1/write\n    queue_config:\n      batch_send_deadline: 1s\n      min_backoff: 100ms\n      max_backoff: 1s\n",
            targets.addr
        ),
    )
    .unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus is installed (scripts/setup-test-env.sh)");
    let _prom = Proc(child);
    let src = targets.addr.to_string();
    let key = |m: &str| ("rw".to_owned(), src.clone(), m.to_owned());
    let got = until("remote_write samples in storage", 90, async || {
        let r = read(&storage, exact("rw"), exact(&src), None).await;
        (r.get(&key("hits_total")).is_some_and(|s| s.len() >= 5)).then_some(r)
    })
    .await;
    assert!(
        got[&key("fixed_value{kind=\"a\"}")]
            .iter()
            .all(|(_, v)| *v == 42.5)
    );
    assert!(got[&key("up")].iter().all(|(_, v)| *v == 1.0));
    // What Prometheus itself holds, up to the newest sample storage has, is in storage
    // with the same timestamps and values.
    let stored: BTreeMap<i64, f64> = got[&key("hits_total")].iter().copied().collect();
    let newest = *stored.keys().last().unwrap();
    let url = format!(
        "http://127.0.0.1:{prom_port}/api/v1/query?query=hits_total%5B10m%5D&time={}",
        newest as f64 / 1000.0
    );
    let answer: serde_json::Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    let values = answer["data"]["result"][0]["values"].as_array().unwrap();
    assert!(values.len() >= 5, "{answer}");
    for pair in values {
        let ts = (pair[0].as_f64().unwrap() * 1000.0).round() as i64;
        let v: f64 = pair[1].as_str().unwrap().parse().unwrap();
        assert_eq!(
            stored.get(&ts),
            Some(&v),
            "sample at {ts} of Prometheus missing or different in storage"
        );
    }
    let s = stats(&collector).await;
    assert!(
        s["collector/push/remote_write/requests"].as_u64().unwrap() >= 1,
        "{s}"
    );
    assert_eq!(
        s["collector/push/remote_write/rejected"].as_u64(),
        Some(0),
        "{s}"
    );
    cluster.stop().await.unwrap();
}

struct Storage {
    grpc: SocketAddr,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<()>,
}

async fn start_storage(data: &Path, http_port: u16, grpc_port: u16) -> Storage {
    let config = storage_frontend::Config {
        common: Common {
            listen_host: "127.0.0.1".into(),
            data_dir: data.to_owned(),
            ..Common::default()
        },
        server: ServerConfig::with_ports(http_port, grpc_port),
        ..Default::default()
    };
    let server = storage_frontend::bind(config).await.unwrap();
    let grpc = server.grpc_addr();
    let shutdown = Shutdown::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move { server.run(token).await.unwrap() });
    Storage {
        grpc,
        shutdown,
        task,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_stopped_under_load_then_every_sample_arrives() {
    const TARGETS: usize = 20;
    const METRICS: usize = 250;
    // Target i serves METRICS gauges; `hits` counts its scrapes 1, 2, 3, ...
    let targets = TargetServer::start(Arc::new(|_, hit| {
        let mut body = format!("# TYPE hits gauge\nhits {}\n", hit + 1);
        for m in 1..METRICS {
            body.push_str(&format!(
                "load_metric{{n=\"{m}\"}} {}\n",
                hit * 1000 + m as u64
            ));
        }
        ("text/plain; version=0.0.4", body)
    }))
    .await;
    let data = tempfile::tempdir().unwrap();
    let storage = start_storage(&data.path().join("storage"), 0, 0).await;
    let grpc_port = storage.grpc.port();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("targets.json");
    let groups: Vec<String> = (0..TARGETS)
        .map(|i| {
            format!(
                r#"{{"targets":["{}"],"labels":{{"job":"load","instance":"t{i}","__metrics_path__":"/t{i}"}}}}"#,
                targets.addr
            )
        })
        .collect();
    write_file(&file, &format!("[{}]", groups.join(",")));
    let mut config = collector::Config::default();
    config.common.listen_host = "127.0.0.1".into();
    config.common.data_dir = dir.path().to_owned();
    config.common.targets = file.clone();
    config.server = ServerConfig::with_ports(0, 0);
    config.storage = vec![format!("http://{}", storage.grpc)];
    config.scrape.interval = Duration::from_secs(1);
    config.scrape.timeout = Duration::from_millis(800);
    config.discovery.targets_reload = Duration::from_millis(200);
    config.routing.retry_base = Duration::from_millis(50);
    config.routing.retry_max = Duration::from_millis(500);
    config.routing.write_timeout = Duration::from_secs(2);
    let collector = collector::bind(config).await.unwrap();
    let http = format!("http://{}", collector.http_addr());
    let shutdown = Shutdown::new();
    let token = shutdown.clone();
    let collector_task = tokio::spawn(async move { collector.run(token).await.unwrap() });

    let num = |s: &serde_json::Value, k: &str| s[k].as_f64().unwrap_or(0.0);
    until("scraping under way", 30, async || {
        (num(&stats(&http).await, "collector/sent_samples") > (TARGETS * METRICS * 2) as f64)
            .then_some(())
    })
    .await;
    // Storage goes away for a while; scraping goes on into the spill.
    storage.shutdown.cancel();
    storage.task.await.unwrap();
    until("samples spilled", 60, async || {
        (num(&stats(&http).await, "collector/spilled_samples") > (TARGETS * METRICS * 3) as f64)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let storage = start_storage(&data.path().join("storage"), 0, grpc_port).await;
    until("spill replayed", 120, async || {
        let s = stats(&http).await;
        (num(&s, "collector/spill_bytes") == 0.0 && num(&s, "collector/replayed_samples") > 0.0)
            .then_some(())
    })
    .await;
    // Stop scraping, let the last batches land.
    write_file(&file, "[]");
    until("targets gone", 30, async || {
        (num(&stats(&http).await, "collector/targets") == 0.0).then_some(())
    })
    .await;
    until("queues empty", 60, async || {
        let s = stats(&http).await;
        (num(&s, "collector/queued_samples") == 0.0 && num(&s, "collector/spill_bytes") == 0.0)
            .then_some(())
    })
    .await;
    let s = stats(&http).await;
    assert_eq!(num(&s, "collector/dropped_samples"), 0.0, "{s}");
    assert!(num(&s, "collector/spilled_samples") > 0.0);

    // Every scrape of every target is in storage: `hits` runs 1..=n without a gap,
    // and every metric of each scrape is there.
    let stored = read(
        &format!("http://{}", storage.grpc),
        exact("load"),
        None,
        glob("*"),
    )
    .await;
    let mut total = 0;
    for i in 0..TARGETS {
        let src = format!("t{i}");
        let series = |m: &str| {
            stored
                .get(&("load".to_owned(), src.clone(), m.to_owned()))
                .cloned()
                .unwrap_or_default()
        };
        let values: Vec<u64> = series("hits").iter().map(|(_, v)| *v as u64).collect();
        assert!(
            values.windows(2).all(|w| w[0] < w[1]),
            "target {src}: {values:?}"
        );
        let newest = values.last().copied().unwrap_or(0) as usize;
        assert!(newest >= 5, "target {src} scraped only {newest} times");
        assert!(targets.hits(&format!("/t{i}")) as usize >= newest);
        // A scrape missing from storage is allowed only where the scrape itself failed.
        let up = series("up");
        let failed = up.iter().filter(|(_, v)| *v == 0.0).count();
        assert_eq!(
            newest - values.len(),
            failed,
            "target {src}: samples lost ({values:?}, up {up:?})"
        );
        assert_eq!(
            series("load_metric{n=\"7\"}").len(),
            values.len(),
            "target {src}"
        );
        assert_eq!(
            series("load_metric{n=\"249\"}").len(),
            values.len(),
            "target {src}"
        );
        total += values.len();
    }
    assert!(total > 0);
    shutdown.cancel();
    collector_task.await.unwrap();
    storage.shutdown.cancel();
    storage.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_are_acknowledged_after_storage_and_bad_bodies_refused() {
    let cluster = TestCluster::start().await.unwrap();
    let storage = cluster.endpoints("storage").grpc_url();
    let collector = cluster.endpoints("collector").http_url();
    let http = reqwest::Client::new();
    let post =
        |path: &str, body: Vec<u8>| http.post(format!("{collector}{path}")).body(body).send();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // History (a day old) is accepted; a sample a year ahead is refused by storage,
    // and the rest of the body is stored.
    let day_ago = now - 86_400_000;
    let future = now + 365 * 86_400_000;
    let body = format!(
        "imp_total{{job=\"imp\",instance=\"a\"}} 1 {day_ago}\nimp_total{{job=\"imp\",instance=\"a\"}} 2 {now}\nimp_total{{job=\"imp\",instance=\"b\"}} 3 {future}\n"
    );
    let r = post("/api/v1/import/prometheus", body.into_bytes())
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["accepted"], 2, "{j}");
    assert!(
        j["error"].as_str().unwrap().contains("TOO_FAR_IN_FUTURE"),
        "{j}"
    );
    let got = read(&storage, exact("imp"), None, None).await;
    assert_eq!(
        got[&("imp".to_owned(), "a".to_owned(), "imp_total".to_owned())],
        vec![(day_ago, 1.0), (now, 2.0)]
    );
    assert!(!got.contains_key(&("imp".to_owned(), "b".to_owned(), "imp_total".to_owned())));

    // Task pushes roll up into the job's series.
    let start = now - now % 60_000;
    for (task, v) in [("t1", 3.0), ("t2", 4.0), ("t1", 5.0)] {
        let body = format!(
            r#"{{"service":"batch","task_id":"{task}","interval_start_ms":{start},"interval_ms":60000,"metrics":[{{"metric":"jobs/done","kind":"counter","value":{v}}}]}}"#
        );
        assert_eq!(
            post("/api/v1/push", body.into_bytes())
                .await
                .unwrap()
                .status(),
            204
        );
    }
    let got = read(&storage, exact("batch"), exact("tasks"), exact("jobs/done")).await;
    assert_eq!(got.values().next().unwrap(), &vec![(start, 9.0)]);

    // Malformed bodies: refused, counted, the collector keeps going.
    let r = post("/api/v1/write", b"\xff\xff\xff\xff not snappy".to_vec())
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = post("/api/v1/push", br#"{"service":"batch","metr"#.to_vec())
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = post(
        "/api/v1/import/prometheus",
        b"ok{job=\"x\"} 1\nthis is { garbage\n".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["line"], 2, "{j}");
    match post("/api/v1/import/prometheus", vec![b'#'; 100 << 20]).await {
        Ok(r) => assert_eq!(r.status(), 413),
        Err(e) => assert!(e.is_request(), "{e}"),
    }
    let s = stats(&collector).await;
    assert!(
        s["collector/http/bad_body/not_snappy"].as_u64().unwrap() >= 1,
        "{s}"
    );
    assert!(
        s["collector/http/bad_body/not_json"].as_u64().unwrap() >= 1,
        "{s}"
    );
    assert!(
        s["collector/http/bad_body/not_text"].as_u64().unwrap() >= 1,
        "{s}"
    );
    assert_eq!(
        post(
            "/api/v1/push",
            br#"{"service":"batch","task_id":"t9","interval_start_ms":1700000000000,"metrics":[]}"#
                .to_vec()
        )
        .await
        .unwrap()
        .status(),
        204
    );
    cluster.stop().await.unwrap();
}
