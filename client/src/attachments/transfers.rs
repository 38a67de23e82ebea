//! The driver's side of attachments: a queue of transfers, each run as its
//! own tokio task while a connection is up.
//!
//! The driver ([`crate::client`]) owns one [`Transfers`] and calls it at four
//! points: [`Transfers::request`] for the application's commands (at any
//! time, connected or not), [`Transfers::start`] while the engine is signed
//! in, [`Transfers::route`] for each frame from a WebSocket, and
//! [`Transfers::finish`] for each [`Work`] it gets from [`Transfers::next`];
//! [`Transfers::interrupted`] when the connection ends.
//!
//! On QUIC a task opens its own stream and needs the driver no more. On
//! WebSocket its frames go through the driver: outgoing ones come back out
//! of [`Transfers::next`] as [`Work::Send`], incoming ones are routed by
//! request id (chunks of downloads by blob id). Transfer requests on a
//! WebSocket take ids from [`TRANSFER_REQ_BASE`] up, apart from the engine's,
//! which count from 1 on each connection.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use spider_crypto::attachment::{AttachmentKey, AttachmentPointer};
use spider_protocol::ids::{BlobId, MessageId, RequestId};
use spider_protocol::{ClientFrame, ServerFrame};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::download::Download;
use super::upload::Upload;
use super::{
    Attachment, AttachmentError, AttachmentEvent, Direction, Failure, FileTarget,
    MAX_CONCURRENT_TRANSFERS, MAX_TRANSFER_ATTEMPTS, OutgoingFile, saved_path,
};
use crate::engine::{Engine, Event};
use crate::store::ProfileStore;
use crate::transport::{BlobStream, Link};

/// First request id of transfers on a WebSocket (half the id space: the
/// engine would need two billion requests on one connection to reach it).
pub(crate) const TRANSFER_REQ_BASE: u32 = 1 << 31;

/// Frames waiting for one WebSocket transfer task: a few chunks, so that a
/// slow disk slows the connection down instead of growing memory.
const INBOX: usize = 16;

/// Longest wait a relay's `RetryAfter` is followed for.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);

/// The application's attachment commands, as the driver gets them.
pub(crate) enum Request {
    /// Upload `file` and send it to `target` as message `id`.
    Send {
        id: MessageId,
        target: FileTarget,
        file: OutgoingFile,
        reply: oneshot::Sender<Result<(), AttachmentError>>,
    },
    /// Fetch message `id`'s attachment into `dir`.
    Download {
        id: MessageId,
        attachment: Attachment,
        dir: PathBuf,
    },
}

#[derive(Clone)]
enum JobKind {
    Upload {
        target: FileTarget,
        file: OutgoingFile,
    },
    Download {
        attachment: Attachment,
        dir: PathBuf,
    },
}

#[derive(Clone)]
struct Job {
    id: MessageId,
    /// Order of arrival, kept when interrupted jobs go back in the queue.
    seq: u64,
    kind: JobKind,
}

impl Job {
    fn direction(&self) -> Direction {
        match self.kind {
            JobKind::Upload { .. } => Direction::Upload,
            JobKind::Download { .. } => Direction::Download,
        }
    }
}

enum Outcome {
    Uploaded {
        pointer: AttachmentPointer,
        size: u64,
    },
    Saved(PathBuf),
    Failed(AttachmentError),
}

/// A transfer task's result, for [`Transfers::finish`].
pub(crate) struct Done {
    id: MessageId,
    generation: u64,
    outcome: Outcome,
}

/// What the driver should do next for the transfers.
pub(crate) enum Work {
    /// Send this frame on the WebSocket.
    Send(Box<ClientFrame>),
    /// A transfer ended: hand it to [`Transfers::finish`].
    Done(Done),
}

struct Active {
    job: Job,
    generation: u64,
    task: JoinHandle<()>,
    /// WebSocket only: where its frames go.
    inbox: Option<mpsc::Sender<ServerFrame>>,
}

/// The transfers of one client: queued, running, and their routing.
pub(crate) struct Transfers {
    events: mpsc::Sender<Event>,
    queue: VecDeque<Job>,
    active: HashMap<MessageId, Active>,
    done_tx: mpsc::Sender<Done>,
    done_rx: mpsc::Receiver<Done>,
    out_tx: mpsc::Sender<Box<ClientFrame>>,
    out_rx: mpsc::Receiver<Box<ClientFrame>>,
    by_req: HashMap<RequestId, MessageId>,
    by_blob: HashMap<BlobId, MessageId>,
    next_req: u32,
    next_seq: u64,
    generation: u64,
}

impl Drop for Transfers {
    fn drop(&mut self) {
        // A dropped JoinHandle would let the task run on.
        for a in self.active.values() {
            a.task.abort();
        }
    }
}

impl Transfers {
    /// No transfers; progress events go to `events`.
    pub(crate) fn new(events: mpsc::Sender<Event>) -> Self {
        let (done_tx, done_rx) = mpsc::channel(2 * MAX_CONCURRENT_TRANSFERS);
        let (out_tx, out_rx) = mpsc::channel(4);
        Self {
            events,
            queue: VecDeque::new(),
            active: HashMap::new(),
            done_tx,
            done_rx,
            out_tx,
            out_rx,
            by_req: HashMap::new(),
            by_blob: HashMap::new(),
            next_req: TRANSFER_REQ_BASE,
            next_seq: 0,
            generation: 0,
        }
    }

    fn has(&self, id: MessageId) -> bool {
        self.active.contains_key(&id) || self.queue.iter().any(|j| j.id == id)
    }

    fn push(&mut self, id: MessageId, kind: JobKind) {
        self.next_seq += 1;
        self.queue.push_back(Job {
            id,
            seq: self.next_seq,
            kind,
        });
    }

    /// An application command. Answers at once; the work waits for a
    /// connection.
    pub(crate) fn request<S: ProfileStore>(&mut self, engine: &mut Engine<S>, r: Request) {
        match r {
            Request::Send {
                id,
                target,
                file,
                reply,
            } => {
                if let FileTarget::Room(room) = target
                    && engine
                        .profile()
                        .room(&room)
                        .ok()
                        .flatten()
                        .is_none_or(|r| !r.joined)
                {
                    let _ = reply.send(Err(AttachmentError::UnknownRoom));
                    return;
                }
                if self.has(id) {
                    let _ = reply.send(Err(AttachmentError::Protocol("message id in use")));
                    return;
                }
                self.push(id, JobKind::Upload { target, file });
                let _ = reply.send(Ok(()));
            }
            Request::Download {
                id,
                attachment,
                dir,
            } => {
                let done = saved_path(&dir, id, &attachment.file_name);
                if done.is_file() {
                    engine.push_event(Event::Attachment(AttachmentEvent::Saved { id, path: done }));
                } else if !self.has(id) {
                    self.push(id, JobKind::Download { attachment, dir });
                }
            }
        }
    }

    /// Starts queued transfers, up to [`MAX_CONCURRENT_TRANSFERS`], on the
    /// signed-in connection `link`.
    pub(crate) fn start(&mut self, link: &Link) {
        while self.active.len() < MAX_CONCURRENT_TRANSFERS {
            let Some(job) = self.queue.pop_front() else {
                return;
            };
            self.generation += 1;
            let generation = self.generation;
            let progress = Progress {
                id: job.id,
                direction: job.direction(),
                events: self.events.clone(),
                last: None,
            };
            let (channel, inbox) = match link.quic_connection() {
                Some(c) => (Channel::Quic(c), None),
                None => {
                    let (tx, rx) = mpsc::channel(INBOX);
                    (
                        Channel::Shared {
                            out: self.out_tx.clone(),
                            inbox: rx,
                        },
                        Some(tx),
                    )
                }
            };
            // Two ids: an upload's start and finish (a download uses one).
            let reqs = (
                RequestId(self.next_req),
                RequestId(self.next_req.wrapping_add(1)),
            );
            self.next_req = self.next_req.wrapping_add(2).max(TRANSFER_REQ_BASE);
            if inbox.is_some() {
                self.by_req.insert(reqs.0, job.id);
                self.by_req.insert(reqs.1, job.id);
                if let JobKind::Download { attachment, .. } = &job.kind
                    && let Ok(blob) = BlobId::try_from(attachment.pointer.blob_id.as_bytes())
                {
                    self.by_blob.insert(blob, job.id);
                }
            }
            let done = self.done_tx.clone();
            let id = job.id;
            let kind = job.kind.clone();
            let task = tokio::spawn(async move {
                let outcome = run(kind, id, channel, reqs, progress).await;
                let _ = done
                    .send(Done {
                        id,
                        generation,
                        outcome,
                    })
                    .await;
            });
            self.active.insert(
                id,
                Active {
                    job,
                    generation,
                    task,
                    inbox,
                },
            );
        }
    }

    /// A frame from a WebSocket: a transfer's goes to its task (`None`),
    /// any other back to the caller for the engine.
    pub(crate) async fn route(&mut self, frame: ServerFrame) -> Option<ServerFrame> {
        let id = match &frame {
            ServerFrame::BlobChunk(c) => self.by_blob.get(&c.blob),
            ServerFrame::BlobUploadReady(r) => self.by_req.get(&r.req),
            ServerFrame::BlobStored(s) => self.by_req.get(&s.req),
            ServerFrame::BlobEnd(e) => self.by_req.get(&e.req),
            ServerFrame::Error(e) => match e.req {
                Some(r) if r.0 >= TRANSFER_REQ_BASE => self.by_req.get(&r),
                _ => return Some(frame),
            },
            _ => return Some(frame),
        };
        // Frames of a transfer that is over (or was never ours) are dropped:
        // the engine has no use for them.
        let inbox = id
            .and_then(|id| self.active.get(id))
            .and_then(|a| a.inbox.clone());
        if let Some(inbox) = inbox {
            let _ = inbox.send(frame).await;
        }
        None
    }

    /// The next thing to do: a frame to send (WebSocket), or a finished
    /// transfer. Cancel-safe.
    pub(crate) async fn next(&mut self) -> Work {
        tokio::select! {
            Some(f) = self.out_rx.recv() => Work::Send(f),
            Some(d) = self.done_rx.recv() => Work::Done(d),
            // Both senders live in `self`: never reached.
            else => std::future::pending().await,
        }
    }

    /// Records a finished transfer: an uploaded file's message goes into the
    /// outbox; a saved or failed transfer becomes an event.
    pub(crate) fn finish<S: ProfileStore>(&mut self, engine: &mut Engine<S>, done: Done, now: u64) {
        let Some(active) = self.active.get(&done.id) else {
            return;
        };
        if active.generation != done.generation {
            return;
        }
        let Some(active) = self.active.remove(&done.id) else {
            return;
        };
        self.by_req.retain(|_, id| *id != done.id);
        self.by_blob.retain(|_, id| *id != done.id);
        let id = done.id;
        let direction = active.job.direction();
        let event = match (done.outcome, active.job.kind) {
            (Outcome::Uploaded { pointer, size }, JobKind::Upload { target, file }) => {
                let body = Attachment {
                    pointer,
                    file_name: file.name,
                    media_type: file.media_type,
                    size,
                };
                match engine.send_attachment(id, target, body, now) {
                    Ok(_) => None,
                    Err(e) => Some(AttachmentEvent::Failed {
                        id,
                        direction,
                        error: AttachmentError::Message(e.to_string()),
                    }),
                }
            }
            (Outcome::Saved(path), _) => Some(AttachmentEvent::Saved { id, path }),
            (Outcome::Failed(error), _) => Some(AttachmentEvent::Failed {
                id,
                direction,
                error,
            }),
            (Outcome::Uploaded { .. }, JobKind::Download { .. }) => None,
        };
        if let Some(e) = event {
            engine.push_event(Event::Attachment(e));
        }
    }

    /// The connection is gone: running transfers stop and go back to the
    /// front of the queue (in their order), to start over on the next one;
    /// any that finished meanwhile are recorded.
    pub(crate) async fn interrupted<S: ProfileStore>(&mut self, engine: &mut Engine<S>, now: u64) {
        for a in self.active.values() {
            a.task.abort();
        }
        for a in self.active.values_mut() {
            let _ = (&mut a.task).await;
        }
        while let Ok(d) = self.done_rx.try_recv() {
            self.finish(engine, d, now);
        }
        while self.out_rx.try_recv().is_ok() {}
        let mut back: Vec<Job> = self.active.drain().map(|(_, a)| a.job).collect();
        back.extend(self.queue.drain(..));
        back.sort_by_key(|j| j.seq);
        self.queue = back.into();
        self.by_req.clear();
        self.by_blob.clear();
        self.next_req = TRANSFER_REQ_BASE;
    }
}

/// Progress events for one transfer: at most one per percent. Like every
/// event they wait for room in the application's bounded channel: an
/// application that stops reading events stops its transfers too.
struct Progress {
    id: MessageId,
    direction: Direction,
    events: mpsc::Sender<Event>,
    last: Option<u64>,
}

impl Progress {
    async fn report(&mut self, (done, total): (u64, u64)) {
        let pct = if total == 0 {
            100
        } else {
            u64::try_from(u128::from(done) * 100 / u128::from(total)).unwrap_or(100)
        };
        if self.last.is_some_and(|l| pct <= l) {
            return;
        }
        self.last = Some(pct);
        let _ = self
            .events
            .send(Event::Attachment(AttachmentEvent::Progress {
                id: self.id,
                direction: self.direction,
                done,
                total,
            }))
            .await;
    }
}

/// How a task reaches the relay.
enum Channel {
    /// A new stream per attempt.
    Quic(quinn::Connection),
    /// Through the driver, on the WebSocket.
    Shared {
        out: mpsc::Sender<Box<ClientFrame>>,
        inbox: mpsc::Receiver<ServerFrame>,
    },
}

/// One attempt's frames.
enum Io<'a> {
    Stream(BlobStream),
    Shared {
        out: &'a mpsc::Sender<Box<ClientFrame>>,
        inbox: &'a mut mpsc::Receiver<ServerFrame>,
    },
}

fn lost(e: impl ToString) -> Failure {
    Failure::Retry(e.to_string())
}

impl Channel {
    async fn open(&mut self) -> Result<Io<'_>, Failure> {
        match self {
            Self::Quic(c) => Ok(Io::Stream(BlobStream::open(c).await.map_err(lost)?)),
            Self::Shared { out, inbox } => {
                // Whatever an earlier attempt left is stale.
                while inbox.try_recv().is_ok() {}
                Ok(Io::Shared { out, inbox })
            }
        }
    }
}

impl Io<'_> {
    async fn send(&mut self, f: ClientFrame) -> Result<(), Failure> {
        match self {
            Self::Stream(s) => s.send(&f).await.map_err(lost),
            Self::Shared { out, .. } => out
                .send(Box::new(f))
                .await
                .map_err(|_| lost("connection gone")),
        }
    }

    async fn recv(&mut self) -> Result<ServerFrame, Failure> {
        match self {
            Self::Stream(s) => s.recv().await.map_err(lost),
            Self::Shared { inbox, .. } => inbox.recv().await.ok_or_else(|| lost("connection gone")),
        }
    }

    fn close(self) {
        if let Self::Stream(s) = self {
            s.close();
        }
    }
}

/// A transfer task: attempts until one succeeds or fails for good.
async fn run(
    kind: JobKind,
    id: MessageId,
    mut channel: Channel,
    reqs: (RequestId, RequestId),
    mut progress: Progress,
) -> Outcome {
    let mut attempt = 0;
    loop {
        attempt += 1;
        // Each attempt starts from the first byte; so does its progress.
        progress.last = None;
        let r = match &kind {
            JobKind::Upload { file, .. } => upload(file, &mut channel, reqs, &mut progress)
                .await
                .map(|(pointer, size)| Outcome::Uploaded { pointer, size }),
            JobKind::Download { attachment, dir } => {
                download(id, attachment, dir, &mut channel, reqs.0, &mut progress)
                    .await
                    .map(Outcome::Saved)
            }
        };
        let wait = match r {
            Ok(o) => return o,
            Err(Failure::Fatal(e)) => return Outcome::Failed(e),
            Err(Failure::Retry(why)) if attempt >= MAX_TRANSFER_ATTEMPTS => {
                return Outcome::Failed(AttachmentError::Transport(why));
            }
            Err(Failure::RetryAfter(_)) if attempt >= MAX_TRANSFER_ATTEMPTS => {
                return Outcome::Failed(AttachmentError::Transport("rate limited".into()));
            }
            Err(Failure::Retry(_)) => Duration::from_millis(200 * u64::from(attempt)),
            Err(Failure::RetryAfter(ms)) => Duration::from_millis(ms).min(MAX_RETRY_WAIT),
        };
        tokio::time::sleep(wait).await;
    }
}

async fn upload(
    file: &OutgoingFile,
    channel: &mut Channel,
    (start, finish): (RequestId, RequestId),
    progress: &mut Progress,
) -> Result<(AttachmentPointer, u64), Failure> {
    let not_readable = |e: std::io::Error| AttachmentError::File(e.kind().to_string());
    let f = std::fs::File::open(&file.path).map_err(not_readable)?;
    let meta = f.metadata().map_err(not_readable)?;
    if !meta.is_file() {
        return Err(AttachmentError::File("not a regular file".into()).into());
    }
    // A fresh key for each attempt: a retry may read other bytes.
    let key = AttachmentKey::random(&mut *crate::profile::os_rng());
    let mut up = Upload::new(f, meta.len(), key);
    let mut io = channel.open().await?;
    let r = async {
        io.send(up.start(start)).await?;
        progress.report((0, up.size())).await;
        while !up.ready() {
            if up.handle(io.recv().await?)?.is_some() {
                return Err(AttachmentError::Protocol("stored before any chunk").into());
            }
        }
        while let Some(f) = up.next_frame(finish)? {
            if let Err(e) = io.send(f).await {
                // On QUIC the relay may have refused the upload and
                // finished the stream: its error says why.
                return match io.recv().await {
                    Ok(ServerFrame::Error(err)) => Err(super::refusal(&err, Direction::Upload)),
                    _ => Err(e),
                };
            }
            progress.report(up.progress()).await;
        }
        loop {
            if let Some(pointer) = up.handle(io.recv().await?)? {
                return Ok((pointer, up.size()));
            }
        }
    }
    .await;
    io.close();
    r
}

async fn download(
    id: MessageId,
    attachment: &Attachment,
    dir: &std::path::Path,
    channel: &mut Channel,
    req: RequestId,
    progress: &mut Progress,
) -> Result<PathBuf, Failure> {
    let mut d = Download::create(id, attachment, dir)?;
    let mut io = channel.open().await?;
    let r = async {
        io.send(d.request(req)).await?;
        progress.report(d.progress()).await;
        loop {
            let f = io.recv().await?;
            if let Some(path) = d.handle(f)? {
                progress.report(d.progress()).await;
                return Ok(path);
            }
            progress.report(d.progress()).await;
        }
    }
    .await;
    io.close();
    r
}
