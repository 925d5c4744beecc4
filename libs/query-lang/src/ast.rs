//! The syntax tree of a query, with a byte span on every node; equality and hashing ignore spans.

use std::hash::{Hash, Hasher};

use crate::span::Span;

/// One of the three parts of a series key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyPart {
    /// The service (`cuckoo`).
    Service,
    /// The source (host:port, pod, role member).
    Source,
    /// The metric (`srv/http/requests`).
    Metric,
}

impl KeyPart {
    /// The keyword naming this part.
    pub fn name(self) -> &'static str {
        match self {
            KeyPart::Service => "service",
            KeyPart::Source => "source",
            KeyPart::Metric => "metric",
        }
    }

    /// The part a keyword names.
    pub fn from_name(s: &str) -> Option<KeyPart> {
        match s {
            "service" => Some(KeyPart::Service),
            "source" => Some(KeyPart::Source),
            "metric" => Some(KeyPart::Metric),
            _ => None,
        }
    }
}

/// One argument of `ts(service, sources, metrics)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// `*`: every name.
    Any,
    /// An exact name: bare text without glob characters, the reserved
    /// `*all*`, or any quoted string.
    Literal(String),
    /// Bare text with glob characters (`*?[{`); `*` also matches `/`.
    Glob(String),
    /// `/regex/`, anchored at both ends.
    Regex(String),
    /// `members(role.NAME)`: the sources that are members of role `NAME`.
    Members(String),
}

/// Arithmetic operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArithOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
}

impl ArithOp {
    /// The operator's symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
        }
    }

    /// Applies the operator.
    pub fn apply(self, a: f64, b: f64) -> f64 {
        match self {
            ArithOp::Add => a + b,
            ArithOp::Sub => a - b,
            ArithOp::Mul => a * b,
            ArithOp::Div => a / b,
        }
    }

    /// Binding strength: `*` and `/` bind tighter than `+` and `-`.
    pub fn precedence(self) -> u8 {
        match self {
            ArithOp::Add | ArithOp::Sub => 1,
            ArithOp::Mul | ArithOp::Div => 2,
        }
    }
}

/// Comparison operators; a comparison is a predicate that filters series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl CmpOp {
    /// The operator's symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
        }
    }

    /// Whether `a op b` holds.
    pub fn holds(self, a: f64, b: f64) -> bool {
        match self {
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
        }
    }

    /// The operator with its operands swapped: `a op b` == `b op.flip() a`.
    pub fn flip(self) -> CmpOp {
        match self {
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            CmpOp::Eq => CmpOp::Eq,
            CmpOp::Ne => CmpOp::Ne,
        }
    }
}

/// A `ts(service, sources, metrics)` selection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Selection {
    /// Service pattern and its span.
    pub service: (Pattern, Span),
    /// Sources pattern and its span.
    pub source: (Pattern, Span),
    /// Metrics pattern and its span.
    pub metric: (Pattern, Span),
}

impl Selection {
    /// The pattern of one key part.
    pub fn part(&self, p: KeyPart) -> &(Pattern, Span) {
        match p {
            KeyPart::Service => &self.service,
            KeyPart::Source => &self.source,
            KeyPart::Metric => &self.metric,
        }
    }
}

/// An expression node.
#[derive(Debug, Clone)]
pub struct Expr {
    /// What the node is.
    pub kind: ExprKind,
    /// Where it is in the query text.
    pub span: Span,
}

/// The kinds of expression.
#[derive(Debug, Clone)]
pub enum ExprKind {
    /// A finite number (the parser only produces non-negative ones;
    /// constant folding may produce negative ones).
    Number(f64),
    /// A duration in milliseconds (`90s`, `5m`, `1h30m`, `1w`).
    Duration(i64),
    /// A quoted string.
    Str(String),
    /// A bare name used as an argument (`avg`, `max`).
    Name(String),
    /// `ts(service, sources, metrics)`.
    Select(Selection),
    /// A function call, with an optional `by (part, ...)` clause.
    Call {
        /// Function name.
        name: String,
        /// Span of the name.
        name_span: Span,
        /// Arguments.
        args: Vec<Expr>,
        /// Grouping of an aggregation across series, with spans.
        by: Option<Vec<(KeyPart, Span)>>,
    },
    /// `-x`.
    Neg(Box<Expr>),
    /// `a + b` and friends.
    Arith(ArithOp, Box<Expr>, Box<Expr>),
    /// `a > b` and friends: a predicate.
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
}

impl Expr {
    /// A node at `span`.
    pub fn new(kind: ExprKind, span: Span) -> Self {
        Expr { kind, span }
    }

    /// A node without a meaningful position (built by rewrites).
    pub fn synthetic(kind: ExprKind) -> Self {
        Expr {
            kind,
            span: Span::default(),
        }
    }

    /// The constant value of a number node.
    pub fn as_number(&self) -> Option<f64> {
        match self.kind {
            ExprKind::Number(n) => Some(n),
            _ => None,
        }
    }

    /// The direct children, in order.
    pub fn children(&self) -> Vec<&Expr> {
        match &self.kind {
            ExprKind::Number(_)
            | ExprKind::Duration(_)
            | ExprKind::Str(_)
            | ExprKind::Name(_)
            | ExprKind::Select(_) => vec![],
            ExprKind::Call { args, .. } => args.iter().collect(),
            ExprKind::Neg(e) => vec![e],
            ExprKind::Arith(_, a, b) | ExprKind::Cmp(_, a, b) => vec![a, b],
        }
    }

    /// Number of nodes in the tree.
    pub fn size(&self) -> usize {
        1 + self.children().iter().map(|c| c.size()).sum::<usize>()
    }
}

fn strip_spans_by(by: &Option<Vec<(KeyPart, Span)>>) -> Option<Vec<KeyPart>> {
    by.as_ref().map(|v| v.iter().map(|(p, _)| *p).collect())
}

fn pat(p: &(Pattern, Span)) -> &Pattern {
    &p.0
}

/// Structural equality: spans are ignored and numbers compare by bits.
impl PartialEq for Expr {
    fn eq(&self, other: &Self) -> bool {
        use ExprKind::*;
        match (&self.kind, &other.kind) {
            (Number(a), Number(b)) => a.to_bits() == b.to_bits(),
            (Duration(a), Duration(b)) => a == b,
            (Str(a), Str(b)) | (Name(a), Name(b)) => a == b,
            (Select(a), Select(b)) => {
                pat(&a.service) == pat(&b.service)
                    && pat(&a.source) == pat(&b.source)
                    && pat(&a.metric) == pat(&b.metric)
            }
            (
                Call {
                    name: n1,
                    args: a1,
                    by: b1,
                    ..
                },
                Call {
                    name: n2,
                    args: a2,
                    by: b2,
                    ..
                },
            ) => n1 == n2 && a1 == a2 && strip_spans_by(b1) == strip_spans_by(b2),
            (Neg(a), Neg(b)) => a == b,
            (Arith(o1, a1, b1), Arith(o2, a2, b2)) => o1 == o2 && a1 == a2 && b1 == b2,
            (Cmp(o1, a1, b1), Cmp(o2, a2, b2)) => o1 == o2 && a1 == a2 && b1 == b2,
            _ => false,
        }
    }
}

impl Eq for Expr {}

/// Consistent with the structural equality: spans are not hashed.
impl Hash for Expr {
    fn hash<H: Hasher>(&self, h: &mut H) {
        use ExprKind::*;
        std::mem::discriminant(&self.kind).hash(h);
        match &self.kind {
            Number(n) => n.to_bits().hash(h),
            Duration(d) => d.hash(h),
            Str(s) | Name(s) => s.hash(h),
            Select(s) => {
                pat(&s.service).hash(h);
                pat(&s.source).hash(h);
                pat(&s.metric).hash(h);
            }
            Call { name, args, by, .. } => {
                name.hash(h);
                args.hash(h);
                strip_spans_by(by).hash(h);
            }
            Neg(e) => e.hash(h),
            Arith(o, a, b) => {
                o.hash(h);
                a.hash(h);
                b.hash(h);
            }
            Cmp(o, a, b) => {
                o.hash(h);
                a.hash(h);
                b.hash(h);
            }
        }
    }
}
