//! Generates `tests/vectors/x3dh.json` and `tests/vectors/ratchet.json` from a
//! seeded ChaCha20 RNG, by driving this crate's own code (the ratchet state
//! machine itself, not a re-implementation), and checks them against the
//! committed files. `SPIDER_REGENERATE_VECTORS=1 cargo test -p spider-crypto
//! vectors` rewrites the files. `tests/vectors.rs` recomputes every value
//! independently from the primitive crates.

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng as _, SeedableRng};
use serde_json::{Value, json};

use crate::domain::{KDF_MESSAGE_KEYS, KDF_PQXDH, KDF_ROOT};
use crate::kdf;
use crate::keys::IdentityKeyPair;
use crate::primitives;
use crate::ratchet::{RatchetMessage, RatchetState};
use crate::x3dh;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn ascii(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn random32(rng: &mut ChaCha20Rng) -> [u8; 32] {
    let mut k = [0u8; 32];
    rng.fill_bytes(&mut k);
    k
}

fn x3dh_case(seed: u8, with_otk: bool, with_kem: bool) -> Value {
    let mut rng = ChaCha20Rng::from_seed([seed; 32]);
    let ik_a = random32(&mut rng);
    let ek_a = random32(&mut rng);
    let ik_b = random32(&mut rng);
    let spk_b = random32(&mut rng);
    let opk_b = with_otk.then(|| random32(&mut rng));
    let kem = with_kem.then(|| random32(&mut rng));
    let p = primitives::x25519_public;
    let dh = |a: &[u8; 32], b: &[u8; 32]| *primitives::x25519(a, &p(b)).unwrap();
    // Alice's side...
    let dh1 = dh(&ik_a, &spk_b);
    let dh2 = dh(&ek_a, &ik_b);
    let dh3 = dh(&ek_a, &spk_b);
    let dh4 = opk_b.map(|o| dh(&ek_a, &o));
    let sk = kdf::pqxdh_secret(&dh1, &dh2, &dh3, dh4.as_ref(), kem.as_ref());
    // ...agrees with Bob's.
    let bob_dh4 = opk_b.map(|o| dh(&o, &ek_a));
    let sk_b = kdf::pqxdh_secret(
        &dh(&spk_b, &ik_a),
        &dh(&ik_b, &ek_a),
        &dh(&spk_b, &ek_a),
        bob_dh4.as_ref(),
        kem.as_ref(),
    );
    assert_eq!(*sk, *sk_b);
    json!({
        "info": ascii(KDF_PQXDH),
        "alice_identity_private": hex(&ik_a),
        "alice_ephemeral_private": hex(&ek_a),
        "bob_identity_private": hex(&ik_b),
        "bob_signed_prekey_private": hex(&spk_b),
        "bob_one_time_prekey_private": opk_b.map(|k| hex(&k)),
        "kem_shared_secret": kem.map(|k| hex(&k)),
        "shared_secret": hex(&*sk),
    })
}

fn x3dh_vectors() -> Value {
    Value::Array(vec![
        x3dh_case(1, true, true),
        x3dh_case(2, false, true),
        x3dh_case(3, true, false),
        x3dh_case(4, false, false),
    ])
}

fn dh_step(root_key: &[u8; 32], state: &RatchetState, remote: &[u8; 32], steps: &mut Vec<Value>) {
    let (dh_private, _) = state.dhs();
    // The state machine's own result must be KDF_RK over this step's inputs.
    let (rk, ck) = kdf::root_step(root_key, &primitives::x25519(&dh_private, remote).unwrap());
    assert_eq!(*rk, state.root_key());
    assert_eq!(Some(*ck), state.sending_chain_key());
    steps.push(json!({
        "kind": "dh",
        "root_key": hex(root_key),
        "dh_private": hex(&dh_private),
        "dh_public_remote": hex(remote),
        "new_root_key": hex(&state.root_key()),
        "chain_key": hex(&*ck),
    }));
}

fn message_step(
    state: &mut RatchetState,
    ad: &[u8],
    plaintext: &[u8],
    steps: &mut Vec<Value>,
) -> RatchetMessage {
    let trace = state.peek_send().unwrap();
    let message = state.encrypt(plaintext, ad).unwrap();
    assert_eq!(Some(trace.next_chain_key), state.sending_chain_key());
    let (aead_key, nonce) = kdf::message_keys(&trace.message_key);
    let header = message.header().encode();
    let full_ad = crate::ratchet::associated_data(ad, message.header());
    steps.push(json!({
        "kind": "message",
        "chain_key": hex(&trace.chain_key),
        "message_key": hex(&trace.message_key),
        "next_chain_key": hex(&trace.next_chain_key),
        "aead_key": hex(&*aead_key),
        "nonce": hex(&nonce),
        "header": hex(&header),
        "ad": hex(&full_ad),
        "plaintext": hex(plaintext),
        "ciphertext": hex(message.ciphertext()),
    }));
    message
}

/// Alice's sending chains over a conversation of `chains` rounds: each round
/// Alice sends a few messages (all delivered to Bob, who must receive before he
/// can reply), then Bob replies, which starts Alice's next sending chain.
fn ratchet_history(seed: u8, chains: usize) -> Value {
    let mut rng = ChaCha20Rng::from_seed([0x40 + seed; 32]);
    let alice_id = IdentityKeyPair::generate(&mut rng);
    let bob_id = IdentityKeyPair::generate(&mut rng);
    let ad = x3dh::associated_data(alice_id.public(), bob_id.public());
    let sk = random32(&mut rng);
    let spk_private = random32(&mut rng);
    let spk_public = primitives::x25519_public(&spk_private);
    let mut alice = RatchetState::init_alice(&mut rng, &sk, &spk_public).unwrap();
    let mut bob = RatchetState::init_bob(&sk, &spk_private, &spk_public);
    let mut steps = Vec::new();
    dh_step(&sk, &alice, &spk_public, &mut steps);
    for chain in 0..chains {
        for i in 0..(chain + 2) {
            let len = (rng.next_u32() % 48) as usize * (i % 3);
            let mut plaintext = vec![0u8; len];
            rng.fill_bytes(&mut plaintext);
            let m = message_step(&mut alice, &ad, &plaintext, &mut steps);
            assert_eq!(bob.decrypt(&mut rng, &m, &ad, 0).unwrap(), plaintext);
        }
        if chain + 1 == chains {
            break;
        }
        let reply = bob.encrypt(b"reply", &ad).unwrap();
        let root_before = alice.root_key();
        let (dhs_before, _) = alice.dhs();
        alice.decrypt(&mut rng, &reply, &ad, 0).unwrap();
        let remote = alice.dhr().unwrap();
        let (rk_mid, _) = kdf::root_step(
            &root_before,
            &primitives::x25519(&dhs_before, &remote).unwrap(),
        );
        dh_step(&rk_mid, &alice, &remote, &mut steps);
    }
    json!({
        "root_key_info": ascii(KDF_ROOT),
        "message_key_info": ascii(KDF_MESSAGE_KEYS),
        "steps": steps,
    })
}

fn ratchet_vectors() -> Value {
    Value::Array(vec![ratchet_history(1, 3), ratchet_history(2, 2)])
}

fn check_or_regenerate(name: &str, value: &Value) {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = serde_json::to_string_pretty(value).unwrap() + "\n";
    if std::env::var("SPIDER_REGENERATE_VECTORS").as_deref() == Ok("1") {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}; run with SPIDER_REGENERATE_VECTORS=1"));
    assert!(
        committed == text,
        "{name} differs from what the code generates; if the change is intended, \
         rerun with SPIDER_REGENERATE_VECTORS=1 and review the diff"
    );
}

#[test]
fn x3dh_vectors_match_committed_file() {
    check_or_regenerate("x3dh.json", &x3dh_vectors());
}

#[test]
fn ratchet_vectors_match_committed_file() {
    check_or_regenerate("ratchet.json", &ratchet_vectors());
}
