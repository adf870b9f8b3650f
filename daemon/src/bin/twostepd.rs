// SPDX-License-Identifier: MIT OR Apache-2.0
//! twostepd: serve the second factor on D-Bus.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use twostep_config::{BusAddress, Config};
use twostepd::core::Core;

/// The twostep daemon: owns every secret and decides every second-factor check.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Configuration file.
    #[arg(long, value_name = "FILE", default_value = twostep_config::DEFAULT_PATH)]
    config: PathBuf,
    /// Check FILE and exit: 0 if it is valid, 1 with file:line:column otherwise.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
    /// Log every request, not only outcomes.
    #[arg(long)]
    debug: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = args.check_config {
        return match Config::load(&path) {
            Ok(_) => {
                println!("{}: ok", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    twostepd::logging::init(args.debug);
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            log::error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(64)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            log::error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<(), String> {
    let bus = config.daemon.bus.clone();
    let core = Arc::new(Core::new(config)?);
    let builder = match &bus {
        BusAddress::System => zbus::connection::Builder::system(),
        BusAddress::Address(a) => zbus::connection::Builder::address(a.as_str()),
    }
    .map_err(|e| format!("bus address: {e}"))?;
    let conn = builder
        .build()
        .await
        .map_err(|e| format!("cannot connect to the bus: {e}"))?;
    twostepd::bus::serve(&conn, core)
        .await
        .map_err(|e| format!("cannot serve {}: {e}", twostep_proto::BUS_NAME))?;
    log::info!(
        "serving {} on {}",
        twostep_proto::BUS_NAME,
        String::from(bus)
    );
    wait_for_shutdown().await;
    log::info!("stopping");
    Ok(())
}

async fn wait_for_shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
