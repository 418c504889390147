//! Posting as a backend: to a room, to a user, to many rooms at once.
//!
//! About 400 lines, kept whole: the three endpoints share one posting path
//! (`post`: the checks, the room's answer, the reply), and their request
//! and response bodies are their OpenAPI schemas, read beside them.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use utoipa::ToSchema;

use super::{
    find_user, idempotency_key, read_json, Api, ApiError, Caller, ErrorDetail, ANSWER_TIMEOUT,
};
use crate::app::AppState;
use crate::chat::names::{direct_room, is_valid_public_room, is_valid_user_name};
use crate::chat::registry::Publish;
use crate::chat::room::{Outcome, Post, Reply};
use crate::protocol::{self, ErrorCode};
use crate::store::Draft;

/// Rooms one broadcast may reach.
pub const MAX_BROADCAST_ROOMS: usize = 100;
/// How a system sender's name is shown: no user name can contain `:`, so
/// nobody can pass for one, or be taken for one.
pub const SYSTEM_PREFIX: &str = "system:";

/// A message to a room.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// 1 to 4000 characters, something visible among them.
    #[schema(example = "Deploy 4.2 is live")]
    pub text: String,
    /// Post as this existing user.
    #[serde(default)]
    pub from: Option<String>,
    /// Or as a system sender of this name (1–32 letters, digits, `_`, `-`,
    /// `.`), shown as `system:NAME`. Exactly one of `from` and `system`.
    #[serde(default)]
    #[schema(example = "deploys")]
    pub system: Option<String>,
    /// Fan out before storing, with no `seq` in the answer (it is stored
    /// in the background, like a member's `"delivery":"fast"`). Ignored
    /// with an `Idempotency-Key`: a repeat is recognised only once stored.
    #[serde(default)]
    pub fast: bool,
}

/// A direct message to a user.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectRequest {
    /// The sender, an existing user: the conversation is theirs and the
    /// recipient's (`@a:b`).
    #[schema(example = "support")]
    pub from: String,
    #[schema(example = "Your order has shipped")]
    pub text: String,
}

/// One message to many rooms.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BroadcastRequest {
    /// 1 to 100 distinct public rooms.
    #[schema(example = json!(["general", "ops"]))]
    pub rooms: Vec<String>,
    pub text: String,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub fast: bool,
}

/// A message that was stored (or, `fast`, sent).
#[derive(Serialize, ToSchema, Debug)]
pub struct Published {
    pub room: String,
    /// Its place in the room, as every member receives it; `null` for a
    /// `fast` message, which gets one when its background write lands.
    pub seq: Option<u64>,
    /// Unique per message.
    pub id: String,
}

#[derive(Serialize, ToSchema)]
pub struct BroadcastResult {
    /// One per room, in the request's order.
    pub results: Vec<RoomResult>,
}

/// A room's part of a broadcast: `seq` and `id`, or `error`.
#[derive(Serialize, ToSchema)]
pub struct RoomResult {
    pub room: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// Who a backend posts as: the name messages carry and its photo.
struct Sender {
    name: String,
    avatar: Option<String>,
}

async fn sender(
    state: &AppState,
    from: Option<String>,
    system: Option<String>,
) -> Result<Sender, ApiError> {
    match (from, system) {
        (Some(user), None) => user_sender(state, &user).await,
        (None, Some(system)) if is_valid_user_name(&system) => Ok(Sender {
            name: format!("{SYSTEM_PREFIX}{system}"),
            avatar: None,
        }),
        (None, Some(system)) => Err(ApiError::bad_request(format!(
            "{system:?} is not a valid system sender: 1-32 letters, digits, '_', '-' or '.'"
        ))),
        _ => Err(ApiError::bad_request(
            "give exactly one of `from` (a user) and `system` (a system sender's name)",
        )),
    }
}

async fn user_sender(state: &AppState, user: &str) -> Result<Sender, ApiError> {
    let found = find_user(state, user).await?;
    Ok(Sender {
        name: found.name,
        avatar: found.avatar,
    })
}

fn check_text(text: &str) -> Result<(), ApiError> {
    protocol::check_text(text, None).map_err(ApiError::refused)
}

/// A `fast` message is fanned out before it is stored, so a repeat could
/// not be recognised: with an Idempotency-Key the message is stored first,
/// which keeps the key's promise.
fn fast_unless_keyed(fast: bool, idempotency: &Option<String>) -> bool {
    fast && idempotency.is_none()
}

fn check_public_room(room: &str) -> Result<(), ApiError> {
    if is_valid_public_room(room) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidRoom.as_str(),
        format!(
            "{room:?} is not a public room (1-64 letters, digits, '_', '-' or '.'); \
             a direct message goes to /api/v1/users/{{user}}/messages"
        ),
    ))
}

/// Hands the post to the room (started here if needed) and waits for its
/// answer: stored with a `seq`, sent (`fast`), or refused.
async fn post(
    state: &AppState,
    room: String,
    sender: &Sender,
    text: String,
    fast: bool,
    idempotency: Option<&str>,
) -> Result<Published, ApiError> {
    let (answer, outcome) = oneshot::channel();
    let post = Post {
        session: None,
        user: sender.name.clone(),
        avatar: sender.avatar.clone(),
        draft: Draft::Message(text),
        // Namespaced, so a key is not taken for a connection's usual refs
        // (a client sending `"api:…"` itself would only match its own
        // user's identical text).
        reference: idempotency.map(|key| serde_json::Value::String(format!("api:{key}"))),
        delivery: if fast {
            protocol::Delivery::Fast
        } else {
            protocol::Delivery::Reliable
        },
        confirm: false,
        // With a key every attempt may be the repeat of one stored already.
        retry: idempotency.is_some(),
        reply: Reply::Api(answer),
    };
    state.registry.do_send(Publish {
        room: room.clone(),
        post,
    });
    let uncertain = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::StoreUncertain.as_str(),
            "no answer from the store in time: the message may or may not be stored; \
             retry with the same Idempotency-Key to find out without storing it twice",
        )
    };
    match tokio::time::timeout(ANSWER_TIMEOUT, outcome).await {
        Ok(Ok(Outcome::Stored { seq, id, .. })) => Ok(Published {
            room,
            seq: Some(seq),
            id,
        }),
        Ok(Ok(Outcome::Sent { id })) => Ok(Published {
            room,
            seq: None,
            id,
        }),
        Ok(Ok(Outcome::Refused(rejected))) => Err(ApiError::refused(rejected)),
        // The room stopped (the replica is shutting down) or took too long.
        Ok(Err(_)) | Err(_) => Err(uncertain()),
    }
}

fn created(published: Published) -> HttpResponse {
    let status = match published.seq {
        Some(_) => StatusCode::CREATED,
        None => StatusCode::ACCEPTED,
    };
    HttpResponse::build(status).json(published)
}

/// Publish a message to a room.
///
/// Stored, given the room's next `seq` and delivered to its members on
/// every replica exactly like a member's message; the response comes once
/// it is stored. A room nobody has used yet is created (as a member's join
/// would). With `Idempotency-Key`, a retry of a publish that was stored
/// (same key, sender and text, among the room's newest 10 000 messages)
/// answers with the first one's `seq` instead of storing it again.
#[utoipa::path(
    post,
    path = "/api/v1/rooms/{room}/messages",
    tag = "messages",
    params(
        ("room" = String, Path, description = "A public room"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried publish store once"),
    ),
    request_body = PublishRequest,
    responses(
        (status = 201, description = "Stored", body = Published),
        (status = 202, description = "Sent (`fast`)", body = Published),
        (status = 400, description = "Bad input", body = super::ErrorBody),
        (status = 401, description = "No valid key", body = super::ErrorBody),
        (status = 404, description = "Unknown sender", body = super::ErrorBody),
        (status = 429, description = "Over the key's rate", body = super::ErrorBody),
        (status = 503, description = "Not stored (`store_unavailable`, `overloaded`) or not known (`store_uncertain`)", body = super::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn publish(
    _caller: Caller,
    req: HttpRequest,
    state: web::Data<AppState>,
    room: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let room = room.into_inner();
    check_public_room(&room)?;
    let idempotency = idempotency_key(&req)?;
    let request: PublishRequest = read_json(body).await?;
    check_text(&request.text)?;
    let fast = fast_unless_keyed(request.fast, &idempotency);
    let sender = sender(&state, request.from, request.system).await?;
    let published = post(
        &state,
        room,
        &sender,
        request.text,
        fast,
        idempotency.as_deref(),
    )
    .await?;
    Ok(created(published))
}

/// Send a direct message to a user.
///
/// Goes to the conversation of `from` and the user (`@a:b`), as if `from`
/// had sent it: delivered to the user's connections on every replica, or
/// kept until they connect (then fetched with `fetch_missed`, and marked
/// delivered).
#[utoipa::path(
    post,
    path = "/api/v1/users/{user}/messages",
    tag = "messages",
    params(
        ("user" = String, Path, description = "The recipient"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried message store once"),
    ),
    request_body = DirectRequest,
    responses(
        (status = 201, description = "Stored", body = Published),
        (status = 400, description = "Bad input", body = super::ErrorBody),
        (status = 401, description = "No valid key", body = super::ErrorBody),
        (status = 404, description = "Unknown sender or recipient", body = super::ErrorBody),
        (status = 429, description = "Over the key's rate", body = super::ErrorBody),
        (status = 503, description = "Not stored, or not known", body = super::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn direct(
    _caller: Caller,
    req: HttpRequest,
    state: web::Data<AppState>,
    user: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let to = user.into_inner();
    let idempotency = idempotency_key(&req)?;
    let request: DirectRequest = read_json(body).await?;
    check_text(&request.text)?;
    let recipient = user_sender(&state, &to).await?;
    let sender = user_sender(&state, &request.from).await?;
    let room = direct_room(&sender.name, &recipient.name);
    let published = post(
        &state,
        room,
        &sender,
        request.text,
        false,
        idempotency.as_deref(),
    )
    .await?;
    Ok(created(published))
}

/// Publish one message to many rooms.
///
/// Each room stores its copy with its own `seq`; the answer lists each
/// room's `seq` or error, in the request's order. Counts once per room
/// against the key's rate.
#[utoipa::path(
    post,
    path = "/api/v1/broadcast",
    tag = "messages",
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried broadcast store each room's copy once"),
    ),
    request_body = BroadcastRequest,
    responses(
        (status = 200, description = "Each room's outcome", body = BroadcastResult),
        (status = 400, description = "Bad input", body = super::ErrorBody),
        (status = 401, description = "No valid key", body = super::ErrorBody),
        (status = 404, description = "Unknown sender", body = super::ErrorBody),
        (status = 429, description = "Over the key's rate", body = super::ErrorBody),
        (status = 503, description = "Storage unavailable, or the replica is shutting down", body = super::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn broadcast(
    caller: Caller,
    req: HttpRequest,
    api: web::Data<Api>,
    state: web::Data<AppState>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let idempotency = idempotency_key(&req)?;
    let request: BroadcastRequest = read_json(body).await?;
    if request.rooms.is_empty() || request.rooms.len() > MAX_BROADCAST_ROOMS {
        return Err(ApiError::bad_request(format!(
            "a broadcast goes to 1 to {MAX_BROADCAST_ROOMS} rooms, not {}",
            request.rooms.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for room in &request.rooms {
        check_public_room(room)?;
        if !seen.insert(room.as_str()) {
            return Err(ApiError::bad_request(format!("{room:?} is listed twice")));
        }
    }
    check_text(&request.text)?;
    let fast = fast_unless_keyed(request.fast, &idempotency);
    caller.spend(&api, request.rooms.len())?;
    let sender = sender(&state, request.from, request.system).await?;
    let posts = request.rooms.iter().map(|room| {
        post(
            &state,
            room.clone(),
            &sender,
            request.text.clone(),
            fast,
            idempotency.as_deref(),
        )
    });
    let outcomes = futures_util::future::join_all(posts).await;
    let results = request
        .rooms
        .into_iter()
        .zip(outcomes)
        .map(|(room, outcome)| match outcome {
            Ok(published) => RoomResult {
                room,
                seq: published.seq,
                id: Some(published.id),
                error: None,
            },
            Err(err) => RoomResult {
                room,
                seq: None,
                id: None,
                error: Some(err.body().error),
            },
        })
        .collect();
    Ok(HttpResponse::Ok().json(BroadcastResult { results }))
}
