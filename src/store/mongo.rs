//! The shared store: MongoDB through the official driver, so every replica
//! sees the same accounts, history and login sessions.
//!
//! Collections and why their indexes look the way they do:
//!
//! | collection | document | indexes |
//! |---|---|---|
//! | `users` | `{name, password_hash, avatar, created}` | `name` unique: logins look users up by name, and registration relies on it to refuse a taken name atomically |
//! | `messages` | `{room, seq, from, text, ts, id}` | `(room, seq)` unique: history pages are range scans on it, and it is what makes `seq` allocation safe (below) |
//! | `rooms` | `{_id: room, last_seq, last_ts, direct}` | `(direct, last_ts)`: the room list on the chat page is "public rooms, newest first" |
//! | `sessions` | `{_id: key, state, expires}` | `expires` with a TTL of 0: MongoDB deletes a session once it expires |
//! | `secrets` | `{_id: name, value}` | `_id` only |
//! | `reads` | `{room, user, seq}` | `(room, user)` unique: one read position per reader, moved forward with `$max` |
//!
//! A direct message to another user also carries `to` and `delivered`
//! (`false` until one of the recipient's connections got it, or they fetched
//! it) and the sender's `confirm` ref; `(to, delivered, ts)` finds a user's
//! undelivered messages.
//!
//! **Sequence numbers.** A message's `seq` is the room's last stored `seq`
//! plus one, and the unique `(room, seq)` index is the arbiter: if another
//! replica took that number first, the insert fails with a duplicate-key
//! error, and the writer re-reads the room's last `seq` and tries again. A
//! number is therefore only ever taken by a message that was actually
//! stored, so there are neither collisions nor gaps, even when an insert
//! fails half-way or the database dies. (A counter document bumped with
//! `$inc` before the insert would leave a hole for every insert that fails
//! after the bump.) Each process remembers the last `seq` it wrote per room,
//! so while one replica is the only writer of a room an append is a single
//! `insert_many` with no read before it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use mongodb::bson::{doc, spec::BinarySubtype, Binary, DateTime, Document};
use mongodb::error::{Error as MongoError, ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, Credential, IndexOptions, ServerAddress, WriteConcern};
use mongodb::{Client, Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

use super::{
    in_batch_order, repeated_in_batch, Appended, Delivery, Millis, Missed, NewMessage, Original,
    Store, StoreError, StoreResult, StoredMessage, User, RETRY_SCAN,
};
use crate::config::MongoConfig;

/// How long an operation waits for a reachable server before failing. The
/// driver's default (30 s) would leave a sender without an answer for that
/// long when the database is down; a URL's `serverSelectionTimeoutMS` wins.
/// Below the store's overall bound (`bounded::OPERATION_TIMEOUT`), so a
/// database that is down answers "not stored" rather than "unknown".
const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(4);
/// How long an append that failed may spend finding out whether it was
/// stored after all.
const CHECK_TIMEOUT: Duration = Duration::from_millis(1500);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// MongoDB's error code for a unique-index violation.
const DUPLICATE_KEY: i32 = 11000;
/// Most of other writers' messages one append reads and hands the room.
const OTHERS_READ: usize = 256;
/// Appends retried after losing a `seq` race before giving up: each lost
/// race means another writer stored a message, so this only runs out under
/// pathological contention.
const MAX_APPEND_ATTEMPTS: usize = 64;

#[derive(Debug, Serialize, Deserialize)]
struct UserDoc {
    name: String,
    password_hash: String,
    #[serde(default)]
    avatar: Option<String>,
    created: DateTime,
    #[serde(default)]
    operator: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct MessageDoc {
    room: String,
    seq: i64,
    from: String,
    text: String,
    ts: DateTime,
    #[serde(default)]
    id: String,
    /// A direct message's recipient, and whether it has reached them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    to: Option<String>,
    #[serde(default = "delivered_by_default")]
    delivered: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    confirm: Option<String>,
    /// The sender's ref (JSON), for recognising a retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_ref: Option<String>,
}

/// Messages stored before the offline inbox existed count as delivered.
fn delivered_by_default() -> bool {
    true
}

impl MessageDoc {
    fn into_stored(self, avatars: &HashMap<String, String>) -> StoredMessage {
        StoredMessage {
            avatar: avatars.get(&self.from).cloned(),
            room: self.room,
            seq: self.seq as u64,
            from: self.from,
            text: self.text,
            ts: self.ts.timestamp_millis(),
            id: self.id,
            fast: false,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct SessionDoc {
    #[serde(rename = "_id")]
    key: String,
    state: String,
    expires: DateTime,
}

/// What holds the seqs an insert failed to take.
struct Taken {
    /// How many of the batch are stored there all the same.
    ours: usize,
    /// Other writers' messages after those, oldest first.
    others: Vec<MessageDoc>,
}

pub struct MongoStore {
    db: Database,
    users: Collection<UserDoc>,
    messages: Collection<MessageDoc>,
    rooms: Collection<Document>,
    sessions: Collection<SessionDoc>,
    secrets: Collection<Document>,
    reads: Collection<Document>,
    /// The last `seq` this process stored per room; a hint, checked by the
    /// unique index on every insert.
    last_seq: Mutex<HashMap<String, u64>>,
    target: String,
}

impl MongoStore {
    /// Builds a client from the configuration. Nothing is contacted yet, so
    /// this only fails on a malformed URL; [`Store::migrate`] is the first
    /// round trip.
    pub async fn connect(config: &MongoConfig) -> anyhow::Result<Self> {
        let mut options = match &config.url {
            Some(url) => ClientOptions::parse(url).await?,
            None => {
                let host = config.host.clone().unwrap_or_else(|| "localhost".into());
                let mut options = ClientOptions::builder()
                    .hosts(vec![ServerAddress::Tcp {
                        host,
                        port: Some(config.port),
                    }])
                    .build();
                if let Some(username) = &config.username {
                    // The app user lives in the app's own database, as the
                    // compose and Kubernetes init scripts create it.
                    options.credential = Some(
                        Credential::builder()
                            .username(username.clone())
                            .password(config.password.clone())
                            .source(config.database.clone())
                            .build(),
                    );
                }
                options
            }
        };
        options
            .server_selection_timeout
            .get_or_insert(SERVER_SELECTION_TIMEOUT);
        options.connect_timeout.get_or_insert(CONNECT_TIMEOUT);
        // An ack tells the sender the message is safe, so a write counts only
        // once it is in the journal: w:1 alone is acknowledged from memory
        // and lost if the server is killed right after.
        options
            .write_concern
            .get_or_insert_with(WriteConcern::default)
            .journal
            .get_or_insert(true);
        options.app_name.get_or_insert_with(|| "rookery".into());
        let database = options
            .default_database
            .clone()
            .unwrap_or_else(|| config.database.clone());
        let target = describe(&options, &database);
        let client = Client::with_options(options)?;
        let db = client.database(&database);
        Ok(Self {
            users: db.collection("users"),
            messages: db.collection("messages"),
            rooms: db.collection("rooms"),
            sessions: db.collection("sessions"),
            secrets: db.collection("secrets"),
            reads: db.collection("reads"),
            db,
            last_seq: Mutex::new(HashMap::new()),
            target,
        })
    }

    /// The profile photos of the authors of `messages`, by name.
    async fn avatars_of(&self, messages: &[MessageDoc]) -> StoreResult<HashMap<String, String>> {
        let mut authors: Vec<&str> = messages.iter().map(|m| m.from.as_str()).collect();
        authors.sort_unstable();
        authors.dedup();
        let mut avatars = HashMap::new();
        if authors.is_empty() {
            return Ok(avatars);
        }
        let mut users = self
            .users
            .find(doc! { "name": { "$in": authors }, "avatar": { "$ne": null } })
            .await
            .map_err(unavailable)?;
        while users.advance().await.map_err(unavailable)? {
            let user = users.deserialize_current().map_err(unavailable)?;
            if let Some(avatar) = user.avatar {
                avatars.insert(user.name, avatar);
            }
        }
        Ok(avatars)
    }

    /// The highest stored `seq` of `room`, 0 if it has none.
    async fn stored_last_seq(&self, room: &str) -> StoreResult<u64> {
        let newest = self
            .messages
            .find_one(doc! { "room": room })
            .sort(doc! { "seq": -1 })
            .await
            .map_err(unavailable)?;
        Ok(newest.map_or(0, |message| message.seq as u64))
    }

    /// After a failed insert of `pending` at the seqs after `last`: what
    /// holds those seqs now. An ordered insert stores a prefix, each message
    /// at the seq it was given, so the ids read back tell how much of
    /// `pending` is stored; what follows them is other writers' messages.
    /// Bounded by [`CHECK_TIMEOUT`].
    async fn taken_after(
        &self,
        room: &str,
        last: u64,
        pending: &[NewMessage],
    ) -> StoreResult<Taken> {
        let read = async {
            let mut cursor = self
                .messages
                .find(doc! { "room": room, "seq": { "$gt": last as i64 } })
                .sort(doc! { "seq": 1 })
                .limit((pending.len() + OTHERS_READ) as i64)
                .await
                .map_err(unavailable)?;
            let mut found = Vec::new();
            while cursor.advance().await.map_err(unavailable)? {
                found.push(cursor.deserialize_current().map_err(unavailable)?);
            }
            let ours = found
                .iter()
                .zip(pending)
                .enumerate()
                .take_while(|(offset, (doc, message))| {
                    doc.seq as u64 == last + 1 + *offset as u64 && doc.id == message.id
                })
                .count();
            let others = found.split_off(ours);
            Ok(Taken { ours, others })
        };
        tokio::time::timeout(CHECK_TIMEOUT, read)
            .await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("no answer".into())))
    }

    /// Stores `batch` as the room's next messages (see [`Store::append`]).
    async fn insert(&self, room: &str, batch: &[NewMessage], ts: Millis) -> StoreResult<Appended> {
        // How full each recipient's inbox is (a direct room has two)
        // decides which of the batch go in it, decided once for the batch.
        let mut room_for: HashMap<&str, u64> = HashMap::new();
        let mut in_inbox = Vec::with_capacity(batch.len());
        for message in batch {
            let Some(recipient) = message.to.as_deref() else {
                in_inbox.push(false);
                continue;
            };
            if !room_for.contains_key(recipient) {
                let waiting = self
                    .messages
                    .count_documents(doc! { "to": recipient, "delivered": false })
                    .await
                    .map_err(unavailable)?;
                room_for.insert(recipient, super::MAX_INBOX.saturating_sub(waiting));
            }
            let left = room_for.get_mut(recipient).expect("just counted");
            in_inbox.push(*left > 0);
            *left = left.saturating_sub(1);
        }
        let mut stored = Vec::with_capacity(batch.len());
        let mut others: Vec<MessageDoc> = Vec::new();
        let mut pending = batch;
        let mut attempts = 0;
        // Where the next insert goes: after what this process last stored
        // here, or after what another writer was just seen storing.
        let mut after = self.remembered_last_seq(room);
        while !pending.is_empty() {
            attempts += 1;
            let last = match after.take() {
                Some(seq) => seq,
                None => self.stored_last_seq(room).await?,
            };
            let docs = pending
                .iter()
                .enumerate()
                .map(|(offset, message)| MessageDoc {
                    room: room.to_owned(),
                    seq: (last + 1 + offset as u64) as i64,
                    from: message.from.clone(),
                    text: message.text.clone(),
                    ts: DateTime::from_millis(ts),
                    id: message.id.clone(),
                    to: message.to.clone(),
                    delivered: !in_inbox[batch.len() - pending.len() + offset],
                    confirm: message.confirm.clone(),
                    client_ref: message.reference.clone(),
                });
            let started = std::time::Instant::now();
            let result = self.messages.insert_many(docs).ordered(true).await;
            let metrics = crate::metrics::get();
            metrics
                .store_commit_seconds
                .observe(started.elapsed().as_secs_f64());
            metrics.store_batch_messages.observe(pending.len() as f64);
            let inserted = match result {
                Ok(_) => pending.len(),
                Err(err) => {
                    // Whatever happened, the remembered seq may be stale now.
                    self.remember_last_seq(room, None);
                    // Part of the batch is stored already: the whole of it
                    // is neither stored nor not, so the answer is unknown
                    // (the stored part arrives by itself).
                    let failed = |err: MongoError| {
                        if stored.is_empty() {
                            unavailable(err)
                        } else {
                            StoreError::Uncertain(format!("part of the batch is stored: {err}"))
                        }
                    };
                    match inserted_before_duplicate(&err) {
                        // Usually another replica took these seqs first. But
                        // the driver retries an insert whose connection broke
                        // (retryable writes), and a server that does not
                        // recognise the retry refuses it on our own first
                        // copy: re-inserting at new seqs would store the
                        // messages twice. The ids at the seqs tell which.
                        Some(count) if attempts < MAX_APPEND_ATTEMPTS => {
                            match self.taken_after(room, last, pending).await {
                                Ok(taken) => {
                                    let ours = taken.ours.max(count);
                                    // The seqs after ours are another
                                    // writer's: the next try goes after
                                    // them, and the room gets them with
                                    // the batch instead of reading them.
                                    if taken.ours >= count {
                                        if let Some(newest) = taken.others.last() {
                                            after = Some(newest.seq as u64);
                                        }
                                        if others.len() < OTHERS_READ {
                                            others.extend(taken.others);
                                        }
                                    }
                                    ours
                                }
                                Err(check) => {
                                    return Err(StoreError::Uncertain(format!(
                                        "{err}; checking whose messages hold these seqs failed: {check}"
                                    )))
                                }
                            }
                        }
                        Some(_) => return Err(failed(err)),
                        // Never sent: no server to send it to.
                        None if matches!(*err.kind, ErrorKind::ServerSelection { .. }) => {
                            return Err(failed(err))
                        }
                        None => match self
                            .taken_after(room, last, pending)
                            .await
                            .map(|taken| taken.ours)
                        {
                            // The insert may have gone in before the error;
                            // the connection it went on is gone, so what is
                            // not there now never will be.
                            Ok(0) => return Err(failed(err)),
                            Ok(count) => {
                                tracing::info!(%room, count, error = %err, "an insert that failed had been stored");
                                count
                            }
                            Err(check) => {
                                return Err(StoreError::Uncertain(format!(
                                    "{err}; checking what was stored failed too: {check}"
                                )))
                            }
                        },
                    }
                }
            };
            for (offset, message) in pending[..inserted].iter().enumerate() {
                stored.push(StoredMessage {
                    room: room.to_owned(),
                    seq: last + 1 + offset as u64,
                    from: message.from.clone(),
                    text: message.text.clone(),
                    ts,
                    avatar: None,
                    id: message.id.clone(),
                    fast: false,
                });
            }
            if inserted == pending.len() {
                self.remember_last_seq(room, Some(last + inserted as u64));
            }
            pending = &pending[inserted..];
        }
        if let Some(newest) = stored.last() {
            // Only feeds the room list; a failure here must not fail a send
            // whose messages are already stored.
            let activity = self
                .rooms
                .update_one(
                    doc! { "_id": room },
                    doc! {
                        "$max": { "last_seq": newest.seq as i64, "last_ts": DateTime::from_millis(ts) },
                        "$set": { "direct": super::is_direct(room) },
                    },
                )
                .upsert(true)
                .await;
            if let Err(err) = activity {
                tracing::warn!(%room, error = %err, "could not record room activity");
            }
        }
        // The batch is stored whatever happens now: without their photos the
        // others are not worth failing it for (the room reads them again).
        let others = match self.avatars_of(&others).await {
            Ok(avatars) => others
                .into_iter()
                .map(|doc| doc.into_stored(&avatars))
                .collect(),
            Err(err) => {
                tracing::debug!(%room, error = %err, "could not read the photos of other writers' messages");
                Vec::new()
            }
        };
        Ok(Appended {
            messages: stored,
            others,
        })
    }

    /// For each message of `batch`, its original if it is a retry of one
    /// that is stored (among the room's newest [`RETRY_SCAN`]) or earlier
    /// in the batch.
    async fn retried(
        &self,
        room: &str,
        batch: &[NewMessage],
    ) -> StoreResult<Vec<Option<Original>>> {
        // Most batches hold no retry: no read for them (on a busy room a
        // read per batch halved what one replica stored per second).
        if !batch.iter().any(|message| message.retry) {
            return Ok(batch.iter().map(|_| None).collect());
        }
        let newest = self.stored_last_seq(room).await?;
        let floor = newest.saturating_sub(RETRY_SCAN) as i64;
        let mut found = Vec::with_capacity(batch.len());
        for (at, message) in batch.iter().enumerate() {
            let Some(reference) = message.reference.as_ref().filter(|_| message.retry) else {
                found.push(None);
                continue;
            };
            if let Some(earlier) = repeated_in_batch(batch, at) {
                found.push(Some(Original::InBatch(earlier)));
                continue;
            }
            let original = self
                .messages
                .find_one(doc! {
                    "room": room,
                    "seq": { "$gt": floor },
                    "from": &message.from,
                    "client_ref": reference,
                    "text": &message.text,
                })
                .sort(doc! { "seq": -1 })
                .await
                .map_err(unavailable)?;
            found.push(original.map(|doc| Original::Stored(doc.into_stored(&HashMap::new()))));
        }
        Ok(found)
    }

    fn remembered_last_seq(&self, room: &str) -> Option<u64> {
        self.last_seq_map().get(room).copied()
    }

    fn remember_last_seq(&self, room: &str, seq: Option<u64>) {
        let mut map = self.last_seq_map();
        match seq {
            Some(seq) => map.insert(room.to_owned(), seq),
            None => map.remove(room),
        };
    }

    fn last_seq_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        // The map is only a hint; a panic mid-update cannot make it unsafe.
        self.last_seq
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// The server list and database, without credentials, for logs.
fn describe(options: &ClientOptions, database: &str) -> String {
    let hosts: Vec<String> = options.hosts.iter().map(ToString::to_string).collect();
    let user = options
        .credential
        .as_ref()
        .and_then(|credential| credential.username.as_deref())
        .map(|name| format!("{name}@"))
        .unwrap_or_default();
    format!("mongodb://{user}{}/{database}", hosts.join(","))
}

fn unavailable(err: MongoError) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

fn is_duplicate_key(err: &MongoError) -> bool {
    match err.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(write)) => write.code == DUPLICATE_KEY,
        ErrorKind::Command(command) => command.code == DUPLICATE_KEY,
        _ => false,
    }
}

/// For a failed ordered `insert_many`: how many documents went in before a
/// duplicate key stopped it, or `None` if it failed for another reason.
fn inserted_before_duplicate(err: &MongoError) -> Option<usize> {
    let ErrorKind::InsertMany(failure) = err.kind.as_ref() else {
        return None;
    };
    if failure.write_concern_error.is_some() {
        return None;
    }
    let first = failure
        .write_errors
        .as_ref()?
        .iter()
        .min_by_key(|e| e.index)?;
    (first.code == DUPLICATE_KEY).then_some(first.index)
}

fn conflict_or_unavailable(err: MongoError) -> StoreError {
    if is_duplicate_key(&err) {
        StoreError::Conflict
    } else {
        unavailable(err)
    }
}

fn index(keys: Document, options: IndexOptions) -> IndexModel {
    IndexModel::builder().keys(keys).options(options).build()
}

#[async_trait]
impl Store for MongoStore {
    fn describe(&self) -> String {
        self.target.clone()
    }

    async fn migrate(&self) -> StoreResult<()> {
        let named = |name: &str| IndexOptions::builder().name(name.to_owned());
        self.users
            .create_index(index(
                doc! { "name": 1 },
                named("users_by_name").unique(true).build(),
            ))
            .await
            .map_err(unavailable)?;
        self.messages
            .create_index(index(
                doc! { "room": 1, "seq": 1 },
                named("messages_by_room_seq").unique(true).build(),
            ))
            .await
            .map_err(unavailable)?;
        self.messages
            .create_index(index(
                doc! { "to": 1, "delivered": 1, "ts": 1 },
                named("messages_undelivered").build(),
            ))
            .await
            .map_err(unavailable)?;
        self.reads
            .create_index(index(
                doc! { "room": 1, "user": 1 },
                named("reads_by_room_user").unique(true).build(),
            ))
            .await
            .map_err(unavailable)?;
        self.rooms
            .create_index(index(
                doc! { "direct": 1, "last_ts": -1 },
                named("rooms_by_activity").build(),
            ))
            .await
            .map_err(unavailable)?;
        self.sessions
            .create_index(index(
                doc! { "expires": 1 },
                named("sessions_expire")
                    .expire_after(Duration::ZERO)
                    .build(),
            ))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        self.db
            .run_command(doc! { "ping": 1 })
            .await
            .map(drop)
            .map_err(unavailable)
    }

    async fn create_user(&self, name: &str, password_hash: &str) -> StoreResult<()> {
        self.users
            .insert_one(UserDoc {
                name: name.to_owned(),
                password_hash: password_hash.to_owned(),
                avatar: None,
                created: DateTime::now(),
                operator: false,
            })
            .await
            .map(drop)
            .map_err(conflict_or_unavailable)
    }

    async fn find_name_ignoring_case(&self, name: &str) -> StoreResult<Option<String>> {
        // Names are letters, digits and `_-.`: escaping `.` and `-` makes
        // the name a literal pattern.
        let literal: String = name
            .chars()
            .flat_map(|c| match c {
                '.' | '-' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let user = self
            .users
            .find_one(doc! { "name": { "$regex": format!("^{literal}$"), "$options": "i" } })
            .await
            .map_err(unavailable)?;
        Ok(user.map(|user| user.name))
    }

    async fn put_operator_account(&self, name: &str, password_hash: &str) -> StoreResult<()> {
        self.users
            .update_one(
                doc! { "name": name },
                doc! {
                    "$set": { "password_hash": password_hash, "operator": true },
                    "$setOnInsert": { "created": DateTime::now() },
                },
            )
            .upsert(true)
            .await
            .map(drop)
            .map_err(unavailable)
    }

    async fn find_user(&self, name: &str) -> StoreResult<Option<User>> {
        let user = self
            .users
            .find_one(doc! { "name": name })
            .await
            .map_err(unavailable)?;
        Ok(user.map(|user| User {
            name: user.name,
            password_hash: user.password_hash,
            avatar: user.avatar,
            operator: user.operator,
        }))
    }

    async fn set_avatar(&self, name: &str, avatar: Option<&str>) -> StoreResult<Option<String>> {
        // Returning the document as it was before the update hands back the
        // previous photo in the same atomic step.
        let previous = self
            .users
            .find_one_and_update(doc! { "name": name }, doc! { "$set": { "avatar": avatar } })
            .await
            .map_err(unavailable)?;
        Ok(previous.and_then(|user| user.avatar))
    }

    async fn append(
        &self,
        room: &str,
        batch: Vec<NewMessage>,
        ts: Millis,
    ) -> StoreResult<Appended> {
        if !batch.iter().any(|message| message.retry) {
            return self.insert(room, &batch, ts).await;
        }
        // Not atomic with the insert: a retry written by another replica
        // at the same moment as its original can be stored twice. A retry
        // comes after its original's answer failed to arrive, by which
        // time the original is written or never will be.
        let found = self.retried(room, &batch).await?;
        let new: Vec<NewMessage> = batch
            .iter()
            .zip(&found)
            .filter(|(_, found)| found.is_none())
            .map(|(message, _)| message.clone())
            .collect();
        let inserted = self.insert(room, &new, ts).await?;
        Ok(Appended {
            messages: in_batch_order(found, inserted.messages),
            others: inserted.others,
        })
    }

    async fn history(
        &self,
        room: &str,
        before: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        let before = before.map_or(i64::MAX, |seq| seq.min(i64::MAX as u64) as i64);
        let mut cursor = self
            .messages
            .find(doc! { "room": room, "seq": { "$lt": before } })
            .sort(doc! { "seq": -1 })
            .limit(i64::from(limit))
            .await
            .map_err(unavailable)?;
        let mut page = Vec::new();
        while cursor.advance().await.map_err(unavailable)? {
            page.push(cursor.deserialize_current().map_err(unavailable)?);
        }
        page.reverse();
        let avatars = self.avatars_of(&page).await?;
        Ok(page
            .into_iter()
            .map(|message| message.into_stored(&avatars))
            .collect())
    }

    async fn after(&self, room: &str, after: u64, limit: u32) -> StoreResult<Vec<StoredMessage>> {
        let after = after.min(i64::MAX as u64) as i64;
        let mut cursor = self
            .messages
            .find(doc! { "room": room, "seq": { "$gt": after } })
            .sort(doc! { "seq": 1 })
            .limit(i64::from(limit))
            .await
            .map_err(unavailable)?;
        let mut page = Vec::new();
        while cursor.advance().await.map_err(unavailable)? {
            page.push(cursor.deserialize_current().map_err(unavailable)?);
        }
        let avatars = self.avatars_of(&page).await?;
        Ok(page
            .into_iter()
            .map(|message| message.into_stored(&avatars))
            .collect())
    }

    async fn mark_delivered(
        &self,
        user: &str,
        room: &str,
        seqs: Vec<u64>,
    ) -> StoreResult<Vec<Delivery>> {
        let mut deliveries = Vec::new();
        for seq in seqs {
            // One conditional update per message: whoever flips `delivered`
            // confirms it, so two replicas never both do.
            let marked = self
                .messages
                .find_one_and_update(
                    doc! { "room": room, "seq": seq as i64, "to": user, "delivered": false },
                    doc! { "$set": { "delivered": true } },
                )
                .await
                .map_err(unavailable)?;
            if let Some(MessageDoc {
                from,
                confirm: Some(confirm),
                ..
            }) = marked
            {
                deliveries.push(Delivery {
                    room: room.to_owned(),
                    seq,
                    from,
                    to: user.to_owned(),
                    confirm,
                });
            }
        }
        Ok(deliveries)
    }

    async fn pending_count(&self, user: &str) -> StoreResult<u64> {
        self.messages
            .count_documents(doc! { "to": user, "delivered": false })
            .await
            .map_err(unavailable)
    }

    async fn fetch_missed(&self, user: &str, limit: u32) -> StoreResult<Missed> {
        let mut cursor = self
            .messages
            .find(doc! { "to": user, "delivered": false })
            .sort(doc! { "ts": 1, "room": 1, "seq": 1 })
            .limit(i64::from(limit))
            .await
            .map_err(unavailable)?;
        let mut candidates = Vec::new();
        while cursor.advance().await.map_err(unavailable)? {
            candidates.push(cursor.deserialize_current().map_err(unavailable)?);
        }
        let mut claimed = Vec::with_capacity(candidates.len());
        for candidate in candidates {
            // Claimed one by one, conditionally: a concurrent fetch or a live
            // delivery that flipped it first keeps it.
            let won = self
                .messages
                .find_one_and_update(
                    doc! { "room": &candidate.room, "seq": candidate.seq, "delivered": false },
                    doc! { "$set": { "delivered": true } },
                )
                .await
                .map_err(unavailable)?;
            if won.is_some() {
                claimed.push(candidate);
            }
        }
        let avatars = self.avatars_of(&claimed).await?;
        let mut missed = Missed::default();
        for message in claimed {
            if let Some(confirm) = message.confirm.clone() {
                missed.deliveries.push(Delivery {
                    room: message.room.clone(),
                    seq: message.seq as u64,
                    from: message.from.clone(),
                    to: user.to_owned(),
                    confirm,
                });
            }
            missed.messages.push(message.into_stored(&avatars));
        }
        missed.left = self.pending_count(user).await?;
        Ok(missed)
    }

    async fn set_read(&self, room: &str, user: &str, seq: u64) -> StoreResult<()> {
        self.reads
            .update_one(
                doc! { "room": room, "user": user },
                doc! { "$max": { "seq": seq as i64 } },
            )
            .upsert(true)
            .await
            .map(drop)
            .map_err(unavailable)
    }

    async fn read_positions(&self, room: &str, limit: u32) -> StoreResult<Vec<(String, u64)>> {
        let mut cursor = self
            .reads
            .find(doc! { "room": room })
            .sort(doc! { "seq": -1, "user": 1 })
            .limit(i64::from(limit))
            .await
            .map_err(unavailable)?;
        let mut positions = Vec::new();
        while cursor.advance().await.map_err(unavailable)? {
            let read = cursor.deserialize_current().map_err(unavailable)?;
            if let (Ok(user), Some(seq)) = (read.get_str("user"), read.get("seq")) {
                let seq = seq.as_i64().or(seq.as_i32().map(i64::from)).unwrap_or(0);
                positions.push((user.to_owned(), seq as u64));
            }
        }
        Ok(positions)
    }

    async fn recent_rooms(&self, limit: u32) -> StoreResult<Vec<String>> {
        let mut cursor = self
            .rooms
            .find(doc! { "direct": false })
            .sort(doc! { "last_ts": -1 })
            .limit(i64::from(limit))
            .projection(doc! { "_id": 1 })
            .await
            .map_err(unavailable)?;
        let mut rooms = Vec::new();
        while cursor.advance().await.map_err(unavailable)? {
            let room = cursor.deserialize_current().map_err(unavailable)?;
            if let Ok(name) = room.get_str("_id") {
                rooms.push(name.to_owned());
            }
        }
        Ok(rooms)
    }

    async fn session_load(&self, key: &str, now: Millis) -> StoreResult<Option<String>> {
        // The TTL monitor deletes expired sessions only about once a minute,
        // so expiry is also checked here.
        let session = self
            .sessions
            .find_one(doc! { "_id": key, "expires": { "$gt": DateTime::from_millis(now) } })
            .await
            .map_err(unavailable)?;
        Ok(session.map(|session| session.state))
    }

    async fn session_insert(&self, key: &str, state: &str, expires: Millis) -> StoreResult<()> {
        self.sessions
            .insert_one(SessionDoc {
                key: key.to_owned(),
                state: state.to_owned(),
                expires: DateTime::from_millis(expires),
            })
            .await
            .map(drop)
            .map_err(conflict_or_unavailable)
    }

    async fn session_update(
        &self,
        key: &str,
        state: &str,
        expires: Millis,
        now: Millis,
    ) -> StoreResult<bool> {
        let result = self
            .sessions
            .update_one(
                doc! { "_id": key, "expires": { "$gt": DateTime::from_millis(now) } },
                doc! { "$set": { "state": state, "expires": DateTime::from_millis(expires) } },
            )
            .await
            .map_err(unavailable)?;
        Ok(result.matched_count > 0)
    }

    async fn session_touch(&self, key: &str, expires: Millis) -> StoreResult<()> {
        self.sessions
            .update_one(
                doc! { "_id": key },
                doc! { "$set": { "expires": DateTime::from_millis(expires) } },
            )
            .await
            .map(drop)
            .map_err(unavailable)
    }

    async fn session_delete(&self, key: &str) -> StoreResult<()> {
        self.sessions
            .delete_one(doc! { "_id": key })
            .await
            .map(drop)
            .map_err(unavailable)
    }

    async fn secret(&self, name: &str, candidate: Vec<u8>) -> StoreResult<Vec<u8>> {
        let value = Binary {
            subtype: BinarySubtype::Generic,
            bytes: candidate,
        };
        match self
            .secrets
            .insert_one(doc! { "_id": name, "value": value })
            .await
        {
            Ok(_) => {}
            Err(err) if is_duplicate_key(&err) => {}
            Err(err) => return Err(unavailable(err)),
        }
        let stored = self
            .secrets
            .find_one(doc! { "_id": name })
            .await
            .map_err(unavailable)?
            .ok_or_else(|| StoreError::Unavailable(format!("secret {name} vanished")))?;
        stored
            .get_binary_generic("value")
            .cloned()
            .map_err(|err| StoreError::Unavailable(format!("secret {name} is malformed: {err}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> MongoConfig {
        MongoConfig {
            url: None,
            host: Some("db.internal".into()),
            port: 27018,
            username: Some("chat".into()),
            password: Some("s3cret".into()),
            database: "chatdb".into(),
        }
    }

    #[actix_web::test]
    async fn docker_chat_variables_build_the_target_without_leaking_the_password() {
        let store = MongoStore::connect(&config()).await.unwrap();
        assert_eq!(store.describe(), "mongodb://chat@db.internal:27018/chatdb");
    }

    #[actix_web::test]
    async fn a_url_names_the_database_and_its_password_stays_out_of_logs() {
        let config = MongoConfig {
            url: Some("mongodb://app:hunter2@a:1,b:2/fromurl?authSource=admin".into()),
            ..config()
        };
        let store = MongoStore::connect(&config).await.unwrap();
        assert_eq!(store.describe(), "mongodb://app@a:1,b:2/fromurl");
    }

    #[actix_web::test]
    async fn a_malformed_url_is_refused_at_once() {
        let config = MongoConfig {
            url: Some("postgres://nope".into()),
            ..config()
        };
        assert!(MongoStore::connect(&config).await.is_err());
    }
}
