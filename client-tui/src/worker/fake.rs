//! An in-process worker with made-up people, for tests and `spider --fake`.
//!
//! Deterministic: it has no RNG and takes the time from its caller. It
//! answers each [`Request`] at once and schedules what a relay would say
//! later (✓ after 0.2 s, ✓✓ after 0.7 s, read after 1.5 s, a reply from
//! @alice with a typing indicator first), plus a scripted reconnect that
//! falls back from QUIC to WebSocket. Tests drive it by hand through
//! [`FakeWorker::handle`] and [`FakeWorker::advance`]; the app runs it as a
//! task with [`FakeWorker::spawn`].

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use spider_protocol::ids::{LinkToken, MessageId, RoomId, Timestamp, UserId};
use spider_protocol::message::{Presence, Role};
use spider_protocol::name::{RoomName, Username};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{
    Account, Attachment, ChatMessage, ConnectionState, Contact, ConversationId, Delivery,
    Invitation, JoinTarget, MemberEntry, MessageBody, Request, RoomEntry, SafetyInfo, SearchHit,
    Transport, TransportChoice, WorkerError, WorkerEvent,
};
use crate::preview::{MAX_PREVIEW_BYTES, demo_png};

/// Largest file the fake "uploads" (it reads the whole file).
const MAX_FAKE_FILE: u64 = 64 * 1024 * 1024;

/// Wall-clock now, for the spawned task.
pub(crate) fn wall_clock() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Timestamp(ms)
}

fn name(s: &str) -> Option<Username> {
    Username::parse(s).ok()
}

fn room_name(s: &str) -> Option<RoomName> {
    RoomName::parse(s).ok()
}

/// A user id made from a name, so that the same name is the same user.
fn user_id(name: &Username) -> UserId {
    let mut b = [0u8; 16];
    for (i, c) in name.as_str().bytes().enumerate() {
        b[i % 16] ^= c.rotate_left(u32::try_from(i / 16).unwrap_or(0));
    }
    b[15] ^= 0x5a;
    UserId::from_bytes(b)
}

/// The in-process worker.
#[derive(Debug)]
pub(crate) struct FakeWorker {
    account: Option<Account>,
    transport: TransportChoice,
    contacts: Vec<Contact>,
    rooms: Vec<RoomEntry>,
    invitations: Vec<Invitation>,
    members: HashMap<RoomId, Vec<MemberEntry>>,
    history: Vec<(ConversationId, ChatMessage)>,
    counter: u64,
    /// Events and when they are due; kept in insertion order for ties.
    scheduled: Vec<(Timestamp, WorkerEvent)>,
    /// Play the scripted demo (typing, replies, reconnect).
    script: bool,
    /// Our display name, as last set.
    display_name: Option<String>,
    /// Read receipts we were asked to send.
    read_up_to: HashMap<ConversationId, MessageId>,
    /// Where we last said we were typing.
    typing_in: Option<ConversationId>,
}

impl FakeWorker {
    /// A fake with no account: the app starts on its first-run screen.
    pub(crate) fn new(transport: TransportChoice) -> Self {
        FakeWorker {
            account: None,
            transport,
            contacts: Vec::new(),
            rooms: Vec::new(),
            invitations: Vec::new(),
            members: HashMap::new(),
            history: Vec::new(),
            counter: 0,
            scheduled: Vec::new(),
            script: true,
            display_name: None,
            read_up_to: HashMap::new(),
            typing_in: None,
        }
    }

    #[cfg(test)]
    /// A fake already signed in as `me`, with the demo roster and history
    /// (dated just before `now`) and no scripted events: for snapshots.
    pub(crate) fn signed_in(me: &str, now: Timestamp) -> Self {
        let mut w = FakeWorker::new(TransportChoice::Auto);
        w.script = false;
        if let Some(me) = name(me) {
            w.account = Some(Account {
                id: user_id(&me),
                name: me,
                relay: "relay.example:443".to_owned(),
            });
            w.populate(now);
        }
        w
    }

    fn next_message_id(&mut self) -> MessageId {
        self.counter += 1;
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.counter.to_be_bytes());
        b[8] = 0xfa;
        MessageId::from_bytes(b)
    }

    fn me(&self) -> Option<Username> {
        self.account.as_ref().map(|a| a.name.clone())
    }

    fn at(&mut self, when: Timestamp, ev: WorkerEvent) {
        self.scheduled.push((when, ev));
    }

    fn later(now: Timestamp, ms: u64) -> Timestamp {
        Timestamp(now.0.saturating_add(ms))
    }

    fn first_transport(&self) -> Transport {
        match self.transport {
            TransportChoice::Ws => Transport::WebSocket,
            TransportChoice::Auto | TransportChoice::Quic => Transport::Quic,
        }
    }

    /// Fills in the demo people, rooms and history.
    fn populate(&mut self, now: Timestamp) {
        let contact = |n: &str, display: &str, presence| {
            name(n).map(|nm| Contact {
                id: user_id(&nm),
                name: nm,
                display_name: Some(display.to_owned()),
                presence,
                verified: false,
                identity_changed: false,
            })
        };
        self.contacts = [
            contact("alice", "Alice Liddell", Presence::Online),
            contact("bob", "Bob", Presence::Away),
            contact(
                "carol",
                "Carol",
                Presence::Offline {
                    last_seen: Some(Timestamp(now.0.saturating_sub(3_600_000))),
                },
            ),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut rooms = Vec::new();
        for (i, (n, role, members)) in [("rust", Role::Owner, 4), ("ops", Role::Member, 3)]
            .into_iter()
            .enumerate()
        {
            if let Some(rn) = room_name(n) {
                let id = RoomId::from_bytes([u8::try_from(i).unwrap_or(0) + 0xa0; 16]);
                rooms.push(RoomEntry {
                    id,
                    name: rn,
                    role,
                    members,
                });
                let mut m: Vec<MemberEntry> = self
                    .contacts
                    .iter()
                    .take(members - 1)
                    .map(|c| MemberEntry {
                        name: c.name.clone(),
                        role: Role::Member,
                        presence: c.presence,
                    })
                    .collect();
                if let Some(me) = self.me() {
                    m.insert(
                        0,
                        MemberEntry {
                            name: me,
                            role,
                            presence: Presence::Online,
                        },
                    );
                }
                self.members.insert(id, m);
            }
        }
        self.rooms = rooms;
        if let (Some(r), Some(from)) = (room_name("design"), name("carol")) {
            self.invitations = vec![Invitation {
                room: RoomId::from_bytes([0xaf; 16]),
                room_name: r,
                from,
                at: Timestamp(now.0.saturating_sub(600_000)),
            }];
        }
        let Some(me) = self.me() else { return };
        let min = |m: u64| Timestamp(now.0.saturating_sub(m * 60_000));
        let ids: Vec<UserId> = self.contacts.iter().map(|c| c.id).collect();
        let names: Vec<Username> = self.contacts.iter().map(|c| c.name.clone()).collect();
        let (Some(&alice), Some(&bob), Some(a_name), Some(b_name), Some(c_name)) = (
            ids.first(),
            ids.get(1),
            names.first(),
            names.get(1),
            names.get(2),
        ) else {
            return;
        };
        let rust = self.rooms.first().map(|r| r.id);
        let a = ConversationId::Direct(alice);
        let b = ConversationId::Direct(bob);
        let lines: Vec<(ConversationId, &Username, u64, MessageBody)> = vec![
            (
                a,
                a_name,
                42,
                MessageBody::Text("hey! are you coming to the meetup on thursday?".into()),
            ),
            (
                a,
                &me,
                40,
                MessageBody::Text("yes, wouldn't miss it. I'll bring the slides".into()),
            ),
            (
                a,
                a_name,
                12,
                MessageBody::Text("great. here's the view from the venue:".into()),
            ),
            (
                a,
                a_name,
                11,
                MessageBody::File(Attachment {
                    name: "venue.png".into(),
                    size: 48_213,
                    transferred: None,
                    image: Some(demo_png(48, 24)),
                }),
            ),
            (a, &me, 3, MessageBody::Text("lovely! see you there".into())),
            (
                b,
                b_name,
                25,
                MessageBody::Text("can you review my PR when you get a minute?".into()),
            ),
            (
                b,
                b_name,
                24,
                MessageBody::Text("it's the reconnect one".into()),
            ),
        ];
        let mut out = Vec::new();
        for (conv, from, ago, body) in lines {
            let mine = *from == me;
            out.push((
                conv,
                ChatMessage {
                    id: self.next_message_id(),
                    from: from.clone(),
                    mine,
                    at: min(ago),
                    body,
                    delivery: if mine {
                        Delivery::Delivered
                    } else {
                        Delivery::Read
                    },
                },
            ));
        }
        if let Some(rust) = rust {
            let r = ConversationId::Room(rust);
            for (from, ago, text) in [
                (c_name, 90, "has anyone tried ratatui 0.30 yet?"),
                (a_name, 88, "yes, the split into ratatui-core is nice"),
            ] {
                out.push((
                    r,
                    ChatMessage {
                        id: self.next_message_id(),
                        from: from.clone(),
                        mine: false,
                        at: min(ago),
                        body: MessageBody::Text(text.into()),
                        delivery: Delivery::Read,
                    },
                ));
            }
        }
        // Our own first message in the 1:1 with alice was read.
        if let Some((_, m)) = out.get_mut(1) {
            m.delivery = Delivery::Read;
        }
        self.history = out;
    }

    /// What the worker says when it starts: `Ready`, and when signed in the
    /// roster, the history and the connection.
    pub(crate) fn start(&mut self, now: Timestamp) -> Vec<WorkerEvent> {
        let mut v = vec![WorkerEvent::Ready {
            account: self.account.clone(),
        }];
        if self.account.is_some() {
            v.extend(self.after_sign_in(now));
        }
        v
    }

    fn after_sign_in(&mut self, now: Timestamp) -> Vec<WorkerEvent> {
        let mut v = vec![WorkerEvent::Roster {
            contacts: self.contacts.clone(),
            rooms: self.rooms.clone(),
            invitations: self.invitations.clone(),
        }];
        v.extend(
            self.history
                .iter()
                .map(|(c, m)| WorkerEvent::MessageReceived {
                    conversation: *c,
                    message: m.clone(),
                }),
        );
        let t = self.first_transport();
        v.push(WorkerEvent::Connection(ConnectionState::Connecting {
            transport: t,
        }));
        if !self.script {
            v.push(WorkerEvent::Connection(ConnectionState::Connected {
                transport: t,
            }));
            return v;
        }
        self.at(
            Self::later(now, 400),
            WorkerEvent::Connection(ConnectionState::Connected { transport: t }),
        );
        // The demo: alice types and writes; #rust gets a message; bob's key
        // changes; later the connection drops and comes back over WebSocket.
        let alice = self.contacts.first().map(|c| (c.id, c.name.clone()));
        let bob = self.contacts.get(1).map(|c| c.id);
        if let Some((id, n)) = alice {
            let conv = ConversationId::Direct(id);
            self.at(
                Self::later(now, 5_000),
                WorkerEvent::Typing {
                    conversation: conv,
                    user: n.clone(),
                },
            );
            let msg = ChatMessage {
                id: self.next_message_id(),
                from: n,
                mine: false,
                at: Self::later(now, 8_000),
                body: MessageBody::Text("also: could you send me the slides beforehand?".into()),
                delivery: Delivery::Read,
            };
            self.at(
                Self::later(now, 8_000),
                WorkerEvent::MessageReceived {
                    conversation: conv,
                    message: msg,
                },
            );
        }
        if let (Some(room), Some(c)) = (
            self.rooms.first().map(|r| r.id),
            self.contacts.get(2).map(|c| c.name.clone()),
        ) {
            let msg = ChatMessage {
                id: self.next_message_id(),
                from: c,
                mine: false,
                at: Self::later(now, 12_000),
                body: MessageBody::Text("the release is tagged 🎉".into()),
                delivery: Delivery::Read,
            };
            self.at(
                Self::later(now, 12_000),
                WorkerEvent::MessageReceived {
                    conversation: ConversationId::Room(room),
                    message: msg,
                },
            );
        }
        if let Some(bob) = bob {
            self.at(
                Self::later(now, 15_000),
                WorkerEvent::IdentityChanged { user: bob },
            );
            if let Some(c) = self.contacts.get_mut(1) {
                c.identity_changed = true;
            }
        }
        if let Some(carol) = self.contacts.get(2).map(|c| c.id) {
            self.at(
                Self::later(now, 20_000),
                WorkerEvent::Presence {
                    user: carol,
                    presence: Presence::Online,
                },
            );
        }
        if let (Some(r), Some(from)) = (room_name("random"), name("bob")) {
            self.at(
                Self::later(now, 25_000),
                WorkerEvent::Invitation(Invitation {
                    room: RoomId::from_bytes([0xae; 16]),
                    room_name: r,
                    from,
                    at: Self::later(now, 25_000),
                }),
            );
        }
        if self.transport == TransportChoice::Auto {
            for (ms, state) in [
                (
                    40_000,
                    ConnectionState::Reconnecting {
                        attempt: 1,
                        retry_in_ms: 2_000,
                    },
                ),
                (
                    42_000,
                    ConnectionState::Connecting {
                        transport: Transport::Quic,
                    },
                ),
                (
                    45_000,
                    ConnectionState::Reconnecting {
                        attempt: 2,
                        retry_in_ms: 4_000,
                    },
                ),
                (
                    49_000,
                    ConnectionState::Connecting {
                        transport: Transport::WebSocket,
                    },
                ),
                (
                    49_600,
                    ConnectionState::Connected {
                        transport: Transport::WebSocket,
                    },
                ),
            ] {
                self.at(Self::later(now, ms), WorkerEvent::Connection(state));
            }
        }
        v
    }

    /// The time of the next scheduled event.
    pub(crate) fn next_due(&self) -> Option<Timestamp> {
        self.scheduled.iter().map(|(t, _)| *t).min()
    }

    /// Takes the events due by `now`, oldest first.
    pub(crate) fn advance(&mut self, now: Timestamp) -> Vec<WorkerEvent> {
        let mut due: Vec<(Timestamp, WorkerEvent)> = Vec::new();
        let mut keep = Vec::new();
        for (t, e) in self.scheduled.drain(..) {
            if t <= now {
                due.push((t, e));
            } else {
                keep.push((t, e));
            }
        }
        self.scheduled = keep;
        // Stable: ties stay in insertion order.
        due.sort_by_key(|(t, _)| *t);
        due.into_iter().map(|(_, e)| e).collect()
    }

    fn room(&self, id: RoomId) -> Result<&RoomEntry, WorkerError> {
        self.rooms
            .iter()
            .find(|r| r.id == id)
            .ok_or_else(|| WorkerError::Other("not in that room".into()))
    }

    fn receipts(&mut self, now: Timestamp, conv: ConversationId, id: MessageId, start: u64) {
        // People found by /msg in the fake have no devices: sending fails.
        if let ConversationId::Direct(u) = conv
            && self
                .contacts
                .iter()
                .any(|c| c.id == u && c.display_name.is_none())
        {
            self.at(
                Self::later(now, start + 800),
                WorkerEvent::DeliveryChanged {
                    conversation: conv,
                    message: id,
                    delivery: Delivery::Failed,
                },
            );
            return;
        }
        let read = match conv {
            ConversationId::Direct(u) => self
                .contacts
                .iter()
                .any(|c| c.id == u && c.presence == Presence::Online),
            ConversationId::Room(_) => false,
        };
        let mut steps = vec![(start, Delivery::Sent), (start + 500, Delivery::Delivered)];
        if read {
            steps.push((start + 1_300, Delivery::Read));
        }
        for (ms, d) in steps {
            self.at(
                Self::later(now, ms),
                WorkerEvent::DeliveryChanged {
                    conversation: conv,
                    message: id,
                    delivery: d,
                },
            );
        }
    }

    fn send_text(
        &mut self,
        now: Timestamp,
        conv: ConversationId,
        text: String,
    ) -> Result<ChatMessage, WorkerError> {
        let me = self.me().ok_or(WorkerError::Offline)?;
        let msg = ChatMessage {
            id: self.next_message_id(),
            from: me,
            mine: true,
            at: now,
            body: MessageBody::Text(text.clone()),
            delivery: Delivery::Pending,
        };
        self.history.push((conv, msg.clone()));
        self.receipts(now, conv, msg.id, 200);
        // Alice answers 1:1 messages, after typing for a moment.
        if self.script
            && let ConversationId::Direct(u) = conv
            && let Some(alice) = self
                .contacts
                .first()
                .filter(|c| c.id == u)
                .map(|c| c.name.clone())
        {
            self.at(
                Self::later(now, 1_800),
                WorkerEvent::Typing {
                    conversation: conv,
                    user: alice.clone(),
                },
            );
            let short: String = text.chars().take(30).collect();
            let reply = ChatMessage {
                id: self.next_message_id(),
                from: alice,
                mine: false,
                at: Self::later(now, 3_500),
                body: MessageBody::Text(format!("got it: \"{short}\"")),
                delivery: Delivery::Read,
            };
            self.history.push((conv, reply.clone()));
            self.at(
                Self::later(now, 3_500),
                WorkerEvent::MessageReceived {
                    conversation: conv,
                    message: reply,
                },
            );
        }
        Ok(msg)
    }

    fn send_file(
        &mut self,
        now: Timestamp,
        conv: ConversationId,
        path: &std::path::Path,
    ) -> Result<ChatMessage, WorkerError> {
        let me = self.me().ok_or(WorkerError::Offline)?;
        let meta = std::fs::metadata(path).map_err(|_| WorkerError::File("not found".into()))?;
        if !meta.is_file() {
            return Err(WorkerError::File("not a regular file".into()));
        }
        if meta.len() > MAX_FAKE_FILE {
            return Err(WorkerError::File("too large".into()));
        }
        let size = meta.len();
        let file_name = path
            .file_name()
            .map_or_else(|| "file".to_owned(), |n| n.to_string_lossy().into_owned());
        let lower = file_name.to_ascii_lowercase();
        let is_image = [".png", ".jpg", ".jpeg"].iter().any(|e| lower.ends_with(e));
        let image = if is_image && usize::try_from(size).is_ok_and(|s| s <= MAX_PREVIEW_BYTES) {
            std::fs::read(path).ok()
        } else {
            None
        };
        let msg = ChatMessage {
            id: self.next_message_id(),
            from: me,
            mine: true,
            at: now,
            body: MessageBody::File(Attachment {
                name: file_name,
                size,
                transferred: Some(0),
                image,
            }),
            delivery: Delivery::Pending,
        };
        self.history.push((conv, msg.clone()));
        const STEPS: u64 = 20;
        for i in 1..=STEPS {
            self.at(
                Self::later(now, i * 150),
                WorkerEvent::FileProgress {
                    conversation: conv,
                    message: msg.id,
                    done: size * i / STEPS,
                    total: size,
                },
            );
        }
        self.receipts(now, conv, msg.id, STEPS * 150 + 100);
        Ok(msg)
    }

    fn safety(&self, user: UserId) -> Result<SafetyInfo, WorkerError> {
        let c = self
            .contacts
            .iter()
            .find(|c| c.id == user)
            .ok_or_else(|| WorkerError::Other("unknown contact".into()))?;
        // A stand-in: digits from a linear congruential walk seeded by the
        // id (the SDK computes the real one in spider-crypto).
        let mut x = user
            .as_bytes()
            .iter()
            .fold(0x9e37_79b9_7f4a_7c15u64, |h, b| {
                h.rotate_left(8) ^ u64::from(*b)
            });
        let digits = (0..60)
            .map(|_| {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                char::from_digit(u32::try_from((x >> 33) % 10).unwrap_or(0), 10).unwrap_or('0')
            })
            .collect();
        Ok(SafetyInfo {
            id: c.id,
            user: c.name.clone(),
            digits,
            verified: c.verified,
            identity_changed: c.identity_changed,
        })
    }

    /// Answers one request at once, scheduling whatever follows it.
    pub(crate) fn handle(&mut self, req: Request, now: Timestamp) {
        match req {
            Request::Register { relay, name, reply } | Request::SignIn { relay, name, reply } => {
                let r = if name.as_str() == "taken" {
                    Err(WorkerError::NameTaken(name.to_string()))
                } else {
                    let account = Account {
                        id: user_id(&name),
                        name,
                        relay,
                    };
                    self.account = Some(account.clone());
                    self.populate(now);
                    for ev in self.after_sign_in(now) {
                        self.at(now, ev);
                    }
                    Ok(account)
                };
                let _ = reply.send(r);
            }
            Request::SendText {
                conversation,
                text,
                reply,
            } => {
                let _ = reply.send(self.send_text(now, conversation, text));
            }
            Request::SendFile {
                conversation,
                path,
                reply,
            } => {
                let _ = reply.send(self.send_file(now, conversation, &path));
            }
            Request::OpenDirect { user, reply } => {
                let r = if let Some(c) = self.contacts.iter().find(|c| c.name == user) {
                    Ok(c.clone())
                } else if user.as_str() == "nobody" {
                    Err(WorkerError::NoSuchUser(user))
                } else {
                    let c = Contact {
                        id: user_id(&user),
                        name: user,
                        display_name: None,
                        presence: Presence::Offline { last_seen: None },
                        verified: false,
                        identity_changed: false,
                    };
                    self.contacts.push(c.clone());
                    Ok(c)
                };
                let _ = reply.send(r);
            }
            Request::CreateRoom { name, reply } => {
                let r = if self.rooms.iter().any(|r| r.name == name) {
                    Err(WorkerError::NameTaken(name.to_string()))
                } else {
                    self.counter += 1;
                    let mut b = [0xb0; 16];
                    b[8..].copy_from_slice(&self.counter.to_be_bytes());
                    let room = RoomEntry {
                        id: RoomId::from_bytes(b),
                        name,
                        role: Role::Owner,
                        members: 1,
                    };
                    if let Some(me) = self.me() {
                        self.members.insert(
                            room.id,
                            vec![MemberEntry {
                                name: me,
                                role: Role::Owner,
                                presence: Presence::Online,
                            }],
                        );
                    }
                    self.rooms.push(room.clone());
                    Ok(room)
                };
                let _ = reply.send(r);
            }
            Request::Invite { room, user, reply } => {
                let r = self.room(room).map(|_| ()).and_then(|()| {
                    if user.as_str() == "nobody" {
                        Err(WorkerError::NoSuchUser(user))
                    } else {
                        Ok(())
                    }
                });
                let _ = reply.send(r);
            }
            Request::CreateLink { room, reply } => {
                let found = self.room(room).map(|_| ());
                let r = found.map(|()| {
                    self.counter += 1;
                    let mut b = [0x11u8; 16];
                    b[8..].copy_from_slice(&self.counter.to_be_bytes());
                    format!(
                        "{}{}",
                        crate::components::command::LINK_PREFIX,
                        LinkToken::from_bytes(b).to_hex()
                    )
                });
                let _ = reply.send(r);
            }
            Request::Join { target, reply } => {
                let r = match target {
                    JoinTarget::Room(n) => {
                        match self.invitations.iter().position(|i| i.room_name == n) {
                            Some(i) => {
                                let inv = self.invitations.remove(i);
                                let room = RoomEntry {
                                    id: inv.room,
                                    name: inv.room_name,
                                    role: Role::Member,
                                    members: 3,
                                };
                                self.rooms.push(room.clone());
                                Ok(room)
                            }
                            None => Err(WorkerError::NoSuchRoom(n)),
                        }
                    }
                    JoinTarget::Link(token) => match room_name("lobby") {
                        Some(n) => {
                            let room = RoomEntry {
                                id: RoomId::from_bytes(*token.as_bytes()),
                                name: n,
                                role: Role::Member,
                                members: 5,
                            };
                            self.rooms.push(room.clone());
                            Ok(room)
                        }
                        None => Err(WorkerError::Other("bad link".into())),
                    },
                };
                let _ = reply.send(r);
            }
            Request::Decline { room, reply } => {
                self.invitations.retain(|i| i.room != room);
                let _ = reply.send(Ok(()));
            }
            Request::Leave { room, reply } => {
                let r = self.room(room).map(|_| ());
                if r.is_ok() {
                    self.rooms.retain(|r| r.id != room);
                    self.at(
                        now,
                        WorkerEvent::RoomLeft {
                            room,
                            kicked: false,
                        },
                    );
                }
                let _ = reply.send(r);
            }
            Request::Kick { room, user, reply } => {
                let r = match (self.room(room).map(|r| r.role), self.members.get_mut(&room)) {
                    (Ok(Role::Member), _) => Err(WorkerError::Forbidden("only admins kick".into())),
                    (Ok(_), Some(m)) if m.iter().any(|m| m.name == user) => {
                        m.retain(|m| m.name != user);
                        let count = m.len();
                        if let Some(r) = self.rooms.iter_mut().find(|r| r.id == room) {
                            r.members = count;
                            let changed = WorkerEvent::RoomChanged(r.clone());
                            self.at(now, changed);
                        }
                        Ok(())
                    }
                    (Ok(_), _) => Err(WorkerError::NoSuchUser(user)),
                    (Err(e), _) => Err(e),
                };
                let _ = reply.send(r);
            }
            Request::Members { room, reply } => {
                let r = self
                    .room(room)
                    .map(|_| self.members.get(&room).cloned().unwrap_or_default());
                let _ = reply.send(r);
            }
            Request::SafetyNumber { user, reply } => {
                let _ = reply.send(self.safety(user));
            }
            Request::Verify { user, reply } => {
                let r = match self.contacts.iter_mut().find(|c| c.id == user) {
                    Some(c) => {
                        c.verified = true;
                        c.identity_changed = false;
                        let c = c.clone();
                        // Other devices of ours learn of it too.
                        self.at(now, WorkerEvent::ContactChanged(c.clone()));
                        Ok(c)
                    }
                    None => Err(WorkerError::Other("unknown contact".into())),
                };
                let _ = reply.send(r);
            }
            Request::SetProfile {
                display_name,
                reply,
            } => {
                self.display_name = Some(display_name);
                let _ = reply.send(Ok(()));
            }
            Request::Search { query, reply } => {
                let q = query.to_lowercase();
                let hits = self
                    .history
                    .iter()
                    .rev()
                    .filter_map(|(c, m)| match &m.body {
                        MessageBody::Text(t) if t.to_lowercase().contains(&q) => Some(SearchHit {
                            conversation: *c,
                            message: m.id,
                            excerpt: t.lines().next().unwrap_or_default().to_owned(),
                        }),
                        _ => None,
                    })
                    .collect();
                let _ = reply.send(Ok(hits));
            }
            Request::MarkRead {
                conversation,
                up_to,
            } => {
                self.read_up_to.insert(conversation, up_to);
            }
            Request::Typing { conversation } => self.typing_in = Some(conversation),
        }
    }

    /// Runs the fake as a task: answers requests, sends due events.
    pub(crate) fn spawn(
        mut self,
        mut requests: mpsc::UnboundedReceiver<Request>,
        events: mpsc::UnboundedSender<WorkerEvent>,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            for ev in self.start(wall_clock()) {
                if events.send(ev).is_err() {
                    return;
                }
            }
            loop {
                let wait = self
                    .next_due()
                    .map_or(3_600_000, |t| t.0.saturating_sub(wall_clock().0));
                tokio::select! {
                    req = requests.recv() => match req {
                        Some(r) => self.handle(r, wall_clock()),
                        None => return,
                    },
                    () = tokio::time::sleep(Duration::from_millis(wait)) => {}
                }
                for ev in self.advance(wall_clock()) {
                    if events.send(ev).is_err() {
                        return;
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::T0;
    use crate::worker::Worker;
    use tokio::sync::oneshot;

    fn t(ms: u64) -> Timestamp {
        Timestamp(T0 + ms)
    }

    #[test]
    fn starts_on_first_run_then_signs_in_with_a_roster() {
        let mut w = FakeWorker::new(TransportChoice::Auto);
        assert_eq!(w.start(t(0)), vec![WorkerEvent::Ready { account: None }]);
        let (reply, mut rx) = oneshot::channel();
        w.handle(
            Request::Register {
                relay: "r".into(),
                name: Username::parse("dave").unwrap(),
                reply,
            },
            t(0),
        );
        assert_eq!(rx.try_recv().unwrap().unwrap().name.as_str(), "dave");
        let evs = w.advance(t(0));
        assert!(
            matches!(evs.first(), Some(WorkerEvent::Roster { contacts, .. }) if contacts.len() == 3)
        );
        assert!(evs.iter().any(|e| matches!(
            e,
            WorkerEvent::Connection(ConnectionState::Connecting { .. })
        )));
    }

    #[test]
    fn a_sent_message_gets_sent_delivered_read_in_order() {
        let mut w = FakeWorker::signed_in("sam", t(0));
        let alice = ConversationId::Direct(w.contacts[0].id);
        let (reply, mut rx) = oneshot::channel();
        w.handle(
            Request::SendText {
                conversation: alice,
                text: "hi".into(),
                reply,
            },
            t(0),
        );
        let m = rx.try_recv().unwrap().unwrap();
        assert_eq!(m.delivery, Delivery::Pending);
        let marks: Vec<Delivery> = w
            .advance(t(10_000))
            .into_iter()
            .filter_map(|e| match e {
                WorkerEvent::DeliveryChanged {
                    message, delivery, ..
                } if message == m.id => Some(delivery),
                _ => None,
            })
            .collect();
        assert_eq!(marks, [Delivery::Sent, Delivery::Delivered, Delivery::Read]);
    }

    #[test]
    fn missing_file_is_an_error_not_a_panic() {
        let mut w = FakeWorker::signed_in("sam", t(0));
        let (reply, mut rx) = oneshot::channel();
        w.handle(
            Request::SendFile {
                conversation: ConversationId::Direct(w.contacts[0].id),
                path: "/nonexistent/x.png".into(),
                reply,
            },
            t(0),
        );
        assert!(matches!(rx.try_recv().unwrap(), Err(WorkerError::File(_))));
    }

    #[test]
    fn safety_numbers_are_sixty_digits_and_stable() {
        let w = FakeWorker::signed_in("sam", t(0));
        let a = w.safety(w.contacts[0].id).unwrap();
        assert_eq!(a.groups().len(), 12);
        assert_eq!(a, w.safety(w.contacts[0].id).unwrap());
    }

    #[tokio::test]
    async fn spawned_fake_answers_through_the_worker_handle() {
        let (worker, requests) = Worker::channel();
        let (tx, mut events) = mpsc::unbounded_channel();
        let task = FakeWorker::new(TransportChoice::Quic).spawn(requests, tx);
        assert_eq!(
            events.recv().await,
            Some(WorkerEvent::Ready { account: None })
        );
        let acc = crate::worker::await_reply(
            worker.register("relay".into(), Username::parse("erin").unwrap()),
        )
        .await
        .unwrap();
        assert_eq!(acc.name.as_str(), "erin");
        let err =
            crate::worker::await_reply(worker.open_direct(Username::parse("nobody").unwrap()))
                .await;
        assert!(matches!(err, Err(WorkerError::NoSuchUser(_))));
        drop(worker);
        task.await.unwrap();
    }
}
