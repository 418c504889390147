//! Refuses an oversized WebSocket frame on its header.
//!
//! actix-http's decoder waits for a whole frame before it compares its
//! length with the limit, and actix-ws buffers everything the socket has
//! meanwhile: a header announcing a gigabyte, then bytes at wire speed, grew
//! a replica by a gigabyte before the close. [`Gauge`] follows the frame
//! boundaries in the bytes as they arrive and fails the connection's input
//! at the first header over the limit, so no more than one read of it is
//! ever buffered.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::dev::{Payload, ServiceRequest};
use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use actix_web::HttpMessage;
use futures_util::Stream;

use crate::protocol::MAX_FRAME_BYTES;

/// Replaces `request`'s body with one that fails at an oversized frame
/// (the session closes such a connection with 1009).
pub fn gauge(request: &mut ServiceRequest) {
    let body = request.take_payload();
    let gauged: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(Gauged {
        body,
        gauge: Gauge::new(MAX_FRAME_BYTES as u64),
        failed: false,
    });
    request.set_payload(Payload::from(gauged));
}

struct Gauged {
    body: Payload,
    gauge: Gauge,
    failed: bool,
}

impl Stream for Gauged {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        let next = Pin::new(&mut this.body).poll_next(cx);
        if let Poll::Ready(Some(Ok(bytes))) = &next {
            if this.gauge.feed(bytes).is_err() {
                this.failed = true;
                return Poll::Ready(Some(Err(PayloadError::Overflow)));
            }
        }
        next
    }
}

/// Where a client's byte stream stands in its frames.
#[derive(Debug)]
pub struct Gauge {
    limit: u64,
    /// The header read so far (at most 14 bytes), while in one.
    header: Vec<u8>,
    /// Payload bytes of the current frame still to come.
    payload_left: u64,
}

/// A frame announced a payload over the limit.
#[derive(Debug, PartialEq, Eq)]
pub struct Oversized(pub u64);

impl Gauge {
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            header: Vec::with_capacity(14),
            payload_left: 0,
        }
    }

    /// Follows `bytes`, the next of the stream.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), Oversized> {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let skip = self.payload_left.min(bytes.len() as u64);
                self.payload_left -= skip;
                bytes = &bytes[skip as usize..];
                continue;
            }
            self.header.push(bytes[0]);
            bytes = &bytes[1..];
            if let Some(length) = self.header_done() {
                if length > self.limit {
                    return Err(Oversized(length));
                }
                self.header.clear();
                self.payload_left = length;
            }
        }
        Ok(())
    }

    /// The payload length, once the header is complete.
    fn header_done(&self) -> Option<u64> {
        let header = &self.header;
        if header.len() < 2 {
            return None;
        }
        let mask = if header[1] & 0x80 != 0 { 4 } else { 0 };
        let (extended, length) = match header[1] & 0x7f {
            126 => (2, None),
            127 => (8, None),
            short => (0, Some(u64::from(short))),
        };
        if header.len() < 2 + extended + mask {
            return None;
        }
        length.or_else(|| {
            let mut value = 0u64;
            for byte in &header[2..2 + extended] {
                value = (value << 8) | u64::from(*byte);
            }
            Some(value)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame header for a payload of `length`.
    fn header(length: u64) -> Vec<u8> {
        let mut bytes = vec![0x81];
        match length {
            0..=125 => bytes.push(0x80 | length as u8),
            126..=0xffff => {
                bytes.push(0x80 | 126);
                bytes.extend_from_slice(&(length as u16).to_be_bytes());
            }
            _ => {
                bytes.push(0x80 | 127);
                bytes.extend_from_slice(&length.to_be_bytes());
            }
        }
        bytes.extend_from_slice(&[1, 2, 3, 4]);
        bytes
    }

    #[test]
    fn follows_frames_of_every_length_form_split_anywhere() {
        let mut stream = Vec::new();
        for length in [0, 5, 125, 126, 300, 65_535, 65_536] {
            stream.extend(header(length));
            stream.extend(std::iter::repeat_n(b'x', length as usize));
        }
        for split in [1, 2, 3, 7, 13, 1000, stream.len()] {
            let mut gauge = Gauge::new(65_536);
            for piece in stream.chunks(split) {
                assert_eq!(gauge.feed(piece), Ok(()), "split {split}");
            }
            assert!(gauge.header.is_empty() && gauge.payload_left == 0);
        }
    }

    #[test]
    fn refuses_the_first_header_over_the_limit_before_its_payload() {
        let mut gauge = Gauge::new(65_536);
        let mut stream = header(10);
        stream.extend([b'y'; 10]);
        stream.extend(header(1 << 30));
        let (first, rest) = stream.split_at(5);
        assert_eq!(gauge.feed(first), Ok(()));
        assert_eq!(gauge.feed(rest), Err(Oversized(1 << 30)));
        assert_eq!(
            Gauge::new(65_536).feed(&header(65_537)),
            Err(Oversized(65_537))
        );
    }
}
