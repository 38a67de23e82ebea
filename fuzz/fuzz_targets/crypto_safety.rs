//! Scanned or pasted compact safety numbers.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spider_crypto::safety::fuzzing::compact_bytes(data);
    spider_crypto::safety::fuzzing::compact_text(data);
});
