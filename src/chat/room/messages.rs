//! What the registry and sessions tell a room, one small struct each.

use actix::prelude::*;

use tokio::sync::oneshot;

use crate::chat::{Outgoing, SessionId};
use crate::cluster::RoomEvent;
use crate::event::Event;
use crate::protocol::{self, Ref, Rejected, ServerFrame};
use crate::store::{Draft, Millis, Receipt};

/// A connection becomes a member of the room. With `announce` it receives
/// `joined` (history and who is online); without, it only starts receiving
/// new messages, as a user's tabs do for their direct rooms.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Join {
    pub session: SessionId,
    pub user: String,
    pub socket: Recipient<Outgoing>,
    pub announce: bool,
    /// Resuming: the last `seq` the client has; `joined` then carries the
    /// messages after it instead of the latest page, and nothing up to it
    /// is delivered to this member again.
    pub since: Option<u64>,
    /// A silent member whose connection has not spoken yet: its messages
    /// wait until [`Activate`] or an announced join (a `resume`).
    pub held: bool,
}

/// A silent member's connection spoke (see `registry::Ready`): hand it
/// what was held for it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Activate {
    pub session: SessionId,
}

/// A connection stops being a member.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub session: SessionId,
}

/// A member (or a backend, through `/api/v1`) posts a message, or edits or
/// deletes one; its author gets `ack` once it is stored. An edit or a
/// delete comes checked (the message exists, and they may change it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Post {
    /// The member's connection; `None` for a backend's post, which the
    /// registry vouches for (it checked the sender and the room).
    pub session: Option<SessionId>,
    pub user: String,
    pub avatar: Option<String>,
    pub draft: Draft,
    pub reference: Option<Ref>,
    pub delivery: protocol::Delivery,
    /// Tell the sender when a direct message reaches its recipient.
    pub confirm: bool,
    /// The sender repeats a post whose answer never came: the store acks
    /// the earlier one if it has it (see [`crate::store::NewEvent::retry`]).
    pub retry: bool,
    /// Where the `ack` or `error` goes.
    pub reply: Reply,
}

/// Where the answer to a [`Post`] goes.
pub enum Reply {
    /// A member's connection: an `ack` or `error` frame with the post's `ref`.
    Socket(Recipient<Outgoing>),
    /// A backend's request, waiting for the outcome itself.
    Api(oneshot::Sender<Outcome>),
}

/// How a backend's post ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Stored {
        seq: u64,
        id: String,
        ts: Millis,
    },
    /// A `fast` post: fanned out to the members, stored in the background.
    Sent {
        id: String,
    },
    Refused(Rejected),
}

impl Reply {
    pub(super) fn refuse(self, rejected: Rejected) {
        match self {
            Self::Socket(socket) => {
                crate::metrics::error_sent(rejected.code);
                socket.do_send(Outgoing(rejected.encode()));
            }
            Self::Api(answer) => {
                let _ = answer.send(Outcome::Refused(rejected));
            }
        }
    }

    pub(super) fn ack(self, reference: Option<&Ref>, event: &Event) {
        match self {
            Self::Socket(socket) => {
                let ack = ServerFrame::Ack {
                    reference,
                    room: event.room(),
                    seq: event.seq(),
                }
                .encode();
                socket.do_send(Outgoing(ack));
            }
            Self::Api(answer) => {
                let _ = answer.send(Outcome::Stored {
                    seq: event.seq(),
                    id: event.id().to_owned(),
                    ts: event.ts(),
                });
            }
        }
    }

    /// A backend that stopped waiting (its request timed out and answered
    /// `store_uncertain`): its post is better not stored at all, so that
    /// the retry it was told to make stores it once.
    pub(super) fn abandoned(&self) -> bool {
        matches!(self, Self::Api(answer) if answer.is_closed())
    }

    /// A `fast` post went out: a backend hears so, a connection nothing.
    pub(super) fn sent(self, id: &str) {
        if let Self::Api(answer) = self {
            let _ = answer.send(Outcome::Sent { id: id.to_owned() });
        }
    }
}

/// Who is online in the room, on every replica, sorted.
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct Online;

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
pub struct Confirmed(pub Vec<Receipt>);

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
    pub event: RoomEvent,
}

/// The registry retired the room: stop once queued posts are stored.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;
