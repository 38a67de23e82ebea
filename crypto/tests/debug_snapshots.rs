//! Snapshots of the `Debug` output of every type that holds key material
//! (conventions §10): a change that starts printing a secret shows up as a
//! snapshot diff in review, on top of the "no secret bytes" assertions in
//! the unit tests. Keys come from a seeded RNG, so the snapshots (which show
//! the first bytes of public keys and random ids) are stable.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use insta::assert_debug_snapshot;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use spider_crypto::attachment::{
    AttachmentDecryptor, AttachmentEncryptor, AttachmentKey, AttachmentPointer, BlobId, CHUNK_SIZE,
};
use spider_crypto::keys::{
    IdentityKeyPair, KemPreKeyKind, KemPreKeyPair, OneTimePreKeyPair, PreKeyBundle, PreKeyId,
    SignedPreKeyPair,
};
use spider_crypto::sender_key::{
    DistributionId, InMemSenderKeyStore, OwnSenderKey, SenderKeyRecord, SenderKeyStore,
};
use spider_crypto::session::{Message, Session, SessionRecord};
use spider_crypto::store::{
    DeviceAddress, IdentityStore, InMemIdentityStore, InMemPreKeyStore, InMemSessionStore,
    PreKeyStore, SessionStore,
};
use spider_crypto::x3dh::ReplayCache;

const NOW: u64 = 1_700_000_000;

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::from_seed([0x5d; 32])
}

#[test]
fn identity_and_prekey_pairs_debug_prints_no_secret() {
    let mut rng = rng();
    let id = IdentityKeyPair::generate(&mut rng);
    let spk = SignedPreKeyPair::generate(&mut rng, &id, PreKeyId(1), NOW);
    let kem = KemPreKeyPair::generate(&mut rng, &id, PreKeyId(2), KemPreKeyKind::OneTime, NOW);
    let last_resort =
        KemPreKeyPair::generate(&mut rng, &id, PreKeyId(3), KemPreKeyKind::LastResort, NOW);
    let otk = OneTimePreKeyPair::generate(&mut rng, PreKeyId(4));
    assert_debug_snapshot!("identity_key_pair", id);
    assert_debug_snapshot!("signed_prekey_pair", spk);
    assert_debug_snapshot!("kem_prekey_pair", kem);
    assert_debug_snapshot!("kem_prekey_pair_last_resort", last_resort);
    assert_debug_snapshot!("one_time_prekey_pair", otk);
}

/// Both ends of a session, Bob's with a skipped message key, and the stores
/// that hold sessions and private keys.
#[test]
fn sessions_and_key_stores_debug_prints_no_secret() {
    let mut rng = rng();
    let bob = IdentityKeyPair::generate(&mut rng);
    let alice = IdentityKeyPair::generate(&mut rng);
    let spk = SignedPreKeyPair::generate(&mut rng, &bob, PreKeyId(1), NOW);
    let kem = KemPreKeyPair::generate(&mut rng, &bob, PreKeyId(1), KemPreKeyKind::OneTime, NOW);
    let otk = OneTimePreKeyPair::generate(&mut rng, PreKeyId(1));
    let bundle = PreKeyBundle {
        identity: bob.public().clone(),
        signed_prekey: spk.public(),
        kem_prekey: kem.public().clone(),
        one_time_prekey: Some(otk.public()),
    };
    let mut prekeys = InMemPreKeyStore::new();
    prekeys.save_signed_prekey(spk).unwrap();
    prekeys.save_kem_prekey(kem).unwrap();
    prekeys.save_one_time_prekey(otk).unwrap();
    // Keys left after the handshake consumed the one-time ones, so that the
    // store snapshot shows every kind.
    let spare = SignedPreKeyPair::generate(&mut rng, &bob, PreKeyId(2), NOW + 1);
    let last_resort =
        KemPreKeyPair::generate(&mut rng, &bob, PreKeyId(2), KemPreKeyKind::LastResort, NOW);
    let spare_otk = OneTimePreKeyPair::generate(&mut rng, PreKeyId(2));
    prekeys.save_signed_prekey(spare).unwrap();
    prekeys.save_kem_prekey(last_resort).unwrap();
    prekeys.save_one_time_prekey(spare_otk).unwrap();

    let mut a = Session::initiate(&mut rng, &alice, &bundle.verify().unwrap()).unwrap();
    assert_debug_snapshot!("session_initiator_before_reply", a);
    let Message::PreKey(first) = a.encrypt(b"secret plaintext 1").unwrap() else {
        panic!("the first message is a PreKey message")
    };
    let _skipped = a.encrypt(b"two").unwrap();
    let third = a.encrypt(b"three").unwrap();
    let mut replay = ReplayCache::new();
    let (mut b, _) =
        Session::accept(&mut rng, &bob, &mut prekeys, &mut replay, &first, NOW).unwrap();
    b.decrypt(&mut rng, &third, NOW).unwrap();
    let reply = b.encrypt(b"reply").unwrap();
    a.decrypt(&mut rng, &reply, NOW).unwrap();
    assert_debug_snapshot!("session_initiator", a);
    assert_debug_snapshot!("session_responder_with_skipped_key", b);
    assert_debug_snapshot!("prekey_message", first);

    assert_debug_snapshot!("in_mem_prekey_store", prekeys);
    let address = DeviceAddress::new("alice", 1);
    let mut identities = InMemIdentityStore::new(bob);
    identities.save_identity(&address, alice.public()).unwrap();
    assert_debug_snapshot!("in_mem_identity_store", identities);
    let mut sessions = InMemSessionStore::new();
    sessions
        .store_session(&address, &SessionRecord::new(b.clone()))
        .unwrap();
    assert_debug_snapshot!("in_mem_session_store", sessions);
}

/// A sending chain, its distribution message (which carries the chain key),
/// and a receiving record with a skipped key.
#[test]
fn sender_keys_debug_prints_no_secret() {
    let mut rng = rng();
    let room = DistributionId::random(&mut rng);
    let mut own = OwnSenderKey::new(room, &mut rng);
    let distribution = own.distribution_message();
    let mut record = SenderKeyRecord::new(room);
    record.process_distribution(&distribution).unwrap();
    let _skipped = own.encrypt(b"one").unwrap();
    let second = own.encrypt(b"secret plaintext 2").unwrap();
    record.decrypt(&second).unwrap();
    assert_debug_snapshot!("own_sender_key", own);
    assert_debug_snapshot!("sender_key_distribution_message", distribution);
    assert_debug_snapshot!("sender_key_record_with_skipped_key", record);
    assert_debug_snapshot!("sender_key_message", second);

    let mut store = InMemSenderKeyStore::<String>::new();
    store.store_own_sender_key(room, own).unwrap();
    store
        .store_sender_key(room, &"bob".to_owned(), record)
        .unwrap();
    assert_debug_snapshot!("in_mem_sender_key_store", store);
}

#[test]
fn attachment_keys_debug_prints_no_secret() {
    let mut rng = rng();
    let key = AttachmentKey::random(&mut rng);
    assert_debug_snapshot!("attachment_key", key);
    let mut enc = AttachmentEncryptor::with_key(key);
    let mut blob = enc.encrypt_chunk(&[0x42; CHUNK_SIZE]).unwrap();
    assert_debug_snapshot!("attachment_encryptor", enc);
    let (last, sealed) = enc.finish(b"tail").unwrap();
    blob.extend_from_slice(&last);
    assert_debug_snapshot!("sealed_attachment", sealed);
    let pointer = AttachmentPointer::new(BlobId::new(b"blob-1".to_vec()).unwrap(), sealed);
    assert_debug_snapshot!("attachment_pointer", pointer);
    let mut dec = AttachmentDecryptor::new(&pointer).unwrap();
    dec.decrypt_chunk(&blob[..blob.len() - last.len()]).unwrap();
    assert_debug_snapshot!("attachment_decryptor", dec);
}
