//! Sender Keys: adversarial tests, limits at their edges, properties.

// Helpers outside #[test] fns are not covered by clippy.toml's test allowances.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use spider_crypto::sender_key::{
    ChainId, DISTRIBUTION_MESSAGE_LEN, DecodeError, DecryptError, DistributionId,
    DistributionOutcome, EncryptError, InMemSenderKeyStore, MAX_CHAINS_PER_RECORD, MAX_JUMP,
    MAX_MESSAGE_LEN, MAX_PLAINTEXT_LEN, MAX_SKIPPED_KEYS, MIN_MESSAGE_LEN, OwnSenderKey,
    ProcessDistributionError, SenderKeyDistributionMessage, SenderKeyMessage, SenderKeyRecord,
    SenderKeyStore, StateDecodeError, TYPE_SENDER_KEY_DISTRIBUTION, TYPE_SENDER_KEY_MESSAGE,
    fuzzing,
};

const ROOM: DistributionId = DistributionId::from_bytes([0x42; 16]);

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// A sender and one receiver that got the sender's distribution message.
fn pair(seed: u64) -> (OwnSenderKey, SenderKeyRecord, ChaCha20Rng) {
    let mut rng = rng(seed);
    let own = OwnSenderKey::new(ROOM, &mut rng);
    let mut rec = SenderKeyRecord::new(ROOM);
    let skdm = roundtrip_skdm(&own.distribution_message());
    assert_eq!(
        rec.process_distribution(&skdm),
        Ok(DistributionOutcome::Added)
    );
    (own, rec, rng)
}

fn roundtrip_skdm(m: &SenderKeyDistributionMessage) -> SenderKeyDistributionMessage {
    SenderKeyDistributionMessage::try_from(m.to_bytes().as_slice()).unwrap()
}

fn hmac(key: &[u8], input: u8) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(&[input]);
    mac.finalize().into_bytes().into()
}

fn varint(mut v: u32, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_varint(bytes: &[u8], at: &mut usize) -> u32 {
    let mut v = 0u32;
    let mut shift = 0;
    loop {
        let b = bytes[*at];
        *at += 1;
        v |= u32::from(b & 0x7f) << shift;
        if b < 0x80 {
            return v;
        }
        shift += 7;
    }
}

/// `own` moved `n` iterations ahead without signing `n` messages (debug-build
/// Ed25519 is slow): recompute the chain key with HMAC(CK, 0x02) and splice it
/// into the postcard state (version, 16-byte id, varint chain id, varint
/// iteration, chain key, signing seed, signing public key).
fn skip_ahead(own: &OwnSenderKey, n: u32) -> OwnSenderKey {
    let bytes = own.to_bytes();
    let mut at = 17;
    let chain_id = read_varint(&bytes, &mut at);
    let iteration = read_varint(&bytes, &mut at);
    let mut ck: [u8; 32] = bytes[at..at + 32].try_into().unwrap();
    for _ in 0..n {
        ck = hmac(&ck, 0x02);
    }
    let mut out = bytes[..17].to_vec();
    varint(chain_id, &mut out);
    varint(iteration + n, &mut out);
    out.extend_from_slice(&ck);
    out.extend_from_slice(&bytes[at + 32..]);
    OwnSenderKey::from_bytes(&out).unwrap()
}

fn wire(m: &SenderKeyMessage) -> Vec<u8> {
    m.to_bytes()
}

fn parse(bytes: &[u8]) -> SenderKeyMessage {
    SenderKeyMessage::try_from(bytes).unwrap()
}

/// Asserts that `f` fails with `err` and leaves the record byte-for-byte unchanged.
fn assert_refused_untouched(rec: &mut SenderKeyRecord, msg: &SenderKeyMessage, err: DecryptError) {
    let before = rec.to_bytes();
    assert_eq!(rec.decrypt(msg), Err(err));
    assert_eq!(
        *rec.to_bytes(),
        *before,
        "a refused message changed the record"
    );
}

#[test]
fn in_order_messages_decrypt() {
    let (mut own, mut rec, _) = pair(1);
    for i in 0..10u32 {
        let pt = format!("message {i}");
        let m = parse(&wire(&own.encrypt(pt.as_bytes()).unwrap()));
        assert_eq!(m.iteration(), i);
        assert_eq!(rec.decrypt(&m).unwrap(), pt.as_bytes());
    }
}

#[test]
fn removed_member_decrypts_nothing_after_rotation() {
    let mut rng = rng(2);
    let mut own = OwnSenderKey::new(ROOM, &mut rng);
    let first = own.distribution_message();
    let mut stays = SenderKeyRecord::new(ROOM);
    let mut removed = SenderKeyRecord::new(ROOM);
    stays.process_distribution(&first).unwrap();
    removed.process_distribution(&first).unwrap();

    let before = own.encrypt(b"before removal").unwrap();
    assert_eq!(removed.decrypt(&before).unwrap(), b"before removal");
    stays.decrypt(&before).unwrap();

    // Removal: rotate, and hand the new chain to the remaining member only.
    let old_chain = own.chain_id();
    let second = own.rotate(&mut rng);
    assert_ne!(own.chain_id(), old_chain);
    assert_ne!(second.signing_public(), first.signing_public());
    stays.process_distribution(&second).unwrap();

    for i in 0..20 {
        let m = own
            .encrypt(format!("after removal {i}").as_bytes())
            .unwrap();
        assert_eq!(m.chain_id(), own.chain_id());
        assert_refused_untouched(&mut removed, &m, DecryptError::UnknownChain);
        assert_eq!(
            stays.decrypt(&m).unwrap(),
            format!("after removal {i}").as_bytes()
        );
    }
    // Even relabelling a new message with the old chain id gets nowhere: the
    // signature was made with the new chain's key.
    let m = own.encrypt(b"relabelled").unwrap();
    let mut bytes = wire(&m);
    bytes[18..22].copy_from_slice(&old_chain.get().to_be_bytes());
    assert_refused_untouched(&mut removed, &parse(&bytes), DecryptError::BadSignature);
}

#[test]
fn message_in_flight_on_old_chain_still_decrypts_after_rotation() {
    let (mut own, mut rec, mut rng) = pair(3);
    let late = own.encrypt(b"sent before rotation").unwrap();
    let second = own.rotate(&mut rng);
    rec.process_distribution(&second).unwrap();
    let new = own.encrypt(b"after").unwrap();
    assert_eq!(rec.decrypt(&new).unwrap(), b"after");
    assert_eq!(rec.decrypt(&late).unwrap(), b"sent before rotation");
}

#[test]
fn forged_room_message_with_wrong_signing_key_is_refused() {
    let (mut own, mut rec, mut rng) = pair(4);
    // The attacker knows the chain key (say, a member of the room) but not the
    // chain's signing key: it builds a chain with the same id, iteration and
    // chain key and its own signing key. The last 64 bytes of the postcard
    // state are the signing seed and public key.
    let genuine = own.to_bytes();
    let other = OwnSenderKey::new(ROOM, &mut rng).to_bytes();
    let mut spliced = genuine[..genuine.len() - 64].to_vec();
    spliced.extend_from_slice(&other[other.len() - 64..]);
    let mut forger = OwnSenderKey::from_bytes(&spliced).unwrap();
    assert_eq!(forger.chain_id(), own.chain_id());
    assert_eq!(forger.iteration(), own.iteration());

    let forged = forger.encrypt(b"I am the sender").unwrap();
    assert_refused_untouched(&mut rec, &forged, DecryptError::BadSignature);
    // The genuine message at the same iteration still works afterwards.
    assert_eq!(
        rec.decrypt(&own.encrypt(b"genuine").unwrap()).unwrap(),
        b"genuine"
    );
}

#[test]
fn tampered_ciphertext_fails_signature_and_leaves_state_untouched() {
    let (mut own, mut rec, _) = pair(5);
    let m = own.encrypt(b"payload").unwrap();
    let mut bytes = wire(&m);
    bytes[30] ^= 0x01;
    assert_refused_untouched(&mut rec, &parse(&bytes), DecryptError::BadSignature);
    assert_eq!(rec.decrypt(&m).unwrap(), b"payload");
}

#[test]
fn tampered_iteration_fails_signature_and_leaves_state_untouched() {
    let (mut own, mut rec, _) = pair(6);
    let m = own.encrypt(b"payload").unwrap();
    let mut bytes = wire(&m);
    bytes[25] ^= 0x03;
    assert_refused_untouched(&mut rec, &parse(&bytes), DecryptError::BadSignature);
    assert_eq!(rec.decrypt(&m).unwrap(), b"payload");
}

#[test]
fn tampered_chain_id_fails_signature_or_is_unknown_and_leaves_state_untouched() {
    let (mut own, mut rec, mut rng) = pair(7);
    let old = own.encrypt(b"old chain").unwrap();
    let second = own.rotate(&mut rng);
    rec.process_distribution(&second).unwrap();
    let m = own.encrypt(b"payload").unwrap();

    // Pointing at another known chain: that chain's key does not verify it.
    let mut bytes = wire(&m);
    bytes[18..22].copy_from_slice(&old.chain_id().get().to_be_bytes());
    assert_refused_untouched(&mut rec, &parse(&bytes), DecryptError::BadSignature);

    // Pointing at no known chain.
    let mut bytes = wire(&m);
    bytes[18] ^= 0x80;
    if ChainId::new(u32::from_be_bytes(bytes[18..22].try_into().unwrap())) != old.chain_id() {
        assert_refused_untouched(&mut rec, &parse(&bytes), DecryptError::UnknownChain);
    }
    assert_eq!(rec.decrypt(&m).unwrap(), b"payload");
    assert_eq!(rec.decrypt(&old).unwrap(), b"old chain");
}

#[test]
fn tampered_distribution_id_is_refused() {
    let (mut own, mut rec, _) = pair(8);
    let m = own.encrypt(b"payload").unwrap();
    let mut bytes = wire(&m);
    bytes[2] ^= 0x01;
    assert_refused_untouched(&mut rec, &parse(&bytes), DecryptError::WrongDistribution);
}

#[test]
fn tampered_signature_is_refused() {
    let (mut own, mut rec, _) = pair(9);
    let m = own.encrypt(b"payload").unwrap();
    let mut bytes = wire(&m);
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    assert_refused_untouched(&mut rec, &parse(&bytes), DecryptError::BadSignature);
}

#[test]
fn duplicate_message_is_refused() {
    let (mut own, mut rec, _) = pair(10);
    let m = own.encrypt(b"once").unwrap();
    rec.decrypt(&m).unwrap();
    assert_refused_untouched(&mut rec, &m, DecryptError::DuplicateOrTooOld);
}

#[test]
fn duplicate_of_skipped_message_is_refused() {
    let (mut own, mut rec, _) = pair(11);
    let a = own.encrypt(b"a").unwrap();
    let b = own.encrypt(b"b").unwrap();
    rec.decrypt(&b).unwrap();
    assert_eq!(rec.decrypt(&a).unwrap(), b"a");
    assert_refused_untouched(&mut rec, &a, DecryptError::DuplicateOrTooOld);
    assert_refused_untouched(&mut rec, &b, DecryptError::DuplicateOrTooOld);
}

#[test]
fn out_of_order_within_the_bound_decrypts() {
    let (mut own, mut rec, _) = pair(12);
    let msgs: Vec<_> = (0..50)
        .map(|i| own.encrypt(&[i as u8; 3]).unwrap())
        .collect();
    for i in (0..50).rev() {
        assert_eq!(rec.decrypt(&msgs[i]).unwrap(), vec![i as u8; 3]);
    }
}

#[test]
fn jump_of_exactly_max_jump_is_accepted() {
    let (own, mut rec, _) = pair(13);
    let mut own = skip_ahead(&own, MAX_JUMP);
    let m = own.encrypt(b"far").unwrap();
    assert_eq!(m.iteration(), MAX_JUMP);
    assert_eq!(rec.decrypt(&m).unwrap(), b"far");
}

#[test]
fn sender_key_jump_beyond_the_bound_is_refused() {
    let (own, mut rec, _) = pair(14);
    let mut own = skip_ahead(&own, MAX_JUMP + 1);
    let m = own.encrypt(b"too far").unwrap();
    assert_eq!(m.iteration(), MAX_JUMP + 1);
    assert_refused_untouched(
        &mut rec,
        &m,
        DecryptError::TooFarAhead { jump: MAX_JUMP + 1 },
    );
}

#[test]
fn skipped_keys_are_bounded_and_oldest_dropped() {
    let (mut own, mut rec, _) = pair(15);
    let n = u32::try_from(MAX_SKIPPED_KEYS).unwrap();
    let oldest = own.encrypt(b"oldest").unwrap();
    let kept = own.encrypt(b"kept").unwrap();
    let mut own = skip_ahead(&own, n - 2);
    let newest_skipped = own.encrypt(b"newest skipped").unwrap();
    assert_eq!(newest_skipped.iteration(), n);
    // Receiving iteration n + 1 skips n + 1 keys: one more than the store holds.
    let last = own.encrypt(b"last").unwrap();
    rec.decrypt(&last).unwrap();
    assert_refused_untouched(&mut rec, &oldest, DecryptError::DuplicateOrTooOld);
    assert_eq!(rec.decrypt(&kept).unwrap(), b"kept");
    assert_eq!(rec.decrypt(&newest_skipped).unwrap(), b"newest skipped");
}

#[test]
fn chains_per_record_are_bounded() {
    let (mut own, mut rec, mut rng) = pair(16);
    let first = own.encrypt(b"first chain").unwrap();
    for _ in 0..MAX_CHAINS_PER_RECORD - 1 {
        rec.process_distribution(&own.rotate(&mut rng)).unwrap();
    }
    assert_eq!(rec.chain_ids().len(), MAX_CHAINS_PER_RECORD);
    let mut probe = rec.clone();
    assert_eq!(probe.decrypt(&first).unwrap(), b"first chain");
    rec.process_distribution(&own.rotate(&mut rng)).unwrap();
    assert_eq!(rec.chain_ids().len(), MAX_CHAINS_PER_RECORD);
    assert_eq!(rec.chain_ids()[0], own.chain_id());
    assert_refused_untouched(&mut rec, &first, DecryptError::UnknownChain);
}

#[test]
fn distribution_for_known_chain_is_idempotent_and_conflicts_are_refused() {
    let (mut own, mut rec, mut rng) = pair(17);
    let skdm = own.distribution_message();
    rec.decrypt(&own.encrypt(b"a").unwrap()).unwrap();
    let before = rec.to_bytes();
    assert_eq!(
        rec.process_distribution(&skdm),
        Ok(DistributionOutcome::AlreadyKnown)
    );
    assert_eq!(
        *rec.to_bytes(),
        *before,
        "an old distribution message rewound the chain"
    );

    // Same chain id, other signing key.
    let other = OwnSenderKey::new(ROOM, &mut rng).distribution_message();
    let mut bytes = other.to_bytes().to_vec();
    bytes[18..22].copy_from_slice(&own.chain_id().get().to_be_bytes());
    let conflicting = SenderKeyDistributionMessage::try_from(bytes.as_slice()).unwrap();
    assert_eq!(
        rec.process_distribution(&conflicting),
        Err(ProcessDistributionError::ChainIdConflict)
    );

    let mut other_room = SenderKeyRecord::new(DistributionId::from_bytes([1; 16]));
    assert_eq!(
        other_room.process_distribution(&skdm),
        Err(ProcessDistributionError::WrongDistribution)
    );
}

#[test]
fn late_joiner_cannot_read_messages_sent_before_its_distribution() {
    let (mut own, _, _) = pair(18);
    let early = own.encrypt(b"before you joined").unwrap();
    let mut joiner = SenderKeyRecord::new(ROOM);
    joiner
        .process_distribution(&own.distribution_message())
        .unwrap();
    assert_refused_untouched(&mut joiner, &early, DecryptError::DuplicateOrTooOld);
    assert_eq!(
        joiner.decrypt(&own.encrypt(b"now").unwrap()).unwrap(),
        b"now"
    );
}

#[test]
fn distribution_message_where_room_message_expected_is_refused() {
    let (own, _, _) = pair(19);
    let skdm = own.distribution_message().to_bytes();
    assert_eq!(
        SenderKeyMessage::try_from(skdm.as_slice()),
        Err(DecodeError::UnexpectedType {
            expected: TYPE_SENDER_KEY_MESSAGE,
            found: TYPE_SENDER_KEY_DISTRIBUTION
        })
    );
}

#[test]
fn room_message_where_distribution_expected_is_refused() {
    let (mut own, _, _) = pair(20);
    let m = wire(&own.encrypt(b"x").unwrap());
    assert_eq!(
        SenderKeyDistributionMessage::try_from(m.as_slice()).unwrap_err(),
        DecodeError::UnexpectedType {
            expected: TYPE_SENDER_KEY_DISTRIBUTION,
            found: TYPE_SENDER_KEY_MESSAGE
        }
    );
}

#[test]
fn ratchet_type_byte_is_refused_by_both_parsers() {
    let (mut own, _, _) = pair(21);
    // The 1:1 protocol's PreKeyMessage / Message use low type values.
    for ratchet_type in [0x01u8, 0x02, 0x03] {
        let mut m = wire(&own.encrypt(b"x").unwrap());
        m[1] = ratchet_type;
        assert_eq!(
            SenderKeyMessage::try_from(m.as_slice()),
            Err(DecodeError::UnexpectedType {
                expected: TYPE_SENDER_KEY_MESSAGE,
                found: ratchet_type
            })
        );
        let mut d = own.distribution_message().to_bytes().to_vec();
        d[1] = ratchet_type;
        assert_eq!(
            SenderKeyDistributionMessage::try_from(d.as_slice()).unwrap_err(),
            DecodeError::UnexpectedType {
                expected: TYPE_SENDER_KEY_DISTRIBUTION,
                found: ratchet_type
            }
        );
    }
}

#[test]
fn unknown_version_is_refused() {
    let (mut own, _, _) = pair(22);
    let mut m = wire(&own.encrypt(b"x").unwrap());
    m[0] = 0x02;
    assert_eq!(
        SenderKeyMessage::try_from(m.as_slice()),
        Err(DecodeError::UnsupportedVersion { found: 0x02 })
    );
}

#[test]
fn message_length_limits_at_their_edges() {
    let (mut own, mut rec, _) = pair(23);
    let max = own.encrypt(&vec![7u8; MAX_PLAINTEXT_LEN]).unwrap();
    assert_eq!(wire(&max).len(), MAX_MESSAGE_LEN);
    assert_eq!(
        rec.decrypt(&parse(&wire(&max))).unwrap().len(),
        MAX_PLAINTEXT_LEN
    );
    assert_eq!(
        own.encrypt(&vec![7u8; MAX_PLAINTEXT_LEN + 1]).unwrap_err(),
        EncryptError::PlaintextTooLong {
            len: MAX_PLAINTEXT_LEN + 1
        }
    );
    let mut long = wire(&max);
    long.push(0);
    assert_eq!(
        SenderKeyMessage::try_from(long.as_slice()),
        Err(DecodeError::TooLong {
            len: MAX_MESSAGE_LEN + 1
        })
    );
    let empty = wire(&own.encrypt(b"").unwrap());
    assert_eq!(empty.len(), MIN_MESSAGE_LEN);
    assert_eq!(
        SenderKeyMessage::try_from(&empty[..MIN_MESSAGE_LEN - 1]),
        Err(DecodeError::TooShort {
            len: MIN_MESSAGE_LEN - 1
        })
    );
    let d = own.distribution_message().to_bytes();
    assert_eq!(d.len(), DISTRIBUTION_MESSAGE_LEN);
    assert_eq!(
        SenderKeyDistributionMessage::try_from(&d[..DISTRIBUTION_MESSAGE_LEN - 1]).unwrap_err(),
        DecodeError::TooShort {
            len: DISTRIBUTION_MESSAGE_LEN - 1
        }
    );
}

#[test]
fn weak_signing_key_in_distribution_message_is_refused() {
    let (own, _, _) = pair(24);
    let mut d = own.distribution_message().to_bytes().to_vec();
    // The identity point, a small-order point.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    d[58..90].copy_from_slice(&identity);
    assert_eq!(
        SenderKeyDistributionMessage::try_from(d.as_slice()).unwrap_err(),
        DecodeError::InvalidSigningKey
    );
}

#[test]
fn state_survives_serialization_and_rejects_other_versions() {
    let (mut own, mut rec, _) = pair(25);
    let a = own.encrypt(b"a").unwrap();
    let b = own.encrypt(b"b").unwrap();
    rec.decrypt(&b).unwrap();
    let mut own2 = OwnSenderKey::from_bytes(&own.to_bytes()).unwrap();
    let mut rec2 = SenderKeyRecord::from_bytes(&rec.to_bytes()).unwrap();
    assert_eq!(rec2.decrypt(&a).unwrap(), b"a");
    assert_eq!(rec2.decrypt(&own2.encrypt(b"c").unwrap()).unwrap(), b"c");

    let mut bytes = rec.to_bytes().to_vec();
    bytes[0] = 2;
    assert_eq!(
        SenderKeyRecord::from_bytes(&bytes).unwrap_err(),
        StateDecodeError::UnsupportedVersion { found: 2 }
    );
    let mut bytes = rec.to_bytes().to_vec();
    bytes.push(0);
    assert_eq!(
        SenderKeyRecord::from_bytes(&bytes).unwrap_err(),
        StateDecodeError::Malformed
    );
}

#[test]
fn debug_output_prints_no_secret() {
    let (mut own, mut rec, _) = pair(26);
    let skdm = own.distribution_message();
    let skdm_bytes = skdm.to_bytes();
    let chain_key = &skdm_bytes[26..58];
    let m = own.encrypt(b"top secret plaintext").unwrap();
    rec.decrypt(&m).unwrap();
    let outputs = [
        format!("{own:?}"),
        format!("{rec:?}"),
        format!("{skdm:?}"),
        format!("{m:?}"),
        format!("{:#?}", own),
    ];
    let key_hex = hex::encode(chain_key);
    let key_dec = format!("{:?}", chain_key); // "[12, 34, ...]"
    let key_dec_inner = key_dec.trim_matches(|c| c == '[' || c == ']');
    for out in &outputs {
        assert!(!out.contains(&key_hex), "{out}");
        assert!(!out.contains(key_dec_inner), "{out}");
        assert!(!out.contains("top secret"), "{out}");
    }
    assert!(outputs[0].contains("<redacted>"));
    assert!(outputs[1].contains("<redacted>"));
    assert!(outputs[2].contains("<redacted>"));
    // Errors carry no key material either.
    assert_eq!(
        DecryptError::BadSignature.to_string(),
        "room message signature does not verify"
    );
}

#[test]
fn in_memory_store_round_trips_records() {
    let (mut own, rec, _) = pair(27);
    let mut store = InMemSenderKeyStore::<String>::new();
    let alice = "alice/1".to_string();
    assert!(store.load_sender_key(ROOM, &alice).unwrap().is_none());
    store.store_sender_key(ROOM, &alice, rec).unwrap();
    let m = own.encrypt(b"stored").unwrap();
    store.store_own_sender_key(ROOM, own).unwrap();
    let mut rec = store.load_sender_key(ROOM, &alice).unwrap().unwrap();
    assert_eq!(rec.decrypt(&m).unwrap(), b"stored");
    let mut own = store.load_own_sender_key(ROOM).unwrap().unwrap();
    assert_eq!(own.iteration(), 1);
    assert_eq!(
        rec.decrypt(&own.encrypt(b"next").unwrap()).unwrap(),
        b"next"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic_the_parsers(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        fuzzing::sender_key_message(&data);
        fuzzing::sender_key_distribution_message(&data);
        fuzzing::sender_key_record(&data);
        fuzzing::own_sender_key(&data);
        // And every refusal is a typed error.
        let _: Result<SenderKeyMessage, DecodeError> = SenderKeyMessage::try_from(data.as_slice());
        let _: Result<SenderKeyDistributionMessage, DecodeError> =
            SenderKeyDistributionMessage::try_from(data.as_slice());
    }

    #[test]
    fn arbitrary_bytes_with_valid_prefix_never_panic(
        ty in prop_oneof![Just(TYPE_SENDER_KEY_MESSAGE), Just(TYPE_SENDER_KEY_DISTRIBUTION)],
        rest in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut data = vec![1u8, ty];
        data.extend_from_slice(&rest);
        fuzzing::sender_key_message(&data);
        fuzzing::sender_key_distribution_message(&data);
        if let Ok(m) = SenderKeyMessage::try_from(data.as_slice()) {
            let (_, mut rec, _) = pair(28);
            prop_assert!(rec.decrypt(&m).is_err());
        }
    }

    #[test]
    fn mutated_state_never_panics_the_loader(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let (mut own, mut rec, _) = pair(29);
        let _ = own.encrypt(b"a").unwrap();
        rec.decrypt(&own.encrypt(b"b").unwrap()).unwrap();
        for bytes in [rec.to_bytes().to_vec(), own.to_bytes().to_vec()] {
            let mut bytes = bytes;
            for (at, x) in &flips {
                let i = at % bytes.len();
                bytes[i] ^= x;
            }
            fuzzing::sender_key_record(&bytes);
            fuzzing::own_sender_key(&bytes);
        }
    }

}

proptest! {
    // Each case signs and verifies up to 40 messages, and debug-build Ed25519
    // is slow: fewer cases here keep the suite quick on a shared 2-core box.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn reordered_and_dropped_stream_delivers_each_survivor_once(
        seed in any::<u64>(),
        n in 1usize..40,
        keep in proptest::collection::vec(any::<bool>(), 40),
        order in Just((0..40).collect::<Vec<usize>>()).prop_shuffle(),
        dup in proptest::collection::vec(any::<bool>(), 40),
    ) {
        let (mut own, mut rec, _) = pair(seed);
        let sent: Vec<(Vec<u8>, Vec<u8>)> = (0..n)
            .map(|i| {
                let pt = format!("msg {i} of {seed}").into_bytes();
                (pt.clone(), wire(&own.encrypt(&pt).unwrap()))
            })
            .collect();
        let mut delivered = vec![0u32; n];
        for &i in order.iter().filter(|&&i| i < n && keep[i]) {
            let copies = if dup[i] { 2 } else { 1 };
            for _ in 0..copies {
                let m = parse(&sent[i].1);
                match rec.decrypt(&m) {
                    Ok(pt) => {
                        prop_assert_eq!(&pt, &sent[i].0);
                        delivered[i] += 1;
                    }
                    Err(e) => prop_assert_eq!(e, DecryptError::DuplicateOrTooOld),
                }
            }
        }
        for i in 0..n {
            prop_assert_eq!(delivered[i], u32::from(keep[i]));
        }
    }
}

/// A hand-written snapshot of every Debug form: any new field shows up here
/// and must be reviewed for secrets.
#[test]
fn debug_output_snapshot() {
    let (mut own, mut rec, _) = pair(30);
    let m = own.encrypt(b"secret").unwrap();
    rec.decrypt(&m).unwrap();
    let id = own.chain_id().get();
    let room = "DistributionId(42424242424242424242424242424242)";
    assert_eq!(
        format!("{own:?}"),
        format!(
            "OwnSenderKey {{ distribution_id: {room}, chain_id: ChainId({id}), iteration: 1, \
             chain_key: \"<redacted>\", signing_key: \"<redacted>\" }}"
        )
    );
    assert_eq!(
        format!("{rec:?}"),
        format!(
            "SenderKeyRecord {{ distribution_id: {room}, chains: [ReceivingChain {{ \
             chain_id: ChainId({id}), next_iteration: 1, skipped_keys: 0, \
             chain_key: \"<redacted>\" }}] }}"
        )
    );
    assert_eq!(
        format!("{:?}", own.distribution_message()),
        format!(
            "SenderKeyDistributionMessage {{ distribution_id: {room}, chain_id: ChainId({id}), \
             iteration: 1, chain_key: \"<redacted>\", .. }}"
        )
    );
    assert_eq!(
        format!("{m:?}"),
        format!(
            "SenderKeyMessage {{ distribution_id: {room}, chain_id: ChainId({id}), \
             iteration: 0, ciphertext_len: 22, .. }}"
        )
    );
}

#[test]
fn secret_holding_types_zeroize_on_drop() {
    fn assert_zeroize_on_drop<T: zeroize::ZeroizeOnDrop>() {}
    assert_zeroize_on_drop::<OwnSenderKey>();
    assert_zeroize_on_drop::<SenderKeyRecord>();
    assert_zeroize_on_drop::<SenderKeyDistributionMessage>();
}

#[test]
fn validly_signed_garbage_fails_aead_and_leaves_state_untouched() {
    use ed25519_dalek::{Signer, SigningKey};
    // A buggy or malicious sender signs a ciphertext that does not decrypt,
    // at a far iteration: the record must not advance past it.
    let (own, mut rec, _) = pair(31);
    let state = own.to_bytes();
    let seed: [u8; 32] = state[state.len() - 64..state.len() - 32]
        .try_into()
        .unwrap();
    let signing = SigningKey::from_bytes(&seed);
    let honest = skip_ahead(&own, 0).encrypt(b"x").unwrap();
    let mut header = wire(&honest)[..26].to_vec();
    header[22..26].copy_from_slice(&100u32.to_be_bytes());
    let garbage = [0xAAu8; 40];
    let mut signed = b"spider/v1/sig/sender-key-message\x00".to_vec();
    signed.extend_from_slice(&header);
    signed.extend_from_slice(&garbage);
    let mut bytes = header;
    bytes.extend_from_slice(&garbage);
    bytes.extend_from_slice(&signing.sign(&signed).to_bytes());
    assert_refused_untouched(&mut rec, &parse(&bytes), DecryptError::Aead);
    assert_eq!(rec.decrypt(&honest).unwrap(), b"x");
}
