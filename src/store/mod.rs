//! Persistence: one [`Store`] trait, one implementation per backend.
//!
//! A room's messages and the changes to them go in as [`NewEvent`]s and
//! come out as the room's [`Event`]s; each backend keeps its own row or
//! document type and converts at its edge. A message reads back in its
//! current state: an edit rewrites its text, a delete erases it (and the
//! text of its edits) from the store.
//!
//! Everything the chat keeps — accounts, room messages, HTTP sessions and the
//! cookie-signing secret — goes through this trait, so the actors and HTTP
//! handlers never know which database is behind it. The embedded
//! [`sqlite::SqliteStore`] is the default; [`mongo::MongoStore`] is the one
//! replicas share.
//!
//! Sequence numbers are allocated by the store, not by the room actor, so
//! that several processes writing the same room (replicas sharing one
//! database) can never hand out the same `seq` twice.

pub mod backlog;
pub mod bounded;
pub mod mongo;
pub mod session;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

use crate::event::Event;
pub use crate::event::Millis;
use crate::protocol::{ErrorCode, Ref, Rejected};

/// A registered account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    /// PHC-format argon2 hash.
    pub password_hash: String,
    /// URL path of the profile photo, e.g. `/avatars/3f2a….png`.
    pub avatar: Option<String>,
    /// Made (or taken over) by the operator with `rookery create-user`,
    /// not registered through the login form: only such an account can be
    /// one of `ADMIN_USERS`.
    pub operator: bool,
}

/// An event waiting to be persisted; the store gives it its `seq`.
#[derive(Clone, Debug)]
pub struct NewEvent {
    /// Unique, chosen by the server before storing (see [`new_message_id`]).
    pub id: String,
    pub from: String,
    pub draft: Draft,
    /// A direct message's recipient: the message stays *undelivered* for
    /// them until one of their connections receives it or they fetch it.
    pub to: Option<String>,
    /// The sender's `ref`, as JSON, when it asked to hear of the delivery.
    pub confirm: Option<String>,
    /// The sender's `ref`, as JSON, kept so a retry can find the message.
    pub reference: Option<String>,
    /// A retry: if the room's newest [`RETRY_SCAN`] messages hold one from
    /// the same sender with the same `reference` and text, the newest such
    /// is returned in this one's place and nothing is stored.
    pub retry: bool,
}

/// What a new event does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Draft {
    /// Posts a message saying this.
    Message(String),
    /// Makes message `target` (an id of the same room) say `text`, unless
    /// it was deleted by then (the edit is stored without its text).
    Edit { target: String, text: String },
    /// Takes message `target` back: its text and its edits' are erased.
    Delete { target: String },
}

impl Draft {
    /// What it says: a message's or an edit's text, nothing for a delete.
    pub fn text(&self) -> &str {
        match self {
            Self::Message(text) | Self::Edit { text, .. } => text,
            Self::Delete { .. } => "",
        }
    }

    /// The message a change is made to.
    pub fn target(&self) -> Option<&str> {
        match self {
            Self::Edit { target, .. } | Self::Delete { target } => Some(target),
            Self::Message(_) => None,
        }
    }

    /// The same draft saying `text` (a delete says nothing): what it is as
    /// stored once its text was edited or erased.
    pub fn with_text(&self, text: String) -> Self {
        match self {
            Self::Message(_) => Self::Message(text),
            Self::Edit { target, .. } => Self::Edit {
                target: target.clone(),
                text,
            },
            Self::Delete { target } => Self::Delete {
                target: target.clone(),
            },
        }
    }

    /// How the stores name the kind of event in a row or document.
    pub fn kind(&self) -> EventKind {
        match self {
            Self::Message(_) => EventKind::Message,
            Self::Edit { .. } => EventKind::Edit,
            Self::Delete { .. } => EventKind::Delete,
        }
    }

    /// The event it becomes, stored as `seq` at `ts`.
    pub fn into_event(self, room: &str, seq: u64, id: String, from: String, ts: Millis) -> Event {
        match self {
            Self::Message(text) => Event::message(room, seq, id, from, ts, text),
            Self::Edit { target, text } => Event::edit(room, seq, id, from, ts, target, text),
            Self::Delete { target } => Event::delete(room, seq, id, from, ts, target),
        }
    }
}

/// The kind of a stored event, as both stores keep it (a number in a
/// column, a field of a document); rows written before there were kinds
/// are messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Message = 0,
    Edit = 1,
    Delete = 2,
}

impl EventKind {
    pub fn from_stored(kind: i64) -> Option<Self> {
        match kind {
            0 => Some(Self::Message),
            1 => Some(Self::Edit),
            2 => Some(Self::Delete),
            _ => None,
        }
    }
}

/// A stored event as a row or document holds it: each store reads its own
/// shape into this, and this into the room's [`Event`].
pub(crate) struct StoredEvent {
    pub room: String,
    pub seq: u64,
    pub id: String,
    pub from: String,
    pub ts: Millis,
    pub kind: i64,
    /// A message's current text, or an edit's (empty once deleted).
    pub text: String,
    pub target: Option<String>,
    pub avatar: Option<String>,
    /// A direct message that reached its recipient.
    pub delivered: bool,
    pub edited: Option<Millis>,
    pub deleted: bool,
}

impl StoredEvent {
    pub fn into_event(self) -> Event {
        let target = self.target.unwrap_or_default();
        let (room, id, from) = (self.room, self.id, self.from);
        let event = match EventKind::from_stored(self.kind) {
            Some(EventKind::Edit) => {
                Event::edit(room, self.seq, id, from, self.ts, target, self.text)
            }
            Some(EventKind::Delete) => Event::delete(room, self.seq, id, from, self.ts, target),
            // A kind from a newer build reads as what every build knows.
            Some(EventKind::Message) | None => {
                Event::message(room, self.seq, id, from, self.ts, self.text)
                    .with_delivered(self.delivered)
                    .with_edited(self.edited)
                    .with_deleted(self.deleted)
            }
        };
        event.with_avatar(self.avatar)
    }
}

/// How far back a retry is looked for: a room's newest messages, so the
/// check costs a bounded range read (a retry comes seconds after its
/// original, which is among them in all but the busiest rooms).
pub const RETRY_SCAN: u64 = 10_000;

/// Direct messages kept for one recipient until they connect or fetch
/// them. Past it a direct message is still stored (it is in the
/// conversation's history) but not added to their inbox, so one sender
/// cannot grow somebody's offline mail without bound.
pub const MAX_INBOX: u64 = 10_000;

/// Of a recipient's inbox, what one sender's messages may take: a stranger
/// flooding someone's offline mail fills a tenth of it, and everyone
/// else's direct messages still raise `pending`.
pub const MAX_INBOX_PER_SENDER: u64 = MAX_INBOX / 10;

/// What the store keeps of the messages (`RETENTION_DAYS`,
/// `RETENTION_MESSAGES`); `None` keeps everything. A room's `seq` goes on
/// from where it was whatever is pruned: pruning leaves gaps before the
/// oldest kept message, which a `resume` from before it reports as
/// `recovered:false`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Messages older than this are deleted.
    pub max_age: Option<Millis>,
    /// Each room keeps its newest this many.
    pub per_room: Option<u64>,
}

impl Retention {
    pub fn keeps_everything(&self) -> bool {
        self.max_age.is_none() && self.per_room.is_none()
    }
}

/// Messages one [`Store::prune`] deletes at most, so a first prune of a
/// large history does not hold the store's writer for long.
pub const PRUNE_BATCH: u64 = 10_000;

/// Where a retry's original is.
pub(crate) enum Original {
    Stored(Event),
    /// An earlier message of the same batch (the retry came in twice).
    InBatch(usize),
}

/// The earlier message of `batch` that its message `at` repeats, if any.
pub(crate) fn repeated_in_batch(batch: &[NewEvent], at: usize) -> Option<usize> {
    let message = &batch[at];
    batch[..at].iter().position(|other| {
        other.from == message.from
            && other.reference == message.reference
            && other.draft == message.draft
    })
}

/// Puts the stored originals and the newly stored messages back in batch
/// order: `inserted` holds, in order, one message per `None` of `found`.
pub(crate) fn in_batch_order(found: Vec<Option<Original>>, inserted: Vec<Event>) -> Vec<Event> {
    let mut inserted = inserted.into_iter();
    let mut stored: Vec<Event> = Vec::with_capacity(found.len());
    for found in found {
        let message = match found {
            Some(Original::Stored(original)) => original,
            Some(Original::InBatch(earlier)) => stored[earlier].clone(),
            None => inserted.next().expect("one inserted message per new one"),
        };
        stored.push(message);
    }
    stored
}

/// What an append stored, and what it learned on the way.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Appended {
    /// The batch as stored, one per message, in batch order.
    pub events: Vec<Event>,
    /// Other writers' messages the store read while finding the batch its
    /// seqs (another replica took the next seq first), oldest first. The
    /// room needs them before its own to keep `seq` order; without a broker
    /// it would otherwise read them again. Possibly empty or partial (the
    /// room reads what is missing), never required.
    pub others: Vec<Event>,
}

/// A delivery receipt: a direct message reached its recipient, for the
/// sender who asked to be told (`"confirm":true`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Receipt {
    pub room: String,
    pub seq: u64,
    /// The sender, who is told.
    pub from: String,
    /// The recipient.
    pub to: String,
    /// The sender's `ref`, as JSON.
    pub confirm: String,
}

/// One page of a user's undelivered direct messages, now marked delivered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Missed {
    /// Oldest first.
    pub messages: Vec<Event>,
    /// For the senders of those that asked for a delivery confirmation.
    pub deliveries: Vec<Receipt>,
    /// Undelivered messages still waiting after this page.
    pub left: u64,
}

/// What a store error came from: the driver's error (or a sentence where
/// there is none), kept whole for whoever looks at [`std::error::Error::source`].
/// Shared, because one failed group commit fails every write in it.
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

/// A store operation that failed. The message names the cause too,
/// because logs print the message; clients hear only the code
/// ([`StoreError::rejected`]).
#[derive(Debug, Clone)]
pub enum StoreError {
    /// The backend could not be reached or failed; the operation did not happen.
    Unavailable(Cause),
    /// A uniqueness constraint refused the write (e.g. the user name is taken).
    Conflict,
    /// A write whose outcome cannot be known: the database stopped
    /// answering after it was sent and could not be asked since. It may
    /// have been stored.
    Uncertain(Cause),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unavailable(cause) => write!(f, "store unavailable: {cause}"),
            Self::Conflict => f.write_str("already exists"),
            Self::Uncertain(cause) => write!(f, "outcome unknown: {cause}"),
        }
    }
}

/// Written out rather than derived: the source is the driver's error
/// itself, not the `Arc` that shares it, so a caller can downcast it.
impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unavailable(cause) | Self::Uncertain(cause) => Some(&**cause),
            Self::Conflict => None,
        }
    }
}

impl StoreError {
    /// The operation did not happen, because of `cause`.
    pub fn unavailable(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Unavailable(Arc::from(cause.into()))
    }

    /// The write may or may not have happened, because of `cause`.
    pub fn uncertain(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Uncertain(Arc::from(cause.into()))
    }

    /// What a client is told when the store failed it: the one mapping
    /// from store errors to error codes. `what` names what failed ("history",
    /// "the message"), `then` what the client can count on or should do.
    pub fn rejected(&self, what: &str, then: &str, reference: Option<Ref>) -> Rejected {
        let (code, why) = match self {
            Self::Uncertain(_) => (ErrorCode::StoreUncertain, "the database stopped answering"),
            Self::Unavailable(_) | Self::Conflict => {
                (ErrorCode::StoreUnavailable, "the database is unavailable")
            }
        };
        Rejected::new(code, format!("{what}: {why}; {then}"), reference)
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Where the data lives, for logs; never includes a password.
    fn describe(&self) -> String;

    /// Creates what the store needs (tables, indexes); idempotent. A replica
    /// retries it until it succeeds before it serves anything.
    async fn migrate(&self) -> StoreResult<()>;

    /// Succeeds when the backend answers; drives `/readyz`.
    async fn ping(&self) -> StoreResult<()>;

    /// Creates an account; [`StoreError::Conflict`] if the name is taken.
    async fn create_user(&self, name: &str, password_hash: &str) -> StoreResult<()>;
    async fn find_user(&self, name: &str) -> StoreResult<Option<User>>;
    /// The name of an account that is `name` but for ASCII case (`Alice`
    /// for `alice`), if there is one: registering it would look like them.
    async fn find_name_ignoring_case(&self, name: &str) -> StoreResult<Option<String>>;
    /// Creates `name` as an operator's account, or takes an existing one
    /// over (new password, operator flag set).
    async fn put_operator_account(&self, name: &str, password_hash: &str) -> StoreResult<()>;
    /// Sets (or clears) the profile photo and returns the previous one, so the
    /// caller can delete its file.
    async fn set_avatar(&self, name: &str, avatar: Option<&str>) -> StoreResult<Option<String>>;

    /// Persists `batch` in order as the next messages of `room`. Each message
    /// gets a `seq` above every `seq` stored before it, in batch order; no
    /// `seq` is ever handed out twice or skipped, even with several processes
    /// appending to one room. A [`NewEvent::retry`] found stored comes
    /// back as stored (its own seq, id and time) and takes no seq. On
    /// [`StoreError::Unavailable`] none of the
    /// batch was stored; on [`StoreError::Uncertain`] some or all of it may
    /// have been (a later read shows which).
    async fn append(&self, room: &str, batch: Vec<NewEvent>, ts: Millis) -> StoreResult<Appended>;
    /// Up to `limit` events with `seq < before` (or the newest, if `before`
    /// is `None`), oldest first: the stream's page a join starts from.
    async fn history(&self, room: &str, before: Option<u64>, limit: u32)
        -> StoreResult<Vec<Event>>;
    /// Up to `limit` messages (no changes) with `seq < before` (or the
    /// newest), oldest first, each in its current state: a page to scroll
    /// back through.
    async fn messages(
        &self,
        room: &str,
        before: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<Event>>;
    /// Up to `limit` events with `seq > after`, oldest first: what a room
    /// missed, read in one go.
    async fn after(&self, room: &str, after: u64, limit: u32) -> StoreResult<Vec<Event>>;
    /// Message `id` of `room` in its current state (deleted ones too), if
    /// it is stored: what an edit or a delete is checked against.
    async fn message(&self, room: &str, id: &str) -> StoreResult<Option<Event>>;
    /// Marks `user`'s undelivered direct messages `seqs` of `room` as
    /// delivered (their connection got them), and returns those newly marked
    /// whose sender asked for a confirmation. Marking is atomic per message,
    /// so two replicas marking the same one confirm it once.
    async fn mark_delivered(
        &self,
        user: &str,
        room: &str,
        seqs: Vec<u64>,
    ) -> StoreResult<Vec<Receipt>>;
    /// How many direct messages to `user` are undelivered.
    async fn pending_count(&self, user: &str) -> StoreResult<u64>;
    /// Claims up to `limit` of `user`'s undelivered direct messages, oldest
    /// first, marking them delivered: two connections fetching at once get
    /// different messages, never the same one twice.
    async fn fetch_missed(&self, user: &str, limit: u32) -> StoreResult<Missed>;
    /// Records that `user` has read `room` up to `seq`; positions only move
    /// forward.
    async fn set_read(&self, room: &str, user: &str, seq: u64) -> StoreResult<()>;
    /// The read positions of `room`, furthest first, at most `limit`.
    async fn read_positions(&self, room: &str, limit: u32) -> StoreResult<Vec<(String, u64)>>;

    /// Public (non-direct) rooms, most recently active first.
    async fn recent_rooms(&self, limit: u32) -> StoreResult<Vec<String>>;

    /// The serialized state of a live session, `None` if unknown or expired.
    async fn session_load(&self, key: &str, now: Millis) -> StoreResult<Option<String>>;
    /// Creates a session; `key` is fresh and random.
    async fn session_insert(&self, key: &str, state: &str, expires: Millis) -> StoreResult<()>;
    /// Replaces a live session's state; `false` if it no longer exists, so an
    /// expired or logged-out session is never resurrected.
    async fn session_update(
        &self,
        key: &str,
        state: &str,
        expires: Millis,
        now: Millis,
    ) -> StoreResult<bool>;
    /// Extends a live session to `expires`; an expired one stays expired
    /// (a late touch must not revive a login that timed out).
    async fn session_touch(&self, key: &str, expires: Millis, now: Millis) -> StoreResult<()>;
    async fn session_delete(&self, key: &str) -> StoreResult<()>;

    /// Deletes messages `retention` no longer keeps as of `now`, about
    /// [`PRUNE_BATCH`] at most; how many it deleted (call again while it
    /// is the whole batch).
    async fn prune(&self, retention: Retention, now: Millis) -> StoreResult<u64>;

    /// Returns the secret stored under `name`, storing `candidate` first if
    /// there is none. Every process sharing the store ends up with the same
    /// value (the first writer wins), which keeps session cookies valid across
    /// restarts and replicas.
    async fn secret(&self, name: &str, candidate: Vec<u8>) -> StoreResult<Vec<u8>>;
}

/// Direct rooms (`@alice:bob`, see `chat::names`) stay off the public room list.
pub fn is_direct(room: &str) -> bool {
    room.starts_with('@')
}

/// A fresh event id: the time in milliseconds (12 hex digits), then 8
/// random ones: unique enough per room, cheap to compare, and rising, so
/// the stores' index that finds a message by id grows at one end instead
/// of writing a page at a random place for every message.
pub fn new_message_id() -> String {
    format!("{:012x}{:08x}", now_millis().max(0), rand::random::<u32>())
}

/// The current time in the store's unit.
pub fn now_millis() -> Millis {
    let now = time::OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as Millis
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_of_unknown_outcome_is_never_reported_as_not_stored() {
        let uncertain =
            StoreError::uncertain("timed out").rejected("the message", "it may be stored", None);
        assert_eq!(uncertain.code, ErrorCode::StoreUncertain);
        let down = StoreError::unavailable("refused").rejected("history", "try again", None);
        assert_eq!(down.code, ErrorCode::StoreUnavailable);
        assert_eq!(
            down.message,
            "history: the database is unavailable; try again"
        );
        // What the database said stays in the log, not in the client's frame.
        assert!(!uncertain.message.contains("timed out"));
    }

    #[test]
    fn a_store_error_keeps_its_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = StoreError::unavailable(io);
        let source = std::error::Error::source(&err).expect("the cause is kept");
        let io = source
            .downcast_ref::<std::io::Error>()
            .expect("as the driver's own error");
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
        assert_eq!(err.to_string(), "store unavailable: refused");
    }
}
