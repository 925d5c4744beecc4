//! Why a storage request failed, and the one exhaustive mapping of those causes
//! to gRPC status codes.

use prost::Message;
use tonic::{Code, Status};

use crate::backend::BackendError;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// A field of the request is malformed.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The field, as a path into the request (`matchers[0].metric.regex`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Part of a write was refused; the rest is stored. The response rides in the
    /// status details so the sender learns exactly what was kept.
    #[error("{message}")]
    Rejected {
        /// The rejected items, named.
        message: String,
        /// What was stored and what was refused.
        response: Box<proto::storage::WriteResponse>,
    },
    /// A limit would be exceeded.
    #[error("{what}: {found} exceeds the limit of {limit} (storage.limits.{key}); {hint}")]
    Limit {
        /// What was counted.
        what: &'static str,
        /// The count reached.
        found: u64,
        /// The limit.
        limit: u64,
        /// The config key of the limit.
        key: &'static str,
        /// How to stay under it.
        hint: &'static str,
    },
    /// The request's deadline passed; the work stopped.
    #[error("deadline exceeded after {elapsed_ms} ms: {progress}")]
    Deadline {
        /// Time spent.
        elapsed_ms: u64,
        /// How far the work got.
        progress: String,
    },
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl RequestError {
    /// A malformed field.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        RequestError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A short stable name of the cause, for stats.
    pub fn kind(&self) -> &'static str {
        match self {
            RequestError::InvalidArgument { .. } => "invalid_argument",
            RequestError::Rejected { .. } => "rejected",
            RequestError::Limit { .. } => "limit",
            RequestError::Deadline { .. } => "deadline",
            RequestError::Backend(BackendError::BadRequest(_)) => "bad_request",
            RequestError::Backend(BackendError::Unavailable(_)) => "unavailable",
            RequestError::Backend(BackendError::Corrupt(_)) => "corrupt",
            RequestError::Backend(BackendError::Internal(_)) => "internal",
        }
    }
}

impl From<RequestError> for Status {
    fn from(e: RequestError) -> Self {
        let message = e.to_string();
        match e {
            RequestError::InvalidArgument { .. } => Status::invalid_argument(message),
            RequestError::Rejected { response, .. } => Status::with_details(
                Code::InvalidArgument,
                message,
                response.encode_to_vec().into(),
            ),
            RequestError::Limit { .. } => Status::resource_exhausted(message),
            RequestError::Deadline { .. } => Status::deadline_exceeded(message),
            RequestError::Backend(b) => match b {
                BackendError::BadRequest(_) => Status::invalid_argument(message),
                BackendError::Unavailable(_) => Status::unavailable(message),
                BackendError::Corrupt(_) => Status::data_loss(message),
                BackendError::Internal(_) => Status::internal(message),
            },
        }
    }
}
