//! What a benchmark envelope carries: a stamp in front of opaque filler.
//!
//! Every payload starts with a fixed header, so that the receiving side can tell who sent it,
//! which of that sender's envelopes it is, and when it was (meant to be) sent, whatever the
//! target does to the bytes in between:
//!
//! | offset | size | field     | meaning                                                        |
//! |--------|------|-----------|----------------------------------------------------------------|
//! | 0      | 4    | magic     | `b"SPLD"`                                                      |
//! | 4      | 4    | `from`    | sending user, little endian                                    |
//! | 8      | 8    | `run`     | run id: envelopes of another run (a broker's old queue) are    |
//! |        |      |           | counted apart, never as deliveries                             |
//! | 16     | 8    | `seq`     | the sender's sequence number, from 0                           |
//! | 24     | 8    | `sent_ns` | intended (open loop) or actual (closed loop) send time, in ns  |
//! |        |      |           | since the worker's [`RunClock`] epoch                          |
//! | 32     | ..   | filler    | seeded random bytes up to `--payload-size`                     |
//!
//! Sender and receiver of a stamp always live in the same worker process (a pair is never split
//! across workers), so one monotonic clock serves both ends.

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng as _, SeedableRng as _};
use std::time::{Duration, Instant};

/// Bytes of the stamp; the smallest `--payload-size`.
pub const HEADER_LEN: usize = 32;

/// Largest `--payload-size`: 1 MiB, below every target's message limit we configure.
pub const MAX_PAYLOAD: usize = 1 << 20;

const MAGIC: [u8; 4] = *b"SPLD";

/// The header of a benchmark payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Sending user.
    pub from: u32,
    /// Run id.
    pub run: u64,
    /// Sender's sequence number.
    pub seq: u64,
    /// Send time (intended, in open loop) in ns since the worker's clock epoch.
    pub sent_ns: u64,
}

impl Stamp {
    /// Writes the stamp over the first [`HEADER_LEN`] bytes of `payload`.
    ///
    /// Returns `false` (and writes nothing) when `payload` is shorter than the header.
    pub fn write(&self, payload: &mut [u8]) -> bool {
        let Some(head) = payload.get_mut(..HEADER_LEN) else {
            return false;
        };
        head[0..4].copy_from_slice(&MAGIC);
        head[4..8].copy_from_slice(&self.from.to_le_bytes());
        head[8..16].copy_from_slice(&self.run.to_le_bytes());
        head[16..24].copy_from_slice(&self.seq.to_le_bytes());
        head[24..32].copy_from_slice(&self.sent_ns.to_le_bytes());
        true
    }

    /// Reads the stamp of a payload; `None` if it is too short or not ours.
    pub fn read(payload: &[u8]) -> Option<Self> {
        let head = payload.get(..HEADER_LEN)?;
        if head[0..4] != MAGIC {
            return None;
        }
        let u64_at = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(head.get(at..at + 8)?.try_into().ok()?))
        };
        Some(Self {
            from: u32::from_le_bytes(head.get(4..8)?.try_into().ok()?),
            run: u64_at(8)?,
            seq: u64_at(16)?,
            sent_ns: u64_at(24)?,
        })
    }
}

/// Makes one sender's payloads: a seeded random body, re-stamped for every envelope.
///
/// The filler is drawn once per sender from the run's seed: the bytes are incompressible (no target
/// compresses anyway) and a run with the same seed sends the same bytes.
#[derive(Debug, Clone)]
pub struct PayloadMaker {
    template: Vec<u8>,
}

impl PayloadMaker {
    /// A maker of `size`-byte payloads for `user`, seeded by the run's `seed`.
    pub fn new(seed: u64, user: u32, size: usize) -> Self {
        let size = size.clamp(HEADER_LEN, MAX_PAYLOAD);
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (u64::from(user) << 32) ^ 0x5350_4c44);
        let mut template = vec![0u8; size];
        rng.fill_bytes(&mut template);
        Self { template }
    }

    /// The payload that carries `stamp`.
    pub fn make(&self, stamp: &Stamp) -> Vec<u8> {
        let mut out = self.template.clone();
        // Cannot fail: the template is at least HEADER_LEN long (clamped in `new`).
        let _written = stamp.write(&mut out);
        out
    }
}

/// The monotonic clock of one worker process; stamps count nanoseconds from its epoch.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    epoch: Instant,
}

impl RunClock {
    /// A clock whose epoch is now.
    pub fn start() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }

    /// Nanoseconds since the epoch.
    pub fn now_ns(&self) -> u64 {
        self.ns_at(Instant::now())
    }

    /// Nanoseconds from the epoch to `at` (0 for an instant before the epoch).
    pub fn ns_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The instant `ns` nanoseconds after the epoch.
    pub fn instant_at(&self, ns: u64) -> Instant {
        self.epoch + Duration::from_nanos(ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips_through_a_payload() {
        let stamp = Stamp {
            from: 7,
            run: 0xdead_beef,
            seq: 123_456,
            sent_ns: 42,
        };
        let maker = PayloadMaker::new(1, 7, 100);
        let payload = maker.make(&stamp);
        assert_eq!(payload.len(), 100);
        assert_eq!(Stamp::read(&payload), Some(stamp));
    }

    #[test]
    fn foreign_or_short_payloads_have_no_stamp() {
        assert_eq!(Stamp::read(b"hello"), None);
        assert_eq!(Stamp::read(&[0u8; 64]), None);
        let mut short = [0u8; HEADER_LEN - 1];
        assert!(
            !Stamp {
                from: 1,
                run: 1,
                seq: 1,
                sent_ns: 1
            }
            .write(&mut short)
        );
    }

    #[test]
    fn payload_size_is_clamped_to_the_header_and_the_maximum() {
        let stamp = Stamp {
            from: 1,
            run: 2,
            seq: 3,
            sent_ns: 4,
        };
        assert_eq!(PayloadMaker::new(0, 1, 0).make(&stamp).len(), HEADER_LEN);
        assert_eq!(
            PayloadMaker::new(0, 1, usize::MAX).make(&stamp).len(),
            MAX_PAYLOAD
        );
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let stamp = Stamp {
            from: 1,
            run: 2,
            seq: 3,
            sent_ns: 4,
        };
        let a = PayloadMaker::new(9, 1, 256).make(&stamp);
        let b = PayloadMaker::new(9, 1, 256).make(&stamp);
        let c = PayloadMaker::new(10, 1, 256).make(&stamp);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
