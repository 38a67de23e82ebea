//! Configuration: flags, then environment, then a TOML file, then defaults.
//!
//! The first source that sets a value wins. Flags and environment variables
//! (`SPIDER_RELAY_*`) cover the addresses, names and paths; every limit is a
//! key of the TOML file's `[limits]` table with the default documented on
//! [`Limits`].
//!
//! ```toml
//! name = "relay.example.org"
//! quic = "0.0.0.0:4433"
//! ws = "0.0.0.0:4433"
//! metrics = "127.0.0.1:9464"
//! data = "/var/lib/spider-relay"
//! cert = "/etc/spider/relay.pem"     # with `key`; both or neither
//! key = "/etc/spider/relay.key"
//! allowed_origins = []                 # WebSocket Origin allow-list
//!
//! [limits]
//! mailbox_quota = 10000
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The TOML file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML file does not parse or has unknown keys.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: toml::de::Error,
    },
    /// A value is out of range.
    #[error("invalid setting {key}: {why}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// Why.
        why: &'static str,
    },
}

/// The default QUIC (UDP) and WebSocket (TCP) address: one port number for
/// both, on loopback so that a first run exposes nothing.
pub const DEFAULT_ADDR: &str = "127.0.0.1:4433";
/// The default Prometheus metrics address.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9464";
/// The default relay name: what clients connect to during development.
pub const DEFAULT_NAME: &str = "localhost";

/// The TOML file. Every key is optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Relay name.
    pub name: Option<String>,
    /// QUIC address.
    pub quic: Option<SocketAddr>,
    /// WebSocket-over-TLS address.
    pub ws: Option<SocketAddr>,
    /// Metrics address.
    pub metrics: Option<SocketAddr>,
    /// Data directory.
    pub data: Option<PathBuf>,
    /// Certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// Private key (PEM).
    pub key: Option<PathBuf>,
    /// WebSocket Origin allow-list.
    pub allowed_origins: Option<Vec<String>>,
    /// Limits.
    #[serde(default)]
    pub limits: Limits,
}

impl FileConfig {
    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }
}

/// Every limit the relay enforces, each with the reason for its default.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Most connections served at once, over both transports (a semaphore).
    /// 10 000: each WebSocket connection holds a file descriptor and the
    /// process may hold 20 000; this leaves room for the store and headroom.
    pub max_connections: usize,
    /// Milliseconds from accepting a connection to `AuthOk`. 10 s: a client
    /// needs two round trips and one signature; a slow mobile link fits, a
    /// slowloris does not hold a slot for long.
    pub handshake_timeout_ms: u64,
    /// Milliseconds between the relay's pings. 30 s: below common NAT UDP
    /// binding timeouts, so QUIC paths stay open.
    pub ping_interval_ms: u64,
    /// Milliseconds without any frame from the client before the connection
    /// is dropped with `IDLE_TIMEOUT`. 90 s: three missed pings.
    pub idle_timeout_ms: u64,
    /// Frames queued to one connection (live deliveries, pushes). 256: a
    /// reader that falls this far behind is a slow consumer and is
    /// disconnected; its mail waits in its mailbox.
    pub outbound_queue: usize,
    /// Milliseconds one frame may take to be written before the connection
    /// is dropped with `SLOW_CONSUMER`. A write waits only while the peer's
    /// QUIC flow-control window or TCP buffers are full, i.e. it has stopped
    /// reading; 30 s lets a slow link drain a megabyte, and a peer that
    /// reads nothing at all cannot hold its connection (and its slot) open.
    pub write_timeout_ms: u64,
    /// Decoded frames waiting for the connection's handler. 8: requests are
    /// handled in order; a small queue gives back-pressure to the sender.
    pub inbound_queue: usize,
    /// Envelopes one device's mailbox may hold before senders get
    /// `MAILBOX_FULL`. 10 000: weeks of ordinary chat for a device left
    /// offline, and at most ~330 MB of the largest ciphertexts.
    pub mailbox_quota: u64,
    /// Envelopes read from the store per batch when catching a device up.
    /// 128: bounds memory per connection during a large backlog.
    pub backlog_batch: usize,
    /// One-time prekeys of each kind the relay keeps per device. 400: four
    /// full uploads; more only costs storage, since keys are used once.
    pub max_one_time_prekeys: usize,
    /// When a device's one-time prekeys (either kind) fall below this, it is
    /// told with `PreKeysLow`. 20: time to refill before the last-resort
    /// keys (with weaker forward secrecy) are used.
    pub prekeys_low_threshold: u32,
    /// Failed register/login/add-device attempts allowed on one connection
    /// before it is closed. 3: a client with a typo'd username can retry.
    pub max_auth_attempts: u32,
    /// Devices one account may have. 8: the protocol's
    /// `MAX_DEVICES_PER_USER`; lower it to restrict accounts further.
    pub max_devices: usize,
    /// Contacts one account may keep. 2048: the protocol's `MAX_CONTACTS`.
    pub max_contacts: usize,
    /// tungstenite's read buffer per WebSocket connection, in bytes. 4 KiB:
    /// tungstenite's 128 KiB default costs 1.2 GiB per 10 000 idle clients.
    pub ws_read_buffer_size: usize,
    /// tungstenite's write buffer target, in bytes. 4 KiB, for the same
    /// reason; each frame is flushed anyway.
    pub ws_write_buffer_size: usize,
    /// QUIC bidirectional streams a client may open. 4: it needs one
    /// control stream; a few more leave room for blob transfers.
    pub quic_max_bidi_streams: u32,
    /// QUIC per-stream receive window, in bytes. 512 KiB: about two of the
    /// largest frames, so one frame never stalls on flow control.
    pub quic_stream_window: u32,
    /// QUIC per-connection receive window, in bytes. 1 MiB.
    pub quic_connection_window: u32,
    /// QUIC send window per connection, in bytes. 1 MiB.
    pub quic_send_window: u64,
    /// QUIC transport idle timeout, in milliseconds. 120 s: longer than the
    /// application's `idle_timeout_ms`, so the relay's error frame wins.
    pub quic_idle_timeout_ms: u64,
    /// Receive and send buffer of the QUIC listener's UDP socket, in bytes.
    /// 4 MiB: every QUIC connection shares this one socket, and a herd of
    /// clients coming back after a restart sends thousands of handshake
    /// packets at once. With the kernel's default (208 KiB) a burst of 2000
    /// set-ups lost 2 785 datagrams, each loss costing its handshake a 1 s+
    /// retransmission timeout; with 4 MiB it lost none (docs/benchmarks.md).
    /// Linux caps it at `net.core.rmem_max` / `wmem_max` (often 208 KiB);
    /// the relay warns when it got less.
    pub quic_socket_buffer: usize,
    /// Frames per second one connection may send, sustained. 50: far above
    /// a person typing, enough for a bot; more is refused with
    /// `RATE_LIMITED` and a retry delay.
    pub requests_per_second: u32,
    /// Frames one connection may send in a burst. 100: a client catching up
    /// (acks, prekey refills, a backlog of sends) is not throttled.
    pub request_burst: u32,
    /// Frames per second all connections of one account may send together,
    /// sustained. 100: two busy devices; stops an account from multiplying
    /// its rate by opening many connections.
    pub account_requests_per_second: u32,
    /// Frames one account may send in a burst. 200.
    pub account_request_burst: u32,
    /// Frames per second all connections from one IP address may send
    /// together, sustained. 1000: an office or a NAT'd household of busy
    /// clients; one address cannot flood the relay through many accounts.
    pub ip_requests_per_second: u32,
    /// Frames one IP address may send in a burst. 2000.
    pub ip_request_burst: u32,
    /// Prekey fetches per minute per requesting account. 600: each fetch
    /// consumes the target's one-time prekeys, so draining them is the
    /// attack (a drained device falls back to its last-resort keys, and
    /// refills when told it runs low); starting sessions with every member
    /// of a room on its first message is the use.
    pub prekey_fetches_per_minute: u32,
    /// Prekey fetches in a burst. 1100: the first message in a full room
    /// (`max_room_members`, 1024) fetches one bundle per member device it
    /// has no session with; fewer refused that message with
    /// `PREKEY_FETCH_LIMITED` (60 and 30 did, from 31 members up).
    pub prekey_fetch_burst: u32,
    /// Registrations per hour per IP address. 20: a household or an office
    /// behind one address can sign up; a script cannot claim names in bulk.
    pub registrations_per_hour: u32,
    /// Registrations in a burst per IP address. 5.
    pub registration_burst: u32,
    /// Connections one IP address may hold. 256: generous for NAT, small
    /// against one host exhausting `max_connections`.
    pub max_connections_per_ip: usize,
    /// Milliseconds the relay remembers a delivered message's id, so that a
    /// late retransmission is acked but not delivered again. 7 days: a
    /// sender retries until it sees `Sent`, and a device may be offline for
    /// days with retries queued; clients also deduplicate by message id.
    pub dedup_retention_ms: u64,
    /// Milliseconds a closing connection waits for its last frames (an
    /// error, `Drain`) to reach the peer before tearing down. 2 s: several
    /// round trips on a bad link; a peer that does not read is not waited on
    /// longer.
    pub close_grace_ms: u64,
    /// Milliseconds a draining relay tells clients to wait before
    /// reconnecting. 1 s plus the client's own jitter.
    pub drain_reconnect_after_ms: u32,
    /// Milliseconds a draining relay waits for connections to close before
    /// exiting anyway. 5 s.
    pub drain_grace_ms: u64,
    /// Members (plus pending invitations) one room may hold. 1024: half the
    /// protocol's `MAX_ROOM_MEMBERS`; each room message is stored once per
    /// member device, so this bounds one send's fan-out to 8 192 copies.
    pub max_room_members: usize,
    /// Rooms one account may be a member of. 256: far above what a person
    /// follows; each membership costs a fan-out copy per message.
    pub max_rooms_per_user: usize,
    /// Live invite links one room may have. 64.
    pub max_room_links: usize,
    /// Milliseconds a room change's `at` may differ from the relay's clock
    /// before `CLOCK_SKEW`. 5 min: phones with a drifting clock still work,
    /// a change signed long ago cannot be submitted.
    pub room_clock_skew_ms: u64,
    /// Largest blob, in bytes (`BLOB_TOO_LARGE`). 100 MiB.
    pub blob_max_size: u64,
    /// Bytes of stored blobs one account may hold, counting its uploads in
    /// progress on every connection and stream (`BLOB_QUOTA_EXCEEDED`).
    /// 1 GiB.
    pub blob_quota: u64,
    /// Milliseconds a blob is kept after its upload. 30 days; an hourly
    /// sweep deletes expired blobs, and they are refused as unknown at once.
    pub blob_expiry_ms: u64,
    /// Uploads one connection may have in progress. 4.
    pub max_uploads_per_connection: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            handshake_timeout_ms: 10_000,
            ping_interval_ms: 30_000,
            idle_timeout_ms: 90_000,
            outbound_queue: 256,
            write_timeout_ms: 30_000,
            inbound_queue: 8,
            mailbox_quota: 10_000,
            backlog_batch: 128,
            max_one_time_prekeys: 400,
            prekeys_low_threshold: 20,
            max_auth_attempts: 3,
            max_devices: spider_protocol::message::MAX_DEVICES_PER_USER,
            max_contacts: spider_protocol::message::MAX_CONTACTS,
            ws_read_buffer_size: 4 * 1024,
            ws_write_buffer_size: 4 * 1024,
            quic_max_bidi_streams: 4,
            quic_stream_window: 512 * 1024,
            quic_connection_window: 1024 * 1024,
            quic_send_window: 1024 * 1024,
            quic_idle_timeout_ms: 120_000,
            quic_socket_buffer: 4 * 1024 * 1024,
            requests_per_second: 50,
            request_burst: 100,
            account_requests_per_second: 100,
            account_request_burst: 200,
            ip_requests_per_second: 1000,
            ip_request_burst: 2000,
            prekey_fetches_per_minute: 600,
            prekey_fetch_burst: 1100,
            registrations_per_hour: 20,
            registration_burst: 5,
            max_connections_per_ip: 256,
            dedup_retention_ms: 7 * 24 * 3600 * 1000,
            close_grace_ms: 2_000,
            drain_reconnect_after_ms: 1_000,
            drain_grace_ms: 5_000,
            max_room_members: 1024,
            max_rooms_per_user: 256,
            max_room_links: 64,
            room_clock_skew_ms: 5 * 60 * 1000,
            blob_max_size: 100 * 1024 * 1024,
            blob_quota: 1024 * 1024 * 1024,
            blob_expiry_ms: 30 * 24 * 3600 * 1000,
            max_uploads_per_connection: 4,
        }
    }
}

impl Limits {
    fn check(&self) -> Result<(), ConfigError> {
        let bad = |key, why| Err(ConfigError::Invalid { key, why });
        if self.max_connections == 0 {
            return bad("limits.max_connections", "must be at least 1");
        }
        if self.outbound_queue == 0 || self.inbound_queue == 0 || self.backlog_batch == 0 {
            return bad("limits.*_queue", "queues must hold at least one item");
        }
        if self.write_timeout_ms == 0 {
            return bad("limits.write_timeout_ms", "must be at least 1");
        }
        if self.ping_interval_ms == 0 || self.idle_timeout_ms <= self.ping_interval_ms {
            return bad(
                "limits.idle_timeout_ms",
                "must be longer than ping_interval_ms",
            );
        }
        if self.max_devices == 0
            || self.max_devices > spider_protocol::message::MAX_DEVICES_PER_USER
        {
            return bad("limits.max_devices", "must be 1 to MAX_DEVICES_PER_USER");
        }
        if self.max_contacts > spider_protocol::message::MAX_CONTACTS {
            return bad("limits.max_contacts", "must be at most MAX_CONTACTS");
        }
        for (key, v) in [
            ("limits.requests_per_second", self.requests_per_second),
            ("limits.request_burst", self.request_burst),
            (
                "limits.account_requests_per_second",
                self.account_requests_per_second,
            ),
            ("limits.account_request_burst", self.account_request_burst),
            ("limits.ip_requests_per_second", self.ip_requests_per_second),
            ("limits.ip_request_burst", self.ip_request_burst),
            (
                "limits.prekey_fetches_per_minute",
                self.prekey_fetches_per_minute,
            ),
            ("limits.prekey_fetch_burst", self.prekey_fetch_burst),
            ("limits.registrations_per_hour", self.registrations_per_hour),
            ("limits.registration_burst", self.registration_burst),
        ] {
            if v == 0 {
                return bad(key, "rates must be at least 1");
            }
        }
        if self.max_connections_per_ip == 0 {
            return bad("limits.max_connections_per_ip", "must be at least 1");
        }
        if self.max_room_members == 0
            || self.max_room_members > spider_protocol::message::MAX_ROOM_MEMBERS
        {
            return bad("limits.max_room_members", "must be 1 to MAX_ROOM_MEMBERS");
        }
        if self.max_rooms_per_user > spider_protocol::message::MAX_ROOMS_LISTED {
            return bad(
                "limits.max_rooms_per_user",
                "must be at most MAX_ROOMS_LISTED",
            );
        }
        if self.ws_read_buffer_size < 256 {
            return bad("limits.ws_read_buffer_size", "must be at least 256");
        }
        Ok(())
    }
}

/// The resolved configuration the relay runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The relay's name: covered by auth signatures, and the certificate's
    /// name. 1 to 253 bytes (a DNS name; `MAX_RELAY_NAME`).
    pub name: String,
    /// QUIC address (UDP).
    pub quic: SocketAddr,
    /// WebSocket-over-TLS address (TCP).
    pub ws: SocketAddr,
    /// Prometheus metrics address, if served.
    pub metrics: Option<SocketAddr>,
    /// Data directory: `store/` (sled) and `certs/`.
    pub data: PathBuf,
    /// Certificate chain and key (PEM). `None`: use (or make) the
    /// development certificates under `data/certs/`.
    pub cert: Option<(PathBuf, PathBuf)>,
    /// Origins a browser may connect from over WebSocket. Empty: only
    /// clients that send no `Origin` header (non-browser clients).
    pub allowed_origins: Vec<String>,
    /// Limits.
    pub limits: Limits,
}

/// What flags and the environment set (clap fills this in `main`).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--name` / `SPIDER_RELAY_NAME`.
    pub name: Option<String>,
    /// `--quic` / `SPIDER_RELAY_QUIC`.
    pub quic: Option<SocketAddr>,
    /// `--ws` / `SPIDER_RELAY_WS`.
    pub ws: Option<SocketAddr>,
    /// `--metrics` / `SPIDER_RELAY_METRICS`.
    pub metrics: Option<SocketAddr>,
    /// `--no-metrics`.
    pub no_metrics: bool,
    /// `--data` / `SPIDER_RELAY_DATA`.
    pub data: Option<PathBuf>,
    /// `--cert` / `SPIDER_RELAY_CERT`.
    pub cert: Option<PathBuf>,
    /// `--key` / `SPIDER_RELAY_KEY`.
    pub key: Option<PathBuf>,
}

impl Config {
    /// Resolves flags and environment over the file over the defaults.
    pub fn resolve(over: Overrides, file: FileConfig) -> Result<Self, ConfigError> {
        let parse = |s: &str| s.parse::<SocketAddr>().ok();
        let default_addr = parse(DEFAULT_ADDR).ok_or(ConfigError::Invalid {
            key: "quic",
            why: "bad default",
        })?;
        let name = over
            .name
            .or(file.name)
            .unwrap_or_else(|| DEFAULT_NAME.to_owned());
        if name.is_empty() || name.len() > spider_protocol::message::MAX_RELAY_NAME {
            return Err(ConfigError::Invalid {
                key: "name",
                why: "must be 1 to 255 bytes",
            });
        }
        let data = over.data.or(file.data).ok_or(ConfigError::Invalid {
            key: "data",
            why: "a data directory is required (--data DIR)",
        })?;
        let cert = match (over.cert.or(file.cert), over.key.or(file.key)) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid {
                    key: "cert",
                    why: "cert and key go together",
                });
            }
        };
        let metrics = if over.no_metrics {
            None
        } else {
            Some(
                over.metrics
                    .or(file.metrics)
                    .or_else(|| parse(DEFAULT_METRICS_ADDR))
                    .ok_or(ConfigError::Invalid {
                        key: "metrics",
                        why: "bad default",
                    })?,
            )
        };
        let c = Self {
            name,
            quic: over.quic.or(file.quic).unwrap_or(default_addr),
            ws: over.ws.or(file.ws).unwrap_or(default_addr),
            metrics,
            data,
            cert,
            allowed_origins: file.allowed_origins.unwrap_or_default(),
            limits: file.limits,
        };
        c.limits.check()?;
        Ok(c)
    }

    /// A configuration for tests: loopback, port 0 everywhere, no metrics,
    /// and registration limits lifted (every test client shares 127.0.0.1).
    pub fn for_tests(data: PathBuf) -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let limits = Limits {
            registrations_per_hour: 100_000,
            registration_burst: 10_000,
            ..Limits::default()
        };
        Self {
            name: DEFAULT_NAME.to_owned(),
            quic: any,
            ws: any,
            metrics: None,
            data,
            cert: None,
            allowed_origins: Vec::new(),
            limits,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_file_and_file_over_defaults() {
        let file: FileConfig = toml::from_str(
            "name = \"file.example\"\nws = \"127.0.0.1:5000\"\ndata = \"/tmp/x\"\n[limits]\nmailbox_quota = 7\n",
        )
        .unwrap();
        let over = Overrides {
            name: Some("flag.example".into()),
            ..Overrides::default()
        };
        let c = Config::resolve(over, file).unwrap();
        assert_eq!(c.name, "flag.example");
        assert_eq!(c.ws.port(), 5000);
        assert_eq!(c.quic.to_string(), DEFAULT_ADDR);
        assert_eq!(
            c.metrics.map(|m| m.to_string()).as_deref(),
            Some(DEFAULT_METRICS_ADDR)
        );
        assert_eq!(c.limits.mailbox_quota, 7);
        assert_eq!(c.limits.outbound_queue, Limits::default().outbound_queue);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(toml::from_str::<FileConfig>("nmae = \"x\"").is_err());
        assert!(toml::from_str::<FileConfig>("[limits]\nmailbox_qouta = 1").is_err());
        let file: FileConfig =
            toml::from_str("[limits]\nidle_timeout_ms = 10\nping_interval_ms = 20").unwrap();
        let over = Overrides {
            data: Some("/tmp/x".into()),
            ..Overrides::default()
        };
        assert!(Config::resolve(over.clone(), file).is_err());
        let long = Overrides {
            name: Some("a".repeat(256)),
            ..over
        };
        assert!(Config::resolve(long, FileConfig::default()).is_err());
    }
}
