//! Rooms over real QUIC and WebSocket: signed changes, roles, invitations,
//! links, bans, fan-out, offline delivery and removal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use spider_protocol::bytes::{BoundedBytes, FixedBytes};
use spider_protocol::error::ErrorDetail;
use spider_protocol::ids::{DeviceAddress, LinkToken, MessageId, RoomId, Seq, Timestamp};
use spider_protocol::message::{
    Ack, ChangeRoom, EditContact, EnvelopeBody, EphemeralTarget, GetRoom, ListContacts, ListRooms,
    Presence, PresenceStatus, ResolveLink, Role, RoomAction, RoomChange, RoomRef, SendEphemeral,
    SendRoom, SetPresence, SignedRoomChange, room_devices_digest,
};
use spider_protocol::name::RoomName;
use spider_protocol::{ClientFrame, ErrorCode, ServerFrame};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn mid() -> MessageId {
    MessageId::from_bytes(random())
}

fn room_name(prefix: &str) -> RoomName {
    let r: [u8; 4] = random();
    RoomName::parse(&format!("{prefix}{}", u32::from_be_bytes(r) % 1_000_000)).unwrap()
}

fn signed(a: &Account, room: RoomId, epoch: u64, action: RoomAction) -> SignedRoomChange {
    let change = RoomChange {
        room,
        epoch,
        actor: DeviceAddress {
            user: a.user,
            device: a.device,
        },
        at: Timestamp(now_ms()),
        action,
    };
    let signature = FixedBytes(a.id.pair.sign_room_change(&change.signed_bytes()));
    SignedRoomChange { change, signature }
}

/// Submits a change signed by `a` and returns the reply.
async fn change(
    a: &Account,
    c: &mut Client,
    room: RoomId,
    epoch: u64,
    action: RoomAction,
) -> ServerFrame {
    let req = c.req();
    c.send(ClientFrame::ChangeRoom(ChangeRoom {
        req,
        change: signed(a, room, epoch, action),
    }))
    .await;
    let f = c.expect_np().await;
    match &f {
        ServerFrame::RoomInfo(i) => assert_eq!(i.req, req),
        ServerFrame::Done(d) => assert_eq!(d.req, req),
        ServerFrame::LinkCreated(l) => assert_eq!(l.req, req),
        ServerFrame::Error(e) => assert_eq!(e.req, Some(req)),
        _ => {}
    }
    f
}

/// A change that must succeed; returns the new epoch.
async fn ok(a: &Account, c: &mut Client, room: RoomId, epoch: u64, action: RoomAction) -> u64 {
    match change(a, c, room, epoch, action).await {
        ServerFrame::RoomInfo(i) => i.epoch,
        ServerFrame::LinkCreated(l) => l.epoch,
        ServerFrame::Done(_) => epoch + 1,
        f => panic!("change refused: {f:?}"),
    }
}

fn refused(f: ServerFrame) -> ErrorCode {
    match f {
        ServerFrame::Error(e) => e.code,
        f => panic!("expected an error, got {f:?}"),
    }
}

async fn create(a: &Account, c: &mut Client, name: &RoomName) -> (RoomId, u64) {
    match change(
        a,
        c,
        RoomId::from_bytes([0; 16]),
        0,
        RoomAction::Create { name: name.clone() },
    )
    .await
    {
        ServerFrame::RoomInfo(i) => {
            assert_eq!(&i.name, name);
            assert_eq!(i.members.len(), 1);
            assert_eq!(i.members.as_slice()[0].role, Role::Owner);
            (i.room, i.epoch)
        }
        f => panic!("create refused: {f:?}"),
    }
}

async fn make_link(
    a: &Account,
    c: &mut Client,
    room: RoomId,
    epoch: u64,
    expires_at: Option<Timestamp>,
    max_uses: Option<u32>,
) -> (LinkToken, u64) {
    match change(
        a,
        c,
        room,
        epoch,
        RoomAction::CreateLink {
            expires_at,
            max_uses,
        },
    )
    .await
    {
        ServerFrame::LinkCreated(l) => (l.token, l.epoch),
        f => panic!("link refused: {f:?}"),
    }
}

enum Got {
    Change(RoomAction),
    Msg(Vec<u8>),
    Direct(Vec<u8>),
}

/// The next delivery, acked.
async fn next(c: &mut Client) -> (Seq, Got) {
    match c.expect_np().await {
        ServerFrame::Deliver(d) => {
            let got = match d.envelope.body {
                EnvelopeBody::RoomChange(s) => Got::Change(s.change.action),
                EnvelopeBody::Room { ciphertext, .. } => Got::Msg(ciphertext.as_slice().to_vec()),
                EnvelopeBody::Direct { ciphertext } => Got::Direct(ciphertext.as_slice().to_vec()),
            };
            c.send(ClientFrame::Ack(Ack { up_to: d.seq })).await;
            (d.seq, got)
        }
        f => panic!("expected Deliver, got {f:?}"),
    }
}

async fn next_change(c: &mut Client) -> RoomAction {
    match next(c).await.1 {
        Got::Change(a) => a,
        Got::Msg(m) | Got::Direct(m) => panic!("expected a room change, got message {m:?}"),
    }
}

async fn next_msg(c: &mut Client) -> Vec<u8> {
    match next(c).await.1 {
        Got::Msg(m) => m,
        Got::Change(a) => panic!("expected a room message, got change {a:?}"),
        Got::Direct(m) => panic!("expected a room message, got direct {m:?}"),
    }
}

async fn next_direct(c: &mut Client) -> Vec<u8> {
    match next(c).await.1 {
        Got::Direct(m) => m,
        Got::Change(a) => panic!("expected a direct marker, got change {a:?}"),
        Got::Msg(m) => panic!("expected a direct marker, got room message {m:?}"),
    }
}

/// The epoch and member-device digest a `SendRoom` from `who` must name, as
/// `GetRoom` reads them (epoch 0 and a digest of nothing when `who` may not
/// read the room).
async fn room_view(who: &Account, c: &mut Client, room: RoomId) -> (u64, FixedBytes<32>) {
    let me = DeviceAddress {
        user: who.user,
        device: who.device,
    };
    let req = c.req();
    c.send(ClientFrame::GetRoom(GetRoom {
        req,
        room: RoomRef::Id(room),
    }))
    .await;
    match c.expect_np().await {
        ServerFrame::RoomInfo(info) => (info.epoch, info.devices_digest(me)),
        ServerFrame::Error(_) => (0, room_devices_digest([])),
        f => panic!("unexpected reply to GetRoom: {f:?}"),
    }
}

/// A room message from `who`, naming the room as `GetRoom` shows it now.
async fn send_room(who: &Account, c: &mut Client, room: RoomId, text: &[u8]) -> ServerFrame {
    let (epoch, devices) = room_view(who, c, room).await;
    send_room_as(c, room, epoch, devices, mid(), text).await
}

async fn send_room_as(
    c: &mut Client,
    room: RoomId,
    epoch: u64,
    devices: FixedBytes<32>,
    id: MessageId,
    text: &[u8],
) -> ServerFrame {
    let req = c.req();
    c.send(ClientFrame::SendRoom(SendRoom {
        req,
        message_id: id,
        room,
        epoch,
        devices,
        ciphertext: BoundedBytes::new(text.to_vec()).unwrap(),
    }))
    .await;
    c.expect_np().await
}

async fn sent(who: &Account, c: &mut Client, room: RoomId, text: &[u8]) {
    match send_room(who, c, room, text).await {
        ServerFrame::Sent(_) => {}
        f => panic!("room send refused: {f:?}"),
    }
}

/// A 1:1 marker from `from` to `to`: once `to` receives it, everything
/// pushed to `to` before it has been received too (one queue, in order).
async fn marker(from: &mut Client, to: &Account, text: &[u8]) {
    let req = from.req();
    from.send(direct(req, mid(), to.user, &[(to.device, text)]))
        .await;
    match from.expect_np().await {
        ServerFrame::Sent(_) => {}
        f => panic!("marker refused: {f:?}"),
    }
}

/// A sender whose view of the room is out of date (a member joined, or a
/// member added a device, since it read the room) would hand a copy to a
/// device it never gave its Sender Key: the relay refuses the message, stores
/// no copy for anyone, and takes it once the sender names the current room.
#[tokio::test]
async fn a_room_message_from_a_stale_view_of_the_room_is_refused_and_reaches_no_one() {
    let relay = start_relay().await;
    let (alice, mut a) = register(&relay, Transport::Quic, "alice").await;
    let (bob, mut b) = register(&relay, Transport::Ws, "bob").await;
    let (carol, mut c) = register(&relay, Transport::Quic, "carol").await;
    let (room, e) = create(&alice, &mut a, &room_name("stale")).await;
    let e = ok(
        &alice,
        &mut a,
        room,
        e,
        RoomAction::Invite { user: bob.user },
    )
    .await;
    assert!(matches!(
        next_change(&mut b).await,
        RoomAction::Invite { .. }
    ));
    let e = ok(&bob, &mut b, room, e, RoomAction::Accept).await;
    assert!(matches!(next_change(&mut a).await, RoomAction::Accept));
    // Alice reads the room: herself and bob.
    let (old_epoch, old_devices) = room_view(&alice, &mut a, room).await;
    assert_eq!(old_epoch, e);

    // Carol joins before alice's message goes.
    let e = ok(
        &alice,
        &mut a,
        room,
        e,
        RoomAction::Invite { user: carol.user },
    )
    .await;
    assert!(matches!(
        next_change(&mut c).await,
        RoomAction::Invite { .. }
    ));
    let e = ok(&carol, &mut c, room, e, RoomAction::Accept).await;
    assert!(matches!(
        next_change(&mut b).await,
        RoomAction::Invite { .. }
    ));
    assert!(matches!(next_change(&mut b).await, RoomAction::Accept));
    assert!(matches!(next_change(&mut a).await, RoomAction::Accept));
    let id = mid();
    match send_room_as(&mut a, room, old_epoch, old_devices, id, b"stale").await {
        ServerFrame::Error(err) => {
            assert_eq!(err.code, ErrorCode::STALE_EPOCH);
            assert_eq!(err.detail, ErrorDetail::Epoch { current: e });
        }
        f => panic!("a send from a stale epoch was taken: {f:?}"),
    }
    // The right epoch with the old member list is refused too.
    assert_eq!(
        refused(send_room_as(&mut a, room, e, old_devices, id, b"stale").await),
        ErrorCode::MISMATCHED_DEVICES
    );

    // Bob adds a second device: same epoch, one more device.
    let (epoch, devices) = room_view(&alice, &mut a, room).await;
    assert_eq!(epoch, e);
    let mut b2 = Client::connect(&relay, Transport::Ws).await;
    assert!(matches!(
        add_device(&relay, &bob, &mut b2).await,
        ServerFrame::AuthOk(_)
    ));
    assert!(matches!(b2.expect().await, ServerFrame::CaughtUp(_)));
    assert_eq!(
        refused(send_room_as(&mut a, room, epoch, devices, id, b"stale").await),
        ErrorCode::MISMATCHED_DEVICES
    );

    // Read again: taken, and the first room message every device gets (the
    // refused tries stored nothing).
    let (epoch, devices) = room_view(&alice, &mut a, room).await;
    let f = send_room_as(&mut a, room, epoch, devices, id, b"current").await;
    assert!(matches!(f, ServerFrame::Sent(s) if s.message_id == id));
    for cl in [&mut b, &mut c, &mut b2] {
        assert_eq!(next_msg(cl).await, b"current");
    }
    a.close().await;
    b.close().await;
    b2.close().await;
    c.close().await;
    relay.stop().await;
}

/// Alice owns a room with bob and carol as members. Returns the epoch.
#[allow(clippy::too_many_arguments)]
async fn three_member_room(
    alice: &Account,
    a: &mut Client,
    bob: &Account,
    b: &mut Client,
    carol: &Account,
    c: &mut Client,
    room: RoomId,
    epoch: u64,
) -> u64 {
    let e = ok(alice, a, room, epoch, RoomAction::Invite { user: bob.user }).await;
    let e = ok(alice, a, room, e, RoomAction::Invite { user: carol.user }).await;
    // Bob, an invitee, learns of both invitations.
    assert!(matches!(next_change(b).await, RoomAction::Invite { user } if user == bob.user));
    assert!(matches!(next_change(b).await, RoomAction::Invite { user } if user == carol.user));
    let e = ok(bob, b, room, e, RoomAction::Accept).await;
    // Carol: her invite, then bob's accept.
    assert!(matches!(next_change(c).await, RoomAction::Invite { user } if user == carol.user));
    assert!(matches!(next_change(c).await, RoomAction::Accept));
    let e = ok(carol, c, room, e, RoomAction::Accept).await;
    assert!(matches!(next_change(b).await, RoomAction::Accept));
    // Alice: both accepts.
    assert!(matches!(next_change(a).await, RoomAction::Accept));
    assert!(matches!(next_change(a).await, RoomAction::Accept));
    e
}

#[tokio::test]
async fn three_member_room_each_member_gets_each_message_once() {
    let relay = start_relay().await;
    let (alice, mut a) = register(&relay, Transport::Quic, "alice").await;
    let (bob, mut b) = register(&relay, Transport::Ws, "bob").await;
    let (carol, mut c) = register(&relay, Transport::Quic, "carol").await;
    let name = room_name("club");
    let (room, e) = create(&alice, &mut a, &name).await;
    let e = three_member_room(&alice, &mut a, &bob, &mut b, &carol, &mut c, room, e).await;
    assert_eq!(e, 5);

    // Sent twice with one message id (a retransmission): acked twice,
    // stored and delivered once.
    let id = mid();
    let (epoch, devices) = room_view(&alice, &mut a, room).await;
    for _ in 0..2 {
        let f = send_room_as(&mut a, room, epoch, devices, id, b"from alice").await;
        assert!(matches!(f, ServerFrame::Sent(s) if s.message_id == id));
    }
    assert_eq!(next_msg(&mut b).await, b"from alice");
    assert_eq!(next_msg(&mut c).await, b"from alice");
    sent(&bob, &mut b, room, b"from bob").await;
    assert_eq!(next_msg(&mut c).await, b"from bob");
    assert_eq!(next_msg(&mut a).await, b"from bob");
    // Nothing more: the next thing each gets is a marker.
    for (who, cl) in [(&bob, &mut b), (&carol, &mut c)] {
        marker(&mut a, who, b"marker").await;
        assert_eq!(next_direct(cl).await, b"marker");
    }
    marker(&mut b, &alice, b"marker").await;
    assert_eq!(next_direct(&mut a).await, b"marker");

    // Members see the room by name; the list shows it with roles.
    let req = b.req();
    b.send(ClientFrame::GetRoom(GetRoom {
        req,
        room: RoomRef::Name(name.clone()),
    }))
    .await;
    match b.expect_np().await {
        ServerFrame::RoomInfo(i) => {
            assert_eq!((i.room, i.epoch, i.members.len()), (room, 5, 3));
            assert!(i.invited.is_empty());
        }
        f => panic!("{f:?}"),
    }
    let req = c.req();
    c.send(ClientFrame::ListRooms(ListRooms { req })).await;
    match c.expect_np().await {
        ServerFrame::RoomList(l) => {
            assert_eq!(l.rooms.len(), 1);
            assert_eq!(l.rooms.as_slice()[0].role, Some(Role::Member));
            assert_eq!(l.rooms.as_slice()[0].members, 3);
        }
        f => panic!("{f:?}"),
    }
    // A stranger learns nothing, and cannot send.
    let (dave, mut d) = register(&relay, Transport::Ws, "dave").await;
    let req = d.req();
    d.send(ClientFrame::GetRoom(GetRoom {
        req,
        room: RoomRef::Id(room),
    }))
    .await;
    assert_eq!(refused(d.expect_np().await), ErrorCode::UNKNOWN_ROOM);
    assert_eq!(
        refused(send_room(&dave, &mut d, room, b"spam").await),
        ErrorCode::NOT_A_MEMBER
    );
    // The name is taken; reserved names are refused.
    assert_eq!(
        refused(
            change(
                &alice,
                &mut a,
                RoomId::from_bytes([0; 16]),
                0,
                RoomAction::Create { name: name.clone() }
            )
            .await
        ),
        ErrorCode::ROOM_NAME_TAKEN
    );
    assert_eq!(
        refused(
            change(
                &alice,
                &mut a,
                RoomId::from_bytes([0; 16]),
                0,
                RoomAction::Create {
                    name: RoomName::parse("admin").unwrap()
                }
            )
            .await
        ),
        ErrorCode::INVALID_USERNAME
    );
    relay.stop().await;
}

#[tokio::test]
async fn pending_invitations_are_listed_and_can_be_declined() {
    let relay = start_relay().await;
    let (alice, mut a) = register(&relay, Transport::Ws, "alice").await;
    let (bob, mut b) = register(&relay, Transport::Quic, "bob").await;
    let (room, e) = create(&alice, &mut a, &room_name("inv")).await;
    let e = ok(
        &alice,
        &mut a,
        room,
        e,
        RoomAction::Invite { user: bob.user },
    )
    .await;
    assert!(matches!(
        next_change(&mut b).await,
        RoomAction::Invite { .. }
    ));
    let req = b.req();
    b.send(ClientFrame::ListRooms(ListRooms { req })).await;
    match b.expect_np().await {
        ServerFrame::RoomList(l) => {
            assert_eq!(l.rooms.len(), 1);
            assert_eq!(l.rooms.as_slice()[0].role, None);
        }
        f => panic!("{f:?}"),
    }
    // Not a member yet: cannot send.
    assert_eq!(
        refused(send_room(&bob, &mut b, room, b"early").await),
        ErrorCode::NOT_A_MEMBER
    );
    assert!(matches!(
        change(&bob, &mut b, room, e, RoomAction::Decline).await,
        ServerFrame::Done(_)
    ));
    assert!(matches!(next_change(&mut a).await, RoomAction::Decline));
    assert_eq!(
        refused(change(&bob, &mut b, room, e + 1, RoomAction::Accept).await),
        ErrorCode::NO_INVITATION
    );
    relay.stop().await;
}

#[tokio::test]
async fn offline_member_gets_room_messages_and_changes_in_order_on_reconnect() {
    let relay = start_relay().await;
    let (alice, mut a) = register(&relay, Transport::Quic, "alice").await;
    let (bob, mut b) = register(&relay, Transport::Ws, "bob").await;
    let (carol, mut c) = register(&relay, Transport::Ws, "carol").await;
    let (room, e) = create(&alice, &mut a, &room_name("off")).await;
    let e = ok(
        &alice,
        &mut a,
        room,
        e,
        RoomAction::Invite { user: bob.user },
    )
    .await;
    assert!(matches!(
        next_change(&mut b).await,
        RoomAction::Invite { .. }
    ));
    let e = ok(&bob, &mut b, room, e, RoomAction::Accept).await;
    assert!(matches!(next_change(&mut a).await, RoomAction::Accept));
    b.close().await;

    sent(&alice, &mut a, room, b"one").await;
    let e = ok(
        &alice,
        &mut a,
        room,
        e,
        RoomAction::Invite { user: carol.user },
    )
    .await;
    assert!(matches!(
        next_change(&mut c).await,
        RoomAction::Invite { .. }
    ));
    let _ = ok(&carol, &mut c, room, e, RoomAction::Accept).await;
    assert!(matches!(next_change(&mut a).await, RoomAction::Accept));
    sent(&alice, &mut a, room, b"two").await;
    assert_eq!(next_msg(&mut c).await, b"two");
    sent(&carol, &mut c, room, b"three").await;

    for t in [Transport::Quic, Transport::Ws] {
        let (mut b, okf) = login(&relay, t, &bob).await;
        // The first login acks as it goes; the second finds nothing left.
        if okf.queued == 0 {
            assert!(matches!(b.expect_np().await, ServerFrame::CaughtUp(_)));
            b.close().await;
            continue;
        }
        assert_eq!(okf.queued, 5);
        assert_eq!(next_msg(&mut b).await, b"one");
        assert!(
            matches!(next_change(&mut b).await, RoomAction::Invite { user } if user == carol.user)
        );
        assert!(matches!(next_change(&mut b).await, RoomAction::Accept));
        assert_eq!(next_msg(&mut b).await, b"two");
        assert_eq!(next_msg(&mut b).await, b"three");
        assert!(matches!(b.expect_np().await, ServerFrame::CaughtUp(_)));
        b.close().await;
    }
    relay.stop().await;
}

#[tokio::test]
async fn kicked_member_gets_the_kick_and_nothing_after_it() {
    let relay = start_relay().await;
    let (alice, mut a) = register(&relay, Transport::Quic, "alice").await;
    let (bob, mut b) = register(&relay, Transport::Ws, "bob").await;
    let (carol, mut c) = register(&relay, Transport::Quic, "carol").await;
    let (room, e) = create(&alice, &mut a, &room_name("kick")).await;
    let e = three_member_room(&alice, &mut a, &bob, &mut b, &carol, &mut c, room, e).await;

    sent(&alice, &mut a, room, b"before").await;
    assert_eq!(next_msg(&mut b).await, b"before");
    assert_eq!(next_msg(&mut c).await, b"before");
    let _ = ok(&alice, &mut a, room, e, RoomAction::Kick { user: bob.user }).await;
    sent(&alice, &mut a, room, b"after").await;
    // Carol sees the kick and alice's message, and sends one.
    assert!(matches!(next_change(&mut c).await, RoomAction::Kick { .. }));
    assert_eq!(next_msg(&mut c).await, b"after");
    sent(&carol, &mut c, room, b"after too").await;
    assert_eq!(next_msg(&mut a).await, b"after too");
    // Bob, online: the kick, then (after the marker proves the queue is
    // drained past the sends) nothing else.
    assert!(matches!(next_change(&mut b).await, RoomAction::Kick { user } if user == bob.user));
    marker(&mut a, &bob, b"marker").await;
    assert_eq!(next_direct(&mut b).await, b"marker");
    assert_eq!(
        refused(send_room(&bob, &mut b, room, b"still here?").await),
        ErrorCode::NOT_A_MEMBER
    );
    // And on reconnect bob's mailbox holds nothing.
    b.close().await;
    let (mut b, okf) = login(&relay, Transport::Quic, &bob).await;
    assert_eq!(okf.queued, 0);
    assert!(matches!(b.expect_np().await, ServerFrame::CaughtUp(_)));
    relay.stop().await;
}

#[tokio::test]
async fn banned_user_cannot_rejoin_by_link_until_unbanned() {
    let relay = start_relay().await;
    let (alice, mut a) = register(&relay, Transport::Ws, "alice").await;
    let (bob, mut b) = register(&relay, Transport::Quic, "bob").await;
    let (room, e) = create(&alice, &mut a, &room_name("ban")).await;
    let (token, e) = make_link(&alice, &mut a, room, e, None, None).await;

    let req = b.req();
    b.send(ClientFrame::ResolveLink(ResolveLink { req, token }))
        .await;
    let be = match b.expect_np().await {
        ServerFrame::LinkInfo(i) => {
            assert_eq!(i.room, room);
            i.epoch
        }
        f => panic!("{f:?}"),
    };
    assert_eq!(be, e);
    let e = ok(&bob, &mut b, room, e, RoomAction::JoinByLink { token }).await;
    assert!(matches!(
        next_change(&mut a).await,
        RoomAction::JoinByLink { .. }
    ));
    let e = ok(&alice, &mut a, room, e, RoomAction::Ban { user: bob.user }).await;
    assert!(matches!(next_change(&mut b).await, RoomAction::Ban { .. }));
    assert_eq!(
        refused(change(&bob, &mut b, room, e, RoomAction::JoinByLink { token }).await),
        ErrorCode::BANNED
    );
    // Nor by invitation.
    assert_eq!(
        refused(
            change(
                &alice,
                &mut a,
                room,
                e,
                RoomAction::Invite { user: bob.user }
            )
            .await
        ),
        ErrorCode::BANNED
    );
    let e = ok(
        &alice,
        &mut a,
        room,
        e,
        RoomAction::Unban { user: bob.user },
    )
    .await;
    let _ = ok(&bob, &mut b, room, e, RoomAction::JoinByLink { token }).await;
    relay.stop().await;
}

#[tokio::test]
async fn links_expire_get_used_up_and_can_be_revoked() {
    let relay = start_relay().await;
    let (alice, mut a) = register(&relay, Transport::Quic, "alice").await;
    let (bob, mut b) = register(&relay, Transport::Ws, "bob").await;
    let (carol, mut c) = register(&relay, Transport::Quic, "carol").await;
    let (room, e) = create(&alice, &mut a, &room_name("links")).await;

    // One use.
    let (once, e) = make_link(&alice, &mut a, room, e, None, Some(1)).await;
    let e = ok(
        &bob,
        &mut b,
        room,
        e,
        RoomAction::JoinByLink { token: once },
    )
    .await;
    assert!(matches!(
        next_change(&mut a).await,
        RoomAction::JoinByLink { .. }
    ));
    assert_eq!(
        refused(
            change(
                &carol,
                &mut c,
                room,
                e,
                RoomAction::JoinByLink { token: once }
            )
            .await
        ),
        ErrorCode::LINK_INVALID
    );
    let req = c.req();
    c.send(ClientFrame::ResolveLink(ResolveLink { req, token: once }))
        .await;
    assert_eq!(refused(c.expect_np().await), ErrorCode::LINK_INVALID);

    // Expired (a second ago).
    let (old, e) = make_link(
        &alice,
        &mut a,
        room,
        e,
        Some(Timestamp(now_ms() - 1_000)),
        None,
    )
    .await;
    let req = c.req();
    c.send(ClientFrame::ResolveLink(ResolveLink { req, token: old }))
        .await;
    assert_eq!(refused(c.expect_np().await), ErrorCode::LINK_INVALID);
    assert_eq!(
        refused(
            change(
                &carol,
                &mut c,
                room,
                e,
                RoomAction::JoinByLink { token: old }
            )
            .await
        ),
        ErrorCode::LINK_INVALID
    );

    // Revoked.
    let (live, e) = make_link(
        &alice,
        &mut a,
        room,
        e,
        Some(Timestamp(now_ms() + 3_600_000)),
        Some(10),
    )
    .await;
    let e = ok(
        &alice,
        &mut a,
        room,
        e,
        RoomAction::RevokeLink { token: live },
    )
    .await;
    assert_eq!(
        refused(
            change(
                &carol,
                &mut c,
                room,
                e,
                RoomAction::JoinByLink { token: live }
            )
            .await
        ),
        ErrorCode::LINK_INVALID
    );
    // Bob, a member, saw the link changes; he may not make links.
    for _ in 0..3 {
        let _ = next_change(&mut b).await;
    }
    assert_eq!(
        refused(
            change(
                &bob,
                &mut b,
                room,
                e,
                RoomAction::CreateLink {
                    expires_at: None,
                    max_uses: None
                }
            )
            .await
        ),
        ErrorCode::FORBIDDEN
    );
    relay.stop().await;
}

#[tokio::test]
async fn stale_epoch_gets_the_current_epoch_and_a_retry_succeeds() {
    let relay = start_relay().await;
    let (alice, mut a) = register(&relay, Transport::Ws, "alice").await;
    let (bob, _b) = register(&relay, Transport::Ws, "bob").await;
    let (room, e) = create(&alice, &mut a, &room_name("epoch")).await;
    let (_, e) = make_link(&alice, &mut a, room, e, None, None).await;
    match change(
        &alice,
        &mut a,
        room,
        e - 1,
        RoomAction::Invite { user: bob.user },
    )
    .await
    {
        ServerFrame::Error(err) => {
            assert_eq!(err.code, ErrorCode::STALE_EPOCH);
            assert_eq!(err.detail, ErrorDetail::Epoch { current: e });
        }
        f => panic!("{f:?}"),
    }
    assert_eq!(
        ok(
            &alice,
            &mut a,
            room,
            e,
            RoomAction::Invite { user: bob.user }
        )
        .await,
        e + 1
    );
    relay.stop().await;
}

#[tokio::test]
async fn forged_or_foreign_signatures_and_skewed_clocks_are_refused() {
    let relay = start_relay().await;
    let (alice, mut a) = register(&relay, Transport::Quic, "alice").await;
    let (bob, _b) = register(&relay, Transport::Quic, "bob").await;
    let (room, e) = create(&alice, &mut a, &room_name("forge")).await;

    // Signed by another key, claiming alice's device.
    let mut s = signed(&alice, room, e, RoomAction::Invite { user: bob.user });
    s.signature = FixedBytes(
        Identity::new()
            .pair
            .sign_room_change(&s.change.signed_bytes()),
    );
    let req = a.req();
    a.send(ClientFrame::ChangeRoom(ChangeRoom { req, change: s }))
        .await;
    assert_eq!(refused(a.expect_np().await), ErrorCode::BAD_SIGNATURE);
    // A valid signature over different bytes.
    let mut s = signed(&alice, room, e, RoomAction::Invite { user: bob.user });
    s.change.action = RoomAction::Invite { user: alice.user };
    let req = a.req();
    a.send(ClientFrame::ChangeRoom(ChangeRoom { req, change: s }))
        .await;
    assert_eq!(refused(a.expect_np().await), ErrorCode::BAD_SIGNATURE);
    // An hour-old change.
    let mut change = signed(&alice, room, e, RoomAction::Invite { user: bob.user }).change;
    change.at = Timestamp(now_ms() - 3_600_000);
    let signature = FixedBytes(alice.id.pair.sign_room_change(&change.signed_bytes()));
    let req = a.req();
    a.send(ClientFrame::ChangeRoom(ChangeRoom {
        req,
        change: SignedRoomChange { change, signature },
    }))
    .await;
    assert_eq!(refused(a.expect_np().await), ErrorCode::CLOCK_SKEW);
    // Nothing changed.
    assert_eq!(
        ok(
            &alice,
            &mut a,
            room,
            e,
            RoomAction::Invite { user: bob.user }
        )
        .await,
        e + 1
    );
    relay.stop().await;
}

#[tokio::test]
async fn roles_limit_who_may_kick_and_the_owner_may_promote() {
    let relay = start_relay().await;
    let (alice, mut a) = register(&relay, Transport::Ws, "alice").await;
    let (bob, mut b) = register(&relay, Transport::Quic, "bob").await;
    let (carol, mut c) = register(&relay, Transport::Ws, "carol").await;
    let (room, e) = create(&alice, &mut a, &room_name("roles")).await;
    let e = three_member_room(&alice, &mut a, &bob, &mut b, &carol, &mut c, room, e).await;
    let e = ok(
        &alice,
        &mut a,
        room,
        e,
        RoomAction::SetRole {
            user: bob.user,
            role: Role::Admin,
        },
    )
    .await;
    assert!(matches!(
        next_change(&mut b).await,
        RoomAction::SetRole { .. }
    ));
    assert!(matches!(
        next_change(&mut c).await,
        RoomAction::SetRole { .. }
    ));
    // A member cannot kick an admin (or anyone), nor set roles.
    assert_eq!(
        refused(change(&carol, &mut c, room, e, RoomAction::Kick { user: bob.user }).await),
        ErrorCode::FORBIDDEN
    );
    assert_eq!(
        refused(
            change(
                &carol,
                &mut c,
                room,
                e,
                RoomAction::SetRole {
                    user: carol.user,
                    role: Role::Owner
                }
            )
            .await
        ),
        ErrorCode::FORBIDDEN
    );
    // An admin cannot kick the owner, nor promote.
    assert_eq!(
        refused(change(&bob, &mut b, room, e, RoomAction::Kick { user: alice.user }).await),
        ErrorCode::FORBIDDEN
    );
    assert_eq!(
        refused(
            change(
                &bob,
                &mut b,
                room,
                e,
                RoomAction::SetRole {
                    user: carol.user,
                    role: Role::Admin
                }
            )
            .await
        ),
        ErrorCode::FORBIDDEN
    );
    // An admin kicks a member.
    let e = ok(&bob, &mut b, room, e, RoomAction::Kick { user: carol.user }).await;
    assert!(matches!(next_change(&mut a).await, RoomAction::Kick { .. }));
    assert!(matches!(next_change(&mut c).await, RoomAction::Kick { .. }));
    // The owner hands over ownership and becomes an admin.
    match change(
        &alice,
        &mut a,
        room,
        e,
        RoomAction::SetRole {
            user: bob.user,
            role: Role::Owner,
        },
    )
    .await
    {
        ServerFrame::RoomInfo(i) => {
            let role = |u| i.members.iter().find(|m| m.user == u).unwrap().role;
            assert_eq!(role(bob.user), Role::Owner);
            assert_eq!(role(alice.user), Role::Admin);
        }
        f => panic!("{f:?}"),
    }
    // Alice can now leave.
    assert!(matches!(
        change(&alice, &mut a, room, e + 1, RoomAction::Leave).await,
        ServerFrame::Done(_)
    ));
    relay.stop().await;
}

#[tokio::test]
async fn room_ephemerals_reach_online_members_only() {
    let relay = start_relay().await;
    let (alice, mut a) = register(&relay, Transport::Quic, "alice").await;
    let (bob, mut b) = register(&relay, Transport::Ws, "bob").await;
    let (_eve, mut v) = register(&relay, Transport::Ws, "eve").await;
    let (room, e) = create(&alice, &mut a, &room_name("typing")).await;
    let e = ok(
        &alice,
        &mut a,
        room,
        e,
        RoomAction::Invite { user: bob.user },
    )
    .await;
    assert!(matches!(
        next_change(&mut b).await,
        RoomAction::Invite { .. }
    ));
    let _ = ok(&bob, &mut b, room, e, RoomAction::Accept).await;
    assert!(matches!(next_change(&mut a).await, RoomAction::Accept));
    // A non-member's room ephemeral goes nowhere; a member's reaches bob.
    for (cl, text) in [(&mut v, &b"from eve"[..]), (&mut a, &b"typing"[..])] {
        cl.send(ClientFrame::SendEphemeral(SendEphemeral {
            to: EphemeralTarget::Room {
                room,
                payload: BoundedBytes::new(text.to_vec()).unwrap(),
            },
        }))
        .await;
    }
    match b.expect_np().await {
        ServerFrame::Ephemeral(x) => {
            assert_eq!(x.room, Some(room));
            assert_eq!(x.payload.as_slice(), b"typing");
        }
        f => panic!("{f:?}"),
    }
    relay.stop().await;
}

#[tokio::test]
async fn presence_is_visible_to_room_co_members() {
    let relay = start_relay().await;
    let (alice, mut a) = register(&relay, Transport::Quic, "alice").await;
    let (bob, mut b) = register(&relay, Transport::Ws, "bob").await;
    // Alice lists bob as a contact; bob does not list her.
    let req = a.req();
    a.send(ClientFrame::EditContact(EditContact {
        req,
        user: bob.user,
        add: true,
    }))
    .await;
    assert!(matches!(a.expect().await, ServerFrame::Done(_)));
    let presence_of_bob = |f: ServerFrame| match f {
        ServerFrame::Contacts(c) => c.contacts.as_slice()[0].presence,
        f => panic!("{f:?}"),
    };
    let req = a.req();
    a.send(ClientFrame::ListContacts(ListContacts { req }))
        .await;
    assert_eq!(presence_of_bob(a.expect().await), None);

    let (room, e) = create(&alice, &mut a, &room_name("pres")).await;
    let e = ok(
        &alice,
        &mut a,
        room,
        e,
        RoomAction::Invite { user: bob.user },
    )
    .await;
    assert!(matches!(
        next_change(&mut b).await,
        RoomAction::Invite { .. }
    ));
    let _ = ok(&bob, &mut b, room, e, RoomAction::Accept).await;
    assert!(matches!(next_change(&mut a).await, RoomAction::Accept));

    // Co-members now: the list shows it, and changes are pushed.
    let req = a.req();
    a.send(ClientFrame::ListContacts(ListContacts { req }))
        .await;
    assert_eq!(presence_of_bob(a.expect().await), Some(Presence::Online));
    b.send(ClientFrame::SetPresence(SetPresence {
        status: PresenceStatus::Away,
    }))
    .await;
    assert!(matches!(
        a.expect().await,
        ServerFrame::Presence(p) if p.user == bob.user && p.presence == Presence::Away
    ));
    relay.stop().await;
}

#[tokio::test]
async fn room_limits_refuse_and_other_rooms_keep_working() {
    let relay = start_relay_with(|c| {
        c.limits.max_room_members = 2;
        c.limits.max_rooms_per_user = 1;
        c.limits.max_room_links = 1;
    })
    .await;
    let mut counted = Vec::new();
    for l in [
        "max_room_members",
        "max_rooms_per_user",
        "max_room_links",
        "room_clock_skew_ms",
    ] {
        counted.push(Counted::new(&relay, l).await);
    }
    let (alice, mut a) = register(&relay, Transport::Quic, "alice").await;
    let (bob, mut b) = register(&relay, Transport::Ws, "bob").await;
    let (carol, mut c) = register(&relay, Transport::Quic, "carol").await;
    let (dave, mut d) = register(&relay, Transport::Ws, "dave").await;
    let (room, e) = create(&alice, &mut a, &room_name("full")).await;
    // Alice and an invitation to bob: full.
    let e = ok(
        &alice,
        &mut a,
        room,
        e,
        RoomAction::Invite { user: bob.user },
    )
    .await;
    let invite_carol = RoomAction::Invite { user: carol.user };
    let f = change(&alice, &mut a, room, e, invite_carol).await;
    assert_eq!(refused(f), ErrorCode::ROOM_FULL);
    // One room per account: alice cannot make a second.
    let f = change(
        &alice,
        &mut a,
        RoomId::from_bytes([0; 16]),
        0,
        RoomAction::Create {
            name: room_name("second"),
        },
    )
    .await;
    assert_eq!(refused(f), ErrorCode::FORBIDDEN);
    // One live link per room.
    let (_, ae) = make_link(&alice, &mut a, room, e, None, None).await;
    let link = RoomAction::CreateLink {
        expires_at: None,
        max_uses: None,
    };
    assert_eq!(
        refused(change(&alice, &mut a, room, ae, link).await),
        ErrorCode::FORBIDDEN
    );
    // A change signed an hour ago.
    let mut ch = signed(&alice, room, ae, RoomAction::Kick { user: bob.user }).change;
    ch.at = Timestamp(now_ms() - 3_600_000);
    let signature = FixedBytes(alice.id.pair.sign_room_change(&ch.signed_bytes()));
    let req = a.req();
    a.send(ClientFrame::ChangeRoom(ChangeRoom {
        req,
        change: SignedRoomChange {
            change: ch,
            signature,
        },
    }))
    .await;
    assert_eq!(refused(a.expect_np().await), ErrorCode::CLOCK_SKEW);
    for c in &counted {
        c.saw(1).await;
    }

    // Carol's own room works: she invites dave, he joins and hears her.
    let (other, e) = create(&carol, &mut c, &room_name("other")).await;
    let e = ok(
        &carol,
        &mut c,
        other,
        e,
        RoomAction::Invite { user: dave.user },
    )
    .await;
    assert!(matches!(next_change(&mut d).await, RoomAction::Invite { user } if user == dave.user));
    ok(&dave, &mut d, other, e, RoomAction::Accept).await;
    assert!(matches!(next_change(&mut c).await, RoomAction::Accept));
    sent(&carol, &mut c, other, b"still works").await;
    assert_eq!(next_msg(&mut d).await, b"still works");
    // And bob, invited to the full room, still joins it.
    assert!(matches!(next_change(&mut b).await, RoomAction::Invite { user } if user == bob.user));
    assert!(matches!(
        next_change(&mut b).await,
        RoomAction::CreateLink { .. }
    ));
    ok(&bob, &mut b, room, ae, RoomAction::Accept).await;
    others_keep_working(&relay, LOCALHOST).await;
    relay.stop().await;
}
