//! A titled list over the main screen: members, search results, an invite
//! link.

use ratatui::Frame;
use ratatui::crossterm::event::{Event, KeyCode};
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::{Component, EventState, centered, is_plain, key};
use crate::queue::{InternalEvent, Queue};
use crate::state::{AppState, Overlay};

/// The list overlay.
pub(crate) struct Info {
    queue: Queue,
    scroll: u16,
}

impl Info {
    /// An overlay that posts to `queue`.
    pub(crate) fn new(queue: Queue) -> Self {
        Info { queue, scroll: 0 }
    }
}

impl Component for Info {
    fn event(&mut self, ev: &Event, _state: &AppState) -> EventState {
        let Some(k) = key(ev) else {
            return EventState::NotConsumed;
        };
        match k.code {
            KeyCode::Esc | KeyCode::Char('q') | KeyCode::Enter => {
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
        EventState::Consumed
    }

    fn draw(&self, f: &mut Frame<'_>, area: Rect, state: &AppState) {
        let Some(Overlay::Info { title, lines }) = &state.overlay else {
            return;
        };
        let h = u16::try_from(lines.len())
            .unwrap_or(u16::MAX)
            .saturating_add(2);
        let r = centered(area, 72, h.max(5));
        f.render_widget(Clear, r);
        f.render_widget(
            Paragraph::new(
                lines
                    .iter()
                    .map(|l| Line::raw(l.clone()))
                    .collect::<Vec<_>>(),
            )
            .wrap(Wrap { trim: false })
            .scroll((self.scroll, 0))
            .block(
                Block::new()
                    .borders(Borders::ALL)
                    .border_style(Style::new().fg(Color::Cyan))
                    .title(format!(" {title} "))
                    .title_bottom(Line::from(" Esc to close ").right_aligned()),
            ),
            r,
        );
    }
}
