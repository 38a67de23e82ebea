//! Shared test harness: a responder ("Bob") with stores, and helpers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ed25519_dalek::{Signer as _, SigningKey};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use spider_crypto::domain;
use spider_crypto::keys::*;
use spider_crypto::session::{Message, Session};
use spider_crypto::store::{InMemPreKeyStore, PreKeyStore};
use spider_crypto::x3dh::{PreKeyMessage, ReplayCache};

pub(crate) const NOW: u64 = 1_700_000_000;

pub(crate) fn rng(seed: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([seed; 32])
}

/// Low-order X25519 points (libsodium's blocklist, plus non-canonical and
/// high-bit variants that decode to the same points).
pub(crate) fn low_order_points() -> Vec<[u8; 32]> {
    let h = |s: &str| -> [u8; 32] { hex::decode(s).unwrap().try_into().unwrap() };
    vec![
        [0; 32],
        h("0100000000000000000000000000000000000000000000000000000000000000"),
        h("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
        h("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
        h("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
        h("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
        h("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
        h("0000000000000000000000000000000000000000000000000000000000000080"),
        h("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880"),
    ]
}

pub(crate) struct Bob {
    pub(crate) identity: IdentityKeyPair,
    pub(crate) prekeys: InMemPreKeyStore,
    pub(crate) replay: ReplayCache,
    pub(crate) bundle: PreKeyBundle,
}

impl Bob {
    pub(crate) fn new(rng: &mut ChaCha20Rng, with_otk: bool, kem_kind: KemPreKeyKind) -> Self {
        let identity = IdentityKeyPair::generate(rng);
        let mut prekeys = InMemPreKeyStore::new();
        let spk = SignedPreKeyPair::generate(rng, &identity, PreKeyId(1), NOW);
        let kem = KemPreKeyPair::generate(rng, &identity, PreKeyId(10), kem_kind, NOW);
        let otk = OneTimePreKeyPair::generate(rng, PreKeyId(100));
        let bundle = PreKeyBundle {
            identity: identity.public().clone(),
            signed_prekey: spk.public(),
            kem_prekey: kem.public().clone(),
            one_time_prekey: with_otk.then(|| otk.public()),
        };
        prekeys.save_signed_prekey(spk).unwrap();
        prekeys.save_kem_prekey(kem).unwrap();
        prekeys.save_one_time_prekey(otk).unwrap();
        Self {
            identity,
            prekeys,
            replay: ReplayCache::new(),
            bundle,
        }
    }

    pub(crate) fn verified_bundle(&self) -> VerifiedPreKeyBundle {
        PreKeyBundle::try_from(&self.bundle.to_bytes()[..])
            .unwrap()
            .verify()
            .unwrap()
    }

    pub(crate) fn accept(
        &mut self,
        rng: &mut ChaCha20Rng,
        message: &PreKeyMessage,
    ) -> Result<(Session, Vec<u8>), spider_crypto::error::AcceptError> {
        Session::accept(
            rng,
            &self.identity,
            &mut self.prekeys,
            &mut self.replay,
            message,
            NOW,
        )
    }
}

pub(crate) fn prekey(m: Message) -> PreKeyMessage {
    match m {
        Message::PreKey(p) => p,
        Message::Ratchet(_) => panic!("expected a PreKeyMessage"),
    }
}

/// An established pair: Alice initiated, Bob accepted and replied, Alice
/// decrypted the reply.
pub(crate) fn established(seed: u8) -> (ChaCha20Rng, Session, Session) {
    let mut rng = rng(seed);
    let mut bob = Bob::new(&mut rng, true, KemPreKeyKind::LastResort);
    let alice_id = IdentityKeyPair::generate(&mut rng);
    let mut alice = Session::initiate(&mut rng, &alice_id, &bob.verified_bundle()).unwrap();
    let first = prekey(alice.encrypt(b"first").unwrap());
    let (mut bob_s, _) = bob.accept(&mut rng, &first).unwrap();
    let reply = bob_s.encrypt(b"reply").unwrap();
    alice.decrypt(&mut rng, &reply, NOW).unwrap();
    (rng, alice, bob_s)
}

/// A hand-made identity whose X25519 half may be anything (even low order),
/// with a valid binding signature, for building hostile bundles.
pub(crate) struct RawIdentity {
    pub(crate) signing: SigningKey,
    pub(crate) dh_public: [u8; 32],
}

impl RawIdentity {
    pub(crate) fn new(seed: [u8; 32], dh_public: [u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(&seed),
            dh_public,
        }
    }

    pub(crate) fn sign(&self, label: &[u8], payload: &[u8]) -> [u8; 64] {
        let mut m = label.to_vec();
        m.push(0);
        m.extend_from_slice(payload);
        self.signing.sign(&m).to_bytes()
    }

    pub(crate) fn public_bytes(&self) -> [u8; 128] {
        let mut out = [0u8; 128];
        out[..32].copy_from_slice(&self.signing.verifying_key().to_bytes());
        out[32..64].copy_from_slice(&self.dh_public);
        out[64..].copy_from_slice(&self.sign(domain::SIG_IDENTITY_BINDING, &self.dh_public));
        out
    }

    pub(crate) fn signed_prekey(&self, id: u32, public: [u8; 32]) -> SignedPreKeyPublic {
        let mut payload = id.to_be_bytes().to_vec();
        payload.extend_from_slice(&public);
        SignedPreKeyPublic {
            id: PreKeyId(id),
            public,
            signature: self.sign(domain::SIG_SIGNED_PREKEY, &payload),
        }
    }
}
