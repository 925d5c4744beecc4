//! The plan: a DAG of operators with shared common subexpressions, whose leaves are fragments
//! (select + per-step aggregator + optional filter, offset and mergeable aggregation) that
//! can be pushed down to storage.
//!
//! ```text
//!   Expr (checked, rewritten) --lower--> tree --fuse fragments--> intern (CSE) --> Plan
//! ```
//!
//! A fragment absorbs, from the inside out: `downsample` (the per-step
//! aggregator), `timeshift` (an offset), `rate`, `increase` or `derivative` (an
//! over-time function, computed per series from one step before the range), a
//! comparison with a constant (a per-series filter), and a mergeable aggregation
//! across series (`sum`, `avg`, `min`, `max`, `count`, with `by`). Everything above
//! the fragments runs in the evaluator.

use std::collections::HashMap;
use std::fmt::Write;

use thiserror::Error;

use crate::ast::{ArithOp, CmpOp, Expr, ExprKind, KeyPart, Pattern};
use crate::check::const_value;
use crate::functions::{AggOp, Func, StepAgg, WindowAgg};
use crate::ops::{self, Delta, OverTime};
use crate::printer;
use crate::series::Range;

/// Index of a node in [`Plan::nodes`].
pub type NodeId = usize;

/// A pushdown-able subtree: what storage computes next to the data.
#[derive(Debug, Clone, PartialEq)]
pub struct Fragment {
    /// `ts(service, sources, metrics)` patterns (roles unresolved).
    pub service: Pattern,
    /// Sources pattern.
    pub source: Pattern,
    /// Metrics pattern.
    pub metric: Pattern,
    /// How raw samples inside a step become one point per series.
    pub per_step: StepAgg,
    /// Shift into the past (ms): the fragment reads `[start - offset,
    /// end - offset)` and its points are shown `offset` later.
    pub offset: i64,
    /// A function of each series' step values (a delta, or a moving window), which
    /// the fragment reads from before its range (`OverTime::lookback`).
    pub over_time: Option<OverTime>,
    /// Keep only per-series points where `value op constant` holds
    /// (after the over-time function, before any aggregation).
    pub filter: Option<(CmpOp, f64)>,
    /// A mergeable aggregation across series and its `by` parts.
    pub aggregate: Option<(AggOp, Vec<KeyPart>)>,
}

impl Fragment {
    /// A plain selection with the default per-step aggregator.
    fn select(service: Pattern, source: Pattern, metric: Pattern, per_step: StepAgg) -> Self {
        Fragment {
            service,
            source,
            metric,
            per_step,
            offset: 0,
            over_time: None,
            filter: None,
            aggregate: None,
        }
    }

    /// Normalised text (usable as cache key material together with the range).
    pub fn describe(&self) -> String {
        let mut s = format!(
            "ts({}, {}, {}) step={}",
            printer::pattern(&self.service),
            printer::pattern(&self.source),
            printer::pattern(&self.metric),
            self.per_step.name()
        );
        if self.offset != 0 {
            let _ = write!(s, " offset={}", printer::duration(self.offset));
        }
        if let Some(d) = self.over_time {
            let _ = write!(s, " over_time={}", d.describe());
        }
        if let Some((op, c)) = self.filter {
            let _ = write!(s, " filter={}{}", op.symbol(), printer::number(c));
        }
        if let Some((op, by)) = &self.aggregate {
            let _ = write!(s, " aggregate={}", op.describe());
            if !by.is_empty() {
                let parts: Vec<&str> = by.iter().map(|p| p.name()).collect();
                let _ = write!(s, " by ({})", parts.join(", "));
            }
        }
        s
    }
}

/// One operator of the plan.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A constant.
    Scalar(f64),
    /// A leaf that storage can compute.
    Fragment(Fragment),
    /// Aggregation across series in the evaluator.
    Aggregate {
        /// The aggregation.
        op: AggOp,
        /// Group-by parts.
        by: Vec<KeyPart>,
        /// Its input.
        input: NodeId,
    },
    /// rate, increase or derivative (needs one step before the range).
    Delta {
        /// Which function.
        func: Delta,
        /// Its input.
        input: NodeId,
    },
    /// Running sum from the start of the range.
    Integral {
        /// Its input.
        input: NodeId,
    },
    /// Moving-window aggregate (needs `window` before the range).
    Moving {
        /// Window length (ms).
        window: i64,
        /// Aggregator.
        agg: WindowAgg,
        /// Its input.
        input: NodeId,
    },
    /// timeshift that was not absorbed by a fragment.
    Shift {
        /// Shift into the past (ms).
        offset: i64,
        /// Its input.
        input: NodeId,
    },
    /// fill(x, value).
    Fill {
        /// The value.
        value: f64,
        /// Its input.
        input: NodeId,
    },
    /// default(x, value).
    Default {
        /// The value.
        value: f64,
        /// Its input.
        input: NodeId,
    },
    /// alias(x, template).
    Alias {
        /// The template.
        template: String,
        /// Its input.
        input: NodeId,
    },
    /// `-x`.
    Neg {
        /// Its input.
        input: NodeId,
    },
    /// Arithmetic.
    Arith {
        /// The operator.
        op: ArithOp,
        /// Left operand.
        lhs: NodeId,
        /// Right operand.
        rhs: NodeId,
    },
    /// A comparison evaluated as a filter.
    Filter {
        /// The operator.
        op: CmpOp,
        /// Left operand.
        lhs: NodeId,
        /// Right operand.
        rhs: NodeId,
    },
}

impl Node {
    /// The nodes this one reads.
    pub fn inputs(&self) -> Vec<NodeId> {
        match self {
            Node::Scalar(_) | Node::Fragment(_) => vec![],
            Node::Aggregate { input, .. }
            | Node::Delta { input, .. }
            | Node::Integral { input }
            | Node::Moving { input, .. }
            | Node::Shift { input, .. }
            | Node::Fill { input, .. }
            | Node::Default { input, .. }
            | Node::Alias { input, .. }
            | Node::Neg { input } => vec![*input],
            Node::Arith { lhs, rhs, .. } | Node::Filter { lhs, rhs, .. } => vec![*lhs, *rhs],
        }
    }

    /// The range each input must be evaluated over for this node's output
    /// over `out` (the lookback of rate and moving windows, the shift of timeshift).
    pub fn input_range(&self, out: Range) -> Result<Range, PlanError> {
        let back = |by: i64| -> Result<Range, PlanError> {
            let start = out.start.checked_sub(by).ok_or(PlanError::RangeOverflow)?;
            Ok(Range::new(start, out.end, out.step))
        };
        match self {
            Node::Delta { func, .. } => back(func.lookback(out.step)),
            Node::Moving { window, .. } => back(ops::moving_lookback(*window, out.step)),
            Node::Shift { offset, .. } => shifted(out, *offset),
            _ => Ok(out),
        }
    }
}

/// `out` moved `offset` into the past.
pub fn shifted(out: Range, offset: i64) -> Result<Range, PlanError> {
    match (out.start.checked_sub(offset), out.end.checked_sub(offset)) {
        (Some(s), Some(e)) => Ok(Range::new(s, e, out.step)),
        _ => Err(PlanError::RangeOverflow),
    }
}

/// Errors of planning, one variant per cause.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlanError {
    /// The tree was not type checked (a bug of the caller, reported rather than panicking).
    #[error("cannot plan an unchecked query: {0}")]
    Unchecked(String),
    /// Shifting the range moved it outside representable time.
    #[error("time range overflows after shifting it for timeshift or a lookback")]
    RangeOverflow,
}

/// Planner options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanOptions {
    /// Fuse timeshift, filters and mergeable aggregations into fragments.
    /// Without it fragments only select (with their per-step aggregator).
    pub pushdown: bool,
    /// With `pushdown`, fuse `rate`, `increase`, `derivative` and `moving` too. A
    /// fragment then reads before its range: off where the data is split by time
    /// (storage tiers), since what it reads may lie in another part.
    pub over_time: bool,
}

impl PlanOptions {
    /// Fragments that only select.
    pub const PLAIN: PlanOptions = PlanOptions {
        pushdown: false,
        over_time: false,
    };
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            pushdown: true,
            over_time: true,
        }
    }
}

/// An executable plan: nodes in dependency order (inputs before users),
/// each distinct subexpression once.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The operators; a node only refers to earlier ones.
    pub nodes: Vec<Node>,
    /// The result.
    pub root: NodeId,
    /// How many times lowering met a subexpression already planned.
    pub shared: usize,
}

/// A tree before interning.
#[derive(Debug, Clone)]
enum T {
    Leaf(Node),
    Frag(Fragment),
    One(Node, Box<T>),
    Two(Node, Box<T>, Box<T>),
}

/// Plans a checked (and usually rewritten) query.
pub fn plan(e: &Expr, opts: PlanOptions) -> Result<Plan, PlanError> {
    let t = lower(e, opts)?;
    let mut p = Plan {
        nodes: Vec::new(),
        root: 0,
        shared: 0,
    };
    let mut seen: HashMap<String, NodeId> = HashMap::new();
    p.root = intern(&t, &mut p, &mut seen);
    Ok(p)
}

fn intern(t: &T, p: &mut Plan, seen: &mut HashMap<String, NodeId>) -> NodeId {
    let node = match t {
        T::Leaf(n) => n.clone(),
        T::Frag(f) => Node::Fragment(f.clone()),
        T::One(n, a) => {
            let a = intern(a, p, seen);
            with_inputs(n, a, 0)
        }
        T::Two(n, a, b) => {
            let a = intern(a, p, seen);
            let b = intern(b, p, seen);
            with_inputs(n, a, b)
        }
    };
    // Inputs are already interned, so the node's text identifies the whole subtree.
    let key = format!("{node:?}");
    if let Some(&id) = seen.get(&key) {
        p.shared += 1;
        return id;
    }
    p.nodes.push(node);
    let id = p.nodes.len() - 1;
    seen.insert(key, id);
    id
}

fn with_inputs(n: &Node, a: NodeId, b: NodeId) -> Node {
    let mut n = n.clone();
    match &mut n {
        Node::Scalar(_) | Node::Fragment(_) => {}
        Node::Aggregate { input, .. }
        | Node::Delta { input, .. }
        | Node::Integral { input }
        | Node::Moving { input, .. }
        | Node::Shift { input, .. }
        | Node::Fill { input, .. }
        | Node::Default { input, .. }
        | Node::Alias { input, .. }
        | Node::Neg { input } => *input = a,
        Node::Arith { lhs, rhs, .. } | Node::Filter { lhs, rhs, .. } => {
            *lhs = a;
            *rhs = b;
        }
    }
    n
}

fn unchecked(e: &Expr) -> PlanError {
    PlanError::Unchecked(printer::print(e))
}

fn const_arg(e: &Expr) -> Result<f64, PlanError> {
    const_value(e).ok_or_else(|| unchecked(e))
}

fn duration_arg(e: &Expr) -> Result<i64, PlanError> {
    match e.kind {
        ExprKind::Duration(d) => Ok(d),
        _ => Err(unchecked(e)),
    }
}

fn name_arg(e: &Expr) -> Result<&str, PlanError> {
    match &e.kind {
        ExprKind::Name(n) => Ok(n),
        _ => Err(unchecked(e)),
    }
}

/// `f` fused into `input` when it is a fragment that only selects (and the
/// options allow it); otherwise its node over `input`.
fn over_time(input: T, f: OverTime, opts: PlanOptions) -> T {
    match input {
        T::Frag(mut frag)
            if opts.pushdown
                && opts.over_time
                && frag.over_time.is_none()
                && frag.filter.is_none()
                && frag.aggregate.is_none() =>
        {
            frag.over_time = Some(f);
            T::Frag(frag)
        }
        input => {
            let node = match f {
                OverTime::Delta(func) => Node::Delta { func, input: 0 },
                OverTime::Moving { window, agg } => Node::Moving {
                    window,
                    agg,
                    input: 0,
                },
            };
            one(node, input)
        }
    }
}

fn one(n: Node, input: T) -> T {
    T::One(n, Box::new(input))
}

fn lower(e: &Expr, opts: PlanOptions) -> Result<T, PlanError> {
    if let Some(v) = const_value(e) {
        return Ok(T::Leaf(Node::Scalar(v)));
    }
    match &e.kind {
        ExprKind::Select(s) => Ok(T::Frag(Fragment::select(
            s.service.0.clone(),
            s.source.0.clone(),
            s.metric.0.clone(),
            StepAgg::Last,
        ))),
        ExprKind::Neg(x) => Ok(one(Node::Neg { input: 0 }, lower(x, opts)?)),
        ExprKind::Arith(op, a, b) => Ok(T::Two(
            Node::Arith {
                op: *op,
                lhs: 0,
                rhs: 0,
            },
            Box::new(lower(a, opts)?),
            Box::new(lower(b, opts)?),
        )),
        ExprKind::Cmp(op, a, b) => lower_cmp(*op, a, b, opts),
        ExprKind::Call { name, args, by, .. } => {
            let func = Func::from_name(name).ok_or_else(|| unchecked(e))?;
            let by: Vec<KeyPart> = by
                .as_ref()
                .map(|v| v.iter().map(|(p, _)| *p).collect())
                .unwrap_or_default();
            let arg = |i: usize| args.get(i).ok_or_else(|| unchecked(e));
            let agg = |op: AggOp| -> Result<T, PlanError> {
                let input = lower(arg(0)?, opts)?;
                match input {
                    T::Frag(mut f)
                        if opts.pushdown && op.is_mergeable() && f.aggregate.is_none() =>
                    {
                        f.aggregate = Some((op, by.clone()));
                        Ok(T::Frag(f))
                    }
                    input => Ok(one(
                        Node::Aggregate {
                            op,
                            by: by.clone(),
                            input: 0,
                        },
                        input,
                    )),
                }
            };
            match func {
                Func::Sum => agg(AggOp::Sum),
                Func::Avg => agg(AggOp::Avg),
                Func::Min => agg(AggOp::Min),
                Func::Max => agg(AggOp::Max),
                Func::Count => agg(AggOp::Count),
                Func::Percentile => agg(AggOp::Percentile(const_arg(arg(1)?)?)),
                Func::Topk => agg(AggOp::Topk(const_arg(arg(1)?)? as usize)),
                Func::Bottomk => agg(AggOp::Bottomk(const_arg(arg(1)?)? as usize)),
                Func::Rate | Func::Increase | Func::Derivative => {
                    let d = match func {
                        Func::Rate => Delta::Rate,
                        Func::Increase => Delta::Increase,
                        _ => Delta::Derivative,
                    };
                    Ok(over_time(lower(arg(0)?, opts)?, OverTime::Delta(d), opts))
                }
                Func::Integral => Ok(one(Node::Integral { input: 0 }, lower(arg(0)?, opts)?)),
                Func::Moving => {
                    let window = duration_arg(arg(1)?)?;
                    let agg =
                        WindowAgg::from_name(name_arg(arg(2)?)?).ok_or_else(|| unchecked(e))?;
                    let f = OverTime::Moving { window, agg };
                    Ok(over_time(lower(arg(0)?, opts)?, f, opts))
                }
                Func::Downsample => {
                    let per_step =
                        StepAgg::from_name(name_arg(arg(1)?)?).ok_or_else(|| unchecked(e))?;
                    match &arg(0)?.kind {
                        ExprKind::Select(s) => Ok(T::Frag(Fragment::select(
                            s.service.0.clone(),
                            s.source.0.clone(),
                            s.metric.0.clone(),
                            per_step,
                        ))),
                        _ => Err(unchecked(e)),
                    }
                }
                Func::Timeshift => {
                    let d = duration_arg(arg(1)?)?;
                    match lower(arg(0)?, opts)? {
                        T::Frag(mut f) if opts.pushdown => {
                            f.offset = f.offset.checked_add(d).ok_or(PlanError::RangeOverflow)?;
                            Ok(T::Frag(f))
                        }
                        input => Ok(one(
                            Node::Shift {
                                offset: d,
                                input: 0,
                            },
                            input,
                        )),
                    }
                }
                Func::Fill => Ok(one(
                    Node::Fill {
                        value: const_arg(arg(1)?)?,
                        input: 0,
                    },
                    lower(arg(0)?, opts)?,
                )),
                Func::Default => Ok(one(
                    Node::Default {
                        value: const_arg(arg(1)?)?,
                        input: 0,
                    },
                    lower(arg(0)?, opts)?,
                )),
                Func::Alias => {
                    let template = match &arg(1)?.kind {
                        ExprKind::Str(s) => s.clone(),
                        _ => return Err(unchecked(e)),
                    };
                    Ok(one(
                        Node::Alias { template, input: 0 },
                        lower(arg(0)?, opts)?,
                    ))
                }
                Func::Filter => match &arg(0)?.kind {
                    ExprKind::Cmp(op, a, b) => lower_cmp(*op, a, b, opts),
                    _ => Err(unchecked(e)),
                },
            }
        }
        ExprKind::Number(_) | ExprKind::Duration(_) | ExprKind::Str(_) | ExprKind::Name(_) => {
            Err(unchecked(e))
        }
    }
}

fn lower_cmp(op: CmpOp, a: &Expr, b: &Expr, opts: PlanOptions) -> Result<T, PlanError> {
    let (op, series, c) = match (const_value(a), const_value(b)) {
        (None, Some(c)) => (op, a, Some(c)),
        (Some(c), None) => (op.flip(), b, Some(c)),
        _ => (op, a, None),
    };
    if let Some(c) = c {
        let input = lower(series, opts)?;
        return Ok(match input {
            T::Frag(mut f) if opts.pushdown && f.filter.is_none() && f.aggregate.is_none() => {
                f.filter = Some((op, c));
                T::Frag(f)
            }
            input => T::Two(
                Node::Filter { op, lhs: 0, rhs: 0 },
                Box::new(input),
                Box::new(T::Leaf(Node::Scalar(c))),
            ),
        });
    }
    Ok(T::Two(
        Node::Filter { op, lhs: 0, rhs: 0 },
        Box::new(lower(a, opts)?),
        Box::new(lower(b, opts)?),
    ))
}

impl Plan {
    /// The fragments of the plan, with the node that holds each.
    pub fn fragments(&self) -> Vec<(NodeId, &Fragment)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| match n {
                Node::Fragment(f) => Some((i, f)),
                _ => None,
            })
            .collect()
    }

    /// Every fragment with each range it must be computed over for a
    /// query over `out` (a shared fragment may be needed over several
    /// ranges, e.g. `rate(x) / x`). Ranges are in the fragment's own time,
    /// i.e. already moved back by its offset.
    pub fn fragment_ranges(&self, out: Range) -> Result<Vec<(NodeId, Range)>, PlanError> {
        let mut need: Vec<Vec<Range>> = vec![Vec::new(); self.nodes.len()];
        need[self.root].push(out);
        // Users come after their inputs, so walk backwards.
        for id in (0..self.nodes.len()).rev() {
            let ranges = std::mem::take(&mut need[id]);
            let node = &self.nodes[id];
            for r in &ranges {
                let ir = node.input_range(*r)?;
                for i in node.inputs() {
                    if !need[i].contains(&ir) {
                        need[i].push(ir);
                    }
                }
            }
            need[id] = ranges;
        }
        let mut out_list = Vec::new();
        for (id, f) in self.fragments() {
            for r in &need[id] {
                out_list.push((id, shifted(*r, f.offset)?));
            }
        }
        Ok(out_list)
    }

    /// Whether a point's value depends on where the range starts
    /// (`integral`); such plans cannot be split into cached time spans.
    pub fn range_dependent(&self) -> bool {
        self.nodes
            .iter()
            .any(|n| matches!(n, Node::Integral { .. }))
    }

    /// A readable listing: one node per line, fragments marked.
    pub fn explain(&self) -> String {
        let mut s = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let root = if i == self.root { " (root)" } else { "" };
            let line = match n {
                Node::Scalar(v) => format!("scalar {}", printer::number(*v)),
                Node::Fragment(f) => format!("fragment {}", f.describe()),
                Node::Aggregate { op, by, input } => {
                    let parts: Vec<&str> = by.iter().map(|p| p.name()).collect();
                    if parts.is_empty() {
                        format!("aggregate {} #{input}", op.describe())
                    } else {
                        format!(
                            "aggregate {} by ({}) #{input}",
                            op.describe(),
                            parts.join(", ")
                        )
                    }
                }
                Node::Delta { func, input } => {
                    format!("{} #{input}", format!("{func:?}").to_lowercase())
                }
                Node::Integral { input } => format!("integral #{input}"),
                Node::Moving { window, agg, input } => format!(
                    "moving {} {} #{input}",
                    printer::duration(*window),
                    agg.name()
                ),
                Node::Shift { offset, input } => {
                    format!("timeshift {} #{input}", printer::duration(*offset))
                }
                Node::Fill { value, input } => format!("fill {} #{input}", printer::number(*value)),
                Node::Default { value, input } => {
                    format!("default {} #{input}", printer::number(*value))
                }
                Node::Alias { template, input } => {
                    format!("alias {} #{input}", printer::quote(template))
                }
                Node::Neg { input } => format!("neg #{input}"),
                Node::Arith { op, lhs, rhs } => format!("#{lhs} {} #{rhs}", op.symbol()),
                Node::Filter { op, lhs, rhs } => format!("filter #{lhs} {} #{rhs}", op.symbol()),
            };
            let _ = writeln!(s, "#{i} {line}{root}");
        }
        s
    }
}
