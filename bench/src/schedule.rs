//! Rate control: when each envelope is meant to leave.
//!
//! Two modes, after wrk2 and the HdrHistogram papers on coordinated omission:
//!
//! * **Open loop** ([`OpenLoop`]): a fixed offered rate, spread evenly over all senders of the run.
//!   The k-th send of a sender has an *intended* time fixed before the run starts. A sender that
//!   falls behind (a slow relay, a full socket) sends late, but the latency it reports is measured
//!   from the intended time, so the stall shows up in the histogram instead of being hidden by the
//!   sender slowing down with the relay (coordinated omission).
//! * **Closed loop** (flat out): each sender keeps a fixed window of envelopes in flight and sends
//!   the next one as soon as one is delivered; latency is measured from the actual send.
//!
//! Intended times are computed from the slot number by one multiplication, never by adding an
//! interval to the previous time, so rounding cannot accumulate into drift over long runs.

use std::time::Duration;

/// The fixed-rate schedule of one sender among `senders` that share an offered rate.
///
/// The run's slots are numbered 0, 1, 2, ... at `1 / rate` seconds apart; sender `index` owns
/// slots `index`, `index + senders`, `index + 2 * senders`, ... so that senders interleave instead
/// of all firing at the same instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenLoop {
    /// Offered rate of the whole run, in envelopes per second (all senders, all workers).
    rate_milli: u128,
    senders: u128,
    index: u128,
}

impl OpenLoop {
    /// The schedule of sender `index` of `senders`, at `rate` envelopes per second in total.
    ///
    /// Returns `None` for a rate that is not positive and finite, no senders, or an index outside
    /// the senders. The rate keeps three decimals (milli-envelopes per second).
    pub fn new(rate: f64, senders: u64, index: u64) -> Option<Self> {
        if !(rate.is_finite() && rate >= 0.001) || senders == 0 || index >= senders {
            return None;
        }
        // f64 -> u128: rate is positive and finite, so this saturates at worst.
        let rate_milli = (rate * 1000.0).round() as u128;
        Some(Self {
            rate_milli,
            senders: u128::from(senders),
            index: u128::from(index),
        })
    }

    /// The offered rate of this one sender, in envelopes per second.
    pub fn per_sender_rate(&self) -> f64 {
        self.rate_milli as f64 / 1000.0 / self.senders as f64
    }

    /// The intended time of this sender's `k`-th envelope, as an offset from the run's start.
    pub fn intended(&self, k: u64) -> Duration {
        let slot = u128::from(k) * self.senders + self.index;
        // slot / (rate_milli / 1000) seconds, in nanoseconds, by one division (no accumulation).
        let nanos = slot * 1_000_000_000_000 / self.rate_milli;
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// How many envelopes this sender is meant to send in the first `window` of the run.
    pub fn count_within(&self, window: Duration) -> u64 {
        // The k-th send is inside the window while intended(k) < window; count by arithmetic,
        // then correct the rounding at the edge (bounded: at most two steps either way).
        let w = window.as_nanos();
        let slots = w * self.rate_milli / 1_000_000_000_000; // slots whose start is <= window
        let mut k = if slots >= self.index {
            u64::try_from((slots - self.index) / self.senders).unwrap_or(u64::MAX)
        } else {
            0
        };
        for _ in 0..2 {
            if self.intended(k) < window {
                k = k.saturating_add(1);
            }
        }
        while k > 0 && self.intended(k - 1) >= window {
            k -= 1;
        }
        k
    }
}

/// How a run offers load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateMode {
    /// Fixed offered rate over the whole run, in envelopes per second; latency from intended times.
    Open {
        /// Envelopes per second, all senders of all workers together.
        rate: f64,
    },
    /// Flat out: each sender keeps up to `window` envelopes in flight end to end.
    Closed {
        /// Envelopes in flight per sender.
        window: u32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intended_times_are_exact_multiples_of_the_interval() {
        // 1000/s over 4 senders: each sender every 4 ms, sender 1 offset by 1 ms.
        let s = OpenLoop::new(1000.0, 4, 1).unwrap();
        assert_eq!(s.intended(0), Duration::from_millis(1));
        assert_eq!(s.intended(1), Duration::from_millis(5));
        assert_eq!(s.intended(250), Duration::from_millis(1001));
        assert!((s.per_sender_rate() - 250.0).abs() < 1e-9);
    }

    #[test]
    fn intended_times_do_not_drift_over_a_long_run() {
        // 3 per second does not divide a second into whole nanoseconds; adding a rounded
        // interval would drift. After 3 million sends (1e6 s) the time must still be exact.
        let s = OpenLoop::new(3.0, 1, 0).unwrap();
        assert_eq!(s.intended(3_000_000), Duration::from_secs(1_000_000));
        let mut prev = s.intended(0);
        for k in 1..10_000 {
            let t = s.intended(k);
            let gap = (t - prev).as_nanos();
            assert!(
                (333_333_333..=333_333_334).contains(&gap),
                "gap {gap} at {k}"
            );
            prev = t;
        }
    }

    #[test]
    fn senders_interleave_and_cover_every_slot_once() {
        let senders = 5;
        let mut all: Vec<Duration> = (0..senders)
            .flat_map(|i| {
                let s = OpenLoop::new(100.0, senders, i).unwrap();
                (0..20).map(move |k| s.intended(k))
            })
            .collect();
        all.sort();
        for (slot, t) in all.iter().enumerate() {
            assert_eq!(*t, Duration::from_millis(10 * slot as u64));
        }
    }

    #[test]
    fn count_within_matches_the_intended_times() {
        for (rate, senders, index, ms) in [
            (1000.0, 4, 1, 1000),
            (3.0, 1, 0, 2000),
            (7.5, 3, 2, 9999),
            (1e6, 7, 6, 13),
        ] {
            let s = OpenLoop::new(rate, senders, index).unwrap();
            let w = Duration::from_millis(ms);
            let n = s.count_within(w);
            if n > 0 {
                assert!(s.intended(n - 1) < w);
            }
            assert!(s.intended(n) >= w);
        }
    }

    #[test]
    fn total_offered_rate_is_what_was_asked() {
        // 10 senders at 2000/s in total for 3 s: 6000 envelopes, whatever the split.
        let total: u64 = (0..10)
            .map(|i| {
                OpenLoop::new(2000.0, 10, i)
                    .unwrap()
                    .count_within(Duration::from_secs(3))
            })
            .sum();
        assert_eq!(total, 6000);
    }

    #[test]
    fn nonsense_schedules_are_refused() {
        assert!(OpenLoop::new(0.0, 1, 0).is_none());
        assert!(OpenLoop::new(f64::NAN, 1, 0).is_none());
        assert!(OpenLoop::new(f64::INFINITY, 1, 0).is_none());
        assert!(OpenLoop::new(10.0, 0, 0).is_none());
        assert!(OpenLoop::new(10.0, 2, 2).is_none());
    }
}
