//! `spider`, the terminal chat client.
//!
//! The interactive app keeps state, events and drawing apart
//! (conventions §5): [`state`] is plain data changed only by worker events,
//! request outcomes and the clock; [`components`] react to keys and draw
//! from `&self`; they talk through the [`queue`]; [`app`] wires them to the
//! [`worker`], the one seam to the network: [`worker::sdk`] on the real SDK,
//! or `spider --fake` on an in-process fake network. [`cli`] holds the
//! non-interactive commands, [`demo`] `spider demo`.

mod app;
mod cli;
mod components;
mod demo;
mod preview;
mod queue;
mod state;
mod terminal;
mod worker;

#[cfg(test)]
mod snapshots;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ratatui::crossterm::event;
use tokio::sync::mpsc;

use crate::app::{App, AppMsg};
use crate::state::AppState;
use crate::worker::fake::{FakeWorker, wall_clock};
use crate::worker::sdk::SdkWorker;
use crate::worker::{TransportChoice, Worker};

/// How often the clock ticks (typing indicators and notices expire on it).
const TICK: Duration = Duration::from_millis(250);

/// Spider: end-to-end encrypted chat in the terminal.
///
/// With no command, opens the terminal app on the profile given by
/// --profile. The commands below work without a terminal (scripts, bots):
/// each opens the profile, connects to the relay for as long as it needs,
/// and exits. A profile's passphrase comes from SPIDER_PASSPHRASE or a
/// prompt (profiles made with --no-passphrase need none).
///
/// Try it locally: `cargo build -p spider-relay`, then
/// `spider-relay serve --data /tmp/relay` and
/// `spider --profile /tmp/alice register --server 127.0.0.1:4433 --ca /tmp/relay/certs/ca.pem --username alice`.
#[derive(Debug, Parser)]
#[command(name = "spider", version)]
struct Cli {
    /// Where this device's keys, history and settings live.
    #[arg(long, global = true, value_name = "DIR")]
    profile: Option<PathBuf>,

    /// How to reach the relay: QUIC, WebSocket, or QUIC with WebSocket
    /// fallback.
    #[arg(long, global = true, value_enum, default_value_t = TransportChoice::Auto)]
    transport: TransportChoice,

    /// Inline images: the terminal's graphics protocol if it has one (kitty,
    /// sixel, iTerm2), or always half blocks.
    #[arg(long, global = true, value_enum, default_value_t = Images::Auto)]
    images: Images,

    /// The relay's CA certificate (PEM), for registering from the terminal
    /// app's first-run screen (the `register` command has its own --ca).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,

    /// Run the interactive app on an in-process fake network (development).
    #[arg(long, hide = true)]
    fake: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

/// The non-interactive commands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Create a profile in --profile and register a new account on a relay.
    ///
    /// The profile remembers the relay address, the CA file's path and the
    /// username, so later commands need only --profile.
    Register {
        /// The relay, HOST:PORT (QUIC and WebSocket share the port number).
        #[arg(long, value_name = "HOST:PORT")]
        server: String,
        /// The relay's CA certificate (PEM), e.g. DATA/certs/ca.pem of a
        /// development relay.
        #[arg(long, value_name = "FILE")]
        ca: PathBuf,
        /// The account name to claim.
        #[arg(long)]
        username: String,
        /// The relay's name [default: HOST, or `localhost` when HOST is an
        /// IP address].
        #[arg(long, value_name = "NAME")]
        relay_name: Option<String>,
        /// Store the keys without a passphrase (bots; protect the directory).
        #[arg(long)]
        no_passphrase: bool,
    },
    /// Send a text to @USER or #ROOM (words are joined with spaces).
    Send {
        /// @USER or '#ROOM' (quote it: # starts a shell comment).
        to: String,
        /// The text.
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
    /// Send a file to @USER or #ROOM: encrypted, uploaded, and announced in
    /// a message; waits until the relay has both.
    SendFile {
        /// @USER or '#ROOM'.
        to: String,
        /// The file.
        path: PathBuf,
    },
    /// Print received messages: the backlog, then what arrives until
    /// --wait seconds pass without anything new.
    ///
    /// With --json, one object per line: id, from, from_id, room (or null),
    /// text (or null), attachment (or null: else name, media_type, size,
    /// path), sent_at (ms since the epoch). Files are downloaded, checked and
    /// decrypted into DIR/files before their line is printed. A message is
    /// printed by one `recv` only.
    Recv {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Seconds of quiet after the backlog before returning.
        #[arg(long, value_name = "SECS", default_value_t = 5)]
        wait: u64,
    },
    /// Rooms: create, invite, links, join, leave, kick, members.
    #[command(subcommand)]
    Room(RoomCommand),
    /// List contacts with their presence.
    Contacts,
    /// Show the safety numbers shared with @USER's devices.
    Safety {
        /// @USER.
        user: String,
    },
    /// Show the safety numbers with @USER and mark them verified.
    Verify {
        /// @USER.
        user: String,
    },
    /// Your encrypted profile.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Start a throw-away relay, an echo bot and the terminal app signed in
    /// as a fresh user. Needs the spider-relay binary next to spider or on
    /// PATH: run `cargo build -p spider-relay` first.
    Demo,
}

/// `spider room ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum RoomCommand {
    /// Create a room.
    Create {
        /// Its name.
        name: String,
    },
    /// Invite @USER to a room.
    Invite {
        /// The room.
        name: String,
        /// @USER.
        user: String,
    },
    /// Make an invite link (printed on stdout) that lets anyone holding it
    /// join.
    Link {
        /// The room.
        name: String,
        /// How long the link works: a number and s, m, h, d or w (1h, 7d).
        #[arg(long)]
        expires: Option<String>,
        /// How many times it can be used.
        #[arg(long)]
        uses: Option<u32>,
    },
    /// Revoke an invite link.
    Revoke {
        /// The room.
        name: String,
        /// The link, as `room link` printed it.
        link: String,
    },
    /// Join a room you were invited to, or through an invite link.
    Join {
        /// The room's name or an invite link.
        name_or_link: String,
    },
    /// Leave a room.
    Leave {
        /// The room.
        name: String,
    },
    /// Remove @USER from a room.
    Kick {
        /// The room.
        name: String,
        /// @USER.
        user: String,
    },
    /// List a room's members.
    Members {
        /// The room.
        name: String,
    },
}

/// `spider profile ...`.
#[derive(Debug, Subcommand)]
enum ProfileCommand {
    /// Set what your contacts see (encrypted to them).
    Set {
        /// Display name.
        #[arg(long)]
        name: String,
    },
}

/// How to draw inline images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Images {
    /// Ask the terminal; half blocks if it has no graphics protocol.
    Auto,
    /// Half blocks only (no terminal query).
    Halfblocks,
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The chain of causes, without a backtrace even if
            // RUST_BACKTRACE is set: these are user-facing errors.
            eprintln!("spider: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Read the local time zone before any thread starts: the `time` crate
    // refuses to (soundly) read it from a multi-threaded process.
    let offset = time::UtcOffset::current_local_offset().unwrap_or(time::UtcOffset::UTC);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let transport = cli.transport;
    let Some(command) = cli.command else {
        if cli.fake {
            return rt.block_on(run_fake(transport, cli.images, offset));
        }
        let dir = cli
            .profile
            .clone()
            .context("give --profile DIR (an existing profile, or where to create one)")?;
        // Unlock before the app takes the terminal: the prompt needs it.
        let profile = if dir.join("conf").exists() || dir.join("db").exists() {
            Some(cli::open_profile(&dir)?.profile)
        } else {
            None
        };
        let sdk = SdkWorker {
            dir,
            profile,
            ca: cli.ca.clone(),
            transport,
        };
        return rt.block_on(run_app(
            cli.images,
            offset,
            "127.0.0.1:4433",
            |requests, events| sdk.spawn(requests, events),
        ));
    };
    let profile = || {
        cli.profile
            .clone()
            .context("--profile DIR is required for this command")
    };
    match command {
        Command::Register {
            server,
            ca,
            username,
            relay_name,
            no_passphrase,
        } => rt.block_on(cli::register(
            &profile()?,
            server,
            &ca,
            &username,
            relay_name,
            no_passphrase,
            transport,
        )),
        Command::Send { to, text } => {
            rt.block_on(cli::send(&profile()?, &to, &text.join(" "), transport))
        }
        Command::SendFile { to, path } => {
            rt.block_on(cli::send_file(&profile()?, &to, &path, transport))
        }
        Command::Recv { json, wait } => rt.block_on(cli::recv(
            &profile()?,
            json,
            Duration::from_secs(wait),
            transport,
        )),
        Command::Room(r) => rt.block_on(cli::room(&profile()?, r, transport)),
        Command::Contacts => rt.block_on(cli::contacts(&profile()?, transport)),
        Command::Safety { user } => cli::safety(&profile()?, &user, false),
        Command::Verify { user } => cli::safety(&profile()?, &user, true),
        Command::Profile(ProfileCommand::Set { name }) => {
            rt.block_on(cli::profile_set(&profile()?, &name, transport))
        }
        Command::Demo => run_demo(&rt, transport, cli.images, offset),
    }
}

/// `spider demo`.
fn run_demo(
    rt: &tokio::runtime::Runtime,
    transport: TransportChoice,
    images: Images,
    offset: time::UtcOffset,
) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir().context("making a temporary directory")?;
    eprintln!("spider demo: starting a relay in {}", tmp.path().display());
    let relay = demo::start_relay(tmp.path())?;
    let me = tmp.path().join("you");
    rt.block_on(async {
        let bot = demo::start_bot(&relay).await?;
        demo::start_user(&me, &relay, transport).await?;
        let profile = cli::open_profile(&me)?.profile;
        let sdk = SdkWorker {
            dir: me.clone(),
            profile: Some(profile),
            ca: Some(relay.ca.clone()),
            transport,
        };
        let r = run_app(
            images,
            offset,
            &relay.addr.to_string(),
            |requests, events| sdk.spawn(requests, events),
        )
        .await;
        bot.abort();
        r
    })?;
    drop(relay);
    Ok(())
}

async fn run_fake(
    transport: TransportChoice,
    images: Images,
    offset: time::UtcOffset,
) -> anyhow::Result<()> {
    run_app(images, offset, "relay.example:443", |requests, events| {
        FakeWorker::new(transport).spawn(requests, events)
    })
    .await
}

/// Runs the terminal app on the worker that `spawn` starts.
async fn run_app(
    images: Images,
    offset: time::UtcOffset,
    relay_hint: &str,
    spawn: impl FnOnce(
        mpsc::UnboundedReceiver<worker::Request>,
        mpsc::UnboundedSender<worker::WorkerEvent>,
    ) -> tokio::task::JoinHandle<()>,
) -> anyhow::Result<()> {
    let (worker, requests) = Worker::channel();
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let _task = spawn(requests, events_tx);
    let (tx, mut rx) = mpsc::unbounded_channel::<AppMsg>();

    let mut tui = terminal::Tui::enter().context("entering the terminal's interactive mode")?;
    // The graphics query reads the terminal's answer from stdin: before the
    // input thread starts.
    let graphics = match images {
        Images::Auto => preview::Graphics::query(),
        Images::Halfblocks => None,
    };
    // Terminal input on its own thread: crossterm's read blocks.
    let input_tx = tx.clone();
    std::thread::spawn(move || {
        while let Ok(ev) = event::read() {
            if input_tx.send(AppMsg::Input(ev)).is_err() {
                break;
            }
        }
    });
    let worker_tx = tx.clone();
    tokio::spawn(async move {
        while let Some(ev) = events_rx.recv().await {
            if worker_tx.send(AppMsg::Worker(ev)).is_err() {
                break;
            }
        }
    });
    let tick_tx = tx.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(TICK);
        loop {
            every.tick().await;
            if tick_tx.send(AppMsg::Tick(wall_clock())).is_err() {
                break;
            }
        }
    });

    let mut state = AppState::new(wall_clock(), offset);
    state.graphics = graphics;
    let mut app = App::new(state, worker, tx, relay_hint);
    let size = tui.terminal.size().context("reading the terminal size")?;
    app.event(&event::Event::Resize(size.width, size.height));
    loop {
        tui.terminal.draw(|f| app.draw(f)).context("drawing")?;
        let Some(msg) = rx.recv().await else { break };
        app.handle(msg);
        // Take whatever else is waiting before drawing again.
        while let Ok(msg) = rx.try_recv() {
            app.handle(msg);
        }
        app.flush();
        if app.should_quit() {
            break;
        }
    }
    drop(tui);
    Ok(())
}
