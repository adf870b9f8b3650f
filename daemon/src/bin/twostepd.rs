// SPDX-License-Identifier: MIT OR Apache-2.0
//! twostepd: serve the second factor on D-Bus.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use twostep_config::{BusAddress, Config};
use twostepd::configfile;
use twostepd::core::store::{FileStore, Store};
use twostepd::core::users::NssAccounts;
use twostepd::core::Core;

/// The twostep daemon: owns every secret and decides every second-factor check.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Configuration file.
    #[arg(long, value_name = "FILE", default_value = twostep_config::DEFAULT_PATH)]
    config: PathBuf,
    /// Check FILE and exit: 0 if it is valid, 1 with file:line:column otherwise. The file
    /// and its state directory must also be safe: owned by root (or the daemon's uid) and
    /// not writable by group or others, the state directory private (0700).
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
    /// Log every request, not only outcomes.
    #[arg(long)]
    debug: bool,
}

fn main() -> ExitCode {
    // Why first, before any secret is read: a non-dumpable process writes no core file
    // (TOTP secrets, codes being checked), and processes of its own uid can neither ptrace
    // it nor read its /proc/PID/mem or environ. Fails closed: no daemon without it.
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        eprintln!("twostepd: cannot disable core dumps (prctl PR_SET_DUMPABLE): {e}");
        return ExitCode::FAILURE;
    }
    let args = Args::parse();
    if let Some(path) = args.check_config {
        let checked = configfile::load(&path).and_then(|loaded| {
            FileStore::check(&loaded.config.daemon.state_dir)?;
            Ok(loaded)
        });
        return match checked {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    eprintln!("warning: {w}");
                }
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
    let code = serve(&args);
    // Why: log lines are written by the log threads; keep the last ones (why the daemon
    // stops) before the process ends.
    log::logger().flush();
    code
}

fn serve(args: &Args) -> ExitCode {
    let config = match configfile::load(&args.config) {
        Ok(loaded) => {
            configfile::log_warnings(&loaded);
            loaded.config
        }
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
    match runtime.block_on(run(config, args.config.clone())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config, config_path: PathBuf) -> Result<(), String> {
    let bus = config.daemon.bus.clone();
    let store = open_store(&config)?;
    let core = Arc::new(Core::with_parts(config, store, Box::new(NssAccounts)));
    let builder = match &bus {
        BusAddress::System => zbus::connection::Builder::system(),
        BusAddress::Address(a) => zbus::connection::Builder::address(a.as_str()),
    }
    .map_err(|e| format!("bus address: {e}"))?;
    let conn = builder
        .build()
        .await
        .map_err(|e| format!("cannot connect to the bus: {e}"))?;
    let identify = twostepd::bus::serve(&conn, Arc::clone(&core), config_path.clone())
        .await
        .map_err(|e| format!("cannot serve {}: {e}", twostep_proto::BUS_NAME))?;
    log::info!(
        "serving {} on {}",
        twostep_proto::BUS_NAME,
        String::from(bus)
    );
    // Why exit when the watch ends: without its bus the daemon can answer nobody; the
    // service manager restarts it against the new bus (a kept, dead connection would look
    // alive).
    tokio::select! {
        r = serve_signals(&core, &config_path) => r?,
        r = identify.watch() => return Err(match r {
            Ok(()) => "lost the connection to the bus".into(),
            Err(e) => format!("cannot watch the bus: {e}"),
        }),
    }
    log::info!("stopping");
    Ok(())
}

/// The store the configuration names. Only the embedded file store exists today (a
/// PostgreSQL store for fleets is planned: a `[daemon] store` key then chooses here).
fn open_store(config: &Config) -> Result<Box<dyn Store>, String> {
    Ok(Box::new(FileStore::open(&config.daemon.state_dir)?))
}

/// Until SIGTERM or SIGINT; SIGHUP re-reads the configuration (an invalid file is refused
/// and the old configuration stays in force).
async fn serve_signals(core: &Arc<Core>, config_path: &std::path::Path) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = hup.recv() => {
                // The daemon's own signal (only root or the daemon's uid can send it): no
                // caller to authorize.
                let outcome = configfile::load(config_path).and_then(|loaded| {
                    configfile::log_warnings(&loaded);
                    core.apply_config(loaded.config).map_err(|e| e.to_string())
                });
                if outcome.is_ok() {
                    log::info!("action=reload source=SIGHUP outcome=done");
                }
                if let Err(e) = outcome {
                    log::error!("reload refused, the previous configuration stays: {e}");
                }
            }
        }
    }
}
