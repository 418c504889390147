//! One actor per WebSocket connection.
//!
//! The actor reads client frames from the socket stream, checks them, and
//! turns them into messages for the registry and rooms. Everything written
//! back goes through one ordered outbox drained by a single in-flight write,
//! so frames reach the client in the order they were produced.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, ProtocolError};
use bytestring::ByteString;

use super::protocol::{
    self, ClientFrame, ErrorCode, MessageOptions, Ref, Rejected, ServerFrame, WireMessage,
    DEFAULT_HISTORY_LIMIT, MAX_FETCH_MISSED, MAX_GROUP_RECIPIENTS, MAX_HISTORY_LIMIT,
};
use super::rate_limit::RateLimiter;
use super::socket::Hangup;
use crate::chat::names::{direct_participants, is_valid_user_name, may_access};
use crate::chat::registry::{self, Registry};
use crate::chat::room::{self, Room};
use crate::chat::{Deliver, Drain, Evict, SessionId, SetAvatar};
use crate::hooks::{Hooks, Target};
use crate::http::admission::Held;
use crate::metrics;
use crate::store::{Store, StoreResult, User};

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

enum Outbound {
    Text(ByteString),
    Ping,
    Pong(actix_web::web::Bytes),
    Close(Option<CloseReason>),
}

impl Outbound {
    fn len(&self) -> usize {
        match self {
            Outbound::Text(text) => text.len(),
            Outbound::Pong(payload) => payload.len(),
            Outbound::Ping | Outbound::Close(_) => 0,
        }
    }
}

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
    outbox: VecDeque<Outbound>,
    /// Bytes in the outbox and in the write in flight.
    outbox_bytes: usize,
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
            outbox: VecDeque::new(),
            outbox_bytes: 0,
            socket: Some(socket),
            hangup: Hangup::default(),
            joining: 0,
            closing: false,
            ending: metrics::close::CLIENT,
            login: None,
            admin: false,
            place: None,
            ready: false,
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

    fn send(&mut self, frame: ByteString, ctx: &mut Context<Self>) {
        self.enqueue(Outbound::Text(frame), ctx);
    }

    fn reject(&mut self, rejected: Rejected, ctx: &mut Context<Self>) {
        metrics::error_sent(rejected.code);
        self.send(rejected.encode(), ctx);
    }

    fn enqueue(&mut self, item: Outbound, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        if self.outbox.len() >= MAX_OUTBOX || self.outbox_bytes + item.len() > MAX_OUTBOX_BYTES {
            tracing::warn!(user = %self.user, frames = self.outbox.len(), bytes = self.outbox_bytes, "client reads too slowly; cutting its connection");
            return self.end(metrics::close::SLOW, |this| this.hang_up(ctx));
        }
        self.outbox_bytes += item.len();
        self.outbox.push_back(item);
        self.pump(ctx);
    }

    /// Cuts the connection: a close frame would wait behind the writes the
    /// client is not reading, and with it everything queued.
    fn hang_up(&mut self, ctx: &mut Context<Self>) {
        self.closing = true;
        self.outbox.clear();
        self.hangup.now();
        ctx.stop();
    }

    /// Records why the connection ends (the first reason wins), then ends it.
    fn end(&mut self, reason: &'static str, then: impl FnOnce(&mut Self)) {
        if !self.closing {
            self.ending = reason;
        }
        then(self)
    }

    /// Sends a close frame after whatever is queued, then stops.
    fn close(&mut self, code: CloseCode, description: &str, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.outbox.push_back(Outbound::Close(Some(CloseReason {
            code,
            description: Some(description.to_owned()),
        })));
        self.pump(ctx);
    }

    /// Writes everything queued, unless a write is already in flight (its
    /// completion calls `pump` again).
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.outbox.is_empty() {
            return;
        }
        let Some(mut socket) = self.socket.take() else {
            return;
        };
        let batch = std::mem::take(&mut self.outbox);
        let written: usize = batch.iter().map(Outbound::len).sum();
        let write = async move {
            for item in batch {
                let sent = match item {
                    Outbound::Text(text) => socket.text(text).await,
                    Outbound::Ping => socket.ping(b"").await,
                    Outbound::Pong(payload) => socket.pong(&payload).await,
                    Outbound::Close(reason) => {
                        let _ = socket.close(reason).await;
                        return None;
                    }
                };
                sent.ok()?;
            }
            Some(socket)
        };
        ctx.spawn(
            write
                .into_actor(self)
                .map(move |socket, this, ctx| match socket {
                    Some(socket) => {
                        // The client takes what it is sent: alive, though a
                        // ping may wait behind a large replay for a while.
                        this.last_heard = Instant::now();
                        this.outbox_bytes -= written;
                        this.socket = Some(socket);
                        this.pump(ctx);
                    }
                    // Closed by us, or the client went away.
                    None => ctx.stop(),
                }),
        );
    }

    /// Tells the registry, once, after whatever the frames handled so far
    /// asked of it (a `resume` waits for its joins).
    fn become_ready(&mut self, ctx: &mut Context<Self>) {
        if std::mem::replace(&mut self.ready, true) {
            return;
        }
        // Spawned, not waited: a spawned future runs only once every
        // waiting one is done (waits run last-in first-out, so a wait
        // queued now would run before the joins queued by the frame).
        ctx.spawn(actix::fut::ready(()).map(|(), this: &mut Self, _ctx| {
            this.registry.do_send(registry::Ready { session: this.id });
        }));
    }

    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        let stalled = self.last_beat.elapsed() > HEARTBEAT_INTERVAL * 2;
        self.last_beat = Instant::now();
        if stalled {
            // What the client sent while this replica was frozen is still
            // unread in the socket; judging it now would close every
            // healthy connection at once. It gets a full timeout from now.
            self.last_heard = self.last_beat;
        }
        if self.last_heard.elapsed() > CLIENT_TIMEOUT {
            tracing::info!(user = %self.user, "client answered no ping in time; cutting it off");
            return self.end(metrics::close::TIMEOUT, |this| this.hang_up(ctx));
        }
        metrics::get()
            .outbox_bytes
            .observe(self.outbox_bytes as f64);
        self.enqueue(Outbound::Ping, ctx);
    }

    fn on_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        // Counted before parsing: parsing is the cost a flood is after.
        if !self.limiter.allow() {
            metrics::get().frames_rate_limited.inc();
            self.refused_in_a_row += 1;
            if self.refused_in_a_row > MAX_REFUSED_IN_A_ROW {
                tracing::info!(user = %self.user, "client stays over the frame rate; closing");
                return self.end(metrics::close::FLOOD, |this| {
                    this.close(CloseCode::Policy, "over the frame rate limit", ctx)
                });
            }
            // A send's ref tells the client which one was dropped; only a
            // short frame is looked into for it.
            let reference = (text.len() <= REF_PEEK_BYTES)
                .then(|| protocol::peek_reference(text))
                .flatten();
            let rejected = Rejected::new(
                ErrorCode::RateLimited,
                "too many frames; this one was dropped, slow down",
                reference,
            );
            return self.reject(rejected, ctx);
        }
        self.refused_in_a_row = 0;
        match protocol::parse(text) {
            Ok(frame) => {
                metrics::get().frames_received.inc(frame.kind());
                self.on_frame(frame, ctx)
            }
            Err(rejected) => {
                metrics::get().frames_received.inc("invalid");
                self.reject(rejected, ctx)
            }
        }
    }

    fn on_frame(&mut self, frame: ClientFrame, ctx: &mut Context<Self>) {
        let replays = matches!(
            frame,
            ClientFrame::Join { .. } | ClientFrame::Resume { .. } | ClientFrame::History { .. }
        );
        if replays && self.outbox_bytes > MAX_REPLAY_BACKLOG_BYTES {
            let rejected = Rejected::new(
                ErrorCode::RateLimited,
                "earlier answers are still on their way to you; read them, then ask again",
                None,
            );
            return self.reject(rejected, ctx);
        }
        match frame {
            ClientFrame::Join { room } => self.join(room, None, ctx),
            ClientFrame::Resume { rooms } => {
                if rooms.len() > MAX_ROOMS_PER_SESSION {
                    let rejected = Rejected::new(
                        ErrorCode::InvalidRoom,
                        format!("a resume names at most {MAX_ROOMS_PER_SESSION} rooms"),
                        None,
                    );
                    return self.reject(rejected, ctx);
                }
                for (room, since) in rooms {
                    self.join(room, Some(since), ctx);
                }
            }
            ClientFrame::Leave { room } => {
                if self.rooms.remove(&room).is_some() {
                    self.registry.do_send(registry::LeaveRoom {
                        session: self.id,
                        room,
                    });
                } else {
                    self.reject(not_joined(&room, None), ctx);
                }
            }
            ClientFrame::Send {
                room,
                text,
                reference,
                delivery,
                retry,
            } => {
                if let Err(rejected) = protocol::check_text(&text, reference.as_ref()) {
                    return self.reject(rejected, ctx);
                }
                let Some(addr) = self.rooms.get(&room) else {
                    return self.reject(not_joined(&room, reference), ctx);
                };
                let options = MessageOptions {
                    reference,
                    delivery,
                    confirm: false,
                    retry,
                };
                let post = self.post(text, options, ctx);
                addr.do_send(post);
            }
            ClientFrame::Typing { room, active } => match self.rooms.get(&room) {
                Some(addr) => addr.do_send(room::Typing {
                    session: self.id,
                    user: self.user.clone(),
                    active,
                }),
                None => self.reject(not_joined(&room, None), ctx),
            },
            ClientFrame::History {
                room,
                before,
                limit,
            } => self.history(room, before, limit, ctx),
            ClientFrame::Direct { to, text, options } => self.direct(to, text, options, ctx),
            ClientFrame::Group { to, text, options } => self.group(to, text, options, ctx),
            ClientFrame::FetchMissed { limit } => self.fetch_missed(limit, ctx),
            ClientFrame::Read { room, seq } => match self.rooms.get(&room) {
                Some(addr) => addr.do_send(room::Read {
                    session: self.id,
                    user: self.user.clone(),
                    seq,
                }),
                None => self.reject(not_joined(&room, None), ctx),
            },
            ClientFrame::Ping => self.send(ServerFrame::Pong.encode(), ctx),
        }
    }

    fn post(&self, text: String, options: MessageOptions, ctx: &mut Context<Self>) -> room::Post {
        room::Post {
            session: Some(self.id),
            user: self.user.clone(),
            avatar: self.avatar.clone(),
            text,
            reference: options.reference,
            delivery: options.delivery,
            confirm: options.confirm,
            retry: options.retry,
            reply: room::Reply::Socket(ctx.address().recipient()),
        }
    }

    /// Runs `then` once the authorize hook allows `target` (at once without
    /// a hook or with a recent allow); otherwise refuses with `reference`.
    /// Waiting keeps the connection's frames in order.
    fn authorized<F>(
        &mut self,
        target: OwnedTarget,
        reference: Option<Ref>,
        ctx: &mut Context<Self>,
        then: F,
    ) where
        F: FnOnce(&mut Self, &mut Context<Self>) + 'static,
    {
        if self
            .hooks
            .allowed_without_asking(&self.user, target.borrow())
        {
            return then(self, ctx);
        }
        let (hooks, user) = (self.hooks.clone(), self.user.clone());
        let ask = async move { hooks.authorize(&user, target.borrow()).await };
        ctx.wait(
            ask.into_actor(self)
                .map(move |decision, this, ctx| match decision {
                    Ok(true) => then(this, ctx),
                    Ok(false) => this.reject(
                        Rejected::new(ErrorCode::Forbidden, "not allowed", reference),
                        ctx,
                    ),
                    Err(err) => {
                        tracing::warn!(error = %err, "authorization webhook failed; denying");
                        let rejected = Rejected::new(
                            ErrorCode::AuthorizationUnavailable,
                            "authorization is unavailable right now; nothing was sent, try again",
                            reference,
                        );
                        this.reject(rejected, ctx);
                    }
                }),
        );
    }

    fn group(
        &mut self,
        to: Vec<String>,
        text: String,
        options: MessageOptions,
        ctx: &mut Context<Self>,
    ) {
        if let Err(rejected) = protocol::check_text(&text, options.reference.as_ref()) {
            return self.reject(rejected, ctx);
        }
        let mut recipients = to;
        recipients.sort_unstable();
        recipients.dedup();
        if recipients.is_empty() || recipients.len() > MAX_GROUP_RECIPIENTS {
            let rejected = Rejected::new(
                ErrorCode::InvalidFrame,
                format!("a group message goes to 1 to {MAX_GROUP_RECIPIENTS} users"),
                options.reference,
            );
            return self.reject(rejected, ctx);
        }
        if let Some(bad) = recipients.iter().find(|name| !is_valid_user_name(name)) {
            let rejected = Rejected::new(
                ErrorCode::InvalidUser,
                format!("{bad:?} is not a valid user name; nothing was sent"),
                options.reference,
            );
            return self.reject(rejected, ctx);
        }
        for recipient in recipients {
            self.direct(recipient, text.clone(), options.clone(), ctx);
        }
    }

    fn fetch_missed(&mut self, limit: Option<u32>, ctx: &mut Context<Self>) {
        let limit = limit.unwrap_or(MAX_FETCH_MISSED).clamp(1, MAX_FETCH_MISSED);
        let (store, user) = (self.store.clone(), self.user.clone());
        let fetch = async move { store.fetch_missed(&user, limit).await };
        // Waiting keeps one fetch's messages and its `complete` together.
        ctx.wait(
            fetch
                .into_actor(self)
                .map(|result, this, ctx| match result {
                    Ok(missed) => {
                        metrics::get()
                            .offline_fetched
                            .inc_by(missed.messages.len() as u64);
                        for message in &missed.messages {
                            this.send(
                                ServerFrame::Message(WireMessage::from(message)).encode(),
                                ctx,
                            );
                        }
                        this.send(
                            ServerFrame::FetchMissedComplete { left: missed.left }.encode(),
                            ctx,
                        );
                        if !missed.deliveries.is_empty() {
                            this.registry
                                .do_send(registry::ConfirmDeliveries(missed.deliveries));
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "fetching missed messages failed");
                        let rejected = Rejected::new(
                            ErrorCode::StoreUnavailable,
                            "missed messages are unavailable right now; they are kept, try again",
                            None,
                        );
                        this.reject(rejected, ctx);
                    }
                }),
        );
    }

    /// Tells the client how many direct messages wait for it.
    fn announce_pending(&mut self, ctx: &mut Context<Self>) {
        let (store, user) = (self.store.clone(), self.user.clone());
        let count = async move { store.pending_count(&user).await };
        ctx.spawn(
            count
                .into_actor(self)
                .map(|result, this, ctx| match result {
                    Ok(0) => {}
                    Ok(count) => this.send(ServerFrame::Pending { count }.encode(), ctx),
                    Err(err) => tracing::warn!(error = %err, "could not count pending messages"),
                }),
        );
    }

    fn join(&mut self, room: String, since: Option<u64>, ctx: &mut Context<Self>) {
        // Nothing to ask the hook: joined already, or refused below anyway.
        if self.rooms.contains_key(&room) || !may_access(&self.user, &room) {
            return self.join_authorized(room, since, ctx);
        }
        let target = match direct_participants(&room) {
            Some((a, b)) => OwnedTarget::User(if a == self.user { b } else { a }.to_owned()),
            None => OwnedTarget::Room(room.clone()),
        };
        self.authorized(target, None, ctx, move |this, ctx| {
            this.join_authorized(room, since, ctx)
        });
    }

    fn join_authorized(&mut self, room: String, since: Option<u64>, ctx: &mut Context<Self>) {
        if !may_access(&self.user, &room) {
            let rejected = Rejected::new(
                ErrorCode::InvalidRoom,
                format!(
                    "{room:?} is not a room you can join: names are 1-64 letters, digits, '_', '-' or '.', \
                     and direct rooms are open to their two users only"
                ),
                None,
            );
            return self.reject(rejected, ctx);
        }
        if !self.rooms.contains_key(&room)
            && self.rooms.len() + self.joining >= MAX_ROOMS_PER_SESSION
        {
            let rejected = Rejected::new(
                ErrorCode::InvalidRoom,
                format!(
                    "a connection can be in at most {MAX_ROOMS_PER_SESSION} rooms; leave one first"
                ),
                None,
            );
            return self.reject(rejected, ctx);
        }
        self.joining += 1;
        let request = self.registry.send(registry::JoinRoom {
            session: self.id,
            room: room.clone(),
            since,
        });
        // Wait so that a `send` right after `join` finds the room known.
        ctx.wait(request.into_actor(self).map(move |reply, this, ctx| {
            this.joining -= 1;
            match reply {
                Ok(Some(addr)) => {
                    this.rooms.insert(room, addr);
                }
                _ => this.end(metrics::close::RESTART, |this| {
                    this.close(CloseCode::Restart, "server is shutting down", ctx)
                }),
            }
        }));
    }

    fn history(
        &mut self,
        room: String,
        before: Option<u64>,
        limit: Option<u32>,
        ctx: &mut Context<Self>,
    ) {
        if !self.rooms.contains_key(&room) {
            return self.reject(not_joined(&room, None), ctx);
        }
        let limit = limit
            .unwrap_or(DEFAULT_HISTORY_LIMIT)
            .clamp(1, MAX_HISTORY_LIMIT);
        let store = self.store.clone();
        let read = async move {
            let messages = store.history(&room, before, limit).await;
            (room, messages)
        };
        ctx.spawn(
            read.into_actor(self)
                .map(|(room, result), this, ctx| match result {
                    Ok(messages) => {
                        let frame = ServerFrame::History {
                            room: &room,
                            messages: messages.iter().map(WireMessage::from).collect(),
                        }
                        .encode();
                        this.send(frame, ctx);
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "history read failed");
                        let rejected = Rejected::new(
                            ErrorCode::StoreUnavailable,
                            "history is unavailable right now, try again",
                            None,
                        );
                        this.reject(rejected, ctx);
                    }
                }),
        );
    }

    fn direct(
        &mut self,
        to: String,
        text: String,
        options: MessageOptions,
        ctx: &mut Context<Self>,
    ) {
        if let Err(rejected) = protocol::check_text(&text, options.reference.as_ref()) {
            return self.reject(rejected, ctx);
        }
        if !is_valid_user_name(&to) {
            let rejected = Rejected::new(
                ErrorCode::InvalidUser,
                format!("{to:?} is not a valid user name"),
                options.reference,
            );
            return self.reject(rejected, ctx);
        }
        let reference = options.reference.clone();
        self.authorized(
            OwnedTarget::User(to.clone()),
            reference,
            ctx,
            move |this, ctx| this.direct_authorized(to, text, options, ctx),
        );
    }

    fn direct_authorized(
        &mut self,
        to: String,
        text: String,
        options: MessageOptions,
        ctx: &mut Context<Self>,
    ) {
        if let Some(room) = self.direct_rooms.get(&to).filter(|room| room.connected()) {
            let post = self.post(text, options, ctx);
            room.do_send(post);
            return;
        }
        // First message to `to` from this connection: check the user exists
        // and have the registry open the conversation once; later messages
        // go straight to the room, not through the registry.
        let (store, registry) = (self.store.clone(), self.registry.clone());
        let (user, peer) = (self.user.clone(), to.clone());
        let open = async move {
            let Some(_) = store.find_user(&peer).await? else {
                return Ok(None);
            };
            Ok(registry
                .send(registry::OpenDirect { user, peer })
                .await
                .ok())
        };
        // Waiting keeps this user's direct messages in the order sent.
        ctx.wait(open.into_actor(self).map(
            move |opened: StoreResult<Option<Addr<Room>>>, this, ctx| match opened {
                Ok(Some(room)) => {
                    if this.direct_rooms.len() >= DIRECT_ROOMS_CAPACITY {
                        this.direct_rooms.clear();
                    }
                    let post = this.post(text, options, ctx);
                    room.do_send(post);
                    this.direct_rooms.insert(to, room);
                }
                Ok(None) => {
                    let rejected = Rejected::new(
                        ErrorCode::UnknownUser,
                        format!("there is no user {to:?}"),
                        options.reference,
                    );
                    this.reject(rejected, ctx);
                }
                Err(err) => {
                    tracing::warn!(error = %err, "user lookup failed");
                    let rejected = Rejected::new(
                        ErrorCode::StoreUnavailable,
                        "the message could not be sent: storage is unavailable",
                        options.reference,
                    );
                    this.reject(rejected, ctx);
                }
            },
        ));
    }
}

/// A [`Target`] that can wait for the authorize hook.
enum OwnedTarget {
    User(String),
    Room(String),
}

impl OwnedTarget {
    fn borrow(&self) -> Target<'_> {
        match self {
            Self::User(user) => Target::User(user),
            Self::Room(room) => Target::Room(room),
        }
    }
}

fn not_joined(room: &str, reference: Option<protocol::Ref>) -> Rejected {
    Rejected::new(
        ErrorCode::NotJoined,
        format!("join {room:?} first"),
        reference,
    )
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
                self.reject(
                    Rejected::new(
                        ErrorCode::Unsupported,
                        "binary frames are not supported; send JSON text frames",
                        None,
                    ),
                    ctx,
                )
            }
            Ok(AggregatedMessage::Ping(payload)) => self.enqueue(Outbound::Pong(payload), ctx),
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

impl Handler<Deliver> for WsSession {
    type Result = ();

    fn handle(&mut self, Deliver(frame): Deliver, ctx: &mut Self::Context) {
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
