//! A fake relay and a world of client engines driven in memory with
//! simulated time (quinn-proto's `tests/util.rs` in spirit): just enough
//! relay logic for the client's behaviour to be tested end to end.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use spider_client::engine::{Engine, Event};
use spider_client::profile::{Account, BoxRng, Profile};
use spider_client::store::MemoryStore;
use spider_crypto::keys::IdentityPublicKey;
use spider_protocol::bytes::{BoundedBytes, BoundedString, BoundedVec, FixedBytes};
use spider_protocol::error::{ErrorCode, ErrorDetail};
use spider_protocol::ids::{DeviceAddress, DeviceId, MessageId, RoomId, Seq, Timestamp, UserId};
use spider_protocol::keys::{
    IdentityKeys, KemPreKey, OneTimePreKey, PreKeyBundle, PreKeyCounts, PreKeyUpload, SignedPreKey,
};
use spider_protocol::message::*;
use spider_protocol::name::{RoomName, Username};
use spider_protocol::{ClientFrame, ServerFrame};

pub const RELAY: &str = "relay.test";

pub struct Device {
    pub identity: IdentityKeys,
    pub signed: Option<SignedPreKey>,
    pub last_resort: Option<KemPreKey>,
    pub otks: VecDeque<OneTimePreKey>,
    pub kems: VecDeque<KemPreKey>,
    pub mailbox: BTreeMap<u64, Envelope>,
    pub next_seq: u64,
    pub stored: HashSet<MessageId>,
}

impl Device {
    fn new(identity: IdentityKeys) -> Self {
        Self {
            identity,
            signed: None,
            last_resort: None,
            otks: VecDeque::new(),
            kems: VecDeque::new(),
            mailbox: BTreeMap::new(),
            next_seq: 1,
            stored: HashSet::new(),
        }
    }

    fn upload(&mut self, p: PreKeyUpload) {
        if let Some(s) = p.signed_prekey {
            self.signed = Some(s);
        }
        if let Some(k) = p.last_resort_kem_prekey {
            self.last_resort = Some(k);
        }
        self.otks.extend(p.one_time_prekeys.into_vec());
        self.kems.extend(p.one_time_kem_prekeys.into_vec());
    }
}

pub struct UserRec {
    pub username: Username,
    pub devices: BTreeMap<DeviceId, Device>,
}

pub struct RoomRec {
    pub name: RoomName,
    pub epoch: u64,
    pub members: Vec<UserId>,
    pub invited: Vec<UserId>,
}

struct Conn {
    exporter: [u8; 32],
    challenge: [u8; 32],
    auth: Option<DeviceAddress>,
}

pub struct FakeRelay {
    pub users: HashMap<UserId, UserRec>,
    pub rooms: HashMap<RoomId, RoomRec>,
    conns: HashMap<usize, Conn>,
    pub out: HashMap<usize, VecDeque<ServerFrame>>,
    counter: u8,
    /// Turn off the relay's own dedup of message ids, so that the client's
    /// dedup is what is tested.
    pub dedup: bool,
    pub fetches: usize,
    pub now: u64,
    /// A malicious relay: also store room messages for these accounts,
    /// members or not.
    pub leak_room_to: Vec<UserId>,
    /// A slow network: store envelopes without pushing them to online
    /// devices; they arrive from the mailbox at the next connection.
    pub hold_pushes: bool,
    /// A rate limit: refuse the next this many `SendDirect`s with
    /// `RATE_LIMITED`, retry after 500 ms.
    pub refuse_sends: usize,
    /// `SendRoom`s refused for a stale view of the room.
    pub room_sends_refused: usize,
}

fn err(req: Option<RequestId>, code: ErrorCode, detail: ErrorDetail) -> ServerFrame {
    ServerFrame::Error(ErrorFrame {
        req,
        code,
        message: BoundedString::truncating(""),
        detail,
    })
}

use spider_protocol::ids::RequestId;

impl FakeRelay {
    pub fn new() -> Self {
        Self {
            users: HashMap::new(),
            rooms: HashMap::new(),
            conns: HashMap::new(),
            out: HashMap::new(),
            counter: 0,
            dedup: true,
            fetches: 0,
            now: 1_700_000_000_000,
            leak_room_to: Vec::new(),
            room_sends_refused: 0,
            hold_pushes: false,
            refuse_sends: 0,
        }
    }

    fn fresh16(&mut self) -> [u8; 16] {
        self.counter = self.counter.wrapping_add(1);
        let mut b = [0xa0; 16];
        b[0] = self.counter;
        b
    }

    fn send(&mut self, c: usize, f: ServerFrame) {
        self.out.entry(c).or_default().push_back(f);
    }

    pub fn open(&mut self, c: usize, exporter: [u8; 32]) {
        let ch = self.fresh16();
        let mut challenge = [0u8; 32];
        challenge[..16].copy_from_slice(&ch);
        self.conns.insert(
            c,
            Conn {
                exporter,
                challenge,
                auth: None,
            },
        );
        self.out.insert(c, VecDeque::new());
    }

    pub fn close(&mut self, c: usize) {
        self.conns.remove(&c);
        self.out.remove(&c);
    }

    pub fn user_by_name(&self, name: &str) -> Option<UserId> {
        self.users
            .iter()
            .find(|(_, u)| u.username.as_str() == name)
            .map(|(id, _)| *id)
    }

    pub fn device(&self, a: DeviceAddress) -> &Device {
        &self.users[&a.user].devices[&a.device]
    }

    pub fn device_mut(&mut self, a: DeviceAddress) -> &mut Device {
        self.users
            .get_mut(&a.user)
            .unwrap()
            .devices
            .get_mut(&a.device)
            .unwrap()
    }

    fn check_auth(&self, c: usize, identity: &IdentityKeys, sig: &FixedBytes<64>) -> bool {
        let conn = &self.conns[&c];
        let Ok(id) =
            IdentityPublicKey::from_parts(&identity.signing.0, &identity.dh.0, &identity.binding.0)
        else {
            return false;
        };
        id.verify_auth_challenge(RELAY, &conn.exporter, &conn.challenge, &sig.0)
            .is_ok()
    }

    fn auth_ok(&mut self, c: usize, req: RequestId, a: DeviceAddress) {
        self.conns.get_mut(&c).unwrap().auth = Some(a);
        let user = &self.users[&a.user];
        let d = &user.devices[&a.device];
        let ok = AuthOk {
            req,
            user: a.user,
            username: user.username.clone(),
            device: a.device,
            prekeys: PreKeyCounts {
                one_time: d.otks.len() as u32,
                one_time_kem: d.kems.len() as u32,
            },
            queued: d.mailbox.len() as u64,
        };
        let mail: Vec<(u64, Envelope)> = d.mailbox.iter().map(|(s, e)| (*s, e.clone())).collect();
        self.send(c, ServerFrame::AuthOk(ok));
        let last = mail.last().map(|(s, _)| Seq(*s));
        for (seq, envelope) in mail {
            self.send(
                c,
                ServerFrame::Deliver(Deliver {
                    seq: Seq(seq),
                    envelope,
                }),
            );
        }
        self.send(c, ServerFrame::CaughtUp(CaughtUp { last }));
    }

    fn store(&mut self, to: DeviceAddress, envelope: Envelope) {
        let dedup = self.dedup;
        let d = self.device_mut(to);
        if dedup && !d.stored.insert(envelope.message_id) {
            return;
        }
        let seq = d.next_seq;
        d.next_seq += 1;
        d.mailbox.insert(seq, envelope.clone());
        if self.hold_pushes {
            return;
        }
        let online: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.auth == Some(to))
            .map(|(i, _)| *i)
            .collect();
        for c in online {
            self.send(
                c,
                ServerFrame::Deliver(Deliver {
                    seq: Seq(seq),
                    envelope: envelope.clone(),
                }),
            );
        }
    }

    fn room_info(&self, req: RequestId, room: RoomId) -> ServerFrame {
        let r = &self.rooms[&room];
        let members = r
            .members
            .iter()
            .map(|u| Member {
                user: *u,
                username: self.users[u].username.clone(),
                role: Role::Member,
                devices: BoundedVec::new(self.users[u].devices.keys().copied().collect()).unwrap(),
            })
            .collect();
        ServerFrame::RoomInfo(RoomInfo {
            req,
            room,
            name: r.name.clone(),
            epoch: r.epoch,
            members: BoundedVec::new(members).unwrap(),
            invited: BoundedVec::new(r.invited.clone()).unwrap(),
        })
    }

    pub fn handle(&mut self, c: usize, frame: ClientFrame) {
        let me = self.conns.get(&c).and_then(|x| x.auth);
        match frame {
            ClientFrame::Hello(_) => {
                let challenge = self.conns[&c].challenge;
                self.send(
                    c,
                    ServerFrame::Welcome(Welcome {
                        version: 1,
                        relay_name: BoundedString::new(RELAY).unwrap(),
                        challenge: FixedBytes(challenge),
                        server_time: Timestamp(self.now),
                        idle_timeout_ms: 60_000,
                    }),
                );
            }
            ClientFrame::Register(r) => {
                if !self.check_auth(c, &r.identity, &r.auth) {
                    return self.send(
                        c,
                        err(Some(r.req), ErrorCode::BAD_SIGNATURE, ErrorDetail::None),
                    );
                }
                if self.users.values().any(|u| u.username == r.username) {
                    return self.send(
                        c,
                        err(Some(r.req), ErrorCode::USERNAME_TAKEN, ErrorDetail::None),
                    );
                }
                let user = UserId::from_bytes(self.fresh16());
                let mut d = Device::new(r.identity.clone());
                d.upload(r.prekeys);
                let mut devices = BTreeMap::new();
                devices.insert(DeviceId(1), d);
                self.users.insert(
                    user,
                    UserRec {
                        username: r.username,
                        devices,
                    },
                );
                self.auth_ok(
                    c,
                    r.req,
                    DeviceAddress {
                        user,
                        device: DeviceId(1),
                    },
                );
            }
            ClientFrame::Login(l) => {
                let Some(d) = self
                    .users
                    .get(&l.user)
                    .and_then(|u| u.devices.get(&l.device))
                else {
                    return self.send(
                        c,
                        err(Some(l.req), ErrorCode::UNKNOWN_DEVICE, ErrorDetail::None),
                    );
                };
                let identity = d.identity.clone();
                if !self.check_auth(c, &identity, &l.auth) {
                    return self.send(
                        c,
                        err(Some(l.req), ErrorCode::BAD_SIGNATURE, ErrorDetail::None),
                    );
                }
                self.auth_ok(
                    c,
                    l.req,
                    DeviceAddress {
                        user: l.user,
                        device: l.device,
                    },
                );
            }
            ClientFrame::AddDevice(a) => {
                // The fake relay does not check the approval (spider-crypto
                // has no public way to make one yet).
                if !self.check_auth(c, &a.identity, &a.auth) {
                    return self.send(
                        c,
                        err(Some(a.req), ErrorCode::BAD_SIGNATURE, ErrorDetail::None),
                    );
                }
                let u = self.users.get_mut(&a.user).unwrap();
                let id = DeviceId(u.devices.keys().last().map_or(1, |d| d.0 + 1));
                let mut d = Device::new(a.identity.clone());
                d.upload(a.prekeys);
                u.devices.insert(id, d);
                self.auth_ok(
                    c,
                    a.req,
                    DeviceAddress {
                        user: a.user,
                        device: id,
                    },
                );
            }
            ClientFrame::UploadPreKeys(u) => {
                let me = me.unwrap();
                self.device_mut(me).upload(u.prekeys);
                self.send(c, ServerFrame::Done(Done { req: u.req }));
            }
            ClientFrame::FetchPreKeys(f) => {
                self.fetches += 1;
                let Some(u) = self.users.get_mut(&f.user) else {
                    return self.send(
                        c,
                        err(Some(f.req), ErrorCode::UNKNOWN_USER, ErrorDetail::None),
                    );
                };
                let mut bundles = Vec::new();
                for (id, d) in u.devices.iter_mut() {
                    if f.device.is_some_and(|x| x != *id) {
                        continue;
                    }
                    let (kem, one) = match d.kems.pop_front() {
                        Some(k) => (k, true),
                        None => (d.last_resort.clone().unwrap(), false),
                    };
                    bundles.push(PreKeyBundle {
                        device: *id,
                        identity: d.identity.clone(),
                        signed_prekey: d.signed.clone().unwrap(),
                        kem_prekey: kem,
                        kem_prekey_is_one_time: one,
                        one_time_prekey: d.otks.pop_front(),
                    });
                }
                self.send(
                    c,
                    ServerFrame::PreKeyBundles(PreKeyBundles {
                        req: f.req,
                        user: f.user,
                        bundles: BoundedVec::new(bundles).unwrap(),
                    }),
                );
            }
            ClientFrame::LookupUser(l) => {
                let id = match &l.who {
                    UserRef::Id(u) => self.users.contains_key(u).then_some(*u),
                    UserRef::Name(n) => self.user_by_name(n.as_str()),
                };
                let Some(id) = id else {
                    return self.send(
                        c,
                        err(Some(l.req), ErrorCode::UNKNOWN_USER, ErrorDetail::None),
                    );
                };
                let u = &self.users[&id];
                let devices = u
                    .devices
                    .iter()
                    .map(|(d, rec)| DeviceInfo {
                        device: *d,
                        identity: rec.identity.clone(),
                    })
                    .collect();
                let info = UserInfo {
                    req: l.req,
                    user: id,
                    username: u.username.clone(),
                    devices: BoundedVec::new(devices).unwrap(),
                };
                self.send(c, ServerFrame::UserInfo(info));
            }
            ClientFrame::SendDirect(s) => {
                if self.refuse_sends > 0 {
                    self.refuse_sends -= 1;
                    return self.send(
                        c,
                        err(
                            Some(s.req),
                            ErrorCode::RATE_LIMITED,
                            ErrorDetail::RetryAfter { ms: 500 },
                        ),
                    );
                }
                let me = me.unwrap();
                let Some(u) = self.users.get(&s.to) else {
                    return self.send(
                        c,
                        err(Some(s.req), ErrorCode::UNKNOWN_RECIPIENT, ErrorDetail::None),
                    );
                };
                let want: Vec<DeviceId> = u
                    .devices
                    .keys()
                    .copied()
                    .filter(|d| !(s.to == me.user && *d == me.device))
                    .collect();
                let got: Vec<DeviceId> = s.copies.iter().map(|c| c.device).collect();
                let missing: Vec<DeviceId> =
                    want.iter().copied().filter(|d| !got.contains(d)).collect();
                let extra: Vec<DeviceId> =
                    got.iter().copied().filter(|d| !want.contains(d)).collect();
                if !missing.is_empty() || !extra.is_empty() {
                    return self.send(
                        c,
                        err(
                            Some(s.req),
                            ErrorCode::MISMATCHED_DEVICES,
                            ErrorDetail::Devices {
                                missing: BoundedVec::new(missing).unwrap(),
                                extra: BoundedVec::new(extra).unwrap(),
                            },
                        ),
                    );
                }
                for copy in s.copies.iter() {
                    let env = Envelope {
                        message_id: s.message_id,
                        from: me,
                        sent_at: Timestamp(self.now),
                        body: EnvelopeBody::Direct {
                            ciphertext: copy.ciphertext.clone(),
                        },
                    };
                    self.store(
                        DeviceAddress {
                            user: s.to,
                            device: copy.device,
                        },
                        env,
                    );
                }
                self.send(
                    c,
                    ServerFrame::Sent(Sent {
                        req: s.req,
                        message_id: s.message_id,
                        sent_at: Timestamp(self.now),
                    }),
                );
            }
            ClientFrame::SendRoom(s) => {
                let me = me.unwrap();
                let Some(r) = self.rooms.get(&s.room) else {
                    return self.send(
                        c,
                        err(Some(s.req), ErrorCode::UNKNOWN_ROOM, ErrorDetail::None),
                    );
                };
                if !r.members.contains(&me.user) {
                    return self.send(
                        c,
                        err(Some(s.req), ErrorCode::NOT_A_MEMBER, ErrorDetail::None),
                    );
                }
                // As the relay: the sender's view of the room must be current.
                if s.epoch != r.epoch {
                    let current = r.epoch;
                    self.room_sends_refused += 1;
                    return self.send(
                        c,
                        err(
                            Some(s.req),
                            ErrorCode::STALE_EPOCH,
                            ErrorDetail::Epoch { current },
                        ),
                    );
                }
                let member_devices = r.members.iter().flat_map(|u| {
                    self.users[u].devices.keys().map(|d| DeviceAddress {
                        user: *u,
                        device: *d,
                    })
                });
                if room_devices_digest(member_devices.filter(|a| *a != me)) != s.devices {
                    self.room_sends_refused += 1;
                    return self.send(
                        c,
                        err(
                            Some(s.req),
                            ErrorCode::MISMATCHED_DEVICES,
                            ErrorDetail::None,
                        ),
                    );
                }
                let targets: Vec<DeviceAddress> = r
                    .members
                    .iter()
                    .chain(self.leak_room_to.iter().filter(|u| !r.members.contains(u)))
                    .flat_map(|u| {
                        self.users[u].devices.keys().map(|d| DeviceAddress {
                            user: *u,
                            device: *d,
                        })
                    })
                    .filter(|a| *a != me)
                    .collect();
                for t in targets {
                    let env = Envelope {
                        message_id: s.message_id,
                        from: me,
                        sent_at: Timestamp(self.now),
                        body: EnvelopeBody::Room {
                            room: s.room,
                            ciphertext: s.ciphertext.clone(),
                        },
                    };
                    self.store(t, env);
                }
                self.send(
                    c,
                    ServerFrame::Sent(Sent {
                        req: s.req,
                        message_id: s.message_id,
                        sent_at: Timestamp(self.now),
                    }),
                );
            }
            ClientFrame::Ack(a) => {
                let me = me.unwrap();
                self.device_mut(me).mailbox.retain(|s, _| *s > a.up_to.0);
            }
            ClientFrame::ChangeRoom(ch) => {
                let me = me.unwrap();
                let change = ch.change.change.clone();
                let room = if let RoomAction::Create { name } = &change.action {
                    let id = RoomId::from_bytes(self.fresh16());
                    self.rooms.insert(
                        id,
                        RoomRec {
                            name: name.clone(),
                            epoch: 0,
                            members: vec![me.user],
                            invited: vec![],
                        },
                    );
                    id
                } else {
                    let Some(r) = self.rooms.get(&change.room) else {
                        return self.send(
                            c,
                            err(Some(ch.req), ErrorCode::UNKNOWN_ROOM, ErrorDetail::None),
                        );
                    };
                    if r.epoch != change.epoch {
                        let current = r.epoch;
                        return self.send(
                            c,
                            err(
                                Some(ch.req),
                                ErrorCode::STALE_EPOCH,
                                ErrorDetail::Epoch { current },
                            ),
                        );
                    }
                    change.room
                };
                let before: Vec<UserId> = self.rooms[&room].members.clone();
                let r = self.rooms.get_mut(&room).unwrap();
                let mut notify: Vec<UserId> = before.clone();
                match &change.action {
                    RoomAction::Create { .. } => {}
                    RoomAction::Invite { user } => {
                        r.invited.push(*user);
                        notify.push(*user);
                    }
                    RoomAction::Accept => {
                        r.invited.retain(|u| *u != me.user);
                        r.members.push(me.user);
                        notify.push(me.user);
                    }
                    RoomAction::Kick { user } => r.members.retain(|u| u != user),
                    RoomAction::Leave => r.members.retain(|u| *u != me.user),
                    _ => {}
                }
                r.epoch += 1;
                let mut signed = ch.change.clone();
                signed.change.room = room;
                notify.sort();
                notify.dedup();
                let targets: Vec<DeviceAddress> = notify
                    .iter()
                    .flat_map(|u| {
                        self.users[u].devices.keys().map(|d| DeviceAddress {
                            user: *u,
                            device: *d,
                        })
                    })
                    .filter(|a| *a != me)
                    .collect();
                for t in targets {
                    let id = MessageId::from_bytes(self.fresh16());
                    let env = Envelope {
                        message_id: id,
                        from: me,
                        sent_at: Timestamp(self.now),
                        body: EnvelopeBody::RoomChange(signed.clone()),
                    };
                    self.store(t, env);
                }
                let info = self.room_info(ch.req, room);
                self.send(c, info);
            }
            ClientFrame::GetRoom(g) => {
                let RoomRef::Id(room) = g.room else {
                    unreachable!()
                };
                let info = self.room_info(g.req, room);
                self.send(c, info);
            }
            ClientFrame::Ping(p) => self.send(c, ServerFrame::Pong(Pong { nonce: p.nonce })),
            ClientFrame::Pong(_) => {}
            ClientFrame::SendEphemeral(e) => {
                let me = me.unwrap();
                let EphemeralTarget::User { user, copies } = e.to else {
                    return;
                };
                for copy in copies.iter() {
                    let to = DeviceAddress {
                        user,
                        device: copy.device,
                    };
                    let online: Vec<usize> = self
                        .conns
                        .iter()
                        .filter(|(_, c)| c.auth == Some(to))
                        .map(|(i, _)| *i)
                        .collect();
                    for c in online {
                        self.send(
                            c,
                            ServerFrame::Ephemeral(Ephemeral {
                                from: me,
                                room: None,
                                payload: copy.payload.clone(),
                            }),
                        );
                    }
                }
            }
            // Contacts (presence subscriptions) are taken and not kept.
            ClientFrame::EditContact(e) => self.send(c, ServerFrame::Done(Done { req: e.req })),
            other => panic!("fake relay does not handle {:?}", other.kind()),
        }
    }
}

pub struct Client {
    pub engine: Option<Engine<MemoryStore>>,
    pub online: bool,
    pub events: Vec<Event>,
    /// Drop the next `Sent` for this client and cut its connection.
    pub lose_next_sent: bool,
    seed: u8,
}

impl Client {
    pub fn engine(&mut self) -> &mut Engine<MemoryStore> {
        self.engine.as_mut().unwrap()
    }
}

pub struct World {
    pub relay: FakeRelay,
    pub clients: Vec<Client>,
    pub now: u64,
    seed: u8,
}

pub fn rng(seed: u8) -> BoxRng {
    Box::new(ChaCha20Rng::from_seed([seed; 32]))
}

impl World {
    pub fn new() -> Self {
        Self {
            relay: FakeRelay::new(),
            clients: Vec::new(),
            now: 1_700_000_000_000,
            seed: 1,
        }
    }

    fn next_seed(&mut self) -> u8 {
        self.seed = self.seed.wrapping_add(2);
        self.seed
    }

    pub fn add_with_account(&mut self, account: Account) -> usize {
        let s = self.next_seed();
        let profile = Profile::in_memory(account, rng(s)).unwrap();
        let engine = Engine::new(profile, rng(s + 1));
        self.clients.push(Client {
            engine: Some(engine),
            online: false,
            events: Vec::new(),
            lose_next_sent: false,
            seed: s,
        });
        self.clients.len() - 1
    }

    /// A new client that registers `name` and comes online.
    pub fn add(&mut self, name: &str) -> usize {
        let i = self.add_with_account(Account {
            relay_name: RELAY.into(),
            username: Username::parse(name).unwrap(),
            user: None,
            device: None,
        });
        self.connect(i);
        self.drive();
        i
    }

    pub fn connect(&mut self, i: usize) {
        let mut exporter = [0u8; 32];
        exporter[0] = i as u8;
        exporter[1] = (self.now % 251) as u8;
        self.relay.open(i, exporter);
        let now = self.now;
        self.clients[i].engine().connect(exporter, now);
        self.clients[i].online = true;
    }

    pub fn disconnect(&mut self, i: usize) {
        self.relay.close(i);
        let now = self.now;
        self.clients[i].engine().disconnected(now);
        self.clients[i].online = false;
    }

    /// Runs until no frame moves.
    pub fn drive(&mut self) {
        for _round in 0..10_000 {
            self.now += 1;
            self.relay.now = self.now;
            let mut moved = false;
            for i in 0..self.clients.len() {
                if !self.clients[i].online {
                    // Still collect events.
                    self.collect(i);
                    continue;
                }
                while let Some(f) = self.clients[i].engine().poll_transmit() {
                    moved = true;
                    self.relay.handle(i, f);
                }
                let frames: Vec<ServerFrame> = self
                    .relay
                    .out
                    .get_mut(&i)
                    .map(|q| q.drain(..).collect())
                    .unwrap_or_default();
                for f in frames {
                    moved = true;
                    if self.clients[i].lose_next_sent && matches!(f, ServerFrame::Sent(_)) {
                        self.clients[i].lose_next_sent = false;
                        self.disconnect(i);
                        break;
                    }
                    let now = self.now;
                    self.clients[i].engine().handle_frame(f, now);
                }
                self.collect(i);
            }
            if !moved {
                return;
            }
        }
        panic!("world did not settle");
    }

    fn collect(&mut self, i: usize) {
        while let Some(e) = self.clients[i].engine().poll_event() {
            if let Event::Error(err) = &e {
                eprintln!("client {i}: error event: {err:?}");
            }
            self.clients[i].events.push(e);
        }
    }

    pub fn send_text(
        &mut self,
        i: usize,
        to: impl Into<spider_client::engine::Recipient>,
        text: &str,
    ) -> MessageId {
        let now = self.now;
        self.clients[i].engine().send_text(to, text, now).unwrap()
    }

    pub fn send_room(&mut self, i: usize, room: RoomId, text: &str) -> MessageId {
        let now = self.now;
        self.clients[i]
            .engine()
            .send_room_text(room, text, now)
            .unwrap()
    }

    /// Every frame client `i` sends next, without driving the world.
    pub fn outgoing(&mut self, i: usize) -> Vec<ClientFrame> {
        let mut v = Vec::new();
        while let Some(f) = self.clients[i].engine().poll_transmit() {
            v.push(f);
        }
        v
    }

    pub fn user(&self, name: &str) -> UserId {
        self.relay.user_by_name(name).unwrap()
    }

    /// Texts received by client `i`, in order.
    pub fn texts(&self, i: usize) -> Vec<String> {
        self.clients[i]
            .events
            .iter()
            .filter_map(|e| match e {
                Event::MessageReceived { content, .. } => match &content.body {
                    spider_client::content::Body::Text { body } => Some(body.clone()),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    pub fn errors(&self, i: usize) -> usize {
        self.clients[i]
            .events
            .iter()
            .filter(|e| matches!(e, Event::Error(_)))
            .count()
    }

    /// Restarts client `i` from its profile store (closing and reopening).
    pub fn restart(&mut self, i: usize) {
        if self.clients[i].online {
            self.disconnect(i);
        }
        let engine = self.clients[i].engine.take().unwrap();
        let store = engine.into_profile().close().unwrap();
        let s = self.next_seed();
        let profile =
            Profile::open(store, &spider_client::keystore::Passphrase::None, rng(s)).unwrap();
        self.clients[i].engine = Some(Engine::new(profile, rng(s + 1)));
        self.clients[i].seed = s;
    }
}

#[allow(unused)]
fn _unused(_: BoundedBytes<1>) {}
