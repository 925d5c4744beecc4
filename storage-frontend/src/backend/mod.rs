//! The storage backend trait the service runs on, with its error type; the
//! embedded engine and the Scylla store implement it, and one conformance suite
//! (`tests/conformance.rs`) checks both.
//!
//! Backends speak the engine's domain types (`tsdb::SeriesKey`, `Selector`,
//! `Fragment`, ...); protobuf stays in the service's `grpc` module.

pub mod embedded;
pub mod scylla;

use std::sync::Arc;

use futures::future::BoxFuture;
use tsdb::{
    AppendReport, Fragment, FragmentResult, KeyPart, Sample, Selector, SeriesFn, SeriesKey,
};

pub use embedded::EmbeddedBackend;
pub use scylla::ScyllaBackend;

/// A batch to write: series with their samples, in request order. Rejections in
/// the returned [`AppendReport`] index the samples flattened in this order.
pub type Batch = Arc<Vec<(SeriesKey, Vec<Sample>)>>;

/// Why a backend call failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The request cannot be served as asked (bad pattern, bad range); retrying fails the same way.
    #[error("{0}")]
    BadRequest(String),
    /// The backend cannot be reached right now; retrying may succeed.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// Stored data failed its checks.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Anything else that went wrong inside the backend.
    #[error("backend failed: {0}")]
    Internal(String),
}

/// Shorthand for a backend call's future.
pub type BackendFuture<'a, T> = BoxFuture<'a, Result<T, BackendError>>;

/// A place samples are stored and queried. Every call is idempotent.
pub trait Backend: Send + Sync + 'static {
    /// `embedded` or `scylla`, for logs and stats.
    fn kind(&self) -> &'static str;
    /// Stores the batch; resolves once every accepted sample is durable.
    fn write(&self, batch: Batch) -> BackendFuture<'_, AppendReport>;
    /// Series matching `sel` with data in `[t0, t1)`, in key order.
    fn select(&self, sel: Selector, t0: i64, t1: i64) -> BackendFuture<'_, Vec<SeriesKey>>;
    /// The first `limit` of the series [`Backend::select`] gives, and how many it
    /// gives: for counts and pages of the index.
    fn select_first(
        &self,
        sel: Selector,
        t0: i64,
        t1: i64,
        limit: usize,
    ) -> BackendFuture<'_, (Vec<SeriesKey>, u64)> {
        let all = self.select(sel, t0, t1);
        Box::pin(async move {
            let mut keys = all.await?;
            let total = keys.len() as u64;
            keys.truncate(limit);
            Ok((keys, total))
        })
    }
    /// Distinct values of `part` among the series `sel` matches in `[t0, t1)`, sorted.
    fn names(
        &self,
        sel: Selector,
        part: KeyPart,
        t0: i64,
        t1: i64,
    ) -> BackendFuture<'_, Vec<String>>;
    /// Samples of one series in `[t0, t1)`, in time order.
    fn read_range(&self, key: SeriesKey, t0: i64, t1: i64) -> BackendFuture<'_, Vec<Sample>>;
    /// Runs a fragment (select, per-step aggregation, grouping) next to the data.
    fn aggregate(&self, fragment: Fragment) -> BackendFuture<'_, FragmentResult>;
    /// Runs a fragment whose series each pass through `each` (a function of time)
    /// before they combine into groups, next to the data; `None` where the backend
    /// cannot, and the caller then reads the series one by one. Whether it can
    /// depends on the backend alone, never on the fragment.
    fn aggregate_each(
        &self,
        _fragment: Fragment,
        _each: Arc<dyn SeriesFn + Send>,
    ) -> Option<BackendFuture<'_, FragmentResult>> {
        None
    }
    /// The backfill epoch of `service` on UTC day `day` (`ts.div_euclid(DAY_MS)`).
    fn epoch(&self, service: String, day: i64) -> BackendFuture<'_, u64>;
    /// The backend's "now" (ms): the clock its windows are measured against.
    fn now_ms(&self) -> i64;
    /// Samples older than `now_ms() - ooo_window_ms()` take the backfill path.
    fn ooo_window_ms(&self) -> i64;
    /// Every epoch that is not 0, when this storage-frontend alone bumps them (so
    /// the bumps its writes report are all there are); `None` where other
    /// storage-frontends share them.
    fn epoch_table(&self) -> Option<Vec<tsdb::EpochBump>> {
        None
    }
    /// Periodic upkeep (sealing, compaction, retention); a no-op where the
    /// backend does its own.
    fn maintain(&self) -> BackendFuture<'_, String>;
}

impl From<tsdb::Error> for BackendError {
    fn from(e: tsdb::Error) -> Self {
        let text = e.to_string();
        match e {
            tsdb::Error::BadPattern { .. } | tsdb::Error::BadQuery(_) => {
                BackendError::BadRequest(text)
            }
            tsdb::Error::WalCorrupt { .. }
            | tsdb::Error::BlockCorrupt { .. }
            | tsdb::Error::IndexCorrupt { .. } => BackendError::Corrupt(text),
            tsdb::Error::Io { .. }
            | tsdb::Error::BadOptions(_)
            | tsdb::Error::WalPoisoned { .. } => BackendError::Internal(text),
        }
    }
}

impl From<scylla_store::Error> for BackendError {
    fn from(e: scylla_store::Error) -> Self {
        use scylla_store::Error as E;
        let text = e.to_string();
        match e {
            E::Connect { .. } | E::Execute { .. } => BackendError::Unavailable(text),
            E::CorruptChunk { .. } | E::BadRow { .. } => BackendError::Corrupt(text),
            E::BadQuery(_) => BackendError::BadRequest(text),
            E::Config(_)
            | E::Prepare { .. }
            | E::SchemaMissing { .. }
            | E::SchemaVersion { .. } => BackendError::Internal(text),
        }
    }
}
