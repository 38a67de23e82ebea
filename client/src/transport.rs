//! Transports to a relay: QUIC (primary) and WebSocket over TLS (fallback),
//! each trusting only the relay's CA (pinning), TLS 1.3 only, with the
//! connection's keying-material exporter that the auth signature binds to.
//!
//! Both carry the same frame bodies (docs/protocol.md §2): on QUIC one
//! client-opened bidirectional control stream with a 4-byte big-endian
//! length before each body; on WebSocket one binary message per body.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use spider_protocol::codec::{self, FrameDecoder};
use spider_protocol::version::{ALPN, AUTH_EXPORTER_LABEL, AUTH_EXPORTER_LEN, WEBSOCKET_PATH};
use spider_protocol::{ClientFrame, ServerFrame};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Which transport to use (`--transport quic|ws|auto`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportChoice {
    /// QUIC only.
    Quic,
    /// WebSocket over TLS only.
    WebSocket,
    /// QUIC first; WebSocket if QUIC has not connected within
    /// [`QUIC_FALLBACK_AFTER`].
    Auto,
}

/// How long `auto` waits for QUIC before trying WebSocket: long enough for
/// a QUIC handshake across the world (a few round trips), short enough that
/// a network that drops UDP costs a user only a brief wait.
pub const QUIC_FALLBACK_AFTER: Duration = Duration::from_secs(3);

/// The most a QUIC connect (handshake and control stream) may take. Without
/// it a relay that is down, or UDP that is dropped, holds the attempt for the
/// whole [`QUIC_IDLE_TIMEOUT`]: QUIC gets no "connection refused".
pub const QUIC_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a QUIC connection may be silent before quinn closes it; the
/// engine pings well within it.
pub const QUIC_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Read buffer for the QUIC control stream.
const READ_CHUNK: usize = 16 * 1024;

/// A transport failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The CA file could not be read or holds no certificate.
    #[error("relay CA: {0}")]
    Ca(String),
    /// The address did not resolve.
    #[error("cannot resolve the relay address")]
    Resolve,
    /// The relay's name is not a valid TLS server name.
    #[error("invalid relay name for TLS")]
    ServerName,
    /// TLS configuration or handshake failed.
    #[error("tls: {0}")]
    Tls(String),
    /// QUIC failed.
    #[error("quic: {0}")]
    Quic(String),
    /// WebSocket failed.
    #[error("websocket: {0}")]
    WebSocket(String),
    /// A socket failed.
    #[error("io: {0}")]
    Io(#[from] io::Error),
    /// The relay sent bytes that are not a frame.
    #[error("decode: {0}")]
    Decode(#[from] spider_protocol::DecodeError),
    /// A frame could not be encoded.
    #[error("encode: {0}")]
    Encode(#[from] spider_protocol::EncodeError),
    /// The relay closed the connection.
    #[error("connection closed")]
    Closed,
    /// Connecting took too long.
    #[error("timed out")]
    Timeout,
}

/// Reads every certificate in a PEM file: the relay CA to trust.
///
/// # Errors
/// [`TransportError::Ca`] if none can be read.
pub fn load_ca(pem: &[u8]) -> Result<RootCertStore, TransportError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| TransportError::Ca(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| TransportError::Ca(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(TransportError::Ca("no certificate in the file".into()));
    }
    Ok(roots)
}

/// A rustls client configuration that trusts only `roots` (no system
/// roots), speaks TLS 1.3 only, uses the ring provider, and offers `alpn`.
///
/// # Errors
/// [`TransportError::Tls`] if rustls refuses the combination.
pub fn tls_config(
    roots: RootCertStore,
    alpn: &[&[u8]],
) -> Result<rustls::ClientConfig, TransportError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TransportError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Ok(config)
}

/// Where and how to reach a relay.
#[derive(Clone, Debug)]
pub struct RelayTarget {
    /// `host:port`.
    pub addr: String,
    /// The name in the relay's certificate (and its relay name).
    pub server_name: String,
    /// The relay CA, PEM.
    pub ca_pem: Vec<u8>,
}

/// An open, not yet authenticated connection.
pub enum Link {
    /// QUIC control stream.
    Quic {
        /// Kept so that the connection lives as long as the link.
        connection: quinn::Connection,
        /// Kept so that the endpoint's socket lives as long as the link.
        endpoint: quinn::Endpoint,
        /// Outgoing half of the control stream.
        send: quinn::SendStream,
        /// Incoming half.
        recv: quinn::RecvStream,
        /// Frames arrive in pieces.
        decoder: FrameDecoder<ServerFrame>,
    },
    /// WebSocket over TLS.
    WebSocket(Box<WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>>),
}

impl core::fmt::Debug for Link {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Quic { .. } => f.write_str("Link::Quic"),
            Self::WebSocket(_) => f.write_str("Link::WebSocket"),
        }
    }
}

async fn resolve(addr: &str) -> Result<SocketAddr, TransportError> {
    tokio::net::lookup_host(addr)
        .await?
        .next()
        .ok_or(TransportError::Resolve)
}

/// Opens a QUIC connection and its control stream; returns the link and
/// the exporter value.
///
/// # Errors
/// [`TransportError`].
pub async fn connect_quic(
    target: &RelayTarget,
) -> Result<(Link, [u8; AUTH_EXPORTER_LEN]), TransportError> {
    let addr = resolve(&target.addr).await?;
    let tls = tls_config(load_ca(&target.ca_pem)?, &[ALPN])?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| TransportError::Tls(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(QUIC_IDLE_TIMEOUT)
            .map_err(|e| TransportError::Quic(e.to_string()))?,
    ));
    config.transport_config(Arc::new(transport));
    let bind: SocketAddr = if addr.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let endpoint = quinn::Endpoint::client(bind)?;
    let connecting = endpoint
        .connect_with(config, addr, &target.server_name)
        .map_err(|e| TransportError::Quic(e.to_string()))?;
    let connection = tokio::time::timeout(QUIC_CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| TransportError::Timeout)?
        .map_err(|e| TransportError::Quic(e.to_string()))?;
    let mut exporter = [0u8; AUTH_EXPORTER_LEN];
    connection
        .export_keying_material(&mut exporter, AUTH_EXPORTER_LABEL, b"")
        .map_err(|_| TransportError::Tls("exporter unavailable".into()))?;
    let (send, recv) = connection
        .open_bi()
        .await
        .map_err(|e| TransportError::Quic(e.to_string()))?;
    Ok((
        Link::Quic {
            connection,
            endpoint,
            send,
            recv,
            decoder: FrameDecoder::new(),
        },
        exporter,
    ))
}

/// Opens a WebSocket over TLS on [`WEBSOCKET_PATH`]; returns the link and
/// the TLS exporter value. The TLS ALPN is `http/1.1` (docs/protocol.md
/// §2.2: `spider/1` is QUIC's only); no `Origin` header is sent.
///
/// # Errors
/// [`TransportError`].
pub async fn connect_websocket(
    target: &RelayTarget,
) -> Result<(Link, [u8; AUTH_EXPORTER_LEN]), TransportError> {
    let addr = resolve(&target.addr).await?;
    let tls = tls_config(load_ca(&target.ca_pem)?, &[b"http/1.1"])?;
    let name =
        ServerName::try_from(target.server_name.clone()).map_err(|_| TransportError::ServerName)?;
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await?;
    let exporter = stream
        .get_ref()
        .1
        .export_keying_material([0u8; AUTH_EXPORTER_LEN], AUTH_EXPORTER_LABEL, None)
        .map_err(|e| TransportError::Tls(e.to_string()))?;
    let url = format!("wss://{}{}", target.addr, WEBSOCKET_PATH);
    let mut ws_config = WebSocketConfig::default();
    ws_config.max_message_size = Some(spider_protocol::MAX_FRAME_LEN);
    ws_config.max_frame_size = Some(spider_protocol::MAX_FRAME_LEN);
    let (ws, _response) = tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config))
        .await
        .map_err(|e| TransportError::WebSocket(e.to_string()))?;
    Ok((Link::WebSocket(Box::new(ws)), exporter))
}

/// Connects as `choice` says.
///
/// # Errors
/// The last transport's error.
pub async fn connect(
    target: &RelayTarget,
    choice: TransportChoice,
) -> Result<(Link, [u8; AUTH_EXPORTER_LEN]), TransportError> {
    match choice {
        TransportChoice::Quic => connect_quic(target).await,
        TransportChoice::WebSocket => connect_websocket(target).await,
        TransportChoice::Auto => {
            match tokio::time::timeout(QUIC_FALLBACK_AFTER, connect_quic(target)).await {
                Ok(Ok(link)) => Ok(link),
                Ok(Err(_)) | Err(_) => connect_websocket(target).await,
            }
        }
    }
}

impl Link {
    /// Which transport this is.
    pub fn is_quic(&self) -> bool {
        matches!(self, Self::Quic { .. })
    }

    /// Writes one frame.
    ///
    /// # Errors
    /// [`TransportError`].
    pub async fn send(&mut self, frame: &ClientFrame) -> Result<(), TransportError> {
        match self {
            Self::Quic { send, .. } => {
                let mut buf = Vec::new();
                codec::encode_stream(frame, &mut buf)?;
                send.write_all(&buf)
                    .await
                    .map_err(|e| TransportError::Quic(e.to_string()))
            }
            Self::WebSocket(ws) => {
                let body = codec::encode_body(frame)?;
                ws.send(WsMessage::Binary(body.into()))
                    .await
                    .map_err(|e| TransportError::WebSocket(e.to_string()))
            }
        }
    }

    /// Reads the next frame. Cancel-safe: a frame is never half-consumed
    /// (quinn's `read` and the WebSocket stream's `next` are cancel-safe,
    /// and partial QUIC data stays in the decoder).
    ///
    /// # Errors
    /// [`TransportError::Closed`] at the end, or a failure.
    pub async fn recv(&mut self) -> Result<ServerFrame, TransportError> {
        match self {
            Self::Quic { recv, decoder, .. } => loop {
                if let Some(f) = decoder.next_frame()? {
                    return Ok(f);
                }
                let mut buf = [0u8; READ_CHUNK];
                match recv
                    .read(&mut buf)
                    .await
                    .map_err(|e| TransportError::Quic(e.to_string()))?
                {
                    Some(n) => decoder.push(buf.get(..n).unwrap_or_default()),
                    None => return Err(TransportError::Closed),
                }
            },
            Self::WebSocket(ws) => loop {
                match ws.next().await {
                    None => return Err(TransportError::Closed),
                    Some(Err(e)) => return Err(TransportError::WebSocket(e.to_string())),
                    Some(Ok(WsMessage::Binary(body))) => {
                        return Ok(codec::decode_body::<ServerFrame>(&body)?);
                    }
                    Some(Ok(WsMessage::Close(_))) => return Err(TransportError::Closed),
                    // Pings are answered by tungstenite; text is not ours.
                    Some(Ok(_)) => {}
                }
            },
        }
    }

    /// Closes the link politely.
    pub async fn close(self) {
        match self {
            Self::Quic {
                connection,
                endpoint,
                mut send,
                ..
            } => {
                let _ = send.finish();
                connection.close(0u32.into(), b"bye");
                endpoint.wait_idle().await;
            }
            Self::WebSocket(mut ws) => {
                // On the stream itself, not the Box: a boxed stream is also a
                // futures Sink, whose zero-argument `close` would win method
                // resolution in builds where that impl is visible.
                let _ = (*ws).close(None).await;
            }
        }
    }
}

impl Link {
    /// The QUIC connection, to open blob streams on; `None` on WebSocket,
    /// where blob frames share the one connection.
    pub fn quic_connection(&self) -> Option<quinn::Connection> {
        match self {
            Self::Quic { connection, .. } => Some(connection.clone()),
            Self::WebSocket(_) => None,
        }
    }
}

/// One blob transfer's own bidirectional QUIC stream (docs/protocol.md
/// §2.1): the control stream's length-prefixed framing, no `Hello` (the
/// stream belongs to the authenticated connection), one transfer.
#[derive(Debug)]
pub struct BlobStream {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    decoder: FrameDecoder<ServerFrame>,
}

impl BlobStream {
    /// Opens a stream on an authenticated connection. Waits while the
    /// relay's stream limit is reached.
    ///
    /// # Errors
    /// [`TransportError::Quic`] if the connection is gone.
    pub async fn open(connection: &quinn::Connection) -> Result<Self, TransportError> {
        let (send, recv) = connection
            .open_bi()
            .await
            .map_err(|e| TransportError::Quic(e.to_string()))?;
        Ok(Self {
            send,
            recv,
            decoder: FrameDecoder::new(),
        })
    }

    /// Writes one frame.
    ///
    /// # Errors
    /// [`TransportError`].
    pub async fn send(&mut self, frame: &ClientFrame) -> Result<(), TransportError> {
        let mut buf = Vec::new();
        codec::encode_stream(frame, &mut buf)?;
        self.send
            .write_all(&buf)
            .await
            .map_err(|e| TransportError::Quic(e.to_string()))
    }

    /// Reads the next frame (cancel-safe, like [`Link::recv`]).
    ///
    /// # Errors
    /// [`TransportError::Closed`] when the relay finished the stream.
    pub async fn recv(&mut self) -> Result<ServerFrame, TransportError> {
        loop {
            if let Some(f) = self.decoder.next_frame()? {
                return Ok(f);
            }
            let mut buf = [0u8; READ_CHUNK];
            match self
                .recv
                .read(&mut buf)
                .await
                .map_err(|e| TransportError::Quic(e.to_string()))?
            {
                Some(n) => self.decoder.push(buf.get(..n).unwrap_or_default()),
                None => return Err(TransportError::Closed),
            }
        }
    }

    /// Ends our side and stops reading, so that the stream is closed at both
    /// ends and the relay's stream limit counts it no more.
    pub fn close(mut self) {
        let _ = self.send.finish();
        let _ = self.recv.stop(0u32.into());
    }
}
