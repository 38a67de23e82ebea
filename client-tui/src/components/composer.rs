//! The multi-line composer. Enter sends (or runs a `/command`); Alt-Enter,
//! Shift-Enter (where the terminal reports it) and Ctrl-J insert a newline.

use ratatui::Frame;
use ratatui::crossterm::event::{Event, KeyCode, KeyModifiers};
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph};
use unicode_width::UnicodeWidthChar;

use super::command;
use super::{Component, EventState, is_ctrl, key};
use crate::queue::{InternalEvent, Queue};
use crate::state::AppState;

/// The most rows the composer grows to before it scrolls.
pub(crate) const MAX_COMPOSER_ROWS: u16 = 6;

/// Longest message the composer accepts, in bytes. The protocol bounds the
/// ciphertext (32 KiB); staying well under it leaves room for padding and
/// headers.
pub(crate) const MAX_INPUT_BYTES: usize = 16 * 1024;

/// The composer.
pub(crate) struct Composer {
    queue: Queue,
    text: String,
    /// Byte offset of the cursor, always on a char boundary.
    cursor: usize,
    /// Has the keyboard.
    pub(crate) focused: bool,
}

/// Where each char lands when `text` is wrapped by character at `width`:
/// returns the (column, row) of byte offset `at` and the number of rows.
fn place(text: &str, width: u16, at: usize) -> ((u16, u16), u16) {
    let width = usize::from(width.max(1));
    let (mut x, mut y) = (0usize, 0usize);
    let mut cursor = (0, 0);
    for (i, c) in text.char_indices() {
        if i == at {
            cursor = (x, y);
        }
        if c == '\n' {
            x = 0;
            y += 1;
            continue;
        }
        let w = c.width().unwrap_or(0);
        if x + w > width {
            x = 0;
            y += 1;
        }
        x += w;
    }
    if at >= text.len() {
        if x >= width {
            x = 0;
            y += 1;
        }
        cursor = (x, y);
    }
    let to16 = |v: usize| u16::try_from(v).unwrap_or(u16::MAX);
    ((to16(cursor.0), to16(cursor.1)), to16(y + 1))
}

/// `text` broken into display rows at `width` (by character, as `place`).
fn display_rows(text: &str, width: u16) -> Vec<String> {
    let width = usize::from(width.max(1));
    let mut rows = vec![String::new()];
    let mut x = 0usize;
    for c in text.chars() {
        if c == '\n' {
            rows.push(String::new());
            x = 0;
            continue;
        }
        let w = c.width().unwrap_or(0);
        if x + w > width {
            rows.push(String::new());
            x = 0;
        }
        let c = if c.is_control() { '\u{fffd}' } else { c };
        if let Some(r) = rows.last_mut() {
            r.push(c);
        }
        x += w;
    }
    rows
}

impl Composer {
    /// An empty composer that posts to `queue`.
    pub(crate) fn new(queue: Queue) -> Self {
        Composer {
            queue,
            text: String::new(),
            cursor: 0,
            focused: true,
        }
    }

    /// What has been typed.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// Replaces the text, cursor at the end.
    pub(crate) fn set_text(&mut self, text: &str) {
        self.text = text.to_owned();
        self.cursor = self.text.len();
    }

    /// Rows the composer needs at `width` columns of text, borders excluded.
    pub(crate) fn rows(&self, width: u16) -> u16 {
        place(&self.text, width, self.cursor)
            .1
            .clamp(1, MAX_COMPOSER_ROWS)
    }

    fn insert(&mut self, c: char) {
        if self.text.len() + c.len_utf8() > MAX_INPUT_BYTES {
            return;
        }
        self.text.insert(self.cursor, c);
        self.cursor += c.len_utf8();
    }

    fn prev_boundary(&self) -> usize {
        self.text[..self.cursor]
            .char_indices()
            .next_back()
            .map_or(0, |(i, _)| i)
    }

    fn next_boundary(&self) -> usize {
        self.text[self.cursor..]
            .chars()
            .next()
            .map_or(self.cursor, |c| self.cursor + c.len_utf8())
    }

    fn line_start(&self) -> usize {
        self.text[..self.cursor].rfind('\n').map_or(0, |i| i + 1)
    }

    fn line_end(&self) -> usize {
        self.text[self.cursor..]
            .find('\n')
            .map_or(self.text.len(), |i| self.cursor + i)
    }

    /// Moves to the same column of the line above (`up`) or below.
    fn vertical(&mut self, up: bool) -> bool {
        let start = self.line_start();
        let col = self.text[start..self.cursor].chars().count();
        let target_start = if up {
            if start == 0 {
                return false;
            }
            self.text[..start - 1].rfind('\n').map_or(0, |i| i + 1)
        } else {
            let end = self.line_end();
            if end >= self.text.len() {
                return false;
            }
            end + 1
        };
        let line_end = self.text[target_start..]
            .find('\n')
            .map_or(self.text.len(), |i| target_start + i);
        self.cursor = self.text[target_start..line_end]
            .char_indices()
            .nth(col)
            .map_or(line_end, |(i, _)| target_start + i);
        true
    }

    fn submit(&mut self) {
        let text = self.text.trim_end().to_owned();
        if text.trim().is_empty() {
            return;
        }
        if text.starts_with('/') && !text.starts_with("//") {
            match command::parse(&text) {
                Ok(cmd) => self.queue.push(InternalEvent::Run(cmd)),
                Err(e) => {
                    // Keep the text so that the user can fix it.
                    self.queue.push(InternalEvent::Notify(e.to_string(), true));
                    return;
                }
            }
        } else {
            // "//text" sends "/text" literally.
            let text = text
                .strip_prefix('/')
                .filter(|t| t.starts_with('/'))
                .unwrap_or(&text);
            self.queue.push(InternalEvent::SendText(text.to_owned()));
        }
        self.text.clear();
        self.cursor = 0;
    }
}

impl Component for Composer {
    fn event(&mut self, ev: &Event, _state: &AppState) -> EventState {
        if !self.focused {
            return EventState::NotConsumed;
        }
        if let Event::Paste(p) = ev {
            for c in p.chars() {
                self.insert(if c == '\r' { '\n' } else { c });
            }
            return EventState::Consumed;
        }
        let Some(k) = key(ev) else {
            return EventState::NotConsumed;
        };
        let alt = k.modifiers.contains(KeyModifiers::ALT);
        let shift = k.modifiers.contains(KeyModifiers::SHIFT);
        match k.code {
            KeyCode::Enter if alt || shift => self.insert('\n'),
            KeyCode::Enter => self.submit(),
            _ if is_ctrl(k, 'j') => self.insert('\n'),
            _ if is_ctrl(k, 'a') => self.cursor = self.line_start(),
            _ if is_ctrl(k, 'e') => self.cursor = self.line_end(),
            _ if is_ctrl(k, 'u') => {
                let s = self.line_start();
                self.text.replace_range(s..self.cursor, "");
                self.cursor = s;
            }
            _ if is_ctrl(k, 'w') => {
                let before = &self.text[..self.cursor];
                let trimmed = before.trim_end();
                // After the last whitespace char, which may be several bytes long.
                let s = trimmed
                    .char_indices()
                    .rev()
                    .find(|(_, c)| c.is_whitespace())
                    .map_or(0, |(i, c)| i + c.len_utf8());
                self.text.replace_range(s..self.cursor, "");
                self.cursor = s;
            }
            KeyCode::Char(c) if !k.modifiers.contains(KeyModifiers::CONTROL) && !alt => {
                self.insert(c);
                if !self.text.starts_with('/') {
                    self.queue.push(InternalEvent::Typing);
                }
            }
            KeyCode::Backspace => {
                let p = self.prev_boundary();
                self.text.replace_range(p..self.cursor, "");
                self.cursor = p;
            }
            KeyCode::Delete => {
                let n = self.next_boundary();
                self.text.replace_range(self.cursor..n, "");
            }
            KeyCode::Left => self.cursor = self.prev_boundary(),
            KeyCode::Right => self.cursor = self.next_boundary(),
            KeyCode::Home => self.cursor = self.line_start(),
            KeyCode::End => self.cursor = self.line_end(),
            KeyCode::Up => return EventState::from_bool(self.vertical(true)),
            KeyCode::Down => return EventState::from_bool(self.vertical(false)),
            KeyCode::Esc if !self.text.is_empty() && self.text.starts_with('/') => {
                self.text.clear();
                self.cursor = 0;
            }
            _ => return EventState::NotConsumed,
        }
        EventState::Consumed
    }

    fn draw(&self, f: &mut Frame<'_>, area: Rect, state: &AppState) {
        let bordered = area.height >= 3 && area.width >= 10;
        let inner = if bordered {
            let title = if self.text.starts_with('/') {
                " command ".to_owned()
            } else {
                match state.focused {
                    Some(id) => format!(" to {} ", state.title(id)),
                    None => " message ".to_owned(),
                }
            };
            let block = Block::new()
                .borders(Borders::ALL)
                .border_style(if self.focused {
                    Style::new().fg(Color::Cyan)
                } else {
                    Style::new().fg(Color::DarkGray)
                })
                .title(title)
                .title_bottom(
                    Line::styled(
                        " Enter send · Alt-Enter newline ",
                        Style::new().fg(Color::DarkGray),
                    )
                    .right_aligned(),
                );
            let inner = block.inner(area);
            f.render_widget(block, area);
            inner
        } else {
            // One bare row: a prompt, then the text.
            if area.width == 0 || area.height == 0 {
                return;
            }
            f.render_widget(
                Paragraph::new(">").style(Style::new().fg(Color::Cyan)),
                Rect::new(area.x, area.y, 1, 1),
            );
            Rect::new(area.x + 1, area.y, area.width - 1, area.height)
        };
        if inner.width == 0 || inner.height == 0 {
            return;
        }
        let rows = display_rows(&self.text, inner.width);
        let ((cx, cy), _) = place(&self.text, inner.width, self.cursor);
        // Scroll so that the cursor row is visible.
        let skip = cy.saturating_sub(inner.height - 1);
        let lines: Vec<Line<'_>> = if self.text.is_empty() {
            vec![Line::styled(
                "Type a message, or / for commands",
                Style::new().fg(Color::DarkGray),
            )]
        } else {
            rows.into_iter()
                .skip(usize::from(skip))
                .take(usize::from(inner.height))
                .map(Line::from)
                .collect()
        };
        f.render_widget(Paragraph::new(lines), inner);
        if self.focused {
            let x = inner.x + cx.min(inner.width - 1);
            let y = inner.y + (cy - skip).min(inner.height - 1);
            f.set_cursor_position((x, y));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::components::command::Command;
    use crate::state::tests::signed_in;
    use ratatui::crossterm::event::KeyEvent;

    fn press(c: &mut Composer, code: KeyCode, m: KeyModifiers) {
        c.event(&Event::Key(KeyEvent::new(code, m)), &signed_in());
    }

    fn typed(c: &mut Composer, s: &str) {
        for ch in s.chars() {
            press(c, KeyCode::Char(ch), KeyModifiers::NONE);
        }
    }

    fn drain(q: &Queue) -> Vec<InternalEvent> {
        std::iter::from_fn(|| q.pop())
            .filter(|e| *e != InternalEvent::Typing)
            .collect()
    }

    #[test]
    fn enter_sends_and_clears() {
        let q = Queue::default();
        let mut c = Composer::new(q.clone());
        typed(&mut c, "hi there");
        press(&mut c, KeyCode::Enter, KeyModifiers::NONE);
        assert_eq!(drain(&q), vec![InternalEvent::SendText("hi there".into())]);
        assert_eq!(c.text(), "");
    }

    #[test]
    fn alt_or_shift_enter_and_ctrl_j_insert_newlines() {
        let q = Queue::default();
        let mut c = Composer::new(q.clone());
        typed(&mut c, "a");
        press(&mut c, KeyCode::Enter, KeyModifiers::ALT);
        typed(&mut c, "b");
        press(&mut c, KeyCode::Enter, KeyModifiers::SHIFT);
        typed(&mut c, "c");
        press(&mut c, KeyCode::Char('j'), KeyModifiers::CONTROL);
        typed(&mut c, "d");
        assert_eq!(c.text(), "a\nb\nc\nd");
        assert_eq!(c.rows(20), 4);
        press(&mut c, KeyCode::Enter, KeyModifiers::NONE);
        assert_eq!(
            drain(&q),
            vec![InternalEvent::SendText("a\nb\nc\nd".into())]
        );
    }

    #[test]
    fn enter_on_a_command_runs_it_or_reports_the_error_and_keeps_the_text() {
        let q = Queue::default();
        let mut c = Composer::new(q.clone());
        typed(&mut c, "/help");
        press(&mut c, KeyCode::Enter, KeyModifiers::NONE);
        assert_eq!(drain(&q), vec![InternalEvent::Run(Command::Help)]);
        typed(&mut c, "/invite");
        press(&mut c, KeyCode::Enter, KeyModifiers::NONE);
        let ev = drain(&q);
        assert!(matches!(&ev[..], [InternalEvent::Notify(m, true)] if m.contains("usage")));
        assert_eq!(c.text(), "/invite");
    }

    #[test]
    fn double_slash_sends_a_literal_slash() {
        let q = Queue::default();
        let mut c = Composer::new(q.clone());
        typed(&mut c, "//shrug");
        press(&mut c, KeyCode::Enter, KeyModifiers::NONE);
        assert_eq!(drain(&q), vec![InternalEvent::SendText("/shrug".into())]);
    }

    #[test]
    fn editing_keys_respect_char_boundaries() {
        let mut c = Composer::new(Queue::default());
        typed(&mut c, "héllo");
        press(&mut c, KeyCode::Left, KeyModifiers::NONE);
        press(&mut c, KeyCode::Left, KeyModifiers::NONE);
        press(&mut c, KeyCode::Left, KeyModifiers::NONE);
        press(&mut c, KeyCode::Backspace, KeyModifiers::NONE);
        assert_eq!(c.text(), "hllo");
        press(&mut c, KeyCode::Delete, KeyModifiers::NONE);
        assert_eq!(c.text(), "hlo");
        press(&mut c, KeyCode::End, KeyModifiers::NONE);
        typed(&mut c, "!");
        assert_eq!(c.text(), "hlo!");
    }

    #[test]
    fn up_and_down_move_between_lines() {
        let mut c = Composer::new(Queue::default());
        c.set_text("abc\nde");
        press(&mut c, KeyCode::Up, KeyModifiers::NONE);
        typed(&mut c, "X");
        assert_eq!(c.text(), "abXc\nde");
        press(&mut c, KeyCode::Down, KeyModifiers::NONE);
        typed(&mut c, "Y");
        assert_eq!(c.text(), "abXc\ndeY");
    }

    #[test]
    fn ctrl_w_deletes_a_word_after_a_multibyte_space() {
        let mut c = Composer::new(Queue::default());
        c.set_text("日本\u{3000}語です");
        press(&mut c, KeyCode::Char('w'), KeyModifiers::CONTROL);
        assert_eq!(c.text(), "日本\u{3000}");
        press(&mut c, KeyCode::Char('w'), KeyModifiers::CONTROL);
        assert_eq!(c.text(), "");
    }

    #[test]
    fn empty_input_sends_nothing() {
        let q = Queue::default();
        let mut c = Composer::new(q.clone());
        typed(&mut c, "   ");
        press(&mut c, KeyCode::Enter, KeyModifiers::NONE);
        assert!(drain(&q).is_empty());
    }

    proptest::proptest! {
        /// Any key sequence keeps the cursor on a char boundary and never
        /// panics, with multi-byte and wide text.
        #[test]
        fn any_keys_keep_the_composer_consistent(
            keys in proptest::collection::vec(0u8..14, 0..80),
            chars in proptest::collection::vec(proptest::sample::select(vec!['a', ' ', 'é', '日', '\u{3000}', '\n', '🦀']), 80),
            width in 1u16..30,
        ) {
            let q = Queue::default();
            let mut c = Composer::new(q);
            for (k, ch) in keys.iter().zip(chars.iter().cycle()) {
                let (code, m) = match k {
                    0..=4 => (KeyCode::Char(*ch), KeyModifiers::NONE),
                    5 => (KeyCode::Backspace, KeyModifiers::NONE),
                    6 => (KeyCode::Delete, KeyModifiers::NONE),
                    7 => (KeyCode::Left, KeyModifiers::NONE),
                    8 => (KeyCode::Right, KeyModifiers::NONE),
                    9 => (KeyCode::Up, KeyModifiers::NONE),
                    10 => (KeyCode::Down, KeyModifiers::NONE),
                    11 => (KeyCode::Char('w'), KeyModifiers::CONTROL),
                    12 => (KeyCode::Char('u'), KeyModifiers::CONTROL),
                    _ => (KeyCode::Enter, KeyModifiers::ALT),
                };
                press(&mut c, code, m);
                proptest::prop_assert!(c.text.is_char_boundary(c.cursor));
                let _ = c.rows(width);
                let _ = display_rows(&c.text, width);
            }
        }
    }

    #[test]
    fn cursor_placement_wraps_by_character() {
        assert_eq!(place("abcd", 2, 4), ((0, 2), 3));
        assert_eq!(place("ab\nc", 10, 3), ((0, 1), 2));
        assert_eq!(display_rows("abcde", 2), vec!["ab", "cd", "e"]);
    }
}
