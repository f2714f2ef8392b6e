//! `charla serve` with a damaged append-only file: the start fails naming the file and the byte
//! offset, and `--aof-repair` cuts the damage, says what it cut, and serves what was before it.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{charla, redis_cli, run, signal, text, wait};

fn resp(args: &[&str]) -> Vec<u8> {
    let mut b = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        b.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    b
}

#[test]
fn a_damaged_file_stops_the_start_and_aof_repair_cuts_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let aof = dir.path().join("charla.aof");
    let mut data = resp(&["SET", "a", "1"]);
    let good = data.len();
    data.extend_from_slice(b"DEL a\r\n");
    data.extend_from_slice(&resp(&["SET", "b", "2"]));
    std::fs::write(&aof, &data).expect("write");
    let port = charla_testkit::free_port().to_string();
    let dir_s = dir.path().to_str().expect("utf-8 path");
    let serve = |extra: &[&str]| {
        let mut c = charla("redis://127.0.0.1:1");
        c.args(["serve", "--appendonly", "--dir", dir_s, "--port", &port]);
        c.args(extra);
        c
    };
    let out = run(&mut serve(&[]), b"");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(&aof.display().to_string()) && err.contains(&format!("at byte {good}")),
        "{err}"
    );
    assert!(err.contains("--aof-repair"), "{err}");
    assert_eq!(std::fs::read(&aof).expect("read"), data, "left as it was");

    let child = serve(&["--aof-repair"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let p: u16 = port.parse().expect("port");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", p)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the repaired server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(redis_cli(p, &["GET", "a"]).trim(), "1");
    assert_eq!(redis_cli(p, &["EXISTS", "b"]).trim(), "0");
    signal(&child, "TERM");
    let out = wait(child, Duration::from_secs(20));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "cut {} bytes (from byte {good} to {})",
            data.len() - good,
            data.len()
        )) && err.contains("DEL a"),
        "{err}"
    );
    assert_eq!(std::fs::metadata(&aof).expect("meta").len() as usize, good);
}
