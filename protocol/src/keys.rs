//! Public keys and signatures as they travel.
//!
//! The protocol crate carries keys as bytes and checks only their lengths;
//! spider-crypto parses and verifies them (the relay calls it for signature
//! checks, never for anything that decrypts). Every signature is Ed25519 over
//! `label || 0x00 || payload`, with the label naming its purpose (see
//! `spider_crypto::domain`), so one kind of signature never verifies as another.

use serde::{Deserialize, Serialize};

use crate::bytes::{BoundedVec, FixedBytes};
use crate::ids::{DeviceId, PreKeyId};

/// An Ed25519 public key: 32 bytes.
pub type Ed25519Public = FixedBytes<32>;
/// An X25519 public key: 32 bytes.
pub type X25519Public = FixedBytes<32>;
/// An Ed25519 signature: 64 bytes.
pub type Signature = FixedBytes<64>;
/// Length of an ML-KEM-768 encapsulation (public) key, FIPS 203 table 3.
pub const KEM_PUBLIC_LEN: usize = 1184;
/// Length of an ML-KEM-768 ciphertext, FIPS 203 table 3.
pub const KEM_CIPHERTEXT_LEN: usize = 1088;
/// An ML-KEM-768 encapsulation key: 1184 bytes.
pub type KemPublic = FixedBytes<KEM_PUBLIC_LEN>;

/// Most one-time X25519 prekeys in one upload. With 100 in stock a device can
/// be contacted by 100 new peers before it comes back online to refill.
pub const MAX_ONE_TIME_PREKEYS_PER_UPLOAD: usize = 100;
/// Most one-time ML-KEM prekeys in one upload. Fewer than X25519 ones because
/// each is 1.2 KiB; when they run out the last-resort KEM prekey is used.
pub const MAX_ONE_TIME_KEM_PREKEYS_PER_UPLOAD: usize = 50;

/// A device's long-term identity: an Ed25519 key that signs, an X25519 key
/// for X3DH, and the Ed25519 signature that binds the second to the first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct IdentityKeys {
    /// Ed25519: signs prekeys, auth challenges and room changes.
    pub signing: Ed25519Public,
    /// X25519: the identity key of X3DH.
    pub dh: X25519Public,
    /// `signing` over the identity-binding label and `dh`.
    pub binding: Signature,
}

/// A medium-term X25519 prekey, signed by the identity key. Rotated weekly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct SignedPreKey {
    /// Its id, chosen by the device.
    pub id: PreKeyId,
    /// The public key.
    pub public: X25519Public,
    /// Identity signature over the signed-prekey label, `id` and `public`.
    pub signature: Signature,
}

/// An ML-KEM-768 prekey, signed by the identity key. Either the last-resort
/// one (reused until rotated) or a one-time one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct KemPreKey {
    /// Its id, chosen by the device.
    pub id: PreKeyId,
    /// The encapsulation key.
    pub public: KemPublic,
    /// Identity signature over the KEM-prekey label, `id` and `public`.
    pub signature: Signature,
}

/// A one-time X25519 prekey. Unsigned, as in X3DH: a forged one can only make
/// the handshake fail, since the signed prekey is always part of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct OneTimePreKey {
    /// Its id, chosen by the device.
    pub id: PreKeyId,
    /// The public key.
    pub public: X25519Public,
}

/// Prekeys a device hands the relay, at registration and when refilling.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct PreKeyUpload {
    /// A new signed prekey (required at registration; on refill, a rotation).
    pub signed_prekey: Option<SignedPreKey>,
    /// A new last-resort KEM prekey (required at registration).
    pub last_resort_kem_prekey: Option<KemPreKey>,
    /// One-time X25519 prekeys to add.
    pub one_time_prekeys: BoundedVec<OneTimePreKey, MAX_ONE_TIME_PREKEYS_PER_UPLOAD>,
    /// One-time KEM prekeys to add.
    pub one_time_kem_prekeys: BoundedVec<KemPreKey, MAX_ONE_TIME_KEM_PREKEYS_PER_UPLOAD>,
}

/// Everything needed to start a session with one device. Each one-time key
/// in it was handed out by the relay exactly once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct PreKeyBundle {
    /// The device.
    pub device: DeviceId,
    /// Its identity keys.
    pub identity: IdentityKeys,
    /// Its current signed prekey.
    pub signed_prekey: SignedPreKey,
    /// A one-time KEM prekey if one was left, else the last-resort one.
    pub kem_prekey: KemPreKey,
    /// Whether `kem_prekey` is a one-time key.
    pub kem_prekey_is_one_time: bool,
    /// A one-time X25519 prekey, if one was left.
    pub one_time_prekey: Option<OneTimePreKey>,
}

/// How many one-time prekeys the relay still holds for this device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct PreKeyCounts {
    /// One-time X25519 prekeys left.
    pub one_time: u32,
    /// One-time KEM prekeys left.
    pub one_time_kem: u32,
}
