//! charla-chat: the chat engine both front ends share (`charla chat` in a terminal,
//! `charla web` in a browser), with no screen of its own.
//!
//! - [`Link`]: the connection to the broker, re-made with backoff when it breaks, with a
//!   status the screens show (connected, reconnecting and why).
//! - [`RoomFeed`]: one subscription to a room's live messages, shared by every local reader
//!   of the room, resumed after a reconnect from the last offset seen (stream mode) so nothing
//!   is skipped, with duplicates dropped by id; [`RoomFeed::join`] gives a reader the room's
//!   recent history followed by live messages, without a gap or a duplicate between them.
//! - [`Outbox`]: what people type, published in order and retried through outages until the
//!   broker has it: nothing typed while disconnected is lost.
//! - [`Presence`]: who is online, with beats through the broker (`charla_core::presence`).
//!
//! Everything goes through `charla_core::Broker`, so both chats run on every backend that has
//! the chosen mode: stream (history and no gaps) or broadcast (live only).

mod feed;
mod link;
mod outbox;
mod presence;
mod rules;

pub use charla_core::presence::Change;
pub use feed::{Joined, RoomFeed, DEFAULT_HISTORY};
pub use link::{Connector, Link, Status};
pub use outbox::{Outbox, Posted};
pub use presence::{Presence, Session};
pub use rules::{
    check_name, check_room, check_text, is_invisible, Refusal, DEFAULT_MAX_TEXT_BYTES,
    MAX_NAME_CHARS,
};

/// What went wrong, said so a person can act on it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ChatError {
    #[error(transparent)]
    Broker(#[from] charla_core::BrokerError),
    /// The engine is shutting down.
    #[error("the chat is closing")]
    Closed,
}

impl ChatError {
    /// The error for a person, in the catalogue (the broker's own words stay as detail).
    pub fn said(&self) -> charla_i18n::Said {
        match self {
            ChatError::Broker(e) => charla_i18n::Said::new("chat-broker-error").arg("detail", e),
            ChatError::Closed => charla_i18n::Said::new("chat-closing"),
        }
    }
}
