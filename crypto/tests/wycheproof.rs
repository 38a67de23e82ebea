//! Wycheproof vectors run through this crate's own wrappers
//! (`spider_crypto::primitives`), the functions the protocol uses.

use spider_crypto::primitives;
use wycheproof::TestResult;

#[test]
fn x25519_wrapper_passes_wycheproof_and_refuses_non_contributory_results() {
    let set = wycheproof::xdh::TestSet::load(wycheproof::xdh::TestName::X25519).unwrap();
    let mut checked = 0;
    for group in set.test_groups {
        for t in group.tests {
            let (Ok(private), Ok(public)) = (
                <[u8; 32]>::try_from(&t.private_key[..]),
                <[u8; 32]>::try_from(&t.public_key[..]),
            ) else {
                // Wrong-length inputs cannot reach the wrapper (fixed-size types).
                assert!(t.result.must_fail(), "tc {}", t.tc_id);
                continue;
            };
            let got = primitives::x25519(&private, &public);
            if t.shared_secret.iter().all(|b| *b == 0) {
                // Low-order public keys: valid for X25519 itself, refused by us.
                assert!(got.is_err(), "tc {} must be refused", t.tc_id);
            } else if t.result == TestResult::Invalid {
                assert!(
                    got.map(|s| s[..] != t.shared_secret[..]).unwrap_or(true),
                    "tc {}",
                    t.tc_id
                );
            } else {
                assert_eq!(&got.unwrap()[..], &t.shared_secret[..], "tc {}", t.tc_id);
                assert!(!primitives::x25519_is_low_order(&public), "tc {}", t.tc_id);
            }
            checked += 1;
        }
    }
    assert!(checked > 400, "only {checked} X25519 vectors ran");
}

#[test]
fn ed25519_strict_verification_passes_wycheproof() {
    let set = wycheproof::eddsa::TestSet::load(wycheproof::eddsa::TestName::Ed25519).unwrap();
    let mut checked = 0;
    for group in set.test_groups {
        for t in group.tests {
            let ok = primitives::ed25519_verify_strict(&group.key.pk, &t.msg, &t.sig).is_ok();
            match t.result {
                TestResult::Valid => assert!(ok, "tc {} must verify", t.tc_id),
                TestResult::Invalid => assert!(!ok, "tc {} must not verify", t.tc_id),
                TestResult::Acceptable => {}
            }
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} Ed25519 vectors ran");
}

#[test]
fn chacha20poly1305_wrapper_passes_wycheproof() {
    let set =
        wycheproof::aead::TestSet::load(wycheproof::aead::TestName::ChaCha20Poly1305).unwrap();
    let mut checked = 0;
    for group in set.test_groups {
        for t in group.tests {
            let (Ok(key), Ok(nonce)) = (
                <[u8; 32]>::try_from(&t.key[..]),
                <[u8; 12]>::try_from(&t.nonce[..]),
            ) else {
                assert!(t.result.must_fail(), "tc {}", t.tc_id);
                continue;
            };
            let mut ct_tag = t.ct.to_vec();
            ct_tag.extend_from_slice(&t.tag);
            let opened = primitives::aead_open(&key, &nonce, &t.aad, &ct_tag);
            if t.result.must_fail() {
                assert!(opened.is_err(), "tc {} must fail", t.tc_id);
            } else {
                assert_eq!(opened.unwrap(), &t.pt[..], "tc {}", t.tc_id);
                let sealed = primitives::aead_seal(&key, &nonce, &t.aad, &t.pt).unwrap();
                assert_eq!(sealed, ct_tag, "tc {}", t.tc_id);
            }
            checked += 1;
        }
    }
    assert!(
        checked > 200,
        "only {checked} ChaCha20-Poly1305 vectors ran"
    );
}

#[test]
fn hkdf_sha256_wrapper_passes_wycheproof() {
    let set = wycheproof::hkdf::TestSet::load(wycheproof::hkdf::TestName::HkdfSha256).unwrap();
    let mut checked = 0;
    for group in set.test_groups {
        for t in group.tests {
            let mut okm = vec![0u8; t.size];
            let got = primitives::hkdf_sha256(&t.salt, &t.ikm, &t.info, &mut okm);
            if t.result.must_fail() {
                assert!(got.is_err(), "tc {} must fail", t.tc_id);
            } else {
                got.unwrap();
                assert_eq!(okm, &t.okm[..], "tc {}", t.tc_id);
            }
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} HKDF vectors ran");
}
