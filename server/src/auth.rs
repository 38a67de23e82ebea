//! Register, Login and AddDevice: how a connection becomes a device.
//!
//! Each proves possession of an identity signing key by signing this
//! connection's challenge, bound to the relay's name and the TLS exporter
//! (see [`crate::verify::auth`]). Everything is verified before anything is
//! stored.

use std::net::IpAddr;

use spider_protocol::ErrorCode;
use spider_protocol::ids::{DeviceAddress, DeviceId, UserId};
use spider_protocol::keys::{IdentityKeys, PreKeyCounts, PreKeyUpload};
use spider_protocol::message::{AddDevice, Login, Register};
use spider_protocol::name::Username;

use crate::Refusal;
use crate::directory::store_prekeys;
use crate::metrics::Limit;
use crate::server::Shared;
use crate::store::StoreError;
use crate::verify::{self, AuthVerified, PreKeysVerified};

/// What a connection's auth signature covers besides the key.
pub(crate) struct Binding {
    /// The relay's name.
    pub(crate) relay_name: String,
    /// This TLS connection's exporter value.
    pub(crate) exporter: [u8; 32],
    /// The challenge sent in `Welcome`.
    pub(crate) challenge: [u8; 32],
    /// The client's address, for registration limits.
    pub(crate) peer: IpAddr,
}

/// An authenticated device.
#[derive(Debug, Clone)]
pub(crate) struct Authed {
    /// Which device.
    pub(crate) addr: DeviceAddress,
    /// The account's name.
    pub(crate) username: Username,
    /// The device's identity.
    pub(crate) identity: IdentityKeys,
    /// The client's address, for the per-address request limit.
    pub(crate) ip: IpAddr,
}

fn bad_sig(_: verify::VerifyError) -> Refusal {
    Refusal::new(ErrorCode::BAD_SIGNATURE, "a signature did not verify")
}

fn check_auth(
    b: &Binding,
    identity: &IdentityKeys,
    sig: &[u8; 64],
) -> Result<AuthVerified, Refusal> {
    verify::auth(identity, &b.relay_name, &b.exporter, &b.challenge, sig).map_err(bad_sig)
}

/// Checks a new device's identity binding and prekey signatures.
fn check_new_device(
    identity: &IdentityKeys,
    prekeys: &PreKeyUpload,
) -> Result<PreKeysVerified, Refusal> {
    if prekeys.signed_prekey.is_none() || prekeys.last_resort_kem_prekey.is_none() {
        return Err(Refusal::new(
            ErrorCode::INVALID_PREKEYS,
            "a signed prekey and a last-resort KEM prekey are required",
        ));
    }
    let id = verify::identity_binding(identity).map_err(bad_sig)?;
    verify::prekey_upload(id, identity, prekeys).map_err(bad_sig)
}

fn random_user_id() -> Result<UserId, Refusal> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|_| Refusal::internal())?;
    Ok(UserId::from_bytes(b))
}

/// Creates an account and its first device.
pub(crate) async fn register(
    shared: &Shared,
    b: &Binding,
    r: Register,
) -> Result<(Authed, PreKeyCounts), Refusal> {
    // Reserved names are policy, checked where a name is claimed (the
    // decoder accepts any syntactically valid name).
    if r.username.is_reserved() {
        return Err(Refusal::new(
            ErrorCode::INVALID_USERNAME,
            "that username is reserved",
        ));
    }
    // Before any signature work: attempts count, successful or not.
    if let Some(wait) = shared.rate.register(b.peer) {
        return Err(Refusal::by(
            Limit::Registrations,
            ErrorCode::REGISTRATION_LIMITED,
            "too many registrations from this address",
        )
        .retry_after(wait));
    }
    let checked = check_new_device(&r.identity, &r.prekeys)?;
    let _auth = check_auth(b, &r.identity, &r.auth.0)?;
    let user = random_user_id()?;
    let device = shared
        .store
        .create_account(user, &r.username, &r.identity)
        .map_err(|e| match e {
            StoreError::UsernameTaken => {
                Refusal::new(ErrorCode::USERNAME_TAKEN, "that username is taken")
            }
            e => Refusal::from(e),
        })?;
    let addr = DeviceAddress { user, device };
    let counts = store_prekeys(shared, checked, addr, &r.prekeys)?;
    shared.flush().await?;
    tracing::info!(user = %user, "account registered");
    Ok((
        Authed {
            ip: b.peer,
            addr,
            username: r.username,
            identity: r.identity,
        },
        counts,
    ))
}

/// Signs a device in.
pub(crate) fn login(
    shared: &Shared,
    b: &Binding,
    l: Login,
) -> Result<(Authed, PreKeyCounts), Refusal> {
    let account = shared
        .store
        .account(l.user)?
        .ok_or_else(|| Refusal::new(ErrorCode::UNKNOWN_USER, "no such account"))?;
    let dev = account
        .device(l.device)
        .ok_or_else(|| Refusal::new(ErrorCode::UNKNOWN_DEVICE, "no such device"))?;
    let _auth = check_auth(b, &dev.identity, &l.auth.0)?;
    let identity = dev.identity.clone();
    let addr = DeviceAddress {
        user: l.user,
        device: l.device,
    };
    let counts = shared.store.prekey_counts(addr)?;
    Ok((
        Authed {
            ip: b.peer,
            addr,
            username: account.username,
            identity,
        },
        counts,
    ))
}

/// Adds a device to an account, approved by one of its devices.
pub(crate) async fn add_device(
    shared: &Shared,
    b: &Binding,
    a: AddDevice,
) -> Result<(Authed, PreKeyCounts), Refusal> {
    let account = shared
        .store
        .account(a.user)?
        .ok_or_else(|| Refusal::new(ErrorCode::UNKNOWN_USER, "no such account"))?;
    let approver = account
        .device(a.approver)
        .ok_or_else(|| Refusal::new(ErrorCode::UNKNOWN_DEVICE, "no such approving device"))?;
    let _approved = verify::device_approval(&approver.identity, a.user, &a.identity, &a.approval.0)
        .map_err(bad_sig)?;
    let checked = check_new_device(&a.identity, &a.prekeys)?;
    let _auth = check_auth(b, &a.identity, &a.auth.0)?;
    let device: DeviceId = shared
        .store
        .add_device(a.user, &a.identity, shared.config.limits.max_devices)
        .map_err(|e| match e {
            StoreError::TooManyDevices => Refusal::by(
                Limit::Devices,
                ErrorCode::TOO_MANY_DEVICES,
                "the account has its maximum number of devices",
            ),
            StoreError::UnknownUser => Refusal::new(ErrorCode::UNKNOWN_USER, "no such account"),
            e => Refusal::from(e),
        })?;
    let addr = DeviceAddress {
        user: a.user,
        device,
    };
    let counts = store_prekeys(shared, checked, addr, &a.prekeys)?;
    shared.flush().await?;
    tracing::info!(user = %a.user, device = device.0, "device added");
    Ok((
        Authed {
            ip: b.peer,
            addr,
            username: account.username,
            identity: a.identity,
        },
        counts,
    ))
}
