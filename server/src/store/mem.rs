//! The in-memory store, for unit tests and throwaway relays. It keeps the
//! same invariants as the sled store under one lock; nothing is durable.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use spider_protocol::ids::{
    BlobId, DeviceAddress, DeviceId, LinkToken, MessageId, RoomId, Seq, Timestamp, UserId,
};
use spider_protocol::keys::{
    IdentityKeys, KemPreKey, OneTimePreKey, PreKeyBundle, PreKeyCounts, SignedPreKey,
};
use spider_protocol::message::Envelope;
use spider_protocol::name::{RoomName, Username};

use super::{Account, BlobMeta, BoxFuture, DeviceRecord, Enqueued, RoomRecord, Store, StoreError};

#[derive(Default)]
struct DeviceKeys {
    signed: Option<SignedPreKey>,
    last_resort: Option<KemPreKey>,
    one_time: BTreeMap<u32, OneTimePreKey>,
    one_time_kem: BTreeMap<u32, KemPreKey>,
}

#[derive(Default)]
struct Mailbox {
    high: u64,
    envelopes: BTreeMap<u64, Envelope>,
    /// Message id to (seq, stored at).
    seen: HashMap<MessageId, (u64, u64)>,
}

#[derive(Default)]
struct Inner {
    names: HashMap<String, UserId>,
    accounts: HashMap<UserId, Account>,
    keys: HashMap<DeviceAddress, DeviceKeys>,
    mailboxes: HashMap<DeviceAddress, Mailbox>,
    contacts: HashMap<UserId, Vec<UserId>>,
    profiles: HashMap<UserId, Vec<u8>>,
    rooms: HashMap<RoomId, RoomRecord>,
    room_names: HashMap<String, RoomId>,
    links: HashMap<LinkToken, RoomId>,
    user_rooms: HashMap<UserId, BTreeMap<RoomId, bool>>,
    blobs: HashMap<BlobId, BlobMeta>,
}

/// Everything in memory, behind one `std::sync::Mutex`: every operation is
/// short and never awaits while holding it (mini-redis `db.rs` reasoning).
#[derive(Default)]
pub struct MemStore {
    inner: Mutex<Inner>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-done change:
        // each operation checks before it mutates. Keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for MemStore {
    fn create_account(
        &self,
        user: UserId,
        username: &Username,
        identity: &IdentityKeys,
    ) -> Result<DeviceId, StoreError> {
        let mut g = self.lock();
        if g.names.contains_key(username.as_str()) || g.accounts.contains_key(&user) {
            return Err(StoreError::UsernameTaken);
        }
        g.names.insert(username.as_str().to_owned(), user);
        g.accounts.insert(
            user,
            Account {
                username: username.clone(),
                devices: vec![DeviceRecord {
                    device: DeviceId(1),
                    identity: identity.clone(),
                }],
                next_device: 2,
            },
        );
        Ok(DeviceId(1))
    }

    fn user_by_name(&self, username: &Username) -> Result<Option<UserId>, StoreError> {
        Ok(self.lock().names.get(username.as_str()).copied())
    }

    fn account(&self, user: UserId) -> Result<Option<Account>, StoreError> {
        Ok(self.lock().accounts.get(&user).cloned())
    }

    fn add_device(
        &self,
        user: UserId,
        identity: &IdentityKeys,
        max_devices: usize,
    ) -> Result<DeviceId, StoreError> {
        let mut g = self.lock();
        let acc = g.accounts.get_mut(&user).ok_or(StoreError::UnknownUser)?;
        if acc.devices.len() >= max_devices {
            return Err(StoreError::TooManyDevices);
        }
        let id = DeviceId(acc.next_device);
        acc.next_device = acc.next_device.saturating_add(1);
        acc.devices.push(DeviceRecord {
            device: id,
            identity: identity.clone(),
        });
        Ok(id)
    }

    fn set_signed_prekey(&self, dev: DeviceAddress, key: &SignedPreKey) -> Result<(), StoreError> {
        self.lock().keys.entry(dev).or_default().signed = Some(key.clone());
        Ok(())
    }

    fn set_last_resort_kem_prekey(
        &self,
        dev: DeviceAddress,
        key: &KemPreKey,
    ) -> Result<(), StoreError> {
        self.lock().keys.entry(dev).or_default().last_resort = Some(key.clone());
        Ok(())
    }

    fn add_one_time_prekeys(
        &self,
        dev: DeviceAddress,
        keys: &[OneTimePreKey],
        kem_keys: &[KemPreKey],
        max_each: usize,
    ) -> Result<PreKeyCounts, StoreError> {
        let mut g = self.lock();
        let k = g.keys.entry(dev).or_default();
        let new_otk: HashSet<u32> = keys
            .iter()
            .map(|k| k.id.0)
            .filter(|id| !k.one_time.contains_key(id))
            .collect();
        let new_kem: HashSet<u32> = kem_keys
            .iter()
            .map(|k| k.id.0)
            .filter(|id| !k.one_time_kem.contains_key(id))
            .collect();
        if k.one_time.len() + new_otk.len() > max_each
            || k.one_time_kem.len() + new_kem.len() > max_each
        {
            return Err(StoreError::TooManyPreKeys);
        }
        for key in keys {
            k.one_time.insert(key.id.0, key.clone());
        }
        for key in kem_keys {
            k.one_time_kem.insert(key.id.0, key.clone());
        }
        Ok(counts(k))
    }

    fn prekey_counts(&self, dev: DeviceAddress) -> Result<PreKeyCounts, StoreError> {
        Ok(self.lock().keys.get(&dev).map_or(
            PreKeyCounts {
                one_time: 0,
                one_time_kem: 0,
            },
            counts,
        ))
    }

    fn take_prekey_bundle(
        &self,
        dev: DeviceAddress,
        identity: &IdentityKeys,
    ) -> Result<Option<PreKeyBundle>, StoreError> {
        let mut g = self.lock();
        let Some(k) = g.keys.get_mut(&dev) else {
            return Ok(None);
        };
        let (Some(signed), Some(last_resort)) = (k.signed.clone(), k.last_resort.clone()) else {
            return Ok(None);
        };
        let one_time = k.one_time.pop_first().map(|(_, v)| v);
        let (kem_prekey, kem_prekey_is_one_time) = match k.one_time_kem.pop_first() {
            Some((_, v)) => (v, true),
            None => (last_resort, false),
        };
        Ok(Some(PreKeyBundle {
            device: dev.device,
            identity: identity.clone(),
            signed_prekey: signed,
            kem_prekey,
            kem_prekey_is_one_time,
            one_time_prekey: one_time,
        }))
    }

    fn enqueue(
        &self,
        dev: DeviceAddress,
        message_id: MessageId,
        envelope: &Envelope,
        quota: u64,
    ) -> Result<Enqueued, StoreError> {
        let mut g = self.lock();
        let mb = g.mailboxes.entry(dev).or_default();
        if let Some((seq, _)) = mb.seen.get(&message_id) {
            return Ok(Enqueued::Duplicate(Seq(*seq)));
        }
        if mb.envelopes.len() as u64 >= quota {
            return Ok(Enqueued::Full);
        }
        mb.high += 1;
        let seq = mb.high;
        mb.envelopes.insert(seq, envelope.clone());
        mb.seen.insert(message_id, (seq, envelope.sent_at.0));
        Ok(Enqueued::Stored(Seq(seq)))
    }

    fn mailbox_high(&self, dev: DeviceAddress) -> Result<Option<Seq>, StoreError> {
        Ok(self
            .lock()
            .mailboxes
            .get(&dev)
            .and_then(|m| (m.high > 0).then_some(Seq(m.high))))
    }

    fn mailbox_len(&self, dev: DeviceAddress) -> Result<u64, StoreError> {
        Ok(self
            .lock()
            .mailboxes
            .get(&dev)
            .map_or(0, |m| m.envelopes.len() as u64))
    }

    fn read_mailbox(
        &self,
        dev: DeviceAddress,
        after: Option<Seq>,
        up_to: Seq,
        limit: usize,
    ) -> Result<Vec<(Seq, Envelope)>, StoreError> {
        let g = self.lock();
        let Some(mb) = g.mailboxes.get(&dev) else {
            return Ok(Vec::new());
        };
        let from = after.map_or(0, |s| s.0.saturating_add(1));
        if from > up_to.0 {
            return Ok(Vec::new());
        }
        Ok(mb
            .envelopes
            .range(from..=up_to.0)
            .take(limit)
            .map(|(s, e)| (Seq(*s), e.clone()))
            .collect())
    }

    fn ack(&self, dev: DeviceAddress, up_to: Seq) -> Result<u64, StoreError> {
        let mut g = self.lock();
        let Some(mb) = g.mailboxes.get_mut(&dev) else {
            return Ok(0);
        };
        let keep = mb.envelopes.split_off(&up_to.0.saturating_add(1));
        let removed = mb.envelopes.len() as u64;
        mb.envelopes = keep;
        Ok(removed)
    }

    fn prune_dedup(&self, before: Timestamp) -> Result<u64, StoreError> {
        let mut g = self.lock();
        let mut n = 0;
        for mb in g.mailboxes.values_mut() {
            let envelopes = &mb.envelopes;
            let len = mb.seen.len();
            mb.seen
                .retain(|_, (seq, at)| *at >= before.0 || envelopes.contains_key(seq));
            n += (len - mb.seen.len()) as u64;
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
        let mut g = self.lock();
        let list = g.contacts.entry(user).or_default();
        let present = list.contains(&contact);
        if add && !present {
            if list.len() >= max {
                return Err(StoreError::TooManyContacts);
            }
            list.push(contact);
            list.sort_unstable();
        } else if !add {
            list.retain(|c| *c != contact);
        }
        Ok(())
    }

    fn contacts(&self, user: UserId) -> Result<Vec<UserId>, StoreError> {
        Ok(self.lock().contacts.get(&user).cloned().unwrap_or_default())
    }

    fn set_profile(&self, user: UserId, blob: &[u8]) -> Result<(), StoreError> {
        self.lock().profiles.insert(user, blob.to_vec());
        Ok(())
    }

    fn profile(&self, user: UserId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().profiles.get(&user).cloned())
    }

    fn room(&self, id: RoomId) -> Result<Option<RoomRecord>, StoreError> {
        Ok(self.lock().rooms.get(&id).cloned())
    }

    fn room_by_name(&self, name: &RoomName) -> Result<Option<RoomId>, StoreError> {
        Ok(self.lock().room_names.get(name.as_str()).copied())
    }

    fn room_by_link(&self, token: LinkToken) -> Result<Option<RoomId>, StoreError> {
        Ok(self.lock().links.get(&token).copied())
    }

    fn save_room(
        &self,
        id: RoomId,
        prev_epoch: Option<u64>,
        room: &RoomRecord,
    ) -> Result<(), StoreError> {
        let mut g = self.lock();
        let old = g.rooms.get(&id).cloned();
        match (&old, prev_epoch) {
            (None, None) => {
                if g.room_names.contains_key(room.name.as_str()) {
                    return Err(StoreError::RoomNameTaken);
                }
                g.room_names.insert(room.name.as_str().to_owned(), id);
            }
            (Some(o), Some(e)) if o.epoch == e => {}
            (Some(o), _) => return Err(StoreError::StaleEpoch(o.epoch)),
            (None, Some(_)) => return Err(StoreError::StaleEpoch(0)),
        }
        if let Some(o) = &old {
            for u in o.users() {
                if let Some(m) = g.user_rooms.get_mut(&u) {
                    m.remove(&id);
                }
            }
            for l in &o.links {
                g.links.remove(&l.token);
            }
        }
        for (u, _) in &room.members {
            g.user_rooms.entry(*u).or_default().insert(id, true);
        }
        for u in &room.invited {
            g.user_rooms.entry(*u).or_default().insert(id, false);
        }
        for l in &room.links {
            g.links.insert(l.token, id);
        }
        g.rooms.insert(id, room.clone());
        Ok(())
    }

    fn user_rooms(&self, user: UserId) -> Result<Vec<(RoomId, bool)>, StoreError> {
        Ok(self
            .lock()
            .user_rooms
            .get(&user)
            .map(|m| m.iter().map(|(r, b)| (*r, *b)).collect())
            .unwrap_or_default())
    }

    fn put_blob(&self, id: BlobId, meta: &BlobMeta) -> Result<(), StoreError> {
        self.lock().blobs.insert(id, meta.clone());
        Ok(())
    }

    fn blob(&self, id: BlobId) -> Result<Option<BlobMeta>, StoreError> {
        Ok(self.lock().blobs.get(&id).cloned())
    }

    fn remove_blob(&self, id: BlobId) -> Result<(), StoreError> {
        self.lock().blobs.remove(&id);
        Ok(())
    }

    fn blob_usage(&self, owner: UserId) -> Result<u64, StoreError> {
        Ok(self
            .lock()
            .blobs
            .values()
            .filter(|b| b.owner == owner)
            .map(|b| b.size)
            .sum())
    }

    fn expired_blobs(&self, now: Timestamp) -> Result<Vec<BlobId>, StoreError> {
        Ok(self
            .lock()
            .blobs
            .iter()
            .filter(|(_, b)| b.expires_at < now)
            .map(|(id, _)| *id)
            .collect())
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
}

fn counts(k: &DeviceKeys) -> PreKeyCounts {
    PreKeyCounts {
        one_time: k.one_time.len() as u32,
        one_time_kem: k.one_time_kem.len() as u32,
    }
}
