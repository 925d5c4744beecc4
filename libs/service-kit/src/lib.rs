//! What every Aerie server shares: layered config, logging, the admin HTTP endpoints,
//! how this machine names itself to peers,
//! the standard tower stacks for HTTP and gRPC, and SIGTERM/SIGINT drain.
//!
//! ```text
//!  request ─► stats ─► shed (concurrency limit) ─► body limit ─► timeout ─► catch panic ─► handler
//!             (per endpoint: requests, success, failures, latency histogram, pending)
//! ```
//!
//! A service builds an [`App`] (its HTTP routes, gRPC routes and stats), binds with
//! [`Bound::bind`] and runs with [`Bound::serve`] until its [`Shutdown`] fires.

pub mod admin;
pub mod config;
pub mod host;
pub mod layers;
pub mod logging;
pub mod server;
pub mod shutdown;

pub use admin::Readiness;
pub use config::{Common, ConfigError, ServerConfig, Sources, Validate};
pub use server::{App, Bound, ServeError};
pub use shutdown::Shutdown;
pub use stats::StatsReceiver;
