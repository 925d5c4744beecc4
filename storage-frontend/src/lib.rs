//! The storage-frontend: writes, range reads, the name index and fragment execution over a storage backend.
//!
//! ```text
//!  gRPC aerie.storage.v1.Storage (service-kit stack: stats, shed, limits, panics)
//!     |  grpc: proto -> domain, limits, deadlines, chunked streams, counters
//!     |  fragment: slices, functions of time, folding across series
//!     v
//!  Backend trait --- embedded: libs/tsdb under <data_dir>/storage (default)
//!                \-- scylla:   libs/scylla-store over the `scylla` driver
//! ```
//!
//! The library exposes [`Config`] (the `[storage]` section of `aerie.toml`),
//! [`bind`] and [`run`]; the `aerie` binary and the tests call the same functions.

pub mod backend;
pub mod config;
pub mod convert;
pub mod error;
pub mod fragment;
pub mod grpc;

use std::net::SocketAddr;
use std::sync::Arc;

use proto::storage::storage_server::StorageServer;
use service_kit::{App, Bound, ConfigError, ServeError, Shutdown, StatsReceiver};
use stats::Gauge;

pub use backend::{Backend, BackendError, EmbeddedBackend, ScyllaBackend};
pub use config::{BackendKind, Config, EmbeddedConfig, Fsync, Limits};
pub use grpc::StorageService;

/// The service's name in logs, stats and admin answers.
pub const NAME: &str = "storage";

/// Why the storage service failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("storage backend {backend} cannot start: {source}")]
    Backend {
        backend: &'static str,
        #[source]
        source: BackendError,
    },
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// The service with its ports bound and its backend open, ready to [`Server::run`].
pub struct Server {
    bound: Bound,
    stats: StatsReceiver,
    config: Config,
    backend: Arc<dyn Backend>,
    _gauges: Vec<Gauge>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("bound", &self.bound)
            .field("backend", &self.backend.kind())
            .finish()
    }
}

/// Validates `config`, opens the backend (recovering the embedded engine's WAL,
/// or connecting to the cluster and checking its schema) and binds the ports.
pub async fn bind(config: Config) -> Result<Server, Error> {
    config.validate()?;
    let stats = StatsReceiver::new();
    let clock: Arc<dyn tsdb::Clock> = Arc::new(tsdb::SystemClock);
    let mut gauges = Vec::new();
    let backend: Arc<dyn Backend> = match config.backend {
        BackendKind::Embedded => {
            let dir = config.embedded.dir_under(&config.common.data_dir);
            let embedded = EmbeddedBackend::open(&dir, config.embedded.options(clock))
                .await
                .map_err(|source| Error::Backend {
                    backend: "embedded",
                    source,
                })?;
            gauges = engine_gauges(&stats, &embedded);
            tracing::info!(dir = %dir.display(), "embedded storage open");
            Arc::new(embedded)
        }
        BackendKind::Scylla => Arc::new(
            ScyllaBackend::connect(config.scylla.clone(), clock)
                .await
                .map_err(|source| Error::Backend {
                    backend: "scylla",
                    source,
                })?,
        ),
    };
    let bound = Bound::bind(NAME, &config.common.listen_host, &config.server).await?;
    Ok(Server {
        bound,
        stats,
        config,
        backend,
        _gauges: gauges,
    })
}

/// Engine state read on export (`storage/engine/...`).
/// The gauges live as long as the returned handles.
fn engine_gauges(stats: &StatsReceiver, embedded: &EmbeddedBackend) -> Vec<Gauge> {
    let s = stats.scope("storage").scope("engine");
    let gauge = |name: &str, f: fn(&tsdb::Engine) -> f64| {
        let e = embedded.engine().clone();
        s.gauge(name, move || f(&e))
    };
    vec![
        gauge("series", |e| e.stats().series as f64),
        gauge("wal_bytes", |e| e.stats().wal_bytes as f64),
        gauge("wal_syncs", |e| e.stats().wal_syncs as f64),
        gauge("blocks_sealed", |e| e.stats().blocks_sealed as f64),
        gauge("compactions", |e| e.stats().compactions as f64),
        gauge("blocks_expired", |e| e.stats().blocks_expired as f64),
        gauge("block_bytes", |e| e.block_bytes() as f64),
        gauge("head_bytes", |e| e.head_heap_bytes() as f64),
        gauge("corrupt_blocks", |e| e.corrupt_blocks().len() as f64),
    ]
}

impl Server {
    /// Where the HTTP API and admin endpoints listen.
    pub fn http_addr(&self) -> SocketAddr {
        self.bound.http_addr()
    }

    /// Where the gRPC API listens.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.bound.grpc_addr()
    }

    /// Serves until `shutdown` fires, then drains.
    pub async fn run(self, shutdown: Shutdown) -> Result<(), Error> {
        let Server {
            bound,
            stats,
            config,
            backend,
            _gauges,
        } = self;
        let service = StorageService::new(
            backend.clone(),
            config.limits.clone(),
            config.server.request_timeout,
            &stats,
            shutdown.clone(),
        );
        let mut app = App::new(NAME, stats.clone());
        app.grpc = app.grpc.add_service(
            StorageServer::new(service)
                .max_decoding_message_size(config.server.max_request_bytes)
                .max_encoding_message_size(usize::MAX),
        );
        if !config.serverset.is_empty() {
            let s = stats.scope("storage").scope("serverset");
            tokio::spawn(serverset::announce(
                config.common.zookeeper.join(","),
                config.serverset.clone(),
                member(&config, &bound),
                ANNOUNCE_RETRY,
                serverset::AnnounceStats {
                    announced: s.counter("announced"),
                    errors: s.counter("errors"),
                },
                shutdown.child_token(),
            ));
        }
        let maintenance = tokio::spawn(maintain(
            backend,
            config.embedded.maintenance_interval,
            stats,
            shutdown.clone(),
        ));
        let served = bound.serve(app, shutdown).await;
        maintenance.abort();
        served?;
        Ok(())
    }
}

/// Wait before announcing again after a failed or lost ZooKeeper session.
const ANNOUNCE_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// This storage-frontend as a server-set member: gRPC as the service endpoint
/// and as `grpc`, the HTTP admin port as `http`.
fn member(config: &Config, bound: &Bound) -> serverset::Member {
    let host = if !config.announce_host.is_empty() {
        config.announce_host.clone()
    } else {
        match config.common.listen_host.parse::<std::net::IpAddr>() {
            Ok(ip) if ip.is_unspecified() => {
                service_kit::host::machine_name().unwrap_or_else(|| "localhost".into())
            }
            _ => config.common.listen_host.clone(),
        }
    };
    let at = |port: u16| serverset::Endpoint {
        host: host.clone(),
        port,
    };
    let grpc = at(bound.grpc_addr().port());
    serverset::Member::alive(
        grpc.clone(),
        [
            ("grpc".to_string(), grpc),
            ("http".to_string(), at(bound.http_addr().port())),
        ]
        .into(),
    )
}

/// Seals, compacts and applies retention every `every` until shutdown.
async fn maintain(
    backend: Arc<dyn Backend>,
    every: std::time::Duration,
    stats: StatsReceiver,
    shutdown: Shutdown,
) {
    let runs = stats.scope("storage").scope("maintenance");
    let (ok, failed) = (runs.counter("runs"), runs.counter("failures"));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match backend.maintain().await {
            Ok(report) => {
                ok.incr();
                if !report.is_empty() {
                    tracing::debug!(%report, "storage maintenance");
                }
            }
            Err(e) => {
                failed.incr();
                tracing::warn!(error = %e, "storage maintenance failed");
            }
        }
    }
}

/// Binds and serves until `shutdown` fires.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), Error> {
    bind(config).await?.run(shutdown).await
}
