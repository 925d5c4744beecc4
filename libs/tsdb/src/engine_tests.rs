//! Engine behaviour tests on a manual clock: write path, backfill and
//! epochs, recovery, sealing, compaction, retention, corruption, queries.

use std::sync::Arc;

use crate::*;

const T0: i64 = 1_700_006_400_000; // a UTC midnight
const MIN: i64 = 60_000;

fn opts(clock: &Arc<ManualClock>) -> Options {
    Options {
        clock: clock.clone(),
        fsync: FsyncPolicy::Never,
        read_threads: 2,
        ..Options::default()
    }
}

fn row<'a>(svc: &'a str, src: &'a str, m: &'a str, ts: i64, value: f64) -> SampleRow<'a> {
    SampleRow {
        service: svc,
        source: src,
        metric: m,
        ts,
        value,
    }
}

fn vals(e: &Engine, src: &str, t0: i64, t1: i64) -> Vec<(i64, f64)> {
    e.read_range(&SeriesKey::new("web", src, "http/requests"), t0, t1)
        .unwrap()
        .into_iter()
        .map(|s| (s.ts, s.value))
        .collect()
}

#[test]
fn appends_dedup_reject_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0 + 60 * MIN));
    let e = Engine::open(dir.path(), opts(&clock)).unwrap();
    let rows = [
        row("web", "h1", "http/requests", T0 + 55 * MIN, 1.0),
        row("web", "h1", "http/requests", T0 + 56 * MIN, 2.0),
        row("web", "h1", "http/requests", T0 + 55 * MIN, 10.0),
        row("web", "h1", "http/requests", T0 - 40 * DAY_MS, 3.0),
        row("web", "h1", "http/requests", T0 + 100 * MIN, 3.0),
        row("web", "", "http/requests", T0 + 56 * MIN, 3.0),
        row("web", ALL_SOURCES, "http/requests", T0 + 56 * MIN, 3.0),
    ];
    let r = e.append(&rows).unwrap();
    assert_eq!(r.accepted, 3);
    let reasons: Vec<_> = r.rejected.iter().map(|x| (x.index, x.reason)).collect();
    assert_eq!(
        reasons,
        vec![
            (3, RejectReason::BeyondRetention),
            (4, RejectReason::TooFarInFuture),
            (5, RejectReason::InvalidName),
            (6, RejectReason::InvalidName)
        ]
    );
    let st = e.stats();
    assert_eq!(
        (
            st.rejected_beyond_retention,
            st.rejected_too_far_in_future,
            st.rejected_invalid_name
        ),
        (1, 1, 2)
    );
    let want = vec![(T0 + 55 * MIN, 10.0), (T0 + 56 * MIN, 2.0)];
    assert_eq!(vals(&e, "h1", T0, T0 + DAY_MS), want);
    drop(e);
    let e = Engine::open(dir.path(), opts(&clock)).unwrap();
    assert_eq!(vals(&e, "h1", T0, T0 + DAY_MS), want, "wal replay");
    e.flush().unwrap();
    drop(e);
    let e = Engine::open(dir.path(), opts(&clock)).unwrap();
    assert_eq!(vals(&e, "h1", T0, T0 + DAY_MS), want, "from blocks");
    e.append(&[row("web", "h1", "http/requests", T0 + 56 * MIN, 7.0)])
        .unwrap();
    assert_eq!(
        vals(&e, "h1", T0, T0 + DAY_MS)[1],
        (T0 + 56 * MIN, 7.0),
        "head wins over blocks"
    );
}

#[test]
fn backfill_bumps_epochs_and_merges() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0 + 3 * DAY_MS));
    let e = Engine::open(dir.path(), opts(&clock)).unwrap();
    let day = T0.div_euclid(DAY_MS);
    e.append(&[row(
        "web",
        "h1",
        "http/requests",
        T0 + 3 * DAY_MS - MIN,
        1.0,
    )])
    .unwrap();
    assert_eq!(e.epoch("web", day + 2), 0, "in-window writes keep epochs");
    let r = e
        .append(&[row("web", "h1", "http/requests", T0 + 5 * MIN, 5.0)])
        .unwrap();
    assert_eq!(r.backfilled, 1);
    let e1 = e.epoch("web", day);
    assert!(e1 > 0);
    let bump = EpochBump {
        service: "web".into(),
        day,
        epoch: e1,
    };
    assert_eq!(r.epochs, vec![bump.clone()], "the report names the bump");
    assert_eq!(e.epochs(), vec![bump], "and the table holds it");
    assert_eq!(e.epoch("web", day + 1), 0);
    assert_eq!(e.epoch("api", day), 0);
    e.flush().unwrap();
    e.append(&[row("web", "h1", "http/requests", T0 + 5 * MIN, 6.0)])
        .unwrap();
    let e2 = e.epoch("web", day);
    assert!(e2 > e1);
    assert_eq!(e.epochs().len(), 1);
    assert_eq!(e.epochs()[0].epoch, e2);
    e.flush().unwrap();
    assert_eq!(vals(&e, "h1", T0, T0 + MIN * 10), vec![(T0 + 5 * MIN, 6.0)]);
    e.compact().unwrap();
    assert_eq!(
        vals(&e, "h1", T0, T0 + MIN * 10),
        vec![(T0 + 5 * MIN, 6.0)],
        "newest block wins after compaction"
    );
    drop(e);
    let e = Engine::open(dir.path(), opts(&clock)).unwrap();
    assert_eq!(e.epoch("web", day), e2, "epochs persist");
    e.append(&[row("web", "h1", "http/requests", T0 + 6 * MIN, 1.0)])
        .unwrap();
    assert!(
        e.epoch("web", day) > e2,
        "new epochs after a restart never repeat old ones"
    );
}

#[test]
fn retention_drops_whole_partitions_and_compaction_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let mut o = opts(&clock);
    o.retention_ms = 3 * DAY_MS;
    let e = Engine::open(dir.path(), o).unwrap();
    for d in 0..5 {
        clock.set(T0 + d * DAY_MS + 12 * 3_600_000);
        let rows: Vec<SampleRow> = (0..(12 * 60))
            .map(|i| {
                row(
                    "web",
                    "h1",
                    "http/requests",
                    T0 + d * DAY_MS + i * MIN,
                    (d * 1000 + i) as f64,
                )
            })
            .collect();
        e.append(&rows).unwrap();
        e.maintain().unwrap();
    }
    clock.set(T0 + 5 * DAY_MS + 12 * 3_600_000);
    let rep = e.maintain().unwrap();
    assert!(rep.expired_blocks > 0);
    let got = vals(&e, "h1", T0, T0 + 10 * DAY_MS);
    // Cutoff is day 2 at noon: days 0 and 1 go, day 2 stays whole.
    assert_eq!(
        got.first().unwrap().0,
        T0 + 2 * DAY_MS,
        "days 0 and 1 expired"
    );
    assert_eq!(got.len(), 3 * 12 * 60);
    assert!(
        e.stats().blocks <= 3,
        "cold days compacted: {:?}",
        e.stats()
    );
    let sel = Selector::parse("web", "*", "*").unwrap();
    assert!(
        e.select(&sel, T0, T0 + DAY_MS).is_empty(),
        "index forgets expired time"
    );
    assert_eq!(e.select(&sel, T0 + 4 * DAY_MS, T0 + 5 * DAY_MS).len(), 1);
}

#[test]
fn cold_weeks_merge_into_one_block_and_take_late_samples() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let o = Options {
        long_partition_ms: 7 * DAY_MS,
        ..opts(&clock)
    };
    let e = Engine::open(dir.path(), o.clone()).unwrap();
    // T0 is the last day of a 7-day window: the next one starts a day on.
    let week = T0 + DAY_MS;
    assert_eq!(week % (7 * DAY_MS), 0);
    let mut want = Vec::new();
    for d in 0..8 {
        clock.set(week + d * DAY_MS + 12 * 3_600_000);
        let rows: Vec<SampleRow> = (0..(12 * 60))
            .map(|i| {
                let ts = week + d * DAY_MS + i * MIN;
                row("web", "h1", "http/requests", ts, (d * 1000 + i) as f64)
            })
            .collect();
        want.extend(rows.iter().map(|r| (r.ts, r.value)));
        e.append(&rows).unwrap();
        e.maintain().unwrap();
    }
    // Days 0..6 are cold daily blocks until the whole week is cold.
    assert_eq!(e.stats().blocks, 7, "{:?}", e.stats());
    clock.set(week + 8 * DAY_MS + 3_600_000);
    e.maintain().unwrap();
    assert_eq!(e.stats().blocks, 2, "the week and day 7: {:?}", e.stats());
    assert_eq!(vals(&e, "h1", week, week + 9 * DAY_MS), want);
    // A late sample in that week is merged into a new block of the week.
    let late = week + 3 * DAY_MS + 13 * 3_600_000;
    e.append(&[row("web", "h1", "http/requests", late, -1.0)])
        .unwrap();
    e.flush().unwrap();
    e.compact().unwrap();
    assert_eq!(e.stats().blocks, 2, "{:?}", e.stats());
    want.push((late, -1.0));
    want.sort_by_key(|w| w.0);
    assert_eq!(vals(&e, "h1", week, week + 9 * DAY_MS), want);
    drop(e);
    let e = Engine::open(dir.path(), o).unwrap();
    assert_eq!(vals(&e, "h1", week, week + 9 * DAY_MS), want);
}

#[test]
fn corrupt_block_is_reported_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0 + DAY_MS));
    let e = Engine::open(dir.path(), opts(&clock)).unwrap();
    e.append(&[row("web", "h1", "http/requests", T0 + MIN, 1.0)])
        .unwrap();
    e.flush().unwrap();
    e.append(&[row(
        "web",
        "h2",
        "http/requests",
        T0 + DAY_MS - 5 * MIN,
        2.0,
    )])
    .unwrap();
    e.flush().unwrap();
    drop(e);
    let mut blocks: Vec<_> = std::fs::read_dir(dir.path().join("blocks"))
        .unwrap()
        .map(|d| d.unwrap().path())
        .collect();
    blocks.sort();
    let mut bytes = std::fs::read(&blocks[0]).unwrap();
    bytes[12] ^= 0xff;
    std::fs::write(&blocks[0], bytes).unwrap();
    let e = Engine::open(dir.path(), opts(&clock)).unwrap();
    let bad = e.corrupt_blocks();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].path, blocks[0]);
    assert!(bad[0].reason.contains("checksum"), "{}", bad[0].reason);
    assert_eq!(
        vals(&e, "h2", T0, T0 + 2 * DAY_MS),
        vec![(T0 + DAY_MS - 5 * MIN, 2.0)]
    );
    assert!(vals(&e, "h1", T0, T0 + 2 * DAY_MS).is_empty());
}

fn fleet(e: &Engine, clock: &ManualClock, hours: i64) {
    let srcs = ["h1", "h2", "h3"];
    for m in 0..hours * 60 {
        let ts = T0 + m * MIN + 1000;
        clock.set(ts);
        let rows: Vec<SampleRow> = srcs
            .iter()
            .enumerate()
            .filter(|(i, _)| (m + *i as i64) % 7 != 0)
            .map(|(i, s)| {
                row(
                    "web",
                    s,
                    "http/requests",
                    ts,
                    (m * (i as i64 + 1)) as f64 + 0.25,
                )
            })
            .collect();
        e.append(&rows).unwrap();
    }
}

#[test]
fn aggregates_from_rollups_equal_aggregates_from_raw() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let e = Engine::open(dir.path(), opts(&clock)).unwrap();
    fleet(&e, &clock, 6);
    clock.advance(DAY_MS);
    e.maintain().unwrap();
    e.append(&[row(
        "web",
        "h1",
        "http/requests",
        T0 + 30 * MIN + 1000,
        -5.0,
    )])
    .unwrap();
    let sel = Selector::parse("web", "*", "http/*").unwrap();
    for agg in [
        StepAgg::Last,
        StepAgg::Sum,
        StepAgg::Avg,
        StepAgg::Min,
        StepAgg::Max,
        StepAgg::Count,
    ] {
        for step in [5 * MIN, 3_600_000] {
            let f = Fragment {
                selector: sel.clone(),
                start: T0,
                end: T0 + 6 * 3_600_000,
                step,
                per_step: agg,
                group_by: vec![],
            };
            let got = e.aggregate(&f).unwrap();
            assert_eq!(got.rollup_ms, Some(step));
            // Same fragment off the rollup grid (shifted by one ms and back)
            // is computed from raw samples.
            let mut expect = FragmentResult::default();
            for src in ["h1", "h2", "h3"] {
                let samples = vals(&e, src, T0 - step, T0 + 6 * 3_600_000);
                let mut pts = std::collections::BTreeMap::new();
                for (t, v) in samples {
                    let k = (t - T0 + step - 1).div_euclid(step);
                    if k < 0 || T0 + k * step >= T0 + 6 * 3_600_000 {
                        continue;
                    }
                    pts.entry(k).or_insert_with(Vec::new).push(v);
                }
                let mut g = GroupResult {
                    key: vec![],
                    points: vec![],
                };
                for (k, vs) in pts {
                    let v = match agg {
                        StepAgg::Last => *vs.last().unwrap(),
                        StepAgg::Sum => vs.iter().sum(),
                        StepAgg::Avg => vs.iter().sum::<f64>() / vs.len() as f64,
                        StepAgg::Min => vs.iter().cloned().fold(f64::INFINITY, f64::min),
                        StepAgg::Max => vs.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
                        StepAgg::Count => vs.len() as f64,
                    };
                    g.points.push((T0 + k * step, Partial::of(v, 0)));
                }
                expect.merge(FragmentResult {
                    groups: vec![g],
                    series: 1,
                    samples: 0,
                    rollup_ms: Some(step),
                });
            }
            assert_eq!(got.groups.len(), 1);
            // Sums of buckets and sums of samples differ only by rounding.
            let round = |x: f64| (x * 1e6).round() / 1e6;
            let a: Vec<(i64, u64, f64, f64, f64)> = got.groups[0]
                .points
                .iter()
                .map(|(t, p)| (*t, p.count, round(p.sum), round(p.min), round(p.max)))
                .collect();
            let b: Vec<(i64, u64, f64, f64, f64)> = expect.groups[0]
                .points
                .iter()
                .map(|(t, p)| (*t, p.count, round(p.sum), round(p.min), round(p.max)))
                .collect();
            assert_eq!(a, b, "{agg:?} step {step}");
        }
    }
}

#[test]
fn service_aggregates_and_discovery() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let e = Engine::open(dir.path(), opts(&clock)).unwrap();
    fleet(&e, &clock, 1);
    // Re-delivery of a batch must not double count.
    fleet(&e, &clock, 1);
    let pts = e
        .service_aggregate("web", "http/requests", T0, T0 + 3_600_000)
        .unwrap();
    let p = pts.iter().find(|p| p.ts == T0 + 11 * MIN).unwrap();
    // minute 10 (samples at 10 min + 1 s) lands in (10:01.. 11:00]; sources with (10+i)%7 != 0: h1,h2,h3 except i=4 -> all 3
    assert_eq!(p.count, 3);
    assert_eq!(p.sum, 10.25 + 20.25 + 30.25);
    assert_eq!((p.min, p.max), (10.25, 30.25));
    let all = Selector::parse("web", ALL_SOURCES, "*").unwrap();
    assert_eq!(
        e.select(&all, T0, T0 + 3_600_000),
        vec![SeriesKey::new("web", ALL_SOURCES, "http/requests")]
    );
    let via_series = e
        .read_range(
            &SeriesKey::new("web", ALL_SOURCES, "http/requests"),
            T0,
            T0 + 3_600_000,
        )
        .unwrap();
    assert_eq!(via_series.len(), pts.len());
    assert_eq!(
        e.names(
            &Selector::parse("*", "*", "*").unwrap(),
            KeyPart::Source,
            T0,
            T0 + 2000
        ),
        vec!["h2", "h3"]
    );
    assert_eq!(
        e.names(
            &Selector::parse("/w.b/", "*", "*").unwrap(),
            KeyPart::Service,
            T0,
            T0 + DAY_MS
        ),
        vec!["web"]
    );
}

#[test]
fn engine_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Engine>();
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0 + 60 * MIN));
    let e = Arc::new(Engine::open(dir.path(), opts(&clock)).unwrap());
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let e = e.clone();
            std::thread::spawn(move || {
                let src = format!("t{t}");
                for i in 0..50 {
                    e.append(&[row("web", &src, "http/requests", T0 + i * 1000, i as f64)])
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let sel = Selector::parse("web", "t*", "*").unwrap();
    let got = e.scan(&sel, T0, T0 + DAY_MS).unwrap();
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|(_, s)| s.len() == 50));
}

#[test]
fn block_bytes_break_down_into_their_parts() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0 + DAY_MS));
    let e = Engine::open(dir.path(), opts(&clock)).unwrap();
    let rows: Vec<SampleRow> = (0..600)
        .map(|i| row("web", "h1", "http/requests", T0 + i * MIN, (i * 7) as f64))
        .collect();
    e.append(&rows).unwrap();
    assert_eq!(e.block_breakdown(), BlockBytes::default());
    e.flush().unwrap();
    let parts = e.block_breakdown();
    assert!(parts.raw > 0 && parts.rollups[0] > 0 && parts.rollups[1] > 0 && parts.other > 0);
    assert_eq!(
        parts.raw + parts.rollups.iter().sum::<u64>() + parts.other,
        e.block_bytes()
    );
    // A regular counter costs well under a byte a sample raw.
    assert!(parts.raw < 600, "{} raw bytes for 600 samples", parts.raw);
}

#[test]
fn series_functions_see_each_series_and_fold_what_they_return() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let e = Engine::open(dir.path(), opts(&clock)).unwrap();
    fleet(&e, &clock, 3);
    clock.advance(DAY_MS);
    e.maintain().unwrap();
    let identity = |p: &[(i64, f64)], out: &mut Vec<(i64, f64)>| out.extend_from_slice(p);
    for source in ["*", ALL_SOURCES] {
        for (step, per_step) in [(MIN, StepAgg::Last), (5 * MIN, StepAgg::Sum)] {
            for group_by in [vec![], vec![KeyPart::Source]] {
                let f = Fragment {
                    selector: Selector::parse("web", source, "http/*").unwrap(),
                    start: T0,
                    end: T0 + 3 * 3_600_000,
                    step,
                    per_step,
                    group_by,
                };
                let what = format!("{source} {step} {per_step:?} {:?}", f.group_by);
                // A function's values count as sampled at their step's end, so a
                // group's `last` is not compared.
                let cells = |r: FragmentResult| {
                    let cell = |&(t, p): &(i64, Partial)| {
                        (
                            t,
                            p.count,
                            p.sum.to_bits(),
                            p.min.to_bits(),
                            p.max.to_bits(),
                        )
                    };
                    let groups = r.groups.iter();
                    groups
                        .map(|g| (g.key.clone(), g.points.iter().map(cell).collect::<Vec<_>>()))
                        .collect::<Vec<_>>()
                };
                let plain = e.aggregate(&f).unwrap();
                assert!(plain.groups.iter().any(|g| !g.points.is_empty()), "{what}");
                let each = e.aggregate_each(&f, &identity).unwrap();
                assert_eq!((each.series, each.samples), (plain.series, plain.samples));
                assert_eq!(cells(each), cells(plain), "{what}");
            }
        }
    }
    // What a function returns is what folds: here each series' step values
    // shifted one step later (the last one falls off the grid), and one point
    // off the grid that is dropped.
    let f = Fragment {
        selector: Selector::parse("web", "*", "http/*").unwrap(),
        start: T0,
        end: T0 + 60 * MIN,
        step: MIN,
        per_step: StepAgg::Last,
        group_by: vec![KeyPart::Source],
    };
    let shift = |p: &[(i64, f64)], out: &mut Vec<(i64, f64)>| {
        out.extend(p.iter().map(|&(t, v)| (t + MIN, v)));
        out.push((T0 + 1, 1e9));
    };
    let plain = e.aggregate(&f).unwrap();
    let shifted = e.aggregate_each(&f, &shift).unwrap();
    assert_eq!(plain.groups.len(), 3);
    for (a, b) in plain.groups.iter().zip(&shifted.groups) {
        assert_eq!(a.key, b.key);
        let want: Vec<(i64, f64)> = a
            .points
            .iter()
            .map(|(t, p)| (t + MIN, p.sum))
            .filter(|&(t, _)| t < f.end)
            .collect();
        let got: Vec<(i64, f64)> = b.points.iter().map(|(t, p)| (*t, p.sum)).collect();
        assert_eq!(got, want, "{:?}", a.key);
    }
}

#[test]
fn fragments_at_the_ends_of_time_answer_without_overflowing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let e = Engine::open(dir.path(), opts(&clock)).unwrap();
    fleet(&e, &clock, 1);
    let identity = |p: &[(i64, f64)], out: &mut Vec<(i64, f64)>| out.extend_from_slice(p);
    for source in ["*", ALL_SOURCES] {
        for (start, end, step) in [
            (i64::MIN, i64::MIN + 5 * MIN, MIN),
            (i64::MAX - 5 * MIN, i64::MAX, MIN),
            (i64::MIN, i64::MAX, i64::MAX),
            (T0, T0 + 60 * MIN, i64::MAX),
            (T0 + 30 * MIN, T0 + 31 * MIN, i64::MAX),
            (T0 + 30 * MIN, T0 + 90 * MIN, i64::MAX / 2),
        ] {
            let f = Fragment {
                selector: Selector::parse("web", source, "*").unwrap(),
                start,
                end,
                step,
                per_step: StepAgg::Sum,
                group_by: vec![],
            };
            let plain = e.aggregate(&f).unwrap();
            let each = e.aggregate_each(&f, &identity).unwrap();
            assert_eq!(plain.groups.len(), each.groups.len(), "{start} {step}");
        }
    }
}

#[test]
fn a_first_page_of_the_selection_is_its_head_in_key_order() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0 + MIN));
    let e = Engine::open(dir.path(), opts(&clock)).unwrap();
    // Interned out of key order, with parts that tie on service and source.
    let mut rows = Vec::new();
    let names: Vec<(String, String, String)> = (0..40u32)
        .map(|i| {
            let k = (i * 17) % 40;
            (
                format!("svc{}", k % 3),
                format!("h{}", k % 7),
                format!("m{}", k % 5),
            )
        })
        .collect();
    for (svc, src, m) in &names {
        rows.push(row(svc, src, m, T0, 1.0));
    }
    e.append(&rows).unwrap();
    for sel in [
        Selector::parse("*", "*", "*").unwrap(),
        Selector::parse("svc1", "*", "*").unwrap(),
        Selector::parse("*", "h3", "*").unwrap(),
        Selector::parse("svc2", ALL_SOURCES, "*").unwrap(),
        Selector::parse("nothing", "*", "*").unwrap(),
    ] {
        let all = e.select(&sel, T0, T0 + MIN);
        assert!(all.windows(2).all(|w| w[0] < w[1]), "{sel:?}: sorted");
        for limit in [
            0,
            1,
            2,
            3,
            7,
            all.len().saturating_sub(1),
            all.len(),
            usize::MAX,
        ] {
            let (first, total) = e.select_first(&sel, T0, T0 + MIN, limit);
            assert_eq!(total, all.len(), "{sel:?} limit {limit}");
            assert_eq!(first, all[..limit.min(all.len())], "{sel:?} limit {limit}");
        }
    }
}

#[test]
fn raw_coded_against_rollups_or_not_reads_the_same() {
    // A noisy two-decimal gauge: what the rollup leaves of it is small.
    let rows: Vec<(i64, f64)> = (0..600)
        .map(|i| (T0 + i * MIN, (4000 + (i * 7919) % 400) as f64 / 100.0))
        .collect();
    let mut raw_bytes = Vec::new();
    for against in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(T0 + DAY_MS));
        let o = Options {
            raw_against_rollup: against,
            ..opts(&clock)
        };
        let e = Engine::open(dir.path(), o).unwrap();
        let batch: Vec<SampleRow> = rows
            .iter()
            .map(|&(t, v)| row("web", "h1", "http/requests", t, v))
            .collect();
        e.append(&batch).unwrap();
        e.flush().unwrap();
        assert_eq!(vals(&e, "h1", T0, T0 + DAY_MS), rows);
        raw_bytes.push(e.block_breakdown().raw);
    }
    assert!(
        raw_bytes[0] * 2 < raw_bytes[1],
        "raw bytes against the rollup and plain: {raw_bytes:?}"
    );
}
