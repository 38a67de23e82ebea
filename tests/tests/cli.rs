#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The `spider` command line as processes against a relay in this process:
//! `register`, `send`, `recv --json --wait`, rooms, invite links, `room
//! leave`, `profile set`, `contacts`.

mod common;

use std::path::Path;

use common::TestRelay;
use common::cli::{json_lines, ok_as as ok, run_as as run, spider_binary};

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

/// `spider --transport quic --profile DIR ARGS...`, which must succeed;
/// its stdout.
async fn as_quic(bin: &Path, dir: &str, args: &[&str]) -> String {
    let mut all = vec!["--transport", "quic", "--profile", dir];
    all.extend_from_slice(args);
    ok(bin, &all, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_links_leave_profile_names_and_presence_from_the_command_line() {
    let bin = spider_binary();
    let dir = tempfile::tempdir().unwrap();
    let mut relay = TestRelay::start(&dir.path().join("relay"), None).await;
    let quic = relay.quic.to_string();
    let ca = relay.ca_path.to_str().unwrap().to_owned();
    let alice = dir.path().join("alice");
    let bob = dir.path().join("bob");
    let (alice, bob) = (alice.to_str().unwrap(), bob.to_str().unwrap());
    for (p, name) in [(alice, "alice"), (bob, "bob")] {
        #[rustfmt::skip]
        as_quic(&bin, p, &["register", "--server", &quic, "--ca", &ca, "--username", name, "--no-passphrase"]).await;
    }

    // Alice makes a room and a link good for two uses within the hour; bob
    // joins with the link alone.
    as_quic(&bin, alice, &["room", "create", "lobby"]).await;
    #[rustfmt::skip]
    let out = as_quic(&bin, alice, &["room", "link", "lobby", "--expires", "1h", "--uses", "2"]).await;
    let link = out.trim().to_owned();
    assert!(link.starts_with("spider://join/"), "{out}");
    assert_eq!(link.len(), "spider://join/".len() + 32, "{out}");
    as_quic(&bin, bob, &["room", "join", &link]).await;
    let members = as_quic(&bin, bob, &["room", "members", "lobby"]).await;
    assert_eq!(members.lines().count(), 2, "{members}");
    assert!(members.contains("@alice"), "{members}");
    as_quic(&bin, alice, &["send", "#lobby", "hello lobby"]).await;
    let got = json_lines(&as_quic(&bin, bob, &["recv", "--json", "--wait", "1"]).await);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["room"], "lobby");
    assert_eq!(got[0]["text"], "hello lobby");
    assert!(got[0]["display_name"].is_null());

    // Alice names herself; bob's next message from her carries the name.
    as_quic(&bin, alice, &["profile", "set", "--name", "Alice Liddell"]).await;
    as_quic(&bin, alice, &["send", "@bob", "hi bob"]).await;
    let got = json_lines(&as_quic(&bin, bob, &["recv", "--json", "--wait", "1"]).await);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["from"], "alice");
    assert_eq!(got[0]["text"], "hi bob");
    assert_eq!(got[0]["display_name"], "Alice Liddell");

    // Bob leaves: alice's next room message does not reach him.
    as_quic(&bin, bob, &["room", "leave", "lobby"]).await;
    as_quic(&bin, alice, &["send", "#lobby", "after bob left"]).await;
    let got = json_lines(&as_quic(&bin, bob, &["recv", "--json", "--wait", "1"]).await);
    assert!(got.is_empty(), "{got:?}");

    // A revoked link lets nobody in.
    as_quic(&bin, alice, &["room", "revoke", "lobby", &link]).await;
    #[rustfmt::skip]
    let out = run(&bin, &["--transport", "quic", "--profile", bob, "room", "join", &link], None).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("link_invalid"), "{err}");

    // Dave stays online (an SDK client in this process) and writes to bob:
    // they become each other's contacts, and bob sees him online. Alice,
    // whose commands all ended, is offline, and shows her display name.
    let mut dave = common::connect(
        &relay,
        &dir.path().join("dave"),
        "dave",
        spider_client::transport::TransportChoice::Quic,
    )
    .await;
    let bob_name = spider_protocol::name::Username::parse("bob").unwrap();
    let id = dave.client.send_text(bob_name, "dave here").await.unwrap();
    loop {
        if let spider_client::engine::Event::Sent { id: s } = common::next(&mut dave.events).await
            && s == id
        {
            break;
        }
    }
    let got = json_lines(&as_quic(&bin, bob, &["recv", "--json", "--wait", "1"]).await);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["from"], "dave");
    let out = as_quic(&bin, bob, &["contacts"]).await;
    let line = |who: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("@{who}\t")))
            .unwrap_or_else(|| panic!("no {who} in {out}"))
            .to_owned()
    };
    let d = line("dave");
    assert_eq!(d.split('\t').nth(1), Some("online"), "{d}");
    let a = line("alice");
    let presence = a.split('\t').nth(1).unwrap();
    assert!(presence.starts_with("offline, last seen "), "{a}");
    assert!(a.ends_with("\tdisplay name: Alice Liddell"), "{a}");

    dave.client.shutdown().await;
    relay.stop().await;
}
