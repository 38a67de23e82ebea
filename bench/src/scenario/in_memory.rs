//! The scenarios over an in-memory target: accounting, loss, acks and the coordinated-omission
//! correction, checked without sockets. Timings here are lower bounds set by injected delays,
//! never speeds of the machine.

use super::*;
use crate::latency::Latency;
use crate::schedule::RateMode;
use crate::target::{EnvelopeReceiver, EnvelopeSender, Incoming};
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
}

struct MemSender {
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
        let n = t.routed.fetch_add(1, Ordering::SeqCst) + 1;
        if t.drop_every.is_some_and(|k| n.is_multiple_of(k)) {
            t.dropped.fetch_add(1, Ordering::SeqCst);
        } else {
            let inbox = t.inboxes.lock().unwrap().get(&to).cloned();
            inbox.unwrap().send(Incoming::Delivered(payload))?;
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
