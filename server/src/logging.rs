//! The relay's log filter. Logs carry user and device ids at most: never
//! message content, key material or HTTP headers.
//!
//! tungstenite logs whole WebSocket frames (payloads included) and upgrade
//! requests (cookies included) at trace level, so the filter caps it at
//! debug whatever the operator asks for (`tests/logs.rs` checks this). The
//! cap only ever lowers a level: asked for `warn`, tungstenite logs warnings.

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{FilterExt as _, LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Filter, Layer as _, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Dependencies that log content at trace level; they log at most at debug.
const CAPPED: &[&str] = &["tungstenite", "tokio_tungstenite"];

/// A per-layer filter: what `spec` asks for (in `RUST_LOG` syntax; `info`
/// if `None` or invalid), and, for the content-logging dependencies, no more
/// than debug. Both must let an event through.
pub fn filter<S>(spec: Option<&str>) -> impl Filter<S> + Send + Sync + 'static
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let asked = spec
        .and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let cap = CAPPED.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |t, target| t.with_target(*target, LevelFilter::DEBUG),
    );
    asked.and(cap)
}

/// Installs the process-wide subscriber: human-readable lines to `writer`,
/// through [`filter`]. `ansi`: colour, for a terminal only.
pub fn init<W>(spec: Option<&str>, writer: W, ansi: bool)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(ansi)
                .with_filter(filter(spec)),
        )
        .init();
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn content_logging_dependencies_are_capped_at_debug_and_never_raised() {
        // (spec, what tungstenite logs, whether the relay's trace shows)
        let cases = [
            ("warn", &["W"][..], false),
            ("info", &["W"][..], false),
            ("debug", &["W", "D"][..], false),
            ("trace", &["W", "D"][..], true),
            ("warn,tungstenite=trace", &["W", "D"][..], false),
        ];
        for (spec, want, relay_trace) in cases {
            let out = Arc::new(Mutex::new(Vec::<u8>::new()));
            let sink = out.clone();
            let layer = tracing_subscriber::fmt::layer()
                .with_writer(move || Writer(sink.clone()))
                .with_ansi(false)
                .with_filter(filter(Some(spec)));
            let subscriber = tracing_subscriber::registry().with(layer);
            tracing::subscriber::with_default(subscriber, || {
                tracing::warn!(target: "tungstenite::protocol", "line-W");
                tracing::debug!(target: "tungstenite::protocol", "line-D");
                tracing::trace!(target: "tungstenite::protocol", "line-T");
                tracing::trace!(target: "tokio_tungstenite", "line-T");
                tracing::trace!(target: "spider_relay::connection", "relay-T");
            });
            let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
            for level in ["W", "D", "T"] {
                assert_eq!(
                    text.contains(&format!("line-{level}")),
                    want.contains(&level),
                    "{spec}: tungstenite at {level}:\n{text}"
                );
            }
            assert_eq!(text.contains("relay-T"), relay_trace, "{spec}:\n{text}");
        }
    }

    struct Writer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Writer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
