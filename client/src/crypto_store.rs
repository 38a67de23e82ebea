//! spider-crypto's storage traits on a [`Profile`], so that identities,
//! prekeys, sessions and Sender Keys survive restarts; and the prekey refill
//! and rotation policy, with the conversions between spider-crypto's key
//! types and spider-protocol's wire types.
//!
//! Both crates carry the same bytes: an identity is Ed25519 key (32), X25519
//! key (32) and binding signature (64); a prekey signature covers
//! `id (u32 BE) || public key` in both; a KEM key is the 1184-byte ML-KEM-768
//! encapsulation key. Only the containers differ, so conversion copies
//! fields, and the protocol-to-crypto direction re-runs spider-crypto's
//! checks (binding signature, low-order points, FIPS 203 key check).

use serde::{Deserialize, Serialize};
use spider_crypto::error::StoreError as CryptoStoreError;
use spider_crypto::keys::{
    IdentityKeyPair, IdentityPublicKey, KemPreKeyKind, KemPreKeyPair, KemPreKeyPublic,
    OneTimePreKeyPair, OneTimePreKeyPublic, PreKeyBundle as CryptoBundle, PreKeyId,
    SignedPreKeyPair, SignedPreKeyPublic,
};
use spider_crypto::sender_key::{
    DistributionId, OwnSenderKey, SenderKeyRecord, SenderKeyStore, StateDecodeError,
};
use spider_crypto::session::SessionRecord;
use spider_crypto::store::{
    DeviceAddress as CryptoAddress, IdentityChange, IdentityStore, PreKeyStore, SessionStore,
};
use spider_crypto::x3dh::ReplayCache;
use spider_protocol::bytes::{BoundedVec, FixedBytes};
use spider_protocol::ids::{DeviceAddress, DeviceId, PreKeyId as WireId, UserId};
use spider_protocol::keys as wire;
use zeroize::Zeroizing;

use crate::keystore::KeystoreError;
use crate::profile::{Profile, key};
use crate::store::ProfileStore;

/// One-time X25519 prekeys kept on the relay (the protocol's per-upload
/// maximum: a device can be contacted by this many new peers while offline).
pub const ONE_TIME_PREKEY_TARGET: u32 = 100;
/// One-time ML-KEM prekeys kept on the relay: fewer, each is 1.2 KiB; when
/// they run out the last-resort KEM prekey still gives post-quantum security.
pub const ONE_TIME_KEM_PREKEY_TARGET: u32 = 20;
/// Refill when the relay holds fewer than this fraction (1/4) of a target,
/// so that uploads come in batches rather than one key at a time.
pub const REFILL_BELOW_DIVISOR: u32 = 4;
/// Rotate the signed prekey (and the last-resort KEM prekey) weekly, as
/// Signal does: it bounds how long a stolen prekey private key is useful.
pub const SIGNED_PREKEY_ROTATION_SECS: u64 = 7 * 24 * 60 * 60;

const K_PREKEY_STATE: &[u8] = b"prekey/state";
const K_REPLAY: &[u8] = b"prekey/replay";
const P_SIGNED: &[u8] = b"prekey/signed/";
const P_KEM: &[u8] = b"prekey/kem/";
const P_OTK: &[u8] = b"prekey/otk/";
const P_PEER: &[u8] = b"peer/";
const P_SESSION: &[u8] = b"session/";
const P_SKEY_OWN: &[u8] = b"skey/own/";
const P_SKEY_PEER: &[u8] = b"skey/peer/";

/// Counters of the prekeys this device made.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreKeyState {
    /// Next signed prekey id.
    pub next_signed: u32,
    /// Next KEM prekey id (one-time and last-resort share the id space).
    pub next_kem: u32,
    /// Next one-time prekey id.
    pub next_one_time: u32,
    /// When the current signed prekey was made (unix seconds), if any.
    pub signed_at: Option<u64>,
}

/// What to upload, decided by [`refill_plan`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefillPlan {
    /// One-time X25519 prekeys to make.
    pub one_time: u32,
    /// One-time KEM prekeys to make.
    pub one_time_kem: u32,
    /// Make a new signed prekey and last-resort KEM prekey.
    pub rotate_signed: bool,
}

impl RefillPlan {
    /// Whether there is nothing to upload.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.one_time == 0 && self.one_time_kem == 0 && !self.rotate_signed
    }
}

/// The refill policy, a pure function: `remaining` is what the relay holds
/// (`None` at registration), `signed_at` when the signed prekey was made.
#[must_use]
pub fn refill_plan(
    remaining: Option<wire::PreKeyCounts>,
    signed_at: Option<u64>,
    now: u64,
) -> RefillPlan {
    let rotate_signed = match signed_at {
        None => true,
        Some(t) => now.saturating_sub(t) >= SIGNED_PREKEY_ROTATION_SECS,
    };
    let top_up = |have: u32, target: u32| {
        if have < target / REFILL_BELOW_DIVISOR || (have == 0 && target > 0) {
            target - have.min(target)
        } else {
            0
        }
    };
    match remaining {
        None => RefillPlan {
            one_time: ONE_TIME_PREKEY_TARGET,
            one_time_kem: ONE_TIME_KEM_PREKEY_TARGET,
            rotate_signed,
        },
        Some(c) => RefillPlan {
            one_time: top_up(c.one_time, ONE_TIME_PREKEY_TARGET),
            one_time_kem: top_up(c.one_time_kem, ONE_TIME_KEM_PREKEY_TARGET),
            rotate_signed,
        },
    }
}

// ------------------------------------------------------------------ conversions

/// The wire form of an identity.
#[must_use]
pub fn identity_to_wire(id: &IdentityPublicKey) -> wire::IdentityKeys {
    wire::IdentityKeys {
        signing: FixedBytes(*id.signing_key_bytes()),
        dh: FixedBytes(*id.dh_key_bytes()),
        binding: FixedBytes(*id.binding_signature()),
    }
}

/// An identity from the wire, with spider-crypto's checks.
///
/// # Errors
/// A bad binding signature or key.
pub fn identity_from_wire(
    id: &wire::IdentityKeys,
) -> Result<IdentityPublicKey, spider_crypto::error::DecodeError> {
    IdentityPublicKey::from_parts(&id.signing.0, &id.dh.0, &id.binding.0)
}

fn signed_to_wire(k: &SignedPreKeyPublic) -> wire::SignedPreKey {
    wire::SignedPreKey {
        id: WireId(k.id.0),
        public: FixedBytes(k.public),
        signature: FixedBytes(k.signature),
    }
}

fn kem_to_wire(k: &KemPreKeyPublic) -> wire::KemPreKey {
    wire::KemPreKey {
        id: WireId(k.id().0),
        public: FixedBytes(*k.public_bytes()),
        signature: FixedBytes(*k.signature()),
    }
}

fn otk_to_wire(k: &OneTimePreKeyPublic) -> wire::OneTimePreKey {
    wire::OneTimePreKey {
        id: WireId(k.id.0),
        public: FixedBytes(k.public),
    }
}

/// A relay-delivered bundle as spider-crypto's (signatures not yet checked:
/// call `verify`).
///
/// # Errors
/// A malformed key.
pub fn bundle_from_wire(
    b: &wire::PreKeyBundle,
) -> Result<CryptoBundle, spider_crypto::error::DecodeError> {
    Ok(CryptoBundle {
        identity: identity_from_wire(&b.identity)?,
        signed_prekey: SignedPreKeyPublic::new(
            PreKeyId(b.signed_prekey.id.0),
            &b.signed_prekey.public.0,
            &b.signed_prekey.signature.0,
        )?,
        kem_prekey: KemPreKeyPublic::new(
            PreKeyId(b.kem_prekey.id.0),
            &b.kem_prekey.public.0[..],
            &b.kem_prekey.signature.0,
        )?,
        one_time_prekey: match &b.one_time_prekey {
            Some(o) => Some(OneTimePreKeyPublic::new(PreKeyId(o.id.0), &o.public.0)?),
            None => None,
        },
    })
}

/// The spider-crypto address of a device: user id in hex, device number.
#[must_use]
pub fn crypto_address(a: &DeviceAddress) -> CryptoAddress {
    CryptoAddress::new(a.user.to_hex(), a.device.0)
}

fn backend(e: KeystoreError) -> CryptoStoreError {
    match e {
        KeystoreError::Corrupt | KeystoreError::Tampered => CryptoStoreError::Corrupt,
        other => CryptoStoreError::Backend(other.to_string()),
    }
}

fn addr_key(prefix: &[u8], a: &CryptoAddress) -> Vec<u8> {
    key(prefix, &[a.user.as_bytes(), b"/", &a.device.to_be_bytes()])
}

// ------------------------------------------------------------------ profile methods

impl<S: ProfileStore> Profile<S> {
    /// The prekey counters.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn prekey_state(&self) -> Result<PreKeyState, KeystoreError> {
        Ok(self.ks.get(K_PREKEY_STATE)?.unwrap_or(PreKeyState {
            next_signed: 1,
            next_kem: 1,
            next_one_time: 1,
            signed_at: None,
        }))
    }

    /// Makes the keys `plan` asks for, stores their private halves, and
    /// returns the upload for the relay. At registration pass
    /// `refill_plan(None, None, now)`: it includes the signed prekey and the
    /// last-resort KEM prekey the relay requires.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn make_prekeys(
        &mut self,
        plan: RefillPlan,
        now: u64,
    ) -> Result<wire::PreKeyUpload, KeystoreError> {
        let mut st = self.prekey_state()?;
        let mut upload = wire::PreKeyUpload {
            signed_prekey: None,
            last_resort_kem_prekey: None,
            one_time_prekeys: BoundedVec::empty(),
            one_time_kem_prekeys: BoundedVec::empty(),
        };
        let identity = self.identity.clone();
        if plan.rotate_signed {
            let spk = SignedPreKeyPair::generate(
                &mut *self.rng,
                &identity,
                PreKeyId(st.next_signed),
                now,
            );
            st.next_signed = st.next_signed.wrapping_add(1);
            upload.signed_prekey = Some(signed_to_wire(&spk.public()));
            self.save_signed_prekey(spk)
                .map_err(|_| KeystoreError::Corrupt)?;
            let kem = KemPreKeyPair::generate(
                &mut *self.rng,
                &identity,
                PreKeyId(st.next_kem),
                KemPreKeyKind::LastResort,
                now,
            );
            st.next_kem = st.next_kem.wrapping_add(1);
            upload.last_resort_kem_prekey = Some(kem_to_wire(kem.public()));
            self.save_kem_prekey(kem)
                .map_err(|_| KeystoreError::Corrupt)?;
            st.signed_at = Some(now);
            // Old signed prekeys stay for the grace period (first messages
            // in flight), then go; the replay cache follows.
            let live = spider_crypto::store::prune_signed_prekeys(self, now)
                .map_err(|_| KeystoreError::Corrupt)?;
            let mut replay = self.replay_cache()?;
            replay.retain_signed_prekeys(&live);
            self.save_replay_cache(&replay)?;
        }
        let n = (plan.one_time as usize).min(wire::MAX_ONE_TIME_PREKEYS_PER_UPLOAD);
        let mut otks = Vec::with_capacity(n);
        for _ in 0..n {
            let k = OneTimePreKeyPair::generate(&mut *self.rng, PreKeyId(st.next_one_time));
            st.next_one_time = st.next_one_time.wrapping_add(1);
            otks.push(otk_to_wire(&k.public()));
            self.save_one_time_prekey(k)
                .map_err(|_| KeystoreError::Corrupt)?;
        }
        let n = (plan.one_time_kem as usize).min(wire::MAX_ONE_TIME_KEM_PREKEYS_PER_UPLOAD);
        let mut kems = Vec::with_capacity(n);
        for _ in 0..n {
            let k = KemPreKeyPair::generate(
                &mut *self.rng,
                &identity,
                PreKeyId(st.next_kem),
                KemPreKeyKind::OneTime,
                now,
            );
            st.next_kem = st.next_kem.wrapping_add(1);
            kems.push(kem_to_wire(k.public()));
            self.save_kem_prekey(k)
                .map_err(|_| KeystoreError::Corrupt)?;
        }
        upload.one_time_prekeys = BoundedVec::new(otks).map_err(|_| KeystoreError::Corrupt)?;
        upload.one_time_kem_prekeys = BoundedVec::new(kems).map_err(|_| KeystoreError::Corrupt)?;
        self.put(K_PREKEY_STATE, &st)?;
        Ok(upload)
    }

    /// The PQXDH replay cache.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn replay_cache(&self) -> Result<ReplayCache, KeystoreError> {
        Ok(self.ks.get(K_REPLAY)?.unwrap_or_default())
    }

    /// Saves the PQXDH replay cache.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn save_replay_cache(&mut self, cache: &ReplayCache) -> Result<(), KeystoreError> {
        self.put(K_REPLAY, cache)
    }

    /// The safety number between this device and one device of a contact,
    /// from the identity we hold for it (Spider identities are per device).
    /// `None` until we have seen that device's identity.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn safety_number(
        &self,
        user: &UserId,
        device: DeviceId,
    ) -> Result<Option<spider_crypto::safety::SafetyNumber>, KeystoreError> {
        use spider_crypto::safety::{SafetyIdentity, SafetyNumber};
        let Some(contact) = self.contact(user)? else {
            return Ok(None);
        };
        let addr = CryptoAddress::new(user.to_hex(), device.0);
        let Some(theirs) =
            IdentityStore::identity(self, &addr).map_err(|_| KeystoreError::Corrupt)?
        else {
            return Ok(None);
        };
        let account = self.account()?;
        let mine = self.identity.public();
        Ok(Some(SafetyNumber::new(
            SafetyIdentity {
                ed25519: mine.signing_key_bytes(),
                x25519: mine.dh_key_bytes(),
                username: account.username.as_str(),
            },
            SafetyIdentity {
                ed25519: theirs.signing_key_bytes(),
                x25519: theirs.dh_key_bytes(),
                username: contact.username.as_str(),
            },
        )))
    }

    /// Forgets the session with one device (its identity changed).
    ///
    /// # Errors
    /// Keystore failure.
    pub fn remove_session(&mut self, user: &UserId, device: DeviceId) -> Result<(), KeystoreError> {
        let addr = CryptoAddress::new(user.to_hex(), device.0);
        self.ks.delete(&addr_key(P_SESSION, &addr))
    }

    /// The devices we hold a session with, for one account.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn session_devices(&self, user: &UserId) -> Result<Vec<DeviceId>, KeystoreError> {
        let prefix = key(P_SESSION, &[user.to_hex().as_bytes(), b"/"]);
        let mut out = Vec::new();
        for (k, _) in self.ks.store().scan_prefix(&prefix)? {
            if let Some(d) = k
                .get(prefix.len()..)
                .and_then(|d| <[u8; 4]>::try_from(d).ok())
            {
                out.push(DeviceId(u32::from_be_bytes(d)));
            }
        }
        Ok(out)
    }
}

impl<S: ProfileStore> IdentityStore for Profile<S> {
    fn identity_key_pair(&self) -> &IdentityKeyPair {
        &self.identity
    }

    fn identity(
        &self,
        address: &CryptoAddress,
    ) -> Result<Option<IdentityPublicKey>, CryptoStoreError> {
        match self
            .ks
            .get_bytes(&addr_key(P_PEER, address))
            .map_err(backend)?
        {
            None => Ok(None),
            Some(b) => IdentityPublicKey::try_from(&b[..])
                .map(Some)
                .map_err(|_| CryptoStoreError::Corrupt),
        }
    }

    fn save_identity(
        &mut self,
        address: &CryptoAddress,
        identity: &IdentityPublicKey,
    ) -> Result<IdentityChange, CryptoStoreError> {
        let old = IdentityStore::identity(self, address)?;
        self.ks
            .put_bytes(
                &mut *self.rng,
                &addr_key(P_PEER, address),
                &identity.to_bytes(),
            )
            .map_err(backend)?;
        Ok(match old {
            None => IdentityChange::New,
            Some(o) if &o == identity => IdentityChange::Unchanged,
            Some(_) => IdentityChange::Replaced,
        })
    }
}

fn id_key(prefix: &[u8], id: PreKeyId) -> Vec<u8> {
    key(prefix, &[&id.0.to_be_bytes()])
}

impl<S: ProfileStore> PreKeyStore for Profile<S> {
    fn signed_prekey(&self, id: PreKeyId) -> Result<Option<SignedPreKeyPair>, CryptoStoreError> {
        match self.ks.get_bytes(&id_key(P_SIGNED, id)).map_err(backend)? {
            None => Ok(None),
            Some(b) => SignedPreKeyPair::from_secret_bytes(&b)
                .map(Some)
                .map_err(|_| CryptoStoreError::Corrupt),
        }
    }
    fn save_signed_prekey(&mut self, prekey: SignedPreKeyPair) -> Result<(), CryptoStoreError> {
        self.ks
            .put_bytes(
                &mut *self.rng,
                &id_key(P_SIGNED, prekey.id()),
                &prekey.to_secret_bytes(),
            )
            .map_err(backend)
    }
    fn remove_signed_prekey(&mut self, id: PreKeyId) -> Result<(), CryptoStoreError> {
        self.ks.delete(&id_key(P_SIGNED, id)).map_err(backend)
    }
    fn signed_prekeys(&self) -> Result<Vec<SignedPreKeyPair>, CryptoStoreError> {
        let mut all = Vec::new();
        for (_, b) in self.ks.scan_bytes(P_SIGNED).map_err(backend)? {
            all.push(
                SignedPreKeyPair::from_secret_bytes(&b).map_err(|_| CryptoStoreError::Corrupt)?,
            );
        }
        all.sort_by_key(|k| (k.created_at(), k.id()));
        Ok(all)
    }
    fn kem_prekey(&self, id: PreKeyId) -> Result<Option<KemPreKeyPair>, CryptoStoreError> {
        match self.ks.get_bytes(&id_key(P_KEM, id)).map_err(backend)? {
            None => Ok(None),
            Some(b) => KemPreKeyPair::from_secret_bytes(&b)
                .map(Some)
                .map_err(|_| CryptoStoreError::Corrupt),
        }
    }
    fn save_kem_prekey(&mut self, prekey: KemPreKeyPair) -> Result<(), CryptoStoreError> {
        self.ks
            .put_bytes(
                &mut *self.rng,
                &id_key(P_KEM, prekey.id()),
                &prekey.to_secret_bytes(),
            )
            .map_err(backend)
    }
    fn remove_kem_prekey(&mut self, id: PreKeyId) -> Result<(), CryptoStoreError> {
        self.ks.delete(&id_key(P_KEM, id)).map_err(backend)
    }
    fn one_time_prekey(&self, id: PreKeyId) -> Result<Option<OneTimePreKeyPair>, CryptoStoreError> {
        match self.ks.get_bytes(&id_key(P_OTK, id)).map_err(backend)? {
            None => Ok(None),
            Some(b) => OneTimePreKeyPair::from_secret_bytes(&b)
                .map(Some)
                .map_err(|_| CryptoStoreError::Corrupt),
        }
    }
    fn save_one_time_prekey(&mut self, prekey: OneTimePreKeyPair) -> Result<(), CryptoStoreError> {
        self.ks
            .put_bytes(
                &mut *self.rng,
                &id_key(P_OTK, prekey.id()),
                &prekey.to_secret_bytes(),
            )
            .map_err(backend)
    }
    fn remove_one_time_prekey(&mut self, id: PreKeyId) -> Result<(), CryptoStoreError> {
        self.ks.delete(&id_key(P_OTK, id)).map_err(backend)
    }
}

impl<S: ProfileStore> SessionStore for Profile<S> {
    fn load_session(
        &self,
        address: &CryptoAddress,
    ) -> Result<Option<SessionRecord>, CryptoStoreError> {
        match self
            .ks
            .get_bytes(&addr_key(P_SESSION, address))
            .map_err(backend)?
        {
            None => Ok(None),
            Some(b) => SessionRecord::from_bytes(&b)
                .map(Some)
                .map_err(|_| CryptoStoreError::Corrupt),
        }
    }
    fn store_session(
        &mut self,
        address: &CryptoAddress,
        session: &SessionRecord,
    ) -> Result<(), CryptoStoreError> {
        self.ks
            .put_bytes(
                &mut *self.rng,
                &addr_key(P_SESSION, address),
                &session.to_bytes(),
            )
            .map_err(backend)
    }
}

/// Why a Sender Key record could not be loaded or saved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SenderKeyStoreError {
    /// The keystore failed.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// The record decrypted but does not decode.
    #[error("sender key state: {0}")]
    State(#[from] StateDecodeError),
}

fn skey_peer_key(room: DistributionId, sender: &DeviceAddress) -> Vec<u8> {
    key(
        P_SKEY_PEER,
        &[
            room.as_bytes(),
            sender.user.as_bytes(),
            &sender.device.0.to_be_bytes(),
        ],
    )
}

impl<S: ProfileStore> SenderKeyStore<DeviceAddress> for Profile<S> {
    type Error = SenderKeyStoreError;

    fn load_sender_key(
        &self,
        room: DistributionId,
        sender: &DeviceAddress,
    ) -> Result<Option<SenderKeyRecord>, SenderKeyStoreError> {
        match self.ks.get_bytes(&skey_peer_key(room, sender))? {
            None => Ok(None),
            Some(b) => Ok(Some(SenderKeyRecord::from_bytes(&b)?)),
        }
    }

    fn store_sender_key(
        &mut self,
        room: DistributionId,
        sender: &DeviceAddress,
        record: SenderKeyRecord,
    ) -> Result<(), SenderKeyStoreError> {
        let bytes: Zeroizing<Vec<u8>> = record.to_bytes();
        self.ks
            .put_bytes(&mut *self.rng, &skey_peer_key(room, sender), &bytes)?;
        Ok(())
    }

    fn load_own_sender_key(
        &self,
        room: DistributionId,
    ) -> Result<Option<OwnSenderKey>, SenderKeyStoreError> {
        match self.ks.get_bytes(&key(P_SKEY_OWN, &[room.as_bytes()]))? {
            None => Ok(None),
            Some(b) => Ok(Some(OwnSenderKey::from_bytes(&b)?)),
        }
    }

    fn store_own_sender_key(
        &mut self,
        room: DistributionId,
        k: OwnSenderKey,
    ) -> Result<(), SenderKeyStoreError> {
        let bytes = k.to_bytes();
        self.ks
            .put_bytes(&mut *self.rng, &key(P_SKEY_OWN, &[room.as_bytes()]), &bytes)?;
        Ok(())
    }
}

// ------------------------------------------------------------------ split views

/// One profile seen as several stores at once: spider-crypto's
/// `decrypt_from` and `start_session` take the identity, prekey and session
/// stores as separate `&mut` arguments, and all three are the one profile.
/// Each view borrows the profile for the length of one store call only.
pub(crate) struct SplitProfile<'a, S> {
    pub(crate) cell: &'a core::cell::RefCell<&'a mut Profile<S>>,
    pub(crate) identity: &'a IdentityKeyPair,
}

fn busy() -> CryptoStoreError {
    CryptoStoreError::Backend("profile borrowed twice".into())
}

impl<S: ProfileStore> IdentityStore for SplitProfile<'_, S> {
    fn identity_key_pair(&self) -> &IdentityKeyPair {
        self.identity
    }
    fn identity(
        &self,
        address: &CryptoAddress,
    ) -> Result<Option<IdentityPublicKey>, CryptoStoreError> {
        IdentityStore::identity(&**self.cell.try_borrow().map_err(|_| busy())?, address)
    }
    fn save_identity(
        &mut self,
        address: &CryptoAddress,
        identity: &IdentityPublicKey,
    ) -> Result<IdentityChange, CryptoStoreError> {
        self.cell
            .try_borrow_mut()
            .map_err(|_| busy())?
            .save_identity(address, identity)
    }
}

impl<S: ProfileStore> PreKeyStore for SplitProfile<'_, S> {
    fn signed_prekey(&self, id: PreKeyId) -> Result<Option<SignedPreKeyPair>, CryptoStoreError> {
        self.cell
            .try_borrow()
            .map_err(|_| busy())?
            .signed_prekey(id)
    }
    fn save_signed_prekey(&mut self, prekey: SignedPreKeyPair) -> Result<(), CryptoStoreError> {
        self.cell
            .try_borrow_mut()
            .map_err(|_| busy())?
            .save_signed_prekey(prekey)
    }
    fn remove_signed_prekey(&mut self, id: PreKeyId) -> Result<(), CryptoStoreError> {
        self.cell
            .try_borrow_mut()
            .map_err(|_| busy())?
            .remove_signed_prekey(id)
    }
    fn signed_prekeys(&self) -> Result<Vec<SignedPreKeyPair>, CryptoStoreError> {
        self.cell.try_borrow().map_err(|_| busy())?.signed_prekeys()
    }
    fn kem_prekey(&self, id: PreKeyId) -> Result<Option<KemPreKeyPair>, CryptoStoreError> {
        self.cell.try_borrow().map_err(|_| busy())?.kem_prekey(id)
    }
    fn save_kem_prekey(&mut self, prekey: KemPreKeyPair) -> Result<(), CryptoStoreError> {
        self.cell
            .try_borrow_mut()
            .map_err(|_| busy())?
            .save_kem_prekey(prekey)
    }
    fn remove_kem_prekey(&mut self, id: PreKeyId) -> Result<(), CryptoStoreError> {
        self.cell
            .try_borrow_mut()
            .map_err(|_| busy())?
            .remove_kem_prekey(id)
    }
    fn one_time_prekey(&self, id: PreKeyId) -> Result<Option<OneTimePreKeyPair>, CryptoStoreError> {
        self.cell
            .try_borrow()
            .map_err(|_| busy())?
            .one_time_prekey(id)
    }
    fn save_one_time_prekey(&mut self, prekey: OneTimePreKeyPair) -> Result<(), CryptoStoreError> {
        self.cell
            .try_borrow_mut()
            .map_err(|_| busy())?
            .save_one_time_prekey(prekey)
    }
    fn remove_one_time_prekey(&mut self, id: PreKeyId) -> Result<(), CryptoStoreError> {
        self.cell
            .try_borrow_mut()
            .map_err(|_| busy())?
            .remove_one_time_prekey(id)
    }
}

impl<S: ProfileStore> SessionStore for SplitProfile<'_, S> {
    fn load_session(
        &self,
        address: &CryptoAddress,
    ) -> Result<Option<SessionRecord>, CryptoStoreError> {
        self.cell
            .try_borrow()
            .map_err(|_| busy())?
            .load_session(address)
    }
    fn store_session(
        &mut self,
        address: &CryptoAddress,
        session: &SessionRecord,
    ) -> Result<(), CryptoStoreError> {
        self.cell
            .try_borrow_mut()
            .map_err(|_| busy())?
            .store_session(address, session)
    }
}
