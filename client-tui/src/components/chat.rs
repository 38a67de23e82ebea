//! The open conversation: scrollback with timestamps, delivery marks, file
//! progress, image previews, the typing indicator and the identity-change
//! banner.

use ratatui::Frame;
use ratatui::crossterm::event::{Event, KeyCode, MouseEventKind};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use spider_protocol::ids::MessageId;
use spider_protocol::message::Presence;
use unicode_width::UnicodeWidthStr;

use super::{Component, EventState, is_plain, key, truncate, wrap};
use crate::preview::PREVIEW_ROWS;
use crate::state::{AppState, Conversation};
use crate::worker::{ChatMessage, ConversationId, Delivery, MessageBody};

/// Lines moved by one mouse-wheel notch.
const WHEEL_LINES: usize = 3;

/// One row of the scrollback.
#[derive(Clone, Debug)]
pub(crate) enum Row {
    /// Text.
    Text(Line<'static>),
    /// Row `row` of the preview of the image in message `id`, drawn at
    /// column `indent` with the fitted size `size`.
    Image {
        /// The message.
        id: MessageId,
        /// Which cell row of the preview.
        row: u16,
        /// Fitted size in cells.
        size: (u16, u16),
        /// Left margin.
        indent: u16,
    },
}

/// The mark after the time: ◌ pending, ✓ sent, ✓✓ delivered, ✔✔ read, ✗ failed.
pub(crate) fn delivery_mark(d: Delivery) -> (&'static str, Style) {
    match d {
        Delivery::Pending => ("◌ ", Style::new().fg(Color::DarkGray)),
        Delivery::Sent => ("✓ ", Style::new().fg(Color::Gray)),
        Delivery::Delivered => ("✓✓", Style::new().fg(Color::Gray)),
        Delivery::Read => (
            "✔✔",
            Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
        ),
        Delivery::Failed => ("✗ ", Style::new().fg(Color::Red)),
    }
}

/// `1.5 KiB`.
pub(crate) fn human_size(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `[█████░░░░░]  50%` in `width` columns.
pub(crate) fn progress_bar(done: u64, total: u64, width: usize) -> String {
    // Nothing to move counts as done.
    let pct = (done.min(total).saturating_mul(100))
        .checked_div(total)
        .map_or(100, |p| usize::try_from(p).unwrap_or(100));
    let label = format!(" {pct:>3}%");
    let bar_w = width.saturating_sub(label.len() + 2);
    if bar_w == 0 {
        return truncate(label.trim_start(), width);
    }
    let filled = bar_w * pct / 100;
    format!(
        "[{}{}]{label}",
        "█".repeat(filled),
        "░".repeat(bar_w - filled)
    )
}

/// Lays out the messages of a conversation for `width` columns.
pub(crate) fn rows(state: &AppState, conv: &Conversation, width: u16) -> Vec<Row> {
    let messages = &conv.messages;
    let mut out = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let prev = i.checked_sub(1).and_then(|p| messages.get(p));
        message_rows(state, prev, m, conv.marker, width, &mut out);
    }
    out
}

/// The last rows of a conversation, at least `need` of them if there are
/// that many: drawing a long history lays out only what can be seen.
pub(crate) fn tail_rows(
    state: &AppState,
    conv: &Conversation,
    width: u16,
    need: usize,
) -> Vec<Row> {
    let messages = &conv.messages;
    let mut blocks: Vec<Vec<Row>> = Vec::new();
    let mut count = 0;
    for (i, m) in messages.iter().enumerate().rev() {
        let prev = i.checked_sub(1).and_then(|p| messages.get(p));
        let mut block = Vec::new();
        message_rows(state, prev, m, conv.marker, width, &mut block);
        count += block.len();
        blocks.push(block);
        if count >= need {
            break;
        }
    }
    blocks.into_iter().rev().flatten().collect()
}

/// Lays out one message (after `prev`) for `width` columns.
fn message_rows(
    state: &AppState,
    prev: Option<&ChatMessage>,
    m: &ChatMessage,
    marker: Option<MessageId>,
    width: u16,
    out: &mut Vec<Row>,
) {
    let width = usize::from(width);
    let rule = |label: &str, style: Style| {
        let label = format!(" {label} ");
        let free = width.saturating_sub(label.width());
        let side = free / 2;
        Row::Text(Line::styled(
            truncate(
                &format!("{}{label}{}", "─".repeat(side), "─".repeat(free - side)),
                width,
            ),
            style,
        ))
    };
    {
        // A rule with the date wherever the local day changes.
        let day = state.day(m.at);
        if prev.is_none_or(|p| state.day(p.at) != day) {
            out.push(rule(&day, Style::new().fg(Color::DarkGray)));
        }
        if marker == Some(m.id) {
            out.push(rule("new", Style::new().fg(Color::Red)));
        }
        let time = state.clock(m.at);
        let (mark, mark_style) = if m.mine {
            delivery_mark(m.delivery)
        } else {
            ("  ", Style::new())
        };
        // "HH:MM ✓✓ " is 9 columns; the name follows.
        let head = vec![
            Span::styled(format!("{time} "), Style::new().fg(Color::DarkGray)),
            Span::styled(mark, mark_style),
            Span::raw(" "),
        ];
        let name_style = if m.mine {
            Style::new().fg(Color::Blue).add_modifier(Modifier::BOLD)
        } else {
            Style::new().fg(Color::Magenta).add_modifier(Modifier::BOLD)
        };
        let name = format!("{}: ", m.from);
        let prefix_w = 9 + name.width();
        // With too little room, the text goes under the header, unindented.
        let (indent, text_w) = if width >= prefix_w + 12 {
            (prefix_w, width - prefix_w)
        } else {
            (0, width.max(1))
        };
        let body_lines: Vec<(String, Style)> = match &m.body {
            MessageBody::Text(t) => wrap(t, text_w)
                .into_iter()
                .map(|l| (l, Style::new()))
                .collect(),
            MessageBody::Notice(t) => wrap(t, text_w)
                .into_iter()
                .map(|l| (l, Style::new().fg(Color::Yellow)))
                .collect(),
            MessageBody::File(a) => {
                let mut v: Vec<(String, Style)> = wrap(
                    &format!("[file] {} ({})", a.name, human_size(a.size)),
                    text_w,
                )
                .into_iter()
                .map(|l| (l, Style::new().add_modifier(Modifier::UNDERLINED)))
                .collect();
                if let Some(done) = a.transferred {
                    v.push((
                        progress_bar(done, a.size, text_w.min(40)),
                        Style::new().fg(Color::Green),
                    ));
                }
                v
            }
        };
        let mut first = Line::from(head);
        if matches!(m.body, MessageBody::Notice(_)) {
            first
                .spans
                .push(Span::styled("* ", Style::new().fg(Color::Yellow)));
        } else {
            first.spans.push(Span::styled(name, name_style));
        }
        let mut lines = body_lines.into_iter();
        if indent > 0 {
            if let Some((l, s)) = lines.next() {
                first.spans.push(Span::styled(l, s));
            }
            out.push(Row::Text(first));
            for (l, s) in lines {
                out.push(Row::Text(Line::from(vec![
                    Span::raw(" ".repeat(indent)),
                    Span::styled(l, s),
                ])));
            }
        } else {
            out.push(Row::Text(truncate_line(first, width)));
            for (l, s) in lines {
                out.push(Row::Text(Line::styled(l, s)));
            }
        }
        if let MessageBody::File(_) = &m.body
            && let Some(p) = state.previews.get(&m.id)
        {
            let text_w16 = u16::try_from(text_w).unwrap_or(u16::MAX);
            let size = match state.graphic.get(&m.id) {
                Some(g) if g.size().0 <= text_w16 => g.size(),
                _ => p.fit(text_w16, PREVIEW_ROWS),
            };
            for row in 0..size.1 {
                out.push(Row::Image {
                    id: m.id,
                    row,
                    size,
                    indent: u16::try_from(indent).unwrap_or(0),
                });
            }
        }
    }
}

fn truncate_line(line: Line<'static>, width: usize) -> Line<'static> {
    let mut left = width;
    let mut spans = Vec::new();
    for s in line.spans {
        if left == 0 {
            break;
        }
        let t = truncate(&s.content, left);
        left = left.saturating_sub(t.width());
        spans.push(Span::styled(t, s.style));
    }
    Line::from(spans)
}

/// The chat pane.
pub(crate) struct ChatView {
    /// Rows scrolled up from the newest.
    scroll: usize,
    /// Rows in a page (set from the layout).
    page: usize,
    /// Has the keyboard.
    pub(crate) focused: bool,
}

impl ChatView {
    /// A chat view at the newest message.
    pub(crate) fn new() -> Self {
        ChatView {
            scroll: 0,
            page: 10,
            focused: false,
        }
    }

    /// Back to the newest message (when another conversation opens).
    pub(crate) fn reset(&mut self) {
        self.scroll = 0;
    }

    /// Rows scrolled up from the bottom.
    #[cfg(test)]
    pub(crate) fn scroll(&self) -> usize {
        self.scroll
    }

    /// Keeps the scroll within the content, now that the pane is `area`.
    pub(crate) fn fit(&mut self, state: &AppState, area: Rect) {
        let body = body_area(state, area);
        self.page = usize::from(body.height).max(1);
        // At the bottom there is nothing to clamp: skip laying out the
        // whole history (this runs after every event).
        if self.scroll > 0 {
            let total = total_rows(state, area);
            self.scroll = self.scroll.min(total.saturating_sub(self.page));
        }
    }

    /// Scrolled up from the newest message.
    pub(crate) fn is_scrolled(&self) -> bool {
        self.scroll > 0
    }

    /// Keeps what the reader looks at in place when `added` rows arrived
    /// below while scrolled up (at the bottom, new rows simply show).
    pub(crate) fn hold(&mut self, added: usize) {
        if self.scroll > 0 {
            self.scroll = self.scroll.saturating_add(added);
        }
    }

    fn up(&mut self, n: usize) {
        self.scroll = self.scroll.saturating_add(n);
    }

    fn down(&mut self, n: usize) {
        self.scroll = self.scroll.saturating_sub(n);
    }
}

/// Whether the image row at `visible[i]` belongs to an image whose every
/// row is in `visible` (so the graphic was drawn whole at its first row).
fn fully_shown(visible: &[Row], i: usize, id: MessageId, row: u16, size: (u16, u16)) -> bool {
    let first = i.checked_sub(usize::from(row));
    first.is_some_and(|first| {
        matches!(visible.get(first), Some(Row::Image { id: fid, row: 0, .. }) if *fid == id)
            && first + usize::from(size.1) <= visible.len()
    })
}

/// Rows of the open conversation in a chat pane of `area`.
pub(crate) fn total_rows(state: &AppState, area: Rect) -> usize {
    let body = body_area(state, area);
    state
        .focused_conversation()
        .map_or(0, |c| rows(state, c, body.width).len())
}

/// Does the open 1:1's contact have an unverified new identity key?
fn identity_warning(state: &AppState) -> Option<String> {
    match state.focused {
        Some(ConversationId::Direct(u)) => state
            .contact(u)
            .filter(|c| c.identity_changed)
            .map(|c| {
                format!(
                    "⚠ {}'s safety number changed. Check it with /safety before trusting new messages; /verify once it matches.",
                    c.name
                )
            }),
        _ => None,
    }
}

fn bordered(area: Rect) -> bool {
    area.width >= 20 && area.height >= 6
}

/// Where the message rows go inside the pane.
fn body_area(state: &AppState, area: Rect) -> Rect {
    let inner = if bordered(area) {
        Block::new().borders(Borders::ALL).inner(area)
    } else {
        area
    };
    let banner = banner_height(state, inner);
    Rect::new(
        inner.x,
        inner.y + banner,
        inner.width,
        inner.height.saturating_sub(banner),
    )
}

fn banner_height(state: &AppState, inner: Rect) -> u16 {
    match identity_warning(state) {
        Some(w) if inner.height >= 4 && inner.width > 0 => {
            let n = wrap(&w, usize::from(inner.width)).len();
            u16::try_from(n).unwrap_or(1).min(inner.height / 3).max(1)
        }
        Some(_) if inner.height >= 2 => 1,
        _ => 0,
    }
}

impl Component for ChatView {
    fn event(&mut self, ev: &Event, _state: &AppState) -> EventState {
        if let Event::Mouse(m) = ev {
            match m.kind {
                MouseEventKind::ScrollUp => self.up(WHEEL_LINES),
                MouseEventKind::ScrollDown => self.down(WHEEL_LINES),
                _ => return EventState::NotConsumed,
            }
            return EventState::Consumed;
        }
        let Some(k) = key(ev) else {
            return EventState::NotConsumed;
        };
        // Paging works from the composer too; line keys only here.
        match k.code {
            KeyCode::PageUp => self.up(self.page.saturating_sub(1).max(1)),
            KeyCode::PageDown => self.down(self.page.saturating_sub(1).max(1)),
            _ if !self.focused => return EventState::NotConsumed,
            KeyCode::Up | KeyCode::Char('k') if is_plain(k, k.code) => self.up(1),
            KeyCode::Down | KeyCode::Char('j') if is_plain(k, k.code) => self.down(1),
            KeyCode::Home | KeyCode::Char('g') if is_plain(k, k.code) => self.scroll = usize::MAX,
            KeyCode::End | KeyCode::Char('G') if is_plain(k, k.code) => self.scroll = 0,
            _ => return EventState::NotConsumed,
        }
        EventState::Consumed
    }

    fn draw(&self, f: &mut Frame<'_>, area: Rect, state: &AppState) {
        let Some(conv_id) = state.focused else {
            let hint = Paragraph::new(vec![
                Line::from("No conversation open."),
                Line::from("Pick one on the left (Tab), or type /msg @user."),
            ])
            .wrap(Wrap { trim: true })
            .style(Style::new().fg(Color::DarkGray));
            f.render_widget(hint, area);
            return;
        };
        let conv = state.conversations.get(&conv_id);
        if bordered(area) {
            let mut title = vec![Span::styled(
                format!(" {} ", state.title(conv_id)),
                Style::new().add_modifier(Modifier::BOLD),
            )];
            if let ConversationId::Direct(u) = conv_id
                && let Some(c) = state.contact(u)
            {
                if let Some(d) = &c.display_name {
                    title.push(Span::raw(format!("{} ", truncate(d, 40))));
                }
                let (p, color) = match c.presence {
                    Presence::Online => ("online".to_owned(), Color::Green),
                    Presence::Away => ("away".to_owned(), Color::Yellow),
                    Presence::Offline { last_seen: None } => {
                        ("offline".to_owned(), Color::DarkGray)
                    }
                    Presence::Offline { last_seen: Some(t) } => {
                        // The time alone on the same day, the date otherwise.
                        let when = if state.day(t) == state.day(state.now) {
                            state.clock(t)
                        } else {
                            state.day(t)
                        };
                        (format!("last seen {when}"), Color::DarkGray)
                    }
                };
                title.push(Span::styled(format!("{p} "), Style::new().fg(color)));
                if c.verified {
                    title.push(Span::styled("verified ", Style::new().fg(Color::Green)));
                }
            }
            if let ConversationId::Room(r) = conv_id
                && let Some(room) = state.room(r)
            {
                title.push(Span::raw(format!("{} members ", room.members)));
            }
            let mut block = Block::new()
                .borders(Borders::ALL)
                .border_style(if self.focused {
                    Style::new().fg(Color::Cyan)
                } else {
                    Style::new().fg(Color::DarkGray)
                })
                .title(Line::from(title));
            let typing = state.typing(conv_id);
            if !typing.is_empty() {
                let who: Vec<String> = typing.iter().map(|u| u.to_string()).collect();
                let verb = if who.len() == 1 { "is" } else { "are" };
                block = block.title_bottom(Line::styled(
                    format!(" {} {verb} typing… ", who.join(", ")),
                    Style::new().fg(Color::Gray).add_modifier(Modifier::ITALIC),
                ));
            }
            if self.scroll > 0 {
                block = block.title_bottom(
                    Line::styled(" ↓ newer (G) ", Style::new().fg(Color::Yellow)).right_aligned(),
                );
            }
            f.render_widget(block, area);
        }
        let inner = if bordered(area) {
            Block::new().borders(Borders::ALL).inner(area)
        } else {
            area
        };
        let banner = banner_height(state, inner);
        if banner > 0
            && let Some(w) = identity_warning(state)
        {
            let b = Rect::new(inner.x, inner.y, inner.width, banner);
            f.render_widget(
                Paragraph::new(w).wrap(Wrap { trim: true }).style(
                    Style::new()
                        .fg(Color::Black)
                        .bg(Color::Yellow)
                        .add_modifier(Modifier::BOLD),
                ),
                b,
            );
        }
        let body = body_area(state, area);
        if body.height == 0 || body.width == 0 {
            return;
        }
        let h = usize::from(body.height);
        let need = h.saturating_add(self.scroll);
        let all = conv.map_or_else(Vec::new, |c| tail_rows(state, c, body.width, need));
        if all.is_empty() {
            f.render_widget(
                Paragraph::new("No messages yet. Say hello!")
                    .style(Style::new().fg(Color::DarkGray)),
                body,
            );
            return;
        }
        let end = all
            .len()
            .saturating_sub(self.scroll.min(all.len().saturating_sub(h)));
        let start = end.saturating_sub(h);
        let visible = &all[start..end];
        // Bottom-anchored: a short conversation sits just above the composer.
        let top = body.y + body.height - u16::try_from(visible.len()).unwrap_or(body.height);
        for (i, row) in visible.iter().enumerate() {
            let y = top + u16::try_from(i).unwrap_or(0);
            let r = Rect::new(body.x, y, body.width, 1);
            match row {
                Row::Text(line) => f.render_widget(Paragraph::new(line.clone()), r),
                Row::Image {
                    id,
                    row,
                    size,
                    indent,
                } => {
                    let x = body.x + (*indent).min(body.width);
                    let free = body.width - (x - body.x);
                    // Terminal graphics draw a whole image or nothing: only
                    // when every row of it is on screen, from its first row.
                    let whole = usize::from(size.1) <= visible.len() - i && size.0 <= free;
                    match state.graphic.get(id) {
                        Some(g) if g.size() == *size && whole && *row == 0 => {
                            g.render(f.buffer_mut(), Rect::new(x, y, size.0, size.1));
                        }
                        Some(g)
                            if g.size() == *size && fully_shown(visible, i, *id, *row, *size) =>
                        {
                            // Covered by the graphic drawn at its first row.
                        }
                        _ => {
                            if let Some(p) = state.previews.get(id) {
                                p.render(f.buffer_mut(), Rect::new(x, y, free, 1), *size, *row);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_bar_fills_by_percent_and_fits() {
        assert_eq!(progress_bar(50, 100, 16), "[████░░░░░]  50%");
        assert_eq!(progress_bar(0, 0, 12), "[█████] 100%");
        for w in 0..30 {
            assert!(progress_bar(3, 7, w).width() <= w.max(1));
        }
    }

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 * 1024 * 1024), "3.0 MiB");
    }
}
