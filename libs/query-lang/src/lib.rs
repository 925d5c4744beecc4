//! Aerie's query language: lexer, parser, type checker, rewriter and in-memory evaluator (no I/O).
//!
//! ```text
//!  text --parse--> Expr --check--> Type --rewrite--> Expr' --plan--> Plan --eval--> Value
//!        (lexer,    (spans)  (series/scalar/  (folding,       (fragments,  (DataSource:
//!         parser)             predicate)       timeshift      CSE DAG)      select, roles,
//!                                              push-down)                   fragment)
//! ```
//!
//! [`compile`] runs the front half and returns a [`Query`]; [`Query::eval`]
//! evaluates it against a [`DataSource`] over a [`Range`]. The federator
//! reads [`Plan::fragments`] / [`Plan::fragment_ranges`] to ship fragments to
//! storage and implements [`DataSource::fragment`] to do so.
//!
//! Language summary (see [`parser`] for the grammar, [`functions`] for the
//! library, [`ops`] for the join rules and [`eval`] for step semantics):
//!
//! ```text
//! ts(cuckoo, members(role.cuckoo_frontend), jvm_gc_msec)
//!   / ts(cuckoo, members(role.cuckoo_frontend), api/query_count)
//! max(rate(ts(web, *, http*latency.p9999)))
//! sum(ts(web, /web-\d+/, "http/requests")) by (service) > 100
//! ```

pub mod ast;
pub mod check;
pub mod eval;
pub mod functions;
pub mod lexer;
pub mod ops;
pub mod parser;
pub mod plan;
pub mod printer;
pub mod rewrite;
pub mod series;
pub mod span;

use thiserror::Error;

pub use ast::{Expr, ExprKind, KeyPart, Pattern};
pub use check::{Type, TypeError, TypeErrorKind, check};
pub use eval::{
    DataSource, EvalError, Evaluator, FragmentRequest, MemorySource, SourceError, eval,
    run_fragment,
};
pub use functions::{AggOp, Func, StepAgg, WindowAgg};
pub use lexer::ParseErrorKind;
pub use parser::{ParseError, parse};
pub use plan::{Fragment, Node, NodeId, Plan, PlanError, PlanOptions, plan};
pub use printer::print;
pub use rewrite::{Rewritten, rewrite};
pub use series::{Matcher, Range, RawSeries, Selector, Series, SeriesKey, Value};
pub use span::{Located, Location, Span};

/// Any error of compiling a query.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum Error {
    /// The text is not a query.
    #[error("{0}")]
    Parse(#[from] ParseError),
    /// The query is not well typed.
    #[error("{0}")]
    Type(#[from] TypeError),
    /// The checked query could not be planned.
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// A compiled query.
#[derive(Debug, Clone)]
pub struct Query {
    /// The text as given.
    pub text: String,
    /// The tree as parsed.
    pub ast: Expr,
    /// Series set, scalar or predicate.
    pub ty: Type,
    /// The tree after rewriting.
    pub rewritten: Rewritten,
    /// The plan of the rewritten tree.
    pub plan: Plan,
}

/// Parses, checks, rewrites and plans a query with fragment push-down.
pub fn compile(text: &str) -> Result<Query, Error> {
    compile_with(text, PlanOptions::default())
}

/// [`compile`] with explicit planner options.
pub fn compile_with(text: &str, opts: PlanOptions) -> Result<Query, Error> {
    let ast = parse(text)?;
    let ty = check(&ast, text)?;
    let rewritten = rewrite(&ast);
    let plan = plan::plan(&rewritten.expr, opts)?;
    Ok(Query {
        text: text.to_string(),
        ast,
        ty,
        rewritten,
        plan,
    })
}

impl Query {
    /// The normalised text of the rewritten query (cache key material).
    pub fn normalised(&self) -> String {
        print(&self.rewritten.expr)
    }

    /// Evaluates over `range`.
    pub fn eval<S: DataSource + ?Sized>(
        &self,
        source: &S,
        range: Range,
    ) -> Result<Value, EvalError> {
        eval(&self.plan, source, range)
    }

    /// The rewritten query, the rules applied, and the plan.
    pub fn explain(&self) -> String {
        let mut s = format!("query: {}\ntype: {}\n", self.normalised(), self.ty);
        if !self.rewritten.applied.is_empty() {
            s.push_str(&format!(
                "rewrites: {}\n",
                self.rewritten.applied.join(", ")
            ));
        }
        if self.plan.shared > 0 {
            s.push_str(&format!("shared subexpressions: {}\n", self.plan.shared));
        }
        s.push_str(&self.plan.explain());
        s
    }
}
