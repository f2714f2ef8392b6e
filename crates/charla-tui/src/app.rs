//! The terminal chat's state: what the screen shows, changed by the event loop
//! ([`crate::chat`]) and drawn by [`crate::ui::draw`].
//!
//! Kept apart from the loop so that the drawing, which reads this state, and the loop, which
//! draws, do not import each other.

use std::collections::VecDeque;

use charla_chat::Status;
use charla_core::{Message, Mode};
use charla_i18n::Lang;

/// Lines kept on screen; older ones scroll away for good (the broker keeps the history).
const MAX_LINES: usize = 5_000;

/// One line of the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Message {
        hora: String,
        name: String,
        text: String,
        mine: bool,
        /// The sender's name was proved to the gateway that took it (`verificado`): drawn
        /// with a mark no name can contain (check marks are refused in names).
        verified: bool,
    },
    Notice(String),
    Error(String),
}

/// Everything the screen shows.
pub struct App {
    pub name: String,
    pub room: String,
    pub mode: Mode,
    pub lines: VecDeque<Line>,
    pub input: String,
    /// Lines scrolled up from the bottom.
    pub scroll: usize,
    pub status: Status,
    pub online: Vec<String>,
    /// Those of `online` whose name a web gateway proved (marked ✓).
    pub verified: Vec<String>,
    /// (room, people online), the current room included.
    pub rooms: Vec<(String, usize)>,
    /// Posts typed and not yet confirmed by the broker.
    pub waiting: usize,
    pub quit: bool,
    /// The language the screen speaks.
    pub lang: Lang,
}

impl App {
    pub(crate) fn push(&mut self, line: Line) {
        self.lines.push_back(line);
        if self.lines.len() > MAX_LINES {
            self.lines.pop_front();
        }
        if self.scroll > 0 {
            self.scroll += 1;
        }
    }

    pub(crate) fn message(&mut self, m: &Message) {
        let line = Line::Message {
            hora: m.hora.clone(),
            name: charla_core::visible(&m.usuario).into_owned(),
            text: charla_core::visible(&m.mensaje).into_owned(),
            mine: m.usuario == self.name,
            verified: m.verificado,
        };
        self.push(line);
    }
}
