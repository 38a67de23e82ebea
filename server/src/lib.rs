//! spider-relay: the relay daemon that stores and routes encrypted envelopes.
//!
//! The relay never sees plaintext: it authenticates devices by their identity
//! signatures, stores each envelope in its recipient device's mailbox until
//! that device acks it, and pushes envelopes to devices that are online.
//!
//! ```text
//!   QUIC (quinn) ──┐                          ┌── store (sled | memory)
//!                  ├─ connection::serve ──────┤
//!   WS over TLS ───┘   handshake → auth →     └── router (local | NATS later)
//!                      requests / pushes
//! ```
//!
//! # Layout (by job, as mini-redis)
//!
//! - `config`: flags, environment, TOML, defaults; every limit with its reason.
//! - `tls`: development CA and certificates (rcgen), rustls configuration.
//! - `listener::{quic, ws}`: transports into a frame sink and a frame queue.
//! - `connection`: the per-connection state machine.
//! - `auth`, `directory`, `mailbox`: what each request does.
//! - `verify`: every signature check, and only those.
//! - `router`: online devices and their bounded queues.
//! - `store`: the storage trait, its sled and in-memory implementations.
//! - `server`, `shutdown`: start, run, drain.
//!
//! # Example
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! let dir = std::env::temp_dir().join("spider-relay-example");
//! let relay = spider_relay::server::start(spider_relay::config::Config::for_tests(dir)).await?;
//! println!("QUIC on {}, WebSocket on {}", relay.quic_addr, relay.ws_addr);
//! relay.shutdown().await
//! # }
//! ```
#![forbid(unsafe_code)]

use spider_protocol::ErrorCode;
use spider_protocol::error::ErrorDetail;

pub mod config;
pub mod logging;
pub mod server;
pub mod store;
pub mod tls;

mod auth;
mod blobs;
mod connection;
mod directory;
mod listener;
mod mailbox;
mod metrics;
mod ratelimit;
mod rooms;
mod router;
mod shutdown;
mod verify;

/// A request that failed: sent back as an error frame with the request's id;
/// the connection goes on.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) code: ErrorCode,
    pub(crate) message: &'static str,
    pub(crate) detail: ErrorDetail,
    /// The limit that refused it, if one did (for the metrics).
    pub(crate) limit: Option<metrics::Limit>,
}

impl Refusal {
    pub(crate) fn new(code: ErrorCode, message: &'static str) -> Self {
        Self {
            code,
            message,
            detail: ErrorDetail::None,
            limit: None,
        }
    }

    /// A refusal by `limit`.
    pub(crate) fn by(limit: metrics::Limit, code: ErrorCode, message: &'static str) -> Self {
        Self {
            limit: Some(limit),
            ..Self::new(code, message)
        }
    }

    /// With a `RetryAfter` detail.
    pub(crate) fn retry_after(self, wait: std::time::Duration) -> Self {
        Self {
            detail: ErrorDetail::RetryAfter {
                ms: ratelimit::retry_ms(wait),
            },
            ..self
        }
    }

    pub(crate) fn internal() -> Self {
        Self::new(ErrorCode::INTERNAL, "internal error; nothing was changed")
    }
}

impl From<store::StoreError> for Refusal {
    fn from(e: store::StoreError) -> Self {
        tracing::error!(error = %e, "store operation failed");
        Self::internal()
    }
}
