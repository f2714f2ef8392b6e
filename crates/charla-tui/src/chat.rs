//! The terminal chat's event loop: the engine's connections (room feed, presence, outbox),
//! keys and typed commands, each change applied to the [`App`] state and the screen redrawn
//! with [`crate::ui::draw`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use charla_chat::{Change, Joined, Link, Outbox, Presence, RoomFeed, Session, Status};
use charla_core::{Message, Mode};
use charla_i18n::Lang;
use crossterm::event::{Event, EventStream, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use futures::StreamExt;
use tokio::sync::broadcast::error::RecvError;

use crate::app::{App, Line};

/// What the chat starts with.
#[derive(Debug, Clone)]
pub struct ChatOptions {
    pub name: String,
    pub room: String,
    /// Stream (history) or broadcast (live only).
    pub mode: Mode,
    /// Messages shown on joining a room.
    pub history: usize,
    /// Longest message, in bytes.
    pub max_text_bytes: usize,
    /// Where log lines go while the screen is up (the caller sends them there), named by /help.
    pub log_file: Option<std::path::PathBuf>,
    /// The language of everything the screen says (charla-i18n's catalogue).
    pub lang: Lang,
}

/// How the chat ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// Posts the broker never confirmed (it was unreachable to the end). Left to the caller
    /// to report: it has stderr back once the screen is torn down.
    pub unsent: usize,
}

/// The room the screen is in: its feed, the reader's place in it, and the presence session.
struct InRoom {
    /// Kept for as long as the screen is in the room (dropping it stops reading).
    _feed: RoomFeed,
    joined: Joined,
    _session: Session,
}

struct Engine {
    link: Arc<Link>,
    presence: Presence,
    outbox: Outbox,
    options: ChatOptions,
    /// Rooms the broker keeps, refreshed in the background.
    stored_rooms: Arc<Mutex<Vec<String>>>,
}

impl Engine {
    async fn enter(&self, app: &mut App, room: &str) -> Option<InRoom> {
        let feed = RoomFeed::start(self.link.clone(), self.options.mode, room);
        app.room = room.to_owned();
        app.lines.clear();
        app.scroll = 0;
        app.push(Line::Notice(format!("— #{room} —")));
        let lang = self.options.lang;
        let joined = match feed.join(self.options.history).await {
            Ok(j) => j,
            Err(e) => {
                app.push(Line::Error(lang.tr(
                    "chat-join-failed",
                    &[("room", &room), ("reason", &e.said().in_lang(lang))],
                )));
                return None;
            }
        };
        for m in &joined.history {
            app.message(m);
        }
        if !joined.history.is_empty() {
            let count = joined.history.len();
            app.push(Line::Notice(
                lang.tr("chat-history-above", &[("count", &count)]),
            ));
        }
        let session = self.presence.enter(&app.name, room);
        Some(InRoom {
            _feed: feed,
            joined,
            _session: session,
        })
    }

    fn refresh(&self, app: &mut App) {
        app.online = self.presence.online(&app.room);
        app.verified = self.presence.verified(&app.room);
        let mut rooms: std::collections::BTreeMap<String, usize> =
            self.presence.rooms().into_iter().collect();
        for r in self
            .stored_rooms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            rooms.entry(r.clone()).or_insert(0);
        }
        rooms.entry(app.room.clone()).or_insert(0);
        app.rooms = rooms.into_iter().collect();
        app.waiting = self.outbox.waiting();
    }
}

/// Run the chat on this terminal until the user quits.
///
/// Nothing else may write to the terminal meanwhile (a log line would stay drawn over the
/// screen): the caller points stderr elsewhere for the call (`charla chat`: a log file).
pub async fn run(link: Arc<Link>, options: ChatOptions) -> std::io::Result<Finished> {
    let engine = Engine {
        presence: Presence::start(link.clone()),
        outbox: Outbox::start(link.clone(), options.mode),
        stored_rooms: Arc::new(Mutex::new(Vec::new())),
        link,
        options,
    };
    let lister = tokio::spawn(list_rooms(engine.link.clone(), engine.stored_rooms.clone()));
    let mut status = engine.link.status();
    let mut app = App {
        name: engine.options.name.clone(),
        room: engine.options.room.clone(),
        mode: engine.options.mode,
        lines: VecDeque::new(),
        input: String::new(),
        scroll: 0,
        status: status.borrow_and_update().clone(),
        online: Vec::new(),
        verified: Vec::new(),
        rooms: Vec::new(),
        waiting: 0,
        quit: false,
        lang: engine.options.lang,
    };
    let mut terminal = ratatui::try_init()?;
    let result = event_loop(&engine, &mut app, &mut terminal, &mut status).await;
    ratatui::try_restore()?;
    lister.abort();
    // Posts still waiting get a moment to go out before the process ends.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while engine.outbox.waiting() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    result.map(|()| Finished {
        unsent: engine.outbox.waiting(),
    })
}

async fn event_loop(
    engine: &Engine,
    app: &mut App,
    terminal: &mut ratatui::DefaultTerminal,
    status: &mut tokio::sync::watch::Receiver<Status>,
) -> std::io::Result<()> {
    let mut events = EventStream::new();
    let mut changes = engine.presence.changes();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let first = app.room.clone();
    let mut room = engine.enter(app, &first).await;
    app.push(Line::Notice(
        app.lang.tr("chat-welcome", &[("name", &app.name)]),
    ));
    loop {
        engine.refresh(app);
        terminal.draw(|frame| crate::ui::draw(frame, app))?;
        if app.quit {
            return Ok(());
        }
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(Event::Key(key))) if key.kind != KeyEventKind::Release => {
                    if let Some(command) = on_key(app, key) {
                        if let Some(target) = run_command(engine, app, command).await {
                            drop(room.take());
                            room = engine.enter(app, &target).await;
                        }
                    }
                }
                Some(Ok(_)) => {} // resize and the rest: redrawn above
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            },
            live = next_live(&mut room) => match live {
                Ok(m) => {
                    let fresh = room.as_mut().is_some_and(|r| r.joined.is_new(&m.id));
                    if fresh {
                        app.message(&m);
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    app.push(Line::Error(app.lang.tr("chat-lagged", &[("count", &n)])));
                }
                Err(RecvError::Closed) => {
                    drop(room.take());
                }
            },
            change = changes.recv() => match change {
                // Your own arrival is the room's header already.
                Ok(Change::Joined { room: r, name }) if r == app.room && name != app.name => {
                    let name = charla_core::visible(&name);
                    app.push(Line::Notice(app.lang.tr("chat-joined", &[("name", &name)])));
                }
                Ok(Change::Left { room: r, name }) if r == app.room => {
                    let name = charla_core::visible(&name);
                    app.push(Line::Notice(app.lang.tr("chat-left", &[("name", &name)])));
                }
                _ => {}
            },
            changed = status.changed() => {
                if changed.is_ok() {
                    app.status = status.borrow_and_update().clone();
                    let line = match &app.status {
                        Status::Connected { broker } => Line::Notice(app.lang.tr("chat-connected", &[("broker", broker)])),
                        Status::Reconnecting { reason } => Line::Error(app.lang.tr("chat-lost", &[("reason", reason)])),
                    };
                    app.push(line);
                }
            }
            _ = tick.tick() => {}
        }
    }
}

async fn next_live(room: &mut Option<InRoom>) -> Result<Arc<Message>, RecvError> {
    match room {
        Some(r) => r.joined.live.recv().await,
        None => std::future::pending().await,
    }
}

/// What a typed line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Say(String),
    Join(String),
    Name(String),
    Who,
    Help,
    Quit,
    /// A command without the argument it needs: the catalogue id of how to use it.
    Usage(&'static str),
    Unknown(String),
}

fn parse(line: &str) -> Command {
    let trimmed = line.trim();
    let Some(rest) = trimmed.strip_prefix('/') else {
        return Command::Say(line.to_owned());
    };
    let (word, arg) = rest.split_once(' ').unwrap_or((rest, ""));
    let arg = arg.trim().to_owned();
    match word {
        "join" | "j" | "sala" if arg.is_empty() => Command::Usage("chat-usage-join"),
        "join" | "j" | "sala" => Command::Join(arg),
        "name" | "nick" | "nombre" if arg.is_empty() => Command::Usage("chat-usage-name"),
        "name" | "nick" | "nombre" => Command::Name(arg),
        "who" | "quien" => Command::Who,
        "help" | "ayuda" | "?" => Command::Help,
        "quit" | "exit" | "q" | "salir" => Command::Quit,
        _ => Command::Unknown(trimmed.to_owned()),
    }
}

/// Edit the input line; a finished line comes back as a command.
fn on_key(app: &mut App, key: KeyEvent) -> Option<Command> {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    match key.code {
        KeyCode::Char('c') | KeyCode::Char('d') if ctrl => app.quit = true,
        KeyCode::Esc => app.quit = true,
        KeyCode::Char('u') if ctrl => app.input.clear(),
        KeyCode::Char(c) => app.input.push(c),
        KeyCode::Backspace => {
            app.input.pop();
        }
        KeyCode::PageUp => app.scroll += 10,
        KeyCode::PageDown => app.scroll = app.scroll.saturating_sub(10),
        KeyCode::Enter => {
            let line = std::mem::take(&mut app.input);
            if line.trim().is_empty() {
                return None;
            }
            app.scroll = 0;
            return Some(parse(&line));
        }
        _ => {}
    }
    None
}

/// Carry a command out; a room to move to comes back.
async fn run_command(engine: &Engine, app: &mut App, command: Command) -> Option<String> {
    let lang = app.lang;
    match command {
        Command::Say(text) => {
            if let Err(e) = charla_chat::check_text(&text, engine.options.max_text_bytes) {
                let why = crate::refusal::said(lang, &e);
                app.push(Line::Error(lang.tr("chat-not-sent", &[("reason", &why)])));
                return None;
            }
            if let Err(e) = engine
                .outbox
                .post(Message::new(app.name.as_str(), text, app.room.as_str()))
                .await
            {
                let why = e.said().in_lang(lang);
                app.push(Line::Error(lang.tr("chat-not-sent", &[("reason", &why)])));
            }
            None
        }
        Command::Join(room) => match charla_chat::check_room(&room) {
            Ok(()) => Some(room),
            Err(e) => {
                app.push(Line::Error(crate::refusal::said(lang, &e)));
                None
            }
        },
        Command::Name(name) => {
            let name = match charla_chat::check_name(&name, charla_chat::MAX_NAME_CHARS) {
                Ok(name) => name,
                Err(e) => {
                    app.push(Line::Error(crate::refusal::said(lang, &e)));
                    return None;
                }
            };
            app.push(Line::Notice(lang.tr("chat-renamed", &[("name", &name)])));
            app.name = name;
            // Re-enter the room so presence shows the new name.
            Some(app.room.clone())
        }
        Command::Who => {
            let names = engine.presence.online(&app.room).join(", ");
            app.push(Line::Notice(
                lang.tr("chat-who", &[("room", &app.room), ("names", &names)]),
            ));
            None
        }
        Command::Help => {
            for help in [
                "chat-help-join",
                "chat-help-name",
                "chat-help-who",
                "chat-help-quit",
            ] {
                app.push(Line::Notice(lang.tr(help, &[])));
            }
            if let Some(log) = &engine.options.log_file {
                let file = log.display();
                app.push(Line::Notice(lang.tr("chat-help-log", &[("file", &file)])));
            }
            None
        }
        Command::Quit => {
            app.quit = true;
            None
        }
        Command::Usage(usage) => {
            app.push(Line::Error(lang.tr(usage, &[])));
            None
        }
        Command::Unknown(line) => {
            app.push(Line::Error(lang.tr("chat-unknown", &[("command", &line)])));
            None
        }
    }
}

/// Keep the broker's room list fresh for the side panel.
async fn list_rooms(link: Arc<Link>, rooms: Arc<Mutex<Vec<String>>>) {
    loop {
        let (_, broker) = link.broker().await;
        if !broker.capabilities().list_rooms {
            return;
        }
        if let Ok(list) = broker.rooms().await {
            *rooms.lock().unwrap_or_else(|e| e.into_inner()) = list;
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(parse("hola /join"), Command::Say("hola /join".into()));
        assert_eq!(parse("/join sala-2"), Command::Join("sala-2".into()));
        assert_eq!(
            parse("/name María José"),
            Command::Name("María José".into())
        );
        assert_eq!(parse("/quit"), Command::Quit);
        assert_eq!(parse("/join"), Command::Usage("chat-usage-join"));
        assert_eq!(parse("/nombre  "), Command::Usage("chat-usage-name"));
        // Both languages say what the command needs.
        for lang in Lang::ALL {
            assert!(lang.has("chat-usage-join") && lang.has("chat-usage-name"));
        }
        assert_eq!(parse("/joinx"), Command::Unknown("/joinx".into()));
    }
}
