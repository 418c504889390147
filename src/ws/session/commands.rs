//! Client frames: parsing, the rate limit, and dispatch to the handlers
//! of each concern.

use actix::prelude::*;
use actix_ws::CloseCode;

use super::rooms::not_joined;
use super::{
    WsSession, MAX_REFUSED_IN_A_ROW, MAX_REPLAY_BACKLOG_BYTES, MAX_ROOMS_PER_SESSION,
    REF_PEEK_BYTES,
};
use crate::app::budget::Refusal;
use crate::chat::{registry, room};
use crate::metrics;
use crate::protocol::{self, ClientFrame, ErrorCode, MessageOptions, Ref, Rejected, ServerFrame};
use crate::store::Draft;

impl WsSession {
    /// Whether a frame (text, binary or ping: each costs the server an
    /// answer) is over the rate limit. A client that stays over it for
    /// [`MAX_REFUSED_IN_A_ROW`] frames is closed (1008).
    pub(super) fn over_rate(&mut self, ctx: &mut Context<Self>) -> bool {
        if self.limiter.allow() {
            self.refused_in_a_row = 0;
            return false;
        }
        metrics::get().frames_rate_limited.inc();
        self.refused_in_a_row += 1;
        if self.refused_in_a_row > MAX_REFUSED_IN_A_ROW {
            tracing::info!(user = %self.user, "client stays over the frame rate; closing");
            self.end(metrics::close::FLOOD, |this| {
                this.close(CloseCode::Policy, "over the frame rate limit", ctx)
            });
        }
        true
    }

    /// Takes `cost` messages from the user's budget (shared by all their
    /// connections and replicas), or says why not.
    pub(super) fn charge(&self, cost: usize, reference: Option<&Ref>) -> Result<(), Rejected> {
        let cost = u32::try_from(cost).unwrap_or(u32::MAX);
        self.budgets.charge(&self.user, cost).map_err(|refusal| {
            metrics::get().frames_rate_limited.inc();
            let message = match refusal {
                Refusal::Spent => {
                    "your account sends faster than it may across all its connections; \
                     this one was not sent, slow down"
                        .to_owned()
                }
                Refusal::Never { burst } => format!(
                    "this costs {cost} messages and your account may send {burst} at once; \
                     nothing was sent"
                ),
            };
            Rejected::new(ErrorCode::RateLimited, message, reference.cloned())
        })
    }

    pub(super) fn on_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        // Counted before parsing: parsing is the cost a flood is after.
        if self.over_rate(ctx) {
            // A send's ref tells the client which one was dropped; only a
            // short frame is looked into for it.
            let reference = (text.len() <= REF_PEEK_BYTES)
                .then(|| protocol::peek_reference(text))
                .flatten();
            let rejected = Rejected::new(
                ErrorCode::RateLimited,
                "too many frames; this one was dropped, slow down",
                reference,
            );
            return self.reject(rejected, ctx);
        }
        match protocol::parse(text) {
            Ok(frame) => {
                metrics::get().frames_received.inc(frame.kind());
                self.on_frame(frame, ctx)
            }
            Err(rejected) => {
                metrics::get().frames_received.inc("invalid");
                self.reject(rejected, ctx)
            }
        }
    }

    fn on_frame(&mut self, frame: ClientFrame, ctx: &mut Context<Self>) {
        let replays = matches!(
            frame,
            ClientFrame::Join { .. } | ClientFrame::Resume { .. } | ClientFrame::History { .. }
        );
        if replays && self.outbox.bytes() > MAX_REPLAY_BACKLOG_BYTES {
            let rejected = Rejected::new(
                ErrorCode::RateLimited,
                "earlier answers are still on their way to you; read them, then ask again",
                None,
            );
            return self.reject(rejected, ctx);
        }
        match frame {
            ClientFrame::Join { room } => self.join(room, None, ctx),
            ClientFrame::Resume { rooms } => {
                if rooms.len() > MAX_ROOMS_PER_SESSION {
                    let rejected = Rejected::new(
                        ErrorCode::InvalidRoom,
                        format!("a resume names at most {MAX_ROOMS_PER_SESSION} rooms"),
                        None,
                    );
                    return self.reject(rejected, ctx);
                }
                for (room, since) in rooms {
                    self.join(room, Some(since), ctx);
                }
            }
            ClientFrame::Leave { room } => {
                if self.rooms.remove(&room).is_some() {
                    self.registry.do_send(registry::LeaveRoom {
                        session: self.id,
                        room,
                    });
                } else {
                    self.reject(not_joined(&room, None), ctx);
                }
            }
            ClientFrame::Send {
                room,
                text,
                reference,
                delivery,
                retry,
            } => {
                if let Err(rejected) = protocol::check_text(&text, reference.as_ref()) {
                    return self.reject(rejected, ctx);
                }
                let Some(addr) = self.rooms.get(&room).cloned() else {
                    return self.reject(not_joined(&room, reference), ctx);
                };
                if let Err(rejected) = self.charge(1, reference.as_ref()) {
                    return self.reject(rejected, ctx);
                }
                let options = MessageOptions {
                    reference,
                    delivery,
                    confirm: false,
                    retry,
                };
                let post = self.post(Draft::Message(text), options, ctx);
                addr.do_send(post);
            }
            ClientFrame::Edit {
                room,
                id,
                text,
                reference,
                retry,
            } => self.change(
                room,
                Draft::Edit { target: id, text },
                reference,
                retry,
                ctx,
            ),
            ClientFrame::Delete {
                room,
                id,
                reference,
                retry,
            } => self.change(room, Draft::Delete { target: id }, reference, retry, ctx),
            ClientFrame::Typing { room, active } => match self.rooms.get(&room) {
                Some(addr) => addr.do_send(room::Typing {
                    session: self.id,
                    user: self.user.clone(),
                    active,
                }),
                None => self.reject(not_joined(&room, None), ctx),
            },
            ClientFrame::History {
                room,
                before,
                limit,
            } => self.history(room, before, limit, ctx),
            ClientFrame::Direct { to, text, options } => self.direct(to, text, options, ctx),
            ClientFrame::Group { to, text, options } => self.group(to, text, options, ctx),
            ClientFrame::FetchMissed { limit } => self.fetch_missed(limit, ctx),
            ClientFrame::Read { room, seq } => match self.rooms.get(&room) {
                Some(addr) => addr.do_send(room::Read {
                    session: self.id,
                    user: self.user.clone(),
                    seq,
                }),
                None => self.reject(not_joined(&room, None), ctx),
            },
            ClientFrame::Ping => self.send(ServerFrame::Pong.encode(), ctx),
        }
    }

    pub(super) fn post(
        &self,
        draft: Draft,
        options: MessageOptions,
        ctx: &mut Context<Self>,
    ) -> room::Post {
        room::Post {
            session: Some(self.id),
            user: self.user.clone(),
            avatar: self.avatar.clone(),
            draft,
            reference: options.reference,
            delivery: options.delivery,
            confirm: options.confirm,
            retry: options.retry,
            reply: room::Reply::Socket(ctx.address().recipient()),
        }
    }
}
