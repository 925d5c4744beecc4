//! The `[query_federator]` section of `aerie.toml`: zones of storage-frontends, the
//! collector that resolves roles, the span cache, and the limits that refuse queries.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use service_kit::{Common, ConfigError, ServerConfig};

/// Configuration of the query-federator service (`[query_federator]` in `aerie.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Settings shared by the whole process (top level of the file, and shared flags).
    #[serde(skip)]
    pub common: Common,
    /// Ports and request limits.
    pub server: ServerConfig,
    /// gRPC URL of a collector answering `ListRoles` for `members(role.x)`; empty: roles
    /// cannot be resolved and such queries fail with an error saying so.
    pub collector: String,
    /// Longest a query may run; its fragments get the remaining time as their gRPC deadline.
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,
    /// Step of an instant query (`/api/v1/query`) when the request gives none: the point
    /// at `t` is the last sample in `(t - step, t]`.
    #[serde(with = "humantime_serde")]
    pub instant_step: Duration,
    /// Limits checked before any fragment runs.
    pub limits: Limits,
    /// The span cache (memcached servers come from the top-level `memcached`).
    pub cache: CacheConfig,
    /// Storage zones; every query runs on each zone that holds part of its range.
    pub zones: Vec<ZoneConfig>,
}

/// Cost limits: a query whose estimate (from name-index totals) exceeds one is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Most series the fragments of one query may read.
    pub max_series: u64,
    /// Most samples (or rollup cells) the fragments of one query may read.
    pub max_samples: u64,
}

/// The span cache in memcached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Longest one cache round trip may take before the cache is bypassed for it.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// After a cache failure, how long the cache is bypassed before it is tried again.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
    /// Expiry of cached spans (their content never goes stale; this only bounds memory).
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Connections per memcached server.
    pub connections: u32,
    /// Bytes of spans kept in the process, in front of memcached (and without it);
    /// 0: none.
    pub local_bytes: u64,
}

/// One storage zone: a set of storage-frontends and the time it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZoneConfig {
    /// The zone's name, shown in explain output and in missing-zone notices.
    pub name: String,
    /// gRPC URLs of its storage-frontends (`http://host:port`); each holds a share
    /// of the series, so every fragment runs on all of them.
    pub endpoints: Vec<String>,
    /// ZooKeeper server set of its storage-frontends (e.g. `/aerie/storage/members`);
    /// with the top-level `zookeeper` set, its members replace `endpoints` as they come
    /// and go. "": none.
    pub serverset: String,
    /// The zone holds data younger than this; "0s": no limit.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// The zone holds data older than this ("0s": up to now).
    #[serde(with = "humantime_serde")]
    pub min_age: Duration,
    /// Resolution of the data the zone stores (its smallest useful step).
    #[serde(with = "humantime_serde")]
    pub resolution: Duration,
}

impl Default for ZoneConfig {
    fn default() -> Self {
        Self {
            name: "local".into(),
            endpoints: vec!["http://127.0.0.1:7421".into()],
            serverset: String::new(),
            max_age: Duration::ZERO,
            min_age: Duration::ZERO,
            resolution: Duration::from_secs(60),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_series: 500_000,
            max_samples: 1_000_000_000,
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(200),
            retry_after: Duration::from_secs(1),
            ttl: Duration::from_secs(7 * 24 * 3600),
            connections: 8,
            local_bytes: 64 << 20,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            common: Common::default(),
            server: ServerConfig::with_ports(7400, 7401),
            collector: String::new(),
            query_timeout: Duration::from_secs(30),
            instant_step: Duration::from_secs(60),
            limits: Limits::default(),
            cache: CacheConfig::default(),
            zones: vec![ZoneConfig::default()],
        }
    }
}

fn is_url(s: &str) -> bool {
    (s.starts_with("http://") || s.starts_with("https://"))
        && s.parse::<http::Uri>().is_ok_and(|u| u.host().is_some())
}

impl Config {
    /// Checks the section; keys are named under `query_federator.`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate("query_federator.server")?;
        let key = |k: &str| format!("query_federator.{k}");
        if !self.collector.is_empty() && !is_url(&self.collector) {
            return Err(ConfigError::invalid(
                key("collector"),
                format!("\"{}\" is not an http:// URL", self.collector),
            ));
        }
        for (name, d) in [
            ("query_timeout", self.query_timeout),
            ("instant_step", self.instant_step),
            ("cache.timeout", self.cache.timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError::invalid(key(name), "must be positive"));
            }
        }
        if self.instant_step.as_millis() == 0 {
            return Err(ConfigError::invalid(
                key("instant_step"),
                "must be at least 1ms",
            ));
        }
        if self.cache.connections == 0 {
            return Err(ConfigError::invalid(
                key("cache.connections"),
                "must be at least 1",
            ));
        }
        if self.limits.max_series == 0 || self.limits.max_samples == 0 {
            return Err(ConfigError::invalid(
                key("limits"),
                "limits must be positive",
            ));
        }
        if self.zones.is_empty() {
            return Err(ConfigError::invalid(
                key("zones"),
                "at least one zone is required",
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, z) in self.zones.iter().enumerate() {
            let zk = |k: &str| key(&format!("zones[{i}].{k}"));
            if z.name.is_empty() || !names.insert(z.name.as_str()) {
                return Err(ConfigError::invalid(
                    zk("name"),
                    format!("\"{}\" is empty or used by another zone", z.name),
                ));
            }
            if z.endpoints.is_empty() && z.serverset.is_empty() {
                return Err(ConfigError::invalid(
                    zk("endpoints"),
                    "lists no storage-frontend (and no serverset is given)",
                ));
            }
            if !z.serverset.is_empty() {
                if !z.serverset.starts_with('/') {
                    return Err(ConfigError::invalid(
                        zk("serverset"),
                        format!("\"{}\" is not a ZooKeeper path", z.serverset),
                    ));
                }
                if self.common.zookeeper.is_empty() {
                    return Err(ConfigError::invalid(
                        zk("serverset"),
                        "needs the top-level zookeeper ensemble",
                    ));
                }
            }
            for e in &z.endpoints {
                if !is_url(e) {
                    return Err(ConfigError::invalid(
                        zk("endpoints"),
                        format!("\"{e}\" is not an http:// URL"),
                    ));
                }
            }
            if !z.max_age.is_zero() && z.max_age <= z.min_age {
                return Err(ConfigError::invalid(
                    zk("max_age"),
                    "must be above min_age (or 0s for no limit)",
                ));
            }
            if z.resolution.as_millis() == 0 {
                return Err(ConfigError::invalid(
                    zk("resolution"),
                    "must be at least 1ms",
                ));
            }
        }
        Ok(())
    }
}
