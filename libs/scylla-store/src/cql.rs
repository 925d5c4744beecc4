//! Every DML statement the store prepares, with its idempotence: the
//! driver's retry policy retries a failed or timed-out statement only when
//! it is marked idempotent.
//!
//! Why each write is idempotent (re-running it leaves the same state):
//! - `insert_chunk`: the primary key ends in the digest of the chunk's
//!   bytes, so a re-sent sub-chunk overwrites itself with the same cells.
//! - `insert_service_minute`: fixed key, fixed value, and `USING TIMESTAMP`
//!   set to the sample's own time, so a replay writes identical cells.
//! - `add_*` (name index): adding elements to a `set` is a union.
//! - `set_epoch`: binds a value chosen before the first attempt; a retry
//!   writes the same value.
//!
//! Not idempotent: `insert_version` is a lightweight transaction (`IF NOT
//! EXISTS`); a retry after a lost reply may report "not applied" for the
//! row it wrote itself. No statement uses counters or list appends.

/// One prepared statement of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stmt {
    /// Short name, used in errors and logs.
    pub name: &'static str,
    /// The CQL with `{ks}` standing for the keyspace.
    pub template: &'static str,
    /// Whether the driver may retry it.
    pub idempotent: bool,
    /// Whether it reads rows (paged) rather than writes.
    pub read: bool,
}

impl Stmt {
    /// The CQL text for `keyspace`.
    pub fn cql(&self, keyspace: &str) -> String {
        self.template.replace("{ks}", keyspace)
    }
}

const fn write(name: &'static str, template: &'static str, idempotent: bool) -> Stmt {
    Stmt {
        name,
        template,
        idempotent,
        read: false,
    }
}

const fn read(name: &'static str, template: &'static str) -> Stmt {
    Stmt {
        name,
        template,
        idempotent: true,
        read: true,
    }
}

/// Writes one sub-chunk of a series window. Binds: service, source,
/// metric, window_start, first_ts, digest, last_ts, samples, written_at,
/// chunk, ttl.
pub const INSERT_CHUNK: Stmt = write(
    "insert_chunk",
    "INSERT INTO {ks}.samples (service, source, metric, window_start, first_ts, digest, \
     last_ts, samples, written_at, chunk) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?",
    true,
);

/// Writes the last value of one source in one minute. Binds: service,
/// metric, hour, minute, source, value, ttl, timestamp (µs).
pub const INSERT_SERVICE_MINUTE: Stmt = write(
    "insert_service_minute",
    "INSERT INTO {ks}.service_minutes (service, metric, hour, minute, source, value) \
     VALUES (?, ?, ?, ?, ?, ?) USING TTL ? AND TIMESTAMP ?",
    true,
);

/// Adds hours of a day to a service. Binds: ttl, hours, day, service.
pub const ADD_SERVICE: Stmt = write(
    "add_service",
    "UPDATE {ks}.names_services USING TTL ? SET hours = hours + ? WHERE day = ? AND service = ?",
    true,
);

/// Adds hours of a day to a metric of a service. Binds: ttl, hours,
/// service, day, metric.
pub const ADD_METRIC: Stmt = write(
    "add_metric",
    "UPDATE {ks}.names_metrics USING TTL ? SET hours = hours + ? \
     WHERE service = ? AND day = ? AND metric = ?",
    true,
);

/// Adds hours of a day to a source of a service. Binds: ttl, hours,
/// service, day, source.
pub const ADD_SOURCE: Stmt = write(
    "add_source",
    "UPDATE {ks}.names_sources USING TTL ? SET hours = hours + ? \
     WHERE service = ? AND day = ? AND source = ?",
    true,
);

/// Adds hours of a day to a series. Binds: ttl, hours, service, metric,
/// day, source.
pub const ADD_SERIES: Stmt = write(
    "add_series",
    "UPDATE {ks}.names_series USING TTL ? SET hours = hours + ? \
     WHERE service = ? AND metric = ? AND day = ? AND source = ?",
    true,
);

/// Sets the epoch of (service, day). Binds: epoch, service, day.
pub const SET_EPOCH: Stmt = write(
    "set_epoch",
    "UPDATE {ks}.epochs SET epoch = ? WHERE service = ? AND day = ?",
    true,
);

/// Records the schema version if absent. Binds: component, version,
/// updated_at.
pub const INSERT_VERSION: Stmt = write(
    "insert_version",
    "INSERT INTO {ks}.schema_version (component, version, updated_at) VALUES (?, ?, ?) \
     IF NOT EXISTS",
    false,
);

/// Sub-chunks of one series window starting at or before a time. Binds:
/// service, source, metric, window_start, max first_ts.
pub const SELECT_CHUNKS: Stmt = read(
    "select_chunks",
    "SELECT first_ts, digest, last_ts, samples, written_at, chunk FROM {ks}.samples \
     WHERE service = ? AND source = ? AND metric = ? AND window_start = ? AND first_ts <= ?",
);

/// Per-source minute values of one (service, metric, hour). Binds:
/// service, metric, hour, first minute, end minute (exclusive).
pub const SELECT_SERVICE_MINUTES: Stmt = read(
    "select_service_minutes",
    "SELECT minute, source, value FROM {ks}.service_minutes \
     WHERE service = ? AND metric = ? AND hour = ? AND minute >= ? AND minute < ?",
);

/// Services present on a day. Binds: day.
pub const LIST_SERVICES: Stmt = read(
    "list_services",
    "SELECT service, hours FROM {ks}.names_services WHERE day = ?",
);

/// Metrics of a service on a day. Binds: service, day.
pub const LIST_METRICS: Stmt = read(
    "list_metrics",
    "SELECT metric, hours FROM {ks}.names_metrics WHERE service = ? AND day = ?",
);

/// One metric of a service on a day. Binds: service, day, metric.
pub const GET_METRIC: Stmt = read(
    "get_metric",
    "SELECT metric, hours FROM {ks}.names_metrics WHERE service = ? AND day = ? AND metric = ?",
);

/// Sources of a service on a day. Binds: service, day.
pub const LIST_SOURCES: Stmt = read(
    "list_sources",
    "SELECT source, hours FROM {ks}.names_sources WHERE service = ? AND day = ?",
);

/// Sources of a (service, metric) on a day. Binds: service, metric, day.
pub const LIST_SERIES: Stmt = read(
    "list_series",
    "SELECT source, hours FROM {ks}.names_series WHERE service = ? AND metric = ? AND day = ?",
);

/// The epoch of (service, day). Binds: service, day.
pub const GET_EPOCH: Stmt = read(
    "get_epoch",
    "SELECT epoch FROM {ks}.epochs WHERE service = ? AND day = ?",
);

/// The schema version. Binds: component.
pub const SELECT_VERSION: Stmt = read(
    "select_version",
    "SELECT version FROM {ks}.schema_version WHERE component = ?",
);

/// Every statement, in the order [`crate::ScyllaStore`] prepares them.
pub const ALL: [Stmt; 17] = [
    INSERT_CHUNK,
    INSERT_SERVICE_MINUTE,
    ADD_SERVICE,
    ADD_METRIC,
    ADD_SOURCE,
    ADD_SERIES,
    SET_EPOCH,
    INSERT_VERSION,
    SELECT_CHUNKS,
    SELECT_SERVICE_MINUTES,
    LIST_SERVICES,
    LIST_METRICS,
    GET_METRIC,
    LIST_SOURCES,
    LIST_SERIES,
    GET_EPOCH,
    SELECT_VERSION,
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The CQL of every statement, as sent for keyspace `ks`, with its
    /// idempotence. A change here is a change of the wire contract with the
    /// cluster: review it together with the schema.
    #[test]
    fn statements_snapshot() {
        let got: Vec<String> = ALL
            .iter()
            .map(|s| {
                format!(
                    "{} [{}{}] {}",
                    s.name,
                    if s.read { "read" } else { "write" },
                    if s.idempotent { ", idempotent" } else { "" },
                    s.cql("ks")
                )
            })
            .collect();
        let expected = [
            "insert_chunk [write, idempotent] INSERT INTO ks.samples (service, source, metric, \
             window_start, first_ts, digest, last_ts, samples, written_at, chunk) VALUES (?, ?, \
             ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?",
            "insert_service_minute [write, idempotent] INSERT INTO ks.service_minutes (service, \
             metric, hour, minute, source, value) VALUES (?, ?, ?, ?, ?, ?) USING TTL ? AND \
             TIMESTAMP ?",
            "add_service [write, idempotent] UPDATE ks.names_services USING TTL ? SET hours = \
             hours + ? WHERE day = ? AND service = ?",
            "add_metric [write, idempotent] UPDATE ks.names_metrics USING TTL ? SET hours = \
             hours + ? WHERE service = ? AND day = ? AND metric = ?",
            "add_source [write, idempotent] UPDATE ks.names_sources USING TTL ? SET hours = \
             hours + ? WHERE service = ? AND day = ? AND source = ?",
            "add_series [write, idempotent] UPDATE ks.names_series USING TTL ? SET hours = \
             hours + ? WHERE service = ? AND metric = ? AND day = ? AND source = ?",
            "set_epoch [write, idempotent] UPDATE ks.epochs SET epoch = ? WHERE service = ? AND \
             day = ?",
            "insert_version [write] INSERT INTO ks.schema_version (component, version, \
             updated_at) VALUES (?, ?, ?) IF NOT EXISTS",
            "select_chunks [read, idempotent] SELECT first_ts, digest, last_ts, samples, \
             written_at, chunk FROM ks.samples WHERE service = ? AND source = ? AND metric = ? \
             AND window_start = ? AND first_ts <= ?",
            "select_service_minutes [read, idempotent] SELECT minute, source, value FROM \
             ks.service_minutes WHERE service = ? AND metric = ? AND hour = ? AND minute >= ? \
             AND minute < ?",
            "list_services [read, idempotent] SELECT service, hours FROM ks.names_services \
             WHERE day = ?",
            "list_metrics [read, idempotent] SELECT metric, hours FROM ks.names_metrics WHERE \
             service = ? AND day = ?",
            "get_metric [read, idempotent] SELECT metric, hours FROM ks.names_metrics WHERE \
             service = ? AND day = ? AND metric = ?",
            "list_sources [read, idempotent] SELECT source, hours FROM ks.names_sources WHERE \
             service = ? AND day = ?",
            "list_series [read, idempotent] SELECT source, hours FROM ks.names_series WHERE \
             service = ? AND metric = ? AND day = ?",
            "get_epoch [read, idempotent] SELECT epoch FROM ks.epochs WHERE service = ? AND \
             day = ?",
            "select_version [read, idempotent] SELECT version FROM ks.schema_version WHERE \
             component = ?",
        ];
        assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(expected) {
            assert_eq!(g, e);
        }
    }

    #[test]
    fn names_are_unique_and_every_write_but_the_lwt_is_idempotent() {
        let mut names: Vec<_> = ALL.iter().map(|s| s.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        for s in ALL {
            let lwt = s.template.contains(" IF ");
            assert_eq!(s.idempotent, !lwt, "{}", s.name);
            assert!(!s.template.contains("counter"), "{}", s.name);
            assert_eq!(s.read, s.template.starts_with("SELECT"), "{}", s.name);
        }
    }

    #[test]
    fn schema_version_statements_agree_with_schema_module() {
        assert_eq!(
            SELECT_VERSION.cql("ks"),
            crate::schema::select_version("ks")
        );
        assert_eq!(
            INSERT_VERSION.cql("ks"),
            crate::schema::insert_version("ks")
        );
    }
}
