//! `aerie storage` as its own process: a separate gRPC client writes batches
//! while the process is killed with SIGKILL mid-stream; after a restart on the
//! same data directory every acknowledged sample reads back exactly.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use std::time::Duration;
use test_support::KillOnDrop;

use proto::common as pb;
use proto::storage::{self as api, storage_client::StorageClient};

const MIN: i64 = 60_000;

/// Starts `aerie storage` on picked loopback ports; returns it and its gRPC URL.
fn start(data: &Path) -> (KillOnDrop, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aerie"));
    for (k, _) in std::env::vars() {
        if k.starts_with("AERIE_") {
            cmd.env_remove(k);
        }
    }
    let child = cmd
        .args([
            "storage",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen-host",
            "127.0.0.1",
            "--set",
            "storage.server.http_port=0",
            "--set",
            "storage.server.grpc_port=0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut running = KillOnDrop(child);
    let stdout = running.0.stdout.take().unwrap();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if line.trim_start().starts_with("storage")
            && let Some(addr) = line.split("grpc ").nth(1)
        {
            return (running, format!("http://{}", addr.trim()));
        }
    }
    panic!("aerie storage printed no gRPC address");
}

fn now_min() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    now - now.rem_euclid(MIN)
}

/// Batch `b`: 20 series, one sample each at a timestamp only this batch uses.
fn batch(b: i64, t0: i64) -> api::WriteRequest {
    api::WriteRequest {
        series: (0..20)
            .map(|s| pb::Series {
                key: Some(pb::SeriesKey {
                    service: "restart".into(),
                    source: format!("h{s}"),
                    metric: "m".into(),
                }),
                samples: vec![pb::Sample {
                    timestamp_ms: t0 + b,
                    value: (b * 100 + s) as f64,
                }],
            })
            .collect(),
    }
}

#[test]
fn every_acknowledged_sample_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let t0 = now_min() - 5 * MIN;
    let rt = tokio::runtime::Runtime::new().unwrap();

    let mut acked: Vec<i64> = Vec::new();
    for round in 0..3 {
        let (mut child, url) = start(&data);
        let base = round * 100_000;
        let got = rt.block_on(async {
            let mut client = StorageClient::connect(url).await.unwrap();
            // Writers run until the process dies under them.
            let mut acked = Vec::new();
            let mut writers = tokio::task::JoinSet::new();
            for w in 0..4i64 {
                let mut client = client.clone();
                writers.spawn(async move {
                    let mut mine = Vec::new();
                    for i in 0..100_000i64 {
                        let b = base + i * 4 + w;
                        match client.write(batch(b, t0)).await {
                            Ok(_) => mine.push(b),
                            Err(_) => break,
                        }
                    }
                    mine
                });
            }
            // Let some batches through, then kill the process mid-stream.
            loop {
                let r = client
                    .index(api::IndexRequest {
                        kind: api::IndexKind::Series as i32,
                        matcher: None,
                        range: Some(pb::TimeRange {
                            start_ms: t0,
                            end_ms: t0 + 10 * MIN,
                        }),
                        limit: 1,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                if r.total > 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(Duration::from_millis(300 + round as u64 * 100)).await;
            let pid = nix::unistd::Pid::from_raw(child.0.id() as i32);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
            while let Some(w) = writers.join_next().await {
                acked.extend(w.unwrap());
            }
            acked
        });
        let _ = child.0.wait();
        assert!(!got.is_empty(), "round {round}: no batch was acknowledged");
        acked.extend(got);
    }

    // Restart and read everything back.
    let (_child, url) = start(&data);
    let stored = rt.block_on(async {
        let mut client = StorageClient::connect(url).await.unwrap();
        let mut stream = client
            .read(api::ReadRequest {
                matcher: Some(pb::Matcher {
                    service: Some(pb::Pattern {
                        kind: Some(pb::pattern::Kind::Exact("restart".into())),
                    }),
                    source: None,
                    metric: None,
                }),
                range: Some(pb::TimeRange {
                    start_ms: t0,
                    end_ms: t0 + 10 * MIN,
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut stored: BTreeMap<(String, i64), f64> = BTreeMap::new();
        while let Some(chunk) = stream.message().await.unwrap() {
            for s in chunk.series {
                let source = s.key.unwrap().source;
                for p in s.samples {
                    stored.insert((source.clone(), p.timestamp_ms), p.value);
                }
            }
        }
        stored
    });
    for &b in &acked {
        for s in 0..20 {
            let value = stored.get(&(format!("h{s}"), t0 + b));
            assert_eq!(
                value,
                Some(&((b * 100 + s) as f64)),
                "acknowledged batch {b}, series h{s} is missing or wrong after SIGKILL"
            );
        }
    }
    // Nothing that was never written appears.
    for ((source, ts), value) in &stored {
        let b = ts - t0;
        let s: i64 = source[1..].parse().unwrap();
        assert_eq!(
            *value,
            (b * 100 + s) as f64,
            "corrupt sample {source} at {ts}"
        );
    }
    eprintln!(
        "{} acknowledged batches over 3 kills, {} samples read back",
        acked.len(),
        stored.len()
    );
}
