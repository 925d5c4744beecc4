//! The embedded engine (`libs/tsdb`) as a backend: every call runs on tokio's
//! blocking pool, since the engine is synchronous (fsync, block reads).

use std::path::Path;
use std::sync::Arc;

use futures::FutureExt;
use tsdb::{
    AppendReport, Engine, Fragment, FragmentResult, KeyPart, Options, Sample, SampleRow, Selector,
    SeriesFn, SeriesKey,
};

use super::{Backend, BackendError, BackendFuture, Batch};

/// The embedded engine, shared by every request.
#[derive(Debug, Clone)]
pub struct EmbeddedBackend {
    engine: Arc<Engine>,
    clock: Arc<dyn tsdb::Clock>,
    ooo_window_ms: i64,
}

impl EmbeddedBackend {
    /// Opens (recovering the WAL of) the engine in `dir`.
    pub async fn open(dir: &Path, opts: Options) -> Result<Self, BackendError> {
        let clock = opts.clock.clone();
        let ooo_window_ms = opts.ooo_window_ms;
        let dir = dir.to_owned();
        let engine = blocking(move || Engine::open(&dir, opts).map_err(BackendError::from)).await?;
        Ok(Self {
            engine: Arc::new(engine),
            clock,
            ooo_window_ms,
        })
    }

    /// The engine itself (stats, corrupt blocks).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Engine) -> Result<T, BackendError> + Send + 'static,
    ) -> BackendFuture<'static, T> {
        let engine = self.engine.clone();
        blocking(move || f(&engine)).boxed()
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BackendError> + Send + 'static,
) -> Result<T, BackendError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BackendError::Internal(format!("storage task failed: {e}")))?
}

/// Longest range of one exact series read on the calling task (a day of samples).
const SMALL_RANGE_MS: i64 = 86_400_000 + 3_600_000;

/// Whether `sel` names at most one series (every part exact).
fn exact(sel: &Selector) -> bool {
    [&sel.service, &sel.source, &sel.metric]
        .iter()
        .all(|m| matches!(m, tsdb::Matcher::Literal(_)))
}

/// The rows of a batch, borrowing its names.
pub(crate) fn rows(batch: &[(SeriesKey, Vec<Sample>)]) -> Vec<SampleRow<'_>> {
    let mut rows = Vec::with_capacity(batch.iter().map(|(_, s)| s.len()).sum());
    for (key, samples) in batch {
        rows.extend(samples.iter().map(|s| SampleRow {
            service: &key.service,
            source: &key.source,
            metric: &key.metric,
            ts: s.ts,
            value: s.value,
        }));
    }
    rows
}

impl Backend for EmbeddedBackend {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn write(&self, batch: Batch) -> BackendFuture<'_, AppendReport> {
        self.run(move |e| Ok(e.append(&rows(&batch))?))
    }

    fn epoch_table(&self) -> Option<Vec<tsdb::EpochBump>> {
        Some(self.engine.epochs())
    }

    fn select(&self, sel: Selector, t0: i64, t1: i64) -> BackendFuture<'_, Vec<SeriesKey>> {
        let all = self.select_first(sel, t0, t1, usize::MAX);
        async move { Ok(all.await?.0) }.boxed()
    }

    fn select_first(
        &self,
        sel: Selector,
        t0: i64,
        t1: i64,
        limit: usize,
    ) -> BackendFuture<'_, (Vec<SeriesKey>, u64)> {
        let fast = exact(&sel);
        let select = move |e: &Engine| {
            let (keys, total) = e.select_first(&sel, t0, t1, limit);
            (keys, total as u64)
        };
        if fast {
            // A few hash lookups: cheaper than the trip to the blocking pool.
            let found = select(&self.engine);
            return async move { Ok(found) }.boxed();
        }
        self.run(move |e| Ok(select(e)))
    }

    fn names(
        &self,
        sel: Selector,
        part: KeyPart,
        t0: i64,
        t1: i64,
    ) -> BackendFuture<'_, Vec<String>> {
        self.run(move |e| Ok(e.names(&sel, part, t0, t1)))
    }

    fn read_range(&self, key: SeriesKey, t0: i64, t1: i64) -> BackendFuture<'_, Vec<Sample>> {
        self.run(move |e| Ok(e.read_range(&key, t0, t1)?))
    }

    fn aggregate(&self, fragment: Fragment) -> BackendFuture<'_, FragmentResult> {
        if exact(&fragment.selector) && fragment.end - fragment.start <= SMALL_RANGE_MS {
            // One series over at most a day: tens of microseconds of decoding, less
            // than the two thread hops of the blocking pool.
            let r = self.engine.aggregate(&fragment).map_err(BackendError::from);
            return async move { r }.boxed();
        }
        self.run(move |e| Ok(e.aggregate(&fragment)?))
    }

    fn aggregate_each(
        &self,
        fragment: Fragment,
        each: Arc<dyn SeriesFn + Send>,
    ) -> Option<BackendFuture<'_, FragmentResult>> {
        Some(self.run(move |e| Ok(e.aggregate_each(&fragment, &*each)?)))
    }

    fn epoch(&self, service: String, day: i64) -> BackendFuture<'_, u64> {
        let epoch = self.engine.epoch(&service, day);
        async move { Ok(epoch) }.boxed()
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn ooo_window_ms(&self) -> i64 {
        self.ooo_window_ms
    }

    fn maintain(&self) -> BackendFuture<'_, String> {
        self.run(|e| {
            let r = e.maintain()?;
            Ok(format!(
                "sealed {} blocks, compacted {}, expired {}",
                r.sealed_blocks, r.compacted_blocks, r.expired_blocks
            ))
        })
    }
}
