//! The query-federator: parses, plans, federates and caches queries across storage zones.
//!
//! ```text
//!  HTTP /api/v1/* (http)      gRPC aerie.query.v1 (grpc)
//!            \                  /
//!             federate::Federator --- roles: collector ListRoles
//!               | compile (query-lang), estimate (Index totals), refuse
//!               | spans (3h/30m/5m/1m, FNV-1a keys with epochs) <--> cache::Cache (memcached | none)
//!               v
//!             storage::Zone xN --ExecuteFragment/Index/Epochs--> storage-frontends
//! ```
//!
//! The library exposes [`Config`] (the `[query_federator]` section of `aerie.toml`),
//! [`bind`] and [`run`]; the `aerie` binary and the tests call the same functions.

pub mod cache;
pub mod config;
pub mod epochs;
pub mod error;
pub mod federate;
pub mod grpc;
pub mod http;
pub mod params;
pub mod serverset;
pub mod spans;
pub mod storage;

use std::net::SocketAddr;
use std::sync::Arc;

use proto::collector::collector_client::CollectorClient;
use proto::query::query_server::QueryServer;
use service_kit::{App, Bound, ConfigError, ServeError, Shutdown, StatsReceiver};

pub use cache::{Cache, CacheStats, Cached, LocalSpans, Memcached, NoCache, SpanCache};
pub use config::{CacheConfig, Config, Limits, ZoneConfig};
pub use error::QueryError;
pub use federate::{Answer, Federator};

/// The service's name in logs, stats and admin answers.
pub const NAME: &str = "query-federator";

/// Why the query-federator service failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Zone(#[from] storage::BadEndpoint),
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// The service with its ports bound, ready to [`Server::run`].
#[derive(Debug)]
pub struct Server {
    bound: Bound,
    stats: StatsReceiver,
    config: Config,
    federator: Arc<Federator>,
}

/// The span cache the config asks for: memcached when servers are given, else none.
pub fn cache_for(config: &Config, stats: &StatsReceiver) -> Cache<spans::SpanCells> {
    let backend: Arc<dyn SpanCache> = if config.common.memcached.is_empty() {
        Arc::new(NoCache)
    } else {
        Arc::new(Memcached::new(
            &config.common.memcached,
            config.cache.connections,
            config.cache.timeout,
        ))
    };
    Cache::new(
        backend,
        config.cache.timeout,
        config.cache.retry_after,
        config.cache.ttl,
        CacheStats::new(&stats.scope("federator").scope("cache")),
    )
    .with_local(config.cache.local_bytes)
}

/// Validates `config` and binds the service's ports. Storage-frontends and the
/// collector are connected lazily: one that is down is reported per query.
pub async fn bind(config: Config) -> Result<Server, Error> {
    config.validate()?;
    let stats = StatsReceiver::new();
    let zones = config
        .zones
        .iter()
        .map(storage::Zone::new)
        .collect::<Result<Vec<_>, _>>()?;
    let roles = if config.collector.is_empty() {
        None
    } else {
        let ep = tonic::transport::Endpoint::from_shared(config.collector.clone())
            .map_err(|e| ConfigError::invalid("query_federator.collector", e.to_string()))?;
        Some(CollectorClient::new(ep.connect_lazy()))
    };
    let federator = Arc::new(Federator::new(
        zones,
        cache_for(&config, &stats),
        roles,
        config.limits.clone(),
        config.query_timeout,
        config.instant_step,
        &stats,
    ));
    let bound = Bound::bind(NAME, &config.common.listen_host, &config.server).await?;
    Ok(Server {
        bound,
        stats,
        config,
        federator,
    })
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
        let zk_errors = self.stats.scope("federator").counter("zookeeper/errors");
        for zone in self.federator.zones() {
            if zone.serverset().is_empty() {
                continue;
            }
            tokio::spawn(serverset::follow(
                self.config.common.zookeeper.join(","),
                zone.serverset().to_string(),
                zone.clone(),
                zk_errors.clone(),
                shutdown.child_token(),
            ));
        }
        let mut app = App::new(NAME, self.stats);
        app.http = http::router(self.federator.clone());
        app.grpc = app.grpc.add_service(
            QueryServer::new(grpc::QueryService::new(self.federator))
                .max_decoding_message_size(self.config.server.max_request_bytes)
                .max_encoding_message_size(usize::MAX),
        );
        self.bound.serve(app, shutdown).await?;
        Ok(())
    }
}

/// Binds and serves until `shutdown` fires.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), Error> {
    bind(config).await?.run(shutdown).await
}
