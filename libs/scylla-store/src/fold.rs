//! Fragment execution over samples read from the cluster: one value per
//! series per aligned step (the samples in `(t - step, t]`, aggregated by
//! the fragment's [`StepAgg`]; nothing carried forward), folded across
//! series into mergeable [`Partial`]s per group — the semantics of
//! `tsdb::Engine::aggregate` on raw data.

use std::collections::BTreeMap;

use tsdb::{Fragment, FragmentResult, GroupResult, Partial, Sample, SeriesFn, SeriesKey, StepAgg};

use crate::error::Result;

/// The point grid of a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// First point (ms).
    pub start: i64,
    /// Step (ms, > 0).
    pub step: i64,
    /// Number of points.
    pub n: usize,
}

impl Grid {
    /// The grid of `f` (errors on a non-positive step or too many points).
    pub fn of(f: &Fragment) -> Result<Grid> {
        Ok(Grid {
            start: f.start,
            step: f.step,
            n: f.points()?,
        })
    }

    /// The sample range `[lo, hi)` that can contribute to some point.
    pub fn sample_range(&self) -> (i64, i64) {
        let last = self
            .start
            .saturating_add((self.n as i64 - 1).saturating_mul(self.step));
        (
            self.start.saturating_sub(self.step).saturating_add(1),
            last.saturating_add(1),
        )
    }

    /// The point index whose step `(t - step, t]` holds `ts`, if any.
    pub fn index(&self, ts: i64) -> Option<usize> {
        let k =
            (ts as i128 - self.start as i128 + self.step as i128 - 1).div_euclid(self.step as i128);
        (0..self.n as i128).contains(&k).then_some(k as usize)
    }

    /// The time of point `k`.
    pub fn time(&self, k: usize) -> i64 {
        self.start + k as i64 * self.step
    }
}

/// One value per step with data of a time-ordered series: `(k, value,
/// timestamp of the step's last sample)`.
pub fn fold_series(samples: &[Sample], grid: &Grid, agg: StepAgg) -> Vec<(usize, f64, i64)> {
    let mut out = Vec::new();
    let mut cur: Option<(usize, f64, f64, f64, f64, f64, i64)> = None; // k, count, sum, min, max, last, last_ts
    let flush = |c: (usize, f64, f64, f64, f64, f64, i64), out: &mut Vec<(usize, f64, i64)>| {
        let (k, count, sum, min, max, last, last_ts) = c;
        let v = match agg {
            StepAgg::Last => last,
            StepAgg::Sum => sum,
            StepAgg::Avg => sum / count,
            StepAgg::Min => min,
            StepAgg::Max => max,
            StepAgg::Count => count,
        };
        out.push((k, v, last_ts));
    };
    for s in samples {
        let Some(k) = grid.index(s.ts) else { continue };
        let v = s.value;
        match &mut cur {
            Some(c) if c.0 == k => {
                c.1 += 1.0;
                c.2 += v;
                c.3 = c.3.min(v);
                c.4 = c.4.max(v);
                c.5 = v;
                c.6 = s.ts;
            }
            _ => {
                if let Some(c) = cur.take() {
                    flush(c, &mut out);
                }
                cur = Some((k, 1.0, v, v, v, v, s.ts));
            }
        }
    }
    if let Some(c) = cur {
        flush(c, &mut out);
    }
    out
}

/// Accumulates series into per-group partials, each series' step values
/// passed through a [`SeriesFn`] first when there is one (the semantics of
/// `tsdb::Engine::aggregate_each`).
pub struct FragmentAcc<'f> {
    fragment: &'f Fragment,
    each: Option<&'f dyn SeriesFn>,
    grid: Grid,
    groups: BTreeMap<Vec<String>, BTreeMap<usize, Partial>>,
    series: usize,
    samples: u64,
}

impl std::fmt::Debug for FragmentAcc<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FragmentAcc")
            .field("fragment", self.fragment)
            .field("each", &self.each.is_some())
            .field("series", &self.series)
            .finish()
    }
}

impl<'f> FragmentAcc<'f> {
    /// An empty accumulator for `fragment`.
    pub fn new(fragment: &'f Fragment) -> Result<Self> {
        Self::with(fragment, None)
    }

    /// An empty accumulator for `fragment` whose series pass through `each`.
    pub fn with(fragment: &'f Fragment, each: Option<&'f dyn SeriesFn>) -> Result<Self> {
        Ok(Self {
            grid: Grid::of(fragment)?,
            fragment,
            each,
            groups: BTreeMap::new(),
            series: 0,
            samples: 0,
        })
    }

    /// The grid.
    pub fn grid(&self) -> Grid {
        self.grid
    }

    /// Folds one matched series (samples time-ordered, any range).
    pub fn add(&mut self, key: &SeriesKey, samples: &[Sample]) {
        self.series += 1;
        self.samples += samples.len() as u64;
        let gk: Vec<String> = self
            .fragment
            .group_by
            .iter()
            .map(|&p| key.part(p).to_string())
            .collect();
        let group = self.groups.entry(gk).or_default();
        let steps = fold_series(samples, &self.grid, self.fragment.per_step);
        let Some(each) = self.each else {
            for (k, v, ts) in steps {
                group.entry(k).or_insert(Partial::EMPTY).add(v, ts);
            }
            return;
        };
        let grid = self.grid;
        let points: Vec<(i64, f64)> = steps.iter().map(|&(k, v, _)| (grid.time(k), v)).collect();
        let mut out = Vec::new();
        each.apply(&points, &mut out);
        for (t, v) in out {
            // Only points of the grid fold in, sampled at their step's end.
            if let Some(k) = grid.index(t).filter(|&k| grid.time(k) == t) {
                group.entry(k).or_insert(Partial::EMPTY).add(v, t);
            }
        }
    }

    /// The result: groups sorted by key, points ascending. A group whose
    /// series had no data in range keeps an empty point list (as the
    /// embedded engine does).
    pub fn finish(self) -> FragmentResult {
        let grid = self.grid;
        FragmentResult {
            groups: self
                .groups
                .into_iter()
                .map(|(key, pts)| GroupResult {
                    key,
                    points: pts.into_iter().map(|(k, p)| (grid.time(k), p)).collect(),
                })
                .collect(),
            series: self.series,
            samples: self.samples,
            rollup_ms: None,
        }
    }
}

/// Executes `f` over already-read series (a pure function; the store feeds
/// it from the cluster), each series through `each` when given.
pub fn aggregate_samples<'a>(
    f: &Fragment,
    each: Option<&dyn SeriesFn>,
    series: impl IntoIterator<Item = (&'a SeriesKey, &'a [Sample])>,
) -> Result<FragmentResult> {
    let mut acc = FragmentAcc::with(f, each)?;
    if acc.grid().n == 0 {
        return Ok(FragmentResult::default());
    }
    for (k, s) in series {
        acc.add(k, s);
    }
    Ok(acc.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Arc;
    use tsdb::{Engine, KeyPart, ManualClock, Options, SampleRow, Selector};

    fn s(ts: i64, value: f64) -> Sample {
        Sample { ts, value }
    }

    #[test]
    fn last_sample_in_half_open_steps() {
        let g = Grid {
            start: 100,
            step: 10,
            n: 3,
        };
        let samples = [
            s(90, 0.0),
            s(91, 1.0),
            s(100, 2.0),
            s(105, 3.0),
            s(125, 5.0),
            s(130, 6.0),
        ];
        assert_eq!(
            fold_series(&samples, &g, StepAgg::Last),
            vec![(0, 2.0, 100), (1, 3.0, 105)]
        );
        let g = Grid {
            start: 100,
            step: 10,
            n: 4,
        };
        let samples = [
            s(95, 1.0),
            s(100, 1.0),
            s(101, 1.0),
            s(125, 1.0),
            s(130, 1.0),
        ];
        let got: Vec<(usize, f64)> = fold_series(&samples, &g, StepAgg::Count)
            .into_iter()
            .map(|x| (x.0, x.1))
            .collect();
        assert_eq!(got, vec![(0, 2.0), (1, 1.0), (3, 2.0)]);
        assert_eq!(g.sample_range(), (91, 131));
        assert_eq!(g.index(i64::MIN), None);
        assert_eq!(g.index(i64::MAX), None);
    }

    #[test]
    fn bad_fragments_are_errors_not_panics() {
        let f = Fragment {
            selector: Selector::parse("*", "*", "*").unwrap(),
            start: 0,
            end: 100,
            step: 0,
            per_step: StepAgg::Last,
            group_by: vec![],
        };
        let e = aggregate_samples(&f, None, []).unwrap_err();
        assert!(e.to_string().contains("step must be positive"), "{e}");
    }

    const NOW: i64 = 1_700_000_000_000;

    fn agg_strategy() -> impl Strategy<Value = StepAgg> {
        prop_oneof![
            Just(StepAgg::Last),
            Just(StepAgg::Sum),
            Just(StepAgg::Avg),
            Just(StepAgg::Min),
            Just(StepAgg::Max),
            Just(StepAgg::Count),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// The same data through the embedded engine and through this fold
        /// gives the same partials.
        #[test]
        fn matches_the_embedded_engine(
            rows in prop::collection::vec((0usize..3, 0usize..3, 0i64..7_200, -1e6f64..1e6), 1..200),
            start_off in 0i64..3_600,
            step in prop_oneof![Just(1i64), Just(7), Just(60), Just(300)],
            points in 1i64..200,
            agg in agg_strategy(),
            group in prop_oneof![Just(vec![]), Just(vec![KeyPart::Service]), Just(vec![KeyPart::Source, KeyPart::Metric])],
        ) {
            let dir = tempfile::tempdir().unwrap();
            let clock = Arc::new(ManualClock::new(NOW));
            let engine = Engine::open(dir.path(), Options { clock, ..Options::default() }).unwrap();
            let services = ["web", "db", "cache"];
            let sources = ["h1", "h2", "h3"];
            let base = NOW - 7_200_000;
            let sample_rows: Vec<SampleRow<'_>> = rows
                .iter()
                .map(|&(a, b, t, v)| SampleRow {
                    service: services[a],
                    source: sources[b],
                    metric: "m",
                    ts: base + t * 1000,
                    value: v,
                })
                .collect();
            engine.append(&sample_rows).unwrap();
            let f = Fragment {
                selector: Selector::parse("*", "*", "*").unwrap(),
                start: base + start_off * 1000,
                end: base + start_off * 1000 + points * step * 1000,
                step: step * 1000,
                per_step: agg,
                group_by: group,
            };
            let (lo, hi) = Grid::of(&f).unwrap().sample_range();
            let keys = engine.select(&f.selector, lo, hi);
            let data: Vec<(SeriesKey, Vec<Sample>)> = keys
                .into_iter()
                .map(|k| { let s = engine.read_range(&k, lo, hi).unwrap(); (k, s) })
                .collect();
            // Plain, and through a function of each series' step values (the
            // difference to the step before, on the grid; one point off it).
            let delta = |p: &[(i64, f64)], out: &mut Vec<(i64, f64)>| {
                out.extend(p.windows(2).map(|w| (w[1].0, w[1].1 - w[0].1)));
                out.push((p.first().map_or(0, |x| x.0) + 1, 1e9));
            };
            for each in [None, Some(&delta as &dyn SeriesFn)] {
                let mut want = match each {
                    None => engine.aggregate(&f).unwrap(),
                    Some(each) => engine.aggregate_each(&f, each).unwrap(),
                };
                // `FragmentResult` documents groups sorted by key; the engine
                // lists them in first-seen order, so compare sorted.
                want.groups.sort_by(|a, b| a.key.cmp(&b.key));
                let got = aggregate_samples(&f, each, data.iter().map(|(k, s)| (k, s.as_slice()))).unwrap();
                prop_assert_eq!(got.series, want.series);
                prop_assert_eq!(got.groups.len(), want.groups.len());
                for (g, w) in got.groups.iter().zip(&want.groups) {
                    prop_assert_eq!(&g.key, &w.key);
                    prop_assert_eq!(g.points.len(), w.points.len());
                    for ((gt, gp), (wt, wp)) in g.points.iter().zip(&w.points) {
                        prop_assert_eq!(gt, wt);
                        prop_assert_eq!(gp.count, wp.count);
                        prop_assert_eq!(gp.last_ts, wp.last_ts);
                        prop_assert_eq!(gp.last.to_bits(), wp.last.to_bits());
                        prop_assert_eq!(gp.min.to_bits(), wp.min.to_bits());
                        prop_assert_eq!(gp.max.to_bits(), wp.max.to_bits());
                        prop_assert!((gp.sum - wp.sum).abs() <= 1e-6 * (1.0 + wp.sum.abs()));
                    }
                }
            }
        }
    }
}
