// SPDX-License-Identifier: MIT OR Apache-2.0
//! Self-service: enrol, new phone, several authenticators, recovery codes, switch off,
//! status.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use twostep_proto::status_key as key;
use twostep_proto::{Error, PendingEnrollment, UserProxy};
use twostepd::core::{qr, totp};

use crate::clock::ClockView;
use crate::io::{
    explain, json_time, out_json, out_secret, out_secret_json, read_line, read_proof, when,
};
use zeroize::Zeroizing;

#[derive(Args)]
pub struct EnrollArgs {
    /// Machine-readable, in two runs that each print one JSON document: this run prints
    /// the new key (`secret`, `uri`, `algorithm`, `digits`, `period`, `expires`) and
    /// leaves it pending; a second run with --confirm reads the code from stdin and prints
    /// the result (with the recovery codes).
    #[arg(long)]
    json: bool,
    /// Confirm the key an earlier run left pending (`--json`, or a run that ended before
    /// its code): read the code from stdin (up to three lines) and activate it. Needs no
    /// current code: that was asked when the key was made.
    #[arg(long)]
    confirm: bool,
    /// Also write the QR code to this file: PNG or SVG, by extension.
    #[arg(long, value_name = "PATH")]
    qr_file: Option<PathBuf>,
    /// Do not draw the QR code in the terminal.
    #[arg(long)]
    no_qr: bool,
}

fn write_qr_file(path: &std::path::Path, uri: &str) -> Result<(), String> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let bytes = match ext.as_deref() {
        Some("png") => qr::png(uri)?,
        Some("svg") => qr::svg(uri)?.into_bytes(),
        _ => {
            return Err(format!(
                "{}: --qr-file must end in .png or .svg",
                path.display()
            ))
        }
    };
    // Why 0600: the picture holds the secret.
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(&bytes))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

pub async fn enroll(conn: &zbus::Connection, a: &EnrollArgs, reset: bool) -> Result<(), String> {
    let user = UserProxy::new(conn).await.map_err(explain)?;
    let again = if reset { "reset" } else { "enroll" };
    if a.confirm {
        return confirm_enrolment(&user, a, reset, None).await;
    }
    let proof = if reset {
        read_proof()?
    } else {
        zeroize::Zeroizing::new(String::new())
    };
    let pending = user
        .enroll_begin(proof.as_bytes())
        .await
        .map_err(|e| match Error::from(e) {
            Error::AlreadyEnrolled(_) => {
                "you already have an authenticator; to move to a new phone run `twostepctl reset`, \
                 to add another one run `twostepctl authenticator add NAME`"
                    .into()
            }
            other => explain(other),
        })?;
    show_pending(a, &pending, &format!("twostepctl {again} --confirm --json"))?;
    if a.json {
        return Ok(());
    }
    confirm_enrolment(&user, a, reset, Some(&pending)).await
}

/// Read the code of the pending key (up to three tries) and confirm it: the recovery
/// codes (new ones at a first enrolment) as `a` asks. `pending`: the key this run showed.
async fn confirm_enrolment(
    user: &UserProxy<'_>,
    a: &EnrollArgs,
    reset: bool,
    pending: Option<&PendingEnrollment>,
) -> Result<(), String> {
    let again = if reset { "reset" } else { "enroll" };
    let digits = pending.map_or_else(|| "6 to 8".to_owned(), |p| p.digits.to_string());
    let stays = pending.map_or_else(String::new, |p| format!(" until {}", when(p.expires_at)));
    for attempt in 1..=3 {
        let Some(code) = read_line(
            &format!("Enter the {digits}-digit code your app shows: "),
            !a.json,
        ) else {
            return Err(format!(
                "no code given; the new key stays pending{stays}: run `twostepctl {again} \
                 --confirm` to enter its code, or `twostepctl {again}` for a new key"
            ));
        };
        match user
            .enroll_confirm(code.as_bytes())
            .await
            .map_err(Error::from)
        {
            Ok(codes) => {
                show_codes(&Zeroizing::new(codes), a.json, reset);
                return Ok(());
            }
            Err(Error::WrongCode(_)) if attempt < 3 => {
                eprintln!("That code is not right (is the phone's clock correct?); try again.");
            }
            Err(Error::WrongCode(_)) => break,
            Err(e) => return Err(explain(e)),
        }
    }
    Err(format!(
        "three wrong codes; the key was not activated: run `twostepctl {again} --confirm` to \
         try again, or `twostepctl {again}` for a new key"
    ))
}

/// Show the pending key `p` as `a` asks: the one JSON document of a `--json` run (with
/// `next`: the command that confirms it), or QR code and key for people.
fn show_pending(a: &EnrollArgs, p: &PendingEnrollment, next: &str) -> Result<(), String> {
    let PendingEnrollment {
        secret_base32: secret,
        otpauth_uri: uri,
        algorithm,
        digits,
        period,
        expires_at: expires,
    } = p;
    if let Some(path) = &a.qr_file {
        write_qr_file(path, uri)?;
    }
    if a.json {
        let doc = serde_json::json!({
            "pending": true,
            "secret": secret, "uri": uri, "algorithm": algorithm,
            "digits": digits, "period": period, "expires": json_time(*expires),
            "qr_file": a.qr_file.as_ref().map(|p| p.display().to_string()),
            "next": next,
        });
        out_secret_json(doc);
    } else {
        outln!("Scan this QR code with your authenticator app:\n");
        if !a.no_qr {
            // Why pinned colours on a terminal: a light theme would otherwise show the code
            // inverted, which some authenticator apps cannot read.
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            let picture = Zeroizing::new(if color {
                qr::terminal_pinned(uri)?
            } else {
                qr::terminal(uri)?
            });
            out_secret(Zeroizing::new(format!("{}\n\n", picture.as_str())));
        }
        let grouped = Zeroizing::new(totp::group4(secret));
        out_secret(Zeroizing::new(format!(
            "Or type the key by hand:  {}\n  ({algorithm}, {digits} digits, every {period} s, time-based)\n  URI: {uri}\n\n",
            grouped.as_str()
        )));
        if let Some(path) = &a.qr_file {
            outln!("QR code also written to {}", path.display());
        }
    }
    crate::io::flush_output();
    Ok(())
}

/// `twostepctl authenticator …`: several named authenticators.
#[derive(Subcommand)]
pub enum AuthenticatorCommand {
    /// Add another authenticator (a second phone, a hardware OATH token, a password
    /// manager) beside yours: needs a current code of one you have or a recovery code, then
    /// its QR code and one code from it. A login accepts a code from any of them.
    Add {
        /// Its name (1 to 64 bytes, printable, unique among yours), e.g. "backup phone".
        name: String,
        #[command(flatten)]
        show: EnrollArgs,
    },
    /// List your authenticators: name, when added, when last used.
    List {
        /// Print one JSON document instead of text (times in RFC 3339, UTC).
        #[arg(long)]
        json: bool,
    },
    /// Remove an authenticator: needs a current code from ANOTHER of yours or a recovery
    /// code. Removing the last one switches 2FA off, as `disable` does (refused while 2FA
    /// is required for you).
    Remove {
        /// The name shown by `twostepctl authenticator list`.
        name: String,
    },
}

pub async fn authenticator(
    conn: &zbus::Connection,
    command: AuthenticatorCommand,
) -> Result<(), String> {
    let user = UserProxy::new(conn).await.map_err(explain)?;
    match command {
        AuthenticatorCommand::Add { name, show } => add_authenticator(&user, &name, &show).await,
        AuthenticatorCommand::List { json } => {
            let list = user.authenticator_list().await.map_err(explain)?;
            if json {
                let v: Vec<serde_json::Value> = list
                    .iter()
                    .map(|(name, added, used)| authenticator_json(name, *added, *used))
                    .collect();
                out_json(&serde_json::Value::Array(v));
            } else if list.is_empty() {
                outln!("No authenticator yet: run `twostepctl enroll`.");
            } else {
                outln!("{:<24} {:<23} {:<23}", "NAME", "ADDED", "LAST USED");
                for (name, added, used) in &list {
                    outln!("{:<24} {:<23} {:<23}", name, when(*added), when(*used));
                }
            }
            Ok(())
        }
        AuthenticatorCommand::Remove { name } => {
            let proof = read_line(
                "Current code from ANOTHER authenticator (or a recovery code): ",
                true,
            )
            .filter(|c| !c.is_empty())
            .ok_or_else(|| "no code given; nothing was changed".to_owned())?;
            user.authenticator_remove(&name, proof.as_bytes())
                .await
                .map_err(|e| match Error::from(e) {
                    Error::WrongCode(_) => "that is not a current code of another of your \
                                            authenticators nor an unused recovery code; nothing \
                                            was removed"
                        .to_owned(),
                    other => explain(other),
                })?;
            outln!("Authenticator {name:?} removed.");
            Ok(())
        }
    }
}

async fn add_authenticator(user: &UserProxy<'_>, name: &str, a: &EnrollArgs) -> Result<(), String> {
    if a.confirm {
        return confirm_authenticator(user, name, a, None).await;
    }
    let proof = read_proof()?;
    let pending = user
        .authenticator_add(name, proof.as_bytes())
        .await
        .map_err(explain)?;
    let next = format!(
        "twostepctl authenticator add {} --confirm --json",
        twostepd::core::audit::field(name)
    );
    show_pending(a, &pending, &next)?;
    if a.json {
        return Ok(());
    }
    confirm_authenticator(user, name, a, Some(&pending)).await
}

/// Read the code of the pending authenticator `name` (up to three tries) and confirm it.
async fn confirm_authenticator(
    user: &UserProxy<'_>,
    name: &str,
    a: &EnrollArgs,
    pending: Option<&PendingEnrollment>,
) -> Result<(), String> {
    let digits = pending.map_or_else(|| "6 to 8".to_owned(), |p| p.digits.to_string());
    let stays = pending.map_or_else(String::new, |p| format!(" until {}", when(p.expires_at)));
    for attempt in 1..=3 {
        let Some(code) = read_line(
            &format!("Enter the {digits}-digit code the new authenticator shows: "),
            !a.json,
        ) else {
            return Err(format!(
                "no code given; the new key stays pending{stays}: run `twostepctl \
                 authenticator add NAME --confirm` to enter its code"
            ));
        };
        match user
            .authenticator_confirm(name, code.as_bytes())
            .await
            .map_err(Error::from)
        {
            Ok(()) => {
                if a.json {
                    out_json(&serde_json::json!({ "active": true, "name": name }));
                } else {
                    outln!("Authenticator {name:?} is active: a login accepts its codes too.");
                }
                return Ok(());
            }
            Err(Error::WrongCode(_)) if attempt < 3 => {
                eprintln!("That code is not right (is the device's clock correct?); try again.");
            }
            Err(Error::WrongCode(_)) => break,
            Err(e) => return Err(explain(e)),
        }
    }
    Err(
        "three wrong codes; the key was not activated: run `twostepctl authenticator add NAME \
         --confirm` to try again"
            .into(),
    )
}

fn show_codes(codes: &[String], json: bool, reset: bool) {
    if json {
        out_secret_json(serde_json::json!({ "active": true, "recovery_codes": codes }));
        return;
    }
    outln!(
        "{}",
        if reset {
            "Your new authenticator is active; the old one no longer works."
        } else {
            "Your authenticator is active: logins now ask for its code."
        }
    );
    if !codes.is_empty() {
        print_recovery(codes);
    }
}

fn print_recovery(codes: &[String]) {
    outln!(
        "\nRecovery codes — each logs you in once if you lose your phone.\n\
         They are shown only now: write them down or store them safely.\n"
    );
    for c in codes {
        out_secret(Zeroizing::new(format!("    {c}\n")));
    }
    outln!();
}

pub async fn recovery_codes(
    conn: &zbus::Connection,
    count: bool,
    json: bool,
) -> Result<(), String> {
    let user = UserProxy::new(conn).await.map_err(explain)?;
    if count {
        let props = user.status().await.map_err(explain)?;
        let left = props
            .get(key::RECOVERY_CODES_LEFT)
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0);
        if json {
            out_json(&serde_json::json!({ key::RECOVERY_CODES_LEFT: left }));
        } else {
            outln!("{left} recovery codes left.");
        }
        return Ok(());
    }
    let proof = read_proof()?;
    let codes = Zeroizing::new(
        user.regenerate_recovery_codes(proof.as_bytes())
            .await
            .map_err(explain)?,
    );
    if json {
        out_secret_json(serde_json::json!({ "recovery_codes": *codes }));
    } else {
        outln!("New recovery codes; the old ones no longer work.");
        print_recovery(&codes);
    }
    Ok(())
}

pub async fn disable(conn: &zbus::Connection) -> Result<(), String> {
    let user = UserProxy::new(conn).await.map_err(explain)?;
    let proof = read_proof()?;
    user.disable(proof.as_bytes()).await.map_err(explain)?;
    outln!("Two-factor authentication is off for your account.");
    Ok(())
}

pub async fn status(conn: &zbus::Connection, json: bool) -> Result<(), String> {
    let user = UserProxy::new(conn).await.map_err(explain)?;
    let props = user.status().await.map_err(explain)?;
    let b = |k: &str| {
        props
            .get(k)
            .and_then(|v| bool::try_from(v).ok())
            .unwrap_or(false)
    };
    let t = |k: &str| {
        props
            .get(k)
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0)
    };
    let n = |k: &str| {
        props
            .get(k)
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0)
    };
    let text = |k: &str| {
        props
            .get(k)
            .and_then(|v| <&str>::try_from(&**v).ok())
            .unwrap_or_default()
            .to_owned()
    };
    if json {
        let v = serde_json::json!({
            (key::ENROLLED): b(key::ENROLLED),
            (key::PENDING_ENROLLMENT): b(key::PENDING_ENROLLMENT),
            (key::RECOVERY_CODES_LEFT): n(key::RECOVERY_CODES_LEFT),
            (key::REQUIRED): b(key::REQUIRED),
            (key::MAY_TOGGLE): b(key::MAY_TOGGLE),
            (key::FAILURES): n(key::FAILURES),
            (key::LOCKED_UNTIL): json_time(t(key::LOCKED_UNTIL)),
            (key::LAST_SUCCESS): json_time(t(key::LAST_SUCCESS)),
            (key::LAST_FAILURE): json_time(t(key::LAST_FAILURE)),
            (key::AUTHENTICATORS): authenticators(&props).iter().map(|(name, added, used)| {
                authenticator_json(name, *added, *used)
            }).collect::<Vec<_>>(),
            (key::EMAIL): text(key::EMAIL),
            (key::EMAIL_PENDING): text(key::EMAIL_PENDING),
        });
        let mut v = v;
        if let Some(o) = v.as_object_mut() {
            o.extend(ClockView::from_props(&props).json_pairs());
            o.insert(
                key::APP_PASSWORD_FAILURES.into(),
                n(key::APP_PASSWORD_FAILURES).into(),
            );
            o.insert(
                key::APP_PASSWORD_LOCKED_UNTIL.into(),
                json_time(t(key::APP_PASSWORD_LOCKED_UNTIL)),
            );
        }
        out_json(&v);
        return Ok(());
    }
    let app = if !authenticators(&props).is_empty() {
        "active"
    } else if b(key::PENDING_ENROLLMENT) {
        "waiting for its first code (run `twostepctl enroll` again)"
    } else {
        "not set up (run `twostepctl enroll`)"
    };
    outln!("Authenticator app:    {app}");
    for (name, added, used) in authenticators(&props) {
        outln!("  {name}: added {}, last used {}", when(added), when(used));
    }
    let (email, pending) = (text(key::EMAIL), text(key::EMAIL_PENDING));
    match (email.is_empty(), pending.is_empty()) {
        (true, true) => {}
        (false, _) => outln!("Codes by email:       {email}"),
        (true, false) => {
            outln!(
                "Codes by email:       {pending} (waiting for its code: twostepctl email confirm)"
            )
        }
    }
    outln!("Recovery codes left:  {}", n(key::RECOVERY_CODES_LEFT));
    outln!(
        "Required by policy:   {}",
        if b(key::REQUIRED) { "yes" } else { "no" }
    );
    outln!(
        "You may switch it off: {}",
        if b(key::MAY_TOGGLE) { "yes" } else { "no" }
    );
    outln!("Failed attempts:      {}", n(key::FAILURES));
    let locked = t(key::LOCKED_UNTIL);
    if locked == 0 {
        outln!("Locked:               no");
    } else {
        // Why the whole story here: sudo shows every refusal as "Sorry, try again." (it
        // passes PAM_SILENT), so this is where a locked user learns why (docs/sudo.md).
        let failures = n(key::FAILURES);
        outln!(
            "Locked:               {} — after {failures} failed attempt{}, the last at {}.\n\
             {:22}Every login that asks for the code (SSH, sudo, su, the console) is refused\n\
             {:22}until then; sudo shows it only as \"Sorry, try again.\". An administrator can\n\
             {:22}unlock you sooner: twostepctl user unlock {}",
            if locked == u64::MAX {
                "until an administrator unlocks".to_owned()
            } else {
                format!("until {}", when(locked))
            },
            if failures == 1 { "" } else { "s" },
            when(t(key::LAST_FAILURE)),
            "",
            "",
            "",
            crate::io::own_name(),
        );
    }
    outln!("Last success:         {}", when(t(key::LAST_SUCCESS)));
    outln!("Last failure:         {}", when(t(key::LAST_FAILURE)));
    let pw_locked = t(key::APP_PASSWORD_LOCKED_UNTIL);
    if pw_locked != 0 {
        outln!(
            "App passwords:        locked until {} after {} wrong ones (your codes still \
             work)",
            when(pw_locked),
            n(key::APP_PASSWORD_FAILURES)
        );
    }
    for line in ClockView::from_props(&props).lines("your") {
        outln!("Clock:                {line}");
    }
    Ok(())
}

/// One authenticator for `--json`: name, and RFC 3339 times (`last_used` null: never).
fn authenticator_json(name: &str, added: u64, used: u64) -> serde_json::Value {
    serde_json::json!({ "name": name, "added": json_time(added), "last_used": json_time(used) })
}

/// The `authenticators` entry of a status dict: (name, added, last used).
fn authenticators(props: &twostep_proto::Properties) -> Vec<(String, u64, u64)> {
    props
        .get(key::AUTHENTICATORS)
        .and_then(|v| Vec::<(String, u64, u64)>::try_from(v.clone()).ok())
        .unwrap_or_default()
}
