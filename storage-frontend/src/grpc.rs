//! The `aerie.storage.v1.Storage` gRPC service: converts requests to domain
//! calls on the backend, enforces the per-request limits and deadlines, streams
//! answers in bounded chunks, and counts everything.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use proto::common as pb;
use proto::storage::{self as api, storage_server::Storage};
use service_kit::Shutdown;
use stats::{Counter, Histogram, StatsReceiver};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tsdb::{DAY_MS, KeyPart, MAX_NAME_LEN, Matcher, Sample, Selector, SeriesKey};

use crate::backend::{Backend, Batch};
use crate::config::Limits;
use crate::convert;
use crate::error::RequestError;
use crate::fragment::{self, FragmentSpec, OverTime};

/// The service's counters and histograms (under `storage/` in metrics.json).
#[derive(Debug)]
struct Metrics {
    stats: StatsReceiver,
    samples_written: Counter,
    samples_backfilled: Counter,
    write_bytes: Counter,
    write_batches: Counter,
    read_series: Counter,
    read_samples: Counter,
    fragments: Counter,
    fragment_latency_ms: Histogram,
    fragment_series: Histogram,
    fragment_samples: Histogram,
}

impl Metrics {
    fn new(stats: &StatsReceiver) -> Self {
        let s = stats.scope("storage");
        Self {
            samples_written: s.counter("samples_written"),
            samples_backfilled: s.counter("samples_backfilled"),
            write_bytes: s.counter("write_bytes"),
            write_batches: s.counter("write_batches"),
            read_series: s.counter("read/series"),
            read_samples: s.counter("read/samples"),
            fragments: s.counter("fragment/requests"),
            fragment_latency_ms: s.histogram("fragment/latency_ms"),
            fragment_series: s.histogram("fragment/series_touched"),
            fragment_samples: s.histogram("fragment/samples_touched"),
            stats: s,
        }
    }

    fn rejected(&self, reason: pb::RejectReason, n: u64) {
        let name = reason
            .as_str_name()
            .trim_start_matches("REJECT_REASON_")
            .to_ascii_lowercase();
        self.stats.scope("samples_rejected").counter(&name).add(n);
    }

    fn failed(&self, method: &str, e: &RequestError) {
        self.stats
            .scope("errors")
            .scope(method)
            .counter(e.kind())
            .incr();
    }
}

/// The Storage service over one backend.
#[derive(Clone)]
pub struct StorageService {
    backend: Arc<dyn Backend>,
    limits: Limits,
    request_timeout: Duration,
    metrics: Arc<Metrics>,
    /// Epoch bumps of this storage-frontend's writes, for `WatchEpochs`.
    bumps: broadcast::Sender<Arc<Vec<api::ServiceDayEpoch>>>,
    /// Ends the long-lived watch streams, which would otherwise hold up draining.
    shutdown: Shutdown,
}

/// Bumps a watcher may fall behind by before it is ended (it then starts over
/// from a snapshot).
const WATCH_BACKLOG: usize = 1024;

/// Quiet time after which a watcher gets a heartbeat.
const WATCH_HEARTBEAT: Duration = Duration::from_secs(1);

fn epoch_pb(b: tsdb::EpochBump) -> api::ServiceDayEpoch {
    api::ServiceDayEpoch {
        service: b.service,
        day_start_ms: b.day * DAY_MS,
        epoch: b.epoch,
    }
}

impl std::fmt::Debug for StorageService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageService")
            .field("backend", &self.backend.kind())
            .field("limits", &self.limits)
            .finish()
    }
}

impl StorageService {
    /// A service over `backend`, counting into `stats`.
    pub fn new(
        backend: Arc<dyn Backend>,
        limits: Limits,
        request_timeout: Duration,
        stats: &StatsReceiver,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            backend,
            limits,
            request_timeout,
            metrics: Arc::new(Metrics::new(stats)),
            bumps: broadcast::channel(WATCH_BACKLOG).0,
            shutdown,
        }
    }

    /// When work on `req` must stop: the client's `grpc-timeout` or the server's
    /// request timeout, whichever is sooner, less a margin (a fifth, at most 1 s) so
    /// that our own answer (DEADLINE_EXCEEDED, naming how far the work got) beats
    /// the transport's generic CANCELLED, whose clock started when the request arrived.
    fn deadline<T>(&self, req: &Request<T>) -> Instant {
        let client = req
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let budget = client.map_or(self.request_timeout, |c| c.min(self.request_timeout));
        let margin = (budget / 5).min(Duration::from_secs(1));
        Instant::now() + budget.saturating_sub(margin)
    }

    async fn do_write(&self, req: api::WriteRequest) -> Result<api::WriteResponse, RequestError> {
        let total: usize = req.series.iter().map(|s| s.samples.len()).sum();
        if total > self.limits.max_write_samples {
            return Err(RequestError::invalid(
                "series",
                format!(
                    "batch holds {total} samples; at most {} per write (storage.limits.max_write_samples): split it",
                    self.limits.max_write_samples
                ),
            ));
        }
        let mut rejections = Vec::new();
        let mut batch = Vec::with_capacity(req.series.len());
        let mut positions = Vec::with_capacity(req.series.len());
        for (i, s) in req.series.into_iter().enumerate() {
            let reject = |reason: pb::RejectReason, detail: String| pb::Rejection {
                index: i as u32,
                sample_index: None,
                reason: reason as i32,
                detail,
            };
            let Some(key) = s.key else {
                rejections.push((
                    s.samples.len(),
                    reject(pb::RejectReason::InvalidName, "series has no key".into()),
                ));
                continue;
            };
            if let Some((reason, detail)) = check_key(&key) {
                let detail = format!("{} {detail}", describe_key(&key));
                rejections.push((s.samples.len(), reject(reason, detail)));
                continue;
            }
            let samples = s
                .samples
                .iter()
                .map(|x| Sample {
                    ts: x.timestamp_ms,
                    value: x.value,
                })
                .collect();
            batch.push((SeriesKey::new(key.service, key.source, key.metric), samples));
            positions.push(i as u32);
        }
        let batch: Batch = Arc::new(batch);
        let mut report = self.backend.write(batch.clone()).await?;
        if !report.epochs.is_empty() {
            // Before the answer: a watcher hears of the bump no later than the writer
            // hears of its success, give or take the network.
            let bumps = std::mem::take(&mut report.epochs);
            let _ = self
                .bumps
                .send(Arc::new(bumps.into_iter().map(epoch_pb).collect()));
        }

        // Engine rejections index the flattened rows; map them back.
        let mut starts = Vec::with_capacity(batch.len());
        let mut n = 0usize;
        for (_, s) in batch.iter() {
            starts.push(n);
            n += s.len();
        }
        let now = self.backend.now_ms();
        for r in &report.rejected {
            let entry = starts.partition_point(|&s| s <= r.index) - 1;
            let sample = r.index - starts[entry];
            let (key, samples) = &batch[entry];
            let ts = samples[sample].ts;
            let detail = match r.reason {
                tsdb::RejectReason::BeyondRetention => {
                    format!("{key}: timestamp_ms {ts} is older than the retention (now {now})")
                }
                tsdb::RejectReason::TooFarInFuture => {
                    format!("{key}: timestamp_ms {ts} is too far in the future (now {now})")
                }
                tsdb::RejectReason::InvalidName => format!("{key}: invalid name"),
            };
            rejections.push((
                1,
                pb::Rejection {
                    index: positions[entry],
                    sample_index: Some(sample as u32),
                    reason: convert::reason(r.reason) as i32,
                    detail,
                },
            ));
        }
        rejections.sort_by_key(|(_, r)| (r.index, r.sample_index));

        let m = &self.metrics;
        m.write_batches.incr();
        m.samples_written.add(report.accepted as u64);
        m.samples_backfilled.add(report.backfilled as u64);
        for (count, r) in &rejections {
            m.rejected(
                pb::RejectReason::try_from(r.reason).unwrap_or(pb::RejectReason::Unspecified),
                *count as u64,
            );
        }
        let rejected_samples: usize = rejections.iter().map(|(c, _)| c).sum();
        let response = api::WriteResponse {
            accepted: report.accepted as u64,
            backfilled: report.backfilled as u64,
            rejections: rejections.into_iter().map(|(_, r)| r).collect(),
            rejected: rejected_samples as u64,
            rejections_truncated: false,
        };
        if response.rejections.is_empty() {
            return Ok(response);
        }
        let mut message = format!(
            "{rejected_samples} of {total} samples rejected, {} stored: ",
            response.accepted
        );
        let shown: Vec<String> = response
            .rejections
            .iter()
            .take(5)
            .map(|r| {
                let at = r
                    .sample_index
                    .map_or(String::new(), |s| format!(" sample {s}"));
                let reason = pb::RejectReason::try_from(r.reason)
                    .map_or("unknown", |x| x.as_str_name())
                    .trim_start_matches("REJECT_REASON_")
                    .to_ascii_lowercase();
                format!("series[{}]{at}: {reason}: {}", r.index, r.detail)
            })
            .collect();
        message.push_str(&shown.join("; "));
        if response.rejections.len() > 5 {
            message.push_str(&format!("; and {} more", response.rejections.len() - 5));
        }
        Err(RequestError::Rejected {
            message,
            response: Box::new(for_trailer(response)),
        })
    }

    fn cap(&self, asked: u64, limit: u64) -> u64 {
        if asked == 0 { limit } else { asked.min(limit) }
    }

    async fn do_index(&self, req: api::IndexRequest) -> Result<api::IndexResponse, RequestError> {
        let kind = api::IndexKind::try_from(req.kind)
            .map_err(|_| RequestError::invalid("kind", format!("unknown kind {}", req.kind)))?;
        let sel = convert::selector(req.matcher.as_ref(), "matcher")?;
        let (t0, t1) = convert::range(req.range.as_ref(), "range")?;
        let limit = self.cap(u64::from(req.limit), u64::from(self.limits.max_index_items)) as usize;
        let part = match kind {
            api::IndexKind::Unspecified => {
                return Err(RequestError::invalid("kind", "is required"));
            }
            api::IndexKind::Services => Some(KeyPart::Service),
            api::IndexKind::Sources => Some(KeyPart::Source),
            api::IndexKind::Metrics => Some(KeyPart::Metric),
            api::IndexKind::Series => None,
        };
        let mut response = api::IndexResponse::default();
        match part {
            Some(part) => {
                let mut names = self.backend.names(sel, part, t0, t1).await?;
                response.total = names.len() as u64;
                response.truncated = names.len() > limit;
                names.truncate(limit);
                response.names = names;
            }
            None => {
                let (keys, total) = self.backend.select_first(sel, t0, t1, limit).await?;
                response.total = total;
                response.truncated = total > keys.len() as u64;
                response.series = keys.iter().map(convert::key_to_pb).collect();
            }
        }
        Ok(response)
    }

    async fn do_epochs(
        &self,
        req: api::EpochsRequest,
    ) -> Result<api::EpochsResponse, RequestError> {
        let (t0, t1) = convert::range(req.range.as_ref(), "range")?;
        let sel = Selector {
            service: convert::pattern(req.service.as_ref(), "service")?,
            source: Matcher::Any,
            metric: Matcher::Any,
        };
        let mutable_after_ms = self.backend.now_ms() - self.backend.ooo_window_ms();
        let mut response = api::EpochsResponse {
            epochs: Vec::new(),
            mutable_after_ms,
        };
        if t1 <= t0 {
            return Ok(response);
        }
        let (d0, d1) = (t0.div_euclid(DAY_MS), (t1 - 1).div_euclid(DAY_MS));
        const MAX_DAYS: i64 = 3660;
        if d1 - d0 >= MAX_DAYS {
            return Err(RequestError::invalid(
                "range",
                format!("spans {} days; at most {MAX_DAYS}", d1 - d0 + 1),
            ));
        }
        let services = self.backend.names(sel, KeyPart::Service, t0, t1).await?;
        for service in services {
            for day in d0..=d1 {
                let epoch = self.backend.epoch(service.clone(), day).await?;
                if epoch != 0 {
                    response.epochs.push(api::ServiceDayEpoch {
                        service: service.clone(),
                        day_start_ms: day * DAY_MS,
                        epoch,
                    });
                }
            }
        }
        Ok(response)
    }

    fn fragment_spec(
        &self,
        req: api::ExecuteFragmentRequest,
        deadline: Instant,
    ) -> Result<FragmentSpec, RequestError> {
        let selectors = req
            .matchers
            .iter()
            .enumerate()
            .map(|(i, m)| convert::selector(Some(m), &format!("matchers[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let (start, end) = convert::range(req.range.as_ref(), "range")?;
        let per_step = convert::step_agg(req.step_aggregator, "step_aggregator")?;
        let over_time = match req.over_time {
            None => None,
            Some(o) => over_time(&o)?,
        };
        let combine = match req.cross_series {
            None => None,
            Some(c) => {
                let by = c
                    .group_by
                    .iter()
                    .enumerate()
                    .map(|(i, &p)| convert::key_part(p, &format!("cross_series.group_by[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                let agg = pb::Aggregator::try_from(c.aggregator).map_err(|_| {
                    RequestError::invalid(
                        "cross_series.aggregator",
                        format!("unknown aggregator {}", c.aggregator),
                    )
                })?;
                match agg {
                    pb::Aggregator::Unspecified if by.is_empty() => None,
                    pb::Aggregator::Unspecified => {
                        return Err(RequestError::invalid(
                            "cross_series.aggregator",
                            "is required when group_by is set",
                        ));
                    }
                    _ => Some(by),
                }
            }
        };
        Ok(FragmentSpec {
            selectors,
            start,
            end,
            step: req.step_ms,
            per_step,
            over_time,
            combine,
            max_series: self.cap(req.max_series, self.limits.max_series),
            max_samples: self.cap(req.max_samples, self.limits.max_samples),
            max_points: self.limits.max_points,
            deadline: Some(deadline),
            slice_cells: None,
        })
    }
}

fn over_time(o: &api::OverTime) -> Result<Option<OverTime>, RequestError> {
    use api::OverTimeFunction as F;
    use query_lang::WindowAgg as W;
    use query_lang::ops::{self, Delta};
    let f = F::try_from(o.function).map_err(|_| {
        RequestError::invalid(
            "over_time.function",
            format!("unknown function {}", o.function),
        )
    })?;
    let moving = |agg| {
        Some(OverTime::PerSeries(ops::OverTime::Moving {
            window: o.window_ms,
            agg,
        }))
    };
    let delta = |d| Some(OverTime::PerSeries(ops::OverTime::Delta(d)));
    Ok(match f {
        F::Unspecified => None,
        F::Rate => delta(Delta::Rate),
        F::Increase => delta(Delta::Increase),
        F::Derivative => delta(Delta::Derivative),
        F::Integral => Some(OverTime::Integral),
        F::MovingAvg => moving(W::Avg),
        F::MovingSum => moving(W::Sum),
        F::MovingMin => moving(W::Min),
        F::MovingMax => moving(W::Max),
        F::MovingCount => moving(W::Count),
    })
}

/// Most bytes of rejections sent in a status trailer: HTTP/2 peers refuse
/// header lists over 16 KiB by default, which would break the connection.
const MAX_TRAILER_REJECTION_BYTES: usize = 8 * 1024;

/// `response` with as many of its first rejections as fit the trailer.
fn for_trailer(mut response: api::WriteResponse) -> api::WriteResponse {
    let mut bytes = 0usize;
    let keep = response
        .rejections
        .iter()
        .take_while(|r| {
            bytes += prost::Message::encoded_len(*r) + 3;
            bytes <= MAX_TRAILER_REJECTION_BYTES
        })
        .count();
    if keep < response.rejections.len() {
        response.rejections.truncate(keep);
        response.rejections_truncated = true;
    }
    response
}

/// Why a series key is refused, if it is.
fn check_key(key: &pb::SeriesKey) -> Option<(pb::RejectReason, String)> {
    for (part, name) in [
        ("service", &key.service),
        ("source", &key.source),
        ("metric", &key.metric),
    ] {
        if name.is_empty() {
            return Some((pb::RejectReason::InvalidName, format!("{part} is empty")));
        }
        if name.len() > MAX_NAME_LEN {
            return Some((
                pb::RejectReason::NameTooLong,
                format!("{part} is {} bytes; at most {MAX_NAME_LEN}", name.len()),
            ));
        }
        if let Some((at, c)) = name.char_indices().find(|(_, c)| c.is_control()) {
            return Some((
                pb::RejectReason::InvalidName,
                format!("{part} has control character {c:?} at byte {at}"),
            ));
        }
    }
    if key.source == tsdb::ALL_SOURCES {
        return Some((
            pb::RejectReason::InvalidName,
            format!(
                "source {} is reserved for service aggregates",
                tsdb::ALL_SOURCES
            ),
        ));
    }
    None
}

/// `(service, source, metric)` with each part shortened for messages.
fn describe_key(key: &pb::SeriesKey) -> String {
    let short = |s: &str| {
        if s.len() <= 64 {
            format!("{s:?}")
        } else {
            let mut end = 64;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            format!("{:?}...", &s[..end])
        }
    };
    format!(
        "({}, {}, {})",
        short(&key.service),
        short(&key.source),
        short(&key.metric)
    )
}

/// Parses a `grpc-timeout` header value: digits and a unit (H M S m u n).
fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

type Chunks<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Storage for StorageService {
    async fn write(
        &self,
        request: Request<api::WriteRequest>,
    ) -> Result<Response<api::WriteResponse>, Status> {
        self.metrics
            .write_bytes
            .add(prost::Message::encoded_len(request.get_ref()) as u64);
        match self.do_write(request.into_inner()).await {
            Ok(r) => Ok(Response::new(r)),
            Err(e) => {
                self.metrics.failed("write", &e);
                if !matches!(e, RequestError::Rejected { .. }) {
                    tracing::warn!(error = %e, "write refused");
                }
                Err(e.into())
            }
        }
    }

    type ReadStream = Chunks<api::ReadResponse>;

    async fn read(
        &self,
        request: Request<api::ReadRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let deadline = self.deadline(&request);
        let req = request.into_inner();
        let prepared = async {
            let sel = convert::selector(req.matcher.as_ref(), "matcher")?;
            let (t0, t1) = convert::range(req.range.as_ref(), "range")?;
            let max_series = self.cap(req.max_series, self.limits.max_series);
            // Past the limit only the count is needed.
            let first = usize::try_from(max_series.saturating_add(1)).unwrap_or(usize::MAX);
            let (keys, total) = self.backend.select_first(sel, t0, t1, first).await?;
            if total > max_series {
                return Err(RequestError::Limit {
                    what: "series selected",
                    found: total,
                    limit: max_series,
                    key: "max_series",
                    hint: "narrow the matcher or the time range",
                });
            }
            Ok((keys, t0, t1))
        }
        .await;
        let (keys, t0, t1) = prepared.map_err(|e| {
            self.metrics.failed("read", &e);
            Status::from(e)
        })?;
        let max_samples = self.cap(req.max_samples, self.limits.max_samples);
        let chunk = self.limits.chunk_cells;
        let backend = self.backend.clone();
        let metrics = self.metrics.clone();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let began = Instant::now();
            // Ok also when the client went away; an error is counted and sent last.
            let streamed: Result<(), RequestError> = async {
                let mut out = api::ReadResponse::default();
                let mut cells = 0usize;
                let mut touched = 0u64;
                for (i, key) in keys.iter().enumerate() {
                    let read =
                        tokio::time::timeout_at(deadline, backend.read_range(key.clone(), t0, t1));
                    let samples = read.await.map_err(|_| RequestError::Deadline {
                        elapsed_ms: began.elapsed().as_millis() as u64,
                        progress: format!("read {i} of {} series", keys.len()),
                    })??;
                    touched += samples.len() as u64;
                    if touched > max_samples {
                        return Err(RequestError::Limit {
                            what: "samples read",
                            found: touched,
                            limit: max_samples,
                            key: "max_samples",
                            hint: "narrow the matcher or the time range",
                        });
                    }
                    metrics.read_series.incr();
                    metrics.read_samples.add(samples.len() as u64);
                    let pb_key = convert::key_to_pb(key);
                    let mut rest = &samples[..];
                    loop {
                        let take = rest.len().min(chunk.saturating_sub(cells).max(1));
                        let (now, later) = rest.split_at(take);
                        out.series.push(pb::Series {
                            key: Some(pb_key.clone()),
                            samples: now
                                .iter()
                                .map(|s| pb::Sample {
                                    timestamp_ms: s.ts,
                                    value: s.value,
                                })
                                .collect(),
                        });
                        cells += take;
                        rest = later;
                        if cells >= chunk {
                            if tx.send(Ok(std::mem::take(&mut out))).await.is_err() {
                                return Ok(());
                            }
                            cells = 0;
                        }
                        if rest.is_empty() {
                            break;
                        }
                    }
                }
                if !out.series.is_empty() {
                    let _ = tx.send(Ok(out)).await;
                }
                Ok(())
            }
            .await;
            if let Err(e) = streamed {
                metrics.failed("read", &e);
                let _ = tx.send(Err(e.into())).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn index(
        &self,
        request: Request<api::IndexRequest>,
    ) -> Result<Response<api::IndexResponse>, Status> {
        self.do_index(request.into_inner())
            .await
            .map(Response::new)
            .map_err(|e| {
                self.metrics.failed("index", &e);
                e.into()
            })
    }

    type ExecuteFragmentStream = Chunks<api::ExecuteFragmentResponse>;

    async fn execute_fragment(
        &self,
        request: Request<api::ExecuteFragmentRequest>,
    ) -> Result<Response<Self::ExecuteFragmentStream>, Status> {
        let began = Instant::now();
        let deadline = self.deadline(&request);
        self.metrics.fragments.incr();
        let result = match self.fragment_spec(request.into_inner(), deadline) {
            Ok(spec) => fragment::execute(self.backend.as_ref(), spec).await,
            Err(e) => Err(e),
        };
        let answer = result.map_err(|e| {
            self.metrics.failed("execute_fragment", &e);
            if matches!(
                e,
                RequestError::Deadline { .. } | RequestError::Limit { .. }
            ) {
                tracing::info!(error = %e, "fragment stopped");
            }
            Status::from(e)
        })?;
        let m = &self.metrics;
        m.fragment_latency_ms
            .add(began.elapsed().as_millis() as u64);
        m.fragment_series.add(answer.series);
        m.fragment_samples.add(answer.samples);
        let chunks = chunk_answer(answer, self.limits.chunk_cells);
        Ok(Response::new(Box::pin(tokio_stream::iter(
            chunks.into_iter().map(Ok),
        ))))
    }

    async fn epochs(
        &self,
        request: Request<api::EpochsRequest>,
    ) -> Result<Response<api::EpochsResponse>, Status> {
        self.do_epochs(request.into_inner())
            .await
            .map(Response::new)
            .map_err(|e| {
                self.metrics.failed("epochs", &e);
                e.into()
            })
    }

    type WatchEpochsStream = Chunks<api::EpochsUpdate>;

    async fn watch_epochs(
        &self,
        _request: Request<api::WatchEpochsRequest>,
    ) -> Result<Response<Self::WatchEpochsStream>, Status> {
        // Subscribe before the snapshot: a bump in between arrives twice, harmlessly.
        let mut bumps = self.bumps.subscribe();
        let Some(table) = self.backend.epoch_table() else {
            return Err(Status::unimplemented(format!(
                "the {} backend shares epochs with other storage-frontends: ask Epochs per query",
                self.backend.kind()
            )));
        };
        let (tx, rx) = mpsc::channel(16);
        let backend = self.backend.clone();
        let shutdown = self.shutdown.clone();
        self.metrics.stats.counter("epochs/watches").incr();
        tokio::spawn(async move {
            let update = |snapshot: bool, epochs: Vec<api::ServiceDayEpoch>| api::EpochsUpdate {
                snapshot,
                epochs,
                now_ms: backend.now_ms(),
                ooo_window_ms: backend.ooo_window_ms(),
            };
            let first = update(true, table.into_iter().map(epoch_pb).collect());
            if tx.send(Ok(first)).await.is_ok() {
                loop {
                    let next = tokio::select! {
                        _ = shutdown.cancelled() => break,
                        next = tokio::time::timeout(WATCH_HEARTBEAT, bumps.recv()) => next,
                    };
                    let msg = match next {
                        Err(_) => Ok(update(false, Vec::new())),
                        Ok(Ok(b)) => Ok(update(false, b.as_ref().clone())),
                        Ok(Err(broadcast::error::RecvError::Lagged(n))) => Err(Status::aborted(
                            format!("epoch watcher fell {n} bumps behind: watch again"),
                        )),
                        Ok(Err(broadcast::error::RecvError::Closed)) => break,
                    };
                    let end = msg.is_err();
                    if tx.send(msg).await.is_err() || end {
                        break;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Splits an answer into messages of at most `chunk` cells; a long group
/// continues in the next message under the same key; the last carries the stats.
fn chunk_answer(answer: fragment::Answer, chunk: usize) -> Vec<api::ExecuteFragmentResponse> {
    let mut chunks = Vec::new();
    let mut cur = api::ExecuteFragmentResponse::default();
    let mut cells = 0usize;
    for (key, points) in &answer.groups {
        let pb_key = convert::key_to_pb(key);
        let mut rest = &points[..];
        while !rest.is_empty() {
            let take = rest.len().min(chunk - cells);
            let (now, later) = rest.split_at(take);
            cur.groups.push(api::FragmentGroup {
                key: Some(pb_key.clone()),
                cells: now.iter().map(|(t, p)| convert::cell(*t, p)).collect(),
            });
            cells += take;
            rest = later;
            if cells == chunk {
                chunks.push(std::mem::take(&mut cur));
                cells = 0;
            }
        }
    }
    cur.stats = Some(api::FragmentStats {
        series_touched: answer.series,
        samples_touched: answer.samples,
        resolution_ms: answer.resolution_ms,
    });
    chunks.push(cur);
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsdb::Partial;

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("m"), None);
        assert_eq!(parse_grpc_timeout(""), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
        assert_eq!(parse_grpc_timeout("5x"), None);
    }

    #[test]
    fn keys_are_checked_part_by_part() {
        let k = |a: &str, b: &str, c: &str| pb::SeriesKey {
            service: a.into(),
            source: b.into(),
            metric: c.into(),
        };
        assert!(check_key(&k("web", "h1", "cpu")).is_none());
        let (r, d) = check_key(&k("web", "h1", "")).unwrap();
        assert_eq!(r, pb::RejectReason::InvalidName);
        assert_eq!(d, "metric is empty");
        let (r, d) = check_key(&k("web", &"x".repeat(2000), "m")).unwrap();
        assert_eq!(r, pb::RejectReason::NameTooLong);
        assert!(d.contains("source is 2000 bytes"), "{d}");
        let (_, d) = check_key(&k("we\u{7}b", "h", "m")).unwrap();
        assert!(d.contains("byte 2"), "{d}");
        let (_, d) = check_key(&k("web", "*all*", "m")).unwrap();
        assert!(d.contains("reserved"), "{d}");
    }

    #[test]
    fn answers_split_into_bounded_chunks_in_key_order() {
        let p = Partial::of(1.0, 0);
        let answer = fragment::Answer {
            groups: vec![
                (
                    SeriesKey::new("a", "", ""),
                    (0..5).map(|t| (t, p)).collect(),
                ),
                (
                    SeriesKey::new("b", "", ""),
                    (0..3).map(|t| (t, p)).collect(),
                ),
            ],
            series: 2,
            samples: 8,
            resolution_ms: 0,
        };
        let chunks = chunk_answer(answer, 3);
        let sizes: Vec<Vec<(String, usize)>> = chunks
            .iter()
            .map(|c| {
                c.groups
                    .iter()
                    .map(|g| (g.key.clone().unwrap().service, g.cells.len()))
                    .collect()
            })
            .collect();
        assert_eq!(
            sizes,
            vec![
                vec![("a".into(), 3)],
                vec![("a".into(), 2), ("b".into(), 1)],
                vec![("b".into(), 2)],
            ]
        );
        assert!(chunks.last().unwrap().stats.is_some());
        assert!(chunks[..2].iter().all(|c| c.stats.is_none()));
    }
}
