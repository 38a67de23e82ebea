//! The non-interactive subcommands: `register`, `send`, `send-file`, `recv`,
//! `room`, `contacts`, `safety`, `verify`, `profile set`.
//!
//! Each opens the profile, starts the SDK's [`Client`] for as long as the
//! command needs the relay, and stops it again. The profile remembers the
//! relay address and CA path (under the encrypted key `cli/config`), so
//! every command after `register` needs only `--profile`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde::{Deserialize, Serialize};
use spider_client::attachments::{Attachment, AttachmentEvent, files_dir};
use spider_client::client::{Backoff, Client, ClientConfig};
use spider_client::content::Body;
use spider_client::engine::{ClientError, Engine, Event};
use spider_client::keystore::{KdfParams, KeystoreError, Passphrase};
use spider_client::profile::{Account, Profile, ProfileError, os_rng};
use spider_client::social::parse_invite_link;
use spider_client::store::SledStore;
use spider_client::transport::{RelayTarget, TransportChoice as SdkTransport};
use spider_protocol::error::ErrorCode;
use spider_protocol::ids::{LinkToken, MessageId, RoomId, UserId};
use spider_protocol::name::{RoomName, Username};
use tokio::sync::mpsc;

use crate::worker::TransportChoice;

mod social;
pub(crate) use social::{contacts, profile_set};

/// Encrypted profile record holding what the CLI needs to reach the relay.
const K_CONFIG: &[u8] = b"cli/config";
/// Ids of messages `recv` has already printed.
const K_PRINTED: &[u8] = b"cli/printed";
/// How many printed ids `recv` remembers.
const MAX_PRINTED: usize = 20_000;

/// Long enough for a relay that is restarting; only there so that a command
/// against a relay that is down ends instead of retrying for ever.
pub(crate) const CONNECT_PATIENCE: Duration = Duration::from_secs(20);
/// How long a command waits for the relay to answer a request.
const REQUEST_PATIENCE: Duration = Duration::from_secs(30);

/// Where the relay is, as stored in the profile.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct CliConfig {
    /// `host:port`.
    pub(crate) server: String,
    /// The relay CA certificate (PEM), absolute path.
    pub(crate) ca: PathBuf,
}

/// The SDK's transport choice for the CLI's `--transport`.
pub(crate) fn sdk_transport(t: TransportChoice) -> SdkTransport {
    match t {
        TransportChoice::Auto => SdkTransport::Auto,
        TransportChoice::Quic => SdkTransport::Quic,
        TransportChoice::Ws => SdkTransport::WebSocket,
    }
}

/// The relay name to expect for `server` (`host:port`): the host, except
/// that a loopback or other IP address means the development relay's
/// default name, `localhost`.
pub(crate) fn default_relay_name(server: &str) -> String {
    let host = match server.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
        None => server,
    };
    if host.parse::<std::net::IpAddr>().is_ok() || host.is_empty() {
        "localhost".to_owned()
    } else {
        host.to_owned()
    }
}

fn copy_passphrase(p: &Passphrase) -> Passphrase {
    match p {
        Passphrase::None => Passphrase::None,
        Passphrase::Secret(s) => Passphrase::new(s.as_str()),
    }
}

/// Reads a line from the terminal without echo.
fn prompt_secret(prompt: &str) -> anyhow::Result<String> {
    use ratatui::crossterm::event::{
        self, Event as TermEvent, KeyCode, KeyEventKind, KeyModifiers,
    };
    use ratatui::crossterm::terminal;
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    terminal::enable_raw_mode()
        .context("reading the passphrase needs a terminal; set SPIDER_PASSPHRASE")?;
    let mut s = String::new();
    let result = loop {
        match event::read() {
            Ok(TermEvent::Key(k)) if k.kind != KeyEventKind::Release => match k.code {
                KeyCode::Enter => break Ok(()),
                KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                    break Err(anyhow!("interrupted"));
                }
                KeyCode::Char(c) => s.push(c),
                KeyCode::Backspace => {
                    s.pop();
                }
                _ => {}
            },
            Ok(_) => {}
            Err(e) => break Err(e.into()),
        }
    };
    let _ = terminal::disable_raw_mode();
    eprintln!();
    result.map(|()| s)
}

/// An open profile and how it was unlocked (to open it again).
pub(crate) struct Opened {
    pub(crate) profile: Profile<SledStore>,
    pub(crate) passphrase: Passphrase,
}

/// Opens the profile in `dir`: passphrase from `SPIDER_PASSPHRASE`, none,
/// or a prompt.
pub(crate) fn open_profile(dir: &Path) -> anyhow::Result<Opened> {
    if !dir.join("conf").exists() && !dir.join("db").exists() {
        bail!(
            "no profile in {}: create one with `spider --profile {} register ...`",
            dir.display(),
            dir.display()
        );
    }
    let attempt = |p: &Passphrase| Profile::open_dir(dir, p, os_rng());
    let mut pass = match std::env::var("SPIDER_PASSPHRASE") {
        Ok(p) => Passphrase::new(p),
        Err(_) => Passphrase::None,
    };
    loop {
        match attempt(&pass) {
            Ok(profile) => {
                return Ok(Opened {
                    profile,
                    passphrase: pass,
                });
            }
            Err(ProfileError::Keystore(KeystoreError::NotPassphraseProtected))
                if !matches!(pass, Passphrase::None) =>
            {
                pass = Passphrase::None;
            }
            Err(ProfileError::Keystore(KeystoreError::PassphraseRequired)) => {
                pass = Passphrase::new(prompt_secret("passphrase: ")?);
            }
            Err(e) => {
                return Err(anyhow!(e).context(format!("opening the profile {}", dir.display())));
            }
        }
    }
}

fn cli_config(profile: &Profile<SledStore>) -> anyhow::Result<CliConfig> {
    profile.get::<CliConfig>(K_CONFIG)?.ok_or_else(|| {
        anyhow!("this profile has no relay address; it was not made by `spider register`")
    })
}

/// A running SDK client, signed in.
pub(crate) struct Session {
    pub(crate) client: Client,
    pub(crate) events: mpsc::Receiver<Event>,
    pub(crate) me: UserId,
}

/// Starts the SDK client on `profile` and waits until it is signed in
/// (registering first if the profile has no account yet).
pub(crate) async fn start(
    profile: Profile<SledStore>,
    cfg: &CliConfig,
    transport: TransportChoice,
) -> anyhow::Result<Session> {
    let account = profile.account()?;
    let ca_pem = std::fs::read(&cfg.ca)
        .with_context(|| format!("reading the relay CA {}", cfg.ca.display()))?;
    let engine = Engine::new(profile, os_rng());
    let config = ClientConfig {
        target: RelayTarget {
            addr: cfg.server.clone(),
            server_name: account.relay_name.clone(),
            ca_pem,
        },
        transport: sdk_transport(transport),
        backoff: Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(5),
        },
    };
    let (client, mut events) = Client::spawn(engine, config);
    let mut last: Option<ClientError> = None;
    let deadline = tokio::time::sleep(CONNECT_PATIENCE);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => {
                client.shutdown().await;
                let why = last.map_or_else(|| "no answer".to_owned(), |e| e.to_string());
                bail!("could not sign in to the relay at {} within {}s: {why}", cfg.server, CONNECT_PATIENCE.as_secs());
            }
            e = events.recv() => match e {
                Some(Event::Connected { user, .. }) => {
                    return Ok(Session { client, events, me: user });
                }
                Some(Event::Error(e @ (ClientError::Relay { .. } | ClientError::WrongRelay | ClientError::Keystore(_)))) => {
                    client.shutdown().await;
                    return Err(anyhow!(e).context(format!("signing in to {}", cfg.server)));
                }
                Some(Event::Error(e)) => last = Some(e),
                Some(_) => {}
                None => bail!("the client stopped"),
            }
        }
    }
}

/// `spider register`.
pub(crate) async fn register(
    dir: &Path,
    server: String,
    ca: &Path,
    username: &str,
    relay_name: Option<String>,
    no_passphrase: bool,
    transport: TransportChoice,
) -> anyhow::Result<()> {
    let username =
        Username::parse(username).map_err(|e| anyhow!("invalid username {username:?}: {e}"))?;
    let ca = std::fs::canonicalize(ca)
        .with_context(|| format!("reading the relay CA {}", ca.display()))?;
    if dir.join("conf").exists() || dir.join("db").exists() {
        bail!("{} already holds a profile", dir.display());
    }
    let pass = if no_passphrase {
        Passphrase::None
    } else if let Ok(p) = std::env::var("SPIDER_PASSPHRASE") {
        Passphrase::new(p)
    } else {
        let a = prompt_secret("new passphrase: ")?;
        let b = prompt_secret("again: ")?;
        if a != b {
            bail!("the passphrases differ");
        }
        if a.is_empty() {
            bail!("empty passphrase: use --no-passphrase to store the keys unprotected");
        }
        Passphrase::new(a)
    };
    let relay_name = relay_name.unwrap_or_else(|| default_relay_name(&server));
    let created = !dir.exists();
    let result = async {
        let mut profile = Profile::create_dir(
            dir,
            &pass,
            KdfParams::RECOMMENDED,
            Account {
                relay_name,
                username: username.clone(),
                user: None,
                device: None,
            },
            os_rng(),
        )?;
        let cfg = CliConfig { server, ca };
        profile.put(K_CONFIG, &cfg)?;
        profile.flush()?;
        let s = start(profile, &cfg, transport).await?;
        s.client.shutdown().await;
        anyhow::Ok(s.me)
    }
    .await;
    match result {
        Ok(me) => {
            println!("registered {username} ({me}) in {}", dir.display());
            Ok(())
        }
        Err(e) => {
            if created {
                let _ = std::fs::remove_dir_all(dir);
            }
            Err(e)
        }
    }
}

/// Where `send` goes: `@user` or `#room`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Dest {
    /// A person.
    User(Username),
    /// A room, by name.
    Room(String),
}

/// Parses `@user`, `#room`, or a bare username.
pub(crate) fn parse_dest(s: &str) -> anyhow::Result<Dest> {
    if let Some(room) = s.strip_prefix('#') {
        if room.is_empty() {
            bail!("empty room name");
        }
        return Ok(Dest::Room(room.to_owned()));
    }
    let name = s.strip_prefix('@').unwrap_or(s);
    Ok(Dest::User(parse_user(name)?))
}

fn parse_user(s: &str) -> anyhow::Result<Username> {
    let name = s.strip_prefix('@').unwrap_or(s);
    Username::parse(name).map_err(|e| anyhow!("invalid username {name:?}: {e}"))
}

fn find_room(profile: &Profile<SledStore>, name: &str) -> anyhow::Result<RoomId> {
    let name = name.strip_prefix('#').unwrap_or(name);
    profile
        .rooms()?
        .into_iter()
        .find(|r| r.joined && r.name == name)
        .map(|r| r.room)
        .ok_or_else(|| {
            anyhow!("you are not in a room named #{name} (see `spider room create` / `room join`)")
        })
}

/// Waits until the relay acknowledges message `id` (or refuses it).
async fn wait_sent(s: &mut Session, id: MessageId) -> anyhow::Result<()> {
    let deadline = tokio::time::sleep(REQUEST_PATIENCE);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => bail!("the relay has not acknowledged the message within {}s; it stays in the outbox and goes out with the next command", REQUEST_PATIENCE.as_secs()),
            e = s.events.recv() => match e {
                Some(Event::Sent { id: sent }) if sent == id => return Ok(()),
                Some(Event::Error(ClientError::Relay { code, message: Some(m), text })) if m == id => {
                    bail!("the relay refused the message: {code}{}{}", relay_text(&text), hint(code))
                }
                Some(Event::Error(e)) => eprintln!("warning: {e}"),
                Some(_) => {}
                None => bail!("the client stopped"),
            }
        }
    }
}

fn relay_text(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(" ({text})")
    }
}

fn hint(code: ErrorCode) -> &'static str {
    if code == ErrorCode::INTERNAL {
        " (this relay may not serve that request yet)"
    } else if code == ErrorCode::UNKNOWN_RECIPIENT {
        " (no such account)"
    } else {
        ""
    }
}

/// `spider send`.
pub(crate) async fn send(
    dir: &Path,
    to: &str,
    text: &str,
    transport: TransportChoice,
) -> anyhow::Result<()> {
    let dest = parse_dest(to)?;
    let opened = open_profile(dir)?;
    let cfg = cli_config(&opened.profile)?;
    let room = match &dest {
        Dest::Room(r) => Some(find_room(&opened.profile, r)?),
        Dest::User(_) => None,
    };
    let mut s = start(opened.profile, &cfg, transport).await?;
    let result = async {
        let id = match (&dest, room) {
            (_, Some(room)) => s.client.send_room_text(room, text).await?,
            (Dest::User(u), _) => s.client.send_text(u.clone(), text).await?,
            (Dest::Room(_), None) => bail!("no room"),
        };
        wait_sent(&mut s, id).await?;
        anyhow::Ok(id)
    }
    .await;
    s.client.shutdown().await;
    let id = result?;
    eprintln!("sent {id} to {to}");
    Ok(())
}

/// `spider send-file`: uploads the file (encrypted), sends the message
/// that carries it, and waits until the relay has both. Progress goes to
/// stderr when it is a terminal; a final line in any case.
pub(crate) async fn send_file(
    dir: &Path,
    to: &str,
    path: &Path,
    transport: TransportChoice,
) -> anyhow::Result<()> {
    let dest = parse_dest(to)?;
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    let opened = open_profile(dir)?;
    let cfg = cli_config(&opened.profile)?;
    let room = match &dest {
        Dest::Room(r) => Some(find_room(&opened.profile, r)?),
        Dest::User(_) => None,
    };
    let mut s = start(opened.profile, &cfg, transport).await?;
    let result = async {
        let id = match (&dest, room) {
            (_, Some(room)) => s.client.send_room_file(room, path).await,
            (Dest::User(u), _) => s.client.send_file(u.clone(), path).await,
            (Dest::Room(_), None) => bail!("no room"),
        }
        .map_err(|e| anyhow!("{} was not sent: {e}", path.display()))?;
        wait_file_sent(&mut s, id, path).await?;
        anyhow::Ok(id)
    }
    .await;
    s.client.shutdown().await;
    let id = result?;
    eprintln!(
        "sent {} ({} bytes) as {id} to {to}",
        path.display(),
        meta.len()
    );
    Ok(())
}

/// Waits until the file message `id` is uploaded and acknowledged. The
/// patience starts again with each bit of progress: a large file on a slow
/// link is not cut off, a stalled one is.
async fn wait_file_sent(s: &mut Session, id: MessageId, path: &Path) -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    let tty = std::io::stderr().is_terminal();
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let deadline = tokio::time::sleep(REQUEST_PATIENCE);
    tokio::pin!(deadline);
    let result = loop {
        tokio::select! {
            () = &mut deadline => break Err(anyhow!("the upload of {} stalled for {}s; nothing was sent", path.display(), REQUEST_PATIENCE.as_secs())),
            e = s.events.recv() => match e {
                Some(Event::Attachment(AttachmentEvent::Progress { id: p, done, total, .. })) if p == id => {
                    deadline.as_mut().reset(tokio::time::Instant::now() + REQUEST_PATIENCE);
                    if tty {
                        eprint!("\r{}", progress_line(&name, done, total));
                        let _ = std::io::stderr().flush();
                    }
                }
                Some(Event::Attachment(AttachmentEvent::Failed { id: f, error, .. })) if f == id => {
                    break Err(anyhow!("{} was not sent: {error}", path.display()));
                }
                Some(Event::Sent { id: sent }) if sent == id => break Ok(()),
                Some(Event::Error(ClientError::Relay { code, message: Some(m), text })) if m == id => {
                    break Err(anyhow!("the relay refused the file message: {code}{}{}", relay_text(&text), hint(code)));
                }
                Some(Event::Error(e)) => eprintln!("warning: {e}"),
                Some(_) => {}
                None => break Err(anyhow!("the client stopped")),
            }
        }
    };
    if tty {
        eprintln!();
    }
    result
}

/// `NAME [#######.........]  45%  1.2 of 2.5 MiB`, for a terminal.
fn progress_line(name: &str, done: u64, total: u64) -> String {
    const WIDTH: u64 = 24;
    let done = done.min(total);
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
    let pct = (done * 100).checked_div(total).unwrap_or(100);
    let bar: String = (0..WIDTH)
        .map(|i| if i < filled { '#' } else { '.' })
        .collect();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    format!(
        "{name} [{bar}] {pct:>3}%  {:.1} of {:.1} MiB",
        mib(done),
        mib(total)
    )
}

/// One received message, as `recv --json` prints it.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Received {
    /// The message id (hex).
    pub(crate) id: String,
    /// The sender's username, or their account id (hex) if not known yet.
    pub(crate) from: String,
    /// The sender's account id (hex).
    pub(crate) from_id: String,
    /// The room's name (or id, hex) for a room message; null for 1:1.
    pub(crate) room: Option<String>,
    /// The text; null for an attachment.
    pub(crate) text: Option<String>,
    /// The attachment's name, type and size; null for a text.
    pub(crate) attachment: Option<AttachmentInfo>,
    /// The sender's clock, milliseconds since the Unix epoch.
    pub(crate) sent_at: u64,
    /// The sender's display name from their encrypted profile, if they gave
    /// us its key; null otherwise.
    pub(crate) display_name: Option<String>,
}

/// An attachment as `recv --json` describes it.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct AttachmentInfo {
    /// File name as the sender gave it.
    pub(crate) name: String,
    /// Media type.
    pub(crate) media_type: String,
    /// Size in bytes.
    pub(crate) size: u64,
    /// Where the decrypted file was saved (in the profile's `files/`); null
    /// if it could not be.
    pub(crate) path: Option<String>,
    /// Why it could not be saved; absent when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

struct Names {
    users: HashMap<UserId, String>,
    rooms: HashMap<RoomId, String>,
    /// Display names from contacts' profiles.
    display: HashMap<UserId, String>,
}

impl Names {
    fn load(profile: &Profile<SledStore>) -> anyhow::Result<Self> {
        let mut display = HashMap::new();
        let mut users = HashMap::new();
        for c in profile.contacts()? {
            if let Some(n) = profile.display_name_of(&c.user)? {
                display.insert(c.user, n);
            }
            users.insert(c.user, c.username.as_str().to_owned());
        }
        Ok(Self {
            display,
            users,
            rooms: profile
                .rooms()?
                .into_iter()
                .map(|r| (r.room, r.name))
                .collect(),
        })
    }
}

fn received(
    names: &Names,
    id: MessageId,
    from: UserId,
    room: Option<RoomId>,
    body: &Body,
    sent_at: u64,
) -> Option<Received> {
    let (text, attachment) = match body {
        Body::Text { body } => (Some(body.clone()), None),
        Body::Attachment {
            file_name,
            media_type,
            size,
            ..
        } => (
            None,
            Some(AttachmentInfo {
                name: file_name.clone(),
                media_type: media_type.clone(),
                size: *size,
                path: None,
                error: None,
            }),
        ),
        _ => return None,
    };
    Some(Received {
        id: id.to_hex(),
        from: names
            .users
            .get(&from)
            .cloned()
            .unwrap_or_else(|| from.to_hex()),
        from_id: from.to_hex(),
        room: room.map(|r| names.rooms.get(&r).cloned().unwrap_or_else(|| r.to_hex())),
        text,
        attachment,
        sent_at,
        display_name: names.display.get(&from).cloned(),
    })
}

/// `YYYY-MM-DD hh:mm:ssZ` for a time in ms since the Unix epoch.
fn utc(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        })
        .unwrap_or_else(|| ms.to_string())
}

fn print_received(r: &Received, json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer(&mut out, r)?;
        writeln!(out)?;
    } else {
        let at = utc(r.sent_at);
        let place = r
            .room
            .as_ref()
            .map_or_else(String::new, |room| format!(" in #{room}"));
        let what = match (&r.text, &r.attachment) {
            (Some(t), _) => t.clone(),
            (None, Some(a)) => match (&a.path, &a.error) {
                (Some(p), _) => format!("[file {} ({} bytes)] saved to {p}", a.name, a.size),
                (None, Some(e)) => format!("[file {} ({} bytes)] not saved: {e}", a.name, a.size),
                (None, None) => format!("[file {} ({} bytes)]", a.name, a.size),
            },
            (None, None) => String::new(),
        };
        let display = r
            .display_name
            .as_ref()
            .map_or_else(String::new, |d| format!(" ({d})"));
        writeln!(out, "{at} @{}{display}{place}: {what}", r.from)?;
    }
    out.flush()?;
    Ok(())
}

/// A message `recv` is about to print. Lines go out in arrival order: one
/// waits for its sender's name (a live message from someone being looked
/// up) and for its file to be saved, and the lines behind it wait too.
struct Pending {
    /// The sender, while their name may still come (`None`: print as is).
    user: Option<UserId>,
    id: MessageId,
    r: Received,
    /// The attachment, while its download runs.
    file: Option<Attachment>,
}

/// A saved file's path for `recv` to print: absolute when it can be.
fn shown_path(p: &Path) -> String {
    std::fs::canonicalize(p)
        .unwrap_or_else(|_| p.to_owned())
        .display()
        .to_string()
}

/// Records the end of message `id`'s download in its waiting line.
fn file_done(waiting: &mut VecDeque<Pending>, id: MessageId, result: Result<&Path, String>) {
    let Some(p) = waiting.iter_mut().find(|p| p.id == id && p.file.is_some()) else {
        return;
    };
    p.file = None;
    if let Some(a) = p.r.attachment.as_mut() {
        match result {
            Ok(path) => a.path = Some(shown_path(path)),
            Err(e) => a.error = Some(e),
        }
    }
}

/// `spider recv`.
pub(crate) async fn recv(
    dir: &Path,
    json: bool,
    wait: Duration,
    transport: TransportChoice,
) -> anyhow::Result<()> {
    let opened = open_profile(dir)?;
    let cfg = cli_config(&opened.profile)?;
    let me = opened.profile.account()?.user;
    let mut printed: Vec<MessageId> = opened.profile.get(K_PRINTED)?.unwrap_or_default();
    let mut seen: HashSet<MessageId> = printed.iter().copied().collect();
    let mut names = Names::load(&opened.profile)?;
    let files = files_dir(dir);
    // Messages that arrived while another command ran are in history.
    let mut waiting: VecDeque<Pending> = VecDeque::new();
    for h in opened.profile.history()? {
        if Some(h.from) == me || seen.contains(&h.id) {
            continue;
        }
        if let Ok(c) = h.decode()
            && let Some(r) = received(&names, h.id, h.from, h.room, &c.body, h.at_ms)
        {
            seen.insert(h.id);
            waiting.push_back(Pending {
                user: None,
                id: h.id,
                r,
                file: Attachment::from_body(&c.body),
            });
        }
    }
    let pass = copy_passphrase(&opened.passphrase);
    let mut s = start(opened.profile, &cfg, transport).await?;
    let mut out = Vec::new();
    let result = async {
        for p in &waiting {
            if let Some(a) = &p.file {
                s.client.download(p.id, a.clone(), &files).await?;
            }
        }
        let mut caught_up = false;
        // Last sign of life of a download: a stalled one does not hold
        // `recv` up for ever.
        let mut file_news = std::time::Instant::now();
        // Senders whose profile is being read: their lines wait for the
        // display name.
        let mut fetching: HashSet<UserId> = HashSet::new();
        let patience = tokio::time::sleep(CONNECT_PATIENCE);
        tokio::pin!(patience);
        let result = loop {
            while let Some(p) = waiting.front_mut() {
                if p.file.is_some() {
                    break;
                }
                if let Some(u) = p.user {
                    let Some(name) = names.users.get(&u) else { break };
                    if fetching.contains(&u) {
                        break;
                    }
                    p.r.from = name.clone();
                    p.r.display_name = names.display.get(&u).cloned();
                }
                if let Some(p) = waiting.pop_front() {
                    print_received(&p.r, json)?;
                    out.push(p.id);
                }
            }
            tokio::select! {
                () = &mut patience => {
                    if !caught_up {
                        break Err(anyhow!("the relay did not deliver the backlog within {}s", CONNECT_PATIENCE.as_secs()));
                    }
                    let downloading = waiting.iter().any(|p| p.file.is_some());
                    if !downloading || file_news.elapsed() >= REQUEST_PATIENCE {
                        break Ok(());
                    }
                    patience.as_mut().reset(tokio::time::Instant::now() + wait.max(Duration::from_secs(1)));
                }
                e = s.events.recv() => match e {
                    Some(Event::CaughtUp) => {
                        caught_up = true;
                        patience.as_mut().reset(tokio::time::Instant::now() + wait);
                    }
                    Some(Event::MessageReceived { id, from, room, content, sent_at }) => {
                        if from.user != s.me && seen.insert(id)
                            && let Some(r) = received(&names, id, from.user, room, &content.body, sent_at.0)
                        {
                            let file = Attachment::from_body(&content.body);
                            if let Some(a) = &file {
                                s.client.download(id, a.clone(), &files).await?;
                                file_news = std::time::Instant::now();
                            }
                            waiting.push_back(Pending { user: Some(from.user), id, r, file });
                        }
                        if caught_up {
                            patience.as_mut().reset(tokio::time::Instant::now() + wait);
                        }
                    }
                    Some(Event::ContactUpdated { user, username }) => {
                        names.users.insert(user, username.as_str().to_owned());
                    }
                    Some(Event::Attachment(AttachmentEvent::Saved { id, path })) => {
                        file_news = std::time::Instant::now();
                        file_done(&mut waiting, id, Ok(&path));
                    }
                    Some(Event::Attachment(AttachmentEvent::Failed { id, error, .. })) => {
                        file_news = std::time::Instant::now();
                        eprintln!("warning: the file of message {id} was not saved: {error}");
                        file_done(&mut waiting, id, Err(error.to_string()));
                    }
                    Some(Event::Attachment(AttachmentEvent::Progress { .. })) => {
                        file_news = std::time::Instant::now();
                    }
                    Some(Event::ProfileKeyReceived { user }) => {
                        fetching.insert(user);
                    }
                    Some(Event::ProfileFetched { user, display_name }) => {
                        fetching.remove(&user);
                        match display_name {
                            Some(d) => names.display.insert(user, d),
                            None => names.display.remove(&user),
                        };
                    }
                    Some(Event::Error(e)) => eprintln!("warning: {e}"),
                    Some(_) => {}
                    None => break Err(anyhow!("the client stopped")),
                }
            }
        };
        // What is left: names that never came (the account id it is), and
        // files whose download did not end.
        for mut p in waiting.drain(..) {
            if p.file.take().is_some()
                && let Some(a) = p.r.attachment.as_mut()
            {
                a.error = Some("the download did not finish".to_owned());
            }
            print_received(&p.r, json)?;
            out.push(p.id);
        }
        result
    }
    .await;
    s.client.shutdown().await;
    if !out.is_empty() {
        let mut profile = Profile::open_dir(dir, &pass, os_rng())?;
        printed.extend(out);
        if printed.len() > MAX_PRINTED {
            printed.drain(..printed.len() - MAX_PRINTED);
        }
        profile.put(K_PRINTED, &printed)?;
        profile.flush()?;
    }
    result
}

/// A room change the SDK can ask for.
enum RoomAct {
    Create(RoomName),
    Invite(RoomId, UserId),
    /// An invitation to an account not among the contacts yet: looked up
    /// by name first.
    InviteName(RoomId, Username),
    /// A removal of an account not among the contacts: looked up first.
    KickName(RoomId, Username),
    Accept(RoomId),
    Kick(RoomId, UserId),
    /// Join through an invite link.
    JoinLink(LinkToken),
    Leave(RoomId),
    Revoke(RoomId, LinkToken),
}

/// Runs one room-changing request and waits for the relay's answer: the
/// room changing, or its error.
async fn room_request(
    opened: Opened,
    transport: TransportChoice,
    what: &str,
    act: RoomAct,
) -> anyhow::Result<()> {
    let cfg = cli_config(&opened.profile)?;
    let mut s = start(opened.profile, &cfg, transport).await?;
    let result = async {
        // Let the backlog (room changes among it) go by first, so that the
        // room change seen next is the answer to this request.
        settle(&mut s).await?;
        match act {
            RoomAct::Create(name) => s.client.create_room(name).await?,
            RoomAct::Invite(room, user) => s.client.invite(room, user).await?,
            RoomAct::InviteName(room, name) => {
                let user = look_up(&mut s, name).await?;
                s.client.invite(room, user).await?;
            }
            RoomAct::Accept(room) => s.client.accept_invite(room).await?,
            RoomAct::Kick(room, user) => s.client.kick(room, user).await?,
            RoomAct::KickName(room, name) => {
                let user = look_up(&mut s, name).await?;
                s.client.kick(room, user).await?;
            }
            RoomAct::JoinLink(token) => s.client.join_by_link(token).await?,
            RoomAct::Leave(room) => s.client.leave_room(room).await?,
            RoomAct::Revoke(room, token) => s.client.revoke_link(room, token).await?,
        }
        let room = room_answer(&mut s, what).await?;
        let details = s
            .client
            .rooms()
            .await?
            .into_iter()
            .find(|d| d.state.room == room);
        if let Some(d) = &details
            && d.state.joined
        {
            learn_member_names(&mut s, d).await?;
        }
        anyhow::Ok((room, details.map(|d| d.state.name)))
    }
    .await;
    s.client.shutdown().await;
    let (room, name) = result?;
    match name {
        Some(n) if !n.is_empty() => eprintln!("{what}: done (#{n}, room {room})"),
        _ => eprintln!("{what}: done (room {room})"),
    }
    Ok(())
}

/// Waits until the members of a room have names (those not known are
/// looked up), so that `room members` and `recv` can show them.
async fn learn_member_names(
    s: &mut Session,
    room: &spider_client::social::RoomDetails,
) -> anyhow::Result<()> {
    let known: HashSet<UserId> = s
        .client
        .contacts()
        .await?
        .into_iter()
        .map(|c| c.contact.user)
        .collect();
    let mut unknown: HashSet<UserId> = room
        .state
        .members
        .iter()
        .map(|(u, _)| *u)
        .filter(|u| *u != s.me && !known.contains(u))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    // Look-ups already asked for are not asked for twice.
    s.client
        .look_up_ids(unknown.iter().copied().collect())
        .await?;
    let deadline = tokio::time::sleep(REQUEST_PATIENCE);
    tokio::pin!(deadline);
    while !unknown.is_empty() {
        tokio::select! {
            () = &mut deadline => {
                eprintln!("warning: some members' names did not arrive; `room members` shows their ids");
                break;
            }
            e = s.events.recv() => match e {
                Some(Event::ContactUpdated { user, .. }) => {
                    unknown.remove(&user);
                }
                Some(Event::Error(e)) => {
                    eprintln!("warning: {e}");
                    break;
                }
                Some(_) => {}
                None => bail!("the client stopped"),
            }
        }
    }
    Ok(())
}

/// Waits for the relay's answer to the room request just made.
async fn room_answer(s: &mut Session, what: &str) -> anyhow::Result<RoomId> {
    let deadline = tokio::time::sleep(REQUEST_PATIENCE);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => bail!("the relay did not answer {what} within {}s", REQUEST_PATIENCE.as_secs()),
            e = s.events.recv() => match e {
                Some(Event::RoomRequestDone { room, result, .. }) => match (room, result) {
                    (Some(room), Ok(())) => return Ok(room),
                    (_, Err(ClientError::Relay { code, text, .. })) => {
                        bail!("the relay refused {what}: {code}{}", relay_text(&text))
                    }
                    (_, Err(e)) => bail!("{what} failed: {e}"),
                    (None, Ok(())) => bail!("{what}: the relay named no room"),
                },
                Some(Event::Error(e)) => eprintln!("warning: {e}"),
                Some(_) => {}
                None => bail!("the client stopped"),
            }
        }
    }
}

/// Waits until the relay has delivered the backlog (`CaughtUp`).
async fn settle(s: &mut Session) -> anyhow::Result<()> {
    let deadline = tokio::time::sleep(CONNECT_PATIENCE);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => bail!("the relay did not deliver the backlog within {}s", CONNECT_PATIENCE.as_secs()),
            e = s.events.recv() => match e {
                Some(Event::CaughtUp) => return Ok(()),
                Some(Event::Error(e)) => eprintln!("warning: {e}"),
                Some(_) => {}
                None => bail!("the client stopped"),
            }
        }
    }
}

/// Looks an account up by name through the relay (it becomes a contact).
async fn look_up(s: &mut Session, name: Username) -> anyhow::Result<UserId> {
    s.client.lookup_user(name.clone()).await?;
    let deadline = tokio::time::sleep(REQUEST_PATIENCE);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => bail!("the relay did not answer the look-up of @{name} within {}s", REQUEST_PATIENCE.as_secs()),
            e = s.events.recv() => match e {
                Some(Event::ContactUpdated { user, username }) if username == name => return Ok(user),
                Some(Event::Error(ClientError::Relay { code, message: None, .. })) if code == ErrorCode::UNKNOWN_USER => {
                    bail!("there is no account named @{name}")
                }
                Some(Event::Error(e)) => eprintln!("warning: {e}"),
                Some(_) => {}
                None => bail!("the client stopped"),
            }
        }
    }
}

/// Connects, takes the backlog (room invitations among it) and what it
/// prompts (room details), and disconnects.
async fn sync(opened: Opened, transport: TransportChoice) -> anyhow::Result<()> {
    let cfg = cli_config(&opened.profile)?;
    let mut s = start(opened.profile, &cfg, transport).await?;
    let result = async {
        settle(&mut s).await?;
        // Room details asked for during the backlog arrive shortly after.
        loop {
            tokio::select! {
                () = tokio::time::sleep(SYNC_QUIET) => return anyhow::Ok(()),
                e = s.events.recv() => match e {
                    Some(Event::Error(e)) => eprintln!("warning: {e}"),
                    Some(_) => {}
                    None => bail!("the client stopped"),
                }
            }
        }
    }
    .await;
    s.client.shutdown().await;
    result
}

/// How long `sync` waits for more after the backlog.
const SYNC_QUIET: Duration = Duration::from_millis(700);

fn strip_hash(name: &str) -> &str {
    name.strip_prefix('#').unwrap_or(name)
}

/// `spider room ...`.
pub(crate) async fn room(
    dir: &Path,
    cmd: crate::RoomCommand,
    transport: TransportChoice,
) -> anyhow::Result<()> {
    use crate::RoomCommand as R;
    match cmd {
        R::Create { name } => {
            let name = strip_hash(&name);
            let room_name =
                RoomName::parse(name).map_err(|e| anyhow!("invalid room name {name:?}: {e}"))?;
            let opened = open_profile(dir)?;
            room_request(
                opened,
                transport,
                "creating the room",
                RoomAct::Create(room_name),
            )
            .await
        }
        R::Invite { name, user } => {
            let opened = open_profile(dir)?;
            let room = find_room(&opened.profile, &name)?;
            let username = parse_user(&user)?;
            let act = match opened.profile.contact_by_name(&username)? {
                Some(c) => RoomAct::Invite(room, c.user),
                None => RoomAct::InviteName(room, username),
            };
            room_request(opened, transport, "the invitation", act).await
        }
        R::Join { name_or_link } => {
            if let Some(token) = parse_invite_link(&name_or_link) {
                let opened = open_profile(dir)?;
                return room_request(
                    opened,
                    transport,
                    "joining by link",
                    RoomAct::JoinLink(token),
                )
                .await;
            }
            if name_or_link.contains("://") {
                bail!("{name_or_link:?} is not an invite link (spider://join/ and 32 hex digits)");
            }
            let mut opened = open_profile(dir)?;
            let wanted = strip_hash(&name_or_link).to_owned();
            let find = |o: &Opened| -> anyhow::Result<Option<RoomId>> {
                Ok(o.profile
                    .rooms()?
                    .into_iter()
                    .find(|r| r.name == wanted)
                    .map(|r| r.room))
            };
            let room = match find(&opened)? {
                Some(r) => r,
                None => {
                    // The invitation may be waiting at the relay.
                    let pass = copy_passphrase(&opened.passphrase);
                    sync(opened, transport).await?;
                    opened = Opened {
                        profile: Profile::open_dir(dir, &pass, os_rng())?,
                        passphrase: pass,
                    };
                    find(&opened)?
                        .ok_or_else(|| anyhow!("no invitation to a room named #{wanted}"))?
                }
            };
            room_request(opened, transport, "joining the room", RoomAct::Accept(room)).await
        }
        R::Kick { name, user } => {
            let opened = open_profile(dir)?;
            let room = find_room(&opened.profile, &name)?;
            let username = parse_user(&user)?;
            let act = match opened.profile.contact_by_name(&username)? {
                Some(c) => RoomAct::Kick(room, c.user),
                None => RoomAct::KickName(room, username),
            };
            room_request(opened, transport, "the removal", act).await
        }
        R::Link {
            name,
            expires,
            uses,
        } => social::room_link(dir, &name, expires.as_deref(), uses, transport).await,
        R::Revoke { name, link } => {
            let token = parse_invite_link(&link)
                .ok_or_else(|| anyhow!("{link:?} is not an invite link"))?;
            let opened = open_profile(dir)?;
            let room = find_room(&opened.profile, &name)?;
            room_request(
                opened,
                transport,
                "revoking the link",
                RoomAct::Revoke(room, token),
            )
            .await
        }
        R::Leave { name } => {
            let opened = open_profile(dir)?;
            let room = find_room(&opened.profile, &name)?;
            room_request(opened, transport, "leaving the room", RoomAct::Leave(room)).await
        }
        R::Members { name } => {
            let opened = open_profile(dir)?;
            let room = find_room(&opened.profile, &name)?;
            let names = Names::load(&opened.profile)?;
            let Some(state) = opened.profile.room(&room)? else {
                bail!("unknown room");
            };
            for (user, devices) in state.members {
                let name = names
                    .users
                    .get(&user)
                    .cloned()
                    .unwrap_or_else(|| user.to_hex());
                println!("@{name}\t{} device(s)", devices.len());
            }
            Ok(())
        }
    }
}

/// `spider safety @USER` (and `verify`, which also records the check).
pub(crate) fn safety(dir: &Path, user: &str, mark_verified: bool) -> anyhow::Result<()> {
    let user = parse_user(user)?;
    let mut opened = open_profile(dir)?;
    let Some(contact) = opened.profile.contact_by_name(&user)? else {
        bail!("{user} is not among your contacts yet: send them a message first");
    };
    let mut any = false;
    for device in &contact.devices {
        if let Some(n) = opened.profile.safety_number(&contact.user, *device)? {
            any = true;
            println!("{user} device {}: {n}", device.0);
        }
    }
    if !any {
        bail!("no identity key of {user} is known yet: exchange a message first");
    }
    if mark_verified {
        opened.profile.set_verified(contact.user, true)?;
        opened.profile.flush()?;
        println!(
            "marked {user} verified: compare the numbers above with theirs (in person or on a call)"
        );
    } else {
        let v = opened.profile.verified_users()?;
        println!(
            "{}",
            if v.contains(&contact.user) {
                "verified"
            } else {
                "not verified: compare the numbers with theirs, then run `spider verify`"
            }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upload_progress_line_fills_with_the_bytes_sent() {
        assert_eq!(
            progress_line("a.bin", 0, 2 * 1024 * 1024),
            "a.bin [........................]   0%  0.0 of 2.0 MiB"
        );
        assert_eq!(
            progress_line("a.bin", 1024 * 1024, 2 * 1024 * 1024),
            "a.bin [############............]  50%  1.0 of 2.0 MiB"
        );
        assert_eq!(
            progress_line("empty", 0, 0),
            "empty [########################] 100%  0.0 of 0.0 MiB"
        );
    }

    #[test]
    fn relay_names_for_addresses() {
        assert_eq!(default_relay_name("127.0.0.1:4433"), "localhost");
        assert_eq!(default_relay_name("[::1]:4433"), "localhost");
        assert_eq!(default_relay_name("chat.example:443"), "chat.example");
        assert_eq!(default_relay_name("localhost:4433"), "localhost");
    }

    #[test]
    fn destinations() {
        assert_eq!(
            parse_dest("@alice").ok(),
            Some(Dest::User(
                Username::parse("alice")
                    .ok()
                    .unwrap_or_else(|| unreachable!())
            ))
        );
        assert_eq!(parse_dest("#ops").ok(), Some(Dest::Room("ops".into())));
        assert!(parse_dest("#").is_err());
        assert!(parse_dest("@").is_err());
    }
}
