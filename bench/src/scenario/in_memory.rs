//! The scenarios over an in-memory target: accounting, loss, acks and the coordinated-omission
//! correction, checked without sockets. Timings here are lower bounds set by injected delays,
//! never speeds of the machine.

use super::*;
use crate::latency::Latency;
use crate::schedule::RateMode;
use crate::target::{EnvelopeReceiver, EnvelopeSender, Incoming, RoomSender, RoomTicket};
use bytes::Bytes;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::mpsc;

/// A relay in memory: routes by user id through unbounded channels, acks every envelope.
#[derive(Default)]
struct MemTarget {
    inboxes: Mutex<HashMap<UserId, mpsc::UnboundedSender<Incoming>>>,
    /// Drop (after acking) every n-th envelope: an ack that lies.
    drop_every: Option<u64>,
    dropped: AtomicU64,
    routed: AtomicU64,
    /// Stall the first send of the run this long.
    stall_once: Option<Duration>,
    stalled: AtomicBool,
    /// Put a message not from this run in every inbox at connect.
    foreign_at_connect: bool,
    /// Rooms: members by room id.
    rooms: Mutex<HashMap<[u8; 16], Vec<UserId>>>,
    /// Room deliveries to this member are dropped (after the sender's ack).
    deaf_member: Option<UserId>,
    /// Refuse every n-th post (as a rate limit would).
    refuse_every: Option<u64>,
    /// The relay is down: sends wait in `held` until it is back.
    down: AtomicBool,
    /// Envelopes sent while down: recipient, payload, the sender's channel and sequence number.
    held: Mutex<Vec<Held>>,
    /// The last envelope delivered to each user (a restart delivers it again: an ack lost in a
    /// crash).
    last_delivered: Mutex<HashMap<UserId, Bytes>>,
    /// This client does not come back after a restart: what is sent to it from then on is
    /// acked and kept (counted in `kept`), not delivered.
    stays_away: Option<UserId>,
    away_now: AtomicBool,
    kept: AtomicU64,
}

impl MemTarget {
    /// Whether an envelope for `to` is kept for a client that is away instead of delivered.
    fn keeps_for(&self, to: UserId) -> bool {
        self.away_now.load(Ordering::SeqCst) && self.stays_away == Some(to)
    }
}

/// An envelope sent while the relay was down: recipient, payload, the sender's channel, seq.
type Held = (UserId, Bytes, mpsc::UnboundedSender<Incoming>, u64);

struct MemSender {
    user: UserId,
    target: Arc<MemTarget>,
    own: mpsc::UnboundedSender<Incoming>,
}

struct MemReceiver {
    rx: mpsc::UnboundedReceiver<Incoming>,
}

impl Target for Arc<MemTarget> {
    type Sender = MemSender;
    type Receiver = MemReceiver;

    async fn connect(
        &self,
        user: UserId,
        _source: IpAddr,
    ) -> anyhow::Result<(MemSender, MemReceiver)> {
        let (tx, rx) = mpsc::unbounded_channel();
        if self.foreign_at_connect {
            tx.send(Incoming::Delivered(Bytes::from_static(
                b"left over from another run",
            )))?;
        }
        self.inboxes.lock().unwrap().insert(user, tx.clone());
        Ok((
            MemSender {
                user,
                target: Arc::clone(self),
                own: tx,
            },
            MemReceiver { rx },
        ))
    }
}

impl EnvelopeSender for MemSender {
    async fn send(&mut self, to: UserId, seq: u64, payload: Bytes) -> anyhow::Result<()> {
        let t = &self.target;
        if let Some(stall) = t.stall_once
            && !t.stalled.swap(true, Ordering::SeqCst)
        {
            tokio::time::sleep(stall).await;
        }
        if t.down.load(Ordering::SeqCst) {
            t.held
                .lock()
                .unwrap()
                .push((to, payload, self.own.clone(), seq));
            return Ok(());
        }
        let n = t.routed.fetch_add(1, Ordering::SeqCst) + 1;
        if t.refuse_every.is_some_and(|k| n.is_multiple_of(k)) {
            self.own.send(Incoming::Refused {
                seq,
                why: "RATE_LIMITED".into(),
            })?;
            return Ok(());
        }
        if t.drop_every.is_some_and(|k| n.is_multiple_of(k)) {
            t.dropped.fetch_add(1, Ordering::SeqCst);
        } else if t.keeps_for(to) {
            t.kept.fetch_add(1, Ordering::SeqCst);
        } else {
            t.last_delivered.lock().unwrap().insert(to, payload.clone());
            let inbox = t.inboxes.lock().unwrap().get(&to).cloned();
            inbox.unwrap().send(Incoming::Delivered(payload))?;
        }
        self.own.send(Incoming::Acked(seq))?;
        Ok(())
    }
}

/// The in-memory relay stopped and started by the storm controller.
struct MemOutages(Arc<MemTarget>);

impl storm::Outages for MemOutages {
    async fn stop(&mut self, _signal: storm::StopSignal) -> anyhow::Result<Duration> {
        let t = &self.0;
        t.down.store(true, Ordering::SeqCst);
        for inbox in t.inboxes.lock().unwrap().values() {
            let _ = inbox.send(Incoming::Disconnected);
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        Ok(Duration::from_millis(30))
    }

    async fn start(&mut self) -> anyhow::Result<Duration> {
        let t = &self.0;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let inboxes = t.inboxes.lock().unwrap().clone();
        for (user, inbox) in &inboxes {
            if t.stays_away == Some(*user) {
                t.away_now.store(true, Ordering::SeqCst);
                continue;
            }
            let _ = inbox.send(Incoming::Reconnected);
            // The ack of the last delivery did not survive: it comes again.
            if let Some(p) = t.last_delivered.lock().unwrap().get(user) {
                let _ = inbox.send(Incoming::Delivered(p.clone()));
            }
        }
        t.down.store(false, Ordering::SeqCst);
        for (to, payload, own, seq) in t.held.lock().unwrap().drain(..) {
            t.routed.fetch_add(1, Ordering::SeqCst);
            if t.keeps_for(to) {
                t.kept.fetch_add(1, Ordering::SeqCst);
            } else {
                let _ = inboxes.get(&to).unwrap().send(Incoming::Delivered(payload));
            }
            let _ = own.send(Incoming::Acked(seq));
        }
        Ok(Duration::from_millis(20))
    }
}

impl RoomSender for MemSender {
    async fn create_room(&mut self, name: &str) -> anyhow::Result<RoomTicket> {
        let mut id = [0u8; 16];
        id[..name.len().min(16)].copy_from_slice(&name.as_bytes()[..name.len().min(16)]);
        self.target
            .rooms
            .lock()
            .unwrap()
            .insert(id, vec![self.user]);
        Ok(RoomTicket {
            id,
            link: [7; 16],
            epoch: 2,
        })
    }

    async fn join_room(&mut self, room: &RoomTicket) -> anyhow::Result<u64> {
        let mut rooms = self.target.rooms.lock().unwrap();
        let members = rooms.get_mut(&room.id).unwrap();
        // As the relay does: every member before the join hears of it.
        let inboxes = self.target.inboxes.lock().unwrap();
        for m in members.iter() {
            inboxes.get(m).unwrap().send(Incoming::RoomChanged)?;
        }
        members.push(self.user);
        Ok(room.epoch + 1)
    }

    async fn send_room(
        &mut self,
        room: &RoomTicket,
        seq: u64,
        payload: Bytes,
    ) -> anyhow::Result<()> {
        let t = &self.target;
        let n = t.routed.fetch_add(1, Ordering::SeqCst) + 1;
        if t.refuse_every.is_some_and(|k| n.is_multiple_of(k)) {
            self.own.send(Incoming::Refused {
                seq,
                why: "RATE_LIMITED".into(),
            })?;
            return Ok(());
        }
        let members = t.rooms.lock().unwrap().get(&room.id).cloned().unwrap();
        for m in members.into_iter().filter(|m| *m != self.user) {
            if Some(m) == t.deaf_member {
                t.dropped.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            let inbox = t.inboxes.lock().unwrap().get(&m).cloned();
            inbox.unwrap().send(Incoming::Delivered(payload.clone()))?;
        }
        self.own.send(Incoming::Acked(seq))?;
        Ok(())
    }
}

impl EnvelopeReceiver for MemReceiver {
    async fn next(&mut self) -> anyhow::Result<Option<Incoming>> {
        Ok(self.rx.recv().await)
    }
}

fn plan(duration_ms: u64) -> Plan {
    Plan {
        worker_index: 0,
        workers: 1,
        run_id: 77,
        seed: 1,
        payload_size: 64,
        duration: Duration::from_millis(duration_ms),
        drain: Duration::from_secs(2),
        sources: SourceAddrs::for_target("127.0.0.1:1".parse().unwrap(), 1).unwrap(),
        connect_concurrency: 4,
        connect_timeout: Duration::from_secs(5),
    }
}

async fn direct(
    target: MemTarget,
    pairs: u64,
    mode: RateMode,
    ms: u64,
) -> (WorkerOutput, Arc<MemTarget>) {
    let target = Arc::new(Arc::new(target));
    let out = direct::run(Arc::clone(&target), &plan(ms), pairs, mode, Arc::default())
        .await
        .unwrap();
    (out, Arc::clone(&*target))
}

#[tokio::test]
async fn flat_out_every_envelope_is_delivered_once_and_counted() {
    let (out, target) = direct(MemTarget::default(), 3, RateMode::Closed { window: 4 }, 300).await;
    let c = out.counts;
    assert!(c.adds_up(), "{c:?}");
    assert!(c.sent > 0);
    assert_eq!(c.sent, target.routed.load(Ordering::SeqCst));
    assert_eq!(
        (c.delivered, c.lost, c.duplicates, c.foreign),
        (c.sent, 0, 0, 0)
    );
    assert_eq!((c.acked, c.acked_lost), (c.sent, 0));
    assert_eq!(
        Latency::from_base64(&out.latency).unwrap().len(),
        c.delivered
    );
    assert_eq!(out.connect.established, 6);
    assert_eq!(out.failures, 0);
}

#[tokio::test]
async fn envelopes_acked_then_dropped_are_lost_and_acked_lost() {
    let target = MemTarget {
        drop_every: Some(5),
        ..MemTarget::default()
    };
    let (out, target) = direct(target, 2, RateMode::Open { rate: 2000.0 }, 500).await;
    let c = out.counts;
    assert!(c.adds_up(), "{c:?}");
    // The schedule fixes the count: 2000/s for 0.5 s.
    assert_eq!(c.sent, 1000);
    assert_eq!(c.lost, target.dropped.load(Ordering::SeqCst));
    assert_eq!(c.lost, 200);
    assert_eq!(c.acked_lost, c.lost);
    assert_eq!(c.delivered, 800);
}

#[tokio::test]
async fn a_stalled_sender_shows_in_latency_at_a_fixed_rate() {
    // One pair at 200/s: each sender every 10 ms. The first send stalls 300 ms; the envelopes
    // scheduled meanwhile leave late, and their latency counts from when they were meant to
    // leave, so the stall appears in the tail instead of vanishing (coordinated omission).
    let target = MemTarget {
        stall_once: Some(Duration::from_millis(300)),
        ..MemTarget::default()
    };
    let (out, _) = direct(target, 1, RateMode::Open { rate: 200.0 }, 1000).await;
    assert!(out.counts.adds_up());
    assert_eq!(out.counts.lost, 0);
    let latency = Latency::from_base64(&out.latency)
        .unwrap()
        .summary()
        .unwrap();
    assert!(latency.max_us >= 250_000, "stall hidden: {latency:?}");
}

#[tokio::test]
async fn leftovers_from_other_runs_are_foreign_not_deliveries() {
    let target = MemTarget {
        foreign_at_connect: true,
        ..MemTarget::default()
    };
    let (out, _) = direct(target, 2, RateMode::Open { rate: 400.0 }, 250).await;
    let c = out.counts;
    assert!(c.adds_up(), "{c:?}");
    assert_eq!(c.foreign, 4);
    assert_eq!(c.delivered, c.sent);
    assert_eq!(c.received, c.delivered);
}

#[tokio::test]
async fn connections_are_held_for_the_duration() {
    let target = Arc::new(Arc::new(MemTarget::default()));
    let began = std::time::Instant::now();
    let out = connections::run(target, &plan(200), 5, Arc::default())
        .await
        .unwrap();
    assert!(began.elapsed() >= Duration::from_millis(200));
    assert_eq!(
        (
            out.connect.attempted,
            out.connect.established,
            out.connect.failed
        ),
        (5, 5, 0)
    );
    assert_eq!(out.counts, Counts::default());
    assert_eq!(out.failures, 0);
}

async fn room(
    target: MemTarget,
    spec: room::RoomSpec,
    mode: RateMode,
    ms: u64,
) -> (WorkerOutput, Arc<MemTarget>) {
    let target = Arc::new(Arc::new(target));
    let out = room::run(Arc::clone(&target), &plan(ms), spec, mode, Arc::default())
        .await
        .unwrap();
    (out, Arc::clone(&*target))
}

#[tokio::test]
async fn every_room_message_owes_one_delivery_per_other_member() {
    // 2 rooms of 5, 2 posting members each, 400 messages/s in all for 0.25 s: 100 messages,
    // each owed to 4 members.
    let spec = room::RoomSpec {
        rooms: 2,
        members: 5,
        senders: 2,
    };
    let (out, _) = room(
        MemTarget::default(),
        spec,
        RateMode::Open { rate: 400.0 },
        250,
    )
    .await;
    let r = out.room.clone().unwrap();
    let c = out.counts;
    assert_eq!((r.rooms_ready, r.members_joined), (2, 10));
    // 4 + 3 + 2 + 1 changes per room of 5, all seen before posting.
    assert_eq!((r.changes_delivered, r.unsettled_members), (20, 0));
    assert_eq!(r.messages_sent, 100);
    assert_eq!(c.sent, r.messages_sent * (spec.members - 1));
    assert_eq!(c.sent, c.delivered + c.lost);
    assert!(c.adds_up(), "{c:?}");
    assert_eq!(
        (c.lost, c.duplicates, c.foreign, c.acked_lost),
        (0, 0, 0, 0)
    );
    assert_eq!(r.messages_acked, 100);
    assert_eq!(r.messages_complete, 100);
    // The report's latency is to the last member: one per message; every delivery has its own.
    assert_eq!(Latency::from_base64(&out.latency).unwrap().len(), 100);
    assert_eq!(
        Latency::from_base64(&r.delivery_latency).unwrap().len(),
        c.delivered
    );
    assert_eq!(out.failures, 0);
}

#[tokio::test]
async fn flat_out_the_window_opens_when_the_last_member_has_the_message() {
    let spec = room::RoomSpec {
        rooms: 1,
        members: 3,
        senders: 3,
    };
    let (out, target) = room(
        MemTarget::default(),
        spec,
        RateMode::Closed { window: 2 },
        200,
    )
    .await;
    let r = out.room.unwrap();
    assert!(r.messages_sent > 10, "the window kept opening: {r:?}");
    assert_eq!(r.messages_sent, target.routed.load(Ordering::SeqCst));
    assert_eq!(out.counts.sent, r.messages_sent * 2);
    assert_eq!(out.counts.lost, 0);
    assert_eq!(r.messages_complete, r.messages_sent);
}

#[tokio::test]
async fn a_member_that_gets_nothing_makes_every_message_incomplete() {
    // Member 4 (not a sender) is deaf: every message is acked, reaches 3 of 4, and is lost for 4.
    let target = MemTarget {
        deaf_member: Some(4),
        ..MemTarget::default()
    };
    let spec = room::RoomSpec {
        rooms: 1,
        members: 5,
        senders: 1,
    };
    let (out, target) = room(target, spec, RateMode::Open { rate: 100.0 }, 300).await;
    let r = out.room.unwrap();
    let c = out.counts;
    assert_eq!(r.messages_sent, 30);
    assert_eq!(c.sent, 30 * 4);
    assert_eq!(c.lost, 30);
    assert_eq!(c.lost, target.dropped.load(Ordering::SeqCst));
    assert_eq!(c.acked_lost, 30, "acked by the relay, never delivered");
    assert!(c.adds_up(), "{c:?}");
    assert_eq!(r.messages_complete, 0);
    assert!(Latency::from_base64(&out.latency).unwrap().is_empty());
}

#[tokio::test]
async fn refused_posts_are_failures_and_lost_for_every_member() {
    let target = MemTarget {
        refuse_every: Some(4),
        ..MemTarget::default()
    };
    let spec = room::RoomSpec {
        rooms: 1,
        members: 3,
        senders: 1,
    };
    let (out, _) = room(target, spec, RateMode::Open { rate: 100.0 }, 400).await;
    let r = out.room.unwrap();
    let c = out.counts;
    assert_eq!(
        (r.messages_sent, r.messages_refused, r.messages_acked),
        (40, 10, 30)
    );
    assert_eq!(
        (c.lost, c.refused),
        (20, 20),
        "each refusal is 2 lost deliveries"
    );
    assert!(c.adds_up(), "{c:?}");
    assert_eq!(out.failures, 10);
    assert!(
        out.errors.iter().any(|e| e.contains("RATE_LIMITED")),
        "{:?}",
        out.errors
    );
}

#[tokio::test]
async fn refused_direct_envelopes_free_the_window_and_count_as_failures() {
    // Flat out with a window of 1: unless a refusal gives its slot back, the sender would wait
    // for the refused envelope until the end of the run, and the drain for its ack.
    let target = MemTarget {
        refuse_every: Some(3),
        ..MemTarget::default()
    };
    let began = std::time::Instant::now();
    let (out, target) = direct(target, 1, RateMode::Closed { window: 1 }, 200).await;
    let c = out.counts;
    assert!(c.sent > 30, "the senders kept going: {c:?}");
    assert_eq!(c.sent, target.routed.load(Ordering::SeqCst));
    assert_eq!(c.refused, c.sent / 3);
    assert_eq!(c.lost, c.refused);
    assert_eq!(c.acked + c.refused, c.sent);
    assert!(c.adds_up(), "{c:?}");
    assert_eq!(out.failures, c.refused);
    // The drain did not wait for acks that will never come (it allows 2 s).
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
}

/// Two pairs at 400 envelopes a second for 0.6 s, the relay stopped with each of `signals`.
async fn storm(
    target: MemTarget,
    signals: Vec<storm::StopSignal>,
) -> (WorkerOutput, Arc<MemTarget>) {
    let target = Arc::new(Arc::new(target));
    let relay = MemOutages(Arc::clone(&*target));
    let out = direct::run_with(
        Arc::clone(&target),
        &plan(600),
        2,
        RateMode::Open { rate: 400.0 },
        Arc::default(),
        Some((relay, signals)),
    )
    .await
    .unwrap();
    (out, Arc::clone(&*target))
}

#[tokio::test]
async fn a_restarted_relay_loses_nothing_acked_and_repeats_show_as_duplicates() {
    let (out, _) = storm(
        MemTarget::default(),
        vec![storm::StopSignal::Term, storm::StopSignal::Kill],
    )
    .await;
    let c = out.counts;
    // 400/s for 0.6 s: 240 envelopes, the ones sent while the relay was down delivered after.
    assert_eq!(c.sent, 240);
    assert_eq!((c.delivered, c.lost, c.acked_lost), (240, 0, 0), "{c:?}");
    assert!(c.adds_up(), "{c:?}");
    // Each restart delivers every user's last envelope again: 4 users, 2 restarts.
    assert_eq!(c.duplicates, 8);
    let storm = out.storm.unwrap();
    assert_eq!((storm.disconnects, storm.reconnects), (8, 8));
    assert_eq!(storm.outages.len(), 2);
    for o in &storm.outages {
        assert_eq!((o.clients, o.back), (4, 4), "{o:?}");
        let all = o.all_back_secs.unwrap();
        assert!(all >= 0.05, "back only after stop and start: {o:?}");
        assert_eq!(o.exit_secs, Some(0.03));
    }
    assert_eq!(storm.outages[0].signal, storm::StopSignal::Term);
    // Envelopes written during an outage waited: the latency from their intended time shows it.
    let latency = Latency::from_base64(&out.latency)
        .unwrap()
        .summary()
        .unwrap();
    assert!(latency.max_us >= 40_000, "{latency:?}");
    assert_eq!(out.failures, 0, "{:?}", out.errors);
}

#[tokio::test]
async fn what_was_kept_for_a_client_that_never_came_back_is_away_not_acked_lost() {
    // User 1 does not come back after the restart: the relay acks and keeps what is sent to it.
    // That is not a loss by the relay (`acked_lost` stays 0); it is `acked_away`.
    let (out, target) = storm(
        MemTarget {
            stays_away: Some(1),
            ..MemTarget::default()
        },
        vec![storm::StopSignal::Kill],
    )
    .await;
    let c = out.counts;
    let kept = target.kept.load(Ordering::SeqCst);
    assert!(kept > 10, "user 1 was sent to after the restart: {kept}");
    assert_eq!((c.acked_lost, c.acked_away), (0, kept), "{c:?}");
    // Everything else was delivered: the kept envelopes are all that is missing.
    assert_eq!(c.lost, kept, "{c:?}");
    assert!(c.adds_up(), "{c:?}");
    let storm = out.storm.unwrap();
    assert_eq!((storm.outages[0].clients, storm.outages[0].back), (4, 3));
}
