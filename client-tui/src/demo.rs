//! `spider demo`: a throw-away relay (the `spider-relay` binary, in a
//! temporary directory on a free loopback port), an echo bot on the SDK in
//! this process, and the terminal app signed in as a fresh user whose
//! first message to the bot is already sent.

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};
use spider_client::client::{Backoff, Client, ClientConfig};

use spider_client::content::Body;
use spider_client::engine::{Engine, Event};
use spider_client::keystore::{KdfParams, Passphrase};
use spider_client::profile::{Account, Profile, os_rng};
use spider_client::transport::{RelayTarget, TransportChoice as SdkTransport};
use spider_protocol::name::Username;

use crate::cli::{self, CliConfig};
use crate::worker::TransportChoice;

/// The bot's and the user's names.
pub(crate) const BOT: &str = "echo_bot";
const ME: &str = "you";

/// The relay binary: next to this one, or on PATH.
fn relay_binary() -> anyhow::Result<PathBuf> {
    let name = format!("spider-relay{}", std::env::consts::EXE_SUFFIX);
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
        && dir.join(&name).is_file()
    {
        return Ok(dir.join(name));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join(&name).is_file() {
                return Ok(dir.join(name));
            }
        }
    }
    bail!(
        "spider demo needs the spider-relay binary next to spider or on PATH: \
         run `cargo build -p spider-relay` first"
    )
}

/// A loopback port free for both UDP (QUIC) and TCP (WebSocket).
fn free_port() -> anyhow::Result<u16> {
    for _ in 0..20 {
        let tcp = TcpListener::bind("127.0.0.1:0")?;
        let port = tcp.local_addr()?.port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free loopback port")
}

/// The relay process, stopped on drop.
pub(crate) struct RelayProcess {
    child: Child,
    /// Its address (QUIC and WebSocket share the port).
    pub(crate) addr: SocketAddr,
    /// Its CA certificate.
    pub(crate) ca: PathBuf,
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `spider-relay serve` in `data`.
pub(crate) fn start_relay(data: &std::path::Path) -> anyhow::Result<RelayProcess> {
    let bin = relay_binary()?;
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let log = std::fs::File::create(data.join("relay.log"))?;
    let mut child = Command::new(&bin)
        .arg("serve")
        .arg("--data")
        .arg(data.join("relay"))
        .arg("--quic")
        .arg(addr.to_string())
        .arg("--ws")
        .arg(addr.to_string())
        .arg("--no-metrics")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("relay stdout")?;
    let relay = RelayProcess {
        child,
        addr,
        ca: data.join("relay").join("certs").join("ca.pem"),
    };
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.starts_with("spider-relay listening") => break,
            Some(Ok(_)) => {}
            _ => bail!(
                "the relay did not start; see {}",
                data.join("relay.log").display()
            ),
        }
    }
    // Keep reading so that the relay never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok(relay)
}

/// Runs an echo bot (in-memory profile) until the runtime ends.
pub(crate) async fn start_bot(relay: &RelayProcess) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let profile = Profile::in_memory(
        Account {
            relay_name: "localhost".into(),
            username: Username::parse(BOT)?,
            user: None,
            device: None,
        },
        os_rng(),
    )?;
    let config = ClientConfig {
        target: RelayTarget {
            addr: relay.addr.to_string(),
            server_name: "localhost".into(),
            ca_pem: std::fs::read(&relay.ca)?,
        },
        transport: SdkTransport::Auto,
        backoff: Backoff::DEFAULT,
    };
    let (client, mut events) = Client::spawn(Engine::new(profile, os_rng()), config);
    let me = loop {
        match events.recv().await {
            Some(Event::Connected { user, .. }) => break user,
            Some(_) => {}
            None => bail!("the echo bot stopped"),
        }
    };
    // The task owns the client: it answers each 1:1 text with the same.
    Ok(tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let Event::MessageReceived {
                from,
                room: None,
                content,
                ..
            } = event
                && from.user != me
                && let Body::Text { body } = content.body
                && client
                    .send_text(from.user, format!("echo: {body}"))
                    .await
                    .is_err()
            {
                break;
            }
        }
        client.shutdown().await;
    }))
}

/// Creates the user's profile in `dir` and sends the bot a first message.
pub(crate) async fn start_user(
    dir: &std::path::Path,
    relay: &RelayProcess,
    transport: TransportChoice,
) -> anyhow::Result<()> {
    let mut profile = Profile::create_dir(
        dir,
        &Passphrase::None,
        KdfParams::RECOMMENDED,
        Account {
            relay_name: "localhost".into(),
            username: Username::parse(ME)?,
            user: None,
            device: None,
        },
        os_rng(),
    )?;
    let cfg = CliConfig {
        server: relay.addr.to_string(),
        ca: relay.ca.clone(),
    };
    profile.put(b"cli/config", &cfg)?;
    profile.flush()?;
    let mut s = cli::start(profile, &cfg, transport).await?;
    let id = s
        .client
        .send_text(
            Username::parse(BOT)?,
            "hi! (sent by spider demo; type below, the bot echoes)",
        )
        .await?;
    while let Some(e) = s.events.recv().await {
        if matches!(e, Event::Sent { id: sent } if sent == id) {
            break;
        }
    }
    s.client.shutdown().await;
    Ok(())
}
