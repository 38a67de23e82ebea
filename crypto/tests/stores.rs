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
    // Both now hold the same session (the lower base key's): messages flow.
    let a = alice.sessions.load_session(&bob.address).unwrap().unwrap();
    let b = bob.sessions.load_session(&alice.address).unwrap().unwrap();
    assert_eq!(a.base_key(), b.base_key());
    for i in 0..3u8 {
        let m = encrypt_to(&mut alice.sessions, &bob.address, &[i]).unwrap();
        assert_eq!(bob.receive(&mut rng, &alice.address, &m).unwrap(), [i]);
        let m = encrypt_to(&mut bob.sessions, &alice.address, &[i, i]).unwrap();
        assert_eq!(alice.receive(&mut rng, &bob.address, &m).unwrap(), [i, i]);
    }
}
