//! The embedded store: one SQLite file under `DATA_DIR`, no server needed.
//!
//! SQLite admits one writer at a time, so every write goes to one thread
//! that commits whatever is waiting as one transaction (`writer.rs`). Reads
//! run on tokio's blocking pool over a few reader connections, which WAL
//! mode lets proceed while a write is in flight.

mod append;
mod inbox;
mod prune;
mod schema;
mod sessions;
mod users;
mod writer;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension};

use super::{
    Appended, Millis, Missed, NewEvent, Receipt, Retention, Store, StoreError, StoreResult,
    StoredEvent, User, PRUNE_BATCH,
};
use crate::event::Event;

/// Reader connections: reads of different rooms (history on joins, gap
/// fills) proceed side by side.
const READERS: usize = 4;

pub struct SqliteStore {
    path: std::path::PathBuf,
    writer: writer::Writer,
    readers: std::sync::Arc<Readers>,
}

struct Readers {
    connections: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

/// When the writer's commit, and so an `ack`, is durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Synchronous {
    /// The WAL is fsynced at every commit (one per group of writes): an
    /// acked message survives power loss and an OS crash.
    #[default]
    Full,
    /// The WAL is fsynced only at checkpoints: an acked message survives
    /// the process crashing, not the machine.
    Normal,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema
    /// up to date; commits are fsynced.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        Self::open_with(path, Synchronous::Full)
    }

    /// [`SqliteStore::open`], with commits as durable as `synchronous`.
    pub fn open_with(path: &Path, synchronous: Synchronous) -> anyhow::Result<Self> {
        let writer = connect(path)?;
        schema::upgrade(&writer, path)?;
        let connections = (0..READERS)
            .map(|_| connect(path).map(Mutex::new))
            .collect::<rusqlite::Result<_>>()?;
        Ok(Self {
            path: path.to_owned(),
            writer: writer::Writer::start(writer, path, synchronous.pragma())?,
            readers: std::sync::Arc::new(Readers {
                connections,
                next: AtomicUsize::new(0),
            }),
        })
    }

    async fn write<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.writer.write(0, op).await
    }

    async fn read<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let start = readers.next.fetch_add(1, Ordering::Relaxed);
            let count = readers.connections.len();
            // A free connection if there is one, else wait for ours in turn.
            let conn = (0..count)
                .find_map(|offset| {
                    readers.connections[(start + offset) % count]
                        .try_lock()
                        .ok()
                })
                .unwrap_or_else(|| {
                    // A panic while holding a reader cannot leave SQLite
                    // inconsistent, so a poisoned lock is still usable.
                    readers.connections[start % count]
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                });
            op(&conn)
        })
        .await
        .map_err(StoreError::unavailable)?
        .map_err(map_error)
    }
}

impl SqliteStore {
    /// Events of `room` with their author's current photo, chosen by
    /// `range` (over `?2` = `bound` and `?3` = `limit`).
    async fn page(
        &self,
        room: &str,
        bound: i64,
        limit: u32,
        range: &'static str,
    ) -> StoreResult<Vec<Event>> {
        let room = room.to_owned();
        self.read(move |conn| {
            let mut query = conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} WHERE m.room = ?1 AND {range}"
            ))?;
            let messages = query
                .query_map(params![room, bound, limit], |row| {
                    Ok(stored_event(room.clone(), row)?.into_event())
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(messages)
        })
        .await
    }

    /// [`SqliteStore::page`] of the newest rows before `before` (`range`
    /// reads them newest first), oldest first.
    async fn newest_before(
        &self,
        room: &str,
        before: Option<u64>,
        limit: u32,
        range: &'static str,
    ) -> StoreResult<Vec<Event>> {
        let before = before.map_or(i64::MAX, |seq| seq.min(i64::MAX as u64) as i64);
        let mut newest_first = self.page(room, before, limit, range).await?;
        newest_first.reverse();
        Ok(newest_first)
    }
}

fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // WAL lets history reads run beside writes. Only the writer commits;
    // it sets its own `synchronous` (`Synchronous`).
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // After a checkpoint, the WAL file shrinks back to this instead of
    // keeping its largest size.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    // Pages read through a memory map and kept in a larger cache: the
    // profile of a busy writer was mostly copying pages in from the OS.
    conn.pragma_update(None, "mmap_size", 256 * 1024 * 1024)?;
    conn.pragma_update(None, "cache_size", -32 * 1024)?;
    Ok(conn)
}

fn map_error(err: rusqlite::Error) -> StoreError {
    match err.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => StoreError::Conflict,
        _ => StoreError::unavailable(err),
    }
}

/// What [`stored_event`] reads, in its order, with the author's photo.
const EVENT_COLUMNS: &str = "m.seq, m.sender, m.text, m.ts, u.avatar, m.id,
     m.recipient IS NOT NULL AND m.delivered = 1, m.kind, m.target, m.edited, m.deleted
     FROM messages m LEFT JOIN users u ON u.name = m.sender";

/// A `messages` row as [`EVENT_COLUMNS`] selects it: where a row becomes
/// the room's event.
fn stored_event(room: String, row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent {
        room,
        seq: row.get::<_, i64>(0)? as u64,
        from: row.get(1)?,
        text: row.get(2)?,
        ts: row.get(3)?,
        avatar: row.get(4)?,
        id: row.get(5)?,
        delivered: row.get(6)?,
        kind: row.get(7)?,
        target: row.get(8)?,
        edited: row.get(9)?,
        deleted: row.get(10)?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    /// The schema is brought up to date by [`SqliteStore::open`].
    async fn migrate(&self) -> StoreResult<()> {
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())))
            .await
    }

    async fn create_user(&self, name: &str, password_hash: &str) -> StoreResult<()> {
        users::create(self, name, password_hash).await
    }

    async fn find_user(&self, name: &str) -> StoreResult<Option<User>> {
        users::find(self, name).await
    }

    async fn find_name_ignoring_case(&self, name: &str) -> StoreResult<Option<String>> {
        users::find_ignoring_case(self, name).await
    }

    async fn put_operator_account(&self, name: &str, password_hash: &str) -> StoreResult<()> {
        users::put_operator(self, name, password_hash).await
    }

    async fn set_avatar(&self, name: &str, avatar: Option<&str>) -> StoreResult<Option<String>> {
        users::set_avatar(self, name, avatar).await
    }

    async fn append(&self, room: &str, batch: Vec<NewEvent>, ts: Millis) -> StoreResult<Appended> {
        append::append(self, room, batch, ts).await
    }

    async fn history(
        &self,
        room: &str,
        before: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<Event>> {
        self.newest_before(
            room,
            before,
            limit,
            "m.seq < ?2 ORDER BY m.seq DESC LIMIT ?3",
        )
        .await
    }

    async fn messages(
        &self,
        room: &str,
        before: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<Event>> {
        let only_messages = "m.seq < ?2 AND m.kind = 0 ORDER BY m.seq DESC LIMIT ?3";
        self.newest_before(room, before, limit, only_messages).await
    }

    async fn after(&self, room: &str, after: u64, limit: u32) -> StoreResult<Vec<Event>> {
        let after = after.min(i64::MAX as u64) as i64;
        self.page(room, after, limit, "m.seq > ?2 ORDER BY m.seq LIMIT ?3")
            .await
    }

    async fn message(&self, room: &str, id: &str) -> StoreResult<Option<Event>> {
        let (room, id) = (room.to_owned(), id.to_owned());
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} WHERE m.id = ?1 AND m.room = ?2 AND m.kind = 0"
            ))?
            .query_row(params![id, room], |row| stored_event(room.clone(), row))
            .optional()
            .map(|found| found.map(StoredEvent::into_event))
        })
        .await
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
        self.read(move |conn| {
            let mut query = conn.prepare_cached(
                "SELECT name FROM rooms WHERE name NOT LIKE '@%' ORDER BY last_ts DESC LIMIT ?1",
            )?;
            let rooms = query
                .query_map([limit], |row| row.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(rooms)
        })
        .await
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
        let batch = PRUNE_BATCH;
        self.write(move |conn| prune::prune(conn, retention, now, batch))
            .await
    }

    async fn secret(&self, name: &str, candidate: Vec<u8>) -> StoreResult<Vec<u8>> {
        sessions::secret(self, name, candidate).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version 2 file (messages keyed by room and seq) opens with its
    /// messages, offline inbox and seqs intact.
    #[actix_web::test]
    async fn a_version_2_file_is_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(
                "CREATE TABLE rooms (name TEXT PRIMARY KEY, last_seq INTEGER NOT NULL, last_ts INTEGER NOT NULL);
                 INSERT INTO rooms VALUES ('@a:b', 2, 10);
                 CREATE TABLE messages (
                     room TEXT NOT NULL, seq INTEGER NOT NULL, sender TEXT NOT NULL,
                     text TEXT NOT NULL, ts INTEGER NOT NULL, id TEXT NOT NULL DEFAULT '',
                     recipient TEXT, delivered INTEGER NOT NULL DEFAULT 1, confirm TEXT,
                     PRIMARY KEY (room, seq)) WITHOUT ROWID;
                 CREATE INDEX undelivered ON messages (recipient, ts, room, seq) WHERE delivered = 0;
                 INSERT INTO messages VALUES ('@a:b', 1, 'a', 'one', 5, 'x1', 'b', 1, NULL);
                 INSERT INTO messages VALUES ('@a:b', 2, 'a', 'two', 10, 'x2', 'b', 0, NULL);
                 PRAGMA user_version = 2;",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let history = store.history("@a:b", None, 10).await.unwrap();
        let texts: Vec<&str> = history.iter().filter_map(Event::text).collect();
        assert_eq!(texts, ["one", "two"]);
        assert_eq!(store.pending_count("b").await.unwrap(), 1);
        let next = NewEvent {
            id: "x3".into(),
            from: "b".into(),
            draft: crate::store::Draft::Message("three".into()),
            to: None,
            confirm: None,
            reference: None,
            retry: false,
        };
        let stored = store.append("@a:b", vec![next], 20).await.unwrap().events;
        assert_eq!(stored[0].stored_seq(), Some(3));
        drop(store);
        let reopened = SqliteStore::open(&path).unwrap();
        assert_eq!(reopened.history("@a:b", None, 10).await.unwrap().len(), 3);
    }
}
