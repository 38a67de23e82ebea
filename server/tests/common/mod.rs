//! A small Spider test client over real QUIC and real WebSocket-over-TLS,
//! built from spider-protocol, quinn and tokio-tungstenite, with real
//! Ed25519 signatures over exactly the payloads the relay checks.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use quinn::crypto::rustls::QuicClientConfig;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use spider_crypto::keys::{IdentityKeyPair, KemPreKeyKind, KemPreKeyPair, SignedPreKeyPair};
use spider_protocol::bytes::{BoundedBytes, BoundedString, BoundedVec, FixedBytes};
use spider_protocol::ids::{DeviceId, MessageId, PreKeyId, RequestId, UserId};
use spider_protocol::keys::{IdentityKeys, KemPreKey, OneTimePreKey, PreKeyUpload, SignedPreKey};
use spider_protocol::message::{
    Ack, AddDevice, AuthOk, DeviceCiphertext, EnvelopeBody, Hello, Login, Register, SendDirect,
    Welcome,
};
use spider_protocol::name::Username;
use spider_protocol::{ClientFrame, ErrorCode, FrameDecoder, ServerFrame, codec, version};
use spider_relay::config::Config;
use spider_relay::server::RunningRelay;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Generous: only there so that a broken relay fails the test instead of
/// hanging it. No test asserts a speed.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).unwrap();
    b
}

/// A relay in a temporary directory, on loopback port 0.
pub struct TestRelay {
    pub relay: Option<RunningRelay>,
    pub dir: tempfile::TempDir,
    pub quic: SocketAddr,
    pub ws: SocketAddr,
    /// Prometheus metrics (port 0 too), when served.
    pub metrics: Option<SocketAddr>,
    pub ca: CertificateDer<'static>,
    pub name: String,
}

pub async fn start_relay() -> TestRelay {
    start_relay_with(|_| {}).await
}

/// A relay with its configuration changed by `f` first. Metrics are served
/// on loopback port 0 unless `f` turns them off.
pub async fn start_relay_with(f: impl FnOnce(&mut Config)) -> TestRelay {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_tests(dir.path().to_owned());
    config.metrics = Some(SocketAddr::from((LOCALHOST, 0)));
    f(&mut config);
    let name = config.name.clone();
    let relay = spider_relay::server::start(config).await.unwrap();
    let ca_path = relay.ca_pem.clone().unwrap();
    let ca = CertificateDer::from_pem_file(&ca_path).unwrap();
    TestRelay {
        quic: relay.quic_addr,
        ws: relay.ws_addr,
        metrics: relay.metrics_addr,
        relay: Some(relay),
        dir,
        ca,
        name,
    }
}

/// The address every test client uses unless it asks for another.
pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Another loopback address (Linux routes all of 127/8 to `lo`): a client
/// from here is another IP address to the relay's per-address limits.
pub const OTHER_HOST: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

impl TestRelay {
    /// `GET /metrics`, over a real socket.
    pub async fn scrape(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.metrics.expect("metrics are not served");
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        tokio::time::timeout(PATIENCE, s.read_to_string(&mut out))
            .await
            .unwrap()
            .unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        out
    }

    /// How many refusals the relay counted under `limit` (a `[limits]`
    /// key). Metrics are process-wide and only grow, so tests running at
    /// the same time can only add to it: compare before and after.
    pub async fn limit_rejections(&self, limit: &str) -> u64 {
        let text = self.scrape().await;
        let key = format!("spider_limit_rejections_total{{limit=\"{limit}\"}} ");
        let line = text
            .lines()
            .find(|l| l.starts_with(&key))
            .unwrap_or_else(|| panic!("no {key} in\n{text}"));
        line[key.len()..].trim().parse().unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.relay.take() {
            tokio::time::timeout(PATIENCE, r.shutdown())
                .await
                .unwrap()
                .unwrap();
        }
    }

    pub fn tls(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        cfg.alpn_protocols = vec![version::ALPN.to_vec()];
        cfg
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Quic,
    Ws,
}

pub const BOTH: [Transport; 2] = [Transport::Quic, Transport::Ws];

type Ws = WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

enum Conn {
    Quic {
        _endpoint: quinn::Endpoint,
        conn: quinn::Connection,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        decoder: FrameDecoder<ServerFrame>,
    },
    Ws(Box<Ws>),
}

/// One connection to the relay.
pub struct Client {
    conn: Conn,
    pub exporter: [u8; 32],
    pub transport: Transport,
    next_req: u32,
    /// The WebSocket close code the relay sent, once it closed.
    ws_close: Option<u16>,
}

/// How a test client connects.
#[derive(Clone, Copy, Debug, Default)]
pub struct Connect<'a> {
    /// Source address ([`LOCALHOST`] if `None`).
    pub from: Option<IpAddr>,
    /// WebSocket `Origin` header.
    pub origin: Option<&'a str>,
    /// A small receive window (QUIC stream window, TCP receive buffer), so
    /// that the relay's writes block soon when this client does not read.
    pub small_window: bool,
}

/// [`Connect::small_window`]: 64 KiB, two of the largest frames.
const SMALL_WINDOW: u32 = 64 * 1024;

impl Client {
    pub async fn connect(relay: &TestRelay, transport: Transport) -> Client {
        Self::try_connect(relay, transport, Connect::default())
            .await
            .unwrap()
    }

    /// Connects from another source address.
    pub async fn connect_from(relay: &TestRelay, transport: Transport, from: IpAddr) -> Client {
        let how = Connect {
            from: Some(from),
            ..Connect::default()
        };
        Self::try_connect(relay, transport, how).await.unwrap()
    }

    /// Connects; over WebSocket, optionally with an `Origin` header. `Err`
    /// if the relay refused the upgrade.
    pub async fn connect_ws_origin(
        relay: &TestRelay,
        transport: Transport,
        origin: Option<&str>,
    ) -> Result<Client, String> {
        let how = Connect {
            origin,
            ..Connect::default()
        };
        Self::try_connect(relay, transport, how).await
    }

    /// Connects as `how` says. `Err` with the reason if the relay refused.
    pub async fn try_connect(
        relay: &TestRelay,
        transport: Transport,
        how: Connect<'_>,
    ) -> Result<Client, String> {
        let tls = relay.tls();
        let from = how.from.unwrap_or(LOCALHOST);
        match transport {
            Transport::Quic => {
                let mut endpoint = quinn::Endpoint::client(SocketAddr::from((from, 0))).unwrap();
                let qc = QuicClientConfig::try_from(tls).unwrap();
                let mut cc = quinn::ClientConfig::new(Arc::new(qc));
                if how.small_window {
                    let mut t = quinn::TransportConfig::default();
                    t.stream_receive_window(SMALL_WINDOW.into());
                    cc.transport_config(Arc::new(t));
                }
                endpoint.set_default_client_config(cc);
                let conn = tokio::time::timeout(
                    PATIENCE,
                    endpoint.connect(relay.quic, "localhost").unwrap(),
                )
                .await
                .unwrap()
                .map_err(|e| e.to_string())?;
                let mut exporter = [0u8; 32];
                conn.export_keying_material(&mut exporter, version::AUTH_EXPORTER_LABEL, b"")
                    .unwrap();
                let (send, recv) = conn.open_bi().await.unwrap();
                Ok(Client {
                    conn: Conn::Quic {
                        _endpoint: endpoint,
                        conn,
                        send,
                        recv,
                        decoder: FrameDecoder::new(),
                    },
                    exporter,
                    transport,
                    next_req: 1,
                    ws_close: None,
                })
            }
            Transport::Ws => {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.bind(SocketAddr::from((from, 0))).unwrap();
                if how.small_window {
                    // Fixed before connecting, which also stops autotuning.
                    socket.set_recv_buffer_size(SMALL_WINDOW).unwrap();
                }
                let tcp = socket.connect(relay.ws).await.unwrap();
                let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
                let stream = tokio::time::timeout(
                    PATIENCE,
                    connector.connect(ServerName::try_from("localhost").unwrap(), tcp),
                )
                .await
                .unwrap()
                .map_err(|e| e.to_string())?;
                let exporter = stream
                    .get_ref()
                    .1
                    .export_keying_material([0u8; 32], version::AUTH_EXPORTER_LABEL, None)
                    .unwrap();
                let mut req = format!(
                    "ws://localhost:{}{}",
                    relay.ws.port(),
                    version::WEBSOCKET_PATH
                )
                .into_client_request()
                .unwrap();
                if let Some(o) = how.origin {
                    req.headers_mut().insert("origin", o.parse().unwrap());
                }
                let (ws, _) = tokio_tungstenite::client_async(req, stream)
                    .await
                    .map_err(|e| match e {
                        // The refusal's status line and body (which names
                        // the error code).
                        tokio_tungstenite::tungstenite::Error::Http(r) => format!(
                            "{} {}",
                            r.status(),
                            String::from_utf8_lossy(r.body().as_deref().unwrap_or_default())
                        ),
                        e => e.to_string(),
                    })?;
                Ok(Client {
                    conn: Conn::Ws(Box::new(ws)),
                    exporter,
                    transport,
                    next_req: 1,
                    ws_close: None,
                })
            }
        }
    }

    pub fn req(&mut self) -> RequestId {
        self.next_req += 1;
        RequestId(self.next_req)
    }

    pub async fn send(&mut self, f: ClientFrame) {
        match &mut self.conn {
            Conn::Quic { send, .. } => {
                let mut out = Vec::new();
                codec::encode_stream(&f, &mut out).unwrap();
                send.write_all(&out).await.unwrap();
            }
            Conn::Ws(ws) => {
                let body = codec::encode_body(&f).unwrap();
                ws.send(Message::Binary(body.into())).await.unwrap();
            }
        }
    }

    /// Raw bytes: on QUIC straight onto the stream, on WebSocket as one
    /// binary message. Errors are ignored (the relay may have closed).
    pub async fn send_raw(&mut self, bytes: Vec<u8>) {
        match &mut self.conn {
            Conn::Quic { send, .. } => {
                let _ = send.write_all(&bytes).await;
            }
            Conn::Ws(ws) => {
                let _ = ws.send(Message::Binary(bytes.into())).await;
            }
        }
    }

    /// WebSocket only: one binary message sent as these fragments (each its
    /// own WebSocket frame), for the relay's message and frame size limits.
    pub async fn send_ws_fragments(&mut self, parts: Vec<Vec<u8>>) {
        use tokio_tungstenite::tungstenite::protocol::frame::Frame;
        use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
        let Conn::Ws(ws) = &mut self.conn else {
            panic!("WebSocket only");
        };
        let n = parts.len();
        for (i, p) in parts.into_iter().enumerate() {
            let op = if i == 0 { Data::Binary } else { Data::Continue };
            let f = Frame::message(p, OpCode::Data(op), i + 1 == n);
            // Errors are ignored: the relay may close before the last one.
            let _ = ws.send(Message::Frame(f)).await;
        }
    }

    /// The next frame, or `None` once the relay has closed the connection.
    pub async fn recv_any(&mut self) -> Option<ServerFrame> {
        tokio::time::timeout(PATIENCE, self.recv_inner())
            .await
            .expect("relay went silent")
    }

    async fn recv_inner(&mut self) -> Option<ServerFrame> {
        match &mut self.conn {
            Conn::Quic { recv, decoder, .. } => loop {
                if let Some(f) = decoder.next_frame().unwrap() {
                    return Some(f);
                }
                let mut buf = [0u8; 8192];
                match recv.read(&mut buf).await {
                    Ok(Some(n)) => decoder.push(&buf[..n]),
                    _ => return None,
                }
            },
            Conn::Ws(ws) => loop {
                match ws.next().await {
                    Some(Ok(Message::Binary(b))) => {
                        return Some(codec::decode_body(&b).unwrap());
                    }
                    Some(Ok(Message::Close(f))) => {
                        self.ws_close = f.map(|f| u16::from(f.code));
                        return None;
                    }
                    None | Some(Err(_)) => return None,
                    Some(Ok(_)) => continue,
                }
            },
        }
    }

    /// The next frame that is not a relay ping (pings are answered).
    pub async fn recv(&mut self) -> Option<ServerFrame> {
        loop {
            match self.recv_any().await? {
                ServerFrame::Ping(p) => {
                    self.send(ClientFrame::Pong(spider_protocol::message::Pong {
                        nonce: p.nonce,
                    }))
                    .await
                }
                f => return Some(f),
            }
        }
    }

    /// The next frame, which must be there.
    pub async fn expect(&mut self) -> ServerFrame {
        self.recv().await.expect("connection closed")
    }

    /// The next frame that is neither a ping nor a presence update.
    pub async fn expect_np(&mut self) -> ServerFrame {
        loop {
            match self.expect().await {
                ServerFrame::Presence(_) => continue,
                f => return f,
            }
        }
    }

    /// Whether the relay closes the connection (after any frames in flight).
    pub async fn closed(&mut self) -> bool {
        self.recv().await.is_none()
    }

    /// Why a QUIC connection ended, waiting at most [`PATIENCE`]. Panics
    /// on a WebSocket client.
    pub async fn quic_end(&self) -> quinn::ConnectionError {
        match &self.conn {
            Conn::Quic { conn, .. } => tokio::time::timeout(PATIENCE, conn.closed())
                .await
                .expect("the QUIC connection is still open"),
            Conn::Ws(_) => panic!("not a QUIC client"),
        }
    }

    /// The close code of a connection the relay closed: the QUIC
    /// application error code, or the WebSocket close code. Call after
    /// [`Client::closed`].
    pub async fn close_code(&mut self) -> Option<u32> {
        match &self.conn {
            Conn::Quic { conn, .. } => {
                match tokio::time::timeout(PATIENCE, conn.closed()).await.unwrap() {
                    quinn::ConnectionError::ApplicationClosed(c) => {
                        Some(u32::try_from(c.error_code.into_inner()).unwrap())
                    }
                    e => panic!("not closed by the relay: {e}"),
                }
            }
            Conn::Ws(_) => self.ws_close.map(u32::from),
        }
    }

    /// The relay ends this connection with a fatal `code`: an error frame
    /// without a `req`, then a close whose code names the same error
    /// (protocol.md §5.8). Frames before the error (pings, deliveries) are
    /// skipped and counted.
    pub async fn expect_fatal(&mut self, code: ErrorCode) -> usize {
        let mut skipped = 0;
        let e = loop {
            match self.recv_any().await {
                Some(ServerFrame::Error(e)) => break e,
                Some(_) => skipped += 1,
                None => panic!("closed without {code:?}"),
            }
        };
        assert_eq!(e.code, code, "{e:?}");
        assert_eq!(e.req, None);
        assert!(code.is_fatal());
        assert!(self.recv_any().await.is_none(), "frames after {code:?}");
        self.expect_close_code(code).await;
        skipped
    }

    /// The close code names `code`.
    pub async fn expect_close_code(&mut self, code: ErrorCode) {
        let want = match self.transport {
            Transport::Quic => version::quic_close_code(code),
            Transport::Ws => u32::from(version::websocket_close_code(code)),
        };
        assert_eq!(self.close_code().await, Some(want), "{:?}", self.transport);
    }

    pub async fn hello(&mut self) -> Welcome {
        self.send(ClientFrame::Hello(version::hello("spider-test/0")))
            .await;
        match self.expect().await {
            ServerFrame::Welcome(w) => w,
            f => panic!("expected welcome, got {f:?}"),
        }
    }

    pub async fn hello_with(&mut self, versions: Vec<u16>) -> ServerFrame {
        self.send(ClientFrame::Hello(Hello {
            versions: BoundedVec::new(versions).unwrap(),
            agent: BoundedString::new("spider-test/0").unwrap(),
        }))
        .await;
        self.expect().await
    }

    pub async fn close(self) {
        match self.conn {
            Conn::Quic { conn, .. } => conn.close(0u32.into(), b"bye"),
            Conn::Ws(mut ws) => {
                let _ = WebSocketStream::close(&mut *ws, None).await;
            }
        }
    }
}

/// A fresh RNG for spider-crypto's key generation.
fn rng() -> ChaCha20Rng {
    ChaCha20Rng::from_seed(random())
}

/// A QUIC blob-transfer stream (§5.7): blob frames only, no Hello.
pub struct Transfer {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    decoder: FrameDecoder<ServerFrame>,
}

impl Client {
    /// Opens a transfer stream on this (QUIC, authenticated) connection.
    pub async fn open_transfer(&self) -> Transfer {
        match &self.conn {
            Conn::Quic { conn, .. } => {
                let (send, recv) = conn.open_bi().await.unwrap();
                Transfer {
                    send,
                    recv,
                    decoder: FrameDecoder::new(),
                }
            }
            Conn::Ws(_) => panic!("transfer streams are QUIC only"),
        }
    }
}

impl Transfer {
    pub async fn send(&mut self, f: ClientFrame) {
        let mut out = Vec::new();
        codec::encode_stream(&f, &mut out).unwrap();
        self.send.write_all(&out).await.unwrap();
    }

    /// The next frame, or `None` once the relay finished the stream.
    pub async fn recv(&mut self) -> Option<ServerFrame> {
        tokio::time::timeout(PATIENCE, async {
            loop {
                if let Some(f) = self.decoder.next_frame().unwrap() {
                    return Some(f);
                }
                let mut buf = [0u8; 8192];
                match self.recv.read(&mut buf).await {
                    Ok(Some(n)) => self.decoder.push(&buf[..n]),
                    _ => return None,
                }
            }
        })
        .await
        .expect("relay went silent")
    }
}

/// A device's identity with real keys, made and signed by spider-crypto.
pub struct Identity {
    pub pair: IdentityKeyPair,
    pub keys: IdentityKeys,
}

impl Identity {
    pub fn new() -> Identity {
        let pair = IdentityKeyPair::generate(&mut rng());
        let b = pair.public().to_bytes();
        let keys = IdentityKeys {
            signing: FixedBytes::try_from(&b[..32]).unwrap(),
            dh: FixedBytes::try_from(&b[32..64]).unwrap(),
            binding: FixedBytes::try_from(&b[64..]).unwrap(),
        };
        Identity { pair, keys }
    }

    pub fn kem_prekey(&self, id: u32) -> KemPreKey {
        let k = KemPreKeyPair::generate(
            &mut rng(),
            &self.pair,
            spider_crypto::keys::PreKeyId(id),
            KemPreKeyKind::OneTime,
            0,
        );
        let p = k.public();
        KemPreKey {
            id: PreKeyId(id),
            public: FixedBytes(*p.public_bytes()),
            signature: FixedBytes(*p.signature()),
        }
    }

    /// A full upload: signed prekey, last-resort KEM prekey, and one-time
    /// keys with ids `first..first+n`.
    pub fn prekeys(&self, first: u32, n_otk: u32, n_kem: u32) -> PreKeyUpload {
        let spk =
            SignedPreKeyPair::generate(&mut rng(), &self.pair, spider_crypto::keys::PreKeyId(1), 0)
                .public();
        PreKeyUpload {
            signed_prekey: Some(SignedPreKey {
                id: PreKeyId(1),
                public: FixedBytes(spk.public),
                signature: FixedBytes(spk.signature),
            }),
            last_resort_kem_prekey: Some(self.kem_prekey(1_000_000)),
            one_time_prekeys: BoundedVec::new(
                (first..first + n_otk)
                    .map(|i| OneTimePreKey {
                        id: PreKeyId(i),
                        public: FixedBytes(spider_crypto::primitives::x25519_public(&random())),
                    })
                    .collect(),
            )
            .unwrap(),
            one_time_kem_prekeys: BoundedVec::new(
                (first..first + n_kem).map(|i| self.kem_prekey(i)).collect(),
            )
            .unwrap(),
        }
    }

    pub fn auth(
        &self,
        relay_name: &str,
        exporter: &[u8; 32],
        challenge: &[u8; 32],
    ) -> FixedBytes<64> {
        FixedBytes(
            self.pair
                .sign_auth_challenge(relay_name, exporter, challenge)
                .unwrap(),
        )
    }

    /// A `Register` for `username` with `prekeys`, signed for this
    /// connection (`c`, after `Welcome` `w`).
    pub fn register_frame(
        &self,
        relay: &TestRelay,
        c: &Client,
        w: &Welcome,
        req: RequestId,
        username: Username,
        prekeys: PreKeyUpload,
    ) -> ClientFrame {
        ClientFrame::Register(Register {
            req,
            username,
            identity: self.keys.clone(),
            prekeys,
            auth: self.auth(&relay.name, &c.exporter, &w.challenge.0),
        })
    }

    pub fn approve(&self, user: UserId, new_signing: &[u8; 32]) -> FixedBytes<64> {
        FixedBytes(self.pair.sign_device_approval(user.as_bytes(), new_signing))
    }
}

/// Reads `limit`'s counter now; [`Counted::saw`] checks it grew by `n`.
pub struct Counted<'a> {
    relay: &'a TestRelay,
    limit: &'static str,
    before: u64,
}

impl<'a> Counted<'a> {
    pub async fn new(relay: &'a TestRelay, limit: &'static str) -> Self {
        let before = relay.limit_rejections(limit).await;
        Self {
            relay,
            limit,
            before,
        }
    }

    /// At least `n` more refusals under the limit (tests in this process
    /// that run at the same time can only add to the counter).
    pub async fn saw(&self, n: u64) {
        let now = self.relay.limit_rejections(self.limit).await;
        assert!(
            now >= self.before + n,
            "{}: {} -> {now}, expected {n} more",
            self.limit,
            self.before
        );
    }
}

/// A registered device.
pub struct Account {
    pub user: UserId,
    pub device: DeviceId,
    pub username: Username,
    pub id: Identity,
}

/// A fresh username that no other test uses.
pub fn username(prefix: &str) -> Username {
    let r: [u8; 4] = random();
    Username::parse(&format!("{prefix}{}", u32::from_be_bytes(r) % 1_000_000)).unwrap()
}

/// `AddDevice` for a new identity on `c`, approved by `owner`'s device; the
/// reply (`AuthOk`, or an error for this request). It uploads enough one-time
/// prekeys that the relay does not ask for more.
pub async fn add_device(relay: &TestRelay, owner: &Account, c: &mut Client) -> ServerFrame {
    let new = Identity::new();
    let w = c.hello().await;
    let req = c.req();
    c.send(ClientFrame::AddDevice(AddDevice {
        req,
        user: owner.user,
        identity: new.keys.clone(),
        prekeys: new.prekeys(1, 25, 25),
        approver: owner.device,
        approval: owner.id.approve(owner.user, &new.keys.signing.0),
        auth: new.auth(&relay.name, &c.exporter, &w.challenge.0),
    }))
    .await;
    let f = c.expect().await;
    if let ServerFrame::Error(e) = &f {
        assert_eq!(e.req, Some(req));
    }
    f
}

/// Hello, then Register; returns the account and the connected client.
pub async fn register(relay: &TestRelay, t: Transport, prefix: &str) -> (Account, Client) {
    register_with(relay, t, Connect::default(), prefix).await
}

/// [`register`] from another source address.
pub async fn register_from(
    relay: &TestRelay,
    t: Transport,
    from: IpAddr,
    prefix: &str,
) -> (Account, Client) {
    let how = Connect {
        from: Some(from),
        ..Connect::default()
    };
    register_with(relay, t, how, prefix).await
}

/// [`register`], connecting as `how` says.
pub async fn register_with(
    relay: &TestRelay,
    t: Transport,
    how: Connect<'_>,
    prefix: &str,
) -> (Account, Client) {
    // Keys first, so that the handshake itself is quick.
    let id = Identity::new();
    let prekeys = id.prekeys(1, 30, 30);
    let name = username(prefix);
    let mut c = Client::try_connect(relay, t, how).await.unwrap();
    let w = c.hello().await;
    let req = c.req();
    let f = id.register_frame(relay, &c, &w, req, name.clone(), prekeys);
    c.send(f).await;
    let ok = expect_auth_ok(&mut c).await;
    assert_eq!(ok.req, req);
    assert_eq!(ok.queued, 0);
    let caught = c.expect().await;
    assert!(matches!(caught, ServerFrame::CaughtUp(_)), "{caught:?}");
    (
        Account {
            user: ok.user,
            device: ok.device,
            username: name,
            id,
        },
        c,
    )
}

pub async fn expect_auth_ok(c: &mut Client) -> AuthOk {
    match c.expect().await {
        ServerFrame::AuthOk(ok) => ok,
        f => panic!("expected AuthOk, got {f:?}"),
    }
}

/// Hello, then Login; returns the client and AuthOk (the backlog follows).
pub async fn login(relay: &TestRelay, t: Transport, a: &Account) -> (Client, AuthOk) {
    let mut c = Client::connect(relay, t).await;
    let w = c.hello().await;
    let req = c.req();
    let auth = a.id.auth(&relay.name, &c.exporter, &w.challenge.0);
    c.send(ClientFrame::Login(Login {
        req,
        user: a.user,
        device: a.device,
        auth,
    }))
    .await;
    let ok = expect_auth_ok(&mut c).await;
    (c, ok)
}

pub fn direct(
    req: RequestId,
    message_id: MessageId,
    to: UserId,
    copies: &[(DeviceId, &[u8])],
) -> ClientFrame {
    ClientFrame::SendDirect(SendDirect {
        req,
        message_id,
        to,
        copies: BoundedVec::new(
            copies
                .iter()
                .map(|(d, c)| DeviceCiphertext {
                    device: *d,
                    ciphertext: BoundedBytes::new(c.to_vec()).unwrap(),
                })
                .collect(),
        )
        .unwrap(),
    })
}

/// `a` sends a fresh ciphertext to `b` (account `b_acc`, one device): `a`
/// gets `Sent`, `b` gets exactly that envelope and acks it.
pub async fn exchange(a: &mut Client, b: &mut Client, b_acc: &Account) {
    let id = MessageId::from_bytes(random());
    let body: [u8; 16] = random();
    let req = a.req();
    a.send(direct(req, id, b_acc.user, &[(b_acc.device, &body)]))
        .await;
    match a.expect_np().await {
        ServerFrame::Sent(s) => assert_eq!((s.req, s.message_id), (req, id)),
        f => panic!("expected Sent, got {f:?}"),
    }
    match b.expect_np().await {
        ServerFrame::Deliver(d) => {
            assert_eq!(d.envelope.message_id, id);
            match d.envelope.body {
                EnvelopeBody::Direct { ciphertext } => assert_eq!(ciphertext.as_slice(), body),
                body => panic!("unexpected body {body:?}"),
            }
            b.send(ClientFrame::Ack(Ack { up_to: d.seq })).await;
        }
        f => panic!("expected Deliver, got {f:?}"),
    }
}

/// Other users are unaffected: two new accounts, connecting from `from`
/// (one over QUIC, one over WebSocket), register, and each sends to the
/// other and receives.
pub async fn others_keep_working(relay: &TestRelay, from: IpAddr) {
    let (a_acc, mut a) = register_from(relay, Transport::Quic, from, "other").await;
    let (b_acc, mut b) = register_from(relay, Transport::Ws, from, "other").await;
    exchange(&mut a, &mut b, &b_acc).await;
    exchange(&mut b, &mut a, &a_acc).await;
    a.close().await;
    b.close().await;
}
