//! `direct --pairs N [--rate R]`: pairs of users exchanging 1:1 envelopes.
//!
//! Users `2p` and `2p + 1` form pair `p`; each sends to the other. At a fixed `--rate` the senders
//! follow an [`OpenLoop`] schedule and stamp each envelope with its *intended* send time, so that
//! latency includes any time the sender spent behind schedule (coordinated omission corrected).
//! Flat out, each sender keeps `--window` envelopes in flight: the receiving side of the pair
//! returns a slot to the sender on each first arrival, and the stamp is the actual send time.

use super::storm::{self, Board, NoOutages, Outages, StopSignal, StormOutput};
use super::{ErrorLog, Plan, WorkerOutput, connect_all, user_ids};
use crate::accounting::{Counts, DirectionTally, SeqSet};
use crate::envelope::{PayloadMaker, RunClock, Stamp};
use crate::latency::Latency;
use crate::progress::{Phase, Progress};
use crate::schedule::{OpenLoop, RateMode};
use crate::target::{EnvelopeReceiver, EnvelopeSender, Incoming, Target, UserId};
use anyhow::Context as _;
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

/// Delay between the end of the connect phase and the first intended send, so that every sender
/// task is spawned before the schedule starts.
const START_DELAY: Duration = Duration::from_millis(50);

/// How often the drain phase checks whether everything sent has arrived.
const DRAIN_POLL: Duration = Duration::from_millis(5);

/// Extra time for receive tasks to stop once told.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Shared settings of one worker's send and receive tasks.
#[derive(Debug, Clone)]
struct Ctx {
    run: u64,
    clock: RunClock,
    start: Instant,
    deadline: Instant,
    /// Hard bound on any one send: the end of the drain.
    hard_deadline: Instant,
    progress: Arc<Progress>,
    errors: Arc<ErrorLog>,
    /// Reconnects, when the relay is restarted under the clients (`reconnect-storm`).
    board: Option<Arc<Board>>,
}

/// What a receive task saw.
struct Received {
    /// Envelopes from the peer (first arrivals).
    from_peer: SeqSet,
    duplicates: u64,
    foreign: u64,
    received: u64,
    /// Acks of this user's own sends.
    acked: SeqSet,
    /// This user's own sends the target refused.
    refused: u64,
    latency: Latency,
}

/// Runs this worker's share of `pairs`.
pub async fn run<T: Target>(
    target: Arc<T>,
    plan: &Plan,
    pairs: u64,
    mode: RateMode,
    progress: Arc<Progress>,
) -> anyhow::Result<WorkerOutput> {
    run_with::<T, NoOutages>(target, plan, pairs, mode, progress, None).await
}

/// Runs this worker's share of `pairs`, and with `storm`, stops and restarts the relay once per
/// signal during the send phase (the `reconnect-storm` scenario; see [`super::storm`]).
pub async fn run_with<T: Target, O: Outages>(
    target: Arc<T>,
    plan: &Plan,
    pairs: u64,
    mode: RateMode,
    progress: Arc<Progress>,
    storm: Option<(O, Vec<StopSignal>)>,
) -> anyhow::Result<WorkerOutput> {
    let errors = Arc::new(ErrorLog::default());
    let my_pairs = plan.share(pairs);
    let users = user_ids(my_pairs.start * 2..my_pairs.end * 2)?;
    let senders_total = pairs.checked_mul(2).context("too many pairs")?;
    let clock = RunClock::start();
    progress.set_phase(Phase::Connecting);
    let (conns, connect, connect_latency) =
        connect_all(&target, &users, plan, &progress, &errors).await?;
    progress.set_phase(Phase::Running);

    let start = Instant::now() + START_DELAY;
    let deadline = start + plan.duration;
    let ctx = Ctx {
        run: plan.run_id,
        clock,
        start,
        deadline,
        hard_deadline: deadline + plan.drain,
        progress: Arc::clone(&progress),
        errors: Arc::clone(&errors),
        board: storm
            .is_some()
            .then(|| Arc::new(Board::new(clock, my_pairs.end as usize * 2))),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    // The users of the pairs that send, a then b, in the order of `send_tasks`.
    let mut connected: Vec<UserId> = Vec::new();

    // Per direction a -> b: the sender's handle, and which receive tasks hold its arrivals and acks.
    let mut send_tasks: Vec<JoinHandle<u64>> = Vec::new();
    let mut recv_tasks: Vec<JoinHandle<anyhow::Result<Received>>> = Vec::new();
    let mut conns = conns.into_iter();
    for &a in users.iter().step_by(2) {
        let b = a + 1;
        let (Some(Some((tx_a, rx_a))), Some(Some((tx_b, rx_b)))) = (conns.next(), conns.next())
        else {
            continue; // a pair with a failed connection sends nothing (failure already counted)
        };
        connected.extend([a, b]);
        // Window slots per direction: a -> b is refilled by b's receive task, and vice versa.
        let (win_ab, win_ba) = match mode {
            RateMode::Closed { window } => (
                Some(Arc::new(Semaphore::new(window as usize))),
                Some(Arc::new(Semaphore::new(window as usize))),
            ),
            RateMode::Open { .. } => (None, None),
        };
        for (tx, from, to, win) in [(tx_a, a, b, win_ab.clone()), (tx_b, b, a, win_ba.clone())] {
            let schedule = match mode {
                RateMode::Open { rate } => Some(
                    OpenLoop::new(rate, senders_total, u64::from(from))
                        .context("--rate must be a positive number")?,
                ),
                RateMode::Closed { .. } => None,
            };
            let maker = PayloadMaker::new(plan.seed, from, plan.payload_size);
            send_tasks.push(tokio::spawn(send_loop(
                tx,
                from,
                to,
                schedule,
                win,
                maker,
                ctx.clone(),
            )));
        }
        recv_tasks.push(tokio::spawn(recv_loop(
            rx_a,
            a,
            b,
            Windows {
                peer: win_ba.clone(),
                own: win_ab.clone(),
            },
            stop_rx.clone(),
            ctx.clone(),
        )));
        recv_tasks.push(tokio::spawn(recv_loop(
            rx_b,
            b,
            a,
            Windows {
                peer: win_ab,
                own: win_ba,
            },
            stop_rx.clone(),
            ctx.clone(),
        )));
    }

    let control = match (storm, &ctx.board) {
        (Some((relay, signals)), Some(board)) => Some(tokio::spawn(storm::control(
            relay,
            signals,
            start,
            plan.duration,
            Arc::clone(board),
            connected.clone(),
        ))),
        _ => None,
    };

    let mut sent_by: Vec<u64> = Vec::with_capacity(send_tasks.len());
    for task in send_tasks {
        sent_by.push(task.await.unwrap_or(0));
    }
    let send_phase_secs = start.elapsed().as_secs_f64();
    // The relay stays up for the drain: the outages end (and the relay is back) first. It is
    // stopped when `relay` is dropped, after the drain.
    let mut relay = None;
    let storm_output = match (control, &ctx.board) {
        (Some(task), Some(board)) => {
            let (outages, r) = task.await.context("the outage controller")?;
            relay = Some(r);
            let (disconnects, reconnects) = board.totals();
            Some(StormOutput {
                outages,
                disconnects,
                reconnects,
            })
        }
        _ => None,
    };
    progress.set_phase(Phase::Draining);
    let drain_end = Instant::now() + plan.drain;
    // Wait for every envelope and every ack (a relay acks after routing, so the last acks can
    // trail the last deliveries); a target that never acks some envelope uses up the drain.
    while Instant::now() < drain_end {
        if progress.snapshot().all_answered(1) {
            break;
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
    let _ = stop_tx.send(true);

    let mut received: Vec<Option<Received>> = Vec::with_capacity(recv_tasks.len());
    for task in recv_tasks {
        match tokio::time::timeout(STOP_GRACE, task).await {
            Ok(Ok(Ok(r))) => received.push(Some(r)),
            Ok(Ok(Err(e))) => {
                errors.record(&progress, format!("receive task: {e:#}"));
                received.push(None);
            }
            Ok(Err(e)) => {
                errors.record(&progress, format!("receive task: {e}"));
                received.push(None);
            }
            Err(_) => {
                errors.record(&progress, "receive task did not stop");
                received.push(None);
            }
        }
    }
    progress.set_phase(Phase::Done);
    drop(relay);

    // Send tasks were pushed a->b, b->a per pair; receive tasks rx_a (from b), rx_b (from a).
    let mut counts = Counts::default();
    let mut latency = Latency::new()?;
    let empty = SeqSet::new();
    // In a storm, a receiver that lost its connection and was not back by the end could not
    // get what the relay stored for it: acked and undelivered, but not lost by the relay.
    let away = |u: UserId| ctx.board.as_ref().is_some_and(|b| b.away(u));
    for (pair, sent) in sent_by.chunks(2).enumerate() {
        let (Some(&sent_ab), Some(&sent_ba)) = (sent.first(), sent.get(1)) else {
            continue;
        };
        let (Some(&a), Some(&b)) = (connected.get(pair * 2), connected.get(pair * 2 + 1)) else {
            continue;
        };
        let rx_a = received.get(pair * 2).and_then(Option::as_ref);
        let rx_b = received.get(pair * 2 + 1).and_then(Option::as_ref);
        // a -> b: delivered as seen by b, acked as seen by a.
        for (sent, at_receiver, at_sender, to) in
            [(sent_ab, rx_b, rx_a, b), (sent_ba, rx_a, rx_b, a)]
        {
            let tally = DirectionTally {
                sent,
                received: at_receiver.map_or_else(|| empty.clone(), |r| r.from_peer.clone()),
                acked: at_sender.map_or_else(|| empty.clone(), |r| r.acked.clone()),
                duplicates: at_receiver.map_or(0, |r| r.duplicates),
                refused: at_sender.map_or(0, |r| r.refused),
            };
            counts.add(&Counts::from_direction_to(&tally, away(to)));
        }
        for r in [rx_a, rx_b].into_iter().flatten() {
            counts.received += r.received;
            counts.foreign += r.foreign;
            latency.merge(&r.latency)?;
        }
    }

    Ok(WorkerOutput {
        counts,
        failures: progress.failures.load(Ordering::Relaxed),
        errors: errors.samples(),
        connect,
        send_phase_secs,
        latency: latency.to_base64()?,
        connect_latency: connect_latency.to_base64()?,
        cpu_secs: 0.0,
        room: None,
        storm: storm_output,
    })
}

/// Sends from `from` to `to` until the deadline; returns how many envelopes were sent.
async fn send_loop<S: EnvelopeSender>(
    mut tx: S,
    from: UserId,
    to: UserId,
    schedule: Option<OpenLoop>,
    window: Option<Arc<Semaphore>>,
    maker: PayloadMaker,
    ctx: Ctx,
) -> u64 {
    let mut seq: u64 = 0;
    // Each turn sends one envelope; the loop ends at the deadline (or on a broken connection).
    loop {
        let pacing = (schedule.as_ref(), window.as_deref());
        let Some(sent_ns) = super::pace(pacing, seq, &ctx.clock, ctx.start, ctx.deadline).await
        else {
            break;
        };
        let stamp = Stamp {
            from,
            run: ctx.run,
            seq,
            sent_ns,
        };
        let payload = Bytes::from(maker.make(&stamp));
        match tokio::time::timeout_at(ctx.hard_deadline.into(), tx.send(to, seq, payload)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                ctx.errors.record(&ctx.progress, format!("send: {e:#}"));
                break;
            }
            Err(_) => {
                // The envelope may still leave: count it as sent, so it is lost or delivered,
                // never unexpected.
                seq += 1;
                Progress::bump(&ctx.progress.sent);
                ctx.errors.record(&ctx.progress, "send: timed out");
                break;
            }
        }
        seq += 1;
        Progress::bump(&ctx.progress.sent);
    }
    seq
}

/// The flat-out window slots a receive task gives back.
struct Windows {
    /// The peer's sends to this user: a slot back on each first arrival.
    peer: Option<Arc<Semaphore>>,
    /// This user's sends: a slot back when the target refuses one (it will never arrive).
    own: Option<Arc<Semaphore>>,
}

/// Receives for user `me` until told to stop: envelopes from `peer`, and acks of its own sends.
async fn recv_loop<R: EnvelopeReceiver>(
    mut rx: R,
    me: UserId,
    peer: UserId,
    windows: Windows,
    mut stop: watch::Receiver<bool>,
    ctx: Ctx,
) -> anyhow::Result<Received> {
    let peer_window = windows.peer;
    let mut r = Received {
        from_peer: SeqSet::new(),
        duplicates: 0,
        foreign: 0,
        received: 0,
        acked: SeqSet::new(),
        refused: 0,
        latency: Latency::new()?,
    };
    // Each turn handles one event; the loop ends at the stop signal or when the connection ends.
    loop {
        let event = tokio::select! {
            biased;
            _ = stop.changed() => break,
            event = rx.next() => event,
        };
        match event {
            Ok(Some(Incoming::Delivered(payload))) => match Stamp::read(&payload) {
                Some(s) if s.run == ctx.run && s.from == peer => match r.from_peer.insert(s.seq) {
                    Some(true) => {
                        r.received += 1;
                        Progress::bump(&ctx.progress.received);
                        let now = ctx.clock.now_ns();
                        r.latency
                            .record_micros(now.saturating_sub(s.sent_ns) / 1000);
                        if let Some(w) = &peer_window {
                            w.add_permits(1);
                        }
                    }
                    Some(false) => r.duplicates += 1,
                    None => r.foreign += 1,
                },
                _ => r.foreign += 1,
            },
            Ok(Some(Incoming::Acked(seq))) => {
                if r.acked.insert(seq) == Some(true) {
                    Progress::bump(&ctx.progress.acked);
                }
            }
            Ok(Some(Incoming::Refused { seq, why })) => {
                r.refused += 1;
                Progress::bump(&ctx.progress.refused);
                ctx.errors
                    .record(&ctx.progress, format!("envelope {seq} refused: {why}"));
                if let Some(w) = &windows.own {
                    w.add_permits(1);
                }
            }
            Ok(Some(Incoming::Error(why))) => ctx.errors.record(&ctx.progress, why),
            Ok(Some(Incoming::RoomChanged)) => {}
            // Only reconnecting targets say these (`reconnect-storm`).
            Ok(Some(Incoming::Disconnected)) => {
                if let Some(b) = &ctx.board {
                    b.down(me);
                }
            }
            Ok(Some(Incoming::Reconnected)) => {
                if let Some(b) = &ctx.board {
                    b.back(me);
                }
            }
            Ok(None) => {
                ctx.errors
                    .record(&ctx.progress, "connection closed by the target");
                break;
            }
            Err(e) => {
                ctx.errors.record(&ctx.progress, format!("receive: {e:#}"));
                break;
            }
        }
    }
    Ok(r)
}
