//! Checking who someone is: a local account's password (argon2id, on the
//! blocking pool, throttled) or the auth webhook's answer.

use std::net::IpAddr;

use actix_web::web;
use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, PasswordVerifier};

use super::{Intent, MIN_PASSWORD_CHARS};
use crate::app::throttle::{LoginThrottle, RetryAfter};
use crate::app::AppState;
use crate::store::StoreError;

pub(super) enum LoginError {
    WrongPassword,
    WeakPassword,
    /// Too many tries for the account or registrations from the address.
    Throttled(RetryAfter),
    /// Too many logins wait for password hashing.
    Busy,
    /// A new name that is kept for an operator, or looks like a taken one.
    Reserved(String),
    /// Asked to log in to an account that does not exist.
    NoSuchAccount,
    /// Asked to register a name that is taken.
    Taken,
    Unavailable(String),
}

impl From<StoreError> for LoginError {
    fn from(err: StoreError) -> Self {
        Self::Unavailable(err.to_string())
    }
}

/// Whose password a login checked.
pub(super) enum Account {
    /// An account that existed; `operator`: made by the operator.
    Known {
        operator: bool,
    },
    Registered,
}

/// Checks the password of a known name, or registers a new one.
pub(super) async fn authenticate(
    state: &AppState,
    name: &str,
    password: String,
    address: IpAddr,
    intent: Option<Intent>,
) -> Result<Account, LoginError> {
    let throttle = &state.throttle;
    let known = state.store.find_user(name).await?;
    match (&known, intent) {
        (Some(_), Some(Intent::Register)) => return Err(LoginError::Taken),
        (None, Some(Intent::Login)) => return Err(LoginError::NoSuchAccount),
        _ => {}
    }
    if let Some(user) = known {
        throttle.may_try(name).map_err(LoginError::Throttled)?;
        let operator = user.operator;
        return checked(throttle, name, user.password_hash, password)
            .await
            .map(|()| Account::Known { operator });
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(LoginError::WeakPassword);
    }
    if state
        .config
        .admin_users
        .iter()
        .any(|admin| admin.eq_ignore_ascii_case(name))
    {
        return Err(LoginError::Reserved(
            "This name is reserved: an operator creates it with `rookery create-user`.".into(),
        ));
    }
    if let Some(taken) = state.store.find_name_ignoring_case(name).await? {
        return Err(LoginError::Reserved(format!(
            "{taken:?} is taken, and {name:?} would look the same; choose another name."
        )));
    }
    throttle.register(address).map_err(LoginError::Throttled)?;
    let hash = hash(throttle, password.clone()).await?;
    match state.store.create_user(name, &hash).await {
        Ok(()) => {
            tracing::info!(user = %name, "registered");
            Ok(Account::Registered)
        }
        // Someone registered the name between our lookup and insert: it is
        // now a known name, so the password must match theirs.
        Err(StoreError::Conflict) => match state.store.find_user(name).await? {
            Some(user) => {
                let operator = user.operator;
                checked(throttle, name, user.password_hash, password)
                    .await
                    .map(|()| Account::Known { operator })
            }
            None => Err(LoginError::Unavailable(
                "user vanished after a conflict".into(),
            )),
        },
        Err(err) => Err(err.into()),
    }
}

/// Verifies `account`'s password, counting a wrong one against it.
pub(super) async fn checked(
    throttle: &LoginThrottle,
    account: &str,
    stored: String,
    password: String,
) -> Result<(), LoginError> {
    let result = verify(throttle, stored, password).await;
    // Every try took one of the account's; a right password gives it back.
    if !matches!(result, Err(LoginError::WrongPassword)) {
        throttle.succeeded(account);
    }
    result
}

pub(super) async fn hash(throttle: &LoginThrottle, password: String) -> Result<String, LoginError> {
    let _slot = throttle.hashing_slot().await.ok_or(LoginError::Busy)?;
    web::block(move || hash_password(&password))
        .await
        .map_err(|err| LoginError::Unavailable(err.to_string()))?
        .map_err(|err| LoginError::Unavailable(err.to_string()))
}

/// An argon2 hash of `password` in PHC format (blocks for tens of ms).
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
}

pub(super) async fn verify(
    throttle: &LoginThrottle,
    stored: String,
    password: String,
) -> Result<(), LoginError> {
    let _slot = throttle.hashing_slot().await.ok_or(LoginError::Busy)?;
    let matches = web::block(move || {
        PasswordHash::new(&stored)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .map_err(|err| LoginError::Unavailable(err.to_string()))?;
    if matches {
        Ok(())
    } else {
        Err(LoginError::WrongPassword)
    }
}
