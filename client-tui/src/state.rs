//! What the app knows, and every way it changes.
//!
//! [`AppState`] is plain data. It changes only through [`AppState::apply`]
//! (a [`WorkerEvent`]), [`AppState::apply_outcome`] (the answer to a request),
//! [`AppState::focus`] and [`AppState::tick`]. Components read it while
//! drawing and never write it; they ask for changes through the queue. This
//! is what makes the state testable without a terminal, and drawing
//! testable without a network.

use std::collections::{BTreeMap, HashMap};

use spider_protocol::ids::{MessageId, RoomId, Timestamp, UserId};
use spider_protocol::message::Presence;
use spider_protocol::name::Username;
use time::{OffsetDateTime, UtcOffset};

use crate::preview::{Graphic, Graphics, Preview};
use crate::worker::{
    Account, ChatMessage, ConnectionState, Contact, ConversationId, Delivery, Invitation,
    MemberEntry, MessageBody, RoomEntry, SafetyInfo, SearchHit, WorkerError, WorkerEvent,
};

/// How long "is typing" stays up without a fresh notification. Clients send
/// one every few seconds while keys are pressed; a little over twice that
/// interval hides the indicator soon after someone stops, without flicker.
pub(crate) const TYPING_TIMEOUT_MS: u64 = 6_000;

/// How long a status-line notice stays.
pub(crate) const NOTICE_MS: u64 = 6_000;

/// Messages kept in memory per conversation. Older ones stay in the SDK's
/// local history; the scrollback of a terminal session need not hold years.
pub(crate) const MAX_SCROLLBACK: usize = 5_000;

/// One conversation as shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Conversation {
    /// Which.
    pub(crate) id: ConversationId,
    /// Oldest first.
    pub(crate) messages: Vec<ChatMessage>,
    /// Messages from others that arrived while it was not open.
    pub(crate) unread: usize,
    /// Who is typing, and when that expires.
    pub(crate) typing: Vec<(Username, Timestamp)>,
    /// The first message that arrived unread.
    unread_from: Option<MessageId>,
    /// While open: where the messages that were unread start ("new" rule).
    pub(crate) marker: Option<MessageId>,
}

impl Conversation {
    fn new(id: ConversationId) -> Self {
        Conversation {
            id,
            messages: Vec::new(),
            unread: 0,
            typing: Vec::new(),
            unread_from: None,
            marker: None,
        }
    }

    fn message_mut(&mut self, id: MessageId) -> Option<&mut ChatMessage> {
        self.messages.iter_mut().rev().find(|m| m.id == id)
    }
}

/// Which big screen is up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Screen {
    /// Waiting for the worker's `Ready`.
    Starting,
    /// Register or sign in.
    FirstRun,
    /// Sidebar, chat, composer.
    Main,
}

/// A window over the main screen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Overlay {
    /// Keys and commands.
    Help,
    /// A contact's safety number.
    Safety(SafetyInfo),
    /// A titled list (members, search results, an invite link).
    Info {
        /// Title.
        title: String,
        /// Lines.
        lines: Vec<String>,
    },
}

/// A line in the status bar that goes away by itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Notice {
    /// What to say.
    pub(crate) text: String,
    /// Shown as an error.
    pub(crate) error: bool,
    /// When it goes.
    pub(crate) until: Timestamp,
}

/// The answer to a request, as the app records it.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Register or sign in.
    SignedIn(Result<Account, WorkerError>),
    /// A text or file was handed to the worker.
    Sent(ConversationId, Result<ChatMessage, WorkerError>),
    /// `/msg`: the contact to open.
    Opened(Result<Contact, WorkerError>),
    /// `/room create`, `/join`: the room to open.
    Joined(Result<RoomEntry, WorkerError>),
    /// Something that only needs a word in the status line.
    Done(String, Result<(), WorkerError>),
    /// `/link`.
    Link(Result<String, WorkerError>),
    /// `/members`.
    Members(String, Result<Vec<MemberEntry>, WorkerError>),
    /// `/safety`.
    Safety(Result<SafetyInfo, WorkerError>),
    /// `/verify`.
    Verified(Result<Contact, WorkerError>),
    /// `/search`.
    Search(String, Result<Vec<SearchHit>, WorkerError>),
}

/// Everything the app shows.
#[derive(Debug)]
pub(crate) struct AppState {
    /// Which screen.
    pub(crate) screen: Screen,
    /// Signed in as.
    pub(crate) account: Option<Account>,
    /// Register / sign-in in flight.
    pub(crate) signing_in: bool,
    /// Why the last register / sign-in failed.
    pub(crate) sign_in_error: Option<String>,
    /// The link to the relay.
    pub(crate) connection: ConnectionState,
    /// Contacts, in roster order.
    pub(crate) contacts: Vec<Contact>,
    /// Rooms, in roster order.
    pub(crate) rooms: Vec<RoomEntry>,
    /// Pending invitations.
    pub(crate) invitations: Vec<Invitation>,
    /// Every conversation with something in it.
    pub(crate) conversations: BTreeMap<ConversationId, Conversation>,
    /// The open conversation.
    pub(crate) focused: Option<ConversationId>,
    /// Decoded image previews, by the message that carries the image.
    pub(crate) previews: HashMap<MessageId, Preview>,
    /// The terminal's graphics protocol, if it has one.
    pub(crate) graphics: Option<Graphics>,
    /// Images encoded for it, by message.
    pub(crate) graphic: HashMap<MessageId, Graphic>,
    /// A window over the main screen.
    pub(crate) overlay: Option<Overlay>,
    /// The status-line notice.
    pub(crate) notice: Option<Notice>,
    /// The time, as of the last tick (injected: tests fix it).
    pub(crate) now: Timestamp,
    /// The local time zone, read once at start (tests use UTC).
    pub(crate) offset: UtcOffset,
    /// Counter for ids of notices the app adds to conversations.
    local_ids: u64,
}

impl AppState {
    /// A state at `now` in time zone `offset`, waiting for the worker.
    pub(crate) fn new(now: Timestamp, offset: UtcOffset) -> Self {
        AppState {
            screen: Screen::Starting,
            account: None,
            signing_in: false,
            sign_in_error: None,
            connection: ConnectionState::Offline,
            contacts: Vec::new(),
            rooms: Vec::new(),
            invitations: Vec::new(),
            conversations: BTreeMap::new(),
            focused: None,
            previews: HashMap::new(),
            graphics: None,
            graphic: HashMap::new(),
            overlay: None,
            notice: None,
            now,
            offset,
            local_ids: 0,
        }
    }

    // ------------------------------------------------------------ queries

    /// A contact by id.
    pub(crate) fn contact(&self, id: UserId) -> Option<&Contact> {
        self.contacts.iter().find(|c| c.id == id)
    }

    /// A contact by name.
    pub(crate) fn contact_named(&self, name: &Username) -> Option<&Contact> {
        self.contacts.iter().find(|c| &c.name == name)
    }

    /// A room by id.
    pub(crate) fn room(&self, id: RoomId) -> Option<&RoomEntry> {
        self.rooms.iter().find(|r| r.id == id)
    }

    /// How a conversation is named: `@bob` or `#rust`.
    pub(crate) fn title(&self, id: ConversationId) -> String {
        match id {
            ConversationId::Direct(u) => self.contact(u).map_or_else(
                || format!("user {}", short(&u.to_hex())),
                |c| c.name.to_string(),
            ),
            ConversationId::Room(r) => self.room(r).map_or_else(
                || format!("room {}", short(&r.to_hex())),
                |r| r.name.to_string(),
            ),
        }
    }

    /// Unread count of a conversation.
    pub(crate) fn unread(&self, id: ConversationId) -> usize {
        self.conversations.get(&id).map_or(0, |c| c.unread)
    }

    /// The open conversation.
    pub(crate) fn focused_conversation(&self) -> Option<&Conversation> {
        self.focused.and_then(|id| self.conversations.get(&id))
    }

    /// Who is typing in a conversation, not yet expired.
    pub(crate) fn typing(&self, id: ConversationId) -> Vec<&Username> {
        self.conversations.get(&id).map_or_else(Vec::new, |c| {
            c.typing
                .iter()
                .filter(|(_, until)| *until > self.now)
                .map(|(u, _)| u)
                .collect()
        })
    }

    /// Uploads and downloads under way: (file name, done, total).
    pub(crate) fn transfers(&self) -> Vec<(&str, u64, u64)> {
        let mut out = Vec::new();
        for c in self.conversations.values() {
            for m in &c.messages {
                if let MessageBody::File(a) = &m.body
                    && let Some(done) = a.transferred
                {
                    out.push((a.name.as_str(), done, a.size));
                }
            }
        }
        out
    }

    /// `HH:MM` in local time.
    pub(crate) fn clock(&self, t: Timestamp) -> String {
        let nanos = i128::from(t.0) * 1_000_000;
        match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(dt) => {
                let dt = dt.to_offset(self.offset);
                format!("{:02}:{:02}", dt.hour(), dt.minute())
            }
            Err(_) => "--:--".to_owned(),
        }
    }

    /// The local calendar day of `t`, as `Thu 1 Jan 2026`, for the
    /// separators between days in the scrollback.
    pub(crate) fn day(&self, t: Timestamp) -> String {
        let nanos = i128::from(t.0) * 1_000_000;
        match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(dt) => {
                let dt = dt.to_offset(self.offset);
                let wd = dt.weekday().to_string();
                let m = dt.month().to_string();
                format!(
                    "{} {} {} {}",
                    wd.get(..3).unwrap_or(&wd),
                    dt.day(),
                    m.get(..3).unwrap_or(&m),
                    dt.year()
                )
            }
            Err(_) => "unknown day".to_owned(),
        }
    }

    // ------------------------------------------------------------ changes

    /// Sets the notice in the status line.
    pub(crate) fn notify(&mut self, text: impl Into<String>, error: bool) {
        self.notice = Some(Notice {
            text: text.into(),
            error,
            until: Timestamp(self.now.0.saturating_add(NOTICE_MS)),
        });
    }

    /// Advances the clock: expires typing indicators and notices.
    pub(crate) fn tick(&mut self, now: Timestamp) {
        self.now = now;
        for c in self.conversations.values_mut() {
            c.typing.retain(|(_, until)| *until > now);
        }
        if self.notice.as_ref().is_some_and(|n| n.until <= now) {
            self.notice = None;
        }
    }

    /// Opens a conversation and clears its unread count. Returns the newest
    /// message from someone else, for the read receipt.
    pub(crate) fn focus(&mut self, id: ConversationId) -> Option<MessageId> {
        if let Some(old) = self.focused.filter(|old| *old != id)
            && let Some(c) = self.conversations.get_mut(&old)
        {
            c.marker = None;
        }
        self.focused = Some(id);
        let c = self
            .conversations
            .entry(id)
            .or_insert_with(|| Conversation::new(id));
        if c.unread > 0 {
            c.marker = c.unread_from.take();
        }
        c.unread = 0;
        c.messages.iter().rev().find(|m| !m.mine).map(|m| m.id)
    }

    fn conversation_mut(&mut self, id: ConversationId) -> &mut Conversation {
        self.conversations
            .entry(id)
            .or_insert_with(|| Conversation::new(id))
    }

    /// Appends a message unless one with its id is already there (the worker
    /// may replay after a reconnect; no duplicates are shown). A replayed
    /// file message may bring the image of a file that finished
    /// downloading: that becomes the shown message's preview.
    fn push_message(&mut self, id: ConversationId, message: ChatMessage) -> bool {
        if let MessageBody::File(a) = &message.body
            && let Some(bytes) = &a.image
            && !self.previews.contains_key(&message.id)
            && let Ok(p) = Preview::decode(bytes)
        {
            self.previews.insert(message.id, p);
            if let Some(g) = self.graphics.as_ref().and_then(|g| g.encode(bytes)) {
                self.graphic.insert(message.id, g);
            }
        }
        let c = self.conversation_mut(id);
        if let Some(shown) = c.messages.iter_mut().find(|m| m.id == message.id) {
            if let (MessageBody::File(shown), MessageBody::File(new)) =
                (&mut shown.body, message.body)
                && shown.image.is_none()
            {
                shown.image = new.image;
            }
            return false;
        }
        // Someone who sent a message has stopped typing it.
        c.typing.retain(|(u, _)| *u != message.from);
        c.messages.push(message);
        if c.messages.len() > MAX_SCROLLBACK {
            let extra = c.messages.len() - MAX_SCROLLBACK;
            c.messages.drain(..extra);
        }
        true
    }

    /// Adds a line from the app itself to a conversation.
    pub(crate) fn push_notice(&mut self, id: ConversationId, text: String) {
        self.local_ids += 1;
        let mut b = [0xffu8; 16];
        b[8..].copy_from_slice(&self.local_ids.to_be_bytes());
        let from = self
            .account
            .as_ref()
            .map(|a| a.name.clone())
            .or_else(|| Username::parse("you").ok());
        let Some(from) = from else { return };
        let message = ChatMessage {
            id: MessageId::from_bytes(b),
            from,
            mine: false,
            at: self.now,
            body: MessageBody::Notice(text),
            delivery: Delivery::Read,
        };
        self.conversation_mut(id).messages.push(message);
    }

    /// Applies what the worker says. Returns a message id to acknowledge as
    /// read when a message arrived in the open conversation.
    pub(crate) fn apply(&mut self, event: WorkerEvent) -> Option<(ConversationId, MessageId)> {
        match event {
            WorkerEvent::Ready { account } => {
                self.screen = if account.is_some() {
                    Screen::Main
                } else {
                    Screen::FirstRun
                };
                self.account = account;
            }
            WorkerEvent::Roster {
                contacts,
                rooms,
                invitations,
            } => {
                // A roster means we are signed in, even if the answer to
                // the sign-in request is still on its way.
                self.screen = Screen::Main;
                self.contacts = contacts;
                self.rooms = rooms;
                self.invitations = invitations;
                if self.focused.is_none() {
                    let first = self
                        .contacts
                        .first()
                        .map(|c| ConversationId::Direct(c.id))
                        .or_else(|| self.rooms.first().map(|r| ConversationId::Room(r.id)));
                    if let Some(id) = first {
                        self.focus(id);
                    }
                }
            }
            WorkerEvent::Connection(c) => self.connection = c,
            WorkerEvent::MessageReceived {
                conversation,
                message,
            } => {
                let mine = message.mine;
                let id = message.id;
                if self.push_message(conversation, message) && !mine {
                    if self.focused == Some(conversation) && self.screen == Screen::Main {
                        return Some((conversation, id));
                    }
                    let c = self.conversation_mut(conversation);
                    if c.unread == 0 {
                        c.unread_from = Some(id);
                    }
                    c.unread += 1;
                }
            }
            WorkerEvent::DeliveryChanged {
                conversation,
                message,
                delivery,
            } => {
                if let Some(m) = self
                    .conversations
                    .get_mut(&conversation)
                    .and_then(|c| c.message_mut(message))
                {
                    m.delivery = m.delivery.advance(delivery);
                }
            }
            WorkerEvent::Typing { conversation, user } => {
                let until = Timestamp(self.now.0.saturating_add(TYPING_TIMEOUT_MS));
                let c = self.conversation_mut(conversation);
                match c.typing.iter_mut().find(|(u, _)| *u == user) {
                    Some(entry) => entry.1 = until,
                    None => c.typing.push((user, until)),
                }
            }
            WorkerEvent::Presence { user, presence } => {
                if let Some(c) = self.contacts.iter_mut().find(|c| c.id == user) {
                    c.presence = presence;
                }
            }
            WorkerEvent::ContactChanged(contact) => self.upsert_contact(contact),
            WorkerEvent::RoomChanged(room) => self.upsert_room(room),
            WorkerEvent::RoomLeft { room, kicked } => {
                let name = self.title(ConversationId::Room(room));
                self.rooms.retain(|r| r.id != room);
                if kicked {
                    self.notify(format!("you were removed from {name}"), true);
                }
                if self.focused == Some(ConversationId::Room(room)) {
                    self.focused = None;
                }
                self.conversations.remove(&ConversationId::Room(room));
            }
            WorkerEvent::Invitation(inv) => {
                if !self.invitations.iter().any(|i| i.room == inv.room) {
                    self.notify(
                        format!("{} invited you to {}", inv.from, inv.room_name),
                        false,
                    );
                    self.invitations.push(inv);
                }
            }
            WorkerEvent::IdentityChanged { user } => {
                let mut name = None;
                if let Some(c) = self.contacts.iter_mut().find(|c| c.id == user) {
                    c.identity_changed = true;
                    c.verified = false;
                    name = Some(c.name.to_string());
                }
                let name = name.unwrap_or_else(|| "this contact".to_owned());
                self.push_notice(
                    ConversationId::Direct(user),
                    format!("⚠ The safety number with {name} changed. Compare it (/safety) before you trust new messages."),
                );
            }
            WorkerEvent::FileProgress {
                conversation,
                message,
                done,
                total,
            } => {
                if let Some(m) = self
                    .conversations
                    .get_mut(&conversation)
                    .and_then(|c| c.message_mut(message))
                    && let MessageBody::File(a) = &mut m.body
                {
                    a.size = total;
                    a.transferred = (done < total).then_some(done);
                }
            }
        }
        None
    }

    fn upsert_contact(&mut self, contact: Contact) {
        match self.contacts.iter_mut().find(|c| c.id == contact.id) {
            Some(c) => *c = contact,
            None => self.contacts.push(contact),
        }
    }

    fn upsert_room(&mut self, room: RoomEntry) {
        self.invitations.retain(|i| i.room != room.id);
        match self.rooms.iter_mut().find(|r| r.id == room.id) {
            Some(r) => *r = room,
            None => self.rooms.push(room),
        }
    }

    /// Records the answer to a request.
    pub(crate) fn apply_outcome(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::SignedIn(Ok(account)) => {
                self.signing_in = false;
                self.sign_in_error = None;
                self.account = Some(account);
                self.screen = Screen::Main;
            }
            Outcome::SignedIn(Err(e)) => {
                self.signing_in = false;
                self.sign_in_error = Some(e.to_string());
            }
            Outcome::Sent(conv, Ok(message)) => {
                self.push_message(conv, message);
            }
            Outcome::Sent(_, Err(e)) => self.notify(format!("not sent: {e}"), true),
            Outcome::Opened(Ok(contact)) => {
                let id = ConversationId::Direct(contact.id);
                self.upsert_contact(contact);
                self.focus(id);
            }
            Outcome::Opened(Err(e)) => self.notify(e.to_string(), true),
            Outcome::Joined(Ok(room)) => {
                let id = ConversationId::Room(room.id);
                self.notify(format!("joined {}", room.name), false);
                self.upsert_room(room);
                self.focus(id);
            }
            Outcome::Joined(Err(e)) => self.notify(e.to_string(), true),
            Outcome::Done(what, Ok(())) => self.notify(what, false),
            Outcome::Done(what, Err(e)) => self.notify(format!("{what}: {e}"), true),
            Outcome::Link(Ok(link)) => {
                self.overlay = Some(Overlay::Info {
                    title: "Invite link".to_owned(),
                    lines: vec![
                        "Share this link with the people you want in the room:".to_owned(),
                        String::new(),
                        link,
                        String::new(),
                        "Anyone holding it can join until it is revoked.".to_owned(),
                    ],
                });
            }
            Outcome::Link(Err(e)) => self.notify(format!("link: {e}"), true),
            Outcome::Members(room, Ok(members)) => {
                let lines = members
                    .iter()
                    .map(|m| {
                        format!(
                            "{} {:<20} {:?}",
                            presence_glyph(m.presence),
                            m.name.to_string(),
                            m.role
                        )
                    })
                    .collect();
                self.overlay = Some(Overlay::Info {
                    title: format!("Members of {room}"),
                    lines,
                });
            }
            Outcome::Members(_, Err(e)) => self.notify(format!("members: {e}"), true),
            Outcome::Safety(Ok(info)) => self.overlay = Some(Overlay::Safety(info)),
            Outcome::Safety(Err(e)) => self.notify(format!("safety number: {e}"), true),
            Outcome::Verified(Ok(contact)) => {
                self.notify(format!("{} verified", contact.name), false);
                if let Some(Overlay::Safety(info)) = &mut self.overlay
                    && info.id == contact.id
                {
                    info.verified = true;
                    info.identity_changed = false;
                }
                self.upsert_contact(contact);
            }
            Outcome::Verified(Err(e)) => self.notify(format!("verify: {e}"), true),
            Outcome::Search(query, Ok(hits)) => {
                let mut lines: Vec<String> = hits
                    .iter()
                    .map(|h| format!("{}: {}", self.title(h.conversation), h.excerpt))
                    .collect();
                if lines.is_empty() {
                    lines.push("no messages match".to_owned());
                }
                self.overlay = Some(Overlay::Info {
                    title: format!("Search: {query}"),
                    lines,
                });
            }
            Outcome::Search(_, Err(e)) => self.notify(format!("search: {e}"), true),
        }
    }
}

/// The presence dot: online ●, away ◐, offline ○.
pub(crate) fn presence_glyph(p: Presence) -> char {
    match p {
        Presence::Online => '●',
        Presence::Away => '◐',
        Presence::Offline { .. } => '○',
    }
}

fn short(hex: &str) -> &str {
    hex.get(..8).unwrap_or(hex)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::worker::{Attachment, Transport};
    use spider_protocol::message::Role;
    use spider_protocol::name::RoomName;

    pub(crate) const T0: u64 = 1_767_225_600_000; // 2026-01-01 00:00 UTC

    pub(crate) fn user(n: u8) -> UserId {
        UserId::from_bytes([n; 16])
    }

    pub(crate) fn name(s: &str) -> Username {
        Username::parse(s).unwrap()
    }

    pub(crate) fn contact(n: u8, s: &str) -> Contact {
        Contact {
            id: user(n),
            name: name(s),
            display_name: None,
            presence: Presence::Online,
            verified: false,
            identity_changed: false,
        }
    }

    pub(crate) fn text(id: u8, from: &str, mine: bool, at: u64, body: &str) -> ChatMessage {
        ChatMessage {
            id: MessageId::from_bytes([id; 16]),
            from: name(from),
            mine,
            at: Timestamp(at),
            body: MessageBody::Text(body.to_owned()),
            delivery: if mine { Delivery::Sent } else { Delivery::Read },
        }
    }

    /// Signed in as @me with contacts @alice and @bob and room #rust; @alice
    /// is open.
    pub(crate) fn signed_in() -> AppState {
        let mut s = AppState::new(Timestamp(T0), UtcOffset::UTC);
        s.apply(WorkerEvent::Ready {
            account: Some(Account {
                id: user(9),
                name: name("sam"),
                relay: "relay.example".into(),
            }),
        });
        s.apply(WorkerEvent::Roster {
            contacts: vec![contact(1, "alice"), contact(2, "bob")],
            rooms: vec![RoomEntry {
                id: RoomId::from_bytes([3; 16]),
                name: RoomName::parse("rust").unwrap(),
                role: Role::Owner,
                members: 3,
            }],
            invitations: vec![],
        });
        s
    }

    fn alice() -> ConversationId {
        ConversationId::Direct(user(1))
    }
    fn bob() -> ConversationId {
        ConversationId::Direct(user(2))
    }

    #[test]
    fn first_run_without_account_and_main_with_one() {
        let mut s = AppState::new(Timestamp(T0), UtcOffset::UTC);
        assert_eq!(s.screen, Screen::Starting);
        s.apply(WorkerEvent::Ready { account: None });
        assert_eq!(s.screen, Screen::FirstRun);
        assert_eq!(signed_in().screen, Screen::Main);
    }

    #[test]
    fn history_arriving_before_the_sign_in_answer_is_not_unread_in_the_open_chat() {
        let mut s = AppState::new(Timestamp(T0), UtcOffset::UTC);
        s.apply(WorkerEvent::Ready { account: None });
        s.signing_in = true;
        s.apply(WorkerEvent::Roster {
            contacts: vec![contact(1, "alice")],
            rooms: vec![],
            invitations: vec![],
        });
        let ack = s.apply(WorkerEvent::MessageReceived {
            conversation: alice(),
            message: text(1, "alice", false, T0, "hi"),
        });
        assert!(ack.is_some());
        assert_eq!(s.unread(alice()), 0);
        assert_eq!(s.screen, Screen::Main);
    }

    #[test]
    fn roster_opens_the_first_contact() {
        assert_eq!(signed_in().focused, Some(alice()));
    }

    #[test]
    fn message_to_unfocused_conversation_counts_as_unread() {
        let mut s = signed_in();
        let ack = s.apply(WorkerEvent::MessageReceived {
            conversation: bob(),
            message: text(1, "bob", false, T0, "hi"),
        });
        assert_eq!(ack, None);
        s.apply(WorkerEvent::MessageReceived {
            conversation: bob(),
            message: text(2, "bob", false, T0, "there"),
        });
        assert_eq!(s.unread(bob()), 2);
        assert_eq!(s.unread(alice()), 0);
    }

    #[test]
    fn message_to_focused_conversation_is_acknowledged_not_unread() {
        let mut s = signed_in();
        let ack = s.apply(WorkerEvent::MessageReceived {
            conversation: alice(),
            message: text(1, "alice", false, T0, "hi"),
        });
        assert_eq!(ack, Some((alice(), MessageId::from_bytes([1; 16]))));
        assert_eq!(s.unread(alice()), 0);
    }

    #[test]
    fn own_messages_never_count_as_unread() {
        let mut s = signed_in();
        s.apply(WorkerEvent::MessageReceived {
            conversation: bob(),
            message: text(1, "sam", true, T0, "from my laptop"),
        });
        assert_eq!(s.unread(bob()), 0);
    }

    #[test]
    fn focusing_clears_unread_and_returns_newest_for_read_receipt() {
        let mut s = signed_in();
        for i in 1..=3 {
            s.apply(WorkerEvent::MessageReceived {
                conversation: bob(),
                message: text(i, "bob", false, T0, "x"),
            });
        }
        assert_eq!(s.unread(bob()), 3);
        assert_eq!(s.focus(bob()), Some(MessageId::from_bytes([3; 16])));
        assert_eq!(s.unread(bob()), 0);
    }

    #[test]
    fn opening_marks_where_the_unread_messages_start_until_leaving() {
        let mut s = signed_in();
        s.apply(WorkerEvent::MessageReceived {
            conversation: bob(),
            message: text(1, "bob", false, T0, "read already"),
        });
        s.focus(bob());
        assert_eq!(
            s.conversations[&bob()].marker,
            Some(MessageId::from_bytes([1; 16]))
        );
        s.focus(alice());
        assert_eq!(s.conversations[&bob()].marker, None);
        for i in 2..=3 {
            s.apply(WorkerEvent::MessageReceived {
                conversation: bob(),
                message: text(i, "bob", false, T0, "new"),
            });
        }
        s.focus(bob());
        assert_eq!(
            s.conversations[&bob()].marker,
            Some(MessageId::from_bytes([2; 16]))
        );
        s.focus(alice());
        assert_eq!(s.conversations[&bob()].marker, None);
    }

    #[test]
    fn replayed_message_is_not_shown_twice() {
        let mut s = signed_in();
        for _ in 0..2 {
            s.apply(WorkerEvent::MessageReceived {
                conversation: bob(),
                message: text(1, "bob", false, T0, "once"),
            });
        }
        assert_eq!(s.conversations[&bob()].messages.len(), 1);
        assert_eq!(s.unread(bob()), 1);
    }

    #[test]
    fn delivery_marks_advance_and_never_go_back() {
        let mut s = signed_in();
        let mut m = text(7, "sam", true, T0, "hello");
        m.delivery = Delivery::Pending;
        s.apply_outcome(Outcome::Sent(alice(), Ok(m)));
        let id = MessageId::from_bytes([7; 16]);
        let get = |s: &AppState| s.conversations[&alice()].messages[0].delivery;
        assert_eq!(get(&s), Delivery::Pending);
        for (next, want) in [
            (Delivery::Sent, Delivery::Sent),
            (Delivery::Delivered, Delivery::Delivered),
            (Delivery::Sent, Delivery::Delivered),
            (Delivery::Read, Delivery::Read),
            (Delivery::Delivered, Delivery::Read),
            (Delivery::Failed, Delivery::Read),
        ] {
            s.apply(WorkerEvent::DeliveryChanged {
                conversation: alice(),
                message: id,
                delivery: next,
            });
            assert_eq!(get(&s), want, "after {next:?}");
        }
    }

    #[test]
    fn typing_indicator_expires() {
        let mut s = signed_in();
        s.apply(WorkerEvent::Typing {
            conversation: alice(),
            user: name("alice"),
        });
        assert_eq!(s.typing(alice()), vec![&name("alice")]);
        s.tick(Timestamp(T0 + TYPING_TIMEOUT_MS - 1));
        assert_eq!(s.typing(alice()).len(), 1);
        s.tick(Timestamp(T0 + TYPING_TIMEOUT_MS));
        assert!(s.typing(alice()).is_empty());
    }

    #[test]
    fn a_fresh_typing_notification_extends_the_indicator() {
        let mut s = signed_in();
        let ev = WorkerEvent::Typing {
            conversation: alice(),
            user: name("alice"),
        };
        s.apply(ev.clone());
        s.tick(Timestamp(T0 + 4_000));
        s.apply(ev);
        s.tick(Timestamp(T0 + TYPING_TIMEOUT_MS + 1_000));
        assert_eq!(s.typing(alice()).len(), 1);
        assert_eq!(s.conversations[&alice()].typing.len(), 1);
    }

    #[test]
    fn a_message_ends_its_senders_typing_indicator() {
        let mut s = signed_in();
        s.apply(WorkerEvent::Typing {
            conversation: alice(),
            user: name("alice"),
        });
        s.apply(WorkerEvent::MessageReceived {
            conversation: alice(),
            message: text(1, "alice", false, T0, "done typing"),
        });
        assert!(s.typing(alice()).is_empty());
    }

    #[test]
    fn connection_state_is_recorded() {
        let mut s = signed_in();
        let c = ConnectionState::Reconnecting {
            attempt: 3,
            retry_in_ms: 4_000,
        };
        s.apply(WorkerEvent::Connection(c));
        assert_eq!(s.connection, c);
        let c = ConnectionState::Connected {
            transport: Transport::WebSocket,
        };
        s.apply(WorkerEvent::Connection(c));
        assert_eq!(s.connection, c);
    }

    #[test]
    fn identity_change_flags_the_contact_and_warns_in_the_chat() {
        let mut s = signed_in();
        s.contacts[1].verified = true;
        s.apply(WorkerEvent::IdentityChanged { user: user(2) });
        let bob_c = s.contact(user(2)).unwrap();
        assert!(bob_c.identity_changed);
        assert!(!bob_c.verified);
        let last = s.conversations[&bob()].messages.last().unwrap();
        assert!(matches!(&last.body, MessageBody::Notice(t) if t.contains("safety number")));
    }

    #[test]
    fn verifying_clears_the_warning_on_the_safety_screen() {
        let mut s = signed_in();
        s.apply(WorkerEvent::IdentityChanged { user: user(2) });
        s.overlay = Some(Overlay::Safety(SafetyInfo {
            id: user(2),
            user: name("bob"),
            digits: "1".repeat(60),
            verified: false,
            identity_changed: true,
        }));
        let mut c = s.contact(user(2)).unwrap().clone();
        c.identity_changed = false;
        c.verified = true;
        s.apply_outcome(Outcome::Verified(Ok(c)));
        assert!(!s.contact(user(2)).unwrap().identity_changed);
        assert!(matches!(
            &s.overlay,
            Some(Overlay::Safety(i)) if i.verified && !i.identity_changed
        ));
    }

    #[test]
    fn file_progress_updates_then_completes() {
        let mut s = signed_in();
        let mut m = text(5, "sam", true, T0, "");
        m.body = MessageBody::File(Attachment {
            name: "a.bin".into(),
            size: 100,
            transferred: Some(0),
            image: None,
        });
        s.apply_outcome(Outcome::Sent(alice(), Ok(m)));
        let id = MessageId::from_bytes([5; 16]);
        s.apply(WorkerEvent::FileProgress {
            conversation: alice(),
            message: id,
            done: 40,
            total: 100,
        });
        assert_eq!(s.transfers(), vec![("a.bin", 40, 100)]);
        s.apply(WorkerEvent::FileProgress {
            conversation: alice(),
            message: id,
            done: 100,
            total: 100,
        });
        assert!(s.transfers().is_empty());
    }

    #[test]
    fn a_downloaded_image_replayed_becomes_the_preview_of_the_shown_message() {
        let mut s = signed_in();
        let id = MessageId::from_bytes([6; 16]);
        let mut m = text(6, "bob", false, T0, "");
        m.body = MessageBody::File(Attachment {
            name: "cat.png".into(),
            size: 100,
            transferred: Some(0),
            image: None,
        });
        let bob = ConversationId::Direct(user(2));
        s.apply(WorkerEvent::MessageReceived {
            conversation: bob,
            message: m.clone(),
        });
        assert!(!s.previews.contains_key(&id));
        let unread = s.conversations[&bob].unread;
        // Downloaded: the worker says so, then replays it with the image.
        s.apply(WorkerEvent::FileProgress {
            conversation: bob,
            message: id,
            done: 100,
            total: 100,
        });
        m.body = MessageBody::File(Attachment {
            name: "cat.png".into(),
            size: 100,
            transferred: None,
            image: Some(crate::preview::demo_png(8, 8)),
        });
        s.apply(WorkerEvent::MessageReceived {
            conversation: bob,
            message: m,
        });
        let c = &s.conversations[&bob];
        assert_eq!(c.messages.len(), 1);
        assert_eq!(c.unread, unread, "a replay is not a new message");
        assert!(matches!(
            &c.messages[0].body,
            MessageBody::File(a) if a.image.is_some() && a.transferred.is_none()
        ));
        assert!(s.previews.contains_key(&id));
    }

    #[test]
    fn joining_a_room_removes_its_invitation_and_opens_it() {
        let mut s = signed_in();
        let room = RoomId::from_bytes([4; 16]);
        s.apply(WorkerEvent::Invitation(Invitation {
            room,
            room_name: RoomName::parse("ops").unwrap(),
            from: name("bob"),
            at: Timestamp(T0),
        }));
        assert_eq!(s.invitations.len(), 1);
        s.apply_outcome(Outcome::Joined(Ok(RoomEntry {
            id: room,
            name: RoomName::parse("ops").unwrap(),
            role: Role::Member,
            members: 2,
        })));
        assert!(s.invitations.is_empty());
        assert_eq!(s.focused, Some(ConversationId::Room(room)));
    }

    #[test]
    fn being_kicked_removes_the_room_and_says_so() {
        let mut s = signed_in();
        let room = RoomId::from_bytes([3; 16]);
        s.focus(ConversationId::Room(room));
        s.apply(WorkerEvent::RoomLeft { room, kicked: true });
        assert!(s.rooms.is_empty());
        assert_eq!(s.focused, None);
        assert!(s.notice.as_ref().is_some_and(|n| n.error));
    }

    #[test]
    fn notices_expire() {
        let mut s = signed_in();
        s.notify("hello", false);
        s.tick(Timestamp(T0 + NOTICE_MS - 1));
        assert!(s.notice.is_some());
        s.tick(Timestamp(T0 + NOTICE_MS));
        assert!(s.notice.is_none());
    }

    #[test]
    fn day_names_the_local_calendar_day() {
        let mut s = signed_in();
        assert_eq!(s.day(Timestamp(T0)), "Thu 1 Jan 2026");
        s.offset = UtcOffset::from_hms(-1, 0, 0).unwrap();
        assert_eq!(s.day(Timestamp(T0)), "Wed 31 Dec 2025");
    }

    #[test]
    fn clock_uses_the_given_offset() {
        let mut s = signed_in();
        assert_eq!(s.clock(Timestamp(T0 + 90 * 60_000)), "01:30");
        s.offset = UtcOffset::from_hms(2, 0, 0).unwrap();
        assert_eq!(s.clock(Timestamp(T0 + 90 * 60_000)), "03:30");
    }

    #[test]
    fn sign_in_failure_stays_on_first_run_with_the_reason() {
        let mut s = AppState::new(Timestamp(T0), UtcOffset::UTC);
        s.apply(WorkerEvent::Ready { account: None });
        s.signing_in = true;
        s.apply_outcome(Outcome::SignedIn(Err(WorkerError::NameTaken(
            "alice".into(),
        ))));
        assert_eq!(s.screen, Screen::FirstRun);
        assert!(!s.signing_in);
        assert!(s.sign_in_error.as_deref().unwrap().contains("taken"));
    }
}
