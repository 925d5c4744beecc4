//! Why a query failed, and its mapping to HTTP (Prometheus `errorType`) and gRPC
//! status, each in one exhaustive match.

use query_lang::Located;

/// Errors of answering a query, one variant per cause.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// The query does not compile (parse, type or plan error).
    #[error("{message}")]
    Compile {
        /// `line:col: message`.
        message: String,
        /// 1-based line, when the error points into the text.
        line: Option<usize>,
        /// 1-based column.
        column: Option<usize>,
    },
    /// A request parameter is missing or malformed.
    #[error("invalid parameter {param}: {reason}")]
    BadParam {
        /// The parameter.
        param: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The estimated cost exceeds a limit; nothing ran.
    #[error("{0}")]
    Refused(String),
    /// `members(role.x)` without a collector to ask.
    #[error(
        "members(role.{0}) needs a collector to resolve roles: set query_federator.collector to its gRPC URL"
    )]
    NoCollector(String),
    /// The collector could not resolve roles.
    #[error("cannot resolve members(role.{role}): collector: {reason}")]
    Roles {
        /// The role.
        role: String,
        /// Why.
        reason: String,
    },
    /// The deadline passed.
    #[error("query timed out: {0}")]
    Deadline(String),
    /// No zone answered.
    #[error("no storage zone answered: {0}")]
    Unavailable(String),
    /// Evaluation failed.
    #[error("{0}")]
    Eval(String),
    /// A bug or a lost worker.
    #[error("internal error: {0}")]
    Internal(String),
}

impl QueryError {
    /// A compile error of `query_lang`, with its line and column.
    pub fn compile(e: &query_lang::Error) -> Self {
        fn at<K: std::fmt::Display>(l: &Located<K>) -> QueryError {
            QueryError::Compile {
                message: l.message(),
                line: Some(l.line()),
                column: Some(l.col()),
            }
        }
        match e {
            query_lang::Error::Parse(p) => at(p),
            query_lang::Error::Type(t) => at(t),
            query_lang::Error::Plan(p) => QueryError::Compile {
                message: p.to_string(),
                line: None,
                column: None,
            },
        }
    }

    /// HTTP status and Prometheus `errorType`.
    pub fn http(&self) -> (u16, &'static str) {
        match self {
            QueryError::Compile { .. } | QueryError::BadParam { .. } => (400, "bad_data"),
            QueryError::Refused(_) => (422, "execution"),
            QueryError::NoCollector(_) => (422, "execution"),
            QueryError::Roles { .. } => (503, "unavailable"),
            QueryError::Deadline(_) => (503, "timeout"),
            QueryError::Unavailable(_) => (503, "unavailable"),
            QueryError::Eval(_) => (422, "execution"),
            QueryError::Internal(_) => (500, "internal"),
        }
    }

    /// The gRPC status.
    pub fn status(&self) -> tonic::Status {
        let m = self.to_string();
        match self {
            QueryError::Compile { .. } | QueryError::BadParam { .. } => {
                tonic::Status::invalid_argument(m)
            }
            QueryError::Refused(_) => tonic::Status::resource_exhausted(m),
            QueryError::NoCollector(_) => tonic::Status::failed_precondition(m),
            QueryError::Roles { .. } => tonic::Status::unavailable(m),
            QueryError::Deadline(_) => tonic::Status::deadline_exceeded(m),
            QueryError::Unavailable(_) => tonic::Status::unavailable(m),
            QueryError::Eval(_) => tonic::Status::invalid_argument(m),
            QueryError::Internal(_) => tonic::Status::internal(m),
        }
    }
}
