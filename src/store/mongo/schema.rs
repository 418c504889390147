//! The indexes each collection needs (why: the table in the module doc).

use std::time::Duration;

use mongodb::bson::doc;
use mongodb::options::IndexOptions;

use super::{index, unavailable, MongoStore};
use crate::store::StoreResult;

pub(super) async fn migrate(store: &MongoStore) -> StoreResult<()> {
    let named = |name: &str| IndexOptions::builder().name(name.to_owned());
    store
        .users
        .create_index(index(
            doc! { "name": 1 },
            named("users_by_name").unique(true).build(),
        ))
        .await
        .map_err(unavailable)?;
    // One round trip for the messages' indexes (the last deletes by time
    // for retention by age).
    store
        .messages
        .create_indexes([
            index(
                doc! { "room": 1, "seq": 1 },
                named("messages_by_room_seq").unique(true).build(),
            ),
            index(
                doc! { "to": 1, "delivered": 1, "ts": 1 },
                named("messages_undelivered").build(),
            ),
            index(
                doc! { "to": 1, "from": 1, "delivered": 1 },
                named("messages_undelivered_by_sender").build(),
            ),
            index(doc! { "ts": 1 }, named("messages_by_time").build()),
            // An edit or a delete finds its message by id, and a delete
            // the message's edits by target.
            index(doc! { "id": 1 }, named("messages_by_id").build()),
            index(
                doc! { "target": 1 },
                named("changes_by_target").sparse(true).build(),
            ),
        ])
        .await
        .map_err(unavailable)?;
    store
        .reads
        .create_index(index(
            doc! { "room": 1, "user": 1 },
            named("reads_by_room_user").unique(true).build(),
        ))
        .await
        .map_err(unavailable)?;
    store
        .rooms
        .create_index(index(
            doc! { "direct": 1, "last_ts": -1 },
            named("rooms_by_activity").build(),
        ))
        .await
        .map_err(unavailable)?;
    store
        .sessions
        .create_index(index(
            doc! { "expires": 1 },
            named("sessions_expire")
                .expire_after(Duration::ZERO)
                .build(),
        ))
        .await
        .map_err(unavailable)?;
    Ok(())
}
