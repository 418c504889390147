//! Direct messages waiting for their recipient, delivery marks, read positions.
//!
//! Marks and fetch claims flip many messages in one `update_many`, each
//! under a claim token of its own: a message's flip is atomic, and only
//! one call can flip it (the filter wants `delivered: false`), so reading
//! back what carries the token says which messages this call won. Two
//! replicas delivering one message, or two tabs fetching at once, still
//! confirm and hand out each message once, in two or three round trips
//! instead of one per message.

use mongodb::bson::oid::ObjectId;
use mongodb::bson::{doc, Bson, Document};

use super::documents::MessageDoc;
use super::{all, unavailable, MongoStore};
use crate::store::{Missed, Receipt, StoreResult};

pub(super) async fn mark_delivered(
    store: &MongoStore,
    user: &str,
    room: &str,
    seqs: Vec<u64>,
) -> StoreResult<Vec<Receipt>> {
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    let seqs: Vec<i64> = seqs.into_iter().map(|seq| seq as i64).collect();
    let claim = ObjectId::new();
    let marked = store
        .messages
        .update_many(
            doc! { "room": room, "seq": { "$in": &seqs }, "to": user, "delivered": false },
            doc! { "$set": { "delivered": true, "claim": claim } },
        )
        .await
        .map_err(unavailable)?;
    if marked.modified_count == 0 {
        return Ok(Vec::new());
    }
    // Whoever flipped `delivered` confirms: only this call's flips, and of
    // those only the ones that asked for a confirmation.
    let confirmed = all(store
        .messages
        .find(doc! {
            "room": room, "seq": { "$in": &seqs }, "claim": claim, "confirm": { "$exists": true },
        })
        .sort(doc! { "seq": 1 })
        .await
        .map_err(unavailable)?)
    .await?;
    Ok(confirmed
        .into_iter()
        .filter_map(|message| {
            Some(Receipt {
                room: room.to_owned(),
                seq: message.seq as u64,
                confirm: message.confirm?,
                from: message.from,
                to: user.to_owned(),
            })
        })
        .collect())
}

pub(super) async fn pending_count(store: &MongoStore, user: &str) -> StoreResult<u64> {
    store
        .messages
        .count_documents(doc! { "to": user, "delivered": false })
        .await
        .map_err(unavailable)
}

pub(super) async fn fetch_missed(
    store: &MongoStore,
    user: &str,
    limit: u32,
) -> StoreResult<Missed> {
    let candidates = all(store
        .messages
        .find(doc! { "to": user, "delivered": false })
        .sort(doc! { "ts": 1, "room": 1, "seq": 1 })
        .limit(i64::from(limit))
        .await
        .map_err(unavailable)?)
    .await?;
    // Photos first: once claimed, a message that is not handed out is
    // lost to the inbox, so nothing that can fail comes after the claim
    // but its own read-back (only when another claimer won some).
    let avatars = super::users::avatars_of(store, &candidates).await?;
    let claimed = claim(store, user, candidates).await?;
    let mut missed = Missed::default();
    for message in claimed {
        if let Some(confirm) = message.confirm.clone() {
            missed.deliveries.push(Receipt {
                room: message.room.clone(),
                seq: message.seq as u64,
                from: message.from.clone(),
                to: user.to_owned(),
                confirm,
            });
        }
        missed.messages.push(message.into_event(&avatars));
    }
    missed.left = match pending_count(store, user).await {
        Ok(left) => left,
        Err(err) if missed.messages.is_empty() => return Err(err),
        // The page is claimed: hand it out, and let the client ask again
        // for the count (a page may be short while `left` is above 0).
        Err(err) => {
            tracing::warn!(error = %err, "counting the rest of an inbox failed");
            1
        }
    };
    Ok(missed)
}

/// Marks `candidates` delivered and keeps those this call flipped: a
/// concurrent fetch or a live delivery that flipped one first keeps it.
async fn claim(
    store: &MongoStore,
    user: &str,
    candidates: Vec<MessageDoc>,
) -> StoreResult<Vec<MessageDoc>> {
    if candidates.is_empty() {
        return Ok(candidates);
    }
    let keys: Vec<Bson> = candidates
        .iter()
        .map(|message| Bson::Document(doc! { "room": &message.room, "seq": message.seq }))
        .collect();
    let token = ObjectId::new();
    let won = store
        .messages
        .update_many(
            doc! { "$or": &keys, "to": user, "delivered": false },
            doc! { "$set": { "delivered": true, "claim": token } },
        )
        .await
        .map_err(unavailable)?;
    if won.modified_count as usize == candidates.len() {
        // The filter matches no message outside `candidates`.
        return Ok(candidates);
    }
    let mine: Vec<(String, i64)> = all(store
        .messages
        .clone_with_type::<Document>()
        .find(doc! { "$or": &keys, "claim": token })
        .projection(doc! { "_id": 0, "room": 1, "seq": 1 })
        .await
        .map_err(unavailable)?)
    .await?
    .into_iter()
    .filter_map(|key| {
        let seq = key.get("seq")?;
        let seq = seq.as_i64().or(seq.as_i32().map(i64::from))?;
        Some((key.get_str("room").ok()?.to_owned(), seq))
    })
    .collect();
    Ok(candidates
        .into_iter()
        .filter(|message| {
            mine.iter()
                .any(|(room, seq)| *room == message.room && *seq == message.seq)
        })
        .collect())
}

pub(super) async fn set_read(
    store: &MongoStore,
    room: &str,
    user: &str,
    seq: u64,
) -> StoreResult<()> {
    store
        .reads
        .update_one(
            doc! { "room": room, "user": user },
            doc! { "$max": { "seq": seq as i64 } },
        )
        .upsert(true)
        .await
        .map(drop)
        .map_err(unavailable)
}

pub(super) async fn read_positions(
    store: &MongoStore,
    room: &str,
    limit: u32,
) -> StoreResult<Vec<(String, u64)>> {
    let mut cursor = store
        .reads
        .find(doc! { "room": room })
        .sort(doc! { "seq": -1, "user": 1 })
        .limit(i64::from(limit))
        .await
        .map_err(unavailable)?;
    let mut positions = Vec::new();
    while cursor.advance().await.map_err(unavailable)? {
        let read = cursor.deserialize_current().map_err(unavailable)?;
        if let (Ok(user), Some(seq)) = (read.get_str("user"), read.get("seq")) {
            let seq = seq.as_i64().or(seq.as_i32().map(i64::from)).unwrap_or(0);
            positions.push((user.to_owned(), seq as u64));
        }
    }
    Ok(positions)
}
