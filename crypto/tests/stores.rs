//! Driving sessions through the store traits: routing, trust on first use,
//! simultaneous initiation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use spider_crypto::error::{ReceiveError, SendError, StartError};
use spider_crypto::keys::*;
use spider_crypto::session::{Message, decrypt_from, encrypt_to, start_session};
use spider_crypto::store::*;
use spider_crypto::x3dh::ReplayCache;

struct Device {
    address: DeviceAddress,
    identities: InMemIdentityStore,
    prekeys: InMemPreKeyStore,
    replay: ReplayCache,
    sessions: InMemSessionStore,
    bundle: PreKeyBundle,
}

impl Device {
    fn new(rng: &mut rand_chacha::ChaCha20Rng, name: &str) -> Self {
        let bob = Bob::new(rng, true, KemPreKeyKind::LastResort);
        Self {
            address: DeviceAddress::new(name, 1),
            identities: InMemIdentityStore::new(bob.identity),
            prekeys: bob.prekeys,
            replay: bob.replay,
            sessions: InMemSessionStore::new(),
            bundle: bob.bundle,
        }
    }

    fn verified_bundle(&self) -> VerifiedPreKeyBundle {
        self.bundle.clone().verify().unwrap()
    }

    fn receive(
        &mut self,
        rng: &mut rand_chacha::ChaCha20Rng,
        from: &DeviceAddress,
        m: &Message,
    ) -> Result<Vec<u8>, ReceiveError> {
        decrypt_from(
            rng,
            &mut self.identities,
            &mut self.prekeys,
            &mut self.replay,
            &mut self.sessions,
            from,
            m,
            NOW,
        )
    }
}

#[test]
fn sessions_round_trip_through_the_stores() {
    let mut rng = rng(30);
    let mut alice = Device::new(&mut rng, "alice");
    let mut bob = Device::new(&mut rng, "bob");
    let bundle = bob.verified_bundle();
    start_session(
        &mut rng,
        &mut alice.identities,
        &mut alice.sessions,
        &bob.address,
        &bundle,
    )
    .unwrap();
    let m1 = encrypt_to(&mut alice.sessions, &bob.address, b"one").unwrap();
    let m2 = encrypt_to(&mut alice.sessions, &bob.address, b"two").unwrap();
    assert!(matches!(m2, Message::PreKey(_)));
    // Out of order: the repeat of the first message arrives first.
    assert_eq!(bob.receive(&mut rng, &alice.address, &m2).unwrap(), b"two");
    assert_eq!(bob.receive(&mut rng, &alice.address, &m1).unwrap(), b"one");
    assert!(bob.receive(&mut rng, &alice.address, &m1).is_err());
    let r = encrypt_to(&mut bob.sessions, &alice.address, b"reply").unwrap();
    assert_eq!(alice.receive(&mut rng, &bob.address, &r).unwrap(), b"reply");
    let m3 = encrypt_to(&mut alice.sessions, &bob.address, b"three").unwrap();
    assert!(matches!(m3, Message::Ratchet(_)));
    assert_eq!(
        bob.receive(&mut rng, &alice.address, &m3).unwrap(),
        b"three"
    );
}

#[test]
fn message_from_device_without_session_is_refused() {
    let mut rng = rng(31);
    let mut alice = Device::new(&mut rng, "alice");
    let mut bob = Device::new(&mut rng, "bob");
    assert_eq!(
        encrypt_to(&mut alice.sessions, &bob.address, b"x").unwrap_err(),
        SendError::NoSession
    );
    let bundle = bob.verified_bundle();
    start_session(
        &mut rng,
        &mut alice.identities,
        &mut alice.sessions,
        &bob.address,
        &bundle,
    )
    .unwrap();
    let m1 = encrypt_to(&mut alice.sessions, &bob.address, b"one").unwrap();
    bob.receive(&mut rng, &alice.address, &m1).unwrap();
    let r = encrypt_to(&mut bob.sessions, &alice.address, b"reply").unwrap();
    // Delivered to the wrong sender address: no session there.
    let carol = DeviceAddress::new("carol", 1);
    assert_eq!(
        alice.receive(&mut rng, &carol, &r).unwrap_err(),
        ReceiveError::NoSession
    );
}

#[test]
fn changed_identity_is_refused_and_consumes_nothing() {
    let mut rng = rng(32);
    let alice = Device::new(&mut rng, "alice");
    let mut bob = Device::new(&mut rng, "bob");
    let mut mallory = Device::new(&mut rng, "mallory");
    // Bob already knows Alice's identity.
    let alice_public = alice.identities.identity_key_pair().public().clone();
    bob.identities
        .save_identity(&alice.address, &alice_public)
        .unwrap();
    // Mallory claims to be Alice's device.
    let bundle = bob.verified_bundle();
    start_session(
        &mut rng,
        &mut mallory.identities,
        &mut mallory.sessions,
        &bob.address,
        &bundle,
    )
    .unwrap();
    let forged = encrypt_to(&mut mallory.sessions, &bob.address, b"I am Alice").unwrap();
    assert_eq!(
        bob.receive(&mut rng, &alice.address, &forged).unwrap_err(),
        ReceiveError::UntrustedIdentity
    );
    assert!(
        bob.prekeys
            .one_time_prekey(PreKeyId(100))
            .unwrap()
            .is_some()
    );
    assert!(bob.sessions.load_session(&alice.address).unwrap().is_none());
    // Starting a session to a bundle with a changed identity is refused too.
    let mallory_bundle = mallory.verified_bundle();
    assert_eq!(
        start_session(
            &mut rng,
            &mut bob.identities,
            &mut bob.sessions,
            &alice.address,
            &mallory_bundle
        )
        .unwrap_err(),
        StartError::UntrustedIdentity
    );
}

#[test]
fn simultaneous_initiation_converges_on_one_session() {
    let mut rng = rng(33);
    let mut alice = Device::new(&mut rng, "alice");
    let mut bob = Device::new(&mut rng, "bob");
    let (ab, ba) = (bob.verified_bundle(), alice.verified_bundle());
    start_session(
        &mut rng,
        &mut alice.identities,
        &mut alice.sessions,
        &bob.address,
        &ab,
    )
    .unwrap();
    start_session(
        &mut rng,
        &mut bob.identities,
        &mut bob.sessions,
        &alice.address,
        &ba,
    )
    .unwrap();
    let from_alice = encrypt_to(&mut alice.sessions, &bob.address, b"hi bob").unwrap();
    let from_bob = encrypt_to(&mut bob.sessions, &alice.address, b"hi alice").unwrap();
    // Both first messages cross and are read.
    assert_eq!(
        bob.receive(&mut rng, &alice.address, &from_alice).unwrap(),
        b"hi bob"
    );
    assert_eq!(
        alice.receive(&mut rng, &bob.address, &from_bob).unwrap(),
        b"hi alice"
    );
    // Each made the session the other started current; messages still flow
    // (each side's old session is kept as a previous one), and the first
    // message received switches the receiver to the sender's session.
    for i in 0..3u8 {
        let m = encrypt_to(&mut alice.sessions, &bob.address, &[i]).unwrap();
        assert_eq!(bob.receive(&mut rng, &alice.address, &m).unwrap(), [i]);
        let m = encrypt_to(&mut bob.sessions, &alice.address, &[i, i]).unwrap();
        assert_eq!(alice.receive(&mut rng, &bob.address, &m).unwrap(), [i, i]);
    }
    // Both now hold the same current session.
    let a = alice.sessions.load_session(&bob.address).unwrap().unwrap();
    let b = bob.sessions.load_session(&alice.address).unwrap().unwrap();
    assert_eq!(a.current().base_key(), b.current().base_key());
    assert!(!a.current().awaiting_reply() && !b.current().awaiting_reply());
}

/// Both devices start a session with each other before either reads the
/// other's first message (each fetched the other's bundle).
fn simultaneous_start(seed: u8) -> (rand_chacha::ChaCha20Rng, Device, Device) {
    let mut rng = rng(seed);
    let mut alice = Device::new(&mut rng, "alice");
    let mut bob = Device::new(&mut rng, "bob");
    let (ab, ba) = (bob.verified_bundle(), alice.verified_bundle());
    let (aa, bb) = (alice.address.clone(), bob.address.clone());
    start_session(
        &mut rng,
        &mut alice.identities,
        &mut alice.sessions,
        &bb,
        &ab,
    )
    .unwrap();
    start_session(&mut rng, &mut bob.identities, &mut bob.sessions, &aa, &ba).unwrap();
    (rng, alice, bob)
}

fn send(from: &mut Device, to: &DeviceAddress, text: &[u8]) -> (Message, Vec<u8>) {
    (
        encrypt_to(&mut from.sessions, to, text).unwrap(),
        text.to_vec(),
    )
}

fn current_base_key(d: &Device, peer: &DeviceAddress) -> [u8; 32] {
    *d.sessions
        .load_session(peer)
        .unwrap()
        .unwrap()
        .current()
        .base_key()
}

/// Talks until both sides have received on one session, then checks that both
/// hold it as current and that messages keep flowing both ways.
fn assert_converge(rng: &mut rand_chacha::ChaCha20Rng, alice: &mut Device, bob: &mut Device) {
    let (aa, bb) = (alice.address.clone(), bob.address.clone());
    let (m, p) = send(alice, &bb, b"converge a");
    assert_eq!(bob.receive(rng, &aa, &m).unwrap(), p);
    let (m, p) = send(bob, &aa, b"converge b");
    assert_eq!(alice.receive(rng, &bb, &m).unwrap(), p);
    assert_eq!(current_base_key(alice, &bb), current_base_key(bob, &aa));
    for i in 0..4u8 {
        let (m, p) = send(alice, &bb, &[b'a', i]);
        assert!(matches!(m, Message::Ratchet(_)));
        assert_eq!(bob.receive(rng, &aa, &m).unwrap(), p);
        let (m, p) = send(bob, &aa, &[b'b', i]);
        assert!(matches!(m, Message::Ratchet(_)));
        assert_eq!(alice.receive(rng, &bb, &m).unwrap(), p);
    }
    assert_eq!(current_base_key(alice, &bb), current_base_key(bob, &aa));
}

/// The spider-load finding: both start at once, each sends three first
/// messages before reading any, then the two directions interleave. Every
/// message decrypts exactly once (before the fix the second first message of
/// the handshake a side had dropped was refused as a replay), and the two
/// converge on one session.
#[test]
fn simultaneous_initiation_with_several_first_messages_each_loses_none() {
    let (mut rng, mut alice, mut bob) = simultaneous_start(34);
    let (aa, bb) = (alice.address.clone(), bob.address.clone());
    let a: Vec<_> = (1..=3u8)
        .map(|i| send(&mut alice, &bb, &[b'a', i]))
        .collect();
    let b: Vec<_> = (1..=3u8).map(|i| send(&mut bob, &aa, &[b'b', i])).collect();
    for (m, _) in a.iter().chain(&b) {
        assert!(matches!(m, Message::PreKey(_)));
    }
    // Interleave: each reads the other's first, both reply, the rest trickle in.
    assert_eq!(bob.receive(&mut rng, &aa, &a[0].0).unwrap(), a[0].1);
    assert_eq!(alice.receive(&mut rng, &bb, &b[0].0).unwrap(), b[0].1);
    let a4 = send(&mut alice, &bb, b"a4");
    assert_eq!(bob.receive(&mut rng, &aa, &a[1].0).unwrap(), a[1].1);
    let b4 = send(&mut bob, &aa, b"b4");
    assert_eq!(alice.receive(&mut rng, &bb, &b[1].0).unwrap(), b[1].1);
    assert_eq!(bob.receive(&mut rng, &aa, &a[2].0).unwrap(), a[2].1);
    assert_eq!(alice.receive(&mut rng, &bb, &b[2].0).unwrap(), b[2].1);
    assert_eq!(bob.receive(&mut rng, &aa, &a4.0).unwrap(), a4.1);
    let b5 = send(&mut bob, &aa, b"b5");
    assert_eq!(alice.receive(&mut rng, &bb, &b4.0).unwrap(), b4.1);
    assert_eq!(alice.receive(&mut rng, &bb, &b5.0).unwrap(), b5.1);
    // Exactly once: a second delivery of any of them is refused, and a
    // repeated first message creates no session.
    let kept = |d: &Device, peer: &DeviceAddress| {
        1 + d
            .sessions
            .load_session(peer)
            .unwrap()
            .unwrap()
            .previous()
            .len()
    };
    assert_eq!((kept(&alice, &bb), kept(&bob, &aa)), (2, 2));
    for (m, _) in a.iter().chain([&a4]) {
        assert!(bob.receive(&mut rng, &aa, m).is_err());
    }
    for (m, _) in b.iter().chain([&b4, &b5]) {
        assert!(alice.receive(&mut rng, &bb, m).is_err());
    }
    assert_eq!((kept(&alice, &bb), kept(&bob, &aa)), (2, 2));
    assert_converge(&mut rng, &mut alice, &mut bob);
}

/// A repeat of a first message whose session is no longer current (another
/// session received since) decrypts through the session it created instead
/// of being refused as a replay; replaying it once more is refused as a
/// duplicate, and it never creates a second session.
#[test]
fn repeated_first_message_of_a_previous_session_decrypts_once() {
    let (mut rng, mut alice, mut bob) = simultaneous_start(35);
    let (aa, bb) = (alice.address.clone(), bob.address.clone());
    let b1 = send(&mut bob, &aa, b"b1");
    let b2 = send(&mut bob, &aa, b"b2");
    let a1 = send(&mut alice, &bb, b"a1");
    assert_eq!(alice.receive(&mut rng, &bb, &b1.0).unwrap(), b1.1);
    assert_eq!(bob.receive(&mut rng, &aa, &a1.0).unwrap(), a1.1);
    // Bob answers on the session Alice started: Alice switches back to it.
    let r = send(&mut bob, &aa, b"reply");
    assert!(matches!(r.0, Message::Ratchet(_)));
    assert_eq!(alice.receive(&mut rng, &bb, &r.0).unwrap(), r.1);
    // Bob's second first message: its session is a previous one at Alice.
    assert_eq!(alice.receive(&mut rng, &bb, &b2.0).unwrap(), b2.1);
    let replay_len = alice.replay.len();
    for m in [&b1.0, &b2.0] {
        assert!(matches!(
            alice.receive(&mut rng, &bb, m).unwrap_err(),
            ReceiveError::Decrypt(_)
        ));
    }
    assert_eq!(alice.replay.len(), replay_len);
    let record = alice.sessions.load_session(&bb).unwrap().unwrap();
    assert_eq!(record.previous().len(), 1);
    assert_converge(&mut rng, &mut alice, &mut bob);
}

/// The record keeps at most `MAX_PREVIOUS_SESSIONS` previous sessions: a first
/// message of a session dropped from it is refused by the replay cache (it
/// cannot set up a second session), while the kept ones still decrypt.
#[test]
fn previous_sessions_are_bounded_and_a_dropped_one_is_refused_as_replay() {
    use spider_crypto::session::MAX_PREVIOUS_SESSIONS;
    let mut rng = rng(36);
    let mut bob = Device::new(&mut rng, "bob");
    let mut alice = Device::new(&mut rng, "alice");
    // No one-time prekey: the replay cache is what refuses a replay.
    bob.bundle.one_time_prekey = None;
    let (aa, bb) = (alice.address.clone(), bob.address.clone());
    let mut firsts = Vec::new();
    for i in 0..=MAX_PREVIOUS_SESSIONS + 1 {
        let ab = bob.verified_bundle();
        start_session(
            &mut rng,
            &mut alice.identities,
            &mut alice.sessions,
            &bb,
            &ab,
        )
        .unwrap();
        let (m1, _) = send(&mut alice, &bb, &[1, i as u8]);
        let (m2, _) = send(&mut alice, &bb, &[2, i as u8]);
        assert_eq!(bob.receive(&mut rng, &aa, &m1).unwrap(), [1, i as u8]);
        firsts.push(m2);
    }
    let record = bob.sessions.load_session(&aa).unwrap().unwrap();
    assert_eq!(record.previous().len(), MAX_PREVIOUS_SESSIONS);
    // The oldest session was dropped: its repeat is a replay now.
    assert!(matches!(
        bob.receive(&mut rng, &aa, &firsts[0]).unwrap_err(),
        ReceiveError::Accept(spider_crypto::error::AcceptError::Replayed)
    ));
    // The oldest kept one still decrypts its second first message.
    assert_eq!(bob.receive(&mut rng, &aa, &firsts[1]).unwrap(), [2, 1]);
    let record = bob.sessions.load_session(&aa).unwrap().unwrap();
    assert_eq!(record.previous().len(), MAX_PREVIOUS_SESSIONS);
}

#[test]
fn session_record_round_trips_and_reads_a_lone_session() {
    use spider_crypto::session::SessionRecord;
    let (mut rng, mut alice, mut bob) = simultaneous_start(37);
    let (aa, bb) = (alice.address.clone(), bob.address.clone());
    let (m, _) = send(&mut bob, &aa, b"b1");
    alice.receive(&mut rng, &bb, &m).unwrap();
    let record = alice.sessions.load_session(&bb).unwrap().unwrap();
    let bytes = record.to_bytes();
    let back = SessionRecord::from_bytes(&bytes).unwrap();
    assert_eq!(back.to_bytes(), bytes);
    assert_eq!(back.previous().len(), 1);
    // A keystore written before records existed holds a lone session.
    let lone = SessionRecord::from_bytes(&record.current().to_bytes()).unwrap();
    assert!(lone.previous().is_empty());
    assert_eq!(lone.current().base_key(), record.current().base_key());
    // Truncated or padded input is refused.
    assert!(SessionRecord::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    let mut padded = bytes.to_vec();
    padded.push(0);
    assert!(SessionRecord::from_bytes(&padded).is_err());
    let mut empty = bytes[..2].to_vec();
    empty.push(0);
    assert!(SessionRecord::from_bytes(&empty).is_err());
}

mod interleavings {
    use super::*;
    use proptest::prelude::*;

    /// Simultaneous start, each side sends `first_a` / `first_b` first
    /// messages before reading, then a random schedule of sends and
    /// deliveries (each direction in order, as the relay's mailbox delivers);
    /// then everything left is delivered. Every message decrypts exactly
    /// once, to its plaintext, and the two converge.
    fn run(seed: u8, first_a: usize, first_b: usize, ops: &[(bool, bool)]) {
        let (mut rng, mut alice, mut bob) = simultaneous_start(seed);
        let (aa, bb) = (alice.address.clone(), bob.address.clone());
        let mut to_bob = std::collections::VecDeque::new();
        let mut to_alice = std::collections::VecDeque::new();
        let mut n = 0u32;
        let mut next = || {
            n += 1;
            n.to_be_bytes().to_vec()
        };
        for _ in 0..first_a {
            to_bob.push_back(send(&mut alice, &bb, &next()));
        }
        for _ in 0..first_b {
            to_alice.push_back(send(&mut bob, &aa, &next()));
        }
        let mut delivered = Vec::new();
        for &(bob_acts, is_send) in ops {
            match (bob_acts, is_send) {
                (false, true) => to_bob.push_back(send(&mut alice, &bb, &next())),
                (true, true) => to_alice.push_back(send(&mut bob, &aa, &next())),
                (true, false) => {
                    if let Some((m, p)) = to_bob.pop_front() {
                        assert_eq!(bob.receive(&mut rng, &aa, &m).unwrap(), p);
                        delivered.push((true, m));
                    }
                }
                (false, false) => {
                    if let Some((m, p)) = to_alice.pop_front() {
                        assert_eq!(alice.receive(&mut rng, &bb, &m).unwrap(), p);
                        delivered.push((false, m));
                    }
                }
            }
        }
        while let Some((m, p)) = to_bob.pop_front() {
            assert_eq!(bob.receive(&mut rng, &aa, &m).unwrap(), p);
            delivered.push((true, m));
        }
        while let Some((m, p)) = to_alice.pop_front() {
            assert_eq!(alice.receive(&mut rng, &bb, &m).unwrap(), p);
            delivered.push((false, m));
        }
        // Exactly once: no message decrypts a second time.
        for (at_bob, m) in &delivered {
            let r = if *at_bob {
                bob.receive(&mut rng, &aa, m)
            } else {
                alice.receive(&mut rng, &bb, m)
            };
            assert!(r.is_err());
        }
        assert_converge(&mut rng, &mut alice, &mut bob);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn simultaneous_initiation_delivers_every_message_once(
            seed in any::<u8>(),
            first_a in 1usize..4,
            first_b in 1usize..4,
            ops in proptest::collection::vec((any::<bool>(), any::<bool>()), 0..40),
        ) {
            run(seed, first_a, first_b, &ops);
        }
    }
}
