//! Accounts and their profile photos.

use std::collections::HashMap;

use mongodb::bson::{doc, DateTime};

use super::documents::{MessageDoc, UserDoc};
use super::{conflict_or_unavailable, unavailable, MongoStore};
use crate::store::{StoreResult, User};

/// The profile photos of the authors of `messages`, by name.
pub(super) async fn avatars_of(
    store: &MongoStore,
    messages: &[MessageDoc],
) -> StoreResult<HashMap<String, String>> {
    let mut authors: Vec<&str> = messages.iter().map(|m| m.from.as_str()).collect();
    authors.sort_unstable();
    authors.dedup();
    let mut avatars = HashMap::new();
    if authors.is_empty() {
        return Ok(avatars);
    }
    let mut users = store
        .users
        .find(doc! { "name": { "$in": authors }, "avatar": { "$ne": null } })
        .await
        .map_err(unavailable)?;
    while users.advance().await.map_err(unavailable)? {
        let user = users.deserialize_current().map_err(unavailable)?;
        if let Some(avatar) = user.avatar {
            avatars.insert(user.name, avatar);
        }
    }
    Ok(avatars)
}

pub(super) async fn create(store: &MongoStore, name: &str, password_hash: &str) -> StoreResult<()> {
    store
        .users
        .insert_one(UserDoc {
            name: name.to_owned(),
            password_hash: password_hash.to_owned(),
            avatar: None,
            created: DateTime::now(),
            operator: false,
        })
        .await
        .map(drop)
        .map_err(conflict_or_unavailable)
}

pub(super) async fn find_ignoring_case(
    store: &MongoStore,
    name: &str,
) -> StoreResult<Option<String>> {
    // Names are letters, digits and `_-.`: escaping `.` and `-` makes
    // the name a literal pattern.
    let literal: String = name
        .chars()
        .flat_map(|c| match c {
            '.' | '-' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    let user = store
        .users
        .find_one(doc! { "name": { "$regex": format!("^{literal}$"), "$options": "i" } })
        .await
        .map_err(unavailable)?;
    Ok(user.map(|user| user.name))
}

pub(super) async fn put_operator(
    store: &MongoStore,
    name: &str,
    password_hash: &str,
) -> StoreResult<()> {
    store
        .users
        .update_one(
            doc! { "name": name },
            doc! {
                "$set": { "password_hash": password_hash, "operator": true },
                "$setOnInsert": { "created": DateTime::now() },
            },
        )
        .upsert(true)
        .await
        .map(drop)
        .map_err(unavailable)
}

pub(super) async fn find(store: &MongoStore, name: &str) -> StoreResult<Option<User>> {
    let user = store
        .users
        .find_one(doc! { "name": name })
        .await
        .map_err(unavailable)?;
    Ok(user.map(|user| User {
        name: user.name,
        password_hash: user.password_hash,
        avatar: user.avatar,
        operator: user.operator,
    }))
}

pub(super) async fn set_avatar(
    store: &MongoStore,
    name: &str,
    avatar: Option<&str>,
) -> StoreResult<Option<String>> {
    // Returning the document as it was before the update hands back the
    // previous photo in the same atomic step.
    let previous = store
        .users
        .find_one_and_update(doc! { "name": name }, doc! { "$set": { "avatar": avatar } })
        .await
        .map_err(unavailable)?;
    Ok(previous.and_then(|user| user.avatar))
}
