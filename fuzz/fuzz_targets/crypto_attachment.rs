//! Attachment pointers and encrypted blobs.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spider_crypto::attachment::fuzzing::attachment_pointer(data);
    spider_crypto::attachment::fuzzing::attachment_blob(data);
});
