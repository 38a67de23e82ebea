//! Smoke runs of spider-load against a real spider-relay, started in-process on loopback port 0
//! (as server/tests/common does), over QUIC and over WebSocket, or for `reconnect-storm` as a
//! child process that spider-load starts, stops and starts again itself. They check that the
//! report's counts add up, never how fast anything was.
//!
//! The `direct` runs keep one pair and one connection set-up at a time, as they were written
//! when the relay deadlocked inside sled under concurrent writes (fixed since); the newer runs
//! set up several connections at once.
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
    start_relay_with(|_| {}).await
}

/// A relay as [`start_relay`] makes it, with `adjust` applied to its configuration last.
async fn start_relay_with(adjust: impl FnOnce(&mut Config)) -> Relay {
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
    adjust(&mut config);
    let relay = spider_relay::server::start(config).await.unwrap();
    let ca = relay.ca_pem.clone().expect("a development CA");
    Relay {
        relay,
        ca,
        _dir: dir,
    }
}

/// Runs `run` until `done` holds for its report or 20 s have passed; returns the last report.
async fn retry_until<F, Fut>(mut run: F, done: impl Fn(&Report) -> bool) -> Report
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Report>,
{
    let give_up = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let report = run().await;
        if done(&report) || std::time::Instant::now() >= give_up {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Runs spider-load with `args` against `relay` over `target`, returns its report.
async fn spider_load(relay: &Relay, target: &str, args: &[&str]) -> Report {
    let addr = if target == "spider-quic" {
        relay.relay.quic_addr
    } else {
        relay.relay.ws_addr
    };
    let mut all: Vec<String> = vec![
        "--addr".into(),
        addr.to_string(),
        "--ca".into(),
        relay.ca.to_str().unwrap().into(),
        "--relay-pid".into(),
        std::process::id().to_string(),
    ];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    run_spider_load(target, &all).await
}

/// Runs spider-load against `target` with `args` (and a JSON report), returns the report.
async fn run_spider_load(target: &str, args: &[String]) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_spider-load"))
        .args(["--target", target, "--quiet", "--seed", "42"])
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
    stop(relay).await;
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
    stop(relay).await;
}

/// What every `room` report must satisfy: one delivery owed per message and other member.
fn assert_room_counts_add_up(r: &Report, members: u64, senders: u64) {
    let c = &r.counts;
    let room = r.room.as_ref().expect("a room section");
    assert_eq!(r.scenario, "room");
    assert_eq!(r.failures, 0, "{:?}", r.errors);
    assert_eq!(room.rooms_ready, 1);
    assert_eq!(room.members_joined, members);
    // Each join is stored for every member already in: M(M-1)/2 changes, all seen before posting.
    assert_eq!(room.changes_delivered, members * (members - 1) / 2);
    assert_eq!(room.unsettled_members, 0);
    assert!(room.messages_sent > 0, "nothing was posted: {room:?}");
    // The figure the issue asks for: sent x (members - 1) = delivered + lost.
    assert_eq!(
        room.messages_sent * (members - 1),
        c.delivered + c.lost,
        "{c:?}"
    );
    assert_eq!(c.sent, room.messages_sent * (members - 1));
    assert!(c.adds_up(), "{c:?}");
    assert_eq!(
        (c.lost, c.unexpected, c.duplicates, c.acked_lost, c.refused),
        (0, 0, 0, 0, 0),
        "{c:?}"
    );
    assert_eq!(room.messages_acked, room.messages_sent);
    assert_eq!(room.messages_complete, room.messages_sent);
    let last = r.latency.expect("latency to the last member");
    assert_eq!(last.count, room.messages_sent, "one per message");
    let each = room.delivery_latency.expect("latency of each delivery");
    assert_eq!(each.count, c.delivered);
    // Every message reached all: the slowest delivery is some message's last one.
    assert!(each.max_us <= last.max_us, "{each:?} {last:?}");
    assert_eq!(r.params.senders, Some(senders));
}

/// Two room runs over each transport, with `mode` (`[]` or `["--e2e"]`) first: 2 of 4 members
/// at a fixed rate, then 3 of 3 flat out; every count adds up.
async fn rooms_add_up(mode: &[&str]) {
    let relay = start_relay().await;
    for target in ["spider-quic", "spider-ws"] {
        // Open loop: 2 of 4 members post 40 messages a second in all.
        let mut args = mode.to_vec();
        args.extend([
            "--duration",
            "1",
            "--drain",
            "20",
            "room",
            "--members",
            "4",
            "--senders",
            "2",
            "--rate",
            "40",
        ]);
        let r = spider_load(&relay, target, &args).await;
        assert_eq!(r.params.e2e, !mode.is_empty());
        assert_room_counts_add_up(&r, 4, 2);
        assert_eq!(r.room.as_ref().unwrap().messages_sent, 40);
        // Flat out: every member posts, each keeping one message in flight to its last member.
        let mut args = mode.to_vec();
        args.extend([
            "--duration",
            "1",
            "--drain",
            "20",
            "room",
            "--members",
            "3",
            "--senders",
            "3",
        ]);
        let r = spider_load(&relay, target, &args).await;
        assert_room_counts_add_up(&r, 3, 3);
    }
    stop(relay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_fan_out_owes_one_delivery_per_message_and_other_member() {
    rooms_add_up(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_with_e2e_goes_through_sender_keys_and_counts_add_up() {
    // SDK engines create the room and link, join through it, hand out Sender Keys and post.
    rooms_add_up(&["--e2e"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_with_e2e_goes_through_the_sdk_engine_and_counts_add_up() {
    let relay = start_relay().await;
    for target in ["spider-quic", "spider-ws"] {
        let r = spider_load(
            &relay,
            target,
            &[
                "--e2e",
                "--duration",
                "1",
                "--drain",
                "20",
                "direct",
                "--pairs",
                "1",
                "--window",
                "1",
            ],
        )
        .await;
        assert!(r.params.e2e);
        assert_direct_counts_add_up(&r, 1);
        let r = spider_load(
            &relay,
            target,
            &[
                "--e2e",
                "--duration",
                "1",
                "--drain",
                "20",
                "direct",
                "--pairs",
                "1",
                "--rate",
                "20",
            ],
        )
        .await;
        assert_direct_counts_add_up(&r, 1);
        assert_eq!(r.counts.sent, 20);
    }
    stop(relay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_leave_from_several_loopback_addresses() {
    // Two connections per address: 8 clients fit only if they come from 4 addresses. Each half
    // has a relay of its own: a closed connection frees its per-address slot only once the relay
    // has seen the close, and on a busy machine a QUIC connection of an earlier run was seen
    // holding its slot for over 20 s. (A run is still repeated, for up to 20 s, if it falls
    // short.)
    for target in ["spider-quic", "spider-ws"] {
        let spread = connections_per_address_of_two(target, "4", "8", (8, 0)).await;
        assert_eq!(held(&spread), (8, 0), "{:?}", spread.errors);
        // From one address, only two of four get in.
        let one = connections_per_address_of_two(target, "1", "4", (2, 2)).await;
        assert_eq!(held(&one), (2, 2), "{:?}", one.errors);
        assert!(one.failures >= 2);
    }
}

/// Connections established and failed.
fn held(r: &Report) -> (u64, u64) {
    (r.connections.established, r.connections.failed)
}

/// `connections --clients CLIENTS` from `sources` addresses against a fresh relay that holds two
/// connections per address, repeated (for up to 20 s) until `held` is `want`.
async fn connections_per_address_of_two(
    target: &str,
    sources: &str,
    clients: &str,
    want: (u64, u64),
) -> Report {
    let relay = start_relay_with(|c| c.limits.max_connections_per_ip = 2).await;
    let args = [
        "--duration",
        "1",
        "--source-addrs",
        sources,
        "connections",
        "--clients",
        clients,
    ];
    let report = retry_until(|| spider_load(&relay, target, &args), |r| held(r) == want).await;
    stop(relay).await;
    report
}

async fn stop(relay: Relay) {
    tokio::time::timeout(Duration::from_secs(30), relay.relay.shutdown())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_sends_are_failures_and_the_run_does_not_wait_for_them() {
    // 20 requests a second per connection, bursts of 5: a pair flat out is refused most sends.
    let relay = start_relay_with(|c| {
        c.limits.requests_per_second = 20;
        c.limits.request_burst = 5;
    })
    .await;
    for target in ["spider-quic", "spider-ws"] {
        let began = std::time::Instant::now();
        let r = spider_load(
            &relay,
            target,
            &[
                "--duration",
                "1",
                "--drain",
                "60",
                "direct",
                "--pairs",
                "1",
                "--window",
                "4",
            ],
        )
        .await;
        let c = &r.counts;
        assert!(c.refused > 0, "{c:?}");
        assert!(c.adds_up(), "{c:?}");
        assert_eq!(
            c.acked + c.refused,
            c.sent,
            "every envelope answered one way or the other"
        );
        assert_eq!((c.acked_lost, c.unexpected), (0, 0));
        assert_eq!(c.lost, c.refused, "what was not refused arrived");
        assert!(r.failures >= c.refused);
        assert!(
            r.errors.iter().any(|e| e.contains("RATE_LIMITED")),
            "{:?}",
            r.errors
        );
        // Refusals are answers: the drain ended long before its 60 s.
        assert!(
            began.elapsed() < Duration::from_secs(40),
            "{:?}",
            began.elapsed()
        );
    }
    stop(relay).await;
}

/// `target/debug/spider-relay`, built first (cargo builds only this package's binaries for its
/// tests; the relay's binary belongs to the `spider-relay` package).
fn relay_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = std::process::Command::new(cargo)
        .args(["build", "-q", "-p", "spider-relay", "--bin", "spider-relay"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(status.success(), "building spider-relay failed");
    // This test runs as target/debug/deps/spider-HASH.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    dir.join(format!("spider-relay{}", std::env::consts::EXE_SUFFIX))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_restarted_under_load_loses_nothing_it_acked() {
    let bin = relay_binary();
    // Opaque clients, then SDK engines (`--e2e`) with the SDK's backoff and outbox.
    for (target, e2e) in [
        ("spider-quic", false),
        ("spider-ws", false),
        ("spider-quic", true),
        ("spider-ws", true),
    ] {
        let e2e_flag: &[String] = if e2e { &["--e2e".to_owned()] } else { &[] };
        let args: Vec<String> = e2e_flag
            .iter()
            .cloned()
            .chain([
                "--duration".into(),
                "6".into(),
                "--drain".into(),
                "20".into(),
                "reconnect-storm".into(),
                "--clients".into(),
                "4".into(),
                "--rate".into(),
                "40".into(),
                "--relay-bin".into(),
                bin.to_str().unwrap().into(),
            ])
            .collect();
        let r = run_spider_load(target, &args).await;
        let c = &r.counts;
        assert_eq!(r.params.e2e, e2e);
        assert_eq!(r.scenario, "reconnect-storm");
        assert_eq!(r.connections.established, 4, "{:?}", r.errors);
        assert_eq!(c.sent, 240, "the schedule is fixed: 40/s for 6 s");
        assert!(c.adds_up(), "{c:?}");
        // Durable before `Sent`: nothing acked is lost, through a drain and through a crash.
        assert_eq!((c.acked_lost, c.lost, c.unexpected), (0, 0, 0), "{c:?}");
        assert_eq!(c.acked, c.sent);
        let storm = r.storm.as_ref().expect("a storm section");
        let signals: Vec<&str> = storm.outages.iter().map(|o| o.signal.name()).collect();
        assert_eq!(signals, ["term", "kill"]);
        for o in &storm.outages {
            assert!(o.error.is_none(), "{o:?}");
            assert_eq!((o.clients, o.back), (4, 4), "{o:?}");
            assert!(
                o.all_back_secs.is_some() && o.restart_secs.is_some(),
                "{o:?}"
            );
        }
        assert!(storm.reconnects >= 8, "{storm:?}");
        assert_eq!(r.failures, 0, "{:?}", r.errors);
    }
}
