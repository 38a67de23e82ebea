//! Thin wrappers over the primitive crates, the only place they are called.
//!
//! Every higher layer (keys, PQXDH, the ratchet) goes through these, and the
//! Wycheproof tests (`tests/wycheproof.rs`) run the same functions, so a known
//! answer test of a wrapper is a test of what the protocol uses. Each wrapper
//! adds the check the protocol needs and the raw crate leaves to the caller:
//! contributory X25519, strict Ed25519 verification.

use chacha20poly1305::aead::{Aead, Payload};
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

/// True if `public` is a low-order X25519 point (all zeros among them), so
/// that any exchange with it is non-contributory. Clamping makes every scalar
/// a multiple of the cofactor 8, so a fixed scalar suffices.
#[must_use]
pub fn x25519_is_low_order(public: &[u8; 32]) -> bool {
    x25519(&[0x5a; 32], public).is_err()
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
    let mut mac =
        <Hmac<Sha256>>::new_from_slice(key).expect("HMAC accepts keys of any length (RFC 2104)");
    mac.update(data);
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

/// ChaCha20-Poly1305 (RFC 8439) encryption; the tag is appended.
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
        // RFC 7748 / Wycheproof low-order points: 0, 1, and the order-8 point.
        let zero = [0u8; 32];
        let mut one = [0u8; 32];
        one[0] = 1;
        let order8 = [
            0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f,
            0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16,
            0x5f, 0x49, 0xb8, 0x00,
        ];
        for k in [zero, one, order8] {
            assert!(x25519_is_low_order(&k));
            assert_eq!(x25519(&[7; 32], &k), Err(PrimitiveError::NonContributory));
        }
        assert!(!x25519_is_low_order(&x25519_public(&[9; 32])));
    }
}
