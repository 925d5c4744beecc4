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
        let n = (self.end - self.start - 1) / self.step + 1;
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
    pub fn merge(&mut self, o: &Partial) {
        if o.count == 0 {
            return;
        }
        self.count += o.count;
        self.sum += o.sum;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        if self.count == o.count
            || o.last_ts > self.last_ts
            || (o.last_ts == self.last_ts && o.last.to_bits() > self.last.to_bits())
        {
            self.last = o.last;
            self.last_ts = o.last_ts;
        }
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

/// Folds one series' time-ordered samples or rollup buckets into per-step
/// values without materialising them.
#[derive(Debug)]
pub(crate) struct StepFold {
    start: i64,
    step: i64,
    n: i64,
    agg: StepAgg,
    cur: i64,
    cell: Cell,
    /// `(k, value, ts)` per step with data.
    pub out: Vec<(u32, f64, i64)>,
}

impl StepFold {
    pub fn new(start: i64, step: i64, n: usize, agg: StepAgg) -> Self {
        Self {
            start,
            step,
            n: n as i64,
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
            out: Vec::new(),
        }
    }

    /// Samples outside `(lo, hi]` contribute nothing.
    pub fn bounds(&self) -> (i64, i64) {
        (
            self.start - self.step,
            self.start + (self.n - 1) * self.step,
        )
    }

    pub fn reset(&mut self) {
        self.cur = -1;
        self.out.clear();
    }

    /// The step whose window `(t - step, t]` holds `ts`. Input comes in time
    /// order, so the answer is usually the current step or the next one; the
    /// division runs only after a gap.
    #[inline]
    fn index(&self, ts: i64) -> i64 {
        if self.cur >= 0 {
            let end = self.start + self.cur * self.step;
            if ts <= end && ts > end - self.step {
                return self.cur;
            }
            if ts > end && ts <= end + self.step {
                return self.cur + 1;
            }
        }
        (ts - self.start + self.step - 1).div_euclid(self.step)
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

    pub fn flush(&mut self) {
        if self.cur < 0 {
            return;
        }
        let c = self.cell;
        let v = match self.agg {
            StepAgg::Last => c.last,
            StepAgg::Sum => c.sum,
            StepAgg::Avg => c.sum / c.count,
            StepAgg::Min => c.min,
            StepAgg::Max => c.max,
            StepAgg::Count => c.count,
        };
        self.out.push((self.cur as u32, v, c.last_ts));
        self.cur = -1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_take_the_last_sample_in_the_half_open_window() {
        let mut f = StepFold::new(100, 10, 3, StepAgg::Last);
        for (t, v) in [
            (90, 0.0),
            (91, 1.0),
            (100, 2.0),
            (105, 3.0),
            (125, 5.0),
            (130, 6.0),
        ] {
            f.raw(t, v);
        }
        f.flush();
        // t=100 covers (90,100]; t=110 covers (100,110]; t=120 has no data
        // (nothing carried forward); 125 and 130 belong to t=130 (outside).
        assert_eq!(f.out, vec![(0, 2.0, 100), (1, 3.0, 105)]);
        let mut f = StepFold::new(100, 10, 4, StepAgg::Count);
        for t in [95, 100, 101, 125, 130] {
            f.raw(t, 1.0);
        }
        f.flush();
        assert_eq!(
            f.out.iter().map(|x| (x.0, x.1)).collect::<Vec<_>>(),
            vec![(0, 2.0), (1, 1.0), (3, 2.0)]
        );
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
