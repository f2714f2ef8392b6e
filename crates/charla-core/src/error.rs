//! The error every backend returns. Each variant renders as one line a user can act on;
//! the CLI prints it as is and picks the exit code from it.

use crate::mode::Mode;

/// Result alias used across the backends.
pub type Result<T, E = BrokerError> = std::result::Result<T, E>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    /// The URL could not be understood (bad scheme, bad port, bad query option).
    #[error("invalid broker URL '{url}': {reason}")]
    InvalidUrl { url: String, reason: String },

    /// Nothing answered at the address, or the connection dropped.
    #[error("cannot reach the broker at {address}: {reason}")]
    Unreachable { address: String, reason: String },

    /// The broker answers but cannot serve for a while (loading its data after a restart,
    /// its disk failing, a failover): worth retrying, like [`Unreachable`](Self::Unreachable).
    #[error("the broker at {address} cannot serve requests for now: {reason}")]
    Unavailable { address: String, reason: String },

    /// The broker refused our credentials (or wants some we did not give).
    #[error("the broker at {address} refused authentication: {reason}")]
    Auth { address: String, reason: String },

    /// The backend cannot do this delivery mode; said at connect/subscribe time, never silently.
    #[error("{backend} cannot do {mode} mode: {reason}")]
    Unsupported {
        backend: &'static str,
        mode: Mode,
        reason: String,
    },

    /// A message (encoded) larger than the limit.
    #[error("message of {size} bytes is over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },

    /// The destination exists with another shape (a Redis key of another type, for example).
    #[error("'{name}' already exists as something else: {detail}")]
    WrongType { name: String, detail: String },

    /// A bad argument from the caller (unknown ack tag, empty room, …).
    #[error("{0}")]
    InvalidArgument(String),

    /// The subscription or connection was closed.
    #[error("the subscription is closed")]
    Closed,

    /// Anything else the broker said.
    #[error("{backend} error: {detail}")]
    Backend {
        backend: &'static str,
        detail: String,
    },
}

impl BrokerError {
    /// Shorthand for [`BrokerError::Backend`].
    pub fn backend(backend: &'static str, detail: impl std::fmt::Display) -> Self {
        BrokerError::Backend {
            backend,
            detail: detail.to_string(),
        }
    }

    /// True when retrying after a reconnect may succeed (the broker went away), as opposed to
    /// errors that will repeat (bad URL, bad password, unsupported mode).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            BrokerError::Unreachable { .. } | BrokerError::Unavailable { .. } | BrokerError::Closed
        )
    }
}
