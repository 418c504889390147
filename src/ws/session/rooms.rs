//! Rooms: joining (with the authorize hook), history pages and group
//! messages.

use actix::prelude::*;
use actix_ws::CloseCode;

use super::{WsSession, MAX_ROOMS_PER_SESSION};
use crate::chat::names::{is_valid_user_name, may_access, RoomKind};
use crate::chat::{registry, wire};
use crate::hooks::Target;
use crate::metrics;
use crate::protocol::{
    self, ErrorCode, MessageOptions, Ref, Rejected, ServerFrame, DEFAULT_HISTORY_LIMIT,
    MAX_GROUP_RECIPIENTS, MAX_HISTORY_LIMIT,
};

impl WsSession {
    /// Runs `then` once the authorize hook allows `target` (at once without
    /// a hook or with a recent allow); otherwise refuses with `reference`.
    /// Waiting keeps the connection's frames in order.
    pub(super) fn authorized<F>(
        &mut self,
        target: OwnedTarget,
        reference: Option<Ref>,
        ctx: &mut Context<Self>,
        then: F,
    ) where
        F: FnOnce(&mut Self, &mut Context<Self>) + 'static,
    {
        if self
            .hooks
            .allowed_without_asking(&self.user, target.borrow())
        {
            return then(self, ctx);
        }
        let (hooks, user) = (self.hooks.clone(), self.user.clone());
        let ask = async move { hooks.authorize(&user, target.borrow()).await };
        ctx.wait(
            ask.into_actor(self)
                .map(move |decision, this, ctx| match decision {
                    Ok(true) => then(this, ctx),
                    Ok(false) => this.reject(
                        Rejected::new(ErrorCode::Forbidden, "not allowed", reference),
                        ctx,
                    ),
                    Err(err) => {
                        tracing::warn!(error = %err, "authorization webhook failed; denying");
                        let rejected = Rejected::new(
                            ErrorCode::AuthorizationUnavailable,
                            "authorization is unavailable right now; nothing was sent, try again",
                            reference,
                        );
                        this.reject(rejected, ctx);
                    }
                }),
        );
    }

    pub(super) fn group(
        &mut self,
        to: Vec<String>,
        text: String,
        options: MessageOptions,
        ctx: &mut Context<Self>,
    ) {
        if let Err(rejected) = protocol::check_text(&text, options.reference.as_ref()) {
            return self.reject(rejected, ctx);
        }
        let mut recipients = to;
        recipients.sort_unstable();
        recipients.dedup();
        if recipients.is_empty() || recipients.len() > MAX_GROUP_RECIPIENTS {
            let rejected = Rejected::new(
                ErrorCode::InvalidFrame,
                format!("a group message goes to 1 to {MAX_GROUP_RECIPIENTS} users"),
                options.reference,
            );
            return self.reject(rejected, ctx);
        }
        if let Some(bad) = recipients.iter().find(|name| !is_valid_user_name(name)) {
            let rejected = Rejected::new(
                ErrorCode::InvalidUser,
                format!("{bad:?} is not a valid user name; nothing was sent"),
                options.reference,
            );
            return self.reject(rejected, ctx);
        }
        // One direct message stored per recipient, all paid at once.
        if let Err(rejected) = self.charge(recipients.len(), options.reference.as_ref()) {
            return self.reject(rejected, ctx);
        }
        for recipient in recipients {
            self.send_direct(recipient, text.clone(), options.clone(), ctx);
        }
    }

    pub(super) fn join(&mut self, room: String, since: Option<u64>, ctx: &mut Context<Self>) {
        // Nothing to ask the hook: joined already, or refused below anyway.
        if self.rooms.contains_key(&room) || !may_access(&self.user, &room) {
            return self.join_authorized(room, since, ctx);
        }
        let target = match RoomKind::direct(&room) {
            Some((a, b)) => OwnedTarget::User(if a == self.user { b } else { a }.to_owned()),
            None => OwnedTarget::Room(room.clone()),
        };
        self.authorized(target, None, ctx, move |this, ctx| {
            this.join_authorized(room, since, ctx)
        });
    }

    fn join_authorized(&mut self, room: String, since: Option<u64>, ctx: &mut Context<Self>) {
        if !may_access(&self.user, &room) {
            let rejected = Rejected::new(
                ErrorCode::InvalidRoom,
                format!(
                    "{room:?} is not a room you can join: names are 1-64 letters, digits, '_', '-' or '.', \
                     and direct rooms are open to their two users only"
                ),
                None,
            );
            return self.reject(rejected, ctx);
        }
        if !self.rooms.contains_key(&room)
            && self.rooms.len() + self.joining >= MAX_ROOMS_PER_SESSION
        {
            let rejected = Rejected::new(
                ErrorCode::InvalidRoom,
                format!(
                    "a connection can be in at most {MAX_ROOMS_PER_SESSION} rooms; leave one first"
                ),
                None,
            );
            return self.reject(rejected, ctx);
        }
        self.joining += 1;
        let request = self.registry.send(registry::JoinRoom {
            session: self.id,
            room: room.clone(),
            since,
        });
        // Wait so that a `send` right after `join` finds the room known.
        ctx.wait(request.into_actor(self).map(move |reply, this, ctx| {
            this.joining -= 1;
            match reply {
                Ok(Some(addr)) => {
                    this.rooms.insert(room, addr);
                }
                _ => this.end(metrics::close::RESTART, |this| {
                    this.close(CloseCode::Restart, "server is shutting down", ctx)
                }),
            }
        }));
    }

    pub(super) fn history(
        &mut self,
        room: String,
        before: Option<u64>,
        limit: Option<u32>,
        ctx: &mut Context<Self>,
    ) {
        if !self.rooms.contains_key(&room) {
            return self.reject(not_joined(&room, None), ctx);
        }
        let limit = limit
            .unwrap_or(DEFAULT_HISTORY_LIMIT)
            .clamp(1, MAX_HISTORY_LIMIT);
        let store = self.store.clone();
        let read = async move {
            let messages = store.messages(&room, before, limit).await;
            (room, messages)
        };
        ctx.spawn(
            read.into_actor(self)
                .map(|(room, result), this, ctx| match result {
                    Ok(messages) => {
                        let frame = ServerFrame::History {
                            room: &room,
                            messages: wire::messages(&messages),
                        }
                        .encode();
                        this.send(frame, ctx);
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "history read failed");
                        this.reject(err.rejected("history", "try again", None), ctx);
                    }
                }),
        );
    }
}

/// A [`Target`] that can wait for the authorize hook.
pub(super) enum OwnedTarget {
    User(String),
    Room(String),
}

impl OwnedTarget {
    fn borrow(&self) -> Target<'_> {
        match self {
            Self::User(user) => Target::User(user),
            Self::Room(room) => Target::Room(room),
        }
    }
}

pub(super) fn not_joined(room: &str, reference: Option<protocol::Ref>) -> Rejected {
    Rejected::new(
        ErrorCode::NotJoined,
        format!("join {room:?} first"),
        reference,
    )
}
