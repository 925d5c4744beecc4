//! Routing to storage: each series goes to one storage-frontend by a consistent hash
//! of its key, through a bounded in-memory queue, in batches, with retries (backoff
//! and jitter), then to a bounded on-disk spill while storage is down. Submitting
//! never waits for storage; only a full spill drops samples, and every dropped
//! sample is counted.
//!
//! ```text
//!  submit(series) --hash ring--> shard i: memory queue --shipper--> Sink::write
//!                                   | full                  | retries exhausted
//!                                   v                       v
//!                                  spill (disk) <-----------+ ; replayed when storage answers
//! ```

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::StreamExt;
use parking_lot::{Mutex, RwLock};
use prost::Message;
use service_kit::Shutdown;
use stats::{Counter, Gauge, StatsReceiver};
use tokio::sync::Notify;

use crate::config::RoutingConfig;
use crate::grpc;
use crate::model::{Series, SeriesKey, fnv1a, sample_count};
use crate::sink::{Sink, SinkError, WriteOutcome};
use crate::spill::{Spill, SpillError};

const VNODES: usize = 64;

/// A spilled batch that fails this many replays in a row while live writes to the
/// same storage succeed is moved to the end of the spill.
const POISON_AFTER: u32 = 3;

/// Writes of one large push in flight at once per storage-frontend.
const WRITES_IN_FLIGHT: usize = 4;

fn mix(mut x: u64) -> u64 {
    // splitmix64's finaliser: FNV-1a of short strings needs its high bits spread.
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[derive(Debug)]
struct ShardStats {
    sent_samples: Counter,
    batches: Counter,
    retries: Counter,
    write_failures: Counter,
    spilled_samples: Counter,
    replayed_samples: Counter,
    dropped_samples: Counter,
    rejected_samples: Counter,
    _gauges: Vec<Gauge>,
}

struct Shard {
    sink: Arc<dyn Sink>,
    cfg: RoutingConfig,
    queue: Mutex<VecDeque<Vec<Series>>>,
    queued: AtomicUsize,
    notify: Notify,
    spill: Spill,
    healthy: AtomicBool,
    /// Removed from the ring: hands what it holds on to the others.
    retired: AtomicBool,
    /// A live batch was stored since the last failed replay.
    live_ok: AtomicBool,
    /// The spill record that failed replay (segment, record) and how many times in
    /// a row while live writes succeeded.
    stuck: Mutex<(u64, usize, u32)>,
    /// Records of the oldest spill segment already replayed: (segment, count).
    replay_progress: Mutex<(u64, usize)>,
    stats: ShardStats,
}

/// Totals across every storage-frontend, for tests and the admin endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RouterTotals {
    /// Samples storage acknowledged.
    pub sent_samples: u64,
    /// Samples written to the spill.
    pub spilled_samples: u64,
    /// Samples replayed from the spill and acknowledged.
    pub replayed_samples: u64,
    /// Samples dropped because the spill was full (or failing).
    pub dropped_samples: u64,
    /// Samples storage refused as invalid.
    pub rejected_samples: u64,
    /// Samples waiting in memory.
    pub queued_samples: u64,
    /// Bytes waiting on disk.
    pub spill_bytes: u64,
}

/// The storage-frontends in force and the hash ring over them.
struct Ring {
    shards: Vec<Arc<Shard>>,
    points: Vec<(u64, usize)>,
}

impl Ring {
    fn build(shards: Vec<Arc<Shard>>) -> Self {
        let mut points = Vec::with_capacity(shards.len() * VNODES);
        for (i, shard) in shards.iter().enumerate() {
            for v in 0..VNODES {
                points.push((
                    mix(fnv1a(format!("{}#{v}", shard.sink.name()).as_bytes())),
                    i,
                ));
            }
        }
        points.sort_unstable();
        Self { shards, points }
    }

    fn shard_of(&self, key: &SeriesKey) -> usize {
        if self.points.is_empty() {
            return 0;
        }
        let h = mix(key.hash64());
        let i = self.points.partition_point(|(p, _)| *p < h);
        self.points[i % self.points.len()].1
    }
}

/// The router to every storage-frontend. The set of storage-frontends may change
/// while it runs ([`Router::set_sinks`]): a removed one's queue and spill are
/// routed again to the ones that remain.
pub struct Router {
    ring: RwLock<Arc<Ring>>,
    /// Removed storage-frontends, kept for their totals and while they hand on what
    /// they held.
    retired: Mutex<Vec<Arc<Shard>>>,
    cfg: RoutingConfig,
    spill_root: PathBuf,
    stats: StatsReceiver,
    /// Set by [`Router::start`]: where shippers of new storage-frontends run.
    running: Mutex<Option<(Shutdown, Weak<Router>)>>,
    shippers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("shards", &self.endpoints())
            .finish()
    }
}

fn dir_name(endpoint: &str) -> String {
    endpoint
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn make_shard(
    sink: Arc<dyn Sink>,
    cfg: &RoutingConfig,
    spill_root: &Path,
    stats: &StatsReceiver,
) -> Result<Arc<Shard>, SpillError> {
    let spill = Spill::open(&spill_root.join(dir_name(sink.name())), cfg.spill_max_bytes)?;
    let scope = stats.scope("routing").scope(&dir_name(sink.name()));
    Ok(Arc::new_cyclic(|weak: &Weak<Shard>| {
        let (w1, w2) = (weak.clone(), weak.clone());
        Shard {
            stats: ShardStats {
                sent_samples: scope.counter("sent_samples"),
                batches: scope.counter("batches"),
                retries: scope.counter("retries"),
                write_failures: scope.counter("write_failures"),
                spilled_samples: scope.counter("spilled_samples"),
                replayed_samples: scope.counter("replayed_samples"),
                dropped_samples: scope.counter("dropped_samples"),
                rejected_samples: scope.counter("rejected_samples"),
                _gauges: vec![
                    scope.gauge("queued_samples", move || {
                        w1.upgrade()
                            .map_or(0.0, |s| s.queued.load(Ordering::Relaxed) as f64)
                    }),
                    scope.gauge("spill_bytes", move || {
                        w2.upgrade().map_or(0.0, |s| s.spill.used_bytes() as f64)
                    }),
                ],
            },
            sink,
            cfg: cfg.clone(),
            queue: Mutex::new(VecDeque::new()),
            queued: AtomicUsize::new(0),
            notify: Notify::new(),
            spill,
            healthy: AtomicBool::new(true),
            retired: AtomicBool::new(false),
            live_ok: AtomicBool::new(false),
            stuck: Mutex::new((0, 0, 0)),
            replay_progress: Mutex::new((0, 0)),
        }
    }))
}

impl Router {
    /// A router over `sinks`, spilling under `spill_root/<endpoint>`.
    pub fn new(
        sinks: Vec<Arc<dyn Sink>>,
        cfg: &RoutingConfig,
        spill_root: &Path,
        stats: &StatsReceiver,
    ) -> Result<Self, SpillError> {
        let shards = sinks
            .into_iter()
            .map(|sink| make_shard(sink, cfg, spill_root, stats))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            ring: RwLock::new(Arc::new(Ring::build(shards))),
            retired: Mutex::new(Vec::new()),
            cfg: cfg.clone(),
            spill_root: spill_root.to_owned(),
            stats: stats.clone(),
            running: Mutex::new(None),
            shippers: Mutex::new(Vec::new()),
        })
    }

    fn ring(&self) -> Arc<Ring> {
        self.ring.read().clone()
    }

    /// The storage-frontends in force, by name.
    pub fn endpoints(&self) -> Vec<String> {
        self.ring()
            .shards
            .iter()
            .map(|s| s.sink.name().to_owned())
            .collect()
    }

    fn spawn_shipper(&self, shard: Arc<Shard>) {
        if let Some((shutdown, me)) = self.running.lock().clone() {
            let handle = tokio::spawn(ship(shard, me, shutdown));
            self.shippers.lock().push(handle);
        }
    }

    /// Starts one shipper task per storage-frontend; they stop (spilling what is
    /// still in memory) when `shutdown` fires. [`Router::stopped`] waits for them.
    pub fn start(self: &Arc<Self>, shutdown: &Shutdown) {
        *self.running.lock() = Some((shutdown.clone(), Arc::downgrade(self)));
        for shard in self.ring().shards.iter() {
            self.spawn_shipper(shard.clone());
        }
    }

    /// Waits until every shipper has stopped (after the shutdown given to `start`).
    pub async fn stopped(&self) {
        loop {
            let handles: Vec<_> = self.shippers.lock().drain(..).collect();
            if handles.is_empty() {
                return;
            }
            for h in handles {
                let _ = h.await;
            }
        }
    }

    /// Replaces the set of storage-frontends. Series move by the consistent hash
    /// (only those of added or removed ones); what a removed one still holds in
    /// memory or on disk is routed again. An empty set is ignored: samples keep
    /// going to the last known storage-frontends.
    pub fn set_sinks(&self, sinks: Vec<Arc<dyn Sink>>) -> Result<(), SpillError> {
        if sinks.is_empty() {
            tracing::warn!("no storage-frontends given; keeping the last known ones");
            return Ok(());
        }
        let current = self.ring();
        let mut shards = Vec::with_capacity(sinks.len());
        let mut started = Vec::new();
        for sink in sinks {
            let name = sink.name().to_owned();
            if let Some(s) = current.shards.iter().find(|s| s.sink.name() == name) {
                shards.push(s.clone());
                continue;
            }
            // Back before its shipper finished handing on: take it up again.
            let revived = {
                let mut retired = self.retired.lock();
                retired
                    .iter()
                    .position(|s| s.sink.name() == name)
                    .map(|i| retired.remove(i))
            };
            let shard = match revived {
                Some(s) => {
                    s.retired.store(false, Ordering::SeqCst);
                    s
                }
                None => {
                    let s = make_shard(sink, &self.cfg, &self.spill_root, &self.stats)?;
                    started.push(s.clone());
                    s
                }
            };
            shards.push(shard);
        }
        let removed: Vec<Arc<Shard>> = current
            .shards
            .iter()
            .filter(|s| !shards.iter().any(|n| Arc::ptr_eq(n, s)))
            .cloned()
            .collect();
        tracing::info!(
            storage = ?shards.iter().map(|s| s.sink.name()).collect::<Vec<_>>(),
            removed = removed.len(),
            "storage-frontends changed"
        );
        *self.ring.write() = Arc::new(Ring::build(shards));
        for s in removed {
            s.retired.store(true, Ordering::SeqCst);
            s.notify.notify_one();
            self.retired.lock().push(s);
        }
        for s in started {
            self.spawn_shipper(s);
        }
        Ok(())
    }

    /// The shard a series key routes to.
    pub fn shard_of(&self, key: &SeriesKey) -> usize {
        self.ring().shard_of(key)
    }

    /// Hands `series` to the shippers. Never waits for storage: past the memory
    /// bound the batch goes to the spill, past the spill bound it is dropped and counted.
    pub fn submit(&self, series: Vec<Series>) {
        let ring = self.ring();
        if ring.shards.is_empty() {
            return;
        }
        let mut parts: Vec<Vec<Series>> = (0..ring.shards.len()).map(|_| Vec::new()).collect();
        if ring.shards.len() == 1 {
            parts[0] = series;
        } else {
            for s in series {
                let i = ring.shard_of(&s.key);
                parts[i].push(s);
            }
        }
        for (shard, part) in ring.shards.iter().zip(parts) {
            if part.is_empty() {
                continue;
            }
            let n = sample_count(&part);
            let queued = shard.queued.load(Ordering::Relaxed);
            if queued + n <= shard.cfg.queue_max_samples {
                shard.queued.fetch_add(n, Ordering::Relaxed);
                shard.queue.lock().push_back(part);
                shard.notify.notify_one();
            } else {
                shard.spill_batch(&part);
            }
        }
    }

    /// Writes `series` now and waits for storage's answer (retrying within the
    /// configured attempts): the path of pushes, acknowledged only once stored.
    /// Rejection indices refer to positions in `series`.
    pub async fn write_now(&self, series: Vec<Series>) -> Result<WriteOutcome, SinkError> {
        let ring = self.ring();
        if ring.shards.is_empty() {
            return Ok(WriteOutcome::default());
        }
        let mut parts: Vec<(Vec<Series>, Vec<u32>)> = (0..ring.shards.len())
            .map(|_| (Vec::new(), Vec::new()))
            .collect();
        for (i, s) in series.into_iter().enumerate() {
            let shard = ring.shard_of(&s.key);
            parts[shard].0.push(s);
            parts[shard].1.push(i as u32);
        }
        let writes = ring
            .shards
            .iter()
            .zip(parts)
            .filter(|(_, (p, _))| !p.is_empty())
            .map(|(shard, (part, index))| async move {
                // Large pushes go as several Writes of at most batch_max_samples each,
                // a few in flight at once.
                let mut ranges = Vec::new();
                let mut at = 0;
                while at < part.len() {
                    let mut end = at;
                    let mut n = 0;
                    while end < part.len()
                        && (end == at || n + part[end].samples.len() <= shard.cfg.batch_max_samples)
                    {
                        n += part[end].samples.len();
                        end += 1;
                    }
                    ranges.push(at..end);
                    at = end;
                }
                let part = &part;
                let mut sent = futures::stream::iter(ranges)
                    .map(|r| async move {
                        let outcome = shard.send(&part[r.clone()], shard.cfg.retry_attempts).await;
                        (r.start, outcome)
                    })
                    .buffered(WRITES_IN_FLIGHT);
                let mut total = WriteOutcome::default();
                while let Some((start, outcome)) = sent.next().await {
                    let outcome = outcome?;
                    shard.stats.sent_samples.add(outcome.accepted);
                    total.accepted += outcome.accepted;
                    for mut r in outcome.rejections {
                        r.index += start as u32;
                        total.rejections.push(r);
                    }
                }
                Ok::<_, SinkError>((total, index))
            });
        let mut total = WriteOutcome::default();
        for result in futures::future::join_all(writes).await {
            let (outcome, index) = result?;
            total.accepted += outcome.accepted;
            for mut r in outcome.rejections {
                r.index = index.get(r.index as usize).copied().unwrap_or(r.index);
                total.rejections.push(r);
            }
        }
        total.rejections.sort_by_key(|r| (r.index, r.sample_index));
        Ok(total)
    }

    /// Totals across the storage-frontends (removed ones included).
    pub fn totals(&self) -> RouterTotals {
        let mut t = RouterTotals::default();
        let ring = self.ring();
        let retired = self.retired.lock().clone();
        for s in ring.shards.iter().chain(retired.iter()) {
            t.sent_samples += s.stats.sent_samples.get();
            t.spilled_samples += s.stats.spilled_samples.get();
            t.replayed_samples += s.stats.replayed_samples.get();
            t.dropped_samples += s.stats.dropped_samples.get();
            t.rejected_samples += s.stats.rejected_samples.get();
            t.queued_samples += s.queued.load(Ordering::Relaxed) as u64;
            t.spill_bytes += s.spill.used_bytes();
        }
        t
    }
}

impl Shard {
    fn spill_batch(&self, batch: &[Series]) {
        let n = sample_count(batch) as u64;
        let payload = grpc::write_request(batch).encode_to_vec();
        match self.spill.append(&payload) {
            Ok(()) => self.stats.spilled_samples.add(n),
            Err(e) => {
                self.stats.dropped_samples.add(n);
                tracing::error!(storage = self.sink.name(), samples = n, error = %e, "dropping samples: cannot spill");
            }
        }
    }

    fn pop_batch(&self) -> Option<Vec<Series>> {
        let mut q = self.queue.lock();
        let mut batch = q.pop_front()?;
        let mut n = sample_count(&batch);
        while let Some(next) = q.front() {
            let m = sample_count(next);
            if n + m > self.cfg.batch_max_samples {
                break;
            }
            n += m;
            batch.extend(q.pop_front().expect("front exists"));
        }
        drop(q);
        self.queued.fetch_sub(n, Ordering::Relaxed);
        Some(batch)
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.cfg.retry_base.saturating_mul(1 << attempt.min(16));
        let capped = base.min(self.cfg.retry_max);
        // Full jitter on the upper half: spreads retries of many collectors.
        let half = capped / 2;
        half + half.mul_f64(fastrand::f64())
    }

    /// Writes with up to `attempts` tries, backing off between them.
    async fn send(&self, batch: &[Series], attempts: u32) -> Result<WriteOutcome, SinkError> {
        let mut attempt = 0;
        loop {
            match self.sink.write(batch).await {
                Ok(outcome) => {
                    self.healthy.store(true, Ordering::Relaxed);
                    self.stats.batches.incr();
                    let rejected: u64 = outcome
                        .rejections
                        .iter()
                        .map(|r| match r.sample_index {
                            Some(_) => 1,
                            None => batch
                                .get(r.index as usize)
                                .map_or(0, |s| s.samples.len() as u64),
                        })
                        .sum();
                    self.stats.rejected_samples.add(rejected);
                    return Ok(outcome);
                }
                Err(e) if e.is_retryable() => {
                    self.stats.write_failures.incr();
                    self.healthy.store(false, Ordering::Relaxed);
                    attempt += 1;
                    if attempt >= attempts {
                        return Err(e);
                    }
                    self.stats.retries.incr();
                    tracing::debug!(storage = self.sink.name(), attempt, error = %e, "write failed; retrying");
                    tokio::time::sleep(self.backoff(attempt - 1)).await;
                }
                Err(e) => {
                    self.stats.write_failures.incr();
                    return Err(e);
                }
            }
        }
    }

    /// Replays the oldest spill segment from where it stopped; `false` when storage
    /// failed again.
    async fn replay(&self) -> bool {
        let (id, records) = match self.spill.oldest() {
            Ok(Some(seg)) => seg,
            Ok(None) => return true,
            Err(e) => {
                tracing::error!(storage = self.sink.name(), error = %e, "cannot read the spill");
                return false;
            }
        };
        let start = {
            let p = self.replay_progress.lock();
            if p.0 == id { p.1 } else { 0 }
        };
        for (i, record) in records.iter().enumerate().skip(start) {
            let batch = match proto::storage::WriteRequest::decode(record.as_slice()) {
                Ok(req) => grpc::series_from_write_request(req),
                Err(e) => {
                    tracing::error!(storage = self.sink.name(), segment = id, record = i, error = %e, "undecodable spill record skipped");
                    continue;
                }
            };
            let n = sample_count(&batch) as u64;
            match self.send(&batch, 1).await {
                Ok(outcome) => {
                    self.stats.replayed_samples.add(outcome.accepted);
                    self.stats.sent_samples.add(outcome.accepted);
                    *self.replay_progress.lock() = (id, i + 1);
                }
                Err(e) if e.is_retryable() => {
                    if !self.live_ok.swap(false, Ordering::SeqCst) {
                        // Storage is down: try again later from here.
                        return false;
                    }
                    // Storage takes other writes but not this one.
                    let failures = {
                        let mut st = self.stuck.lock();
                        if (st.0, st.1) == (id, i) {
                            st.2 += 1;
                        } else {
                            *st = (id, i, 1);
                        }
                        st.2
                    };
                    if failures < POISON_AFTER {
                        return false;
                    }
                    // Move it behind the rest so it does not hold everything up.
                    match self.spill.append(record) {
                        Ok(()) => {
                            tracing::warn!(storage = self.sink.name(), samples = n, error = %e, "a spilled batch keeps failing while other writes succeed; moved to the end of the spill")
                        }
                        Err(se) => {
                            self.stats.dropped_samples.add(n);
                            tracing::error!(storage = self.sink.name(), samples = n, error = %e, spill_error = %se, "dropping a spilled batch that keeps failing: cannot move it");
                        }
                    }
                    *self.stuck.lock() = (0, 0, 0);
                    *self.replay_progress.lock() = (id, i + 1);
                }
                Err(e) => {
                    self.stats.rejected_samples.add(n);
                    tracing::warn!(storage = self.sink.name(), samples = n, error = %e, "storage refused a spilled batch");
                    *self.replay_progress.lock() = (id, i + 1);
                }
            }
        }
        if let Err(e) = self.spill.remove(id) {
            tracing::error!(storage = self.sink.name(), error = %e, "cannot remove a replayed spill segment");
            return false;
        }
        true
    }
}

/// Hands what a removed storage-frontend still holds (memory queue, then spill) to
/// the router, which routes it to the ones in force.
fn hand_on(shard: &Shard, router: &Router) {
    let mut moved = 0;
    while let Some(batch) = shard.pop_batch() {
        moved += sample_count(&batch);
        router.submit(batch);
    }
    loop {
        match shard.spill.oldest() {
            Ok(Some((id, records))) => {
                for record in records {
                    match proto::storage::WriteRequest::decode(record.as_slice()) {
                        Ok(req) => {
                            let batch = grpc::series_from_write_request(req);
                            moved += sample_count(&batch);
                            router.submit(batch);
                        }
                        Err(e) => {
                            tracing::error!(storage = shard.sink.name(), error = %e, "undecodable spill record skipped");
                        }
                    }
                }
                if let Err(e) = shard.spill.remove(id) {
                    tracing::error!(storage = shard.sink.name(), error = %e, "cannot remove a handed-on spill segment");
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::error!(storage = shard.sink.name(), error = %e, "cannot read the spill of a removed storage-frontend");
                break;
            }
        }
    }
    if moved > 0 {
        tracing::info!(
            storage = shard.sink.name(),
            samples = moved,
            "samples of a removed storage-frontend routed to the others"
        );
    }
}

async fn ship(shard: Arc<Shard>, router: Weak<Router>, shutdown: Shutdown) {
    let mut replay_failures = 0u32;
    loop {
        if shard.retired.load(Ordering::SeqCst) && !shutdown.is_cancelled() {
            // Keep handing on: a submit may still have reached this shard.
            if let Some(router) = router.upgrade() {
                hand_on(&shard, &router);
            }
            tokio::select! {
                _ = shard.notify.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => {}
            }
            continue;
        }
        if shutdown.is_cancelled() {
            // Keep what is still in memory for the next run.
            while let Some(batch) = shard.pop_batch() {
                shard.spill_batch(&batch);
            }
            return;
        }
        if let Some(batch) = shard.pop_batch() {
            let attempts = if shard.healthy.load(Ordering::Relaxed) {
                shard.cfg.retry_attempts
            } else {
                1
            };
            let n = sample_count(&batch) as u64;
            let sent = tokio::select! {
                r = shard.send(&batch, attempts) => Some(r),
                _ = shutdown.cancelled() => None,
            };
            match sent {
                Some(Ok(outcome)) => {
                    shard.live_ok.store(true, Ordering::SeqCst);
                    shard.stats.sent_samples.add(outcome.accepted)
                }
                Some(Err(e)) if e.is_retryable() => {
                    tracing::warn!(storage = shard.sink.name(), samples = n, error = %e, "storage unavailable; spilling the batch");
                    shard.spill_batch(&batch);
                }
                Some(Err(e)) => {
                    shard.stats.rejected_samples.add(n);
                    tracing::warn!(storage = shard.sink.name(), samples = n, error = %e, "storage refused a batch");
                }
                None => shard.spill_batch(&batch),
            }
            continue;
        }
        if !shard.spill.is_empty() {
            let ok = tokio::select! {
                ok = shard.replay() => ok,
                _ = shutdown.cancelled() => continue,
            };
            if ok {
                replay_failures = 0;
                continue;
            }
            replay_failures += 1;
            let wait = shard.backoff(replay_failures.min(8));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shard.notify.notified() => {}
                _ = shutdown.cancelled() => {}
            }
            continue;
        }
        tokio::select! {
            _ = shard.notify.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.cancelled() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::MemorySink;

    fn cfg(queue: usize, spill: u64) -> RoutingConfig {
        RoutingConfig {
            batch_max_samples: 50,
            queue_max_samples: queue,
            retry_attempts: 2,
            retry_base: Duration::from_millis(10),
            retry_max: Duration::from_millis(100),
            spill_max_bytes: spill,
            ..RoutingConfig::default()
        }
    }

    fn batch(round: i64, n: usize) -> Vec<Series> {
        (0..n)
            .map(|i| {
                Series::one(
                    SeriesKey::new("web", format!("h{i}:1"), "m"),
                    round * 1000,
                    round as f64,
                )
            })
            .collect()
    }

    async fn until(mut f: impl FnMut() -> bool) {
        for _ in 0..10_000 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("condition not reached");
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_spills_and_replays_everything() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Arc::new(MemorySink::new("s1"));
        let router = Arc::new(
            Router::new(
                vec![sink.clone()],
                &cfg(200, 1 << 30),
                dir.path(),
                &StatsReceiver::new(),
            )
            .unwrap(),
        );
        let shutdown = Shutdown::new();
        router.start(&shutdown);
        sink.set_down(true);
        for round in 0..100 {
            router.submit(batch(round, 20));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        until(|| router.totals().queued_samples == 0).await;
        assert!(router.totals().spilled_samples > 0);
        assert_eq!(sink.stored(), 0);
        sink.set_down(false);
        until(|| sink.stored() == 2000 && router.totals().spill_bytes == 0).await;
        let t = router.totals();
        assert_eq!(t.dropped_samples, 0);
        assert_eq!(sink.series(&SeriesKey::new("web", "h7:1", "m")).len(), 100);
        shutdown.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_spill_drops_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Arc::new(MemorySink::new("s1"));
        // Room for about two spilled batches of 20 samples.
        let router = Arc::new(
            Router::new(
                vec![sink.clone()],
                &cfg(20, 2500),
                dir.path(),
                &StatsReceiver::new(),
            )
            .unwrap(),
        );
        let shutdown = Shutdown::new();
        router.start(&shutdown);
        sink.set_down(true);
        for round in 0..20 {
            router.submit(batch(round, 20));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        until(|| router.totals().queued_samples == 0).await;
        sink.set_down(false);
        until(|| router.totals().spill_bytes == 0).await;
        let t = router.totals();
        assert!(t.dropped_samples > 0);
        assert_eq!(t.dropped_samples + sink.stored() as u64, 400, "{t:?}");
        shutdown.cancel();
    }

    #[tokio::test]
    async fn write_now_waits_for_storage_and_splits_batches() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Arc::new(MemorySink::new("s1"));
        let router = Arc::new(
            Router::new(
                vec![sink.clone()],
                &cfg(200, 1 << 30),
                dir.path(),
                &StatsReceiver::new(),
            )
            .unwrap(),
        );
        let out = router.write_now(batch(1, 130)).await.unwrap();
        assert_eq!(out.accepted, 130);
        assert_eq!(sink.stored(), 130);
        sink.set_down(true);
        assert!(
            router
                .write_now(batch(2, 1))
                .await
                .unwrap_err()
                .is_retryable()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_removed_storage_hands_its_queue_and_spill_to_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            Arc::new(MemorySink::new("a")),
            Arc::new(MemorySink::new("b")),
            Arc::new(MemorySink::new("c")),
        );
        let router = Arc::new(
            Router::new(
                vec![a.clone(), b.clone()],
                &cfg(200, 1 << 30),
                dir.path(),
                &StatsReceiver::new(),
            )
            .unwrap(),
        );
        let shutdown = Shutdown::new();
        router.start(&shutdown);
        a.set_down(true);
        for round in 0..30 {
            router.submit(batch(round, 20));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        until(|| router.totals().queued_samples == 0).await;
        assert!(
            router.totals().spill_bytes > 0,
            "a's share waits in its spill"
        );
        // a leaves for good, c joins: a's spill goes to b and c.
        router.set_sinks(vec![b.clone(), c.clone()]).unwrap();
        assert_eq!(router.endpoints(), ["b", "c"]);
        until(|| b.stored() + c.stored() == 600 && router.totals().spill_bytes == 0).await;
        assert_eq!(a.stored(), 0);
        assert!(c.stored() > 0);
        assert_eq!(router.totals().dropped_samples, 0);
        // An empty set keeps the last known one.
        router.set_sinks(Vec::new()).unwrap();
        assert_eq!(router.endpoints(), ["b", "c"]);
        shutdown.cancel();
        router.stopped().await;
    }

    /// Refuses (as unavailable) every batch holding the metric "poison".
    #[derive(Debug)]
    struct Picky(MemorySink);

    impl Sink for Picky {
        fn name(&self) -> &str {
            self.0.name()
        }
        fn write(&self, batch: &[Series]) -> crate::sink::WriteFuture {
            if batch.iter().any(|s| s.key.metric == "poison") {
                return Box::pin(async {
                    Err(SinkError::Unavailable {
                        endpoint: "picky".into(),
                        message: "cannot take this one".into(),
                    })
                });
            }
            self.0.write(batch)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_that_keeps_failing_does_not_hold_up_the_spill() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Arc::new(Picky(MemorySink::new("picky")));
        let router = Arc::new(
            Router::new(
                vec![sink.clone()],
                &cfg(200, 1 << 30),
                dir.path(),
                &StatsReceiver::new(),
            )
            .unwrap(),
        );
        let shutdown = Shutdown::new();
        router.start(&shutdown);
        sink.0.set_down(true);
        router.submit(vec![Series::one(
            SeriesKey::new("web", "h", "poison"),
            1,
            1.0,
        )]);
        tokio::time::sleep(Duration::from_millis(100)).await;
        for round in 1..20 {
            router.submit(batch(round, 20));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        until(|| router.totals().queued_samples == 0).await;
        sink.0.set_down(false);
        // Live batches keep coming and are stored; the spill drains past the bad one.
        for round in 20..200 {
            router.submit(batch(round, 1));
            tokio::time::sleep(Duration::from_millis(200)).await;
            if sink.0.stored() == 19 * 20 + (round - 19) as usize {
                break;
            }
        }
        until(|| sink.0.stored() >= 19 * 20).await;
        let t = router.totals();
        assert_eq!(t.dropped_samples, 0);
        assert!(
            t.spill_bytes > 0,
            "the bad batch waits at the end of the spill"
        );
        shutdown.cancel();
        router.stopped().await;
    }

    #[test]
    fn consistent_hash_moves_only_the_removed_shards_keys() {
        let dir = tempfile::tempdir().unwrap();
        let sinks = |names: &[&str]| -> Vec<Arc<dyn Sink>> {
            names
                .iter()
                .map(|n| Arc::new(MemorySink::new(n)) as Arc<dyn Sink>)
                .collect()
        };
        let stats = StatsReceiver::new();
        let three = Router::new(
            sinks(&["a", "b", "c"]),
            &cfg(200, 1 << 20),
            dir.path(),
            &stats,
        )
        .unwrap();
        let two = Router::new(sinks(&["a", "c"]), &cfg(200, 1 << 20), dir.path(), &stats).unwrap();
        let mut counts = [0usize; 3];
        for i in 0..3000 {
            let key = SeriesKey::new("web", format!("h{i}"), format!("m{}", i % 7));
            let s3 = three.shard_of(&key);
            counts[s3] += 1;
            let name3 = three.endpoints()[s3].clone();
            let name2 = two.endpoints()[two.shard_of(&key)].clone();
            if name3 != "b" {
                assert_eq!(name2, name3);
            }
        }
        assert!(
            counts.iter().all(|n| (700..=1300).contains(n)),
            "{counts:?}"
        );
    }
}
