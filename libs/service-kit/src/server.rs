//! Binding and serving one service: its HTTP port (API + admin endpoints) and its gRPC
//! port (its services + `grpc.health.v1`), each behind the standard tower stack, until
//! shutdown, then a drain under the grace period.
//!
//! Binding is separate from serving so that a process can bind every port first (and
//! fail before anything starts), tests can bind port 0 and read the address, and the
//! all-in-one mode can print where everything listens.

use std::net::{IpAddr, SocketAddr};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::serve::ListenerExt;
use http::StatusCode;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::admin::{self, Readiness};
use crate::config::ServerConfig;
use crate::layers::{Protocol, RequestStatsLayer, ShedLayer, panic_response};
use crate::shutdown::{Drained, Shutdown, drain};
use stats::StatsReceiver;

/// Why a service could not bind or serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{service}: listen_host \"{host}\" is not an IP address")]
    Host { service: &'static str, host: String },
    #[error("{service}: cannot bind {what} port {addr}: {source}")]
    Bind {
        service: &'static str,
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{service}: HTTP server failed: {source}")]
    Http {
        service: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{service}: gRPC server failed: {source}")]
    Grpc {
        service: &'static str,
        #[source]
        source: tonic::transport::Error,
    },
}

/// What a service serves.
#[derive(Debug)]
pub struct App {
    /// Its name in logs and admin answers (`storage`, `collector`, ...).
    pub name: &'static str,
    /// Its stats; `/admin/metrics.json` exports this registry.
    pub stats: StatsReceiver,
    /// Its readiness; see [`App::ready_on_start`].
    pub readiness: Readiness,
    /// When true, `serve` marks the service ready once both ports serve; a service
    /// that must first load state leaves it false and sets `readiness` itself.
    pub ready_on_start: bool,
    /// Its HTTP API routes (admin routes are added).
    pub http: Router,
    /// Its gRPC services (`grpc.health.v1` is added). Add each generated server with
    /// `.max_decoding_message_size(config.server.max_request_bytes)`: tonic enforces
    /// the message limit per service and answers OUT_OF_RANGE naming the limit.
    pub grpc: Routes,
}

impl App {
    /// An app with no API of its own yet: admin endpoints and gRPC health only.
    pub fn new(name: &'static str, stats: StatsReceiver) -> Self {
        Self {
            name,
            stats,
            readiness: Readiness::new(),
            ready_on_start: true,
            http: Router::new(),
            grpc: Routes::default(),
        }
    }
}

/// A service's bound ports, not yet serving.
#[derive(Debug)]
pub struct Bound {
    name: &'static str,
    http: TcpListener,
    grpc: TcpListener,
    config: ServerConfig,
}

impl Bound {
    /// Binds the HTTP and gRPC ports of `config` on `host`.
    pub async fn bind(
        name: &'static str,
        host: &str,
        config: &ServerConfig,
    ) -> Result<Self, ServeError> {
        let ip: IpAddr = host.parse().map_err(|_| ServeError::Host {
            service: name,
            host: host.to_owned(),
        })?;
        let bind = |what: &'static str, port: u16| async move {
            let addr = SocketAddr::new(ip, port);
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind {
                    service: name,
                    what,
                    addr,
                    source,
                })
        };
        Ok(Self {
            name,
            http: bind("HTTP", config.http_port).await?,
            grpc: bind("gRPC", config.grpc_port).await?,
            config: config.clone(),
        })
    }

    /// Where the HTTP server listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Where the gRPC server listens.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves `app` until `shutdown` fires, then drains in-flight requests for at
    /// most the grace period.
    pub async fn serve(self, app: App, shutdown: Shutdown) -> Result<(), ServeError> {
        let Self {
            name,
            http,
            grpc,
            config,
        } = self;
        let http_addr = http.local_addr().ok();
        let grpc_addr = grpc.local_addr().ok();

        let http_router = http_stack(&app, &config);
        let http_shutdown = shutdown.clone();
        let http_server = async move {
            axum::serve(
                http.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                }),
                http_router,
            )
            .with_graceful_shutdown(http_shutdown.cancelled_owned())
            .await
            .map_err(|source| ServeError::Http {
                service: name,
                source,
            })
        };

        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        let routes = app
            .grpc
            .add_service(health_service.max_decoding_message_size(config.max_request_bytes));
        let grpc_stack = ServiceBuilder::new()
            .layer(RequestStatsLayer::new(&app.stats, Protocol::Grpc))
            .layer(ShedLayer::new(
                config.max_concurrent_requests,
                Protocol::Grpc,
                Some(app.stats.scope("srv").scope("grpc").counter("shed")),
            ))
            .layer(CatchPanicLayer::custom(|_| panic_response(Protocol::Grpc)))
            .into_inner();
        let grpc_shutdown = shutdown.clone();
        let grpc_server = async move {
            tonic::transport::Server::builder()
                .timeout(config.request_timeout)
                .layer(grpc_stack)
                .add_routes(routes)
                .serve_with_incoming_shutdown(
                    // Without TCP_NODELAY small answers wait for delayed ACKs
                    // (about 40 ms a round trip between services).
                    TcpIncoming::from(grpc).with_nodelay(Some(true)),
                    grpc_shutdown.cancelled_owned(),
                )
                .await
                .map_err(|source| ServeError::Grpc {
                    service: name,
                    source,
                })
        };

        if app.ready_on_start {
            app.readiness.set(true);
        }
        tracing::info!(service = name, http = ?http_addr, grpc = ?grpc_addr, "serving");

        let readiness = app.readiness.clone();
        let not_ready = shutdown.clone();
        tokio::spawn(async move {
            not_ready.cancelled().await;
            readiness.set(false);
            health_reporter
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
        });

        let both = async { tokio::try_join!(http_server, grpc_server).map(|_| ()) };
        match drain(both, &shutdown, config.grace_period).await {
            Drained::Finished(result) => {
                tracing::info!(service = name, "stopped");
                result
            }
            Drained::GraceExpired => {
                tracing::warn!(
                    service = name,
                    grace = ?config.grace_period,
                    "grace period over; abandoning requests still in flight"
                );
                Ok(())
            }
        }
    }
}

/// The HTTP router of `app` with admin routes and the standard stack. The layers are
/// added with `Router::layer`, so they run after routing and see the matched route.
fn http_stack(app: &App, config: &ServerConfig) -> Router {
    let admin = admin::router(app.name, app.stats.clone(), app.readiness.clone());
    let stack = ServiceBuilder::new()
        .layer(RequestStatsLayer::new(&app.stats, Protocol::Http))
        .layer(ShedLayer::new(
            config.max_concurrent_requests,
            Protocol::Http,
            Some(app.stats.scope("srv").scope("http").counter("shed")),
        ))
        .layer(RequestBodyLimitLayer::new(config.max_request_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            config.request_timeout,
        ))
        .layer(CatchPanicLayer::custom(|_| panic_response(Protocol::Http)));
    app.http
        .clone()
        .merge(admin)
        .layer(DefaultBodyLimit::max(config.max_request_bytes))
        .layer(stack)
}
