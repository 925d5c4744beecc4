//! Push throughput into the real storage: Prometheus text import and remote_write
//! bodies posted to the collector of a TestCluster, acknowledged only once storage
//! (the embedded engine, WAL and all) accepted them. Prints samples/s; asserts only
//! that everything arrived. Ignored by default (a benchmark, not a test); run with
//! `cargo test --release -p integration-tests --test collector_throughput -- --ignored --nocapture`.

use std::time::Instant;

use integration_tests::TestCluster;

const SERIES: usize = 1000;
const STEPS: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: prints throughput figures"]
async fn import_and_remote_write_into_storage() {
    let cluster = TestCluster::start().await.unwrap();
    let collector = cluster.endpoints("collector").http_url();
    let http = reqwest::Client::new();
    // Two hours ago: inside retention, older than the out-of-order window (backfill).
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 7_200_000;

    // Import: bodies of SERIES series x STEPS timestamps, lines grouped by series.
    let bodies: Vec<String> = (0..8)
        .map(|b| {
            let mut body = String::new();
            for s in 0..SERIES {
                for t in 0..STEPS {
                    body.push_str(&format!(
                        "bench_total{{job=\"import\",instance=\"h{b}-{}\",code=\"{}\"}} {} {}\n",
                        s / 10,
                        s % 10,
                        t * 3 + s,
                        t0 + (t as i64) * 15_000
                    ));
                }
            }
            body
        })
        .collect();
    let started = Instant::now();
    for body in &bodies {
        let r = http
            .post(format!("{collector}/api/v1/import/prometheus"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    }
    let n = bodies.len() * SERIES * STEPS;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "import into storage: {n} samples in {secs:.2} s = {:.0} samples/s",
        n as f64 / secs
    );

    // remote_write: the same shape as snappy protobuf.
    let bodies: Vec<Vec<u8>> = (0..8)
        .map(|b| {
            let req = collector::prompb::WriteRequest {
                timeseries: (0..SERIES)
                    .map(|s| collector::prompb::TimeSeries {
                        labels: vec![
                            collector::prompb::Label {
                                name: "__name__".into(),
                                value: "bench_rw_total".into(),
                            },
                            collector::prompb::Label {
                                name: "code".into(),
                                value: (s % 10).to_string(),
                            },
                            collector::prompb::Label {
                                name: "instance".into(),
                                value: format!("h{b}-{}", s / 10),
                            },
                            collector::prompb::Label {
                                name: "job".into(),
                                value: "rw".into(),
                            },
                        ],
                        samples: (0..STEPS)
                            .map(|t| collector::prompb::Sample {
                                value: (t * 3 + s) as f64,
                                timestamp: t0 + (t as i64) * 15_000,
                            })
                            .collect(),
                    })
                    .collect(),
            };
            req.to_snappy()
        })
        .collect();
    let started = Instant::now();
    for body in &bodies {
        let r = http
            .post(format!("{collector}/api/v1/write"))
            .header("content-encoding", "snappy")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "remote_write into storage: {n} samples in {secs:.2} s = {:.0} samples/s",
        n as f64 / secs
    );
    let stats: serde_json::Value = reqwest::get(format!("{collector}/admin/metrics.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        stats["collector/push/import/samples"].as_u64(),
        Some(n as u64)
    );
    assert_eq!(
        stats["collector/push/remote_write/samples"].as_u64(),
        Some(n as u64)
    );
    cluster.stop().await.unwrap();
}
