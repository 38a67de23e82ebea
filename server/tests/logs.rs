//! Logs never carry message content: a marker sent as ciphertext (and as an
//! ephemeral payload) never appears in the relay's logs, even at trace level.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use spider_protocol::ids::MessageId;
use spider_protocol::{ClientFrame, ServerFrame};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn a_marker_sent_as_ciphertext_never_appears_in_relay_logs() {
    let logs = Captured::default();
    let writer = logs.clone();
    // The relay's own logging, asked for everything at trace level.
    spider_relay::logging::init(
        Some("trace,tungstenite=trace"),
        move || writer.clone(),
        false,
    );

    let marker = b"MARKER-7f3a9c-plaintext-canary";
    let relay = start_relay().await;
    let (_alice, mut a) = register(&relay, Transport::Quic, "alice").await;
    let (bob, mut b) = register(&relay, Transport::Ws, "bob").await;
    let id = MessageId::from_bytes(random());
    let req = a.req();
    a.send(direct(req, id, bob.user, &[(bob.device, marker)]))
        .await;
    assert!(matches!(a.expect().await, ServerFrame::Sent(_)));
    assert!(matches!(b.expect().await, ServerFrame::Deliver(_)));
    // The same marker offline, through the store and the backlog.
    b.close().await;
    let id = MessageId::from_bytes(random());
    let req = a.req();
    a.send(direct(req, id, bob.user, &[(bob.device, marker)]))
        .await;
    assert!(matches!(a.expect().await, ServerFrame::Sent(_)));
    let (mut b, _) = login(&relay, Transport::Quic, &bob).await;
    // Both: the first was never acked.
    assert!(matches!(b.expect().await, ServerFrame::Deliver(_)));
    assert!(matches!(b.expect().await, ServerFrame::Deliver(_)));
    assert!(matches!(b.expect().await, ServerFrame::CaughtUp(_)));
    b.send(ClientFrame::Ping(spider_protocol::message::Ping {
        nonce: 1,
    }))
    .await;
    assert!(matches!(b.expect().await, ServerFrame::Pong(_)));
    a.close().await;
    b.close().await;
    relay.stop().await;

    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(
        text.contains("signed in"),
        "the relay did log: {} bytes",
        text.len()
    );
    let m = std::str::from_utf8(marker).unwrap();
    let hits: Vec<&str> = text.lines().filter(|l| l.contains(m)).take(3).collect();
    assert!(hits.is_empty(), "marker found in logs: {hits:?}");
    assert!(!text.contains(&hex(marker)), "hex marker found in logs");
    // Nor the sending device's signing key.
    assert!(!text.contains(&hex(&bob.id.keys.signing.0)));
}
