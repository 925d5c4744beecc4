//! The `[storage]` section of `aerie.toml`: which backend, its settings, and the
//! per-request limits, validated before any port is bound.

use std::path::PathBuf;
use std::time::Duration;

use scylla_store::ScyllaConfig;
use serde::{Deserialize, Serialize};
use service_kit::{Common, ConfigError, ServerConfig};

/// Configuration of the storage service (`[storage]` in `aerie.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Settings shared by the whole process (top level of the file, and shared flags).
    #[serde(skip)]
    pub common: Common,
    /// Which backend stores the data: `embedded` (the engine of `libs/tsdb`, under
    /// the data directory) or `scylla` (a ScyllaDB/Cassandra cluster, `[storage.scylla]`).
    pub backend: BackendKind,
    /// Ports and request limits.
    pub server: ServerConfig,
    /// Limits per request.
    pub limits: Limits,
    /// The embedded engine (used when `backend = "embedded"`).
    pub embedded: EmbeddedConfig,
    /// The ScyllaDB/Cassandra cluster (used when `backend = "scylla"`).
    pub scylla: ScyllaConfig,
    /// ZooKeeper server set this storage-frontend announces itself in (e.g.
    /// `/aerie/storage/members`, what a federator zone or the collector follows),
    /// with the top-level `zookeeper` set; "": not announced.
    pub serverset: String,
    /// Host put in the announced member; "": the listen host, or this machine's
    /// host name when that is a wildcard address.
    pub announce_host: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            common: Common::default(),
            backend: BackendKind::Embedded,
            server: ServerConfig::with_ports(7420, 7421),
            limits: Limits::default(),
            embedded: EmbeddedConfig::default(),
            scylla: ScyllaConfig::default(),
            serverset: String::new(),
            announce_host: String::new(),
        }
    }
}

/// The storage backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// The embedded engine.
    Embedded,
    /// ScyllaDB or Cassandra through the `scylla` driver.
    Scylla,
}

/// Per-request guard rails. A request over a limit fails with an error naming the
/// limit and the numbers; nothing is half-answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Most samples one `Write` may carry; a larger batch is refused whole
    /// (INVALID_ARGUMENT) and should be split by the sender.
    pub max_write_samples: usize,
    /// Most series one `Read` or `ExecuteFragment` may touch (a request may ask for less).
    pub max_series: u64,
    /// Most raw samples (or rollup cells) one `Read` or `ExecuteFragment` may touch.
    pub max_samples: u64,
    /// Most steps x groups one fragment may answer with.
    pub max_points: u64,
    /// Most names or series one `Index` lookup returns (a request may ask for less).
    pub max_index_items: u32,
    /// Samples or cells per streamed response message.
    pub chunk_cells: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_write_samples: 1_000_000,
            max_series: 1_000_000,
            max_samples: 2_000_000_000,
            max_points: 20_000_000,
            max_index_items: 100_000,
            chunk_cells: 65_536,
        }
    }
}

/// When the embedded engine's write-ahead log reaches stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fsync {
    /// Every write waits for an fsync that covers it (group commit: concurrent
    /// writes share one). Acknowledged = durable, power loss included.
    Always,
    /// Writes return once the kernel has the bytes: durable across a crash of the
    /// process, not of the machine. For benchmarks and throwaway setups.
    Never,
}

/// Settings of the embedded engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedConfig {
    /// Directory of the engine; empty: `storage` under the data directory.
    pub dir: PathBuf,
    /// WAL durability: `always` or `never`.
    pub fsync: Fsync,
    /// Samples older than now minus this take the backfill path (own blocks,
    /// epoch bump of their service and day).
    #[serde(with = "humantime_serde")]
    pub ooo_window: Duration,
    /// Samples older than now minus this are refused; whole partitions past it are deleted.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Samples newer than now plus this are refused.
    #[serde(with = "humantime_serde")]
    pub future_tolerance: Duration,
    /// Time window of a head partition and of a freshly sealed block.
    #[serde(with = "humantime_serde")]
    pub partition: Duration,
    /// Window compaction merges cold blocks into (a multiple of `partition`).
    #[serde(with = "humantime_serde")]
    pub compacted_partition: Duration,
    /// Window compaction merges cold compacted windows into once all of it
    /// is cold (0 for none, the default; else a multiple of
    /// `compacted_partition`): less disk, slower raw reads.
    #[serde(with = "humantime_serde")]
    pub long_partition: Duration,
    /// A series absent for longer than this is out of the name index in between.
    #[serde(with = "humantime_serde")]
    pub index_gap: Duration,
    /// Threads one query uses; 0: one per core.
    pub read_threads: usize,
    /// Code raw decimals in blocks against their 5-minute rollup: less than
    /// half the disk for raw samples, twice the CPU to read them.
    pub raw_against_rollup: bool,
    /// How often cold head partitions are sealed, blocks compacted and retention applied.
    #[serde(with = "humantime_serde")]
    pub maintenance_interval: Duration,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::new(),
            fsync: Fsync::Always,
            ooo_window: Duration::from_secs(600),
            retention: Duration::from_secs(30 * 86_400),
            future_tolerance: Duration::from_secs(600),
            partition: Duration::from_secs(2 * 3600),
            compacted_partition: Duration::from_secs(86_400),
            long_partition: Duration::ZERO,
            index_gap: Duration::from_secs(3600),
            read_threads: 0,
            raw_against_rollup: true,
            maintenance_interval: Duration::from_secs(60),
        }
    }
}

impl EmbeddedConfig {
    /// The engine's directory given the process data directory.
    pub fn dir_under(&self, data_dir: &std::path::Path) -> PathBuf {
        if self.dir.as_os_str().is_empty() {
            data_dir.join("storage")
        } else {
            self.dir.clone()
        }
    }

    /// The engine's options (time from `clock`).
    pub fn options(&self, clock: std::sync::Arc<dyn tsdb::Clock>) -> tsdb::Options {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let defaults = tsdb::Options::default();
        tsdb::Options {
            clock,
            ooo_window_ms: ms(self.ooo_window),
            retention_ms: ms(self.retention),
            future_tolerance_ms: ms(self.future_tolerance),
            fsync: match self.fsync {
                Fsync::Always => tsdb::FsyncPolicy::Always,
                Fsync::Never => tsdb::FsyncPolicy::Never,
            },
            partition_ms: ms(self.partition),
            compacted_partition_ms: ms(self.compacted_partition),
            long_partition_ms: ms(self.long_partition),
            index_gap_ms: ms(self.index_gap),
            read_threads: if self.read_threads == 0 {
                defaults.read_threads
            } else {
                self.read_threads
            },
            raw_against_rollup: self.raw_against_rollup,
            ..defaults
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let key = |k: &str| format!("storage.embedded.{k}");
        let positive = [
            ("retention", self.retention),
            ("partition", self.partition),
            ("compacted_partition", self.compacted_partition),
            ("maintenance_interval", self.maintenance_interval),
        ];
        for (name, d) in positive {
            if d.is_zero() {
                return Err(ConfigError::invalid(key(name), "must be longer than zero"));
            }
        }
        if self.ooo_window >= self.retention {
            return Err(ConfigError::invalid(
                key("ooo_window"),
                format!(
                    "must be shorter than storage.embedded.retention ({})",
                    humantime::format_duration(self.retention)
                ),
            ));
        }
        // Each window a whole number of the one below it (a long window may
        // be 0, none).
        let windows = [
            (
                "compacted_partition",
                self.compacted_partition,
                "partition",
                self.partition,
                "",
            ),
            (
                "long_partition",
                self.long_partition,
                "compacted_partition",
                self.compacted_partition,
                "0 or ",
            ),
        ];
        for (name, d, of, base, zero) in windows {
            if base.as_millis() == 0 || !d.as_millis().is_multiple_of(base.as_millis()) {
                return Err(ConfigError::invalid(
                    key(name),
                    format!(
                        "must be {zero}a multiple of storage.embedded.{of} ({})",
                        humantime::format_duration(base)
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl Config {
    /// Checks the section; keys are named under `storage.`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate("storage.server")?;
        let l = &self.limits;
        let counts = [
            ("max_write_samples", l.max_write_samples as u64),
            ("max_series", l.max_series),
            ("max_samples", l.max_samples),
            ("max_points", l.max_points),
            ("max_index_items", u64::from(l.max_index_items)),
            ("chunk_cells", l.chunk_cells as u64),
        ];
        for (name, v) in counts {
            if v == 0 {
                return Err(ConfigError::invalid(
                    format!("storage.limits.{name}"),
                    "must be at least 1",
                ));
            }
        }
        if !self.serverset.is_empty() {
            if !self.serverset.starts_with('/') || self.serverset.ends_with('/') {
                return Err(ConfigError::invalid(
                    "storage.serverset",
                    format!("\"{}\" is not a ZooKeeper path", self.serverset),
                ));
            }
            if self.common.zookeeper.is_empty() {
                return Err(ConfigError::invalid(
                    "storage.serverset",
                    "needs the top-level zookeeper ensemble",
                ));
            }
        }
        match self.backend {
            BackendKind::Embedded => self.embedded.validate(),
            BackendKind::Scylla => self
                .scylla
                .validate()
                .map_err(|e| ConfigError::invalid("storage.scylla", e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        Config::default().validate().unwrap();
        let mut c = Config::default();
        c.embedded.ooo_window = c.embedded.retention;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("storage.embedded.ooo_window"), "{e}");

        let mut c = Config::default();
        c.embedded.long_partition = Duration::from_secs(36 * 3600);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("storage.embedded.long_partition"), "{e}");
        c.embedded.long_partition = Duration::ZERO;
        c.validate().unwrap();

        let mut c = Config::default();
        c.limits.chunk_cells = 0;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("storage.limits.chunk_cells"), "{e}");

        let mut c = Config {
            serverset: "/aerie/storage".into(),
            ..Config::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("storage.serverset") && e.contains("zookeeper"),
            "{e}"
        );
        c.common.zookeeper = vec!["127.0.0.1:2181".into()];
        c.validate().unwrap();
        c.serverset = "aerie/storage/".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("storage.serverset"), "{e}");

        let mut c = Config {
            backend: BackendKind::Scylla,
            ..Config::default()
        };
        c.scylla.nodes.clear();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("storage.scylla"), "{e}");
    }

    #[test]
    fn data_dir_is_the_default_home() {
        let c = EmbeddedConfig::default();
        assert_eq!(
            c.dir_under(std::path::Path::new("/d")),
            PathBuf::from("/d/storage")
        );
    }
}
