//! The join handshake: a connection becomes a member and gets its
//! `joined` (history, or a replay after `since`, presence, read positions)
//! with nothing delivered between the read and the membership.

use actix::prelude::*;

use super::member::Member;
use super::{sequencer, Join, Reply, Room};
use crate::chat::wire;
use crate::chat::Outgoing;
use crate::event::{seq_span, Event, Sequenced};
use crate::metrics;
use crate::protocol::{ReadPosition, ServerFrame, DEFAULT_HISTORY_LIMIT};

/// Messages a resuming client gets replayed at most, per room; older missed
/// ones it pages back to with `history` (`joined` says `recovered:false`).
pub const MAX_REPLAY: u32 = 500;
/// Read positions sent with `joined`: the furthest readers.
pub const MAX_READ_POSITIONS: u32 = 100;

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
        let fresh = join.since.is_none();
        let read = async move {
            let history = store.history(&room, before, limit).await;
            // The page a fresh join shows is of messages; the events read
            // above (which start the room's sequence) are that page unless
            // changes took some of its places.
            let page = match &history {
                Ok(events) if fresh && events.iter().any(|event| !event.is_message()) => {
                    store.messages(&room, before, limit).await.ok()
                }
                _ => None,
            };
            // Read positions are a nicety: a failure leaves them out.
            let reads = store
                .read_positions(&room, MAX_READ_POSITIONS)
                .await
                .unwrap_or_default();
            (history, page, reads)
        };
        ctx.wait(read.into_actor(self).map(move |(history, page, reads), this, ctx| {
            let (mut history, complete) = match history {
                Ok(history) => (history, true),
                Err(err) => {
                    tracing::warn!(room = %this.name, error = %err, "could not load history for a join");
                    Reply::Socket(join.socket.clone()).refuse(err.rejected(
                        "history",
                        "new messages will still arrive",
                        None,
                    ));
                    (Vec::new(), false)
                }
            };
            let newest = history.last().map_or(0, Sequenced::seq);
            let delivered = match complete {
                true => this.sequencer.start_at(newest),
                false => this.sequencer.delivered().unwrap_or(0),
            };
            if !complete || newest >= delivered {
                return this.answer_join(join, history, page, reads, complete, ctx);
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
                        history.extend(rest.into_iter().filter(|m| m.seq() <= delivered));
                        true
                    }
                    Err(err) => {
                        tracing::warn!(room = %this.name, error = %err, "could not read the rest of a join's history");
                        false
                    }
                };
                this.answer_join(join, history, None, reads, complete, ctx);
            }));
        }));
    }
}

impl Room {
    /// Makes the connection a member and sends its `joined`. `history`
    /// holds the page read (or a replay after `since`), `complete` whether
    /// it could be read; a page that does not reach what the room has
    /// delivered is no full recovery. `page`, when given, is the page of
    /// messages a fresh join shows instead of those among `history`.
    fn answer_join(
        &mut self,
        join: Join,
        mut history: Vec<Event>,
        page: Option<Vec<Event>>,
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
            history.retain(|m| m.seq() > since);
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
        let position = member.seen_up_to;
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
            seq: position,
            history: wire::messages(page.as_deref().unwrap_or(&history)),
            online: self.presence.online(),
            read: reads
                .iter()
                .map(|(user, seq)| ReadPosition { user, seq: *seq })
                .collect(),
            recovered,
            // A fresh page shows its messages as they are now; a replay
            // also brings the changes to messages the client has.
            changes: match join.since {
                Some(_) => wire::changes(&history),
                None => Vec::new(),
            },
        }
        .encode();
        socket.do_send(Outgoing(joined));
        if !reached.is_empty() {
            self.mark_delivered(user, reached, ctx);
        }
    }
}
