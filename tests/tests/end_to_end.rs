#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The end-to-end test: a relay and three SDK clients (two on QUIC,
//! one on WebSocket) exchange 1:1 messages, room messages and attachments,
//! with one client offline during the sends and a relay restart in between.
//! Every message arrives exactly once, in order per sender, and every file
//! byte for byte.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::{TestClient, TestRelay, connect, next};
use spider_client::attachments::{Attachment, AttachmentEvent, files_dir};
use spider_client::content::Body;
use spider_client::engine::Event;
use spider_client::transport::TransportChoice;
use spider_protocol::ids::{MessageId, RoomId, UserId};
use spider_protocol::name::RoomName;

/// A client, its profile directory, and what it received so far: sender
/// and label (the text, or `file:NAME`) in arrival order.
struct Peer {
    c: TestClient,
    dir: PathBuf,
    inbox: Vec<(UserId, String)>,
    files: HashMap<String, (MessageId, Attachment)>,
}

impl Peer {
    async fn start(relay: &TestRelay, dir: PathBuf, name: &str, t: TransportChoice) -> Self {
        Self {
            c: connect(relay, &dir, name, t).await,
            dir,
            inbox: Vec::new(),
            files: HashMap::new(),
        }
    }

    /// The next event; messages also go to the inbox.
    async fn ev(&mut self) -> Event {
        let e = next(&mut self.c.events).await;
        match &e {
            Event::MessageReceived {
                id, from, content, ..
            } => match &content.body {
                Body::Text { body } => self.inbox.push((from.user, body.clone())),
                body => {
                    if let Some(a) = Attachment::from_body(body) {
                        let label = format!("file:{}", a.file_name);
                        self.inbox.push((from.user, label.clone()));
                        self.files.insert(label, (*id, a));
                    }
                }
            },
            Event::Error(err) => eprintln!("{}: {err}", self.c.username),
            _ => {}
        }
        e
    }

    /// Waits until `label` from `from` is in the inbox.
    async fn until(&mut self, from: UserId, label: &str) {
        while !self.inbox.iter().any(|(u, l)| *u == from && l == label) {
            self.ev().await;
        }
    }

    /// The labels `from` sent, in arrival order.
    fn from(&self, from: UserId) -> Vec<&str> {
        self.inbox
            .iter()
            .filter(|(u, _)| *u == from)
            .map(|(_, l)| l.as_str())
            .collect()
    }

    async fn sent(&mut self, id: MessageId) {
        loop {
            match self.ev().await {
                Event::Sent { id: s } if s == id => return,
                Event::Attachment(AttachmentEvent::Failed { id: f, error, .. }) if f == id => {
                    panic!("{}: {error}", self.c.username)
                }
                _ => {}
            }
        }
    }

    async fn text(&mut self, to: UserId, text: &str) {
        let id = self.c.client.send_text(to, text).await.unwrap();
        self.sent(id).await;
    }

    async fn room_text(&mut self, room: RoomId, text: &str) {
        let id = self.c.client.send_room_text(room, text).await.unwrap();
        self.sent(id).await;
    }

    /// Downloads the file labelled `label`; returns its bytes.
    async fn fetch(&mut self, label: &str) -> Vec<u8> {
        let (id, a) = self.files.get(label).cloned().unwrap();
        self.c
            .client
            .download(id, a, files_dir(&self.dir))
            .await
            .unwrap();
        loop {
            match self.ev().await {
                Event::Attachment(AttachmentEvent::Saved { id: s, path }) if s == id => {
                    assert!(path.starts_with(files_dir(&self.dir)));
                    return std::fs::read(path).unwrap();
                }
                Event::Attachment(AttachmentEvent::Failed { id: f, error, .. }) if f == id => {
                    panic!("{}: download failed: {error}", self.c.username)
                }
                _ => {}
            }
        }
    }

    async fn room_changed(&mut self) -> RoomId {
        loop {
            if let Event::RoomChanged { room } = self.ev().await {
                return room;
            }
        }
    }

    async fn look_up(&mut self, other: &Peer) -> UserId {
        let name = other.c.username.clone();
        self.c.client.lookup_user(name.clone()).await.unwrap();
        loop {
            if let Event::ContactUpdated { user, username } = self.ev().await
                && username == name
            {
                return user;
            }
        }
    }

    /// Accepts the invitation to `room` (the invite, then the room's
    /// details, then our acceptance are each a room change).
    async fn join(&mut self, room: RoomId) {
        assert_eq!(self.room_changed().await, room);
        assert_eq!(self.room_changed().await, room);
        self.c.client.accept_invite(room).await.unwrap();
        assert_eq!(self.room_changed().await, room);
    }
}

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

fn write_file(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_clients_one_offline_and_a_relay_restart_every_message_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = TestRelay::start(&dir.path().join("relay"), None).await;
    let quic = TransportChoice::Quic;
    let mut alice = Peer::start(&relay, dir.path().join("alice"), "alice", quic).await;
    let mut bob = Peer::start(
        &relay,
        dir.path().join("bob"),
        "bob",
        TransportChoice::WebSocket,
    )
    .await;
    let mut carol = Peer::start(&relay, dir.path().join("carol"), "carol", quic).await;
    let (a, b, c) = (alice.c.me, bob.c.me, carol.c.me);

    // A room of the three.
    alice
        .c
        .client
        .create_room(RoomName::parse("crew").unwrap())
        .await
        .unwrap();
    let room = alice.room_changed().await;
    for who in [&mut bob, &mut carol] {
        let user = alice.look_up(who).await;
        alice.c.client.invite(room, user).await.unwrap();
        assert_eq!(alice.room_changed().await, room);
        who.join(room).await;
    }
    // Everyone knows everyone's name before carol leaves.
    let carol_id = bob.look_up(&carol).await;
    assert_eq!(carol_id, c);
    bob.look_up(&alice).await;

    // Carol goes offline; the others write to her, to each other and to
    // the room, and alice sends the room a file.
    let Peer {
        c: carol_client, ..
    } = carol;
    carol_client.client.shutdown().await;
    let carol_dir = dir.path().join("carol");

    alice.text(c, "a>c 0").await;
    bob.text(c, "b>c 0").await;
    alice.room_text(room, "a room 0").await;
    bob.room_text(room, "b room 0").await;
    alice.text(b, "a>b 0").await;
    bob.text(a, "b>a 0").await;
    alice.text(c, "a>c 1").await;
    let photo = contents(1024 * 1024 + 999, 7);
    let path = write_file(&dir.path().join("out"), "team.jpg", &photo);
    let id = alice.c.client.send_room_file(room, &path).await.unwrap();
    alice.sent(id).await;

    // The relay stops and comes back on the same data and ports; the
    // clients reconnect by themselves.
    relay.restart().await;

    bob.text(c, "b>c 1").await;
    alice.room_text(room, "a room 1").await;
    let notes = contents(200_000, 11);
    let path = write_file(&dir.path().join("out"), "notes.txt", &notes);
    let id = bob.c.client.send_file(c, &path).await.unwrap();
    bob.sent(id).await;
    bob.room_text(room, "b room 1").await;
    alice.text(b, "a>b 1").await;
    bob.text(a, "b>a 1").await;
    // Markers after everything: a duplicate would arrive before them.
    alice.text(c, "a end").await;
    bob.text(c, "b end").await;
    alice.room_text(room, "a room end").await;
    bob.room_text(room, "b room end").await;

    // Carol comes back and gets it all.
    let mut carol = Peer::start(&relay, carol_dir, "carol", quic).await;
    carol.until(a, "a room end").await;
    carol.until(b, "b room end").await;
    assert_eq!(
        carol.from(a),
        [
            "a>c 0",
            "a room 0",
            "a>c 1",
            "file:team.jpg",
            "a room 1",
            "a end",
            "a room end"
        ]
    );
    assert_eq!(
        carol.from(b),
        [
            "b>c 0",
            "b room 0",
            "b>c 1",
            "file:notes.txt",
            "b room 1",
            "b end",
            "b room end"
        ]
    );
    assert!(
        carol.fetch("file:team.jpg").await == photo,
        "team.jpg differs"
    );
    assert!(
        carol.fetch("file:notes.txt").await == notes,
        "notes.txt differs"
    );

    // Bob (on WebSocket, cut off by the restart) and alice got each other's.
    bob.until(a, "a room end").await;
    assert_eq!(
        bob.from(a),
        [
            "a room 0",
            "a>b 0",
            "file:team.jpg",
            "a room 1",
            "a>b 1",
            "a room end"
        ]
    );
    assert!(
        bob.fetch("file:team.jpg").await == photo,
        "bob's team.jpg differs"
    );
    alice.until(b, "b room end").await;
    assert_eq!(
        alice.from(b),
        ["b room 0", "b>a 0", "b room 1", "b>a 1", "b room end"]
    );
    assert!(alice.from(c).is_empty());

    alice.c.client.shutdown().await;
    bob.c.client.shutdown().await;
    carol.c.client.shutdown().await;
    relay.stop().await;
}
