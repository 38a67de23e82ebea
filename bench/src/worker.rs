//! Worker processes: a run of `--workers N` forks N copies of this binary, each with a share of
//! the clients (a process holds at most 20,000 descriptors, and each WebSocket costs one).
//!
//! A worker is the same command line plus `--worker-index I --run-id R`. It writes JSON lines on
//! standard output: [`Line::Progress`] every [`PROGRESS_EVERY`], then one [`Line::Done`] (or
//! [`Line::Failed`]). The parent sums the progress for its bars and merges the outputs; latency
//! histograms travel in HdrHistogram's V2 encoding, so merged percentiles are exact.

use crate::progress::{Progress, Snapshot};
use crate::scenario::WorkerOutput;
use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::io::Write as _;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

/// How often a worker reports progress.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// Longest line a worker may write (a report with two histograms fits with room to spare).
pub const MAX_LINE: usize = 16 << 20;

/// One line of a worker's standard output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Line {
    /// Counters so far.
    Progress(Snapshot),
    /// The worker's results.
    Done(Box<WorkerOutput>),
    /// The worker gave up.
    Failed {
        /// Why.
        error: String,
    },
}

fn print_line(line: &Line) {
    if let Ok(text) = serde_json::to_string(line) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }
}

/// The worker side: runs `work`, reporting progress on standard output meanwhile.
pub async fn serve<F>(progress: Arc<Progress>, work: F) -> anyhow::Result<()>
where
    F: Future<Output = anyhow::Result<WorkerOutput>>,
{
    let ticker = {
        let progress = Arc::clone(&progress);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROGRESS_EVERY);
            // Ends when aborted below, after the work is done.
            loop {
                tick.tick().await;
                print_line(&Line::Progress(progress.snapshot()));
            }
        })
    };
    let result = work.await;
    ticker.abort();
    match result {
        Ok(output) => {
            print_line(&Line::Progress(progress.snapshot()));
            print_line(&Line::Done(Box::new(output)));
            Ok(())
        }
        Err(e) => {
            print_line(&Line::Failed {
                error: format!("{e:#}"),
            });
            Err(e)
        }
    }
}

/// The parent side: starts `workers` copies of this binary with `args` and waits for their
/// outputs, keeping `snapshots[i]` up to date with worker i's progress. Every worker is killed if
/// this future is dropped, and each is given at most `limit` to finish.
pub async fn spawn_all(
    workers: u32,
    args: Vec<std::ffi::OsString>,
    run_id: u64,
    snapshots: Arc<Mutex<Vec<Snapshot>>>,
    limit: Duration,
) -> anyhow::Result<Vec<WorkerOutput>> {
    let exe = std::env::current_exe().context("finding this binary")?;
    let mut tasks = Vec::new();
    for index in 0..workers {
        let mut child = Command::new(&exe)
            .args(&args)
            .arg("--worker-index")
            .arg(index.to_string())
            .arg("--run-id")
            .arg(run_id.to_string())
            .arg("--quiet")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting worker {index}"))?;
        let stdout = child.stdout.take().context("worker stdout")?;
        let snapshots = Arc::clone(&snapshots);
        tasks.push(tokio::spawn(async move {
            let read = async {
                let mut lines = BufReader::new(stdout).lines();
                let mut output = None;
                // One turn per line; ends at the worker's end of output.
                while let Some(line) = lines.next_line().await? {
                    if line.len() > MAX_LINE {
                        bail!("worker {index}: line too long");
                    }
                    match serde_json::from_str::<Line>(&line) {
                        Ok(Line::Progress(s)) => {
                            if let Ok(mut all) = snapshots.lock()
                                && let Some(slot) = all.get_mut(index as usize)
                            {
                                *slot = s;
                            }
                        }
                        Ok(Line::Done(out)) => output = Some(*out),
                        Ok(Line::Failed { error }) => bail!("worker {index}: {error}"),
                        Err(e) => bail!("worker {index}: unreadable line: {e}"),
                    }
                }
                let status = child.wait().await?;
                if !status.success() {
                    bail!("worker {index} exited with {status}");
                }
                output.with_context(|| format!("worker {index} ended without a result"))
            };
            tokio::time::timeout(limit, read)
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("worker {index} did not finish in time")))
        }));
    }
    let mut outputs = Vec::with_capacity(tasks.len());
    for task in tasks {
        outputs.push(task.await.context("worker reader task")??);
    }
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::Counts;
    use crate::latency::Latency;
    use crate::progress::Phase;
    use crate::scenario::ConnectPhase;

    #[test]
    fn worker_lines_round_trip_as_json() {
        let mut latency = Latency::new().unwrap();
        latency.record_micros(1234);
        let out = WorkerOutput {
            counts: Counts {
                sent: 3,
                delivered: 2,
                lost: 1,
                received: 2,
                ..Counts::default()
            },
            failures: 1,
            errors: vec!["connect: timed out".into()],
            connect: ConnectPhase {
                attempted: 2,
                established: 1,
                failed: 1,
                ..Default::default()
            },
            send_phase_secs: 1.5,
            latency: latency.to_base64().unwrap(),
            connect_latency: Latency::new().unwrap().to_base64().unwrap(),
            cpu_secs: 0.5,
            room: None,
            storm: None,
        };
        for line in [
            Line::Done(Box::new(out)),
            Line::Progress(Progress::default().snapshot()),
            Line::Failed { error: "x".into() },
        ] {
            let text = serde_json::to_string(&line).unwrap();
            assert!(!text.contains('\n'));
            assert_eq!(serde_json::from_str::<Line>(&text).unwrap(), line);
        }
        assert_eq!(Progress::default().snapshot().phase, Phase::Connecting);
    }
}
