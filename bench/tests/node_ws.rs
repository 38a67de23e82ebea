//! Smoke runs of spider-load against the Node.js ws peer (bench/peers/node-ws), started on a free
//! loopback port. They check that the report's counts add up, never how fast anything was.
//!
//! Node.js is required: without it these tests fail (they do not skip), saying what to install.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use spider_load::report::Report;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Bound on one spider-load run (its own phases are a few seconds).
const RUN_LIMIT: Duration = Duration::from_secs(120);

fn peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/node-ws")
}

/// Installs the peer's dependency (ws, pinned by package-lock.json) once per test binary.
fn ensure_node_peer() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let node = Command::new("node").arg("--version").output();
        match node {
            Ok(out) if out.status.success() => {}
            _ => panic!(
                "Node.js is required for the node-ws peer tests: install it \
                 (Debian: apt-get install -y nodejs npm)"
            ),
        }
        if !peer_dir().join("node_modules/ws").is_dir() {
            let status = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(peer_dir())
                .status()
                .expect("npm is required to install the node-ws peer's dependency (apt-get install -y npm)");
            assert!(status.success(), "npm ci in bench/peers/node-ws failed");
        }
    });
}

/// The Node ws peer on a free port, killed when dropped.
struct NodePeer {
    child: Child,
    port: u16,
}

impl NodePeer {
    fn start() -> Self {
        ensure_node_peer();
        let mut child = Command::new("node")
            .arg(peer_dir().join("server.js"))
            .args(["--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting node");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut first = String::new();
            let _ = BufReader::new(stdout).read_line(&mut first);
            let _ = tx.send(first);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("node-ws peer did not start");
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from the peer: {line:?}"));
        Self { child, port }
    }
}

impl Drop for NodePeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs spider-load with `args` against `peer`, returns its report.
fn spider_load(peer: &NodePeer, args: &[&str]) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let addr = format!("127.0.0.1:{}", peer.port);
    let pid = peer.child.id().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_spider-load"))
        .args([
            "--target", "node-ws", "--addr", &addr, "--quiet", "--seed", "42",
        ])
        .args(["--relay-pid", &pid, "--json"])
        .arg(&json)
        .args(args)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let began = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if began.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            panic!("spider-load {args:?} did not finish within {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "spider-load {args:?} failed: {status}");
    serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap()
}

/// What every `direct` report must satisfy, whatever the speed.
fn assert_direct_counts_add_up(r: &Report, pairs: u64) {
    let c = &r.counts;
    assert_eq!(r.scenario, "direct");
    assert_eq!(r.connections.established, pairs * 2, "{r:#?}");
    assert_eq!(r.failures, 0, "{:?}", r.errors);
    assert!(c.adds_up(), "{c:?}");
    assert_eq!(c.sent, c.delivered + c.lost);
    assert_eq!(c.received, c.delivered + c.unexpected);
    assert!(c.delivered > 0, "nothing was delivered: {c:?}");
    // Loopback, no failures and a generous drain: everything sent arrives, once.
    assert_eq!(
        (c.lost, c.unexpected, c.duplicates, c.acked_lost),
        (0, 0, 0, 0),
        "{c:?}"
    );
    assert_eq!(c.acked, c.sent, "the Node relay acks every routed message");
    let latency = r.latency.expect("a latency summary");
    assert_eq!(latency.count, c.delivered, "one latency per delivery");
    assert!(latency.p50_us <= latency.p99_us && latency.p99_us <= latency.p999_us);
    assert!(
        r.relay.is_some(),
        "relay memory was asked for with --relay-pid"
    );
}

#[test]
fn direct_flat_out_report_counts_add_up() {
    let peer = NodePeer::start();
    let r = spider_load(
        &peer,
        &["--duration", "1", "--drain", "10", "direct", "--pairs", "3"],
    );
    assert_direct_counts_add_up(&r, 3);
    assert_eq!(r.params.window, Some(8));
    assert_eq!(r.params.rate, None);
}

#[test]
fn direct_at_a_fixed_rate_over_two_workers_merges_their_counts_and_histograms() {
    let peer = NodePeer::start();
    let r = spider_load(
        &peer,
        &[
            "--duration",
            "1",
            "--drain",
            "10",
            "--workers",
            "2",
            "--source-addrs",
            "3",
            "direct",
            "--pairs",
            "4",
            "--rate",
            "400",
        ],
    );
    assert_direct_counts_add_up(&r, 4);
    // The open-loop schedule is fixed in advance: 400/s for 1 s is 400 envelopes, all sent.
    assert_eq!(r.counts.sent, 400);
    assert_eq!(r.params.workers, 2);
}

#[test]
fn connections_are_held_and_counted() {
    let peer = NodePeer::start();
    let r = spider_load(
        &peer,
        &[
            "--duration",
            "1",
            "--workers",
            "2",
            "connections",
            "--clients",
            "20",
        ],
    );
    assert_eq!(r.scenario, "connections");
    assert_eq!(r.connections.attempted, 20);
    assert_eq!(r.connections.established, 20);
    assert_eq!(r.connections.failed, 0);
    assert_eq!(r.failures, 0, "{:?}", r.errors);
    assert_eq!(r.counts, Default::default());
    let relay = r.relay.expect("relay memory");
    assert!(relay.rss_before_kib > 0 && relay.rss_after_kib > 0);
}
