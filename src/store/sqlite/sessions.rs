//! Login sessions and the replica's secrets.

use rusqlite::{params, OptionalExtension};

use super::SqliteStore;
use crate::store::{Millis, StoreResult};

pub(super) async fn load(
    store: &SqliteStore,
    key: &str,
    now: Millis,
) -> StoreResult<Option<String>> {
    let key = key.to_owned();
    store
        .read(move |conn| {
            conn.query_row(
                "SELECT state FROM sessions WHERE key = ?1 AND expires > ?2",
                params![key, now],
                |row| row.get(0),
            )
            .optional()
        })
        .await
}

pub(super) async fn insert(
    store: &SqliteStore,
    key: &str,
    state: &str,
    expires: Millis,
) -> StoreResult<()> {
    let (key, state) = (key.to_owned(), state.to_owned());
    store
        .write(move |conn| {
            // Sweeping on insert keeps the table bounded without a timer task;
            // the expiry index makes it cheap.
            conn.execute(
                "DELETE FROM sessions WHERE expires <= ?1",
                [crate::store::now_millis()],
            )?;
            conn.execute(
                "INSERT INTO sessions (key, state, expires) VALUES (?1, ?2, ?3)",
                params![key, state, expires],
            )
            .map(drop)
        })
        .await
}

pub(super) async fn update(
    store: &SqliteStore,
    key: &str,
    state: &str,
    expires: Millis,
    now: Millis,
) -> StoreResult<bool> {
    let (key, state) = (key.to_owned(), state.to_owned());
    store
        .write(move |conn| {
            conn.execute(
                "UPDATE sessions SET state = ?2, expires = ?3 WHERE key = ?1 AND expires > ?4",
                params![key, state, expires, now],
            )
            .map(|changed| changed > 0)
        })
        .await
}

pub(super) async fn touch(
    store: &SqliteStore,
    key: &str,
    expires: Millis,
    now: Millis,
) -> StoreResult<()> {
    let key = key.to_owned();
    store
        .write(move |conn| {
            conn.execute(
                "UPDATE sessions SET expires = ?2 WHERE key = ?1 AND expires > ?3",
                params![key, expires, now],
            )
            .map(drop)
        })
        .await
}

pub(super) async fn delete(store: &SqliteStore, key: &str) -> StoreResult<()> {
    let key = key.to_owned();
    store
        .write(move |conn| {
            conn.execute("DELETE FROM sessions WHERE key = ?1", [key])
                .map(drop)
        })
        .await
}

pub(super) async fn secret(
    store: &SqliteStore,
    name: &str,
    candidate: Vec<u8>,
) -> StoreResult<Vec<u8>> {
    let name = name.to_owned();
    store
        .write(move |conn| {
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
