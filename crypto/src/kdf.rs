//! The key derivations of PQXDH and the Double Ratchet, exactly as the test
//! vectors in `tests/vectors/` describe them.
//!
//! Each function is a few calls to [`crate::primitives`]; they are public so
//! that the vectors are generated from, and checked against, the code the
//! protocol runs.

use zeroize::Zeroizing;

use crate::domain::{KDF_MESSAGE_KEYS, KDF_PQXDH, KDF_ROOT};
use crate::primitives::{self, AEAD_KEY_LEN, AEAD_NONCE_LEN};

/// X3DH §2.2: for X25519, `F` is 32 bytes of 0xFF, prepended to the DH outputs
/// so the IKM can never be mistaken for an XEdDSA private key input.
const X3DH_F: [u8; 32] = [0xff; 32];

/// Zero salt of hash length (X3DH §2.2, DR §5.2).
pub(crate) const ZERO_SALT: [u8; 32] = [0; 32];

/// HKDF-SHA256 into a fixed-size buffer. Every caller (here, in
/// `sender_key` and in `attachment`) asks for at most 64 bytes, far below
/// HKDF's 8160-byte limit.
pub(crate) fn hkdf_fixed<const N: usize>(
    salt: &[u8],
    ikm: &[u8],
    info: &[u8],
) -> Zeroizing<[u8; N]> {
    let mut out = Zeroizing::new([0u8; N]);
    #[allow(clippy::expect_used)]
    primitives::hkdf_sha256(salt, ikm, info, &mut out[..])
        .expect("HKDF output of at most 64 bytes is within the 8160-byte limit");
    out
}

/// PQXDH §3.3: `SK = HKDF(salt = 0³², IKM = F || DH1 || DH2 || DH3 [|| DH4] [||
/// SS], info = KDF_PQXDH)`, 32 bytes. The protocol always passes `kem`; it is
/// optional here only so that the vectors also cover classic X3DH inputs.
#[must_use]
pub fn pqxdh_secret(
    dh1: &[u8; 32],
    dh2: &[u8; 32],
    dh3: &[u8; 32],
    dh4: Option<&[u8; 32]>,
    kem: Option<&[u8; 32]>,
) -> Zeroizing<[u8; 32]> {
    let mut ikm = Zeroizing::new(Vec::with_capacity(32 * 6));
    ikm.extend_from_slice(&X3DH_F);
    for part in [Some(dh1), Some(dh2), Some(dh3), dh4, kem]
        .into_iter()
        .flatten()
    {
        ikm.extend_from_slice(part);
    }
    hkdf_fixed::<32>(&ZERO_SALT, &ikm, KDF_PQXDH)
}

/// DR §5.2 KDF_RK: `HKDF(salt = RK, IKM = DH output, info = KDF_ROOT)`, 64
/// bytes, split into (new root key, chain key).
#[must_use]
pub fn root_step(
    root_key: &[u8; 32],
    dh_output: &[u8; 32],
) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    let okm = hkdf_fixed::<64>(root_key, dh_output, KDF_ROOT);
    let mut rk = Zeroizing::new([0u8; 32]);
    let mut ck = Zeroizing::new([0u8; 32]);
    rk.copy_from_slice(&okm[..32]);
    ck.copy_from_slice(&okm[32..]);
    (rk, ck)
}

/// DR §5.2 KDF_CK: message key = HMAC-SHA256(CK, 0x01), next chain key =
/// HMAC-SHA256(CK, 0x02). Returns (message key, next chain key).
#[must_use]
pub fn chain_step(chain_key: &[u8; 32]) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    (
        primitives::hmac_sha256(chain_key, &[0x01]),
        primitives::hmac_sha256(chain_key, &[0x02]),
    )
}

/// DR §5.2 ENCRYPT: the first 44 bytes of `HKDF(salt = 0³², IKM = message key,
/// info = KDF_MESSAGE_KEYS)` are the ChaCha20-Poly1305 key (32) and nonce (12).
/// Each message key is used once, so a derived nonce is safe.
#[must_use]
pub fn message_keys(
    message_key: &[u8; 32],
) -> (Zeroizing<[u8; AEAD_KEY_LEN]>, [u8; AEAD_NONCE_LEN]) {
    let okm = hkdf_fixed::<44>(&ZERO_SALT, message_key, KDF_MESSAGE_KEYS);
    let mut key = Zeroizing::new([0u8; AEAD_KEY_LEN]);
    let mut nonce = [0u8; AEAD_NONCE_LEN];
    key.copy_from_slice(&okm[..32]);
    nonce.copy_from_slice(&okm[32..44]);
    (key, nonce)
}
