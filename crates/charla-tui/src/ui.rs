//! Drawing the chat: a pure function of [`App`].

use charla_chat::Status;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line as TextLine, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, Paragraph, Wrap};
use ratatui::Frame;
use unicode_width::UnicodeWidthStr;

use crate::app::{App, Line};

/// Width of the side panel (rooms and people).
const SIDE: u16 = 24;

pub fn draw(frame: &mut Frame, app: &App) {
    let [main, side] =
        Layout::horizontal([Constraint::Min(20), Constraint::Length(SIDE)]).areas(frame.area());
    let [messages, input, status] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(3),
        Constraint::Length(1),
    ])
    .areas(main);
    draw_messages(frame, app, messages);
    draw_input(frame, app, input);
    draw_status(frame, app, status);
    draw_side(frame, app, side);
}

fn draw_messages(frame: &mut Frame, app: &App, area: Rect) {
    let lines: Vec<TextLine> = app
        .lines
        .iter()
        .map(|line| match line {
            Line::Message {
                hora,
                name,
                text,
                mine,
                verified,
            } => {
                let who = Style::new().add_modifier(Modifier::BOLD).fg(if *mine {
                    Color::Green
                } else {
                    Color::Cyan
                });
                let mut spans = vec![
                    Span::styled(format!("{hora} "), Style::new().fg(Color::DarkGray)),
                    Span::styled(name.clone(), who),
                ];
                if *verified {
                    spans.push(Span::styled(" ✓", Style::new().fg(Color::Green)));
                }
                spans.push(Span::styled(": ", who));
                spans.push(Span::raw(text.clone()));
                TextLine::from(spans)
            }
            Line::Notice(text) => TextLine::from(text.clone().italic().fg(Color::DarkGray)),
            Line::Error(text) => TextLine::from(text.clone().fg(Color::Red)),
        })
        .collect();
    let block = Block::new()
        .borders(Borders::ALL)
        .title(format!(" #{} ({}) ", app.room, app.mode));
    let paragraph = Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(block);
    // Scroll so that the bottom shows, minus what the user scrolled up.
    let inner_height = area.height.saturating_sub(2) as usize;
    let total = paragraph.line_count(area.width.saturating_sub(2));
    let bottom = total.saturating_sub(inner_height);
    let top = bottom.saturating_sub(app.scroll);
    let top = u16::try_from(top).unwrap_or(u16::MAX);
    frame.render_widget(paragraph.scroll((top, 0)), area);
}

fn draw_input(frame: &mut Frame, app: &App, area: Rect) {
    let title = format!(" {} ", app.name);
    let width = area.width.saturating_sub(2) as usize;
    // Show the end of a long line: the cursor is always at the end.
    let shown = tail_fitting(&app.input, width.saturating_sub(1));
    let input =
        Paragraph::new(shown.to_owned()).block(Block::new().borders(Borders::ALL).title(title));
    frame.render_widget(input, area);
    let x = area.x + 1 + shown.width() as u16;
    frame.set_cursor_position(Position::new(
        x.min(area.right().saturating_sub(2)),
        area.y + 1,
    ));
}

/// The longest end of `text` that fits in `width` columns.
fn tail_fitting(text: &str, width: usize) -> &str {
    let mut used = 0;
    for (i, c) in text.char_indices().rev() {
        used += unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if used > width {
            return &text[i + c.len_utf8()..];
        }
    }
    text
}

fn draw_status(frame: &mut Frame, app: &App, area: Rect) {
    let (text, style) = match &app.status {
        Status::Connected { broker } => (format!(" ● {broker}"), Style::new().fg(Color::Green)),
        Status::Reconnecting { reason } => (
            format!(
                " ○ {}",
                app.lang
                    .tr("chat-status-reconnecting", &[("reason", reason)])
            ),
            Style::new().fg(Color::Yellow),
        ),
    };
    let mut spans = vec![Span::styled(text, style)];
    if app.waiting > 0 {
        spans.push(Span::styled(
            format!(
                "  · {}",
                app.lang
                    .tr("chat-status-waiting", &[("count", &app.waiting)])
            ),
            Style::new().fg(Color::Yellow),
        ));
    }
    if app.scroll > 0 {
        spans.push(Span::raw(format!(
            "  · {}",
            app.lang.tr("chat-status-scrolled", &[])
        )));
    }
    frame.render_widget(Paragraph::new(TextLine::from(spans)), area);
}

fn draw_side(frame: &mut Frame, app: &App, area: Rect) {
    let rooms_height = (app.rooms.len() as u16 + 2).clamp(3, area.height / 2);
    let [rooms, people] =
        Layout::vertical([Constraint::Length(rooms_height), Constraint::Min(3)]).areas(area);
    let room_items: Vec<ListItem> = app
        .rooms
        .iter()
        .map(|(room, online)| {
            let label = if *online > 0 {
                format!("#{room} ({online})")
            } else {
                format!("#{room}")
            };
            let item = ListItem::new(label);
            if *room == app.room {
                item.bold()
            } else {
                item
            }
        })
        .collect();
    frame.render_widget(
        List::new(room_items).block(
            Block::new()
                .borders(Borders::ALL)
                .title(format!(" {} ", app.lang.tr("chat-panel-rooms", &[]))),
        ),
        rooms,
    );
    let people_items: Vec<ListItem> = app
        .online
        .iter()
        .map(|n| {
            let mut spans = vec![Span::raw(charla_core::visible(n).into_owned())];
            if app.verified.contains(n) {
                spans.push(Span::styled(" ✓", Style::new().fg(Color::Green)));
            }
            ListItem::new(TextLine::from(spans))
        })
        .collect();
    frame.render_widget(
        List::new(people_items).block(Block::new().borders(Borders::ALL).title(format!(
                    " {} ",
                    app.lang.tr("chat-panel-online", &[("count", &app.online.len())])
                ))),
        people,
    );
}

#[cfg(test)]
mod tests {
    use super::tail_fitting;

    #[test]
    fn the_end_of_a_long_input_line_is_shown() {
        assert_eq!(tail_fitting("hola", 10), "hola");
        assert_eq!(tail_fitting("abcdef", 3), "def");
        // Wide characters count two columns.
        assert_eq!(tail_fitting("a👋👋", 4), "👋👋");
        assert_eq!(tail_fitting("a👋👋", 3), "👋");
    }
}
