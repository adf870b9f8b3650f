// SPDX-License-Identifier: MIT OR Apache-2.0
//! twostepd's instructions per login, counted by `valgrind --tool=callgrind`: repeatable on
//! a shared machine where wall time is not, and what shows whether anything on a login path
//! grows with the number of users.
//!
//! # How
//! Real logins through libpam and `pam_twostep.so`, one forked process per login (the
//! login driver in procs mode, right codes), against twostepd running under callgrind, on
//! one [`Transport`] per cell: the module's default, the login socket (peer to peer), or
//! the bus (`socket=none`).
//! Two daemon runs per cell, each from a fresh start: run A makes [`WARM`] logins, run B
//! the same [`WARM`] logins (their records written afresh in between) and then
//! [`MEASURED`] more for other users. The daemon starts with callgrind's instrumentation
//! off (`--instr-atstart=no`: its start-up, and the notice round that reads every record,
//! run at a few times native speed) and `callgrind_control -i on` turns it on before the
//! first login (the daemon is pinged until callgrind has taken the command). Callgrind writes
//! the instructions counted (`summary:`) when the daemon exits on SIGTERM;
//! (B − A) / [`MEASURED`] is the count per login, warm-up and shutdown cancelled out. Every instruction of the daemon's threads
//! counts: the bus connection's reader, the executor, the blocking pool, and the look-ups
//! of each new connection's uid.
//!
//! # Callers
//! - [`Caller::Root`]: the login process is root (sshd, sudo, su), the user has a record.
//! - [`Caller::NonRoot`]: the login process runs as the user it asks about (a screen
//!   locker), the user has a record.
//! - [`Caller::NoRecord`]: the login process is root, the user is in `/etc/passwd` but has
//!   no record (never enrolled).
//!
//! The users of a cell are the last ones in `/etc/passwd` (a flat-file look-up of them scans
//! every line before them): enrolled ones are the last of the population; users without a
//! record are appended after it for that cell only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::daemon::{BusClient, Twostepd};
use crate::driver::{self, Mode};
use crate::run::Transport;

/// Logins of the warm-up (run A, and the start of run B).
pub const WARM: u32 = 5;
/// Logins counted (the rest of run B).
pub const MEASURED: u32 = 20;

/// Who asks the daemon, about whom.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Caller {
    Root,
    NonRoot,
    NoRecord,
}

impl Caller {
    pub const ALL: [Caller; 3] = [Caller::Root, Caller::NonRoot, Caller::NoRecord];

    pub fn label(self) -> &'static str {
        match self {
            Caller::Root => "root caller, enrolled user",
            Caller::NonRoot => "non-root caller (the user itself), enrolled",
            Caller::NoRecord => "root caller, user without a record",
        }
    }
}

/// One cell: instructions per login at `size` users for `caller`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Count {
    pub size: u32,
    pub caller: Caller,
    /// How the module reached the daemon: its login socket, or the bus (`socket=none`).
    #[serde(default)]
    pub transport: Transport,
    /// Total instructions of run A and run B.
    pub run_a: u64,
    pub run_b: u64,
    /// (B − A) / `measured`.
    pub per_login: f64,
    pub measured: u32,
    /// PAM results of the counted logins, by name.
    pub codes: BTreeMap<String, usize>,
}

/// What a cell needs from the orchestrator.
pub struct Setup<'a> {
    pub exe: &'a Path,
    pub twostepd: &'a Path,
    pub config: &'a Path,
    pub log: &'a Path,
    pub client: &'a BusClient,
    pub confdir: &'a Path,
    /// The path measured: the PAM service whose module line goes there.
    pub transport: Transport,
    /// The daemon's login socket (checked to exist before a login over it).
    pub socket: &'a Path,
    /// Callgrind's output files go here (removed by the caller with the work directory).
    pub out_dir: PathBuf,
    pub period: u64,
    pub window: u64,
}

/// How long valgrind may take to start twostepd, and to stop it.
const VALGRIND_LIMIT: Duration = Duration::from_secs(1200);

/// Measure one cell. `first` is the index of the cell's first user; `reset` writes the given
/// users' records afresh (enrolled callers only).
///
/// # Errors
/// valgrind, the daemon or a driver run failed, or callgrind wrote no count.
pub fn measure(
    setup: &Setup<'_>,
    size: u32,
    caller: Caller,
    first: u32,
    reset: &dyn Fn(&[u32]) -> Result<(), String>,
    run: &dyn Fn(&driver::Spec, f64) -> Result<driver::Outcome, String>,
) -> Result<Count, String> {
    std::fs::create_dir_all(&setup.out_dir).map_err(|e| e.to_string())?;
    let logins = |offset: u32, n: u32| -> Result<driver::Outcome, String> {
        let spec = driver::Spec {
            confdir: setup.confdir.to_path_buf(),
            service: setup.transport.module().service().to_owned(),
            users: n,
            right: true,
            mode: Mode::Procs,
            workers: 1,
            max_logins: n as usize,
            seconds: 600.0,
            min_logins: n as usize,
            warmup: 0,
            period: setup.period,
            window: setup.window,
            wrong_budget: 0,
            seed: u64::from(offset),
            baseline: false,
            offset,
            as_user: caller == Caller::NonRoot,
            more_services: Vec::new(),
        };
        let out = run(&spec, 900.0)?;
        if out.logins != n as usize {
            return Err(format!(
                "callgrind: {n} logins wanted, {} made ({})",
                out.logins, out.stopped
            ));
        }
        Ok(out)
    };
    let warm: Vec<u32> = (first..first + WARM).collect();
    let measured: Vec<u32> = (first + WARM..first + WARM + MEASURED).collect();
    let enrolled = caller != Caller::NoRecord;

    let d = start(setup)?;
    logins(first, WARM)?;
    let run_a = stop(setup, d)?;

    if enrolled {
        reset(&warm)?;
    }
    let d = start(setup)?;
    logins(first, WARM)?;
    let out = logins(first + WARM, MEASURED)?;
    let run_b = stop(setup, d)?;
    if enrolled {
        reset(&warm)?;
        reset(&measured)?;
    }
    Ok(Count {
        size,
        caller,
        transport: setup.transport,
        run_a,
        run_b,
        per_login: (run_b.saturating_sub(run_a)) as f64 / f64::from(MEASURED),
        measured: MEASURED,
        codes: out.codes,
    })
}

fn start(setup: &Setup<'_>) -> Result<Twostepd, String> {
    let out = format!(
        "--callgrind-out-file={}/callgrind.%p",
        setup.out_dir.display()
    );
    let d = Twostepd::start_under(
        &[
            "valgrind",
            "--tool=callgrind",
            "--quiet",
            "--instr-atstart=no",
            &out,
        ],
        setup.twostepd,
        setup.config,
        setup.log,
        setup.client,
        VALGRIND_LIMIT,
    )?;
    // Why check: the module falls back to the bus when the socket is missing.
    if setup.transport == Transport::Socket && !setup.socket.exists() {
        return Err(format!(
            "callgrind: twostepd has no login socket at {}",
            setup.socket.display()
        ));
    }
    // Why ping: callgrind reads its command file only while the program runs, and an idle
    // daemon waits in epoll.
    let mut ctl = std::process::Command::new("callgrind_control")
        .arg("--instr=on")
        .arg(d.pid().to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("callgrind_control: {e}"))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = ctl.try_wait().map_err(|e| e.to_string())? {
            if !status.success() {
                return Err(format!("callgrind_control --instr=on: {status}"));
            }
            return Ok(d);
        }
        if std::time::Instant::now() > deadline {
            let _ = ctl.kill();
            let _ = ctl.wait();
            return Err("callgrind_control --instr=on: no answer within 120 s".into());
        }
        setup.client.ping(twostep_proto::BUS_NAME);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stop the daemon (callgrind writes its file at exit) and read its total.
fn stop(setup: &Setup<'_>, d: Twostepd) -> Result<u64, String> {
    let pid = d.pid();
    d.stop(setup.client);
    let path = setup.out_dir.join(format!("callgrind.{pid}"));
    // The name is released before the process has finished writing: wait for the file.
    let deadline = std::time::Instant::now() + VALGRIND_LIMIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(&path) {
            if let Some(n) = total(&text) {
                // `TWOSTEP_BENCH_CALLGRIND_KEEP=DIR`: keep the file there for
                // `callgrind_annotate` (the work directory is removed at exit).
                if let Some(keep) = std::env::var_os("TWOSTEP_BENCH_CALLGRIND_KEEP") {
                    let _ = std::fs::copy(&path, Path::new(&keep).join(format!("callgrind.{pid}")));
                }
                let _ = std::fs::remove_file(&path);
                return Ok(n);
            }
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("callgrind wrote no total to {}", path.display()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `summary:` (or `totals:`) line of a callgrind output file: instructions (`Ir`).
fn total(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_is_read_from_summary_or_totals() {
        assert_eq!(
            total("events: Ir\nfn=x\n1 2\nsummary: 12345\n"),
            Some(12345)
        );
        assert_eq!(total("events: Ir\ntotals: 99 3\n"), Some(99));
        assert_eq!(total("events: Ir\n"), None);
    }
}
