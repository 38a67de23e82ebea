//! Shutdown signalling, as in mini-redis: one sender flips a watch; every
//! task holds a [`Shutdown`] and a clone of a `mpsc::Sender<()>` whose last
//! drop tells the server that every task has ended.

use tokio::sync::watch;

/// A task's view of the shutdown signal.
#[derive(Debug, Clone)]
pub(crate) struct Shutdown {
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    pub(crate) fn new(rx: watch::Receiver<bool>) -> Self {
        Self { rx }
    }

    /// Completes once shutdown has begun (at once if it already has).
    /// Cancel-safe.
    pub(crate) async fn wait(&mut self) {
        // An error means the sender is gone, which also means shut down.
        let _ = self.rx.wait_for(|s| *s).await;
    }
}
