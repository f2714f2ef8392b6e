//! A stand-alone `charla serve` for tests and benchmarks that want a separate process (kill -9
//! under load, memory and CPU read from /proc, redis-benchmark). A binary of this crate rather
//! than an example so the crate's integration tests can run it (`CARGO_BIN_EXE_charla-serve`
//! is built for them; examples are not). Same flags as the CLI subcommand:
//! `--bind --port --requirepass --protected-mode yes|no --dir --appendonly yes|no
//! --appendfsync always|everysec|no --maxclients N --threads N --proto-max-bulk-len SIZE
//! --client-query-buffer-limit SIZE --client-output-buffer-limit "pubsub HARD SOFT SECS"
//! --tcp-backlog N --tcp-keepalive SECS`. `--port 0` picks a free port (logged when ready).

use charla_server::config::{parse_output_limits, parse_size};
use charla_server::{AppendFsync, ServerConfig};

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut cfg = ServerConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let Some(v) = args.next() else {
            eprintln!("missing value for {flag}");
            std::process::exit(2);
        };
        let bad = |what: &str| -> ! {
            eprintln!("bad value for {flag}: {v:?} ({what})");
            std::process::exit(2)
        };
        match flag.as_str() {
            "--bind" => cfg.bind = v.clone(),
            "--port" => cfg.port = v.parse().unwrap_or_else(|_| bad("a port number")),
            "--requirepass" => cfg.requirepass = Some(v.clone()),
            "--protected-mode" => cfg.protected_mode = v == "yes",
            "--dir" => cfg.dir = v.clone().into(),
            "--appendonly" => cfg.appendonly = v == "yes",
            "--appendfsync" => {
                cfg.appendfsync = v.parse::<AppendFsync>().unwrap_or_else(|e| bad(&e))
            }
            "--maxclients" => cfg.maxclients = v.parse().unwrap_or_else(|_| bad("a number")),
            "--threads" => cfg.threads = v.parse().unwrap_or_else(|_| bad("a number")),
            "--proto-max-bulk-len" => {
                cfg.max_bulk_len = parse_size(&v).unwrap_or_else(|| bad("a size such as 512mb"))
            }
            "--client-query-buffer-limit" => {
                cfg.client_query_buffer_limit =
                    parse_size(&v).unwrap_or_else(|| bad("a size such as 1gb"))
            }
            "--client-output-buffer-limit" => match parse_output_limits(&v) {
                Ok(Some(l)) => cfg.pubsub_output_limit = l,
                Ok(None) => {}
                Err(e) => bad(&e),
            },
            "--tcp-backlog" => cfg.tcp_backlog = v.parse().unwrap_or_else(|_| bad("a number")),
            "--tcp-keepalive" => cfg.tcp_keepalive = v.parse().unwrap_or_else(|_| bad("seconds")),
            _ => {
                eprintln!("unknown flag {flag}");
                std::process::exit(2);
            }
        }
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if cfg.threads > 0 {
        rt.worker_threads(cfg.threads);
    }
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let res = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind((cfg.bind.as_str(), cfg.port)).await?;
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
            }
        };
        charla_server::serve(listener, cfg, shutdown).await
    });
    if let Err(e) = res {
        eprintln!("charla serve: {e}");
        std::process::exit(1);
    }
}
