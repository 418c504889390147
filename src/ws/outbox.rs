//! What waits to be written to one client: frames in the order they were
//! produced, bounded in count and in bytes, drained by one write at a time
//! (a second write could overtake the first). The session actor owns one
//! and only wires it to the socket.

use std::collections::VecDeque;

use actix_web::web::Bytes;
use actix_ws::CloseReason;
use bytestring::ByteString;

/// One thing to write to the client.
#[derive(Debug)]
pub enum Outbound {
    Text(ByteString),
    Ping,
    Pong(Bytes),
    Close(Option<CloseReason>),
}

impl Outbound {
    fn len(&self) -> usize {
        match self {
            Outbound::Text(text) => text.len(),
            Outbound::Pong(payload) => payload.len(),
            Outbound::Ping | Outbound::Close(_) => 0,
        }
    }
}

/// The client reads slower than it is written to: what was queued when
/// the next frame did not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow {
    pub frames: usize,
    pub bytes: usize,
}

/// Everything queued when a write starts, written in one go.
#[derive(Debug)]
pub struct Batch {
    pub items: VecDeque<Outbound>,
    /// What [`Outbox::written`] releases once the batch is written.
    pub bytes: usize,
}

#[derive(Debug)]
pub struct Outbox {
    queue: VecDeque<Outbound>,
    /// Bytes queued and in the write in flight: both are memory the client
    /// has not taken yet.
    bytes: usize,
    writing: bool,
    max_frames: usize,
    max_bytes: usize,
}

impl Outbox {
    pub fn new(max_frames: usize, max_bytes: usize) -> Self {
        Self {
            queue: VecDeque::new(),
            bytes: 0,
            writing: false,
            max_frames,
            max_bytes,
        }
    }

    /// Queues `item`, or refuses it when the client is that far behind.
    pub fn push(&mut self, item: Outbound) -> Result<(), Overflow> {
        if self.queue.len() >= self.max_frames || self.bytes + item.len() > self.max_bytes {
            return Err(Overflow {
                frames: self.queue.len(),
                bytes: self.bytes,
            });
        }
        self.bytes += item.len();
        self.queue.push_back(item);
        Ok(())
    }

    /// Queues the close frame, which is written after everything before
    /// it whatever the bounds.
    pub fn push_close(&mut self, reason: Option<CloseReason>) {
        self.queue.push_back(Outbound::Close(reason));
    }

    /// Everything queued, to write now; `None` while a write is in flight
    /// (its end, [`Outbox::written`], lets the next one start) or when
    /// nothing waits.
    pub fn start_write(&mut self) -> Option<Batch> {
        if self.writing || self.queue.is_empty() {
            return None;
        }
        self.writing = true;
        let items = std::mem::take(&mut self.queue);
        let bytes = items.iter().map(Outbound::len).sum();
        Some(Batch { items, bytes })
    }

    /// The write of a batch of `bytes` is done: its memory is the client's.
    pub fn written(&mut self, bytes: usize) {
        debug_assert!(self.writing, "a write ended that never started");
        self.writing = false;
        self.bytes -= bytes;
    }

    /// Bytes the client has not taken yet (queued and being written).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Frames waiting for the next write.
    pub fn waiting(&self) -> usize {
        self.queue.len()
    }

    /// Drops what waits (the connection is being cut).
    pub fn clear(&mut self) {
        for item in self.queue.drain(..) {
            self.bytes -= item.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(body: &str) -> Outbound {
        Outbound::Text(body.into())
    }

    fn texts(batch: &Batch) -> Vec<&str> {
        batch
            .items
            .iter()
            .map(|item| match item {
                Outbound::Text(text) => &**text,
                Outbound::Ping => "ping",
                Outbound::Pong(_) => "pong",
                Outbound::Close(_) => "close",
            })
            .collect()
    }

    #[test]
    fn frames_leave_in_order_one_write_at_a_time() {
        let mut outbox = Outbox::new(10, 1000);
        outbox.push(text("a")).unwrap();
        outbox.push(text("bb")).unwrap();
        let first = outbox.start_write().unwrap();
        assert_eq!(texts(&first), ["a", "bb"]);
        assert_eq!(first.bytes, 3);
        outbox.push(text("c")).unwrap();
        outbox.push(Outbound::Ping).unwrap();
        assert!(outbox.start_write().is_none(), "a write is in flight");
        outbox.written(first.bytes);
        let second = outbox.start_write().unwrap();
        assert_eq!(texts(&second), ["c", "ping"]);
        outbox.written(second.bytes);
        assert!(outbox.start_write().is_none(), "nothing waits");
        assert_eq!(outbox.bytes(), 0);
    }

    #[test]
    fn a_client_too_far_behind_overflows_by_count_or_by_bytes() {
        let mut by_count = Outbox::new(2, 1000);
        by_count.push(text("a")).unwrap();
        by_count.push(text("b")).unwrap();
        assert_eq!(
            by_count.push(text("c")),
            Err(Overflow {
                frames: 2,
                bytes: 2
            })
        );
        let mut by_bytes = Outbox::new(100, 10);
        by_bytes.push(text("12345")).unwrap();
        by_bytes.push(text("12345")).unwrap();
        assert!(by_bytes.push(text("1")).is_err());
        assert!(
            by_bytes.push(Outbound::Ping).is_ok(),
            "a ping costs no bytes"
        );
    }

    #[test]
    fn bytes_in_flight_count_until_written() {
        let mut outbox = Outbox::new(100, 10);
        outbox.push(text("12345678")).unwrap();
        let batch = outbox.start_write().unwrap();
        assert_eq!(outbox.waiting(), 0);
        assert_eq!(outbox.bytes(), 8, "the write has not reached the client");
        assert!(outbox.push(text("123")).is_err());
        outbox.written(batch.bytes);
        assert!(outbox.push(text("123")).is_ok());
    }

    #[test]
    fn the_close_frame_goes_last_whatever_the_bounds() {
        let mut outbox = Outbox::new(1, 10);
        outbox.push(text("bye")).unwrap();
        outbox.push_close(None);
        let batch = outbox.start_write().unwrap();
        assert_eq!(texts(&batch), ["bye", "close"]);
    }

    #[test]
    fn clearing_keeps_the_write_in_flight_counted() {
        let mut outbox = Outbox::new(100, 100);
        outbox.push(text("1234")).unwrap();
        let batch = outbox.start_write().unwrap();
        outbox.push(text("56")).unwrap();
        outbox.clear();
        assert_eq!((outbox.waiting(), outbox.bytes()), (0, 4));
        outbox.written(batch.bytes);
        assert_eq!(outbox.bytes(), 0);
    }
}
