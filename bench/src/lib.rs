//! spider-load: load generator and benchmark scenarios for Spider relays and their peers.
//!
//! Many clients in one process (or spread over `--workers` processes of this binary), bound to
//! several loopback source addresses so that ports never run out, drive one target through four
//! scenarios and end with a JSON [`report::Report`]:
//!
//! ```text
//!  cli ──► run ──► worker processes (or this one) ──► scenario::{connections, direct, room}
//!            │                                              │  Target trait (target/)
//!            └─ reconnect-storm: relay::RelayProcess ◄──────┤  (storm: stop, start again)
//!                                                           ▼
//!     spider-quic | spider-ws (opaque, or --e2e through the SDK's Engine) | mosquitto | node-ws
//!  each worker: accounting (who got what) + latency (HdrHistogram) ──► merged into the report
//! ```
//!
//! * [`schedule`]: open-loop fixed-rate schedules (latency from intended send times: coordinated
//!   omission corrected) and the flat-out closed loop.
//! * [`envelope`]: the stamp every payload carries (sender, run, sequence number, send time).
//! * [`accounting`]: sent = delivered + lost, acked-but-lost, duplicates, refusals, by sequence
//!   number.
//! * [`fanout`]: when each room message reached the last of its members.
//! * [`latency`]: histograms merged across tasks and processes through the V2 encoding.
//! * [`target`]: the systems under test: Spider (opaque payloads, or `--e2e` through the SDK's
//!   engine; links bound to a source address) and the peers.
//! * [`relay`]: the `spider-relay` child process that `reconnect-storm` stops and starts.
//! * [`worker`]: `--workers N` forks N copies of this binary (a process holds under 20,000
//!   sockets) and merges what they report on their standard output.
//! * [`net`]: loopback-only sockets spread over 127.0.0.2, 127.0.0.3, ... (about 28k ports each).
//! * [`report`] and [`compare`]: the JSON report, and `spider-load table` for ratios between
//!   targets run in the same session.
//!
//! The peers are started by the scripts under `bench/peers/` (`compare.sh` runs them all).
//!
//! ```
//! use spider_load::schedule::OpenLoop;
//! use std::time::Duration;
//!
//! // 1000 envelopes/s shared by 4 senders: sender 1 sends at 1 ms, 5 ms, 9 ms, ...
//! let s = OpenLoop::new(1000.0, 4, 1).unwrap();
//! assert_eq!(s.intended(2), Duration::from_millis(9));
//! ```

pub mod accounting;
pub mod cli;
pub mod compare;
pub mod envelope;
pub mod fanout;
pub mod latency;
pub mod net;
pub mod progress;
pub mod relay;
pub mod report;
pub mod run;
pub mod scenario;
pub mod schedule;
pub mod target;
pub mod worker;
