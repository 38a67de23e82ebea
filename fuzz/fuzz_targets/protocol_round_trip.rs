//! Structured: every frame the types allow encodes within its limit and
//! decodes back to itself.
#![no_main]
use spider_protocol::{ClientFrame, ServerFrame, codec};

libfuzzer_sys::fuzz_target!(|frames: (ClientFrame, ServerFrame)| {
    let (c, s) = frames;
    let body = codec::encode_body(&c).expect("valid frame encodes");
    assert_eq!(codec::decode_body::<ClientFrame>(&body).expect("decodes"), c);
    let body = codec::encode_body(&s).expect("valid frame encodes");
    assert_eq!(codec::decode_body::<ServerFrame>(&body).expect("decodes"), s);
});
