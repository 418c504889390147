//! A client's text frame: parsed, its ref peeked, its text checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rookery::ws::fuzz::frame(data));
