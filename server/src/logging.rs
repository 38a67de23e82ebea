//! The relay's log filter. Logs carry user and device ids at most: never
//! message content, key material or HTTP headers.
//!
//! tungstenite logs whole WebSocket frames (payloads included) and upgrade
//! requests (cookies included) at trace level, so the filter caps it at
//! debug whatever the operator asks for (`tests/logs.rs` checks this).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Directive;

/// Dependencies that log content at trace level, and the most they may log.
const CAPPED: &[&str] = &["tungstenite=debug", "tokio_tungstenite=debug"];

/// A filter from `spec` (in `RUST_LOG` syntax; `info` if `None` or invalid)
/// with the content-logging dependencies capped.
pub fn filter(spec: Option<&str>) -> EnvFilter {
    let mut f = spec
        .and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    for c in CAPPED {
        if let Ok(d) = c.parse::<Directive>() {
            f = f.add_directive(d);
        }
    }
    f
}
