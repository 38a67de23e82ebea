//! The sans-I/O client engine: everything a client does between the bytes
//! of the transport and the events an application shows, with no socket and
//! no clock of its own (quinn-proto's `Connection` style).
//!
//! # Driving it
//!
//! ```text
//!   transport up ──► connect(exporter, now)          (queues Hello)
//!   frame in     ──► handle_frame(frame, now)
//!   timer fires  ──► handle_timeout(now)             (when: poll_timeout())
//!   user command ──► send_text / send_room_text / create_room / invite / ...
//!   after each   ──► poll_transmit() until None      (frames to write)
//!                ──► poll_event() until None         (for the application)
//!   transport down ► disconnected(now)
//! ```
//!
//! Time is milliseconds since the Unix epoch, given by the driver.
//!
//! # What it guarantees
//!
//! - **Outbox.** Every message is written to the profile before anything is
//!   sent, and re-sent with the same message id after every reconnect until
//!   the relay answers `Sent`. The relay stores a message id once per device;
//!   the receiver also drops ids it has handled (`seen/` records), so a
//!   retransmission is never shown twice.
//! - **Order.** Outgoing messages are sent one at a time, in the order they
//!   were written; incoming envelopes are handled in mailbox order and acked
//!   cumulatively once handled and persisted.
//! - **Limits.** A message the relay refuses with `RATE_LIMITED` or
//!   `PREKEY_FETCH_LIMITED` is not failed: it waits the relay's
//!   `RetryAfter` (50 ms to 60 s) at the head of the queue and is sent
//!   again, whole ([`Engine::poll_timeout`] says when).
//! - **Devices.** A 1:1 message goes to every device of the peer and to our
//!   own other devices; `MISMATCHED_DEVICES` refreshes the device list and
//!   tries again.
//! - **Rooms.** Before a room message, our Sender Key goes over 1:1 sessions
//!   to every member device that lacks it; after any member leaves or is
//!   removed, the Sender Key is rotated first, so removed members cannot read
//!   what follows.
//! - **Identity changes** are accepted (trust on first use, then the new key
//!   replaces the old) and surface as [`Event::IdentityChanged`].
//! - **Room requests** (create, invite, accept, decline, join by link,
//!   leave, kick, links) each get exactly one [`Event::RoomRequestDone`]
//!   while the connection lasts.
//!
//! Invite links, leaving, profiles and presence are in `engine/social.rs`
//! (see [`crate::social`] for their formats and records).

use core::cell::RefCell;
use core::fmt;
use std::collections::{HashMap, VecDeque};

use spider_crypto::keys::IdentityPublicKey;
use spider_crypto::sender_key::{
    DistributionId, OwnSenderKey, SenderKeyDistributionMessage, SenderKeyMessage, SenderKeyRecord,
    SenderKeyStore,
};
use spider_crypto::session::{Message, decrypt_from, encrypt_to, start_session};
use spider_crypto::store::IdentityStore;
use spider_protocol::ClientFrame;
use spider_protocol::ServerFrame;
use spider_protocol::bytes::{BoundedBytes, BoundedVec, FixedBytes};
use spider_protocol::error::{ErrorCode, ErrorDetail};
use spider_protocol::ids::{
    DeviceAddress, DeviceId, LinkToken, MessageId, RequestId, RoomId, Seq, Timestamp, UserId,
};
use spider_protocol::message::{
    Ack, AddDevice, ChangeRoom, DeviceCiphertext, EnvelopeBody, EphemeralCopy, EphemeralTarget,
    ErrorFrame, FetchPreKeys, GetRoom, Login, LookupUser, Ping, Pong, Presence, Register,
    RoomAction, RoomChange, RoomInfo, RoomRef, SendDirect, SendEphemeral, SendRoom,
    SignedRoomChange, UploadPreKeys, UserRef, room_devices_digest,
};
use spider_protocol::name::{RoomName, Username};
use spider_protocol::version;
use zeroize::Zeroizing;

use crate::content::{Body, Content, ContentError, Header, ReceiptKind};
use crate::crypto_store::{
    SplitProfile, bundle_from_wire, crypto_address, identity_from_wire, identity_to_wire,
    refill_plan,
};
use crate::keystore::KeystoreError;
use crate::profile::{BoxRng, Contact, HistoryEntry, OutboxEntry, Profile, RoomState, Target};
use crate::social::ContactPresence;
use crate::store::ProfileStore;

mod social;

/// Agent string sent in the hello.
pub const AGENT: &str = concat!("spider-client/", env!("CARGO_PKG_VERSION"));

/// Whom a 1:1 message goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recipient {
    /// An account by id.
    User(UserId),
    /// An account by name (looked up on the relay).
    Name(Username),
}

impl From<UserId> for Recipient {
    fn from(u: UserId) -> Self {
        Self::User(u)
    }
}

impl From<Username> for Recipient {
    fn from(u: Username) -> Self {
        Self::Name(u)
    }
}

/// Something the application should know.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Authenticated: this device is `device` of `user`.
    Connected {
        /// The account.
        user: UserId,
        /// This device.
        device: DeviceId,
    },
    /// Every envelope queued while we were away has been delivered.
    CaughtUp,
    /// The connection is gone (the driver said so).
    Disconnected,
    /// A message to show.
    MessageReceived {
        /// Its id.
        id: MessageId,
        /// The sending device.
        from: DeviceAddress,
        /// The room, for a room message.
        room: Option<RoomId>,
        /// What it says (boxed: it is by far the largest event).
        content: Box<Content>,
        /// The sender's clock.
        sent_at: Timestamp,
    },
    /// The relay stored one of our messages: it will reach every device.
    Sent {
        /// The message.
        id: MessageId,
    },
    /// A delivery or read receipt.
    Receipt {
        /// Who sent the receipt.
        from: UserId,
        /// Which receipt.
        kind: ReceiptKind,
        /// For which of our messages.
        ids: Vec<MessageId>,
    },
    /// A typing notice.
    Typing {
        /// Who.
        from: UserId,
        /// Started or stopped.
        started: bool,
    },
    /// A device's identity key changed: verify the safety number again.
    IdentityChanged {
        /// The account.
        user: UserId,
        /// The device.
        device: DeviceId,
    },
    /// A room's membership or our place in it changed.
    RoomChanged {
        /// The room.
        room: RoomId,
    },
    /// A contact's presence changed.
    Presence {
        /// Whose.
        user: UserId,
        /// Now.
        presence: Presence,
    },
    /// An account was looked up (a first message from someone unknown, or
    /// a send by name): its name and devices are now in the profile.
    ContactUpdated {
        /// The account.
        user: UserId,
        /// Its name.
        username: Username,
    },
    /// The relay answered one of our own room requests (create, invite,
    /// accept, decline, join by link, leave, kick, links): exactly one per
    /// request made while connected. On success an [`Event::RoomChanged`]
    /// (or [`Event::LinkCreated`]) comes too.
    RoomRequestDone {
        /// The room; `None` when refused before it was known (a new room's
        /// name taken, a dead invite link).
        room: Option<RoomId>,
        /// What we asked for.
        action: RoomAction,
        /// Done, or the relay's refusal ([`ClientError::Relay`]).
        result: Result<(), ClientError>,
    },
    /// An invite link was made ([`Engine::create_link`]).
    LinkCreated {
        /// The room.
        room: RoomId,
        /// The link's secret: see [`crate::social::invite_link`].
        token: LinkToken,
    },
    /// The relay's list of our contacts with their presence
    /// ([`Engine::list_contacts`]).
    ContactsListed {
        /// Each contact.
        contacts: Vec<ContactPresence>,
    },
    /// A contact gave us their profile key; their profile is being fetched
    /// ([`Event::ProfileFetched`] follows).
    ProfileKeyReceived {
        /// Whose.
        user: UserId,
    },
    /// A contact's profile was read (after their key arrived, or
    /// [`Engine::refresh_profiles`]).
    ProfileFetched {
        /// Whose.
        user: UserId,
        /// Their display name (sanitized), `None` if they set none.
        display_name: Option<String>,
    },
    /// The relay answered [`Engine::set_display_name`]: our profile is
    /// stored, or the refusal.
    ProfileSaved {
        /// Stored, or [`ClientError::Relay`].
        result: Result<(), ClientError>,
    },
    /// The relay is shutting down: reconnect after the delay.
    Drain {
        /// Milliseconds to wait.
        reconnect_after_ms: u32,
    },
    /// Something failed; the engine goes on.
    Error(ClientError),
    /// An attachment's transfer moved on, finished or failed (see
    /// [`crate::attachments`]).
    Attachment(crate::attachments::AttachmentEvent),
}

/// Why a command or an incoming frame failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The profile failed.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// The relay refused a request.
    #[error("relay refused a request: {code}{}", relay_suffix(.text))]
    Relay {
        /// Its code.
        code: ErrorCode,
        /// The message concerned, if any.
        message: Option<MessageId>,
        /// The relay's human-readable explanation (may be empty).
        text: String,
    },
    /// An incoming message did not decrypt; it is dropped.
    #[error("could not decrypt an incoming message: {reason}")]
    Decrypt {
        /// The sending device.
        from: DeviceAddress,
        /// Why (no key material or user data in it).
        reason: String,
    },
    /// A session with a device could not be started.
    #[error("could not start a session: {0}")]
    Session(String),
    /// Encrypting failed.
    #[error("could not encrypt: {0}")]
    Encrypt(String),
    /// Content did not decode, or a field was too long.
    #[error(transparent)]
    Content(#[from] ContentError),
    /// The message's inner header disagrees with its envelope.
    #[error("message header does not match its envelope")]
    HeaderMismatch,
    /// A room message arrived from a device whose Sender Key we lack.
    #[error("no sender key for this room member")]
    NoSenderKey,
    /// A Sender Key distribution arrived outside a 1:1 session.
    #[error("sender key distribution refused")]
    DistributionRefused,
    /// A room change whose signature does not verify; it is ignored.
    #[error("room change with a bad signature")]
    BadRoomChange,
    /// No such room here.
    #[error("unknown room")]
    UnknownRoom,
    /// A contact's profile did not decrypt with the key they gave us.
    #[error("a contact's profile could not be read")]
    BadProfile,
    /// A display name over [`crate::social::MAX_DISPLAY_NAME_LEN`] bytes.
    #[error("display name too long")]
    NameTooLong,
    /// The relay's welcome names another relay than the profile's.
    #[error("relay name differs from the profile's")]
    WrongRelay,
    /// The transport failed (the driver reconnects).
    #[error("connection: {0}")]
    Transport(String),
    /// The relay sent something the protocol does not allow here.
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
}

/// ": TEXT" for a relay error with an explanation, nothing without.
fn relay_suffix(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LegState {
    Idle,
    Waiting,
    Fetching(usize),
    Done,
}

/// One account a direct job sends to.
#[derive(Debug)]
struct Leg {
    target: Target,
    state: LegState,
    /// Devices the sent copies went to.
    devices: Vec<DeviceId>,
    /// A device-list refresh was done for this leg (MISMATCHED_DEVICES).
    refresh: bool,
}

#[derive(Debug)]
enum RoomPhase {
    Idle,
    Info,
    Distributing(Vec<MessageId>),
    Sending,
}

#[derive(Debug)]
enum JobKind {
    Direct(Vec<Leg>),
    Room(RoomId, RoomPhase),
}

#[derive(Debug)]
struct Job {
    entry: OutboxEntry,
    kind: JobKind,
    /// For Sender Key distributions: the room job waiting for it.
    parent: Option<MessageId>,
    /// Room messages: times the relay refused it because our view of the
    /// room was stale (`STALE_EPOCH`, `MISMATCHED_DEVICES`).
    stale: u8,
}

#[derive(Debug)]
enum Pending {
    Auth,
    Quiet,
    OwnLookup,
    /// The name of someone who wrote to us without being a contact.
    NameLookup(UserId),
    /// An account the application asked about by name.
    UserLookup,
    Lookup {
        job: MessageId,
        leg: usize,
    },
    Fetch {
        job: MessageId,
        leg: usize,
        device: DeviceId,
    },
    Send {
        job: MessageId,
        leg: usize,
    },
    RoomInfo {
        job: Option<MessageId>,
    },
    SendRoom {
        job: MessageId,
    },
    /// A request of a message that was given up or started again: its
    /// answer is not wanted, but a prekey bundle it brings still starts the
    /// session (its one-time key is spent either way).
    Dropped {
        fetched: Option<DeviceId>,
    },
    Change {
        change: RoomChange,
        retried: bool,
    },
    /// Links, contacts, profiles: see `engine/social.rs`.
    Social(social::SocialPending),
}

enum Conn {
    Disconnected,
    AwaitWelcome(Zeroizing<[u8; 32]>),
    Authenticating,
    Ready,
}

/// The client state machine. See the module doc for the call order.
pub struct Engine<S: ProfileStore> {
    profile: Profile<S>,
    rng: BoxRng,
    conn: Conn,
    next_req: u32,
    pending: HashMap<RequestId, Pending>,
    transmit: VecDeque<ClientFrame>,
    events: VecDeque<Event>,
    ack_pending: Option<Seq>,
    queue: VecDeque<MessageId>,
    jobs: HashMap<MessageId, Job>,
    approval: Option<(DeviceId, [u8; 64])>,
    ping_every_ms: u64,
    last_activity_ms: u64,
    next_nonce: u64,
    /// The last outbox entry's `created_ms`: entries get strictly increasing
    /// stamps, because the outbox is reloaded in stamp order on every login
    /// and two messages written in the same millisecond must keep their order.
    last_outbox_ms: u64,
    /// The relay said "too many, wait" (`RATE_LIMITED`, `PREKEY_FETCH_LIMITED`)
    /// about the message at the head of the queue: it is tried again, whole,
    /// at this time, and nothing behind it goes first.
    retry_at: Option<u64>,
}

/// The wait after a limit refusal that names none.
const RETRY_DEFAULT_MS: u64 = 1_000;
/// A room message the relay refuses for a stale view of the room is read
/// again, handed out and sent again at once this many times; after that it
/// waits [`RETRY_DEFAULT_MS`] between rounds (the room is churning).
const STALE_ROOM_ROUNDS: u8 = 3;

/// Bounds on a limit's wait: not a busy loop, and not longer than a relay
/// restart's worth.
const RETRY_MIN_MS: u64 = 50;
const RETRY_MAX_MS: u64 = 60_000;

impl<S: ProfileStore> fmt::Debug for Engine<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("pending", &self.pending.len())
            .field("queue", &self.queue.len())
            .finish_non_exhaustive()
    }
}

fn now_secs(now_ms: u64) -> u64 {
    now_ms / 1000
}

impl<S: ProfileStore> Engine<S> {
    /// An engine over an open profile; `rng` feeds the protocol (message ids,
    /// handshakes), separately from the profile's own.
    pub fn new(profile: Profile<S>, rng: BoxRng) -> Self {
        Self {
            profile,
            rng,
            conn: Conn::Disconnected,
            next_req: 1,
            pending: HashMap::new(),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            ack_pending: None,
            queue: VecDeque::new(),
            jobs: HashMap::new(),
            approval: None,
            ping_every_ms: 20_000,
            last_activity_ms: 0,
            next_nonce: 1,
            last_outbox_ms: 0,
            retry_at: None,
        }
    }

    /// A creation stamp for a new outbox entry: `now`, or one more than the
    /// last stamp (this run's, or the newest entry already in the outbox).
    fn outbox_stamp(&mut self, now: u64) -> Result<u64, ClientError> {
        if self.last_outbox_ms == 0 {
            self.last_outbox_ms = self
                .profile
                .outbox()?
                .iter()
                .map(|e| e.created_ms)
                .max()
                .unwrap_or(0);
        }
        self.last_outbox_ms = now.max(self.last_outbox_ms.saturating_add(1));
        Ok(self.last_outbox_ms)
    }

    /// The profile (history, contacts, rooms...).
    pub fn profile(&self) -> &Profile<S> {
        &self.profile
    }

    /// Closes the engine and gives the profile back.
    pub fn into_profile(self) -> Profile<S> {
        self.profile
    }

    /// Whether the engine is authenticated on a connection.
    pub fn is_ready(&self) -> bool {
        matches!(self.conn, Conn::Ready)
    }

    /// Whether the engine gave up on this connection (authentication
    /// refused, a relay of another name): the driver should close it.
    pub fn wants_close(&self) -> bool {
        matches!(self.conn, Conn::Disconnected)
    }

    /// For a device added to an existing account (the profile's account has
    /// a user but no device): the approving device and its signature, which
    /// the next connection sends in `AddDevice`.
    pub fn set_device_approval(&mut self, approver: DeviceId, approval: [u8; 64]) {
        self.approval = Some((approver, approval));
    }

    // ------------------------------------------------------------ driver side

    /// A transport is up; `exporter` is its TLS keying material (label
    /// `EXPORTER-spider-auth`, no context, 32 bytes). Queues the hello.
    pub fn connect(&mut self, exporter: [u8; 32], now: u64) {
        self.reset_connection();
        self.conn = Conn::AwaitWelcome(Zeroizing::new(exporter));
        self.last_activity_ms = now;
        self.transmit
            .push_back(ClientFrame::Hello(version::hello(AGENT)));
    }

    /// The transport is gone. Requests in flight are forgotten; the outbox
    /// resends on the next connection.
    pub fn disconnected(&mut self, _now: u64) {
        self.reset_connection();
        self.events.push_back(Event::Disconnected);
    }

    fn reset_connection(&mut self) {
        self.conn = Conn::Disconnected;
        self.next_req = 1;
        self.pending.clear();
        self.transmit.clear();
        self.ack_pending = None;
        self.queue.clear();
        self.jobs.clear();
        self.retry_at = None;
    }

    /// The next frame to send, if any.
    pub fn poll_transmit(&mut self) -> Option<ClientFrame> {
        if let Some(f) = self.transmit.pop_front() {
            return Some(f);
        }
        // Acks go out once nothing else is queued: one cumulative ack covers
        // a whole batch of deliveries.
        let seq = self.ack_pending.take()?;
        if let Err(e) = self.profile.set_last_acked(seq) {
            self.events.push_back(Event::Error(e.into()));
        }
        Some(ClientFrame::Ack(Ack { up_to: seq }))
    }

    /// The next event for the application, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Queues an event from the driver's side (attachments), in order with
    /// the engine's own.
    pub(crate) fn push_event(&mut self, e: Event) {
        self.events.push_back(e);
    }

    /// When [`Self::handle_timeout`] wants to be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        match self.conn {
            Conn::Ready => {
                let ping = self.last_activity_ms.saturating_add(self.ping_every_ms);
                Some(self.retry_at.map_or(ping, |r| r.min(ping)))
            }
            _ => None,
        }
    }

    /// Time passed: pings when the connection has been quiet for a third of
    /// the relay's idle timeout.
    pub fn handle_timeout(&mut self, now: u64) {
        if matches!(self.conn, Conn::Ready) && self.retry_at.is_some_and(|t| now >= t) {
            self.retry_at = None;
            self.pump(now);
        }
        if matches!(self.conn, Conn::Ready) {
            // A device that stays connected for weeks still rotates its
            // signed prekey on schedule.
            if let Err(e) = self.rotate_if_due(now) {
                self.events.push_back(Event::Error(e));
            }
        }
        if matches!(self.conn, Conn::Ready)
            && now >= self.last_activity_ms.saturating_add(self.ping_every_ms)
        {
            let nonce = self.next_nonce;
            self.next_nonce = self.next_nonce.wrapping_add(1);
            self.transmit.push_back(ClientFrame::Ping(Ping { nonce }));
            self.last_activity_ms = now;
        }
    }

    /// A frame from the relay.
    pub fn handle_frame(&mut self, frame: ServerFrame, now: u64) {
        self.last_activity_ms = now;
        if let Err(e) = self.dispatch(frame, now) {
            self.events.push_back(Event::Error(e));
        }
    }

    fn req(&mut self, p: Pending) -> RequestId {
        let r = RequestId(self.next_req);
        self.next_req = self.next_req.wrapping_add(1);
        self.pending.insert(r, p);
        r
    }

    fn me(&self) -> Result<(UserId, DeviceId), ClientError> {
        let a = self.profile.account()?;
        match (a.user, a.device) {
            (Some(u), Some(d)) => Ok((u, d)),
            _ => Err(ClientError::Protocol("not registered")),
        }
    }

    fn dispatch(&mut self, frame: ServerFrame, now: u64) -> Result<(), ClientError> {
        match frame {
            ServerFrame::Welcome(w) => {
                let Conn::AwaitWelcome(exporter) = &self.conn else {
                    return Err(ClientError::Protocol("unexpected welcome"));
                };
                let exporter = exporter.clone();
                self.ping_every_ms = u64::from(w.idle_timeout_ms / 3).max(1000);
                self.authenticate(w.relay_name.as_str(), &exporter, &w.challenge.0, now)
            }
            ServerFrame::AuthOk(ok) => {
                if !matches!(self.pending.remove(&ok.req), Some(Pending::Auth)) {
                    return Err(ClientError::Protocol("unexpected auth-ok"));
                }
                let mut account = self.profile.account()?;
                account.user = Some(ok.user);
                account.device = Some(ok.device);
                account.username = ok.username.clone();
                self.profile.set_account(&account)?;
                self.profile.flush()?;
                self.conn = Conn::Ready;
                self.events.push_back(Event::Connected {
                    user: ok.user,
                    device: ok.device,
                });
                self.refill(Some(ok.prekeys), now)?;
                let r = self.req(Pending::OwnLookup);
                self.transmit.push_back(ClientFrame::LookupUser(LookupUser {
                    req: r,
                    who: UserRef::Id(ok.user),
                }));
                self.profile.prune_seen(now)?;
                self.social_ready()?;
                for e in self.profile.outbox()? {
                    self.enqueue(e, None);
                }
                self.pump(now);
                Ok(())
            }
            ServerFrame::Error(e) => self.handle_error(e, now),
            ServerFrame::Done(d) => match self.pending.remove(&d.req) {
                // Leave and decline are answered with Done, not RoomInfo.
                Some(Pending::Change { change, .. }) => self.change_applied(&change, None),
                Some(Pending::Social(p)) => self.social_done(p),
                _ => Ok(()),
            },
            ServerFrame::PreKeysLow(low) => self.refill(Some(low.remaining), now),
            ServerFrame::UserInfo(info) => {
                let contact = Contact {
                    user: info.user,
                    username: info.username.clone(),
                    devices: info.devices.iter().map(|d| d.device).collect(),
                };
                self.profile.save_contact(&contact)?;
                for d in info.devices.iter() {
                    self.note_identity(info.user, d.device, &d.identity)?;
                }
                self.events.push_back(Event::ContactUpdated {
                    user: info.user,
                    username: info.username.clone(),
                });
                match self.pending.remove(&info.req) {
                    Some(Pending::Lookup { job, leg }) => {
                        if let Some(Job {
                            kind: JobKind::Direct(legs),
                            ..
                        }) = self.jobs.get_mut(&job)
                            && let Some(l) = legs.get_mut(leg)
                        {
                            l.target = Target::User(info.user);
                            l.state = LegState::Idle;
                        }
                        self.resolve_name(job, info.user)?;
                        self.advance(job, now);
                    }
                    Some(
                        Pending::OwnLookup
                        | Pending::NameLookup(_)
                        | Pending::UserLookup
                        | Pending::Dropped { .. },
                    )
                    | None => {}
                    Some(_) => return Err(ClientError::Protocol("mismatched reply")),
                }
                self.user_learned(info.user, now)
            }
            ServerFrame::PreKeyBundles(b) => {
                let (job, leg, device) = match self.pending.remove(&b.req) {
                    Some(Pending::Fetch { job, leg, device }) => (job, leg, device),
                    Some(Pending::Dropped {
                        fetched: Some(device),
                    }) => {
                        // The message that asked is gone (given up or
                        // started again); the session is still ours.
                        let have = self.profile.session_devices(&b.user)?;
                        if !have.contains(&device) {
                            for bundle in b.bundles.iter().filter(|x| x.device == device) {
                                self.start_session_with(b.user, bundle)?;
                            }
                        }
                        return Ok(());
                    }
                    _ => return Err(ClientError::Protocol("unexpected bundles")),
                };
                if !b.bundles.iter().any(|x| x.device == device) {
                    // The device is gone: forget it, or the next attempt
                    // would ask for it again, forever.
                    if let Some(mut c) = self.profile.contact(&b.user)? {
                        c.devices.retain(|d| *d != device);
                        self.profile.save_contact(&c)?;
                    }
                }
                for bundle in b.bundles.iter().filter(|x| x.device == device) {
                    if let Err(e) = self.start_session_with(b.user, bundle) {
                        // A bundle that does not verify would be fetched
                        // (and a one-time key spent) on every retry: give
                        // the message up instead.
                        let top = self.top_of(job);
                        self.drop_job_tree(top);
                        self.profile.remove_outbox(&top)?;
                        return Err(e);
                    }
                }
                let mut ready = false;
                if let Some(Job {
                    kind: JobKind::Direct(legs),
                    ..
                }) = self.jobs.get_mut(&job)
                    && let Some(l) = legs.get_mut(leg)
                    && let LegState::Fetching(n) = l.state
                {
                    if n <= 1 {
                        l.state = LegState::Idle;
                        ready = true;
                    } else {
                        l.state = LegState::Fetching(n - 1);
                    }
                }
                if ready {
                    self.advance(job, now);
                }
                Ok(())
            }
            ServerFrame::Sent(s) => {
                match self.pending.remove(&s.req) {
                    Some(Pending::Send { job, leg }) => {
                        if let Some(Job {
                            kind: JobKind::Direct(legs),
                            ..
                        }) = self.jobs.get_mut(&job)
                            && let Some(l) = legs.get_mut(leg)
                        {
                            l.state = LegState::Done;
                        }
                        self.advance(job, now);
                    }
                    Some(Pending::SendRoom { job }) => self.complete(job, now)?,
                    Some(Pending::Dropped { .. }) => {}
                    _ => return Err(ClientError::Protocol("unexpected sent")),
                }
                Ok(())
            }
            ServerFrame::Deliver(d) => {
                let seq = d.seq;
                let r = self.handle_deliver(d.envelope, now);
                self.ack_pending = Some(self.ack_pending.map_or(seq, |s| s.max(seq)));
                r
            }
            ServerFrame::CaughtUp(_) => {
                self.events.push_back(Event::CaughtUp);
                Ok(())
            }
            ServerFrame::Ephemeral(e) => {
                if e.room.is_some() {
                    // Room ephemerals (typing in rooms) are not sent by this
                    // version; ignore rather than fail.
                    return Ok(());
                }
                let plain = self.decrypt_direct(&e.from, e.payload.as_slice(), now)?;
                let content = Content::decode(&plain)?;
                self.handle_content(e.from, content, None, now, true)
            }
            ServerFrame::RoomInfo(info) => {
                let p = self.pending.remove(&info.req);
                self.save_room_info(&info)?;
                self.note_room_info(&info)?;
                match p {
                    // The job is in its `Info` phase: now it distributes.
                    Some(Pending::RoomInfo { job: Some(job) }) => self.advance(job, now),
                    Some(Pending::RoomInfo { job: None }) => {
                        // A room we were invited to: learn its members'
                        // names (they become contacts).
                        let me = self.me()?;
                        for m in info.members.iter() {
                            if m.user != me.0 && self.profile.contact(&m.user)?.is_none() {
                                let req = self.req(Pending::UserLookup);
                                self.transmit.push_back(ClientFrame::LookupUser(LookupUser {
                                    req,
                                    who: UserRef::Id(m.user),
                                }));
                            }
                        }
                        self.events
                            .push_back(Event::RoomChanged { room: info.room });
                    }
                    Some(Pending::Change { change, .. }) => {
                        self.change_applied(&change, Some(&info))?;
                    }
                    _ => {}
                }
                Ok(())
            }
            ServerFrame::Presence(p) => {
                self.events.push_back(Event::Presence {
                    user: p.user,
                    presence: p.presence,
                });
                Ok(())
            }
            ServerFrame::Ping(p) => {
                self.transmit
                    .push_back(ClientFrame::Pong(Pong { nonce: p.nonce }));
                Ok(())
            }
            ServerFrame::Drain(d) => {
                self.events.push_back(Event::Drain {
                    reconnect_after_ms: d.reconnect_after_ms,
                });
                Ok(())
            }
            f @ (ServerFrame::LinkCreated(_)
            | ServerFrame::LinkInfo(_)
            | ServerFrame::Contacts(_)
            | ServerFrame::Profile(_)) => self.social_frame(f, now),
            // Replies to requests this version does not make.
            _ => Ok(()),
        }
    }

    fn authenticate(
        &mut self,
        relay_name: &str,
        exporter: &[u8; 32],
        challenge: &[u8; 32],
        now: u64,
    ) -> Result<(), ClientError> {
        let mut account = self.profile.account()?;
        if account.relay_name.is_empty() {
            account.relay_name = relay_name.to_owned();
            self.profile.set_account(&account)?;
        } else if account.relay_name != relay_name {
            self.conn = Conn::Disconnected;
            return Err(ClientError::WrongRelay);
        }
        let sig = self
            .profile
            .identity()
            .sign_auth_challenge(relay_name, exporter, challenge)
            .map_err(|_| ClientError::Protocol("relay name too long"))?;
        let auth = FixedBytes(sig);
        let req = self.req(Pending::Auth);
        let identity = identity_to_wire(self.profile.identity().public());
        let frame = match (account.user, account.device) {
            (Some(user), Some(device)) => ClientFrame::Login(Login {
                req,
                user,
                device,
                auth,
            }),
            (Some(user), None) => {
                let (approver, approval) = self
                    .approval
                    .ok_or(ClientError::Protocol("device approval missing"))?;
                let prekeys = self
                    .profile
                    .make_prekeys(refill_plan(None, None, now_secs(now)), now_secs(now))?;
                ClientFrame::AddDevice(AddDevice {
                    req,
                    user,
                    identity,
                    prekeys,
                    approver,
                    approval: FixedBytes(approval),
                    auth,
                })
            }
            (None, _) => {
                // A registration whose reply was lost is repeated with fresh
                // prekeys; the relay answers USERNAME_TAKEN if the first got
                // through (see the report: the relay cannot tell it is us).
                let prekeys = self
                    .profile
                    .make_prekeys(refill_plan(None, None, now_secs(now)), now_secs(now))?;
                ClientFrame::Register(Register {
                    req,
                    username: account.username.clone(),
                    identity,
                    prekeys,
                    auth,
                })
            }
        };
        self.profile.flush()?;
        self.transmit.push_back(frame);
        self.conn = Conn::Authenticating;
        Ok(())
    }

    fn refill(
        &mut self,
        remaining: Option<spider_protocol::keys::PreKeyCounts>,
        now: u64,
    ) -> Result<(), ClientError> {
        let st = self.profile.prekey_state()?;
        let plan = refill_plan(remaining, st.signed_at, now_secs(now));
        if plan.is_empty() {
            return Ok(());
        }
        let prekeys = self.profile.make_prekeys(plan, now_secs(now))?;
        let req = self.req(Pending::Quiet);
        self.transmit
            .push_back(ClientFrame::UploadPreKeys(UploadPreKeys { req, prekeys }));
        Ok(())
    }

    fn rotate_if_due(&mut self, now: u64) -> Result<(), ClientError> {
        let st = self.profile.prekey_state()?;
        let due = st.signed_at.is_none_or(|t| {
            now_secs(now).saturating_sub(t) >= crate::crypto_store::SIGNED_PREKEY_ROTATION_SECS
        });
        if !due {
            return Ok(());
        }
        let plan = crate::crypto_store::RefillPlan {
            rotate_signed: true,
            ..Default::default()
        };
        let prekeys = self.profile.make_prekeys(plan, now_secs(now))?;
        let req = self.req(Pending::Quiet);
        self.transmit
            .push_back(ClientFrame::UploadPreKeys(UploadPreKeys { req, prekeys }));
        Ok(())
    }

    fn handle_error(&mut self, e: ErrorFrame, now: u64) -> Result<(), ClientError> {
        let Some(req) = e.req else {
            return Err(ClientError::Relay {
                code: e.code,
                message: None,
                text: e.message.as_str().to_owned(),
            });
        };
        match self.pending.remove(&req) {
            // An answer to a request of a message given up or started again.
            Some(Pending::Dropped { .. }) => Ok(()),
            Some(Pending::Send { job, leg }) if e.code == ErrorCode::MISMATCHED_DEVICES => {
                // The device list changed: refresh it once and retry.
                let mut retry = false;
                if let Some(Job {
                    kind: JobKind::Direct(legs),
                    ..
                }) = self.jobs.get_mut(&job)
                    && let Some(l) = legs.get_mut(leg)
                    && !l.refresh
                {
                    l.refresh = true;
                    l.state = LegState::Waiting;
                    retry = true;
                    if let Target::User(u) = l.target {
                        let r = self.req(Pending::Lookup { job, leg });
                        self.transmit.push_back(ClientFrame::LookupUser(LookupUser {
                            req: r,
                            who: UserRef::Id(u),
                        }));
                    }
                }
                if retry {
                    Ok(())
                } else {
                    self.fail(job, e.code, e.message.as_str().to_owned())
                }
            }
            Some(Pending::Change {
                change,
                retried: false,
            }) if e.code == ErrorCode::STALE_EPOCH => {
                if let ErrorDetail::Epoch { current } = e.detail {
                    let mut change = change;
                    change.epoch = current;
                    if let Some(mut st) = self.profile.room(&change.room)? {
                        st.epoch = current;
                        self.profile.save_room(&st)?;
                    }
                    self.submit_change(change, true);
                } else {
                    // No epoch to re-sign against: answer rather than drop.
                    self.change_refused(change, &e);
                }
                Ok(())
            }
            Some(Pending::SendRoom { job })
                if matches!(
                    e.code,
                    ErrorCode::STALE_EPOCH | ErrorCode::MISMATCHED_DEVICES
                ) =>
            {
                self.room_view_stale(job, &e.detail, now);
                Ok(())
            }
            Some(
                Pending::Send { job, .. }
                | Pending::Lookup { job, .. }
                | Pending::Fetch { job, .. }
                | Pending::SendRoom { job }
                | Pending::RoomInfo { job: Some(job) },
            ) => {
                if matches!(
                    e.code,
                    ErrorCode::RATE_LIMITED | ErrorCode::PREKEY_FETCH_LIMITED
                ) {
                    // A limit of ours: wait and go again, not a failure.
                    self.retry_later(job, &e.detail, now);
                    Ok(())
                } else {
                    self.fail(job, e.code, e.message.as_str().to_owned())
                }
            }
            Some(Pending::Change { change, .. }) => {
                self.change_refused(change, &e);
                Ok(())
            }
            Some(Pending::Social(p)) => self.social_error(p, &e),
            Some(Pending::Auth) => {
                self.conn = Conn::Disconnected;
                Err(ClientError::Relay {
                    code: e.code,
                    message: None,
                    text: e.message.as_str().to_owned(),
                })
            }
            _ => Err(ClientError::Relay {
                code: e.code,
                message: None,
                text: e.message.as_str().to_owned(),
            }),
        }
    }

    /// A job the relay refused: permanent refusals drop it from the outbox,
    /// others leave it for the next connection.
    fn fail(&mut self, job: MessageId, code: ErrorCode, text: String) -> Result<(), ClientError> {
        let top = self.top_of(job);
        let permanent = matches!(
            code,
            ErrorCode::UNKNOWN_USER
                | ErrorCode::UNKNOWN_RECIPIENT
                | ErrorCode::UNKNOWN_ROOM
                | ErrorCode::NOT_A_MEMBER
                | ErrorCode::MISMATCHED_DEVICES
        );
        self.drop_job_tree(top);
        if permanent {
            self.profile.remove_outbox(&top)?;
        }
        Err(ClientError::Relay {
            code,
            message: Some(top),
            text,
        })
    }

    /// A limit refused part of a message: start the whole message again, at
    /// the head of the queue, once the relay's wait is over. Copies that were
    /// already stored go again under the same message id; the relay and the
    /// receivers drop them as duplicates.
    fn retry_later(&mut self, job: MessageId, detail: &ErrorDetail, now: u64) {
        let top = self.top_of(job);
        let Some(entry) = self.jobs.get(&top).map(|j| j.entry.clone()) else {
            return;
        };
        self.drop_job_tree(top);
        self.enqueue(entry, None);
        self.queue.retain(|q| *q != top);
        self.queue.push_front(top);
        let wait = match detail {
            ErrorDetail::RetryAfter { ms } => u64::from(*ms),
            _ => RETRY_DEFAULT_MS,
        }
        .clamp(RETRY_MIN_MS, RETRY_MAX_MS);
        let at = now.saturating_add(wait);
        self.retry_at = Some(self.retry_at.map_or(at, |t| t.max(at)));
    }

    /// The relay refused a room message because the room's members or their
    /// devices changed since we read it: someone would get a message we
    /// never gave our Sender Key for. Read the room again, hand the key to
    /// whoever lacks it, and send again under the same message id.
    fn room_view_stale(&mut self, job: MessageId, detail: &ErrorDetail, now: u64) {
        let Some(j) = self.jobs.get_mut(&job) else {
            return;
        };
        if j.stale >= STALE_ROOM_ROUNDS {
            // Wait a moment, then start afresh (and count afresh).
            return self.retry_later(job, detail, now);
        }
        j.stale += 1;
        if let JobKind::Room(_, phase) = &mut j.kind {
            *phase = RoomPhase::Idle;
        }
        self.advance(job, now);
    }

    fn top_of(&self, mut job: MessageId) -> MessageId {
        while let Some(p) = self.jobs.get(&job).and_then(|j| j.parent) {
            job = p;
        }
        job
    }

    fn drop_job_tree(&mut self, top: MessageId) {
        let tree: Vec<MessageId> = self
            .jobs
            .iter()
            .filter(|(id, j)| **id == top || j.parent == Some(top))
            .map(|(id, _)| *id)
            .collect();
        self.jobs
            .retain(|id, j| *id != top && j.parent != Some(top));
        self.queue.retain(|id| *id != top);
        // Requests in flight for the tree are answered all the same: mark
        // them, so that their answers are dropped quietly.
        for p in self.pending.values_mut() {
            let fetched = match p {
                Pending::Fetch { job, device, .. } if tree.contains(job) => Some(*device),
                Pending::Lookup { job, .. }
                | Pending::Send { job, .. }
                | Pending::SendRoom { job }
                | Pending::RoomInfo { job: Some(job) }
                    if tree.contains(job) =>
                {
                    None
                }
                _ => continue,
            };
            *p = Pending::Dropped { fetched };
        }
    }

    // ------------------------------------------------------------ commands

    /// Sends a text to an account's devices (and a copy to our own other
    /// devices). Works offline: the message waits in the outbox.
    ///
    /// # Errors
    /// Profile failure, or a text over the content limit.
    pub fn send_text(
        &mut self,
        to: impl Into<Recipient>,
        text: &str,
        now: u64,
    ) -> Result<MessageId, ClientError> {
        let target = match to.into() {
            Recipient::User(u) => Target::User(u),
            Recipient::Name(n) => match self.profile.contact_by_name(&n)? {
                Some(c) => Target::User(c.user),
                None => Target::Name(n),
            },
        };
        let to_user = match &target {
            Target::User(u) => Some(*u),
            _ => None,
        };
        let body = Body::Text {
            body: text.to_owned(),
        };
        self.submit(target, None, to_user, body, true, now)
    }

    /// Sends a text to a room.
    ///
    /// # Errors
    /// [`ClientError::UnknownRoom`], profile failure, or a text too long.
    pub fn send_room_text(
        &mut self,
        room: RoomId,
        text: &str,
        now: u64,
    ) -> Result<MessageId, ClientError> {
        if self.profile.room(&room)?.is_none_or(|r| !r.joined) {
            return Err(ClientError::UnknownRoom);
        }
        let body = Body::Text {
            body: text.to_owned(),
        };
        self.submit(Target::Room(room), Some(room), None, body, true, now)
    }

    /// Sends a receipt for messages of `to` (stored like a message, not shown).
    ///
    /// # Errors
    /// Profile failure.
    pub fn send_receipt(
        &mut self,
        to: UserId,
        kind: ReceiptKind,
        ids: Vec<MessageId>,
        now: u64,
    ) -> Result<MessageId, ClientError> {
        self.submit(
            Target::User(to),
            None,
            Some(to),
            Body::Receipt { kind, ids },
            false,
            now,
        )
    }

    /// Tells `to`'s online devices that we started or stopped typing. Not
    /// stored: sent only if we already hold a session with every device of
    /// `to` and are connected; otherwise nothing happens (returns false).
    ///
    /// # Errors
    /// Profile or encryption failure.
    pub fn send_typing(
        &mut self,
        to: UserId,
        started: bool,
        now: u64,
    ) -> Result<bool, ClientError> {
        if !self.is_ready() {
            return Ok(false);
        }
        let Some(contact) = self.profile.contact(&to)? else {
            return Ok(false);
        };
        let have = self.profile.session_devices(&to)?;
        if contact.devices.is_empty() || contact.devices.iter().any(|d| !have.contains(d)) {
            return Ok(false);
        }
        let mut idb = [0u8; 16];
        self.rng.fill_bytes(&mut idb);
        let content = Content {
            header: Header {
                message_id: MessageId::from_bytes(idb),
                sent_at: Timestamp(now),
                room: None,
                to: Some(to),
            },
            body: Body::Typing { started },
        }
        .encode()?;
        let mut copies = Vec::new();
        for d in &contact.devices {
            let addr = crypto_address(&DeviceAddress {
                user: to,
                device: *d,
            });
            let m = encrypt_to(&mut self.profile, &addr, &content)
                .map_err(|e| ClientError::Encrypt(e.to_string()))?;
            copies.push(EphemeralCopy {
                device: *d,
                payload: BoundedBytes::new(m.to_bytes())
                    .map_err(|_| ClientError::Encrypt("ephemeral too long".into()))?,
            });
        }
        self.profile.flush()?;
        self.transmit
            .push_back(ClientFrame::SendEphemeral(SendEphemeral {
                to: EphemeralTarget::User {
                    user: to,
                    copies: BoundedVec::new(copies)
                        .map_err(|_| ClientError::Protocol("too many devices"))?,
                },
            }));
        Ok(true)
    }

    fn submit(
        &mut self,
        target: Target,
        room: Option<RoomId>,
        to: Option<UserId>,
        body: Body,
        visible: bool,
        now: u64,
    ) -> Result<MessageId, ClientError> {
        let mut idb = [0u8; 16];
        self.rng.fill_bytes(&mut idb);
        let id = MessageId::from_bytes(idb);
        let content = Content {
            header: Header {
                message_id: id,
                sent_at: Timestamp(now),
                room,
                to,
            },
            body,
        };
        self.submit_content(target, content, visible, now)
    }

    /// Writes `content` (whose header names its id, room and addressee) to
    /// the outbox, and to history if `visible`, then sends it when connected.
    pub(crate) fn submit_content(
        &mut self,
        target: Target,
        content: Content,
        visible: bool,
        now: u64,
    ) -> Result<MessageId, ClientError> {
        let Header {
            message_id: id,
            room,
            to,
            ..
        } = content.header;
        let bytes = content.encode()?;
        let entry = OutboxEntry {
            id,
            target,
            content: bytes.to_vec(),
            visible,
            created_ms: self.outbox_stamp(now)?,
        };
        self.profile.save_outbox(&entry)?;
        if visible {
            let (user, device) = self
                .me()
                .unwrap_or((UserId::from_bytes([0; 16]), DeviceId(0)));
            self.profile.add_history(&HistoryEntry {
                id,
                from: user,
                from_device: device,
                peer: to,
                room,
                at_ms: now,
                content: bytes.to_vec(),
            })?;
        }
        self.profile.flush()?;
        if self.is_ready() {
            self.enqueue(entry, None);
            self.pump(now);
        }
        Ok(id)
    }

    /// Looks an account up by name: [`Event::ContactUpdated`] follows (and
    /// the account is saved as a contact), or an [`Event::Error`] with the
    /// relay's code (`UNKNOWN_USER`) and no message id.
    ///
    /// # Errors
    /// [`ClientError::Transport`] when not connected (nothing is queued).
    pub fn lookup_user(&mut self, name: Username) -> Result<(), ClientError> {
        if !self.is_ready() {
            return Err(ClientError::Transport("not connected".into()));
        }
        let req = self.req(Pending::UserLookup);
        self.transmit.push_back(ClientFrame::LookupUser(LookupUser {
            req,
            who: UserRef::Name(name),
        }));
        Ok(())
    }

    /// Creates a room named `name`; [`Event::RoomChanged`] follows.
    ///
    /// # Errors
    /// Not registered.
    pub fn create_room(&mut self, name: RoomName, now: u64) -> Result<(), ClientError> {
        self.change_room(
            RoomId::from_bytes([0; 16]),
            0,
            RoomAction::Create { name },
            now,
        )
    }

    /// Invites an account to a room.
    ///
    /// # Errors
    /// [`ClientError::UnknownRoom`], not registered.
    pub fn invite(&mut self, room: RoomId, user: UserId, now: u64) -> Result<(), ClientError> {
        let epoch = self.room_epoch(&room)?;
        self.change_room(room, epoch, RoomAction::Invite { user }, now)
    }

    /// Accepts our pending invitation to a room.
    ///
    /// # Errors
    /// [`ClientError::UnknownRoom`], not registered.
    pub fn accept_invite(&mut self, room: RoomId, now: u64) -> Result<(), ClientError> {
        let epoch = self.room_epoch(&room)?;
        self.change_room(room, epoch, RoomAction::Accept, now)
    }

    /// Removes a member from a room; our Sender Key is rotated before our
    /// next message there.
    ///
    /// # Errors
    /// [`ClientError::UnknownRoom`], not registered.
    pub fn kick(&mut self, room: RoomId, user: UserId, now: u64) -> Result<(), ClientError> {
        let epoch = self.room_epoch(&room)?;
        if let Some(mut st) = self.profile.room(&room)? {
            st.needs_rotation = true;
            self.profile.save_room(&st)?;
        }
        self.change_room(room, epoch, RoomAction::Kick { user }, now)
    }

    fn room_epoch(&self, room: &RoomId) -> Result<u64, ClientError> {
        Ok(self
            .profile
            .room(room)?
            .ok_or(ClientError::UnknownRoom)?
            .epoch)
    }

    fn change_room(
        &mut self,
        room: RoomId,
        epoch: u64,
        action: RoomAction,
        now: u64,
    ) -> Result<(), ClientError> {
        let (user, device) = self.me()?;
        let change = RoomChange {
            room,
            epoch,
            actor: DeviceAddress { user, device },
            at: Timestamp(now),
            action,
        };
        self.submit_change(change, false);
        Ok(())
    }

    fn submit_change(&mut self, change: RoomChange, retried: bool) {
        let signature = FixedBytes(
            self.profile
                .identity()
                .sign_room_change(&change.signed_bytes()),
        );
        let signed = SignedRoomChange {
            change: change.clone(),
            signature,
        };
        let req = self.req(Pending::Change { change, retried });
        self.transmit.push_back(ClientFrame::ChangeRoom(ChangeRoom {
            req,
            change: signed,
        }));
    }

    // ------------------------------------------------------------ outbox jobs

    fn enqueue(&mut self, entry: OutboxEntry, parent: Option<MessageId>) {
        let id = entry.id;
        let kind = match &entry.target {
            Target::Room(r) => JobKind::Room(*r, RoomPhase::Idle),
            t => {
                let mut legs = vec![Leg {
                    target: t.clone(),
                    state: LegState::Idle,
                    devices: Vec::new(),
                    refresh: false,
                }];
                if let Ok((me, _)) = self.me()
                    && t != &Target::User(me)
                {
                    legs.push(Leg {
                        target: Target::User(me),
                        state: LegState::Idle,
                        devices: Vec::new(),
                        refresh: false,
                    });
                }
                JobKind::Direct(legs)
            }
        };
        self.jobs.insert(
            id,
            Job {
                entry,
                kind,
                parent,
                stale: 0,
            },
        );
        if parent.is_none() {
            self.queue.push_back(id);
        }
    }

    /// Starts the head of the queue (one top-level message at a time, so
    /// that messages keep their order).
    fn pump(&mut self, now: u64) {
        if !self.is_ready() || self.retry_at.is_some_and(|t| now < t) {
            return;
        }
        if let Some(&head) = self.queue.front() {
            self.advance(head, now);
        }
    }

    fn advance(&mut self, id: MessageId, now: u64) {
        if let Err(e) = self.try_advance(id, now) {
            self.events.push_back(Event::Error(e));
        }
    }

    fn try_advance(&mut self, id: MessageId, now: u64) -> Result<(), ClientError> {
        let Some(job) = self.jobs.get(&id) else {
            return Ok(());
        };
        match &job.kind {
            JobKind::Direct(legs) => {
                let idle: Vec<usize> = legs
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| l.state == LegState::Idle)
                    .map(|(i, _)| i)
                    .collect();
                let all_done = legs.iter().all(|l| l.state == LegState::Done);
                if all_done {
                    return self.complete(id, now);
                }
                for leg in idle {
                    self.advance_leg(id, leg)?;
                }
                // A leg may have finished at once (no devices to send to).
                if let Some(Job {
                    kind: JobKind::Direct(legs),
                    ..
                }) = self.jobs.get(&id)
                    && legs.iter().all(|l| l.state == LegState::Done)
                {
                    return self.complete(id, now);
                }
                Ok(())
            }
            JobKind::Room(room, phase) => {
                let room = *room;
                match phase {
                    RoomPhase::Idle => {
                        // Fresh membership before every room send.
                        if let Some(Job {
                            kind: JobKind::Room(_, p),
                            ..
                        }) = self.jobs.get_mut(&id)
                        {
                            *p = RoomPhase::Info;
                        }
                        let req = self.req(Pending::RoomInfo { job: Some(id) });
                        self.transmit.push_back(ClientFrame::GetRoom(GetRoom {
                            req,
                            room: RoomRef::Id(room),
                        }));
                        Ok(())
                    }
                    RoomPhase::Info => self.distribute(id, room, now),
                    RoomPhase::Distributing(children) if children.is_empty() => {
                        self.send_room(id, room, now)
                    }
                    RoomPhase::Distributing(_) | RoomPhase::Sending => Ok(()),
                }
            }
        }
    }

    fn advance_leg(&mut self, id: MessageId, leg: usize) -> Result<(), ClientError> {
        let Some(Job {
            kind: JobKind::Direct(legs),
            entry,
            ..
        }) = self.jobs.get(&id)
        else {
            return Ok(());
        };
        let Some(l) = legs.get(leg) else {
            return Ok(());
        };
        let content = entry.content.clone();
        let contact = match &l.target {
            Target::User(u) => self.profile.contact(u)?,
            Target::Name(n) => self.profile.contact_by_name(n)?,
            Target::Room(_) => return Err(ClientError::Protocol("room target in a direct job")),
        };
        let Some(contact) = contact else {
            let who = match &l.target {
                Target::User(u) => UserRef::Id(*u),
                Target::Name(n) => UserRef::Name(n.clone()),
                Target::Room(_) => return Ok(()),
            };
            self.set_leg(id, leg, LegState::Waiting);
            let req = self.req(Pending::Lookup { job: id, leg });
            self.transmit
                .push_back(ClientFrame::LookupUser(LookupUser { req, who }));
            return Ok(());
        };
        let me = self.me()?;
        let devices: Vec<DeviceId> = contact
            .devices
            .iter()
            .copied()
            .filter(|d| !(contact.user == me.0 && *d == me.1))
            .collect();
        // With no known device (no other device of our own, or a contact
        // whose list was emptied, say by a prekey reply without the device)
        // we still send the (empty) copy list: the relay checks the copies
        // against the recipient's devices, and its MISMATCHED_DEVICES makes
        // us look them up and send again (once). Marking the leg done here
        // instead sent the message to no one: for a room's Sender Key, every
        // message of ours after it was undecryptable for that member.
        let have = self.profile.session_devices(&contact.user)?;
        let missing: Vec<DeviceId> = devices
            .iter()
            .copied()
            .filter(|d| !have.contains(d))
            .collect();
        if !missing.is_empty() {
            self.set_leg(id, leg, LegState::Fetching(missing.len()));
            for d in missing {
                let req = self.req(Pending::Fetch {
                    job: id,
                    leg,
                    device: d,
                });
                self.transmit
                    .push_back(ClientFrame::FetchPreKeys(FetchPreKeys {
                        req,
                        user: contact.user,
                        device: Some(d),
                    }));
            }
            return Ok(());
        }
        let mut copies = Vec::with_capacity(devices.len());
        for d in &devices {
            let addr = crypto_address(&DeviceAddress {
                user: contact.user,
                device: *d,
            });
            let m = encrypt_to(&mut self.profile, &addr, &content)
                .map_err(|e| ClientError::Encrypt(e.to_string()))?;
            copies.push(DeviceCiphertext {
                device: *d,
                ciphertext: BoundedBytes::new(m.to_bytes())
                    .map_err(|_| ClientError::Encrypt("ciphertext too long".into()))?,
            });
        }
        self.profile.flush()?;
        if let Some(Job {
            kind: JobKind::Direct(legs),
            ..
        }) = self.jobs.get_mut(&id)
            && let Some(l) = legs.get_mut(leg)
        {
            l.state = LegState::Waiting;
            l.devices = devices;
        }
        let req = self.req(Pending::Send { job: id, leg });
        self.transmit.push_back(ClientFrame::SendDirect(SendDirect {
            req,
            message_id: id,
            to: contact.user,
            copies: BoundedVec::new(copies)
                .map_err(|_| ClientError::Protocol("too many devices"))?,
        }));
        Ok(())
    }

    /// A message addressed by name now has its account: record it in the
    /// content (so our other devices learn the conversation), the outbox
    /// and the history.
    fn resolve_name(&mut self, id: MessageId, user: UserId) -> Result<(), ClientError> {
        let Some(job) = self.jobs.get_mut(&id) else {
            return Ok(());
        };
        if !matches!(job.entry.target, Target::Name(_)) {
            return Ok(());
        }
        let mut content = Content::decode(&job.entry.content)?;
        content.header.to = Some(user);
        job.entry.content = content.encode()?.to_vec();
        job.entry.target = Target::User(user);
        let entry = job.entry.clone();
        self.profile.save_outbox(&entry)?;
        if entry.visible {
            let (me, device) = self.me()?;
            self.profile.add_history(&HistoryEntry {
                id,
                from: me,
                from_device: device,
                peer: Some(user),
                room: None,
                at_ms: entry.created_ms,
                content: entry.content.clone(),
            })?;
        }
        Ok(())
    }

    fn set_leg(&mut self, id: MessageId, leg: usize, state: LegState) {
        if let Some(Job {
            kind: JobKind::Direct(legs),
            ..
        }) = self.jobs.get_mut(&id)
            && let Some(l) = legs.get_mut(leg)
        {
            l.state = state;
        }
    }

    fn complete(&mut self, id: MessageId, now: u64) -> Result<(), ClientError> {
        let Some(job) = self.jobs.remove(&id) else {
            return Ok(());
        };
        match job.parent {
            None => {
                self.profile.remove_outbox(&id)?;
                self.profile.flush()?;
                self.queue.retain(|q| *q != id);
                self.events.push_back(Event::Sent { id });
                self.pump(now);
            }
            Some(parent) => {
                // A Sender Key distribution reached the relay: record who has
                // our chain, then let the room message go when all have.
                if let (
                    JobKind::Direct(legs),
                    Some(Job {
                        kind: JobKind::Room(room, _),
                        ..
                    }),
                ) = (&job.kind, self.jobs.get(&parent))
                {
                    let room = *room;
                    if let Some(mut st) = self.profile.room(&room)? {
                        for l in legs {
                            if let Target::User(u) = l.target {
                                for d in &l.devices {
                                    if !st.distributed_to.contains(&(u, *d)) {
                                        st.distributed_to.push((u, *d));
                                    }
                                }
                            }
                        }
                        self.profile.save_room(&st)?;
                    }
                }
                if let Some(Job {
                    kind: JobKind::Room(_, RoomPhase::Distributing(children)),
                    ..
                }) = self.jobs.get_mut(&parent)
                {
                    children.retain(|c| *c != id);
                }
                self.advance(parent, now);
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------ rooms

    fn save_room_info(&mut self, info: &RoomInfo) -> Result<(), ClientError> {
        let old = self.profile.room(&info.room)?;
        let members: Vec<(UserId, Vec<DeviceId>)> = info
            .members
            .iter()
            .map(|m| (m.user, m.devices.iter().copied().collect()))
            .collect();
        let mut st = old.clone().unwrap_or(RoomState {
            room: info.room,
            name: info.name.as_str().to_owned(),
            epoch: info.epoch,
            members: Vec::new(),
            distributed_to: Vec::new(),
            needs_rotation: false,
            joined: true,
        });
        // Anyone who was a member (or a member device) and is not any more
        // must not read what we send next: rotate.
        for (u, devs) in &st.members {
            match members.iter().find(|(m, _)| m == u) {
                None => st.needs_rotation = true,
                Some((_, now_devs)) => {
                    if devs.iter().any(|d| !now_devs.contains(d)) {
                        st.needs_rotation = true;
                    }
                }
            }
        }
        let me = self.me()?;
        st.joined = members.iter().any(|(u, _)| *u == me.0);
        st.members = members;
        st.epoch = info.epoch;
        st.name = info.name.as_str().to_owned();
        self.profile.save_room(&st)?;
        Ok(())
    }

    fn distribute(&mut self, id: MessageId, room: RoomId, now: u64) -> Result<(), ClientError> {
        let mut st = self.profile.room(&room)?.ok_or(ClientError::UnknownRoom)?;
        if !st.joined {
            return self.fail(id, ErrorCode::NOT_A_MEMBER, String::new());
        }
        let dist = DistributionId::from_bytes(*room.as_bytes());
        let own = self
            .profile
            .load_own_sender_key(dist)
            .map_err(|e| ClientError::Encrypt(e.to_string()))?;
        let own = match own {
            Some(mut k) if st.needs_rotation => {
                let _ = k.rotate(&mut *self.rng);
                st.distributed_to.clear();
                k
            }
            Some(k) => k,
            None => {
                st.distributed_to.clear();
                OwnSenderKey::new(dist, &mut *self.rng)
            }
        };
        st.needs_rotation = false;
        let skdm = own.distribution_message().to_bytes();
        self.profile
            .store_own_sender_key(dist, own)
            .map_err(|e| ClientError::Encrypt(e.to_string()))?;
        self.profile.save_room(&st)?;
        let me = self.me()?;
        // Accounts with a member device that lacks our current chain.
        let mut users: Vec<UserId> = st
            .lacking_our_chain(me)
            .into_iter()
            .map(|(u, _)| u)
            .collect();
        users.dedup();
        let mut children = Vec::new();
        for u in users {
            let mut idb = [0u8; 16];
            self.rng.fill_bytes(&mut idb);
            let cid = MessageId::from_bytes(idb);
            let content = Content {
                header: Header {
                    message_id: cid,
                    sent_at: Timestamp(now),
                    room: None,
                    to: Some(u),
                },
                body: Body::SenderKeyDistribution {
                    room,
                    bytes: skdm.to_vec(),
                },
            };
            let entry = OutboxEntry {
                id: cid,
                target: Target::User(u),
                content: content.encode()?.to_vec(),
                visible: false,
                created_ms: self.outbox_stamp(now)?,
            };
            self.jobs.insert(
                cid,
                Job {
                    entry,
                    kind: JobKind::Direct(vec![Leg {
                        target: Target::User(u),
                        state: LegState::Idle,
                        devices: Vec::new(),
                        refresh: false,
                    }]),
                    parent: Some(id),
                    stale: 0,
                },
            );
            children.push(cid);
        }
        if let Some(Job {
            kind: JobKind::Room(_, phase),
            ..
        }) = self.jobs.get_mut(&id)
        {
            *phase = RoomPhase::Distributing(children.clone());
        }
        if children.is_empty() {
            return self.send_room(id, room, now);
        }
        for c in children {
            self.advance(c, now);
        }
        Ok(())
    }

    fn send_room(&mut self, id: MessageId, room: RoomId, now: u64) -> Result<(), ClientError> {
        // What the relay checks: we handed our chain to exactly the member
        // devices it fans out to, as of this epoch. The room may have been
        // read again while our chain was on its way (a member joined): then
        // someone lacks it, and we go round again.
        let st = self.profile.room(&room)?.ok_or(ClientError::UnknownRoom)?;
        let me = self.me()?;
        if !st.lacking_our_chain(me).is_empty() {
            self.room_view_stale(id, &ErrorDetail::None, now);
            return Ok(());
        }
        let devices = room_devices_digest(
            st.devices_but(me)
                .map(|(user, device)| DeviceAddress { user, device }),
        );
        let Some(job) = self.jobs.get_mut(&id) else {
            return Ok(());
        };
        job.kind = JobKind::Room(room, RoomPhase::Sending);
        let content = job.entry.content.clone();
        let dist = DistributionId::from_bytes(*room.as_bytes());
        let mut own = self
            .profile
            .load_own_sender_key(dist)
            .map_err(|e| ClientError::Encrypt(e.to_string()))?
            .ok_or(ClientError::Encrypt("no sender key".into()))?;
        let m = own
            .encrypt(&content)
            .map_err(|e| ClientError::Encrypt(e.to_string()))?;
        self.profile
            .store_own_sender_key(dist, own)
            .map_err(|e| ClientError::Encrypt(e.to_string()))?;
        self.profile.flush()?;
        let req = self.req(Pending::SendRoom { job: id });
        self.transmit.push_back(ClientFrame::SendRoom(SendRoom {
            req,
            message_id: id,
            room,
            epoch: st.epoch,
            devices,
            ciphertext: BoundedBytes::new(m.to_bytes())
                .map_err(|_| ClientError::Encrypt("ciphertext too long".into()))?,
        }));
        Ok(())
    }

    fn handle_room_change(&mut self, signed: &SignedRoomChange) -> Result<(), ClientError> {
        let c = &signed.change;
        let me = self.me()?;
        // Check the actor's signature when we know the actor's identity (we
        // hold a session with that device); otherwise we rely on the relay,
        // which checks every change it accepts. A Create was signed before
        // the relay assigned the room id, with the id all zeroes.
        let actor = crypto_address(&c.actor);
        if let Some(identity) = IdentityStore::identity(&self.profile, &actor)
            .map_err(|e| ClientError::Session(e.to_string()))?
        {
            let mut as_signed = c.clone();
            if matches!(c.action, RoomAction::Create { .. }) {
                as_signed.room = RoomId::from_bytes([0; 16]);
            }
            identity
                .verify_room_change(&as_signed.signed_bytes(), &signed.signature.0)
                .map_err(|_| ClientError::BadRoomChange)?;
        }
        let mut st = self.profile.room(&c.room)?.unwrap_or(RoomState {
            room: c.room,
            name: String::new(),
            epoch: 0,
            members: Vec::new(),
            distributed_to: Vec::new(),
            needs_rotation: false,
            joined: false,
        });
        // Each accepted change moves the room to the next epoch.
        st.epoch = st.epoch.max(c.epoch.saturating_add(1));
        let remove = |u: UserId, st: &mut RoomState| {
            if u == me.0 {
                st.joined = false;
            } else {
                st.members.retain(|(m, _)| *m != u);
                st.distributed_to.retain(|(m, _)| *m != u);
                st.needs_rotation = true;
            }
        };
        match &c.action {
            RoomAction::Kick { user } | RoomAction::Ban { user } => remove(*user, &mut st),
            RoomAction::Leave => remove(c.actor.user, &mut st),
            RoomAction::Accept | RoomAction::JoinByLink { .. } if c.actor.user == me.0 => {
                st.joined = true;
            }
            _ => {}
        }
        let invited_me = matches!(&c.action, RoomAction::Invite { user } if *user == me.0);
        let unnamed = st.name.is_empty();
        self.profile.save_room(&st)?;
        // An invitation (or a change to a room we know nothing about): ask
        // the relay for the room's name and members, which it answers for
        // invitees too.
        if (invited_me || unnamed) && self.is_ready() {
            let req = self.req(Pending::RoomInfo { job: None });
            self.transmit.push_back(ClientFrame::GetRoom(GetRoom {
                req,
                room: RoomRef::Id(c.room),
            }));
        }
        self.note_room_change(c, invited_me || unnamed)?;
        self.events.push_back(Event::RoomChanged { room: c.room });
        Ok(())
    }

    // ------------------------------------------------------------ receiving

    fn note_identity(
        &mut self,
        user: UserId,
        device: DeviceId,
        wire: &spider_protocol::keys::IdentityKeys,
    ) -> Result<(), ClientError> {
        // A device whose key changed (reinstalled, or replaced by the
        // relay): our old session would encrypt to a key nobody holds, so
        // drop it; the next send fetches a bundle and starts afresh.
        let Ok(id) = identity_from_wire(wire) else {
            return Ok(());
        };
        let from = DeviceAddress { user, device };
        let addr = crypto_address(&from);
        let known = IdentityStore::identity(&self.profile, &addr)
            .map_err(|e| ClientError::Session(e.to_string()))?;
        if known.is_some_and(|k| k != id) {
            self.profile.remove_session(&user, device)?;
            self.accept_new_identity(from, &id)?;
        }
        Ok(())
    }

    fn accept_new_identity(
        &mut self,
        from: DeviceAddress,
        identity: &IdentityPublicKey,
    ) -> Result<(), ClientError> {
        let addr = crypto_address(&from);
        self.profile
            .save_identity(&addr, identity)
            .map_err(|e| ClientError::Session(e.to_string()))?;
        self.events.push_back(Event::IdentityChanged {
            user: from.user,
            device: from.device,
        });
        Ok(())
    }

    fn start_session_with(
        &mut self,
        user: UserId,
        bundle: &spider_protocol::keys::PreKeyBundle,
    ) -> Result<(), ClientError> {
        let from = DeviceAddress {
            user,
            device: bundle.device,
        };
        let verified = bundle_from_wire(bundle)
            .map_err(|e| ClientError::Session(e.to_string()))?
            .verify()
            .map_err(|e| ClientError::Session(e.to_string()))?;
        let addr = crypto_address(&from);
        for attempt in 0..2 {
            let identity = self.profile.identity().clone();
            let cell = RefCell::new(&mut self.profile);
            let mut ids = SplitProfile {
                cell: &cell,
                identity: &identity,
            };
            let mut sessions = SplitProfile {
                cell: &cell,
                identity: &identity,
            };
            let r = start_session(&mut *self.rng, &mut ids, &mut sessions, &addr, &verified);
            match r {
                Ok(()) => return Ok(()),
                Err(spider_crypto::error::StartError::UntrustedIdentity) if attempt == 0 => {
                    self.accept_new_identity(from, &verified.bundle().identity)?;
                }
                Err(e) => return Err(ClientError::Session(e.to_string())),
            }
        }
        Err(ClientError::Session("identity".into()))
    }

    fn decrypt_direct(
        &mut self,
        from: &DeviceAddress,
        ciphertext: &[u8],
        now: u64,
    ) -> Result<Vec<u8>, ClientError> {
        let err = |reason: String| ClientError::Decrypt {
            from: *from,
            reason,
        };
        let message = Message::try_from(ciphertext).map_err(|e| err(e.to_string()))?;
        let addr = crypto_address(from);
        for attempt in 0..2 {
            let mut replay = self.profile.replay_cache()?;
            let identity = self.profile.identity().clone();
            let r = {
                let cell = RefCell::new(&mut self.profile);
                let mut ids = SplitProfile {
                    cell: &cell,
                    identity: &identity,
                };
                let mut pks = SplitProfile {
                    cell: &cell,
                    identity: &identity,
                };
                let mut sessions = SplitProfile {
                    cell: &cell,
                    identity: &identity,
                };
                decrypt_from(
                    &mut *self.rng,
                    &mut ids,
                    &mut pks,
                    &mut replay,
                    &mut sessions,
                    &addr,
                    &message,
                    now_secs(now),
                )
            };
            match r {
                Ok(plain) => {
                    self.profile.save_replay_cache(&replay)?;
                    return Ok(plain);
                }
                Err(spider_crypto::error::ReceiveError::UntrustedIdentity) if attempt == 0 => {
                    let Message::PreKey(first) = &message else {
                        return Err(err("untrusted identity".into()));
                    };
                    // The peer reinstalled or was replaced: accept the new
                    // key (trust on first use again) and say so.
                    self.accept_new_identity(*from, first.sender())?;
                }
                Err(e) => return Err(err(e.to_string())),
            }
        }
        Err(err("identity".into()))
    }

    fn handle_deliver(
        &mut self,
        env: spider_protocol::message::Envelope,
        now: u64,
    ) -> Result<(), ClientError> {
        // A delivery we handled but did not get to ack comes again: its id
        // is in `seen/`. (The relay chose this id for room changes.)
        if self.profile.seen(&env.message_id)? {
            return Ok(());
        }
        let result = match &env.body {
            EnvelopeBody::Direct { ciphertext } => self
                .decrypt_direct(&env.from, ciphertext.as_slice(), now)
                .and_then(|plain| {
                    let c = Content::decode(&plain)?;
                    if c.header.message_id != env.message_id || c.header.room.is_some() {
                        return Err(ClientError::HeaderMismatch);
                    }
                    self.handle_content(env.from, c, None, now, true)
                }),
            EnvelopeBody::Room { room, ciphertext } => self
                .decrypt_room(*room, &env.from, ciphertext.as_slice())
                .and_then(|plain| {
                    let c = Content::decode(&plain)?;
                    if c.header.message_id != env.message_id || c.header.room != Some(*room) {
                        return Err(ClientError::HeaderMismatch);
                    }
                    self.handle_content(env.from, c, Some(*room), now, false)
                }),
            EnvelopeBody::RoomChange(change) => self.handle_room_change(change),
        };
        self.profile.mark_seen(&env.message_id, now)?;
        self.profile.flush()?;
        result
    }

    fn decrypt_room(
        &mut self,
        room: RoomId,
        from: &DeviceAddress,
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        let err = |reason: String| ClientError::Decrypt {
            from: *from,
            reason,
        };
        let dist = DistributionId::from_bytes(*room.as_bytes());
        let m = SenderKeyMessage::try_from(ciphertext).map_err(|e| err(e.to_string()))?;
        let mut record = self
            .profile
            .load_sender_key(dist, from)
            .map_err(|e| err(e.to_string()))?
            .ok_or(ClientError::NoSenderKey)?;
        let plain = record.decrypt(&m).map_err(|e| err(e.to_string()))?;
        self.profile
            .store_sender_key(dist, from, record)
            .map_err(|e| err(e.to_string()))?;
        Ok(plain)
    }

    fn handle_content(
        &mut self,
        from: DeviceAddress,
        content: Content,
        room: Option<RoomId>,
        now: u64,
        one_to_one: bool,
    ) -> Result<(), ClientError> {
        let id = content.header.message_id;
        match &content.body {
            Body::SenderKeyDistribution { room: r, bytes } => {
                if !one_to_one {
                    return Err(ClientError::DistributionRefused);
                }
                let dist = DistributionId::from_bytes(*r.as_bytes());
                let skdm = SenderKeyDistributionMessage::try_from(&bytes[..])
                    .map_err(|_| ClientError::DistributionRefused)?;
                let mut record = self
                    .profile
                    .load_sender_key(dist, &from)
                    .map_err(|e| ClientError::Session(e.to_string()))?
                    .unwrap_or_else(|| SenderKeyRecord::new(dist));
                record
                    .process_distribution(&skdm)
                    .map_err(|_| ClientError::DistributionRefused)?;
                self.profile
                    .store_sender_key(dist, &from, record)
                    .map_err(|e| ClientError::Session(e.to_string()))?;
            }
            Body::Receipt { kind, ids } => self.events.push_back(Event::Receipt {
                from: from.user,
                kind: *kind,
                ids: ids.clone(),
            }),
            Body::Typing { started } => self.events.push_back(Event::Typing {
                from: from.user,
                started: *started,
            }),
            Body::ProfileKey { key } => self.profile_key_received(from, key, one_to_one)?,
            Body::Text { .. } | Body::Attachment { .. } => {
                let me = self.me()?;
                // Our own other device's copy names the conversation in `to`;
                // a peer's message is to us.
                let peer = if room.is_some() {
                    None
                } else if from.user == me.0 {
                    content.header.to
                } else {
                    Some(from.user)
                };
                self.profile.add_history(&HistoryEntry {
                    id,
                    from: from.user,
                    from_device: from.device,
                    peer,
                    room,
                    at_ms: content.header.sent_at.0,
                    content: content.encode()?.to_vec(),
                })?;
                let _ = now;
                // Someone new: learn their name (Event::ContactUpdated).
                if from.user != me.0
                    && self.profile.contact(&from.user)?.is_none()
                    && !self
                        .pending
                        .values()
                        .any(|p| matches!(p, Pending::NameLookup(u) if *u == from.user))
                {
                    let r = self.req(Pending::NameLookup(from.user));
                    self.transmit.push_back(ClientFrame::LookupUser(LookupUser {
                        req: r,
                        who: UserRef::Id(from.user),
                    }));
                }
                let sent_at = content.header.sent_at;
                self.events.push_back(Event::MessageReceived {
                    id,
                    from,
                    room,
                    content: Box::new(content),
                    sent_at,
                });
            }
        }
        Ok(())
    }
}

impl<S: ProfileStore> Engine<S> {
    /// Names of the relay's frames this engine does not act on yet, for
    /// documentation: the room list; blobs are handled by the driver's transfers
    /// (see [`crate::attachments`]).
    pub const UNHANDLED: &'static [&'static str] = &[
        "BlobUploadReady",
        "BlobStored",
        "BlobChunk",
        "BlobEnd",
        "RoomList",
    ];
}
