//! What the relay does with every WebSocket message: decode a client frame.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| spider_protocol::fuzzing::client_body(data));
