//! The seam between the app and the network.
//!
//! The app never talks to a socket. It holds a [`Worker`] handle whose request
//! methods send a [`Request`] to a worker task and return a [`Reply`]: a
//! oneshot receiver that the app awaits off the UI thread (iamb's
//! `src/worker.rs` does the same). Whatever the network says unprompted —
//! a message, a delivery receipt, a presence change, a reconnect — arrives
//! as a [`WorkerEvent`] on one channel. The view-model types the app shows
//! ([`Contact`], [`RoomEntry`], [`Invitation`], [`ChatMessage`]) are defined
//! here, so that the worker speaks the app's language.
//!
//! Two workers exist: [`fake::FakeWorker`], in process and deterministic, for
//! tests and `spider --fake`; and [`sdk::SdkWorker`], the adapter over the
//! `spider-client` SDK. An adapter only has to:
//! 1. read [`Request`]s from the receiver given by [`Worker::channel`] and
//!    answer each through its `reply` sender;
//! 2. push [`WorkerEvent`]s into the sender it was given;
//! 3. say [`WorkerEvent::Ready`] first, with the signed-in account if a
//!    profile exists (the app then skips its first-run screen).
//!
//! ```text
//!   keyboard -> components -> queue -> App -> Worker::send_text ─┐
//!                                                               Request
//!   screen  <- draw(&AppState) <- AppState::apply <- WorkerEvent <── worker task
//! ```

pub(crate) mod fake;
pub(crate) mod sdk;

use std::path::PathBuf;

use spider_protocol::ids::{LinkToken, MessageId, RoomId, Timestamp, UserId};
use spider_protocol::message::{Presence, Role};
use spider_protocol::name::{RoomName, Username};
use tokio::sync::{mpsc, oneshot};

// ------------------------------------------------------------------ view model

/// One conversation: a 1:1 chat with a contact, or a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum ConversationId {
    /// A 1:1 chat.
    Direct(UserId),
    /// A room.
    Room(RoomId),
}

/// The signed-in account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Account {
    /// Our user id.
    pub(crate) id: UserId,
    /// Our username.
    pub(crate) name: Username,
    /// The relay we talk to, as typed at registration.
    pub(crate) relay: String,
}

/// Someone in the contact list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Contact {
    /// Their account.
    pub(crate) id: UserId,
    /// Their username.
    pub(crate) name: Username,
    /// Free-text display name from their encrypted profile.
    pub(crate) display_name: Option<String>,
    /// Online, away or offline.
    pub(crate) presence: Presence,
    /// We compared safety numbers and marked them verified.
    pub(crate) verified: bool,
    /// Their identity key changed since we last saw it and we have not
    /// verified the new one: show a warning until `/verify`.
    pub(crate) identity_changed: bool,
}

/// A room we are a member of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RoomEntry {
    /// The room.
    pub(crate) id: RoomId,
    /// Its name.
    pub(crate) name: RoomName,
    /// Our role in it.
    pub(crate) role: Role,
    /// How many members it has.
    pub(crate) members: usize,
}

/// An invitation to a room, not yet accepted or declined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Invitation {
    /// The room.
    pub(crate) room: RoomId,
    /// Its name.
    pub(crate) room_name: RoomName,
    /// Who invited us.
    pub(crate) from: Username,
    /// When.
    pub(crate) at: Timestamp,
}

/// One member of a room, as `/members` lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MemberEntry {
    /// The member's username.
    pub(crate) name: Username,
    /// Their role.
    pub(crate) role: Role,
    /// Their presence.
    pub(crate) presence: Presence,
}

/// How far an outgoing message got. Ordered: a message only moves forwards
/// (see [`Delivery::advance`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Delivery {
    /// Handed to the worker, not yet acked by the relay.
    Pending,
    /// The relay stored it (✓).
    Sent,
    /// At least one recipient device has it (✓✓).
    Delivered,
    /// The recipient read it.
    Read,
    /// The worker gave up; the user may retry.
    Failed,
}

impl Delivery {
    /// Moves to `next` if that is further along; receipts can arrive out of
    /// order (a read receipt before the delivery receipt), and a late
    /// "delivered" must not undo "read". `Failed` only replaces `Pending`.
    pub(crate) fn advance(self, next: Delivery) -> Delivery {
        match (self, next) {
            (Delivery::Pending, n) => n,
            (_, Delivery::Failed) | (Delivery::Failed, _) => self,
            (cur, n) if n > cur => n,
            (cur, _) => cur,
        }
    }
}

/// A file attached to a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Attachment {
    /// The file name as the sender gave it (untrusted: shown, never used as a
    /// path).
    pub(crate) name: String,
    /// Size in bytes.
    pub(crate) size: u64,
    /// Bytes moved so far while uploading or downloading; `None` when done.
    pub(crate) transferred: Option<u64>,
    /// Encoded image bytes (PNG or JPEG) for an inline preview, when the file
    /// is a small image.
    pub(crate) image: Option<Vec<u8>>,
}

/// What a message says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum MessageBody {
    /// Plain text, possibly several lines.
    Text(String),
    /// A file.
    File(Attachment),
    /// Something the app or relay says in the conversation (joins, leaves,
    /// key changes). Not from a person.
    Notice(String),
}

/// One message in a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChatMessage {
    /// Chosen by the sender.
    pub(crate) id: MessageId,
    /// Who wrote it.
    pub(crate) from: Username,
    /// Whether we did.
    pub(crate) mine: bool,
    /// When it was sent (sender's clock for others, ours for ours).
    pub(crate) at: Timestamp,
    /// The content.
    pub(crate) body: MessageBody,
    /// For our own messages: how far it got. Others' messages are `Read`.
    pub(crate) delivery: Delivery,
}

/// The transport the worker is using or trying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    /// QUIC, ALPN `spider/1`.
    Quic,
    /// WebSocket over TLS, the fallback when UDP is blocked.
    WebSocket,
}

/// The user's transport choice (`--transport`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum TransportChoice {
    /// QUIC first, WebSocket fallback.
    #[default]
    Auto,
    /// QUIC only.
    Quic,
    /// WebSocket only.
    Ws,
}

/// The link to the relay, as the status line shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConnectionState {
    /// Not connected and not trying (before sign-in).
    Offline,
    /// Opening a connection.
    Connecting {
        /// Over what.
        transport: Transport,
    },
    /// Connected and authenticated.
    Connected {
        /// Over what.
        transport: Transport,
    },
    /// Lost; the next attempt is scheduled.
    Reconnecting {
        /// 1 for the first retry.
        attempt: u32,
        /// Milliseconds until the attempt.
        retry_in_ms: u64,
    },
}

/// A safety number and what we know of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SafetyInfo {
    /// Whose account.
    pub(crate) id: UserId,
    /// Whose name.
    pub(crate) user: Username,
    /// 60 decimal digits (Signal's numeric fingerprint).
    pub(crate) digits: String,
    /// Marked verified.
    pub(crate) verified: bool,
    /// The key changed since it was last seen or verified.
    pub(crate) identity_changed: bool,
}

impl SafetyInfo {
    /// The 60 digits in 12 groups of 5, as both users read them aloud.
    /// Anything other than 60 ASCII digits is shown as it is, in one group:
    /// the screen must never pretend a malformed number is well formed.
    pub(crate) fn groups(&self) -> Vec<&str> {
        let d = self.digits.as_str();
        if d.len() != 60 || !d.bytes().all(|b| b.is_ascii_digit()) {
            return vec![d];
        }
        (0..12).map(|i| &d[i * 5..i * 5 + 5]).collect()
    }
}

/// One search result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SearchHit {
    /// Where.
    pub(crate) conversation: ConversationId,
    /// Which message.
    pub(crate) message: MessageId,
    /// The line that matched.
    pub(crate) excerpt: String,
}

/// Where `/join` goes: a room by name, or an invite link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum JoinTarget {
    /// A pending invitation to this room.
    Room(RoomName),
    /// An invite link's token.
    Link(LinkToken),
}

// ------------------------------------------------------------------ events

/// What the worker says unprompted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum WorkerEvent {
    /// The worker started. `account` is `None` on first run: the app shows
    /// the register / sign-in screen.
    Ready {
        /// The signed-in account, if a profile exists.
        account: Option<Account>,
    },
    /// Signed in (after register or sign-in): the initial lists.
    Roster {
        /// Contacts.
        contacts: Vec<Contact>,
        /// Rooms.
        rooms: Vec<RoomEntry>,
        /// Pending invitations.
        invitations: Vec<Invitation>,
    },
    /// The link to the relay changed.
    Connection(ConnectionState),
    /// A message arrived (or one of ours, from another of our devices).
    MessageReceived {
        /// Where.
        conversation: ConversationId,
        /// What.
        message: ChatMessage,
    },
    /// One of our messages moved on (✓, ✓✓, read, failed).
    DeliveryChanged {
        /// Where.
        conversation: ConversationId,
        /// Which.
        message: MessageId,
        /// How far.
        delivery: Delivery,
    },
    /// Someone is typing (ephemeral: the app expires it).
    Typing {
        /// Where.
        conversation: ConversationId,
        /// Who.
        user: Username,
    },
    /// A contact's presence changed.
    Presence {
        /// Whose.
        user: UserId,
        /// Now.
        presence: Presence,
    },
    /// A contact was added or changed (profile, verification).
    ContactChanged(Contact),
    /// A room was joined or changed.
    RoomChanged(RoomEntry),
    /// We left or were removed from a room.
    RoomLeft {
        /// Which.
        room: RoomId,
        /// Removed by someone else.
        kicked: bool,
    },
    /// Someone invited us to a room.
    Invitation(Invitation),
    /// A contact's identity key changed: warn until verified.
    IdentityChanged {
        /// Whose.
        user: UserId,
    },
    /// An upload or download moved on.
    FileProgress {
        /// Where.
        conversation: ConversationId,
        /// Which message carries the file.
        message: MessageId,
        /// Bytes moved so far.
        done: u64,
        /// Bytes in all.
        total: u64,
    },
}

// ------------------------------------------------------------------ requests

/// Why a request failed. Shown to the user in the status line, so it never
/// carries message text or keys.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WorkerError {
    /// No such user on the relay.
    #[error("no such user: {0}")]
    NoSuchUser(Username),
    /// No such room, or we are not in it.
    #[error("no such room: {0}")]
    NoSuchRoom(RoomName),
    /// The relay refused: not allowed.
    #[error("not allowed: {0}")]
    Forbidden(String),
    /// The name is taken.
    #[error("name already taken: {0}")]
    NameTaken(String),
    /// The file could not be read.
    #[error("cannot read file: {0}")]
    File(String),
    /// No connection and the request cannot wait.
    #[error("offline")]
    Offline,
    /// The worker task is gone.
    #[error("the network worker stopped")]
    WorkerGone,
    /// Anything else the SDK reports.
    #[error("{0}")]
    Other(String),
}

/// A pending answer from the worker.
pub(crate) type Reply<T> = oneshot::Receiver<Result<T, WorkerError>>;

/// Where the worker puts its answer.
pub(crate) type ReplyTo<T> = oneshot::Sender<Result<T, WorkerError>>;

/// One request to the worker. Each carries the sender of its answer.
#[derive(Debug)]
pub(crate) enum Request {
    /// Create an account on `relay` with `name`.
    Register {
        /// Relay address.
        relay: String,
        /// Name to claim.
        name: Username,
        /// Answer.
        reply: ReplyTo<Account>,
    },
    /// Add this device to an existing account (approved from another device).
    SignIn {
        /// Relay address.
        relay: String,
        /// Existing account.
        name: Username,
        /// Answer.
        reply: ReplyTo<Account>,
    },
    /// Send text.
    SendText {
        /// Where.
        conversation: ConversationId,
        /// What.
        text: String,
        /// The id the message got; delivery then moves by events.
        reply: ReplyTo<ChatMessage>,
    },
    /// Send a file; progress arrives as [`WorkerEvent::FileProgress`].
    SendFile {
        /// Where.
        conversation: ConversationId,
        /// Local path.
        path: PathBuf,
        /// The message that carries the file (delivery `Pending`).
        reply: ReplyTo<ChatMessage>,
    },
    /// Look up a user and open (or create) a 1:1 conversation.
    OpenDirect {
        /// Who.
        user: Username,
        /// Their contact entry.
        reply: ReplyTo<Contact>,
    },
    /// Create a room.
    CreateRoom {
        /// Its name.
        name: RoomName,
        /// The new room.
        reply: ReplyTo<RoomEntry>,
    },
    /// Invite a user to a room.
    Invite {
        /// Which room.
        room: RoomId,
        /// Whom.
        user: Username,
        /// Done.
        reply: ReplyTo<()>,
    },
    /// Make an invite link for a room.
    CreateLink {
        /// Which room.
        room: RoomId,
        /// The link, to share out of band.
        reply: ReplyTo<String>,
    },
    /// Join a room by invitation or link.
    Join {
        /// Which.
        target: JoinTarget,
        /// The room joined.
        reply: ReplyTo<RoomEntry>,
    },
    /// Decline a pending invitation.
    Decline {
        /// Which room.
        room: RoomId,
        /// Done.
        reply: ReplyTo<()>,
    },
    /// Leave a room.
    Leave {
        /// Which.
        room: RoomId,
        /// Done.
        reply: ReplyTo<()>,
    },
    /// Remove a member from a room.
    Kick {
        /// Which room.
        room: RoomId,
        /// Whom.
        user: Username,
        /// Done.
        reply: ReplyTo<()>,
    },
    /// List a room's members.
    Members {
        /// Which room.
        room: RoomId,
        /// The members.
        reply: ReplyTo<Vec<MemberEntry>>,
    },
    /// A contact's safety number.
    SafetyNumber {
        /// Whose.
        user: UserId,
        /// The number.
        reply: ReplyTo<SafetyInfo>,
    },
    /// Mark a contact's current identity key verified.
    Verify {
        /// Whose.
        user: UserId,
        /// The contact, updated.
        reply: ReplyTo<Contact>,
    },
    /// Set our display name (in the encrypted profile).
    SetProfile {
        /// The new display name.
        display_name: String,
        /// Done.
        reply: ReplyTo<()>,
    },
    /// Search local history.
    Search {
        /// Words to find.
        query: String,
        /// Hits, newest first.
        reply: ReplyTo<Vec<SearchHit>>,
    },
    /// We read a conversation up to a message (sends read receipts).
    MarkRead {
        /// Where.
        conversation: ConversationId,
        /// Up to which message.
        up_to: MessageId,
    },
    /// We are typing (the worker rate-limits typing notifications).
    Typing {
        /// Where.
        conversation: ConversationId,
    },
}

/// The app's handle on the worker task. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Worker {
    tx: mpsc::UnboundedSender<Request>,
}

impl Worker {
    /// A handle and the request stream its worker task reads.
    pub(crate) fn channel() -> (Worker, mpsc::UnboundedReceiver<Request>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Worker { tx }, rx)
    }

    /// Sends a request built around a fresh oneshot; if the worker is gone the
    /// reply resolves at once to [`WorkerError::WorkerGone`] (the dropped
    /// sender makes `await` fail, which [`await_reply`] maps).
    fn ask<T>(&self, make: impl FnOnce(ReplyTo<T>) -> Request) -> Reply<T> {
        let (reply, rx) = oneshot::channel();
        // A send error means the worker task ended; the dropped `reply`
        // inside the returned request closes `rx`, which reports it.
        let _ = self.tx.send(make(reply));
        rx
    }

    /// Fire and forget.
    fn tell(&self, request: Request) {
        let _ = self.tx.send(request);
    }

    /// See [`Request::Register`].
    pub(crate) fn register(&self, relay: String, name: Username) -> Reply<Account> {
        self.ask(|reply| Request::Register { relay, name, reply })
    }
    /// See [`Request::SignIn`].
    pub(crate) fn sign_in(&self, relay: String, name: Username) -> Reply<Account> {
        self.ask(|reply| Request::SignIn { relay, name, reply })
    }
    /// See [`Request::SendText`].
    pub(crate) fn send_text(
        &self,
        conversation: ConversationId,
        text: String,
    ) -> Reply<ChatMessage> {
        self.ask(|reply| Request::SendText {
            conversation,
            text,
            reply,
        })
    }
    /// See [`Request::SendFile`].
    pub(crate) fn send_file(
        &self,
        conversation: ConversationId,
        path: PathBuf,
    ) -> Reply<ChatMessage> {
        self.ask(|reply| Request::SendFile {
            conversation,
            path,
            reply,
        })
    }
    /// See [`Request::OpenDirect`].
    pub(crate) fn open_direct(&self, user: Username) -> Reply<Contact> {
        self.ask(|reply| Request::OpenDirect { user, reply })
    }
    /// See [`Request::CreateRoom`].
    pub(crate) fn create_room(&self, name: RoomName) -> Reply<RoomEntry> {
        self.ask(|reply| Request::CreateRoom { name, reply })
    }
    /// See [`Request::Invite`].
    pub(crate) fn invite(&self, room: RoomId, user: Username) -> Reply<()> {
        self.ask(|reply| Request::Invite { room, user, reply })
    }
    /// See [`Request::CreateLink`].
    pub(crate) fn create_link(&self, room: RoomId) -> Reply<String> {
        self.ask(|reply| Request::CreateLink { room, reply })
    }
    /// See [`Request::Join`].
    pub(crate) fn join(&self, target: JoinTarget) -> Reply<RoomEntry> {
        self.ask(|reply| Request::Join { target, reply })
    }
    /// See [`Request::Decline`].
    pub(crate) fn decline(&self, room: RoomId) -> Reply<()> {
        self.ask(|reply| Request::Decline { room, reply })
    }
    /// See [`Request::Leave`].
    pub(crate) fn leave(&self, room: RoomId) -> Reply<()> {
        self.ask(|reply| Request::Leave { room, reply })
    }
    /// See [`Request::Kick`].
    pub(crate) fn kick(&self, room: RoomId, user: Username) -> Reply<()> {
        self.ask(|reply| Request::Kick { room, user, reply })
    }
    /// See [`Request::Members`].
    pub(crate) fn members(&self, room: RoomId) -> Reply<Vec<MemberEntry>> {
        self.ask(|reply| Request::Members { room, reply })
    }
    /// See [`Request::SafetyNumber`].
    pub(crate) fn safety_number(&self, user: UserId) -> Reply<SafetyInfo> {
        self.ask(|reply| Request::SafetyNumber { user, reply })
    }
    /// See [`Request::Verify`].
    pub(crate) fn verify(&self, user: UserId) -> Reply<Contact> {
        self.ask(|reply| Request::Verify { user, reply })
    }
    /// See [`Request::SetProfile`].
    pub(crate) fn set_profile(&self, display_name: String) -> Reply<()> {
        self.ask(|reply| Request::SetProfile {
            display_name,
            reply,
        })
    }
    /// See [`Request::Search`].
    pub(crate) fn search(&self, query: String) -> Reply<Vec<SearchHit>> {
        self.ask(|reply| Request::Search { query, reply })
    }
    /// See [`Request::MarkRead`].
    pub(crate) fn mark_read(&self, conversation: ConversationId, up_to: MessageId) {
        self.tell(Request::MarkRead {
            conversation,
            up_to,
        });
    }
    /// See [`Request::Typing`].
    pub(crate) fn typing(&self, conversation: ConversationId) {
        self.tell(Request::Typing { conversation });
    }
}

/// Awaits a reply, mapping a vanished worker to [`WorkerError::WorkerGone`].
pub(crate) async fn await_reply<T>(reply: Reply<T>) -> Result<T, WorkerError> {
    reply.await.unwrap_or(Err(WorkerError::WorkerGone))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_only_moves_forward() {
        use Delivery::*;
        assert_eq!(Pending.advance(Sent), Sent);
        assert_eq!(Sent.advance(Delivered), Delivered);
        assert_eq!(Delivered.advance(Read), Read);
        assert_eq!(Read.advance(Delivered), Read);
        assert_eq!(Read.advance(Sent), Read);
        assert_eq!(Delivered.advance(Sent), Delivered);
        // A read receipt overtaking the delivery receipt still counts.
        assert_eq!(Sent.advance(Read), Read);
        // Failure only replaces a pending send, never a stored message.
        assert_eq!(Pending.advance(Failed), Failed);
        assert_eq!(Sent.advance(Failed), Sent);
        assert_eq!(Failed.advance(Sent), Failed);
    }

    #[test]
    fn safety_number_is_twelve_groups_of_five() {
        let info = SafetyInfo {
            id: UserId::from_bytes([1; 16]),
            user: Username::parse("bob").unwrap(),
            digits: "0123456789".repeat(6),
            verified: false,
            identity_changed: false,
        };
        let g = info.groups();
        assert_eq!(g.len(), 12);
        assert!(g.iter().all(|g| g.len() == 5));
        assert_eq!(g[0], "01234");
        assert_eq!(g[11], "56789");
        let bad = SafetyInfo {
            digits: "12ab".into(),
            ..info
        };
        assert_eq!(bad.groups(), vec!["12ab"]);
    }

    #[tokio::test]
    async fn reply_from_a_stopped_worker_is_worker_gone() {
        let (worker, rx) = Worker::channel();
        drop(rx);
        let r = await_reply(worker.leave(RoomId::from_bytes([0; 16]))).await;
        assert_eq!(r, Err(WorkerError::WorkerGone));
    }
}
