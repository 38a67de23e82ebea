//! Multi-device accounts, contacts, presence and profiles. (Slow consumers
//! and heartbeats are in limits.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use spider_protocol::bytes::FixedBytes;
use spider_protocol::error::ErrorDetail;
use spider_protocol::ids::{DeviceId, MessageId};
use spider_protocol::message::{
    AddDevice, EditContact, EnvelopeBody, ListContacts, Presence, PresenceStatus, SetPresence,
};
use spider_protocol::{ClientFrame, ErrorCode, ServerFrame};

fn mid() -> MessageId {
    MessageId::from_bytes(random())
}

#[tokio::test]
async fn an_approved_device_joins_and_senders_must_include_it() {
    let relay = start_relay().await;
    let (alice, mut a1) = register(&relay, Transport::Quic, "alice").await;
    let (bob, mut b) = register(&relay, Transport::Ws, "bob").await;

    // A second device for alice, approved by the first.
    let new = Identity::new();
    let mut a2 = Client::connect(&relay, Transport::Ws).await;
    let w = a2.hello().await;
    let req = a2.req();
    let add = |approval: FixedBytes<64>, auth: FixedBytes<64>| {
        ClientFrame::AddDevice(AddDevice {
            req,
            user: alice.user,
            identity: new.keys.clone(),
            prekeys: new.prekeys(1, 25, 25),
            approver: alice.device,
            approval,
            auth,
        })
    };
    let auth = new.auth(&relay.name, &a2.exporter, &w.challenge.0);
    // Approved by the new key itself: refused.
    a2.send(add(new.approve(alice.user, &new.keys.signing.0), auth))
        .await;
    assert!(
        matches!(a2.expect().await, ServerFrame::Error(e) if e.code == ErrorCode::BAD_SIGNATURE)
    );
    a2.send(add(alice.id.approve(alice.user, &new.keys.signing.0), auth))
        .await;
    let ok = expect_auth_ok(&mut a2).await;
    assert_eq!((ok.user, ok.device), (alice.user, DeviceId(2)));
    assert!(matches!(a2.expect().await, ServerFrame::CaughtUp(_)));

    // Bob's send naming only the first device is refused.
    let req = b.req();
    b.send(direct(req, mid(), alice.user, &[(alice.device, b"x")]))
        .await;
    match b.expect().await {
        ServerFrame::Error(e) => {
            assert_eq!(e.code, ErrorCode::MISMATCHED_DEVICES);
            assert!(
                matches!(e.detail, ErrorDetail::Devices { missing, .. } if missing.as_slice() == [DeviceId(2)])
            );
        }
        f => panic!("{f:?}"),
    }
    let id = mid();
    let req = b.req();
    b.send(direct(
        req,
        id,
        alice.user,
        &[(alice.device, b"to one"), (DeviceId(2), b"to two")],
    ))
    .await;
    assert!(matches!(b.expect().await, ServerFrame::Sent(_)));
    for (c, want) in [(&mut a1, &b"to one"[..]), (&mut a2, &b"to two"[..])] {
        match c.expect().await {
            ServerFrame::Deliver(d) => {
                assert_eq!(d.envelope.message_id, id);
                assert_eq!(d.envelope.from.user, bob.user);
                assert!(
                    matches!(d.envelope.body, EnvelopeBody::Direct { ciphertext } if ciphertext.as_slice() == want)
                );
            }
            f => panic!("{f:?}"),
        }
    }

    // Sync to my own other device: every device but the sender.
    let id = mid();
    let req = a1.req();
    a1.send(direct(req, id, alice.user, &[(DeviceId(2), b"sync")]))
        .await;
    assert!(matches!(a1.expect().await, ServerFrame::Sent(_)));
    assert!(
        matches!(a2.expect().await, ServerFrame::Deliver(d) if d.envelope.message_id == id && d.envelope.from.device == alice.device)
    );
    a1.close().await;
    a2.close().await;
    b.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn contacts_see_presence_changes() {
    let relay = start_relay().await;
    let (alice, mut a) = register(&relay, Transport::Quic, "alice").await;
    let (bob, mut b) = register(&relay, Transport::Ws, "bob").await;
    for (c, other) in [(&mut a, bob.user), (&mut b, alice.user)] {
        let req = c.req();
        c.send(ClientFrame::EditContact(EditContact {
            req,
            user: other,
            add: true,
        }))
        .await;
        assert!(matches!(c.expect().await, ServerFrame::Done(d) if d.req == req));
    }
    let req = a.req();
    a.send(ClientFrame::ListContacts(ListContacts { req }))
        .await;
    match a.expect().await {
        ServerFrame::Contacts(c) => {
            let c = &c.contacts.as_slice()[0];
            assert_eq!((c.user, &c.username), (bob.user, &bob.username));
            assert_eq!(c.presence, Some(Presence::Online));
        }
        f => panic!("{f:?}"),
    }
    b.send(ClientFrame::SetPresence(SetPresence {
        status: PresenceStatus::Away,
    }))
    .await;
    assert!(
        matches!(a.expect().await, ServerFrame::Presence(p) if p.user == bob.user && p.presence == Presence::Away)
    );
    b.close().await;
    assert!(
        matches!(a.expect().await, ServerFrame::Presence(p) if p.user == bob.user && matches!(p.presence, Presence::Offline { last_seen: Some(_) }))
    );
    a.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn signing_in_again_closes_the_older_connection_of_the_same_device() {
    let relay = start_relay().await;
    let (acc, mut first) = register(&relay, Transport::Quic, "twice").await;
    let (mut second, _) = login(&relay, Transport::Ws, &acc).await;
    assert!(matches!(second.expect().await, ServerFrame::CaughtUp(_)));
    match first.recv().await {
        Some(ServerFrame::Error(e)) => {
            assert_eq!(e.code, ErrorCode::UNEXPECTED_FRAME);
            assert_eq!(e.req, None);
        }
        f => panic!("{f:?}"),
    }
    assert!(first.closed().await);
    // The newer connection gets the mail.
    let (_, mut s) = register(&relay, Transport::Quic, "sender").await;
    let id = mid();
    let req = s.req();
    s.send(direct(req, id, acc.user, &[(acc.device, b"hi")]))
        .await;
    assert!(matches!(s.expect().await, ServerFrame::Sent(_)));
    assert!(
        matches!(second.expect().await, ServerFrame::Deliver(d) if d.envelope.message_id == id)
    );
    second.close().await;
    s.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn an_encrypted_profile_is_stored_and_fetched_as_opaque_bytes() {
    use spider_protocol::bytes::BoundedBytes;
    use spider_protocol::message::{GetProfile, SetProfile};
    let relay = start_relay().await;
    let (alice, mut a) = register(&relay, Transport::Quic, "alice").await;
    let (_, mut b) = register(&relay, Transport::Ws, "bob").await;
    let req = b.req();
    b.send(ClientFrame::GetProfile(GetProfile {
        req,
        user: alice.user,
    }))
    .await;
    assert!(matches!(b.expect().await, ServerFrame::Profile(p) if p.blob.is_none()));
    let blob = BoundedBytes::new(vec![0xc1; 300]).unwrap();
    let req = a.req();
    a.send(ClientFrame::SetProfile(SetProfile {
        req,
        blob: blob.clone(),
    }))
    .await;
    assert!(matches!(a.expect().await, ServerFrame::Done(d) if d.req == req));
    let req = b.req();
    b.send(ClientFrame::GetProfile(GetProfile {
        req,
        user: alice.user,
    }))
    .await;
    match b.expect().await {
        ServerFrame::Profile(p) => {
            assert_eq!((p.req, p.user), (req, alice.user));
            assert_eq!(p.blob, Some(blob));
        }
        f => panic!("{f:?}"),
    }
    a.close().await;
    b.close().await;
    relay.stop().await;
}

#[tokio::test]
async fn devices_over_the_maximum_are_refused_and_others_keep_working() {
    let relay = start_relay_with(|c| c.limits.max_devices = 2).await;
    let counted = Counted::new(&relay, "max_devices").await;
    let (alice, a1) = register(&relay, Transport::Quic, "alice").await;
    let mut a2 = Client::connect(&relay, Transport::Ws).await;
    match add_device(&relay, &alice, &mut a2).await {
        ServerFrame::AuthOk(ok) => assert_eq!(ok.device, DeviceId(2)),
        f => panic!("{f:?}"),
    }
    let mut a3 = Client::connect(&relay, Transport::Quic).await;
    match add_device(&relay, &alice, &mut a3).await {
        ServerFrame::Error(e) => assert_eq!(e.code, ErrorCode::TOO_MANY_DEVICES),
        f => panic!("{f:?}"),
    }
    counted.saw(1).await;
    // Another account adds its second device.
    let (bob, b1) = register(&relay, Transport::Ws, "bob").await;
    let mut b2 = Client::connect(&relay, Transport::Quic).await;
    assert!(matches!(
        add_device(&relay, &bob, &mut b2).await,
        ServerFrame::AuthOk(_)
    ));
    others_keep_working(&relay, LOCALHOST).await;
    for c in [a1, a2, a3, b1, b2] {
        c.close().await;
    }
    relay.stop().await;
}
