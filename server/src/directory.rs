//! Accounts, devices, prekeys, contacts and presence, as requests of an
//! authenticated device.

use spider_protocol::bytes::{BoundedBytes, BoundedVec};
use spider_protocol::ids::{DeviceAddress, UserId};
use spider_protocol::keys::{PreKeyCounts, PreKeyUpload};
use spider_protocol::message::{
    Contact, Contacts, DeviceInfo, Done, EditContact, FetchPreKeys, GetProfile, ListContacts,
    LookupUser, PreKeyBundles, PreKeysLow, PresenceUpdate, Profile, SetPresence, SetProfile,
    UploadPreKeys, UserInfo, UserRef,
};
use spider_protocol::{ErrorCode, ServerFrame};

use crate::Refusal;
use crate::auth::Authed;
use crate::metrics::Limit;
use crate::router::Push;
use crate::server::Shared;
use crate::store::StoreError;
use crate::verify::{self, PreKeysVerified};

fn stock_refusal(e: StoreError) -> Refusal {
    match e {
        StoreError::TooManyPreKeys => Refusal::by(
            Limit::OneTimePreKeys,
            ErrorCode::INVALID_PREKEYS,
            "the upload would exceed the relay's one-time prekey stock limit",
        ),
        e => Refusal::from(e),
    }
}

/// Stores a verified prekey upload for a device.
pub(crate) fn store_prekeys(
    shared: &Shared,
    _checked: PreKeysVerified,
    dev: DeviceAddress,
    up: &PreKeyUpload,
) -> Result<PreKeyCounts, Refusal> {
    let store = &shared.store;
    let counts = store
        .add_one_time_prekeys(
            dev,
            up.one_time_prekeys.as_slice(),
            up.one_time_kem_prekeys.as_slice(),
            shared.config.limits.max_one_time_prekeys,
        )
        .map_err(stock_refusal)?;
    if let Some(k) = &up.signed_prekey {
        store.set_signed_prekey(dev, k)?;
    }
    if let Some(k) = &up.last_resort_kem_prekey {
        store.set_last_resort_kem_prekey(dev, k)?;
    }
    Ok(counts)
}

/// Whether a device should be told to refill.
pub(crate) fn is_low(shared: &Shared, c: PreKeyCounts) -> bool {
    let t = shared.config.limits.prekeys_low_threshold;
    c.one_time < t || c.one_time_kem < t
}

/// `UploadPreKeys`: verify under my identity, store, `Done`.
pub(crate) async fn upload_prekeys(
    shared: &Shared,
    me: &Authed,
    u: UploadPreKeys,
) -> Result<ServerFrame, Refusal> {
    // My identity was verified when this device was registered or added.
    let id = verify::identity_binding(&me.identity)
        .map_err(|_| Refusal::new(ErrorCode::BAD_SIGNATURE, "identity binding"))?;
    let checked = verify::prekey_upload(id, &me.identity, &u.prekeys).map_err(|_| {
        Refusal::new(
            ErrorCode::BAD_SIGNATURE,
            "a prekey signature did not verify",
        )
    })?;
    store_prekeys(shared, checked, me.addr, &u.prekeys)?;
    shared.flush().await?;
    Ok(ServerFrame::Done(Done { req: u.req }))
}

/// `FetchPreKeys`: one bundle per device asked for, each one-time prekey
/// handed out once. Owners that run low are told.
pub(crate) fn fetch_prekeys(
    shared: &Shared,
    me: &Authed,
    f: FetchPreKeys,
) -> Result<ServerFrame, Refusal> {
    if let Some(wait) = shared.rate.prekey_fetch(me.addr.user) {
        return Err(Refusal::by(
            Limit::PreKeyFetches,
            ErrorCode::PREKEY_FETCH_LIMITED,
            "too many prekey fetches",
        )
        .retry_after(wait));
    }
    let account = shared
        .store
        .account(f.user)?
        .ok_or_else(|| Refusal::new(ErrorCode::UNKNOWN_USER, "no such account"))?;
    let devices: Vec<_> = match f.device {
        Some(d) => vec![
            account
                .device(d)
                .ok_or_else(|| Refusal::new(ErrorCode::UNKNOWN_DEVICE, "no such device"))?,
        ],
        None => account.devices.iter().collect(),
    };
    let mut bundles = Vec::with_capacity(devices.len());
    for d in devices {
        let addr = DeviceAddress {
            user: f.user,
            device: d.device,
        };
        if let Some(b) = shared.store.take_prekey_bundle(addr, &d.identity)? {
            bundles.push(b);
        }
        let left = shared.store.prekey_counts(addr)?;
        if is_low(shared, left) {
            shared.router.push(
                addr,
                Push::Frame(ServerFrame::PreKeysLow(PreKeysLow { remaining: left })),
            );
        }
    }
    let bundles = BoundedVec::new(bundles).map_err(|_| Refusal::internal())?;
    Ok(ServerFrame::PreKeyBundles(PreKeyBundles {
        req: f.req,
        user: f.user,
        bundles,
    }))
}

/// `LookupUser`: an account's devices and identity keys.
pub(crate) fn lookup_user(shared: &Shared, l: LookupUser) -> Result<ServerFrame, Refusal> {
    let unknown = || Refusal::new(ErrorCode::UNKNOWN_USER, "no such account");
    let user = match &l.who {
        UserRef::Id(u) => *u,
        UserRef::Name(n) => shared.store.user_by_name(n)?.ok_or_else(unknown)?,
    };
    let account = shared.store.account(user)?.ok_or_else(unknown)?;
    let devices = account
        .devices
        .iter()
        .map(|d| DeviceInfo {
            device: d.device,
            identity: d.identity.clone(),
        })
        .collect();
    Ok(ServerFrame::UserInfo(UserInfo {
        req: l.req,
        user,
        username: account.username,
        devices: BoundedVec::new(devices).map_err(|_| Refusal::internal())?,
    }))
}

/// `EditContact`.
pub(crate) async fn edit_contact(
    shared: &Shared,
    me: &Authed,
    e: EditContact,
) -> Result<ServerFrame, Refusal> {
    if e.add && shared.store.account(e.user)?.is_none() {
        return Err(Refusal::new(ErrorCode::UNKNOWN_USER, "no such account"));
    }
    shared
        .store
        .set_contact(
            me.addr.user,
            e.user,
            e.add,
            shared.config.limits.max_contacts,
        )
        .map_err(|err| match err {
            StoreError::TooManyContacts => Refusal::by(
                Limit::Contacts,
                ErrorCode::RATE_LIMITED,
                "contact list is full",
            ),
            err => Refusal::from(err),
        })?;
    shared.flush().await?;
    Ok(ServerFrame::Done(Done { req: e.req }))
}

/// `ListContacts`: each contact's presence is shown if that contact has me as
/// a contact or we share a room.
pub(crate) fn list_contacts(
    shared: &Shared,
    me: &Authed,
    l: ListContacts,
) -> Result<ServerFrame, Refusal> {
    let mut out = Vec::new();
    let co = crate::rooms::co_members(shared, me.addr.user)?;
    for c in shared.store.contacts(me.addr.user)? {
        let Some(acc) = shared.store.account(c)? else {
            continue;
        };
        let visible = co.contains(&c) || shared.store.contacts(c)?.contains(&me.addr.user);
        out.push(Contact {
            user: c,
            username: acc.username,
            presence: visible.then(|| shared.router.presence(c)),
        });
    }
    Ok(ServerFrame::Contacts(Contacts {
        req: l.req,
        contacts: BoundedVec::new(out).map_err(|_| Refusal::internal())?,
    }))
}

/// Tells the online devices of everyone in `user`'s contacts, and of
/// everyone sharing a room with `user`, about `user`'s presence. Best
/// effort: a full queue is that device's problem.
pub(crate) fn announce_presence(shared: &Shared, user: UserId) {
    let Ok(mut contacts) = shared.store.contacts(user) else {
        return;
    };
    if let Ok(co) = crate::rooms::co_members(shared, user) {
        for u in co {
            if !contacts.contains(&u) {
                contacts.push(u);
            }
        }
    }
    let presence = shared.router.presence(user);
    for c in contacts {
        for d in shared.router.online_devices(c) {
            shared.router.push(
                DeviceAddress { user: c, device: d },
                Push::Frame(ServerFrame::Presence(PresenceUpdate { user, presence })),
            );
        }
    }
}

/// `SetProfile`: store my encrypted profile (its key travels in 1:1
/// messages; the relay keeps ciphertext only).
pub(crate) async fn set_profile(
    shared: &Shared,
    me: &Authed,
    p: SetProfile,
) -> Result<ServerFrame, Refusal> {
    shared.store.set_profile(me.addr.user, p.blob.as_slice())?;
    shared.flush().await?;
    Ok(ServerFrame::Done(Done { req: p.req }))
}

/// `GetProfile`: anyone's encrypted profile; useless without its key.
pub(crate) fn get_profile(shared: &Shared, g: GetProfile) -> Result<ServerFrame, Refusal> {
    if shared.store.account(g.user)?.is_none() {
        return Err(Refusal::new(ErrorCode::UNKNOWN_USER, "no such account"));
    }
    let blob = match shared.store.profile(g.user)? {
        Some(b) => Some(BoundedBytes::new(b).map_err(|_| Refusal::internal())?),
        None => None,
    };
    Ok(ServerFrame::Profile(Profile {
        req: g.req,
        user: g.user,
        blob,
    }))
}

/// `SetPresence`.
pub(crate) fn set_presence(shared: &Shared, me: &Authed, p: SetPresence) {
    shared.router.set_status(me.addr.user, p.status);
    announce_presence(shared, me.addr.user);
}
