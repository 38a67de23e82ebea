//! The safety-number screen: the 60 digits in 12 groups of 5, whether they
//! are verified, and a warning that cannot be missed when the contact's
//! identity key changed.

use ratatui::Frame;
use ratatui::crossterm::event::{Event, KeyCode};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::{Component, EventState, centered, key, rows_needed};
use crate::queue::{InternalEvent, Queue};
use crate::state::{AppState, Overlay};
use crate::worker::SafetyInfo;

/// The safety-number screen.
pub(crate) struct Safety {
    queue: Queue,
}

impl Safety {
    /// A screen that posts to `queue`.
    pub(crate) fn new(queue: Queue) -> Self {
        Safety { queue }
    }
}

fn lines(info: &SafetyInfo) -> Vec<Line<'static>> {
    let mut v = Vec::new();
    if info.identity_changed {
        let warn = Style::new()
            .fg(Color::White)
            .bg(Color::Red)
            .add_modifier(Modifier::BOLD);
        v.push(Line::styled(
            format!("⚠ {}'s identity key has changed.", info.user),
            warn,
        ));
        v.push(Line::styled(
            "This happens when they reinstall Spider or use a new device, but it is also what an attacker in the middle looks like. Compare the number below with them in person or on a call before you trust new messages.",
            Style::new().fg(Color::Red),
        ));
        v.push(Line::raw(""));
    }
    v.push(Line::raw(format!(
        "Compare this number with the one {} sees for you. If every digit matches, no one is in the middle.",
        info.user
    )));
    v.push(Line::raw(""));
    let groups = info.groups();
    let digits = Style::new().add_modifier(Modifier::BOLD);
    for row in groups.chunks(4) {
        v.push(Line::styled(format!("    {}", row.join("  ")), digits));
    }
    v.push(Line::raw(""));
    if info.verified {
        v.push(Line::from(vec![
            Span::styled(
                "✔ Verified",
                Style::new().fg(Color::Green).add_modifier(Modifier::BOLD),
            ),
            Span::raw("  ·  Esc close"),
        ]));
    } else {
        v.push(Line::from(vec![
            Span::styled(
                "Not verified",
                Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
            ),
            Span::raw("  ·  v: mark verified once the numbers match  ·  Esc close"),
        ]));
    }
    v
}

impl Component for Safety {
    fn event(&mut self, ev: &Event, state: &AppState) -> EventState {
        let Some(k) = key(ev) else {
            return EventState::NotConsumed;
        };
        match k.code {
            KeyCode::Esc | KeyCode::Char('q') | KeyCode::Enter => {
                self.queue.push(InternalEvent::CloseOverlay);
            }
            KeyCode::Char('v') => {
                if let Some(Overlay::Safety(info)) = &state.overlay
                    && !info.verified
                {
                    self.queue.push(InternalEvent::Verify(info.id));
                }
            }
            _ => {}
        }
        EventState::Consumed
    }

    fn draw(&self, f: &mut Frame<'_>, area: Rect, state: &AppState) {
        let Some(Overlay::Safety(info)) = &state.overlay else {
            return;
        };
        let lines = lines(info);
        let inner_w = usize::from(area.width.min(70).saturating_sub(2));
        let h = rows_needed(&lines, inner_w).saturating_add(2);
        let r = centered(area, 70, h);
        f.render_widget(Clear, r);
        let border = if info.identity_changed {
            Color::Red
        } else {
            Color::Cyan
        };
        f.render_widget(
            Paragraph::new(lines).wrap(Wrap { trim: false }).block(
                Block::new()
                    .borders(Borders::ALL)
                    .border_style(Style::new().fg(border))
                    .title(format!(" Safety number with {} ", info.user)),
            ),
            r,
        );
    }
}
