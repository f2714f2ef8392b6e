//! charla-core: everything every backend and front end agrees on, and nothing that does I/O.
//!
//! - [`Message`]: the wire format, a JSON object that keeps the workshop seed's fields
//!   (`usuario`, `mensaje`, `hora`) and adds `id`, `room` and `ts_us`.
//! - [`Mode`]: the four delivery modes of the brief (queue, broadcast, stream, routing).
//! - [`Broker`], [`Publisher`], [`Subscriber`]: the abstraction each backend crate implements.
//! - [`BrokerUrl`]: how a URL picks a backend.
//! - [`DeadLetter`]: a message that could not be processed, kept with why.
//! - [`presence`]: who is online, kept with beats through the broker on every backend.
//! - [`topic`]: the routing-pattern language (`room.*`, `app.error.#`), the same on every backend.

pub mod age;
pub mod broker;
pub mod dead;
pub mod dedupe;
pub mod error;
pub mod message;
pub mod mode;
pub mod presence;
pub mod task;
pub mod text;
pub mod topic;
pub mod url;

pub use age::parse_age;
pub use broker::{
    AckTag, Broker, BrokerInfo, Delivery, Publisher, StartFrom, Subscriber, Subscription,
};
pub use dead::{DeadLetter, DeadReason, DeadSelect, Failure};
pub use dedupe::IdWindow;
pub use error::{BrokerError, Result};
pub use message::{DecodeError, Decoder, Event, Message, MAX_MESSAGE_BYTES};
pub use mode::{Capabilities, Mode};
pub use task::{TaskOutcome, TaskStatus};
pub use text::visible;
pub use url::{redact, with_password, BackendKind, BrokerUrl, DEFAULT_MAX_DELIVERIES};
