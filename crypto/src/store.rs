//! Storage traits with in-memory implementations (libsignal's
//! `storage/traits.rs` and `inmem.rs`, kept small and synchronous: this crate
//! does no I/O, so a persistent adapter in the client does its I/O inside
//! these calls).

use std::collections::BTreeMap;
use std::collections::HashMap;

use rand_core::CryptoRng;

use crate::error::StoreError;
use crate::keys::{
    IdentityKeyPair, IdentityPublicKey, KemPreKeyPair, OneTimePreKeyPair, PreKeyId,
    SignedPreKeyPair,
};
use crate::session::SessionRecord;

/// How long a replaced signed prekey stays usable (30 days), so that first
/// messages already in flight (waiting in an offline mailbox) still decrypt.
/// Matches [`crate::ratchet::SKIPPED_KEY_MAX_AGE_SECS`], the longest a message
/// is expected to wait.
pub const SIGNED_PREKEY_GRACE_SECS: u64 = 30 * 24 * 60 * 60;

/// Address of a remote device: user name and device number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceAddress {
    /// The user's name on the relay.
    pub user: String,
    /// The device number.
    pub device: u32,
}

impl DeviceAddress {
    /// Builds an address.
    pub fn new(user: impl Into<String>, device: u32) -> Self {
        Self {
            user: user.into(),
            device,
        }
    }
}

/// What [`IdentityStore::save_identity`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityChange {
    /// First identity seen for this address (trust on first use).
    New,
    /// Same identity as stored.
    Unchanged,
    /// A different identity replaced the stored one: the user should verify
    /// the safety number again.
    Replaced,
}

/// Our identity and the identities we have seen for remote devices.
pub trait IdentityStore {
    /// Our own identity.
    fn identity_key_pair(&self) -> &IdentityKeyPair;

    /// The stored identity of `address`, if any.
    ///
    /// # Errors
    /// Backend failure.
    fn identity(&self, address: &DeviceAddress) -> Result<Option<IdentityPublicKey>, StoreError>;

    /// Stores `identity` for `address`.
    ///
    /// # Errors
    /// Backend failure.
    fn save_identity(
        &mut self,
        address: &DeviceAddress,
        identity: &IdentityPublicKey,
    ) -> Result<IdentityChange, StoreError>;

    /// Trust on first use: trusted if nothing is stored or it is the same key.
    ///
    /// # Errors
    /// Backend failure.
    fn is_trusted(
        &self,
        address: &DeviceAddress,
        identity: &IdentityPublicKey,
    ) -> Result<bool, StoreError> {
        Ok(self
            .identity(address)?
            .is_none_or(|known| &known == identity))
    }
}

/// Our prekeys (private halves).
pub trait PreKeyStore {
    /// A signed prekey by id.
    ///
    /// # Errors
    /// Backend failure.
    fn signed_prekey(&self, id: PreKeyId) -> Result<Option<SignedPreKeyPair>, StoreError>;
    /// Stores a signed prekey.
    ///
    /// # Errors
    /// Backend failure.
    fn save_signed_prekey(&mut self, prekey: SignedPreKeyPair) -> Result<(), StoreError>;
    /// Deletes a signed prekey.
    ///
    /// # Errors
    /// Backend failure.
    fn remove_signed_prekey(&mut self, id: PreKeyId) -> Result<(), StoreError>;
    /// All signed prekeys, oldest first.
    ///
    /// # Errors
    /// Backend failure.
    fn signed_prekeys(&self) -> Result<Vec<SignedPreKeyPair>, StoreError>;

    /// A KEM prekey by id.
    ///
    /// # Errors
    /// Backend failure.
    fn kem_prekey(&self, id: PreKeyId) -> Result<Option<KemPreKeyPair>, StoreError>;
    /// Stores a KEM prekey.
    ///
    /// # Errors
    /// Backend failure.
    fn save_kem_prekey(&mut self, prekey: KemPreKeyPair) -> Result<(), StoreError>;
    /// Deletes a KEM prekey.
    ///
    /// # Errors
    /// Backend failure.
    fn remove_kem_prekey(&mut self, id: PreKeyId) -> Result<(), StoreError>;

    /// A one-time X25519 prekey by id.
    ///
    /// # Errors
    /// Backend failure.
    fn one_time_prekey(&self, id: PreKeyId) -> Result<Option<OneTimePreKeyPair>, StoreError>;
    /// Stores a one-time prekey.
    ///
    /// # Errors
    /// Backend failure.
    fn save_one_time_prekey(&mut self, prekey: OneTimePreKeyPair) -> Result<(), StoreError>;
    /// Deletes a one-time prekey.
    ///
    /// # Errors
    /// Backend failure.
    fn remove_one_time_prekey(&mut self, id: PreKeyId) -> Result<(), StoreError>;
}

/// Session records (current and previous sessions) by remote device.
pub trait SessionStore {
    /// The session record of `address`, if any.
    ///
    /// # Errors
    /// Backend failure.
    fn load_session(&self, address: &DeviceAddress) -> Result<Option<SessionRecord>, StoreError>;
    /// Stores (replaces) the session record of `address`.
    ///
    /// # Errors
    /// Backend failure.
    fn store_session(
        &mut self,
        address: &DeviceAddress,
        session: &SessionRecord,
    ) -> Result<(), StoreError>;
}

/// Rotates the signed prekey: makes a new one with the next id, stores it, and
/// deletes older ones whose successor was made more than
/// [`SIGNED_PREKEY_GRACE_SECS`] ago. Returns the new prekey; publish its
/// public half.
///
/// # Errors
/// Backend failure.
pub fn rotate_signed_prekey<R: CryptoRng + ?Sized, S: PreKeyStore + ?Sized>(
    rng: &mut R,
    identity: &IdentityKeyPair,
    store: &mut S,
    now: u64,
) -> Result<SignedPreKeyPair, StoreError> {
    let existing = store.signed_prekeys()?;
    let next_id = existing
        .iter()
        .map(|k| k.id().0)
        .max()
        .map_or(1, |m| m.wrapping_add(1));
    let prekey = SignedPreKeyPair::generate(rng, identity, PreKeyId(next_id), now);
    store.save_signed_prekey(prekey.clone())?;
    prune_signed_prekeys(store, now)?;
    Ok(prekey)
}

/// Deletes signed prekeys whose successor was made more than
/// [`SIGNED_PREKEY_GRACE_SECS`] before `now`. The newest is always kept.
/// Returns the ids still held (pass them to
/// [`crate::x3dh::ReplayCache::retain_signed_prekeys`]).
///
/// # Errors
/// Backend failure.
pub fn prune_signed_prekeys<S: PreKeyStore + ?Sized>(
    store: &mut S,
    now: u64,
) -> Result<Vec<PreKeyId>, StoreError> {
    let mut all = store.signed_prekeys()?;
    all.sort_by_key(|k| (k.created_at(), k.id()));
    let mut live = Vec::new();
    for (i, key) in all.iter().enumerate() {
        let superseded_at = all.get(i + 1).map(SignedPreKeyPair::created_at);
        match superseded_at {
            Some(t) if now.saturating_sub(t) > SIGNED_PREKEY_GRACE_SECS => {
                store.remove_signed_prekey(key.id())?;
            }
            _ => live.push(key.id()),
        }
    }
    Ok(live)
}

/// In-memory [`IdentityStore`].
#[derive(Debug)]
pub struct InMemIdentityStore {
    identity: IdentityKeyPair,
    known: HashMap<DeviceAddress, IdentityPublicKey>,
}

impl InMemIdentityStore {
    /// A store holding our identity and no remote ones.
    #[must_use]
    pub fn new(identity: IdentityKeyPair) -> Self {
        Self {
            identity,
            known: HashMap::new(),
        }
    }
}

impl IdentityStore for InMemIdentityStore {
    fn identity_key_pair(&self) -> &IdentityKeyPair {
        &self.identity
    }

    fn identity(&self, address: &DeviceAddress) -> Result<Option<IdentityPublicKey>, StoreError> {
        Ok(self.known.get(address).cloned())
    }

    fn save_identity(
        &mut self,
        address: &DeviceAddress,
        identity: &IdentityPublicKey,
    ) -> Result<IdentityChange, StoreError> {
        Ok(match self.known.insert(address.clone(), identity.clone()) {
            None => IdentityChange::New,
            Some(old) if &old == identity => IdentityChange::Unchanged,
            Some(_) => IdentityChange::Replaced,
        })
    }
}

/// In-memory [`PreKeyStore`].
#[derive(Debug, Default)]
pub struct InMemPreKeyStore {
    signed: BTreeMap<PreKeyId, SignedPreKeyPair>,
    kem: BTreeMap<PreKeyId, KemPreKeyPair>,
    one_time: BTreeMap<PreKeyId, OneTimePreKeyPair>,
}

impl InMemPreKeyStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl PreKeyStore for InMemPreKeyStore {
    fn signed_prekey(&self, id: PreKeyId) -> Result<Option<SignedPreKeyPair>, StoreError> {
        Ok(self.signed.get(&id).cloned())
    }
    fn save_signed_prekey(&mut self, prekey: SignedPreKeyPair) -> Result<(), StoreError> {
        self.signed.insert(prekey.id(), prekey);
        Ok(())
    }
    fn remove_signed_prekey(&mut self, id: PreKeyId) -> Result<(), StoreError> {
        self.signed.remove(&id);
        Ok(())
    }
    fn signed_prekeys(&self) -> Result<Vec<SignedPreKeyPair>, StoreError> {
        let mut all: Vec<_> = self.signed.values().cloned().collect();
        all.sort_by_key(|k| (k.created_at(), k.id()));
        Ok(all)
    }
    fn kem_prekey(&self, id: PreKeyId) -> Result<Option<KemPreKeyPair>, StoreError> {
        Ok(self.kem.get(&id).cloned())
    }
    fn save_kem_prekey(&mut self, prekey: KemPreKeyPair) -> Result<(), StoreError> {
        self.kem.insert(prekey.id(), prekey);
        Ok(())
    }
    fn remove_kem_prekey(&mut self, id: PreKeyId) -> Result<(), StoreError> {
        self.kem.remove(&id);
        Ok(())
    }
    fn one_time_prekey(&self, id: PreKeyId) -> Result<Option<OneTimePreKeyPair>, StoreError> {
        Ok(self.one_time.get(&id).cloned())
    }
    fn save_one_time_prekey(&mut self, prekey: OneTimePreKeyPair) -> Result<(), StoreError> {
        self.one_time.insert(prekey.id(), prekey);
        Ok(())
    }
    fn remove_one_time_prekey(&mut self, id: PreKeyId) -> Result<(), StoreError> {
        self.one_time.remove(&id);
        Ok(())
    }
}

/// In-memory [`SessionStore`].
#[derive(Debug, Default)]
pub struct InMemSessionStore {
    sessions: HashMap<DeviceAddress, SessionRecord>,
}

impl InMemSessionStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl SessionStore for InMemSessionStore {
    fn load_session(&self, address: &DeviceAddress) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self.sessions.get(address).cloned())
    }
    fn store_session(
        &mut self,
        address: &DeviceAddress,
        session: &SessionRecord,
    ) -> Result<(), StoreError> {
        self.sessions.insert(address.clone(), session.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn rotated_signed_prekey_is_kept_for_the_grace_period_then_deleted() {
        let mut rng = ChaCha20Rng::from_seed([4; 32]);
        let id = IdentityKeyPair::generate(&mut rng);
        let mut store = InMemPreKeyStore::new();
        let first = rotate_signed_prekey(&mut rng, &id, &mut store, 1000).unwrap();
        let second = rotate_signed_prekey(&mut rng, &id, &mut store, 2000).unwrap();
        assert_ne!(first.id(), second.id());
        // At the edge of the grace period the old key is still there.
        let live = prune_signed_prekeys(&mut store, 2000 + SIGNED_PREKEY_GRACE_SECS).unwrap();
        assert_eq!(live, vec![first.id(), second.id()]);
        let live = prune_signed_prekeys(&mut store, 2001 + SIGNED_PREKEY_GRACE_SECS).unwrap();
        assert_eq!(live, vec![second.id()]);
        assert!(store.signed_prekey(first.id()).unwrap().is_none());
        assert!(store.signed_prekey(second.id()).unwrap().is_some());
    }

    #[test]
    fn identity_store_trusts_on_first_use_and_reports_changes() {
        let mut rng = ChaCha20Rng::from_seed([5; 32]);
        let mut store = InMemIdentityStore::new(IdentityKeyPair::generate(&mut rng));
        let a = IdentityKeyPair::generate(&mut rng);
        let b = IdentityKeyPair::generate(&mut rng);
        let addr = DeviceAddress::new("alice", 1);
        assert!(store.is_trusted(&addr, a.public()).unwrap());
        assert_eq!(
            store.save_identity(&addr, a.public()).unwrap(),
            IdentityChange::New
        );
        assert_eq!(
            store.save_identity(&addr, a.public()).unwrap(),
            IdentityChange::Unchanged
        );
        assert!(!store.is_trusted(&addr, b.public()).unwrap());
        assert_eq!(
            store.save_identity(&addr, b.public()).unwrap(),
            IdentityChange::Replaced
        );
    }
}
