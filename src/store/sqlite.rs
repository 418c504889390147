//! The embedded store: one SQLite file under `DATA_DIR`, no server needed.
//!
//! SQLite calls block, so each runs on tokio's blocking pool. Writes go
//! through one connection (SQLite admits one writer at a time anyway); reads
//! use a second one, which WAL mode lets proceed while a write is in flight.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension};

use super::{Millis, NewMessage, Store, StoreError, StoreResult, StoredMessage, User};

/// Bumped whenever `SCHEMA` changes in a way old files need migrating for.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    name          TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    avatar        TEXT,
    created       INTEGER NOT NULL
);
-- One row per room: the last allocated seq makes allocation a single upsert.
CREATE TABLE IF NOT EXISTS rooms (
    name      TEXT PRIMARY KEY,
    last_seq  INTEGER NOT NULL,
    last_ts   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS rooms_by_activity ON rooms (last_ts);
CREATE TABLE IF NOT EXISTS messages (
    room    TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    sender  TEXT NOT NULL,
    text    TEXT NOT NULL,
    ts      INTEGER NOT NULL,
    PRIMARY KEY (room, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (
    key      TEXT PRIMARY KEY,
    state    TEXT NOT NULL,
    expires  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions (expires);
CREATE TABLE IF NOT EXISTS secrets (
    name   TEXT PRIMARY KEY,
    value  BLOB NOT NULL
);
";

pub struct SqliteStore {
    path: std::path::PathBuf,
    writer: Arc<Mutex<Connection>>,
    reader: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let writer = connect(path)?;
        let version: i64 = writer.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        if version > SCHEMA_VERSION {
            anyhow::bail!(
                "{} has schema version {version}, newer than this build understands ({SCHEMA_VERSION})",
                path.display()
            );
        }
        writer.execute_batch(SCHEMA)?;
        writer.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        let reader = connect(path)?;
        Ok(Self {
            path: path.to_owned(),
            writer: Arc::new(Mutex::new(writer)),
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    async fn write<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        run_blocking(self.writer.clone(), op).await
    }

    async fn read<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        run_blocking(self.reader.clone(), op).await
    }
}

fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // WAL lets history reads run beside writes; NORMAL sync is durable across
    // process crashes (an OS crash may lose the last transactions).
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

async fn run_blocking<T, F>(conn: Arc<Mutex<Connection>>, op: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        // A panic while holding the lock cannot leave SQLite inconsistent
        // (transactions roll back on drop), so a poisoned lock is still usable.
        let mut conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        op(&mut conn)
    })
    .await
    .map_err(|join| StoreError::Unavailable(format!("store task failed: {join}")))?
    .map_err(map_error)
}

fn map_error(err: rusqlite::Error) -> StoreError {
    match err.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => StoreError::Conflict,
        _ => StoreError::Unavailable(err.to_string()),
    }
}

fn message_from_row(room: &str, row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredMessage> {
    Ok(StoredMessage {
        room: room.to_owned(),
        seq: row.get::<_, i64>(0)? as u64,
        from: row.get(1)?,
        text: row.get(2)?,
        ts: row.get(3)?,
        avatar: row.get(4)?,
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
        let (name, hash) = (name.to_owned(), password_hash.to_owned());
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO users (name, password_hash, created) VALUES (?1, ?2, ?3)",
                params![name, hash, super::now_millis()],
            )
            .map(drop)
        })
        .await
    }

    async fn find_user(&self, name: &str) -> StoreResult<Option<User>> {
        let name = name.to_owned();
        self.read(move |conn| {
            conn.query_row(
                "SELECT name, password_hash, avatar FROM users WHERE name = ?1",
                [&name],
                |row| {
                    Ok(User {
                        name: row.get(0)?,
                        password_hash: row.get(1)?,
                        avatar: row.get(2)?,
                    })
                },
            )
            .optional()
        })
        .await
    }

    async fn set_avatar(&self, name: &str, avatar: Option<&str>) -> StoreResult<Option<String>> {
        let (name, avatar) = (name.to_owned(), avatar.map(str::to_owned));
        self.write(move |conn| {
            let tx = conn.transaction()?;
            let previous: Option<String> = tx
                .query_row("SELECT avatar FROM users WHERE name = ?1", [&name], |row| {
                    row.get(0)
                })
                .optional()?
                .flatten();
            tx.execute(
                "UPDATE users SET avatar = ?2 WHERE name = ?1",
                params![name, avatar],
            )?;
            tx.commit()?;
            Ok(previous)
        })
        .await
    }

    async fn append(
        &self,
        room: &str,
        batch: Vec<NewMessage>,
        ts: Millis,
    ) -> StoreResult<Vec<StoredMessage>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let room = room.to_owned();
        self.write(move |conn| {
            let tx = conn.transaction()?;
            let count = batch.len() as i64;
            let last: i64 = tx.query_row(
                "INSERT INTO rooms (name, last_seq, last_ts) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET last_seq = last_seq + ?2, last_ts = ?3
                 RETURNING last_seq",
                params![room, count, ts],
                |row| row.get(0),
            )?;
            let first = (last - count + 1) as u64;
            let mut stored = Vec::with_capacity(batch.len());
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO messages (room, seq, sender, text, ts) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for (offset, message) in batch.into_iter().enumerate() {
                    let seq = first + offset as u64;
                    insert.execute(params![room, seq as i64, message.from, message.text, ts])?;
                    stored.push(StoredMessage {
                        room: room.clone(),
                        seq,
                        from: message.from,
                        text: message.text,
                        ts,
                        avatar: None,
                    });
                }
            }
            tx.commit()?;
            Ok(stored)
        })
        .await
    }

    async fn history(
        &self,
        room: &str,
        before: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        let room = room.to_owned();
        let before = before.map_or(i64::MAX, |seq| seq.min(i64::MAX as u64) as i64);
        self.read(move |conn| {
            let mut query = conn.prepare_cached(
                "SELECT m.seq, m.sender, m.text, m.ts, u.avatar
                 FROM messages m LEFT JOIN users u ON u.name = m.sender
                 WHERE m.room = ?1 AND m.seq < ?2
                 ORDER BY m.seq DESC LIMIT ?3",
            )?;
            let mut messages = query
                .query_map(params![room, before, limit], |row| {
                    message_from_row(&room, row)
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            messages.reverse();
            Ok(messages)
        })
        .await
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
        let key = key.to_owned();
        self.read(move |conn| {
            conn.query_row(
                "SELECT state FROM sessions WHERE key = ?1 AND expires > ?2",
                params![key, now],
                |row| row.get(0),
            )
            .optional()
        })
        .await
    }

    async fn session_insert(&self, key: &str, state: &str, expires: Millis) -> StoreResult<()> {
        let (key, state) = (key.to_owned(), state.to_owned());
        self.write(move |conn| {
            // Sweeping on insert keeps the table bounded without a timer task;
            // the expiry index makes it cheap.
            conn.execute(
                "DELETE FROM sessions WHERE expires <= ?1",
                [super::now_millis()],
            )?;
            conn.execute(
                "INSERT INTO sessions (key, state, expires) VALUES (?1, ?2, ?3)",
                params![key, state, expires],
            )
            .map(drop)
        })
        .await
    }

    async fn session_update(
        &self,
        key: &str,
        state: &str,
        expires: Millis,
        now: Millis,
    ) -> StoreResult<bool> {
        let (key, state) = (key.to_owned(), state.to_owned());
        self.write(move |conn| {
            conn.execute(
                "UPDATE sessions SET state = ?2, expires = ?3 WHERE key = ?1 AND expires > ?4",
                params![key, state, expires, now],
            )
            .map(|changed| changed > 0)
        })
        .await
    }

    async fn session_touch(&self, key: &str, expires: Millis) -> StoreResult<()> {
        let key = key.to_owned();
        self.write(move |conn| {
            conn.execute(
                "UPDATE sessions SET expires = ?2 WHERE key = ?1",
                params![key, expires],
            )
            .map(drop)
        })
        .await
    }

    async fn session_delete(&self, key: &str) -> StoreResult<()> {
        let key = key.to_owned();
        self.write(move |conn| {
            conn.execute("DELETE FROM sessions WHERE key = ?1", [key])
                .map(drop)
        })
        .await
    }

    async fn secret(&self, name: &str, candidate: Vec<u8>) -> StoreResult<Vec<u8>> {
        let name = name.to_owned();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO secrets (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                params![name, candidate],
            )?;
            conn.query_row("SELECT value FROM secrets WHERE name = ?1", [name], |row| {
                row.get(0)
            })
        })
        .await
    }
}
