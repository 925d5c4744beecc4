//! The in-memory evaluator of plans, and the data-source trait it reads through.
//!
//! Step semantics: a range `(start, end, step)` has points at
//! `t = start + k * step` for every `t < end`. A selection yields, per
//! series, one point per step that has data: by default the last raw sample
//! in `(t - step, t]` (`downsample` picks another aggregator). Nothing is
//! carried forward from older steps, and series without any point are
//! absent from the result.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

use regex::Regex;
use thiserror::Error;

use crate::ast::{CmpOp, KeyPart, Pattern};
use crate::functions::{AggOp, StepAgg};
use crate::ops::{self, OverTime};
use crate::plan::{Fragment, Node, NodeId, Plan, PlanError, shifted};
use crate::series::{Matcher, Range, RawSeries, Selector, Series, Value};

/// Most points one evaluation step may produce per series.
pub const MAX_POINTS: i64 = 11_000_000;

/// A failure reported by a data source.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// Errors of evaluation, one variant per cause.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EvalError {
    /// The data source failed.
    #[error("data source failed: {0}")]
    Source(#[from] SourceError),
    /// A step that is not positive.
    #[error("step must be positive, got {0} ms")]
    BadStep(i64),
    /// A range with too many points.
    #[error(
        "{points} points per series requested; at most {MAX_POINTS}: use a larger step or a shorter range"
    )]
    TooManyPoints {
        /// Points the range holds.
        points: i64,
    },
    /// Planning failed.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A stored pattern that does not compile (only for hand-built plans).
    #[error("invalid pattern {pattern}: {reason}")]
    BadPattern {
        /// The pattern text.
        pattern: String,
        /// Why.
        reason: String,
    },
}

/// A fragment ready to run: compiled matchers (roles resolved), the grid
/// in the data's own time (already moved back by the fragment's offset),
/// the per-step aggregator, a per-series filter and an optional mergeable
/// aggregation.
#[derive(Debug, Clone)]
pub struct FragmentRequest {
    /// Which series.
    pub selector: Selector,
    /// The grid.
    pub range: Range,
    /// How raw samples inside a step become one point.
    pub per_step: StepAgg,
    /// A function of each series' step values (read from before the grid as far
    /// as it needs).
    pub over_time: Option<OverTime>,
    /// Keep per-series points where `value op constant` holds.
    pub filter: Option<(CmpOp, f64)>,
    /// Aggregate across series by these parts (result keys keep only them).
    pub aggregate: Option<(AggOp, Vec<KeyPart>)>,
}

/// Where an evaluation reads data. Synchronous on purpose: the federator
/// implements it over storage fragments, a test over memory.
pub trait DataSource {
    /// Raw samples with timestamps in `[start, end)` of every series that
    /// matches `selector` and has samples there, ascending by time.
    fn select(
        &self,
        selector: &Selector,
        start: i64,
        end: i64,
    ) -> Result<Vec<RawSeries>, SourceError>;

    /// The sources that are members of `role` (`members(role.NAME)` asks for `NAME`).
    fn role_members(&self, role: &str) -> Result<Vec<String>, SourceError>;

    /// Computes a fragment. The default reads [`DataSource::select`] and
    /// computes in memory ([`run_fragment`]); storage-backed sources ship it.
    fn fragment(&self, req: &FragmentRequest) -> Result<Vec<Series>, SourceError> {
        run_fragment(self, req)
    }
}

/// Computes a fragment in memory from raw samples.
pub fn run_fragment<S: DataSource + ?Sized>(
    source: &S,
    req: &FragmentRequest,
) -> Result<Vec<Series>, SourceError> {
    let r = req.range;
    if r.points() == 0 {
        return Ok(Vec::new());
    }
    // An over-time function reads the step before the grid too.
    let read = match req.over_time {
        None => r,
        Some(d) => Range::new(r.start.saturating_sub(d.lookback(r.step)), r.end, r.step),
    };
    // Samples in (start - step, last] feed the grid.
    let raw = source.select(
        &req.selector,
        read.start.saturating_sub(r.step - 1),
        r.last().saturating_add(1),
    )?;
    let mut set: Vec<Series> = raw
        .into_iter()
        .filter(|s| req.selector.matches(&s.key))
        .map(|s| Series {
            points: ops::step_fold(&s.samples, read, req.per_step),
            key: s.key,
        })
        .collect();
    if let Some(f) = req.over_time {
        set = f.apply(&set, r);
    }
    if let Some((op, c)) = req.filter {
        set = ops::cmp_scalar(op, &set, c, false);
    }
    set = ops::normalise(set);
    if let Some((op, by)) = &req.aggregate {
        set = ops::aggregate(&set, *op, by);
    }
    Ok(set)
}

/// Evaluates plans against a data source.
pub struct Evaluator<'a, S: ?Sized> {
    source: &'a S,
    plan: &'a Plan,
    memo: RefCell<HashMap<(NodeId, Range), Value>>,
    roles: RefCell<HashMap<String, BTreeSet<String>>>,
}

impl<S: ?Sized> std::fmt::Debug for Evaluator<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator")
            .field("plan", self.plan)
            .finish_non_exhaustive()
    }
}

/// Evaluates `plan` over `range`.
pub fn eval<S: DataSource + ?Sized>(
    plan: &Plan,
    source: &S,
    range: Range,
) -> Result<Value, EvalError> {
    Evaluator::new(plan, source).run(range)
}

impl<'a, S: DataSource + ?Sized> Evaluator<'a, S> {
    /// An evaluator; results of shared nodes are computed once per range.
    pub fn new(plan: &'a Plan, source: &'a S) -> Self {
        Evaluator {
            source,
            plan,
            memo: RefCell::new(HashMap::new()),
            roles: RefCell::new(HashMap::new()),
        }
    }

    /// Evaluates the plan's root over `range`.
    pub fn run(&self, range: Range) -> Result<Value, EvalError> {
        if range.step <= 0 {
            return Err(EvalError::BadStep(range.step));
        }
        let points = range.points();
        if points > MAX_POINTS {
            return Err(EvalError::TooManyPoints { points });
        }
        self.node(self.plan.root, range)
    }

    fn series(&self, id: NodeId, r: Range) -> Result<Vec<Series>, EvalError> {
        match self.node(id, r)? {
            Value::Series(s) => Ok(s),
            Value::Scalar(_) => Err(PlanError::Unchecked(format!("node #{id} is a scalar")).into()),
        }
    }

    fn node(&self, id: NodeId, r: Range) -> Result<Value, EvalError> {
        if let Some(v) = self.memo.borrow().get(&(id, r)) {
            return Ok(v.clone());
        }
        let node = self
            .plan
            .nodes
            .get(id)
            .ok_or_else(|| EvalError::Plan(PlanError::Unchecked(format!("no node #{id}"))))?;
        let input = |i: usize| -> Result<Vec<Series>, EvalError> {
            self.series(node.inputs()[i], node.input_range(r)?)
        };
        let v = match node {
            Node::Scalar(v) => Value::Scalar(*v),
            Node::Fragment(f) => Value::Series(self.fragment(f, r)?),
            Node::Aggregate { op, by, .. } => Value::Series(ops::aggregate(&input(0)?, *op, by)),
            Node::Delta { func, .. } => Value::Series(ops::delta(&input(0)?, *func, r)),
            Node::Integral { .. } => Value::Series(ops::integral(&input(0)?, r)),
            Node::Moving { window, agg, .. } => {
                Value::Series(ops::moving(&input(0)?, *window, *agg, r))
            }
            Node::Shift { offset, .. } => {
                let mut set = input(0)?;
                for s in &mut set {
                    for p in &mut s.points {
                        p.0 += offset;
                    }
                }
                Value::Series(set)
            }
            Node::Fill { value, .. } => Value::Series(ops::fill(&input(0)?, *value, r)),
            Node::Default { value, .. } => Value::Series(ops::default(&input(0)?, *value, r)),
            Node::Alias { template, .. } => Value::Series(ops::alias(&input(0)?, template)),
            Node::Neg { input: i } => match self.node(*i, r)? {
                Value::Scalar(v) => Value::Scalar(-v),
                // Multiplying by -1 is exact negation (signs of zeros included).
                Value::Series(set) => Value::Series(ops::arith_scalar(
                    crate::ast::ArithOp::Mul,
                    &set,
                    -1.0,
                    true,
                )),
            },
            Node::Arith { op, lhs, rhs } => match (self.node(*lhs, r)?, self.node(*rhs, r)?) {
                (Value::Scalar(a), Value::Scalar(b)) => Value::Scalar(op.apply(a, b)),
                (Value::Series(a), Value::Scalar(b)) => {
                    Value::Series(ops::arith_scalar(*op, &a, b, false))
                }
                (Value::Scalar(a), Value::Series(b)) => {
                    Value::Series(ops::arith_scalar(*op, &b, a, true))
                }
                (Value::Series(a), Value::Series(b)) => {
                    Value::Series(ops::arith_series(*op, &a, &b))
                }
            },
            Node::Filter { op, lhs, rhs } => match (self.node(*lhs, r)?, self.node(*rhs, r)?) {
                (Value::Scalar(_), Value::Scalar(_)) => {
                    return Err(PlanError::Unchecked("comparison of two scalars".into()).into());
                }
                (Value::Series(a), Value::Scalar(b)) => {
                    Value::Series(ops::cmp_scalar(*op, &a, b, false))
                }
                (Value::Scalar(a), Value::Series(b)) => {
                    Value::Series(ops::cmp_scalar(*op, &b, a, true))
                }
                (Value::Series(a), Value::Series(b)) => Value::Series(ops::cmp_series(*op, &a, &b)),
            },
        };
        self.memo.borrow_mut().insert((id, r), v.clone());
        Ok(v)
    }

    fn fragment(&self, f: &Fragment, out: Range) -> Result<Vec<Series>, EvalError> {
        if out.points() > MAX_POINTS {
            return Err(EvalError::TooManyPoints {
                points: out.points(),
            });
        }
        let req = FragmentRequest {
            selector: Selector {
                service: self.matcher(&f.service)?,
                source: self.matcher(&f.source)?,
                metric: self.matcher(&f.metric)?,
            },
            range: shifted(out, f.offset)?,
            per_step: f.per_step,
            over_time: f.over_time,
            filter: f.filter,
            aggregate: f.aggregate.clone(),
        };
        let mut set = self.source.fragment(&req)?;
        if f.offset != 0 {
            for s in &mut set {
                for p in &mut s.points {
                    p.0 += f.offset;
                }
            }
        }
        // Guard against sources that return points off the grid.
        Ok(ops::trim(set, out))
    }

    /// Compiles a pattern, resolving roles through the data source (once per role).
    pub fn matcher(&self, p: &Pattern) -> Result<Matcher, EvalError> {
        Ok(match p {
            Pattern::Any => Matcher::Any,
            Pattern::Literal(l) => Matcher::Literal(l.clone()),
            Pattern::Glob(g) => Matcher::Glob(
                g.clone(),
                crate::lexer::compile_glob(g).map_err(|reason| EvalError::BadPattern {
                    pattern: g.clone(),
                    reason,
                })?,
            ),
            Pattern::Regex(re) => Matcher::Regex(
                re.clone(),
                Regex::new(&format!("^(?:{re})$")).map_err(|e| EvalError::BadPattern {
                    pattern: format!("/{re}/"),
                    reason: e.to_string(),
                })?,
            ),
            Pattern::Members(role) => {
                if let Some(m) = self.roles.borrow().get(role) {
                    return Ok(Matcher::OneOf(m.clone()));
                }
                let m: BTreeSet<String> = self.source.role_members(role)?.into_iter().collect();
                self.roles.borrow_mut().insert(role.clone(), m.clone());
                Matcher::OneOf(m)
            }
        })
    }
}

/// An in-memory data source: stored series and role memberships.
#[derive(Debug, Clone, Default)]
pub struct MemorySource {
    /// The stored series (samples ascending).
    pub series: Vec<RawSeries>,
    /// Role name -> member sources.
    pub roles: HashMap<String, Vec<String>>,
}

impl DataSource for MemorySource {
    fn select(
        &self,
        selector: &Selector,
        start: i64,
        end: i64,
    ) -> Result<Vec<RawSeries>, SourceError> {
        Ok(self
            .series
            .iter()
            .filter(|s| selector.matches(&s.key))
            .map(|s| RawSeries {
                key: s.key.clone(),
                samples: s
                    .samples
                    .iter()
                    .copied()
                    .filter(|&(t, _)| t >= start && t < end)
                    .collect(),
            })
            .filter(|s| !s.samples.is_empty())
            .collect())
    }

    fn role_members(&self, role: &str) -> Result<Vec<String>, SourceError> {
        Ok(self.roles.get(role).cloned().unwrap_or_default())
    }
}
