//! The bound on what waits for the store, replica-wide.
//!
//! Every reliable post holds a [`Permit`] from the moment its room accepts
//! it until the store answers. When the messages or bytes waiting would
//! pass the bound, the post is refused at once (`overloaded`) instead of
//! queueing: memory stays bounded and the sender knows to retry, where an
//! unbounded queue would only turn overload into minutes of latency.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes of message text waiting for the store, at most.
pub const MAX_BYTES: usize = 64 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct Backlog {
    inner: Arc<Counts>,
}

#[derive(Debug)]
struct Counts {
    messages: AtomicUsize,
    bytes: AtomicUsize,
    max_messages: usize,
    max_bytes: usize,
}

/// One message's place in the backlog; released when dropped.
#[derive(Debug)]
#[must_use]
pub struct Permit {
    counts: Arc<Counts>,
    bytes: usize,
}

impl Backlog {
    pub fn new(max_messages: usize, max_bytes: usize) -> Self {
        Self {
            inner: Arc::new(Counts {
                messages: AtomicUsize::new(0),
                bytes: AtomicUsize::new(0),
                max_messages,
                max_bytes,
            }),
        }
    }

    /// A place for a message of `bytes`, or `None` if the store is that far behind.
    pub fn admit(&self, bytes: usize) -> Option<Permit> {
        let counts = &self.inner;
        let messages = counts.messages.fetch_add(1, Ordering::AcqRel);
        let queued = counts.bytes.fetch_add(bytes, Ordering::AcqRel);
        if messages >= counts.max_messages || queued + bytes > counts.max_bytes {
            counts.messages.fetch_sub(1, Ordering::AcqRel);
            counts.bytes.fetch_sub(bytes, Ordering::AcqRel);
            return None;
        }
        crate::metrics::get().store_backlog_messages.inc();
        Some(Permit {
            counts: counts.clone(),
            bytes,
        })
    }

    /// Messages waiting for the store now.
    pub fn messages(&self) -> usize {
        self.inner.messages.load(Ordering::Acquire)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.counts.messages.fetch_sub(1, Ordering::AcqRel);
        self.counts.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
        crate::metrics::get().store_backlog_messages.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_message_bound_and_frees_places_on_drop() {
        let backlog = Backlog::new(2, MAX_BYTES);
        let one = backlog.admit(10).expect("first");
        let _two = backlog.admit(10).expect("second");
        assert!(backlog.admit(10).is_none(), "third is over the bound");
        assert_eq!(backlog.messages(), 2, "a refused message holds no place");
        drop(one);
        assert!(backlog.admit(10).is_some(), "a freed place is reused");
    }

    #[test]
    fn admits_up_to_the_byte_bound() {
        let backlog = Backlog::new(100, 1000);
        let _big = backlog.admit(900).expect("fits");
        assert!(backlog.admit(200).is_none(), "would pass 1000 bytes");
        assert!(backlog.admit(100).is_some(), "exactly at the bound fits");
    }
}
