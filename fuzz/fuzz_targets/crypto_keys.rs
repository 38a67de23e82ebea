//! Prekey bundles from the relay, identity keys, keystore prekey records.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spider_crypto::fuzzing::prekey_bundle(data);
    spider_crypto::fuzzing::identity_public_key(data);
    spider_crypto::fuzzing::prekey_records(data);
});
