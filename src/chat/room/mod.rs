//! One chat room on this replica: its local members, its write queue and
//! its fan-out. The logic lives in plain parts with their own unit tests:
//! [`sequencer`] (order, exactly once, gap fills) and [`presence`] (who is
//! online, coalesced and expired). The actor's handlers are split by
//! concern: `writes` (the write queue and acks), `delivery` (fan-out in
//! `seq` order, gap reads, receipts), `join` (the join handshake), and
//! `member` (one connection and what is held for it); this file holds the
//! state, the cluster glue and presence announcements.
//!
//! Posts are persisted in batches with at most one batch in flight per
//! room; the store's writer commits the batches of every room together.
//! The store hands out `seq`s, so replicas writing the same room never
//! clash. Every post waits in the replica-wide [`Backlog`]; past its bound
//! a reliable post is refused with `overloaded` instead of queueing.
//!
//! Members receive a room's messages in `seq` order, each exactly once,
//! whichever replica stored them: every message, local or from the cluster,
//! goes through the sequencer, which holds back any that arrive ahead of a
//! missing `seq`. If the missing ones do not follow within [`GAP_WAIT`]
//! (their replica died, or the broker was down), the room reads them all
//! from the store in one go, where they have been since before anyone could
//! see their `seq`.

mod delivery;
mod join;
mod member;
mod messages;
pub mod presence;
mod queue;
pub mod sequencer;
mod writes;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use delivery::Gap;
pub use delivery::GAP_WAIT;
pub use join::{MAX_READ_POSITIONS, MAX_REPLAY};
use member::Member;
pub use messages::{
    Activate, Confirmed, FromCluster, Join, Leave, Online, Outcome, Post, Read, Reply, Shutdown,
    Typing,
};
use presence::Presence;
use queue::WriteQueue;
use sequencer::Sequencer;

use super::{Outgoing, SessionId};
use crate::chat::names::RoomKind;
use crate::cluster::{room_channel, user_channel, ClusterHandle, Resync, RoomEvent, Subscribed};
use crate::event::Entry;
use crate::metrics;
use crate::protocol::ServerFrame;
use crate::store::backlog::Backlog;
use crate::store::Store;

/// How often a room repeats its local presence to the other replicas.
pub const PRESENCE_HEARTBEAT: Duration = Duration::from_secs(5);
/// Presence changes within this window go out as one `presence` frame.
pub const PRESENCE_COALESCE: Duration = Duration::from_millis(50);

pub struct Room {
    name: String,
    store: Arc<dyn Store>,
    cluster: ClusterHandle,
    backlog: Backlog,
    members: HashMap<SessionId, Member>,
    /// The two users of a direct room.
    participants: Option<(String, String)>,
    presence: Presence,
    /// An announcement of presence changes is scheduled.
    presence_due: bool,
    sequencer: Sequencer<Entry>,
    gap: Gap,
    writes: WriteQueue,
    /// Retired by the registry: stop once the write queue is empty.
    retiring: bool,
}

impl Room {
    pub fn new(
        name: String,
        store: Arc<dyn Store>,
        cluster: ClusterHandle,
        backlog: Backlog,
    ) -> Self {
        let participants = RoomKind::direct(&name).map(|(a, b)| (a.to_owned(), b.to_owned()));
        Self {
            participants,
            name,
            store,
            cluster,
            backlog,
            members: HashMap::new(),
            presence: Presence::default(),
            presence_due: false,
            sequencer: Sequencer::default(),
            gap: Gap::Idle,
            writes: WriteQueue::default(),
            retiring: false,
        }
    }

    /// Where this room's cluster traffic goes: its own channel, or for a
    /// direct room the channels of its two users.
    fn channels(&self) -> Vec<String> {
        match &self.participants {
            Some((first, second)) if first == second => vec![user_channel(first)],
            Some((first, second)) => vec![user_channel(first), user_channel(second)],
            None => vec![room_channel(&self.name)],
        }
    }

    /// Tells the other replicas; a replica alone does not even build the
    /// event (a batch of messages is a copy of each).
    fn publish(&self, event: impl FnOnce() -> RoomEvent) {
        if self.cluster.is_clustered() {
            self.cluster.publish(self.channels(), event());
        }
    }

    fn broadcast(&self, frame: &bytestring::ByteString, skip_user: Option<&str>) {
        for member in self.members.values() {
            if Some(member.user.as_str()) != skip_user {
                member.socket.do_send(Outgoing(frame.clone()));
            }
        }
    }

    fn publish_presence(&self, reply: bool) {
        self.publish(|| RoomEvent::Presence {
            room: self.name.clone(),
            users: self.presence.local().to_vec(),
            reply,
        });
    }

    /// Recomputes the local part of presence after a membership change.
    fn members_changed(&mut self, ctx: &mut Context<Self>) {
        self.presence
            .set_local(self.members.values().map(|m| m.user.as_str()));
        self.schedule_presence(ctx);
    }

    /// Announces presence changes at most once per [`PRESENCE_COALESCE`]: a
    /// thousand joins then cost a few presence frames per member instead
    /// of a thousand each.
    fn schedule_presence(&mut self, ctx: &mut Context<Self>) {
        if self.presence.changed() && !self.presence_due {
            self.presence_due = true;
            ctx.run_later(PRESENCE_COALESCE, |this, _ctx| this.announce_presence());
        }
    }

    fn announce_presence(&mut self) {
        self.presence_due = false;
        let changes = self.presence.take_changes();
        if changes.local {
            self.publish_presence(false);
        }
        if changes.online {
            let frame = ServerFrame::Presence {
                room: &self.name,
                online: self.presence.online(),
            }
            .encode();
            self.broadcast(&frame, None);
        }
    }
}

impl Actor for Room {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if !self.cluster.is_clustered() {
            return;
        }
        // Direct rooms ride on their users' channels, which the registry holds.
        if self.participants.is_none() {
            self.cluster
                .subscribe(room_channel(&self.name), Some(ctx.address().recipient()));
        }
        self.publish_presence(true);
        ctx.run_interval(PRESENCE_HEARTBEAT, |this, ctx| {
            if !this.presence.local().is_empty() {
                this.publish_presence(false);
            }
            let expired = this.presence.expire(Instant::now());
            metrics::get().presence_expired.inc_by(expired as u64);
            this.schedule_presence(ctx);
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        if !self.cluster.is_clustered() {
            return;
        }
        self.presence.set_local(std::iter::empty());
        self.publish_presence(false);
        if self.participants.is_none() {
            self.cluster.unsubscribe(room_channel(&self.name));
        }
    }
}

impl Handler<Activate> for Room {
    type Result = ();

    fn handle(&mut self, activate: Activate, ctx: &mut Self::Context) {
        let Some(member) = self.members.get_mut(&activate.session) else {
            return;
        };
        let seqs = member.release();
        if !seqs.is_empty() {
            let user = member.user.clone();
            self.mark_delivered(user, seqs, ctx);
        }
    }
}

impl Handler<Leave> for Room {
    type Result = ();

    fn handle(&mut self, leave: Leave, ctx: &mut Self::Context) {
        if self.members.remove(&leave.session).is_some() {
            self.members_changed(ctx);
        }
    }
}

/// Who is online in the room, on every replica (for `/api/v1`).
impl Handler<Online> for Room {
    type Result = MessageResult<Online>;

    fn handle(&mut self, _: Online, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.presence.online().to_vec())
    }
}

impl Handler<Typing> for Room {
    type Result = ();

    fn handle(&mut self, typing: Typing, _ctx: &mut Self::Context) {
        if !self.members.contains_key(&typing.session) {
            return;
        }
        let frame = ServerFrame::Typing {
            room: &self.name,
            user: &typing.user,
            active: typing.active,
        }
        .encode();
        self.broadcast(&frame, Some(&typing.user));
        self.publish(|| RoomEvent::Typing {
            room: self.name.clone(),
            user: typing.user,
            active: typing.active,
        });
    }
}

impl Handler<FromCluster> for Room {
    type Result = ();

    fn handle(&mut self, remote: FromCluster, ctx: &mut Self::Context) {
        match remote.event {
            RoomEvent::Messages { messages, .. } => self.accept(messages, ctx),
            RoomEvent::Fast { message, .. } => self.deliver_fast(&message),
            RoomEvent::Read { user, seq, .. } => self.broadcast_read(&user, seq),
            RoomEvent::Delivered { deliveries, .. } => self.confirm(deliveries, false),
            RoomEvent::Typing { user, active, .. } => {
                let frame = ServerFrame::Typing {
                    room: &self.name,
                    user: &user,
                    active,
                }
                .encode();
                self.broadcast(&frame, Some(&user));
            }
            RoomEvent::Presence { users, reply, .. } => {
                self.presence.set_remote(remote.node, users, Instant::now());
                self.schedule_presence(ctx);
                if reply && !self.presence.local().is_empty() {
                    self.publish_presence(false);
                }
            }
        }
    }
}

impl Handler<Subscribed> for Room {
    type Result = ();

    fn handle(&mut self, _: Subscribed, ctx: &mut Self::Context) {
        self.catch_up(ctx);
    }
}

impl Handler<Resync> for Room {
    type Result = ();

    fn handle(&mut self, _: Resync, ctx: &mut Self::Context) {
        self.publish_presence(true);
        self.catch_up(ctx);
    }
}

impl Handler<Shutdown> for Room {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        if !self.writes.is_empty() {
            self.retiring = true;
        } else {
            ctx.stop();
        }
    }
}
