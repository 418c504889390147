//! One actor per WebSocket connection.
//!
//! The actor reads client frames from the socket stream, checks them, and
//! turns them into messages for the registry and rooms. Everything written
//! back goes through one ordered [`Outbox`] drained by a single in-flight
//! write, so frames reach the client in the order they were produced.
//!
//! This file holds the connection's state and its actor plumbing; the
//! handlers are split by concern: `connection` (the outbox on the socket,
//! heartbeat, close), `commands` (parsing and dispatching client frames), `rooms`
//! (join, history, group messages, the authorize hook), `direct`
//! (direct messages and the offline inbox) and `changes` (edits and
//! deletes).

mod changes;
mod commands;
mod connection;
mod direct;
mod rooms;

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_ws::{AggregatedMessage, CloseCode, ProtocolError};

use super::rate_limit::RateLimiter;
use super::socket::Hangup;
use crate::app::admission::Held;
use crate::app::budget::Budgets;
use crate::chat::registry::{self, Registry};
use crate::chat::room::Room;
use crate::chat::{Drain, Evict, Outgoing, SessionId, SetAvatar};
use crate::hooks::Hooks;
use crate::metrics;
use crate::protocol::{self, ErrorCode, Rejected, ServerFrame};
use crate::store::{Store, User};
use crate::ws::outbox::{Outbound, Outbox};

/// How often the server pings an idle client.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// A client that answers no ping for this long is cut off.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);
/// Frames queued for a client that reads slower than it is written to. Past
/// this, or [`MAX_OUTBOX_BYTES`], the connection is cut rather than let
/// memory grow without bound; the client reconnects and resumes.
pub const MAX_OUTBOX: usize = 4096;
/// Bytes queued for one client (frames waiting and being written).
pub const MAX_OUTBOX_BYTES: usize = 16 * 1024 * 1024;
/// A `join`, `resume` or `history` is refused while more than this waits
/// for the client: answers to such requests are large (up to 500 messages),
/// and a client that asks faster than it reads must not multiply them.
pub const MAX_REPLAY_BACKLOG_BYTES: usize = 4 * 1024 * 1024;
/// Frames refused in a row for the rate limit before the connection is
/// closed (1008): a client that keeps going is not slowing down.
pub const MAX_REFUSED_IN_A_ROW: u32 = 100;
/// A rate-limited frame up to this size is looked into for its `ref`.
const REF_PEEK_BYTES: usize = 1024;
/// How long a connection outlives its session, for the close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Rooms one connection may be in at once.
pub const MAX_ROOMS_PER_SESSION: usize = 100;
/// A connection that sends nothing starts receiving its direct messages
/// live after this long; one that speaks, once its first frame is handled
/// (see [`registry::Ready`]).
const READY_GRACE: Duration = Duration::from_secs(1);
/// Direct conversations remembered per connection, to spare a store lookup
/// and a registry round trip per direct message.
const DIRECT_ROOMS_CAPACITY: usize = 1024;

pub struct WsSession {
    id: SessionId,
    user: String,
    avatar: Option<String>,
    registry: Addr<Registry>,
    store: Arc<dyn Store>,
    hooks: Arc<Hooks>,
    rooms: HashMap<String, Addr<Room>>,
    /// Direct conversations this connection has written to, by peer: the
    /// room actor lives at least as long as this connection (a member).
    direct_rooms: HashMap<String, Addr<Room>>,
    limiter: RateLimiter,
    /// Frames refused for the rate limit since the last one let through.
    refused_in_a_row: u32,
    last_heard: Instant,
    /// When the heartbeat last ran: a beat much later than planned means
    /// this process stood still (SIGSTOP, a paused VM), not the client.
    last_beat: Instant,
    outbox: Outbox,
    /// `None` while a write is in flight (the write owns it) and after close.
    socket: Option<actix_ws::Session>,
    hangup: Hangup,
    /// Rooms asked of the registry and not answered yet: they count
    /// against [`MAX_ROOMS_PER_SESSION`] already.
    joining: usize,
    closing: bool,
    login: Option<String>,
    admin: bool,
    place: Option<Held>,
    /// Why the connection ends, once it does (a [`metrics::close`] reason).
    ending: &'static str,
    /// [`registry::Ready`] was sent.
    ready: bool,
    /// The store key of the login this connection was opened with, and
    /// how often to check it still exists.
    login_key: Option<(String, Duration)>,
    /// When the login is next checked.
    login_check_at: Instant,
    /// The user's message budget, shared by all their connections.
    budgets: Arc<Budgets>,
}

impl WsSession {
    pub fn new(
        id: SessionId,
        account: User,
        registry: Addr<Registry>,
        store: Arc<dyn Store>,
        hooks: Arc<Hooks>,
        socket: actix_ws::Session,
        limiter: RateLimiter,
    ) -> Self {
        Self {
            id,
            user: account.name,
            avatar: account.avatar,
            registry,
            store,
            hooks,
            rooms: HashMap::new(),
            direct_rooms: HashMap::new(),
            limiter,
            refused_in_a_row: 0,
            last_heard: Instant::now(),
            last_beat: Instant::now(),
            outbox: Outbox::new(MAX_OUTBOX, MAX_OUTBOX_BYTES),
            socket: Some(socket),
            hangup: Hangup::default(),
            joining: 0,
            closing: false,
            ending: metrics::close::CLIENT,
            login: None,
            admin: false,
            place: None,
            ready: false,
            login_key: None,
            login_check_at: Instant::now(),
            budgets: Arc::new(Budgets::new(0, 1)),
        }
    }

    /// How to cut the connection when a close frame cannot get through.
    pub fn cut_with(mut self, hangup: Hangup) -> Self {
        self.hangup = hangup;
        self
    }

    /// Its place under the per-user and per-address caps, given back when
    /// the session ends.
    pub fn holding(mut self, place: Held) -> Self {
        self.place = Some(place);
        self
    }

    /// Checks every `every` that the login (by its store key) still
    /// exists; the first check comes at a random point of the first
    /// period, so connections opened together (a restart's reconnects) do
    /// not check together.
    pub fn rechecking_login(mut self, key: Option<String>, every: Duration) -> Self {
        self.login_check_at = Instant::now() + every.mul_f64(rand::random::<f64>());
        self.login_key = key.map(|key| (key, every));
        self
    }

    /// Charges what it stores to the user's budget in `budgets`.
    pub fn budgeted(mut self, budgets: Arc<Budgets>) -> Self {
        self.budgets = budgets;
        self
    }

    /// Whether the connection gets every connection event (see `ADMIN_USERS`).
    pub fn as_admin(mut self, admin: bool) -> Self {
        self.admin = admin;
        self
    }

    /// The login (HTTP session) this connection was opened with: its
    /// logout closes the connection.
    pub fn of_login(mut self, login: Option<String>) -> Self {
        self.login = login;
        self
    }
}

/// Whether a stream error means the client sent more than we accept. The
/// continuation aggregator reports its limit as a plain I/O error.
fn is_oversized(err: &ProtocolError) -> bool {
    match err {
        ProtocolError::Overflow => true,
        ProtocolError::Io(io) => io.kind() == io::ErrorKind::Other,
        _ => false,
    }
}

impl Actor for WsSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::debug!(user = %self.user, session = self.id, "connected");
        metrics::get().connections_open.inc();
        metrics::get().connections_opened.inc();
        self.registry.do_send(registry::Connect {
            session: self.id,
            user: self.user.clone(),
            login: self.login.take(),
            admin: self.admin,
            socket: ctx.address().recipient(),
            avatar: ctx.address().recipient(),
            drain: ctx.address().recipient(),
            evict: ctx.address().recipient(),
        });
        ctx.run_interval(HEARTBEAT_INTERVAL, |this, ctx| this.heartbeat(ctx));
        ctx.run_later(READY_GRACE, |this, ctx| this.become_ready(ctx));
        self.announce_pending(ctx);
    }

    fn stopping(&mut self, _ctx: &mut Self::Context) -> Running {
        tracing::debug!(user = %self.user, session = self.id, reason = self.ending, "disconnected");
        metrics::get().connections_open.dec();
        metrics::get().connections_closed.inc(self.ending);
        self.registry
            .do_send(registry::Disconnect { session: self.id });
        // The HTTP layer keeps reading (and dropping) what a client sends
        // after its WebSocket ended; one that closed politely is gone by
        // now, one still streaming (into a refused frame, say) is cut once
        // its close frame had time to leave.
        let hangup = std::mem::take(&mut self.hangup);
        actix::spawn(async move {
            tokio::time::sleep(CLOSE_GRACE).await;
            hangup.now();
        });
        Running::Stop
    }
}

impl StreamHandler<Result<AggregatedMessage, ProtocolError>> for WsSession {
    fn handle(&mut self, item: Result<AggregatedMessage, ProtocolError>, ctx: &mut Self::Context) {
        match item {
            Ok(AggregatedMessage::Text(text)) => {
                self.on_text(&text, ctx);
                self.become_ready(ctx);
            }
            Ok(AggregatedMessage::Binary(_)) => {
                metrics::get().frames_received.inc("binary");
                if self.over_rate(ctx) {
                    return;
                }
                self.reject(
                    Rejected::new(
                        ErrorCode::Unsupported,
                        "binary frames are not supported; send JSON text frames",
                        None,
                    ),
                    ctx,
                )
            }
            // A ping asks for an answer as a frame does: over the rate, none.
            Ok(AggregatedMessage::Ping(payload)) => {
                if !self.over_rate(ctx) {
                    self.enqueue(Outbound::Pong(payload), ctx)
                }
            }
            // Only a pong shows the client reads what it is sent: one that
            // only writes (its pings stuck behind a full outbox) is dead.
            Ok(AggregatedMessage::Pong(_)) => self.last_heard = Instant::now(),
            Ok(AggregatedMessage::Close(_)) => {
                self.close(CloseCode::Normal, "bye", ctx);
            }
            Err(err) if is_oversized(&err) => {
                let limit = protocol::MAX_FRAME_BYTES;
                self.end(metrics::close::OVERSIZED, |this| {
                    this.close(
                        CloseCode::Size,
                        &format!("frame larger than {limit} bytes"),
                        ctx,
                    )
                });
            }
            Err(ProtocolError::Io(err)) if err.kind() == io::ErrorKind::InvalidData => {
                self.end(metrics::close::PROTOCOL, |this| {
                    this.close(CloseCode::Invalid, "text frames must be UTF-8", ctx)
                });
            }
            Err(err) => {
                tracing::debug!(user = %self.user, error = %err, "protocol error");
                self.end(metrics::close::PROTOCOL, |this| {
                    this.close(CloseCode::Protocol, "protocol error", ctx)
                });
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        // The client's half is gone; nothing more can arrive.
        if !self.closing {
            ctx.stop();
        }
    }
}

impl Handler<Outgoing> for WsSession {
    type Result = ();

    fn handle(&mut self, Outgoing(frame): Outgoing, ctx: &mut Self::Context) {
        self.send(frame, ctx);
    }
}

impl Handler<SetAvatar> for WsSession {
    type Result = ();

    fn handle(&mut self, SetAvatar(avatar): SetAvatar, _ctx: &mut Self::Context) {
        self.avatar = avatar;
    }
}

impl Handler<Drain> for WsSession {
    type Result = ();

    fn handle(&mut self, drain: Drain, ctx: &mut Self::Context) {
        tracing::debug!(user = %self.user, "asking the client to reconnect elsewhere");
        self.send(ServerFrame::Reconnect.encode(), ctx);
        ctx.run_later(drain.close_after, |this, ctx| {
            this.end(metrics::close::RESTART, |this| {
                this.close(CloseCode::Restart, "server restarting; reconnect", ctx)
            });
        });
    }
}

impl Handler<Evict> for WsSession {
    type Result = ();

    fn handle(&mut self, evict: Evict, ctx: &mut Self::Context) {
        tracing::info!(user = %self.user, reason = evict.reason(), "closing a connection");
        self.end(metrics::close::EVICTED, |this| {
            this.close(CloseCode::Policy, evict.reason(), ctx)
        });
    }
}
