//! Sender Key messages, distribution messages and stored records.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spider_crypto::sender_key::fuzzing::sender_key_message(data);
    spider_crypto::sender_key::fuzzing::sender_key_distribution_message(data);
    spider_crypto::sender_key::fuzzing::sender_key_record(data);
    spider_crypto::sender_key::fuzzing::own_sender_key(data);
});
