//! Command-line interface: the top-level help and the list of subcommands.
//!
//! The texts a user reads (about, argument help, examples) are the catalogue's
//! (charla-i18n, `cmd-…` and `arg-…`), put in by [`crate::help`]; the doc comments here and
//! in `cmd/` are for whoever reads the code.
//!
//! This module only assembles: each command's flags (`…Args`) live beside its `run` in
//! `cmd/<name>.rs`, and the global flags beside the code that resolves them
//! ([`crate::config`]). Every setting can come from a flag, an environment variable
//! (`CHARLA_…`) or the config file, in that order of precedence.
//!
//! Why this shape: commands import `config`, so `config` must not import this module, and
//! this module imports the commands; with the flags defined here, the three imported each
//! other in a circle (the layering test in charla-testkit now fails on any such circle).

use clap::{Parser, Subcommand};

use crate::cmd::{archive, bench, chat, check, dead, listen, send, serve, web, work};
use crate::config::GlobalArgs;

#[derive(Debug, Parser)]
#[command(
    name = "charla",
    version,
    about = "Distributed chat and messaging through a broker (Redis, RabbitMQ, Kafka, or its own)",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Connect, ping, and say which broker and version answers (like the seed's broker.py)
    Check(check::CheckArgs),
    /// Send messages: interactive like emisor.py, one from arguments, or one per stdin line
    Send(send::SendArgs),
    /// Receive and print messages like receptor.py (Ctrl+C prints the count)
    Listen(listen::ListenArgs),
    /// Measure end-to-end throughput and latency percentiles on a broker and mode
    Bench(bench::BenchArgs),
    /// Run the embedded broker: the Redis protocol on 127.0.0.1:6380, no install needed
    Serve(serve::ServeArgs),
    /// Chat in the terminal: rooms, history, who is online (`charla chat --name Juan`)
    Chat(chat::ChatArgs),
    /// Store rooms' messages in PostgreSQL, in a consumer group that catches up after outages
    Archive(archive::ArchiveArgs),
    /// Serve the browser chat: a page, a WebSocket and an HTTP API over the broker's rooms
    Web(Box<web::WebArgs>),
    /// Run a command once per message of a queue, with retries, timeouts and dead letters
    Work(work::WorkArgs),
    /// See a room's dead letters and why they died; replay or purge them
    Dead(dead::DeadArgs),
}
