//! Property: `sum by service of rate(...)` over 10,000 series, executed as a
//! fragment on two storage nodes that each hold part of the series, gives
//! partials whose merge equals a direct computation over the raw samples.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use query_lang::ops::{self, Delta};
use storage_frontend::EmbeddedBackend;
use storage_frontend::backend::{Backend, Batch};
use storage_frontend::fragment::{self, FragmentSpec, OverTime};
use test_support::Rng;
use tsdb::{KeyPart, ManualClock, Options, Partial, Sample, Selector, SeriesKey, StepAgg};

const MIN: i64 = 60_000;
const NOW: i64 = 1_796_040_000_000;
const SERIES: usize = 10_000;
const STEPS: i64 = 24;

/// Counters with random increments, occasional resets, jittered timestamps and
/// missing samples, over `SERIES` series of `services` services.
fn generate(seed: u64, services: u64, start: i64) -> Vec<(SeriesKey, Vec<Sample>)> {
    let mut rng = Rng::new(seed);
    (0..SERIES)
        .map(|i| {
            let key = SeriesKey::new(
                format!("svc{}", rng.below(services)),
                format!("h{i}"),
                "requests",
            );
            let mut v = rng.below(1000) as f64;
            let mut samples = Vec::new();
            // One step of history before the range, for the first rate.
            for k in -1..STEPS {
                if rng.below(10) == 0 {
                    continue; // a missed scrape
                }
                if rng.below(50) == 0 {
                    v = 0.0; // a restart
                } else {
                    v += rng.below(100) as f64;
                }
                let jitter = rng.below(MIN as u64) as i64;
                samples.push(Sample {
                    ts: start + k * MIN - jitter,
                    value: v,
                });
            }
            (key, samples)
        })
        .collect()
}

/// The answer computed from raw samples alone.
fn direct(data: &[(SeriesKey, Vec<Sample>)], start: i64) -> BTreeMap<(String, i64), Partial> {
    let mut out: BTreeMap<(String, i64), Partial> = BTreeMap::new();
    for (key, samples) in data {
        // The last sample in (t - step, t] for every step end t.
        let step_value = |t: i64| {
            samples
                .iter()
                .filter(|s| s.ts > t - MIN && s.ts <= t)
                .max_by_key(|s| s.ts)
                .map(|s| s.value)
        };
        for k in 0..STEPS {
            let t = start + k * MIN;
            if let (Some(prev), Some(cur)) = (step_value(t - MIN), step_value(t)) {
                let d = cur - prev;
                let increase = if d < 0.0 { cur } else { d };
                let rate = increase / 60.0;
                out.entry((key.service.clone(), t))
                    .or_insert(Partial::EMPTY)
                    .merge(&Partial::of(rate, t));
            }
        }
    }
    out
}

fn spec(start: i64) -> FragmentSpec {
    FragmentSpec {
        selectors: vec![Selector::parse("*", "*", "requests").unwrap()],
        start,
        end: start + STEPS * MIN,
        step: MIN,
        per_step: StepAgg::Last,
        over_time: Some(OverTime::PerSeries(ops::OverTime::Delta(Delta::Rate))),
        combine: Some(vec![KeyPart::Service]),
        max_series: u64::MAX,
        max_samples: u64::MAX,
        max_points: u64::MAX,
        deadline: None,
        slice_cells: None,
    }
}

async fn node(dir: &std::path::Path) -> EmbeddedBackend {
    let opts = Options {
        clock: Arc::new(ManualClock::new(NOW)),
        ooo_window_ms: 6 * 3_600_000,
        ..Options::default()
    };
    EmbeddedBackend::open(dir, opts).await.unwrap()
}

fn check(seed: u64, services: u64, seal_first: bool) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let start = NOW - 2 * 3_600_000;
        let data = generate(seed, services, start);
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (n1, n2) = (node(d1.path()).await, node(d2.path()).await);
        // Series are spread over the two nodes by their source.
        let (a, b): (Vec<_>, Vec<_>) = data
            .iter()
            .cloned()
            .partition(|(k, _)| k.source.len() % 2 == 0 || k.source.ends_with('7'));
        n1.write(Batch::new(a)).await.unwrap();
        n2.write(Batch::new(b)).await.unwrap();
        if seal_first {
            // Part of the data in sealed blocks, part in the head.
            n1.engine().flush().unwrap();
        }

        let mut merged: BTreeMap<(String, i64), Partial> = BTreeMap::new();
        let mut touched = 0;
        for n in [&n1, &n2] {
            let answer = fragment::execute(n as &dyn Backend, spec(start))
                .await
                .unwrap();
            touched += answer.series;
            for (key, points) in answer.groups {
                assert!(key.source.is_empty() && key.metric.is_empty());
                for (t, p) in points {
                    merged
                        .entry((key.service.clone(), t))
                        .or_insert(Partial::EMPTY)
                        .merge(&p);
                }
            }
        }
        assert_eq!(touched, SERIES as u64);

        let want = direct(&data, start);
        assert_eq!(
            merged.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "the same (service, step) cells"
        );
        for (cell, w) in &want {
            let g = &merged[cell];
            assert_eq!(g.count, w.count, "{cell:?}");
            assert_eq!((g.min, g.max), (w.min, w.max), "{cell:?}");
            let tolerance = 1e-9 * w.sum.abs().max(1.0);
            assert!(
                (g.sum - w.sum).abs() <= tolerance,
                "{cell:?}: {} vs {}",
                g.sum,
                w.sum
            );
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3, ..ProptestConfig::default() })]

    #[test]
    fn sum_by_service_of_rate_merges_to_the_direct_answer(
        seed in any::<u64>(),
        services in 1u64..12,
        seal_first in any::<bool>(),
    ) {
        check(seed, services, seal_first);
    }
}
