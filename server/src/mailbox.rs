//! 1:1 sends, acks, ephemerals, and the per-connection delivery cursor.
//!
//! # No gap, no duplicate between backlog and live pushes
//!
//! Seqs of one mailbox are assigned consecutively by the store, and a sender
//! pushes an envelope only after it is stored. A connection registers its
//! route *first*, then reads the mailbox's high-water mark `H` and sends the
//! backlog `(cursor, H]` from the store. Any envelope stored after `H` was
//! read has a seq above `H` and is pushed to the (already registered) route;
//! any stored before is in the backlog. Pushes at or below the cursor are
//! skipped; a push that skips ahead (two senders raced, so seq 7 arrived
//! before 6) makes the connection read the gap from the store first. So each
//! envelope is sent once, in seq order.

use std::collections::BTreeSet;

use spider_protocol::bytes::BoundedVec;
use spider_protocol::error::ErrorDetail;
use spider_protocol::ids::{DeviceAddress, DeviceId, Seq};
use spider_protocol::message::{
    Ack, Deliver, Envelope, EnvelopeBody, Ephemeral, EphemeralTarget, SendDirect, SendEphemeral,
    Sent,
};
use spider_protocol::{ErrorCode, ServerFrame};

use crate::Refusal;
use crate::auth::Authed;
use crate::metrics::Limit;
use crate::router::{Push, PushOutcome};
use crate::server::{Shared, now};
use crate::store::{Enqueued, StoreError};

/// `SendDirect`: check the copies against the recipient's devices, store each
/// copy durably, ack with `Sent`, push to online devices.
pub(crate) async fn send_direct(
    shared: &Shared,
    me: &Authed,
    s: SendDirect,
) -> Result<ServerFrame, Refusal> {
    let account = shared
        .store
        .account(s.to)?
        .ok_or_else(|| Refusal::new(ErrorCode::UNKNOWN_RECIPIENT, "no such recipient"))?;
    // The copies must name exactly the account's devices, less mine when I
    // write to my own other devices: no device is silently left out.
    let expected: BTreeSet<DeviceId> = account
        .devices
        .iter()
        .map(|d| d.device)
        .filter(|d| !(s.to == me.addr.user && *d == me.addr.device))
        .collect();
    let mut given = BTreeSet::new();
    let mut extra = BTreeSet::new();
    for c in &s.copies {
        if !given.insert(c.device) || !expected.contains(&c.device) {
            extra.insert(c.device);
        }
    }
    let missing: Vec<DeviceId> = expected.difference(&given).copied().collect();
    if !missing.is_empty() || !extra.is_empty() {
        let extra: Vec<DeviceId> = extra.into_iter().collect();
        return Err(Refusal {
            detail: ErrorDetail::Devices {
                missing: BoundedVec::new(missing).unwrap_or_default(),
                extra: BoundedVec::new(extra).unwrap_or_default(),
            },
            ..Refusal::new(
                ErrorCode::MISMATCHED_DEVICES,
                "the copies do not match the recipient's devices",
            )
        });
    }

    let sent_at = now();
    let quota = shared.config.limits.mailbox_quota;
    let mut to_push = Vec::new();
    let mut full = false;
    for c in s.copies.iter() {
        let dev = DeviceAddress {
            user: s.to,
            device: c.device,
        };
        let envelope = Envelope {
            message_id: s.message_id,
            from: me.addr,
            sent_at,
            body: EnvelopeBody::Direct {
                ciphertext: c.ciphertext.clone(),
            },
        };
        match shared.store.enqueue(dev, s.message_id, &envelope, quota)? {
            Enqueued::Stored(seq) => to_push.push((dev, seq, envelope)),
            // A retransmission: acked again, stored and delivered once.
            Enqueued::Duplicate(_) => {}
            // Copies already stored stay; the sender retries with the same
            // message id and they are recognised as duplicates.
            Enqueued::Full => full = true,
        }
    }
    // Durable before ack (and before anyone can see it).
    shared.flush().await?;
    for (dev, seq, envelope) in to_push {
        if shared.router.push(dev, Push::Deliver { seq, envelope }) == PushOutcome::SlowConsumer {
            tracing::info!(user = %dev.user, device = dev.device.0, "slow consumer disconnected");
        }
    }
    if full {
        return Err(Refusal::by(
            Limit::MailboxQuota,
            ErrorCode::MAILBOX_FULL,
            "a recipient device's mailbox is full; retry later",
        ));
    }
    Ok(ServerFrame::Sent(Sent {
        req: s.req,
        message_id: s.message_id,
        sent_at,
    }))
}

/// `Ack`: delete my envelopes up to `up_to`.
pub(crate) fn ack(shared: &Shared, me: &Authed, a: Ack) -> Result<(), StoreError> {
    let n = shared.store.ack(me.addr, a.up_to)?;
    tracing::trace!(removed = n, "acked");
    Ok(())
}

/// `SendEphemeral`: to online devices only; never stored, never acked.
pub(crate) fn send_ephemeral(shared: &Shared, me: &Authed, e: SendEphemeral) {
    match e.to {
        EphemeralTarget::User { user, copies } => {
            for c in copies.iter() {
                let dev = DeviceAddress {
                    user,
                    device: c.device,
                };
                if dev == me.addr {
                    continue;
                }
                shared.router.push(
                    dev,
                    Push::Frame(ServerFrame::Ephemeral(Ephemeral {
                        from: me.addr,
                        room: None,
                        payload: c.payload.clone(),
                    })),
                );
            }
        }
        EphemeralTarget::Room { room, payload } => {
            if let Err(e) = crate::rooms::ephemeral(shared, me, room, payload) {
                tracing::error!(error = %e, "room ephemeral failed");
            }
        }
    }
}

/// Where a connection is in its device's mailbox.
#[derive(Debug, Default)]
pub(crate) struct Cursor {
    /// Every envelope up to this seq has been sent on this connection (or
    /// did not exist by the time it was read).
    pub(crate) upto: Option<Seq>,
    /// The last seq actually sent, for `CaughtUp`.
    pub(crate) last_sent: Option<Seq>,
}

impl Cursor {
    /// The next batch of stored envelopes with `upto < seq <= high`, as
    /// frames, advancing the cursor. Empty when caught up to `high`.
    pub(crate) fn next_batch(
        &mut self,
        shared: &Shared,
        dev: DeviceAddress,
        high: Seq,
    ) -> Result<Vec<ServerFrame>, StoreError> {
        if self.upto.is_some_and(|u| u >= high) {
            return Ok(Vec::new());
        }
        let batch =
            shared
                .store
                .read_mailbox(dev, self.upto, high, shared.config.limits.backlog_batch)?;
        if batch.len() < shared.config.limits.backlog_batch {
            // Nothing else is stored up to `high`: whatever is missing was acked.
            self.upto = Some(high);
        }
        let mut out = Vec::with_capacity(batch.len());
        for (seq, envelope) in batch {
            if self.upto.is_none_or(|u| u < seq) {
                self.upto = Some(seq);
            }
            self.last_sent = Some(seq);
            out.push(ServerFrame::Deliver(Deliver { seq, envelope }));
        }
        Ok(out)
    }

    /// Whether a pushed seq is next in line (send it as is), already sent
    /// (skip it), or ahead (read the gap from the store first).
    pub(crate) fn place(&self, seq: Seq) -> Placement {
        match self.upto {
            Some(u) if seq <= u => Placement::Old,
            Some(u) if seq.0 == u.0 + 1 => Placement::Next,
            None if seq.0 == 1 => Placement::Next,
            _ => Placement::Ahead,
        }
    }

    /// Records that `seq` was sent.
    pub(crate) fn sent(&mut self, seq: Seq) {
        self.upto = Some(seq);
        self.last_sent = Some(seq);
    }
}

/// See [`Cursor::place`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Already sent.
    Old,
    /// The next one.
    Next,
    /// There is a gap before it.
    Ahead,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_are_placed_against_the_cursor() {
        let mut c = Cursor::default();
        assert_eq!(c.place(Seq(1)), Placement::Next);
        assert_eq!(c.place(Seq(2)), Placement::Ahead);
        c.sent(Seq(1));
        assert_eq!(c.place(Seq(1)), Placement::Old);
        assert_eq!(c.place(Seq(2)), Placement::Next);
        assert_eq!(c.place(Seq(4)), Placement::Ahead);
        c.sent(Seq(4));
        assert_eq!(c.place(Seq(3)), Placement::Old);
        assert_eq!(c.last_sent, Some(Seq(4)));
    }
}
