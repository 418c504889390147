//! Rooms on this replica: started on the first join (spread over the
//! HTTP workers' threads), given their members, retired once empty.

use std::collections::HashSet;

use actix::prelude::*;

use super::{AvatarChanged, JoinRoom, LeaveRoom, OpenDirect, Registry, RoomEntry};
use crate::chat::names::{direct_room, RoomKind};
use crate::chat::room::Room;
use crate::chat::{room, SessionId, SetAvatar};

impl Registry {
    /// The running room, started if needed. A new direct room gets every
    /// connection of both participants as a silent member.
    pub(super) fn ensure_room(&mut self, name: &str) -> Addr<Room> {
        if let Some(entry) = self.rooms.get(name) {
            return entry.addr.clone();
        }
        let arbiter = self.threads.pick(self.rooms_started);
        self.rooms_started = self.rooms_started.wrapping_add(1);
        let (store, cluster, backlog, room_name) = (
            self.store.clone(),
            self.cluster.clone(),
            self.backlog.clone(),
            name.to_owned(),
        );
        let addr = Room::start_in_arbiter(&arbiter, move |_| {
            Room::new(room_name, store, cluster, backlog)
        });
        self.rooms.insert(
            name.to_owned(),
            RoomEntry {
                addr: addr.clone(),
                members: HashSet::new(),
            },
        );
        if let Some((first, second)) = RoomKind::direct(name) {
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

    pub(super) fn add_member(
        &mut self,
        room: &str,
        session: SessionId,
        announce: bool,
        since: Option<u64>,
    ) {
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

    pub(super) fn remove_member(&mut self, room: &str, session: SessionId) {
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
    pub(super) fn retire(&mut self, room: &str) {
        if let Some(entry) = self.rooms.remove(room) {
            entry.addr.do_send(room::Shutdown);
            self.retiring.retain(Addr::connected);
            self.retiring.push(entry.addr);
            if let Some((first, second)) = RoomKind::direct(room) {
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
        if RoomKind::direct(&leave.room).is_some() {
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
