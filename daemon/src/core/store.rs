// SPDX-License-Identifier: MIT OR Apache-2.0
//! The embedded store: one JSON record per user under `state_dir/users/`.
//!
//! File names are the hex encoding of the user name, never the raw name. Every write is
//! atomic and durable before it returns: write a temporary file, fsync it, rename it over
//! the record, fsync the directory. A record that cannot be read or parsed is reported as
//! corrupt for that user only, and is never overwritten by the daemon.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::record::{Record, RECORD_VERSION};
use super::Error;

/// Records bigger than this are corrupt by definition (a record is well under 4 KiB).
const MAX_RECORD_BYTES: u64 = 256 * 1024;

pub struct Store {
    users: PathBuf,
}

impl Store {
    /// Open (and create) the store under `state_dir`: the directory and `users/` are made
    /// 0700. A directory owned by another uid is refused.
    ///
    /// # Errors
    /// A message for the operator when the directory cannot be created or is not ours.
    pub fn open(state_dir: &Path) -> Result<Store, String> {
        let users = state_dir.join("users");
        for dir in [state_dir, users.as_path()] {
            match DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
            }
            let meta = fs::symlink_metadata(dir)
                .map_err(|e| format!("cannot inspect {}: {e}", dir.display()))?;
            if !meta.is_dir() {
                return Err(format!("{} is not a directory", dir.display()));
            }
            if meta.uid() != nix::unistd::geteuid().as_raw() {
                return Err(format!(
                    "{} is owned by uid {}, not by this daemon",
                    dir.display(),
                    meta.uid()
                ));
            }
            if meta.mode() & 0o077 != 0 {
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                    .map_err(|e| format!("cannot make {} private: {e}", dir.display()))?;
            }
        }
        Ok(Store { users })
    }

    fn path_for(&self, user: &str) -> PathBuf {
        self.users
            .join(format!("{}.json", hex::encode(user.as_bytes())))
    }

    /// The user's record, `None` if the user has none.
    ///
    /// # Errors
    /// [`Error::CorruptRecord`] when the file exists but cannot be read or parsed.
    pub fn load(&self, user: &str) -> Result<Option<Record>, Error> {
        let corrupt = |reason: String| Error::CorruptRecord {
            user: user.to_owned(),
            reason,
        };
        let path = self.path_for(user);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(corrupt(e.to_string())),
        };
        let mut bytes = Vec::with_capacity(4096);
        file.take(MAX_RECORD_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| corrupt(e.to_string()))?;
        if bytes.len() as u64 > MAX_RECORD_BYTES {
            return Err(corrupt("record too large".into()));
        }
        let record: Record =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("invalid record: {e}")))?;
        if record.version != RECORD_VERSION {
            return Err(corrupt(format!(
                "unknown record version {}",
                record.version
            )));
        }
        if record.user != user {
            return Err(corrupt("record belongs to another user".into()));
        }
        Ok(Some(record))
    }

    /// Replace the user's record atomically and durably.
    ///
    /// # Errors
    /// [`Error::Storage`] when any step fails; the old record is then left as it was.
    pub fn save(&self, record: &Record) -> Result<(), Error> {
        let user = record.user.as_str();
        let fail = |what: &str, e: std::io::Error| Error::Storage {
            user: user.to_owned(),
            reason: format!("{what}: {e}"),
        };
        let path = self.path_for(user);
        let tmp = self.users.join(format!(
            ".{}.{}.tmp",
            hex::encode(user.as_bytes()),
            random_suffix()
        ));
        let bytes = serde_json::to_vec(record).map_err(|e| Error::Storage {
            user: user.to_owned(),
            reason: e.to_string(),
        })?;
        let written = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| fail("create", e))?;
            f.write_all(&bytes).map_err(|e| fail("write", e))?;
            f.sync_all().map_err(|e| fail("fsync", e))?;
            fs::rename(&tmp, &path).map_err(|e| fail("rename", e))
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        File::open(&self.users)
            .and_then(|d| d.sync_all())
            .map_err(|e| fail("fsync directory", e))
    }

    /// The user names of every record, from the file names (no record is read).
    ///
    /// # Errors
    /// The directory cannot be listed.
    pub fn users(&self) -> Result<Vec<String>, String> {
        let mut names = Vec::new();
        let dir = fs::read_dir(&self.users).map_err(|e| format!("cannot list records: {e}"))?;
        for entry in dir.flatten() {
            let file = entry.file_name();
            let Some(stem) = file.to_str().and_then(|f| f.strip_suffix(".json")) else {
                continue;
            };
            if let Some(name) = hex::decode(stem)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
            {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Remove the user's record (durably).
    ///
    /// # Errors
    /// [`Error::Storage`] when the file exists and cannot be removed.
    pub fn remove(&self, user: &str) -> Result<(), Error> {
        match fs::remove_file(self.path_for(user)) {
            Ok(()) => File::open(&self.users)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::Storage {
                    user: user.to_owned(),
                    reason: format!("fsync directory: {e}"),
                }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Storage {
                user: user.to_owned(),
                reason: e.to_string(),
            }),
        }
    }
}

fn random_suffix() -> String {
    let mut b = [0u8; 8];
    // A failing RNG only makes the temp name predictable; create_new still refuses clashes.
    let _ = getrandom::getrandom(&mut b);
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("state")).unwrap();
        (dir, s)
    }

    #[test]
    fn round_trip_and_private_modes() {
        let (dir, s) = store();
        assert_eq!(s.load("alice").unwrap(), None);
        let mut r = Record::new("alice");
        r.failures = 3;
        s.save(&r).unwrap();
        assert_eq!(s.load("alice").unwrap(), Some(r));
        let state = dir.path().join("state");
        assert_eq!(fs::metadata(&state).unwrap().mode() & 0o777, 0o700);
        assert_eq!(
            fs::metadata(state.join("users")).unwrap().mode() & 0o777,
            0o700
        );
        let file = state
            .join("users")
            .join(format!("{}.json", hex::encode("alice")));
        assert_eq!(fs::metadata(file).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn file_names_never_carry_the_raw_name() {
        let (_d, s) = store();
        for name in ["../../etc/passwd", "a/b", ".hidden", "ü"] {
            let r = Record::new(name);
            s.save(&r).unwrap();
            assert_eq!(s.load(name).unwrap(), Some(r));
            let p = s.path_for(name);
            assert_eq!(p.parent(), Some(s.users.as_path()));
        }
    }

    #[test]
    fn corrupt_record_fails_closed_for_that_user_only() {
        let (_d, s) = store();
        s.save(&Record::new("alice")).unwrap();
        s.save(&Record::new("bob")).unwrap();
        let cases: [&[u8]; 4] = [
            b"{not json",
            b"",
            br#"{"version":1,"user":"alice","surprise":1}"#,
            br#"{"version":99,"user":"alice","failures":0}"#,
        ];
        for bytes in cases {
            fs::write(s.path_for("alice"), bytes).unwrap();
            assert!(matches!(s.load("alice"), Err(Error::CorruptRecord { .. })));
            assert!(s.load("bob").unwrap().is_some());
        }
        // A record copied under another user's name is refused too.
        fs::copy(s.path_for("bob"), s.path_for("alice")).unwrap();
        assert!(matches!(s.load("alice"), Err(Error::CorruptRecord { .. })));
        let err = s.load("alice").unwrap_err().to_string();
        assert!(err.contains("alice") && err.contains("unreadable"), "{err}");
    }

    #[test]
    fn failed_write_keeps_the_old_record() {
        let (_d, s) = store();
        let mut r = Record::new("alice");
        r.failures = 1;
        s.save(&r).unwrap();
        // Make the rename target a directory: the write must fail and leave no temp file.
        let p = s.path_for("carol");
        fs::create_dir(&p).unwrap();
        fs::write(p.join("x"), b"x").unwrap();
        assert!(matches!(
            s.save(&Record::new("carol")),
            Err(Error::Storage { .. })
        ));
        let leftovers: Vec<_> = fs::read_dir(&s.users)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        assert_eq!(s.load("alice").unwrap(), Some(r));
    }

    #[test]
    fn foreign_owned_state_dir_is_refused() {
        // Why root: only root can hand a directory to another uid (CI runs tests as root).
        assert!(nix::unistd::geteuid().is_root(), "this test needs root");
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        fs::create_dir(&state).unwrap();
        nix::unistd::chown(&state, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        let err = Store::open(&state).err().unwrap();
        assert!(err.contains("owned by uid 65534"), "{err}");
    }
}
