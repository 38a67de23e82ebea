//! The systems under test, behind one trait.
//!
//! A scenario sees a target as: connect a client as user `i` (set-up includes whatever the target
//! calls logging in and subscribing), then a send half that sends an envelope to user `j` and a
//! receive half that yields deliveries and acknowledgements. Payloads are opaque to the target;
//! they carry the [`crate::envelope::Stamp`] (sequence number, send time) that the scenario reads
//! back on arrival.
//!
//! | target        | transport                   | module       | state                          |
//! |---------------|-----------------------------|--------------|--------------------------------|
//! | `spider-quic` | QUIC, ALPN `spider/1`       | [`spider`]   | opaque payloads, SDK transports|
//! | `spider-ws`   | WebSocket fallback          | [`spider`]   | opaque payloads, SDK transports|
//! | `mosquitto`   | MQTT 3.1.1 over WebSocket   | [`mqtt`]     | QoS 1, persistent sessions     |
//! | `node-ws`     | JSON over WebSocket         | [`node_ws`]  | bench/peers/node-ws/server.js  |

pub mod mqtt;
pub mod node_ws;
pub mod spider;

use bytes::Bytes;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};

/// Which system a run drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TargetKind {
    /// Spider relay over QUIC.
    SpiderQuic,
    /// Spider relay over WebSocket.
    SpiderWs,
    /// Mosquitto over MQTT-over-WebSocket, QoS 1, persistence on.
    Mosquitto,
    /// The Node.js `ws` relay of bench/peers/node-ws.
    NodeWs,
}

impl TargetKind {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::SpiderQuic => "spider-quic",
            TargetKind::SpiderWs => "spider-ws",
            TargetKind::Mosquitto => "mosquitto",
            TargetKind::NodeWs => "node-ws",
        }
    }

    /// Where the target listens unless `--addr` says otherwise (the peers' start.sh defaults).
    pub fn default_addr(self) -> SocketAddr {
        let port = match self {
            TargetKind::SpiderQuic | TargetKind::SpiderWs => 4433,
            TargetKind::Mosquitto => 18_083,
            TargetKind::NodeWs => 18_084,
        };
        SocketAddr::from(([127, 0, 0, 1], port))
    }
}

/// A user of the benchmark: users are numbered from 0 across the whole run (all workers).
pub type UserId = u32;

/// What a client's receive half yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// An envelope addressed to this client, with its payload as sent.
    Delivered(Bytes),
    /// The target took responsibility for this client's envelope with sequence number `seq`.
    Acked(u64),
}

/// A system under test.
pub trait Target: Send + Sync + 'static {
    /// The send half of a connected client.
    type Sender: EnvelopeSender;
    /// The receive half of a connected client.
    type Receiver: EnvelopeReceiver;

    /// Connects user `user` from the local address `source`, and completes whatever the target
    /// needs before the client can send and receive (log in, subscribe). The caller bounds the time.
    fn connect(
        &self,
        user: UserId,
        source: IpAddr,
    ) -> impl Future<Output = anyhow::Result<(Self::Sender, Self::Receiver)>> + Send;
}

/// The send half of a connected client.
pub trait EnvelopeSender: Send + 'static {
    /// Sends one envelope to `to`. `seq` is the sequence number stamped in `payload`; the target
    /// reports it back in [`Incoming::Acked`]. Returns once the transport took the envelope.
    fn send(
        &mut self,
        to: UserId,
        seq: u64,
        payload: Bytes,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// The receive half of a connected client.
pub trait EnvelopeReceiver: Send + 'static {
    /// The next delivery or acknowledgement; `None` once the connection closed. Cancel safe:
    /// dropping the future loses nothing that was already read.
    fn next(&mut self) -> impl Future<Output = anyhow::Result<Option<Incoming>>> + Send;
}
