//! One client connection, whatever its transport.
//!
//! A listener hands [`serve`] three things: a [`FrameSink`] to write
//! [`ServerFrame`]s, a bounded queue of [`Inbound`] items that a reader task
//! fills from the socket, and the connection's TLS exporter value. From there
//! the connection goes through its states:
//!
//! ```text
//!  AwaitHello --Hello--> AwaitAuth --Register|Login|AddDevice--> Authenticated
//!      |   (no common version: Error, close)    |  (bad: Error{req}, retry up to N)
//!      +-- handshake timeout: HANDSHAKE_TIMEOUT, close ------+
//! ```
//!
//! Each state is a function that consumes what the previous one produced,
//! so that no request can reach an unauthenticated connection's handlers.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use spider_protocol::bytes::{BoundedString, FixedBytes};
use spider_protocol::ids::{RequestId, Seq};
use spider_protocol::keys::PreKeyCounts;
use spider_protocol::message::{
    AuthOk, CaughtUp, Deliver, Drain, ErrorFrame, Hello, Ping, Pong, PreKeysLow, Welcome,
};
use spider_protocol::{ClientFrame, ErrorCode, ServerFrame, version};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use crate::auth::{self, Authed, Binding};
use crate::directory;
use crate::mailbox::{self, Cursor, Placement};
use crate::metrics::Limit;
use crate::router::{Push, Route};
use crate::server::{Shared, now};
use crate::shutdown::Shutdown;
use crate::{Refusal, metrics, rooms};

/// What the reader task passes on.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A decoded frame (boxed: register frames carry a 1.2 KiB KEM key).
    Frame(Box<ClientFrame>),
    /// Bytes that are not a frame: answer with this code and close.
    Bad(ErrorCode),
}

/// Why writing to a connection failed: it is gone.
#[derive(Debug, thiserror::Error)]
#[error("connection lost: {0}")]
pub(crate) struct SinkError(pub(crate) String);

/// Where a connection's frames go: a QUIC control stream or a WebSocket.
pub(crate) trait FrameSink: Send {
    /// Writes and flushes one frame.
    fn send(&mut self, frame: &ServerFrame) -> impl Future<Output = Result<(), SinkError>> + Send;
    /// Closes after the frames sent so far have reached the peer (or a short
    /// grace period has passed), with a close code naming `error` (QUIC
    /// application error code, WebSocket close code; protocol.md §5.8), or
    /// the normal close code if `None`.
    fn close(&mut self, error: Option<ErrorCode>) -> impl Future<Output = ()> + Send;
}

/// Why a connection ended (for logs and metrics).
#[derive(Debug)]
enum End {
    /// The peer closed or the transport failed.
    Gone,
    /// The relay closed it with this error.
    #[allow(dead_code)] // read through Debug, in the log line
    Error(ErrorCode),
    /// The relay is draining.
    Drain,
}

/// Sends an error frame without a `req`, then closes the connection with
/// the same code.
async fn fatal<S: FrameSink>(sink: &mut S, code: ErrorCode, message: &'static str) -> End {
    fatal_refusal(sink, Refusal::new(code, message)).await
}

/// [`fatal`] for a refusal, counting the limit behind it.
async fn fatal_refusal<S: FrameSink>(sink: &mut S, r: Refusal) -> End {
    let code = r.code;
    let _ = sink.send(&refusal_frame(None, r)).await;
    sink.close(Some(code)).await;
    End::Error(code)
}

fn refusal_frame(req: Option<spider_protocol::ids::RequestId>, r: Refusal) -> ServerFrame {
    metrics::rejection(r.code);
    if let Some(limit) = r.limit {
        metrics::limit_hit(limit);
    }
    ServerFrame::Error(ErrorFrame {
        req,
        code: r.code,
        message: BoundedString::truncating(r.message),
        detail: r.detail,
    })
}

/// The refusal of bytes that are not a frame (fatal on the connection).
fn bad_frame(code: ErrorCode) -> Refusal {
    if code == ErrorCode::FRAME_TOO_LARGE {
        Refusal::by(Limit::FrameSize, code, "frame too large")
    } else {
        Refusal::new(code, "malformed frame")
    }
}

/// A sink whose writes give up after `limit`: a write blocks only while
/// the peer's flow-control window (QUIC) or socket buffers (TCP) are full,
/// so a peer that stops reading is a slow consumer. Without this, its
/// connection would wait on that write forever, deaf to the kick from its
/// full queue and to its idle timer.
struct Bounded<S> {
    inner: S,
    limit: Duration,
    /// A write timed out; the connection is over.
    stalled: bool,
}

impl<S> Bounded<S> {
    fn new(inner: S, shared: &Shared) -> Self {
        Self {
            inner,
            limit: Duration::from_millis(shared.config.limits.write_timeout_ms),
            stalled: false,
        }
    }
}

impl<S: FrameSink> FrameSink for Bounded<S> {
    async fn send(&mut self, frame: &ServerFrame) -> Result<(), SinkError> {
        if self.stalled {
            return Err(SinkError("stalled".into()));
        }
        match tokio::time::timeout(self.limit, self.inner.send(frame)).await {
            Ok(r) => r,
            Err(_) => {
                self.stalled = true;
                Err(SinkError("stalled".into()))
            }
        }
    }

    async fn close(&mut self, error: Option<ErrorCode>) {
        // Bounded by each sink's own grace period.
        self.inner.close(error).await;
    }
}

/// Serves one connection to its end. `on_auth` learns who signed in (QUIC
/// then serves blob transfers on further streams).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve<S: FrameSink>(
    shared: Arc<Shared>,
    sink: S,
    mut inbound: mpsc::Receiver<Inbound>,
    exporter: [u8; 32],
    transport: &'static str,
    peer: SocketAddr,
    mut shutdown: Shutdown,
    on_auth: Option<tokio::sync::oneshot::Sender<Authed>>,
) {
    let _guard = metrics::ConnectionGuard::new(transport);
    let mut sink = Bounded::new(sink, &shared);
    let deadline =
        Instant::now() + Duration::from_millis(shared.config.limits.handshake_timeout_ms);
    // One short-lived value per connection, on the stack: its size is no cost.
    #[allow(clippy::large_enum_variant)]
    enum Handshake {
        Done(Result<(Authed, PreKeyCounts, RequestId), End>),
        Timeout,
        Drain,
    }
    let hs = tokio::select! {
        r = handshake(&shared, &mut sink, &mut inbound, exporter, peer.ip()) => Handshake::Done(r),
        () = sleep_until(deadline) => Handshake::Timeout,
        () = shutdown.wait() => Handshake::Drain,
    };
    let end = match hs {
        Handshake::Done(Ok((me, counts, req))) => {
            if let Some(tx) = on_auth {
                let _ = tx.send(me.clone());
            }
            authenticated(
                &shared,
                &mut sink,
                &mut inbound,
                &mut shutdown,
                me,
                counts,
                req,
            )
            .await
        }
        Handshake::Done(Err(end)) => end,
        Handshake::Timeout => {
            let r = Refusal::by(
                Limit::HandshakeTimeout,
                ErrorCode::HANDSHAKE_TIMEOUT,
                "handshake timed out",
            );
            fatal_refusal(&mut sink, r).await
        }
        Handshake::Drain => drain(&shared, &mut sink).await,
    };
    let end = match end {
        // A write stalled: the error frame could not be written either, but
        // the close code still says why (QUIC; on TCP the close frame waits
        // behind the unread data).
        End::Gone if sink.stalled => {
            metrics::rejection(ErrorCode::SLOW_CONSUMER);
            metrics::limit_hit(Limit::WriteTimeout);
            sink.close(Some(ErrorCode::SLOW_CONSUMER)).await;
            End::Error(ErrorCode::SLOW_CONSUMER)
        }
        end => end,
    };
    tracing::debug!(transport, ?end, "connection ended");
}

async fn drain<S: FrameSink>(shared: &Shared, sink: &mut S) -> End {
    let _ = sink
        .send(&ServerFrame::Drain(Drain {
            reconnect_after_ms: shared.config.limits.drain_reconnect_after_ms,
            alternative: None,
        }))
        .await;
    sink.close(None).await;
    End::Drain
}

/// Hello, Welcome, then one of Register / Login / AddDevice.
async fn handshake<S: FrameSink>(
    shared: &Shared,
    sink: &mut S,
    inbound: &mut mpsc::Receiver<Inbound>,
    exporter: [u8; 32],
    peer: IpAddr,
) -> Result<(Authed, PreKeyCounts, RequestId), End> {
    let hello: Hello = match inbound.recv().await {
        Some(Inbound::Frame(f)) if matches!(*f, ClientFrame::Hello(_)) => match *f {
            ClientFrame::Hello(h) => h,
            _ => return Err(End::Gone),
        },
        Some(Inbound::Frame(_)) => {
            return Err(fatal(sink, ErrorCode::UNEXPECTED_FRAME, "expected hello").await);
        }
        Some(Inbound::Bad(code)) => return Err(fatal_refusal(sink, bad_frame(code)).await),
        None => return Err(End::Gone),
    };
    let version = match version::negotiate(&hello, version::SUPPORTED_VERSIONS) {
        Ok(v) => v,
        Err(e) => {
            metrics::rejection(e.code);
            let _ = sink.send(&ServerFrame::Error(e)).await;
            sink.close(Some(ErrorCode::UNSUPPORTED_VERSION)).await;
            return Err(End::Error(ErrorCode::UNSUPPORTED_VERSION));
        }
    };
    let mut challenge = [0u8; 32];
    if getrandom::fill(&mut challenge).is_err() {
        return Err(fatal(sink, ErrorCode::INTERNAL, "no randomness").await);
    }
    let binding = Binding {
        relay_name: shared.config.name.clone(),
        exporter,
        challenge,
        peer,
    };
    let welcome = ServerFrame::Welcome(Welcome {
        version,
        // The config refuses names over MAX_RELAY_NAME, so nothing is cut.
        relay_name: BoundedString::truncating(&shared.config.name),
        challenge: FixedBytes(challenge),
        server_time: now(),
        idle_timeout_ms: u32::try_from(shared.config.limits.idle_timeout_ms).unwrap_or(u32::MAX),
    });
    sink.send(&welcome).await.map_err(|_| End::Gone)?;

    let mut failures = 0;
    loop {
        let frame = match inbound.recv().await {
            Some(Inbound::Frame(f)) => f,
            Some(Inbound::Bad(code)) => return Err(fatal_refusal(sink, bad_frame(code)).await),
            None => return Err(End::Gone),
        };
        let (req, result) = match *frame {
            ClientFrame::Register(r) => (r.req, auth::register(shared, &binding, r).await),
            ClientFrame::Login(l) => (l.req, auth::login(shared, &binding, l)),
            ClientFrame::AddDevice(a) => (a.req, auth::add_device(shared, &binding, a).await),
            ClientFrame::Ping(p) => {
                let pong = ServerFrame::Pong(Pong { nonce: p.nonce });
                sink.send(&pong).await.map_err(|_| End::Gone)?;
                continue;
            }
            _ => {
                return Err(fatal(sink, ErrorCode::UNEXPECTED_FRAME, "authenticate first").await);
            }
        };
        match result {
            // AuthOk is sent by the authenticated state, after the route is
            // registered, so that its `queued` count is exact.
            Ok((me, counts)) => return Ok((me, counts, req)),
            Err(r) => {
                failures += 1;
                let code = r.code;
                tracing::debug!(%code, "auth attempt refused");
                sink.send(&refusal_frame(Some(req), r))
                    .await
                    .map_err(|_| End::Gone)?;
                if failures >= shared.config.limits.max_auth_attempts {
                    // Closed with the last attempt's code: that error frame
                    // was the last word.
                    metrics::limit_hit(Limit::AuthAttempts);
                    sink.close(Some(code)).await;
                    return Err(End::Error(code));
                }
            }
        }
    }
}

/// The connection of an authenticated device: registers its route, catches
/// it up, then serves requests and pushes until it ends.
async fn authenticated<S: FrameSink>(
    shared: &Shared,
    sink: &mut S,
    inbound: &mut mpsc::Receiver<Inbound>,
    shutdown: &mut Shutdown,
    me: Authed,
    counts: PreKeyCounts,
    req: RequestId,
) -> End {
    let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel(shared.config.limits.outbound_queue);
    let (kick, mut kicked) = mpsc::channel(1);
    // Route first, then read the mailbox: see `mailbox` for why.
    let was_offline = shared.router.register(me.addr, Route { conn, tx, kick });
    tracing::info!(user = %me.addr.user, device = me.addr.device.0, "signed in");
    let end = signed_in(
        shared,
        sink,
        inbound,
        shutdown,
        &me,
        counts,
        req,
        was_offline,
        &mut rx,
        &mut kicked,
    )
    .await;
    if shared.router.unregister(me.addr, conn, now()) {
        directory::announce_presence(shared, me.addr.user);
    }
    end
}

#[allow(clippy::too_many_arguments)]
async fn signed_in<S: FrameSink>(
    shared: &Shared,
    sink: &mut S,
    inbound: &mut mpsc::Receiver<Inbound>,
    shutdown: &mut Shutdown,
    me: &Authed,
    counts: PreKeyCounts,
    req: RequestId,
    was_offline: bool,
    rx: &mut mpsc::Receiver<Push>,
    kicked: &mut mpsc::Receiver<ErrorCode>,
) -> End {
    let limits = &shared.config.limits;
    let (queued, high) = match (
        shared.store.mailbox_len(me.addr),
        shared.store.mailbox_high(me.addr),
    ) {
        (Ok(q), Ok(h)) => (q, h),
        _ => return fatal(sink, ErrorCode::INTERNAL, "store unavailable").await,
    };
    metrics::mailbox_depth_at_login(queued);
    let ok = ServerFrame::AuthOk(AuthOk {
        req,
        user: me.addr.user,
        username: me.username.clone(),
        device: me.addr.device,
        prekeys: counts,
        queued,
    });
    if sink.send(&ok).await.is_err() {
        return End::Gone;
    }
    if was_offline {
        directory::announce_presence(shared, me.addr.user);
    }

    // Backlog, in seq order, in bounded batches.
    let mut cursor = Cursor::default();
    if let Some(high) = high
        && let Err(end) = send_stored(shared, sink, me, &mut cursor, high).await
    {
        return end;
    }
    let caught_up = ServerFrame::CaughtUp(CaughtUp {
        last: cursor.last_sent,
    });
    if sink.send(&caught_up).await.is_err() {
        return End::Gone;
    }
    if directory::is_low(shared, counts) {
        let low = ServerFrame::PreKeysLow(PreKeysLow { remaining: counts });
        if sink.send(&low).await.is_err() {
            return End::Gone;
        }
    }

    let ping_every = Duration::from_millis(limits.ping_interval_ms);
    let idle = Duration::from_millis(limits.idle_timeout_ms);
    let mut last_rx = Instant::now();
    let mut ticker = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut nonce = 0u64;
    let frames = shared.rate.connection();
    let mut uploads = crate::blobs::Uploads::new(shared, me.addr.user);
    // Unbiased: requests and pushes take turns at random. A client that always has requests
    // waiting (a pipelined sender; each request waits for its flush) must still get its mail,
    // and one that is sent a flood must still be heard. With `biased` (requests before pushes)
    // the pushes of a busy sender waited for as long as it sent: spider-load measured
    // deliveries 10 s late in 10 s runs. Shutdown and a kick are taken within a turn or two.
    loop {
        tokio::select! {
            () = shutdown.wait() => return drain(shared, sink).await,
            Some(code) = kicked.recv() => {
                let r = if code == ErrorCode::SLOW_CONSUMER {
                    Refusal::by(
                        Limit::OutboundQueue,
                        code,
                        "too slow to read; reconnect for the rest of your mail",
                    )
                } else {
                    Refusal::new(code, "this device signed in on another connection")
                };
                return fatal_refusal(sink, r).await;
            }
            item = inbound.recv() => match item {
                None => return End::Gone,
                Some(Inbound::Bad(code)) => return fatal_refusal(sink, bad_frame(code)).await,
                Some(Inbound::Frame(f)) => {
                    last_rx = Instant::now();
                    // Acks and heartbeats are not requests: dropping them
                    // would redeliver mail or stall a client waiting for its
                    // pong. Their cost is bounded by what was delivered and
                    // by the inbound queue.
                    // Chunks of an upload in progress are bounded by its
                    // declared size and the blob limits, not by the rate.
                    let exempt = match &*f {
                        ClientFrame::Ack(_) | ClientFrame::Ping(_) | ClientFrame::Pong(_) => true,
                        ClientFrame::BlobChunk(c) => uploads.has(c.blob),
                        _ => false,
                    };
                    let r = match if exempt { None } else { shared.rate.frame(&frames, me.addr.user, me.ip) } {
                        None => handle(shared, sink, me, &mut uploads, *f).await,
                        Some((limit, wait)) => rate_limited(sink, &f, limit, wait).await,
                    };
                    if let Err(end) = r {
                        return end;
                    }
                }
            },
            Some(push) = rx.recv() => {
                let r = match push {
                    Push::Deliver { seq, envelope } => match cursor.place(seq) {
                        Placement::Old => Ok(()),
                        Placement::Next => {
                            cursor.sent(seq);
                            metrics::envelope_out();
                            sink.send(&ServerFrame::Deliver(Deliver { seq, envelope }))
                                .await
                                .map_err(|_| End::Gone)
                        }
                        Placement::Ahead => send_stored(shared, sink, me, &mut cursor, seq).await,
                    },
                    Push::Frame(f) => sink.send(&f).await.map_err(|_| End::Gone),
                };
                if let Err(end) = r {
                    return end;
                }
            }
            _ = ticker.tick() => {
                if last_rx.elapsed() >= idle {
                    let r = Refusal::by(
                        Limit::IdleTimeout,
                        ErrorCode::IDLE_TIMEOUT,
                        "no frame received for too long",
                    );
                    return fatal_refusal(sink, r).await;
                }
                nonce = nonce.wrapping_add(1);
                if sink.send(&ServerFrame::Ping(Ping { nonce })).await.is_err() {
                    return End::Gone;
                }
            }
        }
    }
}

/// Sends stored envelopes after the cursor up to `high`, batch by batch.
async fn send_stored<S: FrameSink>(
    shared: &Shared,
    sink: &mut S,
    me: &Authed,
    cursor: &mut Cursor,
    high: Seq,
) -> Result<(), End> {
    loop {
        let batch = match cursor.next_batch(shared, me.addr, high) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "mailbox read failed");
                return Err(fatal(sink, ErrorCode::INTERNAL, "store unavailable").await);
            }
        };
        if batch.is_empty() {
            return Ok(());
        }
        for f in &batch {
            metrics::envelope_out();
            sink.send(f).await.map_err(|_| End::Gone)?;
        }
    }
}

/// Sends a request's reply (or its refusal).
async fn reply<S: FrameSink>(
    sink: &mut S,
    req: RequestId,
    r: Result<ServerFrame, Refusal>,
) -> Result<(), End> {
    let f = r.unwrap_or_else(|e| refusal_frame(Some(req), e));
    sink.send(&f).await.map_err(|_| End::Gone)
}

/// One request of an authenticated device.
async fn handle<S: FrameSink>(
    shared: &Shared,
    sink: &mut S,
    me: &Authed,
    uploads: &mut crate::blobs::Uploads,
    frame: ClientFrame,
) -> Result<(), End> {
    match frame {
        ClientFrame::SendDirect(s) => {
            metrics::envelope_in();
            let req = s.req;
            reply(sink, req, mailbox::send_direct(shared, me, s).await).await
        }
        ClientFrame::Ack(a) => {
            if let Err(e) = mailbox::ack(shared, me, a) {
                tracing::error!(error = %e, "ack failed");
            }
            Ok(())
        }
        ClientFrame::FetchPreKeys(f) => {
            let req = f.req;
            reply(sink, req, directory::fetch_prekeys(shared, me, f)).await
        }
        ClientFrame::UploadPreKeys(u) => {
            let req = u.req;
            reply(sink, req, directory::upload_prekeys(shared, me, u).await).await
        }
        ClientFrame::LookupUser(l) => {
            let req = l.req;
            reply(sink, req, directory::lookup_user(shared, l)).await
        }
        ClientFrame::SendEphemeral(e) => {
            mailbox::send_ephemeral(shared, me, e);
            Ok(())
        }
        ClientFrame::SetPresence(p) => {
            directory::set_presence(shared, me, p);
            Ok(())
        }
        ClientFrame::EditContact(e) => {
            let req = e.req;
            reply(sink, req, directory::edit_contact(shared, me, e).await).await
        }
        ClientFrame::ListContacts(l) => {
            let req = l.req;
            reply(sink, req, directory::list_contacts(shared, me, l)).await
        }
        ClientFrame::Ping(p) => sink
            .send(&ServerFrame::Pong(Pong { nonce: p.nonce }))
            .await
            .map_err(|_| End::Gone),
        ClientFrame::Pong(_) => Ok(()),
        ClientFrame::Register(r) => reply(sink, r.req, Err(already())).await,
        ClientFrame::Login(l) => reply(sink, l.req, Err(already())).await,
        ClientFrame::AddDevice(a) => reply(sink, a.req, Err(already())).await,
        ClientFrame::SendRoom(r) => {
            metrics::envelope_in();
            let req = r.req;
            reply(sink, req, rooms::send(shared, me, r).await).await
        }
        ClientFrame::ChangeRoom(r) => {
            let req = r.req;
            reply(sink, req, rooms::change(shared, me, r).await).await
        }
        ClientFrame::GetRoom(r) => {
            let req = r.req;
            reply(sink, req, rooms::get(shared, me, r)).await
        }
        ClientFrame::ResolveLink(r) => {
            let req = r.req;
            reply(sink, req, rooms::resolve_link(shared, r)).await
        }
        ClientFrame::ListRooms(r) => reply(sink, r.req, rooms::list(shared, me, r)).await,
        ClientFrame::SetProfile(p) => {
            let req = p.req;
            reply(sink, req, directory::set_profile(shared, me, p).await).await
        }
        ClientFrame::GetProfile(g) => {
            let req = g.req;
            reply(sink, req, directory::get_profile(shared, g)).await
        }
        ClientFrame::BlobUploadStart(r) => {
            let req = r.req;
            reply(sink, req, uploads.start(shared, me, r).await).await
        }
        ClientFrame::BlobChunk(c) => match uploads.chunk(c).await {
            Ok(()) => Ok(()),
            Err((req, r)) => sink
                .send(&refusal_frame(req, r))
                .await
                .map_err(|_| End::Gone),
        },
        ClientFrame::BlobUploadFinish(r) => {
            let req = r.req;
            reply(sink, req, uploads.finish(shared, me, r).await).await
        }
        ClientFrame::BlobDownload(d) => {
            let req = d.req;
            let mut dl = match crate::blobs::Download::open(shared, d).await {
                Ok(dl) => dl,
                Err(r) => return reply(sink, req, Err(r)).await,
            };
            loop {
                match dl.next().await {
                    Ok(Some(f)) => sink.send(&f).await.map_err(|_| End::Gone)?,
                    Ok(None) => return Ok(()),
                    Err(r) => return reply(sink, req, Err(r)).await,
                }
            }
        }
        ClientFrame::Hello(_) => Err(fatal(sink, ErrorCode::UNEXPECTED_FRAME, "hello again").await),
        _ => Err(fatal(sink, ErrorCode::UNEXPECTED_FRAME, "unexpected frame").await),
    }
}

/// Serves one blob transfer on its own stream (QUIC, §5.7): blob frames
/// only, until the transfer ends (stored, downloaded, or failed), then the
/// stream is finished. The connection itself is unaffected.
pub(crate) async fn serve_transfer<S: FrameSink>(
    shared: Arc<Shared>,
    sink: S,
    mut inbound: mpsc::Receiver<Inbound>,
    me: Authed,
) {
    let mut sink = Bounded::new(sink, &shared);
    let mut uploads = crate::blobs::Uploads::new(&shared, me.addr.user);
    loop {
        let f = match inbound.recv().await {
            Some(Inbound::Frame(f)) => *f,
            Some(Inbound::Bad(code)) => {
                let _ = sink.send(&refusal_frame(None, bad_frame(code))).await;
                break;
            }
            None => break,
        };
        let (req, r) = match f {
            ClientFrame::BlobUploadStart(s) => {
                let req = s.req;
                match uploads.start(&shared, &me, s).await {
                    Ok(f) => {
                        if sink.send(&f).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    Err(r) => (Some(req), r),
                }
            }
            ClientFrame::BlobChunk(c) => match uploads.chunk(c).await {
                Ok(()) => continue,
                Err((req, r)) => (req, r),
            },
            ClientFrame::BlobUploadFinish(u) => {
                let req = u.req;
                match uploads.finish(&shared, &me, u).await {
                    Ok(f) => {
                        let _ = sink.send(&f).await;
                        break;
                    }
                    Err(r) => (Some(req), r),
                }
            }
            ClientFrame::BlobDownload(d) => {
                let req = d.req;
                let mut dl = match crate::blobs::Download::open(&shared, d).await {
                    Ok(dl) => dl,
                    Err(r) => {
                        let _ = sink.send(&refusal_frame(Some(req), r)).await;
                        break;
                    }
                };
                loop {
                    match dl.next().await {
                        Ok(Some(f)) => {
                            if sink.send(&f).await.is_err() {
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(r) => {
                            let _ = sink.send(&refusal_frame(Some(req), r)).await;
                            break;
                        }
                    }
                }
                break;
            }
            other => (
                req_of(&other),
                Refusal::new(
                    ErrorCode::UNEXPECTED_FRAME,
                    "a transfer stream carries blob frames only",
                ),
            ),
        };
        let _ = sink.send(&refusal_frame(req, r)).await;
        break;
    }
    sink.close(None).await;
}

/// The request id of a frame, if it has one.
fn req_of(f: &ClientFrame) -> Option<RequestId> {
    Some(match f {
        ClientFrame::Register(x) => x.req,
        ClientFrame::Login(x) => x.req,
        ClientFrame::AddDevice(x) => x.req,
        ClientFrame::UploadPreKeys(x) => x.req,
        ClientFrame::FetchPreKeys(x) => x.req,
        ClientFrame::LookupUser(x) => x.req,
        ClientFrame::SendDirect(x) => x.req,
        ClientFrame::SendRoom(x) => x.req,
        ClientFrame::ChangeRoom(x) => x.req,
        ClientFrame::GetRoom(x) => x.req,
        ClientFrame::ResolveLink(x) => x.req,
        ClientFrame::ListRooms(x) => x.req,
        ClientFrame::EditContact(x) => x.req,
        ClientFrame::ListContacts(x) => x.req,
        ClientFrame::SetProfile(x) => x.req,
        ClientFrame::GetProfile(x) => x.req,
        ClientFrame::BlobUploadStart(x) => x.req,
        ClientFrame::BlobUploadFinish(x) => x.req,
        ClientFrame::BlobDownload(x) => x.req,
        _ => return None,
    })
}

/// A frame over the connection's rate fails with `RATE_LIMITED` and a retry
/// delay, not fatal: with its `req` for a request, without for the other
/// frames that count (ephemerals, presence, blob chunks), which are dropped.
async fn rate_limited<S: FrameSink>(
    sink: &mut S,
    f: &ClientFrame,
    limit: Limit,
    wait: Duration,
) -> Result<(), End> {
    let r = Refusal::by(
        limit,
        ErrorCode::RATE_LIMITED,
        "too many requests; slow down",
    )
    .retry_after(wait);
    match req_of(f) {
        Some(req) => reply(sink, req, Err(r)).await,
        None => sink
            .send(&refusal_frame(None, r))
            .await
            .map_err(|_| End::Gone),
    }
}

fn already() -> Refusal {
    Refusal::new(ErrorCode::UNEXPECTED_FRAME, "already authenticated")
}
