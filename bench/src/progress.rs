//! Live counters of a run, shown as progress bars and shipped from workers to their parent.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// Where a worker is in its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Phase {
    /// Setting up connections.
    Connecting = 0,
    /// Connections up; setting up what the scenario needs before sending (rooms).
    Preparing = 1,
    /// Every connection set up (or failed): holding or sending.
    Running = 2,
    /// Send phase over: waiting for envelopes in flight.
    Draining = 3,
    /// Finished.
    Done = 4,
}

impl Phase {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Phase::Connecting,
            1 => Phase::Preparing,
            2 => Phase::Running,
            3 => Phase::Draining,
            _ => Phase::Done,
        }
    }
}

/// Counters updated by the tasks of one worker (relaxed atomics: they are only displayed and
/// compared, never used to decide correctness, which comes from the final tallies).
#[derive(Debug, Default)]
pub struct Progress {
    phase: AtomicU8,
    /// Connections tried so far.
    pub attempted: AtomicU64,
    /// Connections established.
    pub connected: AtomicU64,
    /// Errors of any kind.
    pub failures: AtomicU64,
    /// Envelopes sent.
    pub sent: AtomicU64,
    /// First arrivals of this run's envelopes.
    pub received: AtomicU64,
    /// First acknowledgements of this run's envelopes.
    pub acked: AtomicU64,
    /// Envelopes the target refused (they will be neither acked nor delivered).
    pub refused: AtomicU64,
}

impl Progress {
    /// Moves to `phase`.
    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            phase: Phase::from_u8(self.phase.load(Ordering::Relaxed)),
            attempted: self.attempted.load(Ordering::Relaxed),
            connected: self.connected.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Phase.
    pub phase: Phase,
    /// Connections tried.
    pub attempted: u64,
    /// Connections established.
    pub connected: u64,
    /// Errors.
    pub failures: u64,
    /// Envelopes sent.
    pub sent: u64,
    /// First arrivals.
    pub received: u64,
    /// First acknowledgements.
    pub acked: u64,
    /// Refusals.
    #[serde(default)]
    pub refused: u64,
}

impl Snapshot {
    /// Whether every envelope sent has been answered: delivered `fanout` times (or refused) and
    /// acked (or refused).
    pub fn all_answered(&self, fanout: u64) -> bool {
        let expected = self.sent.saturating_mul(fanout);
        let refused = self.refused.saturating_mul(fanout);
        self.received.saturating_add(refused) >= expected
            && self.acked.saturating_add(self.refused) >= self.sent
    }

    /// The counters of several workers together; the phase is the least advanced one.
    pub fn sum(parts: &[Snapshot]) -> Snapshot {
        let mut total = Snapshot {
            phase: parts
                .iter()
                .map(|s| s.phase)
                .min()
                .unwrap_or(Phase::Connecting),
            attempted: 0,
            connected: 0,
            failures: 0,
            sent: 0,
            received: 0,
            acked: 0,
            refused: 0,
        };
        for s in parts {
            total.attempted += s.attempted;
            total.connected += s.connected;
            total.failures += s.failures;
            total.sent += s.sent;
            total.received += s.received;
            total.acked += s.acked;
            total.refused += s.refused;
        }
        total
    }
}

/// The progress bars of a run, drawn on standard error (hidden when it is not a terminal).
#[derive(Debug)]
pub struct Bars {
    connect: ProgressBar,
    traffic: ProgressBar,
}

impl Bars {
    /// Bars for `clients` connections; hidden entirely when `quiet`.
    pub fn new(clients: u64, quiet: bool) -> Self {
        let multi = MultiProgress::with_draw_target(if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        });
        let connect = multi.add(ProgressBar::new(clients));
        if let Ok(style) = ProgressStyle::with_template("connect {bar:30} {pos}/{len} {msg}") {
            connect.set_style(style);
        }
        let traffic = multi.add(ProgressBar::new_spinner());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed} {msg}") {
            traffic.set_style(style);
        }
        Self { connect, traffic }
    }

    /// Shows a snapshot.
    pub fn show(&self, s: &Snapshot) {
        self.connect.set_position(s.connected);
        self.connect.set_message(format!(
            "established, {} started, {} failed",
            s.attempted, s.failures
        ));
        self.traffic.set_message(format!(
            "{:?}: sent {} delivered {} refused {} failures {}",
            s.phase, s.sent, s.received, s.refused, s.failures
        ));
        self.traffic.tick();
    }

    /// Removes the bars.
    pub fn finish(&self) {
        self.connect.finish_and_clear();
        self.traffic.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drain_waits_for_deliveries_acks_or_refusals() {
        let p = Progress::default();
        for _ in 0..4 {
            Progress::bump(&p.sent);
        }
        for _ in 0..3 {
            Progress::bump(&p.received);
            Progress::bump(&p.acked);
        }
        assert!(!p.snapshot().all_answered(1));
        Progress::bump(&p.refused);
        assert!(p.snapshot().all_answered(1));
        // In a room of 3 (fan-out 2), the 3 non-refused envelopes need 6 deliveries.
        assert!(!p.snapshot().all_answered(2));
        for _ in 0..3 {
            Progress::bump(&p.received);
        }
        assert!(p.snapshot().all_answered(2));
    }

    #[test]
    fn snapshots_of_workers_add_up_and_wait_for_the_slowest() {
        let p = Progress::default();
        Progress::bump(&p.sent);
        Progress::bump(&p.sent);
        Progress::bump(&p.received);
        p.set_phase(Phase::Draining);
        let a = p.snapshot();
        let mut b = a;
        b.phase = Phase::Running;
        let s = Snapshot::sum(&[a, b]);
        assert_eq!((s.sent, s.received, s.phase), (4, 2, Phase::Running));
    }
}
