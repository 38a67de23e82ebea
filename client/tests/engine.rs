#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The client engine against a fake relay, with simulated time.

mod harness;

use harness::{RELAY, World};
use spider_client::content::ReceiptKind;
use spider_client::crypto_store::identity_to_wire;
use spider_client::engine::{ClientError, Event};
use spider_client::profile::Account;
use spider_protocol::ClientFrame;
use spider_protocol::ids::{DeviceAddress, DeviceId};
use spider_protocol::name::{RoomName, Username};

fn sent(w: &World, i: usize) -> usize {
    w.clients[i]
        .events
        .iter()
        .filter(|e| matches!(e, Event::Sent { .. }))
        .count()
}

#[test]
fn one_to_one_messages_flow_both_ways() {
    let mut w = World::new();
    let a = w.add("alice");
    let b = w.add("bob");
    w.send_text(a, Username::parse("bob").unwrap(), "hello bob");
    w.drive();
    assert_eq!(w.texts(b), ["hello bob"]);
    assert_eq!(sent(&w, a), 1);
    let alice = w.user("alice");
    w.send_text(b, alice, "hi alice");
    w.drive();
    assert_eq!(w.texts(a), ["hi alice"]);
    w.send_text(a, w.user("bob"), "how are you?");
    w.drive();
    assert_eq!(w.texts(b), ["hello bob", "how are you?"]);
    assert_eq!(w.errors(a) + w.errors(b), 0);
    // Both keep history: what they sent and what they received.
    let bob = w.user("bob");
    let conv = w.clients[a].engine().profile().conversation(&bob).unwrap();
    let texts: Vec<String> = conv
        .iter()
        .map(|e| match e.decode().unwrap().body {
            spider_client::content::Body::Text { body } => body,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(texts, ["hello bob", "hi alice", "how are you?"]);
    // Both sides see the same safety number.
    let alice = w.user("alice");
    let sa = w.clients[a]
        .engine()
        .profile()
        .safety_number(&bob, DeviceId(1))
        .unwrap()
        .unwrap();
    let sb = w.clients[b]
        .engine()
        .profile()
        .safety_number(&alice, DeviceId(1))
        .unwrap()
        .unwrap();
    assert_eq!(sa.digits(), sb.digits());
    assert_eq!(sa.digits().len(), 60);
    assert!(
        w.relay
            .device(DeviceAddress {
                user: w.user("bob"),
                device: DeviceId(1)
            })
            .mailbox
            .is_empty()
    );
}

#[test]
fn first_message_consumes_a_one_time_prekey() {
    let mut w = World::new();
    let a = w.add("alice");
    let _b = w.add("bob");
    let bob1 = DeviceAddress {
        user: w.user("bob"),
        device: DeviceId(1),
    };
    let before = (
        w.relay.device(bob1).otks.len(),
        w.relay.device(bob1).kems.len(),
    );
    assert_eq!(before, (100, 20));
    w.send_text(a, w.user("bob"), "one");
    w.drive();
    assert_eq!(w.relay.device(bob1).otks.len(), 99);
    assert_eq!(w.relay.device(bob1).kems.len(), 19);
    // The second message uses the session: no second bundle.
    w.send_text(a, w.user("bob"), "two");
    w.drive();
    assert_eq!(w.relay.device(bob1).otks.len(), 99);
    assert_eq!(w.relay.fetches, 1);
}

#[test]
fn offline_recipient_gets_everything_in_order_when_it_comes_back() {
    let mut w = World::new();
    let a = w.add("alice");
    let b = w.add("bob");
    w.disconnect(b);
    for i in 0..5 {
        w.send_text(a, w.user("bob"), &format!("m{i}"));
    }
    w.drive();
    assert_eq!(sent(&w, a), 5);
    assert!(w.texts(b).is_empty());
    w.connect(b);
    w.drive();
    assert_eq!(w.texts(b), ["m0", "m1", "m2", "m3", "m4"]);
    assert!(
        w.clients[b]
            .events
            .iter()
            .any(|e| matches!(e, Event::CaughtUp))
    );
    // Acked: a reconnect delivers nothing again.
    w.disconnect(b);
    w.connect(b);
    w.drive();
    assert_eq!(w.texts(b).len(), 5);
}

#[test]
fn sender_offline_messages_wait_in_the_outbox() {
    let mut w = World::new();
    let a = w.add("alice");
    let b = w.add("bob");
    w.disconnect(a);
    w.send_text(a, Username::parse("bob").unwrap(), "queued");
    w.drive();
    assert!(w.texts(b).is_empty());
    assert_eq!(w.clients[a].engine().profile().outbox().unwrap().len(), 1);
    w.connect(a);
    w.drive();
    assert_eq!(w.texts(b), ["queued"]);
    assert!(w.clients[a].engine().profile().outbox().unwrap().is_empty());
}

#[test]
fn messages_written_offline_in_the_same_millisecond_keep_their_order() {
    let mut w = World::new();
    let a = w.add("alice");
    let b = w.add("bob");
    let bob = w.user("bob");
    w.send_text(a, bob, "hello");
    w.drive();
    w.disconnect(a);
    // The harness's clock stands still: every entry is written at one `now`.
    let want: Vec<String> = (0..12).map(|i| format!("offline {i}")).collect();
    for t in &want {
        w.send_text(a, bob, t);
    }
    w.drive();
    w.connect(a);
    w.drive();
    assert_eq!(w.texts(b)[1..], want[..]);
    assert!(w.clients[a].engine().profile().outbox().unwrap().is_empty());
}

fn lost_sent(relay_dedup: bool) {
    let mut w = World::new();
    w.relay.dedup = relay_dedup;
    let a = w.add("alice");
    let b = w.add("bob");
    w.clients[a].lose_next_sent = true;
    let id = w.send_text(a, w.user("bob"), "once");
    w.drive();
    assert!(!w.clients[a].online);
    assert_eq!(sent(&w, a), 0);
    w.connect(a);
    w.drive();
    assert!(w.clients[a].events.contains(&Event::Sent { id }));
    assert_eq!(w.texts(b), ["once"]);
    // And after Bob reconnects, still once.
    w.disconnect(b);
    w.connect(b);
    w.drive();
    assert_eq!(w.texts(b), ["once"]);
}

#[test]
fn retransmission_after_a_lost_sent_is_shown_once() {
    lost_sent(true);
}

#[test]
fn retransmission_is_shown_once_even_if_the_relay_stores_it_twice() {
    lost_sent(false);
}

fn add_second_device(w: &mut World, name: &str) -> usize {
    let user = w.user(name);
    let i = w.add_with_account(Account {
        relay_name: RELAY.into(),
        username: Username::parse(name).unwrap(),
        user: Some(user),
        device: None,
    });
    w.clients[i]
        .engine()
        .set_device_approval(DeviceId(1), [0; 64]);
    w.connect(i);
    w.drive();
    i
}

#[test]
fn a_second_device_gets_copies_of_own_sent_messages() {
    let mut w = World::new();
    let a1 = w.add("alice");
    let b = w.add("bob");
    let a2 = add_second_device(&mut w, "alice");
    assert!(w.clients[a2].events.iter().any(|e| matches!(
        e,
        Event::Connected {
            device: DeviceId(2),
            ..
        }
    )));
    w.send_text(a1, w.user("bob"), "from laptop");
    w.drive();
    assert_eq!(w.texts(b), ["from laptop"]);
    assert_eq!(w.texts(a2), ["from laptop"]);
    let copy = w.clients[a2].engine().profile().history().unwrap();
    assert_eq!(copy[0].peer, Some(w.user("bob")));
    // Bob's answer reaches both of Alice's devices.
    w.send_text(b, w.user("alice"), "to both");
    w.drive();
    assert_eq!(w.texts(a1), ["to both"]);
    assert_eq!(w.texts(a2), ["from laptop", "to both"]);
}

#[test]
fn a_new_device_of_the_peer_is_found_through_mismatched_devices() {
    let mut w = World::new();
    let a = w.add("alice");
    let b1 = w.add("bob");
    w.send_text(a, w.user("bob"), "first");
    w.drive();
    let b2 = add_second_device(&mut w, "bob");
    w.send_text(a, w.user("bob"), "second");
    w.drive();
    assert_eq!(w.texts(b1), ["first", "second"]);
    assert_eq!(w.texts(b2), ["second"]);
    assert_eq!(w.errors(a), 0);
}

fn room_of_three(w: &mut World) -> (usize, usize, usize, spider_protocol::ids::RoomId) {
    let (a, b, c, room) = room_with_carol_invited(w, "garden");
    let now = w.now;
    w.clients[c].engine().accept_invite(room, now).unwrap();
    w.drive();
    assert_eq!(w.relay.rooms[&room].members.len(), 3);
    (a, b, c, room)
}

/// Alice owns room `name` with Bob in it; Carol is invited and has not
/// joined.
fn room_with_carol_invited(
    w: &mut World,
    name: &str,
) -> (usize, usize, usize, spider_protocol::ids::RoomId) {
    let a = w.add("alice");
    let b = w.add("bob");
    let c = w.add("carol");
    let now = w.now;
    w.clients[a]
        .engine()
        .create_room(RoomName::parse(name).unwrap(), now)
        .unwrap();
    w.drive();
    let room = *w.relay.rooms.keys().next().unwrap();
    let invite = |w: &mut World, name: &str| {
        let now = w.now;
        let u = w.user(name);
        w.clients[a].engine().invite(room, u, now).unwrap();
        w.drive();
    };
    invite(w, "bob");
    let now = w.now;
    w.clients[b].engine().accept_invite(room, now).unwrap();
    w.drive();
    invite(w, "carol");
    (a, b, c, room)
}

#[test]
fn room_messages_reach_all_three_members() {
    let mut w = World::new();
    let (a, b, c, room) = room_of_three(&mut w);
    w.send_room(a, room, "hello garden");
    w.drive();
    assert_eq!(w.texts(b), ["hello garden"]);
    assert_eq!(w.texts(c), ["hello garden"]);
    w.send_room(b, room, "hi from bob");
    w.drive();
    assert_eq!(w.texts(a), ["hi from bob"]);
    assert_eq!(w.texts(c), ["hello garden", "hi from bob"]);
    for i in [a, b, c] {
        assert_eq!(w.errors(i), 0, "client {i}");
    }
    let got = w.clients[c].events.iter().find_map(|e| match e {
        Event::MessageReceived { room, .. } => Some(*room),
        _ => None,
    });
    assert_eq!(got, Some(Some(room)));
}

/// Client `i` and the relay exchange frames, nobody else moves; frames for
/// which `hold` is true are kept back and returned.
fn alone(w: &mut World, i: usize, hold: impl Fn(&ClientFrame) -> bool) -> Vec<ClientFrame> {
    let mut held = Vec::new();
    for _ in 0..20 {
        for f in w.outgoing(i) {
            if hold(&f) {
                held.push(f);
            } else {
                w.relay.handle(i, f);
            }
        }
        let replies: Vec<_> = w.relay.out.get_mut(&i).unwrap().drain(..).collect();
        for f in replies {
            let now = w.now;
            w.clients[i].engine().handle_frame(f, now);
        }
    }
    held
}

fn everyone_read_welcome_once(w: &World, a: usize, b: usize, c: usize) {
    assert_eq!(w.texts(b), ["welcome"]);
    assert_eq!(w.texts(c), ["welcome"]);
    for i in [a, b, c] {
        assert_eq!(w.errors(i), 0, "client {i}: {:?}", w.clients[i].events);
    }
    let sent = w.clients[a]
        .events
        .iter()
        .filter(|e| matches!(e, Event::Sent { .. }))
        .count();
    assert_eq!(sent, 1);
}

#[test]
fn a_member_who_joins_while_our_sender_key_is_on_its_way_can_read_the_message() {
    // Alice reads the room (GetRoom) to hand out her Sender Key; Carol joins
    // before Alice's message goes. Alice hears of it (and reads the room
    // again) while her key is on its way to Bob, so Carol lacks it: Alice
    // must hand it to her before sending. Before, she sent at once, and Carol
    // got a message she had no key for ("no sender key for this room
    // member"): lost to her.
    let mut w = World::new();
    let (a, b, c, room) = room_with_carol_invited(&mut w, "porch");
    w.send_room(a, room, "welcome");
    let reads = w.outgoing(a);
    assert!(
        reads.iter().any(|f| matches!(f, ClientFrame::GetRoom(_))),
        "{reads:?}"
    );
    for f in reads {
        w.relay.handle(a, f);
    }
    let now = w.now;
    w.clients[c].engine().accept_invite(room, now).unwrap();
    assert!(alone(&mut w, c, |_| false).is_empty());
    assert_eq!(w.relay.rooms[&room].members.len(), 3);
    w.drive();
    everyone_read_welcome_once(&w, a, b, c);
}

#[test]
fn a_room_message_in_flight_when_a_member_joins_is_refused_and_sent_again_to_all() {
    // Alice's SendRoom is on the wire when Carol joins: the relay, which
    // would fan it out to Carol too, refuses it (STALE_EPOCH); Alice reads
    // the room again, hands Carol her key and sends again.
    let mut w = World::new();
    let (a, b, c, room) = room_with_carol_invited(&mut w, "porch");
    w.send_room(a, room, "welcome");
    let held = alone(&mut w, a, |f| matches!(f, ClientFrame::SendRoom(_)));
    assert_eq!(held.len(), 1, "{held:?}");
    let now = w.now;
    w.clients[c].engine().accept_invite(room, now).unwrap();
    assert!(alone(&mut w, c, |_| false).is_empty());
    assert_eq!(w.relay.rooms[&room].members.len(), 3);
    for f in held {
        w.relay.handle(a, f);
    }
    w.drive();
    assert_eq!(w.relay.room_sends_refused, 1);
    everyone_read_welcome_once(&w, a, b, c);
}

#[test]
fn a_member_whose_devices_we_forgot_still_gets_our_sender_key() {
    // Alice's contact record for Bob lists no device (a prekey reply without the device empties
    // it). Her first room message must still reach Bob: the Sender Key's 1:1 leg to him used to
    // finish at once, sending nothing, and Bob could not read her room messages.
    let mut w = World::new();
    let (a, b, c, room) = room_of_three(&mut w);
    let bob = w.user("bob");
    w.disconnect(a);
    let engine = w.clients[a].engine.take().unwrap();
    let mut profile = engine.into_profile();
    let mut contact = profile.contact(&bob).unwrap().expect("alice knows bob");
    assert!(!contact.devices.is_empty());
    contact.devices.clear();
    profile.save_contact(&contact).unwrap();
    w.clients[a].engine = Some(spider_client::engine::Engine::new(
        profile,
        harness::rng(200),
    ));
    w.connect(a);
    w.drive();
    w.send_room(a, room, "after forgetting");
    w.drive();
    assert_eq!(w.texts(b), ["after forgetting"]);
    assert_eq!(w.texts(c), ["after forgetting"]);
    for i in [a, b, c] {
        assert_eq!(w.errors(i), 0, "client {i}: {:?}", w.clients[i].events);
    }
    // And the lookup put Bob's device back.
    let known = w.clients[a]
        .engine()
        .profile()
        .contact(&bob)
        .unwrap()
        .unwrap();
    assert!(!known.devices.is_empty());
}

#[test]
fn kicked_member_cannot_read_new_messages() {
    let mut w = World::new();
    let (a, b, c, room) = room_of_three(&mut w);
    w.send_room(a, room, "before");
    w.drive();
    assert_eq!(w.texts(c), ["before"]);
    let now = w.now;
    let carol = w.user("carol");
    w.clients[a].engine().kick(room, carol, now).unwrap();
    w.drive();
    // A malicious relay keeps giving Carol the room's ciphertexts.
    w.relay.leak_room_to.push(w.user("carol"));
    w.send_room(a, room, "after");
    w.drive();
    assert_eq!(w.texts(b), ["before", "after"]);
    assert_eq!(w.texts(c), ["before"]);
    assert!(
        w.clients[c]
            .events
            .iter()
            .any(|e| matches!(e, Event::Error(ClientError::Decrypt { .. })))
    );
    // Bob, who saw the kick, rotates too before he speaks.
    w.send_room(b, room, "bob after");
    w.drive();
    assert_eq!(w.texts(a), ["bob after"]);
    assert_eq!(w.texts(c), ["before"]);
}

#[test]
fn identity_change_surfaces_as_an_event() {
    let mut w = World::new();
    let a = w.add("alice");
    let b = w.add("bob");
    w.send_text(a, w.user("bob"), "hello");
    w.drive();
    assert_eq!(w.texts(b), ["hello"]);
    // Bob reinstalls: a new identity on the same device.
    let bob = w.user("bob");
    w.disconnect(b);
    let b2 = w.add_with_account(Account {
        relay_name: RELAY.into(),
        username: Username::parse("bob").unwrap(),
        user: Some(bob),
        device: Some(DeviceId(1)),
    });
    let new_identity = identity_to_wire(w.clients[b2].engine().profile().identity().public());
    let dev = w.relay.device_mut(DeviceAddress {
        user: bob,
        device: DeviceId(1),
    });
    dev.identity = new_identity;
    dev.otks.clear();
    dev.kems.clear();
    dev.mailbox.clear();
    w.connect(b2);
    w.drive();
    let alice = w.user("alice");
    w.send_text(b2, alice, "new phone");
    w.drive();
    assert_eq!(w.texts(a), ["new phone"]);
    assert!(w.clients[a].events.contains(&Event::IdentityChanged {
        user: bob,
        device: DeviceId(1)
    }));
    // And Alice's answer reaches the new installation.
    w.send_text(a, bob, "welcome back");
    w.drive();
    assert_eq!(w.texts(b2), ["welcome back"]);
}

#[test]
fn restart_from_the_profile_keeps_sessions() {
    let mut w = World::new();
    let a = w.add("alice");
    let b = w.add("bob");
    w.send_text(a, w.user("bob"), "before restart");
    w.drive();
    w.restart(a);
    w.restart(b);
    w.connect(a);
    w.connect(b);
    w.drive();
    let fetches = w.relay.fetches;
    w.send_text(a, w.user("bob"), "after restart");
    w.drive();
    w.send_text(b, w.user("alice"), "reply");
    w.drive();
    assert_eq!(w.relay.fetches, fetches, "no new session was needed");
    assert_eq!(w.texts(b), ["before restart", "after restart"]);
    assert_eq!(w.texts(a), ["reply"]);
    assert_eq!(w.errors(a) + w.errors(b), 0);
}

#[test]
fn a_rate_limited_message_waits_the_relays_delay_and_keeps_its_place() {
    // The relay refuses Alice's first send with RATE_LIMITED (retry after 500 ms). The message
    // used to fail (an error, and it waited in the outbox for the next connection while later
    // messages went first); now it goes again after the delay, and the order holds.
    let mut w = World::new();
    let a = w.add("alice");
    let b = w.add("bob");
    let bob = w.user("bob");
    w.relay.refuse_sends = 1;
    w.send_text(a, bob, "one");
    w.send_text(a, bob, "two");
    w.drive();
    assert!(w.texts(b).is_empty(), "nothing before the delay");
    let wake = w.clients[a].engine().poll_timeout().unwrap();
    assert!(wake >= w.now && wake <= w.now + 500, "wakes for the retry");
    // Not yet: 100 ms in, the message still waits.
    w.now += 100;
    let now = w.now;
    w.clients[a].engine().handle_timeout(now);
    w.drive();
    assert!(w.texts(b).is_empty());
    w.now += 500;
    let now = w.now;
    w.clients[a].engine().handle_timeout(now);
    w.drive();
    assert_eq!(w.texts(b), ["one", "two"]);
    assert_eq!(sent(&w, a), 2);
    assert_eq!(w.errors(a) + w.errors(b), 0);
}

#[test]
fn typing_notices_and_receipts_arrive() {
    let mut w = World::new();
    let a = w.add("alice");
    let b = w.add("bob");
    let bob = w.user("bob");
    let alice = w.user("alice");
    // No session yet: nothing is sent.
    let now = w.now;
    assert!(!w.clients[a].engine().send_typing(bob, true, now).unwrap());
    let id = w.send_text(a, bob, "hi");
    w.drive();
    let now = w.now;
    assert!(w.clients[a].engine().send_typing(bob, true, now).unwrap());
    w.drive();
    assert!(w.clients[b].events.contains(&Event::Typing {
        from: alice,
        started: true
    }));
    let now = w.now;
    w.clients[b]
        .engine()
        .send_receipt(alice, ReceiptKind::Read, vec![id], now)
        .unwrap();
    w.drive();
    assert!(w.clients[a].events.contains(&Event::Receipt {
        from: bob,
        kind: ReceiptKind::Read,
        ids: vec![id]
    }));
    // Receipts are not shown as messages.
    assert!(w.texts(a).is_empty());
}

#[test]
fn a_quiet_connection_pings_at_a_third_of_the_idle_timeout() {
    let mut w = World::new();
    let a = w.add("alice");
    let next = w.clients[a].engine().poll_timeout().unwrap();
    // The fake relay's idle timeout is 60 s.
    w.clients[a].engine().handle_timeout(next - 1);
    assert!(w.outgoing(a).is_empty());
    w.clients[a].engine().handle_timeout(next);
    let out = w.outgoing(a);
    assert!(matches!(out.as_slice(), [ClientFrame::Ping(_)]), "{out:?}");
}

#[test]
fn unknown_recipient_name_fails_the_message_and_empties_the_outbox() {
    let mut w = World::new();
    let a = w.add("alice");
    let id = w.send_text(a, Username::parse("nobody").unwrap(), "hello?");
    w.drive();
    assert!(w.clients[a].events.iter().any(|e| matches!(
        e,
        Event::Error(ClientError::Relay { message: Some(m), .. }) if *m == id
    )));
    assert!(w.clients[a].engine().profile().outbox().unwrap().is_empty());
}

#[test]
fn a_welcome_from_another_relay_is_refused() {
    let mut w = World::new();
    let i = w.add_with_account(Account {
        relay_name: "other.example".into(),
        username: Username::parse("mallory").unwrap(),
        user: None,
        device: None,
    });
    w.connect(i);
    w.drive();
    assert!(
        w.clients[i]
            .events
            .contains(&Event::Error(ClientError::WrongRelay))
    );
    assert!(w.relay.user_by_name("mallory").is_none());
}

#[test]
fn a_forged_room_change_is_ignored() {
    let mut w = World::new();
    let (a, b, c, room) = room_of_three(&mut w);
    // Bob knows Alice's device (a session came with the room's Sender Key).
    w.send_room(a, room, "hello");
    w.drive();
    let alice1 = DeviceAddress {
        user: w.user("alice"),
        device: DeviceId(1),
    };
    let carol = w.user("carol");
    let epoch = w.relay.rooms[&room].epoch;
    // The relay forges "Alice kicked Carol" without Alice's key.
    let forged = spider_protocol::message::SignedRoomChange {
        change: spider_protocol::message::RoomChange {
            room,
            epoch,
            actor: alice1,
            at: spider_protocol::ids::Timestamp(w.now),
            action: spider_protocol::message::RoomAction::Kick { user: carol },
        },
        signature: spider_protocol::bytes::FixedBytes([7; 64]),
    };
    let env = spider_protocol::message::Envelope {
        message_id: spider_protocol::ids::MessageId::from_bytes([0x5f; 16]),
        from: alice1,
        sent_at: spider_protocol::ids::Timestamp(w.now),
        body: spider_protocol::message::EnvelopeBody::RoomChange(forged),
    };
    let before = w.clients[b]
        .engine()
        .profile()
        .room(&room)
        .unwrap()
        .unwrap();
    let now = w.now;
    w.clients[b].engine().handle_frame(
        spider_protocol::ServerFrame::Deliver(spider_protocol::message::Deliver {
            seq: spider_protocol::ids::Seq(1000),
            envelope: env,
        }),
        now,
    );
    w.drive();
    assert!(
        w.clients[b]
            .events
            .contains(&Event::Error(ClientError::BadRoomChange))
    );
    // Nothing of the change was applied.
    let after = w.clients[b]
        .engine()
        .profile()
        .room(&room)
        .unwrap()
        .unwrap();
    assert_eq!(after, before);
    // And the room goes on for everyone, Carol included.
    w.send_room(b, room, "still here");
    w.drive();
    assert_eq!(w.texts(c), ["hello", "still here"]);
}

#[test]
fn a_long_connection_rotates_the_signed_prekey_weekly() {
    let mut w = World::new();
    let a = w.add("alice");
    let week = spider_client::crypto_store::SIGNED_PREKEY_ROTATION_SECS * 1000;
    let alice1 = DeviceAddress {
        user: w.user("alice"),
        device: DeviceId(1),
    };
    let first = w.relay.device(alice1).signed.clone().unwrap();
    let now = w.now;
    w.clients[a].engine().handle_timeout(now + week - 1000);
    let out = w.outgoing(a);
    assert!(
        !out.iter()
            .any(|f| matches!(f, ClientFrame::UploadPreKeys(_)))
    );
    w.clients[a].engine().handle_timeout(now + week);
    let out = w.outgoing(a);
    let Some(ClientFrame::UploadPreKeys(u)) = out
        .iter()
        .find(|f| matches!(f, ClientFrame::UploadPreKeys(_)))
    else {
        panic!("no rotation: {out:?}");
    };
    let next = u.prekeys.signed_prekey.clone().unwrap();
    assert_ne!(next.id, first.id);
    assert!(u.prekeys.last_resort_kem_prekey.is_some());
    assert!(u.prekeys.one_time_prekeys.is_empty());
}

/// spider-load's finding: alice and bob each fetch the other's bundle and
/// send first messages (three each, so each handshake's first message is
/// repeated) before either has read the other's; then more messages cross.
/// Every message arrives exactly once (before, the second first message of
/// the handshake one side had discarded was refused as a replay, after the
/// relay had acked it) and the conversation goes on.
#[test]
fn simultaneous_first_messages_all_arrive_exactly_once() {
    let mut w = World::new();
    let a = w.add("alice");
    let b = w.add("bob");
    let (alice, bob) = (w.user("alice"), w.user("bob"));
    // Nothing reaches either side until both have sent their three.
    w.relay.hold_pushes = true;
    for i in 1..=3 {
        w.send_text(a, bob, &format!("a{i}"));
        w.send_text(b, alice, &format!("b{i}"));
    }
    w.drive();
    assert_eq!(w.relay.fetches, 2);
    assert_eq!((sent(&w, a), sent(&w, b)), (3, 3));
    assert!(w.texts(a).is_empty() && w.texts(b).is_empty());
    // The mailboxes arrive (at reconnection), while new messages cross.
    w.relay.hold_pushes = false;
    for c in [a, b] {
        w.disconnect(c);
    }
    w.send_text(a, bob, "a4");
    w.send_text(b, alice, "b4");
    for c in [a, b] {
        w.connect(c);
    }
    w.drive();
    w.send_text(a, bob, "a5");
    w.send_text(b, alice, "b5");
    w.drive();
    w.send_text(a, bob, "a6");
    w.drive();
    w.send_text(b, alice, "b6");
    w.drive();
    let want = |p: &str| (1..=6).map(|i| format!("{p}{i}")).collect::<Vec<_>>();
    assert_eq!(w.texts(b), want("a"));
    assert_eq!(w.texts(a), want("b"));
    assert_eq!(w.errors(a) + w.errors(b), 0);
    assert_eq!((sent(&w, a), sent(&w, b)), (6, 6));
    // No further handshake was needed.
    assert_eq!(w.relay.fetches, 2);
    for user in [alice, bob] {
        let d = w.relay.device(DeviceAddress {
            user,
            device: DeviceId(1),
        });
        assert!(d.mailbox.is_empty());
    }
}
