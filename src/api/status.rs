//! Errors of the API layer and their one mapping to gRPC status codes (SPEC §10).

use tonic::{Code, Status};

use crate::durability::disk::DiskError;
use crate::intern::InternerFull;
use crate::worker::EngineStopped;

/// Everything a call can fail with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The request is invalid; the message names the field.
    #[error("{0}")]
    InvalidArgument(String),
    /// The request names something that does not exist (a view).
    #[error("{0}")]
    NotFound(String),
    /// A limit was reached.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The server is shutting down or the engine is gone.
    #[error("{0}")]
    Unavailable(String),
    /// A bug.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// An `INVALID_ARGUMENT` naming `field`.
    pub fn invalid(field: &str, problem: impl std::fmt::Display) -> Self {
        ApiError::InvalidArgument(format!("{field}: {problem}"))
    }
}

impl From<EngineStopped> for ApiError {
    fn from(stopped: EngineStopped) -> Self {
        ApiError::Unavailable(stopped.to_string())
    }
}

impl From<InternerFull> for ApiError {
    fn from(full: InternerFull) -> Self {
        ApiError::ResourceExhausted(format!(
            "{full}; updates from this one on were not receipted: resend them later"
        ))
    }
}

impl From<DiskError> for ApiError {
    fn from(error: DiskError) -> Self {
        match error {
            DiskError::Full(_) => ApiError::ResourceExhausted(error.to_string()),
            DiskError::Failed | DiskError::Io(_) => ApiError::Unavailable(error.to_string()),
        }
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        let code = match &error {
            ApiError::InvalidArgument(_) => Code::InvalidArgument,
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::ResourceExhausted(_) => Code::ResourceExhausted,
            ApiError::Unavailable(_) => Code::Unavailable,
            ApiError::Internal(_) => Code::Internal,
        };
        Status::new(code, error.to_string())
    }
}
