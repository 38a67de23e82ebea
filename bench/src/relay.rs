//! A `spider-relay` child process that `reconnect-storm` stops and starts again.
//!
//! The relay runs from a data directory of its own (a fresh sled store and development CA, kept
//! across restarts, removed at the end), with the benchmark configuration of
//! `bench/peers/spider/start.sh` ([`BENCH_CONFIG`]: the abuse limits lifted, since all clients
//! come from a few loopback addresses and the run registers every client at once), on a fixed
//! loopback port so that clients find the restarted relay where the old one was. Its standard
//! output gives the moment it listens; its log goes to `DATA/relay.log`.

use crate::scenario::storm::{Outages, StopSignal};
use anyhow::{Context as _, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// The relay's configuration for benchmarks: what `bench/peers/spider/start.sh` writes.
pub const BENCH_CONFIG: &str = "\
# spider-load benchmark: abuse limits lifted (every client shares a few loopback addresses).
[limits]
max_connections = 500000
max_connections_per_ip = 500000
registrations_per_hour = 100000000
registration_burst = 10000000
requests_per_second = 10000000
request_burst = 10000000
account_requests_per_second = 10000000
account_request_burst = 10000000
ip_requests_per_second = 10000000
ip_request_burst = 10000000
mailbox_quota = 10000000
handshake_timeout_ms = 120000
";

/// How long a relay may take to print that it listens.
pub const START_LIMIT: Duration = Duration::from_secs(60);

/// How long a relay may take to exit after SIGTERM (its drain grace is 5 s by default) before it
/// gets SIGKILL.
pub const TERM_LIMIT: Duration = Duration::from_secs(30);

/// The `spider-relay` binary next to this one (`target/release/` or `target/debug/`).
pub fn sibling_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding this binary")?;
    let dir = exe.parent().context("this binary has no directory")?;
    // Test binaries live one level down, in target/*/deps.
    for d in [Some(dir), dir.parent()].into_iter().flatten() {
        let candidate = d.join(format!("spider-relay{}", std::env::consts::EXE_SUFFIX));
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "no spider-relay binary next to {}: build it (cargo build [--release] -p spider-relay) \
         or pass --relay-bin",
        exe.display()
    )
}

/// A loopback port free for both UDP (QUIC) and TCP (WebSocket) at the moment of asking.
pub fn free_port() -> anyhow::Result<u16> {
    // A few tries: the UDP port the kernel picks may be taken over TCP.
    for _ in 0..20 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").context("binding a UDP socket")?;
        let port = udp.local_addr()?.port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no loopback port free for both UDP and TCP")
}

/// A relay child process, restartable on the same address and data.
#[derive(Debug)]
pub struct RelayProcess {
    bin: PathBuf,
    data: PathBuf,
    addr: SocketAddr,
    child: Option<Child>,
    remove_data: bool,
}

impl RelayProcess {
    /// Starts `bin` on `addr` (QUIC and WebSocket on the same port) with a fresh data directory
    /// `data` (made here, removed on drop).
    pub async fn start(bin: &Path, data: &Path, addr: SocketAddr) -> anyhow::Result<Self> {
        crate::net::ensure_loopback(addr)?;
        if data.exists() {
            bail!(
                "{} exists: the relay needs a fresh data directory",
                data.display()
            );
        }
        std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
        std::fs::write(data.join("relay.toml"), BENCH_CONFIG)?;
        let mut relay = Self {
            bin: bin.to_owned(),
            data: data.to_owned(),
            addr,
            child: None,
            remove_data: true,
        };
        relay.spawn().await?;
        Ok(relay)
    }

    /// The CA certificate the relay made (clients pin it).
    pub fn ca(&self) -> PathBuf {
        self.data.join("store-data/certs/ca.pem")
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Starts the process and waits until it listens; returns how long that took.
    async fn spawn(&mut self) -> anyhow::Result<Duration> {
        let began = Instant::now();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.join("relay.log"))?;
        let mut child = Command::new(&self.bin)
            .arg("serve")
            .arg("--data")
            .arg(self.data.join("store-data"))
            .arg("--quic")
            .arg(self.addr.to_string())
            .arg("--ws")
            .arg(self.addr.to_string())
            .arg("--no-metrics")
            .arg("--config")
            .arg(self.data.join("relay.toml"))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        let stdout = child.stdout.take().context("the relay's standard output")?;
        self.child = Some(child);
        let mut lines = BufReader::new(stdout).lines();
        let listening = tokio::time::timeout(START_LIMIT, async {
            // One line per turn, until the relay says it listens or its output ends.
            while let Some(line) = lines.next_line().await? {
                if line.starts_with("spider-relay listening") {
                    return anyhow::Ok(());
                }
            }
            bail!(
                "the relay exited before listening (log: {})",
                self.data.join("relay.log").display()
            )
        })
        .await;
        match listening {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => bail!("the relay did not listen within {START_LIMIT:?}"),
        }
        // The rest of its output is not needed, but must be read so the relay never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(began.elapsed())
    }

    /// Sends SIGTERM to the process (no libc: the project forbids unsafe code, so through kill(1)).
    async fn term(&self, pid: u32) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .await
            .context("running kill -TERM")?;
        if !status.success() {
            bail!("kill -TERM {pid} failed: {status}");
        }
        Ok(())
    }
}

impl Outages for RelayProcess {
    async fn stop(&mut self, signal: StopSignal) -> anyhow::Result<Duration> {
        let began = Instant::now();
        let Some(mut child) = self.child.take() else {
            bail!("the relay is not running");
        };
        match signal {
            StopSignal::Kill => {
                child.start_kill().context("SIGKILL")?;
                child.wait().await?;
            }
            StopSignal::Term => {
                let pid = child.id().context("the relay already exited")?;
                self.term(pid).await?;
                if tokio::time::timeout(TERM_LIMIT, child.wait())
                    .await
                    .is_err()
                {
                    child.start_kill()?;
                    child.wait().await?;
                    bail!("the relay did not exit within {TERM_LIMIT:?} of SIGTERM (killed)");
                }
            }
        }
        Ok(began.elapsed())
    }

    async fn start(&mut self) -> anyhow::Result<Duration> {
        if self.child.is_some() {
            bail!("the relay is already running");
        }
        self.spawn().await
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        if self.remove_data {
            // The child may take a moment to die; a leftover directory is harmless (it is named
            // after the run).
            let _ = std::fs::remove_dir_all(&self.data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bench_configuration_is_what_start_sh_writes() {
        let script = include_str!("../peers/spider/start.sh");
        for line in BENCH_CONFIG.lines().filter(|l| l.contains('=')) {
            assert!(script.contains(line), "start.sh lacks {line}");
        }
    }

    #[test]
    fn a_free_port_can_be_bound_twice() {
        let port = free_port().unwrap();
        assert!(std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok());
        assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
    }

    #[tokio::test]
    async fn a_missing_binary_is_an_error_that_names_it() {
        let dir =
            std::env::temp_dir().join(format!("spider-load-relay-test-{}", std::process::id()));
        let err = RelayProcess::start(
            Path::new("/nonexistent/spider-relay"),
            &dir,
            "127.0.0.1:1".parse().unwrap(),
        )
        .await
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent/spider-relay"),
            "{err:#}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
