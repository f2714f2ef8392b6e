//! A stand-alone `charla serve` for tests and benchmarks that want a separate process (kill -9
//! under load, redis-benchmark). Same flags as the CLI subcommand:
//! `--bind --port --requirepass --protected-mode yes|no --dir --appendonly yes|no
//! --appendfsync always|everysec|no --maxclients N --threads N`.

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
