//! Reading a room's events back: history pages, gap fills, one message, the
//! room list.

use mongodb::bson::{doc, Document};

use super::documents::MessageDoc;
use super::{all, unavailable, MongoStore};
use crate::event::Event;
use crate::store::StoreResult;

pub(super) async fn before(
    store: &MongoStore,
    room: &str,
    before: Option<u64>,
    limit: u32,
) -> StoreResult<Vec<Event>> {
    newest_before(store, doc! { "room": room }, before, limit).await
}

pub(super) async fn messages(
    store: &MongoStore,
    room: &str,
    before: Option<u64>,
    limit: u32,
) -> StoreResult<Vec<Event>> {
    let only_messages = doc! { "room": room, "kind": { "$exists": false } };
    newest_before(store, only_messages, before, limit).await
}

/// The newest `limit` documents `filter` picks with `seq < before`, oldest
/// first.
async fn newest_before(
    store: &MongoStore,
    mut filter: Document,
    before: Option<u64>,
    limit: u32,
) -> StoreResult<Vec<Event>> {
    let before = before.map_or(i64::MAX, |seq| seq.min(i64::MAX as u64) as i64);
    filter.insert("seq", doc! { "$lt": before });
    let mut page = all(store
        .messages
        .find(filter)
        .sort(doc! { "seq": -1 })
        .limit(i64::from(limit))
        .await
        .map_err(unavailable)?)
    .await?;
    page.reverse();
    with_avatars(store, page).await
}

pub(super) async fn message(
    store: &MongoStore,
    room: &str,
    id: &str,
) -> StoreResult<Option<Event>> {
    let found = store
        .messages
        .find_one(doc! { "id": id, "room": room, "kind": { "$exists": false } })
        .await
        .map_err(unavailable)?;
    Ok(with_avatars(store, found.into_iter().collect())
        .await?
        .pop())
}

pub(super) async fn after(
    store: &MongoStore,
    room: &str,
    after: u64,
    limit: u32,
) -> StoreResult<Vec<Event>> {
    let after = after.min(i64::MAX as u64) as i64;
    let page = all(store
        .messages
        .find(doc! { "room": room, "seq": { "$gt": after } })
        .sort(doc! { "seq": 1 })
        .limit(i64::from(limit))
        .await
        .map_err(unavailable)?)
    .await?;
    with_avatars(store, page).await
}

pub(super) async fn recent_rooms(store: &MongoStore, limit: u32) -> StoreResult<Vec<String>> {
    let mut cursor = store
        .rooms
        .find(doc! { "direct": false })
        .sort(doc! { "last_ts": -1 })
        .limit(i64::from(limit))
        .projection(doc! { "_id": 1 })
        .await
        .map_err(unavailable)?;
    let mut rooms = Vec::new();
    while cursor.advance().await.map_err(unavailable)? {
        let room = cursor.deserialize_current().map_err(unavailable)?;
        if let Ok(name) = room.get_str("_id") {
            rooms.push(name.to_owned());
        }
    }
    Ok(rooms)
}

/// Stored messages as the store hands them out: with their authors'
/// current photos.
pub(super) async fn with_avatars(
    store: &MongoStore,
    page: Vec<MessageDoc>,
) -> StoreResult<Vec<Event>> {
    let avatars = super::users::avatars_of(store, &page).await?;
    Ok(page
        .into_iter()
        .map(|message| message.into_event(&avatars))
        .collect())
}
