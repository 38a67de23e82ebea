//! Sender Key test vectors: `tests/vectors/sender_keys.json`.
//!
//! `committed_sender_key_vectors_are_reproducible` regenerates the vectors
//! from a seeded ChaCha20 RNG through the crate's real encryption path and
//! compares them with the committed file (`SPIDER_REGENERATE_VECTORS=1`
//! rewrites it). `sender_key_vectors_recompute_from_primitives` re-derives
//! every value with the primitive crates alone, following
//! `tests/vectors/README.md` (section `sender_keys.json`), so that the document is proven true.

// Helpers outside #[test] fns are not covered by clippy.toml's test allowances.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use chacha20poly1305::{ChaCha20Poly1305, KeyInit, aead::Aead, aead::Payload};
use ed25519_dalek::{Signature, VerifyingKey};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::Value;
use sha2::Sha256;
use spider_crypto::sender_key::{
    SenderKeyDistributionMessage, SenderKeyMessage, SenderKeyRecord, vectors,
};

/// The RNG seed of the committed vectors (32 ASCII bytes).
const SEED: [u8; 32] = *b"spider sender key test vectors!!";

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/sender_keys.json")
}

fn generate() -> String {
    let v = vectors::generate(&mut ChaCha20Rng::from_seed(SEED));
    serde_json::to_string_pretty(&v).unwrap() + "\n"
}

#[test]
fn committed_sender_key_vectors_are_reproducible() {
    let fresh = generate();
    if std::env::var("SPIDER_REGENERATE_VECTORS").as_deref() == Ok("1") {
        std::fs::create_dir_all(path().parent().unwrap()).unwrap();
        std::fs::write(path(), &fresh).unwrap();
    }
    let committed = std::fs::read_to_string(path())
        .expect("missing vectors: run with SPIDER_REGENERATE_VECTORS=1 to write them");
    assert!(
        committed == fresh,
        "tests/vectors/sender_keys.json differs from what the code generates; \
         if the change is intended, rerun with SPIDER_REGENERATE_VECTORS=1"
    );
}

fn hx(v: &Value, field: &str) -> Vec<u8> {
    hex::decode(
        v[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} missing")),
    )
    .unwrap()
}

fn hmac_sha256(key: &[u8], byte: u8) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(&[byte]);
    mac.finalize().into_bytes().to_vec()
}

#[test]
fn sender_key_vectors_recompute_from_primitives() {
    let file: Value = serde_json::from_str(&std::fs::read_to_string(path()).unwrap()).unwrap();
    let chains = file["chains"].as_array().unwrap();
    assert!(chains.len() >= 2);
    let label = b"spider/v1/sig/sender-key-message";
    let mut chain_ids = Vec::new();

    for chain in chains {
        let info = hx(chain, "message_key_info");
        assert_eq!(info, b"spider/v1/kdf/sender-key-message-keys");
        let signing_public: [u8; 32] = hx(chain, "signing_public").try_into().unwrap();
        let verifying = VerifyingKey::from_bytes(&signing_public).unwrap();
        let messages = chain["messages"].as_array().unwrap();
        assert!(!messages.is_empty());

        let mut previous: Option<(u32, Vec<u8>)> = None;
        let mut receiver: Option<SenderKeyRecord> = None;
        for m in messages {
            let iteration = u32::try_from(m["iteration"].as_u64().unwrap()).unwrap();
            let chain_key = hx(m, "chain_key");
            let ad = hx(m, "ad");
            let plaintext = hx(m, "plaintext");
            let ciphertext = hx(m, "ciphertext");
            let signed = hx(m, "signed_bytes");
            let signature: [u8; 64] = hx(m, "signature").try_into().unwrap();

            // Chain: CK_{i+1} = HMAC-SHA256(CK_i, 0x02), through any gap.
            if let Some((prev_iteration, prev_ck)) = &previous {
                assert!(iteration > *prev_iteration);
                let mut ck = prev_ck.clone();
                for _ in *prev_iteration..iteration {
                    ck = hmac_sha256(&ck, 0x02);
                }
                assert_eq!(ck, chain_key, "chain key at iteration {iteration}");
            }
            // MK_i = HMAC-SHA256(CK_i, 0x01).
            let mk = hmac_sha256(&chain_key, 0x01);
            assert_eq!(mk, hx(m, "message_key"));
            // key || nonce = HKDF-SHA256(salt = 32 zero bytes, IKM = MK, info)[0..44].
            let mut okm = [0u8; 44];
            Hkdf::<Sha256>::new(Some(&[0u8; 32]), &mk)
                .expand(&info, &mut okm)
                .unwrap();
            assert_eq!(okm[..32], hx(m, "aead_key")[..]);
            assert_eq!(okm[32..], hx(m, "nonce")[..]);
            // AD = version 0x01 || type 0x10 || distribution id || chain id || iteration.
            assert_eq!(ad.len(), 26);
            assert_eq!(ad[..2], [0x01, 0x10]);
            assert_eq!(ad[22..26], iteration.to_be_bytes());
            // ciphertext = ChaCha20-Poly1305(key, nonce, AD, plaintext).
            let key: [u8; 32] = okm[..32].try_into().unwrap();
            let nonce: [u8; 12] = okm[32..].try_into().unwrap();
            let cipher = ChaCha20Poly1305::new(&key.into());
            let ct = cipher
                .encrypt(
                    &nonce.into(),
                    Payload {
                        msg: &plaintext,
                        aad: &ad,
                    },
                )
                .unwrap();
            assert_eq!(ct, ciphertext);
            // signed_bytes = label || 0x00 || AD || ciphertext, Ed25519 (strict).
            let mut expected_signed = label.to_vec();
            expected_signed.push(0);
            expected_signed.extend_from_slice(&ad);
            expected_signed.extend_from_slice(&ciphertext);
            assert_eq!(signed, expected_signed);
            verifying
                .verify_strict(&signed, &Signature::from_bytes(&signature))
                .unwrap();

            // And the crate agrees: the wire message AD || ciphertext || signature
            // decrypts under a record built from a hand-made distribution message.
            let rec = receiver.get_or_insert_with(|| {
                let mut skdm = vec![0x01, 0x11];
                skdm.extend_from_slice(&ad[2..26]);
                skdm.extend_from_slice(&chain_key);
                skdm.extend_from_slice(&signing_public);
                let skdm = SenderKeyDistributionMessage::try_from(skdm.as_slice()).unwrap();
                let mut r = SenderKeyRecord::new(skdm.distribution_id());
                r.process_distribution(&skdm).unwrap();
                r
            });
            let mut wire = ad.clone();
            wire.extend_from_slice(&ciphertext);
            wire.extend_from_slice(&signature);
            let msg = SenderKeyMessage::try_from(wire.as_slice()).unwrap();
            assert_eq!(rec.decrypt(&msg).unwrap(), plaintext);

            previous = Some((iteration, chain_key));
        }
        chain_ids.push(messages[0]["ad"].as_str().unwrap()[36..44].to_string());
    }
    // The second chain is a rotation: a new chain id.
    assert_ne!(chain_ids[0], chain_ids[1]);
}
