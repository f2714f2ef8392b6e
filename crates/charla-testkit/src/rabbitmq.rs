//! RabbitMQ for tests: where it is (`CHARLA_TEST_AMQP`, default the local guest account) and
//! whether it answers. charla's tests use an already running RabbitMQ (`.ci/run` installs and
//! starts one); they do not start their own.

/// The local RabbitMQ with its default account and vhost `/`.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// `CHARLA_TEST_AMQP`, or [`DEFAULT_AMQP_URL`].
pub fn amqp_url() -> String {
    std::env::var("CHARLA_TEST_AMQP").unwrap_or_else(|_| DEFAULT_AMQP_URL.to_owned())
}

/// `host:port` of an amqp:// URL (5672 when the URL has no port).
fn address(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if hostport
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        hostport.to_owned()
    } else {
        format!("{hostport}:5672")
    }
}

/// True when something accepts connections at [`amqp_url`]'s address; otherwise reports the
/// missing service through [`crate::service_missing`] (a panic under `CI=true`, a skip
/// elsewhere) and returns false.
pub async fn rabbitmq_available() -> bool {
    let address = address(&amqp_url());
    let ok = matches!(
        tokio::time::timeout(
            std::time::Duration::from_secs(2),
            tokio::net::TcpStream::connect(&address)
        )
        .await,
        Ok(Ok(_))
    );
    if !ok {
        crate::service_missing(&format!("RabbitMQ on {address}"));
    }
    ok
}

/// Held by a test while it uses RabbitMQ ([`shared_use`]) or restarts it ([`exclusive_use`]),
/// across test processes (test runners such as nextest run test binaries in parallel): a
/// restart never happens under another test's feet. Released on drop.
pub struct RabbitMqLock {
    _file: Option<std::fs::File>,
}

fn lock_file() -> Option<std::fs::File> {
    let path = std::env::temp_dir().join("charla-rabbitmq-tests.lock");
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .ok()
}

/// Waits until no test is restarting RabbitMQ, and keeps it so while held.
pub fn shared_use() -> RabbitMqLock {
    let file = lock_file().filter(|f| f.lock_shared().is_ok());
    RabbitMqLock { _file: file }
}

/// Waits until no other test uses RabbitMQ, and keeps it so while held (for tests that stop
/// and start it).
pub fn exclusive_use() -> RabbitMqLock {
    let file = lock_file().filter(|f| f.lock().is_ok());
    RabbitMqLock { _file: file }
}

/// Run `rabbitmqctl` with `args` (on the local node), its output in the error when it fails.
pub fn rabbitmqctl(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("rabbitmqctl")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run rabbitmqctl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "rabbitmqctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// True when [`amqp_url`] points at this machine, where `rabbitmqctl` can restart it.
pub fn is_local() -> bool {
    let address = address(&amqp_url());
    let host = address
        .rsplit_once(':')
        .map_or(address.as_str(), |(h, _)| h);
    matches!(host, "127.0.0.1" | "localhost" | "::1" | "[::1]")
}

/// Stop the local RabbitMQ application and start it again (`stop_app`, a pause, `start_app`,
/// `await_startup`). Hold [`exclusive_use`] while calling it. The application is started
/// again even when stopping failed half-way.
pub fn restart_local(down_for: std::time::Duration) -> Result<(), String> {
    let stopped = rabbitmqctl(&["stop_app"]);
    std::thread::sleep(down_for);
    let started = rabbitmqctl(&["start_app"]);
    let _ = rabbitmqctl(&["await_startup"]);
    stopped.and(started)
}

#[cfg(test)]
mod tests {
    #[test]
    fn address_of_amqp_urls() {
        assert_eq!(super::address(super::DEFAULT_AMQP_URL), "127.0.0.1:5672");
        assert_eq!(super::address("amqp://h"), "h:5672");
        assert_eq!(super::address("amqp://u:p@h:1234/v?x=1"), "h:1234");
    }
}
