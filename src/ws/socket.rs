//! The TCP connection under a WebSocket, so a session can cut it.
//!
//! A client that stops reading leaves the session's writes stuck in the
//! HTTP layer: a close frame queued behind them is never sent, and the
//! connection, with everything queued for it, stays until the client goes.
//! Shutting the socket down makes those writes fail at once, which ends
//! the connection and frees what was queued.

use std::net::Shutdown;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::rc::{Rc, Weak};

/// Kept in each connection's data (see `server.rs`, `on_connect`), so it is
/// dropped with the connection and its socket.
pub struct ConnectionFd(RawFd);

impl ConnectionFd {
    pub fn of(tcp: &impl AsRawFd) -> Rc<Self> {
        Rc::new(Self(tcp.as_raw_fd()))
    }
}

/// A session's means to cut its connection; a no-op once the connection
/// is gone (or when it was not TCP).
#[derive(Default)]
pub struct Hangup(Weak<ConnectionFd>);

impl Hangup {
    pub fn new(connection: Option<&Rc<ConnectionFd>>) -> Self {
        Self(connection.map(Rc::downgrade).unwrap_or_default())
    }

    pub fn now(&self) {
        let Some(connection) = self.0.upgrade() else {
            tracing::debug!("connection already gone");
            return;
        };
        tracing::debug!(fd = connection.0, "cutting the connection");
        // SAFETY: the descriptor is still open: the connection data the
        // `Rc` lives in is dropped together with the socket (actix-http's
        // dispatcher holds both; pooled requests drop their `conn_data`).
        let fd = unsafe { BorrowedFd::borrow_raw(connection.0) };
        let _ = socket2::SockRef::from(&fd).shutdown(Shutdown::Both);
    }
}
