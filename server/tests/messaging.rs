//! 1:1 sends over both transports, offline delivery, retransmissions,
//! device-set checks and one-time prekey hand-out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;

use common::*;
use spider_protocol::error::ErrorDetail;
use spider_protocol::ids::{DeviceId, MessageId, Seq};
use spider_protocol::message::{
    Ack, EnvelopeBody, FetchPreKeys, LookupUser, SendEphemeral, UserRef,
};
use spider_protocol::{ClientFrame, ErrorCode, ServerFrame};

fn mid(n: u8) -> MessageId {
    let mut b = random::<16>();
    b[0] = n;
    MessageId::from_bytes(b)
}

/// The next Deliver, as (seq, message id, ciphertext).
async fn next_delivery(c: &mut Client) -> (Seq, MessageId, Vec<u8>) {
    match c.expect().await {
        ServerFrame::Deliver(d) => match d.envelope.body {
            EnvelopeBody::Direct { ciphertext } => {
                (d.seq, d.envelope.message_id, ciphertext.as_slice().to_vec())
            }
            b => panic!("unexpected body {b:?}"),
        },
        f => panic!("expected Deliver, got {f:?}"),
    }
}

async fn expect_sent(c: &mut Client, id: MessageId) {
    match c.expect().await {
        ServerFrame::Sent(s) => assert_eq!(s.message_id, id),
        f => panic!("expected Sent, got {f:?}"),
    }
}

#[tokio::test]
async fn direct_message_crosses_transports_both_ways() {
    let relay = start_relay().await;
    let (alice, mut a) = register(&relay, Transport::Quic, "alice").await;
    let (bob, mut b) = register(&relay, Transport::Ws, "bob").await;

    let id = mid(1);
    let req = a.req();
    a.send(direct(req, id, bob.user, &[(bob.device, b"hello bob")]))
        .await;
    expect_sent(&mut a, id).await;
    let (_, got_id, ct) = next_delivery(&mut b).await;
    assert_eq!((got_id, ct.as_slice()), (id, &b"hello bob"[..]));

    let id = mid(2);
    let req = b.req();
    b.send(direct(req, id, alice.user, &[(alice.device, b"hi alice")]))
        .await;
    expect_sent(&mut b, id).await;
    let (seq, got_id, ct) = next_delivery(&mut a).await;
    assert_eq!((got_id, ct.as_slice()), (id, &b"hi alice"[..]));
    a.send(ClientFrame::Ack(Ack { up_to: seq })).await;

    a.close().await;
    b.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn offline_recipient_gets_everything_in_order_once_on_reconnect() {
    let relay = start_relay().await;
    let (_alice, mut a) = register(&relay, Transport::Quic, "alice").await;
    let (bob, b) = register(&relay, Transport::Ws, "bob").await;
    b.close().await;

    let ids: Vec<MessageId> = (0..20).map(mid).collect();
    for (i, id) in ids.iter().enumerate() {
        let req = a.req();
        a.send(direct(
            req,
            *id,
            bob.user,
            &[(bob.device, format!("m{i}").as_bytes())],
        ))
        .await;
        expect_sent(&mut a, *id).await;
    }

    // First reconnect: everything, in order; ack only the first half.
    let (mut b, ok) = login(&relay, Transport::Quic, &bob).await;
    assert_eq!(ok.queued, 20);
    let mut seqs = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let (seq, got, ct) = next_delivery(&mut b).await;
        assert_eq!(got, *id);
        assert_eq!(ct, format!("m{i}").as_bytes());
        seqs.push(seq);
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(matches!(b.expect().await, ServerFrame::CaughtUp(c) if c.last == seqs.last().copied()));
    b.send(ClientFrame::Ack(Ack { up_to: seqs[9] })).await;
    // A round trip, so the ack has been handled before we leave.
    b.send(ClientFrame::Ping(spider_protocol::message::Ping {
        nonce: 1,
    }))
    .await;
    assert!(matches!(b.expect().await, ServerFrame::Pong(_)));
    b.close().await;

    // Second reconnect, over the other transport: the unacked half, then
    // live messages with no gap and no duplicate.
    let (mut b, ok) = login(&relay, Transport::Ws, &bob).await;
    assert_eq!(ok.queued, 10);
    for (i, id) in ids.iter().enumerate().skip(10) {
        let (seq, got, _) = next_delivery(&mut b).await;
        assert_eq!((seq, got), (seqs[i], *id));
    }
    assert!(matches!(b.expect().await, ServerFrame::CaughtUp(_)));
    let live = mid(99);
    let req = a.req();
    a.send(direct(req, live, bob.user, &[(bob.device, b"live")]))
        .await;
    expect_sent(&mut a, live).await;
    let (seq, got, _) = next_delivery(&mut b).await;
    assert_eq!(got, live);
    assert!(seq > seqs[19]);
    b.send(ClientFrame::Ack(Ack { up_to: seq })).await;
    b.send(ClientFrame::Ping(spider_protocol::message::Ping {
        nonce: 2,
    }))
    .await;
    assert!(matches!(b.expect().await, ServerFrame::Pong(_)));
    b.close().await;

    // Everything acked: nothing comes back.
    let (mut b, ok) = login(&relay, Transport::Quic, &bob).await;
    assert_eq!(ok.queued, 0);
    assert!(matches!(b.expect().await, ServerFrame::CaughtUp(c) if c.last.is_none()));
    b.close().await;
    a.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn retransmission_with_the_same_message_id_is_acked_again_but_delivered_once() {
    let relay = start_relay().await;
    let (_alice, mut a) = register(&relay, Transport::Ws, "alice").await;
    let (bob, mut b) = register(&relay, Transport::Quic, "bob").await;
    let id = mid(7);
    for _ in 0..3 {
        let req = a.req();
        a.send(direct(req, id, bob.user, &[(bob.device, b"once")]))
            .await;
        expect_sent(&mut a, id).await;
    }
    let (seq, got, _) = next_delivery(&mut b).await;
    assert_eq!(got, id);
    b.send(ClientFrame::Ack(Ack { up_to: seq })).await;
    // Even after the ack, a late retransmission is not delivered again.
    let req = a.req();
    a.send(direct(req, id, bob.user, &[(bob.device, b"once")]))
        .await;
    expect_sent(&mut a, id).await;
    // A different message goes through, and is the next thing bob sees.
    let other = mid(8);
    let req = a.req();
    a.send(direct(req, other, bob.user, &[(bob.device, b"two")]))
        .await;
    expect_sent(&mut a, other).await;
    let (seq2, got, _) = next_delivery(&mut b).await;
    assert_eq!(got, other);
    assert_eq!(seq2.0, seq.0 + 1);
    b.close().await;
    let (mut b, ok) = login(&relay, Transport::Ws, &bob).await;
    assert_eq!(ok.queued, 1);
    let (_, got, _) = next_delivery(&mut b).await;
    assert_eq!(got, other);
    assert!(matches!(b.expect().await, ServerFrame::CaughtUp(_)));
    a.close().await;
    b.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn copies_must_name_exactly_the_recipients_devices() {
    let relay = start_relay().await;
    let (alice, mut a) = register(&relay, Transport::Quic, "alice").await;
    let (bob, b) = register(&relay, Transport::Ws, "bob").await;
    let req = a.req();
    a.send(direct(
        req,
        mid(1),
        bob.user,
        &[(DeviceId(2), b"x"), (DeviceId(2), b"y")],
    ))
    .await;
    match a.expect().await {
        ServerFrame::Error(e) => {
            assert_eq!(e.code, ErrorCode::MISMATCHED_DEVICES);
            assert_eq!(e.req, Some(req));
            match e.detail {
                ErrorDetail::Devices { missing, extra } => {
                    assert_eq!(missing.as_slice(), [bob.device]);
                    assert_eq!(extra.as_slice(), [DeviceId(2)]);
                }
                d => panic!("{d:?}"),
            }
        }
        f => panic!("{f:?}"),
    }
    // To myself with a single device: no copies at all is the right set.
    let req = a.req();
    a.send(direct(req, mid(2), alice.user, &[(alice.device, b"me")]))
        .await;
    assert!(
        matches!(a.expect().await, ServerFrame::Error(e) if e.code == ErrorCode::MISMATCHED_DEVICES)
    );
    let req = a.req();
    let id = mid(3);
    a.send(direct(req, id, alice.user, &[])).await;
    expect_sent(&mut a, id).await;
    let req = a.req();
    a.send(direct(
        req,
        mid(4),
        spider_protocol::ids::UserId::from_bytes([0; 16]),
        &[],
    ))
    .await;
    assert!(
        matches!(a.expect().await, ServerFrame::Error(e) if e.code == ErrorCode::UNKNOWN_RECIPIENT)
    );
    a.close().await;
    b.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn one_time_prekeys_are_handed_out_once_to_concurrent_fetchers() {
    let relay = start_relay().await;
    // register() uploads 30 one-time keys of each kind.
    let (bob, b) = register(&relay, Transport::Quic, "bob").await;
    let mut tasks = Vec::new();
    for i in 0..6 {
        let t = if i % 2 == 0 {
            Transport::Quic
        } else {
            Transport::Ws
        };
        let (_, mut c) = register(&relay, t, "fetcher").await;
        let user = bob.user;
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..6 {
                let req = c.req();
                c.send(ClientFrame::FetchPreKeys(FetchPreKeys {
                    req,
                    user,
                    device: None,
                }))
                .await;
                match c.expect().await {
                    ServerFrame::PreKeyBundles(p) => {
                        assert_eq!(p.bundles.len(), 1);
                        let bundle = &p.bundles.as_slice()[0];
                        got.push((
                            bundle.one_time_prekey.as_ref().map(|k| k.id.0),
                            bundle
                                .kem_prekey_is_one_time
                                .then_some(bundle.kem_prekey.id.0),
                        ));
                    }
                    f => panic!("{f:?}"),
                }
            }
            c.close().await;
            got
        }));
    }
    let mut otk = Vec::new();
    let mut kem = Vec::new();
    for t in tasks {
        for (o, k) in t.await.unwrap() {
            otk.extend(o);
            kem.extend(k);
        }
    }
    // 36 fetches, 30 keys of each kind: each handed out exactly once.
    let otk_set: HashSet<u32> = otk.iter().copied().collect();
    assert_eq!(otk.len(), 30);
    assert_eq!(otk_set.len(), 30);
    let kem_set: HashSet<u32> = kem.iter().copied().collect();
    assert_eq!(kem.len(), 30);
    assert_eq!(kem_set.len(), 30);
    b.close().await;

    // The owner hears that it runs low when it signs in.
    let (mut b, ok) = login(&relay, Transport::Ws, &bob).await;
    assert_eq!(ok.prekeys.one_time, 0);
    assert!(matches!(b.expect().await, ServerFrame::CaughtUp(_)));
    assert!(matches!(b.expect().await, ServerFrame::PreKeysLow(l) if l.remaining.one_time == 0));
    b.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn lookup_and_ephemerals_reach_online_devices_only() {
    let relay = start_relay().await;
    let (_alice, mut a) = register(&relay, Transport::Quic, "alice").await;
    let (bob, mut b) = register(&relay, Transport::Ws, "bob").await;
    let req = a.req();
    a.send(ClientFrame::LookupUser(LookupUser {
        req,
        who: UserRef::Name(bob.username.clone()),
    }))
    .await;
    match a.expect().await {
        ServerFrame::UserInfo(u) => {
            assert_eq!(u.user, bob.user);
            assert_eq!(u.devices.as_slice()[0].identity, bob.id.keys);
        }
        f => panic!("{f:?}"),
    }
    let payload = spider_protocol::bytes::BoundedBytes::new(b"typing".to_vec()).unwrap();
    a.send(ClientFrame::SendEphemeral(SendEphemeral {
        to: spider_protocol::message::EphemeralTarget::User {
            user: bob.user,
            copies: spider_protocol::bytes::BoundedVec::new(vec![
                spider_protocol::message::EphemeralCopy {
                    device: bob.device,
                    payload: payload.clone(),
                },
            ])
            .unwrap(),
        },
    }))
    .await;
    match b.expect().await {
        ServerFrame::Ephemeral(e) => assert_eq!(e.payload, payload),
        f => panic!("{f:?}"),
    }
    b.close().await;
    // Offline: dropped, and not delivered on the next login.
    a.send(ClientFrame::SendEphemeral(SendEphemeral {
        to: spider_protocol::message::EphemeralTarget::User {
            user: bob.user,
            copies: spider_protocol::bytes::BoundedVec::new(vec![
                spider_protocol::message::EphemeralCopy {
                    device: bob.device,
                    payload,
                },
            ])
            .unwrap(),
        },
    }))
    .await;
    let (mut b, ok) = login(&relay, Transport::Quic, &bob).await;
    assert_eq!(ok.queued, 0);
    assert!(matches!(b.expect().await, ServerFrame::CaughtUp(_)));
    a.close().await;
    b.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn concurrent_senders_during_reconnects_give_no_gap_no_duplicate() {
    let relay = std::sync::Arc::new(start_relay().await);
    let (bob, b) = register(&relay, Transport::Quic, "bob").await;
    b.close().await;
    let per_sender = 25usize;
    let mut senders = Vec::new();
    for s in 0..3u8 {
        let relay = relay.clone();
        let to = bob.user;
        let dev = bob.device;
        senders.push(tokio::spawn(async move {
            let t = if s % 2 == 0 {
                Transport::Quic
            } else {
                Transport::Ws
            };
            let (_, mut c) = register(&relay, t, "sender").await;
            for i in 0..per_sender {
                let id = MessageId::from_bytes(random());
                let req = c.req();
                let body = [s, i as u8];
                c.send(direct(req, id, to, &[(dev, &body)])).await;
                expect_sent(&mut c, id).await;
            }
            c.close().await;
        }));
    }
    // Bob signs in and out while they send, acking as he goes.
    let mut seen: Vec<(u8, u8)> = Vec::new();
    let mut sessions = 0;
    loop {
        let done = senders.iter().all(|h| h.is_finished());
        let t = if sessions % 2 == 0 {
            Transport::Ws
        } else {
            Transport::Quic
        };
        let (mut c, _) = login(&relay, t, &bob).await;
        sessions += 1;
        let mut last: Option<Seq> = None;
        let mut caught_up = false;
        // Read the backlog and a few live messages, then leave.
        let mut live = 0;
        while !caught_up || (live < 10 && !done) {
            let frame = if caught_up {
                // Live phase: the senders may have finished meanwhile; a
                // quiet second ends the session (a loop exit, not an
                // assertion about speed).
                match tokio::time::timeout(std::time::Duration::from_secs(1), c.expect()).await {
                    Ok(f) => f,
                    Err(_) => break,
                }
            } else {
                c.expect().await
            };
            match frame {
                ServerFrame::Deliver(d) => {
                    assert!(last.is_none_or(|l| d.seq > l), "out of order");
                    last = Some(d.seq);
                    let EnvelopeBody::Direct { ciphertext } = d.envelope.body else {
                        panic!()
                    };
                    let b = ciphertext.as_slice();
                    seen.push((b[0], b[1]));
                    c.send(ClientFrame::Ack(Ack { up_to: d.seq })).await;
                    if caught_up {
                        live += 1;
                    }
                }
                ServerFrame::CaughtUp(_) => {
                    caught_up = true;
                    if done {
                        break;
                    }
                }
                f => panic!("{f:?}"),
            }
        }
        // Make sure every ack was handled before leaving: a ping round trip
        // with no delivery in between (a delivery acked after the ping
        // would be redelivered next time, correctly: it was not acked).
        let mut nonce = 0;
        loop {
            nonce += 1;
            c.send(ClientFrame::Ping(spider_protocol::message::Ping { nonce }))
                .await;
            let mut more = false;
            loop {
                match c.expect().await {
                    ServerFrame::Pong(p) if p.nonce == nonce => break,
                    ServerFrame::Pong(_) => {}
                    ServerFrame::Deliver(d) => {
                        assert!(last.is_none_or(|l| d.seq > l), "out of order");
                        last = Some(d.seq);
                        let EnvelopeBody::Direct { ciphertext } = d.envelope.body else {
                            panic!()
                        };
                        let b = ciphertext.as_slice();
                        seen.push((b[0], b[1]));
                        c.send(ClientFrame::Ack(Ack { up_to: d.seq })).await;
                        more = true;
                    }
                    f => panic!("{f:?}"),
                }
            }
            if !more {
                break;
            }
        }
        c.close().await;
        if done {
            break;
        }
    }
    for h in senders {
        h.await.unwrap();
    }
    // Every message exactly once, and each sender's messages in order.
    let mut all = seen.clone();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), seen.len(), "a message was delivered twice");
    assert_eq!(all.len(), 3 * per_sender, "a message is missing");
    for s in 0..3u8 {
        let order: Vec<u8> = seen.iter().filter(|m| m.0 == s).map(|m| m.1).collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "sender {s}: {order:?}"
        );
    }
    assert!(sessions >= 2);
    std::sync::Arc::into_inner(relay).unwrap().stop().await;
}

#[tokio::test]
async fn a_sender_with_requests_always_waiting_still_gets_its_mail_between_them() {
    // Alice pipelines requests (each waits for its flush), so her connection always has one
    // waiting; Bob's message to her must not wait until she stops sending. The relay used to
    // take requests before pushes every time: the Deliver came after her last Sent.
    const PIPELINED: usize = 300;
    let relay = start_relay_with(|c| {
        c.limits.requests_per_second = 1_000_000;
        c.limits.request_burst = 1_000_000;
        c.limits.account_requests_per_second = 1_000_000;
        c.limits.account_request_burst = 1_000_000;
        c.limits.ip_requests_per_second = 1_000_000;
        c.limits.ip_request_burst = 1_000_000;
    })
    .await;
    let (alice, mut a) = register(&relay, Transport::Quic, "alice").await;
    let (_bob, mut b) = register(&relay, Transport::Ws, "bob").await;
    // Carol is offline: her mail only waits in her mailbox.
    let (carol, c) = register(&relay, Transport::Quic, "carol").await;
    c.close().await;
    let mut ids = Vec::new();
    for _ in 0..PIPELINED {
        let id = MessageId::from_bytes(random::<16>());
        ids.push(id);
        let req = a.req();
        a.send(direct(req, id, carol.user, &[(carol.device, b"to carol")]))
            .await;
    }
    let from_bob = mid(7);
    let req = b.req();
    b.send(direct(
        req,
        from_bob,
        alice.user,
        &[(alice.device, b"hi alice")],
    ))
    .await;
    expect_sent(&mut b, from_bob).await;
    // Alice's frames in order: her Sents, and somewhere among them Bob's Deliver.
    let mut sents_before = None;
    let mut sents = 0;
    while sents < PIPELINED || sents_before.is_none() {
        match a.expect().await {
            ServerFrame::Sent(s) => {
                assert_eq!(s.message_id, ids[sents], "Sents in request order");
                sents += 1;
            }
            ServerFrame::Deliver(d) => {
                assert_eq!(d.envelope.message_id, from_bob);
                sents_before = Some(sents);
            }
            f => panic!("unexpected {f:?}"),
        }
    }
    let before = sents_before.unwrap();
    assert!(
        before < PIPELINED,
        "Bob's message waited for all {PIPELINED} of Alice's requests"
    );
    a.close().await;
    b.close().await;
    relay.stop().await;
}
