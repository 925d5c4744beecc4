//! The modes of the binary: all-in-one, one service, the query client, and `config`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use anyhow::Context;
use service_kit::Shutdown;
use service_kit::host::loopback_if_any;
use service_kit::shutdown::cancel_on_signals;

use crate::cli::{Cli, Command};
use crate::config::{FileConfig, from_flags};

/// A service bound and ready to run, type-erased so all-in-one can hold five.
struct Ready {
    name: &'static str,
    http: SocketAddr,
    grpc: SocketAddr,
    run: Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>,
}

macro_rules! bind {
    ($krate:ident, $config:expr) => {{
        $krate::bind($config)
            .await
            .with_context(|| format!("cannot start {}", $krate::NAME))?
    }};
}

macro_rules! wrap {
    ($krate:ident, $server:expr, $shutdown:expr) => {{
        let server = $server;
        let shutdown: Shutdown = $shutdown;
        Ready {
            name: $krate::NAME,
            http: server.http_addr(),
            grpc: server.grpc_addr(),
            run: Box::pin(async move { server.run(shutdown).await.map_err(anyhow::Error::from) }),
        }
    }};
}

macro_rules! ready {
    ($krate:ident, $config:expr, $shutdown:expr) => {{ wrap!($krate, bind!($krate, $config), $shutdown) }};
}

/// Runs what the command line asks for.
pub async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::Query(args)) = &cli.command {
        return crate::query::run(args).await;
    }
    let cfg = from_flags(&cli.shared).context("invalid configuration")?;
    if let Some(Command::Config) = &cli.command {
        print!(
            "{}",
            toml::to_string(&cfg).context("cannot print the configuration")?
        );
        return Ok(());
    }
    service_kit::logging::init(&cfg.log)?;
    let shutdown = Shutdown::new();
    cancel_on_signals(shutdown.clone());
    let s = || shutdown.child_token();
    let services = match &cli.command {
        None => {
            std::fs::create_dir_all(&cfg.data_dir).with_context(|| {
                format!("cannot create data directory {}", cfg.data_dir.display())
            })?;
            // Bind every port before serving any, so a clash stops the whole start.
            // Storage first: the collector writes to its gRPC port.
            let storage_srv = bind!(storage_frontend, cfg.storage.clone());
            let mut collector_cfg = cfg.collector.clone();
            if collector_cfg.storage == collector::Config::default().storage {
                collector_cfg.storage = vec![format!(
                    "http://{}",
                    loopback_if_any(storage_srv.grpc_addr())
                )];
            }
            let mut collector_srv = bind!(collector, collector_cfg);
            // The federator queries this process's storage and resolves roles through
            // its collector, unless the file names other ones.
            let mut query_cfg = cfg.query_federator.clone();
            if query_cfg.zones == query_federator::Config::default().zones {
                query_cfg.zones[0].endpoints = vec![format!(
                    "http://{}",
                    loopback_if_any(storage_srv.grpc_addr())
                )];
            }
            if query_cfg.collector.is_empty() {
                query_cfg.collector =
                    format!("http://{}", loopback_if_any(collector_srv.grpc_addr()));
            }
            let query_srv = bind!(query_federator, query_cfg);
            let alerter_srv = bind!(alerter, cfg.alerter.clone());
            let tracer_srv = bind!(tracer, cfg.tracer.clone());
            // Self-monitoring: the collector scrapes every component's /admin/metrics.json.
            collector_srv.monitor_components(vec![
                (query_federator::NAME.to_owned(), query_srv.http_addr()),
                (collector::NAME.to_owned(), collector_srv.http_addr()),
                (storage_frontend::NAME.to_owned(), storage_srv.http_addr()),
                (alerter::NAME.to_owned(), alerter_srv.http_addr()),
                (tracer::NAME.to_owned(), tracer_srv.http_addr()),
            ]);
            vec![
                wrap!(query_federator, query_srv, s()),
                wrap!(collector, collector_srv, s()),
                wrap!(storage_frontend, storage_srv, s()),
                wrap!(alerter, alerter_srv, s()),
                wrap!(tracer, tracer_srv, s()),
            ]
        }
        Some(Command::Collector) => vec![ready!(collector, cfg.collector.clone(), s())],
        Some(Command::Storage) => vec![ready!(storage_frontend, cfg.storage.clone(), s())],
        Some(Command::QueryFederator) => {
            vec![ready!(query_federator, cfg.query_federator.clone(), s())]
        }
        Some(Command::Alerter) => vec![ready!(alerter, cfg.alerter.clone(), s())],
        Some(Command::Tracer) => vec![ready!(tracer, cfg.tracer.clone(), s())],
        Some(Command::Query(_) | Command::Config) => unreachable!("handled above"),
    };
    print_banner(&cfg, &services, cli.command.is_none());
    run_all(services, shutdown).await
}

/// Runs the services; the first to fail stops the others.
async fn run_all(services: Vec<Ready>, shutdown: Shutdown) -> anyhow::Result<()> {
    let mut set = tokio::task::JoinSet::new();
    for svc in services {
        let name = svc.name;
        set.spawn(async move { (name, svc.run.await) });
    }
    let mut first_error = None;
    while let Some(joined) = set.join_next().await {
        let (name, result) = joined.context("a service task panicked")?;
        if let Err(e) = result {
            tracing::error!(service = name, error = %format!("{e:#}"), "service failed; stopping the others");
            shutdown.cancel();
            first_error.get_or_insert(e.context(format!("{name} failed")));
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn print_banner(cfg: &FileConfig, services: &[Ready], all_in_one: bool) {
    let mode = if all_in_one {
        "all-in-one"
    } else {
        "single service"
    };
    println!(
        "Aerie {} ({mode}), data in {}",
        env!("CARGO_PKG_VERSION"),
        cfg.data_dir.display()
    );
    for s in services {
        println!(
            "  {:<16} http://{}  (admin: /health /ready /admin/metrics.json /metrics)  grpc {}",
            s.name, s.http, s.grpc
        );
    }
    if let Some(q) = services.iter().find(|s| s.name == query_federator::NAME) {
        println!("Try:");
        println!("  aerie query 'ts(aerie, *, collector/scrapes)'");
        println!(
            "  curl 'http://{}/api/v1/query?query=ts(aerie,*,collector/scrapes)'",
            loopback_if_any(q.http)
        );
    }
}
