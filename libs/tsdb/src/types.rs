//! Plain data types of the engine's public API: keys, rows, samples,
//! append reports and rejection reasons.

use std::fmt;

/// Engine-internal numeric id of an interned series (stable while the
/// engine is open; not persisted across restarts).
pub type SeriesId = u32;

/// The source name under which a service aggregate is queried: the
/// per-minute sum over all sources of a service (see
/// [`crate::Engine::service_aggregate`] for count, min and max).
pub const ALL_SOURCES: &str = "*all*";

/// Milliseconds in a day: epochs are kept per (service, UTC day).
pub const DAY_MS: i64 = 86_400_000;

/// The identity of a series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    /// Group of sources, e.g. `cuckoo`.
    pub service: String,
    /// Where the data comes from, e.g. `host:port`.
    pub source: String,
    /// What is measured, e.g. `srv/http/requests`.
    pub metric: String,
}

impl SeriesKey {
    /// Builds a key from its three parts.
    pub fn new(
        service: impl Into<String>,
        source: impl Into<String>,
        metric: impl Into<String>,
    ) -> Self {
        Self {
            service: service.into(),
            source: source.into(),
            metric: metric.into(),
        }
    }

    /// The part named by `part`.
    pub fn part(&self, part: KeyPart) -> &str {
        match part {
            KeyPart::Service => &self.service,
            KeyPart::Source => &self.source,
            KeyPart::Metric => &self.metric,
        }
    }
}

impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {}, {})", self.service, self.source, self.metric)
    }
}

/// One of the three parts of a series key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyPart {
    /// The service.
    Service,
    /// The source.
    Source,
    /// The metric.
    Metric,
}

/// One sample to append, borrowing its key parts from the caller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleRow<'a> {
    /// Service of the series.
    pub service: &'a str,
    /// Source of the series.
    pub source: &'a str,
    /// Metric of the series.
    pub metric: &'a str,
    /// Unix time in milliseconds.
    pub ts: i64,
    /// The value (any f64, stored bit-exactly).
    pub value: f64,
}

/// A stored sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Unix time in milliseconds.
    pub ts: i64,
    /// The value.
    pub value: f64,
}

/// Why a sample was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Older than `now - retention`.
    BeyondRetention,
    /// Newer than `now + future_tolerance`.
    TooFarInFuture,
    /// A key part is empty, longer than [`MAX_NAME_LEN`], contains a NUL
    /// byte, or uses the reserved source [`ALL_SOURCES`].
    InvalidName,
}

impl RejectReason {
    /// A stable lower-case name, for counters and error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::BeyondRetention => "beyond_retention",
            RejectReason::TooFarInFuture => "too_far_in_future",
            RejectReason::InvalidName => "invalid_name",
        }
    }
}

/// Longest accepted key part in bytes (hygiene proper is the collector's).
pub const MAX_NAME_LEN: usize = 1024;

/// A refused sample: its position in the batch and the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    /// Index of the row in the appended slice.
    pub index: usize,
    /// Why it was refused.
    pub reason: RejectReason,
}

/// What happened to an appended batch. Everything not listed in
/// `rejected` is durable when the report is returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendReport {
    /// Samples accepted (normal and backfill paths).
    pub accepted: usize,
    /// Of those, samples older than `now - ooo_window` (backfill path).
    pub backfilled: usize,
    /// Refused samples with reasons.
    pub rejected: Vec<Rejection>,
    /// The (service, day) epochs this batch bumped, with their new values.
    pub epochs: Vec<EpochBump>,
}

/// The backfill epoch of one (service, day): bumped whenever a backfilled sample
/// lands there, never reused, only ever increasing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochBump {
    /// The service.
    pub service: String,
    /// The UTC day, `ts.div_euclid(DAY_MS)`.
    pub day: i64,
    /// Its epoch now.
    pub epoch: u64,
}

/// Engine counters, cumulative since open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Samples accepted.
    pub samples_appended: u64,
    /// Samples that took the backfill path.
    pub samples_backfilled: u64,
    /// Rejections: beyond retention.
    pub rejected_beyond_retention: u64,
    /// Rejections: too far in the future.
    pub rejected_too_far_in_future: u64,
    /// Rejections: invalid name.
    pub rejected_invalid_name: u64,
    /// WAL bytes written.
    pub wal_bytes: u64,
    /// WAL fsyncs (one per group commit).
    pub wal_syncs: u64,
    /// Torn WAL tails truncated at open.
    pub wal_torn_tails: u64,
    /// Blocks written by sealing.
    pub blocks_sealed: u64,
    /// Compactions run.
    pub compactions: u64,
    /// Blocks deleted by retention.
    pub blocks_expired: u64,
    /// Series interned.
    pub series: u64,
    /// Samples in the head (normal + backfill).
    pub head_samples: u64,
    /// Blocks serving.
    pub blocks: u64,
    /// Blocks skipped as corrupt.
    pub corrupt_blocks: u64,
}
