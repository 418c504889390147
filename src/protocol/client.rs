//! Frames a client sends, how they are parsed, and the limits on what
//! they carry.

use serde::Deserialize;
use serde_json::Value;

use super::{ErrorCode, Rejected, MAX_TEXT_CHARS};

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

/// Longest message `id` an edit or a delete may name; the server's own
/// are 20 characters.
pub const MAX_ID_BYTES: usize = 64;

/// Whether `reference` is over [`MAX_REF_BYTES`] as JSON.
pub(super) fn ref_too_long(reference: &Ref) -> bool {
    reference.to_string().len() > MAX_REF_BYTES
}

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
    /// Make message `id` of `room` (the sender's own, in a joined room or
    /// their direct room) say `text`; answered with `ack` (the edit's own
    /// `seq`) or `error` (`not_found`, `forbidden`, the text's codes).
    Edit {
        room: String,
        id: String,
        text: String,
        #[serde(rename = "ref", default)]
        reference: Option<Ref>,
        /// As [`MessageOptions::retry`].
        #[serde(default)]
        retry: bool,
    },
    /// Take message `id` of `room` back (the sender's own; operators may
    /// delete any): its text is erased from the store. Answered like `edit`.
    Delete {
        room: String,
        id: String,
        #[serde(rename = "ref", default)]
        reference: Option<Ref>,
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
    /// A direct message to each of `to` (at most [`MAX_GROUP_RECIPIENTS`](super::MAX_GROUP_RECIPIENTS)),
    /// each in its own direct room: one `ack` (or `error`) per recipient,
    /// all with this `ref`.
    Group {
        to: Vec<String>,
        text: String,
        #[serde(flatten)]
        options: MessageOptions,
    },
    /// Fetch up to `limit` (default and at most [`MAX_FETCH_MISSED`](super::MAX_FETCH_MISSED)) of the
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
            ClientFrame::Edit { .. } => "edit",
            ClientFrame::Delete { .. } => "delete",
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
    "edit",
    "delete",
    "typing",
    "history",
    "direct",
    "group",
    "fetch_missed",
    "read",
    "ping",
];

/// Parses a text frame, telling apart broken JSON, an unknown `type` and bad
/// fields, and keeping the frame's `ref` so the error can be correlated.
///
/// A well-formed frame is read in one pass (`protocol/fields.rs`); anything
/// else is read again the careful way, which names what is wrong.
pub fn parse(text: &str) -> Result<ClientFrame, Rejected> {
    match super::fields::read(text) {
        Some(frame) if passes(&frame).is_ok() => Ok(frame),
        _ => parse_carefully(text),
    }
}

/// [`parse`] through a JSON tree: every frame, and every refusal's reason.
pub fn parse_carefully(text: &str) -> Result<ClientFrame, Rejected> {
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
    if reference.as_ref().is_some_and(ref_too_long) {
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
    passes(&frame)?;
    Ok(frame)
}

/// The rule across a frame's fields: no `retry` without the `ref` it
/// repeats.
fn passes(frame: &ClientFrame) -> Result<(), Rejected> {
    let (reference, retry) = match frame {
        ClientFrame::Send {
            retry, reference, ..
        }
        | ClientFrame::Edit {
            retry, reference, ..
        }
        | ClientFrame::Delete {
            retry, reference, ..
        } => (reference, *retry),
        ClientFrame::Direct { options, .. } | ClientFrame::Group { options, .. } => {
            (&options.reference, options.retry)
        }
        _ => return Ok(()),
    };
    if retry && reference.is_none() {
        return Err(Rejected::new(
            ErrorCode::InvalidFrame,
            "retry needs the ref of the frame it repeats",
            None,
        ));
    }
    Ok(())
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
        || INVISIBLE
            .iter()
            .any(|(first, last)| (*first..=*last).contains(&c)))
}

/// The characters that render as nothing, besides spaces and controls.
const INVISIBLE: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),
    ('\u{034F}', '\u{034F}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{115F}', '\u{1160}'),
    ('\u{17B4}', '\u{17B5}'),
    ('\u{180B}', '\u{180F}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{206F}'),
    ('\u{2800}', '\u{2800}'),
    ('\u{3164}', '\u{3164}'),
    ('\u{FE00}', '\u{FE0F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFA0}', '\u{FFA0}'),
    ('\u{E0000}', '\u{E0FFF}'),
];

/// A regular expression (JSON Schema's dialect) that a text matches when
/// it shows something: one character that is not a space, a control or
/// one of `INVISIBLE`. Built from the same table as the check, for the
/// OpenAPI document. The tag characters (U+E0000 and up) cannot be
/// written in a pattern without the `u` flag; a text of nothing but them
/// is the one thing the pattern lets through and the check refuses.
pub fn visible_text_pattern() -> String {
    let mut class = String::from("[^\\s\\x00-\\x1f\\x7f-\\x9f");
    for (first, last) in INVISIBLE
        .iter()
        .filter(|(first, _)| u32::from(*first) <= 0xFFFF)
    {
        class.push_str(&format!("\\u{:04x}", u32::from(*first)));
        if first != last {
            class.push_str(&format!("-\\u{:04x}", u32::from(*last)));
        }
    }
    class.push(']');
    class
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
