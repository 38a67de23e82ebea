//! Prometheus metrics, served in the OpenMetrics text format on
//! `GET /metrics` at the `metrics` address.
//!
//! | metric                               | type      | labels      |
//! |--------------------------------------|-----------|-------------|
//! | `spider_connections`                 | gauge     | `transport` |
//! | `spider_envelopes_in_total`          | counter   |             |
//! | `spider_envelopes_out_total`         | counter   |             |
//! | `spider_store_flush_seconds`         | histogram |             |
//! | `spider_mailbox_depth_at_login`      | histogram |             |
//! | `spider_rejections_total`            | counter   | `code`      |
//! | `spider_limit_rejections_total`      | counter   | `limit`     |
//! | `spider_room_messages_total`         | counter   |             |
//! | `spider_room_changes_total`          | counter   |             |
//! | `spider_blobs_stored_total`          | counter   |             |
//! | `spider_blob_bytes_stored_total`     | counter   |             |
//! | `spider_blob_downloads_total`        | counter   |             |
//!
//! `spider_rejections_total` counts every refusal by its error code;
//! `spider_limit_rejections_total` counts the refusals that a limit caused,
//! one label value per limit (the `[limits]` key that sets it, see
//! [`Limit`]), every value present from the start so that a dashboard sees
//! zeros rather than gaps. `RATE_LIMITED`, for one, comes from three limits.
//!
//! Metrics are process-wide (one relay per process in production), and carry
//! no user ids: only transports, error code names and limit names.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use spider_protocol::ErrorCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::shutdown::Shutdown;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabel {
    transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabel {
    limit: &'static str,
}

/// A limit that refused something, named by its configuration key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Limit {
    /// `max_connections`: connections over both transports.
    MaxConnections,
    /// `max_connections_per_ip`.
    ConnectionsPerIp,
    /// `handshake_timeout_ms`.
    HandshakeTimeout,
    /// `idle_timeout_ms`.
    IdleTimeout,
    /// `outbound_queue`: a slow consumer was disconnected.
    OutboundQueue,
    /// `write_timeout_ms`: a peer that stopped reading was disconnected.
    WriteTimeout,
    /// The protocol's per-kind frame size (`FRAME_TOO_LARGE`, both
    /// transports; not a configuration key).
    FrameSize,
    /// `allowed_origins`: a WebSocket upgrade from another `Origin`.
    AllowedOrigins,
    /// `max_auth_attempts`: the connection was closed.
    AuthAttempts,
    /// `requests_per_second`: one connection's frames.
    ConnectionRequests,
    /// `account_requests_per_second`.
    AccountRequests,
    /// `ip_requests_per_second`.
    IpRequests,
    /// `prekey_fetches_per_minute`.
    PreKeyFetches,
    /// `registrations_per_hour`.
    Registrations,
    /// `max_one_time_prekeys`.
    OneTimePreKeys,
    /// `max_devices`.
    Devices,
    /// `max_contacts`.
    Contacts,
    /// `mailbox_quota`.
    MailboxQuota,
    /// `max_room_members`.
    RoomMembers,
    /// `max_rooms_per_user`.
    RoomsPerUser,
    /// `max_room_links`.
    RoomLinks,
    /// `room_clock_skew_ms`.
    RoomClockSkew,
    /// `blob_max_size`.
    BlobSize,
    /// `blob_quota`.
    BlobQuota,
    /// `max_uploads_per_connection`.
    UploadsPerConnection,
}

impl Limit {
    /// Every limit, for the metric's initial zeros.
    const ALL: &'static [Limit] = &[
        Limit::MaxConnections,
        Limit::ConnectionsPerIp,
        Limit::HandshakeTimeout,
        Limit::IdleTimeout,
        Limit::OutboundQueue,
        Limit::WriteTimeout,
        Limit::FrameSize,
        Limit::AllowedOrigins,
        Limit::AuthAttempts,
        Limit::ConnectionRequests,
        Limit::AccountRequests,
        Limit::IpRequests,
        Limit::PreKeyFetches,
        Limit::Registrations,
        Limit::OneTimePreKeys,
        Limit::Devices,
        Limit::Contacts,
        Limit::MailboxQuota,
        Limit::RoomMembers,
        Limit::RoomsPerUser,
        Limit::RoomLinks,
        Limit::RoomClockSkew,
        Limit::BlobSize,
        Limit::BlobQuota,
        Limit::UploadsPerConnection,
    ];

    /// The label value: the `[limits]` key (or `frame_size`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Limit::MaxConnections => "max_connections",
            Limit::ConnectionsPerIp => "max_connections_per_ip",
            Limit::HandshakeTimeout => "handshake_timeout_ms",
            Limit::IdleTimeout => "idle_timeout_ms",
            Limit::OutboundQueue => "outbound_queue",
            Limit::WriteTimeout => "write_timeout_ms",
            Limit::FrameSize => "frame_size",
            Limit::AllowedOrigins => "allowed_origins",
            Limit::AuthAttempts => "max_auth_attempts",
            Limit::ConnectionRequests => "requests_per_second",
            Limit::AccountRequests => "account_requests_per_second",
            Limit::IpRequests => "ip_requests_per_second",
            Limit::PreKeyFetches => "prekey_fetches_per_minute",
            Limit::Registrations => "registrations_per_hour",
            Limit::OneTimePreKeys => "max_one_time_prekeys",
            Limit::Devices => "max_devices",
            Limit::Contacts => "max_contacts",
            Limit::MailboxQuota => "mailbox_quota",
            Limit::RoomMembers => "max_room_members",
            Limit::RoomsPerUser => "max_rooms_per_user",
            Limit::RoomLinks => "max_room_links",
            Limit::RoomClockSkew => "room_clock_skew_ms",
            Limit::BlobSize => "blob_max_size",
            Limit::BlobQuota => "blob_quota",
            Limit::UploadsPerConnection => "max_uploads_per_connection",
        }
    }
}

struct Metrics {
    registry: Registry,
    connections: Family<TransportLabel, Gauge>,
    envelopes_in: Counter,
    envelopes_out: Counter,
    flush: Histogram,
    mailbox_depth: Histogram,
    rejections: Family<CodeLabel, Counter>,
    limits: Family<LimitLabel, Counter>,
    room_messages: Counter,
    room_changes: Counter,
    blobs_stored: Counter,
    blob_bytes_stored: Counter,
    blob_downloads: Counter,
}

fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| {
        let mut registry = Registry::default();
        let connections = Family::<TransportLabel, Gauge>::default();
        let envelopes_in = Counter::default();
        let envelopes_out = Counter::default();
        // 100 µs to ~3 s: an fsync on SSD is ~1 ms, on a busy disk far more.
        let flush = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        let rejections = Family::<CodeLabel, Counter>::default();
        // 1 to ~65k envelopes: an idle phone's night to a month offline.
        let mailbox_depth = Histogram::new(exponential_buckets(1.0, 2.0, 17));
        registry.register(
            "spider_mailbox_depth_at_login",
            "Envelopes waiting in a device's mailbox when it signs in",
            mailbox_depth.clone(),
        );
        registry.register(
            "spider_connections",
            "Open client connections",
            connections.clone(),
        );
        registry.register(
            "spider_envelopes_in",
            "Envelopes received from senders",
            envelopes_in.clone(),
        );
        registry.register(
            "spider_envelopes_out",
            "Envelopes delivered to devices",
            envelopes_out.clone(),
        );
        registry.register(
            "spider_store_flush_seconds",
            "Time to make writes durable (group commit)",
            flush.clone(),
        );
        registry.register(
            "spider_rejections",
            "Requests and connections refused, by error code",
            rejections.clone(),
        );
        let limits = Family::<LimitLabel, Counter>::default();
        for l in Limit::ALL {
            // Creates the zero; the guard it returns is dropped at once.
            drop(limits.get_or_create(&LimitLabel { limit: l.name() }));
        }
        registry.register(
            "spider_limit_rejections",
            "Requests and connections refused, by the limit that refused them",
            limits.clone(),
        );
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let room_messages = counter(
            &mut registry,
            "spider_room_messages",
            "Room messages accepted for fan-out",
        );
        let room_changes = counter(
            &mut registry,
            "spider_room_changes",
            "Signed room membership changes applied",
        );
        let blobs_stored = counter(&mut registry, "spider_blobs_stored", "Blob uploads stored");
        let blob_bytes_stored = counter(
            &mut registry,
            "spider_blob_bytes_stored",
            "Bytes of blob uploads stored",
        );
        let blob_downloads = counter(
            &mut registry,
            "spider_blob_downloads",
            "Blob downloads started",
        );
        Metrics {
            registry,
            connections,
            envelopes_in,
            envelopes_out,
            flush,
            mailbox_depth,
            rejections,
            limits,
            room_messages,
            room_changes,
            blobs_stored,
            blob_bytes_stored,
            blob_downloads,
        }
    })
}

/// Counts a connection while it lives.
pub(crate) struct ConnectionGuard {
    transport: &'static str,
}

impl ConnectionGuard {
    pub(crate) fn new(transport: &'static str) -> Self {
        metrics()
            .connections
            .get_or_create(&TransportLabel { transport })
            .inc();
        Self { transport }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        metrics()
            .connections
            .get_or_create(&TransportLabel {
                transport: self.transport,
            })
            .dec();
    }
}

/// An envelope came in from a sender.
pub(crate) fn envelope_in() {
    metrics().envelopes_in.inc();
}

/// An envelope went out to a recipient.
pub(crate) fn envelope_out() {
    metrics().envelopes_out.inc();
}

/// A device signed in with this many envelopes waiting.
pub(crate) fn mailbox_depth_at_login(queued: u64) {
    metrics().mailbox_depth.observe(queued as f64);
}

/// A store flush took this long.
pub(crate) fn flush_took(start: Instant) {
    metrics().flush.observe(start.elapsed().as_secs_f64());
}

/// A request or connection was refused with `code`.
pub(crate) fn rejection(code: ErrorCode) {
    metrics()
        .rejections
        .get_or_create(&CodeLabel {
            code: code.name().unwrap_or("OTHER"),
        })
        .inc();
}

/// A connection was refused before its handshake: counted as
/// `TOO_MANY_CONNECTIONS` and under its limit.
pub(crate) fn connection_refused(limit: Limit) {
    rejection(ErrorCode::TOO_MANY_CONNECTIONS);
    limit_hit(limit);
}

/// A limit refused something (counted besides its error code).
pub(crate) fn limit_hit(limit: Limit) {
    metrics()
        .limits
        .get_or_create(&LimitLabel {
            limit: limit.name(),
        })
        .inc();
}

/// A room message was accepted.
pub(crate) fn room_message() {
    metrics().room_messages.inc();
}

/// A room change was applied.
pub(crate) fn room_change() {
    metrics().room_changes.inc();
}

/// A blob of `size` bytes was stored.
pub(crate) fn blob_stored(size: u64) {
    let m = metrics();
    m.blobs_stored.inc();
    m.blob_bytes_stored.inc_by(size);
}

/// A blob download started.
pub(crate) fn blob_download() {
    metrics().blob_downloads.inc();
}

/// The current metrics, in the OpenMetrics text format.
pub(crate) fn render() -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &metrics().registry);
    out
}

/// Serves `GET /metrics` until shutdown. A deliberately tiny HTTP/1.1
/// responder: one request per connection, bounded read, short timeout.
pub(crate) async fn serve(listener: TcpListener, mut shutdown: Shutdown) {
    loop {
        let (mut sock, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.wait() => return,
        };
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf)).await
            else {
                return;
            };
            let head = buf.get(..n).unwrap_or_default();
            let resp = if head.starts_with(b"GET /metrics ") {
                let body = render();
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_owned()
            };
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_limit_is_listed_from_the_start_under_its_configuration_key() {
        let text = render();
        for l in Limit::ALL {
            let line = format!("spider_limit_rejections_total{{limit=\"{}\"}} ", l.name());
            assert!(text.contains(&line), "{line} missing");
            // The label is the `[limits]` key an operator would change
            // (two are not numbers under `[limits]`).
            if !matches!(l, Limit::FrameSize | Limit::AllowedOrigins) {
                let toml = format!("[limits]\n{} = 1\n", l.name());
                assert!(
                    toml::from_str::<crate::config::FileConfig>(&toml).is_ok(),
                    "{} is not a [limits] key",
                    l.name()
                );
            }
        }
        assert!(
            toml::from_str::<crate::config::FileConfig>("allowed_origins = []").is_ok(),
            "allowed_origins is not a key"
        );
    }
}
