//! The registry: which rooms run on this replica and who is in them.
//!
//! All membership changes go through here, so a room is retired only when
//! the registry knows it is empty, and a join can never reach a room that is
//! shutting down: the next join simply starts a fresh room actor.

mod backend;

pub use backend::{
    AskConnections, Connection, DisconnectUser, Publish, Watch, QUERY_WAIT, ROOM_LINGER,
};

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::names::{direct_participants, direct_room};
use super::room::{self, Room};
use super::{Deliver, Drain, Evict, SessionId, SetAvatar};
use crate::cluster::{
    node_channel, user_channel, ClusterEvent, ClusterHandle, Remote, Resync, ADMIN_CHANNEL,
    REPLICAS_CHANNEL,
};
use crate::hooks::{ConnectionEvent, Hooks};
use crate::protocol::ServerFrame;
use crate::store::backlog::Backlog;
use crate::store::{now_millis, Delivery, Millis, Store};

/// A WebSocket connection of `user` opened.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connect {
    pub session: SessionId,
    pub user: String,
    /// The login (HTTP session) the connection was opened with.
    pub login: Option<String>,
    /// Gets every connection event: in `ADMIN_USERS`, with an account the
    /// operator made (or the auth webhook vouched for).
    pub admin: bool,
    pub socket: Recipient<Deliver>,
    pub avatar: Recipient<SetAvatar>,
    pub drain: Recipient<Drain>,
    pub evict: Recipient<Evict>,
}

/// The connection has sent its first frame (or stayed silent for a while).
/// Until then the direct rooms it became a silent member of hold its
/// messages back ([`room::Activate`]): a reconnecting client's `resume`
/// would otherwise be overtaken by live messages of the same room, which
/// it would then see twice and out of order.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Ready {
    pub session: SessionId,
}

/// A connection fetched direct messages that were waiting for it; their
/// senders who asked are told, wherever they are connected.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ConfirmDeliveries(pub Vec<Delivery>);

/// The replica is shutting down: every connection, present and late, is
/// told to move to another replica and closed after `close_after`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DrainAll {
    pub close_after: Duration,
}

/// What still runs during a drain.
#[derive(Message)]
#[rtype(result = "DrainProgress")]
pub struct DrainStatus;

#[derive(MessageResponse, Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainProgress {
    /// Open connections.
    pub connections: usize,
    /// Rooms running, or retired but still storing their last messages.
    pub rooms: usize,
}

/// A connection closed: it leaves every room it was in.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    pub session: SessionId,
}

/// A connection joins `room` (public, or a direct room of its user); the
/// reply is the room to post to. `None` if the connection is unknown.
#[derive(Message)]
#[rtype(result = "Option<Addr<Room>>")]
pub struct JoinRoom {
    pub session: SessionId,
    pub room: String,
    /// Resuming after `seq` (see [`room::Join::since`]).
    pub since: Option<u64>,
}

/// A connection leaves a public room. Direct rooms cannot be left: a user's
/// connections always receive their direct messages.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LeaveRoom {
    pub session: SessionId,
    pub room: String,
}

/// `user` writes to `peer`: the reply is their direct room, started (with
/// every connection of both as members) if needed.
#[derive(Message)]
#[rtype(result = "Addr<Room>")]
pub struct OpenDirect {
    pub user: String,
    pub peer: String,
}

/// `user` has a new profile photo; their connections should use it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AvatarChanged {
    pub user: String,
    pub avatar: Option<String>,
}

struct SessionEntry {
    user: String,
    login: Option<String>,
    socket: Recipient<Deliver>,
    avatar: Recipient<SetAvatar>,
    drain: Recipient<Drain>,
    evict: Recipient<Evict>,
    connected_at: Millis,
    rooms: HashSet<String>,
    /// See [`Ready`].
    ready: bool,
}

/// What a registry does beyond rooms: who it is, who administers, and the
/// connection policies.
pub struct Policies {
    /// This replica's name, in connection events.
    pub node: String,
    pub hooks: Arc<Hooks>,
    /// Users whose connections receive connection events.
    pub admins: HashSet<String>,
    /// At most one connection per user, cluster-wide.
    pub single_session: bool,
}

struct RoomEntry {
    addr: Addr<Room>,
    members: HashSet<SessionId>,
}

pub struct Registry {
    store: Arc<dyn Store>,
    cluster: ClusterHandle,
    /// Shared by every room: what waits for the store.
    backlog: Backlog,
    /// Room actors run on these threads, spread round-robin, so fan-out of
    /// busy rooms uses every core instead of the registry's one.
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    rooms: HashMap<String, RoomEntry>,
    sessions: HashMap<SessionId, SessionEntry>,
    users: HashMap<String, HashSet<SessionId>>,
    /// Running direct rooms by participant, so a new connection finds its
    /// conversations without scanning every room.
    direct_rooms: HashMap<String, HashSet<String>>,
    /// Rooms told to shut down; they stop once their writes are stored.
    retiring: Vec<Addr<Room>>,
    /// Set once the replica drains: how long connections get to leave.
    draining: Option<Duration>,
    policies: Policies,
    /// Local admin connections.
    admin_sessions: HashSet<SessionId>,
    /// Users whose new connections are closed at once, until when, and
    /// why: revoked by the validity hook (until its next check), or
    /// disconnected by a backend for a while.
    refused: HashMap<String, (Evict, Instant)>,
    /// Rooms a backend used lately (see [`ROOM_LINGER`]), and when.
    watched: HashMap<String, Instant>,
    /// Backends' questions to the other replicas, waiting for answers.
    queries: HashMap<u64, backend::Query>,
    next_query: u64,
}

impl Registry {
    pub fn new(
        store: Arc<dyn Store>,
        cluster: ClusterHandle,
        arbiters: Vec<ArbiterHandle>,
        policies: Policies,
        backlog: Backlog,
    ) -> Self {
        assert!(!arbiters.is_empty(), "rooms need at least one arbiter");
        Self {
            store,
            cluster,
            backlog,
            arbiters,
            next_arbiter: 0,
            rooms: HashMap::new(),
            sessions: HashMap::new(),
            users: HashMap::new(),
            direct_rooms: HashMap::new(),
            retiring: Vec::new(),
            draining: None,
            policies,
            admin_sessions: HashSet::new(),
            refused: HashMap::new(),
            watched: HashMap::new(),
            queries: HashMap::new(),
            next_query: 0,
        }
    }

    /// Tells the events hook and every admin connection in the cluster.
    fn connection_event(&self, user: &str, connected: bool) {
        self.policies
            .hooks
            .event(ConnectionEvent::new(connected, user, &self.policies.node));
        self.push_to_admins(user, &self.policies.node, connected);
        // ADMIN_USERS is cluster-wide configuration: without admins nobody
        // listens, so connection storms cost no publishes.
        if self.policies.admins.is_empty() {
            return;
        }
        self.cluster.publish(
            vec![ADMIN_CHANNEL.to_owned()],
            ClusterEvent::UserActivity {
                user: user.to_owned(),
                connected,
            },
        );
    }

    fn push_to_admins(&self, user: &str, node: &str, connected: bool) {
        if self.admin_sessions.is_empty() {
            return;
        }
        let frame = if connected {
            ServerFrame::UserConnected { user, node }
        } else {
            ServerFrame::UserDisconnected { user, node }
        }
        .encode();
        for session in &self.admin_sessions {
            if let Some(entry) = self.sessions.get(session) {
                entry.socket.do_send(Deliver(frame.clone()));
            }
        }
    }

    /// Closes `user`'s local connections opened before `before` (all, if
    /// `None`).
    fn evict_user(&self, user: &str, reason: Evict, before: Option<Millis>) {
        self.evict_where(user, reason, |entry| {
            before.is_none_or(|at| entry.connected_at < at)
        });
    }

    /// Closes this replica's connections opened with `login` of `user`.
    fn end_login(&self, user: &str, login: &str) {
        self.evict_where(user, Evict::LoggedOut, |entry| {
            entry.login.as_deref() == Some(login)
        });
    }

    fn evict_where(&self, user: &str, reason: Evict, chosen: impl Fn(&SessionEntry) -> bool) {
        for session in self.users.get(user).into_iter().flatten() {
            if let Some(entry) = self.sessions.get(session).filter(|entry| chosen(entry)) {
                entry.evict.do_send(reason);
            }
        }
    }

    /// Asks the validity hook about this replica's users and closes the
    /// connections of those it reports invalid.
    fn check_validity(&mut self, ctx: &mut Context<Self>) {
        let users: Vec<String> = self.users.keys().cloned().collect();
        if users.is_empty() {
            return;
        }
        let (hooks, node) = (self.policies.hooks.clone(), self.policies.node.clone());
        let ask = async move { hooks.invalid_users(&node, users).await };
        ctx.spawn(ask.into_actor(self).map(|result, this, _ctx| match result {
            Ok(invalid) => {
                let every = this.policies.hooks.validity_interval().unwrap_or_default();
                for user in invalid {
                    tracing::info!(%user, "validity webhook revoked a user; disconnecting");
                    this.refuse(user, Evict::Revoked, every);
                }
            }
            Err(err) => {
                // Fail open: see the hooks module.
                tracing::warn!(error = %err, "validity webhook failed; nobody disconnected");
            }
        }));
    }

    /// Closes `user`'s connections here and refuses new ones for `period`.
    fn refuse(&mut self, user: String, reason: Evict, period: Duration) {
        self.evict_user(&user, reason, None);
        let now = Instant::now();
        self.refused.retain(|_, (_, until)| *until > now);
        if period.is_zero() {
            return;
        }
        // The longer refusal holds: a validity check's minute does not end
        // a backend's day.
        let until = now + period;
        if self
            .refused
            .get(&user)
            .is_none_or(|(_, held)| until >= *held)
        {
            self.refused.insert(user, (reason, until));
        }
    }

    /// The running room, started if needed. A new direct room gets every
    /// connection of both participants as a silent member.
    fn ensure_room(&mut self, name: &str) -> Addr<Room> {
        if let Some(entry) = self.rooms.get(name) {
            return entry.addr.clone();
        }
        let arbiter = &self.arbiters[self.next_arbiter % self.arbiters.len()];
        self.next_arbiter = self.next_arbiter.wrapping_add(1);
        let (store, cluster, backlog, room_name) = (
            self.store.clone(),
            self.cluster.clone(),
            self.backlog.clone(),
            name.to_owned(),
        );
        let addr = Room::start_in_arbiter(arbiter, move |_| {
            Room::new(room_name, store, cluster, backlog)
        });
        self.rooms.insert(
            name.to_owned(),
            RoomEntry {
                addr: addr.clone(),
                members: HashSet::new(),
            },
        );
        if let Some((first, second)) = direct_participants(name) {
            for user in [first, second] {
                self.direct_rooms
                    .entry(user.to_owned())
                    .or_default()
                    .insert(name.to_owned());
                let sessions: Vec<SessionId> = self
                    .users
                    .get(user)
                    .into_iter()
                    .flatten()
                    .copied()
                    .collect();
                for session in sessions {
                    self.add_member(name, session, false, None);
                }
            }
        }
        addr
    }

    fn add_member(&mut self, room: &str, session: SessionId, announce: bool, since: Option<u64>) {
        let (Some(entry), Some(member)) =
            (self.rooms.get_mut(room), self.sessions.get_mut(&session))
        else {
            return;
        };
        let newly = entry.members.insert(session);
        member.rooms.insert(room.to_owned());
        if newly || announce {
            entry.addr.do_send(room::Join {
                session,
                user: member.user.clone(),
                socket: member.socket.clone(),
                announce,
                since,
                held: !member.ready,
            });
        }
    }

    fn remove_member(&mut self, room: &str, session: SessionId) {
        let Some(entry) = self.rooms.get_mut(room) else {
            return;
        };
        if !entry.members.remove(&session) {
            return;
        }
        entry.addr.do_send(room::Leave { session });
        if entry.members.is_empty() && !self.watched.contains_key(room) {
            self.retire(room);
        }
    }

    /// Stops a room nobody here is in; it stores what it holds first.
    fn retire(&mut self, room: &str) {
        if let Some(entry) = self.rooms.remove(room) {
            entry.addr.do_send(room::Shutdown);
            self.retiring.retain(Addr::connected);
            self.retiring.push(entry.addr);
            if let Some((first, second)) = direct_participants(room) {
                for user in [first, second] {
                    if let Some(rooms) = self.direct_rooms.get_mut(user) {
                        rooms.remove(room);
                        if rooms.is_empty() {
                            self.direct_rooms.remove(user);
                        }
                    }
                }
            }
        }
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.cluster
            .attach(ctx.address().recipient(), ctx.address().recipient());
        if self.cluster.is_clustered() {
            self.cluster
                .subscribe(node_channel(&self.policies.node), None);
            self.cluster.subscribe(REPLICAS_CHANNEL.to_owned(), None);
        }
        ctx.run_interval(backend::SWEEP, |this, _ctx| this.sweep_watched());
        if let Some(every) = self.policies.hooks.validity_interval() {
            ctx.run_interval(every, |this, ctx| this.check_validity(ctx));
        }
    }
}

impl Handler<Connect> for Registry {
    type Result = ();

    fn handle(&mut self, connect: Connect, _ctx: &mut Self::Context) {
        if let Some(close_after) = self.draining {
            // Upgraded just before the drain began.
            connect.drain.do_send(Drain { close_after });
        }
        if let Some((reason, until)) = self.refused.get(&connect.user) {
            if *until > Instant::now() {
                connect.evict.do_send(*reason);
            }
        }
        let connected_at = now_millis();
        if self.policies.single_session {
            self.evict_user(&connect.user, Evict::Replaced, None);
            self.cluster.publish(
                vec![user_channel(&connect.user)],
                ClusterEvent::SessionOpened {
                    user: connect.user.clone(),
                    at: connected_at,
                },
            );
        }
        if connect.admin {
            if self.admin_sessions.is_empty() {
                self.cluster.subscribe(ADMIN_CHANNEL.to_owned(), None);
            }
            self.admin_sessions.insert(connect.session);
        }
        let sessions = self.users.entry(connect.user.clone()).or_default();
        if sessions.is_empty() {
            // Direct messages for this user may now come from any replica.
            self.cluster.subscribe(user_channel(&connect.user), None);
        }
        sessions.insert(connect.session);
        let conversations: Vec<String> = self
            .direct_rooms
            .get(&connect.user)
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        self.sessions.insert(
            connect.session,
            SessionEntry {
                user: connect.user,
                login: connect.login,
                socket: connect.socket,
                avatar: connect.avatar,
                drain: connect.drain,
                evict: connect.evict,
                connected_at,
                rooms: HashSet::new(),
                ready: false,
            },
        );
        for room in conversations {
            self.add_member(&room, connect.session, false, None);
        }
        let user = self.sessions[&connect.session].user.clone();
        self.connection_event(&user, true);
    }
}

impl Handler<Ready> for Registry {
    type Result = ();

    fn handle(&mut self, ready: Ready, _ctx: &mut Self::Context) {
        let Some(entry) = self.sessions.get_mut(&ready.session) else {
            return;
        };
        if std::mem::replace(&mut entry.ready, true) {
            return;
        }
        for room in entry
            .rooms
            .iter()
            .filter(|room| direct_participants(room).is_some())
        {
            if let Some(running) = self.rooms.get(room) {
                running.addr.do_send(room::Activate {
                    session: ready.session,
                });
            }
        }
    }
}

impl Handler<Disconnect> for Registry {
    type Result = ();

    fn handle(&mut self, disconnect: Disconnect, _ctx: &mut Self::Context) {
        let Some(entry) = self.sessions.remove(&disconnect.session) else {
            return;
        };
        if self.admin_sessions.remove(&disconnect.session) && self.admin_sessions.is_empty() {
            self.cluster.unsubscribe(ADMIN_CHANNEL.to_owned());
        }
        self.connection_event(&entry.user, false);
        if let Some(sessions) = self.users.get_mut(&entry.user) {
            sessions.remove(&disconnect.session);
            if sessions.is_empty() {
                self.users.remove(&entry.user);
                self.cluster.unsubscribe(user_channel(&entry.user));
            }
        }
        for room in &entry.rooms {
            self.remove_member(room, disconnect.session);
        }
    }
}

/// A login logged out: its connections here and on every replica close.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EndLogin {
    pub user: String,
    pub login: String,
}

impl Handler<EndLogin> for Registry {
    type Result = ();

    fn handle(&mut self, end: EndLogin, _ctx: &mut Self::Context) {
        self.end_login(&end.user, &end.login);
        // Every replica with a connection of the user holds its channel.
        self.cluster.publish(
            vec![user_channel(&end.user)],
            ClusterEvent::LoginEnded {
                user: end.user,
                login: end.login,
            },
        );
    }
}

impl Handler<JoinRoom> for Registry {
    type Result = Option<Addr<Room>>;

    fn handle(&mut self, join: JoinRoom, _ctx: &mut Self::Context) -> Self::Result {
        if !self.sessions.contains_key(&join.session) {
            return None;
        }
        let addr = self.ensure_room(&join.room);
        self.add_member(&join.room, join.session, true, join.since);
        Some(addr)
    }
}

impl Handler<LeaveRoom> for Registry {
    type Result = ();

    fn handle(&mut self, leave: LeaveRoom, _ctx: &mut Self::Context) {
        if direct_participants(&leave.room).is_some() {
            return;
        }
        if let Some(entry) = self.sessions.get_mut(&leave.session) {
            entry.rooms.remove(&leave.room);
        }
        self.remove_member(&leave.room, leave.session);
    }
}

impl Handler<OpenDirect> for Registry {
    type Result = MessageResult<OpenDirect>;

    fn handle(&mut self, open: OpenDirect, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.ensure_room(&direct_room(&open.user, &open.peer)))
    }
}

impl Handler<AvatarChanged> for Registry {
    type Result = ();

    fn handle(&mut self, change: AvatarChanged, _ctx: &mut Self::Context) {
        for session in self.users.get(&change.user).into_iter().flatten() {
            if let Some(entry) = self.sessions.get(session) {
                entry.avatar.do_send(SetAvatar(change.avatar.clone()));
            }
        }
    }
}

impl Handler<Remote> for Registry {
    type Result = ();

    fn handle(&mut self, remote: Remote, _ctx: &mut Self::Context) {
        match &remote.event {
            ClusterEvent::SessionOpened { user, at } => {
                if self.policies.single_session {
                    self.evict_user(user, Evict::Replaced, Some(*at));
                }
                return;
            }
            ClusterEvent::LoginEnded { user, login } => return self.end_login(user, login),
            ClusterEvent::UserActivity { user, connected } => {
                return self.push_to_admins(user, &remote.node, *connected);
            }
            ClusterEvent::ConnectionsAsked { user, query } => {
                return self.answer_connections(user, *query, &remote.node);
            }
            ClusterEvent::Connections { query, connections } => {
                return self.collect_connections(*query, connections);
            }
            ClusterEvent::UserDisconnected {
                user,
                reason,
                until,
            } => {
                let period =
                    Duration::from_millis(until.saturating_sub(now_millis()).max(0) as u64);
                return self.refuse(user.clone(), *reason, period);
            }
            _ => {}
        }
        let Some(room) = remote.event.room().map(str::to_owned) else {
            return;
        };
        let addr = match self.rooms.get(&room) {
            Some(entry) => entry.addr.clone(),
            None => {
                // A direct conversation reaching a local user starts its room
                // here; presence alone does not.
                let local_participant = direct_participants(&room)
                    .is_some_and(|(a, b)| self.users.contains_key(a) || self.users.contains_key(b));
                if !local_participant || matches!(remote.event, ClusterEvent::Presence { .. }) {
                    return;
                }
                self.ensure_room(&room)
            }
        };
        addr.do_send(room::FromCluster {
            node: remote.node,
            event: remote.event,
        });
    }
}

impl Handler<ConfirmDeliveries> for Registry {
    type Result = ();

    fn handle(
        &mut self,
        ConfirmDeliveries(deliveries): ConfirmDeliveries,
        _ctx: &mut Self::Context,
    ) {
        let mut by_room: HashMap<String, Vec<Delivery>> = HashMap::new();
        for delivery in deliveries {
            by_room
                .entry(delivery.room.clone())
                .or_default()
                .push(delivery);
        }
        for (room, deliveries) in by_room {
            // The recipient is connected here, so its direct room may run here.
            self.ensure_room(&room).do_send(room::Confirmed(deliveries));
        }
    }
}

impl Handler<Resync> for Registry {
    type Result = ();

    fn handle(&mut self, resync: Resync, _ctx: &mut Self::Context) {
        for entry in self.rooms.values() {
            entry.addr.do_send(resync.clone());
        }
    }
}

impl Handler<DrainAll> for Registry {
    type Result = ();

    fn handle(&mut self, drain: DrainAll, _ctx: &mut Self::Context) {
        self.draining = Some(drain.close_after);
        // Rooms kept for backends go now: the drain waits for every room.
        let watched: Vec<String> = self.watched.keys().cloned().collect();
        for room in watched {
            self.unwatch(&room);
        }
        for entry in self.sessions.values() {
            entry.drain.do_send(Drain {
                close_after: drain.close_after,
            });
        }
    }
}

impl Handler<DrainStatus> for Registry {
    type Result = DrainProgress;

    fn handle(&mut self, _: DrainStatus, _ctx: &mut Self::Context) -> DrainProgress {
        self.retiring.retain(Addr::connected);
        DrainProgress {
            connections: self.sessions.len(),
            rooms: self.rooms.len() + self.retiring.len(),
        }
    }
}
