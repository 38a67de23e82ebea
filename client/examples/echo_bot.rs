//! A bot that answers every 1:1 text with the same text, using only the
//! public SDK API.
//!
//! ```text
//! cargo run -p spider-client --example echo_bot -- \
//!     PROFILE_DIR RELAY_HOST:PORT RELAY_NAME CA.pem USERNAME [quic|ws|auto]
//! ```
//!
//! The profile is created on first run without a passphrase (a bot has no
//! one to type it); protect the directory instead.

use std::path::PathBuf;

use spider_client::client::{Backoff, Client, ClientConfig};
use spider_client::content::Body;
use spider_client::engine::{Engine, Event};
use spider_client::keystore::{KdfParams, KeystoreError, Passphrase};
use spider_client::profile::{Account, Profile, ProfileError, os_rng};
use spider_client::transport::{RelayTarget, TransportChoice};
use spider_protocol::name::Username;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, addr, relay_name, ca, username, rest @ ..] = args.as_slice() else {
        eprintln!(
            "usage: echo_bot PROFILE_DIR HOST:PORT RELAY_NAME CA.pem USERNAME [quic|ws|auto]"
        );
        std::process::exit(2);
    };
    let transport = match rest.first().map(String::as_str) {
        Some("quic") => TransportChoice::Quic,
        Some("ws") => TransportChoice::WebSocket,
        _ => TransportChoice::Auto,
    };
    let dir = PathBuf::from(dir);
    let profile = match Profile::open_dir(&dir, &Passphrase::None, os_rng()) {
        Ok(p) => p,
        Err(ProfileError::Keystore(KeystoreError::NoProfile)) => Profile::create_dir(
            &dir,
            &Passphrase::None,
            KdfParams::RECOMMENDED,
            Account {
                relay_name: relay_name.clone(),
                username: Username::parse(username)?,
                user: None,
                device: None,
            },
            os_rng(),
        )?,
        Err(e) => return Err(e.into()),
    };
    let engine = Engine::new(profile, os_rng());
    let config = ClientConfig {
        target: RelayTarget {
            addr: addr.clone(),
            server_name: relay_name.clone(),
            ca_pem: std::fs::read(ca)?,
        },
        transport,
        backoff: Backoff::DEFAULT,
    };
    let (client, mut events) = Client::spawn(engine, config);
    let mut me = None;
    while let Some(event) = events.recv().await {
        match event {
            Event::Connected { user, device } => {
                me = Some(user);
                eprintln!("connected as device {device}");
            }
            // Copies of what our own other devices sent are not for us to
            // answer.
            Event::MessageReceived {
                from,
                room: None,
                content,
                ..
            } if Some(from.user) != me => {
                if let Body::Text { body } = &content.body {
                    client.send_text(from.user, body.clone()).await?;
                }
            }
            Event::Error(e) => eprintln!("error: {e}"),
            _ => {}
        }
    }
    client.shutdown().await;
    Ok(())
}
