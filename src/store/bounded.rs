//! Every store operation answers within [`OPERATION_TIMEOUT`], whatever the
//! backend does.
//!
//! A database that is frozen rather than down (stopped, partitioned, its
//! disk hung) keeps connections open and never answers; the MongoDB driver
//! has no socket timeout, so without this a send waited 15–20 s. A write
//! that times out may still be applied later, so an `append` that runs out
//! of time is [`StoreError::Uncertain`], never "not stored".

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{
    Appended, Millis, Missed, NewEvent, Receipt, Retention, Store, StoreError, StoreResult, User,
};
use crate::event::Event;

/// The most any store operation takes before it fails (README: "operations
/// wait at most 5 s").
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// A store whose every operation is bounded in time.
pub struct Bounded {
    inner: Arc<dyn Store>,
    timeout: Duration,
}

impl Bounded {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self::with_timeout(inner, OPERATION_TIMEOUT)
    }

    pub fn with_timeout(inner: Arc<dyn Store>, timeout: Duration) -> Self {
        Self { inner, timeout }
    }

    /// Runs `op` (named `name` in the error counts) within the bound; a
    /// timeout is "unavailable".
    async fn within<T>(
        &self,
        name: &str,
        op: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        self.bounded(name, op, StoreError::unavailable).await
    }

    /// Runs `op` within the bound; a timeout becomes `timed_out(why)`.
    async fn bounded<T>(
        &self,
        name: &str,
        op: impl Future<Output = StoreResult<T>>,
        timed_out: fn(String) -> StoreError,
    ) -> StoreResult<T> {
        let result = tokio::time::timeout(self.timeout, op)
            .await
            .unwrap_or_else(|_| {
                Err(timed_out(format!(
                    "no answer from the database within {:?}",
                    self.timeout
                )))
            });
        if result.is_err() {
            crate::metrics::get().store_errors.inc(name);
        }
        result
    }
}

#[async_trait]
impl Store for Bounded {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn migrate(&self) -> StoreResult<()> {
        self.within("migrate", self.inner.migrate()).await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.within("ping", self.inner.ping()).await
    }

    async fn create_user(&self, name: &str, password_hash: &str) -> StoreResult<()> {
        self.within("create_user", self.inner.create_user(name, password_hash))
            .await
    }

    async fn find_user(&self, name: &str) -> StoreResult<Option<User>> {
        self.within("find_user", self.inner.find_user(name)).await
    }

    async fn find_name_ignoring_case(&self, name: &str) -> StoreResult<Option<String>> {
        self.within(
            "find_name_ignoring_case",
            self.inner.find_name_ignoring_case(name),
        )
        .await
    }

    async fn put_operator_account(&self, name: &str, password_hash: &str) -> StoreResult<()> {
        self.within(
            "put_operator_account",
            self.inner.put_operator_account(name, password_hash),
        )
        .await
    }

    async fn set_avatar(&self, name: &str, avatar: Option<&str>) -> StoreResult<Option<String>> {
        self.within("set_avatar", self.inner.set_avatar(name, avatar))
            .await
    }

    async fn append(&self, room: &str, batch: Vec<NewEvent>, ts: Millis) -> StoreResult<Appended> {
        // A write that timed out may still be applied later.
        self.bounded(
            "append",
            self.inner.append(room, batch, ts),
            StoreError::uncertain,
        )
        .await
    }

    async fn history(
        &self,
        room: &str,
        before: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<Event>> {
        self.within("history", self.inner.history(room, before, limit))
            .await
    }

    async fn messages(
        &self,
        room: &str,
        before: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<Event>> {
        self.within("messages", self.inner.messages(room, before, limit))
            .await
    }

    async fn after(&self, room: &str, after: u64, limit: u32) -> StoreResult<Vec<Event>> {
        self.within("after", self.inner.after(room, after, limit))
            .await
    }

    async fn message(&self, room: &str, id: &str) -> StoreResult<Option<Event>> {
        self.within("message", self.inner.message(room, id)).await
    }

    async fn mark_delivered(
        &self,
        user: &str,
        room: &str,
        seqs: Vec<u64>,
    ) -> StoreResult<Vec<Receipt>> {
        self.within(
            "mark_delivered",
            self.inner.mark_delivered(user, room, seqs),
        )
        .await
    }

    async fn pending_count(&self, user: &str) -> StoreResult<u64> {
        self.within("pending_count", self.inner.pending_count(user))
            .await
    }

    async fn fetch_missed(&self, user: &str, limit: u32) -> StoreResult<Missed> {
        self.within("fetch_missed", self.inner.fetch_missed(user, limit))
            .await
    }

    async fn set_read(&self, room: &str, user: &str, seq: u64) -> StoreResult<()> {
        self.within("set_read", self.inner.set_read(room, user, seq))
            .await
    }

    async fn read_positions(&self, room: &str, limit: u32) -> StoreResult<Vec<(String, u64)>> {
        self.within("read_positions", self.inner.read_positions(room, limit))
            .await
    }

    async fn recent_rooms(&self, limit: u32) -> StoreResult<Vec<String>> {
        self.within("recent_rooms", self.inner.recent_rooms(limit))
            .await
    }

    async fn session_load(&self, key: &str, now: Millis) -> StoreResult<Option<String>> {
        self.within("session_load", self.inner.session_load(key, now))
            .await
    }

    async fn session_insert(&self, key: &str, state: &str, expires: Millis) -> StoreResult<()> {
        self.within(
            "session_insert",
            self.inner.session_insert(key, state, expires),
        )
        .await
    }

    async fn session_update(
        &self,
        key: &str,
        state: &str,
        expires: Millis,
        now: Millis,
    ) -> StoreResult<bool> {
        self.within(
            "session_update",
            self.inner.session_update(key, state, expires, now),
        )
        .await
    }

    async fn session_touch(&self, key: &str, expires: Millis, now: Millis) -> StoreResult<()> {
        self.within("session_touch", self.inner.session_touch(key, expires, now))
            .await
    }

    async fn session_delete(&self, key: &str) -> StoreResult<()> {
        self.within("session_delete", self.inner.session_delete(key))
            .await
    }

    async fn prune(&self, retention: Retention, now: Millis) -> StoreResult<u64> {
        self.within("prune", self.inner.prune(retention, now)).await
    }

    async fn secret(&self, name: &str, candidate: Vec<u8>) -> StoreResult<Vec<u8>> {
        self.within("secret", self.inner.secret(name, candidate))
            .await
    }
}
