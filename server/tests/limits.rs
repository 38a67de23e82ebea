//! Rate limits and connection caps. Quotas are set so low that no machine is
//! slow enough to refill them during a test: the assertions do not depend
//! on speed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use spider_protocol::error::ErrorDetail;
use spider_protocol::message::{FetchPreKeys, LookupUser, Register, UserRef};
use spider_protocol::{ClientFrame, ErrorCode, ServerFrame};

#[tokio::test]
async fn a_burst_over_the_connection_rate_is_refused_with_a_retry_delay() {
    let relay = start_relay_with(|c| {
        c.limits.requests_per_second = 1;
        c.limits.request_burst = 3;
    })
    .await;
    let (acc, mut c) = register(&relay, Transport::Quic, "burst").await;
    let n = 12;
    for _ in 0..n {
        let req = c.req();
        c.send(ClientFrame::LookupUser(LookupUser {
            req,
            who: UserRef::Id(acc.user),
        }))
        .await;
    }
    let mut limited = 0;
    for _ in 0..n {
        match c.expect().await {
            ServerFrame::UserInfo(_) => {}
            ServerFrame::Error(e) => {
                assert_eq!(e.code, ErrorCode::RATE_LIMITED);
                assert!(e.req.is_some());
                assert!(matches!(e.detail, ErrorDetail::RetryAfter { ms } if ms > 0));
                limited += 1;
            }
            f => panic!("{f:?}"),
        }
    }
    assert!(limited > 0);
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
        ClientFrame::SendEphemeral(spider_protocol::message::SendEphemeral {
            to: spider_protocol::message::EphemeralTarget::User {
                user: acc.user,
                copies: spider_protocol::bytes::BoundedVec::empty(),
            },
        })
    };
    for _ in 0..4 {
        c.send(eph()).await;
    }
    // Heartbeats are not requests: every ping gets its pong at once.
    for nonce in 1..=5 {
        c.send(ClientFrame::Ping(spider_protocol::message::Ping { nonce }))
            .await;
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
    c.send(ClientFrame::Ping(spider_protocol::message::Ping {
        nonce: 99,
    }))
    .await;
    assert!(matches!(c.expect().await, ServerFrame::Pong(p) if p.nonce == 99));
    c.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn the_account_request_limit_applies_above_the_connection_limit() {
    // The connection may send 100 frames at once; its account only 4 (the
    // limiter is keyed by account, so more connections do not add to it).
    let relay = start_relay_with(|c| {
        c.limits.request_burst = 100;
        c.limits.account_requests_per_second = 1;
        c.limits.account_request_burst = 4;
    })
    .await;
    let (_, mut busy) = register(&relay, Transport::Quic, "busy").await;
    let (other, mut calm) = register(&relay, Transport::Ws, "calm").await;
    let lookup = |c: &mut Client| {
        let req = c.req();
        ClientFrame::LookupUser(LookupUser {
            req,
            who: UserRef::Id(other.user),
        })
    };
    for _ in 0..8 {
        let f = lookup(&mut busy);
        busy.send(f).await;
    }
    let mut limited = 0;
    for _ in 0..8 {
        match busy.expect().await {
            ServerFrame::UserInfo(_) => {}
            ServerFrame::Error(e) => {
                assert_eq!(e.code, ErrorCode::RATE_LIMITED);
                assert!(e.req.is_some());
                assert!(matches!(e.detail, ErrorDetail::RetryAfter { ms } if ms > 0));
                limited += 1;
            }
            f => panic!("{f:?}"),
        }
    }
    assert!(
        limited >= 3,
        "8 requests against an account burst of 4: {limited} refused"
    );
    // Another account on the same address is unaffected.
    let f = lookup(&mut calm);
    calm.send(f).await;
    assert!(matches!(calm.expect().await, ServerFrame::UserInfo(_)));
    busy.close().await;
    calm.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn the_address_request_limit_spans_accounts() {
    // Each connection and account may send 100 frames at once; everything
    // from 127.0.0.1 together only 6.
    let relay = start_relay_with(|c| {
        c.limits.request_burst = 100;
        c.limits.account_request_burst = 100;
        c.limits.ip_requests_per_second = 1;
        c.limits.ip_request_burst = 6;
    })
    .await;
    let (a_acc, mut a) = register(&relay, Transport::Quic, "first").await;
    let (_, mut b) = register(&relay, Transport::Ws, "second").await;
    let mut limited = 0;
    for c in [&mut a, &mut b] {
        for _ in 0..4 {
            let req = c.req();
            c.send(ClientFrame::LookupUser(LookupUser {
                req,
                who: UserRef::Id(a_acc.user),
            }))
            .await;
        }
        for _ in 0..4 {
            match c.expect().await {
                ServerFrame::UserInfo(_) => {}
                ServerFrame::Error(e) => {
                    assert_eq!(e.code, ErrorCode::RATE_LIMITED);
                    limited += 1;
                }
                f => panic!("{f:?}"),
            }
        }
    }
    assert!(
        limited >= 1,
        "8 requests from one address against a burst of 6"
    );
    a.close().await;
    b.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn registrations_from_one_address_are_limited() {
    let relay = start_relay_with(|c| {
        c.limits.registrations_per_hour = 1;
        c.limits.registration_burst = 2;
    })
    .await;
    let (_, a) = register(&relay, Transport::Quic, "first").await;
    let (_, b) = register(&relay, Transport::Ws, "second").await;
    let mut c = Client::connect(&relay, Transport::Quic).await;
    let w = c.hello().await;
    let id = Identity::new();
    let req = c.req();
    c.send(ClientFrame::Register(Register {
        req,
        username: username("third"),
        identity: id.keys.clone(),
        prekeys: id.prekeys(1, 1, 1),
        auth: id.auth(&relay.name, &c.exporter, &w.challenge.0),
    }))
    .await;
    match c.expect().await {
        ServerFrame::Error(e) => {
            assert_eq!(e.code, ErrorCode::REGISTRATION_LIMITED);
            assert!(matches!(e.detail, ErrorDetail::RetryAfter { .. }));
        }
        f => panic!("{f:?}"),
    }
    for x in [a, b, c] {
        x.close().await;
    }
    relay.stop().await;
}

#[tokio::test]
async fn prekey_fetches_are_limited_per_account() {
    let relay = start_relay_with(|c| {
        c.limits.prekey_fetches_per_minute = 1;
        c.limits.prekey_fetch_burst = 2;
    })
    .await;
    let (target, t) = register(&relay, Transport::Ws, "target").await;
    let (_, mut c) = register(&relay, Transport::Quic, "fetcher").await;
    let mut codes = Vec::new();
    for _ in 0..3 {
        let req = c.req();
        c.send(ClientFrame::FetchPreKeys(FetchPreKeys {
            req,
            user: target.user,
            device: None,
        }))
        .await;
        codes.push(match c.expect().await {
            ServerFrame::PreKeyBundles(_) => None,
            ServerFrame::Error(e) => Some(e.code),
            f => panic!("{f:?}"),
        });
    }
    assert_eq!(
        codes,
        vec![None, None, Some(ErrorCode::PREKEY_FETCH_LIMITED)]
    );
    t.close().await;
    c.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn connections_per_address_are_capped() {
    let relay = start_relay_with(|c| c.limits.max_connections_per_ip = 2).await;
    for t in BOTH {
        let mut a = Client::connect(&relay, t).await;
        a.hello().await;
        let mut b = Client::connect(&relay, t).await;
        b.hello().await;
        let third = Client::connect_ws_origin(&relay, t, None).await;
        let refused = match third {
            Err(_) => true,
            // QUIC may finish its handshake lazily; then the stream fails.
            Ok(mut c) => {
                c.send_raw(vec![0, 0, 0, 1, 24]).await;
                c.recv_any().await.is_none()
            }
        };
        assert!(refused, "{t:?}");
        a.close().await;
        b.close().await;
        // Slots are released when connections end (the relay notices the
        // close asynchronously, so wait for a fresh connection to succeed).
        let mut ok = false;
        for _ in 0..100 {
            if let Ok(mut c) = Client::connect_ws_origin(&relay, t, None).await {
                c.send(ClientFrame::Hello(spider_protocol::version::hello("t")))
                    .await;
                if matches!(c.recv_any().await, Some(ServerFrame::Welcome(_))) {
                    ok = true;
                    c.close().await;
                    break;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(ok, "{t:?}: slot not released");
    }
    relay.stop().await;
}
