#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `spider send-file` and `spider recv --json` as processes against a relay
//! in this process: a file to a person and one to a room, saved decrypted
//! into the recipient's profile, described by `recv --json`.

mod common;

use common::TestRelay;
use common::cli::{json_lines, ok, run, spider_binary};

fn contents(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_file_then_recv_json_saves_the_files_and_describes_them() {
    let bin = spider_binary();
    let dir = tempfile::tempdir().unwrap();
    let mut relay = TestRelay::start(&dir.path().join("relay"), None).await;
    let quic = relay.quic.to_string();
    let ws = relay.ws.to_string();
    let ca = relay.ca_path.to_str().unwrap().to_owned();
    let alice = dir.path().join("alice");
    let bob = dir.path().join("bob");
    let (alice, bob) = (alice.to_str().unwrap(), bob.to_str().unwrap());
    #[rustfmt::skip]
    ok(&bin, &["--transport", "quic", "--profile", alice, "register", "--server", &quic, "--ca", &ca, "--username", "alice", "--no-passphrase"]).await;
    #[rustfmt::skip]
    ok(&bin, &["--transport", "ws", "--profile", bob, "register", "--server", &ws, "--ca", &ca, "--username", "bob", "--no-passphrase"]).await;

    let photo = contents(700_000, 3);
    let photo_path = dir.path().join("photo.png");
    std::fs::write(&photo_path, &photo).unwrap();
    let notes = b"minutes of the meeting\n".repeat(100);
    let notes_path = dir.path().join("notes.txt");
    std::fs::write(&notes_path, &notes).unwrap();

    // A file to bob (QUIC upload), a text, then a room and a file to it.
    #[rustfmt::skip]
    let out = run(&bin, &["--transport", "quic", "--profile", alice, "send-file", "@bob", photo_path.to_str().unwrap()]).await;
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sent ") && stderr.contains("700000 bytes"),
        "{stderr}"
    );
    ok(
        &bin,
        &[
            "--transport",
            "quic",
            "--profile",
            alice,
            "send",
            "@bob",
            "did you get it?",
        ],
    )
    .await;
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
    )
    .await;
    ok(
        &bin,
        &[
            "--transport",
            "quic",
            "--profile",
            alice,
            "room",
            "invite",
            "ops",
            "@bob",
        ],
    )
    .await;
    ok(
        &bin,
        &["--transport", "ws", "--profile", bob, "room", "join", "ops"],
    )
    .await;
    #[rustfmt::skip]
    ok(&bin, &["--transport", "quic", "--profile", alice, "send-file", "#ops", notes_path.to_str().unwrap()]).await;
    // A file that is not there: refused, nothing sent.
    #[rustfmt::skip]
    let missing = run(&bin, &["--transport", "quic", "--profile", alice, "send-file", "@bob", dir.path().join("nope.bin").to_str().unwrap()]).await;
    assert!(!missing.status.success());

    // Bob's recv (WebSocket) downloads both files before printing them.
    #[rustfmt::skip]
    let out = ok(&bin, &["--transport", "ws", "--profile", bob, "recv", "--json", "--wait", "2"]).await;
    let got = json_lines(&out);
    assert_eq!(got.len(), 3, "{out}");
    let fields = [
        "id",
        "from",
        "from_id",
        "room",
        "text",
        "attachment",
        "sent_at",
        "display_name",
    ];
    for m in &got {
        let keys: Vec<&str> = m.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), fields.len(), "{m}");
        assert!(fields.iter().all(|f| keys.contains(f)), "{m}");
        assert_eq!(m["from"], "alice");
        assert_eq!(m["id"].as_str().unwrap().len(), 32);
        assert!(m["sent_at"].as_u64().unwrap() > 0);
    }
    let (file, text, room_file) = (&got[0], &got[1], &got[2]);
    assert!(file["room"].is_null() && file["text"].is_null());
    assert_eq!(text["text"], "did you get it?");
    assert!(text["attachment"].is_null());
    assert_eq!(room_file["room"], "ops");
    for (m, name, media_type, data) in [
        (file, "photo.png", "image/png", &photo),
        (room_file, "notes.txt", "text/plain", &notes),
    ] {
        let a = &m["attachment"];
        assert_eq!(a["name"], name);
        assert_eq!(a["media_type"], media_type);
        assert_eq!(a["size"].as_u64().unwrap(), data.len() as u64);
        let path = std::path::PathBuf::from(a["path"].as_str().unwrap());
        assert!(
            path.starts_with(std::fs::canonicalize(bob).unwrap().join("files")),
            "{path:?}"
        );
        assert!(std::fs::read(&path).unwrap() == *data, "{name} differs");
    }

    // Printed once: a second recv has nothing.
    #[rustfmt::skip]
    let out = ok(&bin, &["--transport", "ws", "--profile", bob, "recv", "--json", "--wait", "1"]).await;
    assert!(json_lines(&out).is_empty(), "{out}");
    relay.stop().await;
}
