#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Rooms end to end: three SDK clients and a relay in process. Create,
//! invite by name, join, room messages each delivered once to every other
//! member, a kick, and nothing after the kick for the removed member.

mod common;

use common::{TestClient, TestRelay, connect, next};
use spider_client::content::Body;
use spider_client::engine::Event;
use spider_client::transport::TransportChoice;
use spider_protocol::ids::{RoomId, UserId};
use spider_protocol::name::RoomName;

type Text = (UserId, Option<RoomId>, String);

/// A client and the texts it received so far (whatever the test was
/// waiting for at the time).
struct M {
    c: TestClient,
    inbox: Vec<Text>,
}

/// The next event; texts also go to the inbox.
async fn ev(m: &mut M) -> Event {
    let e = next(&mut m.c.events).await;
    if let Event::MessageReceived {
        from,
        room,
        content,
        ..
    } = &e
        && let Body::Text { body } = &content.body
    {
        m.inbox.push((from.user, *room, body.clone()));
    }
    if let Event::Error(err) = &e {
        eprintln!("{}: {err}", m.c.username);
    }
    e
}

/// Waits for `n` [`Event::RoomChanged`] about `room`.
async fn room_changed(c: &mut M, room: RoomId, n: usize) {
    let mut seen = 0;
    while seen < n {
        if let Event::RoomChanged { room: r } = ev(c).await
            && r == room
        {
            seen += 1;
        }
    }
}

/// The first room this client hears of.
async fn any_room_changed(c: &mut M) -> RoomId {
    loop {
        if let Event::RoomChanged { room } = ev(c).await {
            return room;
        }
    }
}

/// Looks `name` up (inviting by name) and returns the account.
async fn look_up(c: &mut M, name: &M) -> UserId {
    c.c.client
        .lookup_user(name.c.username.clone())
        .await
        .unwrap();
    loop {
        if let Event::ContactUpdated { user, username } = ev(c).await
            && username == name.c.username
        {
            return user;
        }
    }
}

/// Sends a room text and waits until the relay took it.
async fn send_room(c: &mut M, room: RoomId, text: &str) {
    let id = c.c.client.send_room_text(room, text).await.unwrap();
    loop {
        if let Event::Sent { id: s } = ev(c).await
            && s == id
        {
            return;
        }
    }
}

/// Sends a 1:1 text and waits until the relay took it.
async fn send_direct(c: &mut M, to: UserId, text: &str) {
    let id = c.c.client.send_text(to, text).await.unwrap();
    loop {
        if let Event::Sent { id: s } = ev(c).await
            && s == id
        {
            return;
        }
    }
}

/// Takes the inbox once `last` is in it (waiting for it).
async fn until(c: &mut M, last: &str) -> Vec<Text> {
    while !c.inbox.iter().any(|(_, _, t)| t == last) {
        ev(c).await;
    }
    std::mem::take(&mut c.inbox)
}

fn sorted(v: &[(UserId, Option<RoomId>, String)]) -> Vec<String> {
    let mut t: Vec<String> = v.iter().map(|(_, _, t)| t.clone()).collect();
    t.sort();
    t
}

/// Joins `who` to `room` after `alice` invited it: the invitation arrives
/// as a room change, the SDK asks for the room, then accepts.
async fn join(who: &mut M, room: RoomId) {
    // The Invite change and the room details it prompts.
    let r = any_room_changed(who).await;
    assert_eq!(r, room);
    room_changed(who, room, 1).await;
    who.c.client.accept_invite(room).await.unwrap();
    room_changed(who, room, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_create_invite_join_messages_kick() {
    let t = TransportChoice::Quic;
    let dir = tempfile::tempdir().unwrap();
    let mut relay = TestRelay::start(&dir.path().join("relay"), None).await;
    let mut clients = Vec::new();
    for name in ["alice", "bob", "carol"] {
        clients.push(M {
            c: connect(&relay, &dir.path().join(name), name, t).await,
            inbox: Vec::new(),
        });
    }
    let [mut alice, mut bob, mut carol]: [M; 3] = clients.try_into().ok().unwrap();

    alice
        .c
        .client
        .create_room(RoomName::parse("ops").unwrap())
        .await
        .unwrap();
    let room = any_room_changed(&mut alice).await;

    // Invitations by name: the accounts are looked up first.
    let bob_id = look_up(&mut alice, &bob).await;
    assert_eq!(bob_id, bob.c.me);
    alice.c.client.invite(room, bob_id).await.unwrap();
    room_changed(&mut alice, room, 1).await;
    join(&mut bob, room).await;

    let carol_id = look_up(&mut alice, &carol).await;
    alice.c.client.invite(room, carol_id).await.unwrap();
    room_changed(&mut alice, room, 1).await;
    join(&mut carol, room).await;

    // Every member says something; each other member gets it once.
    send_room(&mut alice, room, "a1").await;
    send_room(&mut bob, room, "b1").await;
    send_room(&mut carol, room, "c1").await;
    // Markers after everything: a duplicate would arrive before them.
    send_room(&mut alice, room, "a-end").await;
    send_room(&mut bob, room, "b-end").await;

    let got = until(&mut alice, "b-end").await;
    assert!(got.iter().all(|(_, r, _)| *r == Some(room)));
    assert_eq!(sorted(&got), ["b-end", "b1", "c1"]);
    let got = until(&mut bob, "a-end").await;
    assert!(got.iter().all(|(_, r, _)| *r == Some(room)));
    assert_eq!(sorted(&got), ["a-end", "a1", "c1"]);
    let mut got = until(&mut carol, "a-end").await;
    if !got.iter().any(|(_, _, t)| t == "b-end") {
        got.extend(until(&mut carol, "b-end").await);
    }
    assert!(got.iter().all(|(_, r, _)| *r == Some(room)));
    assert_eq!(sorted(&got), ["a-end", "a1", "b-end", "b1"]);
    for (who, from) in [("a1", alice.c.me), ("b1", bob.c.me)] {
        assert!(got.iter().any(|(u, _, t)| t == who && *u == from));
    }

    // Carol is removed; the others rotate and go on without her.
    alice.c.client.kick(room, carol_id).await.unwrap();
    room_changed(&mut alice, room, 1).await;
    send_room(&mut alice, room, "after kick a").await;
    send_room(&mut bob, room, "after kick b").await;
    let got = until(&mut bob, "after kick a").await;
    assert_eq!(sorted(&got), ["after kick a"]);
    let got = until(&mut alice, "after kick b").await;
    assert_eq!(sorted(&got), ["after kick b"]);

    // A 1:1 marker to carol after those: any room message for her would
    // have come before it.
    send_direct(&mut alice, carol.c.me, "carol end").await;
    let got = until(&mut carol, "carol end").await;
    assert_eq!(got.len(), 1, "carol got more than the marker: {got:?}");
    assert_eq!(got[0].1, None);

    alice.c.client.shutdown().await;
    bob.c.client.shutdown().await;
    carol.c.client.shutdown().await;
    relay.stop().await;
}
