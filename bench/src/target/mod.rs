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
//! | `spider-quic` | QUIC, ALPN `spider/1`       | [`spider`], [`spider_e2e`] | opaque payloads, or `--e2e` through the SDK's `Engine` |
//! | `spider-ws`   | WebSocket fallback          | [`spider`], [`spider_e2e`] | the same over WebSocket |
//! | `mosquitto`   | MQTT 3.1.1 over WebSocket   | [`mqtt`]     | QoS 1, persistent sessions     |
//! | `node-ws`     | JSON over WebSocket         | [`node_ws`]  | bench/peers/node-ws/server.js  |
//!
//! Rooms ([`RoomSender`]) exist on Spider only: Mosquitto and the Node relay have no rooms with
//! members, so the `room` scenario is not part of the comparison with the peers.

pub mod mqtt;
pub mod node_ws;
pub mod spider;
pub mod spider_e2e;
pub mod spider_link;

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
    /// The target refused this client's envelope `seq` (an error frame answered its request, such
    /// as `RATE_LIMITED`): it will be neither acked nor delivered, and counts as a failure.
    Refused {
        /// The envelope.
        seq: u64,
        /// What the target said.
        why: String,
    },
    /// The target reported an error that ends nothing (a message that did not decrypt, a refused
    /// request that is not an envelope): counted as a failure.
    Error(String),
    /// A membership change of one of this client's rooms reached it (rooms only).
    RoomChanged,
    /// The connection was lost; the client is reconnecting (targets built to reconnect only).
    Disconnected,
    /// The client is connected and authenticated again after [`Incoming::Disconnected`].
    Reconnected,
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

/// A room as the benchmark knows it: enough for a member to join and to post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomTicket {
    /// The target's room id.
    pub id: [u8; 16],
    /// The secret of an invite link that lets any account join.
    pub link: [u8; 16],
    /// The room's membership epoch as last seen (each change moves it on).
    pub epoch: u64,
}

/// The send half of a client of a target with rooms (Spider only).
pub trait RoomSender: EnvelopeSender {
    /// Creates a room named after `name` with this client as its owner, and an invite link.
    fn create_room(
        &mut self,
        name: &str,
    ) -> impl Future<Output = anyhow::Result<RoomTicket>> + Send;

    /// Joins the room through its link; returns the room's epoch after the join.
    fn join_room(&mut self, room: &RoomTicket) -> impl Future<Output = anyhow::Result<u64>> + Send;

    /// Posts one envelope to every other member of `room`. `seq` and the ack work as in
    /// [`EnvelopeSender::send`].
    fn send_room(
        &mut self,
        room: &RoomTicket,
        seq: u64,
        payload: Bytes,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}
