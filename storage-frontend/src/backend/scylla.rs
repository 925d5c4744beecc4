//! ScyllaDB/Cassandra as a backend: a thin adapter over `scylla_store::ScyllaStore`,
//! which already speaks the engine's types.

use std::sync::Arc;

use futures::FutureExt;
use scylla_store::{ScyllaConfig, ScyllaStore};
use tsdb::{
    AppendReport, Fragment, FragmentResult, KeyPart, Sample, Selector, SeriesFn, SeriesKey,
};

use super::{Backend, BackendError, BackendFuture, Batch, embedded::rows};

/// A connected Scylla store.
#[derive(Debug, Clone)]
pub struct ScyllaBackend {
    store: ScyllaStore,
    clock: Arc<dyn tsdb::Clock>,
    ooo_window_ms: i64,
}

impl ScyllaBackend {
    /// Connects, checks (or creates) the schema and prepares every statement.
    pub async fn connect(
        config: ScyllaConfig,
        clock: Arc<dyn tsdb::Clock>,
    ) -> Result<Self, BackendError> {
        let ooo_window_ms = config.ooo_window_ms;
        let store = ScyllaStore::connect_with_clock(config, clock.clone()).await?;
        Ok(Self {
            store,
            clock,
            ooo_window_ms,
        })
    }
}

impl Backend for ScyllaBackend {
    fn kind(&self) -> &'static str {
        "scylla"
    }

    fn write(&self, batch: Batch) -> BackendFuture<'_, AppendReport> {
        async move { Ok(self.store.write(&rows(&batch)).await?) }.boxed()
    }

    fn select(&self, sel: Selector, t0: i64, t1: i64) -> BackendFuture<'_, Vec<SeriesKey>> {
        async move { Ok(self.store.select(&sel, t0, t1).await?) }.boxed()
    }

    fn names(
        &self,
        sel: Selector,
        part: KeyPart,
        t0: i64,
        t1: i64,
    ) -> BackendFuture<'_, Vec<String>> {
        async move { Ok(self.store.names(&sel, part, t0, t1).await?) }.boxed()
    }

    fn read_range(&self, key: SeriesKey, t0: i64, t1: i64) -> BackendFuture<'_, Vec<Sample>> {
        async move { Ok(self.store.read_range(&key, t0, t1).await?) }.boxed()
    }

    fn aggregate(&self, fragment: Fragment) -> BackendFuture<'_, FragmentResult> {
        async move { Ok(self.store.aggregate(&fragment).await?) }.boxed()
    }

    fn aggregate_each(
        &self,
        fragment: Fragment,
        each: Arc<dyn SeriesFn + Send>,
    ) -> Option<BackendFuture<'_, FragmentResult>> {
        Some(async move { Ok(self.store.aggregate_each(&fragment, &*each).await?) }.boxed())
    }

    fn epoch(&self, service: String, day: i64) -> BackendFuture<'_, u64> {
        async move { Ok(self.store.epoch(&service, day).await?) }.boxed()
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn ooo_window_ms(&self) -> i64 {
        self.ooo_window_ms
    }

    fn maintain(&self) -> BackendFuture<'_, String> {
        // Time-window compaction and TTLs expire data inside the cluster.
        async { Ok(String::new()) }.boxed()
    }
}
