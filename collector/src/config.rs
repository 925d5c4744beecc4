//! The `[collector]` section of `aerie.toml`: ports, storage endpoints, scraping,
//! hygiene, routing and spill, discovery and push settings, with validation.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use service_kit::{Common, ConfigError, ServerConfig};

/// Configuration of the collector service (`[collector]` in `aerie.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Settings shared by the whole process (top level of the file, and shared flags).
    #[serde(skip)]
    pub common: Common,
    /// gRPC endpoints of the storage-frontends; series are spread over them by a
    /// consistent hash of their key.
    pub storage: Vec<String>,
    /// ZooKeeper server set of the storage-frontends (members' `grpc` additional
    /// endpoint, else their service endpoint); when set (and `zookeeper` is), its
    /// members replace `storage` as they come and go. Empty: `storage` only.
    pub storage_serverset: String,
    /// Ports and request limits.
    pub server: ServerConfig,
    /// Scraping.
    pub scrape: ScrapeConfig,
    /// Name hygiene.
    pub hygiene: HygieneConfig,
    /// Batching, queues, retries and the on-disk spill.
    pub routing: RoutingConfig,
    /// Target discovery.
    pub discovery: DiscoveryConfig,
    /// Push paths: tasks, remote_write, import.
    pub push: PushConfig,
    /// Sharing the targets between collectors through ZooKeeper (used when
    /// `zookeeper` is set).
    pub membership: MembershipConfig,
    /// Scrape the `/admin/metrics.json` of every Aerie service of this process
    /// (service `aerie`, one source per component) when the process tells the
    /// collector where they listen (all-in-one mode does).
    pub self_monitoring: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            common: Common::default(),
            storage: vec!["http://127.0.0.1:7421".into()],
            storage_serverset: String::new(),
            server: ServerConfig::with_ports(7410, 7411),
            scrape: ScrapeConfig::default(),
            hygiene: HygieneConfig::default(),
            routing: RoutingConfig::default(),
            discovery: DiscoveryConfig::default(),
            push: PushConfig::default(),
            membership: MembershipConfig::default(),
            self_monitoring: true,
        }
    }
}

/// `[collector.scrape]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScrapeConfig {
    /// Interval of targets that do not set `__scrape_interval__`.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Timeout of targets that do not set `__scrape_timeout__`; must be below the interval.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Largest scrape body accepted (after gzip); larger ones fail the scrape.
    pub max_body_bytes: usize,
}

impl Default for ScrapeConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            max_body_bytes: 32 << 20,
        }
    }
}

/// `[collector.hygiene]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HygieneConfig {
    /// Longest metric name (labels included) accepted, bytes.
    pub max_name_bytes: usize,
    /// Most distinct metrics one source may have; new ones past that are rejected.
    pub max_series_per_source: usize,
    /// How many of the last rejected names of each target (and of the push paths)
    /// `/admin/collector/rejected` shows.
    pub keep_rejected: usize,
}

impl Default for HygieneConfig {
    fn default() -> Self {
        Self {
            max_name_bytes: 512,
            max_series_per_source: 100_000,
            keep_rejected: 32,
        }
    }
}

/// `[collector.routing]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Most samples in one Write to a storage-frontend.
    pub batch_max_samples: usize,
    /// Most samples queued in memory per storage-frontend; more go to the spill.
    pub queue_max_samples: usize,
    /// Deadline of one Write.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Attempts of a batch before it is spilled to disk.
    pub retry_attempts: u32,
    /// First retry delay; doubles per attempt, with jitter.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    /// Longest retry delay.
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// Where batches wait on disk while storage is down; empty: `<data_dir>/collector/spill`.
    pub spill_dir: PathBuf,
    /// Most bytes on disk per storage-frontend; past it samples are dropped and counted.
    pub spill_max_bytes: u64,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            batch_max_samples: 20_000,
            queue_max_samples: 2_000_000,
            write_timeout: Duration::from_secs(10),
            retry_attempts: 4,
            retry_base: Duration::from_millis(200),
            retry_max: Duration::from_secs(5),
            spill_dir: PathBuf::new(),
            spill_max_bytes: 1 << 30,
        }
    }
}

/// `[collector.discovery]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoveryConfig {
    /// How often the targets file is checked for changes.
    #[serde(with = "humantime_serde")]
    pub targets_reload: Duration,
    /// How long to wait before reconnecting to ZooKeeper after a failure.
    #[serde(with = "humantime_serde")]
    pub zookeeper_retry: Duration,
    /// ZooKeeper server sets to scrape (`[[collector.discovery.serversets]]`).
    pub serversets: Vec<ServerSetConfig>,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            targets_reload: Duration::from_secs(5),
            zookeeper_retry: Duration::from_secs(2),
            serversets: Vec::new(),
        }
    }
}

/// One ZooKeeper server set (Finagle/Aurora member znodes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSetConfig {
    /// The server set's znode, e.g. `/aurora/cuckoo/prod/frontend`.
    pub path: String,
    /// Service of its members' series.
    pub service: String,
    /// Role its members form for `members(...)`; empty: `role.<last path part>`.
    #[serde(default)]
    pub role: String,
    /// Which additional endpoint to scrape (e.g. `admin`); empty: the service endpoint.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// Path scraped on each member.
    #[serde(default = "default_metrics_path")]
    pub metrics_path: String,
    /// `http` or `https`.
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// Scrape interval; unset: `scrape.interval`.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub interval: Option<Duration>,
}

fn default_endpoint() -> String {
    "admin".into()
}
fn default_metrics_path() -> String {
    "/admin/metrics.json".into()
}
fn default_scheme() -> String {
    "http".into()
}

/// `[collector.push]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// Interval of pushes that do not give one.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Source of the rolled-up series of pushed metrics.
    pub source: String,
    /// How long per-task values are kept for the rollup; a task re-pushing an
    /// interval older than this replaces the rollup with its own values only.
    #[serde(with = "humantime_serde")]
    pub rollup_window: Duration,
    /// Largest remote_write or import body accepted once decompressed, bytes (the
    /// compressed body is bounded by `server.max_request_bytes`).
    pub max_decoded_bytes: usize,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            source: "tasks".into(),
            rollup_window: Duration::from_secs(3 * 3600),
            max_decoded_bytes: 64 << 20,
        }
    }
}

/// `[collector.membership]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MembershipConfig {
    /// Znode under which collectors register (ephemeral sequential children).
    pub path: String,
    /// This collector's id among the members; empty: `<hostname or listen_host>:<http port>`.
    pub id: String,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        Self {
            path: "/aerie/collector/members".into(),
            id: String::new(),
        }
    }
}

impl Config {
    /// Checks the section; keys are named under `collector.`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate("collector.server")?;
        if self.storage.is_empty() {
            return Err(ConfigError::invalid(
                "collector.storage",
                "must name at least one storage-frontend gRPC endpoint",
            ));
        }
        for (i, s) in self.storage.iter().enumerate() {
            if !(s.starts_with("http://") || s.starts_with("https://")) {
                return Err(ConfigError::invalid(
                    format!("collector.storage[{i}]"),
                    format!("\"{s}\" is not an http:// or https:// URL"),
                ));
            }
        }
        if !self.storage_serverset.is_empty()
            && (!self.storage_serverset.starts_with('/') || self.storage_serverset.ends_with('/'))
        {
            return Err(ConfigError::invalid(
                "collector.storage_serverset",
                "must start with '/' and not end with '/'",
            ));
        }
        let sc = &self.scrape;
        if sc.interval.is_zero() {
            return Err(ConfigError::invalid(
                "collector.scrape.interval",
                "must be positive",
            ));
        }
        if sc.timeout.is_zero() || sc.timeout >= sc.interval {
            return Err(ConfigError::invalid(
                "collector.scrape.timeout",
                "must be positive and shorter than collector.scrape.interval",
            ));
        }
        if self.hygiene.max_name_bytes == 0 || self.hygiene.max_series_per_source == 0 {
            return Err(ConfigError::invalid(
                "collector.hygiene",
                "max_name_bytes and max_series_per_source must be positive",
            ));
        }
        let r = &self.routing;
        if r.batch_max_samples == 0 || r.queue_max_samples < r.batch_max_samples {
            return Err(ConfigError::invalid(
                "collector.routing.queue_max_samples",
                "batch_max_samples must be positive and at most queue_max_samples",
            ));
        }
        if r.retry_attempts == 0 {
            return Err(ConfigError::invalid(
                "collector.routing.retry_attempts",
                "must be at least 1",
            ));
        }
        for (i, s) in self.discovery.serversets.iter().enumerate() {
            let key = format!("collector.discovery.serversets[{i}]");
            if !s.path.starts_with('/') {
                return Err(ConfigError::invalid(
                    format!("{key}.path"),
                    "must start with '/'",
                ));
            }
            if s.service.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{key}.service"),
                    "must not be empty",
                ));
            }
            if s.scheme != "http" && s.scheme != "https" {
                return Err(ConfigError::invalid(
                    format!("{key}.scheme"),
                    "must be http or https",
                ));
            }
        }
        if self.push.interval.is_zero() {
            return Err(ConfigError::invalid(
                "collector.push.interval",
                "must be positive",
            ));
        }
        if self.push.max_decoded_bytes < 1024 {
            return Err(ConfigError::invalid(
                "collector.push.max_decoded_bytes",
                "must be at least 1024",
            ));
        }
        let m = &self.membership;
        if !m.path.starts_with('/') || m.path.ends_with('/') {
            return Err(ConfigError::invalid(
                "collector.membership.path",
                "must start with '/' and not end with '/'",
            ));
        }
        if sc.max_body_bytes < 1024 {
            return Err(ConfigError::invalid(
                "collector.scrape.max_body_bytes",
                "must be at least 1024",
            ));
        }
        if r.retry_base.is_zero() || r.retry_max < r.retry_base {
            return Err(ConfigError::invalid(
                "collector.routing.retry_max",
                "retry_base must be positive and at most retry_max",
            ));
        }
        if r.write_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "collector.routing.write_timeout",
                "must be positive",
            ));
        }
        if self.discovery.targets_reload.is_zero() || self.discovery.zookeeper_retry.is_zero() {
            return Err(ConfigError::invalid(
                "collector.discovery",
                "targets_reload and zookeeper_retry must be positive",
            ));
        }
        if self.push.source.is_empty() {
            return Err(ConfigError::invalid(
                "collector.push.source",
                "must not be empty",
            ));
        }
        Ok(())
    }

    /// The spill directory: `routing.spill_dir`, or `<data_dir>/collector/spill`.
    pub fn spill_dir(&self) -> PathBuf {
        if self.routing.spill_dir.as_os_str().is_empty() {
            self.common.data_dir.join("collector").join("spill")
        } else {
            self.routing.spill_dir.clone()
        }
    }
}
