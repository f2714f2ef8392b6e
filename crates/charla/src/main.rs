//! `charla`: the one binary. Parses the command line, sets up logging, runs a command, and
//! turns errors into one clear line and an exit code (0 ok, 1 failure, 2 usage).

mod cli;
mod cmd;
mod config;
mod connect;
mod embedded;
mod help;
mod signal;

use clap::FromArgMatches;

/// mimalloc: the send and receive paths allocate many small strings per message, and the
/// system allocator showed up at ~20% of bench profiles. Without transparent huge pages
/// (`no_thp`): with them every gateway page cost ~30 KiB of resident memory instead of ~10
/// (bench/web_fanout.sh), and `charla serve` started 9 MiB larger.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use crate::cli::{Cli, Command};
use crate::config::Settings;

fn main() -> std::process::ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The language is needed before parsing: `--help` is printed by the parse itself.
    let lang = help::lang_before_parsing(&argv);
    let cli = match help::command(lang)
        .try_get_matches_from(&argv)
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) => help::exit_on(e, lang),
    };
    // `charla chat` sends its log lines to a file while its screen is up (cmd/chat.rs): no
    // colour codes in them.
    let colour = colour_wanted() && !matches!(cli.command, Command::Chat(_));
    init_logging(cli.global.verbose, colour, cli.global.log_format);
    let settings = match Settings::resolve(&cli.global) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("❌ {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("❌ {}", settings.lang.tr("no-runtime", &[("reason", &e)]));
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Check(args) => cmd::check::run(&settings, args).await,
            Command::Send(args) => cmd::send::run(&settings, args).await,
            Command::Listen(args) => cmd::listen::run(&settings, args).await,
            Command::Bench(args) => cmd::bench::run(&settings, args).await,
            Command::Serve(args) => cmd::serve::run(args, settings.lang).await,
            Command::Archive(args) => cmd::archive::run(&settings, args).await,
            Command::Chat(args) => cmd::chat::run(&settings, args).await,
            Command::Web(args) => cmd::web::run(&settings, *args).await,
            Command::Work(args) => cmd::work::run(&settings, args).await,
            Command::Dead(args) => cmd::dead::run(&settings, args).await,
        }
    });
    // Blocking stdin readers may still be parked on a read: do not wait for them.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}", settings.lang.error_line(&format!("{e:#}")));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Colour codes in log lines only for a terminal, and not when NO_COLOR is set (to anything
/// but the empty string, <https://no-color.org>): `charla listen 2>file` writes plain text.
fn colour_wanted() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Warnings (poison messages, reconnects) always reach stderr; `-v` adds more, RUST_LOG rules.
/// `--log-format json` writes each line as one JSON object, for a log collector.
fn init_logging(verbose: u8, colour: bool, format: crate::config::LogFormat) {
    // lapin and rdkafka log their own lines for conditions charla already reports in one line
    // of its own (wrong password, broker restarting, broker unreachable): keep them out unless
    // RUST_LOG asks (librdkafka's own log reaches `tracing` at debug level, target librdkafka).
    let default = match verbose {
        0 => "warn,lapin=off,rdkafka=off",
        1 => "info,lapin=off,rdkafka=off",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let lines = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        crate::config::LogFormat::Text => lines.with_target(false).with_ansi(colour).try_init(),
        crate::config::LogFormat::Json => lines.json().with_ansi(false).try_init(),
    };
}
