#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The `spider` command line as processes against a relay in this process:
//! `register`, `send`, `recv --json --wait`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::TestRelay;
use tokio::process::Command;

/// `target/debug/spider` (the `spider` package's binary), built first.
fn spider_binary() -> PathBuf {
    common::built_binary("spider", "spider")
}

async fn run(bin: &Path, args: &[&str], passphrase: Option<&str>) -> Output {
    let mut c = Command::new(bin);
    c.args(args)
        .kill_on_drop(true)
        .env_remove("SPIDER_PASSPHRASE");
    if let Some(p) = passphrase {
        c.env("SPIDER_PASSPHRASE", p);
    }
    let out = tokio::time::timeout(Duration::from_secs(120), c.output())
        .await
        .expect("spider did not finish")
        .unwrap();
    eprintln!(
        "$ spider {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

async fn ok(bin: &Path, args: &[&str], passphrase: Option<&str>) -> String {
    let out = run(bin, args, passphrase).await;
    assert!(out.status.success(), "spider {args:?} failed");
    String::from_utf8(out.stdout).unwrap()
}

fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_send_recv_json_between_two_profiles() {
    let bin = spider_binary();
    let dir = tempfile::tempdir().unwrap();
    let mut relay = TestRelay::start(&dir.path().join("relay"), None).await;
    let quic = relay.quic.to_string();
    let ws = relay.ws.to_string();
    let ca = relay.ca_path.to_str().unwrap().to_owned();
    let alice = dir.path().join("alice");
    let bob = dir.path().join("bob");
    let (alice, bob) = (alice.to_str().unwrap(), bob.to_str().unwrap());

    // Alice over QUIC without a passphrase; bob over WebSocket with one.
    let pass = Some("correct horse battery staple");
    #[rustfmt::skip]
    ok(&bin, &["--transport", "quic", "--profile", alice, "register", "--server", &quic, "--ca", &ca, "--username", "alice", "--no-passphrase"], None).await;
    #[rustfmt::skip]
    ok(&bin, &["--transport", "ws", "--profile", bob, "register", "--server", &ws, "--ca", &ca, "--username", "bob"], pass).await;
    // The same name again is refused, and leaves no profile behind.
    let carol = dir.path().join("carol");
    #[rustfmt::skip]
    let again = run(&bin, &["--transport", "quic", "--profile", carol.to_str().unwrap(), "register", "--server", &quic, "--ca", &ca, "--username", "alice", "--no-passphrase"], None).await;
    assert!(!again.status.success());
    assert!(!carol.exists());

    ok(
        &bin,
        &[
            "--transport",
            "quic",
            "--profile",
            alice,
            "send",
            "@bob",
            "hello",
            "bob",
        ],
        None,
    )
    .await;
    ok(
        &bin,
        &[
            "--transport",
            "quic",
            "--profile",
            alice,
            "send",
            "@bob",
            "second",
        ],
        None,
    )
    .await;

    let out = ok(
        &bin,
        &[
            "--transport",
            "ws",
            "--profile",
            bob,
            "recv",
            "--json",
            "--wait",
            "2",
        ],
        pass,
    )
    .await;
    let got = json_lines(&out);
    assert_eq!(got.len(), 2, "{out}");
    for (m, text) in got.iter().zip(["hello bob", "second"]) {
        assert_eq!(m["from"], "alice");
        assert_eq!(m["text"], text);
        assert!(m["room"].is_null());
        assert!(m["attachment"].is_null());
        assert!(m["sent_at"].as_u64().unwrap() > 0);
        assert_eq!(m["id"].as_str().unwrap().len(), 32);
    }
    // Printed once: a second recv has nothing.
    let out = ok(
        &bin,
        &[
            "--transport",
            "ws",
            "--profile",
            bob,
            "recv",
            "--json",
            "--wait",
            "1",
        ],
        pass,
    )
    .await;
    assert!(json_lines(&out).is_empty(), "{out}");

    // Bob answers; alice's send ran while the answer could arrive, and recv
    // still prints it (from history).
    ok(
        &bin,
        &[
            "--transport",
            "ws",
            "--profile",
            bob,
            "send",
            "@alice",
            "hi alice",
        ],
        pass,
    )
    .await;
    ok(
        &bin,
        &[
            "--transport",
            "quic",
            "--profile",
            alice,
            "send",
            "@bob",
            "third",
        ],
        None,
    )
    .await;
    let out = ok(
        &bin,
        &[
            "--transport",
            "quic",
            "--profile",
            alice,
            "recv",
            "--json",
            "--wait",
            "2",
        ],
        None,
    )
    .await;
    let got = json_lines(&out);
    assert_eq!(got.len(), 1, "{out}");
    assert_eq!(got[0]["from"], "bob");
    assert_eq!(got[0]["text"], "hi alice");

    // Safety numbers: known after the exchange, the same on both sides.
    let a = ok(&bin, &["--profile", alice, "safety", "@bob"], None).await;
    let b = ok(&bin, &["--profile", bob, "safety", "@alice"], pass).await;
    let digits = |s: &str| -> String {
        s.lines()
            .next()
            .unwrap()
            .split(": ")
            .nth(1)
            .unwrap()
            .to_owned()
    };
    assert_eq!(digits(&a), digits(&b));

    // Rooms: create, invite a contact and a stranger (looked up by name),
    // join (bob without a recv first, carol after one), a room message.
    #[rustfmt::skip]
    ok(&bin, &["--transport", "quic", "--profile", carol.to_str().unwrap(), "register", "--server", &quic, "--ca", &ca, "--username", "carol", "--no-passphrase"], None).await;
    let carol = carol.to_str().unwrap();
    ok(
        &bin,
        &[
            "--transport",
            "quic",
            "--profile",
            alice,
            "room",
            "create",
            "ops",
        ],
        None,
    )
    .await;
    #[rustfmt::skip]
    ok(&bin, &["--transport", "quic", "--profile", alice, "room", "invite", "ops", "@bob"], None).await;
    #[rustfmt::skip]
    ok(&bin, &["--transport", "quic", "--profile", alice, "room", "invite", "ops", "@carol"], None).await;
    ok(
        &bin,
        &["--transport", "ws", "--profile", bob, "room", "join", "ops"],
        pass,
    )
    .await;
    #[rustfmt::skip]
    ok(&bin, &["--transport", "quic", "--profile", carol, "recv", "--json", "--wait", "1"], None).await;
    ok(
        &bin,
        &[
            "--transport",
            "quic",
            "--profile",
            carol,
            "room",
            "join",
            "ops",
        ],
        None,
    )
    .await;
    let members = ok(&bin, &["--profile", carol, "room", "members", "ops"], None).await;
    assert_eq!(members.lines().count(), 3, "{members}");
    assert!(members.contains("@carol"), "{members}");
    #[rustfmt::skip]
    ok(&bin, &["--transport", "quic", "--profile", alice, "send", "#ops", "hello room"], None).await;
    #[rustfmt::skip]
    let out = ok(&bin, &["--transport", "ws", "--profile", bob, "recv", "--json", "--wait", "2"], pass).await;
    // Alice's earlier "third" (1:1) comes along; one room message.
    let got: Vec<_> = json_lines(&out)
        .into_iter()
        .filter(|m| !m["room"].is_null())
        .collect();
    assert_eq!(got.len(), 1, "{out}");
    assert_eq!(got[0]["from"], "alice");
    assert_eq!(got[0]["room"], "ops");
    assert_eq!(got[0]["text"], "hello room");
    #[rustfmt::skip]
    let out = ok(&bin, &["--transport", "quic", "--profile", carol, "recv", "--json", "--wait", "2"], None).await;
    let got = json_lines(&out);
    assert_eq!(got.len(), 1, "{out}");
    assert_eq!(got[0]["room"], "ops");
    assert_eq!(got[0]["text"], "hello room");

    // Carol is removed: the next room message reaches bob, not her.
    #[rustfmt::skip]
    ok(&bin, &["--transport", "quic", "--profile", alice, "room", "kick", "ops", "@carol"], None).await;
    #[rustfmt::skip]
    ok(&bin, &["--transport", "quic", "--profile", alice, "send", "#ops", "after the kick"], None).await;
    #[rustfmt::skip]
    let out = ok(&bin, &["--transport", "ws", "--profile", bob, "recv", "--json", "--wait", "2"], pass).await;
    let got = json_lines(&out);
    assert_eq!(got.len(), 1, "{out}");
    assert_eq!(got[0]["room"], "ops");
    assert_eq!(got[0]["text"], "after the kick");
    #[rustfmt::skip]
    let out = ok(&bin, &["--transport", "quic", "--profile", carol, "recv", "--json", "--wait", "2"], None).await;
    assert!(json_lines(&out).is_empty(), "{out}");

    relay.stop().await;
}
