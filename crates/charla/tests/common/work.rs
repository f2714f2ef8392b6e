//! What the `charla work` tests share: a hard time limit per case, a worker process, tasks
//! queued with `charla send`, and the file a command appends each task's id to.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use charla_testkit::unique_name;

use super::{charla, ok, run, sandbox, signal, wait};

/// The longest any case may take before it fails by name.
pub const CASE_LIMIT: Duration = Duration::from_secs(120);

/// Runs `body` on a thread and fails with `name` if it takes longer than [`CASE_LIMIT`].
pub fn within(name: &str, body: impl FnOnce() + Send + 'static) {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        body();
        let _ = tx.send(());
    });
    match rx.recv_timeout(CASE_LIMIT) {
        Ok(()) => handle.join().expect("case thread"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the case ended without reporting"),
        },
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{name}: did not finish within {CASE_LIMIT:?}")
        }
    }
}

/// A fresh directory for a case's files.
pub fn case_dir(name: &str) -> PathBuf {
    let dir = sandbox().join(unique_name(name));
    std::fs::create_dir_all(&dir).expect("case dir");
    dir
}

/// Queue `n` tasks in `room` (one message per stdin line).
pub fn send_tasks(url: &str, room: &str, n: usize) {
    let lines: String = (0..n).map(|i| format!("task {i}\n")).collect();
    ok(&run(
        charla(url).args(["send", "--room", room, "--name", "t", "--quiet"]),
        lines.as_bytes(),
    ));
}

/// A `charla work` on `room` with `args` before `--` and `command` after it.
pub fn worker(url: &str, room: &str, args: &[&str], command: &[&str]) -> Child {
    charla(url)
        .args(["work", "--room", room])
        .args(args)
        .arg("--")
        .args(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start charla work")
}

/// The lines of a file (none when it does not exist yet).
pub fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `sh -c SCRIPT` with `$FILE` meaning `file`.
pub fn append_id_script(file: &Path) -> String {
    format!("echo \"$CHARLA_ID\" >> '{}'", file.display())
}

/// SIGTERM, then the worker's exit within 30 s: its output.
pub fn stop(child: Child) -> std::process::Output {
    signal(&child, "TERM");
    wait(child, Duration::from_secs(30))
}

/// Wait until `count` of the lines of `path` reaches `n` (`what` names what is counted when
/// it does not in time).
pub fn wait_counted(
    path: &Path,
    n: usize,
    limit: Duration,
    what: &str,
    count: impl Fn(&[String]) -> usize,
) -> Vec<String> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let lines = lines_of(path);
        let counted = count(&lines);
        if counted >= n {
            return lines;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} has {counted} of {n} {what}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait until `path` has at least `n` lines.
pub fn wait_lines(path: &Path, n: usize, limit: Duration) -> Vec<String> {
    wait_counted(path, n, limit, "lines", <[String]>::len)
}

/// Wait until `path` has at least `n` distinct lines.
pub fn wait_unique_lines(path: &Path, n: usize, limit: Duration) -> Vec<String> {
    wait_counted(path, n, limit, "distinct lines", |lines| {
        lines.iter().collect::<std::collections::HashSet<_>>().len()
    })
}

/// Pids of `sleep` processes whose command line contains `marker` (the worker's own argv
/// holds the script, so only `sleep`s count).
pub fn processes_with(marker: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|raw| {
                    let line = String::from_utf8_lossy(&raw).replace('\0', " ");
                    line.starts_with("sleep ") && line.contains(marker)
                })
                .unwrap_or(false)
        })
        .collect()
}
