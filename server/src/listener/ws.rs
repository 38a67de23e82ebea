//! WebSocket-over-TLS listener: the fallback for networks that block UDP.
//!
//! One binary message carries one frame body. The upgrade must ask for
//! `/spider`; a browser's `Origin` must be on the allow-list (by default no
//! `Origin` at all is accepted, i.e. non-browser clients only); cookies are
//! never read; permessage-deflate is never offered (tungstenite is built
//! without it); message and frame sizes are capped at the largest frame.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use spider_protocol::{ClientFrame, ErrorCode, MAX_FRAME_LEN, ServerFrame, codec, version};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::config::Limits;
use crate::connection::{self, FrameSink, Inbound, SinkError};
use crate::metrics::Limit;
use crate::server::Shared;
use crate::shutdown::Shutdown;

type Ws = WebSocketStream<TlsStream<TcpStream>>;

/// Binds the TCP listener.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

fn ws_config(limits: &Limits) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(limits.ws_read_buffer_size)
        .write_buffer_size(limits.ws_write_buffer_size)
        // Bounded, so a peer that does not read cannot grow it forever.
        .max_write_buffer_size(limits.ws_write_buffer_size + 2 * MAX_FRAME_LEN)
        .max_message_size(Some(MAX_FRAME_LEN))
        .max_frame_size(Some(MAX_FRAME_LEN))
}

/// Accepts connections until shutdown.
pub(crate) async fn run(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    mut shutdown: Shutdown,
    done: mpsc::Sender<()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.wait() => break,
        };
        // Refused before TLS, so a flood of connections costs no handshake
        // work: the client sees the TCP connection closed, not an error.
        let Some(slot) = shared.rate.open(peer.ip()) else {
            crate::metrics::connection_refused(Limit::ConnectionsPerIp);
            drop(tcp);
            continue;
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            crate::metrics::connection_refused(Limit::MaxConnections);
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        let done = done.clone();
        tokio::spawn(async move {
            handle(tcp, peer, acceptor, shared, shutdown, permit).await;
            drop(slot);
            drop(done);
        });
    }
}

/// Checks the upgrade request: path and Origin. Cookies are not looked at.
// The error type is tungstenite's callback signature.
#[allow(clippy::result_large_err)]
fn check_upgrade(
    allowed: &[String],
    req: &Request,
    resp: Response,
) -> Result<Response, ErrorResponse> {
    let refuse = |status: StatusCode, why: String| {
        let mut r = ErrorResponse::new(Some(why));
        *r.status_mut() = status;
        r
    };
    if req.uri().path() != version::WEBSOCKET_PATH {
        return Err(refuse(StatusCode::NOT_FOUND, "not found".to_owned()));
    }
    if let Some(origin) = req.headers().get("origin") {
        let ok = origin
            .to_str()
            .is_ok_and(|o| allowed.iter().any(|a| a == o));
        if !ok {
            crate::metrics::rejection(ErrorCode::ORIGIN_REFUSED);
            crate::metrics::limit_hit(Limit::AllowedOrigins);
            // No WebSocket yet, so no error frame: the body names the code.
            let c = ErrorCode::ORIGIN_REFUSED;
            let why = format!("{} {}: origin refused", c.0, c.name().unwrap_or_default());
            return Err(refuse(StatusCode::FORBIDDEN, why));
        }
    }
    Ok(resp)
}

#[allow(clippy::result_large_err)] // the upgrade callback, as above
async fn handle(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    shutdown: Shutdown,
    _permit: OwnedSemaphorePermit,
) {
    let timeout = Duration::from_millis(shared.config.limits.handshake_timeout_ms);
    let allowed = shared.config.allowed_origins.clone();
    let cfg = ws_config(&shared.config.limits);
    let setup = async move {
        let tls = acceptor.accept(tcp).await.ok()?;
        let exporter = tls
            .get_ref()
            .1
            .export_keying_material(
                [0u8; version::AUTH_EXPORTER_LEN],
                version::AUTH_EXPORTER_LABEL,
                None,
            )
            .ok()?;
        let ws = tokio_tungstenite::accept_hdr_async_with_config(
            tls,
            |req: &Request, resp: Response| check_upgrade(&allowed, req, resp),
            Some(cfg),
        )
        .await
        .ok()?;
        Some((ws, exporter))
    };
    let Ok(Some((ws, exporter))) = tokio::time::timeout(timeout, setup).await else {
        tracing::debug!("WebSocket setup failed or timed out");
        return;
    };
    let (sink, stream) = ws.split();
    let (tx, rx) = mpsc::channel(shared.config.limits.inbound_queue);
    let reader = tokio::spawn(read_frames(stream, tx));
    let sink = WsSink {
        sink,
        grace: Duration::from_millis(shared.config.limits.close_grace_ms),
    };
    connection::serve(shared, sink, rx, exporter, "ws", peer, shutdown, None).await;
    reader.abort();
}

/// Reads binary messages into frames until the socket ends or breaks the
/// rules.
async fn read_frames(mut stream: SplitStream<Ws>, tx: mpsc::Sender<Inbound>) {
    while let Some(msg) = stream.next().await {
        let item = match msg {
            Ok(Message::Binary(b)) => match codec::decode_body::<ClientFrame>(&b) {
                Ok(f) => Inbound::Frame(Box::new(f)),
                Err(e) => Inbound::Bad(e.code()),
            },
            Ok(Message::Text(_)) => Inbound::Bad(ErrorCode::MALFORMED_FRAME),
            // tungstenite answers pings itself.
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
            Ok(Message::Close(_)) => return,
            Err(WsError::Capacity(_)) => Inbound::Bad(ErrorCode::FRAME_TOO_LARGE),
            Err(_) => return,
        };
        let stop = matches!(item, Inbound::Bad(_));
        if tx.send(item).await.is_err() || stop {
            return;
        }
    }
}

struct WsSink {
    sink: SplitSink<Ws, Message>,
    grace: Duration,
}

impl FrameSink for WsSink {
    async fn send(&mut self, frame: &ServerFrame) -> Result<(), SinkError> {
        let body = codec::encode_body(frame).map_err(|e| SinkError(e.to_string()))?;
        self.sink
            .send(Message::Binary(body.into()))
            .await
            .map_err(|e| SinkError(e.to_string()))
    }

    async fn close(&mut self, error: Option<ErrorCode>) {
        // The code names the error frame just sent (protocol.md §5.8).
        let frame = match error {
            Some(e) => CloseFrame {
                code: CloseCode::from(version::websocket_close_code(e)),
                reason: e.name().unwrap_or("error").into(),
            },
            None => CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            },
        };
        let _ = tokio::time::timeout(self.grace, async {
            let _ = self.sink.send(Message::Close(Some(frame))).await;
            let _ = self.sink.close().await;
        })
        .await;
    }
}
