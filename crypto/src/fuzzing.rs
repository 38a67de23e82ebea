//! Entry points for cargo-fuzz targets, one per parser of untrusted bytes, so
//! that each target is three lines:
//!
//! ```text
//! #![no_main]
//! libfuzzer_sys::fuzz_target!(|data: &[u8]| spider_crypto::fuzzing::prekey_message(data));
//! ```
//!
//! Each decodes, and on success re-encodes and checks the round trip, which
//! panics (a fuzz finding) only if the codec is not canonical.

use crate::keys::{
    IdentityPublicKey, KemPreKeyPair, OneTimePreKeyPair, PreKeyBundle, SignedPreKeyPair,
};
use crate::ratchet::RatchetMessage;
use crate::session::{Message, Session};
use crate::x3dh::PreKeyMessage;

/// [`PreKeyMessage`] decoding.
pub fn prekey_message(data: &[u8]) {
    if let Ok(m) = PreKeyMessage::try_from(data) {
        assert_eq!(
            m.to_bytes(),
            data,
            "PreKeyMessage encoding is not canonical"
        );
    }
}

/// [`RatchetMessage`] decoding.
pub fn ratchet_message(data: &[u8]) {
    if let Ok(m) = RatchetMessage::try_from(data) {
        assert_eq!(
            m.to_bytes(),
            data,
            "RatchetMessage encoding is not canonical"
        );
    }
}

/// [`Message`] decoding (dispatch on the type byte).
pub fn message(data: &[u8]) {
    if let Ok(m) = Message::try_from(data) {
        assert_eq!(m.to_bytes(), data, "Message encoding is not canonical");
    }
}

/// [`PreKeyBundle`] decoding (and signature checks, which must not panic).
pub fn prekey_bundle(data: &[u8]) {
    if let Ok(b) = PreKeyBundle::try_from(data) {
        assert_eq!(b.to_bytes(), data, "PreKeyBundle encoding is not canonical");
        let _ = b.verify();
    }
}

/// [`IdentityPublicKey`] decoding.
pub fn identity_public_key(data: &[u8]) {
    if let Ok(k) = IdentityPublicKey::try_from(data) {
        assert_eq!(
            &k.to_bytes()[..],
            data,
            "IdentityPublicKey encoding is not canonical"
        );
    }
}

/// [`Session::from_bytes`] (local keystore data, still worth fuzzing).
pub fn session_state(data: &[u8]) {
    let _ = Session::from_bytes(data);
    let _ = crate::session::SessionRecord::from_bytes(data);
}

/// The keystore records of private prekeys
/// ([`SignedPreKeyPair::from_secret_bytes`] and its siblings).
pub fn prekey_records(data: &[u8]) {
    if let Ok(k) = SignedPreKeyPair::from_secret_bytes(data) {
        assert_eq!(&k.to_secret_bytes()[..], data);
    }
    if let Ok(k) = OneTimePreKeyPair::from_secret_bytes(data) {
        assert_eq!(&k.to_secret_bytes()[..], data);
    }
    if let Ok(k) = KemPreKeyPair::from_secret_bytes(data) {
        assert_eq!(&k.to_secret_bytes()[..], data);
    }
}
