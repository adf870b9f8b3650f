// SPDX-License-Identifier: MIT OR Apache-2.0
//! twostepctl: set up and manage your second factor; admins manage users.
//!
//! Exit codes: 0 done, 1 refused or failed (the message says why), 2 usage error.
#![forbid(unsafe_code)]

#[macro_use]
mod io;
mod admin;
mod apppw;
mod clock;
mod doctor;
mod email;
mod fleet;
mod import;
mod user;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Manage twostep second factors.
#[derive(Parser)]
#[command(version, name = "twostepctl")]
pub struct Cli {
    /// D-Bus address of the daemon's bus (default: the system bus).
    #[arg(long, global = true, value_name = "ADDRESS")]
    bus: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Add an authenticator app to your account: QR code, key, one code to confirm,
    /// then your recovery codes (shown once).
    Enroll(user::EnrollArgs),
    /// Move to a new phone: needs a current code (or a recovery code), then the new QR
    /// code and one code from the new app. The old app works until then.
    Reset(user::EnrollArgs),
    /// Several named authenticators: add one beside yours, list them, remove one.
    #[command(subcommand)]
    Authenticator(user::AuthenticatorCommand),
    /// App passwords for programs that cannot ask for a code (mail, FTP, backup scripts):
    /// create (needs a code; shown once), list, revoke.
    #[command(subcommand)]
    AppPassword(apppw::Command),
    /// Make new recovery codes (the old ones stop working); needs a current code.
    /// With --count, only show how many are left.
    RecoveryCodes {
        /// Only show how many unused recovery codes are left (no code needed).
        #[arg(long)]
        count: bool,
        /// Print one JSON document instead of text (times in RFC 3339, UTC).
        #[arg(long)]
        json: bool,
    },
    /// Switch two-factor authentication off for your account; needs a current code.
    Disable,
    /// Show your second-factor state.
    Status {
        /// Print one JSON document instead of text (times in RFC 3339, UTC).
        #[arg(long)]
        json: bool,
    },
    /// Admin: manage users (root or the admin group).
    #[command(subcommand)]
    User(admin::UserCommand),
    /// Admin: list locked users.
    Locks {
        /// Print one JSON document instead of text (times in RFC 3339, UTC).
        #[arg(long)]
        json: bool,
    },
    /// Admin: make the daemon re-read its configuration (an invalid file is refused).
    Reload,
    /// Admin: move accounts between stores (export, import), change the store key, and
    /// carry enrolments over from other 2FA modules.
    #[command(subcommand)]
    Admin(fleet::AdminCommand),
    /// Codes by email (the weaker method): set, confirm or remove your address.
    #[command(subcommand)]
    Email(email::EmailCommand),
    /// Admin: the mailer.
    #[command(subcommand)]
    Mail(email::MailCommand),
    /// Check the PAM stacks, sshd's configuration and the daemon for every way the second
    /// factor can be skipped or never reached (reads only). Exit 1 when something is wrong.
    Doctor {
        /// Print one JSON document instead of text (times in RFC 3339, UTC).
        #[arg(long)]
        json: bool,
        /// The PAM configuration directory.
        #[arg(long, default_value = "/etc/pam.d", value_name = "DIR")]
        pam_dir: PathBuf,
        /// sshd's configuration file (default: sshd's own, /etc/ssh/sshd_config).
        #[arg(long, value_name = "FILE")]
        sshd_config: Option<PathBuf>,
        /// sudo's configuration file, read with its includes (default: /etc/sudoers,
        /// skipped when it cannot be read).
        #[arg(long, value_name = "FILE")]
        sudoers: Option<PathBuf>,
        /// twostepd's configuration file, for its per-service rules (skipped when absent).
        #[arg(long, default_value = twostep_config::DEFAULT_PATH, value_name = "FILE")]
        config: PathBuf,
    },
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the manual page (roff) to a directory.
    #[command(hide = true)]
    Manpage { dir: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        // Why into a buffer: clap_complete panics on a failed write.
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "twostepctl", &mut script);
        io::out_bytes(&script);
        return match io::finish_output() {
            Ok(()) => ExitCode::SUCCESS,
            Err(msg) => io::fail(&msg),
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return io::fail(&format!("cannot start: {e}")),
    };
    let result = runtime.block_on(run(cli));
    let output = io::finish_output();
    match result.and(output) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => io::fail(&msg),
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    if let Command::Manpage { dir } = &cli.command {
        return io::manpage(&Cli::command(), dir);
    }
    // Why before connecting: a daemon or bus that is down is one of doctor's findings.
    if let Command::Doctor {
        json,
        pam_dir,
        sshd_config,
        sudoers,
        config,
    } = &cli.command
    {
        return doctor::run(
            *json,
            pam_dir,
            sshd_config.as_deref(),
            sudoers.as_deref(),
            cli.bus.as_deref(),
            config,
        )
        .await;
    }
    let conn = io::connect(cli.bus.as_deref()).await?;
    match cli.command {
        Command::Enroll(a) => user::enroll(&conn, &a, false).await,
        Command::Reset(a) => user::enroll(&conn, &a, true).await,
        Command::Authenticator(c) => user::authenticator(&conn, c).await,
        Command::AppPassword(c) => apppw::run(&conn, c).await,
        Command::RecoveryCodes { count, json } => user::recovery_codes(&conn, count, json).await,
        Command::Disable => user::disable(&conn).await,
        Command::Status { json } => user::status(&conn, json).await,
        Command::User(c) => admin::run(&conn, c).await,
        Command::Locks { json } => admin::locks(&conn, json).await,
        Command::Reload => admin::reload(&conn).await,
        Command::Admin(c) => fleet::run(&conn, c).await,
        Command::Email(c) => email::email(&conn, c).await,
        Command::Mail(c) => email::mail(&conn, c).await,
        Command::Completions { .. } | Command::Manpage { .. } | Command::Doctor { .. } => Ok(()),
    }
}
