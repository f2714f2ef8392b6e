//! The web page in a real browser: Debian's headless Chromium driven by playwright-core
//! (compat/web/e2e.mjs), two pages on two gateways sharing one `charla serve` and one
//! PostgreSQL archive (the page's search box).

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use charla_testkit::{service_missing, unique_name, RedisServer, ScratchDatabase};
use common::web::Gateway;

fn web_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../compat/web")
}

/// Debian's Chromium, when it and node with compat/web's playwright-core are here; otherwise
/// the missing service is reported (a failure under CI=true).
fn browser() -> Option<String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let has_node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_node
        || !PathBuf::from(&chromium).exists()
        || !web_dir().join("node_modules/playwright-core").is_dir()
    {
        service_missing(
            "node, Debian's chromium and compat/web's playwright-core (apt-get install chromium; cd compat/web && npm ci)",
        );
        return None;
    }
    Some(chromium)
}

#[test]
fn two_pages_on_two_gateways_and_no_script_injection() {
    let Some(chromium) = browser() else {
        return;
    };
    let server = RedisServer::start_charla(std::path::Path::new(env!("CARGO_BIN_EXE_charla")), &[]);
    // With the PostgreSQL archive, so the page's search box is tested too.
    let Some(db) = ScratchDatabase::new() else {
        return;
    };
    let url = db.url();
    let a = Gateway::start(&server.url(), &["--archive", &url]);
    let b = Gateway::start(&server.url(), &["--archive", &url]);
    let room = unique_name("browser");
    // CHARLA_SCREENSHOT=path keeps a picture of the page (the README's comes from here).
    let shot = std::env::var("CHARLA_SCREENSHOT").unwrap_or_default();
    let mut cmd = Command::new("node");
    cmd.current_dir(web_dir())
        .arg("e2e.mjs")
        .arg(format!("http://127.0.0.1:{}", a.port))
        .arg(format!("http://127.0.0.1:{}", b.port))
        .arg(&room)
        .env("CHROMIUM", &chromium)
        .env("ARCHIVE", "1");
    if !shot.is_empty() {
        cmd.arg(&shot);
    }
    let out = common::run(&mut cmd, b"");
    let stdout = common::text(&out.stdout);
    let stderr = common::text(&out.stderr);
    assert!(
        out.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("OK:"), "{stdout}\n{stderr}");
}

/// The page on a 360 px phone and a 1280 px desktop, in Spanish and English by the browser's
/// Accept-Language (compat/web/screens.mjs): no text of the other language, nothing wider
/// than the screen, the message field and Send visible, the side panel behind its button, the
/// language switch remembered, a refused name said with its reason, "older messages" only
/// when there is something older. Screenshots in target/page-screens/ (issue 18, finding 12).
#[test]
fn the_page_speaks_the_browsers_language_on_a_phone_and_a_desktop() {
    let Some(chromium) = browser() else {
        return;
    };
    let server = RedisServer::start_charla(std::path::Path::new(env!("CARGO_BIN_EXE_charla")), &[]);
    // Two messages shown on joining, of three: the page has one older to offer.
    let gateway = Gateway::start(&server.url(), &["--history", "2"]);
    let room = unique_name("screens");
    for (name, text) in [
        ("Beto", "hola a todos"),
        ("Eva", "hola, ¿qué tal?"),
        ("Beto", "bien"),
    ] {
        let (status, body) = gateway.post(&room, name, text);
        assert!((200..300).contains(&status), "{status} {body}");
    }
    let out_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/page-screens");
    std::fs::create_dir_all(&out_dir).expect("target/page-screens");
    let mut cmd = Command::new("node");
    cmd.current_dir(web_dir())
        .arg("screens.mjs")
        .arg(format!("http://127.0.0.1:{}", gateway.port))
        .arg(&room)
        .arg(&out_dir)
        .env("CHROMIUM", &chromium);
    let out = common::run(&mut cmd, b"");
    let stdout = common::text(&out.stdout);
    let stderr = common::text(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("OK"),
        "the page test failed:\n{stdout}\n{stderr}\n{}",
        gateway.log_text()
    );
}

/// Exercise 2 in the browser (compat/web/upload.mjs): a picture chosen with the page's 📎
/// button, three `charla work` replicas running ImageMagick's `convert -thumbnail 200x200`,
/// and the thumbnail shown to the uploader with "miniatura lista". CHARLA_UPLOAD_SCREENSHOT
/// keeps a picture of the page (the README's).
#[test]
fn an_upload_in_the_browser_comes_back_as_a_thumbnail() {
    let Some(chromium) = browser() else {
        return;
    };
    let has_convert = Command::new("convert")
        .arg("-version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_convert {
        service_missing("ImageMagick's convert (apt-get install imagemagick)");
        return;
    }
    let server = RedisServer::start_charla(std::path::Path::new(env!("CARGO_BIN_EXE_charla")), &[]);
    let dir = common::sandbox().join(unique_name("subidas-"));
    let queue = unique_name("fotos-");
    // What the gateway says in rooms is in its language: the workshop's.
    let gateway = Gateway::with_uploads(&server.url(), &dir, &queue, &["--lang", "es"]);
    let thumbnail = r#"convert "$CHARLA_FILE" -thumbnail 200x200 "${CHARLA_FILE%.*}.thumb.png""#;
    let mut workers: Vec<std::process::Child> = (0..3)
        .map(|_| {
            common::charla(&server.url())
                .args(["work", "--room", &queue, "--concurrency", "2", "--notify"])
                .args(["--", "sh", "-c", thumbnail])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start charla work")
        })
        .collect();
    // The gateway and its broker are this test's own: plain names read well in the picture.
    let folder = common::sandbox().join(unique_name("fotos-"));
    std::fs::create_dir_all(&folder).expect("a folder for the picture");
    let picture = folder.join("gato.png");
    let made = Command::new("convert")
        .args(["-size", "640x480", "gradient:skyblue-navy"])
        .arg(&picture)
        .status()
        .expect("convert");
    assert!(made.success(), "a picture to upload");
    let shot = std::env::var("CHARLA_UPLOAD_SCREENSHOT").unwrap_or_default();
    let mut cmd = Command::new("node");
    cmd.current_dir(web_dir())
        .arg("upload.mjs")
        .arg(format!("http://127.0.0.1:{}", gateway.port))
        .arg("fotos")
        .arg(&picture)
        .env("CHROMIUM", &chromium);
    if !shot.is_empty() {
        cmd.arg(&shot);
    }
    let out = common::run(&mut cmd, b"");
    for w in workers.iter_mut() {
        let _ = w.kill();
        let _ = w.wait();
    }
    let stdout = common::text(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("OK:"),
        "the upload test failed:\n{stdout}\n{}\n{}",
        common::text(&out.stderr),
        gateway.log_text()
    );
}
