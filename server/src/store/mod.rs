//! Durable state behind one trait: accounts, devices, prekeys, mailboxes and
//! contacts.
//!
//! The relay talks to storage only through [`Store`], so that a single relay
//! can run on sled ([`SledStore`]), tests on [`MemStore`], and a cluster later
//! on NATS JetStream, without the connection code knowing which. Every call
//! is short and synchronous except [`Store::flush`], which is what makes
//! earlier writes durable (group commit: many writers share one flush).
//!
//! Invariants every implementation keeps (the tests in this module run
//! against both):
//! - a username maps to at most one account, claimed atomically;
//! - a one-time prekey is handed out at most once, even to concurrent fetches;
//! - each device mailbox assigns strictly increasing, consecutive `Seq`s;
//! - a `(device, message id)` pair is stored at most once: a retransmission
//!   reports the first copy's seq and stores nothing;
//! - a mailbox never holds more than its quota.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use spider_protocol::ids::{
    BlobId, DeviceAddress, DeviceId, LinkToken, MessageId, RoomId, Seq, Timestamp, UserId,
};
use spider_protocol::keys::{
    IdentityKeys, KemPreKey, OneTimePreKey, PreKeyBundle, PreKeyCounts, SignedPreKey,
};
use spider_protocol::message::{Envelope, Role};
use spider_protocol::name::{RoomName, Username};

mod group_commit;
mod mem;
mod sled;

pub use self::group_commit::GroupCommit;
pub use self::mem::MemStore;
pub use self::sled::SledStore;

/// A boxed future, so that [`Store`] stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The username belongs to another account.
    #[error("username taken")]
    UsernameTaken,
    /// No such account.
    #[error("unknown user")]
    UnknownUser,
    /// The account already has its maximum number of devices.
    #[error("too many devices")]
    TooManyDevices,
    /// An upload would take a device over its one-time prekey stock limit.
    #[error("too many one-time prekeys")]
    TooManyPreKeys,
    /// The account already has its maximum number of contacts.
    #[error("too many contacts")]
    TooManyContacts,
    /// The room name belongs to another room.
    #[error("room name taken")]
    RoomNameTaken,
    /// The room changed since it was read: its epoch is now this.
    #[error("stale room epoch")]
    StaleEpoch(u64),
    /// A stored value does not decode: the database is damaged or was written
    /// by an incompatible version.
    #[error("corrupt record in {0}")]
    Corrupt(&'static str),
    /// The storage engine failed (I/O, disk full, ...).
    #[error("storage backend failed: {0}")]
    Backend(String),
}

/// An account as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Its name.
    pub username: Username,
    /// Its devices, in id order.
    pub devices: Vec<DeviceRecord>,
    /// The id the next added device gets. Ids are never reused.
    pub next_device: u32,
}

impl Account {
    /// The device with this id.
    pub fn device(&self, id: DeviceId) -> Option<&DeviceRecord> {
        self.devices.iter().find(|d| d.device == id)
    }
}

/// One device of an account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// Its id.
    pub device: DeviceId,
    /// Its identity keys (the signing key authenticates it).
    pub identity: IdentityKeys,
}

/// What happened to an envelope handed to [`Store::enqueue`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enqueued {
    /// Stored under this seq.
    Stored(Seq),
    /// This message id was already stored for this device (under this seq):
    /// nothing was stored.
    Duplicate(Seq),
    /// The mailbox is at its quota: nothing was stored.
    Full,
}

/// A room as stored: its whole state in one record, replaced atomically on
/// every change (bounded by `max_room_members` and `max_room_links`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomRecord {
    /// Its relay-wide name.
    pub name: RoomName,
    /// Its membership epoch: the number of changes applied since creation.
    pub epoch: u64,
    /// Members and their roles, in joining order.
    pub members: Vec<(UserId, Role)>,
    /// Accounts invited and not yet joined.
    pub invited: Vec<UserId>,
    /// Accounts that may not return.
    pub banned: Vec<UserId>,
    /// Live invite links.
    pub links: Vec<LinkRecord>,
}

impl RoomRecord {
    /// A member's role.
    pub fn role(&self, user: UserId) -> Option<Role> {
        self.members.iter().find(|m| m.0 == user).map(|m| m.1)
    }
    /// Accounts that can see the room: members and invitees.
    pub fn users(&self) -> impl Iterator<Item = UserId> + '_ {
        self.members
            .iter()
            .map(|m| m.0)
            .chain(self.invited.iter().copied())
    }
}

/// One invite link of a room.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRecord {
    /// Its secret.
    pub token: LinkToken,
    /// When it stops working, if ever.
    pub expires_at: Option<Timestamp>,
    /// Joins it still allows, if limited.
    pub uses_left: Option<u32>,
}

/// A stored blob's metadata (its bytes live in a file; see `crate::blobs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobMeta {
    /// The uploading account (its quota pays for it).
    pub owner: UserId,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes.
    pub digest: [u8; 32],
    /// When it is deleted.
    pub expires_at: Timestamp,
}

/// Durable relay state. See the module docs for the invariants.
pub trait Store: Send + Sync + 'static {
    /// Creates an account with its first device (id 1), claiming `username`.
    fn create_account(
        &self,
        user: UserId,
        username: &Username,
        identity: &IdentityKeys,
    ) -> Result<DeviceId, StoreError>;
    /// The account that holds this name.
    fn user_by_name(&self, username: &Username) -> Result<Option<UserId>, StoreError>;
    /// An account.
    fn account(&self, user: UserId) -> Result<Option<Account>, StoreError>;
    /// Adds a device to an account, unless it has `max_devices` already.
    fn add_device(
        &self,
        user: UserId,
        identity: &IdentityKeys,
        max_devices: usize,
    ) -> Result<DeviceId, StoreError>;

    /// Sets (replaces) a device's signed prekey.
    fn set_signed_prekey(&self, dev: DeviceAddress, key: &SignedPreKey) -> Result<(), StoreError>;
    /// Sets (replaces) a device's last-resort KEM prekey.
    fn set_last_resort_kem_prekey(
        &self,
        dev: DeviceAddress,
        key: &KemPreKey,
    ) -> Result<(), StoreError>;
    /// Adds one-time prekeys (a key with an id already held replaces it),
    /// refusing the whole upload if either stock would exceed `max_each`.
    fn add_one_time_prekeys(
        &self,
        dev: DeviceAddress,
        keys: &[OneTimePreKey],
        kem_keys: &[KemPreKey],
        max_each: usize,
    ) -> Result<PreKeyCounts, StoreError>;
    /// How many one-time prekeys a device has left.
    fn prekey_counts(&self, dev: DeviceAddress) -> Result<PreKeyCounts, StoreError>;
    /// Builds a bundle for a device, taking (removing) one one-time prekey of
    /// each kind if any is left. `None` if the device has no signed or
    /// last-resort KEM prekey.
    fn take_prekey_bundle(
        &self,
        dev: DeviceAddress,
        identity: &IdentityKeys,
    ) -> Result<Option<PreKeyBundle>, StoreError>;

    /// Stores an envelope for a device, unless its message id is already
    /// there or the mailbox holds `quota` envelopes.
    fn enqueue(
        &self,
        dev: DeviceAddress,
        message_id: MessageId,
        envelope: &Envelope,
        quota: u64,
    ) -> Result<Enqueued, StoreError>;
    /// The highest seq ever assigned in this mailbox.
    fn mailbox_high(&self, dev: DeviceAddress) -> Result<Option<Seq>, StoreError>;
    /// How many envelopes wait in this mailbox.
    fn mailbox_len(&self, dev: DeviceAddress) -> Result<u64, StoreError>;
    /// Envelopes with `after < seq <= up_to`, in seq order, at most `limit`.
    fn read_mailbox(
        &self,
        dev: DeviceAddress,
        after: Option<Seq>,
        up_to: Seq,
        limit: usize,
    ) -> Result<Vec<(Seq, Envelope)>, StoreError>;
    /// Deletes every envelope with `seq <= up_to`; returns how many.
    fn ack(&self, dev: DeviceAddress, up_to: Seq) -> Result<u64, StoreError>;
    /// Forgets message ids stored before `before` whose envelopes are gone
    /// (acked), so the dedup index does not grow forever; returns how many.
    /// A retransmission after that is stored and delivered again.
    fn prune_dedup(&self, before: Timestamp) -> Result<u64, StoreError>;

    /// Adds or removes a contact, keeping at most `max` per account.
    fn set_contact(
        &self,
        user: UserId,
        contact: UserId,
        add: bool,
        max: usize,
    ) -> Result<(), StoreError>;
    /// An account's contacts.
    fn contacts(&self, user: UserId) -> Result<Vec<UserId>, StoreError>;

    /// Sets an account's encrypted profile (opaque bytes).
    fn set_profile(&self, user: UserId, blob: &[u8]) -> Result<(), StoreError>;
    /// An account's encrypted profile, if set.
    fn profile(&self, user: UserId) -> Result<Option<Vec<u8>>, StoreError>;

    /// A room.
    fn room(&self, id: RoomId) -> Result<Option<RoomRecord>, StoreError>;
    /// The room that holds this name.
    fn room_by_name(&self, name: &RoomName) -> Result<Option<RoomId>, StoreError>;
    /// The room an invite link belongs to.
    fn room_by_link(&self, token: LinkToken) -> Result<Option<RoomId>, StoreError>;
    /// Writes a room atomically with its indexes (name, links, each user's
    /// rooms). `prev_epoch` `None` creates it, claiming its name
    /// ([`StoreError::RoomNameTaken`]); `Some(e)` replaces it only if its
    /// stored epoch is still `e` ([`StoreError::StaleEpoch`] otherwise).
    fn save_room(
        &self,
        id: RoomId,
        prev_epoch: Option<u64>,
        room: &RoomRecord,
    ) -> Result<(), StoreError>;
    /// The rooms an account is in (`true`) or invited to (`false`).
    fn user_rooms(&self, user: UserId) -> Result<Vec<(RoomId, bool)>, StoreError>;

    /// Records a stored blob.
    fn put_blob(&self, id: BlobId, meta: &BlobMeta) -> Result<(), StoreError>;
    /// A blob's metadata.
    fn blob(&self, id: BlobId) -> Result<Option<BlobMeta>, StoreError>;
    /// Forgets a blob.
    fn remove_blob(&self, id: BlobId) -> Result<(), StoreError>;
    /// Bytes of blobs an account has stored.
    fn blob_usage(&self, owner: UserId) -> Result<u64, StoreError>;
    /// Blobs that expire before `now`.
    fn expired_blobs(&self, now: Timestamp) -> Result<Vec<BlobId>, StoreError>;

    /// Makes every write before this call durable.
    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>>;
}

/// Key prefix of one device: user id then device id, big-endian so that the
/// keys of one device sort together and in order.
pub(crate) fn device_key(dev: DeviceAddress) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[..16].copy_from_slice(dev.user.as_bytes());
    k[16..].copy_from_slice(&dev.device.0.to_be_bytes());
    k
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use spider_protocol::bytes::{BoundedBytes, FixedBytes};
    use spider_protocol::ids::PreKeyId;
    use spider_protocol::message::EnvelopeBody;

    use super::*;

    pub(crate) fn identity(n: u8) -> IdentityKeys {
        IdentityKeys {
            signing: FixedBytes([n; 32]),
            dh: FixedBytes([n; 32]),
            binding: FixedBytes([n; 64]),
        }
    }

    fn envelope(n: u8) -> Envelope {
        Envelope {
            message_id: MessageId::from_bytes([n; 16]),
            from: DeviceAddress {
                user: UserId::from_bytes([9; 16]),
                device: DeviceId(1),
            },
            sent_at: Timestamp(1),
            body: EnvelopeBody::Direct {
                ciphertext: BoundedBytes::new(vec![n; 4]).unwrap(),
            },
        }
    }

    fn name(s: &str) -> Username {
        Username::parse(s).unwrap()
    }

    fn all_stores() -> Vec<(&'static str, Arc<dyn Store>, Option<tempfile::TempDir>)> {
        let dir = tempfile::tempdir().unwrap();
        let sled = SledStore::open(dir.path()).unwrap();
        vec![
            ("mem", Arc::new(MemStore::new()), None),
            ("sled", Arc::new(sled), Some(dir)),
        ]
    }

    #[test]
    fn usernames_are_claimed_once_and_devices_numbered() {
        for (kind, s, _dir) in all_stores() {
            let a = UserId::from_bytes([1; 16]);
            let b = UserId::from_bytes([2; 16]);
            assert_eq!(
                s.create_account(a, &name("alice"), &identity(1)).unwrap(),
                DeviceId(1)
            );
            assert!(
                matches!(
                    s.create_account(b, &name("alice"), &identity(2)),
                    Err(StoreError::UsernameTaken)
                ),
                "{kind}"
            );
            assert_eq!(s.user_by_name(&name("alice")).unwrap(), Some(a));
            assert_eq!(s.user_by_name(&name("bob")).unwrap(), None);
            assert_eq!(s.add_device(a, &identity(3), 2).unwrap(), DeviceId(2));
            assert!(matches!(
                s.add_device(a, &identity(4), 2),
                Err(StoreError::TooManyDevices)
            ));
            assert!(matches!(
                s.add_device(b, &identity(4), 2),
                Err(StoreError::UnknownUser)
            ));
            let acc = s.account(a).unwrap().unwrap();
            assert_eq!(acc.devices.len(), 2, "{kind}");
            assert_eq!(acc.device(DeviceId(2)).unwrap().identity, identity(3));
        }
    }

    #[test]
    fn mailbox_assigns_increasing_seqs_dedups_and_enforces_quota() {
        for (kind, s, _dir) in all_stores() {
            let dev = DeviceAddress {
                user: UserId::from_bytes([1; 16]),
                device: DeviceId(1),
            };
            assert_eq!(s.mailbox_high(dev).unwrap(), None);
            let m = |n| MessageId::from_bytes([n; 16]);
            assert_eq!(
                s.enqueue(dev, m(1), &envelope(1), 3).unwrap(),
                Enqueued::Stored(Seq(1))
            );
            assert_eq!(
                s.enqueue(dev, m(2), &envelope(2), 3).unwrap(),
                Enqueued::Stored(Seq(2))
            );
            assert_eq!(
                s.enqueue(dev, m(1), &envelope(1), 3).unwrap(),
                Enqueued::Duplicate(Seq(1)),
                "{kind}"
            );
            assert_eq!(
                s.enqueue(dev, m(3), &envelope(3), 3).unwrap(),
                Enqueued::Stored(Seq(3))
            );
            assert_eq!(
                s.enqueue(dev, m(4), &envelope(4), 3).unwrap(),
                Enqueued::Full
            );
            assert_eq!(s.mailbox_len(dev).unwrap(), 3);
            let got = s.read_mailbox(dev, Some(Seq(1)), Seq(3), 10).unwrap();
            assert_eq!(got.iter().map(|(q, _)| q.0).collect::<Vec<_>>(), vec![2, 3]);
            assert_eq!(got[0].1, envelope(2));
            assert_eq!(s.read_mailbox(dev, None, Seq(3), 1).unwrap().len(), 1);
            assert_eq!(s.ack(dev, Seq(2)).unwrap(), 2);
            assert_eq!(s.mailbox_len(dev).unwrap(), 1);
            // Acked and deleted, yet still known: a late retransmission is a duplicate.
            assert_eq!(
                s.enqueue(dev, m(1), &envelope(1), 3).unwrap(),
                Enqueued::Duplicate(Seq(1))
            );
            assert_eq!(
                s.enqueue(dev, m(5), &envelope(5), 3).unwrap(),
                Enqueued::Stored(Seq(4)),
                "{kind}"
            );
            assert_eq!(s.mailbox_high(dev).unwrap(), Some(Seq(4)));
        }
    }

    fn kem(id: u32) -> KemPreKey {
        KemPreKey {
            id: PreKeyId(id),
            public: FixedBytes([id as u8; 1184]),
            signature: FixedBytes([0; 64]),
        }
    }

    #[test]
    fn one_time_prekeys_are_handed_out_once_under_concurrent_fetches() {
        for (kind, s, _dir) in all_stores() {
            let dev = DeviceAddress {
                user: UserId::from_bytes([1; 16]),
                device: DeviceId(1),
            };
            s.set_signed_prekey(
                dev,
                &SignedPreKey {
                    id: PreKeyId(1),
                    public: FixedBytes([1; 32]),
                    signature: FixedBytes([1; 64]),
                },
            )
            .unwrap();
            s.set_last_resort_kem_prekey(dev, &kem(1000)).unwrap();
            let otks: Vec<_> = (0..40)
                .map(|i| OneTimePreKey {
                    id: PreKeyId(i),
                    public: FixedBytes([i as u8; 32]),
                })
                .collect();
            let kems: Vec<_> = (0..10).map(kem).collect();
            let c = s.add_one_time_prekeys(dev, &otks, &kems, 100).unwrap();
            assert_eq!((c.one_time, c.one_time_kem), (40, 10));
            assert!(s.add_one_time_prekeys(dev, &otks[..1], &[], 40).is_ok());
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let s = s.clone();
                    std::thread::spawn(move || {
                        let mut got = Vec::new();
                        for _ in 0..8 {
                            let b = s.take_prekey_bundle(dev, &identity(1)).unwrap().unwrap();
                            got.push((
                                b.one_time_prekey.map(|k| k.id.0),
                                b.kem_prekey.id.0,
                                b.kem_prekey_is_one_time,
                            ));
                        }
                        got
                    })
                })
                .collect();
            let all: Vec<_> = handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect();
            let mut otk_ids: Vec<u32> = all.iter().filter_map(|g| g.0).collect();
            otk_ids.sort_unstable();
            assert_eq!(otk_ids, (0..40).collect::<Vec<_>>(), "{kind}");
            let mut kem_ids: Vec<u32> = all.iter().filter(|g| g.2).map(|g| g.1).collect();
            kem_ids.sort_unstable();
            assert_eq!(kem_ids, (0..10).collect::<Vec<_>>(), "{kind}");
            assert!(all.iter().filter(|g| !g.2).all(|g| g.1 == 1000));
            let c = s.prekey_counts(dev).unwrap();
            assert_eq!((c.one_time, c.one_time_kem), (0, 0));
        }
    }

    #[test]
    fn prekey_stock_limit_refuses_the_whole_upload() {
        for (_, s, _dir) in all_stores() {
            let dev = DeviceAddress {
                user: UserId::from_bytes([1; 16]),
                device: DeviceId(1),
            };
            let otks: Vec<_> = (0..5)
                .map(|i| OneTimePreKey {
                    id: PreKeyId(i),
                    public: FixedBytes([0; 32]),
                })
                .collect();
            assert!(matches!(
                s.add_one_time_prekeys(dev, &otks, &[], 4),
                Err(StoreError::TooManyPreKeys)
            ));
            assert_eq!(s.prekey_counts(dev).unwrap().one_time, 0);
            s.add_one_time_prekeys(dev, &otks[..4], &[], 4).unwrap();
            // Re-uploading an id it holds replaces it and does not count twice.
            s.add_one_time_prekeys(dev, &otks[..1], &[], 4).unwrap();
            assert_eq!(s.prekey_counts(dev).unwrap().one_time, 4);
        }
    }

    #[test]
    fn dedup_entries_of_acked_envelopes_are_pruned_after_retention() {
        for (kind, s, _dir) in all_stores() {
            let dev = DeviceAddress {
                user: UserId::from_bytes([1; 16]),
                device: DeviceId(1),
            };
            let m = |n| MessageId::from_bytes([n; 16]);
            // envelope(n) is stored at Timestamp(1).
            s.enqueue(dev, m(1), &envelope(1), 10).unwrap();
            s.enqueue(dev, m(2), &envelope(2), 10).unwrap();
            s.ack(dev, Seq(1)).unwrap();
            // Too recent: nothing goes.
            assert_eq!(s.prune_dedup(Timestamp(1)).unwrap(), 0, "{kind}");
            // Old enough: the acked one goes, the waiting one stays.
            assert_eq!(s.prune_dedup(Timestamp(2)).unwrap(), 1, "{kind}");
            assert_eq!(
                s.enqueue(dev, m(2), &envelope(2), 10).unwrap(),
                Enqueued::Duplicate(Seq(2))
            );
            assert_eq!(
                s.enqueue(dev, m(1), &envelope(1), 10).unwrap(),
                Enqueued::Stored(Seq(3)),
                "{kind}"
            );
        }
    }

    #[test]
    fn profiles_are_replaced() {
        for (_, s, _dir) in all_stores() {
            let a = UserId::from_bytes([1; 16]);
            assert_eq!(s.profile(a).unwrap(), None);
            s.set_profile(a, b"one").unwrap();
            s.set_profile(a, b"two").unwrap();
            assert_eq!(s.profile(a).unwrap().as_deref(), Some(&b"two"[..]));
        }
    }

    #[test]
    fn contacts_are_added_removed_and_bounded() {
        for (_, s, _dir) in all_stores() {
            let a = UserId::from_bytes([1; 16]);
            let b = UserId::from_bytes([2; 16]);
            let c = UserId::from_bytes([3; 16]);
            s.set_contact(a, b, true, 1).unwrap();
            s.set_contact(a, b, true, 1).unwrap();
            assert!(s.set_contact(a, c, true, 1).is_err());
            assert_eq!(s.contacts(a).unwrap(), vec![b]);
            s.set_contact(a, b, false, 1).unwrap();
            assert!(s.contacts(a).unwrap().is_empty());
        }
    }

    fn room(name: &str, members: Vec<(UserId, Role)>, invited: Vec<UserId>) -> RoomRecord {
        RoomRecord {
            name: RoomName::parse(name).unwrap(),
            epoch: 1,
            members,
            invited,
            banned: Vec::new(),
            links: Vec::new(),
        }
    }

    #[test]
    fn rooms_claim_names_check_epochs_and_keep_indexes() {
        for (kind, s, _dir) in all_stores() {
            let a = UserId::from_bytes([1; 16]);
            let b = UserId::from_bytes([2; 16]);
            let r1 = RoomId::from_bytes([1; 16]);
            let r2 = RoomId::from_bytes([2; 16]);
            let mut one = room("one", vec![(a, Role::Owner)], vec![b]);
            s.save_room(r1, None, &one).unwrap();
            assert!(
                matches!(
                    s.save_room(r2, None, &room("one", vec![(b, Role::Owner)], vec![])),
                    Err(StoreError::RoomNameTaken)
                ),
                "{kind}"
            );
            assert_eq!(s.room_by_name(&one.name).unwrap(), Some(r1));
            assert_eq!(s.user_rooms(b).unwrap(), vec![(r1, false)]);
            let token = LinkToken::from_bytes([7; 16]);
            one.epoch = 2;
            one.invited.clear();
            one.members.push((b, Role::Member));
            one.links.push(LinkRecord {
                token,
                expires_at: None,
                uses_left: Some(1),
            });
            s.save_room(r1, Some(1), &one).unwrap();
            assert!(matches!(
                s.save_room(r1, Some(1), &one),
                Err(StoreError::StaleEpoch(2))
            ));
            assert_eq!(s.user_rooms(b).unwrap(), vec![(r1, true)], "{kind}");
            assert_eq!(s.room_by_link(token).unwrap(), Some(r1));
            one.epoch = 3;
            one.members.retain(|m| m.0 != b);
            one.links.clear();
            s.save_room(r1, Some(2), &one).unwrap();
            assert!(s.user_rooms(b).unwrap().is_empty(), "{kind}");
            assert_eq!(s.room_by_link(token).unwrap(), None);
            assert_eq!(s.room(r1).unwrap().unwrap(), one);
        }
    }

    #[test]
    fn blobs_count_against_their_owner_and_expire() {
        for (kind, s, _dir) in all_stores() {
            let a = UserId::from_bytes([1; 16]);
            let meta = |size, at| BlobMeta {
                owner: a,
                size,
                digest: [0; 32],
                expires_at: Timestamp(at),
            };
            let x = BlobId::from_bytes([1; 32]);
            let y = BlobId::from_bytes([2; 32]);
            s.put_blob(x, &meta(10, 100)).unwrap();
            s.put_blob(y, &meta(5, 200)).unwrap();
            assert_eq!(s.blob_usage(a).unwrap(), 15, "{kind}");
            assert_eq!(s.expired_blobs(Timestamp(150)).unwrap(), vec![x]);
            s.remove_blob(x).unwrap();
            assert_eq!(s.blob(x).unwrap(), None);
            assert_eq!(s.blob_usage(a).unwrap(), 5, "{kind}");
            assert_eq!(s.blob(y).unwrap(), Some(meta(5, 200)));
        }
    }
}
