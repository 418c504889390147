//! Direct messages waiting for their recipient, delivery marks, read positions.

use mongodb::bson::doc;

use super::documents::MessageDoc;
use super::{all, unavailable, MongoStore};
use crate::store::{Delivery, Missed, StoreResult};

pub(super) async fn mark_delivered(
    store: &MongoStore,
    user: &str,
    room: &str,
    seqs: Vec<u64>,
) -> StoreResult<Vec<Delivery>> {
    let mut deliveries = Vec::new();
    for seq in seqs {
        // One conditional update per message: whoever flips `delivered`
        // confirms it, so two replicas never both do.
        let marked = store
            .messages
            .find_one_and_update(
                doc! { "room": room, "seq": seq as i64, "to": user, "delivered": false },
                doc! { "$set": { "delivered": true } },
            )
            .await
            .map_err(unavailable)?;
        if let Some(MessageDoc {
            from,
            confirm: Some(confirm),
            ..
        }) = marked
        {
            deliveries.push(Delivery {
                room: room.to_owned(),
                seq,
                from,
                to: user.to_owned(),
                confirm,
            });
        }
    }
    Ok(deliveries)
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
    let mut claimed = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        // Claimed one by one, conditionally: a concurrent fetch or a live
        // delivery that flipped it first keeps it.
        let won = store
            .messages
            .find_one_and_update(
                doc! { "room": &candidate.room, "seq": candidate.seq, "delivered": false },
                doc! { "$set": { "delivered": true } },
            )
            .await
            .map_err(unavailable)?;
        if won.is_some() {
            claimed.push(candidate);
        }
    }
    let avatars = super::users::avatars_of(store, &claimed).await?;
    let mut missed = Missed::default();
    for message in claimed {
        if let Some(confirm) = message.confirm.clone() {
            missed.deliveries.push(Delivery {
                room: message.room.clone(),
                seq: message.seq as u64,
                from: message.from.clone(),
                to: user.to_owned(),
                confirm,
            });
        }
        missed.messages.push(message.into_stored(&avatars));
    }
    missed.left = pending_count(store, user).await?;
    Ok(missed)
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
