//! Exercise 2 through the gateway (`charla web --uploads DIR`): a picture posted to the API
//! becomes a task that a real `charla work` takes, and the worker's notice is said in the
//! room with the thumbnail, which the gateway serves; an oversized upload, a path-traversal
//! file name and a file that is not a picture get clear errors and leave nothing behind.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use charla_testkit::{unique_name, RedisServer};
use common::web::{read_answer, Gateway, Page};
use common::*;

/// A 1×1 PNG.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\0\0\0\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\0\x05\0\x01\xff\x89\x99=\x1d\0\0\0\0IEND\xaeB`\x82";

/// `POST path` as multipart/form-data with `usuario` and `file` (named `file_name`): (status,
/// body). A server that answers before reading the whole body (a refusal) is fine.
fn upload(port: u16, path: &str, usuario: &str, file_name: &str, bytes: &[u8]) -> (u16, String) {
    let boundary = "charlaTestBoundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    write!(
        body,
        "--{boundary}\r\nContent-Disposition: form-data; name=\"usuario\"\r\n\r\n{usuario}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .expect("form");
    body.extend_from_slice(bytes);
    write!(body, "\r\n--{boundary}--\r\n").expect("form");
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let _ = tcp.write_all(head.as_bytes());
    let _ = tcp.write_all(&body); // refused early: the rest is not read, and that is fine
    let (code, _, body) = read_answer(tcp);
    (code, String::from_utf8_lossy(&body).into_owned())
}

fn worker(url: &str, room: &str, args: &[&str], script: &str) -> Child {
    charla(url)
        .args(["work", "--room", room, "--notify"])
        .args(args)
        .args(["--", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start charla work")
}

/// The next live message of `page` (skipping other frames).
async fn next_message(page: &mut Page) -> serde_json::Value {
    page.until("message", Duration::from_secs(30)).await["message"].clone()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_becomes_a_task_and_its_thumbnail_is_said_in_the_room() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let dir = sandbox().join(unique_name("uploads-"));
    let queue = unique_name("up-q-");
    let room = unique_name("up-room-");
    let gateway = Gateway::with_uploads(&server.url(), &dir, &queue, &[]);
    let mut w = worker(
        &server.url(),
        &queue,
        &[],
        r#"cp "$CHARLA_FILE" "${CHARLA_FILE%.*}.thumb.png""#,
    );
    let mut page = Page::open(&gateway.ws_url(&room, "Ana")).await;
    let hello = page.until("hello", Duration::from_secs(10)).await;
    assert!(
        hello["uploads"].as_u64().is_some(),
        "the page is told uploads are on: {hello}"
    );
    page.until("history", Duration::from_secs(20)).await;

    let port = gateway.port;
    let path = format!("/api/rooms/{room}/uploads");
    let (code, body) =
        tokio::task::spawn_blocking(move || upload(port, &path, "Ana", "gato.png", PNG))
            .await
            .expect("upload");
    assert_eq!(code, 201, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let stored = answer["file"].as_str().expect("stored name").to_owned();
    assert!(
        stored.ends_with(".png") && !stored.contains("gato"),
        "{stored}"
    );

    let said = next_message(&mut page).await;
    assert_eq!(said["mensaje"], "📎 gato.png");
    assert_eq!(said["file"], stored.as_str());
    assert_eq!(said["usuario"], "Ana");
    let done = next_message(&mut page).await;
    let thumb = done["file"].as_str().expect("the thumbnail").to_owned();
    assert!(
        done["mensaje"]
            .as_str()
            .unwrap_or("")
            .contains("thumbnail ready: gato.png"),
        "{done}"
    );
    assert_eq!(thumb, stored.replace(".png", ".thumb.png"));

    let (code, head, bytes) = get_raw(gateway.port, &format!("/uploads/{thumb}"));
    assert_eq!(code, 200);
    assert!(head.contains("content-type: image/png"), "{head}");
    assert!(head.contains("nosniff"), "{head}");
    assert_eq!(bytes, PNG);
    let _ = w.kill();
    let _ = w.wait();
}

/// `GET path`: (status, lower-cased head, body bytes).
fn get_raw(port: u16, path: &str) -> (u16, String, Vec<u8>) {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let (code, head, body) = read_answer(tcp);
    (code, head.to_lowercase(), body)
}

#[test]
fn bad_uploads_get_clear_errors_and_leave_nothing() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let dir = sandbox().join(unique_name("uploads-bad-"));
    let queue = unique_name("up-bad-q-");
    let gateway = Gateway::with_uploads(&server.url(), &dir, &queue, &[]);
    let path = "/api/rooms/fotos/uploads";
    // 50 MB: refused on its size, with the limit said; nothing kept.
    let big = vec![0xFFu8; 50 * 1024 * 1024];
    let (code, body) = upload(gateway.port, path, "Ana", "grande.jpg", &big);
    assert_eq!(code, 413, "{body}");
    assert!(body.contains("10485760"), "the limit is said: {body}");
    // Not a picture.
    let (code, body) = upload(gateway.port, path, "Ana", "x.png", b"#!/bin/sh\nrm -rf /\n");
    assert_eq!(code, 415, "{body}");
    assert!(body.contains("not a picture"), "{body}");
    assert!(
        files_in(&dir).is_empty(),
        "nothing kept: {:?}",
        files_in(&dir)
    );
    assert_eq!(redis_cli(server.port(), &["LLEN", &queue]).trim(), "0");
    // A name that climbs out of the directory is only ever shown.
    let (code, body) = upload(gateway.port, path, "Ana", "../../../tmp/evil.png", PNG);
    assert_eq!(code, 201, "{body}");
    let kept = files_in(&dir);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(
        !kept[0].contains("evil") && kept[0].ends_with(".png"),
        "{kept:?}"
    );
    let task = redis_cli(server.port(), &["LRANGE", &queue, "0", "-1"]);
    assert!(task.contains(r#""mensaje":"evil.png""#), "{task}");
    assert!(
        task.contains(&kept[0]),
        "the task names the kept file: {task}"
    );
    // Only the gateway's own names are served.
    for bad in [
        "/uploads/..%2F..%2Fetc%2Fpasswd",
        "/uploads/passwd",
        "/uploads/x.png",
    ] {
        assert_eq!(get_raw(gateway.port, bad).0, 404, "{bad}");
    }
    // A gateway without --uploads says so.
    let plain = Gateway::start(&server.url(), &[]);
    let (code, body) = upload(plain.port, path, "Ana", "a.png", PNG);
    assert_eq!(code, 404);
    assert!(body.contains("--uploads"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_thumbnail_is_said_with_the_workers_error() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let dir = sandbox().join(unique_name("uploads-fail-"));
    let queue = unique_name("up-fail-q-");
    let room = unique_name("up-fail-room-");
    let gateway = Gateway::with_uploads(&server.url(), &dir, &queue, &[]);
    let mut w = worker(
        &server.url(),
        &queue,
        &["--max-deliveries", "1"],
        "echo 'convert: improper image header' >&2; exit 1",
    );
    let mut page = Page::open(&gateway.ws_url(&room, "Ana")).await;
    page.until("history", Duration::from_secs(20)).await;
    let port = gateway.port;
    let path = format!("/api/rooms/{room}/uploads");
    let (code, body) =
        tokio::task::spawn_blocking(move || upload(port, &path, "Ana", "rota.png", PNG))
            .await
            .expect("upload");
    assert_eq!(code, 201, "{body}");
    next_message(&mut page).await; // 📎 rota.png
    let failed = next_message(&mut page).await;
    let text = failed["mensaje"].as_str().unwrap_or("");
    assert!(
        text.contains("rota.png")
            && text.contains("command-failed: exit 1")
            && text.contains("improper image header"),
        "{failed}"
    );
    let dead = run(
        charla(&server.url()).args(["dead", "--room", &queue, "--json"]),
        b"",
    );
    let dead = ok(&dead);
    assert!(dead.contains("improper image header"), "{dead}");
    let _ = w.kill();
    let _ = w.wait();
}

/// Clients that start uploads and never finish them hold at most `UPLOADS_AT_ONCE` bodies:
/// the next upload is told to come back (503, Retry-After), the gateway's memory stays near
/// that many times the upload limit, and once they are gone an upload goes through again.
#[test]
fn unfinished_uploads_are_bounded_and_do_not_lock_others_out() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let dir = sandbox().join(unique_name("uploads-slow-"));
    let queue = unique_name("up-slow-q-");
    let gateway = Gateway::with_uploads(&server.url(), &dir, &queue, &[]);
    let rss = || -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", gateway.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let before = rss();
    // Forty clients announce 10 MB and send 9.5 of them, then stall.
    let held: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut tcp = TcpStream::connect(("127.0.0.1", gateway.port)).expect("connect");
            let head = "POST /api/rooms/fotos/uploads HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                        Content-Type: multipart/form-data; boundary=x\r\n\
                        Content-Length: 10000000\r\n\r\n";
            let _ = tcp.write_all(head.as_bytes());
            let _ = tcp.write_all(&vec![b'a'; 9_500_000]);
            tcp
        })
        .collect();
    let grown_kib = rss().saturating_sub(before);
    eprintln!("40 stalled 10 MB uploads: gateway RSS +{grown_kib} KiB");
    // 8 bodies of at most 10 MiB + the form, with room for the allocator's slack.
    assert!(
        grown_kib < 8 * 11 * 1024 * 2,
        "memory bounded: +{grown_kib} KiB"
    );
    let (code, body) = upload(
        gateway.port,
        "/api/rooms/fotos/uploads",
        "Ana",
        "a.png",
        PNG,
    );
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("uploads are arriving already"), "{body}");
    drop(held);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (code, body) = upload(
            gateway.port,
            "/api/rooms/fotos/uploads",
            "Ana",
            "a.png",
            PNG,
        );
        if code == 201 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "uploads go through once the stalled ones are gone: {code} {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
