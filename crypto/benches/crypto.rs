//! spider-crypto's operations, timed with criterion, next to the matching
//! operations of vodozemac (Matrix's Olm and Megolm) as the reference.
//!
//! Each criterion group holds one operation; its functions are `spider` and,
//! where Matrix has a counterpart in vodozemac, `vodozemac`, so the report
//! shows the pair side by side. docs/benchmarks.md records a run and says
//! what each pair does and does not match.
//!
//! ```text
//! cargo bench -p spider-crypto --bench crypto -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Messages are timed as values, not bytes, on both sides: encrypt returns the
//! library's message type, decrypt takes it (neither side's wire encoding is
//! in the loop, except in session setup, where both parse the received bytes).

// Benchmark code, like test code: setup that cannot fail is unwrapped, so the
// workspace's no-panic lints (conventions §9, for code that sees untrusted
// input) do not apply; criterion_group! generates undocumented pub fns.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::Signer as _;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use spider_crypto::attachment::{AttachmentPointer, BlobId, decrypt_reader, encrypt_reader};
use spider_crypto::keys::{
    IdentityKeyPair, KemPreKeyKind, KemPreKeyPair, OneTimePreKeyPair, PreKeyBundle, PreKeyId,
    SignedPreKeyPair,
};
use spider_crypto::primitives;
use spider_crypto::safety::{SafetyIdentity, SafetyNumber};
use spider_crypto::sender_key::{DistributionId, OwnSenderKey, SenderKeyRecord};
use spider_crypto::session::{Message, Session};
use spider_crypto::store::{InMemPreKeyStore, PreKeyStore};
use spider_crypto::x3dh::ReplayCache;
use vodozemac::megolm::{GroupSession, InboundGroupSession, SessionConfig as MegolmConfig};
use vodozemac::olm::{
    Account, AccountPickle, OlmMessage, PreKeyMessage as OlmPreKeyMessage, Session as OlmSession,
    SessionConfig as OlmConfig,
};

const NOW: u64 = 1_700_000_000;
/// Message sizes: a typical chat line, and a long one.
const SIZES: [(usize, &str); 2] = [(64, "64B"), (1024, "1KiB")];
/// Attachment sizes: a photo, a short video.
const FILE_SIZES: [(usize, &str); 2] = [(1 << 20, "1MiB"), (16 << 20, "16MiB")];
/// Key for vodozemac's pickles, which the responder benchmark uses to get a
/// fresh copy of Bob's account (with its one-time key) for every iteration.
const PICKLE_KEY: [u8; 32] = [7; 32];

fn rng(seed: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([seed; 32])
}

// ---------------------------------------------------------------------------
// Fixtures

/// Bob as the relay sees him: a published bundle, and the private prekeys.
struct SpiderBob {
    identity: IdentityKeyPair,
    keys: (SignedPreKeyPair, KemPreKeyPair, OneTimePreKeyPair),
    bundle_bytes: Vec<u8>,
}

impl SpiderBob {
    /// A fresh store with Bob's private prekeys (the responder consumes the
    /// one-time ones).
    fn prekeys(&self) -> InMemPreKeyStore {
        let (spk, kem, otk) = self.keys.clone();
        let mut prekeys = InMemPreKeyStore::new();
        prekeys.save_signed_prekey(spk).unwrap();
        prekeys.save_kem_prekey(kem).unwrap();
        prekeys.save_one_time_prekey(otk).unwrap();
        prekeys
    }
}

/// Bob with the full PQXDH bundle: signed prekey, one-time ML-KEM prekey and
/// one-time X25519 prekey (the path with the most work on both sides).
fn spider_bob(rng: &mut ChaCha20Rng) -> SpiderBob {
    let identity = IdentityKeyPair::generate(rng);
    let spk = SignedPreKeyPair::generate(rng, &identity, PreKeyId(1), NOW);
    let kem = KemPreKeyPair::generate(rng, &identity, PreKeyId(1), KemPreKeyKind::OneTime, NOW);
    let otk = OneTimePreKeyPair::generate(rng, PreKeyId(1));
    let bundle = PreKeyBundle {
        identity: identity.public().clone(),
        signed_prekey: spk.public(),
        kem_prekey: kem.public().clone(),
        one_time_prekey: Some(otk.public()),
    };
    SpiderBob {
        identity,
        keys: (spk, kem, otk),
        bundle_bytes: bundle.to_bytes(),
    }
}

/// Alice's half of PQXDH as a client runs it: parse the bundle the relay
/// handed out, check its signatures, run the handshake, encrypt the first
/// message.
fn spider_initiate(
    rng: &mut ChaCha20Rng,
    alice: &IdentityKeyPair,
    bundle_bytes: &[u8],
    first: &[u8],
) -> (Session, Message) {
    let verified = PreKeyBundle::try_from(bundle_bytes)
        .unwrap()
        .verify()
        .unwrap();
    let mut session = Session::initiate(rng, alice, &verified).unwrap();
    let message = session.encrypt(first).unwrap();
    (session, message)
}

/// Two Spider sessions past the handshake (Bob replied, Alice read it), so
/// that both send plain ratchet messages.
fn spider_pair(rng: &mut ChaCha20Rng) -> (Session, Session) {
    let bob = spider_bob(rng);
    let mut prekeys = bob.prekeys();
    let alice_id = IdentityKeyPair::generate(rng);
    let (mut alice, first) = spider_initiate(rng, &alice_id, &bob.bundle_bytes, b"hello");
    let Message::PreKey(first) = first else {
        panic!("the first message is a PreKey message")
    };
    let mut replay = ReplayCache::new();
    let (mut bob_session, _) =
        Session::accept(rng, &bob.identity, &mut prekeys, &mut replay, &first, NOW).unwrap();
    let reply = bob_session.encrypt(b"hi").unwrap();
    alice.decrypt(rng, &reply, NOW).unwrap();
    (alice, bob_session)
}

/// Bob's Olm account with one published one-time key.
fn olm_bob() -> (Account, vodozemac::Curve25519PublicKey) {
    let mut bob = Account::new();
    bob.generate_one_time_keys(1);
    let otk = bob.one_time_keys().into_values().next().unwrap();
    bob.mark_keys_as_published();
    (bob, otk)
}

/// Two Olm sessions past the handshake, like [`spider_pair`].
fn olm_pair() -> (OlmSession, OlmSession) {
    let alice_account = Account::new();
    let (mut bob_account, otk) = olm_bob();
    let mut alice = alice_account
        .create_outbound_session(OlmConfig::version_1(), bob_account.curve25519_key(), otk)
        .unwrap();
    let OlmMessage::PreKey(first) = alice.encrypt(b"hello").unwrap() else {
        panic!("the first message is a PreKey message")
    };
    let mut bob = bob_account
        .create_inbound_session(
            OlmConfig::version_1(),
            alice_account.curve25519_key(),
            &first,
        )
        .unwrap()
        .session;
    let reply = bob.encrypt(b"hi").unwrap();
    alice.decrypt(&reply).unwrap();
    (alice, bob)
}

// ---------------------------------------------------------------------------
// 1:1 sessions

/// Initiator: Spider parses and verifies a bundle (two Ed25519 signature
/// checks, the ML-KEM key check), runs PQXDH (X25519 keygen, 4 DH, ML-KEM-768
/// encapsulation) and encrypts the first message; Olm runs 3DH (keygen, 3 DH)
/// and encrypts the first message. Olm gets its one-time key's signature
/// checked outside vodozemac, so that check is not in its figure.
fn session_setup_initiator(c: &mut Criterion) {
    let mut group = c.benchmark_group("session_setup_initiator");
    let mut r = rng(1);
    let bob = spider_bob(&mut r);
    let alice = IdentityKeyPair::generate(&mut r);
    group.bench_function("spider", |b| {
        b.iter(|| spider_initiate(&mut r, &alice, black_box(&bob.bundle_bytes), &[0u8; 64]));
    });

    let olm_alice = Account::new();
    let (olm_bob, otk) = olm_bob();
    let identity = olm_bob.curve25519_key();
    group.bench_function("vodozemac", |b| {
        b.iter(|| {
            let mut session = olm_alice
                .create_outbound_session(OlmConfig::version_1(), black_box(identity), otk)
                .unwrap();
            let first = session.encrypt([0u8; 64]).unwrap();
            (session, first)
        });
    });
    group.finish();
}

/// Responder: both parse the first message's bytes, find their prekeys, run
/// the handshake's other half and decrypt the first message. Spider also
/// decapsulates ML-KEM-768 (after expanding the decapsulation key from its
/// seed), does 4 DH, updates the prekey store (one-time keys consumed) and
/// the replay cache; Olm does 3 DH and removes its one-time key. Every
/// iteration starts from a fresh copy of Bob's keys (made outside the timing).
fn session_setup_responder(c: &mut Criterion) {
    let mut group = c.benchmark_group("session_setup_responder");
    let mut r = rng(2);
    let bob = spider_bob(&mut r);
    let alice = IdentityKeyPair::generate(&mut r);
    let (_, first) = spider_initiate(&mut r, &alice, &bob.bundle_bytes, &[0u8; 64]);
    let first = first.to_bytes();
    group.bench_function("spider", |b| {
        b.iter_batched(
            || (bob.prekeys(), ReplayCache::new()),
            |(mut prekeys, mut replay)| {
                let Message::PreKey(m) = Message::try_from(black_box(&first[..])).unwrap() else {
                    panic!("a PreKey message")
                };
                Session::accept(&mut r, &bob.identity, &mut prekeys, &mut replay, &m, NOW).unwrap()
            },
            BatchSize::SmallInput,
        );
    });

    let olm_alice = Account::new();
    let (olm_bob, otk) = olm_bob();
    let mut session = olm_alice
        .create_outbound_session(OlmConfig::version_1(), olm_bob.curve25519_key(), otk)
        .unwrap();
    let OlmMessage::PreKey(first) = session.encrypt([0u8; 64]).unwrap() else {
        panic!("a PreKey message")
    };
    let first = first.to_bytes();
    let pickle = olm_bob.pickle().encrypt(&PICKLE_KEY);
    let alice_key = olm_alice.curve25519_key();
    group.bench_function("vodozemac", |b| {
        b.iter_batched(
            || Account::from_pickle(AccountPickle::from_encrypted(&pickle, &PICKLE_KEY).unwrap()),
            |mut account| {
                let m = OlmPreKeyMessage::from_bytes(black_box(&first)).unwrap();
                account
                    .create_inbound_session(OlmConfig::version_1(), alice_key, &m)
                    .unwrap()
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

/// Steady state, one direction: the sender's symmetric chain step and AEAD.
/// Spider: HMAC-SHA256 chain, ChaCha20-Poly1305. Olm v1: HMAC-SHA256 chain,
/// HKDF per message, AES-256-CBC and HMAC-SHA256 (truncated to 8 bytes).
fn ratchet_encrypt(c: &mut Criterion) {
    let mut group = c.benchmark_group("ratchet_encrypt");
    let mut r = rng(3);
    let (mut alice, _bob) = spider_pair(&mut r);
    let (mut olm_alice, _olm_bob) = olm_pair();
    for (size, label) in SIZES {
        let plaintext = vec![0x5a; size];
        group.bench_function(BenchmarkId::new("spider", label), |b| {
            b.iter(|| alice.encrypt(black_box(&plaintext)).unwrap());
        });
        group.bench_function(BenchmarkId::new("vodozemac", label), |b| {
            b.iter(|| olm_alice.encrypt(black_box(&plaintext)).unwrap());
        });
    }
    group.finish();
}

/// Steady state, in order: the receiver's chain step, AEAD open. The
/// messages are made outside the timing. Spider decrypts on a staged copy of
/// its ratchet state (so a failed message leaves the session untouched).
fn ratchet_decrypt(c: &mut Criterion) {
    let mut group = c.benchmark_group("ratchet_decrypt");
    let mut r = rng(4);
    let mut encrypt_rng = rng(5);
    let (mut alice, mut bob) = spider_pair(&mut encrypt_rng);
    let (mut olm_alice, mut olm_bob) = olm_pair();
    for (size, label) in SIZES {
        let plaintext = vec![0x5a; size];
        group.bench_function(BenchmarkId::new("spider", label), |b| {
            b.iter_batched(
                || alice.encrypt(&plaintext).unwrap(),
                |m| bob.decrypt(&mut r, &m, NOW).unwrap(),
                BatchSize::SmallInput,
            );
        });
        group.bench_function(BenchmarkId::new("vodozemac", label), |b| {
            b.iter_batched(
                || olm_alice.encrypt(&plaintext).unwrap(),
                |m| olm_bob.decrypt(&m).unwrap(),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

/// As [`ratchet_decrypt`], from the received bytes: both libraries parse the
/// message first. Spider's parser refuses a low-order ratchet key, which it
/// checks with a full X25519 scalar multiplication (see docs/benchmarks.md).
fn ratchet_decrypt_wire(c: &mut Criterion) {
    let mut group = c.benchmark_group("ratchet_decrypt_wire");
    let mut r = rng(11);
    let mut encrypt_rng = rng(12);
    let (mut alice, mut bob) = spider_pair(&mut encrypt_rng);
    let (mut olm_alice, mut olm_bob) = olm_pair();
    for (size, label) in SIZES {
        let plaintext = vec![0x5a; size];
        group.bench_function(BenchmarkId::new("spider", label), |b| {
            b.iter_batched(
                || alice.encrypt(&plaintext).unwrap().to_bytes(),
                |bytes| {
                    let m = Message::try_from(&bytes[..]).unwrap();
                    bob.decrypt(&mut r, &m, NOW).unwrap()
                },
                BatchSize::SmallInput,
            );
        });
        group.bench_function(BenchmarkId::new("vodozemac", label), |b| {
            b.iter_batched(
                || olm_alice.encrypt(&plaintext).unwrap().to_parts(),
                |(kind, bytes)| {
                    let m = OlmMessage::from_parts(kind, &bytes).unwrap();
                    olm_bob.decrypt(&m).unwrap()
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

/// A conversation that alternates every message: one iteration is Alice
/// encrypts, Bob decrypts, Bob encrypts, Alice decrypts (64 B each), so each
/// of the two messages brings a DH ratchet step (a new key pair and 2 X25519
/// DH per step in both designs: Spider does both DH on receipt as in the
/// Double Ratchet spec, Olm one on receipt and one on its next send).
fn ratchet_ping_pong(c: &mut Criterion) {
    let mut group = c.benchmark_group("ratchet_ping_pong_2msg");
    let mut r = rng(6);
    let (mut alice, mut bob) = spider_pair(&mut r);
    let (mut olm_alice, mut olm_bob) = olm_pair();
    let plaintext = [0x5au8; 64];
    group.bench_function("spider", |b| {
        b.iter(|| {
            let m = alice.encrypt(black_box(&plaintext)).unwrap();
            bob.decrypt(&mut r, &m, NOW).unwrap();
            let m = bob.encrypt(black_box(&plaintext)).unwrap();
            alice.decrypt(&mut r, &m, NOW).unwrap()
        });
    });
    group.bench_function("vodozemac", |b| {
        b.iter(|| {
            let m = olm_alice.encrypt(black_box(plaintext)).unwrap();
            olm_bob.decrypt(&m).unwrap();
            let m = olm_bob.encrypt(black_box(plaintext)).unwrap();
            olm_alice.decrypt(&m).unwrap()
        });
    });
    group.finish();
}

// ---------------------------------------------------------------------------
// Rooms

/// Sender Keys and Megolm both step a symmetric chain, encrypt, and sign
/// every message with Ed25519. Spider: HMAC-SHA256 chain, ChaCha20-Poly1305.
/// Megolm v1: a 4-part HMAC-SHA256 ratchet, HKDF, AES-256-CBC and a
/// truncated HMAC-SHA256.
fn group_encrypt(c: &mut Criterion) {
    let mut group = c.benchmark_group("group_encrypt");
    let mut r = rng(7);
    let mut own = OwnSenderKey::new(DistributionId::random(&mut r), &mut r);
    let mut megolm = GroupSession::new(MegolmConfig::version_1());
    for (size, label) in SIZES {
        let plaintext = vec![0x5a; size];
        group.bench_function(BenchmarkId::new("spider", label), |b| {
            b.iter(|| own.encrypt(black_box(&plaintext)).unwrap());
        });
        group.bench_function(BenchmarkId::new("vodozemac", label), |b| {
            b.iter(|| megolm.encrypt(black_box(&plaintext)));
        });
    }
    group.finish();
}

/// In-order decryption: Ed25519 verification, the chain step, AEAD open.
fn group_decrypt(c: &mut Criterion) {
    let mut group = c.benchmark_group("group_decrypt");
    let mut r = rng(8);
    let mut own = OwnSenderKey::new(DistributionId::random(&mut r), &mut r);
    let mut record = SenderKeyRecord::new(own.distribution_id());
    record
        .process_distribution(&own.distribution_message())
        .unwrap();
    let mut megolm = GroupSession::new(MegolmConfig::version_1());
    let mut inbound = InboundGroupSession::new(&megolm.session_key(), MegolmConfig::version_1());
    for (size, label) in SIZES {
        let plaintext = vec![0x5a; size];
        group.bench_function(BenchmarkId::new("spider", label), |b| {
            b.iter_batched(
                || own.encrypt(&plaintext).unwrap(),
                |m| record.decrypt(&m).unwrap(),
                BatchSize::SmallInput,
            );
        });
        group.bench_function(BenchmarkId::new("vodozemac", label), |b| {
            b.iter_batched(
                || megolm.encrypt(&plaintext),
                |m| inbound.decrypt(&m).unwrap(),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

// ---------------------------------------------------------------------------
// Spider only (vodozemac has no counterpart)

/// Attachment encryption and decryption through the streaming API (64 KiB
/// STREAM chunks of ChaCha20-Poly1305, SHA-256 of the blob), memory to
/// memory. Matrix encrypts attachments outside vodozemac (AES-256-CTR in the
/// client SDK), so there is no reference here.
fn attachment(c: &mut Criterion) {
    let mut group = c.benchmark_group("attachment_encrypt");
    group.sample_size(10);
    let mut r = rng(9);
    for (size, label) in FILE_SIZES {
        let file = vec![0x5a; size];
        let mut blob = Vec::with_capacity(size + size / 1024 + 64);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new("spider", label), |b| {
            b.iter(|| {
                blob.clear();
                encrypt_reader(&mut r, black_box(&file[..]), &mut blob).unwrap()
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("attachment_decrypt");
    group.sample_size(10);
    for (size, label) in FILE_SIZES {
        let file = vec![0x5a; size];
        let mut blob = Vec::new();
        let sealed = encrypt_reader(&mut r, &file[..], &mut blob).unwrap();
        let pointer = AttachmentPointer::new(BlobId::new(b"blob".to_vec()).unwrap(), sealed);
        let mut out = Vec::with_capacity(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new("spider", label), |b| {
            b.iter(|| {
                out.clear();
                decrypt_reader(&pointer, black_box(&blob[..]), &mut out).unwrap();
            });
        });
    }
    group.finish();
}

/// Both sides' 5200 iterations of SHA-512, and the digits. Matrix verifies
/// devices with interactive SAS instead, a different protocol.
fn safety_number(c: &mut Criterion) {
    let mut group = c.benchmark_group("safety_number");
    let mut r = rng(10);
    let alice = IdentityKeyPair::generate(&mut r);
    let bob = IdentityKeyPair::generate(&mut r);
    let a = SafetyIdentity {
        ed25519: alice.public().signing_key_bytes(),
        x25519: alice.public().dh_key_bytes(),
        username: "alice",
    };
    let b_side = SafetyIdentity {
        ed25519: bob.public().signing_key_bytes(),
        x25519: bob.public().dh_key_bytes(),
        username: "bob",
    };
    group.bench_function("spider", |b| {
        b.iter(|| SafetyNumber::new(black_box(a), black_box(b_side)));
    });
    group.finish();
}

/// Where Spider's setup and signing time goes: its steps and the primitives
/// they repeat. Spider only; these explain the ratios in docs/benchmarks.md.
fn spider_parts(c: &mut Criterion) {
    let mut group = c.benchmark_group("spider_parts");
    let mut r = rng(13);
    let bob = spider_bob(&mut r);
    let alice = IdentityKeyPair::generate(&mut r);
    // Bundle parsing: 3 Ed25519 point decodings, the identity binding
    // signature, 3 X25519 low-order checks, the ML-KEM key check.
    group.bench_function("bundle_parse", |b| {
        b.iter(|| PreKeyBundle::try_from(black_box(&bob.bundle_bytes[..])).unwrap());
    });
    let bundle = PreKeyBundle::try_from(&bob.bundle_bytes[..]).unwrap();
    // Two Ed25519 verify_strict (signed prekey, KEM prekey).
    group.bench_function("bundle_verify", |b| {
        b.iter_batched(
            || bundle.clone(),
            |bundle| bundle.verify().unwrap(),
            BatchSize::SmallInput,
        );
    });
    let verified = bundle.clone().verify().unwrap();
    // X25519 keygen, 4 DH, ML-KEM encapsulation, the ratchet's first key
    // pair and DH.
    group.bench_function("initiate", |b| {
        b.iter(|| Session::initiate(&mut r, &alice, black_box(&verified)).unwrap());
    });
    let (mut sender, _) = spider_pair(&mut r);
    let wire = sender.encrypt(&[0u8; 64]).unwrap().to_bytes();
    group.bench_function("ratchet_message_parse", |b| {
        b.iter(|| Message::try_from(black_box(&wire[..])).unwrap());
    });

    let private = [0x11u8; 32];
    let public = primitives::x25519_public(&[0x22; 32]);
    group.bench_function("x25519_dh", |b| {
        b.iter(|| primitives::x25519(black_box(&private), black_box(&public)).unwrap());
    });
    group.bench_function("x25519_public_from_private", |b| {
        b.iter(|| primitives::x25519_public(black_box(&private)));
    });
    let seed = [0x33u8; 32];
    group.bench_function("ed25519_signing_key_from_seed", |b| {
        b.iter(|| ed25519_dalek::SigningKey::from_bytes(black_box(&seed)));
    });
    let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
    let message = [0x44u8; 128];
    group.bench_function("ed25519_sign_128B", |b| {
        b.iter(|| signing.sign(black_box(&message)));
    });
    let signature = signing.sign(&message).to_bytes();
    let verifying = signing.verifying_key().to_bytes();
    group.bench_function("ed25519_verify_strict_128B", |b| {
        b.iter(|| {
            primitives::ed25519_verify_strict(&verifying, black_box(&message), &signature).unwrap();
        });
    });
    group.finish();
}

criterion_group!(
    benches,
    session_setup_initiator,
    session_setup_responder,
    ratchet_encrypt,
    ratchet_decrypt,
    ratchet_decrypt_wire,
    ratchet_ping_pong,
    group_encrypt,
    group_decrypt,
    attachment,
    safety_number,
    spider_parts,
);
criterion_main!(benches);
