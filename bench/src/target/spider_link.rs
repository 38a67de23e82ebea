//! Links to a Spider relay that leave from a chosen loopback source address.
//!
//! The SDK's [`spider_client::transport::connect`] binds QUIC endpoints to `0.0.0.0:0` and opens
//! WebSocket sockets with a plain `connect`, so every client of a large run would leave from
//! 127.0.0.1 and share its ~28k ephemeral ports (and the relay's per-address limits). These
//! functions do what the SDK's `connect_quic` / `connect_websocket` do, with the same TLS
//! configuration (the SDK's [`transport::tls_config`]: TLS 1.3 only, the relay CA pinned), but bind
//! the UDP socket (QUIC) or the TCP socket (WebSocket) to `source` before connecting, and build the
//! TLS configuration once per run instead of once per connection. They return the SDK's own
//! [`Link`], so the rest of the SDK (and [`spider_client::engine::Engine`]) works on it unchanged.

use crate::net::{connect_from, ensure_loopback};
use anyhow::{Context as _, anyhow};
use spider_client::transport::{self, Link, QUIC_IDLE_TIMEOUT, TransportChoice};
use spider_protocol::FrameDecoder;
use spider_protocol::version::{ALPN, AUTH_EXPORTER_LABEL, AUTH_EXPORTER_LEN, WEBSOCKET_PATH};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// How to reach one relay: its address and name, and the TLS configurations built once.
#[derive(Clone)]
pub struct Dialer {
    addr: SocketAddr,
    server_name: String,
    choice: TransportChoice,
    quic: quinn::ClientConfig,
    ws: Arc<tokio_rustls::rustls::ClientConfig>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("addr", &self.addr)
            .field("server_name", &self.server_name)
            .field("choice", &self.choice)
            .finish_non_exhaustive()
    }
}

impl Dialer {
    /// A dialer for the relay at `addr` (loopback only) whose certificate names `server_name`,
    /// trusting only the CA in `ca_pem`, over `choice` (QUIC or WebSocket; `Auto` is refused).
    pub fn new(
        addr: SocketAddr,
        server_name: &str,
        ca_pem: &[u8],
        choice: TransportChoice,
    ) -> anyhow::Result<Self> {
        ensure_loopback(addr)?;
        if choice == TransportChoice::Auto {
            anyhow::bail!("a benchmark link is QUIC or WebSocket, not both");
        }
        let roots = transport::load_ca(ca_pem).context("the relay CA")?;
        let tls = transport::tls_config(roots.clone(), &[ALPN])?;
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| anyhow!("QUIC TLS configuration: {e}"))?;
        let mut quic = quinn::ClientConfig::new(Arc::new(crypto));
        let mut transport_config = quinn::TransportConfig::default();
        transport_config.max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(QUIC_IDLE_TIMEOUT).map_err(|e| anyhow!("{e}"))?,
        ));
        quic.transport_config(Arc::new(transport_config));
        // docs/protocol.md §2.2: the WebSocket fallback's ALPN is `http/1.1`.
        let ws = Arc::new(transport::tls_config(roots, &[b"http/1.1"])?);
        Ok(Self {
            addr,
            server_name: server_name.to_owned(),
            choice,
            quic,
            ws,
        })
    }

    /// The relay's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Opens a link from `source` (port chosen by the kernel); returns it with the connection's
    /// TLS exporter value, which the auth signature binds to.
    pub async fn connect(&self, source: IpAddr) -> anyhow::Result<(Link, [u8; AUTH_EXPORTER_LEN])> {
        match self.choice {
            TransportChoice::Quic => self.connect_quic(source).await,
            _ => self.connect_websocket(source).await,
        }
    }

    async fn connect_quic(
        &self,
        source: IpAddr,
    ) -> anyhow::Result<(Link, [u8; AUTH_EXPORTER_LEN])> {
        // One UDP socket per client, bound before the handshake: the relay sees `source`.
        let endpoint = quinn::Endpoint::client(SocketAddr::new(source, 0))
            .with_context(|| format!("binding a UDP socket to {source}"))?;
        let connection = endpoint
            .connect_with(self.quic.clone(), self.addr, &self.server_name)
            .map_err(|e| anyhow!("quic: {e}"))?
            .await
            .map_err(|e| anyhow!("quic: {e}"))?;
        let mut exporter = [0u8; AUTH_EXPORTER_LEN];
        connection
            .export_keying_material(&mut exporter, AUTH_EXPORTER_LABEL, b"")
            .map_err(|_| anyhow!("TLS exporter unavailable"))?;
        let (send, recv) = connection
            .open_bi()
            .await
            .map_err(|e| anyhow!("quic: {e}"))?;
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

    async fn connect_websocket(
        &self,
        source: IpAddr,
    ) -> anyhow::Result<(Link, [u8; AUTH_EXPORTER_LEN])> {
        let name = ServerName::try_from(self.server_name.clone())
            .map_err(|_| anyhow!("invalid relay name for TLS"))?;
        let tcp = connect_from(source, self.addr).await?;
        let stream = tokio_rustls::TlsConnector::from(Arc::clone(&self.ws))
            .connect(name, tcp)
            .await
            .context("TLS handshake")?;
        let exporter = stream
            .get_ref()
            .1
            .export_keying_material([0u8; AUTH_EXPORTER_LEN], AUTH_EXPORTER_LABEL, None)
            .map_err(|e| anyhow!("TLS exporter: {e}"))?;
        let url = format!("wss://{}{}", self.addr, WEBSOCKET_PATH);
        let mut config = WebSocketConfig::default();
        config.max_message_size = Some(spider_protocol::MAX_FRAME_LEN);
        config.max_frame_size = Some(spider_protocol::MAX_FRAME_LEN);
        let (ws, _response) =
            tokio_tungstenite::client_async_with_config(url, stream, Some(config))
                .await
                .map_err(|e| anyhow!("websocket: {e}"))?;
        Ok((Link::WebSocket(Box::new(ws)), exporter))
    }
}
