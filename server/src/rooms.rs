//! Rooms: signed membership changes, room state queries, and room fan-out.
//!
//! # Order and atomicity
//!
//! Every change names the room's current epoch and is applied to the stored
//! record only if that epoch is still current ([`Store::save_room`] checks it
//! inside its transaction), so changes are totally ordered and a signed change
//! cannot be replayed. On this relay, changes and sends of one room also run
//! under one of [`ROOM_LOCKS`] striped locks (held only around synchronous
//! store calls, never across an await): a `SendRoom` reads the member list and
//! stores its copies without a change in between, so a member removed by a
//! change gets no copy of any message sent after it, even while online.
//!
//! A `SendRoom` names the sender's view of the room (epoch, and a digest of
//! the member devices it handed its Sender Key to); under the same lock the
//! relay refuses it unless that view is current, so no device gets a copy it
//! has no key for (a member who joined, or a device added, since the sender
//! read the room).
//!
//! A change is stored as an `EnvelopeBody::RoomChange` envelope (random
//! message id, `from` = the actor) in the mailbox of every device of every
//! account that could see the room before or after it (members and invitees,
//! so the removed member learns of its removal), except the actor's device,
//! which gets the reply. A crash between the room record and those envelopes
//! reaching disk can lose the notifications (not the change): clients that
//! see an epoch gap re-read the room with `GetRoom`.
//!
//! [`Store::save_room`]: crate::store::Store::save_room

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};

use spider_protocol::bytes::BoundedVec;
use spider_protocol::error::ErrorDetail;
use spider_protocol::ids::{DeviceAddress, LinkToken, MessageId, RoomId, Seq, UserId};
use spider_protocol::message::{
    ChangeRoom, Done, Envelope, EnvelopeBody, Ephemeral, GetRoom, LinkCreated, LinkInfo, ListRooms,
    Member, ResolveLink, Role, RoomAction, RoomInfo, RoomList, RoomRef, RoomSummary, SendRoom,
    Sent, SignedRoomChange, room_devices_digest,
};
use spider_protocol::{ErrorCode, ServerFrame};

use crate::Refusal;
use crate::auth::Authed;
use crate::metrics::Limit;
use crate::router::{Push, PushOutcome};
use crate::server::{Shared, now};
use crate::store::{Enqueued, LinkRecord, RoomRecord, StoreError};
use crate::verify;

/// Number of striped room locks.
pub(crate) const ROOM_LOCKS: usize = 64;

/// The striped locks that serialise changes and sends per room.
pub(crate) fn new_locks() -> Vec<Mutex<()>> {
    (0..ROOM_LOCKS).map(|_| Mutex::new(())).collect()
}

fn lock(shared: &Shared, room: RoomId) -> Option<MutexGuard<'_, ()>> {
    let i = room.as_bytes()[0] as usize % ROOM_LOCKS;
    shared
        .room_locks
        .get(i)
        .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()))
}

fn random<const N: usize>() -> Result<[u8; N], Refusal> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|_| Refusal::internal())?;
    Ok(b)
}

fn refuse(code: ErrorCode, message: &'static str) -> Refusal {
    Refusal::new(code, message)
}

fn room_full() -> Refusal {
    Refusal::by(Limit::RoomMembers, ErrorCode::ROOM_FULL, "the room is full")
}

fn too_many_rooms() -> Refusal {
    Refusal::by(
        Limit::RoomsPerUser,
        ErrorCode::FORBIDDEN,
        "you are in too many rooms",
    )
}

/// What applying an action produced besides the new record.
enum Applied {
    /// The reply is `RoomInfo`.
    Info,
    /// The actor left: the reply is `Done`.
    Gone,
    /// A link was made: the reply is `LinkCreated`.
    Link(LinkToken),
}

fn member_count(shared: &Shared, user: UserId) -> Result<usize, StoreError> {
    Ok(shared
        .store
        .user_rooms(user)?
        .iter()
        .filter(|(_, m)| *m)
        .count())
}

/// Applies `action` by `actor` to `room` (already at the checked epoch).
fn apply(
    shared: &Shared,
    room: &mut RoomRecord,
    actor: UserId,
    action: &RoomAction,
) -> Result<Applied, Refusal> {
    let limits = &shared.config.limits;
    let t = now();
    // Expired and used-up links go on every change.
    room.links
        .retain(|l| l.expires_at.is_none_or(|e| e > t) && l.uses_left.is_none_or(|n| n > 0));
    let my_role = room.role(actor);
    let need = |min: Role| -> Result<Role, Refusal> {
        match my_role {
            None => Err(refuse(ErrorCode::NOT_A_MEMBER, "you are not a member")),
            Some(r) if r < min => Err(refuse(
                ErrorCode::FORBIDDEN,
                "your role does not allow this",
            )),
            Some(r) => Ok(r),
        }
    };
    let full =
        |room: &RoomRecord| room.members.len() + room.invited.len() >= limits.max_room_members;
    let join_checks = |room: &RoomRecord| -> Result<(), Refusal> {
        if room.banned.contains(&actor) {
            return Err(refuse(ErrorCode::BANNED, "you are banned from this room"));
        }
        if my_role.is_some() {
            return Err(refuse(ErrorCode::FORBIDDEN, "already a member"));
        }
        if member_count(shared, actor)? >= limits.max_rooms_per_user {
            return Err(too_many_rooms());
        }
        Ok(())
    };
    match action {
        RoomAction::Create { .. } => Err(refuse(ErrorCode::FORBIDDEN, "the room exists")),
        RoomAction::Invite { user } => {
            need(Role::Admin)?;
            if shared.store.account(*user)?.is_none() {
                return Err(refuse(ErrorCode::UNKNOWN_RECIPIENT, "no such account"));
            }
            if room.banned.contains(user) {
                return Err(refuse(ErrorCode::BANNED, "that account is banned here"));
            }
            if room.role(*user).is_some() || room.invited.contains(user) {
                return Err(refuse(ErrorCode::FORBIDDEN, "already a member or invited"));
            }
            if full(room) {
                return Err(room_full());
            }
            room.invited.push(*user);
            Ok(Applied::Info)
        }
        RoomAction::Accept => {
            if !room.invited.contains(&actor) {
                return Err(refuse(ErrorCode::NO_INVITATION, "no invitation for you"));
            }
            join_checks(room)?;
            room.invited.retain(|u| *u != actor);
            room.members.push((actor, Role::Member));
            Ok(Applied::Info)
        }
        RoomAction::Decline => {
            if !room.invited.contains(&actor) {
                return Err(refuse(ErrorCode::NO_INVITATION, "no invitation for you"));
            }
            room.invited.retain(|u| *u != actor);
            Ok(Applied::Gone)
        }
        RoomAction::JoinByLink { token } => {
            let Some(i) = room.links.iter().position(|l| l.token == *token) else {
                return Err(refuse(ErrorCode::LINK_INVALID, "the link is not valid"));
            };
            join_checks(room)?;
            let invited = room.invited.contains(&actor);
            if !invited && full(room) {
                return Err(room_full());
            }
            if let Some(link) = room.links.get_mut(i)
                && let Some(n) = link.uses_left.as_mut()
            {
                *n = n.saturating_sub(1);
            }
            room.invited.retain(|u| *u != actor);
            room.members.push((actor, Role::Member));
            Ok(Applied::Info)
        }
        RoomAction::Leave => {
            let r = need(Role::Member)?;
            if r == Role::Owner && room.members.len() > 1 {
                return Err(refuse(
                    ErrorCode::FORBIDDEN,
                    "the owner must hand ownership over before leaving",
                ));
            }
            room.members.retain(|m| m.0 != actor);
            Ok(Applied::Gone)
        }
        RoomAction::Kick { user } => {
            let r = need(Role::Admin)?;
            if let Some(target) = room.role(*user) {
                if target >= r {
                    return Err(refuse(
                        ErrorCode::FORBIDDEN,
                        "you cannot remove that member",
                    ));
                }
                room.members.retain(|m| m.0 != *user);
            } else if room.invited.contains(user) {
                room.invited.retain(|u| u != user);
            } else {
                return Err(refuse(ErrorCode::NOT_A_MEMBER, "not a member"));
            }
            Ok(Applied::Info)
        }
        RoomAction::Ban { user } => {
            let r = need(Role::Admin)?;
            if *user == actor {
                return Err(refuse(ErrorCode::FORBIDDEN, "you cannot ban yourself"));
            }
            if room.role(*user).is_some_and(|t| t >= r) {
                return Err(refuse(
                    ErrorCode::FORBIDDEN,
                    "you cannot remove that member",
                ));
            }
            room.members.retain(|m| m.0 != *user);
            room.invited.retain(|u| u != user);
            if !room.banned.contains(user) {
                if room.banned.len() >= limits.max_room_members {
                    return Err(Refusal::by(
                        Limit::RoomMembers,
                        ErrorCode::ROOM_FULL,
                        "too many bans",
                    ));
                }
                room.banned.push(*user);
            }
            Ok(Applied::Info)
        }
        RoomAction::Unban { user } => {
            need(Role::Admin)?;
            room.banned.retain(|u| u != user);
            Ok(Applied::Info)
        }
        RoomAction::SetRole { user, role } => {
            need(Role::Owner)?;
            if *user == actor {
                return Err(refuse(
                    ErrorCode::FORBIDDEN,
                    "hand ownership to someone else",
                ));
            }
            if room.role(*user).is_none() {
                return Err(refuse(ErrorCode::NOT_A_MEMBER, "not a member"));
            }
            for m in room.members.iter_mut() {
                if m.0 == *user {
                    m.1 = *role;
                } else if m.0 == actor && *role == Role::Owner {
                    // Exactly one owner: the old one becomes an admin.
                    m.1 = Role::Admin;
                }
            }
            Ok(Applied::Info)
        }
        RoomAction::CreateLink {
            expires_at,
            max_uses,
        } => {
            need(Role::Admin)?;
            if room.links.len() >= limits.max_room_links {
                return Err(Refusal::by(
                    Limit::RoomLinks,
                    ErrorCode::FORBIDDEN,
                    "too many invite links",
                ));
            }
            let token = LinkToken::from_bytes(random()?);
            room.links.push(LinkRecord {
                token,
                expires_at: *expires_at,
                uses_left: *max_uses,
            });
            Ok(Applied::Link(token))
        }
        RoomAction::RevokeLink { token } => {
            need(Role::Admin)?;
            if !room.links.iter().any(|l| l.token == *token) {
                return Err(refuse(ErrorCode::LINK_INVALID, "no such link"));
            }
            room.links.retain(|l| l.token != *token);
            Ok(Applied::Info)
        }
    }
}

/// `ChangeRoom`: verify, apply, store, fan the change out, reply.
pub(crate) async fn change(
    shared: &Shared,
    me: &Authed,
    c: ChangeRoom,
) -> Result<ServerFrame, Refusal> {
    let signed = c.change;
    let ch = &signed.change;
    if ch.actor != me.addr {
        return Err(refuse(
            ErrorCode::FORBIDDEN,
            "the actor must be the signed-in device",
        ));
    }
    let t = now();
    if t.0.abs_diff(ch.at.0) > shared.config.limits.room_clock_skew_ms {
        return Err(Refusal::by(
            Limit::RoomClockSkew,
            ErrorCode::CLOCK_SKEW,
            "the change's time is too far from the relay's clock",
        ));
    }
    let account = shared
        .store
        .account(me.addr.user)?
        .ok_or_else(Refusal::internal)?;
    let device = account
        .device(me.addr.device)
        .ok_or_else(Refusal::internal)?;
    if verify::room_change(&device.identity, &signed).is_err() {
        return Err(refuse(
            ErrorCode::BAD_SIGNATURE,
            "bad room change signature",
        ));
    }

    let (room_id, room, applied, to_push) = change_locked(shared, me, &signed)?;
    shared.flush().await?;
    push_all(shared, to_push);

    Ok(match applied {
        Applied::Gone => ServerFrame::Done(Done { req: c.req }),
        Applied::Link(token) => ServerFrame::LinkCreated(LinkCreated {
            req: c.req,
            room: room_id,
            epoch: room.epoch,
            token,
        }),
        Applied::Info => info(shared, c.req, room_id, &room)?,
    })
}

/// The synchronous part of a change, under the room's lock: apply, save,
/// and store the change envelopes, with no send of the room in between.
fn change_locked(
    shared: &Shared,
    me: &Authed,
    signed: &SignedRoomChange,
) -> Result<(RoomId, RoomRecord, Applied, Stored), Refusal> {
    let ch = &signed.change;
    let (room_id, room, applied, before, _g) = if let RoomAction::Create { name } = &ch.action {
        if ch.room.as_bytes() != &[0u8; 16] || ch.epoch != 0 {
            return Err(refuse(
                ErrorCode::FORBIDDEN,
                "a create names the all-zero room at epoch 0",
            ));
        }
        if name.is_reserved() {
            return Err(refuse(
                ErrorCode::INVALID_USERNAME,
                "that room name is reserved",
            ));
        }
        if member_count(shared, me.addr.user)? >= shared.config.limits.max_rooms_per_user {
            return Err(too_many_rooms());
        }
        let id = RoomId::from_bytes(random()?);
        let room = RoomRecord {
            name: name.clone(),
            epoch: 1,
            members: vec![(me.addr.user, Role::Owner)],
            invited: Vec::new(),
            banned: Vec::new(),
            links: Vec::new(),
        };
        let g = lock(shared, id);
        match shared.store.save_room(id, None, &room) {
            Err(StoreError::RoomNameTaken) => {
                return Err(refuse(
                    ErrorCode::ROOM_NAME_TAKEN,
                    "that room name is taken",
                ));
            }
            r => r?,
        }
        (id, room, Applied::Info, BTreeSet::new(), g)
    } else {
        let id = ch.room;
        let g = lock(shared, id);
        let mut room = shared
            .store
            .room(id)?
            .ok_or_else(|| refuse(ErrorCode::UNKNOWN_ROOM, "no such room"))?;
        if room.epoch != ch.epoch {
            return Err(stale(room.epoch, CHANGE_STALE));
        }
        let before: BTreeSet<UserId> = room.users().collect();
        let applied = apply(shared, &mut room, me.addr.user, &ch.action)?;
        let prev = room.epoch;
        room.epoch = prev.saturating_add(1);
        match shared.store.save_room(id, Some(prev), &room) {
            Err(StoreError::StaleEpoch(e)) => return Err(stale(e, CHANGE_STALE)),
            r => r?,
        }
        (id, room, applied, before, g)
    };
    crate::metrics::room_change();

    // Store the change for everyone who could see the room before or after.
    let mut users = before;
    users.extend(room.users());
    let mut stored_change = signed.clone();
    stored_change.change.room = room_id;
    let envelope = Envelope {
        message_id: MessageId::from_bytes(random()?),
        from: me.addr,
        sent_at: now(),
        body: EnvelopeBody::RoomChange(stored_change),
    };
    let (to_push, full) = fan_out(shared, me.addr, &users, &envelope)?;
    if full {
        // The change stands; that device re-reads the room with `GetRoom`.
        tracing::warn!("a room change did not fit a full mailbox");
    }
    Ok((room_id, room, applied, to_push))
}

/// What a change signed against an old epoch is told.
const CHANGE_STALE: &str = "the room changed; sign against the current epoch";
/// What a room message from an old view of the room is told.
const SEND_STALE: &str =
    "the room changed; read it again, hand your Sender Key to new members, and resend";

/// `STALE_EPOCH`, with the epoch to use.
fn stale(current: u64, message: &'static str) -> Refusal {
    Refusal {
        detail: ErrorDetail::Epoch { current },
        ..refuse(ErrorCode::STALE_EPOCH, message)
    }
}

type Stored = Vec<(DeviceAddress, Seq, Envelope)>;

/// Stores `envelope` for every device of `users` but `skip`. Returns what to
/// push after the flush, and whether some mailbox was full.
fn fan_out(
    shared: &Shared,
    skip: DeviceAddress,
    users: &BTreeSet<UserId>,
    envelope: &Envelope,
) -> Result<(Stored, bool), Refusal> {
    let devices = devices_of(shared, skip, users)?;
    store_for(shared, &devices, envelope)
}

/// Every device of `users` but `skip`.
fn devices_of(
    shared: &Shared,
    skip: DeviceAddress,
    users: &BTreeSet<UserId>,
) -> Result<Vec<DeviceAddress>, Refusal> {
    let mut out = Vec::new();
    for u in users {
        let Some(acc) = shared.store.account(*u)? else {
            continue;
        };
        out.extend(
            acc.devices
                .iter()
                .map(|d| DeviceAddress {
                    user: *u,
                    device: d.device,
                })
                .filter(|dev| *dev != skip),
        );
    }
    Ok(out)
}

/// Stores `envelope` for each of `devices`. Returns what to push after the
/// flush, and whether some mailbox was full.
fn store_for(
    shared: &Shared,
    devices: &[DeviceAddress],
    envelope: &Envelope,
) -> Result<(Stored, bool), Refusal> {
    let quota = shared.config.limits.mailbox_quota;
    let mut out = Vec::new();
    let mut full = false;
    for dev in devices {
        match shared
            .store
            .enqueue(*dev, envelope.message_id, envelope, quota)?
        {
            Enqueued::Stored(seq) => out.push((*dev, seq, envelope.clone())),
            Enqueued::Duplicate(_) => {}
            Enqueued::Full => full = true,
        }
    }
    Ok((out, full))
}

fn push_all(shared: &Shared, stored: Stored) {
    for (dev, seq, envelope) in stored {
        if shared.router.push(dev, Push::Deliver { seq, envelope }) == PushOutcome::SlowConsumer {
            tracing::info!(user = %dev.user, device = dev.device.0, "slow consumer disconnected");
        }
    }
}

/// A room's state as `RoomInfo`.
fn info(
    shared: &Shared,
    req: spider_protocol::ids::RequestId,
    id: RoomId,
    room: &RoomRecord,
) -> Result<ServerFrame, Refusal> {
    let mut members = Vec::with_capacity(room.members.len());
    for (u, role) in &room.members {
        let Some(acc) = shared.store.account(*u)? else {
            continue;
        };
        members.push(Member {
            user: *u,
            username: acc.username,
            role: *role,
            devices: BoundedVec::new(acc.devices.iter().map(|d| d.device).collect())
                .map_err(|_| Refusal::internal())?,
        });
    }
    Ok(ServerFrame::RoomInfo(RoomInfo {
        req,
        room: id,
        name: room.name.clone(),
        epoch: room.epoch,
        members: BoundedVec::new(members).map_err(|_| Refusal::internal())?,
        invited: BoundedVec::new(room.invited.clone()).map_err(|_| Refusal::internal())?,
    }))
}

/// `GetRoom`: for members and invitees only; others learn nothing, not even
/// whether the room exists.
pub(crate) fn get(shared: &Shared, me: &Authed, g: GetRoom) -> Result<ServerFrame, Refusal> {
    let unknown = || refuse(ErrorCode::UNKNOWN_ROOM, "no such room");
    let id = match g.room {
        RoomRef::Id(id) => id,
        RoomRef::Name(name) => shared.store.room_by_name(&name)?.ok_or_else(unknown)?,
    };
    let room = shared.store.room(id)?.ok_or_else(unknown)?;
    if !room.users().any(|u| u == me.addr.user) {
        return Err(unknown());
    }
    info(shared, g.req, id, &room)
}

/// `ResolveLink`: what a live link leads to.
pub(crate) fn resolve_link(shared: &Shared, r: ResolveLink) -> Result<ServerFrame, Refusal> {
    let invalid = || refuse(ErrorCode::LINK_INVALID, "the link is not valid");
    let id = shared.store.room_by_link(r.token)?.ok_or_else(invalid)?;
    let room = shared.store.room(id)?.ok_or_else(invalid)?;
    let t = now();
    let live = room.links.iter().any(|l| {
        l.token == r.token
            && l.expires_at.is_none_or(|e| e > t)
            && l.uses_left.is_none_or(|n| n > 0)
    });
    if !live {
        return Err(invalid());
    }
    Ok(ServerFrame::LinkInfo(LinkInfo {
        req: r.req,
        name: room.name,
        room: id,
        epoch: room.epoch,
    }))
}

/// `ListRooms`: my rooms and pending invitations.
pub(crate) fn list(shared: &Shared, me: &Authed, l: ListRooms) -> Result<ServerFrame, Refusal> {
    let mut out = Vec::new();
    for (id, _) in shared.store.user_rooms(me.addr.user)? {
        let Some(room) = shared.store.room(id)? else {
            continue;
        };
        out.push(RoomSummary {
            room: id,
            name: room.name.clone(),
            role: room.role(me.addr.user),
            members: u32::try_from(room.members.len()).unwrap_or(u32::MAX),
        });
    }
    out.truncate(spider_protocol::message::MAX_ROOMS_LISTED);
    Ok(ServerFrame::RoomList(RoomList {
        req: l.req,
        rooms: BoundedVec::new(out).map_err(|_| Refusal::internal())?,
    }))
}

/// `SendRoom`: store the one ciphertext for every member device but mine,
/// durably, then ack and push.
pub(crate) async fn send(
    shared: &Shared,
    me: &Authed,
    s: SendRoom,
) -> Result<ServerFrame, Refusal> {
    let sent_at = now();
    let envelope = Envelope {
        message_id: s.message_id,
        from: me.addr,
        sent_at,
        body: EnvelopeBody::Room {
            room: s.room,
            ciphertext: s.ciphertext,
        },
    };
    let (to_push, full) = {
        let _g = lock(shared, s.room);
        let room = shared
            .store
            .room(s.room)?
            .ok_or_else(|| refuse(ErrorCode::UNKNOWN_ROOM, "no such room"))?;
        if room.role(me.addr.user).is_none() {
            return Err(refuse(ErrorCode::NOT_A_MEMBER, "you are not a member"));
        }
        // The sender must have handed its Sender Key to exactly the devices
        // that get this copy: a member who joined, or a device added, since
        // the sender last read the room would get a message it cannot read.
        if s.epoch != room.epoch {
            return Err(stale(room.epoch, SEND_STALE));
        }
        let users: BTreeSet<UserId> = room.members.iter().map(|m| m.0).collect();
        let devices = devices_of(shared, me.addr, &users)?;
        if room_devices_digest(devices.iter().copied()) != s.devices {
            return Err(refuse(
                ErrorCode::MISMATCHED_DEVICES,
                "a member's devices changed; read the room again, hand your Sender Key to new devices, and resend",
            ));
        }
        store_for(shared, &devices, &envelope)?
    };
    shared.flush().await?;
    push_all(shared, to_push);
    if full {
        return Err(Refusal::by(
            Limit::MailboxQuota,
            ErrorCode::MAILBOX_FULL,
            "a member device's mailbox is full; retry later",
        ));
    }
    crate::metrics::room_message();
    Ok(ServerFrame::Sent(Sent {
        req: s.req,
        message_id: s.message_id,
        sent_at,
    }))
}

/// A room ephemeral: to online member devices but mine; dropped unless I am
/// a member.
pub(crate) fn ephemeral(
    shared: &Shared,
    me: &Authed,
    room: RoomId,
    payload: spider_protocol::bytes::BoundedBytes<{ spider_protocol::message::MAX_EPHEMERAL_LEN }>,
) -> Result<(), StoreError> {
    let Some(r) = shared.store.room(room)? else {
        return Ok(());
    };
    if r.role(me.addr.user).is_none() {
        return Ok(());
    }
    for (u, _) in &r.members {
        for d in shared.router.online_devices(*u) {
            let dev = DeviceAddress {
                user: *u,
                device: d,
            };
            if dev == me.addr {
                continue;
            }
            shared.router.push(
                dev,
                Push::Frame(ServerFrame::Ephemeral(Ephemeral {
                    from: me.addr,
                    room: Some(room),
                    payload: payload.clone(),
                })),
            );
        }
    }
    Ok(())
}

/// Accounts that share a room with `user` as members (for presence).
pub(crate) fn co_members(shared: &Shared, user: UserId) -> Result<BTreeSet<UserId>, StoreError> {
    let mut out = BTreeSet::new();
    for (id, member) in shared.store.user_rooms(user)? {
        if !member {
            continue;
        }
        if let Some(room) = shared.store.room(id)? {
            out.extend(room.members.iter().map(|m| m.0).filter(|u| *u != user));
        }
    }
    Ok(out)
}
