//! Adversarial tests of the public API: forged signatures, low-order keys,
//! corrupted, replayed, re-addressed and out-of-bounds messages.

mod common;

use common::*;
use spider_crypto::error::{AcceptError, BundleError, DecodeError, DecryptError, HandshakeError};
use spider_crypto::keys::*;
use spider_crypto::ratchet::{MAX_SKIP, RatchetMessage};
use spider_crypto::session::{Message, Session};
use spider_crypto::store::{
    PreKeyStore, SIGNED_PREKEY_GRACE_SECS, prune_signed_prekeys, rotate_signed_prekey,
};
use spider_crypto::x3dh::PreKeyMessage;

// Offsets in the bundle layout (see `PreKeyBundle`'s doc table).
const BUNDLE_IDENTITY: usize = 2;
const BUNDLE_SPK_ID: usize = 130;
const BUNDLE_SPK: usize = 134;
const BUNDLE_SPK_SIG: usize = 166;
const BUNDLE_KEM_ID: usize = 230;
const BUNDLE_KEM: usize = 234;
const BUNDLE_KEM_SIG: usize = 1418;
const BUNDLE_OTK: usize = 1487;
// Offsets in the PreKeyMessage layout.
const PKM_SENDER: usize = 2;
const PKM_BASE_KEY: usize = 130;
const PKM_KEM_CT: usize = 175;
const PKM_INNER: usize = 1263;

#[test]
fn bit_flipped_signed_prekey_signature_is_rejected() {
    let mut rng = rng(1);
    let bob = Bob::new(&mut rng, true, KemPreKeyKind::LastResort);
    let bytes = bob.bundle.to_bytes();
    for bit in (0..512).step_by(5) {
        let mut b = bytes.clone();
        b[BUNDLE_SPK_SIG + bit / 8] ^= 1 << (bit % 8);
        let bundle = PreKeyBundle::try_from(&b[..]).unwrap();
        assert_eq!(
            bundle.verify().unwrap_err(),
            BundleError::SignedPreKeySignature,
            "bit {bit}"
        );
    }
    // The signature also covers the id and the key.
    for offset in [
        BUNDLE_SPK_ID,
        BUNDLE_SPK_ID + 3,
        BUNDLE_SPK,
        BUNDLE_SPK + 17,
    ] {
        let mut b = bytes.clone();
        b[offset] ^= 0x04;
        let verified = PreKeyBundle::try_from(&b[..]).map(PreKeyBundle::verify);
        assert!(!matches!(verified, Ok(Ok(_))), "offset {offset}");
    }
}

#[test]
fn bit_flipped_kem_prekey_signature_is_rejected() {
    let mut rng = rng(2);
    let bob = Bob::new(&mut rng, true, KemPreKeyKind::LastResort);
    let bytes = bob.bundle.to_bytes();
    for bit in (0..512).step_by(5) {
        let mut b = bytes.clone();
        b[BUNDLE_KEM_SIG + bit / 8] ^= 1 << (bit % 8);
        let bundle = PreKeyBundle::try_from(&b[..]).unwrap();
        assert_eq!(
            bundle.verify().unwrap_err(),
            BundleError::KemPreKeySignature,
            "bit {bit}"
        );
    }
    for offset in [BUNDLE_KEM_ID, BUNDLE_KEM + 1, BUNDLE_KEM + 600] {
        let mut b = bytes.clone();
        b[offset] ^= 0x01;
        let verified = PreKeyBundle::try_from(&b[..]).map(PreKeyBundle::verify);
        assert!(!matches!(verified, Ok(Ok(_))), "offset {offset}");
    }
}

#[test]
fn bundle_signed_by_another_identity_is_rejected() {
    let mut rng = rng(3);
    let bob = Bob::new(&mut rng, true, KemPreKeyKind::LastResort);
    let mallory = IdentityKeyPair::generate(&mut rng);
    let mut bundle = bob.bundle.clone();
    bundle.identity = mallory.public().clone();
    assert_eq!(
        bundle.verify().unwrap_err(),
        BundleError::SignedPreKeySignature
    );
}

#[test]
fn low_order_identity_key_is_refused_everywhere() {
    let mut rng = rng(4);
    let bob = Bob::new(&mut rng, true, KemPreKeyKind::LastResort);
    let alice_id = IdentityKeyPair::generate(&mut rng);
    let mut alice = Session::initiate(&mut rng, &alice_id, &bob.verified_bundle()).unwrap();
    let first = alice.encrypt(b"x").unwrap().to_bytes();
    for (i, point) in low_order_points().into_iter().enumerate() {
        let raw = RawIdentity::new([i as u8 + 1; 32], point);
        let identity = raw.public_bytes();
        // Alone: properly signed, still refused.
        assert_eq!(
            IdentityPublicKey::try_from(&identity[..]),
            Err(DecodeError::LowOrderKey)
        );
        // In a bundle.
        let mut b = bob.bundle.to_bytes();
        b[BUNDLE_IDENTITY..BUNDLE_IDENTITY + 128].copy_from_slice(&identity);
        assert_eq!(
            PreKeyBundle::try_from(&b[..]),
            Err(DecodeError::LowOrderKey)
        );
        // As the sender of a first message.
        let mut m = first.clone();
        m[PKM_SENDER..PKM_SENDER + 128].copy_from_slice(&identity);
        assert_eq!(
            PreKeyMessage::try_from(&m[..]),
            Err(DecodeError::LowOrderKey)
        );
    }
}

#[test]
fn low_order_signed_prekey_is_refused() {
    let mut rng = rng(5);
    for (i, point) in low_order_points().into_iter().enumerate() {
        let seed = [i as u8 + 1; 32];
        // Mallory signs a low-order signed prekey with a real identity.
        let mut secret = [0u8; 64];
        secret[..32].copy_from_slice(&seed);
        secret[32..].copy_from_slice(&[9; 32]);
        let mallory = IdentityKeyPair::from_secret_bytes(&secret);
        let raw = RawIdentity::new(seed, *mallory.public().dh_key_bytes());
        let kem =
            KemPreKeyPair::generate(&mut rng, &mallory, PreKeyId(1), KemPreKeyKind::OneTime, NOW);
        let bundle = PreKeyBundle {
            identity: mallory.public().clone(),
            signed_prekey: raw.signed_prekey(1, point),
            kem_prekey: kem.public().clone(),
            one_time_prekey: None,
        };
        // Decoding refuses it outright...
        assert_eq!(
            PreKeyBundle::try_from(&bundle.to_bytes()[..]),
            Err(DecodeError::LowOrderKey)
        );
        // ...and a bundle built in memory passes the signature check but not
        // the contributory check.
        let verified = bundle.verify().unwrap();
        let alice = IdentityKeyPair::generate(&mut rng);
        assert_eq!(
            Session::initiate(&mut rng, &alice, &verified).unwrap_err(),
            HandshakeError::NonContributory
        );
    }
}

#[test]
fn low_order_one_time_prekey_is_refused() {
    let mut rng = rng(6);
    let bob = Bob::new(&mut rng, true, KemPreKeyKind::LastResort);
    let alice = IdentityKeyPair::generate(&mut rng);
    for point in low_order_points() {
        let mut b = bob.bundle.to_bytes();
        b[BUNDLE_OTK..BUNDLE_OTK + 32].copy_from_slice(&point);
        assert_eq!(
            PreKeyBundle::try_from(&b[..]),
            Err(DecodeError::LowOrderKey)
        );
        // The one-time prekey is not signed, so a relay could swap it in a
        // bundle built in memory: the DH check catches it.
        let mut bundle = bob.bundle.clone();
        bundle.one_time_prekey = Some(OneTimePreKeyPublic {
            id: PreKeyId(100),
            public: point,
        });
        let verified = bundle.verify().unwrap();
        assert_eq!(
            Session::initiate(&mut rng, &alice, &verified).unwrap_err(),
            HandshakeError::NonContributory
        );
    }
}

#[test]
fn low_order_ephemeral_key_is_refused() {
    let mut rng = rng(7);
    let bob = Bob::new(&mut rng, true, KemPreKeyKind::LastResort);
    let alice_id = IdentityKeyPair::generate(&mut rng);
    let mut alice = Session::initiate(&mut rng, &alice_id, &bob.verified_bundle()).unwrap();
    let first = alice.encrypt(b"x").unwrap().to_bytes();
    for point in low_order_points() {
        let mut m = first.clone();
        m[PKM_BASE_KEY..PKM_BASE_KEY + 32].copy_from_slice(&point);
        assert_eq!(
            PreKeyMessage::try_from(&m[..]),
            Err(DecodeError::LowOrderKey)
        );
    }
}

#[test]
fn low_order_ratchet_key_is_refused_and_state_untouched() {
    let (mut rng, mut alice, mut bob) = established(8);
    let m = alice.encrypt(b"hello").unwrap().to_bytes();
    let before = bob.to_bytes();
    for point in low_order_points() {
        let mut b = m.clone();
        b[2..34].copy_from_slice(&point);
        assert_eq!(
            RatchetMessage::try_from(&b[..]),
            Err(DecodeError::LowOrderKey)
        );
        assert_eq!(Message::try_from(&b[..]), Err(DecodeError::LowOrderKey));
    }
    assert_eq!(bob.to_bytes(), before);
    let m = Message::try_from(&m[..]).unwrap();
    assert_eq!(bob.decrypt(&mut rng, &m, NOW).unwrap(), b"hello");
}

#[test]
fn corrupted_first_message_leaves_one_time_prekey_usable() {
    let mut rng = rng(9);
    let mut bob = Bob::new(&mut rng, true, KemPreKeyKind::OneTime);
    let alice_id = IdentityKeyPair::generate(&mut rng);
    let mut alice = Session::initiate(&mut rng, &alice_id, &bob.verified_bundle()).unwrap();
    let first = alice.encrypt(b"first").unwrap().to_bytes();
    // Corrupt the KEM ciphertext (implicit rejection: a wrong secret), the
    // AEAD ciphertext, and the authenticated header.
    for offset in [
        PKM_KEM_CT + 5,
        first.len() - 1,
        first.len() - 20,
        PKM_INNER + 40,
    ] {
        let mut m = first.clone();
        m[offset] ^= 0x80;
        let m = PreKeyMessage::try_from(&m[..]).unwrap();
        assert!(
            matches!(bob.accept(&mut rng, &m), Err(AcceptError::Decrypt(_))),
            "offset {offset}"
        );
        assert!(
            bob.prekeys
                .one_time_prekey(PreKeyId(100))
                .unwrap()
                .is_some()
        );
        assert!(bob.prekeys.kem_prekey(PreKeyId(10)).unwrap().is_some());
        assert!(bob.replay.is_empty());
    }
    let m = PreKeyMessage::try_from(&first[..]).unwrap();
    let (_, plaintext) = bob.accept(&mut rng, &m).unwrap();
    assert_eq!(plaintext, b"first");
    // Now both one-time keys are consumed.
    assert!(
        bob.prekeys
            .one_time_prekey(PreKeyId(100))
            .unwrap()
            .is_none()
    );
    assert!(bob.prekeys.kem_prekey(PreKeyId(10)).unwrap().is_none());
}

#[test]
fn last_resort_kem_prekey_is_kept_after_use() {
    let mut rng = rng(10);
    let mut bob = Bob::new(&mut rng, false, KemPreKeyKind::LastResort);
    let alice_id = IdentityKeyPair::generate(&mut rng);
    let mut alice = Session::initiate(&mut rng, &alice_id, &bob.verified_bundle()).unwrap();
    let first = prekey(alice.encrypt(b"first").unwrap());
    bob.accept(&mut rng, &first).unwrap();
    assert!(bob.prekeys.kem_prekey(PreKeyId(10)).unwrap().is_some());
}

#[test]
fn replayed_prekey_message_is_rejected() {
    let mut rng = rng(11);
    let mut bob = Bob::new(&mut rng, true, KemPreKeyKind::LastResort);
    let alice_id = IdentityKeyPair::generate(&mut rng);
    let mut alice = Session::initiate(&mut rng, &alice_id, &bob.verified_bundle()).unwrap();
    let first = prekey(alice.encrypt(b"first").unwrap());
    bob.accept(&mut rng, &first).unwrap();
    assert_eq!(
        bob.accept(&mut rng, &first).unwrap_err(),
        AcceptError::Replayed
    );
    // Even with the replay cache lost, the consumed one-time prekey refuses it.
    bob.replay = spider_crypto::x3dh::ReplayCache::new();
    assert_eq!(
        bob.accept(&mut rng, &first).unwrap_err(),
        AcceptError::UnknownOneTimePreKey
    );
}

#[test]
fn replayed_prekey_message_without_one_time_prekey_is_rejected() {
    let mut rng = rng(12);
    let mut bob = Bob::new(&mut rng, false, KemPreKeyKind::LastResort);
    let alice_id = IdentityKeyPair::generate(&mut rng);
    let mut alice = Session::initiate(&mut rng, &alice_id, &bob.verified_bundle()).unwrap();
    let first = prekey(alice.encrypt(b"first").unwrap());
    assert_eq!(first.one_time_prekey_id(), None);
    bob.accept(&mut rng, &first).unwrap();
    assert_eq!(
        bob.accept(&mut rng, &first).unwrap_err(),
        AcceptError::Replayed
    );
}

#[test]
fn replayed_prekey_message_is_a_duplicate_in_the_existing_session() {
    let mut rng = rng(13);
    let mut bob = Bob::new(&mut rng, true, KemPreKeyKind::LastResort);
    let alice_id = IdentityKeyPair::generate(&mut rng);
    let mut alice = Session::initiate(&mut rng, &alice_id, &bob.verified_bundle()).unwrap();
    let first = alice.encrypt(b"one").unwrap();
    let second = alice.encrypt(b"two").unwrap();
    assert!(matches!(second, Message::PreKey(_)));
    let (mut bob_s, _) = bob.accept(&mut rng, &prekey(first.clone())).unwrap();
    // A repeat whose handshake fields were altered is refused, even though
    // its inner ratchet message is genuine.
    let mut altered = second.to_bytes();
    altered[PKM_KEM_CT + 100] ^= 0x01;
    let altered = Message::try_from(&altered[..]).unwrap();
    let before = bob_s.to_bytes();
    assert_eq!(
        bob_s.decrypt(&mut rng, &altered, NOW),
        Err(DecryptError::WrongSession)
    );
    assert_eq!(bob_s.to_bytes(), before);
    // The initiator's repeats before a reply decrypt in the session...
    assert_eq!(bob_s.decrypt(&mut rng, &second, NOW).unwrap(), b"two");
    // ...and a replay of either is refused.
    assert_eq!(
        bob_s.decrypt(&mut rng, &first, NOW),
        Err(DecryptError::Duplicate)
    );
    assert_eq!(
        bob_s.decrypt(&mut rng, &second, NOW),
        Err(DecryptError::Duplicate)
    );
    // A first message of another session is not accepted by this one.
    let mut other = Session::initiate(&mut rng, &alice_id, &bob.verified_bundle()).unwrap();
    let foreign = other.encrypt(b"x").unwrap();
    assert_eq!(
        bob_s.decrypt(&mut rng, &foreign, NOW),
        Err(DecryptError::WrongSession)
    );
}

#[test]
fn first_message_with_substituted_sender_is_rejected_and_consumes_nothing() {
    let mut rng = rng(14);
    let mut bob = Bob::new(&mut rng, true, KemPreKeyKind::OneTime);
    let alice_id = IdentityKeyPair::generate(&mut rng);
    let mallory = IdentityKeyPair::generate(&mut rng);
    let mut alice = Session::initiate(&mut rng, &alice_id, &bob.verified_bundle()).unwrap();
    let first = alice.encrypt(b"first").unwrap().to_bytes();
    let mut m = first.clone();
    m[PKM_SENDER..PKM_SENDER + 128].copy_from_slice(&mallory.public().to_bytes());
    let m = PreKeyMessage::try_from(&m[..]).unwrap();
    assert!(matches!(
        bob.accept(&mut rng, &m),
        Err(AcceptError::Decrypt(_))
    ));
    assert!(
        bob.prekeys
            .one_time_prekey(PreKeyId(100))
            .unwrap()
            .is_some()
    );
    let (_, plaintext) = bob
        .accept(&mut rng, &PreKeyMessage::try_from(&first[..]).unwrap())
        .unwrap();
    assert_eq!(plaintext, b"first");
}

#[test]
fn message_readdressed_to_another_recipient_fails() {
    // Alice talks to Bob and to Carol; a message for Bob delivered into
    // Carol's session with Alice does not decrypt and changes nothing.
    let mut rng = rng(15);
    let alice_id = IdentityKeyPair::generate(&mut rng);
    let mut bob = Bob::new(&mut rng, true, KemPreKeyKind::LastResort);
    let mut carol = Bob::new(&mut rng, true, KemPreKeyKind::LastResort);
    let mut to_bob = Session::initiate(&mut rng, &alice_id, &bob.verified_bundle()).unwrap();
    let mut to_carol = Session::initiate(&mut rng, &alice_id, &carol.verified_bundle()).unwrap();
    let (mut bob_s, _) = bob
        .accept(&mut rng, &prekey(to_bob.encrypt(b"b").unwrap()))
        .unwrap();
    let (mut carol_s, _) = carol
        .accept(&mut rng, &prekey(to_carol.encrypt(b"c").unwrap()))
        .unwrap();
    to_bob
        .decrypt(&mut rng, &bob_s.encrypt(b"r").unwrap(), NOW)
        .unwrap();
    let for_bob = to_bob.encrypt(b"for bob only").unwrap();
    let before = carol_s.to_bytes();
    assert!(carol_s.decrypt(&mut rng, &for_bob, NOW).is_err());
    assert_eq!(carol_s.to_bytes(), before);
    // A first message for Bob is refused by Carol too.
    let mut again = Session::initiate(&mut rng, &alice_id, &bob.verified_bundle()).unwrap();
    let first_for_bob = prekey(again.encrypt(b"x").unwrap());
    assert!(carol.accept(&mut rng, &first_for_bob).is_err());
    assert_eq!(
        bob_s.decrypt(&mut rng, &for_bob, NOW).unwrap(),
        b"for bob only"
    );
}

#[test]
fn skip_on_n_is_accepted_at_max_skip_and_rejected_beyond() {
    let (mut rng, mut alice, bob) = established(16);
    let mut sent = Vec::new();
    for i in 0..=MAX_SKIP + 1 {
        sent.push(alice.encrypt(&i.to_be_bytes()).unwrap());
    }
    // Message number MAX_SKIP skips exactly MAX_SKIP keys.
    let mut at_edge = bob.clone();
    let plaintext = at_edge
        .decrypt(&mut rng, &sent[MAX_SKIP as usize], NOW)
        .unwrap();
    assert_eq!(plaintext, MAX_SKIP.to_be_bytes());
    assert_eq!(at_edge.skipped_key_count(), MAX_SKIP as usize);
    // One further is refused, and the state is untouched.
    let mut beyond = bob.clone();
    let before = beyond.to_bytes();
    assert_eq!(
        beyond.decrypt(&mut rng, &sent[MAX_SKIP as usize + 1], NOW),
        Err(DecryptError::TooFarAhead)
    );
    assert_eq!(beyond.to_bytes(), before);
}

#[test]
fn skip_on_pn_is_accepted_at_max_skip_and_rejected_beyond() {
    for (lost, ok) in [(MAX_SKIP, true), (MAX_SKIP + 1, false)] {
        let (mut rng, mut alice, mut bob) = established(17);
        // Bob receives message 0 of Alice's current chain (and so will reply
        // with a new ratchet key)...
        let m0 = alice.encrypt(b"m0").unwrap();
        bob.decrypt(&mut rng, &m0, NOW).unwrap();
        // ...then Alice sends `lost` messages Bob never gets, then Bob's reply
        // moves Alice to a new chain whose header carries pn = lost + 1.
        for _ in 0..lost {
            alice.encrypt(b"lost").unwrap();
        }
        let r = bob.encrypt(b"reply").unwrap();
        alice.decrypt(&mut rng, &r, NOW).unwrap();
        let next = alice.encrypt(b"next").unwrap();
        let Message::Ratchet(inner) = &next else {
            panic!("expected a ratchet message")
        };
        assert_eq!(inner.header().pn, lost + 1);
        let before = bob.to_bytes();
        let result = bob.decrypt(&mut rng, &next, NOW);
        if ok {
            assert_eq!(result.unwrap(), b"next");
        } else {
            assert_eq!(result, Err(DecryptError::TooFarAhead));
            assert_eq!(bob.to_bytes(), before);
        }
    }
}

#[test]
fn garbage_with_fresh_ratchet_key_leaves_state_untouched() {
    let (mut rng, mut alice, mut bob) = established(18);
    let fresh = spider_crypto::primitives::x25519_public(&[0x77; 32]);
    let before = bob.to_bytes();
    for (pn, n, len) in [(0u32, 0u32, 16usize), (5, 3, 100), (MAX_SKIP, MAX_SKIP, 40)] {
        let mut b = vec![1u8, 1];
        b.extend_from_slice(&fresh);
        b.extend_from_slice(&pn.to_be_bytes());
        b.extend_from_slice(&n.to_be_bytes());
        b.extend((0..len).map(|i| i as u8));
        let m = Message::try_from(&b[..]).unwrap();
        assert_eq!(
            bob.decrypt(&mut rng, &m, NOW),
            Err(DecryptError::Authentication)
        );
        assert_eq!(bob.to_bytes(), before);
    }
    let m = alice.encrypt(b"still fine").unwrap();
    assert_eq!(bob.decrypt(&mut rng, &m, NOW).unwrap(), b"still fine");
}

#[test]
fn tampered_header_fails_and_leaves_state_untouched() {
    let (mut rng, mut alice, mut bob) = established(19);
    let m = alice.encrypt(b"hello").unwrap().to_bytes();
    let before = bob.to_bytes();
    for offset in [35, 41, 5] {
        let mut b = m.clone();
        b[offset] ^= 0x01;
        if let Ok(parsed) = Message::try_from(&b[..]) {
            assert!(
                bob.decrypt(&mut rng, &parsed, NOW).is_err(),
                "offset {offset}"
            );
        }
        assert_eq!(bob.to_bytes(), before);
    }
}

#[test]
fn duplicate_message_is_rejected() {
    let (mut rng, mut alice, mut bob) = established(20);
    let m0 = alice.encrypt(b"zero").unwrap();
    let m1 = alice.encrypt(b"one").unwrap();
    assert_eq!(bob.decrypt(&mut rng, &m1, NOW).unwrap(), b"one");
    assert_eq!(
        bob.decrypt(&mut rng, &m1, NOW),
        Err(DecryptError::Duplicate)
    );
    // A skipped message decrypts once, from its stored key, then never again.
    assert_eq!(bob.decrypt(&mut rng, &m0, NOW).unwrap(), b"zero");
    let before = bob.to_bytes();
    assert_eq!(
        bob.decrypt(&mut rng, &m0, NOW),
        Err(DecryptError::Duplicate)
    );
    assert_eq!(bob.to_bytes(), before);
}

#[test]
fn payload_of_one_type_is_refused_where_another_is_expected() {
    let (_, mut alice, _) = established(21);
    let ratchet = alice.encrypt(b"x").unwrap().to_bytes();
    assert_eq!(
        PreKeyMessage::try_from(&ratchet[..]),
        Err(DecodeError::WrongMessageType {
            expected: 0x02,
            found: 0x01
        })
    );
    let mut rng = rng(21);
    let bob = Bob::new(&mut rng, true, KemPreKeyKind::LastResort);
    let bundle = bob.bundle.to_bytes();
    assert_eq!(
        Message::try_from(&bundle[..]),
        Err(DecodeError::UnknownMessageType(0x03))
    );
    assert_eq!(
        RatchetMessage::try_from(&bundle[..]),
        Err(DecodeError::WrongMessageType {
            expected: 0x01,
            found: 0x03
        })
    );
    for reserved in [0x10u8, 0x11, 0x20] {
        let mut b = ratchet.clone();
        b[1] = reserved;
        assert_eq!(
            Message::try_from(&b[..]),
            Err(DecodeError::UnknownMessageType(reserved))
        );
    }
    let mut b = ratchet.clone();
    b[0] = 2;
    assert_eq!(
        Message::try_from(&b[..]),
        Err(DecodeError::UnsupportedVersion(2))
    );
}

#[test]
fn rotated_signed_prekey_still_accepts_in_flight_first_messages_within_grace() {
    let mut rng = rng(22);
    let mut bob = Bob::new(&mut rng, false, KemPreKeyKind::LastResort);
    let alice_id = IdentityKeyPair::generate(&mut rng);
    let bundle = bob.verified_bundle();
    let mut early = Session::initiate(&mut rng, &alice_id, &bundle).unwrap();
    let mut late = Session::initiate(&mut rng, &alice_id, &bundle).unwrap();
    let early = prekey(early.encrypt(b"early").unwrap());
    let late = prekey(late.encrypt(b"late").unwrap());
    let rotated_at = NOW + 10;
    let new = rotate_signed_prekey(&mut rng, &bob.identity, &mut bob.prekeys, rotated_at).unwrap();
    assert_ne!(new.id(), PreKeyId(1));
    // At the edge of the grace period the old signed prekey still works.
    prune_signed_prekeys(&mut bob.prekeys, rotated_at + SIGNED_PREKEY_GRACE_SECS).unwrap();
    assert_eq!(bob.accept(&mut rng, &early).unwrap().1, b"early");
    // One second later it is deleted, and so is the replay cache's entry.
    let live =
        prune_signed_prekeys(&mut bob.prekeys, rotated_at + SIGNED_PREKEY_GRACE_SECS + 1).unwrap();
    assert_eq!(live, vec![new.id()]);
    bob.replay.retain_signed_prekeys(&live);
    assert!(bob.replay.is_empty());
    assert_eq!(
        bob.accept(&mut rng, &late).unwrap_err(),
        AcceptError::UnknownSignedPreKey
    );
    assert_eq!(
        bob.accept(&mut rng, &early).unwrap_err(),
        AcceptError::UnknownSignedPreKey
    );
}

#[test]
fn session_survives_serialization_mid_conversation() {
    let (mut rng, mut alice, bob) = established(23);
    let m0 = alice.encrypt(b"zero").unwrap();
    let m1 = alice.encrypt(b"one").unwrap();
    let mut bob = Session::from_bytes(&bob.to_bytes()).unwrap();
    assert_eq!(bob.decrypt(&mut rng, &m1, NOW).unwrap(), b"one");
    let mut bob = Session::from_bytes(&bob.to_bytes()).unwrap();
    assert_eq!(bob.decrypt(&mut rng, &m0, NOW).unwrap(), b"zero");
    let r = bob.encrypt(b"back").unwrap();
    let mut alice = Session::from_bytes(&alice.to_bytes()).unwrap();
    assert_eq!(alice.decrypt(&mut rng, &r, NOW).unwrap(), b"back");
    // A stored state is not a message, and vice versa.
    let state = bob.to_bytes();
    assert!(Message::try_from(&state[..]).is_err());
    assert!(Session::from_bytes(&r.to_bytes()).is_err());
}

#[test]
fn prekey_message_length_limit_is_enforced_at_its_edge() {
    use spider_crypto::ratchet::MAX_PLAINTEXT_LEN;
    use spider_crypto::x3dh::MAX_PREKEY_MESSAGE_LEN;
    let mut rng = rng(24);
    let mut bob = Bob::new(&mut rng, true, KemPreKeyKind::LastResort);
    let alice_id = IdentityKeyPair::generate(&mut rng);
    let mut alice = Session::initiate(&mut rng, &alice_id, &bob.verified_bundle()).unwrap();
    let big = vec![0x42u8; MAX_PLAINTEXT_LEN];
    let bytes = alice.encrypt(&big).unwrap().to_bytes();
    assert_eq!(bytes.len(), MAX_PREKEY_MESSAGE_LEN);
    let first = PreKeyMessage::try_from(&bytes[..]).unwrap();
    assert_eq!(bob.accept(&mut rng, &first).unwrap().1, big);
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        PreKeyMessage::try_from(&longer[..]),
        Err(DecodeError::TooLong { .. })
    ));
    assert!(matches!(
        Message::try_from(&longer[..]),
        Err(DecodeError::TooLong { .. })
    ));
}

#[test]
fn session_state_length_limit_is_enforced() {
    use spider_crypto::session::MAX_SESSION_STATE_LEN;
    let mut b = vec![1u8, 0x20];
    b.resize(MAX_SESSION_STATE_LEN + 1, 0);
    assert!(matches!(
        Session::from_bytes(&b),
        Err(DecodeError::TooLong { .. })
    ));
    b.truncate(MAX_SESSION_STATE_LEN);
    assert_eq!(
        Session::from_bytes(&b).unwrap_err(),
        DecodeError::CorruptState
    );
}
