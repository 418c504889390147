//! What the fuzz targets (`fuzz/`) run on each input, kept here so the
//! test suite can run it too, on stable, over the corpus and a seeded
//! stream of inputs.
//!
//! Beyond "never panics", each checks a property a client relies on:
//! the frame gauge judges a byte stream the same however it is split into
//! reads, the strict JSON parser accepts exactly what serde_json does,
//! with the same meaning, minus repeated keys, and a frame reads the same
//! through the one-pass reader as through the careful one.

use serde_json::Value;

use super::frames::Gauge;
use crate::protocol::{self, json};

/// One input for the protocol: its text parsed as a client frame, its
/// `ref` peeked, its text checked.
pub fn frame(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = protocol::parse(text);
    assert_eq!(
        parsed,
        protocol::client::parse_carefully(text),
        "the one-pass reader and the careful one disagree"
    );
    match parsed {
        Ok(frame) => assert!(protocol::FRAME_KINDS.contains(&frame.kind())),
        Err(rejected) => {
            let encoded = rejected.encode();
            let error: Value = serde_json::from_str(&encoded).expect("errors are JSON");
            assert_eq!(error["type"], "error");
        }
    }
    let _ = protocol::peek_reference(text);
    let _ = protocol::check_text(text, None);
    let loose = serde_json::from_str::<Value>(text);
    match json::parse(text) {
        Ok(strict) => assert_eq!(
            loose.ok(),
            Some(strict),
            "strict JSON means what JSON means"
        ),
        Err(err) => assert!(
            loose.is_err() || err.to_string().contains("duplicate key"),
            "refused valid JSON without a repeated key: {err}"
        ),
    }
}

/// One input for the frame gauge: the first byte picks the read size.
pub fn stream(data: &[u8]) {
    let Some((&split, bytes)) = data.split_first() else {
        return;
    };
    let limit = protocol::MAX_FRAME_BYTES as u64;
    let mut whole = Gauge::new(limit);
    let at_once = whole.feed(bytes);
    let mut split_up = Gauge::new(limit);
    let in_reads = bytes
        .chunks(usize::from(split).max(1))
        .try_for_each(|read| split_up.feed(read));
    assert_eq!(
        at_once, in_reads,
        "the same stream, read in pieces of {split}"
    );
}
