//! A room as a backend reads it: who is online, and its history.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, Caller};
use crate::app::AppState;
use crate::chat::names::canonical_room;
use crate::chat::registry::{Watch, QUERY_WAIT};
use crate::chat::room::Online;
use crate::event::{Body, Event};
use crate::protocol::{rfc3339, ErrorCode, DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT};

/// Who is online in a room, on every replica.
#[derive(Serialize, ToSchema)]
pub struct Presence {
    pub room: String,
    /// Users with a connection in the room, sorted.
    pub online: Vec<String>,
}

/// A page of a room's messages, oldest first.
#[derive(Serialize, ToSchema)]
pub struct History {
    pub room: String,
    pub messages: Vec<Message>,
    /// More messages lie beyond this page in the direction asked.
    pub more: bool,
}

/// A stored message, as clients see it.
#[derive(Serialize, ToSchema)]
pub struct Message {
    pub room: String,
    pub seq: u64,
    pub id: String,
    pub from: String,
    pub avatar: Option<String>,
    /// What it says now; absent once deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// RFC 3339, UTC, milliseconds.
    pub ts: String,
    /// When its text was last edited (RFC 3339); absent if never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edited: Option<String>,
    /// Taken back by its author or an operator: its text is gone.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

impl Message {
    /// A message of the room's stream in its current state; `None` for a
    /// change to one (an edit or a delete shows in its message).
    fn of(event: &Event) -> Option<Self> {
        let Body::Message(message) = event.body() else {
            return None;
        };
        Some(Self {
            ts: rfc3339(event.ts()),
            room: event.room().to_owned(),
            seq: event.seq(),
            id: event.id().to_owned(),
            from: event.from().to_owned(),
            avatar: event.avatar().map(str::to_owned),
            text: event.text().map(str::to_owned),
            edited: message.edited.map(rfc3339),
            deleted: message.deleted,
        })
    }
}

/// Which page: the newest (neither), the one before `before`, the one
/// after `after`, or, with both, the one after `after` up to `before`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Messages with a lower `seq`, newest of them.
    pub before: Option<u64>,
    /// Messages with a higher `seq`, oldest of them (catching up).
    pub after: Option<u64>,
    /// 1 to 100; 50 by default.
    pub limit: Option<u32>,
}

/// Up to `limit` messages after `after`, oldest first, and whether the
/// reading stopped short of the end. The stream also holds edits and
/// deletes (shown in their messages): it is read on past them,
/// [`CATCH_UP_READS`] pages at most.
async fn catch_up(
    state: &AppState,
    room: &str,
    mut after: u64,
    limit: u32,
) -> crate::store::StoreResult<(Vec<Event>, bool)> {
    let mut messages = Vec::new();
    for _ in 0..CATCH_UP_READS {
        let events = state.store.after(room, after, limit).await?;
        let full = events.len() == limit as usize;
        let Some(last) = events.last().map(Event::seq) else {
            return Ok((messages, false));
        };
        messages.extend(events.into_iter().filter(Event::is_message));
        if messages.len() >= limit as usize || !full {
            messages.truncate(limit as usize);
            return Ok((messages, false));
        }
        after = last;
    }
    Ok((messages, true))
}

/// Reads one catch-up page makes at most: a stretch of edits and deletes
/// longer than this many pages ends a page early (with `more`).
const CATCH_UP_READS: usize = 8;

/// The room `room` names: a public room, or a direct one with its two
/// participants in either order (`@bob:alice` is `@alice:bob`).
fn check_room(room: &str) -> Result<String, ApiError> {
    canonical_room(room).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRoom.as_str(),
            format!("{room:?} is neither a public room nor a direct one (@a:b)"),
        )
    })
}

/// Who is online in a room.
///
/// Every replica's members, as this replica's copy of the room knows them
/// (replicas repeat their part every few seconds). A room not running
/// here is started to ask; it stays a minute for the next question.
#[utoipa::path(
    get,
    path = "/api/v1/rooms/{room}/presence",
    tag = "rooms",
    params(("room" = String, Path, description = "A public room, or a direct one (`@a:b`)")),
    responses(
        (status = 200, description = "Who is online", body = Presence),
        (status = 400, description = "Not a room name", body = super::ErrorBody),
        (status = 401, description = "No valid key", body = super::ErrorBody),
        (status = 429, description = "Over the key's rate", body = super::ErrorBody),
        (status = 503, description = "Storage unavailable, or the replica is shutting down", body = super::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn presence(
    _caller: Caller,
    state: web::Data<AppState>,
    room: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let room = check_room(&room.into_inner())?;
    let (addr, fresh) = state
        .registry
        .send(Watch { room: room.clone() })
        .await
        .map_err(|_| ApiError::unavailable())?;
    if fresh && state.cluster.is_clustered() {
        // Just started: the other replicas are answering its first
        // presence announcement.
        tokio::time::sleep(QUERY_WAIT).await;
    }
    let online = addr
        .send(Online)
        .await
        .map_err(|_| ApiError::unavailable())?;
    Ok(HttpResponse::Ok().json(Presence { room, online }))
}

/// A room's messages, paged by `seq`.
///
/// From the store, so every replica answers alike. A room that has never
/// had a message is unknown (404).
#[utoipa::path(
    get,
    path = "/api/v1/rooms/{room}/messages",
    tag = "rooms",
    params(("room" = String, Path, description = "A public room, or a direct one (`@a:b`)"), Page),
    responses(
        (status = 200, description = "A page of messages, oldest first", body = History),
        (status = 400, description = "Bad room or page", body = super::ErrorBody),
        (status = 401, description = "No valid key", body = super::ErrorBody),
        (status = 429, description = "Over the key's rate", body = super::ErrorBody),
        (status = 404, description = "No such room", body = super::ErrorBody),
        (status = 503, description = "Storage unavailable", body = super::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn history(
    _caller: Caller,
    state: web::Data<AppState>,
    room: web::Path<String>,
    page: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    let room = check_room(&room.into_inner())?;
    let limit = page.limit.unwrap_or(DEFAULT_HISTORY_LIMIT);
    if !(1..=MAX_HISTORY_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit is 1 to {MAX_HISTORY_LIMIT}"
        )));
    }
    // One more than asked tells whether there is more.
    let (read, newest_first) = match (page.before, page.after) {
        (before, None) => (
            state
                .store
                .messages(&room, before, limit + 1)
                .await
                .map(|page| (page, false)),
            true,
        ),
        (_, Some(after)) => (catch_up(&state, &room, after, limit + 1).await, false),
    };
    let (mut messages, cut) = read.map_err(ApiError::store)?;
    if let (Some(before), Some(_)) = (page.before, page.after) {
        // Within the range: what lies at `before` or past it is no more.
        messages.retain(|message| message.seq() < before);
    }
    let more = messages.len() > limit as usize || cut;
    if messages.len() > limit as usize {
        // `history` answers oldest first: the extra one is the oldest.
        if newest_first {
            messages.remove(0);
        } else {
            messages.pop();
        }
    }
    if messages.is_empty() && page.before.is_none() && page.after.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_room",
            format!("{room:?} has no messages"),
        ));
    }
    let messages = messages.iter().filter_map(Message::of).collect();
    Ok(HttpResponse::Ok().json(History {
        room,
        messages,
        more,
    }))
}
