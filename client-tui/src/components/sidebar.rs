//! Contacts with presence, rooms, and pending invitations, each with its
//! unread count.

use ratatui::Frame;
use ratatui::crossterm::event::{Event, KeyCode, MouseEventKind};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use spider_protocol::ids::{RoomId, UserId};
use spider_protocol::message::Presence;
use unicode_width::UnicodeWidthStr;

use super::{Component, EventState, is_plain, key, truncate};
use crate::queue::{InternalEvent, Queue};
use crate::state::{AppState, presence_glyph};
use crate::worker::ConversationId;

/// What a selectable row is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Item {
    /// A 1:1 chat.
    Contact(UserId),
    /// A room.
    Room(RoomId),
    /// An invitation to a room.
    Invitation(RoomId),
}

/// The selectable rows, in order.
pub(crate) fn items(state: &AppState) -> Vec<Item> {
    let mut v: Vec<Item> = state.contacts.iter().map(|c| Item::Contact(c.id)).collect();
    v.extend(state.rooms.iter().map(|r| Item::Room(r.id)));
    v.extend(state.invitations.iter().map(|i| Item::Invitation(i.room)));
    v
}

/// The sidebar.
pub(crate) struct Sidebar {
    queue: Queue,
    selected: usize,
    /// Has the keyboard.
    pub(crate) focused: bool,
}

impl Sidebar {
    /// A sidebar that posts to `queue`.
    pub(crate) fn new(queue: Queue) -> Self {
        Sidebar {
            queue,
            selected: 0,
            focused: false,
        }
    }

    /// Moves the selection to a conversation's row.
    pub(crate) fn select(&mut self, state: &AppState, id: ConversationId) {
        let want = match id {
            ConversationId::Direct(u) => Item::Contact(u),
            ConversationId::Room(r) => Item::Room(r),
        };
        if let Some(i) = items(state).iter().position(|i| *i == want) {
            self.selected = i;
        }
    }

    /// Moves the selection by `delta` rows, within bounds.
    pub(crate) fn step(&mut self, state: &AppState, delta: isize) {
        let n = items(state).len();
        if n == 0 {
            self.selected = 0;
            return;
        }
        self.selected = self.selected.saturating_add_signed(delta).min(n - 1);
    }

    fn activate(&self, state: &AppState) {
        match items(state).get(self.selected) {
            Some(Item::Contact(u)) => self
                .queue
                .push(InternalEvent::Open(ConversationId::Direct(*u))),
            Some(Item::Room(r)) => self
                .queue
                .push(InternalEvent::Open(ConversationId::Room(*r))),
            Some(Item::Invitation(r)) => self.queue.push(InternalEvent::AcceptInvitation(*r)),
            None => {}
        }
    }

    fn row(&self, state: &AppState, item: Item, width: usize, selected: bool) -> Line<'static> {
        let (glyph, glyph_style, label, unread, open) = match item {
            Item::Contact(u) => {
                let c = state.contact(u);
                let p = c.map_or(Presence::Offline { last_seen: None }, |c| c.presence);
                let color = match p {
                    Presence::Online => Color::Green,
                    Presence::Away => Color::Yellow,
                    Presence::Offline { .. } => Color::DarkGray,
                };
                let warn = c.is_some_and(|c| c.identity_changed);
                let mut label = c.map_or_else(|| "?".to_owned(), |c| c.name.to_string());
                if warn {
                    label.push_str(" ⚠");
                }
                let id = ConversationId::Direct(u);
                (
                    presence_glyph(p),
                    Style::new().fg(color),
                    label,
                    state.unread(id),
                    state.focused == Some(id),
                )
            }
            Item::Room(r) => {
                let id = ConversationId::Room(r);
                (
                    ' ',
                    Style::new(),
                    state.title(id),
                    state.unread(id),
                    state.focused == Some(id),
                )
            }
            Item::Invitation(r) => {
                let label = state
                    .invitations
                    .iter()
                    .find(|i| i.room == r)
                    .map_or_else(String::new, |i| format!("{} ← {}", i.room_name, i.from));
                ('+', Style::new().fg(Color::Cyan), label, 0, false)
            }
        };
        let badge = if unread > 0 {
            format!(
                " {}",
                if unread > 99 {
                    "99+".to_owned()
                } else {
                    unread.to_string()
                }
            )
        } else {
            String::new()
        };
        // " ● " + label + padding + badge
        let room_for_label = width.saturating_sub(3 + badge.width());
        let label = truncate(&label, room_for_label);
        let pad = room_for_label.saturating_sub(label.width());
        let mut base = Style::new();
        if open {
            base = base.add_modifier(Modifier::BOLD);
        }
        if selected {
            base = base.add_modifier(Modifier::REVERSED);
        }
        let mut spans = vec![
            Span::styled(format!(" {glyph} "), glyph_style.patch(base)),
            Span::styled(label, base),
            Span::styled(" ".repeat(pad), base),
        ];
        if !badge.is_empty() {
            spans.push(Span::styled(
                badge,
                base.fg(Color::Yellow).add_modifier(Modifier::BOLD),
            ));
        }
        Line::from(spans)
    }
}

impl Component for Sidebar {
    fn event(&mut self, ev: &Event, state: &AppState) -> EventState {
        if let Event::Mouse(m) = ev {
            match m.kind {
                MouseEventKind::ScrollUp => self.step(state, -1),
                MouseEventKind::ScrollDown => self.step(state, 1),
                _ => return EventState::NotConsumed,
            }
            return EventState::Consumed;
        }
        if !self.focused {
            return EventState::NotConsumed;
        }
        let Some(k) = key(ev) else {
            return EventState::NotConsumed;
        };
        let n = items(state).len();
        match k.code {
            KeyCode::Down | KeyCode::Char('j') if is_plain(k, k.code) => self.step(state, 1),
            KeyCode::Up | KeyCode::Char('k') if is_plain(k, k.code) => self.step(state, -1),
            KeyCode::Home | KeyCode::Char('g') if is_plain(k, k.code) => self.selected = 0,
            KeyCode::End | KeyCode::Char('G') if is_plain(k, k.code) => {
                self.selected = n.saturating_sub(1);
            }
            KeyCode::PageDown => self.step(state, 10),
            KeyCode::PageUp => self.step(state, -10),
            KeyCode::Enter | KeyCode::Char('l') | KeyCode::Right => self.activate(state),
            KeyCode::Char('x') | KeyCode::Delete => {
                if let Some(Item::Invitation(r)) = items(state).get(self.selected) {
                    self.queue.push(InternalEvent::DeclineInvitation(*r));
                } else {
                    return EventState::NotConsumed;
                }
            }
            _ => return EventState::NotConsumed,
        }
        EventState::Consumed
    }

    fn draw(&self, f: &mut Frame<'_>, area: Rect, state: &AppState) {
        let border = if self.focused {
            Style::new().fg(Color::Cyan)
        } else {
            Style::new().fg(Color::DarkGray)
        };
        let block = Block::new().borders(Borders::RIGHT).border_style(border);
        let inner = block.inner(area);
        f.render_widget(block, area);
        let (lines, _, skip) = self.lines(state, inner);
        let h = usize::from(inner.height);
        let visible: Vec<Line<'static>> = lines.into_iter().skip(skip).take(h).collect();
        f.render_widget(Paragraph::new(visible), inner);
    }
}

impl Sidebar {
    /// The rows for the inner area: lines, the item index of each line
    /// (`None` for headers and hints), and how many lines are scrolled off
    /// the top so that the selection stays visible.
    fn lines(
        &self,
        state: &AppState,
        inner: Rect,
    ) -> (Vec<Line<'static>>, Vec<Option<usize>>, usize) {
        let width = usize::from(inner.width);
        let all = items(state);
        let selected = self.selected.min(all.len().saturating_sub(1));
        let mut lines: Vec<Line<'static>> = Vec::new();
        let mut index = Vec::new();
        let mut sel_row = 0;
        let header = |t: &str, n: usize| {
            Line::from(Span::styled(
                truncate(&format!("{t} ({n})"), width),
                Style::new().fg(Color::Gray).add_modifier(Modifier::BOLD),
            ))
        };
        let sections = [
            ("Contacts", state.contacts.len()),
            ("Rooms", state.rooms.len()),
            ("Invitations", state.invitations.len()),
        ];
        let mut idx = 0;
        for (title, count) in sections {
            if count == 0 && title == "Invitations" {
                continue;
            }
            lines.push(header(title, count));
            index.push(None);
            for _ in 0..count {
                if let Some(item) = all.get(idx) {
                    let is_sel = self.focused && idx == selected;
                    if idx == selected {
                        sel_row = lines.len();
                    }
                    lines.push(self.row(state, *item, width, is_sel));
                    index.push(Some(idx));
                }
                idx += 1;
            }
            if count == 0 {
                lines.push(Line::styled(
                    truncate(
                        if title == "Contacts" {
                            "  /msg @user"
                        } else {
                            "  /room create #name"
                        },
                        width,
                    ),
                    Style::new().fg(Color::DarkGray),
                ));
                index.push(None);
            }
        }
        let h = usize::from(inner.height);
        let skip = if h == 0 {
            0
        } else {
            sel_row.saturating_sub(h - 1)
        };
        (lines, index, skip)
    }

    /// A click at screen row `y` inside the sidebar drawn in `area`: selects
    /// and opens the row's item. Returns whether there was one.
    pub(crate) fn click(&mut self, state: &AppState, area: Rect, y: u16) -> bool {
        let inner = Block::new().borders(Borders::RIGHT).inner(area);
        if y < inner.y || y >= inner.y + inner.height {
            return false;
        }
        let (_, index, skip) = self.lines(state, inner);
        match index
            .get(skip + usize::from(y - inner.y))
            .copied()
            .flatten()
        {
            Some(i) => {
                self.selected = i;
                self.activate(state);
                true
            }
            None => false,
        }
    }
}
