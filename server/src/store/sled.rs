//! The sled store: the only module that calls sled.
//!
//! # Layout
//!
//! `dev` is the 20-byte device key: user id (16) then device id (u32 BE).
//! Integers in keys are big-endian so that sled's byte order is numeric order.
//!
//! | tree                   | key                          | value                               |
//! |------------------------|------------------------------|-------------------------------------|
//! | `usernames`            | username (UTF-8)             | user id (16)                        |
//! | `accounts`             | user id (16)                 | postcard [`Account`]                |
//! | `signed_prekeys`       | dev (20)                     | postcard `SignedPreKey`             |
//! | `kem_last_resort`      | dev (20)                     | postcard `KemPreKey`                |
//! | `one_time_prekeys`     | dev (20) ‖ prekey id (u32 BE)| X25519 public (32)                  |
//! | `one_time_kem_prekeys` | dev (20) ‖ prekey id (u32 BE)| postcard `KemPreKey`                |
//! | `mailbox`              | dev (20) ‖ seq (u64 BE)      | postcard `Envelope`                 |
//! | `mailbox_ids`          | dev (20) ‖ message id (16)   | seq (u64 BE) ‖ stored at (u64 BE, ms) |
//! | `mailbox_meta`         | dev (20)                     | highest seq (u64 BE) ‖ count (u64 BE) |
//! | `contacts`             | user id (16) ‖ contact (16)  | empty                               |
//! | `profiles`             | user id (16)                 | encrypted profile (opaque bytes)    |
//! | `rooms`                | room id (16)                 | postcard [`RoomRecord`]             |
//! | `room_names`           | room name (UTF-8)            | room id (16)                        |
//! | `room_links`           | link token (16)              | room id (16)                        |
//! | `user_rooms`           | user id (16) ‖ room id (16)  | 1 member / 0 invited (1 byte)       |
//! | `blobs`                | blob id (32)                 | postcard [`BlobMeta`]               |
//! | `blob_owners`          | user id (16) ‖ blob id (32)  | size (u64 BE)                       |
//!
//! A room change rewrites `rooms` and its three indexes in one transaction,
//! and only if the stored epoch is still the one the change was checked
//! against. Blob bytes are files (see `crate::blobs`), not sled values.
//!
//! Multi-tree changes (claiming a name, enqueueing, acking) run in sled
//! transactions; handing out a one-time prekey is a compare-and-swap removal,
//! so two fetches can never both get one key.
//!
//! `mailbox_ids` entries outlive the envelope they index, so that a
//! retransmission arriving after the recipient acked is still recognised,
//! until [`Store::prune_dedup`] forgets them after the retention period.
//!
//! # Durability
//!
//! sled writes go to its log in memory and reach the disk on
//! [`Store::flush`] (`flush_async`), which the relay awaits before it acks a
//! send. Concurrent flushes share one write and fsync (group commit). A power
//! cut loses what was written after the last completed flush: sends not yet
//! acked to their senders (who retransmit), acks of delivered envelopes (which
//! are then delivered again and deduplicated by the client), and prekey hand-outs
//! (a one-time prekey could be handed out twice across such a crash).
//!
//! # Writes never overlap a flush
//!
//! sled 0.34 deadlocks when a flush runs while transactions write: the
//! flusher holds the read side of sled's concurrency-control lock and waits
//! for in-flight writes, while the writing threads wait for its write side
//! (seen under spider-load: the whole relay stopped). So every mutating call
//! here holds the shared side of `gate`, a flush holds its exclusive side,
//! and sled's own periodic flusher is off: a flush starts only when no write
//! is in progress, and no write starts until it is done. A flush takes the
//! writes of every caller waiting behind it (group commit).

use std::path::Path;
use std::sync::{Arc, RwLock};

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use spider_protocol::bytes::FixedBytes;
use spider_protocol::ids::{
    BlobId, DeviceAddress, DeviceId, LinkToken, MessageId, PreKeyId, RoomId, Seq, Timestamp, UserId,
};
use spider_protocol::keys::{
    IdentityKeys, KemPreKey, OneTimePreKey, PreKeyBundle, PreKeyCounts, SignedPreKey,
};
use spider_protocol::message::Envelope;
use spider_protocol::name::{RoomName, Username};

use super::{
    Account, BlobMeta, BoxFuture, DeviceRecord, Enqueued, RoomRecord, Store, StoreError, device_key,
};

/// The relay's embedded store on sled.
pub struct SledStore {
    db: sled::Db,
    /// Shared by writes, exclusive for flushes (see the module docs).
    gate: Arc<RwLock<()>>,
    usernames: sled::Tree,
    accounts: sled::Tree,
    signed_prekeys: sled::Tree,
    kem_last_resort: sled::Tree,
    one_time_prekeys: sled::Tree,
    one_time_kem_prekeys: sled::Tree,
    mailbox: sled::Tree,
    mailbox_ids: sled::Tree,
    mailbox_meta: sled::Tree,
    contacts: sled::Tree,
    profiles: sled::Tree,
    rooms: sled::Tree,
    room_names: sled::Tree,
    room_links: sled::Tree,
    user_rooms: sled::Tree,
    blobs: sled::Tree,
    blob_owners: sled::Tree,
}

fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn tx_err(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => backend(e),
    }
}

fn abort(e: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e)
}

fn decode<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|_| StoreError::Corrupt(what))
}

fn encode<T: serde::Serialize>(v: &T, what: &'static str) -> Result<Vec<u8>, StoreError> {
    postcard::to_allocvec(v).map_err(|_| StoreError::Corrupt(what))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_be_bytes)
}

fn meta(high: u64, count: u64) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[..8].copy_from_slice(&high.to_be_bytes());
    m[8..].copy_from_slice(&count.to_be_bytes());
    m
}

fn keyed(prefix: &[u8], suffix: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + suffix.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(suffix);
    k
}

impl SledStore {
    /// Opens (or creates) the store in directory `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // No background flusher: flushes happen in `flush`, behind the gate.
        let db = sled::Config::new()
            .path(path)
            .flush_every_ms(None)
            .open()
            .map_err(backend)?;
        let t = |name: &str| db.open_tree(name).map_err(backend);
        Ok(Self {
            usernames: t("usernames")?,
            accounts: t("accounts")?,
            signed_prekeys: t("signed_prekeys")?,
            kem_last_resort: t("kem_last_resort")?,
            one_time_prekeys: t("one_time_prekeys")?,
            one_time_kem_prekeys: t("one_time_kem_prekeys")?,
            mailbox: t("mailbox")?,
            mailbox_ids: t("mailbox_ids")?,
            mailbox_meta: t("mailbox_meta")?,
            contacts: t("contacts")?,
            profiles: t("profiles")?,
            rooms: t("rooms")?,
            room_names: t("room_names")?,
            room_links: t("room_links")?,
            user_rooms: t("user_rooms")?,
            blobs: t("blobs")?,
            blob_owners: t("blob_owners")?,
            db,
            gate: Arc::new(RwLock::new(())),
        })
    }

    /// The shared side of the gate, held for the whole of a mutating call.
    fn writing(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        // A poisoned gate guards no data: carry on.
        self.gate.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes the first key under `prefix` by compare-and-swap, retrying
    /// when a concurrent taker won the race for it.
    fn take_first(
        tree: &sled::Tree,
        prefix: &[u8],
    ) -> Result<Option<(sled::IVec, sled::IVec)>, StoreError> {
        loop {
            let Some(first) = tree.scan_prefix(prefix).next() else {
                return Ok(None);
            };
            let (k, v) = first.map_err(backend)?;
            match tree
                .compare_and_swap(&k, Some(&v), None::<&[u8]>)
                .map_err(backend)?
            {
                Ok(()) => return Ok(Some((k, v))),
                Err(_) => continue,
            }
        }
    }
}

impl Store for SledStore {
    fn create_account(
        &self,
        user: UserId,
        username: &Username,
        identity: &IdentityKeys,
    ) -> Result<DeviceId, StoreError> {
        let _writing = self.writing();
        let account = Account {
            username: username.clone(),
            devices: vec![DeviceRecord {
                device: DeviceId(1),
                identity: identity.clone(),
            }],
            next_device: 2,
        };
        let value = encode(&account, "accounts")?;
        (&self.usernames, &self.accounts)
            .transaction(|(names, accounts)| {
                if names.get(username.as_str().as_bytes())?.is_some()
                    || accounts.get(user.as_bytes())?.is_some()
                {
                    return Err(abort(StoreError::UsernameTaken));
                }
                names.insert(username.as_str().as_bytes(), &user.as_bytes()[..])?;
                accounts.insert(&user.as_bytes()[..], value.as_slice())?;
                Ok(())
            })
            .map_err(tx_err)?;
        Ok(DeviceId(1))
    }

    fn user_by_name(&self, username: &Username) -> Result<Option<UserId>, StoreError> {
        match self
            .usernames
            .get(username.as_str().as_bytes())
            .map_err(backend)?
        {
            Some(v) => UserId::try_from(&v[..])
                .map(Some)
                .map_err(|_| StoreError::Corrupt("usernames")),
            None => Ok(None),
        }
    }

    fn account(&self, user: UserId) -> Result<Option<Account>, StoreError> {
        match self.accounts.get(user.as_bytes()).map_err(backend)? {
            Some(v) => decode(&v, "accounts").map(Some),
            None => Ok(None),
        }
    }

    fn add_device(
        &self,
        user: UserId,
        identity: &IdentityKeys,
        max_devices: usize,
    ) -> Result<DeviceId, StoreError> {
        let _writing = self.writing();
        self.accounts
            .transaction(|accounts| {
                let Some(v) = accounts.get(user.as_bytes())? else {
                    return Err(abort(StoreError::UnknownUser));
                };
                let mut acc: Account = decode(&v, "accounts").map_err(abort)?;
                if acc.devices.len() >= max_devices {
                    return Err(abort(StoreError::TooManyDevices));
                }
                let id = DeviceId(acc.next_device);
                acc.next_device = acc.next_device.saturating_add(1);
                acc.devices.push(DeviceRecord {
                    device: id,
                    identity: identity.clone(),
                });
                accounts.insert(
                    &user.as_bytes()[..],
                    encode(&acc, "accounts").map_err(abort)?,
                )?;
                Ok(id)
            })
            .map_err(tx_err)
    }

    fn set_signed_prekey(&self, dev: DeviceAddress, key: &SignedPreKey) -> Result<(), StoreError> {
        let _writing = self.writing();
        self.signed_prekeys
            .insert(device_key(dev), encode(key, "signed_prekeys")?)
            .map_err(backend)?;
        Ok(())
    }

    fn set_last_resort_kem_prekey(
        &self,
        dev: DeviceAddress,
        key: &KemPreKey,
    ) -> Result<(), StoreError> {
        let _writing = self.writing();
        self.kem_last_resort
            .insert(device_key(dev), encode(key, "kem_last_resort")?)
            .map_err(backend)?;
        Ok(())
    }

    fn add_one_time_prekeys(
        &self,
        dev: DeviceAddress,
        keys: &[OneTimePreKey],
        kem_keys: &[KemPreKey],
        max_each: usize,
    ) -> Result<PreKeyCounts, StoreError> {
        let _writing = self.writing();
        let prefix = device_key(dev);
        // Only the owning device uploads, so the check-then-insert below races
        // at most with takers (which only lower the counts).
        let mut new_otk = std::collections::BTreeSet::new();
        for k in keys {
            let key = keyed(&prefix, &k.id.0.to_be_bytes());
            if !self.one_time_prekeys.contains_key(&key).map_err(backend)? {
                new_otk.insert(k.id.0);
            }
        }
        let mut new_kem = std::collections::BTreeSet::new();
        for k in kem_keys {
            let key = keyed(&prefix, &k.id.0.to_be_bytes());
            if !self
                .one_time_kem_prekeys
                .contains_key(&key)
                .map_err(backend)?
            {
                new_kem.insert(k.id.0);
            }
        }
        let now = self.prekey_counts(dev)?;
        if now.one_time as usize + new_otk.len() > max_each
            || now.one_time_kem as usize + new_kem.len() > max_each
        {
            return Err(StoreError::TooManyPreKeys);
        }
        let mut batch = sled::Batch::default();
        for k in keys {
            batch.insert(keyed(&prefix, &k.id.0.to_be_bytes()), &k.public.0[..]);
        }
        self.one_time_prekeys.apply_batch(batch).map_err(backend)?;
        let mut batch = sled::Batch::default();
        for k in kem_keys {
            batch.insert(
                keyed(&prefix, &k.id.0.to_be_bytes()),
                encode(k, "one_time_kem_prekeys")?,
            );
        }
        self.one_time_kem_prekeys
            .apply_batch(batch)
            .map_err(backend)?;
        self.prekey_counts(dev)
    }

    fn prekey_counts(&self, dev: DeviceAddress) -> Result<PreKeyCounts, StoreError> {
        let prefix = device_key(dev);
        // Stocks are bounded by `max_one_time_prekeys`, so counting is cheap.
        let one_time = self.one_time_prekeys.scan_prefix(prefix).keys().count() as u32;
        let one_time_kem = self.one_time_kem_prekeys.scan_prefix(prefix).keys().count() as u32;
        Ok(PreKeyCounts {
            one_time,
            one_time_kem,
        })
    }

    fn take_prekey_bundle(
        &self,
        dev: DeviceAddress,
        identity: &IdentityKeys,
    ) -> Result<Option<PreKeyBundle>, StoreError> {
        let _writing = self.writing();
        let prefix = device_key(dev);
        let Some(signed) = self.signed_prekeys.get(prefix).map_err(backend)? else {
            return Ok(None);
        };
        let signed: SignedPreKey = decode(&signed, "signed_prekeys")?;
        let Some(last_resort) = self.kem_last_resort.get(prefix).map_err(backend)? else {
            return Ok(None);
        };
        let one_time_prekey = match Self::take_first(&self.one_time_prekeys, &prefix)? {
            Some((k, v)) => Some(OneTimePreKey {
                id: PreKeyId(
                    k.get(20..24)
                        .and_then(|b| <[u8; 4]>::try_from(b).ok())
                        .map(u32::from_be_bytes)
                        .ok_or(StoreError::Corrupt("one_time_prekeys"))?,
                ),
                public: FixedBytes::try_from(&v[..])
                    .map_err(|_| StoreError::Corrupt("one_time_prekeys"))?,
            }),
            None => None,
        };
        let (kem_prekey, kem_prekey_is_one_time) =
            match Self::take_first(&self.one_time_kem_prekeys, &prefix)? {
                Some((_, v)) => (decode(&v, "one_time_kem_prekeys")?, true),
                None => (decode(&last_resort, "kem_last_resort")?, false),
            };
        Ok(Some(PreKeyBundle {
            device: dev.device,
            identity: identity.clone(),
            signed_prekey: signed,
            kem_prekey,
            kem_prekey_is_one_time,
            one_time_prekey,
        }))
    }

    fn enqueue(
        &self,
        dev: DeviceAddress,
        message_id: MessageId,
        envelope: &Envelope,
        quota: u64,
    ) -> Result<Enqueued, StoreError> {
        let _writing = self.writing();
        let prefix = device_key(dev);
        let id_key = keyed(&prefix, message_id.as_bytes());
        let value = encode(envelope, "mailbox")?;
        let stored_at = envelope.sent_at.0;
        (&self.mailbox_meta, &self.mailbox, &self.mailbox_ids)
            .transaction(|(meta_t, mailbox, ids)| {
                if let Some(seq) = ids.get(&id_key)? {
                    return Ok(Enqueued::Duplicate(Seq(u64_at(&seq, 0))));
                }
                let (high, count) = match meta_t.get(prefix)? {
                    Some(m) => (u64_at(&m, 0), u64_at(&m, 8)),
                    None => (0, 0),
                };
                if count >= quota {
                    return Ok(Enqueued::Full);
                }
                let seq = high + 1;
                mailbox.insert(keyed(&prefix, &seq.to_be_bytes()), value.as_slice())?;
                ids.insert(id_key.as_slice(), &meta(seq, stored_at)[..])?;
                meta_t.insert(&prefix[..], &meta(seq, count + 1)[..])?;
                Ok(Enqueued::Stored(Seq(seq)))
            })
            .map_err(tx_err)
    }

    fn mailbox_high(&self, dev: DeviceAddress) -> Result<Option<Seq>, StoreError> {
        Ok(self
            .mailbox_meta
            .get(device_key(dev))
            .map_err(backend)?
            .map(|m| u64_at(&m, 0))
            .filter(|h| *h > 0)
            .map(Seq))
    }

    fn mailbox_len(&self, dev: DeviceAddress) -> Result<u64, StoreError> {
        Ok(self
            .mailbox_meta
            .get(device_key(dev))
            .map_err(backend)?
            .map_or(0, |m| u64_at(&m, 8)))
    }

    fn read_mailbox(
        &self,
        dev: DeviceAddress,
        after: Option<Seq>,
        up_to: Seq,
        limit: usize,
    ) -> Result<Vec<(Seq, Envelope)>, StoreError> {
        let prefix = device_key(dev);
        let from = after.map_or(0, |s| s.0.saturating_add(1));
        if from > up_to.0 {
            return Ok(Vec::new());
        }
        let lo = keyed(&prefix, &from.to_be_bytes());
        let hi = keyed(&prefix, &up_to.0.to_be_bytes());
        let mut out = Vec::new();
        for item in self.mailbox.range(lo..=hi).take(limit) {
            let (k, v) = item.map_err(backend)?;
            out.push((Seq(u64_at(&k, 20)), decode(&v, "mailbox")?));
        }
        Ok(out)
    }

    fn ack(&self, dev: DeviceAddress, up_to: Seq) -> Result<u64, StoreError> {
        let _writing = self.writing();
        let prefix = device_key(dev);
        let lo = keyed(&prefix, &0u64.to_be_bytes());
        let hi = keyed(&prefix, &up_to.0.to_be_bytes());
        let mut total = 0;
        loop {
            // Bounded batches keep each transaction small.
            let keys: Vec<sled::IVec> = self
                .mailbox
                .range(lo.as_slice()..=hi.as_slice())
                .keys()
                .take(512)
                .collect::<Result<_, _>>()
                .map_err(backend)?;
            if keys.is_empty() {
                return Ok(total);
            }
            total += (&self.mailbox_meta, &self.mailbox)
                .transaction(|(meta_t, mailbox)| {
                    let mut removed = 0u64;
                    for k in &keys {
                        if mailbox.remove(k)?.is_some() {
                            removed += 1;
                        }
                    }
                    if let Some(m) = meta_t.get(prefix)? {
                        let (high, count) = (u64_at(&m, 0), u64_at(&m, 8));
                        meta_t
                            .insert(&prefix[..], &meta(high, count.saturating_sub(removed))[..])?;
                    }
                    Ok(removed)
                })
                .map_err(tx_err)?;
        }
    }

    fn prune_dedup(&self, before: Timestamp) -> Result<u64, StoreError> {
        let _writing = self.writing();
        let mut n = 0;
        for item in self.mailbox_ids.iter() {
            let (k, v) = item.map_err(backend)?;
            if u64_at(&v, 8) >= before.0 {
                continue;
            }
            let Some(dev) = k.get(..20) else {
                continue;
            };
            let envelope_key = keyed(dev, &u64_at(&v, 0).to_be_bytes());
            if self.mailbox.contains_key(envelope_key).map_err(backend)? {
                continue;
            }
            // Only if unchanged since read: a concurrent enqueue wins.
            if self
                .mailbox_ids
                .compare_and_swap(&k, Some(&v), None::<&[u8]>)
                .map_err(backend)?
                .is_ok()
            {
                n += 1;
            }
        }
        Ok(n)
    }

    fn set_contact(
        &self,
        user: UserId,
        contact: UserId,
        add: bool,
        max: usize,
    ) -> Result<(), StoreError> {
        let _writing = self.writing();
        let key = keyed(user.as_bytes(), contact.as_bytes());
        if !add {
            self.contacts.remove(key).map_err(backend)?;
            return Ok(());
        }
        if self.contacts.contains_key(&key).map_err(backend)? {
            return Ok(());
        }
        if self.contacts.scan_prefix(user.as_bytes()).keys().count() >= max {
            return Err(StoreError::TooManyContacts);
        }
        self.contacts.insert(key, &[][..]).map_err(backend)?;
        Ok(())
    }

    fn contacts(&self, user: UserId) -> Result<Vec<UserId>, StoreError> {
        let mut out = Vec::new();
        for k in self.contacts.scan_prefix(user.as_bytes()).keys() {
            let k = k.map_err(backend)?;
            let c = k
                .get(16..32)
                .and_then(|b| UserId::try_from(b).ok())
                .ok_or(StoreError::Corrupt("contacts"))?;
            out.push(c);
        }
        Ok(out)
    }

    fn set_profile(&self, user: UserId, blob: &[u8]) -> Result<(), StoreError> {
        let _writing = self.writing();
        self.profiles
            .insert(user.as_bytes(), blob)
            .map_err(backend)?;
        Ok(())
    }

    fn profile(&self, user: UserId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .profiles
            .get(user.as_bytes())
            .map_err(backend)?
            .map(|v| v.to_vec()))
    }

    fn room(&self, id: RoomId) -> Result<Option<RoomRecord>, StoreError> {
        match self.rooms.get(id.as_bytes()).map_err(backend)? {
            Some(v) => decode(&v, "rooms").map(Some),
            None => Ok(None),
        }
    }

    fn room_by_name(&self, name: &RoomName) -> Result<Option<RoomId>, StoreError> {
        match self
            .room_names
            .get(name.as_str().as_bytes())
            .map_err(backend)?
        {
            Some(v) => RoomId::try_from(&v[..])
                .map(Some)
                .map_err(|_| StoreError::Corrupt("room_names")),
            None => Ok(None),
        }
    }

    fn room_by_link(&self, token: LinkToken) -> Result<Option<RoomId>, StoreError> {
        match self.room_links.get(token.as_bytes()).map_err(backend)? {
            Some(v) => RoomId::try_from(&v[..])
                .map(Some)
                .map_err(|_| StoreError::Corrupt("room_links")),
            None => Ok(None),
        }
    }

    fn save_room(
        &self,
        id: RoomId,
        prev_epoch: Option<u64>,
        room: &RoomRecord,
    ) -> Result<(), StoreError> {
        let _writing = self.writing();
        let value = encode(room, "rooms")?;
        let rid = id.as_bytes();
        (
            &self.rooms,
            &self.room_names,
            &self.room_links,
            &self.user_rooms,
        )
            .transaction(|(rooms, names, links, users)| {
                let old: Option<RoomRecord> = match rooms.get(rid)? {
                    Some(v) => Some(decode(&v, "rooms").map_err(abort)?),
                    None => None,
                };
                match (&old, prev_epoch) {
                    (None, None) => {
                        if names.get(room.name.as_str().as_bytes())?.is_some() {
                            return Err(abort(StoreError::RoomNameTaken));
                        }
                        names.insert(room.name.as_str().as_bytes(), &rid[..])?;
                    }
                    (Some(o), Some(e)) if o.epoch == e => {}
                    (Some(o), _) => return Err(abort(StoreError::StaleEpoch(o.epoch))),
                    (None, Some(_)) => return Err(abort(StoreError::StaleEpoch(0))),
                }
                if let Some(o) = &old {
                    for u in o.users() {
                        users.remove(keyed(u.as_bytes(), rid))?;
                    }
                    for l in &o.links {
                        links.remove(&l.token.as_bytes()[..])?;
                    }
                }
                for (u, _) in &room.members {
                    users.insert(keyed(u.as_bytes(), rid), &[1u8][..])?;
                }
                for u in &room.invited {
                    users.insert(keyed(u.as_bytes(), rid), &[0u8][..])?;
                }
                for l in &room.links {
                    links.insert(&l.token.as_bytes()[..], &rid[..])?;
                }
                rooms.insert(&rid[..], value.as_slice())?;
                Ok(())
            })
            .map_err(tx_err)
    }

    fn user_rooms(&self, user: UserId) -> Result<Vec<(RoomId, bool)>, StoreError> {
        let mut out = Vec::new();
        for item in self.user_rooms.scan_prefix(user.as_bytes()) {
            let (k, v) = item.map_err(backend)?;
            let r = k
                .get(16..32)
                .and_then(|b| RoomId::try_from(b).ok())
                .ok_or(StoreError::Corrupt("user_rooms"))?;
            out.push((r, v.first() == Some(&1)));
        }
        Ok(out)
    }

    fn put_blob(&self, id: BlobId, meta: &BlobMeta) -> Result<(), StoreError> {
        let _writing = self.writing();
        let value = encode(meta, "blobs")?;
        (&self.blobs, &self.blob_owners)
            .transaction(|(blobs, owners)| {
                blobs.insert(&id.as_bytes()[..], value.as_slice())?;
                owners.insert(
                    keyed(meta.owner.as_bytes(), id.as_bytes()),
                    &meta.size.to_be_bytes()[..],
                )?;
                Ok(())
            })
            .map_err(tx_err)
    }

    fn blob(&self, id: BlobId) -> Result<Option<BlobMeta>, StoreError> {
        match self.blobs.get(id.as_bytes()).map_err(backend)? {
            Some(v) => decode(&v, "blobs").map(Some),
            None => Ok(None),
        }
    }

    fn remove_blob(&self, id: BlobId) -> Result<(), StoreError> {
        let _writing = self.writing();
        (&self.blobs, &self.blob_owners)
            .transaction(|(blobs, owners)| {
                if let Some(v) = blobs.remove(&id.as_bytes()[..])? {
                    let meta: BlobMeta = decode(&v, "blobs").map_err(abort)?;
                    owners.remove(keyed(meta.owner.as_bytes(), id.as_bytes()))?;
                }
                Ok(())
            })
            .map_err(tx_err)
    }

    fn blob_usage(&self, owner: UserId) -> Result<u64, StoreError> {
        let mut total = 0u64;
        for v in self.blob_owners.scan_prefix(owner.as_bytes()).values() {
            total = total.saturating_add(u64_at(&v.map_err(backend)?, 0));
        }
        Ok(total)
    }

    fn expired_blobs(&self, now: Timestamp) -> Result<Vec<BlobId>, StoreError> {
        let mut out = Vec::new();
        for item in self.blobs.iter() {
            let (k, v) = item.map_err(backend)?;
            let meta: BlobMeta = decode(&v, "blobs")?;
            if meta.expires_at < now {
                out.push(BlobId::try_from(&k[..]).map_err(|_| StoreError::Corrupt("blobs"))?);
            }
        }
        Ok(out)
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        let (db, gate) = (self.db.clone(), self.gate.clone());
        Box::pin(async move {
            // fsync blocks: off the async workers, behind the gate.
            tokio::task::spawn_blocking(move || {
                let _flushing = gate.write().unwrap_or_else(|p| p.into_inner());
                db.flush()
            })
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?
            .map_err(backend)?;
            Ok(())
        })
    }
}
