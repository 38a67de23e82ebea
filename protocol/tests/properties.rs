//! Property tests of the codec over every frame kind and over hostile bytes.

// Test helpers outside #[test] fns may panic too (clippy.toml covers only those).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;

use arbitrary::{Arbitrary, Unstructured};
use proptest::prelude::*;
use spider_protocol::codec::{self, DecodeError, Frame};
use spider_protocol::{ClientFrame, ClientKind, MAX_FRAME_LEN, ServerFrame, ServerKind};

/// Encodes `frame` both ways and decodes it back; both must give it again.
fn round_trip<F: Frame + PartialEq + std::fmt::Debug>(frame: &F) {
    let body = codec::encode_body(frame).expect("every valid frame encodes within its limit");
    let back: F = codec::decode_body(&body).expect("its own encoding decodes");
    assert_eq!(&back, frame);
    let mut wire = Vec::new();
    codec::encode_stream(frame, &mut wire).unwrap();
    let (back, used) = codec::decode_stream::<F>(&wire).unwrap().unwrap();
    assert_eq!(&back, frame);
    assert_eq!(used, wire.len());
    // Every proper prefix is "not yet", never an error or a wrong frame.
    for cut in [0, 1, 3, 4, 5, wire.len() / 2, wire.len() - 1] {
        if cut < wire.len() {
            assert!(codec::decode_stream::<F>(&wire[..cut]).unwrap().is_none());
        }
    }
}

/// A cheap deterministic byte source, so coverage does not depend on luck.
fn bytes_for(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn every_client_frame_kind_round_trips() {
    let mut seen = HashSet::new();
    for seed in 0..6000u64 {
        let data = bytes_for(seed, 64 + (seed as usize % 4096));
        if let Ok(f) = ClientFrame::arbitrary(&mut Unstructured::new(&data)) {
            round_trip(&f);
            seen.insert(f.kind().tag());
        }
    }
    for k in ClientKind::ALL {
        assert!(seen.contains(&k.tag()), "{} never generated", k.name());
    }
}

#[test]
fn every_server_frame_kind_round_trips() {
    let mut seen = HashSet::new();
    for seed in 0..6000u64 {
        let data = bytes_for(seed ^ 0xdead_beef, 64 + (seed as usize % 4096));
        if let Ok(f) = ServerFrame::arbitrary(&mut Unstructured::new(&data)) {
            round_trip(&f);
            seen.insert(f.kind().tag());
        }
    }
    for k in ServerKind::ALL {
        assert!(seen.contains(&k.tag()), "{} never generated", k.name());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_frames_round_trip(data in proptest::collection::vec(any::<u8>(), 0..8192)) {
        if let Ok(f) = ClientFrame::arbitrary(&mut Unstructured::new(&data)) {
            round_trip(&f);
        }
        if let Ok(f) = ServerFrame::arbitrary(&mut Unstructured::new(&data)) {
            round_trip(&f);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_what_decodes_is_canonical(
        data in proptest::collection::vec(any::<u8>(), 0..2048)
    ) {
        if let Ok(f) = codec::decode_body::<ClientFrame>(&data) {
            prop_assert_eq!(codec::encode_body(&f).unwrap(), data.clone());
        }
        if let Ok(f) = codec::decode_body::<ServerFrame>(&data) {
            prop_assert_eq!(codec::encode_body(&f).unwrap(), data.clone());
        }
        let _ = codec::decode_stream::<ClientFrame>(&data);
        let _ = codec::decode_stream::<ServerFrame>(&data);
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        data in proptest::collection::vec(any::<u8>(), 64..4096),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        if let Ok(f) = ClientFrame::arbitrary(&mut Unstructured::new(&data)) {
            let mut body = codec::encode_body(&f).unwrap();
            for (at, x) in &flips {
                let i = at.index(body.len());
                body[i] ^= x;
            }
            if let Ok(g) = codec::decode_body::<ClientFrame>(&body) {
                prop_assert_eq!(codec::encode_body(&g).unwrap(), body);
            }
        }
    }

    #[test]
    fn declared_length_over_the_kind_maximum_is_refused_from_the_header(
        kind in prop::sample::select(ClientKind::ALL),
        over in 1usize..1_000_000,
    ) {
        let len = kind.max_len() + over;
        let mut header = (len as u32).to_be_bytes().to_vec();
        header.push(kind.tag());
        // Five bytes are enough to refuse: the decoder does not wait for (and
        // so the caller never buffers) the body.
        let err = codec::decode_stream::<ClientFrame>(&header).unwrap_err();
        let refused = matches!(err, DecodeError::TooLongForKind { .. })
            || (len > MAX_FRAME_LEN && matches!(err, DecodeError::TooLong { .. }));
        prop_assert!(refused, "{err:?}");
    }

    #[test]
    fn declared_server_length_over_the_kind_maximum_is_refused_from_the_header(
        kind in prop::sample::select(ServerKind::ALL),
        over in 1usize..1_000_000,
    ) {
        let len = kind.max_len() + over;
        let mut header = (len as u32).to_be_bytes().to_vec();
        header.push(kind.tag());
        prop_assert!(codec::decode_stream::<ServerFrame>(&header).is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Client and relay list a room's devices in different orders (and the
    /// client's list may name a device twice): the digest must not depend on
    /// it, and must change when a device is added or removed.
    #[test]
    fn the_room_devices_digest_ignores_order_and_repeats_and_sees_every_device(
        devices in proptest::collection::vec((any::<[u8; 16]>(), 1u32..9), 0..40),
        shuffle in any::<u64>(),
        extra in (any::<[u8; 16]>(), 1u32..9),
    ) {
        use spider_protocol::ids::{DeviceAddress, DeviceId, UserId};
        use spider_protocol::message::room_devices_digest;
        let addr = |(u, d): ([u8; 16], u32)| DeviceAddress { user: UserId::from_bytes(u), device: DeviceId(d) };
        let list: Vec<DeviceAddress> = devices.iter().copied().map(addr).collect();
        let mut other = list.clone();
        if !other.is_empty() {
            let by = (shuffle % other.len() as u64) as usize;
            other.rotate_left(by);
            other.reverse();
            let first = other[0];
            other.push(first);
        }
        let d = room_devices_digest(list.iter().copied());
        prop_assert_eq!(d, room_devices_digest(other));
        let extra = addr(extra);
        if !list.contains(&extra) {
            let mut more = list.clone();
            more.push(extra);
            prop_assert_ne!(d, room_devices_digest(more));
        }
        if let Some(first) = list.first() {
            let fewer: Vec<DeviceAddress> = list.iter().copied().filter(|a| a != first).collect();
            prop_assert_ne!(d, room_devices_digest(fewer));
        }
    }
}
