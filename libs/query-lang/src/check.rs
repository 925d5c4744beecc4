//! The type checker: series set vs scalar vs predicate, and every function's argument rules.

use std::fmt;

use thiserror::Error;

use crate::ast::{Expr, ExprKind, KeyPart, Pattern};
use crate::functions::{self, Func, StepAgg, WindowAgg};
use crate::span::{Located, Span};

/// The type of an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Type {
    /// A set of series (what `ts()` and functions of series produce).
    Series,
    /// A constant number.
    Scalar,
    /// A comparison: evaluated as a query it keeps the points where it
    /// holds; alerts use it directly; `filter()` turns it into a series set.
    Predicate,
    /// A duration literal (`5m`), only as an argument.
    Duration,
    /// A bare name (`avg`), only as an argument.
    Name,
    /// A quoted string, only as an argument.
    Str,
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Type::Series => "a series set",
            Type::Scalar => "a scalar",
            Type::Predicate => "a predicate",
            Type::Duration => "a duration",
            Type::Name => "a name",
            Type::Str => "a string",
        })
    }
}

const FILTER_HINT: &str = "; wrap the comparison in filter() to use the series it keeps";

/// Type errors, one variant per cause.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum TypeErrorKind {
    /// A call of a function that does not exist.
    #[error("unknown function `{name}`{}", hint.as_ref().map(|h| format!("; did you mean `{h}`?")).unwrap_or_default())]
    UnknownFunction {
        /// The name called.
        name: String,
        /// The closest function name.
        hint: Option<&'static str>,
    },
    /// A bare name where a value is expected.
    #[error("unknown name `{name}`{hint}")]
    UnknownName {
        /// The name.
        name: String,
        /// What to do instead.
        hint: String,
    },
    /// Wrong number of arguments.
    #[error("{func}() takes {expected} argument{s} {sig}, found {found}", s = if *.expected == 1 { "" } else { "s" })]
    Arity {
        /// The function.
        func: &'static str,
        /// How many it takes.
        expected: usize,
        /// Its signature.
        sig: &'static str,
        /// How many were given.
        found: usize,
    },
    /// An argument of the wrong type.
    #[error("argument {pos} of {func}() must be {expected}, found {found}{hint}")]
    ArgType {
        /// The function.
        func: &'static str,
        /// 1-based argument position.
        pos: usize,
        /// What it takes.
        expected: &'static str,
        /// What it got.
        found: Type,
        /// What to do instead.
        hint: &'static str,
    },
    /// An operand of the wrong type.
    #[error("operand of `{op}` must be a series set or a scalar, found {found}{hint}")]
    OperandType {
        /// The operator.
        op: &'static str,
        /// What it got.
        found: Type,
        /// What to do instead.
        hint: &'static str,
    },
    /// A comparison of two scalars.
    #[error(
        "`{op}` compares two scalars; a comparison filters series, so one side must be a series set"
    )]
    ScalarComparison {
        /// The operator.
        op: &'static str,
    },
    /// A whole query of an argument-only type.
    #[error("a query must produce a series set, a scalar or a predicate, found {found}")]
    NotAQuery {
        /// What it produced.
        found: Type,
    },
    /// An aggregator name not in the allowed list.
    #[error("{func}() aggregator must be one of {allowed}; found `{found}`")]
    BadChoice {
        /// The function.
        func: &'static str,
        /// The name given.
        found: String,
        /// The allowed names.
        allowed: &'static str,
    },
    /// `by` after a function that does not aggregate across series.
    #[error(
        "`by` applies only to aggregations across series (sum, avg, min, max, count, percentile, topk, bottomk), not to {func}()"
    )]
    ByNotAllowed {
        /// The function.
        func: String,
    },
    /// The same key part twice in `by`.
    #[error("key part `{part}` appears twice in `by`")]
    DuplicateByPart {
        /// The part.
        part: &'static str,
    },
    /// `members()` as a service or metric.
    #[error("members() selects sources; it cannot select the {part}")]
    MembersOutsideSources {
        /// The part it was used for.
        part: &'static str,
    },
    /// `downsample` of something other than a selection.
    #[error(
        "downsample() applies to a ts() selection: it chooses how the raw samples inside each step become one point"
    )]
    DownsampleNeedsSelection,
    /// A constant argument outside its range.
    #[error("{what} must be {rule}, found {found}")]
    OutOfRange {
        /// What the value is.
        what: &'static str,
        /// The rule it breaks.
        rule: &'static str,
        /// The value.
        found: String,
    },
}

/// A type error located in the query text.
pub type TypeError = Located<TypeErrorKind>;

/// A type error with a span, before it is located in the text.
pub type SpannedTypeError = (TypeErrorKind, Span);

/// Checks a whole query, returning its type (series set, scalar or predicate).
pub fn check(e: &Expr, src: &str) -> Result<Type, TypeError> {
    check_query(e).map_err(|(k, s)| Located::new(k, s, src))
}

/// [`check`] without locating the error.
pub fn check_query(e: &Expr) -> Result<Type, SpannedTypeError> {
    if let ExprKind::Name(n) = &e.kind {
        return Err((name_error(n), e.span));
    }
    let t = type_of(e)?;
    match t {
        Type::Series | Type::Scalar | Type::Predicate => Ok(t),
        found => Err((TypeErrorKind::NotAQuery { found }, e.span)),
    }
}

/// The value of a constant scalar expression.
pub fn const_value(e: &Expr) -> Option<f64> {
    match &e.kind {
        ExprKind::Number(n) => Some(*n),
        ExprKind::Neg(x) => const_value(x).map(|v| -v),
        ExprKind::Arith(op, a, b) => Some(op.apply(const_value(a)?, const_value(b)?)),
        _ => None,
    }
}

/// The type of an expression.
pub fn type_of(e: &Expr) -> Result<Type, SpannedTypeError> {
    match &e.kind {
        ExprKind::Number(_) => Ok(Type::Scalar),
        ExprKind::Duration(_) => Ok(Type::Duration),
        ExprKind::Str(_) => Ok(Type::Str),
        ExprKind::Name(_) => Ok(Type::Name),
        ExprKind::Select(s) => {
            for part in [KeyPart::Service, KeyPart::Metric] {
                if let (Pattern::Members(_), span) = s.part(part) {
                    return Err((
                        TypeErrorKind::MembersOutsideSources { part: part.name() },
                        *span,
                    ));
                }
            }
            Ok(Type::Series)
        }
        ExprKind::Neg(x) => value_operand(x, "-"),
        ExprKind::Arith(op, a, b) => {
            let ta = value_operand(a, op.symbol())?;
            let tb = value_operand(b, op.symbol())?;
            Ok(if ta == Type::Series || tb == Type::Series {
                Type::Series
            } else {
                Type::Scalar
            })
        }
        ExprKind::Cmp(op, a, b) => {
            let ta = value_operand(a, op.symbol())?;
            let tb = value_operand(b, op.symbol())?;
            if ta == Type::Scalar && tb == Type::Scalar {
                return Err((TypeErrorKind::ScalarComparison { op: op.symbol() }, e.span));
            }
            Ok(Type::Predicate)
        }
        ExprKind::Call {
            name,
            name_span,
            args,
            by,
        } => call(name, *name_span, args, by.as_deref(), e.span),
    }
}

fn name_error(name: &str) -> TypeErrorKind {
    let hint = if name == "ts" || Func::from_name(name).is_some() {
        format!("; `{name}` is a function: call it as {name}(...)")
    } else {
        "; select series with ts(service, sources, metrics)".to_string()
    };
    TypeErrorKind::UnknownName {
        name: name.to_string(),
        hint,
    }
}

/// An operand of arithmetic or a comparison: a series set or a scalar.
fn value_operand(e: &Expr, op: &'static str) -> Result<Type, SpannedTypeError> {
    if let ExprKind::Name(n) = &e.kind {
        return Err((name_error(n), e.span));
    }
    match type_of(e)? {
        t @ (Type::Series | Type::Scalar) => Ok(t),
        found => Err((
            TypeErrorKind::OperandType {
                op,
                found,
                hint: if found == Type::Predicate {
                    FILTER_HINT
                } else {
                    ""
                },
            },
            e.span,
        )),
    }
}

fn arg_type(func: Func, pos: usize, arg: &Expr, want: Type) -> Result<(), SpannedTypeError> {
    if matches!(want, Type::Series | Type::Scalar)
        && let ExprKind::Name(n) = &arg.kind
    {
        return Err((name_error(n), arg.span));
    }
    let found = type_of(arg)?;
    if found == want {
        return Ok(());
    }
    let expected = match want {
        Type::Series => "a series set",
        Type::Scalar => "a scalar",
        Type::Predicate => "a predicate (a comparison such as `x > 0.05`)",
        Type::Duration => "a duration (such as 5m)",
        Type::Name => "an aggregator name",
        Type::Str => "a quoted string",
    };
    let hint = if want == Type::Series && found == Type::Predicate {
        FILTER_HINT
    } else {
        ""
    };
    Err((
        TypeErrorKind::ArgType {
            func: func.name(),
            pos,
            expected,
            found,
            hint,
        },
        arg.span,
    ))
}

fn call(
    name: &str,
    name_span: Span,
    args: &[Expr],
    by: Option<&[(KeyPart, Span)]>,
    span: Span,
) -> Result<Type, SpannedTypeError> {
    let Some(func) = Func::from_name(name) else {
        return Err((
            TypeErrorKind::UnknownFunction {
                name: name.to_string(),
                hint: functions::suggest(name),
            },
            name_span,
        ));
    };
    if let Some(by) = by {
        if !func.is_aggregation() {
            let s = by.first().map_or(span, |(_, s)| *s);
            return Err((
                TypeErrorKind::ByNotAllowed {
                    func: name.to_string(),
                },
                s,
            ));
        }
        for (i, (p, s)) in by.iter().enumerate() {
            if by[..i].iter().any(|(q, _)| q == p) {
                return Err((TypeErrorKind::DuplicateByPart { part: p.name() }, *s));
            }
        }
    }
    use Type::*;
    let sig: &[Type] = match func {
        Func::Sum | Func::Avg | Func::Min | Func::Max | Func::Count => &[Series],
        Func::Percentile | Func::Topk | Func::Bottomk => &[Series, Scalar],
        Func::Rate | Func::Increase | Func::Derivative | Func::Integral => &[Series],
        Func::Moving => &[Series, Duration, Name],
        Func::Downsample => &[Series, Name],
        Func::Timeshift => &[Series, Duration],
        Func::Fill | Func::Default => &[Series, Scalar],
        Func::Alias => &[Series, Str],
        Func::Filter => &[Predicate],
    };
    if args.len() != sig.len() {
        let s = args.get(sig.len()).map_or(span, |a| a.span);
        return Err((
            TypeErrorKind::Arity {
                func: func.name(),
                expected: sig.len(),
                sig: func.signature(),
                found: args.len(),
            },
            s,
        ));
    }
    for (i, (a, t)) in args.iter().zip(sig).enumerate() {
        arg_type(func, i + 1, a, *t)?;
    }
    match func {
        Func::Percentile => {
            let q = const_value(&args[1]).unwrap_or(f64::NAN);
            if !(0.0..=100.0).contains(&q) {
                return Err(out_of_range(
                    "percentile() rank",
                    "between 0 and 100",
                    q,
                    &args[1],
                ));
            }
        }
        Func::Topk | Func::Bottomk => {
            let k = const_value(&args[1]).unwrap_or(f64::NAN);
            if !(k >= 1.0 && k.fract() == 0.0 && k <= 1e9) {
                let what = if func == Func::Topk {
                    "topk() count"
                } else {
                    "bottomk() count"
                };
                return Err(out_of_range(
                    what,
                    "a whole number of at least 1",
                    k,
                    &args[1],
                ));
            }
        }
        Func::Moving => {
            positive_duration("moving() window", &args[1])?;
            let n = name_of(&args[2]);
            if WindowAgg::from_name(n).is_none() {
                return Err(bad_choice(func, n, WindowAgg::ALLOWED, &args[2]));
            }
        }
        Func::Downsample => {
            if !matches!(args[0].kind, ExprKind::Select(_)) {
                return Err((TypeErrorKind::DownsampleNeedsSelection, args[0].span));
            }
            let n = name_of(&args[1]);
            if StepAgg::from_name(n).is_none() {
                return Err(bad_choice(func, n, StepAgg::ALLOWED, &args[1]));
            }
        }
        Func::Timeshift => positive_duration("timeshift() duration", &args[1])?,
        _ => {}
    }
    Ok(Series)
}

fn name_of(e: &Expr) -> &str {
    match &e.kind {
        ExprKind::Name(n) => n,
        _ => "",
    }
}

fn bad_choice(func: Func, n: &str, allowed: &'static str, at: &Expr) -> SpannedTypeError {
    (
        TypeErrorKind::BadChoice {
            func: func.name(),
            found: n.to_string(),
            allowed,
        },
        at.span,
    )
}

fn out_of_range(what: &'static str, rule: &'static str, v: f64, at: &Expr) -> SpannedTypeError {
    (
        TypeErrorKind::OutOfRange {
            what,
            rule,
            found: crate::printer::number(v),
        },
        at.span,
    )
}

fn positive_duration(what: &'static str, e: &Expr) -> Result<(), SpannedTypeError> {
    match e.kind {
        ExprKind::Duration(d) if d > 0 => Ok(()),
        ExprKind::Duration(d) => Err((
            TypeErrorKind::OutOfRange {
                what,
                rule: "positive",
                found: crate::printer::duration(d),
            },
            e.span,
        )),
        _ => Ok(()),
    }
}
