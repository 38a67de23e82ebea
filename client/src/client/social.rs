//! [`Client`] requests for invite links, leaving and declining rooms,
//! profiles and presence (see the engine's commands of the same names), and
//! read-only queries of the profile the driver owns (rooms with roles,
//! contacts with display names, safety numbers), for applications that
//! keep a client running.

use spider_crypto::safety::SafetyNumber;
use spider_protocol::ids::{DeviceId, LinkToken, MessageId, RoomId, Timestamp, UserId};
use spider_protocol::message::PresenceStatus;

use super::{Client, Command, DriverError, Reply};
use crate::engine::{ClientError, Engine};
use crate::social::{ContactDetails, RoomDetails};
use crate::store::ProfileStore;

/// One request of this module, with its reply.
pub(crate) enum SocialCommand {
    CreateLink(RoomId, Option<Timestamp>, Option<u32>, Reply<()>),
    RevokeLink(RoomId, LinkToken, Reply<()>),
    JoinLink(LinkToken, Reply<()>),
    Leave(RoomId, Reply<()>),
    Decline(RoomId, Reply<()>),
    SetName(String, Reply<Vec<MessageId>>),
    ListContacts(Reply<()>),
    RefreshProfiles(Reply<Vec<UserId>>),
    SetPresence(PresenceStatus, Reply<()>),
    SetVerified(UserId, bool, Reply<()>),
    Rooms(Reply<Vec<RoomDetails>>),
    Contacts(Reply<Vec<ContactDetails>>),
    Safety(UserId, Reply<Vec<(DeviceId, SafetyNumber)>>),
    OwnName(Reply<Option<String>>),
    LookUpIds(Vec<UserId>, Reply<()>),
}

/// Runs one command on the engine.
pub(super) fn run<S: ProfileStore>(engine: &mut Engine<S>, c: SocialCommand, now: u64) {
    use SocialCommand as C;
    match c {
        C::CreateLink(room, expires_at, max_uses, r) => {
            let _ = r.send(engine.create_link(room, expires_at, max_uses, now));
        }
        C::RevokeLink(room, token, r) => {
            let _ = r.send(engine.revoke_link(room, token, now));
        }
        C::JoinLink(token, r) => {
            let _ = r.send(engine.join_by_link(token));
        }
        C::Leave(room, r) => {
            let _ = r.send(engine.leave_room(room, now));
        }
        C::Decline(room, r) => {
            let _ = r.send(engine.decline_invite(room, now));
        }
        C::SetName(name, r) => {
            let _ = r.send(engine.set_display_name(&name, now));
        }
        C::ListContacts(r) => {
            let _ = r.send(engine.list_contacts());
        }
        C::RefreshProfiles(r) => {
            let _ = r.send(engine.refresh_profiles());
        }
        C::SetPresence(status, r) => {
            let _ = r.send(engine.set_presence(status));
        }
        C::SetVerified(user, verified, r) => {
            let _ = r.send(engine.set_verified(user, verified));
        }
        C::Rooms(r) => {
            let _ = r.send(engine.profile().rooms_details().map_err(ClientError::from));
        }
        C::Contacts(r) => {
            let _ = r.send(
                engine
                    .profile()
                    .contact_details()
                    .map_err(ClientError::from),
            );
        }
        C::Safety(user, r) => {
            let _ = r.send(safety_numbers(engine, user));
        }
        C::LookUpIds(users, r) => {
            let _ = r.send(engine.look_up_ids(&users));
        }
        C::OwnName(r) => {
            let _ = r.send(
                engine
                    .profile()
                    .own_display_name()
                    .map_err(ClientError::from),
            );
        }
    }
}

fn safety_numbers<S: ProfileStore>(
    engine: &Engine<S>,
    user: UserId,
) -> Result<Vec<(DeviceId, SafetyNumber)>, ClientError> {
    let p = engine.profile();
    let mut out = Vec::new();
    if let Some(c) = p.contact(&user)? {
        for d in c.devices {
            if let Some(n) = p.safety_number(&user, d)? {
                out.push((d, n));
            }
        }
    }
    Ok(out)
}

impl Client {
    /// Makes an invite link (see [`Engine::create_link`]): the token comes
    /// as an [`crate::engine::Event::LinkCreated`].
    ///
    /// # Errors
    /// [`DriverError`]; not connected.
    pub async fn create_link(
        &self,
        room: RoomId,
        expires_at: Option<Timestamp>,
        max_uses: Option<u32>,
    ) -> Result<(), DriverError> {
        self.ask(|r| Command::Social(SocialCommand::CreateLink(room, expires_at, max_uses, r)))
            .await
    }

    /// Revokes an invite link.
    ///
    /// # Errors
    /// [`DriverError`]; not connected.
    pub async fn revoke_link(&self, room: RoomId, token: LinkToken) -> Result<(), DriverError> {
        self.ask(|r| Command::Social(SocialCommand::RevokeLink(room, token, r)))
            .await
    }

    /// Joins a room through an invite link (see [`Engine::join_by_link`]).
    ///
    /// # Errors
    /// [`DriverError`]; not connected.
    pub async fn join_by_link(&self, token: LinkToken) -> Result<(), DriverError> {
        self.ask(|r| Command::Social(SocialCommand::JoinLink(token, r)))
            .await
    }

    /// Leaves a room.
    ///
    /// # Errors
    /// [`DriverError`]; not connected.
    pub async fn leave_room(&self, room: RoomId) -> Result<(), DriverError> {
        self.ask(|r| Command::Social(SocialCommand::Leave(room, r)))
            .await
    }

    /// Declines an invitation.
    ///
    /// # Errors
    /// [`DriverError`]; not connected.
    pub async fn decline_invite(&self, room: RoomId) -> Result<(), DriverError> {
        self.ask(|r| Command::Social(SocialCommand::Decline(room, r)))
            .await
    }

    /// Sets our display name (see [`Engine::set_display_name`]); returns
    /// the ids of the messages that carry our profile key to contacts.
    ///
    /// # Errors
    /// [`DriverError`]; not connected; a name too long.
    pub async fn set_display_name(
        &self,
        name: impl Into<String>,
    ) -> Result<Vec<MessageId>, DriverError> {
        let name = name.into();
        self.ask(|r| Command::Social(SocialCommand::SetName(name, r)))
            .await
    }

    /// Asks for our contacts with presence: an
    /// [`crate::engine::Event::ContactsListed`] answers.
    ///
    /// # Errors
    /// [`DriverError`]; not connected.
    pub async fn list_contacts(&self) -> Result<(), DriverError> {
        self.ask(|r| Command::Social(SocialCommand::ListContacts(r)))
            .await
    }

    /// Fetches the profiles of contacts whose key we hold; returns whose.
    ///
    /// # Errors
    /// [`DriverError`]; not connected.
    pub async fn refresh_profiles(&self) -> Result<Vec<UserId>, DriverError> {
        self.ask(|r| Command::Social(SocialCommand::RefreshProfiles(r)))
            .await
    }

    /// Sets our availability.
    ///
    /// # Errors
    /// [`DriverError`]; not connected.
    pub async fn set_presence(&self, status: PresenceStatus) -> Result<(), DriverError> {
        self.ask(|r| Command::Social(SocialCommand::SetPresence(status, r)))
            .await
    }

    /// Marks an account verified, or not.
    ///
    /// # Errors
    /// [`DriverError`].
    pub async fn set_verified(&self, user: UserId, verified: bool) -> Result<(), DriverError> {
        self.ask(|r| Command::Social(SocialCommand::SetVerified(user, verified, r)))
            .await
    }

    /// Every room the profile knows, with roles and invitees.
    ///
    /// # Errors
    /// [`DriverError`].
    pub async fn rooms(&self) -> Result<Vec<RoomDetails>, DriverError> {
        self.ask(|r| Command::Social(SocialCommand::Rooms(r))).await
    }

    /// Every contact with display name and verification mark.
    ///
    /// # Errors
    /// [`DriverError`].
    pub async fn contacts(&self) -> Result<Vec<ContactDetails>, DriverError> {
        self.ask(|r| Command::Social(SocialCommand::Contacts(r)))
            .await
    }

    /// The safety numbers with each device of `user` whose identity we know.
    ///
    /// # Errors
    /// [`DriverError`].
    pub async fn safety_numbers(
        &self,
        user: UserId,
    ) -> Result<Vec<(DeviceId, SafetyNumber)>, DriverError> {
        self.ask(|r| Command::Social(SocialCommand::Safety(user, r)))
            .await
    }

    /// Looks up accounts known only by id (see [`Engine::look_up_ids`]).
    ///
    /// # Errors
    /// [`DriverError`]; not connected.
    pub async fn look_up_ids(&self, users: Vec<UserId>) -> Result<(), DriverError> {
        self.ask(|r| Command::Social(SocialCommand::LookUpIds(users, r)))
            .await
    }

    /// Our display name, as last set.
    ///
    /// # Errors
    /// [`DriverError`].
    pub async fn own_display_name(&self) -> Result<Option<String>, DriverError> {
        self.ask(|r| Command::Social(SocialCommand::OwnName(r)))
            .await
    }
}
