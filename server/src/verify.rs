//! Every signature check the relay makes, and nothing else.
//!
//! Each check is Ed25519 `verify_strict` over `label || 0x00 || payload`,
//! with the label from `spider_crypto::domain` (spelled out here until this
//! module moves to spider-crypto's typed API). A successful check returns a
//! zero-sized proof token; the code that stores keys or authenticates a
//! device takes the token, so "it was checked" is enforced by the compiler.
//!
//! | check            | label                               | payload                                   |
//! |------------------|-------------------------------------|-------------------------------------------|
//! | identity binding | `spider/v1/sig/identity-binding`    | X25519 identity public (32)               |
//! | signed prekey    | `spider/v1/sig/signed-prekey`       | id (u32 BE) ‖ public (32)                 |
//! | KEM prekey       | `spider/v1/sig/kem-prekey`          | id (u32 BE) ‖ public (1184)               |
//! | auth challenge   | `spider/v1/sig/auth-challenge`      | name len (u8) ‖ relay name ‖ exporter (32) ‖ challenge (32) |
//! | room change      | `spider/v1/sig/room-change`         | `RoomChange::signed_bytes()`              |
//! | device approval  | `spider/v1/sig/device-approval`     | user id (16) ‖ new signing key (32)       |

use ed25519_dalek::{Signature, VerifyingKey};
use spider_protocol::ids::UserId;
use spider_protocol::keys::{Ed25519Public, IdentityKeys, KemPreKey, PreKeyUpload, SignedPreKey};
use spider_protocol::message::SignedRoomChange;

/// Identity binding label (`spider_crypto::domain::SIG_IDENTITY_BINDING`).
pub(crate) const SIG_IDENTITY_BINDING: &[u8] = b"spider/v1/sig/identity-binding";
/// Signed prekey label (`spider_crypto::domain::SIG_SIGNED_PREKEY`).
pub(crate) const SIG_SIGNED_PREKEY: &[u8] = b"spider/v1/sig/signed-prekey";
/// KEM prekey label (`spider_crypto::domain::SIG_KEM_PREKEY`).
pub(crate) const SIG_KEM_PREKEY: &[u8] = b"spider/v1/sig/kem-prekey";
/// Auth challenge label (`spider_crypto::domain::SIG_AUTH_CHALLENGE`).
pub(crate) const SIG_AUTH_CHALLENGE: &[u8] = b"spider/v1/sig/auth-challenge";
/// Room change label (`spider_crypto::domain::SIG_ROOM_CHANGE`).
#[allow(dead_code)] // rooms are the next issue
pub(crate) const SIG_ROOM_CHANGE: &[u8] = b"spider/v1/sig/room-change";
/// Device approval label. Not yet in `spider_crypto::domain` (reported).
pub(crate) const SIG_DEVICE_APPROVAL: &[u8] = b"spider/v1/sig/device-approval";

/// A signature check failed. Deliberately says nothing about which key or
/// which bytes: the peer learns only `BAD_SIGNATURE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum VerifyError {
    /// The public key is not a valid Ed25519 point (or is a weak one).
    #[error("invalid public key")]
    BadKey,
    /// The signature does not verify under `verify_strict`.
    #[error("bad signature")]
    BadSignature,
    /// The relay name is too long to be length-prefixed with one byte.
    #[error("relay name too long")]
    NameTooLong,
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
#[allow(dead_code)] // rooms are the next issue
pub(crate) struct RoomChangeVerified(());

fn check(
    key: &Ed25519Public,
    label: &[u8],
    parts: &[&[u8]],
    sig: &[u8; 64],
) -> Result<(), VerifyError> {
    let key = VerifyingKey::from_bytes(&key.0).map_err(|_| VerifyError::BadKey)?;
    // verify_strict also refuses small-order keys; refuse them up front too
    // so that a weak key is reported as such.
    if key.is_weak() {
        return Err(VerifyError::BadKey);
    }
    let len = label.len() + 1 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(label);
    msg.push(0);
    for p in parts {
        msg.extend_from_slice(p);
    }
    key.verify_strict(&msg, &Signature::from_bytes(sig))
        .map_err(|_| VerifyError::BadSignature)
}

/// Checks `identity.binding`: the signing key over the X25519 key.
pub(crate) fn identity_binding(identity: &IdentityKeys) -> Result<IdentityVerified, VerifyError> {
    check(
        &identity.signing,
        SIG_IDENTITY_BINDING,
        &[&identity.dh.0],
        &identity.binding.0,
    )?;
    Ok(IdentityVerified(()))
}

fn signed_prekey(signing: &Ed25519Public, k: &SignedPreKey) -> Result<(), VerifyError> {
    check(
        signing,
        SIG_SIGNED_PREKEY,
        &[&k.id.0.to_be_bytes(), &k.public.0],
        &k.signature.0,
    )
}

fn kem_prekey(signing: &Ed25519Public, k: &KemPreKey) -> Result<(), VerifyError> {
    check(
        signing,
        SIG_KEM_PREKEY,
        &[&k.id.0.to_be_bytes(), &k.public.0],
        &k.signature.0,
    )
}

/// Checks every signature in a prekey upload: the signed prekey, the
/// last-resort KEM prekey and each one-time KEM prekey. One-time X25519
/// prekeys are unsigned (X3DH).
pub(crate) fn prekey_upload(
    _identity: IdentityVerified,
    signing: &Ed25519Public,
    upload: &PreKeyUpload,
) -> Result<PreKeysVerified, VerifyError> {
    if let Some(k) = &upload.signed_prekey {
        signed_prekey(signing, k)?;
    }
    if let Some(k) = &upload.last_resort_kem_prekey {
        kem_prekey(signing, k)?;
    }
    for k in &upload.one_time_kem_prekeys {
        kem_prekey(signing, k)?;
    }
    Ok(PreKeysVerified(()))
}

/// Checks an auth signature bound to this connection: relay name, TLS
/// exporter value and challenge.
pub(crate) fn auth(
    signing: &Ed25519Public,
    relay_name: &str,
    exporter: &[u8; 32],
    challenge: &[u8; 32],
    sig: &[u8; 64],
) -> Result<AuthVerified, VerifyError> {
    let len = u8::try_from(relay_name.len()).map_err(|_| VerifyError::NameTooLong)?;
    check(
        signing,
        SIG_AUTH_CHALLENGE,
        &[&[len], relay_name.as_bytes(), exporter, challenge],
        sig,
    )?;
    Ok(AuthVerified(()))
}

/// Checks an existing device's approval of a new device's signing key.
pub(crate) fn device_approval(
    approver: &Ed25519Public,
    user: UserId,
    new_signing: &Ed25519Public,
    sig: &[u8; 64],
) -> Result<ApprovalVerified, VerifyError> {
    check(
        approver,
        SIG_DEVICE_APPROVAL,
        &[user.as_bytes(), &new_signing.0],
        sig,
    )?;
    Ok(ApprovalVerified(()))
}

/// Checks a room change's signature under its actor's signing key. (Rooms
/// are not served yet; the check is here so that they will use it.)
#[allow(dead_code)] // rooms are the next issue
pub(crate) fn room_change(
    actor: &Ed25519Public,
    change: &SignedRoomChange,
) -> Result<RoomChangeVerified, VerifyError> {
    check(
        actor,
        SIG_ROOM_CHANGE,
        &[&change.change.signed_bytes()],
        &change.signature.0,
    )?;
    Ok(RoomChangeVerified(()))
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};
    use spider_protocol::bytes::FixedBytes;

    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn sign(k: &SigningKey, label: &[u8], parts: &[&[u8]]) -> [u8; 64] {
        let mut m = label.to_vec();
        m.push(0);
        for p in parts {
            m.extend_from_slice(p);
        }
        k.sign(&m).to_bytes()
    }

    #[test]
    fn auth_signature_is_bound_to_name_exporter_and_challenge() {
        let k = key(1);
        let pubk = FixedBytes(k.verifying_key().to_bytes());
        let sig = sign(
            &k,
            SIG_AUTH_CHALLENGE,
            &[&[9], b"localhost", &[2; 32], &[3; 32]],
        );
        assert!(auth(&pubk, "localhost", &[2; 32], &[3; 32], &sig).is_ok());
        assert!(auth(&pubk, "localhosT", &[2; 32], &[3; 32], &sig).is_err());
        assert!(auth(&pubk, "localhost", &[4; 32], &[3; 32], &sig).is_err());
        assert!(auth(&pubk, "localhost", &[2; 32], &[4; 32], &sig).is_err());
        let other = FixedBytes(key(2).verifying_key().to_bytes());
        assert!(auth(&other, "localhost", &[2; 32], &[3; 32], &sig).is_err());
    }

    #[test]
    fn a_signature_for_one_purpose_does_not_verify_for_another() {
        let k = key(1);
        let pubk = FixedBytes(k.verifying_key().to_bytes());
        let dh = [5u8; 32];
        let binding = sign(&k, SIG_IDENTITY_BINDING, &[&dh]);
        let id = IdentityKeys {
            signing: pubk,
            dh: FixedBytes(dh),
            binding: FixedBytes(binding),
        };
        assert!(identity_binding(&id).is_ok());
        // The same signature presented as a device approval fails.
        assert!(device_approval(&pubk, UserId::from_bytes([0; 16]), &pubk, &binding).is_err());
    }

    #[test]
    fn weak_and_invalid_keys_are_refused() {
        // The identity point (a small-order key).
        let mut weak = [0u8; 32];
        weak[0] = 1;
        assert_eq!(
            auth(&FixedBytes(weak), "x", &[0; 32], &[0; 32], &[0; 64]).unwrap_err(),
            VerifyError::BadKey
        );
    }
}
