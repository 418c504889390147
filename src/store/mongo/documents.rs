//! The documents as stored, and how a stored message becomes the room's
//! event.

use std::collections::HashMap;

use mongodb::bson::{DateTime, Document};
use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::store::{Draft, StoredEvent};

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct UserDoc {
    pub(super) name: String,
    pub(super) password_hash: String,
    #[serde(default)]
    pub(super) avatar: Option<String>,
    pub(super) created: DateTime,
    #[serde(default)]
    pub(super) operator: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct MessageDoc {
    pub(super) room: String,
    pub(super) seq: i64,
    pub(super) from: String,
    pub(super) text: String,
    pub(super) ts: DateTime,
    #[serde(default)]
    pub(super) id: String,
    /// A direct message's recipient, and whether it has reached them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) to: Option<String>,
    #[serde(default = "delivered_by_default")]
    pub(super) delivered: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) confirm: Option<String>,
    /// The sender's ref (JSON), for recognising a retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) client_ref: Option<String>,
    /// What the document is (`store::EventKind`); absent on messages, as
    /// on every document written before there were kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) kind: Option<i64>,
    /// The message an edit or a delete is made to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) target: Option<String>,
    /// A message's last edit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) edited: Option<DateTime>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) deleted: bool,
    /// The seq of the last change made to a message: replicas may apply
    /// two edits out of order, the later seq wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) changed: Option<i64>,
}

/// The `kind` a document of `draft` carries: none for a message, as on
/// every document written before there were kinds.
pub(super) fn stored_kind(draft: &Draft) -> Option<i64> {
    draft.target().map(|_| draft.kind() as i64)
}

/// Messages stored before the offline inbox existed count as delivered.
pub(super) fn delivered_by_default() -> bool {
    true
}

impl MessageDoc {
    /// The room's event this document holds, with its author's photo.
    pub(super) fn into_event(self, avatars: &HashMap<String, String>) -> Event {
        StoredEvent {
            delivered: self.to.is_some() && self.delivered,
            avatar: avatars.get(&self.from).cloned(),
            room: self.room,
            seq: self.seq as u64,
            id: self.id,
            from: self.from,
            ts: self.ts.timestamp_millis(),
            kind: self.kind.unwrap_or(0),
            text: self.text,
            target: self.target,
            edited: self.edited.map(|at| at.timestamp_millis()),
            deleted: self.deleted,
        }
        .into_event()
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SessionDoc {
    #[serde(rename = "_id")]
    pub(super) key: String,
    pub(super) state: String,
    pub(super) expires: DateTime,
}

/// A `rooms` document's `last_seq` (written as a 64-bit integer; read as
/// either width, as other tools may have written it).
pub(super) fn listed_last_seq(room: &Document) -> Option<i64> {
    room.get_i64("last_seq")
        .ok()
        .or_else(|| room.get_i32("last_seq").ok().map(i64::from))
}
