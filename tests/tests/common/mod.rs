//! A relay in process and SDK clients on real profiles, for end-to-end
//! tests.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use spider_client::client::{Backoff, Client, ClientConfig};
use spider_client::content::Body;
use spider_client::engine::{Engine, Event};
use spider_client::keystore::{KdfParams, Passphrase};
use spider_client::profile::{Account, Profile, os_rng};
use spider_client::transport::{RelayTarget, TransportChoice};
use spider_protocol::ids::{DeviceAddress, UserId};
use spider_protocol::name::Username;
use spider_relay::config::Config;
use spider_relay::server::RunningRelay;
use tokio::sync::mpsc;

pub mod cli;

/// Only there so that a broken build fails instead of hanging. No test
/// asserts a speed.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A relay on loopback, its data directory kept across restarts.
pub struct TestRelay {
    pub relay: Option<RunningRelay>,
    pub data: PathBuf,
    pub quic: SocketAddr,
    pub ws: SocketAddr,
    pub ca_pem: Vec<u8>,
    pub ca_path: PathBuf,
    pub name: String,
}

impl TestRelay {
    /// Starts a relay in `data` on port 0 (or on the given addresses).
    pub async fn start(data: &Path, addrs: Option<(SocketAddr, SocketAddr)>) -> Self {
        Self::start_with(data, addrs, |_| {}).await
    }

    /// [`Self::start`] with a configuration changed by `change` (limits).
    pub async fn start_with(
        data: &Path,
        addrs: Option<(SocketAddr, SocketAddr)>,
        change: impl FnOnce(&mut Config),
    ) -> Self {
        let mut config = Config::for_tests(data.to_owned());
        change(&mut config);
        if let Some((q, w)) = addrs {
            config.quic = q;
            config.ws = w;
        }
        let name = config.name.clone();
        let relay = spider_relay::server::start(config).await.unwrap();
        let ca_path = relay.ca_pem.clone().unwrap();
        Self {
            quic: relay.quic_addr,
            ws: relay.ws_addr,
            ca_pem: std::fs::read(&ca_path).unwrap(),
            ca_path,
            relay: Some(relay),
            data: data.to_owned(),
            name,
        }
    }

    /// Stops the relay (draining its connections).
    pub async fn stop(&mut self) {
        if let Some(r) = self.relay.take() {
            tokio::time::timeout(PATIENCE, r.shutdown())
                .await
                .unwrap()
                .unwrap();
        }
    }

    /// Starts it again on the same data directory and ports.
    pub async fn restart(&mut self) {
        self.stop().await;
        *self = Self::start(&self.data.clone(), Some((self.quic, self.ws))).await;
    }

    pub fn target(&self, t: TransportChoice) -> ClientConfig {
        let addr = match t {
            TransportChoice::WebSocket => self.ws,
            _ => self.quic,
        };
        ClientConfig {
            target: RelayTarget {
                addr: addr.to_string(),
                server_name: self.name.clone(),
                ca_pem: self.ca_pem.clone(),
            },
            transport: t,
            backoff: Backoff {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(1),
            },
        }
    }
}

/// A running SDK client on a profile directory.
pub struct TestClient {
    pub client: Client,
    pub events: mpsc::Receiver<Event>,
    pub me: UserId,
    pub username: Username,
}

/// Opens (or creates) the profile in `dir` for `username` and signs in.
pub async fn connect(
    relay: &TestRelay,
    dir: &Path,
    username: &str,
    t: TransportChoice,
) -> TestClient {
    let username = Username::parse(username).unwrap();
    let profile = if dir.join("conf").exists() {
        Profile::open_dir(dir, &Passphrase::None, os_rng()).unwrap()
    } else {
        Profile::create_dir(
            dir,
            &Passphrase::None,
            KdfParams::INSECURE_FOR_TESTS,
            Account {
                relay_name: relay.name.clone(),
                username: username.clone(),
                user: None,
                device: None,
            },
            os_rng(),
        )
        .unwrap()
    };
    let (client, mut events) = Client::spawn(Engine::new(profile, os_rng()), relay.target(t));
    let me = loop {
        match next(&mut events).await {
            Event::Connected { user, .. } => break user,
            Event::Error(e) => eprintln!("{username}: {e}"),
            _ => {}
        }
    };
    TestClient {
        client,
        events,
        me,
        username,
    }
}

/// The next event, or a failed test after [`PATIENCE`].
pub async fn next(events: &mut mpsc::Receiver<Event>) -> Event {
    tokio::time::timeout(PATIENCE, events.recv())
        .await
        .expect("no event within the patience")
        .expect("client stopped")
}

/// Waits until `n` texts have arrived; returns (sender, text) in order.
pub async fn texts(c: &mut TestClient, n: usize) -> Vec<(DeviceAddress, String)> {
    let mut out = Vec::new();
    while out.len() < n {
        match next(&mut c.events).await {
            Event::MessageReceived { from, content, .. } => {
                if let Body::Text { body } = content.body {
                    out.push((from, body));
                }
            }
            Event::Error(e) => eprintln!("{}: {e}", c.username),
            _ => {}
        }
    }
    out
}

/// Sends a text and waits until the relay stored it.
pub async fn send_and_wait(c: &mut TestClient, to: UserId, text: &str) {
    let id = c.client.send_text(to, text).await.unwrap();
    loop {
        match next(&mut c.events).await {
            Event::Sent { id: sent } if sent == id => return,
            Event::Error(e) => eprintln!("{}: {e}", c.username),
            _ => {}
        }
    }
}

/// `target/debug/BIN` of `package`, built first (cargo builds only a test's
/// own crate graph; binaries of other packages are not in it).
pub fn built_binary(package: &str, bin: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = std::process::Command::new(cargo)
        .args(["build", "-q", "-p", package, "--bin", bin])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(status.success(), "building {bin} failed");
    // A test runs as target/debug/deps/NAME-HASH.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    dir.join(format!("{bin}{}", std::env::consts::EXE_SUFFIX))
}
