//! The backend conformance suite: the same checks against every `Backend`. The
//! embedded engine always runs; the Scylla store runs when `AERIE_SCYLLA_NODES`
//! names a reachable cluster (comma-separated `host:port`) and says loudly that
//! it was skipped otherwise.

use std::sync::Arc;

use storage_frontend::backend::{Backend, Batch};
use storage_frontend::{EmbeddedBackend, ScyllaBackend};
use tsdb::{
    ALL_SOURCES, DAY_MS, Fragment, KeyPart, ManualClock, Options, RejectReason, Sample, Selector,
    SeriesKey, StepAgg,
};

const MIN: i64 = 60_000;
/// A fixed "now": 2026-11-30 12:00 UTC.
const NOW: i64 = 1_796_040_000_000;

/// `(service, source, metric, [(ts, value)])`.
type Item<'a> = (&'a str, &'a str, &'a str, &'a [(i64, f64)]);

/// Points of a series: `(ts, value)`.
type Points = Vec<(i64, f64)>;

fn batch(items: &[Item<'_>]) -> Batch {
    Arc::new(
        items
            .iter()
            .map(|(svc, src, m, pts)| {
                (
                    SeriesKey::new(*svc, *src, *m),
                    pts.iter()
                        .map(|&(ts, value)| Sample { ts, value })
                        .collect(),
                )
            })
            .collect(),
    )
}

fn sel(svc: &str, src: &str, m: &str) -> Selector {
    Selector::parse(svc, src, m).unwrap()
}

/// Every check, in order, against one backend whose clock reads `NOW`.
async fn conformance(b: &dyn Backend) {
    let t = NOW - 5 * MIN;
    // Writes are acknowledged with counts; re-delivery is idempotent.
    let first = batch(&[
        (
            "web",
            "h1",
            "http/requests",
            &[(t, 1.0), (t + MIN, 2.0), (t + 2 * MIN, 3.0)],
        ),
        (
            "web",
            "h2",
            "http/requests",
            &[(t, 10.0), (t + MIN, 20.0), (t + 2 * MIN, 30.0)],
        ),
        ("web", "h1", "jvm/gc_msec", &[(t, 5.0)]),
        ("db", "d1", "http/requests", &[(t, 100.0)]),
    ]);
    let r = b.write(first.clone()).await.unwrap();
    assert_eq!((r.accepted, r.backfilled, r.rejected.len()), (8, 0, 0));
    b.write(first).await.unwrap();

    // Last write wins on the same timestamp.
    b.write(batch(&[("web", "h1", "http/requests", &[(t + MIN, 2.5)])]))
        .await
        .unwrap();
    let got = b
        .read_range(SeriesKey::new("web", "h1", "http/requests"), t, t + 3 * MIN)
        .await
        .unwrap();
    let values: Vec<(i64, f64)> = got.iter().map(|s| (s.ts, s.value)).collect();
    assert_eq!(values, vec![(t, 1.0), (t + MIN, 2.5), (t + 2 * MIN, 3.0)]);

    // Ranges are half-open.
    let got = b
        .read_range(
            SeriesKey::new("web", "h1", "http/requests"),
            t + MIN,
            t + 2 * MIN,
        )
        .await
        .unwrap();
    assert_eq!(got.len(), 1);

    // Bit-exact values, NaN and infinities included.
    let special = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        f64::MIN_POSITIVE,
    ];
    let pts: Vec<(i64, f64)> = special
        .iter()
        .enumerate()
        .map(|(i, &v)| (t + i as i64 * 1000, v))
        .collect();
    b.write(batch(&[("web", "h9", "odd", &pts)])).await.unwrap();
    let got = b
        .read_range(SeriesKey::new("web", "h9", "odd"), t, t + MIN)
        .await
        .unwrap();
    let bits: Vec<u64> = got.iter().map(|s| s.value.to_bits()).collect();
    assert_eq!(
        bits,
        special.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );

    // Rejections name their reason and index; the rest of the batch is stored.
    let r = b
        .write(batch(&[(
            "web",
            "h3",
            "cpu",
            &[(NOW + 2 * DAY_MS, 1.0), (t, 7.0), (NOW - 400 * DAY_MS, 1.0)],
        )]))
        .await
        .unwrap();
    assert_eq!(r.accepted, 1);
    let reasons: Vec<(usize, RejectReason)> =
        r.rejected.iter().map(|x| (x.index, x.reason)).collect();
    assert_eq!(
        reasons,
        vec![
            (0, RejectReason::TooFarInFuture),
            (2, RejectReason::BeyondRetention)
        ]
    );

    // Selection by glob, regex and literal, in key order.
    let keys = b.select(sel("web", "*", "http/*"), t, NOW).await.unwrap();
    assert_eq!(
        keys,
        vec![
            SeriesKey::new("web", "h1", "http/requests"),
            SeriesKey::new("web", "h2", "http/requests"),
        ]
    );
    let keys = b
        .select(sel("/w.b|db/", "*", "http/requests"), t, NOW)
        .await
        .unwrap();
    assert_eq!(keys.len(), 3);
    // Nothing existed before the data.
    assert!(
        b.select(sel("*", "*", "*"), t - DAY_MS, t - DAY_MS + MIN)
            .await
            .unwrap()
            .is_empty()
    );

    // Discovery of names.
    let services = b
        .names(sel("*", "*", "*"), KeyPart::Service, t, NOW)
        .await
        .unwrap();
    assert_eq!(services, vec!["db".to_string(), "web".to_string()]);
    let metrics = b
        .names(sel("web", "h1", "*"), KeyPart::Metric, t, NOW)
        .await
        .unwrap();
    assert_eq!(
        metrics,
        vec!["http/requests".to_string(), "jvm/gc_msec".to_string()]
    );

    // A fragment: sum by service of the last sample per step.
    let f = Fragment {
        selector: sel("*", "*", "http/requests"),
        start: t,
        end: t + 3 * MIN,
        step: MIN,
        per_step: StepAgg::Last,
        group_by: vec![KeyPart::Service],
    };
    let r = b.aggregate(f).await.unwrap();
    let sums: Vec<(Vec<String>, Points)> = r
        .groups
        .iter()
        .map(|g| {
            (
                g.key.clone(),
                g.points.iter().map(|(t, p)| (*t, p.sum)).collect(),
            )
        })
        .collect();
    assert_eq!(
        sums,
        vec![
            (vec!["db".to_string()], vec![(t, 100.0)]),
            (
                vec!["web".to_string()],
                vec![(t, 11.0), (t + MIN, 22.5), (t + 2 * MIN, 33.0)]
            ),
        ]
    );

    // Service aggregates: the per-minute sum over the sources of a service.
    let agg = b
        .read_range(
            SeriesKey::new("web", ALL_SOURCES, "http/requests"),
            t,
            t + 3 * MIN,
        )
        .await
        .unwrap();
    let values: Vec<f64> = agg.iter().map(|s| s.value).collect();
    assert_eq!(values, vec![11.0, 22.5, 33.0]);

    // Backfill bumps the epoch of its (service, day), and only that one.
    let day = (NOW - 2 * DAY_MS).div_euclid(DAY_MS);
    let before = b.epoch("web".into(), day).await.unwrap();
    let other = b.epoch("db".into(), day).await.unwrap();
    let r = b
        .write(batch(&[(
            "web",
            "h1",
            "http/requests",
            &[(NOW - 2 * DAY_MS, 4.0)],
        )]))
        .await
        .unwrap();
    assert_eq!((r.accepted, r.backfilled), (1, 1));
    let after = b.epoch("web".into(), day).await.unwrap();
    assert_ne!(after, before, "backfill must change the epoch");
    assert_eq!(b.epoch("db".into(), day).await.unwrap(), other);
    let got = b
        .read_range(
            SeriesKey::new("web", "h1", "http/requests"),
            NOW - 2 * DAY_MS,
            NOW - 2 * DAY_MS + 1,
        )
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![Sample {
            ts: NOW - 2 * DAY_MS,
            value: 4.0
        }]
    );

    assert!(b.ooo_window_ms() > 0);
    assert_eq!(b.now_ms(), NOW);
    b.maintain().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        clock: Arc::new(ManualClock::new(NOW)),
        ..Options::default()
    };
    let b = EmbeddedBackend::open(dir.path(), opts.clone())
        .await
        .unwrap();
    conformance(&b).await;
    drop(b);
    // And the data survives a reopen.
    let b = EmbeddedBackend::open(dir.path(), opts).await.unwrap();
    let got = b
        .read_range(SeriesKey::new("web", "h2", "http/requests"), 0, NOW)
        .await
        .unwrap();
    assert_eq!(got.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_backend_conforms() {
    let Ok(nodes) = std::env::var("AERIE_SCYLLA_NODES") else {
        eprintln!(
            "SKIPPED scylla_backend_conforms: set AERIE_SCYLLA_NODES=host:port[,...] to run the conformance suite against a ScyllaDB/Cassandra cluster"
        );
        return;
    };
    let config = scylla_store::ScyllaConfig {
        nodes: scylla_store::ScyllaConfig::parse_nodes(&nodes),
        keyspace: format!("aerie_conformance_{}", std::process::id()),
        write_consistency: scylla_store::Consistency::One,
        read_consistency: scylla_store::Consistency::One,
        ..Default::default()
    };
    let b = ScyllaBackend::connect(config, Arc::new(ManualClock::new(NOW)))
        .await
        .expect("AERIE_SCYLLA_NODES is set but the cluster cannot be used");
    conformance(&b).await;
}
