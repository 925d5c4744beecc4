//! The query-federator over real storage-frontends (in-process, over gRPC) and a real
//! memcached: answers, the HTTP envelope and errors, cached spans and their counters,
//! identical answers with and without the cache, a memcached killed mid-test, a
//! backfill into a cached day, two zones with one stopped, and refusal before any
//! fragment runs.

use std::time::Duration;

use proto::common as pb;
use proto::storage::{WriteRequest, storage_client::StorageClient};
use query_federator::{Config as FedConfig, ZoneConfig};
use serde_json::Value;
use service_kit::{Common, ServerConfig, Shutdown};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

struct Running {
    grpc: String,
    http: String,
    shutdown: Shutdown,
    _dir: Option<tempfile::TempDir>,
}

impl Running {
    fn stop(&self) {
        self.shutdown.cancel();
    }
}

fn common(dir: &std::path::Path, memcached: Vec<String>) -> Common {
    Common {
        listen_host: "127.0.0.1".into(),
        data_dir: dir.to_owned(),
        memcached,
        ..Common::default()
    }
}

async fn storage() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let config = storage_frontend::Config {
        common: common(dir.path(), vec![]),
        server: ServerConfig::with_ports(0, 0),
        ..Default::default()
    };
    let server = storage_frontend::bind(config).await.unwrap();
    let grpc = format!("http://{}", server.grpc_addr());
    let http = format!("http://{}", server.http_addr());
    let shutdown = Shutdown::new();
    tokio::spawn(server.run(shutdown.clone()));
    Running {
        grpc,
        http,
        shutdown,
        _dir: Some(dir),
    }
}

fn zone(name: &str, endpoints: &[&Running]) -> ZoneConfig {
    ZoneConfig {
        name: name.into(),
        endpoints: endpoints.iter().map(|r| r.grpc.clone()).collect(),
        ..ZoneConfig::default()
    }
}

async fn federator(
    zones: Vec<ZoneConfig>,
    memcached: Vec<String>,
    adjust: impl FnOnce(&mut FedConfig),
) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut config = FedConfig {
        common: common(dir.path(), memcached),
        server: ServerConfig::with_ports(0, 0),
        zones,
        ..Default::default()
    };
    adjust(&mut config);
    let server = query_federator::bind(config).await.unwrap();
    let grpc = format!("http://{}", server.grpc_addr());
    let http = format!("http://{}", server.http_addr());
    let shutdown = Shutdown::new();
    tokio::spawn(server.run(shutdown.clone()));
    Running {
        grpc,
        http,
        shutdown,
        _dir: Some(dir),
    }
}

fn now_min() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    now - now.rem_euclid(MIN)
}

fn series(svc: &str, src: &str, metric: &str, pts: &[(i64, f64)]) -> pb::Series {
    pb::Series {
        key: Some(pb::SeriesKey {
            service: svc.into(),
            source: src.into(),
            metric: metric.into(),
        }),
        samples: pts
            .iter()
            .map(|&(timestamp_ms, value)| pb::Sample {
                timestamp_ms,
                value,
            })
            .collect(),
    }
}

async fn write(storage: &Running, batch: Vec<pb::Series>) {
    let mut c = StorageClient::connect(storage.grpc.clone()).await.unwrap();
    for chunk in batch.chunks(8) {
        let r = c
            .write(WriteRequest {
                series: chunk.to_vec(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.rejections.is_empty(), "{:?}", r.rejections);
    }
}

async fn get(url: &str, params: &[(&str, String)]) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(url)
        .query(params)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, json)
}

async fn post(url: &str, params: &[(&str, String)]) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(url)
        .form(params)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn counter(http: &str, name: &str) -> u64 {
    let (_, v) = get(&format!("{http}/admin/metrics.json"), &[]).await;
    // Gauges are floats in metrics.json.
    v[name].as_f64().map_or(0, |f| f as u64)
}

async fn range(fed: &Running, q: &str, start: i64, end: i64, step: &str) -> (u16, Value) {
    get(
        &format!("{}/api/v1/query_range", fed.http),
        &[
            ("query", q.to_string()),
            ("start", (start / 1000).to_string()),
            ("end", (end / 1000).to_string()),
            ("step", step.to_string()),
        ],
    )
    .await
}

/// `(key, [(t secs, value)])` of a matrix answer.
fn matrix(v: &Value) -> Vec<(String, Vec<(i64, String)>)> {
    assert_eq!(v["status"], "success", "{v}");
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let m = &r["metric"];
            let key = format!(
                "{} {} {}",
                m["service"].as_str().unwrap_or("-"),
                m["source"].as_str().unwrap_or("-"),
                m["metric"].as_str().unwrap_or("-")
            );
            let pts = r["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_i64().unwrap(), p[1].as_str().unwrap().to_string()))
                .collect();
            (key, pts)
        })
        .collect()
}

#[tokio::test]
async fn answers_in_the_prometheus_envelope_with_located_errors() {
    let st = storage().await;
    let fed = federator(vec![zone("local", &[&st])], vec![], |_| {}).await;
    let t0 = now_min() - 2 * HOUR;
    write(
        &st,
        vec![
            series(
                "web",
                "h1",
                "http/requests",
                &[
                    (t0 + MIN, 1.0),
                    (t0 + 2 * MIN, 2.0),
                    (t0 + 2 * MIN + 1000, 5.0),
                ],
            ),
            series(
                "web",
                "h2",
                "http/requests",
                &[(t0 + MIN, 10.0), (t0 + 3 * MIN, 30.0)],
            ),
            series(
                "web",
                "h1",
                "http/errors",
                &[(t0 + MIN, 1.0), (t0 + 2 * MIN, 1.0)],
            ),
            series("db", "d1", "q/latency", &[(t0 + 2 * MIN, 7.0)]),
        ],
    )
    .await;
    let (s, v) = range(
        &fed,
        "ts(web, *, http/requests)",
        t0 + MIN,
        t0 + 3 * MIN,
        "60s",
    )
    .await;
    assert_eq!(s, 200);
    let t = |m: i64| (t0 + m * MIN) / 1000;
    assert_eq!(
        matrix(&v),
        vec![
            (
                "web h1 http/requests".into(),
                vec![(t(1), "1".into()), (t(2), "2".into()), (t(3), "5".into())]
            ),
            (
                "web h2 http/requests".into(),
                vec![(t(1), "10".into()), (t(3), "30".into())]
            ),
        ],
        "the last sample in (t - step, t]; nothing carried forward"
    );
    let (_, v) = range(
        &fed,
        "sum(ts(web, *, http/requests))",
        t0 + MIN,
        t0 + 3 * MIN,
        "1m",
    )
    .await;
    let v_sum = v.clone();
    assert_eq!(
        matrix(&v),
        vec![(
            "- - -".into(),
            vec![(t(1), "11".into()), (t(2), "2".into()), (t(3), "35".into())]
        )]
    );
    let (_, v) = range(
        &fed,
        "sum(ts(*, *, *)) by (service)",
        t0 + MIN,
        t0 + 3 * MIN,
        "1m",
    )
    .await;
    assert_eq!(
        matrix(&v),
        vec![
            ("db - -".into(), vec![(t(2), "7".into())]),
            (
                "web - -".into(),
                vec![(t(1), "12".into()), (t(2), "3".into()), (t(3), "35".into())]
            ),
        ]
    );
    let (_, v) = range(
        &fed,
        "ts(web, h1, http/errors) / ts(web, h1, http/requests)",
        t0 + MIN,
        t0 + 3 * MIN,
        "1m",
    )
    .await;
    assert_eq!(
        matrix(&v),
        vec![(
            "web h1 http/errors".into(),
            vec![(t(1), "1".into()), (t(2), "0.5".into())]
        )]
    );
    // A filter that storage cannot run is applied by the federator.
    let (_, v) = range(
        &fed,
        "sum(filter(ts(web, *, http/requests) > 4))",
        t0 + MIN,
        t0 + 3 * MIN,
        "1m",
    )
    .await;
    assert_eq!(
        matrix(&v),
        vec![(
            "- - -".into(),
            vec![(t(1), "10".into()), (t(3), "35".into())]
        )]
    );

    // POST with a form and RFC 3339 times answer the same.
    let rfc = rfc3339;
    let (s, v2) = post(
        &format!("{}/api/v1/query_range", fed.http),
        &[
            ("query", "sum(ts(web, *, http/requests))".into()),
            ("start", rfc(t0 + MIN)),
            ("end", rfc(t0 + 3 * MIN)),
            ("step", "1m".into()),
        ],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(matrix(&v2), matrix(&v_sum));

    // Instant query.
    let (s, v) = get(
        &format!("{}/api/v1/query", fed.http),
        &[
            ("query", "ts(web, h2, http/requests)".into()),
            ("time", t(3).to_string()),
        ],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["resultType"], "vector");
    assert_eq!(v["data"]["result"][0]["value"][1], "30");
    assert_eq!(v["data"]["result"][0]["metric"]["source"], "h2");
    let (_, v) = get(
        &format!("{}/api/v1/query", fed.http),
        &[("query", "1 + 2".into()), ("time", t(3).to_string())],
    )
    .await;
    assert_eq!(v["data"]["resultType"], "scalar");
    assert_eq!(v["data"]["result"][1], "3");

    // Discovery.
    let (_, v) = get(
        &format!("{}/api/v1/series", fed.http),
        &[("match[]", "ts(web, *, http/*)".into())],
    )
    .await;
    assert_eq!(v["data"].as_array().unwrap().len(), 3, "{v}");
    let (_, v) = get(
        &format!("{}/api/v1/metrics", fed.http),
        &[("match", "ts(web, *, *)".into())],
    )
    .await;
    assert_eq!(
        v["data"],
        serde_json::json!(["http/errors", "http/requests"])
    );
    let (_, v) = get(
        &format!("{}/api/v1/metrics", fed.http),
        &[("list", "services".into())],
    )
    .await;
    assert_eq!(v["data"], serde_json::json!(["db", "web"]));
    let (_, v) = get(&format!("{}/api/v1/label/service/values", fed.http), &[]).await;
    assert_eq!(v["data"], serde_json::json!(["db", "web"]));
    let (_, v) = get(&format!("{}/api/v1/labels", fed.http), &[]).await;
    assert_eq!(
        v["data"],
        serde_json::json!(["metric", "service", "source"])
    );

    // Explain names the fragments, the estimate and the spans.
    let (s, v) = get(
        &format!("{}/api/v1/explain", fed.http),
        &[
            ("query", "sum(ts(web, *, http/requests))".into()),
            ("start", t(1).to_string()),
            ("end", t(3).to_string()),
            ("step", "60".into()),
        ],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["cost"]["series"], 2);
    assert!(
        v["data"]["text"].as_str().unwrap().contains("zone local"),
        "{v}"
    );
    assert_eq!(v["data"]["fragments"][0]["zone"], "local");
    let text = reqwest::Client::new()
        .get(format!("{}/api/v1/explain", fed.http))
        .query(&[
            ("query", "sum(ts(web, *, http/requests))"),
            ("time", &t(3).to_string()),
            ("format", "text"),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("estimate: 2 series"), "{text}");
    assert!(
        text.contains("fragment ts(web, *, http/requests)"),
        "{text}"
    );

    // Errors: the envelope, the type, line and column.
    let (s, v) = range(&fed, "sum(ts(web, *, http/requests)", t0, t0 + MIN, "60s").await;
    assert_eq!(s, 400);
    assert_eq!(v["status"], "error");
    assert_eq!(v["errorType"], "bad_data");
    assert_eq!(v["line"], 1);
    assert!(v["column"].as_u64().unwrap() > 1);
    assert!(v["error"].as_str().unwrap().starts_with("1:"), "{v}");
    let (s, v) = range(&fed, "ts(web, *, x)", t0, t0 + MIN, "soon").await;
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("step"), "{v}");
    let (s, v) = get(
        &format!("{}/api/v1/query_range", fed.http),
        &[("query", "1".into())],
    )
    .await;
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("start"), "{v}");
    let (s, v) = range(&fed, "ts(web, members(role.fe), x)", t0, t0 + MIN, "60s").await;
    assert_eq!(s, 422);
    assert!(v["error"].as_str().unwrap().contains("collector"), "{v}");
    fed.stop();
    st.stop();
}

/// Seven days of one-minute data for nine series: web h0..h2 x {http/requests,
/// http/errors} and db d0..d2 q/latency; integer values so sums are exact.
fn week(end: i64) -> Vec<pb::Series> {
    let start = end - 7 * DAY;
    let mut out = Vec::new();
    let mut i = 0;
    for (svc, metrics, sources) in [
        (
            "web",
            vec!["http/requests", "http/errors"],
            vec!["h0", "h1", "h2"],
        ),
        ("db", vec!["q/latency"], vec!["d0", "d1", "d2"]),
    ] {
        for m in &metrics {
            for s in &sources {
                i += 1;
                let pts: Vec<(i64, f64)> = (0..7 * 1440)
                    .map(|k| {
                        let t = start + k * MIN;
                        (t, ((k * 7 + i * 13) % 101) as f64)
                    })
                    .collect();
                out.push(series(svc, s, m, &pts));
            }
        }
    }
    out
}

const QUERIES: [&str; 17] = [
    "ts(web, *, http/requests)",
    "sum(rate(ts(web, *, http/requests)))",
    "increase(ts(web, *, *)) > 3",
    "max(derivative(timeshift(ts(db, *, *), 1h))) by (source)",
    "sum(ts(web, *, http/*))",
    "sum(ts(*, *, *)) by (service)",
    "max(ts(web, *, http/requests))",
    "avg(ts(db, *, *))",
    "count(ts(*, *, *))",
    "rate(ts(web, h1, http/requests))",
    "sum(filter(ts(web, *, http/requests) > 50))",
    "ts(web, *, http/requests) / ts(web, *, http/errors)",
    "downsample(ts(db, d1, q/latency), max)",
    "timeshift(sum(ts(web, *, *)), 1h)",
    "topk(ts(web, *, http/requests), 2)",
    "sum(moving(ts(web, *, http/requests), 15m, avg))",
    "max(moving(ts(db, *, *), 7m, max)) by (source)",
];

const STEPS: [i64; 6] = [MIN, 2 * MIN, 5 * MIN, 10 * MIN, 30 * MIN, HOUR];

#[tokio::test]
async fn spans_are_cached_identical_without_cache_and_survive_memcached_dying() {
    let mut mc = test_support::Memcached::start().unwrap();
    let st = storage().await;
    let end = now_min();
    write(&st, week(end)).await;
    // memcached alone here (no in-process tier), against no cache at all.
    let cached = federator(vec![zone("local", &[&st])], vec![mc.addr()], |c| {
        c.cache.retry_after = Duration::from_millis(50);
        c.cache.local_bytes = 0;
    })
    .await;
    let plain = federator(vec![zone("local", &[&st])], vec![], |c| {
        c.cache.local_bytes = 0;
    })
    .await;
    // A zone that holds only part of time (a tier, here ten years) keeps rate,
    // increase, derivative and moving windows in the evaluator, over per-series
    // cells: the reference for those computed in storage.
    let mut tier = zone("local", &[&st]);
    tier.max_age = Duration::from_secs(3650 * 86_400);
    let evaluated = federator(vec![tier], vec![], |c| {
        c.cache.local_bytes = 0;
    })
    .await;
    let explained = [
        (
            "sum(rate(ts(web, *, http/requests)))",
            "over_time=rate combine=sum",
        ),
        (QUERIES[15], "over_time=moving(15m,avg) combine=sum"),
    ];
    for (fed, pushed) in [(&plain, true), (&evaluated, false)] {
        for (q, fragment) in explained {
            let (s, v) = get(
                &format!("{}/api/v1/explain", fed.http),
                &[
                    ("query", q.into()),
                    ("start", ((end - DAY) / 1000).to_string()),
                    ("end", (end / 1000).to_string()),
                    ("step", "60".into()),
                ],
            )
            .await;
            assert_eq!(s, 200, "{v}");
            let text = v["data"]["text"].as_str().unwrap();
            assert_eq!(text.contains(fragment), pushed, "{text}");
        }
    }

    // A 7-day query twice: the second is served from cached spans.
    let q = "sum(ts(web, *, http/*))";
    let (s, first) = range(&cached, q, end - 7 * DAY, end, "5m").await;
    assert_eq!(s, 200, "{first}");
    let hits0 = counter(&cached.http, "federator/cache/hits").await;
    // Spans are stored after the answer; wait for them.
    let stores = counter_reaches(&cached.http, "federator/cache/stores", 50).await;
    assert!(
        stores >= 50,
        "7 days split into at least 56 spans of 3h, stored {stores}"
    );
    let frags0 = counter(&cached.http, "federator/fragments_run").await;
    let (_, second) = range(&cached, q, end - 7 * DAY, end, "5m").await;
    assert_eq!(first, second);
    let hits1 = counter(&cached.http, "federator/cache/hits").await;
    assert!(
        hits1 - hits0 >= 50,
        "second run hit {} spans",
        hits1 - hits0
    );
    let frags1 = counter(&cached.http, "federator/fragments_run").await;
    assert!(
        frags1 - frags0 <= 2,
        "only the unaligned head and the mutable tail run again"
    );
    assert_eq!(matrix(&first)[0].1.len(), 7 * 24 * 12 + 1);
    let (_, third) = range(&plain, q, end - 7 * DAY, end, "5m").await;
    assert_eq!(first["data"], third["data"]);

    // Randomized queries: identical with and without the cache, twice each, with
    // memcached killed part way and restarted later.
    let mut rng = fastrand_like(0x5eed);
    for round in 0..60 {
        if round == 25 {
            mc.stop().unwrap();
        }
        if round == 45 {
            mc.restart().unwrap();
        }
        let q = QUERIES[(rng() % QUERIES.len() as u64) as usize];
        let step = STEPS[(rng() % STEPS.len() as u64) as usize];
        let start = end - 7 * DAY + (rng() % (6 * DAY as u64)) as i64;
        let start = start - start.rem_euclid(MIN);
        let len = MIN * (1 + (rng() % (2 * 1440)) as i64);
        let step_s = format!("{}s", step / 1000);
        let (s1, a) = range(&cached, q, start, start + len, &step_s).await;
        let (s2, b) = range(&plain, q, start, start + len, &step_s).await;
        let (s3, c) = range(&cached, q, start, start + len, &step_s).await;
        let (s4, d) = range(&evaluated, q, start, start + len, &step_s).await;
        assert_eq!((s1, s2, s3, s4), (200, 200, 200, 200), "{q} {a}");
        assert_eq!(
            a["data"], b["data"],
            "round {round}: {q} from {start} for {len} step {step}"
        );
        assert_eq!(a["data"], c["data"], "round {round}: {q} cached twice");
        assert_eq!(
            b["data"], d["data"],
            "round {round}: {q} in storage and in the evaluator"
        );
    }
    assert!(counter(&cached.http, "federator/cache/bypasses").await >= 1);

    // A backfill into a cached day shows in the next answer.
    let q = "sum(ts(db, *, *))";
    let t = end - 3 * DAY + 17 * MIN;
    let (_, before) = range(&cached, q, end - 4 * DAY, end - 2 * DAY, "1m").await;
    let (_, again) = range(&cached, q, end - 4 * DAY, end - 2 * DAY, "1m").await;
    assert_eq!(before, again);
    let find = |v: &Value| -> String {
        matrix(v)[0]
            .1
            .iter()
            .find(|(ts, _)| *ts == t / 1000)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let old: f64 = find(&before).parse().unwrap();
    let heard = counter(&cached.http, "federator/epochs/bumps_heard").await;
    write(&st, vec![series("db", "d9", "q/latency", &[(t, 1000.0)])]).await;
    bump_heard(&cached, heard).await;
    let (_, after) = range(&cached, q, end - 4 * DAY, end - 2 * DAY, "1m").await;
    let new: f64 = find(&after).parse().unwrap();
    assert_eq!(new, old + 1000.0, "the backfilled sample is in the answer");
    let (_, plain_after) = range(&plain, q, end - 4 * DAY, end - 2 * DAY, "1m").await;
    assert_eq!(after["data"], plain_after["data"]);
    cached.stop();
    plain.stop();
    evaluated.stop();
    st.stop();
}

/// Polls `name` for up to 2 s until it reaches `at_least`; returns its last value.
async fn counter_reaches(http: &str, name: &str, at_least: u64) -> u64 {
    let mut n = 0;
    for _ in 0..200 {
        n = counter(http, name).await;
        if n >= at_least {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    n
}

/// Waits until the federator's epoch watch brought a bump past `before`: storage
/// sends it before acknowledging the write, but it crosses the network on its own.
async fn bump_heard(fed: &Running, before: u64) {
    let heard = counter_reaches(&fed.http, "federator/epochs/bumps_heard", before + 1).await;
    assert!(
        heard > before,
        "no epoch bump reached the federator within 2 s"
    );
}

#[tokio::test]
async fn the_in_process_tier_and_watched_epochs_answer_without_round_trips() {
    let st = storage().await;
    let end = now_min();
    write(&st, week(end)).await;
    // Default cache settings, no memcached: spans stay in the process.
    let fed = federator(vec![zone("local", &[&st])], vec![], |_| {}).await;
    let plain = federator(vec![zone("local", &[&st])], vec![], |c| {
        c.cache.local_bytes = 0;
    })
    .await;
    let q = "sum(ts(web, *, http/*))";
    let (s, first) = range(&fed, q, end - 7 * DAY, end, "5m").await;
    assert_eq!(s, 200, "{first}");
    // The first query started the watch; wait for its snapshot to be used.
    let mut watched = 0;
    for _ in 0..200 {
        range(&fed, "ts(web, h1, http/requests)", end - DAY, end, "1m").await;
        watched = counter(&fed.http, "federator/epochs/watched").await;
        if watched > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(watched > 0, "span keys come from the watched epochs");
    let (asked, frags0, local0) = (
        counter(&fed.http, "federator/epochs/asked").await,
        counter(&fed.http, "federator/fragments_run").await,
        counter(&fed.http, "federator/cache/local_hits").await,
    );
    let (_, second) = range(&fed, q, end - 7 * DAY, end, "5m").await;
    assert_eq!(first, second);
    assert!(counter(&fed.http, "federator/cache/local_hits").await - local0 >= 50);
    assert!(counter(&fed.http, "federator/fragments_run").await - frags0 <= 2);
    assert_eq!(
        counter(&fed.http, "federator/epochs/asked").await,
        asked,
        "no Epochs call while the watch is up"
    );
    let (_, third) = range(&plain, q, end - 7 * DAY, end, "5m").await;
    assert_eq!(first["data"], third["data"]);

    // A backfill into a cached day: once its bump is heard, the next answer has it.
    let q = "sum(ts(db, *, *))";
    let t = end - 3 * DAY + 17 * MIN;
    let (_, before) = range(&fed, q, end - 4 * DAY, end - 2 * DAY, "1m").await;
    let heard = counter(&fed.http, "federator/epochs/bumps_heard").await;
    write(&st, vec![series("db", "d9", "q/latency", &[(t, 1000.0)])]).await;
    bump_heard(&fed, heard).await;
    let (_, after) = range(&fed, q, end - 4 * DAY, end - 2 * DAY, "1m").await;
    let (_, plain_after) = range(&plain, q, end - 4 * DAY, end - 2 * DAY, "1m").await;
    assert_ne!(before["data"], after["data"]);
    assert_eq!(after["data"], plain_after["data"]);

    // Storage gone: the watch is lost, queries say the zone is missing, nothing
    // cached is served as if storage had answered.
    st.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, gone) = range(&fed, "sum(ts(web, *, http/*))", end - 7 * DAY, end, "5m").await;
    assert_ne!(s, 200, "{gone}");
    fed.stop();
    plain.stop();
}

/// `ms` as `YYYY-MM-DDTHH:MM:SSZ` (days to civil date, after H. Hinnant).
fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A small deterministic generator (xorshift), so failures reproduce.
fn fastrand_like(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

#[tokio::test]
async fn a_stopped_zone_gives_a_partial_answer_naming_it() {
    let dc1 = storage().await;
    let dc2 = storage().await;
    let t0 = now_min() - HOUR;
    write(&dc1, vec![series("web", "a1", "m", &[(t0, 1.0)])]).await;
    write(&dc2, vec![series("web", "b1", "m", &[(t0, 2.0)])]).await;
    let fed = federator(
        vec![zone("dc1", &[&dc1]), zone("dc2", &[&dc2])],
        vec![],
        |_| {},
    )
    .await;
    let (_, v) = range(&fed, "sum(ts(web, *, m))", t0, t0, "60s").await;
    assert_eq!(
        matrix(&v),
        vec![("- - -".into(), vec![(t0 / 1000, "3".into())])]
    );
    assert!(v.get("partial").is_none());

    dc2.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, v) = range(&fed, "sum(ts(web, *, m))", t0, t0, "60s").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        matrix(&v),
        vec![("- - -".into(), vec![(t0 / 1000, "1".into())])]
    );
    assert_eq!(v["partial"], true);
    assert_eq!(v["missingZones"][0]["zone"], "dc2", "{v}");
    assert!(v["warnings"][0].as_str().unwrap().contains("dc2"), "{v}");

    // Over gRPC the missing zone is named too.
    let mut client = proto::query::query_client::QueryClient::connect(fed.grpc.clone())
        .await
        .unwrap();
    let r = client
        .query_range(proto::query::QueryRangeRequest {
            query: "sum(ts(web, *, m))".into(),
            start_ms: t0,
            end_ms: t0,
            step_ms: MIN,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.missing_zones.len(), 1);
    assert_eq!(r.missing_zones[0].zone, "dc2");
    assert_eq!(r.series[0].points[0].value, 1.0);

    // With every zone down the query fails, naming them.
    dc1.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, v) = range(&fed, "sum(ts(web, *, m))", t0, t0, "60s").await;
    assert_eq!(s, 503, "{v}");
    assert!(v["error"].as_str().unwrap().contains("dc1"), "{v}");
    fed.stop();
}

#[tokio::test]
async fn a_query_over_the_limit_is_refused_before_any_fragment_runs() {
    let st = storage().await;
    let t0 = now_min() - HOUR;
    let batch: Vec<pb::Series> = (0..20)
        .map(|i| series("web", &format!("h{i}"), "m", &[(t0, i as f64)]))
        .collect();
    write(&st, batch).await;
    let fed = federator(vec![zone("local", &[&st])], vec![], |c| {
        c.limits.max_series = 10;
    })
    .await;
    let before = counter(&st.http, "storage/fragment/requests").await;
    let (s, v) = range(&fed, "sum(ts(web, *, m))", t0 - HOUR, t0, "60s").await;
    assert_eq!(s, 422, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(e.contains("estimated 20 series"), "{e}");
    assert!(e.contains("max_series"), "{e}");
    assert!(e.contains("narrow"), "{e}");
    assert_eq!(counter(&st.http, "storage/fragment/requests").await, before);
    assert_eq!(counter(&fed.http, "federator/fragments_run").await, 0);
    // A narrower query runs.
    let (s, _) = range(&fed, "sum(ts(web, /h[0-4]/, m))", t0 - HOUR, t0, "60s").await;
    assert_eq!(s, 200);
    // Over gRPC: RESOURCE_EXHAUSTED.
    let mut client = proto::query::query_client::QueryClient::connect(fed.grpc.clone())
        .await
        .unwrap();
    let e = client
        .query(proto::query::QueryRequest {
            query: "ts(web, *, m)".into(),
            time_ms: t0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    fed.stop();
    st.stop();
}

#[tokio::test]
async fn a_zone_past_the_deadline_is_named_and_the_rest_answers() {
    let st = storage().await;
    // A zone whose endpoint accepts connections and never answers.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_url = format!("http://{}", hole.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((c, _)) = hole.accept().await {
            held.push(c);
        }
    });
    let t0 = now_min() - HOUR;
    write(&st, vec![series("web", "a1", "m", &[(t0, 4.0)])]).await;
    let slow = ZoneConfig {
        name: "slow".into(),
        endpoints: vec![hole_url],
        ..ZoneConfig::default()
    };
    let fed = federator(vec![zone("local", &[&st]), slow], vec![], |_| {}).await;
    let began = std::time::Instant::now();
    let (s, v) = get(
        &format!("{}/api/v1/query_range", fed.http),
        &[
            ("query", "sum(ts(web, *, m))".into()),
            ("start", (t0 / 1000).to_string()),
            ("end", (t0 / 1000).to_string()),
            ("step", "60".into()),
            ("timeout", "700ms".into()),
        ],
    )
    .await;
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "the deadline holds"
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        matrix(&v),
        vec![("- - -".into(), vec![(t0 / 1000, "4".into())])]
    );
    assert_eq!(v["missingZones"][0]["zone"], "slow", "{v}");
    assert!(
        v["missingZones"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("deadline exceeded"),
        "{v}"
    );
    fed.stop();
    st.stop();
}

#[tokio::test]
async fn promtool_reads_the_api_as_a_prometheus_client() {
    if std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("promtool is missing: scripts/setup-test-env.sh installs it");
    }
    let st = storage().await;
    let fed = federator(vec![zone("local", &[&st])], vec![], |_| {}).await;
    let t0 = now_min() - HOUR;
    write(
        &st,
        vec![
            series("web", "h1", "http/requests", &[(t0, 3.0), (t0 + MIN, 4.5)]),
            series(
                "web",
                "h2",
                "http/requests",
                &[(t0, 10.0), (t0 + MIN, 20.0)],
            ),
        ],
    )
    .await;
    let url = fed.http.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("promtool")
            .args([
                "query",
                "range",
                "--start",
                &(t0 / 1000).to_string(),
                "--end",
                &((t0 + MIN) / 1000).to_string(),
                "--step",
                "60s",
                &url,
                "sum(ts(web, *, http/requests))",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("13 @["), "{text}");
    assert!(text.contains("24.5 @["), "{text}");
    let url = fed.http.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("promtool")
            .args([
                "query",
                "instant",
                "--time",
                &((t0 + MIN) / 1000).to_string(),
                &url,
                "ts(web, h2, http/requests)",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("source=\"h2\""), "{text}");
    assert!(text.contains("=> 20 @["), "{text}");
    fed.stop();
    st.stop();
}
