//! The connection itself: the session's outbox (`ws::outbox`) on the
//! socket, a batch written at a time and the connection cut when the
//! client falls too far behind; the heartbeat; closing.

use std::time::Instant;

use actix::prelude::*;

use super::{WsSession, CLIENT_TIMEOUT, HEARTBEAT_INTERVAL};
use crate::chat::{registry, Evict};
use crate::metrics;
use crate::protocol::Rejected;
use crate::store::now_millis;
use crate::ws::outbox::Outbound;
use actix_ws::{CloseCode, CloseReason};
use bytestring::ByteString;

impl WsSession {
    pub(super) fn send(&mut self, frame: ByteString, ctx: &mut Context<Self>) {
        self.enqueue(Outbound::Text(frame), ctx);
    }

    pub(super) fn reject(&mut self, rejected: Rejected, ctx: &mut Context<Self>) {
        metrics::error_sent(rejected.code);
        self.send(rejected.encode(), ctx);
    }

    pub(super) fn enqueue(&mut self, item: Outbound, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        if let Err(behind) = self.outbox.push(item) {
            tracing::warn!(user = %self.user, frames = behind.frames, bytes = behind.bytes, "client reads too slowly; cutting its connection");
            return self.end(metrics::close::SLOW, |this| this.hang_up(ctx));
        }
        self.pump(ctx);
    }

    /// Cuts the connection: a close frame would wait behind the writes the
    /// client is not reading, and with it everything queued.
    fn hang_up(&mut self, ctx: &mut Context<Self>) {
        self.closing = true;
        self.outbox.clear();
        self.hangup.now();
        ctx.stop();
    }

    /// Records why the connection ends (the first reason wins), then ends it.
    pub(super) fn end(&mut self, reason: &'static str, then: impl FnOnce(&mut Self)) {
        if !self.closing {
            self.ending = reason;
        }
        then(self)
    }

    /// Sends a close frame after whatever is queued, then stops.
    pub(super) fn close(&mut self, code: CloseCode, description: &str, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.outbox.push_close(Some(CloseReason {
            code,
            description: Some(description.to_owned()),
        }));
        self.pump(ctx);
    }

    /// Writes everything queued, unless a write is already in flight (its
    /// completion calls `pump` again).
    fn pump(&mut self, ctx: &mut Context<Self>) {
        // No socket: a write holds it, or the close frame went out.
        if self.socket.is_none() {
            return;
        }
        let Some(batch) = self.outbox.start_write() else {
            return;
        };
        let mut socket = self.socket.take().expect("checked above");
        let written = batch.bytes;
        let write = async move {
            for item in batch.items {
                let sent = match item {
                    Outbound::Text(text) => socket.text(text).await,
                    Outbound::Ping => socket.ping(b"").await,
                    Outbound::Pong(payload) => socket.pong(&payload).await,
                    Outbound::Close(reason) => {
                        let _ = socket.close(reason).await;
                        return None;
                    }
                };
                sent.ok()?;
            }
            Some(socket)
        };
        ctx.spawn(
            write
                .into_actor(self)
                .map(move |socket, this, ctx| match socket {
                    Some(socket) => {
                        // The client takes what it is sent: alive, though a
                        // ping may wait behind a large replay for a while.
                        this.last_heard = Instant::now();
                        this.outbox.written(written);
                        this.socket = Some(socket);
                        this.pump(ctx);
                    }
                    // Closed by us, or the client went away.
                    None => ctx.stop(),
                }),
        );
    }

    /// Tells the registry, once, after whatever the frames handled so far
    /// asked of it (a `resume` waits for its joins).
    pub(super) fn become_ready(&mut self, ctx: &mut Context<Self>) {
        if std::mem::replace(&mut self.ready, true) {
            return;
        }
        // Spawned, not waited: a spawned future runs only once every
        // waiting one is done (waits run last-in first-out, so a wait
        // queued now would run before the joins queued by the frame).
        ctx.spawn(actix::fut::ready(()).map(|(), this: &mut Self, _ctx| {
            this.registry.do_send(registry::Ready { session: this.id });
        }));
    }

    pub(super) fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        let stalled = self.last_beat.elapsed() > HEARTBEAT_INTERVAL * 2;
        self.last_beat = Instant::now();
        if stalled {
            // What the client sent while this replica was frozen is still
            // unread in the socket; judging it now would close every
            // healthy connection at once. It gets a full timeout from now.
            self.last_heard = self.last_beat;
        }
        if self.last_heard.elapsed() > CLIENT_TIMEOUT {
            tracing::info!(user = %self.user, "client answered no ping in time; cutting it off");
            return self.end(metrics::close::TIMEOUT, |this| this.hang_up(ctx));
        }
        metrics::get()
            .outbox_bytes
            .observe(self.outbox.bytes() as f64);
        self.enqueue(Outbound::Ping, ctx);
        self.recheck_login(ctx);
    }

    /// A login that expired or was deleted from the store (by an operator,
    /// or a logout whose broadcast this replica missed) ends its open
    /// connections too, within one check period. A store that cannot
    /// answer is no verdict.
    fn recheck_login(&mut self, ctx: &mut Context<Self>) {
        let Some((key, every)) = self.login_key.clone() else {
            return;
        };
        if Instant::now() < self.login_check_at {
            return;
        }
        self.login_check_at = Instant::now() + every;
        let store = self.store.clone();
        let check = async move { store.session_load(&key, now_millis()).await };
        ctx.spawn(check.into_actor(self).map(|found, _this, ctx| {
            if let Ok(None) = found {
                ctx.notify(Evict::LoggedOut);
            }
        }));
    }
}
