//! Delivery: handing stored messages to the members in `seq` order,
//! reading gaps and catching up from the store, and the receipts of direct
//! messages (read positions, delivery confirmations).

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;

use super::sequencer::{Fill, MAX_FILL};
use super::{Confirmed, Read, Room};
use crate::chat::wire;
use crate::chat::Outgoing;
use crate::cluster::RoomEvent;
use crate::event::{Entry, Event, Sequenced};
use crate::metrics;
use crate::protocol::{Ref, ServerFrame};
use crate::store::{now_millis, Receipt};

/// How long a message may wait for an earlier, missing one before the room
/// reads the gap from the store.
pub const GAP_WAIT: Duration = Duration::from_millis(300);
/// The same without a broker, when nothing can arrive by itself: short, so
/// local users are not held back, but a pause, so a hole that stays open
/// (a write the database applies late) is not read back to back.
const GAP_WAIT_UNLINKED: Duration = Duration::from_millis(50);
/// Pause before retrying a failed read of the store.
const FETCH_RETRY: Duration = Duration::from_secs(1);

/// What the room is doing about messages held behind a gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gap {
    Idle,
    /// A fill is scheduled after [`GAP_WAIT`] (or a retry).
    Waiting,
    /// A fill is reading the store.
    Reading,
}

impl Room {
    /// Takes stored events from anywhere (this replica, the cluster, the
    /// store) and delivers whatever is next in `seq` order.
    pub(super) fn accept(&mut self, entries: Vec<Entry>, ctx: &mut Context<Self>) {
        let ready = self.sequencer.accept(entries);
        self.deliver_all(ready, ctx);
    }

    /// [`Room::accept`] for what was read from the store: nobody here has
    /// seen it.
    pub(super) fn accept_read(&mut self, events: Vec<Event>, ctx: &mut Context<Self>) {
        self.accept(events.into_iter().map(Entry::new).collect(), ctx);
    }

    fn deliver_all(&mut self, ready: Vec<Entry>, ctx: &mut Context<Self>) {
        let mut reached: HashMap<String, Vec<u64>> = HashMap::new();
        for entry in &ready {
            for (recipient, seqs) in self.deliver(entry) {
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
    fn deliver(&mut self, entry: &Entry) -> Vec<(String, Vec<u64>)> {
        if entry.fast {
            return Vec::new();
        }
        let message = &entry.event;
        let seq = message.seq();
        // Only a message reaches a direct recipient (and is marked so).
        let recipient = message
            .is_message()
            .then(|| self.recipient(message.from()).map(str::to_owned))
            .flatten();
        let frame = wire::frame(message).encode();
        let mut reached = Vec::new();
        let mut sent = 0;
        for member in self.members.values_mut() {
            if seq > member.seen_up_to {
                sent += 1;
                let ours = (Some(&member.user) == recipient.as_ref()).then_some(seq);
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
            let age_ms = now_millis().saturating_sub(message.ts());
            metrics.delivery_seconds.observe(age_ms as f64 / 1000.0);
        }
        reached
    }

    /// Hands a fast message to every member.
    pub(super) fn deliver_fast(&self, message: &Event) {
        let frame = wire::frame(message).encode();
        self.broadcast(&frame, None);
        metrics::get()
            .messages_delivered
            .get(metrics::mode::FAST)
            .inc_by(self.members.len() as u64);
    }

    /// The recipient of a direct message from `from`: the other participant
    /// (nobody for notes to oneself, or in a public room).
    pub(super) fn recipient(&self, from: &str) -> Option<&str> {
        let (first, second) = self.participants.as_ref()?;
        match (first == from, second == from) {
            (true, false) => Some(second),
            (false, true) => Some(first),
            _ => None,
        }
    }

    /// Tells every member how far `user` has read.
    pub(super) fn broadcast_read(&self, user: &str, seq: u64) {
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
    pub(super) fn mark_delivered(
        &mut self,
        recipient: String,
        seqs: Vec<u64>,
        ctx: &mut Context<Self>,
    ) {
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
    pub(super) fn confirm(&self, deliveries: Vec<Receipt>, publish: bool) {
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
                member.socket.do_send(Outgoing(frame.clone()));
            }
        }
        if publish {
            self.publish(|| RoomEvent::Delivered {
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
                    let found = found.into_iter().map(Entry::new).collect();
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
    pub(super) fn catch_up(&mut self, ctx: &mut Context<Self>) {
        let (store, room) = (self.store.clone(), self.name.clone());
        let Some(delivered) = self.sequencer.delivered() else {
            // Nothing delivered yet: the sequence starts at the newest.
            let read = async move { store.history(&room, None, 1).await };
            ctx.spawn(read.into_actor(self).map(|result, this, ctx| match result {
                Ok(newest) => {
                    this.sequencer
                        .start_at(newest.last().map_or(0, Sequenced::seq));
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
                this.accept_read(found, ctx);
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
        self.publish(|| RoomEvent::Read {
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
