//! The commands. The layers, bottom up (a module uses only those above it in this list):
//!
//! - [`args`]: Redis's argument rules (integers, floats, keywords) and error texts;
//! - [`spec`]: what a command is ([`spec::Spec`]: arity, flags, key positions, handler) and
//!   what its handler sees ([`spec::Ctx`]);
//! - [`options`]: option parsers several commands share (timeouts, SCAN's options);
//! - [`blocking`]: how a command that finds nothing waits; [`typed`]: a key as one type;
//! - [`apply`]: running an admitted command, and what follows a write (AOF, WATCH, wakeups),
//!   from the table's flags;
//! - one file (or directory) per family: [`connection`], [`server`], [`transactions`],
//!   [`keys`], [`strings`], [`hashes`], [`hashes_ext`], [`lists`], [`sets`], [`zsets`],
//!   [`pubsub`], [`streams`], [`bits`], [`sort`], [`object`];
//! - [`table`]: the command table, which names every family's handlers.
//!
//! Admission (unknown command, arity, authentication, MULTI queuing) is the request path's,
//! in [`crate::exec`]. Data commands run with the keyspace lock held; connection commands
//! without it.

pub mod args;
pub mod spec;

pub mod options;

pub mod blocking;
pub mod typed;

pub mod apply;

pub mod bits;
pub mod connection;
pub mod hashes;
pub mod hashes_ext;
pub mod keys;
pub mod lists;
pub mod object;
pub mod pubsub;
pub mod server;
pub mod sets;
pub mod sort;
pub mod streams;
pub mod strings;
pub mod transactions;
pub mod zsets;

pub mod table;
