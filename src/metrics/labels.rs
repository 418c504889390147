//! The label values of each labelled family: small fixed sets, each
//! series created at start so it exists before its first event.

/// Why a WebSocket ended (`rookery_connections_closed_total{reason}`).
pub mod close {
    /// The client closed it or went away.
    pub const CLIENT: &str = "client";
    /// No pong and no write progress within the client timeout.
    pub const TIMEOUT: &str = "timeout";
    /// The client read too slowly: its outbox passed the limit.
    pub const SLOW: &str = "slow";
    /// It stayed over the frame rate.
    pub const FLOOD: &str = "flood";
    /// A frame over the size limit.
    pub const OVERSIZED: &str = "oversized";
    /// A WebSocket protocol violation.
    pub const PROTOCOL: &str = "protocol";
    /// Replaced (single session), revoked or kicked.
    pub const EVICTED: &str = "evicted";
    /// The replica drained or stopped.
    pub const RESTART: &str = "restart";
    pub const ALL: &[&str] = &[
        CLIENT, TIMEOUT, SLOW, FLOOD, OVERSIZED, PROTOCOL, EVICTED, RESTART,
    ];
}

/// How a login or registration ended (`rookery_logins_total{result}`).
pub mod login {
    pub const OK: &str = "ok";
    pub const REGISTERED: &str = "registered";
    pub const WRONG_PASSWORD: &str = "wrong_password";
    /// A name or password the rules refuse.
    pub const INVALID: &str = "invalid";
    /// The auth webhook said no, or could not be asked.
    pub const DENIED: &str = "denied";
    /// The store failed, or too many logins wait for password hashing.
    pub const UNAVAILABLE: &str = "unavailable";
    /// Too many attempts from the address, wrong passwords for the
    /// account, or registrations from the address (429).
    pub const THROTTLED: &str = "throttled";
    pub const ALL: &[&str] = &[
        OK,
        REGISTERED,
        WRONG_PASSWORD,
        INVALID,
        DENIED,
        UNAVAILABLE,
        THROTTLED,
    ];
}

/// Delivery modes (`mode` label): stored before fan-out, or after.
pub mod mode {
    pub const RELIABLE: &str = "reliable";
    pub const FAST: &str = "fast";
    pub const ALL: &[&str] = &[RELIABLE, FAST];
}

/// How a resumed room's replay went (`rookery_resumes_total{result}`).
pub mod resume {
    /// Every message after the client's `seq` was replayed.
    pub const RECOVERED: &str = "recovered";
    /// More were missed than the replay window holds (`recovered:false`).
    pub const CUT: &str = "cut";
    /// The store could not be read (`recovered:false`).
    pub const FAILED: &str = "failed";
    pub const ALL: &[&str] = &[RECOVERED, CUT, FAILED];
}

/// Why a message from the broker was dropped unread.
pub mod dropped {
    /// Larger than any replica sends.
    pub const SIZE: &str = "size";
    /// Not signed with this cluster's key, or altered on the way.
    pub const SIGNATURE: &str = "signature";
    /// Signed, yet not an envelope this version reads.
    pub const UNDECODABLE: &str = "undecodable";
    pub const ALL: &[&str] = &[SIZE, SIGNATURE, UNDECODABLE];
}

/// Webhooks and their outcomes.
pub mod hook {
    pub const AUTH: &str = "auth";
    pub const AUTHORIZE: &str = "authorize";
    pub const VALIDITY: &str = "validity";
    pub const EVENTS: &str = "events";
    pub const ALL: &[&str] = &[AUTH, AUTHORIZE, VALIDITY, EVENTS];
    /// The receiver answered yes (or took the event).
    pub const OK: &str = "ok";
    /// The receiver answered no.
    pub const REFUSED: &str = "refused";
    /// No usable answer: down, too slow, or an error status.
    pub const FAILED: &str = "failed";
    /// Never sent: the events queue was full (`EVENTS_QUEUE`).
    pub const DROPPED: &str = "dropped";
    pub const RESULTS: &[&str] = &[OK, REFUSED, FAILED, DROPPED];
}

/// Store operations (`rookery_store_errors_total{operation}`).
pub const STORE_OPERATIONS: &[&str] = &[
    "migrate",
    "ping",
    "create_user",
    "find_user",
    "find_name_ignoring_case",
    "put_operator_account",
    "set_avatar",
    "append",
    "history",
    "messages",
    "after",
    "message",
    "mark_delivered",
    "prune",
    "pending_count",
    "fetch_missed",
    "set_read",
    "read_positions",
    "recent_rooms",
    "session_load",
    "session_insert",
    "session_update",
    "session_touch",
    "session_delete",
    "secret",
];
