//! How the API refuses: one JSON shape with a stable code, the status it
//! goes with, and a message for people.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::protocol::{ErrorCode, Rejected};
use crate::store::StoreError;

/// An error as the API answers it: `{"error": {"code", "message"}}`.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

/// The body of every error response.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, for programs: `bad_request`, `body_too_large`,
    /// `unauthorized`, `rate_limited`, `not_found`, `unknown_room`,
    /// `unknown_user`, `invalid_room`, `empty_text`, `text_too_long`,
    /// `store_unavailable`, `store_uncertain`, `overloaded`, `unavailable`
    /// (the replica is shutting down).
    #[schema(example = "unknown_user")]
    pub code: String,
    /// For people: what was wrong.
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub(super) fn rate_limited() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "over this key's request rate (API_RATE_LIMIT); retry shortly",
        )
    }

    /// The replica is shutting down (its actors are stopping).
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this replica is shutting down; retry (another replica answers)",
        )
    }

    pub fn unknown_user(user: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "unknown_user",
            format!("there is no user {user:?}"),
        )
    }

    /// A read the store failed, as HTTP: the same code and status a room
    /// would give (store_unavailable, 503).
    pub fn store(err: StoreError) -> Self {
        tracing::warn!(error = %err, "the store failed an API request");
        Self::refused(err.rejected("the request", "retry shortly", None))
    }

    /// What a room refused, as HTTP.
    pub fn refused(rejected: Rejected) -> Self {
        let status = match rejected.code {
            ErrorCode::UnknownUser => StatusCode::NOT_FOUND,
            ErrorCode::StoreUnavailable | ErrorCode::StoreUncertain | ErrorCode::Overloaded => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorCode::NotJoined => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, rejected.code.as_str(), rejected.message)
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message.clone(),
            },
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        match self.status {
            StatusCode::UNAUTHORIZED => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            _ => {}
        }
        response.json(self.body())
    }
}

impl actix_web::Responder for ApiError {
    type Body = actix_web::body::BoxBody;

    fn respond_to(self, _req: &HttpRequest) -> HttpResponse {
        self.error_response()
    }
}
