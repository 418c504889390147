//! A client's byte stream through the frame gauge, read in pieces.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rookery::ws::fuzz::stream(data));
