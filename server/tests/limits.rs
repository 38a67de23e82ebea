//! One test per limit of the relay's `[limits]` (server/src/config.rs) that
//! refuses something: each triggers it, checks the stable error code (and,
//! where the relay closes, the close code naming it: protocol.md §5.8),
//! checks that `/metrics` counted it under the limit's own label, and then
//! shows that other users (new accounts on new connections; from another
//! loopback address where the limit is per address) still register, send
//! and receive.
//!
//! Quotas are set so low that no machine is slow enough to refill them
//! during a test: the assertions do not depend on speed. The timeouts under
//! test are short but only bound how long the test waits; the only time a
//! test needs is that a fresh client finishes a handshake and a round trip
//! within a second or two.
//!
//! Blob, device and room limits are tested beside their features, in
//! blobs.rs, devices.rs and rooms.rs, the same way.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use spider_protocol::bytes::BoundedVec;
use spider_protocol::error::ErrorDetail;
use spider_protocol::ids::{MessageId, RequestId, UserId};
use spider_protocol::message::{
    Ack, EditContact, EphemeralTarget, FetchPreKeys, Login, LookupUser, Ping, SendEphemeral,
    UploadPreKeys, UserRef,
};
use spider_protocol::{ClientFrame, ErrorCode, MAX_FRAME_LEN, ServerFrame};

fn lookup(c: &mut Client, who: UserId) -> (RequestId, ClientFrame) {
    let req = c.req();
    let f = ClientFrame::LookupUser(LookupUser {
        req,
        who: UserRef::Id(who),
    });
    (req, f)
}

/// Sends `n` look-ups at once, then reads the `n` answers: how many were
/// refused with `RATE_LIMITED` (each with its `req` and a retry delay).
async fn lookups(c: &mut Client, who: UserId, n: usize) -> usize {
    let mut reqs = Vec::new();
    for _ in 0..n {
        let (req, f) = lookup(c, who);
        reqs.push(req);
        c.send(f).await;
    }
    let mut limited = 0;
    for req in reqs {
        match c.expect().await {
            ServerFrame::UserInfo(i) => assert_eq!(i.req, req),
            ServerFrame::Error(e) => {
                assert_eq!(e.code, ErrorCode::RATE_LIMITED);
                assert_eq!(e.req, Some(req));
                assert!(!e.code.is_fatal());
                assert!(matches!(e.detail, ErrorDetail::RetryAfter { ms } if ms > 0));
                limited += 1;
            }
            f => panic!("{f:?}"),
        }
    }
    limited
}

#[tokio::test]
async fn oversize_frames_close_with_frame_too_large_and_others_keep_working() {
    let relay = start_relay().await;
    let counted = Counted::new(&relay, "frame_size").await;
    let half = MAX_FRAME_LEN / 2 + 1;
    let cases: [(Transport, &str); 3] = [
        (Transport::Quic, "length prefix over the maximum"),
        (Transport::Ws, "one WebSocket frame over the maximum"),
        (Transport::Ws, "small WebSocket frames, one message over"),
    ];
    for (t, case) in cases {
        let (_acc, mut c) = register(&relay, t, "eve").await;
        match case {
            // Refused from the prefix alone, before the body arrives.
            "length prefix over the maximum" => {
                let mut v = ((MAX_FRAME_LEN + 1) as u32).to_be_bytes().to_vec();
                v.push(7);
                c.send_raw(v).await;
            }
            // tungstenite's max_frame_size.
            "one WebSocket frame over the maximum" => {
                c.send_raw(vec![7u8; MAX_FRAME_LEN + 1]).await;
            }
            // tungstenite's max_message_size: each frame fits, the
            // message they make does not.
            _ => {
                c.send_ws_fragments(vec![vec![7u8; half], vec![7u8; half]])
                    .await
            }
        }
        c.expect_fatal(ErrorCode::FRAME_TOO_LARGE).await;
        eprintln!("{t:?}, {case}: refused");
    }
    counted.saw(3).await;
    others_keep_working(&relay, LOCALHOST).await;
    relay.stop().await;
}

#[tokio::test]
async fn a_websocket_origin_off_the_allow_list_is_refused_and_others_keep_working() {
    let relay = start_relay_with(|c| c.allowed_origins = vec!["https://chat.example".into()]).await;
    let counted = Counted::new(&relay, "allowed_origins").await;
    let refused = Client::connect_ws_origin(&relay, Transport::Ws, Some("https://evil.example"))
        .await
        .err()
        .expect("the upgrade was refused");
    // No WebSocket, so no error frame: the HTTP refusal names the code.
    assert!(refused.starts_with("403"), "{refused}");
    assert!(refused.contains("107 ORIGIN_REFUSED"), "{refused}");
    counted.saw(1).await;
    // An allowed origin, and no Origin at all (a non-browser client).
    let mut ok = Client::connect_ws_origin(&relay, Transport::Ws, Some("https://chat.example"))
        .await
        .unwrap();
    ok.hello().await;
    others_keep_working(&relay, LOCALHOST).await;
    relay.stop().await;
}

#[tokio::test]
async fn a_silent_connection_is_closed_with_handshake_timeout_and_others_keep_working() {
    let relay = start_relay_with(|c| c.limits.handshake_timeout_ms = 1500).await;
    let counted = Counted::new(&relay, "handshake_timeout_ms").await;
    for t in BOTH {
        let mut c = Client::connect(&relay, t).await;
        if t == Transport::Quic {
            // QUIC streams open lazily: send part of a frame so the relay
            // sees the control stream.
            c.send_raw(vec![0, 0]).await;
        }
        c.expect_fatal(ErrorCode::HANDSHAKE_TIMEOUT).await;
    }
    counted.saw(2).await;
    others_keep_working(&relay, LOCALHOST).await;
    relay.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_answering_is_closed_with_idle_timeout_and_others_keep_working() {
    let relay = start_relay_with(|c| {
        c.limits.ping_interval_ms = 300;
        c.limits.idle_timeout_ms = 2000;
    })
    .await;
    let counted = Counted::new(&relay, "idle_timeout_ms").await;
    for t in BOTH {
        let (_acc, mut c) = register(&relay, t, "idle").await;
        // The relay's pings arrive and are not answered.
        let pings = c.expect_fatal(ErrorCode::IDLE_TIMEOUT).await;
        assert!(pings >= 1, "{t:?}");
    }
    counted.saw(2).await;
    others_keep_working(&relay, LOCALHOST).await;
    relay.stop().await;
}

#[tokio::test]
async fn a_burst_over_the_connection_rate_is_refused_and_others_keep_working() {
    let relay = start_relay_with(|c| {
        c.limits.requests_per_second = 1;
        c.limits.request_burst = 3;
    })
    .await;
    let counted = Counted::new(&relay, "requests_per_second").await;
    let (acc, mut c) = register(&relay, Transport::Quic, "burst").await;
    let limited = lookups(&mut c, acc.user, 12).await;
    assert!(
        limited >= 8,
        "12 requests against a burst of 3: {limited} refused"
    );
    counted.saw(limited as u64).await;
    // Not fatal: the connection goes on (heartbeats are not requests).
    c.send(ClientFrame::Ping(Ping { nonce: 7 })).await;
    assert!(matches!(c.expect().await, ServerFrame::Pong(p) if p.nonce == 7));
    // Other connections have their own budget: two fresh ones exchange
    // four frames each, over the burst of 3 only if they shared it.
    others_keep_working(&relay, LOCALHOST).await;
    c.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn over_the_rate_pings_are_still_answered_and_ephemerals_get_a_non_fatal_error() {
    let relay = start_relay_with(|c| {
        c.limits.requests_per_second = 1;
        c.limits.request_burst = 2;
    })
    .await;
    let (acc, mut c) = register(&relay, Transport::Ws, "pinger").await;
    // Use up the burst with ephemerals (frames without a req).
    let eph = || {
        ClientFrame::SendEphemeral(SendEphemeral {
            to: EphemeralTarget::User {
                user: acc.user,
                copies: BoundedVec::empty(),
            },
        })
    };
    for _ in 0..4 {
        c.send(eph()).await;
    }
    // Heartbeats are not requests: every ping gets its pong at once.
    for nonce in 1..=5 {
        c.send(ClientFrame::Ping(Ping { nonce })).await;
    }
    let (mut pongs, mut limited) = (0, 0);
    while pongs < 5 {
        match c.expect().await {
            ServerFrame::Pong(_) => pongs += 1,
            ServerFrame::Error(e) => {
                assert_eq!(e.code, ErrorCode::RATE_LIMITED);
                assert_eq!(e.req, None);
                assert!(!e.code.is_fatal());
                limited += 1;
            }
            f => panic!("{f:?}"),
        }
    }
    assert!(limited > 0, "the ephemerals over the burst are refused");
    // The connection goes on.
    c.send(ClientFrame::Ping(Ping { nonce: 99 })).await;
    assert!(matches!(c.expect().await, ServerFrame::Pong(p) if p.nonce == 99));
    c.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn the_account_request_limit_spans_connections_and_other_accounts_keep_working() {
    // A connection may send 100 frames at once; its account only 4, over
    // all its connections (the limiter is keyed by account).
    let relay = start_relay_with(|c| {
        c.limits.request_burst = 100;
        c.limits.account_requests_per_second = 1;
        c.limits.account_request_burst = 4;
    })
    .await;
    let counted = Counted::new(&relay, "account_requests_per_second").await;
    let (busy, mut first) = register(&relay, Transport::Quic, "busy").await;
    let limited = lookups(&mut first, busy.user, 8).await;
    assert!(
        limited >= 3,
        "8 requests against a burst of 4: {limited} refused"
    );
    // A second connection of the same account does not get a fresh budget.
    let (mut second, _) = login(&relay, Transport::Ws, &busy).await;
    assert!(matches!(second.expect().await, ServerFrame::CaughtUp(_)));
    let more = lookups(&mut second, busy.user, 2).await;
    assert!(
        more >= 1,
        "the account's budget is spent: {more} of 2 refused"
    );
    counted.saw((limited + more) as u64).await;
    // Other accounts on the same address are unaffected.
    others_keep_working(&relay, LOCALHOST).await;
    first.close().await;
    second.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn the_address_request_limit_spans_accounts_and_other_addresses_keep_working() {
    // Each connection and account may send 100 frames at once; everything
    // from 127.0.0.1 together only 6.
    let relay = start_relay_with(|c| {
        c.limits.request_burst = 100;
        c.limits.account_request_burst = 100;
        c.limits.ip_requests_per_second = 1;
        c.limits.ip_request_burst = 6;
    })
    .await;
    let counted = Counted::new(&relay, "ip_requests_per_second").await;
    let (a_acc, mut a) = register(&relay, Transport::Quic, "first").await;
    let (_, mut b) = register(&relay, Transport::Ws, "second").await;
    let mut limited = 0;
    for c in [&mut a, &mut b] {
        limited += lookups(c, a_acc.user, 4).await;
    }
    assert!(
        limited >= 1,
        "8 requests from one address against a burst of 6"
    );
    counted.saw(limited as u64).await;
    // Another address has its own budget: its users send and receive
    // (four requests each way, over what 127.0.0.1 has left).
    others_keep_working(&relay, OTHER_HOST).await;
    a.close().await;
    b.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn registrations_from_one_address_are_limited_and_other_addresses_still_register() {
    let relay = start_relay_with(|c| {
        c.limits.registrations_per_hour = 1;
        c.limits.registration_burst = 2;
    })
    .await;
    let counted = Counted::new(&relay, "registrations_per_hour").await;
    let (_, a) = register(&relay, Transport::Quic, "first").await;
    let (_, b) = register(&relay, Transport::Ws, "second").await;
    let mut c = Client::connect(&relay, Transport::Quic).await;
    let w = c.hello().await;
    let id = Identity::new();
    let req = c.req();
    let f = id.register_frame(&relay, &c, &w, req, username("third"), id.prekeys(1, 1, 1));
    c.send(f).await;
    match c.expect().await {
        ServerFrame::Error(e) => {
            assert_eq!(e.code, ErrorCode::REGISTRATION_LIMITED);
            assert_eq!(e.req, Some(req));
            assert!(matches!(e.detail, ErrorDetail::RetryAfter { ms } if ms > 60_000));
        }
        f => panic!("{f:?}"),
    }
    counted.saw(1).await;
    // Two registrations from 127.0.0.2, over 127.0.0.1's spent burst.
    others_keep_working(&relay, OTHER_HOST).await;
    for x in [a, b, c] {
        x.close().await;
    }
    relay.stop().await;
}

#[tokio::test]
async fn prekey_fetches_are_limited_per_account_and_others_keep_working() {
    let relay = start_relay_with(|c| {
        c.limits.prekey_fetches_per_minute = 1;
        c.limits.prekey_fetch_burst = 2;
    })
    .await;
    let counted = Counted::new(&relay, "prekey_fetches_per_minute").await;
    let (target, t) = register(&relay, Transport::Ws, "target").await;
    let (_, mut c) = register(&relay, Transport::Quic, "fetcher").await;
    let fetch = |c: &mut Client| {
        let req = c.req();
        ClientFrame::FetchPreKeys(FetchPreKeys {
            req,
            user: target.user,
            device: None,
        })
    };
    let mut codes = Vec::new();
    for _ in 0..3 {
        let f = fetch(&mut c);
        c.send(f).await;
        codes.push(match c.expect().await {
            ServerFrame::PreKeyBundles(_) => None,
            ServerFrame::Error(e) => {
                assert!(matches!(e.detail, ErrorDetail::RetryAfter { ms } if ms > 0));
                Some(e.code)
            }
            f => panic!("{f:?}"),
        });
    }
    assert_eq!(
        codes,
        vec![None, None, Some(ErrorCode::PREKEY_FETCH_LIMITED)]
    );
    counted.saw(1).await;
    // Another account fetches the same target's prekeys.
    let (_, mut other) = register(&relay, Transport::Ws, "fetcher").await;
    let f = fetch(&mut other);
    other.send(f).await;
    assert!(matches!(
        other.expect().await,
        ServerFrame::PreKeyBundles(_)
    ));
    others_keep_working(&relay, LOCALHOST).await;
    for x in [t, c, other] {
        x.close().await;
    }
    relay.stop().await;
}

/// Whether a connection attempt is refused: before the handshake (QUIC
/// `CONNECTION_REFUSED`, or the TCP connection closed before TLS), or, as
/// QUIC may finish its handshake lazily, on the first frame.
async fn refused(relay: &TestRelay, t: Transport) -> bool {
    match Client::try_connect(relay, t, Connect::default()).await {
        Err(e) => {
            if t == Transport::Quic {
                assert!(e.contains("refused"), "{e}");
            }
            true
        }
        Ok(mut c) => {
            c.send(ClientFrame::Hello(spider_protocol::version::hello("t")))
                .await;
            c.recv_any().await.is_none()
        }
    }
}

/// Waits until a connection from 127.0.0.1 gets its `Welcome` again (the
/// relay notices closed connections asynchronously).
async fn slot_released(relay: &TestRelay, t: Transport) {
    for _ in 0..100 {
        if let Ok(mut c) = Client::try_connect(relay, t, Connect::default()).await {
            c.send(ClientFrame::Hello(spider_protocol::version::hello("t")))
                .await;
            if matches!(c.recv_any().await, Some(ServerFrame::Welcome(_))) {
                c.close().await;
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{t:?}: slot not released");
}

#[tokio::test]
async fn connections_per_address_are_capped_and_other_addresses_keep_working() {
    let relay = start_relay_with(|c| c.limits.max_connections_per_ip = 2).await;
    let counted = Counted::new(&relay, "max_connections_per_ip").await;
    for t in BOTH {
        let mut a = Client::connect(&relay, t).await;
        a.hello().await;
        let mut b = Client::connect(&relay, t).await;
        b.hello().await;
        // Refused before any handshake work: no error frame (the code is in
        // the metrics).
        assert!(refused(&relay, t).await, "{t:?}");
        // 127.0.0.2 has its own two slots, while 127.0.0.1's are taken.
        others_keep_working(&relay, OTHER_HOST).await;
        a.close().await;
        b.close().await;
        slot_released(&relay, t).await;
    }
    counted.saw(2).await;
    relay.stop().await;
}

#[tokio::test]
async fn connections_over_the_relay_maximum_are_refused_and_those_held_keep_working() {
    let relay = start_relay_with(|c| c.limits.max_connections = 2).await;
    let counted = Counted::new(&relay, "max_connections").await;
    let (a_acc, mut a) = register(&relay, Transport::Quic, "held").await;
    let (b_acc, mut b) = register(&relay, Transport::Ws, "held").await;
    for t in BOTH {
        assert!(refused(&relay, t).await, "{t:?}");
    }
    counted.saw(2).await;
    exchange(&mut a, &mut b, &b_acc).await;
    exchange(&mut b, &mut a, &a_acc).await;
    a.close().await;
    b.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn failed_sign_ins_up_to_the_maximum_close_the_connection_and_others_keep_working() {
    let relay = start_relay_with(|c| c.limits.max_auth_attempts = 2).await;
    let counted = Counted::new(&relay, "max_auth_attempts").await;
    let (victim, v) = register(&relay, Transport::Quic, "victim").await;
    v.close().await;
    let stranger = Identity::new();
    for t in BOTH {
        let mut c = Client::connect(&relay, t).await;
        let w = c.hello().await;
        // Logins as the victim, signed with the wrong key.
        for attempt in 1..=2 {
            let req = c.req();
            c.send(ClientFrame::Login(Login {
                req,
                user: victim.user,
                device: victim.device,
                auth: stranger.auth(&relay.name, &c.exporter, &w.challenge.0),
            }))
            .await;
            match c.recv().await {
                Some(ServerFrame::Error(e)) => {
                    assert_eq!(e.code, ErrorCode::BAD_SIGNATURE, "{t:?} #{attempt}");
                    assert_eq!(e.req, Some(req));
                }
                f => panic!("{t:?} #{attempt}: {f:?}"),
            }
        }
        // The second refusal was the last word: closed with its code.
        assert!(c.closed().await, "{t:?}");
        c.expect_close_code(ErrorCode::BAD_SIGNATURE).await;
    }
    counted.saw(2).await;
    // The victim itself still signs in, and others go on.
    let (mut v, ok) = login(&relay, Transport::Ws, &victim).await;
    assert_eq!(ok.user, victim.user);
    assert!(matches!(v.expect().await, ServerFrame::CaughtUp(_)));
    others_keep_working(&relay, LOCALHOST).await;
    v.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn a_full_mailbox_refuses_with_mailbox_full_until_acked_and_other_mailboxes_fill() {
    let relay = start_relay_with(|c| c.limits.mailbox_quota = 2).await;
    let counted = Counted::new(&relay, "mailbox_quota").await;
    let (_alice, mut a) = register(&relay, Transport::Quic, "alice").await;
    let (bob, b) = register(&relay, Transport::Ws, "bob").await;
    b.close().await;
    let send = |a: &mut Client, id: MessageId| {
        let req = a.req();
        (req, direct(req, id, bob.user, &[(bob.device, b"x")]))
    };
    let mut ids = Vec::new();
    for _ in 0..2 {
        let id = MessageId::from_bytes(random());
        let (_, f) = send(&mut a, id);
        a.send(f).await;
        assert!(matches!(a.expect().await, ServerFrame::Sent(s) if s.message_id == id));
        ids.push(id);
    }
    let third = MessageId::from_bytes(random());
    let (req, f) = send(&mut a, third);
    a.send(f).await;
    match a.expect().await {
        ServerFrame::Error(e) => {
            assert_eq!(e.code, ErrorCode::MAILBOX_FULL);
            assert_eq!(e.req, Some(req));
            assert!(!e.code.is_fatal());
        }
        f => panic!("{f:?}"),
    }
    counted.saw(1).await;
    // Other mailboxes are not full: the same sender still reaches others,
    // and others reach each other.
    let (carol, mut c) = register(&relay, Transport::Ws, "carol").await;
    exchange(&mut a, &mut c, &carol).await;
    others_keep_working(&relay, LOCALHOST).await;
    // Bob drains and acks; the retry then goes through.
    let (mut b, ok) = login(&relay, Transport::Quic, &bob).await;
    assert_eq!(ok.queued, 2);
    let mut last = None;
    for id in &ids {
        match b.expect().await {
            ServerFrame::Deliver(d) => {
                assert_eq!(d.envelope.message_id, *id);
                last = Some(d.seq);
            }
            f => panic!("{f:?}"),
        }
    }
    assert!(matches!(b.expect().await, ServerFrame::CaughtUp(_)));
    b.send(ClientFrame::Ack(Ack {
        up_to: last.unwrap(),
    }))
    .await;
    b.send(ClientFrame::Ping(Ping { nonce: 1 })).await;
    assert!(matches!(b.expect().await, ServerFrame::Pong(_)));
    let (_, f) = send(&mut a, third);
    a.send(f).await;
    assert!(matches!(a.expect().await, ServerFrame::Sent(s) if s.message_id == third));
    assert!(matches!(b.expect().await, ServerFrame::Deliver(d) if d.envelope.message_id == third));
    for x in [a, b, c] {
        x.close().await;
    }
    relay.stop().await;
}

/// Alice sends `n` 30 KiB envelopes to `bob`, each acked with `Sent`.
async fn flood(a: &mut Client, bob: &Account, n: usize) -> Vec<MessageId> {
    let big = vec![0x5a; 30 * 1024];
    let mut ids = Vec::new();
    for _ in 0..n {
        let id = MessageId::from_bytes(random());
        let req = a.req();
        a.send(direct(req, id, bob.user, &[(bob.device, &big)]))
            .await;
        match a.expect_np().await {
            ServerFrame::Sent(s) => assert_eq!(s.message_id, id),
            f => panic!("{f:?}"),
        }
        ids.push(id);
    }
    ids
}

/// Bob signs in again and gets every one of `ids`, in order, once.
async fn all_waiting(relay: &TestRelay, bob: &Account, ids: &[MessageId]) {
    let (mut b, ok) = login(relay, Transport::Quic, bob).await;
    assert_eq!(ok.queued, ids.len() as u64);
    for id in ids {
        assert!(
            matches!(b.expect().await, ServerFrame::Deliver(d) if d.envelope.message_id == *id)
        );
    }
    assert!(matches!(b.expect().await, ServerFrame::CaughtUp(_)));
    b.close().await;
}

#[tokio::test]
async fn a_slow_consumer_is_closed_with_slow_consumer_and_its_mail_waits_in_its_mailbox() {
    let relay = start_relay_with(|c| {
        c.limits.outbound_queue = 2;
        // The flood below is over the default request rates.
        c.limits.request_burst = 1000;
        c.limits.account_request_burst = 1000;
    })
    .await;
    let counted = Counted::new(&relay, "outbound_queue").await;
    for t in BOTH {
        let (_alice, mut a) = register(&relay, Transport::Quic, "alice").await;
        // Bob reads nothing while alice sends far more than his receive
        // window and the relay's socket buffers and queue can hold.
        let how = Connect {
            small_window: true,
            ..Connect::default()
        };
        let (bob, mut b) = register_with(&relay, t, how, "bob").await;
        let n = 200;
        let ids = flood(&mut a, &bob, n).await;
        // Then he reads: what was on its way, then the error and the close.
        let delivered = b.expect_fatal(ErrorCode::SLOW_CONSUMER).await;
        assert!(delivered < n, "{t:?}: kicked before the end");
        // Nothing was acked, so everything waits for the next login, in
        // order; meanwhile others are served.
        others_keep_working(&relay, LOCALHOST).await;
        all_waiting(&relay, &bob, &ids).await;
        a.close().await;
    }
    counted.saw(2).await;
    relay.stop().await;
}

#[tokio::test]
async fn a_client_that_never_reads_is_closed_after_the_write_timeout_and_its_mail_waits() {
    let relay = start_relay_with(|c| c.limits.write_timeout_ms = 1000).await;
    let counted = Counted::new(&relay, "write_timeout_ms").await;
    let (_alice, mut a) = register(&relay, Transport::Quic, "alice").await;
    let how = Connect {
        small_window: true,
        ..Connect::default()
    };
    let (bob, mut b) = register_with(&relay, Transport::Quic, how, "bob").await;
    // More than bob's window: the relay's write to him blocks for good.
    let ids = flood(&mut a, &bob, 10).await;
    // Without reading a byte, bob sees the connection closed, with the code.
    assert_eq!(
        b.close_code().await,
        Some(spider_protocol::version::quic_close_code(
            ErrorCode::SLOW_CONSUMER
        ))
    );
    counted.saw(1).await;
    others_keep_working(&relay, LOCALHOST).await;
    all_waiting(&relay, &bob, &ids).await;
    a.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn a_full_contact_list_is_refused_and_others_keep_working() {
    let relay = start_relay_with(|c| c.limits.max_contacts = 1).await;
    let counted = Counted::new(&relay, "max_contacts").await;
    let (_, mut a) = register(&relay, Transport::Quic, "alice").await;
    let (bob, b) = register(&relay, Transport::Ws, "bob").await;
    let (carol, c) = register(&relay, Transport::Ws, "carol").await;
    let add = |a: &mut Client, user: UserId| {
        let req = a.req();
        (
            req,
            ClientFrame::EditContact(EditContact {
                req,
                user,
                add: true,
            }),
        )
    };
    let (req, f) = add(&mut a, bob.user);
    a.send(f).await;
    assert!(matches!(a.expect_np().await, ServerFrame::Done(d) if d.req == req));
    let (req, f) = add(&mut a, carol.user);
    a.send(f).await;
    match a.expect_np().await {
        ServerFrame::Error(e) => {
            assert_eq!(e.code, ErrorCode::RATE_LIMITED);
            assert_eq!(e.req, Some(req));
        }
        f => panic!("{f:?}"),
    }
    counted.saw(1).await;
    others_keep_working(&relay, LOCALHOST).await;
    for x in [a, b, c] {
        x.close().await;
    }
    relay.stop().await;
}

#[tokio::test]
async fn an_upload_over_the_one_time_prekey_stock_is_refused_and_others_keep_working() {
    let relay = start_relay_with(|c| c.limits.max_one_time_prekeys = 40).await;
    let counted = Counted::new(&relay, "max_one_time_prekeys").await;
    // Registered with 30 of each kind; 20 more would make 50.
    let (acc, mut a) = register(&relay, Transport::Quic, "stock").await;
    let req = a.req();
    a.send(ClientFrame::UploadPreKeys(UploadPreKeys {
        req,
        prekeys: acc.id.prekeys(100, 20, 20),
    }))
    .await;
    match a.expect_np().await {
        ServerFrame::Error(e) => {
            assert_eq!(e.code, ErrorCode::INVALID_PREKEYS);
            assert_eq!(e.req, Some(req));
        }
        f => panic!("{f:?}"),
    }
    counted.saw(1).await;
    // Ten more fit.
    let req = a.req();
    a.send(ClientFrame::UploadPreKeys(UploadPreKeys {
        req,
        prekeys: acc.id.prekeys(200, 10, 10),
    }))
    .await;
    assert!(matches!(a.expect_np().await, ServerFrame::Done(d) if d.req == req));
    others_keep_working(&relay, LOCALHOST).await;
    a.close().await;
    relay.stop().await;
}
