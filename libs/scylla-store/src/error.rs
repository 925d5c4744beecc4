//! The backend's error type: one variant per cause, each naming the
//! statement, series or setting that failed.

use crate::config::ConfigError;

/// Errors returned by [`crate::ScyllaStore`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid (see [`ConfigError`]).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No session could be opened to the cluster.
    #[error("connecting to scylla nodes {nodes} failed: {source}")]
    Connect {
        /// The contact points, comma-separated.
        nodes: String,
        /// The driver's error.
        source: Box<scylla::errors::NewSessionError>,
    },
    /// A statement could not be prepared.
    #[error("preparing statement {statement} failed: {source}")]
    Prepare {
        /// Name of the statement (see [`crate::cql::Stmt`]).
        statement: &'static str,
        /// The driver's error.
        source: Box<scylla::errors::PrepareError>,
    },
    /// A statement failed on the cluster (after the retry policy gave up).
    #[error("statement {statement} failed: {source}")]
    Execute {
        /// Name of the statement.
        statement: &'static str,
        /// The driver's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A result row did not have the expected shape.
    #[error("statement {statement} returned an unexpected row: {reason}")]
    BadRow {
        /// Name of the statement.
        statement: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A stored chunk could not be decoded.
    #[error("chunk of series {series} (window {window}, first_ts {first_ts}) is corrupt: {reason}")]
    CorruptChunk {
        /// The series, as `(service, source, metric)`.
        series: String,
        /// Start of the chunk window (ms).
        window: i64,
        /// First timestamp of the chunk as stored in its key (ms).
        first_ts: i64,
        /// What was wrong.
        reason: String,
    },
    /// The keyspace has no schema and the store may not create it.
    #[error(
        "keyspace {keyspace} has no aerie schema (no row in {keyspace}.schema_version) and \
         manage_schema is false; create it with manage_schema = true or by hand"
    )]
    SchemaMissing {
        /// The keyspace.
        keyspace: String,
    },
    /// The keyspace holds a schema version this build does not know.
    #[error(
        "keyspace {keyspace} has aerie schema version {found}, this build supports version \
         {supported} only; {hint}"
    )]
    SchemaVersion {
        /// The keyspace.
        keyspace: String,
        /// The version found in `schema_version`.
        found: i32,
        /// The version this build reads and writes.
        supported: i32,
        /// What to do about it.
        hint: &'static str,
    },
    /// A query fragment or range is malformed.
    #[error("query rejected: {0}")]
    BadQuery(String),
}

impl Error {
    /// Wraps a driver error of an executed statement.
    pub(crate) fn execute(
        statement: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Execute {
            statement,
            source: Box::new(source),
        }
    }
}

impl From<tsdb::Error> for Error {
    fn from(e: tsdb::Error) -> Self {
        match e {
            tsdb::Error::BadQuery(m) => Error::BadQuery(m),
            other => Error::BadQuery(other.to_string()),
        }
    }
}

/// Shorthand result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
