//! The help overlay (`?`, F1, `/help`): keys and commands.

use ratatui::Frame;
use ratatui::crossterm::event::{Event, KeyCode};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use super::command::COMMANDS;
use super::{Component, EventState, centered, is_plain, key};
use crate::queue::{InternalEvent, Queue};
use crate::state::AppState;

/// Key bindings as the overlay lists them.
pub(crate) const KEYS: &[(&str, &str)] = &[
    ("Tab / Shift-Tab", "next / previous pane"),
    ("j k, ↓ ↑", "move or scroll"),
    ("g G, Home End", "first / last"),
    ("PgUp PgDn, wheel", "scroll the chat"),
    ("Enter", "open (sidebar) / send (composer)"),
    ("Alt-Enter, Ctrl-J", "newline in the composer"),
    ("x", "decline the selected invitation"),
    ("i, /", "write (from the chat or sidebar)"),
    ("Esc", "close / back to the chat"),
    ("?, F1", "this help"),
    ("Ctrl-C, /quit", "quit"),
];

/// The help overlay.
pub(crate) struct Help {
    queue: Queue,
    scroll: u16,
}

impl Help {
    /// A help overlay that posts to `queue`.
    pub(crate) fn new(queue: Queue) -> Self {
        Help { queue, scroll: 0 }
    }
}

fn lines() -> Vec<Line<'static>> {
    let head = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);
    let mut v = vec![Line::styled("Keys", head)];
    for (k, d) in KEYS {
        v.push(Line::from(vec![
            Span::styled(
                format!("  {k:<19}"),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::raw(*d),
        ]));
    }
    v.push(Line::raw(""));
    v.push(Line::styled("Commands", head));
    for (_, u, d) in COMMANDS {
        v.push(Line::from(vec![
            Span::styled(
                format!("  {u:<24}"),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::raw(*d),
        ]));
    }
    v
}

impl Component for Help {
    fn event(&mut self, ev: &Event, _state: &AppState) -> EventState {
        let Some(k) = key(ev) else {
            return EventState::NotConsumed;
        };
        match k.code {
            KeyCode::Esc | KeyCode::Char('q' | '?') | KeyCode::F(1) | KeyCode::Enter => {
                self.scroll = 0;
                self.queue.push(InternalEvent::CloseOverlay);
            }
            KeyCode::Down | KeyCode::Char('j') if is_plain(k, k.code) => {
                self.scroll = self.scroll.saturating_add(1);
            }
            KeyCode::Up | KeyCode::Char('k') if is_plain(k, k.code) => {
                self.scroll = self.scroll.saturating_sub(1);
            }
            _ => {}
        }
        // Modal: nothing gets past the overlay.
        EventState::Consumed
    }

    fn draw(&self, f: &mut Frame<'_>, area: Rect, _state: &AppState) {
        let lines = lines();
        let h = u16::try_from(lines.len())
            .unwrap_or(u16::MAX)
            .saturating_add(2);
        let r = centered(area, 64, h);
        let max_scroll = h.saturating_sub(r.height);
        f.render_widget(Clear, r);
        f.render_widget(
            Paragraph::new(lines)
                .scroll((self.scroll.min(max_scroll), 0))
                .block(
                    Block::new()
                        .borders(Borders::ALL)
                        .border_style(Style::new().fg(Color::Cyan))
                        .title(" Help ")
                        .title_bottom(Line::from(" Esc to close ").right_aligned()),
                ),
            r,
        );
    }
}
