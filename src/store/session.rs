//! actix-session's [`SessionStore`] on top of any [`Store`], so HTTP sessions
//! live wherever users and messages live: in the SQLite file for a single
//! replica, in the shared database for a cluster.

use std::collections::HashMap;
use std::sync::Arc;

use actix_session::storage::{
    generate_session_key, LoadError, SaveError, SessionKey, SessionStore, UpdateError,
};
use actix_web::cookie::time::Duration;

use super::{now_millis, Millis, Store};

type SessionState = HashMap<String, String>;

#[derive(Clone)]
pub struct StoreSessions {
    store: Arc<dyn Store>,
}

impl StoreSessions {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

fn expiry(ttl: &Duration) -> Millis {
    now_millis().saturating_add(ttl.whole_milliseconds() as Millis)
}

impl SessionStore for StoreSessions {
    async fn load(&self, key: &SessionKey) -> Result<Option<SessionState>, LoadError> {
        let state = self
            .store
            .session_load(key.as_ref(), now_millis())
            .await
            .map_err(|err| LoadError::Other(err.into()))?;
        state
            .map(|json| serde_json::from_str(&json))
            .transpose()
            .map_err(|err| LoadError::Deserialization(err.into()))
    }

    async fn save(&self, state: SessionState, ttl: &Duration) -> Result<SessionKey, SaveError> {
        let json =
            serde_json::to_string(&state).map_err(|err| SaveError::Serialization(err.into()))?;
        let key = generate_session_key();
        self.store
            .session_insert(key.as_ref(), &json, expiry(ttl))
            .await
            .map_err(|err| SaveError::Other(err.into()))?;
        Ok(key)
    }

    async fn update(
        &self,
        key: SessionKey,
        state: SessionState,
        ttl: &Duration,
    ) -> Result<SessionKey, UpdateError> {
        let json =
            serde_json::to_string(&state).map_err(|err| UpdateError::Serialization(err.into()))?;
        let updated = self
            .store
            .session_update(key.as_ref(), &json, expiry(ttl), now_millis())
            .await
            .map_err(|err| UpdateError::Other(err.into()))?;
        if updated {
            return Ok(key);
        }
        // The session expired meanwhile: issue a new key rather than revive the old one.
        self.save(state, ttl).await.map_err(|err| match err {
            SaveError::Serialization(err) => UpdateError::Serialization(err),
            SaveError::Other(err) => UpdateError::Other(err),
        })
    }

    async fn update_ttl(&self, key: &SessionKey, ttl: &Duration) -> Result<(), anyhow::Error> {
        Ok(self
            .store
            .session_touch(key.as_ref(), expiry(ttl), now_millis())
            .await?)
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), anyhow::Error> {
        Ok(self.store.session_delete(key.as_ref()).await?)
    }
}
