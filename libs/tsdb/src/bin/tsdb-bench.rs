//! `tsdb-bench`: ingest, size and query figures of the embedded engine on a
//! deterministic fleet-shaped data set; the last line is one JSON object.
//!
//! Data: per series one of counters (monotonic integers with rare resets),
//! gauges (noise and drift, two decimals), latency percentiles p50..p9999
//! (one decimal), constants and sparse series, at 1-minute resolution.
//! Full run: 10,000 series x 7 days (100.8 M samples) and 1,000,000 active
//! head series; `--quick` shrinks both to finish in under a minute.
//! The store is measured and read twice: compacted an hour past the
//! history as the engine does by default (the figures of the JSON line
//! but `bytes_per_sample_week_blocks`), and a day later with week blocks
//! on (`long_partition_ms`), when its last 7-day window is cold and
//! compaction has merged it into one block.
//! `--keep DIR` leaves the loaded store in `DIR`; `--reads DIR` opens a store
//! kept that way and runs only the reads (for profiling the read path);
//! `--step S` then runs only the sum at a step of S seconds. `--plain-raw`
//! writes raw chunks on their own instead of against their 5-minute rollup. A run removes
//! the temporary directories that killed runs left behind.

use std::sync::Arc;
use std::time::Instant;

use tsdb::{
    Engine, Fragment, FsyncPolicy, ManualClock, Options, SampleRow, Selector, SeriesKey, StepAgg,
};

const MIN: i64 = 60_000;
const T0: i64 = 1_700_006_400_000;
const METRICS: [&str; 10] = [
    "srv/requests",
    "srv/errors",
    "jvm/gc_count",
    "jvm/heap_used_pct",
    "sys/load",
    "srv/latency_ms.p50",
    "srv/latency_ms.p99",
    "srv/latency_ms.p9999",
    "build/version",
    "batch/last_run_s",
];

/// Deterministic generator of one series' next value.
struct Gen {
    state: Vec<f64>,
    rng: u64,
}

impl Gen {
    fn new(n: usize) -> Self {
        Self {
            state: (0..n).map(|i| (i % 977) as f64 * 13.0).collect(),
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The sample of series `i` at minute `m`, if it reports then.
    fn sample(&mut self, i: usize, m: i64) -> Option<f64> {
        let kind = i % 10;
        let rate = 50.0 + (i % 37) as f64 * 10.0;
        let u = self.unit();
        let s = &mut self.state[i];
        Some(match kind {
            0..=2 => {
                if u < 1.0 / 5000.0 {
                    *s = 0.0;
                } else {
                    *s += (rate * (0.8 + 0.4 * u)).round();
                }
                *s
            }
            3 | 4 => {
                let drift = (m as f64 / 600.0).sin() * 10.0;
                ((40.0 + drift + (u - 0.5) * 4.0) * 100.0).round() / 100.0
            }
            5..=7 => {
                let base = [12.0, 85.0, 400.0][kind - 5];
                let spike = if u > 0.995 { 5.0 } else { 1.0 };
                (base * spike * (0.9 + 0.2 * u) * 10.0).round() / 10.0
            }
            8 => 42.0,
            _ => {
                if m % 15 != 0 {
                    return None;
                }
                (u * 300.0).round()
            }
        })
    }
}

fn key_parts(i: usize) -> (String, String, &'static str) {
    (
        format!("svc{}", i / 1000),
        format!("host{:03}:8080", (i / 10) % 100),
        METRICS[i % 10],
    )
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

/// Appends `minutes` of data for `n` series starting at `start`; returns
/// (samples, seconds spent inside `append`). Rows of `batch_minutes`
/// consecutive minutes go into one append call (at most 100,000 rows).
fn ingest(
    e: &Engine,
    clock: Option<&ManualClock>,
    keys: &[(String, String, &str)],
    start: i64,
    minutes: i64,
    batch_minutes: i64,
) -> (u64, f64) {
    let mut g = Gen::new(keys.len());
    let mut rows: Vec<SampleRow> = Vec::with_capacity(keys.len());
    let mut spent = 0.0;
    let mut samples = 0u64;
    for m in 0..minutes {
        let ts = start + m * MIN;
        if let Some(c) = clock {
            c.set(ts + 1000);
        }
        if m % batch_minutes == 0 {
            rows.clear();
        }
        for (i, k) in keys.iter().enumerate() {
            if let Some(v) = g.sample(i, m) {
                rows.push(SampleRow {
                    service: &k.0,
                    source: &k.1,
                    metric: k.2,
                    ts,
                    value: v,
                });
            }
        }
        if (m + 1) % batch_minutes != 0 && m + 1 != minutes {
            continue;
        }
        for batch in rows.chunks(100_000) {
            let t = Instant::now();
            let r = e.append(batch).expect("append");
            spent += t.elapsed().as_secs_f64();
            assert!(
                r.rejected.is_empty(),
                "bench data rejected: {:?}",
                r.rejected.first()
            );
            samples += batch.len() as u64;
        }
    }
    (samples, spent)
}

/// Single-series and whole-store reads from a freshly opened store: the
/// single-series p50 and the best of three sums at 1 m, 5 m and 1 h steps.
fn reads(
    dir: &std::path::Path,
    opts: Options,
    keys: &[(String, String, &str)],
    days: i64,
    end: i64,
) -> (f64, Vec<f64>) {
    // Reads from a freshly opened store.
    let t = Instant::now();
    let e = Engine::open(dir, opts).expect("reopen");
    println!("reopen: {:.1} ms", ms(t.elapsed()));
    let mut lat = Vec::new();
    let mut g = Gen::new(1);
    for _ in 0..200 {
        let i = (g.next_u64() % keys.len() as u64) as usize;
        let d = (g.next_u64() % days as u64) as i64;
        let k = &keys[i];
        let key = SeriesKey::new(k.0.clone(), k.1.clone(), k.2);
        let t = Instant::now();
        let s = e
            .read_range(&key, T0 + d * 1440 * MIN, T0 + (d + 1) * 1440 * MIN)
            .expect("read");
        lat.push(ms(t.elapsed()));
        assert!(!s.is_empty());
    }
    lat.sort_by(f64::total_cmp);
    let p50 = lat[lat.len() / 2];
    println!(
        "single series, one day raw: p50 {p50:.3} ms, p99 {:.3} ms",
        lat[lat.len() * 99 / 100]
    );

    let mut sums = Vec::new();
    // `--step S` (seconds) runs only that sum, for profiling one path.
    let only: Option<i64> = flag_value("--step").and_then(|s| s.to_str()?.parse().ok());
    for step in [MIN, 5 * MIN, 60 * MIN] {
        if only.is_some_and(|s| s * 1000 != step) {
            continue;
        }
        let f = Fragment {
            selector: Selector::parse("*", "*", "*").expect("selector"),
            start: T0 + step,
            end: end + step,
            step,
            per_step: StepAgg::Last,
            group_by: vec![],
        };
        let mut best = f64::MAX;
        let mut touched = 0;
        for _ in 0..if only.is_some() { 10 } else { 3 } {
            let t = Instant::now();
            let r = e.aggregate(&f).expect("aggregate");
            best = best.min(ms(t.elapsed()));
            touched = r.samples;
            assert_eq!(r.series, keys.len());
        }
        println!(
            "sum over {} series x {days} d at step {} s: {best:.1} ms ({touched} samples/buckets read)",
            keys.len(),
            step / 1000
        );
        sums.push(best);
    }
    (p50, sums)
}

/// A fresh directory under the system's temporary one, removed on exit.
fn tempfile_dir(name: &str) -> Cleanup {
    let d = std::env::temp_dir().join(format!("tsdb-bench-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("create bench dir");
    Cleanup(d, true)
}

/// Removes the bench directory on exit unless it was asked to be kept.
struct Cleanup(std::path::PathBuf, bool);

impl Cleanup {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.1 {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Removes the temporary directories of earlier runs that were killed before
/// they could (`tsdb-bench-…-PID` whose process is gone).
fn remove_abandoned_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("tsdb-bench-")) else {
            continue;
        };
        let pid = rest.rsplit('-').next().and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && pid != std::process::id()
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The value after `flag` on the command line.
fn flag_value(flag: &str) -> Option<std::path::PathBuf> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(Into::into)
}

/// Prints the store's bytes on disk a sample (`label` says when), in total
/// and by part; returns the total and the raw part.
fn disk(label: &str, e: &Engine, samples: u64) -> (f64, f64) {
    let per = |b: u64| b as f64 / samples as f64;
    let parts = e.block_breakdown();
    let total = per(e.block_bytes());
    println!(
        "disk, {label}: {} bytes in {} blocks = {total:.3} bytes/sample (raw {:.3}, 5m rollup {:.3}, 1h rollup {:.3}, index and footers {:.3})",
        e.block_bytes(),
        e.stats().blocks,
        per(parts.raw),
        per(parts.rollups[0]),
        per(parts.rollups[1]),
        per(parts.other)
    );
    (total, per(parts.raw))
}

fn main() {
    remove_abandoned_dirs();
    let quick = std::env::args().any(|a| a == "--quick");
    let (n_series, days, head_series, head_minutes) = if quick {
        (2_000usize, 1i64, 100_000usize, 10i64)
    } else {
        (10_000, 7, 1_000_000, 10)
    };
    let keys: Vec<_> = (0..n_series).map(key_parts).collect();
    let end = T0 + days * 1440 * MIN;
    if let Some(dir) = flag_value("--reads") {
        let clock = Arc::new(ManualClock::new(end + 3_600_000));
        let opts = Options {
            clock,
            ..Options::default()
        };
        reads(&dir.join("store"), opts, &keys, days, end);
        return;
    }
    // `--live-only` runs only the live ingest (for profiling the write path).
    if std::env::args().any(|a| a == "--live-only") {
        let dir = tempfile_dir("live-only");
        let clock = Arc::new(ManualClock::new(T0));
        let e = Engine::open(
            dir.path(),
            Options {
                clock: clock.clone(),
                fsync: FsyncPolicy::Always,
                ..Options::default()
            },
        )
        .expect("open");
        let (n, secs) = ingest(&e, Some(&clock), &keys, T0, 720, 1);
        println!(
            "live: {n} samples in {secs:.2} s = {:.0} samples/s",
            n as f64 / secs
        );
        return;
    }
    let kept = flag_value("--keep");
    let base_dir = kept
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("tsdb-bench-{}", std::process::id())));
    std::fs::create_dir_all(&base_dir).expect("create bench dir");
    let base = Cleanup(base_dir, kept.is_none());
    println!(
        "tsdb-bench: {} mode, {n_series} series x {days} days, {head_series} head series",
        if quick { "quick" } else { "full" }
    );

    // Head memory first, in a clean process: RSS growth per active series.
    let head_bytes_per_series = {
        let keys: Vec<_> = (0..head_series).map(key_parts).collect();
        let clock = Arc::new(ManualClock::new(T0));
        let before = rss_bytes();
        let e = Engine::open(
            base.path().join("head"),
            Options {
                clock: clock.clone(),
                fsync: FsyncPolicy::Never,
                ..Options::default()
            },
        )
        .expect("open");
        let (samples, secs) = ingest(&e, Some(&clock), &keys, T0, head_minutes, 1);
        let after = rss_bytes();
        let per = after.saturating_sub(before) as f64 / head_series as f64;
        println!(
            "head: {head_series} series x {head_minutes} min ({samples} samples, {:.0}/s live, fsync off): rss {:.1} MiB -> {:.0} B/series (engine estimate {:.0} B/series)",
            samples as f64 / secs,
            (after - before) as f64 / 1048576.0,
            per,
            e.head_heap_bytes() as f64 / head_series as f64
        );
        drop(keys);
        per
    };

    let dir = base.path().join("store");

    // Backfill: history loaded in time order, group commit with fsync.
    let clock = Arc::new(ManualClock::new(end + 3_600_000));
    let opts = Options {
        clock: clock.clone(),
        fsync: FsyncPolicy::Always,
        raw_against_rollup: !std::env::args().any(|a| a == "--plain-raw"),
        ..Options::default()
    };
    let e = Engine::open(&dir, opts.clone()).expect("open");
    let (bf_samples, bf_secs) = ingest(&e, None, &keys, T0, days * 1440, 10);
    let bf_rate = bf_samples as f64 / bf_secs;
    println!(
        "backfill: {bf_samples} samples in {bf_secs:.2} s = {bf_rate:.0} samples/s (10-minute batches, fsync per batch, seals included)"
    );
    let t = Instant::now();
    e.flush().expect("flush");
    let c = e.compact().expect("compact");
    println!(
        "seal + compaction: {:.2} s, {c} compacted blocks",
        t.elapsed().as_secs_f64()
    );
    let (bytes_per_sample, raw_bytes_per_sample) =
        disk("compacted an hour past the history", &e, bf_samples);
    drop(e);

    // Live: minute by minute at "now", fsync per batch.
    let live_dir = base.path().join("live");
    let live_clock = Arc::new(ManualClock::new(T0));
    let live = Engine::open(
        &live_dir,
        Options {
            clock: live_clock.clone(),
            ..opts.clone()
        },
    )
    .expect("open");
    let live_minutes = if quick { 60 } else { 180 };
    let (lv_samples, lv_secs) = ingest(&live, Some(&live_clock), &keys, T0, live_minutes, 1);
    let live_rate = lv_samples as f64 / lv_secs;
    println!(
        "live: {lv_samples} samples in {lv_secs:.2} s = {live_rate:.0} samples/s (one batch per minute, fsync per batch)"
    );
    drop(live);
    let ingest_rate = live_rate.min(bf_rate);

    println!("reads, compacted an hour past the history:");
    let (p50, sums) = reads(&dir, opts.clone(), &keys, days, end);

    // With week blocks (`long_partition_ms`, off by default), a day later,
    // when the history's last 7-day window is cold as well: compaction
    // merges each window's daily blocks into one.
    let clock = Arc::new(ManualClock::new(end + 1440 * MIN + 3_600_000));
    let opts = Options {
        clock,
        long_partition_ms: 7 * 1440 * MIN,
        ..opts
    };
    let e = Engine::open(&dir, opts.clone()).expect("reopen");
    let t = Instant::now();
    let c = e.compact().expect("compact");
    println!(
        "compaction a day past the last 7-day window: {:.2} s, {c} blocks written",
        t.elapsed().as_secs_f64()
    );
    let (week_blocks, _) = disk(
        "in week blocks a day past the history (cold 7-day windows merged)",
        &e,
        bf_samples,
    );
    drop(e);
    println!("reads of the store in week blocks:");
    reads(&dir, opts, &keys, days, end);
    println!(
        "{{\"ingest_samples_per_sec_per_core\":{:.0},\"bytes_per_sample\":{:.3},\"bytes_per_sample_week_blocks\":{:.3},\"raw_bytes_per_sample\":{:.3},\"head_bytes_per_series\":{:.0},\"single_series_day_p50_ms\":{:.3},\"sum_10k_7d_raw_ms\":{:.1},\"sum_10k_7d_5m_ms\":{:.1},\"sum_10k_7d_1h_ms\":{:.1}}}",
        ingest_rate,
        bytes_per_sample,
        week_blocks,
        raw_bytes_per_sample,
        head_bytes_per_series,
        p50,
        sums[0],
        sums[1],
        sums[2]
    );
}
