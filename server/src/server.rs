//! Starting and stopping the relay: `start` binds both listeners and returns
//! a [`RunningRelay`]; [`run`] serves until a shutdown future completes, then
//! drains.
//!
//! Shape as in mini-redis `server.rs`: a semaphore caps connections across
//! both transports, a watch channel broadcasts shutdown, and every task holds
//! a clone of one `mpsc::Sender<()>`, so that `recv()` returning `None` means
//! every task has ended.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use spider_protocol::ids::Timestamp;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::config::Config;
use crate::listener::{quic, ws};
use crate::ratelimit::RateLimits;
use crate::router::{LocalRouter, Router};
use crate::shutdown::Shutdown;
use crate::store::{GroupCommit, SledStore, Store};
use crate::tls;

/// State every connection shares.
pub(crate) struct Shared {
    /// The configuration.
    pub(crate) config: Config,
    /// Durable state.
    pub(crate) store: Arc<dyn Store>,
    /// Who is online.
    pub(crate) router: Arc<dyn Router>,
    /// Connection ids, for routes.
    pub(crate) next_conn: AtomicU64,
    /// Rate limits and per-address connection counts.
    pub(crate) rate: Arc<RateLimits>,
    /// Striped locks serialising each room's changes and sends.
    pub(crate) room_locks: Vec<std::sync::Mutex<()>>,
    /// Bytes of blob uploads in progress, per account.
    pub(crate) blob_reservations: crate::blobs::Reservations,
    /// Flushes shared by the requests that wait for one at the same time.
    pub(crate) commit: GroupCommit,
}

impl Shared {
    /// Makes every earlier write durable (one flush serves every request waiting at the same
    /// time: [`GroupCommit`]), timing the wait for the metrics.
    pub(crate) async fn flush(&self) -> Result<(), crate::store::StoreError> {
        let start = std::time::Instant::now();
        let r = self.commit.flush(|| self.store.flush()).await;
        crate::metrics::flush_took(start);
        r
    }
}

/// The relay's clock, in milliseconds since the Unix epoch.
pub(crate) fn now() -> Timestamp {
    Timestamp(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    )
}

/// A relay that is serving.
pub struct RunningRelay {
    /// Where QUIC listens (UDP).
    pub quic_addr: SocketAddr,
    /// Where WebSocket-over-TLS listens (TCP).
    pub ws_addr: SocketAddr,
    /// Where Prometheus metrics are served, if they are.
    pub metrics_addr: Option<SocketAddr>,
    /// The CA certificate clients pin, when the relay made its own.
    pub ca_pem: Option<PathBuf>,
    shutdown: watch::Sender<bool>,
    done: mpsc::Receiver<()>,
    store: Arc<dyn Store>,
    endpoint: quinn::Endpoint,
    grace: Duration,
}

/// Starts a relay with its sled store under `config.data/store`.
pub async fn start(config: Config) -> anyhow::Result<RunningRelay> {
    std::fs::create_dir_all(&config.data)?;
    let store = SledStore::open(&config.data.join("store"))?;
    start_with_store(config, Arc::new(store)).await
}

/// Starts a relay on a given store.
pub async fn start_with_store(
    config: Config,
    store: Arc<dyn Store>,
) -> anyhow::Result<RunningRelay> {
    let (files, ca_pem) = match &config.cert {
        Some((cert, key)) => (
            tls::CertFiles {
                ca: None,
                cert: cert.clone(),
                key: key.clone(),
            },
            None,
        ),
        None => {
            let (files, made) = tls::ensure_dev_certs(&config.data.join("certs"), &config.name)?;
            if made {
                tracing::info!("made a development CA and relay certificate");
            }
            let ca = files.ca.clone();
            (files, ca)
        }
    };
    let (chain, key) = tls::load(&files.cert, &files.key)?;
    let tls_config = tls::server_config(chain, key)?;

    // The WebSocket fallback also accepts `http/1.1`, the only ALPN a
    // browser's WebSocket offers; non-browser clients offer `spider/1`.
    let mut ws_tls = tls_config.clone();
    ws_tls.alpn_protocols.push(b"http/1.1".to_vec());
    let endpoint = quic::endpoint(config.quic, tls_config, &config.limits, &config.data)?;
    let tcp = ws::bind(config.ws).await?;
    let quic_addr = endpoint.local_addr()?;
    let ws_addr = tcp.local_addr()?;
    let metrics = match config.metrics {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await?),
        None => None,
    };
    let metrics_addr = metrics.as_ref().map(|m| m.local_addr()).transpose()?;

    let (shutdown, shutdown_rx) = watch::channel(false);
    let (done_tx, done) = mpsc::channel(1);
    let limit = Arc::new(Semaphore::new(config.limits.max_connections));
    let grace = Duration::from_millis(config.limits.drain_grace_ms);
    let rate = Arc::new(RateLimits::new(&config.limits));
    let retention = config.limits.dedup_retention_ms;
    crate::blobs::prepare(&config.data)?;
    let data_dir = config.data.clone();
    let prune_store = store.clone();
    let shared = Arc::new(Shared {
        rate: rate.clone(),
        config,
        store: store.clone(),
        router: Arc::new(LocalRouter::new()),
        next_conn: AtomicU64::new(1),
        room_locks: crate::rooms::new_locks(),
        blob_reservations: Default::default(),
        commit: GroupCommit::default(),
    });
    let mut house = Shutdown::new(shutdown_rx.clone());
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        let mut hourly = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tokio::select! {
                _ = every.tick() => rate.housekeeping(),
                _ = hourly.tick() => {
                    let before = Timestamp(now().0.saturating_sub(retention));
                    // A full scan of the index: off the async workers.
                    let store = prune_store.clone();
                    match tokio::task::spawn_blocking(move || store.prune_dedup(before)).await {
                        Ok(Ok(n)) => tracing::debug!(pruned = n, "dedup index pruned"),
                        Ok(Err(e)) => tracing::warn!(error = %e, "dedup prune failed"),
                        Err(_) => tracing::warn!("dedup prune task failed"),
                    }
                    let store = prune_store.clone();
                    let data = data_dir.clone();
                    match tokio::task::spawn_blocking(move || crate::blobs::sweep(&*store, &data)).await {
                        Ok(Ok(n)) => tracing::debug!(deleted = n, "expired blobs swept"),
                        Ok(Err(e)) => tracing::warn!(error = %e, "blob sweep failed"),
                        Err(_) => tracing::warn!("blob sweep task failed"),
                    }
                }
                () = house.wait() => return,
            }
        }
    });
    if let Some(m) = metrics {
        tokio::spawn(crate::metrics::serve(m, Shutdown::new(shutdown_rx.clone())));
    }
    tokio::spawn(quic::run(
        endpoint.clone(),
        shared.clone(),
        limit.clone(),
        Shutdown::new(shutdown_rx.clone()),
        done_tx.clone(),
    ));
    tokio::spawn(ws::run(
        tcp,
        Arc::new(ws_tls),
        shared,
        limit,
        Shutdown::new(shutdown_rx),
        done_tx,
    ));
    tracing::info!(%quic_addr, %ws_addr, "relay listening");
    Ok(RunningRelay {
        quic_addr,
        ws_addr,
        metrics_addr,
        ca_pem,
        shutdown,
        done,
        store,
        endpoint,
        grace,
    })
}

impl RunningRelay {
    /// Drains: stops accepting, sends `Drain` to every connection, waits for
    /// them to close (up to the grace period), flushes the store.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        // Every task holds a sender; `None` means they have all ended.
        let _ = tokio::time::timeout(self.grace, self.done.recv()).await;
        self.store.flush().await?;
        self.endpoint.close(0u32.into(), b"relay shutting down");
        let _ = tokio::time::timeout(self.grace, self.endpoint.wait_idle()).await;
        tracing::info!("relay stopped");
        Ok(())
    }
}

/// Serves until `signal` completes, then drains.
pub async fn run(config: Config, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
    let relay = start(config).await?;
    // On stdout, for operators and scripts (the process test reads it).
    println!(
        "spider-relay listening: quic={} ws={}",
        relay.quic_addr, relay.ws_addr
    );
    if let Some(m) = relay.metrics_addr {
        println!("metrics: http://{m}/metrics");
    }
    if let Some(ca) = &relay.ca_pem {
        println!("clients pin this CA certificate: {}", ca.display());
    }
    signal.await;
    tracing::info!("draining");
    relay.shutdown().await
}
