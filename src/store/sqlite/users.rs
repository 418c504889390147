//! Accounts and their profile photos.

use rusqlite::{params, OptionalExtension};

use super::SqliteStore;
use crate::store::{StoreResult, User};

pub(super) async fn create(
    store: &SqliteStore,
    name: &str,
    password_hash: &str,
) -> StoreResult<()> {
    let (name, hash) = (name.to_owned(), password_hash.to_owned());
    store
        .write(move |conn| {
            conn.execute(
                "INSERT INTO users (name, password_hash, created) VALUES (?1, ?2, ?3)",
                params![name, hash, crate::store::now_millis()],
            )
            .map(drop)
        })
        .await
}

pub(super) async fn find(store: &SqliteStore, name: &str) -> StoreResult<Option<User>> {
    let name = name.to_owned();
    store
        .read(move |conn| {
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

pub(super) async fn find_ignoring_case(
    store: &SqliteStore,
    name: &str,
) -> StoreResult<Option<String>> {
    let name = name.to_owned();
    store
        .read(move |conn| {
            conn.query_row(
                "SELECT name FROM users WHERE name = ?1 COLLATE NOCASE LIMIT 1",
                [&name],
                |row| row.get(0),
            )
            .optional()
        })
        .await
}

pub(super) async fn put_operator(
    store: &SqliteStore,
    name: &str,
    password_hash: &str,
) -> StoreResult<()> {
    let (name, hash) = (name.to_owned(), password_hash.to_owned());
    store
        .write(move |conn| {
            conn.execute(
                "INSERT INTO users (name, password_hash, created, operator) VALUES (?1, ?2, ?3, 1)
             ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash, operator = 1",
                params![name, hash, crate::store::now_millis()],
            )
            .map(drop)
        })
        .await
}

pub(super) async fn set_avatar(
    store: &SqliteStore,
    name: &str,
    avatar: Option<&str>,
) -> StoreResult<Option<String>> {
    let (name, avatar) = (name.to_owned(), avatar.map(str::to_owned));
    store
        .write(move |conn| {
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
