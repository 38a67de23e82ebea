//! Smoke runs of spider-load against a real spider-relay, started in-process on loopback port 0
//! (as server/tests/common does), over QUIC and over WebSocket. They check that the report's
//! counts add up, never how fast anything was.
//!
//! One pair, window 1, connections set up one at a time: at the time of writing the relay
//! deadlocks inside sled when several registrations or `SendDirect`s are stored at once (its tokio
//! workers wait in sled's transaction write lock while sled's flusher threads, holding the read
//! side, wait for those writes; seen from 5 pairs flat out and 100 concurrent registrations).
//! These tests check spider-load's accounting, not that relay bug.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use spider_load::report::Report;
use spider_relay::config::Config;
use spider_relay::server::RunningRelay;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// Bound on one spider-load run (its own phases are a few seconds).
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// A relay in a temporary directory, with the abuse limits lifted as bench/peers/spider/start.sh
/// does (every client shares 127.0.0.1 and sends flat out).
struct Relay {
    relay: RunningRelay,
    ca: PathBuf,
    _dir: tempfile::TempDir,
}

async fn start_relay() -> Relay {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_tests(dir.path().to_owned());
    config.limits.max_connections_per_ip = 100_000;
    config.limits.requests_per_second = 1_000_000;
    config.limits.request_burst = 1_000_000;
    // Every benchmark client shares one account rate and one address.
    config.limits.account_requests_per_second = 1_000_000;
    config.limits.account_request_burst = 1_000_000;
    config.limits.ip_requests_per_second = 1_000_000;
    config.limits.ip_request_burst = 1_000_000;
    config.limits.mailbox_quota = 1_000_000;
    let relay = spider_relay::server::start(config).await.unwrap();
    let ca = relay.ca_pem.clone().expect("a development CA");
    Relay {
        relay,
        ca,
        _dir: dir,
    }
}

/// Runs spider-load with `args` against `relay` over `target`, returns its report.
async fn spider_load(relay: &Relay, target: &str, args: &[&str]) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let addr = if target == "spider-quic" {
        relay.relay.quic_addr
    } else {
        relay.relay.ws_addr
    };
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_spider-load"))
        .args(["--target", target, "--quiet", "--seed", "42"])
        .arg("--addr")
        .arg(addr.to_string())
        .arg("--ca")
        .arg(&relay.ca)
        .arg("--relay-pid")
        .arg(std::process::id().to_string())
        .arg("--json")
        .arg(&json)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let status = tokio::time::timeout(RUN_LIMIT, child.wait())
        .await
        .unwrap_or_else(|_| panic!("spider-load {args:?} did not finish within {RUN_LIMIT:?}"))
        .unwrap();
    assert!(
        status.success(),
        "spider-load {target} {args:?} failed: {status}"
    );
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
    // Loopback, no failures and a generous drain: everything sent arrives, once, and the relay
    // says `Sent` for each.
    assert_eq!(
        (c.lost, c.unexpected, c.duplicates, c.acked_lost),
        (0, 0, 0, 0),
        "{c:?}"
    );
    assert_eq!(
        c.acked, c.sent,
        "the relay answers every SendDirect with Sent"
    );
    let latency = r.latency.expect("a latency summary");
    assert_eq!(latency.count, c.delivered, "one latency per delivery");
    assert!(latency.p50_us <= latency.p99_us && latency.p99_us <= latency.p999_us);
    assert!(r.relay.is_some(), "relay memory was asked for");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_over_quic_and_websocket_counts_add_up() {
    let relay = start_relay().await;
    for target in ["spider-quic", "spider-ws"] {
        let r = spider_load(
            &relay,
            target,
            &[
                "--duration",
                "1",
                "--drain",
                "10",
                "--connect-concurrency",
                "1",
                "direct",
                "--pairs",
                "1",
                "--window",
                "1",
            ],
        )
        .await;
        assert_eq!(r.target, target);
        assert_direct_counts_add_up(&r, 1);
        assert_eq!(r.params.window, Some(1));

        let r = spider_load(
            &relay,
            target,
            &[
                "--duration",
                "1",
                "--drain",
                "10",
                "--connect-concurrency",
                "1",
                "direct",
                "--pairs",
                "1",
                "--rate",
                "200",
            ],
        )
        .await;
        assert_direct_counts_add_up(&r, 1);
        // The open-loop schedule is fixed in advance: 200/s for 1 s is 200 envelopes, all sent.
        assert_eq!(r.counts.sent, 200);
    }
    tokio::time::timeout(Duration::from_secs(30), relay.relay.shutdown())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_registered_held_and_counted() {
    let relay = start_relay().await;
    for target in ["spider-quic", "spider-ws"] {
        let r = spider_load(
            &relay,
            target,
            &[
                "--duration",
                "1",
                "--connect-concurrency",
                "1",
                "connections",
                "--clients",
                "10",
            ],
        )
        .await;
        assert_eq!(r.scenario, "connections");
        assert_eq!(
            (
                r.connections.attempted,
                r.connections.established,
                r.connections.failed
            ),
            (10, 10, 0),
            "{:?}",
            r.errors
        );
        assert_eq!(r.failures, 0, "{:?}", r.errors);
    }
    tokio::time::timeout(Duration::from_secs(30), relay.relay.shutdown())
        .await
        .unwrap()
        .unwrap();
}
