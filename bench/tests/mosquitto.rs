//! A smoke run of spider-load against Mosquitto (MQTT over WebSocket, QoS 1, persistence on),
//! started by bench/peers/mosquitto/start.sh on free loopback ports.
//!
//! Needs the mosquitto Debian package: scripts/install-test-deps (run by scripts/test) and
//! start.sh install it when missing, as root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use spider_load::report::Report;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/mosquitto")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Mosquitto in its own state directory, stopped when dropped.
struct Mosquitto {
    state: tempfile::TempDir,
    port: u16,
    pid: String,
}

impl Mosquitto {
    fn start() -> Self {
        let state = tempfile::tempdir().unwrap();
        let (port, tcp_port) = (free_port(), free_port());
        let out = Command::new(peer_dir().join("start.sh"))
            .arg(port.to_string())
            .env("MOSQUITTO_STATE", state.path())
            .env("MOSQUITTO_TCP_PORT", tcp_port.to_string())
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "bench/peers/mosquitto/start.sh failed"
        );
        let pid = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        Self { state, port, pid }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = Command::new(peer_dir().join("stop.sh"))
            .env("MOSQUITTO_STATE", self.state.path())
            .status();
    }
}

#[test]
fn direct_against_mosquitto_counts_add_up() {
    let broker = Mosquitto::start();
    let json = broker.state.path().join("report.json");
    let status = Command::new(env!("CARGO_BIN_EXE_spider-load"))
        .args([
            "--target",
            "mosquitto",
            "--quiet",
            "--duration",
            "1",
            "--drain",
            "10",
        ])
        .args([
            "--addr",
            &format!("127.0.0.1:{}", broker.port),
            "--relay-pid",
            &broker.pid,
        ])
        .arg("--json")
        .arg(&json)
        .args(["direct", "--pairs", "3", "--rate", "300"])
        .status()
        .unwrap();
    assert!(status.success());
    let r: Report = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let c = r.counts;
    assert_eq!(r.connections.established, 6);
    assert_eq!(r.failures, 0, "{:?}", r.errors);
    assert!(c.adds_up(), "{c:?}");
    assert_eq!(c.sent, 300);
    assert_eq!(
        (c.delivered, c.lost, c.unexpected, c.duplicates),
        (300, 0, 0, 0),
        "{c:?}"
    );
    assert_eq!(
        (c.acked, c.acked_lost),
        (300, 0),
        "every QoS 1 publish gets its PUBACK"
    );
    assert_eq!(r.latency.unwrap().count, 300);
}
