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

    /// A window running `charla chat` as `name` in `room`.
    fn chat(&self, broker: &str, name: &str, room: &str) {
        let sandbox = common::sandbox();
        let command = format!(
            "exec env -u CHARLA_NAME HOME={home} XDG_CONFIG_HOME={home} LANG=C.UTF-8 TERM=xterm-256color \
             CHARLA_NO_AUTOSTART=1 {bin} chat --broker {broker} --name {name} --room {room} \
             2>>{home}/chat-{name}.log",
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
                let log =
                    std::fs::read_to_string(common::sandbox().join(format!("chat-{name}.log")))
                        .unwrap_or_default();
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
