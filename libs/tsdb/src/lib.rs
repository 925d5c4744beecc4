//! The embedded time-series engine: durable, compact, fast; no network.
//!
//! ```text
//!  write path                                   read path
//!  append(&[SampleRow])                         select / read_range / scan / aggregate(Fragment)
//!     |  intern (service, source, metric)           |  name index: postings + presence intervals
//!     |  reject: beyond retention, future, name     v
//!     v                                         per series, in time order:
//!  WAL record --group fsync--> acknowledged       blocks (raw chunk or 5m/1h rollup)
//!     |                                           + head (chunks + out-of-order buffer)
//!     v                                           merge by precedence (newest wins)
//!  head: partition -> series -> HeadChunk            |
//!     |   ts >= now - ooo_window: main head          v
//!     |   older: backfill head, epoch(service,day)++ StepFold: one value per step (t - step, t]
//!     v                                              |
//!  seal (maintain / flush / backfill full)           v
//!     -> level-0 block per partition window      Partial{count,sum,min,max,last} per group per step
//!     -> WAL checkpoint (rest of head), index.snap     (mergeable across nodes)
//!  compact: cold windows -> one block per day
//!  retention: delete whole blocks past it
//! ```
//!
//! On disk, under the engine's directory: `wal/*.wal` (segments),
//! `blocks/*.blk` (immutable blocks), `index.snap` (name index snapshot),
//! `BOOT` (restart counter that keeps epochs unique).
//!
//! Service aggregates are queried as series with source [`ALL_SOURCES`]
//! (`*all*`): per (service, metric, minute) the sum over all sources of
//! each source's last sample in the minute; [`Engine::service_aggregate`]
//! returns count, sum, min and max.

pub mod bits;
mod block;
mod cells;
mod clock;
pub mod codec;
mod columns;
mod engine;
mod error;
mod head;
mod index;
mod query;
mod types;
mod wal;

pub use clock::{Clock, ManualClock, SystemClock};
pub use engine::{BlockBytes, CorruptBlock, Engine, MaintenanceReport, Options, ServicePoint};
pub use error::{Error, Result};
pub use index::{Matcher, Selector};
pub use query::{Fragment, FragmentResult, GroupResult, Partial, SeriesFn, StepAgg};
pub use types::*;
pub use wal::FsyncPolicy;

#[cfg(test)]
mod engine_tests;
