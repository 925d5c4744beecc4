//! Fragment execution next to the data: select, per-step aggregation, an
//! optional function of time, and aggregation across series into mergeable
//! partials, run in time slices so that a deadline or a sample limit stops the
//! work between slices and memory stays bounded.
//!
//! ```text
//!  select (union of matchers) --count--> max_series?   groups x steps --> max_points?
//!     |
//!     |  one matcher, no function of time:           otherwise:
//!     |    backend.aggregate(group_by) per slice       backend.aggregate(per series) per slice,
//!     |    (the engine folds across series)            reading `pre` ms before the slice
//!     |  one matcher, a delta or moving function,        -> rate/increase/derivative/integral/moving
//!     |  a backend that runs it per series:              -> fold across series (Partial::of)
//!     |    backend.aggregate_each(group_by, function)
//!     |    per slice, reading `pre` ms before it
//!     v
//!  slices [s, e) in time order; after each:
//!    samples touched --> max_samples?  deadline passed? --> stop and say so
//!     v
//!  groups in key order, points ascending
//! ```
//!
//! The functions of time are the query language's own (`query_lang::ops`), so a
//! fragment computed here equals the same expression evaluated by the federator.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use query_lang::Range;
use query_lang::lexer::MAX_DURATION_MS;
use query_lang::ops;
use tokio::time::Instant;
use tsdb::{Fragment, FragmentResult, KeyPart, Partial, Selector, SeriesKey, StepAgg};

use crate::backend::Backend;
use crate::error::RequestError;

/// A function of time applied to each series' step values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OverTime {
    /// A function of each series' step values alone (rate, increase, derivative,
    /// a moving window): the query language's own.
    PerSeries(ops::OverTime),
    /// Running sum of value x step seconds from the range start.
    Integral,
}

impl OverTime {
    /// How much data before the first step the function needs (whole steps).
    fn lookback(self, step: i64) -> i64 {
        match self {
            OverTime::PerSeries(f) => f.lookback(step),
            OverTime::Integral => 0,
        }
    }
}

/// A per-series function a backend may run as it reads (see
/// [`Backend::aggregate_each`]), on the grid of one slice.
struct SliceFn {
    f: ops::OverTime,
    slice: Range,
}

impl tsdb::SeriesFn for SliceFn {
    fn apply(&self, points: &[(i64, f64)], out: &mut Vec<(i64, f64)>) {
        self.f.apply_points(points, self.slice, out)
    }
}

/// A fragment as the service runs it (the domain form of `ExecuteFragmentRequest`).
#[derive(Debug, Clone)]
pub struct FragmentSpec {
    /// Series selected: the union of these.
    pub selectors: Vec<Selector>,
    /// First step end (ms).
    pub start: i64,
    /// Step ends lie strictly before this (ms).
    pub end: i64,
    /// Step width (ms, > 0).
    pub step: i64,
    /// Per-series value of a step.
    pub per_step: StepAgg,
    /// Optional function of time.
    pub over_time: Option<OverTime>,
    /// `Some(by)`: combine series into groups by these parts (empty: one group);
    /// `None`: every series is its own group.
    pub combine: Option<Vec<KeyPart>>,
    /// Most series the fragment may touch.
    pub max_series: u64,
    /// Most samples (or rollup cells) it may read.
    pub max_samples: u64,
    /// Most groups x steps it may answer with.
    pub max_points: u64,
    /// When the work must stop.
    pub deadline: Option<Instant>,
    /// Series x steps one slice reads; `None`: 50 M where the backend combines
    /// series into groups itself, 4 M where every series comes back (one by
    /// one, or each its own group after a function of time).
    pub slice_cells: Option<u64>,
}

/// The answer: partials per group per step, and what it cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    /// Groups in key order (parts not grouped by are empty), points ascending.
    pub groups: Vec<(SeriesKey, Vec<(i64, Partial)>)>,
    /// Series read.
    pub series: u64,
    /// Samples or rollup cells read.
    pub samples: u64,
    /// 0 for raw samples, else the rollup width read (ms).
    pub resolution_ms: i64,
}

/// Series-steps one slice computes when the engine folds across series.
const FOLDED_SLICE_CELLS: u64 = 50_000_000;
/// Series-steps one slice materialises when series are kept apart.
const PER_SERIES_SLICE_CELLS: u64 = 4_000_000;
/// The engine's own bound on steps per fragment.
const MAX_STEPS: i64 = 10_000_000;

const ALL_PARTS: [KeyPart; 3] = [KeyPart::Service, KeyPart::Source, KeyPart::Metric];

/// Runs `spec` against `backend`.
pub async fn execute(backend: &dyn Backend, spec: FragmentSpec) -> Result<Answer, RequestError> {
    let began = Instant::now();
    if spec.step <= 0 {
        return Err(RequestError::invalid(
            "step_ms",
            format!("must be positive, got {}", spec.step),
        ));
    }
    if spec.selectors.is_empty() {
        return Err(RequestError::invalid(
            "matchers",
            "at least one is required",
        ));
    }
    if let Some(OverTime::PerSeries(ops::OverTime::Moving { window, .. })) = spec.over_time
        && !(1..=MAX_DURATION_MS).contains(&window)
    {
        return Err(RequestError::invalid(
            "over_time.window_ms",
            format!("must be positive and at most {MAX_DURATION_MS} (100 years), got {window}"),
        ));
    }
    let range = Range::new(spec.start, spec.end, spec.step);
    let steps = range.points();
    if steps == 0 {
        return Ok(Answer::default());
    }
    if steps > MAX_STEPS {
        return Err(RequestError::invalid(
            "range",
            format!(
                "{steps} steps of {} ms; at most {MAX_STEPS} per fragment: widen the step or narrow the range",
                spec.step
            ),
        ));
    }
    let pre = spec.over_time.map_or(0, |f| f.lookback(spec.step));

    // Select first: the series limit is checked before any sample is read.
    let lo = spec
        .start
        .checked_sub(pre)
        .and_then(|t| t.checked_sub(spec.step - 1))
        .ok_or_else(|| {
            RequestError::invalid(
                "range",
                format!(
                    "start_ms {} leaves no room for the {} ms read before it",
                    spec.start,
                    pre.saturating_add(spec.step - 1)
                ),
            )
        })?;
    let mut keys = BTreeSet::new();
    for sel in &spec.selectors {
        let found = within(
            spec.deadline,
            began,
            "selecting series",
            backend.select(sel.clone(), lo, spec.end),
        )
        .await??;
        keys.extend(found);
    }
    let series = keys.len() as u64;
    if series > spec.max_series {
        return Err(RequestError::Limit {
            what: "series selected",
            found: series,
            limit: spec.max_series,
            key: "max_series",
            hint: "narrow the matchers (service, source or metric) or the time range",
        });
    }
    if series == 0 {
        return Ok(Answer::default());
    }
    let groups = match &spec.combine {
        None => series,
        Some(by) => keys
            .iter()
            .map(|k| project(k, by))
            .collect::<BTreeSet<_>>()
            .len() as u64,
    };
    let points = groups.saturating_mul(steps as u64);
    if points > spec.max_points {
        return Err(RequestError::Limit {
            what: "points answered (groups x steps)",
            found: points,
            limit: spec.max_points,
            key: "max_points",
            hint: "aggregate across series, group by fewer parts, or widen the step",
        });
    }

    let folded = spec.selectors.len() == 1 && spec.over_time.is_none();
    let per_series_fn = match spec.over_time {
        Some(OverTime::PerSeries(f)) if spec.selectors.len() == 1 => Some(f),
        _ => None,
    };
    // Until the backend says it cannot run the function per series.
    let mut fused = per_series_fn.is_some();

    let mut answer = Answer {
        series,
        ..Answer::default()
    };
    let mut out: BTreeMap<SeriesKey, Vec<(i64, Partial)>> = BTreeMap::new();
    let mut carry: BTreeMap<SeriesKey, f64> = BTreeMap::new();
    let mut done = 0i64;
    while done < steps {
        // A function run per series with every series its own group holds as
        // many cells as reading them one by one: the same budget.
        let budget = spec
            .slice_cells
            .unwrap_or(if folded || (fused && spec.combine.is_some()) {
                FOLDED_SLICE_CELLS
            } else {
                PER_SERIES_SLICE_CELLS
            });
        let slice_steps = (budget / series).clamp(1, steps as u64) as i64;
        let s = spec.start + done * spec.step;
        let e = s
            .saturating_add(slice_steps.saturating_mul(spec.step))
            .min(spec.end);
        let progress = || format!("stopped after {done} of {steps} steps of {} series", series);
        if spec.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(RequestError::Deadline {
                elapsed_ms: began.elapsed().as_millis() as u64,
                progress: progress(),
            });
        }
        let by = spec.combine.as_deref().unwrap_or(&ALL_PARTS);
        let grouped = |start| Fragment {
            selector: spec.selectors[0].clone(),
            start,
            end: e,
            step: spec.step,
            per_step: spec.per_step,
            group_by: by.to_vec(),
        };
        let result = if folded {
            Some(backend.aggregate(grouped(s)))
        } else if let Some(f) = per_series_fn.filter(|_| fused) {
            let each = Arc::new(SliceFn {
                f,
                slice: Range::new(s, e, spec.step),
            });
            match backend.aggregate_each(grouped(s - pre), each) {
                Some(r) => Some(r),
                None => {
                    // This backend reads series one by one: the slice again, that way.
                    fused = false;
                    continue;
                }
            }
        } else {
            None
        };
        if let Some(r) = result {
            let r = within(spec.deadline, began, &progress(), r).await??;
            note_cost(&mut answer, &r);
            for g in r.groups {
                out.entry(key_of(by, &g.key)).or_default().extend(g.points);
            }
        } else {
            let per_series =
                per_series_slice(backend, &spec, s - pre, e, &mut answer, began, &progress())
                    .await?;
            let f = spec.over_time;
            let slice = Range::new(s, e, spec.step);
            let values = match f {
                None => ops::trim(per_series, slice),
                Some(OverTime::PerSeries(f)) => f.apply(&per_series, slice),
                Some(OverTime::Integral) => {
                    let mut v = ops::integral(&per_series, slice);
                    for series in &mut v {
                        let key = full_key(&series.key);
                        let base = carry.get(&key).copied().unwrap_or(0.0);
                        for p in &mut series.points {
                            p.1 += base;
                        }
                        if let Some(last) = series.points.last() {
                            carry.insert(key, last.1);
                        }
                    }
                    v
                }
            };
            fold(&mut out, values, spec.combine.as_deref(), slice);
        }
        if answer.samples > spec.max_samples {
            return Err(RequestError::Limit {
                what: "samples read",
                found: answer.samples,
                limit: spec.max_samples,
                key: "max_samples",
                hint: "narrow the matchers or the range, or use a step of 5m or 1h so rollups serve it",
            });
        }
        done += Range::new(s, e, spec.step).points();
    }
    answer.groups = out.into_iter().filter(|(_, p)| !p.is_empty()).collect();
    Ok(answer)
}

/// Awaits `f` until the deadline; past it, says how far the work got.
async fn within<T>(
    deadline: Option<Instant>,
    began: Instant,
    progress: &str,
    f: impl std::future::Future<Output = T>,
) -> Result<T, RequestError> {
    match deadline {
        None => Ok(f.await),
        Some(d) => tokio::time::timeout_at(d, f)
            .await
            .map_err(|_| RequestError::Deadline {
                elapsed_ms: began.elapsed().as_millis() as u64,
                progress: progress.to_string(),
            }),
    }
}

fn note_cost(answer: &mut Answer, r: &FragmentResult) {
    answer.samples += r.samples;
    if let Some(w) = r.rollup_ms {
        answer.resolution_ms = answer.resolution_ms.max(w);
    }
}

/// Step values of every selected series over `[t0, t1)`, one series each,
/// deduplicated across matchers.
async fn per_series_slice(
    backend: &dyn Backend,
    spec: &FragmentSpec,
    t0: i64,
    t1: i64,
    answer: &mut Answer,
    began: Instant,
    progress: &str,
) -> Result<Vec<query_lang::Series>, RequestError> {
    // `t0` is on the step grid: the lookback is a whole number of steps.
    let mut seen: BTreeMap<SeriesKey, Vec<(i64, f64)>> = BTreeMap::new();
    for sel in &spec.selectors {
        let f = Fragment {
            selector: sel.clone(),
            start: t0,
            end: t1,
            step: spec.step,
            per_step: spec.per_step,
            group_by: ALL_PARTS.to_vec(),
        };
        let r = within(spec.deadline, began, progress, backend.aggregate(f)).await??;
        note_cost(answer, &r);
        for g in r.groups {
            let key = key_of(&ALL_PARTS, &g.key);
            seen.entry(key)
                .or_insert_with(|| g.points.iter().map(|(t, p)| (*t, p.sum)).collect());
        }
    }
    Ok(seen
        .into_iter()
        .map(|(k, points)| query_lang::Series {
            key: query_lang::SeriesKey::new(&k.service, &k.source, &k.metric),
            points,
        })
        .collect())
}

/// Folds per-series values on the grid of `slice` into groups (or keeps them apart).
/// A group's cells are a dense row of the slice's steps while it is folded.
fn fold(
    out: &mut BTreeMap<SeriesKey, Vec<(i64, Partial)>>,
    values: Vec<query_lang::Series>,
    combine: Option<&[KeyPart]>,
    slice: Range,
) {
    match combine {
        None => {
            for s in values {
                out.entry(full_key(&s.key))
                    .or_default()
                    .extend(s.points.iter().map(|&(t, v)| (t, Partial::of(v, t))));
            }
        }
        Some(by) => {
            let steps = slice.points() as usize;
            let mut rows: BTreeMap<SeriesKey, Vec<Partial>> = BTreeMap::new();
            for s in values {
                let row = rows
                    .entry(project(&full_key(&s.key), by))
                    .or_insert_with(|| vec![Partial::EMPTY; steps]);
                for &(t, v) in &s.points {
                    let at = t - slice.start;
                    if at >= 0 && at % slice.step == 0 && ((at / slice.step) as usize) < steps {
                        row[(at / slice.step) as usize].merge(&Partial::of(v, t));
                    }
                }
            }
            for (k, row) in rows {
                let times = slice.times();
                out.entry(k)
                    .or_default()
                    .extend(times.zip(row).filter(|(_, p)| p.count > 0));
            }
        }
    }
}

/// The group key of `key` keeping only `by` (the other parts empty).
fn project(key: &SeriesKey, by: &[KeyPart]) -> SeriesKey {
    let keep = |p: KeyPart| {
        if by.contains(&p) {
            key.part(p).to_string()
        } else {
            String::new()
        }
    };
    SeriesKey::new(
        keep(KeyPart::Service),
        keep(KeyPart::Source),
        keep(KeyPart::Metric),
    )
}

/// A group key from the engine's values of the `by` parts, in that order.
fn key_of(by: &[KeyPart], values: &[String]) -> SeriesKey {
    let mut k = SeriesKey::new("", "", "");
    for (p, v) in by.iter().zip(values) {
        let slot = match p {
            KeyPart::Service => &mut k.service,
            KeyPart::Source => &mut k.source,
            KeyPart::Metric => &mut k.metric,
        };
        slot.clone_from(v);
    }
    k
}

fn full_key(k: &query_lang::SeriesKey) -> SeriesKey {
    let part = |p: &Option<String>| p.clone().unwrap_or_default();
    SeriesKey::new(part(&k.service), part(&k.source), part(&k.metric))
}
