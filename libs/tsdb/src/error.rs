//! The engine's error type: one variant per cause, each naming what failed
//! and where.

use std::io;
use std::path::PathBuf;

/// Errors returned by the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation failed.
    #[error("{op} {path} failed: {source}")]
    Io {
        /// What was being done (`open`, `write`, `fsync`, ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A WAL record could not be decoded (outside a torn tail).
    #[error("wal segment {path} is corrupt at offset {offset}: {reason}")]
    WalCorrupt {
        /// The segment.
        path: PathBuf,
        /// Byte offset of the bad record.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// A block failed its checksum or could not be parsed.
    #[error("block {path} is corrupt: {reason}")]
    BlockCorrupt {
        /// The block file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The index snapshot could not be parsed.
    #[error("index snapshot {path} is corrupt: {reason}")]
    IndexCorrupt {
        /// The snapshot file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A glob or regex matcher did not compile.
    #[error("pattern {pattern:?} is invalid: {reason}")]
    BadPattern {
        /// The pattern as given.
        pattern: String,
        /// The compiler's message.
        reason: String,
    },
    /// A query fragment or range is malformed.
    #[error("query rejected: {0}")]
    BadQuery(String),
    /// Options are inconsistent.
    #[error("invalid options: {0}")]
    BadOptions(String),
    /// A previous fsync failed; the engine refuses writes from then on
    /// because the page cache may have dropped acknowledged data.
    #[error("wal is unusable after an earlier fsync failure on {path}")]
    WalPoisoned {
        /// The segment whose fsync failed.
        path: PathBuf,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Shorthand result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
