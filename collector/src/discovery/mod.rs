//! Target discovery: several providers (the static file_sd file, ZooKeeper server
//! sets, the collector's own components) each publish their targets into one
//! [`TargetSet`]; the scheduler follows its changes and `ListRoles` reads its roles.

pub mod file_sd;
pub mod serverset;
pub mod yaml;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::watch;

use crate::model::fnv1a;

/// One endpoint to scrape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// Service of its series.
    pub service: String,
    /// Source of its series.
    pub source: String,
    /// The URL scraped: scheme, address and metrics path.
    pub url: String,
    /// Scrape interval.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Scrape timeout, below the interval.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Roles the source is a member of (`role.x`).
    pub roles: Vec<String>,
    /// Other labels: metadata.
    pub labels: BTreeMap<String, String>,
    /// A component of this process (self-monitoring): always scraped here, never
    /// shared with other collectors.
    pub local: bool,
}

impl Target {
    /// The target's identity: service, source and URL.
    pub fn id(&self) -> String {
        format!("{}|{}|{}", self.service, self.source, self.url)
    }

    /// Where in each interval its scrapes start: FNV-1a of its identity modulo the
    /// interval, so scrapes of many targets spread evenly over the interval.
    pub fn offset(&self) -> Duration {
        let ms = self.interval.as_millis().max(1) as u64;
        Duration::from_millis(fnv1a(self.id().as_bytes()) % ms)
    }
}

/// A role: a named set of sources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Role {
    /// `role.x`.
    pub name: String,
    /// The service its members belong to when they all agree; empty otherwise.
    pub service: String,
    /// Member sources, sorted.
    pub sources: Vec<String>,
}

/// The merged targets of every provider.
#[derive(Debug)]
pub struct TargetSet {
    by_provider: Mutex<BTreeMap<String, Vec<Target>>>,
    version: watch::Sender<u64>,
}

impl Default for TargetSet {
    fn default() -> Self {
        Self {
            by_provider: Mutex::new(BTreeMap::new()),
            version: watch::Sender::new(0),
        }
    }
}

impl TargetSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the targets of `provider`.
    pub fn set(&self, provider: &str, targets: Vec<Target>) {
        let mut map = self.by_provider.lock();
        if map.get(provider) == Some(&targets) {
            return;
        }
        map.insert(provider.to_owned(), targets);
        drop(map);
        self.version.send_modify(|v| *v += 1);
    }

    /// Every target, deduplicated by identity (the first provider wins).
    pub fn all(&self) -> Vec<Target> {
        let map = self.by_provider.lock();
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for t in map.values().flatten() {
            if seen.insert(t.id()) {
                out.push(t.clone());
            }
        }
        out
    }

    /// Follows changes: the receiver sees a new version after every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// The roles, by name.
    pub fn roles(&self) -> BTreeMap<String, Role> {
        let mut roles: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
        for t in self.all() {
            for r in &t.roles {
                let e = roles.entry(r.clone()).or_default();
                e.0.insert(t.service.clone());
                e.1.insert(t.source.clone());
            }
        }
        roles
            .into_iter()
            .map(|(name, (services, sources))| {
                let service = if services.len() == 1 {
                    services.into_iter().next().unwrap_or_default()
                } else {
                    String::new()
                };
                let role = Role {
                    name: name.clone(),
                    service,
                    sources: sources.into_iter().collect(),
                };
                (name, role)
            })
            .collect()
    }
}

/// `x` as a role name: `role.x` unless it already starts with `role.`.
pub fn role_name(x: &str) -> String {
    if x.starts_with("role.") {
        x.to_owned()
    } else {
        format!("role.{x}")
    }
}
