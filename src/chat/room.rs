//! One chat room on this replica: its local members, its write queue and
//! its fan-out.
//!
//! Posts are persisted in batches with at most one batch in flight. That
//! turns a burst of messages into one store call instead of one each, and
//! the store hands out `seq`s, so replicas writing the same room never clash.
//!
//! Members receive a room's messages in `seq` order, each exactly once,
//! whichever replica stored them: every message, local or from the cluster,
//! goes through [`Room::accept`], which holds back any that arrive ahead of
//! a missing `seq`. If the missing one does not follow within [`GAP_WAIT`]
//! (its replica died, or the broker was down), the room reads it from the
//! store, where it has been since before anyone could see its `seq`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::{Deliver, SessionId};
use crate::chat::names::direct_participants;
use crate::cluster::{room_channel, user_channel, ClusterEvent, ClusterHandle, Resync, Subscribed};
use crate::store::{new_message_id, now_millis, Delivery, NewMessage, Store, StoredMessage};
use crate::ws::protocol::{
    self, ErrorCode, ReadPosition, Ref, Rejected, ServerFrame, WireMessage, DEFAULT_HISTORY_LIMIT,
};

/// Most posts persisted in one store call.
const MAX_BATCH: usize = 256;
/// How long a message may wait for an earlier, missing one before the room
/// fetches the gap from the store.
pub const GAP_WAIT: Duration = Duration::from_millis(300);
/// Most messages read from the store to fill one gap or catch up.
const MAX_FETCH: u32 = 500;
/// Pause before retrying a failed gap fetch.
const FETCH_RETRY: Duration = Duration::from_secs(1);
/// How often a room repeats its local presence to the other replicas.
pub const PRESENCE_HEARTBEAT: Duration = Duration::from_secs(5);
/// A replica not heard from for this long no longer counts as having the
/// room's users online: the bound on how long a dead replica's users linger.
pub const PRESENCE_TTL: Duration = Duration::from_secs(15);
/// Presence changes within this window go out as one `presence` frame.
pub const PRESENCE_COALESCE: Duration = Duration::from_millis(50);
/// Messages a resuming client gets replayed at most, per room; older missed
/// ones it pages back to with `history`.
pub const MAX_REPLAY: u32 = 500;
/// Read positions sent with `joined`: the furthest readers.
pub const MAX_READ_POSITIONS: u32 = 100;

/// A connection becomes a member of the room. With `announce` it receives
/// `joined` (history and who is online); without, it only starts receiving
/// new messages, as a user's tabs do for their direct rooms.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Join {
    pub session: SessionId,
    pub user: String,
    pub socket: Recipient<Deliver>,
    pub announce: bool,
    /// Resuming: the last `seq` the client has; `joined` then carries the
    /// messages after it instead of the latest page.
    pub since: Option<u64>,
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
    pub delivery: protocol::Delivery,
    /// Tell the sender when a direct message reaches its recipient.
    pub confirm: bool,
    /// Where the `ack` or `error` goes.
    pub reply: Recipient<Deliver>,
}

/// A member read the room up to `seq`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Read {
    pub session: SessionId,
    pub user: String,
    pub seq: u64,
}

/// Direct messages of this room reached their recipient (who fetched them
/// while offline); tell the senders.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Confirmed(pub Vec<Delivery>);

/// A member started or stopped typing.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Typing {
    pub session: SessionId,
    pub user: String,
    pub active: bool,
}

/// Something another replica's copy of this room did.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FromCluster {
    pub node: String,
    pub event: ClusterEvent,
}

/// The registry retired the room: stop once queued posts are stored.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

struct Member {
    user: String,
    socket: Recipient<Deliver>,
    /// Messages up to here were in this member's `joined` history, so they
    /// are not delivered to it again.
    seen_up_to: u64,
}

/// Where a stored message's `ack` goes: the author's `ref` and connection.
type Receipt = (Option<Ref>, Recipient<Deliver>);

/// A post waiting for the store.
struct Queued {
    message: NewMessage,
    avatar: Option<String>,
    /// `None` for a `fast` message: delivered already, never acked.
    receipt: Option<Receipt>,
}

/// Who another replica reports online here, and when it last said so.
struct RemotePresence {
    users: Vec<String>,
    heard: Instant,
}

pub struct Room {
    name: String,
    store: Arc<dyn Store>,
    cluster: ClusterHandle,
    members: HashMap<SessionId, Member>,
    /// Distinct users among local `members`, sorted.
    local_online: Vec<String>,
    remote_online: HashMap<String, RemotePresence>,
    /// Local and remote users, sorted; what `presence` reports.
    online: Vec<String>,
    pending: Vec<Queued>,
    /// The two users of a direct room.
    participants: Option<(String, String)>,
    flushing: bool,
    retiring: bool,
    /// Every message up to this `seq` has been handed to the members;
    /// `None` until the room learns where the sequence stands.
    delivered: Option<u64>,
    /// Messages that arrived ahead of a missing `seq`.
    held: BTreeMap<u64, StoredMessage>,
    fetching: bool,
    /// Presence changes not yet announced, and whether an announcement is due.
    presence_changed: bool,
    local_presence_changed: bool,
    presence_scheduled: bool,
}

impl Room {
    pub fn new(name: String, store: Arc<dyn Store>, cluster: ClusterHandle) -> Self {
        let participants = direct_participants(&name).map(|(a, b)| (a.to_owned(), b.to_owned()));
        Self {
            participants,
            name,
            store,
            cluster,
            members: HashMap::new(),
            local_online: Vec::new(),
            remote_online: HashMap::new(),
            online: Vec::new(),
            pending: Vec::new(),
            flushing: false,
            retiring: false,
            delivered: None,
            held: BTreeMap::new(),
            fetching: false,
            presence_changed: false,
            local_presence_changed: false,
            presence_scheduled: false,
        }
    }

    /// Where this room's cluster traffic goes: its own channel, or for a
    /// direct room the channels of its two users.
    fn channels(&self) -> Vec<String> {
        match direct_participants(&self.name) {
            Some((first, second)) if first == second => vec![user_channel(first)],
            Some((first, second)) => vec![user_channel(first), user_channel(second)],
            None => vec![room_channel(&self.name)],
        }
    }

    fn broadcast(&self, frame: &bytestring::ByteString, skip_user: Option<&str>) {
        for member in self.members.values() {
            if Some(member.user.as_str()) != skip_user {
                member.socket.do_send(Deliver(frame.clone()));
            }
        }
    }

    fn publish_presence(&self, reply: bool) {
        self.cluster.publish(
            self.channels(),
            ClusterEvent::Presence {
                room: self.name.clone(),
                users: self.local_online.clone(),
                reply,
            },
        );
    }

    /// Recomputes who is online at once (a `joined` reply carries it), and
    /// tells members, and the other replicas when the local part changed,
    /// at most once per [`PRESENCE_COALESCE`]: a thousand joins then cost a
    /// few presence frames per member instead of a thousand each.
    fn refresh_presence(&mut self, ctx: &mut Context<Self>) {
        let mut local: Vec<String> = self.members.values().map(|m| m.user.clone()).collect();
        local.sort_unstable();
        local.dedup();
        if local != self.local_online {
            self.local_online = local;
            self.local_presence_changed = true;
            self.schedule_presence(ctx);
        }
        let mut online = self.local_online.clone();
        for remote in self.remote_online.values() {
            online.extend(remote.users.iter().cloned());
        }
        online.sort_unstable();
        online.dedup();
        if online == self.online {
            return;
        }
        self.online = online;
        self.presence_changed = true;
        self.schedule_presence(ctx);
    }

    fn schedule_presence(&mut self, ctx: &mut Context<Self>) {
        if !self.presence_scheduled {
            self.presence_scheduled = true;
            ctx.run_later(PRESENCE_COALESCE, |this, _ctx| this.announce_presence());
        }
    }

    fn announce_presence(&mut self) {
        self.presence_scheduled = false;
        if std::mem::take(&mut self.local_presence_changed) {
            self.publish_presence(false);
        }
        if std::mem::take(&mut self.presence_changed) {
            let frame = ServerFrame::Presence {
                room: &self.name,
                online: &self.online,
            }
            .encode();
            self.broadcast(&frame, None);
        }
    }

    /// Takes stored messages from anywhere (this replica, the cluster, the
    /// store) and delivers whatever is next in `seq` order.
    fn accept(&mut self, messages: Vec<StoredMessage>, ctx: &mut Context<Self>) {
        for message in messages {
            let delivered = *self.delivered.get_or_insert(message.seq.saturating_sub(1));
            if message.seq > delivered {
                self.held.insert(message.seq, message);
            }
        }
        self.release(ctx);
    }

    fn release(&mut self, ctx: &mut Context<Self>) {
        let Some(mut delivered) = self.delivered else {
            return;
        };
        let mut reached: HashMap<String, Vec<u64>> = HashMap::new();
        while let Some(message) = self.held.remove(&(delivered + 1)) {
            if let Some(recipient) = self.deliver(&message) {
                reached.entry(recipient).or_default().push(message.seq);
            }
            delivered += 1;
        }
        self.delivered = Some(delivered);
        for (recipient, seqs) in reached {
            self.mark_delivered(recipient, seqs, ctx);
        }
        if !self.held.is_empty() && !self.fetching {
            self.fetching = true;
            ctx.run_later(GAP_WAIT, |this, ctx| this.fill_gap(ctx));
        }
    }

    /// Hands a message to the members that have not seen it; returns its
    /// direct recipient if one of them is theirs. A `fast` message went out
    /// before it was stored, so its stored copy only moves the sequence on.
    fn deliver(&self, message: &StoredMessage) -> Option<String> {
        if message.fast {
            return None;
        }
        let recipient = self.recipient(&message.from);
        let frame = ServerFrame::Message(WireMessage::from(message)).encode();
        let mut reached = false;
        for member in self.members.values() {
            if message.seq > member.seen_up_to {
                member.socket.do_send(Deliver(frame.clone()));
                reached |= Some(member.user.as_str()) == recipient;
            }
        }
        recipient.filter(|_| reached).map(str::to_owned)
    }

    /// The recipient of a direct message from `from`: the other participant
    /// (nobody for notes to oneself, or in a public room).
    fn recipient(&self, from: &str) -> Option<&str> {
        let (first, second) = self.participants.as_ref()?;
        match (first == from, second == from) {
            (true, false) => Some(second),
            (false, true) => Some(first),
            _ => None,
        }
    }

    /// Tells every member how far `user` has read.
    fn broadcast_read(&self, user: &str, seq: u64) {
        let frame = ServerFrame::Read {
            room: &self.name,
            user,
            seq,
        }
        .encode();
        self.broadcast(&frame, None);
    }

    /// Records that direct messages reached their recipient's connection,
    /// and confirms those whose sender asked.
    fn mark_delivered(&mut self, recipient: String, seqs: Vec<u64>, ctx: &mut Context<Self>) {
        let (store, room) = (self.store.clone(), self.name.clone());
        let mark = async move { store.mark_delivered(&recipient, &room, seqs).await };
        ctx.spawn(mark.into_actor(self).map(|result, this, _ctx| match result {
            Ok(deliveries) => this.confirm(deliveries, true),
            Err(err) => {
                // They stay undelivered: the recipient may get them again
                // from `fetch_missed` (same `id`).
                tracing::warn!(room = %this.name, error = %err, "could not mark direct messages delivered");
            }
        }));
    }

    /// Tells local senders their messages were delivered, and, for
    /// deliveries seen here, the other replicas' copies of the room.
    fn confirm(&self, deliveries: Vec<Delivery>, publish: bool) {
        if deliveries.is_empty() {
            return;
        }
        for delivery in &deliveries {
            let reference: Ref = serde_json::from_str(&delivery.confirm).unwrap_or_default();
            let frame = ServerFrame::Delivered {
                reference: &reference,
                to: &delivery.to,
                room: &self.name,
                seq: delivery.seq,
            }
            .encode();
            for member in self.members.values().filter(|m| m.user == delivery.from) {
                member.socket.do_send(Deliver(frame.clone()));
            }
        }
        if publish {
            self.cluster.publish(
                self.channels(),
                ClusterEvent::Delivered {
                    room: self.name.clone(),
                    deliveries,
                },
            );
        }
    }

    /// Reads the messages missing before the first held one from the store.
    fn fill_gap(&mut self, ctx: &mut Context<Self>) {
        let (Some(delivered), Some(&first_held)) = (self.delivered, self.held.keys().next()) else {
            self.fetching = false;
            return;
        };
        if first_held <= delivered + 1 {
            self.fetching = false;
            return self.release(ctx);
        }
        let missing = (first_held - delivered - 1).min(u64::from(MAX_FETCH)) as u32;
        let (store, room) = (self.store.clone(), self.name.clone());
        let read = async move { store.history(&room, Some(first_held), missing).await };
        ctx.spawn(read.into_actor(self).map(move |result, this, ctx| {
            this.fetching = false;
            match result {
                Ok(found) => {
                    let reaches = found.first().map(|m| m.seq);
                    tracing::debug!(room = %this.name, fetched = found.len(), "filled a gap from the store");
                    if reaches != this.delivered.map(|d| d + 1) {
                        // Larger than one fetch, or (never with our stores)
                        // seqs that do not exist: skip ahead rather than stall.
                        let from = reaches.unwrap_or(first_held);
                        tracing::warn!(room = %this.name, from, "skipping ahead over a gap");
                        this.delivered = Some(from - 1);
                    }
                    this.accept(found, ctx);
                }
                Err(err) => {
                    tracing::warn!(room = %this.name, error = %err, "could not fill a gap; retrying");
                    this.fetching = true;
                    ctx.run_later(FETCH_RETRY, |this, ctx| this.fill_gap(ctx));
                }
            }
        }));
    }

    /// Delivers whatever the store has beyond `delivered`: after the room's
    /// subscription goes live, and after the broker comes back.
    fn catch_up(&mut self, ctx: &mut Context<Self>) {
        let (store, room) = (self.store.clone(), self.name.clone());
        let read = async move { store.history(&room, None, MAX_FETCH).await };
        ctx.spawn(read.into_actor(self).map(|result, this, ctx| match result {
            Ok(latest) if this.delivered.is_some() => this.accept(latest, ctx),
            Ok(latest) => this.delivered = Some(latest.last().map_or(0, |m| m.seq)),
            Err(err) => {
                tracing::warn!(room = %this.name, error = %err, "could not catch up; retrying");
                ctx.run_later(FETCH_RETRY, |this, ctx| this.catch_up(ctx));
            }
        }));
    }

    /// Stores the next batch of posts unless one is already being stored.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing || self.pending.is_empty() {
            return;
        }
        self.flushing = true;
        let take = self.pending.len().min(MAX_BATCH);
        let (batch, receipts): (Vec<NewMessage>, Vec<_>) = self
            .pending
            .drain(..take)
            .map(|queued| (queued.message, (queued.avatar, queued.receipt)))
            .unzip();
        let store = self.store.clone();
        let room = self.name.clone();
        let append = async move { store.append(&room, batch, now_millis()).await };
        ctx.spawn(append.into_actor(self).map(move |result, this, ctx| {
            this.flushing = false;
            match result {
                Ok(stored) => this.stored(stored, receipts, ctx),
                Err(err) => {
                    tracing::warn!(room = %this.name, error = %err, lost = receipts.len(), "could not store messages");
                    // Fast messages were delivered already and promised
                    // nothing more; they are only missing from history.
                    for (reference, reply) in receipts.into_iter().filter_map(|(_, receipt)| receipt) {
                        let frame = Rejected::new(
                            ErrorCode::StoreUnavailable,
                            "the message could not be stored; it was not delivered, send it again",
                            reference,
                        )
                        .encode();
                        reply.do_send(Deliver(frame));
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

    /// Acks, delivers and publishes a stored batch.
    fn stored(
        &mut self,
        mut stored: Vec<StoredMessage>,
        receipts: Vec<(Option<String>, Option<Receipt>)>,
        ctx: &mut Context<Self>,
    ) {
        for (message, (avatar, receipt)) in stored.iter_mut().zip(receipts) {
            message.avatar = avatar;
            let Some((reference, reply)) = receipt else {
                message.fast = true;
                continue;
            };
            let ack = ServerFrame::Ack {
                reference: reference.as_ref(),
                room: &self.name,
                seq: message.seq,
            }
            .encode();
            reply.do_send(Deliver(ack));
        }
        self.cluster.publish(
            self.channels(),
            ClusterEvent::Messages {
                room: self.name.clone(),
                messages: stored.clone(),
            },
        );
        self.accept(stored, ctx);
    }

    /// Forgets replicas that stopped repeating their presence.
    fn expire_presence(&mut self, ctx: &mut Context<Self>) {
        let before = self.remote_online.len();
        self.remote_online
            .retain(|_, remote| remote.heard.elapsed() < PRESENCE_TTL);
        if self.remote_online.len() != before {
            self.refresh_presence(ctx);
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
        if direct_participants(&self.name).is_none() {
            self.cluster
                .subscribe(room_channel(&self.name), Some(ctx.address().recipient()));
        }
        self.publish_presence(true);
        ctx.run_interval(PRESENCE_HEARTBEAT, |this, ctx| {
            if !this.local_online.is_empty() {
                this.publish_presence(false);
            }
            this.expire_presence(ctx);
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        if !self.cluster.is_clustered() {
            return;
        }
        self.local_online.clear();
        self.publish_presence(false);
        if direct_participants(&self.name).is_none() {
            self.cluster.unsubscribe(room_channel(&self.name));
        }
    }
}

impl Handler<Join> for Room {
    type Result = ();

    fn handle(&mut self, join: Join, ctx: &mut Self::Context) {
        if !join.announce {
            let seen_up_to = self.delivered.unwrap_or(0);
            self.members.entry(join.session).or_insert(Member {
                user: join.user,
                socket: join.socket,
                seen_up_to,
            });
            self.refresh_presence(ctx);
            return;
        }
        // Waiting (rather than spawning) holds back other mailbox messages
        // and batch completions, so no message lands between the history
        // read and the membership.
        let store = self.store.clone();
        let room = self.name.clone();
        let limit = if join.since.is_some() {
            MAX_REPLAY
        } else {
            DEFAULT_HISTORY_LIMIT
        };
        let read = async move {
            let history = store.history(&room, None, limit).await;
            // Read positions are a nicety: a failure leaves them out.
            let reads = store
                .read_positions(&room, MAX_READ_POSITIONS)
                .await
                .unwrap_or_default();
            (history, reads)
        };
        ctx.wait(read.into_actor(self).map(move |(history, reads), this, ctx| {
            let mut history = history.unwrap_or_else(|err| {
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
            let newest = history.last().map_or(0, |m| m.seq);
            // Messages stored elsewhere but not yet delivered here would be
            // both in this history and delivered later; hand them to this
            // member only once, by delivery.
            let seen_up_to = match this.delivered {
                Some(delivered) => newest.min(delivered),
                None => {
                    this.delivered = Some(newest);
                    newest
                }
            };
            history.retain(|m| m.seq <= seen_up_to);
            if let Some(since) = join.since {
                history.retain(|m| m.seq > since);
            }
            let member = this.members.entry(join.session).or_insert(Member {
                user: join.user,
                socket: join.socket,
                seen_up_to,
            });
            member.seen_up_to = member.seen_up_to.max(seen_up_to);
            let socket = member.socket.clone();
            this.refresh_presence(ctx);
            let joined = ServerFrame::Joined {
                room: &this.name,
                history: history.iter().map(WireMessage::from).collect(),
                online: &this.online,
                read: reads
                    .iter()
                    .map(|(user, seq)| ReadPosition { user, seq: *seq })
                    .collect(),
            }
            .encode();
            socket.do_send(Deliver(joined));
        }));
    }
}

impl Handler<Leave> for Room {
    type Result = ();

    fn handle(&mut self, leave: Leave, ctx: &mut Self::Context) {
        if self.members.remove(&leave.session).is_some() {
            self.refresh_presence(ctx);
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
        let fast = post.delivery == protocol::Delivery::Fast;
        let id = new_message_id();
        if fast {
            let message = StoredMessage {
                room: self.name.clone(),
                seq: 0,
                from: post.user.clone(),
                text: post.text.clone(),
                ts: now_millis(),
                avatar: post.avatar.clone(),
                id: id.clone(),
                fast: true,
            };
            let frame = ServerFrame::Message(WireMessage::from(&message)).encode();
            self.broadcast(&frame, None);
            self.cluster.publish(
                self.channels(),
                ClusterEvent::Fast {
                    room: self.name.clone(),
                    message,
                },
            );
        }
        // Fast messages are not kept for an offline recipient: they promise
        // nothing beyond the live fan-out.
        let to = (!fast)
            .then(|| self.recipient(&post.user).map(str::to_owned))
            .flatten();
        let confirm = (post.confirm && to.is_some()).then(|| {
            serde_json::to_string(&post.reference.clone().unwrap_or_default())
                .expect("JSON values serialize")
        });
        self.pending.push(Queued {
            message: NewMessage {
                id,
                from: post.user,
                text: post.text,
                to,
                confirm,
            },
            avatar: post.avatar,
            receipt: (!fast).then_some((post.reference, post.reply)),
        });
        self.flush(ctx);
    }
}

impl Handler<Read> for Room {
    type Result = ();

    fn handle(&mut self, read: Read, ctx: &mut Self::Context) {
        // Nobody can have read past what the room has delivered.
        let seq = read.seq.min(self.delivered.unwrap_or(0));
        if seq == 0 || !self.members.contains_key(&read.session) {
            return;
        }
        let (store, room, user) = (self.store.clone(), self.name.clone(), read.user.clone());
        ctx.spawn(
            async move { store.set_read(&room, &user, seq).await }
                .into_actor(self)
                .map(|result, this, _ctx| {
                    if let Err(err) = result {
                        tracing::warn!(room = %this.name, error = %err, "could not store a read position");
                    }
                }),
        );
        self.broadcast_read(&read.user, seq);
        self.cluster.publish(
            self.channels(),
            ClusterEvent::Read {
                room: self.name.clone(),
                user: read.user,
                seq,
            },
        );
    }
}

impl Handler<Confirmed> for Room {
    type Result = ();

    fn handle(&mut self, Confirmed(deliveries): Confirmed, _ctx: &mut Self::Context) {
        self.confirm(deliveries, true);
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
        self.cluster.publish(
            self.channels(),
            ClusterEvent::Typing {
                room: self.name.clone(),
                user: typing.user,
                active: typing.active,
            },
        );
    }
}

impl Handler<FromCluster> for Room {
    type Result = ();

    fn handle(&mut self, remote: FromCluster, ctx: &mut Self::Context) {
        match remote.event {
            ClusterEvent::Messages { messages, .. } => self.accept(messages, ctx),
            ClusterEvent::Fast { message, .. } => {
                let frame = ServerFrame::Message(WireMessage::from(&message)).encode();
                self.broadcast(&frame, None);
            }
            ClusterEvent::Read { user, seq, .. } => self.broadcast_read(&user, seq),
            ClusterEvent::Delivered { deliveries, .. } => self.confirm(deliveries, false),
            ClusterEvent::SessionOpened { .. } | ClusterEvent::UserActivity { .. } => {}
            ClusterEvent::Typing { user, active, .. } => {
                let frame = ServerFrame::Typing {
                    room: &self.name,
                    user: &user,
                    active,
                }
                .encode();
                self.broadcast(&frame, Some(&user));
            }
            ClusterEvent::Presence { users, reply, .. } => {
                if users.is_empty() {
                    self.remote_online.remove(&remote.node);
                } else {
                    self.remote_online.insert(
                        remote.node,
                        RemotePresence {
                            users,
                            heard: Instant::now(),
                        },
                    );
                }
                self.refresh_presence(ctx);
                if reply && !self.local_online.is_empty() {
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
        if self.flushing || !self.pending.is_empty() {
            self.retiring = true;
        } else {
            ctx.stop();
        }
    }
}
