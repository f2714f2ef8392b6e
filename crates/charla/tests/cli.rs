//! The built binary against a real redis-server: what a user types and sees.

mod common;

use std::process::Stdio;
use std::time::Duration;

use charla_testkit::{unique_name, RedisServer};
use common::*;

#[test]
fn check_reports_the_broker_and_fails_clearly_when_unreachable() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let out = run(charla(&server.url()).arg("check"), b"");
    let stdout = ok(&out);
    assert!(
        stdout.contains("redis 7") || stdout.contains("redis "),
        "{stdout}"
    );
    assert!(
        stdout.contains("queue, broadcast, stream, routing"),
        "{stdout}"
    );

    let json = run(charla(&server.url()).args(["check", "--json"]), b"");
    let v: serde_json::Value = serde_json::from_str(&ok(&json)).expect("json");
    assert_eq!(v["ok"], true);
    assert_eq!(v["product"], "redis");

    let port = charla_testkit::free_port();
    let out = run(
        charla(&format!("redis://127.0.0.1:{port}")).arg("check"),
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
    assert!(err.contains("cannot reach the broker"), "{err}");
}

/// The tests that need the workshop's default port 127.0.0.1:6380 take turns.
static DEFAULT_PORT: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn default_port_turn() -> std::sync::MutexGuard<'static, ()> {
    DEFAULT_PORT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn default_broker_hint_names_the_workshop_port() {
    // Nothing named a broker: the default is the workshop's 127.0.0.1:6380. The port is held
    // bound and not listening for the test, so a connection there is refused for sure and
    // nothing else can start listening on it meanwhile.
    let _turn = default_port_turn();
    let hold = tokio::net::TcpSocket::new_v4().expect("socket");
    if let Err(e) = hold.bind("127.0.0.1:6380".parse().expect("addr")) {
        charla_testkit::service_missing(&format!("a free 127.0.0.1:6380 ({e})"));
        return;
    }
    let out = run(
        charla("redis://unused")
            .env_remove("CHARLA_BROKER")
            .arg("check"),
        b"",
    );
    drop(hold);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("cannot reach the broker"), "{err}");
    assert!(err.contains("workshop port (6380)"), "{err}");
}

#[test]
fn wrong_password_and_bad_input_are_one_line_errors() {
    let Some(server) = RedisServer::start_with(&["--requirepass", "s3cret"]) else {
        return;
    };
    let port = server.port();
    let out = run(
        charla(&format!("redis://:wrong@127.0.0.1:{port}")).arg("check"),
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("refused authentication"), "{err}");
    assert!(!err.contains("wrong"), "the password is not echoed: {err}");

    let out = run(
        charla(&format!("redis://127.0.0.1:{port}")).arg("check"),
        b"",
    );
    assert_eq!(out.status.code(), Some(1), "no password given");
    assert!(text(&out.stderr).contains("refused authentication"));

    let ok_url = format!("redis://:s3cret@127.0.0.1:{port}");
    ok(&run(charla(&ok_url).arg("check"), b""));

    let out = run(charla("http://example.com").arg("check"), b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("unknown scheme"));

    let out = run(
        charla(&ok_url).args(["send", "--mode", "carrier-pigeon", "x"]),
        b"",
    );
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
    assert!(text(&out.stderr).contains("unknown mode"));

    let huge = format!("{}\n", "x".repeat(1024 * 1024 + 1));
    let out = run(
        charla(&ok_url).args(["send", "--name", "a"]),
        huge.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("over the limit"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn send_then_listen_json_carries_seed_and_charla_fields() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let room = unique_name("cli-");
    let out = run(
        charla(&server.url()).args(["send", "--room", &room, "--name", "Juan", "Hola", "María!"]),
        b"",
    );
    assert!(ok(&out).contains("📤 Sent: [Juan] Hola María!"));
    let out = run(
        charla(&server.url()).args(["listen", "--room", &room, "--json", "--count", "1"]),
        b"",
    );
    let lines = json_lines(&ok(&out));
    assert_eq!(lines.len(), 1);
    let m = &lines[0];
    assert_eq!(m["usuario"], "Juan");
    assert_eq!(m["mensaje"], "Hola María!");
    assert_eq!(m["room"], room.as_str());
    assert_eq!(m["hora"].as_str().map(str::len), Some(8));
    assert_eq!(m["id"].as_str().map(str::len), Some(26));
    assert_eq!(m["redelivered"], false);
    assert!(m["ts_us"].as_i64().unwrap_or(0) > 0);
}

/// `listen --since TIME` on a Redis stream, with and without a group: exactly what was stored
/// from that second on.
#[test]
fn listen_since_a_time_reads_a_redis_stream_from_then_on() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let room = unique_name("since-");
    let send = |lines: &[u8]| {
        ok(&run(
            charla(&server.url())
                .args(["send", "--mode", "stream", "--room", &room, "--name", "a"]),
            lines,
        ))
    };
    send(b"old 1\nold 2\n");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    let since = (now.as_secs() + 1).to_string();
    std::thread::sleep(std::time::Duration::from_millis(
        1000 - u64::from(now.subsec_millis()) + 50,
    ));
    send(b"new 1\nnew 2\n");
    for group in [None, Some("desde")] {
        let mut cmd = charla(&server.url());
        cmd.args([
            "listen", "--mode", "stream", "--room", &room, "--since", &since,
        ])
        .args(["--json", "--count", "2"]);
        if let Some(g) = group {
            cmd.args(["--group", g]);
        }
        let got: Vec<String> = json_lines(&ok(&run(&mut cmd, b"")))
            .iter()
            .map(|m| m["mensaje"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(got, ["new 1", "new 2"], "group {group:?}");
    }
    let bad = run(
        charla(&server.url()).args([
            "listen", "--mode", "stream", "--room", &room, "--since", "ayer",
        ]),
        b"",
    );
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("--since ayer"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn piped_lines_arrive_in_order_and_spanish_output_matches_the_seed() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let room = unique_name("pipe-");
    let input: String = (1..=2000).map(|i| format!("línea {i}\n")).collect();
    let out = run(
        charla(&server.url()).args(["send", "--room", &room, "--name", "bot", "--quiet"]),
        input.as_bytes(),
    );
    ok(&out);
    assert!(
        text(&out.stderr).contains("Messages sent: 2000"),
        "{}",
        text(&out.stderr)
    );
    let out = run(
        charla(&server.url())
            .env("LANG", "es_ES.UTF-8")
            .args(["listen", "--room", &room, "--count", "2000"]),
        b"",
    );
    let stdout = ok(&out);
    let received: Vec<&str> = stdout.lines().filter(|l| l.starts_with("📥")).collect();
    assert_eq!(received.len(), 2000);
    for (i, line) in received.iter().enumerate() {
        let expected = format!("📥 Recibido: [bot] línea {} (", i + 1);
        assert!(line.starts_with(&expected), "line {i}: {line}");
    }
    assert!(
        stdout.contains("👋 Saliendo... Mensajes recibidos: 2000"),
        "{stdout}"
    );
}

#[test]
fn interactive_send_behaves_like_emisor() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let room = unique_name("tty-");
    let out = run(
        charla(&server.url()).args(["--lang", "es", "send", "--interactive", "--room", &room]),
        "Juan\nHola María!\n\nsalir\nnot sent\n".as_bytes(),
    );
    let stdout = ok(&out);
    for expected in [
        "📤 EMISOR DE MENSAJES",
        "¿Cuál es tu nombre? ",
        "¡Hola Juan! Escribe mensajes (o 'salir' para terminar)",
        "📤 Enviado: [Juan] Hola María!",
        "👋 ¡Hasta luego!",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    assert!(!stdout.contains("not sent"));
    assert_eq!(redis_cli(server.port(), &["LLEN", &room]).trim(), "1");
}

#[test]
fn sigterm_prints_the_count_and_exits_zero() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let room = unique_name("term-");
    let mut listener = charla(&server.url())
        .args(["listen", "--room", &room])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn listen");
    for text in ["uno", "dos"] {
        ok(&run(
            charla(&server.url()).args(["send", "--room", &room, "--name", "a", text]),
            b"",
        ));
    }
    let stdout = Lines::of(&mut listener);
    let lines = stdout.until("📥 Received", 2, Duration::from_secs(20));
    assert!(
        lines[0].contains("uno") && lines[1].contains("dos"),
        "{lines:?}"
    );
    signal(&listener, "TERM");
    let out = wait(listener, Duration::from_secs(10));
    assert!(out.status.success(), "{:?}", out.status);
    let rest = stdout.rest();
    assert!(rest.contains("Messages received: 2"), "{rest}");
}

#[test]
fn poison_message_is_reported_dead_lettered_and_skipped() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let room = unique_name("poison-");
    redis_cli(server.port(), &["LPUSH", &room, "this is { not json"]);
    ok(&run(
        charla(&server.url()).args(["send", "--room", &room, "--name", "a", "after"]),
        b"",
    ));
    let out = run(
        charla(&server.url()).args(["listen", "--room", &room, "--count", "1"]),
        b"",
    );
    let stdout = ok(&out);
    assert!(stdout.contains("[a] after"), "{stdout}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("bad message") && stderr.contains(":dead"),
        "{stderr}"
    );
    let dead = redis_cli(
        server.port(),
        &["LRANGE", &format!("charla:{{{room}}}:dead"), "0", "-1"],
    );
    assert!(dead.contains("this is { not json"), "{dead}");
    assert_eq!(redis_cli(server.port(), &["LLEN", &room]).trim(), "0");
}

#[test]
fn killed_listener_loses_nothing() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let room = unique_name("kill-");
    let url = format!("{}?consumer_ttl_ms=1000", server.url());
    // Enough that the victim cannot take them all between its first line and the kill, even
    // when the machine is slow to deliver the signal (200 once were: the case proved nothing).
    let sent: Vec<String> = (1..=5000).map(|i| format!("m{i}")).collect();
    let input = sent.join("\n") + "\n";
    ok(&run(
        charla(&url).args(["send", "--room", &room, "--name", "a", "--quiet"]),
        input.as_bytes(),
    ));
    // A listener taking ten at a time is killed (SIGKILL: no chance to give anything back).
    let printed_path = sandbox().join(format!("{room}.out"));
    let mut victim = charla(&url)
        .args(["listen", "--room", &room, "--prefetch", "10", "--json"])
        .stdout(std::fs::File::create(&printed_path).expect("file"))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::fs::metadata(&printed_path)
        .map(|m| m.len())
        .unwrap_or(0)
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the victim printed nothing"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    signal(&victim, "KILL");
    let _ = victim.wait();
    let printed: Vec<String> = json_lines(&std::fs::read_to_string(&printed_path).expect("read"))
        .iter()
        .map(|m| m["mensaje"].as_str().unwrap_or_default().to_owned())
        .collect();
    // Whatever the victim did not ack is still on the broker: in the queue, or in its
    // processing list until its heartbeat expires.
    let lists = redis_cli(
        server.port(),
        &[
            "--scan",
            "--pattern",
            &format!("charla:{{{room}}}:processing:*"),
        ],
    );
    let mut left: usize = redis_cli(server.port(), &["LLEN", &room])
        .trim()
        .parse()
        .expect("LLEN");
    for list in lists.lines().filter(|l| !l.is_empty()) {
        left += redis_cli(server.port(), &["LLEN", list])
            .trim()
            .parse::<usize>()
            .expect("LLEN");
    }
    assert!(
        left > 0,
        "the victim was killed before it could take everything"
    );
    let out = run(
        charla(&url).args([
            "listen",
            "--room",
            &room,
            "--json",
            "--count",
            &left.to_string(),
        ]),
        b"",
    );
    let survivor: Vec<String> = json_lines(&ok(&out))
        .iter()
        .map(|m| m["mensaje"].as_str().unwrap_or_default().to_owned())
        .collect();
    let seen: std::collections::HashSet<&String> = printed.iter().chain(survivor.iter()).collect();
    for m in &sent {
        assert!(
            seen.contains(m),
            "{m} was lost (victim printed {}, survivor {})",
            printed.len(),
            survivor.len()
        );
    }
}

#[test]
fn bench_json_has_rate_and_percentiles() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    for mode in ["queue", "stream", "broadcast"] {
        let out = run(
            charla(&server.url()).args([
                "bench",
                "--mode",
                mode,
                "--messages",
                "3000",
                "--consumers",
                "2",
                "--json",
            ]),
            b"",
        );
        let v: serde_json::Value = serde_json::from_str(&ok(&out)).expect("json");
        let expected = if mode == "broadcast" { 6000 } else { 3000 };
        assert_eq!(v["received"], expected, "{mode}: {v}");
        assert!(v["msgs_per_sec"].as_f64().unwrap_or(0.0) > 0.0);
        assert!(v["latency_us"]["p50"].as_u64().unwrap_or(0) > 0);
        assert!(v["latency_us"]["p99"].as_u64() >= v["latency_us"]["p50"].as_u64());
    }
    // The bench cleans up after itself.
    assert_eq!(redis_cli(server.port(), &["DBSIZE"]).trim(), "0");
}

#[test]
fn config_file_sets_defaults_and_rejects_unknown_keys() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let good = dir.path().join("good.toml");
    let room = unique_name("cfg-");
    std::fs::write(
        &good,
        format!(
            "broker = \"{}\"\nname = \"Config\"\nroom = \"{room}\"\nlang = \"es\"\n",
            server.url()
        ),
    )
    .expect("write");
    let out = run(
        charla("redis://127.0.0.1:1")
            .env_remove("CHARLA_BROKER")
            .arg("--config")
            .arg(&good)
            .args(["send", "hola"]),
        b"",
    );
    assert!(ok(&out).contains("📤 Enviado: [Config] hola"));
    assert_eq!(redis_cli(server.port(), &["LLEN", &room]).trim(), "1");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "brokr = 'x'\n").expect("write");
    let out = run(
        charla(&server.url()).arg("--config").arg(&bad).arg("check"),
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("brokr"), "{}", text(&out.stderr));
}

#[test]
fn stream_mode_replays_and_groups_resume() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let room = unique_name("stream-");
    let input: String = (1..=5).map(|i| format!("s{i}\n")).collect();
    ok(&run(
        charla(&server.url()).args(["send", "--mode", "stream", "--room", &room, "--quiet"]),
        input.as_bytes(),
    ));
    let all = json_lines(&ok(&run(
        charla(&server.url()).args([
            "listen",
            "--mode",
            "stream",
            "--room",
            &room,
            "--from-beginning",
            "--json",
            "--count",
            "5",
        ]),
        b"",
    )));
    assert_eq!(all.len(), 5);
    let third = all[2]["offset"].as_str().expect("offset").to_owned();
    let after = json_lines(&ok(&run(
        charla(&server.url()).args([
            "listen", "--mode", "stream", "--room", &room, "--from", &third, "--json", "--count",
            "2",
        ]),
        b"",
    )));
    assert_eq!(after[0]["mensaje"], "s4");
    let group = |n: &str| {
        json_lines(&ok(&run(
            charla(&server.url()).args([
                "listen",
                "--mode",
                "stream",
                "--room",
                &room,
                "--group",
                "g",
                "--from-beginning",
                "--json",
                "--count",
                n,
            ]),
            b"",
        )))
    };
    let first = group("3");
    let rest = group("2");
    assert_eq!(first[0]["mensaje"], "s1");
    assert_eq!(rest[0]["mensaje"], "s4", "the group resumes where it acked");

    let out = run(
        charla(&server.url()).args(["listen", "--group", "g", "--count", "1"]),
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--mode stream only"));
}

#[test]
fn listener_and_sender_ride_out_a_broker_restart() {
    // Append-only with fsync always: what the broker acknowledged survives its crash.
    let Some(mut server) =
        RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"])
    else {
        return;
    };
    let room = unique_name("restart-");
    let url = format!("{}?consumer_ttl_ms=1000", server.url());
    let mut listener = charla(&url)
        .args(["listen", "--room", &room, "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn listen");
    let lines = Lines::of(&mut listener);
    // One long-lived sender fed line by line, like a user typing.
    let mut sender = charla(&url)
        .args(["send", "--room", &room, "--name", "a"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn send");
    let mut typing = sender.stdin.take().expect("stdin");
    let sender_err = Lines::of_stderr(&mut sender);
    use std::io::Write;
    writeln!(typing, "before").expect("type");
    lines.until("\"before\"", 1, Duration::from_secs(20));

    server.kill();
    // Typed while the broker is down: the sender retries with backoff until it is back.
    // Restart only once it has noticed, so the retry path is what is tested.
    writeln!(typing, "during").expect("type");
    sender_err.until("Lost the broker", 1, Duration::from_secs(20));
    server.restart();
    writeln!(typing, "after").expect("type");
    drop(typing);
    let out = wait(sender, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "send retried until the broker came back: {}",
        sender_err.rest()
    );
    lines.until("\"during\"", 1, Duration::from_secs(30));
    lines.until("\"after\"", 1, Duration::from_secs(30));
    signal(&listener, "TERM");
    let out = wait(listener, Duration::from_secs(10));
    assert!(out.status.success());
    assert!(
        text(&out.stderr).contains("Lost the broker"),
        "the reconnect is reported: {}",
        text(&out.stderr)
    );
}

#[test]
fn send_starts_the_embedded_broker_when_nothing_listens_on_the_default_port() {
    let _turn = default_port_turn();
    if std::net::TcpStream::connect(("127.0.0.1", 6380)).is_ok() {
        charla_testkit::service_missing("a free 127.0.0.1:6380 (something listens there)");
        return;
    }
    /// Stops the background broker however the test ends.
    struct Stop(Option<String>);
    impl Drop for Stop {
        fn drop(&mut self) {
            if let Some(pid) = &self.0 {
                let _ = std::process::Command::new("kill").arg(pid).status();
            }
        }
    }
    let default = |cmd: &mut std::process::Command| {
        cmd.env_remove("CHARLA_BROKER")
            .env_remove("CHARLA_NO_AUTOSTART");
    };
    let mut send = charla("unused");
    default(&mut send);
    let out = run(send.args(["send", "--name", "Juan", "Hola María!"]), b"");
    let err = text(&out.stderr);
    let pid = err
        .split("(pid ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .map(str::to_owned);
    let _stop = Stop(pid.clone());
    ok(&out);
    assert!(err.contains("started its embedded broker"), "{err}");
    assert!(pid.is_some(), "the note names the pid: {err}");
    let mut listen = charla("unused");
    default(&mut listen);
    let out = run(listen.args(["listen", "--count", "1"]), b"");
    assert!(ok(&out).contains("📥 Received: [Juan] Hola María!"));
    assert!(
        !text(&out.stderr).contains("started its embedded broker"),
        "the second command reuses it"
    );
}

/// A password nobody else uses, to search outputs for.
const SECRET: &str = "hunter2-Z9q";

#[test]
fn invalid_url_errors_and_check_json_never_show_the_password() {
    // Each is invalid in another way: a port out of range, a space, an unescaped '@' in the
    // password, and a URL that parses but names nothing that answers.
    let port = charla_testkit::free_port();
    let urls = [
        format!("redis://:{SECRET}@127.0.0.1:99999"),
        format!("redis://:{SECRET}@127.0.0.1 :{port}"),
        format!("redis://:p@{SECRET}@127.0.0.1:99999"),
        format!("redis://:{SECRET}@127.0.0.1:{port}"),
        format!("amqp://guest:{SECRET}@127.0.0.1:{port}/%2f"),
    ];
    for url in &urls {
        for args in [&["check"][..], &["check", "--json"], &["send", "x"]] {
            let out = run(charla(url).args(args), b"");
            assert!(!out.status.success(), "{url} {args:?}");
            let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
            assert!(
                !stdout.contains(SECRET) && !stderr.contains(SECRET),
                "{url} {args:?} printed the password:\n{stdout}\n{stderr}"
            );
            if args.contains(&"--json") {
                let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
                assert_eq!(v["ok"], false);
                assert!(
                    v["broker"].as_str().is_some_and(|b| b.contains("***")),
                    "{v}"
                );
            }
        }
    }
}

#[test]
fn password_from_env_or_file_works_end_to_end_and_stays_out_of_ps() {
    let dir = tempfile::tempdir().expect("dir");
    let pw_file = dir.path().join("pw");
    std::fs::write(&pw_file, format!("{SECRET}\n")).expect("write");
    let port = charla_testkit::free_port();
    let serve = charla("unused")
        .args(["serve", "--port", &port.to_string(), "--requirepass-file"])
        .arg(&pw_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let serve = KillOnDrop(serve);
    wait_for_port(port, Duration::from_secs(20));
    let ps = cmdline(serve.0.id());
    assert!(ps.contains("--requirepass-file"), "{ps}");
    assert!(!ps.contains(SECRET), "the password is visible in ps: {ps}");

    let url = format!("redis://127.0.0.1:{port}");
    let room = unique_name("pw-");
    // The server does check it: nothing, or a wrong one, is refused.
    let out = run(charla(&url).arg("check"), b"");
    assert!(
        text(&out.stderr).contains("refused authentication"),
        "{}",
        text(&out.stderr)
    );
    let out = run(
        charla(&url).env("CHARLA_PASSWORD", "wrong").arg("check"),
        b"",
    );
    assert!(!out.status.success());

    // From a file: send.
    let out = run(
        charla(&url).arg("--password-file").arg(&pw_file).args([
            "send",
            "--room",
            &room,
            "--name",
            "a",
            "por archivo",
        ]),
        b"",
    );
    ok(&out);
    // From the environment: a long-running listen, whose argv holds no password either.
    let mut listen = charla(&url)
        .env("CHARLA_PASSWORD", SECRET)
        .args(["listen", "--room", &room, "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn listen");
    let lines = Lines::of(&mut listen);
    let listen = KillOnDrop(listen);
    let got = lines.until("por archivo", 1, Duration::from_secs(20));
    assert_eq!(json_lines(&got[0])[0]["mensaje"], "por archivo");
    assert!(!cmdline(listen.0.id()).contains(SECRET));
    drop(listen);

    // check --json and bench never print it, though it is in the URL they use.
    let out = run(
        charla(&url)
            .env("CHARLA_PASSWORD", SECRET)
            .args(["check", "--json"]),
        b"",
    );
    let stdout = ok(&out);
    assert!(!stdout.contains(SECRET), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(v["ok"], true);
    assert_eq!(v["broker"], format!("redis://:***@127.0.0.1:{port}"));

    // A password in the URL and another apart is an error, not a silent choice.
    let out = run(
        charla(&format!("redis://:other@127.0.0.1:{port}"))
            .env("CHARLA_PASSWORD", SECRET)
            .arg("check"),
        b"",
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("give it once"));
}

#[test]
fn listen_shows_control_characters_escaped_and_json_stays_exact() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let room = unique_name("esc-");
    let nasty = "a\u{1b}]0;pwned\u{7}b\u{1b}[2J\rX\n📥 Received: [admin] fake\u{202e}z";
    for _ in 0..2 {
        ok(&run(
            charla(&server.url()).args([
                "send",
                "--room",
                &room,
                "--name",
                "e\u{1b}[31mvil",
                nasty,
            ]),
            b"",
        ));
    }
    let out = run(
        charla(&server.url()).args(["listen", "--room", &room, "--count", "1"]),
        b"",
    );
    let stdout = ok(&out);
    assert!(
        !stdout.contains(['\u{1b}', '\u{7}', '\r', '\u{202e}']),
        "raw control characters reached the terminal: {stdout:?}"
    );
    let received: Vec<&str> = stdout.lines().filter(|l| l.contains("Received")).collect();
    assert_eq!(
        received.len(),
        1,
        "a newline faked a second line: {stdout:?}"
    );
    assert!(
        received[0].starts_with(
            "📥 Received: [e\\x1b[31mvil] a\\x1b]0;pwned\\x07b\\x1b[2J\\rX\\n📥 Received: [admin] fake\\u{202e}z ("
        ),
        "{stdout:?}"
    );
    let out = run(
        charla(&server.url()).args(["listen", "--room", &room, "--json", "--count", "1"]),
        b"",
    );
    let m = &json_lines(&ok(&out))[0];
    assert_eq!(m["mensaje"], nasty, "JSON output is exact");
    assert_eq!(m["usuario"], "e\u{1b}[31mvil");
}

#[test]
fn flags_after_the_message_are_flags_and_double_dash_ends_them() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let room = unique_name("zz-");
    let out = run(
        charla(&server.url()).args(["send", "--name", "x", "hola", "--room", &room]),
        b"",
    );
    ok(&out);
    let stored = |room: &str| -> Vec<serde_json::Value> {
        redis_cli(server.port(), &["LRANGE", room, "0", "-1"])
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect()
    };
    let got = stored(&room);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["mensaje"], "hola");
    assert_eq!(got[0]["usuario"], "x");
    assert!(
        stored("chat_cola").is_empty(),
        "nothing in the default room"
    );

    let other = unique_name("dd-");
    ok(&run(
        charla(&server.url()).args(["send", "--room", &other, "--", "--room"]),
        b"",
    ));
    let got = stored(&other);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["mensaje"], "--room");
}

#[test]
fn an_oversized_piped_line_is_reported_and_skipped() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let room = unique_name("big-");
    // Line 2 is longer than any message may be (the reader drops it); line 4 fits as text but
    // not once encoded with its fields (the broker refuses it, and the batch it was in is
    // sent without it).
    let input = format!(
        "uno\n{}\ntres\n{}\r\ncinco\n",
        "x".repeat(1024 * 1024 + 1),
        "y".repeat(1024 * 1024 - 10)
    );
    let out = run(
        charla(&server.url()).args(["send", "--room", &room, "--name", "a", "--quiet"]),
        input.as_bytes(),
    );
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a skipped line fails the run: {stderr}"
    );
    for n in ["line 2", "line 4"] {
        assert!(
            stderr.contains(&format!("{n}: ")) && stderr.contains("over the limit"),
            "{n}: {stderr}"
        );
    }
    assert!(stderr.contains("Messages sent: 3"), "{stderr}");
    let out = run(
        charla(&server.url()).args(["listen", "--room", &room, "--json", "--count", "3"]),
        b"",
    );
    let texts: Vec<String> = json_lines(&ok(&out))
        .iter()
        .map(|m| m["mensaje"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(texts, ["uno", "tres", "cinco"]);
    assert_eq!(redis_cli(server.port(), &["LLEN", &room]).trim(), "0");
}
