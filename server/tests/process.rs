//! The binary as an operator runs it: first start makes development
//! certificates and prints the CA path; SIGTERM drains (clients get `Drain`),
//! flushes and exits 0; a restart on the same data directory has the mail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::*;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use spider_protocol::ids::MessageId;
use spider_protocol::message::Ping;
use spider_protocol::{ClientFrame, ServerFrame};

/// A relay process, killed if the test fails before it stops it.
struct Spawned {
    child: Child,
    quic: SocketAddr,
    ws: SocketAddr,
    ca_line: String,
    metrics: SocketAddr,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn spawn(data: &Path, config: &Path) -> Spawned {
    spawn_on(data, config, "127.0.0.1:0")
}

/// [`spawn`] with QUIC on `quic`.
fn spawn_on(data: &Path, config: &Path, quic: &str) -> Spawned {
    let mut child = Command::new(env!("CARGO_BIN_EXE_spider-relay"))
        .args(["serve", "--data"])
        .arg(data)
        .args([
            "--quic",
            quic,
            "--ws",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
        ])
        .arg("--config")
        .arg(config)
        .env("SPIDER_RELAY_NAME", "env-name.test")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Everything that can fail before the guard exists kills the child first.
    let parsed = (|| {
        let listening = rx.recv_timeout(PATIENCE).ok()?;
        let metrics_line = rx.recv_timeout(PATIENCE).ok()?;
        let ca_line = rx.recv_timeout(PATIENCE).ok()?;
        let addr = |key: &str| -> Option<SocketAddr> {
            listening
                .split_whitespace()
                .find_map(|w| w.strip_prefix(key))?
                .parse()
                .ok()
        };
        let metrics = metrics_line
            .strip_prefix("metrics: http://")?
            .strip_suffix("/metrics")?
            .parse()
            .ok()?;
        Some((addr("quic=")?, addr("ws=")?, metrics, ca_line))
    })();
    let Some((quic, ws, metrics, ca_line)) = parsed else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("relay did not print its addresses");
    };
    Spawned {
        child,
        quic,
        ws,
        ca_line,
        metrics,
    }
}

fn as_test_relay(s: &Spawned, dir: &Path) -> TestRelay {
    TestRelay {
        relay: None,
        dir: tempfile::tempdir_in(dir).unwrap(),
        quic: s.quic,
        ws: s.ws,
        metrics: Some(s.metrics),
        ca: CertificateDer::from_pem_file(dir.join("certs/ca.pem")).unwrap(),
        name: "env-name.test".into(),
    }
}

fn sigterm_and_wait(mut s: Spawned) -> std::process::ExitStatus {
    // (Drop kills the process if it has not exited by the end.)
    let pid = s.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    for _ in 0..200 {
        if let Some(status) = s.child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("relay did not exit after SIGTERM");
}

#[tokio::test]
async fn sigterm_drains_clients_flushes_and_a_restart_keeps_the_mail() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("relay.toml");
    // The environment's name wins over the file's: auth signatures below
    // cover "env-name.test" and would not verify under any other name.
    std::fs::write(
        &config,
        "name = \"file-name.test\"\n[limits]\nmailbox_quota = 50\n",
    )
    .unwrap();

    let first = spawn(&data, &config);
    let ca = data.join("certs/ca.pem");
    assert!(
        first.ca_line.ends_with(ca.to_str().unwrap()),
        "{}",
        first.ca_line
    );
    for k in ["ca.key", "relay.key"] {
        let mode = std::fs::metadata(data.join("certs").join(k))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let relay = as_test_relay(&first, &data);
    let (_alice, mut a) = register(&relay, Transport::Quic, "alice").await;
    let (bob, b) = register(&relay, Transport::Ws, "bob").await;
    b.close().await;
    let id = MessageId::from_bytes(random());
    let req = a.req();
    a.send(direct(req, id, bob.user, &[(bob.device, b"survives")]))
        .await;
    assert!(matches!(a.expect().await, ServerFrame::Sent(_)));

    let m = relay.scrape().await;
    assert!(m.contains("spider_envelopes_in_total 1"), "{m}");
    assert!(
        m.contains("spider_connections{transport=\"quic\"} 1"),
        "{m}"
    );
    assert!(m.contains("spider_store_flush_seconds_count"), "{m}");
    // Alice and Bob each signed in with an empty mailbox.
    assert!(m.contains("spider_mailbox_depth_at_login_count 2"), "{m}");

    let status = tokio::task::spawn_blocking(move || sigterm_and_wait(first));
    match a.recv().await {
        Some(ServerFrame::Drain(_)) => {}
        f => panic!("expected Drain, got {f:?}"),
    }
    assert!(a.closed().await);
    assert!(status.await.unwrap().success());

    let second = spawn(&data, &config);
    let relay = as_test_relay(&second, &data);
    let (mut b, ok) = login(&relay, Transport::Quic, &bob).await;
    assert_eq!(ok.queued, 1);
    match b.expect().await {
        ServerFrame::Deliver(d) => assert_eq!(d.envelope.message_id, id),
        f => panic!("{f:?}"),
    }
    b.send(ClientFrame::Ack(spider_protocol::message::Ack {
        up_to: spider_protocol::ids::Seq(1),
    }))
    .await;
    let status = tokio::task::spawn_blocking(move || sigterm_and_wait(second));
    assert!(matches!(b.recv().await, Some(ServerFrame::CaughtUp(_))));
    assert!(status.await.unwrap().success());
}

#[tokio::test]
async fn kill_9_loses_nothing_that_was_acked_with_sent() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("relay.toml");
    std::fs::write(&config, "").unwrap();

    let mut first = spawn(&data, &config);
    let relay = as_test_relay(&first, &data);
    let (_alice, mut a) = register(&relay, Transport::Quic, "alice").await;
    let (bob, b) = register(&relay, Transport::Ws, "bob").await;
    b.close().await;
    let mut ids = Vec::new();
    for i in 0..20u8 {
        let id = MessageId::from_bytes(random());
        let req = a.req();
        a.send(direct(req, id, bob.user, &[(bob.device, &[i; 100])]))
            .await;
        assert!(matches!(a.expect().await, ServerFrame::Sent(_)));
        ids.push(id);
    }
    // No drain, no flush: the process dies at once.
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    drop(a);

    let second = spawn(&data, &config);
    let relay = as_test_relay(&second, &data);
    let (mut b, ok) = login(&relay, Transport::Quic, &bob).await;
    assert_eq!(ok.queued, 20);
    for id in &ids {
        assert!(
            matches!(b.expect().await, ServerFrame::Deliver(d) if d.envelope.message_id == *id)
        );
    }
    assert!(matches!(b.expect().await, ServerFrame::CaughtUp(_)));
    b.close().await;
    let status = tokio::task::spawn_blocking(move || sigterm_and_wait(second));
    assert!(status.await.unwrap().success());
}

/// A relay restarted on the same data directory and port keeps its QUIC
/// stateless-reset secret (`DATA/quic-reset.key`): a client of the killed
/// process learns at its next packet that its connection is gone (a
/// stateless reset) instead of waiting out its idle timeout.
#[tokio::test]
async fn a_restarted_relay_resets_the_quic_connections_of_the_killed_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("relay.toml");
    std::fs::write(&config, "").unwrap();

    let mut first = spawn(&data, &config);
    let relay = as_test_relay(&first, &data);
    let quic = first.quic.to_string();
    let (_alice, mut a) = register(&relay, Transport::Quic, "alice").await;
    let key = std::fs::read(data.join("quic-reset.key")).unwrap();
    assert_eq!(key.len(), 64);
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    let second = spawn_on(&data, &config, &quic);
    assert_eq!(std::fs::read(data.join("quic-reset.key")).unwrap(), key);
    a.send(ClientFrame::Ping(Ping { nonce: 7 })).await;
    let end = a.quic_end().await;
    assert!(
        matches!(end, quinn::ConnectionError::Reset),
        "ended by {end:?}, not a stateless reset"
    );
    let status = tokio::task::spawn_blocking(move || sigterm_and_wait(second));
    assert!(status.await.unwrap().success());
}
