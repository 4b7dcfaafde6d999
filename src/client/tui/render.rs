//! Drawing the full-screen client: the scrollback of the pane shown, the side panel (panes
//! with their unread and mention counts, then the members), the status line and the input.
//!
//! Widths are terminal cells measured with `unicode-width`, so CJK text and emoji (two cells)
//! wrap and align. Lines are wrapped here rather than by ratatui's `Paragraph`, so scrolling
//! counts the same lines that are drawn.

use chrono::{DateTime, Local};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use unicode_width::UnicodeWidthChar;

use super::app::{App, ConnState, Entry, PaneKind, Tone, mention_spans, same_name};
use crate::proto::{Kind, printable};

/// The side panel's width, border included.
const PANEL: u16 = 24;
/// The most lines the input grows to before it scrolls.
const INPUT_MAX: usize = 6;
/// The input's prompt.
const PROMPT: &str = "> ";

/// A name's colour: the same for a name wherever and whenever it is shown, case aside.
pub fn name_color(name: &str) -> Color {
    const PALETTE: [Color; 10] = [
        Color::Red,
        Color::Green,
        Color::Yellow,
        Color::Blue,
        Color::Magenta,
        Color::Cyan,
        Color::LightRed,
        Color::LightGreen,
        Color::LightBlue,
        Color::LightMagenta,
    ];
    // FNV-1a: stable across runs and versions, unlike the standard library's hasher.
    let mut h: u32 = 0x811c_9dc5;
    for b in name.to_lowercase().bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    PALETTE[h as usize % PALETTE.len()]
}

/// Draws everything.
pub fn render(app: &mut App, frame: &mut Frame) {
    let area = frame.area();
    let width = area.width.max(1) as usize;
    let (input_rows, cursor) = layout_input(app.editor.text(), app.editor.cursor(), width);
    let input_height = input_rows.len().clamp(1, INPUT_MAX);
    let [top, status, input] = Layout::vertical([
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(input_height as u16),
    ])
    .areas(area);
    let (messages, panel) = if top.width >= PANEL * 2 + 10 {
        let [m, p] = Layout::horizontal([Constraint::Min(1), Constraint::Length(PANEL)]).areas(top);
        (m, Some(p))
    } else {
        (top, None)
    };
    draw_messages(app, frame, messages);
    if let Some(panel) = panel {
        draw_panel(app, frame, panel);
    }
    draw_status(app, frame, status);

    // The input, scrolled so the cursor's line is visible.
    let first = (cursor.0 + 1).saturating_sub(input_height);
    let lines: Vec<Line> = input_rows
        .into_iter()
        .skip(first)
        .take(input_height)
        .enumerate()
        .map(|(i, row)| {
            let lead = if i + first == 0 { PROMPT } else { "  " };
            Line::from(vec![
                Span::styled(lead, Style::new().add_modifier(Modifier::BOLD)),
                Span::raw(row),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), input);
    frame.set_cursor_position(Position::new(
        input.x + (PROMPT.len() + cursor.1) as u16,
        input.y + (cursor.0 - first) as u16,
    ));
}

fn draw_messages(app: &mut App, frame: &mut Frame, area: Rect) {
    let width = area.width as usize;
    let height = area.height as usize;
    let me = app.me.clone();
    let pane = &app.panes[app.current];
    let mut lines: Vec<Line<'static>> = Vec::new();
    for entry in &pane.entries {
        lines.extend(entry_lines(entry, &me, &pane.kind, width));
    }
    let total = lines.len();
    let last_top = total.saturating_sub(height);
    let top = pane.top.map_or(last_top, |t| t.min(last_top));
    let scrolled = top < last_top;
    let mut shown: Vec<Line> = lines.into_iter().skip(top).take(height).collect();
    if scrolled && height > 0 {
        let text = match pane.new_below {
            0 => "── more below: PageDown, Esc ──".to_string(),
            n => format!("── {n} new below: PageDown, Esc ──"),
        };
        let marker = Line::from(Span::styled(
            text,
            Style::new()
                .fg(Color::Black)
                .bg(Color::Yellow)
                .add_modifier(Modifier::BOLD),
        ));
        if shown.len() == height {
            shown[height - 1] = marker;
        } else {
            shown.push(marker);
        }
    }
    // Short scrollback sits at the bottom, next to the input, as chat programs do.
    let pad = height.saturating_sub(shown.len());
    let mut padded = vec![Line::default(); pad];
    padded.extend(shown);
    frame.render_widget(Paragraph::new(padded), area);
    app.view_height = height;
    app.view_total = total;
}

fn draw_panel(app: &App, frame: &mut Frame, area: Rect) {
    let block = Block::new()
        .borders(Borders::LEFT)
        .border_style(Style::new().fg(Color::DarkGray));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let width = inner.width as usize;
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let mut lines = vec![Line::from(Span::styled("Rooms", bold))];
    for (i, pane) in app.panes.iter().enumerate() {
        let mut spans = vec![Span::raw(format!("{} {}", i + 1, printable(&pane.title())))];
        if pane.unread > 0 {
            spans.push(Span::styled(
                format!(" {}", pane.unread),
                Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
            ));
        }
        if pane.mentions > 0 {
            spans.push(Span::styled(
                format!(" @{}", pane.mentions),
                Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
            ));
        }
        let mut line = Line::from(clip(spans, width));
        if i == app.current {
            line = line.style(Style::new().add_modifier(Modifier::REVERSED));
        }
        lines.push(line);
    }
    let pane = app.current_pane();
    if let PaneKind::Room(_) = pane.kind {
        lines.push(Line::default());
        lines.push(Line::from(Span::styled(
            format!("Members ({})", pane.members.len()),
            bold,
        )));
        for m in &pane.members {
            let mut style = Style::new().fg(name_color(m));
            let mut text = printable(m);
            if pane.away.contains_key(m) {
                style = style.add_modifier(Modifier::DIM);
                text.push_str(" (away)");
            }
            if same_name(m, &app.me) {
                style = style.add_modifier(Modifier::BOLD);
            }
            lines.push(Line::from(clip(vec![Span::styled(text, style)], width)));
        }
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

fn draw_status(app: &App, frame: &mut Frame, area: Rect) {
    let (state, colour) = match &app.conn {
        ConnState::Connected => ("connected".to_string(), Color::Green),
        ConnState::Reconnecting { attempt, retry_in } => (
            format!(
                "reconnecting (attempt {attempt}, in {:.1}s)",
                retry_in.as_secs_f32()
            ),
            Color::Yellow,
        ),
        ConnState::Gone(why) => (format!("disconnected: {}", printable(why)), Color::Red),
    };
    let base = Style::new().bg(Color::Blue).fg(Color::White);
    let spans = vec![
        Span::styled(format!(" {} ", printable(&app.server)), base),
        Span::styled("│ ", base),
        Span::styled(
            format!("{} ", printable(&app.me)),
            base.add_modifier(Modifier::BOLD),
        ),
        Span::styled("│ ", base),
        Span::styled(format!("{} ", printable(&app.current_pane().title())), base),
        Span::styled("│ ", base),
        Span::styled(state, base.fg(colour).add_modifier(Modifier::BOLD)),
    ];
    let line = Line::from(clip(spans, area.width as usize)).style(base);
    frame.render_widget(Paragraph::new(line).style(base), area);
}

/// The wrapped lines of one entry, `width` cells wide.
fn entry_lines(entry: &Entry, me: &str, pane: &PaneKind, width: usize) -> Vec<Line<'static>> {
    let dim = Style::new().fg(Color::DarkGray);
    let (spans, indent) = match entry {
        Entry::Message {
            ts,
            from,
            kind,
            text,
            history,
            mention,
        } => {
            let mut head = vec![Span::styled(format!("{} ", clock(ts, *history)), dim)];
            let who = Style::new()
                .fg(name_color(from))
                .add_modifier(if same_name(from, me) {
                    Modifier::BOLD
                } else {
                    Modifier::empty()
                });
            let body_style = match kind {
                Kind::Action => Style::new()
                    .fg(name_color(from))
                    .add_modifier(Modifier::ITALIC),
                _ => Style::new(),
            };
            match kind {
                Kind::Action => {
                    head.push(Span::styled("* ", body_style));
                    head.push(Span::styled(
                        printable(from),
                        who.add_modifier(Modifier::ITALIC),
                    ));
                    head.push(Span::styled(" ", body_style));
                }
                Kind::Direct if !matches!(pane, PaneKind::Direct(_)) => {
                    head.push(Span::styled(printable(from), who));
                    head.push(Span::raw(" (direct): "));
                }
                _ => {
                    head.push(Span::styled(printable(from), who));
                    head.push(Span::raw(": "));
                }
            }
            let indent = head.iter().map(|s| width_of(&s.content)).sum::<usize>();
            let mut spans = head;
            spans.extend(body_spans(text, me, *mention, body_style));
            if *history {
                spans = spans
                    .into_iter()
                    .map(|s| {
                        let style = s.style.add_modifier(Modifier::DIM);
                        let style = if s.style.fg.is_none() {
                            style.fg(Color::DarkGray)
                        } else {
                            style
                        };
                        Span::styled(s.content, style)
                    })
                    .collect();
            }
            (spans, indent)
        }
        Entry::Notice { text, tone } => {
            let (lead, style) = match tone {
                Tone::System => ("-- ", Style::new().fg(Color::DarkGray)),
                Tone::Error => (
                    "!! ",
                    Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
                ),
            };
            (
                vec![Span::styled(
                    format!("{lead}{}", printable_lines(text)),
                    style,
                )],
                3,
            )
        }
        Entry::Divider => {
            let label = " live ";
            let side = width.saturating_sub(label.len()) / 2;
            let text = format!("{}{label}{}", "─".repeat(side), "─".repeat(side));
            return vec![Line::from(Span::styled(text, dim))];
        }
    };
    wrap(spans, width, indent.min(width / 2))
}

/// The message text, escape-safe, with our name highlighted in a message that mentions us.
fn body_spans(text: &str, me: &str, mention: bool, style: Style) -> Vec<Span<'static>> {
    let highlight = Style::new()
        .fg(Color::Black)
        .bg(Color::Yellow)
        .add_modifier(Modifier::BOLD);
    let mut spans = Vec::new();
    let mut at = 0;
    if mention {
        for (start, end) in mention_spans(text, me) {
            spans.push(Span::styled(printable_lines(&text[at..start]), style));
            spans.push(Span::styled(printable_lines(&text[start..end]), highlight));
            at = end;
        }
    }
    spans.push(Span::styled(printable_lines(&text[at..]), style));
    spans
}

/// Like `printable`, but keeps newlines (the wrapping breaks lines there).
fn printable_lines(text: &str) -> String {
    text.split('\n')
        .map(printable)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `HH:MM` in local time for a live message, `MM-DD HH:MM` for history (maybe another day).
fn clock(ts: &str, history: bool) -> String {
    let format = if history { "%m-%d %H:%M" } else { "%H:%M" };
    DateTime::parse_from_rfc3339(ts)
        .map(|t| t.with_timezone(&Local).format(format).to_string())
        .unwrap_or_else(|_| "--:--".to_string())
}

pub(super) fn width_of(s: &str) -> usize {
    s.chars().map(|c| c.width().unwrap_or(0)).sum()
}

/// Breaks styled text into lines of at most `width` cells, at newlines and wherever a line is
/// full; continuation lines start `indent` cells in. A wide character never straddles a line.
pub(super) fn wrap(spans: Vec<Span<'static>>, width: usize, indent: usize) -> Vec<Line<'static>> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut line: Vec<Span<'static>> = Vec::new();
    let mut used = 0;
    let mut piece = String::new();
    for span in spans {
        let style = span.style;
        for c in span.content.chars() {
            let w = c.width().unwrap_or(0);
            if c == '\n' || used + w > width {
                if !piece.is_empty() {
                    line.push(Span::styled(std::mem::take(&mut piece), style));
                }
                lines.push(Line::from(std::mem::take(&mut line)));
                line.push(Span::raw(" ".repeat(indent)));
                used = indent;
                if c == '\n' {
                    continue;
                }
            }
            piece.push(c);
            used += w;
        }
        if !piece.is_empty() {
            line.push(Span::styled(std::mem::take(&mut piece), style));
        }
    }
    lines.push(Line::from(line));
    lines
}

/// Cuts spans to `width` cells.
fn clip(spans: Vec<Span<'static>>, width: usize) -> Vec<Span<'static>> {
    let mut left = width;
    let mut out = Vec::new();
    for span in spans {
        let mut text = String::new();
        for c in span.content.chars() {
            let w = c.width().unwrap_or(0);
            if w > left {
                left = 0;
                break;
            }
            left -= w;
            text.push(c);
        }
        out.push(Span::styled(text, span.style));
        if left == 0 {
            break;
        }
    }
    out
}

/// The input's rows (wrapped at `width` minus the prompt) and the cursor's (row, column).
pub(super) fn layout_input(
    text: &str,
    cursor: usize,
    width: usize,
) -> (Vec<String>, (usize, usize)) {
    let room = width.saturating_sub(PROMPT.len() + 1).max(1);
    let mut rows = vec![String::new()];
    let mut used = 0;
    let mut at = (0, 0);
    for (i, c) in text.char_indices() {
        if i == cursor {
            at = (rows.len() - 1, used);
        }
        let w = c.width().unwrap_or(0);
        if c == '\n' {
            rows.push(String::new());
            used = 0;
            continue;
        }
        if used + w > room {
            rows.push(String::new());
            used = 0;
            if i == cursor {
                at = (rows.len() - 1, 0);
            }
        }
        rows.last_mut().expect("one row at least").push(c);
        used += w;
    }
    if cursor >= text.len() {
        at = (rows.len() - 1, used);
    }
    (rows, at)
}
