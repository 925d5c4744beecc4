//! Integration tests against a real ScyllaDB/Cassandra cluster. They run
//! only when `AERIE_SCYLLA_NODES` names one (`host:9042[,host:9042]`);
//! otherwise they print a SKIPPED line and pass. Each test uses a keyspace
//! of its own and drops it at the end.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use scylla_store::{Error, ScyllaConfig, ScyllaStore, schema};
use tsdb::{
    ALL_SOURCES, DAY_MS, Engine, Fragment, KeyPart, ManualClock, Options, SampleRow, Selector,
    SeriesKey, StepAgg,
};

fn nodes() -> Option<Vec<String>> {
    match std::env::var("AERIE_SCYLLA_NODES") {
        Ok(v) if !v.trim().is_empty() => Some(ScyllaConfig::parse_nodes(&v)),
        _ => {
            println!("SKIPPED: scylla integration tests (set AERIE_SCYLLA_NODES=host:9042)");
            eprintln!("SKIPPED: scylla integration tests (set AERIE_SCYLLA_NODES=host:9042)");
            None
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn config(nodes: Vec<String>, tag: &str) -> ScyllaConfig {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    ScyllaConfig {
        nodes,
        keyspace: format!("aerie_test_{tag}_{}_{nanos}", std::process::id()),
        ..ScyllaConfig::default()
    }
}

async fn drop_keyspace(store: &ScyllaStore) {
    let cql = format!("DROP KEYSPACE IF EXISTS {}", store.config().keyspace);
    if let Err(e) = store.session().query_unpaged(cql, ()).await {
        eprintln!("dropping test keyspace failed: {e}");
    }
}

fn row<'a>(
    service: &'a str,
    source: &'a str,
    metric: &'a str,
    ts: i64,
    value: f64,
) -> SampleRow<'a> {
    SampleRow {
        service,
        source,
        metric,
        ts,
        value,
    }
}

#[tokio::test]
async fn write_read_index_aggregates_and_fragments() {
    let Some(nodes) = nodes() else { return };
    let now = now_ms();
    let clock = Arc::new(ManualClock::new(now));
    let cfg = config(nodes, "rw");
    let store = ScyllaStore::connect_with_clock(cfg.clone(), clock.clone())
        .await
        .expect("connect and create schema");
    let result = AssertUnwindSafe(async {
        assert_eq!(
            store.schema_version().await.unwrap(),
            Some(schema::SCHEMA_VERSION)
        );
        // A second store on the same keyspace uses the schema as is.
        let again = ScyllaStore::connect_with_clock(cfg.clone(), clock.clone())
            .await
            .unwrap();
        drop(again);

        // Write one batch over 3 sources x 2 metrics, 20 minutes.
        let base = (now - 30 * 60_000).div_euclid(60_000) * 60_000;
        let sources = ["h1", "h2", "h3"];
        let metrics = ["http/requests", "jvm/gc_ms"];
        let mut rows = Vec::new();
        for (i, src) in sources.iter().enumerate() {
            for m in metrics {
                for k in 0..20 {
                    rows.push(row(
                        "web",
                        src,
                        m,
                        base + k * 60_000,
                        (i * 100 + k as usize) as f64,
                    ));
                }
            }
        }
        rows.push(row("", "h1", "x", now, 1.0));
        rows.push(row("web", "h1", "x", now + DAY_MS, 1.0));
        let report = store.write(&rows).await.unwrap();
        assert_eq!(report.accepted, 120);
        assert_eq!(report.rejected.len(), 2);
        // Re-delivery changes nothing.
        let again = store.write(&rows).await.unwrap();
        assert_eq!(again.accepted, 120);

        let key = SeriesKey::new("web", "h2", "http/requests");
        let got = store
            .read_range(&key, base, base + 20 * 60_000)
            .await
            .unwrap();
        assert_eq!(got.len(), 20);
        assert_eq!(got[3].ts, base + 3 * 60_000);
        assert_eq!(got[3].value, 103.0);
        let part = store
            .read_range(&key, base + 60_000, base + 3 * 60_000)
            .await
            .unwrap();
        assert_eq!(
            part.iter().map(|s| s.ts).collect::<Vec<_>>(),
            vec![base + 60_000, base + 120_000]
        );

        // A later write of the same timestamp wins.
        store
            .write(&[row("web", "h2", "http/requests", base + 3 * 60_000, -1.0)])
            .await
            .unwrap();
        let got = store
            .read_range(&key, base, base + 20 * 60_000)
            .await
            .unwrap();
        assert_eq!(got.len(), 20);
        assert_eq!(got[3].value, -1.0);

        // Name index.
        let all = Selector::parse("*", "*", "*").unwrap();
        let keys = store.select(&all, base, now).await.unwrap();
        assert_eq!(keys.len(), 6);
        let sel = Selector::parse("web", "h[12]", "http/*").unwrap();
        assert_eq!(store.select(&sel, base, now).await.unwrap().len(), 2);
        assert_eq!(
            store
                .names(&all, KeyPart::Service, base, now)
                .await
                .unwrap(),
            vec!["web"]
        );
        assert_eq!(
            store.names(&all, KeyPart::Source, base, now).await.unwrap(),
            sources
        );
        assert_eq!(
            store.names(&all, KeyPart::Metric, base, now).await.unwrap(),
            metrics
        );
        assert!(
            store
                .select(&all, now + 2 * 3_600_000, now + 3 * 3_600_000)
                .await
                .unwrap()
                .is_empty()
        );

        // Service aggregates: 3 sources per minute, no double counting.
        let pts = store
            .service_aggregate("web", "jvm/gc_ms", base, base + 20 * 60_000)
            .await
            .unwrap();
        assert_eq!(pts.len(), 20);
        assert!(pts.iter().all(|p| p.count == 3));
        assert_eq!(pts[0].sum, 0.0 + 100.0 + 200.0);
        assert_eq!((pts[0].min, pts[0].max), (0.0, 200.0));
        let agg_keys = store
            .select(
                &Selector::parse("web", ALL_SOURCES, "*").unwrap(),
                base,
                now,
            )
            .await
            .unwrap();
        assert_eq!(agg_keys.len(), 2);

        // Backfill bumps the epoch of its (service, day).
        let old = now - 2 * 3_600_000;
        let day = old.div_euclid(DAY_MS);
        let e0 = store.epoch("web", day).await.unwrap();
        let r = store
            .write(&[row("web", "h9", "late", old, 5.0)])
            .await
            .unwrap();
        assert_eq!(r.backfilled, 1);
        let e1 = store.epoch("web", day).await.unwrap();
        assert_ne!(e0, e1);
        assert!(e1 > 0);

        // Fragments agree with the embedded engine on the same data.
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(
            dir.path(),
            Options {
                clock: clock.clone(),
                ..Options::default()
            },
        )
        .unwrap();
        engine.append(&rows).unwrap();
        engine
            .append(&[row("web", "h2", "http/requests", base + 3 * 60_000, -1.0)])
            .unwrap();
        engine
            .append(&[row("web", "h9", "late", old, 5.0)])
            .unwrap();
        for (agg, group) in [
            (StepAgg::Last, vec![]),
            (StepAgg::Sum, vec![KeyPart::Metric]),
            (StepAgg::Max, vec![KeyPart::Source, KeyPart::Metric]),
        ] {
            let f = Fragment {
                selector: Selector::parse("web", "*", "/(http|jvm)/.*/").unwrap(),
                start: base + 5 * 60_000,
                end: base + 20 * 60_000,
                step: 5 * 60_000,
                per_step: agg,
                group_by: group,
            };
            let got = store.aggregate(&f).await.unwrap();
            let mut want = engine.aggregate(&f).unwrap();
            want.groups.sort_by(|a, b| a.key.cmp(&b.key));
            assert_eq!(got.series, want.series);
            assert_eq!(got.groups, want.groups, "{agg:?}");
            // Each series through a function of its step values first.
            let delta = |p: &[(i64, f64)], out: &mut Vec<(i64, f64)>| {
                out.extend(p.windows(2).map(|w| (w[1].0, w[1].1 - w[0].1)));
            };
            let got = store.aggregate_each(&f, &delta).await.unwrap();
            let mut want = engine.aggregate_each(&f, &delta).unwrap();
            want.groups.sort_by(|a, b| a.key.cmp(&b.key));
            assert_eq!(got.groups, want.groups, "{agg:?} through a function");
        }
    })
    .catch_unwind()
    .await;
    drop_keyspace(&store).await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test]
async fn refuses_a_newer_schema_and_a_missing_one() {
    let Some(nodes) = nodes() else { return };
    let cfg = config(nodes, "ver");
    let store = ScyllaStore::connect(cfg.clone()).await.expect("connect");
    let cql = format!(
        "UPDATE {}.schema_version SET version = ? WHERE component = ?",
        cfg.keyspace
    );
    store
        .session()
        .query_unpaged(cql, (schema::SCHEMA_VERSION + 1, schema::SCHEMA_COMPONENT))
        .await
        .unwrap();
    let e = ScyllaStore::connect(cfg.clone()).await.unwrap_err();
    assert!(
        matches!(e, Error::SchemaVersion { found, .. } if found == schema::SCHEMA_VERSION + 1),
        "{e}"
    );
    println!("refused as expected: {e}");
    drop_keyspace(&store).await;

    let missing = ScyllaConfig {
        manage_schema: false,
        ..config(cfg.nodes.clone(), "none")
    };
    let e = ScyllaStore::connect(missing).await.unwrap_err();
    assert!(matches!(e, Error::SchemaMissing { .. }), "{e}");
}
