//! The shared store: MongoDB through the official driver, so every replica
//! sees the same accounts, history and login sessions.
//!
//! Collections and why their indexes look the way they do:
//!
//! | collection | document | indexes |
//! |---|---|---|
//! | `users` | `{name, password_hash, avatar, created}` | `name` unique: logins look users up by name, and registration relies on it to refuse a taken name atomically |
//! | `messages` | `{room, seq, from, text, ts, id}` | `(room, seq)` unique: history pages are range scans on it, and it is what makes `seq` allocation safe (below); `ts`: retention by age deletes by time |
//! | `rooms` | `{_id: room, last_seq, last_ts, direct}` | `(direct, last_ts)`: the room list on the chat page is "public rooms, newest first"; `last_seq` is the room's next `seq` once retention pruned its messages |
//! | `sessions` | `{_id: key, state, expires}` | `expires` with a TTL of 0: MongoDB deletes a session once it expires |
//! | `secrets` | `{_id: name, value}` | `_id` only |
//! | `reads` | `{room, user, seq}` | `(room, user)` unique: one read position per reader, moved forward with `$max` |
//!
//! A direct message to another user also carries `to` and `delivered`
//! (`false` until one of the recipient's connections got it, or they fetched
//! it) and the sender's `confirm` ref; `(to, delivered, ts)` finds a user's
//! undelivered messages, `(to, from, delivered)` one sender's share of them. `claim` is the token of the mark or fetch that set
//! `delivered` (see `inbox.rs`).
//!
//! How a message gets its `seq` is in `append.rs`. One file per
//! collection's operations (`users`, `inbox` for direct messages and read
//! positions, `sessions`, `history`), the index definitions in `schema`;
//! the `Store` implementation here only routes to them.

mod append;
mod documents;
mod history;
mod inbox;
mod prune;
mod schema;
mod sessions;
mod users;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use mongodb::bson::{doc, Document};
use mongodb::error::{Error as MongoError, ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, Credential, IndexOptions, ServerAddress, WriteConcern};
use mongodb::{Client, Collection, Cursor, Database, IndexModel};
use serde::de::DeserializeOwned;

use super::{
    Appended, Millis, Missed, NewEvent, Receipt, Retention, Store, StoreError, StoreResult, User,
};
use crate::config::MongoConfig;
use crate::event::Event;
use documents::{MessageDoc, SessionDoc, UserDoc};

/// How long an operation waits for a reachable server before failing. The
/// driver's default (30 s) would leave a sender without an answer for that
/// long when the database is down; a URL's `serverSelectionTimeoutMS` wins.
/// Below the store's overall bound (`bounded::OPERATION_TIMEOUT`), so a
/// database that is down answers "not stored" rather than "unknown".
const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(4);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// MongoDB's error code for a unique-index violation.
const DUPLICATE_KEY: i32 = 11000;

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
    StoreError::unavailable(err)
}

fn is_duplicate_key(err: &MongoError) -> bool {
    match err.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(write)) => write.code == DUPLICATE_KEY,
        ErrorKind::Command(command) => command.code == DUPLICATE_KEY,
        _ => false,
    }
}

fn conflict_or_unavailable(err: MongoError) -> StoreError {
    if is_duplicate_key(&err) {
        StoreError::Conflict
    } else {
        unavailable(err)
    }
}

/// Every document a query's cursor yields, in order.
async fn all<T>(mut cursor: Cursor<T>) -> StoreResult<Vec<T>>
where
    T: DeserializeOwned + Send + Sync,
{
    let mut found = Vec::new();
    while cursor.advance().await.map_err(unavailable)? {
        found.push(cursor.deserialize_current().map_err(unavailable)?);
    }
    Ok(found)
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
        schema::migrate(self).await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.db
            .run_command(doc! { "ping": 1 })
            .await
            .map(drop)
            .map_err(unavailable)
    }

    async fn create_user(&self, name: &str, password_hash: &str) -> StoreResult<()> {
        users::create(self, name, password_hash).await
    }

    async fn find_name_ignoring_case(&self, name: &str) -> StoreResult<Option<String>> {
        users::find_ignoring_case(self, name).await
    }

    async fn put_operator_account(&self, name: &str, password_hash: &str) -> StoreResult<()> {
        users::put_operator(self, name, password_hash).await
    }

    async fn find_user(&self, name: &str) -> StoreResult<Option<User>> {
        users::find(self, name).await
    }

    async fn set_avatar(&self, name: &str, avatar: Option<&str>) -> StoreResult<Option<String>> {
        users::set_avatar(self, name, avatar).await
    }

    async fn append(&self, room: &str, batch: Vec<NewEvent>, ts: Millis) -> StoreResult<Appended> {
        self.append_batch(room, batch, ts).await
    }

    async fn history(
        &self,
        room: &str,
        before: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<Event>> {
        history::before(self, room, before, limit).await
    }

    async fn messages(
        &self,
        room: &str,
        before: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<Event>> {
        history::messages(self, room, before, limit).await
    }

    async fn after(&self, room: &str, after: u64, limit: u32) -> StoreResult<Vec<Event>> {
        history::after(self, room, after, limit).await
    }

    async fn message(&self, room: &str, id: &str) -> StoreResult<Option<Event>> {
        history::message(self, room, id).await
    }

    async fn mark_delivered(
        &self,
        user: &str,
        room: &str,
        seqs: Vec<u64>,
    ) -> StoreResult<Vec<Receipt>> {
        inbox::mark_delivered(self, user, room, seqs).await
    }

    async fn pending_count(&self, user: &str) -> StoreResult<u64> {
        inbox::pending_count(self, user).await
    }

    async fn fetch_missed(&self, user: &str, limit: u32) -> StoreResult<Missed> {
        inbox::fetch_missed(self, user, limit).await
    }

    async fn set_read(&self, room: &str, user: &str, seq: u64) -> StoreResult<()> {
        inbox::set_read(self, room, user, seq).await
    }

    async fn read_positions(&self, room: &str, limit: u32) -> StoreResult<Vec<(String, u64)>> {
        inbox::read_positions(self, room, limit).await
    }

    async fn recent_rooms(&self, limit: u32) -> StoreResult<Vec<String>> {
        history::recent_rooms(self, limit).await
    }

    async fn session_load(&self, key: &str, now: Millis) -> StoreResult<Option<String>> {
        sessions::load(self, key, now).await
    }

    async fn session_insert(&self, key: &str, state: &str, expires: Millis) -> StoreResult<()> {
        sessions::insert(self, key, state, expires).await
    }

    async fn session_update(
        &self,
        key: &str,
        state: &str,
        expires: Millis,
        now: Millis,
    ) -> StoreResult<bool> {
        sessions::update(self, key, state, expires, now).await
    }

    async fn session_touch(&self, key: &str, expires: Millis, now: Millis) -> StoreResult<()> {
        sessions::touch(self, key, expires, now).await
    }

    async fn session_delete(&self, key: &str) -> StoreResult<()> {
        sessions::delete(self, key).await
    }

    async fn prune(&self, retention: Retention, now: Millis) -> StoreResult<u64> {
        prune::prune(self, retention, now).await
    }

    async fn secret(&self, name: &str, candidate: Vec<u8>) -> StoreResult<Vec<u8>> {
        sessions::secret(self, name, candidate).await
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
