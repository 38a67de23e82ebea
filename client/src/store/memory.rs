//! In-memory [`ProfileStore`].

use std::collections::BTreeMap;

use super::{ProfileStore, StoreError};

/// A [`ProfileStore`] in a `BTreeMap`; gone when dropped. Cloning copies the
/// records, which tests use to tamper with or reopen a profile.
#[derive(Clone, Default)]
pub struct MemoryStore {
    records: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl core::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("records", &self.records.len())
            .finish()
    }
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Every raw record (encrypted as stored), for tests that tamper.
    pub fn raw_mut(&mut self) -> &mut BTreeMap<Vec<u8>, Vec<u8>> {
        &mut self.records
    }
}

impl ProfileStore for MemoryStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.records.get(key).cloned())
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.records.insert(key.to_vec(), value.to_vec());
        Ok(())
    }
    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.records.remove(key);
        Ok(())
    }
    fn scan_prefix(&self, prefix: &[u8]) -> Result<super::Records, StoreError> {
        Ok(self
            .records
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
    fn flush(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}
