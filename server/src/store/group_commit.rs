//! Group commit: one store flush answers every request that asked for one while the previous
//! flush ran.
//!
//! A request that must be durable before its answer (`Sent`, a registration, a room change) writes,
//! then calls [`GroupCommit::flush`]. A flush makes durable every write that had finished when it
//! *started*, so requests that arrive while a flush runs queue behind it; when it ends, the first
//! of them flushes once for all of them, and the rest find that flush covered them and return.
//! Under load that is one flush (one trip through the blocking pool and sled's I/O threads, one
//! `fsync`) per wave of requests instead of one per request; docs/benchmarks.md ("CPU profile")
//! measured those trips as the relay's largest cost. An idle relay still flushes at once: the
//! first request of a wave finds no flush running and does not wait for company.
//!
//! Tickets make "covered" exact. A request takes ticket `t` after its writes finished; a flusher
//! reads the highest ticket handed out (`covers`) before it starts the flush, so every ticket up to
//! `covers` belongs to writes that the flush includes, and after it succeeds, `durable` rises to
//! `covers`. A request returns without flushing only if `durable >= t`. A failed flush raises
//! nothing: its leader gets the error, and each request queued behind it flushes again.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use super::StoreError;

/// Serialises flushes and lets one serve many requests (see the module docs).
#[derive(Debug, Default)]
pub struct GroupCommit {
    /// Tickets handed out so far: request `n` finished its writes before it took ticket `n`.
    requested: AtomicU64,
    /// Every ticket up to this one is durable.
    durable: AtomicU64,
    /// Held by the request that is flushing; the others queue here, first come first served.
    leader: tokio::sync::Mutex<()>,
}

impl GroupCommit {
    /// Returns once every write that finished before this call is durable: because a flush that
    /// started after the call succeeded, or because this call ran one (`flush`).
    ///
    /// # Errors
    /// The error of the flush this call ran. Cancel safe: a request dropped while it flushes only
    /// leaves the flush to the next request in the queue.
    pub async fn flush<F, Fut>(&self, flush: F) -> Result<(), StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(), StoreError>>,
    {
        let ticket = self
            .requested
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        let _leader = self.leader.lock().await;
        if self.durable.load(Ordering::Acquire) >= ticket {
            return Ok(());
        }
        let covers = self.requested.load(Ordering::Acquire);
        flush().await?;
        self.durable.fetch_max(covers, Ordering::AcqRel);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;
    use tokio::sync::Notify;

    #[tokio::test]
    async fn requests_queued_behind_a_flush_share_the_next_one() {
        let commit = Arc::new(GroupCommit::default());
        let flushes = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let started = Arc::new(Notify::new());
        // The first request's flush runs until the test releases it.
        let first = {
            let (commit, flushes, release, started) = (
                Arc::clone(&commit),
                Arc::clone(&flushes),
                Arc::clone(&release),
                Arc::clone(&started),
            );
            tokio::spawn(async move {
                commit
                    .flush(|| async move {
                        flushes.fetch_add(1, Ordering::SeqCst);
                        started.notify_one();
                        release.notified().await;
                        Ok(())
                    })
                    .await
            })
        };
        started.notified().await;
        let mut queued = Vec::new();
        for _ in 0..20 {
            let (commit, flushes) = (Arc::clone(&commit), Arc::clone(&flushes));
            queued.push(tokio::spawn(async move {
                commit
                    .flush(|| async move {
                        flushes.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    })
                    .await
            }));
        }
        // Every queued request has its ticket before the first flush ends.
        while commit.requested.load(Ordering::SeqCst) < 21 {
            tokio::task::yield_now().await;
        }
        release.notify_one();
        first.await.unwrap().unwrap();
        for q in queued {
            q.await.unwrap().unwrap();
        }
        assert_eq!(flushes.load(Ordering::SeqCst), 2, "one flush for the 20");
        // A later request, with nothing running, flushes at once by itself.
        let flushes_before = flushes.load(Ordering::SeqCst);
        commit
            .flush(|| async {
                flushes.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(flushes.load(Ordering::SeqCst), flushes_before + 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn no_request_returns_before_a_flush_that_includes_its_write() {
        // Writes are numbered; a flush makes durable the writes finished when it started.
        let commit = Arc::new(GroupCommit::default());
        let written = Arc::new(AtomicU64::new(0));
        let durable = Arc::new(AtomicU64::new(0));
        let flushes = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..400u64 {
            let (commit, written, durable, flushes) = (
                Arc::clone(&commit),
                Arc::clone(&written),
                Arc::clone(&durable),
                Arc::clone(&flushes),
            );
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_micros(i % 7 * 50)).await;
                let mine = written.fetch_add(1, Ordering::SeqCst) + 1;
                let made_durable = Arc::clone(&durable);
                commit
                    .flush(|| async move {
                        flushes.fetch_add(1, Ordering::SeqCst);
                        let upto = written.load(Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_micros(200)).await;
                        made_durable.fetch_max(upto, Ordering::SeqCst);
                        Ok(())
                    })
                    .await
                    .unwrap();
                let d = durable.load(Ordering::SeqCst);
                assert!(d >= mine, "write {mine} answered with only {d} durable");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let n = flushes.load(Ordering::SeqCst);
        assert!((1..=400).contains(&n), "{n} flushes");
    }

    #[tokio::test]
    async fn a_failed_flush_covers_no_one() {
        let commit = GroupCommit::default();
        let err = commit
            .flush(|| async { Err(StoreError::Backend("disk full".into())) })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        // The next request is not taken for durable: it flushes, and that flush counts.
        let ran = AtomicUsize::new(0);
        commit
            .flush(|| async {
                ran.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        assert_eq!(commit.durable.load(Ordering::SeqCst), 2);
    }
}
