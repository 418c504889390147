//! Who a cookie session is logged in as: what a login writes into the
//! session and what every endpoint (pages, uploads, the WebSocket) reads
//! back.

use actix_session::{Session, SessionInsertError};
use actix_web::cookie::{CookieJar, Key};
use actix_web::HttpRequest;

/// The session entry naming the logged-in user.
const USER_KEY: &str = "user";
/// A random id per login, so a logout closes that login's WebSockets only.
const LOGIN_KEY: &str = "login";
/// Set when the login checked a password the operator set.
const OPERATOR_KEY: &str = "operator";

/// The logged-in user, if any.
pub fn current_user(session: &Session) -> Option<String> {
    session.get::<String>(USER_KEY).ok().flatten()
}

/// Whether this session may act for `account`: a session of an account
/// the operator has since taken over (`rookery create-user`) is the
/// squatter's, from before; it must log in again, with the new password.
pub fn may_act_for(session: &Session, account: &crate::store::User) -> bool {
    !account.operator || session.get::<bool>(OPERATOR_KEY).ok().flatten() == Some(true)
}

/// The id of the session's login (none for logins from before it existed).
pub fn current_login(session: &Session) -> Option<String> {
    session.get::<String>(LOGIN_KEY).ok().flatten()
}

/// The store key of the request's login session: the session cookie holds
/// it encrypted (actix-session's private cookies) under `key`.
pub fn login_key(req: &HttpRequest, cookie: &str, key: &Key) -> Option<String> {
    let mut jar = CookieJar::new();
    jar.add_original(req.cookie(cookie)?);
    let key = jar.private(key).get(cookie)?.value().to_owned();
    Some(key)
}

/// Writes a login into the session: the user, the login's id, and whether
/// the password checked was one the operator set.
pub fn remember(
    session: &Session,
    user: &str,
    login: &str,
    operator: bool,
) -> Result<(), SessionInsertError> {
    session.insert(USER_KEY, user)?;
    session.insert(LOGIN_KEY, login)?;
    session.insert(OPERATOR_KEY, operator)
}
