//! The command line: four scenarios, and the flags every scenario shares.

use crate::scenario::storm::StopSignal;
use crate::target::TargetKind;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Most loopback source addresses a run may spread over (127.0.0.2 ..= 127.0.0.251).
pub const MAX_SOURCE_ADDRS: u32 = 250;

/// Most worker processes: each holds under 20,000 descriptors, so 32 cover 600k WebSockets.
pub const MAX_WORKERS: u32 = 32;

/// Most members of a room: the protocol's bound on a room's member list.
pub const MAX_ROOM_MEMBERS: u64 = spider_protocol::message::MAX_ROOM_MEMBERS as u64;

/// Longest send or hold phase, in seconds: a run always stops by itself.
pub const MAX_DURATION_SECS: f64 = 3600.0;

/// spider-load: load generator for Spider relays and the peers they are compared against.
///
/// Every address is on the loopback network (127.0.0.0/8 or ::1); anything else is refused.
#[derive(Debug, Clone, Parser)]
#[command(name = "spider-load", version, about, long_about = None)]
pub struct Cli {
    /// Flags shared by every scenario.
    #[command(flatten)]
    pub common: Common,
    /// The workload.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// The workloads.
#[derive(Debug, Clone, Subcommand)]
pub enum Scenario {
    /// Open and hold N authenticated idle connections: connect rate, failures, relay memory per
    /// connection (with --relay-pid).
    Connections {
        /// Connections to open and hold.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
        clients: u64,
    },
    /// Pairs exchanging 1:1 envelopes, flat out or at a fixed offered rate: delivered envelopes per
    /// second and end-to-end latency.
    Direct {
        /// Pairs of users; each user sends to its peer.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=5_000_000))]
        pairs: u64,
        /// Offered rate, envelopes per second over the whole run (open loop, latency from the
        /// intended send time). Without it: flat out (closed loop).
        #[arg(long)]
        rate: Option<f64>,
        /// Flat out: envelopes each sender keeps in flight end to end.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        window: u32,
    },
    /// Fan-out in rooms (Spider only): deliveries per second and latency to the last member.
    Room {
        /// Members per room (10, 100, 1000 in the standard runs).
        #[arg(long, value_parser = clap::value_parser!(u64).range(2..=MAX_ROOM_MEMBERS))]
        members: u64,
        /// Members of each room that post.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_ROOM_MEMBERS))]
        senders: u64,
        /// Rooms, each with its own members (set up in parallel).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        rooms: u64,
        /// Offered rate, messages per second over every sender of every room (open loop).
        /// Without it: flat out.
        #[arg(long)]
        rate: Option<f64>,
        /// Flat out: messages each sender keeps in flight until their last member has them.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        window: u32,
    },
    /// Restart the relay under load (Spider only; spider-load starts the relay itself): time until
    /// every client is back, acked envelopes lost, duplicates.
    ReconnectStorm {
        /// Clients connected through the restarts (an even number: they form pairs).
        #[arg(long, value_parser = clap::value_parser!(u64).range(2..=10_000_000))]
        clients: u64,
        /// Offered rate, envelopes per second over all clients (open loop, so that envelopes
        /// keep being written while the relay is down).
        #[arg(long, default_value_t = 200.0)]
        rate: f64,
        /// How the relay is stopped, once per value, in order: `term` (SIGTERM, graceful drain)
        /// and `kill` (SIGKILL).
        #[arg(long, value_enum, value_delimiter = ',', default_values_t = [StopSignal::Term, StopSignal::Kill])]
        signal: Vec<StopSignal>,
        /// The spider-relay binary [default: the one next to this binary].
        #[arg(long)]
        relay_bin: Option<PathBuf>,
    },
    /// Print a comparison table of JSON reports from one session (no load is generated).
    Table {
        /// Report files written with --json.
        #[arg(required = true)]
        reports: Vec<PathBuf>,
    },
}

impl Scenario {
    /// The scenario's name as on the command line and in the report.
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Connections { .. } => "connections",
            Scenario::Direct { .. } => "direct",
            Scenario::Room { .. } => "room",
            Scenario::ReconnectStorm { .. } => "reconnect-storm",
            Scenario::Table { .. } => "table",
        }
    }
}

/// Flags shared by every scenario (they may come before or after the scenario's name).
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// System under test.
    #[arg(long, global = true, value_enum)]
    pub target: Option<TargetKind>,
    /// Its address (loopback only). Default: the target's port on 127.0.0.1.
    #[arg(long, global = true)]
    pub addr: Option<SocketAddr>,
    /// Spider targets: the relay's CA certificate to pin (PEM; the relay's DATA/certs/ca.pem).
    #[arg(long, global = true, env = "SPIDER_LOAD_CA")]
    pub ca: Option<PathBuf>,
    /// Spider targets: the name in the relay's certificate (TLS server name).
    #[arg(long, global = true, default_value = "localhost")]
    pub relay_name: String,
    /// Payload bytes per envelope (at least the 32-byte stamp): opaque random bytes, or with
    /// --e2e the plaintext (as text, 12 characters longer).
    #[arg(long, global = true, default_value_t = 256)]
    pub payload_size: usize,
    /// Spider targets, every scenario: real end-to-end encryption through the spider-client
    /// SDK's Engine (registration with one-time prekeys, PQXDH, Double Ratchet, Sender Keys in
    /// rooms, an encrypted in-memory profile per client; in `reconnect-storm` the SDK's own
    /// reconnect and outbox), instead of opaque random payloads.
    #[arg(long, global = true)]
    pub e2e: bool,
    /// Seed of the payload bytes: the same seed sends the same bytes on the same schedule.
    #[arg(long, global = true, default_value_t = 0x5eed)]
    pub seed: u64,
    /// Send phase (or hold phase for `connections`), in seconds.
    #[arg(long, global = true, default_value_t = 10.0)]
    pub duration: f64,
    /// After the send phase, how long to wait for envelopes in flight, in seconds.
    #[arg(long, global = true, default_value_t = 5.0)]
    pub drain: f64,
    /// Worker processes (each takes a share of the clients; their histograms are merged).
    #[arg(long, global = true, default_value_t = 1)]
    pub workers: u32,
    /// Write the JSON report to this file (`-` for standard output).
    #[arg(long, global = true)]
    pub json: Option<PathBuf>,
    /// Loopback source addresses to spread client sockets over: 127.0.0.2, 127.0.0.3, ...
    #[arg(long, global = true, default_value_t = 4)]
    pub source_addrs: u32,
    /// PID of the relay (or peer) process, to report its RSS before and after connecting.
    #[arg(long, global = true)]
    pub relay_pid: Option<u32>,
    /// Connections being set up at once, per worker.
    #[arg(long, global = true, default_value_t = 128)]
    pub connect_concurrency: u32,
    /// Give up on one connection set-up after this many seconds.
    #[arg(long, global = true, default_value_t = 10.0)]
    pub connect_timeout: f64,
    /// No progress bars.
    #[arg(long, global = true)]
    pub quiet: bool,
    /// Internal: this process is worker N of --workers (set by the parent).
    #[arg(long, global = true, hide = true)]
    pub worker_index: Option<u32>,
    /// Internal: the run id chosen by the parent.
    #[arg(long, global = true, hide = true)]
    pub run_id: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn scenarios_parse_with_their_exact_flags() {
        let cli = Cli::try_parse_from([
            "spider-load",
            "--target",
            "node-ws",
            "direct",
            "--pairs",
            "50",
            "--rate",
            "1000",
            "--duration",
            "5",
            "--workers",
            "2",
            "--seed",
            "7",
        ])
        .unwrap();
        assert!(
            matches!(cli.scenario, Scenario::Direct { pairs: 50, rate: Some(r), .. } if r == 1000.0)
        );
        assert_eq!(cli.common.target, Some(TargetKind::NodeWs));
        assert_eq!(cli.common.workers, 2);
        assert_eq!(cli.common.seed, 7);

        for (args, name) in [
            (&["connections", "--clients", "10"][..], "connections"),
            (&["room", "--members", "100", "--senders", "5"][..], "room"),
            (
                &["reconnect-storm", "--clients", "4"][..],
                "reconnect-storm",
            ),
        ] {
            let cli = Cli::try_parse_from(
                ["spider-load", "--target", "mosquitto"]
                    .iter()
                    .chain(args.iter()),
            )
            .unwrap();
            assert_eq!(cli.scenario.name(), name);
        }
        let cli = Cli::try_parse_from(["spider-load", "table", "a.json", "b.json"]).unwrap();
        assert!(matches!(&cli.scenario, Scenario::Table { reports } if reports.len() == 2));
        assert!(Cli::try_parse_from(["spider-load", "table"]).is_err());
        assert!(Cli::try_parse_from(["spider-load", "connections"]).is_err());
        assert!(Cli::try_parse_from(["spider-load", "direct", "--pairs", "0"]).is_err());
    }

    #[test]
    fn room_and_storm_flags_have_their_defaults() {
        let cli = Cli::try_parse_from([
            "spider-load",
            "room",
            "--members",
            "1000",
            "--senders",
            "10",
        ])
        .unwrap();
        assert!(matches!(
            cli.scenario,
            Scenario::Room {
                members: 1000,
                senders: 10,
                rooms: 1,
                rate: None,
                window: 1
            }
        ));
        assert!(
            Cli::try_parse_from(["spider-load", "room", "--members", "4096", "--senders", "1"])
                .is_err(),
            "beyond the protocol's member list"
        );
        let cli =
            Cli::try_parse_from(["spider-load", "reconnect-storm", "--clients", "10"]).unwrap();
        let Scenario::ReconnectStorm { signal, rate, .. } = cli.scenario else {
            panic!("not a storm");
        };
        assert_eq!(signal, vec![StopSignal::Term, StopSignal::Kill]);
        assert!((rate - 200.0).abs() < f64::EPSILON);
        let cli = Cli::try_parse_from([
            "spider-load",
            "reconnect-storm",
            "--clients",
            "10",
            "--signal",
            "kill",
        ])
        .unwrap();
        assert!(
            matches!(&cli.scenario, Scenario::ReconnectStorm { signal, .. } if signal == &[StopSignal::Kill])
        );
    }
}
