//! The collector: discovers targets, scrapes them, cleans names and routes samples to
//! storage; accepts pushes (tasks, Prometheus remote_write, text import).
//!
//! ```text
//!  file_sd / server sets / own components --> TargetSet --(membership: rendezvous)-->
//!  scheduler (FNV-1a offsets) --> scrape (HTTP, parse, hygiene, up + scrape stats)
//!     --> Router::submit --hash ring--> per storage-frontend queue --> gRPC Write
//!                                         \--> retries --> on-disk spill --> replay
//!  HTTP /api/v1/{write,import/prometheus,push}, gRPC Push --> Router::write_now (acked once stored)
//! ```
//!
//! The library exposes [`Config`] (the `[collector]` section of `aerie.toml`),
//! [`bind`], [`Server::run`] and [`run`]; the `aerie` binary and the tests call the
//! same functions.

#[doc(hidden)]
pub mod bench;
pub mod config;
pub mod discovery;
pub mod grpc;
pub mod http;
pub mod hygiene;
pub mod membership;
pub mod model;
pub mod parse;
pub mod prompb;
pub mod push;
pub mod router;
pub mod scheduler;
pub mod scrape;
pub mod sink;
pub mod spill;

pub use config::Config;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use service_kit::host::loopback_if_any;
use service_kit::{App, Bound, ConfigError, ServeError, Shutdown, StatsReceiver};
use tonic::service::Routes;

use crate::discovery::{Target, TargetSet, file_sd, serverset};
use crate::hygiene::Limits;
use crate::membership::Membership;
use crate::router::Router;
use crate::scheduler::Statuses;
use crate::scrape::Scraper;
use crate::sink::{GrpcSink, Sink, SinkError};
use crate::spill::SpillError;

/// The service's name in logs, stats and admin answers.
pub const NAME: &str = "collector";

/// Why the collector service failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("collector: {0}")]
    Spill(#[from] SpillError),
    #[error("collector: {0}")]
    Sink(#[from] SinkError),
}

/// The service with its ports bound, ready to [`Server::run`].
pub struct Server {
    bound: Bound,
    stats: StatsReceiver,
    config: Config,
    router: Arc<Router>,
    components: Vec<(String, SocketAddr)>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("http", &self.http_addr())
            .field("grpc", &self.grpc_addr())
            .field("router", &self.router)
            .finish()
    }
}

/// Validates `config`, opens the spill and binds the service's ports; storage is
/// reached over gRPC at `config.storage`.
pub async fn bind(config: Config) -> Result<Server, Error> {
    config.validate()?;
    let timeout = config.routing.write_timeout;
    let max = config.server.max_request_bytes;
    let sinks = config
        .storage
        .iter()
        .map(|e| GrpcSink::new(e, timeout, max).map(|s| Arc::new(s) as Arc<dyn Sink>))
        .collect::<Result<Vec<_>, _>>()?;
    bind_with_sinks(config, sinks).await
}

/// [`bind`] with the given sinks in place of `config.storage` (tests and embedding).
pub async fn bind_with_sinks(config: Config, sinks: Vec<Arc<dyn Sink>>) -> Result<Server, Error> {
    config.validate()?;
    let stats = StatsReceiver::new();
    let router = Arc::new(Router::new(
        sinks,
        &config.routing,
        &config.spill_dir(),
        &stats.scope(NAME),
    )?);
    let bound = Bound::bind(NAME, &config.common.listen_host, &config.server).await?;
    Ok(Server {
        bound,
        stats,
        config,
        router,
        components: Vec::new(),
    })
}

/// The self-monitoring target of one component of this process.
pub fn component_target(config: &Config, name: &str, http: SocketAddr) -> Target {
    let interval = config.scrape.interval;
    Target {
        service: "aerie".into(),
        source: name.to_owned(),
        url: format!("http://{}/admin/metrics.json", loopback_if_any(http)),
        interval,
        timeout: config.scrape.timeout.min(interval.mul_f64(0.8)),
        roles: vec!["role.aerie".into()],
        labels: BTreeMap::new(),
        local: true,
    }
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

    /// Tells the collector which components of this process to scrape for
    /// self-monitoring (name and HTTP address); ignored when
    /// `self_monitoring = false`.
    pub fn monitor_components(&mut self, components: Vec<(String, SocketAddr)>) {
        self.components = components;
    }

    /// Serves until `shutdown` fires, then drains; batches still in memory go to
    /// the spill for the next run.
    pub async fn run(self, shutdown: Shutdown) -> Result<(), Error> {
        let Server {
            bound,
            stats,
            config,
            router,
            components,
        } = self;
        let cstats = stats.scope(NAME);
        let background = shutdown.child_token();
        let targets = Arc::new(TargetSet::new());
        let defaults = file_sd::Defaults {
            interval: config.scrape.interval,
            timeout: config.scrape.timeout,
        };
        let mut tasks = Vec::new();
        if config.self_monitoring && !components.is_empty() {
            let own: Vec<Target> = components
                .iter()
                .map(|(name, addr)| component_target(&config, name, *addr))
                .collect();
            targets.set("self", own);
        }
        if !config.common.targets.as_os_str().is_empty() {
            tasks.push(tokio::spawn(file_sd::watch(
                config.common.targets.clone(),
                defaults,
                config.discovery.targets_reload,
                targets.clone(),
                cstats.scope("discovery").counter("file_sd_errors"),
                background.clone(),
            )));
        }
        let zookeeper = config.common.zookeeper.join(",");
        let zk_connected = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let _zk_gauge = {
            let c = zk_connected.clone();
            cstats
                .scope("discovery")
                .gauge("zookeeper_connected", move || {
                    f64::from(u8::from(c.load(std::sync::atomic::Ordering::Relaxed)))
                })
        };
        if !zookeeper.is_empty() && !config.discovery.serversets.is_empty() {
            let d = cstats.scope("discovery");
            tasks.push(tokio::spawn(serverset::watch(
                zookeeper.clone(),
                config.discovery.serversets.clone(),
                defaults,
                config.discovery.zookeeper_retry,
                targets.clone(),
                serverset::ZkStats {
                    errors: d.counter("zookeeper_errors"),
                    bad_members: d.counter("bad_members"),
                    connected: zk_connected.clone(),
                },
                background.clone(),
            )));
        }
        if !zookeeper.is_empty() && !config.storage_serverset.is_empty() {
            let router = Arc::downgrade(&router);
            let (timeout, max) = (
                config.routing.write_timeout,
                config.server.max_request_bytes,
            );
            tasks.push(tokio::spawn(serverset::watch_storage(
                zookeeper.clone(),
                config.storage_serverset.clone(),
                config.discovery.zookeeper_retry,
                move |urls| {
                    let Some(router) = router.upgrade() else {
                        return;
                    };
                    let sinks: Vec<Arc<dyn Sink>> = urls
                        .iter()
                        .filter_map(|u| match GrpcSink::new(u, timeout, max) {
                            Ok(s) => Some(Arc::new(s) as Arc<dyn Sink>),
                            Err(e) => {
                                tracing::warn!(error = %e, "storage member skipped");
                                None
                            }
                        })
                        .collect();
                    if let Err(e) = router.set_sinks(sinks) {
                        tracing::error!(error = %e, "cannot open the spill of a new storage-frontend");
                    }
                },
                cstats.scope("discovery").counter("storage_serverset_errors"),
                background.clone(),
            )));
        }
        let membership = if zookeeper.is_empty() {
            None
        } else {
            let id = if config.membership.id.is_empty() {
                let host = service_kit::host::machine_name()
                    .unwrap_or_else(|| loopback_if_any(bound.http_addr()).ip().to_string());
                format!("{host}:{}", bound.http_addr().port())
            } else {
                config.membership.id.clone()
            };
            let m = Membership::new(id, &cstats);
            tasks.push(tokio::spawn(m.clone().run(
                zookeeper.clone(),
                config.membership.path.clone(),
                config.discovery.zookeeper_retry,
                background.clone(),
            )));
            Some(m)
        };
        let assignment: scheduler::Assignment = match &membership {
            Some(m) => {
                let m = m.clone();
                Arc::new(move |t: &Target| t.local || m.owns(&t.id()))
            }
            None => Arc::new(|_: &Target| true),
        };
        let limits = Limits {
            max_name_bytes: config.hygiene.max_name_bytes,
            max_series_per_source: config.hygiene.max_series_per_source,
            keep_rejected: config.hygiene.keep_rejected,
        };
        let scraper = Arc::new(Scraper::new(config.scrape.max_body_bytes, limits, &cstats));
        let statuses: Statuses = Arc::new(Mutex::new(BTreeMap::new()));
        let _gauges = totals_gauges(&cstats, &router, &statuses);
        router.start(&background);
        tasks.push(tokio::spawn(scheduler::run(
            targets.clone(),
            assignment,
            scraper.clone(),
            router.clone(),
            statuses.clone(),
            background.clone(),
        )));
        let pusher = Arc::new(push::Pusher::new(
            router.clone(),
            config.push.clone(),
            limits,
            scraper.reject_stats().clone(),
            &cstats,
        ));
        let mut app = App::new(NAME, stats.clone());
        app.http = http::router(
            pusher.clone(),
            statuses,
            membership,
            config.push.max_decoded_bytes,
            &cstats.scope("http"),
        );
        app.grpc = Routes::new(
            proto::collector::collector_server::CollectorServer::new(grpc::CollectorApi {
                pusher,
                targets,
            })
            .max_decoding_message_size(config.server.max_request_bytes),
        );
        let served = bound.serve(app, shutdown.clone()).await;
        background.cancel();
        for t in tasks {
            t.abort();
        }
        // The shippers spill what is still in memory before they stop.
        if tokio::time::timeout(Duration::from_secs(10), router.stopped())
            .await
            .is_err()
        {
            tracing::warn!("the storage shippers did not stop in time");
        }
        let totals = router.totals();
        tracing::info!(?totals, "collector stopped");
        served?;
        Ok(())
    }
}

fn totals_gauges(
    stats: &StatsReceiver,
    router: &Arc<Router>,
    statuses: &Statuses,
) -> Vec<stats::Gauge> {
    let mut out = Vec::new();
    type Pick = fn(&router::RouterTotals) -> u64;
    let picks: [(&str, Pick); 7] = [
        ("sent_samples", |t| t.sent_samples),
        ("spilled_samples", |t| t.spilled_samples),
        ("replayed_samples", |t| t.replayed_samples),
        ("dropped_samples", |t| t.dropped_samples),
        ("rejected_samples", |t| t.rejected_samples),
        ("queued_samples", |t| t.queued_samples),
        ("spill_bytes", |t| t.spill_bytes),
    ];
    for (name, pick) in picks {
        let r = Arc::downgrade(router);
        out.push(stats.gauge(name, move || {
            r.upgrade().map_or(0.0, |r| pick(&r.totals()) as f64)
        }));
    }
    let s = Arc::downgrade(statuses);
    out.push(stats.gauge("targets", move || {
        s.upgrade().map_or(0.0, |s| s.lock().len() as f64)
    }));
    let s = Arc::downgrade(statuses);
    out.push(stats.gauge("targets_up", move || {
        s.upgrade()
            .map_or(0.0, |s| s.lock().values().filter(|t| t.up).count() as f64)
    }));
    out
}

/// Binds and serves until `shutdown` fires.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), Error> {
    bind(config).await?.run(shutdown).await
}
