//! The room's writes: posts go to the write queue (`queue.rs`, where the
//! rules are), its batches to the store, and a stored batch is acked,
//! published and delivered.

use std::time::{Duration, Instant};

use actix::prelude::*;

use super::queue::{Batch, Queued, Waiting};
use super::{Post, Room};
use crate::cluster::RoomEvent;
use crate::event::{Entry, Event};
use crate::metrics;
use crate::protocol::{self, ErrorCode, Rejected};
use crate::store::{new_message_id, now_millis, Appended, Draft, NewEvent, StoreError};

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

impl Room {
    /// Stores the next batch of posts unless one is already being stored.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        let Some(Batch { messages, waiting }) = self.writes.take() else {
            return;
        };
        let store = self.store.clone();
        let room = self.name.clone();
        let append = async move { store.append(&room, messages, now_millis()).await };
        ctx.spawn(append.into_actor(self).map(move |result, this, ctx| {
            this.writes.answered();
            match result {
                Ok(appended) => this.stored(appended, waiting, ctx),
                Err(err) => {
                    tracing::warn!(room = %this.name, error = %err, messages = waiting.len(), "could not store messages");
                    let then = match err {
                        StoreError::Uncertain(_) => {
                            // If they were stored, the store has them
                            // under their seqs: deliver them from there. A
                            // stalled database may apply the write only when
                            // it runs again, so look more than once.
                            for after in UNCERTAIN_CHECKS {
                                ctx.run_later(after, |this, ctx| this.catch_up(ctx));
                            }
                            "it may or may not be stored; if it was, it arrives with its seq"
                        }
                        _ => "it was not stored or delivered; send it again",
                    };
                    // Fast messages were delivered already and promised
                    // nothing more; they are only missing from history.
                    for waiting in waiting {
                        let Some((reference, reply)) = waiting.ack_to else {
                            continue;
                        };
                        reply.refuse(if waiting.retry {
                            Rejected::new(ErrorCode::StoreUncertain, RETRY_NOT_CHECKED, reference)
                        } else {
                            err.rejected("the message", then, reference)
                        });
                    }
                }
            }
            if this.retiring && this.writes.is_empty() {
                ctx.stop();
            } else {
                this.flush(ctx);
            }
        }));
    }

    /// Acks, delivers and publishes a stored batch.
    fn stored(&mut self, appended: Appended, waiting: Vec<Waiting>, ctx: &mut Context<Self>) {
        let Appended {
            events: stored,
            others,
        } = appended;
        // A retry the store found came back as its original. Delivering
        // that again is harmless (the sequencer drops what it has handed
        // out) and needed if the original's replica died before fanning it
        // out; only a room whose sequence has not started yet must not
        // take an old seq for where it starts.
        let started = self.sequencer.delivered().is_some();
        let metrics = metrics::get();
        let mut fresh = Vec::with_capacity(stored.len());
        let mut entries = Vec::with_capacity(stored.len());
        for (event, waiting) in stored.into_iter().zip(waiting) {
            let new = waiting.is_new(&event);
            fresh.push(new);
            let event = event.with_avatar(waiting.avatar);
            let Some((reference, reply)) = waiting.ack_to else {
                metrics.messages_stored.inc(metrics::mode::FAST);
                entries.push(Entry { event, fast: true });
                continue;
            };
            // A retry found stored was counted with its original.
            if new {
                metrics.messages_stored.inc(metrics::mode::RELIABLE);
            }
            metrics
                .ack_seconds
                .observe(waiting.accepted.elapsed().as_secs_f64());
            reply.ack(reference.as_ref(), &event);
            entries.push(Entry::new(event));
        }
        // Other replicas get only what is new: a repeated original could
        // start a room there at an old seq; they have it, or fill it in
        // from the store at the room's next message.
        if fresh.contains(&true) {
            self.publish(|| RoomEvent::Messages {
                room: self.name.clone(),
                messages: entries
                    .iter()
                    .zip(&fresh)
                    .filter(|(_, fresh)| **fresh)
                    .map(|(entry, _)| entry.clone())
                    .collect(),
            });
        }
        let mut fresh = fresh.into_iter();
        entries.retain(|_| fresh.next().unwrap_or(true) || started);
        // Other replicas' messages the store stepped over to seq this batch:
        // ahead of it, so it need not wait for the broker or a read of the
        // gap. A room not started yet starts at its own.
        if started {
            entries.extend(others.into_iter().map(Entry::new));
        }
        self.accept(entries, ctx);
    }

    /// A fast message goes to everyone here and on other replicas at once,
    /// before it is stored.
    fn fan_out_fast(&self, user: &str, text: &str, avatar: &Option<String>, id: &str) {
        let message = Event::unstored_message(self.name.as_str(), id, user, now_millis(), text)
            .with_avatar(avatar.clone());
        self.deliver_fast(&message);
        self.publish(|| RoomEvent::Fast {
            room: self.name.clone(),
            message,
        });
    }
}

impl Handler<Post> for Room {
    type Result = ();

    fn handle(&mut self, post: Post, ctx: &mut Self::Context) {
        let Post {
            session,
            user,
            avatar,
            draft,
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
        // Only a message can go fast: a change must be stored to mean anything.
        let fast = delivery == protocol::Delivery::Fast && matches!(draft, Draft::Message(_));
        let permit = self.backlog.admit(draft.text().len());
        if permit.is_some() {
            metrics::get().messages_accepted.inc(match fast {
                true => metrics::mode::FAST,
                false => metrics::mode::RELIABLE,
            });
        }
        let id = new_message_id();
        let reply = if fast {
            self.fan_out_fast(&user, draft.text(), &avatar, &id);
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
        let to = (!fast && matches!(draft, Draft::Message(_)))
            .then(|| self.recipient(&user).map(str::to_owned))
            .flatten();
        let confirm = (confirm && to.is_some()).then(|| {
            serde_json::to_string(&reference.clone().unwrap_or_default())
                .expect("JSON values serialize")
        });
        self.writes.push(Queued {
            accepted: Instant::now(),
            message: NewEvent {
                id,
                from: user,
                draft,
                to,
                confirm,
                reference: reference.as_ref().map(ToString::to_string),
                // A fast message has no ack to repeat.
                retry: retry && !fast,
            },
            avatar,
            ack_to: reply.map(|reply| (reference, reply)),
            permit,
        });
        self.flush(ctx);
    }
}
