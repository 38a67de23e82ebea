//! Spider's end-to-end encryption: identities, prekeys, PQXDH (X3DH with
//! ML-KEM-768), the Double Ratchet, Sender Keys for rooms, safety numbers and
//! attachment encryption.
//!
//! Sans-I/O: every operation that needs randomness takes an RNG (a
//! [`rand_core::CryptoRng`]), and every operation that needs the time takes
//! `now` (unix seconds); nothing here reads a clock, a socket or a file.
//!
//! # Map
//!
//! ```text
//!  keys ──► PreKeyBundle ──verify()──► VerifiedPreKeyBundle
//!                                          │
//!  Alice: Session::initiate ◄──────────────┘        (x3dh: PQXDH)
//!         Session::encrypt ──► Message::PreKey ───► Bob: Session::accept
//!         Session::decrypt ◄── Message::Ratchet ◄──      Session::encrypt
//!                              (ratchet: Double Ratchet; kdf; primitives)
//! ```
//!
//! - [`keys`]: identity keys, signed / one-time X25519 prekeys, signed
//!   ML-KEM-768 prekeys, bundles, and the signature checks the relay uses.
//! - [`x3dh`]: the PQXDH handshake, the first message and the replay cache.
//! - [`ratchet`]: the Double Ratchet and its message format.
//! - [`session`]: both put together: the API a client drives, directly or
//!   through the stores ([`session::start_session`], [`session::encrypt_to`],
//!   [`session::decrypt_from`]).
//! - [`store`]: storage traits with in-memory implementations.
//! - [`kdf`], [`primitives`]: the derivations and the thin wrappers over the
//!   primitive crates, public for the known-answer tests.
//! - [`sender_key`]: Sender Keys for rooms: one signed chain per sender
//!   device, distribution messages carried inside 1:1 sessions, rotation on
//!   every removal.
//! - [`safety`]: safety numbers (60 digits and a compact checksummed form).
//! - [`attachment`]: chunked STREAM encryption of files, in bounded memory.
//! - [`domain`]: every signature label, KDF info string and message type byte.
//!
//! # Walkthrough
//!
//! ```
//! use rand_chacha::ChaCha20Rng;
//! use rand_core::SeedableRng;
//! use spider_crypto::keys::*;
//! use spider_crypto::session::{Message, Session};
//! use spider_crypto::store::{InMemPreKeyStore, PreKeyStore};
//! use spider_crypto::x3dh::ReplayCache;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A seeded RNG for a reproducible example; use an OS-backed CryptoRng in
//! // real code.
//! let mut rng = ChaCha20Rng::from_seed([42; 32]);
//! let now = 1_700_000_000;
//!
//! // Bob registers: identity, signed prekey, KEM prekey, one-time prekey.
//! let bob = IdentityKeyPair::generate(&mut rng);
//! let mut bob_prekeys = InMemPreKeyStore::new();
//! let spk = SignedPreKeyPair::generate(&mut rng, &bob, PreKeyId(1), now);
//! let kem = KemPreKeyPair::generate(&mut rng, &bob, PreKeyId(1), KemPreKeyKind::LastResort, now);
//! let otk = OneTimePreKeyPair::generate(&mut rng, PreKeyId(1));
//! let bundle = PreKeyBundle {
//!     identity: bob.public().clone(),
//!     signed_prekey: spk.public(),
//!     kem_prekey: kem.public().clone(),
//!     one_time_prekey: Some(otk.public()),
//! };
//! bob_prekeys.save_signed_prekey(spk)?;
//! bob_prekeys.save_kem_prekey(kem)?;
//! bob_prekeys.save_one_time_prekey(otk)?;
//! let bundle_bytes = bundle.to_bytes(); // what the relay stores and hands out
//!
//! // Alice fetches the bundle, checks its signatures, runs PQXDH.
//! let alice = IdentityKeyPair::generate(&mut rng);
//! let verified = PreKeyBundle::try_from(&bundle_bytes[..])?.verify()?;
//! let mut alice_session = Session::initiate(&mut rng, &alice, &verified)?;
//! let first = alice_session.encrypt(b"hello Bob")?.to_bytes();
//!
//! // Bob receives a first message and accepts it.
//! let mut replay = ReplayCache::new();
//! let Message::PreKey(first) = Message::try_from(&first[..])? else { unreachable!() };
//! let (mut bob_session, plaintext) =
//!     Session::accept(&mut rng, &bob, &mut bob_prekeys, &mut replay, &first, now)?;
//! assert_eq!(plaintext, b"hello Bob");
//! assert!(bob_prekeys.one_time_prekey(PreKeyId(1))?.is_none()); // consumed
//!
//! // From here on, the Double Ratchet.
//! let reply = bob_session.encrypt(b"hi Alice")?.to_bytes();
//! let reply = Message::try_from(&reply[..])?;
//! assert_eq!(alice_session.decrypt(&mut rng, &reply, now)?, b"hi Alice");
//! let more = alice_session.encrypt(b"how are you?")?;
//! assert!(matches!(more, Message::Ratchet(_)));
//! assert_eq!(bob_session.decrypt(&mut rng, &more, now + 1)?, b"how are you?");
//!
//! // Sessions serialize for the keystore.
//! let saved = bob_session.to_bytes();
//! let restored = Session::from_bytes(&saved)?;
//! assert_eq!(restored.remote_identity(), alice.public());
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

// Without the `sessions` feature (the relay's build) only identities,
// prekeys, safety numbers and signature checks remain: nothing that can
// decrypt a message.
#[cfg(feature = "sessions")]
pub mod attachment;
pub mod domain;
pub mod error;
#[cfg(feature = "sessions")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "sessions")]
pub mod kdf;
pub mod keys;
pub mod primitives;
#[cfg(feature = "sessions")]
pub mod ratchet;
pub mod safety;
#[cfg(feature = "sessions")]
pub mod sender_key;
#[cfg(feature = "sessions")]
pub mod session;
#[cfg(feature = "sessions")]
pub mod store;
mod wire;
#[cfg(feature = "sessions")]
pub mod x3dh;

#[cfg(test)]
mod vectors;
