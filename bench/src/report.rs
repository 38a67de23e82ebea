//! The JSON report of a run, and what it says about the machine and the relay.

use crate::accounting::Counts;
use crate::latency::LatencySummary;
use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// Everything a run measured; written with `--json FILE` and printed at the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Version of spider-load that made the report.
    pub spider_load_version: String,
    /// `connections`, `direct`, `room` or `reconnect-storm`.
    pub scenario: String,
    /// The system under test (`node-ws`, `mosquitto`, ...).
    pub target: String,
    /// The address it was reached at.
    pub addr: String,
    /// The scenario's parameters, as given.
    pub params: Params,
    /// The run's seed (payload bytes, run id).
    pub seed: u64,
    /// Where it ran.
    pub machine: Machine,
    /// When it ran: UTC, RFC 3339.
    pub date: String,
    /// Envelope counts.
    pub counts: Counts,
    /// Connection set-up.
    pub connections: ConnectStats,
    /// Rates over the send phase.
    pub throughput: Throughput,
    /// End-to-end latency of delivered envelopes (from the intended send time at a fixed rate).
    pub latency: Option<LatencySummary>,
    /// Latency of connection set-up (connect, upgrade, log in, subscribe).
    pub connect_latency: Option<LatencySummary>,
    /// The relay's memory, when `--relay-pid` was given.
    pub relay: Option<RelayMemory>,
    /// CPU time the relay used over the whole run (user + system), in seconds, with `--relay-pid`.
    pub relay_cpu_secs: Option<f64>,
    /// CPU time spider-load's workers used over their runs, in seconds: next to the relay's, it
    /// shows whether the load generator, sharing the machine, was the bottleneck.
    pub load_cpu_secs: f64,
    /// The merged end-to-end latency histogram, base64 of HdrHistogram V2 (for re-analysis).
    pub latency_histogram: Option<String>,
    /// Errors seen (connection failures, send failures, ...), total.
    pub failures: u64,
    /// The first few distinct error messages, for diagnosis.
    pub errors: Vec<String>,
    /// `room`: set-up and messages (the counts are per delivery: one per message and other member).
    #[serde(default)]
    pub room: Option<RoomStats>,
    /// `reconnect-storm`: each outage of the relay.
    #[serde(default)]
    pub storm: Option<StormStats>,
}

/// What a `room` run did besides the per-delivery counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomStats {
    /// Rooms set up.
    pub rooms_ready: u64,
    /// Members of those rooms (owners included).
    pub members_joined: u64,
    /// Longest set-up of one room (create, invite link, every member's join), in seconds.
    pub setup_secs: f64,
    /// From the end of the set-up until every member had every membership change, in seconds.
    #[serde(default)]
    pub settle_secs: f64,
    /// Membership-change envelopes delivered while the rooms filled up.
    #[serde(default)]
    pub changes_delivered: u64,
    /// Members still short of changes when the settle limit passed.
    #[serde(default)]
    pub unsettled_members: u64,
    /// Messages posted.
    pub messages_sent: u64,
    /// Messages the relay acked (`Sent`: stored for every member).
    pub messages_acked: u64,
    /// Messages the relay refused.
    pub messages_refused: u64,
    /// Messages that reached every other member (those the latency to the last member covers).
    pub messages_complete: u64,
    /// Latency of every single delivery (the report's `latency` is to the last member).
    pub delivery_latency: Option<LatencySummary>,
}

/// What a `reconnect-storm` run measured of its outages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StormStats {
    /// The outages, in order.
    pub outages: Vec<crate::scenario::storm::Outage>,
    /// Times any client lost its connection.
    pub disconnects: u64,
    /// Times any client logged in again.
    pub reconnects: u64,
}

/// Parameters of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// Clients (users) connected in all.
    pub clients: u64,
    /// Pairs (`direct`).
    pub pairs: Option<u64>,
    /// Offered rate in envelopes per second (`direct --rate`); `None` means flat out.
    pub rate: Option<f64>,
    /// Envelopes in flight per sender when flat out.
    pub window: Option<u32>,
    /// Payload bytes per envelope.
    pub payload_size: usize,
    /// Real end-to-end encryption (true) or opaque random payloads (false).
    pub e2e: bool,
    /// Send (or hold) phase, in seconds.
    pub duration_secs: f64,
    /// Time allowed after the send phase for envelopes in flight to arrive, in seconds.
    pub drain_secs: f64,
    /// Worker processes.
    pub workers: u32,
    /// Loopback source addresses the clients were spread over.
    pub source_addrs: u32,
    /// Rooms (`room`).
    #[serde(default)]
    pub rooms: Option<u64>,
    /// Members per room (`room`).
    #[serde(default)]
    pub members: Option<u64>,
    /// Posting members per room (`room`).
    #[serde(default)]
    pub senders: Option<u64>,
}

/// The machine a run was on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// CPUs available to this process.
    pub cores: u64,
    /// Total memory from /proc/meminfo, in KiB.
    pub mem_total_kib: Option<u64>,
    /// Kernel release from /proc/sys/kernel/osrelease.
    pub kernel: Option<String>,
}

impl Machine {
    /// Reads the machine's facts (missing /proc entries leave fields empty).
    pub fn detect() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        let mem_total_kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| proc_field_kib(&s, "MemTotal"));
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|s| s.trim().to_owned());
        Self {
            cores,
            mem_total_kib,
            kernel,
        }
    }
}

/// Connection set-up figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectStats {
    /// Connections tried.
    pub attempted: u64,
    /// Connections that were established and authenticated.
    pub established: u64,
    /// Connections that failed or timed out.
    pub failed: u64,
    /// Wall time of the connect phase, in seconds (first start to last finish, over workers).
    pub phase_secs: f64,
    /// `established / phase_secs`.
    pub rate_per_sec: f64,
}

/// Rates over the send phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// Offered rate, when fixed.
    pub offered_per_sec: Option<f64>,
    /// Envelopes sent per second of the send phase.
    pub sent_per_sec: f64,
    /// Envelopes delivered per second of the send phase.
    pub delivered_per_sec: f64,
    /// Length of the send phase, in seconds.
    pub send_phase_secs: f64,
}

/// The relay's resident memory around the connect phase.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RelayMemory {
    /// Process id read.
    pub pid: u32,
    /// VmRSS before the first connection, in KiB.
    pub rss_before_kib: u64,
    /// VmRSS with every connection established, in KiB.
    pub rss_after_kib: u64,
    /// `(after - before) / established`, in bytes; `None` without connections.
    pub per_connection_bytes: Option<f64>,
}

impl RelayMemory {
    /// Figures from two readings and the connections held at the second.
    pub fn new(pid: u32, before_kib: u64, after_kib: u64, established: u64) -> Self {
        let per_connection_bytes = (established > 0)
            .then(|| (after_kib as f64 - before_kib as f64) * 1024.0 / established as f64);
        Self {
            pid,
            rss_before_kib: before_kib,
            rss_after_kib: after_kib,
            per_connection_bytes,
        }
    }
}

/// Reads a process's resident set size (VmRSS) from /proc/PID/status, in KiB.
pub fn read_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    proc_field_kib(&status, "VmRSS").with_context(|| format!("no VmRSS line in {path}"))
}

/// Clock ticks per second of /proc/PID/stat times: USER_HZ, fixed at 100 on Linux whatever the
/// kernel's internal HZ.
pub const USER_HZ: f64 = 100.0;

/// CPU time (user + system) a process has used, in seconds, from /proc/PID/stat.
pub fn read_cpu_secs(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    stat_cpu_secs(&stat).with_context(|| format!("unexpected format of {path}"))
}

/// CPU time of this process, in seconds.
pub fn own_cpu_secs() -> anyhow::Result<f64> {
    read_cpu_secs(std::process::id())
}

/// utime + stime of a /proc/PID/stat line, in seconds. The command name (field 2) is in
/// parentheses and may hold spaces or parentheses itself, so fields are counted from the last `)`.
pub fn stat_cpu_secs(stat: &str) -> Option<f64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // after[0] is field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// The value of a `Name:   1234 kB` line of a /proc file, in KiB.
pub fn proc_field_kib(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(':')?;
        let mut words = rest.split_whitespace();
        let value = words.next()?.parse().ok()?;
        matches!(words.next(), Some("kB") | None).then_some(value)
    })
}

/// The current time as UTC RFC 3339, to the second.
pub fn utc_now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339_from_unix(secs)
}

/// Formats seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339_from_unix(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day): H. Hinnant's
/// `civil_from_days` (chrono-compatible dates), to avoid a date crate for one timestamp.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_line_is_read_from_a_status_file() {
        let status = "Name:\tmosquitto\nVmPeak:\t  20000 kB\nVmRSS:\t    5120 kB\nThreads:\t1\n";
        assert_eq!(proc_field_kib(status, "VmRSS"), Some(5120));
        assert_eq!(proc_field_kib(status, "VmSwap"), None);
        assert_eq!(proc_field_kib("VmRSSX: 1 kB", "VmRSS"), None);
    }

    #[test]
    fn own_rss_is_readable() {
        assert!(read_rss_kib(std::process::id()).unwrap() > 0);
        assert!(read_rss_kib(u32::MAX).is_err());
    }

    #[test]
    fn cpu_time_is_read_from_a_stat_line_whatever_the_command_name() {
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1";
        assert_eq!(stat_cpu_secs(stat), Some(3.0));
        assert_eq!(stat_cpu_secs("1 (x) S 1"), None);
        assert!(own_cpu_secs().unwrap() >= 0.0);
        assert!(read_cpu_secs(u32::MAX).is_err());
    }

    #[test]
    fn per_connection_memory_is_the_growth_over_the_connections() {
        let m = RelayMemory::new(1, 10_000, 12_000, 1024);
        assert_eq!(m.per_connection_bytes, Some(2000.0));
        assert_eq!(RelayMemory::new(1, 10, 12, 0).per_connection_bytes, None);
    }

    #[test]
    fn dates_format_as_rfc3339() {
        assert_eq!(rfc3339_from_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_from_unix(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_from_unix(1_795_000_000), "2026-11-18T11:06:40Z");
    }

    #[test]
    fn machine_facts_come_from_proc() {
        let m = Machine::detect();
        assert!(m.cores >= 1);
        assert!(m.mem_total_kib.is_some_and(|k| k > 0));
    }
}
