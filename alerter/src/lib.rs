//! The alerter: evaluates alert rules, notifies, silences, and gates deploys.
//!
//! The library exposes [`Config`] (the `[alerter]` section of `aerie.toml`),
//! [`bind`] and [`run`]; the `aerie` binary and the tests call the same functions.

use serde::{Deserialize, Serialize};
use service_kit::{
    App, Bound, Common, ConfigError, ServeError, ServerConfig, Shutdown, StatsReceiver,
};
use std::net::SocketAddr;

/// The service's name in logs, stats and admin answers.
pub const NAME: &str = "alerter";

/// Configuration of the alerter service (`[alerter]` in `aerie.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Settings shared by the whole process (top level of the file, and shared flags).
    #[serde(skip)]
    pub common: Common,
    /// Ports and request limits.
    pub server: ServerConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            common: Common::default(),
            server: ServerConfig::with_ports(7430, 7431),
        }
    }
}

impl Config {
    /// Checks the section; keys are named under `alerter.`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate("alerter.server")
    }
}

/// Why the alerter service failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// The service with its ports bound, ready to [`Server::run`].
#[derive(Debug)]
pub struct Server {
    bound: Bound,
    stats: StatsReceiver,
}

/// Validates `config` and binds the service's ports.
pub async fn bind(config: Config) -> Result<Server, Error> {
    config.validate()?;
    let bound = Bound::bind(NAME, &config.common.listen_host, &config.server).await?;
    Ok(Server {
        bound,
        stats: StatsReceiver::new(),
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
        let app = App::new(NAME, self.stats);
        self.bound.serve(app, shutdown).await?;
        Ok(())
    }
}

/// Binds and serves until `shutdown` fires.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), Error> {
    bind(config).await?.run(shutdown).await
}
