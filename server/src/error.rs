//! `ApiError`: the one place where failures become HTTP statuses and JSON bodies
//! (`{"error": "...", "code": "..."}`). Handlers return `Result<_, ApiError>` and use `?`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use simple_cache_core::node::WriteError;
use simple_cache_core::raft::{MembershipError, ProposeError, ReadError, TransferError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
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
        }
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> ApiError {
        match e {
            WriteError::Propose(p) => p.into(),
            WriteError::Superseded => ApiError::unavailable("superseded", e.to_string()),
            WriteError::Unknown => ApiError::unavailable("outcome_unknown", e.to_string()),
            WriteError::Undecodable(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            }
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> ApiError {
        match e {
            ReadError::NoLeader => ApiError::unavailable("no_leader", "no leader is known"),
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
