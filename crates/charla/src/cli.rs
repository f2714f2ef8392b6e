//! Command-line interface: the top-level help and the list of subcommands.
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

use crate::cmd::{archive, bench, chat, check, listen, send, serve, web};
use crate::config::GlobalArgs;

const EXAMPLES: &str = "\
Examples (the workshop, on two computers that both reach 192.168.0.10):
  charla listen                                  # consumer, like receptor.py
  charla send                                    # producer, like emisor.py (asks your name)
  charla send --name Juan \"Hola María!\"          # one message
  seq 1000 | charla send --name bot              # one message per line of stdin
  charla listen --json --count 10                # NDJSON, stop after 10
  charla check --broker redis://192.168.0.10:6380
  charla chat --name Juan                        # the terminal chat: rooms, history, who is on
  charla web                                     # the browser chat on http://127.0.0.1:8080/
  charla web --archive postgres://postgres@127.0.0.1/charla   # with history and search in PostgreSQL

Brokers (--broker or CHARLA_BROKER):
  redis://[:password@]host[:port][/db]   Redis, Valkey or `charla serve` (rediss:// for TLS)
  amqp://user:pass@host[:port]/vhost     RabbitMQ
  kafka://host[:port]                    Kafka protocol
  memory://[name]                        in-process (tests, single-process demos)
Default: redis://127.0.0.1:6380, the workshop's port.
A password in a URL (or any argument) is visible to every user of the machine in `ps`: put it
in CHARLA_PASSWORD or in a file named by --password-file instead, and leave it out of the URL.

Delivery modes (--mode):
  queue      each message to one consumer, acknowledged (default; the seed's list chat_cola)
  broadcast  every online listener gets every message, nothing is kept
  stream     durable log: replay with --from-beginning / --from ID, resume with --group
             (what a group's members share depends on the broker: charla listen --help)
  routing    listen by pattern: --room 'chat.*' or 'app.error.#'; send to a topic

Config file: --config PATH, CHARLA_CONFIG, ./charla.toml or ~/.config/charla/config.toml,
with keys broker, name, room, mode, lang, group, prefetch.";

#[derive(Debug, Parser)]
#[command(
    name = "charla",
    version,
    about = "Distributed chat and messaging through a broker (Redis, RabbitMQ, Kafka, or its own)",
    long_about = "charla: programs on different computers talk only through a message broker.\n\
                  It is the workshop's emisor.py / receptor.py as one fast binary, over the \
                  broker you already run.",
    after_help = EXAMPLES,
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
    Web(web::WebArgs),
}
