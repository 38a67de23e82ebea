//! The adapter's rooms, invite links, safety numbers, profiles and
//! presence: [`Request`]s answered through the SDK's room and social
//! requests, and the SDK events that answer them turned into replies and
//! [`WorkerEvent`]s.
//!
//! A room request is answered when the SDK reports the relay's answer to it
//! ([`Event::RoomRequestDone`], one per request, or [`Event::LinkCreated`]);
//! pending requests wait in `SocialState::ops` and are matched by kind and
//! room, so a change someone else made in the meantime cannot answer ours.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;

use spider_client::client::DriverError;
use spider_client::engine::{ClientError, Event};
use spider_client::profile::Profile;
use spider_client::social::{RoomDetails, invite_link};
use spider_client::store::SledStore;
use spider_protocol::error::ErrorCode;
use spider_protocol::ids::{LinkToken, RoomId, UserId};
use spider_protocol::message::{Presence, Role, RoomAction};
use spider_protocol::name::{RoomName, Username};
use tokio::sync::mpsc;

use super::{Running, reject, unsupported};
use crate::worker::{
    Contact, Invitation, JoinTarget, MemberEntry, ReplyTo, Request, RoomEntry, SafetyInfo,
    WorkerError, WorkerEvent,
};

/// Waits for `fut` (an SDK request) while taking in the SDK's events, which
/// are kept in `backlog` for later.
pub(super) async fn pumped<F: Future>(
    events: &mut mpsc::Receiver<Event>,
    backlog: &mut VecDeque<Event>,
    fut: F,
) -> F::Output {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            biased;
            out = &mut fut => return out,
            Some(e) = events.recv() => backlog.push_back(e),
        }
    }
}

/// How long `/members` waits for the names of members who just joined.
const NAME_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// What waits for the relay's look-up of a name.
#[derive(Debug)]
pub(super) enum AfterLookup {
    /// `/msg`: the contact.
    Open(ReplyTo<Contact>),
    /// `/invite` of someone not known yet.
    Invite(RoomId, ReplyTo<()>),
    /// `/kick` of someone not known yet.
    Kick(RoomId, ReplyTo<()>),
}

impl AfterLookup {
    /// Answers with `e`.
    pub(super) fn fail(self, e: WorkerError) {
        match self {
            Self::Open(r) => {
                let _ = r.send(Err(e));
            }
            Self::Invite(_, r) | Self::Kick(_, r) => {
                let _ = r.send(Err(e));
            }
        }
    }
}

/// A room request waiting for the relay's answer.
#[derive(Debug)]
enum Op {
    Create(RoomName, ReplyTo<RoomEntry>),
    Invite(RoomId, Username, ReplyTo<()>),
    Link(RoomId, ReplyTo<String>),
    Accept(RoomId, ReplyTo<RoomEntry>),
    JoinLink(LinkToken, ReplyTo<RoomEntry>),
    Decline(RoomId, ReplyTo<()>),
    Leave(RoomId, ReplyTo<()>),
    Kick(RoomId, Username, ReplyTo<()>),
}

impl Op {
    /// Whether the relay's answer about `action` in `room` is this one's.
    fn answers(&self, room: Option<RoomId>, action: &RoomAction) -> bool {
        match (self, action) {
            (Op::Create(n, _), RoomAction::Create { name }) => n == name,
            (Op::Invite(r, ..), RoomAction::Invite { .. })
            | (Op::Link(r, _), RoomAction::CreateLink { .. })
            | (Op::Accept(r, _), RoomAction::Accept)
            | (Op::Decline(r, _), RoomAction::Decline)
            | (Op::Leave(r, _), RoomAction::Leave)
            | (Op::Kick(r, ..), RoomAction::Kick { .. }) => room == Some(*r),
            (Op::JoinLink(t, _), RoomAction::JoinByLink { token }) => t == token,
            _ => false,
        }
    }

    fn fail(self, e: &ClientError) {
        match self {
            Op::Create(name, r) => {
                let e = match e {
                    ClientError::Relay { code, .. } if *code == ErrorCode::ROOM_NAME_TAKEN => {
                        WorkerError::NameTaken(name.to_string())
                    }
                    e => refusal(e),
                };
                let _ = r.send(Err(e));
            }
            Op::Invite(_, user, r) | Op::Kick(_, user, r) => {
                let e = match e {
                    ClientError::Relay { code, .. }
                        if *code == ErrorCode::UNKNOWN_RECIPIENT
                            || *code == ErrorCode::UNKNOWN_USER
                            || *code == ErrorCode::NOT_A_MEMBER =>
                    {
                        WorkerError::NoSuchUser(user)
                    }
                    e => refusal(e),
                };
                let _ = r.send(Err(e));
            }
            Op::Link(_, r) => {
                let _ = r.send(Err(refusal(e)));
            }
            Op::Accept(_, r) | Op::JoinLink(_, r) => {
                let _ = r.send(Err(refusal(e)));
            }
            Op::Decline(_, r) | Op::Leave(_, r) => {
                let _ = r.send(Err(refusal(e)));
            }
        }
    }
}

/// The relay's refusal as the status line shows it.
fn refusal(e: &ClientError) -> WorkerError {
    match e {
        ClientError::Relay { code, text, .. } => {
            let why = if text.is_empty() {
                code.to_string()
            } else {
                text.clone()
            };
            match *code {
                ErrorCode::FORBIDDEN | ErrorCode::BANNED => WorkerError::Forbidden(why),
                ErrorCode::LINK_INVALID => WorkerError::Other(
                    "the invite link expired, was revoked or is used up".to_owned(),
                ),
                _ => WorkerError::Other(format!("the relay refused: {why}")),
            }
        }
        e => WorkerError::Other(e.to_string()),
    }
}

fn driver(e: DriverError) -> WorkerError {
    match e {
        DriverError::Client(ClientError::Transport(_)) => WorkerError::Offline,
        DriverError::Stopped => WorkerError::WorkerGone,
        e => WorkerError::Other(e.to_string()),
    }
}

/// What the adapter keeps about rooms, profiles and presence.
#[derive(Debug, Default)]
pub(super) struct SocialState {
    /// Room requests waiting for the relay.
    ops: Vec<Op>,
    /// `/profile` requests waiting for the relay.
    profile_replies: VecDeque<ReplyTo<()>>,
    /// Rooms we are in, as the app was last told.
    rooms: HashMap<RoomId, RoomEntry>,
    /// Invitations the app was told of.
    invitations: HashSet<RoomId>,
    /// Invitations whose inviter's name is being looked up.
    unannounced: HashSet<RoomId>,
    /// Contacts' presence as last reported.
    pub(super) presence: HashMap<UserId, Presence>,
    /// Contacts' display names.
    display: HashMap<UserId, String>,
    /// Contacts marked verified.
    verified: HashSet<UserId>,
    /// Contacts whose identity key changed since it was verified.
    changed: HashSet<UserId>,
}

/// The first lists the app gets.
pub(super) struct Roster {
    /// Contacts with display names and verification marks.
    pub(super) contacts: Vec<Contact>,
    /// Rooms we are in.
    pub(super) rooms: Vec<RoomEntry>,
    /// Pending invitations whose inviter has a name.
    pub(super) invitations: Vec<Invitation>,
}

fn entry(d: &RoomDetails, me: UserId) -> Option<RoomEntry> {
    Some(RoomEntry {
        id: d.state.room,
        name: RoomName::parse(&d.state.name).ok()?,
        role: d.role_of(&me).unwrap_or(Role::Member),
        members: d.state.members.len(),
    })
}

fn invitation(d: &RoomDetails, names: &HashMap<UserId, Username>) -> Option<Invitation> {
    let (from, at) = d.extra.inviter?;
    Some(Invitation {
        room: d.state.room,
        room_name: RoomName::parse(&d.state.name).ok()?,
        from: names.get(&from)?.clone(),
        at,
    })
}

impl SocialState {
    /// The state and the roster from the profile, before signing in.
    pub(super) fn load(
        profile: &Profile<SledStore>,
        me: Option<UserId>,
        names: &HashMap<UserId, Username>,
    ) -> anyhow::Result<(Self, Roster)> {
        let mut s = Self {
            verified: profile.verified_users()?.into_iter().collect(),
            ..Self::default()
        };
        let mut contacts = Vec::new();
        for d in profile.contact_details()? {
            if let Some(n) = d.display_name {
                s.display.insert(d.contact.user, n);
            }
            contacts.push(s.contact(d.contact.user, d.contact.username));
        }
        let mut rooms = Vec::new();
        let mut invitations = Vec::new();
        if let Some(me) = me {
            for d in profile.rooms_details()? {
                if d.state.joined {
                    if let Some(e) = entry(&d, me) {
                        s.rooms.insert(e.id, e.clone());
                        rooms.push(e);
                    }
                } else if d.is_invitation(&me) {
                    match invitation(&d, names) {
                        Some(i) => {
                            s.invitations.insert(i.room);
                            invitations.push(i);
                        }
                        None => {
                            s.unannounced.insert(d.state.room);
                        }
                    }
                }
            }
        }
        Ok((
            s,
            Roster {
                contacts,
                rooms,
                invitations,
            },
        ))
    }

    /// A contact as the app shows it.
    pub(super) fn contact(&self, id: UserId, name: Username) -> Contact {
        Contact {
            id,
            name,
            display_name: self.display.get(&id).cloned(),
            presence: self
                .presence
                .get(&id)
                .copied()
                .unwrap_or(Presence::Offline { last_seen: None }),
            verified: self.verified.contains(&id),
            identity_changed: self.changed.contains(&id),
        }
    }

    /// The connection went: nothing pending will be answered.
    pub(super) fn disconnected(&mut self) {
        for op in self.ops.drain(..) {
            op.fail(&ClientError::Transport("connection lost".to_owned()));
        }
        for r in self.profile_replies.drain(..) {
            let _ = r.send(Err(WorkerError::Offline));
        }
    }
}

/// One SDK call made while events keep being taken in.
macro_rules! sdk {
    ($self:ident . $($call:tt)+) => {
        pumped(
            &mut $self.session.events,
            &mut $self.backlog,
            $self.session.client.$($call)+,
        )
        .await
    };
}

impl Running {
    /// Asks the relay to look `name` up; `after` continues once it answers.
    pub(super) async fn look_up(&mut self, name: Username, after: AfterLookup) {
        match sdk!(self.lookup_user(name.clone())) {
            Ok(()) => self.opening.push((name, after)),
            Err(e) => after.fail(driver(e)),
        }
    }

    /// The relay found `name` (now `user`): go on with what waited for it.
    pub(super) async fn after_lookup(&mut self, after: AfterLookup, user: UserId, name: Username) {
        match after {
            AfterLookup::Open(reply) => {
                let _ = reply.send(Ok(self.social.contact(user, name)));
            }
            AfterLookup::Invite(room, reply) => self.invite(room, user, name, reply).await,
            AfterLookup::Kick(room, reply) => self.kick(room, user, name, reply).await,
        }
    }

    async fn invite(&mut self, room: RoomId, user: UserId, name: Username, reply: ReplyTo<()>) {
        match sdk!(self.invite(room, user)) {
            Ok(()) => self.social.ops.push(Op::Invite(room, name, reply)),
            Err(e) => {
                let _ = reply.send(Err(driver(e)));
            }
        }
    }

    async fn kick(&mut self, room: RoomId, user: UserId, name: Username, reply: ReplyTo<()>) {
        match sdk!(self.kick(room, user)) {
            Ok(()) => self.social.ops.push(Op::Kick(room, name, reply)),
            Err(e) => {
                let _ = reply.send(Err(driver(e)));
            }
        }
    }

    fn user_id(&self, name: &Username) -> Option<UserId> {
        self.names
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(id, _)| *id)
    }

    async fn room_details(&mut self, room: RoomId) -> Result<Option<RoomDetails>, WorkerError> {
        let rooms = sdk!(self.rooms()).map_err(driver)?;
        Ok(rooms.into_iter().find(|d| d.state.room == room))
    }

    /// Rooms, links, safety numbers, verification, profile.
    pub(super) async fn social_request(&mut self, req: Request) {
        match req {
            Request::CreateRoom { name, reply } => match sdk!(self.create_room(name.clone())) {
                Ok(()) => self.social.ops.push(Op::Create(name, reply)),
                Err(e) => {
                    let _ = reply.send(Err(driver(e)));
                }
            },
            Request::Invite { room, user, reply } => match self.user_id(&user) {
                Some(id) => self.invite(room, id, user, reply).await,
                None => self.look_up(user, AfterLookup::Invite(room, reply)).await,
            },
            Request::Kick { room, user, reply } => match self.user_id(&user) {
                Some(id) => self.kick(room, id, user, reply).await,
                None => self.look_up(user, AfterLookup::Kick(room, reply)).await,
            },
            Request::CreateLink { room, reply } => match sdk!(self.create_link(room, None, None)) {
                Ok(()) => self.social.ops.push(Op::Link(room, reply)),
                Err(e) => {
                    let _ = reply.send(Err(driver(e)));
                }
            },
            Request::Join {
                target: JoinTarget::Link(token),
                reply,
            } => match sdk!(self.join_by_link(token)) {
                Ok(()) => self.social.ops.push(Op::JoinLink(token, reply)),
                Err(e) => {
                    let _ = reply.send(Err(driver(e)));
                }
            },
            Request::Join {
                target: JoinTarget::Room(name),
                reply,
            } => self.accept(name, reply).await,
            Request::Decline { room, reply } => match sdk!(self.decline_invite(room)) {
                Ok(()) => self.social.ops.push(Op::Decline(room, reply)),
                Err(e) => {
                    let _ = reply.send(Err(driver(e)));
                }
            },
            Request::Leave { room, reply } => match sdk!(self.leave_room(room)) {
                Ok(()) => self.social.ops.push(Op::Leave(room, reply)),
                Err(e) => {
                    let _ = reply.send(Err(driver(e)));
                }
            },
            Request::Members { room, reply } => {
                let r = self.members(room).await;
                let _ = reply.send(r);
            }
            Request::SafetyNumber { user, reply } => {
                let r = self.safety(user).await;
                let _ = reply.send(r);
            }
            Request::Verify { user, reply } => {
                let r = match (sdk!(self.set_verified(user, true)), self.names.get(&user)) {
                    (Ok(()), Some(name)) => {
                        self.social.verified.insert(user);
                        self.social.changed.remove(&user);
                        Ok(self.social.contact(user, name.clone()))
                    }
                    (Ok(()), None) => Err(WorkerError::Other("unknown contact".to_owned())),
                    (Err(e), _) => Err(driver(e)),
                };
                let _ = reply.send(r);
            }
            Request::SetProfile {
                display_name,
                reply,
            } => match sdk!(self.set_display_name(display_name)) {
                Ok(_) => self.social.profile_replies.push_back(reply),
                Err(e) => {
                    let _ = reply.send(Err(driver(e)));
                }
            },
            other => reject(other, unsupported("this request")),
        }
    }

    /// `/join #room`: accept the pending invitation to the room of that name.
    async fn accept(&mut self, name: RoomName, reply: ReplyTo<RoomEntry>) {
        let me = self.session.me;
        let rooms = match sdk!(self.rooms()) {
            Ok(r) => r,
            Err(e) => {
                let _ = reply.send(Err(driver(e)));
                return;
            }
        };
        let named = |d: &&RoomDetails| d.state.name == name.as_str();
        if let Some(d) = rooms.iter().filter(named).find(|d| d.state.joined) {
            let _ = reply.send(entry(d, me).ok_or(WorkerError::NoSuchRoom(name)));
            return;
        }
        let Some(room) = rooms
            .iter()
            .filter(named)
            .find(|d| d.is_invitation(&me))
            .map(|d| d.state.room)
        else {
            let _ = reply.send(Err(WorkerError::NoSuchRoom(name)));
            return;
        };
        match sdk!(self.accept_invite(room)) {
            Ok(()) => self.social.ops.push(Op::Accept(room, reply)),
            Err(e) => {
                let _ = reply.send(Err(driver(e)));
            }
        }
    }

    async fn members(&mut self, room: RoomId) -> Result<Vec<MemberEntry>, WorkerError> {
        let d = self
            .room_details(room)
            .await?
            .filter(|d| d.state.joined)
            .ok_or_else(|| WorkerError::Other("you are not in this room".to_owned()))?;
        let me = self.session.me;
        let names = self.member_names(&d).await;
        // A member whose name the relay did not give within the patience
        // (an account that is gone) is left out.
        Ok(d.state
            .members
            .iter()
            .filter_map(|(u, _)| {
                let name = if *u == me {
                    self.me.clone()
                } else {
                    names.get(u)?.clone()
                };
                let presence = if *u == me {
                    Presence::Online
                } else {
                    self.social
                        .presence
                        .get(u)
                        .copied()
                        .unwrap_or(Presence::Offline { last_seen: None })
                };
                Some(MemberEntry {
                    name,
                    role: d.role_of(u).unwrap_or(Role::Member),
                    presence,
                })
            })
            .collect())
    }

    /// Names of a room's members: those not known yet (someone who just
    /// joined) are looked up and waited for. Events meanwhile wait in the
    /// backlog, which is read for the answers.
    async fn member_names(&mut self, d: &RoomDetails) -> HashMap<UserId, Username> {
        let mut names = self.names.clone();
        let me = self.session.me;
        let mut unknown: Vec<UserId> = d
            .state
            .members
            .iter()
            .map(|(u, _)| *u)
            .filter(|u| *u != me && !names.contains_key(u))
            .collect();
        if unknown.is_empty() || sdk!(self.look_up_ids(unknown.clone())).is_err() {
            return names;
        }
        let deadline = tokio::time::sleep(NAME_PATIENCE);
        tokio::pin!(deadline);
        loop {
            for e in &self.backlog {
                if let Event::ContactUpdated { user, username } = e {
                    names.insert(*user, username.clone());
                }
            }
            unknown.retain(|u| !names.contains_key(u));
            if unknown.is_empty() {
                return names;
            }
            tokio::select! {
                () = &mut deadline => return names,
                e = self.session.events.recv() => match e {
                    Some(e) => self.backlog.push_back(e),
                    None => return names,
                },
            }
        }
    }

    async fn safety(&mut self, user: UserId) -> Result<SafetyInfo, WorkerError> {
        let name = self
            .names
            .get(&user)
            .cloned()
            .ok_or_else(|| WorkerError::Other("unknown contact".to_owned()))?;
        let numbers = sdk!(self.safety_numbers(user)).map_err(driver)?;
        // One number per device of theirs; the app shows one (the first
        // device's): the account's devices differ only with multi-device
        // accounts, which the app does not manage yet.
        let (_, n) = numbers.into_iter().next().ok_or_else(|| {
            WorkerError::Other(format!(
                "no identity key of {name} is known yet: exchange a message first"
            ))
        })?;
        Ok(SafetyInfo {
            id: user,
            user: name,
            digits: n.digits().to_owned(),
            verified: self.social.verified.contains(&user),
            identity_changed: self.social.changed.contains(&user),
        })
    }

    /// A contact's identity key changed: no longer verified.
    pub(super) async fn identity_changed(&mut self, user: UserId) {
        self.social.changed.insert(user);
        if self.social.verified.remove(&user) {
            let _ = sdk!(self.set_verified(user, false));
        }
    }

    /// Invitations held back until their inviter had a name.
    pub(super) async fn announce_invitations(&mut self) -> Vec<WorkerEvent> {
        let mut out = Vec::new();
        if self.social.unannounced.is_empty() {
            return out;
        }
        let Ok(rooms) = sdk!(self.rooms()) else {
            return out;
        };
        for d in rooms {
            if self.social.unannounced.contains(&d.state.room)
                && let Some(i) = invitation(&d, &self.names)
            {
                self.social.unannounced.remove(&i.room);
                self.social.invitations.insert(i.room);
                out.push(WorkerEvent::Invitation(i));
            }
        }
        out
    }

    /// A room changed: tell the app what it now looks like (joined, an
    /// invitation, or gone).
    async fn room_changed(&mut self, room: RoomId) -> Vec<WorkerEvent> {
        let mut out = Vec::new();
        let Ok(Some(d)) = self.room_details(room).await else {
            return out;
        };
        let me = self.session.me;
        if d.state.joined {
            self.social.invitations.remove(&room);
            self.social.unannounced.remove(&room);
            if let Some(e) = entry(&d, me)
                && self.social.rooms.get(&room) != Some(&e)
            {
                self.social.rooms.insert(room, e.clone());
                out.push(WorkerEvent::RoomChanged(e));
            }
        } else if d.is_invitation(&me) {
            if !self.social.invitations.contains(&room) {
                match invitation(&d, &self.names) {
                    Some(i) => {
                        self.social.invitations.insert(room);
                        out.push(WorkerEvent::Invitation(i));
                    }
                    // The SDK is looking the inviter up: announced then.
                    None => {
                        self.social.unannounced.insert(room);
                    }
                }
            }
        } else {
            self.social.invitations.remove(&room);
            self.social.unannounced.remove(&room);
            if self.social.rooms.remove(&room).is_some() {
                out.push(WorkerEvent::RoomLeft {
                    room,
                    kicked: !d.extra.left,
                });
            }
        }
        out
    }

    /// SDK events about rooms, profiles and presence.
    pub(super) async fn social_event(&mut self, ev: Event) -> Vec<WorkerEvent> {
        let mut out = Vec::new();
        match ev {
            Event::RoomChanged { room } => out.extend(self.room_changed(room).await),
            Event::LinkCreated { room, token } => {
                if let Some(i) = self
                    .social
                    .ops
                    .iter()
                    .position(|op| matches!(op, Op::Link(r, _) if *r == room))
                    && let Op::Link(_, reply) = self.social.ops.remove(i)
                {
                    let _ = reply.send(Ok(invite_link(&token)));
                }
            }
            Event::RoomRequestDone {
                room,
                action,
                result,
            } => {
                let Some(i) = self
                    .social
                    .ops
                    .iter()
                    .position(|op| op.answers(room, &action))
                else {
                    return out;
                };
                let op = self.social.ops.remove(i);
                match (op, result) {
                    (
                        Op::Create(_, reply) | Op::Accept(_, reply) | Op::JoinLink(_, reply),
                        Ok(()),
                    ) => {
                        let me = self.session.me;
                        let details = match room {
                            Some(r) => self.room_details(r).await,
                            None => Ok(None),
                        };
                        let r = match details {
                            Ok(Some(d)) => match entry(&d, me) {
                                Some(e) => {
                                    self.social.rooms.insert(e.id, e.clone());
                                    self.social.invitations.remove(&e.id);
                                    Ok(e)
                                }
                                None => Err(WorkerError::Other("unnamed room".to_owned())),
                            },
                            Ok(None) => Err(WorkerError::Other("unknown room".to_owned())),
                            Err(e) => Err(e),
                        };
                        let _ = reply.send(r);
                    }
                    (
                        Op::Invite(_, _, reply)
                        | Op::Kick(_, _, reply)
                        | Op::Decline(_, reply)
                        | Op::Leave(_, reply),
                        Ok(()),
                    ) => {
                        let _ = reply.send(Ok(()));
                    }
                    // Answered by LinkCreated, which comes first.
                    (Op::Link(_, reply), Ok(())) => {
                        let _ = reply.send(Err(WorkerError::Other("no link came".to_owned())));
                    }
                    (op, Err(e)) => op.fail(&e),
                }
            }
            Event::ContactsListed { contacts } => {
                for c in contacts {
                    if let Some(p) = c.presence {
                        self.social.presence.insert(c.user, p);
                        out.push(WorkerEvent::Presence {
                            user: c.user,
                            presence: p,
                        });
                    }
                }
            }
            Event::ProfileFetched { user, display_name } => {
                let changed = match display_name {
                    Some(n) => self.social.display.insert(user, n.clone()) != Some(n),
                    None => self.social.display.remove(&user).is_some(),
                };
                if changed
                    && user != self.session.me
                    && let Some(name) = self.names.get(&user)
                {
                    out.push(WorkerEvent::ContactChanged(
                        self.social.contact(user, name.clone()),
                    ));
                }
            }
            Event::ProfileSaved { result } => {
                if let Some(reply) = self.social.profile_replies.pop_front() {
                    let _ = reply.send(result.map_err(|e| refusal(&e)));
                }
            }
            _ => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use spider_relay::config::Config;

    use super::*;
    use crate::components::command::parse_link;
    use crate::worker::sdk::SdkWorker;
    use crate::worker::{
        Account, ConversationId, MessageBody, TransportChoice, Worker, await_reply,
    };

    const PATIENCE: Duration = Duration::from_secs(60);

    /// Waits for the first worker event `f` maps to something.
    async fn until<T>(
        rx: &mut mpsc::UnboundedReceiver<WorkerEvent>,
        mut f: impl FnMut(&WorkerEvent) -> Option<T>,
    ) -> T {
        loop {
            let e = tokio::time::timeout(PATIENCE, rx.recv())
                .await
                .expect("no worker event")
                .expect("worker stopped");
            if let Some(t) = f(&e) {
                return t;
            }
        }
    }

    struct Side {
        worker: Worker,
        rx: mpsc::UnboundedReceiver<WorkerEvent>,
        account: Account,
    }

    async fn side(dir: &std::path::Path, ca: &std::path::Path, server: &str, name: &str) -> Side {
        let (worker, requests) = Worker::channel();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _task = SdkWorker {
            dir: dir.join(name),
            profile: None,
            ca: Some(ca.to_owned()),
            transport: TransportChoice::Quic,
        }
        .spawn(requests, tx);
        until(&mut rx, |e| {
            matches!(e, WorkerEvent::Ready { .. }).then_some(())
        })
        .await;
        let account =
            await_reply(worker.register(server.to_owned(), Username::parse(name).unwrap()))
                .await
                .unwrap();
        Side {
            worker,
            rx,
            account,
        }
    }

    /// What the fake worker does for rooms, links, `/members`, `/safety`,
    /// `/verify`, `/profile` and presence, the adapter does on a real relay.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rooms_links_members_safety_profile_and_presence_through_a_real_relay() {
        let dir = tempfile::tempdir().unwrap();
        let relay = spider_relay::server::start(Config::for_tests(dir.path().join("relay")))
            .await
            .unwrap();
        let ca = relay.ca_pem.clone().unwrap();
        let server = relay.quic_addr.to_string();
        let mut alice = side(dir.path(), &ca, &server, "alice").await;
        let mut bob = side(dir.path(), &ca, &server, "bob").await;
        let mut carol = side(dir.path(), &ca, &server, "carol").await;
        let den = RoomName::parse("den").unwrap();

        // /room create, /link, /join LINK.
        let room = await_reply(alice.worker.create_room(den.clone()))
            .await
            .unwrap();
        assert_eq!(
            (room.name.clone(), room.role, room.members),
            (den.clone(), Role::Owner, 1)
        );
        let link = await_reply(alice.worker.create_link(room.id))
            .await
            .unwrap();
        let token = parse_link(&link).unwrap();
        assert!(link.starts_with("spider://join/"), "{link}");
        let joined = await_reply(bob.worker.join(JoinTarget::Link(token)))
            .await
            .unwrap();
        assert_eq!(
            (joined.id, joined.role, joined.members),
            (room.id, Role::Member, 2)
        );
        // Alice's side learns of the new member.
        until(&mut alice.rx, |e| {
            matches!(e, WorkerEvent::RoomChanged(r) if r.id == room.id && r.members == 2)
                .then_some(())
        })
        .await;
        let members = await_reply(alice.worker.members(room.id)).await.unwrap();
        let mut m: Vec<(String, Role)> = members
            .iter()
            .map(|m| (m.name.as_str().to_owned(), m.role))
            .collect();
        m.sort();
        assert_eq!(
            m,
            [
                ("alice".to_owned(), Role::Owner),
                ("bob".to_owned(), Role::Member)
            ]
        );

        // A room message.
        let conv = ConversationId::Room(room.id);
        await_reply(bob.worker.send_text(conv, "hi den".into()))
            .await
            .unwrap();
        let got = until(&mut alice.rx, |e| match e {
            WorkerEvent::MessageReceived {
                conversation,
                message,
            } if *conversation == conv => Some(message.clone()),
            _ => None,
        })
        .await;
        assert_eq!(got.from.as_str(), "bob");
        assert_eq!(got.body, MessageBody::Text("hi den".into()));

        // /invite by name, the invitation, /join #den, /kick.
        let carol_name = carol.account.name.clone();
        await_reply(alice.worker.invite(room.id, carol_name.clone()))
            .await
            .unwrap();
        let inv = until(&mut carol.rx, |e| match e {
            WorkerEvent::Invitation(i) => Some(i.clone()),
            _ => None,
        })
        .await;
        assert_eq!((inv.room, inv.room_name.clone()), (room.id, den.clone()));
        assert_eq!(inv.from.as_str(), "alice");
        let j = await_reply(carol.worker.join(JoinTarget::Room(den.clone())))
            .await
            .unwrap();
        assert_eq!(j.id, room.id);
        await_reply(alice.worker.kick(room.id, carol_name))
            .await
            .unwrap();
        until(&mut carol.rx, |e| {
            (*e == WorkerEvent::RoomLeft {
                room: room.id,
                kicked: true,
            })
            .then_some(())
        })
        .await;
        // A member may not kick; a taken name is refused.
        assert!(matches!(
            await_reply(bob.worker.kick(room.id, alice.account.name.clone())).await,
            Err(WorkerError::Forbidden(_))
        ));
        assert_eq!(
            await_reply(bob.worker.create_room(den.clone())).await,
            Err(WorkerError::NameTaken(den.to_string()))
        );

        // /profile: bob, who shares the room with alice, sees her name.
        await_reply(alice.worker.set_profile("Alice Liddell".into()))
            .await
            .unwrap();
        until(&mut bob.rx, |e| {
            matches!(e, WorkerEvent::ContactChanged(c)
                if c.id == alice.account.id && c.display_name.as_deref() == Some("Alice Liddell"))
            .then_some(())
        })
        .await;

        // /safety on both sides gives the same digits; /verify marks it.
        let a = await_reply(alice.worker.safety_number(bob.account.id))
            .await
            .unwrap();
        let b = await_reply(bob.worker.safety_number(alice.account.id))
            .await
            .unwrap();
        assert_eq!(a.digits.len(), 60);
        assert_eq!(a.digits, b.digits);
        assert!(!a.verified);
        let c = await_reply(alice.worker.verify(bob.account.id))
            .await
            .unwrap();
        assert!(c.verified);
        let a = await_reply(alice.worker.safety_number(bob.account.id))
            .await
            .unwrap();
        assert!(a.verified);

        // /leave.
        await_reply(bob.worker.leave(room.id)).await.unwrap();
        until(&mut bob.rx, |e| {
            (*e == WorkerEvent::RoomLeft {
                room: room.id,
                kicked: false,
            })
            .then_some(())
        })
        .await;

        // Presence: bob closes the app; alice sees him go offline.
        drop(bob.worker);
        until(&mut alice.rx, |e| {
            matches!(e, WorkerEvent::Presence { user, presence: Presence::Offline { .. } }
                if *user == bob.account.id)
            .then_some(())
        })
        .await;
        drop(alice.worker);
        drop(carol.worker);
        relay.shutdown().await.unwrap();
    }
}
