//! The documents as stored, and how a stored message becomes the store's.

use std::collections::HashMap;

use mongodb::bson::{DateTime, Document};
use serde::{Deserialize, Serialize};

use crate::store::StoredMessage;

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
}

/// Messages stored before the offline inbox existed count as delivered.
pub(super) fn delivered_by_default() -> bool {
    true
}

impl MessageDoc {
    pub(super) fn into_stored(self, avatars: &HashMap<String, String>) -> StoredMessage {
        StoredMessage {
            avatar: avatars.get(&self.from).cloned(),
            room: self.room,
            seq: self.seq as u64,
            from: self.from,
            text: self.text,
            ts: self.ts.timestamp_millis(),
            id: self.id,
            fast: false,
            delivered: self.to.is_some() && self.delivered,
        }
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
