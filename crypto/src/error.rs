//! Error types, one per operation (conventions §8).
//!
//! No `Display` text here carries key bytes, plaintext or user ids: at most a
//! message type byte, a length or a limit, which are already public on the wire.

use thiserror::Error;

/// A primitive refused its input (see [`crate::primitives`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PrimitiveError {
    /// An X25519 exchange gave the all-zero output: the peer's key is of low
    /// order, so the result is not contributory (RFC 7748 §6.1).
    #[error("X25519 result is not contributory (low-order public key)")]
    NonContributory,
    /// The AEAD refused the ciphertext (wrong key, nonce, associated data or a
    /// modified ciphertext), or the input was too long to seal.
    #[error("AEAD authentication failed")]
    Aead,
    /// An Ed25519 signature did not verify under `verify_strict`, or the key or
    /// signature bytes were malformed.
    #[error("signature verification failed")]
    Signature,
    /// HKDF was asked for more than 255 blocks of output.
    #[error("HKDF output length too large")]
    KdfLength,
}

/// Decoding untrusted bytes failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than the fixed part of the format.
    #[error("input too short: {len} bytes")]
    TooShort {
        /// Length of the input.
        len: usize,
    },
    /// More bytes than the format's maximum length.
    #[error("input too long: {len} bytes, at most {max}")]
    TooLong {
        /// Length of the input.
        len: usize,
        /// The format's maximum.
        max: usize,
    },
    /// Input of a fixed-size format had the wrong length.
    #[error("wrong length: {len} bytes, expected {expected}")]
    WrongLength {
        /// Length of the input.
        len: usize,
        /// The format's size.
        expected: usize,
    },
    /// The version byte is not one this build understands.
    #[error("unsupported version {0}")]
    UnsupportedVersion(u8),
    /// The message type byte names another kind of message.
    #[error("unexpected message type {found:#04x}, expected {expected:#04x}")]
    WrongMessageType {
        /// The type this decoder accepts.
        expected: u8,
        /// The type found in the input.
        found: u8,
    },
    /// The message type byte is unknown.
    #[error("unknown message type {0:#04x}")]
    UnknownMessageType(u8),
    /// An Ed25519 public key is not a valid point, or is of small order.
    #[error("invalid Ed25519 public key")]
    InvalidSigningKey,
    /// An X25519 public key is of low order (including all zeros).
    #[error("low-order X25519 public key")]
    LowOrderKey,
    /// An ML-KEM-768 encapsulation key failed the FIPS 203 modulus check.
    #[error("invalid ML-KEM encapsulation key")]
    InvalidKemKey,
    /// A flag byte was neither 0 nor 1, or a field that must be zero was not.
    #[error("invalid flag or reserved field")]
    InvalidFlag,
    /// The identity binding signature (X25519 key signed by the Ed25519 key)
    /// did not verify.
    #[error("identity binding signature does not verify")]
    BadIdentityBinding,
    /// Serialized local state is corrupt.
    #[error("corrupt serialized state")]
    CorruptState,
}

/// A signature check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The signature does not verify for this key, label and payload.
    #[error("signature does not verify")]
    Invalid,
    /// A length-prefixed field is too long to encode.
    #[error("signed field too long")]
    FieldTooLong,
}

/// Verifying a prekey bundle failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The bundle bytes are malformed.
    #[error("malformed bundle: {0}")]
    Decode(#[from] DecodeError),
    /// The signed X25519 prekey's signature does not verify.
    #[error("signed prekey signature does not verify")]
    SignedPreKeySignature,
    /// The signed ML-KEM prekey's signature does not verify.
    #[error("KEM prekey signature does not verify")]
    KemPreKeySignature,
}

/// Starting a session (PQXDH initiator side) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// A Diffie-Hellman result was not contributory: some key in the bundle is
    /// of low order.
    #[error("non-contributory key agreement")]
    NonContributory,
    /// The ML-KEM encapsulation key in the bundle is invalid.
    #[error("invalid KEM prekey")]
    InvalidKemKey,
}

/// Accepting a first message (PQXDH responder side) failed. Nothing is
/// consumed on any of these errors.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// The signed prekey the message names is not (or no longer) held.
    #[error("unknown signed prekey")]
    UnknownSignedPreKey,
    /// The KEM prekey the message names is not (or no longer) held.
    #[error("unknown KEM prekey")]
    UnknownKemPreKey,
    /// The one-time prekey the message names is not (or no longer) held: it was
    /// used already (a replay) or never existed.
    #[error("unknown or already used one-time prekey")]
    UnknownOneTimePreKey,
    /// This first message (its ephemeral key) was accepted before.
    #[error("replayed first message")]
    Replayed,
    /// A Diffie-Hellman result was not contributory.
    #[error("non-contributory key agreement")]
    NonContributory,
    /// The first ratchet message inside did not decrypt.
    #[error("first message does not decrypt: {0}")]
    Decrypt(#[from] DecryptError),
    /// The key store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Encrypting a message failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EncryptError {
    /// The plaintext exceeds [`crate::ratchet::MAX_PLAINTEXT_LEN`].
    #[error("plaintext too long: {len} bytes")]
    PlaintextTooLong {
        /// Plaintext length.
        len: usize,
    },
    /// This session cannot send yet (a responder session before any message,
    /// which cannot happen through the public API) or the sending chain is
    /// exhausted (2^32 messages without a reply).
    #[error("sending chain unavailable or exhausted")]
    ChainUnavailable,
}

/// Decrypting a message failed. The session is left exactly as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecryptError {
    /// The bytes are malformed.
    #[error("malformed message: {0}")]
    Decode(#[from] DecodeError),
    /// The message was already decrypted (or its skipped key expired).
    #[error("duplicate or expired message")]
    Duplicate,
    /// Decrypting would skip more than [`crate::ratchet::MAX_SKIP`] message
    /// keys in one chain.
    #[error("message skips too far ahead")]
    TooFarAhead,
    /// The header's ratchet key is of low order.
    #[error("non-contributory ratchet key")]
    NonContributory,
    /// Authentication failed: wrong key, wrong associated data, or tampering.
    #[error("authentication failed")]
    Authentication,
    /// A first message that does not belong to this session (different sender
    /// identity or ephemeral key).
    #[error("first message belongs to another session")]
    WrongSession,
}

/// A key or session store failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed; the text comes from the backend and must not carry
    /// secrets.
    #[error("store backend: {0}")]
    Backend(String),
    /// A stored record could not be decoded.
    #[error("corrupt stored record")]
    Corrupt,
}

/// Starting a session through the stores failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StartError {
    /// The bundle's identity differs from the one stored for this device.
    #[error("identity differs from the stored one")]
    UntrustedIdentity,
    /// The handshake failed.
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Sending through the stores failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SendError {
    /// There is no session with this device: fetch a bundle and start one.
    #[error("no session with this device")]
    NoSession,
    /// Encryption failed.
    #[error("encrypt: {0}")]
    Encrypt(#[from] EncryptError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Receiving through the stores failed. Stores are unchanged, except after a
/// store failure.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ReceiveError {
    /// A ratchet message from a device with no session.
    #[error("no session with this device")]
    NoSession,
    /// The sender's identity differs from the one stored for this device.
    #[error("identity differs from the stored one")]
    UntrustedIdentity,
    /// A first message was refused.
    #[error("accept: {0}")]
    Accept(#[from] AcceptError),
    /// A message of an existing session did not decrypt.
    #[error("decrypt: {0}")]
    Decrypt(#[from] DecryptError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}
