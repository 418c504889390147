//! Retention: deleting what `RETENTION_DAYS` and `RETENTION_MESSAGES` no
//! longer keep.

use mongodb::bson::{doc, DateTime, Document};

use super::documents::listed_last_seq;
use super::{unavailable, MongoStore};
use crate::store::{Millis, Retention, StoreResult};

/// Deletes the messages `retention` no longer keeps; how many it deleted.
/// The server deletes in its own batches, so one call does it all.
pub(super) async fn prune(
    store: &MongoStore,
    retention: Retention,
    now: Millis,
) -> StoreResult<u64> {
    let mut deleted = 0;
    if let Some(max_age) = retention.max_age {
        let cutoff = DateTime::from_millis(now.saturating_sub(max_age));
        deleted += store
            .messages
            .delete_many(doc! { "ts": { "$lt": cutoff } })
            .await
            .map_err(unavailable)?
            .deleted_count;
    }
    if let Some(keep) = retention.per_room {
        // A room's newest seq is its own (rooms.last_seq), not the newest
        // still stored.
        let mut rooms = store
            .rooms
            .find(doc! { "last_seq": { "$gt": keep as i64 } })
            .await
            .map_err(unavailable)?;
        let mut over: Vec<(String, i64)> = Vec::new();
        while rooms.advance().await.map_err(unavailable)? {
            let room: Document = rooms.deserialize_current().map_err(unavailable)?;
            if let (Ok(name), Some(last)) = (room.get_str("_id"), listed_last_seq(&room)) {
                over.push((name.to_owned(), last));
            }
        }
        for (room, last) in over {
            deleted += store
                .messages
                .delete_many(doc! { "room": room, "seq": { "$lte": last - keep as i64 } })
                .await
                .map_err(unavailable)?
                .deleted_count;
        }
    }
    Ok(deleted)
}
