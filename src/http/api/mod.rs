//! The server API, `/api/v1`: what a backend does over HTTP, with the
//! guarantees a user's message has. A publish goes through the room like a
//! member's post (stored, given its `seq`, fanned out here and published to
//! the other replicas), and the HTTP response is its `ack`.
//!
//! Only for holders of one of `API_KEYS` (`Authorization: Bearer KEY`,
//! compared in constant time); with no key configured nothing here is
//! routed (404), so the API is never open by accident. Outside the session
//! middleware and the same-site check: a backend has no cookie, and a key
//! is not something a browser sends by itself.
//!
//! - [`messages`]: publish to a room, a direct message, a broadcast;
//! - [`rooms`]: presence on every replica, history by `seq`;
//! - [`users`]: a user's connections across the cluster, disconnect;
//! - [`openapi`]: the OpenAPI document, generated from these handlers.

mod errors;
pub mod messages;
pub mod openapi;
pub mod rooms;
pub mod users;

pub use errors::{ApiError, ErrorBody, ErrorDetail};

use std::future::{ready, Ready};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, FromRequest, HttpRequest};
use blake2::{Blake2b512, Digest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use crate::chat::names::is_valid_user_name;
use crate::config::ApiKey;
use crate::store::User;
use crate::ws::rate_limit::RateLimiter;

/// Longest request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 100;
/// How long a request waits for its message to be stored: the store's own
/// bound (5 s) for the batch ahead and for this one, and some slack.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// The configured keys (as digests, so comparing them takes the same time
/// whatever their length) and each key's rate.
pub struct Api {
    keys: Vec<[u8; 64]>,
    limiters: Vec<Mutex<RateLimiter>>,
    /// Most tokens one request may take (a key's burst).
    burst: u32,
    /// The second of the last refusal logged: a flood of bad keys writes
    /// one line a second, with how many were refused.
    refusal_logged: AtomicU64,
    refusals: AtomicU64,
}

impl Api {
    /// `None` without keys: the API is off.
    pub fn new(keys: &[ApiKey], per_second: u32) -> Option<Self> {
        if keys.is_empty() {
            return None;
        }
        Some(Self {
            keys: keys.iter().map(|key| digest(key.as_bytes())).collect(),
            limiters: keys
                .iter()
                .map(|_| Mutex::new(RateLimiter::new(per_second, per_second.max(1))))
                .collect(),
            burst: if per_second == 0 {
                u32::MAX
            } else {
                per_second
            },
            refusal_logged: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
        })
    }

    /// Which key `presented` is. Every key is compared, in constant time,
    /// so the time taken tells nothing about any of them.
    fn key_of(&self, presented: &[u8]) -> Option<usize> {
        let presented = digest(presented);
        let mut found = None;
        for (index, key) in self.keys.iter().enumerate() {
            if bool::from(key.ct_eq(&presented)) {
                found = found.or(Some(index));
            }
        }
        found
    }
}

fn digest(bytes: &[u8]) -> [u8; 64] {
    Blake2b512::digest(bytes).into()
}

/// Where the API is mounted.
pub const PREFIX: &str = "/api/v1";

/// Every operation the API serves: path (under [`PREFIX`]), method and
/// handler. The router is built from this table, and the OpenAPI test
/// compares the document with it, so neither can drift from the other.
fn operations() -> Vec<(&'static str, Method, actix_web::Route)> {
    // The method is named once: the route is guarded by it.
    let operation = |path, method: Method, route: actix_web::Route| {
        (path, method.clone(), route.method(method))
    };
    vec![
        operation(
            "/rooms/{room}/messages",
            Method::POST,
            web::route().to(messages::publish),
        ),
        operation(
            "/rooms/{room}/messages",
            Method::GET,
            web::route().to(rooms::history),
        ),
        operation(
            "/rooms/{room}/presence",
            Method::GET,
            web::route().to(rooms::presence),
        ),
        operation(
            "/users/{user}/messages",
            Method::POST,
            web::route().to(messages::direct),
        ),
        operation(
            "/users/{user}/connections",
            Method::GET,
            web::route().to(users::connections),
        ),
        operation(
            "/users/{user}/disconnect",
            Method::POST,
            web::route().to(users::disconnect),
        ),
        operation(
            "/broadcast",
            Method::POST,
            web::route().to(messages::broadcast),
        ),
    ]
}

/// The operations routed (method, full path), besides the document itself.
pub fn served() -> Vec<(Method, String)> {
    operations()
        .into_iter()
        .map(|(path, method, _)| (method, format!("{PREFIX}{path}")))
        .collect()
}

/// Routes the API under [`PREFIX`] if it is on.
pub fn routes(cfg: &mut web::ServiceConfig, api: Option<web::Data<Api>>) {
    let Some(api) = api else {
        return;
    };
    let mut scope = web::scope(PREFIX)
        .app_data(api)
        .app_data(
            web::PathConfig::default()
                .error_handler(|err, _| ApiError::bad_request(format!("bad path: {err}")).into()),
        )
        .app_data(
            web::QueryConfig::default()
                .error_handler(|err, _| ApiError::bad_request(format!("bad query: {err}")).into()),
        )
        .route("/openapi.json", web::get().to(openapi::document));
    for (path, _, route) in operations() {
        scope = scope.route(path, route);
    }
    cfg.service(scope.default_service(web::to(|| async {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API route")
    })));
}

/// A request from a backend with a valid key, within its key's rate.
pub struct Caller {
    key: usize,
}

impl Caller {
    /// Takes `n - 1` more tokens for a request doing the work of `n`.
    fn spend(&self, api: &Api, n: usize) -> Result<(), ApiError> {
        if n <= 1 {
            return Ok(());
        }
        if n as u64 > u64::from(api.burst) {
            // Waiting would never help: say so instead of "retry shortly".
            return Err(ApiError::bad_request(format!(
                "this request counts {n} against the key's rate, more than it allows at once \
                 ({}); send fewer rooms per broadcast",
                api.burst
            )));
        }
        let mut limiter = api.limiters[self.key].lock().expect("limiter lock");
        if limiter.allow_many((n - 1) as u32) {
            Ok(())
        } else {
            Err(ApiError::rate_limited())
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(authenticate(req))
    }
}

fn authenticate(req: &HttpRequest) -> Result<Caller, ApiError> {
    let api = req
        .app_data::<web::Data<Api>>()
        .expect("the API scope carries its keys");
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(key) = presented.and_then(|presented| api.key_of(presented.as_bytes())) else {
        // Which key was tried is never logged: it may be a real one, typed
        // into the wrong place.
        let refused = api.refusals.fetch_add(1, Ordering::Relaxed) + 1;
        let second = crate::store::now_millis() as u64 / 1000;
        if api.refusal_logged.swap(second, Ordering::Relaxed) != second {
            let trust_forwarded = req
                .app_data::<web::Data<crate::app::AppState>>()
                .is_some_and(|state| state.config.trust_forwarded);
            tracing::info!(
                address = %crate::app::request::client_address(req, trust_forwarded),
                path = %req.path(),
                with_key = presented.is_some(),
                refused_so_far = refused,
                "refused an API request without a valid key"
            );
        }
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send a valid API key as `Authorization: Bearer KEY`",
        ));
    };
    let allowed = api.limiters[key].lock().expect("limiter lock").allow();
    if !allowed {
        return Err(ApiError::rate_limited());
    }
    // Draining: the replica's rooms are being retired; another replica
    // answers (the load balancer has stopped sending here by now).
    if req
        .app_data::<web::Data<crate::app::AppState>>()
        .is_some_and(|state| state.is_draining())
    {
        return Err(ApiError::unavailable());
    }
    Ok(Caller { key })
}

/// The account `name`, or 404 `unknown_user` (also for a name no account
/// can have).
pub async fn find_user(state: &crate::app::AppState, name: &str) -> Result<User, ApiError> {
    if !is_valid_user_name(name) {
        return Err(ApiError::unknown_user(name));
    }
    match state.store.find_user(name).await {
        Ok(Some(user)) => Ok(user),
        Ok(None) => Err(ApiError::unknown_user(name)),
        Err(err) => Err(ApiError::store(err)),
    }
}

/// Reads a JSON body of at most [`MAX_BODY_BYTES`]: a repeated key or a
/// field the operation does not know is refused, not guessed at.
pub async fn read_json<T: DeserializeOwned>(mut payload: web::Payload) -> Result<T, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|err| ApiError::bad_request(format!("reading the body: {err}")))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body may have at most {MAX_BODY_BYTES} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    let text =
        std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
    let value = crate::protocol::json::parse(text)
        .map_err(|err| ApiError::bad_request(format!("the body is not valid JSON: {err}")))?;
    serde_json::from_value(value).map_err(|err| ApiError::bad_request(err.to_string()))
}

/// The `Idempotency-Key` header: a publish repeated with the same key (and
/// the same sender and text) is stored once and answered with the first's
/// `seq`.
pub fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key)
            if !key.is_empty()
                && key.len() <= MAX_IDEMPOTENCY_KEY_BYTES
                && key.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(Some(key.to_owned()))
        }
        _ => Err(ApiError::bad_request(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} printable ASCII characters"
        ))),
    }
}
