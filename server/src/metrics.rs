//! Prometheus metrics, served in the OpenMetrics text format on
//! `GET /metrics` at the `metrics` address.
//!
//! | metric                          | type      | labels      |
//! |---------------------------------|-----------|-------------|
//! | `spider_connections`            | gauge     | `transport` |
//! | `spider_envelopes_in_total`     | counter   |             |
//! | `spider_envelopes_out_total`    | counter   |             |
//! | `spider_store_flush_seconds`    | histogram |             |
//! | `spider_rejections_total`       | counter   | `code`      |
//!
//! Metrics are process-wide (one relay per process in production), and carry
//! no user ids: only transports and error code names.

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

struct Metrics {
    registry: Registry,
    connections: Family<TransportLabel, Gauge>,
    envelopes_in: Counter,
    envelopes_out: Counter,
    flush: Histogram,
    mailbox_depth: Histogram,
    rejections: Family<CodeLabel, Counter>,
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
        Metrics {
            registry,
            connections,
            envelopes_in,
            envelopes_out,
            flush,
            mailbox_depth,
            rejections,
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
