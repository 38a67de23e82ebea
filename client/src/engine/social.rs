//! The engine's social side: invite links, leaving and declining rooms,
//! profiles and presence. Formats and records are in [`crate::social`].
//!
//! - **Links.** `create_link` / `revoke_link` are signed room changes like
//!   the others. `join_by_link` asks the relay what the link leads to
//!   (`ResolveLink`), then signs a `JoinByLink` change at that epoch.
//! - **Leaving** is a signed `Leave` change, answered with `Done`. The
//!   remaining members see it in their mailboxes and rotate their Sender
//!   Keys before their next message (`handle_room_change` marks the room,
//!   as for a kick), so the leaver cannot read what follows.
//! - **Profiles.** Our display name is encrypted under our profile key and
//!   stored on the relay (`SetProfile`); the key goes to every contact in an
//!   ordinary 1:1 message (`Body::ProfileKey`), to contacts learned later as
//!   they are learned, and again to everyone after each change (it tells them
//!   to fetch the profile anew). A received key makes us fetch and decrypt
//!   that contact's profile (`GetProfile`).
//! - **Presence.** Every account we learn of (a look-up: people we write to,
//!   who write to us, room co-members) becomes our contact on the relay
//!   (`EditContact`), which lets it see our presence; the relay pushes
//!   theirs to us if they did the same. `list_contacts` reads the list with
//!   presence (`ListContacts`).

use spider_protocol::ClientFrame;
use spider_protocol::ServerFrame;
use spider_protocol::bytes::BoundedBytes;
use spider_protocol::ids::{DeviceAddress, LinkToken, MessageId, RoomId, Timestamp, UserId};
use spider_protocol::message::{
    EditContact, ErrorFrame, GetProfile, GetRoom, ListContacts, LookupUser, PresenceStatus,
    ResolveLink, Role, RoomAction, RoomChange, RoomInfo, RoomRef, SetPresence, SetProfile, UserRef,
};

use super::{ClientError, Engine, Event, Pending};
use crate::content::Body;
use crate::profile::Target;
use crate::social::{
    ContactPresence, MAX_DISPLAY_NAME_LEN, MAX_PROFILE_FETCHES, MAX_SUBSCRIBE_PER_CONNECTION,
    open_profile, sanitize_display_name, seal_profile,
};
use crate::store::ProfileStore;

/// Requests of this module waiting for the relay's answer.
#[derive(Debug)]
pub(super) enum SocialPending {
    /// `ResolveLink`, to join through the link.
    Resolve(LinkToken),
    /// `EditContact` adding this account.
    Subscribe(UserId),
    /// `ListContacts`.
    ListContacts,
    /// `SetProfile`.
    SetProfile,
    /// `GetProfile` of this account.
    GetProfile(UserId),
}

impl<S: ProfileStore> Engine<S> {
    fn require_ready(&self) -> Result<(), ClientError> {
        if self.is_ready() {
            Ok(())
        } else {
            Err(ClientError::Transport("not connected".into()))
        }
    }

    // ------------------------------------------------------------ commands

    /// Makes an invite link for a room we administer: an
    /// [`Event::LinkCreated`] with its token follows (and an
    /// [`Event::RoomRequestDone`]). `expires_at` and `max_uses` limit it;
    /// the relay refuses it afterwards with `LINK_INVALID`.
    ///
    /// # Errors
    /// Not connected (nothing is queued), [`ClientError::UnknownRoom`].
    pub fn create_link(
        &mut self,
        room: RoomId,
        expires_at: Option<Timestamp>,
        max_uses: Option<u32>,
        now: u64,
    ) -> Result<(), ClientError> {
        self.require_ready()?;
        let epoch = self.room_epoch(&room)?;
        self.change_room(
            room,
            epoch,
            RoomAction::CreateLink {
                expires_at,
                max_uses,
            },
            now,
        )
    }

    /// Revokes an invite link of a room we administer.
    ///
    /// # Errors
    /// Not connected, [`ClientError::UnknownRoom`].
    pub fn revoke_link(
        &mut self,
        room: RoomId,
        token: LinkToken,
        now: u64,
    ) -> Result<(), ClientError> {
        self.require_ready()?;
        let epoch = self.room_epoch(&room)?;
        self.change_room(room, epoch, RoomAction::RevokeLink { token }, now)
    }

    /// Joins a room through an invite link: the relay says which room and
    /// epoch, then we sign the join. An [`Event::RoomRequestDone`] answers
    /// (with `LINK_INVALID` for an expired, used-up or revoked link), and
    /// [`Event::RoomChanged`] on success.
    ///
    /// # Errors
    /// Not connected.
    pub fn join_by_link(&mut self, token: LinkToken) -> Result<(), ClientError> {
        self.require_ready()?;
        let req = self.req(Pending::Social(SocialPending::Resolve(token)));
        self.transmit
            .push_back(ClientFrame::ResolveLink(ResolveLink { req, token }));
        Ok(())
    }

    /// Leaves a room (a signed change). The others rotate their Sender Keys
    /// before their next message there.
    ///
    /// # Errors
    /// Not connected, [`ClientError::UnknownRoom`].
    pub fn leave_room(&mut self, room: RoomId, now: u64) -> Result<(), ClientError> {
        self.require_ready()?;
        let epoch = self.room_epoch(&room)?;
        self.change_room(room, epoch, RoomAction::Leave, now)
    }

    /// Declines our pending invitation to a room.
    ///
    /// # Errors
    /// Not connected, [`ClientError::UnknownRoom`].
    pub fn decline_invite(&mut self, room: RoomId, now: u64) -> Result<(), ClientError> {
        self.require_ready()?;
        let epoch = self.room_epoch(&room)?;
        self.change_room(room, epoch, RoomAction::Decline, now)
    }

    /// Sets our display name: encrypts it under our profile key (made on
    /// first use), stores it on the relay ([`Event::ProfileSaved`] answers),
    /// and sends the key to every contact in a 1:1 message, which also tells
    /// them to read the profile again. Returns those messages' ids
    /// ([`Event::Sent`] follows for each). An empty name clears it.
    ///
    /// # Errors
    /// Not connected, [`ClientError::NameTooLong`], profile failure.
    pub fn set_display_name(
        &mut self,
        name: &str,
        now: u64,
    ) -> Result<Vec<MessageId>, ClientError> {
        self.require_ready()?;
        let name = sanitize_display_name(name);
        if name.len() > MAX_DISPLAY_NAME_LEN {
            return Err(ClientError::NameTooLong);
        }
        let (me, _) = self.me()?;
        let key = self.profile.own_profile_key_or_new()?;
        let blob =
            seal_profile(&key, &me, &name, &mut self.rng).map_err(|_| ClientError::NameTooLong)?;
        self.profile.save_own_display_name(&name)?;
        self.profile.flush()?;
        let req = self.req(Pending::Social(SocialPending::SetProfile));
        self.transmit.push_back(ClientFrame::SetProfile(SetProfile {
            req,
            blob: BoundedBytes::new(blob).map_err(|_| ClientError::NameTooLong)?,
        }));
        let mut ids = Vec::new();
        for c in self.profile.contacts()? {
            if c.user != me {
                ids.push(self.send_profile_key(c.user, &key, now)?);
            }
        }
        Ok(ids)
    }

    /// Asks the relay for our contacts and their presence:
    /// [`Event::ContactsListed`] answers.
    ///
    /// # Errors
    /// Not connected.
    pub fn list_contacts(&mut self) -> Result<(), ClientError> {
        self.require_ready()?;
        let req = self.req(Pending::Social(SocialPending::ListContacts));
        self.transmit
            .push_back(ClientFrame::ListContacts(ListContacts { req }));
        Ok(())
    }

    /// Fetches the profiles of contacts whose profile key we hold (at most
    /// [`MAX_PROFILE_FETCHES`]); returns whose. One
    /// [`Event::ProfileFetched`] follows for each.
    ///
    /// # Errors
    /// Not connected, profile failure.
    pub fn refresh_profiles(&mut self) -> Result<Vec<UserId>, ClientError> {
        self.require_ready()?;
        let mut users = Vec::new();
        for c in self.profile.contacts()? {
            if users.len() >= MAX_PROFILE_FETCHES {
                break;
            }
            if self.profile.peer_profile_key(&c.user)?.is_some() {
                self.fetch_profile(c.user);
                users.push(c.user);
            }
        }
        Ok(users)
    }

    /// Looks up accounts we know only by id (room members who joined
    /// lately): an [`Event::ContactUpdated`] follows for each (or an
    /// [`Event::Error`] for an account that is gone). Ids already being
    /// looked up are not asked for twice.
    ///
    /// # Errors
    /// Not connected.
    pub fn look_up_ids(&mut self, users: &[UserId]) -> Result<(), ClientError> {
        self.require_ready()?;
        for u in users {
            let asking = self
                .pending
                .values()
                .any(|p| matches!(p, Pending::NameLookup(x) if x == u));
            if !asking {
                let req = self.req(Pending::NameLookup(*u));
                self.transmit.push_back(ClientFrame::LookupUser(LookupUser {
                    req,
                    who: UserRef::Id(*u),
                }));
            }
        }
        Ok(())
    }

    /// Sets our availability as our contacts and co-members see it.
    ///
    /// # Errors
    /// Not connected.
    pub fn set_presence(&mut self, status: PresenceStatus) -> Result<(), ClientError> {
        self.require_ready()?;
        self.transmit
            .push_back(ClientFrame::SetPresence(SetPresence { status }));
        Ok(())
    }

    /// Marks `user` verified (we compared safety numbers), or not.
    ///
    /// # Errors
    /// Profile failure.
    pub fn set_verified(&mut self, user: UserId, verified: bool) -> Result<(), ClientError> {
        self.profile.set_verified(user, verified)?;
        self.profile.flush()?;
        Ok(())
    }

    fn send_profile_key(
        &mut self,
        to: UserId,
        key: &[u8; 32],
        now: u64,
    ) -> Result<MessageId, ClientError> {
        let id = self.submit(
            Target::User(to),
            None,
            Some(to),
            Body::ProfileKey { key: *key },
            false,
            now,
        )?;
        let mut r = self.profile.peer_record(&to)?;
        r.key_sent = true;
        self.profile.save_peer_record(&to, &r)?;
        self.profile.flush()?;
        Ok(id)
    }

    fn fetch_profile(&mut self, user: UserId) {
        let req = self.req(Pending::Social(SocialPending::GetProfile(user)));
        self.transmit
            .push_back(ClientFrame::GetProfile(GetProfile { req, user }));
    }

    fn subscribe(&mut self, user: UserId) {
        let asked = self
            .pending
            .values()
            .any(|p| matches!(p, Pending::Social(SocialPending::Subscribe(u)) if *u == user));
        if asked {
            return;
        }
        let req = self.req(Pending::Social(SocialPending::Subscribe(user)));
        self.transmit
            .push_back(ClientFrame::EditContact(EditContact {
                req,
                user,
                add: true,
            }));
    }

    // ------------------------------------------------------------ hooks

    /// Signed in: make the relay know our contacts that it does not know as
    /// ours yet (a profile from before this version, an earlier refusal).
    pub(super) fn social_ready(&mut self) -> Result<(), ClientError> {
        let (me, _) = self.me()?;
        let mut n = 0;
        for c in self.profile.contacts()? {
            if n >= MAX_SUBSCRIBE_PER_CONNECTION {
                break;
            }
            if c.user != me && !self.profile.peer_record(&c.user)?.subscribed {
                self.subscribe(c.user);
                n += 1;
            }
        }
        Ok(())
    }

    /// An account was looked up, so it is a contact now: subscribe it, and
    /// give it our profile key if we have one and it lacks it.
    pub(super) fn user_learned(&mut self, user: UserId, now: u64) -> Result<(), ClientError> {
        if self.me()?.0 == user || !self.is_ready() {
            return Ok(());
        }
        let r = self.profile.peer_record(&user)?;
        if !r.subscribed {
            self.subscribe(user);
        }
        if !r.key_sent
            && let Some(key) = self.profile.own_profile_key()?
        {
            self.send_profile_key(user, &key, now)?;
        }
        Ok(())
    }

    /// A contact's profile key arrived (only over a 1:1 session: a room
    /// member cannot hand out someone else's key under their name).
    pub(super) fn profile_key_received(
        &mut self,
        from: DeviceAddress,
        key: &[u8; 32],
        one_to_one: bool,
    ) -> Result<(), ClientError> {
        if !one_to_one {
            return Err(ClientError::Protocol("profile key outside a 1:1 session"));
        }
        if from.user == self.me()?.0 {
            // Our own other device's copy of a key we sent someone.
            return Ok(());
        }
        self.profile.save_peer_profile_key(&from.user, key)?;
        self.profile.flush()?;
        self.events
            .push_back(Event::ProfileKeyReceived { user: from.user });
        self.fetch_profile(from.user);
        Ok(())
    }

    /// Replies to this module's requests and to link creation.
    pub(super) fn social_frame(&mut self, frame: ServerFrame, now: u64) -> Result<(), ClientError> {
        match frame {
            ServerFrame::LinkCreated(l) => {
                let Some(Pending::Change { change, .. }) = self.pending.remove(&l.req) else {
                    return Err(ClientError::Protocol("unexpected link-created"));
                };
                if let Some(mut st) = self.profile.room(&l.room)? {
                    st.epoch = st.epoch.max(l.epoch);
                    self.profile.save_room(&st)?;
                    self.profile.flush()?;
                }
                self.events.push_back(Event::LinkCreated {
                    room: l.room,
                    token: l.token,
                });
                self.events.push_back(Event::RoomRequestDone {
                    room: Some(l.room),
                    action: change.action,
                    result: Ok(()),
                });
            }
            ServerFrame::LinkInfo(i) => {
                let Some(Pending::Social(SocialPending::Resolve(token))) =
                    self.pending.remove(&i.req)
                else {
                    return Err(ClientError::Protocol("unexpected link-info"));
                };
                self.change_room(i.room, i.epoch, RoomAction::JoinByLink { token }, now)?;
            }
            ServerFrame::Contacts(c) => {
                let Some(Pending::Social(SocialPending::ListContacts)) =
                    self.pending.remove(&c.req)
                else {
                    return Err(ClientError::Protocol("unexpected contacts"));
                };
                let mut contacts = Vec::with_capacity(c.contacts.len());
                for x in c.contacts.iter() {
                    // The relay's list is the truth about subscriptions.
                    let mut r = self.profile.peer_record(&x.user)?;
                    if !r.subscribed {
                        r.subscribed = true;
                        self.profile.save_peer_record(&x.user, &r)?;
                    }
                    contacts.push(ContactPresence {
                        user: x.user,
                        username: x.username.clone(),
                        presence: x.presence,
                    });
                }
                self.profile.flush()?;
                self.events.push_back(Event::ContactsListed { contacts });
            }
            ServerFrame::Profile(p) => {
                let Some(Pending::Social(SocialPending::GetProfile(user))) =
                    self.pending.remove(&p.req)
                else {
                    return Err(ClientError::Protocol("unexpected profile"));
                };
                if p.user != user {
                    return Err(ClientError::Protocol("profile of another account"));
                }
                let mut r = self.profile.peer_record(&user)?;
                let mut bad = false;
                match (self.profile.peer_profile_key(&user)?, p.blob) {
                    (_, None) => r.display_name = None,
                    (Some(k), Some(blob)) => match open_profile(&k, &user, blob.as_slice()) {
                        Ok(name) => r.display_name = name,
                        // Keep what we had: the relay (or a stale key)
                        // cannot blank a name this way.
                        Err(_) => bad = true,
                    },
                    (None, Some(_)) => {}
                }
                self.profile.save_peer_record(&user, &r)?;
                self.profile.flush()?;
                self.events.push_back(Event::ProfileFetched {
                    user,
                    display_name: r.display_name,
                });
                if bad {
                    return Err(ClientError::BadProfile);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// `Done` for one of this module's requests.
    pub(super) fn social_done(&mut self, p: SocialPending) -> Result<(), ClientError> {
        match p {
            SocialPending::Subscribe(user) => {
                let mut r = self.profile.peer_record(&user)?;
                r.subscribed = true;
                self.profile.save_peer_record(&user, &r)?;
                self.profile.flush()?;
            }
            SocialPending::SetProfile => self
                .events
                .push_back(Event::ProfileSaved { result: Ok(()) }),
            SocialPending::Resolve(_)
            | SocialPending::ListContacts
            | SocialPending::GetProfile(_) => {}
        }
        Ok(())
    }

    /// The relay refused one of this module's requests.
    pub(super) fn social_error(
        &mut self,
        p: SocialPending,
        e: &ErrorFrame,
    ) -> Result<(), ClientError> {
        let refusal = ClientError::Relay {
            code: e.code,
            message: None,
            text: e.message.as_str().to_owned(),
        };
        match p {
            SocialPending::Resolve(token) => {
                self.events.push_back(Event::RoomRequestDone {
                    room: None,
                    action: RoomAction::JoinByLink { token },
                    result: Err(refusal),
                });
                Ok(())
            }
            SocialPending::GetProfile(user) => {
                // Whoever waits for this profile gets an answer all the same.
                let display_name = self.profile.display_name_of(&user)?;
                self.events
                    .push_back(Event::ProfileFetched { user, display_name });
                Err(refusal)
            }
            SocialPending::SetProfile => {
                self.events.push_back(Event::ProfileSaved {
                    result: Err(refusal),
                });
                Ok(())
            }
            SocialPending::Subscribe(_) | SocialPending::ListContacts => Err(refusal),
        }
    }

    /// The relay applied one of our room changes: `info` is its `RoomInfo`
    /// reply, `None` for a `Done` (leave, decline).
    pub(super) fn change_applied(
        &mut self,
        change: &RoomChange,
        info: Option<&RoomInfo>,
    ) -> Result<(), ClientError> {
        let room = info.map_or(change.room, |i| i.room);
        let (me, _) = self.me()?;
        match &change.action {
            RoomAction::Leave | RoomAction::Decline => {
                if let Some(mut st) = self.profile.room(&room)? {
                    st.joined = false;
                    st.epoch = st.epoch.max(change.epoch.saturating_add(1));
                    // Should we come back, our chain starts afresh.
                    st.needs_rotation = true;
                    self.profile.save_room(&st)?;
                }
                let mut x = self.profile.room_extra(&room)?;
                x.left = true;
                x.invited.retain(|u| *u != me);
                x.roles.retain(|(u, _)| *u != me);
                self.profile.save_room_extra(&room, &x)?;
                self.profile.flush()?;
            }
            RoomAction::Accept | RoomAction::JoinByLink { .. } => {
                if let Some(info) = info {
                    self.look_up_members(info)?;
                }
            }
            _ => {}
        }
        self.events.push_back(Event::RoomChanged { room });
        self.events.push_back(Event::RoomRequestDone {
            room: Some(room),
            action: change.action.clone(),
            result: Ok(()),
        });
        Ok(())
    }

    /// The relay refused one of our room changes (after the one retry a
    /// stale epoch gets).
    pub(super) fn change_refused(&mut self, change: RoomChange, e: &ErrorFrame) {
        let room = (change.room != RoomId::from_bytes([0; 16])).then_some(change.room);
        self.events.push_back(Event::RoomRequestDone {
            room,
            action: change.action,
            result: Err(ClientError::Relay {
                code: e.code,
                message: None,
                text: e.message.as_str().to_owned(),
            }),
        });
    }

    /// Members we do not know by name yet: look them up (they become
    /// contacts).
    fn look_up_members(&mut self, info: &RoomInfo) -> Result<(), ClientError> {
        let (me, _) = self.me()?;
        let mut unknown = Vec::new();
        for m in info.members.iter() {
            if m.user != me && self.profile.contact(&m.user)?.is_none() {
                unknown.push(m.user);
            }
        }
        self.look_up_ids(&unknown)
    }

    /// A room's details arrived: keep roles and invitees.
    pub(super) fn note_room_info(&mut self, info: &RoomInfo) -> Result<(), ClientError> {
        let (me, _) = self.me()?;
        let mut x = self.profile.room_extra(&info.room)?;
        x.roles = info.members.iter().map(|m| (m.user, m.role)).collect();
        x.invited = info.invited.iter().copied().collect();
        if x.roles.iter().any(|(u, _)| *u == me) {
            x.left = false;
        }
        self.profile.save_room_extra(&info.room, &x)?;
        Ok(())
    }

    /// A signed change of a room we are in (or invited to) arrived and was
    /// applied to the room's state: keep roles and invitees up to date, and
    /// when someone joined, read the room again (their devices, for the
    /// member count) unless `refreshing` already does.
    pub(super) fn note_room_change(
        &mut self,
        c: &RoomChange,
        refreshing: bool,
    ) -> Result<(), ClientError> {
        let (me, _) = self.me()?;
        let actor = c.actor.user;
        let mut x = self.profile.room_extra(&c.room)?;
        let mut joined_by_other = false;
        match &c.action {
            RoomAction::Create { .. } => x.roles = vec![(actor, Role::Owner)],
            RoomAction::Invite { user } => {
                if !x.invited.contains(user) {
                    x.invited.push(*user);
                }
                if *user == me {
                    x.inviter = Some((actor, c.at));
                    x.left = false;
                }
            }
            RoomAction::Accept | RoomAction::JoinByLink { .. } => {
                x.invited.retain(|u| *u != actor);
                if !x.roles.iter().any(|(u, _)| *u == actor) {
                    x.roles.push((actor, Role::Member));
                }
                joined_by_other = actor != me;
            }
            RoomAction::Decline => x.invited.retain(|u| *u != actor),
            RoomAction::Leave => x.roles.retain(|(u, _)| *u != actor),
            RoomAction::Kick { user } | RoomAction::Ban { user } => {
                x.roles.retain(|(u, _)| u != user);
                x.invited.retain(|u| u != user);
                if *user == me {
                    // Removed, not by our choice.
                    x.left = false;
                }
            }
            RoomAction::SetRole { user, role } => {
                for r in &mut x.roles {
                    if r.0 == *user {
                        r.1 = *role;
                    } else if r.0 == actor && *role == Role::Owner {
                        r.1 = Role::Admin;
                    }
                }
            }
            RoomAction::Unban { .. }
            | RoomAction::CreateLink { .. }
            | RoomAction::RevokeLink { .. } => {}
        }
        self.profile.save_room_extra(&c.room, &x)?;
        if joined_by_other
            && !refreshing
            && self.is_ready()
            && self.profile.room(&c.room)?.is_some_and(|r| r.joined)
        {
            let req = self.req(Pending::RoomInfo { job: None });
            self.transmit.push_back(ClientFrame::GetRoom(GetRoom {
                req,
                room: RoomRef::Id(c.room),
            }));
        }
        Ok(())
    }
}
