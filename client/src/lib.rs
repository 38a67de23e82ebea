//! Spider client SDK: keystore, sessions, transports, reconnect, outbox and
//! sync. The one API that bots and the `spider` terminal client both use.
//!
//! # Layers
//!
//! ```text
//!  application (bot, TUI)
//!      │ commands, events
//!  client::Client ── tokio task: transport, clock, backoff     (client, transport)
//!      │ handle_frame / poll_transmit / poll_event
//!  engine::Engine ── sans-I/O: handshake, outbox, dedup, acks, rooms
//!      │ typed records                       │ spider-crypto calls
//!  profile::Profile ── crypto_store: spider-crypto's store traits on the profile
//!      │ encrypted records
//!  keystore::Keystore ── data key (Argon2id-wrapped), ChaCha20-Poly1305 per record
//!      │ opaque bytes
//!  store::ProfileStore ── SledStore (a directory) | MemoryStore
//! ```
//!
//! - [`store`]: the key-value trait records live behind.
//! - [`keystore`]: encryption at rest.
//! - [`profile`]: a device's records, typed, and the directory layout.
//! - [`crypto_store`]: spider-crypto's storage traits on a profile, the
//!   prekey policy, and the key conversions between spider-crypto and
//!   spider-protocol.
//! - [`content`]: the plaintext format inside encrypted payloads.
//! - [`engine`]: the sans-I/O client state machine.
//! - [`social`]: encrypted profiles, invite links, and what the SDK keeps
//!   about contacts and rooms (display names, roles, invitations).
//! - [`transport`], [`client`]: QUIC and WebSocket links and the async
//!   driver.
//! - [`attachments`]: files, encrypted and uploaded as blobs, sent as
//!   pointers inside messages; downloaded, checked and decrypted to disk.
//!
//! # Walkthrough
//!
//! The engine does no I/O: the application (or [`client::Client`]) hands
//! it frames and the time, and sends what it gives back.
//!
//! ```
//! use spider_client::engine::{Engine, Event};
//! use spider_client::profile::{Account, Profile, os_rng};
//! use spider_protocol::bytes::{BoundedString, FixedBytes};
//! use spider_protocol::ids::Timestamp;
//! use spider_protocol::message::Welcome;
//! use spider_protocol::name::Username;
//! use spider_protocol::{ClientFrame, ServerFrame};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A throw-away profile (a bot would use Profile::create_dir).
//! let profile = Profile::in_memory(
//!     Account {
//!         relay_name: "relay.example".into(),
//!         username: Username::parse("echo_bot")?,
//!         user: None,
//!         device: None,
//!     },
//!     os_rng(),
//! )?;
//! let mut engine = Engine::new(profile, os_rng());
//! let now = 1_700_000_000_000; // ms since the epoch, from the driver's clock
//!
//! // Messages can be written before any connection: they wait in the outbox.
//! let id = engine.send_text(Username::parse("alice")?, "hello", now)?;
//! assert_eq!(engine.profile().outbox()?[0].id, id);
//!
//! // The transport is up; its TLS exporter binds the login to it.
//! engine.connect([7; 32], now);
//! assert!(matches!(engine.poll_transmit(), Some(ClientFrame::Hello(_))));
//!
//! // The relay welcomes us; the engine registers (the profile has no
//! // account yet), signing the challenge with the device identity.
//! engine.handle_frame(
//!     ServerFrame::Welcome(Welcome {
//!         version: 1,
//!         relay_name: BoundedString::new("relay.example")?,
//!         challenge: FixedBytes([9; 32]),
//!         server_time: Timestamp(now),
//!         idle_timeout_ms: 60_000,
//!     }),
//!     now,
//! );
//! let Some(ClientFrame::Register(register)) = engine.poll_transmit() else {
//!     panic!("expected a registration");
//! };
//! assert_eq!(register.username.as_str(), "echo_bot");
//! assert_eq!(register.prekeys.one_time_prekeys.len(), 100);
//! assert!(engine.poll_event().is_none());
//! # let _ = Event::CaughtUp;
//! # Ok(())
//! # }
//! ```

pub mod attachments;
pub mod client;
pub mod content;
pub mod crypto_store;
pub mod engine;
pub mod keystore;
pub mod profile;
pub mod social;
pub mod store;
pub mod transport;

/// Entry points for fuzz targets: each decoder of untrusted bytes in this
/// crate, taking any input.
#[doc(hidden)]
pub mod fuzzing {
    use crate::content::Content;

    /// Decodes `data` as content; what decodes must re-encode to exactly
    /// `data` (one encoding per content).
    pub fn content(data: &[u8]) {
        if let Ok(c) = Content::decode(data) {
            let again = c.encode().ok();
            assert_eq!(again.as_deref().map(|v| &v[..]), Some(data));
        }
    }
}
