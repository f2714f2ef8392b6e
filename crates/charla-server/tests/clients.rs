//! Real clients against the server: redis-cli, redis-py, and the workshop's own scripts
//! (compat/seed/{broker,emisor,receptor}.py) unchanged.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use charla_server::ServerConfig;
use common::TestServer;

fn have(cmd: &str, arg: &str) -> bool {
    Command::new(cmd)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn have_redis_py() -> bool {
    Command::new("python3")
        .args(["-c", "import redis"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

#[test]
fn redis_cli_works() {
    if !have("redis-cli", "--version") {
        charla_testkit::service_missing("redis-cli (apt-get install redis-tools)");
        return;
    }
    let s = TestServer::start(ServerConfig::default());
    let p = s.port;
    assert_eq!(cli(p, &["PING"]), "PONG");
    assert_eq!(cli(p, &["SET", "greeting", "hola mundo"]), "OK");
    assert_eq!(cli(p, &["GET", "greeting"]), "hola mundo");
    assert_eq!(cli(p, &["RPUSH", "l", "a", "b", "c"]), "3");
    assert_eq!(cli(p, &["LRANGE", "l", "0", "-1"]), "a\nb\nc");
    assert_eq!(
        cli(p, &["INCR", "greeting"]),
        "ERR value is not an integer or out of range"
    );
    assert!(cli(p, &["XADD", "s", "*", "f", "v"]).contains('-'));
    assert_eq!(cli(p, &["-3", "HSET", "h", "f", "v"]), "1");
    assert_eq!(cli(p, &["-3", "HGETALL", "h"]), "f v");
    assert!(cli(p, &["INFO", "server"]).contains("server_name:charla"));
    let keys = cli(p, &["--scan", "--pattern", "g*"]);
    assert_eq!(keys, "greeting");
    // Commands on stdin, as a script would pipe them.
    let mut child = Command::new("redis-cli")
        .args(["-p", &p.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"SET x 5\nINCRBY x 10\nDBSIZE\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "OK\n15\n5\n");
    // Mass insertion protocol (--pipe) sends raw RESP.
    let mut child = Command::new("redis-cli")
        .args(["-p", &p.to_string(), "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli");
    let mut data = Vec::new();
    for i in 0..1000 {
        data.extend_from_slice(
            format!("*3\r\n$3\r\nSET\r\n$6\r\nk{i:05}\r\n$1\r\nv\r\n").as_bytes(),
        );
    }
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&data)
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("errors: 0, replies: 1000"), "{text}");
}

const REDIS_PY: &str = r#"
import sys, threading, time, redis
port = int(sys.argv[1])
for proto in (2, 3):
    r = redis.Redis(port=port, decode_responses=True, protocol=proto)
    assert r.ping()
    r.flushdb()
    assert r.set("a", "1", px=10000)
    assert r.get("a") == "1"
    assert r.incr("a") == 2
    assert r.exists("a", "b", "a") == 2
    r.lpush("q", "x", "y")
    assert list(r.brpop("q", timeout=1)) == ["q", "x"]
    assert r.brpop("empty", timeout=0.1) is None
    r.hset("h", mapping={"f": "v", "g": "w"})
    assert r.hgetall("h") == {"f": "v", "g": "w"}
    p = r.pipeline(transaction=True)
    p.set("t", "1").incr("t").lrange("q", 0, -1)
    assert p.execute() == [True, 2, ["y"]]
    sid = r.xadd("s", {"f": "v"}, maxlen=100, approximate=True)
    r.xgroup_create("s", "g", id="0", mkstream=True)
    try:
        r.xgroup_create("s", "g", id="0", mkstream=True)
        raise SystemExit("BUSYGROUP expected")
    except redis.ResponseError as e:
        assert "BUSYGROUP" in str(e)
    got = r.xreadgroup("g", "c", {"s": ">"}, count=10)
    assert len(got) == 1
    assert r.xpending("s", "g")["pending"] == 1
    claimed = r.xautoclaim("s", "g", "c2", 0, "0-0")
    assert claimed[1][0][0] == sid, claimed
    assert r.xack("s", "g", sid) == 1
    info = r.info()
    assert info["redis_version"] == "7.2.0"
    assert info["server_name"] == "charla"
    # pub/sub
    ps = r.pubsub()
    ps.subscribe("news")
    ps.psubscribe("room.*")
    deadline = time.time() + 5
    while time.time() < deadline:
        m = ps.get_message(timeout=0.1)
        if m and m["type"] == "psubscribe":
            break
    assert r.publish("news", "hola") == 1
    assert r.publish("room.1", "x") == 1
    got = []
    deadline = time.time() + 5
    while len(got) < 2 and time.time() < deadline:
        m = ps.get_message(timeout=0.2)
        if m and m["type"] in ("message", "pmessage"):
            got.append((m["type"], m["channel"], m["data"]))
    assert ("message", "news", "hola") in got, got
    assert ("pmessage", "room.1", "x") in got, got
    ps.close()
    print("ok proto", proto)
"#;

#[test]
fn redis_py_works_in_resp2_and_resp3() {
    if !have_redis_py() {
        charla_testkit::service_missing("python3 with redis-py (pip install redis)");
        return;
    }
    let s = TestServer::start(ServerConfig::default());
    let out = Command::new("python3")
        .args(["-c", REDIS_PY, &s.port.to_string()])
        .output()
        .expect("python3");
    let so = String::from_utf8_lossy(&out.stdout);
    let se = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{so}\nstderr:\n{se}");
    assert!(
        so.contains("ok proto 2") && so.contains("ok proto 3"),
        "{so}"
    );
}

fn seed_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../compat/seed")
}

/// Run a seed script on `port`: unchanged when the port is its own 6380, otherwise by
/// importing `broker` and setting `broker.REDIS_PORT` first (the files are never edited).
fn seed_cmd(script: &str, port: u16) -> Command {
    let mut c = Command::new("python3");
    c.current_dir(seed_dir()).env("PYTHONUNBUFFERED", "1");
    // Ctrl+C must reach the script as KeyboardInterrupt, as in a terminal: a test run started
    // in the background (`cmd &`) inherits SIGINT ignored, and Python then keeps ignoring it.
    let interrupt = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)";
    if port == 6380 {
        c.args([
            "-c",
            &format!(
                "{interrupt}; import runpy; runpy.run_path('{script}.py', run_name='__main__')"
            ),
        ]);
    } else {
        c.args([
            "-c",
            &format!(
                "{interrupt}; import sys, broker; broker.REDIS_PORT = int(sys.argv[1]); import {script}; {script}.main()"
            ),
            &port.to_string(),
        ]);
    }
    c
}

#[test]
fn the_workshop_seed_scripts_chat_through_charla_serve() {
    if !have_redis_py() {
        charla_testkit::service_missing("python3 with redis-py (pip install redis)");
        return;
    }
    if !seed_dir().join("broker.py").exists() {
        panic!("compat/seed/broker.py is missing");
    }
    // The seed's own port when it is free, so the files run exactly as in the workshop.
    let s = start_on_port(6380).unwrap_or_else(|| TestServer::start(ServerConfig::default()));
    let port = s.port;

    // broker.py's own connection check.
    let out = if port == 6380 {
        seed_cmd("broker", port).output().expect("python3")
    } else {
        Command::new("python3")
            .current_dir(seed_dir())
            .args([
                "-c",
                "import sys, broker; broker.REDIS_PORT = int(sys.argv[1]); assert broker.conectar_broker()",
                &port.to_string(),
            ])
            .output()
            .expect("python3")
    };
    let so = String::from_utf8_lossy(&out.stdout);
    assert!(so.contains("✅ Conectado al broker Redis"), "{so}");

    let mut receptor = seed_cmd("receptor", port)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("receptor");
    let mut emisor = seed_cmd("emisor", port)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("emisor");
    emisor
        .stdin
        .take()
        .expect("stdin")
        .write_all("Juan\nHola María!\n¿Qué tal?\nsalir\n".as_bytes())
        .expect("write");
    let out = emisor.wait_with_output().expect("emisor");
    let so = String::from_utf8_lossy(&out.stdout);
    assert!(so.contains("✅ Conectado al broker Redis"), "{so}");
    assert!(so.contains("📤 Enviado: [Juan] Hola María!"), "{so}");

    let stdout = receptor.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut buf = Vec::new();
        while r.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
            let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
            buf.clear();
        }
    });
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && !seen.contains("¿Qué tal?") {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push_str(&l);
        }
    }
    // Ctrl+C, as the workshop participant would.
    let _ = Command::new("kill")
        .args(["-INT", &receptor.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push_str(&l);
        }
        if seen.contains("Mensajes recibidos") {
            break;
        }
    }
    let _ = receptor.kill();
    let _ = receptor.wait();
    assert!(seen.contains("📥 Recibido: [Juan] Hola María!"), "{seen}");
    assert!(seen.contains("📥 Recibido: [Juan] ¿Qué tal?"), "{seen}");
    assert!(seen.contains("Mensajes recibidos: 2"), "{seen}");
}

fn start_on_port(port: u16) -> Option<TestServer> {
    // TestServer binds port 0; for 6380 bind it here and hand it over.
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let l = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => l,
                Err(_) => {
                    let _ = tx.send(false);
                    return;
                }
            };
            let _ = tx.send(true);
            let _ = charla_server::serve(l, ServerConfig::default(), async {
                let _ = stop_rx.await;
            })
            .await;
        });
    });
    if rx.recv_timeout(Duration::from_secs(10)).ok()? {
        Some(TestServer::adopt(port, stop_tx, thread))
    } else {
        None
    }
}
