// SPDX-License-Identifier: MIT OR Apache-2.0
//! The benchmark's user population and every module's state for it: the same users with the
//! same secrets for twostep (records in the daemon's own format), google-authenticator (one
//! root-owned secret file per user, plain and hardened) and pam_oath (one usersfile), plus
//! the `/etc/passwd` that is bind-mounted inside the benchmark's private mount namespace.
//!
//! Every file is written from a pristine template; after a run, the files of the users that
//! run touched are written again, so each run starts from the same state.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use twostep_config::Algorithm;
use twostepd::core::audit::{EventKind, Source};
use twostepd::core::record::{Record, Secret, TotpKey, MAX_EVENTS};
use twostepd::core::recovery::{self, HashPool, StoredCode};
use twostepd::core::seal::Sealer;
use twostepd::core::store;
use twostepd::core::UnixTime;

use crate::otp;

/// First uid of the bench users (far from any real account).
pub const UID_BASE: u32 = 2_000_000;
/// Their primary group: Debian's `users`.
pub const GID: u32 = 100;

/// Login name of bench user `i`.
pub fn name(i: u32) -> String {
    format!("tsb{i:06}")
}

/// The `/etc/passwd` seen inside the namespace: the machine's own lines, then the bench users
/// appended (where `useradd` puts them, so a flat-file look-up scans past every other line).
///
/// # Errors
/// The file cannot be written.
pub fn write_passwd(path: &Path, original: &str, size: u32) -> Result<(), String> {
    let mut w = BufWriter::new(File::create(path).map_err(|e| format!("{}: {e}", path.display()))?);
    let mut write = || -> std::io::Result<()> {
        w.write_all(original.as_bytes())?;
        if !original.ends_with('\n') && !original.is_empty() {
            w.write_all(b"\n")?;
        }
        for i in 0..size {
            writeln!(
                w,
                "{}:x:{}:{GID}:twostep bench:/nonexistent:/usr/sbin/nologin",
                name(i),
                UID_BASE + i
            )?;
        }
        w.flush()
    };
    write().map_err(|e| format!("{}: {e}", path.display()))?;
    set_mode(path, 0o644)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

fn private_dir(path: &Path) -> Result<(), String> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| format!("mkdir {}: {e}", path.display()))?;
    set_mode(path, 0o700)
}

/// Write `bytes` to `path` (replacing it) with `mode`, without fsync: these are fixtures.
fn put(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let _ = fs::remove_file(path);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(bytes)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// twostep's records, in the daemon's own `Record` type and serialization.
pub struct TwostepState {
    users_dir: PathBuf,
    template: Record,
    /// Seals the records' secrets with the daemon's store key, as the daemon writes them.
    pub sealer: std::sync::Arc<Sealer>,
}

impl TwostepState {
    /// A store under `state_dir` whose records look like those of users who enrolled a while
    /// ago and have logged in since: a confirmed key, 10 recovery codes (argon2id at the
    /// daemon's cost; the same ten hashes for every user, computed once), the last accepted
    /// step and a full list of recent events.
    ///
    /// # Errors
    /// The hashes cannot be computed.
    pub fn new(state_dir: &Path, now: u64) -> Result<TwostepState, String> {
        let sealer = std::sync::Arc::new(Sealer::open(&crate::daemon::store_key_path(state_dir))?);
        let (_, stored): (_, Vec<StoredCode>) = recovery::generate(10, &HashPool::new(2))?;
        let mut template = Record::new("template");
        let key = TotpKey {
            secret: Secret(String::new()),
            algorithm: Algorithm::SHA1,
            digits: 6,
            period: 30,
            created: UnixTime(now.saturating_sub(90 * 86_400)),
        };
        template.replace_authenticators(key.clone(), now / 30 - 2880, key.created);
        template.recovery = stored;
        template.last_success = Some(UnixTime(now.saturating_sub(86_400)));
        // A full event list, as a user with a month of SSH logins has (sizes as stored).
        let from = Source {
            service: "sshd".into(),
            rhost: "192.0.2.10".into(),
            tty: "ssh".into(),
            method: "totp".into(),
            actor: "template".into(),
            actor_uid: Some(1000),
            caller_uid: None,
        };
        for k in 0..MAX_EVENTS as u64 {
            template.note(
                UnixTime(now.saturating_sub(86_400 * (30 - k))),
                EventKind::Success,
                "second factor accepted",
                &from,
            );
        }
        Ok(TwostepState {
            users_dir: state_dir.join("users"),
            template,
            sealer,
        })
    }

    /// The record of user `i`.
    pub fn record(&self, i: u32) -> Record {
        let mut r = self.template.clone();
        r.user = name(i);
        r.uid = Some(UID_BASE + i);
        for a in &mut r.authenticators {
            a.key.secret = Secret(otp::base32(&otp::secret_for(i)));
        }
        r
    }

    /// The file of account `uid`, named as the daemon's store names it.
    pub fn path(&self, uid: u32) -> PathBuf {
        self.users_dir.join(store::file_name(uid))
    }

    fn write_one(&self, i: u32) -> Result<(), String> {
        let bytes = store::file_bytes_sealed(&self.record(i), &self.sealer)?;
        put(&self.path(UID_BASE + i), &bytes, 0o600)
    }

    /// Write records `0..size` (the state directory and `users/` 0700) and the enrolment
    /// list naming them, as enrolments through the daemon leave a state directory.
    ///
    /// # Errors
    /// A file cannot be written.
    pub fn write_all(&self, size: u32) -> Result<(), String> {
        let Some(state) = self.users_dir.parent() else {
            return Err("the records directory has no parent".into());
        };
        private_dir(state)?;
        private_dir(&self.users_dir)?;
        (0..size).try_for_each(|i| self.write_one(i))?;
        put(
            &state.join(store::ENROLLED_FILE),
            &store::enrolled_file_bytes((0..size).map(|i| UID_BASE + i)),
            0o600,
        )
    }

    /// Write the records of `touched` again.
    ///
    /// # Errors
    /// A file cannot be written.
    pub fn reset(&self, touched: &[u32]) -> Result<(), String> {
        touched.iter().try_for_each(|&i| self.write_one(i))
    }
}

/// google-authenticator secret files, `secret=DIR/${USER} user=root`.
pub struct GoogleState {
    pub dir: PathBuf,
    pub hardened: bool,
}

impl GoogleState {
    /// The file `google-authenticator -t` writes: the secret, the options, five scratch codes.
    /// Hardened: `-d -r 10 -R 30` (DISALLOW_REUSE, RATE_LIMIT 10 attempts per 30 s).
    pub fn contents(&self, i: u32) -> String {
        let mut s = otp::base32(&otp::secret_for(i));
        s.push('\n');
        if self.hardened {
            s.push_str("\" RATE_LIMIT 10 30\n");
        }
        s.push_str("\" WINDOW_SIZE 3\n");
        if self.hardened {
            s.push_str("\" DISALLOW_REUSE\n");
        }
        s.push_str("\" TOTP_AUTH\n");
        for k in 0..5u32 {
            let scratch =
                10_000_000 + (otp::hotp(&otp::secret_for(i), 1_000 + u64::from(k)) % 90_000_000);
            s.push_str(&format!("{scratch}\n"));
        }
        s
    }

    fn write_one(&self, i: u32) -> Result<(), String> {
        put(&self.dir.join(name(i)), self.contents(i).as_bytes(), 0o400)
    }

    /// # Errors
    /// A file cannot be written.
    pub fn write_all(&self, size: u32) -> Result<(), String> {
        private_dir(&self.dir)?;
        (0..size).try_for_each(|i| self.write_one(i))
    }

    /// # Errors
    /// A file cannot be written.
    pub fn reset(&self, touched: &[u32]) -> Result<(), String> {
        touched.iter().try_for_each(|&i| self.write_one(i))
    }
}

/// pam_oath's usersfile: one line per user, `HOTP/T30/6 user - hexsecret`.
pub struct OathState {
    pub file: PathBuf,
}

impl OathState {
    /// # Errors
    /// The file cannot be written.
    pub fn write_all(&self, size: u32) -> Result<(), String> {
        if let Some(dir) = self.file.parent() {
            private_dir(dir)?;
        }
        let mut text = String::with_capacity(size as usize * 64);
        for i in 0..size {
            text.push_str(&format!(
                "HOTP/T30/6\t{}\t-\t{}\n",
                name(i),
                hex::encode(otp::secret_for(i))
            ));
        }
        put(&self.file, text.as_bytes(), 0o600)
    }

    /// The whole file is pam_oath's state; write it again if anyone was touched.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn reset(&self, touched: &[u32], size: u32) -> Result<(), String> {
        if touched.is_empty() {
            return Ok(());
        }
        self.write_all(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_google_files() {
        assert_eq!(name(7), "tsb000007");
        let g = GoogleState {
            dir: PathBuf::from("/nonexistent"),
            hardened: true,
        };
        let c = g.contents(3);
        let lines: Vec<&str> = c.lines().collect();
        assert_eq!(lines[0].len(), 32);
        assert!(c.contains("\" DISALLOW_REUSE\n") && c.contains("\" RATE_LIMIT 10 30\n"));
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.len() == 8 && l.bytes().all(|b| b.is_ascii_digit()))
                .count(),
            5
        );
    }
}
