//! The workloads, written once against [`Target`] and run by each worker on its share of users.
//!
//! A worker never splits a pair: both ends of a `direct` pair live in the same process, so one
//! monotonic clock timestamps the send and the arrival (see [`crate::envelope`]).

pub mod connections;
pub mod direct;
pub mod room;
pub mod storm;

use crate::accounting::Counts;
use crate::envelope::RunClock;
use crate::latency::Latency;
use crate::net::SourceAddrs;
use crate::progress::Progress;
use crate::schedule::OpenLoop;
use crate::target::{Target, UserId};
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Distinct error messages kept for the report.
pub const MAX_ERROR_SAMPLES: usize = 10;

/// What one worker runs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// This worker's index, from 0.
    pub worker_index: u32,
    /// Workers in the run.
    pub workers: u32,
    /// The run id stamped into every payload.
    pub run_id: u64,
    /// The payload seed.
    pub seed: u64,
    /// Payload bytes.
    pub payload_size: usize,
    /// Send or hold phase.
    pub duration: Duration,
    /// Wait for envelopes in flight after the send phase.
    pub drain: Duration,
    /// Source addresses to spread over.
    pub sources: SourceAddrs,
    /// Connection set-ups at once.
    pub connect_concurrency: u32,
    /// Bound on one connection set-up.
    pub connect_timeout: Duration,
}

impl Plan {
    /// This worker's share of `total` items (users, pairs): a contiguous range, sizes differing by
    /// at most one between workers.
    pub fn share(&self, total: u64) -> Range<u64> {
        share(total, self.workers, self.worker_index)
    }
}

/// Worker `index` of `workers`'s share of `0..total`.
pub fn share(total: u64, workers: u32, index: u32) -> Range<u64> {
    let w = u128::from(workers.max(1));
    let i = u128::from(index.min(workers.saturating_sub(1)));
    let t = u128::from(total);
    let at = |k: u128| u64::try_from(t * k / w).unwrap_or(total);
    at(i)..at(i + 1)
}

/// What one worker hands back to the parent (as a JSON line when it is a separate process).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerOutput {
    /// Envelope counts.
    pub counts: Counts,
    /// Errors.
    pub failures: u64,
    /// First distinct error messages.
    pub errors: Vec<String>,
    /// Connection set-up.
    pub connect: ConnectPhase,
    /// Actual length of the send phase, in seconds.
    pub send_phase_secs: f64,
    /// End-to-end latency histogram (base64 of HdrHistogram V2).
    pub latency: String,
    /// Connection set-up latency histogram (base64 of HdrHistogram V2).
    pub connect_latency: String,
    /// CPU time this worker used, in seconds (filled in by the runner, not the scenario).
    #[serde(default)]
    pub cpu_secs: f64,
    /// `room`: rooms, set-up, messages.
    #[serde(default)]
    pub room: Option<room::RoomOutput>,
    /// `reconnect-storm`: the outages.
    #[serde(default)]
    pub storm: Option<storm::StormOutput>,
}

/// One worker's connect phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectPhase {
    /// Tried.
    pub attempted: u64,
    /// Established.
    pub established: u64,
    /// Failed or timed out.
    pub failed: u64,
    /// Start, in µs since the Unix epoch (wall clock, to line up workers).
    pub start_unix_us: u64,
    /// End, in µs since the Unix epoch.
    pub end_unix_us: u64,
}

/// Microseconds since the Unix epoch.
pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Errors of a worker: counted, and the first few distinct messages kept.
#[derive(Debug, Default)]
pub struct ErrorLog {
    samples: Mutex<Vec<String>>,
}

impl ErrorLog {
    /// Counts an error and keeps its message if it is new and there is room.
    pub fn record(&self, progress: &Progress, err: impl std::fmt::Display) {
        Progress::bump(&progress.failures);
        if let Ok(mut samples) = self.samples.lock()
            && samples.len() < MAX_ERROR_SAMPLES
        {
            let msg = err.to_string();
            if !samples.contains(&msg) {
                samples.push(msg);
            }
        }
    }

    /// The kept messages.
    pub fn samples(&self) -> Vec<String> {
        self.samples.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// A connected client's two halves.
pub type Conn<T> = (<T as Target>::Sender, <T as Target>::Receiver);

/// Waits until the next message of a send loop may leave; returns its stamp (ns on `clock`), or
/// `None` once the run is over. At a fixed rate (`schedule`) it sleeps until message `seq`'s
/// intended time and stamps that time: behind schedule it returns at once and the sender catches
/// up, and the delay counts in the latency (coordinated omission corrected). Flat out it takes a
/// slot of `window`, which whoever sees the message arrive (or refused) gives back.
pub(crate) async fn pace(
    (schedule, window): (Option<&OpenLoop>, Option<&Semaphore>),
    seq: u64,
    clock: &RunClock,
    start: Instant,
    deadline: Instant,
) -> Option<u64> {
    if let Some(schedule) = schedule {
        let at = start + schedule.intended(seq);
        if at >= deadline {
            return None;
        }
        tokio::time::sleep_until(at.into()).await;
        return Some(clock.ns_at(at));
    }
    if Instant::now() >= deadline {
        return None;
    }
    if let Some(window) = window {
        match tokio::time::timeout_at(deadline.into(), window.acquire()).await {
            Ok(Ok(slot)) => slot.forget(),
            _ => return None,
        }
    }
    Some(clock.now_ns())
}

/// Connects `users` (at most `connect_concurrency` set-ups at once, each bounded by the connect
/// timeout). Returns one slot per user, `None` where the connection failed.
pub async fn connect_all<T: Target>(
    target: &Arc<T>,
    users: &[UserId],
    plan: &Plan,
    progress: &Arc<Progress>,
    errors: &Arc<ErrorLog>,
) -> anyhow::Result<(Vec<Option<Conn<T>>>, ConnectPhase, Latency)> {
    let gate = Arc::new(Semaphore::new(plan.connect_concurrency.max(1) as usize));
    let mut set = JoinSet::new();
    let mut phase = ConnectPhase {
        start_unix_us: unix_us(),
        ..ConnectPhase::default()
    };
    for (idx, &user) in users.iter().enumerate() {
        let permit = Arc::clone(&gate).acquire_owned().await?;
        let target = Arc::clone(target);
        let source = plan.sources.for_client(u64::from(user));
        let (progress, errors) = (Arc::clone(progress), Arc::clone(errors));
        let timeout = plan.connect_timeout;
        Progress::bump(&progress.attempted);
        set.spawn(async move {
            let _permit = permit;
            let began = Instant::now();
            let result = match tokio::time::timeout(timeout, target.connect(user, source)).await {
                Ok(Ok(conn)) => {
                    Progress::bump(&progress.connected);
                    Some(conn)
                }
                Ok(Err(e)) => {
                    errors.record(&progress, format!("connect: {e:#}"));
                    None
                }
                Err(_) => {
                    errors.record(&progress, "connect: timed out");
                    None
                }
            };
            (idx, began.elapsed(), result)
        });
    }
    let mut slots: Vec<Option<Conn<T>>> = (0..users.len()).map(|_| None).collect();
    let mut latency = Latency::new()?;
    while let Some(joined) = set.join_next().await {
        phase.attempted += 1;
        match joined {
            Ok((idx, took, Some(conn))) => {
                latency.record(took);
                phase.established += 1;
                if let Some(slot) = slots.get_mut(idx) {
                    *slot = Some(conn);
                }
            }
            Ok((_, _, None)) => phase.failed += 1,
            Err(e) => {
                phase.failed += 1;
                errors.record(progress, format!("connect task: {e}"));
            }
        }
    }
    phase.end_unix_us = unix_us();
    Ok((slots, phase, latency))
}

/// The users `range` as user ids (fails past u32, far beyond any machine's reach).
pub fn user_ids(range: Range<u64>) -> anyhow::Result<Vec<UserId>> {
    range
        .map(|u| UserId::try_from(u).map_err(|_| anyhow::anyhow!("user id {u} out of range")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_everything_once_and_are_balanced() {
        for (total, workers) in [(0, 1), (1, 3), (10, 3), (1000, 7), (5, 8)] {
            let ranges: Vec<_> = (0..workers).map(|i| share(total, workers, i)).collect();
            assert_eq!(ranges.first().unwrap().start, 0);
            assert_eq!(ranges.last().unwrap().end, total);
            for w in ranges.windows(2) {
                assert_eq!(w[0].end, w[1].start);
            }
            let sizes: Vec<u64> = ranges.iter().map(|r| r.end - r.start).collect();
            let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(max - min <= 1, "{total}/{workers}: {sizes:?}");
        }
    }

    #[test]
    fn error_log_keeps_a_few_distinct_messages_and_counts_all() {
        let p = Progress::default();
        let log = ErrorLog::default();
        for i in 0..100 {
            log.record(&p, format!("e{}", i % 20));
        }
        assert_eq!(p.snapshot().failures, 100);
        assert_eq!(log.samples().len(), MAX_ERROR_SAMPLES);
    }
}

#[cfg(test)]
mod in_memory;
