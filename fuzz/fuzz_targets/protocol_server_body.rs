//! What a client does with every WebSocket message: decode a relay frame.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| spider_protocol::fuzzing::server_body(data));
