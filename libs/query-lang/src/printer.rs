//! The pretty-printer: one normalised text per tree (cache key material); `parse(print(e)) == e`.

use std::fmt::Write;

use crate::ast::{Expr, ExprKind, Pattern};
use crate::lexer::{ALL_SOURCES, literal_reads_back};

/// Prints `e` in normal form: single spaces around binary operators, `, `
/// between arguments, minimal parentheses, numbers in shortest form,
/// durations in largest units first (`1h30m`), strings double-quoted.
pub fn print(e: &Expr) -> String {
    let mut out = String::new();
    expr(&mut out, e, 0);
    out
}

/// Precedence levels: 0 = comparison, 1 = `+ -`, 2 = `* /`, 3 = unary, 4 = primary.
fn level(e: &Expr) -> u8 {
    match &e.kind {
        ExprKind::Cmp(..) => 0,
        ExprKind::Arith(op, ..) => op.precedence(),
        ExprKind::Neg(_) => 3,
        ExprKind::Number(n) if n.is_sign_negative() => 3,
        _ => 4,
    }
}

fn wrapped(out: &mut String, e: &Expr, min: u8) {
    if level(e) < min {
        out.push('(');
        expr(out, e, 0);
        out.push(')');
    } else {
        expr(out, e, min);
    }
}

fn expr(out: &mut String, e: &Expr, _ctx: u8) {
    match &e.kind {
        ExprKind::Number(n) => out.push_str(&number(*n)),
        ExprKind::Duration(ms) => out.push_str(&duration(*ms)),
        ExprKind::Str(s) => out.push_str(&quote(s)),
        ExprKind::Name(n) => out.push_str(n),
        ExprKind::Select(s) => {
            let _ = write!(
                out,
                "ts({}, {}, {})",
                pattern(&s.service.0),
                pattern(&s.source.0),
                pattern(&s.metric.0)
            );
        }
        ExprKind::Call { name, args, by, .. } => {
            out.push_str(name);
            out.push('(');
            for (i, a) in args.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                expr(out, a, 0);
            }
            out.push(')');
            if let Some(by) = by {
                out.push_str(" by (");
                let parts: Vec<&str> = by.iter().map(|(p, _)| p.name()).collect();
                out.push_str(&parts.join(", "));
                out.push(')');
            }
        }
        ExprKind::Neg(inner) => {
            out.push('-');
            // `--x` lexes as two minus signs, so no space is needed.
            wrapped(out, inner, 3);
        }
        ExprKind::Arith(op, a, b) => {
            let p = op.precedence();
            wrapped(out, a, p);
            let _ = write!(out, " {} ", op.symbol());
            // Left associative: an equal-precedence right operand needs parentheses.
            wrapped(out, b, p + 1);
        }
        ExprKind::Cmp(op, a, b) => {
            wrapped(out, a, 1);
            let _ = write!(out, " {} ", op.symbol());
            wrapped(out, b, 1);
        }
    }
}

/// Shortest text that parses back to the same number.
pub fn number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        if n == 0.0 && n.is_sign_negative() {
            return "-0".to_string();
        }
        return format!("{}", n as i64);
    }
    // `Debug` is the shortest round-trip form and uses exponents for very
    // large and very small magnitudes (`1e300`, `1e-7`).
    format!("{n:?}")
}

/// A duration in largest units first: `1w2d`, `1h30m`, `250ms`.
pub fn duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".to_string();
    }
    let mut rest = ms;
    let mut out = String::new();
    for (unit, size) in [
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if rest >= size {
            let _ = write!(out, "{}{unit}", rest / size);
            rest %= size;
        }
    }
    out
}

/// A double-quoted string with `\\`, `\"`, `\n`, `\t` escaped.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether a literal can be printed bare and read back as the same literal.
fn bare_literal_ok(s: &str) -> bool {
    if s == ALL_SOURCES {
        return true;
    }
    let Some(first) = s.chars().next() else {
        return false;
    };
    if matches!(first, '/' | '"' | '\'') || s.starts_with("members") || !literal_reads_back(s) {
        return false;
    }
    let mut depth = 0i32;
    for c in s.chars() {
        match c {
            c if c.is_whitespace() || c.is_control() => return false,
            '"' | '\'' => return false,
            ',' if depth == 0 => return false,
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            ']' | '}' => return false,
            _ => {}
        }
    }
    depth == 0
}

/// The normal text of one `ts()` argument.
pub fn pattern(p: &Pattern) -> String {
    match p {
        Pattern::Any => "*".to_string(),
        Pattern::Literal(s) if bare_literal_ok(s) => s.clone(),
        Pattern::Literal(s) => quote(s),
        Pattern::Glob(g) => g.clone(),
        Pattern::Regex(r) => format!("/{r}/"),
        Pattern::Members(r) => format!("members(role.{r})"),
    }
}
