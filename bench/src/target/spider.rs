//! Spider's own targets (`spider-quic`, `spider-ws`), in opaque-payload mode.
//!
//! Each simulated user opens a link with the spider-client SDK's transports
//! ([`spider_client::transport::connect`], QUIC or WebSocket forced, the relay CA pinned), says
//! `Hello`, and registers a fresh account with real spider-crypto keys: an identity, a signed
//! prekey and a last-resort KEM prekey, no one-time prekeys (set-up stays cheap; the relay does
//! the same signature checks as for any registration). The auth signature covers the `Welcome`'s
//! relay name and challenge and the connection's TLS exporter (docs/protocol.md §6.1).
//!
//! An envelope is a `SendDirect` with one copy, for the recipient's device 1, whose ciphertext is
//! the benchmark payload as it is: the relay never looks inside a ciphertext, so its cost is the
//! same as with real encryption. `Sent` (stored durably) is the target's ack; `Deliver` is a
//! delivery, acked cumulatively (acks that queue up behind other writes are merged); pings are
//! answered.
//!
//! Each client's link is split in a reader task and a writer task, so that reading never waits
//! for a write held back by the relay (which would fill the relay's queue to this client and get
//! it dropped as a slow consumer). The send half hands envelopes to the writer over a channel;
//! request ids are `seq + 2`, so `Sent` maps back to the sequence number.
//!
//! Not here yet:
//! - `--e2e` (real Double Ratchet through the SDK's `Engine`): refused with [`unavailable`].
//! - Source-address spreading: the SDK's `connect` binds QUIC endpoints to `0.0.0.0:0` and opens
//!   WebSocket TCP sockets with a plain `connect`, so every Spider client leaves from 127.0.0.1
//!   (about 28k ports towards one relay port). The SDK would need a bind address in
//!   `RelayTarget` (or a `connect_*_from(source)`).
//! - Logging in to accounts of an earlier run: every run registers fresh accounts (usernames
//!   carry the run id), so the relay's store grows by one account per client per run.

use super::{EnvelopeReceiver, EnvelopeSender, Incoming, Target, TargetKind, UserId};
use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng as _;
use spider_client::crypto_store::identity_to_wire;
use spider_client::transport::{self, Link, RelayTarget, TransportChoice};
use spider_crypto::keys::{
    IdentityKeyPair, KemPreKeyKind, KemPreKeyPair, PreKeyId as CryptoPreKeyId, SignedPreKeyPair,
};
use spider_protocol::bytes::{BoundedBytes, BoundedVec, FixedBytes};
use spider_protocol::ids::{DeviceId, MessageId, PreKeyId, RequestId, Seq};
use spider_protocol::keys::{KemPreKey, PreKeyUpload, SignedPreKey};
use spider_protocol::message::{
    Ack, DeviceCiphertext, EnvelopeBody, Pong, Register, SendDirect, Welcome,
};
use spider_protocol::name::Username;
use spider_protocol::{ClientFrame, ServerFrame, version};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Envelopes a sender may queue for its connection task before `send` waits.
const SEND_QUEUE: usize = 64;

/// How long closing a link may take when a client ends.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The agent string in `Hello`.
const AGENT: &str = concat!("spider-load/", env!("CARGO_PKG_VERSION"));

/// The error for what is not built yet (`--e2e`).
pub fn unavailable(what: &str) -> anyhow::Error {
    anyhow!(
        "{what} is not yet available: spider-load drives Spider in opaque-payload mode only \
         (the relay's cost is the same); real Double Ratchet through the SDK's Engine is still to do"
    )
}

/// Whether `kind` is one of Spider's own targets.
pub fn is_spider(kind: TargetKind) -> bool {
    matches!(kind, TargetKind::SpiderQuic | TargetKind::SpiderWs)
}

/// The username of benchmark user `user` in run `run`: unique per run, valid by the protocol's
/// rules (a letter first, at most 32 characters).
pub fn username(run: u64, user: UserId) -> anyhow::Result<Username> {
    Username::parse(&format!("load{run:016x}u{user}")).map_err(|e| anyhow!("username: {e:?}"))
}

/// A Spider relay at one address.
#[derive(Debug, Clone)]
pub struct SpiderTarget {
    relay: RelayTarget,
    choice: TransportChoice,
    run: u64,
    /// Relay account ids of the users this worker connected (a pair lives in one worker).
    directory: Arc<Mutex<HashMap<UserId, spider_protocol::ids::UserId>>>,
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
        let choice = match kind {
            TargetKind::SpiderQuic => TransportChoice::Quic,
            TargetKind::SpiderWs => TransportChoice::WebSocket,
            other => bail!("{} is not a Spider target", other.name()),
        };
        let ca_pem = std::fs::read(ca_file)
            .with_context(|| format!("reading the relay CA {}", ca_file.display()))?;
        // Fail now, not once per client.
        transport::load_ca(&ca_pem).context("the relay CA")?;
        Ok(Self {
            relay: RelayTarget {
                addr: addr.to_string(),
                server_name: server_name.to_owned(),
                ca_pem,
            },
            choice,
            run,
            directory: Arc::default(),
        })
    }

    fn remember(&self, user: UserId, account: spider_protocol::ids::UserId) {
        if let Ok(mut d) = self.directory.lock() {
            d.insert(user, account);
        }
    }
}

/// An envelope for the connection task.
#[derive(Debug)]
struct Outgoing {
    to: spider_protocol::ids::UserId,
    seq: u64,
    payload: Bytes,
}

/// Send half: a channel to the connection task.
#[derive(Debug)]
pub struct SpiderSender {
    from: UserId,
    run: u64,
    tx: mpsc::Sender<Outgoing>,
    directory: Arc<Mutex<HashMap<UserId, spider_protocol::ids::UserId>>>,
    /// Set by the connection task when the relay refused one of this client's sends.
    refused: Arc<Mutex<Option<String>>>,
}

/// Receive half: what the connection task forwards.
#[derive(Debug)]
pub struct SpiderReceiver {
    rx: mpsc::UnboundedReceiver<anyhow::Result<Incoming>>,
}

/// The message id of envelope `seq` from `from` in run `run`: unique within the run, so the
/// relay's deduplication never drops a benchmark envelope.
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

fn describe(e: &spider_protocol::message::ErrorFrame) -> String {
    format!("relay error {}: {}", e.code.0, e.message.as_str())
}

/// Reads frames until `pick` takes one; answers pings meanwhile. The caller bounds the time.
async fn wait_for<T>(
    link: &mut Link,
    what: &str,
    mut pick: impl FnMut(ServerFrame) -> Option<anyhow::Result<T>>,
) -> anyhow::Result<T> {
    // One frame per turn, until the wanted one (or an error, or the end of the connection).
    loop {
        let frame = link
            .recv()
            .await
            .with_context(|| format!("waiting for {what}"))?;
        if let ServerFrame::Ping(p) = frame {
            link.send(&ClientFrame::Pong(Pong { nonce: p.nonce }))
                .await
                .context("answering a ping")?;
            continue;
        }
        if let Some(result) = pick(frame) {
            return result;
        }
    }
}

impl Target for SpiderTarget {
    type Sender = SpiderSender;
    type Receiver = SpiderReceiver;

    async fn connect(
        &self,
        user: UserId,
        _source: IpAddr,
    ) -> anyhow::Result<(SpiderSender, SpiderReceiver)> {
        // The SDK's transports cannot bind a source address (see the module docs): `_source` is
        // not used, every client leaves from 127.0.0.1.
        let (mut link, exporter) = transport::connect(&self.relay, self.choice)
            .await
            .context("connecting")?;
        link.send(&ClientFrame::Hello(version::hello(AGENT)))
            .await
            .context("sending Hello")?;
        let welcome: Welcome = wait_for(&mut link, "Welcome", |f| match f {
            ServerFrame::Welcome(w) => Some(Ok(w)),
            ServerFrame::Error(e) => Some(Err(anyhow!("{}", describe(&e)))),
            _ => None,
        })
        .await?;
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
        let ok = wait_for(&mut link, "AuthOk", |f| match f {
            ServerFrame::AuthOk(ok) if ok.req == req => Some(Ok(ok)),
            ServerFrame::Error(e) => Some(Err(anyhow!("registration refused: {}", describe(&e)))),
            _ => None,
        })
        .await?;
        self.remember(user, ok.user);

        let (tx, cmds) = mpsc::channel(SEND_QUEUE);
        let (out, rx) = mpsc::unbounded_channel();
        let refused = Arc::new(Mutex::new(None));
        tokio::spawn(drive(link, cmds, out, Arc::clone(&refused), self.run, user));
        Ok((
            SpiderSender {
                from: user,
                run: self.run,
                tx,
                directory: Arc::clone(&self.directory),
                refused,
            },
            SpiderReceiver { rx },
        ))
    }
}

/// The request id of envelope `seq` (request 1 is the registration): the reply maps back to the
/// sequence number without shared state between the reader and the writer. Runs are bounded far
/// below 2^32 envelopes per sender.
fn req_of(seq: u64) -> RequestId {
    RequestId((seq as u32).wrapping_add(2))
}

/// The sequence number of the envelope that request `req` sent.
fn seq_of(req: RequestId) -> Option<u64> {
    req.0.checked_sub(2).map(u64::from)
}

/// The link split in two halves, so that reading never waits for a write: with one task doing
/// both, a write held back by the relay's back-pressure stops the reads, the relay's queue to
/// this client fills, and the relay drops it as a slow consumer.
enum Halves {
    Quic {
        _connection: quinn::Connection,
        _endpoint: quinn::Endpoint,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        decoder: spider_protocol::FrameDecoder<ServerFrame>,
    },
    WebSocket(Box<WsStream>),
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// The connection: a reader task (deliveries, replies, acks, pings) and a writer task.
/// Ends when the relay closes, on a fatal error, or when the receive half is dropped.
async fn drive(
    link: Link,
    cmds: mpsc::Receiver<Outgoing>,
    out: mpsc::UnboundedSender<anyhow::Result<Incoming>>,
    refused: Arc<Mutex<Option<String>>>,
    run: u64,
    from: UserId,
) {
    let halves = match link {
        Link::Quic {
            connection,
            endpoint,
            send,
            recv,
            decoder,
        } => Halves::Quic {
            _connection: connection,
            _endpoint: endpoint,
            send,
            recv,
            decoder,
        },
        Link::WebSocket(ws) => Halves::WebSocket(ws),
    };
    let (ctl_tx, ctl_rx) = mpsc::unbounded_channel::<ClientFrame>();
    match halves {
        Halves::Quic {
            _connection,
            _endpoint,
            send,
            mut recv,
            mut decoder,
        } => {
            let writer = tokio::spawn(write_loop(Writer::Quic(send), cmds, ctl_rx, run, from));
            let read = async {
                let mut buf = vec![0u8; 16 * 1024];
                // One chunk per turn, until the stream ends or fails.
                loop {
                    while let Some(frame) =
                        decoder.next_frame().map_err(|e| anyhow!("decode: {e}"))?
                    {
                        handle(frame, &out, &ctl_tx, &refused)?;
                    }
                    match recv
                        .read(&mut buf)
                        .await
                        .map_err(|e| anyhow!("quic: {e}"))?
                    {
                        Some(n) => decoder.push(buf.get(..n).unwrap_or_default()),
                        None => return Ok(()),
                    }
                }
            };
            finish(read, writer, &out, &ctl_tx).await;
            _connection.close(0u32.into(), b"bye");
            let _ = tokio::time::timeout(CLOSE_GRACE, _endpoint.wait_idle()).await;
        }
        Halves::WebSocket(ws) => {
            use futures_util::StreamExt as _;
            use tokio_tungstenite::tungstenite::Message;
            let (sink, mut stream) = (*ws).split();
            let writer = tokio::spawn(write_loop(Writer::WebSocket(sink), cmds, ctl_rx, run, from));
            let read = async {
                // One message per turn, until the stream ends or fails.
                while let Some(msg) = stream.next().await {
                    match msg.map_err(|e| anyhow!("websocket: {e}"))? {
                        Message::Binary(body) => {
                            let frame = spider_protocol::codec::decode_body::<ServerFrame>(&body)
                                .map_err(|e| anyhow!("decode: {e}"))?;
                            handle(frame, &out, &ctl_tx, &refused)?;
                        }
                        Message::Close(_) => return Ok(()),
                        _ => {}
                    }
                }
                Ok(())
            };
            finish(read, writer, &out, &ctl_tx).await;
        }
    }
}

/// Runs the reader until it ends or the receive half is dropped, then stops the writer.
async fn finish(
    read: impl std::future::Future<Output = anyhow::Result<()>>,
    writer: tokio::task::JoinHandle<anyhow::Result<()>>,
    out: &mpsc::UnboundedSender<anyhow::Result<Incoming>>,
    _ctl: &mpsc::UnboundedSender<ClientFrame>,
) {
    let result = tokio::select! {
        r = read => r,
        () = out.closed() => Ok(()),
    };
    writer.abort();
    if let Err(e) = result {
        let _ = out.send(Err(e));
    }
}

/// The write half of a link.
enum Writer {
    Quic(quinn::SendStream),
    WebSocket(futures_util::stream::SplitSink<WsStream, tokio_tungstenite::tungstenite::Message>),
}

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

/// The writer: acks and pongs from the reader first (acks that queued up are merged into one,
/// they are cumulative), then envelopes from the send half.
async fn write_loop(
    mut writer: Writer,
    mut cmds: mpsc::Receiver<Outgoing>,
    mut ctl: mpsc::UnboundedReceiver<ClientFrame>,
    run: u64,
    from: UserId,
) -> anyhow::Result<()> {
    let mut sending = true;
    // One frame (or one merged ack) per turn; ends when the reader is gone.
    loop {
        tokio::select! {
            biased;
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
                Some(o) => {
                    let copy = DeviceCiphertext {
                        device: DeviceId(1),
                        ciphertext: BoundedBytes::new(o.payload.to_vec())
                            .map_err(|_| anyhow!("payload too large for one ciphertext"))?,
                    };
                    let frame = ClientFrame::SendDirect(SendDirect {
                        req: req_of(o.seq),
                        message_id: message_id(run, from, o.seq),
                        to: o.to,
                        copies: BoundedVec::new(vec![copy])
                            .map_err(|_| anyhow!("one copy is always allowed"))?,
                    });
                    writer.write(&frame).await.context("sending")?;
                }
                // The send half is gone; acks and pongs go on.
                None => sending = false,
            },
        }
    }
}

/// Handles one frame from the relay.
fn handle(
    frame: ServerFrame,
    out: &mpsc::UnboundedSender<anyhow::Result<Incoming>>,
    ctl: &mpsc::UnboundedSender<ClientFrame>,
    refused: &Arc<Mutex<Option<String>>>,
) -> anyhow::Result<()> {
    match frame {
        ServerFrame::Deliver(d) => {
            if let EnvelopeBody::Direct { ciphertext } = d.envelope.body {
                let _ = out.send(Ok(Incoming::Delivered(Bytes::from(ciphertext.into_vec()))));
            }
            // Cumulative: the writer merges acks that queue up behind other frames.
            let _ = ctl.send(ClientFrame::Ack(Ack { up_to: d.seq }));
        }
        ServerFrame::Sent(s) => {
            if let Some(seq) = seq_of(s.req) {
                let _ = out.send(Ok(Incoming::Acked(seq)));
            }
        }
        ServerFrame::Ping(p) => {
            let _ = ctl.send(ClientFrame::Pong(Pong { nonce: p.nonce }));
        }
        ServerFrame::Error(e) => {
            if e.code.is_fatal() || e.req.is_none() {
                bail!("{}", describe(&e));
            }
            // A refused send: that sender stops (its envelope is lost, never acked);
            // deliveries to this client go on.
            let seq = e.req.and_then(seq_of);
            if let Ok(mut slot) = refused.lock() {
                slot.get_or_insert_with(|| format!("envelope {seq:?} refused: {}", describe(&e)));
            }
        }
        _ => {}
    }
    Ok(())
}

impl EnvelopeSender for SpiderSender {
    async fn send(&mut self, to: UserId, seq: u64, payload: Bytes) -> anyhow::Result<()> {
        if let Ok(slot) = self.refused.lock()
            && let Some(why) = slot.as_ref()
        {
            bail!("{why}");
        }
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
        self.tx
            .send(Outgoing {
                to: account,
                seq,
                payload,
            })
            .await
            .map_err(|_| anyhow!("connection closed"))
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
    fn spider_targets_are_recognised_and_e2e_says_what_is_missing() {
        assert!(is_spider(TargetKind::SpiderQuic) && is_spider(TargetKind::SpiderWs));
        assert!(!is_spider(TargetKind::Mosquitto) && !is_spider(TargetKind::NodeWs));
        let msg = unavailable("--e2e").to_string();
        assert!(msg.contains("not yet available") && msg.contains("opaque-payload"));
    }

    #[test]
    fn usernames_are_valid_and_distinct() {
        let a = username(u64::MAX, UserId::MAX).unwrap();
        assert!(a.as_str().len() <= 32);
        assert_ne!(username(1, 2).unwrap(), username(1, 3).unwrap());
        assert_ne!(username(1, 2).unwrap(), username(2, 2).unwrap());
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
    }

    #[test]
    fn the_minimal_prekey_upload_has_no_one_time_keys() {
        let (_, upload) = new_identity().unwrap();
        assert!(upload.signed_prekey.is_some() && upload.last_resort_kem_prekey.is_some());
        assert!(upload.one_time_prekeys.as_slice().is_empty());
        assert!(upload.one_time_kem_prekeys.as_slice().is_empty());
    }
}
