//! Length-prefixed QUIC stream decoding, both directions.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spider_protocol::fuzzing::client_stream(data);
    spider_protocol::fuzzing::server_stream(data);
});
