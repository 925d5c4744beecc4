//! The Storage service over the wire: a real server on a loopback port picked by
//! the OS, a real tonic client, the embedded backend under a temporary directory.

use std::time::Duration;

use prost::Message;
use proto::common as pb;
use proto::storage::{self as api, storage_client::StorageClient};
use service_kit::{Common, ServerConfig, Shutdown};
use tonic::transport::Channel;

const MIN: i64 = 60_000;

struct Running {
    client: StorageClient<Channel>,
    http: String,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<Result<(), storage_frontend::Error>>,
    _dir: tempfile::TempDir,
}

async fn start(adjust: impl FnOnce(&mut storage_frontend::Config)) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut config = storage_frontend::Config {
        common: Common {
            listen_host: "127.0.0.1".into(),
            data_dir: dir.path().to_owned(),
            ..Common::default()
        },
        server: ServerConfig::with_ports(0, 0),
        ..Default::default()
    };
    adjust(&mut config);
    let server = storage_frontend::bind(config).await.unwrap();
    let grpc = format!("http://{}", server.grpc_addr());
    let http = format!("http://{}", server.http_addr());
    let shutdown = Shutdown::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    let client = StorageClient::connect(grpc).await.unwrap();
    Running {
        client,
        http,
        shutdown,
        task,
        _dir: dir,
    }
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
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

fn exact(s: &str) -> Option<pb::Pattern> {
    Some(pb::Pattern {
        kind: Some(pb::pattern::Kind::Exact(s.into())),
    })
}

fn glob(s: &str) -> Option<pb::Pattern> {
    Some(pb::Pattern {
        kind: Some(pb::pattern::Kind::Glob(s.into())),
    })
}

fn matcher(
    svc: Option<pb::Pattern>,
    src: Option<pb::Pattern>,
    m: Option<pb::Pattern>,
) -> pb::Matcher {
    pb::Matcher {
        service: svc,
        source: src,
        metric: m,
    }
}

fn range(start_ms: i64, end_ms: i64) -> Option<pb::TimeRange> {
    Some(pb::TimeRange { start_ms, end_ms })
}

async fn read_all(
    client: &mut StorageClient<Channel>,
    req: api::ReadRequest,
) -> Result<Vec<api::ReadResponse>, tonic::Status> {
    let mut stream = client.read(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.message().await? {
        out.push(chunk);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_read_index_and_epochs_over_the_wire() {
    let mut s = start(|c| c.limits.chunk_cells = 4).await;
    let t = now_min() - 3 * MIN;
    let pts: Vec<(i64, f64)> = (0..3).map(|i| (t + i * MIN, i as f64)).collect();
    let many: Vec<(i64, f64)> = (0..10).map(|i| (t + i * 1000, i as f64)).collect();
    let r = s
        .client
        .write(api::WriteRequest {
            series: vec![
                series("web", "h1", "http/requests", &pts),
                series("web", "h2", "http/requests", &many),
                series("db", "d1", "disk/free", &pts),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.accepted, r.backfilled, r.rejections.len()), (16, 0, 0));

    // Read streams in chunks of at most 4 samples; a long series continues.
    let chunks = read_all(
        &mut s.client,
        api::ReadRequest {
            matcher: Some(matcher(exact("web"), None, glob("http/*"))),
            range: range(t - MIN, t + 10 * MIN),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let sizes: Vec<usize> = chunks
        .iter()
        .map(|c| c.series.iter().map(|x| x.samples.len()).sum())
        .collect();
    assert!(sizes.iter().all(|&n| n <= 4), "{sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), 13);
    let mut h2 = Vec::new();
    for c in &chunks {
        for x in &c.series {
            if x.key.as_ref().unwrap().source == "h2" {
                h2.extend(x.samples.iter().map(|p| p.value));
            }
        }
    }
    assert_eq!(h2, (0..10).map(f64::from).collect::<Vec<_>>());

    // Index: names and series, with a limit that truncates.
    let idx = s
        .client
        .index(api::IndexRequest {
            kind: api::IndexKind::Services as i32,
            matcher: None,
            range: range(t, t + 10 * MIN),
            limit: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (idx.names.clone(), idx.total, idx.truncated),
        (vec!["db".to_string()], 2, true)
    );
    // Series of `web`, at most `limit` (0: storage's cap): sources, total, truncated.
    let mut client = s.client.clone();
    let mut web_series = async |limit: u32| {
        let idx = client
            .index(api::IndexRequest {
                kind: api::IndexKind::Series as i32,
                matcher: Some(matcher(exact("web"), None, None)),
                range: range(t, t + 10 * MIN),
                limit,
            })
            .await
            .unwrap()
            .into_inner();
        let sources: Vec<String> = idx.series.into_iter().map(|k| k.source).collect();
        (sources, idx.total, idx.truncated)
    };
    assert_eq!(
        web_series(0).await,
        (vec!["h1".into(), "h2".into()], 2, false)
    );
    assert_eq!(web_series(1).await, (vec!["h1".into()], 2, true));

    // Epochs: a backfilled sample bumps (web, its day) and nothing else.
    let old = t - 2 * 86_400_000;
    let before = s
        .client
        .epochs(api::EpochsRequest {
            service: None,
            range: range(old - 86_400_000, t + MIN),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(before.epochs.is_empty());
    assert!(before.mutable_after_ms > t - 20 * MIN && before.mutable_after_ms < t + 5 * MIN);
    let r = s
        .client
        .write(api::WriteRequest {
            series: vec![series("web", "h1", "http/requests", &[(old, 1.0)])],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.accepted, r.backfilled), (1, 1));
    let after = s
        .client
        .epochs(api::EpochsRequest {
            service: None,
            range: range(old - 86_400_000, t + MIN),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.epochs.len(), 1, "{:?}", after.epochs);
    assert_eq!(after.epochs[0].service, "web");
    assert_eq!(
        after.epochs[0].day_start_ms,
        old - old.rem_euclid(86_400_000)
    );
    assert!(after.epochs[0].epoch > 0);

    // The service counts what it did.
    let json = reqwest_get(&format!("{}/admin/metrics.json", s.http)).await;
    assert!(json.contains("\"storage/samples_written\":17"), "{json}");
    assert!(json.contains("storage/samples_backfilled"), "{json}");
    assert!(json.contains("storage/engine/series"), "{json}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_epochs_streams_the_table_then_each_bump() {
    let mut s = start(|_| {}).await;
    let t = now_min();
    let old = t - 2 * 86_400_000;
    let day = old - old.rem_euclid(86_400_000);
    let backfill = |client: &mut StorageClient<Channel>, svc: &'static str, ts: i64| {
        let mut client = client.clone();
        async move {
            client
                .write(api::WriteRequest {
                    series: vec![series(svc, "h1", "m", &[(ts, 1.0)])],
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    assert_eq!(backfill(&mut s.client, "web", old).await.backfilled, 1);
    let mut watch = s
        .client
        .watch_epochs(api::WatchEpochsRequest {})
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert!(first.snapshot);
    assert_eq!(first.ooo_window_ms, 600_000);
    assert!((first.now_ms - t).abs() < 5 * MIN, "{}", first.now_ms);
    assert_eq!(first.epochs.len(), 1, "{:?}", first.epochs);
    assert_eq!(
        (
            first.epochs[0].service.as_str(),
            first.epochs[0].day_start_ms
        ),
        ("web", day)
    );
    let web = first.epochs[0].epoch;

    // A live write bumps nothing; a backfill of another service does, at once.
    backfill(&mut s.client, "web", t).await;
    backfill(&mut s.client, "api", old).await;
    let bump = loop {
        let u = watch.message().await.unwrap().unwrap();
        assert!(!u.snapshot);
        if !u.epochs.is_empty() {
            break u;
        }
    };
    assert_eq!(bump.epochs.len(), 1, "{:?}", bump.epochs);
    assert_eq!(bump.epochs[0].service, "api");
    assert!(bump.epochs[0].epoch > web, "epochs only increase");

    // Quiet: heartbeats keep coming, with the clock.
    let beat = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("a heartbeat within the second")
        .unwrap()
        .unwrap();
    assert!(beat.epochs.is_empty() && beat.now_ms >= first.now_ms);
    // A watcher does not hold up shutdown.
    tokio::time::timeout(Duration::from_secs(10), s.stop())
        .await
        .expect("stopped with a watcher connected");
    drop(watch);
}

/// A plain HTTP GET over a TCP stream (the admin endpoint answers HTTP/1.1).
async fn reqwest_get(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut conn = tokio::net::TcpStream::connect(host).await.unwrap();
    conn.write_all(
        format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut body = String::new();
    conn.read_to_string(&mut body).await.unwrap();
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_writes_are_named_and_the_valid_part_is_kept() {
    let mut s = start(|c| c.limits.max_write_samples = 100).await;
    let t = now_min() - MIN;
    let long = "x".repeat(2000);
    let err = s
        .client
        .write(api::WriteRequest {
            series: vec![
                series("web", "h1", "ok", &[(t, 1.0), (t + 1000, 2.0)]),
                series("web", "h1", "", &[(t, 1.0)]),
                series("web", &long, "m", &[(t, 1.0)]),
                series("web", "h2", "ok", &[(t, 3.0), (t + 400 * 86_400_000, 4.0)]),
                pb::Series {
                    key: None,
                    samples: vec![],
                },
            ],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let msg = err.message();
    assert!(msg.contains("3 stored"), "{msg}");
    assert!(
        msg.contains("series[1]: invalid_name") && msg.contains("metric is empty"),
        "{msg}"
    );
    assert!(
        msg.contains("series[2]: name_too_long") && msg.contains("source is 2000 bytes"),
        "{msg}"
    );
    assert!(
        msg.contains("series[3] sample 1: too_far_in_future"),
        "{msg}"
    );
    assert!(
        msg.contains("series[4]: invalid_name") && msg.contains("no key"),
        "{msg}"
    );
    let details = api::WriteResponse::decode(err.details()).unwrap();
    assert_eq!(details.accepted, 3);
    let at: Vec<(u32, Option<u32>)> = details
        .rejections
        .iter()
        .map(|r| (r.index, r.sample_index))
        .collect();
    assert_eq!(at, vec![(1, None), (2, None), (3, Some(1)), (4, None)]);

    // The valid part was stored.
    let chunks = read_all(
        &mut s.client,
        api::ReadRequest {
            matcher: Some(matcher(None, None, exact("ok"))),
            range: range(t - MIN, t + MIN),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let n: usize = chunks
        .iter()
        .flat_map(|c| &c.series)
        .map(|x| x.samples.len())
        .sum();
    assert_eq!(n, 3);

    // Thousands of refused items: the trailer carries the exact counts and
    // only the first rejections, so a client with default HTTP/2 limits gets
    // the answer and its connection keeps working.
    let junk: Vec<pb::Series> = (0..90)
        .map(|i| series("web", &format!("h{i}-{}", "y".repeat(200)), "", &[(t, 1.0)]))
        .collect();
    let err = s
        .client
        .write(api::WriteRequest { series: junk })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let details = api::WriteResponse::decode(err.details()).unwrap();
    assert_eq!((details.accepted, details.rejected), (0, 90));
    assert!(details.rejections_truncated);
    assert!(!details.rejections.is_empty() && details.rejections.len() < 90);
    assert!(err.message().contains("and 85 more"), "{}", err.message());

    // An oversized batch is refused whole, naming the limit.
    let big: Vec<(i64, f64)> = (0..101).map(|i| (t + i, 1.0)).collect();
    let err = s
        .client
        .write(api::WriteRequest {
            series: vec![series("web", "h3", "big", &big)],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("101 samples") && err.message().contains("max_write_samples"),
        "{}",
        err.message()
    );

    // A message over the byte limit is refused by the transport, and the
    // server keeps serving.
    let huge = vec![series("web", "h4", &"m".repeat(1000), &[(t, 1.0)]); 20_000];
    let err = s
        .client
        .write(api::WriteRequest { series: huge })
        .await
        .unwrap_err();
    assert_ne!(err.code(), tonic::Code::Ok);
    let idx = s
        .client
        .index(api::IndexRequest {
            kind: api::IndexKind::Metrics as i32,
            matcher: None,
            range: range(t - MIN, t + MIN),
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(idx.names, vec!["ok".to_string()]);

    // Bad matchers and missing fields are named.
    let err = read_all(
        &mut s.client,
        api::ReadRequest {
            matcher: Some(matcher(
                None,
                Some(pb::Pattern {
                    kind: Some(pb::pattern::Kind::Regex("(".into())),
                }),
                None,
            )),
            range: range(t, t + MIN),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().starts_with("matcher.source.regex:"),
        "{}",
        err.message()
    );
    let err = s
        .client
        .execute_fragment(api::ExecuteFragmentRequest {
            matchers: vec![pb::Matcher::default()],
            range: None,
            step_ms: MIN,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.message(), "range: is required");
    s.stop().await;
}

async fn fragment(
    client: &mut StorageClient<Channel>,
    req: api::ExecuteFragmentRequest,
    timeout: Option<Duration>,
) -> Result<(Vec<api::FragmentGroup>, api::FragmentStats), tonic::Status> {
    let mut request = tonic::Request::new(req);
    if let Some(t) = timeout {
        request.set_timeout(t);
    }
    let mut stream = client.execute_fragment(request).await?.into_inner();
    let mut groups: Vec<api::FragmentGroup> = Vec::new();
    let mut stats = None;
    while let Some(chunk) = stream.message().await? {
        for g in chunk.groups {
            match groups.last_mut() {
                Some(last) if last.key == g.key => last.cells.extend(g.cells),
                _ => groups.push(g),
            }
        }
        stats = chunk.stats.or(stats);
    }
    Ok((groups, stats.expect("the last chunk carries stats")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragments_fold_series_and_respect_limits_and_deadlines() {
    let mut s = start(|_| {}).await;
    let t0 = now_min() - 9 * MIN;
    // Two services; counters that increase by the source's number per minute,
    // one with a reset.
    let mut batch = Vec::new();
    for (svc, n) in [("web", 3), ("db", 2)] {
        for src in 0..n {
            let pts: Vec<(i64, f64)> = (0..6)
                .map(|i| {
                    let v = if svc == "db" && src == 1 && i >= 3 {
                        (i - 3) as f64
                    } else {
                        (i * (src + 1)) as f64
                    };
                    (t0 + i * MIN, v)
                })
                .collect();
            batch.push(series(svc, &format!("s{src}"), "requests", &pts));
        }
    }
    s.client
        .write(api::WriteRequest { series: batch })
        .await
        .unwrap();
    let req = |over_time: i32| api::ExecuteFragmentRequest {
        matchers: vec![matcher(None, None, exact("requests"))],
        range: range(t0, t0 + 6 * MIN),
        step_ms: MIN,
        step_aggregator: pb::Aggregator::Last as i32,
        over_time: Some(api::OverTime {
            function: over_time,
            window_ms: 0,
        }),
        cross_series: Some(api::CrossSeries {
            aggregator: pb::Aggregator::Sum as i32,
            group_by: vec![pb::KeyPart::Service as i32],
        }),
        ..Default::default()
    };
    // sum by service of increase: web 1+2+3 = 6 per minute; db: 1 + (2, then a
    // reset to 0 counts 0, then +1 +1).
    let (groups, stats) = fragment(
        &mut s.client,
        req(api::OverTimeFunction::Increase as i32),
        None,
    )
    .await
    .unwrap();
    let got: Vec<(String, Vec<f64>)> = groups
        .iter()
        .map(|g| {
            (
                g.key.as_ref().unwrap().service.clone(),
                g.cells.iter().map(|c| c.sum).collect(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("db".to_string(), vec![3.0, 3.0, 1.0, 2.0, 2.0]),
            ("web".to_string(), vec![6.0; 5]),
        ]
    );
    assert_eq!(stats.series_touched, 5);
    assert!(groups.iter().all(|g| {
        let k = g.key.as_ref().unwrap();
        k.source.is_empty() && k.metric.is_empty()
    }));

    // Rate is the increase per second.
    let (groups, _) = fragment(&mut s.client, req(api::OverTimeFunction::Rate as i32), None)
        .await
        .unwrap();
    assert_eq!(groups[1].cells[0].sum, 0.1);

    // Not combined: one group per series with full keys.
    let mut plain = req(0);
    plain.cross_series = None;
    let (groups, _) = fragment(&mut s.client, plain, None).await.unwrap();
    assert_eq!(groups.len(), 5);
    assert_eq!(groups[0].key.as_ref().unwrap().source, "s0");
    assert_eq!(groups[0].cells.len(), 6);

    // The series limit is checked before anything is read.
    let mut limited = req(0);
    limited.max_series = 4;
    let err = fragment(&mut s.client, limited, None).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert!(
        err.message()
            .contains("series selected: 5 exceeds the limit of 4")
            && err.message().contains("max_series"),
        "{}",
        err.message()
    );
    let mut limited = req(0);
    limited.max_samples = 3;
    let err = fragment(&mut s.client, limited, None).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert!(err.message().contains("samples read"), "{}", err.message());

    // A bad window is named: none, or reaching before the start of time.
    for window in [0, -MIN, i64::MAX] {
        let mut bad = req(api::OverTimeFunction::MovingAvg as i32);
        bad.over_time.as_mut().unwrap().window_ms = window;
        let err = fragment(&mut s.client, bad, None).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{window}");
        assert!(
            err.message().starts_with("over_time.window_ms:"),
            "{}",
            err.message()
        );
    }
    // The widest range and step there are answer without overflowing anywhere.
    for (start, end, step) in [
        (0, i64::MAX, i64::MAX),
        (i64::MAX - 10 * MIN, i64::MAX, 7 * MIN),
    ] {
        let mut wide = req(api::OverTimeFunction::Unspecified as i32);
        wide.range = range(start, end);
        wide.step_ms = step;
        let (groups, _) = fragment(&mut s.client, wide, None).await.unwrap();
        assert!(groups.iter().all(|g| g.cells.is_empty()), "{start} {step}");
    }
    // A range whose reads would begin before the start of time is named.
    for function in [
        api::OverTimeFunction::Unspecified,
        api::OverTimeFunction::Rate,
    ] {
        let mut bad = req(function as i32);
        bad.range = range(i64::MIN, i64::MIN + 6 * MIN);
        let err = fragment(&mut s.client, bad, None).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{function:?}");
        assert!(err.message().starts_with("range:"), "{}", err.message());
    }

    // A client deadline too short for the work stops it with DEADLINE_EXCEEDED
    // (eight matchers over the same 4,000 series take several times the deadline).
    let many: Vec<pb::Series> = (0..4000)
        .map(|i| {
            let pts: Vec<(i64, f64)> = (0..8).map(|k| (t0 + k * MIN, (k * i) as f64)).collect();
            series("big", &format!("h{i}"), "requests", &pts)
        })
        .collect();
    s.client
        .write(api::WriteRequest { series: many })
        .await
        .unwrap();
    let mut heavy = req(api::OverTimeFunction::Rate as i32);
    heavy.matchers = (0..8)
        .map(|i| matcher(exact("big"), glob(&format!("h*{}", "*".repeat(i))), None))
        .collect();
    let err = fragment(&mut s.client, heavy, Some(Duration::from_millis(100)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
    s.stop().await;
}
