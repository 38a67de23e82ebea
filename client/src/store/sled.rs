//! [`ProfileStore`] on sled. Every sled call of this crate is in this file.

use std::path::Path;

use super::{ProfileStore, StoreError};

fn backend(e: ::sled::Error) -> StoreError {
    StoreError(e.to_string())
}

/// A sled database in a directory. sled locks the directory, so one profile
/// is open in one process at a time.
pub struct SledStore {
    db: ::sled::Db,
}

impl core::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SledStore").finish_non_exhaustive()
    }
}

impl SledStore {
    /// Opens (or creates) the database in `dir`.
    ///
    /// # Errors
    /// sled could not open it (missing permissions, locked by another
    /// process, corrupt).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = ::sled::Config::new().path(dir).open().map_err(backend)?;
        Ok(Self { db })
    }
}

impl ProfileStore for SledStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(key).map_err(backend)?.map(|v| v.to_vec()))
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.db.insert(key, value).map_err(backend)?;
        Ok(())
    }
    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.db.remove(key).map_err(backend)?;
        Ok(())
    }
    fn scan_prefix(&self, prefix: &[u8]) -> Result<super::Records, StoreError> {
        self.db
            .scan_prefix(prefix)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(backend))
            .collect()
    }
    fn flush(&mut self) -> Result<(), StoreError> {
        self.db.flush().map_err(backend)?;
        Ok(())
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // Best effort: sled also flushes on its own schedule.
        let _ = self.db.flush();
    }
}
