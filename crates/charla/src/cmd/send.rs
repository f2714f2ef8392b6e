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
use tokio::sync::mpsc;

use super::visible;
use crate::cli::SendArgs;
use crate::config::Settings;
use crate::i18n::{Lang, RULE_DOUBLE, RULE_SINGLE};

/// The seed's name when none is given.
const DEFAULT_NAME: &str = "Usuario";
/// Lines read ahead and sent in one publish call in piped mode.
const PIPE_BATCH: usize = 500;

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
        sender.send(std::slice::from_ref(&m)).await?;
        if !args.quiet {
            println!("{}", lang.sent(&visible(&m.usuario), &visible(&m.mensaje)));
        }
        sender.close();
        return Ok(ExitCode::SUCCESS);
    }

    let mut lines = spawn_stdin_reader();
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
        Ok(Sender {
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

/// One line of stdin (numbered from 1): text, or a line that was not UTF-8.
enum Line {
    Text(usize, String),
    NotUtf8(usize),
}

/// Reads stdin on a thread of its own (blocking reads must not stall the runtime).
fn spawn_stdin_reader() -> mpsc::Receiver<Line> {
    let (tx, rx) = mpsc::channel(PIPE_BATCH * 4);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut reader = stdin.lock();
        let mut buf = Vec::new();
        let mut number = 0;
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    number += 1;
                    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        buf.pop();
                    }
                    let line = match String::from_utf8(std::mem::take(&mut buf)) {
                        Ok(s) => Line::Text(number, s),
                        Err(_) => Line::NotUtf8(number),
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
            prompt(lang.ask_name());
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
            Some(Line::NotUtf8(n)) => {
                eprintln!(
                    "{}",
                    lang.error_line(&format!("line {n} is not UTF-8 text; not sent"))
                );
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
        let mut push = |line: Line, counts: &mut Counts| match line {
            Line::Text(n, t) if !t.trim().is_empty() => {
                batch.push(Message::new(name, t, sender.room.as_str()));
                numbers.push(n);
            }
            Line::Text(..) => {}
            Line::NotUtf8(n) => {
                counts.skipped += 1;
                eprintln!(
                    "{}",
                    lang.error_line(&format!("line {n} is not UTF-8 text; not sent"))
                )
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
                            eprintln!("{}", lang.error_line(&format!("line {n}: {e:#}; not sent")));
                        }
                        Err(e) => {
                            return Err(e.context(format!(
                                "after {} messages sent",
                                sent_before + ok.len() as u64
                            )))
                        }
                    }
                }
                ok
            }
            Err(e) => return Err(e.context(format!("after {sent_before} messages sent"))),
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
