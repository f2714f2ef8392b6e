//! The workshop's own Python scripts (compat/seed/, unchanged) and redis-py against charla,
//! both directions, on a real redis-server.
//!
//! The seed hard-codes port 6380; each test imports `broker` and sets `broker.REDIS_PORT`
//! to its own server's port before calling the seed's functions, which read it at call time.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use charla_testkit::{service_missing, unique_name, RedisServer};
use common::*;

fn seed_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../compat/seed")
}

/// python3 with the `redis` package (the seed's only dependency), or None after reporting.
fn python() -> Option<Command> {
    let ok = Command::new("python3")
        .args(["-c", "import redis"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        service_missing("python3 with the redis package (pip install redis)");
        return None;
    }
    let mut cmd = Command::new("python3");
    cmd.current_dir(seed_dir())
        .env("PYTHONIOENCODING", "utf-8")
        .arg("-u");
    Some(cmd)
}

/// Python code that runs a seed module's `main()` against `port`.
fn seed_main(port: u16, module: &str) -> String {
    // Ctrl+C must reach the script as KeyboardInterrupt, as in a terminal: a test run started
    // in the background (`cmd &`) inherits SIGINT ignored, and Python then keeps ignoring it.
    format!(
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); \
         import broker; broker.REDIS_PORT = {port}; import {module}; {module}.main()"
    )
}

#[test]
fn the_seed_files_are_the_workshops_own() {
    // compat/seed/ must stay verbatim copies of the handout's code blocks. The handout is
    // vendored beside them (compat/seed/handout.txt), so this always checks something; when
    // the user's original is beside the checkout too, the vendored copy must equal it.
    let vendored = seed_dir().join("handout.txt");
    let doc = std::fs::read_to_string(&vendored).expect("compat/seed/handout.txt");
    let original = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/seeds/000_0c984b9d365925ca.txt");
    if let Ok(original) = std::fs::read_to_string(&original) {
        assert_eq!(
            doc, original,
            "compat/seed/handout.txt differs from the user's handout"
        );
    }
    for file in ["broker.py", "emisor.py", "receptor.py"] {
        let ours = std::fs::read_to_string(seed_dir().join(file)).expect("seed file");
        assert!(
            ours.trim().lines().count() > 10,
            "{file} is too short to be the seed's"
        );
        assert!(doc.contains(ours.trim()), "{file} differs from the handout");
    }
}

#[test]
fn seed_emisor_to_charla_listen() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let Some(mut py) = python() else { return };
    let out = run(
        py.args(["-c", &seed_main(server.port(), "emisor")]),
        "Ana\nHola desde Python ñ 👋\nsalir\n".as_bytes(),
    );
    assert!(ok(&out).contains("📤 Enviado: [Ana] Hola desde Python ñ 👋"));
    // Defaults: the seed's list `chat_cola`.
    let out = run(
        charla(&server.url()).args(["listen", "--json", "--count", "1"]),
        b"",
    );
    let m = &json_lines(&ok(&out))[0];
    assert_eq!(m["usuario"], "Ana");
    assert_eq!(m["mensaje"], "Hola desde Python ñ 👋");
    assert_eq!(m["room"], "chat_cola");
    assert_eq!(m["hora"].as_str().map(str::len), Some(8));
    assert_eq!(
        m["id"].as_str().map(str::len),
        Some(26),
        "charla assigns an id to seed messages"
    );
    assert_eq!(
        redis_cli(server.port(), &["LLEN", "chat_cola"]).trim(),
        "0",
        "acked and gone"
    );
}

#[test]
fn charla_send_to_seed_receptor() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let Some(mut py) = python() else { return };
    let mut receptor = py
        .args(["-c", &seed_main(server.port(), "receptor")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("receptor.py");
    let lines = Lines::of(&mut receptor);
    lines.until("Escuchando", 1, Duration::from_secs(20));
    ok(&run(
        charla(&server.url()).args(["send", "--name", "Juan", "Hola María!"]),
        b"",
    ));
    ok(&run(
        charla(&server.url()).args(["send", "--name", "María"]),
        "¡Hola Juan! ¿Funciona?\n".as_bytes(),
    ));
    let got = lines.until("📥 Recibido", 2, Duration::from_secs(20));
    assert!(
        got[0].contains("📥 Recibido: [Juan] Hola María! ("),
        "{got:?}"
    );
    assert!(
        got[1].contains("📥 Recibido: [María] ¡Hola Juan! ¿Funciona? ("),
        "{got:?}"
    );
    signal(&receptor, "INT");
    let _ = wait(receptor, Duration::from_secs(10));
    assert!(lines.rest().contains("Mensajes recibidos: 2"));
}

#[test]
fn seed_pair_and_charla_share_one_queue() {
    // Mixed producers into the seed's list; the seed's own recibir_mensaje reads them all,
    // in order, and charla's Spanish listener prints exactly the seed's line format.
    let Some(server) = RedisServer::start() else {
        return;
    };
    let Some(mut py) = python() else { return };
    ok(&run(
        charla(&server.url()).args(["send", "--name", "Juan", "uno"]),
        b"",
    ));
    ok(&run(py.args(["-c", &format!(
        "import broker; broker.REDIS_PORT = {}; c = broker.conectar_broker(); broker.enviar_mensaje(c, 'María', 'dos')",
        server.port()
    )]), b""));
    let out = run(
        charla(&server.url())
            .env("LANG", "es_ES.UTF-8")
            .args(["listen", "--count", "2"]),
        b"",
    );
    let stdout = ok(&out);
    let received: Vec<&str> = stdout.lines().filter(|l| l.starts_with("📥")).collect();
    assert_eq!(received.len(), 2, "{stdout}");
    assert!(received[0].starts_with("📥 Recibido: [Juan] uno ("));
    assert!(received[1].starts_with("📥 Recibido: [María] dos ("));
}

#[test]
fn redis_py_reads_charla_streams_and_channels() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let Some(mut py) = python() else { return };
    let room = unique_name("py-");
    ok(&run(
        charla(&server.url()).args([
            "send",
            "--mode",
            "stream",
            "--room",
            &room,
            "--name",
            "Zoë",
            "hola stream",
        ]),
        b"",
    ));
    let script = format!(
        "import json, redis\n\
         r = redis.Redis(port={port}, decode_responses=True)\n\
         entries = r.xrange('{room}')\n\
         m = json.loads(entries[0][1]['payload'])\n\
         print(m['usuario'], m['mensaje'], m['room'])\n",
        port = server.port()
    );
    let out = run(py.args(["-c", &script]), b"");
    assert_eq!(ok(&out).trim(), format!("Zoë hola stream {room}"));
}

#[test]
fn redis_cli_sees_charla_messages_under_the_room_name() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    ok(&run(
        charla(&server.url()).args(["send", "--name", "cli", "visible"]),
        b"",
    ));
    let raw = redis_cli(server.port(), &["LRANGE", "chat_cola", "0", "-1"]);
    let v: serde_json::Value =
        serde_json::from_str(raw.trim()).expect("a JSON message in chat_cola");
    assert_eq!(v["usuario"], "cli");
    assert_eq!(v["mensaje"], "visible");
}
