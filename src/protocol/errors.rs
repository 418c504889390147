//! Why a frame was refused (the error codes and the refusal that becomes
//! an `error` frame) and why the server closed a connection.

use serde::Serialize;

use super::{Ref, ServerFrame};

/// Why a frame was refused; the `code` of an `error` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, or not a JSON object.
    Malformed,
    /// A JSON object whose `type` is missing or unknown.
    UnknownType,
    /// A known `type` with missing or mistyped fields.
    InvalidFrame,
    /// A room name that is not valid, or a direct room of other users.
    InvalidRoom,
    /// A user name that is not valid.
    InvalidUser,
    /// A direct message to a user that does not exist.
    UnknownUser,
    EmptyText,
    TextTooLong,
    /// `send`, `typing` or `history` for a room not joined.
    NotJoined,
    /// Over the per-connection frame rate; the frame was dropped.
    RateLimited,
    /// The store failed; the message was not stored and will not be delivered.
    StoreUnavailable,
    /// The database stopped answering while storing the message: it may or
    /// may not be stored. If it was, it arrives like any other message
    /// (with its `seq`); `resume` or `history` shows which.
    StoreUncertain,
    /// The replica has too many messages waiting for its store; this one
    /// was refused at once, not stored and not delivered. Send it again
    /// after a short pause.
    Overloaded,
    /// Binary frames are not part of the protocol.
    Unsupported,
    /// The authorization webhook refused this message or join; or an edit
    /// or delete of a message that is not the sender's (operators may
    /// delete any).
    Forbidden,
    /// An edit or delete of a message the room does not hold (never
    /// stored, or deleted).
    NotFound,
    /// The authorization webhook did not answer in time; the message was
    /// not sent (deny by default). Try again later.
    AuthorizationUnavailable,
}

impl ErrorCode {
    pub const ALL: &[ErrorCode] = &[
        ErrorCode::Malformed,
        ErrorCode::UnknownType,
        ErrorCode::InvalidFrame,
        ErrorCode::InvalidRoom,
        ErrorCode::InvalidUser,
        ErrorCode::UnknownUser,
        ErrorCode::EmptyText,
        ErrorCode::TextTooLong,
        ErrorCode::NotJoined,
        ErrorCode::RateLimited,
        ErrorCode::StoreUnavailable,
        ErrorCode::StoreUncertain,
        ErrorCode::Overloaded,
        ErrorCode::Unsupported,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::AuthorizationUnavailable,
    ];

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidFrame => "invalid_frame",
            ErrorCode::InvalidRoom => "invalid_room",
            ErrorCode::InvalidUser => "invalid_user",
            ErrorCode::UnknownUser => "unknown_user",
            ErrorCode::EmptyText => "empty_text",
            ErrorCode::TextTooLong => "text_too_long",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::StoreUncertain => "store_uncertain",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::AuthorizationUnavailable => "authorization_unavailable",
        }
    }
}

/// A client frame that could not be accepted, ready to become an `error` frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub code: ErrorCode,
    pub message: String,
    pub reference: Option<Ref>,
}

impl Rejected {
    pub fn new(code: ErrorCode, message: impl Into<String>, reference: Option<Ref>) -> Self {
        Self {
            code,
            message: message.into(),
            reference,
        }
    }

    /// The frame for one client (whoever sends it counts it:
    /// `metrics::error_sent`, so the protocol imports no metrics).
    pub fn encode(&self) -> bytestring::ByteString {
        ServerFrame::Error {
            code: self.code,
            message: &self.message,
            reference: self.reference.as_ref(),
        }
        .encode()
    }
}

/// Closes a connection with close code 1008 and a reason the client acts
/// on instead of reconnecting as usual.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Evict {
    /// The validity webhook reported the user invalid, or a backend
    /// revoked them (`/api/v1`): do not reconnect.
    Revoked,
    /// A backend disconnected the user: reconnecting is allowed (after a
    /// pause; a backend may refuse reconnects for a while).
    Disconnected,
    /// `SINGLE_SESSION`: the user connected elsewhere.
    Replaced,
    /// The login this connection was opened with logged out (on any
    /// replica): do not reconnect, log in again.
    LoggedOut,
}

impl Evict {
    /// The close reason on the wire.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Revoked => "revoked",
            Self::Disconnected => "disconnected",
            Self::Replaced => "replaced",
            Self::LoggedOut => "logged_out",
        }
    }
}
