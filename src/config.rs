//! The whole `aerie.toml`: process-wide settings at the top level, one section per
//! service. Loaded through service-kit's layers (file, `AERIE_*__*` variables,
//! `--set`), then the shared flags, then validated before any port is bound.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use service_kit::Common;
use service_kit::config::{ConfigError, Sources, Validate, load, split_list};
use service_kit::logging::LogConfig;

use crate::cli::Shared;

/// Every option of Aerie. `aerie config` prints it in full.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// Address every server binds.
    pub listen_host: String,
    /// Where embedded storage and local state live; each service uses a subdirectory.
    pub data_dir: PathBuf,
    /// Prometheus file_sd targets file for the collector; empty: none.
    pub targets: PathBuf,
    /// memcached servers (HOST:PORT) for the query span cache; empty: no cache.
    pub memcached: Vec<String>,
    /// ZooKeeper ensemble (HOST:PORT); empty: none.
    pub zookeeper: Vec<String>,
    pub log: LogConfig,
    pub collector: collector::Config,
    pub storage: storage_frontend::Config,
    pub query_federator: query_federator::Config,
    pub alerter: alerter::Config,
    pub tracer: tracer::Config,
}

impl Default for FileConfig {
    fn default() -> Self {
        let c = Common::default();
        Self {
            listen_host: c.listen_host,
            data_dir: c.data_dir,
            targets: c.targets,
            memcached: c.memcached,
            zookeeper: c.zookeeper,
            log: LogConfig::default(),
            collector: Default::default(),
            storage: Default::default(),
            query_federator: Default::default(),
            alerter: Default::default(),
            tracer: Default::default(),
        }
    }
}

impl FileConfig {
    /// The process-wide settings, as every service sees them.
    pub fn common(&self) -> Common {
        Common {
            listen_host: self.listen_host.clone(),
            data_dir: self.data_dir.clone(),
            targets: self.targets.clone(),
            memcached: self.memcached.clone(),
            zookeeper: self.zookeeper.clone(),
        }
    }

    /// Copies the process-wide settings into every service's section.
    fn distribute(&mut self) {
        let common = self.common();
        self.collector.common = common.clone();
        self.storage.common = common.clone();
        self.query_federator.common = common.clone();
        self.alerter.common = common.clone();
        self.tracer.common = common;
    }

    /// The (section, http port, grpc port) of every service, for clash checks.
    fn ports(&self) -> [(&'static str, u16, u16); 5] {
        [
            (
                "collector",
                self.collector.server.http_port,
                self.collector.server.grpc_port,
            ),
            (
                "storage",
                self.storage.server.http_port,
                self.storage.server.grpc_port,
            ),
            (
                "query_federator",
                self.query_federator.server.http_port,
                self.query_federator.server.grpc_port,
            ),
            (
                "alerter",
                self.alerter.server.http_port,
                self.alerter.server.grpc_port,
            ),
            (
                "tracer",
                self.tracer.server.http_port,
                self.tracer.server.grpc_port,
            ),
        ]
    }
}

impl Validate for FileConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.common().validate()?;
        self.log
            .filter()
            .map_err(|e| ConfigError::invalid("log.level", e.to_string()))?;
        self.collector.validate()?;
        self.storage.validate()?;
        self.query_federator.validate()?;
        self.alerter.validate()?;
        self.tracer.validate()?;
        // All-in-one binds every port; two services on one port is a mistake in any mode.
        let mut seen: Vec<(u16, String)> = Vec::new();
        for (section, http, grpc) in self.ports() {
            for (kind, port) in [("http_port", http), ("grpc_port", grpc)] {
                let key = format!("{section}.server.{kind}");
                if port == 0 {
                    continue;
                }
                if let Some((_, other)) = seen.iter().find(|(p, _)| *p == port) {
                    return Err(ConfigError::invalid(
                        key,
                        format!("port {port} is also {other}"),
                    ));
                }
                seen.push((port, key));
            }
        }
        Ok(())
    }
}

/// Loads the configuration the flags describe.
pub fn from_flags(shared: &Shared) -> Result<FileConfig, ConfigError> {
    let sources = Sources::from_process(shared.config.clone(), shared.sets.clone());
    load(&sources, |c: &mut FileConfig| {
        if let Some(d) = &shared.data_dir {
            c.data_dir = d.clone();
        }
        if let Some(t) = &shared.targets {
            c.targets = t.clone();
        }
        if let Some(m) = &shared.memcached {
            c.memcached = split_list(m);
        }
        if let Some(z) = &shared.zookeeper {
            c.zookeeper = split_list(z);
        }
        if let Some(h) = &shared.listen_host {
            c.listen_host = h.clone();
        }
        c.distribute();
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_is_complete_and_valid() {
        // The documented example must parse and hold exactly the defaults.
        let text = include_str!("../aerie.example.toml");
        let parsed: FileConfig = toml::from_str(text).expect("aerie.example.toml parses");
        assert_eq!(parsed, FileConfig::default());
        let full = toml::to_string(&FileConfig::default()).unwrap();
        for line in full
            .lines()
            .filter(|l| l.contains(" = ") || l.starts_with('['))
        {
            let key = line.split(" = ").next().unwrap().trim();
            assert!(
                text.contains(key),
                "aerie.example.toml does not document {key}"
            );
        }
    }

    #[test]
    fn port_clash_is_named() {
        let mut c = FileConfig::default();
        c.tracer.server.http_port = 7420;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("tracer.server.http_port"), "{e}");
        assert!(e.contains("storage.server.http_port"), "{e}");
    }
}
