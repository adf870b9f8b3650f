// SPDX-License-Identifier: MIT OR Apache-2.0
//! twostepd: serve the second factor on D-Bus.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use twostep_config::{Backend, BusAddress, Config};
use twostepd::configfile;
use twostepd::core::seal::Sealer;
use twostepd::core::store::postgres::{self, PgStore};
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
    /// not writable by group or others, the state directory private (0700), the store key
    /// (and a database password file) root's alone (0600). A PostgreSQL url must parse;
    /// the database is not contacted.
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
            let store = &loaded.config.store;
            Sealer::open(&store.key_file)?;
            match store.backend {
                Backend::Files => FileStore::check(&loaded.config.daemon.state_dir)?,
                Backend::Postgres => {
                    postgres::connection_config(store)?;
                }
            }
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
    // Why before the runtime: the PostgreSQL store drives its own runtime from the calling
    // thread, which must not be inside another runtime's async context.
    let store = match open_store(&config) {
        Ok(s) => s,
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
    match runtime.block_on(run(config, store, args.config.clone())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config, store: Box<dyn Store>, config_path: PathBuf) -> Result<(), String> {
    let bus = config.daemon.bus.clone();
    let login_socket = config.daemon.login_socket.clone();
    let core = Arc::new(Core::with_parts(config, store, Box::new(NssAccounts)));
    core.set_outbox(twostepd::mailer::Mailer::start()?);
    let builder = match &bus {
        BusAddress::System => zbus::connection::Builder::system(),
        BusAddress::Address(a) => zbus::connection::Builder::address(a.as_str()),
    }
    .map_err(|e| format!("bus address: {e}"))?;
    let conn = builder
        .build()
        .await
        .map_err(|e| format!("cannot connect to the bus: {e}"))?;
    let (identify, login) = twostepd::bus::serve(&conn, Arc::clone(&core), config_path.clone())
        .await
        .map_err(|e| format!("cannot serve {}: {e}", twostep_proto::BUS_NAME))?;
    log::info!(
        "serving {} on {}",
        twostep_proto::BUS_NAME,
        String::from(bus)
    );
    // Why after owning the bus name: a second daemon stops at the name, before it could
    // take the socket over.
    let endpoint = login_endpoint(&login_socket)?;
    if let Some(endpoint) = &endpoint {
        tokio::spawn(twostepd::bus::peer::LoginEndpoint::run_shared(
            Arc::clone(endpoint),
            login,
        ));
    }
    // Why exit when the watch ends: without its bus the daemon can answer nobody; the
    // service manager restarts it against the new bus (a kept, dead connection would look
    // alive).
    tokio::spawn(twostepd::notices::run(Arc::clone(&core)));
    tokio::spawn(twostepd::clockwatch::run());
    tokio::select! {
        r = serve_signals(&core, &config_path) => r?,
        r = identify.watch() => return Err(match r {
            Ok(()) => "lost the connection to the bus".into(),
            Err(e) => format!("cannot watch the bus: {e}"),
        }),
    }
    log::info!("stopping");
    if let Some(endpoint) = endpoint {
        endpoint.remove();
    }
    Ok(())
}

/// The login endpoint of `[daemon] login_socket`, bound; `None` when it is `""`.
fn login_endpoint(
    path: &std::path::Path,
) -> Result<Option<Arc<twostepd::bus::peer::LoginEndpoint>>, String> {
    if path.as_os_str().is_empty() {
        return Ok(None);
    }
    let endpoint = twostepd::bus::peer::LoginEndpoint::bind(path)
        .map_err(|e| format!("cannot serve the login socket: {e}"))?;
    log::info!(
        "serving {} and {} on {}",
        twostep_proto::LOGIN_INTERFACE,
        twostep_proto::LOGIN2_INTERFACE,
        path.display()
    );
    Ok(Some(Arc::new(endpoint)))
}

/// The store `[store] backend` names, sealing with the key of `[store] key_file`. Refuses
/// to start when records are sealed with a key this host does not hold (the PostgreSQL
/// store checks that itself, at its first connection).
fn open_store(config: &Config) -> Result<Box<dyn Store>, String> {
    let sealer = Arc::new(Sealer::open(&config.store.key_file)?);
    let store: Box<dyn Store> = match config.store.backend {
        Backend::Files => {
            let files = FileStore::open_with(&config.daemon.state_dir, Arc::clone(&sealer))?;
            let missing = twostepd::core::transfer::missing_keys(&files, &sealer)
                .map_err(|e| e.to_string())?;
            if !missing.is_empty() {
                return Err(format!(
                    "records in {} are sealed with store key(s) {} which this host does not \
                     have (it holds {}, from {} and its .old/.new); put the key file back",
                    config.daemon.state_dir.display(),
                    missing.join(", "),
                    sealer.key_ids().into_iter().collect::<Vec<_>>().join(", "),
                    config.store.key_file.display()
                ));
            }
            Box::new(files)
        }
        Backend::Postgres => Box::new(PgStore::open(&config.store, Arc::clone(&sealer))?),
    };
    log::info!(
        "store: {:?}, secrets sealed with key {}",
        config.store.backend,
        sealer.sealing_id().unwrap_or_default()
    );
    Ok(store)
}

/// Until SIGTERM or SIGINT; SIGHUP re-reads the configuration (an invalid file is refused
/// and the old configuration stays in force) and the store key files (the key file seals
/// from then on; keys already held keep opening; see `Core::reload_keys`).
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
                if let Err(e) = core.reload_keys() {
                    log::error!("store keys not reloaded, the previous keys stay: {e}");
                }
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
