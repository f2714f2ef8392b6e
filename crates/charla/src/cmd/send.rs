//! `charla send`: the seed's `emisor.py`, and a pipe-friendly producer.
//!
//! - with a MESSAGE argument: sends it and exits;
//! - interactive (stdin is a terminal, or `--interactive`): asks the name unless given, then
//!   sends each line; `salir`, `exit`, `quit` or end of input ends, as in the seed;
//! - piped: one message per line, read ahead and published in batches, so
//!   `seq 100000 | charla send` is bounded by the broker, not by round trips. A line that
//!   cannot be sent (not UTF-8, over the size limit) is reported on stderr with its line
//!   number and skipped; the others are sent, and the exit code is 1 at the end when any line
//!   was skipped, so a script notices.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use charla_core::{Broker, Message, Mode, Publisher};
use clap::Args;
use tokio::sync::mpsc;

use super::visible;
use crate::config::{Route, Settings};
use charla_i18n::{Lang, RULE_DOUBLE, RULE_SINGLE};

/// The seed's name when none is given.
const DEFAULT_NAME: &str = "Usuario";
/// Lines read ahead and sent in one publish call in piped mode.
const PIPE_BATCH: usize = 500;

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

    /// Send MESSAGE as a task and wait for its completion notice from `charla work --notify`;
    /// exit with the task's status (124 when none comes within --timeout)
    #[arg(long, requires = "message")]
    pub wait: bool,

    /// With --wait: how long to wait for the notice
    #[arg(long, value_name = "DURATION", default_value = "60s", requires = "wait",
          value_parser = super::duration_arg)]
    pub timeout: Duration,

    /// With --wait: the room the notices come on [default: the room's name and `.done`]
    #[arg(long, value_name = "ROOM", requires = "wait")]
    pub reply_room: Option<String>,

    /// With --wait: print the notice as JSON
    #[arg(long, requires = "wait")]
    pub json: bool,

    /// The message to send (words are joined with spaces). Without it, lines are read from
    /// stdin: interactively from a terminal, one message per line from a pipe. Options are
    /// options wherever they stand; after `--` everything is message text (`-- --room`).
    // No trailing_var_arg / allow_hyphen_values: with them `send hola --room zz` sent
    // "hola --room zz" to the default room, and a swallowed --broker started a local broker.
    #[arg(value_name = "MESSAGE")]
    pub message: Vec<String>,
}

pub async fn run(settings: &Settings, args: SendArgs) -> Result<ExitCode> {
    let mode = settings.mode(&args.route)?;
    let room = settings.room(&args.route, mode, false);
    let name = args.name.clone().or_else(|| settings.file.name.clone());
    let interactive =
        args.interactive || (args.message.is_empty() && std::io::stdin().is_terminal());
    let lang = settings.lang;

    if interactive {
        println!("{}", lang.sender_banner());
        println!("{RULE_DOUBLE}");
    }
    let broker = super::connect_or_start(settings).await?;
    let mut sender = Sender::new(settings, broker, mode, room).await?;

    if !args.message.is_empty() {
        let name = name.unwrap_or_else(|| DEFAULT_NAME.to_owned());
        let text = args.message.join(" ");
        let m = Message::new(name, text, sender.room.as_str());
        // Listening for the notice before the task goes out: a quick worker is not missed.
        let mut replies = match args.wait {
            true => Some(
                super::reply::listen(&*sender.broker, &sender.room, args.reply_room.as_deref())
                    .await
                    .map_err(|e| anyhow::anyhow!(super::explain(settings, &e)))?,
            ),
            false => None,
        };
        sender.send(std::slice::from_ref(&m)).await?;
        if let Some(replies) = replies.as_mut() {
            let code = super::reply::wait(lang, &mut **replies, &m, args.timeout, args.json).await;
            sender.close();
            return code;
        }
        if !args.quiet {
            println!("{}", lang.sent(&visible(&m.usuario), &visible(&m.mensaje)));
        }
        sender.close();
        return Ok(ExitCode::SUCCESS);
    }

    // No line longer than one message can be sent: the reader keeps at most that much of a
    // line in memory, whatever comes down the pipe.
    let mut lines = spawn_stdin_reader(sender.limit);
    if interactive {
        interactive_loop(lang, &mut sender, &mut lines, name).await?;
    } else {
        let name = name.unwrap_or_else(|| DEFAULT_NAME.to_owned());
        let counts = piped_loop(lang, &mut sender, &mut lines, &name, args.quiet).await?;
        eprintln!("{}", lang.sent_total(counts.sent));
        if counts.skipped > 0 {
            eprintln!(
                "{}",
                lang.error_line(&format!(
                    "{} line(s) not sent (reported above with their numbers)",
                    counts.skipped
                ))
            );
            sender.close();
            return Ok(ExitCode::FAILURE);
        }
    }
    sender.close();
    Ok(ExitCode::SUCCESS)
}

/// A publisher that survives the broker restarting: on a transient failure it reconnects with
/// backoff and sends the same messages again (same ids, so listeners drop any duplicate).
struct Sender {
    url: String,
    lang: Lang,
    broker: Box<dyn Broker>,
    publisher: Box<dyn Publisher>,
    mode: Mode,
    room: String,
    /// The largest encoded message this broker URL allows (`?max_message_bytes=`).
    limit: usize,
}

impl Sender {
    async fn new(
        settings: &Settings,
        broker: Box<dyn Broker>,
        mode: Mode,
        room: String,
    ) -> Result<Self> {
        let publisher = broker
            .publisher(mode, &room)
            .await
            .map_err(|e| anyhow::anyhow!(super::explain(settings, &e)))?;
        let limit = charla_core::BrokerUrl::parse(&settings.broker)?.max_message_bytes()?;
        Ok(Sender {
            limit,
            url: settings.broker.clone(),
            lang: settings.lang,
            broker,
            publisher,
            mode,
            room,
        })
    }

    async fn send(&mut self, messages: &[Message]) -> Result<()> {
        const ATTEMPTS: u32 = 8;
        let mut attempt = 0;
        loop {
            let result = if messages.len() == 1 {
                self.publisher.publish(&messages[0]).await
            } else {
                self.publisher.publish_batch(messages).await
            };
            match result {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() && attempt + 1 < ATTEMPTS => {
                    attempt += 1;
                    let lang = self.lang;
                    let report = |e: &charla_core::BrokerError, d: Duration| {
                        eprintln!("{}", lang.reconnecting(&e.to_string(), d.as_secs_f64()))
                    };
                    report(&e, Duration::from_millis(200));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let broker =
                        crate::connect::connect_with_retry(&self.url, ATTEMPTS, report).await?;
                    self.publisher = broker.publisher(self.mode, &self.room).await?;
                    self.broker = broker;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn close(self) {
        drop(self.publisher);
        drop(self.broker);
    }
}

/// One line of stdin (numbered from 1): text, a line that was not UTF-8, or one longer than a
/// message may be (with its length in bytes), of which nothing was kept.
enum Line {
    Text(usize, String),
    NotUtf8(usize),
    TooLong(usize, usize),
}

impl Line {
    /// Why a line that is not text is not sent.
    fn problem(&self, limit: usize, lang: Lang) -> Option<String> {
        match self {
            Line::Text(..) => None,
            Line::NotUtf8(n) => Some(lang.tr("send-not-utf8", &[("line", n)])),
            Line::TooLong(n, size) => Some(lang.tr(
                "send-too-long",
                &[("line", n), ("size", size), ("limit", &limit)],
            )),
        }
    }
}

/// Reads stdin on a thread of its own (blocking reads must not stall the runtime). Keeps at
/// most `limit` bytes of any line.
fn spawn_stdin_reader(limit: usize) -> mpsc::Receiver<Line> {
    let (tx, rx) = mpsc::channel(PIPE_BATCH * 4);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut reader = stdin.lock();
        let mut buf = Vec::new();
        let mut number = 0;
        loop {
            buf.clear();
            match read_line_bounded(&mut reader, &mut buf, limit) {
                Ok(None) | Err(_) => break,
                Ok(Some(size)) => {
                    number += 1;
                    if buf.last() == Some(&b'\r') {
                        buf.pop();
                    }
                    let line = if size > limit {
                        Line::TooLong(number, size)
                    } else {
                        match String::from_utf8(std::mem::take(&mut buf)) {
                            Ok(s) => Line::Text(number, s),
                            Err(_) => Line::NotUtf8(number),
                        }
                    };
                    if tx.blocking_send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// Read one line (without its `\n`) into `buf`, keeping at most `cap` bytes of it and
/// skipping the rest. Returns the line's whole length, or `None` at the end of input.
fn read_line_bounded(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<Option<usize>> {
    let mut total = 0;
    let mut any = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(any.then_some(total));
        }
        any = true;
        let newline = available.iter().position(|b| *b == b'\n');
        let chunk = &available[..newline.unwrap_or(available.len())];
        let room = cap.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        total += chunk.len();
        let used = newline.map_or(available.len(), |i| i + 1);
        reader.consume(used);
        if newline.is_some() {
            return Ok(Some(total));
        }
    }
}
fn is_exit_word(text: &str) -> bool {
    matches!(text.to_lowercase().as_str(), "salir" | "exit" | "quit")
}

fn prompt(text: &str) {
    print!("{text}");
    let _ = std::io::stdout().flush();
}

async fn interactive_loop(
    lang: Lang,
    sender: &mut Sender,
    lines: &mut mpsc::Receiver<Line>,
    name: Option<String>,
) -> Result<()> {
    let name = match name {
        Some(n) => n,
        None => {
            prompt(&lang.ask_name());
            match lines.recv().await {
                Some(Line::Text(_, n)) if !n.trim().is_empty() => n.trim().to_owned(),
                _ => DEFAULT_NAME.to_owned(),
            }
        }
    };
    println!("{}", lang.hello(&name));
    println!("{RULE_SINGLE}");
    loop {
        prompt(&format!("{name}: "));
        let line = tokio::select! {
            line = lines.recv() => line,
            _ = crate::signal::shutdown() => None,
        };
        let text = match line {
            None => {
                println!();
                break;
            }
            Some(bad @ (Line::NotUtf8(_) | Line::TooLong(..))) => {
                let why = bad.problem(sender.limit, lang).unwrap_or_default();
                eprintln!("{}", lang.error_line(&why));
                continue;
            }
            Some(Line::Text(_, t)) => t.trim().to_owned(),
        };
        if is_exit_word(&text) {
            break;
        }
        if text.is_empty() {
            continue;
        }
        let m = Message::new(name.as_str(), text, sender.room.as_str());
        match sender.send(std::slice::from_ref(&m)).await {
            Ok(()) => println!("{}", lang.sent(&visible(&m.usuario), &visible(&m.mensaje))),
            // One failed message does not end the session: say so and let the user go on.
            Err(e) => eprintln!("{}", lang.error_line(&format!("{e:#}"))),
        }
    }
    println!("{}", lang.bye());
    Ok(())
}

/// What the piped loop did.
struct Counts {
    sent: u64,
    /// Lines reported and not sent.
    skipped: u64,
}

async fn piped_loop(
    lang: Lang,
    sender: &mut Sender,
    lines: &mut mpsc::Receiver<Line>,
    name: &str,
    quiet: bool,
) -> Result<Counts> {
    let mut counts = Counts {
        sent: 0,
        skipped: 0,
    };
    let mut out = std::io::BufWriter::new(std::io::stdout());
    loop {
        let first = tokio::select! {
            line = lines.recv() => line,
            _ = crate::signal::shutdown() => None,
        };
        let Some(first) = first else { break };
        // The messages of this batch, each with its line number for reports.
        let mut batch = Vec::with_capacity(PIPE_BATCH);
        let mut numbers = Vec::with_capacity(PIPE_BATCH);
        let limit = sender.limit;
        let mut push = |line: Line, counts: &mut Counts| match line {
            Line::Text(n, t) if !t.trim().is_empty() => {
                batch.push(Message::new(name, t, sender.room.as_str()));
                numbers.push(n);
            }
            Line::Text(..) => {}
            bad => {
                counts.skipped += 1;
                let why = bad.problem(limit, lang).unwrap_or_default();
                eprintln!("{}", lang.error_line(&why))
            }
        };
        push(first, &mut counts);
        for _ in 1..PIPE_BATCH {
            match lines.try_recv() {
                Ok(line) => push(line, &mut counts),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        let sent_before = counts.sent;
        let sent = match sender.send(&batch).await {
            Ok(()) => batch,
            // One message over the size limit fails the whole batch before anything is sent
            // (every backend checks sizes first): send them one by one to find it, report
            // it with its line number and skip it, like any other line that cannot be sent.
            Err(e) if is_too_large(&e) => {
                let mut ok = Vec::with_capacity(batch.len());
                for (m, n) in batch.into_iter().zip(numbers) {
                    match sender.send(std::slice::from_ref(&m)).await {
                        Ok(()) => ok.push(m),
                        Err(e) if is_too_large(&e) => {
                            counts.skipped += 1;
                            let why = format!("{e:#}");
                            let said =
                                lang.tr("send-line-not-sent", &[("line", &n), ("reason", &why)]);
                            eprintln!("{}", lang.error_line(&said));
                        }
                        Err(e) => {
                            let count = sent_before + ok.len() as u64;
                            return Err(e.context(lang.tr("send-after", &[("count", &count)])));
                        }
                    }
                }
                ok
            }
            Err(e) => return Err(e.context(lang.tr("send-after", &[("count", &sent_before)]))),
        };
        counts.sent += sent.len() as u64;
        if !quiet {
            for m in &sent {
                writeln!(
                    out,
                    "{}",
                    lang.sent(&visible(&m.usuario), &visible(&m.mensaje))
                )?;
            }
            out.flush()?;
        }
    }
    Ok(counts)
}

/// True when a send failed because a message is over the size limit (it will never pass).
fn is_too_large(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<charla_core::BrokerError>(),
        Some(charla_core::BrokerError::TooLarge { .. })
    )
}

#[cfg(test)]
mod tests {
    use super::read_line_bounded;

    #[test]
    fn long_lines_are_measured_not_kept() {
        let mut input = std::io::BufReader::with_capacity(4, &b"abcdefghij\nxy\n\nlast"[..]);
        let mut buf = Vec::new();
        let mut next = || {
            buf.clear();
            let n = read_line_bounded(&mut input, &mut buf, 5).unwrap();
            (n, String::from_utf8(buf.clone()).unwrap())
        };
        assert_eq!(next(), (Some(10), "abcde".to_owned()));
        assert_eq!(next(), (Some(2), "xy".to_owned()));
        assert_eq!(next(), (Some(0), String::new()));
        assert_eq!(next(), (Some(4), "last".to_owned()));
        assert_eq!(next(), (None, String::new()));
    }
}
