//! One chat room on this replica: its local members, its write queue and
//! its fan-out.
//!
//! Posts are persisted in batches with at most one batch in flight. That
//! keeps delivery in `seq` order without blocking the mailbox, and turns a
//! burst of messages into one store transaction instead of one each.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;

use super::{Deliver, SessionId};
use crate::cluster::{ClusterAdapter, ClusterEvent};
use crate::store::{now_millis, NewMessage, Store, StoredMessage};
use crate::ws::protocol::{
    ErrorCode, Ref, Rejected, ServerFrame, WireMessage, DEFAULT_HISTORY_LIMIT,
};

/// Most posts persisted in one store call.
const MAX_BATCH: usize = 256;

/// A connection becomes a member of the room. With `announce` it receives
/// `joined` (recent history and who is online); without, it only starts
/// receiving new messages, as a user's tabs do for their direct rooms.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Join {
    pub session: SessionId,
    pub user: String,
    pub socket: Recipient<Deliver>,
    pub announce: bool,
}

/// A connection stops being a member.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub session: SessionId,
}

/// A member posts a message; its author gets `ack` once it is stored.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Post {
    pub session: SessionId,
    pub user: String,
    pub avatar: Option<String>,
    pub text: String,
    pub reference: Option<Ref>,
    /// Where the `ack` or `error` goes.
    pub reply: Recipient<Deliver>,
}

/// A member started or stopped typing.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Typing {
    pub session: SessionId,
    pub user: String,
    pub active: bool,
}

/// The registry retired the room: stop once queued posts are stored.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

struct Member {
    user: String,
    socket: Recipient<Deliver>,
    /// Messages up to here were in this member's `joined` history; a batch
    /// that was in flight during the join must not deliver them again.
    seen_up_to: u64,
}

/// What a stored post still needs after the store gave it a `seq`.
struct Receipt {
    avatar: Option<String>,
    reference: Option<Ref>,
    reply: Recipient<Deliver>,
}

pub struct Room {
    name: String,
    store: Arc<dyn Store>,
    cluster: Arc<dyn ClusterAdapter>,
    members: HashMap<SessionId, Member>,
    /// Distinct users among `members`, sorted; what `presence` reports.
    online: Vec<String>,
    pending: Vec<Post>,
    flushing: bool,
    retiring: bool,
}

impl Room {
    pub fn new(name: String, store: Arc<dyn Store>, cluster: Arc<dyn ClusterAdapter>) -> Self {
        Self {
            name,
            store,
            cluster,
            members: HashMap::new(),
            online: Vec::new(),
            pending: Vec::new(),
            flushing: false,
            retiring: false,
        }
    }

    fn broadcast(&self, frame: &bytestring::ByteString, skip_user: Option<&str>) {
        for member in self.members.values() {
            if Some(member.user.as_str()) != skip_user {
                member.socket.do_send(Deliver(frame.clone()));
            }
        }
    }

    /// Recomputes who is online and tells members (and other replicas) when it changed.
    fn refresh_presence(&mut self) {
        let mut online: Vec<String> = self.members.values().map(|m| m.user.clone()).collect();
        online.sort_unstable();
        online.dedup();
        if online == self.online {
            return;
        }
        self.online = online;
        let frame = ServerFrame::Presence {
            room: &self.name,
            online: &self.online,
        }
        .encode();
        self.broadcast(&frame, None);
        self.cluster.publish(ClusterEvent::Presence {
            room: self.name.clone(),
            online: self.online.clone(),
        });
    }

    fn deliver(&self, message: &StoredMessage) {
        let frame = ServerFrame::Message(WireMessage::from(message)).encode();
        for member in self.members.values() {
            if message.seq > member.seen_up_to {
                member.socket.do_send(Deliver(frame.clone()));
            }
        }
    }

    /// Stores the next batch of posts unless one is already being stored.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing || self.pending.is_empty() {
            return;
        }
        self.flushing = true;
        let take = self.pending.len().min(MAX_BATCH);
        let (batch, receipts): (Vec<NewMessage>, Vec<Receipt>) = self
            .pending
            .drain(..take)
            .map(|post| {
                (
                    NewMessage {
                        from: post.user,
                        text: post.text,
                    },
                    Receipt {
                        avatar: post.avatar,
                        reference: post.reference,
                        reply: post.reply,
                    },
                )
            })
            .unzip();
        let store = self.store.clone();
        let room = self.name.clone();
        let append = async move { store.append(&room, batch, now_millis()).await };
        ctx.spawn(append.into_actor(self).map(move |result, this, ctx| {
            this.flushing = false;
            match result {
                Ok(stored) => this.publish(stored, receipts),
                Err(err) => {
                    tracing::warn!(room = %this.name, error = %err, lost = receipts.len(), "could not store messages");
                    for receipt in receipts {
                        let frame = Rejected::new(
                            ErrorCode::StoreUnavailable,
                            "the message could not be stored; it was not delivered, send it again",
                            receipt.reference,
                        )
                        .encode();
                        receipt.reply.do_send(Deliver(frame));
                    }
                }
            }
            if this.retiring && this.pending.is_empty() {
                ctx.stop();
            } else {
                this.flush(ctx);
            }
        }));
    }

    fn publish(&mut self, stored: Vec<StoredMessage>, receipts: Vec<Receipt>) {
        for (mut message, receipt) in stored.into_iter().zip(receipts) {
            message.avatar = receipt.avatar;
            let ack = ServerFrame::Ack {
                reference: receipt.reference.as_ref(),
                room: &self.name,
                seq: message.seq,
            }
            .encode();
            receipt.reply.do_send(Deliver(ack));
            self.deliver(&message);
            self.cluster.publish(ClusterEvent::Message(message));
        }
    }
}

impl Actor for Room {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        self.cluster.room_opened(&self.name);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.cluster.room_closed(&self.name);
    }
}

impl Handler<Join> for Room {
    type Result = ();

    fn handle(&mut self, join: Join, ctx: &mut Self::Context) {
        if !join.announce {
            self.members.entry(join.session).or_insert(Member {
                user: join.user,
                socket: join.socket,
                seen_up_to: 0,
            });
            self.refresh_presence();
            return;
        }
        // Waiting (rather than spawning) holds back other mailbox messages
        // and batch completions, so no message lands between the history
        // read and the membership.
        let store = self.store.clone();
        let room = self.name.clone();
        let read = async move { store.history(&room, None, DEFAULT_HISTORY_LIMIT).await };
        ctx.wait(read.into_actor(self).map(move |history, this, _ctx| {
            let history = history.unwrap_or_else(|err| {
                tracing::warn!(room = %this.name, error = %err, "could not load history for a join");
                let frame = Rejected::new(
                    ErrorCode::StoreUnavailable,
                    "history is unavailable right now; new messages will still arrive",
                    None,
                )
                .encode();
                join.socket.do_send(Deliver(frame));
                Vec::new()
            });
            let seen_up_to = history.last().map_or(0, |m| m.seq);
            let member = this.members.entry(join.session).or_insert(Member {
                user: join.user,
                socket: join.socket,
                seen_up_to,
            });
            member.seen_up_to = member.seen_up_to.max(seen_up_to);
            let socket = member.socket.clone();
            this.refresh_presence();
            let joined = ServerFrame::Joined {
                room: &this.name,
                history: history.iter().map(WireMessage::from).collect(),
                online: &this.online,
            }
            .encode();
            socket.do_send(Deliver(joined));
        }));
    }
}

impl Handler<Leave> for Room {
    type Result = ();

    fn handle(&mut self, leave: Leave, _ctx: &mut Self::Context) {
        if self.members.remove(&leave.session).is_some() {
            self.refresh_presence();
        }
    }
}

impl Handler<Post> for Room {
    type Result = ();

    fn handle(&mut self, post: Post, ctx: &mut Self::Context) {
        if !self.members.contains_key(&post.session) {
            let frame = Rejected::new(
                ErrorCode::NotJoined,
                format!("join {} before posting to it", self.name),
                post.reference,
            )
            .encode();
            post.reply.do_send(Deliver(frame));
            return;
        }
        self.pending.push(post);
        self.flush(ctx);
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
        self.cluster.publish(ClusterEvent::Typing {
            room: self.name.clone(),
            user: typing.user,
            active: typing.active,
        });
    }
}

impl Handler<Shutdown> for Room {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        if self.flushing || !self.pending.is_empty() {
            self.retiring = true;
        } else {
            ctx.stop();
        }
    }
}
