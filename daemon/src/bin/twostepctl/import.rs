// SPDX-License-Identifier: MIT OR Apache-2.0
//! `twostepctl admin import`: carry enrolments over from libpam-google-authenticator and
//! pam_oath. This reads and parses the files (as root: the files are the users'); the
//! daemon authorizes the caller, checks every key again and writes each user's record in
//! one transaction (`Admin1.ImportEnrolment`). The original files are only read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use twostep_proto::import_key as key;
use twostep_proto::{AdminProxy, Error, ImportKey, Properties};
use zbus::zvariant::OwnedValue;

use twostepd::core::import::Imported;
use twostepd::import::file::{read_checked, Expect, Open};
use twostepd::import::{google_authenticator as ga, oath, Skip};

use crate::io::explain;

/// `twostepctl admin import …` from other 2FA modules (beside `admin import twostep`,
/// fleet.rs). A user who already has an authenticator in twostep is skipped (unless
/// --replace); the old files are only read; a summary ends the output (exit 1 when
/// anything found was not imported for a reason other than being enrolled already).
#[derive(Subcommand)]
pub enum ImportFrom {
    /// libpam-google-authenticator: every user's ~/.google_authenticator (home
    /// directories from NSS), or the files given. Time-based keys with their used steps
    /// (replay protection) and scratch codes (as recovery codes); counter-based (HOTP)
    /// files are reported and skipped.
    GoogleAuthenticator {
        /// Files to import (default: every user's ~/.google_authenticator).
        paths: Vec<PathBuf>,
        /// Whose file PATH is, when it is not in a user's home directory (one path); without
        /// a PATH, that user's ~/.google_authenticator.
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        #[command(flatten)]
        how: How,
    },
    /// pam_oath: a usersfile (e.g. /etc/users.oath; owned by root, mode 0600 or less).
    /// Time-based tokens with their last used step; users with a counter-based (HOTP) or
    /// malformed line are reported and skipped.
    Oath {
        file: PathBuf,
        #[command(flatten)]
        how: How,
    },
}

#[derive(Args, Clone, Copy)]
pub struct How {
    /// Check everything and print, per user, what would happen; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Replace the twostep enrolment of users who have one (replay marks never go back;
    /// spent codes stay spent).
    #[arg(long)]
    replace: bool,
}

/// What became of one user's enrolment.
enum Result1 {
    /// An outcome of [`key::OUTCOMES`].
    Done(&'static str),
    /// Skipped: the kind (for the summary) and the reason.
    Skipped(String, String),
}

/// Every result, for the summary.
#[derive(Default)]
struct Tally {
    done: BTreeMap<&'static str, usize>,
    skipped: BTreeMap<String, usize>,
}

impl Tally {
    fn add(&mut self, user: &str, r: Result1) {
        match r {
            Result1::Done(outcome) => *self.done.entry(outcome).or_default() += 1,
            Result1::Skipped(kind, reason) => {
                outln!("{user}: skipped, {kind}: {reason}");
                *self.skipped.entry(kind).or_default() += 1;
            }
        }
    }

    /// Print the summary; an error when anything was skipped for a reason other than
    /// being enrolled already.
    fn finish(self) -> Result<(), String> {
        let done: Vec<String> = key::OUTCOMES
            .iter()
            .filter_map(|o| self.done.get(o).map(|n| format!("{n} {o}")))
            .collect();
        let skipped: usize = self.skipped.values().sum();
        let why: Vec<String> = self
            .skipped
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        outln!(
            "Summary: {}; {skipped} skipped{}.",
            if done.is_empty() {
                "nothing imported".to_owned()
            } else {
                done.join(", ")
            },
            if why.is_empty() {
                String::new()
            } else {
                format!(" ({})", why.join(", "))
            }
        );
        let failed: usize = self
            .skipped
            .iter()
            .filter(|(k, _)| k.as_str() != ALREADY)
            .map(|(_, n)| n)
            .sum();
        if failed > 0 {
            return Err(format!("{failed} enrolment(s) not imported; see above"));
        }
        Ok(())
    }
}

/// The skip kind of a user who already has an authenticator.
const ALREADY: &str = "already enrolled";

pub async fn run(conn: &zbus::Connection, from: ImportFrom) -> Result<(), String> {
    let admin = AdminProxy::new(conn).await.map_err(explain)?;
    match from {
        ImportFrom::GoogleAuthenticator { paths, user, how } => {
            google_authenticator(&admin, paths, user, how).await
        }
        ImportFrom::Oath { file, how } => oath_file(&admin, &file, how).await,
    }
}

/// An account from the user database.
struct Passwd {
    name: String,
    uid: u32,
    home: PathBuf,
}

/// Every account NSS lists (`getent passwd`: the user database as NSS sees it, LDAP and
/// SSSD included where they enumerate).
fn accounts() -> Result<Vec<Passwd>, String> {
    let out = std::process::Command::new("getent")
        .arg("passwd")
        .output()
        .map_err(|e| format!("cannot run getent passwd: {e}"))?;
    if !out.status.success() {
        return Err(format!("getent passwd failed ({})", out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            Some(Passwd {
                name: (*f.first()?).to_owned(),
                uid: f.get(2)?.parse().ok()?,
                home: PathBuf::from(f.get(5)?),
            })
        })
        .collect())
}

/// The files to read: `(user, uid, path, given)`; `given`: named on the command line.
fn ga_files(
    paths: Vec<PathBuf>,
    user: Option<String>,
) -> Result<Vec<(String, u32, PathBuf, bool)>, String> {
    let all = accounts()?;
    if let Some(name) = user {
        let u = nix::unistd::User::from_name(&name)
            .map_err(|e| format!("user database look-up failed: {e}"))?
            .ok_or_else(|| format!("unknown user {name:?}"))?;
        let path = match <[PathBuf; 1]>::try_from(paths) {
            Ok([path]) => path,
            Err(none) if none.is_empty() => u.dir.join(".google_authenticator"),
            Err(_) => return Err("--user takes at most one PATH".to_owned()),
        };
        return Ok(vec![(name, u.uid.as_raw(), path, true)]);
    }
    if paths.is_empty() {
        let mut seen = std::collections::BTreeSet::new();
        return Ok(all
            .into_iter()
            .filter(|p| p.home.is_absolute())
            .map(|p| (p.name, p.uid, p.home.join(".google_authenticator"), false))
            .filter(|(_, uid, path, _)| seen.insert((*uid, path.clone())))
            .collect());
    }
    let mut out = Vec::new();
    for path in paths {
        let dir = path.parent().and_then(|d| d.canonicalize().ok());
        let owner = all
            .iter()
            .find(|p| dir.is_some() && p.home.canonicalize().ok() == dir);
        match owner {
            Some(p) => out.push((p.name.clone(), p.uid, path, true)),
            None => {
                return Err(format!(
                    "{}: not in a user's home directory; say whose it is with --user NAME",
                    path.display()
                ))
            }
        }
    }
    Ok(out)
}

async fn google_authenticator(
    admin: &AdminProxy<'_>,
    paths: Vec<PathBuf>,
    user: Option<String>,
    how: How,
) -> Result<(), String> {
    let mut tally = Tally::default();
    let mut found = 0usize;
    for (name, uid, path, given) in ga_files(paths, user)? {
        let expect = Expect {
            owner: uid,
            allowed_mode: 0o600,
            max_bytes: ga::MAX_FILE_BYTES,
        };
        let bytes = match read_checked(&path, expect) {
            Ok(b) => b,
            Err(Open::Missing) if !given => continue,
            Err(Open::Missing) => {
                found += 1;
                tally.add(
                    &name,
                    skipped(&Skip::Unreadable(format!(
                        "{}: no such file",
                        path.display()
                    ))),
                );
                continue;
            }
            Err(Open::Skipped(s)) => {
                found += 1;
                tally.add(&name, skipped(&with_path(&path, s)));
                continue;
            }
        };
        found += 1;
        let parsed = match ga::parse(&bytes) {
            Ok(f) => f,
            Err(s) => {
                tally.add(&name, skipped(&with_path(&path, s)));
                continue;
            }
        };
        let r = send(admin, &name, &parsed.to_imported(), how, |w, f| {
            parsed.notes(w, f)
        })
        .await?;
        tally.add(&name, r);
    }
    if found == 0 {
        outln!("No google-authenticator file found.");
    }
    tally.finish()
}

async fn oath_file(admin: &AdminProxy<'_>, file: &Path, how: How) -> Result<(), String> {
    let expect = Expect {
        owner: 0,
        allowed_mode: 0o600,
        max_bytes: oath::MAX_FILE_BYTES,
    };
    let bytes = match read_checked(file, expect) {
        Ok(b) => b,
        Err(Open::Missing) => return Err(format!("{}: no such file", file.display())),
        Err(Open::Skipped(s)) => return Err(format!("{}: not imported, {s}", file.display())),
    };
    let parsed =
        oath::parse(&bytes).map_err(|s| format!("{}: nothing imported, {s}", file.display()))?;
    let mut tally = Tally::default();
    for (name, tokens) in parsed.users {
        let tokens = match tokens {
            Ok(t) => t,
            Err(s) => {
                tally.add(&name, skipped(&s));
                continue;
            }
        };
        let imported = match oath::to_imported(&tokens, oath::local_to_epoch) {
            Ok(i) => i,
            Err(s) => {
                tally.add(&name, skipped(&s));
                continue;
            }
        };
        let r = send(admin, &name, &imported, how, |w, _| oath::notes(&tokens, w)).await?;
        tally.add(&name, r);
    }
    tally.finish()
}

fn with_path(path: &Path, s: Skip) -> Skip {
    let r = format!("{}: {}", path.display(), s.reason());
    match s {
        Skip::Malformed(_) => Skip::Malformed(r),
        Skip::Unsupported(_) => Skip::Unsupported(r),
        Skip::Unsafe(_) => Skip::Unsafe(r),
        Skip::Unreadable(_) => Skip::Unreadable(r),
    }
}

fn skipped(s: &Skip) -> Result1 {
    Result1::Skipped(s.kind().to_owned(), s.reason().to_owned())
}

/// Ask the daemon to import `imported` for `user`; print what it did and `notes(window,
/// max_failures)` with the daemon's own notes.
///
/// # Errors
/// The caller is not an admin (nothing else can be done); other refusals are a skip.
async fn send(
    admin: &AdminProxy<'_>,
    user: &str,
    imported: &Imported,
    how: How,
    notes: impl Fn(u64, u32) -> Vec<String>,
) -> Result<Result1, String> {
    let mut keys: Vec<ImportKey> = imported
        .keys
        .iter()
        .map(|k| ImportKey {
            name: k.name.clone(),
            secret: k.secret.to_vec(),
            algorithm: k.algorithm.as_str().to_owned(),
            digits: u32::from(k.digits),
            period: u32::try_from(k.period).unwrap_or(u32::MAX),
            has_last_step: k.last_step.is_some(),
            last_step: k.last_step.unwrap_or(0),
        })
        .collect();
    let codes: Vec<&str> = imported.codes.iter().map(|c| c.as_str()).collect();
    let reply = admin
        .import_enrolment(user, &keys, &codes, how.replace, how.dry_run)
        .await;
    // Why: the request held secrets; the copies are wiped as soon as it is sent.
    for k in &mut keys {
        zeroize::Zeroize::zeroize(&mut k.secret);
    }
    let props = match reply.map_err(Error::from) {
        Ok(p) => p,
        Err(e @ Error::AccessDenied(_)) => return Err(explain(e)),
        Err(e) => {
            let kind = match &e {
                Error::AlreadyEnrolled(_) => ALREADY,
                Error::UnknownUser(_) => "unknown user",
                Error::InvalidArgument(_) => "refused",
                _ => "failed",
            };
            let reason = match &e {
                Error::AlreadyEnrolled(_) => {
                    "has an authenticator in twostep (--replace overwrites it)".to_owned()
                }
                _ => explain(e),
            };
            return Ok(Result1::Skipped(kind.to_owned(), reason));
        }
    };
    let outcome = key::OUTCOMES
        .iter()
        .copied()
        .find(|o| text(&props, key::OUTCOME).as_deref() == Some(*o))
        .ok_or_else(|| "the daemon's reply has no known outcome".to_owned())?;
    let window = number::<u64>(&props, key::WINDOW);
    let max_failures = number::<u32>(&props, key::MAX_FAILURES);
    outln!(
        "{user}: {outcome} ({} authenticator(s), {} recovery code(s))",
        number::<u32>(&props, key::AUTHENTICATORS),
        number::<u32>(&props, key::RECOVERY_CODES)
    );
    let daemon_notes: Vec<String> = props
        .get(key::NOTES)
        .and_then(|v| Vec::<String>::try_from(v.clone()).ok())
        .unwrap_or_default();
    for note in notes(window, max_failures).iter().chain(&daemon_notes) {
        outln!("  note: {note}");
    }
    Ok(Result1::Done(outcome))
}

fn text(p: &Properties, k: &str) -> Option<String> {
    p.get(k).and_then(|v| String::try_from(v.clone()).ok())
}

fn number<T: TryFrom<OwnedValue> + Default>(p: &Properties, k: &str) -> T {
    p.get(k)
        .and_then(|v| v.try_clone().ok())
        .and_then(|v| T::try_from(v).ok())
        .unwrap_or_default()
}
