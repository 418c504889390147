//! Appending to a room: the seq range is taken from the room's row and the
//! events inserted in the writer's transaction, so nothing else can
//! interleave; an edit or a delete changes its message in the same
//! transaction.

use rusqlite::{params, Connection, OptionalExtension};

use super::SqliteStore;
use crate::event::Event;
use crate::store::{
    in_batch_order, repeated_in_batch, Appended, Draft, Millis, NewEvent, Original, StoreResult,
    RETRY_SCAN,
};

pub(super) async fn append(
    store: &SqliteStore,
    room: &str,
    batch: Vec<NewEvent>,
    ts: Millis,
) -> StoreResult<Appended> {
    if batch.is_empty() {
        return Ok(Appended::default());
    }
    let room = room.to_owned();
    store
        .writer
        .write(batch.len(), move |conn| {
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
            // Each recipient's inbox (a direct room has two), and the
            // sender's share of it, counted once per batch.
            let mut inboxes = Inboxes::default();
            let mut inserted: Vec<Event> = Vec::with_capacity(count as usize);
            let mut insert = conn.prepare_cached(
            "INSERT INTO messages (room, seq, sender, text, ts, id, recipient, delivered, confirm,
                 client_ref, kind, target)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?;
            for (message, found) in batch.into_iter().zip(&retried) {
                if found.is_some() {
                    continue;
                }
                let seq = next;
                next += 1;
                let kept = match &message.to {
                    Some(recipient) => inboxes.keeps(conn, recipient, &message.from)?,
                    None => false,
                };
                // An edit of a message deleted by now keeps no text, and
                // what goes out (ack, live, other replicas) is what was
                // stored.
                let draft = match change(conn, &room, &message.draft, ts)? {
                    true => message.draft,
                    false => message.draft.with_text(String::new()),
                };
                insert.execute(params![
                    room,
                    seq as i64,
                    message.from,
                    draft.text(),
                    ts,
                    message.id,
                    message.to,
                    !kept,
                    message.confirm,
                    message.reference,
                    draft.kind() as i64,
                    draft.target(),
                ])?;
                inserted.push(draft.into_event(&room, seq, message.id, message.from, ts));
            }
            // One process writes the file and allocates every seq in the
            // transaction: nobody else's messages lie in between.
            Ok(Appended {
                events: in_batch_order(retried, inserted),
                others: Vec::new(),
            })
        })
        .await
}

/// Makes an edit or a delete to its message; whether the message took it
/// (an edit of a deleted message changes nothing).
fn change(conn: &Connection, room: &str, draft: &Draft, ts: Millis) -> rusqlite::Result<bool> {
    match draft {
        Draft::Message(_) => Ok(true),
        Draft::Edit { target, text } => Ok(conn
            .prepare_cached(
                "UPDATE messages SET text = ?3, edited = ?4
                 WHERE id = ?1 AND room = ?2 AND kind = 0 AND deleted = 0",
            )?
            .execute(params![target, room, text, ts])?
            > 0),
        Draft::Delete { target } => {
            // The text goes, and so does every edit's; a deleted direct
            // message leaves the recipient's inbox.
            conn.prepare_cached(
                "UPDATE messages SET text = '', deleted = 1, delivered = 1
                 WHERE id = ?1 AND room = ?2 AND kind = 0",
            )?
            .execute(params![target, room])?;
            conn.prepare_cached(
                "UPDATE messages SET text = '' WHERE target = ?1 AND room = ?2 AND text != ''",
            )?
            .execute(params![target, room])?;
            Ok(true)
        }
    }
}

fn retried(
    conn: &Connection,
    room: &str,
    batch: &[NewEvent],
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
        "SELECT seq, ts, id, text, deleted, edited FROM messages
         WHERE room = ?1 AND seq > ?2 AND sender = ?3 AND client_ref = ?4 AND kind = ?6
             AND target IS ?7
             -- The original as posted, or changed since (edited, deleted,
             -- an edit's text erased by a delete): its text is not the
             -- retry's any more.
             AND (text = ?5 OR edited IS NOT NULL OR deleted = 1 OR (kind != 0 AND text = ''))
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
                    message.draft.text(),
                    message.draft.kind() as i64,
                    message.draft.target(),
                ],
                |row| {
                    Ok(message
                        .draft
                        .with_text(row.get(3)?)
                        .into_event(
                            room,
                            row.get::<_, i64>(0)? as u64,
                            row.get::<_, String>(2)?,
                            message.from.clone(),
                            row.get(1)?,
                        )
                        .with_deleted(row.get(4)?)
                        .with_edited(row.get(5)?))
                },
            )
            .optional()?;
        found.push(original.map(Original::Stored));
    }
    Ok(found)
}

/// How many direct messages wait for each recipient (`None`) and from
/// each sender (`Some`), read once per batch on the indexes of what waits
/// and counted on from there.
#[derive(Default)]
struct Inboxes {
    waiting: std::collections::HashMap<(String, Option<String>), u64>,
}

impl Inboxes {
    fn count(
        &mut self,
        conn: &rusqlite::Connection,
        recipient: &str,
        sender: Option<&str>,
    ) -> rusqlite::Result<u64> {
        let key = (recipient.to_owned(), sender.map(str::to_owned));
        if let Some(count) = self.waiting.get(&key) {
            return Ok(*count);
        }
        let count = match sender {
            None => conn
                .prepare_cached(
                    "SELECT count(*) FROM messages WHERE recipient = ?1 AND delivered = 0",
                )?
                .query_row([recipient], |row| row.get::<_, i64>(0))?,
            Some(sender) => conn
                .prepare_cached(
                    "SELECT count(*) FROM messages
                     WHERE recipient = ?1 AND sender = ?2 AND delivered = 0",
                )?
                .query_row([recipient, sender], |row| row.get::<_, i64>(0))?,
        } as u64;
        self.waiting.insert(key, count);
        Ok(count)
    }

    /// Whether a message from `sender` goes into `recipient`'s inbox: it
    /// has room, and the sender has not filled their share of it.
    fn keeps(
        &mut self,
        conn: &rusqlite::Connection,
        recipient: &str,
        sender: &str,
    ) -> rusqlite::Result<bool> {
        let all = self.count(conn, recipient, None)?;
        let theirs = self.count(conn, recipient, Some(sender))?;
        let kept = all < crate::store::MAX_INBOX && theirs < crate::store::MAX_INBOX_PER_SENDER;
        if kept {
            for key in [
                (recipient.to_owned(), None),
                (recipient.to_owned(), Some(sender.to_owned())),
            ] {
                *self.waiting.entry(key).or_default() += 1;
            }
        }
        Ok(kept)
    }
}
