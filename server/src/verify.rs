//! Every signature check the relay makes, and nothing else.
//!
//! The checks themselves are spider-crypto's (`IdentityPublicKey::verify_*`):
//! the relay links that crate for public-key types and signature checks only,
//! never for anything that decrypts. Each payload and label is specified in
//! docs/protocol.md §6 and in `spider_crypto::domain`.
//!
//! A successful check returns a zero-sized proof token; the code that stores
//! keys or authenticates a device takes the token, so "it was checked" is
//! enforced by the compiler.

use spider_crypto::keys::{IdentityPublicKey, KemPreKeyPublic, PreKeyId, SignedPreKeyPublic};
use spider_protocol::ids::UserId;
use spider_protocol::keys::{IdentityKeys, KemPreKey, PreKeyUpload, SignedPreKey};
use spider_protocol::message::SignedRoomChange;

/// A signature check failed. Deliberately says nothing about which key or
/// which bytes: the peer learns only `BAD_SIGNATURE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum VerifyError {
    /// A public key is malformed, weak or of low order, or the identity's
    /// binding signature does not verify.
    #[error("invalid public key")]
    BadKey,
    /// The signature does not verify under `verify_strict`.
    #[error("bad signature")]
    BadSignature,
}

/// Proof that an identity's X25519 key is bound to its signing key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdentityVerified(());
/// Proof that every signed prekey in an upload verifies under its identity.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PreKeysVerified(());
/// Proof that a device signed this connection's auth challenge.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AuthVerified(());
/// Proof that an existing device approved a new one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ApprovalVerified(());
/// Proof that a room change is signed by its actor.
#[derive(Debug, Clone, Copy)]
#[allow(dead_code)] // rooms are served in a later step
pub(crate) struct RoomChangeVerified(());

/// Parses wire identity keys into spider-crypto's checked type: valid,
/// non-weak Ed25519 key, non-low-order X25519 key, binding signature good.
fn identity_key(identity: &IdentityKeys) -> Result<IdentityPublicKey, VerifyError> {
    IdentityPublicKey::from_parts(&identity.signing.0, &identity.dh.0, &identity.binding.0)
        .map_err(|_| VerifyError::BadKey)
}

/// Checks `identity.binding`: the signing key over the X25519 key.
pub(crate) fn identity_binding(identity: &IdentityKeys) -> Result<IdentityVerified, VerifyError> {
    identity_key(identity)?;
    Ok(IdentityVerified(()))
}

fn signed_prekey(id: &IdentityPublicKey, k: &SignedPreKey) -> Result<(), VerifyError> {
    let k = SignedPreKeyPublic::new(PreKeyId(k.id.0), &k.public.0, &k.signature.0)
        .map_err(|_| VerifyError::BadKey)?;
    id.verify_signed_prekey(&k)
        .map(|_| ())
        .map_err(|_| VerifyError::BadSignature)
}

fn kem_prekey(id: &IdentityPublicKey, k: &KemPreKey) -> Result<(), VerifyError> {
    let k = KemPreKeyPublic::new(PreKeyId(k.id.0), &k.public.0, &k.signature.0)
        .map_err(|_| VerifyError::BadKey)?;
    id.verify_kem_prekey(&k)
        .map(|_| ())
        .map_err(|_| VerifyError::BadSignature)
}

/// Checks every signature in a prekey upload: the signed prekey, the
/// last-resort KEM prekey and each one-time KEM prekey. One-time X25519
/// prekeys are unsigned (X3DH), but must still be valid, non-low-order keys.
pub(crate) fn prekey_upload(
    _identity: IdentityVerified,
    identity: &IdentityKeys,
    upload: &PreKeyUpload,
) -> Result<PreKeysVerified, VerifyError> {
    let id = identity_key(identity)?;
    if let Some(k) = &upload.signed_prekey {
        signed_prekey(&id, k)?;
    }
    if let Some(k) = &upload.last_resort_kem_prekey {
        kem_prekey(&id, k)?;
    }
    for k in &upload.one_time_kem_prekeys {
        kem_prekey(&id, k)?;
    }
    for k in &upload.one_time_prekeys {
        spider_crypto::keys::OneTimePreKeyPublic::new(PreKeyId(k.id.0), &k.public.0)
            .map_err(|_| VerifyError::BadKey)?;
    }
    Ok(PreKeysVerified(()))
}

/// Checks an auth signature bound to this connection: relay name, TLS
/// exporter value and challenge (docs/protocol.md §6.1).
pub(crate) fn auth(
    identity: &IdentityKeys,
    relay_name: &str,
    exporter: &[u8; 32],
    challenge: &[u8; 32],
    sig: &[u8; 64],
) -> Result<AuthVerified, VerifyError> {
    identity_key(identity)?
        .verify_auth_challenge(relay_name, exporter, challenge, sig)
        .map_err(|_| VerifyError::BadSignature)?;
    Ok(AuthVerified(()))
}

/// Checks an existing device's approval of a new device's signing key.
pub(crate) fn device_approval(
    approver: &IdentityKeys,
    user: UserId,
    new_device: &IdentityKeys,
    sig: &[u8; 64],
) -> Result<ApprovalVerified, VerifyError> {
    identity_key(approver)?
        .verify_device_approval(user.as_bytes(), &new_device.signing.0, sig)
        .map_err(|_| VerifyError::BadSignature)?;
    Ok(ApprovalVerified(()))
}

/// Checks a room change's signature under its actor's identity.
#[allow(dead_code)] // rooms are served in a later step
pub(crate) fn room_change(
    actor: &IdentityKeys,
    change: &SignedRoomChange,
) -> Result<RoomChangeVerified, VerifyError> {
    identity_key(actor)?
        .verify_room_change(&change.change.signed_bytes(), &change.signature.0)
        .map_err(|_| VerifyError::BadSignature)?;
    Ok(RoomChangeVerified(()))
}

#[cfg(test)]
mod tests {
    use spider_crypto::keys::IdentityKeyPair;
    use spider_protocol::bytes::FixedBytes;

    use super::*;

    fn wire(k: &IdentityKeyPair) -> IdentityKeys {
        let b = k.public().to_bytes();
        IdentityKeys {
            signing: FixedBytes::try_from(&b[..32]).unwrap(),
            dh: FixedBytes::try_from(&b[32..64]).unwrap(),
            binding: FixedBytes::try_from(&b[64..]).unwrap(),
        }
    }

    #[test]
    fn auth_signature_is_bound_to_name_exporter_and_challenge() {
        let k = IdentityKeyPair::from_secret_bytes(&[1; 64]);
        let id = wire(&k);
        let sig = k
            .sign_auth_challenge("localhost", &[2; 32], &[3; 32])
            .unwrap();
        assert!(auth(&id, "localhost", &[2; 32], &[3; 32], &sig).is_ok());
        assert!(auth(&id, "localhosT", &[2; 32], &[3; 32], &sig).is_err());
        assert!(auth(&id, "localhost", &[4; 32], &[3; 32], &sig).is_err());
        assert!(auth(&id, "localhost", &[2; 32], &[4; 32], &sig).is_err());
        let other = wire(&IdentityKeyPair::from_secret_bytes(&[2; 64]));
        assert!(auth(&other, "localhost", &[2; 32], &[3; 32], &sig).is_err());
    }

    #[test]
    fn a_signature_for_one_purpose_does_not_verify_for_another() {
        let k = IdentityKeyPair::from_secret_bytes(&[1; 64]);
        let id = wire(&k);
        assert!(identity_binding(&id).is_ok());
        // The binding signature presented as a device approval fails.
        let binding = id.binding.0;
        assert!(device_approval(&id, UserId::from_bytes([0; 16]), &id, &binding).is_err());
        let approval = k.sign_device_approval(&[0; 16], &id.signing.0);
        assert!(device_approval(&id, UserId::from_bytes([0; 16]), &id, &approval).is_ok());
    }

    #[test]
    fn weak_keys_and_broken_bindings_are_refused() {
        let k = IdentityKeyPair::from_secret_bytes(&[1; 64]);
        let mut id = wire(&k);
        // The identity point (a small-order Ed25519 key).
        let mut weak = [0u8; 32];
        weak[0] = 1;
        id.signing = FixedBytes(weak);
        assert_eq!(identity_binding(&id).unwrap_err(), VerifyError::BadKey);
        let mut id = wire(&k);
        id.binding.0[0] ^= 1;
        assert_eq!(identity_binding(&id).unwrap_err(), VerifyError::BadKey);
    }
}
