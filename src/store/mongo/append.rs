//! Appending to a room.
//!
//! A message's `seq` is the room's last stored `seq`
//! plus one, and the unique `(room, seq)` index is the arbiter: if another
//! replica took that number first, the insert fails with a duplicate-key
//! error; the writer reads what holds those seqs and tries again after
//! them. What it reads is either its own first copy (the driver retried an
//! insert whose connection broke) or the other writer's messages, which
//! the room gets with its batch ([`Appended::others`]): it needs them
//! before its own, and would otherwise wait for the broker or read them. A
//! number is therefore only ever taken by a message that was actually
//! stored, so there are neither collisions nor gaps, even when an insert
//! fails half-way or the database dies. (A counter document bumped with
//! `$inc` before the insert would leave a hole for every insert that fails
//! after the bump.) Each process remembers the last `seq` it wrote per room,
//! so while one replica is the only writer of a room an append is a single
//! `insert_many` with no read before it.

use std::collections::HashMap;
use std::time::Duration;

use mongodb::bson::{doc, DateTime};
use mongodb::error::{Error as MongoError, ErrorKind};

use super::documents::{stored_kind, MessageDoc};
use super::{all, unavailable, MongoStore, DUPLICATE_KEY};
use crate::store::{
    in_batch_order, repeated_in_batch, Appended, Draft, Millis, NewEvent, Original, StoreError,
    StoreResult, RETRY_SCAN,
};

/// How long an append that failed may spend finding out whether it was
/// stored after all.
const CHECK_TIMEOUT: Duration = Duration::from_millis(1500);

/// Most of other writers' messages one append reads and hands the room.
const OTHERS_READ: usize = 256;

/// Appends retried after losing a `seq` race before giving up: each lost
/// race means another writer stored a message, so this only runs out under
/// pathological contention.
const MAX_APPEND_ATTEMPTS: usize = 64;

/// What holds the seqs an insert failed to take.
struct Taken {
    /// How many of the batch are stored there all the same.
    ours: usize,
    /// Other writers' messages after those, oldest first.
    others: Vec<MessageDoc>,
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

impl MongoStore {
    /// See [`Store::append`].
    pub(super) async fn append_batch(
        &self,
        room: &str,
        batch: Vec<NewEvent>,
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
        let new: Vec<NewEvent> = batch
            .iter()
            .zip(&found)
            .filter(|(_, found)| found.is_none())
            .map(|(message, _)| message.clone())
            .collect();
        let inserted = self.insert(room, &new, ts).await?;
        // A change found stored may be one whose making failed after it
        // was stored (its answer was unknown): making it again is harmless.
        // The new ones of the batch are stored by now, so a failure here
        // leaves the answer unknown.
        for (found, message) in found.iter().zip(&batch) {
            if let (Some(Original::Stored(original)), Some(_)) = (found, message.draft.target()) {
                let made = match &message.draft {
                    Draft::Delete { target } => self.erase(room, target).await,
                    draft => self.edit(room, original.seq(), draft, ts).await.map(drop),
                };
                made.map_err(|err| {
                    StoreError::uncertain(format!("making a retried change again: {err}"))
                })?;
            }
        }
        Ok(Appended {
            events: in_batch_order(found, inserted.events),
            others: inserted.others,
        })
    }

    /// The highest `seq` `room` has given out, 0 if none: its newest
    /// stored message, or, once retention pruned them all, what the room
    /// list remembers (a seq is never handed out twice).
    async fn stored_last_seq(&self, room: &str) -> StoreResult<u64> {
        let newest = self
            .messages
            .find_one(doc! { "room": room })
            .sort(doc! { "seq": -1 })
            .await
            .map_err(unavailable)?;
        let stored = newest.map_or(0, |message| message.seq as u64);
        if stored > 0 {
            return Ok(stored);
        }
        let listed = self
            .rooms
            .find_one(doc! { "_id": room })
            .await
            .map_err(unavailable)?
            .and_then(|room| super::documents::listed_last_seq(&room));
        Ok(listed.map_or(0, |seq| seq.max(0) as u64))
    }

    /// After a failed insert of `pending` at the seqs after `last`: what
    /// holds those seqs now. An ordered insert stores a prefix, each message
    /// at the seq it was given, so the ids read back tell how much of
    /// `pending` is stored; what follows them is other writers' messages.
    /// Bounded by [`CHECK_TIMEOUT`].
    async fn taken_after(&self, room: &str, last: u64, pending: &[NewEvent]) -> StoreResult<Taken> {
        let read = async {
            let mut found = all(self
                .messages
                .find(doc! { "room": room, "seq": { "$gt": last as i64 } })
                .sort(doc! { "seq": 1 })
                .limit((pending.len() + OTHERS_READ) as i64)
                .await
                .map_err(unavailable)?)
            .await?;
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
            .unwrap_or_else(|_| Err(StoreError::unavailable("no answer")))
    }

    /// Stores `batch` as the room's next messages (see [`Store::append`]).
    async fn insert(&self, room: &str, batch: &[NewEvent], ts: Millis) -> StoreResult<Appended> {
        // A delete erases its message before it is stored: whatever fails
        // after, the text is gone (a delete that then fails to be stored
        // is refused, and its retry stores it).
        for message in batch {
            if let Draft::Delete { target } = &message.draft {
                self.erase(room, target).await.map_err(unavailable)?;
            }
        }
        // How full each recipient's inbox is (a direct room has two)
        // decides which of the batch go in it, decided once for the batch.
        // So does the sender's share of it.
        let mut room_for: HashMap<&str, u64> = HashMap::new();
        let mut share_for: HashMap<(&str, &str), u64> = HashMap::new();
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
                room_for.insert(recipient, crate::store::MAX_INBOX.saturating_sub(waiting));
            }
            let sender = message.from.as_str();
            if let std::collections::hash_map::Entry::Vacant(entry) =
                share_for.entry((recipient, sender))
            {
                let theirs = self
                    .messages
                    .count_documents(doc! { "to": recipient, "delivered": false, "from": sender })
                    .await
                    .map_err(unavailable)?;
                entry.insert(crate::store::MAX_INBOX_PER_SENDER.saturating_sub(theirs));
            }
            let left = room_for.get_mut(recipient).expect("just counted");
            let share = share_for
                .get_mut(&(recipient, sender))
                .expect("just counted");
            let kept = *left > 0 && *share > 0;
            in_inbox.push(kept);
            if kept {
                *left -= 1;
                *share -= 1;
            }
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
                    text: message.draft.text().to_owned(),
                    ts: DateTime::from_millis(ts),
                    id: message.id.clone(),
                    to: message.to.clone(),
                    delivered: !in_inbox[batch.len() - pending.len() + offset],
                    confirm: message.confirm.clone(),
                    client_ref: message.reference.clone(),
                    kind: stored_kind(&message.draft),
                    target: message.draft.target().map(str::to_owned),
                    edited: None,
                    deleted: false,
                    changed: None,
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
                            StoreError::uncertain(format!("part of the batch is stored: {err}"))
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
                                    return Err(StoreError::uncertain(format!(
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
                                return Err(StoreError::uncertain(format!(
                                    "{err}; checking what was stored failed too: {check}"
                                )))
                            }
                        },
                    }
                }
            };
            for (offset, message) in pending[..inserted].iter().enumerate() {
                stored.push(message.draft.clone().into_event(
                    room,
                    last + 1 + offset as u64,
                    message.id.clone(),
                    message.from.clone(),
                    ts,
                ));
            }
            if inserted == pending.len() {
                self.remember_last_seq(room, Some(last + inserted as u64));
            }
            pending = &pending[inserted..];
        }
        // The edits are stored; their messages are changed after (the
        // later seq wins), so a failure here leaves the answer unknown (a
        // retry makes it again). What goes out is what was stored: a late
        // edit's text is not.
        for (event, message) in stored.iter_mut().zip(batch) {
            if !matches!(message.draft, Draft::Edit { .. }) {
                continue;
            }
            let took = self
                .edit(room, event.seq(), &message.draft, ts)
                .await
                .map_err(|err| {
                    StoreError::uncertain(format!(
                        "an edit is stored, its message may not show it: {err}"
                    ))
                })?;
            if !took {
                *event = message.draft.with_text(String::new()).into_event(
                    room,
                    event.seq(),
                    message.id.clone(),
                    message.from.clone(),
                    ts,
                );
            }
        }
        if let Some(newest) = stored.last() {
            // Only feeds the room list; a failure here must not fail a send
            // whose messages are already stored.
            let activity = self
                .rooms
                .update_one(
                    doc! { "_id": room },
                    doc! {
                        "$max": { "last_seq": newest.seq() as i64, "last_ts": DateTime::from_millis(ts) },
                        "$set": { "direct": crate::store::is_direct(room) },
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
        let others = match super::history::with_avatars(self, others).await {
            Ok(others) => others,
            Err(err) => {
                tracing::debug!(%room, error = %err, "could not read the photos of other writers' messages");
                Vec::new()
            }
        };
        Ok(Appended {
            events: stored,
            others,
        })
    }

    /// Makes the edit stored as `seq` to its message; whether it took.
    /// Replicas may make two edits of one message in either order: one
    /// takes only if no later one did (`changed`). An edit of a message
    /// deleted meanwhile erases its own text.
    pub(super) async fn edit(
        &self,
        room: &str,
        seq: u64,
        draft: &Draft,
        ts: Millis,
    ) -> Result<bool, MongoError> {
        let Draft::Edit { target, text } = draft else {
            return Ok(true);
        };
        let seq = seq as i64;
        let edited = self
            .messages
            .update_one(
                doc! {
                    "room": room, "id": target, "kind": { "$exists": false },
                    "deleted": { "$ne": true },
                    "$or": [ { "changed": { "$exists": false } }, { "changed": { "$lt": seq } } ],
                },
                doc! { "$set": { "text": text, "edited": DateTime::from_millis(ts), "changed": seq } },
            )
            .await?;
        if edited.matched_count > 0 {
            return Ok(true);
        }
        let deleted = self
            .messages
            .find_one(doc! { "room": room, "id": target, "deleted": true })
            .await?;
        if deleted.is_none() {
            // A later edit took first: this one stays in the stream as it was.
            return Ok(true);
        }
        self.messages
            .update_one(
                doc! { "room": room, "seq": seq },
                doc! { "$set": { "text": "" } },
            )
            .await?;
        Ok(false)
    }

    /// Takes message `target` back: its text, and its edits', are erased.
    async fn erase(&self, room: &str, target: &str) -> Result<(), MongoError> {
        self.messages
            .update_one(
                doc! { "room": room, "id": target, "kind": { "$exists": false } },
                doc! { "$set": { "text": "", "deleted": true, "delivered": true } },
            )
            .await?;
        self.messages
            .update_many(
                doc! { "room": room, "target": target, "text": { "$ne": "" } },
                doc! { "$set": { "text": "" } },
            )
            .await?;
        Ok(())
    }

    /// For each message of `batch`, its original if it is a retry of one
    /// that is stored (among the room's newest [`RETRY_SCAN`]) or earlier
    /// in the batch.
    async fn retried(&self, room: &str, batch: &[NewEvent]) -> StoreResult<Vec<Option<Original>>> {
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
                    "kind": stored_kind(&message.draft),
                    "target": message.draft.target(),
                    // The original as posted, or changed since (edited,
                    // deleted, an edit's text erased by a delete).
                    "$or": [
                        { "text": message.draft.text() },
                        { "edited": { "$exists": true } },
                        { "deleted": true },
                        { "kind": { "$exists": true }, "text": "" },
                    ],
                })
                .sort(doc! { "seq": -1 })
                .await
                .map_err(unavailable)?;
            found.push(original.map(|doc| Original::Stored(doc.into_event(&HashMap::new()))));
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
