//! Identity keys, prekeys, prekey bundles and the signatures that bind them.
//!
//! An identity is an Ed25519 signing key plus an X25519 key-agreement key,
//! bound by an Ed25519 signature over the X25519 key (label
//! [`SIG_IDENTITY_BINDING`]). Signal uses one XEdDSA key for both jobs; Spider
//! keeps two standard keys instead (SECURITY.md, "Deviations").
//!
//! Every signature covers `label || 0x00 || payload` (see [`crate::domain`])
//! and is checked with `verify_strict`. The public halves here are what the
//! relay links: it can check signatures, never decrypt.
//!
//! A checked signature yields a zero-sized proof token ([`SignedPreKeyVerified`],
//! [`KemPreKeyVerified`]); a [`VerifiedPreKeyBundle`] can only be built from
//! both, and session setup takes nothing else (conventions §2).

use core::fmt;

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
#[cfg(feature = "sessions")]
use ml_kem::{Decapsulate as _, Encapsulate as _};
use ml_kem::{DecapsulationKey, EncapsulationKey, KeyExport as _, MlKem768};
use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::domain::{
    SIG_AUTH_CHALLENGE, SIG_DEVICE_APPROVAL, SIG_IDENTITY_BINDING, SIG_KEM_PREKEY, SIG_ROOM_CHANGE,
    SIG_SIGNED_PREKEY, message_type,
};
use crate::error::{BundleError, DecodeError, SignatureError};
use crate::primitives;
use crate::wire;

/// Length of an encoded [`IdentityPublicKey`]: Ed25519 key, X25519 key,
/// binding signature.
pub const IDENTITY_PUBLIC_KEY_LEN: usize = 32 + 32 + 64;
/// Length of an ML-KEM-768 encapsulation key (FIPS 203, table 3).
pub const KEM_PUBLIC_KEY_LEN: usize = 1184;
/// Length of an ML-KEM-768 ciphertext (FIPS 203, table 3).
pub const KEM_CIPHERTEXT_LEN: usize = 1088;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Length of an encoded [`PreKeyBundle`] (fixed: absent one-time prekey fields
/// are zeros).
pub const PREKEY_BUNDLE_LEN: usize =
    2 + IDENTITY_PUBLIC_KEY_LEN + 4 + 32 + 64 + 4 + 1184 + 64 + 1 + 4 + 32;
/// Longest field accepted in an auth challenge or room change (relay name,
/// exporter, nonce): far above any real value, small enough to bound work.
pub const MAX_SIGNED_FIELD_LEN: usize = 4096;

/// Builds `label || 0x00 || payload` (domain separation, see [`crate::domain`]).
fn labeled(label: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(label.len() + 1 + payload.len());
    m.extend_from_slice(label);
    m.push(0);
    m.extend_from_slice(payload);
    m
}

/// Auth challenge payload: each field as `u16 big-endian length || bytes`, so
/// that no two different (relay, exporter, nonce) triples share an encoding.
fn auth_challenge_payload(
    relay_name: &str,
    exporter: &[u8],
    nonce: &[u8],
) -> Result<Vec<u8>, SignatureError> {
    let mut p = Vec::new();
    for field in [relay_name.as_bytes(), exporter, nonce] {
        if field.len() > MAX_SIGNED_FIELD_LEN {
            return Err(SignatureError::FieldTooLong);
        }
        let len = u16::try_from(field.len()).map_err(|_| SignatureError::FieldTooLong)?;
        p.extend_from_slice(&len.to_be_bytes());
        p.extend_from_slice(field);
    }
    Ok(p)
}

fn device_approval_payload(user_id: &[u8; 16], new_signing_key: &[u8; 32]) -> [u8; 48] {
    let mut p = [0u8; 48];
    p[..16].copy_from_slice(user_id);
    p[16..].copy_from_slice(new_signing_key);
    p
}

fn prekey_payload(id: PreKeyId, public: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(4 + public.len());
    p.extend_from_slice(&id.0.to_be_bytes());
    p.extend_from_slice(public);
    p
}

/// Identifier of a prekey, chosen by its owner and unique per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PreKeyId(pub u32);

/// A 32-byte secret that is wiped on drop and never printed. Deliberately not
/// `PartialEq`: secrets are never compared (a comparison would not be
/// constant-time).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct Secret32(pub(crate) [u8; 32]);

impl fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret32(..)")
    }
}

impl Secret32 {
    pub(crate) fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut s = Self([0; 32]);
        rng.fill_bytes(&mut s.0);
        s
    }
}

// ---------------------------------------------------------------------------
// Identity

/// The private half of a device identity. Wiped on drop; `Debug` prints only
/// the public key.
#[derive(Clone)]
pub struct IdentityKeyPair {
    signing: SigningKey,
    dh: Secret32,
    public: IdentityPublicKey,
}

impl fmt::Debug for IdentityKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityKeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl IdentityKeyPair {
    /// Makes a new identity.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let signing = SigningKey::generate(rng);
        let dh = Secret32::random(rng);
        Self::from_parts(signing, dh)
    }

    fn from_parts(signing: SigningKey, dh: Secret32) -> Self {
        let dh_public = primitives::x25519_public(&dh.0);
        let binding = signing
            .sign(&labeled(SIG_IDENTITY_BINDING, &dh_public))
            .to_bytes();
        let public = IdentityPublicKey {
            signing: signing.verifying_key().to_bytes(),
            dh: dh_public,
            binding,
        };
        Self {
            signing,
            dh,
            public,
        }
    }

    /// The secret bytes for the keystore: Ed25519 seed || X25519 private key.
    /// Wiped when the returned value drops.
    #[must_use]
    pub fn to_secret_bytes(&self) -> Zeroizing<[u8; 64]> {
        let mut out = Zeroizing::new([0u8; 64]);
        out[..32].copy_from_slice(self.signing.as_bytes());
        out[32..].copy_from_slice(&self.dh.0);
        out
    }

    /// Restores an identity from [`Self::to_secret_bytes`]. The binding
    /// signature is recomputed (Ed25519 signing is deterministic, so it is the
    /// same signature as before).
    #[must_use]
    pub fn from_secret_bytes(bytes: &[u8; 64]) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&bytes[..32]);
        let mut dh = Secret32([0; 32]);
        dh.0.copy_from_slice(&bytes[32..]);
        Self::from_parts(SigningKey::from_bytes(&seed), dh)
    }

    /// The public identity.
    #[must_use]
    pub fn public(&self) -> &IdentityPublicKey {
        &self.public
    }

    #[cfg(feature = "sessions")]
    pub(crate) fn dh_private(&self) -> &[u8; 32] {
        &self.dh.0
    }

    /// Signs `label || 0x00 || payload`. Crate-internal so that only the
    /// labels of [`crate::domain`] are ever used.
    pub(crate) fn sign(&self, label: &[u8], payload: &[u8]) -> [u8; 64] {
        self.signing.sign(&labeled(label, payload)).to_bytes()
    }

    /// Signs the relay's login challenge, bound to the relay's name and to
    /// this connection's TLS keying-material `exporter` (label
    /// [`SIG_AUTH_CHALLENGE`]).
    ///
    /// # Errors
    /// [`SignatureError::FieldTooLong`] if a field exceeds
    /// [`MAX_SIGNED_FIELD_LEN`].
    pub fn sign_auth_challenge(
        &self,
        relay_name: &str,
        exporter: &[u8],
        nonce: &[u8],
    ) -> Result<[u8; 64], SignatureError> {
        let payload = auth_challenge_payload(relay_name, exporter, nonce)?;
        Ok(self.sign(SIG_AUTH_CHALLENGE, &payload))
    }

    /// Approves a new device of the same account (label
    /// [`SIG_DEVICE_APPROVAL`] over `user_id || new device's Ed25519 key`).
    /// The relay adds the device only with such an approval from an
    /// existing device.
    #[must_use]
    pub fn sign_device_approval(&self, user_id: &[u8; 16], new_signing_key: &[u8; 32]) -> [u8; 64] {
        self.sign(
            SIG_DEVICE_APPROVAL,
            &device_approval_payload(user_id, new_signing_key),
        )
    }

    /// Signs an opaque room membership change (label [`SIG_ROOM_CHANGE`]).
    #[must_use]
    pub fn sign_room_change(&self, change: &[u8]) -> [u8; 64] {
        self.sign(SIG_ROOM_CHANGE, change)
    }
}

/// The public half of a device identity, as carried on the wire (128 bytes,
/// see [`IdentityPublicKey::to_bytes`]). Decoding checks the binding
/// signature, so holding one means the two keys belong together.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdentityPublicKey {
    signing: [u8; 32],
    dh: [u8; 32],
    binding: [u8; 64],
}

impl fmt::Debug for IdentityPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Public, but long: the first bytes suffice to tell keys apart.
        write!(
            f,
            "IdentityPublicKey({:02x}{:02x}{:02x}{:02x}..)",
            self.signing[0], self.signing[1], self.signing[2], self.signing[3]
        )
    }
}

impl IdentityPublicKey {
    /// The wire encoding:
    ///
    /// | offset | length | field                                             |
    /// |-------:|-------:|---------------------------------------------------|
    /// | 0      | 32     | Ed25519 public key                                |
    /// | 32     | 32     | X25519 public key                                 |
    /// | 64     | 64     | Ed25519 signature over `SIG_IDENTITY_BINDING \|\| 0x00 \|\| X25519 key` |
    #[must_use]
    pub fn to_bytes(&self) -> [u8; IDENTITY_PUBLIC_KEY_LEN] {
        let mut out = [0u8; IDENTITY_PUBLIC_KEY_LEN];
        out[..32].copy_from_slice(&self.signing);
        out[32..64].copy_from_slice(&self.dh);
        out[64..].copy_from_slice(&self.binding);
        out
    }

    /// Builds an identity from its three wire fields (Ed25519 key, X25519
    /// key, binding signature), with the checks of the `TryFrom<&[u8]>`
    /// decoding.
    ///
    /// # Errors
    /// As for `TryFrom<&[u8]>`, and [`DecodeError::WrongLength`] for a field
    /// of the wrong size.
    pub fn from_parts(signing: &[u8], dh: &[u8], binding: &[u8]) -> Result<Self, DecodeError> {
        let mut bytes = Vec::with_capacity(IDENTITY_PUBLIC_KEY_LEN);
        for (field, len) in [(signing, 32), (dh, 32), (binding, SIGNATURE_LEN)] {
            if field.len() != len {
                return Err(DecodeError::WrongLength {
                    len: field.len(),
                    expected: len,
                });
            }
            bytes.extend_from_slice(field);
        }
        Self::try_from(&bytes[..])
    }

    /// The binding signature (the Ed25519 key's signature over the X25519
    /// key).
    #[must_use]
    pub fn binding_signature(&self) -> &[u8; 64] {
        &self.binding
    }

    /// The Ed25519 public key.
    #[must_use]
    pub fn signing_key_bytes(&self) -> &[u8; 32] {
        &self.signing
    }

    /// The X25519 public key.
    #[must_use]
    pub fn dh_key_bytes(&self) -> &[u8; 32] {
        &self.dh
    }

    /// `Encode(IK)` for the PQXDH associated data: Ed25519 key || X25519 key
    /// (64 bytes). The binding signature is left out: it is determined by the
    /// two keys' owner and adds nothing to the binding.
    #[must_use]
    pub fn encode_for_ad(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&self.signing);
        out[32..].copy_from_slice(&self.dh);
        out
    }

    fn verify(&self, label: &[u8], payload: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        primitives::ed25519_verify_strict(&self.signing, &labeled(label, payload), signature)
            .map_err(|_| SignatureError::Invalid)
    }

    /// Checks a signed prekey's signature (label [`SIG_SIGNED_PREKEY`] over
    /// `id (u32 BE) || X25519 key`).
    ///
    /// # Errors
    /// [`SignatureError::Invalid`].
    pub fn verify_signed_prekey(
        &self,
        prekey: &SignedPreKeyPublic,
    ) -> Result<SignedPreKeyVerified, SignatureError> {
        self.verify(
            SIG_SIGNED_PREKEY,
            &prekey_payload(prekey.id, &prekey.public),
            &prekey.signature,
        )?;
        Ok(SignedPreKeyVerified(()))
    }

    /// Checks a KEM prekey's signature (label [`SIG_KEM_PREKEY`] over
    /// `id (u32 BE) || ML-KEM-768 encapsulation key`).
    ///
    /// # Errors
    /// [`SignatureError::Invalid`].
    pub fn verify_kem_prekey(
        &self,
        prekey: &KemPreKeyPublic,
    ) -> Result<KemPreKeyVerified, SignatureError> {
        self.verify(
            SIG_KEM_PREKEY,
            &prekey_payload(prekey.id, &prekey.public[..]),
            &prekey.signature,
        )?;
        Ok(KemPreKeyVerified(()))
    }

    /// Checks a login challenge signature made by
    /// [`IdentityKeyPair::sign_auth_challenge`].
    ///
    /// # Errors
    /// [`SignatureError::Invalid`] or [`SignatureError::FieldTooLong`].
    pub fn verify_auth_challenge(
        &self,
        relay_name: &str,
        exporter: &[u8],
        nonce: &[u8],
        signature: &[u8; 64],
    ) -> Result<(), SignatureError> {
        let payload = auth_challenge_payload(relay_name, exporter, nonce)?;
        self.verify(SIG_AUTH_CHALLENGE, &payload, signature)
    }

    /// Checks a device approval made by
    /// [`IdentityKeyPair::sign_device_approval`].
    ///
    /// # Errors
    /// [`SignatureError::Invalid`].
    pub fn verify_device_approval(
        &self,
        user_id: &[u8; 16],
        new_signing_key: &[u8; 32],
        signature: &[u8; 64],
    ) -> Result<(), SignatureError> {
        self.verify(
            SIG_DEVICE_APPROVAL,
            &device_approval_payload(user_id, new_signing_key),
            signature,
        )
    }

    /// Checks a room membership change signature made by
    /// [`IdentityKeyPair::sign_room_change`].
    ///
    /// # Errors
    /// [`SignatureError::Invalid`].
    pub fn verify_room_change(
        &self,
        change: &[u8],
        signature: &[u8; 64],
    ) -> Result<(), SignatureError> {
        self.verify(SIG_ROOM_CHANGE, change, signature)
    }
}

impl TryFrom<&[u8]> for IdentityPublicKey {
    type Error = DecodeError;

    /// Decodes and checks: the Ed25519 key is a valid point of large order, the
    /// X25519 key is not of low order, and the binding signature verifies.
    fn try_from(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() != IDENTITY_PUBLIC_KEY_LEN {
            return Err(DecodeError::WrongLength {
                len: bytes.len(),
                expected: IDENTITY_PUBLIC_KEY_LEN,
            });
        }
        let mut r = wire::Reader::new(bytes);
        let signing = r.array::<32>()?;
        let dh = r.array::<32>()?;
        let binding = r.array::<64>()?;
        let vk = VerifyingKey::from_bytes(&signing).map_err(|_| DecodeError::InvalidSigningKey)?;
        if vk.is_weak() {
            return Err(DecodeError::InvalidSigningKey);
        }
        if primitives::x25519_is_low_order(&dh) {
            return Err(DecodeError::LowOrderKey);
        }
        let key = Self {
            signing,
            dh,
            binding,
        };
        key.verify(SIG_IDENTITY_BINDING, &dh, &binding)
            .map_err(|_| DecodeError::BadIdentityBinding)?;
        Ok(key)
    }
}

// ---------------------------------------------------------------------------
// Proof tokens

/// Proof that a signed prekey's signature was checked. Only
/// [`IdentityPublicKey::verify_signed_prekey`] makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedPreKeyVerified(());

/// Proof that a KEM prekey's signature was checked. Only
/// [`IdentityPublicKey::verify_kem_prekey`] makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KemPreKeyVerified(());

// ---------------------------------------------------------------------------
// Public prekeys

/// A signed X25519 prekey as published (unverified until checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPreKeyPublic {
    /// Its id.
    pub id: PreKeyId,
    /// The X25519 public key.
    pub public: [u8; 32],
    /// Ed25519 signature, see [`IdentityPublicKey::verify_signed_prekey`].
    pub signature: [u8; 64],
}

impl SignedPreKeyPublic {
    /// Builds one from wire fields, checking lengths and refusing a low-order
    /// key (the signature is checked separately, by
    /// [`IdentityPublicKey::verify_signed_prekey`]).
    ///
    /// # Errors
    /// [`DecodeError::WrongLength`] or [`DecodeError::LowOrderKey`].
    pub fn new(id: PreKeyId, public: &[u8], signature: &[u8]) -> Result<Self, DecodeError> {
        Ok(Self {
            id,
            public: x25519_public_key(public)?,
            signature: fixed(signature)?,
        })
    }
}

/// A fixed-size field from a slice.
fn fixed<const N: usize>(bytes: &[u8]) -> Result<[u8; N], DecodeError> {
    bytes.try_into().map_err(|_| DecodeError::WrongLength {
        len: bytes.len(),
        expected: N,
    })
}

/// An X25519 public key from a slice: 32 bytes, not of low order.
fn x25519_public_key(bytes: &[u8]) -> Result<[u8; 32], DecodeError> {
    let key = fixed::<32>(bytes)?;
    if primitives::x25519_is_low_order(&key) {
        return Err(DecodeError::LowOrderKey);
    }
    Ok(key)
}

/// A signed ML-KEM-768 prekey as published (unverified until checked).
#[derive(Clone, PartialEq, Eq)]
pub struct KemPreKeyPublic {
    id: PreKeyId,
    public: Box<[u8; KEM_PUBLIC_KEY_LEN]>,
    signature: [u8; 64],
}

impl fmt::Debug for KemPreKeyPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KemPreKeyPublic")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl KemPreKeyPublic {
    /// Builds one from wire fields, checking the key's length and its FIPS 203
    /// encapsulation-key check (the signature is checked separately).
    ///
    /// # Errors
    /// [`DecodeError::WrongLength`] or [`DecodeError::InvalidKemKey`].
    pub fn new(id: PreKeyId, public: &[u8], signature: &[u8]) -> Result<Self, DecodeError> {
        let public: Box<[u8; KEM_PUBLIC_KEY_LEN]> = Box::new(fixed(public)?);
        kem_encapsulation_key(&public)?;
        Ok(Self {
            id,
            public,
            signature: fixed(signature)?,
        })
    }

    /// Its id.
    #[must_use]
    pub fn id(&self) -> PreKeyId {
        self.id
    }

    /// The 1184-byte encapsulation key.
    #[must_use]
    pub fn public_bytes(&self) -> &[u8; KEM_PUBLIC_KEY_LEN] {
        &self.public
    }

    /// The signature, see [`IdentityPublicKey::verify_kem_prekey`].
    #[must_use]
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }
}

fn kem_encapsulation_key(
    public: &[u8; KEM_PUBLIC_KEY_LEN],
) -> Result<EncapsulationKey<MlKem768>, DecodeError> {
    let array = (*public).into();
    EncapsulationKey::<MlKem768>::new(&array).map_err(|_| DecodeError::InvalidKemKey)
}

/// A one-time X25519 prekey as published. Not signed (as in X3DH): a relay that
/// swaps or withholds it can only cost the one-time prekey's extra forward
/// secrecy, never authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneTimePreKeyPublic {
    /// Its id.
    pub id: PreKeyId,
    /// The X25519 public key.
    pub public: [u8; 32],
}

impl OneTimePreKeyPublic {
    /// Builds one from wire fields, checking the length and refusing a
    /// low-order key.
    ///
    /// # Errors
    /// [`DecodeError::WrongLength`] or [`DecodeError::LowOrderKey`].
    pub fn new(id: PreKeyId, public: &[u8]) -> Result<Self, DecodeError> {
        Ok(Self {
            id,
            public: x25519_public_key(public)?,
        })
    }
}

// ---------------------------------------------------------------------------
// Private prekeys (held by the owner's PreKeyStore)

/// A signed X25519 prekey with its private key.
#[derive(Clone)]
pub struct SignedPreKeyPair {
    id: PreKeyId,
    private: Secret32,
    public: [u8; 32],
    signature: [u8; 64],
    created_at: u64,
}

impl fmt::Debug for SignedPreKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedPreKeyPair")
            .field("id", &self.id)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

impl SignedPreKeyPair {
    /// Makes and signs a new signed prekey at time `now` (unix seconds).
    pub fn generate<R: CryptoRng + ?Sized>(
        rng: &mut R,
        identity: &IdentityKeyPair,
        id: PreKeyId,
        now: u64,
    ) -> Self {
        let private = Secret32::random(rng);
        let public = primitives::x25519_public(&private.0);
        let signature = identity.sign(SIG_SIGNED_PREKEY, &prekey_payload(id, &public));
        Self {
            id,
            private,
            public,
            signature,
            created_at: now,
        }
    }

    /// Its id.
    #[must_use]
    pub fn id(&self) -> PreKeyId {
        self.id
    }

    /// When it was made (unix seconds).
    #[must_use]
    pub fn created_at(&self) -> u64 {
        self.created_at
    }

    /// What to publish.
    #[must_use]
    pub fn public(&self) -> SignedPreKeyPublic {
        SignedPreKeyPublic {
            id: self.id,
            public: self.public,
            signature: self.signature,
        }
    }

    #[cfg(feature = "sessions")]
    pub(crate) fn private(&self) -> &[u8; 32] {
        &self.private.0
    }

    /// The record for the keystore, wiped on drop (109 bytes):
    /// `0x01 || id (u32 BE) || created_at (u64 BE) || private key (32) ||
    /// signature (64)`.
    #[must_use]
    pub fn to_secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(SIGNED_PREKEY_RECORD_LEN));
        out.push(RECORD_VERSION);
        out.extend_from_slice(&self.id.0.to_be_bytes());
        out.extend_from_slice(&self.created_at.to_be_bytes());
        out.extend_from_slice(&self.private.0);
        out.extend_from_slice(&self.signature);
        out
    }

    /// Restores a record made by [`Self::to_secret_bytes`].
    ///
    /// # Errors
    /// [`DecodeError`] for a wrong length or version.
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = open_record(bytes, SIGNED_PREKEY_RECORD_LEN)?;
        let id = PreKeyId(r.u32()?);
        let created_at = u64::from_be_bytes(r.array::<8>()?);
        let private = Secret32(r.array::<32>()?);
        let signature = r.array::<64>()?;
        r.finish()?;
        Ok(Self {
            id,
            public: primitives::x25519_public(&private.0),
            private,
            signature,
            created_at,
        })
    }
}

/// Version byte of the keystore record encodings of private prekeys.
const RECORD_VERSION: u8 = 1;
const SIGNED_PREKEY_RECORD_LEN: usize = 1 + 4 + 8 + 32 + 64;
const KEM_PREKEY_RECORD_LEN: usize = 1 + 4 + 1 + 8 + 64 + 64;
const ONE_TIME_PREKEY_RECORD_LEN: usize = 1 + 4 + 32;

fn open_record(bytes: &[u8], len: usize) -> Result<wire::Reader<'_>, DecodeError> {
    if bytes.len() != len {
        return Err(DecodeError::WrongLength {
            len: bytes.len(),
            expected: len,
        });
    }
    let mut r = wire::Reader::new(bytes);
    let version = r.u8()?;
    if version != RECORD_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    Ok(r)
}

/// Whether a KEM prekey is the last-resort key (reused until rotated) or a
/// one-time key (deleted after one use), as in PQXDH §3.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KemPreKeyKind {
    /// Reused until rotated; published in every bundle when one-time KEM
    /// prekeys run out.
    LastResort,
    /// Used once, then deleted.
    OneTime,
}

/// A signed ML-KEM-768 prekey with its private key (kept as the 64-byte FIPS
/// 203 seed).
#[derive(Clone)]
pub struct KemPreKeyPair {
    id: PreKeyId,
    kind: KemPreKeyKind,
    seed: Zeroizing<[u8; 64]>,
    public: KemPreKeyPublic,
    created_at: u64,
}

impl fmt::Debug for KemPreKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KemPreKeyPair")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

impl KemPreKeyPair {
    /// Makes and signs a new ML-KEM-768 prekey.
    pub fn generate<R: CryptoRng + ?Sized>(
        rng: &mut R,
        identity: &IdentityKeyPair,
        id: PreKeyId,
        kind: KemPreKeyKind,
        now: u64,
    ) -> Self {
        let mut seed = Zeroizing::new([0u8; 64]);
        rng.fill_bytes(&mut seed[..]);
        let dk = DecapsulationKey::<MlKem768>::from_seed((*seed).into());
        let mut public = Box::new([0u8; KEM_PUBLIC_KEY_LEN]);
        public.copy_from_slice(&dk.encapsulation_key().to_bytes());
        let signature = identity.sign(SIG_KEM_PREKEY, &prekey_payload(id, &public[..]));
        Self {
            id,
            kind,
            seed,
            public: KemPreKeyPublic {
                id,
                public,
                signature,
            },
            created_at: now,
        }
    }

    /// Its id.
    #[must_use]
    pub fn id(&self) -> PreKeyId {
        self.id
    }

    /// Last resort or one-time.
    #[must_use]
    pub fn kind(&self) -> KemPreKeyKind {
        self.kind
    }

    /// When it was made (unix seconds).
    #[must_use]
    pub fn created_at(&self) -> u64 {
        self.created_at
    }

    /// What to publish.
    #[must_use]
    pub fn public(&self) -> &KemPreKeyPublic {
        &self.public
    }

    /// The record for the keystore, wiped on drop (142 bytes):
    /// `0x01 || id (u32 BE) || kind (0 last resort, 1 one-time) || created_at
    /// (u64 BE) || FIPS 203 seed (64) || signature (64)`.
    #[must_use]
    pub fn to_secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(KEM_PREKEY_RECORD_LEN));
        out.push(RECORD_VERSION);
        out.extend_from_slice(&self.id.0.to_be_bytes());
        out.push(match self.kind {
            KemPreKeyKind::LastResort => 0,
            KemPreKeyKind::OneTime => 1,
        });
        out.extend_from_slice(&self.created_at.to_be_bytes());
        out.extend_from_slice(&self.seed[..]);
        out.extend_from_slice(&self.public.signature);
        out
    }

    /// Restores a record made by [`Self::to_secret_bytes`] (the public key is
    /// recomputed from the seed).
    ///
    /// # Errors
    /// [`DecodeError`] for a wrong length, version or kind.
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = open_record(bytes, KEM_PREKEY_RECORD_LEN)?;
        let id = PreKeyId(r.u32()?);
        let kind = if r.flag()? {
            KemPreKeyKind::OneTime
        } else {
            KemPreKeyKind::LastResort
        };
        let created_at = u64::from_be_bytes(r.array::<8>()?);
        let seed = Zeroizing::new(r.array::<64>()?);
        let signature = r.array::<64>()?;
        r.finish()?;
        let dk = DecapsulationKey::<MlKem768>::from_seed((*seed).into());
        let mut public = Box::new([0u8; KEM_PUBLIC_KEY_LEN]);
        public.copy_from_slice(&dk.encapsulation_key().to_bytes());
        Ok(Self {
            id,
            kind,
            seed,
            public: KemPreKeyPublic {
                id,
                public,
                signature,
            },
            created_at,
        })
    }

    #[cfg(feature = "sessions")]
    /// ML-KEM-768 decapsulation. Implicit rejection (FIPS 203): a corrupted
    /// ciphertext gives a pseudorandom secret, so failure shows up later as an
    /// AEAD failure, never here.
    pub(crate) fn decapsulate(&self, ciphertext: &[u8; KEM_CIPHERTEXT_LEN]) -> Zeroizing<[u8; 32]> {
        let dk = DecapsulationKey::<MlKem768>::from_seed((*self.seed).into());
        let ct = (*ciphertext).into();
        let shared = dk.decapsulate(&ct);
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&shared);
        out
    }
}

#[cfg(feature = "sessions")]
/// An ML-KEM-768 ciphertext and the shared secret it carries.
pub(crate) type KemEncapsulation = (Box<[u8; KEM_CIPHERTEXT_LEN]>, Zeroizing<[u8; 32]>);

#[cfg(feature = "sessions")]
/// ML-KEM-768 encapsulation to a (verified) KEM prekey.
pub(crate) fn kem_encapsulate<R: CryptoRng + ?Sized>(
    rng: &mut R,
    public: &KemPreKeyPublic,
) -> Result<KemEncapsulation, DecodeError> {
    let ek = kem_encapsulation_key(&public.public)?;
    let (ct, shared) = ek.encapsulate_with_rng(rng);
    let mut ct_out = Box::new([0u8; KEM_CIPHERTEXT_LEN]);
    ct_out.copy_from_slice(&ct);
    let mut ss = Zeroizing::new([0u8; 32]);
    ss.copy_from_slice(&shared);
    Ok((ct_out, ss))
}

/// A one-time X25519 prekey with its private key.
#[derive(Clone)]
pub struct OneTimePreKeyPair {
    id: PreKeyId,
    private: Secret32,
    public: [u8; 32],
}

impl fmt::Debug for OneTimePreKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OneTimePreKeyPair")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl OneTimePreKeyPair {
    /// Makes a new one-time prekey.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R, id: PreKeyId) -> Self {
        let private = Secret32::random(rng);
        let public = primitives::x25519_public(&private.0);
        Self {
            id,
            private,
            public,
        }
    }

    /// Its id.
    #[must_use]
    pub fn id(&self) -> PreKeyId {
        self.id
    }

    /// What to publish.
    #[must_use]
    pub fn public(&self) -> OneTimePreKeyPublic {
        OneTimePreKeyPublic {
            id: self.id,
            public: self.public,
        }
    }

    #[cfg(feature = "sessions")]
    pub(crate) fn private(&self) -> &[u8; 32] {
        &self.private.0
    }

    /// The record for the keystore, wiped on drop (37 bytes):
    /// `0x01 || id (u32 BE) || private key (32)`.
    #[must_use]
    pub fn to_secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(ONE_TIME_PREKEY_RECORD_LEN));
        out.push(RECORD_VERSION);
        out.extend_from_slice(&self.id.0.to_be_bytes());
        out.extend_from_slice(&self.private.0);
        out
    }

    /// Restores a record made by [`Self::to_secret_bytes`].
    ///
    /// # Errors
    /// [`DecodeError`] for a wrong length or version.
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = open_record(bytes, ONE_TIME_PREKEY_RECORD_LEN)?;
        let id = PreKeyId(r.u32()?);
        let private = Secret32(r.array::<32>()?);
        r.finish()?;
        Ok(Self {
            id,
            public: primitives::x25519_public(&private.0),
            private,
        })
    }
}

// ---------------------------------------------------------------------------
// Bundles

/// A prekey bundle as the relay hands it out. Unverified: call
/// [`PreKeyBundle::verify`] to get a [`VerifiedPreKeyBundle`].
///
/// Wire layout ([`PREKEY_BUNDLE_LEN`] = 1519 bytes, all integers big-endian):
///
/// | offset | length | field                                         |
/// |-------:|-------:|-----------------------------------------------|
/// | 0      | 1      | version = `0x01`                              |
/// | 1      | 1      | type = `0x03` (`message_type::PREKEY_BUNDLE`) |
/// | 2      | 128    | identity public key ([`IdentityPublicKey`])   |
/// | 130    | 4      | signed prekey id                              |
/// | 134    | 32     | signed prekey (X25519)                        |
/// | 166    | 64     | signed prekey signature                       |
/// | 230    | 4      | KEM prekey id                                 |
/// | 234    | 1184   | KEM prekey (ML-KEM-768 encapsulation key)     |
/// | 1418   | 64     | KEM prekey signature                          |
/// | 1482   | 1      | one-time prekey present: `0x00` or `0x01`     |
/// | 1483   | 4      | one-time prekey id (zeros when absent)        |
/// | 1487   | 32     | one-time prekey (X25519; zeros when absent)   |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreKeyBundle {
    /// The owner's identity.
    pub identity: IdentityPublicKey,
    /// The current signed prekey.
    pub signed_prekey: SignedPreKeyPublic,
    /// A one-time KEM prekey, or the last-resort one.
    pub kem_prekey: KemPreKeyPublic,
    /// A one-time X25519 prekey, if any are left.
    pub one_time_prekey: Option<OneTimePreKeyPublic>,
}

impl PreKeyBundle {
    /// Encodes the bundle (layout in the type's doc).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PREKEY_BUNDLE_LEN);
        out.push(crate::domain::WIRE_VERSION);
        out.push(message_type::PREKEY_BUNDLE);
        out.extend_from_slice(&self.identity.to_bytes());
        out.extend_from_slice(&self.signed_prekey.id.0.to_be_bytes());
        out.extend_from_slice(&self.signed_prekey.public);
        out.extend_from_slice(&self.signed_prekey.signature);
        out.extend_from_slice(&self.kem_prekey.id.0.to_be_bytes());
        out.extend_from_slice(&self.kem_prekey.public[..]);
        out.extend_from_slice(&self.kem_prekey.signature);
        match &self.one_time_prekey {
            Some(otk) => {
                out.push(1);
                out.extend_from_slice(&otk.id.0.to_be_bytes());
                out.extend_from_slice(&otk.public);
            }
            None => out.extend_from_slice(&[0u8; 1 + 4 + 32]),
        }
        out
    }

    /// Checks both prekey signatures against the bundle's identity (before
    /// any Diffie-Hellman, as X3DH §3.3 requires).
    ///
    /// # Errors
    /// [`BundleError::SignedPreKeySignature`] or
    /// [`BundleError::KemPreKeySignature`].
    pub fn verify(self) -> Result<VerifiedPreKeyBundle, BundleError> {
        let spk = self
            .identity
            .verify_signed_prekey(&self.signed_prekey)
            .map_err(|_| BundleError::SignedPreKeySignature)?;
        let kem = self
            .identity
            .verify_kem_prekey(&self.kem_prekey)
            .map_err(|_| BundleError::KemPreKeySignature)?;
        Ok(VerifiedPreKeyBundle {
            bundle: self,
            _signed_prekey: spk,
            _kem_prekey: kem,
        })
    }
}

impl TryFrom<&[u8]> for PreKeyBundle {
    type Error = DecodeError;

    /// Decodes the layout in the type's doc. Refuses low-order X25519 keys and
    /// invalid ML-KEM keys; does not check signatures.
    fn try_from(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = wire::open(bytes, message_type::PREKEY_BUNDLE, PREKEY_BUNDLE_LEN)?;
        if bytes.len() != PREKEY_BUNDLE_LEN {
            return Err(DecodeError::WrongLength {
                len: bytes.len(),
                expected: PREKEY_BUNDLE_LEN,
            });
        }
        let identity = IdentityPublicKey::try_from(&r.array::<IDENTITY_PUBLIC_KEY_LEN>()?[..])?;
        let spk_id = PreKeyId(r.u32()?);
        let spk = r.array::<32>()?;
        let spk_sig = r.array::<64>()?;
        if primitives::x25519_is_low_order(&spk) {
            return Err(DecodeError::LowOrderKey);
        }
        let kem_id = PreKeyId(r.u32()?);
        let kem = r.array::<KEM_PUBLIC_KEY_LEN>()?;
        let kem_sig = r.array::<64>()?;
        let kem_prekey = KemPreKeyPublic::new(kem_id, &kem, &kem_sig)?;
        let has_otk = r.flag()?;
        let otk_id = r.u32()?;
        let otk = r.array::<32>()?;
        r.finish()?;
        let one_time_prekey = if has_otk {
            if primitives::x25519_is_low_order(&otk) {
                return Err(DecodeError::LowOrderKey);
            }
            Some(OneTimePreKeyPublic {
                id: PreKeyId(otk_id),
                public: otk,
            })
        } else {
            if otk_id != 0 || otk != [0; 32] {
                return Err(DecodeError::InvalidFlag);
            }
            None
        };
        Ok(Self {
            identity,
            signed_prekey: SignedPreKeyPublic {
                id: spk_id,
                public: spk,
                signature: spk_sig,
            },
            kem_prekey,
            one_time_prekey,
        })
    }
}

/// A prekey bundle whose signatures were checked. Only
/// [`PreKeyBundle::verify`] makes one; [`crate::session::Session::initiate`]
/// takes nothing else.
#[derive(Debug, Clone)]
pub struct VerifiedPreKeyBundle {
    bundle: PreKeyBundle,
    _signed_prekey: SignedPreKeyVerified,
    _kem_prekey: KemPreKeyVerified,
}

impl VerifiedPreKeyBundle {
    /// The checked bundle.
    #[must_use]
    pub fn bundle(&self) -> &PreKeyBundle {
        &self.bundle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn rng() -> ChaCha20Rng {
        ChaCha20Rng::from_seed([1; 32])
    }

    #[test]
    fn auth_challenge_signature_does_not_verify_as_prekey_signature() {
        let mut rng = rng();
        let id = IdentityKeyPair::generate(&mut rng);
        let spk = SignedPreKeyPair::generate(&mut rng, &id, PreKeyId(7), 0);
        let mut public = spk.public();
        // A signature over exactly the prekey payload bytes, but under the
        // auth-challenge label: must not pass as a prekey signature.
        public.signature = id.sign(
            SIG_AUTH_CHALLENGE,
            &prekey_payload(public.id, &public.public),
        );
        assert_eq!(
            id.public().verify_signed_prekey(&public),
            Err(SignatureError::Invalid)
        );
        // The same bytes under the right label do verify.
        public.signature = id.sign(
            SIG_SIGNED_PREKEY,
            &prekey_payload(public.id, &public.public),
        );
        assert!(id.public().verify_signed_prekey(&public).is_ok());
    }

    #[test]
    fn prekey_signature_does_not_verify_as_auth_challenge_or_room_change() {
        let mut rng = rng();
        let id = IdentityKeyPair::generate(&mut rng);
        let payload = auth_challenge_payload("relay.example", &[1; 32], &[2; 16]).unwrap();
        let sig = id.sign(SIG_SIGNED_PREKEY, &payload);
        assert!(
            id.public()
                .verify_auth_challenge("relay.example", &[1; 32], &[2; 16], &sig)
                .is_err()
        );
        let sig = id.sign(SIG_ROOM_CHANGE, &payload);
        assert!(
            id.public()
                .verify_auth_challenge("relay.example", &[1; 32], &[2; 16], &sig)
                .is_err()
        );
        assert!(id.public().verify_room_change(&payload, &sig).is_ok());
    }

    #[test]
    fn device_approval_is_bound_to_account_and_key_and_to_its_label() {
        let mut rng = rng();
        let id = IdentityKeyPair::generate(&mut rng);
        let pk = id.public();
        let sig = id.sign_device_approval(&[1; 16], &[2; 32]);
        assert!(pk.verify_device_approval(&[1; 16], &[2; 32], &sig).is_ok());
        assert!(pk.verify_device_approval(&[9; 16], &[2; 32], &sig).is_err());
        assert!(pk.verify_device_approval(&[1; 16], &[9; 32], &sig).is_err());
        // The same bytes signed for another purpose do not approve a device.
        let payload = device_approval_payload(&[1; 16], &[2; 32]);
        let room = id.sign_room_change(&payload);
        assert!(
            pk.verify_device_approval(&[1; 16], &[2; 32], &room)
                .is_err()
        );
        let other = IdentityKeyPair::generate(&mut rng);
        assert!(
            other
                .public()
                .verify_device_approval(&[1; 16], &[2; 32], &sig)
                .is_err()
        );
    }

    #[test]
    fn auth_challenge_is_bound_to_relay_exporter_and_nonce() {
        let mut rng = rng();
        let id = IdentityKeyPair::generate(&mut rng);
        let sig = id.sign_auth_challenge("a", &[1; 32], &[2; 16]).unwrap();
        let pk = id.public();
        assert!(
            pk.verify_auth_challenge("a", &[1; 32], &[2; 16], &sig)
                .is_ok()
        );
        assert!(
            pk.verify_auth_challenge("b", &[1; 32], &[2; 16], &sig)
                .is_err()
        );
        assert!(
            pk.verify_auth_challenge("a", &[3; 32], &[2; 16], &sig)
                .is_err()
        );
        assert!(
            pk.verify_auth_challenge("a", &[1; 32], &[3; 16], &sig)
                .is_err()
        );
        let long = vec![0u8; MAX_SIGNED_FIELD_LEN + 1];
        assert_eq!(
            id.sign_auth_challenge("a", &long, &[]),
            Err(SignatureError::FieldTooLong)
        );
        assert!(id.sign_auth_challenge("a", &long[1..], &[]).is_ok());
    }

    #[test]
    fn identity_round_trips_through_secret_and_public_bytes() {
        let mut rng = rng();
        let id = IdentityKeyPair::generate(&mut rng);
        let restored = IdentityKeyPair::from_secret_bytes(&id.to_secret_bytes());
        assert_eq!(restored.public(), id.public());
        let decoded = IdentityPublicKey::try_from(&id.public().to_bytes()[..]).unwrap();
        assert_eq!(&decoded, id.public());
    }

    #[test]
    fn public_keys_build_from_wire_fields_with_checks() {
        let mut rng = rng();
        let id = IdentityKeyPair::generate(&mut rng);
        let pk = id.public();
        let again = IdentityPublicKey::from_parts(
            pk.signing_key_bytes(),
            pk.dh_key_bytes(),
            pk.binding_signature(),
        )
        .unwrap();
        assert_eq!(&again, pk);
        assert!(matches!(
            IdentityPublicKey::from_parts(
                &pk.signing_key_bytes()[1..],
                pk.dh_key_bytes(),
                pk.binding_signature()
            ),
            Err(DecodeError::WrongLength { .. })
        ));
        let spk = SignedPreKeyPair::generate(&mut rng, &id, PreKeyId(3), 0).public();
        let wire = SignedPreKeyPublic::new(spk.id, &spk.public, &spk.signature).unwrap();
        assert!(pk.verify_signed_prekey(&wire).is_ok());
        assert_eq!(
            SignedPreKeyPublic::new(spk.id, &[0; 32], &spk.signature),
            Err(DecodeError::LowOrderKey)
        );
        assert!(SignedPreKeyPublic::new(spk.id, &spk.public, &spk.signature[1..]).is_err());
        assert_eq!(
            OneTimePreKeyPublic::new(PreKeyId(1), &[0; 32]),
            Err(DecodeError::LowOrderKey)
        );
        assert!(OneTimePreKeyPublic::new(PreKeyId(1), &[9; 31]).is_err());
        let kem = KemPreKeyPair::generate(&mut rng, &id, PreKeyId(4), KemPreKeyKind::OneTime, 0);
        let wire = KemPreKeyPublic::new(
            kem.id(),
            kem.public().public_bytes(),
            kem.public().signature(),
        )
        .unwrap();
        assert!(pk.verify_kem_prekey(&wire).is_ok());
        assert_eq!(
            KemPreKeyPublic::new(
                kem.id(),
                &[0xff; KEM_PUBLIC_KEY_LEN],
                kem.public().signature()
            ),
            Err(DecodeError::InvalidKemKey)
        );
    }

    #[test]
    fn prekey_records_round_trip_and_refuse_wrong_lengths() {
        let mut rng = rng();
        let id = IdentityKeyPair::generate(&mut rng);
        let spk = SignedPreKeyPair::generate(&mut rng, &id, PreKeyId(7), 99);
        let back = SignedPreKeyPair::from_secret_bytes(&spk.to_secret_bytes()).unwrap();
        assert_eq!(back.public(), spk.public());
        assert_eq!(back.created_at(), 99);
        assert!(id.public().verify_signed_prekey(&back.public()).is_ok());
        let otk = OneTimePreKeyPair::generate(&mut rng, PreKeyId(8));
        let back = OneTimePreKeyPair::from_secret_bytes(&otk.to_secret_bytes()).unwrap();
        assert_eq!(back.public(), otk.public());
        for kind in [KemPreKeyKind::LastResort, KemPreKeyKind::OneTime] {
            let kem = KemPreKeyPair::generate(&mut rng, &id, PreKeyId(9), kind, 5);
            let back = KemPreKeyPair::from_secret_bytes(&kem.to_secret_bytes()).unwrap();
            assert_eq!(back.public(), kem.public());
            assert_eq!(back.kind(), kind);
            assert!(id.public().verify_kem_prekey(back.public()).is_ok());
        }
        let bytes = spk.to_secret_bytes();
        assert!(SignedPreKeyPair::from_secret_bytes(&bytes[1..]).is_err());
        let mut wrong = bytes.to_vec();
        wrong[0] = 2;
        assert_eq!(
            SignedPreKeyPair::from_secret_bytes(&wrong).unwrap_err(),
            DecodeError::UnsupportedVersion(2)
        );
    }

    #[test]
    fn secret32_debug_is_a_fixed_placeholder() {
        // The crate-private wrapper of every 32-byte private key; the public
        // types' snapshots are in tests/debug_snapshots.rs.
        insta::assert_debug_snapshot!("secret32", Secret32([0x5d; 32]));
    }

    #[test]
    fn debug_output_of_private_keys_carries_no_secret_bytes() {
        let mut rng = rng();
        let id = IdentityKeyPair::generate(&mut rng);
        let spk = SignedPreKeyPair::generate(&mut rng, &id, PreKeyId(1), 0);
        let otk = OneTimePreKeyPair::generate(&mut rng, PreKeyId(2));
        let kem = KemPreKeyPair::generate(&mut rng, &id, PreKeyId(3), KemPreKeyKind::OneTime, 0);
        let text = format!("{id:?} {spk:?} {otk:?} {kem:?}");
        for secret in [
            &id.to_secret_bytes()[..32],
            &id.to_secret_bytes()[32..],
            spk.private(),
            otk.private(),
            &kem.seed[..32],
        ] {
            let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
            assert!(!text.contains(&hex[..8]));
            assert!(!text.contains(&format!("{:?}", &secret[..4])[1..8]));
        }
    }
}
