#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Invite links, leaving, profiles and presence end to end: SDK clients and
//! a relay in this process.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{TestClient, TestRelay, connect, next, send_and_wait};
use spider_client::content::Body;
use spider_client::engine::{ClientError, Event};
use spider_client::keystore::Passphrase;
use spider_client::profile::{Profile, os_rng};
use spider_client::transport::TransportChoice;
use spider_crypto::sender_key::{DistributionId, SenderKeyStore as _};
use spider_protocol::error::ErrorCode;
use spider_protocol::ids::{DeviceAddress, LinkToken, MessageId, RoomId, Timestamp, UserId};
use spider_protocol::message::{Presence, RoomAction};
use spider_protocol::name::RoomName;

/// A text received: sender, room, text.
type Text = (UserId, Option<RoomId>, String);

/// A client and the texts it received while the test waited for other
/// things.
struct M {
    c: TestClient,
    inbox: Vec<Text>,
}

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

/// Waits for the first event `f` maps to something.
async fn wait_for<T>(m: &mut M, mut f: impl FnMut(&Event) -> Option<T>) -> T {
    loop {
        let e = ev(m).await;
        if let Some(t) = f(&e) {
            return t;
        }
    }
}

/// Waits for the relay's answer to our room request of this kind.
async fn answer(
    m: &mut M,
    is: impl Fn(&RoomAction) -> bool,
) -> (Option<RoomId>, Result<(), ClientError>) {
    wait_for(m, |e| match e {
        Event::RoomRequestDone {
            room,
            action,
            result,
        } if is(action) => Some((*room, result.clone())),
        _ => None,
    })
    .await
}

fn refused_with(r: &Result<(), ClientError>, code: ErrorCode) -> bool {
    matches!(r, Err(ClientError::Relay { code: c, .. }) if *c == code)
}

async fn create_room(m: &mut M, name: &str) -> RoomId {
    m.c.client
        .create_room(RoomName::parse(name).unwrap())
        .await
        .unwrap();
    let (room, r) = answer(m, |a| matches!(a, RoomAction::Create { .. })).await;
    r.unwrap();
    room.unwrap()
}

async fn make_link(
    m: &mut M,
    room: RoomId,
    expires_at: Option<Timestamp>,
    uses: Option<u32>,
) -> LinkToken {
    m.c.client
        .create_link(room, expires_at, uses)
        .await
        .unwrap();
    wait_for(m, |e| match e {
        Event::LinkCreated { room: r, token } if *r == room => Some(*token),
        _ => None,
    })
    .await
}

async fn join_link(m: &mut M, token: LinkToken) -> (Option<RoomId>, Result<(), ClientError>) {
    m.c.client.join_by_link(token).await.unwrap();
    answer(
        m,
        |a| matches!(a, RoomAction::JoinByLink { token: t } if *t == token),
    )
    .await
}

async fn send_room(m: &mut M, room: RoomId, text: &str) {
    let id = m.c.client.send_room_text(room, text).await.unwrap();
    wait_sent(m, id).await;
}

async fn wait_sent(m: &mut M, id: MessageId) {
    wait_for(m, |e| {
        matches!(e, Event::Sent { id: s } if *s == id).then_some(())
    })
    .await;
}

/// Takes the inbox once `last` is in it.
async fn until(m: &mut M, last: &str) -> Vec<Text> {
    while !m.inbox.iter().any(|(_, _, t)| t == last) {
        ev(m).await;
    }
    std::mem::take(&mut m.inbox)
}

fn texts(v: &[Text]) -> Vec<&str> {
    let mut t: Vec<&str> = v.iter().map(|(_, _, t)| t.as_str()).collect();
    t.sort_unstable();
    t
}

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

async fn people(relay: &TestRelay, dir: &std::path::Path, names: &[&str]) -> Vec<M> {
    let mut out = Vec::new();
    for name in names {
        out.push(M {
            c: connect(relay, &dir.join(name), name, TransportChoice::Quic).await,
            inbox: Vec::new(),
        });
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_links_let_people_join_and_dead_links_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = TestRelay::start(&dir.path().join("relay"), None).await;
    let [mut alice, mut bob, mut carol]: [M; 3] =
        people(&relay, dir.path(), &["alice", "bob", "carol"])
            .await
            .try_into()
            .ok()
            .unwrap();
    let room = create_room(&mut alice, "lobby").await;

    // A link good for one use: bob gets in, carol finds it used up.
    let once = make_link(&mut alice, room, None, Some(1)).await;
    let (joined, r) = join_link(&mut bob, once).await;
    r.unwrap();
    assert_eq!(joined, Some(room));
    let rooms = bob.c.client.rooms().await.unwrap();
    let lobby = rooms.iter().find(|d| d.state.room == room).unwrap();
    assert!(lobby.state.joined);
    assert_eq!(lobby.state.name, "lobby");
    let (_, r) = join_link(&mut carol, once).await;
    assert!(refused_with(&r, ErrorCode::LINK_INVALID), "{r:?}");

    // A link that expired a minute ago.
    let expired = make_link(&mut alice, room, Some(Timestamp(now_ms() - 60_000)), None).await;
    let (_, r) = join_link(&mut carol, expired).await;
    assert!(refused_with(&r, ErrorCode::LINK_INVALID), "{r:?}");

    // A revoked link.
    let revoked = make_link(&mut alice, room, None, None).await;
    alice.c.client.revoke_link(room, revoked).await.unwrap();
    let (_, r) = answer(&mut alice, |a| matches!(a, RoomAction::RevokeLink { .. })).await;
    r.unwrap();
    let (_, r) = join_link(&mut carol, revoked).await;
    assert!(refused_with(&r, ErrorCode::LINK_INVALID), "{r:?}");

    // A member cannot make links (admins and the owner can).
    bob.c.client.create_link(room, None, None).await.unwrap();
    let (_, r) = answer(&mut bob, |a| matches!(a, RoomAction::CreateLink { .. })).await;
    assert!(refused_with(&r, ErrorCode::FORBIDDEN), "{r:?}");

    // The one who joined by link talks with the owner.
    send_room(&mut alice, room, "welcome bob").await;
    send_room(&mut bob, room, "thanks").await;
    let got = until(&mut bob, "welcome bob").await;
    assert_eq!(got, [(alice.c.me, Some(room), "welcome bob".to_owned())]);
    let got = until(&mut alice, "thanks").await;
    assert_eq!(got, [(bob.c.me, Some(room), "thanks".to_owned())]);

    for m in [alice, bob, carol] {
        m.c.client.shutdown().await;
    }
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_who_leaves_gets_nothing_more_and_the_others_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = TestRelay::start(&dir.path().join("relay"), None).await;
    let [mut alice, mut bob, mut carol]: [M; 3] =
        people(&relay, dir.path(), &["alice", "bob", "carol"])
            .await
            .try_into()
            .ok()
            .unwrap();
    let room = create_room(&mut alice, "ops").await;
    let link = make_link(&mut alice, room, None, None).await;
    join_link(&mut bob, link).await.1.unwrap();
    join_link(&mut carol, link).await.1.unwrap();

    // Everyone speaks once, so every chain reached every member.
    send_room(&mut alice, room, "a1").await;
    send_room(&mut bob, room, "b1").await;
    send_room(&mut carol, room, "c1").await;
    assert_eq!(texts(&until(&mut carol, "b1").await), ["a1", "b1"]);
    let mut got = until(&mut alice, "b1").await;
    if !got.iter().any(|t| t.2 == "c1") {
        got.extend(until(&mut alice, "c1").await);
    }
    assert_eq!(texts(&got), ["b1", "c1"]);
    let mut got = until(&mut bob, "a1").await;
    if !got.iter().any(|t| t.2 == "c1") {
        got.extend(until(&mut bob, "c1").await);
    }
    assert_eq!(texts(&got), ["a1", "c1"]);

    // Carol leaves.
    carol.c.client.leave_room(room).await.unwrap();
    let (r, res) = answer(&mut carol, |a| matches!(a, RoomAction::Leave)).await;
    res.unwrap();
    assert_eq!(r, Some(room));
    let rooms = carol.c.client.rooms().await.unwrap();
    let ops = rooms.iter().find(|d| d.state.room == room).unwrap();
    assert!(!ops.state.joined);
    assert!(ops.extra.left);
    // She can no longer write there.
    assert!(carol.c.client.send_room_text(room, "ghost").await.is_err());

    // The others go on; their first messages rotate their chains.
    send_room(&mut alice, room, "after a").await;
    send_room(&mut bob, room, "after b").await;
    assert_eq!(texts(&until(&mut bob, "after a").await), ["after a"]);
    assert_eq!(texts(&until(&mut alice, "after b").await), ["after b"]);
    for m in [&alice, &bob] {
        let rooms = m.c.client.rooms().await.unwrap();
        let ops = rooms.iter().find(|d| d.state.room == room).unwrap();
        assert!(ops.state.members.iter().all(|(u, _)| *u != carol.c.me));
        // The new chain went to the one other member left, not to carol.
        assert!(!ops.state.distributed_to.is_empty());
        assert!(
            ops.state
                .distributed_to
                .iter()
                .all(|(u, _)| *u != carol.c.me),
            "{:?}",
            ops.state.distributed_to
        );
        assert!(!ops.state.needs_rotation);
    }

    // A 1:1 marker to carol after all that: anything sent to her in the
    // room would have come before it.
    send_and_wait(&mut alice.c, carol.c.me, "carol end").await;
    let got = until(&mut carol, "carol end").await;
    assert_eq!(got, [(alice.c.me, None, "carol end".to_owned())]);

    // The rotation itself: carol kept alice's chain from before she left,
    // and it does not open what alice's chain makes now; bob's does.
    let alice_me = alice.c.me;
    for m in [alice, bob, carol] {
        m.c.client.shutdown().await;
    }
    let open = |name: &str| {
        Profile::open_dir(&dir.path().join(name), &Passphrase::None, os_rng()).unwrap()
    };
    let (pa, pb, pc) = (open("alice"), open("bob"), open("carol"));
    let dist = DistributionId::from_bytes(*room.as_bytes());
    let mut own = pa.load_own_sender_key(dist).unwrap().unwrap();
    let m = own.encrypt(b"after the leave").unwrap();
    let from = DeviceAddress {
        user: alice_me,
        device: pa.account().unwrap().device.unwrap(),
    };
    let mut old = pc
        .load_sender_key(dist, &from)
        .unwrap()
        .expect("carol kept alice's chain");
    assert!(old.decrypt(&m).is_err());
    let mut current = pb.load_sender_key(dist, &from).unwrap().unwrap();
    assert_eq!(current.decrypt(&m).unwrap(), b"after the leave");
    relay.stop().await;
}

/// Waits until `m` has read `whose` profile with `name` in it.
async fn profile_seen(m: &mut M, whose: UserId, name: &str) {
    wait_for(m, |e| match e {
        Event::ProfileFetched { user, display_name }
            if *user == whose && display_name.as_deref() == Some(name) =>
        {
            Some(())
        }
        _ => None,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_display_name_reaches_contacts_and_room_members_through_the_profile_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = TestRelay::start(&dir.path().join("relay"), None).await;
    let [mut alice, mut bob, mut carol]: [M; 3] =
        people(&relay, dir.path(), &["alice", "bob", "carol"])
            .await
            .try_into()
            .ok()
            .unwrap();
    // Bob is a contact: they wrote to each other.
    send_and_wait(&mut alice.c, bob.c.me, "hi bob").await;
    until(&mut bob, "hi bob").await;

    let ids = alice
        .c
        .client
        .set_display_name("Alice Liddell")
        .await
        .unwrap();
    assert_eq!(ids.len(), 1, "one contact, one key message");
    wait_for(&mut alice, |e| match e {
        Event::ProfileSaved { result } => Some(result.clone()),
        _ => None,
    })
    .await
    .unwrap();
    wait_sent(&mut alice, ids[0]).await;
    wait_for(&mut bob, |e| {
        matches!(e, Event::ProfileKeyReceived { user } if *user == alice.c.me).then_some(())
    })
    .await;
    profile_seen(&mut bob, alice.c.me, "Alice Liddell").await;
    let contacts = bob.c.client.contacts().await.unwrap();
    let a = contacts
        .iter()
        .find(|c| c.contact.user == alice.c.me)
        .unwrap();
    assert_eq!(a.display_name.as_deref(), Some("Alice Liddell"));
    assert_eq!(
        alice.c.client.own_display_name().await.unwrap().as_deref(),
        Some("Alice Liddell")
    );

    // Carol joins alice's room by link and never writes to her: alice's
    // first room message makes carol a contact of hers, and the key goes
    // with it.
    let room = create_room(&mut alice, "book").await;
    let link = make_link(&mut alice, room, None, None).await;
    join_link(&mut carol, link).await.1.unwrap();
    send_room(&mut alice, room, "chapter one").await;
    profile_seen(&mut carol, alice.c.me, "Alice Liddell").await;
    until(&mut carol, "chapter one").await;

    // A change reaches both.
    alice.c.client.set_display_name("Alice L.").await.unwrap();
    profile_seen(&mut bob, alice.c.me, "Alice L.").await;
    profile_seen(&mut carol, alice.c.me, "Alice L.").await;

    // Bob set no profile: refreshing finds no key of his at alice's.
    let fetched = alice.c.client.refresh_profiles().await.unwrap();
    assert!(fetched.is_empty(), "{fetched:?}");
    // Bob reads alice's again on demand.
    assert_eq!(bob.c.client.refresh_profiles().await.unwrap(), [alice.c.me]);
    profile_seen(&mut bob, alice.c.me, "Alice L.").await;

    for m in [alice, bob, carol] {
        m.c.client.shutdown().await;
    }
    relay.stop().await;
}

/// Waits for a presence of `whose` that `is` accepts.
async fn presence(m: &mut M, whose: UserId, is: impl Fn(&Presence) -> bool) -> Presence {
    wait_for(m, |e| match e {
        Event::Presence { user, presence } if *user == whose && is(presence) => Some(*presence),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_sees_presence_go_online_offline_online() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = TestRelay::start(&dir.path().join("relay"), None).await;
    let [mut alice, mut bob, carol]: [M; 3] =
        people(&relay, dir.path(), &["alice", "bob", "carol"])
            .await
            .try_into()
            .ok()
            .unwrap();
    // Alice and bob wrote to each other: each is the other's contact. Carol
    // is only alice's (alice looked her up; carol never heard of alice), so
    // carol's presence stays hidden from alice.
    send_and_wait(&mut alice.c, bob.c.me, "hi bob").await;
    until(&mut bob, "hi bob").await;
    send_and_wait(&mut bob.c, alice.c.me, "hi alice").await;
    until(&mut alice, "hi alice").await;
    alice
        .c
        .client
        .lookup_user(carol.c.username.clone())
        .await
        .unwrap();
    wait_for(&mut alice, |e| {
        matches!(e, Event::ContactUpdated { user, .. } if *user == carol.c.me).then_some(())
    })
    .await;

    alice.c.client.list_contacts().await.unwrap();
    let listed = wait_for(&mut alice, |e| match e {
        Event::ContactsListed { contacts } => Some(contacts.clone()),
        _ => None,
    })
    .await;
    let of = |u: UserId| listed.iter().find(|c| c.user == u).unwrap().presence;
    assert_eq!(of(bob.c.me), Some(Presence::Online));
    assert_eq!(of(carol.c.me), None);

    // Bob goes away, and comes back.
    let bob_dir = dir.path().join("bob");
    bob.c.client.shutdown().await;
    let p = presence(&mut alice, bob.c.me, |p| {
        matches!(p, Presence::Offline { .. })
    })
    .await;
    assert!(
        matches!(p, Presence::Offline { last_seen: Some(t) } if t.0 > 0),
        "{p:?}"
    );
    let bob = connect(&relay, &bob_dir, "bob", TransportChoice::WebSocket).await;
    presence(&mut alice, bob.me, |p| *p == Presence::Online).await;

    for c in [alice.c, bob, carol.c] {
        c.client.shutdown().await;
    }
    relay.stop().await;
}
