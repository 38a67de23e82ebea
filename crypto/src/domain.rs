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

// ---- KDF info strings: Sender Keys and attachments (crypto-b) ----

/// HKDF-SHA256 info for a Sender Key message key: expands the 32-byte message
/// key (HMAC(CK, 0x01)) into a 32-byte ChaCha20-Poly1305 key and a 12-byte nonce.
pub const KDF_SENDER_KEY_MESSAGE_KEYS: &[u8] = b"spider/v1/kdf/sender-key-message-keys";
/// HKDF-SHA256 info for an attachment: expands the random 32-byte file key into
/// the STREAM's 32-byte ChaCha20-Poly1305 key and 7-byte nonce prefix.
pub const KDF_ATTACHMENT_STREAM: &[u8] = b"spider/v1/kdf/attachment-stream";

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
    fn sender_key_and_attachment_kdf_infos_are_distinct() {
        assert_ne!(KDF_SENDER_KEY_MESSAGE_KEYS, KDF_ATTACHMENT_STREAM);
        for label in ALL_SIGNATURE_LABELS {
            assert_ne!(*label, KDF_SENDER_KEY_MESSAGE_KEYS);
            assert_ne!(*label, KDF_ATTACHMENT_STREAM);
        }
    }
}
