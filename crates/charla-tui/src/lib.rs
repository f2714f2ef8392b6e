//! charla-tui: the terminal chat, `charla chat`.
//!
//! One screen: the room's messages above, the input line below, and at the side the rooms
//! (where people are, and what the broker keeps) and who is online. Commands: `/join ROOM`,
//! `/name NAME`, `/who`, `/help`, `/quit` (also Esc or Ctrl+C). PageUp / PageDown scroll.
//!
//! The engine (history then live without gaps, presence, reconnects, the outbox) is
//! `charla-chat`; this crate only draws it. [`App`] is the screen's state, updated by events
//! and drawn by [`ui::draw`], so the drawing is a pure function of the state.

// In layers: `chat` (the event loop) uses `ui` (drawing), which reads `app` (the state);
// `refusal` says the chat rules' refusals in the screen's language.
mod app;
mod chat;
pub mod refusal;
mod ui;

pub use chat::{run, ChatOptions, Finished};
