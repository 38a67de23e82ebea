//! `spider`, the terminal chat client.
//!
//! The interactive app keeps state, events and drawing apart
//! (conventions §5): [`state`] is plain data changed only by worker events,
//! request outcomes and the clock; [`components`] react to keys and draw
//! from `&self`; they talk through the [`queue`]; [`app`] wires them to the
//! [`worker`], the one seam to the network. Until the SDK adapter lands,
//! `spider --fake` runs the app on an in-process fake network.

mod app;
mod components;
mod preview;
mod queue;
mod state;
mod terminal;
mod worker;

#[cfg(test)]
mod snapshots;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use ratatui::crossterm::event;
use tokio::sync::mpsc;

use crate::app::{App, AppMsg};
use crate::state::AppState;
use crate::worker::fake::{FakeWorker, wall_clock};
use crate::worker::{TransportChoice, Worker};

/// How often the clock ticks (typing indicators and notices expire on it).
const TICK: Duration = Duration::from_millis(250);

/// Spider: end-to-end encrypted chat in the terminal.
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

    /// Run the interactive app on an in-process fake network (development).
    #[arg(long, hide = true)]
    fake: bool,
}

/// How to draw inline images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Images {
    /// Ask the terminal; half blocks if it has no graphics protocol.
    Auto,
    /// Half blocks only (no terminal query).
    Halfblocks,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Read the local time zone before any thread starts: the `time` crate
    // refuses to (soundly) read it from a multi-threaded process.
    let offset = time::UtcOffset::current_local_offset().unwrap_or(time::UtcOffset::UTC);
    if !cli.fake {
        bail!(
            "spider is not yet connected to a relay: the SDK integration is pending. \
             Run `spider --fake` to try the interface on a simulated network."
        );
    }
    let _ = cli.profile;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(run_fake(cli.transport, cli.images, offset))
}

async fn run_fake(
    transport: TransportChoice,
    images: Images,
    offset: time::UtcOffset,
) -> anyhow::Result<()> {
    let (worker, requests) = Worker::channel();
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let _task = FakeWorker::new(transport).spawn(requests, events_tx);
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
    let mut app = App::new(state, worker, tx, "relay.example:443");
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
