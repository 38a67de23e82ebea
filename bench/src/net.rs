//! Loopback-only sockets, spread over several source addresses.
//!
//! One source address gives about 28k ephemeral ports toward one listener, so clients bind to
//! 127.0.0.2, 127.0.0.3, ... in turn (all of 127.0.0.0/8 is the loopback interface on Linux,
//! nothing to configure). Targets must be loopback addresses: this tool never sends elsewhere.

use anyhow::{Context as _, bail};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use tokio::net::{TcpSocket, TcpStream};

/// Refuses any target that is not a loopback address.
pub fn ensure_loopback(addr: SocketAddr) -> anyhow::Result<()> {
    if !addr.ip().is_loopback() {
        bail!("refusing {addr}: spider-load only talks to loopback addresses (127.0.0.0/8, ::1)");
    }
    Ok(())
}

/// The source addresses clients are spread over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceAddrs {
    addrs: Vec<IpAddr>,
}

impl SourceAddrs {
    /// `count` addresses from 127.0.0.2 for an IPv4 target; `::1` alone for an IPv6 one.
    pub fn for_target(target: SocketAddr, count: u32) -> anyhow::Result<Self> {
        if !(1..=crate::cli::MAX_SOURCE_ADDRS).contains(&count) {
            bail!(
                "--source-addrs must be 1..={}",
                crate::cli::MAX_SOURCE_ADDRS
            );
        }
        let addrs = match target {
            SocketAddr::V4(_) => (0..count)
                .map(|i| {
                    // count <= 250, so the last octet stays within 2..=251.
                    let octet = u8::try_from(2 + i).unwrap_or(u8::MAX);
                    IpAddr::V4(Ipv4Addr::new(127, 0, 0, octet))
                })
                .collect(),
            SocketAddr::V6(_) => vec![IpAddr::V6(Ipv6Addr::LOCALHOST)],
        };
        Ok(Self { addrs })
    }

    /// The source address of client `i` (round robin).
    pub fn for_client(&self, i: u64) -> IpAddr {
        let n = self.addrs.len().max(1) as u64;
        let idx = usize::try_from(i % n).unwrap_or(0);
        self.addrs
            .get(idx)
            .copied()
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    /// Whether there are none (never, once built).
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }
}

/// A TCP connection from `source` (port chosen by the kernel) to the loopback address `to`.
pub async fn connect_from(source: IpAddr, to: SocketAddr) -> anyhow::Result<TcpStream> {
    ensure_loopback(to)?;
    let socket = match to {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .context("creating a socket")?;
    socket
        .bind(SocketAddr::new(source, 0))
        .with_context(|| format!("binding to {source}"))?;
    let stream = socket
        .connect(to)
        .await
        .with_context(|| format!("connecting to {to}"))?;
    stream.set_nodelay(true).context("setting TCP_NODELAY")?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted() {
        assert!(ensure_loopback("127.0.0.1:80".parse().unwrap()).is_ok());
        assert!(ensure_loopback("127.9.9.9:80".parse().unwrap()).is_ok());
        assert!(ensure_loopback("[::1]:80".parse().unwrap()).is_ok());
        assert!(ensure_loopback("10.0.0.1:80".parse().unwrap()).is_err());
        assert!(ensure_loopback("192.168.1.1:80".parse().unwrap()).is_err());
        assert!(ensure_loopback("8.8.8.8:53".parse().unwrap()).is_err());
    }

    #[test]
    fn clients_are_spread_round_robin_from_127_0_0_2() {
        let s = SourceAddrs::for_target("127.0.0.1:1".parse().unwrap(), 3).unwrap();
        let got: Vec<IpAddr> = (0..4).map(|i| s.for_client(i)).collect();
        let ip = |o| IpAddr::V4(Ipv4Addr::new(127, 0, 0, o));
        assert_eq!(got, vec![ip(2), ip(3), ip(4), ip(2)]);
        let max = SourceAddrs::for_target("127.0.0.1:1".parse().unwrap(), 250).unwrap();
        assert_eq!(max.for_client(249), ip(251));
        assert!(SourceAddrs::for_target("127.0.0.1:1".parse().unwrap(), 0).is_err());
        assert!(SourceAddrs::for_target("127.0.0.1:1".parse().unwrap(), 251).is_err());
    }

    #[tokio::test]
    async fn sockets_leave_from_the_chosen_source_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let to = listener.local_addr().unwrap();
        let source: IpAddr = "127.0.0.3".parse().unwrap();
        let (client, accepted) = tokio::join!(connect_from(source, to), listener.accept());
        let client = client.unwrap();
        assert_eq!(client.local_addr().unwrap().ip(), source);
        assert_eq!(accepted.unwrap().1.ip(), source);
    }
}
