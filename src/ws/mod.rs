//! WebSocket endpoint: the upgrade handler, one session actor per
//! connection, and the wire protocol they speak.

pub mod frames;
pub mod fuzz;
pub mod outbox;
pub mod rate_limit;
pub mod session;
pub mod socket;

use actix::{Actor, AsyncContext};
use actix_session::Session;
use actix_web::{http::header, web, HttpRequest, HttpResponse};

use self::session::WsSession;
use crate::app::admission::OverCap;
use crate::app::login::{current_login, current_user, login_key, may_act_for};
use crate::app::request::{client_address, same_origin};
use crate::app::AppState;
use crate::chat::next_session_id;
use crate::protocol;

/// `GET /ws`: upgrades a logged-in browser (or client with the session
/// cookie) to a chat connection.
pub async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    session: Session,
    state: web::Data<AppState>,
) -> actix_web::Result<HttpResponse> {
    if state.is_draining() {
        return Ok(HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "1"))
            .body("this replica is shutting down; reconnect"));
    }
    let Some(user) = current_user(&session) else {
        return Ok(HttpResponse::Unauthorized().body("log in before opening a chat connection"));
    };
    if !same_origin(&req) {
        return Ok(HttpResponse::Forbidden().body("cross-origin chat connections are refused"));
    }
    let account = match state.store.find_user(&user).await {
        Ok(Some(account)) => account,
        Ok(None) => return Ok(HttpResponse::Unauthorized().body("this account no longer exists")),
        Err(err) => {
            tracing::warn!(error = %err, "store unavailable at WebSocket upgrade");
            return Ok(HttpResponse::ServiceUnavailable().body("storage is unavailable, try again"));
        }
    };
    if !may_act_for(&session, &account) {
        return Ok(HttpResponse::Unauthorized().body("log in again"));
    }
    // A name in ADMIN_USERS is an admin only if its account is the
    // operator's (`rookery create-user`) or the auth webhook vouched for
    // it: anyone could otherwise register the name and watch everyone.
    let admin =
        state.config.admin_users.contains(&user) && (account.operator || state.hooks.has_auth());
    let address = client_address(&req, state.config.trust_forwarded);
    let place = match state.socket_caps.hold(&user, address) {
        Ok(place) => place,
        Err(over) => {
            let why = match over {
                OverCap::User => {
                    "this account has as many chat connections open as it may; close one"
                }
                OverCap::Address => "your address has as many chat connections open as it may",
            };
            return Ok(HttpResponse::TooManyRequests()
                .insert_header((header::RETRY_AFTER, "10"))
                .body(why));
        }
    };
    let hangup = socket::Hangup::new(req.conn_data::<std::rc::Rc<socket::ConnectionFd>>());
    let (response, socket, stream) = actix_ws::handle(&req, body)?;
    let stream = stream
        .max_frame_size(protocol::MAX_FRAME_BYTES)
        .aggregate_continuations()
        .max_continuation_size(protocol::MAX_FRAME_BYTES);
    let config = &state.config;
    let actor = WsSession::new(
        next_session_id(),
        account,
        state.registry.clone(),
        state.store.clone(),
        state.hooks.clone(),
        socket,
        rate_limit::RateLimiter::new(config.rate_limit, config.rate_burst),
    )
    .cut_with(hangup)
    .holding(place)
    .of_login(current_login(&session))
    .rechecking_login(
        login_key(&req, crate::server::SESSION_COOKIE, &state.cookie_key),
        std::time::Duration::from_secs(config.login_recheck_secs.max(1)),
    )
    .budgeted(state.budgets.clone())
    .as_admin(admin);
    WsSession::create(|ctx| {
        ctx.add_stream(stream);
        actor
    });
    Ok(response)
}
