//! Query fragments and mergeable partial aggregates: per-series values per
//! aligned step (last, sum, avg, min, max, count over `(t - step, t]`),
//! folded across series into count/sum/min/max/last partials that the
//! federator can merge from many storage nodes.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::index::Selector;
use crate::types::KeyPart;

/// How the samples of one series inside one step become one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepAgg {
    /// The last sample in `(t - step, t]` (the default).
    Last,
    /// Sum of the samples.
    Sum,
    /// Mean of the samples.
    Avg,
    /// Smallest sample.
    Min,
    /// Largest sample.
    Max,
    /// Number of samples.
    Count,
}

/// A select + aggregate over a time range, executed next to the data.
///
/// Points are at `t = start + k * step` for every `t < end`; the point at
/// `t` summarises samples in `(t - step, t]`. Steps without data produce no
/// point (nothing is carried forward). When `start` and `step` are
/// multiples of a rollup width (1 h, then 5 min), sealed data is read from
/// that rollup instead of raw samples; the answer is the same.
#[derive(Debug, Clone)]
pub struct Fragment {
    /// Which series.
    pub selector: Selector,
    /// First point (ms).
    pub start: i64,
    /// Points are strictly before this (ms).
    pub end: i64,
    /// Step (ms, > 0).
    pub step: i64,
    /// Per-series value of a step.
    pub per_step: StepAgg,
    /// Key parts to group by; empty = one group over all series.
    pub group_by: Vec<KeyPart>,
}

impl Fragment {
    /// The samples that feed a grid of `n` points: those in `[lo, hi]`
    /// (clamped to the range of timestamps).
    pub(crate) fn sample_range(&self, n: usize) -> (i64, i64) {
        let lo = self.start.saturating_sub(self.step.saturating_sub(1));
        let span = (n as i64).saturating_sub(1).saturating_mul(self.step);
        (lo, self.start.saturating_add(span))
    }

    /// Number of points of the grid.
    pub fn points(&self) -> Result<usize> {
        if self.step <= 0 {
            return Err(Error::BadQuery(format!(
                "step must be positive, got {} ms",
                self.step
            )));
        }
        if self.end <= self.start {
            return Ok(0);
        }
        let n = (self.end as i128 - self.start as i128 - 1) / self.step as i128 + 1;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= 10_000_000)
            .ok_or_else(|| {
                Error::BadQuery(format!(
                    "{n} points requested; at most 10000000 per fragment"
                ))
            })
    }
}

/// A mergeable aggregate of per-series step values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Partial {
    /// Number of series values folded in.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// Their minimum.
    pub min: f64,
    /// Their maximum.
    pub max: f64,
    /// The value whose underlying sample is the latest (ties: larger bits).
    pub last: f64,
    /// Timestamp of that sample.
    pub last_ts: i64,
}

impl Partial {
    /// The identity of [`Partial::merge`].
    pub const EMPTY: Partial = Partial {
        count: 0,
        sum: 0.0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
        last: f64::NAN,
        last_ts: i64::MIN,
    };

    /// A partial holding one value.
    pub fn of(value: f64, ts: i64) -> Self {
        Partial {
            count: 1,
            sum: value,
            min: value,
            max: value,
            last: value,
            last_ts: ts,
        }
    }

    /// Folds another partial in (commutative and associative).
    #[inline]
    pub fn merge(&mut self, o: &Partial) {
        if o.count == 0 {
            return;
        }
        let was_empty = self.count == 0;
        self.count += o.count;
        self.sum += o.sum;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        if takes_last(was_empty, (o.last_ts, o.last), (self.last_ts, self.last)) {
            self.last = o.last;
            self.last_ts = o.last_ts;
        }
    }

    /// Folds one value in: the same as merging `Partial::of(value, ts)`.
    #[inline]
    pub fn add(&mut self, value: f64, ts: i64) {
        self.merge(&Partial::of(value, ts));
    }

    /// Mean of the folded values.
    pub fn avg(&self) -> f64 {
        self.sum / self.count as f64
    }
}

/// Partials of one group: group key values in `group_by` order, and one
/// partial per step that has data.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupResult {
    /// Values of the grouped key parts.
    pub key: Vec<String>,
    /// `(t, partial)` for each point with data, ascending.
    pub points: Vec<(i64, Partial)>,
}

/// The answer of a fragment.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FragmentResult {
    /// Groups sorted by key.
    pub groups: Vec<GroupResult>,
    /// Series that matched.
    pub series: usize,
    /// Samples (or rollup buckets) read.
    pub samples: u64,
    /// The rollup width used for sealed data, if any.
    pub rollup_ms: Option<i64>,
}

impl FragmentResult {
    /// Merges the result of the same fragment from another node.
    pub fn merge(&mut self, other: FragmentResult) {
        let mut map: BTreeMap<Vec<String>, BTreeMap<i64, Partial>> = BTreeMap::new();
        for g in self.groups.drain(..).chain(other.groups) {
            let e = map.entry(g.key).or_default();
            for (t, p) in g.points {
                e.entry(t).or_insert(Partial::EMPTY).merge(&p);
            }
        }
        self.groups = map
            .into_iter()
            .map(|(key, pts)| GroupResult {
                key,
                points: pts.into_iter().collect(),
            })
            .collect();
        self.series += other.series;
        self.samples += other.samples;
        if self.rollup_ms != other.rollup_ms {
            self.rollup_ms = None;
        }
    }
}

/// Whether a `last` sampled at `new.0` replaces the one held (sampled at
/// `held.0`): the later sample wins, equal times go to the larger bits, and
/// an empty partial takes anything. Branch-free, as across series the
/// tie-break is a coin toss.
#[inline]
fn takes_last(was_empty: bool, new: (i64, f64), held: (i64, f64)) -> bool {
    was_empty | (new.0 > held.0) | ((new.0 == held.0) & (new.1.to_bits() > held.1.to_bits()))
}

/// Per-step partials of one group, column by column, so that a run of
/// values landing on consecutive steps folds in with loops the compiler
/// vectorises.
#[derive(Debug, Clone)]
pub(crate) struct Partials {
    count: Vec<u64>,
    sum: Vec<f64>,
    min: Vec<f64>,
    max: Vec<f64>,
    last: Vec<f64>,
    last_ts: Vec<i64>,
}

impl Partials {
    /// `n` empty partials.
    pub fn new(n: usize) -> Self {
        let e = Partial::EMPTY;
        Self {
            count: vec![e.count; n],
            sum: vec![e.sum; n],
            min: vec![e.min; n],
            max: vec![e.max; n],
            last: vec![e.last; n],
            last_ts: vec![e.last_ts; n],
        }
    }

    pub fn len(&self) -> usize {
        self.count.len()
    }

    /// The partial of step `k`.
    #[inline]
    pub fn get(&self, k: usize) -> Partial {
        Partial {
            count: self.count[k],
            sum: self.sum[k],
            min: self.min[k],
            max: self.max[k],
            last: self.last[k],
            last_ts: self.last_ts[k],
        }
    }

    /// Folds one value into step `k` (see [`Partial::add`]).
    #[inline]
    pub fn add(&mut self, k: usize, value: f64, ts: i64) {
        if k >= self.len() {
            return;
        }
        let mut p = self.get(k);
        p.add(value, ts);
        self.set(k, p);
    }

    #[inline]
    fn set(&mut self, k: usize, p: Partial) {
        self.count[k] = p.count;
        self.sum[k] = p.sum;
        self.min[k] = p.min;
        self.max[k] = p.max;
        self.last[k] = p.last;
        self.last_ts[k] = p.last_ts;
    }

    /// Folds `vals[i]` (sampled at `ts[i]`) into step `k0 + i`: the same as
    /// [`Partials::add`] on each, a column at a time.
    pub fn add_run(&mut self, k0: usize, ts: &[i64], vals: &[f64]) {
        let m = vals.len().min(ts.len());
        let Some(k1) = k0.checked_add(m).filter(|&k1| k1 <= self.len()) else {
            for (i, (&t, &v)) in ts.iter().zip(vals).enumerate() {
                self.add(k0.saturating_add(i), v, t);
            }
            return;
        };
        let (ts, vals) = (&ts[..m], &vals[..m]);
        for c in &mut self.count[k0..k1] {
            *c += 1;
        }
        for (s, &v) in self.sum[k0..k1].iter_mut().zip(vals) {
            *s += v;
        }
        for (x, &v) in self.min[k0..k1].iter_mut().zip(vals) {
            *x = x.min(v);
        }
        for (x, &v) in self.max[k0..k1].iter_mut().zip(vals) {
            *x = x.max(v);
        }
        let cols = self.count[k0..k1]
            .iter()
            .zip(self.last[k0..k1].iter_mut())
            .zip(self.last_ts[k0..k1].iter_mut());
        for (((&c, l), lt), (&t, &v)) in cols.zip(ts.iter().zip(vals)) {
            let newer = takes_last(c == 1, (t, v), (*lt, *l));
            *l = if newer { v } else { *l };
            *lt = if newer { t } else { *lt };
        }
    }

    /// Merges another group's partials, step by step.
    pub fn merge(&mut self, o: &Partials) {
        for k in 0..self.len().min(o.len()) {
            let mut p = self.get(k);
            p.merge(&o.get(k));
            self.set(k, p);
        }
    }

    /// `(t, partial)` for each step with data, ascending.
    pub fn points(&self, start: i64, step: i64) -> Vec<(i64, Partial)> {
        (0..self.len())
            .filter(|&k| self.count[k] > 0)
            .map(|k| (start + k as i64 * step, self.get(k)))
            .collect()
    }
}

/// A function of time applied to each series' step values before they are
/// folded across series (a rate, a moving window): the engine runs it per
/// series as it reads, so no per-series answer is built. The engine knows no
/// function itself.
pub trait SeriesFn: Sync {
    /// Appends to `out` the values to fold, given one series' step values
    /// (`(t, value)` ascending, steps without data absent). Points off the
    /// fragment's grid are dropped; the others fold as sampled at `t` (so the
    /// `last` of a group's values at one step is the one with the larger bits).
    fn apply(&self, points: &[(i64, f64)], out: &mut Vec<(i64, f64)>);
}

impl<F: Fn(&[(i64, f64)], &mut Vec<(i64, f64)>) + Sync> SeriesFn for F {
    fn apply(&self, points: &[(i64, f64)], out: &mut Vec<(i64, f64)>) {
        self(points, out)
    }
}

/// Where a fold of series puts its step values.
pub(crate) trait Steps {
    /// Steps of the grid.
    fn len(&self) -> usize;
    /// Folds one value into step `k`.
    fn add(&mut self, k: usize, value: f64, ts: i64);
    /// Folds `vals[i]` (sampled at `ts[i]`) into step `k0 + i`.
    fn add_run(&mut self, k0: usize, ts: &[i64], vals: &[f64]);
}

impl Steps for Partials {
    fn len(&self) -> usize {
        Partials::len(self)
    }
    #[inline]
    fn add(&mut self, k: usize, value: f64, ts: i64) {
        Partials::add(self, k, value, ts)
    }
    fn add_run(&mut self, k0: usize, ts: &[i64], vals: &[f64]) {
        Partials::add_run(self, k0, ts, vals)
    }
}

/// One series' step values as `(t, value)` in step order: what a
/// [`SeriesFn`] is handed.
#[derive(Debug)]
pub(crate) struct Row {
    start: i64,
    step: i64,
    n: usize,
    points: Vec<(i64, f64)>,
}

impl Steps for Row {
    fn len(&self) -> usize {
        self.n
    }

    #[inline]
    fn add(&mut self, k: usize, value: f64, _ts: i64) {
        if k >= self.n {
            return;
        }
        let t = self.start + k as i64 * self.step;
        // A fold gives a series one value per step, in step order; a second
        // one would add up, as in a group's partial.
        match self.points.last_mut() {
            Some(p) if p.0 == t => p.1 += value,
            _ => self.points.push((t, value)),
        }
    }

    fn add_run(&mut self, k0: usize, ts: &[i64], vals: &[f64]) {
        let m = ts.len().min(vals.len());
        let t0 = self.start + k0 as i64 * self.step;
        if k0 + m <= self.n && self.points.last().is_none_or(|p| p.0 < t0) {
            let step = self.step;
            let times = (0..m as i64).map(|i| t0 + i * step);
            self.points.extend(times.zip(vals[..m].iter().copied()));
            return;
        }
        for (i, (&t, &v)) in ts.iter().zip(vals).enumerate() {
            self.add(k0.saturating_add(i), v, t);
        }
    }
}

/// One worker's pass of series through a [`SeriesFn`]: a series folds into
/// `row`, its step values go through the function, and what comes out folds
/// into the series' group.
pub(crate) struct Each<'a> {
    f: &'a dyn SeriesFn,
    /// The series being read.
    pub row: Row,
    out: Vec<(i64, f64)>,
    ts: Vec<i64>,
    vals: Vec<f64>,
}

impl<'a> Each<'a> {
    /// A pass on the grid `start + k * step`, `k < n`.
    pub fn new(f: &'a dyn SeriesFn, start: i64, step: i64, n: usize) -> Self {
        Self {
            f,
            row: Row {
                start,
                step,
                n,
                points: Vec::new(),
            },
            out: Vec::new(),
            ts: Vec::new(),
            vals: Vec::new(),
        }
    }

    /// Passes the series folded into `row` through the function into `group`,
    /// and empties `row`.
    pub fn pass(&mut self, group: &mut Option<Partials>) {
        self.out.clear();
        self.f.apply(&self.row.points, &mut self.out);
        self.row.points.clear();
        let Row { start, step, n, .. } = self.row;
        if self.out.is_empty() {
            return;
        }
        let group = group.get_or_insert_with(|| Partials::new(n));
        // Points on consecutive steps fold a column at a time.
        let out = &self.out;
        let mut i = 0;
        while i < out.len() {
            let at = out[i].0.wrapping_sub(start);
            if at < 0 || at % step != 0 || at / step >= n as i64 {
                i += 1;
                continue;
            }
            let k0 = (at / step) as usize;
            self.ts.clear();
            self.vals.clear();
            let mut t = out[i].0;
            while i < out.len() && out[i].0 == t && k0 + self.ts.len() < n {
                self.ts.push(t);
                self.vals.push(out[i].1);
                t = t.wrapping_add(step);
                i += 1;
            }
            group.add_run(k0, &self.ts, &self.vals);
        }
    }
}

/// Running aggregate of one step of one series.
#[derive(Debug, Clone, Copy)]
struct Cell {
    count: f64,
    sum: f64,
    min: f64,
    max: f64,
    last: f64,
    last_ts: i64,
}

/// The step whose window `(t - step, t]` holds `ts`, given the current step
/// `cur` (-1 for none). Input comes in time order, so the answer is usually
/// the current step or the next one; the division runs only after a gap.
#[inline]
fn step_index(start: i64, step: i64, cur: i64, ts: i64) -> i64 {
    if cur >= 0 {
        let end = start + cur * step;
        if ts <= end && ts > end - step {
            return cur;
        }
        if ts > end && ts <= end + step {
            return cur + 1;
        }
    }
    (ts - start + step - 1).div_euclid(step)
}

/// Folds one series' time-ordered samples or rollup buckets into per-step
/// values, each added to the partial of its step in `acc` (the series'
/// group) as soon as the step is complete, without materialising them.
#[derive(Debug)]
pub(crate) struct StepFold<'a, S: Steps = Partials> {
    start: i64,
    step: i64,
    n: i64,
    agg: StepAgg,
    cur: i64,
    cell: Cell,
    acc: &'a mut S,
}

impl<'a, S: Steps> StepFold<'a, S> {
    /// A fold over the grid `start + k * step` for `k < acc.len()`.
    pub fn new(start: i64, step: i64, agg: StepAgg, acc: &'a mut S) -> Self {
        Self {
            start,
            step,
            n: acc.len() as i64,
            agg,
            cur: -1,
            cell: Cell {
                count: 0.0,
                sum: 0.0,
                min: 0.0,
                max: 0.0,
                last: 0.0,
                last_ts: 0,
            },
            acc,
        }
    }

    /// Samples outside `(lo, hi]` contribute nothing.
    pub fn bounds(&self) -> (i64, i64) {
        (
            self.start.saturating_sub(self.step),
            self.start
                .saturating_add((self.n - 1).max(0).saturating_mul(self.step)),
        )
    }

    #[inline]
    fn index(&self, ts: i64) -> i64 {
        step_index(self.start, self.step, self.cur, ts)
    }

    #[inline]
    pub fn raw(&mut self, ts: i64, v: f64) {
        let k = self.index(ts);
        if k < 0 || k >= self.n {
            return;
        }
        if k != self.cur {
            self.flush();
            self.cur = k;
            self.cell = Cell {
                count: 1.0,
                sum: v,
                min: v,
                max: v,
                last: v,
                last_ts: ts,
            };
        } else {
            let c = &mut self.cell;
            c.count += 1.0;
            c.sum += v;
            c.min = c.min.min(v);
            c.max = c.max.max(v);
            c.last = v;
            c.last_ts = ts;
        }
    }

    /// Folds a time-sorted run (strictly increasing timestamps); samples
    /// outside the grid are skipped. Same result as [`StepFold::raw`] on
    /// each sample, with the per-step `Last` case reduced to a compare and
    /// two register moves per sample.
    pub fn run(&mut self, ts: &[i64], vals: &[f64]) {
        let (lo, hi) = self.bounds();
        let a = ts.partition_point(|&t| t <= lo);
        let b = ts.partition_point(|&t| t <= hi).max(a);
        let (ts, vals) = (&ts[a..b], &vals[a.min(vals.len())..b.min(vals.len())]);
        if self.agg != StepAgg::Last {
            for (&t, &v) in ts.iter().zip(vals) {
                self.raw(t, v);
            }
            return;
        }
        let (start, step) = (self.start, self.step);
        let (mut cur, mut last, mut last_ts) = (self.cur, self.cell.last, self.cell.last_ts);
        let mut end = if cur >= 0 {
            start + cur * step
        } else {
            i64::MIN
        };
        // Samples still in the pending step (a rollup bucket split across
        // two blocks) replace its last.
        let same = ts.partition_point(|&t| t <= end);
        if let (Some(&t), Some(&v)) = (ts[..same].last(), vals[..same].last()) {
            (last, last_ts) = (v, t);
        }
        let (ts, vals) = (&ts[same..], &vals[same.min(vals.len())..]);
        // Samples on consecutive step ends (a regular run at the step, a
        // rollup read at its width): one value per step, column-wise. The
        // last sample stays pending, as a later one may share its step.
        if let (Some(&t0), Some(&tn), true) = (ts.first(), ts.last(), ts.len() > 1) {
            let k0 = step_index(start, step, cur, t0);
            let aligned = t0 == start + k0 * step
                && ts
                    .iter()
                    .zip(0i64..)
                    .fold(true, |ok, (&t, i)| ok & (t == t0 + i * step));
            if aligned {
                if let Ok(k) = usize::try_from(cur) {
                    self.acc.add(k, last, last_ts);
                }
                let m = ts.len() - 1;
                self.acc.add_run(k0 as usize, &ts[..m], &vals[..m]);
                self.cur = k0 + m as i64;
                self.cell.last = vals[m];
                self.cell.last_ts = tn;
                return;
            }
        }
        for (&t, &v) in ts.iter().zip(vals) {
            if t > end {
                if let Ok(k) = usize::try_from(cur) {
                    self.acc.add(k, last, last_ts);
                }
                cur = step_index(start, step, cur, t);
                end = start + cur * step;
            }
            last = v;
            last_ts = t;
        }
        self.cur = cur;
        self.cell.last = last;
        self.cell.last_ts = last_ts;
    }

    /// A rollup bucket labelled `label` (it lies inside one step).
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn bucket(&mut self, label: i64, count: f64, sum: f64, min: f64, max: f64, last: f64) {
        let k = self.index(label);
        if k < 0 || k >= self.n {
            return;
        }
        if k != self.cur {
            self.flush();
            self.cur = k;
            self.cell = Cell {
                count,
                sum,
                min,
                max,
                last,
                last_ts: label,
            };
        } else {
            let c = &mut self.cell;
            c.count += count;
            c.sum += sum;
            c.min = c.min.min(min);
            c.max = c.max.max(max);
            c.last = last;
            c.last_ts = label;
        }
    }

    /// Adds the step in progress to its partial; call once the series is done.
    pub fn flush(&mut self) {
        let Ok(k) = usize::try_from(self.cur) else {
            return;
        };
        let c = self.cell;
        let v = match self.agg {
            StepAgg::Last => c.last,
            StepAgg::Sum => c.sum,
            StepAgg::Avg => c.sum / c.count,
            StepAgg::Min => c.min,
            StepAgg::Max => c.max,
            StepAgg::Count => c.count,
        };
        self.acc.add(k, v, c.last_ts);
        self.cur = -1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn steps_take_the_last_sample_in_the_half_open_window() {
        let samples = [
            (90, 0.0),
            (91, 1.0),
            (100, 2.0),
            (105, 3.0),
            (125, 5.0),
            (130, 6.0),
        ];
        // Sample by sample and as one run: the same points.
        for whole in [false, true] {
            let mut acc = Partials::new(3);
            let mut f = StepFold::new(100, 10, StepAgg::Last, &mut acc);
            if whole {
                let (ts, vs): (Vec<i64>, Vec<f64>) = samples.iter().copied().unzip();
                f.run(&ts, &vs);
            } else {
                for (t, v) in samples {
                    f.raw(t, v);
                }
            }
            f.flush();
            // t=100 covers (90,100]; t=110 covers (100,110]; t=120 has no data
            // (nothing carried forward); 125 and 130 belong to t=130 (outside).
            assert_eq!(
                acc.points(100, 10),
                vec![(100, Partial::of(2.0, 100)), (110, Partial::of(3.0, 105))]
            );
        }
        let mut acc = Partials::new(4);
        let mut f = StepFold::new(100, 10, StepAgg::Count, &mut acc);
        f.run(&[95, 100, 101, 125, 130], &[1.0; 5]);
        f.flush();
        assert_eq!(
            (0..4)
                .map(|k| (acc.get(k).count, acc.get(k).sum))
                .collect::<Vec<_>>(),
            vec![(1, 2.0), (1, 1.0), (0, 0.0), (1, 2.0)]
        );
    }

    /// Series as blocks of sorted samples: regular runs on the grid (the
    /// column-wise path), runs off it, gaps, and blocks that share a step.
    fn series() -> impl Strategy<Value = Vec<Vec<(i64, f64)>>> {
        let run = (
            0i64..40,
            1usize..30,
            prop_oneof![Just(10i64), Just(7), 1i64..25],
        );
        let value = prop_oneof![Just(1.0), Just(-0.0), Just(f64::NAN), -5.0f64..5.0];
        proptest::collection::vec(
            (
                proptest::collection::vec(run, 1..4),
                proptest::collection::vec(value, 90),
            ),
            1..6,
        )
        .prop_map(|blocks| {
            let mut t = 60;
            blocks
                .into_iter()
                .map(|(runs, vals)| {
                    let mut out = Vec::new();
                    for (gap, len, d) in runs {
                        t += gap;
                        for _ in 0..len {
                            t += d;
                            out.push((t, vals[out.len() % vals.len()]));
                        }
                    }
                    out
                })
                .collect()
        })
    }

    fn bits(p: &Partials) -> Vec<[u64; 6]> {
        (0..p.len())
            .map(|k| {
                let x = p.get(k);
                let f = |v: f64| v.to_bits();
                [
                    x.count,
                    f(x.sum),
                    f(x.min),
                    f(x.max),
                    f(x.last),
                    x.last_ts as u64,
                ]
            })
            .collect()
    }

    proptest! {
        #[test]
        fn runs_fold_like_samples_one_by_one(
            group in proptest::collection::vec(series(), 1..4),
            agg in prop_oneof![Just(StepAgg::Last), Just(StepAgg::Sum), Just(StepAgg::Max)],
            start in 60i64..120,
        ) {
            let (step, n) = (10, 60);
            let mut by_run = Partials::new(n);
            let mut by_sample = Partials::new(n);
            for blocks in &group {
                let mut f = StepFold::new(start, step, agg, &mut by_run);
                for b in blocks {
                    let (ts, vs): (Vec<i64>, Vec<f64>) = b.iter().copied().unzip();
                    f.run(&ts, &vs);
                }
                f.flush();
                let mut f = StepFold::new(start, step, agg, &mut by_sample);
                for &(t, v) in blocks.iter().flatten() {
                    f.raw(t, v);
                }
                f.flush();
            }
            prop_assert_eq!(bits(&by_run), bits(&by_sample));
        }
    }

    #[test]
    fn partials_merge_in_any_order() {
        let parts = [
            Partial::of(1.0, 5),
            Partial::of(7.0, 9),
            Partial::of(-2.0, 9),
            Partial::of(3.0, 1),
        ];
        let mut a = Partial::EMPTY;
        for p in &parts {
            a.merge(p);
        }
        let mut b = Partial::EMPTY;
        for p in parts.iter().rev() {
            b.merge(p);
        }
        assert_eq!(a, b);
        assert_eq!((a.count, a.sum, a.min, a.max), (4, 9.0, -2.0, 7.0));
        assert_eq!(a.last_ts, 9);
    }
}
