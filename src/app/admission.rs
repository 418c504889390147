//! Bounds on what connections may hold: how many are open at once, how
//! long a request body may take, and how many WebSockets one user or one
//! address may keep.
//!
//! Without them, a thousand clients sending a login body one byte every
//! five seconds held a thousand descriptors and locked every login out,
//! and one user opened 2000 WebSockets in under a second. A connection
//! past the cap is answered 503 (and closed) rather than left unaccepted,
//! so the client knows why; a body that is not in by the deadline ends
//! its request with 408.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::HttpMessage;
use actix_web::HttpResponse;
use futures_util::Stream;

/// Open connections of a replica, counted from accept to close.
#[derive(Clone, Default)]
pub struct Connections {
    open: Arc<AtomicUsize>,
}

/// One accepted connection's place; kept in the connection's data, so it
/// is given back when the connection closes.
pub struct Slot {
    open: Arc<AtomicUsize>,
    /// Within the cap when accepted.
    pub admitted: bool,
}

impl Connections {
    /// A place for a new connection; past `max` (0: no cap) it is not
    /// admitted and its requests get 503.
    pub fn accept(&self, max: usize) -> Slot {
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        Slot {
            open: self.open.clone(),
            admitted: max == 0 || before < max,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Middleware: a request on a connection past the cap gets 503 and the
/// connection is closed after it.
pub async fn over_capacity(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // A liveness probe must not fail for load: that would restart the pod.
    if req.path() != "/healthz" && req.conn_data::<Slot>().is_some_and(|slot| !slot.admitted) {
        return Err(OverCapacity.into());
    }
    next.call(req).await
}

#[derive(Debug, thiserror::Error)]
#[error("This replica has as many connections as it takes; try again shortly.")]
struct OverCapacity;

impl actix_web::ResponseError for OverCapacity {
    fn status_code(&self) -> actix_web::http::StatusCode {
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE
    }

    fn error_response(&self) -> HttpResponse {
        // actix drops a `Connection` header set by hand: this closes it.
        HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "5"))
            .force_close()
            .body(self.to_string())
    }
}

/// Middleware: the request body must be in within `timeout`, counted from
/// when the request head arrived.
pub fn body_deadline(req: &mut ServiceRequest, timeout: Duration) {
    let payload = req.take_payload();
    let deadline = Box::pin(tokio::time::sleep(timeout));
    req.set_payload(Payload::Stream {
        payload: Box::pin(Deadline { payload, deadline }),
    });
}

struct Deadline {
    payload: Payload,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Poll::Ready(item) = Pin::new(&mut self.payload).poll_next(cx) {
            return Poll::Ready(item);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request body took too long",
            ))))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Counts per key with a cap each; a [`Held`] gives its count back.
struct Counted<K> {
    max: usize,
    counts: Mutex<HashMap<K, usize>>,
}

impl<K: Hash + Eq + Clone> Counted<K> {
    fn new(max: usize) -> Self {
        Self {
            max,
            counts: Mutex::new(HashMap::new()),
        }
    }

    fn take(&self, key: &K) -> bool {
        if self.max == 0 {
            return true;
        }
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(key.clone()).or_default();
        if *count >= self.max {
            return false;
        }
        *count += 1;
        true
    }

    fn give(&self, key: &K) {
        if self.max == 0 {
            return;
        }
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(key);
            }
        }
    }
}

/// WebSockets per user and per client address, on this replica.
pub struct SocketCaps {
    users: Counted<String>,
    addresses: Counted<IpAddr>,
}

/// Which cap a new WebSocket would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverCap {
    User,
    Address,
}

/// A WebSocket's place under both caps, given back when dropped.
pub struct Held {
    caps: Arc<SocketCaps>,
    user: String,
    address: IpAddr,
}

impl SocketCaps {
    /// `0` for either is no cap.
    pub fn new(per_user: usize, per_address: usize) -> Arc<Self> {
        Arc::new(Self {
            users: Counted::new(per_user),
            addresses: Counted::new(per_address),
        })
    }

    pub fn hold(self: &Arc<Self>, user: &str, address: IpAddr) -> Result<Held, OverCap> {
        if !self.addresses.take(&address) {
            return Err(OverCap::Address);
        }
        if !self.users.take(&user.to_owned()) {
            self.addresses.give(&address);
            return Err(OverCap::User);
        }
        Ok(Held {
            caps: self.clone(),
            user: user.to_owned(),
            address,
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.caps.users.give(&self.user);
        self.caps.addresses.give(&self.address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_per_user_and_per_address_and_free_on_drop() {
        let caps = SocketCaps::new(2, 3);
        let here: IpAddr = "10.0.0.1".parse().unwrap();
        let a = caps.hold("ann", here).unwrap();
        let _b = caps.hold("ann", here).unwrap();
        assert_eq!(caps.hold("ann", here).err(), Some(OverCap::User));
        let _c = caps.hold("bob", here).unwrap();
        assert_eq!(caps.hold("cid", here).err(), Some(OverCap::Address));
        drop(a);
        assert!(
            caps.hold("ann", here).is_ok(),
            "a closed socket frees its place"
        );
        assert!(caps.hold("dan", "10.0.0.2".parse().unwrap()).is_ok());
    }

    #[test]
    fn refused_by_the_user_cap_gives_the_address_place_back() {
        let caps = SocketCaps::new(1, 2);
        let here: IpAddr = "10.0.0.1".parse().unwrap();
        let _a = caps.hold("ann", here).unwrap();
        for _ in 0..5 {
            assert_eq!(caps.hold("ann", here).err(), Some(OverCap::User));
        }
        assert!(caps.hold("bob", here).is_ok());
    }

    #[test]
    fn connections_past_the_cap_are_not_admitted_until_one_closes() {
        let connections = Connections::default();
        let first = connections.accept(2);
        let second = connections.accept(2);
        let third = connections.accept(2);
        assert!(first.admitted && second.admitted && !third.admitted);
        drop(third);
        drop(first);
        assert!(connections.accept(2).admitted);
        assert!(connections.accept(0).admitted, "0 is no cap");
    }
}
