// SPDX-License-Identifier: MIT OR Apache-2.0
//! The orchestrator behind `scripts/bench`: builds the user population and every module's
//! state, starts the bus and the daemon, runs every measurement (each login run in a fresh
//! driver process), and hands the results to [`crate::report`].
//!
//! Order: for each population size, for each repetition, for each path × mode × workers,
//! the five services run back to back, so a module and its pam_permit baseline are measured
//! within seconds of each other; deltas are taken per repetition, then the median.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::daemon::{self, Artifacts, Bus, BusClient, Twostepd};
use crate::driver::{self, unix_now, Mode};
use crate::micro::{self, Micro};
use crate::sys::{self, DevLog};
use crate::users::{self, GoogleState, OathState, TwostepState};
use crate::{callgrind, flood, otp, paired, session_flood, verify};

/// TOTP acceptance window, in steps either side, for every module (the defaults: twostep
/// `window = 1`, google-authenticator `WINDOW_SIZE 3`, pam_oath `window=1`).
pub const WINDOW: u64 = 1;
pub const PERIOD: u64 = 30;
/// Wrong codes per user per run: below every module's lockout / rate limit (10).
pub const WRONG_BUDGET: u64 = 9;

/// The services measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Module {
    Permit,
    /// twostep as shipped: the module reaches the daemon on its login socket (issue 18).
    Twostep,
    /// twostep with `socket=none`: the module goes through the bus (the path before issue 18,
    /// and every caller's path when the socket is absent).
    TwostepBus,
    GaPlain,
    GaHard,
    Oath,
    /// twostep on the PostgreSQL store, one daemon (`--only fleet`; not in [`Module::ALL`]).
    TwostepPg,
    /// twostep on the PostgreSQL store, three daemons on three buses, logins in turn.
    TwostepPg3,
}

impl Module {
    /// What `--only fleet` compares.
    pub const FLEET: [Module; 4] = [
        Module::Permit,
        Module::Twostep,
        Module::TwostepPg,
        Module::TwostepPg3,
    ];

    pub const ALL: [Module; 6] = [
        Module::Permit,
        Module::Twostep,
        Module::TwostepBus,
        Module::GaPlain,
        Module::GaHard,
        Module::Oath,
    ];

    pub fn service(self) -> &'static str {
        match self {
            Module::Permit => "tsb-permit",
            Module::Twostep => "tsb-twostep",
            Module::TwostepBus => "tsb-twostep-bus",
            Module::GaPlain => "tsb-ga-plain",
            Module::GaHard => "tsb-ga-hard",
            Module::Oath => "tsb-oath",
            // The twostep service on the first bus (the others: `FLEET_SERVICES`).
            Module::TwostepPg | Module::TwostepPg3 => "tsb-twostep",
        }
    }

    /// The module whose state (records, files) this one uses: both twostep services log in
    /// against the same daemon and records, so what one touched is reset before the other runs.
    pub fn state(self) -> Module {
        match self {
            Module::TwostepBus => Module::Twostep,
            other => other,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Module::Permit => "pam_permit (baseline)",
            Module::Twostep => "twostep",
            Module::TwostepBus => "twostep over the bus (socket=none)",
            Module::GaPlain => "google-auth plain",
            Module::GaHard => "google-auth hardened",
            Module::Oath => "pam_oath",
            Module::TwostepPg => "twostep, PostgreSQL",
            Module::TwostepPg3 => "twostep, PostgreSQL, 3 daemons",
        }
    }
}

/// How the module (or a daemon-alone client) reaches twostepd.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// The login socket, peer to peer (the module's default since issue 18).
    #[default]
    Socket,
    /// The system bus through dbus-daemon (`socket=none`).
    Bus,
}

impl Transport {
    pub const ALL: [Transport; 2] = [Transport::Socket, Transport::Bus];

    pub fn label(self) -> &'static str {
        match self {
            Transport::Socket => "login socket",
            Transport::Bus => "bus",
        }
    }

    /// The PAM service of the twostep module on this path.
    pub fn module(self) -> Module {
        match self {
            Transport::Socket => Module::Twostep,
            Transport::Bus => Module::TwostepBus,
        }
    }
}

/// What to run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Options {
    pub quick: bool,
    pub sizes: Vec<u32>,
    pub reps: usize,
    pub max_logins: usize,
    pub seconds: f64,
    /// Slow modules run longer (up to 4 × `seconds`) until this many logins are measured.
    pub min_logins: usize,
    pub warmup: usize,
    pub verify_seconds: f64,
    pub flood_seconds: f64,
    pub repo: PathBuf,
    pub work: PathBuf,
    /// The command line to print in BENCHMARKS.md.
    pub command: String,
    /// `--only twostep`: pam_permit and twostep only, no load-cost or flood runs, no tables
    /// (for a quick look while working on the daemon or the module).
    #[serde(default)]
    pub only_twostep: bool,
    /// `--only session-flood`: issue 19's session flood alone (at the largest size up to
    /// 10,000), written into its own section of BENCHMARKS.md.
    #[serde(default)]
    pub only_session_flood: bool,
    /// `--only fleet`: issue 15's PostgreSQL store beside the file store (sizes up to
    /// 10,000), written into its own section of BENCHMARKS.md.
    #[serde(default)]
    pub only_fleet: bool,
    /// Count twostepd's instructions per login under callgrind (see [`crate::callgrind`]).
    #[serde(default)]
    pub callgrind: bool,
    /// `--only callgrind`: those counts alone, written into their own section.
    #[serde(default)]
    pub only_callgrind: bool,
    /// Callgrind over the bus (`socket=none`) too, beside the login socket
    /// (`--callgrind-bus`).
    #[serde(default)]
    pub callgrind_bus: bool,
    /// Length of the paired right/wrong run per size (see [`crate::paired`]).
    #[serde(default)]
    pub paired_seconds: f64,
    /// `--only paired`: the paired right/wrong runs alone.
    #[serde(default)]
    pub only_paired: bool,
}

impl Options {
    pub fn full(repo: PathBuf, work: PathBuf) -> Options {
        Options {
            quick: false,
            sizes: vec![100, 10_000, 100_000],
            reps: 3,
            max_logins: 1_200,
            seconds: 1.6,
            min_logins: 30,
            warmup: 10,
            verify_seconds: 3.0,
            flood_seconds: 4.0,
            repo,
            work,
            command: "./scripts/bench".into(),
            only_twostep: false,
            only_session_flood: false,
            only_fleet: false,
            callgrind: true,
            only_callgrind: false,
            // Why not by default: it doubles callgrind's part of the run. Measured on the
            // 2-vCPU machine of issue 18 at 746d4dd: 100 + 10,000 users ≈ 1 min per path,
            // 100,000 users ≈ 5.5 min per path (every cell starts two daemons that read all
            // records under valgrind): ≈ 7 min for the socket, ≈ 13 min with the bus too.
            callgrind_bus: false,
            paired_seconds: 4.0,
            only_paired: false,
        }
    }

    pub fn quick(repo: PathBuf, work: PathBuf) -> Options {
        Options {
            quick: true,
            sizes: vec![100, 10_000],
            reps: 1,
            max_logins: 300,
            seconds: 0.8,
            min_logins: 10,
            warmup: 5,
            verify_seconds: 1.0,
            flood_seconds: 1.0,
            paired_seconds: 2.0,
            command: "./scripts/bench --quick".into(),
            ..Options::full(repo, work)
        }
    }
}

/// One driver run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoginRun {
    pub size: u32,
    pub module: Module,
    pub right: bool,
    pub mode: Mode,
    pub workers: usize,
    pub rep: usize,
    pub out: driver::Outcome,
    /// twostepd's VmHWM / VmRSS after the run (KiB).
    pub daemon_hwm_kib: Option<u64>,
    pub daemon_rss_kib: Option<u64>,
    /// Syslog lines received during the run, by tag.
    pub syslog: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VerifyRun {
    pub size: u32,
    pub right: bool,
    /// Peer to peer to the login socket, or through the bus.
    #[serde(default)]
    pub transport: Transport,
    pub rep: usize,
    pub out: verify::Outcome,
    pub daemon_hwm_kib: u64,
}

/// One paired right/wrong run (see [`crate::paired`]), through the login socket.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PairedRun {
    pub size: u32,
    pub out: paired::Outcome,
}

/// A login process that loads a module without calling it (pam_permit otherwise).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoadRun {
    pub module: String,
    pub rep: usize,
    pub p50: f64,
    pub per_second: f64,
}

/// The services of [`LoadRun`]: (label, service name).
pub const LOAD_SERVICES: [(&str, &str); 4] = [
    ("pam_permit (baseline)", "tsb-permit"),
    ("libpam_twostep.so", "tsb-load-twostep"),
    ("pam_google_authenticator.so", "tsb-load-ga"),
    ("pam_oath.so", "tsb-load-oath"),
];

/// Facts about the module files.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Elf {
    pub name: String,
    pub bytes: u64,
    pub relocations: usize,
    pub needed: Vec<String>,
}

/// Everything a run measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Results {
    pub options: Options,
    pub date: String,
    pub commit: String,
    pub machine: String,
    pub load_before: String,
    pub load_after: String,
    pub devlog: String,
    pub elapsed_s: f64,
    pub login: Vec<LoginRun>,
    pub verify: Vec<VerifyRun>,
    pub startup_ms: Vec<(u32, f64)>,
    pub hwm_kib: Vec<(u32, u64)>,
    pub flood: Vec<(u32, flood::Outcome)>,
    /// Issue 19: A's logins begun and never answered while B logs in.
    #[serde(default)]
    pub session_flood: Vec<(u32, flood::Outcome)>,
    pub load: Vec<LoadRun>,
    pub micro: Vec<Micro>,
    pub getpwnam: Vec<(u32, Micro)>,
    pub store_at_size: Vec<(u32, Micro)>,
    pub elf: Vec<Elf>,
    /// twostepd's instructions per login, per size and caller kind.
    #[serde(default)]
    pub callgrind: Vec<callgrind::Count>,
    /// Wrong code against right code, paired and interleaved.
    #[serde(default)]
    pub paired: Vec<PairedRun>,
    pub oathtool_checked: usize,
    pub record_checked: String,
}

/// The whole run.
///
/// # Errors
/// Anything that makes the numbers meaningless: a missing tool, a failed set-up step, a
/// record format that no longer matches the daemon's.
pub fn run(opts: &Options) -> Result<Results, String> {
    let t0 = Instant::now();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("the benchmark needs root (PAM modules, /etc/passwd bind mount)".into());
    }
    sys::require_private_mounts()?;
    let work = opts.work.clone();
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let devlog = DevLog::provide(&work)?;
    let art = Artifacts::find(&opts.repo)?;
    let bus_dir = work.join("bus");
    std::fs::create_dir_all(&bus_dir).map_err(|e| e.to_string())?;
    let bus = Bus::start(&bus_dir, &art.policy)?;
    let client = BusClient::connect(&bus.address)?;
    let passwd_original = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string())?;

    let oathtool_checked = check_codes_against_oathtool()?;
    say(&format!("codes: {oathtool_checked} codes match oathtool"));
    let record_checked = check_record_format(&work, &art, &bus, &client)?;
    say(&format!("record format: {record_checked}"));

    // Module state and PAM services.
    let twostep_dir = work.join("twostep");
    let state_dir = twostep_dir.join("state");
    let config = twostep_dir.join("twostep.toml");
    let daemon_log = twostep_dir.join("twostepd.log");
    std::fs::create_dir_all(&twostep_dir).map_err(|e| e.to_string())?;
    std::fs::write(
        &config,
        daemon::config_text(&state_dir, &bus.address, WINDOW),
    )
    .map_err(|e| e.to_string())?;
    let tw = TwostepState::new(&state_dir, unix_now())?;
    let ga_plain = GoogleState {
        dir: work.join("ga-plain"),
        hardened: false,
    };
    let ga_hard = GoogleState {
        dir: work.join("ga-hard"),
        hardened: true,
    };
    let oath = OathState {
        file: work.join("oath").join("users.oath"),
    };
    let confdir = work.join("pam.d");
    write_services(
        &confdir,
        &art.module,
        &bus.address,
        &daemon::login_socket(&state_dir),
        &ga_plain.dir,
        &ga_hard.dir,
        &oath.file,
    )?;

    // `--only fleet`: the database, and two more buses with a twostep service each.
    let fleet_db = if opts.only_fleet {
        let pg = crate::fleet::PgServer::start(&work.join("pg"))?;
        let mut extra = Vec::new();
        for (i, service) in FLEET_SERVICES.iter().enumerate() {
            let dir = work.join(format!("bus-{}", i + 2));
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let b = Bus::start(&dir, &art.policy)?;
            // Why retry: the socket file appears a moment before the bus listens on it.
            let mut c = BusClient::connect(&b.address);
            for _ in 0..100 {
                if c.is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
                c = BusClient::connect(&b.address);
            }
            let c = c?;
            std::fs::write(
                confdir.join(service),
                format!(
                    "auth required pam_permit.so\nauth required {} bus={} socket=none\n",
                    art.module.display(),
                    b.address
                ),
            )
            .map_err(|e| e.to_string())?;
            extra.push((b, c));
        }
        Some(FleetDb { pg, extra })
    } else {
        None
    };

    let mut res = Results {
        options: opts.clone(),
        date: date(),
        commit: commit(&opts.repo),
        machine: machine(),
        load_before: load_before.trim().to_owned(),
        load_after: String::new(),
        devlog: devlog.describe().to_owned(),
        elapsed_s: 0.0,
        login: Vec::new(),
        verify: Vec::new(),
        startup_ms: Vec::new(),
        hwm_kib: Vec::new(),
        flood: Vec::new(),
        session_flood: Vec::new(),
        load: Vec::new(),
        micro: Vec::new(),
        getpwnam: Vec::new(),
        store_at_size: Vec::new(),
        elf: Vec::new(),
        callgrind: Vec::new(),
        paired: Vec::new(),
        oathtool_checked,
        record_checked,
    };

    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // Why a copy of all of /etc rather than a bind mount of /etc/passwd alone: a file that is
    // a mount point here is detached when anyone outside renames over it (useradd does), so
    // the bench users could vanish mid-run. A bind of the directory copy is immune to that.
    let etc_copy = work.join("etc");
    sys::sh(Command::new("cp").arg("-a").arg("/etc").arg(&etc_copy))?;
    sys::bind(&etc_copy, Path::new("/etc"))?;
    let etc_passwd = Path::new("/etc/passwd");
    let flood_size = opts.sizes.iter().copied().filter(|s| *s <= 10_000).max();
    for &size in &opts.sizes {
        if opts.only_session_flood && Some(size) != flood_size {
            continue;
        }
        say(&format!("--- {size} users: writing state ---"));
        let passwd = Path::new("/etc").join(format!(".passwd-{size}"));
        users::write_passwd(&passwd, &passwd_original, size)?;
        std::fs::rename(&passwd, etc_passwd).map_err(|e| format!("/etc/passwd: {e}"))?;
        let t = Instant::now();
        tw.write_all(size)?;
        ga_plain.write_all(size)?;
        ga_hard.write_all(size)?;
        oath.write_all(size)?;
        sync();
        say(&format!(
            "state for {size} users written in {:.1} s",
            t.elapsed().as_secs_f64()
        ));
        let last = users::name(size - 1);
        res.getpwnam.push((
            size,
            micro::getpwnam(&last, if size > 10_000 { 100 } else { 2_000 }),
        ));
        // The durable save in the populated store (its directory holds `size` records).
        let mut saves = micro::store(
            &state_dir,
            &tw.record(0),
            1,
            "the store",
            std::sync::Arc::clone(&tw.sealer),
        )?;
        saves.truncate(1);
        res.store_at_size
            .extend(saves.into_iter().map(|m| (size, m)));

        let mut dirty: HashMap<Module, Vec<u32>> = HashMap::new();
        let reset = |module: Module, dirty: &mut HashMap<Module, Vec<u32>>| -> Result<(), String> {
            let touched = dirty.remove(&module.state()).unwrap_or_default();
            match module {
                Module::Permit => Ok(()),
                Module::Twostep | Module::TwostepBus => tw.reset(&touched),
                Module::GaPlain => ga_plain.reset(&touched),
                Module::GaHard => ga_hard.reset(&touched),
                Module::Oath => oath.reset(&touched, size),
                Module::TwostepPg | Module::TwostepPg3 => match &fleet_db {
                    Some(f) => f.pg.reset(&tw, &touched),
                    None => Ok(()),
                },
            }
        };
        if opts.only_fleet {
            if let Some(f) = fleet_db.as_ref().filter(|_| size <= 10_000) {
                run_fleet(&FleetCtx {
                    opts,
                    size,
                    f,
                    tw: &tw,
                    art: &art,
                    config: &config,
                    daemon_log: &daemon_log,
                    client: &client,
                    confdir: &confdir,
                    exe: &exe,
                    bus: &bus,
                })
                .map(|runs| res.login.extend(runs))?;
            }
            continue;
        }
        // Issue 19's session flood, at the largest size up to 10,000 (alone with
        // `--only session-flood`, otherwise after issue 5's flood below).
        let session_flood_here = Some(size) == flood_size && !opts.only_twostep;
        let run_session_flood = |dirty: &mut HashMap<Module, Vec<u32>>,
                                 res: &mut Results|
         -> Result<(), String> {
            for rep in 0..opts.reps {
                reset(Module::Twostep, dirty)?;
                let d = Twostepd::start(&art.twostepd, &config, &daemon_log, &client)?;
                let spec = session_flood::Spec {
                    confdir: confdir.clone(),
                    service: Module::Twostep.service().into(),
                    bus: bus.address.clone(),
                    users: size,
                    flooders: 4,
                    ring: 24,
                    seconds: opts.flood_seconds,
                    period: PERIOD,
                    window: WINDOW,
                    seed: 1977 + rep as u64,
                };
                let mut out: flood::Outcome = subprocess(
                    &exe,
                    "session-flood",
                    &spec,
                    3.0 * opts.flood_seconds + 60.0,
                )?;
                dirty.insert(Module::Twostep, std::mem::take(&mut out.touched));
                d.stop(&client);
                for p in &out.phases {
                    say(&format!(
                        "session flood: {:<70} B p50={:.3} ms p99={:.3} ms ({} logins, {} failed); A {:.0} Begins/s {:?}",
                        p.name, p.b.p50, p.b.p99, p.b.n, p.b_failed, p.flood_per_second, p.flood_outcomes
                    ));
                }
                res.session_flood.push((size, out));
            }
            Ok(())
        };
        let login_socket = daemon::login_socket(&state_dir);
        if opts.callgrind && !opts.only_twostep && !opts.only_session_flood && !opts.only_paired {
            let transports: &[Transport] = if opts.callgrind_bus {
                &Transport::ALL
            } else {
                &[Transport::Socket]
            };
            let cell = callgrind::WARM + callgrind::MEASURED;
            let reset_tw = |touched: &[u32]| tw.reset(touched);
            let login = |spec: &driver::Spec, t: f64| subprocess(&exe, "login", spec, t);
            reset(Module::Twostep, &mut dirty)?;
            for (transport, caller) in transports
                .iter()
                .flat_map(|t| callgrind::Caller::ALL.map(|c| (*t, c)))
            {
                let setup = callgrind::Setup {
                    exe: &exe,
                    twostepd: &art.twostepd,
                    config: &config,
                    log: &daemon_log,
                    client: &client,
                    confdir: &confdir,
                    transport,
                    socket: &login_socket,
                    out_dir: work.join("callgrind"),
                    period: PERIOD,
                    window: WINDOW,
                };
                let first = match caller {
                    callgrind::Caller::NoRecord => {
                        // Users after the population, in /etc/passwd for this cell only.
                        users::write_passwd(&passwd, &passwd_original, size + cell)?;
                        std::fs::rename(&passwd, etc_passwd)
                            .map_err(|e| format!("/etc/passwd: {e}"))?;
                        size
                    }
                    _ if size >= cell => size - cell,
                    _ => continue,
                };
                let count = callgrind::measure(&setup, size, caller, first, &reset_tw, &login);
                if caller == callgrind::Caller::NoRecord {
                    users::write_passwd(&passwd, &passwd_original, size)?;
                    std::fs::rename(&passwd, etc_passwd)
                        .map_err(|e| format!("/etc/passwd: {e}"))?;
                }
                let count = count?;
                say(&format!(
                    "{size:>6} users  callgrind {:<12} {:<45} {:>12.0} instructions per login {:?}",
                    transport.label(),
                    caller.label(),
                    count.per_login,
                    count.codes
                ));
                res.callgrind.push(count);
            }
            let _ = std::fs::remove_dir_all(work.join("callgrind"));
        }
        if opts.only_callgrind {
            continue;
        }
        // Wrong code against right code, paired and interleaved (issue 18).
        let run_paired =
            |dirty: &mut HashMap<Module, Vec<u32>>, res: &mut Results| -> Result<(), String> {
                reset(Module::Twostep, dirty)?;
                let d = Twostepd::start(&art.twostepd, &config, &daemon_log, &client)?;
                // Why check: the module falls back to the bus when the socket is missing; this
                // run must measure the socket.
                if !login_socket.exists() {
                    return Err(format!(
                        "paired: twostepd has no login socket at {}",
                        login_socket.display()
                    ));
                }
                let spec = paired::Spec {
                    confdir: confdir.clone(),
                    service: Module::Twostep.service().into(),
                    users: size,
                    seconds: opts.paired_seconds,
                    max_rounds: opts.max_logins,
                    warmup: 5,
                    period: PERIOD,
                    window: WINDOW,
                    wrong_budget: WRONG_BUDGET,
                    seed: seed(size, 0, true, Mode::Procs, 3, Module::Twostep) ^ 0x9a1d,
                };
                let mut out: paired::Outcome =
                    subprocess(&exe, "paired", &spec, opts.paired_seconds + 120.0)?;
                dirty.insert(Module::Twostep, std::mem::take(&mut out.touched));
                d.stop(&client);
                say(&crate::report::paired_line(size, &out));
                res.paired.push(PairedRun { size, out });
                Ok(())
            };
        if opts.only_paired {
            run_paired(&mut dirty, &mut res)?;
            reset(Module::Twostep, &mut dirty)?;
            continue;
        }
        if opts.only_session_flood {
            if session_flood_here {
                run_session_flood(&mut dirty, &mut res)?;
            }
            reset(Module::Twostep, &mut dirty)?;
            continue;
        }
        // Why this order: a module's runs sit next to the baseline's, and its right-code
        // runs next to its wrong-code runs, so both comparisons see the same machine load.
        for rep in 0..opts.reps {
            for mode in [Mode::Procs, Mode::Threads] {
                for workers in [1usize, 2] {
                    for right in [true, false] {
                        for module in Module::ALL {
                            if opts.only_twostep
                                && !matches!(
                                    module,
                                    Module::Permit | Module::Twostep | Module::TwostepBus
                                )
                            {
                                continue;
                            }
                            reset(module, &mut dirty)?;
                            let daemon = if matches!(module, Module::Twostep | Module::TwostepBus) {
                                let d =
                                    Twostepd::start(&art.twostepd, &config, &daemon_log, &client)?;
                                res.startup_ms.push((size, d.startup.as_secs_f64() * 1e3));
                                Some(d)
                            } else {
                                None
                            };
                            let spec = driver::Spec {
                                confdir: confdir.clone(),
                                service: module.service().into(),
                                users: size,
                                right,
                                mode,
                                workers,
                                max_logins: opts.max_logins + opts.warmup,
                                seconds: opts.seconds,
                                min_logins: opts.min_logins,
                                warmup: opts.warmup,
                                period: PERIOD,
                                window: WINDOW,
                                wrong_budget: WRONG_BUDGET,
                                seed: seed(size, rep, right, mode, workers, module),
                                baseline: module == Module::Permit,
                                more_services: Vec::new(),
                                offset: 0,
                                as_user: false,
                            };
                            let logs_before = devlog.snapshot();
                            let mut out: driver::Outcome =
                                subprocess(&exe, "login", &spec, opts.seconds + 120.0)?;
                            let syslog = diff(&logs_before, &devlog.snapshot());
                            dirty.insert(module.state(), std::mem::take(&mut out.touched));
                            let (hwm, rss) = match daemon {
                                Some(d) => {
                                    let (hwm, rss) = sys::memory_kib(d.pid());
                                    d.stop(&client);
                                    res.hwm_kib.push((size, hwm));
                                    (Some(hwm), Some(rss))
                                }
                                None => (None, None),
                            };
                            say(&progress(size, right, mode, workers, module, &out));
                            res.login.push(LoginRun {
                                size,
                                module,
                                right,
                                mode,
                                workers,
                                rep,
                                out,
                                daemon_hwm_kib: hwm,
                                daemon_rss_kib: rss,
                                syslog,
                            });
                        }
                    }
                }
            }
        }

        if !opts.only_twostep {
            run_paired(&mut dirty, &mut res)?;
        }

        // The daemon's own throughput (2 clients on persistent connections), peer to peer
        // on the login socket and through the bus, back to back.
        {
            for rep in 0..opts.reps {
                for (right, transport) in [true, false]
                    .into_iter()
                    .flat_map(|r| Transport::ALL.map(|t| (r, t)))
                {
                    reset(Module::Twostep, &mut dirty)?;
                    let d = Twostepd::start(&art.twostepd, &config, &daemon_log, &client)?;
                    let spec = verify::Spec {
                        bus: bus.address.clone(),
                        socket: (transport == Transport::Socket).then(|| login_socket.clone()),
                        users: size,
                        right,
                        clients: 2,
                        seconds: opts.verify_seconds,
                        warmup: 50,
                        period: PERIOD,
                        window: WINDOW,
                        wrong_budget: WRONG_BUDGET,
                        seed: seed(size, rep, right, Mode::Threads, 2, Module::Twostep) ^ 0xbeef,
                    };
                    let mut out: verify::Outcome =
                        subprocess(&exe, "verify", &spec, opts.verify_seconds + 60.0)?;
                    dirty.insert(Module::Twostep, std::mem::take(&mut out.touched));
                    let (hwm, _) = sys::memory_kib(d.pid());
                    d.stop(&client);
                    say(&format!(
                        "{size:>6} users  daemon-only {:<5} {:<12} 2 clients: {:>7.0}/s p50={:.3} ms (Begin {:.3}, Answer {:.3}) p99={:.3} ms expected {}/{}; floor Ping p50={:.3} ms {:.0}/s ÷ 2 ({} error replies)",
                        if right { "right" } else { "wrong" },
                        transport.label(),
                        out.per_second,
                        out.latency.p50,
                        out.begin.p50,
                        out.answer.p50,
                        out.latency.p99,
                        out.expected,
                        out.logins,
                        out.ping.p50,
                        out.ping_per_second / 2.0,
                        out.ping_errors
                    ));
                    res.verify.push(VerifyRun {
                        size,
                        right,
                        transport,
                        rep,
                        out,
                        daemon_hwm_kib: hwm,
                    });
                }
            }
        }

        // What loading each module costs a login process: the module on the service's
        // account stack (loaded by pam_start, unloaded by pam_end, never called).
        if Some(&size) == opts.sizes.first() && !opts.only_twostep {
            for rep in 0..opts.reps {
                for (name, service) in LOAD_SERVICES {
                    let spec = driver::Spec {
                        confdir: confdir.clone(),
                        service: service.into(),
                        users: size,
                        right: false,
                        mode: Mode::Procs,
                        workers: 1,
                        max_logins: opts.max_logins + opts.warmup,
                        seconds: opts.seconds,
                        min_logins: opts.min_logins,
                        warmup: opts.warmup,
                        period: PERIOD,
                        window: WINDOW,
                        wrong_budget: WRONG_BUDGET,
                        seed: seed(size, rep, false, Mode::Procs, 1, Module::Permit) ^ 0x10ad,
                        baseline: true,
                        more_services: Vec::new(),
                        offset: 0,
                        as_user: false,
                    };
                    let out: driver::Outcome =
                        subprocess(&exe, "login", &spec, opts.seconds * 4.0 + 120.0)?;
                    say(&format!(
                        "load cost: {name:<28} p50={:.3} ms {:.0}/s",
                        out.latency.p50, out.per_second
                    ));
                    res.load.push(LoadRun {
                        module: name.into(),
                        rep,
                        p50: out.latency.p50,
                        per_second: out.per_second,
                    });
                }
            }
        }

        // Issue 5's flood, at the largest size up to 10,000.
        if Some(size) == flood_size && !opts.only_twostep {
            for rep in 0..opts.reps {
                reset(Module::Twostep, &mut dirty)?;
                let d = Twostepd::start(&art.twostepd, &config, &daemon_log, &client)?;
                let spec = flood::Spec {
                    confdir: confdir.clone(),
                    service: Module::Twostep.service().into(),
                    bus: bus.address.clone(),
                    users: size,
                    flooders: 4,
                    seconds: opts.flood_seconds,
                    period: PERIOD,
                    window: WINDOW,
                    seed: 77 + rep as u64,
                };
                let mut out: flood::Outcome =
                    subprocess(&exe, "flood", &spec, 3.0 * opts.flood_seconds + 60.0)?;
                dirty.insert(Module::Twostep, std::mem::take(&mut out.touched));
                d.stop(&client);
                for p in &out.phases {
                    say(&format!(
                        "flood: {:<55} B p50={:.3} ms p99={:.3} ms ({} logins, {} failed); flood {:.0}/s {:?}",
                        p.name, p.b.p50, p.b.p99, p.b.n, p.b_failed, p.flood_per_second, p.flood_outcomes
                    ));
                }
                res.flood.push((size, out));
            }
        }
        if session_flood_here {
            run_session_flood(&mut dirty, &mut res)?;
        }
        for module in Module::ALL {
            reset(module, &mut dirty)?;
        }
    }
    sys::unmount(Path::new("/etc"))?;
    if opts.only_session_flood || opts.only_fleet || opts.only_callgrind || opts.only_paired {
        res.elapsed_s = t0.elapsed().as_secs_f64();
        return Ok(res);
    }

    say("--- microbenchmarks ---");
    let scale = if opts.quick { 1 } else { 3 };
    res.micro = micro::core(scale)?;
    res.micro.extend(micro::store(
        &work.join("micro-store"),
        &tw.record(0),
        scale,
        "an empty directory",
        std::sync::Arc::clone(&tw.sealer),
    )?);
    for m in &res.micro {
        say(&format!("{:<75} {:>10.2} µs", m.name, m.micros));
    }
    res.elf = [
        ("libpam_twostep.so (twostep)".to_owned(), art.module.clone()),
        (
            "pam_google_authenticator.so".to_owned(),
            sys::pam_module_dir().join("pam_google_authenticator.so"),
        ),
        (
            "pam_oath.so".to_owned(),
            sys::pam_module_dir().join("pam_oath.so"),
        ),
    ]
    .into_iter()
    .map(|(name, path)| {
        let (bytes, relocations, needed) = sys::elf_facts(&path);
        Elf {
            name,
            bytes,
            relocations,
            needed,
        }
    })
    .collect();
    res.load_after = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned();
    res.elapsed_s = t0.elapsed().as_secs_f64();
    drop(client);
    drop(bus);
    Ok(res)
}

/// The PAM services of the second and third daemon of `--only fleet` (on their own buses).
pub const FLEET_SERVICES: [&str; 2] = ["tsb-twostep-b", "tsb-twostep-c"];

/// The database and the extra buses of `--only fleet`.
struct FleetDb {
    pg: crate::fleet::PgServer,
    extra: Vec<(Bus, BusClient)>,
}

/// What one size of `--only fleet` needs from [`run`].
struct FleetCtx<'a> {
    opts: &'a Options,
    size: u32,
    f: &'a FleetDb,
    tw: &'a TwostepState,
    art: &'a Artifacts,
    config: &'a Path,
    daemon_log: &'a Path,
    client: &'a BusClient,
    confdir: &'a Path,
    exe: &'a Path,
    bus: &'a Bus,
}

/// `--only fleet` at one size: pam_permit, twostep on files, on PostgreSQL with one daemon
/// and with three, right and wrong codes, forked logins with one worker and threads with
/// two (three with three daemons: one login in flight per daemon).
fn run_fleet(c: &FleetCtx<'_>) -> Result<Vec<LoginRun>, String> {
    let size = c.size;
    say(&format!("--- {size} users: loading PostgreSQL ---"));
    let t = Instant::now();
    c.f.pg.load(c.tw, size)?;
    say(&format!("loaded in {:.1} s", t.elapsed().as_secs_f64()));
    // One config per bus: the file store's, plus [store] on PostgreSQL.
    let base = std::fs::read_to_string(c.config).map_err(|e| e.to_string())?;
    let pg_config = |bus: &str, n: usize| -> Result<PathBuf, String> {
        // Why no login socket: the fleet tables compare stores, on the bus as before; three
        // daemons at once must not share one socket.
        let text = base.replace(&c.bus.address, bus).replace(
            &daemon::login_socket_line(c.config.with_file_name("state").as_path()),
            "login_socket = \"\"\n",
        ) + &c.f.pg.store_lines();
        let path = c.config.with_file_name(format!("twostep-pg-{n}.toml"));
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        Ok(path)
    };
    let mut configs = vec![(pg_config(&c.bus.address, 1)?, c.client)];
    for (i, (b, client)) in c.f.extra.iter().enumerate() {
        configs.push((pg_config(&b.address, i + 2)?, client));
    }
    let mut runs = Vec::new();
    let mut touched: HashMap<Module, Vec<u32>> = HashMap::new();
    for rep in 0..c.opts.reps {
        for (mode, workers) in [(Mode::Procs, 1usize), (Mode::Threads, 2)] {
            for right in [true, false] {
                for module in Module::FLEET {
                    // Why one key for both PostgreSQL variants: they share one database, so
                    // what one run touched must be reset before the other's.
                    let db = |m: Module| match m {
                        Module::TwostepPg3 => Module::TwostepPg,
                        other => other,
                    };
                    let dirty = touched.remove(&db(module)).unwrap_or_default();
                    match module {
                        Module::Twostep => c.tw.reset(&dirty)?,
                        Module::TwostepPg | Module::TwostepPg3 => c.f.pg.reset(c.tw, &dirty)?,
                        _ => {}
                    }
                    let daemons = match module {
                        Module::Twostep => vec![(
                            Twostepd::start(&c.art.twostepd, c.config, c.daemon_log, c.client)?,
                            c.client,
                        )],
                        Module::TwostepPg => vec![(
                            Twostepd::start(
                                &c.art.twostepd,
                                &configs[0].0,
                                c.daemon_log,
                                c.client,
                            )?,
                            c.client,
                        )],
                        Module::TwostepPg3 => configs
                            .iter()
                            .map(|(cfg, client)| {
                                Twostepd::start(&c.art.twostepd, cfg, c.daemon_log, client)
                                    .map(|d| (d, *client))
                            })
                            .collect::<Result<Vec<_>, _>>()?,
                        _ => Vec::new(),
                    };
                    let three = module == Module::TwostepPg3;
                    let spec = driver::Spec {
                        confdir: c.confdir.to_owned(),
                        service: module.service().into(),
                        users: size,
                        right,
                        mode,
                        workers: if three && mode == Mode::Threads {
                            3
                        } else {
                            workers
                        },
                        max_logins: c.opts.max_logins + c.opts.warmup,
                        seconds: c.opts.seconds,
                        min_logins: c.opts.min_logins,
                        warmup: c.opts.warmup,
                        period: PERIOD,
                        window: WINDOW,
                        wrong_budget: WRONG_BUDGET,
                        seed: seed(size, rep, right, mode, workers, module),
                        baseline: module == Module::Permit,
                        offset: 0,
                        as_user: false,
                        more_services: if three {
                            FLEET_SERVICES.iter().map(|s| (*s).to_owned()).collect()
                        } else {
                            Vec::new()
                        },
                    };
                    let mut out: driver::Outcome =
                        subprocess(c.exe, "login", &spec, c.opts.seconds + 120.0)?;
                    touched.insert(db(module), std::mem::take(&mut out.touched));
                    for (d, client) in daemons {
                        d.stop(client);
                    }
                    say(&progress(size, right, mode, spec.workers, module, &out));
                    runs.push(LoginRun {
                        size,
                        module,
                        right,
                        mode,
                        workers: spec.workers,
                        rep,
                        out,
                        daemon_hwm_kib: None,
                        daemon_rss_kib: None,
                        syslog: BTreeMap::new(),
                    });
                }
            }
        }
    }
    for (module, dirty) in touched {
        match module {
            Module::Twostep => c.tw.reset(&dirty)?,
            Module::TwostepPg | Module::TwostepPg3 => c.f.pg.reset(c.tw, &dirty)?,
            _ => {}
        }
    }
    Ok(runs)
}

/// The progress line of one login run.
fn progress(
    size: u32,
    right: bool,
    mode: Mode,
    workers: usize,
    module: Module,
    out: &driver::Outcome,
) -> String {
    format!(
        "{size:>6} users  {:<5} {:<7} K={workers} {:<22} n={:<5} p50={:>7.3} ms p99={:>7.3} ms {:>7.0}/s  unexpected={} ({})",
        if right { "right" } else { "wrong" },
        mode.as_str(),
        module.label(),
        out.logins,
        out.latency.p50,
        out.latency.p99,
        out.per_second,
        out.unexpected,
        out.stopped
    )
}

fn say(line: &str) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "twostep-bench: {line}");
}

fn seed(size: u32, rep: usize, right: bool, mode: Mode, workers: usize, module: Module) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in [
        u64::from(size),
        rep as u64,
        u64::from(right),
        mode as u64,
        workers as u64,
        module as u64,
    ] {
        h = (h ^ v).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn diff(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

fn sync() {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
}

/// Run `exe SUBCOMMAND SPEC_JSON` (a fresh process, single-threaded where it forks) and
/// parse its JSON stdout; killed after `timeout_s`.
fn subprocess<S: Serialize, T: DeserializeOwned>(
    exe: &Path,
    sub: &str,
    spec: &S,
    timeout_s: f64,
) -> Result<T, String> {
    let json = serde_json::to_string(spec).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.arg(sub)
        .arg(json)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    sys::die_with_parent(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| format!("{}: {e}", exe.display()))?;
    let deadline = Instant::now() + Duration::from_secs_f64(timeout_s);
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let text = reader.join().unwrap_or_default();
            if !status.success() {
                return Err(format!("twostep-bench {sub} failed ({status})"));
            }
            return serde_json::from_str(text.trim())
                .map_err(|e| format!("twostep-bench {sub}: {e}: {text}"));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "twostep-bench {sub} did not finish within {timeout_s} s"
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The PAM services, in a private copy of /etc/pam.d (Linux-PAM also reads `other` and
/// its includes for every transaction; they are there as on the machine).
fn write_services(
    confdir: &Path,
    module: &Path,
    bus: &str,
    socket: &Path,
    ga_plain: &Path,
    ga_hard: &Path,
    oath: &Path,
) -> Result<(), String> {
    std::fs::create_dir_all(confdir).map_err(|e| e.to_string())?;
    for entry in std::fs::read_dir("/etc/pam.d")
        .map_err(|e| e.to_string())?
        .flatten()
    {
        let path = entry.path();
        if path.is_file() {
            let _ = std::fs::copy(&path, confdir.join(entry.file_name()));
        }
    }
    let permit = "auth required pam_permit.so\n";
    let services = [
        (Module::Permit, String::new()),
        (
            Module::Twostep,
            format!(
                "auth required {} bus={bus} socket={}\n",
                module.display(),
                socket.display()
            ),
        ),
        (
            Module::TwostepBus,
            format!("auth required {} bus={bus} socket=none\n", module.display()),
        ),
        (
            Module::GaPlain,
            format!(
                "auth required pam_google_authenticator.so secret={}/${{USER}} user=root\n",
                ga_plain.display()
            ),
        ),
        (
            Module::GaHard,
            format!(
                "auth required pam_google_authenticator.so secret={}/${{USER}} user=root\n",
                ga_hard.display()
            ),
        ),
        (
            Module::Oath,
            format!(
                "auth required pam_oath.so usersfile={} window={WINDOW} digits=6\n",
                oath.display()
            ),
        ),
    ];
    for (m, line) in services {
        std::fs::write(confdir.join(m.service()), format!("{permit}{line}"))
            .map_err(|e| e.to_string())?;
    }
    // For the module load cost: on the account stack, loaded by pam_start but not called.
    for (service, line) in [
        (
            "tsb-load-twostep",
            format!("{} bus={bus}", module.display()),
        ),
        ("tsb-load-ga", "pam_google_authenticator.so".to_owned()),
        (
            "tsb-load-oath",
            format!("pam_oath.so usersfile={}", oath.display()),
        ),
    ] {
        std::fs::write(
            confdir.join(service),
            format!("{permit}account required {line}\n"),
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The benchmark computes every code itself; check a sample against oathtool once.
fn check_codes_against_oathtool() -> Result<usize, String> {
    let now = unix_now();
    let mut n = 0;
    for i in [0u32, 1, 99, 12_345, 99_999] {
        let secret = otp::secret_for(i);
        for t in [now, now + 30, 1_111_111_109] {
            let out = sys::sh(
                Command::new("oathtool")
                    .args(["--totp", "-b", "-N"])
                    .arg(format!("@{t}"))
                    .arg(otp::base32(&secret)),
            )?;
            let want = String::from_utf8_lossy(&otp::code(&secret, t / PERIOD)).into_owned();
            if out.trim() != want {
                return Err(format!(
                    "oathtool says {} for user {i} at {t}, the bench says {want}",
                    out.trim()
                ));
            }
            n += 1;
        }
    }
    Ok(n)
}

/// Enrol root for real with `twostepctl enroll --json` against a throw-away twostepd, and
/// check that the record it wrote has the fields, modes and file name of the records the
/// benchmark writes.
fn check_record_format(
    work: &Path,
    art: &Artifacts,
    bus: &Bus,
    client: &BusClient,
) -> Result<String, String> {
    let dir = work.join("enrol-check");
    let state = dir.join("state");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let config = dir.join("twostep.toml");
    std::fs::write(&config, daemon::config_text(&state, &bus.address, WINDOW))
        .map_err(|e| e.to_string())?;
    let d = Twostepd::start(&art.twostepd, &config, &dir.join("twostepd.log"), client)?;
    // Two runs, as twostepctl(1) says: `enroll --json` prints the pending key and ends,
    // `enroll --json --confirm` reads the code.
    let begun = Command::new(&art.twostepctl)
        .args(["--bus", &bus.address, "enroll", "--json"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("twostepctl: {e}"))?;
    let first = String::from_utf8_lossy(&begun.stdout).into_owned();
    let v: serde_json::Value = serde_json::from_str(&first)
        .map_err(|e| format!("twostepctl enroll --json: {e}: {first}"))?;
    let mut child = Command::new(&art.twostepctl)
        .args(["--bus", &bus.address, "enroll", "--json", "--confirm"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("twostepctl: {e}"))?;
    let secret_b32 = v["secret"]
        .as_str()
        .ok_or("no secret in twostepctl's output")?
        .to_owned();
    let secret = base32_decode(&secret_b32).ok_or("secret is not base32")?;
    let code = otp::code(&secret, unix_now() / PERIOD);
    {
        let mut stdin = child.stdin.take().ok_or("no stdin")?;
        stdin.write_all(&code).map_err(|e| e.to_string())?;
        stdin.write_all(b"\n").map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    d.stop(client);
    if !out.status.success() {
        return Err(format!(
            "twostepctl enroll failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let tw = TwostepState::new(&state, unix_now())?;
    let path = tw.path(0);
    let stored = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if stored
        .windows(secret_b32.len())
        .any(|w| w == secret_b32.as_bytes())
    {
        return Err("the daemon stored the TOTP secret in clear".into());
    }
    let real = twostepd::core::store::decode_with(&stored, 0, &tw.sealer)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let real = serde_json::to_value(real).map_err(|e| e.to_string())?;
    let mut ours = serde_json::to_value(tw.record(0)).map_err(|e| e.to_string())?;
    ours["user"] = serde_json::Value::from("root");
    ours["uid"] = serde_json::Value::from(0);
    let shape = |v: &serde_json::Value| -> Vec<String> {
        let mut keys = Vec::new();
        if let Some(o) = v.as_object() {
            for (k, val) in o {
                keys.push(k.clone());
                if let Some(inner) = val.as_object() {
                    keys.extend(inner.keys().map(|ik| format!("{k}.{ik}")));
                }
                // A list of objects (the authenticators): the fields of its first entry. Not
                // for events: which fields an event has depends on its kind.
                if let Some(inner) = val
                    .get(0)
                    .and_then(serde_json::Value::as_object)
                    .filter(|_| k != "events")
                {
                    keys.extend(inner.keys().map(|ik| format!("{k}[].{ik}")));
                }
            }
        }
        keys.sort();
        keys
    };
    if shape(&real) != shape(&ours) {
        return Err(format!(
            "the daemon's record format changed; update bench/src/users.rs.\n real: {:?}\n ours: {:?}",
            shape(&real),
            shape(&ours)
        ));
    }
    if real["authenticators"][0]["key"]["secret"].as_str() != Some(secret_b32.as_str()) {
        return Err("the daemon's sealed TOTP secret does not open to the enrolled one; update bench/src/users.rs".into());
    }
    let mode = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    };
    let (file_mode, dir_mode) = (mode(&path), mode(&state.join("users")));
    if file_mode != 0o600 || dir_mode != 0o700 {
        return Err(format!(
            "unexpected modes: record {file_mode:o}, users/ {dir_mode:o}"
        ));
    }
    Ok(format!(
        "a real `twostepctl enroll` wrote users/{} (0600, dir 0700) with the same fields as the bench's records",
        path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()
    ))
}

fn base32_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u64, 0u32);
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        buffer = (buffer << 5) | u64::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

fn date() -> String {
    sys::sh(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn commit(repo: &Path) -> String {
    let head =
        sys::sh(
            Command::new("git")
                .arg("-C")
                .arg(repo)
                .args(["rev-parse", "--short", "HEAD"]),
        )
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    let dirty = sys::sh(Command::new("git").arg("-C").arg(repo).args([
        "status",
        "--porcelain",
        "--untracked-files=no",
    ]))
    .map(|s| !s.trim().is_empty())
    .unwrap_or(false);
    if dirty {
        format!("{head} + uncommitted changes")
    } else {
        head
    }
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let kernel = sys::sh(Command::new("uname").arg("-r"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map_or(0, |k| k / 1024 / 1024);
    format!("{cpus} vCPU ({model}), {mem} GiB, Linux {kernel}")
}

/// `twostep-bench serve`: a private bus and twostepd with `size` enrolled users, kept until
/// stdin closes; prints the bus address and the daemon's pid. For profiling the daemon by
/// hand (strace, perf) while `twostep-bench verify SPEC` drives it. Needs root for nothing
/// but the ownership check of the state directory.
///
/// # Errors
/// A set-up step failed.
pub fn serve(repo: &Path, work: &Path, size: u32) -> Result<(), String> {
    let art = Artifacts::find(repo)?;
    let bus_dir = work.join("bus");
    std::fs::create_dir_all(&bus_dir).map_err(|e| e.to_string())?;
    let bus = Bus::start(&bus_dir, &art.policy)?;
    let client = BusClient::connect(&bus.address)?;
    let state_dir = work.join("state");
    let config = work.join("twostep.toml");
    std::fs::write(
        &config,
        daemon::config_text(&state_dir, &bus.address, WINDOW),
    )
    .map_err(|e| e.to_string())?;
    TwostepState::new(&state_dir, unix_now())?.write_all(size)?;
    let d = Twostepd::start(&art.twostepd, &config, &work.join("twostepd.log"), &client)?;
    println!("bus={} pid={}", bus.address, d.pid());
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    d.stop(&client);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_round_trip() {
        let s = otp::secret_for(5);
        assert_eq!(base32_decode(&otp::base32(&s)).unwrap(), s.to_vec());
    }
}
