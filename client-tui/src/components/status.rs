//! The status line: transport and reconnect state, transfers, notices.

use ratatui::Frame;
use ratatui::crossterm::event::Event;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use unicode_width::UnicodeWidthStr;

use super::chat::progress_bar;
use super::{Component, EventState, truncate};
use crate::state::AppState;
use crate::worker::{ConnectionState, Transport};

/// How the connection reads in the status line.
pub(crate) fn connection_text(c: ConnectionState) -> (String, Color) {
    let t = |t: Transport| match t {
        Transport::Quic => "QUIC",
        Transport::WebSocket => "WebSocket",
    };
    match c {
        ConnectionState::Offline => ("○ offline".to_owned(), Color::DarkGray),
        ConnectionState::Connecting { transport } => {
            (format!("◌ connecting ({})", t(transport)), Color::Yellow)
        }
        ConnectionState::Connected { transport } => (format!("● {}", t(transport)), Color::Green),
        ConnectionState::Reconnecting {
            attempt,
            retry_in_ms,
        } => (
            format!(
                "↻ reconnecting: attempt {attempt} in {}s",
                retry_in_ms.div_ceil(1000)
            ),
            Color::Red,
        ),
    }
}

/// The status line. Stateless.
pub(crate) struct StatusLine;

impl Component for StatusLine {
    fn event(&mut self, _ev: &Event, _state: &AppState) -> EventState {
        EventState::NotConsumed
    }

    fn draw(&self, f: &mut Frame<'_>, area: Rect, state: &AppState) {
        if area.width == 0 || area.height == 0 {
            return;
        }
        let width = usize::from(area.width);
        let (conn, color) = connection_text(state.connection);
        let right = match &state.account {
            Some(a) => format!(" {} · ? help ", a.name),
            None => " ? help ".to_owned(),
        };
        let mut middle: Vec<Span<'static>> = Vec::new();
        if let Some((name, done, total)) = state.transfers().first() {
            middle.push(Span::styled(
                format!(
                    " ↑ {} {} ",
                    truncate(name, 16),
                    progress_bar(*done, *total, 18)
                ),
                Style::new().fg(Color::Green),
            ));
        }
        if let Some(n) = &state.notice {
            let style = if n.error {
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
            } else {
                Style::new().fg(Color::White)
            };
            middle.push(Span::styled(format!(" {} ", n.text), style));
        }
        // The connection state always shows; then the middle; the right part
        // only when everything fits.
        let conn = truncate(&format!(" {conn} "), width);
        let mut left = width.saturating_sub(conn.width());
        let mut spans = vec![Span::styled(
            conn,
            Style::new().fg(color).add_modifier(Modifier::BOLD),
        )];
        let middle_w: usize = middle.iter().map(|s| s.content.width()).sum();
        let show_right = middle_w + right.width() <= left;
        if show_right {
            left -= right.width();
        }
        for s in middle {
            if left == 0 {
                break;
            }
            let t = truncate(&s.content, left);
            left = left.saturating_sub(t.width());
            spans.push(Span::styled(t, s.style));
        }
        if show_right {
            spans.push(Span::raw(" ".repeat(left)));
            spans.push(Span::styled(right, Style::new().fg(Color::Gray)));
        }
        f.render_widget(
            Paragraph::new(Line::from(spans)).style(Style::new().bg(Color::Black)),
            Rect::new(area.x, area.y, area.width, 1),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_state_reads_with_attempt_and_delay() {
        let (t, _) = connection_text(ConnectionState::Reconnecting {
            attempt: 3,
            retry_in_ms: 4_200,
        });
        assert_eq!(t, "↻ reconnecting: attempt 3 in 5s");
        let (t, _) = connection_text(ConnectionState::Connected {
            transport: Transport::WebSocket,
        });
        assert_eq!(t, "● WebSocket");
    }
}
