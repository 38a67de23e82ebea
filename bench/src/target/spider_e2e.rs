//! Spider with real end-to-end encryption (`--e2e`): every simulated user is a spider-client
//! [`Engine`] on an in-memory profile, so the load generator pays what a real client pays.
//!
//! What a client does here is what the SDK does for a person: it registers with a full prekey
//! upload (identity, signed prekey, last-resort KEM prekey and the engine's batch of one-time
//! prekeys), looks its peer up by name, fetches a prekey bundle, runs PQXDH, and sends each message
//! through the Double Ratchet, one copy per device, writing the outbox and history to its
//! (encrypted, in-memory) profile; the receiver decrypts, checks the inner header, records the
//! message and acks. The relay's work is the same as in opaque mode (one stored, delivered, acked
//! envelope per message) plus the prekey and directory requests of the first message.
//!
//! The engine sends one message at a time, in order (its outbox waits for each `Sent`), so a
//! flat-out `--window` above 1 only queues messages in the outbox.
//!
//! The benchmark stamp travels inside the text: the first 32 payload bytes (the stamp) in base64
//! (44 characters), then the rest of the payload as letters, so a `--payload-size` of N is a text
//! of N + 12 characters.
//!
//! The two users of a pair would otherwise start their sessions at the same moment (each sends
//! its first message before the other's arrives). spider-crypto used to settle that race by
//! keeping the handshake with the lower base key, and a *second* first-message of the discarded
//! handshake was then refused as a replay and lost (seen: 1 of 211 messages, 2 pairs flat out);
//! it now keeps previous sessions per device (`SessionRecord`), which fixes that. The odd user of
//! each pair still holds its messages until the first one from its peer has arrived: sessions are
//! set up one way, and the run measures messaging, not that race.
//!
//! In rooms (`room --e2e`) a member creates the room and its invite link, or joins through the
//! link, with the engine's own requests, and posts with `send_room_text`: the engine fetches the
//! room's members, hands its Sender Key to every member over 1:1 sessions (a PQXDH start with each
//! on its first post, again after a membership change it must rotate for), and then sends each
//! message once, encrypted with the Sender Key, for the relay to fan out. The first post of each
//! sender therefore waits for that distribution, and its latency shows it. Room posts are never
//! held back.
//!
//! A reconnecting client (`reconnect-storm --e2e`, [`SpiderE2eTarget::reconnecting`]) does what
//! the SDK's `Client` does when its link ends: `Engine::disconnected`, the SDK's backoff (or the
//! relay's `Drain` delay), a new link, `Engine::connect` (a login this time), and the engine's
//! outbox sends again every message the relay had not acknowledged, under its message id (the
//! relay and the receiving engine drop what they already have).
//!
//! Each client's link is read by one task and written by another; the engine runs in a third,
//! which takes frames, commands and timers in turn, so reading never waits for the engine's crypto
//! or a held-back write.

use super::spider::{ATTEMPT_TIMEOUT, describe, room_name, username};
use super::spider_link::Dialer;
use super::{
    EnvelopeReceiver, EnvelopeSender, Incoming, RoomSender, RoomTicket, Target, TargetKind, UserId,
};
use crate::envelope::HEADER_LEN;
use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use bytes::Bytes;
use spider_client::client::Backoff;
use spider_client::content::{Body, MAX_TEXT_LEN};
use spider_client::engine::{ClientError, Engine, Event};
use spider_client::profile::{Account, Profile, os_rng};
use spider_client::store::MemoryStore;
use spider_client::transport::Link;
use spider_protocol::ids::{LinkToken, MessageId, RoomId};
use spider_protocol::name::RoomName;
use spider_protocol::{ClientFrame, ServerFrame};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Characters of the base64 stamp at the start of a text.
const STAMP_CHARS: usize = HEADER_LEN.div_ceil(3) * 4;

/// Messages a sender may queue for its engine before `send` waits.
const SEND_QUEUE: usize = 64;

/// How long a room request (create with its link, join) may wait for the relay's answer.
const ROOM_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// The largest `--payload-size` with `--e2e`: the text must fit the content limit.
pub const MAX_E2E_PAYLOAD: usize = MAX_TEXT_LEN - (STAMP_CHARS - HEADER_LEN);

/// The text that carries `payload`: its stamp in base64, then the rest as letters.
pub fn text_of(payload: &[u8]) -> String {
    let (stamp, rest) = payload.split_at(payload.len().min(HEADER_LEN));
    let mut text = base64::engine::general_purpose::STANDARD.encode(stamp);
    text.extend(rest.iter().map(|b| char::from(b'a' + b % 26)));
    text
}

/// The stamp bytes at the start of a text made by [`text_of`] (`None` for any other text).
pub fn stamp_of(text: &str) -> Option<Bytes> {
    let head = text.get(..STAMP_CHARS)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(head)
        .ok()?;
    (bytes.len() == HEADER_LEN).then(|| Bytes::from(bytes))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A Spider relay driven through the SDK's engine.
#[derive(Debug, Clone)]
pub struct SpiderE2eTarget {
    dialer: Dialer,
    relay_name: String,
    run: u64,
    reconnect: bool,
}

impl SpiderE2eTarget {
    /// The relay at `addr`, reached as `kind`, trusting only the CA in `ca_file`, whose certificate
    /// and relay name are `relay_name`. `run` makes usernames unique.
    pub fn new(
        kind: TargetKind,
        addr: SocketAddr,
        ca_file: &Path,
        relay_name: &str,
        run: u64,
    ) -> anyhow::Result<Self> {
        let ca_pem = std::fs::read(ca_file)
            .with_context(|| format!("reading the relay CA {}", ca_file.display()))?;
        Ok(Self {
            dialer: Dialer::new(
                addr,
                relay_name,
                &ca_pem,
                super::spider::transport_of(kind)?,
            )?,
            relay_name: relay_name.to_owned(),
            run,
            reconnect: false,
        })
    }

    /// Clients that come back by themselves when their link ends, as the SDK's `Client` does
    /// (`reconnect-storm`): the SDK's [`Backoff::DEFAULT`] between attempts (after a `Drain`, its
    /// delay), each attempt bounded by [`ATTEMPT_TIMEOUT`]; the engine logs in again and its
    /// outbox sends again what the relay had not acknowledged, under the same message ids. Their
    /// receive halves say [`Incoming::Disconnected`] and [`Incoming::Reconnected`].
    pub fn reconnecting(mut self) -> Self {
        self.reconnect = true;
        self
    }
}

/// What a client's send half asks of its engine.
#[derive(Debug)]
enum Command {
    /// A 1:1 text carrying benchmark envelope `seq`.
    Direct { to: UserId, seq: u64, text: String },
    /// A text to a room, carrying benchmark envelope `seq`.
    Post {
        room: RoomId,
        seq: u64,
        text: String,
    },
    /// Create a room, then an invite link to it.
    CreateRoom {
        name: RoomName,
        reply: oneshot::Sender<anyhow::Result<RoomTicket>>,
    },
    /// Join a room through its invite link; the answer is the room's epoch after the join.
    JoinRoom {
        link: LinkToken,
        reply: oneshot::Sender<anyhow::Result<u64>>,
    },
}

/// A room request of this client that the relay has not answered yet.
#[derive(Debug)]
enum RoomOp {
    /// `create_room` sent; the link follows.
    Creating(oneshot::Sender<anyhow::Result<RoomTicket>>),
    /// The room exists; its link was asked for.
    Linking(RoomId, oneshot::Sender<anyhow::Result<RoomTicket>>),
    /// `join_by_link` sent.
    Joining(oneshot::Sender<anyhow::Result<u64>>),
}

impl RoomOp {
    fn fail(self, why: &str) {
        match self {
            RoomOp::Creating(reply) | RoomOp::Linking(_, reply) => {
                let _ = reply.send(Err(anyhow!("creating a room: {why}")));
            }
            RoomOp::Joining(reply) => {
                let _ = reply.send(Err(anyhow!("joining a room: {why}")));
            }
        }
    }
}

/// Send half: a channel to the engine's task.
#[derive(Debug)]
pub struct E2eSender {
    tx: mpsc::Sender<Command>,
    run: u64,
}

/// Receive half: what the engine's task forwards.
#[derive(Debug)]
pub struct E2eReceiver {
    rx: mpsc::UnboundedReceiver<anyhow::Result<Incoming>>,
}

type E2eEngine = Engine<MemoryStore>;

/// Writes every frame the engine has queued.
async fn flush(engine: &mut E2eEngine, link: &mut Link) -> anyhow::Result<()> {
    while let Some(f) = engine.poll_transmit() {
        link.send(&f).await.context("sending")?;
    }
    Ok(())
}

impl Target for SpiderE2eTarget {
    type Sender = E2eSender;
    type Receiver = E2eReceiver;

    async fn connect(
        &self,
        user: UserId,
        source: IpAddr,
    ) -> anyhow::Result<(E2eSender, E2eReceiver)> {
        let profile = Profile::in_memory(
            Account {
                relay_name: self.relay_name.clone(),
                username: username(self.run, user)?,
                user: None,
                device: None,
            },
            os_rng(),
        )
        .map_err(|e| anyhow!("profile: {e}"))?;
        let mut engine = Engine::new(profile, os_rng());
        let (mut link, exporter) = self.dialer.connect(source).await.context("connecting")?;
        engine.connect(exporter, now_ms());
        // Hello, Welcome, Register (with the engine's prekeys), AuthOk.
        loop {
            flush(&mut engine, &mut link).await?;
            while let Some(event) = engine.poll_event() {
                match event {
                    Event::Connected { .. } => {
                        flush(&mut engine, &mut link).await?;
                        let redial = self.reconnect.then(|| Redial {
                            dialer: self.dialer.clone(),
                            source,
                            user,
                        });
                        // Odd users wait for their peer's first message (see the module docs).
                        return Ok(spawn(engine, link, self.run, user % 2 == 1, redial));
                    }
                    Event::Error(e) => bail!("registration: {e}"),
                    _ => {}
                }
            }
            if engine.wants_close() {
                bail!("registration: the engine gave up on the connection");
            }
            let frame = link.recv().await.context("waiting for the relay")?;
            if let ServerFrame::Error(e) = &frame
                && e.code.is_fatal()
            {
                bail!("registration: {}", describe(e));
            }
            engine.handle_frame(frame, now_ms());
        }
    }
}

/// How a reconnecting client reaches the relay again.
#[derive(Debug, Clone)]
struct Redial {
    dialer: Dialer,
    source: IpAddr,
    user: UserId,
}

/// Starts the engine's task (with the link's reader and writer) of a registered client.
fn spawn(
    engine: E2eEngine,
    link: Link,
    run: u64,
    hold_first: bool,
    redial: Option<Redial>,
) -> (E2eSender, E2eReceiver) {
    let (tx, cmds) = mpsc::channel(SEND_QUEUE);
    let (out, rx) = mpsc::unbounded_channel();
    let driver = Driver {
        engine,
        run,
        seqs: HashMap::new(),
        held: hold_first.then(Vec::new),
        room_op: None,
        epochs: HashMap::new(),
        out,
        redial,
        drain: None,
        attempt: 0,
        sending: true,
    };
    tokio::spawn(drive(driver, Wire::new(link), cmds));
    (E2eSender { tx, run }, E2eReceiver { rx })
}

/// A link, as its reader and writer tasks: frames in over `frames`, frames out through `tx`.
/// Dropping it stops both (and so closes the link).
struct Wire {
    frames: mpsc::UnboundedReceiver<anyhow::Result<ServerFrame>>,
    tx: mpsc::UnboundedSender<ClientFrame>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Drop for Wire {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

impl Wire {
    fn new(link: Link) -> Self {
        let (frames_tx, frames) = mpsc::unbounded_channel();
        let (tx, wire_rx) = mpsc::unbounded_channel();
        let (reader, writer) = split(link, frames_tx, wire_rx);
        Self {
            frames,
            tx,
            reader,
            writer,
        }
    }
}

/// The link's reader and writer tasks: frames in over `frames`, frames out from `wire`.
fn split(
    link: Link,
    frames: mpsc::UnboundedSender<anyhow::Result<ServerFrame>>,
    mut wire: mpsc::UnboundedReceiver<ClientFrame>,
) -> (JoinHandle<()>, JoinHandle<()>) {
    match link {
        Link::Quic {
            connection,
            endpoint,
            mut send,
            mut recv,
            mut decoder,
        } => {
            let reader = tokio::spawn(async move {
                // Kept alive as long as the reader: the connection and its socket.
                let _keep = (connection, endpoint);
                let mut buf = vec![0u8; 16 * 1024];
                // One chunk per turn, until the stream ends or fails.
                loop {
                    loop {
                        match decoder.next_frame() {
                            Ok(Some(f)) => {
                                if frames.send(Ok(f)).is_err() {
                                    return;
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                let _ = frames.send(Err(anyhow!("decode: {e}")));
                                return;
                            }
                        }
                    }
                    match recv.read(&mut buf).await {
                        Ok(Some(n)) => decoder.push(buf.get(..n).unwrap_or_default()),
                        Ok(None) => return,
                        Err(e) => {
                            let _ = frames.send(Err(anyhow!("quic: {e}")));
                            return;
                        }
                    }
                }
            });
            let writer = tokio::spawn(async move {
                // One frame per turn, until the engine's task is gone or a write fails.
                while let Some(f) = wire.recv().await {
                    let mut buf = Vec::new();
                    if spider_protocol::codec::encode_stream(&f, &mut buf).is_err()
                        || send.write_all(&buf).await.is_err()
                    {
                        return;
                    }
                }
            });
            (reader, writer)
        }
        Link::WebSocket(ws) => {
            use futures_util::{SinkExt as _, StreamExt as _};
            use tokio_tungstenite::tungstenite::Message;
            let (mut sink, mut stream) = (*ws).split();
            let reader = tokio::spawn(async move {
                // One message per turn, until the stream ends or fails.
                while let Some(msg) = stream.next().await {
                    let frame = match msg {
                        Ok(Message::Binary(body)) => {
                            spider_protocol::codec::decode_body::<ServerFrame>(&body)
                                .map_err(|e| anyhow!("decode: {e}"))
                        }
                        Ok(Message::Close(_)) => return,
                        Ok(_) => continue,
                        Err(e) => Err(anyhow!("websocket: {e}")),
                    };
                    let failed = frame.is_err();
                    if frames.send(frame).is_err() || failed {
                        return;
                    }
                }
            });
            let writer = tokio::spawn(async move {
                // One frame per turn, until the engine's task is gone or a write fails.
                while let Some(f) = wire.recv().await {
                    let Ok(body) = spider_protocol::codec::encode_body(&f) else {
                        return;
                    };
                    if sink.send(Message::Binary(body.into())).await.is_err() {
                        return;
                    }
                }
            });
            (reader, writer)
        }
    }
}

/// The engine's task: frames, commands and timers in turn; after each, the engine's frames go to
/// the writer and its events to the receive half. Ends when the receive half is dropped, or when
/// the link ends and the client does not reconnect.
async fn drive(mut d: Driver, mut wire: Wire, mut cmds: mpsc::Receiver<Command>) {
    // One input per turn.
    loop {
        let lost = match d.pump(&wire) {
            Err(e) => e,
            Ok(()) if d.drain.is_some() => anyhow!("the relay is draining"),
            Ok(()) => match d.turn(&mut wire, &mut cmds).await {
                Turn::Go => continue,
                Turn::Stop => return,
                Turn::Lost(e) => e,
            },
        };
        if d.redial.is_none() {
            let _ = d.out.send(Err(lost));
            return;
        }
        drop(wire);
        wire = match d.reconnect(&mut cmds).await {
            Some(w) => w,
            None => return,
        };
    }
}

/// What one turn of the engine's task came to.
enum Turn {
    /// Go on.
    Go,
    /// The run is over for this client (its receive half is gone).
    Stop,
    /// The link ended.
    Lost(anyhow::Error),
}

/// The state of one client's engine task.
struct Driver {
    engine: E2eEngine,
    run: u64,
    /// Which benchmark envelope each of this client's messages is.
    seqs: HashMap<MessageId, u64>,
    /// 1:1 messages held until the first one from the peer arrived (odd users only).
    held: Option<Vec<(UserId, u64, String)>>,
    room_op: Option<RoomOp>,
    /// Per room, the epoch up to which its changes were reported.
    epochs: HashMap<RoomId, u64>,
    out: mpsc::UnboundedSender<anyhow::Result<Incoming>>,
    /// Set for a reconnecting client.
    redial: Option<Redial>,
    /// The relay said `Drain`: reconnect after this delay.
    drain: Option<Duration>,
    /// Failed reconnect attempts since the last successful login.
    attempt: u32,
    /// The send half is still there.
    sending: bool,
}

impl Driver {
    /// Frames out and events up, until neither is left (handling an event can queue frames).
    fn pump(&mut self, wire: &Wire) -> anyhow::Result<()> {
        loop {
            let mut idle = true;
            while let Some(f) = self.engine.poll_transmit() {
                idle = false;
                if wire.tx.send(f).is_err() {
                    return Err(anyhow!("the link's writer stopped"));
                }
            }
            while let Some(event) = self.engine.poll_event() {
                idle = false;
                self.event(event);
            }
            if idle {
                return Ok(());
            }
        }
    }

    /// Waits for one frame, command or timer, and hands it to the engine.
    async fn turn(&mut self, wire: &mut Wire, cmds: &mut mpsc::Receiver<Command>) -> Turn {
        let wake = self
            .engine
            .poll_timeout()
            .map_or(Duration::from_secs(3600), |t| {
                Duration::from_millis(t.saturating_sub(now_ms()))
            });
        tokio::select! {
            frame = wire.frames.recv() => match frame {
                Some(Ok(f)) => {
                    self.engine.handle_frame(f, now_ms());
                    Turn::Go
                }
                Some(Err(e)) => Turn::Lost(e),
                None => Turn::Lost(anyhow!("the relay closed the connection")),
            },
            cmd = cmds.recv(), if self.sending => {
                match cmd {
                    Some(c) => self.command(c),
                    None => self.sending = false,
                }
                Turn::Go
            }
            () = tokio::time::sleep(wake) => {
                self.engine.handle_timeout(now_ms());
                Turn::Go
            }
            () = self.out.closed() => Turn::Stop,
        }
    }

    /// The link is gone: waits (the SDK's backoff, or the relay's drain delay) and dials again
    /// until a link is up; commands meanwhile go to the engine's outbox. `None` once the run is
    /// over for this client.
    async fn reconnect(&mut self, cmds: &mut mpsc::Receiver<Command>) -> Option<Wire> {
        let redial = self.redial.clone()?;
        if !self.engine.is_ready() {
            // Lost before the login finished: back off further.
            self.attempt = self.attempt.saturating_add(1);
        }
        self.engine.disconnected(now_ms());
        if let Some(op) = self.room_op.take() {
            op.fail("the connection was lost");
        }
        self.pump_offline();
        let mut delay = self.drain.take().unwrap_or_else(|| self.backoff(&redial));
        // One attempt per turn, until a link is up.
        loop {
            let until = tokio::time::Instant::now() + delay;
            // One command per turn, until the delay is over.
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(until) => break,
                    cmd = cmds.recv(), if self.sending => {
                        match cmd {
                            Some(c) => self.command(c),
                            None => self.sending = false,
                        }
                        self.pump_offline();
                    }
                    () = self.out.closed() => return None,
                }
            }
            let dialed = tokio::select! {
                d = tokio::time::timeout(ATTEMPT_TIMEOUT, redial.dialer.connect(redial.source)) => d,
                () = self.out.closed() => return None,
            };
            if let Ok(Ok((link, exporter))) = dialed {
                self.engine.connect(exporter, now_ms());
                return Some(Wire::new(link));
            }
            self.attempt = self.attempt.saturating_add(1);
            delay = self.backoff(&redial);
        }
    }

    /// The SDK's reconnect delay for the current attempt, jittered per client and attempt.
    fn backoff(&self, redial: &Redial) -> Duration {
        let mixed = (u64::from(redial.user) << 32 | u64::from(self.attempt))
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let jitter = u32::try_from(mixed >> 32).unwrap_or(0);
        Backoff::DEFAULT.delay(self.attempt, jitter)
    }

    /// Events up while there is no link (frames queued meanwhile are for no connection: the
    /// engine starts afresh on `connect`).
    fn pump_offline(&mut self) {
        while self.engine.poll_transmit().is_some() {}
        while let Some(event) = self.engine.poll_event() {
            self.event(event);
        }
    }

    /// Hands one command to the engine.
    fn command(&mut self, cmd: Command) {
        let now = now_ms();
        match cmd {
            Command::Direct { to, seq, text } => match self.held.as_mut() {
                Some(waiting) => waiting.push((to, seq, text)),
                None => self.submit_direct(to, seq, &text),
            },
            Command::Post { room, seq, text } => {
                let sent = self
                    .engine
                    .send_room_text(room, &text, now)
                    .map_err(|e| anyhow!("{e}"));
                self.submitted(seq, sent);
            }
            Command::CreateRoom { name, reply } => {
                if self.room_op.is_some() {
                    let _ = reply.send(Err(anyhow!("another room request is pending")));
                } else {
                    match self.engine.create_room(name, now) {
                        Ok(()) => self.room_op = Some(RoomOp::Creating(reply)),
                        Err(e) => {
                            let _ = reply.send(Err(anyhow!("creating a room: {e}")));
                        }
                    }
                }
            }
            Command::JoinRoom { link, reply } => {
                if self.room_op.is_some() {
                    let _ = reply.send(Err(anyhow!("another room request is pending")));
                } else {
                    match self.engine.join_by_link(link) {
                        Ok(()) => self.room_op = Some(RoomOp::Joining(reply)),
                        Err(e) => {
                            let _ = reply.send(Err(anyhow!("joining a room: {e}")));
                        }
                    }
                }
            }
        }
    }

    /// Hands one 1:1 message to the engine (its outbox sends it when the messages before it are
    /// stored).
    fn submit_direct(&mut self, to: UserId, seq: u64, text: &str) {
        let sent = username(self.run, to).and_then(|name| {
            self.engine
                .send_text(name, text, now_ms())
                .map_err(|e| anyhow!("{e}"))
        });
        self.submitted(seq, sent);
    }

    /// Remembers which envelope a message is, or reports it refused.
    fn submitted(&mut self, seq: u64, sent: anyhow::Result<MessageId>) {
        match sent {
            Ok(id) => {
                self.seqs.insert(id, seq);
            }
            Err(e) => {
                let _ = self.out.send(Ok(Incoming::Refused {
                    seq,
                    why: format!("{e:#}"),
                }));
            }
        }
    }

    /// What one engine event means here.
    fn event(&mut self, event: Event) {
        match &event {
            Event::MessageReceived { .. } => {
                if let Some(waiting) = self.held.take() {
                    for (to, seq, text) in waiting {
                        self.submit_direct(to, seq, &text);
                    }
                }
            }
            // The change of this client's own pending request (its create or join): the relay
            // answers it instead of storing it for this member, and the room scenario counts
            // only the changes other members' joins make. Joins of one room are made one after
            // another, so no one else's change reaches this member while its request is open.
            Event::RoomChanged { .. } if self.room_op.is_some() => return,
            // The engine says `RoomChanged` for a change envelope and again for the room it
            // reads afresh after someone joined, in either order: what the scenario counts is
            // changes, so one `Incoming::RoomChanged` per epoch the room moved on since this
            // member's own request (each join is one epoch).
            Event::RoomChanged { room } => {
                let room = *room;
                if let Ok(now) = self.epoch_of(room) {
                    let seen = self.epochs.entry(room).or_insert(now);
                    for _ in *seen..now {
                        let _ = self.out.send(Ok(Incoming::RoomChanged));
                    }
                    *seen = (*seen).max(now);
                }
                return;
            }
            Event::RoomRequestDone { .. } | Event::LinkCreated { .. } => {
                self.room_answer(event);
                return;
            }
            Event::Drain { reconnect_after_ms } if self.redial.is_some() => {
                self.drain = Some(Duration::from_millis(u64::from(*reconnect_after_ms)));
                return;
            }
            Event::Connected { .. } if self.redial.is_some() => {
                self.attempt = 0;
                let _ = self.out.send(Ok(Incoming::Reconnected));
                return;
            }
            Event::Disconnected if self.redial.is_some() => {
                let _ = self.out.send(Ok(Incoming::Disconnected));
                return;
            }
            _ => {}
        }
        if let Some(incoming) = translate(event, &mut self.seqs) {
            let _ = self.out.send(incoming);
        }
    }

    /// The relay answered a room request of this client (create, link, join).
    fn room_answer(&mut self, event: Event) {
        let now = now_ms();
        match (self.room_op.take(), event) {
            (
                Some(RoomOp::Creating(reply)),
                Event::RoomRequestDone {
                    room: Some(room),
                    result: Ok(()),
                    ..
                },
            ) => match self.engine.create_link(room, None, None, now) {
                Ok(()) => self.room_op = Some(RoomOp::Linking(room, reply)),
                Err(e) => {
                    let _ = reply.send(Err(anyhow!("making an invite link: {e}")));
                }
            },
            (Some(RoomOp::Linking(id, reply)), Event::LinkCreated { room, token })
                if room == id =>
            {
                let ticket = self.epoch_of(id).map(|epoch| {
                    self.epochs.insert(id, epoch);
                    RoomTicket {
                        id: *id.as_bytes(),
                        link: *token.as_bytes(),
                        epoch,
                    }
                });
                let _ = reply.send(ticket);
            }
            (
                Some(RoomOp::Joining(reply)),
                Event::RoomRequestDone {
                    room: Some(room),
                    result: Ok(()),
                    ..
                },
            ) => {
                let epoch = self.epoch_of(room);
                if let Ok(e) = &epoch {
                    self.epochs.insert(room, *e);
                }
                let _ = reply.send(epoch);
            }
            (Some(op), Event::RoomRequestDone { result: Err(e), .. }) => op.fail(&e.to_string()),
            // Not an answer to the open request (the link's own `RoomRequestDone` after
            // `LinkCreated`).
            (op, _) => self.room_op = op,
        }
    }

    /// The room's epoch as this client's profile has it.
    fn epoch_of(&self, room: RoomId) -> anyhow::Result<u64> {
        match self.engine.profile().room(&room) {
            Ok(Some(state)) => Ok(state.epoch),
            Ok(None) => Err(anyhow!("the room is not in the profile")),
            Err(e) => Err(anyhow!("profile: {e}")),
        }
    }
}

/// What an engine event means to the benchmark.
fn translate(event: Event, seqs: &mut HashMap<MessageId, u64>) -> Option<anyhow::Result<Incoming>> {
    match event {
        Event::Sent { id } => seqs.remove(&id).map(|seq| Ok(Incoming::Acked(seq))),
        Event::MessageReceived { content, .. } => match content.body {
            Body::Text { body } => Some(
                stamp_of(&body)
                    .map(Incoming::Delivered)
                    .ok_or_else(|| anyhow!("a text without a benchmark stamp")),
            ),
            _ => None,
        },
        Event::Error(ClientError::Relay {
            message: Some(id),
            code,
            text,
        }) => match seqs.remove(&id) {
            Some(seq) => Some(Ok(Incoming::Refused {
                seq,
                why: format!("relay error {code:?}: {text}"),
            })),
            None => Some(Ok(Incoming::Error(format!("relay error {code:?}: {text}")))),
        },
        Event::Error(e) => Some(Ok(Incoming::Error(e.to_string()))),
        Event::Drain { .. } => Some(Err(anyhow!("the relay is draining"))),
        // A membership change of one of this client's rooms (another member's join, while a
        // room fills up); the engine's task counts them by epoch instead.
        Event::RoomChanged { .. } => Some(Ok(Incoming::RoomChanged)),
        _ => None,
    }
}

impl E2eSender {
    /// Sends a room request to the engine's task and waits for its answer.
    async fn ask<T>(
        &mut self,
        what: &str,
        make: impl FnOnce(oneshot::Sender<anyhow::Result<T>>) -> Command,
    ) -> anyhow::Result<T> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| anyhow!("{what}: connection closed"))?;
        match tokio::time::timeout(ROOM_REQUEST_TIMEOUT, answer).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => bail!("{what}: connection closed"),
            Err(_) => bail!("{what}: no answer in {ROOM_REQUEST_TIMEOUT:?}"),
        }
    }
}

impl EnvelopeSender for E2eSender {
    async fn send(&mut self, to: UserId, seq: u64, payload: Bytes) -> anyhow::Result<()> {
        self.tx
            .send(Command::Direct {
                to,
                seq,
                text: text_of(&payload),
            })
            .await
            .map_err(|_| anyhow!("connection closed"))
    }
}

impl RoomSender for E2eSender {
    async fn create_room(&mut self, name: &str) -> anyhow::Result<RoomTicket> {
        let name = room_name(self.run, name)?;
        self.ask("creating a room", |reply| Command::CreateRoom {
            name,
            reply,
        })
        .await
    }

    async fn join_room(&mut self, room: &RoomTicket) -> anyhow::Result<u64> {
        let link = LinkToken::from_bytes(room.link);
        self.ask("joining a room", |reply| Command::JoinRoom { link, reply })
            .await
    }

    async fn send_room(
        &mut self,
        room: &RoomTicket,
        seq: u64,
        payload: Bytes,
    ) -> anyhow::Result<()> {
        self.tx
            .send(Command::Post {
                room: RoomId::from_bytes(room.id),
                seq,
                text: text_of(&payload),
            })
            .await
            .map_err(|_| anyhow!("connection closed"))
    }
}

impl EnvelopeReceiver for E2eReceiver {
    async fn next(&mut self) -> anyhow::Result<Option<Incoming>> {
        self.rx.recv().await.transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{PayloadMaker, Stamp};

    #[test]
    fn the_stamp_survives_the_text() {
        let stamp = Stamp {
            from: 3,
            run: 99,
            seq: 12_345,
            sent_ns: 777,
        };
        for size in [HEADER_LEN, 256, MAX_E2E_PAYLOAD] {
            let payload = PayloadMaker::new(1, 3, size).make(&stamp);
            let text = text_of(&payload);
            assert_eq!(text.len(), size + STAMP_CHARS - HEADER_LEN);
            assert!(text.len() <= MAX_TEXT_LEN);
            assert!(text.is_ascii());
            let back = stamp_of(&text).unwrap();
            assert_eq!(Stamp::read(&back), Some(stamp));
        }
        assert_eq!(stamp_of("hello"), None);
        assert_eq!(stamp_of(&"!".repeat(100)), None);
    }

    #[test]
    fn engine_events_become_acks_deliveries_and_refusals() {
        let id = MessageId::from_bytes([1; 16]);
        let mut seqs = HashMap::from([(id, 41)]);
        assert!(matches!(
            translate(Event::Sent { id }, &mut seqs),
            Some(Ok(Incoming::Acked(41)))
        ));
        assert!(
            translate(Event::Sent { id }, &mut seqs).is_none(),
            "acked once"
        );
        seqs.insert(id, 7);
        let refused = translate(
            Event::Error(ClientError::Relay {
                code: spider_protocol::ErrorCode::RATE_LIMITED,
                message: Some(id),
                text: "too many".into(),
            }),
            &mut seqs,
        );
        assert!(
            matches!(&refused, Some(Ok(Incoming::Refused { seq: 7, why })) if why.contains("RATE_LIMITED")),
            "{refused:?}"
        );
        assert!(translate(Event::CaughtUp, &mut seqs).is_none());
        let room = RoomId::from_bytes([2; 16]);
        assert!(matches!(
            translate(Event::RoomChanged { room }, &mut seqs),
            Some(Ok(Incoming::RoomChanged))
        ));
        assert!(matches!(
            translate(Event::Error(ClientError::UnknownRoom), &mut seqs),
            Some(Ok(Incoming::Error(_)))
        ));
    }
}
