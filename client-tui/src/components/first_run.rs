//! The first-run screen: register a new account, or sign in on a new device
//! of an existing one. No passwords: the device's keys are the account.

use ratatui::Frame;
use ratatui::crossterm::event::{Event, KeyCode};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use spider_protocol::name::Username;
use unicode_width::UnicodeWidthStr;

use super::{Component, EventState, centered, is_ctrl, key, truncate};
use crate::queue::{InternalEvent, Queue};
use crate::state::AppState;

/// Which field has the keyboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Mode,
    Name,
    Relay,
}

/// The first-run form.
pub(crate) struct FirstRun {
    queue: Queue,
    register: bool,
    name: String,
    relay: String,
    field: Field,
    error: Option<String>,
}

/// Longest relay address accepted (a DNS name is at most 253 bytes, plus a port).
const MAX_RELAY_LEN: usize = 260;

impl FirstRun {
    /// The form, with a default relay address.
    pub(crate) fn new(queue: Queue, relay: &str) -> Self {
        FirstRun {
            queue,
            register: true,
            name: String::new(),
            relay: relay.to_owned(),
            field: Field::Name,
            error: None,
        }
    }

    fn submit(&mut self) {
        let parsed = if self.register {
            Username::parse_new(&self.name)
        } else {
            Username::parse(&self.name)
        };
        match parsed {
            Err(e) => self.error = Some(format!("username: {e}")),
            Ok(_) if self.relay.trim().is_empty() => {
                self.error = Some("relay address is empty".to_owned());
            }
            Ok(name) => {
                self.error = None;
                self.queue.push(InternalEvent::SignIn {
                    register: self.register,
                    relay: self.relay.trim().to_owned(),
                    name,
                });
            }
        }
    }

    fn input(&mut self) -> Option<&mut String> {
        match self.field {
            Field::Name => Some(&mut self.name),
            Field::Relay => Some(&mut self.relay),
            Field::Mode => None,
        }
    }
}

impl Component for FirstRun {
    fn event(&mut self, ev: &Event, state: &AppState) -> EventState {
        let Some(k) = key(ev) else {
            return EventState::NotConsumed;
        };
        if is_ctrl(k, 'c') {
            return EventState::NotConsumed;
        }
        if state.signing_in {
            return EventState::Consumed;
        }
        let order = [Field::Mode, Field::Name, Field::Relay];
        let pos = order.iter().position(|f| *f == self.field).unwrap_or(0);
        match k.code {
            KeyCode::Tab | KeyCode::Down => self.field = order[(pos + 1) % 3],
            KeyCode::BackTab | KeyCode::Up => self.field = order[(pos + 2) % 3],
            KeyCode::Left | KeyCode::Right | KeyCode::Char(' ') if self.field == Field::Mode => {
                self.register = !self.register;
            }
            KeyCode::Enter => self.submit(),
            KeyCode::Esc => self.queue.push(InternalEvent::Quit),
            KeyCode::Backspace => {
                if let Some(s) = self.input() {
                    s.pop();
                }
            }
            KeyCode::Char(c) if !c.is_control() => {
                if let Some(s) = self.input()
                    && s.len() < MAX_RELAY_LEN
                {
                    s.push(c);
                }
            }
            _ => return EventState::NotConsumed,
        }
        EventState::Consumed
    }

    fn draw(&self, f: &mut Frame<'_>, area: Rect, state: &AppState) {
        let r = centered(area, 66, 15);
        f.render_widget(Clear, r);
        let block = Block::new()
            .borders(Borders::ALL)
            .border_style(Style::new().fg(Color::Cyan))
            .title(" Welcome to Spider ");
        let inner = block.inner(r);
        f.render_widget(block, r);
        let w = usize::from(inner.width);
        let focus = |f: Field| {
            if f == self.field {
                Style::new().fg(Color::Black).bg(Color::Cyan)
            } else {
                Style::new()
            }
        };
        let radio = |on: bool| if on { "(•)" } else { "( )" };
        let field_w = w.saturating_sub(12).max(1);
        let boxed = |s: &str| {
            let shown = if s.width() > field_w {
                // Show the end, where typing happens.
                let skip = s.chars().count().saturating_sub(field_w.saturating_sub(1));
                format!("…{}", s.chars().skip(skip).collect::<String>())
            } else {
                s.to_owned()
            };
            let pad = field_w.saturating_sub(shown.width());
            format!("{shown}{}", "_".repeat(pad))
        };
        let mut lines = vec![
            Line::styled(
                "End-to-end encrypted chat. No passwords: this device's keys are your account.",
                Style::new().fg(Color::Gray),
            ),
            Line::raw(""),
            Line::from(vec![
                Span::styled(
                    format!("{} Register a new account", radio(self.register)),
                    focus(Field::Mode),
                ),
                Span::raw("   "),
                Span::styled(
                    format!("{} Sign in on a new device", radio(!self.register)),
                    focus(Field::Mode),
                ),
            ]),
            Line::raw(""),
            Line::from(vec![
                Span::raw("Username  "),
                Span::styled(boxed(&self.name), focus(Field::Name)),
            ]),
            Line::from(vec![
                Span::raw("Relay     "),
                Span::styled(boxed(&self.relay), focus(Field::Relay)),
            ]),
            Line::raw(""),
        ];
        if self.register {
            lines.push(Line::styled(
                "3-32 letters a-z, digits, _ or . — starting with a letter.",
                Style::new().fg(Color::DarkGray),
            ));
        } else {
            lines.push(Line::styled(
                "Approve this device from one you are already signed in on.",
                Style::new().fg(Color::DarkGray),
            ));
        }
        let err = self.error.as_ref().or(state.sign_in_error.as_ref());
        if state.signing_in {
            lines.push(Line::styled(
                if self.register {
                    "Registering…"
                } else {
                    "Waiting for approval…"
                },
                Style::new().fg(Color::Yellow),
            ));
        } else if let Some(e) = err {
            lines.push(Line::styled(
                truncate(e, w.max(1)),
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            ));
        } else {
            lines.push(Line::raw(""));
        }
        lines.push(Line::raw(""));
        lines.push(Line::styled(
            "Tab next field · ←→ switch mode · Enter continue · Esc quit",
            Style::new().fg(Color::DarkGray),
        ));
        f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
    }
}
