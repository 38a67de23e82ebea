//! Property tests: long two-way conversations over a network that drops,
//! reorders and replays; and every parser of untrusted bytes on arbitrary and
//! mutated input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use proptest::prelude::*;
use spider_crypto::fuzzing;
use spider_crypto::keys::{IdentityKeyPair, IdentityPublicKey, KemPreKeyKind, PreKeyBundle};
use spider_crypto::ratchet::RatchetMessage;
use spider_crypto::session::{Message, Session};
use spider_crypto::x3dh::PreKeyMessage;

/// One message in flight.
struct Packet {
    bytes: Vec<u8>,
    plaintext: Vec<u8>,
    delivered: bool,
}

#[derive(Debug, Clone)]
enum Op {
    /// Alice (false) or Bob (true) sends.
    Send(bool),
    /// Deliver the packet picked by the index (modulo those in flight) in the
    /// direction given: undelivered ones arrive out of order, delivered ones
    /// are replays, and never-picked ones are dropped.
    Deliver(bool, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<bool>().prop_map(Op::Send),
        4 => (any::<bool>(), any::<usize>()).prop_map(|(d, i)| Op::Deliver(d, i)),
    ]
}

fn run_conversation(seed: u8, with_otk: bool, ops: &[Op]) {
    let mut rng = rng(seed);
    let mut bob = Bob::new(&mut rng, with_otk, KemPreKeyKind::LastResort);
    let alice_id = IdentityKeyPair::generate(&mut rng);
    let mut alice = Session::initiate(&mut rng, &alice_id, &bob.verified_bundle()).unwrap();
    let mut bob_session: Option<Session> = None;
    // wire[0]: Alice to Bob; wire[1]: Bob to Alice.
    let mut wire: [Vec<Packet>; 2] = [Vec::new(), Vec::new()];
    let mut now = NOW;
    let mut counter = 0u32;
    for op in ops {
        now += 1;
        match *op {
            Op::Send(from_bob) => {
                counter += 1;
                let plaintext = format!("{}-{counter}", if from_bob { "b" } else { "a" });
                let sender = if from_bob {
                    match bob_session.as_mut() {
                        Some(s) => s,
                        None => continue, // Bob cannot send before he has a session.
                    }
                } else {
                    &mut alice
                };
                let bytes = sender.encrypt(plaintext.as_bytes()).unwrap().to_bytes();
                wire[usize::from(from_bob)].push(Packet {
                    bytes,
                    plaintext: plaintext.into_bytes(),
                    delivered: false,
                });
            }
            Op::Deliver(from_bob, pick) => {
                let queue = &mut wire[usize::from(from_bob)];
                if queue.is_empty() {
                    continue;
                }
                let len = queue.len();
                let packet = &mut queue[pick % len];
                let message = Message::try_from(&packet.bytes[..]).unwrap();
                let result = if from_bob {
                    alice.decrypt(&mut rng, &message, now)
                } else {
                    match (&mut bob_session, &message) {
                        (Some(s), _) => s.decrypt(&mut rng, &message, now),
                        (None, Message::PreKey(first)) => match bob.accept(&mut rng, first) {
                            Ok((s, p)) => {
                                bob_session = Some(s);
                                Ok(p)
                            }
                            Err(e) => panic!("first message refused: {e}"),
                        },
                        (None, Message::Ratchet(_)) => {
                            panic!("a ratchet message before any first message")
                        }
                    }
                };
                match result {
                    Ok(p) => {
                        assert!(!packet.delivered, "a message was delivered twice");
                        assert_eq!(p, packet.plaintext, "delivered plaintext differs");
                        packet.delivered = true;
                    }
                    Err(e) => assert!(
                        packet.delivered,
                        "an undelivered message failed to decrypt: {e}"
                    ),
                }
            }
        }
    }
    // Finally deliver everything still in flight, in order: all of it decrypts.
    for from_bob in [false, true] {
        for packet in &wire[usize::from(from_bob)] {
            if packet.delivered {
                continue;
            }
            let message = Message::try_from(&packet.bytes[..]).unwrap();
            let p = if from_bob {
                alice.decrypt(&mut rng, &message, now).unwrap()
            } else if let Some(s) = bob_session.as_mut() {
                s.decrypt(&mut rng, &message, now).unwrap()
            } else {
                let Message::PreKey(first) = &message else {
                    panic!("a ratchet message before any first message")
                };
                let (s, p) = bob.accept(&mut rng, first).unwrap();
                bob_session = Some(s);
                p
            };
            assert_eq!(p, packet.plaintext);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn conversation_with_drop_reorder_and_replay_delivers_each_message_once(
        seed in any::<u8>(),
        with_otk in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..250),
    ) {
        run_conversation(seed, with_otk, &ops);
    }
}

fn valid_samples() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    static SAMPLES: std::sync::OnceLock<(Vec<u8>, Vec<u8>, Vec<u8>)> = std::sync::OnceLock::new();
    SAMPLES.get_or_init(make_samples).clone()
}

fn make_samples() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut rng = rng(99);
    let bob = Bob::new(&mut rng, true, KemPreKeyKind::OneTime);
    let alice_id = IdentityKeyPair::generate(&mut rng);
    let mut alice = Session::initiate(&mut rng, &alice_id, &bob.verified_bundle()).unwrap();
    let first = alice.encrypt(b"hello").unwrap().to_bytes();
    let Message::PreKey(p) = Message::try_from(&first[..]).unwrap() else {
        panic!()
    };
    (bob.bundle.to_bytes(), first, p.message().to_bytes())
}

fn all_parsers(data: &[u8]) {
    fuzzing::prekey_message(data);
    fuzzing::ratchet_message(data);
    fuzzing::message(data);
    fuzzing::prekey_bundle(data);
    fuzzing::identity_public_key(data);
    fuzzing::session_state(data);
    fuzzing::prekey_records(data);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_any_parser(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        all_parsers(&data);
    }

    #[test]
    fn arbitrary_bytes_behind_a_valid_prefix_give_typed_errors(
        kind in prop_oneof![Just(1u8), Just(2u8), Just(3u8), Just(0x20u8)],
        body in proptest::collection::vec(any::<u8>(), 0..1600),
    ) {
        let mut data = vec![1u8, kind];
        data.extend_from_slice(&body);
        all_parsers(&data);
        // Random bodies are refused with a typed error, never a panic.
        if kind == 2 {
            prop_assert!(PreKeyMessage::try_from(&data[..]).is_err());
        }
        if kind == 3 {
            prop_assert!(PreKeyBundle::try_from(&data[..]).is_err());
        }
    }

    #[test]
    fn mutated_valid_messages_never_panic_and_round_trip_when_accepted(
        which in 0usize..3,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<Option<usize>>(),
    ) {
        let (bundle, prekey, ratchet) = valid_samples();
        let mut data = [bundle, prekey, ratchet][which].clone();
        for (at, value) in edits {
            let i = at % data.len();
            data[i] = value;
        }
        if let Some(c) = cut {
            data.truncate(c % (data.len() + 1));
        }
        all_parsers(&data);
        match which {
            0 => if let Ok(b) = PreKeyBundle::try_from(&data[..]) { prop_assert_eq!(b.to_bytes(), data) },
            1 => if let Ok(m) = PreKeyMessage::try_from(&data[..]) { prop_assert_eq!(m.to_bytes(), data) },
            _ => if let Ok(m) = RatchetMessage::try_from(&data[..]) { prop_assert_eq!(m.to_bytes(), data) },
        }
    }

    #[test]
    fn prekey_records_of_exact_length_never_panic(
        len in prop_oneof![Just(37usize), Just(109usize), Just(142usize)],
        body in proptest::collection::vec(any::<u8>(), 142),
    ) {
        let mut data = body[..len].to_vec();
        data[0] = 1;
        fuzzing::prekey_records(&data);
    }

    #[test]
    fn identity_public_key_decoding_never_panics(data in proptest::collection::vec(any::<u8>(), 128..=128)) {
        // 128 random bytes almost never carry a valid binding signature.
        prop_assert!(IdentityPublicKey::try_from(&data[..]).is_err());
    }
}
