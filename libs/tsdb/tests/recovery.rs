//! Crash recovery: a child process appends in a loop and is killed with
//! SIGKILL at random moments (20 times); after each kill the store reopens
//! and every sample whose `append` returned is present, with nothing else
//! corrupted.
//!
//! The child is this same test binary re-run on `child_ingest_loop` with
//! `TSDB_RECOVERY_DIR` set; it prints `base <ms>` and then `ack <k>` after
//! each acknowledged batch.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tsdb::*;

const SERIES: usize = 20;
const ROUNDS: usize = 20;

#[test]
fn child_ingest_loop() {
    let Ok(dir) = std::env::var("TSDB_RECOVERY_DIR") else {
        return;
    };
    let round = std::env::var("TSDB_RECOVERY_ROUND").expect("round");
    let e = Engine::open(&dir, Options::default()).expect("child open");
    let base = SystemClock.now_ms();
    let sources: Vec<String> = (0..SERIES).map(|i| format!("r{round}-h{i}")).collect();
    println!("base {base}");
    for k in 0i64.. {
        let rows: Vec<SampleRow> = sources
            .iter()
            .enumerate()
            .map(|(i, s)| SampleRow {
                service: "crash",
                source: s,
                metric: "m",
                ts: base + k,
                value: (k * 100 + i as i64) as f64,
            })
            .collect();
        e.append(&rows).expect("child append");
        println!("ack {k}");
        if k % 97 == 96 {
            e.flush().expect("child flush");
        }
        if k % 251 == 250 {
            e.compact().expect("child compact");
        }
    }
}

#[test]
fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let mut rounds: Vec<(i64, i64)> = Vec::new();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let started = Instant::now();
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "child_ingest_loop",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("TSDB_RECOVERY_DIR", dir.path())
            .env("TSDB_RECOVERY_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            let mut base = None;
            let mut acked = -1i64;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // The harness prefixes the first line with the test name.
                if let Some(pos) = line.find("base ") {
                    base = line[pos + 5..].trim().parse::<i64>().ok();
                } else if let Some(k) = line.strip_prefix("ack ") {
                    acked = k.parse().unwrap_or(acked);
                }
            }
            (base, acked)
        });
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(150 + rng % 400));
        kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).expect("kill");
        child.wait().expect("reap");
        let (base, acked) = reader.join().expect("reader");
        let base = base.expect("child printed its base time");
        rounds.push((base, acked));

        let e = Engine::open(dir.path(), Options::default()).expect("reopen after kill");
        assert!(
            e.corrupt_blocks().is_empty(),
            "round {round}: {:?}",
            e.corrupt_blocks()
        );
        for (r, &(base, acked)) in rounds.iter().enumerate() {
            for i in 0..SERIES {
                let key = SeriesKey::new("crash", format!("r{r}-h{i}"), "m");
                let got = e.read_range(&key, base, base + 10_000_000).expect("read");
                for s in &got {
                    let k = s.ts - base;
                    assert_eq!(
                        s.value,
                        (k * 100 + i as i64) as f64,
                        "round {r} series {i}: sample at k={k} corrupted"
                    );
                }
                let ks: Vec<i64> = got.iter().map(|s| s.ts - base).collect();
                let prefix: Vec<i64> = (0..=acked).collect();
                assert!(
                    ks.len() >= prefix.len(),
                    "round {r} series {i}: {} samples, {} acknowledged",
                    ks.len(),
                    prefix.len()
                );
                assert_eq!(
                    &ks[..prefix.len()],
                    &prefix[..],
                    "round {r} series {i}: acknowledged samples missing"
                );
                assert!(
                    ks.len() <= prefix.len() + 1,
                    "round {r} series {i}: samples never written appeared"
                );
            }
        }
        drop(e);
    }
    assert!(
        rounds.iter().filter(|r| r.1 >= 0).count() >= ROUNDS / 2,
        "children made progress: {rounds:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "recovery test took {:?}",
        started.elapsed()
    );
}
