//! Login sessions (expired by a TTL index) and the replicas' shared secrets.

use mongodb::bson::{doc, spec::BinarySubtype, Binary, DateTime};

use super::documents::SessionDoc;
use super::{conflict_or_unavailable, is_duplicate_key, unavailable, MongoStore};
use crate::store::{Millis, StoreError, StoreResult};

pub(super) async fn load(
    store: &MongoStore,
    key: &str,
    now: Millis,
) -> StoreResult<Option<String>> {
    // The TTL monitor deletes expired sessions only about once a minute,
    // so expiry is also checked here.
    let session = store
        .sessions
        .find_one(doc! { "_id": key, "expires": { "$gt": DateTime::from_millis(now) } })
        .await
        .map_err(unavailable)?;
    Ok(session.map(|session| session.state))
}

pub(super) async fn insert(
    store: &MongoStore,
    key: &str,
    state: &str,
    expires: Millis,
) -> StoreResult<()> {
    store
        .sessions
        .insert_one(SessionDoc {
            key: key.to_owned(),
            state: state.to_owned(),
            expires: DateTime::from_millis(expires),
        })
        .await
        .map(drop)
        .map_err(conflict_or_unavailable)
}

pub(super) async fn update(
    store: &MongoStore,
    key: &str,
    state: &str,
    expires: Millis,
    now: Millis,
) -> StoreResult<bool> {
    let result = store
        .sessions
        .update_one(
            doc! { "_id": key, "expires": { "$gt": DateTime::from_millis(now) } },
            doc! { "$set": { "state": state, "expires": DateTime::from_millis(expires) } },
        )
        .await
        .map_err(unavailable)?;
    Ok(result.matched_count > 0)
}

pub(super) async fn touch(
    store: &MongoStore,
    key: &str,
    expires: Millis,
    now: Millis,
) -> StoreResult<()> {
    store
        .sessions
        .update_one(
            doc! { "_id": key, "expires": { "$gt": DateTime::from_millis(now) } },
            doc! { "$set": { "expires": DateTime::from_millis(expires) } },
        )
        .await
        .map(drop)
        .map_err(unavailable)
}

pub(super) async fn delete(store: &MongoStore, key: &str) -> StoreResult<()> {
    store
        .sessions
        .delete_one(doc! { "_id": key })
        .await
        .map(drop)
        .map_err(unavailable)
}

pub(super) async fn secret(
    store: &MongoStore,
    name: &str,
    candidate: Vec<u8>,
) -> StoreResult<Vec<u8>> {
    let value = Binary {
        subtype: BinarySubtype::Generic,
        bytes: candidate,
    };
    match store
        .secrets
        .insert_one(doc! { "_id": name, "value": value })
        .await
    {
        Ok(_) => {}
        Err(err) if is_duplicate_key(&err) => {}
        Err(err) => return Err(unavailable(err)),
    }
    let stored = store
        .secrets
        .find_one(doc! { "_id": name })
        .await
        .map_err(unavailable)?
        .ok_or_else(|| StoreError::unavailable(format!("secret {name} vanished")))?;
    stored
        .get_binary_generic("value")
        .cloned()
        .map_err(|err| StoreError::unavailable(format!("secret {name} is malformed: {err}")))
}
