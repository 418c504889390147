//! Direct messages: the conversation rooms this connection writes to, and
//! the offline inbox (`fetch_missed`, the pending count).

use actix::prelude::*;

use super::rooms::OwnedTarget;
use super::{WsSession, DIRECT_ROOMS_CAPACITY};
use crate::chat::names::is_valid_user_name;
use crate::chat::room::Room;
use crate::chat::{registry, wire};
use crate::metrics;
use crate::protocol::{self, ErrorCode, MessageOptions, Rejected, ServerFrame, MAX_FETCH_MISSED};
use crate::store::{Draft, StoreResult};

impl WsSession {
    pub(super) fn fetch_missed(&mut self, limit: Option<u32>, ctx: &mut Context<Self>) {
        let limit = limit.unwrap_or(MAX_FETCH_MISSED).clamp(1, MAX_FETCH_MISSED);
        let (store, user) = (self.store.clone(), self.user.clone());
        let fetch = async move { store.fetch_missed(&user, limit).await };
        // Waiting keeps one fetch's messages and its `complete` together.
        ctx.wait(
            fetch
                .into_actor(self)
                .map(|result, this, ctx| match result {
                    Ok(missed) => {
                        metrics::get()
                            .offline_fetched
                            .inc_by(missed.messages.len() as u64);
                        for message in &missed.messages {
                            this.send(wire::frame(message).encode(), ctx);
                        }
                        this.send(
                            ServerFrame::FetchMissedComplete { left: missed.left }.encode(),
                            ctx,
                        );
                        if !missed.deliveries.is_empty() {
                            this.registry
                                .do_send(registry::ConfirmDeliveries(missed.deliveries));
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "fetching missed messages failed");
                        let rejected =
                            err.rejected("missed messages", "they are kept; try again", None);
                        this.reject(rejected, ctx);
                    }
                }),
        );
    }

    /// Tells the client how many direct messages wait for it.
    pub(super) fn announce_pending(&mut self, ctx: &mut Context<Self>) {
        let (store, user) = (self.store.clone(), self.user.clone());
        let count = async move { store.pending_count(&user).await };
        ctx.spawn(
            count
                .into_actor(self)
                .map(|result, this, ctx| match result {
                    Ok(0) => {}
                    Ok(count) => this.send(ServerFrame::Pending { count }.encode(), ctx),
                    Err(err) => tracing::warn!(error = %err, "could not count pending messages"),
                }),
        );
    }

    pub(super) fn direct(
        &mut self,
        to: String,
        text: String,
        options: MessageOptions,
        ctx: &mut Context<Self>,
    ) {
        if let Err(rejected) = protocol::check_text(&text, options.reference.as_ref()) {
            return self.reject(rejected, ctx);
        }
        if !is_valid_user_name(&to) {
            let rejected = Rejected::new(
                ErrorCode::InvalidUser,
                format!("{to:?} is not a valid user name"),
                options.reference,
            );
            return self.reject(rejected, ctx);
        }
        if let Err(rejected) = self.charge(1, options.reference.as_ref()) {
            return self.reject(rejected, ctx);
        }
        self.send_direct(to, text, options, ctx);
    }

    /// A direct message checked and paid for: asks the authorize hook, then
    /// posts it to the conversation.
    pub(super) fn send_direct(
        &mut self,
        to: String,
        text: String,
        options: MessageOptions,
        ctx: &mut Context<Self>,
    ) {
        let reference = options.reference.clone();
        self.authorized(
            OwnedTarget::User(to.clone()),
            reference,
            ctx,
            move |this, ctx| this.direct_authorized(to, text, options, ctx),
        );
    }

    fn direct_authorized(
        &mut self,
        to: String,
        text: String,
        options: MessageOptions,
        ctx: &mut Context<Self>,
    ) {
        if let Some(room) = self.direct_rooms.get(&to).filter(|room| room.connected()) {
            let post = self.post(Draft::Message(text), options, ctx);
            room.do_send(post);
            return;
        }
        // First message to `to` from this connection: check the user exists
        // and have the registry open the conversation once; later messages
        // go straight to the room, not through the registry.
        let (store, registry) = (self.store.clone(), self.registry.clone());
        let (user, peer) = (self.user.clone(), to.clone());
        let open = async move {
            let Some(_) = store.find_user(&peer).await? else {
                return Ok(None);
            };
            Ok(registry
                .send(registry::OpenDirect { user, peer })
                .await
                .ok())
        };
        // Waiting keeps this user's direct messages in the order sent.
        ctx.wait(open.into_actor(self).map(
            move |opened: StoreResult<Option<Addr<Room>>>, this, ctx| match opened {
                Ok(Some(room)) => {
                    if this.direct_rooms.len() >= DIRECT_ROOMS_CAPACITY {
                        this.direct_rooms.clear();
                    }
                    let post = this.post(Draft::Message(text), options, ctx);
                    room.do_send(post);
                    this.direct_rooms.insert(to, room);
                }
                Ok(None) => {
                    let rejected = Rejected::new(
                        ErrorCode::UnknownUser,
                        format!("there is no user {to:?}"),
                        options.reference,
                    );
                    this.reject(rejected, ctx);
                }
                Err(err) => {
                    tracing::warn!(error = %err, "user lookup failed");
                    let rejected = err.rejected(
                        "the message",
                        "it was not sent; send it again",
                        options.reference,
                    );
                    this.reject(rejected, ctx);
                }
            },
        ));
    }
}
