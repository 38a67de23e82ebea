//! Spider with real end-to-end encryption (`--e2e`): every simulated user is a spider-client
//! [`Engine`] on an in-memory profile, so the load generator pays what a real client pays.
//!
//! What a client does here is what the SDK does for a person: it registers with a full prekey
//! upload (identity, signed prekey, last-resort KEM prekey and the engine's batch of one-time
//! prekeys), looks its peer up by name, fetches a prekey bundle, runs PQXDH, and sends each message
//! through the Double Ratchet, one copy per device, writing the outbox and history to its
//! (encrypted, in-memory) profile; the receiver decrypts, checks the inner header, records the
//! message and acks. The relay's work is the same as in opaque mode (one stored, delivered, acked
//! envelope per message) plus the prekey and directory requests of the first message.
//!
//! The engine sends one message at a time, in order (its outbox waits for each `Sent`), so a
//! flat-out `--window` above 1 only queues messages in the outbox.
//!
//! The benchmark stamp travels inside the text: the first 32 payload bytes (the stamp) in base64
//! (44 characters), then the rest of the payload as letters, so a `--payload-size` of N is a text
//! of N + 12 characters.
//!
//! The two users of a pair would otherwise start their sessions at the same moment (each sends
//! its first message before the other's arrives). spider-crypto used to settle that race by
//! keeping the handshake with the lower base key, and a *second* first-message of the discarded
//! handshake was then refused as a replay and lost (seen: 1 of 211 messages, 2 pairs flat out);
//! it now keeps previous sessions per device (`SessionRecord`), which fixes that. The odd user of
//! each pair still holds its messages until the first one from its peer has arrived: sessions are
//! set up one way, and the run measures messaging, not that race.
//!
//! Each client's link is read by one task and written by another; the engine runs in a third,
//! which takes frames, commands and timers in turn, so reading never waits for the engine's crypto
//! or a held-back write.

use super::spider::{describe, username};
use super::spider_link::Dialer;
use super::{EnvelopeReceiver, EnvelopeSender, Incoming, Target, TargetKind, UserId};
use crate::envelope::HEADER_LEN;
use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use bytes::Bytes;
use spider_client::content::{Body, MAX_TEXT_LEN};
use spider_client::engine::{ClientError, Engine, Event};
use spider_client::profile::{Account, Profile, os_rng};
use spider_client::store::MemoryStore;
use spider_client::transport::Link;
use spider_protocol::ids::MessageId;
use spider_protocol::{ClientFrame, ServerFrame};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Characters of the base64 stamp at the start of a text.
const STAMP_CHARS: usize = HEADER_LEN.div_ceil(3) * 4;

/// Messages a sender may queue for its engine before `send` waits.
const SEND_QUEUE: usize = 64;

/// The largest `--payload-size` with `--e2e`: the text must fit the content limit.
pub const MAX_E2E_PAYLOAD: usize = MAX_TEXT_LEN - (STAMP_CHARS - HEADER_LEN);

/// The text that carries `payload`: its stamp in base64, then the rest as letters.
pub fn text_of(payload: &[u8]) -> String {
    let (stamp, rest) = payload.split_at(payload.len().min(HEADER_LEN));
    let mut text = base64::engine::general_purpose::STANDARD.encode(stamp);
    text.extend(rest.iter().map(|b| char::from(b'a' + b % 26)));
    text
}

/// The stamp bytes at the start of a text made by [`text_of`] (`None` for any other text).
pub fn stamp_of(text: &str) -> Option<Bytes> {
    let head = text.get(..STAMP_CHARS)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(head)
        .ok()?;
    (bytes.len() == HEADER_LEN).then(|| Bytes::from(bytes))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A Spider relay driven through the SDK's engine.
#[derive(Debug, Clone)]
pub struct SpiderE2eTarget {
    dialer: Dialer,
    relay_name: String,
    run: u64,
}

impl SpiderE2eTarget {
    /// The relay at `addr`, reached as `kind`, trusting only the CA in `ca_file`, whose certificate
    /// and relay name are `relay_name`. `run` makes usernames unique.
    pub fn new(
        kind: TargetKind,
        addr: SocketAddr,
        ca_file: &Path,
        relay_name: &str,
        run: u64,
    ) -> anyhow::Result<Self> {
        let ca_pem = std::fs::read(ca_file)
            .with_context(|| format!("reading the relay CA {}", ca_file.display()))?;
        Ok(Self {
            dialer: Dialer::new(
                addr,
                relay_name,
                &ca_pem,
                super::spider::transport_of(kind)?,
            )?,
            relay_name: relay_name.to_owned(),
            run,
        })
    }
}

/// A message for the engine.
#[derive(Debug)]
struct Outgoing {
    to: UserId,
    seq: u64,
    text: String,
}

/// Send half: a channel to the engine's task.
#[derive(Debug)]
pub struct E2eSender {
    tx: mpsc::Sender<Outgoing>,
}

/// Receive half: what the engine's task forwards.
#[derive(Debug)]
pub struct E2eReceiver {
    rx: mpsc::UnboundedReceiver<anyhow::Result<Incoming>>,
}

type E2eEngine = Engine<MemoryStore>;

/// Writes every frame the engine has queued.
async fn flush(engine: &mut E2eEngine, link: &mut Link) -> anyhow::Result<()> {
    while let Some(f) = engine.poll_transmit() {
        link.send(&f).await.context("sending")?;
    }
    Ok(())
}

impl Target for SpiderE2eTarget {
    type Sender = E2eSender;
    type Receiver = E2eReceiver;

    async fn connect(
        &self,
        user: UserId,
        source: IpAddr,
    ) -> anyhow::Result<(E2eSender, E2eReceiver)> {
        let profile = Profile::in_memory(
            Account {
                relay_name: self.relay_name.clone(),
                username: username(self.run, user)?,
                user: None,
                device: None,
            },
            os_rng(),
        )
        .map_err(|e| anyhow!("profile: {e}"))?;
        let mut engine = Engine::new(profile, os_rng());
        let (mut link, exporter) = self.dialer.connect(source).await.context("connecting")?;
        engine.connect(exporter, now_ms());
        // Hello, Welcome, Register (with the engine's prekeys), AuthOk.
        loop {
            flush(&mut engine, &mut link).await?;
            while let Some(event) = engine.poll_event() {
                match event {
                    Event::Connected { .. } => {
                        flush(&mut engine, &mut link).await?;
                        // Odd users wait for their peer's first message (see the module docs).
                        return Ok(spawn(engine, link, self.run, user % 2 == 1));
                    }
                    Event::Error(e) => bail!("registration: {e}"),
                    _ => {}
                }
            }
            if engine.wants_close() {
                bail!("registration: the engine gave up on the connection");
            }
            let frame = link.recv().await.context("waiting for the relay")?;
            if let ServerFrame::Error(e) = &frame
                && e.code.is_fatal()
            {
                bail!("registration: {}", describe(e));
            }
            engine.handle_frame(frame, now_ms());
        }
    }
}

/// Starts the reader, writer and engine tasks of a registered client.
fn spawn(engine: E2eEngine, link: Link, run: u64, hold_first: bool) -> (E2eSender, E2eReceiver) {
    let (tx, cmds) = mpsc::channel(SEND_QUEUE);
    let (out, rx) = mpsc::unbounded_channel();
    let (frames_tx, frames) = mpsc::unbounded_channel();
    let (wire, wire_rx) = mpsc::unbounded_channel();
    let (reader, writer) = split(link, frames_tx, wire_rx);
    tokio::spawn(async move {
        drive(engine, run, hold_first, cmds, frames, wire, out).await;
        reader.abort();
        writer.abort();
    });
    (E2eSender { tx }, E2eReceiver { rx })
}

/// The link's reader and writer tasks: frames in over `frames`, frames out from `wire`.
fn split(
    link: Link,
    frames: mpsc::UnboundedSender<anyhow::Result<ServerFrame>>,
    mut wire: mpsc::UnboundedReceiver<ClientFrame>,
) -> (JoinHandle<()>, JoinHandle<()>) {
    match link {
        Link::Quic {
            connection,
            endpoint,
            mut send,
            mut recv,
            mut decoder,
        } => {
            let reader = tokio::spawn(async move {
                // Kept alive as long as the reader: the connection and its socket.
                let _keep = (connection, endpoint);
                let mut buf = vec![0u8; 16 * 1024];
                // One chunk per turn, until the stream ends or fails.
                loop {
                    loop {
                        match decoder.next_frame() {
                            Ok(Some(f)) => {
                                if frames.send(Ok(f)).is_err() {
                                    return;
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                let _ = frames.send(Err(anyhow!("decode: {e}")));
                                return;
                            }
                        }
                    }
                    match recv.read(&mut buf).await {
                        Ok(Some(n)) => decoder.push(buf.get(..n).unwrap_or_default()),
                        Ok(None) => return,
                        Err(e) => {
                            let _ = frames.send(Err(anyhow!("quic: {e}")));
                            return;
                        }
                    }
                }
            });
            let writer = tokio::spawn(async move {
                // One frame per turn, until the engine's task is gone or a write fails.
                while let Some(f) = wire.recv().await {
                    let mut buf = Vec::new();
                    if spider_protocol::codec::encode_stream(&f, &mut buf).is_err()
                        || send.write_all(&buf).await.is_err()
                    {
                        return;
                    }
                }
            });
            (reader, writer)
        }
        Link::WebSocket(ws) => {
            use futures_util::{SinkExt as _, StreamExt as _};
            use tokio_tungstenite::tungstenite::Message;
            let (mut sink, mut stream) = (*ws).split();
            let reader = tokio::spawn(async move {
                // One message per turn, until the stream ends or fails.
                while let Some(msg) = stream.next().await {
                    let frame = match msg {
                        Ok(Message::Binary(body)) => {
                            spider_protocol::codec::decode_body::<ServerFrame>(&body)
                                .map_err(|e| anyhow!("decode: {e}"))
                        }
                        Ok(Message::Close(_)) => return,
                        Ok(_) => continue,
                        Err(e) => Err(anyhow!("websocket: {e}")),
                    };
                    let failed = frame.is_err();
                    if frames.send(frame).is_err() || failed {
                        return;
                    }
                }
            });
            let writer = tokio::spawn(async move {
                // One frame per turn, until the engine's task is gone or a write fails.
                while let Some(f) = wire.recv().await {
                    let Ok(body) = spider_protocol::codec::encode_body(&f) else {
                        return;
                    };
                    if sink.send(Message::Binary(body.into())).await.is_err() {
                        return;
                    }
                }
            });
            (reader, writer)
        }
    }
}

/// The engine's task: frames, commands and timers in turn; after each, the engine's frames go to
/// the writer and its events to the receive half. Ends when the link ends or the receive half is
/// dropped.
#[allow(clippy::too_many_arguments)]
async fn drive(
    mut engine: E2eEngine,
    run: u64,
    hold_first: bool,
    mut cmds: mpsc::Receiver<Outgoing>,
    mut frames: mpsc::UnboundedReceiver<anyhow::Result<ServerFrame>>,
    wire: mpsc::UnboundedSender<ClientFrame>,
    out: mpsc::UnboundedSender<anyhow::Result<Incoming>>,
) {
    // Which benchmark envelope each of this client's messages is.
    let mut seqs: HashMap<MessageId, u64> = HashMap::new();
    let mut sending = true;
    // Messages held until the first one from the peer arrived (odd users only).
    let mut held: Option<Vec<Outgoing>> = hold_first.then(Vec::new);
    // One input per turn; ends when the link or the run ends for this client.
    loop {
        // Frames out and events up, until neither is left (handling an event can queue frames).
        loop {
            let mut idle = true;
            while let Some(f) = engine.poll_transmit() {
                idle = false;
                if wire.send(f).is_err() {
                    let _ = out.send(Err(anyhow!("the link's writer stopped")));
                    return;
                }
            }
            while let Some(event) = engine.poll_event() {
                idle = false;
                if matches!(event, Event::MessageReceived { .. })
                    && let Some(waiting) = held.take()
                {
                    for o in waiting {
                        submit(&mut engine, run, o, &mut seqs, &out);
                    }
                }
                if let Some(incoming) = translate(event, &mut seqs) {
                    let _ = out.send(incoming);
                }
            }
            if idle {
                break;
            }
        }
        let wake = engine
            .poll_timeout()
            .map_or(Duration::from_secs(3600), |t| {
                Duration::from_millis(t.saturating_sub(now_ms()))
            });
        tokio::select! {
            frame = frames.recv() => match frame {
                Some(Ok(f)) => engine.handle_frame(f, now_ms()),
                Some(Err(e)) => {
                    let _ = out.send(Err(e));
                    return;
                }
                None => return,
            },
            cmd = cmds.recv(), if sending => match (cmd, held.as_mut()) {
                (Some(o), Some(waiting)) => waiting.push(o),
                (Some(o), None) => submit(&mut engine, run, o, &mut seqs, &out),
                (None, _) => sending = false,
            },
            () = tokio::time::sleep(wake) => engine.handle_timeout(now_ms()),
            () = out.closed() => return,
        }
    }
}

/// Hands one message to the engine (its outbox sends it when the messages before it are stored).
fn submit(
    engine: &mut E2eEngine,
    run: u64,
    o: Outgoing,
    seqs: &mut HashMap<MessageId, u64>,
    out: &mpsc::UnboundedSender<anyhow::Result<Incoming>>,
) {
    let sent = username(run, o.to).and_then(|name| {
        engine
            .send_text(name, &o.text, now_ms())
            .map_err(|e| anyhow!("{e}"))
    });
    match sent {
        Ok(id) => {
            seqs.insert(id, o.seq);
        }
        Err(e) => {
            let _ = out.send(Ok(Incoming::Refused {
                seq: o.seq,
                why: format!("{e:#}"),
            }));
        }
    }
}

/// What an engine event means to the benchmark.
fn translate(event: Event, seqs: &mut HashMap<MessageId, u64>) -> Option<anyhow::Result<Incoming>> {
    match event {
        Event::Sent { id } => seqs.remove(&id).map(|seq| Ok(Incoming::Acked(seq))),
        Event::MessageReceived { content, .. } => match content.body {
            Body::Text { body } => Some(
                stamp_of(&body)
                    .map(Incoming::Delivered)
                    .ok_or_else(|| anyhow!("a text without a benchmark stamp")),
            ),
            _ => None,
        },
        Event::Error(ClientError::Relay {
            message: Some(id),
            code,
            text,
        }) => match seqs.remove(&id) {
            Some(seq) => Some(Ok(Incoming::Refused {
                seq,
                why: format!("relay error {code:?}: {text}"),
            })),
            None => Some(Ok(Incoming::Error(format!("relay error {code:?}: {text}")))),
        },
        Event::Error(e) => Some(Ok(Incoming::Error(e.to_string()))),
        Event::Drain { .. } => Some(Err(anyhow!("the relay is draining"))),
        _ => None,
    }
}

impl EnvelopeSender for E2eSender {
    async fn send(&mut self, to: UserId, seq: u64, payload: Bytes) -> anyhow::Result<()> {
        self.tx
            .send(Outgoing {
                to,
                seq,
                text: text_of(&payload),
            })
            .await
            .map_err(|_| anyhow!("connection closed"))
    }
}

impl EnvelopeReceiver for E2eReceiver {
    async fn next(&mut self) -> anyhow::Result<Option<Incoming>> {
        self.rx.recv().await.transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{PayloadMaker, Stamp};

    #[test]
    fn the_stamp_survives_the_text() {
        let stamp = Stamp {
            from: 3,
            run: 99,
            seq: 12_345,
            sent_ns: 777,
        };
        for size in [HEADER_LEN, 256, MAX_E2E_PAYLOAD] {
            let payload = PayloadMaker::new(1, 3, size).make(&stamp);
            let text = text_of(&payload);
            assert_eq!(text.len(), size + STAMP_CHARS - HEADER_LEN);
            assert!(text.len() <= MAX_TEXT_LEN);
            assert!(text.is_ascii());
            let back = stamp_of(&text).unwrap();
            assert_eq!(Stamp::read(&back), Some(stamp));
        }
        assert_eq!(stamp_of("hello"), None);
        assert_eq!(stamp_of(&"!".repeat(100)), None);
    }

    #[test]
    fn engine_events_become_acks_deliveries_and_refusals() {
        let id = MessageId::from_bytes([1; 16]);
        let mut seqs = HashMap::from([(id, 41)]);
        assert!(matches!(
            translate(Event::Sent { id }, &mut seqs),
            Some(Ok(Incoming::Acked(41)))
        ));
        assert!(
            translate(Event::Sent { id }, &mut seqs).is_none(),
            "acked once"
        );
        seqs.insert(id, 7);
        let refused = translate(
            Event::Error(ClientError::Relay {
                code: spider_protocol::ErrorCode::RATE_LIMITED,
                message: Some(id),
                text: "too many".into(),
            }),
            &mut seqs,
        );
        assert!(
            matches!(&refused, Some(Ok(Incoming::Refused { seq: 7, why })) if why.contains("RATE_LIMITED")),
            "{refused:?}"
        );
        assert!(translate(Event::CaughtUp, &mut seqs).is_none());
        assert!(matches!(
            translate(Event::Error(ClientError::UnknownRoom), &mut seqs),
            Some(Ok(Incoming::Error(_)))
        ));
    }
}
