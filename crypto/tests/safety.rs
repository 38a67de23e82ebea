//! Safety numbers: known answers, symmetry, comparison outcomes.

// Helpers outside #[test] fns are not covered by clippy.toml's test allowances.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use spider_crypto::safety::{
    COMPACT_LEN, COMPACT_VERSION, CompactParseError, CompactSafetyNumber, Comparison,
    SafetyIdentity, SafetyNumber, fuzzing,
};

fn keys() -> ([u8; 32], [u8; 32], [u8; 32], [u8; 32]) {
    let a_ed: [u8; 32] = core::array::from_fn(|i| i as u8);
    let a_x: [u8; 32] = core::array::from_fn(|i| 32 + i as u8);
    let b_ed: [u8; 32] = core::array::from_fn(|i| 0xff - i as u8);
    let b_x: [u8; 32] = core::array::from_fn(|i| 0x80 ^ i as u8);
    (a_ed, a_x, b_ed, b_x)
}

/// Computed independently (Python hashlib, see the module docs' formula):
/// SHA-512 iterated 5200 times over 0x0001 || Ed25519 || X25519 || username.
#[test]
fn safety_number_known_answer() {
    let (a_ed, a_x, b_ed, b_x) = keys();
    let alice = SafetyIdentity {
        ed25519: &a_ed,
        x25519: &a_x,
        username: "alice",
    };
    let bob = SafetyIdentity {
        ed25519: &b_ed,
        x25519: &b_x,
        username: "bob",
    };
    let n = SafetyNumber::new(alice, bob);
    assert_eq!(
        n.digits(),
        "490321371901372232791797649622966961341255863362180783618499"
    );
    assert_eq!(
        n.to_string(),
        "49032 13719 01372 23279 17976 49622 96696 13412 55863 36218 07836 18499"
    );
    assert_eq!(
        hex::encode(n.compact().to_bytes()),
        "011d9b8531881cf7f996d72ee0327f3c8a6baf158f283401b1387c10be44d645\
         6246b263d0d826ccb5a464007c890a578a26fa79bad26baca19cfcfff3ae23b4cc"
    );
    assert_eq!(
        n.compact().to_text(),
        "AEOZ-XBJR-RAOP-P6MW-24XO-AMT7-HSFG-XLYV-R4UD-IANR-HB6B-BPSE-2ZCW-ERVS-\
         MPIN-QJWM-WWSG-IAD4-REFF-PCRG-7J43-VUTL-VSQZ-Z7H7-6OXC-HNGM-7C2P-MNA"
    );
}

#[test]
fn both_sides_compute_the_same_number() {
    let (a_ed, a_x, b_ed, b_x) = keys();
    let alice = SafetyIdentity {
        ed25519: &a_ed,
        x25519: &a_x,
        username: "alice",
    };
    let bob = SafetyIdentity {
        ed25519: &b_ed,
        x25519: &b_x,
        username: "bob",
    };
    let mine = SafetyNumber::new(alice, bob);
    let theirs = SafetyNumber::new(bob, alice);
    assert_eq!(mine, theirs);
    assert_eq!(mine.groups().len(), 12);
    assert!(mine.digits().chars().all(|c| c.is_ascii_digit()));
    assert_eq!(
        mine.compare_text(&theirs.compact().to_text()),
        Ok(Comparison::Match)
    );
    assert_eq!(
        mine.compare_bytes(&theirs.compact().to_bytes()),
        Ok(Comparison::Match)
    );
}

#[test]
fn man_in_the_middle_gives_a_mismatch() {
    let (a_ed, a_x, b_ed, b_x) = keys();
    let m_x = [9u8; 32];
    let alice = SafetyIdentity {
        ed25519: &a_ed,
        x25519: &a_x,
        username: "alice",
    };
    let bob = SafetyIdentity {
        ed25519: &b_ed,
        x25519: &b_x,
        username: "bob",
    };
    // Alice sees Bob's signing key but an attacker's X25519 key: the number
    // must change, since both keys are covered.
    let fake_bob = SafetyIdentity {
        x25519: &m_x,
        ..bob
    };
    let alices = SafetyNumber::new(alice, fake_bob);
    let bobs = SafetyNumber::new(bob, alice);
    assert_ne!(alices.digits(), bobs.digits());
    assert_eq!(
        alices.compare_text(&bobs.compact().to_text()),
        Ok(Comparison::Mismatch)
    );
    // Another username with the same keys differs too.
    let renamed = SafetyIdentity {
        username: "bob2",
        ..bob
    };
    assert_ne!(SafetyNumber::new(alice, renamed), bobs);
}

#[test]
fn other_version_is_reported_not_compared() {
    let (a_ed, a_x, b_ed, b_x) = keys();
    let alice = SafetyIdentity {
        ed25519: &a_ed,
        x25519: &a_x,
        username: "alice",
    };
    let bob = SafetyIdentity {
        ed25519: &b_ed,
        x25519: &b_x,
        username: "bob",
    };
    let n = SafetyNumber::new(alice, bob);
    let mut bytes = n.compact().to_bytes().to_vec();
    bytes[0] = COMPACT_VERSION + 1;
    assert_eq!(
        n.compare_bytes(&bytes),
        Ok(Comparison::DifferentVersion {
            ours: COMPACT_VERSION,
            theirs: COMPACT_VERSION + 1
        })
    );
    // A future version may be longer.
    bytes.push(0);
    assert!(matches!(
        n.compare_bytes(&bytes),
        Ok(Comparison::DifferentVersion { .. })
    ));
}

#[test]
fn typo_is_a_checksum_error_not_a_mismatch() {
    let (a_ed, a_x, b_ed, b_x) = keys();
    let alice = SafetyIdentity {
        ed25519: &a_ed,
        x25519: &a_x,
        username: "alice",
    };
    let bob = SafetyIdentity {
        ed25519: &b_ed,
        x25519: &b_x,
        username: "bob",
    };
    let n = SafetyNumber::new(alice, bob);
    let text = n.compact().to_text();
    // Case, spacing and dashes do not matter.
    let relaxed = text.to_lowercase().replace('-', " ");
    assert_eq!(n.compare_text(&relaxed), Ok(Comparison::Match));
    let mut typo = text.clone().into_bytes();
    typo[0] = if typo[0] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        n.compare_text(core::str::from_utf8(&typo).unwrap()),
        Err(CompactParseError::BadChecksum)
    );
    assert_eq!(
        n.compare_text(&text[..text.len() - 5]),
        Err(CompactParseError::BadChecksum)
    );
    assert_eq!(n.compare_text("0189!"), Err(CompactParseError::InvalidText));
    assert_eq!(n.compare_text(" - "), Err(CompactParseError::Empty));
    assert_eq!(
        n.compare_bytes(&n.compact().to_bytes()[..COMPACT_LEN - 1]),
        Err(CompactParseError::WrongLength {
            len: COMPACT_LEN - 1
        })
    );
    assert_eq!(n.compare_bytes(&[]), Err(CompactParseError::Empty));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_input_never_panics_the_safety_parsers(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        fuzzing::compact_bytes(&data);
        fuzzing::compact_text(&data);
        let text = String::from_utf8_lossy(&data);
        let _: Result<_, CompactParseError> = CompactSafetyNumber::from_text(&text);
    }

    #[test]
    fn base32_like_text_never_panics(text in "[A-Za-z2-7 -]{0,160}") {
        fuzzing::compact_text(text.as_bytes());
    }
}
