//! Recomputes every value in `tests/vectors/*.json` from its inputs with the
//! primitive crates only (x25519-dalek, hkdf, hmac, sha2, chacha20poly1305),
//! following `tests/vectors/README.md` literally: a check that the document
//! describes what the code does. Nothing from `spider_crypto` is used here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};

fn load(name: &str) -> Value {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("a hex string")).unwrap()
}

fn key32(v: &Value) -> [u8; 32] {
    bytes(v).try_into().unwrap()
}

fn public(private: [u8; 32]) -> [u8; 32] {
    PublicKey::from(&StaticSecret::from(private)).to_bytes()
}

fn dh(private: [u8; 32], their_public: [u8; 32]) -> [u8; 32] {
    let shared = StaticSecret::from(private).diffie_hellman(&PublicKey::from(their_public));
    assert!(shared.was_contributory());
    shared.to_bytes()
}

fn hkdf(salt: &[u8], ikm: &[u8], info: &[u8], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, &mut out)
        .unwrap();
    out
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

#[test]
fn x3dh_vectors_recompute_from_primitives() {
    let cases = load("x3dh.json");
    let cases = cases.as_array().unwrap();
    assert!(cases.len() >= 4);
    let (mut with_otk, mut with_kem) = (0, 0);
    for case in cases {
        let ik_a = key32(&case["alice_identity_private"]);
        let ek_a = key32(&case["alice_ephemeral_private"]);
        let ik_b = key32(&case["bob_identity_private"]);
        let spk_b = key32(&case["bob_signed_prekey_private"]);
        // IKM = 0xFF * 32 || DH1 || DH2 || DH3 [|| DH4] [|| KEM shared secret]
        let mut ikm = vec![0xffu8; 32];
        ikm.extend_from_slice(&dh(ik_a, public(spk_b)));
        ikm.extend_from_slice(&dh(ek_a, public(ik_b)));
        ikm.extend_from_slice(&dh(ek_a, public(spk_b)));
        if !case["bob_one_time_prekey_private"].is_null() {
            with_otk += 1;
            let opk_b = key32(&case["bob_one_time_prekey_private"]);
            ikm.extend_from_slice(&dh(ek_a, public(opk_b)));
        }
        if !case["kem_shared_secret"].is_null() {
            with_kem += 1;
            ikm.extend_from_slice(&bytes(&case["kem_shared_secret"]));
        }
        let info = case["info"].as_str().unwrap().as_bytes();
        let sk = hkdf(&[0u8; 32], &ikm, info, 32);
        assert_eq!(sk, bytes(&case["shared_secret"]));
    }
    assert!(with_otk > 0 && with_otk < cases.len());
    assert!(with_kem > 0 && with_kem < cases.len());
}

#[test]
fn ratchet_vectors_recompute_from_primitives() {
    let histories = load("ratchet.json");
    let histories = histories.as_array().unwrap();
    assert!(!histories.is_empty());
    for history in histories {
        let root_info = history["root_key_info"].as_str().unwrap().as_bytes();
        let message_info = history["message_key_info"].as_str().unwrap().as_bytes();
        let steps = history["steps"].as_array().unwrap();
        assert_eq!(steps[0]["kind"], "dh", "a history starts with a DH step");
        let mut chain_key: Option<Vec<u8>> = None;
        let mut ratchet_public = [0u8; 32];
        let mut n = 0u32;
        let mut dh_steps = 0;
        for step in steps {
            match step["kind"].as_str().unwrap() {
                "dh" => {
                    dh_steps += 1;
                    // KDF_RK: HKDF(salt = RK, IKM = DH(dh_private, remote), info)
                    let rk = bytes(&step["root_key"]);
                    let out = hkdf(
                        &rk,
                        &dh(key32(&step["dh_private"]), key32(&step["dh_public_remote"])),
                        root_info,
                        64,
                    );
                    assert_eq!(out[..32], bytes(&step["new_root_key"])[..]);
                    assert_eq!(out[32..], bytes(&step["chain_key"])[..]);
                    chain_key = Some(out[32..].to_vec());
                    ratchet_public = public(key32(&step["dh_private"]));
                    n = 0;
                }
                "message" => {
                    let ck = bytes(&step["chain_key"]);
                    // Each message step continues the current sending chain.
                    assert_eq!(Some(&ck), chain_key.as_ref());
                    let mk = hmac(&ck, &[0x01]);
                    let next = hmac(&ck, &[0x02]);
                    assert_eq!(mk, bytes(&step["message_key"]));
                    assert_eq!(next, bytes(&step["next_chain_key"]));
                    let okm = hkdf(&[0u8; 32], &mk, message_info, 44);
                    assert_eq!(okm[..32], bytes(&step["aead_key"])[..]);
                    assert_eq!(okm[32..44], bytes(&step["nonce"])[..]);
                    // The header is the first 42 bytes of the wire message and
                    // ends the associated data.
                    let header = bytes(&step["header"]);
                    let ad = bytes(&step["ad"]);
                    assert_eq!(header.len(), 42);
                    assert!(ad.ends_with(&header));
                    assert_eq!(ad.len(), 128 + 42);
                    // version 1, type 0x01, ratchet key, pn, n (big-endian)
                    assert_eq!(header[..2], [1, 1]);
                    assert_eq!(header[2..34], ratchet_public);
                    assert_eq!(header[38..42], n.to_be_bytes());
                    n += 1;
                    let cipher = ChaCha20Poly1305::new_from_slice(&okm[..32]).unwrap();
                    let nonce: [u8; 12] = okm[32..44].try_into().unwrap();
                    let ciphertext = cipher
                        .encrypt(
                            &nonce.into(),
                            Payload {
                                msg: &bytes(&step["plaintext"]),
                                aad: &ad,
                            },
                        )
                        .unwrap();
                    assert_eq!(ciphertext, bytes(&step["ciphertext"]));
                    chain_key = Some(next);
                }
                other => panic!("unknown step kind {other}"),
            }
        }
        assert!(
            dh_steps >= 2,
            "a history covers more than one sending chain"
        );
    }
}
