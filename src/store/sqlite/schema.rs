//! The file's tables and indexes, and the upgrade of files older builds wrote.

use std::path::Path;

use rusqlite::Connection;

/// Bumped whenever `SCHEMA` changes in a way old files need migrating for.
const SCHEMA_VERSION: i64 = 6;

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
    client_ref TEXT,
    -- What the row is (store::EventKind): a message, or an edit or a
    -- delete of message `target` (an id). A message row holds its current
    -- text; `edited` is when it was last edited, `deleted` that it was
    -- taken back (its text, and its edits', are then erased).
    kind      INTEGER NOT NULL DEFAULT 0,
    target    TEXT,
    edited    INTEGER,
    deleted   INTEGER NOT NULL DEFAULT 0
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

/// Brings the file's schema up to date, in one transaction: a crash
/// half-way leaves the old file as it was.
pub(super) fn upgrade(writer: &Connection, path: &Path) -> anyhow::Result<()> {
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
    if !has_column(writer, "messages", "client_ref")? {
        // Version 3 kept no refs.
        writer.execute_batch("ALTER TABLE messages ADD COLUMN client_ref TEXT;")?;
    }
    if !has_column(writer, "messages", "kind")? {
        // Version 5 kept messages only, as they were posted.
        writer.execute_batch(
            "ALTER TABLE messages ADD COLUMN kind INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE messages ADD COLUMN target TEXT;
             ALTER TABLE messages ADD COLUMN edited INTEGER;
             ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;",
        )?;
    }
    if !has_column(writer, "users", "operator")? {
        // Version 4 told no operator's account from a registered one.
        writer
            .execute_batch("ALTER TABLE users ADD COLUMN operator INTEGER NOT NULL DEFAULT 0;")?;
    }
    // History pages and gap fills are range scans of one room; the
    // unique index also keeps a seq from ever being stored twice.
    // Undelivered messages are few; the partial index keeps only them.
    // An edit finds its message by id (ids rise with time, so the index
    // grows at its end); a delete finds the message's edits by target.
    writer.execute_batch(
        "CREATE UNIQUE INDEX IF NOT EXISTS messages_by_room_seq ON messages (room, seq);
         CREATE INDEX IF NOT EXISTS messages_by_id ON messages (id);
         CREATE INDEX IF NOT EXISTS changes_by_target ON messages (target)
         WHERE target IS NOT NULL;
         CREATE INDEX IF NOT EXISTS users_by_folded_name ON users (name COLLATE NOCASE);
         CREATE INDEX IF NOT EXISTS undelivered ON messages (recipient, ts, room, seq)
         WHERE delivered = 0;
         CREATE INDEX IF NOT EXISTS undelivered_by_sender ON messages (recipient, sender)
         WHERE delivered = 0;",
    )?;
    writer.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    writer.execute_batch("COMMIT;")?;
    Ok(())
}
