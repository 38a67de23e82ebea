#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The async driver over a loopback WebSocket server that speaks just the
//! handshake (not a relay): registration bound to the TLS exporter, loss of
//! the connection, reconnection with backoff, login on the new connection.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use spider_client::client::{Backoff, Client, ClientConfig};
use spider_client::engine::{Engine, Event};
use spider_client::profile::{Account, Profile, os_rng};
use spider_client::transport::{RelayTarget, TransportChoice};
use spider_crypto::keys::IdentityPublicKey;
use spider_protocol::bytes::{BoundedString, FixedBytes};
use spider_protocol::codec;
use spider_protocol::ids::{DeviceId, RequestId, Timestamp, UserId};
use spider_protocol::keys::{IdentityKeys, PreKeyCounts};
use spider_protocol::message::{AuthOk, CaughtUp, Welcome};
use spider_protocol::name::Username;
use spider_protocol::version::AUTH_EXPORTER_LABEL;
use spider_protocol::{ClientFrame, ServerFrame};
use tokio_tungstenite::tungstenite::Message;

const NAME: &str = "relay.test";

fn check(
    identity: &IdentityKeys,
    exporter: &[u8; 32],
    challenge: &[u8; 32],
    sig: &[u8; 64],
) -> bool {
    let id =
        IdentityPublicKey::from_parts(&identity.signing.0, &identity.dh.0, &identity.binding.0)
            .unwrap();
    id.verify_auth_challenge(NAME, exporter, challenge, sig)
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_registers_reconnects_after_a_drop_and_logs_in() {
    // PKI: a CA and a certificate for the relay name.
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![NAME.to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();

    // The handshake-only server: registration on the first connection,
    // which it then drops; login on the second. It reports what it saw.
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    tokio::spawn(async move {
        let user = UserId::from_bytes([5; 16]);
        let mut identity: Option<IdentityKeys> = None;
        for round in 0u8..2 {
            let (tcp, _) = listener.accept().await.unwrap();
            let tls = acceptor.accept(tcp).await.unwrap();
            let exporter = tls
                .get_ref()
                .1
                .export_keying_material([0u8; 32], AUTH_EXPORTER_LABEL, None)
                .unwrap();
            let mut ws = tokio_tungstenite::accept_async(tls).await.unwrap();
            let mut next = async || {
                let m = ws.next().await.unwrap().unwrap();
                codec::decode_body::<ClientFrame>(&m.into_data()).unwrap()
            };
            assert!(matches!(next().await, ClientFrame::Hello(_)));
            let challenge = [round + 1; 32];
            let mut frames = vec![ServerFrame::Welcome(Welcome {
                version: 1,
                relay_name: BoundedString::new(NAME).unwrap(),
                challenge: FixedBytes(challenge),
                server_time: Timestamp(0),
                idle_timeout_ms: 60_000,
            })];
            let send_all = async |ws: &mut tokio_tungstenite::WebSocketStream<_>,
                                  frames: Vec<ServerFrame>| {
                for f in frames {
                    ws.send(Message::Binary(codec::encode_body(&f).unwrap().into()))
                        .await
                        .unwrap();
                }
            };
            send_all(&mut ws, std::mem::take(&mut frames)).await;
            let m = ws.next().await.unwrap().unwrap();
            let req = match codec::decode_body::<ClientFrame>(&m.into_data()).unwrap() {
                ClientFrame::Register(r) => {
                    assert!(check(&r.identity, &exporter, &challenge, &r.auth.0));
                    identity = Some(r.identity.clone());
                    seen_tx.send("register").unwrap();
                    r.req
                }
                ClientFrame::Login(l) => {
                    assert_eq!((l.user, l.device), (user, DeviceId(1)));
                    assert!(check(
                        identity.as_ref().unwrap(),
                        &exporter,
                        &challenge,
                        &l.auth.0
                    ));
                    seen_tx.send("login").unwrap();
                    l.req
                }
                other => panic!("unexpected {:?}", other.kind()),
            };
            let ok = ServerFrame::AuthOk(AuthOk {
                req: RequestId(req.0),
                user,
                username: Username::parse("bot").unwrap(),
                device: DeviceId(1),
                prekeys: PreKeyCounts {
                    one_time: 100,
                    one_time_kem: 20,
                },
                queued: 0,
            });
            send_all(
                &mut ws,
                vec![ok, ServerFrame::CaughtUp(CaughtUp { last: None })],
            )
            .await;
            if round == 0 {
                // Drop the connection under the client.
                drop(ws);
            } else {
                // Keep it open until the client goes.
                while let Some(Ok(_)) = ws.next().await {}
            }
        }
    });

    let profile = Profile::in_memory(
        Account {
            relay_name: NAME.into(),
            username: Username::parse("bot").unwrap(),
            user: None,
            device: None,
        },
        os_rng(),
    )
    .unwrap();
    let config = ClientConfig {
        target: RelayTarget {
            addr: addr.to_string(),
            server_name: NAME.into(),
            ca_pem: ca.pem().into_bytes(),
        },
        transport: TransportChoice::WebSocket,
        backoff: Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(50),
        },
    };
    let (client, mut events) = Client::spawn(Engine::new(profile, os_rng()), config);
    let run = async {
        let mut connected = 0;
        while connected < 2 {
            if let Event::Connected { device, .. } = events.recv().await.unwrap() {
                assert_eq!(device, DeviceId(1));
                connected += 1;
            }
        }
    };
    // A guard against hanging, not a timing assertion.
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("two connections");
    assert_eq!(seen_rx.recv().await, Some("register"));
    assert_eq!(seen_rx.recv().await, Some("login"));
    client.shutdown().await;
}
