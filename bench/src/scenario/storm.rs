//! `reconnect-storm --clients N`: restart the relay under load.
//!
//! The clients form `N / 2` pairs that exchange envelopes as in `direct` (at a fixed `--rate` by
//! default). During the send phase the relay is stopped and started again once per `--signal`
//! (`term`: SIGTERM, the graceful drain; `kill`: SIGKILL, a crash), at evenly spaced instants.
//! Every client reconnects by itself (the target is built to), logs in again and sends what the
//! relay had not acknowledged again, under the same message id. For each outage the report gives
//! how long the relay took to exit and to listen again, and how long after the signal each client
//! was back, up to the last one; over the whole run, the counts say how many acknowledged
//! envelopes were lost (`acked_lost`, which a durable relay keeps at 0; what was acked for a
//! client that was not back by the end is `acked_away` instead) and how many arrived twice
//! (`duplicates`: an envelope delivered but whose ack the relay had not stored is delivered again,
//! which the SDK drops by message id).
//!
//! The relay is driven through [`Outages`]: [`crate::relay::RelayProcess`] for a real
//! `spider-relay` child process, an in-memory stand-in in the tests.

use crate::envelope::RunClock;
use crate::latency::{Latency, LatencySummary};
use crate::target::UserId;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long after a restart the scenario waits for every client to be back before it gives up on
/// the stragglers (they count as not back).
pub const OUTAGE_LIMIT: Duration = Duration::from_secs(60);

/// How often the controller looks whether every client is back.
const BACK_POLL: Duration = Duration::from_millis(5);

/// How the relay is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StopSignal {
    /// SIGTERM: the relay stops accepting, sends `Drain` to every client, flushes and exits.
    Term,
    /// SIGKILL: the relay dies at once; only what it had made durable survives.
    Kill,
}

impl StopSignal {
    /// The name in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Term => "term",
            StopSignal::Kill => "kill",
        }
    }
}

/// A relay the scenario can stop and start again.
pub trait Outages: Send + 'static {
    /// Stops the relay with `signal`; returns once it is gone, with how long that took.
    fn stop(&mut self, signal: StopSignal)
    -> impl Future<Output = anyhow::Result<Duration>> + Send;

    /// Starts the relay again on the same address and data; returns once it listens, with how long
    /// that took.
    fn start(&mut self) -> impl Future<Output = anyhow::Result<Duration>> + Send;
}

/// A relay that is never restarted (the `direct` scenario).
#[derive(Debug)]
pub struct NoOutages;

impl Outages for NoOutages {
    async fn stop(&mut self, _signal: StopSignal) -> anyhow::Result<Duration> {
        anyhow::bail!("no relay to stop")
    }

    async fn start(&mut self) -> anyhow::Result<Duration> {
        anyhow::bail!("no relay to start")
    }
}

/// One outage as measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outage {
    /// How the relay was stopped.
    pub signal: StopSignal,
    /// When the signal was sent, in seconds from the start of the send phase.
    pub at_secs: f64,
    /// From the signal until the relay process was gone, in seconds.
    pub exit_secs: Option<f64>,
    /// From starting the new relay process until it listened, in seconds.
    pub restart_secs: Option<f64>,
    /// Clients connected when the signal was sent.
    pub clients: u64,
    /// Of those, clients logged in again (to the new relay) within [`OUTAGE_LIMIT`] of its start.
    pub back: u64,
    /// From the signal until the last client was back, in seconds; `None` if some never were.
    pub all_back_secs: Option<f64>,
    /// From the signal until each client was back.
    pub back_latency: Option<LatencySummary>,
    /// What went wrong stopping or starting the relay, if anything (later outages are skipped).
    pub error: Option<String>,
}

/// What a `reconnect-storm` worker reports besides the counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StormOutput {
    /// The outages, in order.
    pub outages: Vec<Outage>,
    /// Times any client lost its connection.
    pub disconnects: u64,
    /// Times any client logged in again.
    pub reconnects: u64,
}

/// When each client last came back, on the worker's clock.
#[derive(Debug)]
pub struct Board {
    clock: RunClock,
    /// Per client (by user id): ns of its last reconnect, 0 if none yet.
    back_ns: Vec<AtomicU64>,
    /// Per client: ns of its last lost connection, 0 if none yet.
    down_ns: Vec<AtomicU64>,
    disconnects: AtomicU64,
    reconnects: AtomicU64,
}

impl Board {
    /// A board for users `0..users`.
    pub fn new(clock: RunClock, users: usize) -> Self {
        Self {
            clock,
            back_ns: (0..users).map(|_| AtomicU64::new(0)).collect(),
            down_ns: (0..users).map(|_| AtomicU64::new(0)).collect(),
            disconnects: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
        }
    }

    /// `user` lost its connection.
    pub fn down(&self, user: UserId) {
        self.disconnects.fetch_add(1, Ordering::Relaxed);
        if let Some(slot) = self.down_ns.get(user as usize) {
            slot.store(self.clock.now_ns().max(1), Ordering::Relaxed);
        }
    }

    /// Whether `user` lost its connection and has not come back since.
    pub fn away(&self, user: UserId) -> bool {
        let at = |v: &Vec<AtomicU64>| {
            v.get(user as usize)
                .map_or(0, |s| s.load(Ordering::Relaxed))
        };
        at(&self.down_ns) > at(&self.back_ns)
    }

    /// `user` is logged in again, now.
    pub fn back(&self, user: UserId) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
        if let Some(slot) = self.back_ns.get(user as usize) {
            // Never 0: 0 means "not back yet".
            slot.store(self.clock.now_ns().max(1), Ordering::Relaxed);
        }
    }

    /// When `user` last came back after `since_ns`, if it did.
    pub fn back_since(&self, user: UserId, since_ns: u64) -> Option<u64> {
        let at = self.back_ns.get(user as usize)?.load(Ordering::Relaxed);
        (at > since_ns).then_some(at)
    }

    /// Of `users`, how many came back after `since_ns`, and when the last of them did.
    pub fn tally(&self, users: &[UserId], since_ns: u64) -> (u64, u64) {
        let mut back = 0;
        let mut last = since_ns;
        for &u in users {
            if let Some(at) = self.back_since(u, since_ns) {
                back += 1;
                last = last.max(at);
            }
        }
        (back, last)
    }

    /// Disconnects and reconnects so far.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.disconnects.load(Ordering::Relaxed),
            self.reconnects.load(Ordering::Relaxed),
        )
    }
}

/// The instants of `count` outages spread evenly over a send phase of `duration` (none at its
/// very start or end): `duration × k / (count + 1)` for k = 1..=count.
pub fn schedule(duration: Duration, count: usize) -> Vec<Duration> {
    let parts = u32::try_from(count + 1).unwrap_or(u32::MAX);
    (1..=count)
        .map(|k| duration * u32::try_from(k).unwrap_or(u32::MAX) / parts)
        .collect()
}

/// Runs the outages against `relay` while the pairs send: each at its instant (or right after the
/// previous one, if that ran late), then waits until every client in `users` is back.
pub async fn control<O: Outages>(
    mut relay: O,
    signals: Vec<StopSignal>,
    start: Instant,
    duration: Duration,
    board: Arc<Board>,
    users: Vec<UserId>,
) -> (Vec<Outage>, O) {
    let mut outages = Vec::with_capacity(signals.len());
    let at = schedule(duration, signals.len());
    for (signal, at) in signals.into_iter().zip(at) {
        tokio::time::sleep_until((start + at).into()).await;
        let t0 = board.clock.now_ns();
        let mut outage = Outage {
            signal,
            at_secs: (board.clock.instant_at(t0) - start).as_secs_f64(),
            exit_secs: None,
            restart_secs: None,
            clients: users.len() as u64,
            back: 0,
            all_back_secs: None,
            back_latency: None,
            error: None,
        };
        let restarted = async {
            outage.exit_secs = Some(relay.stop(signal).await?.as_secs_f64());
            outage.restart_secs = Some(relay.start().await?.as_secs_f64());
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = restarted {
            outage.error = Some(format!("{e:#}"));
            outages.push(outage);
            break;
        }
        let limit = Instant::now() + OUTAGE_LIMIT;
        // One look per turn, until every client is back or the limit passes.
        while Instant::now() < limit && board.tally(&users, t0).0 < users.len() as u64 {
            tokio::time::sleep(BACK_POLL).await;
        }
        let (back, last) = board.tally(&users, t0);
        outage.back = back;
        if back == users.len() as u64 {
            outage.all_back_secs = Some(Duration::from_nanos(last - t0).as_secs_f64());
        }
        if let Ok(mut latency) = Latency::new() {
            for &u in &users {
                if let Some(at) = board.back_since(u, t0) {
                    latency.record_micros((at - t0) / 1000);
                }
            }
            outage.back_latency = latency.summary();
        }
        outages.push(outage);
    }
    (outages, relay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_are_spread_over_the_send_phase() {
        let d = Duration::from_secs(30);
        assert_eq!(schedule(d, 1), vec![Duration::from_secs(15)]);
        assert_eq!(
            schedule(d, 2),
            vec![Duration::from_secs(10), Duration::from_secs(20)]
        );
        assert!(schedule(d, 0).is_empty());
    }

    #[test]
    fn the_board_tells_who_is_back_since_when() {
        let board = Board::new(RunClock::start(), 4);
        std::thread::sleep(Duration::from_millis(2));
        board.back(1);
        let t0 = board.clock.now_ns();
        std::thread::sleep(Duration::from_millis(2));
        board.down(0);
        board.back(0);
        board.back(2);
        let users = [0, 1, 2, 3];
        let (back, last) = board.tally(&users, t0);
        assert_eq!(back, 2, "1 came back before the outage, 3 never");
        assert!(last > t0);
        assert!(board.back_since(1, t0).is_none() && board.back_since(1, 0).is_some());
        assert!(board.back_since(99, 0).is_none());
        assert_eq!(board.totals(), (1, 3));
        // 0 went down and came back; 3 goes down and stays away.
        std::thread::sleep(Duration::from_millis(2));
        board.down(3);
        assert!(!board.away(0) && !board.away(1) && board.away(3));
        assert!(!board.away(99));
    }

    /// A relay that takes fixed times to stop and start, and brings the board's clients back.
    struct Fake {
        board: Arc<Board>,
        users: Vec<UserId>,
        fail_start: bool,
    }

    impl Outages for Fake {
        async fn stop(&mut self, _signal: StopSignal) -> anyhow::Result<Duration> {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(Duration::from_millis(20))
        }

        async fn start(&mut self) -> anyhow::Result<Duration> {
            if self.fail_start {
                anyhow::bail!("no binary");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            // All but the last client come back at once.
            for &u in self.users.iter().take(self.users.len() - 1) {
                self.board.back(u);
            }
            Ok(Duration::from_millis(10))
        }
    }

    #[tokio::test]
    async fn each_outage_reports_who_came_back_and_stragglers_are_not_all_back() {
        let board = Arc::new(Board::new(RunClock::start(), 3));
        let users = vec![0, 1, 2];
        let fake = Fake {
            board: Arc::clone(&board),
            users: users.clone(),
            fail_start: false,
        };
        // The last client comes back by itself a little later, during the first outage only.
        let late = {
            let board = Arc::clone(&board);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(150)).await;
                board.back(2);
            })
        };
        let (outages, _) = tokio::time::timeout(
            Duration::from_secs(5),
            control(
                fake,
                vec![StopSignal::Term],
                Instant::now(),
                Duration::from_millis(200),
                Arc::clone(&board),
                users,
            ),
        )
        .await
        .unwrap();
        late.await.unwrap();
        let o = &outages[0];
        assert_eq!((o.signal, o.clients, o.back), (StopSignal::Term, 3, 3));
        assert!(o.at_secs >= 0.099, "{o:?}");
        assert_eq!(o.exit_secs, Some(0.02));
        let all = o.all_back_secs.unwrap();
        assert!(
            all >= 0.03,
            "the last one came back after the restart: {o:?}"
        );
        assert_eq!(o.back_latency.unwrap().count, 3);
        assert!(o.error.is_none());
    }

    #[tokio::test]
    async fn a_relay_that_does_not_start_ends_the_outages_with_its_error() {
        let board = Arc::new(Board::new(RunClock::start(), 1));
        let fake = Fake {
            board: Arc::clone(&board),
            users: vec![0],
            fail_start: true,
        };
        let (outages, _) = control(
            fake,
            vec![StopSignal::Kill, StopSignal::Term],
            Instant::now(),
            Duration::from_millis(30),
            board,
            vec![0],
        )
        .await;
        assert_eq!(outages.len(), 1);
        assert!(outages[0].error.as_deref().unwrap().contains("no binary"));
        assert_eq!(outages[0].back, 0);
        assert!(outages[0].all_back_secs.is_none());
    }
}
