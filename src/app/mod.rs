//! What every endpoint shares, below both `http` and `ws`: the replica's
//! state handed to handlers, who a session is logged in as, what a request
//! says about its sender (address, origin, HTTPS), and the admission
//! limits (connection caps, login throttles, users' message budgets).

pub mod admission;
pub mod budget;
pub mod login;
pub mod request;
pub mod throttle;

use std::sync::Arc;

use actix::Addr;

use crate::chat::registry::Registry;
use crate::config::Config;
use crate::store::Store;

/// What every handler can reach.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub registry: Addr<Registry>,
    pub cluster: crate::cluster::ClusterHandle,
    pub hooks: Arc<crate::hooks::Hooks>,
    pub config: Arc<Config>,
    pub node_id: String,
    /// Set when the replica starts draining: not ready, no new WebSockets.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    pub throttle: Arc<throttle::LoginThrottle>,
    pub socket_caps: Arc<admission::SocketCaps>,
    /// The session cookie's key: a chat connection reads its login's
    /// store key from the cookie, to notice when the login expires.
    pub cookie_key: actix_web::cookie::Key,
    /// Each user's message budget, shared with the registry (which tells
    /// the other replicas).
    pub budgets: Arc<budget::Budgets>,
}

impl AppState {
    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Relaxed)
    }
}
