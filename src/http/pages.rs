//! Server-rendered pages and the static assets they use.
//!
//! Assets are compiled into the binary: a replica is one file plus its data
//! directory, and a page can never load a script from another build.

use actix_session::Session;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use askama::Template;

use super::{render, see_other};
use crate::app::login::current_user;
use crate::app::AppState;

/// Rooms suggested on the chat page.
const SUGGESTED_ROOMS: u32 = 50;

#[derive(Template)]
#[template(path = "chat.html")]
struct ChatPage<'a> {
    user: &'a str,
    avatar: Option<&'a str>,
    rooms: &'a [String],
    node: &'a str,
    /// May delete anyone's message (`ADMIN_USERS`, with an account the
    /// operator made), as the WebSocket decides: the page only offers it.
    operator: bool,
}

#[derive(Template)]
#[template(path = "unavailable.html")]
struct UnavailablePage;

pub async fn chat(state: web::Data<AppState>, session: Session) -> HttpResponse {
    let Some(user) = current_user(&session) else {
        return see_other("/login");
    };
    let account = match state.store.find_user(&user).await {
        Ok(Some(account)) if crate::app::login::may_act_for(&session, &account) => account,
        Ok(_) => {
            session.purge();
            return see_other("/login");
        }
        Err(err) => {
            tracing::warn!(error = %err, "chat page: store unavailable");
            return render(StatusCode::SERVICE_UNAVAILABLE, &UnavailablePage);
        }
    };
    let rooms = state
        .store
        .recent_rooms(SUGGESTED_ROOMS)
        .await
        .unwrap_or_default();
    render(
        StatusCode::OK,
        &ChatPage {
            user: &account.name,
            avatar: account.avatar.as_deref(),
            rooms: &rooms,
            node: &state.node_id,
            operator: state.config.admin_users.contains(&account.name)
                && (account.operator || state.hooks.has_auth()),
        },
    )
}

/// `(file name, content type, body)` of every file under `/static/`.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "chat.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/chat.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../static/style.css"),
    ),
];

pub async fn asset(file: web::Path<String>) -> HttpResponse {
    match ASSETS.iter().find(|(name, _, _)| *name == file.as_str()) {
        Some((_, content_type, body)) => HttpResponse::Ok()
            .content_type(*content_type)
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .body(*body),
        None => HttpResponse::NotFound().body("no such file"),
    }
}
