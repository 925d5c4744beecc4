//! `push-bench`: Prometheus text import and remote_write end to end into storage,
//! with `aerie storage` (embedded engine, WAL with its default group-commit fsync)
//! and `aerie collector` as separate processes, and the bodies posted by this one.
//! Prints samples/s acknowledged, and samples per CPU-second of the collector and
//! of collector and storage together (each process's CPU time from `/proc`).
//!
//! `cargo run --release -p integration-tests --bin push-bench [-- --samples N --concurrency C]`

use std::path::Path;
use std::process::{Command, Stdio};

use std::sync::Arc;
use std::time::{Duration, Instant};
use test_support::KillOnDrop;

use anyhow::{Context, bail};
use collector::prompb;

/// Series per body and timestamps per series: 100,000 samples a body.
const SERIES: usize = 2000;
const STEPS: usize = 50;

struct Args {
    samples: usize,
    concurrency: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        samples: 10_000_000,
        concurrency: 4,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || -> anyhow::Result<usize> {
            it.next()
                .with_context(|| format!("{flag} needs a value"))?
                .parse()
                .with_context(|| format!("{flag} takes a number"))
        };
        match flag.as_str() {
            "--samples" => a.samples = value()?,
            "--concurrency" => a.concurrency = value()?.max(1),
            _ => bail!("unknown flag {flag}; flags: --samples N --concurrency C"),
        }
    }
    Ok(a)
}

async fn wait_ready(http: u16, what: &str) -> anyhow::Result<()> {
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(60) {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{http}/ready")).await
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{what} was not ready on port {http} within a minute")
}

fn spawn(bin: &Path, args: &[String], what: &str) -> anyhow::Result<KillOnDrop> {
    Ok(KillOnDrop(
        Command::new(bin)
            .args(args)
            .env("AERIE_LOG__LEVEL", "warn")
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {what}"))?,
    ))
}

/// The import bodies: `bodies` of SERIES series x STEPS timestamps each, every body
/// its own sources, lines grouped by series, timestamps two hours back (backfill).
fn import_bodies(bodies: usize, t0: i64) -> Vec<String> {
    (0..bodies)
        .map(|b| {
            let mut body = String::with_capacity(SERIES * STEPS * 90);
            for s in 0..SERIES {
                for t in 0..STEPS {
                    body.push_str(&format!(
                        "bench_total{{job=\"import\",instance=\"b{b}-h{}:9100\",code=\"{}\"}} {} {}\n",
                        s / 10,
                        200 + s % 10,
                        t * 3 + s,
                        t0 + (t as i64) * 15_000
                    ));
                }
            }
            body
        })
        .collect()
}

/// The same shape as snappy-compressed remote_write requests.
fn remote_write_bodies(bodies: usize, t0: i64) -> Vec<Vec<u8>> {
    let label = |name: &str, value: String| prompb::Label {
        name: name.into(),
        value,
    };
    (0..bodies)
        .map(|b| {
            prompb::WriteRequest {
                timeseries: (0..SERIES)
                    .map(|s| prompb::TimeSeries {
                        labels: vec![
                            label("__name__", "bench_rw_total".into()),
                            label("code", (200 + s % 10).to_string()),
                            label("instance", format!("b{b}-h{}:9100", s / 10)),
                            label("job", "rw".into()),
                        ],
                        samples: (0..STEPS)
                            .map(|t| prompb::Sample {
                                value: (t * 3 + s) as f64,
                                timestamp: t0 + (t as i64) * 15_000,
                            })
                            .collect(),
                    })
                    .collect(),
            }
            .to_snappy()
        })
        .collect()
}

struct Pids {
    collector: u32,
    storage: u32,
}

fn cpu(pid: u32) -> anyhow::Result<f64> {
    test_support::cpu_seconds(pid).with_context(|| format!("no CPU time of process {pid}"))
}

/// Posts every body, `concurrency` at a time; each must be acknowledged (204).
async fn post_all(
    name: &str,
    url: &str,
    encoding: Option<&'static str>,
    bodies: Vec<reqwest::Body>,
    samples: usize,
    concurrency: usize,
    pids: &Pids,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let queue = Arc::new(parking_lot::Mutex::new(bodies));
    let (c0, s0) = (cpu(pids.collector)?, cpu(pids.storage)?);
    let began = Instant::now();
    let workers = (0..concurrency).map(|_| {
        let (http, queue, url) = (http.clone(), queue.clone(), url.to_owned());
        tokio::spawn(async move {
            loop {
                let Some(body) = queue.lock().pop() else {
                    return Ok::<_, anyhow::Error>(());
                };
                let mut req = http.post(&url).body(body);
                if let Some(e) = encoding {
                    req = req.header("content-encoding", e);
                }
                let r = req.send().await?;
                if r.status() != 204 {
                    bail!("{url} answered {}: {}", r.status(), r.text().await?);
                }
            }
        })
    });
    for w in futures::future::join_all(workers).await {
        w??;
    }
    let wall = began.elapsed().as_secs_f64();
    let collector = cpu(pids.collector)? - c0;
    let storage = cpu(pids.storage)? - s0;
    let n = samples as f64;
    println!(
        "{name}: {samples} samples acknowledged in {wall:.2} s = {:.2} M samples/s end to end; \
         collector {collector:.2} CPU-s ({:.2} M samples per collector CPU-s), \
         storage {storage:.2} CPU-s; together {:.2} M samples per CPU-s",
        n / wall / 1e6,
        n / collector / 1e6,
        n / (collector + storage) / 1e6,
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin = test_support::aerie_binary(&root)?;
    let data = tempfile::Builder::new()
        .prefix("aerie-push-bench-")
        .tempdir()?;
    let port = || test_support::pick_port().context("no free port");
    let (s_http, s_grpc, c_http, c_grpc) = (port()?, port()?, port()?, port()?);
    let common = |what: &str| {
        vec![
            what.to_owned(),
            "--data-dir".into(),
            data.path().join(what).display().to_string(),
            "--listen-host".into(),
            "127.0.0.1".into(),
        ]
    };
    let set = |kv: String| ["--set".to_owned(), kv];
    let mut storage_args = common("storage");
    storage_args.extend(set(format!("storage.server.http_port={s_http}")));
    storage_args.extend(set(format!("storage.server.grpc_port={s_grpc}")));
    let storage = spawn(&bin, &storage_args, "aerie storage")?;
    wait_ready(s_http, "aerie storage").await?;
    let mut collector_args = common("collector");
    collector_args.extend(set(format!("collector.server.http_port={c_http}")));
    collector_args.extend(set(format!("collector.server.grpc_port={c_grpc}")));
    collector_args.extend(set(format!(
        "collector.storage=[\"http://127.0.0.1:{s_grpc}\"]"
    )));
    collector_args.extend(set("collector.self_monitoring=false".into()));
    let collector = spawn(&bin, &collector_args, "aerie collector")?;
    wait_ready(c_http, "aerie collector").await?;
    let pids = Pids {
        collector: collector.0.id(),
        storage: storage.0.id(),
    };

    let bodies = a.samples.div_ceil(SERIES * STEPS);
    let samples = bodies * SERIES * STEPS;
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64
        - 7_200_000;
    println!(
        "push-bench: {bodies} bodies of {SERIES} series x {STEPS} samples, {} in flight; \
         aerie storage (embedded, default fsync) and aerie collector as processes",
        a.concurrency
    );
    let collector_url = format!("http://127.0.0.1:{c_http}");
    let import: Vec<reqwest::Body> = import_bodies(bodies, t0)
        .into_iter()
        .map(reqwest::Body::from)
        .collect();
    post_all(
        "import",
        &format!("{collector_url}/api/v1/import/prometheus"),
        None,
        import,
        samples,
        a.concurrency,
        &pids,
    )
    .await?;
    let rw: Vec<reqwest::Body> = remote_write_bodies(bodies, t0)
        .into_iter()
        .map(reqwest::Body::from)
        .collect();
    post_all(
        "remote_write",
        &format!("{collector_url}/api/v1/write"),
        Some("snappy"),
        rw,
        samples,
        a.concurrency,
        &pids,
    )
    .await?;

    // Everything acknowledged was counted as stored.
    let stats: serde_json::Value = reqwest::get(format!("{collector_url}/admin/metrics.json"))
        .await?
        .json()
        .await?;
    for path in ["import", "remote_write"] {
        let stored = stats[format!("collector/push/{path}/samples")].as_u64();
        if stored != Some(samples as u64) {
            bail!("{path}: the collector counts {stored:?} stored samples, expected {samples}");
        }
    }
    drop(collector);
    drop(storage);
    Ok(())
}
