//! Counters for the Prometheus endpoint. (Placeholder functions until the
//! endpoint is served; call sites are final.)

use spider_protocol::ErrorCode;

/// Counts a connection while it lives.
pub(crate) struct ConnectionGuard {
    _transport: &'static str,
}

impl ConnectionGuard {
    pub(crate) fn new(transport: &'static str) -> Self {
        Self {
            _transport: transport,
        }
    }
}

/// An envelope came in from a sender.
pub(crate) fn envelope_in() {}

/// An envelope went out to a recipient.
pub(crate) fn envelope_out() {}

/// A request or connection was refused with `code`.
pub(crate) fn rejection(_code: ErrorCode) {}
