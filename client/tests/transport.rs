#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Transports over loopback against minimal in-test TLS servers (not a
//! relay): CA pinning, TLS 1.3, ALPN, the exporter both ends agree on, and
//! framing in both directions.

use std::sync::Arc;

use futures_util::{SinkExt as _, StreamExt as _};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use spider_client::transport::{RelayTarget, connect_quic, connect_websocket};
use spider_protocol::bytes::{BoundedString, FixedBytes};
use spider_protocol::codec::{self, FrameDecoder};
use spider_protocol::ids::Timestamp;
use spider_protocol::message::Welcome;
use spider_protocol::version::{self, ALPN, AUTH_EXPORTER_LABEL};
use spider_protocol::{ClientFrame, ServerFrame};

struct Pki {
    ca_pem: String,
    cert: CertificateDer<'static>,
    key: Vec<u8>,
}

fn pki(name: &str) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert: cert.der().clone(),
        key: key.serialize_der(),
    }
}

fn server_tls(p: &Pki, alpn: &[u8]) -> rustls::ServerConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut c = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![p.cert.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(p.key.clone())),
        )
        .unwrap();
    c.alpn_protocols = vec![alpn.to_vec()];
    c
}

fn welcome(challenge: [u8; 32]) -> ServerFrame {
    ServerFrame::Welcome(Welcome {
        version: 1,
        relay_name: BoundedString::new("relay.test").unwrap(),
        challenge: FixedBytes(challenge),
        server_time: Timestamp(0),
        idle_timeout_ms: 60_000,
    })
}

/// A QUIC server that reads a hello and answers with a welcome whose
/// challenge is its own exporter value.
async fn quic_server(p: &Pki) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(server_tls(p, ALPN)).unwrap();
    let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let Some(incoming) = endpoint.accept().await else {
            return;
        };
        let Ok(conn) = incoming.await else { return };
        let mut exporter = [0u8; 32];
        conn.export_keying_material(&mut exporter, AUTH_EXPORTER_LABEL, b"")
            .unwrap();
        let (mut send, mut recv) = conn.accept_bi().await.unwrap();
        let mut dec = FrameDecoder::<ClientFrame>::new();
        let hello = loop {
            if let Some(f) = dec.next_frame().unwrap() {
                break f;
            }
            let chunk = recv.read_chunk(4096, true).await.unwrap().unwrap();
            dec.push(&chunk.bytes);
        };
        assert!(matches!(hello, ClientFrame::Hello(_)));
        let mut out = Vec::new();
        codec::encode_stream(&welcome(exporter), &mut out).unwrap();
        send.write_all(&out).await.unwrap();
        let _ = conn.closed().await;
    });
    (addr, task)
}

fn target(addr: std::net::SocketAddr, ca_pem: &str) -> RelayTarget {
    RelayTarget {
        addr: addr.to_string(),
        server_name: "relay.test".into(),
        ca_pem: ca_pem.as_bytes().to_vec(),
    }
}

#[tokio::test]
async fn quic_link_carries_frames_and_both_ends_agree_on_the_exporter() {
    let p = pki("relay.test");
    let (addr, _server) = quic_server(&p).await;
    let (mut link, exporter) = connect_quic(&target(addr, &p.ca_pem)).await.unwrap();
    assert!(link.is_quic());
    link.send(&ClientFrame::Hello(version::hello("test")))
        .await
        .unwrap();
    let ServerFrame::Welcome(w) = link.recv().await.unwrap() else {
        panic!("no welcome")
    };
    assert_eq!(w.challenge.0, exporter);
    link.close().await;
}

#[tokio::test]
async fn quic_refuses_a_relay_certified_by_another_ca() {
    let p = pki("relay.test");
    let other = pki("relay.test");
    let (addr, _server) = quic_server(&p).await;
    assert!(connect_quic(&target(addr, &other.ca_pem)).await.is_err());
}

#[tokio::test]
async fn websocket_link_carries_frames_and_both_ends_agree_on_the_exporter() {
    let p = pki("relay.test");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_tls(&p, b"http/1.1")));
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let tls = acceptor.accept(tcp).await.unwrap();
        let exporter = tls
            .get_ref()
            .1
            .export_keying_material([0u8; 32], AUTH_EXPORTER_LABEL, None)
            .unwrap();
        let mut ws = tokio_tungstenite::accept_async(tls).await.unwrap();
        let msg = ws.next().await.unwrap().unwrap();
        let hello = codec::decode_body::<ClientFrame>(&msg.into_data()).unwrap();
        assert!(matches!(hello, ClientFrame::Hello(_)));
        let body = codec::encode_body(&welcome(exporter)).unwrap();
        ws.send(tokio_tungstenite::tungstenite::Message::Binary(body.into()))
            .await
            .unwrap();
        let _ = ws.next().await;
    });
    let (mut link, exporter) = connect_websocket(&target(addr, &p.ca_pem)).await.unwrap();
    assert!(!link.is_quic());
    link.send(&ClientFrame::Hello(version::hello("test")))
        .await
        .unwrap();
    let ServerFrame::Welcome(w) = link.recv().await.unwrap() else {
        panic!("no welcome")
    };
    assert_eq!(w.challenge.0, exporter);
    link.close().await;
}

#[test]
fn a_ca_file_without_certificates_is_refused() {
    assert!(spider_client::transport::load_ca(b"not a pem").is_err());
}

#[tokio::test(start_paused = true)]
async fn a_quic_connect_to_a_relay_that_never_answers_gives_up_after_the_connect_timeout() {
    // A UDP socket that reads nothing: a relay that is down or a network
    // that drops UDP. QUIC gets no "connection refused"; without a bound the
    // attempt lasted QUIC's whole idle timeout (90 s) before the SDK could
    // try again. (Paused clock: the timers run in virtual time.)
    use spider_client::transport::{QUIC_CONNECT_TIMEOUT, QUIC_IDLE_TIMEOUT, TransportError};
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let p = pki("relay.test");
    let start = tokio::time::Instant::now();
    let r = connect_quic(&target(silent.local_addr().unwrap(), &p.ca_pem)).await;
    let took = start.elapsed();
    assert!(matches!(r, Err(TransportError::Timeout)), "{:?}", r.err());
    assert!(took >= QUIC_CONNECT_TIMEOUT, "{took:?}");
    assert!(took < QUIC_IDLE_TIMEOUT, "{took:?}");
}
