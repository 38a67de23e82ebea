#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! 1:1 messages between SDK clients through a real relay: both ways over
//! QUIC and over WebSocket, and across an offline recipient and a relay
//! restart.

mod common;

use common::{TestClient, TestRelay, connect, next, send_and_wait, texts};
use spider_client::engine::Event;
use spider_client::transport::TransportChoice;

async fn both_ways(t: TransportChoice) {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = TestRelay::start(&dir.path().join("relay"), None).await;
    let mut alice = connect(&relay, &dir.path().join("alice"), "alice", t).await;
    let mut bob = connect(&relay, &dir.path().join("bob"), "bob", t).await;

    // Alice knows bob by name only; the SDK looks him up.
    let id = alice
        .client
        .send_text(bob.username.clone(), "hello bob")
        .await
        .unwrap();
    let got = texts(&mut bob, 1).await;
    assert_eq!(got[0].0.user, alice.me);
    assert_eq!(got[0].1, "hello bob");
    loop {
        if let Event::Sent { id: s } = next(&mut alice.events).await
            && s == id
        {
            break;
        }
    }

    send_and_wait(&mut bob, alice.me, "hello alice").await;
    send_and_wait(&mut bob, alice.me, "how are you?").await;
    let got = texts(&mut alice, 2).await;
    assert!(got.iter().all(|(from, _)| from.user == bob.me));
    let got: Vec<_> = got.into_iter().map(|(_, t)| t).collect();
    assert_eq!(got, ["hello alice", "how are you?"]);

    alice.client.shutdown().await;
    bob.client.shutdown().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_messages_both_ways_over_quic() {
    both_ways(TransportChoice::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_messages_both_ways_over_websocket() {
    both_ways(TransportChoice::WebSocket).await;
}

async fn stop(c: TestClient) {
    c.client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_recipient_and_relay_restart_every_message_once_in_order() {
    let t = TransportChoice::Quic;
    let dir = tempfile::tempdir().unwrap();
    let mut relay = TestRelay::start(&dir.path().join("relay"), None).await;
    let bob_dir = dir.path().join("bob");
    let bob = connect(&relay, &bob_dir, "bob", t).await;
    let bob_id = bob.me;
    stop(bob).await;

    let mut alice = connect(&relay, &dir.path().join("alice"), "alice", t).await;
    let mut carol = connect(&relay, &dir.path().join("carol"), "carol", t).await;
    for i in 0..5 {
        send_and_wait(&mut alice, bob_id, &format!("alice {i}")).await;
        send_and_wait(&mut carol, bob_id, &format!("carol {i}")).await;
    }

    // The relay goes away and comes back on the same data and ports; the
    // senders' drivers reconnect by themselves.
    relay.restart().await;
    for i in 5..10 {
        send_and_wait(&mut alice, bob_id, &format!("alice {i}")).await;
        send_and_wait(&mut carol, bob_id, &format!("carol {i}")).await;
    }
    // Markers after everything: a duplicate would arrive before them.
    send_and_wait(&mut alice, bob_id, "alice end").await;
    send_and_wait(&mut carol, bob_id, "carol end").await;

    let mut bob = connect(&relay, &bob_dir, "bob", t).await;
    let got = texts(&mut bob, 22).await;
    for (who, sender) in [("alice", alice.me), ("carol", carol.me)] {
        let mine: Vec<&str> = got
            .iter()
            .filter(|(from, _)| from.user == sender)
            .map(|(_, t)| t.as_str())
            .collect();
        let mut want: Vec<String> = (0..10).map(|i| format!("{who} {i}")).collect();
        want.push(format!("{who} end"));
        assert_eq!(mine, want, "messages of {who}");
    }

    stop(alice).await;
    stop(carol).await;
    stop(bob).await;
    relay.stop().await;
}
