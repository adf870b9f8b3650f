// SPDX-License-Identifier: MIT OR Apache-2.0
//! twostepctl: enrol and inspect your second factor (and, for admins, manage users).
#![forbid(unsafe_code)]

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use twostep_proto::{Error, UserProxy};
use zbus::DBusError;

/// Manage your twostep second factor.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// D-Bus address of the daemon's bus (default: the system bus).
    #[arg(long, global = true, value_name = "ADDRESS")]
    bus: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Add an authenticator app to your account: shows the key, asks for one code.
    Enroll {
        /// Print the key as one line of JSON, then read the code from stdin.
        #[arg(long)]
        json: bool,
    },
    /// Show your second-factor state.
    Status {
        #[arg(long)]
        json: bool,
    },
}

/// Exit codes: 0 done, 1 refused or failed, 2 usage (clap).
fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start: {e}")),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => fail(&msg),
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("twostepctl: {msg}");
    ExitCode::FAILURE
}

async fn connect(bus: Option<&str>) -> Result<zbus::Connection, String> {
    let builder = match bus {
        None => zbus::connection::Builder::system(),
        Some(a) => zbus::connection::Builder::address(a),
    }
    .map_err(|e| format!("bad bus address: {e}"))?;
    builder
        .build()
        .await
        .map_err(|e| format!("cannot reach the bus ({e}); is dbus running?"))
}

/// The daemon's message for a refused call; the daemon's text is meant for people.
fn explain(e: zbus::Error) -> String {
    let e = Error::from(e);
    match &e {
        Error::ZBus(zbus::Error::MethodError(name, _, _))
            if name.as_str() == "org.freedesktop.DBus.Error.ServiceUnknown" =>
        {
            "twostepd is not running (nobody owns org.twostep.Twostep1 on this bus)".into()
        }
        Error::ZBus(inner) => format!("bus error: {inner}"),
        other => other
            .description()
            .map_or_else(|| other.name().to_string(), str::to_owned),
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let conn = connect(cli.bus.as_deref()).await?;
    let user = UserProxy::new(&conn).await.map_err(explain)?;
    match cli.command {
        Command::Enroll { json } => enroll(&user, json).await,
        Command::Status { json } => status(&user, json).await,
    }
}

fn group4(s: &str) -> String {
    s.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

async fn enroll(user: &UserProxy<'_>, json: bool) -> Result<(), String> {
    let (secret, uri, algorithm, digits, period, expires) =
        user.enroll_begin().await.map_err(explain)?;
    let mut out = std::io::stdout().lock();
    if json {
        let line = serde_json::json!({
            "secret": secret,
            "uri": uri,
            "algorithm": algorithm,
            "digits": digits,
            "period": period,
            "expires": expires,
        });
        let _ = writeln!(out, "{line}");
    } else {
        let _ = writeln!(
            out,
            "Add this account to your authenticator app.\n\n  Key:  {}\n  URI:  {uri}\n  ({algorithm}, {digits} digits, every {period} s, time-based)\n",
            group4(&secret)
        );
    }
    let _ = out.flush();
    drop(out);
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    let mut lines = stdin.lock().lines();
    for attempt in 1..=3 {
        if interactive || !json {
            eprint!("Enter the {digits}-digit code your app shows: ");
        }
        let Some(Ok(line)) = lines.next() else {
            return Err(
                "no code given; the enrolment stays pending for a few minutes: run `twostepctl enroll` again".into(),
            );
        };
        let code = zeroize::Zeroizing::new(line.trim().as_bytes().to_vec());
        match user.enroll_confirm(&code).await.map_err(Error::from) {
            Ok(()) => {
                eprintln!("Your authenticator is active: logins now ask for its code.");
                return Ok(());
            }
            Err(Error::WrongCode(_)) if attempt < 3 => {
                eprintln!("That code is not right (check the phone's clock); try again.");
            }
            Err(e) => return Err(explain_wire(e)),
        }
    }
    Err("three wrong codes: run `twostepctl enroll` again".into())
}

fn explain_wire(e: Error) -> String {
    match e {
        Error::ZBus(z) => explain(z),
        other => other
            .description()
            .map_or_else(|| other.name().to_string(), str::to_owned),
    }
}

async fn status(user: &UserProxy<'_>, json: bool) -> Result<(), String> {
    let props = user.status().await.map_err(explain)?;
    let get_b = |k: &str| {
        props
            .get(k)
            .and_then(|v| bool::try_from(v).ok())
            .unwrap_or(false)
    };
    let get_u = |k: &str| {
        props
            .get(k)
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0)
    };
    let failures = props
        .get("failures")
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(0);
    if json {
        let v = serde_json::json!({
            "enrolled": get_b("enrolled"),
            "pending_enrollment": get_b("pending_enrollment"),
            "failures": failures,
            "locked_until": get_u("locked_until"),
            "last_success": get_u("last_success"),
            "last_failure": get_u("last_failure"),
        });
        println!("{v}");
        return Ok(());
    }
    let when = |t: u64| match t {
        0 => "never".to_owned(),
        u64::MAX => "until an administrator unlocks".to_owned(),
        t => format!("{t} (unix time)"),
    };
    println!(
        "Authenticator app: {}",
        if get_b("enrolled") {
            "active"
        } else if get_b("pending_enrollment") {
            "waiting for confirmation"
        } else {
            "not set up (run `twostepctl enroll`)"
        }
    );
    println!("Failed attempts:   {failures}");
    let locked = get_u("locked_until");
    println!(
        "Locked:            {}",
        if locked == 0 {
            "no".into()
        } else {
            when(locked)
        }
    );
    println!("Last success:      {}", when(get_u("last_success")));
    println!("Last failure:      {}", when(get_u("last_failure")));
    Ok(())
}
