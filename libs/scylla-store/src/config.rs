//! Connection, schema and storage settings of the Scylla backend, with
//! validation that runs before any connection is opened.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tsdb::DAY_MS;

/// Longest TTL Scylla and Cassandra accept (20 years, in seconds).
pub const MAX_TTL_SECS: u64 = 630_720_000;

/// Keyspace replication, interpolated into `CREATE KEYSPACE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "class", deny_unknown_fields)]
pub enum Replication {
    /// One replication factor for the whole cluster (single data centre,
    /// development).
    SimpleStrategy {
        /// Copies of each partition.
        replication_factor: u32,
    },
    /// A replication factor per data centre (production).
    NetworkTopologyStrategy {
        /// Data-centre name -> copies of each partition there.
        datacenters: BTreeMap<String, u32>,
    },
}

impl Replication {
    /// The smallest replication factor of any data centre.
    pub fn min_factor(&self) -> u32 {
        match self {
            Replication::SimpleStrategy { replication_factor } => *replication_factor,
            Replication::NetworkTopologyStrategy { datacenters } => {
                datacenters.values().copied().min().unwrap_or(0)
            }
        }
    }
}

/// Consistency levels the store accepts. `ANY` and the serial levels are
/// left out on purpose: a write acknowledged at `ANY` may live only in a
/// hint, which is not "durable in the cluster".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// One replica.
    One,
    /// Two replicas.
    Two,
    /// Three replicas.
    Three,
    /// A majority of all replicas.
    Quorum,
    /// Every replica.
    All,
    /// A majority of the replicas in the local data centre.
    LocalQuorum,
    /// A majority in every data centre.
    EachQuorum,
    /// One replica in the local data centre.
    LocalOne,
}

impl Consistency {
    /// The driver's value.
    pub fn to_driver(self) -> scylla::statement::Consistency {
        use scylla::statement::Consistency as C;
        match self {
            Consistency::One => C::One,
            Consistency::Two => C::Two,
            Consistency::Three => C::Three,
            Consistency::Quorum => C::Quorum,
            Consistency::All => C::All,
            Consistency::LocalQuorum => C::LocalQuorum,
            Consistency::EachQuorum => C::EachQuorum,
            Consistency::LocalOne => C::LocalOne,
        }
    }
}

/// Settings of [`crate::ScyllaStore`]. Every duration is in milliseconds
/// unless its name says otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScyllaConfig {
    /// Contact points as `host:port` (default `127.0.0.1:9042`).
    pub nodes: Vec<String>,
    /// Keyspace holding every table (default `aerie`).
    pub keyspace: String,
    /// Replication of the keyspace when the store creates it (default
    /// `SimpleStrategy`, factor 1; use `NetworkTopologyStrategy` with 3
    /// per data centre in production).
    pub replication: Replication,
    /// Create the keyspace and tables when they are missing (default true).
    /// When false the store only checks the schema version.
    pub manage_schema: bool,
    /// Consistency of writes (default `quorum`).
    pub write_consistency: Consistency,
    /// Consistency of reads (default `quorum`).
    pub read_consistency: Consistency,
    /// Data centre whose nodes are preferred as coordinators (default none:
    /// all nodes are equal).
    pub local_datacenter: Option<String>,
    /// Samples expire this long after their timestamp; older samples are
    /// rejected as beyond retention. Also the tables' `default_time_to_live`
    /// (default 30 days).
    pub ttl_secs: u64,
    /// Samples newer than `now - ooo_window_ms` take the normal path; older
    /// ones are backfill and bump the epoch of their (service, day)
    /// (default 10 min).
    pub ooo_window_ms: i64,
    /// Samples newer than `now + future_tolerance_ms` are rejected
    /// (default 10 min).
    pub future_tolerance_ms: i64,
    /// Width of the time window a sample partition covers (default 2 h; must
    /// divide a day).
    pub chunk_window_ms: i64,
    /// `TimeWindowCompactionStrategy` window in hours (default 24).
    pub compaction_window_hours: u32,
    /// Rows per page of a read (default 1000).
    pub page_size: i32,
    /// Client-side timeout of one statement (default 10 s).
    pub request_timeout_ms: u64,
    /// Timeout of opening a connection (default 5 s).
    pub connect_timeout_ms: u64,
    /// Statements of one write in flight at once (default 64).
    pub write_concurrency: usize,
    /// Partitions of one read or fragment fetched at once (default 16).
    pub read_concurrency: usize,
    /// Name-index entries remembered as written, so repeated batches skip
    /// them (default 262144; 0 disables the cache).
    pub index_cache_entries: usize,
    /// Wait for schema agreement after DDL (default true). Turn off only for
    /// single-node test servers that do not report schema versions.
    pub await_schema_agreement: bool,
}

impl Default for ScyllaConfig {
    fn default() -> Self {
        Self {
            nodes: vec!["127.0.0.1:9042".to_string()],
            keyspace: "aerie".to_string(),
            replication: Replication::SimpleStrategy {
                replication_factor: 1,
            },
            manage_schema: true,
            write_consistency: Consistency::Quorum,
            read_consistency: Consistency::Quorum,
            local_datacenter: None,
            ttl_secs: 30 * 86_400,
            ooo_window_ms: 600_000,
            future_tolerance_ms: 600_000,
            chunk_window_ms: 2 * 3_600_000,
            compaction_window_hours: 24,
            page_size: 1000,
            request_timeout_ms: 10_000,
            connect_timeout_ms: 5_000,
            write_concurrency: 64,
            read_concurrency: 16,
            index_cache_entries: 262_144,
            await_schema_agreement: true,
        }
    }
}

/// What is wrong with a [`ScyllaConfig`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `nodes` is empty.
    #[error("scylla.nodes is empty: name at least one contact point as host:port")]
    NoNodes,
    /// A node is not `host:port`.
    #[error("scylla.nodes entry {node:?} is not host:port: {reason}")]
    BadNode {
        /// The entry as given.
        node: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The keyspace is not a plain CQL identifier.
    #[error(
        "scylla.keyspace {0:?} is invalid: use 1-48 letters, digits or '_', starting with a letter"
    )]
    BadKeyspace(String),
    /// A replication factor is zero or there is no data centre.
    #[error("scylla.replication is invalid: {0}")]
    BadReplication(String),
    /// A data-centre name could not be put into CQL safely.
    #[error("data centre name {0:?} is invalid: use letters, digits, '_', '-' or '.'")]
    BadDatacenter(String),
    /// A numeric setting is out of range.
    #[error("scylla.{name} = {value} is out of range: {expected}")]
    OutOfRange {
        /// The setting.
        name: &'static str,
        /// Its value.
        value: i128,
        /// The accepted range.
        expected: &'static str,
    },
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && s.len() <= 48
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_datacenter_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn check_node(node: &str) -> Result<(), ConfigError> {
    let bad = |reason| {
        Err(ConfigError::BadNode {
            node: node.to_string(),
            reason,
        })
    };
    let Some((host, port)) = node.rsplit_once(':') else {
        return bad("missing :port");
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return bad("empty host");
    }
    if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("whitespace in host");
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => bad("port must be 1-65535"),
        Ok(_) => Ok(()),
    }
}

impl ScyllaConfig {
    /// The contact points of `AERIE_SCYLLA_NODES` style text
    /// (comma-separated `host:port`, blanks ignored).
    pub fn parse_nodes(list: &str) -> Vec<String> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Checks every setting; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.nodes.is_empty() {
            return Err(ConfigError::NoNodes);
        }
        for n in &self.nodes {
            check_node(n)?;
        }
        if !is_identifier(&self.keyspace) {
            return Err(ConfigError::BadKeyspace(self.keyspace.clone()));
        }
        match &self.replication {
            Replication::SimpleStrategy { replication_factor } => {
                if *replication_factor == 0 {
                    return Err(ConfigError::BadReplication(
                        "replication_factor must be at least 1".into(),
                    ));
                }
            }
            Replication::NetworkTopologyStrategy { datacenters } => {
                if datacenters.is_empty() {
                    return Err(ConfigError::BadReplication(
                        "NetworkTopologyStrategy needs at least one data centre".into(),
                    ));
                }
                for (dc, rf) in datacenters {
                    if !is_datacenter_name(dc) {
                        return Err(ConfigError::BadDatacenter(dc.clone()));
                    }
                    if *rf == 0 {
                        return Err(ConfigError::BadReplication(format!(
                            "data centre {dc} has replication factor 0"
                        )));
                    }
                }
            }
        }
        if let Some(dc) = &self.local_datacenter
            && !is_datacenter_name(dc)
        {
            return Err(ConfigError::BadDatacenter(dc.clone()));
        }
        let range = |name, value: i128, ok: bool, expected| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::OutOfRange {
                    name,
                    value,
                    expected,
                })
            }
        };
        range(
            "ttl_secs",
            self.ttl_secs as i128,
            (1..=MAX_TTL_SECS).contains(&self.ttl_secs),
            "1 to 630720000 (20 years)",
        )?;
        range(
            "ooo_window_ms",
            self.ooo_window_ms as i128,
            self.ooo_window_ms >= 0 && (self.ooo_window_ms as i128) < self.ttl_secs as i128 * 1000,
            "0 <= ooo_window_ms < ttl_secs * 1000",
        )?;
        range(
            "future_tolerance_ms",
            self.future_tolerance_ms as i128,
            self.future_tolerance_ms >= 0,
            "0 or more",
        )?;
        range(
            "chunk_window_ms",
            self.chunk_window_ms as i128,
            self.chunk_window_ms >= 60_000 && DAY_MS % self.chunk_window_ms == 0,
            "at least 60000 and dividing a day (86400000)",
        )?;
        range(
            "compaction_window_hours",
            self.compaction_window_hours as i128,
            (1..=24 * 366).contains(&self.compaction_window_hours),
            "1 to 8784",
        )?;
        range(
            "page_size",
            self.page_size as i128,
            self.page_size > 0,
            "1 or more",
        )?;
        range(
            "request_timeout_ms",
            self.request_timeout_ms as i128,
            self.request_timeout_ms > 0,
            "1 or more",
        )?;
        range(
            "connect_timeout_ms",
            self.connect_timeout_ms as i128,
            self.connect_timeout_ms > 0,
            "1 or more",
        )?;
        range(
            "write_concurrency",
            self.write_concurrency as i128,
            (1..=4096).contains(&self.write_concurrency),
            "1 to 4096",
        )?;
        range(
            "read_concurrency",
            self.read_concurrency as i128,
            (1..=4096).contains(&self.read_concurrency),
            "1 to 4096",
        )?;
        Ok(())
    }

    /// Retention in milliseconds (the TTL).
    pub fn retention_ms(&self) -> i64 {
        (self.ttl_secs as i64).saturating_mul(1000)
    }

    /// The client-side statement timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        ScyllaConfig::default().validate().unwrap();
    }

    #[test]
    fn parses_from_toml_with_every_field_optional() {
        let c: ScyllaConfig = toml::from_str(
            r#"
            nodes = ["10.0.0.1:9042", "[::1]:19042"]
            keyspace = "metrics_prod"
            write_consistency = "local_quorum"
            local_datacenter = "eu-west"
            replication = { class = "NetworkTopologyStrategy", datacenters = { eu-west = 3, us-east = 2 } }
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.write_consistency, Consistency::LocalQuorum);
        assert_eq!(c.read_consistency, Consistency::Quorum);
        assert_eq!(c.replication.min_factor(), 2);
        let e = toml::from_str::<ScyllaConfig>("nodez = []").unwrap_err();
        assert!(e.to_string().contains("nodez"), "{e}");
        let e = toml::from_str::<ScyllaConfig>(r#"write_consistency = "any""#).unwrap_err();
        assert!(e.to_string().contains("any"), "{e}");
    }

    #[test]
    fn parse_nodes_splits_and_trims() {
        assert_eq!(
            ScyllaConfig::parse_nodes(" a:1, ,b:2,"),
            vec!["a:1".to_string(), "b:2".to_string()]
        );
    }

    #[test]
    fn rejects_each_bad_setting_with_its_name() {
        let check = |f: &dyn Fn(&mut ScyllaConfig), want: &str| {
            let mut c = ScyllaConfig::default();
            f(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{e:?} should mention {want:?}");
        };
        check(&|c| c.nodes.clear(), "nodes is empty");
        check(&|c| c.nodes = vec!["host".into()], "missing :port");
        check(&|c| c.nodes = vec![":9042".into()], "empty host");
        check(&|c| c.nodes = vec!["h:0".into()], "port must be");
        check(&|c| c.nodes = vec!["h:99999".into()], "port must be");
        check(&|c| c.keyspace = "1abc".into(), "keyspace");
        check(&|c| c.keyspace = "a-b".into(), "keyspace");
        check(&|c| c.keyspace = "x".repeat(49), "keyspace");
        check(&|c| c.keyspace = "ks; DROP".into(), "keyspace");
        check(
            &|c| {
                c.replication = Replication::SimpleStrategy {
                    replication_factor: 0,
                }
            },
            "replication_factor",
        );
        check(
            &|c| {
                c.replication = Replication::NetworkTopologyStrategy {
                    datacenters: BTreeMap::new(),
                }
            },
            "at least one data centre",
        );
        check(
            &|c| {
                c.replication = Replication::NetworkTopologyStrategy {
                    datacenters: [("dc'1".to_string(), 3)].into(),
                }
            },
            "dc'1",
        );
        check(&|c| c.local_datacenter = Some("a b".into()), "a b");
        check(&|c| c.ttl_secs = 0, "ttl_secs");
        check(&|c| c.ttl_secs = MAX_TTL_SECS + 1, "ttl_secs");
        check(&|c| c.ooo_window_ms = -1, "ooo_window_ms");
        check(&|c| c.ooo_window_ms = 30 * DAY_MS, "ooo_window_ms");
        check(&|c| c.future_tolerance_ms = -5, "future_tolerance_ms");
        check(&|c| c.chunk_window_ms = 7 * 3_600_000, "chunk_window_ms");
        check(&|c| c.chunk_window_ms = 1000, "chunk_window_ms");
        check(
            &|c| c.compaction_window_hours = 0,
            "compaction_window_hours",
        );
        check(&|c| c.page_size = 0, "page_size");
        check(&|c| c.request_timeout_ms = 0, "request_timeout_ms");
        check(&|c| c.connect_timeout_ms = 0, "connect_timeout_ms");
        check(&|c| c.write_concurrency = 0, "write_concurrency");
        check(&|c| c.read_concurrency = 0, "read_concurrency");
    }
}
