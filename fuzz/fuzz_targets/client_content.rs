//! The plaintext content format inside every decrypted message: what a peer
//! (or anyone holding a session) can make a client parse.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| spider_client::fuzzing::content(data));
