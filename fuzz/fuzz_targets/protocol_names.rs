//! Username and room-name parsing.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| spider_protocol::fuzzing::names(data));
