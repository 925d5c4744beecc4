//! The generated Storage client and server work end to end: a small in-memory
//! Storage is served by tonic on 127.0.0.1:0 and driven through the generated
//! client over real HTTP/2, unary and server-streaming RPCs alike.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use proto::common::{self, pattern::Kind};
use proto::storage::storage_client::StorageClient;
use proto::storage::storage_server::{Storage, StorageServer};
use proto::storage::*;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// Samples newer than this (Unix ms) are "too far in the future" here.
const FUTURE_LIMIT_MS: i64 = 2_000_000_000_000;
/// Chunks of a stream carry at most this many samples (or cells), small so
/// that the tests see series continued across chunks.
const CHUNK: usize = 2;

type Key = (String, String, String);

/// An in-memory Storage: enough semantics to exercise the wire contract
/// (idempotent writes, per-item rejections, chunked streams), none of the
/// engine.
#[derive(Default, Clone)]
struct MemStorage {
    series: Arc<Mutex<BTreeMap<Key, BTreeMap<i64, f64>>>>,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn pattern_matches(pattern: Option<&common::Pattern>, name: &str) -> Result<bool, Status> {
    let Some(kind) = pattern.and_then(|p| p.kind.as_ref()) else {
        return Ok(true);
    };
    match kind {
        Kind::Exact(exact) => Ok(name == exact),
        Kind::Glob(glob) => Ok(match glob.split_once('*') {
            None => name == glob,
            Some((prefix, suffix)) if !suffix.contains('*') => {
                name.len() >= prefix.len() + suffix.len()
                    && name.starts_with(prefix)
                    && name.ends_with(suffix)
            }
            Some(_) => return Err(Status::invalid_argument("glob with more than one '*'")),
        }),
        Kind::AnyOf(names) => Ok(names.names.iter().any(|n| n == name)),
        Kind::Regex(_) | Kind::Members(_) => Err(Status::invalid_argument(
            "regex and members() patterns are not supported by this server",
        )),
    }
}

fn key_matches(m: &common::Matcher, key: &Key) -> Result<bool, Status> {
    Ok(pattern_matches(m.service.as_ref(), &key.0)?
        && pattern_matches(m.source.as_ref(), &key.1)?
        && pattern_matches(m.metric.as_ref(), &key.2)?)
}

fn to_key(k: &common::SeriesKey) -> Key {
    (k.service.clone(), k.source.clone(), k.metric.clone())
}

fn from_key(k: &Key) -> common::SeriesKey {
    common::SeriesKey {
        service: k.0.clone(),
        source: k.1.clone(),
        metric: k.2.clone(),
    }
}

fn in_range(range: &common::TimeRange, t: i64) -> bool {
    range.start_ms <= t && t < range.end_ms
}

#[tonic::async_trait]
impl Storage for MemStorage {
    async fn write(
        &self,
        request: Request<WriteRequest>,
    ) -> Result<Response<WriteResponse>, Status> {
        let mut store = self.series.lock().unwrap();
        let mut response = WriteResponse::default();
        for (index, series) in request.into_inner().series.iter().enumerate() {
            let index = index as u32;
            let key = series.key.clone().unwrap_or_default();
            if key.service.is_empty() || key.source.is_empty() || key.metric.is_empty() {
                response.rejections.push(common::Rejection {
                    index,
                    sample_index: None,
                    reason: common::RejectReason::InvalidName.into(),
                    detail: "series key has an empty part".into(),
                });
                continue;
            }
            for (sample_index, sample) in series.samples.iter().enumerate() {
                if sample.timestamp_ms > FUTURE_LIMIT_MS {
                    response.rejections.push(common::Rejection {
                        index,
                        sample_index: Some(sample_index as u32),
                        reason: common::RejectReason::TooFarInFuture.into(),
                        detail: format!(
                            "sample at {} is too far in the future",
                            sample.timestamp_ms
                        ),
                    });
                    continue;
                }
                store
                    .entry(to_key(&key))
                    .or_default()
                    .insert(sample.timestamp_ms, sample.value);
                response.accepted += 1;
            }
        }
        Ok(Response::new(response))
    }

    type ReadStream = BoxStream<ReadResponse>;

    async fn read(
        &self,
        request: Request<ReadRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let req = request.into_inner();
        let matcher = req.matcher.unwrap_or_default();
        let range = req
            .range
            .ok_or_else(|| Status::invalid_argument("range is required"))?;
        // Flatten to (key, sample) in key then time order, then cut in chunks.
        let mut flat = Vec::new();
        for (key, samples) in self.series.lock().unwrap().iter() {
            if !key_matches(&matcher, key)? {
                continue;
            }
            for (&timestamp_ms, &value) in samples.range(range.start_ms..range.end_ms) {
                flat.push((
                    key.clone(),
                    common::Sample {
                        timestamp_ms,
                        value,
                    },
                ));
            }
        }
        let chunks: Vec<Result<ReadResponse, Status>> = flat
            .chunks(CHUNK)
            .map(|chunk| {
                let mut out: Vec<common::Series> = Vec::new();
                for (key, sample) in chunk {
                    match out.last_mut() {
                        Some(s) if s.key.as_ref() == Some(&from_key(key)) => {
                            s.samples.push(*sample)
                        }
                        _ => out.push(common::Series {
                            key: Some(from_key(key)),
                            samples: vec![*sample],
                        }),
                    }
                }
                Ok(ReadResponse { series: out })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn index(
        &self,
        request: Request<IndexRequest>,
    ) -> Result<Response<IndexResponse>, Status> {
        let req = request.into_inner();
        let kind = req.kind();
        let matcher = req.matcher.unwrap_or_default();
        let range = req
            .range
            .ok_or_else(|| Status::invalid_argument("range is required"))?;
        let store = self.series.lock().unwrap();
        let mut names = std::collections::BTreeSet::new();
        let mut series = Vec::new();
        for (key, samples) in store.iter() {
            if !key_matches(&matcher, key)?
                || samples.range(range.start_ms..range.end_ms).next().is_none()
            {
                continue;
            }
            match kind {
                IndexKind::Services => _ = names.insert(key.0.clone()),
                IndexKind::Sources => _ = names.insert(key.1.clone()),
                IndexKind::Metrics => _ = names.insert(key.2.clone()),
                IndexKind::Series => series.push(from_key(key)),
                IndexKind::Unspecified => return Err(Status::invalid_argument("kind is required")),
            }
        }
        let total = (names.len() + series.len()) as u64;
        let limit = if req.limit == 0 {
            usize::MAX
        } else {
            req.limit as usize
        };
        let truncated = total > limit as u64;
        Ok(Response::new(IndexResponse {
            names: names.into_iter().take(limit).collect(),
            series: series.into_iter().take(limit).collect(),
            total,
            truncated,
        }))
    }

    type ExecuteFragmentStream = BoxStream<ExecuteFragmentResponse>;

    /// LAST per step, no over-time function, all series into one group.
    async fn execute_fragment(
        &self,
        request: Request<ExecuteFragmentRequest>,
    ) -> Result<Response<Self::ExecuteFragmentStream>, Status> {
        let req = request.into_inner();
        let range = req
            .range
            .ok_or_else(|| Status::invalid_argument("range is required"))?;
        if req.step_ms <= 0 {
            return Err(Status::invalid_argument(format!(
                "step_ms must be positive, got {}",
                req.step_ms
            )));
        }
        let mut cells: BTreeMap<i64, common::PartialCell> = BTreeMap::new();
        let mut series_touched = 0;
        let mut samples_touched = 0;
        for (key, samples) in self.series.lock().unwrap().iter() {
            let mut selected = false;
            for m in &req.matchers {
                selected |= key_matches(m, key)?;
            }
            if !selected {
                continue;
            }
            series_touched += 1;
            let mut t = range.start_ms;
            while t < range.end_ms {
                let in_step = samples.range(t - req.step_ms + 1..=t);
                samples_touched += in_step.clone().count() as u64;
                if let Some((&ts, &v)) = in_step.last() {
                    let c = cells.entry(t).or_insert(common::PartialCell {
                        timestamp_ms: t,
                        min: f64::INFINITY,
                        max: f64::NEG_INFINITY,
                        last_timestamp_ms: i64::MIN,
                        ..Default::default()
                    });
                    c.count += 1;
                    c.sum += v;
                    c.min = c.min.min(v);
                    c.max = c.max.max(v);
                    if ts > c.last_timestamp_ms || (ts == c.last_timestamp_ms && v > c.last) {
                        c.last = v;
                        c.last_timestamp_ms = ts;
                    }
                }
                t += req.step_ms;
            }
        }
        let group_key = common::SeriesKey::default();
        let cells: Vec<_> = cells.into_values().collect();
        let mut chunks: Vec<Result<ExecuteFragmentResponse, Status>> = cells
            .chunks(CHUNK)
            .map(|c| {
                Ok(ExecuteFragmentResponse {
                    groups: vec![FragmentGroup {
                        key: Some(group_key.clone()),
                        cells: c.to_vec(),
                    }],
                    stats: None,
                })
            })
            .collect();
        let stats = FragmentStats {
            series_touched,
            samples_touched,
            resolution_ms: 0,
        };
        match chunks.last_mut() {
            Some(Ok(last)) => last.stats = Some(stats),
            _ => chunks.push(Ok(ExecuteFragmentResponse {
                groups: vec![],
                stats: Some(stats),
            })),
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    /// This store has no backfill path: every (service, day) with data has epoch 0.
    async fn epochs(
        &self,
        request: Request<EpochsRequest>,
    ) -> Result<Response<EpochsResponse>, Status> {
        const DAY_MS: i64 = 86_400_000;
        let req = request.into_inner();
        let range = req
            .range
            .ok_or_else(|| Status::invalid_argument("range is required"))?;
        let mut days = std::collections::BTreeSet::new();
        for (key, samples) in self.series.lock().unwrap().iter() {
            if !pattern_matches(req.service.as_ref(), &key.0)? {
                continue;
            }
            for &t in samples.keys().filter(|&&t| in_range(&range, t)) {
                days.insert((key.0.clone(), t.div_euclid(DAY_MS) * DAY_MS));
            }
        }
        Ok(Response::new(EpochsResponse {
            epochs: days
                .into_iter()
                .map(|(service, day_start_ms)| ServiceDayEpoch {
                    service,
                    day_start_ms,
                    epoch: 0,
                })
                .collect(),
            mutable_after_ms: FUTURE_LIMIT_MS,
        }))
    }

    type WatchEpochsStream = BoxStream<EpochsUpdate>;

    async fn watch_epochs(
        &self,
        _request: Request<WatchEpochsRequest>,
    ) -> Result<Response<Self::WatchEpochsStream>, Status> {
        // The contract allows it: a client then asks Epochs per query.
        Err(Status::unimplemented(
            "this test storage keeps no epoch table",
        ))
    }
}

/// A running server; dropping it shuts the server down.
struct TestServer {
    addr: SocketAddr,
    _shutdown: oneshot::Sender<()>,
}

async fn start_server() -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(StorageServer::new(MemStorage::default()))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    TestServer {
        addr,
        _shutdown: tx,
    }
}

async fn client(server: &TestServer) -> StorageClient<tonic::transport::Channel> {
    StorageClient::connect(format!("http://{}", server.addr))
        .await
        .unwrap()
}

fn key(source: &str, metric: &str) -> common::SeriesKey {
    common::SeriesKey {
        service: "cuckoo".into(),
        source: source.into(),
        metric: metric.into(),
    }
}

fn series(key: common::SeriesKey, points: &[(i64, f64)]) -> common::Series {
    common::Series {
        key: Some(key),
        samples: points
            .iter()
            .map(|&(timestamp_ms, value)| common::Sample {
                timestamp_ms,
                value,
            })
            .collect(),
    }
}

fn everything() -> common::TimeRange {
    common::TimeRange {
        start_ms: 0,
        end_ms: i64::MAX,
    }
}

/// A batch with two good series, one bad name and one sample in the future.
fn batch() -> WriteRequest {
    WriteRequest {
        series: vec![
            series(
                key("h1:9990", "jvm_gc_msec"),
                &[(60_000, 1.0), (120_000, 2.0), (180_000, 3.0)],
            ),
            series(key("", "jvm_gc_msec"), &[(60_000, 9.0)]),
            series(
                key("h2:9990", "jvm_gc_msec"),
                &[(60_000, 10.0), (FUTURE_LIMIT_MS + 1, 0.0), (120_000, 20.0)],
            ),
        ],
    }
}

/// Reassembles a chunked Read: a chunk starting with the key the previous one
/// ended with continues that series.
async fn read_all(
    client: &mut StorageClient<tonic::transport::Channel>,
    request: ReadRequest,
) -> (Vec<common::Series>, usize) {
    let mut stream = client.read(request).await.unwrap().into_inner();
    let mut out: Vec<common::Series> = Vec::new();
    let mut chunks = 0;
    while let Some(chunk) = stream.next().await {
        chunks += 1;
        for s in chunk.unwrap().series {
            match out.last_mut() {
                Some(prev) if prev.key == s.key => prev.samples.extend(s.samples),
                _ => out.push(s),
            }
        }
    }
    (out, chunks)
}

#[tokio::test]
async fn write_reports_each_rejection_and_stores_the_rest_once() {
    let server = start_server().await;
    let mut client = client(&server).await;

    let first = client.write(batch()).await.unwrap().into_inner();
    assert_eq!(first.accepted, 5);
    assert_eq!(first.rejections.len(), 2, "{:?}", first.rejections);
    let bad_name = &first.rejections[0];
    assert_eq!((bad_name.index, bad_name.sample_index), (1, None));
    assert_eq!(bad_name.reason(), common::RejectReason::InvalidName);
    let future = &first.rejections[1];
    assert_eq!((future.index, future.sample_index), (2, Some(1)));
    assert_eq!(future.reason(), common::RejectReason::TooFarInFuture);
    assert!(future.detail.contains("future"), "{}", future.detail);

    // Re-delivery of the same batch changes nothing: idempotent.
    let again = client.write(batch()).await.unwrap().into_inner();
    assert_eq!(again, first);
    let (read, _) = read_all(
        &mut client,
        ReadRequest {
            range: Some(everything()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        read,
        vec![
            series(
                key("h1:9990", "jvm_gc_msec"),
                &[(60_000, 1.0), (120_000, 2.0), (180_000, 3.0)]
            ),
            series(
                key("h2:9990", "jvm_gc_msec"),
                &[(60_000, 10.0), (120_000, 20.0)]
            ),
        ]
    );
}

#[tokio::test]
async fn read_streams_matched_series_in_bounded_chunks() {
    let server = start_server().await;
    let mut client = client(&server).await;
    client.write(batch()).await.unwrap();

    let (read, chunks) = read_all(
        &mut client,
        ReadRequest {
            matcher: Some(common::Matcher {
                service: Some(common::Pattern {
                    kind: Some(Kind::Exact("cuckoo".into())),
                }),
                source: Some(common::Pattern {
                    kind: Some(Kind::Glob("h1:*".into())),
                }),
                metric: None,
            }),
            range: Some(common::TimeRange {
                start_ms: 0,
                end_ms: 180_001,
            }),
            ..Default::default()
        },
    )
    .await;
    // Three samples in chunks of two: the series continues across chunks.
    assert_eq!(chunks, 2);
    assert_eq!(
        read,
        vec![series(
            key("h1:9990", "jvm_gc_msec"),
            &[(60_000, 1.0), (120_000, 2.0), (180_000, 3.0)]
        )]
    );

    // A server-side error reaches the client as a status with its message.
    let err = client
        .read(ReadRequest {
            matcher: Some(common::Matcher {
                metric: Some(common::Pattern {
                    kind: Some(Kind::Regex("jvm_.*".into())),
                }),
                ..Default::default()
            }),
            range: Some(everything()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("regex"), "{}", err.message());
}

#[tokio::test]
async fn fragments_index_and_epochs_answer_over_the_wire() {
    let server = start_server().await;
    let mut client = client(&server).await;
    client.write(batch()).await.unwrap();

    let mut stream = client
        .execute_fragment(ExecuteFragmentRequest {
            matchers: vec![common::Matcher {
                metric: Some(common::Pattern {
                    kind: Some(Kind::Exact("jvm_gc_msec".into())),
                }),
                ..Default::default()
            }],
            range: Some(common::TimeRange {
                start_ms: 60_000,
                end_ms: 240_000,
            }),
            step_ms: 60_000,
            cross_series: Some(CrossSeries {
                aggregator: common::Aggregator::Sum.into(),
                group_by: vec![],
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut cells = Vec::new();
    let mut stats = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        assert!(stats.is_none(), "stats come with the last chunk only");
        stats = chunk.stats;
        for group in chunk.groups {
            cells.extend(group.cells);
        }
    }
    let sums: Vec<(i64, u64, f64)> = cells
        .iter()
        .map(|c| (c.timestamp_ms, c.count, c.sum))
        .collect();
    assert_eq!(
        sums,
        vec![(60_000, 2, 11.0), (120_000, 2, 22.0), (180_000, 1, 3.0)]
    );
    assert_eq!(stats.unwrap().series_touched, 2);

    let index = client
        .index(IndexRequest {
            kind: IndexKind::Sources.into(),
            matcher: None,
            range: Some(everything()),
            limit: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(index.names, vec!["h1:9990".to_string()]);
    assert_eq!((index.total, index.truncated), (2, true));

    let epochs = client
        .epochs(EpochsRequest {
            service: None,
            range: Some(everything()),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        epochs.epochs,
        vec![ServiceDayEpoch {
            service: "cuckoo".into(),
            day_start_ms: 0,
            epoch: 0
        }]
    );
}
