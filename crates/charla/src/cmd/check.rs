//! `charla check`: the seed's `python broker.py` — connect, ping, say what answers.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use charla_core::Mode;
use clap::Args;

use crate::config::Settings;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Print the result as one JSON object
    #[arg(long)]
    pub json: bool,
}

pub async fn run(settings: &Settings, args: CheckArgs) -> Result<ExitCode> {
    let lang = settings.lang;
    let started = Instant::now();
    let broker = match super::connect(settings).await {
        Ok(b) => b,
        Err(e) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "broker": charla_core::redact(&settings.broker), "error": e.to_string()})
                );
            } else {
                eprintln!("{}", lang.connect_error(&e.to_string()));
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let info = match broker.info().await {
        Ok(i) => i,
        Err(e) => {
            eprintln!("{}", lang.connect_error(&super::explain(settings, &e)));
            return Ok(ExitCode::FAILURE);
        }
    };
    let elapsed = started.elapsed();
    let caps = broker.capabilities();
    let modes: Vec<&str> = Mode::ALL
        .iter()
        .filter(|m| caps.supports(**m))
        .map(|m| m.as_str())
        .collect();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "ok": true,
                "broker": charla_core::redact(&settings.broker),
                "backend": broker.backend(),
                "product": info.product,
                "version": info.version,
                "address": info.address,
                "connect_ms": elapsed.as_secs_f64() * 1000.0,
                "modes": modes,
                "details": info.details,
            })
        );
    } else {
        println!(
            "{}",
            lang.connected(&info.product, &info.version, &info.address)
        );
        for line in &info.details {
            println!("   {line}");
        }
        let ms = elapsed.as_secs_f64() * 1000.0;
        let ms = format!("{ms:.1}");
        println!(
            "{}",
            lang.tr("check-timing", &[("ms", &ms), ("modes", &modes.join(", "))])
        );
        println!("{}", lang.tr("check-ok", &[]));
    }
    Ok(ExitCode::SUCCESS)
}
