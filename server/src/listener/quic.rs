//! QUIC listener (quinn). The client opens the first bidirectional stream as
//! its control stream and sends length-prefixed frames on it.
//!
//! Unvalidated client addresses get a Retry first, so that a spoofed source
//! cannot make the relay do handshake work or amplify traffic. Streams and
//! flow-control windows are bounded by [`Limits`].

use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicServerConfig;
use spider_protocol::{ClientFrame, ErrorCode, FrameDecoder, ServerFrame, codec, version};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::config::Limits;
use crate::connection::{self, FrameSink, Inbound, SinkError};
use crate::metrics::Limit;
use crate::server::Shared;
use crate::shutdown::Shutdown;

/// Application close code for a normal close.
const CLOSE_OK: u32 = 0;

/// Length of the stateless-reset secret.
const RESET_SECRET_LEN: usize = 64;

/// The least time between two stateless resets (quinn's default is 20 ms).
/// After a crash every client of the old process needs one, at its next
/// packet, to learn that its connection is gone; at one per 20 ms a herd of
/// 200 took up to 16.5 s to hear (1000: a minute), and each unanswered
/// packet pushes that client's next one further out. 250 µs resets 4000
/// connections a second. The bound is there against reset loops with
/// another endpoint, and each reset is smaller than the packet that caused
/// it, so a loop still dies out.
const MIN_RESET_INTERVAL: Duration = Duration::from_micros(250);

/// The secret behind QUIC stateless resets, kept in `DATA/quic-reset.key`
/// (owner-only, made on first start). A relay that restarts with the same
/// secret answers packets of its predecessor's connections with a valid
/// stateless reset, so clients learn at their next packet that the
/// connection is gone and reconnect at once, instead of waiting out their
/// idle timeout (seen in spider-load's reconnect storm before this).
///
/// The same secret keys the connection-id generator: quinn's default one
/// checks a keyed hash inside each connection id and drops packets whose id
/// fails it before it would send a reset, so a restarted relay must also
/// recognise its predecessor's ids as its own kind.
fn reset_key(data: &Path) -> anyhow::Result<ring::hmac::Key> {
    let path = data.join("quic-reset.key");
    let secret = match std::fs::read(&path) {
        Ok(b) if b.len() == RESET_SECRET_LEN => b,
        Ok(_) => anyhow::bail!(
            "{} is not {RESET_SECRET_LEN} bytes long: delete it to make a new one",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut b = vec![0u8; RESET_SECRET_LEN];
            getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            let tmp = data.join("quic-reset.key.tmp");
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&b)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            b
        }
        Err(e) => return Err(e.into()),
    };
    Ok(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret))
}

/// Makes the QUIC endpoint; `data` holds its stateless-reset secret.
pub(crate) fn endpoint(
    addr: SocketAddr,
    tls: rustls::ServerConfig,
    limits: &Limits,
    data: &Path,
) -> anyhow::Result<quinn::Endpoint> {
    let crypto = QuicServerConfig::try_from(tls)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(limits.quic_max_bidi_streams.into())
        .max_concurrent_uni_streams(0u32.into())
        .stream_receive_window(limits.quic_stream_window.into())
        .receive_window(limits.quic_connection_window.into())
        .send_window(limits.quic_send_window)
        .max_idle_timeout(Some(
            Duration::from_millis(limits.quic_idle_timeout_ms).try_into()?,
        ));
    server.transport_config(Arc::new(t));
    let config = endpoint_config(reset_key(data)?);
    let runtime = quinn::default_runtime().ok_or_else(|| anyhow::anyhow!("no tokio runtime"))?;
    let socket = udp_socket(addr, limits.quic_socket_buffer)?;
    Ok(quinn::Endpoint::new(config, Some(server), socket, runtime)?)
}

/// The endpoint's reset key, connection-id generator (keyed from the reset
/// key, so that a restarted relay recognises its predecessor's connection ids
/// and resets them) and reset rate.
fn endpoint_config(reset: ring::hmac::Key) -> quinn::EndpointConfig {
    let cid_key = cid_key(&reset);
    let mut config = quinn::EndpointConfig::new(Arc::new(reset));
    config.min_reset_interval(MIN_RESET_INTERVAL);
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    config
}

/// The key of the connection-id generator, derived from the reset key.
fn cid_key(reset: &ring::hmac::Key) -> u64 {
    let tag = ring::hmac::sign(reset, b"spider relay: QUIC connection-id key");
    let mut key = [0u8; 8];
    key.copy_from_slice(&tag.as_ref()[..8]);
    u64::from_le_bytes(key)
}

/// The listener's UDP socket, with `buffer` bytes of receive and send buffer
/// (as far as the kernel allows: it warns when less).
fn udp_socket(addr: SocketAddr, buffer: usize) -> anyhow::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a smaller buffer still works, with more loss in bursts.
    let _ = socket.set_recv_buffer_size(buffer);
    let _ = socket.set_send_buffer_size(buffer);
    // Linux reports twice what it grants (it counts its bookkeeping too).
    let reported = |n: usize| if cfg!(target_os = "linux") { n / 2 } else { n };
    let got_recv = reported(socket.recv_buffer_size()?);
    let got_send = reported(socket.send_buffer_size()?);
    if got_recv < buffer || got_send < buffer {
        tracing::warn!(
            asked = buffer,
            receive = got_recv,
            send = got_send,
            "the QUIC socket's buffers are smaller than configured: handshakes may be lost in \
             bursts of connections; raise net.core.rmem_max and net.core.wmem_max"
        );
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Accepts connections until shutdown.
pub(crate) async fn run(
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    mut shutdown: Shutdown,
    done: mpsc::Sender<()>,
) {
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
            () = shutdown.wait() => break,
        };
        if !incoming.remote_address_validated() {
            // The client proves it owns its address by echoing the token.
            let _ = incoming.retry();
            continue;
        }
        // Refused before any handshake work, so a flood of connections
        // costs one stateless packet each: the client sees QUIC's
        // CONNECTION_REFUSED, not an error frame.
        let Some(slot) = shared.rate.open(incoming.remote_address().ip()) else {
            crate::metrics::connection_refused(Limit::ConnectionsPerIp);
            incoming.refuse();
            continue;
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            crate::metrics::connection_refused(Limit::MaxConnections);
            incoming.refuse();
            continue;
        };
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        let done = done.clone();
        tokio::spawn(async move {
            handle(incoming, shared, shutdown, permit).await;
            drop(slot);
            drop(done);
        });
    }
    // No new connections; existing ones finish through their own tasks.
    endpoint.set_server_config(None);
}

async fn handle(
    incoming: quinn::Incoming,
    shared: Arc<Shared>,
    shutdown: Shutdown,
    _permit: OwnedSemaphorePermit,
) {
    let timeout = Duration::from_millis(shared.config.limits.handshake_timeout_ms);
    let conn = match tokio::time::timeout(timeout, incoming).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "QUIC handshake failed");
            return;
        }
        Err(_) => return,
    };
    let (send, recv) = match tokio::time::timeout(timeout, conn.accept_bi()).await {
        Ok(Ok(s)) => s,
        _ => {
            conn.close(CLOSE_OK.into(), b"no control stream");
            return;
        }
    };
    let mut exporter = [0u8; version::AUTH_EXPORTER_LEN];
    if conn
        .export_keying_material(&mut exporter, version::AUTH_EXPORTER_LABEL, b"")
        .is_err()
    {
        conn.close(CLOSE_OK.into(), b"exporter");
        return;
    }
    let (tx, rx) = mpsc::channel(shared.config.limits.inbound_queue);
    let reader = tokio::spawn(read_frames(recv, tx));
    let sink = QuicSink {
        conn: conn.clone(),
        send,
        grace: Duration::from_millis(shared.config.limits.close_grace_ms),
        whole: true,
    };
    let peer = conn.remote_address();
    let (authed_tx, authed_rx) = tokio::sync::oneshot::channel();
    let transfers = tokio::spawn(transfers(conn.clone(), shared.clone(), authed_rx));
    connection::serve(
        shared,
        sink,
        rx,
        exporter,
        "quic",
        peer,
        shutdown,
        Some(authed_tx),
    )
    .await;
    transfers.abort();
    reader.abort();
    conn.close(CLOSE_OK.into(), b"bye");
}

/// Once the connection is authenticated, serves each further bidirectional
/// stream as one blob transfer (their number is bounded by
/// `quic_max_bidi_streams`).
async fn transfers(
    conn: quinn::Connection,
    shared: Arc<Shared>,
    authed: tokio::sync::oneshot::Receiver<crate::auth::Authed>,
) {
    let Ok(me) = authed.await else {
        return;
    };
    let grace = Duration::from_millis(shared.config.limits.close_grace_ms);
    let mut tasks = tokio::task::JoinSet::new();
    while let Ok((send, recv)) = conn.accept_bi().await {
        let (tx, rx) = mpsc::channel(shared.config.limits.inbound_queue);
        let sink = QuicSink {
            conn: conn.clone(),
            send,
            grace,
            whole: false,
        };
        let shared = shared.clone();
        let me = me.clone();
        tasks.spawn(async move {
            let reader = tokio::spawn(read_frames(recv, tx));
            connection::serve_transfer(shared, sink, rx, me).await;
            reader.abort();
        });
        // Reap finished transfers so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
}

/// Reads the control stream into frames until it ends or breaks the rules.
async fn read_frames(mut recv: quinn::RecvStream, tx: mpsc::Sender<Inbound>) {
    let mut decoder = FrameDecoder::<ClientFrame>::new();
    let mut buf = [0u8; 8 * 1024];
    loop {
        // Drain whole frames before reading more, so the decoder holds at
        // most one partial frame plus one read.
        loop {
            match decoder.next_frame() {
                Ok(Some(f)) => {
                    if tx.send(Inbound::Frame(Box::new(f))).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Inbound::Bad(e.code())).await;
                    return;
                }
            }
        }
        match recv.read(&mut buf).await {
            Ok(Some(n)) => decoder.push(buf.get(..n).unwrap_or_default()),
            Ok(None) | Err(_) => return,
        }
    }
}

struct QuicSink {
    conn: quinn::Connection,
    send: quinn::SendStream,
    grace: Duration,
    /// Closing ends the connection (control stream), not just the stream.
    whole: bool,
}

impl FrameSink for QuicSink {
    async fn send(&mut self, frame: &ServerFrame) -> Result<(), SinkError> {
        let mut out = Vec::new();
        codec::encode_stream(frame, &mut out).map_err(|e| SinkError(e.to_string()))?;
        self.send
            .write_all(&out)
            .await
            .map_err(|e| SinkError(e.to_string()))
    }

    async fn close(&mut self, error: Option<ErrorCode>) {
        if self.send.finish().is_ok() {
            // Wait (briefly) until the peer has the last frames: closing the
            // connection at once would discard them.
            let _ = tokio::time::timeout(self.grace, self.send.stopped()).await;
        }
        if self.whole {
            // The code names the error frame just sent (protocol.md §5.8).
            let (code, reason) = match error {
                Some(e) => (
                    version::quic_close_code(e),
                    e.name().unwrap_or("error").as_bytes(),
                ),
                None => (CLOSE_OK, &b"closed"[..]),
            };
            self.conn.close(code.into(), reason);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn kernel_max(name: &str) -> usize {
        std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn the_udp_socket_gets_the_configured_buffers_as_far_as_the_kernel_allows() {
        let want = 1024 * 1024;
        let s = socket2::Socket::from(udp_socket("127.0.0.1:0".parse().unwrap(), want).unwrap());
        // Linux reports twice what it grants.
        let recv = s.recv_buffer_size().unwrap() / 2;
        let send = s.send_buffer_size().unwrap() / 2;
        assert!(recv >= want.min(kernel_max("rmem_max")), "{recv}");
        assert!(send >= want.min(kernel_max("wmem_max")), "{send}");
        // And more than the kernel's default, where the kernel allows it:
        // the default is what lost handshakes in bursts.
        if kernel_max("rmem_max") >= want {
            assert!(recv > kernel_max("rmem_default"), "{recv}");
        }
        assert!(s.local_addr().unwrap().as_socket().unwrap().port() != 0);
    }

    /// After a crash, every client of the old process sends packets for
    /// connections the new one does not know; each needs a stateless reset
    /// to learn its connection is gone. quinn's default sends at most one per
    /// 20 ms, endpoint-wide, so a herd waited seconds for theirs.
    #[test]
    fn a_restarted_endpoint_resets_a_herd_of_old_connections_without_making_them_wait() {
        use quinn_proto::ConnectionIdGenerator as _;
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[7; 32]);
        // The old process's connection ids (same key: same generator).
        let mut cids = quinn_proto::HashedConnectionIdGenerator::from_key(cid_key(&key));
        let config = Arc::new(endpoint_config(key));
        let mut endpoint = quinn_proto::Endpoint::new(config, None, false, None);
        let remote: SocketAddr = "127.0.0.2:40000".parse().unwrap();
        let start = std::time::Instant::now();
        let mut resets = 0;
        // 100 old connections, one packet each, a millisecond apart.
        for i in 0..100u64 {
            let cid = cids.generate_cid();
            assert!(cids.validate(&cid).is_ok());
            let mut packet = vec![0x40];
            packet.extend_from_slice(&cid);
            packet.resize(100, 0xab);
            let mut buf = Vec::new();
            let event = endpoint.handle(
                start + Duration::from_millis(i),
                remote,
                None,
                None,
                bytes::BytesMut::from(&packet[..]),
                &mut buf,
            );
            if matches!(event, Some(quinn_proto::DatagramEvent::Response(_))) {
                resets += 1;
            }
        }
        assert_eq!(resets, 100, "one reset per old connection");
    }
}
