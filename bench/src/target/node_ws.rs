//! The Node.js `ws` relay of bench/peers/node-ws, in the style of the original SpiderChat backend.
//!
//! One WebSocket per user; JSON text messages:
//!
//! | direction       | message                                                     |
//! |-----------------|-------------------------------------------------------------|
//! | client → server | `{"type":"login","user":"<id>"}`                            |
//! | server → client | `{"type":"ready","user":"<id>"}` once the login is taken    |
//! | client → server | `{"type":"send","id":<seq>,"to":"<id>","body":"<base64>"}`  |
//! | server → client | `{"type":"message","from":"<id>","body":"<base64>"}`        |
//! | server → client | `{"type":"ack","id":<seq>}` once the message was routed     |
//!
//! The payload travels base64-encoded in `body`, as a JSON backend carries binary.

use super::{EnvelopeReceiver, EnvelopeSender, Incoming, Target, UserId};
use crate::net::connect_from;
use anyhow::{Context as _, bail};
use base64::Engine as _;
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Read buffer per client connection: small, since most clients sit idle (tungstenite's 128 KiB
/// default would make the load generator, not the target, the memory bottleneck).
pub const READ_BUFFER: usize = 4096;

/// Messages a client sends.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ClientMsg<'a> {
    Login { user: String },
    Send { id: u64, to: String, body: &'a str },
}

/// Messages the server sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ServerMsg {
    Ready,
    Message {
        body: String,
    },
    Ack {
        id: u64,
    },
    Error {
        reason: String,
    },
    #[serde(other)]
    Other,
}

/// The Node ws relay at one address.
#[derive(Debug, Clone)]
pub struct NodeWsTarget {
    addr: SocketAddr,
    url: String,
}

impl NodeWsTarget {
    /// The relay listening at `addr` (loopback).
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            url: format!("ws://{addr}/"),
        }
    }
}

/// Send half: the WebSocket's sink.
#[derive(Debug)]
pub struct NodeWsSender {
    sink: SplitSink<WebSocketStream<TcpStream>, Message>,
}

/// Receive half: the WebSocket's stream.
#[derive(Debug)]
pub struct NodeWsReceiver {
    stream: SplitStream<WebSocketStream<TcpStream>>,
}

impl Target for NodeWsTarget {
    type Sender = NodeWsSender;
    type Receiver = NodeWsReceiver;

    async fn connect(
        &self,
        user: UserId,
        source: IpAddr,
    ) -> anyhow::Result<(NodeWsSender, NodeWsReceiver)> {
        let tcp = connect_from(source, self.addr).await?;
        let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
        let (ws, _response) =
            tokio_tungstenite::client_async_with_config(self.url.as_str(), tcp, Some(config))
                .await
                .context("WebSocket upgrade")?;
        let (mut sink, mut stream) = ws.split();
        let login = serde_json::to_string(&ClientMsg::Login {
            user: user.to_string(),
        })?;
        sink.send(Message::text(login))
            .await
            .context("sending login")?;
        // Wait for the login to be taken; the caller's connect timeout bounds this loop.
        loop {
            match stream.next().await {
                Some(Ok(Message::Text(text))) => match serde_json::from_str(&text) {
                    Ok(ServerMsg::Ready) => break,
                    Ok(ServerMsg::Error { reason }) => bail!("login refused: {reason}"),
                    // Anything else before `ready` (an early delivery cannot come: the server
                    // only routes to logged-in users) is ignored.
                    Ok(_) | Err(_) => {}
                },
                Some(Ok(Message::Close(_))) | None => bail!("closed during login"),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e).context("reading login reply"),
            }
        }
        Ok((NodeWsSender { sink }, NodeWsReceiver { stream }))
    }
}

impl EnvelopeSender for NodeWsSender {
    async fn send(&mut self, to: UserId, seq: u64, payload: Bytes) -> anyhow::Result<()> {
        let body = base64::engine::general_purpose::STANDARD.encode(&payload);
        let msg = serde_json::to_string(&ClientMsg::Send {
            id: seq,
            to: to.to_string(),
            body: &body,
        })?;
        self.sink
            .send(Message::text(msg))
            .await
            .context("sending")?;
        Ok(())
    }
}

impl EnvelopeReceiver for NodeWsReceiver {
    async fn next(&mut self) -> anyhow::Result<Option<Incoming>> {
        // Each turn reads one WebSocket message; messages that are not ours are skipped. The loop
        // ends when the connection does, or on the first delivery or ack.
        loop {
            let Some(msg) = self.stream.next().await else {
                return Ok(None);
            };
            let text = match msg.context("reading")? {
                Message::Text(text) => text,
                Message::Close(_) => return Ok(None),
                _ => continue,
            };
            match serde_json::from_str(&text).context("malformed server message")? {
                ServerMsg::Message { body } => {
                    let payload = base64::engine::general_purpose::STANDARD
                        .decode(body.as_bytes())
                        .context("message body is not base64")?;
                    return Ok(Some(Incoming::Delivered(Bytes::from(payload))));
                }
                ServerMsg::Ack { id } => return Ok(Some(Incoming::Acked(id))),
                ServerMsg::Error { reason } => bail!("server error: {reason}"),
                ServerMsg::Ready | ServerMsg::Other => {}
            }
        }
    }
}
