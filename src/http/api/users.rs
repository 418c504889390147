//! A user as a backend sees them: their connections across the cluster,
//! and closing them.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use utoipa::ToSchema;

use super::{find_user, read_json, ApiError, Caller};
use crate::app::AppState;
use crate::chat::registry::{AskConnections, DisconnectUser};
use crate::chat::Evict;
use crate::protocol::rfc3339;
use crate::store::now_millis;

/// Longest refusal of reconnects: a day (a ban belongs in the application).
pub const MAX_REFUSE_SECONDS: u64 = 24 * 60 * 60;

/// A user's open connections, on every replica.
#[derive(Serialize, ToSchema)]
pub struct Connections {
    pub user: String,
    pub connections: Vec<Connection>,
}

#[derive(Serialize, ToSchema)]
pub struct Connection {
    /// The replica holding it (its `NODE_ID`).
    pub node: String,
    /// RFC 3339, UTC.
    pub connected_at: String,
    /// The rooms it is in, sorted.
    pub rooms: Vec<String>,
}

/// How to close a user's connections.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisconnectRequest {
    /// The close reason the clients get: `disconnected` (they may come
    /// back) or `revoked` (they should not; the browser page stops).
    #[serde(default)]
    pub reason: Reason,
    /// Refuse new connections of the user for this many seconds (0 to
    /// 86400; 0 by default): each is closed at once with the same reason.
    #[serde(default, deserialize_with = "whole_number")]
    pub refuse_seconds: u64,
}

/// A count that JSON may write as `30` or `30.0` (JSON Schema's integers
/// include both); `30.5` or a negative is refused.
fn whole_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    number
        .as_u64()
        .or_else(|| {
            let float = number.as_f64()?;
            (float.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&float))
                .then_some(float as u64)
        })
        .ok_or_else(|| {
            serde::de::Error::custom(format!("{number} is not a whole number of seconds"))
        })
}

#[derive(Deserialize, Serialize, ToSchema, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    #[default]
    Disconnected,
    Revoked,
}

#[derive(Serialize, ToSchema)]
pub struct Disconnected {
    pub user: String,
    pub reason: Reason,
    /// Whether the other replicas were told (`false`: this replica has no
    /// broker link now, so only its own connections closed; retry).
    pub everywhere: bool,
    /// Until when new connections are refused (RFC 3339), if they are.
    pub refused_until: Option<String>,
}

/// A user's connections across the cluster.
///
/// This replica's at once, the others' as they answer within 300 ms (a
/// replica cut off from the broker is missing from the list).
#[utoipa::path(
    get,
    path = "/api/v1/users/{user}/connections",
    tag = "users",
    params(("user" = String, Path, description = "A user")),
    responses(
        (status = 200, description = "Open connections, by replica", body = Connections),
        (status = 401, description = "No valid key", body = super::ErrorBody),
        (status = 429, description = "Over the key's rate", body = super::ErrorBody),
        (status = 404, description = "No such user", body = super::ErrorBody),
        (status = 503, description = "Storage unavailable, or the replica is shutting down", body = super::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn connections(
    _caller: Caller,
    state: web::Data<AppState>,
    user: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = user.into_inner();
    find_user(&state, &user).await?;
    let (answer, answered) = oneshot::channel();
    state.registry.do_send(AskConnections {
        user: user.clone(),
        answer,
    });
    let found = answered.await.map_err(|_| ApiError::unavailable())?;
    let connections = found
        .into_iter()
        .map(|connection| Connection {
            node: connection.node,
            connected_at: rfc3339(connection.connected_at),
            rooms: connection.rooms,
        })
        .collect();
    Ok(HttpResponse::Ok().json(Connections { user, connections }))
}

/// Close a user's connections on every replica.
///
/// Each gets close code 1008 with the reason; with `refuse_seconds`, new
/// connections of the user are closed the same way until then, on every
/// replica running now (a replica started meanwhile does not know).
#[utoipa::path(
    post,
    path = "/api/v1/users/{user}/disconnect",
    tag = "users",
    params(("user" = String, Path, description = "A user")),
    request_body = DisconnectRequest,
    responses(
        (status = 200, description = "Closing", body = Disconnected),
        (status = 400, description = "Bad input", body = super::ErrorBody),
        (status = 401, description = "No valid key", body = super::ErrorBody),
        (status = 429, description = "Over the key's rate", body = super::ErrorBody),
        (status = 404, description = "No such user", body = super::ErrorBody),
        (status = 503, description = "Storage unavailable, or the replica is shutting down", body = super::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn disconnect(
    _caller: Caller,
    state: web::Data<AppState>,
    user: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let user = user.into_inner();
    let request: DisconnectRequest = read_json(body).await?;
    if request.refuse_seconds > MAX_REFUSE_SECONDS {
        return Err(ApiError::bad_request(format!(
            "refuse_seconds is 0 to {MAX_REFUSE_SECONDS}"
        )));
    }
    find_user(&state, &user).await?;
    let refuse_for = Duration::from_secs(request.refuse_seconds);
    state.registry.do_send(DisconnectUser {
        user: user.clone(),
        reason: match request.reason {
            Reason::Disconnected => Evict::Disconnected,
            Reason::Revoked => Evict::Revoked,
        },
        refuse_for,
    });
    tracing::info!(%user, seconds = request.refuse_seconds, "a backend disconnected a user");
    let refused_until = (!refuse_for.is_zero())
        .then(|| rfc3339(now_millis() + refuse_for.as_millis() as crate::store::Millis));
    Ok(HttpResponse::Ok().json(Disconnected {
        user,
        reason: request.reason,
        everywhere: state.cluster.is_connected(),
        refused_until,
    }))
}
