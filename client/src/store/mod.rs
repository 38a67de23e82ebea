//! Where a profile's records live: a small key-value trait over opaque bytes.
//!
//! The store never sees plaintext of anything private: [`crate::keystore`]
//! encrypts every value before it gets here (the one exception is the
//! profile header, which holds the passphrase-wrapped data key). Keys are
//! ASCII table names followed by identifiers (see [`crate::profile`] for the
//! layout), so that a table can be scanned by prefix.
//!
//! Two implementations: [`MemoryStore`] for tests and throw-away bots, and
//! [`SledStore`], the only module that calls sled (design.md: keep every sled
//! call in one place so that moving to another engine changes one file).

mod memory;
mod sled;

pub use self::memory::MemoryStore;
pub use self::sled::SledStore;

/// The backend failed. The text comes from the backend and never carries
/// record contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("profile store: {0}")]
pub struct StoreError(pub String);

/// Records as `(key, value)` pairs, in key order.
pub type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// A key-value store of opaque records.
pub trait ProfileStore {
    /// The value under `key`, if any.
    ///
    /// # Errors
    /// Backend failure.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stores `value` under `key`, replacing any old value.
    ///
    /// # Errors
    /// Backend failure.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError>;

    /// Deletes `key` (no error if absent).
    ///
    /// # Errors
    /// Backend failure.
    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError>;

    /// Every `(key, value)` whose key starts with `prefix`, in key order.
    ///
    /// # Errors
    /// Backend failure.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Records, StoreError>;

    /// Makes every write so far durable.
    ///
    /// # Errors
    /// Backend failure.
    fn flush(&mut self) -> Result<(), StoreError>;
}

impl<S: ProfileStore + ?Sized> ProfileStore for Box<S> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get(key)
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        (**self).put(key, value)
    }
    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        (**self).delete(key)
    }
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Records, StoreError> {
        (**self).scan_prefix(prefix)
    }
    fn flush(&mut self) -> Result<(), StoreError> {
        (**self).flush()
    }
}
