//! Spider's own targets (`spider-quic`, `spider-ws`): not yet available.
//!
//! They will be a [`super::Target`] implementation over the spider-client SDK: `connect` registers
//! or loads a device for user `i` and authenticates; `send` sends one envelope (opaque, or through
//! a real session with `--e2e`); `next` yields pushed envelopes and the relay's acks. Until the
//! SDK exists, selecting them fails with [`unavailable`], never with a stand-in that would produce
//! figures.

use super::TargetKind;

/// The error for a Spider target or for `--e2e`, which both need the spider-client SDK.
pub fn unavailable(what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{what} is not yet available: it needs the spider-client SDK, which is being written \
         (issue 6 runs the peers only until then)"
    )
}

/// Whether `kind` is one of Spider's own targets.
pub fn is_spider(kind: TargetKind) -> bool {
    matches!(kind, TargetKind::SpiderQuic | TargetKind::SpiderWs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spider_targets_say_what_they_wait_for() {
        assert!(is_spider(TargetKind::SpiderQuic) && is_spider(TargetKind::SpiderWs));
        assert!(!is_spider(TargetKind::Mosquitto) && !is_spider(TargetKind::NodeWs));
        let msg = unavailable("target spider-quic").to_string();
        assert!(msg.contains("not yet available") && msg.contains("spider-client SDK"));
    }
}
