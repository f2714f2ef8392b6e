//! `charla chat`, the terminal chat, driven through tmux as a person would: keys sent with
//! `send-keys`, the screen read with `capture-pane`. Two clients in one room on a
//! `charla serve` see each other's messages, the room's history on joining, who is online; a
//! killed client drops out; a broker restart is survived, and what was typed meanwhile is sent.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use charla_testkit::{service_missing, unique_name, RedisServer};

/// One tmux server of our own (its own socket), killed with the test.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Option<Tmux> {
        let ok = Command::new("tmux")
            .arg("-V")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            service_missing("tmux (apt-get install tmux)");
            return None;
        }
        Some(Tmux {
            socket: unique_name("charla-tmux"),
        })
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A window running `charla chat` as `name` in `room`, its stderr kept off the screen (in
    /// the sandbox's `chat-NAME.log`, shown when a wait fails).
    fn chat(&self, broker: &str, name: &str, room: &str) {
        let home = common::sandbox();
        self.chat_with(
            broker,
            name,
            room,
            &format!("2>>{}/chat-{name}.log", home.display()),
        );
    }

    /// A window running `charla chat` as a person starts it: stderr is the terminal too, and
    /// log lines go where the chat puts them (`XDG_STATE_HOME` is the sandbox's `state-NAME`).
    fn chat_on_terminal(&self, broker: &str, name: &str, room: &str) {
        self.chat_with(broker, name, room, "");
    }

    fn chat_with(&self, broker: &str, name: &str, room: &str, redirect: &str) {
        let sandbox = common::sandbox();
        let command = format!(
            "exec env -u CHARLA_NAME -u RUST_LOG -u NO_COLOR HOME={home} XDG_CONFIG_HOME={home} \
             XDG_STATE_HOME={home}/state-{name} LANG=C.UTF-8 TERM=xterm-256color \
             CHARLA_NO_AUTOSTART=1 {bin} chat --broker {broker} --name {name} --room {room} \
             {redirect}",
            home = sandbox.display(),
            bin = env!("CARGO_BIN_EXE_charla"),
        );
        let first = self.tmux(&["list-sessions"]).is_empty();
        if first {
            self.tmux(&[
                "new-session",
                "-d",
                "-s",
                "t",
                "-n",
                name,
                "-x",
                "110",
                "-y",
                "30",
                &command,
            ]);
        } else {
            self.tmux(&["new-window", "-d", "-t", "t", "-n", name, &command]);
        }
    }

    fn screen(&self, name: &str) -> String {
        self.tmux(&["capture-pane", "-p", "-t", &format!("t:{name}")])
    }

    fn keys(&self, name: &str, text: &str) {
        self.tmux(&["send-keys", "-t", &format!("t:{name}"), "-l", text]);
        self.tmux(&["send-keys", "-t", &format!("t:{name}"), "Enter"]);
    }

    /// Wait until `name`'s screen shows `needle` (the screen in the panic otherwise).
    fn expect(&self, name: &str, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.screen(name);
            if screen.contains(needle) {
                return;
            }
            if Instant::now() > deadline {
                let read = |path: String| {
                    std::fs::read_to_string(common::sandbox().join(path)).unwrap_or_default()
                };
                let log = read(format!("chat-{name}.log"))
                    + &read(format!("state-{name}/charla/chat.log"));
                panic!("{name}'s screen never showed {needle:?}:\n{screen}\n--- stderr ---\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn pane_pid(&self, name: &str) -> u32 {
        self.tmux(&[
            "display-message",
            "-p",
            "-t",
            &format!("t:{name}"),
            "#{pane_pid}",
        ])
        .trim()
        .parse()
        .expect("pane pid")
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for w in self.tmux(&["list-windows", "-F", "#{window_name}"]).lines() {
                eprintln!("--- {w} ---\n{}", self.screen(w));
            }
        }
        self.tmux(&["kill-server"]);
    }
}

const LONG: Duration = Duration::from_secs(20);

#[test]
fn two_terminal_clients_chat_with_history_presence_and_a_broker_restart() {
    let Some(tmux) = Tmux::new() else { return };
    let mut server = RedisServer::start_charla(
        std::path::Path::new(env!("CARGO_BIN_EXE_charla")),
        &["--appendonly", "yes", "--appendfsync", "always"],
    );
    let url = server.url();
    let room = unique_name("tui");

    tmux.chat(&url, "Ana", &room);
    tmux.expect("Ana", &format!("#{room}"), LONG);
    tmux.expect("Ana", "you are Ana", LONG);
    tmux.keys("Ana", "Hola, ¿hay alguien? 👋");
    tmux.expect("Ana", "Ana: Hola, ¿hay alguien? 👋", LONG);
    assert!(
        !tmux.screen("Ana").contains("→ Ana joined"),
        "no notice of one's own arrival"
    );

    // Beto arrives later: the room's history first, then live.
    tmux.chat(&url, "Beto", &room);
    tmux.expect("Beto", "Ana: Hola, ¿hay alguien? 👋", LONG);
    tmux.expect("Beto", "earlier messages above", LONG);
    tmux.expect("Ana", "→ Beto joined", LONG);
    tmux.keys("Beto", "¡Hola Ana!");
    tmux.expect("Ana", "Beto: ¡Hola Ana!", LONG);
    tmux.keys("Ana", "/who");
    tmux.expect("Ana", "online in #", LONG);
    assert!(
        tmux.screen("Ana").contains("Beto"),
        "{}",
        tmux.screen("Ana")
    );

    // The broker restarts: both say so, Ana's message typed meanwhile is sent once it is back.
    server.kill();
    tmux.expect("Ana", "reconnecting", LONG);
    tmux.keys("Ana", "escrito durante el corte");
    server.restart();
    tmux.expect(
        "Beto",
        "Ana: escrito durante el corte",
        Duration::from_secs(40),
    );
    tmux.keys("Beto", "recibido tras el corte");
    tmux.expect("Ana", "Beto: recibido tras el corte", LONG);

    // Beto is killed without a word: Ana sees him leave within seconds.
    let pid = tmux.pane_pid("Beto");
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    tmux.expect("Ana", "← Beto left", Duration::from_secs(12));
    let ana = tmux.screen("Ana");
    assert_eq!(
        ana.matches("Ana: escrito durante el corte").count(),
        1,
        "once:\n{ana}"
    );

    // Another room, then quit cleanly.
    tmux.keys("Ana", "/join otra-sala");
    tmux.expect("Ana", "#otra-sala", LONG);
    tmux.keys("Ana", "/quit");
}

/// Finding 11: log lines ("WARN lost the broker…") were written over the screen, where they
/// stayed after the reconnect and broke the input box. While the screen is up they go to the
/// log file (`$XDG_STATE_HOME/charla/chat.log`) instead.
#[test]
fn log_lines_stay_off_the_screen_through_a_broker_restart() {
    let Some(tmux) = Tmux::new() else { return };
    let mut server =
        RedisServer::start_charla(std::path::Path::new(env!("CARGO_BIN_EXE_charla")), &[]);
    let url = server.url();
    let room = unique_name("tui-log");
    let log = common::sandbox().join("state-Eva/charla/chat.log");

    tmux.chat_on_terminal(&url, "Eva", &room);
    tmux.expect("Eva", "you are Eva", LONG);
    tmux.keys("Eva", "antes del corte");
    tmux.expect("Eva", "Eva: antes del corte", LONG);

    // Nothing is typed meanwhile: typing redraws the input box, which hid what was written
    // over it.
    server.kill();
    tmux.expect("Eva", "reconnecting", LONG);
    server.restart();
    tmux.expect("Eva", "connected to", Duration::from_secs(40));

    let screen = tmux.screen("Eva");
    for line in screen.lines() {
        for log_text in ["WARN", "ERROR", " INFO", "DEBUG", "lost the broker:"] {
            assert!(
                !line.contains(log_text),
                "a log line on the screen ({log_text:?}):\n{screen}"
            );
        }
    }
    assert_input_box_intact(&screen, "Eva");
    // The engine did log its warning: into the file, without colour codes.
    charla_testkit::wait_until("the warning in the chat's log file", LONG, || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("lost the broker"))
    });
    let written = std::fs::read_to_string(&log).expect("log file");
    assert!(
        !written.contains('\x1b'),
        "no colour codes in a file:\n{written:?}"
    );
    tmux.keys("Eva", "antes de salir");
    tmux.expect("Eva", "Eva: antes de salir", LONG);
    tmux.keys("Eva", "/quit");
}

/// The input box (titled with the name) is whole: its three rows start and end with the box's
/// corner and side characters, in the same columns.
fn assert_input_box_intact(screen: &str, name: &str) {
    let lines: Vec<Vec<char>> = screen.lines().map(|l| l.chars().collect()).collect();
    let top = lines
        .iter()
        .position(|l| {
            l.starts_with(&['┌', ' ']) && l[2..].starts_with(&name.chars().collect::<Vec<_>>())
        })
        .unwrap_or_else(|| panic!("no input box titled {name}:\n{screen}"));
    let right = lines[top]
        .iter()
        .position(|&c| c == '┐')
        .unwrap_or_else(|| panic!("the input box has no top right corner:\n{screen}"));
    for (row, (left_c, fill, right_c)) in [('┌', None, '┐'), ('│', Some(()), '│'), ('└', None, '┘')]
        .into_iter()
        .enumerate()
    {
        let line = lines
            .get(top + row)
            .unwrap_or_else(|| panic!("the input box is cut off:\n{screen}"));
        assert!(
            line.first() == Some(&left_c) && line.get(right) == Some(&right_c),
            "row {row} of the input box is broken:\n{screen}"
        );
        if fill.is_none() {
            // The borders' rows hold only border characters (and the title).
            let inner: String = line[1..right].iter().collect();
            let border = inner.trim_start_matches(|c| c != '─');
            assert!(
                border.chars().all(|c| c == '─'),
                "row {row} of the input box is broken:\n{screen}"
            );
        }
    }
}

/// `/join` and `/name` without their argument say what is missing (it was "unknown command").
#[test]
fn join_and_name_without_an_argument_say_what_is_missing() {
    let Some(tmux) = Tmux::new() else { return };
    let server = RedisServer::start_charla(std::path::Path::new(env!("CARGO_BIN_EXE_charla")), &[]);
    let room = unique_name("tui-args");
    tmux.chat(&server.url(), "Luz", &room);
    tmux.expect("Luz", "you are Luz", LONG);
    tmux.keys("Luz", "/join");
    tmux.expect("Luz", "/join needs a room: /join ROOM", LONG);
    tmux.keys("Luz", "/name   ");
    tmux.expect("Luz", "/name needs a name: /name NAME", LONG);
    let screen = tmux.screen("Luz");
    assert!(!screen.contains("unknown command"), "{screen}");
    // /help names the file the log lines go to.
    tmux.keys("Luz", "/help");
    tmux.expect("Luz", "logged to", LONG);
    tmux.expect("Luz", "state-Luz/charla/chat.log", LONG);
    // Still in the same room, under the same name.
    assert!(
        screen.contains(&format!("#{room}")) && screen.contains("┌ Luz "),
        "{screen}"
    );
    tmux.keys("Luz", "/quit");
}

/// Once the screen is torn down stderr is the terminal's again (here the window's redirect): what
/// the chat says on leaving reaches it, while the warning logged during the chat went to the log
/// file only.
#[test]
fn stderr_is_back_once_the_screen_is_gone() {
    let Some(tmux) = Tmux::new() else { return };
    let mut server =
        RedisServer::start_charla(std::path::Path::new(env!("CARGO_BIN_EXE_charla")), &[]);
    let room = unique_name("tui-stderr");
    tmux.chat(&server.url(), "Teo", &room);
    tmux.expect("Teo", "you are Teo", LONG);
    server.kill();
    tmux.expect("Teo", "reconnecting", LONG);
    tmux.keys("Teo", "nunca enviado");
    tmux.keys("Teo", "/quit");
    let stderr = common::sandbox().join("chat-Teo.log");
    let log = common::sandbox().join("state-Teo/charla/chat.log");
    charla_testkit::wait_until("the unsent warning on stderr", LONG, || {
        std::fs::read_to_string(&stderr).is_ok_and(|s| s.contains("could not be sent"))
    });
    let stderr = std::fs::read_to_string(&stderr).expect("stderr");
    assert!(!stderr.contains("lost the broker"), "{stderr}");
    let log = std::fs::read_to_string(&log).expect("log file");
    assert!(log.contains("WARN lost the broker"), "{log}");
}

/// Issue 18, finding 9: a message whose name a web gateway proved (`--auth jwt`, so
/// `verificado`) is shown with a mark beside the name, and so is the name in the online panel;
/// an unproved one ("Eve", through a gateway without authentication) is not.
#[test]
fn a_name_proved_by_the_web_gateway_is_marked() {
    let Some(tmux) = Tmux::new() else { return };
    let server = RedisServer::start_charla(std::path::Path::new(env!("CARGO_BIN_EXE_charla")), &[]);
    let url = server.url();
    let room = unique_name("mark");
    let secret: &[u8] = b"the workshop's secret, long enough";
    let secret_file = common::sandbox().join(unique_name("jwt-secret"));
    std::fs::write(&secret_file, secret).expect("secret file");
    let proving = common::web::Gateway::start(
        &url,
        &[
            "--auth",
            "jwt",
            "--jwt-secret-file",
            &secret_file.to_string_lossy(),
        ],
    );
    let open = common::web::Gateway::start(&url, &[]);
    tmux.chat(&url, "Ana", &room);
    tmux.expect("Ana", "you are Ana", LONG);

    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": "Vic"}),
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("token");
    // Vic's page in the room: the online panel marks the name (before any message shows it).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let page = rt.block_on(async {
        let url = format!(
            "ws://127.0.0.1:{}/ws?room={room}&name=x&token={token}",
            proving.port
        );
        let mut page = common::web::Page::open(&url).await;
        page.until("online", LONG).await;
        page
    });
    tmux.expect("Ana", "Vic ✓", LONG);
    let body = serde_json::json!({"mensaje": "soy Vic de verdad"}).to_string();
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", proving.port)).expect("connect");
    use std::io::{Read, Write};
    write!(
        tcp,
        "POST /api/rooms/{room}/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("post");
    let mut answer = String::new();
    let _ = tcp.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let (code, answer) = open.post(&room, "Eve", "no estoy verificada");
    assert_eq!(code, 201, "{answer}");

    tmux.expect("Ana", "Vic ✓: soy Vic de verdad", LONG);
    tmux.expect("Ana", "Eve: no estoy verificada", LONG);
    drop(page);
    assert!(
        !tmux.screen("Ana").contains("Eve ✓"),
        "{}",
        tmux.screen("Ana")
    );
}

/// `charla chat --lang es`: the panels, the greeting, a join, /help and a command missing its
/// argument are Spanish, and none of the English ones shows (issue 18, finding 12).
#[test]
fn the_chat_speaks_spanish_with_lang_es() {
    let Some(tmux) = Tmux::new() else { return };
    let server = RedisServer::start_charla(std::path::Path::new(env!("CARGO_BIN_EXE_charla")), &[]);
    let room = unique_name("tui-es");
    let log = common::sandbox().join("chat-Sol.log");
    // The flag goes after the window's own arguments (clap takes it anywhere).
    tmux.chat_with(
        &server.url(),
        "Sol",
        &room,
        &format!("--lang es 2>>{}", log.display()),
    );
    tmux.expect("Sol", "eres Sol", LONG);
    tmux.expect("Sol", " salas ", LONG);
    tmux.expect("Sol", " en línea (1) ", LONG);
    tmux.chat(&server.url(), "Teo", &room);
    tmux.expect("Sol", "→ Teo entró", LONG);
    tmux.keys("Sol", "/sala");
    tmux.expect("Sol", "/sala necesita una sala", LONG);
    tmux.keys("Sol", "/ayuda");
    tmux.expect("Sol", "cambiar tu nombre", LONG);
    let screen = tmux.screen("Sol");
    for english in [
        " rooms ",
        " online ",
        "you are",
        "joined",
        "needs a",
        "change your name",
    ] {
        assert!(
            !screen.contains(english),
            "{english:?} on the Spanish screen:\n{screen}"
        );
    }
    tmux.keys("Sol", "/salir");
    tmux.keys("Teo", "/quit");
}
