#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Profile and keystore: passphrases, tampering, reopening, crypto stores.

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use spider_client::crypto_store::{
    ONE_TIME_KEM_PREKEY_TARGET, ONE_TIME_PREKEY_TARGET, SIGNED_PREKEY_ROTATION_SECS, refill_plan,
};
use spider_client::keystore::{KdfParams, KeystoreError, Passphrase};
use spider_client::profile::{Account, Contact, Profile, ProfileError};
use spider_client::store::{MemoryStore, ProfileStore};
use spider_crypto::store::{DeviceAddress, IdentityStore, PreKeyStore};
use spider_protocol::ids::{DeviceId, UserId};
use spider_protocol::keys::PreKeyCounts;
use spider_protocol::name::Username;

fn rng(seed: u8) -> spider_client::profile::BoxRng {
    Box::new(ChaCha20Rng::from_seed([seed; 32]))
}

fn account() -> Account {
    Account {
        relay_name: "relay.test".into(),
        username: Username::parse("alice").unwrap(),
        user: None,
        device: None,
    }
}

fn create(pass: &Passphrase) -> MemoryStore {
    let p = Profile::create(
        MemoryStore::new(),
        pass,
        KdfParams::INSECURE_FOR_TESTS,
        account(),
        rng(1),
    )
    .unwrap();
    p.close().unwrap()
}

fn open_err(store: MemoryStore, pass: &Passphrase) -> ProfileError {
    Profile::open(store, pass, rng(2)).unwrap_err()
}

#[test]
fn right_passphrase_opens_and_keeps_the_identity() {
    let p = Profile::create(
        MemoryStore::new(),
        &Passphrase::new("correct horse"),
        KdfParams::INSECURE_FOR_TESTS,
        account(),
        rng(1),
    )
    .unwrap();
    let public = p.identity().public().clone();
    let store = p.close().unwrap();
    let p = Profile::open(store, &Passphrase::new("correct horse"), rng(2)).unwrap();
    assert_eq!(p.identity().public(), &public);
    assert_eq!(p.account().unwrap(), account());
}

#[test]
fn wrong_passphrase_is_refused_with_its_own_error() {
    let store = create(&Passphrase::new("correct horse"));
    assert_eq!(
        open_err(store, &Passphrase::new("battery staple")),
        ProfileError::Keystore(KeystoreError::WrongPassphrase)
    );
}

#[test]
fn passphrase_profile_without_passphrase_asks_for_one() {
    let store = create(&Passphrase::new("pw"));
    assert_eq!(
        open_err(store, &Passphrase::None),
        ProfileError::Keystore(KeystoreError::PassphraseRequired)
    );
}

#[test]
fn no_passphrase_profile_opens_without_one_and_records_the_choice() {
    let store = create(&Passphrase::None);
    let p = Profile::open(store.clone(), &Passphrase::None, rng(2)).unwrap();
    assert!(p.keystore().is_unprotected().unwrap());
    assert_eq!(
        open_err(store, &Passphrase::new("pw")),
        ProfileError::Keystore(KeystoreError::NotPassphraseProtected)
    );
}

#[test]
fn lowered_kdf_cost_in_the_header_does_not_unwrap() {
    let mut store = create(&Passphrase::new("pw"));
    let header = store.raw_mut().get_mut(&b"meta/header"[..]).unwrap();
    // Header: version, variant 1 (Argon2id), m varint (8 = 0x08), t (1)...
    assert_eq!(&header[..4], &[1, 1, 8, 1]);
    header[3] = 2; // raise t; the wrap's AD binds the parameters
    assert_eq!(
        open_err(store, &Passphrase::new("pw")),
        ProfileError::Keystore(KeystoreError::WrongPassphrase)
    );
}

#[test]
fn tampered_record_is_detected() {
    let mut store = create(&Passphrase::None);
    let rec = store.raw_mut().get_mut(&b"identity"[..]).unwrap();
    let last = rec.len() - 1;
    rec[last] ^= 1;
    assert_eq!(
        open_err(store, &Passphrase::None),
        ProfileError::Keystore(KeystoreError::Tampered)
    );
}

#[test]
fn swapped_records_do_not_decrypt() {
    let mut p = Profile::create(
        MemoryStore::new(),
        &Passphrase::None,
        KdfParams::INSECURE_FOR_TESTS,
        account(),
        rng(1),
    )
    .unwrap();
    let c = |b: u8, n: &str| Contact {
        user: UserId::from_bytes([b; 16]),
        username: Username::parse(n).unwrap(),
        devices: vec![DeviceId(1)],
    };
    p.save_contact(&c(1, "bob")).unwrap();
    p.save_contact(&c(2, "carol")).unwrap();
    let mut store = p.close().unwrap();
    let k1 = [&b"contact/"[..], &[1; 16]].concat();
    let k2 = [&b"contact/"[..], &[2; 16]].concat();
    let raw = store.raw_mut();
    let v1 = raw.get(&k1).unwrap().clone();
    let v2 = raw.get(&k2).unwrap().clone();
    raw.insert(k1, v2);
    raw.insert(k2, v1);
    let p = Profile::open(store, &Passphrase::None, rng(2)).unwrap();
    assert_eq!(
        p.contact(&UserId::from_bytes([1; 16])),
        Err(KeystoreError::Tampered)
    );
}

#[test]
fn records_hold_no_plaintext() {
    let mut p = Profile::create(
        MemoryStore::new(),
        &Passphrase::None,
        KdfParams::INSECURE_FOR_TESTS,
        account(),
        rng(1),
    )
    .unwrap();
    p.save_contact(&Contact {
        user: UserId::from_bytes([1; 16]),
        username: Username::parse("zebediah").unwrap(),
        devices: vec![],
    })
    .unwrap();
    let store = p.close().unwrap();
    for (_, v) in store.scan_prefix(b"").unwrap() {
        assert!(!v.windows(8).any(|w| w == b"zebediah"));
        assert!(!v.windows(5).any(|w| w == b"alice"));
    }
}

#[test]
fn sled_profile_reopens_after_close_with_its_identities_and_prekeys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profile");
    let public;
    {
        let mut p = Profile::create_dir(
            &path,
            &Passphrase::new("pw"),
            KdfParams::INSECURE_FOR_TESTS,
            account(),
            rng(1),
        )
        .unwrap();
        public = p.identity().public().clone();
        let upload = p.make_prekeys(refill_plan(None, None, 1000), 1000).unwrap();
        assert_eq!(
            upload.one_time_prekeys.len(),
            ONE_TIME_PREKEY_TARGET as usize
        );
        assert_eq!(
            upload.one_time_kem_prekeys.len(),
            ONE_TIME_KEM_PREKEY_TARGET as usize
        );
        assert!(upload.signed_prekey.is_some() && upload.last_resort_kem_prekey.is_some());
        let bob =
            spider_crypto::keys::IdentityKeyPair::generate(&mut ChaCha20Rng::from_seed([9; 32]));
        p.save_identity(&DeviceAddress::new("bob", 1), bob.public())
            .unwrap();
        p.close().unwrap();
    }
    assert!(matches!(
        Profile::open_dir(&path, &Passphrase::new("nope"), rng(2)),
        Err(ProfileError::Keystore(KeystoreError::WrongPassphrase))
    ));
    let p = Profile::open_dir(&path, &Passphrase::new("pw"), rng(2)).unwrap();
    assert_eq!(p.identity().public(), &public);
    assert!(
        p.one_time_prekey(spider_crypto::keys::PreKeyId(1))
            .unwrap()
            .is_some()
    );
    assert!(
        p.one_time_prekey(spider_crypto::keys::PreKeyId(100))
            .unwrap()
            .is_some()
    );
    assert!(
        p.signed_prekey(spider_crypto::keys::PreKeyId(1))
            .unwrap()
            .is_some()
    );
    assert!(
        IdentityStore::identity(&p, &DeviceAddress::new("bob", 1))
            .unwrap()
            .is_some()
    );
    assert_eq!(p.prekey_state().unwrap().next_one_time, 101);
}

#[test]
fn refill_policy_tops_up_when_low_and_rotates_weekly() {
    let full = PreKeyCounts {
        one_time: 100,
        one_time_kem: 20,
    };
    let plan = refill_plan(Some(full), Some(0), 10);
    assert!(plan.is_empty());
    let low = PreKeyCounts {
        one_time: 24,
        one_time_kem: 4,
    };
    let plan = refill_plan(Some(low), Some(0), 10);
    assert_eq!(
        (plan.one_time, plan.one_time_kem, plan.rotate_signed),
        (76, 16, false)
    );
    // At the edge: a quarter left is still enough.
    let edge = PreKeyCounts {
        one_time: 25,
        one_time_kem: 5,
    };
    assert!(refill_plan(Some(edge), Some(0), 10).is_empty());
    assert!(!refill_plan(Some(full), Some(0), SIGNED_PREKEY_ROTATION_SECS - 1).rotate_signed);
    assert!(refill_plan(Some(full), Some(0), SIGNED_PREKEY_ROTATION_SECS).rotate_signed);
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever bytes a record holds, reading it fails cleanly.
        #[test]
        fn hostile_records_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut store = create(&Passphrase::None);
            store.raw_mut().insert(b"contact/x".to_vec(), bytes.clone());
            store.raw_mut().insert(b"account".to_vec(), bytes);
            let p = Profile::open(store, &Passphrase::None, rng(2)).unwrap();
            prop_assert!(p.contacts().is_err());
            prop_assert!(p.account().is_err());
        }

        /// Whatever bytes the header holds, opening fails cleanly.
        #[test]
        fn hostile_headers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            // Argon2id headers (version 1, variant 1) would run the KDF at
            // whatever cost they name: their bounds are tested at the edge
            // instead.
            prop_assume!(!bytes.starts_with(&[1, 1]));
            let mut store = create(&Passphrase::new("pw"));
            store.raw_mut().insert(b"meta/header".to_vec(), bytes);
            prop_assert!(Profile::open(store, &Passphrase::new("pw"), rng(2)).is_err());
        }

        #[test]
        fn content_fuzz_entry_accepts_anything(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            spider_client::fuzzing::content(&bytes);
        }
    }
}

#[test]
fn kdf_costs_above_the_limits_are_refused_before_running_argon2() {
    use spider_client::keystore::{MAX_ARGON2_M_COST_KIB, MAX_ARGON2_T_COST};
    // Header: version 1, variant 1, then m, t, p as varints, salt, nonce, wrapped.
    let varint = |mut v: u32| {
        let mut out = Vec::new();
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    };
    let header = |m: u32, t: u32| {
        let mut h = vec![1u8, 1];
        h.extend(varint(m));
        h.extend(varint(t));
        h.extend(varint(1));
        h.extend([0u8; 16 + 12]);
        h.push(48);
        h.extend([0u8; 48]);
        h
    };
    for (m, t) in [(MAX_ARGON2_M_COST_KIB + 1, 1), (8, MAX_ARGON2_T_COST + 1)] {
        let mut store = create(&Passphrase::new("pw"));
        store
            .raw_mut()
            .insert(b"meta/header".to_vec(), header(m, t));
        assert_eq!(
            Profile::open(store, &Passphrase::new("pw"), rng(2)).unwrap_err(),
            ProfileError::Keystore(KeystoreError::BadHeader)
        );
    }
    // At the limits themselves (cheap memory, maximum passes) the header is
    // accepted and the wrong key is reported as a wrong passphrase.
    let mut store = create(&Passphrase::new("pw"));
    store
        .raw_mut()
        .insert(b"meta/header".to_vec(), header(8, MAX_ARGON2_T_COST));
    assert_eq!(
        Profile::open(store, &Passphrase::new("pw"), rng(2)).unwrap_err(),
        ProfileError::Keystore(KeystoreError::WrongPassphrase)
    );
}
