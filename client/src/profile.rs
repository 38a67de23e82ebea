//! A device's profile: identity, prekeys, sessions, sender keys, contacts,
//! rooms, settings, outbox and local history, every record encrypted by the
//! [`Keystore`].
//!
//! # Directory layout
//!
//! A profile directory is one sled database ([`SledStore`]); the same records
//! live in a [`MemoryStore`] for tests. Keys (not encrypted; they hold only
//! table names, random relay ids and counters, never names or content):
//!
//! | key                                   | value (encrypted, postcard unless said) |
//! |---------------------------------------|------------------------------------------|
//! | `meta/header`                         | *not encrypted*: the wrapped data key (see [`crate::keystore`]) |
//! | `account`                             | [`Account`]                              |
//! | `identity`                            | identity secret (64 bytes, spider-crypto layout) |
//! | `prekey/state`                        | [`crate::crypto_store::PreKeyState`]     |
//! | `prekey/signed/<id u32 BE>`           | signed prekey secret (spider-crypto)     |
//! | `prekey/kem/<id u32 BE>`              | KEM prekey secret (spider-crypto)        |
//! | `prekey/otk/<id u32 BE>`              | one-time prekey secret (spider-crypto)   |
//! | `prekey/replay`                       | PQXDH replay cache                       |
//! | `peer/<user hex>/<device u32 BE>`     | remote identity (128 bytes)              |
//! | `session/<user hex>/<device u32 BE>`  | Double Ratchet session (spider-crypto)   |
//! | `skey/own/<room 16>`                  | own Sender Key chain (spider-crypto)     |
//! | `skey/peer/<room 16><user 16><dev BE>`| Sender Key record of a member device     |
//! | `contact/<user 16>`                   | [`Contact`]                              |
//! | `room/<room 16>`                      | [`RoomState`]                            |
//! | `outbox/<message id 16>`              | [`OutboxEntry`]                          |
//! | `history/<ms u64 BE><message id 16>`  | [`HistoryEntry`]                         |
//! | `seen/<message id 16>`                | first-seen time (dedup of retransmissions) |
//! | `mailbox`                             | last acked mailbox sequence number       |
//! | `settings`                            | [`Settings`]                             |
//! | `social/...`, `cli/verified`          | profile keys, display names, roles, invitations, verified marks: see [`crate::social`] |

use core::fmt;
use std::path::Path;

use rand_core::CryptoRng;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use spider_crypto::keys::IdentityKeyPair;
use spider_protocol::ids::{DeviceId, MessageId, RoomId, Seq, UserId};
use spider_protocol::name::Username;
use zeroize::Zeroizing;

use crate::content::Content;
use crate::keystore::{KdfParams, Keystore, KeystoreError, Passphrase};
use crate::store::{MemoryStore, ProfileStore, SledStore};

/// How long a handled message id is remembered, to drop retransmissions:
/// 30 days, as long as a skipped message key lives in spider-crypto (the
/// longest a message is expected to wait in a mailbox or an outbox).
pub const SEEN_RETENTION_MS: u64 = 30 * 24 * 60 * 60 * 1000;

/// A random source the profile keeps for record nonces and keys.
pub type BoxRng = Box<dyn CryptoRng + Send>;

/// The operating system's random source, as a [`BoxRng`]. It panics if the
/// OS cannot give randomness, which leaves nothing safe to do anyway.
#[must_use]
pub fn os_rng() -> BoxRng {
    Box::new(rand_core::UnwrapErr(getrandom::SysRng))
}

pub(crate) const K_ACCOUNT: &[u8] = b"account";
pub(crate) const K_IDENTITY: &[u8] = b"identity";
pub(crate) const K_MAILBOX: &[u8] = b"mailbox";
pub(crate) const K_SETTINGS: &[u8] = b"settings";
pub(crate) const P_CONTACT: &[u8] = b"contact/";
pub(crate) const P_ROOM: &[u8] = b"room/";
pub(crate) const P_OUTBOX: &[u8] = b"outbox/";
pub(crate) const P_HISTORY: &[u8] = b"history/";
pub(crate) const P_SEEN: &[u8] = b"seen/";

pub(crate) fn key(prefix: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// Who this device is on which relay. Filled in at registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The relay's name, as its welcome gives it; the auth signature covers it.
    pub relay_name: String,
    /// The account name (claimed at registration).
    pub username: Username,
    /// The account, once registered.
    pub user: Option<UserId>,
    /// This device, once registered.
    pub device: Option<DeviceId>,
}

/// A known account and its devices.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// The account.
    pub user: UserId,
    /// Its name.
    pub username: Username,
    /// Its devices as last seen.
    pub devices: Vec<DeviceId>,
}

/// What this device knows of a room.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomState {
    /// The room.
    pub room: RoomId,
    /// Its name.
    pub name: String,
    /// Membership epoch.
    pub epoch: u64,
    /// Members and their devices.
    pub members: Vec<(UserId, Vec<DeviceId>)>,
    /// Member devices our current Sender Key chain was given to.
    pub distributed_to: Vec<(UserId, DeviceId)>,
    /// Set when a member left or was removed: rotate before the next send.
    pub needs_rotation: bool,
    /// False once we left or were removed.
    pub joined: bool,
}

impl RoomState {
    /// Every member device but `me`, in member order.
    pub fn devices_but(&self, me: (UserId, DeviceId)) -> impl Iterator<Item = (UserId, DeviceId)> {
        self.members
            .iter()
            .flat_map(|(u, devs)| devs.iter().map(move |d| (*u, *d)))
            .filter(move |a| *a != me)
    }

    /// The member devices but `me` that our current Sender Key chain was not
    /// given to, in member order.
    pub fn lacking_our_chain(&self, me: (UserId, DeviceId)) -> Vec<(UserId, DeviceId)> {
        let given: std::collections::HashSet<&(UserId, DeviceId)> =
            self.distributed_to.iter().collect();
        self.devices_but(me)
            .filter(|a| !given.contains(a))
            .collect()
    }
}

/// Where an outgoing message goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// Every device of an account (and our own other devices).
    User(UserId),
    /// An account we know only by name yet.
    Name(Username),
    /// A room.
    Room(RoomId),
}

/// A message not yet acknowledged by the relay. Re-sent with the same id
/// after a reconnect until the relay says `Sent`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The message id (stable across retransmissions).
    pub id: MessageId,
    /// Where.
    pub target: Target,
    /// The encoded [`Content`] (plaintext; encrypted at rest like everything).
    pub content: Vec<u8>,
    /// Whether it is shown in history (control messages are not).
    pub visible: bool,
    /// Local creation time (ms).
    pub created_ms: u64,
}

/// One line of local history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The message id.
    pub id: MessageId,
    /// The sending account (ourselves for sent messages).
    pub from: UserId,
    /// The sending device.
    pub from_device: DeviceId,
    /// The peer account for 1:1 messages (the recipient of ours).
    pub peer: Option<UserId>,
    /// The room, for room messages.
    pub room: Option<RoomId>,
    /// Time (ms): the sender's clock for received messages.
    pub at_ms: u64,
    /// The encoded [`Content`].
    pub content: Vec<u8>,
}

impl HistoryEntry {
    /// Decodes the content.
    ///
    /// # Errors
    /// If the stored bytes do not decode (a newer content version).
    pub fn decode(&self) -> Result<Content, crate::content::ContentError> {
        Content::decode(&self.content)
    }
}

/// User settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Send read receipts.
    pub send_read_receipts: bool,
    /// Send typing notices.
    pub send_typing: bool,
}

/// Opening or using a profile failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// The keystore failed (wrong passphrase, tampering, backend).
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// The profile has no identity record.
    #[error("profile has no identity")]
    NoIdentity,
}

/// An open profile: the keystore, the identity in memory, and a random
/// source for nonces.
pub struct Profile<S = Box<dyn ProfileStore + Send>> {
    pub(crate) ks: Keystore<S>,
    pub(crate) identity: IdentityKeyPair,
    pub(crate) rng: BoxRng,
}

impl<S> fmt::Debug for Profile<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profile")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Profile<SledStore> {
    /// Creates a profile in directory `dir` (a sled database).
    ///
    /// # Errors
    /// [`KeystoreError::AlreadyExists`], or the backend failed.
    pub fn create_dir(
        dir: &Path,
        passphrase: &Passphrase,
        params: KdfParams,
        account: Account,
        mut rng: BoxRng,
    ) -> Result<Self, ProfileError> {
        let store = SledStore::open(dir).map_err(KeystoreError::from)?;
        let ks = Keystore::create(store, passphrase, params, &mut *rng)?;
        Self::init(ks, account, rng)
    }

    /// Opens the profile in directory `dir`.
    ///
    /// # Errors
    /// [`KeystoreError::NoProfile`], [`KeystoreError::WrongPassphrase`],
    /// [`KeystoreError::PassphraseRequired`], ...
    pub fn open_dir(
        dir: &Path,
        passphrase: &Passphrase,
        rng: BoxRng,
    ) -> Result<Self, ProfileError> {
        let store = SledStore::open(dir).map_err(KeystoreError::from)?;
        Self::open(store, passphrase, rng)
    }
}

impl Profile<MemoryStore> {
    /// A profile in memory, without a passphrase (tests, throw-away bots).
    ///
    /// # Errors
    /// Never in practice (the memory store does not fail).
    pub fn in_memory(account: Account, rng: BoxRng) -> Result<Self, ProfileError> {
        Self::create(
            MemoryStore::new(),
            &Passphrase::None,
            KdfParams::INSECURE_FOR_TESTS,
            account,
            rng,
        )
    }
}

impl<S: ProfileStore> Profile<S> {
    /// Creates a profile in an empty store: data key, identity, account.
    ///
    /// # Errors
    /// [`KeystoreError::AlreadyExists`], or the backend failed.
    pub fn create(
        store: S,
        passphrase: &Passphrase,
        params: KdfParams,
        account: Account,
        mut rng: BoxRng,
    ) -> Result<Self, ProfileError> {
        let ks = Keystore::create(store, passphrase, params, &mut *rng)?;
        Self::init(ks, account, rng)
    }

    fn init(mut ks: Keystore<S>, account: Account, mut rng: BoxRng) -> Result<Self, ProfileError> {
        let identity = IdentityKeyPair::generate(&mut *rng);
        ks.put_bytes(&mut *rng, K_IDENTITY, &identity.to_secret_bytes()[..])?;
        ks.put(&mut *rng, K_ACCOUNT, &account)?;
        ks.flush()?;
        Ok(Self { ks, identity, rng })
    }

    /// Opens the profile in `store`.
    ///
    /// # Errors
    /// As [`Keystore::open`], and [`ProfileError::NoIdentity`].
    pub fn open(store: S, passphrase: &Passphrase, rng: BoxRng) -> Result<Self, ProfileError> {
        let ks = Keystore::open(store, passphrase)?;
        let secret = ks.get_bytes(K_IDENTITY)?.ok_or(ProfileError::NoIdentity)?;
        let secret: Zeroizing<[u8; 64]> =
            Zeroizing::new(secret[..].try_into().map_err(|_| KeystoreError::Corrupt)?);
        let identity = IdentityKeyPair::from_secret_bytes(&secret);
        Ok(Self { ks, identity, rng })
    }

    /// This device's identity.
    pub fn identity(&self) -> &IdentityKeyPair {
        &self.identity
    }

    /// Closes the profile, flushing it, and gives the store back.
    ///
    /// # Errors
    /// Backend failure on flush.
    pub fn close(mut self) -> Result<S, ProfileError> {
        self.ks.flush()?;
        Ok(self.ks.into_store())
    }

    /// The keystore (encrypted records).
    pub fn keystore(&self) -> &Keystore<S> {
        &self.ks
    }

    /// Reads a typed record.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, KeystoreError> {
        self.ks.get(key)
    }

    /// Writes a typed record.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn put<T: Serialize>(&mut self, key: &[u8], value: &T) -> Result<(), KeystoreError> {
        self.ks.put(&mut *self.rng, key, value)
    }

    /// Deletes a record.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn delete(&mut self, key: &[u8]) -> Result<(), KeystoreError> {
        self.ks.delete(key)
    }

    /// Makes writes durable.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn flush(&mut self) -> Result<(), KeystoreError> {
        self.ks.flush()
    }

    /// The account record.
    ///
    /// # Errors
    /// Keystore failure, or no account record.
    pub fn account(&self) -> Result<Account, KeystoreError> {
        self.ks.get(K_ACCOUNT)?.ok_or(KeystoreError::Corrupt)
    }

    /// Replaces the account record.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn set_account(&mut self, account: &Account) -> Result<(), KeystoreError> {
        self.put(K_ACCOUNT, account)
    }

    /// Settings (defaults if never saved).
    ///
    /// # Errors
    /// Keystore failure.
    pub fn settings(&self) -> Result<Settings, KeystoreError> {
        Ok(self.ks.get(K_SETTINGS)?.unwrap_or_default())
    }

    /// Saves settings.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn set_settings(&mut self, settings: &Settings) -> Result<(), KeystoreError> {
        self.put(K_SETTINGS, settings)
    }

    /// A contact by id.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn contact(&self, user: &UserId) -> Result<Option<Contact>, KeystoreError> {
        self.ks.get(&key(P_CONTACT, &[user.as_bytes()]))
    }

    /// Every contact.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn contacts(&self) -> Result<Vec<Contact>, KeystoreError> {
        Ok(self
            .ks
            .scan(P_CONTACT)?
            .into_iter()
            .map(|(_, c)| c)
            .collect())
    }

    /// A contact by name.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn contact_by_name(&self, name: &Username) -> Result<Option<Contact>, KeystoreError> {
        Ok(self.contacts()?.into_iter().find(|c| &c.username == name))
    }

    /// Saves a contact.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn save_contact(&mut self, contact: &Contact) -> Result<(), KeystoreError> {
        self.put(&key(P_CONTACT, &[contact.user.as_bytes()]), contact)
    }

    /// A room.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn room(&self, room: &RoomId) -> Result<Option<RoomState>, KeystoreError> {
        self.ks.get(&key(P_ROOM, &[room.as_bytes()]))
    }

    /// Every room.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn rooms(&self) -> Result<Vec<RoomState>, KeystoreError> {
        Ok(self.ks.scan(P_ROOM)?.into_iter().map(|(_, r)| r).collect())
    }

    /// Saves a room.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn save_room(&mut self, room: &RoomState) -> Result<(), KeystoreError> {
        self.put(&key(P_ROOM, &[room.room.as_bytes()]), room)
    }

    /// Every outbox entry, in creation order (`created_ms`, which the engine
    /// makes strictly increasing).
    ///
    /// # Errors
    /// Keystore failure.
    pub fn outbox(&self) -> Result<Vec<OutboxEntry>, KeystoreError> {
        let mut v: Vec<OutboxEntry> = self
            .ks
            .scan(P_OUTBOX)?
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        v.sort_by_key(|e| e.created_ms);
        Ok(v)
    }

    /// Saves an outbox entry.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn save_outbox(&mut self, e: &OutboxEntry) -> Result<(), KeystoreError> {
        self.put(&key(P_OUTBOX, &[e.id.as_bytes()]), e)
    }

    /// Removes an outbox entry.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn remove_outbox(&mut self, id: &MessageId) -> Result<(), KeystoreError> {
        self.delete(&key(P_OUTBOX, &[id.as_bytes()]))
    }

    /// Local history, oldest first.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn history(&self) -> Result<Vec<HistoryEntry>, KeystoreError> {
        Ok(self
            .ks
            .scan(P_HISTORY)?
            .into_iter()
            .map(|(_, e)| e)
            .collect())
    }

    /// The 1:1 conversation with `peer`, oldest first.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn conversation(&self, peer: &UserId) -> Result<Vec<HistoryEntry>, KeystoreError> {
        Ok(self
            .history()?
            .into_iter()
            .filter(|e| e.room.is_none() && e.peer.as_ref() == Some(peer))
            .collect())
    }

    /// A room's history, oldest first.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn room_history(&self, room: &RoomId) -> Result<Vec<HistoryEntry>, KeystoreError> {
        Ok(self
            .history()?
            .into_iter()
            .filter(|e| e.room.as_ref() == Some(room))
            .collect())
    }

    /// Appends to local history.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn add_history(&mut self, e: &HistoryEntry) -> Result<(), KeystoreError> {
        self.put(
            &key(P_HISTORY, &[&e.at_ms.to_be_bytes(), e.id.as_bytes()]),
            e,
        )
    }

    /// Whether a received message id was handled before.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn seen(&self, id: &MessageId) -> Result<bool, KeystoreError> {
        Ok(self.ks.get_bytes(&key(P_SEEN, &[id.as_bytes()]))?.is_some())
    }

    /// Records a received message id as handled.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn mark_seen(&mut self, id: &MessageId, now_ms: u64) -> Result<(), KeystoreError> {
        self.put(&key(P_SEEN, &[id.as_bytes()]), &now_ms)
    }

    /// Forgets handled message ids older than [`SEEN_RETENTION_MS`] before
    /// `now_ms`; returns how many went.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn prune_seen(&mut self, now_ms: u64) -> Result<usize, KeystoreError> {
        let cutoff = now_ms.saturating_sub(SEEN_RETENTION_MS);
        let old: Vec<Vec<u8>> = self
            .ks
            .scan::<u64>(P_SEEN)?
            .into_iter()
            .filter(|(_, t)| *t < cutoff)
            .map(|(k, _)| k)
            .collect();
        for k in &old {
            self.ks.delete(k)?;
        }
        Ok(old.len())
    }

    /// The last acked mailbox sequence number.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn last_acked(&self) -> Result<Option<Seq>, KeystoreError> {
        Ok(self.ks.get::<u64>(K_MAILBOX)?.map(Seq))
    }

    /// Records the last acked mailbox sequence number.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn set_last_acked(&mut self, seq: Seq) -> Result<(), KeystoreError> {
        self.put(K_MAILBOX, &seq.0)
    }
}
