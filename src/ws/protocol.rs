//! The wire protocol: JSON text frames over one WebSocket, tagged by `type`.
//!
//! This file is the reference; `docs/PROTOCOL.md` explains it with examples.
//! Clients send [`ClientFrame`]s and receive [`ServerFrame`]s. Every frame is
//! one JSON object whose `type` field names the variant (snake_case); unknown
//! extra fields are ignored so clients can be newer than the server.
//!
//! Rules a client can rely on:
//! - Within a room, `message.seq` starts at 1 and grows by exactly one per
//!   message, so a client can tell a gap from a duplicate.
//! - An `ack` is sent only after the message is durably stored. A message
//!   that could not be stored gets an `error` with the same `ref` instead,
//!   never both.
//! - Bad input yields an `error` frame and the connection stays open, except
//!   a frame over [`MAX_FRAME_BYTES`], which is closed with code 1009.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::{Millis, StoredMessage};

/// Largest accepted WebSocket frame; larger ones close the connection (1009).
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Longest message text, in characters (Unicode scalar values).
pub const MAX_TEXT_CHARS: usize = 4000;
/// Most messages one `history` request returns.
pub const MAX_HISTORY_LIMIT: u32 = 100;
/// Messages returned with `joined` and by `history` without a `limit`.
pub const DEFAULT_HISTORY_LIMIT: u32 = 50;

/// Most recipients of one `group` message.
pub const MAX_GROUP_RECIPIENTS: usize = 50;
/// Most undelivered messages one `fetch_missed` returns.
pub const MAX_FETCH_MISSED: u32 = 100;

/// How a `send`, `direct` or `group` message travels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Stored before anyone sees it; acked by `ref`; recoverable after a
    /// reconnect or a replica restart; kept for offline recipients.
    #[default]
    Reliable,
    /// Fanned out from memory at once, stored afterwards for history (best
    /// effort): lower latency, no `ack`, no offline keeping, and lost if the
    /// replica dies in between. Seen live without a `seq`; history and
    /// `resume` show it later with one, under the same `id`.
    Fast,
}

/// How a message travels, as its sender asked (`confirm` only means
/// something for direct and group messages).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct MessageOptions {
    #[serde(rename = "ref", default)]
    pub reference: Option<Ref>,
    #[serde(default)]
    pub delivery: Delivery,
    /// Tell the sender (`delivered`) when it reaches the recipient.
    #[serde(default)]
    pub confirm: bool,
    /// This frame repeats one whose answer never came: if that one was
    /// stored, it is acked again instead of being stored twice.
    #[serde(default)]
    pub retry: bool,
}

/// A client-chosen correlation id, echoed back in `ack` and `error`, and
/// kept with the message so a `retry` can find it. Any JSON value of at
/// most [`MAX_REF_BYTES`] is accepted; a string or a number is the norm.
pub type Ref = Value;

/// Longest `ref`, as JSON: it is stored with every message.
pub const MAX_REF_BYTES: usize = 128;

/// Frames a client sends.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Start receiving `room`'s messages; answered with `joined`.
    /// A direct room (`@a:b`) can be joined only by `a` or `b`.
    Join { room: String },
    /// After a reconnect: join each room again, and get in its `joined`
    /// the messages after the given `seq` (the last one the client has)
    /// instead of the latest page, so nothing is missed or shown twice.
    Resume {
        rooms: std::collections::BTreeMap<String, u64>,
    },
    /// Stop receiving `room`'s messages.
    Leave { room: String },
    /// Post `text` to a joined room; answered with `ack` (or `error`).
    Send {
        room: String,
        text: String,
        #[serde(rename = "ref", default)]
        reference: Option<Ref>,
        #[serde(default)]
        delivery: Delivery,
        /// As [`MessageOptions::retry`].
        #[serde(default)]
        retry: bool,
    },
    /// Tell the room's other members whether this user is typing.
    Typing { room: String, active: bool },
    /// Fetch up to `limit` messages with `seq < before` (newest if absent).
    History {
        room: String,
        #[serde(default)]
        before: Option<u64>,
        #[serde(default)]
        limit: Option<u32>,
    },
    /// Send `text` to user `to`, in the direct room `@a:b` of the two names
    /// sorted. Both users' connections receive it without joining. If `to`
    /// has no connection anywhere, it waits for them (`pending`,
    /// `fetch_missed`). With `confirm`, the sender gets `delivered` once it
    /// reaches a connection of `to`.
    Direct {
        to: String,
        text: String,
        #[serde(flatten)]
        options: MessageOptions,
    },
    /// A direct message to each of `to` (at most [`MAX_GROUP_RECIPIENTS`]),
    /// each in its own direct room: one `ack` (or `error`) per recipient,
    /// all with this `ref`.
    Group {
        to: Vec<String>,
        text: String,
        #[serde(flatten)]
        options: MessageOptions,
    },
    /// Fetch up to `limit` (default and at most [`MAX_FETCH_MISSED`]) of the
    /// direct messages that reached none of this user's connections, oldest
    /// first, as `message` frames, then `fetch_missed_complete`. Each is
    /// handed out once, to one connection.
    FetchMissed {
        #[serde(default)]
        limit: Option<u32>,
    },
    /// This user has read `room` up to `seq`; its members are told.
    Read { room: String, seq: u64 },
    /// Answered with `pong`: lets a client that cannot see WebSocket pings
    /// (a browser) tell a live connection from a replica that stopped.
    Ping,
}

impl ClientFrame {
    /// Its `type`, one of [`FRAME_KINDS`].
    pub fn kind(&self) -> &'static str {
        match self {
            ClientFrame::Join { .. } => "join",
            ClientFrame::Resume { .. } => "resume",
            ClientFrame::Leave { .. } => "leave",
            ClientFrame::Send { .. } => "send",
            ClientFrame::Typing { .. } => "typing",
            ClientFrame::History { .. } => "history",
            ClientFrame::Direct { .. } => "direct",
            ClientFrame::Group { .. } => "group",
            ClientFrame::FetchMissed { .. } => "fetch_missed",
            ClientFrame::Read { .. } => "read",
            ClientFrame::Ping => "ping",
        }
    }
}

/// The variant names of [`ClientFrame`], to tell an unknown `type` from a
/// known one with bad fields.
pub const FRAME_KINDS: &[&str] = &[
    "join",
    "resume",
    "leave",
    "send",
    "typing",
    "history",
    "direct",
    "group",
    "fetch_missed",
    "read",
    "ping",
];

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
    /// The authorization webhook refused this message or join.
    Forbidden,
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
            ErrorCode::AuthorizationUnavailable => "authorization_unavailable",
        }
    }
}

/// A chat message as clients see it.
#[derive(Debug, Serialize)]
pub struct WireMessage<'a> {
    pub room: &'a str,
    /// `null` for a `fast` message seen live; it has one once stored.
    pub seq: Option<u64>,
    /// Unique per message: tells a `fast` message seen live from its stored
    /// copy in history.
    pub id: &'a str,
    pub from: &'a str,
    pub avatar: Option<&'a str>,
    pub text: &'a str,
    /// RFC 3339, UTC, millisecond precision.
    pub ts: String,
}

impl<'a> From<&'a StoredMessage> for WireMessage<'a> {
    fn from(message: &'a StoredMessage) -> Self {
        Self {
            room: &message.room,
            seq: (!message.fast).then_some(message.seq),
            id: &message.id,
            from: &message.from,
            avatar: message.avatar.as_deref(),
            text: &message.text,
            ts: rfc3339(message.ts),
        }
    }
}

/// Frames the server sends.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    /// A new message in a joined room, or a direct message (room `@a:b`).
    /// The sender receives its own messages too.
    Message(WireMessage<'a>),
    /// `ref`'s message is stored as `seq` of `room`.
    Ack {
        #[serde(rename = "ref")]
        reference: Option<&'a Ref>,
        room: &'a str,
        seq: u64,
    },
    /// Answer to `join`: the latest messages (oldest first), who is online,
    /// and how far members have read (furthest first).
    Joined {
        room: &'a str,
        history: Vec<WireMessage<'a>>,
        online: &'a [String],
        read: Vec<ReadPosition<'a>>,
        /// Only in answer to `resume`: `true` when `history` holds every
        /// message after the client's `seq`, `false` when it does not (more
        /// were missed than a replay carries, or the store was unavailable):
        /// page back with `history` to fill the hole.
        #[serde(skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
    },
    /// `user` has read `room` up to `seq`.
    Read {
        room: &'a str,
        user: &'a str,
        seq: u64,
    },
    /// The direct message acked as `seq` of `room` under `ref` reached a
    /// connection of `to` (sent to every connection of the sender).
    Delivered {
        #[serde(rename = "ref")]
        reference: &'a Value,
        to: &'a str,
        room: &'a str,
        seq: u64,
    },
    /// After connecting: `count` direct messages reached none of this
    /// user's connections while they were away; `fetch_missed` gets them.
    Pending { count: u64 },
    /// Ends a `fetch_missed` answer; `left` more wait (fetch again until 0).
    FetchMissedComplete { left: u64 },
    /// For admin users: a connection opened on replica `node`.
    UserConnected { user: &'a str, node: &'a str },
    /// For admin users: a connection closed on replica `node`.
    UserDisconnected { user: &'a str, node: &'a str },
    /// The room's online users changed.
    Presence { room: &'a str, online: &'a [String] },
    /// Another member started or stopped typing.
    Typing {
        room: &'a str,
        user: &'a str,
        active: bool,
    },
    /// Answer to `history`, oldest first; empty when there is nothing older.
    History {
        room: &'a str,
        messages: Vec<WireMessage<'a>>,
    },
    /// This replica is shutting down: finish what is in flight (wait for
    /// the acks), then reconnect, which lands on another replica, and
    /// `resume`. The server closes the connection (code 1012) if the client
    /// has not within half its shutdown timeout.
    Reconnect,
    /// Answer to `ping`, after everything sent before it.
    Pong,
    /// A refused frame; `ref` is the refused frame's, when it had one.
    Error {
        code: ErrorCode,
        message: &'a str,
        #[serde(rename = "ref")]
        reference: Option<&'a Ref>,
    },
}

/// How far one member has read a room.
#[derive(Debug, Serialize)]
pub struct ReadPosition<'a> {
    pub user: &'a str,
    pub seq: u64,
}

impl ServerFrame<'_> {
    /// Serializes the frame once, into a buffer that can be shared by every
    /// recipient without copying.
    pub fn encode(&self) -> bytestring::ByteString {
        // Serializing these types cannot fail: all keys are strings and
        // there are no non-finite floats.
        serde_json::to_string(self)
            .expect("server frames always serialize")
            .into()
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
    /// [`crate::metrics::error_sent`], so the protocol imports no metrics).
    pub fn encode(&self) -> bytestring::ByteString {
        ServerFrame::Error {
            code: self.code,
            message: &self.message,
            reference: self.reference.as_ref(),
        }
        .encode()
    }
}

/// Parses a text frame, telling apart broken JSON, an unknown `type` and bad
/// fields, and keeping the frame's `ref` so the error can be correlated.
pub fn parse(text: &str) -> Result<ClientFrame, Rejected> {
    let value: Value = super::json::parse(text).map_err(|err| {
        Rejected::new(ErrorCode::Malformed, format!("not valid JSON: {err}"), None)
    })?;
    let Value::Object(fields) = &value else {
        return Err(Rejected::new(
            ErrorCode::Malformed,
            "a frame must be a JSON object",
            None,
        ));
    };
    let reference = fields.get("ref").cloned();
    if reference
        .as_ref()
        .is_some_and(|reference| reference.to_string().len() > MAX_REF_BYTES)
    {
        return Err(Rejected::new(
            ErrorCode::InvalidFrame,
            format!("ref is longer than {MAX_REF_BYTES} bytes as JSON"),
            None,
        ));
    }
    match fields.get("type").and_then(Value::as_str) {
        Some(kind) if FRAME_KINDS.contains(&kind) => {}
        Some(kind) => {
            return Err(Rejected::new(
                ErrorCode::UnknownType,
                format!("unknown frame type {kind:?}"),
                reference,
            ))
        }
        None => {
            return Err(Rejected::new(
                ErrorCode::UnknownType,
                "a frame needs a string field \"type\"",
                reference,
            ))
        }
    }
    let frame: ClientFrame = serde_json::from_value(value)
        .map_err(|err| Rejected::new(ErrorCode::InvalidFrame, err.to_string(), reference))?;
    let retry_without_ref = match &frame {
        ClientFrame::Send {
            retry, reference, ..
        } => *retry && reference.is_none(),
        ClientFrame::Direct { options, .. } | ClientFrame::Group { options, .. } => {
            options.retry && options.reference.is_none()
        }
        _ => false,
    };
    if retry_without_ref {
        return Err(Rejected::new(
            ErrorCode::InvalidFrame,
            "retry needs the ref of the frame it repeats",
            None,
        ));
    }
    Ok(frame)
}

/// The `ref` of a frame, whatever else it holds (for refusing it without
/// making sense of the rest).
pub fn peek_reference(text: &str) -> Option<Ref> {
    #[derive(Deserialize)]
    struct Peek {
        #[serde(rename = "ref")]
        reference: Option<Ref>,
    }
    serde_json::from_str::<Peek>(text).ok()?.reference
}

/// Whether `c` shows anything: not a space, a control character, or one
/// of the characters that render as nothing (zero-width spaces and
/// joiners, direction marks, fillers, variation selectors, tags), of
/// which a message made only of would be a blank that looks like text.
fn is_visible(c: char) -> bool {
    !(c.is_whitespace()
        || c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}'
            | '\u{17B5}' | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{2800}' | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}' | '\u{E0000}'..='\u{E0FFF}'))
}

/// Checks a message text against the protocol's limits.
pub fn check_text(text: &str, reference: Option<&Ref>) -> Result<(), Rejected> {
    if !text.chars().any(is_visible) {
        return Err(Rejected::new(
            ErrorCode::EmptyText,
            "message text is empty or shows nothing (only spaces or invisible characters)",
            reference.cloned(),
        ));
    }
    let chars = text.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(Rejected::new(
            ErrorCode::TextTooLong,
            format!("message text has {chars} characters; at most {MAX_TEXT_CHARS} are allowed"),
            reference.cloned(),
        ));
    }
    Ok(())
}

/// A store time as the wire shows it: RFC 3339, UTC, milliseconds.
pub fn rfc3339(ts: Millis) -> String {
    let nanos = i128::from(ts) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|at| {
            at.format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_code_names_are_the_wire_names() {
        for code in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }

    #[test]
    fn parses_every_client_frame() {
        assert_eq!(
            parse(r#"{"type":"send","room":"general","text":"hi","ref":7}"#),
            Ok(ClientFrame::Send {
                room: "general".into(),
                text: "hi".into(),
                reference: Some(json!(7)),
                delivery: Delivery::Reliable,
                retry: false,
            })
        );
        assert_eq!(
            parse(r#"{"type":"history","room":"r"}"#),
            Ok(ClientFrame::History {
                room: "r".into(),
                before: None,
                limit: None,
            })
        );
        assert!(matches!(
            parse(r#"{"type":"direct","to":"bob","text":"x"}"#),
            Ok(ClientFrame::Direct {
                options: MessageOptions {
                    delivery: Delivery::Reliable,
                    confirm: false,
                    ..
                },
                ..
            })
        ));
        assert!(matches!(
            parse(r#"{"type":"group","to":["a","b"],"text":"x","delivery":"fast","confirm":true}"#),
            Ok(ClientFrame::Group {
                options: MessageOptions {
                    delivery: Delivery::Fast,
                    confirm: true,
                    ..
                },
                ..
            })
        ));
        assert_eq!(
            parse(r#"{"type":"fetch_missed"}"#),
            Ok(ClientFrame::FetchMissed { limit: None })
        );
        assert_eq!(parse(r#"{"type":"ping"}"#), Ok(ClientFrame::Ping));
        assert_eq!(ServerFrame::Pong.encode(), r#"{"type":"pong"}"#);
        assert_eq!(
            parse(r#"{"type":"send","room":"r","text":"x","delivery":"sometimes"}"#)
                .unwrap_err()
                .code,
            ErrorCode::InvalidFrame
        );
    }

    #[test]
    fn tells_bad_input_apart() {
        assert_eq!(parse("{nope").unwrap_err().code, ErrorCode::Malformed);
        assert_eq!(parse("[1,2]").unwrap_err().code, ErrorCode::Malformed);
        let unknown = parse(r#"{"type":"shout","ref":"r1"}"#).unwrap_err();
        assert_eq!(unknown.code, ErrorCode::UnknownType);
        assert_eq!(unknown.reference, Some(json!("r1")));
        let missing = parse(r#"{"type":"send","room":"x","ref":3}"#).unwrap_err();
        assert_eq!(missing.code, ErrorCode::InvalidFrame);
        assert!(missing.message.contains("text"), "{}", missing.message);
        assert_eq!(missing.reference, Some(json!(3)));
    }

    #[test]
    fn a_retry_names_its_ref_and_a_ref_is_short() {
        assert!(matches!(
            parse(r#"{"type":"send","room":"r","text":"x","ref":"a-1","retry":true}"#),
            Ok(ClientFrame::Send { retry: true, .. })
        ));
        let unnamed = parse(r#"{"type":"direct","to":"bob","text":"x","retry":true}"#).unwrap_err();
        assert_eq!(unnamed.code, ErrorCode::InvalidFrame);
        let long = format!(
            r#"{{"type":"send","room":"r","text":"x","ref":"{}"}}"#,
            "r".repeat(MAX_REF_BYTES)
        );
        let refused = parse(&long).unwrap_err();
        assert_eq!(refused.code, ErrorCode::InvalidFrame);
        assert_eq!(refused.reference, None, "a refused ref is not echoed");
        let longest = format!(
            r#"{{"type":"send","room":"r","text":"x","ref":"{}"}}"#,
            "r".repeat(MAX_REF_BYTES - 2)
        );
        assert!(parse(&longest).is_ok());
    }

    #[test]
    fn text_limits_count_characters_not_bytes() {
        assert!(check_text(&"é".repeat(MAX_TEXT_CHARS), None).is_ok());
        assert_eq!(
            check_text(&"é".repeat(MAX_TEXT_CHARS + 1), None)
                .unwrap_err()
                .code,
            ErrorCode::TextTooLong
        );
        assert_eq!(
            check_text(" \n", None).unwrap_err().code,
            ErrorCode::EmptyText
        );
    }

    #[test]
    fn a_text_of_invisible_characters_is_empty_and_one_visible_one_is_not() {
        for blank in [
            "\u{200B}\u{200B}",
            "\u{3164}",
            "\u{2800} \u{FEFF}",
            "\u{E0041}\u{E007F}",
        ] {
            assert_eq!(
                check_text(blank, None).unwrap_err().code,
                ErrorCode::EmptyText,
                "{blank:?}"
            );
        }
        for shown in ["a\u{200B}", "👍", "👨\u{200D}👩", "مرحبا", "\u{00A0}."] {
            assert!(check_text(shown, None).is_ok(), "{shown:?}");
        }
    }

    #[test]
    fn a_frame_with_a_repeated_key_is_malformed() {
        let frame = r#"{"type":"send","room":"a","text":"hi","room":"b"}"#;
        assert_eq!(parse(frame).unwrap_err().code, ErrorCode::Malformed);
    }

    #[test]
    fn messages_render_as_documented() {
        let stored = StoredMessage {
            room: "general".into(),
            seq: 3,
            from: "alice".into(),
            text: "<b>hi</b>".into(),
            ts: 1_700_000_000_123,
            avatar: None,
            id: "00000000000000ab".into(),
            fast: false,
        };
        let frame: Value =
            serde_json::from_str(&ServerFrame::Message(WireMessage::from(&stored)).encode())
                .unwrap();
        assert_eq!(
            frame,
            json!({"type":"message","room":"general","seq":3,"id":"00000000000000ab","from":"alice",
                   "avatar":null,"text":"<b>hi</b>","ts":"2023-11-14T22:13:20.123Z"})
        );
        let live_fast = StoredMessage {
            fast: true,
            ..stored
        };
        let frame: Value =
            serde_json::from_str(&ServerFrame::Message(WireMessage::from(&live_fast)).encode())
                .unwrap();
        assert_eq!(
            frame["seq"],
            Value::Null,
            "a fast message is seen live without a seq"
        );
    }
}
