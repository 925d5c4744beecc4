//! Clients of the storage zones: a fragment runs on every storage-frontend of a zone in
//! parallel and their partial cells merge; name-index totals and backfill epochs come
//! the same way. Protobuf types stop here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;

use futures::future::join_all;
use proto::common as pb;
use proto::storage::{self as api, storage_client::StorageClient};
use query_lang::WindowAgg;
use query_lang::ops::{Delta, OverTime};
use query_lang::{AggOp, KeyPart, Matcher, Selector, SeriesKey, StepAgg};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::config::ZoneConfig;
use crate::epochs::EpochCopy;

/// A mergeable summary of the values of one group in one step (as `PartialCell`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    /// Values folded in.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// Their minimum.
    pub min: f64,
    /// Their maximum.
    pub max: f64,
    /// The value with the latest timestamp.
    pub last: f64,
    /// Its timestamp.
    pub last_ts: i64,
}

impl Cell {
    /// Folds `o` in; commutative and associative, like storage's own merge.
    pub fn merge(&mut self, o: &Cell) {
        if o.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *o;
            return;
        }
        self.count += o.count;
        self.sum += o.sum;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        if o.last_ts > self.last_ts
            || (o.last_ts == self.last_ts && o.last.to_bits() > self.last.to_bits())
        {
            self.last = o.last;
            self.last_ts = o.last_ts;
        }
    }
}

/// Cells of one group, ascending by time, one per time.
pub type Cells = Vec<(i64, Cell)>;

/// Groups by key, each with its cells.
pub type Groups = BTreeMap<SeriesKey, Cells>;

/// Puts `cells` in time order with one cell per time (equal times merge, in the
/// order they came).
pub fn normalise_cells(mut cells: Cells) -> Cells {
    if cells.is_sorted_by(|a, b| a.0 < b.0) {
        return cells;
    }
    cells.sort_by_key(|c| c.0);
    cells.dedup_by(|later, earlier| {
        let same = later.0 == earlier.0;
        if same {
            earlier.1.merge(&later.1);
        }
        same
    });
    cells
}

/// Merges `from` into `into` (both ascending, one cell per time): equal times
/// merge, `into`'s cell first; cells that follow `into`'s last are appended.
pub fn merge_cells(into: &mut Cells, from: Cells) {
    match (into.last(), from.first()) {
        (_, None) => return,
        (None, _) => {
            *into = from;
            return;
        }
        (Some(a), Some(b)) if a.0 < b.0 => {
            into.extend(from);
            return;
        }
        _ => {}
    }
    let mut out = Vec::with_capacity(into.len() + from.len());
    let mut a = std::mem::take(into).into_iter().peekable();
    let mut b = from.into_iter().peekable();
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x.0 == y.0 => {
                let (t, mut c) = a.next().expect("peeked");
                c.merge(&b.next().expect("peeked").1);
                (t, c)
            }
            (Some(x), Some(y)) if x.0 < y.0 => a.next().expect("peeked"),
            (Some(_), Some(_)) | (None, Some(_)) => b.next().expect("peeked"),
            (Some(_), None) => a.next().expect("peeked"),
            (None, None) => break,
        };
        out.push(next);
    }
    *into = out;
}

/// Adds cells of group `key` in any order to `into` (see [`normalise_cells`] and
/// [`merge_cells`]).
pub fn add_cells(into: &mut Groups, key: SeriesKey, cells: Cells) {
    merge_cells(into.entry(key).or_default(), normalise_cells(cells));
}

/// Adds `cells` (ascending, one cell per time) under `key`, copying what it adds and
/// nothing else: appended when they follow the group's last cell, as spans in time
/// order do; equal times merge.
pub fn add_sorted_cells(into: &mut Groups, key: &SeriesKey, cells: &[(i64, Cell)]) {
    match into.get_mut(key) {
        None => {
            into.insert(key.clone(), cells.to_vec());
        }
        Some(have) => match (have.last(), cells.first()) {
            (Some(a), Some(b)) if a.0 < b.0 => have.extend_from_slice(cells),
            _ => merge_cells(have, cells.to_vec()),
        },
    }
}

/// Merges `from` into `into`.
pub fn merge_groups(into: &mut Groups, from: Groups) {
    if into.is_empty() {
        *into = from;
        return;
    }
    for (k, cells) in from {
        merge_cells(into.entry(k).or_default(), cells);
    }
}

/// What storage computes for one fragment: the selection, the per-step aggregator, an
/// over-time function and whether series combine (a filter is applied by the
/// federator, so its fragments keep series apart).
#[derive(Debug, Clone)]
pub struct StorageFragment {
    /// Which series.
    pub selector: Selector,
    /// Per-series value of a step.
    pub per_step: StepAgg,
    /// Function of each series' step values (a delta, a moving window), which
    /// storage reads from before the range as far as it needs.
    pub over_time: Option<OverTime>,
    /// Aggregation across series done in storage.
    pub combine: Option<(AggOp, Vec<KeyPart>)>,
}

impl StorageFragment {
    /// Normalised text: cache key material and explain output.
    pub fn describe(&self) -> String {
        let mut s = format!("{} step={}", self.selector, self.per_step.name());
        if let Some(d) = self.over_time {
            s.push_str(&format!(" over_time={}", d.describe()));
        }
        if let Some((op, by)) = &self.combine {
            s.push_str(&format!(" combine={}", op.describe()));
            if !by.is_empty() {
                let parts: Vec<&str> = by.iter().map(|p| p.name()).collect();
                s.push_str(&format!(" by ({})", parts.join(", ")));
            }
        }
        s
    }

    /// How far before a step value's own step storage reads (ms): what an
    /// over-time function needs.
    pub fn lookback(&self, step: i64) -> i64 {
        self.over_time.map_or(0, |d| d.lookback(step))
    }

    /// Whether the selection can match nothing (a role without members).
    pub fn selects_nothing(&self) -> bool {
        [
            &self.selector.service,
            &self.selector.source,
            &self.selector.metric,
        ]
        .iter()
        .any(|m| matches!(m, Matcher::OneOf(s) if s.is_empty()))
    }

    fn matcher(&self) -> pb::Matcher {
        pb::Matcher {
            service: pattern(&self.selector.service),
            source: pattern(&self.selector.source),
            metric: pattern(&self.selector.metric),
        }
    }
}

/// The wire form of one compiled matcher; `None` matches everything.
pub fn pattern(m: &Matcher) -> Option<pb::Pattern> {
    use pb::pattern::Kind;
    let kind = match m {
        Matcher::Any => return None,
        Matcher::Literal(l) => Kind::Exact(l.clone()),
        Matcher::Glob(g, _) => Kind::Glob(g.clone()),
        Matcher::Regex(r, _) => Kind::Regex(r.clone()),
        Matcher::OneOf(s) => Kind::AnyOf(pb::pattern::Names {
            names: s.iter().cloned().collect(),
        }),
    };
    Some(pb::Pattern { kind: Some(kind) })
}

fn aggregator(a: StepAgg) -> pb::Aggregator {
    match a {
        StepAgg::Last => pb::Aggregator::Last,
        StepAgg::Sum => pb::Aggregator::Sum,
        StepAgg::Avg => pb::Aggregator::Avg,
        StepAgg::Min => pb::Aggregator::Min,
        StepAgg::Max => pb::Aggregator::Max,
        StepAgg::Count => pb::Aggregator::Count,
    }
}

fn over_time(f: OverTime) -> api::OverTime {
    use api::OverTimeFunction as F;
    let (function, window_ms) = match f {
        OverTime::Delta(Delta::Rate) => (F::Rate, 0),
        OverTime::Delta(Delta::Increase) => (F::Increase, 0),
        OverTime::Delta(Delta::Derivative) => (F::Derivative, 0),
        OverTime::Moving { window, agg } => {
            let function = match agg {
                WindowAgg::Sum => F::MovingSum,
                WindowAgg::Avg => F::MovingAvg,
                WindowAgg::Min => F::MovingMin,
                WindowAgg::Max => F::MovingMax,
                WindowAgg::Count => F::MovingCount,
            };
            (function, window)
        }
    };
    api::OverTime {
        function: function as i32,
        window_ms,
    }
}

fn cross_aggregator(op: AggOp) -> pb::Aggregator {
    match op {
        AggOp::Sum => pb::Aggregator::Sum,
        AggOp::Avg => pb::Aggregator::Avg,
        AggOp::Min => pb::Aggregator::Min,
        AggOp::Max => pb::Aggregator::Max,
        AggOp::Count => pb::Aggregator::Count,
        // Not mergeable: never pushed down; ask for the cells and finish as a sum.
        AggOp::Percentile(_) | AggOp::Topk(_) | AggOp::Bottomk(_) => pb::Aggregator::Sum,
    }
}

fn key_part(p: KeyPart) -> pb::KeyPart {
    match p {
        KeyPart::Service => pb::KeyPart::Service,
        KeyPart::Source => pb::KeyPart::Source,
        KeyPart::Metric => pb::KeyPart::Metric,
    }
}

/// Why a zone (one of its storage-frontends) did not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{endpoint}: {reason}")]
pub struct ZoneFailure {
    /// The storage-frontend that failed.
    pub endpoint: String,
    /// Why, e.g. "deadline exceeded after 5s" or "unavailable: connection refused".
    pub reason: String,
    /// True when the deadline passed (rather than an error).
    pub deadline: bool,
    /// True when storage refused a limit (RESOURCE_EXHAUSTED): the query is too big.
    pub limit: bool,
}

impl ZoneFailure {
    fn of_status(endpoint: &str, s: &tonic::Status, began: Instant, until: Instant) -> Self {
        // The client's own timer answers CANCELLED ("Timeout expired") at the deadline.
        let deadline = s.code() == tonic::Code::DeadlineExceeded || Instant::now() >= until;
        let reason = if deadline {
            format!(
                "deadline exceeded after {}",
                humantime::format_duration(round_ms(began.elapsed()))
            )
        } else {
            let code = format!("{:?}", s.code()).to_lowercase();
            format!("{code}: {}", s.message())
        };
        ZoneFailure {
            endpoint: endpoint.to_string(),
            reason,
            deadline,
            limit: s.code() == tonic::Code::ResourceExhausted,
        }
    }

    fn deadline(endpoint: &str, began: Instant) -> Self {
        ZoneFailure {
            endpoint: endpoint.to_string(),
            reason: format!(
                "deadline exceeded after {}",
                humantime::format_duration(round_ms(began.elapsed()))
            ),
            deadline: true,
            limit: false,
        }
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// What running a fragment cost, summed over endpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    /// Series read.
    pub series: u64,
    /// Samples or rollup cells read.
    pub samples: u64,
    /// Resolution read (0: raw).
    pub resolution_ms: i64,
}

/// Backfill epochs of one zone: summed over its endpoints per (service, day start).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Epochs {
    /// (service, day start ms) -> epoch.
    pub epochs: BTreeMap<(String, i64), u64>,
    /// Spans ending at or before this are immutable (the smallest over endpoints).
    pub mutable_after_ms: i64,
}

impl Epochs {
    /// Nothing known yet: the identity of [`Epochs::add`].
    pub fn none() -> Self {
        Epochs {
            epochs: BTreeMap::new(),
            mutable_after_ms: i64::MAX,
        }
    }

    /// Folds in one endpoint's epochs: a zone's epoch of a (service, day) is the sum
    /// over its endpoints, and it is immutable only before every endpoint's bound.
    pub fn add(
        &mut self,
        mutable_after_ms: i64,
        epochs: impl IntoIterator<Item = ((String, i64), u64)>,
    ) {
        self.mutable_after_ms = self.mutable_after_ms.min(mutable_after_ms);
        for (key, e) in epochs {
            *self.epochs.entry(key).or_default() += e;
        }
    }
}

/// The clients of a zone's storage-frontends, with their watched epoch tables.
type Clients = Vec<(String, StorageClient<Channel>, Arc<EpochCopy>)>;

/// One storage zone. Clones share the endpoints, which a server-set watch may change.
#[derive(Debug, Clone)]
pub struct Zone {
    /// Its name.
    pub name: String,
    endpoints: Arc<RwLock<Arc<Clients>>>,
    config: ZoneConfig,
}

fn client(url: &str) -> Result<StorageClient<Channel>, tonic::transport::Error> {
    let channel = Endpoint::from_shared(url.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .connect_lazy();
    Ok(StorageClient::new(channel).max_decoding_message_size(usize::MAX))
}

/// A zone endpoint URL that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("zone {zone}: endpoint {endpoint:?} is not a URL: {reason}")]
pub struct BadEndpoint {
    zone: String,
    endpoint: String,
    reason: String,
}

impl Zone {
    /// Channels are connected lazily: a zone that is down at start is reported per query.
    pub fn new(config: &ZoneConfig) -> Result<Self, BadEndpoint> {
        let mut endpoints = Vec::new();
        for e in &config.endpoints {
            let c = client(e).map_err(|err| BadEndpoint {
                zone: config.name.clone(),
                endpoint: e.clone(),
                reason: err.to_string(),
            })?;
            endpoints.push((e.clone(), c, Arc::default()));
        }
        Ok(Zone {
            name: config.name.clone(),
            endpoints: Arc::new(RwLock::new(Arc::new(endpoints))),
            config: config.clone(),
        })
    }

    /// The ZooKeeper server set the zone follows, if any.
    pub fn serverset(&self) -> &str {
        &self.config.serverset
    }

    /// Replaces the endpoints (clients of URLs already known are kept); a URL that does
    /// not parse is skipped with a warning.
    pub fn set_endpoints(&self, urls: &[String]) {
        let old = self.clients();
        let mut next = Vec::new();
        for u in urls {
            if let Some((_, c, e)) = old.iter().find(|(o, _, _)| o == u) {
                next.push((u.clone(), c.clone(), e.clone()));
                continue;
            }
            match client(u) {
                Ok(c) => next.push((u.clone(), c, Arc::default())),
                Err(e) => tracing::warn!(zone = %self.name, url = %u, error = %e, "member skipped"),
            }
        }
        *self.endpoints.write() = Arc::new(next);
    }

    fn clients(&self) -> Arc<Clients> {
        self.endpoints.read().clone()
    }

    /// The zone's endpoints now.
    pub fn endpoint_urls(&self) -> Vec<String> {
        self.clients().iter().map(|(u, _, _)| u.clone()).collect()
    }

    /// Sends `req` through `call` to every storage-frontend of the zone at once, each
    /// bounded by `deadline`, and returns their answers in endpoint order; the first
    /// endpoint that failed fails the zone.
    async fn unary_all<Req, Resp, F, Fut>(
        &self,
        req: Req,
        deadline: Instant,
        call: F,
    ) -> Result<Vec<Resp>, ZoneFailure>
    where
        Req: Clone,
        F: Fn(StorageClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let clients = self.clients();
        self.none_known(&clients)?;
        let calls = clients.iter().map(|(url, client, _)| {
            let began = Instant::now();
            let mut r = tonic::Request::new(req.clone());
            r.set_timeout(deadline.saturating_duration_since(began));
            let answer = call(client.clone(), r);
            async move {
                match tokio::time::timeout_at(deadline, answer).await {
                    Ok(Ok(resp)) => Ok(resp.into_inner()),
                    Ok(Err(s)) => Err(ZoneFailure::of_status(url, &s, began, deadline)),
                    Err(_) => Err(ZoneFailure::deadline(url, began)),
                }
            }
        });
        join_all(calls).await.into_iter().collect()
    }

    /// Fails when the zone knows no storage-frontend (an empty server set).
    fn none_known(&self, clients: &Clients) -> Result<(), ZoneFailure> {
        if clients.is_empty() {
            return Err(ZoneFailure {
                endpoint: format!("zone {}", self.name),
                reason: "no storage-frontend is known (its server set is empty)".into(),
                deadline: false,
                limit: false,
            });
        }
        Ok(())
    }

    /// What identifies the zone's data in cache keys: its name and its endpoints, so a
    /// zone pointed at other storage-frontends never reads the spans of the old ones.
    pub fn cache_identity(&self) -> String {
        let mut s = self.name.clone();
        for (url, _, _) in self.clients().iter() {
            s.push('\n');
            s.push_str(url);
        }
        s
    }

    /// Resolution of the zone's data, ms.
    pub fn resolution_ms(&self) -> i64 {
        self.config.resolution.as_millis() as i64
    }

    /// Whether the zone holds all of time (no `max_age` or `min_age`): its series'
    /// samples are not split with another zone by time.
    pub fn holds_all_time(&self) -> bool {
        self.config.max_age.is_zero() && self.config.min_age.is_zero()
    }

    /// `[lo, hi)`: the time the zone holds at `now_ms`.
    pub fn window(&self, now_ms: i64) -> (i64, i64) {
        let lo = if self.config.max_age.is_zero() {
            i64::MIN
        } else {
            now_ms.saturating_sub(self.config.max_age.as_millis() as i64)
        };
        let hi = if self.config.min_age.is_zero() {
            i64::MAX
        } else {
            now_ms.saturating_sub(self.config.min_age.as_millis() as i64)
        };
        (lo, hi)
    }

    /// Runs `f` over the grid `[start, end)` with `step` on every endpoint, merged.
    pub async fn execute(
        &self,
        f: &StorageFragment,
        start: i64,
        end: i64,
        step: i64,
        deadline: Instant,
    ) -> Result<(Groups, Cost), ZoneFailure> {
        let req = api::ExecuteFragmentRequest {
            matchers: vec![f.matcher()],
            range: Some(pb::TimeRange {
                start_ms: start,
                end_ms: end,
            }),
            step_ms: step,
            step_aggregator: aggregator(f.per_step) as i32,
            over_time: f.over_time.map(over_time),
            cross_series: f.combine.as_ref().map(|(op, by)| api::CrossSeries {
                aggregator: cross_aggregator(*op) as i32,
                group_by: by.iter().map(|p| key_part(*p) as i32).collect(),
            }),
            max_series: 0,
            max_samples: 0,
        };
        let by: Option<Vec<KeyPart>> = f.combine.as_ref().map(|(_, by)| by.clone());
        let clients = self.clients();
        self.none_known(&clients)?;
        let calls = clients.iter().map(|(url, client, _)| {
            let mut client = client.clone();
            let req = req.clone();
            let by = by.clone();
            async move {
                let began = Instant::now();
                let work = async {
                    let mut r = tonic::Request::new(req);
                    r.set_timeout(deadline.saturating_duration_since(Instant::now()));
                    let mut stream = client
                        .execute_fragment(r)
                        .await
                        .map_err(|s| ZoneFailure::of_status(url, &s, began, deadline))?
                        .into_inner();
                    let mut groups = Groups::new();
                    let mut cost = Cost::default();
                    while let Some(chunk) = stream
                        .message()
                        .await
                        .map_err(|s| ZoneFailure::of_status(url, &s, began, deadline))?
                    {
                        for g in chunk.groups {
                            let key = group_key(g.key.unwrap_or_default(), by.as_deref());
                            let cells: Cells = g
                                .cells
                                .into_iter()
                                .map(|c| {
                                    let cell = Cell {
                                        count: c.count,
                                        sum: c.sum,
                                        min: c.min,
                                        max: c.max,
                                        last: c.last,
                                        last_ts: c.last_timestamp_ms,
                                    };
                                    (c.timestamp_ms, cell)
                                })
                                .collect();
                            add_cells(&mut groups, key, cells);
                        }
                        if let Some(s) = chunk.stats {
                            cost.series += s.series_touched;
                            cost.samples += s.samples_touched;
                            cost.resolution_ms = cost.resolution_ms.max(s.resolution_ms);
                        }
                    }
                    Ok((groups, cost))
                };
                match tokio::time::timeout_at(deadline, work).await {
                    Ok(r) => r,
                    Err(_) => Err(ZoneFailure::deadline(url, began)),
                }
            }
        });
        let mut all = Groups::new();
        let mut total = Cost::default();
        for r in join_all(calls).await {
            let (g, c) = r?;
            merge_groups(&mut all, g);
            total.series += c.series;
            total.samples += c.samples;
            total.resolution_ms = total.resolution_ms.max(c.resolution_ms);
        }
        Ok((all, total))
    }

    /// Total series `f` selects over `[start, end)`, summed over endpoints.
    pub async fn series_total(
        &self,
        f: &StorageFragment,
        start: i64,
        end: i64,
        deadline: Instant,
    ) -> Result<u64, ZoneFailure> {
        let req = api::IndexRequest {
            kind: api::IndexKind::Series as i32,
            matcher: Some(f.matcher()),
            range: Some(pb::TimeRange {
                start_ms: start,
                end_ms: end,
            }),
            limit: 1,
        };
        let answers = self
            .unary_all(req, deadline, |mut c, r| async move { c.index(r).await })
            .await?;
        Ok(answers
            .iter()
            .fold(0u64, |total, a| total.saturating_add(a.total)))
    }

    /// Names from the index: `kind` of the series `matcher` selects over `[start, end)`.
    pub async fn index(
        &self,
        kind: api::IndexKind,
        selector: &Selector,
        start: i64,
        end: i64,
        limit: u32,
        deadline: Instant,
    ) -> Result<(Vec<String>, Vec<SeriesKey>, u64), ZoneFailure> {
        let req = api::IndexRequest {
            kind: kind as i32,
            matcher: Some(pb::Matcher {
                service: pattern(&selector.service),
                source: pattern(&selector.source),
                metric: pattern(&selector.metric),
            }),
            range: Some(pb::TimeRange {
                start_ms: start,
                end_ms: end,
            }),
            limit,
        };
        let answers = self
            .unary_all(req, deadline, |mut c, r| async move { c.index(r).await })
            .await?;
        let mut names = std::collections::BTreeSet::new();
        let mut series = std::collections::BTreeSet::new();
        let mut total = 0u64;
        for resp in answers {
            names.extend(resp.names);
            series.extend(
                resp.series
                    .into_iter()
                    .map(|k| SeriesKey::new(&k.service, &k.source, &k.metric)),
            );
            total = total.saturating_add(resp.total);
        }
        Ok((
            names.into_iter().collect(),
            series.into_iter().collect(),
            total,
        ))
    }

    /// Epoch changes the watches of the zone's endpoints brought so far.
    pub fn bumps_heard(&self) -> u64 {
        self.clients().iter().map(|(_, _, c)| c.bumps_heard()).sum()
    }

    /// Backfill epochs as the watched copies of every endpoint know them, when all
    /// of them are healthy (see [`crate::epochs`]); `None` means ask [`Zone::epochs`].
    pub fn watched_epochs(&self, service: &Matcher, start: i64, end: i64) -> Option<Epochs> {
        let clients = self.clients();
        // Every copy is asked, so that every endpoint's watch starts.
        let known: Vec<_> = clients
            .iter()
            .map(|(url, client, copy)| copy.known(url, client, service, start, end))
            .collect();
        if known.is_empty() {
            return None;
        }
        let mut out = Epochs::none();
        for k in known {
            let k = k?;
            out.add(k.mutable_after_ms, k.epochs);
        }
        Some(out)
    }

    /// Backfill epochs of the services `service` matches over `[start, end)`.
    pub async fn epochs(
        &self,
        service: &Matcher,
        start: i64,
        end: i64,
        deadline: Instant,
    ) -> Result<Epochs, ZoneFailure> {
        let req = api::EpochsRequest {
            service: pattern(service),
            range: Some(pb::TimeRange {
                start_ms: start,
                end_ms: end,
            }),
        };
        let answers = self
            .unary_all(req, deadline, |mut c, r| async move { c.epochs(r).await })
            .await?;
        let mut out = Epochs::none();
        for resp in answers {
            out.add(
                resp.mutable_after_ms,
                resp.epochs
                    .into_iter()
                    .map(|e| ((e.service, e.day_start_ms), e.epoch)),
            );
        }
        Ok(out)
    }
}

/// The group key storage sent: the full key when series stay apart, else only the
/// grouped parts (the others removed).
fn group_key(k: pb::SeriesKey, by: Option<&[KeyPart]>) -> SeriesKey {
    match by {
        None => SeriesKey {
            service: Some(k.service),
            source: Some(k.source),
            metric: Some(k.metric),
        },
        Some(by) => SeriesKey {
            service: by.contains(&KeyPart::Service).then_some(k.service),
            source: by.contains(&KeyPart::Source).then_some(k.source),
            metric: by.contains(&KeyPart::Metric).then_some(k.metric),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(v: f64) -> Cell {
        Cell {
            count: 1,
            sum: v,
            min: v,
            max: v,
            last: v,
            last_ts: v as i64,
        }
    }

    /// Merging cells agrees with folding them into a map, whatever their order.
    #[test]
    fn merged_cells_match_a_map() {
        let mut seed = 0x9e37_79b9_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..500 {
            let mut into: Cells = Vec::new();
            let mut model: BTreeMap<i64, Cell> = BTreeMap::new();
            for _ in 0..(next() % 5) {
                let part: Cells = (0..next() % 12)
                    .map(|_| {
                        let t = (next() % 30) as i64;
                        (t, cell((next() % 100) as f64))
                    })
                    .collect();
                for (t, c) in &part {
                    model.entry(*t).and_modify(|x| x.merge(c)).or_insert(*c);
                }
                merge_cells(&mut into, normalise_cells(part));
            }
            let want: Cells = model.into_iter().collect();
            assert_eq!(into, want);
        }
    }
}
