//! `charla dead` against a private redis-server: a listing that says why each message died,
//! counts by reason, a replay that needs a selection, puts a message back marked as replayed
//! and never twice, and a purge. The dead letters are made the way they are made in use: a
//! poison message a `charla listen` met, and a bare payload as an older charla stored it.

mod common;

use charla_testkit::{unique_name, RedisServer};
use common::*;

fn dead(server: &RedisServer, room: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = charla(&server.url());
    cmd.args(["dead", "--room", room]).args(args);
    run(&mut cmd, b"")
}

#[test]
fn dead_lists_counts_replays_and_purges() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let room = unique_name("dead-cli-");
    let dead_key = format!("charla:{{{room}}}:dead");
    // A poison message met by a listener: dead-lettered with the reason not-json.
    redis_cli(server.port(), &["LPUSH", &room, "this is { not json"]);
    ok(&run(
        charla(&server.url()).args(["send", "--room", &room, "--name", "a", "after"]),
        b"",
    ));
    ok(&run(
        charla(&server.url()).args(["listen", "--room", &room, "--count", "1"]),
        b"",
    ));
    // A bare payload, as charla stored dead letters before it kept reasons.
    let old = r#"{"usuario":"ana","mensaje":"foto rota","hora":"10:00:00","id":"01OLDMESSAGE0000000000000"}"#;
    redis_cli(server.port(), &["RPUSH", &dead_key, old]);

    let listing = ok(&dead(&server, &room, &[]));
    assert!(listing.contains("not-json"), "{listing}");
    assert!(
        listing.contains("01OLDMESSAGE0000000000000  unknown") && listing.contains("foto rota"),
        "id, reason and a preview: {listing}"
    );
    // A selection looks past the first dead letters (the not-json one comes first).
    let picked = ok(&dead(
        &server,
        &room,
        &["--limit", "1", "--reason", "unknown"],
    ));
    assert!(
        picked.contains("foto rota") && !picked.contains("not-json"),
        "{picked}"
    );
    let stats: serde_json::Value =
        serde_json::from_str(ok(&dead(&server, &room, &["--stats", "--json"])).trim())
            .expect("one JSON object");
    assert_eq!(stats["total"], 2);
    assert_eq!(stats["by_reason"]["not-json"], 1);
    assert_eq!(stats["by_reason"]["unknown"], 1);

    // An action without a selection is refused, and touches nothing.
    let refused = dead(&server, &room, &["--replay"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("--all"),
        "{}",
        text(&refused.stderr)
    );
    assert_eq!(redis_cli(server.port(), &["LLEN", &dead_key]).trim(), "2");

    let replayed = ok(&dead(&server, &room, &["--replay", "--reason", "unknown"]));
    assert!(replayed.contains("1 dead letter"), "{replayed}");
    let again = ok(&dead(&server, &room, &["--replay", "--reason", "unknown"]));
    assert!(
        again.contains("0 dead letters"),
        "a second replay moves nothing: {again}"
    );
    let back = redis_cli(server.port(), &["LRANGE", &room, "0", "-1"]);
    assert_eq!(back.lines().count(), 1, "once in the room: {back}");
    assert!(
        back.contains(r#""replays":1"#),
        "marked as replayed: {back}"
    );
    let heard = ok(&run(
        charla(&server.url()).args(["listen", "--room", &room, "--count", "1", "--json"]),
        b"",
    ));
    assert!(heard.contains("foto rota"), "{heard}");

    let purged = ok(&dead(&server, &room, &["--purge", "--all"]));
    assert!(purged.contains("1 dead letter"), "{purged}");
    let empty = dead(&server, &room, &[]);
    assert!(text(&empty.stderr).contains("has no dead letters"));
    assert_eq!(redis_cli(server.port(), &["EXISTS", &dead_key]).trim(), "0");
}

#[test]
fn a_bad_age_is_refused_in_the_users_language() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let out = run(
        charla(&server.url()).env("CHARLA_LANG", "es").args([
            "dead",
            "--room",
            "x",
            "--purge",
            "--older-than",
            "ayer",
        ]),
        b"",
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("se esperaba una edad"),
        "{}",
        text(&out.stderr)
    );
}

/// `charla dead --replay --all` SIGKILLed half way through 5 000 dead letters, then run
/// again: every message is back in the room exactly once (each dead letter moves in one
/// transaction: its message in, the entry out), on redis-server and on `charla serve`.
#[test]
fn a_replay_killed_half_way_loses_nothing_and_doubles_nothing() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let serve = RedisServer::start_charla(std::path::Path::new(env!("CARGO_BIN_EXE_charla")), &[]);
    for server in [&redis, &serve] {
        replay_killed_half_way(server);
    }
}

fn replay_killed_half_way(server: &RedisServer) {
    const N: usize = 5_000;
    let room = unique_name("dead-crash-");
    let dead_key = format!("charla:{{{room}}}:dead");
    for chunk in 0..N / 1000 {
        let mut args = vec!["RPUSH".to_owned(), dead_key.clone()];
        args.extend((0..1000).map(|i| {
            let n = chunk * 1000 + i;
            format!(r#"{{"usuario":"t","mensaje":"m {n}","id":"m{n:08}"}}"#)
        }));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        redis_cli(server.port(), &args);
    }
    let mut replay = charla(&server.url())
        .args(["dead", "--room", &room, "--replay", "--all"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start charla dead");
    let started = std::time::Instant::now();
    loop {
        let moved: usize = redis_cli(server.port(), &["LLEN", &room])
            .trim()
            .parse()
            .unwrap_or(0);
        if moved >= 100 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the replay did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    replay.kill().expect("SIGKILL");
    let _ = replay.wait();
    let len = |key: &str| -> usize {
        redis_cli(server.port(), &["LLEN", key])
            .trim()
            .parse()
            .unwrap_or(0)
    };
    let (back, still_dead) = (len(&room), len(&dead_key));
    eprintln!("FAULT dead replay killed: {back} replayed, {still_dead} still dead of {N}");
    assert!(
        back < N,
        "killed before the end (else the case shows nothing)"
    );
    assert_eq!(
        back + still_dead,
        N,
        "each message either back or still dead"
    );
    let again = ok(&run(
        charla(&server.url()).args(["dead", "--room", &room, "--replay", "--all"]),
        b"",
    ));
    assert!(
        again.contains(&format!("{still_dead} dead letters")),
        "{again}"
    );
    assert_eq!(len(&dead_key), 0);
    let all = redis_cli(server.port(), &["LRANGE", &room, "0", "-1"]);
    let ids: std::collections::HashSet<&str> = all
        .lines()
        .filter_map(|l| l.split(r#""id":""#).nth(1)?.split('"').next())
        .collect();
    assert_eq!(all.lines().count(), N, "exactly once each");
    assert_eq!(ids.len(), N, "every id once");
}
