//! Version negotiation, registration and login, auth binding, frames out of
//! order and ALPN, against a real relay on loopback. (Frame size, Origin and
//! handshake timeout are in limits.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use spider_protocol::error::ErrorDetail;
use spider_protocol::message::{Login, Ping};
use spider_protocol::{ClientFrame, ErrorCode, ServerFrame};

#[tokio::test]
async fn unsupported_version_gets_the_error_then_close() {
    let relay = start_relay().await;
    for t in BOTH {
        let mut c = Client::connect(&relay, t).await;
        match c.hello_with(vec![999, 7]).await {
            ServerFrame::Error(e) => {
                assert_eq!(e.code, ErrorCode::UNSUPPORTED_VERSION, "{t:?}");
                assert_eq!(e.req, None);
                assert!(matches!(e.detail, ErrorDetail::Versions(v) if v.as_slice() == [1]));
            }
            f => panic!("{t:?}: expected error, got {f:?}"),
        }
        assert!(c.closed().await, "{t:?}: relay must close after the error");
    }
    relay.stop().await;
}

#[tokio::test]
async fn register_then_login_on_both_transports() {
    let relay = start_relay().await;
    for (reg, log) in [
        (Transport::Quic, Transport::Ws),
        (Transport::Ws, Transport::Quic),
    ] {
        let (acc, c) = register(&relay, reg, "alice").await;
        assert_eq!(acc.device.0, 1);
        c.close().await;
        let (mut c, ok) = login(&relay, log, &acc).await;
        assert_eq!(ok.user, acc.user);
        assert_eq!(ok.username, acc.username);
        assert_eq!(ok.prekeys.one_time, 30);
        assert!(matches!(c.expect().await, ServerFrame::CaughtUp(u) if u.last.is_none()));
        c.send(ClientFrame::Ping(Ping { nonce: 42 })).await;
        assert!(matches!(c.expect().await, ServerFrame::Pong(p) if p.nonce == 42));
        c.close().await;
    }
    relay.stop().await;
}

#[tokio::test]
async fn an_auth_signature_for_another_connection_is_refused() {
    let relay = start_relay().await;
    let (acc, first) = register(&relay, Transport::Quic, "bob").await;
    for t in BOTH {
        let mut c = Client::connect(&relay, t).await;
        let w = c.hello().await;
        // Signed over the right challenge but another connection's exporter.
        let auth = acc.id.auth(&relay.name, &[0u8; 32], &w.challenge.0);
        let req = c.req();
        c.send(ClientFrame::Login(Login {
            req,
            user: acc.user,
            device: acc.device,
            auth,
        }))
        .await;
        match c.expect().await {
            ServerFrame::Error(e) => {
                assert_eq!(e.code, ErrorCode::BAD_SIGNATURE);
                assert_eq!(e.req, Some(req));
            }
            f => panic!("expected BAD_SIGNATURE, got {f:?}"),
        }
        // Wrong relay name.
        let auth = acc.id.auth("elsewhere", &c.exporter, &w.challenge.0);
        c.send(ClientFrame::Login(Login {
            req,
            user: acc.user,
            device: acc.device,
            auth,
        }))
        .await;
        assert!(
            matches!(c.expect().await, ServerFrame::Error(e) if e.code == ErrorCode::BAD_SIGNATURE)
        );
        // The right signature on the same connection still works.
        let auth = acc.id.auth(&relay.name, &c.exporter, &w.challenge.0);
        c.send(ClientFrame::Login(Login {
            req,
            user: acc.user,
            device: acc.device,
            auth,
        }))
        .await;
        expect_auth_ok(&mut c).await;
        c.close().await;
    }
    first.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn a_taken_username_is_refused_and_the_client_may_retry() {
    let relay = start_relay().await;
    let (acc, first) = register(&relay, Transport::Ws, "carol").await;
    let mut c = Client::connect(&relay, Transport::Quic).await;
    let w = c.hello().await;
    let id = Identity::new();
    let req = c.req();
    let f = id.register_frame(
        &relay,
        &c,
        &w,
        req,
        acc.username.clone(),
        id.prekeys(1, 1, 1),
    );
    c.send(f).await;
    assert!(
        matches!(c.expect().await, ServerFrame::Error(e) if e.code == ErrorCode::USERNAME_TAKEN)
    );
    let f = id.register_frame(&relay, &c, &w, req, username("carol"), id.prekeys(1, 1, 1));
    c.send(f).await;
    expect_auth_ok(&mut c).await;
    first.close().await;
    c.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn a_reserved_username_gets_invalid_username_and_the_connection_goes_on() {
    let relay = start_relay().await;
    let mut c = Client::connect(&relay, Transport::Quic).await;
    let w = c.hello().await;
    let id = Identity::new();
    let req = c.req();
    // Syntactically valid, so it decodes; reserved, so it is refused.
    let f = id.register_frame(
        &relay,
        &c,
        &w,
        req,
        spider_protocol::name::Username::parse("admin").unwrap(),
        id.prekeys(1, 1, 1),
    );
    c.send(f).await;
    assert!(
        matches!(c.expect().await, ServerFrame::Error(e) if e.code == ErrorCode::INVALID_USERNAME && e.req == Some(req))
    );
    let f = id.register_frame(&relay, &c, &w, req, username("dave"), id.prekeys(1, 1, 1));
    c.send(f).await;
    expect_auth_ok(&mut c).await;
    c.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn a_frame_before_hello_is_refused_and_closed() {
    let relay = start_relay().await;
    for t in BOTH {
        let mut c = Client::connect(&relay, t).await;
        c.send(ClientFrame::Ping(Ping { nonce: 1 })).await;
        assert!(
            matches!(c.expect().await, ServerFrame::Error(e) if e.code == ErrorCode::UNEXPECTED_FRAME && e.req.is_none())
        );
        assert!(c.closed().await);
    }
    relay.stop().await;
}

#[tokio::test]
async fn alpn_is_spider_on_quic_and_spider_or_http11_on_websocket() {
    use std::sync::Arc;
    let relay = start_relay().await;
    for (alpn, ok) in [(&b"http/1.1"[..], true), (&b"h2"[..], false)] {
        let mut tls = relay.tls();
        tls.alpn_protocols = vec![alpn.to_vec()];
        let tcp = tokio::net::TcpStream::connect(relay.ws).await.unwrap();
        let r = tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect(
                rustls::pki_types::ServerName::try_from("localhost").unwrap(),
                tcp,
            )
            .await;
        assert_eq!(r.is_ok(), ok, "{}", String::from_utf8_lossy(alpn));
    }
    // QUIC: only spider/1.
    let mut tls = relay.tls();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap(),
    )));
    let r = tokio::time::timeout(PATIENCE, endpoint.connect(relay.quic, "localhost").unwrap())
        .await
        .unwrap();
    assert!(r.is_err());
    relay.stop().await;
}
