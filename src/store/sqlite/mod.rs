//! The embedded store: one SQLite file under `DATA_DIR`, no server needed.
//!
//! SQLite admits one writer at a time, so every write goes to one thread
//! that commits whatever is waiting as one transaction ([`writer`]). Reads
//! run on tokio's blocking pool over a few reader connections, which WAL
//! mode lets proceed while a write is in flight.

mod writer;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension};

use super::{
    in_batch_order, repeated_in_batch, Appended, Delivery, Millis, Missed, NewMessage, Original,
    Store, StoreError, StoreResult, StoredMessage, User, RETRY_SCAN,
};

/// Bumped whenever `SCHEMA` changes in a way old files need migrating for.
const SCHEMA_VERSION: i64 = 5;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    name          TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    avatar        TEXT,
    created       INTEGER NOT NULL,
    operator      INTEGER NOT NULL DEFAULT 0
);
-- One row per room: the last allocated seq makes allocation a single upsert.
CREATE TABLE IF NOT EXISTS rooms (
    name      TEXT PRIMARY KEY,
    last_seq  INTEGER NOT NULL,
    last_ts   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS rooms_by_activity ON rooms (last_ts);
-- A rowid table: rows go in arrival order, so a commit holding messages of
-- a thousand rooms writes a few pages at the end of the table (plus small
-- index entries) instead of one page per room. Keyed by (room, seq), as
-- version 2 was, it wrote 24 times the messages' size to the WAL.
CREATE TABLE IF NOT EXISTS messages (
    room      TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    sender    TEXT NOT NULL,
    text      TEXT NOT NULL,
    ts        INTEGER NOT NULL,
    id        TEXT NOT NULL DEFAULT '',
    -- A direct message's recipient, and whether it has reached them.
    recipient TEXT,
    delivered INTEGER NOT NULL DEFAULT 1,
    confirm   TEXT,
    -- The sender's ref (JSON), for recognising a retry.
    client_ref TEXT
);
CREATE TABLE IF NOT EXISTS reads (
    room  TEXT NOT NULL,
    user  TEXT NOT NULL,
    seq   INTEGER NOT NULL,
    PRIMARY KEY (room, user)
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
        let keyed_by_room: bool = writer
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'messages' AND sql LIKE '%WITHOUT ROWID%'",
                [],
                |row| row.get::<_, i64>(0),
            )
            .map(|count| count > 0)?;
        // The whole upgrade is one transaction: a crash half-way leaves
        // the old file as it was.
        writer.execute_batch("BEGIN IMMEDIATE;")?;
        if keyed_by_room {
            // Versions 1 and 2 kept messages in a (room, seq)-keyed table.
            writer.execute_batch("ALTER TABLE messages RENAME TO messages_by_room;")?;
        }
        writer.execute_batch(SCHEMA)?;
        if keyed_by_room {
            if version == 1 {
                // Version 1 files lack message ids and the offline inbox.
                writer.execute_batch(
                    "ALTER TABLE messages_by_room ADD COLUMN id TEXT NOT NULL DEFAULT '';
                     ALTER TABLE messages_by_room ADD COLUMN recipient TEXT;
                     ALTER TABLE messages_by_room ADD COLUMN delivered INTEGER NOT NULL DEFAULT 1;
                     ALTER TABLE messages_by_room ADD COLUMN confirm TEXT;",
                )?;
            }
            writer.execute_batch(
                "DROP INDEX IF EXISTS undelivered;
                 INSERT INTO messages (room, seq, sender, text, ts, id, recipient, delivered, confirm)
                     SELECT room, seq, sender, text, ts, id, recipient, delivered, confirm
                     FROM messages_by_room ORDER BY ts, room, seq;
                 DROP TABLE messages_by_room;",
            )?;
        }
        if !has_column(&writer, "messages", "client_ref")? {
            // Version 3 kept no refs.
            writer.execute_batch("ALTER TABLE messages ADD COLUMN client_ref TEXT;")?;
        }
        if !has_column(&writer, "users", "operator")? {
            // Version 4 told no operator's account from a registered one.
            writer.execute_batch(
                "ALTER TABLE users ADD COLUMN operator INTEGER NOT NULL DEFAULT 0;",
            )?;
        }
        // History pages and gap fills are range scans of one room; the
        // unique index also keeps a seq from ever being stored twice.
        // Undelivered messages are few; the partial index keeps only them.
        writer.execute_batch(
            "CREATE UNIQUE INDEX IF NOT EXISTS messages_by_room_seq ON messages (room, seq);
             CREATE INDEX IF NOT EXISTS users_by_folded_name ON users (name COLLATE NOCASE);
             CREATE INDEX IF NOT EXISTS undelivered ON messages (recipient, ts, room, seq)
             WHERE delivered = 0;",
        )?;
        writer.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        writer.execute_batch("COMMIT;")?;
        let connections = (0..READERS)
            .map(|_| connect(path).map(Mutex::new))
            .collect::<rusqlite::Result<_>>()?;
        Ok(Self {
            path: path.to_owned(),
            writer: writer::Writer::start(writer, path)?,
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
        .map_err(|join| StoreError::Unavailable(format!("store task failed: {join}")))?
        .map_err(map_error)
    }
}

impl SqliteStore {
    /// Messages of `room` with their author's current photo, chosen by
    /// `range` (over `?2` = `bound` and `?3` = `limit`).
    async fn page(
        &self,
        room: &str,
        bound: i64,
        limit: u32,
        range: &'static str,
    ) -> StoreResult<Vec<StoredMessage>> {
        let room = room.to_owned();
        self.read(move |conn| {
            let mut query = conn.prepare_cached(&format!(
                "SELECT m.seq, m.sender, m.text, m.ts, u.avatar, m.id
                 FROM messages m LEFT JOIN users u ON u.name = m.sender
                 WHERE m.room = ?1 AND {range}"
            ))?;
            let messages = query
                .query_map(params![room, bound, limit], |row| {
                    message_from_row(&room, row)
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(messages)
        })
        .await
    }
}

fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // WAL lets history reads run beside writes; NORMAL sync is durable across
    // process crashes (an OS crash may lose the last transactions).
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
        id: row.get(5)?,
        fast: false,
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
                "SELECT name, password_hash, avatar, operator FROM users WHERE name = ?1",
                [&name],
                |row| {
                    Ok(User {
                        name: row.get(0)?,
                        password_hash: row.get(1)?,
                        avatar: row.get(2)?,
                        operator: row.get(3)?,
                    })
                },
            )
            .optional()
        })
        .await
    }

    async fn find_name_ignoring_case(&self, name: &str) -> StoreResult<Option<String>> {
        let name = name.to_owned();
        self.read(move |conn| {
            conn.query_row(
                "SELECT name FROM users WHERE name = ?1 COLLATE NOCASE LIMIT 1",
                [&name],
                |row| row.get(0),
            )
            .optional()
        })
        .await
    }

    async fn put_operator_account(&self, name: &str, password_hash: &str) -> StoreResult<()> {
        let (name, hash) = (name.to_owned(), password_hash.to_owned());
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO users (name, password_hash, created, operator) VALUES (?1, ?2, ?3, 1)
                 ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash, operator = 1",
                params![name, hash, super::now_millis()],
            )
            .map(drop)
        })
        .await
    }

    async fn set_avatar(&self, name: &str, avatar: Option<&str>) -> StoreResult<Option<String>> {
        let (name, avatar) = (name.to_owned(), avatar.map(str::to_owned));
        self.write(move |conn| {
            let previous: Option<String> = conn
                .query_row("SELECT avatar FROM users WHERE name = ?1", [&name], |row| {
                    row.get(0)
                })
                .optional()?
                .flatten();
            conn.execute(
                "UPDATE users SET avatar = ?2 WHERE name = ?1",
                params![name, avatar],
            )?;
            Ok(previous)
        })
        .await
    }

    async fn append(
        &self,
        room: &str,
        batch: Vec<NewMessage>,
        ts: Millis,
    ) -> StoreResult<Appended> {
        if batch.is_empty() {
            return Ok(Appended::default());
        }
        let room = room.to_owned();
        self.writer.write(batch.len(), move |conn| {
            let retried = retried(conn, &room, &batch)?;
            let count = retried.iter().filter(|found| found.is_none()).count() as i64;
            let mut next = 0;
            if count > 0 {
                let last: i64 = conn
                    .prepare_cached(
                        "INSERT INTO rooms (name, last_seq, last_ts) VALUES (?1, ?2, ?3)
                         ON CONFLICT (name) DO UPDATE SET last_seq = last_seq + ?2, last_ts = ?3
                         RETURNING last_seq",
                    )?
                    .query_row(params![room, count, ts], |row| row.get(0))?;
                next = (last - count + 1) as u64;
            }
            // Each recipient's inbox (a direct room has two), counted once
            // per batch on the index of what waits.
            let mut waiting: std::collections::HashMap<String, u64> =
                std::collections::HashMap::new();
            let mut inbox = |recipient: &str| -> rusqlite::Result<bool> {
                let count = match waiting.get(recipient) {
                    Some(count) => *count,
                    None => conn
                        .prepare_cached(
                            "SELECT count(*) FROM messages WHERE recipient = ?1 AND delivered = 0",
                        )?
                        .query_row([recipient], |row| row.get::<_, i64>(0))?
                        as u64,
                };
                waiting.insert(recipient.to_owned(), count + 1);
                Ok(count < super::MAX_INBOX)
            };
            let mut inserted: Vec<StoredMessage> = Vec::with_capacity(count as usize);
            let mut insert = conn.prepare_cached(
                "INSERT INTO messages (room, seq, sender, text, ts, id, recipient, delivered, confirm, client_ref)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            for (message, found) in batch.into_iter().zip(&retried) {
                if found.is_some() {
                    continue;
                }
                let seq = next;
                next += 1;
                let kept = match &message.to {
                    Some(recipient) => inbox(recipient)?,
                    None => false,
                };
                insert.execute(params![
                    room,
                    seq as i64,
                    message.from,
                    message.text,
                    ts,
                    message.id,
                    message.to,
                    !kept,
                    message.confirm,
                    message.reference,
                ])?;
                inserted.push(StoredMessage {
                    room: room.clone(),
                    seq,
                    from: message.from,
                    text: message.text,
                    ts,
                    avatar: None,
                    id: message.id,
                    fast: false,
                });
            }
            // One process writes the file and allocates every seq in the
            // transaction: nobody else's messages lie in between.
            Ok(Appended {
                messages: in_batch_order(retried, inserted),
                others: Vec::new(),
            })
        })
        .await
    }

    async fn history(
        &self,
        room: &str,
        before: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        let before = before.map_or(i64::MAX, |seq| seq.min(i64::MAX as u64) as i64);
        let mut newest_first = self
            .page(
                room,
                before,
                limit,
                "m.seq < ?2 ORDER BY m.seq DESC LIMIT ?3",
            )
            .await?;
        newest_first.reverse();
        Ok(newest_first)
    }

    async fn after(&self, room: &str, after: u64, limit: u32) -> StoreResult<Vec<StoredMessage>> {
        let after = after.min(i64::MAX as u64) as i64;
        self.page(room, after, limit, "m.seq > ?2 ORDER BY m.seq LIMIT ?3")
            .await
    }

    async fn mark_delivered(
        &self,
        user: &str,
        room: &str,
        seqs: Vec<u64>,
    ) -> StoreResult<Vec<Delivery>> {
        let (user, room) = (user.to_owned(), room.to_owned());
        self.write(move |conn| {
            let mut deliveries = Vec::new();
            {
                let mut mark = conn.prepare_cached(
                    "UPDATE messages SET delivered = 1
                     WHERE room = ?1 AND seq = ?2 AND recipient = ?3 AND delivered = 0
                     RETURNING sender, confirm",
                )?;
                for seq in seqs {
                    let marked: Option<(String, Option<String>)> = mark
                        .query_row(params![room, seq as i64, user], |row| {
                            Ok((row.get(0)?, row.get(1)?))
                        })
                        .optional()?;
                    if let Some((from, Some(confirm))) = marked {
                        deliveries.push(Delivery {
                            room: room.clone(),
                            seq,
                            from,
                            to: user.clone(),
                            confirm,
                        });
                    }
                }
            }
            Ok(deliveries)
        })
        .await
    }

    async fn pending_count(&self, user: &str) -> StoreResult<u64> {
        let user = user.to_owned();
        self.read(move |conn| {
            conn.query_row(
                "SELECT count(*) FROM messages WHERE recipient = ?1 AND delivered = 0",
                [user],
                |row| row.get::<_, i64>(0),
            )
            .map(|count| count as u64)
        })
        .await
    }

    async fn fetch_missed(&self, user: &str, limit: u32) -> StoreResult<Missed> {
        let user = user.to_owned();
        // On the writer: claiming must see, and beat, concurrent marks.
        self.write(move |conn| {
            let mut missed = Missed::default();
            {
                let mut claim = conn.prepare_cached(
                    "UPDATE messages SET delivered = 1
                     WHERE (room, seq) IN (
                         SELECT room, seq FROM messages
                         WHERE recipient = ?1 AND delivered = 0
                         ORDER BY ts, room, seq LIMIT ?2)
                     RETURNING room, seq, sender, text, ts, id, confirm,
                         (SELECT avatar FROM users WHERE name = sender)",
                )?;
                let mut rows = claim.query(params![user, limit])?;
                while let Some(row) = rows.next()? {
                    let message = StoredMessage {
                        room: row.get(0)?,
                        seq: row.get::<_, i64>(1)? as u64,
                        from: row.get(2)?,
                        text: row.get(3)?,
                        ts: row.get(4)?,
                        id: row.get(5)?,
                        avatar: row.get(7)?,
                        fast: false,
                    };
                    if let Some(confirm) = row.get::<_, Option<String>>(6)? {
                        missed.deliveries.push(Delivery {
                            room: message.room.clone(),
                            seq: message.seq,
                            from: message.from.clone(),
                            to: user.clone(),
                            confirm,
                        });
                    }
                    missed.messages.push(message);
                }
            }
            // RETURNING gives no order guarantee.
            missed
                .messages
                .sort_by(|a, b| (a.ts, &a.room, a.seq).cmp(&(b.ts, &b.room, b.seq)));
            missed.left = conn.query_row(
                "SELECT count(*) FROM messages WHERE recipient = ?1 AND delivered = 0",
                [&user],
                |row| row.get::<_, i64>(0),
            )? as u64;
            Ok(missed)
        })
        .await
    }

    async fn set_read(&self, room: &str, user: &str, seq: u64) -> StoreResult<()> {
        let (room, user) = (room.to_owned(), user.to_owned());
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO reads (room, user, seq) VALUES (?1, ?2, ?3)
                 ON CONFLICT (room, user) DO UPDATE SET seq = max(seq, excluded.seq)",
                params![room, user, seq as i64],
            )
            .map(drop)
        })
        .await
    }

    async fn read_positions(&self, room: &str, limit: u32) -> StoreResult<Vec<(String, u64)>> {
        let room = room.to_owned();
        self.read(move |conn| {
            let mut query = conn.prepare_cached(
                "SELECT user, seq FROM reads WHERE room = ?1 ORDER BY seq DESC, user LIMIT ?2",
            )?;
            let positions = query
                .query_map(params![room, limit], |row| {
                    Ok((row.get(0)?, row.get::<_, i64>(1)? as u64))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(positions)
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

/// For each message of `batch`, its original if it is a retry of one that
/// is stored (among the room's newest [`RETRY_SCAN`]) or earlier in the batch.
/// Whether `table` has `column` (an older schema may lack it).
fn has_column(conn: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
        [table, column],
        |row| row.get::<_, i64>(0).map(|count| count > 0),
    )
}

fn retried(
    conn: &Connection,
    room: &str,
    batch: &[NewMessage],
) -> rusqlite::Result<Vec<Option<Original>>> {
    let mut found = Vec::with_capacity(batch.len());
    if !batch.iter().any(|message| message.retry) {
        found.resize_with(batch.len(), || None);
        return Ok(found);
    }
    let newest: i64 = conn
        .prepare_cached("SELECT last_seq FROM rooms WHERE name = ?1")?
        .query_row([room], |row| row.get(0))
        .optional()?
        .unwrap_or(0);
    let mut lookup = conn.prepare_cached(
        "SELECT seq, ts, id FROM messages
         WHERE room = ?1 AND seq > ?2 AND sender = ?3 AND client_ref = ?4 AND text = ?5
         ORDER BY seq DESC LIMIT 1",
    )?;
    for (at, message) in batch.iter().enumerate() {
        if !message.retry || message.reference.is_none() {
            found.push(None);
            continue;
        }
        if let Some(earlier) = repeated_in_batch(batch, at) {
            found.push(Some(Original::InBatch(earlier)));
            continue;
        }
        let original = lookup
            .query_row(
                params![
                    room,
                    newest - RETRY_SCAN as i64,
                    message.from,
                    message.reference,
                    message.text
                ],
                |row| {
                    Ok(StoredMessage {
                        room: room.to_owned(),
                        seq: row.get::<_, i64>(0)? as u64,
                        from: message.from.clone(),
                        text: message.text.clone(),
                        ts: row.get(1)?,
                        avatar: None,
                        id: row.get(2)?,
                        fast: false,
                    })
                },
            )
            .optional()?;
        found.push(original.map(Original::Stored));
    }
    Ok(found)
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
        let texts: Vec<&str> = history.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, ["one", "two"]);
        assert_eq!(store.pending_count("b").await.unwrap(), 1);
        let next = NewMessage {
            id: "x3".into(),
            from: "b".into(),
            text: "three".into(),
            to: None,
            confirm: None,
            reference: None,
            retry: false,
        };
        let stored = store.append("@a:b", vec![next], 20).await.unwrap().messages;
        assert_eq!(stored[0].seq, 3);
        drop(store);
        let reopened = SqliteStore::open(&path).unwrap();
        assert_eq!(reopened.history("@a:b", None, 10).await.unwrap().len(), 3);
    }
}
