//! The async driver: a tokio task that owns an [`Engine`], keeps a
//! connection to the relay (QUIC or WebSocket, reconnecting with jittered
//! exponential backoff), and is reached through [`Client`]'s request
//! methods with oneshot replies; events arrive on a channel.
//!
//! The driver is thin on purpose (quinn's `ConnectionDriver` over
//! quinn-proto): every decision is the engine's; the driver moves frames,
//! reads the clock and sleeps.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand_core::Rng as _;
use spider_protocol::ids::{MessageId, RoomId, UserId};
use spider_protocol::name::{RoomName, Username};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::attachments::{Transfers, Work};
use crate::content::ReceiptKind;
use crate::engine::{ClientError, Engine, Event, Recipient};
use crate::store::ProfileStore;
use crate::transport::{self, Link, RelayTarget, TransportChoice};

mod social;

/// Reconnect delays: exponential from `initial` to `max`, each drawn at
/// random from its upper half ("equal jitter"), so that clients cut off
/// together do not come back together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Backoff {
    /// 0.5 s doubling to 60 s: a relay restart is bridged within seconds,
    /// and a relay that is down for long sees each client once a minute.
    pub const DEFAULT: Self = Self {
        initial: Duration::from_millis(500),
        max: Duration::from_secs(60),
    };

    /// The delay before reconnect attempt `attempt` (0-based), given a
    /// random `jitter` word. Always in `[d/2, d]` with
    /// `d = min(max, initial * 2^attempt)`.
    #[must_use]
    pub fn delay(&self, attempt: u32, jitter: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        let full = self.initial.saturating_mul(factor).min(self.max);
        let half = full / 2;
        let half_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        let extra = if half_ms == 0 {
            0
        } else {
            u64::from(jitter) % (half_ms + 1)
        };
        half + Duration::from_millis(extra)
    }
}

/// How the driver reaches the relay.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Address, TLS name and CA.
    pub target: RelayTarget,
    /// `quic`, `ws` or `auto`.
    pub transport: TransportChoice,
    /// Reconnect delays.
    pub backoff: Backoff,
}

/// A request to the driver failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The driver task has stopped.
    #[error("client stopped")]
    Stopped,
    /// The engine refused the command.
    #[error(transparent)]
    Client(#[from] ClientError),
}

type Reply<T> = oneshot::Sender<Result<T, ClientError>>;

pub(crate) enum Command {
    SendText(Recipient, String, Reply<MessageId>),
    SendRoom(RoomId, String, Reply<MessageId>),
    Receipt(UserId, ReceiptKind, Vec<MessageId>, Reply<MessageId>),
    Typing(UserId, bool, Reply<bool>),
    Lookup(Username, Reply<()>),
    CreateRoom(RoomName, Reply<()>),
    Invite(RoomId, UserId, Reply<()>),
    Accept(RoomId, Reply<()>),
    Kick(RoomId, UserId, Reply<()>),
    /// Files: [`crate::attachments`].
    Attachment(crate::attachments::Request),
    /// Links, leaving, profiles, presence, queries: `client/social.rs`.
    Social(social::SocialCommand),
    Shutdown,
}

/// Handle to a running client. Dropping it stops the driver after the
/// current step; [`Client::shutdown`] waits for it.
#[derive(Debug)]
pub struct Client {
    tx: mpsc::Sender<Command>,
    task: JoinHandle<()>,
}

/// Capacity of the command and event channels: bounded, so a stalled
/// application slows the driver instead of growing memory.
pub const CHANNEL_CAPACITY: usize = 256;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Client {
    /// Starts the driver on the current tokio runtime. Returns the handle
    /// and the event stream.
    pub fn spawn<S>(engine: Engine<S>, config: ClientConfig) -> (Self, mpsc::Receiver<Event>)
    where
        S: ProfileStore + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let (etx, erx) = mpsc::channel(CHANNEL_CAPACITY);
        let task = tokio::spawn(run(engine, config, rx, etx));
        (Self { tx, task }, erx)
    }

    /// Hands a command to the driver.
    pub(crate) async fn send_command(&self, c: Command) -> Result<(), DriverError> {
        self.tx.send(c).await.map_err(|_| DriverError::Stopped)
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, DriverError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| DriverError::Stopped)?;
        Ok(rx.await.map_err(|_| DriverError::Stopped)??)
    }

    /// Sends a text to an account (see [`Engine::send_text`]).
    ///
    /// # Errors
    /// [`DriverError`].
    pub async fn send_text(
        &self,
        to: impl Into<Recipient>,
        text: impl Into<String>,
    ) -> Result<MessageId, DriverError> {
        let to = to.into();
        let text = text.into();
        self.ask(|r| Command::SendText(to, text, r)).await
    }

    /// Sends a text to a room.
    ///
    /// # Errors
    /// [`DriverError`].
    pub async fn send_room_text(
        &self,
        room: RoomId,
        text: impl Into<String>,
    ) -> Result<MessageId, DriverError> {
        let text = text.into();
        self.ask(|r| Command::SendRoom(room, text, r)).await
    }

    /// Sends a delivery or read receipt.
    ///
    /// # Errors
    /// [`DriverError`].
    pub async fn send_receipt(
        &self,
        to: UserId,
        kind: ReceiptKind,
        ids: Vec<MessageId>,
    ) -> Result<MessageId, DriverError> {
        self.ask(|r| Command::Receipt(to, kind, ids, r)).await
    }

    /// Sends a typing notice (see [`Engine::send_typing`]).
    ///
    /// # Errors
    /// [`DriverError`].
    pub async fn send_typing(&self, to: UserId, started: bool) -> Result<bool, DriverError> {
        self.ask(|r| Command::Typing(to, started, r)).await
    }

    /// Looks an account up by name (see [`Engine::lookup_user`]): its
    /// answer is an [`Event::ContactUpdated`] or an [`Event::Error`].
    ///
    /// # Errors
    /// [`DriverError`]; not connected.
    pub async fn lookup_user(&self, name: Username) -> Result<(), DriverError> {
        self.ask(|r| Command::Lookup(name, r)).await
    }

    /// Creates a room.
    ///
    /// # Errors
    /// [`DriverError`].
    pub async fn create_room(&self, name: RoomName) -> Result<(), DriverError> {
        self.ask(|r| Command::CreateRoom(name, r)).await
    }

    /// Invites an account to a room.
    ///
    /// # Errors
    /// [`DriverError`].
    pub async fn invite(&self, room: RoomId, user: UserId) -> Result<(), DriverError> {
        self.ask(|r| Command::Invite(room, user, r)).await
    }

    /// Accepts an invitation.
    ///
    /// # Errors
    /// [`DriverError`].
    pub async fn accept_invite(&self, room: RoomId) -> Result<(), DriverError> {
        self.ask(|r| Command::Accept(room, r)).await
    }

    /// Removes a member from a room.
    ///
    /// # Errors
    /// [`DriverError`].
    pub async fn kick(&self, room: RoomId, user: UserId) -> Result<(), DriverError> {
        self.ask(|r| Command::Kick(room, user, r)).await
    }

    /// Stops the driver and waits for it.
    pub async fn shutdown(self) {
        let _ = self.tx.send(Command::Shutdown).await;
        let _ = self.task.await;
    }
}

/// Runs one command; returns false for shutdown.
fn command<S: ProfileStore>(engine: &mut Engine<S>, transfers: &mut Transfers, c: Command) -> bool {
    let now = now_ms();
    match c {
        Command::SendText(to, text, r) => {
            let _ = r.send(engine.send_text(to, &text, now));
        }
        Command::SendRoom(room, text, r) => {
            let _ = r.send(engine.send_room_text(room, &text, now));
        }
        Command::Receipt(to, kind, ids, r) => {
            let _ = r.send(engine.send_receipt(to, kind, ids, now));
        }
        Command::Typing(to, started, r) => {
            let _ = r.send(engine.send_typing(to, started, now));
        }
        Command::Lookup(name, r) => {
            let _ = r.send(engine.lookup_user(name));
        }
        Command::CreateRoom(name, r) => {
            let _ = r.send(engine.create_room(name, now));
        }
        Command::Invite(room, user, r) => {
            let _ = r.send(engine.invite(room, user, now));
        }
        Command::Accept(room, r) => {
            let _ = r.send(engine.accept_invite(room, now));
        }
        Command::Kick(room, user, r) => {
            let _ = r.send(engine.kick(room, user, now));
        }
        Command::Attachment(r) => transfers.request(engine, r),
        Command::Social(c) => social::run(engine, c, now),
        Command::Shutdown => return false,
    }
    true
}

/// Hands the engine's events to the application. Returns a drain delay if
/// the relay asked us to go.
async fn forward<S: ProfileStore>(
    engine: &mut Engine<S>,
    events: &mpsc::Sender<Event>,
) -> Option<Duration> {
    let mut drain = None;
    while let Some(e) = engine.poll_event() {
        if let Event::Drain { reconnect_after_ms } = e {
            drain = Some(Duration::from_millis(u64::from(reconnect_after_ms)));
        }
        // An application that dropped its receiver still gets its
        // messages sent; events are simply discarded.
        let _ = events.send(e).await;
    }
    drain
}

enum SessionEnd {
    Shutdown,
    Lost,
    Drained(Duration),
}

async fn session<S: ProfileStore>(
    engine: &mut Engine<S>,
    link: &mut Link,
    rx: &mut mpsc::Receiver<Command>,
    events: &mpsc::Sender<Event>,
    transfers: &mut Transfers,
) -> SessionEnd {
    loop {
        while let Some(f) = engine.poll_transmit() {
            if let Err(e) = link.send(&f).await {
                let _ = events
                    .send(Event::Error(ClientError::Transport(e.to_string())))
                    .await;
                return SessionEnd::Lost;
            }
        }
        if let Some(d) = forward(engine, events).await {
            return SessionEnd::Drained(d);
        }
        if engine.wants_close() {
            return SessionEnd::Lost;
        }
        if engine.is_ready() {
            transfers.start(link);
        }
        let deadline = engine.poll_timeout();
        let sleep = async {
            match deadline {
                Some(t) => {
                    let wait = t.saturating_sub(now_ms());
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            frame = link.recv() => match frame {
                Ok(f) => if let Some(f) = transfers.route(f).await {
                    engine.handle_frame(f, now_ms());
                },
                Err(e) => {
                    let _ = events.send(Event::Error(ClientError::Transport(e.to_string()))).await;
                    return SessionEnd::Lost;
                }
            },
            c = rx.recv() => match c {
                Some(c) => if !command(engine, transfers, c) { return SessionEnd::Shutdown },
                None => return SessionEnd::Shutdown,
            },
            w = transfers.next() => match w {
                Work::Send(f) => if let Err(e) = link.send(&f).await {
                    let _ = events.send(Event::Error(ClientError::Transport(e.to_string()))).await;
                    return SessionEnd::Lost;
                },
                Work::Done(d) => transfers.finish(engine, d, now_ms()),
            },
            () = sleep => engine.handle_timeout(now_ms()),
        }
    }
}

/// Waits `delay` while still taking commands (they go to the outbox).
/// Returns false on shutdown.
async fn wait<S: ProfileStore>(
    engine: &mut Engine<S>,
    transfers: &mut Transfers,
    rx: &mut mpsc::Receiver<Command>,
    events: &mpsc::Sender<Event>,
    delay: Duration,
) -> bool {
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            () = &mut sleep => return true,
            c = rx.recv() => match c {
                Some(c) => {
                    if !command(engine, transfers, c) {
                        return false;
                    }
                    let _ = forward(engine, events).await;
                }
                None => return false,
            },
        }
    }
}

async fn run<S: ProfileStore>(
    mut engine: Engine<S>,
    config: ClientConfig,
    mut rx: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
) {
    let mut jitter = crate::profile::os_rng();
    let mut attempt: u32 = 0;
    let mut transfers = Transfers::new(events.clone());
    loop {
        let connecting = transport::connect(&config.target, config.transport);
        tokio::pin!(connecting);
        let outcome = loop {
            tokio::select! {
                r = &mut connecting => break Some(r),
                c = rx.recv() => match c {
                    Some(c) => {
                        if !command(&mut engine, &mut transfers, c) {
                            break None;
                        }
                        let _ = forward(&mut engine, &events).await;
                    }
                    None => break None,
                },
            }
        };
        let Some(outcome) = outcome else {
            return;
        };
        let mut delay = config.backoff.delay(attempt, jitter.next_u32());
        match outcome {
            Ok((mut link, exporter)) => {
                engine.connect(exporter, now_ms());
                let end = session(&mut engine, &mut link, &mut rx, &events, &mut transfers).await;
                let was_ready = engine.is_ready();
                engine.disconnected(now_ms());
                transfers.interrupted(&mut engine, now_ms()).await;
                let _ = forward(&mut engine, &events).await;
                link.close().await;
                match end {
                    SessionEnd::Shutdown => return,
                    SessionEnd::Drained(d) => {
                        attempt = 0;
                        delay = d;
                    }
                    SessionEnd::Lost if was_ready => {
                        // A session that got through authentication resets
                        // the backoff: the next failure starts small again.
                        attempt = 0;
                        delay = config.backoff.delay(0, jitter.next_u32());
                    }
                    SessionEnd::Lost => attempt = attempt.saturating_add(1),
                }
            }
            Err(e) => {
                let _ = events
                    .send(Event::Error(ClientError::Transport(e.to_string())))
                    .await;
                attempt = attempt.saturating_add(1);
            }
        }
        if !wait(&mut engine, &mut transfers, &mut rx, &events, delay).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_stays_in_the_upper_half() {
        let b = Backoff::DEFAULT;
        assert_eq!(b.delay(0, 0), Duration::from_millis(250));
        assert_eq!(
            b.delay(0, u32::MAX),
            Duration::from_millis(250 + (u32::MAX as u64 % 251))
        );
        assert!(b.delay(3, 7) >= Duration::from_secs(2) && b.delay(3, 7) <= Duration::from_secs(4));
        for attempt in [7, 8, 20, 31, 32, u32::MAX] {
            for jitter in [0, 1, 12_345, u32::MAX] {
                let d = b.delay(attempt, jitter);
                assert!(
                    d >= Duration::from_secs(30) && d <= Duration::from_secs(60),
                    "{d:?}"
                );
            }
        }
    }
}
