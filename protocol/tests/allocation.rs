//! The decoder allocates nothing for a frame whose declared size is refused,
//! and nothing in proportion to a declared length that the input cannot back.
//! (Its own test binary: the allocation counter replaces the global allocator.)

// Test helpers outside #[test] fns may panic too (clippy.toml covers only those).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use spider_protocol::codec;
use spider_protocol::{ClientFrame, ClientKind, ServerFrame};

#[test]
fn oversize_declared_length_is_refused_without_allocating() {
    let mut header = u32::MAX.to_be_bytes().to_vec();
    header.push(ClientKind::SendDirect.tag());
    let info = allocation_counter::measure(|| {
        assert!(codec::decode_stream::<ClientFrame>(&header).is_err());
        assert!(codec::decode_stream::<ServerFrame>(&header).is_err());
    });
    assert_eq!(info.count_total, 0, "{info:?}");
}

#[test]
fn huge_declared_field_lengths_allocate_nothing_large() {
    // A SendDirect body whose copy count claims 2^32-1 items, and a Hello
    // whose agent string claims 2^32-1 bytes, each with nothing behind.
    let send = [
        ClientKind::SendDirect.tag(),
        1,
        0xff,
        0xff,
        0xff,
        0xff,
        0x0f,
    ];
    let hello = [0, 1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f];
    let info = allocation_counter::measure(|| {
        assert!(codec::decode_body::<ClientFrame>(&send).is_err());
        assert!(codec::decode_body::<ClientFrame>(&hello).is_err());
    });
    assert!(info.bytes_max < 4096, "{info:?}");
}
