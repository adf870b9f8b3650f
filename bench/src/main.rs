// SPDX-License-Identifier: MIT OR Apache-2.0
//! `twostep-bench`: the login benchmarks. Run them with `./scripts/bench` (see BENCHMARKS.md);
//! the subcommands below are what that script and the orchestrator call.
//!
//! ```text
//! twostep-bench run [--quick] --work DIR --repo DIR [--write FILE] [--json FILE]
//!                   [--sizes 100,10000] [--reps N]     the whole benchmark (root, private mount namespace)
//!                   [--only twostep]                   pam_permit and twostep (login socket, bus) only:
//!                                                      progress lines, the socket-vs-bus table and
//!                                                      the daemon alone on both paths
//!                   [--only fleet]                     issue 15: the PostgreSQL store beside the file
//!                                                      store (1 and 3 daemons), into its own section
//!                   [--only callgrind]                 twostepd's instructions per login alone (login
//!                                                      socket), into its own section of the --write file
//!                   [--callgrind-bus]                  callgrind over the bus (socket=none) too: a
//!                                                      second set of rows (doubles callgrind's time)
//!                   [--only paired]                    wrong code against right code, paired and
//!                                                      interleaved (login socket), at every size:
//!                                                      progress lines and its table (stdout only)
//!                   [--only session-flood]             issue 19's session flood alone, into its own
//!                                                      section of the --write file
//! twostep-bench report RESULTS_JSON                    the tables again from a run's --json file
//!                                                      (target/bench/results.json), to stdout
//! twostep-bench micro                                  the verification-core microbenchmarks only
//! twostep-bench serve REPO WORK USERS                  a bus and twostepd with USERS enrolled, until
//!                                                      stdin closes (profile with `verify SPEC`)
//! twostep-bench login|verify|flood|session-flood|paired SPEC_JSON
//!                                                      one measurement (started by `run`)
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use serde::de::DeserializeOwned;
use serde::Serialize;
use twostep_bench::{driver, flood, micro, paired, report, run, session_flood, verify};

const USAGE: &str =
    "usage: twostep-bench run [--quick] [--only twostep|fleet|session-flood|callgrind|paired] [--callgrind-bus] --work DIR --repo DIR [--write FILE] \
                     [--json FILE] [--sizes N,N] [--reps N] | report RESULTS_JSON | micro | serve REPO WORK USERS \
                     | login|verify|flood|session-flood|paired SPEC_JSON";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => cmd_run(&args[1..]),
        Some("micro") => cmd_micro(),
        Some("report") => match args.get(1) {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("{path}: {e}"))
                .and_then(|text| {
                    serde_json::from_str::<run::Results>(&text).map_err(|e| format!("{path}: {e}"))
                })
                .map(|res| println!("{}", report::markdown(&res))),
            None => Err(USAGE.to_owned()),
        },
        Some("serve") => match (args.get(1), args.get(2), args.get(3)) {
            (Some(repo), Some(work), Some(users)) => users
                .parse()
                .map_err(|e| format!("users: {e}"))
                .and_then(|n| run::serve(repo.as_ref(), work.as_ref(), n)),
            _ => Err(USAGE.to_owned()),
        },
        Some("login") => one(&args, driver::run),
        Some("verify") => one(&args, verify::run),
        Some("flood") => one(&args, flood::run),
        Some("session-flood") => one(&args, session_flood::run),
        Some("paired") => one(&args, paired::run),
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("twostep-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A measurement subcommand: spec as JSON in, outcome as JSON out.
fn one<S: DeserializeOwned, T: Serialize>(
    args: &[String],
    f: impl Fn(&S) -> Result<T, String>,
) -> Result<(), String> {
    let spec = args.get(1).ok_or(USAGE)?;
    let spec: S = serde_json::from_str(spec).map_err(|e| format!("bad spec: {e}"))?;
    let out = f(&spec)?;
    println!(
        "{}",
        serde_json::to_string(&out).map_err(|e| e.to_string())?
    );
    Ok(())
}

fn cmd_micro() -> Result<(), String> {
    for m in micro::core(1)? {
        println!("{:<70} {:>10.2} µs  ({} calls)", m.name, m.micros, m.calls);
    }
    Ok(())
}

fn cmd_run(args: &[String]) -> Result<(), String> {
    let (mut quick, mut only, mut only_session_flood) = (false, false, false);
    let mut only_fleet = false;
    let mut only_callgrind = false;
    let mut only_paired = false;
    let mut callgrind_bus = false;
    let (mut work, mut repo, mut write, mut json) = (None, None, None, None);
    let (mut sizes, mut reps) = (None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--quick" => quick = true,
            "--callgrind-bus" => callgrind_bus = true,
            "--only" => match value()?.as_str() {
                "twostep" => only = true,
                "session-flood" => only_session_flood = true,
                "fleet" => only_fleet = true,
                "callgrind" => only_callgrind = true,
                "paired" => only_paired = true,
                _ => {
                    return Err(
                        "--only: `twostep`, `fleet`, `session-flood`, `callgrind` or `paired`"
                            .into(),
                    )
                }
            },
            "--work" => work = Some(PathBuf::from(value()?)),
            "--repo" => repo = Some(PathBuf::from(value()?)),
            "--write" => write = Some(PathBuf::from(value()?)),
            "--json" => json = Some(PathBuf::from(value()?)),
            "--sizes" => {
                let v: Result<Vec<u32>, _> = value()?.split(',').map(str::parse).collect();
                sizes = Some(v.map_err(|e| format!("--sizes: {e}"))?);
            }
            "--reps" => {
                reps = Some(
                    value()?
                        .parse::<usize>()
                        .map_err(|e| format!("--reps: {e}"))?,
                )
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    let work = work.ok_or("--work DIR is required")?;
    let repo = repo.ok_or("--repo DIR is required")?;
    let mut opts = if quick {
        run::Options::quick(repo, work)
    } else {
        run::Options::full(repo, work)
    };
    if let Some(s) = sizes {
        if s.is_empty() || s.contains(&0) {
            return Err("--sizes: positive numbers".into());
        }
        opts.sizes = s;
        opts.command.push_str(" --sizes ");
        opts.command.push_str(
            &opts
                .sizes
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    if let Some(r) = reps {
        opts.reps = r.max(1);
        opts.command.push_str(&format!(" --reps {}", opts.reps));
    }
    opts.only_twostep = only;
    opts.only_session_flood = only_session_flood;
    if only_session_flood {
        opts.command.push_str(" --only session-flood");
    }
    opts.only_fleet = only_fleet;
    if only_fleet {
        opts.command.push_str(" --only fleet");
    }
    opts.only_callgrind = only_callgrind;
    if only_callgrind {
        opts.command.push_str(" --only callgrind");
    }
    opts.only_paired = only_paired;
    if callgrind_bus {
        opts.callgrind_bus = true;
        opts.command.push_str(" --callgrind-bus");
    }
    if only_paired {
        opts.command.push_str(" --only paired");
    }
    let results = run::run(&opts)?;
    if only_fleet {
        let md = report::fleet_table(&results);
        println!("{md}");
        if let Some(path) = write {
            let doc = std::fs::read_to_string(&path).unwrap_or_default();
            let doc = report::splice_between(&doc, report::FLEET_BEGIN, report::FLEET_END, &md);
            std::fs::write(&path, doc).map_err(|e| format!("{}: {e}", path.display()))?;
            eprintln!("twostep-bench: fleet table written to {}", path.display());
        }
        return Ok(());
    }
    if only_session_flood {
        let md = report::session_flood_table(&results);
        println!("{md}");
        if let Some(path) = write {
            let doc = std::fs::read_to_string(&path).unwrap_or_default();
            let doc = report::splice_between(
                &doc,
                report::SESSION_FLOOD_BEGIN,
                report::SESSION_FLOOD_END,
                &md,
            );
            std::fs::write(&path, doc).map_err(|e| format!("{}: {e}", path.display()))?;
            eprintln!(
                "twostep-bench: session-flood table written to {}",
                path.display()
            );
        }
        return Ok(());
    }
    if only_callgrind {
        let md = report::callgrind_table(&results);
        println!("{md}");
        if let Some(path) = write {
            let doc = std::fs::read_to_string(&path).unwrap_or_default();
            let doc =
                report::splice_between(&doc, report::CALLGRIND_BEGIN, report::CALLGRIND_END, &md);
            std::fs::write(&path, doc).map_err(|e| format!("{}: {e}", path.display()))?;
            eprintln!(
                "twostep-bench: callgrind table written to {}",
                path.display()
            );
        }
        return Ok(());
    }
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if only_paired {
        // Its rows belong to the main generated section: printed, not spliced.
        println!("{}", report::paired_markdown(&results));
        return Ok(());
    }
    if only {
        // A partial run has no peers to compare with: the progress lines are the result,
        // with the login socket against the bus (both twostep services ran).
        println!("{}", report::transport_markdown(&results));
        return Ok(());
    }
    let md = report::markdown(&results);
    println!("{md}");
    if let Some(path) = write {
        let doc = std::fs::read_to_string(&path).unwrap_or_default();
        std::fs::write(&path, report::splice(&doc, &md))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("twostep-bench: tables written to {}", path.display());
    }
    Ok(())
}
