//! charla-archive: the chat's memory in PostgreSQL (the workshop's exercise 1: messages
//! published through the broker, shown live, stored in a database).
//!
//! - [`Archive`]: the store. The schema is charla's own, created and migrated on open
//!   (`migrations/`, embedded in the binary with `sqlx::migrate!`); a database that does not
//!   exist yet is created. Every message is stored once by its id; a room's messages are read
//!   in order, a page at a time (`before=ID`), or searched with PostgreSQL's full-text search.
//! - [`archiver`]: the feeder. It reads rooms from the broker in a consumer group (several
//!   archivers share the work), stores each batch and only then acknowledges it. While
//!   PostgreSQL is away it holds its batch and retries: the broker keeps the rest, live chat
//!   goes on untouched (it never waits for the archive), and once the database is back the
//!   archiver catches up from where it acknowledged. Nothing lost; nothing doubled.

pub mod archiver;
mod store;

pub use archiver::{Archiver, ARCHIVE_GROUP};
pub use store::Archive;

/// What went wrong with the archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("invalid archive URL: {0}")]
    Url(String),
    #[error("the archive database is unreachable: {0}")]
    Unreachable(String),
    #[error("the archive's schema could not be migrated: {0}")]
    Migrate(String),
    #[error("archive error: {0}")]
    Database(String),
    #[error("{0}")]
    InvalidArgument(String),
}

impl From<sqlx::Error> for ArchiveError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_) => ArchiveError::Unreachable(e.to_string()),
            sqlx::Error::Database(db)
                if db
                    .code()
                    .is_some_and(|c| c.starts_with("57") || c.starts_with("08")) =>
            {
                // 57P01 admin shutdown, 08xxx connection exceptions.
                ArchiveError::Unreachable(e.to_string())
            }
            _ => ArchiveError::Database(e.to_string()),
        }
    }
}

/// The URL with its password hidden, for logs.
pub fn redact(url: &str) -> String {
    charla_core::redact(url)
}
