//! End-to-end test harness: [`TestCluster`] runs every Aerie service in this process
//! through the same `bind`/`run` the binary uses, on loopback ports picked by the
//! OS, and stops them when dropped. Tests then talk to it only over the wire.
//!
//! It lives here rather than in `libs/test-support` because library crates never
//! depend on service crates (ARCHITECTURE.md); the third-party parts (memcached,
//! ZooKeeper) stay in `test-support`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use service_kit::{Common, ServerConfig, Shutdown};

/// Where one service of the cluster listens.
#[derive(Debug, Clone, Copy)]
pub struct Endpoints {
    pub http: SocketAddr,
    pub grpc: SocketAddr,
}

impl Endpoints {
    /// Base URL of the service's HTTP port.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http)
    }
    /// URL of the service's gRPC port.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }
}

/// Settings of a test cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// memcached servers for the query-federator.
    pub memcached: Vec<String>,
    /// ZooKeeper ensemble.
    pub zookeeper: Vec<String>,
    /// The collector's file_sd targets file; empty: none.
    pub targets: PathBuf,
    /// The collector's default scrape interval (its timeout is 80% of it); `None`:
    /// the default (1 minute).
    pub scrape_interval: Option<std::time::Duration>,
}

/// Every service of Aerie, in-process, on picked loopback ports.
#[derive(Debug)]
pub struct TestCluster {
    services: BTreeMap<&'static str, Endpoints>,
    shutdown: Shutdown,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _data: tempfile::TempDir,
}

macro_rules! start_service {
    ($krate:ident, $common:expr, $shutdown:expr, $services:expr, $tasks:expr) => {{
        // Services gain options of their own; the defaults fill them in.
        #[allow(clippy::needless_update)]
        let config = $krate::Config {
            common: $common.clone(),
            server: ServerConfig::with_ports(0, 0),
            ..Default::default()
        };
        let server = $krate::bind(config)
            .await
            .with_context(|| format!("cannot bind {}", $krate::NAME))?;
        $services.insert(
            $krate::NAME,
            Endpoints {
                http: server.http_addr(),
                grpc: server.grpc_addr(),
            },
        );
        let token = $shutdown.child_token();
        $tasks.push(tokio::spawn(async move {
            server.run(token).await.map_err(anyhow::Error::from)
        }));
    }};
}

impl TestCluster {
    /// Starts all five services with no memcached or ZooKeeper.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(ClusterOptions::default()).await
    }

    /// Starts all five services with `options`.
    pub async fn start_with(options: ClusterOptions) -> anyhow::Result<Self> {
        let data = tempfile::Builder::new()
            .prefix("aerie-cluster-")
            .tempdir()
            .context("cannot create a data directory")?;
        let common = Common {
            listen_host: "127.0.0.1".into(),
            data_dir: data.path().to_owned(),
            targets: options.targets.clone(),
            memcached: options.memcached,
            zookeeper: options.zookeeper,
        };
        let shutdown = Shutdown::new();
        let mut services = BTreeMap::new();
        let mut tasks = Vec::new();
        // Storage first: the collector writes to its gRPC port.
        start_service!(storage_frontend, common, shutdown, services, tasks);
        let mut collector_config = collector::Config {
            common: common.clone(),
            server: ServerConfig::with_ports(0, 0),
            storage: vec![services[storage_frontend::NAME].grpc_url()],
            ..Default::default()
        };
        if let Some(interval) = options.scrape_interval {
            collector_config.scrape.interval = interval;
            collector_config.scrape.timeout = interval.mul_f64(0.8);
            collector_config.discovery.targets_reload =
                interval.min(collector_config.discovery.targets_reload);
        }
        let mut collector_server = collector::bind(collector_config)
            .await
            .context("cannot bind collector")?;
        services.insert(
            collector::NAME,
            Endpoints {
                http: collector_server.http_addr(),
                grpc: collector_server.grpc_addr(),
            },
        );
        let query_config = query_federator::Config {
            common: common.clone(),
            server: ServerConfig::with_ports(0, 0),
            zones: vec![query_federator::ZoneConfig {
                endpoints: vec![services[storage_frontend::NAME].grpc_url()],
                ..Default::default()
            }],
            collector: services[collector::NAME].grpc_url(),
            ..Default::default()
        };
        let query_server = query_federator::bind(query_config)
            .await
            .context("cannot bind query-federator")?;
        services.insert(
            query_federator::NAME,
            Endpoints {
                http: query_server.http_addr(),
                grpc: query_server.grpc_addr(),
            },
        );
        let token = shutdown.child_token();
        tasks.push(tokio::spawn(async move {
            query_server.run(token).await.map_err(anyhow::Error::from)
        }));
        start_service!(alerter, common, shutdown, services, tasks);
        start_service!(tracer, common, shutdown, services, tasks);
        // Self-monitoring, as in all-in-one mode.
        collector_server.monitor_components(
            services
                .iter()
                .map(|(name, e)| ((*name).to_owned(), e.http))
                .collect(),
        );
        let token = shutdown.child_token();
        tasks.push(tokio::spawn(async move {
            collector_server
                .run(token)
                .await
                .map_err(anyhow::Error::from)
        }));
        Ok(Self {
            services,
            shutdown,
            tasks,
            _data: data,
        })
    }

    /// Where service `name` (`storage`, `collector`, ...) listens.
    pub fn endpoints(&self, name: &str) -> Endpoints {
        *self
            .services
            .get(name)
            .unwrap_or_else(|| panic!("no service named {name} in the cluster"))
    }

    /// The names of the services running.
    pub fn names(&self) -> Vec<&'static str> {
        self.services.keys().copied().collect()
    }

    /// Stops every service, waits for them to drain, and reports the first failure.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        for task in self.tasks.drain(..) {
            task.await.context("a service task panicked")??;
        }
        Ok(())
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
