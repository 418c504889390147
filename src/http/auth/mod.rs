//! Login, registration and logout.
//!
//! Logging in with a new name registers it. Passwords are hashed with
//! argon2id on the blocking pool: hashing is deliberately slow and must not
//! stall the worker's other connections.
//!
//! With `AUTH_WEBHOOK_URL` an identity provider decides instead: it gets the
//! name and the password or `token`, and its `{"allowed","name"}` answer
//! logs the user in (as the name it returns) or not. Such users get a local
//! account without a usable password, so messages can reach them.

mod accounts;

pub use accounts::hash_password;
use accounts::{authenticate, Account, LoginError};

use actix_session::Session;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::{render, see_other};
use crate::app::login::{current_login, current_user, remember};
use crate::app::request::client_address;
use crate::app::throttle::RetryAfter;
use crate::app::AppState;
use crate::chat::names::is_valid_user_name;
use crate::chat::registry::EndLogin;
use crate::metrics::{self, login};
use crate::store::StoreError;

/// Shortest password accepted for a new account.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted; bounds the hashing work one request can cause.
pub const MAX_PASSWORD_BYTES: usize = 1024;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    error: Option<&'a str>,
    name: &'a str,
    /// The error is about the password: the cursor goes there, not back
    /// to the name.
    retype_password: bool,
    min_password: usize,
}

#[derive(Deserialize)]
pub struct LoginForm {
    name: String,
    #[serde(default)]
    password: String,
    /// For the auth webhook: a token from the identity provider instead of
    /// a password.
    #[serde(default)]
    token: Option<String>,
    /// What the person meant: `login` to an account that exists, or
    /// `register` a new one. The page always says; without it (scripts,
    /// older clients) a free name is registered and a known one logged in.
    #[serde(default)]
    action: Option<Intent>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Intent {
    Login,
    Register,
}

/// The password hash of accounts the auth webhook vouches for: not a valid
/// PHC string, so no password ever matches it locally.
const EXTERNAL_ACCOUNT: &str = "!external";

pub async fn login_page(session: Session) -> HttpResponse {
    if current_user(&session).is_some() {
        return see_other("/");
    }
    render(
        StatusCode::OK,
        &LoginPage {
            error: None,
            name: "",
            retype_password: false,
            min_password: MIN_PASSWORD_CHARS,
        },
    )
}

pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    form: web::Form<LoginForm>,
) -> HttpResponse {
    let LoginForm {
        name,
        password,
        token,
        action,
    } = form.into_inner();
    let refuse = |status, error: &str| {
        let result = match status {
            StatusCode::TOO_MANY_REQUESTS => login::THROTTLED,
            StatusCode::UNAUTHORIZED if state.hooks.has_auth() => login::DENIED,
            StatusCode::UNAUTHORIZED => login::WRONG_PASSWORD,
            StatusCode::BAD_REQUEST | StatusCode::CONFLICT => login::INVALID,
            _ if state.hooks.has_auth() => login::DENIED,
            _ => login::UNAVAILABLE,
        };
        metrics::get().logins.inc(result);
        render(
            status,
            &LoginPage {
                error: Some(error),
                name: &name,
                retype_password: status == StatusCode::UNAUTHORIZED
                    && error.starts_with("Wrong password"),
                min_password: MIN_PASSWORD_CHARS,
            },
        )
    };
    let throttled = |wait: RetryAfter| {
        let seconds = wait.seconds();
        let mut response = refuse(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Too many attempts; try again in {seconds} s."),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        response
    };
    let address = client_address(&req, state.config.trust_forwarded);
    if let Err(wait) = state.throttle.attempt(address) {
        return throttled(wait);
    }
    if state.hooks.has_auth() {
        let password = (!password.is_empty()).then_some(password.as_str());
        return match external_login(&state, &name, password, token.as_deref()).await {
            Ok(user) => start_session(&session, user, login::OK, false),
            Err((status, error)) => refuse(status, &error),
        };
    }
    if !is_valid_user_name(&name) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "Names are 1–32 letters, digits, '_', '-' or '.'.",
        );
    }
    if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
        return refuse(
            StatusCode::BAD_REQUEST,
            "Enter a password (at most 1024 bytes).",
        );
    }
    let result = match authenticate(&state, &name, password, address, action).await {
        Ok(Account::Known { operator }) => (login::OK, operator),
        Ok(Account::Registered) => (login::REGISTERED, false),
        Err(LoginError::WrongPassword) => {
            return refuse(StatusCode::UNAUTHORIZED, "Wrong password for this name.")
        }
        Err(LoginError::Throttled(wait)) => return throttled(wait),
        Err(LoginError::Reserved(why)) => return refuse(StatusCode::BAD_REQUEST, &why),
        Err(LoginError::NoSuchAccount) => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                &format!("No account is called {name:?}: check the spelling, or create it."),
            )
        }
        Err(LoginError::Taken) => {
            return refuse(
                StatusCode::CONFLICT,
                &format!("{name:?} is taken: log in instead, or choose another name."),
            )
        }
        Err(LoginError::Busy) => {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many logins at once right now; try again in a moment.",
            )
        }
        Err(LoginError::WeakPassword) => {
            let message = format!(
                "This name is free: choose a password of at least {MIN_PASSWORD_CHARS} characters to register it."
            );
            return refuse(StatusCode::BAD_REQUEST, &message);
        }
        Err(LoginError::Unavailable(err)) => {
            tracing::warn!(error = %err, "login failed: store unavailable");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "Storage is unavailable right now; try again shortly.",
            );
        }
    };
    let (result, operator) = result;
    start_session(&session, name, result, operator)
}

/// Logs `user` in; `result` is what the login counts as when it works,
/// `operator` whether the password checked was one the operator set.
fn start_session(
    session: &Session,
    user: String,
    result: &'static str,
    operator: bool,
) -> HttpResponse {
    // A fresh session id at login defeats session fixation.
    session.renew();
    let login = format!("{:016x}", rand::random::<u64>());
    if let Err(err) = remember(session, &user, &login, operator) {
        tracing::error!(error = %err, "could not write the session");
        return render(
            StatusCode::INTERNAL_SERVER_ERROR,
            &LoginPage {
                error: Some("Could not log you in."),
                name: &user,
                retype_password: false,
                min_password: MIN_PASSWORD_CHARS,
            },
        );
    }
    metrics::get().logins.inc(result);
    tracing::info!(%user, "logged in");
    see_other("/")
}

/// Asks the auth webhook; on success, the user to log in as (with a local
/// account). Denies when the hook is down.
async fn external_login(
    state: &AppState,
    name: &str,
    password: Option<&str>,
    token: Option<&str>,
) -> Result<String, (StatusCode, String)> {
    if name.len() > MAX_PASSWORD_BYTES
        || password.is_some_and(|p| p.len() > MAX_PASSWORD_BYTES)
        || token.is_some_and(|t| t.len() > MAX_PASSWORD_BYTES)
    {
        return Err((StatusCode::BAD_REQUEST, "Input too long.".into()));
    }
    let down = || {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "The identity provider is unavailable; try again shortly.".to_owned(),
        )
    };
    let decision = match state.hooks.authenticate(name, password, token).await {
        Some(Ok(decision)) => decision,
        Some(Err(err)) => {
            tracing::warn!(error = %err, "auth webhook failed; login denied");
            return Err(down());
        }
        // The caller checked there is a hook; without one, deny all the same.
        None => return Err(down()),
    };
    if !decision.allowed {
        return Err((StatusCode::UNAUTHORIZED, "Login refused.".into()));
    }
    let user = decision.name.unwrap_or_else(|| name.to_owned());
    if !is_valid_user_name(&user) {
        tracing::warn!(%user, "auth webhook returned a name Rookery cannot use");
        return Err((
            StatusCode::BAD_GATEWAY,
            "The identity provider returned an unusable name.".into(),
        ));
    }
    let unavailable = |err: StoreError| {
        tracing::warn!(error = %err, "login failed: store unavailable");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "Storage is unavailable right now; try again shortly.".to_owned(),
        )
    };
    if state
        .store
        .find_user(&user)
        .await
        .map_err(unavailable)?
        .is_none()
    {
        match state.store.create_user(&user, EXTERNAL_ACCOUNT).await {
            Ok(()) | Err(StoreError::Conflict) => {}
            Err(err) => return Err(unavailable(err)),
        }
    }
    Ok(user)
}

/// Ends the login, and with it its WebSockets on every replica.
pub async fn logout(state: web::Data<AppState>, session: Session) -> HttpResponse {
    if let (Some(user), Some(login)) = (current_user(&session), current_login(&session)) {
        state.registry.do_send(EndLogin { user, login });
    }
    session.purge();
    see_other("/login")
}
