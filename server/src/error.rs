//! `ApiError`: the one place where failures become HTTP statuses and JSON bodies
//! (`{"error": "...", "code": "..."}`) and gRPC statuses. The service layer and both front ends
//! return `Result<_, ApiError>` and use `?`; each front end converts at its edge
//! (`IntoResponse` for HTTP, `From<ApiError> for tonic::Status` for gRPC).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use simple_cache_core::node::WriteError;
use simple_cache_core::raft::{MembershipError, ProposeError, ReadError, TransferError};
use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status; the gRPC code derives from it (see `From<ApiError> for tonic::Status`).
    pub status: StatusCode,
    /// A stable machine-readable reason, e.g. `bad_duration`. Owned only when relayed from the
    /// leader's answer to a forwarded request.
    pub code: Cow<'static, str>,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code: Cow::Borrowed(code), message: message.into() }
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }
    pub fn stopping() -> ApiError {
        ApiError::unavailable("shutting_down", "the node is shutting down")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message, "code": self.code });
        (self.status, Json(body)).into_response()
    }
}

/// gRPC codes from HTTP statuses, refined by the error code where the status is too coarse.
/// The message is prefixed with the error code (`bad_duration: ...`), so gRPC clients see the
/// same machine-readable reason as HTTP clients.
impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> tonic::Status {
        use tonic::Code;
        let code = match (e.status.as_u16(), e.code.as_ref()) {
            // Accepted but not finished in time: the write may still take effect, which is what
            // DEADLINE_EXCEEDED says (unlike UNAVAILABLE, which invites a blind retry).
            (_, "timeout" | "request_timeout") => Code::DeadlineExceeded,
            // Retrying will not help until the cluster's configuration changes.
            (_, "leader_address_unknown") => Code::FailedPrecondition,
            (400 | 413 | 414, _) => Code::InvalidArgument,
            (401, _) => Code::Unauthenticated,
            (403, _) => Code::PermissionDenied,
            (404, _) => Code::NotFound,
            (405, _) => Code::Unimplemented,
            (408, _) => Code::DeadlineExceeded,
            (409, _) => Code::FailedPrecondition,
            (410, _) => Code::OutOfRange,
            (429 | 507, _) => Code::ResourceExhausted,
            (502..=504, _) => Code::Unavailable,
            (500, _) => Code::Internal,
            _ => Code::Unknown,
        };
        tonic::Status::new(code, format!("{}: {}", e.code, e.message))
    }
}

impl From<ProposeError> for ApiError {
    fn from(e: ProposeError) -> ApiError {
        match e {
            ProposeError::NotLeader { leader_hint } => ApiError::unavailable(
                "not_leader",
                match leader_hint {
                    Some(l) => {
                        format!("this node is not the leader (node {l} is) and cannot reach it")
                    }
                    None => "this node is not the leader and no leader is known".to_string(),
                },
            ),
            ProposeError::TransferInProgress => ApiError::unavailable(
                "transfer_in_progress",
                "a leadership transfer is in progress; retry shortly",
            ),
            ProposeError::TooManyPending { .. } | ProposeError::TooManyPendingBytes { .. } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_pending", e.to_string())
            }
            ProposeError::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "value_too_large", e.to_string())
            }
        }
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> ApiError {
        match e {
            WriteError::Propose(p) => p.into(),
            WriteError::Superseded => ApiError::unavailable("superseded", e.to_string()),
            WriteError::Unknown => ApiError::unavailable("outcome_unknown", e.to_string()),
            WriteError::Undecodable(_) => ApiError::internal(e.to_string()),
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> ApiError {
        match e {
            ReadError::NoLeader => ApiError::unavailable("no_leader", "no leader is known"),
            ReadError::Aborted => ApiError::unavailable("read_aborted", e.to_string()),
            ReadError::TooManyPending { .. } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_pending", e.to_string())
            }
        }
    }
}

impl From<MembershipError> for ApiError {
    fn from(e: MembershipError) -> ApiError {
        let msg = e.to_string();
        match e {
            MembershipError::NotLeader { .. } => ApiError::unavailable("not_leader", msg),
            MembershipError::ChangePending => ApiError::new(
                StatusCode::CONFLICT,
                "change_pending",
                "another membership change is not yet committed; retry when it is",
            ),
            MembershipError::LeaderNotReady | MembershipError::TransferInProgress => {
                ApiError::unavailable("leader_not_ready", msg)
            }
            MembershipError::AlreadyMember(_) => {
                ApiError::new(StatusCode::CONFLICT, "already_member", msg)
            }
            MembershipError::NotMember(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_member", msg)
            }
            MembershipError::NotLearner(_) | MembershipError::InvalidNodeId => {
                ApiError::bad_request("bad_member", msg)
            }
            MembershipError::NotCaughtUp { .. } => {
                ApiError::new(StatusCode::CONFLICT, "not_caught_up", msg)
            }
            MembershipError::NotResponding { .. } => {
                ApiError::new(StatusCode::CONFLICT, "not_responding", msg)
            }
            MembershipError::LastVoter => ApiError::new(StatusCode::CONFLICT, "last_voter", msg),
        }
    }
}

impl From<TransferError> for ApiError {
    fn from(e: TransferError) -> ApiError {
        let msg = e.to_string();
        match e {
            TransferError::NotLeader { .. } => ApiError::unavailable("not_leader", msg),
            TransferError::NotVoter(_) => ApiError::bad_request("not_voter", msg),
            TransferError::InProgress => {
                ApiError::new(StatusCode::CONFLICT, "transfer_in_progress", msg)
            }
        }
    }
}
