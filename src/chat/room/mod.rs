//! One chat room on this replica: its local members, its write queue and
//! its fan-out. The actor is thin; the logic lives in plain parts:
//! [`sequencer`] (order, exactly once, gap fills) and [`presence`] (who is
//! online, coalesced and expired).
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

mod messages;
pub mod presence;
pub mod sequencer;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

pub use messages::{
    Activate, Confirmed, FromCluster, Join, Leave, Online, Outcome, Post, Read, Reply, Shutdown,
    Typing,
};
use presence::Presence;
use sequencer::{Fill, Sequencer, MAX_FILL};

use super::{Deliver, SessionId};
use crate::chat::names::direct_participants;
use crate::cluster::{room_channel, user_channel, ClusterEvent, ClusterHandle, Resync, Subscribed};
use crate::metrics;
use crate::store::backlog::{Backlog, Permit};
use crate::store::{
    new_message_id, now_millis, Delivery, NewMessage, Store, StoreError, StoredMessage,
};
use crate::ws::protocol::{
    self, ErrorCode, ReadPosition, Ref, Rejected, ServerFrame, WireMessage, DEFAULT_HISTORY_LIMIT,
};

/// Most posts persisted in one store call.
const MAX_BATCH: usize = 256;
/// How long a message may wait for an earlier, missing one before the room
/// reads the gap from the store.
pub const GAP_WAIT: Duration = Duration::from_millis(300);
/// The same without a broker, when nothing can arrive by itself: short, so
/// local users are not held back, but a pause, so a hole that stays open
/// (a write the database applies late) is not read back to back.
const GAP_WAIT_UNLINKED: Duration = Duration::from_millis(50);
/// Pause before retrying a failed read of the store.
const FETCH_RETRY: Duration = Duration::from_secs(1);
/// The answer to a retry that could not be looked up: its first attempt
/// may well be stored, so "not stored" would be a lie.
const RETRY_NOT_CHECKED: &str =
    "this retry could not be checked against the first attempt, which may be stored \
     (then it arrives with its seq); retry again shortly";
/// After a write with an unknown outcome, when the room reads what the
/// store holds: a message that was stored after all reaches the members
/// even if nothing follows it in the room.
const UNCERTAIN_CHECKS: [Duration; 4] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(15),
    Duration::from_secs(45),
];
/// How often a room repeats its local presence to the other replicas.
pub const PRESENCE_HEARTBEAT: Duration = Duration::from_secs(5);
/// Presence changes within this window go out as one `presence` frame.
pub const PRESENCE_COALESCE: Duration = Duration::from_millis(50);
/// Messages a resuming client gets replayed at most, per room; older missed
/// ones it pages back to with `history` (`joined` says `recovered:false`).
pub const MAX_REPLAY: u32 = 500;
/// Read positions sent with `joined`: the furthest readers.
pub const MAX_READ_POSITIONS: u32 = 100;
/// Messages held for a member that has not spoken yet, at most; past it
/// they go out at once.
const MAX_HELD: usize = 256;

struct Member {
    user: String,
    socket: Recipient<Deliver>,
    /// Messages up to here were in this member's `joined` history, or the
    /// client said it has them (`resume`), so they are not delivered again.
    seen_up_to: u64,
    /// `Some` while the connection has not spoken: its messages wait here,
    /// in order, until it resumes (they are then replayed) or speaks; with
    /// the seq of each whose direct recipient this member's user is.
    held: Option<Vec<(bytestring::ByteString, Option<u64>)>>,
}

impl Member {
    /// Sends (or holds) a message frame. `ours` is its seq when this
    /// member's user is its direct recipient. Returns the seqs that now
    /// reached that recipient: the frame's own, or held ones let go.
    fn send_message(&mut self, frame: &bytestring::ByteString, ours: Option<u64>) -> Vec<u64> {
        match &mut self.held {
            Some(held) if held.len() < MAX_HELD => {
                held.push((frame.clone(), ours));
                Vec::new()
            }
            Some(_) => {
                let mut reached = self.release();
                self.socket.do_send(Deliver(frame.clone()));
                reached.extend(ours);
                reached
            }
            None => {
                self.socket.do_send(Deliver(frame.clone()));
                ours.into_iter().collect()
            }
        }
    }

    /// Lets held messages go; returns the seqs of those for this user.
    fn release(&mut self) -> Vec<u64> {
        let mut reached = Vec::new();
        for (frame, ours) in self.held.take().into_iter().flatten() {
            self.socket.do_send(Deliver(frame));
            reached.extend(ours);
        }
        reached
    }
}

/// Where a stored message's `ack` goes: the author's `ref` and connection
/// (or request).
type Receipt = (Option<Ref>, Reply);

/// A post waiting for the store.
/// A post being stored, as the room must answer it.
struct Waiting {
    /// The id the room gave it: a retry found stored comes back under its
    /// original's.
    id: String,
    /// A retry: its first attempt may be stored, so a failure to store this
    /// one is never reported as "not stored".
    retry: bool,
    accepted: Instant,
    avatar: Option<String>,
    receipt: Option<Receipt>,
    _permit: Permit,
}

struct Queued {
    message: NewMessage,
    /// When the room took it: its ack's latency runs from here.
    accepted: Instant,
    avatar: Option<String>,
    /// `None` for a `fast` message: delivered already, never acked.
    receipt: Option<Receipt>,
    /// Its place in the backlog, given back once the store answered.
    permit: Permit,
}

/// What the room is doing about messages held behind a gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gap {
    Idle,
    /// A fill is scheduled after [`GAP_WAIT`] (or a retry).
    Waiting,
    /// A fill is reading the store.
    Reading,
}

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
    sequencer: Sequencer,
    gap: Gap,
    pending: Vec<Queued>,
    /// A batch is being stored.
    storing: bool,
    /// Retired by the registry: stop once `pending` is stored.
    retiring: bool,
}

impl Room {
    pub fn new(
        name: String,
        store: Arc<dyn Store>,
        cluster: ClusterHandle,
        backlog: Backlog,
    ) -> Self {
        let participants = direct_participants(&name).map(|(a, b)| (a.to_owned(), b.to_owned()));
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
            pending: Vec::new(),
            storing: false,
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

    fn publish(&self, event: ClusterEvent) {
        self.cluster.publish(self.channels(), event);
    }

    fn broadcast(&self, frame: &bytestring::ByteString, skip_user: Option<&str>) {
        for member in self.members.values() {
            if Some(member.user.as_str()) != skip_user {
                member.socket.do_send(Deliver(frame.clone()));
            }
        }
    }

    fn publish_presence(&self, reply: bool) {
        self.publish(ClusterEvent::Presence {
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

    /// Takes stored messages from anywhere (this replica, the cluster, the
    /// store) and delivers whatever is next in `seq` order.
    fn accept(&mut self, messages: Vec<StoredMessage>, ctx: &mut Context<Self>) {
        let ready = self.sequencer.accept(messages);
        self.deliver_all(ready, ctx);
    }

    fn deliver_all(&mut self, ready: Vec<StoredMessage>, ctx: &mut Context<Self>) {
        let mut reached: HashMap<String, Vec<u64>> = HashMap::new();
        for message in &ready {
            for (recipient, seqs) in self.deliver(message) {
                reached.entry(recipient).or_default().extend(seqs);
            }
        }
        for (recipient, seqs) in reached {
            self.mark_delivered(recipient, seqs, ctx);
        }
        if self.sequencer.has_gap() && self.gap == Gap::Idle {
            self.gap = Gap::Waiting;
            // Without a broker the missing messages cannot come by
            // themselves: waiting for them would only hold back the
            // messages of this replica's own users.
            let wait = if self.cluster.is_connected() {
                GAP_WAIT
            } else {
                GAP_WAIT_UNLINKED
            };
            ctx.run_later(wait, |this, ctx| this.fill_gap(ctx));
        }
    }

    /// Hands a message to the members that have not seen it; returns the
    /// seqs that reached a direct recipient's connection, by recipient (a
    /// held message reaches it only when let go). A `fast` message went out
    /// before it was stored, so its stored copy only moves the sequence on.
    fn deliver(&mut self, message: &StoredMessage) -> Vec<(String, Vec<u64>)> {
        if message.fast {
            return Vec::new();
        }
        let recipient = self.recipient(&message.from).map(str::to_owned);
        let frame = ServerFrame::Message(WireMessage::from(message)).encode();
        let mut reached = Vec::new();
        let mut sent = 0;
        for member in self.members.values_mut() {
            if message.seq > member.seen_up_to {
                sent += 1;
                let ours = (Some(&member.user) == recipient.as_ref()).then_some(message.seq);
                let seqs = member.send_message(&frame, ours);
                if !seqs.is_empty() {
                    reached.push((member.user.clone(), seqs));
                }
            }
        }
        if sent > 0 {
            let metrics = metrics::get();
            metrics
                .messages_delivered
                .get(metrics::mode::RELIABLE)
                .inc_by(sent);
            let age_ms = now_millis().saturating_sub(message.ts);
            metrics.delivery_seconds.observe(age_ms as f64 / 1000.0);
        }
        reached
    }

    /// Hands a fast message to every member.
    fn deliver_fast(&self, message: &StoredMessage) {
        let frame = ServerFrame::Message(WireMessage::from(message)).encode();
        self.broadcast(&frame, None);
        metrics::get()
            .messages_delivered
            .get(metrics::mode::FAST)
            .inc_by(self.members.len() as u64);
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
            self.publish(ClusterEvent::Delivered {
                room: self.name.clone(),
                deliveries,
            });
        }
    }

    /// Reads every message missing before the newest held one, in one go.
    fn fill_gap(&mut self, ctx: &mut Context<Self>) {
        let Some(fill) = self.sequencer.fill() else {
            self.gap = Gap::Idle;
            return;
        };
        self.gap = Gap::Reading;
        metrics::get().gap_fills.inc();
        self.read_after(fill, ctx);
    }

    /// Reads `fill` from the store and hands the answer to the sequencer;
    /// a fill cut at its limit reads on at once.
    fn read_after(&mut self, fill: Fill, ctx: &mut Context<Self>) {
        let (store, room) = (self.store.clone(), self.name.clone());
        let read = async move { store.after(&room, fill.after, fill.limit).await };
        ctx.spawn(read.into_actor(self).map(move |result, this, ctx| {
            this.gap = Gap::Idle;
            match result {
                Ok(found) => {
                    tracing::debug!(room = %this.name, fetched = found.len(), "filled a gap from the store");
                    let (ready, again) = this.sequencer.filled(fill, found);
                    if again {
                        this.gap = Gap::Waiting;
                        ctx.run_later(Duration::ZERO, |this, ctx| this.fill_gap(ctx));
                    }
                    this.deliver_all(ready, ctx);
                }
                Err(err) => {
                    tracing::warn!(room = %this.name, error = %err, "could not fill a gap; retrying");
                    this.gap = Gap::Waiting;
                    ctx.run_later(FETCH_RETRY, |this, ctx| this.fill_gap(ctx));
                }
            }
        }));
    }

    /// Delivers whatever the store has beyond `delivered`: after the room's
    /// subscription goes live, and after the broker comes back.
    fn catch_up(&mut self, ctx: &mut Context<Self>) {
        let (store, room) = (self.store.clone(), self.name.clone());
        let Some(delivered) = self.sequencer.delivered() else {
            // Nothing delivered yet: the sequence starts at the newest.
            let read = async move { store.history(&room, None, 1).await };
            ctx.spawn(read.into_actor(self).map(|result, this, ctx| match result {
                Ok(newest) => {
                    this.sequencer.start_at(newest.last().map_or(0, |m| m.seq));
                }
                Err(err) => {
                    tracing::warn!(room = %this.name, error = %err, "could not catch up; retrying");
                    ctx.run_later(FETCH_RETRY, |this, ctx| this.catch_up(ctx));
                }
            }));
            return;
        };
        let read = async move { store.after(&room, delivered, MAX_FILL).await };
        ctx.spawn(read.into_actor(self).map(|result, this, ctx| match result {
            Ok(found) => {
                let more = found.len() == MAX_FILL as usize;
                this.accept(found, ctx);
                if more {
                    this.catch_up(ctx);
                }
            }
            Err(err) => {
                tracing::warn!(room = %this.name, error = %err, "could not catch up; retrying");
                ctx.run_later(FETCH_RETRY, |this, ctx| this.catch_up(ctx));
            }
        }));
    }

    /// Stores the next batch of posts unless one is already being stored.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.storing {
            return;
        }
        self.pending.retain(|queued| {
            !queued
                .receipt
                .as_ref()
                .is_some_and(|(_, reply)| reply.abandoned())
        });
        if self.pending.is_empty() {
            return;
        }
        self.storing = true;
        let take = self.pending.len().min(MAX_BATCH);
        let mut batch = Vec::with_capacity(take);
        let mut waiting = Vec::with_capacity(take);
        for queued in self.pending.drain(..take) {
            let id = queued.message.id.clone();
            let retry = queued.message.retry;
            batch.push(queued.message);
            waiting.push(Waiting {
                id,
                retry,
                accepted: queued.accepted,
                avatar: queued.avatar,
                receipt: queued.receipt,
                _permit: queued.permit,
            });
        }
        let store = self.store.clone();
        let room = self.name.clone();
        let append = async move { store.append(&room, batch, now_millis()).await };
        ctx.spawn(append.into_actor(self).map(move |result, this, ctx| {
            this.storing = false;
            match result {
                Ok(stored) => this.stored(stored, waiting, ctx),
                Err(err) => {
                    tracing::warn!(room = %this.name, error = %err, messages = waiting.len(), "could not store messages");
                    let (code, text) = match err {
                        StoreError::Uncertain(_) => {
                            // If they were stored, the store has them
                            // under their seqs: deliver them from there. A
                            // stalled database may apply the write only when
                            // it runs again, so look more than once.
                            for after in UNCERTAIN_CHECKS {
                                ctx.run_later(after, |this, ctx| this.catch_up(ctx));
                            }
                            (
                                ErrorCode::StoreUncertain,
                                "the database stopped answering: the message may or may not be stored; \
                                 if it was, it arrives with its seq",
                            )
                        }
                        _ => (
                            ErrorCode::StoreUnavailable,
                            "the message could not be stored; it was not delivered, send it again",
                        ),
                    };
                    // Fast messages were delivered already and promised
                    // nothing more; they are only missing from history.
                    for waiting in waiting {
                        let Some((reference, reply)) = waiting.receipt else {
                            continue;
                        };
                        reply.refuse(if waiting.retry {
                            Rejected::new(ErrorCode::StoreUncertain, RETRY_NOT_CHECKED, reference)
                        } else {
                            Rejected::new(code, text, reference)
                        });
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
        waiting: Vec<Waiting>,
        ctx: &mut Context<Self>,
    ) {
        // A retry the store found came back as its original. Delivering
        // that again is harmless (the sequencer drops what it has handed
        // out) and needed if the original's replica died before fanning it
        // out; only a room whose sequence has not started yet must not
        // take an old seq for where it starts.
        let started = self.sequencer.delivered().is_some();
        let metrics = metrics::get();
        let mut fresh = Vec::with_capacity(stored.len());
        for (message, waiting) in stored.iter_mut().zip(waiting) {
            let new = message.id == waiting.id;
            fresh.push(new);
            message.avatar = waiting.avatar;
            let Some((reference, reply)) = waiting.receipt else {
                metrics.messages_stored.inc(metrics::mode::FAST);
                message.fast = true;
                continue;
            };
            // A retry found stored was counted with its original.
            if new {
                metrics.messages_stored.inc(metrics::mode::RELIABLE);
            }
            metrics
                .ack_seconds
                .observe(waiting.accepted.elapsed().as_secs_f64());
            reply.ack(reference.as_ref(), message);
        }
        // Other replicas get only what is new: a repeated original could
        // start a room there at an old seq; they have it, or fill it in
        // from the store at the room's next message.
        let published: Vec<StoredMessage> = stored
            .iter()
            .zip(&fresh)
            .filter(|(_, fresh)| **fresh)
            .map(|(message, _)| message.clone())
            .collect();
        if !published.is_empty() {
            self.publish(ClusterEvent::Messages {
                room: self.name.clone(),
                messages: published,
            });
        }
        let mut fresh = fresh.into_iter();
        stored.retain(|_| fresh.next().unwrap_or(true) || started);
        self.accept(stored, ctx);
    }

    /// A fast message goes to everyone here and on other replicas at once,
    /// before it is stored.
    fn fan_out_fast(&self, user: &str, text: &str, avatar: &Option<String>, id: &str) {
        let message = StoredMessage {
            room: self.name.clone(),
            seq: 0,
            from: user.to_owned(),
            text: text.to_owned(),
            ts: now_millis(),
            avatar: avatar.clone(),
            id: id.to_owned(),
            fast: true,
        };
        self.deliver_fast(&message);
        self.publish(ClusterEvent::Fast {
            room: self.name.clone(),
            message,
        });
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

impl Handler<Join> for Room {
    type Result = ();

    fn handle(&mut self, join: Join, ctx: &mut Self::Context) {
        if !join.announce {
            let seen_up_to = self.sequencer.delivered().unwrap_or(0);
            self.members.entry(join.session).or_insert(Member {
                user: join.user,
                socket: join.socket,
                seen_up_to,
                held: join.held.then(Vec::new),
            });
            return self.members_changed(ctx);
        }
        // Waiting (rather than spawning) holds back other mailbox messages
        // and batch completions, so no message lands between the history
        // read and the membership, and `delivered` stands still meanwhile.
        let store = self.store.clone();
        let room = self.name.clone();
        let limit = if join.since.is_some() {
            MAX_REPLAY
        } else {
            DEFAULT_HISTORY_LIMIT
        };
        // Messages stored elsewhere but not yet delivered here come later,
        // by delivery; the history stops where delivery stands.
        let before = self.sequencer.delivered().map(|delivered| delivered + 1);
        tracing::debug!(room = %self.name, session = join.session, since = ?join.since, ?before, "join: reading history");
        let read = async move {
            let history = store.history(&room, before, limit).await;
            // Read positions are a nicety: a failure leaves them out.
            let reads = store
                .read_positions(&room, MAX_READ_POSITIONS)
                .await
                .unwrap_or_default();
            (history, reads)
        };
        ctx.wait(read.into_actor(self).map(move |(history, reads), this, ctx| {
            let (mut history, complete) = match history {
                Ok(history) => (history, true),
                Err(err) => {
                    tracing::warn!(room = %this.name, error = %err, "could not load history for a join");
                    Reply::Socket(join.socket.clone()).refuse(Rejected::new(
                        ErrorCode::StoreUnavailable,
                        "history is unavailable right now; new messages will still arrive",
                        None,
                    ));
                    (Vec::new(), false)
                }
            };
            let newest = history.last().map_or(0, |m| m.seq);
            let delivered = match complete {
                true => this.sequencer.start_at(newest),
                false => this.sequencer.delivered().unwrap_or(0),
            };
            if !complete || newest >= delivered {
                return this.answer_join(join, history, reads, complete, ctx);
            }
            // The page ends below what this room has delivered: the member
            // would never see the messages between. Seen under chaos with a
            // database that answered from before a write it had acked; the
            // rest is read once more, and if that falls short too the
            // answer says so (`recovered:false`) instead of leaving a hole.
            tracing::warn!(room = %this.name, newest, delivered, "history ended before delivery; reading the rest");
            let (store, room) = (this.store.clone(), this.name.clone());
            let missing = (delivered - newest).min(u64::from(MAX_REPLAY)) as u32;
            let rest = async move { store.after(&room, newest, missing).await };
            ctx.wait(rest.into_actor(this).map(move |rest, this, ctx| {
                let complete = match rest {
                    Ok(rest) => {
                        history.extend(rest.into_iter().filter(|m| m.seq <= delivered));
                        true
                    }
                    Err(err) => {
                        tracing::warn!(room = %this.name, error = %err, "could not read the rest of a join's history");
                        false
                    }
                };
                this.answer_join(join, history, reads, complete, ctx);
            }));
        }));
    }
}

impl Room {
    /// Makes the connection a member and sends its `joined`. `history`
    /// holds the page read (or a replay after `since`), `complete` whether
    /// it could be read; a page that does not reach what the room has
    /// delivered is no full recovery.
    fn answer_join(
        &mut self,
        join: Join,
        mut history: Vec<StoredMessage>,
        reads: Vec<(String, u64)>,
        complete: bool,
        ctx: &mut Context<Self>,
    ) {
        let delivered = self.sequencer.delivered().unwrap_or(0);
        let mut seen_up_to = delivered;
        let mut recovered = None;
        if let Some(since) = join.since {
            // A client ahead of this replica (it came from one further
            // on) already has what this one has yet to deliver.
            history.retain(|m| m.seq > since);
            let whole = sequencer::replay_is_whole(since, seq_span(&history), delivered);
            recovered = Some(complete && whole);
            metrics::get().resumes.inc(match (complete, whole) {
                (false, _) => metrics::resume::FAILED,
                (true, false) => metrics::resume::CUT,
                (true, true) => metrics::resume::RECOVERED,
            });
            seen_up_to = seen_up_to.max(since);
        }
        let member = self.members.entry(join.session).or_insert(Member {
            user: join.user,
            socket: join.socket,
            seen_up_to,
            held: None,
        });
        member.seen_up_to = member.seen_up_to.max(seen_up_to);
        tracing::debug!(
            room = %self.name,
            session = join.session,
            history = ?seq_span(&history),
            delivered,
            seen_up_to = member.seen_up_to,
            "join: answered"
        );
        let socket = member.socket.clone();
        // Held messages were delivered here already, so this `joined`
        // carries them: they reach the connection now.
        let reached: Vec<u64> = member
            .held
            .take()
            .into_iter()
            .flatten()
            .filter_map(|(_, ours)| ours)
            .collect();
        let user = member.user.clone();
        self.members_changed(ctx);
        let joined = ServerFrame::Joined {
            room: &self.name,
            history: history.iter().map(WireMessage::from).collect(),
            online: self.presence.online(),
            read: reads
                .iter()
                .map(|(user, seq)| ReadPosition { user, seq: *seq })
                .collect(),
            recovered,
        }
        .encode();
        socket.do_send(Deliver(joined));
        if !reached.is_empty() {
            self.mark_delivered(user, reached, ctx);
        }
    }
}

/// The first and last `seq` of `messages`.
fn seq_span(messages: &[StoredMessage]) -> Option<(u64, u64)> {
    messages
        .first()
        .zip(messages.last())
        .map(|(a, b)| (a.seq, b.seq))
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

impl Handler<Post> for Room {
    type Result = ();

    fn handle(&mut self, post: Post, ctx: &mut Self::Context) {
        let Post {
            session,
            user,
            avatar,
            text,
            reference,
            delivery,
            confirm,
            retry,
            reply,
        } = post;
        if session.is_some_and(|session| !self.members.contains_key(&session)) {
            reply.refuse(Rejected::new(
                ErrorCode::NotJoined,
                format!("join {} before posting to it", self.name),
                reference,
            ));
            return;
        }
        let fast = delivery == protocol::Delivery::Fast;
        let permit = self.backlog.admit(text.len());
        if permit.is_some() {
            metrics::get().messages_accepted.inc(match fast {
                true => metrics::mode::FAST,
                false => metrics::mode::RELIABLE,
            });
        }
        let id = new_message_id();
        let reply = if fast {
            self.fan_out_fast(&user, &text, &avatar, &id);
            // Nothing more is promised: the answer is that it went out.
            reply.sent(&id);
            None
        } else {
            Some(reply)
        };
        let Some(permit) = permit else {
            match reply {
                None => {
                    tracing::warn!(room = %self.name, "store backlog full; a fast message stays out of history");
                }
                Some(reply) if retry => reply.refuse(Rejected::new(
                    ErrorCode::StoreUncertain,
                    RETRY_NOT_CHECKED,
                    reference,
                )),
                Some(reply) => reply.refuse(Rejected::new(
                    ErrorCode::Overloaded,
                    "the server is storing too many messages; this one was not stored, send it again shortly",
                    reference,
                )),
            }
            return;
        };
        // Fast messages are not kept for an offline recipient: they promise
        // nothing beyond the live fan-out.
        let to = (!fast)
            .then(|| self.recipient(&user).map(str::to_owned))
            .flatten();
        let confirm = (confirm && to.is_some()).then(|| {
            serde_json::to_string(&reference.clone().unwrap_or_default())
                .expect("JSON values serialize")
        });
        self.pending.push(Queued {
            accepted: Instant::now(),
            message: NewMessage {
                id,
                from: user,
                text,
                to,
                confirm,
                reference: reference.as_ref().map(ToString::to_string),
                // A fast message has no ack to repeat.
                retry: retry && !fast,
            },
            avatar,
            receipt: reply.map(|reply| (reference, reply)),
            permit,
        });
        self.flush(ctx);
    }
}

/// Who is online in the room, on every replica (for `/api/v1`).
impl Handler<Online> for Room {
    type Result = MessageResult<Online>;

    fn handle(&mut self, _: Online, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.presence.online().to_vec())
    }
}

impl Handler<Read> for Room {
    type Result = ();

    fn handle(&mut self, read: Read, ctx: &mut Self::Context) {
        // Nobody can have read past what the room has delivered.
        let seq = read.seq.min(self.sequencer.delivered().unwrap_or(0));
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
        self.publish(ClusterEvent::Read {
            room: self.name.clone(),
            user: read.user,
            seq,
        });
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
        self.publish(ClusterEvent::Typing {
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
            ClusterEvent::Messages { messages, .. } => self.accept(messages, ctx),
            ClusterEvent::Fast { message, .. } => self.deliver_fast(&message),
            ClusterEvent::Read { user, seq, .. } => self.broadcast_read(&user, seq),
            ClusterEvent::Delivered { deliveries, .. } => self.confirm(deliveries, false),
            ClusterEvent::SessionOpened { .. }
            | ClusterEvent::LoginEnded { .. }
            | ClusterEvent::UserActivity { .. }
            | ClusterEvent::ConnectionsAsked { .. }
            | ClusterEvent::Connections { .. }
            | ClusterEvent::UserDisconnected { .. } => {}
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
        if self.storing || !self.pending.is_empty() {
            self.retiring = true;
        } else {
            ctx.stop();
        }
    }
}
