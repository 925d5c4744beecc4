//! federator-bench: query latency through the query-federator's HTTP API, as deployed:
//! `aerie query-federator` and `aerie storage` (the `aerie` binary as found next to
//! this one, built if missing) are child processes, over a real memcached; the client
//! asks from one thread.
//!
//! `--data DIR` keeps storage's data in DIR, and a later run with the same `--series`
//! and `--days` reuses it instead of loading again; `--cases` picks what runs
//! (`single,local,sum5,sum1,rate5,rate1,moving5`; `local` is the default cache setting
//! alone); `--storage-set KEY=VALUE` (repeatable) passes a setting to `aerie storage`
//! (e.g. `storage.embedded.long_partition=7d` for week blocks).
//!
//! ```text
//! cargo run --release -p query-federator --bin federator-bench [-- --series 10000 --days 7]
//! ```
//! Loads `--series` series of one-minute data for `--days` days, then prints:
//! - a single series over one day at the raw one-minute step: p50/p99 latency with
//!   no cache (one fragment per query), with memcached alone, and with the in-process
//!   tier in front of memcached (the default);
//! - `sum` over every series for the whole range at a 5-minute step: cold (a fresh
//!   federator process, memcached flushed) and warm (spans cached); at a 1-minute
//!   step: cold; `sum(rate(...))` at a 5-minute and a 1-minute step, and
//!   `sum(moving(..., 1h, avg))` at a 5-minute step: cold.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};

use std::time::{Duration, Instant};
use test_support::KillOnDrop;

use anyhow::{Context, bail};
use proto::common as pb;
use proto::storage::{WriteRequest, storage_client::StorageClient};

const MIN: i64 = 60_000;
const DAY: i64 = 86_400_000;
/// The in-process span tier's size in the default cache setting.
const LOCAL: u64 = 64 << 20;

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn wait_port(port: u16, what: &str) -> anyhow::Result<()> {
    for _ in 0..600 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{what} did not listen on port {port}")
}

fn memcached(port: u16) -> anyhow::Result<KillOnDrop> {
    let child = Command::new("memcached")
        .args([
            "-l",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "0",
            "-m",
            "2048",
            "-u",
            "nobody",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start memcached (apt-get install memcached)")?;
    let p = KillOnDrop(child);
    wait_port(port, "memcached")?;
    Ok(p)
}

fn flush_memcached(port: u16) -> anyhow::Result<()> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.write_all(b"flush_all\r\n")?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    if !line.starts_with("OK") {
        bail!("memcached flush_all answered {line:?}");
    }
    Ok(())
}

struct Args {
    series: usize,
    days: i64,
    /// Runs of the single-series query per cache setting (more for profiling).
    single_runs: usize,
    /// Where storage keeps its data; a directory a previous run loaded is reused.
    data: Option<std::path::PathBuf>,
    /// Which cases run: `single` (the three cache settings), `local` (the default
    /// setting alone), `sum5`, `sum1`.
    cases: Vec<String>,
    /// `KEY=VALUE` settings passed to `aerie storage` (`--storage-set`, repeatable),
    /// e.g. `storage.embedded.long_partition=7d`.
    storage_set: Vec<String>,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        series: 10_000,
        days: 7,
        single_runs: 500,
        data: None,
        cases: ["single", "sum5", "sum1", "rate5", "rate1", "moving5"]
            .map(String::from)
            .to_vec(),
        storage_set: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--series" => a.series = v.parse()?,
            "--days" => a.days = v.parse()?,
            "--single-runs" => a.single_runs = v.parse()?,
            "--data" => a.data = Some(v.into()),
            "--cases" => a.cases = v.split(',').map(str::to_owned).collect(),
            "--storage-set" => a.storage_set.push(v),
            _ => bail!(
                "unknown flag {flag}; flags: --series N --days D --single-runs R --data DIR --cases single,local,sum5,sum1,rate5,rate1,moving5 --storage-set KEY=VALUE"
            ),
        }
    }
    Ok(a)
}

async fn load(grpc: &str, a: &Args, end: i64) -> anyhow::Result<u64> {
    let start = end - a.days * DAY;
    let points = (a.days * DAY / MIN) as usize;
    let per_batch = (400_000 / points).max(1);
    let mut total = 0u64;
    let began = Instant::now();
    let batches: Vec<Vec<usize>> = (0..a.series)
        .collect::<Vec<_>>()
        .chunks(per_batch)
        .map(<[usize]>::to_vec)
        .collect();
    let mut set = tokio::task::JoinSet::new();
    let mut iter = batches.into_iter();
    let client = StorageClient::connect(grpc.to_string())
        .await?
        .max_encoding_message_size(64 << 20);
    loop {
        while set.len() < 2 {
            let Some(batch) = iter.next() else { break };
            let mut c = client.clone();
            set.spawn(async move {
                let series = batch
                    .iter()
                    .map(|&i| pb::Series {
                        key: Some(pb::SeriesKey {
                            service: "bench".into(),
                            source: format!("h{i:05}"),
                            metric: "m".into(),
                        }),
                        samples: (0..points)
                            .map(|k| pb::Sample {
                                timestamp_ms: start + k as i64 * MIN,
                                value: ((i * 7 + k) % 100) as f64,
                            })
                            .collect(),
                    })
                    .collect();
                c.write(WriteRequest { series })
                    .await
                    .map(|r| r.into_inner())
            });
        }
        let Some(done) = set.join_next().await else {
            break;
        };
        let r = done??;
        if !r.rejections.is_empty() {
            bail!("storage rejected samples: {:?}", &r.rejections[..1]);
        }
        total += r.accepted;
    }
    eprintln!(
        "loaded {total} samples in {:.1} s ({:.1} M samples/s)",
        began.elapsed().as_secs_f64(),
        total as f64 / began.elapsed().as_secs_f64() / 1e6
    );
    Ok(total)
}

/// Waits until storage maintenance (sealing, compaction, rollups) has caught up with
/// the load: its counters stop moving.
async fn settle(http_port: u16) -> anyhow::Result<()> {
    let began = Instant::now();
    let url = format!("http://127.0.0.1:{http_port}/admin/metrics.json");
    let mut last = String::new();
    let mut same = 0;
    while began.elapsed() < Duration::from_secs(180) && same < 3 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let v: serde_json::Value = reqwest::get(&url).await?.json().await?;
        let now = format!(
            "{} {}",
            v["storage/engine/blocks_sealed"], v["storage/engine/compactions"]
        );
        same = if now == last { same + 1 } else { 0 };
        last = now;
    }
    eprintln!(
        "storage maintenance settled after {:.0} s (sealed, compactions: {last})",
        began.elapsed().as_secs_f64()
    );
    Ok(())
}

/// What the storage-frontend itself takes for the calls a cold `sum` makes.
async fn storage_alone(grpc: &str, start: i64, end: i64) -> anyhow::Result<()> {
    use proto::storage as api;
    let mut c = StorageClient::connect(grpc.to_string()).await?;
    let matcher = pb::Matcher {
        service: Some(pb::Pattern {
            kind: Some(pb::pattern::Kind::Exact("bench".into())),
        }),
        source: None,
        metric: Some(pb::Pattern {
            kind: Some(pb::pattern::Kind::Exact("m".into())),
        }),
    };
    let range = Some(pb::TimeRange {
        start_ms: start,
        end_ms: end,
    });
    let mut index = Vec::new();
    let mut epochs = Vec::new();
    let mut frag5 = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        c.index(api::IndexRequest {
            kind: api::IndexKind::Series as i32,
            matcher: Some(matcher.clone()),
            range,
            limit: 1,
        })
        .await?;
        index.push(t.elapsed());
        let t = Instant::now();
        c.epochs(api::EpochsRequest {
            service: matcher.service.clone(),
            range,
        })
        .await?;
        epochs.push(t.elapsed());
    }
    for _ in 0..3 {
        let t = Instant::now();
        let mut s = c
            .execute_fragment(api::ExecuteFragmentRequest {
                matchers: vec![matcher.clone()],
                range,
                step_ms: 5 * MIN,
                step_aggregator: pb::Aggregator::Last as i32,
                over_time: None,
                cross_series: Some(api::CrossSeries {
                    aggregator: pb::Aggregator::Sum as i32,
                    group_by: vec![],
                }),
                max_series: 0,
                max_samples: 0,
            })
            .await?
            .into_inner();
        while s.message().await?.is_some() {}
        frag5.push(t.elapsed());
    }
    // One series, the last day, raw: what the single-series query asks storage.
    let one = pb::Matcher {
        source: Some(pb::Pattern {
            kind: Some(pb::pattern::Kind::Exact("h00042".into())),
        }),
        ..matcher.clone()
    };
    let mut single = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let mut s = c
            .execute_fragment(api::ExecuteFragmentRequest {
                matchers: vec![one.clone()],
                range: Some(pb::TimeRange {
                    start_ms: end - DAY,
                    end_ms: end,
                }),
                step_ms: MIN,
                step_aggregator: pb::Aggregator::Last as i32,
                over_time: None,
                cross_series: None,
                max_series: 0,
                max_samples: 0,
            })
            .await?
            .into_inner();
        while s.message().await?.is_some() {}
        single.push(t.elapsed());
    }
    println!(
        "storage alone: Index total p50 {:.3} ms, Epochs p50 {:.3} ms, ExecuteFragment one series 1 day raw p50 {:.3} ms, sum {}d at 5m p50 {:.1} ms",
        ms(pct(&mut index, 0.5)),
        ms(pct(&mut epochs, 0.5)),
        ms(pct(&mut single, 0.5)),
        (end - start) / DAY,
        ms(pct(&mut frag5, 0.5)),
    );
    Ok(())
}

/// A federator: its own `aerie query-federator` process over the bench's storage, as
/// it is deployed.
struct Fed {
    url: String,
    _process: KillOnDrop,
    _dir: tempfile::TempDir,
}

async fn federator(
    bin: &Path,
    http: &reqwest::Client,
    storage_grpc: &str,
    memcached: Option<u16>,
    local_bytes: u64,
) -> anyhow::Result<Fed> {
    let dir = tempfile::Builder::new()
        .prefix("aerie-bench-federator-")
        .tempdir()?;
    let (http_port, grpc_port) = (free_port()?, free_port()?);
    let memcached = memcached.map_or(String::new(), |p| format!("\"127.0.0.1:{p}\""));
    let config = dir.path().join("aerie.toml");
    std::fs::write(
        &config,
        format!(
            r#"memcached = [{memcached}]

[query_federator]
query_timeout = "120s"

[query_federator.server]
http_port = {http_port}
grpc_port = {grpc_port}
request_timeout = "120s"

[query_federator.cache]
local_bytes = {local_bytes}

[[query_federator.zones]]
name = "local"
endpoints = ["{storage_grpc}"]
"#
        ),
    )?;
    // BENCH_LOG=query_federator=debug shows where each query's time goes.
    let level = std::env::var("BENCH_LOG").unwrap_or_else(|_| "warn".into());
    let process = KillOnDrop(
        Command::new(bin)
            .arg("query-federator")
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--listen-host", "127.0.0.1"])
            .env("AERIE_LOG__LEVEL", level)
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start aerie query-federator")?,
    );
    let url = format!("http://127.0.0.1:{http_port}");
    let began = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{url}/ready")).send().await
            && r.status().is_success()
        {
            break;
        }
        if began.elapsed() > Duration::from_secs(60) {
            bail!("aerie query-federator was not ready on port {http_port} within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Fed {
        url,
        _process: process,
        _dir: dir,
    })
}

/// One query over HTTP: its latency and the number of points answered.
async fn run(
    http: &reqwest::Client,
    fed: &Fed,
    q: &str,
    start: i64,
    end: i64,
    step: i64,
) -> anyhow::Result<(Duration, usize)> {
    let params = [
        ("query", q.to_string()),
        ("start", (start / 1000).to_string()),
        ("end", (end / 1000).to_string()),
        ("step", (step / 1000).to_string()),
    ];
    let began = Instant::now();
    let resp = http
        .get(format!("{}/api/v1/query_range", fed.url))
        .query(&params)
        .send()
        .await?;
    let body = resp.bytes().await?;
    let took = began.elapsed();
    // Checked and counted without a JSON tree: the client shares the process with the
    // federator, and should take as little from it as it can between queries.
    #[derive(serde::Deserialize)]
    struct Answer {
        status: String,
        data: Option<Data>,
    }
    #[derive(serde::Deserialize)]
    struct Data {
        result: Vec<Result>,
    }
    #[derive(serde::Deserialize)]
    struct Result {
        values: Vec<serde::de::IgnoredAny>,
    }
    let a: Answer = serde_json::from_slice(&body)?;
    match a.data {
        Some(d) if a.status == "success" => {
            Ok((took, d.result.iter().map(|r| r.values.len()).sum()))
        }
        _ => bail!("{q} failed: {}", String::from_utf8_lossy(&body)),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn pct(v: &mut [Duration], q: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn main() -> anyhow::Result<()> {
    let a = args()?;
    let bin = test_support::aerie_binary(&Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))?;
    let temp = tempfile::Builder::new().prefix("aerie-bench-").tempdir()?;
    let data = a.data.clone().unwrap_or_else(|| temp.path().to_owned());
    // A kept directory records what was loaded into it and when the data ends.
    let marker = data.join("federator-bench.loaded");
    let loaded: Option<i64> = std::fs::read_to_string(&marker).ok().and_then(|t| {
        let mut w = t.split_whitespace().map(|x| x.parse::<i64>().ok());
        match (w.next()??, w.next()??, w.next()??) {
            (s, d, end) if s == a.series as i64 && d == a.days => Some(end),
            _ => None,
        }
    });
    if a.data.is_some() && loaded.is_none() && marker.exists() {
        bail!(
            "{} holds another load: pass the --series and --days it was loaded with, or another --data",
            data.display()
        );
    }
    let (http_port, grpc_port, mc_port) = (free_port()?, free_port()?, free_port()?);
    let _storage = KillOnDrop(
        Command::new(&bin)
            .arg("storage")
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-host", "127.0.0.1"])
            .args(["--set", &format!("storage.server.http_port={http_port}")])
            .args(["--set", &format!("storage.server.grpc_port={grpc_port}")])
            .args(["--set", "storage.server.max_request_bytes=67108864"])
            .args(["--set", "storage.embedded.fsync=never"])
            .args(["--set", "storage.embedded.maintenance_interval=5s"])
            .args(a.storage_set.iter().flat_map(|kv| ["--set", kv.as_str()]))
            .env("AERIE_LOG__LEVEL", "warn")
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start aerie storage")?,
    );
    wait_port(grpc_port, "aerie storage")?;
    let _mc = memcached(mc_port)?;
    let grpc = format!("http://127.0.0.1:{grpc_port}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    // End an hour ago, on the hour: the whole range is immutable and tiles into spans.
    let end = match loaded {
        Some(end) => end,
        None => {
            let end = now - now.rem_euclid(3_600_000) - 3_600_000;
            tokio::runtime::Runtime::new()?.block_on(async {
                load(&grpc, &a, end).await?;
                settle(http_port).await
            })?;
            std::fs::write(&marker, format!("{} {} {end}\n", a.series, a.days))?;
            end
        }
    };
    // The queries are asked from one thread, as a light HTTP client asks them (its
    // connection and its requests share the thread); each federator has its own
    // process, and its threads to itself.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(queries(&a, &bin, &grpc, mc_port, end))
}

/// What the cases share: the flags, the binary, the storage and memcached, the range.
struct Ctx<'a> {
    a: &'a Args,
    bin: &'a Path,
    http: reqwest::Client,
    grpc: &'a str,
    mc_port: u16,
    start: i64,
    end: i64,
}

impl Ctx<'_> {
    fn wants(&self, case: &str) -> bool {
        self.a.cases.iter().any(|c| c == case)
    }

    /// `q` over the whole range at `step` from a fresh federator process with memcached
    /// emptied: the federator (for warm runs), the latency and the points answered.
    async fn cold(&self, q: &str, step: i64) -> anyhow::Result<(Fed, Duration, usize)> {
        // Let the stores of a previous run land before emptying the cache.
        tokio::time::sleep(Duration::from_millis(500)).await;
        flush_memcached(self.mc_port)?;
        let fed = federator(self.bin, &self.http, self.grpc, Some(self.mc_port), LOCAL).await?;
        let (d, pts) = run(&self.http, &fed, q, self.start, self.end, step).await?;
        Ok((fed, d, pts))
    }
}

/// Latencies as `a, b, c` in ms.
fn runs_text(runs: &[Duration]) -> String {
    runs.iter()
        .map(|d| format!("{:.1}", ms(*d)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every case `--cases` names, against federator processes over the loaded storage.
async fn queries(a: &Args, bin: &Path, grpc: &str, mc_port: u16, end: i64) -> anyhow::Result<()> {
    let start = end - a.days * DAY;
    storage_alone(grpc, start, end).await?;
    let c = Ctx {
        a,
        bin,
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(4)
            .build()?,
        grpc,
        mc_port,
        start,
        end,
    };
    println!(
        "federator-bench: {} series x {} days of 1-minute data, storage = aerie storage (embedded), memcached 1.6",
        a.series, a.days
    );
    single(&c).await?;
    if c.wants("sum5") {
        sum5(&c).await?;
    }
    // At 1m every raw sample is read; rate is computed in storage per series,
    // and the sum with it.
    let rate = "sum(rate(ts(bench, *, m)))";
    let moving = "sum(moving(ts(bench, *, m), 1h, avg))";
    for (case, label, q, step) in [
        ("sum1", "sum", ALL, MIN),
        ("rate5", "sum(rate)", rate, 5 * MIN),
        ("rate1", "sum(rate)", rate, MIN),
        ("moving5", "sum(moving 1h avg)", moving, 5 * MIN),
    ] {
        if c.wants(case) {
            cold_case(&c, label, q, step).await?;
        }
    }
    Ok(())
}

/// A single series over one day at the raw one-minute step, per cache setting
/// (`single`: all three; `local`: the default one).
async fn single(c: &Ctx<'_>) -> anyhow::Result<()> {
    let (a, http, end) = (c.a, &c.http, c.end);
    let one = "ts(bench, h00042, m)";
    for (label, cache, local) in [
        ("no cache", None, 0),
        ("memcached", Some(c.mc_port), 0),
        ("in-process tier + memcached", Some(c.mc_port), LOCAL),
    ]
    .into_iter()
    .filter(|s| c.wants("single") || (s.2 > 0 && c.wants("local")))
    {
        let fed = federator(c.bin, http, c.grpc, cache, local).await?;
        if local > 0 {
            // What any answer costs over this HTTP client and server: the floor.
            let mut lat = Vec::new();
            for _ in 0..a.single_runs {
                let began = Instant::now();
                http.get(format!("{}/health", fed.url))
                    .send()
                    .await?
                    .bytes()
                    .await?;
                lat.push(began.elapsed());
            }
            println!(
                "HTTP round trip of /health (the floor): p50 {:.3} ms",
                ms(pct(&mut lat, 0.5))
            );
        }
        for _ in 0..20 {
            run(http, &fed, one, end - DAY, end, MIN).await?;
        }
        let mut lat = Vec::new();
        let mut pts = 0;
        for _ in 0..a.single_runs {
            let (d, p) = run(http, &fed, one, end - DAY, end, MIN).await?;
            lat.push(d);
            pts = p;
        }
        println!(
            "single series, 1 day raw ({pts} points, {label}): p50 {:.3} ms, p99 {:.3} ms",
            ms(pct(&mut lat, 0.5)),
            ms(pct(&mut lat, 0.99))
        );
    }
    Ok(())
}

const ALL: &str = "sum(ts(bench, *, m))";

/// `sum` over every series at a 5-minute step: cold, then warm.
async fn sum5(c: &Ctx<'_>) -> anyhow::Result<()> {
    let mut colds = Vec::new();
    let mut warm = Vec::new();
    let mut pts = 0;
    for _ in 0..3 {
        let (fed, d, p) = c.cold(ALL, 5 * MIN).await?;
        colds.push(d);
        pts = p;
        // Spans are stored after the answer.
        tokio::time::sleep(Duration::from_millis(500)).await;
        for _ in 0..20 {
            warm.push(run(&c.http, &fed, ALL, c.start, c.end, 5 * MIN).await?.0);
        }
    }
    println!(
        "sum over {} series x {} days, 5m step ({pts} points): cold p50 {:.1} ms (runs: {}), warm p50 {:.2} ms p99 {:.2} ms",
        c.a.series,
        c.a.days,
        ms(pct(&mut colds.clone(), 0.5)),
        runs_text(&colds),
        ms(pct(&mut warm, 0.5)),
        ms(pct(&mut warm, 0.99)),
    );
    Ok(())
}

/// `q` over the whole range at `step`, cold, three times (`label` names it).
async fn cold_case(c: &Ctx<'_>, label: &str, q: &str, step: i64) -> anyhow::Result<()> {
    let mut pts = 0;
    let mut colds = Vec::new();
    for _ in 0..3 {
        let (_, d, p) = c.cold(q, step).await?;
        colds.push(d);
        pts = p;
    }
    println!(
        "{label} over {} series x {} days, {}m step ({pts} points): cold p50 {:.1} ms (runs: {})",
        c.a.series,
        c.a.days,
        step / MIN,
        ms(pct(&mut colds.clone(), 0.5)),
        runs_text(&colds),
    );
    Ok(())
}
