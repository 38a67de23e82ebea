//! Spider's own targets (`spider-quic`, `spider-ws`), in opaque-payload mode.
//!
//! Each simulated user opens a link from its loopback source address ([`Dialer`]: the SDK's TLS
//! configuration, QUIC or WebSocket forced, the relay CA pinned), says `Hello`, and registers a
//! fresh account with real spider-crypto keys: an identity, a signed prekey and a last-resort KEM
//! prekey, no one-time prekeys (set-up stays cheap; the relay does the same signature checks as
//! for any registration). The auth signature covers the `Welcome`'s relay name and challenge and
//! the connection's TLS exporter (docs/protocol.md §6.1).
//!
//! An envelope is a `SendDirect` with one copy, for the recipient's device 1 (or a `SendRoom`),
//! whose ciphertext is the benchmark payload as it is: the relay never looks inside a ciphertext,
//! so its cost is the same as with real encryption (`--e2e` is [`super::spider_e2e`]). `Sent`
//! (stored durably) is the target's ack; an error frame answering an envelope's request (such as
//! `RATE_LIMITED`) is [`Incoming::Refused`], a failure in the report. `Deliver` is a delivery,
//! acked cumulatively (acks that queue up behind other writes are merged); room changes are acked
//! and otherwise ignored; pings are answered.
//!
//! Each client's connection task reads and writes concurrently (two futures of one task), so that
//! reading never waits for a write held back by the relay (which would fill the relay's queue to
//! this client and get it dropped as a slow consumer). The send half hands envelopes to the task
//! over a channel; request ids are `seq + 2` for envelopes (so `Sent` maps back to the sequence
//! number) and from [`CONTROL_REQ_BASE`] up for room set-up requests, whose replies go back to the
//! caller through a oneshot channel.
//!
//! A target made [`SpiderTarget::reconnecting`] (the `reconnect-storm` scenario) keeps every
//! envelope until its `Sent`; when the connection drops (or the relay sends `Drain`), the client
//! logs in again with its identity, with a jittered exponential backoff, and sends what was not
//! acked again under the same message id (the relay stores a message id once per device).
//!
//! Not here: logging in to accounts of an earlier run. Every run registers fresh accounts
//! (usernames carry the run id), so the relay's store grows by one account per client per run.

use super::spider_link::Dialer;
use super::{
    EnvelopeReceiver, EnvelopeSender, Incoming, RoomSender, RoomTicket, Target, TargetKind, UserId,
};
use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng as _;
use spider_client::crypto_store::identity_to_wire;
use spider_client::transport::{Link, TransportChoice};
use spider_crypto::keys::{
    IdentityKeyPair, KemPreKeyKind, KemPreKeyPair, PreKeyId as CryptoPreKeyId, SignedPreKeyPair,
};
use spider_protocol::bytes::{BoundedBytes, BoundedVec, FixedBytes};
use spider_protocol::error::{ErrorCode, ErrorDetail};
use spider_protocol::ids::{
    DeviceAddress, DeviceId, LinkToken, MessageId, PreKeyId, RequestId, RoomId, Seq, Timestamp,
};
use spider_protocol::keys::{KemPreKey, PreKeyUpload, SignedPreKey};
use spider_protocol::message::{
    Ack, ChangeRoom, DeviceCiphertext, EnvelopeBody, ErrorFrame, GetRoom, Login, Ping, Pong,
    Register, RoomAction, RoomChange, RoomRef, SendDirect, SendRoom, SignedRoomChange, Welcome,
};
use spider_protocol::name::{RoomName, Username};
use spider_protocol::{ClientFrame, ServerFrame, version};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// Envelopes a sender may queue for its connection task before `send` waits.
const SEND_QUEUE: usize = 64;

/// How long closing a link may take when a client ends.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The agent string in `Hello`.
const AGENT: &str = concat!("spider-load/", env!("CARGO_PKG_VERSION"));

/// First request id of room set-up requests; envelopes use `seq + 2` below it, so a run may send
/// up to about 4 billion envelopes per client before the two could meet (runs are far shorter).
pub const CONTROL_REQ_BASE: u32 = 0xF000_0000;

/// How long a room set-up request may wait for its reply.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(60);

/// How many times a join is retried when another change moved the room's epoch first.
const MAX_STALE_RETRIES: u32 = 1000;

/// Reconnecting: first backoff delay, doubled per failed attempt up to [`BACKOFF_MAX`], with the
/// upper half jittered (as the SDK's `Backoff` does, scaled down: a benchmark measures the
/// relay's recovery, not a phone's battery-friendly patience).
pub const BACKOFF_FIRST: Duration = Duration::from_millis(100);

/// Reconnecting: the longest backoff delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Reconnecting: the bound on one attempt (connect, hello, login). QUIC toward a relay that is down
/// gets no answer at all, so only this bound ends such an attempt.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Reconnecting: how often a client pings the relay, so that it hears from a live relay at least
/// this often.
pub const PING_EVERY: Duration = Duration::from_secs(1);

/// Reconnecting: a link that heard nothing from the relay for this long is taken for dead. A
/// killed relay's QUIC connections get no close and no usable stateless reset (the restarted
/// relay has a new reset key), so without this a client would wait for QUIC's idle timeout
/// (`QUIC_IDLE_TIMEOUT`, 90 s).
pub const DEAD_AFTER: Duration = Duration::from_secs(3);

/// Whether `kind` is one of Spider's own targets.
pub fn is_spider(kind: TargetKind) -> bool {
    matches!(kind, TargetKind::SpiderQuic | TargetKind::SpiderWs)
}

/// The transport a Spider target forces.
pub fn transport_of(kind: TargetKind) -> anyhow::Result<TransportChoice> {
    match kind {
        TargetKind::SpiderQuic => Ok(TransportChoice::Quic),
        TargetKind::SpiderWs => Ok(TransportChoice::WebSocket),
        other => bail!("{} is not a Spider target", other.name()),
    }
}

/// The username of benchmark user `user` in run `run`: unique per run, valid by the protocol's
/// rules (a letter first, at most 32 characters).
pub fn username(run: u64, user: UserId) -> anyhow::Result<Username> {
    Username::parse(&format!("load{run:016x}u{user}")).map_err(|e| anyhow!("username: {e:?}"))
}

/// The name of benchmark room `name` in run `run` (same rules as usernames).
pub fn room_name(run: u64, name: &str) -> anyhow::Result<RoomName> {
    RoomName::parse(&format!("load{run:016x}{name}")).map_err(|e| anyhow!("room name: {e:?}"))
}

/// The relay's id of a benchmark user (a pair, or a room, lives in one worker).
type Directory = Arc<Mutex<HashMap<UserId, spider_protocol::ids::UserId>>>;

/// A Spider relay at one address.
#[derive(Debug, Clone)]
pub struct SpiderTarget {
    dialer: Dialer,
    run: u64,
    directory: Directory,
    reconnect: bool,
}

impl SpiderTarget {
    /// The relay at `addr`, reached as `kind` (QUIC or WebSocket), trusting only the CA in
    /// `ca_file`, whose certificate names `server_name`. `run` makes usernames unique.
    pub fn new(
        kind: TargetKind,
        addr: SocketAddr,
        ca_file: &Path,
        server_name: &str,
        run: u64,
    ) -> anyhow::Result<Self> {
        let ca_pem = std::fs::read(ca_file)
            .with_context(|| format!("reading the relay CA {}", ca_file.display()))?;
        Ok(Self {
            dialer: Dialer::new(addr, server_name, &ca_pem, transport_of(kind)?)?,
            run,
            directory: Arc::default(),
            reconnect: false,
        })
    }

    /// The same target, whose clients log in again whenever their connection drops.
    pub fn reconnecting(mut self) -> Self {
        self.reconnect = true;
        self
    }

    fn remember(&self, user: UserId, account: spider_protocol::ids::UserId) {
        if let Ok(mut d) = self.directory.lock() {
            d.insert(user, account);
        }
    }
}

/// What a client is on the relay: enough to log in again.
struct Account {
    identity: IdentityKeyPair,
    addr: DeviceAddress,
}

/// Where one envelope goes.
#[derive(Debug, Clone, Copy)]
enum Dest {
    Direct(spider_protocol::ids::UserId),
    /// A room, with the sender's view of it that the relay checks: its epoch and the digest of
    /// the member devices it fans out to.
    Room(RoomId, u64, FixedBytes<32>),
}

/// One envelope, kept until the relay says `Sent` (or refuses it).
#[derive(Debug, Clone)]
struct Env {
    dest: Dest,
    seq: u64,
    payload: Bytes,
}

impl Env {
    fn frame(&self, run: u64, from: UserId) -> anyhow::Result<ClientFrame> {
        let req = req_of(self.seq);
        let message_id = message_id(run, from, self.seq);
        Ok(match self.dest {
            Dest::Direct(to) => {
                let copy = DeviceCiphertext {
                    device: DeviceId(1),
                    ciphertext: BoundedBytes::new(self.payload.to_vec())
                        .map_err(|_| anyhow!("payload too large for one ciphertext"))?,
                };
                ClientFrame::SendDirect(SendDirect {
                    req,
                    message_id,
                    to,
                    copies: BoundedVec::new(vec![copy])
                        .map_err(|_| anyhow!("one copy is always allowed"))?,
                })
            }
            Dest::Room(room, epoch, devices) => ClientFrame::SendRoom(SendRoom {
                req,
                message_id,
                room,
                epoch,
                devices,
                ciphertext: BoundedBytes::new(self.payload.to_vec())
                    .map_err(|_| anyhow!("payload too large for one ciphertext"))?,
            }),
        })
    }
}

/// What the send half asks of the connection task.
enum Outgoing {
    Envelope(Env),
    // Boxed: a room change is far larger than an envelope, and far rarer.
    /// A request whose reply (or error frame) goes back through `reply`.
    Control {
        req: RequestId,
        frame: Box<ClientFrame>,
        reply: oneshot::Sender<ServerFrame>,
    },
}

/// State of one client that outlives its links.
#[derive(Default)]
struct ClientState {
    /// Envelopes written (or about to be) and not yet answered, by sequence number.
    unacked: Mutex<BTreeMap<u64, Env>>,
    /// Room set-up requests waiting for their reply.
    controls: Mutex<HashMap<RequestId, oneshot::Sender<ServerFrame>>>,
    /// When the current link last received a frame, in ms since the driver's epoch.
    last_heard_ms: AtomicU64,
}

/// Send half: a channel to the connection task.
pub struct SpiderSender {
    from: UserId,
    run: u64,
    tx: mpsc::Sender<Outgoing>,
    directory: Directory,
    account: Arc<Account>,
    next_control: AtomicU32,
    /// Rooms' epochs and member-device digests, read once before the first post (the scenario
    /// posts only once the room is full, so the view stays current).
    rooms: HashMap<RoomId, (u64, FixedBytes<32>)>,
}

impl std::fmt::Debug for SpiderSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpiderSender")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

/// Receive half: what the connection task forwards.
#[derive(Debug)]
pub struct SpiderReceiver {
    rx: mpsc::UnboundedReceiver<anyhow::Result<Incoming>>,
}

/// The message id of envelope `seq` from `from` in run `run`: unique within the run, so the
/// relay's deduplication never drops a benchmark envelope, and the same on a resend, so that it
/// drops a resent one it already stored.
fn message_id(run: u64, from: UserId, seq: u64) -> MessageId {
    let mut b = [0u8; 16];
    let (head, tail) = b.split_at_mut(8);
    head.copy_from_slice(&seq.to_be_bytes());
    let mixed = (run << 32) ^ u64::from(from);
    tail.copy_from_slice(&mixed.to_be_bytes());
    MessageId::from_bytes(b)
}

/// A fresh key-generation RNG.
fn rng() -> anyhow::Result<ChaCha20Rng> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow!("OS randomness: {e}"))?;
    Ok(ChaCha20Rng::from_seed(seed))
}

/// A new identity and the minimal prekey upload: signed prekey and last-resort KEM prekey.
fn new_identity() -> anyhow::Result<(IdentityKeyPair, PreKeyUpload)> {
    let mut rng = rng()?;
    let identity = IdentityKeyPair::generate(&mut rng);
    let spk = SignedPreKeyPair::generate(&mut rng, &identity, CryptoPreKeyId(1), 0).public();
    let kem = KemPreKeyPair::generate(
        &mut rng,
        &identity,
        CryptoPreKeyId(2),
        KemPreKeyKind::LastResort,
        0,
    );
    let kem = kem.public();
    let upload = PreKeyUpload {
        signed_prekey: Some(SignedPreKey {
            id: PreKeyId(spk.id.0),
            public: FixedBytes(spk.public),
            signature: FixedBytes(spk.signature),
        }),
        last_resort_kem_prekey: Some(KemPreKey {
            id: PreKeyId(2),
            public: FixedBytes(*kem.public_bytes()),
            signature: FixedBytes(*kem.signature()),
        }),
        one_time_prekeys: BoundedVec::empty(),
        one_time_kem_prekeys: BoundedVec::empty(),
    };
    Ok((identity, upload))
}

/// An error frame as text (its code, its name, and the relay's explanation).
pub fn describe(e: &ErrorFrame) -> String {
    format!("relay error {:?}: {}", e.code, e.message.as_str())
}

/// Milliseconds since the Unix epoch (room changes carry the actor's clock).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Reads frames until `pick` takes one; answers pings meanwhile; an error frame ends the wait.
/// The caller bounds the time.
async fn wait_for<T>(
    link: &mut Link,
    what: &str,
    mut pick: impl FnMut(ServerFrame) -> Option<T>,
) -> anyhow::Result<T> {
    // One frame per turn, until the wanted one (or an error, or the end of the connection).
    loop {
        let frame = link
            .recv()
            .await
            .with_context(|| format!("waiting for {what}"))?;
        match frame {
            ServerFrame::Ping(p) => {
                link.send(&ClientFrame::Pong(Pong { nonce: p.nonce }))
                    .await
                    .context("answering a ping")?;
            }
            ServerFrame::Error(e) => bail!("{what} refused: {}", describe(&e)),
            ServerFrame::Drain(_) => bail!("the relay is draining (waiting for {what})"),
            other => {
                if let Some(v) = pick(other) {
                    return Ok(v);
                }
            }
        }
    }
}

/// Connects from `source` and says hello; returns the link, its exporter and the welcome.
async fn hello(dialer: &Dialer, source: IpAddr) -> anyhow::Result<(Link, [u8; 32], Welcome)> {
    let (mut link, exporter) = dialer.connect(source).await.context("connecting")?;
    link.send(&ClientFrame::Hello(version::hello(AGENT)))
        .await
        .context("sending Hello")?;
    let welcome = wait_for(&mut link, "Welcome", |f| match f {
        ServerFrame::Welcome(w) => Some(w),
        _ => None,
    })
    .await?;
    Ok((link, exporter, welcome))
}

/// Logs in again as `account` from `source`.
async fn login(dialer: &Dialer, source: IpAddr, account: &Account) -> anyhow::Result<Link> {
    let (mut link, exporter, welcome) = hello(dialer, source).await?;
    let auth = account
        .identity
        .sign_auth_challenge(welcome.relay_name.as_str(), &exporter, &welcome.challenge.0)
        .map_err(|e| anyhow!("signing the challenge: {e:?}"))?;
    let req = RequestId(1);
    link.send(&ClientFrame::Login(Login {
        req,
        user: account.addr.user,
        device: account.addr.device,
        auth: FixedBytes(auth),
    }))
    .await
    .context("sending Login")?;
    wait_for(&mut link, "Login", |f| match f {
        ServerFrame::AuthOk(ok) if ok.req == req => Some(()),
        _ => None,
    })
    .await?;
    Ok(link)
}

impl Target for SpiderTarget {
    type Sender = SpiderSender;
    type Receiver = SpiderReceiver;

    async fn connect(
        &self,
        user: UserId,
        source: IpAddr,
    ) -> anyhow::Result<(SpiderSender, SpiderReceiver)> {
        let (mut link, exporter, welcome) = hello(&self.dialer, source).await?;
        let (identity, prekeys) = new_identity()?;
        let auth = identity
            .sign_auth_challenge(welcome.relay_name.as_str(), &exporter, &welcome.challenge.0)
            .map_err(|e| anyhow!("signing the challenge: {e:?}"))?;
        let req = RequestId(1);
        link.send(&ClientFrame::Register(Register {
            req,
            username: username(self.run, user)?,
            identity: identity_to_wire(identity.public()),
            prekeys,
            auth: FixedBytes(auth),
        }))
        .await
        .context("sending Register")?;
        let ok = wait_for(&mut link, "registration", |f| match f {
            ServerFrame::AuthOk(ok) if ok.req == req => Some(ok),
            _ => None,
        })
        .await?;
        self.remember(user, ok.user);
        let account = Arc::new(Account {
            identity,
            addr: DeviceAddress {
                user: ok.user,
                device: ok.device,
            },
        });

        let (tx, cmds) = mpsc::channel(SEND_QUEUE);
        let (out, rx) = mpsc::unbounded_channel();
        let driver = Driver {
            dialer: self.dialer.clone(),
            source,
            account: Arc::clone(&account),
            run: self.run,
            from: user,
            reconnect: self.reconnect,
            state: Arc::default(),
            epoch: Instant::now(),
        };
        tokio::spawn(driver.run(link, cmds, out));
        Ok((
            SpiderSender {
                from: user,
                run: self.run,
                tx,
                directory: Arc::clone(&self.directory),
                account,
                next_control: AtomicU32::new(CONTROL_REQ_BASE),
                rooms: HashMap::new(),
            },
            SpiderReceiver { rx },
        ))
    }
}

/// The request id of envelope `seq` (request 1 is the registration): the reply maps back to the
/// sequence number without shared state between the reader and the writer.
fn req_of(seq: u64) -> RequestId {
    RequestId((seq as u32).wrapping_add(2))
}

/// The sequence number of the envelope that request `req` sent (`None` for the registration and
/// room set-up requests).
fn seq_of(req: RequestId) -> Option<u64> {
    (req.0 < CONTROL_REQ_BASE)
        .then(|| req.0.checked_sub(2).map(u64::from))
        .flatten()
}

/// The request id a reply answers, for the replies room set-up waits for.
fn reply_req(frame: &ServerFrame) -> Option<RequestId> {
    match frame {
        ServerFrame::RoomInfo(r) => Some(r.req),
        ServerFrame::LinkCreated(l) => Some(l.req),
        ServerFrame::Done(d) => Some(d.req),
        ServerFrame::Error(e) => e.req,
        _ => None,
    }
}

/// Why one link ended.
enum LinkEnd {
    /// The relay closed it.
    Closed,
    /// The relay asked to come back after this long.
    Drain(Duration),
    /// A read, write or protocol failure.
    Failed(anyhow::Error),
    /// The receive half was dropped: the run is over for this client.
    ReceiverGone,
}

/// One client's connection task, across reconnects.
struct Driver {
    dialer: Dialer,
    source: IpAddr,
    account: Arc<Account>,
    run: u64,
    from: UserId,
    reconnect: bool,
    state: Arc<ClientState>,
    /// The origin of `state.last_heard_ms`.
    epoch: Instant,
}

type Out = mpsc::UnboundedSender<anyhow::Result<Incoming>>;

impl Driver {
    /// Serves `link`, then (when reconnecting) each new link, until the receive half is dropped.
    async fn run(self, mut link: Link, mut cmds: mpsc::Receiver<Outgoing>, out: Out) {
        let mut attempt: u32 = 0;
        // One link per turn; ends when the run is over for this client or the link cannot be
        // replaced.
        loop {
            let end = self.serve(link, &mut cmds, &out).await;
            // Room set-up waits on this link's replies: they will not come.
            if let Ok(mut c) = self.state.controls.lock() {
                c.clear();
            }
            let wait = match end {
                LinkEnd::ReceiverGone => return,
                LinkEnd::Drain(after) if self.reconnect => after,
                LinkEnd::Closed | LinkEnd::Failed(_) if self.reconnect => Duration::ZERO,
                LinkEnd::Closed => return,
                LinkEnd::Drain(_) => {
                    let _ = out.send(Err(anyhow!("the relay is draining")));
                    return;
                }
                LinkEnd::Failed(e) => {
                    let _ = out.send(Err(e));
                    return;
                }
            };
            let _ = out.send(Ok(Incoming::Disconnected));
            let mut delay = wait;
            // One login attempt per turn, until one succeeds or the run is over.
            link = loop {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = out.closed() => return,
                }
                let tried = tokio::time::timeout(
                    ATTEMPT_TIMEOUT,
                    login(&self.dialer, self.source, &self.account),
                )
                .await;
                match tried {
                    Ok(Ok(link)) => {
                        attempt = 0;
                        break link;
                    }
                    Ok(Err(_)) | Err(_) => {
                        attempt = attempt.saturating_add(1);
                        delay = backoff(attempt, self.from);
                    }
                }
            };
            let _ = out.send(Ok(Incoming::Reconnected));
        }
    }

    fn since_epoch_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Ends once the relay has been silent for [`DEAD_AFTER`] (reconnecting targets only; the
    /// others wait for the transport to say the link is gone).
    async fn watchdog(&self) -> LinkEnd {
        if !self.reconnect {
            return std::future::pending().await;
        }
        let dead_ms = u64::try_from(DEAD_AFTER.as_millis()).unwrap_or(u64::MAX);
        // One look per turn, until the relay has been silent too long.
        loop {
            tokio::time::sleep(DEAD_AFTER / 8).await;
            let heard = self.state.last_heard_ms.load(Ordering::Relaxed);
            if self.since_epoch_ms().saturating_sub(heard) > dead_ms {
                return LinkEnd::Failed(anyhow!("no frame from the relay for {DEAD_AFTER:?}"));
            }
        }
    }

    /// Reads and writes one link until it ends.
    async fn serve(&self, link: Link, cmds: &mut mpsc::Receiver<Outgoing>, out: &Out) -> LinkEnd {
        self.state
            .last_heard_ms
            .store(self.since_epoch_ms(), Ordering::Relaxed);
        let (ctl_tx, mut ctl_rx) = mpsc::unbounded_channel::<ClientFrame>();
        match link {
            Link::Quic {
                connection,
                endpoint,
                send,
                mut recv,
                mut decoder,
            } => {
                let mut writer = Writer::Quic(send);
                let read = async {
                    let mut buf = vec![0u8; 16 * 1024];
                    // One chunk per turn, until the stream ends, fails, or a frame ends the link.
                    loop {
                        loop {
                            match decoder.next_frame() {
                                Ok(Some(frame)) => {
                                    if let Some(end) = self.handle(frame, out, &ctl_tx) {
                                        return end;
                                    }
                                }
                                Ok(None) => break,
                                Err(e) => return LinkEnd::Failed(anyhow!("decode: {e}")),
                            }
                        }
                        match recv.read(&mut buf).await {
                            Ok(Some(n)) => decoder.push(buf.get(..n).unwrap_or_default()),
                            Ok(None) => return LinkEnd::Closed,
                            Err(e) => return LinkEnd::Failed(anyhow!("quic: {e}")),
                        }
                    }
                };
                let end = self.race(read, &mut writer, cmds, &mut ctl_rx, out).await;
                connection.close(0u32.into(), b"bye");
                if matches!(end, LinkEnd::ReceiverGone) {
                    let _ = tokio::time::timeout(CLOSE_GRACE, endpoint.wait_idle()).await;
                }
                end
            }
            Link::WebSocket(ws) => {
                use futures_util::StreamExt as _;
                use tokio_tungstenite::tungstenite::Message;
                let (sink, mut stream) = (*ws).split();
                let mut writer = Writer::WebSocket(sink);
                let read = async {
                    // One message per turn, until the stream ends, fails, or a frame ends the link.
                    while let Some(msg) = stream.next().await {
                        match msg {
                            Ok(Message::Binary(body)) => {
                                match spider_protocol::codec::decode_body::<ServerFrame>(&body) {
                                    Ok(frame) => {
                                        if let Some(end) = self.handle(frame, out, &ctl_tx) {
                                            return end;
                                        }
                                    }
                                    Err(e) => return LinkEnd::Failed(anyhow!("decode: {e}")),
                                }
                            }
                            Ok(Message::Close(_)) => return LinkEnd::Closed,
                            Ok(_) => {}
                            Err(e) => return LinkEnd::Failed(anyhow!("websocket: {e}")),
                        }
                    }
                    LinkEnd::Closed
                };
                self.race(read, &mut writer, cmds, &mut ctl_rx, out).await
            }
        }
    }

    /// Runs the reader and the writer of one link together until either ends or the receive half
    /// is dropped.
    async fn race(
        &self,
        read: impl std::future::Future<Output = LinkEnd>,
        writer: &mut Writer,
        cmds: &mut mpsc::Receiver<Outgoing>,
        ctl: &mut mpsc::UnboundedReceiver<ClientFrame>,
        out: &Out,
    ) -> LinkEnd {
        tokio::select! {
            end = read => end,
            w = self.write_loop(writer, cmds, ctl) => match w {
                Err(e) => LinkEnd::Failed(e),
                Ok(()) => LinkEnd::Closed,
            },
            end = self.watchdog() => end,
            () = out.closed() => LinkEnd::ReceiverGone,
        }
    }

    /// The writer: first every envelope not yet answered (a new link after a reconnect), then
    /// acks and pongs from the reader (acks that queued up are merged into one, they are
    /// cumulative) before envelopes and requests from the send half.
    async fn write_loop(
        &self,
        writer: &mut Writer,
        cmds: &mut mpsc::Receiver<Outgoing>,
        ctl: &mut mpsc::UnboundedReceiver<ClientFrame>,
    ) -> anyhow::Result<()> {
        let resend: Vec<Env> = self
            .state
            .unacked
            .lock()
            .map(|u| u.values().cloned().collect())
            .unwrap_or_default();
        for env in &resend {
            writer
                .write(&env.frame(self.run, self.from)?)
                .await
                .context("resending")?;
        }
        let mut sending = true;
        let mut ping = tokio::time::interval(PING_EVERY);
        let mut nonce: u64 = 0;
        // One frame (or one merged ack) per turn; ends when a write fails.
        loop {
            tokio::select! {
                biased;
                _ = ping.tick(), if self.reconnect => {
                    nonce = nonce.wrapping_add(1);
                    writer.write(&ClientFrame::Ping(Ping { nonce })).await.context("pinging")?;
                }
                frame = ctl.recv() => {
                    let Some(frame) = frame else { return Ok(()) };
                    let mut up_to: Option<Seq> = None;
                    let mut others = Vec::new();
                    let queued = std::iter::from_fn(|| ctl.try_recv().ok());
                    for f in std::iter::once(frame).chain(queued) {
                        match f {
                            ClientFrame::Ack(a) => {
                                up_to = Some(up_to.map_or(a.up_to, |u| u.max(a.up_to)));
                            }
                            other => others.push(other),
                        }
                    }
                    for f in &others {
                        writer.write(f).await?;
                    }
                    if let Some(up_to) = up_to {
                        writer.write(&ClientFrame::Ack(Ack { up_to })).await.context("acking")?;
                    }
                }
                cmd = cmds.recv(), if sending => match cmd {
                    Some(Outgoing::Envelope(env)) => {
                        let frame = env.frame(self.run, self.from)?;
                        // Kept before it is written: a link that fails mid-write resends it.
                        if let Ok(mut u) = self.state.unacked.lock() {
                            u.insert(env.seq, env);
                        }
                        writer.write(&frame).await.context("sending")?;
                    }
                    Some(Outgoing::Control { req, frame, reply }) => {
                        if let Ok(mut c) = self.state.controls.lock() {
                            c.insert(req, reply);
                        }
                        writer.write(&frame).await.context("sending a request")?;
                    }
                    // The send half is gone; acks and pongs go on.
                    None => sending = false,
                },
            }
        }
    }

    /// Handles one frame from the relay; `Some` ends the link.
    fn handle(
        &self,
        frame: ServerFrame,
        out: &Out,
        ctl: &mpsc::UnboundedSender<ClientFrame>,
    ) -> Option<LinkEnd> {
        self.state
            .last_heard_ms
            .store(self.since_epoch_ms(), Ordering::Relaxed);
        if let Some(req) = reply_req(&frame)
            && req.0 >= CONTROL_REQ_BASE
        {
            let waiting = self.state.controls.lock().ok()?.remove(&req);
            if let Some(reply) = waiting {
                let _ = reply.send(frame);
            }
            return None;
        }
        match frame {
            ServerFrame::Deliver(d) => {
                match d.envelope.body {
                    EnvelopeBody::Direct { ciphertext } | EnvelopeBody::Room { ciphertext, .. } => {
                        let _ =
                            out.send(Ok(Incoming::Delivered(Bytes::from(ciphertext.into_vec()))));
                    }
                    // Membership changes (one per join to every member while a room fills up):
                    // the room scenario waits for them before it starts posting.
                    EnvelopeBody::RoomChange(_) => {
                        let _ = out.send(Ok(Incoming::RoomChanged));
                    }
                }
                // Cumulative: the writer merges acks that queue up behind other frames.
                let _ = ctl.send(ClientFrame::Ack(Ack { up_to: d.seq }));
            }
            ServerFrame::Sent(s) => {
                if let Some(seq) = seq_of(s.req) {
                    if let Ok(mut u) = self.state.unacked.lock() {
                        u.remove(&seq);
                    }
                    let _ = out.send(Ok(Incoming::Acked(seq)));
                }
            }
            ServerFrame::Ping(p) => {
                let _ = ctl.send(ClientFrame::Pong(Pong { nonce: p.nonce }));
            }
            ServerFrame::Drain(d) => {
                return Some(LinkEnd::Drain(Duration::from_millis(u64::from(
                    d.reconnect_after_ms,
                ))));
            }
            ServerFrame::Error(e) => {
                if e.code.is_fatal() || e.req.is_none() {
                    return Some(LinkEnd::Failed(anyhow!("{}", describe(&e))));
                }
                // A refused envelope (RATE_LIMITED, MAILBOX_FULL, ...): never acked, never
                // delivered, not resent; the scenario counts it as a failure.
                if let Some(seq) = e.req.and_then(seq_of) {
                    if let Ok(mut u) = self.state.unacked.lock() {
                        u.remove(&seq);
                    }
                    let _ = out.send(Ok(Incoming::Refused {
                        seq,
                        why: describe(&e),
                    }));
                }
            }
            _ => {}
        }
        None
    }
}

/// The delay before reconnect attempt `attempt` (from 1) of client `user`: doubling from
/// [`BACKOFF_FIRST`] up to [`BACKOFF_MAX`], the upper half spread by a hash of the client and the
/// attempt, so that clients that lost the relay together do not all come back in the same
/// millisecond.
pub fn backoff(attempt: u32, user: UserId) -> Duration {
    let base = BACKOFF_FIRST
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(BACKOFF_MAX);
    let half = base / 2;
    // SplitMix64 of (user, attempt): cheap, stateless, well spread.
    let mut z = (u64::from(user) << 32 | u64::from(attempt)).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let half_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX).max(1);
    half + Duration::from_millis(z % (half_ms + 1))
}

/// The write half of a link.
enum Writer {
    Quic(quinn::SendStream),
    WebSocket(futures_util::stream::SplitSink<WsStream, tokio_tungstenite::tungstenite::Message>),
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

impl Writer {
    async fn write(&mut self, frame: &ClientFrame) -> anyhow::Result<()> {
        match self {
            Writer::Quic(send) => {
                let mut buf = Vec::new();
                spider_protocol::codec::encode_stream(frame, &mut buf)
                    .map_err(|e| anyhow!("encoding: {e}"))?;
                send.write_all(&buf).await.map_err(|e| anyhow!("quic: {e}"))
            }
            Writer::WebSocket(sink) => {
                use futures_util::SinkExt as _;
                let body = spider_protocol::codec::encode_body(frame)
                    .map_err(|e| anyhow!("encoding: {e}"))?;
                sink.send(tokio_tungstenite::tungstenite::Message::Binary(body.into()))
                    .await
                    .map_err(|e| anyhow!("websocket: {e}"))
            }
        }
    }
}

impl SpiderSender {
    async fn submit(&mut self, env: Env) -> anyhow::Result<()> {
        self.tx
            .send(Outgoing::Envelope(env))
            .await
            .map_err(|_| anyhow!("connection closed"))
    }

    /// Sends a request built for a fresh request id and waits for its reply (an error frame is
    /// returned as a frame, for the caller to read).
    async fn request(
        &mut self,
        build: impl FnOnce(RequestId) -> ClientFrame,
    ) -> anyhow::Result<ServerFrame> {
        let req = RequestId(self.next_control.fetch_add(1, Ordering::Relaxed));
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Outgoing::Control {
                req,
                frame: Box::new(build(req)),
                reply,
            })
            .await
            .map_err(|_| anyhow!("connection closed"))?;
        tokio::time::timeout(CONTROL_TIMEOUT, answer)
            .await
            .map_err(|_| anyhow!("no reply within {CONTROL_TIMEOUT:?}"))?
            .map_err(|_| anyhow!("connection closed before the reply"))
    }

    /// What `SendRoom` must name: the room's epoch and the digest of its member devices but
    /// this one, as `GetRoom` reads them.
    async fn room_view(&mut self, room: RoomId) -> anyhow::Result<(u64, FixedBytes<32>)> {
        let me = self.account.addr;
        match self
            .request(|req| {
                ClientFrame::GetRoom(GetRoom {
                    req,
                    room: RoomRef::Id(room),
                })
            })
            .await?
        {
            ServerFrame::RoomInfo(info) => Ok((info.epoch, info.devices_digest(me))),
            ServerFrame::Error(e) => bail!("reading a room: {}", describe(&e)),
            other => bail!("reading a room: unexpected reply {other:?}"),
        }
    }

    /// Signs and submits a room change; returns the relay's reply.
    async fn change(
        &mut self,
        room: RoomId,
        epoch: u64,
        action: RoomAction,
    ) -> anyhow::Result<ServerFrame> {
        let change = RoomChange {
            room,
            epoch,
            actor: self.account.addr,
            at: Timestamp(now_ms()),
            action,
        };
        let signature = FixedBytes(
            self.account
                .identity
                .sign_room_change(&change.signed_bytes()),
        );
        self.request(|req| {
            ClientFrame::ChangeRoom(ChangeRoom {
                req,
                change: SignedRoomChange { change, signature },
            })
        })
        .await
    }
}

impl EnvelopeSender for SpiderSender {
    async fn send(&mut self, to: UserId, seq: u64, payload: Bytes) -> anyhow::Result<()> {
        let account = self
            .directory
            .lock()
            .ok()
            .and_then(|d| d.get(&to).copied())
            .with_context(|| {
                format!(
                    "user {to} is not connected in this worker (run {:x}, from {})",
                    self.run, self.from
                )
            })?;
        self.submit(Env {
            dest: Dest::Direct(account),
            seq,
            payload,
        })
        .await
    }
}

impl RoomSender for SpiderSender {
    async fn create_room(&mut self, name: &str) -> anyhow::Result<RoomTicket> {
        let name = room_name(self.run, name)?;
        // docs/protocol.md: a create names the all-zero room at epoch 0; the relay picks the id.
        let created = self
            .change(RoomId::from_bytes([0; 16]), 0, RoomAction::Create { name })
            .await?;
        let (id, epoch) = match created {
            ServerFrame::RoomInfo(info) => (info.room, info.epoch),
            ServerFrame::Error(e) => bail!("creating a room: {}", describe(&e)),
            other => bail!("creating a room: unexpected reply {other:?}"),
        };
        let linked = self
            .change(
                id,
                epoch,
                RoomAction::CreateLink {
                    expires_at: None,
                    max_uses: None,
                },
            )
            .await?;
        match linked {
            ServerFrame::LinkCreated(l) => Ok(RoomTicket {
                id: *l.room.as_bytes(),
                link: *l.token.as_bytes(),
                epoch: l.epoch,
            }),
            ServerFrame::Error(e) => bail!("making an invite link: {}", describe(&e)),
            other => bail!("making an invite link: unexpected reply {other:?}"),
        }
    }

    async fn join_room(&mut self, room: &RoomTicket) -> anyhow::Result<u64> {
        let id = RoomId::from_bytes(room.id);
        let token = LinkToken::from_bytes(room.link);
        let mut epoch = room.epoch;
        // One attempt per turn: another member's join may move the epoch first.
        for _ in 0..MAX_STALE_RETRIES {
            match self
                .change(id, epoch, RoomAction::JoinByLink { token })
                .await?
            {
                ServerFrame::RoomInfo(info) => return Ok(info.epoch),
                ServerFrame::Error(e) if e.code == ErrorCode::STALE_EPOCH => match e.detail {
                    ErrorDetail::Epoch { current } => epoch = current,
                    _ => bail!("joining a room: {}", describe(&e)),
                },
                ServerFrame::Error(e) => bail!("joining a room: {}", describe(&e)),
                other => bail!("joining a room: unexpected reply {other:?}"),
            }
        }
        bail!("joining a room: the epoch moved {MAX_STALE_RETRIES} times in a row")
    }

    async fn send_room(
        &mut self,
        room: &RoomTicket,
        seq: u64,
        payload: Bytes,
    ) -> anyhow::Result<()> {
        let id = RoomId::from_bytes(room.id);
        let (epoch, devices) = match self.rooms.get(&id) {
            Some(v) => *v,
            None => {
                let v = self.room_view(id).await?;
                self.rooms.insert(id, v);
                v
            }
        };
        self.submit(Env {
            dest: Dest::Room(id, epoch, devices),
            seq,
            payload,
        })
        .await
    }
}

impl EnvelopeReceiver for SpiderReceiver {
    async fn next(&mut self) -> anyhow::Result<Option<Incoming>> {
        self.rx.recv().await.transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spider_targets_are_recognised() {
        assert!(is_spider(TargetKind::SpiderQuic) && is_spider(TargetKind::SpiderWs));
        assert!(!is_spider(TargetKind::Mosquitto) && !is_spider(TargetKind::NodeWs));
        assert!(transport_of(TargetKind::NodeWs).is_err());
    }

    #[test]
    fn usernames_and_room_names_are_valid_and_distinct() {
        let a = username(u64::MAX, UserId::MAX).unwrap();
        assert!(a.as_str().len() <= 32);
        assert_ne!(username(1, 2).unwrap(), username(1, 3).unwrap());
        assert_ne!(username(1, 2).unwrap(), username(2, 2).unwrap());
        assert!(room_name(u64::MAX, "r4294967295").is_ok());
        assert_ne!(room_name(1, "r1").unwrap(), room_name(1, "r2").unwrap());
    }

    #[test]
    fn message_ids_differ_by_sender_and_sequence() {
        let ids = [
            message_id(7, 1, 0),
            message_id(7, 1, 1),
            message_id(7, 2, 0),
            message_id(8, 1, 0),
        ];
        for (i, a) in ids.iter().enumerate() {
            for b in ids.iter().skip(i + 1) {
                assert_ne!(a, b);
            }
        }
        // A resend is the same message to the relay.
        assert_eq!(message_id(7, 1, 5), message_id(7, 1, 5));
    }

    #[test]
    fn envelope_and_control_request_ids_never_meet() {
        for seq in [0, 1, 1000, u64::from(CONTROL_REQ_BASE) - 3] {
            assert_eq!(seq_of(req_of(seq)), Some(seq));
        }
        assert_eq!(seq_of(RequestId(1)), None, "the registration");
        assert_eq!(seq_of(RequestId(CONTROL_REQ_BASE)), None);
        assert_eq!(seq_of(RequestId(u32::MAX)), None);
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_spreads_clients() {
        for user in [0, 1, 77, UserId::MAX] {
            let first = backoff(1, user);
            assert!(
                first >= BACKOFF_FIRST / 2 && first <= BACKOFF_FIRST,
                "{first:?}"
            );
            let third = backoff(3, user);
            assert!(
                third >= BACKOFF_FIRST * 2 && third <= BACKOFF_FIRST * 4,
                "{third:?}"
            );
            for attempt in [10, 31, u32::MAX] {
                let d = backoff(attempt, user);
                assert!(d >= BACKOFF_MAX / 2 && d <= BACKOFF_MAX, "{d:?}");
            }
        }
        let spread: std::collections::BTreeSet<Duration> =
            (0..100).map(|u| backoff(4, u)).collect();
        assert!(
            spread.len() > 50,
            "clients come back at {} instants",
            spread.len()
        );
    }

    #[test]
    fn the_minimal_prekey_upload_has_no_one_time_keys() {
        let (_, upload) = new_identity().unwrap();
        assert!(upload.signed_prekey.is_some() && upload.last_resort_kem_prekey.is_some());
        assert!(upload.one_time_prekeys.as_slice().is_empty());
        assert!(upload.one_time_kem_prekeys.as_slice().is_empty());
    }

    #[test]
    fn error_frames_are_described_with_their_code() {
        let e = ErrorFrame {
            req: Some(RequestId(5)),
            code: ErrorCode::RATE_LIMITED,
            message: spider_protocol::bytes::BoundedString::new("slow down").unwrap(),
            detail: ErrorDetail::None,
        };
        let text = describe(&e);
        assert!(
            text.contains("RATE_LIMITED(300)") && text.contains("slow down"),
            "{text}"
        );
    }
}
