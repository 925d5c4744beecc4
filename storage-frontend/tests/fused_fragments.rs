//! A function of time run by the engine as it reads each series
//! (`Backend::aggregate_each`) answers exactly as reading the series one by one
//! and applying it in the service: for every delta and moving function, with
//! and without combining, on raw data and rollups, in one slice or many.

use std::sync::Arc;

use query_lang::WindowAgg;
use query_lang::ops::{self, Delta};
use storage_frontend::EmbeddedBackend;
use storage_frontend::backend::{Backend, BackendFuture, Batch};
use storage_frontend::fragment::{self, Answer, FragmentSpec, OverTime};
use test_support::Rng;
use tsdb::{
    AppendReport, Fragment, FragmentResult, KeyPart, ManualClock, Options, Sample, Selector,
    SeriesKey, StepAgg,
};

const MIN: i64 = 60_000;
const NOW: i64 = 1_796_040_000_000;

/// The embedded engine with `aggregate_each` left unimplemented, so the service
/// reads the series one by one.
struct OneByOne(EmbeddedBackend);

impl Backend for OneByOne {
    fn kind(&self) -> &'static str {
        "one-by-one"
    }
    fn write(&self, batch: Batch) -> BackendFuture<'_, AppendReport> {
        self.0.write(batch)
    }
    fn select(&self, sel: Selector, t0: i64, t1: i64) -> BackendFuture<'_, Vec<SeriesKey>> {
        self.0.select(sel, t0, t1)
    }
    fn names(
        &self,
        sel: Selector,
        part: KeyPart,
        t0: i64,
        t1: i64,
    ) -> BackendFuture<'_, Vec<String>> {
        self.0.names(sel, part, t0, t1)
    }
    fn read_range(&self, key: SeriesKey, t0: i64, t1: i64) -> BackendFuture<'_, Vec<Sample>> {
        self.0.read_range(key, t0, t1)
    }
    fn aggregate(&self, fragment: Fragment) -> BackendFuture<'_, FragmentResult> {
        self.0.aggregate(fragment)
    }
    fn epoch(&self, service: String, day: i64) -> BackendFuture<'_, u64> {
        self.0.epoch(service, day)
    }
    fn now_ms(&self) -> i64 {
        self.0.now_ms()
    }
    fn ooo_window_ms(&self) -> i64 {
        self.0.ooo_window_ms()
    }
    fn maintain(&self) -> BackendFuture<'_, String> {
        self.0.maintain()
    }
}

/// Counters and gauges of 3 services with missed scrapes, restarts, jitter and
/// gaps, over the 10 hours before `NOW`.
fn data(seed: u64) -> Vec<(SeriesKey, Vec<Sample>)> {
    let mut rng = Rng::new(seed);
    (0..120)
        .map(|i| {
            let key = SeriesKey::new(format!("svc{}", i % 3), format!("h{i}"), "m");
            let counter = i % 2 == 0;
            let mut v = rng.below(1000) as f64;
            let mut samples = Vec::new();
            for k in -600..0i64 {
                if rng.below(8) == 0 || (i % 7 == 0 && (-300..-200).contains(&k)) {
                    continue;
                }
                v = if !counter {
                    rng.below(500) as f64 / 4.0
                } else if rng.below(60) == 0 {
                    0.0
                } else {
                    v + rng.below(100) as f64
                };
                let jitter = if i % 5 == 0 {
                    0
                } else {
                    rng.below(MIN as u64) as i64
                };
                samples.push(Sample {
                    ts: NOW + k * MIN - jitter,
                    value: v,
                });
            }
            (key, samples)
        })
        .collect()
}

fn functions() -> Vec<OverTime> {
    let mut f: Vec<ops::OverTime> = [Delta::Rate, Delta::Increase, Delta::Derivative]
        .into_iter()
        .map(ops::OverTime::Delta)
        .collect();
    for agg in [
        WindowAgg::Sum,
        WindowAgg::Avg,
        WindowAgg::Min,
        WindowAgg::Max,
        WindowAgg::Count,
    ] {
        // Whole steps at both step widths, and 7 minutes: not a multiple of 5.
        for window in [5 * MIN, 15 * MIN, 7 * MIN] {
            f.push(ops::OverTime::Moving { window, agg });
        }
    }
    f.into_iter().map(OverTime::PerSeries).collect()
}

/// Equal groups and cells; sums of several series within rounding (the engine
/// adds them in another order), everything else bit for bit.
fn same(fused: &Answer, one_by_one: &Answer, what: &str) {
    assert_eq!(fused.series, one_by_one.series, "{what}");
    let keys = |a: &Answer| a.groups.iter().map(|g| g.0.clone()).collect::<Vec<_>>();
    assert_eq!(keys(fused), keys(one_by_one), "{what}");
    for ((k, a), (_, b)) in fused.groups.iter().zip(&one_by_one.groups) {
        let times = |p: &[(i64, tsdb::Partial)]| p.iter().map(|x| x.0).collect::<Vec<_>>();
        assert_eq!(times(a), times(b), "{what} {k:?}");
        for ((t, p), (_, q)) in a.iter().zip(b) {
            assert_eq!(p.count, q.count, "{what} {k:?} {t}");
            let bits = |x: f64| x.to_bits();
            assert_eq!(
                (bits(p.min), bits(p.max), p.last_ts),
                (bits(q.min), bits(q.max), q.last_ts),
                "{what} {k:?} {t}"
            );
            let tolerance = 1e-9 * q.sum.abs().max(1.0);
            assert!(
                (p.sum - q.sum).abs() <= tolerance,
                "{what} {k:?} {t}: {} vs {}",
                p.sum,
                q.sum
            );
            if p.count == 1 {
                assert_eq!(bits(p.sum), bits(q.sum), "{what} {k:?} {t}");
                assert_eq!(bits(p.last), bits(q.last), "{what} {k:?} {t}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_series_functions_in_the_engine_answer_as_series_read_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        clock: Arc::new(ManualClock::new(NOW)),
        ooo_window_ms: 12 * 3_600_000,
        ..Options::default()
    };
    let embedded = EmbeddedBackend::open(dir.path(), opts).await.unwrap();
    embedded.write(Batch::new(data(7))).await.unwrap();
    // The older part sealed (with rollups), the rest in the head.
    embedded.engine().flush().unwrap();
    embedded
        .write(Batch::new(
            data(8)
                .into_iter()
                .map(|(k, s)| (k, s.into_iter().filter(|s| s.ts > NOW - 60 * MIN).collect()))
                .collect(),
        ))
        .await
        .unwrap();
    let one_by_one = OneByOne(embedded.clone());

    let mut checked = 0;
    for over_time in functions() {
        for (step, per_step) in [
            (MIN, StepAgg::Last),
            (5 * MIN, StepAgg::Last),
            (5 * MIN, StepAgg::Max),
        ] {
            for combine in [None, Some(vec![]), Some(vec![KeyPart::Service])] {
                for slice_cells in [None, Some(120 * 45)] {
                    let spec = FragmentSpec {
                        selectors: vec![Selector::parse("*", "*", "m").unwrap()],
                        start: NOW - 9 * 3_600_000,
                        end: NOW,
                        step,
                        per_step,
                        over_time: Some(over_time),
                        combine: combine.clone(),
                        max_series: u64::MAX,
                        max_samples: u64::MAX,
                        max_points: u64::MAX,
                        deadline: None,
                        slice_cells,
                    };
                    let what = format!(
                        "{over_time:?} step {step} {per_step:?} {combine:?} {slice_cells:?}"
                    );
                    let a = fragment::execute(&embedded, spec.clone()).await.unwrap();
                    let b = fragment::execute(&one_by_one, spec).await.unwrap();
                    assert!(!a.groups.is_empty(), "{what}");
                    assert_eq!(a.resolution_ms, b.resolution_ms, "{what}");
                    same(&a, &b, &what);
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 18 * 3 * 3 * 2);
}
