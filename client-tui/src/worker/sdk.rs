//! The worker on the real SDK: a task that owns the `spider-client`
//! [`spider_client::client::Client`], answers the app's [`Request`]s and turns SDK events into
//! [`WorkerEvent`]s.
//!
//! Status: 1:1 texts (sending, receiving, Sent/Delivered/Read), `/msg` by
//! name (an SDK lookup), typing notices, connection state, identity changes
//! and first-run registration; rooms (create, invite, links, join, decline,
//! leave, kick, members), safety numbers and verification, display names,
//! and contacts' presence (`sdk/social.rs`). Files: `/file PATH` sends
//! through the SDK with upload progress; a file that arrives while the app
//! runs is downloaded into `PROFILE/files` with download progress, and an
//! image is previewed from the saved file (files in the history shown at
//! start are previewed when saved before, not fetched). `/search` looks
//! through the texts of this profile's history and of what was sent and
//! received since, in memory (the history itself stays encrypted at rest).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use spider_client::attachments::{
    self, Attachment as SdkAttachment, AttachmentError, AttachmentEvent, Direction, files_dir,
};
use spider_client::content::{Body, ReceiptKind};
use spider_client::engine::{ClientError, Event};
use spider_client::keystore::{KdfParams, Passphrase};
use spider_client::profile::{Account as SdkAccount, Profile, os_rng};
use spider_client::store::SledStore;
use spider_protocol::error::ErrorCode;
use spider_protocol::ids::{MessageId, RoomId, Timestamp, UserId};
use spider_protocol::name::Username;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::fake::wall_clock;
use super::{
    Account, Attachment, ChatMessage, ConnectionState, ConversationId, Delivery, MessageBody,
    Request, SearchHit, Transport, TransportChoice, WorkerError, WorkerEvent,
};
use crate::cli::{self, CliConfig, Session};
use crate::preview::MAX_PREVIEW_BYTES;

mod social;

use social::{AfterLookup, SocialState, pumped};

/// What the adapter starts from.
pub(crate) struct SdkWorker {
    /// The profile directory.
    pub(crate) dir: PathBuf,
    /// An open profile, if one exists (opened before the terminal app took
    /// the terminal, so that a passphrase prompt works).
    pub(crate) profile: Option<Profile<SledStore>>,
    /// The CA for a first-run registration (`--ca`).
    pub(crate) ca: Option<PathBuf>,
    /// `--transport`.
    pub(crate) transport: TransportChoice,
}

struct Running {
    session: Session,
    /// Texts to search: (conversation, message, text), oldest first; built
    /// from the decrypted history at sign-in and kept in memory only.
    texts: Vec<(ConversationId, MessageId, String)>,
    me: Username,
    names: HashMap<UserId, Username>,
    sent: HashMap<MessageId, ConversationId>,
    /// Messages from accounts whose name is being looked up.
    held: Vec<(UserId, ConversationId, ChatMessage)>,
    /// Requests waiting for the relay's look-up of a name.
    opening: Vec<(Username, AfterLookup)>,
    /// SDK events that arrived while a request waited for the SDK; handled
    /// next (reading them meanwhile keeps the SDK's event channel from
    /// filling up and stalling the very answer we wait for).
    backlog: VecDeque<Event>,
    /// Rooms, profiles, presence, verification.
    social: SocialState,
    /// Where downloads go: `PROFILE/files`.
    files: PathBuf,
    /// Files moving either way: their conversation, name and media type.
    transfers: HashMap<MessageId, (ConversationId, String, String)>,
    /// Received files to fetch once the current event is handled.
    fetch: Vec<(MessageId, SdkAttachment)>,
    /// Who sent each received file still moving.
    senders: HashMap<MessageId, UserId>,
}

/// The encoded bytes of an image file for a preview: PNG or JPEG by media
/// type and at most [`MAX_PREVIEW_BYTES`]; `None` otherwise or unreadable.
fn preview_bytes(path: &Path, media_type: &str) -> Option<Vec<u8>> {
    if !matches!(media_type, "image/png" | "image/jpeg") {
        return None;
    }
    let len = std::fs::metadata(path).ok()?.len();
    if usize::try_from(len).ok()? > MAX_PREVIEW_BYTES {
        return None;
    }
    std::fs::read(path).ok()
}

fn random_id() -> MessageId {
    let mut b = [0u8; 16];
    os_rng().fill_bytes(&mut b);
    MessageId::from_bytes(b)
}

/// The text of a message event, for `/search`.
fn searchable(e: &WorkerEvent) -> Option<(ConversationId, MessageId, String)> {
    match e {
        WorkerEvent::MessageReceived {
            conversation,
            message:
                ChatMessage {
                    id,
                    body: MessageBody::Text(t),
                    ..
                },
        } => Some((*conversation, *id, t.clone())),
        _ => None,
    }
}

/// `/search`: texts that contain `query` (case-insensitive), newest first,
/// each with its first matching line as the excerpt.
fn search(texts: &[(ConversationId, MessageId, String)], query: &str) -> Vec<SearchHit> {
    let q = query.to_lowercase();
    if q.is_empty() {
        return Vec::new();
    }
    texts
        .iter()
        .rev()
        .filter(|(_, _, t)| t.to_lowercase().contains(&q))
        .map(|(c, m, t)| SearchHit {
            conversation: *c,
            message: *m,
            excerpt: t
                .lines()
                .find(|l| l.to_lowercase().contains(&q))
                .unwrap_or_default()
                .to_owned(),
        })
        .collect()
}

fn unsupported(what: &str) -> WorkerError {
    WorkerError::Other(format!(
        "{what} is not supported by this client and relay yet"
    ))
}

fn transport_of(t: TransportChoice) -> Transport {
    match t {
        TransportChoice::Ws => Transport::WebSocket,
        TransportChoice::Quic | TransportChoice::Auto => Transport::Quic,
    }
}

impl SdkWorker {
    /// Starts the task.
    pub(crate) fn spawn(
        self,
        mut requests: mpsc::UnboundedReceiver<Request>,
        events: mpsc::UnboundedSender<WorkerEvent>,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            let Self {
                dir,
                profile,
                ca,
                transport,
            } = self;
            let t = transport_of(transport);
            let mut running: Option<Running> = None;
            match profile {
                Some(p) => match Self::sign_in(p, &dir, transport, &events).await {
                    Ok(r) => running = Some(r),
                    Err(e) => {
                        let _ = events.send(WorkerEvent::Ready { account: None });
                        let _ = events.send(WorkerEvent::Connection(ConnectionState::Offline));
                        eprintln!("{e:#}");
                    }
                },
                None => {
                    let _ = events.send(WorkerEvent::Ready { account: None });
                }
            }
            loop {
                if let Some(r) = running.as_mut() {
                    while let Some(ev) = r.backlog.pop_front() {
                        for out in r.event(ev, t).await {
                            if events.send(out).is_err() {
                                return;
                            }
                        }
                    }
                }
                let event = async {
                    match running.as_mut() {
                        Some(r) => r.session.events.recv().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    req = requests.recv() => {
                        let Some(req) = req else { break };
                        match (req, running.as_mut()) {
                            (Request::Register { relay, name, reply }, None) => {
                                match Self::register(&dir, ca.as_deref(), relay, &name, transport, &events).await {
                                    Ok((r, account)) => {
                                        running = Some(r);
                                        let _ = reply.send(Ok(account));
                                    }
                                    Err(e) => { let _ = reply.send(Err(WorkerError::Other(format!("{e:#}")))); }
                                }
                            }
                            (Request::SignIn { reply, .. }, _) => {
                                let _ = reply.send(Err(WorkerError::Other("sign in with `spider --profile DIR` on an existing profile".into())));
                            }
                            (req, Some(r)) => r.handle(req).await,
                            (req, None) => reject(req, WorkerError::Offline),
                        }
                    }
                    ev = event => {
                        let Some(ev) = ev else { break };
                        if let Some(r) = running.as_mut() {
                            for out in r.event(ev, t).await {
                                r.texts.extend(searchable(&out));
                                if events.send(out).is_err() { return; }
                            }
                            r.start_downloads().await;
                        }
                    }
                }
            }
            if let Some(r) = running {
                r.session.client.shutdown().await;
            }
        })
    }

    async fn sign_in(
        profile: Profile<SledStore>,
        dir: &Path,
        transport: TransportChoice,
        events: &mpsc::UnboundedSender<WorkerEvent>,
    ) -> anyhow::Result<Running> {
        let files = files_dir(dir);
        let cfg: CliConfig = profile
            .get(b"cli/config")?
            .ok_or_else(|| anyhow::anyhow!("the profile has no relay address"))?;
        let account = profile.account()?;
        let mut names = HashMap::new();
        for c in profile.contacts()? {
            names.insert(c.user, c.username.clone());
        }
        let (social, roster) = SocialState::load(&profile, account.user, &names)?;
        let me_id = account.user;
        let mut history = Vec::new();
        for h in profile.history()? {
            let Ok(content) = h.decode() else { continue };
            let body = match content.body {
                Body::Text { body } => MessageBody::Text(body),
                // A file shown from history: previewed if it was saved.
                Body::Attachment {
                    file_name,
                    media_type,
                    size,
                    ..
                } => {
                    let saved = attachments::saved_path(&files, h.id, &file_name);
                    MessageBody::File(Attachment {
                        image: preview_bytes(&saved, &media_type),
                        name: file_name,
                        size,
                        transferred: None,
                    })
                }
                _ => continue,
            };
            let mine = Some(h.from) == me_id;
            let conversation = match (h.room, h.peer) {
                (Some(room), _) => ConversationId::Room(room),
                (None, Some(peer)) => ConversationId::Direct(peer),
                (None, None) => continue,
            };
            let from = if mine {
                account.username.clone()
            } else if let Some(n) = names.get(&h.from) {
                n.clone()
            } else {
                continue;
            };
            history.push(WorkerEvent::MessageReceived {
                conversation,
                message: ChatMessage {
                    id: h.id,
                    from,
                    mine,
                    at: Timestamp(h.at_ms),
                    body,
                    delivery: if mine { Delivery::Sent } else { Delivery::Read },
                },
            });
        }
        let _ = events.send(WorkerEvent::Connection(ConnectionState::Connecting {
            transport: transport_of(transport),
        }));
        let session = cli::start(profile, &cfg, transport).await?;
        let _ = events.send(WorkerEvent::Ready {
            account: Some(Account {
                id: session.me,
                name: account.username.clone(),
                relay: cfg.server.clone(),
            }),
        });
        let _ = events.send(WorkerEvent::Roster {
            contacts: roster.contacts,
            rooms: roster.rooms,
            invitations: roster.invitations,
        });
        // Presence and display names arrive as events.
        let _ = session.client.list_contacts().await;
        let _ = session.client.refresh_profiles().await;
        for h in &history {
            let _ = events.send(h.clone());
        }
        let _ = events.send(WorkerEvent::Connection(ConnectionState::Connected {
            transport: transport_of(transport),
        }));
        let texts = history.iter().filter_map(searchable).collect();
        Ok(Running {
            session,
            texts,
            me: account.username,
            names,
            sent: HashMap::new(),
            held: Vec::new(),
            opening: Vec::new(),
            files,
            transfers: HashMap::new(),
            fetch: Vec::new(),
            senders: HashMap::new(),
            backlog: VecDeque::new(),
            social,
        })
    }

    async fn register(
        dir: &std::path::Path,
        ca: Option<&std::path::Path>,
        relay: String,
        name: &Username,
        transport: TransportChoice,
        events: &mpsc::UnboundedSender<WorkerEvent>,
    ) -> anyhow::Result<(Running, Account)> {
        let ca = ca.ok_or_else(|| {
            anyhow::anyhow!("registering needs the relay's CA: start spider with --ca FILE")
        })?;
        let ca = std::fs::canonicalize(ca)?;
        let pass = match std::env::var("SPIDER_PASSPHRASE") {
            Ok(p) => Passphrase::new(p),
            Err(_) => Passphrase::None,
        };
        let mut profile = Profile::create_dir(
            dir,
            &pass,
            KdfParams::RECOMMENDED,
            SdkAccount {
                relay_name: cli::default_relay_name(&relay),
                username: name.clone(),
                user: None,
                device: None,
            },
            os_rng(),
        )?;
        profile.put(b"cli/config", &CliConfig { server: relay, ca })?;
        profile.flush()?;
        let r = Self::sign_in(profile, dir, transport, events).await?;
        let account = Account {
            id: r.session.me,
            name: r.me.clone(),
            relay: String::new(),
        };
        Ok((r, account))
    }
}

fn reject(req: Request, e: WorkerError) {
    match req {
        Request::Register { reply, .. } | Request::SignIn { reply, .. } => {
            let _ = reply.send(Err(e));
        }
        Request::SendText { reply, .. } | Request::SendFile { reply, .. } => {
            let _ = reply.send(Err(e));
        }
        Request::OpenDirect { reply, .. } | Request::Verify { reply, .. } => {
            let _ = reply.send(Err(e));
        }
        Request::CreateRoom { reply, .. } | Request::Join { reply, .. } => {
            let _ = reply.send(Err(e));
        }
        Request::Invite { reply, .. }
        | Request::Decline { reply, .. }
        | Request::Leave { reply, .. }
        | Request::Kick { reply, .. }
        | Request::SetProfile { reply, .. } => {
            let _ = reply.send(Err(e));
        }
        Request::CreateLink { reply, .. } => {
            let _ = reply.send(Err(e));
        }
        Request::Members { reply, .. } => {
            let _ = reply.send(Err(e));
        }
        Request::SafetyNumber { reply, .. } => {
            let _ = reply.send(Err(e));
        }
        Request::Search { reply, .. } => {
            let _ = reply.send(Err(e));
        }
        Request::MarkRead { .. } | Request::Typing { .. } => {}
    }
}

impl Running {
    async fn handle(&mut self, req: Request) {
        let client = &self.session.client;
        let (events, backlog) = (&mut self.session.events, &mut self.backlog);
        match req {
            Request::SendText {
                conversation,
                text,
                reply,
            } => {
                let r = match conversation {
                    ConversationId::Direct(u) => {
                        pumped(events, backlog, client.send_text(u, text.clone())).await
                    }
                    ConversationId::Room(room) => {
                        pumped(events, backlog, client.send_room_text(room, text.clone())).await
                    }
                };
                let _ = reply.send(match r {
                    Ok(id) => {
                        self.sent.insert(id, conversation);
                        self.texts.push((conversation, id, text.clone()));
                        Ok(ChatMessage {
                            id,
                            from: self.me.clone(),
                            mine: true,
                            at: wall_clock(),
                            body: MessageBody::Text(text),
                            delivery: Delivery::Pending,
                        })
                    }
                    Err(e) => Err(WorkerError::Other(e.to_string())),
                });
            }
            Request::OpenDirect { user, reply } => {
                let found = self
                    .names
                    .iter()
                    .find(|(_, n)| **n == user)
                    .map(|(id, n)| self.social.contact(*id, n.clone()));
                match found {
                    Some(c) => {
                        let _ = reply.send(Ok(c));
                    }
                    None => self.look_up(user, AfterLookup::Open(reply)).await,
                }
            }
            Request::MarkRead {
                conversation,
                up_to,
            } => {
                if let ConversationId::Direct(u) = conversation {
                    let receipt = client.send_receipt(u, ReceiptKind::Read, vec![up_to]);
                    let _ = pumped(events, backlog, receipt).await;
                }
            }
            Request::Typing { conversation } => {
                if let ConversationId::Direct(u) = conversation {
                    let _ = pumped(events, backlog, client.send_typing(u, true)).await;
                }
            }
            Request::SendFile {
                conversation,
                path,
                reply,
            } => {
                let _ = reply.send(self.send_file(conversation, path).await);
            }
            Request::Search { query, reply } => {
                let _ = reply.send(Ok(search(&self.texts, &query)));
            }
            other => self.social_request(other).await,
        }
    }

    /// `/file PATH`: the SDK checks the file and queues the upload; the
    /// message shows at once with a progress bar.
    async fn send_file(
        &mut self,
        conversation: ConversationId,
        path: PathBuf,
    ) -> Result<ChatMessage, WorkerError> {
        let client = &self.session.client;
        let file = attachments::OutgoingFile::from_path(path);
        let (name, media_type) = (file.name.clone(), file.media_type.clone());
        let size = std::fs::metadata(&file.path)
            .map_err(|e| WorkerError::File(e.kind().to_string()))?
            .len();
        let image = preview_bytes(&file.path, &media_type);
        let target = match conversation {
            ConversationId::Direct(u) => attachments::FileTarget::Direct(u.into()),
            ConversationId::Room(r) => attachments::FileTarget::Room(r),
        };
        let id = client
            .send_file_to(target, file)
            .await
            .map_err(|e| match e {
                AttachmentError::File(why) => WorkerError::File(why),
                AttachmentError::Stopped => WorkerError::Offline,
                other => WorkerError::Other(other.to_string()),
            })?;
        self.sent.insert(id, conversation);
        self.transfers
            .insert(id, (conversation, name.clone(), media_type));
        Ok(ChatMessage {
            id,
            from: self.me.clone(),
            mine: true,
            at: wall_clock(),
            body: MessageBody::File(Attachment {
                name,
                size,
                transferred: Some(0),
                image,
            }),
            delivery: Delivery::Pending,
        })
    }

    /// Asks the SDK for the files of messages that just arrived.
    async fn start_downloads(&mut self) {
        for (id, a) in std::mem::take(&mut self.fetch) {
            let _ = self
                .session
                .client
                .download(id, a, self.files.clone())
                .await;
        }
    }

    /// A line from the app about a file in `conversation`.
    fn notice(&self, conversation: ConversationId, text: String) -> WorkerEvent {
        WorkerEvent::MessageReceived {
            conversation,
            message: ChatMessage {
                id: random_id(),
                from: self.me.clone(),
                mine: false,
                at: wall_clock(),
                body: MessageBody::Notice(text),
                delivery: Delivery::Read,
            },
        }
    }

    /// An attachment event as the app's events: progress, the saved file
    /// (with its image for a preview), or a failure.
    fn attachment(&mut self, e: AttachmentEvent, out: &mut Vec<WorkerEvent>) {
        match e {
            AttachmentEvent::Progress {
                id, done, total, ..
            } => {
                if let Some((conversation, ..)) = self.transfers.get(&id) {
                    out.push(WorkerEvent::FileProgress {
                        conversation: *conversation,
                        message: id,
                        done,
                        total,
                    });
                }
            }
            AttachmentEvent::Saved { id, path } => {
                let Some((conversation, name, media_type)) = self.transfers.remove(&id) else {
                    return;
                };
                let size = std::fs::metadata(&path).map_or(0, |m| m.len());
                out.push(WorkerEvent::FileProgress {
                    conversation,
                    message: id,
                    done: size,
                    total: size,
                });
                let sender = self.senders.remove(&id);
                let Some(image) = preview_bytes(&path, &media_type) else {
                    return;
                };
                // The message again, now with its image: the app adds the
                // preview to the one it shows.
                let message = ChatMessage {
                    id,
                    from: self.me.clone(),
                    mine: false,
                    at: wall_clock(),
                    body: MessageBody::File(Attachment {
                        name,
                        size,
                        transferred: None,
                        image: Some(image),
                    }),
                    delivery: Delivery::Read,
                };
                match sender {
                    Some(u) if !self.names.contains_key(&u) => {
                        // Its first showing waits for the sender's name: so
                        // does this one, behind it.
                        self.held.push((u, conversation, message));
                    }
                    sender => {
                        let mut message = message;
                        if let Some(n) = sender.and_then(|u| self.names.get(&u)) {
                            message.from = n.clone();
                        }
                        out.push(WorkerEvent::MessageReceived {
                            conversation,
                            message,
                        });
                    }
                }
            }
            AttachmentEvent::Failed {
                id,
                direction,
                error,
            } => {
                let Some((conversation, name, _)) = self.transfers.remove(&id) else {
                    return;
                };
                self.senders.remove(&id);
                if direction == Direction::Upload {
                    out.push(WorkerEvent::DeliveryChanged {
                        conversation,
                        message: id,
                        delivery: Delivery::Failed,
                    });
                    out.push(self.notice(conversation, format!("{name} was not sent: {error}")));
                } else {
                    out.push(self.notice(conversation, format!("{name} was not saved: {error}")));
                }
            }
            _ => {}
        }
    }

    fn conversation(&self, from: UserId, room: Option<RoomId>) -> ConversationId {
        match room {
            Some(r) => ConversationId::Room(r),
            None => ConversationId::Direct(from),
        }
    }

    async fn event(&mut self, ev: Event, t: Transport) -> Vec<WorkerEvent> {
        let mut out = Vec::new();
        match ev {
            Event::Connected { .. } => {
                out.push(WorkerEvent::Connection(ConnectionState::Connected {
                    transport: t,
                }))
            }
            Event::Disconnected => {
                for (_, after) in self.opening.drain(..) {
                    after.fail(WorkerError::Offline);
                }
                self.social.disconnected();
                out.push(WorkerEvent::Connection(ConnectionState::Reconnecting {
                    attempt: 1,
                    retry_in_ms: 0,
                }));
            }
            Event::Error(ClientError::Relay {
                code,
                message: None,
                ..
            }) if code == ErrorCode::UNKNOWN_USER && !self.opening.is_empty() => {
                let (name, after) = self.opening.remove(0);
                after.fail(WorkerError::NoSuchUser(name));
            }
            Event::MessageReceived {
                id,
                from,
                room,
                content,
                sent_at,
            } => {
                if from.user == self.session.me {
                    return out;
                }
                let conversation = self.conversation(from.user, room);
                let body = match content.body {
                    Body::Text { body } => MessageBody::Text(body),
                    body @ Body::Attachment { .. } => {
                        let Some(a) = SdkAttachment::from_body(&body) else {
                            return out;
                        };
                        self.transfers.insert(
                            id,
                            (conversation, a.file_name.clone(), a.media_type.clone()),
                        );
                        self.senders.insert(id, from.user);
                        let file = MessageBody::File(Attachment {
                            name: a.file_name.clone(),
                            size: a.size,
                            transferred: Some(0),
                            image: None,
                        });
                        self.fetch.push((id, a));
                        file
                    }
                    _ => return out,
                };
                let placeholder = self.me.clone();
                let message = ChatMessage {
                    id,
                    from: self.names.get(&from.user).cloned().unwrap_or(placeholder),
                    mine: false,
                    at: sent_at,
                    body,
                    delivery: Delivery::Read,
                };
                if self.names.contains_key(&from.user) {
                    out.push(WorkerEvent::MessageReceived {
                        conversation,
                        message,
                    });
                } else {
                    self.held.push((from.user, conversation, message));
                }
            }
            Event::ContactUpdated { user, username } => {
                let new = !self.names.contains_key(&user);
                self.names.insert(user, username.clone());
                let (answer, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.opening)
                    .into_iter()
                    .partition(|(n, _)| *n == username);
                self.opening = keep;
                for (_, after) in answer {
                    self.after_lookup(after, user, username.clone()).await;
                }
                if new && user != self.session.me {
                    let c = self.social.contact(user, username.clone());
                    out.push(WorkerEvent::ContactChanged(c));
                }
                out.extend(self.announce_invitations().await);
                let (ready, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
                    .into_iter()
                    .partition(|(u, _, _)| *u == user);
                self.held = keep;
                for (_, conversation, mut message) in ready {
                    message.from = username.clone();
                    out.push(WorkerEvent::MessageReceived {
                        conversation,
                        message,
                    });
                }
            }
            Event::Sent { id } => {
                if let Some(c) = self.sent.get(&id) {
                    out.push(WorkerEvent::DeliveryChanged {
                        conversation: *c,
                        message: id,
                        delivery: Delivery::Sent,
                    });
                }
            }
            Event::Receipt { kind, ids, .. } => {
                let delivery = match kind {
                    ReceiptKind::Read => Delivery::Read,
                    _ => Delivery::Delivered,
                };
                for id in ids {
                    if let Some(c) = self.sent.get(&id) {
                        out.push(WorkerEvent::DeliveryChanged {
                            conversation: *c,
                            message: id,
                            delivery,
                        });
                    }
                }
            }
            Event::Typing {
                from,
                started: true,
            } => {
                if let Some(n) = self.names.get(&from) {
                    out.push(WorkerEvent::Typing {
                        conversation: ConversationId::Direct(from),
                        user: n.clone(),
                    });
                }
            }
            Event::Presence { user, presence } => {
                self.social.presence.insert(user, presence);
                out.push(WorkerEvent::Presence { user, presence });
            }
            Event::IdentityChanged { user, .. } => {
                self.identity_changed(user).await;
                out.push(WorkerEvent::IdentityChanged { user });
            }
            Event::Attachment(e) => self.attachment(e, &mut out),
            other => out.extend(self.social_event(other).await),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn search_finds_texts_newest_first_case_insensitively_with_the_matching_line() {
        let bob = ConversationId::Direct(UserId::from_bytes([1; 16]));
        let room = ConversationId::Room(spider_protocol::ids::RoomId::from_bytes([2; 16]));
        let id = |b: u8| MessageId::from_bytes([b; 16]);
        let texts = vec![
            (bob, id(1), "Lunch at noon?".to_owned()),
            (room, id(2), "deploy done\nlunch moved to one".to_owned()),
            (bob, id(3), "see you".to_owned()),
        ];
        let hits = search(&texts, "LUNCH");
        assert_eq!(
            hits.iter().map(|h| h.message).collect::<Vec<_>>(),
            vec![id(2), id(1)]
        );
        assert_eq!(hits[0].conversation, room);
        assert_eq!(hits[0].excerpt, "lunch moved to one");
        assert_eq!(hits[1].excerpt, "Lunch at noon?");
        assert!(search(&texts, "dinner").is_empty());
        assert!(search(&texts, "").is_empty());
    }

    use spider_relay::config::Config;

    use super::*;
    use crate::worker::{Worker, await_reply};

    const PATIENCE: Duration = Duration::from_secs(60);

    async fn next(rx: &mut mpsc::UnboundedReceiver<WorkerEvent>) -> WorkerEvent {
        tokio::time::timeout(PATIENCE, rx.recv())
            .await
            .expect("no worker event")
            .expect("worker stopped")
    }

    /// Two adapters on a relay in this process: first-run registration,
    /// a text one way (Pending, then Sent), received by the other side
    /// with the sender's name, and the answer back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_adapters_register_and_chat_through_a_real_relay() {
        let dir = tempfile::tempdir().unwrap();
        let relay = spider_relay::server::start(Config::for_tests(dir.path().join("relay")))
            .await
            .unwrap();
        let ca = relay.ca_pem.clone().unwrap();
        let server = relay.quic_addr.to_string();

        let mut sides = Vec::new();
        for name in ["alice", "bob"] {
            let (worker, requests) = Worker::channel();
            let (tx, mut rx) = mpsc::unbounded_channel();
            let _task = SdkWorker {
                dir: dir.path().join(name),
                profile: None,
                ca: Some(ca.clone()),
                transport: TransportChoice::Quic,
            }
            .spawn(requests, tx);
            assert_eq!(next(&mut rx).await, WorkerEvent::Ready { account: None });
            let account =
                await_reply(worker.register(server.clone(), Username::parse(name).unwrap()))
                    .await
                    .unwrap();
            assert_eq!(account.name.as_str(), name);
            sides.push((worker, rx, account));
        }
        let (bob_worker, mut bob_rx, bob) = sides.pop().unwrap();
        let (alice_worker, mut alice_rx, alice) = sides.pop().unwrap();

        // Alice looks bob up by name; a name nobody has is refused.
        let c = await_reply(alice_worker.open_direct(bob.name.clone()))
            .await
            .unwrap();
        assert_eq!(c.id, bob.id);
        assert_eq!(
            await_reply(alice_worker.open_direct(Username::parse("nobody").unwrap())).await,
            Err(WorkerError::NoSuchUser(Username::parse("nobody").unwrap()))
        );
        let sent =
            await_reply(alice_worker.send_text(ConversationId::Direct(bob.id), "hi bob".into()))
                .await
                .unwrap();
        assert_eq!(sent.delivery, Delivery::Pending);
        loop {
            if let WorkerEvent::DeliveryChanged {
                message, delivery, ..
            } = next(&mut alice_rx).await
                && message == sent.id
            {
                assert_eq!(delivery, Delivery::Sent);
                break;
            }
        }
        let got = loop {
            if let WorkerEvent::MessageReceived {
                conversation,
                message,
            } = next(&mut bob_rx).await
            {
                assert_eq!(conversation, ConversationId::Direct(alice.id));
                break message;
            }
        };
        assert_eq!(got.id, sent.id);
        assert_eq!(got.from.as_str(), "alice");
        assert_eq!(got.body, MessageBody::Text("hi bob".into()));

        // Bob learned alice's name: he can open the chat and answer.
        let c = await_reply(bob_worker.open_direct(alice.name.clone()))
            .await
            .unwrap();
        assert_eq!(c.id, alice.id);
        await_reply(bob_worker.send_text(ConversationId::Direct(alice.id), "hi alice".into()))
            .await
            .unwrap();
        loop {
            if let WorkerEvent::MessageReceived { message, .. } = next(&mut alice_rx).await {
                assert_eq!(message.body, MessageBody::Text("hi alice".into()));
                assert_eq!(message.from.as_str(), "bob");
                break;
            }
        }
        drop(alice_worker);
        drop(bob_worker);
        relay.shutdown().await.unwrap();
    }

    /// A registered adapter on `relay`, its worker handle and events.
    async fn adapter(
        dir: &std::path::Path,
        ca: &std::path::Path,
        server: &str,
        name: &str,
    ) -> (Worker, mpsc::UnboundedReceiver<WorkerEvent>, Account) {
        let (worker, requests) = Worker::channel();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _task = SdkWorker {
            dir: dir.join(name),
            profile: None,
            ca: Some(ca.to_owned()),
            transport: TransportChoice::Quic,
        }
        .spawn(requests, tx);
        assert_eq!(next(&mut rx).await, WorkerEvent::Ready { account: None });
        let account =
            await_reply(worker.register(server.to_owned(), Username::parse(name).unwrap()))
                .await
                .unwrap();
        (worker, rx, account)
    }

    /// `/file` on a PNG: alice's message shows at once with a progress bar
    /// that fills, then Sent; bob's shows with its own progress, and once
    /// the file is saved in his profile its image (from the saved file)
    /// becomes the preview.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_goes_with_progress_and_an_image_arrives_with_its_preview() {
        let dir = tempfile::tempdir().unwrap();
        let relay = spider_relay::server::start(Config::for_tests(dir.path().join("relay")))
            .await
            .unwrap();
        let ca = relay.ca_pem.clone().unwrap();
        let server = relay.quic_addr.to_string();
        let (alice_worker, mut alice_rx, _alice) = adapter(dir.path(), &ca, &server, "alice").await;
        let (bob_worker, mut bob_rx, bob) = adapter(dir.path(), &ca, &server, "bob").await;
        await_reply(alice_worker.open_direct(bob.name.clone()))
            .await
            .unwrap();

        let png = crate::preview::demo_png(300, 200);
        let path = dir.path().join("cat.png");
        std::fs::write(&path, &png).unwrap();
        let conversation = ConversationId::Direct(bob.id);
        let sent = await_reply(alice_worker.send_file(conversation, path))
            .await
            .unwrap();
        assert_eq!(sent.delivery, Delivery::Pending);
        assert_eq!(
            sent.body,
            MessageBody::File(Attachment {
                name: "cat.png".into(),
                size: png.len() as u64,
                transferred: Some(0),
                image: Some(png.clone()),
            })
        );
        let mut uploaded = None;
        loop {
            match next(&mut alice_rx).await {
                WorkerEvent::FileProgress {
                    message,
                    done,
                    total,
                    ..
                } if message == sent.id => uploaded = Some((done, total)),
                WorkerEvent::DeliveryChanged {
                    message, delivery, ..
                } if message == sent.id => {
                    assert_eq!(delivery, Delivery::Sent);
                    break;
                }
                _ => {}
            }
        }
        let size = png.len() as u64;
        assert_eq!(uploaded, Some((size, size)));

        let got = loop {
            if let WorkerEvent::MessageReceived { message, .. } = next(&mut bob_rx).await
                && message.id == sent.id
            {
                break message;
            }
        };
        assert_eq!(got.from.as_str(), "alice");
        assert!(
            matches!(&got.body, MessageBody::File(a) if a.name == "cat.png" && a.image.is_none())
        );
        let mut downloaded = None;
        let replay = loop {
            match next(&mut bob_rx).await {
                WorkerEvent::FileProgress {
                    message,
                    done,
                    total,
                    ..
                } if message == sent.id => downloaded = Some((done, total)),
                WorkerEvent::MessageReceived { message, .. } if message.id == sent.id => {
                    break message;
                }
                _ => {}
            }
        };
        assert_eq!(downloaded, Some((size, size)));
        let MessageBody::File(a) = replay.body else {
            panic!("not a file")
        };
        assert_eq!(a.image.as_deref(), Some(png.as_slice()));
        let saved = spider_client::attachments::saved_path(
            &files_dir(&dir.path().join("bob")),
            sent.id,
            "cat.png",
        );
        assert_eq!(std::fs::read(saved).unwrap(), png);

        drop(alice_worker);
        drop(bob_worker);
        relay.shutdown().await.unwrap();
    }
}
