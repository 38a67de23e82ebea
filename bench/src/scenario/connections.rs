//! `connections --clients N`: open N authenticated connections and hold them idle.
//!
//! Each held connection keeps its receive half polled (so the target's pings are answered and a
//! dropped connection is noticed); a connection the target closes during the hold counts as a
//! failure. The parent reads the relay's RSS once every worker is holding.

use super::{ErrorLog, Plan, WorkerOutput, connect_all, user_ids};
use crate::accounting::Counts;
use crate::latency::Latency;
use crate::progress::{Phase, Progress};
use crate::target::{EnvelopeReceiver as _, Target};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Extra time allowed for held connections' tasks to stop once told.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Runs this worker's share of `clients` connections.
pub async fn run<T: Target>(
    target: Arc<T>,
    plan: &Plan,
    clients: u64,
    progress: Arc<Progress>,
) -> anyhow::Result<WorkerOutput> {
    let errors = Arc::new(ErrorLog::default());
    let users = user_ids(plan.share(clients))?;
    progress.set_phase(Phase::Connecting);
    let (conns, connect, connect_latency) =
        connect_all(&target, &users, plan, &progress, &errors).await?;
    progress.set_phase(Phase::Running);

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut held = tokio::task::JoinSet::new();
    for (sender, mut receiver) in conns.into_iter().flatten() {
        let mut stop = stop_rx.clone();
        let (progress, errors) = (Arc::clone(&progress), Arc::clone(&errors));
        held.spawn(async move {
            let _sender = sender; // keeps the write half (and so the connection) open
            // Each turn handles one event; the loop ends at the stop signal or when the
            // connection ends.
            loop {
                tokio::select! {
                    biased;
                    _ = stop.changed() => break,
                    event = receiver.next() => match event {
                        Ok(Some(_)) => {}
                        Ok(None) => {
                            errors.record(&progress, "connection closed by the target while held");
                            break;
                        }
                        Err(e) => {
                            errors.record(&progress, format!("held connection: {e:#}"));
                            break;
                        }
                    },
                }
            }
        });
    }
    tokio::time::sleep(plan.duration).await;
    progress.set_phase(Phase::Draining);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(STOP_GRACE, async {
        while held.join_next().await.is_some() {}
    })
    .await;
    held.abort_all();
    progress.set_phase(Phase::Done);

    Ok(WorkerOutput {
        counts: Counts::default(),
        failures: progress.snapshot().failures,
        errors: errors.samples(),
        connect,
        send_phase_secs: plan.duration.as_secs_f64(),
        latency: Latency::new()?.to_base64()?,
        connect_latency: connect_latency.to_base64()?,
        cpu_secs: 0.0,
        room: None,
        storm: None,
    })
}
