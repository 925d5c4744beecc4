//! Model-based property test: random interleavings of append (normal,
//! out-of-order, backfill, rejected, duplicate), clock moves, seal, flush,
//! compaction, retention, reopen and queries, checked against a BTreeMap.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use tsdb::*;

const T0: i64 = 1_700_006_400_000;
const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const SOURCES: [&str; 4] = ["h0", "h1", "h2", "h3"];

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<(usize, i64, i32)>),
    Advance(i64),
    Maintain,
    Flush,
    Compact,
    Retention,
    Reopen,
    Query,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => proptest::collection::vec((0..4usize, -4 * DAY_MS..15 * MIN, -1000..1000i32), 1..20).prop_map(Op::Append),
        2 => proptest::collection::vec((0..4usize, -20 * MIN..MIN, -1000..1000i32), 1..10).prop_map(Op::Append),
        3 => prop_oneof![1..10 * MIN, HOUR..30 * HOUR].prop_map(Op::Advance),
        1 => Just(Op::Maintain),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Retention),
        1 => Just(Op::Reopen),
        2 => Just(Op::Query),
    ]
}

fn options(clock: &Arc<ManualClock>) -> Options {
    Options {
        clock: clock.clone(),
        fsync: FsyncPolicy::Never,
        retention_ms: 3 * DAY_MS,
        backfill_max_samples: 40,
        read_threads: 2,
        ..Options::default()
    }
}

struct Harness {
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    engine: Option<Engine>,
    model: BTreeMap<(usize, i64), f64>,
    /// Everything before this may have been deleted by retention.
    expired_before: i64,
}

impl Harness {
    fn engine(&self) -> &Engine {
        self.engine.as_ref().expect("open")
    }

    fn check(&self) -> Result<(), TestCaseError> {
        let e = self.engine();
        let now = self.clock.now_ms();
        for (i, src) in SOURCES.iter().enumerate() {
            let key = SeriesKey::new("svc", *src, "m");
            let got = e
                .read_range(&key, T0 - 10 * DAY_MS, now + DAY_MS)
                .expect("read");
            let want: Vec<(i64, f64)> = self
                .model
                .range((i, i64::MIN)..(i, i64::MAX))
                .map(|(k, v)| (k.1, *v))
                .collect();
            let got_recent: Vec<(i64, f64)> = got
                .iter()
                .filter(|s| s.ts >= self.expired_before)
                .map(|s| (s.ts, s.value))
                .collect();
            let want_recent: Vec<(i64, f64)> = want
                .iter()
                .copied()
                .filter(|s| s.0 >= self.expired_before)
                .collect();
            prop_assert_eq!(got_recent, want_recent, "series {}", src);
            for s in got.iter().filter(|s| s.ts < self.expired_before) {
                prop_assert_eq!(
                    self.model.get(&(i, s.ts)),
                    Some(&s.value),
                    "expired-range sample must be one written"
                );
            }
        }
        // Hourly sums of the last value per series, from rollups where sealed.
        // The first point's window (start - 1 h, start] must lie after
        // anything retention may have removed.
        let start = (self.expired_before.max(T0 - 5 * DAY_MS)).div_euclid(HOUR) * HOUR + 2 * HOUR;
        let f = Fragment {
            selector: Selector::parse("svc", "*", "m").expect("selector"),
            start,
            end: now + HOUR,
            step: HOUR,
            per_step: StepAgg::Last,
            group_by: vec![],
        };
        let r = e.aggregate(&f).expect("aggregate");
        let mut want: BTreeMap<i64, (u64, f64)> = BTreeMap::new();
        for i in 0..SOURCES.len() {
            let mut last: BTreeMap<i64, f64> = BTreeMap::new();
            for (&(_, ts), &v) in self.model.range((i, start - HOUR + 1)..(i, now + HOUR)) {
                let k = (ts - start + HOUR - 1).div_euclid(HOUR);
                last.insert(start + k * HOUR, v);
            }
            for (t, v) in last {
                if t < f.end {
                    let w = want.entry(t).or_insert((0, 0.0));
                    w.0 += 1;
                    w.1 += v;
                }
            }
        }
        let got: BTreeMap<i64, (u64, f64)> = r
            .groups
            .iter()
            .flat_map(|g| g.points.iter().map(|(t, p)| (*t, (p.count, p.sum))))
            .collect();
        prop_assert_eq!(got, want, "hourly sums");
        Ok(())
    }

    fn run(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let now = self.clock.now_ms();
        match op {
            Op::Append(rows) => {
                let batch: Vec<SampleRow> = rows
                    .iter()
                    .map(|&(s, off, v)| SampleRow {
                        service: "svc",
                        source: SOURCES[s],
                        metric: "m",
                        ts: now + off,
                        value: v as f64,
                    })
                    .collect();
                let rep = self.engine().append(&batch).expect("append");
                let rejected: Vec<usize> = rep.rejected.iter().map(|r| r.index).collect();
                for (idx, &(s, off, v)) in rows.iter().enumerate() {
                    let ts = now + off;
                    let expect_reject = ts < now - 3 * DAY_MS || ts > now + 10 * MIN;
                    prop_assert_eq!(
                        rejected.contains(&idx),
                        expect_reject,
                        "row {} ts offset {}",
                        idx,
                        off
                    );
                    if !expect_reject {
                        self.model.insert((s, ts), v as f64);
                    }
                }
            }
            Op::Advance(ms) => self.clock.advance(*ms),
            Op::Maintain => {
                self.engine().maintain().expect("maintain");
                self.expired_before = self.expired_before.max(now - 3 * DAY_MS);
            }
            Op::Flush => {
                self.engine().flush().expect("flush");
            }
            Op::Compact => {
                self.engine().compact().expect("compact");
            }
            Op::Retention => {
                self.engine().apply_retention().expect("retention");
                self.expired_before = self.expired_before.max(now - 3 * DAY_MS);
            }
            Op::Reopen => {
                // Replay drops what is past retention by now.
                self.expired_before = self.expired_before.max(now - 3 * DAY_MS);
                self.engine = None;
                self.engine =
                    Some(Engine::open(self.dir.path(), options(&self.clock)).expect("reopen"));
                prop_assert!(self.engine().corrupt_blocks().is_empty());
            }
            Op::Query => self.check()?,
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(debug_assertions) { 24 } else { 200 },
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_matches_btreemap_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(ManualClock::new(T0));
        let engine = Engine::open(dir.path(), options(&clock)).expect("open");
        let mut h = Harness { dir, clock, engine: Some(engine), model: BTreeMap::new(), expired_before: i64::MIN };
        for op in &ops {
            h.run(op)?;
        }
        h.check()?;
    }
}
