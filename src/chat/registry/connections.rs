//! Connections coming and going: the registry's view of sessions, the
//! events hook and admins' activity feed, single session, and refusals
//! (the validity hook's verdicts, a backend's disconnects).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::{Connect, Disconnect, EndLogin, Ready, Registry, SessionEntry};
use crate::chat::names::RoomKind;
use crate::chat::{room, Drain, Evict, Outgoing};
use crate::cluster::{user_channel, Control, ADMIN_CHANNEL};
use crate::hooks::ConnectionEvent;
use crate::protocol::ServerFrame;
use crate::store::{now_millis, Millis};

impl Registry {
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
            Control::UserActivity {
                user: user.to_owned(),
                connected,
            },
        );
    }

    pub(super) fn push_to_admins(&self, user: &str, node: &str, connected: bool) {
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
                entry.socket.do_send(Outgoing(frame.clone()));
            }
        }
    }

    /// Closes `user`'s local connections opened before `before` (all, if
    /// `None`).
    pub(super) fn evict_user(&self, user: &str, reason: Evict, before: Option<Millis>) {
        self.evict_where(user, reason, |entry| {
            before.is_none_or(|at| entry.connected_at < at)
        });
    }

    /// Closes this replica's connections opened with `login` of `user`.
    pub(super) fn end_login(&self, user: &str, login: &str) {
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
    pub(super) fn check_validity(&mut self, ctx: &mut Context<Self>) {
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
    pub(super) fn refuse(&mut self, user: String, reason: Evict, period: Duration) {
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
                Control::SessionOpened {
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
            .filter(|room| RoomKind::direct(room).is_some())
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

impl Handler<EndLogin> for Registry {
    type Result = ();

    fn handle(&mut self, end: EndLogin, _ctx: &mut Self::Context) {
        self.end_login(&end.user, &end.login);
        // Every replica with a connection of the user holds its channel.
        self.cluster.publish(
            vec![user_channel(&end.user)],
            Control::LoginEnded {
                user: end.user,
                login: end.login,
            },
        );
    }
}
