//! Operations on series sets: step folding, aggregation across series, the join of binary
//! operations, and the functions over time.
//!
//! # Join rules (binary operations between two series sets `A op B`)
//!
//! 1. **Broadcast.** When one side is exactly one series without a source
//!    (an aggregate across sources, e.g. `sum(...)` or `sum(...) by (service)`),
//!    it pairs with every series of the other side.
//! 2. **By source.** Otherwise series are grouped by source (a missing source
//!    is a value of its own, so aggregates grouped by service or metric still
//!    join). Only sources present on both sides produce output.
//! 3. **Then by series key.** Within one source, a single series on one side
//!    pairs with each series of the other side; when both sides have several
//!    series for that source, series pair only when their whole keys are equal.
//! 4. **Result key.** A pair carries the key of the series on the "many"
//!    side; a one-to-one pair (and a pair of equal keys) carries the key of the
//!    left operand.
//! 5. **Points.** A pair combines the points at the steps where both series
//!    have one; a step present on one side only gives no point (use `fill()`
//!    first to make gaps explicit).
//! 6. Series without a partner, and series left without points, are dropped.
//!
//! Comparisons between two series sets pair series the same way and keep the
//! left operand's point where the comparison holds. With a scalar, every
//! series takes part and the series side's value is kept.

use std::collections::{BTreeMap, VecDeque};

use crate::ast::{ArithOp, CmpOp, KeyPart};
use crate::functions::{AggOp, StepAgg, WindowAgg};
use crate::series::{Range, Series, SeriesKey};

/// Folds one series' ascending raw samples into one point per step with
/// data: the point at `t` summarises the samples in `(t - step, t]`.
pub fn step_fold(samples: &[(i64, f64)], range: Range, agg: StepAgg) -> Vec<(i64, f64)> {
    let n = range.points();
    let mut out = Vec::new();
    let mut cur: Option<(i64, f64, f64, f64, f64, f64)> = None; // k, count, sum, min, max, last
    let flush = |out: &mut Vec<(i64, f64)>, c: (i64, f64, f64, f64, f64, f64)| {
        let (k, count, sum, min, max, last) = c;
        let v = match agg {
            StepAgg::Last => last,
            StepAgg::Sum => sum,
            StepAgg::Avg => sum / count,
            StepAgg::Min => min,
            StepAgg::Max => max,
            StepAgg::Count => count,
        };
        out.push((range.start + k * range.step, v));
    };
    for &(ts, v) in samples {
        // ceil((ts - start) / step), without overflow for far-away samples.
        let d = ts as i128 - range.start as i128;
        let k = (d + range.step as i128 - 1).div_euclid(range.step as i128);
        if k < 0 || k >= n as i128 {
            continue;
        }
        let k = k as i64;
        match &mut cur {
            Some(c) if c.0 == k => {
                c.1 += 1.0;
                c.2 += v;
                c.3 = c.3.min(v);
                c.4 = c.4.max(v);
                c.5 = v;
            }
            _ => {
                if let Some(c) = cur.take() {
                    flush(&mut out, c);
                }
                cur = Some((k, 1.0, v, v, v, v));
            }
        }
    }
    if let Some(c) = cur {
        flush(&mut out, c);
    }
    out
}

/// Sorts by key (stably) and drops series without points.
pub fn normalise(mut set: Vec<Series>) -> Vec<Series> {
    set.retain(|s| !s.points.is_empty());
    set.sort_by(|a, b| a.key.cmp(&b.key));
    set
}

/// Aggregates across series per step. Groups are formed by the `by` parts
/// (all series form one group without `by`); the result keys keep exactly
/// the `by` parts. `topk`/`bottomk` keep the chosen series' own keys.
pub fn aggregate(input: &[Series], op: AggOp, by: &[KeyPart]) -> Vec<Series> {
    let mut groups: BTreeMap<SeriesKey, Vec<&Series>> = BTreeMap::new();
    for s in input {
        groups.entry(s.key.project(by)).or_default().push(s);
    }
    let mut out = Vec::new();
    for (gkey, members) in groups {
        // Per step: the values in the members' key order.
        let mut steps: BTreeMap<i64, Vec<(f64, usize)>> = BTreeMap::new();
        for (i, s) in members.iter().enumerate() {
            for &(t, v) in &s.points {
                steps.entry(t).or_default().push((v, i));
            }
        }
        match op {
            AggOp::Topk(k) | AggOp::Bottomk(k) => {
                let mut picked: Vec<Vec<(i64, f64)>> = vec![Vec::new(); members.len()];
                for (t, mut vals) in steps {
                    // NaN ranks last either way; ties go to the smaller key.
                    vals.sort_by(|a, b| {
                        let o = match (a.0.is_nan(), b.0.is_nan()) {
                            (true, true) => std::cmp::Ordering::Equal,
                            (true, false) => std::cmp::Ordering::Greater,
                            (false, true) => std::cmp::Ordering::Less,
                            _ if matches!(op, AggOp::Topk(_)) => b.0.total_cmp(&a.0),
                            _ => a.0.total_cmp(&b.0),
                        };
                        o.then(a.1.cmp(&b.1))
                    });
                    for &(v, i) in vals.iter().take(k) {
                        picked[i].push((t, v));
                    }
                }
                for (s, points) in members.iter().zip(picked) {
                    out.push(Series {
                        key: s.key.clone(),
                        points,
                    });
                }
            }
            _ => {
                let mut points = Vec::with_capacity(steps.len());
                for (t, vals) in steps {
                    if let Some(v) = combine(op, vals.iter().map(|x| x.0)) {
                        points.push((t, v));
                    }
                }
                out.push(Series { key: gkey, points });
            }
        }
    }
    normalise(out)
}

/// One step of a mergeable or percentile aggregation.
fn combine(op: AggOp, vals: impl Iterator<Item = f64> + Clone) -> Option<f64> {
    let n = vals.clone().count();
    if n == 0 {
        return None;
    }
    Some(match op {
        AggOp::Sum => vals.sum(),
        AggOp::Avg => vals.sum::<f64>() / n as f64,
        AggOp::Min => vals.reduce(f64::min)?,
        AggOp::Max => vals.reduce(f64::max)?,
        AggOp::Count => n as f64,
        AggOp::Percentile(q) => {
            let mut v: Vec<f64> = vals.filter(|x| !x.is_nan()).collect();
            if v.is_empty() {
                return None;
            }
            v.sort_by(f64::total_cmp);
            let rank = q / 100.0 * (v.len() - 1) as f64;
            let lo = rank.floor() as usize;
            let hi = rank.ceil() as usize;
            v[lo] + (v[hi] - v[lo]) * (rank - lo as f64)
        }
        AggOp::Topk(_) | AggOp::Bottomk(_) => return None,
    })
}

/// Pairs of a binary operation between two series sets: `(left index,
/// right index, result key)`, following the join rules of this module.
pub fn join(a: &[Series], b: &[Series]) -> Vec<(usize, usize, SeriesKey)> {
    let single = |x: &[Series]| x.len() == 1 && x[0].key.source.is_none();
    if single(a) && single(b) {
        return vec![(0, 0, a[0].key.clone())];
    }
    if single(b) {
        return (0..a.len()).map(|i| (i, 0, a[i].key.clone())).collect();
    }
    if single(a) {
        return (0..b.len()).map(|j| (0, j, b[j].key.clone())).collect();
    }
    let mut by_source: BTreeMap<Option<&str>, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
    for (i, s) in a.iter().enumerate() {
        by_source
            .entry(s.key.source.as_deref())
            .or_default()
            .0
            .push(i);
    }
    for (j, s) in b.iter().enumerate() {
        by_source
            .entry(s.key.source.as_deref())
            .or_default()
            .1
            .push(j);
    }
    let mut pairs = Vec::new();
    for (_, (la, lb)) in by_source {
        match (la.len(), lb.len()) {
            (0, _) | (_, 0) => {}
            (1, 1) => pairs.push((la[0], lb[0], a[la[0]].key.clone())),
            (1, _) => pairs.extend(lb.iter().map(|&j| (la[0], j, b[j].key.clone()))),
            (_, 1) => pairs.extend(la.iter().map(|&i| (i, lb[0], a[i].key.clone()))),
            _ => {
                for &i in &la {
                    if let Some(&j) = lb.iter().find(|&&j| b[j].key == a[i].key) {
                        pairs.push((i, j, a[i].key.clone()));
                    }
                }
            }
        }
    }
    pairs
}

/// Points at the steps both lists have, combined by `f` (which may drop one).
fn zip_points(
    a: &[(i64, f64)],
    b: &[(i64, f64)],
    mut f: impl FnMut(f64, f64) -> Option<f64>,
) -> Vec<(i64, f64)> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                if let Some(v) = f(a[i].1, b[j].1) {
                    out.push((a[i].0, v));
                }
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// `A op B` for two series sets.
pub fn arith_series(op: ArithOp, a: &[Series], b: &[Series]) -> Vec<Series> {
    let out = join(a, b)
        .into_iter()
        .map(|(i, j, key)| Series {
            key,
            points: zip_points(&a[i].points, &b[j].points, |x, y| Some(op.apply(x, y))),
        })
        .collect();
    normalise(out)
}

/// `A op c` (or `c op A` when `scalar_left`).
pub fn arith_scalar(op: ArithOp, a: &[Series], c: f64, scalar_left: bool) -> Vec<Series> {
    a.iter()
        .map(|s| Series {
            key: s.key.clone(),
            points: s
                .points
                .iter()
                .map(|&(t, v)| {
                    (
                        t,
                        if scalar_left {
                            op.apply(c, v)
                        } else {
                            op.apply(v, c)
                        },
                    )
                })
                .collect(),
        })
        .collect()
}

/// `A op B` as a filter: the left operand's points where it holds.
pub fn cmp_series(op: CmpOp, a: &[Series], b: &[Series]) -> Vec<Series> {
    let out = join(a, b)
        .into_iter()
        .map(|(i, j, key)| Series {
            key,
            points: zip_points(&a[i].points, &b[j].points, |x, y| {
                op.holds(x, y).then_some(x)
            }),
        })
        .collect();
    normalise(out)
}

/// `A op c` (or `c op A` when `scalar_left`) as a filter on `A`'s points.
pub fn cmp_scalar(op: CmpOp, a: &[Series], c: f64, scalar_left: bool) -> Vec<Series> {
    let out = a
        .iter()
        .map(|s| Series {
            key: s.key.clone(),
            points: s
                .points
                .iter()
                .copied()
                .filter(|&(_, v)| {
                    if scalar_left {
                        op.holds(c, v)
                    } else {
                        op.holds(v, c)
                    }
                })
                .collect(),
        })
        .collect();
    normalise(out)
}

/// Functions between each point and the point one step earlier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Delta {
    /// Per-second increase; a decrease is a counter reset (the counter restarted from 0).
    Rate,
    /// Increase; a decrease is a counter reset.
    Increase,
    /// Per-second change, negative when the value falls.
    Derivative,
}

impl Delta {
    /// Its name in the language.
    pub fn name(self) -> &'static str {
        match self {
            Delta::Rate => "rate",
            Delta::Increase => "increase",
            Delta::Derivative => "derivative",
        }
    }

    /// How far before a point the function reads (ms): the step before it.
    pub fn lookback(self, step: i64) -> i64 {
        step
    }
}

/// How far before a point a moving window of `window` ms reads (ms): the
/// earliest step inside `(t - window, t]`.
pub fn moving_lookback(window: i64, step: i64) -> i64 {
    (window - 1).max(0) / step * step
}

/// A function of each series' step values alone, which storage can compute
/// per series before aggregating: a [`Delta`] or a moving window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OverTime {
    /// `rate`, `increase` or `derivative`.
    Delta(Delta),
    /// `moving(x, window, agg)`.
    Moving {
        /// Width of the trailing window (ms, > 0).
        window: i64,
        /// How the window's values combine.
        agg: WindowAgg,
    },
}

impl OverTime {
    /// Its text in plans and cache keys: `rate`, `moving(1h,avg)`.
    pub fn describe(self) -> String {
        match self {
            OverTime::Delta(d) => d.name().to_string(),
            OverTime::Moving { window, agg } => {
                format!(
                    "moving({},{})",
                    crate::printer::duration(window),
                    agg.name()
                )
            }
        }
    }

    /// How far before a point the function reads (ms), a whole number of steps.
    pub fn lookback(self, step: i64) -> i64 {
        match self {
            OverTime::Delta(d) => d.lookback(step),
            OverTime::Moving { window, .. } => moving_lookback(window, step),
        }
    }

    /// The function over every series, at the points of `out`.
    pub fn apply(self, input: &[Series], out: Range) -> Vec<Series> {
        match self {
            OverTime::Delta(d) => delta(input, d, out),
            OverTime::Moving { window, agg } => moving(input, window, agg, out),
        }
    }

    /// The function over one series' points, at the points of `out`, appended to `into`.
    pub fn apply_points(self, points: &[(i64, f64)], out: Range, into: &mut Vec<(i64, f64)>) {
        match self {
            OverTime::Delta(d) => delta_points(points, d, out, into),
            OverTime::Moving { window, agg } => moving_points(points, window, agg, out, into),
        }
    }
}

/// Applies a [`Delta`] function; output points are those of `out` whose
/// previous step (`t - step`) also has a point.
pub fn delta(input: &[Series], f: Delta, out: Range) -> Vec<Series> {
    let res = input
        .iter()
        .map(|s| {
            let mut points = Vec::new();
            delta_points(&s.points, f, out, &mut points);
            Series {
                key: s.key.clone(),
                points,
            }
        })
        .collect();
    normalise(res)
}

/// [`delta`] of one series' points, appended to `into`.
pub fn delta_points(points: &[(i64, f64)], f: Delta, out: Range, into: &mut Vec<(i64, f64)>) {
    let secs = out.step as f64 / 1000.0;
    let on_grid = |t: i64| (t as i128 - out.start as i128).rem_euclid(out.step as i128) == 0;
    // A point one step after a point on the grid is on it too: the division
    // runs only after a gap.
    let mut prev_on = points.first().is_some_and(|p| on_grid(p.0));
    into.reserve(points.len().saturating_sub(1));
    for w in points.windows(2) {
        let ((tp, vp), (t, v)) = (w[0], w[1]);
        let next = t.wrapping_sub(tp) == out.step && t > tp;
        let on = if next { prev_on } else { on_grid(t) };
        prev_on = on;
        if !next || !on || t < out.start || t >= out.end {
            continue;
        }
        let d = v - vp;
        let val = match f {
            Delta::Rate => (if d < 0.0 { v } else { d }) / secs,
            Delta::Increase => {
                if d < 0.0 {
                    v
                } else {
                    d
                }
            }
            Delta::Derivative => d / secs,
        };
        into.push((t, val));
    }
}

/// Running sum of value x step seconds, from the start of the range.
pub fn integral(input: &[Series], out: Range) -> Vec<Series> {
    let secs = out.step as f64 / 1000.0;
    input
        .iter()
        .map(|s| {
            let mut acc = 0.0;
            Series {
                key: s.key.clone(),
                points: s
                    .points
                    .iter()
                    .filter(|p| out.contains(p.0))
                    .map(|&(t, v)| {
                        acc += v * secs;
                        (t, acc)
                    })
                    .collect(),
            }
        })
        .collect()
}

/// For every step `t` of `out` whose window `(t - window, t]` holds points,
/// the aggregate of those points.
pub fn moving(input: &[Series], window: i64, agg: WindowAgg, out: Range) -> Vec<Series> {
    let res = input
        .iter()
        .map(|s| {
            let mut points = Vec::new();
            moving_points(&s.points, window, agg, out, &mut points);
            Series {
                key: s.key.clone(),
                points,
            }
        })
        .collect();
    normalise(res)
}

/// [`moving`] of one series' points `p`, appended to `into`.
pub fn moving_points(
    p: &[(i64, f64)],
    window: i64,
    agg: WindowAgg,
    out: Range,
    into: &mut Vec<(i64, f64)>,
) {
    let (mut lo, mut hi) = (0usize, 0usize);
    let (mut sum, mut count) = (0.0f64, 0usize);
    // Monotonic deques of indices for the window's min and max.
    let mut mins: VecDeque<usize> = VecDeque::new();
    let mut maxs: VecDeque<usize> = VecDeque::new();
    for t in out.times() {
        while hi < p.len() && p[hi].0 <= t {
            let v = p[hi].1;
            sum += v;
            count += 1;
            while mins
                .back()
                .is_some_and(|&i| p[i].1.partial_cmp(&v) != Some(std::cmp::Ordering::Less))
            {
                mins.pop_back();
            }
            mins.push_back(hi);
            while maxs
                .back()
                .is_some_and(|&i| p[i].1.partial_cmp(&v) != Some(std::cmp::Ordering::Greater))
            {
                maxs.pop_back();
            }
            maxs.push_back(hi);
            hi += 1;
        }
        while lo < hi && p[lo].0 <= t - window {
            sum -= p[lo].1;
            count -= 1;
            if mins.front() == Some(&lo) {
                mins.pop_front();
            }
            if maxs.front() == Some(&lo) {
                maxs.pop_front();
            }
            lo += 1;
        }
        if count == 0 {
            // Restart the running sum so that rounding never lingers.
            sum = 0.0;
            continue;
        }
        let v = match agg {
            WindowAgg::Sum => sum,
            WindowAgg::Avg => sum / count as f64,
            WindowAgg::Count => count as f64,
            WindowAgg::Min => mins.front().map_or(f64::NAN, |&i| p[i].1),
            WindowAgg::Max => maxs.front().map_or(f64::NAN, |&i| p[i].1),
        };
        into.push((t, v));
    }
}

/// Every step of `out` a series lacks gets `value`.
pub fn fill(input: &[Series], value: f64, out: Range) -> Vec<Series> {
    input
        .iter()
        .map(|s| {
            let mut points = Vec::with_capacity(out.points().max(0) as usize);
            let mut i = 0;
            for t in out.times() {
                while i < s.points.len() && s.points[i].0 < t {
                    i += 1;
                }
                match s.points.get(i) {
                    Some(&(pt, v)) if pt == t => points.push((t, v)),
                    _ => points.push((t, value)),
                }
            }
            Series {
                key: s.key.clone(),
                points,
            }
        })
        .collect()
}

/// Every step of `out` where no series has a point gets `value`, in the
/// key-less series (added when absent).
pub fn default(input: &[Series], value: f64, out: Range) -> Vec<Series> {
    let covered: std::collections::BTreeSet<i64> = input
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    let missing: Vec<(i64, f64)> = out
        .times()
        .filter(|t| !covered.contains(t))
        .map(|t| (t, value))
        .collect();
    let mut res = input.to_vec();
    if missing.is_empty() {
        return res;
    }
    let empty = SeriesKey::default();
    match res.iter_mut().find(|s| s.key == empty) {
        Some(s) => {
            s.points.extend(missing);
            s.points.sort_by_key(|p| p.0);
        }
        None => res.push(Series {
            key: empty,
            points: missing,
        }),
    }
    normalise(res)
}

/// Sets the metric part from a template (`{service}`, `{source}` and
/// `{metric}` expand to the series' parts, empty when removed).
pub fn alias(input: &[Series], template: &str) -> Vec<Series> {
    let res = input
        .iter()
        .map(|s| {
            let part = |p: &Option<String>| p.clone().unwrap_or_default();
            let name = template
                .replace("{service}", &part(&s.key.service))
                .replace("{source}", &part(&s.key.source))
                .replace("{metric}", &part(&s.key.metric));
            Series {
                key: SeriesKey {
                    metric: Some(name),
                    ..s.key.clone()
                },
                points: s.points.clone(),
            }
        })
        .collect();
    normalise(res)
}

/// Keeps the points inside `out` and drops emptied series.
pub fn trim(input: Vec<Series>, out: Range) -> Vec<Series> {
    let res = input
        .into_iter()
        .map(|mut s| {
            s.points.retain(|p| out.contains(p.0));
            s
        })
        .collect();
    normalise(res)
}
