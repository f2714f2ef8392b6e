//! A private PostgreSQL for tests that stop and start it (the machine's shared one on 5432 is
//! never stopped): `initdb` into a temporary directory, `pg_ctl` on a free port, trust auth on
//! loopback only, stopped with `-m immediate` (a crash, as far as clients can tell) and
//! started again on the same port and data. As root the server runs as the `postgres` user
//! (PostgreSQL refuses to run as root). Stopped on drop; its log printed when a test fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{free_port, service_missing};

pub struct PostgresServer {
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
    as_postgres: bool,
}

/// The directory holding `initdb` and `pg_ctl` (Debian keeps them out of PATH), newest
/// version first.
fn pg_bin() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("CHARLA_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
        .collect();
    found.sort();
    found.pop()
}

impl PostgresServer {
    /// Start one, or report that PostgreSQL's server binaries are missing (see
    /// [`service_missing`]) and return `None`.
    pub fn start() -> Option<PostgresServer> {
        let Some(bin) = pg_bin() else {
            service_missing("PostgreSQL's server binaries (apt-get install postgresql)");
            return None;
        };
        // Root cannot run PostgreSQL: then it runs as the postgres user.
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let dir = tempfile::Builder::new()
            .prefix("charla-pg-")
            .tempdir()
            .expect("temp dir");
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown the PostgreSQL test directory to postgres");
        }
        let server = PostgresServer {
            port: free_port(),
            dir,
            bin,
            as_postgres,
        };
        let data = server.data();
        server.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
        );
        server.start_again();
        Some(server)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// One of PostgreSQL's tools, as the user the server runs as.
    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self
            .command(tool)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("run {tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.log_path()).unwrap_or_default()
        );
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/DATABASE`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Stop at once, as a crash would (`pg_ctl stop -m immediate`).
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    /// Start (again) on the same port and data, and wait until it accepts connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.log_path().display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- PostgreSQL log (port {}) ----\n{}\n----",
                self.port,
                std::fs::read_to_string(self.log_path()).unwrap_or_default()
            );
        }
        let _ = self
            .command("pg_ctl")
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .output();
    }
}

/// A database of its own on the machine's shared PostgreSQL (127.0.0.1:5432, or
/// `CHARLA_TEST_PG` = host:port), random name, dropped on drop. The database itself is not
/// created here: charla creates it, which is part of what is tested.
pub struct ScratchDatabase {
    pub name: String,
    address: String,
}

impl ScratchDatabase {
    /// `None` (after [`service_missing`]) when nothing answers there.
    pub fn new() -> Option<ScratchDatabase> {
        let address = std::env::var("CHARLA_TEST_PG").unwrap_or_else(|_| "127.0.0.1:5432".into());
        if std::net::TcpStream::connect(&address).is_err() {
            service_missing(&format!("PostgreSQL on {address}"));
            return None;
        }
        Some(ScratchDatabase {
            name: crate::unique_name("charla_test_"),
            address,
        })
    }

    /// `postgres://postgres@ADDRESS/NAME`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@{}/{}", self.address, self.name)
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let (host, port) = self
            .address
            .rsplit_once(':')
            .unwrap_or((self.address.as_str(), "5432"));
        let _ = Command::new("psql")
            .args([
                "-h", host, "-p", port, "-U", "postgres", "-d", "postgres", "-q", "-c",
            ])
            .arg(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .output();
    }
}
