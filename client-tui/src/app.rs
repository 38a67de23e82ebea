//! The app: routes terminal events to components, handles the queue, calls
//! the worker, and draws (gitui's `src/gitui.rs`).
//!
//! Flow of one key press: [`App::event`] offers it to the overlay or the
//! focused component, then to the global keys; components push
//! [`InternalEvent`]s; [`App::process_queue`] turns those into state changes
//! and worker requests. Worker replies come back as [`AppMsg::Outcome`]
//! through the same channel as input, so the state is only ever changed on
//! the UI task.

use std::future::Future;

use ratatui::Frame;
use ratatui::crossterm::event::{Event, KeyCode, MouseButton, MouseEventKind};
use ratatui::layout::{Position, Rect};
use spider_protocol::ids::{RoomId, Timestamp, UserId};
use spider_protocol::name::{RoomName, Username};
use tokio::sync::mpsc;

use crate::components::chat::{ChatView, total_rows};
use crate::components::command::{Command, Palette};
use crate::components::composer::Composer;
use crate::components::first_run::FirstRun;
use crate::components::help::Help;
use crate::components::info::Info;
use crate::components::safety::Safety;
use crate::components::sidebar::Sidebar;
use crate::components::status::StatusLine;
use crate::components::{Component, EventState, is_ctrl, is_plain, key};
use crate::queue::{InternalEvent, Pane, Queue};
use crate::state::{AppState, Outcome, Overlay, Screen};
use crate::worker::{ConversationId, JoinTarget, Worker, WorkerError, WorkerEvent, await_reply};

/// Below this width the sidebar is hidden (it takes the whole width while
/// it has the keyboard).
pub(crate) const SIDEBAR_MIN_WIDTH: u16 = 60;

/// Minimum interval between typing notifications we ask the worker to send.
const TYPING_EVERY_MS: u64 = 3_000;

/// What the UI loop receives.
#[derive(Debug)]
pub(crate) enum AppMsg {
    /// A terminal event.
    Input(Event),
    /// Something the worker said.
    Worker(WorkerEvent),
    /// The answer to a request.
    Outcome(Outcome),
    /// The clock moved.
    Tick(Timestamp),
}

/// Where everything goes on the screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Areas {
    /// The sidebar, if shown.
    pub(crate) sidebar: Option<Rect>,
    /// The chat, if shown.
    pub(crate) chat: Option<Rect>,
    /// The composer.
    pub(crate) composer: Rect,
    /// The status line.
    pub(crate) status: Rect,
}

/// Splits the main screen. Pure: used to draw, to route mouse events and to
/// size pages.
pub(crate) fn layout(area: Rect, focus: Pane, composer_rows: u16) -> Areas {
    let status_h = u16::from(area.height >= 1);
    let status = Rect::new(
        area.x,
        area.y + area.height - status_h,
        area.width,
        status_h,
    );
    let rest = Rect::new(area.x, area.y, area.width, area.height - status_h);
    let (sidebar, main) = if area.width >= SIDEBAR_MIN_WIDTH {
        let w = (area.width / 4).clamp(20, 32);
        (
            Some(Rect::new(rest.x, rest.y, w, rest.height)),
            Rect::new(rest.x + w, rest.y, rest.width - w, rest.height),
        )
    } else if focus == Pane::Sidebar {
        (Some(rest), Rect::new(rest.x, rest.y, 0, 0))
    } else {
        (None, rest)
    };
    // Bordered composer when there is room for it and some chat above.
    let composer_h = if main.height >= 8 {
        composer_rows.saturating_add(2).min(main.height / 2)
    } else {
        main.height.min(1)
    };
    let composer = Rect::new(
        main.x,
        main.y + main.height - composer_h,
        main.width,
        composer_h,
    );
    let chat = Rect::new(main.x, main.y, main.width, main.height - composer_h);
    Areas {
        sidebar,
        chat: (chat.height > 0 && chat.width > 0).then_some(chat),
        composer,
        status,
    }
}

/// The app.
pub(crate) struct App {
    /// What it knows.
    pub(crate) state: AppState,
    queue: Queue,
    worker: Worker,
    replies: mpsc::UnboundedSender<AppMsg>,
    focus: Pane,
    sidebar: Sidebar,
    chat: ChatView,
    composer: Composer,
    status: StatusLine,
    help: Help,
    info: Info,
    safety: Safety,
    first_run: FirstRun,
    /// The terminal's size, for layout outside of drawing.
    size: Rect,
    last_typing: u64,
    /// The newest message read in the open conversation, not yet reported:
    /// a burst of arrivals (history after sign-in) sends one receipt.
    unreported_read: Option<(ConversationId, spider_protocol::ids::MessageId)>,
    quit: bool,
}

impl App {
    /// An app over `state` talking to `worker`; answers come back on
    /// `replies`.
    pub(crate) fn new(
        state: AppState,
        worker: Worker,
        replies: mpsc::UnboundedSender<AppMsg>,
        default_relay: &str,
    ) -> Self {
        let queue = Queue::default();
        let mut app = App {
            state,
            sidebar: Sidebar::new(queue.clone()),
            chat: ChatView::new(),
            composer: Composer::new(queue.clone()),
            status: StatusLine,
            help: Help::new(queue.clone()),
            info: Info::new(queue.clone()),
            safety: Safety::new(queue.clone()),
            first_run: FirstRun::new(queue.clone(), default_relay),
            queue,
            worker,
            replies,
            focus: Pane::Composer,
            size: Rect::new(0, 0, 80, 24),
            last_typing: 0,
            unreported_read: None,
            quit: false,
        };
        app.set_focus(Pane::Composer);
        app
    }

    /// `/quit` or Ctrl-C was pressed.
    pub(crate) fn should_quit(&self) -> bool {
        self.quit
    }

    /// The pane with the keyboard.
    #[cfg(test)]
    pub(crate) fn focus(&self) -> Pane {
        self.focus
    }

    /// The chat's scroll offset (tests).
    #[cfg(test)]
    pub(crate) fn chat_scroll(&self) -> usize {
        self.chat.scroll()
    }

    /// The composer (tests).
    #[cfg(test)]
    pub(crate) fn composer_mut(&mut self) -> &mut Composer {
        &mut self.composer
    }

    fn set_focus(&mut self, pane: Pane) {
        self.focus = pane;
        self.sidebar.focused = pane == Pane::Sidebar;
        self.chat.focused = pane == Pane::Chat;
        self.composer.focused = pane == Pane::Composer;
        if pane == Pane::Sidebar
            && let Some(id) = self.state.focused
        {
            self.sidebar.select(&self.state, id);
        }
    }

    fn areas(&self) -> Areas {
        let inner_w = self.size.width.saturating_sub(2);
        layout(self.size, self.focus, self.composer.rows(inner_w))
    }

    /// Handles one message of the UI loop.
    pub(crate) fn handle(&mut self, msg: AppMsg) {
        match msg {
            AppMsg::Input(ev) => self.event(&ev),
            AppMsg::Worker(ev) => {
                // Only a reader scrolled up needs the row count kept.
                let chat = self.areas().chat.filter(|_| self.chat.is_scrolled());
                let before = chat.map(|r| total_rows(&self.state, r));
                let before_focus = self.state.focused;
                if let Some(read) = self.state.apply(ev) {
                    if self.unreported_read.is_some_and(|(c, _)| c != read.0) {
                        self.flush();
                    }
                    self.unreported_read = Some(read);
                }
                if let (Some(r), Some(n)) = (chat, before)
                    && self.state.focused == before_focus
                {
                    self.chat.hold(total_rows(&self.state, r).saturating_sub(n));
                }
            }
            AppMsg::Outcome(o) => {
                let before = self.state.focused;
                self.state.apply_outcome(o);
                if self.state.focused != before {
                    self.opened();
                }
            }
            AppMsg::Tick(now) => self.state.tick(now),
        }
        self.process_queue();
        if let Some(chat) = self.areas().chat {
            self.chat.fit(&self.state, chat);
        }
    }

    /// Sends what piled up while a burst of messages was handled: call
    /// once the loop's queue is empty, before drawing.
    pub(crate) fn flush(&mut self) {
        if let Some((conv, id)) = self.unreported_read.take() {
            self.worker.mark_read(conv, id);
        }
    }

    /// Routes a terminal event.
    pub(crate) fn event(&mut self, ev: &Event) {
        if let Event::Resize(w, h) = ev {
            self.size = Rect::new(0, 0, *w, *h);
            return;
        }
        if let Some(k) = key(ev)
            && (is_ctrl(k, 'c') || is_ctrl(k, 'q'))
        {
            self.quit = true;
            return;
        }
        match self.state.screen {
            Screen::Starting => return,
            Screen::FirstRun => {
                self.first_run.event(ev, &self.state);
                return;
            }
            Screen::Main => {}
        }
        // An overlay takes everything.
        let overlay = match &self.state.overlay {
            Some(Overlay::Help) => Some(&mut self.help as &mut dyn Component),
            Some(Overlay::Safety(_)) => Some(&mut self.safety as &mut dyn Component),
            Some(Overlay::Info { .. }) => Some(&mut self.info as &mut dyn Component),
            None => None,
        };
        if let Some(c) = overlay {
            c.event(ev, &self.state);
            return;
        }
        if let Event::Mouse(m) = ev {
            self.mouse(ev, m.kind, Position::new(m.column, m.row));
            return;
        }
        let used = match self.focus {
            Pane::Sidebar => self.sidebar.event(ev, &self.state),
            Pane::Chat => self.chat.event(ev, &self.state),
            Pane::Composer => {
                let r = self.composer.event(ev, &self.state);
                if r == EventState::NotConsumed {
                    // PageUp/PageDown scroll the chat from the composer.
                    self.chat.event(ev, &self.state)
                } else {
                    r
                }
            }
        };
        if used == EventState::Consumed {
            return;
        }
        self.global_key(ev);
    }

    fn global_key(&mut self, ev: &Event) {
        let Some(k) = key(ev) else { return };
        let typing = self.focus == Pane::Composer;
        match k.code {
            KeyCode::Tab => self.set_focus(self.focus.cycle(true)),
            KeyCode::BackTab => self.set_focus(self.focus.cycle(false)),
            KeyCode::F(1) => self.state.overlay = Some(Overlay::Help),
            KeyCode::Char('?') if !typing => self.state.overlay = Some(Overlay::Help),
            KeyCode::Char('i') | KeyCode::Enter if !typing && self.focus == Pane::Chat => {
                self.set_focus(Pane::Composer);
            }
            KeyCode::Char('/') if !typing && is_plain(k, k.code) => {
                self.set_focus(Pane::Composer);
                self.composer.set_text("/");
            }
            KeyCode::Char('h') | KeyCode::Left if self.focus == Pane::Chat => {
                self.set_focus(Pane::Sidebar);
            }
            KeyCode::Esc => match self.focus {
                Pane::Composer => self.set_focus(Pane::Chat),
                Pane::Sidebar => self.set_focus(Pane::Chat),
                Pane::Chat => self.chat.reset(),
            },
            _ => {}
        }
    }

    fn mouse(&mut self, ev: &Event, kind: MouseEventKind, at: Position) {
        let a = self.areas();
        let over_sidebar = a.sidebar.is_some_and(|r| r.contains(at));
        match kind {
            MouseEventKind::ScrollUp | MouseEventKind::ScrollDown => {
                if over_sidebar {
                    self.sidebar.event(ev, &self.state);
                } else {
                    self.chat.event(ev, &self.state);
                }
            }
            MouseEventKind::Down(MouseButton::Left) => {
                if let Some(r) = a.sidebar.filter(|r| r.contains(at)) {
                    self.set_focus(Pane::Sidebar);
                    self.sidebar.click(&self.state, r, at.y);
                } else if a.chat.is_some_and(|r| r.contains(at)) {
                    self.set_focus(Pane::Chat);
                } else if a.composer.contains(at) {
                    self.set_focus(Pane::Composer);
                }
            }
            _ => {}
        }
    }

    /// After the open conversation changed.
    fn opened(&mut self) {
        self.chat.reset();
        if let Some(id) = self.state.focused {
            self.sidebar.select(&self.state, id);
        }
    }

    fn open(&mut self, id: ConversationId) {
        if let Some(m) = self.state.focus(id) {
            self.worker.mark_read(id, m);
        }
        self.opened();
        // Opening a conversation is for writing in it (and on a narrow
        // screen the sidebar covered the chat).
        self.set_focus(Pane::Composer);
    }

    /// Awaits a reply off the UI task and posts its outcome back.
    fn spawn<T: Send + 'static>(
        &self,
        reply: impl Future<Output = Result<T, WorkerError>> + Send + 'static,
        wrap: impl FnOnce(Result<T, WorkerError>) -> Outcome + Send + 'static,
    ) {
        let tx = self.replies.clone();
        tokio::spawn(async move {
            let r = reply.await;
            let _ = tx.send(AppMsg::Outcome(wrap(r)));
        });
    }

    fn room_or_focused(&mut self, room: Option<RoomName>) -> Option<(RoomId, String)> {
        match room {
            Some(n) => match self.state.rooms.iter().find(|r| r.name == n) {
                Some(r) => Some((r.id, r.name.to_string())),
                None => {
                    self.state.notify(format!("you are not in {n}"), true);
                    None
                }
            },
            None => match self.state.focused {
                Some(ConversationId::Room(r)) => {
                    Some((r, self.state.title(ConversationId::Room(r))))
                }
                _ => {
                    self.state
                        .notify("open a room first, or name one: #room", true);
                    None
                }
            },
        }
    }

    fn user_or_focused(&mut self, user: Option<Username>) -> Option<UserId> {
        match user {
            Some(n) => match self.state.contact_named(&n) {
                Some(c) => Some(c.id),
                None => {
                    self.state
                        .notify(format!("{n} is not a contact; /msg {n} first"), true);
                    None
                }
            },
            None => match self.state.focused {
                Some(ConversationId::Direct(u)) => Some(u),
                _ => {
                    self.state
                        .notify("open a 1:1 chat first, or name a user", true);
                    None
                }
            },
        }
    }

    fn run(&mut self, cmd: Command) {
        let w = self.worker.clone();
        match cmd {
            Command::Msg { user, text } => {
                let reply = w.open_direct(user);
                let w2 = w.clone();
                let tx = self.replies.clone();
                tokio::spawn(async move {
                    let r = await_reply(reply).await;
                    if let (Ok(c), Some(t)) = (&r, &text) {
                        let sent =
                            await_reply(w2.send_text(ConversationId::Direct(c.id), t.clone()))
                                .await;
                        let _ = tx.send(AppMsg::Outcome(Outcome::Sent(
                            ConversationId::Direct(c.id),
                            sent,
                        )));
                    }
                    let _ = tx.send(AppMsg::Outcome(Outcome::Opened(r)));
                });
            }
            Command::RoomCreate { name } => {
                self.spawn(await_reply(w.create_room(name)), Outcome::Joined)
            }
            Command::Invite { user, room } => {
                if let Some((id, rn)) = self.room_or_focused(room) {
                    let what = format!("invited {user} to {rn}");
                    self.spawn(await_reply(w.invite(id, user)), move |r| {
                        Outcome::Done(what, r)
                    });
                }
            }
            Command::Link { room } => {
                if let Some((id, _)) = self.room_or_focused(room) {
                    self.spawn(await_reply(w.create_link(id)), Outcome::Link);
                }
            }
            Command::Join { target } => self.spawn(await_reply(w.join(target)), Outcome::Joined),
            Command::Leave { room } => {
                if let Some((id, rn)) = self.room_or_focused(room) {
                    let what = format!("left {rn}");
                    self.spawn(await_reply(w.leave(id)), move |r| Outcome::Done(what, r));
                }
            }
            Command::Kick { user, room } => {
                if let Some((id, rn)) = self.room_or_focused(room) {
                    let what = format!("removed {user} from {rn}");
                    self.spawn(await_reply(w.kick(id, user)), move |r| {
                        Outcome::Done(what, r)
                    });
                }
            }
            Command::Members { room } => {
                if let Some((id, rn)) = self.room_or_focused(room) {
                    self.spawn(await_reply(w.members(id)), move |r| Outcome::Members(rn, r));
                }
            }
            Command::File { path } => match self.state.focused {
                Some(conv) => self.spawn(await_reply(w.send_file(conv, path)), move |r| {
                    Outcome::Sent(conv, r)
                }),
                None => self.state.notify("open a conversation first", true),
            },
            Command::Safety { user } => {
                if let Some(id) = self.user_or_focused(user) {
                    self.spawn(await_reply(w.safety_number(id)), Outcome::Safety);
                }
            }
            Command::Verify { user } => {
                if let Some(id) = self.user_or_focused(user) {
                    self.spawn(await_reply(w.verify(id)), Outcome::Verified);
                }
            }
            Command::Profile { display_name } => {
                let what = format!("display name set to {display_name}");
                self.spawn(await_reply(w.set_profile(display_name)), move |r| {
                    Outcome::Done(what, r)
                });
            }
            Command::Search { query } => {
                let q = query.clone();
                self.spawn(await_reply(w.search(query)), move |r| Outcome::Search(q, r));
            }
            Command::Help => self.state.overlay = Some(Overlay::Help),
            Command::Quit => self.quit = true,
        }
    }

    /// Handles every queued request.
    pub(crate) fn process_queue(&mut self) {
        while let Some(ev) = self.queue.pop() {
            match ev {
                InternalEvent::Open(id) => self.open(id),
                InternalEvent::AcceptInvitation(room) => {
                    let name = self
                        .state
                        .invitations
                        .iter()
                        .find(|i| i.room == room)
                        .map(|i| i.room_name.clone());
                    if let Some(n) = name {
                        self.spawn(
                            await_reply(self.worker.join(JoinTarget::Room(n))),
                            Outcome::Joined,
                        );
                    }
                }
                InternalEvent::DeclineInvitation(room) => {
                    let name = self.state.title(ConversationId::Room(room));
                    let label = self
                        .state
                        .invitations
                        .iter()
                        .find(|i| i.room == room)
                        .map_or(name, |i| i.room_name.to_string());
                    self.state.invitations.retain(|i| i.room != room);
                    let what = format!("declined {label}");
                    self.spawn(await_reply(self.worker.decline(room)), move |r| {
                        Outcome::Done(what, r)
                    });
                }
                InternalEvent::SendText(text) => match self.state.focused {
                    Some(conv) => {
                        self.chat.reset();
                        self.spawn(await_reply(self.worker.send_text(conv, text)), move |r| {
                            Outcome::Sent(conv, r)
                        });
                    }
                    None => self.state.notify("open a conversation first", true),
                },
                InternalEvent::Run(cmd) => self.run(cmd),
                InternalEvent::Notify(text, error) => self.state.notify(text, error),
                InternalEvent::Typing => {
                    if let Some(conv) = self.state.focused
                        && self.state.now.0.saturating_sub(self.last_typing) >= TYPING_EVERY_MS
                    {
                        self.last_typing = self.state.now.0;
                        self.worker.typing(conv);
                    }
                }
                InternalEvent::CloseOverlay => self.state.overlay = None,
                InternalEvent::Verify(user) => {
                    self.spawn(await_reply(self.worker.verify(user)), Outcome::Verified);
                }
                InternalEvent::SignIn {
                    register,
                    relay,
                    name,
                } => {
                    self.state.signing_in = true;
                    self.state.sign_in_error = None;
                    let reply = if register {
                        self.worker.register(relay, name)
                    } else {
                        self.worker.sign_in(relay, name)
                    };
                    self.spawn(await_reply(reply), Outcome::SignedIn);
                }
                InternalEvent::Quit => self.quit = true,
            }
        }
    }

    /// Draws everything. Reads only.
    pub(crate) fn draw(&self, f: &mut Frame<'_>) {
        let area = f.area();
        if area.width == 0 || area.height == 0 {
            return;
        }
        match self.state.screen {
            Screen::Starting => {
                f.render_widget(
                    ratatui::widgets::Paragraph::new("Starting…").centered(),
                    Rect::new(0, area.height / 2, area.width, 1),
                );
                self.status
                    .draw(f, Rect::new(0, area.height - 1, area.width, 1), &self.state);
            }
            Screen::FirstRun => {
                let body = Rect::new(0, 0, area.width, area.height.saturating_sub(1));
                if body.height > 0 {
                    self.first_run.draw(f, body, &self.state);
                }
                self.status
                    .draw(f, Rect::new(0, area.height - 1, area.width, 1), &self.state);
            }
            Screen::Main => {
                let inner_w = area.width.saturating_sub(2);
                let a = layout(area, self.focus, self.composer.rows(inner_w));
                if let Some(r) = a.sidebar
                    && r.width > 0
                    && r.height > 0
                {
                    self.sidebar.draw(f, r, &self.state);
                }
                if let Some(r) = a.chat {
                    self.chat.draw(f, r, &self.state);
                }
                if a.composer.width > 0 && a.composer.height > 0 {
                    self.composer.draw(f, a.composer, &self.state);
                    if self.focus == Pane::Composer {
                        let bounds = a.chat.unwrap_or(a.composer);
                        Palette::draw(f, a.composer, bounds, self.composer.text());
                    }
                }
                self.status.draw(f, a.status, &self.state);
                match &self.state.overlay {
                    Some(Overlay::Help) => self.help.draw(f, area, &self.state),
                    Some(Overlay::Safety(_)) => self.safety.draw(f, area, &self.state),
                    Some(Overlay::Info { .. }) => self.info.draw(f, area, &self.state),
                    None => {}
                }
            }
        }
    }
}
