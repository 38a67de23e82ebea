//! The comparison table: reports of one session's runs side by side, as ratios to a baseline.
//!
//! Figures from this shared 2-core machine mean little alone; ratios between systems run back to
//! back in the same session are what the benchmark document quotes. The baseline is Spider when
//! its reports are present (QUIC first), otherwise the first report's target.

use crate::report::Report;
use std::fmt::Write as _;

/// Baseline preference: Spider's own targets first.
const BASELINE_ORDER: [&str; 2] = ["spider-quic", "spider-ws"];

/// One figure of a row: its label, how to read it from a report, and whether more is better.
struct Column {
    label: &'static str,
    value: fn(&Report) -> Option<f64>,
    higher_is_better: bool,
}

/// Microseconds as milliseconds.
fn ms(us: u64) -> f64 {
    us as f64 / 1e3
}

fn columns(scenario: &str) -> Vec<Column> {
    match scenario {
        "connections" => vec![
            Column {
                label: "connect/s",
                value: |r| Some(r.connections.rate_per_sec),
                higher_is_better: true,
            },
            Column {
                label: "bytes/conn",
                value: |r| r.relay.and_then(|m| m.per_connection_bytes),
                higher_is_better: false,
            },
            Column {
                label: "failed",
                value: |r| Some(r.connections.failed as f64),
                higher_is_better: false,
            },
        ],
        _ => vec![
            Column {
                label: "delivered/s",
                value: |r| Some(r.throughput.delivered_per_sec),
                higher_is_better: true,
            },
            Column {
                label: "p50 ms",
                value: |r| r.latency.map(|l| ms(l.p50_us)),
                higher_is_better: false,
            },
            Column {
                label: "p99 ms",
                value: |r| r.latency.map(|l| ms(l.p99_us)),
                higher_is_better: false,
            },
            Column {
                label: "p99.9 ms",
                value: |r| r.latency.map(|l| ms(l.p999_us)),
                higher_is_better: false,
            },
            Column {
                label: "relay cpu µs/msg",
                value: |r| {
                    let cpu = r.relay_cpu_secs?;
                    (r.counts.delivered > 0).then(|| cpu * 1e6 / r.counts.delivered as f64)
                },
                higher_is_better: false,
            },
            Column {
                label: "lost",
                value: |r| Some(r.counts.lost as f64),
                higher_is_better: false,
            },
        ],
    }
}

/// The baseline target among `reports`.
pub fn baseline(reports: &[Report]) -> Option<&str> {
    BASELINE_ORDER
        .iter()
        .find(|b| reports.iter().any(|r| r.target == **b))
        .copied()
        .or_else(|| reports.first().map(|r| r.target.as_str()))
}

/// `value / base`, or `None` when the ratio means nothing (no value, a zero base).
fn ratio(value: Option<f64>, base: Option<f64>) -> Option<f64> {
    match (value, base) {
        (Some(v), Some(b)) if b != 0.0 && v.is_finite() && b.is_finite() => Some(v / b),
        _ => None,
    }
}

/// The section a report belongs in: its scenario (with `--e2e` and the room size when they
/// apply) and its offered rate.
fn section(r: &Report) -> (String, Option<u64>) {
    let mut label = r.scenario.clone();
    if r.params.e2e {
        label += " --e2e";
    }
    if let Some(m) = r.params.members {
        let _ = write!(label, " of {m} members");
    }
    (label, r.params.rate.map(|x| x.round() as u64))
}

/// A plain-text table per scenario: each target's figures and, in brackets, the figure divided by
/// the baseline's (for throughput, above 1 is better; for latency and memory, below 1 is better).
pub fn table(reports: &[Report]) -> String {
    let mut out = String::new();
    let Some(base_target) = baseline(reports) else {
        return "no reports\n".to_owned();
    };
    let _ = writeln!(out, "baseline: {base_target} (ratio = target / baseline)");
    // One section per scenario, offered rate, payload mode and room size: ratios compare like
    // with like.
    let mut sections: Vec<(String, Option<u64>)> = Vec::new();
    for r in reports {
        let key = section(r);
        if !sections.contains(&key) {
            sections.push(key);
        }
    }
    for key in sections {
        let rows: Vec<&Report> = reports.iter().filter(|r| section(r) == key).collect();
        let Some(first) = rows.first() else { continue };
        let scenario = first.scenario.clone();
        let (label, rate) = key;
        let base = rows.iter().find(|r| r.target == base_target).copied();
        let cols = columns(&scenario);
        match rate {
            Some(rate) => {
                let _ = writeln!(out, "\n{label} at {rate}/s offered");
            }
            None if scenario != "connections" => {
                let _ = writeln!(out, "\n{label} flat out");
            }
            None => {
                let _ = writeln!(out, "\n{label}");
            }
        }
        let mut header = format!("  {:<12}", "target");
        for c in &cols {
            let _ = write!(header, " {:>18}", c.label);
        }
        let _ = writeln!(out, "{header}");
        for r in rows {
            let mut line = format!("  {:<12}", r.target);
            for c in &cols {
                let v = (c.value)(r);
                let cell = match (v, ratio(v, base.and_then(|b| (c.value)(b)))) {
                    (Some(v), Some(q)) => format!("{v:.1} ({q:.2}x)"),
                    (Some(v), None) => format!("{v:.1}"),
                    (None, _) => "-".to_owned(),
                };
                let _ = write!(line, " {cell:>18}");
            }
            let _ = writeln!(out, "{line}");
        }
        let better: Vec<String> = cols
            .iter()
            .map(|c| format!("{} {}", c.label, if c.higher_is_better { "↑" } else { "↓" }))
            .collect();
        let _ = writeln!(out, "  better: {}", better.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::Counts;
    use crate::latency::LatencySummary;
    use crate::report::{ConnectStats, Machine, Params, RelayMemory, Throughput};

    fn report(target: &str, scenario: &str, delivered_per_sec: f64, p50_us: u64) -> Report {
        Report {
            spider_load_version: "0".into(),
            scenario: scenario.into(),
            target: target.into(),
            addr: "127.0.0.1:1".into(),
            params: Params {
                clients: 2,
                pairs: Some(1),
                rate: None,
                window: Some(8),
                payload_size: 256,
                e2e: false,
                duration_secs: 1.0,
                drain_secs: 1.0,
                workers: 1,
                source_addrs: 1,
                rooms: None,
                members: None,
                senders: None,
            },
            seed: 1,
            machine: Machine {
                cores: 2,
                mem_total_kib: None,
                kernel: None,
            },
            date: "2026-01-01T00:00:00Z".into(),
            counts: Counts::default(),
            connections: ConnectStats {
                rate_per_sec: 100.0,
                ..ConnectStats::default()
            },
            throughput: Throughput {
                delivered_per_sec,
                ..Throughput::default()
            },
            latency: Some(LatencySummary {
                count: 1,
                p50_us,
                p99_us: p50_us,
                p999_us: p50_us,
                max_us: p50_us,
                mean_us: p50_us as f64,
            }),
            connect_latency: None,
            relay: Some(RelayMemory::new(1, 1000, 2000, 2)),
            relay_cpu_secs: Some(1.0),
            load_cpu_secs: 1.0,
            latency_histogram: None,
            failures: 0,
            errors: vec![],
            room: None,
            storm: None,
        }
    }

    #[test]
    fn spider_is_the_baseline_when_present() {
        let a = report("node-ws", "direct", 1.0, 1);
        let b = report("spider-quic", "direct", 1.0, 1);
        assert_eq!(baseline(&[a.clone(), b]), Some("spider-quic"));
        assert_eq!(baseline(&[a]), Some("node-ws"));
        assert_eq!(baseline(&[]), None);
    }

    #[test]
    fn table_shows_ratios_to_the_baseline() {
        let t = table(&[
            report("node-ws", "direct", 1000.0, 2000),
            report("mosquitto", "direct", 3000.0, 1000),
        ]);
        assert!(t.contains("baseline: node-ws"), "{t}");
        assert!(t.contains("3000.0 (3.00x)"), "{t}");
        assert!(t.contains("1.0 (0.50x)"), "{t}");
        assert!(t.contains("1000.0 (1.00x)"), "{t}");
    }

    #[test]
    fn e2e_and_room_sizes_get_sections_of_their_own() {
        let opaque = report("spider-quic", "direct", 1000.0, 2000);
        let mut e2e = report("spider-quic", "direct", 500.0, 4000);
        e2e.params.e2e = true;
        let mut small = report("spider-quic", "room", 100.0, 1000);
        small.params.members = Some(10);
        let mut big = small.clone();
        big.params.members = Some(1000);
        let t = table(&[opaque, e2e, small, big]);
        for title in [
            "direct flat out",
            "direct --e2e flat out",
            "room of 10 members flat out",
            "room of 1000 members flat out",
        ] {
            assert!(t.contains(title), "{title} missing from\n{t}");
        }
        assert!(
            !t.contains("(2.00x)"),
            "e2e is not compared with opaque: {t}"
        );
    }

    #[test]
    fn reports_written_before_rooms_and_refusals_still_read() {
        let mut json = serde_json::to_value(report("node-ws", "direct", 1.0, 1)).unwrap();
        let obj = json.as_object_mut().unwrap();
        obj.remove("room");
        obj.remove("storm");
        obj["counts"].as_object_mut().unwrap().remove("refused");
        let params = obj["params"].as_object_mut().unwrap();
        for k in ["rooms", "members", "senders"] {
            params.remove(k);
        }
        let back: Report = serde_json::from_value(json).unwrap();
        assert_eq!(back.counts.refused, 0);
        assert!(back.room.is_none() && back.params.members.is_none());
    }

    #[test]
    fn ratios_against_zero_or_missing_are_left_out() {
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
        assert_eq!(ratio(Some(3.0), Some(2.0)), Some(1.5));
    }
}
