//! The CQL schema: keyspace and table DDL generated from the config, and
//! the start-up schema-version check.
//!
//! Every table but `schema_version` and `epochs` uses
//! `TimeWindowCompactionStrategy` and a `default_time_to_live`, and every
//! write sets a TTL derived from the data's own timestamp, so an SSTable
//! holds one time window and is dropped whole once all of it expired.
//! Nothing is ever deleted, so `gc_grace_seconds` is short (3 h).

use crate::config::{Replication, ScyllaConfig};
use crate::error::{Error, Result};

/// The schema version this build creates, reads and writes.
pub const SCHEMA_VERSION: i32 = 1;

/// The key of the one row of `schema_version` that this store owns.
pub const SCHEMA_COMPONENT: &str = "aerie-tsdb";

/// `gc_grace_seconds` of the time-windowed tables: rows only ever expire
/// (no deletes), so tombstones need not outlive the hint window.
pub const GC_GRACE_SECS: u32 = 10_800;

/// The tables of the schema, in creation order.
pub const TABLES: [&str; 8] = [
    "schema_version",
    "samples",
    "service_minutes",
    "names_services",
    "names_metrics",
    "names_sources",
    "names_series",
    "epochs",
];

/// `CREATE KEYSPACE IF NOT EXISTS` for the configured replication.
pub fn create_keyspace(config: &ScyllaConfig) -> String {
    let replication = match &config.replication {
        Replication::SimpleStrategy { replication_factor } => {
            format!("{{'class': 'SimpleStrategy', 'replication_factor': {replication_factor}}}")
        }
        Replication::NetworkTopologyStrategy { datacenters } => {
            let dcs: Vec<String> = datacenters
                .iter()
                .map(|(dc, rf)| format!("'{dc}': {rf}"))
                .collect();
            format!("{{'class': 'NetworkTopologyStrategy', {}}}", dcs.join(", "))
        }
    };
    format!(
        "CREATE KEYSPACE IF NOT EXISTS {} WITH replication = {replication} AND durable_writes = true",
        config.keyspace
    )
}

/// The `WITH` options of a time-windowed, expiring table.
fn twcs_options(config: &ScyllaConfig, clustering: &str) -> String {
    format!(
        " WITH CLUSTERING ORDER BY ({clustering}) \
         AND compaction = {{'class': 'TimeWindowCompactionStrategy', \
         'compaction_window_unit': 'HOURS', 'compaction_window_size': {}}} \
         AND default_time_to_live = {} AND gc_grace_seconds = {GC_GRACE_SECS}",
        config.compaction_window_hours, config.ttl_secs
    )
}

/// Every `CREATE TABLE IF NOT EXISTS` of the schema, in [`TABLES`] order.
pub fn create_tables(config: &ScyllaConfig) -> Vec<String> {
    let ks = &config.keyspace;
    let twcs = |clustering: &str| twcs_options(config, clustering);
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.schema_version (component text PRIMARY KEY, \
             version int, updated_at bigint)"
        ),
        // One partition per (series, chunk window); one row per written
        // sub-chunk, merged on read (see crate docs: write strategy).
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.samples (service text, source text, metric text, \
             window_start bigint, first_ts bigint, digest bigint, last_ts bigint, samples int, \
             written_at bigint, chunk blob, \
             PRIMARY KEY ((service, source, metric, window_start), first_ts, digest)){}",
            twcs("first_ts ASC, digest ASC")
        ),
        // Per (service, metric, hour): the last value of each source in each
        // minute; written with the sample's timestamp as the cell timestamp.
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.service_minutes (service text, metric text, \
             hour bigint, minute bigint, source text, value double, \
             PRIMARY KEY ((service, metric, hour), minute, source)){}",
            twcs("minute ASC, source ASC")
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.names_services (day bigint, service text, \
             hours set<int>, PRIMARY KEY ((day), service)){}",
            twcs("service ASC")
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.names_metrics (service text, day bigint, \
             metric text, hours set<int>, PRIMARY KEY ((service, day), metric)){}",
            twcs("metric ASC")
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.names_sources (service text, day bigint, \
             source text, hours set<int>, PRIMARY KEY ((service, day), source)){}",
            twcs("source ASC")
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.names_series (service text, metric text, \
             day bigint, source text, hours set<int>, \
             PRIMARY KEY ((service, metric, day), source)){}",
            twcs("source ASC")
        ),
        // Updated in place (not time-windowed): the latest epoch of a day.
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.epochs (service text, day bigint, epoch bigint, \
             PRIMARY KEY ((service), day)) WITH default_time_to_live = {}",
            config.ttl_secs
        ),
    ]
}

/// Reads the stored schema version.
pub fn select_version(keyspace: &str) -> String {
    format!("SELECT version FROM {keyspace}.schema_version WHERE component = ?")
}

/// Records the schema version once (a lightweight transaction, so two
/// stores starting at once agree on one row).
pub fn insert_version(keyspace: &str) -> String {
    format!(
        "INSERT INTO {keyspace}.schema_version (component, version, updated_at) \
         VALUES (?, ?, ?) IF NOT EXISTS"
    )
}

/// What start-up does after reading `schema_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaAction {
    /// The schema is current: use it (DDL is still re-run when managing the
    /// schema; every statement is `IF NOT EXISTS`).
    Use,
    /// No schema yet: create the tables, then record the version.
    Create,
}

/// Decides what to do with the version found in `schema_version` (`None`
/// when there is no row or no table). Refuses newer and unknown versions.
pub fn check_version(
    keyspace: &str,
    found: Option<i32>,
    manage_schema: bool,
) -> Result<SchemaAction> {
    match found {
        None if manage_schema => Ok(SchemaAction::Create),
        None => Err(Error::SchemaMissing {
            keyspace: keyspace.to_string(),
        }),
        Some(SCHEMA_VERSION) => Ok(SchemaAction::Use),
        Some(v) if v > SCHEMA_VERSION => Err(Error::SchemaVersion {
            keyspace: keyspace.to_string(),
            found: v,
            supported: SCHEMA_VERSION,
            hint: "a newer aerie wrote it; upgrade this binary",
        }),
        Some(v) => Err(Error::SchemaVersion {
            keyspace: keyspace.to_string(),
            found: v,
            supported: SCHEMA_VERSION,
            hint: "no migration from that version exists; use a fresh keyspace",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config() -> ScyllaConfig {
        ScyllaConfig {
            keyspace: "ks".into(),
            ttl_secs: 86_400,
            compaction_window_hours: 6,
            ..ScyllaConfig::default()
        }
    }

    #[test]
    fn keyspace_ddl() {
        assert_eq!(
            create_keyspace(&config()),
            "CREATE KEYSPACE IF NOT EXISTS ks WITH replication = {'class': 'SimpleStrategy', \
             'replication_factor': 1} AND durable_writes = true"
        );
        let c = ScyllaConfig {
            keyspace: "ks".into(),
            replication: Replication::NetworkTopologyStrategy {
                datacenters: BTreeMap::from([("us-east".into(), 3), ("eu".into(), 2)]),
            },
            ..ScyllaConfig::default()
        };
        assert_eq!(
            create_keyspace(&c),
            "CREATE KEYSPACE IF NOT EXISTS ks WITH replication = {'class': \
             'NetworkTopologyStrategy', 'eu': 2, 'us-east': 3} AND durable_writes = true"
        );
    }

    #[test]
    fn table_ddl() {
        let twcs = " WITH CLUSTERING ORDER BY (X) AND compaction = {'class': \
            'TimeWindowCompactionStrategy', 'compaction_window_unit': 'HOURS', \
            'compaction_window_size': 6} AND default_time_to_live = 86400 AND \
            gc_grace_seconds = 10800";
        let w = |c: &str| twcs.replace('X', c);
        let expected = vec![
            "CREATE TABLE IF NOT EXISTS ks.schema_version (component text PRIMARY KEY, \
             version int, updated_at bigint)"
                .to_string(),
            "CREATE TABLE IF NOT EXISTS ks.samples (service text, source text, metric text, \
             window_start bigint, first_ts bigint, digest bigint, last_ts bigint, samples int, \
             written_at bigint, chunk blob, PRIMARY KEY ((service, source, metric, \
             window_start), first_ts, digest))"
                .to_string()
                + &w("first_ts ASC, digest ASC"),
            "CREATE TABLE IF NOT EXISTS ks.service_minutes (service text, metric text, \
             hour bigint, minute bigint, source text, value double, PRIMARY KEY ((service, \
             metric, hour), minute, source))"
                .to_string()
                + &w("minute ASC, source ASC"),
            "CREATE TABLE IF NOT EXISTS ks.names_services (day bigint, service text, \
             hours set<int>, PRIMARY KEY ((day), service))"
                .to_string()
                + &w("service ASC"),
            "CREATE TABLE IF NOT EXISTS ks.names_metrics (service text, day bigint, \
             metric text, hours set<int>, PRIMARY KEY ((service, day), metric))"
                .to_string()
                + &w("metric ASC"),
            "CREATE TABLE IF NOT EXISTS ks.names_sources (service text, day bigint, \
             source text, hours set<int>, PRIMARY KEY ((service, day), source))"
                .to_string()
                + &w("source ASC"),
            "CREATE TABLE IF NOT EXISTS ks.names_series (service text, metric text, \
             day bigint, source text, hours set<int>, PRIMARY KEY ((service, metric, day), \
             source))"
                .to_string()
                + &w("source ASC"),
            "CREATE TABLE IF NOT EXISTS ks.epochs (service text, day bigint, epoch bigint, \
             PRIMARY KEY ((service), day)) WITH default_time_to_live = 86400"
                .to_string(),
        ];
        let got = create_tables(&config());
        assert_eq!(got.len(), TABLES.len());
        for ((g, e), t) in got.iter().zip(&expected).zip(TABLES) {
            assert_eq!(g, e, "DDL of {t}");
            assert!(g.contains(&format!("ks.{t} (")), "{t} in creation order");
        }
    }

    #[test]
    fn version_statements() {
        assert_eq!(
            select_version("ks"),
            "SELECT version FROM ks.schema_version WHERE component = ?"
        );
        assert_eq!(
            insert_version("ks"),
            "INSERT INTO ks.schema_version (component, version, updated_at) VALUES (?, ?, ?) \
             IF NOT EXISTS"
        );
    }

    #[test]
    fn version_check_refuses_newer_older_and_missing() {
        assert_eq!(
            check_version("ks", None, true).unwrap(),
            SchemaAction::Create
        );
        assert_eq!(
            check_version("ks", Some(SCHEMA_VERSION), false).unwrap(),
            SchemaAction::Use
        );
        assert_eq!(
            check_version("ks", Some(SCHEMA_VERSION), true).unwrap(),
            SchemaAction::Use
        );
        let e = check_version("ks", None, false).unwrap_err();
        assert!(matches!(e, Error::SchemaMissing { .. }));
        assert!(e.to_string().contains("manage_schema is false"), "{e}");
        let e = check_version("ks", Some(SCHEMA_VERSION + 1), true).unwrap_err();
        assert_eq!(
            e.to_string(),
            "keyspace ks has aerie schema version 2, this build supports version 1 only; \
             a newer aerie wrote it; upgrade this binary"
        );
        let e = check_version("ks", Some(0), true).unwrap_err();
        assert!(e.to_string().contains("no migration"), "{e}");
        let e = check_version("ks", Some(-7), true).unwrap_err();
        assert!(matches!(e, Error::SchemaVersion { found: -7, .. }));
    }
}
