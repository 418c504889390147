//! Edits and deletes: checked against the stored message (it is there, and
//! this user may change it), then posted to its room like a message, which
//! stores each as an event of the room's stream and acks it.

use actix::prelude::*;

use super::rooms::{not_joined, OwnedTarget};
use super::WsSession;
use crate::chat::names::RoomKind;
use crate::chat::registry;
use crate::chat::room::Room;
use crate::protocol::{self, ErrorCode, MessageOptions, Ref, Rejected, MAX_ID_BYTES};
use crate::store::{Draft, StoreResult};

impl WsSession {
    /// An `edit` or `delete` frame: `draft` names its message.
    pub(super) fn change(
        &mut self,
        room: String,
        draft: Draft,
        reference: Option<Ref>,
        retry: bool,
        ctx: &mut Context<Self>,
    ) {
        let id_bytes = draft.target().map_or(0, str::len);
        if id_bytes == 0 || id_bytes > MAX_ID_BYTES {
            let rejected = Rejected::new(
                ErrorCode::InvalidFrame,
                format!("id is a message's id: 1 to {MAX_ID_BYTES} bytes"),
                reference,
            );
            return self.reject(rejected, ctx);
        }
        if let Draft::Edit { text, .. } = &draft {
            if let Err(rejected) = protocol::check_text(text, reference.as_ref()) {
                return self.reject(rejected, ctx);
            }
        }
        // Joined rooms, and the user's own direct rooms, which a connection
        // is in without joining.
        let peer = RoomKind::direct(&room).and_then(|(a, b)| {
            let me = self.user.as_str();
            (a == me || b == me).then(|| if a == me { b } else { a }.to_owned())
        });
        if !self.rooms.contains_key(&room) && peer.is_none() {
            return self.reject(not_joined(&room, reference), ctx);
        }
        // A change is stored like a message, and paid for like one.
        if let Err(rejected) = self.charge(1, reference.as_ref()) {
            return self.reject(rejected, ctx);
        }
        // A change in a direct room reaches the peer as a direct message
        // does: the authorize hook has its say (at once when it need not
        // be asked).
        match peer {
            Some(peer) => self.authorized(
                OwnedTarget::User(peer.clone()),
                reference.clone(),
                ctx,
                move |this, ctx| {
                    this.change_authorized(room, draft, reference, retry, Some(peer), ctx)
                },
            ),
            None => self.change_authorized(room, draft, reference, retry, None, ctx),
        }
    }

    /// A change checked and paid for: checked against the stored message,
    /// then posted to its room (`peer` names a direct room's other user).
    fn change_authorized(
        &mut self,
        room: String,
        draft: Draft,
        reference: Option<Ref>,
        retry: bool,
        peer: Option<String>,
        ctx: &mut Context<Self>,
    ) {
        let target = draft.target().unwrap_or_default().to_owned();
        let deleting = matches!(draft, Draft::Delete { .. });
        let (store, registry) = (self.store.clone(), self.registry.clone());
        let (user, operator) = (self.user.clone(), self.admin);
        let joined = self.rooms.get(&room).cloned();
        let check = async move {
            let Some(message) = store.message(&room, &target).await? else {
                return Ok(Err(ErrorCode::NotFound));
            };
            // Deleted already: nothing to change, unless this repeats a
            // change whose answer was lost (the store finds it and acks it
            // again; anything else is a harmless no-op).
            if message.text().is_none() && !retry {
                return Ok(Err(ErrorCode::NotFound));
            }
            if message.from() != user && !(deleting && operator) {
                return Ok(Err(ErrorCode::Forbidden));
            }
            let addr = match (joined, peer) {
                (Some(addr), _) => Some(addr),
                (None, Some(peer)) => registry
                    .send(registry::OpenDirect { user, peer })
                    .await
                    .ok(),
                (None, None) => None,
            };
            Ok(addr.ok_or(ErrorCode::NotJoined))
        };
        // Waiting keeps a connection's changes in the order it sent them
        // (two quick edits of one message end with the second).
        ctx.wait(check.into_actor(self).map(
            move |checked: StoreResult<Result<Addr<Room>, ErrorCode>>, this, ctx| match checked {
                Ok(Ok(room)) => {
                    let options = MessageOptions {
                        reference,
                        retry,
                        ..MessageOptions::default()
                    };
                    let post = this.post(draft, options, ctx);
                    room.do_send(post);
                }
                Ok(Err(code)) => {
                    let why = match code {
                        ErrorCode::Forbidden => {
                            "only its author can change a message (operators may delete any)"
                        }
                        ErrorCode::NotFound => {
                            "there is no such message in this room (or it was deleted)"
                        }
                        _ => "the room is shutting down here; try again",
                    };
                    this.reject(Rejected::new(code, why, reference), ctx);
                }
                Err(err) => {
                    tracing::warn!(error = %err, "message lookup failed");
                    let rejected =
                        err.rejected("the change", "it was not made; try again", reference);
                    this.reject(rejected, ctx);
                }
            },
        ));
    }
}
