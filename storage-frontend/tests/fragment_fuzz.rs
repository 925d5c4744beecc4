//! Property: any fragment (ranges and steps anywhere in i64, every function of
//! time with any window, one matcher or several, grouped or not) is answered or
//! refused with an error naming a field or a limit; it never panics or fails
//! inside the service.

use std::sync::Arc;

use proptest::prelude::*;
use query_lang::WindowAgg;
use query_lang::ops::{self, Delta};
use storage_frontend::EmbeddedBackend;
use storage_frontend::backend::{Backend, Batch};
use storage_frontend::error::RequestError;
use storage_frontend::fragment::{self, FragmentSpec, OverTime};
use tsdb::{KeyPart, ManualClock, Options, Sample, Selector, SeriesKey, StepAgg};

const MIN: i64 = 60_000;
const NOW: i64 = 1_796_040_000_000;

/// Times near the data, near both ends of i64, and anywhere.
fn time() -> impl Strategy<Value = i64> {
    prop_oneof![
        (-600i64..600).prop_map(|m| NOW + m * MIN),
        (0i64..1_000_000).prop_map(|d| i64::MIN + d),
        (0i64..1_000_000).prop_map(|d| i64::MAX - d),
        any::<i64>(),
    ]
}

fn step() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(MIN),
        Just(5 * MIN),
        1i64..10_000,
        (1i64..1_000).prop_map(|k| k * 3_600_000),
        Just(i64::MAX),
        any::<i64>(),
    ]
}

fn over_time() -> impl Strategy<Value = Option<OverTime>> {
    let agg = prop_oneof![
        Just(WindowAgg::Sum),
        Just(WindowAgg::Avg),
        Just(WindowAgg::Min),
        Just(WindowAgg::Max),
        Just(WindowAgg::Count),
    ];
    let window = prop_oneof![Just(5 * MIN), 1i64..100 * MIN, any::<i64>(), Just(i64::MAX)];
    prop_oneof![
        Just(None),
        Just(Some(OverTime::Integral)),
        prop_oneof![
            Just(Delta::Rate),
            Just(Delta::Increase),
            Just(Delta::Derivative)
        ]
        .prop_map(|d| Some(OverTime::PerSeries(ops::OverTime::Delta(d)))),
        (window, agg).prop_map(
            |(window, agg)| Some(OverTime::PerSeries(ops::OverTime::Moving { window, agg }))
        ),
    ]
}

fn check(backend: &EmbeddedBackend, spec: FragmentSpec) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let what = format!("{spec:?}");
    match rt.block_on(fragment::execute(backend as &dyn Backend, spec)) {
        Ok(_) | Err(RequestError::InvalidArgument { .. }) | Err(RequestError::Limit { .. }) => {
            Ok(())
        }
        Err(e) => Err(TestCaseError::fail(format!("{what}: {e}"))),
    }
}

fn store() -> (tempfile::TempDir, EmbeddedBackend) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let backend = rt.block_on(async {
        let opts = Options {
            clock: Arc::new(ManualClock::new(NOW)),
            ooo_window_ms: 24 * 3_600_000,
            ..Options::default()
        };
        let b = EmbeddedBackend::open(dir.path(), opts).await.unwrap();
        let data: Vec<(SeriesKey, Vec<Sample>)> = (0..6)
            .map(|i| {
                let key = SeriesKey::new(format!("svc{}", i % 2), format!("h{i}"), "m");
                let samples = (-300..0)
                    .map(|k| Sample {
                        ts: NOW + k * MIN - i * 1000,
                        value: (k * (i + 1)) as f64,
                    })
                    .collect();
                (key, samples)
            })
            .collect();
        b.write(Batch::new(data)).await.unwrap();
        b.engine().flush().unwrap();
        b
    });
    (dir, backend)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn any_fragment_is_answered_or_refused_by_name(
        start in time(),
        len in prop_oneof![0i64..1_000 * MIN, any::<i64>()],
        step in step(),
        over_time in over_time(),
        per_step in prop_oneof![Just(StepAgg::Last), Just(StepAgg::Sum), Just(StepAgg::Count)],
        combine in prop_oneof![Just(None), Just(Some(vec![])), Just(Some(vec![KeyPart::Service]))],
        several in any::<bool>(),
        all_sources in any::<bool>(),
    ) {
        thread_local! {
            static STORE: (tempfile::TempDir, EmbeddedBackend) = store();
        }
        let source = if all_sources { tsdb::ALL_SOURCES } else { "*" };
        let mut selectors = vec![Selector::parse("*", source, "m").unwrap()];
        if several {
            selectors.push(Selector::parse("svc1", "*", "*").unwrap());
        }
        let spec = FragmentSpec {
            selectors,
            start,
            end: start.saturating_add(len),
            step,
            per_step,
            over_time,
            combine,
            max_series: 1_000,
            max_samples: 10_000_000,
            max_points: 1_000_000,
            deadline: None,
            slice_cells: None,
        };
        STORE.with(|(_, backend)| check(backend, spec))?;
    }
}
