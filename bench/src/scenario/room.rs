//! `room --members M --senders S [--rooms R] [--rate X | --window W]`: fan-out in rooms.
//!
//! Room `r` has users `r*M .. (r+1)*M`; the first connected one creates the room and an invite
//! link, and every other member joins through the link, one after another (each join is a signed
//! membership change at the room's current epoch, so joins of one room cannot overlap; rooms set
//! up in parallel). Then the first `S` members post: at a fixed `--rate` (messages per second over
//! all senders of all rooms, open loop, latency from the intended send time) or flat out, each
//! sender keeping `--window` messages in flight until their *last* member has them.
//!
//! Before posting, every member waits until it has every membership change the later joins made
//! (the relay stores each change for every member: a room of M members costs about M²/2 change
//! envelopes to fill, 500 000 for 1000), so that the posts are not timed behind that backlog.
//!
//! Counts are per delivery: every message owes one delivery to each other member, so
//! `counts.sent` = messages × (members − 1) = `delivered + lost`. The report's `latency` is the
//! latency to the last member of each message that reached them all ([`crate::fanout`]); the
//! latency of every single delivery is in the room section.
//!
//! A room lives in one worker (one clock for both ends of every delivery).

use super::{ErrorLog, Plan, WorkerOutput, connect_all, user_ids};
use crate::accounting::{Counts, DirectionTally, SeqSet};
use crate::envelope::{PayloadMaker, RunClock, Stamp};
use crate::fanout::FanOut;
use crate::latency::Latency;
use crate::progress::{Phase, Progress};
use crate::schedule::{OpenLoop, RateMode};
use crate::target::{EnvelopeReceiver, Incoming, RoomSender, RoomTicket, Target, UserId};
use anyhow::Context as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

/// Delay between the end of the set-up and the first intended send.
const START_DELAY: Duration = Duration::from_millis(50);

/// How often the drain phase checks whether everything sent has arrived.
const DRAIN_POLL: Duration = Duration::from_millis(5);

/// Extra time for receive tasks to stop once told.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The shape of a `room` run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomSpec {
    /// Rooms.
    pub rooms: u64,
    /// Members per room.
    pub members: u64,
    /// Members of each room that post.
    pub senders: u64,
}

/// What one worker reports about its rooms, besides the counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoomOutput {
    /// Rooms whose set-up succeeded.
    pub rooms_ready: u64,
    /// Members in those rooms (owners included).
    pub members_joined: u64,
    /// Longest set-up of one room (create, link, every join), in seconds.
    pub setup_secs: f64,
    /// From the end of the set-up until every member had every membership change the joins
    /// after its own made (the relay stores and delivers each to every member), in seconds.
    #[serde(default)]
    pub settle_secs: f64,
    /// Membership-change envelopes the members received while their rooms filled up.
    #[serde(default)]
    pub changes_delivered: u64,
    /// Members that did not get every change before [`settle_limit`] (they post and receive
    /// anyway).
    #[serde(default)]
    pub unsettled_members: u64,
    /// Messages posted.
    pub messages_sent: u64,
    /// Messages the target acked.
    pub messages_acked: u64,
    /// Messages the target refused.
    pub messages_refused: u64,
    /// Messages that reached every member.
    pub messages_complete: u64,
    /// Latency of every delivery (base64 of HdrHistogram V2).
    pub delivery_latency: String,
}

/// Settings and counters shared by a worker's send and receive tasks.
#[derive(Debug, Clone)]
struct Ctx {
    run: u64,
    clock: RunClock,
    start: Instant,
    deadline: Instant,
    hard_deadline: Instant,
    progress: Arc<Progress>,
    errors: Arc<ErrorLog>,
    goal: Arc<Goal>,
}

/// What the drain waits for: every delivery owed by the messages sent.
#[derive(Debug, Default)]
struct Goal {
    /// Deliveries owed: each message sent owes one per other member.
    owed: AtomicU64,
    /// Deliveries that will never come because the target refused their message.
    refused: AtomicU64,
}

impl Goal {
    fn met(&self, progress: &Progress) -> bool {
        let s = progress.snapshot();
        let owed = self.owed.load(Ordering::Relaxed);
        let refused = self.refused.load(Ordering::Relaxed);
        s.received.saturating_add(refused) >= owed && s.acked.saturating_add(s.refused) >= s.sent
    }
}

/// One member of a room that is set up.
struct Member<T: Target> {
    user: UserId,
    tx: T::Sender,
    rx: T::Receiver,
}

/// A room after its set-up.
struct Ready<T: Target> {
    index: u64,
    ticket: RoomTicket,
    members: Vec<Member<T>>,
}

/// What a receive task saw.
struct Received {
    user: UserId,
    /// First arrivals, and repeats, per sender.
    from: HashMap<UserId, (SeqSet, u64)>,
    received: u64,
    foreign: u64,
    /// Acks and refusals of this member's own posts.
    acked: SeqSet,
    refused: u64,
    latency: Latency,
}

/// Runs this worker's share of the rooms.
pub async fn run<T>(
    target: Arc<T>,
    plan: &Plan,
    spec: RoomSpec,
    mode: RateMode,
    progress: Arc<Progress>,
) -> anyhow::Result<WorkerOutput>
where
    T: Target,
    T::Sender: RoomSender,
{
    let errors = Arc::new(ErrorLog::default());
    let my_rooms = plan.share(spec.rooms);
    let users = user_ids(
        my_rooms.start.saturating_mul(spec.members)..my_rooms.end.saturating_mul(spec.members),
    )?;
    let clock = RunClock::start();
    progress.set_phase(Phase::Connecting);
    let (conns, connect, connect_latency) =
        connect_all(&target, &users, plan, &progress, &errors).await?;

    progress.set_phase(Phase::Preparing);
    let mut conns = conns.into_iter();
    let mut setups: Vec<JoinHandle<(anyhow::Result<Ready<T>>, f64)>> = Vec::new();
    for (k, index) in my_rooms.clone().enumerate() {
        let first = users
            .get(k * spec.members as usize)
            .copied()
            .context("room without users")?;
        let mut members: Vec<Member<T>> = Vec::new();
        for (i, conn) in conns.by_ref().take(spec.members as usize).enumerate() {
            // A member whose connection failed is not in the room (already counted).
            if let Some((tx, rx)) = conn {
                members.push(Member {
                    user: first + i as UserId,
                    tx,
                    rx,
                });
            }
        }
        let errors = Arc::clone(&errors);
        let progress = Arc::clone(&progress);
        setups.push(tokio::spawn(async move {
            let began = Instant::now();
            let ready = set_up(index, members, &errors, &progress).await;
            (ready, began.elapsed().as_secs_f64())
        }));
    }
    let mut rooms: Vec<Ready<T>> = Vec::new();
    let mut setup_secs: f64 = 0.0;
    for task in setups {
        match task.await {
            Ok((Ok(ready), took)) => {
                setup_secs = setup_secs.max(took);
                rooms.push(ready);
            }
            Ok((Err(e), took)) => {
                setup_secs = setup_secs.max(took);
                errors.record(&progress, format!("room set-up: {e:#}"));
            }
            Err(e) => errors.record(&progress, format!("room set-up task: {e}")),
        }
    }
    // Wait until every member has every membership change: a 1000-member room's set-up stores
    // about 500 000 of them, and posts measured while the relay still delivered those would time
    // the set-up's backlog, not the fan-out. (A guard: on the relay measured, every change had
    // arrived 0.05 s after the last join was answered, since a change is pushed before its reply.)
    let settle_began = Instant::now();
    let settle_until = settle_began + settle_limit(setup_secs);
    let mut settling = Vec::new();
    for room in rooms {
        settling.push(tokio::spawn(settle_room(room, settle_until)));
    }
    let mut rooms: Vec<Ready<T>> = Vec::new();
    let (mut changes_delivered, mut unsettled_members) = (0u64, 0u64);
    for task in settling {
        match task.await {
            Ok((room, seen, unsettled)) => {
                changes_delivered += seen;
                unsettled_members += unsettled;
                rooms.push(room);
            }
            Err(e) => errors.record(&progress, format!("room settle task: {e}")),
        }
    }
    let settle_secs = settle_began.elapsed().as_secs_f64();
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
        goal: Arc::default(),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let senders_total = spec
        .rooms
        .checked_mul(spec.senders)
        .context("too many senders")?;

    // Per room: its fan-out tracker, its senders' tasks (with the sender's user id), and every
    // member's receive task.
    struct Running {
        fanout: Arc<FanOut>,
        sends: Vec<(UserId, JoinHandle<u64>)>,
        recvs: Vec<JoinHandle<anyhow::Result<Received>>>,
    }
    let mut running: Vec<Running> = Vec::new();
    // The halves of members that do not post stay open until the end.
    let mut idle_senders: Vec<T::Sender> = Vec::new();
    let (mut rooms_ready, mut members_joined) = (0u64, 0u64);
    for room in rooms {
        rooms_ready += 1;
        members_joined += room.members.len() as u64;
        let fanout_n = u32::try_from(room.members.len().saturating_sub(1)).unwrap_or(u32::MAX);
        let posting: Vec<UserId> = room
            .members
            .iter()
            .take(spec.senders as usize)
            .map(|m| m.user)
            .collect();
        let fanout = Arc::new(FanOut::new(posting.iter().copied(), fanout_n));
        let windows: HashMap<UserId, Arc<Semaphore>> = match mode {
            RateMode::Closed { window } => posting
                .iter()
                .map(|u| (*u, Arc::new(Semaphore::new(window as usize))))
                .collect(),
            RateMode::Open { .. } => HashMap::new(),
        };
        let windows = Arc::new(windows);
        let mut sends = Vec::new();
        let mut recvs = Vec::new();
        for (k, m) in room.members.into_iter().enumerate() {
            let Member { user, tx, rx } = m;
            if k < posting.len() {
                let global = room.index * spec.senders + k as u64;
                let schedule = match mode {
                    RateMode::Open { rate } => Some(
                        OpenLoop::new(rate, senders_total, global)
                            .context("--rate must be a positive number")?,
                    ),
                    RateMode::Closed { .. } => None,
                };
                let maker = PayloadMaker::new(plan.seed, user, plan.payload_size);
                sends.push((
                    user,
                    tokio::spawn(send_loop(
                        tx,
                        user,
                        room.ticket,
                        u64::from(fanout_n),
                        schedule,
                        windows.get(&user).cloned(),
                        maker,
                        ctx.clone(),
                    )),
                ));
            } else {
                idle_senders.push(tx);
            }
            recvs.push(tokio::spawn(recv_loop(
                rx,
                user,
                Arc::clone(&fanout),
                Arc::clone(&windows),
                stop_rx.clone(),
                ctx.clone(),
            )));
        }
        running.push(Running {
            fanout,
            sends,
            recvs,
        });
    }

    // Sent per sender, then the send phase is over.
    let mut sent_by: Vec<Vec<(UserId, u64)>> = Vec::with_capacity(running.len());
    for room in &mut running {
        let mut sent = Vec::new();
        for (user, task) in room.sends.drain(..) {
            sent.push((user, task.await.unwrap_or(0)));
        }
        sent_by.push(sent);
    }
    let send_phase_secs = start.elapsed().as_secs_f64();
    progress.set_phase(Phase::Draining);
    let drain_end = Instant::now() + plan.drain;
    while Instant::now() < drain_end && !ctx.goal.met(&progress) {
        tokio::time::sleep(DRAIN_POLL).await;
    }
    let _ = stop_tx.send(true);

    let mut counts = Counts::default();
    let mut last_member = Latency::new()?;
    let mut delivery = Latency::new()?;
    let mut out = RoomOutput {
        rooms_ready,
        members_joined,
        setup_secs,
        settle_secs,
        changes_delivered,
        unsettled_members,
        ..RoomOutput::default()
    };
    let empty = SeqSet::new();
    for (room, sent) in running.into_iter().zip(sent_by) {
        let mut received: Vec<Received> = Vec::new();
        for task in room.recvs {
            match tokio::time::timeout(STOP_GRACE, task).await {
                Ok(Ok(Ok(r))) => received.push(r),
                Ok(Ok(Err(e))) => errors.record(&progress, format!("receive task: {e:#}")),
                Ok(Err(e)) => errors.record(&progress, format!("receive task: {e}")),
                Err(_) => errors.record(&progress, "receive task did not stop"),
            }
        }
        let by_user: HashMap<UserId, &Received> = received.iter().map(|r| (r.user, r)).collect();
        let fanout_n = u64::from(room.fanout.expected());
        for &(sender, n) in &sent {
            let own = by_user.get(&sender);
            let acked = own.map_or_else(|| empty.clone(), |r| r.acked.clone());
            let refused = own.map_or(0, |r| r.refused);
            out.messages_sent += n;
            out.messages_acked += acked.count_below(n);
            out.messages_refused += refused;
            // A member whose receive task failed received nothing: its deliveries are lost.
            let mut directions = 0u64;
            for r in &received {
                if r.user == sender {
                    continue;
                }
                directions += 1;
                let (got, dups) = r.from.get(&sender).cloned().unwrap_or_default();
                counts.add(&Counts::from_direction(&DirectionTally {
                    sent: n,
                    received: got,
                    acked: acked.clone(),
                    duplicates: dups,
                    refused,
                }));
            }
            for _ in directions..fanout_n {
                counts.add(&Counts::from_direction(&DirectionTally {
                    sent: n,
                    received: SeqSet::new(),
                    acked: acked.clone(),
                    duplicates: 0,
                    refused,
                }));
            }
        }
        for r in &received {
            counts.received += r.received;
            counts.foreign += r.foreign;
            delivery.merge(&r.latency)?;
        }
        out.messages_complete += room.fanout.complete();
        last_member.merge(&room.fanout.last_member_latency()?)?;
    }
    drop(idle_senders);
    progress.set_phase(Phase::Done);
    out.delivery_latency = delivery.to_base64()?;

    Ok(WorkerOutput {
        counts,
        failures: progress.failures.load(Ordering::Relaxed),
        errors: errors.samples(),
        connect,
        send_phase_secs,
        latency: last_member.to_base64()?,
        connect_latency: connect_latency.to_base64()?,
        cpu_secs: 0.0,
        room: Some(out),
        storm: None,
    })
}

/// How long members may take to receive the set-up's membership changes: twice the set-up, and
/// half a minute more.
pub fn settle_limit(setup_secs: f64) -> Duration {
    let setup = if setup_secs.is_finite() {
        setup_secs.clamp(0.0, 3600.0)
    } else {
        0.0
    };
    Duration::from_secs_f64(setup * 2.0 + 30.0)
}

/// The membership changes the member at position `k` of a room of `n` receives: one per later
/// join (the actor of a change gets a reply instead; the owner's create and invite link reach no
/// one else).
pub fn changes_owed(k: usize, n: usize) -> u64 {
    n.saturating_sub(k + 1) as u64
}

/// Reads each member's events until it has every membership change it is owed, or until
/// `until`. Returns the room, the changes seen, and how many members fell short.
async fn settle_room<T: Target>(room: Ready<T>, until: Instant) -> (Ready<T>, u64, u64) {
    let n = room.members.len();
    let mut tasks = Vec::with_capacity(n);
    for (k, m) in room.members.into_iter().enumerate() {
        let owed = changes_owed(k, n);
        tasks.push(tokio::spawn(async move {
            let mut m = m;
            let mut seen = 0u64;
            // One event per turn, until the member has its changes (or time is up).
            while seen < owed {
                match tokio::time::timeout_at(until.into(), m.rx.next()).await {
                    Ok(Ok(Some(Incoming::RoomChanged))) => seen += 1,
                    Ok(Ok(Some(_))) => {}
                    _ => break,
                }
            }
            (m, seen, seen < owed)
        }));
    }
    let mut members = Vec::with_capacity(n);
    let (mut seen, mut short) = (0, 0);
    for task in tasks {
        // A settle task only reads; it cannot panic short of a bug, which then shows here.
        if let Ok((m, s, unsettled)) = task.await {
            seen += s;
            short += u64::from(unsettled);
            members.push(m);
        }
    }
    (
        Ready {
            index: room.index,
            ticket: room.ticket,
            members,
        },
        seen,
        short,
    )
}

/// Creates room `index` by its first member and has every other member join, one after another.
/// A member whose join fails is left out of the room (and counted as a failure).
async fn set_up<T>(
    index: u64,
    members: Vec<Member<T>>,
    errors: &ErrorLog,
    progress: &Progress,
) -> anyhow::Result<Ready<T>>
where
    T: Target,
    T::Sender: RoomSender,
{
    let mut members = members.into_iter();
    let mut owner = members.next().context("every member's connection failed")?;
    let mut ticket = owner
        .tx
        .create_room(&format!("r{index}"))
        .await
        .context("creating the room")?;
    let mut joined = vec![owner];
    for mut m in members {
        match m.tx.join_room(&ticket).await {
            Ok(epoch) => {
                ticket.epoch = epoch;
                joined.push(m);
            }
            Err(e) => errors.record(progress, format!("join: {e:#}")),
        }
    }
    Ok(Ready {
        index,
        ticket,
        members: joined,
    })
}

/// Posts from `from` until the deadline; returns how many messages were sent.
#[allow(clippy::too_many_arguments)]
async fn send_loop<S: RoomSender>(
    mut tx: S,
    from: UserId,
    room: RoomTicket,
    fanout: u64,
    schedule: Option<OpenLoop>,
    window: Option<Arc<Semaphore>>,
    maker: PayloadMaker,
    ctx: Ctx,
) -> u64 {
    let mut seq: u64 = 0;
    // Each turn posts one message; the loop ends at the deadline (or on a broken connection).
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
        // Owed before it can arrive, so that the drain never sees more arrivals than owed.
        ctx.goal.owed.fetch_add(fanout, Ordering::Relaxed);
        Progress::bump(&ctx.progress.sent);
        seq += 1;
        match tokio::time::timeout_at(
            ctx.hard_deadline.into(),
            tx.send_room(&room, seq - 1, payload),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                ctx.errors.record(&ctx.progress, format!("send: {e:#}"));
                break;
            }
            Err(_) => {
                ctx.errors.record(&ctx.progress, "send: timed out");
                break;
            }
        }
    }
    seq
}

/// Receives for one member until told to stop: posts of the room's senders, and the acks of its
/// own posts.
async fn recv_loop<R: EnvelopeReceiver>(
    mut rx: R,
    user: UserId,
    fanout: Arc<FanOut>,
    windows: Arc<HashMap<UserId, Arc<Semaphore>>>,
    mut stop: watch::Receiver<bool>,
    ctx: Ctx,
) -> anyhow::Result<Received> {
    let mut r = Received {
        user,
        from: HashMap::new(),
        received: 0,
        foreign: 0,
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
                Some(s) if s.run == ctx.run && s.from != user && fanout.is_sender(s.from) => {
                    let (got, dups) = r.from.entry(s.from).or_default();
                    match got.insert(s.seq) {
                        Some(true) => {
                            r.received += 1;
                            Progress::bump(&ctx.progress.received);
                            let now = ctx.clock.now_ns();
                            r.latency
                                .record_micros(now.saturating_sub(s.sent_ns) / 1000);
                            if fanout.arrive(s.from, s.seq, s.sent_ns, now)
                                && let Some(w) = windows.get(&s.from)
                            {
                                w.add_permits(1);
                            }
                        }
                        Some(false) => *dups += 1,
                        None => r.foreign += 1,
                    }
                }
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
                ctx.goal
                    .refused
                    .fetch_add(u64::from(fanout.expected()), Ordering::Relaxed);
                ctx.errors
                    .record(&ctx.progress, format!("message {seq} refused: {why}"));
                if let Some(w) = windows.get(&user) {
                    w.add_permits(1);
                }
            }
            Ok(Some(Incoming::Error(why))) => ctx.errors.record(&ctx.progress, why),
            Ok(Some(Incoming::Disconnected | Incoming::Reconnected | Incoming::RoomChanged)) => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_is_owed_one_change_per_later_join() {
        // Owner, then members 1..4 join in order: the owner sees 4 joins, the last member none.
        let owed: Vec<u64> = (0..5).map(|k| changes_owed(k, 5)).collect();
        assert_eq!(owed, [4, 3, 2, 1, 0]);
        // A room of 1000 costs M(M-1)/2 change envelopes to fill.
        let total: u64 = (0..1000).map(|k| changes_owed(k, 1000)).sum();
        assert_eq!(total, 499_500);
        assert_eq!(changes_owed(3, 2), 0);
    }

    #[test]
    fn the_settle_limit_grows_with_the_set_up() {
        assert_eq!(settle_limit(0.0), Duration::from_secs(30));
        assert_eq!(settle_limit(100.0), Duration::from_secs(230));
        assert_eq!(settle_limit(f64::NAN).as_secs(), 30);
    }
}
