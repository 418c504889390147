//! Integration hooks: webhooks through which an existing system owns
//! identities and permissions, revokes sessions, and hears about
//! connections. Each is optional (configured by URL) and bounded by
//! `WEBHOOK_TIMEOUT_MS`. What happens when a hook does not answer in time,
//! fails, or answers something unreadable:
//!
//! | hook | request | when it is down |
//! |---|---|---|
//! | auth | `{"name","password"?,"token"?}` at login | login refused (503): deny by default |
//! | authorize | `{"from","to"}` or `{"from","room"}` before a direct/group message or a join | refused with `authorization_unavailable`: deny by default |
//! | validity | `{"node","users":[…]}` every interval | nobody is disconnected: an outage of the hook must not log out the whole cluster |
//! | events | `{"type":"user_connected"\|"user_disconnected","user","node","ts"}` | the event is dropped (logged); later ones still go |
//!
//! Allow decisions of the authorize hook are reused for
//! `AUTHORIZE_CACHE_SECS`; denials are not cached, so a grant takes effect
//! at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::metrics;
use crate::store::now_millis;

/// Allow decisions kept at most, so the cache cannot grow without bound.
const MAX_CACHED_DECISIONS: usize = 100_000;
/// Largest reply read from a hook: decisions are a few fields, so anything
/// larger is a broken or hostile receiver, not an answer.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// Why a webhook gave no usable answer; the cause is kept, and named in
/// the message too because logs print the message.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("webhook unreachable or too slow: {0}")]
    Unreachable(#[source] reqwest::Error),
    #[error("webhook answered HTTP {0}")]
    Status(u16),
    #[error("webhook reply not understood: {0}")]
    BadReply(#[source] BadReply),
}

/// A webhook's reply that is not an answer.
#[derive(Debug, thiserror::Error)]
pub enum BadReply {
    #[error("more than {MAX_REPLY_BYTES} bytes")]
    TooLarge,
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// What the auth hook decided.
#[derive(Debug, Deserialize)]
pub struct AuthDecision {
    pub allowed: bool,
    /// The identity to log in as; the submitted name if absent.
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Deserialize)]
struct AuthorizeDecision {
    allowed: bool,
}

#[derive(Deserialize)]
struct ValidityReply {
    #[serde(default)]
    invalid: Vec<String>,
}

/// What a user wants to reach.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A direct (or group) message to this user, or their direct room.
    User(&'a str),
    /// A join of this public room.
    Room(&'a str),
}

impl Target<'_> {
    fn cache_key(&self, from: &str) -> (String, String) {
        match self {
            Self::User(to) => (from.to_owned(), format!("@{to}")),
            Self::Room(room) => (from.to_owned(), format!("#{room}")),
        }
    }
}

/// A connection event for the events hook.
#[derive(Debug, Serialize)]
pub struct ConnectionEvent {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub user: String,
    pub node: String,
    pub ts: i64,
}

impl ConnectionEvent {
    pub fn new(connected: bool, user: &str, node: &str) -> Self {
        Self {
            kind: if connected {
                "user_connected"
            } else {
                "user_disconnected"
            },
            user: user.to_owned(),
            node: node.to_owned(),
            ts: now_millis(),
        }
    }
}

pub struct Hooks {
    client: reqwest::Client,
    auth: Option<String>,
    authorize: Option<String>,
    validity: Option<(String, Duration)>,
    events: Option<mpsc::Sender<ConnectionEvent>>,
    allowed: Mutex<HashMap<(String, String), Instant>>,
    allow_for: Duration,
}

impl Hooks {
    /// The hooks `config` names. Starts the events sender, so it must run
    /// inside the runtime.
    pub fn from_config(config: &Config) -> Arc<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.webhook_timeout_ms))
            // A hook answers where it was asked; a redirect (to an internal
            // address, say) is an answer that is not a decision.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the HTTP client builds with a timeout");
        let events = config.events_webhook_url.clone().map(|url| {
            let (sender, queue) = mpsc::channel(config.events_queue.max(1));
            tokio::spawn(send_events(client.clone(), url, queue));
            sender
        });
        Arc::new(Self {
            auth: config.auth_webhook_url.clone(),
            authorize: config.authorize_webhook_url.clone(),
            validity: config.validity_webhook_url.clone().map(|url| {
                (
                    url,
                    Duration::from_secs(config.validity_interval_secs.max(1)),
                )
            }),
            events,
            allowed: Mutex::new(HashMap::new()),
            allow_for: Duration::from_secs(config.authorize_cache_secs),
            client,
        })
    }

    pub fn has_auth(&self) -> bool {
        self.auth.is_some()
    }

    /// How often the validity hook is asked, if there is one.
    pub fn validity_interval(&self) -> Option<Duration> {
        self.validity.as_ref().map(|(_, every)| *every)
    }

    /// Posts `body` to the `hook`'s `url`, counting a failure and the time
    /// taken; the caller counts a usable answer as ok or refused.
    async fn post<T: for<'de> Deserialize<'de>>(
        &self,
        hook: &'static str,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<T, HookError> {
        let started = Instant::now();
        let answer = self.ask(url, body).await;
        if answer.is_err() {
            metrics::get().webhook(hook, metrics::hook::FAILED, started.elapsed());
        } else {
            metrics::get()
                .webhook_seconds
                .with_label_values(&[hook])
                .observe(started.elapsed().as_secs_f64());
        }
        answer
    }

    /// Counts an answer of `hook`: `yes` is ok, otherwise refused.
    fn answered(hook: &'static str, yes: bool) {
        let result = if yes {
            metrics::hook::OK
        } else {
            metrics::hook::REFUSED
        };
        metrics::get()
            .webhook_calls
            .with_label_values(&[hook, result])
            .inc();
    }

    async fn ask<T: for<'de> Deserialize<'de>>(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<T, HookError> {
        let mut response = self
            .client
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(HookError::Unreachable)?;
        if !response.status().is_success() {
            return Err(HookError::Status(response.status().as_u16()));
        }
        let too_large = || HookError::BadReply(BadReply::TooLarge);
        if response
            .content_length()
            .is_some_and(|length| length > MAX_REPLY_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut reply = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(HookError::Unreachable)? {
            if reply.len() + chunk.len() > MAX_REPLY_BYTES {
                return Err(too_large());
            }
            reply.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&reply).map_err(|err| HookError::BadReply(err.into()))
    }

    /// Asks the auth hook about a login; `None` when there is no auth hook
    /// (the local password store decides).
    pub async fn authenticate(
        &self,
        name: &str,
        password: Option<&str>,
        token: Option<&str>,
    ) -> Option<Result<AuthDecision, HookError>> {
        let url = self.auth.as_deref()?;
        let mut body = json!({ "name": name });
        if let Some(password) = password {
            body["password"] = password.into();
        }
        if let Some(token) = token {
            body["token"] = token.into();
        }
        let decision: Result<AuthDecision, HookError> =
            self.post(metrics::hook::AUTH, url, &body).await;
        if let Ok(decision) = &decision {
            Self::answered(metrics::hook::AUTH, decision.allowed);
        }
        Some(decision)
    }

    /// Whether `from` may reach `target` without asking: no hook, or a
    /// recent allow.
    pub fn allowed_without_asking(&self, from: &str, target: Target<'_>) -> bool {
        if self.authorize.is_none() {
            return true;
        }
        let allowed = self.allowed.lock().unwrap_or_else(|p| p.into_inner());
        allowed
            .get(&target.cache_key(from))
            .is_some_and(|since| since.elapsed() < self.allow_for)
    }

    /// Asks the authorize hook (true without one).
    pub async fn authorize(&self, from: &str, target: Target<'_>) -> Result<bool, HookError> {
        let Some(url) = &self.authorize else {
            return Ok(true);
        };
        let body = match target {
            Target::User(to) => json!({ "from": from, "to": to }),
            Target::Room(room) => json!({ "from": from, "room": room }),
        };
        let decision: AuthorizeDecision = self.post(metrics::hook::AUTHORIZE, url, &body).await?;
        Self::answered(metrics::hook::AUTHORIZE, decision.allowed);
        if decision.allowed && !self.allow_for.is_zero() {
            let mut allowed = self.allowed.lock().unwrap_or_else(|p| p.into_inner());
            if allowed.len() >= MAX_CACHED_DECISIONS {
                let allow_for = self.allow_for;
                allowed.retain(|_, since| since.elapsed() < allow_for);
                if allowed.len() >= MAX_CACHED_DECISIONS {
                    allowed.clear();
                }
            }
            allowed.insert(target.cache_key(from), Instant::now());
        }
        Ok(decision.allowed)
    }

    /// Asks the validity hook which of `users` (connected to `node`) are no
    /// longer valid.
    pub async fn invalid_users(
        &self,
        node: &str,
        users: Vec<String>,
    ) -> Result<Vec<String>, HookError> {
        let Some((url, _)) = &self.validity else {
            return Ok(Vec::new());
        };
        let reply: ValidityReply = self
            .post(
                metrics::hook::VALIDITY,
                url,
                &json!({ "node": node, "users": users }),
            )
            .await?;
        Self::answered(metrics::hook::VALIDITY, reply.invalid.is_empty());
        Ok(reply.invalid)
    }

    /// Queues a connection event for the events hook, in order.
    pub fn event(&self, event: ConnectionEvent) {
        if let Some(events) = &self.events {
            if events.try_send(event).is_err() {
                tracing::warn!("events webhook is behind; dropping a connection event");
                // Counted, but no call was timed: the latency histogram
                // must not fill with zeros while the receiver is behind.
                metrics::get()
                    .webhook_calls
                    .with_label_values(&[metrics::hook::EVENTS, metrics::hook::DROPPED])
                    .inc();
            }
        }
    }
}

/// Posts events one at a time, so the receiver sees them in order.
async fn send_events(
    client: reqwest::Client,
    url: String,
    mut queue: mpsc::Receiver<ConnectionEvent>,
) {
    while let Some(event) = queue.recv().await {
        let started = Instant::now();
        let sent = client.post(&url).json(&event).send().await;
        let result = match &sent {
            Ok(response) if response.status().is_success() => metrics::hook::OK,
            _ => metrics::hook::FAILED,
        };
        metrics::get().webhook(metrics::hook::EVENTS, result, started.elapsed());
        match sent {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => {
                tracing::warn!(status = %response.status(), kind = event.kind, "events webhook refused an event")
            }
            Err(err) => {
                tracing::warn!(error = %err, kind = event.kind, "events webhook unreachable; event dropped")
            }
        }
    }
}
