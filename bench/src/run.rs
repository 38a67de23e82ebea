//! A whole run: check the command line, run the workers (in this process or forked), watch them,
//! read the relay's memory, merge, report.

use crate::cli::{Cli, MAX_DURATION_SECS, MAX_WORKERS, Scenario};
use crate::envelope::{HEADER_LEN, MAX_PAYLOAD};
use crate::latency::Latency;
use crate::net::{SourceAddrs, ensure_loopback};
use crate::progress::{Bars, Phase, Progress, Snapshot};
use crate::relay::RelayProcess;
use crate::report::{
    ConnectStats, Machine, Params, RelayMemory, Report, RoomStats, StormStats, Throughput,
    read_cpu_secs, read_rss_kib, utc_now_rfc3339,
};
use crate::scenario::room::RoomSpec;
use crate::scenario::{self, Plan, WorkerOutput};
use crate::schedule::RateMode;
use crate::target::mqtt::MqttTarget;
use crate::target::node_ws::NodeWsTarget;
use crate::target::spider::SpiderTarget;
use crate::target::spider_e2e::{MAX_E2E_PAYLOAD, SpiderE2eTarget};
use crate::target::{RoomSender, Target, TargetKind, spider};
use crate::worker;
use anyhow::{Context as _, bail};
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often the parent refreshes the bars and checks for the moment to read the relay's RSS.
const WATCH_EVERY: Duration = Duration::from_millis(100);

/// How long after every connection is up the relay's RSS is read (at most half the run).
const RSS_SETTLE: Duration = Duration::from_secs(1);

/// Descriptors a worker keeps beyond one per client (stdio, the runtime, pipes to the parent).
const FD_RESERVE: u64 = 256;

/// Ephemeral ports one source address gives toward one listener (Linux's default range,
/// 32768-60999, less some slack).
const PORTS_PER_SOURCE: u64 = 28_000;

/// The soft limit on open files of this process, from /proc/self/limits.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Refuses a run that would run out of descriptors or ports, saying which flag to raise.
fn check_capacity(
    clients: u64,
    workers: u32,
    source_addrs: u32,
    fd_limit: Option<u64>,
) -> anyhow::Result<()> {
    let per_worker = clients.div_ceil(u64::from(workers.max(1)));
    if let Some(limit) = fd_limit {
        let usable = limit.saturating_sub(FD_RESERVE).max(1);
        if per_worker > usable {
            bail!(
                "{per_worker} connections per worker exceed the open-files limit ({limit}): \
                 use --workers {} or more",
                clients.div_ceil(usable)
            );
        }
    }
    if clients > u64::from(source_addrs) * PORTS_PER_SOURCE {
        bail!(
            "{clients} connections need more than {source_addrs} source address(es) of \
             ~{PORTS_PER_SOURCE} ports each: use --source-addrs {} or more",
            clients.div_ceil(PORTS_PER_SOURCE)
        );
    }
    Ok(())
}

/// What was checked about the command line.
#[derive(Debug, Clone)]
struct Checked {
    kind: TargetKind,
    addr: SocketAddr,
    duration: Duration,
    drain: Duration,
    connect_timeout: Duration,
    workers: u32,
}

fn secs(value: f64, flag: &str, max: f64) -> anyhow::Result<Duration> {
    if !(value.is_finite() && value > 0.0 && value <= max) {
        bail!("{flag} must be more than 0 and at most {max} seconds");
    }
    Ok(Duration::from_secs_f64(value))
}

fn check(cli: &Cli) -> anyhow::Result<Checked> {
    let c = &cli.common;
    let kind = c
        .target
        .context("--target is required (spider-quic, spider-ws, mosquitto, node-ws)")?;
    let storm = matches!(cli.scenario, Scenario::ReconnectStorm { .. });
    if matches!(
        cli.scenario,
        Scenario::Room { .. } | Scenario::ReconnectStorm { .. }
    ) && !spider::is_spider(kind)
    {
        // The peers are compared on `connections` and `direct` (issue 6): Mosquitto and the Node
        // relay have no rooms with members, and restarting a peer under load is not compared.
        bail!(
            "scenario {} drives Spider only (spider-quic, spider-ws), not {}",
            cli.scenario.name(),
            kind.name()
        );
    }
    // reconnect-storm starts its own relay, and so knows its CA.
    if spider::is_spider(kind) && c.ca.is_none() && !storm {
        bail!(
            "target {} needs --ca FILE: the relay's CA certificate (DATA/certs/ca.pem, printed by \
             bench/peers/spider/start.sh)",
            kind.name()
        );
    }
    if c.e2e {
        if !spider::is_spider(kind) {
            bail!("--e2e drives Spider's client SDK: spider-quic or spider-ws only");
        }
        if c.payload_size > MAX_E2E_PAYLOAD {
            bail!("--payload-size with --e2e is at most {MAX_E2E_PAYLOAD} (the text limit)");
        }
    }
    if let Scenario::Room {
        members,
        senders,
        rate,
        ..
    } = cli.scenario
    {
        if senders > members {
            bail!("--senders cannot exceed --members");
        }
        if rate.is_some_and(|r| !(r.is_finite() && r >= 0.001)) {
            bail!("--rate must be a positive number of messages per second");
        }
    }
    if let Scenario::ReconnectStorm { clients, rate, .. } = &cli.scenario {
        if clients % 2 != 0 {
            bail!("--clients must be even: the clients form pairs");
        }
        if !(rate.is_finite() && *rate >= 0.001) {
            bail!("--rate must be a positive number of envelopes per second");
        }
        if c.workers != 1 {
            bail!("reconnect-storm runs in one process (it restarts the relay it started)");
        }
    }
    if !(HEADER_LEN..=MAX_PAYLOAD).contains(&c.payload_size) {
        bail!("--payload-size must be {HEADER_LEN}..={MAX_PAYLOAD} bytes");
    }
    if !(1..=MAX_WORKERS).contains(&c.workers) {
        bail!("--workers must be 1..={MAX_WORKERS}");
    }
    if let Scenario::Direct {
        rate: Some(rate), ..
    } = cli.scenario
        && !(rate.is_finite() && rate >= 0.001)
    {
        bail!("--rate must be a positive number of envelopes per second");
    }
    let addr = match c.addr {
        Some(a) => a,
        // reconnect-storm's own relay: a port free for UDP and TCP.
        None if storm => SocketAddr::from(([127, 0, 0, 1], crate::relay::free_port()?)),
        None => kind.default_addr(),
    };
    ensure_loopback(addr)?;
    check_capacity(
        clients(&cli.scenario),
        c.workers,
        c.source_addrs,
        open_files_limit(),
    )?;
    Ok(Checked {
        kind,
        addr,
        duration: secs(c.duration, "--duration", MAX_DURATION_SECS)?,
        drain: secs(c.drain, "--drain", MAX_DURATION_SECS)?,
        connect_timeout: secs(c.connect_timeout, "--connect-timeout", 600.0)?,
        workers: c.workers,
    })
}

/// Clients a scenario connects in all.
fn clients(scenario: &Scenario) -> u64 {
    match *scenario {
        Scenario::Connections { clients } | Scenario::ReconnectStorm { clients, .. } => clients,
        Scenario::Direct { pairs, .. } => pairs.saturating_mul(2),
        Scenario::Room { members, rooms, .. } => members.saturating_mul(rooms),
        Scenario::Table { .. } => 0,
    }
}

/// Runs one worker's share in this process.
async fn run_share(
    cli: &Cli,
    checked: &Checked,
    plan: &Plan,
    progress: Arc<Progress>,
) -> anyhow::Result<WorkerOutput> {
    let cpu_before = crate::report::own_cpu_secs().unwrap_or(0.0);
    let mut output = run_target(cli, checked, plan, progress).await?;
    output.cpu_secs = (crate::report::own_cpu_secs().unwrap_or(0.0) - cpu_before).max(0.0);
    Ok(output)
}

async fn run_target(
    cli: &Cli,
    checked: &Checked,
    plan: &Plan,
    progress: Arc<Progress>,
) -> anyhow::Result<WorkerOutput> {
    match checked.kind {
        TargetKind::NodeWs => {
            run_on(
                Arc::new(NodeWsTarget::new(checked.addr)),
                cli,
                plan,
                progress,
            )
            .await
        }
        TargetKind::Mosquitto => {
            run_on(Arc::new(MqttTarget::new(checked.addr)), cli, plan, progress).await
        }
        TargetKind::SpiderQuic | TargetKind::SpiderWs => {
            if let Scenario::ReconnectStorm { .. } = cli.scenario {
                return run_storm(cli, checked, plan, progress).await;
            }
            let c = &cli.common;
            let ca =
                c.ca.as_deref()
                    .context("--ca is required for Spider targets")?;
            if c.e2e {
                let target = SpiderE2eTarget::new(
                    checked.kind,
                    checked.addr,
                    ca,
                    &c.relay_name,
                    plan.run_id,
                )?;
                return run_spider_on(Arc::new(target), cli, plan, progress).await;
            }
            let target =
                SpiderTarget::new(checked.kind, checked.addr, ca, &c.relay_name, plan.run_id)?;
            run_spider_on(Arc::new(target), cli, plan, progress).await
        }
    }
}

/// Runs a scenario on a Spider target (opaque or `--e2e`): rooms, or what every target runs.
async fn run_spider_on<T>(
    target: Arc<T>,
    cli: &Cli,
    plan: &Plan,
    progress: Arc<Progress>,
) -> anyhow::Result<WorkerOutput>
where
    T: Target,
    T::Sender: RoomSender,
{
    match cli.scenario {
        Scenario::Room {
            members,
            senders,
            rooms,
            rate,
            window,
        } => {
            let spec = RoomSpec {
                rooms,
                members,
                senders,
            };
            scenario::room::run(target, plan, spec, rate_mode(rate, window), progress).await
        }
        _ => run_on(target, cli, plan, progress).await,
    }
}

/// Open loop at `rate`, or flat out with `window` in flight.
fn rate_mode(rate: Option<f64>, window: u32) -> RateMode {
    match rate {
        Some(rate) => RateMode::Open { rate },
        None => RateMode::Closed { window },
    }
}

/// `reconnect-storm`: start a relay, run pairs against it while it is restarted.
async fn run_storm(
    cli: &Cli,
    checked: &Checked,
    plan: &Plan,
    progress: Arc<Progress>,
) -> anyhow::Result<WorkerOutput> {
    let Scenario::ReconnectStorm {
        clients,
        rate,
        signal,
        relay_bin,
    } = &cli.scenario
    else {
        bail!("not a reconnect-storm");
    };
    let bin = match relay_bin {
        Some(b) => b.clone(),
        None => crate::relay::sibling_binary()?,
    };
    let data = std::env::temp_dir().join(format!("spider-load-storm-{:016x}", plan.run_id));
    let relay = RelayProcess::start(&bin, &data, checked.addr).await?;
    let pairs = clients / 2;
    let mode = RateMode::Open { rate: *rate };
    let (kind, addr, name, run) = (
        checked.kind,
        checked.addr,
        &cli.common.relay_name,
        plan.run_id,
    );
    if cli.common.e2e {
        let target = SpiderE2eTarget::new(kind, addr, &relay.ca(), name, run)?.reconnecting();
        let outages = Some((relay, signal.clone()));
        return scenario::direct::run_with(Arc::new(target), plan, pairs, mode, progress, outages)
            .await;
    }
    let target = SpiderTarget::new(kind, addr, &relay.ca(), name, run)?.reconnecting();
    let outages = Some((relay, signal.clone()));
    scenario::direct::run_with(Arc::new(target), plan, pairs, mode, progress, outages).await
}

async fn run_on<T: Target>(
    target: Arc<T>,
    cli: &Cli,
    plan: &Plan,
    progress: Arc<Progress>,
) -> anyhow::Result<WorkerOutput> {
    match cli.scenario {
        Scenario::Connections { clients } => {
            scenario::connections::run(target, plan, clients, progress).await
        }
        Scenario::Direct {
            pairs,
            rate,
            window,
        } => scenario::direct::run(target, plan, pairs, rate_mode(rate, window), progress).await,
        Scenario::Room { .. } | Scenario::ReconnectStorm { .. } => {
            bail!("scenario {} drives Spider only", cli.scenario.name())
        }
        Scenario::Table { .. } => bail!("`table` runs no load"),
    }
}

/// A fresh run id: distinguishes this run's envelopes from anything a broker kept from earlier
/// runs. Not derived from the seed on purpose: two runs with one seed still must not mix.
fn fresh_run_id() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    (nanos as u64) ^ (u64::from(std::process::id()) << 40)
}

/// Runs the command line; returns the report (the parent), or `None` in a worker process.
pub async fn run(cli: Cli) -> anyhow::Result<Option<Report>> {
    if let Scenario::Table { reports } = &cli.scenario {
        let mut parsed = Vec::with_capacity(reports.len());
        for path in reports {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let report: Report = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a spider-load report", path.display()))?;
            parsed.push(report);
        }
        print!("{}", crate::compare::table(&parsed));
        return Ok(None);
    }
    let checked = check(&cli)?;
    let c = &cli.common;
    let plan = Plan {
        worker_index: c.worker_index.unwrap_or(0),
        workers: checked.workers,
        run_id: c.run_id.unwrap_or_else(fresh_run_id),
        seed: c.seed,
        payload_size: c.payload_size,
        duration: checked.duration,
        drain: checked.drain,
        sources: SourceAddrs::for_target(checked.addr, c.source_addrs)?,
        connect_concurrency: c.connect_concurrency,
        connect_timeout: checked.connect_timeout,
    };

    if c.worker_index.is_some() {
        // A worker process: run the share, report on stdout.
        let progress = Arc::new(Progress::default());
        worker::serve(
            Arc::clone(&progress),
            run_share(&cli, &checked, &plan, progress),
        )
        .await?;
        return Ok(None);
    }

    let total_clients = clients(&cli.scenario);
    let rss_before = c.relay_pid.map(read_rss_kib).transpose()?;
    let relay_cpu_before = c.relay_pid.map(read_cpu_secs).transpose()?;
    let bars = Bars::new(total_clients, c.quiet);
    let snapshots = Arc::new(Mutex::new(vec![
        Progress::default().snapshot();
        checked.workers as usize
    ]));
    let local = Arc::new(Progress::default());

    let work = async {
        if checked.workers == 1 {
            Ok(vec![
                run_share(&cli, &checked, &plan, Arc::clone(&local)).await?,
            ])
        } else {
            // Worst case: every connection set-up times out one after another per concurrency
            // slot, then the send and drain phases, plus a minute of slack.
            let per_worker = total_clients / u64::from(checked.workers) + 1;
            let waves = per_worker / u64::from(c.connect_concurrency.max(1)) + 1;
            let limit = checked.connect_timeout * u32::try_from(waves).unwrap_or(u32::MAX)
                + checked.duration
                + checked.drain * 2
                + Duration::from_secs(60);
            let args: Vec<_> = std::env::args_os().skip(1).collect();
            worker::spawn_all(
                checked.workers,
                args,
                plan.run_id,
                Arc::clone(&snapshots),
                limit,
            )
            .await
        }
    };
    tokio::pin!(work);
    let mut rss_after = None;
    let mut running_since = None;
    let rss_settle = RSS_SETTLE.min(checked.duration / 2);
    let mut tick = tokio::time::interval(WATCH_EVERY);
    // One turn per tick until the work is done (the work itself is bounded in time).
    let outputs = loop {
        tokio::select! {
            outputs = &mut work => break outputs,
            _ = tick.tick() => {
                let snap = if checked.workers == 1 {
                    local.snapshot()
                } else {
                    snapshots.lock().map(|s| Snapshot::sum(&s)).unwrap_or_else(|_| local.snapshot())
                };
                bars.show(&snap);
                // Read the relay's RSS once every worker has been connected for a moment (so
                // that lazily allocated per-connection state is in), early in the hold or send phase.
                if snap.phase >= Phase::Running && running_since.is_none() {
                    running_since = Some(tokio::time::Instant::now());
                }
                if rss_after.is_none()
                    && running_since.is_some_and(|t| t.elapsed() >= rss_settle)
                    && let Some(pid) = c.relay_pid
                {
                    rss_after = Some(read_rss_kib(pid));
                }
            }
        }
    };
    bars.finish();
    let outputs = outputs?;
    // A run too short for the settle delay reads the relay's RSS at its end instead.
    let rss_after = match (c.relay_pid, rss_after) {
        (Some(pid), None) => Some(read_rss_kib(pid)),
        (_, read) => read,
    };
    let rss_after = match rss_after.transpose() {
        Ok(kib) => kib,
        Err(e) => {
            // The relay may have died under load: the run's figures still stand.
            eprintln!("warning: relay RSS after connecting not read: {e:#}");
            None
        }
    };
    let relay_cpu_secs = match (c.relay_pid, relay_cpu_before) {
        (Some(pid), Some(before)) => read_cpu_secs(pid)
            .ok()
            .map(|after| (after - before).max(0.0)),
        _ => None,
    };
    let mut report = merge(&cli, &checked, &outputs, rss_before, rss_after)?;
    report.relay_cpu_secs = relay_cpu_secs;
    Ok(Some(report))
}

fn merge(
    cli: &Cli,
    checked: &Checked,
    outputs: &[WorkerOutput],
    rss_before: Option<u64>,
    rss_after: Option<u64>,
) -> anyhow::Result<Report> {
    let c = &cli.common;
    let mut counts = crate::accounting::Counts::default();
    let mut latency = Latency::new()?;
    let mut connect_latency = Latency::new()?;
    let mut connections = ConnectStats::default();
    let mut failures = 0;
    let mut errors: Vec<String> = Vec::new();
    let mut send_phase_secs: f64 = 0.0;
    let mut load_cpu_secs: f64 = 0.0;
    let (mut first_start, mut last_end) = (u64::MAX, 0u64);
    let mut room: Option<(RoomStats, Latency)> = None;
    let mut storm: Option<StormStats> = None;
    for out in outputs {
        if let Some(r) = &out.room {
            let (stats, delivery) = match room.as_mut() {
                Some(x) => x,
                None => room.insert((
                    RoomStats {
                        rooms_ready: 0,
                        members_joined: 0,
                        setup_secs: 0.0,
                        settle_secs: 0.0,
                        changes_delivered: 0,
                        unsettled_members: 0,
                        messages_sent: 0,
                        messages_acked: 0,
                        messages_refused: 0,
                        messages_complete: 0,
                        delivery_latency: None,
                    },
                    Latency::new()?,
                )),
            };
            stats.rooms_ready += r.rooms_ready;
            stats.members_joined += r.members_joined;
            stats.setup_secs = stats.setup_secs.max(r.setup_secs);
            stats.settle_secs = stats.settle_secs.max(r.settle_secs);
            stats.changes_delivered += r.changes_delivered;
            stats.unsettled_members += r.unsettled_members;
            stats.messages_sent += r.messages_sent;
            stats.messages_acked += r.messages_acked;
            stats.messages_refused += r.messages_refused;
            stats.messages_complete += r.messages_complete;
            delivery.merge(&Latency::from_base64(&r.delivery_latency)?)?;
        }
        if let Some(s) = &out.storm {
            // One worker restarts the relay (checked): its outages are the run's.
            storm = Some(StormStats {
                outages: s.outages.clone(),
                disconnects: s.disconnects,
                reconnects: s.reconnects,
            });
        }
        counts.add(&out.counts);
        latency.merge(&Latency::from_base64(&out.latency)?)?;
        connect_latency.merge(&Latency::from_base64(&out.connect_latency)?)?;
        connections.attempted += out.connect.attempted;
        connections.established += out.connect.established;
        connections.failed += out.connect.failed;
        first_start = first_start.min(out.connect.start_unix_us);
        last_end = last_end.max(out.connect.end_unix_us);
        failures += out.failures;
        for e in &out.errors {
            if errors.len() < scenario::MAX_ERROR_SAMPLES && !errors.contains(e) {
                errors.push(e.clone());
            }
        }
        send_phase_secs = send_phase_secs.max(out.send_phase_secs);
        load_cpu_secs += out.cpu_secs;
    }
    connections.phase_secs = last_end.saturating_sub(first_start) as f64 / 1e6;
    if connections.phase_secs > 0.0 {
        connections.rate_per_sec = connections.established as f64 / connections.phase_secs;
    }
    let (pairs, rate, window) = match cli.scenario {
        Scenario::Direct {
            pairs,
            rate,
            window,
        } => (Some(pairs), rate, rate.is_none().then_some(window)),
        Scenario::Room { rate, window, .. } => (None, rate, rate.is_none().then_some(window)),
        Scenario::ReconnectStorm { clients, rate, .. } => (Some(clients / 2), Some(rate), None),
        _ => (None, None, None),
    };
    let (rooms, members, senders) = match cli.scenario {
        Scenario::Room {
            rooms,
            members,
            senders,
            ..
        } => (Some(rooms), Some(members), Some(senders)),
        _ => (None, None, None),
    };
    let per_sec = |n: u64| {
        if send_phase_secs > 0.0 {
            n as f64 / send_phase_secs
        } else {
            0.0
        }
    };
    let relay = match (c.relay_pid, rss_before, rss_after) {
        (Some(pid), Some(before), Some(after)) => Some(RelayMemory::new(
            pid,
            before,
            after,
            connections.established,
        )),
        _ => None,
    };
    Ok(Report {
        spider_load_version: env!("CARGO_PKG_VERSION").to_owned(),
        scenario: cli.scenario.name().to_owned(),
        target: checked.kind.name().to_owned(),
        addr: checked.addr.to_string(),
        params: Params {
            clients: clients(&cli.scenario),
            pairs,
            rate,
            window,
            payload_size: c.payload_size,
            e2e: c.e2e,
            duration_secs: checked.duration.as_secs_f64(),
            drain_secs: checked.drain.as_secs_f64(),
            workers: checked.workers,
            source_addrs: c.source_addrs,
            rooms,
            members,
            senders,
        },
        seed: c.seed,
        machine: Machine::detect(),
        date: utc_now_rfc3339(),
        counts,
        connections,
        throughput: Throughput {
            offered_per_sec: rate,
            sent_per_sec: per_sec(counts.sent),
            delivered_per_sec: per_sec(counts.delivered),
            send_phase_secs,
        },
        latency: latency.summary(),
        connect_latency: connect_latency.summary(),
        relay,
        relay_cpu_secs: None,
        load_cpu_secs,
        latency_histogram: if latency.is_empty() {
            None
        } else {
            Some(latency.to_base64()?)
        },
        failures,
        errors,
        room: room.map(|(mut stats, delivery)| {
            stats.delivery_latency = delivery.summary();
            stats
        }),
        storm,
    })
}

/// A short human summary of a report.
pub fn summary(r: &Report) -> String {
    let mut s = format!(
        "{} against {} at {} ({} cores)\n  connections: {} of {} established, {} failed, {:.0}/s over {:.2} s\n",
        r.scenario,
        r.target,
        r.addr,
        r.machine.cores,
        r.connections.established,
        r.connections.attempted,
        r.connections.failed,
        r.connections.rate_per_sec,
        r.connections.phase_secs,
    );
    if let Some(room) = &r.room {
        s += &format!(
            "  rooms: {} ready, {} members joined, longest set-up {:.2} s, then {:.2} s until {} membership changes reached every member ({} members short)\n  messages: sent {} ({:.1}/s) acked {} refused {} reached every member {}\n  (envelope counts below are per delivery: one per message and other member)\n",
            room.rooms_ready,
            room.members_joined,
            room.setup_secs,
            room.settle_secs,
            room.changes_delivered,
            room.unsettled_members,
            room.messages_sent,
            if r.throughput.send_phase_secs > 0.0 {
                room.messages_sent as f64 / r.throughput.send_phase_secs
            } else {
                0.0
            },
            room.messages_acked,
            room.messages_refused,
            room.messages_complete,
        );
        if let Some(l) = &room.delivery_latency {
            s += &format!(
                "  latency of each delivery: p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms\n",
                l.p50_us as f64 / 1e3,
                l.p99_us as f64 / 1e3,
                l.p999_us as f64 / 1e3,
            );
        }
    }
    if let Some(storm) = &r.storm {
        s += &format!(
            "  storm: {} disconnects, {} reconnects\n",
            storm.disconnects, storm.reconnects
        );
        for o in &storm.outages {
            let opt = |v: Option<f64>| v.map_or("-".to_owned(), |x| format!("{x:.2} s"));
            s += &format!(
                "    {} at {:.2} s: exit {}, restart {}, {} of {} clients back, all back after {}{}\n",
                o.signal.name(),
                o.at_secs,
                opt(o.exit_secs),
                opt(o.restart_secs),
                o.back,
                o.clients,
                opt(o.all_back_secs),
                o.error
                    .as_deref()
                    .map_or(String::new(), |e| format!(" ({e})")),
            );
        }
    }
    if matches!(r.scenario.as_str(), "direct" | "room" | "reconnect-storm") {
        let k = &r.counts;
        s += &format!(
            "  envelopes: sent {} delivered {} lost {} duplicates {} foreign {} acked {} acked-lost {} refused {}{}\n  rate: {:.0} sent/s, {:.0} delivered/s over {:.2} s{}\n",
            k.sent,
            k.delivered,
            k.lost,
            k.duplicates,
            k.foreign,
            k.acked,
            k.acked_lost,
            k.refused,
            if k.acked_away > 0 {
                format!(
                    " acked-away {} (stored for clients not back by the end)",
                    k.acked_away
                )
            } else {
                String::new()
            },
            r.throughput.sent_per_sec,
            r.throughput.delivered_per_sec,
            r.throughput.send_phase_secs,
            r.throughput
                .offered_per_sec
                .map_or(String::new(), |o| format!(" (offered {o}/s)")),
        );
    }
    if let Some(l) = &r.latency {
        s += &format!(
            "  latency{}: p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms\n",
            if r.room.is_some() {
                " to the last member"
            } else {
                ""
            },
            l.p50_us as f64 / 1e3,
            l.p99_us as f64 / 1e3,
            l.p999_us as f64 / 1e3,
            l.max_us as f64 / 1e3
        );
    }
    if let Some(m) = &r.relay {
        s += &format!(
            "  relay pid {}: RSS {} KiB -> {} KiB, {} per connection\n",
            m.pid,
            m.rss_before_kib,
            m.rss_after_kib,
            m.per_connection_bytes
                .map_or("-".into(), |b| format!("{b:.0} B")),
        );
    }
    if let Some(cpu) = r.relay_cpu_secs {
        s += &format!(
            "  cpu: relay {cpu:.2} s, spider-load {:.2} s\n",
            r.load_cpu_secs
        );
    }
    s += &format!("  failures: {}", r.failures);
    for e in &r.errors {
        s += &format!("\n    {e}");
    }
    s
}

/// Writes the report as JSON to `path` (`-` for standard output).
pub fn write_json(report: &Report, path: &std::path::Path) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    if path.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{text}")?;
    } else {
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("spider-load").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn spider_targets_need_their_ca_and_what_is_missing_says_so() {
        for args in [
            &["--target", "spider-quic", "connections", "--clients", "1"][..],
            &["--target", "spider-ws", "direct", "--pairs", "1"][..],
        ] {
            let err = check(&parse(args)).unwrap_err().to_string();
            assert!(err.contains("--ca"), "{args:?}: {err}");
        }
        assert!(
            check(&parse(&[
                "--target",
                "spider-ws",
                "--ca",
                "ca.pem",
                "direct",
                "--pairs",
                "1"
            ]))
            .is_ok()
        );
        // reconnect-storm starts its own relay and knows its CA.
        assert!(
            check(&parse(&[
                "--target",
                "spider-quic",
                "reconnect-storm",
                "--clients",
                "2"
            ]))
            .is_ok()
        );
        for (args, says) in [
            (
                &["--target", "node-ws", "--e2e", "direct", "--pairs", "1"][..],
                "spider-quic or spider-ws only",
            ),
            (
                &[
                    "--target",
                    "mosquitto",
                    "room",
                    "--members",
                    "10",
                    "--senders",
                    "1",
                ][..],
                "Spider only",
            ),
            (
                &["--target", "node-ws", "reconnect-storm", "--clients", "2"][..],
                "Spider only",
            ),
            (
                &[
                    "--target",
                    "spider-quic",
                    "--ca",
                    "x",
                    "--e2e",
                    "--payload-size",
                    "20000",
                    "direct",
                    "--pairs",
                    "1",
                ][..],
                "text limit",
            ),
            (
                &[
                    "--target",
                    "spider-quic",
                    "--ca",
                    "x",
                    "room",
                    "--members",
                    "10",
                    "--senders",
                    "11",
                ][..],
                "cannot exceed",
            ),
            (
                &["--target", "spider-ws", "reconnect-storm", "--clients", "3"][..],
                "even",
            ),
            (
                &[
                    "--target",
                    "spider-ws",
                    "--workers",
                    "2",
                    "reconnect-storm",
                    "--clients",
                    "4",
                ][..],
                "one process",
            ),
        ] {
            let err = check(&parse(args)).unwrap_err().to_string();
            assert!(err.contains(says), "{args:?}: {err}");
        }
        assert!(
            check(&parse(&[
                "--target",
                "spider-ws",
                "--ca",
                "x",
                "--e2e",
                "direct",
                "--pairs",
                "1"
            ]))
            .is_ok()
        );
        // Every Spider scenario runs with --e2e.
        for args in [
            &["--ca", "x", "room", "--members", "10", "--senders", "1"][..],
            &["reconnect-storm", "--clients", "2"][..],
            &["--ca", "x", "connections", "--clients", "2"][..],
        ] {
            let mut all = vec!["--target", "spider-quic", "--e2e"];
            all.extend_from_slice(args);
            assert!(check(&parse(&all)).is_ok(), "{all:?}");
        }
    }

    #[test]
    fn runs_beyond_descriptors_or_ports_are_refused_with_the_flag_to_raise() {
        assert!(check_capacity(19_000, 1, 1, Some(20_000)).is_ok());
        let err = check_capacity(100_000, 2, 4, Some(20_000))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--workers 6"), "{err}");
        assert!(check_capacity(100_000, 6, 4, Some(20_000)).is_ok());
        let err = check_capacity(100_000, 8, 1, None).unwrap_err().to_string();
        assert!(err.contains("--source-addrs 4"), "{err}");
        assert!(open_files_limit().is_some_and(|l| l > 0));
    }

    #[test]
    fn only_loopback_and_sane_numbers_pass() {
        assert!(check(&parse(&["--target", "node-ws", "direct", "--pairs", "1"])).is_ok());
        for args in [
            &[
                "--target",
                "node-ws",
                "--addr",
                "10.1.2.3:80",
                "direct",
                "--pairs",
                "1",
            ][..],
            &["direct", "--pairs", "1"][..],
            &[
                "--target",
                "node-ws",
                "--duration",
                "0",
                "direct",
                "--pairs",
                "1",
            ][..],
            &[
                "--target",
                "node-ws",
                "--payload-size",
                "8",
                "direct",
                "--pairs",
                "1",
            ][..],
            &[
                "--target",
                "node-ws",
                "--workers",
                "0",
                "direct",
                "--pairs",
                "1",
            ][..],
            &["--target", "node-ws", "direct", "--pairs", "1", "--rate=-5"][..],
        ] {
            assert!(check(&parse(args)).is_err(), "{args:?}");
        }
    }
}
