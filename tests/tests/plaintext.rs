#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The relay never holds plaintext (SECURITY.md, "What the relay stores and
//! sees"): a marker sent between real SDK clients, 1:1 (online, and offline
//! through the mailbox) and in a room, appears nowhere in the relay's data
//! directory (sled's files read as raw bytes, certificates, blobs) nor in
//! its log at trace level, raw or as hex or base64. The marker also travels
//! as a display name (encrypted profile) and inside a file and its name
//! (an encrypted blob).
//!
//! The relay runs as its own process (`spider-relay serve`, `RUST_LOG=trace`,
//! stderr into a file), so that its log holds only what the relay logs, and
//! is stopped with SIGTERM (drain, flush) before the scan. Controls show the
//! scan can see what it looks for: it finds the marker in files planted in
//! the data directory (raw, hex, base64 at an odd offset), a username in
//! sled's files, and trace lines in the log.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use common::{PATIENCE, TestClient, TestRelay, connect, next, send_and_wait, texts};
use spider_client::attachments::{Attachment, AttachmentEvent};
use spider_client::content::Body;
use spider_client::engine::Event;
use spider_client::transport::TransportChoice;
use spider_protocol::ids::RoomId;
use spider_protocol::name::RoomName;

/// The relay process; killed if the test fails before it is stopped.
struct RelayProcess(Child);

impl Drop for RelayProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl RelayProcess {
    /// SIGTERM: the relay drains, flushes its store and exits 0.
    fn stop(mut self) {
        let pid = self.0.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        for _ in 0..600 {
            if let Some(status) = self.0.try_wait().unwrap() {
                assert!(status.success(), "relay exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("relay did not exit after SIGTERM");
    }
}

/// Starts `spider-relay serve` on `data`, logging at trace level into `log`.
fn spawn_relay(data: &Path, log: &Path) -> (RelayProcess, TestRelay) {
    let mut child = Command::new(common::built_binary("spider-relay", "spider-relay"))
        .args(["serve", "--no-metrics", "--data"])
        .arg(data)
        .args(["--quic", "127.0.0.1:0", "--ws", "127.0.0.1:0"])
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let process = RelayProcess(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let listening = rx.recv_timeout(PATIENCE).expect("relay printed nothing");
    let addr = |key: &str| {
        listening
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {listening:?}"))
            .parse()
            .unwrap()
    };
    let ca_path = data.join("certs/ca.pem");
    let relay = TestRelay {
        relay: None,
        data: data.to_owned(),
        quic: addr("quic="),
        ws: addr("ws="),
        ca_pem: std::fs::read(&ca_path).unwrap(),
        ca_path,
        name: "localhost".to_owned(),
    };
    (process, relay)
}

/// The forms of `marker` to look for: the bytes, hex (both cases), and
/// base64 (standard and URL-safe) at each of the three alignments a
/// surrounding encoding could give it: the characters that depend on the
/// marker's bytes alone.
fn forms(marker: &[u8]) -> Vec<(String, String)> {
    let text = std::str::from_utf8(marker).unwrap();
    let mut v = vec![
        ("raw".to_owned(), text.to_owned()),
        ("hex".to_owned(), hex::encode(marker)),
        ("HEX".to_owned(), hex::encode_upper(marker)),
    ];
    let engines = [
        ("base64", base64::engine::general_purpose::STANDARD),
        ("base64url", base64::engine::general_purpose::URL_SAFE),
    ];
    for (name, engine) in engines {
        for k in 0..3 {
            let mut b = vec![0u8; k];
            b.extend_from_slice(marker);
            let s = engine.encode(&b);
            // Characters wholly inside the marker: from ceil(4k/3) to
            // floor(4(k+n)/3).
            let (start, end) = ((4 * k).div_ceil(3), 4 * (k + marker.len()) / 3);
            v.push((format!("{name}+{k}"), s[start..end].to_owned()));
        }
    }
    v
}

/// Every file under `dir`.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// (file, form) for every form of the marker found in these files. Every
/// form is ASCII, so searching the lossy UTF-8 view of the raw bytes finds
/// exactly the byte matches: invalid sequences become U+FFFD, ASCII bytes
/// stay as they are.
fn scan(paths: &[PathBuf], forms: &[(String, String)]) -> Vec<(PathBuf, String)> {
    let mut hits = Vec::new();
    for p in paths {
        let bytes = std::fs::read(p).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for (name, form) in forms {
            if text.contains(form.as_str()) {
                hits.push((p.clone(), name.clone()));
            }
        }
    }
    hits
}

/// Waits for the next [`Event::RoomChanged`]; returns its room.
async fn room_changed(c: &mut TestClient) -> RoomId {
    loop {
        match next(&mut c.events).await {
            Event::RoomChanged { room } => return room,
            Event::Error(e) => eprintln!("{}: {e}", c.username),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marker_sent_through_the_relay_is_nowhere_in_its_data_or_logs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay-data");
    let log = dir.path().join("relay.log");
    let (process, relay) = spawn_relay(&data, &log);
    let marker = format!("plaintext-canary-{}", hex::encode(rand_bytes()));
    let t = TransportChoice::Quic;
    let mut alice = connect(&relay, &dir.path().join("alice"), "plainalice", t).await;
    let bob_dir = dir.path().join("bob");
    let ws = TransportChoice::WebSocket;
    let mut bob = connect(&relay, &bob_dir, "plainbob", ws).await;

    // 1:1, bob online; alice knows him by name only.
    let direct = format!("direct {marker}");
    alice
        .client
        .send_text(bob.username.clone(), &direct)
        .await
        .unwrap();
    assert_eq!(texts(&mut bob, 1).await[0].1, direct);

    // 1:1, bob offline: through the mailbox, delivered on his return.
    bob.client.shutdown().await;
    let offline = format!("offline {marker}");
    send_and_wait(&mut alice, bob.me, &offline).await;
    let mut bob = connect(&relay, &bob_dir, "plainbob", ws).await;
    assert_eq!(texts(&mut bob, 1).await[0].1, offline);

    // A room: alice creates it, invites bob, he joins, she writes.
    let room_name = RoomName::parse("canaryroom").unwrap();
    alice.client.create_room(room_name).await.unwrap();
    let room = room_changed(&mut alice).await;
    alice.client.invite(room, bob.me).await.unwrap();
    assert_eq!(room_changed(&mut alice).await, room);
    // The Invite change, then the room's details the SDK asks for.
    assert_eq!(room_changed(&mut bob).await, room);
    assert_eq!(room_changed(&mut bob).await, room);
    bob.client.accept_invite(room).await.unwrap();
    assert_eq!(room_changed(&mut bob).await, room);
    let in_room = format!("room {marker}");
    let id = alice.client.send_room_text(room, &in_room).await.unwrap();
    loop {
        match next(&mut alice.events).await {
            Event::Sent { id: s } if s == id => break,
            Event::Error(e) => eprintln!("alice: {e}"),
            _ => {}
        }
    }
    let (r, body) = loop {
        match next(&mut bob.events).await {
            Event::MessageReceived {
                room: r, content, ..
            } => {
                if let Body::Text { body } = content.body {
                    break (r, body);
                }
            }
            Event::Error(e) => eprintln!("bob: {e}"),
            _ => {}
        }
    };
    assert_eq!((r, body), (Some(room), in_room));

    // A display name: an encrypted profile on the relay, its key sent to
    // bob inside a 1:1 message.
    let display = format!("name {marker}");
    alice
        .client
        .set_display_name(display.clone())
        .await
        .unwrap();
    loop {
        match next(&mut bob.events).await {
            Event::ProfileFetched {
                display_name: Some(d),
                ..
            } if d == display => break,
            Event::Error(e) => eprintln!("bob: {e}"),
            _ => {}
        }
    }

    // A file whose name and every line carry the marker: a blob on the
    // relay's disk, its key in the message.
    let file_name = format!("{marker}.txt");
    let file_data = format!("{marker}\n").repeat(2000).into_bytes();
    let file_path = dir.path().join(&file_name);
    std::fs::write(&file_path, &file_data).unwrap();
    let sent = alice
        .client
        .send_file(bob.username.clone(), &file_path)
        .await
        .unwrap();
    let attachment = loop {
        match next(&mut bob.events).await {
            Event::MessageReceived { id, content, .. } if id == sent => {
                break Attachment::from_body(&content.body).expect("a file message");
            }
            Event::Error(e) => eprintln!("bob: {e}"),
            _ => {}
        }
    };
    let downloads = dir.path().join("bob-files");
    bob.client
        .download(sent, attachment, &downloads)
        .await
        .unwrap();
    let saved = loop {
        match next(&mut bob.events).await {
            Event::Attachment(AttachmentEvent::Saved { id, path }) if id == sent => break path,
            Event::Attachment(AttachmentEvent::Failed { id, error, .. }) if id == sent => {
                panic!("download failed: {error}")
            }
            Event::Error(e) => eprintln!("bob: {e}"),
            _ => {}
        }
    };
    assert_eq!(std::fs::read(&saved).unwrap(), file_data);

    // One more left waiting in bob's mailbox when the relay stops.
    bob.client.shutdown().await;
    send_and_wait(&mut alice, bob.me, &format!("queued {marker}")).await;
    alice.client.shutdown().await;
    tokio::task::spawn_blocking(move || process.stop())
        .await
        .unwrap();

    // Controls: the scan sees stored data and the log has trace lines.
    let mut stored = Vec::new();
    files(&data, &mut stored);
    let names = [("name".to_owned(), "plainalice".to_owned())];
    assert!(
        scan(&stored, &names)
            .iter()
            .any(|(p, _)| p.starts_with(data.join("store"))),
        "the scan does not reach sled's files: {stored:?}"
    );
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(log_text.contains("signed in"), "{} bytes", log_text.len());
    assert!(log_text.contains("TRACE"), "not a trace-level log");

    // Planted copies are found, each in its form.
    let forms = forms(marker.as_bytes());
    let planted = data.join("planted");
    std::fs::create_dir(&planted).unwrap();
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let plants: [(&str, Vec<u8>, &str); 3] = [
        (
            "raw.bin",
            [&[0xff, 0x00][..], marker.as_bytes(), &[0xfe]].concat(),
            "raw",
        ),
        (
            "hex.txt",
            format!("x{}y", hex::encode(marker.as_bytes())).into_bytes(),
            "hex",
        ),
        (
            "base64.txt",
            b64(&[b"?", marker.as_bytes(), b"!!"].concat()).into_bytes(),
            "base64+1",
        ),
    ];
    for (name, bytes, _) in &plants {
        std::fs::write(planted.join(name), bytes).unwrap();
    }
    let mut everything = vec![log.clone()];
    files(&data, &mut everything);
    let hits = scan(&everything, &forms);
    for (name, _, form) in &plants {
        let want = (planted.join(name), (*form).to_owned());
        assert!(hits.contains(&want), "{want:?} not found: {hits:?}");
    }
    // Only the planted copies: nothing the relay wrote has the marker.
    let mut hit_files: Vec<&PathBuf> = hits.iter().map(|(p, _)| p).collect();
    hit_files.dedup();
    assert!(
        hit_files.iter().all(|p| p.starts_with(&planted)),
        "marker found where the relay writes: {hits:?} (of {} files)",
        everything.len()
    );
}

/// Eight bytes that differ from run to run (std's randomly keyed hasher).
fn rand_bytes() -> [u8; 8] {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        .to_be_bytes()
}
