//! Domain-separation labels.
//!
//! Every signature and every KDF in Spider carries a label naming its purpose,
//! so that a value produced for one purpose can never be accepted for another
//! (for example, an auth-challenge signature can never verify as a prekey
//! signature). All labels live here so that their distinctness is checked in
//! one place (see the test at the bottom).
//!
//! Signature inputs are always `label || 0x00 || payload`: the zero byte ends
//! the label, so no label is a prefix of another's signed bytes.

/// Ed25519 signature by the identity signing key over the identity X25519 key.
pub const SIG_IDENTITY_BINDING: &[u8] = b"spider/v1/sig/identity-binding";
/// Ed25519 signature by the identity key over a signed (X25519) prekey.
pub const SIG_SIGNED_PREKEY: &[u8] = b"spider/v1/sig/signed-prekey";
/// Ed25519 signature by the identity key over a signed ML-KEM-768 prekey.
pub const SIG_KEM_PREKEY: &[u8] = b"spider/v1/sig/kem-prekey";
/// Ed25519 signature by the identity key over a relay's auth challenge.
pub const SIG_AUTH_CHALLENGE: &[u8] = b"spider/v1/sig/auth-challenge";
/// Ed25519 signature by a room member's identity key over a membership change.
pub const SIG_ROOM_CHANGE: &[u8] = b"spider/v1/sig/room-change";
/// Ed25519 signature by a sender-key chain's signing key over a room message.
pub const SIG_SENDER_KEY_MESSAGE: &[u8] = b"spider/v1/sig/sender-key-message";
/// Ed25519 signature by an existing device's identity key approving a new
/// device of the same account (payload: user id, new signing key).
pub const SIG_DEVICE_APPROVAL: &[u8] = b"spider/v1/sig/device-approval";

/// HKDF info for the PQXDH shared secret (the `info` parameter of X3DH §2.1
/// and PQXDH §2.1). Names the curve, hash and KEM, as PQXDH recommends.
pub const KDF_PQXDH: &[u8] = b"spider/v1/kdf/pqxdh/X25519_SHA-256_ML-KEM-768";
/// HKDF info for KDF_RK, the Double Ratchet root-key step (DR §5.2).
pub const KDF_ROOT: &[u8] = b"spider/v1/kdf/ratchet-root";
/// HKDF info that turns a Double Ratchet message key into an AEAD key and
/// nonce (DR §5.2, "ENCRYPT").
pub const KDF_MESSAGE_KEYS: &[u8] = b"spider/v1/kdf/ratchet-message-keys";

/// All KDF info strings, for the distinctness test.
pub const ALL_KDF_INFOS: &[&[u8]] = &[
    KDF_PQXDH,
    KDF_ROOT,
    KDF_MESSAGE_KEYS,
    KDF_SENDER_KEY_MESSAGE_KEYS,
    KDF_ATTACHMENT_STREAM,
    KDF_PROFILE,
];

/// Version byte that opens every Spider crypto wire message.
pub const WIRE_VERSION: u8 = 1;

/// Message type bytes: the second byte of every wire message, so that a payload
/// of one kind is refused where another is expected. Values are never reused.
pub mod message_type {
    /// A Double Ratchet message (`ratchet::RatchetMessage`).
    pub const RATCHET: u8 = 0x01;
    /// A PQXDH first message (`x3dh::PreKeyMessage`).
    pub const PREKEY: u8 = 0x02;
    /// A prekey bundle as fetched from the relay (`keys::PreKeyBundle`).
    pub const PREKEY_BUNDLE: u8 = 0x03;
    /// Reserved for the Sender Keys room message.
    pub const SENDER_KEY_MESSAGE: u8 = 0x10;
    /// Reserved for the Sender Keys distribution message.
    pub const SENDER_KEY_DISTRIBUTION: u8 = 0x11;
    /// Serialized session state in the client keystore (never on the wire, but
    /// typed all the same so a stored blob cannot be mistaken for a message).
    pub const SESSION_STATE: u8 = 0x20;
    /// Serialized session record (the current session and the previous ones
    /// kept for one remote device) in the client keystore.
    pub const SESSION_RECORD: u8 = 0x21;
}

/// All signature labels, for the distinctness test and for documentation.
pub const ALL_SIGNATURE_LABELS: &[&[u8]] = &[
    SIG_IDENTITY_BINDING,
    SIG_SIGNED_PREKEY,
    SIG_KEM_PREKEY,
    SIG_AUTH_CHALLENGE,
    SIG_ROOM_CHANGE,
    SIG_SENDER_KEY_MESSAGE,
    SIG_DEVICE_APPROVAL,
];

/// HKDF-SHA256 info for a Sender Key message key: expands the 32-byte message
/// key (HMAC(CK, 0x01)) into a 32-byte ChaCha20-Poly1305 key and a 12-byte nonce.
pub const KDF_SENDER_KEY_MESSAGE_KEYS: &[u8] = b"spider/v1/kdf/sender-key-message-keys";
/// HKDF-SHA256 info for an attachment: expands the random 32-byte file key into
/// the STREAM's 32-byte ChaCha20-Poly1305 key and 7-byte nonce prefix.
pub const KDF_ATTACHMENT_STREAM: &[u8] = b"spider/v1/kdf/attachment-stream";
/// HKDF-SHA256 info for an encrypted profile: expands the random 32-byte
/// profile key (shared with contacts over 1:1 sessions) into the
/// ChaCha20-Poly1305 key of the profile blob the relay stores.
pub const KDF_PROFILE: &[u8] = b"spider/v1/kdf/profile";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_labels_are_distinct_and_prefix_free() {
        for (i, a) in ALL_SIGNATURE_LABELS.iter().enumerate() {
            for (j, b) in ALL_SIGNATURE_LABELS.iter().enumerate() {
                if i != j {
                    assert!(!b.starts_with(a), "{a:?} is a prefix of {b:?}");
                }
            }
            assert!(
                !a.contains(&0),
                "labels must not contain the 0x00 terminator"
            );
        }
    }

    #[test]
    fn kdf_infos_are_distinct_from_each_other_and_from_signature_labels() {
        for (i, a) in ALL_KDF_INFOS.iter().enumerate() {
            for (j, b) in ALL_KDF_INFOS.iter().enumerate() {
                if i != j {
                    assert_ne!(a, b);
                }
            }
            assert!(!ALL_SIGNATURE_LABELS.contains(a));
        }
    }

    #[test]
    fn message_types_are_distinct() {
        use message_type::*;
        let all = [
            RATCHET,
            PREKEY,
            PREKEY_BUNDLE,
            SENDER_KEY_MESSAGE,
            SENDER_KEY_DISTRIBUTION,
            SESSION_STATE,
            SESSION_RECORD,
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
