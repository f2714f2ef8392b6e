//! Command-line interface: flags, environment variables and help texts.
//!
//! Every setting can come from a flag, an environment variable (`CHARLA_…`) or the config
//! file, in that order of precedence; see [`crate::config`].

use std::path::PathBuf;

use charla_core::Mode;
use clap::{Args, Parser, Subcommand};

use crate::i18n::Lang;

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
  stream     durable log: replay with --from-beginning / --from ID, share with --group
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

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Broker URL [default: redis://127.0.0.1:6380]
    #[arg(
        long,
        short = 'b',
        env = "CHARLA_BROKER",
        global = true,
        value_name = "URL"
    )]
    pub broker: Option<String>,

    /// File whose content is the broker password, merged into the broker URL: unlike a
    /// password in the URL or in argv, it is not shown by `ps` (CHARLA_PASSWORD works too)
    #[arg(long, env = "CHARLA_PASSWORD_FILE", global = true, value_name = "PATH")]
    pub password_file: Option<PathBuf>,

    /// Kafka: partitions of the topics charla creates (a topic that exists keeps its own);
    /// the same as ?partitions=N in the URL [default: 3]
    #[arg(long, env = "CHARLA_PARTITIONS", global = true, value_name = "N")]
    pub partitions: Option<u32>,

    /// Config file (TOML) [default: ./charla.toml, then ~/.config/charla/config.toml]
    #[arg(long, env = "CHARLA_CONFIG", global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Output language: en or es [default: from LANG]
    #[arg(long, env = "CHARLA_LANG", global = true, value_name = "LANG")]
    pub lang: Option<Lang>,

    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides
    #[arg(long, short = 'v', action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Connect, ping, and say which broker and version answers (like the seed's broker.py)
    Check(CheckArgs),
    /// Send messages: interactive like emisor.py, one from arguments, or one per stdin line
    Send(SendArgs),
    /// Receive and print messages like receptor.py (Ctrl+C prints the count)
    Listen(ListenArgs),
    /// Measure end-to-end throughput and latency percentiles on a broker and mode
    Bench(BenchArgs),
    /// Run the embedded broker: the Redis protocol on 127.0.0.1:6380, no install needed
    Serve(crate::cmd::serve::ServeArgs),
    /// Chat in the terminal: rooms, history, who is online (`charla chat --name Juan`)
    Chat(crate::cmd::chat::ChatArgs),
    /// Store rooms' messages in PostgreSQL, in a consumer group that catches up after outages
    Archive(crate::cmd::archive::ArchiveArgs),
    /// Serve the browser chat: a page, a WebSocket and an HTTP API over the broker's rooms
    Web(crate::cmd::web::WebArgs),
}

/// Where messages go or come from.
#[derive(Debug, Clone, Args)]
pub struct Route {
    /// Delivery mode: queue, broadcast, stream or routing [default: queue]
    #[arg(long, short = 'm', env = "CHARLA_MODE", value_name = "MODE")]
    pub mode: Option<Mode>,

    /// Room: the queue, channel, stream or topic name on the broker (a pattern when listening
    /// in routing mode) [default: chat_cola; chat_stream in stream mode; chat.general / chat.#
    /// in routing mode]
    #[arg(long, short = 'r', env = "CHARLA_ROOM", value_name = "NAME")]
    pub room: Option<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Print the result as one JSON object
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub route: Route,

    /// Your name in messages (the seed's `usuario`) [default: asked, or "Usuario"]
    #[arg(long, short = 'n', env = "CHARLA_NAME", value_name = "NAME")]
    pub name: Option<String>,

    /// Prompt like emisor.py even when stdin is not a terminal
    #[arg(long, short = 'i')]
    pub interactive: bool,

    /// Do not print a line per message sent
    #[arg(long, short = 'q')]
    pub quiet: bool,

    /// The message to send (words are joined with spaces). Without it, lines are read from
    /// stdin: interactively from a terminal, one message per line from a pipe. Options are
    /// options wherever they stand; after `--` everything is message text (`-- --room`).
    // No trailing_var_arg / allow_hyphen_values: with them `send hola --room zz` sent
    // "hola --room zz" to the default room, and a swallowed --broker started a local broker.
    #[arg(value_name = "MESSAGE")]
    pub message: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ListenArgs {
    #[command(flatten)]
    pub route: Route,

    /// Consumer group (stream mode): members share the messages and resume where they acked
    #[arg(long, short = 'g', env = "CHARLA_GROUP", value_name = "GROUP")]
    pub group: Option<String>,

    /// Stream mode: start from the oldest message the broker keeps
    #[arg(long, conflicts_with = "from")]
    pub from_beginning: bool,

    /// Stream mode: start after this offset (as printed in --json output: a Redis stream id,
    /// a RabbitMQ offset, a Kafka PARTITION:OFFSET)
    #[arg(long, value_name = "OFFSET", conflicts_with = "since")]
    pub from: Option<String>,

    /// Stream mode: start at the first message stored at or after TIME: a date-time
    /// (2026-11-24T14:30:00Z), unix seconds (1764000000), or an age (90s, 10m, 2h, 1d)
    #[arg(long, value_name = "TIME", conflicts_with = "from_beginning")]
    pub since: Option<String>,

    /// Print one JSON object per line (NDJSON) instead of text
    #[arg(long)]
    pub json: bool,

    /// Exit after receiving this many messages
    #[arg(long, short = 'c', value_name = "N")]
    pub count: Option<u64>,

    /// Unacknowledged messages held at once (queue and stream) [default: 100]
    #[arg(long, env = "CHARLA_PREFETCH", value_name = "N")]
    pub prefetch: Option<usize>,

    /// Print messages delivered again with an id already seen (normally dropped)
    #[arg(long)]
    pub keep_duplicates: bool,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Delivery mode to measure
    #[arg(long, short = 'm', default_value = "queue", value_name = "MODE")]
    pub mode: Mode,

    /// Messages to send in total (with --rate and --duration: rate × duration)
    #[arg(long, short = 'n', default_value_t = 100_000, value_name = "N")]
    pub messages: u64,

    /// Open loop: send this many messages per second on a fixed schedule, whatever the broker
    /// does, and measure each message's latency from when it was due (not from when it could be
    /// sent: queueing delay counts, as in wrk2). Without it, producers send as fast as the
    /// broker takes them (closed loop: throughput, but latency hides the queueing)
    #[arg(long, value_name = "MSGS_PER_SEC")]
    pub rate: Option<u64>,

    /// With --rate: run this long (`10s`, `1m`, `500ms`, or seconds) instead of --messages
    #[arg(long, requires = "rate", value_name = "TIME")]
    pub duration: Option<String>,

    /// Bytes of text per message (the `mensaje` field)
    #[arg(long, short = 's', default_value_t = 100, value_name = "BYTES")]
    pub size: usize,

    /// Concurrent producers, each with its own connection
    #[arg(long, short = 'p', default_value_t = 1, value_name = "P")]
    pub producers: usize,

    /// Concurrent consumers, each with its own connection
    #[arg(long, short = 'c', default_value_t = 1, value_name = "C")]
    pub consumers: usize,

    /// Messages per publish call (1 = one round trip per message, like the seed's emisor);
    /// with --rate, the most messages a late producer sends at once to catch up
    #[arg(long, default_value_t = 500, value_name = "N")]
    pub batch: usize,

    /// Unacknowledged messages a consumer holds (queue and stream); also the receive batch
    #[arg(long, default_value_t = 500, value_name = "N")]
    pub prefetch: usize,

    /// Most messages published and not yet delivered (0 = no limit): backpressure, so that
    /// producers do not take the CPU the consumers and a local broker need (not with --rate:
    /// an open loop never waits)
    #[arg(long, default_value_t = 2_000, value_name = "N")]
    pub window: u64,

    /// Room to use [default: a fresh random name, removed afterwards]
    #[arg(long, value_name = "NAME")]
    pub room: Option<String>,

    /// Print one JSON object with the results
    #[arg(long)]
    pub json: bool,
}
