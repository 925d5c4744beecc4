//! Multi-pass term rewriting of checked queries: constant folding, identities, canonical
//! comparisons and `by` lists, timeshift push-down; plus common-subexpression detection.
//!
//! Every rule preserves results exactly (bit for bit on finite data): no
//! reassociation of floating-point arithmetic, and folding only when the
//! result is finite. Passes run bottom-up until nothing changes.

use std::collections::HashMap;

use crate::ast::{ArithOp, Expr, ExprKind};
use crate::check::const_value;
use crate::functions::Func;

/// Most passes before the rewriter stops (each pass is bottom-up over the whole tree).
pub const MAX_PASSES: usize = 16;

/// The result of rewriting.
#[derive(Debug, Clone, PartialEq)]
pub struct Rewritten {
    /// The rewritten query.
    pub expr: Expr,
    /// Names of the rules that fired, in order.
    pub applied: Vec<&'static str>,
    /// Passes run (the last one changed nothing, unless [`MAX_PASSES`] was reached).
    pub passes: usize,
}

/// Rewrites a type-checked query to a fixpoint.
pub fn rewrite(e: &Expr) -> Rewritten {
    let mut cur = e.clone();
    let mut applied = Vec::new();
    let mut passes = 0;
    while passes < MAX_PASSES {
        passes += 1;
        let before = applied.len();
        cur = pass(&cur, &mut applied);
        if applied.len() == before {
            break;
        }
    }
    Rewritten {
        expr: cur,
        applied,
        passes,
    }
}

fn is_num(e: &Expr, v: f64) -> bool {
    e.as_number() == Some(v)
}

/// One bottom-up pass.
fn pass(e: &Expr, log: &mut Vec<&'static str>) -> Expr {
    let kind = match &e.kind {
        ExprKind::Neg(x) => ExprKind::Neg(Box::new(pass(x, log))),
        ExprKind::Arith(op, a, b) => {
            ExprKind::Arith(*op, Box::new(pass(a, log)), Box::new(pass(b, log)))
        }
        ExprKind::Cmp(op, a, b) => {
            ExprKind::Cmp(*op, Box::new(pass(a, log)), Box::new(pass(b, log)))
        }
        ExprKind::Call {
            name,
            name_span,
            args,
            by,
        } => ExprKind::Call {
            name: name.clone(),
            name_span: *name_span,
            args: args.iter().map(|a| pass(a, log)).collect(),
            by: by.clone(),
        },
        k => k.clone(),
    };
    let node = Expr::new(kind, e.span);
    rules(node, log)
}

/// Applies the first matching rule at the root of `e`.
fn rules(e: Expr, log: &mut Vec<&'static str>) -> Expr {
    let span = e.span;
    match e.kind {
        ExprKind::Neg(x) => match x.kind {
            ExprKind::Number(n) => {
                log.push("fold-constants");
                Expr::new(ExprKind::Number(-n), span)
            }
            ExprKind::Neg(inner) => {
                log.push("double-negation");
                *inner
            }
            k => Expr::new(ExprKind::Neg(Box::new(Expr::new(k, x.span))), span),
        },
        ExprKind::Arith(op, a, b) => {
            if let (Some(x), Some(y)) = (a.as_number(), b.as_number()) {
                let v = op.apply(x, y);
                if v.is_finite() {
                    log.push("fold-constants");
                    return Expr::new(ExprKind::Number(v), span);
                }
            }
            // Which operand an identity keeps: `x + 0`, `0 + x`, `x - 0`, `x * 1`, `1 * x`, `x / 1`.
            let keep_left = match op {
                ArithOp::Add if is_num(&b, 0.0) => Some(true),
                ArithOp::Add if is_num(&a, 0.0) => Some(false),
                ArithOp::Sub if is_num(&b, 0.0) => Some(true),
                ArithOp::Mul if is_num(&b, 1.0) => Some(true),
                ArithOp::Mul if is_num(&a, 1.0) => Some(false),
                ArithOp::Div if is_num(&b, 1.0) => Some(true),
                _ => None,
            };
            match keep_left {
                Some(true) => {
                    log.push("identity");
                    *a
                }
                Some(false) => {
                    log.push("identity");
                    *b
                }
                None => Expr::new(ExprKind::Arith(op, a, b), span),
            }
        }
        ExprKind::Cmp(op, a, b) => {
            if const_value(&a).is_some() && const_value(&b).is_none() {
                log.push("flip-comparison");
                return Expr::new(ExprKind::Cmp(op.flip(), b, a), span);
            }
            Expr::new(ExprKind::Cmp(op, a, b), span)
        }
        ExprKind::Call {
            name,
            name_span,
            args,
            by,
        } => {
            if let Some(by) = &by
                && by.windows(2).any(|w| w[0].0 > w[1].0)
            {
                let mut sorted = by.clone();
                sorted.sort_by_key(|p| p.0);
                log.push("canonical-by");
                return Expr::new(
                    ExprKind::Call {
                        name,
                        name_span,
                        args,
                        by: Some(sorted),
                    },
                    span,
                );
            }
            if name == "timeshift"
                && let [x, d] = args.as_slice()
                && let ExprKind::Duration(d) = d.kind
                && let Some(pushed) = push_shift(x, d, log)
            {
                return pushed;
            }
            Expr::new(
                ExprKind::Call {
                    name,
                    name_span,
                    args,
                    by,
                },
                span,
            )
        }
        k => Expr::new(k, span),
    }
}

fn shift(x: &Expr, d: i64) -> Expr {
    if const_value(x).is_some() {
        return x.clone();
    }
    Expr::synthetic(ExprKind::Call {
        name: "timeshift".into(),
        name_span: Default::default(),
        args: vec![x.clone(), Expr::synthetic(ExprKind::Duration(d))],
        by: None,
    })
}

/// `timeshift(x, d)` moved inside `x`, towards the selections (where
/// fragments absorb it), or merged with an inner timeshift.
fn push_shift(x: &Expr, d: i64, log: &mut Vec<&'static str>) -> Option<Expr> {
    let kind = match &x.kind {
        ExprKind::Neg(a) => ExprKind::Neg(Box::new(shift(a, d))),
        ExprKind::Arith(op, a, b) => {
            ExprKind::Arith(*op, Box::new(shift(a, d)), Box::new(shift(b, d)))
        }
        ExprKind::Call {
            name,
            name_span,
            args,
            by,
        } => {
            let func = Func::from_name(name)?;
            match func {
                Func::Timeshift => {
                    let ExprKind::Duration(d2) = args.get(1)?.kind else {
                        return None;
                    };
                    log.push("timeshift-merge");
                    let total = d.checked_add(d2)?;
                    return Some(shift(args.first()?, total));
                }
                Func::Downsample => return None,
                Func::Filter => {
                    let ExprKind::Cmp(op, a, b) = &args.first()?.kind else {
                        return None;
                    };
                    let cmp = Expr::synthetic(ExprKind::Cmp(
                        *op,
                        Box::new(shift(a, d)),
                        Box::new(shift(b, d)),
                    ));
                    ExprKind::Call {
                        name: name.clone(),
                        name_span: *name_span,
                        args: vec![cmp],
                        by: by.clone(),
                    }
                }
                _ => {
                    let mut new_args = args.clone();
                    new_args[0] = shift(args.first()?, d);
                    ExprKind::Call {
                        name: name.clone(),
                        name_span: *name_span,
                        args: new_args,
                        by: by.clone(),
                    }
                }
            }
        }
        _ => return None,
    };
    log.push("timeshift-pushdown");
    Some(Expr::new(kind, x.span))
}

/// Subexpressions (larger than a literal) that occur more than once, with
/// their counts, largest first. The planner shares them; this is for explain.
pub fn common_subexpressions(e: &Expr) -> Vec<(Expr, usize)> {
    fn walk<'a>(e: &'a Expr, counts: &mut HashMap<&'a Expr, usize>, order: &mut Vec<&'a Expr>) {
        let interesting = matches!(
            e.kind,
            ExprKind::Select(_)
                | ExprKind::Call { .. }
                | ExprKind::Arith(..)
                | ExprKind::Neg(_)
                | ExprKind::Cmp(..)
        ) && const_value(e).is_none();
        if interesting {
            let c = counts.entry(e).or_insert(0);
            if *c == 0 {
                order.push(e);
            }
            *c += 1;
        }
        for c in e.children() {
            walk(c, counts, order);
        }
    }
    let mut counts = HashMap::new();
    let mut order = Vec::new();
    walk(e, &mut counts, &mut order);
    let mut out: Vec<(Expr, usize)> = order
        .into_iter()
        .filter(|x| counts[x] > 1)
        .map(|x| (x.clone(), counts[x]))
        .collect();
    out.sort_by_key(|(x, _)| std::cmp::Reverse(x.size()));
    out
}
