//! Command-line flags: the shared flags of every mode, and the subcommands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Aerie: collect, store, query and alert on time series; collect traces.
///
/// With no subcommand, runs every service in one process (all-in-one mode) with
/// embedded storage under --data-dir.
#[derive(Debug, Parser)]
#[command(name = "aerie", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub shared: Shared,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Flags every mode takes. Each also reads an `AERIE_*` environment variable.
#[derive(Debug, Args, Clone, Default)]
pub struct Shared {
    /// TOML config file; see aerie.example.toml for every option.
    #[arg(long, global = true, env = "AERIE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for embedded storage and local state [default: ./data].
    #[arg(long, global = true, env = "AERIE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Prometheus file_sd targets file (JSON or YAML) for the collector.
    #[arg(long, global = true, env = "AERIE_TARGETS", value_name = "FILE")]
    pub targets: Option<PathBuf>,
    /// memcached servers for the query span cache.
    #[arg(
        long,
        global = true,
        env = "AERIE_MEMCACHED",
        value_name = "HOST:PORT[,…]"
    )]
    pub memcached: Option<String>,
    /// ZooKeeper ensemble (server sets, collector membership, alerter leader).
    #[arg(
        long,
        global = true,
        env = "AERIE_ZOOKEEPER",
        value_name = "HOST:PORT[,…]"
    )]
    pub zookeeper: Option<String>,
    /// Address every server binds [default: 0.0.0.0].
    #[arg(long, global = true, env = "AERIE_LISTEN_HOST", value_name = "IP")]
    pub listen_host: Option<String>,
    /// Override any config option, e.g. --set storage.server.http_port=7420 (repeatable;
    /// the environment variable AERIE_STORAGE__SERVER__HTTP_PORT does the same).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the collector alone.
    Collector,
    /// Run the storage-frontend alone.
    #[command(alias = "storage-frontend")]
    Storage,
    /// Run the query-federator alone.
    QueryFederator,
    /// Run the alerter alone.
    Alerter,
    /// Run the tracer alone.
    Tracer,
    /// Ask a query-federator a question in the query language.
    Query(QueryArgs),
    /// Validate the configuration and print it in full, defaults included.
    Config,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The query, e.g. 'ts(aerie, *, collector/scrapes)'.
    pub expr: String,
    /// Base URL of the query-federator's HTTP API.
    #[arg(long, env = "AERIE_QUERY_URL", default_value = "http://127.0.0.1:7400")]
    pub url: String,
    /// Start of a range query (Unix seconds or RFC 3339); without it, an instant query.
    #[arg(long)]
    pub start: Option<String>,
    /// End of a range query [default: now].
    #[arg(long)]
    pub end: Option<String>,
    /// Step of a range query (seconds or a duration such as 60s, 5m).
    #[arg(long, default_value = "60s")]
    pub step: String,
    /// Print the raw JSON answer instead of a table.
    #[arg(long)]
    pub json: bool,
}
