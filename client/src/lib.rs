//! Spider client SDK: keystore, sessions, transports, reconnect, outbox and sync.
//!
//! # Layout
//!
//! - [`store`]: the key-value trait records live behind, with a sled and an
//!   in-memory implementation.
//! - [`keystore`]: encryption at rest (a data key wrapped by Argon2id).
//! - [`profile`]: a device's records, typed.
//! - [`crypto_store`]: spider-crypto's storage traits on a profile, and the
//!   prekey policy.
//! - [`content`]: the plaintext format inside encrypted payloads.
//! - [`engine`]: the sans-I/O client state machine.

pub mod client;
pub mod content;
pub mod crypto_store;
pub mod engine;
pub mod keystore;
pub mod profile;
pub mod store;
pub mod transport;
