//! Thin wrappers over the primitive crates, the only place they are called.
//!
//! Every higher layer (keys, PQXDH, the ratchet) goes through these, and the
//! Wycheproof tests (`tests/wycheproof.rs`) run the same functions, so a known
//! answer test of a wrapper is a test of what the protocol uses. Each wrapper
//! adds the check the protocol needs and the raw crate leaves to the caller:
//! contributory X25519, strict Ed25519 verification.

#[cfg(feature = "sessions")]
use chacha20poly1305::aead::{Aead, Payload};
#[cfg(feature = "sessions")]
use chacha20poly1305::{ChaCha20Poly1305, KeyInit as _};
use ed25519_dalek::{Signature, VerifyingKey};
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::PrimitiveError;

/// ChaCha20-Poly1305 key length.
pub const AEAD_KEY_LEN: usize = 32;
/// ChaCha20-Poly1305 nonce length.
pub const AEAD_NONCE_LEN: usize = 12;
/// ChaCha20-Poly1305 tag length.
pub const AEAD_TAG_LEN: usize = 16;

/// The X25519 public key for a private key (the scalar is clamped, RFC 7748).
#[must_use]
pub fn x25519_public(private: &[u8; 32]) -> [u8; 32] {
    let secret = x25519_dalek::StaticSecret::from(*private);
    x25519_dalek::PublicKey::from(&secret).to_bytes()
}

/// X25519 with the contributory check (RFC 7748 §6.1): a low-order
/// peer key makes the output all zeros, independent of our secret, and is
/// refused.
///
/// # Errors
/// [`PrimitiveError::NonContributory`] for a low-order `public`.
pub fn x25519(
    private: &[u8; 32],
    public: &[u8; 32],
) -> Result<Zeroizing<[u8; 32]>, PrimitiveError> {
    let secret = x25519_dalek::StaticSecret::from(*private);
    let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(*public));
    if !shared.was_contributory() {
        return Err(PrimitiveError::NonContributory);
    }
    Ok(Zeroizing::new(shared.to_bytes()))
}

/// The u-coordinates of Curve25519's points of order 1, 2, 4 and 8, and the
/// non-canonical encodings of the same points (p, p + 1), as in libsodium's
/// `has_small_order` blocklist. Bit 255 is ignored by X25519 (RFC 7748 §5),
/// so it is masked before comparing.
const LOW_ORDER: [[u8; 32]; 7] = {
    let mut t = [[0u8; 32]; 7];
    // 0 (order 4)
    // 1 (order 1)
    t[1][0] = 1;
    // two points of order 8
    t[2] = [
        0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4,
        0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49,
        0xb8, 0x00,
    ];
    t[3] = [
        0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef,
        0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f,
        0x11, 0x57,
    ];
    // p - 1 (order 2), p (= 0), p + 1 (= 1): 0x7fff...ffec, ...ed, ...ee
    let mut i = 4;
    while i < 7 {
        let mut j = 1;
        while j < 31 {
            t[i][j] = 0xff;
            j += 1;
        }
        t[i][31] = 0x7f;
        t[i][0] = 0xec + (i as u8 - 4);
        i += 1;
    }
    t
};

/// True if `public` is a low-order X25519 point (all zeros among them), so
/// that any exchange with it is non-contributory.
///
/// A table lookup, not a Diffie-Hellman: parsers call this on every ratchet
/// key they read, and a DH costs tens of microseconds. Every DH output is
/// still checked with `was_contributory()` in [`x25519`]; a test checks that
/// this table and a real DH agree.
#[must_use]
pub fn x25519_is_low_order(public: &[u8; 32]) -> bool {
    let mut k = *public;
    k[31] &= 0x7f;
    LOW_ORDER.contains(&k)
}

/// HKDF-SHA256 (RFC 5869), filling `okm`.
///
/// # Errors
/// [`PrimitiveError::KdfLength`] if `okm` is longer than 255 × 32 bytes.
pub fn hkdf_sha256(
    salt: &[u8],
    ikm: &[u8],
    info: &[u8],
    okm: &mut [u8],
) -> Result<(), PrimitiveError> {
    hkdf::Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, okm)
        .map_err(|_| PrimitiveError::KdfLength)
}

/// HMAC-SHA256.
#[must_use]
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Zeroizing<[u8; 32]> {
    #[allow(clippy::expect_used)]
    let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key)
        .expect("HMAC accepts keys of any length (RFC 2104)");
    mac.update(data);
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

/// ChaCha20-Poly1305 (RFC 8439) encryption; the tag is appended.
#[cfg(feature = "sessions")]
///
/// # Errors
/// [`PrimitiveError::Aead`] if the input is too long for the cipher.
pub fn aead_seal(
    key: &[u8; AEAD_KEY_LEN],
    nonce: &[u8; AEAD_NONCE_LEN],
    ad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, PrimitiveError> {
    let cipher = ChaCha20Poly1305::new(key.into());
    cipher
        .encrypt(
            nonce.into(),
            Payload {
                msg: plaintext,
                aad: ad,
            },
        )
        .map_err(|_| PrimitiveError::Aead)
}

#[cfg(feature = "sessions")]
/// ChaCha20-Poly1305 decryption of `ciphertext || tag`. The returned plaintext
/// is an ordinary `Vec` that the caller owns (it is not wiped on drop).
///
/// # Errors
/// [`PrimitiveError::Aead`] if authentication fails.
pub fn aead_open(
    key: &[u8; AEAD_KEY_LEN],
    nonce: &[u8; AEAD_NONCE_LEN],
    ad: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, PrimitiveError> {
    let cipher = ChaCha20Poly1305::new(key.into());
    cipher
        .decrypt(
            nonce.into(),
            Payload {
                msg: ciphertext,
                aad: ad,
            },
        )
        .map_err(|_| PrimitiveError::Aead)
}

/// Ed25519 verification with `verify_strict` (rejects small-order keys and
/// non-canonical signatures, so a signature is not malleable). Takes slices so
/// that wrong lengths are refused here, not by a panic elsewhere.
///
/// # Errors
/// [`PrimitiveError::Signature`] for a wrong length, an invalid key or a bad
/// signature.
pub fn ed25519_verify_strict(
    public: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), PrimitiveError> {
    let public: &[u8; 32] = public.try_into().map_err(|_| PrimitiveError::Signature)?;
    let key = VerifyingKey::from_bytes(public).map_err(|_| PrimitiveError::Signature)?;
    let signature = Signature::from_slice(signature).map_err(|_| PrimitiveError::Signature)?;
    key.verify_strict(message, &signature)
        .map_err(|_| PrimitiveError::Signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_zero_and_low_order_x25519_keys_are_detected() {
        // Every table entry, with and without bit 255, is low order by the
        // definition that matters: a DH with it is non-contributory.
        for k in LOW_ORDER {
            for top in [0u8, 0x80] {
                let mut k = k;
                k[31] |= top;
                assert!(x25519_is_low_order(&k), "{k:02x?}");
                assert_eq!(x25519(&[7; 32], &k), Err(PrimitiveError::NonContributory));
            }
        }
        assert!(!x25519_is_low_order(&x25519_public(&[9; 32])));
    }

    #[test]
    fn table_lookup_agrees_with_a_real_diffie_hellman() {
        // Any key whose DH is non-contributory must be in the table, and any
        // key in the table must give a non-contributory DH: checked on many
        // pseudo-random keys and on the table's neighbours.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut keys: Vec<[u8; 32]> = (0..2000)
            .map(|_| {
                let mut k = [0u8; 32];
                for b in &mut k {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *b = x as u8;
                }
                k
            })
            .collect();
        for k in LOW_ORDER {
            for d in [1u8, 2, 0x80] {
                let mut n = k;
                n[0] ^= d;
                keys.push(n);
            }
        }
        for k in keys {
            let by_dh = x25519(&[0x5a; 32], &k).is_err();
            assert_eq!(x25519_is_low_order(&k), by_dh, "{k:02x?}");
        }
    }
}
