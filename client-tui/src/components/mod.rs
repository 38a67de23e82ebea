//! The parts of the screen. Each keeps only its own UI state (a selection, a
//! scroll offset, the text being typed), reacts to terminal events in
//! `event`, and draws from `&self` and the read-only [`AppState`] in `draw`;
//! anything that changes the app goes through the [`Queue`](crate::queue::Queue).
//! This is gitui's `src/components/mod.rs` split.

pub(crate) mod chat;
pub(crate) mod command;
pub(crate) mod composer;
pub(crate) mod first_run;
pub(crate) mod help;
pub(crate) mod info;
pub(crate) mod safety;
pub(crate) mod sidebar;
pub(crate) mod status;

use ratatui::Frame;
use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::Rect;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use crate::state::AppState;

/// Whether a component used an event; if not, the app offers it elsewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventState {
    /// Used: stop here.
    Consumed,
    /// Not used.
    NotConsumed,
}

impl EventState {
    /// `Consumed` if `b`.
    pub(crate) fn from_bool(b: bool) -> Self {
        if b {
            EventState::Consumed
        } else {
            EventState::NotConsumed
        }
    }
}

/// A part of the screen.
pub(crate) trait Component {
    /// Reacts to a terminal event.
    fn event(&mut self, ev: &Event, state: &AppState) -> EventState;
    /// Draws into `area`. Cannot change anything.
    fn draw(&self, f: &mut Frame<'_>, area: Rect, state: &AppState);
}

/// The key of a key press (repeats count; releases do not).
pub(crate) fn key(ev: &Event) -> Option<&KeyEvent> {
    match ev {
        Event::Key(k) if k.kind != KeyEventKind::Release => Some(k),
        _ => None,
    }
}

/// A plain key press: `code` with no modifier but Shift.
pub(crate) fn is_plain(k: &KeyEvent, code: KeyCode) -> bool {
    k.code == code && (k.modifiers - KeyModifiers::SHIFT).is_empty()
}

/// A key press with Ctrl.
pub(crate) fn is_ctrl(k: &KeyEvent, c: char) -> bool {
    k.code == KeyCode::Char(c) && k.modifiers.contains(KeyModifiers::CONTROL)
}

/// Cuts `s` to `width` columns, ending in `…` if anything was cut. Control
/// characters (untrusted names could carry terminal escapes) become `�`.
/// Widths are measured on the string, not summed per char: a variation
/// selector can widen the character before it.
pub(crate) fn truncate(s: &str, width: usize) -> String {
    let clean = |c: char| if c.is_control() { '\u{fffd}' } else { c };
    if s.width() <= width && !s.contains(char::is_control) {
        return s.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut cut = false;
    for c in s.chars().map(clean) {
        // Zero-width characters add bytes but no width: bound the work.
        if out.len() > width * 8 + 32 {
            cut = true;
            break;
        }
        out.push(c);
        if out.width() > width {
            out.pop();
            cut = true;
            break;
        }
    }
    if !cut {
        return out;
    }
    while out.width() > width - 1 {
        out.pop();
    }
    out.push('…');
    out
}

/// Word-wraps `s` to `width` columns. Newlines are kept; words longer than a
/// line are broken. Control characters (untrusted text could carry terminal
/// escapes) are shown as `�`. Always returns at least one line.
pub(crate) fn wrap(s: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    for para in s.split('\n') {
        let mut line = String::new();
        let mut w = 0;
        for word in para.split_inclusive(' ') {
            let word: String = word
                .chars()
                .map(|c| if c.is_control() { '\u{fffd}' } else { c })
                .collect();
            let ww = word.trim_end_matches(' ').width();
            if w > 0 && w + ww > width {
                lines.push(std::mem::take(&mut line).trim_end().to_owned());
                w = 0;
            }
            for c in word.chars() {
                let cw = c.width().unwrap_or(0);
                if w + cw > width {
                    if c == ' ' {
                        continue;
                    }
                    if w > 0 {
                        lines.push(std::mem::take(&mut line));
                        w = 0;
                    }
                }
                line.push(c);
                w += cw;
            }
        }
        lines.push(line.trim_end().to_owned());
    }
    lines
}

/// Rows that `lines` take when word-wrapped at `width`, as an overlay's
/// height (one spare row: ratatui's wrapping may break a little earlier).
pub(crate) fn rows_needed(lines: &[ratatui::text::Line<'_>], width: usize) -> u16 {
    let n: usize = lines
        .iter()
        .map(|l| wrap(&l.to_string(), width).len())
        .sum();
    u16::try_from(n + 1).unwrap_or(u16::MAX)
}

/// A rectangle of at most `w` × `h` centred in `area`.
pub(crate) fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_adds_an_ellipsis_only_when_cutting() {
        assert_eq!(truncate("hello", 5), "hello");
        assert_eq!(truncate("hello", 4), "hel…");
        assert_eq!(truncate("hello", 1), "…");
        assert_eq!(truncate("hello", 0), "");
        assert_eq!(truncate("日本語", 4), "日…");
        assert_eq!(truncate("a\u{1b}b", 5), "a\u{fffd}b");
        // A variation selector widens the heart to two columns.
        for w in 0..6 {
            assert!(truncate("❤\u{fe0f}❤\u{fe0f}❤\u{fe0f}", w).width() <= w);
        }
    }

    #[test]
    fn wrap_breaks_at_words_and_inside_long_words() {
        assert_eq!(wrap("hello big world", 9), vec!["hello big", "world"]);
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(wrap("a\nb", 10), vec!["a", "b"]);
        assert_eq!(wrap("", 10), vec![""]);
        assert_eq!(wrap("x", 0), vec!["x"]);
    }

    #[test]
    fn wrap_neutralises_control_characters() {
        assert_eq!(wrap("a\u{1b}[2Jb", 20), vec!["a\u{fffd}[2Jb"]);
    }

    #[test]
    fn wrapped_lines_fit() {
        let text = "the quick brown fox jumps over the lazy dog, twice; supercalifragilistic";
        for w in 1..30 {
            for l in wrap(text, w) {
                assert!(l.width() <= w, "{l:?} wider than {w}");
            }
        }
    }
}
