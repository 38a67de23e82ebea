//! Mosquitto over MQTT 3.1.1 on WebSocket, QoS 1, persistent sessions.
//!
//! Each user is an MQTT client `sl-u<id>` with a persistent session (`clean_session = false`, so
//! Mosquitto queues QoS 1 messages for it while it is away, and persists them), subscribed at
//! QoS 1 to its own topic `u/<id>`; sending to user `j` is a QoS 1 publish to `u/<j>`. The
//! broker's PUBACK is the acknowledgement.
//!
//! Packets are encoded and decoded by rumqttc's v4 codec; the connection itself is ours
//! (tokio-tungstenite over a socket bound to a chosen loopback source address), because
//! rumqttc's event loop cannot bind a source address and so could not spread past one address's
//! ports. One writer task per connection owns the WebSocket's sink, so that the receive half can
//! answer the broker's publishes with PUBACKs while the send half publishes.

use super::{EnvelopeReceiver, EnvelopeSender, Incoming, Target, UserId};
use crate::net::connect_from;
use anyhow::{Context as _, bail};
use bytes::{Bytes, BytesMut};
use futures_util::stream::SplitStream;
use futures_util::{SinkExt as _, StreamExt as _};
use rumqttc::{ConnectReturnCode, Packet, PubAck, Publish, QoS, Subscribe, SubscribeReasonCode};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Largest MQTT packet accepted or sent: a 1 MiB payload plus headers.
pub const MAX_PACKET: usize = (1 << 20) + 1024;

/// Packets queued toward one connection's writer task before a send waits.
pub const WRITE_QUEUE: usize = 1024;

/// MQTT keep-alive, in seconds. 0 turns it off: the benchmark's idle connections would otherwise
/// spend the run pinging, which measures the keep-alive, not the broker's cost of a connection.
pub const KEEP_ALIVE_SECS: u16 = 0;

/// Mosquitto at one address.
#[derive(Debug, Clone)]
pub struct MqttTarget {
    addr: SocketAddr,
    url: String,
}

impl MqttTarget {
    /// The broker's WebSocket listener at `addr` (loopback).
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            url: format!("ws://{addr}/mqtt"),
        }
    }
}

/// Sequence numbers of publishes awaiting their PUBACK, by packet id.
type Inflight = Arc<Mutex<HashMap<u16, u64>>>;

/// Send half: publishes through the connection's writer task.
#[derive(Debug)]
pub struct MqttSender {
    writer: mpsc::Sender<Bytes>,
    inflight: Inflight,
    next_pkid: u16,
}

/// Receive half: reads packets, answers publishes with PUBACK, turns PUBACKs into acks.
#[derive(Debug)]
pub struct MqttReceiver {
    stream: SplitStream<WebSocketStream<TcpStream>>,
    buf: BytesMut,
    writer: mpsc::Sender<Bytes>,
    inflight: Inflight,
    pending: VecDeque<Incoming>,
}

fn encode(packet: &Packet) -> anyhow::Result<Bytes> {
    let mut buf = BytesMut::with_capacity(packet.size() + 8);
    packet
        .write(&mut buf, MAX_PACKET)
        .map_err(|e| anyhow::anyhow!("encoding MQTT packet: {e:?}"))?;
    Ok(buf.freeze())
}

impl MqttReceiver {
    /// The next whole packet, reading WebSocket messages as needed; `None` once closed.
    async fn packet(&mut self) -> anyhow::Result<Option<Packet>> {
        // MQTT over WebSocket is a byte stream: a packet may span messages, a message may hold
        // several packets. Each turn either parses a packet or appends one message.
        loop {
            match Packet::read(&mut self.buf, MAX_PACKET) {
                Ok(packet) => return Ok(Some(packet)),
                Err(rumqttc::Error::InsufficientBytes(_)) => {}
                Err(e) => bail!("malformed MQTT packet: {e:?}"),
            }
            let Some(msg) = self.stream.next().await else {
                return Ok(None);
            };
            match msg.context("reading")? {
                Message::Binary(data) => self.buf.extend_from_slice(&data),
                Message::Close(_) => return Ok(None),
                _ => {}
            }
        }
    }

    async fn write(&self, packet: &Packet) -> anyhow::Result<()> {
        self.writer
            .send(encode(packet)?)
            .await
            .context("connection writer ended")
    }

    /// Handles one packet; what the scenario should see goes to `pending`.
    async fn handle(&mut self, packet: Packet) -> anyhow::Result<()> {
        match packet {
            Packet::Publish(publish) => {
                if publish.qos == QoS::AtLeastOnce {
                    self.write(&Packet::PubAck(PubAck::new(publish.pkid)))
                        .await?;
                }
                self.pending.push_back(Incoming::Delivered(publish.payload));
            }
            Packet::PubAck(ack) => {
                let seq = self
                    .inflight
                    .lock()
                    .ok()
                    .and_then(|mut m| m.remove(&ack.pkid));
                if let Some(seq) = seq {
                    self.pending.push_back(Incoming::Acked(seq));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Forwards encoded packets to the socket, batching whatever is queued into one flush.
async fn writer_task(
    mut sink: futures_util::stream::SplitSink<WebSocketStream<TcpStream>, Message>,
    mut rx: mpsc::Receiver<Bytes>,
) {
    while let Some(first) = rx.recv().await {
        if sink.feed(Message::binary(first)).await.is_err() {
            return;
        }
        // Bounded batch: at most the queue's capacity per flush.
        for _ in 0..WRITE_QUEUE {
            match rx.try_recv() {
                Ok(more) => {
                    if sink.feed(Message::binary(more)).await.is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
    // Every sender dropped: close the connection politely.
    let _closed = sink.close().await;
}

impl Target for MqttTarget {
    type Sender = MqttSender;
    type Receiver = MqttReceiver;

    async fn connect(
        &self,
        user: UserId,
        source: IpAddr,
    ) -> anyhow::Result<(MqttSender, MqttReceiver)> {
        let tcp = connect_from(source, self.addr).await?;
        let mut request = self
            .url
            .as_str()
            .into_client_request()
            .context("WebSocket request")?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
        let config = WebSocketConfig::default().read_buffer_size(super::node_ws::READ_BUFFER);
        let (ws, _response) =
            tokio_tungstenite::client_async_with_config(request, tcp, Some(config))
                .await
                .context("WebSocket upgrade")?;
        let (sink, stream) = ws.split();
        let (writer, rx) = mpsc::channel(WRITE_QUEUE);
        tokio::spawn(writer_task(sink, rx));
        let inflight: Inflight = Arc::default();
        let mut receiver = MqttReceiver {
            stream,
            buf: BytesMut::with_capacity(1024),
            writer: writer.clone(),
            inflight: Arc::clone(&inflight),
            pending: VecDeque::new(),
        };

        let mut connect = rumqttc::Connect::new(format!("sl-u{user}"));
        connect.keep_alive = KEEP_ALIVE_SECS;
        connect.clean_session = false;
        receiver.write(&Packet::Connect(connect)).await?;
        match receiver.packet().await? {
            Some(Packet::ConnAck(ack)) if ack.code == ConnectReturnCode::Success => {}
            Some(Packet::ConnAck(ack)) => bail!("broker refused the connection: {:?}", ack.code),
            Some(other) => bail!("expected CONNACK, got {other:?}"),
            None => bail!("closed before CONNACK"),
        }

        // Packet id 1 for the subscription; publishes use 2.. so the two never mix.
        let mut subscribe = Subscribe::new(format!("u/{user}"), QoS::AtLeastOnce);
        subscribe.pkid = 1;
        receiver.write(&Packet::Subscribe(subscribe)).await?;
        // A persistent session may deliver queued publishes before the SUBACK: keep them. The
        // caller's connect timeout bounds this loop.
        loop {
            match receiver.packet().await? {
                Some(Packet::SubAck(ack)) => {
                    if ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, SubscribeReasonCode::Failure))
                    {
                        bail!("broker refused the subscription");
                    }
                    break;
                }
                Some(other) => receiver.handle(other).await?,
                None => bail!("closed before SUBACK"),
            }
        }
        let sender = MqttSender {
            writer,
            inflight,
            next_pkid: 1,
        };
        Ok((sender, receiver))
    }
}

impl EnvelopeSender for MqttSender {
    async fn send(&mut self, to: UserId, seq: u64, payload: Bytes) -> anyhow::Result<()> {
        // Packet ids 2..=65535 in turn (1 is the subscription's). A sender with 65k publishes
        // unacknowledged would reuse an id; its earlier ack is then attributed to the later seq.
        self.next_pkid = if self.next_pkid == u16::MAX {
            2
        } else {
            self.next_pkid + 1
        };
        let pkid = self.next_pkid;
        if let Ok(mut m) = self.inflight.lock() {
            m.insert(pkid, seq);
        }
        let mut publish = Publish::from_bytes(format!("u/{to}"), QoS::AtLeastOnce, payload);
        publish.pkid = pkid;
        self.writer
            .send(encode(&Packet::Publish(publish))?)
            .await
            .context("connection writer ended")
    }
}

impl EnvelopeReceiver for MqttReceiver {
    async fn next(&mut self) -> anyhow::Result<Option<Incoming>> {
        // Each turn handles one packet; PINGRESP and the like yield nothing and go round again.
        loop {
            if let Some(incoming) = self.pending.pop_front() {
                return Ok(Some(incoming));
            }
            match self.packet().await? {
                Some(packet) => self.handle(packet).await?,
                None => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_split_across_messages_are_reassembled() {
        let publish = Publish::from_bytes("u/7", QoS::AtLeastOnce, Bytes::from_static(b"hello"));
        let mut p = publish.clone();
        p.pkid = 9;
        let wire = encode(&Packet::Publish(p.clone())).unwrap();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&wire[..3]);
        assert!(matches!(
            Packet::read(&mut buf, MAX_PACKET),
            Err(rumqttc::Error::InsufficientBytes(_))
        ));
        buf.extend_from_slice(&wire[3..]);
        buf.extend_from_slice(&encode(&Packet::PubAck(PubAck::new(9))).unwrap());
        assert_eq!(
            Packet::read(&mut buf, MAX_PACKET).unwrap(),
            Packet::Publish(p)
        );
        assert_eq!(
            Packet::read(&mut buf, MAX_PACKET).unwrap(),
            Packet::PubAck(PubAck::new(9))
        );
    }
}
