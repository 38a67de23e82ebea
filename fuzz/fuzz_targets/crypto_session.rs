//! PQXDH first messages, ratchet messages and stored session state.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spider_crypto::fuzzing::message(data);
    spider_crypto::fuzzing::prekey_message(data);
    spider_crypto::fuzzing::ratchet_message(data);
    spider_crypto::fuzzing::session_state(data);
});
