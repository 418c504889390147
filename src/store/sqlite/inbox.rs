//! Direct messages waiting for their recipient, delivery marks, read positions.

use rusqlite::{params, OptionalExtension};

use super::SqliteStore;
use crate::store::{Missed, Receipt, StoreResult, StoredEvent};

pub(super) async fn mark_delivered(
    store: &SqliteStore,
    user: &str,
    room: &str,
    seqs: Vec<u64>,
) -> StoreResult<Vec<Receipt>> {
    let (user, room) = (user.to_owned(), room.to_owned());
    store
        .write(move |conn| {
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
                        deliveries.push(Receipt {
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

pub(super) async fn pending_count(store: &SqliteStore, user: &str) -> StoreResult<u64> {
    let user = user.to_owned();
    store
        .read(move |conn| {
            conn.query_row(
                "SELECT count(*) FROM messages WHERE recipient = ?1 AND delivered = 0",
                [user],
                |row| row.get::<_, i64>(0),
            )
            .map(|count| count as u64)
        })
        .await
}

pub(super) async fn fetch_missed(
    store: &SqliteStore,
    user: &str,
    limit: u32,
) -> StoreResult<Missed> {
    let user = user.to_owned();
    // On the writer: claiming must see, and beat, concurrent marks.
    store
        .write(move |conn| {
            let mut missed = Missed::default();
            {
                let mut claim = conn.prepare_cached(
                    "UPDATE messages SET delivered = 1
                 WHERE (room, seq) IN (
                     SELECT room, seq FROM messages
                     WHERE recipient = ?1 AND delivered = 0
                     ORDER BY ts, room, seq LIMIT ?2)
                 RETURNING room, seq, sender, text, ts, id, confirm,
                     (SELECT avatar FROM users WHERE name = sender), edited",
                )?;
                let mut rows = claim.query(params![user, limit])?;
                while let Some(row) = rows.next()? {
                    // Only messages wait in an inbox, and a deleted one
                    // leaves it.
                    let message = StoredEvent {
                        room: row.get(0)?,
                        seq: row.get::<_, i64>(1)? as u64,
                        from: row.get(2)?,
                        text: row.get(3)?,
                        ts: row.get(4)?,
                        id: row.get(5)?,
                        kind: 0,
                        target: None,
                        avatar: row.get(7)?,
                        delivered: true,
                        edited: row.get(8)?,
                        deleted: false,
                    }
                    .into_event();
                    if let Some(confirm) = row.get::<_, Option<String>>(6)? {
                        missed.deliveries.push(Receipt {
                            room: message.room().to_owned(),
                            seq: message.seq(),
                            from: message.from().to_owned(),
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
                .sort_by(|a, b| (a.ts(), a.room(), a.seq()).cmp(&(b.ts(), b.room(), b.seq())));
            missed.left = conn.query_row(
                "SELECT count(*) FROM messages WHERE recipient = ?1 AND delivered = 0",
                [&user],
                |row| row.get::<_, i64>(0),
            )? as u64;
            Ok(missed)
        })
        .await
}

pub(super) async fn set_read(
    store: &SqliteStore,
    room: &str,
    user: &str,
    seq: u64,
) -> StoreResult<()> {
    let (room, user) = (room.to_owned(), user.to_owned());
    store
        .write(move |conn| {
            conn.execute(
                "INSERT INTO reads (room, user, seq) VALUES (?1, ?2, ?3)
             ON CONFLICT (room, user) DO UPDATE SET seq = max(seq, excluded.seq)",
                params![room, user, seq as i64],
            )
            .map(drop)
        })
        .await
}

pub(super) async fn read_positions(
    store: &SqliteStore,
    room: &str,
    limit: u32,
) -> StoreResult<Vec<(String, u64)>> {
    let room = room.to_owned();
    store
        .read(move |conn| {
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
