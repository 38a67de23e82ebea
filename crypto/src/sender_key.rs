//! Sender Keys: one encryption per room message, whatever the room's size.
//!
//! This follows Signal's Sender Keys (libsignal `rust/protocol/src/sender_keys.rs`
//! and `group_cipher.rs`), with ChaCha20-Poly1305 in place of AES-CBC and
//! explicit version/type bytes on every payload (deviations are listed in
//! SECURITY.md).
//!
//! Each member device owns one *chain* per room ([`OwnSenderKey`]): a random
//! chain id, a 32-byte chain key `CK` and a fresh Ed25519 signing key that is
//! not the identity key. Message `i` is protected with keys derived from `CK_i`:
//!
//! ```text
//! MK_i        = HMAC-SHA256(CK_i, 0x01)
//! CK_{i+1}    = HMAC-SHA256(CK_i, 0x02)
//! key || nonce = HKDF-SHA256(salt = 32 zero bytes, IKM = MK_i,
//!                            info = KDF_SENDER_KEY_MESSAGE_KEYS)[0..44]
//! ciphertext  = ChaCha20-Poly1305(key, nonce, AD = header, plaintext)
//! signature   = Ed25519(signing key, SIG_SENDER_KEY_MESSAGE || 0x00 || header || ciphertext)
//! ```
//!
//! The owner hands `(chain id, iteration, CK, signing public key)` to every
//! other member device in a [`SenderKeyDistributionMessage`], *inside the
//! authenticated 1:1 Double Ratchet sessions*. Each receiving device keeps a
//! [`SenderKeyRecord`] per (room, sender device) and checks every room message
//! with [`SenderKeyRecord::decrypt`]: signature first, then iteration bounds,
//! then AEAD; nothing is written to the record unless all of them pass.
//!
//! On every membership removal the owner calls [`OwnSenderKey::rotate`] and
//! sends the new distribution message to the remaining members only; the
//! removed member holds the old chain alone and can decrypt nothing sent after.
//!
//! # Walkthrough
//!
//! ```
//! use spider_crypto::sender_key::{
//!     DistributionId, OwnSenderKey, SenderKeyDistributionMessage, SenderKeyMessage,
//!     SenderKeyRecord,
//! };
//! # use rand_chacha::ChaCha20Rng; use rand_core::SeedableRng;
//! # let mut rng = ChaCha20Rng::seed_from_u64(1); // a real caller passes an OS-backed CryptoRng
//! let room = DistributionId::from_bytes([7; 16]);
//!
//! // Alice's device: its sending chain for this room.
//! let mut alice = OwnSenderKey::new(room, &mut rng);
//! // Sent to Bob over the 1:1 session (Double Ratchet), never in clear.
//! let skdm_bytes = alice.distribution_message().to_bytes();
//!
//! // Bob's device: parse only what came out of an authenticated 1:1 session.
//! let skdm = SenderKeyDistributionMessage::try_from(skdm_bytes.as_slice())?;
//! let mut from_alice = SenderKeyRecord::new(room);
//! from_alice.process_distribution(&skdm)?;
//!
//! // One ciphertext, fanned out by the relay to every member.
//! let wire = alice.encrypt(b"hello room")?.to_bytes();
//! let msg = SenderKeyMessage::try_from(wire.as_slice())?;
//! assert_eq!(from_alice.decrypt(&msg)?, b"hello room");
//! // A replay is refused.
//! assert!(from_alice.decrypt(&msg).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # `SenderKeyMessage` layout (type `0x10`)
//!
//! All integers are big-endian. The whole message is at most
//! [`MAX_MESSAGE_LEN`] bytes.
//!
//! | Offset | Length | Field | Notes |
//! |-------:|-------:|-------|-------|
//! | 0 | 1 | version | [`WIRE_VERSION`] (`0x01`) |
//! | 1 | 1 | type | [`TYPE_SENDER_KEY_MESSAGE`] (`0x10`) |
//! | 2 | 16 | distribution id | the room's [`DistributionId`] |
//! | 18 | 4 | chain id | [`ChainId`], `u32` |
//! | 22 | 4 | iteration | index of the message key in the chain, `u32` |
//! | 26 | n + 16 | ciphertext | ChaCha20-Poly1305 output, tag last; `n ≤` [`MAX_PLAINTEXT_LEN`] |
//! | 42 + n | 64 | signature | Ed25519 over `SIG_SENDER_KEY_MESSAGE \|\| 0x00 \|\| bytes[0 .. 26 + n + 16]` |
//!
//! The 26-byte header (offsets 0..26) is also the AEAD's associated data.
//!
//! # `SenderKeyDistributionMessage` layout (type `0x11`)
//!
//! Exactly [`DISTRIBUTION_MESSAGE_LEN`] (90) bytes; it carries a secret chain
//! key, so it must only ever travel inside an end-to-end encrypted 1:1 session.
//!
//! | Offset | Length | Field | Notes |
//! |-------:|-------:|-------|-------|
//! | 0 | 1 | version | [`WIRE_VERSION`] (`0x01`) |
//! | 1 | 1 | type | [`TYPE_SENDER_KEY_DISTRIBUTION`] (`0x11`) |
//! | 2 | 16 | distribution id | the room's [`DistributionId`] |
//! | 18 | 4 | chain id | [`ChainId`], `u32` |
//! | 22 | 4 | iteration | iteration of the chain key below, `u32` |
//! | 26 | 32 | chain key | `CK_iteration` (secret) |
//! | 58 | 32 | signing public key | Ed25519 public key of the chain (not weak, canonical) |

use core::fmt;
use std::collections::VecDeque;

use chacha20poly1305::{
    ChaCha20Poly1305, KeyInit,
    aead::{Aead, Payload},
};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::domain::{KDF_SENDER_KEY_MESSAGE_KEYS, SIG_SENDER_KEY_MESSAGE};
use crate::{kdf, primitives};

/// Version byte that opens every Sender Key payload.
pub const WIRE_VERSION: u8 = crate::domain::WIRE_VERSION;
/// Type byte of a [`SenderKeyMessage`]. The ratchet messages of the 1:1
/// sessions use other values, so one protocol's bytes never parse as another's.
pub const TYPE_SENDER_KEY_MESSAGE: u8 = crate::domain::message_type::SENDER_KEY_MESSAGE;
/// Type byte of a [`SenderKeyDistributionMessage`].
pub const TYPE_SENDER_KEY_DISTRIBUTION: u8 = crate::domain::message_type::SENDER_KEY_DISTRIBUTION;

/// Largest forward jump in iterations that one message may cause.
///
/// Reason: reaching iteration `i` costs `2·(i − next)` HMACs, so the bound caps
/// the work a single message can demand (25 000 steps ≈ a few milliseconds).
/// The signature is checked first, so only a member holding the chain's
/// signing key can ask for the work at all. Same value as libsignal's
/// `MAX_FORWARD_JUMPS`, so that a sender that lost many messages to an
/// unreachable recipient still gets through.
pub const MAX_JUMP: u32 = 25_000;

/// Most skipped message keys kept per chain; the oldest are dropped first.
///
/// Reason: bounds the record's size (≈ 37 bytes each when stored) while
/// tolerating heavy reordering. Same value as libsignal's `MAX_MESSAGE_KEYS`.
pub const MAX_SKIPPED_KEYS: usize = 2_000;

/// Most chains kept per (room, sender device) record; the oldest is dropped.
///
/// Reason: after a rotation, messages sent on the previous chain may still be
/// in flight; keeping a few old chains lets them decrypt, while the bound keeps
/// the record small. Same value as libsignal's `MAX_SENDER_KEY_STATES`.
pub const MAX_CHAINS_PER_RECORD: usize = 5;

/// Largest room-message plaintext.
///
/// Reason: room messages carry text and attachment pointers; files travel as
/// blobs (see [`crate::attachment`]). 64 KiB keeps every ciphertext well
/// inside one relay frame.
pub const MAX_PLAINTEXT_LEN: usize = 64 * 1024;

/// Length of the header (version, type, distribution id, chain id, iteration).
pub const MESSAGE_HEADER_LEN: usize = 26;
/// Length of the Poly1305 tag at the end of the ciphertext.
pub const TAG_LEN: usize = 16;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Smallest well-formed [`SenderKeyMessage`] (empty plaintext).
pub const MIN_MESSAGE_LEN: usize = MESSAGE_HEADER_LEN + TAG_LEN + SIGNATURE_LEN;
/// Largest well-formed [`SenderKeyMessage`]; longer input is refused before
/// anything is allocated.
pub const MAX_MESSAGE_LEN: usize = MIN_MESSAGE_LEN + MAX_PLAINTEXT_LEN;
/// Exact length of a [`SenderKeyDistributionMessage`].
pub const DISTRIBUTION_MESSAGE_LEN: usize = 90;

/// Version of the serialized [`SenderKeyRecord`] and [`OwnSenderKey`] states.
pub const STATE_VERSION: u8 = 1;
/// Largest serialized state accepted by the `from_bytes` decoders.
///
/// Reason: a full record is [`MAX_CHAINS_PER_RECORD`] chains of
/// [`MAX_SKIPPED_KEYS`] keys of at most 37 bytes (≈ 370 KB); 1 MiB leaves
/// room without letting a corrupt store make us parse gigabytes.
pub const MAX_STATE_LEN: usize = 1024 * 1024;

// ---------------------------------------------------------------------------
// Identifiers
// ---------------------------------------------------------------------------

/// Identifies the room (group) a sender key belongs to: 16 opaque bytes,
/// chosen by the room's creator (for example at random).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DistributionId([u8; 16]);

impl DistributionId {
    /// Wraps 16 bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// Draws a fresh random id.
    pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The 16 bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Debug for DistributionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not a secret: it is sent in clear in every room message.
        write!(f, "DistributionId(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// Identifies one chain of one sender device in one room. Random, and
/// different from the previous chain's id after a [`OwnSenderKey::rotate`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct ChainId(u32);

impl ChainId {
    /// Wraps a raw chain id.
    pub const fn new(id: u32) -> Self {
        Self(id)
    }

    /// The raw value.
    pub const fn get(self) -> u32 {
        self.0
    }
}

// ---------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------

/// A chain key `CK_i`. Boxed so that moves never leave copies behind, and
/// wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop, Serialize, Deserialize)]
struct ChainKey(Box<[u8; 32]>);

/// A message key `MK_i` = HMAC(CK_i, 0x01), before expansion by HKDF.
#[derive(Clone, Zeroize, ZeroizeOnDrop, Serialize, Deserialize)]
struct MessageKey(Box<[u8; 32]>);

/// A chain's Ed25519 signing key, stored as its 32-byte secret seed.
///
/// Kept expanded in memory: rebuilding the key from the seed costs as much as
/// the signature itself, and it signs every room message. ed25519-dalek's
/// `SigningKey` wipes itself on drop (feature `zeroize`).
#[derive(Clone)]
struct SigningSeed(Box<SigningKey>);

impl ZeroizeOnDrop for SigningSeed {}

impl Serialize for SigningSeed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // The same encoding as a plain `[u8; 32]` seed.
        Zeroizing::new(self.0.to_bytes()).serialize(s)
    }
}

impl<'de> Deserialize<'de> for SigningSeed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let seed = Zeroizing::new(<[u8; 32]>::deserialize(d)?);
        Ok(Self(Box::new(SigningKey::from_bytes(&seed))))
    }
}

impl ChainKey {
    /// Sender Keys spec: message key seed = HMAC(CK, 0x01).
    fn message_key(&self) -> MessageKey {
        MessageKey(Box::new(*primitives::hmac_sha256(
            self.0.as_slice(),
            &[0x01],
        )))
    }

    /// Sender Keys spec: next chain key = HMAC(CK, 0x02).
    fn next(&self) -> ChainKey {
        ChainKey(Box::new(*primitives::hmac_sha256(
            self.0.as_slice(),
            &[0x02],
        )))
    }
}

/// The ChaCha20-Poly1305 key and nonce of one message.
struct AeadKeys {
    key: Zeroizing<[u8; 32]>,
    nonce: [u8; 12],
}

impl MessageKey {
    fn aead_keys(&self) -> AeadKeys {
        let okm = kdf::hkdf_fixed::<44>(
            &kdf::ZERO_SALT,
            self.0.as_slice(),
            KDF_SENDER_KEY_MESSAGE_KEYS,
        );
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&okm[..32]);
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&okm[32..44]);
        AeadKeys { key, nonce }
    }
}

impl AeadKeys {
    fn seal(&self, ad: &[u8], plaintext: &[u8]) -> Option<Vec<u8>> {
        let cipher = ChaCha20Poly1305::new(&(*self.key).into());
        cipher
            .encrypt(
                &self.nonce.into(),
                Payload {
                    msg: plaintext,
                    aad: ad,
                },
            )
            .ok()
    }

    fn open(&self, ad: &[u8], ciphertext: &[u8]) -> Option<Vec<u8>> {
        let cipher = ChaCha20Poly1305::new(&(*self.key).into());
        cipher
            .decrypt(
                &self.nonce.into(),
                Payload {
                    msg: ciphertext,
                    aad: ad,
                },
            )
            .ok()
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why bytes could not be parsed as a Sender Key payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input is shorter than the smallest payload of this type.
    #[error("sender key payload too short: {len} bytes")]
    TooShort {
        /// Length of the input.
        len: usize,
    },
    /// The input is longer than the largest payload of this type.
    #[error("sender key payload too long: {len} bytes")]
    TooLong {
        /// Length of the input.
        len: usize,
    },
    /// The version byte is not [`WIRE_VERSION`].
    #[error("unsupported sender key payload version {found:#04x}")]
    UnsupportedVersion {
        /// The version byte found.
        found: u8,
    },
    /// The type byte names another message (for example a distribution
    /// message where a room message was expected, or a 1:1 ratchet message).
    #[error("unexpected message type {found:#04x}, expected {expected:#04x}")]
    UnexpectedType {
        /// The type byte this parser accepts.
        expected: u8,
        /// The type byte found.
        found: u8,
    },
    /// The signing public key is not a canonical, non-weak Ed25519 point.
    #[error("invalid sender key signing public key")]
    InvalidSigningKey,
}

/// Why a room message could not be encrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncryptError {
    /// The plaintext is longer than [`MAX_PLAINTEXT_LEN`].
    #[error("room message plaintext too long: {len} bytes")]
    PlaintextTooLong {
        /// Length of the plaintext.
        len: usize,
    },
    /// The chain reached its last iteration; [`OwnSenderKey::rotate`] it.
    #[error("sender key chain exhausted, rotate it")]
    ChainExhausted,
    /// The AEAD refused to encrypt (cannot happen within the length limits).
    #[error("AEAD encryption failed")]
    Aead,
}

/// Why a room message could not be decrypted. In every case the record is
/// left exactly as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecryptError {
    /// The message belongs to another room than this record.
    #[error("room message for another distribution id")]
    WrongDistribution,
    /// No chain with this chain id is known: the distribution message was
    /// never received, or this device was removed before the rotation.
    #[error("unknown sender key chain")]
    UnknownChain,
    /// The signature does not verify under the chain's signing key (forged
    /// or tampered message).
    #[error("room message signature does not verify")]
    BadSignature,
    /// The iteration is more than [`MAX_JUMP`] past the next expected one.
    #[error("room message iteration too far ahead ({jump} steps)")]
    TooFarAhead {
        /// How many iterations the message would skip.
        jump: u32,
    },
    /// The message key of this iteration was already used (a duplicate or
    /// replay) or was dropped from the bounded skipped-key store.
    #[error("room message already received or too old")]
    DuplicateOrTooOld,
    /// The chain cannot advance past `u32::MAX`.
    #[error("sender key chain exhausted")]
    ChainExhausted,
    /// The signature verified but the AEAD did not (a buggy or malicious
    /// sender).
    #[error("room message failed to decrypt")]
    Aead,
}

/// Why a distribution message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessDistributionError {
    /// The distribution message is for another room than this record.
    #[error("distribution message for another distribution id")]
    WrongDistribution,
    /// A chain with this id is already known under another signing key.
    #[error("chain id already known with another signing key")]
    ChainIdConflict,
}

/// Why stored Sender Key state could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateDecodeError {
    /// Longer than [`MAX_STATE_LEN`].
    #[error("sender key state too long: {len} bytes")]
    TooLong {
        /// Length of the input.
        len: usize,
    },
    /// Not a postcard encoding of the expected state, or trailing bytes.
    #[error("malformed sender key state")]
    Malformed,
    /// The state's version is not [`STATE_VERSION`].
    #[error("unsupported sender key state version {found}")]
    UnsupportedVersion {
        /// The version found.
        found: u8,
    },
    /// The state breaks an invariant (too many chains or skipped keys,
    /// duplicate chain ids, or an invalid signing key).
    #[error("sender key state violates an invariant")]
    Invalid,
}

// ---------------------------------------------------------------------------
// Wire messages
// ---------------------------------------------------------------------------

fn check_version_and_type(input: &[u8], expected: u8) -> Result<(), DecodeError> {
    // Version first (conventions §7), then the type: a payload of one protocol
    // is refused where another is expected.
    match input {
        [] | [_] => Err(DecodeError::TooShort { len: input.len() }),
        [v, _, ..] if *v != WIRE_VERSION => Err(DecodeError::UnsupportedVersion { found: *v }),
        [_, t, ..] if *t != expected => Err(DecodeError::UnexpectedType {
            expected,
            found: *t,
        }),
        _ => Ok(()),
    }
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_be_bytes(b)
}

fn parse_signing_public(bytes: &[u8; 32]) -> Result<VerifyingKey, DecodeError> {
    let key = VerifyingKey::from_bytes(bytes).map_err(|_| DecodeError::InvalidSigningKey)?;
    // A small-order key would let anyone forge "valid" signatures under
    // non-strict verification; refuse it up front.
    if key.is_weak() {
        return Err(DecodeError::InvalidSigningKey);
    }
    Ok(key)
}

/// A room message: one ciphertext for every member, signed by the sender's
/// chain. See the module docs for the byte layout.
#[derive(Clone, PartialEq, Eq)]
pub struct SenderKeyMessage {
    distribution_id: DistributionId,
    chain_id: ChainId,
    iteration: u32,
    ciphertext: Vec<u8>,
    signature: [u8; SIGNATURE_LEN],
}

impl SenderKeyMessage {
    /// The room this message belongs to.
    pub fn distribution_id(&self) -> DistributionId {
        self.distribution_id
    }

    /// The chain it was sent on.
    pub fn chain_id(&self) -> ChainId {
        self.chain_id
    }

    /// Its iteration in that chain.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// The AEAD ciphertext (with its tag).
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }

    /// The 26-byte header, which is also the AEAD's associated data.
    pub fn header(&self) -> [u8; MESSAGE_HEADER_LEN] {
        header_bytes(self.distribution_id, self.chain_id, self.iteration)
    }

    /// The exact bytes the signature covers:
    /// `SIG_SENDER_KEY_MESSAGE || 0x00 || header || ciphertext`.
    pub fn signed_bytes(&self) -> Vec<u8> {
        signed_bytes(&self.header(), &self.ciphertext)
    }

    /// The wire encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(MESSAGE_HEADER_LEN + self.ciphertext.len() + SIGNATURE_LEN);
        out.extend_from_slice(&self.header());
        out.extend_from_slice(&self.ciphertext);
        out.extend_from_slice(&self.signature);
        out
    }
}

impl fmt::Debug for SenderKeyMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SenderKeyMessage")
            .field("distribution_id", &self.distribution_id)
            .field("chain_id", &self.chain_id)
            .field("iteration", &self.iteration)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

fn header_bytes(
    distribution_id: DistributionId,
    chain_id: ChainId,
    iteration: u32,
) -> [u8; MESSAGE_HEADER_LEN] {
    let mut h = [0u8; MESSAGE_HEADER_LEN];
    h[0] = WIRE_VERSION;
    h[1] = TYPE_SENDER_KEY_MESSAGE;
    h[2..18].copy_from_slice(distribution_id.as_bytes());
    h[18..22].copy_from_slice(&chain_id.get().to_be_bytes());
    h[22..26].copy_from_slice(&iteration.to_be_bytes());
    h
}

fn signed_bytes(header: &[u8], ciphertext: &[u8]) -> Vec<u8> {
    let mut m =
        Vec::with_capacity(SIG_SENDER_KEY_MESSAGE.len() + 1 + header.len() + ciphertext.len());
    m.extend_from_slice(SIG_SENDER_KEY_MESSAGE);
    m.push(0x00);
    m.extend_from_slice(header);
    m.extend_from_slice(ciphertext);
    m
}

impl TryFrom<&[u8]> for SenderKeyMessage {
    type Error = DecodeError;

    fn try_from(input: &[u8]) -> Result<Self, DecodeError> {
        check_version_and_type(input, TYPE_SENDER_KEY_MESSAGE)?;
        let len = input.len();
        if len < MIN_MESSAGE_LEN {
            return Err(DecodeError::TooShort { len });
        }
        // Refuse before allocating anything for the ciphertext.
        if len > MAX_MESSAGE_LEN {
            return Err(DecodeError::TooLong { len });
        }
        let mut dist = [0u8; 16];
        dist.copy_from_slice(&input[2..18]);
        let sig_at = len - SIGNATURE_LEN;
        let mut signature = [0u8; SIGNATURE_LEN];
        signature.copy_from_slice(&input[sig_at..]);
        Ok(Self {
            distribution_id: DistributionId(dist),
            chain_id: ChainId(read_u32(input, 18)),
            iteration: read_u32(input, 22),
            ciphertext: input[MESSAGE_HEADER_LEN..sig_at].to_vec(),
            signature,
        })
    }
}

/// Hands a sender's chain to another member device: `(distribution id, chain
/// id, iteration, chain key, signing public key)`.
///
/// **It carries a secret chain key.** Send it only inside an end-to-end
/// encrypted 1:1 session, and accept it only from the authenticated 1:1
/// session of the device that owns the chain: whoever can inject one can
/// impersonate that device in the room. The bytes themselves are not signed.
#[derive(Clone)]
pub struct SenderKeyDistributionMessage {
    distribution_id: DistributionId,
    chain_id: ChainId,
    iteration: u32,
    chain_key: ChainKey,
    signing_public: VerifyingKey,
}

// The chain key wipes itself on drop.
impl ZeroizeOnDrop for SenderKeyDistributionMessage {}

impl SenderKeyDistributionMessage {
    /// The room.
    pub fn distribution_id(&self) -> DistributionId {
        self.distribution_id
    }

    /// The chain handed out.
    pub fn chain_id(&self) -> ChainId {
        self.chain_id
    }

    /// The iteration of the chain key carried.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// The chain's Ed25519 signing public key.
    pub fn signing_public(&self) -> [u8; 32] {
        self.signing_public.to_bytes()
    }

    /// The wire encoding, in a buffer wiped on drop (it holds the chain key).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(DISTRIBUTION_MESSAGE_LEN));
        out.push(WIRE_VERSION);
        out.push(TYPE_SENDER_KEY_DISTRIBUTION);
        out.extend_from_slice(self.distribution_id.as_bytes());
        out.extend_from_slice(&self.chain_id.get().to_be_bytes());
        out.extend_from_slice(&self.iteration.to_be_bytes());
        out.extend_from_slice(self.chain_key.0.as_slice());
        out.extend_from_slice(self.signing_public.as_bytes());
        out
    }
}

impl fmt::Debug for SenderKeyDistributionMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SenderKeyDistributionMessage")
            .field("distribution_id", &self.distribution_id)
            .field("chain_id", &self.chain_id)
            .field("iteration", &self.iteration)
            .field("chain_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl TryFrom<&[u8]> for SenderKeyDistributionMessage {
    type Error = DecodeError;

    fn try_from(input: &[u8]) -> Result<Self, DecodeError> {
        check_version_and_type(input, TYPE_SENDER_KEY_DISTRIBUTION)?;
        let len = input.len();
        if len < DISTRIBUTION_MESSAGE_LEN {
            return Err(DecodeError::TooShort { len });
        }
        if len > DISTRIBUTION_MESSAGE_LEN {
            return Err(DecodeError::TooLong { len });
        }
        let mut dist = [0u8; 16];
        dist.copy_from_slice(&input[2..18]);
        let mut ck = ChainKey(Box::new([0u8; 32]));
        ck.0.copy_from_slice(&input[26..58]);
        let mut public = [0u8; 32];
        public.copy_from_slice(&input[58..90]);
        Ok(Self {
            distribution_id: DistributionId(dist),
            chain_id: ChainId(read_u32(input, 18)),
            iteration: read_u32(input, 22),
            chain_key: ck,
            signing_public: parse_signing_public(&public)?,
        })
    }
}

// ---------------------------------------------------------------------------
// Sending side
// ---------------------------------------------------------------------------

/// This device's sending chain for one room.
///
/// Serializable (with [`OwnSenderKey::to_bytes`]) so the client can persist
/// it; every secret is boxed and wiped on drop.
#[derive(Serialize, Deserialize)]
pub struct OwnSenderKey {
    version: u8,
    distribution_id: DistributionId,
    chain_id: ChainId,
    /// Iteration of `chain_key`, i.e. of the next message to send.
    iteration: u32,
    chain_key: ChainKey,
    signing_seed: SigningSeed,
    signing_public: [u8; 32],
}

// Every secret field (chain key, signing seed) wipes itself on drop.
impl ZeroizeOnDrop for OwnSenderKey {}

/// What [`OwnSenderKey::encrypt_traced`] exposes for the test vectors:
/// secrets, wiped on drop, never to be used outside the vector generator.
#[doc(hidden)]
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct EncryptTrace {
    pub chain_key: [u8; 32],
    pub message_key: [u8; 32],
    pub aead_key: [u8; 32],
    pub nonce: [u8; 12],
}

impl OwnSenderKey {
    /// Creates a fresh chain for `distribution_id`: random chain id, random
    /// chain key, fresh Ed25519 signing key, iteration 0.
    pub fn new<R: CryptoRng + ?Sized>(distribution_id: DistributionId, rng: &mut R) -> Self {
        let mut id = [0u8; 4];
        rng.fill_bytes(&mut id);
        Self::with_chain_id(distribution_id, ChainId(u32::from_be_bytes(id)), rng)
    }

    fn with_chain_id<R: CryptoRng + ?Sized>(
        distribution_id: DistributionId,
        chain_id: ChainId,
        rng: &mut R,
    ) -> Self {
        let mut chain_key = ChainKey(Box::new([0u8; 32]));
        rng.fill_bytes(chain_key.0.as_mut_slice());
        // A fresh key per chain, never the identity key: a chain's signing
        // key is shared with every member, so it must not sign anything else.
        let signing = SigningKey::generate(rng);
        Self {
            version: STATE_VERSION,
            distribution_id,
            chain_id,
            iteration: 0,
            chain_key,
            signing_seed: SigningSeed(Box::new(signing.clone())),
            signing_public: signing.verifying_key().to_bytes(),
        }
    }

    /// The room.
    pub fn distribution_id(&self) -> DistributionId {
        self.distribution_id
    }

    /// The current chain's id.
    pub fn chain_id(&self) -> ChainId {
        self.chain_id
    }

    /// The iteration the next message will use.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// The distribution message for the current chain at its current
    /// iteration, to send to each member device over the 1:1 sessions.
    /// Messages sent before this point stay unreadable to its recipient.
    pub fn distribution_message(&self) -> SenderKeyDistributionMessage {
        SenderKeyDistributionMessage {
            distribution_id: self.distribution_id,
            chain_id: self.chain_id,
            iteration: self.iteration,
            chain_key: self.chain_key.clone(),
            signing_public: self.verifying_key(),
        }
    }

    fn verifying_key(&self) -> VerifyingKey {
        self.signing_seed.0.verifying_key()
    }

    /// Replaces the chain with a fresh one (new chain id, new chain key, new
    /// signing key) and returns its distribution message.
    ///
    /// Call it on every membership removal, and send the result to the
    /// remaining members only: the removed member, who holds only the old
    /// chain, then decrypts nothing sent afterwards.
    pub fn rotate<R: CryptoRng + ?Sized>(&mut self, rng: &mut R) -> SenderKeyDistributionMessage {
        // The new chain id must differ from the old one, otherwise receivers
        // would mistake the new chain for the old (ChainIdConflict).
        let mut id = self.chain_id.get();
        while id == self.chain_id.get() {
            let mut b = [0u8; 4];
            rng.fill_bytes(&mut b);
            id = u32::from_be_bytes(b);
        }
        *self = Self::with_chain_id(self.distribution_id, ChainId(id), rng);
        self.distribution_message()
    }

    /// Encrypts and signs one room message, advancing the chain.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<SenderKeyMessage, EncryptError> {
        self.encrypt_traced(plaintext).map(|(m, _)| m)
    }

    /// [`Self::encrypt`], also returning the intermediate values (for the
    /// committed test vectors only).
    #[doc(hidden)]
    pub fn encrypt_traced(
        &mut self,
        plaintext: &[u8],
    ) -> Result<(SenderKeyMessage, EncryptTrace), EncryptError> {
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(EncryptError::PlaintextTooLong {
                len: plaintext.len(),
            });
        }
        // u32::MAX is never used, so that the receiver's "next iteration"
        // always fits in a u32.
        let next_iteration = self
            .iteration
            .checked_add(1)
            .ok_or(EncryptError::ChainExhausted)?;
        let mk = self.chain_key.message_key();
        let keys = mk.aead_keys();
        let header = header_bytes(self.distribution_id, self.chain_id, self.iteration);
        let ciphertext = keys.seal(&header, plaintext).ok_or(EncryptError::Aead)?;
        let signature = self
            .signing_seed
            .0
            .sign(&signed_bytes(&header, &ciphertext))
            .to_bytes();
        let trace = EncryptTrace {
            chain_key: *self.chain_key.0,
            message_key: *mk.0,
            aead_key: *keys.key,
            nonce: keys.nonce,
        };
        let message = SenderKeyMessage {
            distribution_id: self.distribution_id,
            chain_id: self.chain_id,
            iteration: self.iteration,
            ciphertext,
            signature,
        };
        self.chain_key = self.chain_key.next();
        self.iteration = next_iteration;
        Ok((message, trace))
    }

    /// Serializes the state (postcard, versioned) into a buffer wiped on drop.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        #[allow(clippy::expect_used)]
        let bytes = postcard::to_allocvec(self)
            .expect("postcard cannot fail to encode plain structs into a Vec");
        Zeroizing::new(bytes)
    }

    /// Loads a state written by [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StateDecodeError> {
        if bytes.len() > MAX_STATE_LEN {
            return Err(StateDecodeError::TooLong { len: bytes.len() });
        }
        let state: Self = decode_versioned(bytes)?;
        if state.version != STATE_VERSION {
            return Err(StateDecodeError::UnsupportedVersion {
                found: state.version,
            });
        }
        // The stored public key must be the seed's, or we would hand out a
        // key that does not verify our own signatures.
        if state.verifying_key().to_bytes() != state.signing_public {
            return Err(StateDecodeError::Invalid);
        }
        Ok(state)
    }
}

impl fmt::Debug for OwnSenderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnSenderKey")
            .field("distribution_id", &self.distribution_id)
            .field("chain_id", &self.chain_id)
            .field("iteration", &self.iteration)
            .field("chain_key", &"<redacted>")
            .field("signing_key", &"<redacted>")
            .finish()
    }
}

/// Postcard-decodes `bytes`, refusing trailing bytes; a version byte that
/// postcard cannot even reach is reported as [`StateDecodeError::Malformed`].
fn decode_versioned<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, StateDecodeError> {
    // Report an unknown version before the body, whose shape may differ.
    if let Some(&v) = bytes.first()
        && v != STATE_VERSION
    {
        return Err(StateDecodeError::UnsupportedVersion { found: v });
    }
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((value, [])) => Ok(value),
        _ => Err(StateDecodeError::Malformed),
    }
}

// ---------------------------------------------------------------------------
// Receiving side
// ---------------------------------------------------------------------------

/// A skipped message key, kept for a message that may still arrive.
#[derive(Clone, Serialize, Deserialize)]
struct SkippedKey {
    iteration: u32,
    key: MessageKey,
}

/// One chain of the sender, as known to a receiver.
#[derive(Clone, Serialize, Deserialize)]
struct ReceivingChain {
    chain_id: ChainId,
    signing_public: [u8; 32],
    /// Iteration of `chain_key`: the smallest iteration not yet derived.
    next_iteration: u32,
    chain_key: ChainKey,
    /// Oldest first; at most [`MAX_SKIPPED_KEYS`], iterations strictly
    /// increasing and all below `next_iteration`.
    skipped: VecDeque<SkippedKey>,
}

/// Where the key of a message comes from: a stored skipped key, or a walk
/// forward along the chain. Computed without touching the record.
enum KeyPlan {
    Skipped {
        index: usize,
    },
    Advance {
        key: MessageKey,
        /// The chain key after the message's iteration.
        next_chain_key: ChainKey,
        next_iteration: u32,
        /// Keys of the iterations jumped over (the newest ones only).
        new_skipped: VecDeque<SkippedKey>,
    },
}

/// Proof that a message's signature verified under its chain's signing key
/// (conventions §2: checks as proof tokens). Only [`ReceivingChain::verify`]
/// makes one, and deriving a message key requires one.
struct SignatureVerified(());

impl ReceivingChain {
    fn verify(&self, message: &SenderKeyMessage) -> Result<SignatureVerified, DecryptError> {
        let key = VerifyingKey::from_bytes(&self.signing_public)
            .map_err(|_| DecryptError::BadSignature)?;
        let signature = Signature::from_bytes(&message.signature);
        // verify_strict: rejects non-canonical and small-order R and keys.
        key.verify_strict(&message.signed_bytes(), &signature)
            .map_err(|_| DecryptError::BadSignature)?;
        Ok(SignatureVerified(()))
    }

    fn plan(&self, iteration: u32, _: &SignatureVerified) -> Result<KeyPlan, DecryptError> {
        if iteration < self.next_iteration {
            // DR-style bounded store: a key is either still here or gone for
            // good, which is what makes duplicates fail.
            return self
                .skipped
                .iter()
                .position(|s| s.iteration == iteration)
                .map(|index| KeyPlan::Skipped { index })
                .ok_or(DecryptError::DuplicateOrTooOld);
        }
        let jump = iteration - self.next_iteration;
        if jump > MAX_JUMP {
            return Err(DecryptError::TooFarAhead { jump });
        }
        let next_iteration = iteration
            .checked_add(1)
            .ok_or(DecryptError::ChainExhausted)?;
        let mut ck = self.chain_key.clone();
        let mut new_skipped = VecDeque::new();
        for i in self.next_iteration..iteration {
            new_skipped.push_back(SkippedKey {
                iteration: i,
                key: ck.message_key(),
            });
            // Only the newest MAX_SKIPPED_KEYS could survive the commit.
            if new_skipped.len() > MAX_SKIPPED_KEYS {
                new_skipped.pop_front();
            }
            ck = ck.next();
        }
        Ok(KeyPlan::Advance {
            key: ck.message_key(),
            next_chain_key: ck.next(),
            next_iteration,
            new_skipped,
        })
    }
}

/// What [`SenderKeyRecord::process_distribution`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DistributionOutcome {
    /// A new chain was added (the oldest may have been dropped to stay within
    /// [`MAX_CHAINS_PER_RECORD`]).
    Added,
    /// The chain was already known with the same signing key; nothing changed
    /// (in particular, the record never moves back to an older iteration).
    AlreadyKnown,
}

/// A receiver's state for one (room, sender device): the sender's chains,
/// newest first, with their skipped message keys.
///
/// Serializable (with [`SenderKeyRecord::to_bytes`]); every secret is boxed
/// and wiped on drop.
#[derive(Clone, Serialize, Deserialize)]
pub struct SenderKeyRecord {
    version: u8,
    distribution_id: DistributionId,
    /// Newest first, at most [`MAX_CHAINS_PER_RECORD`], distinct chain ids.
    chains: VecDeque<ReceivingChain>,
}

// Every secret field (chain keys, skipped message keys) wipes itself on drop.
impl ZeroizeOnDrop for SenderKeyRecord {}

impl SenderKeyRecord {
    /// An empty record for one sender device in the room `distribution_id`.
    pub fn new(distribution_id: DistributionId) -> Self {
        Self {
            version: STATE_VERSION,
            distribution_id,
            chains: VecDeque::new(),
        }
    }

    /// The room.
    pub fn distribution_id(&self) -> DistributionId {
        self.distribution_id
    }

    /// The ids of the known chains, newest first.
    pub fn chain_ids(&self) -> Vec<ChainId> {
        self.chains.iter().map(|c| c.chain_id).collect()
    }

    /// Installs a chain from a distribution message.
    ///
    /// **Only pass a message that came out of the authenticated 1:1 session
    /// with the device whose record this is**; this function cannot tell who
    /// sent it.
    pub fn process_distribution(
        &mut self,
        message: &SenderKeyDistributionMessage,
    ) -> Result<DistributionOutcome, ProcessDistributionError> {
        if message.distribution_id != self.distribution_id {
            return Err(ProcessDistributionError::WrongDistribution);
        }
        let public = message.signing_public.to_bytes();
        if let Some(existing) = self.chains.iter().find(|c| c.chain_id == message.chain_id) {
            return if existing.signing_public == public {
                Ok(DistributionOutcome::AlreadyKnown)
            } else {
                Err(ProcessDistributionError::ChainIdConflict)
            };
        }
        self.chains.push_front(ReceivingChain {
            chain_id: message.chain_id,
            signing_public: public,
            next_iteration: message.iteration,
            chain_key: message.chain_key.clone(),
            skipped: VecDeque::new(),
        });
        self.chains.truncate(MAX_CHAINS_PER_RECORD);
        Ok(DistributionOutcome::Added)
    }

    /// Verifies and decrypts a room message.
    ///
    /// Order: room, chain, **signature**, iteration bounds, AEAD. The record
    /// changes only if every step succeeds; on any error it is untouched.
    pub fn decrypt(&mut self, message: &SenderKeyMessage) -> Result<Vec<u8>, DecryptError> {
        if message.distribution_id != self.distribution_id {
            return Err(DecryptError::WrongDistribution);
        }
        let index = self
            .chains
            .iter()
            .position(|c| c.chain_id == message.chain_id)
            .ok_or(DecryptError::UnknownChain)?;
        let chain = &self.chains[index];

        // Sender Keys: verify the signature before decrypting (design.md);
        // `plan` cannot be called without the proof token.
        let verified = chain.verify(message)?;
        let header = message.header();
        let plan = chain.plan(message.iteration, &verified)?;
        let plaintext = {
            let mk = match &plan {
                KeyPlan::Skipped { index } => &chain.skipped[*index].key,
                KeyPlan::Advance { key, .. } => key,
            };
            mk.aead_keys()
                .open(&header, &message.ciphertext)
                .ok_or(DecryptError::Aead)?
        };

        // Commit.
        let chain = &mut self.chains[index];
        match plan {
            KeyPlan::Skipped { index } => {
                chain.skipped.remove(index);
            }
            KeyPlan::Advance {
                next_chain_key,
                next_iteration,
                new_skipped,
                ..
            } => {
                chain.chain_key = next_chain_key;
                chain.next_iteration = next_iteration;
                chain.skipped.extend(new_skipped);
                while chain.skipped.len() > MAX_SKIPPED_KEYS {
                    chain.skipped.pop_front();
                }
            }
        }
        Ok(plaintext)
    }

    /// Serializes the record (postcard, versioned) into a buffer wiped on drop.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        #[allow(clippy::expect_used)]
        let bytes = postcard::to_allocvec(self)
            .expect("postcard cannot fail to encode plain structs into a Vec");
        Zeroizing::new(bytes)
    }

    /// Loads a record written by [`Self::to_bytes`], checking its invariants.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StateDecodeError> {
        if bytes.len() > MAX_STATE_LEN {
            return Err(StateDecodeError::TooLong { len: bytes.len() });
        }
        let record: Self = decode_versioned(bytes)?;
        if record.version != STATE_VERSION {
            return Err(StateDecodeError::UnsupportedVersion {
                found: record.version,
            });
        }
        if record.chains.len() > MAX_CHAINS_PER_RECORD {
            return Err(StateDecodeError::Invalid);
        }
        for (i, chain) in record.chains.iter().enumerate() {
            let duplicate_id = record
                .chains
                .iter()
                .skip(i + 1)
                .any(|c| c.chain_id == chain.chain_id);
            // Skipped keys are appended in increasing iteration order and
            // only ever removed, so a valid store is strictly increasing
            // (which also rules out duplicates) and below next_iteration.
            let skipped_ok = chain.skipped.len() <= MAX_SKIPPED_KEYS
                && chain
                    .skipped
                    .iter()
                    .zip(chain.skipped.iter().skip(1))
                    .all(|(a, b)| a.iteration < b.iteration)
                && chain
                    .skipped
                    .back()
                    .is_none_or(|last| last.iteration < chain.next_iteration);
            if duplicate_id || !skipped_ok || parse_signing_public(&chain.signing_public).is_err() {
                return Err(StateDecodeError::Invalid);
            }
        }
        Ok(record)
    }
}

impl fmt::Debug for SenderKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SenderKeyRecord")
            .field("distribution_id", &self.distribution_id)
            .field("chains", &self.chains)
            .finish()
    }
}

impl fmt::Debug for ReceivingChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceivingChain")
            .field("chain_id", &self.chain_id)
            .field("next_iteration", &self.next_iteration)
            .field("skipped_keys", &self.skipped.len())
            .field("chain_key", &"<redacted>")
            .finish()
    }
}

// ---------------------------------------------------------------------------
// Storage
// ---------------------------------------------------------------------------

/// Where a client keeps its Sender Key state (conventions §3: storage behind
/// traits, with an in-memory version). `A` names a sender device (for
/// example the client's device-address type).
pub trait SenderKeyStore<A> {
    /// The store's error (I/O, corruption...).
    type Error;

    /// The record of `sender`'s chains in `room`, if any.
    fn load_sender_key(
        &self,
        room: DistributionId,
        sender: &A,
    ) -> Result<Option<SenderKeyRecord>, Self::Error>;

    /// Saves the record of `sender`'s chains in `room`.
    fn store_sender_key(
        &mut self,
        room: DistributionId,
        sender: &A,
        record: SenderKeyRecord,
    ) -> Result<(), Self::Error>;

    /// This device's sending chain in `room`, if any.
    fn load_own_sender_key(
        &self,
        room: DistributionId,
    ) -> Result<Option<OwnSenderKey>, Self::Error>;

    /// Saves this device's sending chain in `room`.
    fn store_own_sender_key(
        &mut self,
        room: DistributionId,
        key: OwnSenderKey,
    ) -> Result<(), Self::Error>;
}

/// An in-memory [`SenderKeyStore`], for tests and bots without persistence.
/// It keeps serialized states, so that loading exercises the same decoder as
/// a persistent store.
pub struct InMemSenderKeyStore<A> {
    records: std::collections::BTreeMap<(DistributionId, A), Zeroizing<Vec<u8>>>,
    own: std::collections::BTreeMap<DistributionId, Zeroizing<Vec<u8>>>,
}

impl<A> Default for InMemSenderKeyStore<A> {
    fn default() -> Self {
        Self {
            records: std::collections::BTreeMap::new(),
            own: std::collections::BTreeMap::new(),
        }
    }
}

impl<A> fmt::Debug for InMemSenderKeyStore<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemSenderKeyStore")
            .field("records", &self.records.len())
            .field("own", &self.own.len())
            .finish()
    }
}

impl<A> InMemSenderKeyStore<A> {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<A: Ord + Clone> SenderKeyStore<A> for InMemSenderKeyStore<A> {
    type Error = StateDecodeError;

    fn load_sender_key(
        &self,
        room: DistributionId,
        sender: &A,
    ) -> Result<Option<SenderKeyRecord>, StateDecodeError> {
        self.records
            .get(&(room, sender.clone()))
            .map(|b| SenderKeyRecord::from_bytes(b))
            .transpose()
    }

    fn store_sender_key(
        &mut self,
        room: DistributionId,
        sender: &A,
        record: SenderKeyRecord,
    ) -> Result<(), StateDecodeError> {
        self.records
            .insert((room, sender.clone()), record.to_bytes());
        Ok(())
    }

    fn load_own_sender_key(
        &self,
        room: DistributionId,
    ) -> Result<Option<OwnSenderKey>, StateDecodeError> {
        self.own
            .get(&room)
            .map(|b| OwnSenderKey::from_bytes(b))
            .transpose()
    }

    fn store_own_sender_key(
        &mut self,
        room: DistributionId,
        key: OwnSenderKey,
    ) -> Result<(), StateDecodeError> {
        self.own.insert(room, key.to_bytes());
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Fuzzing entry points and test vectors
// ---------------------------------------------------------------------------

/// One entry point per parser of untrusted bytes, so that each cargo-fuzz
/// target is three lines. Each parses, and on success checks that
/// re-encoding gives the input back.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// Parses a [`SenderKeyMessage`].
    #[allow(clippy::panic)]
    pub fn sender_key_message(data: &[u8]) {
        if let Ok(m) = SenderKeyMessage::try_from(data)
            && m.to_bytes() != data
        {
            panic!("SenderKeyMessage does not round-trip");
        }
    }

    /// Parses a [`SenderKeyDistributionMessage`].
    #[allow(clippy::panic)]
    pub fn sender_key_distribution_message(data: &[u8]) {
        if let Ok(m) = SenderKeyDistributionMessage::try_from(data)
            && m.to_bytes().as_slice() != data
        {
            panic!("SenderKeyDistributionMessage does not round-trip");
        }
    }

    /// Loads a [`SenderKeyRecord`] (stored state; a corrupt store is untrusted).
    pub fn sender_key_record(data: &[u8]) {
        let _ = SenderKeyRecord::from_bytes(data);
    }

    /// Loads an [`OwnSenderKey`].
    pub fn own_sender_key(data: &[u8]) {
        let _ = OwnSenderKey::from_bytes(data);
    }
}

/// Generates the committed test vectors `crypto/tests/vectors/sender_keys.json`
/// through the real encryption path. Hidden: for the vector test only.
#[doc(hidden)]
pub mod vectors {
    use super::*;

    /// One message of a vector chain (all byte strings in lowercase hex).
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct VectorMessage {
        pub iteration: u32,
        pub chain_key: String,
        pub message_key: String,
        pub aead_key: String,
        pub nonce: String,
        pub ad: String,
        pub plaintext: String,
        pub ciphertext: String,
        pub signed_bytes: String,
        pub signature: String,
    }

    /// One chain of the vectors.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct VectorChain {
        pub message_key_info: String,
        pub signing_public: String,
        pub messages: Vec<VectorMessage>,
    }

    /// The whole file.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Vectors {
        pub chains: Vec<VectorChain>,
    }

    /// Lowercase hex.
    pub fn hex(bytes: &[u8]) -> String {
        use fmt::Write;
        let mut s = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            let _ = write!(s, "{b:02x}");
        }
        s
    }

    /// Two chains (the second is the first after a rotation), with skipped
    /// iterations, an empty plaintext and a multi-block plaintext.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Vectors {
        let room = DistributionId::random(rng);
        let mut own = OwnSenderKey::new(room, rng);
        let plaintexts: [&[u8]; 4] = [
            b"",
            b"hello room",
            b"skipped ahead",
            b"a message longer than one 64-byte ChaCha20 block, to cover the keystream counter",
        ];
        let mut chains = Vec::new();
        for round in 0..2 {
            if round == 1 {
                let _ = own.rotate(rng);
            }
            let mut messages = Vec::new();
            for (i, pt) in plaintexts.iter().enumerate() {
                // Skip two iterations before the third message, so that the
                // vectors show the chain advancing without a message.
                if i == 2 {
                    for _ in 0..2 {
                        let _ = own.encrypt(b"unsent");
                    }
                }
                let Ok((m, t)) = own.encrypt_traced(pt) else {
                    continue;
                };
                messages.push(VectorMessage {
                    iteration: m.iteration,
                    chain_key: hex(&t.chain_key),
                    message_key: hex(&t.message_key),
                    aead_key: hex(&t.aead_key),
                    nonce: hex(&t.nonce),
                    ad: hex(&m.header()),
                    plaintext: hex(pt),
                    ciphertext: hex(&m.ciphertext),
                    signed_bytes: hex(&m.signed_bytes()),
                    signature: hex(&m.signature),
                });
            }
            chains.push(VectorChain {
                message_key_info: hex(KDF_SENDER_KEY_MESSAGE_KEYS),
                signing_public: hex(&own.signing_public),
                messages,
            });
        }
        Vectors { chains }
    }
}
