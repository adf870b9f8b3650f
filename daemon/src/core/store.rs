// SPDX-License-Identifier: MIT OR Apache-2.0
//! The embedded store: one file per account under `state_dir/users/`, named by its uid
//! (`uid-<decimal>.rec`), so every name of one uid shares one record and no file name is
//! ever built from a user name. Files of the earlier, name-keyed layout
//! (`<hex of the name>.rec`) are moved to their uid by [`Store::migrate_legacy`].
//!
//! A record file holds two slots of equal size, a multiple of 4 KiB. A slot is a header
//! (magic, generation, length, CRC-32 of generation, length and payload) followed by the
//! record as JSON. The record is the valid slot with the highest generation.
//!
//! Why two slots written in place: a login's write must be durable before it is answered,
//! and it is on every login path. Writing the *other* slot in place and `fdatasync`ing it
//! changes no metadata (same size, same blocks), so it costs one data flush (≈0.1 ms on the
//! benchmark machine) where a temporary file, fsync, rename and directory fsync cost
//! 0.5–0.9 ms; and a full disk cannot stop an enrolled user's logins. A write torn by a crash
//! leaves a slot whose checksum fails, and the other slot still holds the last state that
//! was acknowledged. A new file, or one whose record outgrew its slots, is written whole:
//! temporary file, fsync, rename, directory fsync.
//!
//! A file without a valid slot is corrupt for that user only, and the daemon never
//! overwrites it. Every save runs under the user's lock (see `engine`), so the slot a save
//! overwrites is never the one a concurrent reader relies on.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::record::{Record, RECORD_VERSION};
use super::Error;

/// Slots are whole blocks of this size.
const BLOCK: usize = 4096;
/// Slots bigger than this are corrupt by definition (a record is well under 8 KiB).
const MAX_SLOT: usize = 256 * 1024;
/// Magic, generation (u64 LE), payload length (u32 LE), CRC-32 (u32 LE).
const HEADER: usize = 24;
const MAGIC: &[u8; 8] = b"twostep\x01";
/// File name suffix of a record.
pub const SUFFIX: &str = ".rec";
/// File name prefix of a uid-keyed record (not a hex digit: never clashes with a legacy name).
pub const UID_PREFIX: &str = "uid-";

pub struct Store {
    users: PathBuf,
}

/// The slot a file's record was read from.
struct Current<'a> {
    index: usize,
    generation: u64,
    payload: &'a [u8],
    slot_size: usize,
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

    /// Where the record of account `uid` lives.
    pub fn path_for(&self, uid: u32) -> PathBuf {
        self.users.join(file_name(uid))
    }

    /// The record of account `uid`, `None` if it has none.
    ///
    /// # Errors
    /// [`Error::CorruptRecord`] when the file exists but has no valid record of `uid`.
    pub fn load(&self, uid: u32) -> Result<Option<Record>, Error> {
        let corrupt = |reason: String| Error::CorruptRecord {
            user: format!("uid {uid}"),
            reason,
        };
        let file = match File::open(self.path_for(uid)) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(corrupt(e.to_string())),
        };
        let bytes = read_bounded(file).map_err(&corrupt)?;
        decode(&bytes, uid).map(Some).map_err(corrupt)
    }

    /// Replace the user's record durably: the other slot in place, or the whole file when
    /// there is none yet or the record outgrew its slots.
    ///
    /// # Errors
    /// [`Error::Storage`] when a step fails (the old record is then left as it was);
    /// [`Error::CorruptRecord`] when the file on disk has no valid record (it is left alone).
    pub fn save(&self, record: &Record) -> Result<(), Error> {
        let user = record.user.as_str();
        let Some(uid) = record.uid else {
            return Err(Error::Storage {
                user: user.to_owned(),
                reason: "record without a uid".into(),
            });
        };
        let fail = |what: &str, e: std::io::Error| Error::Storage {
            user: user.to_owned(),
            reason: format!("{what}: {e}"),
        };
        let payload = payload(record).map_err(|reason| Error::Storage {
            user: user.to_owned(),
            reason,
        })?;
        let mut file = match OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.path_for(uid))
        {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return self.write_whole(uid, user, &payload, 1)
            }
            Err(e) => return Err(fail("open", e)),
        };
        let mut bytes = Vec::with_capacity(2 * BLOCK);
        (&mut file)
            .take(2 * MAX_SLOT as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| fail("read", e))?;
        // Checked as a load checks it: a file the daemon cannot read is never overwritten.
        let (current, _) = decode_current(&bytes, uid).map_err(|reason| Error::CorruptRecord {
            user: user.to_owned(),
            reason,
        })?;
        let generation = current.generation.saturating_add(1);
        if HEADER + payload.len() > current.slot_size {
            drop(file);
            return self.write_whole(uid, user, &payload, generation);
        }
        let target = 1 - current.index;
        let offset = (target * current.slot_size) as u64;
        file.write_all_at(&slot(generation, &payload), offset)
            .map_err(|e| fail("write", e))?;
        file.sync_data().map_err(|e| fail("fdatasync", e))
    }

    /// A new file in slot 0: temporary file, fsync, rename, directory fsync.
    fn write_whole(
        &self,
        uid: u32,
        user: &str,
        payload: &[u8],
        generation: u64,
    ) -> Result<(), Error> {
        let fail = |what: &str, e: std::io::Error| Error::Storage {
            user: user.to_owned(),
            reason: format!("{what}: {e}"),
        };
        let bytes = whole_file(generation, payload);
        let tmp = self
            .users
            .join(format!(".{UID_PREFIX}{uid}.{}.tmp", random_suffix()));
        let written = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| fail("create", e))?;
            f.write_all(&bytes).map_err(|e| fail("write", e))?;
            f.sync_all().map_err(|e| fail("fsync", e))?;
            fs::rename(&tmp, self.path_for(uid)).map_err(|e| fail("rename", e))
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        self.sync_dir().map_err(|e| fail("fsync directory", e))
    }

    fn sync_dir(&self) -> std::io::Result<()> {
        File::open(&self.users).and_then(|d| d.sync_all())
    }

    /// The uids of every record, from the file names (no record is read).
    ///
    /// # Errors
    /// The directory cannot be listed.
    pub fn users(&self) -> Result<Vec<u32>, String> {
        let mut uids = Vec::new();
        let dir = fs::read_dir(&self.users).map_err(|e| format!("cannot list records: {e}"))?;
        for entry in dir.flatten() {
            let file = entry.file_name();
            if let Some(uid) = file
                .to_str()
                .and_then(|f| f.strip_suffix(SUFFIX))
                .and_then(|f| f.strip_prefix(UID_PREFIX))
                .and_then(|n| n.parse::<u32>().ok())
            {
                uids.push(uid);
            }
        }
        uids.sort_unstable();
        Ok(uids)
    }

    /// Remove the record of account `uid` (durably).
    ///
    /// # Errors
    /// [`Error::Storage`] when the file exists and cannot be removed.
    pub fn remove(&self, uid: u32) -> Result<(), Error> {
        let fail = |reason: String| Error::Storage {
            user: format!("uid {uid}"),
            reason,
        };
        match fs::remove_file(self.path_for(uid)) {
            Ok(()) => self
                .sync_dir()
                .map_err(|e| fail(format!("fsync directory: {e}"))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(fail(e.to_string())),
        }
    }

    /// The user names of the records still in the earlier, name-keyed layout.
    ///
    /// # Errors
    /// The directory cannot be listed.
    pub fn legacy_names(&self) -> Result<Vec<String>, String> {
        let mut names = Vec::new();
        let dir = fs::read_dir(&self.users).map_err(|e| format!("cannot list records: {e}"))?;
        for entry in dir.flatten() {
            let file = entry.file_name();
            if let Some(name) = file
                .to_str()
                .and_then(|f| f.strip_suffix(SUFFIX))
                .filter(|f| !f.starts_with(UID_PREFIX))
                .and_then(|stem| hex::decode(stem).ok())
                .and_then(|b| String::from_utf8(b).ok())
            {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Move `user`'s name-keyed record (if any) to account `uid`, whose lock the caller
    /// holds. Atomic and durable: the uid-keyed file is written whole (temporary file,
    /// fsync, rename, directory fsync) before the old file is removed (directory fsync);
    /// a crash in between leaves both, and the next call removes the old one.
    ///
    /// # Errors
    /// [`Error::CorruptRecord`] when the old file is unreadable (it is left alone: that
    /// user's logins fail closed), [`Error::Storage`] when a step fails.
    pub fn migrate_legacy(&self, user: &str, uid: u32) -> Result<Migration, Error> {
        let legacy = self.users.join(legacy_file_name(user));
        let file = match File::open(&legacy) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Migration::Nothing),
            Err(e) => {
                return Err(Error::CorruptRecord {
                    user: user.to_owned(),
                    reason: e.to_string(),
                })
            }
        };
        let corrupt = |reason: String| Error::CorruptRecord {
            user: user.to_owned(),
            reason,
        };
        let bytes = read_bounded(file).map_err(&corrupt)?;
        let mut record = decode_legacy(&bytes, user).map_err(corrupt)?;
        record.uid = Some(uid);
        match self.load(uid)? {
            None => {
                let generation = current(&bytes).map_or(1, |c| c.generation);
                self.write_whole(uid, user, &payload_or_storage(&record)?, generation)?;
            }
            // A crash after the write, before the removal: the same record twice.
            Some(existing) if existing == record => {}
            // Another name of this uid had its own record: the uid-keyed one stays.
            Some(_) => return Ok(Migration::Conflict),
        }
        fs::remove_file(&legacy)
            .and_then(|()| self.sync_dir())
            .map_err(|e| Error::Storage {
                user: user.to_owned(),
                reason: format!("remove the name-keyed record: {e}"),
            })?;
        Ok(Migration::Moved(Box::new(record)))
    }
}

/// What [`Store::migrate_legacy`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Migration {
    /// No name-keyed record of that user.
    Nothing,
    /// Moved: the record now stored under the uid.
    Moved(Box<Record>),
    /// The uid already has a different record; the name-keyed file is left in place.
    Conflict,
}

fn payload_or_storage(record: &Record) -> Result<Vec<u8>, Error> {
    payload(record).map_err(|reason| Error::Storage {
        user: record.user.clone(),
        reason,
    })
}

/// The file name of the record of account `uid`.
pub fn file_name(uid: u32) -> String {
    format!("{UID_PREFIX}{uid}{SUFFIX}")
}

/// The file name a record of `user` had in the earlier, name-keyed layout.
pub fn legacy_file_name(user: &str) -> String {
    format!("{}{SUFFIX}", hex::encode(user.as_bytes()))
}

/// A complete record file holding `record` (generation 1), as a save of a new user writes
/// it. For tools that prepare state directories (the benchmark); the daemon uses
/// [`Store::save`].
///
/// # Errors
/// The record cannot be serialized or is too large.
pub fn file_bytes(record: &Record) -> Result<Vec<u8>, String> {
    Ok(whole_file(1, &payload(record)?))
}

/// The record in a record file's bytes, checked as [`Store::load`] checks it.
///
/// # Errors
/// Why the bytes are not a valid record of account `uid`.
pub fn decode(bytes: &[u8], uid: u32) -> Result<Record, String> {
    decode_current(bytes, uid).map(|(_, record)| record)
}

fn decode_current(bytes: &[u8], uid: u32) -> Result<(Current<'_>, Record), String> {
    let (current, record) = decode_any(bytes)?;
    if record.uid != Some(uid) {
        return Err("record belongs to another account".into());
    }
    Ok((current, record))
}

/// A record file of the name-keyed layout: it carries no uid, and the name it names.
fn decode_legacy(bytes: &[u8], user: &str) -> Result<Record, String> {
    let (_, record) = decode_any(bytes)?;
    if record.uid.is_some() || record.user != user {
        return Err("record belongs to another user".into());
    }
    Ok(record)
}

fn decode_any(bytes: &[u8]) -> Result<(Current<'_>, Record), String> {
    let current = current(bytes)?;
    let record: Record =
        serde_json::from_slice(current.payload).map_err(|e| format!("invalid record: {e}"))?;
    if record.version != RECORD_VERSION {
        return Err(format!("unknown record version {}", record.version));
    }
    Ok((current, record))
}

fn payload(record: &Record) -> Result<Vec<u8>, String> {
    let payload = serde_json::to_vec(record).map_err(|e| e.to_string())?;
    if HEADER + payload.len() > MAX_SLOT {
        return Err(format!("record of {} bytes is too large", payload.len()));
    }
    Ok(payload)
}

fn read_bounded(file: File) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::with_capacity(2 * BLOCK);
    file.take(2 * MAX_SLOT as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// The newest valid slot of a record file.
fn current(bytes: &[u8]) -> Result<Current<'_>, String> {
    let len = bytes.len();
    if len == 0 || len % (2 * BLOCK) != 0 || len > 2 * MAX_SLOT {
        return Err(format!("not a record file ({len} bytes)"));
    }
    let slot_size = len / 2;
    let (first, second) = bytes.split_at(slot_size);
    let valid = [parse_slot(first), parse_slot(second)];
    let newest = match valid {
        [Some(a), Some(b)] if b.0 > a.0 => Some((1, b)),
        [Some(a), _] => Some((0, a)),
        [None, Some(b)] => Some((1, b)),
        [None, None] => None,
    };
    let (index, (generation, payload)) = newest.ok_or("no valid slot (checksum mismatch)")?;
    Ok(Current {
        index,
        generation,
        payload,
        slot_size,
    })
}

/// A slot's generation and payload, if its header and checksum hold.
fn parse_slot(slot: &[u8]) -> Option<(u64, &[u8])> {
    let (header, rest) = slot.split_at_checked(HEADER)?;
    let (magic, fields) = header.split_at(MAGIC.len());
    if magic != MAGIC {
        return None;
    }
    let generation = u64::from_le_bytes(fields.get(..8)?.try_into().ok()?);
    let length = u32::from_le_bytes(fields.get(8..12)?.try_into().ok()?);
    let crc = u32::from_le_bytes(fields.get(12..16)?.try_into().ok()?);
    let payload = rest.get(..usize::try_from(length).ok()?)?;
    (checksum(generation, length, payload) == crc).then_some((generation, payload))
}

/// Header and payload of one slot (what a save writes; the rest of the slot is left as is).
fn slot(generation: u64, payload: &[u8]) -> Vec<u8> {
    // The length fits: `payload` checked it against MAX_SLOT.
    let length = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&checksum(generation, length, payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// A file with `payload` in slot 0 and an empty slot 1, each slot whole blocks.
fn whole_file(generation: u64, payload: &[u8]) -> Vec<u8> {
    let slot_size = (HEADER + payload.len()).div_ceil(BLOCK) * BLOCK;
    let mut bytes = slot(generation, payload);
    bytes.resize(2 * slot_size, 0);
    bytes
}

fn checksum(generation: u64, length: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&generation.to_le_bytes());
    h.update(&length.to_le_bytes());
    h.update(payload);
    h.finalize()
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

    fn uid_of(user: &str) -> u32 {
        match user {
            "alice" => 1001,
            "bob" => 1002,
            "carol" => 1003,
            _ => 1004,
        }
    }

    fn rec(user: &str) -> Record {
        Record::for_account(user, uid_of(user))
    }

    fn with_failures(user: &str, n: u32) -> Record {
        let mut r = rec(user);
        r.failures = n;
        r
    }

    #[test]
    fn round_trip_and_private_modes() {
        let (dir, s) = store();
        assert_eq!(s.load(1001).unwrap(), None);
        let r = with_failures("alice", 3);
        s.save(&r).unwrap();
        assert_eq!(s.load(1001).unwrap(), Some(r));
        let state = dir.path().join("state");
        assert_eq!(fs::metadata(&state).unwrap().mode() & 0o777, 0o700);
        assert_eq!(
            fs::metadata(state.join("users")).unwrap().mode() & 0o777,
            0o700
        );
        let file = state.join("users").join("uid-1001.rec");
        assert_eq!(fs::metadata(file).unwrap().mode() & 0o777, 0o600);
        assert_eq!(s.users().unwrap(), [1001]);
    }

    #[test]
    fn saves_alternate_slots_in_place() {
        let (_d, s) = store();
        s.save(&with_failures("alice", 0)).unwrap();
        let before = fs::metadata(s.path_for(1001)).unwrap();
        for n in 1..=5 {
            s.save(&with_failures("alice", n)).unwrap();
            assert_eq!(s.load(1001).unwrap(), Some(with_failures("alice", n)));
            let bytes = fs::read(s.path_for(1001)).unwrap();
            let c = current(&bytes).unwrap();
            assert_eq!(c.generation, u64::from(n) + 1);
            assert_eq!(c.index, usize::try_from(n % 2).unwrap());
        }
        let after = fs::metadata(s.path_for(1001)).unwrap();
        assert_eq!((before.ino(), before.len()), (after.ino(), after.len()));
        assert_eq!(after.len(), 2 * BLOCK as u64);
    }

    #[test]
    fn a_torn_write_leaves_the_previous_record() {
        let (_d, s) = store();
        s.save(&with_failures("alice", 1)).unwrap(); // slot 0, generation 1
        s.save(&with_failures("alice", 2)).unwrap(); // slot 1, generation 2
                                                     // A crash in the middle of writing slot 1 (half the payload zeroed).
        let path = s.path_for(1001);
        let mut bytes = fs::read(&path).unwrap();
        for b in &mut bytes[BLOCK + HEADER + 10..BLOCK + HEADER + 20] {
            *b = 0;
        }
        fs::write(&path, &bytes).unwrap();
        assert_eq!(s.load(1001).unwrap(), Some(with_failures("alice", 1)));
        // The next save goes to the torn slot and wins.
        s.save(&with_failures("alice", 7)).unwrap();
        assert_eq!(s.load(1001).unwrap(), Some(with_failures("alice", 7)));
        let bytes = fs::read(&path).unwrap();
        assert_eq!(current(&bytes).unwrap().index, 1);
    }

    #[test]
    fn a_record_that_outgrows_its_slots_is_rewritten_whole() {
        let (_d, s) = store();
        s.save(&rec("alice")).unwrap();
        let mut big = rec("alice");
        for i in 0..200 {
            big.events.push(super::super::record::Event {
                at: super::super::UnixTime(i),
                what: "x".repeat(40),
            });
        }
        s.save(&big).unwrap();
        assert_eq!(s.load(1001).unwrap(), Some(big.clone()));
        let len = fs::metadata(s.path_for(1001)).unwrap().len();
        assert!(
            len > 2 * BLOCK as u64 && len % (2 * BLOCK as u64) == 0,
            "{len}"
        );
        // And the generation went on: a later in-place save still wins.
        s.save(&with_failures("alice", 4)).unwrap();
        assert_eq!(s.load(1001).unwrap(), Some(with_failures("alice", 4)));
    }

    #[test]
    fn file_names_never_carry_the_raw_name() {
        let (_d, s) = store();
        for (uid, name) in [
            (1, "../../etc/passwd"),
            (2, "a/b"),
            (3, ".hidden"),
            (4, "ü"),
        ] {
            let r = Record::for_account(name, uid);
            s.save(&r).unwrap();
            assert_eq!(s.load(uid).unwrap(), Some(r));
            let p = s.path_for(uid);
            assert_eq!(p.parent(), Some(s.users.as_path()));
        }
    }

    #[test]
    fn corrupt_record_fails_closed_for_that_user_only_and_is_never_overwritten() {
        let (_d, s) = store();
        s.save(&rec("alice")).unwrap();
        s.save(&rec("bob")).unwrap();
        let valid_slot_with = |payload: &[u8]| whole_file(1, payload);
        let cases: Vec<Vec<u8>> = vec![
            b"{not json".to_vec(),
            Vec::new(),
            vec![0; 2 * BLOCK],
            valid_slot_with(b"{not json"),
            valid_slot_with(br#"{"version":1,"user":"alice","uid":1001,"surprise":1}"#),
            valid_slot_with(br#"{"version":99,"user":"alice","uid":1001,"failures":0}"#),
        ];
        for bytes in cases {
            fs::write(s.path_for(1001), &bytes).unwrap();
            assert!(matches!(s.load(1001), Err(Error::CorruptRecord { .. })));
            assert!(s.load(1002).unwrap().is_some());
            let saved = s.save(&with_failures("alice", 1));
            assert!(
                matches!(saved, Err(Error::CorruptRecord { .. })),
                "{saved:?}"
            );
            assert_eq!(fs::read(s.path_for(1001)).unwrap(), bytes);
        }
        // A record copied under another account's uid is refused too.
        fs::copy(s.path_for(1002), s.path_for(1001)).unwrap();
        assert!(matches!(s.load(1001), Err(Error::CorruptRecord { .. })));
        let err = s.load(1001).unwrap_err().to_string();
        assert!(
            err.contains("uid 1001") && err.contains("unreadable"),
            "{err}"
        );
    }

    #[test]
    fn file_bytes_is_what_the_store_reads() {
        let (_d, s) = store();
        let r = with_failures("carol", 2);
        fs::write(s.path_for(1003), file_bytes(&r).unwrap()).unwrap();
        assert_eq!(s.load(1003).unwrap(), Some(r.clone()));
        assert_eq!(decode(&file_bytes(&r).unwrap(), 1003).unwrap(), r);
        assert!(decode(&file_bytes(&r).unwrap(), 1004).is_err());
    }

    #[test]
    fn failed_write_keeps_the_old_record() {
        let (_d, s) = store();
        let r = with_failures("alice", 1);
        s.save(&r).unwrap();
        // Make the record path a directory: the write must fail and leave no temp file.
        let p = s.path_for(1003);
        fs::create_dir(&p).unwrap();
        fs::write(p.join("x"), b"x").unwrap();
        assert!(matches!(s.save(&rec("carol")), Err(Error::Storage { .. })));
        let leftovers: Vec<_> = fs::read_dir(&s.users)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        assert_eq!(s.load(1001).unwrap(), Some(r));
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

    #[test]
    fn a_name_keyed_record_moves_to_its_uid_once_and_durably() {
        let (_d, s) = store();
        let mut old = Record::new("alice");
        old.failures = 2;
        old.last_step = Some(7);
        let legacy = s.users.join(legacy_file_name("alice"));
        fs::write(&legacy, file_bytes(&old).unwrap()).unwrap();
        assert_eq!(s.legacy_names().unwrap(), ["alice"]);
        assert_eq!(s.load(1001).unwrap(), None);
        // Another name's legacy file is not this user's.
        assert_eq!(s.migrate_legacy("bob", 1001).unwrap(), Migration::Nothing);
        let Migration::Moved(moved) = s.migrate_legacy("alice", 1001).unwrap() else {
            panic!("not moved")
        };
        assert_eq!(
            (moved.uid, moved.failures, moved.last_step),
            (Some(1001), 2, Some(7))
        );
        assert_eq!(s.load(1001).unwrap(), Some(*moved.clone()));
        assert!(!legacy.exists());
        assert!(s.legacy_names().unwrap().is_empty());
        assert_eq!(s.users().unwrap(), [1001]);
        // A crash between the write and the removal leaves both: the next call removes
        // the old file and keeps the record.
        fs::write(&legacy, file_bytes(&old).unwrap()).unwrap();
        assert!(matches!(
            s.migrate_legacy("alice", 1001),
            Ok(Migration::Moved(_))
        ));
        assert!(!legacy.exists());
        // A different record already under the uid wins; the old file is left alone.
        s.save(&with_failures("alice", 0)).unwrap();
        fs::write(&legacy, file_bytes(&old).unwrap()).unwrap();
        assert_eq!(
            s.migrate_legacy("alice", 1001).unwrap(),
            Migration::Conflict
        );
        assert!(legacy.exists());
        assert_eq!(s.load(1001).unwrap(), Some(with_failures("alice", 0)));
        // An unreadable old file fails closed and stays.
        fs::write(s.users.join(legacy_file_name("carol")), b"{garbage").unwrap();
        assert!(matches!(
            s.migrate_legacy("carol", 1003),
            Err(Error::CorruptRecord { .. })
        ));
        assert_eq!(s.load(1003).unwrap(), None);
    }
}
