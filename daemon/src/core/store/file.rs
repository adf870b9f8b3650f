// SPDX-License-Identifier: MIT OR Apache-2.0
//! The embedded store: one file per account under `state_dir/users/`, named by its uid
//! (`uid-<decimal>.rec`), so every name of one uid shares one record and no file name is
//! ever built from a user name. Files of the earlier, name-keyed layout
//! (`<hex of the name>.rec`) are moved to their uid by [`FileStore::migrate_legacy`].
//!
//! A record file holds two slots of equal size, a multiple of 4 KiB. A slot is a header
//! (magic, generation, length, CRC-32 of generation, length and payload) followed by the
//! record as JSON. The record is the slot with the highest generation.
//!
//! Why two slots written in place: a login's write must be durable before it is answered,
//! and it is on every login path. Writing the *other* slot in place and `fdatasync`ing it
//! changes no metadata (same size, same blocks), so it costs one data flush (≈0.1 ms on the
//! benchmark machine) where a temporary file, fsync, rename and directory fsync cost
//! 0.5–0.9 ms; and a full disk cannot stop an enrolled user's logins. A new file, or one
//! whose record outgrew its slots, is written whole: temporary file (`O_EXCL|O_NOFOLLOW`),
//! fsync, rename, directory fsync; both of its slots then hold the record.
//!
//! # Damage: never roll back an acknowledged write (issue 19, fault 8)
//!
//! Every slot of a record file must pass its checksum. If one does not, the user's logins
//! fail closed (`CorruptRecord`, logged with the path and what each slot holds) and the
//! daemon writes nothing to that file, until an admin runs `twostepctl user repair USER`.
//! Why not fall back to the other slot: a slot that fails its checksum is either a torn
//! write (never acknowledged, harmless to drop) or an acknowledged write that rotted, and
//! from the bytes alone the two cannot be told apart. Falling back would silently undo a
//! failure count, a lock, a replay mark or a spent recovery code.
//!
//! What a repair may assume, and why: a save always writes generation `g + 1` into the slot
//! that does not hold the current generation `g`, so while a slot holding `g` is readable at
//! most **one** save — one operation on the record — can have been lost. The repair (see
//! `core::admin`) starts from the newest readable slot and undoes nothing that one operation
//! could have done: it charges one more failure at the time of the repair (a lock is never
//! lowered or shortened), moves the replay mark to the current time step plus the window
//! (no code that could have been accepted is accepted again), and marks every unused
//! recovery code as spent (the lost write may have spent one). The file it replaces is kept
//! beside the record as `<record>.damaged-<unix time>`.
//!
//! The only slot allowed to be all zeros is the second slot of a file written by twostep
//! before this rule (magic `twostep\x01`), which left it empty; the first save of such a
//! file writes both slots in the current format (magic `twostep\x02`).
//!
//! # Trust (issue 19, fault 7)
//!
//! The state directory and `users/` are directories owned by the daemon's uid with no
//! access for group or others, reached through safe directories (see [`super::trust`]);
//! anything else refuses the start, and nothing is `chmod`-ed. A record file is opened with
//! `O_NOFOLLOW|O_NONBLOCK` and used only when it is a regular file owned by the daemon's
//! uid, with no permission bits for group or others (0600) and no other name (one link);
//! otherwise that user fails closed (logged with path, owner and mode) and the file is
//! neither read nor written. Other users are not affected.
//!
//! Every save through [`super::Store::transact`] runs under the account's lock, held in
//! this store, so the slot a save overwrites is never the one a concurrent reader relies
//! on. (The raw [`FileStore::save`] and [`FileStore::load`] take no lock: for tools and
//! tests that own the directory.)
//!
//! # The enrolment list (issue 12, item 2)
//!
//! A missing record file alone does not mean "not enrolled": `state_dir/enrolled` lists the
//! uids of enrolled accounts, one decimal per line, and is authoritative. A listed account
//! whose record file is missing fails closed (`CorruptRecord`, logged with the path) until
//! an admin runs `twostepctl user reset` ([`super::Store::replace_vanished`]); other
//! accounts are unaffected. The list is read once at start and kept in memory, so a login
//! costs no extra system call; it is rewritten whole (temporary file `O_EXCL|O_NOFOLLOW`,
//! fsync, rename, directory fsync) when an account is enrolled — *before* the record that
//! enrols it is written — and when one stops being enrolled — *after* that record is
//! written. A crash in between leaves the account listed with a record that says it is not
//! enrolled: the record is read and wins; the list only ever speaks when the record is gone.
//! Enrolments and removals are rare (writes are not on the login path), and a list of
//! 100,000 uids is about 700 KB. A record that enrols an account not on the list (a file
//! put in place by hand while the daemon ran) puts it on the list at its first save: one
//! list write, once per such account.
//!
//! The list file is trusted as record files are (regular, owned by the daemon, 0600, one
//! link); an untrusted or unreadable list refuses the start. A state directory from before
//! the list (records present, no `enrolled`) gets one at the first start, written before
//! anything is served, with **every** account that has a record file (enrolled or not; no
//! record is read). That is safe because it can only make more accounts fail closed, never
//! fewer: a record deleted before this version first started was never listed anywhere, as
//! before, and an account listed but not enrolled is taken off at its next save.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, DirBuilder, File, Metadata, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::core::engine::lock;
use crate::core::record::{Record, RECORD_VERSION};
use crate::core::seal::Sealer;
use crate::core::trust::{self, describe, euid};
use crate::core::users::Account;
use crate::core::{Error, UnixTime};

/// Slots are whole blocks of this size.
const BLOCK: usize = 4096;
/// Slots bigger than this are corrupt by definition (a record is well under 8 KiB).
const MAX_SLOT: usize = 256 * 1024;
/// Magic, generation (u64 LE), payload length (u32 LE), CRC-32 (u32 LE).
const HEADER: usize = 24;
/// The current format: both slots of a file are always written.
const MAGIC: &[u8; 8] = b"twostep\x02";
/// Written before issue 19: a new file's second slot was left as zeros.
const MAGIC_V1: &[u8; 8] = b"twostep\x01";
/// File name suffix of a record.
pub const SUFFIX: &str = ".rec";
/// File name prefix of a uid-keyed record (not a hex digit: never clashes with a legacy name).
pub const UID_PREFIX: &str = "uid-";

/// The name of the enrolment list in the state directory.
pub const ENROLLED_FILE: &str = "enrolled";
/// The first line of the enrolment list.
const ENROLLED_HEADER: &str = "# twostep enrolled accounts (uids), v1";

/// The embedded store: record files under `state_dir/users/`, the per-uid locks and the
/// authoritative enrolment list (see the module doc).
pub struct FileStore {
    state: PathBuf,
    users: PathBuf,
    /// One lock per uid in use: every transaction on a record holds its account's lock.
    locks: Mutex<HashMap<u32, Arc<Mutex<()>>>>,
    /// The enrolment list as last written (the file is rewritten whole under this lock).
    enrolled: Mutex<BTreeSet<u32>>,
    /// Seals the secrets of every record written, opens those of every record read.
    sealer: Arc<Sealer>,
    /// The record last decoded from each of up to [`RECENT_MAX`] files, by uid: a load
    /// that reads the very same bytes under the same keys takes a copy instead of decoding
    /// them again (the `Begin` and the `Answer` of a login read the same file; decoding is
    /// most of a login's work). Dropped at the account's next save, all of it when full.
    recent: Mutex<HashMap<u32, Recent>>,
}

/// Accounts whose last decoded record [`FileStore`] keeps. Why a bound this small: the
/// entries hold opened secrets; a login needs its entry for the seconds between its
/// `Begin` and its `Answer`.
const RECENT_MAX: usize = 64;

/// A record file's bytes and what decoding them under the keys of `epoch` gave.
struct Recent {
    bytes: Vec<u8>,
    epoch: u64,
    record: Record,
    reseal: bool,
}

/// A record file as a load in the same transaction read and checked it: a save under the
/// same lock that finds these bytes unchanged needs neither to decode them again nor to
/// parse them for [`Sealer::needs_reseal`].
struct Seen {
    bytes: Vec<u8>,
    /// The record held a secret that a re-seal would change.
    reseal: bool,
}

/// The slot a file's record was read from.
struct Current<'a> {
    index: usize,
    generation: u64,
    payload: &'a [u8],
    slot_size: usize,
    /// The other slot is of the old format (or empty): a save writes both.
    upgrade: bool,
}

/// One slot as found on disk.
enum Slot<'a> {
    Valid {
        generation: u64,
        payload: &'a [u8],
        legacy: bool,
    },
    /// All zeros: never written.
    Empty,
    /// Header or checksum does not hold.
    Damaged(&'static str),
}

/// One slot of a record file, decoded for an admin's repair.
#[derive(Debug)]
pub enum SlotView {
    /// The checksum holds; the record it decodes to, or why it does not decode.
    Readable {
        generation: u64,
        record: Result<Box<Record>, String>,
    },
    /// All zeros: never written (allowed only as the second slot of an old-format file).
    Empty,
    /// The header or checksum does not hold: a torn write or rot.
    Unreadable(String),
}

/// What a user's record file holds, slot by slot ([`FileStore::inspect`]).
#[derive(Debug)]
pub struct Inspection {
    /// The record file.
    pub path: PathBuf,
    /// Its two slots, in file order; empty when the file is not a record file at all.
    pub slots: Vec<SlotView>,
    /// Why the user fails closed; `None` when the record is intact.
    pub damage: Option<String>,
}

impl Inspection {
    /// The newest slot that is readable and decodes to this user's record.
    pub fn newest_readable(&self) -> Option<(usize, u64, &Record)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                SlotView::Readable {
                    generation,
                    record: Ok(r),
                } => Some((i, *generation, &**r)),
                _ => None,
            })
            .max_by_key(|(i, g, _)| (*g, std::cmp::Reverse(*i)))
    }
}

/// Require a directory the daemon keeps secrets in: owned by the daemon's uid, no access
/// for group or others.
fn check_private_dir(path: &Path, meta: &Metadata) -> Result<(), String> {
    if !meta.is_dir() || meta.uid() != euid() || meta.mode() & 0o077 != 0 {
        return Err(format!(
            "unsafe state directory {}: expected a directory owned by uid {} (this daemon) \
             with mode 0700 (no access for group or others); twostepd does not change it \
             itself — fix the owner and mode (chown/chmod) and start again",
            describe(path, meta),
            euid()
        ));
    }
    Ok(())
}

/// Create `dir` 0700 if it is missing, then require it private.
fn private_dir(dir: &Path) -> Result<(), String> {
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
    }
    let meta =
        fs::symlink_metadata(dir).map_err(|e| format!("cannot inspect {}: {e}", dir.display()))?;
    check_private_dir(dir, &meta)
}

/// Require a record file safe to believe (see the module doc, "Trust").
fn check_record(path: &Path, meta: &Metadata) -> Result<(), String> {
    if !meta.is_file() || meta.uid() != euid() || meta.mode() & 0o7077 != 0 || meta.nlink() != 1 {
        return Err(format!(
            "refused {} with {} link(s): expected a regular file owned by uid {} with mode 0600 \
             and no other name; it was neither read nor written",
            describe(path, meta),
            meta.nlink(),
            euid()
        ));
    }
    Ok(())
}

/// Open a record without following links or blocking, and check it; `None` if there is
/// none. Why `lstat` first: a device or FIFO is refused before it is ever opened.
fn open_record(path: &Path, write: bool) -> Result<Option<File>, String> {
    let before = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot inspect {}: {e}", path.display())),
    };
    check_record(path, &before)?;
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot inspect {}: {e}", path.display()))?;
    check_record(path, &meta)?;
    if (meta.dev(), meta.ino()) != (before.dev(), before.ino()) {
        return Err(format!("{} changed while it was opened", path.display()));
    }
    Ok(Some(file))
}

impl FileStore {
    /// Open (and create) the store under `state_dir`. A missing state directory or `users/`
    /// is created 0700. An existing one must be a directory owned by this daemon's uid with
    /// no access for group or others, reached through directories and links only root or
    /// this daemon can change; it is never `chmod`-ed.
    ///
    /// # Errors
    /// A message for the operator naming the path, its owner and mode and what is
    /// expected, or why the directory cannot be created.
    pub fn open(state_dir: &Path) -> Result<FileStore, String> {
        FileStore::open_with(state_dir, Arc::new(Sealer::plaintext()))
    }

    /// [`FileStore::open`] with `sealer` sealing the secrets of every record written (the
    /// daemon's way: [`FileStore::open`] writes them in the clear, for tests and tools).
    ///
    /// # Errors
    /// As [`FileStore::open`].
    pub fn open_with(state_dir: &Path, sealer: Arc<Sealer>) -> Result<FileStore, String> {
        let (state, meta) = trust::resolve(state_dir)?;
        match meta {
            Some(m) => check_private_dir(&state, &m)?,
            None => private_dir(&state)?,
        }
        let users = state.join("users");
        private_dir(&users)?;
        let store = FileStore {
            state,
            users,
            locks: Mutex::new(HashMap::new()),
            enrolled: Mutex::new(BTreeSet::new()),
            sealer,
            recent: Mutex::new(HashMap::new()),
        };
        let listed = match store.read_enrolled()? {
            Some(listed) => listed,
            None => {
                // The first start with a list: every account with a record file.
                let listed: BTreeSet<u32> = store.users()?.into_iter().collect();
                store
                    .write_enrolled(&listed)
                    .map_err(|e| format!("cannot write the enrolment list: {e}"))?;
                if !listed.is_empty() {
                    log::info!(
                        "enrolment list {} started with the {} account(s) that have a record",
                        store.state.join(ENROLLED_FILE).display(),
                        listed.len()
                    );
                }
                listed
            }
        };
        *lock(&store.enrolled) = listed;
        Ok(store)
    }

    /// The enrolment list on disk, `None` when there is none yet.
    fn read_enrolled(&self) -> Result<Option<BTreeSet<u32>>, String> {
        let path = self.state.join(ENROLLED_FILE);
        let Some(file) = open_record(&path, false)? else {
            return Ok(None);
        };
        let bytes = read_bounded_list(&file).map_err(|e| format!("{}: {e}", path.display()))?;
        let text =
            std::str::from_utf8(&bytes).map_err(|_| format!("{}: not text", path.display()))?;
        let mut lines = text.lines();
        if lines.next() != Some(ENROLLED_HEADER) {
            return Err(format!("{}: not an enrolment list", path.display()));
        }
        lines
            .map(|l| {
                l.parse::<u32>()
                    .map_err(|_| format!("{}: not a uid: {l:?}", path.display()))
            })
            .collect::<Result<BTreeSet<u32>, String>>()
            .map(Some)
    }

    /// Write the enrolment list whole: temporary file, fsync, rename, directory fsync.
    fn write_enrolled(&self, listed: &BTreeSet<u32>) -> std::io::Result<()> {
        let text = enrolled_file_bytes(listed.iter().copied());
        let tmp = self
            .state
            .join(format!(".{ENROLLED_FILE}.{}.tmp", random_suffix()));
        let written = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            fs::rename(&tmp, self.state.join(ENROLLED_FILE))
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        sync_dir(&self.state)
    }

    /// Put `uid` on (`true`) or take it off the enrolment list, durably; nothing is written
    /// when it is already so (the usual case: no system call).
    fn set_enrolled(&self, uid: u32, enrolled: bool) -> Result<(), Error> {
        let mut listed = lock(&self.enrolled);
        if listed.contains(&uid) == enrolled {
            return Ok(());
        }
        let mut next = listed.clone();
        if enrolled {
            next.insert(uid);
        } else {
            next.remove(&uid);
        }
        self.write_enrolled(&next).map_err(|e| Error::Storage {
            user: account(uid),
            reason: format!("write the enrolment list: {e}"),
        })?;
        *listed = next;
        Ok(())
    }

    fn is_listed(&self, uid: u32) -> bool {
        lock(&self.enrolled).contains(&uid)
    }

    /// Run `f` under the lock of account `uid` (the lock every transaction on its record
    /// holds): for an admin's inspect-and-repair, which must see and replace one state.
    pub fn with_uid_lock<T>(&self, uid: u32, f: impl FnOnce() -> T) -> T {
        let m = Arc::clone(lock(&self.locks).entry(uid).or_default());
        let out = {
            let _held = lock(&m);
            f()
        };
        // Drop the entry when nobody else holds it, so names tried once (unknown users
        // through sshd, say) do not accumulate. Others clone it only under the map lock.
        let mut map = lock(&self.locks);
        if Arc::strong_count(&m) == 2 {
            map.remove(&uid);
        }
        out
    }

    /// `who`'s record (moved from the name-keyed layout on first use); a listed account
    /// without one fails closed. The caller holds the account's lock.
    /// The decoded record is kept for the next load of the same bytes (a login's `Begin`
    /// comes here; its `Answer` is a transaction that finds it).
    fn load_locked(&self, who: &Account) -> Result<Option<Record>, Error> {
        self.load_locked_seen(who, true).map(|(record, _)| record)
    }

    /// [`FileStore::load_locked`], and the file as read when it was read once as it is;
    /// `keep`: keep what a decode gives for the next load (see [`FileStore::load_seen`]).
    fn load_locked_seen(
        &self,
        who: &Account,
        keep: bool,
    ) -> Result<(Option<Record>, Option<Seen>), Error> {
        // The store knows records by uid; errors name the account as the login named it.
        let named = |e: Error| match e {
            Error::CorruptRecord { reason, .. } => Error::CorruptRecord {
                user: format!("{} (uid {})", who.name, who.uid),
                reason,
            },
            Error::Storage { reason, .. } => Error::Storage {
                user: format!("{} (uid {})", who.name, who.uid),
                reason,
            },
            other => other,
        };
        if let Some((r, seen)) = self.load_seen(who.uid, keep).map_err(named)? {
            return Ok((Some(r), Some(seen)));
        }
        let found = match self.migrate_locked(&who.name, who.uid).map_err(named)? {
            Migration::Moved(r) => {
                log::info!(
                    "user={} uid={} outcome=migrated (record now keyed by uid)",
                    crate::core::audit::field(&who.name),
                    who.uid
                );
                Some(*r)
            }
            Migration::Nothing | Migration::Conflict => self.load(who.uid).map_err(named)?,
        };
        if found.is_none() && self.is_listed(who.uid) {
            return Err(refused(
                &format!("{} (uid {})", who.name, who.uid),
                format!(
                    "{}: the record file is missing but the account is on the enrolment list \
                     ({}); an administrator restores the file or runs `twostepctl user reset`",
                    self.path_for(who.uid).display(),
                    self.state.join(ENROLLED_FILE).display()
                ),
            ));
        }
        Ok((found, None))
    }

    /// Save `record` of `uid` and keep the enrolment list in step: listed before a record
    /// that enrols is written, unlisted after a record that does not.
    fn save_listed(&self, uid: u32, record: &Record) -> Result<(), Error> {
        self.save_listed_seen(uid, record, None)
    }

    /// [`FileStore::save_listed`]; `seen` as for [`FileStore::save_seen`].
    fn save_listed_seen(
        &self,
        uid: u32,
        record: &Record,
        seen: Option<&Seen>,
    ) -> Result<(), Error> {
        if record.uid != Some(uid) {
            return Err(Error::Storage {
                user: account(uid),
                reason: "record of another account".into(),
            });
        }
        if record.enrolled() {
            self.set_enrolled(uid, true)?;
            self.save_seen(record, seen)
        } else {
            self.save_seen(record, seen)?;
            self.set_enrolled(uid, false)
        }
    }

    /// What [`FileStore::open`] would say about `state_dir`, without creating anything (for
    /// `twostepd --check-config`): a missing directory is fine (the daemon creates it 0700).
    ///
    /// # Errors
    /// The same messages as [`FileStore::open`].
    pub fn check(state_dir: &Path) -> Result<(), String> {
        let (state, meta) = trust::resolve(state_dir)?;
        let Some(meta) = meta else { return Ok(()) };
        check_private_dir(&state, &meta)?;
        let users = state.join("users");
        match fs::symlink_metadata(&users) {
            Ok(meta) => check_private_dir(&users, &meta)?,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot inspect {}: {e}", users.display())),
        }
        // The enrolment list is trusted as a record is (a missing one is made at start).
        let list = state.join(ENROLLED_FILE);
        match fs::symlink_metadata(&list) {
            Ok(meta) => check_record(&list, &meta),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot inspect {}: {e}", list.display())),
        }
    }

    /// Where the record of account `uid` lives.
    pub fn path_for(&self, uid: u32) -> PathBuf {
        self.users.join(file_name(uid))
    }

    /// The record of account `uid`, `None` if it has none.
    ///
    /// # Errors
    /// [`Error::CorruptRecord`] when the file exists but is not trusted (type, owner, mode),
    /// any of its slots is damaged, or it holds another account's record (logged, with the
    /// path).
    pub fn load(&self, uid: u32) -> Result<Option<Record>, Error> {
        Ok(self.load_seen(uid, false)?.map(|(record, _)| record))
    }

    /// [`FileStore::load`], and the file as read, for a save in the same transaction. A
    /// record decoded earlier from the same bytes under the same keys is taken as it was;
    /// with `keep`, what this decode gives is kept for such a load (only a login's `Begin`
    /// keeps: a scan over every record, as the notice round at start, must not fill the
    /// cache with other accounts' opened secrets).
    fn load_seen(&self, uid: u32, keep: bool) -> Result<Option<(Record, Seen)>, Error> {
        let who = account(uid);
        let path = self.path_for(uid);
        let Some(file) = open_record(&path, false).map_err(|r| refused(&who, r))? else {
            return Ok(None);
        };
        let bytes = read_bounded(&file).map_err(|e| corrupt(&who, e))?;
        let epoch = self.sealer.epoch();
        if let Some(hit) = lock(&self.recent)
            .get(&uid)
            .filter(|r| r.epoch == epoch && r.bytes == bytes)
        {
            let seen = Seen {
                bytes,
                reseal: hit.reseal,
            };
            return Ok(Some((hit.record.clone(), seen)));
        }
        let (record, reseal) = decode_current_noting(&bytes, uid, &self.sealer)
            .map(|(_, record, reseal)| (record, reseal))
            .map_err(|reason| refused(&who, format!("{}: {reason}", path.display())))?;
        if keep {
            let mut recent = lock(&self.recent);
            if recent.len() >= RECENT_MAX && !recent.contains_key(&uid) {
                recent.clear();
            }
            let entry = Recent {
                bytes: bytes.clone(),
                epoch,
                record: record.clone(),
                reseal,
            };
            recent.insert(uid, entry);
        }
        Ok(Some((record, Seen { bytes, reseal })))
    }

    /// Replace the user's record durably: the other slot in place, or the whole file when
    /// there is none yet or the record outgrew its slots.
    ///
    /// # Errors
    /// [`Error::Storage`] when a step fails (the old record is then left as it was);
    /// [`Error::CorruptRecord`] when the file on disk is not trusted or damaged (it is left
    /// alone).
    pub fn save(&self, record: &Record) -> Result<(), Error> {
        self.save_seen(record, None)
    }

    /// [`FileStore::save`]; `seen` is the file as a load under the same lock found it.
    fn save_seen(&self, record: &Record, seen: Option<&Seen>) -> Result<(), Error> {
        let user = record.user.as_str();
        let Some(uid) = record.uid else {
            return Err(Error::Storage {
                user: user.to_owned(),
                reason: "record without a uid".into(),
            });
        };
        // The file changes: its decoded copy is of no more use (and holds secrets).
        lock(&self.recent).remove(&uid);
        let path = self.path_for(uid);
        let fail = |what: &str, e: std::io::Error| Error::Storage {
            user: user.to_owned(),
            reason: format!("{what}: {e}"),
        };
        let payload = payload(record, &self.sealer).map_err(|reason| Error::Storage {
            user: user.to_owned(),
            reason,
        })?;
        let Some(file) = open_record(&path, true).map_err(|r| refused(user, r))? else {
            return self.write_whole(uid, user, &payload, 1);
        };
        let bytes = read_bounded(&file).map_err(|e| Error::Storage {
            user: user.to_owned(),
            reason: format!("read: {e}"),
        })?;
        // Checked as a load checks it: a file the daemon cannot read is never overwritten
        // (the same bytes a load in this transaction checked are not decoded twice).
        let checked = match seen {
            Some(seen) if seen.bytes == bytes => current(&bytes).map(|c| (c, seen.reseal)),
            _ => decode_current_noting(&bytes, uid, &self.sealer).map(|(c, _, r)| (c, r)),
        };
        let (current, reseal) =
            checked.map_err(|reason| refused(user, format!("{}: {reason}", path.display())))?;
        let generation = current.generation.saturating_add(1);
        // Why `reseal`: the slot a save keeps holds the previous record; when that one has a
        // secret in the clear or sealed with another key (the first write after sealing
        // began, a key rotation), it is overwritten too, so no earlier form of a secret stays.
        if HEADER + payload.len() > current.slot_size {
            drop(file);
            return self.write_whole(uid, user, &payload, generation);
        }
        let new = slot(generation, &payload);
        let target = 1 - current.index;
        file.write_all_at(&new, (target * current.slot_size) as u64)
            .map_err(|e| fail("write", e))?;
        file.sync_data().map_err(|e| fail("fdatasync", e))?;
        if current.upgrade || reseal {
            // An old-format file: its other slot becomes a copy too, so that from now on
            // every slot of this file is written and checked. (And see `reseal` above.)
            file.write_all_at(&new, (current.index * current.slot_size) as u64)
                .map_err(|e| fail("write", e))?;
            file.sync_data().map_err(|e| fail("fdatasync", e))?;
        }
        Ok(())
    }

    /// A new file, `payload` in both slots: temporary file, fsync, rename, directory fsync.
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
                .custom_flags(libc::O_NOFOLLOW)
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
        sync_dir(&self.users)
    }

    /// What the record file of account `uid` holds, slot by slot, and why it fails closed if
    /// it does: for `twostepctl user repair`. `None` when the account has no record.
    ///
    /// # Errors
    /// [`Error::CorruptRecord`] when the file is not trusted (type, owner, mode): a repair
    /// never reads through it; [`Error::Storage`] when it cannot be read.
    pub fn inspect(&self, uid: u32) -> Result<Option<Inspection>, Error> {
        let who = account(uid);
        let path = self.path_for(uid);
        let Some(file) = open_record(&path, false).map_err(|r| refused(&who, r))? else {
            return Ok(None);
        };
        let bytes = read_bounded(&file).map_err(|e| Error::Storage {
            user: who.clone(),
            reason: format!("read: {e}"),
        })?;
        let damage = decode_current(&bytes, uid, &self.sealer).err();
        let slots = match slots(&bytes) {
            Ok((_, found)) => found
                .iter()
                .map(|s| match s {
                    Slot::Valid {
                        generation,
                        payload,
                        ..
                    } => SlotView::Readable {
                        generation: *generation,
                        record: decode_payload(payload, uid, &self.sealer).map(Box::new),
                    },
                    Slot::Empty => SlotView::Empty,
                    Slot::Damaged(why) => SlotView::Unreadable((*why).to_owned()),
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        Ok(Some(Inspection {
            path,
            slots,
            damage,
        }))
    }

    /// Replace `user`'s damaged record with `record` (at `generation`) written whole, and
    /// keep the bytes it replaces as `<record>.damaged-<at>` (mode 0600, not a record:
    /// [`FileStore::users`] does not list it). For an admin's repair, under the user's lock.
    ///
    /// # Errors
    /// [`Error::CorruptRecord`] when the file is not trusted; [`Error::Storage`] when a
    /// step fails (the damaged file is then left as it was).
    pub fn replace_damaged(
        &self,
        record: &Record,
        generation: u64,
        at: UnixTime,
    ) -> Result<PathBuf, Error> {
        let user = record.user.as_str();
        let fail = |what: &str, e: String| Error::Storage {
            user: user.to_owned(),
            reason: format!("{what}: {e}"),
        };
        let uid = record
            .uid
            .ok_or_else(|| fail("replace", "record without a uid".into()))?;
        let payload = payload(record, &self.sealer).map_err(|e| fail("encode", e))?;
        let path = self.path_for(uid);
        let old = match open_record(&path, false).map_err(|r| refused(user, r))? {
            Some(f) => read_bounded(&f).map_err(|e| fail("read", e))?,
            None => Vec::new(),
        };
        let mut kept = path.clone().into_os_string();
        kept.push(format!(".damaged-{}", at.0));
        let kept = PathBuf::from(kept);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&kept)
            .map_err(|e| fail("keep the damaged file", e.to_string()))?;
        f.write_all(&old)
            .and_then(|()| f.sync_all())
            .map_err(|e| fail("keep the damaged file", e.to_string()))?;
        if record.enrolled() {
            self.set_enrolled(uid, true)?;
        }
        self.write_whole(uid, user, &payload, generation)?;
        Ok(kept)
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
            user: account(uid),
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

    /// Whether `user` has a record in the earlier, name-keyed layout (one `lstat`).
    pub fn has_legacy_record(&self, user: &str) -> bool {
        fs::symlink_metadata(self.users.join(legacy_file_name(user))).is_ok()
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
        self.with_uid_lock(uid, || self.migrate_locked(user, uid))
    }

    fn migrate_locked(&self, user: &str, uid: u32) -> Result<Migration, Error> {
        let legacy = self.users.join(legacy_file_name(user));
        let Some(file) = open_record(&legacy, false).map_err(|r| refused(user, r))? else {
            return Ok(Migration::Nothing);
        };
        let corrupt = |reason: String| Error::CorruptRecord {
            user: user.to_owned(),
            reason,
        };
        let bytes = read_bounded(&file).map_err(&corrupt)?;
        let mut record = decode_legacy(&bytes, user, &self.sealer).map_err(corrupt)?;
        record.uid = Some(uid);
        match self.load(uid)? {
            None => {
                let generation = current(&bytes).map_or(1, |c| c.generation);
                if record.enrolled() {
                    self.set_enrolled(uid, true)?;
                }
                let payload = payload(&record, &self.sealer).map_err(|reason| Error::Storage {
                    user: record.user.clone(),
                    reason,
                })?;
                self.write_whole(uid, user, &payload, generation)?;
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

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(dir)
        .and_then(|d| d.sync_all())
}

impl super::Store for FileStore {
    fn load(&self, who: &Account) -> Result<Option<Record>, Error> {
        self.with_uid_lock(who.uid, || self.load_locked(who))
    }

    fn load_uid(&self, uid: u32) -> Result<Option<Record>, Error> {
        self.with_uid_lock(uid, || self.load(uid))
    }

    fn list(&self) -> Result<Vec<u32>, Error> {
        let files = self.users().map_err(|reason| Error::Storage {
            user: "(all)".into(),
            reason,
        })?;
        let mut all: BTreeSet<u32> = files.into_iter().collect();
        all.extend(lock(&self.enrolled).iter().copied());
        Ok(all.into_iter().collect())
    }

    fn remove(&self, uid: u32) -> Result<(), Error> {
        self.with_uid_lock(uid, || {
            FileStore::remove(self, uid)?;
            self.set_enrolled(uid, false)
        })
    }

    fn transact(
        &self,
        who: &Account,
        f: &mut dyn FnMut(&mut Option<Record>) -> super::Write,
    ) -> Result<(), Error> {
        self.with_uid_lock(who.uid, || {
            let (mut record, seen) = self.load_locked_seen(who, false)?;
            match (f(&mut record), record) {
                (super::Write::Save, Some(r)) => self.save_listed_seen(who.uid, &r, seen.as_ref()),
                _ => Ok(()),
            }
        })
    }

    fn replace_vanished(&self, who: &Account, fresh: &Record) -> Result<bool, Error> {
        self.with_uid_lock(who.uid, || {
            if !self.is_listed(who.uid)
                || open_record(&self.path_for(who.uid), false)
                    .map_err(|r| refused(&who.name, r))?
                    .is_some()
                || open_record(&self.users.join(legacy_file_name(&who.name)), false)
                    .map_err(|r| refused(&who.name, r))?
                    .is_some()
            {
                return Ok(false);
            }
            self.save_listed(who.uid, fresh)?;
            Ok(true)
        })
    }

    fn files(&self) -> Option<&FileStore> {
        Some(self)
    }

    fn sealer(&self) -> Option<&Sealer> {
        Some(&self.sealer)
    }

    fn key_ids(&self) -> Result<BTreeSet<String>, Error> {
        let uids = self.users().map_err(|reason| Error::Storage {
            user: "(all)".into(),
            reason,
        })?;
        let mut ids = BTreeSet::new();
        for uid in uids {
            if let Ok(Some(value)) = self.stored_value(uid) {
                ids.extend(crate::core::seal::key_ids_in(&value));
            }
        }
        Ok(ids)
    }

    fn reseal(&self, uid: u32) -> Result<bool, Error> {
        self.with_uid_lock(uid, || {
            let needs = match self.stored_value(uid)? {
                Some(value) => self.sealer.needs_reseal(&value),
                None => false,
            };
            match self.load(uid)? {
                Some(record) if needs => self.save_listed(uid, &record).map(|()| true),
                _ => Ok(false),
            }
        })
    }
}

impl FileStore {
    /// The record of `uid` as stored (secrets as they are), `None` when it has none.
    ///
    /// # Errors
    /// As [`FileStore::load`].
    pub fn stored_value(&self, uid: u32) -> Result<Option<serde_json::Value>, Error> {
        let who = account(uid);
        let path = self.path_for(uid);
        let Some(file) = open_record(&path, false).map_err(|r| refused(&who, r))? else {
            return Ok(None);
        };
        let bytes = read_bounded(&file).map_err(|e| corrupt(&who, e))?;
        stored_value(&bytes)
            .map(Some)
            .map_err(|reason| refused(&who, format!("{}: {reason}", path.display())))
    }
}

/// What [`FileStore::migrate_legacy`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Migration {
    /// No name-keyed record of that user.
    Nothing,
    /// Moved: the record now stored under the uid.
    Moved(Box<Record>),
    /// The uid already has a different record; the name-keyed file is left in place.
    Conflict,
}

/// How errors and logs name an account at the store's level (the engine adds the name).
fn account(uid: u32) -> String {
    format!("uid {uid}")
}

/// A record file refused or damaged: logged here (path, owner, mode or slots), and the
/// user fails closed.
fn refused(user: &str, reason: String) -> Error {
    log::error!(
        "record of user={} fails closed: {reason}",
        crate::core::audit::field(user)
    );
    corrupt(user, reason)
}

fn corrupt(user: &str, reason: String) -> Error {
    Error::CorruptRecord {
        user: user.to_owned(),
        reason,
    }
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
/// [`FileStore::save`].
///
/// # Errors
/// The record cannot be serialized or is too large.
pub fn file_bytes(record: &Record) -> Result<Vec<u8>, String> {
    Ok(whole_file(1, &payload(record, &Sealer::plaintext())?))
}

/// [`file_bytes`] with the secrets sealed by `sealer`, as the daemon writes a new record.
///
/// # Errors
/// The record cannot be serialized or sealed, or is too large.
pub fn file_bytes_sealed(record: &Record, sealer: &Sealer) -> Result<Vec<u8>, String> {
    Ok(whole_file(1, &payload(record, sealer)?))
}

/// A complete record file (generation 1) whose payload is `json`, taken as it is: for tests
/// that write a record of an earlier shape (which the daemon reads and rewrites in the
/// current one).
///
/// # Errors
/// The payload is too large for a slot.
pub fn file_bytes_of_json(json: &[u8]) -> Result<Vec<u8>, String> {
    if HEADER + json.len() > MAX_SLOT {
        return Err(format!("record of {} bytes is too large", json.len()));
    }
    Ok(whole_file(1, json))
}

/// The enrolment list (`state_dir/enrolled`) naming `uids`, as the daemon writes it. For
/// tools that prepare state directories (the benchmark): a state directory whose records
/// were enrolled through the daemon has every one of their uids on the list.
pub fn enrolled_file_bytes(uids: impl IntoIterator<Item = u32>) -> Vec<u8> {
    let mut text = String::from(ENROLLED_HEADER);
    text.push('\n');
    for uid in uids {
        text.push_str(&uid.to_string());
        text.push('\n');
    }
    text.into_bytes()
}

/// The record in a record file's bytes, checked as [`FileStore::load`] checks it.
///
/// # Errors
/// Why the bytes are not a valid record of account `uid`.
pub fn decode(bytes: &[u8], uid: u32) -> Result<Record, String> {
    decode_with(bytes, uid, &Sealer::plaintext())
}

/// [`decode`] with `sealer` opening sealed secrets.
///
/// # Errors
/// As [`decode`], and a secret that does not open.
pub fn decode_with(bytes: &[u8], uid: u32, sealer: &Sealer) -> Result<Record, String> {
    decode_current(bytes, uid, sealer).map(|(_, record)| record)
}

/// The record as stored in a record file's bytes (secrets as they are, sealed or not),
/// without any check beyond the slots' checksums: for exports and the key check at start.
///
/// # Errors
/// The bytes are not a record file or not JSON.
pub fn stored_value(bytes: &[u8]) -> Result<serde_json::Value, String> {
    serde_json::from_slice(current(bytes)?.payload).map_err(|e| format!("invalid record: {e}"))
}

fn decode_current<'a>(
    bytes: &'a [u8],
    uid: u32,
    sealer: &Sealer,
) -> Result<(Current<'a>, Record), String> {
    decode_current_noting(bytes, uid, sealer).map(|(current, record, _)| (current, record))
}

/// [`decode_current`], and whether the record needs a re-seal (`Sealer::needs_reseal`).
fn decode_current_noting<'a>(
    bytes: &'a [u8],
    uid: u32,
    sealer: &Sealer,
) -> Result<(Current<'a>, Record, bool), String> {
    let current = current(bytes)?;
    let (record, reseal) = decode_payload_noting(current.payload, uid, sealer)?;
    Ok((current, record, reseal))
}

fn decode_payload(payload: &[u8], uid: u32, sealer: &Sealer) -> Result<Record, String> {
    decode_payload_noting(payload, uid, sealer).map(|(record, _)| record)
}

fn decode_payload_noting(
    payload: &[u8],
    uid: u32,
    sealer: &Sealer,
) -> Result<(Record, bool), String> {
    let (record, reseal) = decode_any(payload, sealer)?;
    if record.uid != Some(uid) {
        return Err("record belongs to another account".into());
    }
    Ok((record, reseal))
}

/// A record file of the name-keyed layout: it carries no uid, and the name it names.
fn decode_legacy(bytes: &[u8], user: &str, sealer: &Sealer) -> Result<Record, String> {
    let (record, _) = decode_any(current(bytes)?.payload, sealer)?;
    if record.uid.is_some() || record.user != user {
        return Err("record belongs to another user".into());
    }
    Ok(record)
}

/// The record in `payload`, and whether it needs a re-seal.
fn decode_any(payload: &[u8], sealer: &Sealer) -> Result<(Record, bool), String> {
    let value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| format!("invalid record: {e}"))?;
    let (record, reseal) = sealer.decode_noting(value)?;
    if record.version != RECORD_VERSION {
        return Err(format!("unknown record version {}", record.version));
    }
    Ok((record, reseal))
}

fn payload(record: &Record, sealer: &Sealer) -> Result<Vec<u8>, String> {
    let payload = serde_json::to_vec(&sealer.encode(record)?).map_err(|e| e.to_string())?;
    if HEADER + payload.len() > MAX_SLOT {
        return Err(format!("record of {} bytes is too large", payload.len()));
    }
    Ok(payload)
}

/// The enrolment list: at most 16 MiB (1.5 million uids).
fn read_bounded_list(mut file: &File) -> Result<Vec<u8>, String> {
    const MAX_LIST: u64 = 16 << 20;
    let mut bytes = Vec::new();
    (&mut file)
        .take(MAX_LIST + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_LIST {
        return Err("too large".into());
    }
    Ok(bytes)
}

fn read_bounded(mut file: &File) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::with_capacity(2 * BLOCK);
    (&mut file)
        .take(2 * MAX_SLOT as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// The slot size and both slots of a record file.
fn slots(bytes: &[u8]) -> Result<(usize, [Slot<'_>; 2]), String> {
    let len = bytes.len();
    if len == 0 || len % (2 * BLOCK) != 0 || len > 2 * MAX_SLOT {
        return Err(format!("not a record file ({len} bytes)"));
    }
    let slot_size = len / 2;
    let (first, second) = bytes.split_at(slot_size);
    Ok((slot_size, [parse_slot(first), parse_slot(second)]))
}

/// The newest slot of a record file whose every slot holds (see the module doc).
fn current(bytes: &[u8]) -> Result<Current<'_>, String> {
    let (slot_size, found) = slots(bytes)?;
    let pick = |index, generation, payload, upgrade| {
        Ok(Current {
            index,
            generation,
            payload,
            slot_size,
            upgrade,
        })
    };
    match found {
        [Slot::Valid {
            generation: a,
            payload: pa,
            legacy: la,
        }, Slot::Valid {
            generation: b,
            payload: pb,
            legacy: lb,
        }] => {
            if a == b && pa != pb {
                Err(format!(
                    "damaged: both slots claim generation {a} with different contents"
                ))
            } else if b > a {
                pick(1, b, pb, la)
            } else {
                pick(0, a, pa, lb)
            }
        }
        [Slot::Valid {
            generation,
            payload,
            legacy: true,
        }, Slot::Empty] => pick(0, generation, payload, true),
        [first, second] => Err(damage_text(&first, &second)),
    }
}

/// What is wrong with a file whose slots do not all hold, for logs and errors.
fn damage_text(first: &Slot<'_>, second: &Slot<'_>) -> String {
    let one = |i: usize, s: &Slot<'_>| match s {
        Slot::Valid { generation, .. } => format!("slot {i} holds generation {generation}"),
        Slot::Empty => format!("slot {i} is empty (zeros)"),
        Slot::Damaged(why) => format!("slot {i} is unreadable ({why})"),
    };
    format!(
        "damaged: {}, {}; a damaged slot may have held the latest acknowledged state, so this \
         user fails closed until an admin runs `twostepctl user repair`",
        one(0, first),
        one(1, second)
    )
}

/// A slot's generation and payload, if its header and checksum hold.
fn parse_slot(slot: &[u8]) -> Slot<'_> {
    if slot.iter().all(|b| *b == 0) {
        return Slot::Empty;
    }
    let Some((header, rest)) = slot.split_at_checked(HEADER) else {
        return Slot::Damaged("too short");
    };
    let (magic, fields) = header.split_at(MAGIC.len());
    let legacy = match magic {
        m if m == MAGIC => false,
        m if m == MAGIC_V1 => true,
        _ => return Slot::Damaged("bad magic"),
    };
    let u64_at = |at: usize| fields.get(at..at + 8).and_then(|b| b.try_into().ok());
    let u32_at = |at: usize| fields.get(at..at + 4).and_then(|b| b.try_into().ok());
    let (Some(generation), Some(length), Some(crc)) = (
        u64_at(0).map(u64::from_le_bytes),
        u32_at(8).map(u32::from_le_bytes),
        u32_at(12).map(u32::from_le_bytes),
    ) else {
        return Slot::Damaged("short header");
    };
    let Some(payload) = usize::try_from(length).ok().and_then(|l| rest.get(..l)) else {
        return Slot::Damaged("length out of range");
    };
    if checksum(generation, length, payload) != crc {
        return Slot::Damaged("checksum mismatch");
    }
    Slot::Valid {
        generation,
        payload,
        legacy,
    }
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

/// A file with `payload` in both slots, each slot whole blocks.
fn whole_file(generation: u64, payload: &[u8]) -> Vec<u8> {
    let slot_size = (HEADER + payload.len()).div_ceil(BLOCK) * BLOCK;
    let mut one = slot(generation, payload);
    one.resize(slot_size, 0);
    let mut bytes = one.clone();
    bytes.extend_from_slice(&one);
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
    use std::os::unix::fs::PermissionsExt;

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

    fn store() -> (tempfile::TempDir, FileStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStore::open(&dir.path().join("state")).unwrap();
        (dir, s)
    }

    /// A new file of mode 0600, as the store and tools that prepare state write them.
    fn write_private(path: &Path, bytes: &[u8]) {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .unwrap();
        f.write_all(bytes).unwrap();
    }

    fn with_failures(user: &str, n: u32) -> Record {
        let mut r = rec(user);
        r.failures = n;
        r
    }

    #[test]
    fn round_trip_and_private_modes() {
        let (dir, s) = store();
        assert_eq!(s.load(uid_of("alice")).unwrap(), None);
        let r = with_failures("alice", 3);
        s.save(&r).unwrap();
        assert_eq!(s.load(uid_of("alice")).unwrap(), Some(r));
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
    fn a_kept_decoded_record_serves_only_the_same_bytes_under_the_same_keys() {
        let (dir, s) = store();
        let uid = uid_of("alice");
        let keyed = enrolled("alice");
        s.save(&keyed).unwrap();
        assert_eq!(s.load(uid).unwrap().as_ref(), Some(&keyed));
        assert!(lock(&s.recent).is_empty(), "only a login's Begin keeps");
        let (r, _) = s.load_seen(uid, true).unwrap().unwrap();
        assert_eq!(r, keyed);
        assert!(lock(&s.recent).contains_key(&uid), "kept after a decode");
        // Another writer changes the file behind the store (a restore, a second daemon):
        // the next load decodes what is there now.
        let mut other = keyed.clone();
        other.failures = 7;
        fs::write(s.path_for(uid), file_bytes(&other).unwrap()).unwrap();
        assert_eq!(s.load(uid).unwrap().as_ref(), Some(&other));
        // A change of keys: the secret (plain, this store had no key) now needs a re-seal,
        // which a copy decoded before the change would not say.
        let (_, seen) = s.load_seen(uid, true).unwrap().unwrap();
        assert!(!seen.reseal);
        let key_file = dir.path().join("store.key");
        write_private(&key_file, &[9u8; 32]);
        s.sealer.seal_with_file(&key_file).unwrap();
        let (r, seen) = s.load_seen(uid, true).unwrap().unwrap();
        assert!(seen.reseal);
        assert_eq!(r, other);
        // A save drops the copy, whose secrets are then wiped.
        s.save(&keyed).unwrap();
        assert!(!lock(&s.recent).contains_key(&uid));
        assert_eq!(s.load(uid).unwrap().as_ref(), Some(&keyed));
        assert!(lock(&s.recent).is_empty());
    }

    #[test]
    fn no_more_than_recent_max_decoded_records_are_kept() {
        let (_d, s) = store();
        for uid in 1..=(RECENT_MAX as u32 + 1) {
            let r = Record::for_account(&format!("u{uid}"), uid);
            s.save(&r).unwrap();
            assert_eq!(s.load_seen(uid, true).unwrap().map(|(r, _)| r), Some(r));
            assert!(lock(&s.recent).len() <= RECENT_MAX);
        }
    }

    #[test]
    fn saves_alternate_slots_in_place() {
        let (_d, s) = store();
        s.save(&with_failures("alice", 0)).unwrap();
        let before = fs::metadata(s.path_for(uid_of("alice"))).unwrap();
        for n in 1..=5 {
            s.save(&with_failures("alice", n)).unwrap();
            assert_eq!(
                s.load(uid_of("alice")).unwrap(),
                Some(with_failures("alice", n))
            );
            let bytes = fs::read(s.path_for(uid_of("alice"))).unwrap();
            let c = current(&bytes).unwrap();
            assert_eq!(c.generation, u64::from(n) + 1);
            assert_eq!(c.index, usize::try_from(n % 2).unwrap());
        }
        let after = fs::metadata(s.path_for(uid_of("alice"))).unwrap();
        assert_eq!((before.ino(), before.len()), (after.ino(), after.len()));
        assert_eq!(after.len(), 2 * BLOCK as u64);
    }

    /// Generation of each slot of `user`'s file, and the index of the newest.
    fn newest_slot(s: &FileStore, user: &str) -> (usize, usize) {
        let bytes = fs::read(s.path_for(uid_of(user))).unwrap();
        let c = current(&bytes).unwrap();
        (c.index, c.slot_size)
    }

    /// Assert that `user` fails closed with `needle` in the reason, that a save is refused
    /// and leaves the file as it was.
    fn assert_fails_closed(s: &FileStore, user: &str, needle: &str) {
        let before = fs::read(s.path_for(uid_of(user))).unwrap();
        match s.load(uid_of(user)) {
            Err(Error::CorruptRecord { reason, .. }) => {
                assert!(reason.contains(needle), "{reason}");
            }
            other => panic!("expected CorruptRecord, got {other:?}"),
        }
        let saved = s.save(&with_failures(user, 0));
        assert!(
            matches!(saved, Err(Error::CorruptRecord { .. })),
            "{saved:?}"
        );
        assert_eq!(fs::read(s.path_for(uid_of(user))).unwrap(), before);
    }

    #[test]
    fn bit_rot_in_either_slot_fails_closed_instead_of_rolling_back() {
        for newest in [true, false] {
            let (_d, s) = store();
            s.save(&with_failures("bob", 0)).unwrap();
            for n in 1..=4 {
                s.save(&with_failures("alice", n)).unwrap();
            }
            let (index, size) = newest_slot(&s, "alice");
            let rotten = if newest { index } else { 1 - index };
            let path = s.path_for(uid_of("alice"));
            let mut bytes = fs::read(&path).unwrap();
            bytes[rotten * size + HEADER + 7] ^= 0x04;
            fs::write(&path, &bytes).unwrap();
            // Not the older slot's 3 failures: nothing at all, until repaired.
            assert_fails_closed(&s, "alice", "checksum mismatch");
            let err = s.load(uid_of("alice")).unwrap_err().to_string();
            assert!(
                err.contains(&format!("slot {rotten} is unreadable")),
                "{err}"
            );
            assert!(err.contains("twostepctl user repair"), "{err}");
            assert_eq!(
                s.load(uid_of("bob")).unwrap(),
                Some(with_failures("bob", 0))
            );
        }
    }

    #[test]
    fn a_torn_write_fails_closed_until_repaired() {
        let (_d, s) = store();
        s.save(&with_failures("alice", 1)).unwrap(); // both slots, generation 1
        s.save(&with_failures("alice", 2)).unwrap(); // slot 1, generation 2
                                                     // A crash in the middle of writing slot 1: the second half of what was written
                                                     // never reached the disk.
        let path = s.path_for(uid_of("alice"));
        let mut bytes = fs::read(&path).unwrap();
        let written = HEADER
            + serde_json::to_vec(&with_failures("alice", 2))
                .unwrap()
                .len();
        for b in &mut bytes[BLOCK + written / 2..BLOCK + written] {
            *b = 0;
        }
        fs::write(&path, &bytes).unwrap();
        assert_fails_closed(&s, "alice", "slot 1 is unreadable");

        // What an admin's repair sees: the older slot decoded, the torn one unreadable.
        let seen = s.inspect(uid_of("alice")).unwrap().unwrap();
        assert!(seen.damage.as_deref().unwrap().contains("slot 1"));
        assert!(matches!(
            &seen.slots[..],
            [
                SlotView::Readable { generation: 1, record: Ok(r) },
                SlotView::Unreadable(_)
            ] if **r == with_failures("alice", 1)
        ));
        assert_eq!(seen.newest_readable().map(|(i, g, _)| (i, g)), Some((0, 1)));

        // The repair writes a whole new file and keeps the damaged one aside.
        let kept = s
            .replace_damaged(&with_failures("alice", 9), 3, UnixTime(1234))
            .unwrap();
        assert_eq!(fs::read(&kept).unwrap(), bytes);
        assert!(kept.to_string_lossy().ends_with(".rec.damaged-1234"));
        assert_eq!(fs::metadata(&kept).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            s.load(uid_of("alice")).unwrap(),
            Some(with_failures("alice", 9))
        );
        assert_eq!(s.users().unwrap(), [1001]);
        assert!(s
            .inspect(uid_of("alice"))
            .unwrap()
            .unwrap()
            .damage
            .is_none());
        // Saves go on in place from the new generation.
        s.save(&with_failures("alice", 10)).unwrap();
        let bytes = fs::read(&path).unwrap();
        assert_eq!(current(&bytes).unwrap().generation, 4);
    }

    #[test]
    fn a_zeroed_slot_or_two_slots_claiming_one_generation_is_damage() {
        let (_d, s) = store();
        s.save(&with_failures("alice", 1)).unwrap();
        let path = s.path_for(uid_of("alice"));
        let mut bytes = fs::read(&path).unwrap();
        for b in &mut bytes[BLOCK..] {
            *b = 0;
        }
        fs::write(&path, &bytes).unwrap();
        assert_fails_closed(&s, "alice", "slot 1 is empty");

        let mut two = whole_file(
            5,
            &payload(&with_failures("alice", 1), &Sealer::plaintext()).unwrap(),
        );
        let other = slot(
            5,
            &payload(&with_failures("alice", 2), &Sealer::plaintext()).unwrap(),
        );
        two[BLOCK..BLOCK + other.len()].copy_from_slice(&other);
        fs::write(&path, &two).unwrap();
        assert_fails_closed(&s, "alice", "both slots claim generation 5");
    }

    #[test]
    fn an_old_format_file_with_an_empty_second_slot_is_read_and_upgraded() {
        let (_d, s) = store();
        let path = s.path_for(uid_of("alice"));
        let mut old = whole_file(
            7,
            &payload(&with_failures("alice", 2), &Sealer::plaintext()).unwrap(),
        );
        old[..MAGIC_V1.len()].copy_from_slice(MAGIC_V1);
        for b in &mut old[BLOCK..] {
            *b = 0;
        }
        write_private(&path, &old);
        assert_eq!(
            s.load(uid_of("alice")).unwrap(),
            Some(with_failures("alice", 2))
        );
        s.save(&with_failures("alice", 3)).unwrap();
        // Both slots now hold generation 8 in the current format...
        let bytes = fs::read(&path).unwrap();
        assert_eq!(&bytes[..MAGIC.len()], MAGIC);
        assert_eq!(&bytes[BLOCK..BLOCK + MAGIC.len()], MAGIC);
        assert_eq!(current(&bytes).unwrap().generation, 8);
        assert_eq!(
            s.load(uid_of("alice")).unwrap(),
            Some(with_failures("alice", 3))
        );
        // ...so a slot zeroed later is damage, not "never written".
        let mut zeroed = bytes.clone();
        for b in &mut zeroed[BLOCK..] {
            *b = 0;
        }
        fs::write(&path, &zeroed).unwrap();
        assert_fails_closed(&s, "alice", "slot 1 is empty");
    }

    #[test]
    fn an_untrusted_record_file_is_neither_read_nor_written() {
        assert!(nix::unistd::geteuid().is_root(), "this test needs root");
        let (dir, s) = store();
        s.save(&with_failures("bob", 1)).unwrap();
        // A valid record outside the state directory, reached by a link.
        let outside = dir.path().join("outside.rec");
        fs::write(&outside, file_bytes(&with_failures("alice", 0)).unwrap()).unwrap();
        let path = s.path_for(uid_of("alice"));
        std::os::unix::fs::symlink(&outside, &path).unwrap();
        let before = fs::read(&outside).unwrap();
        match s.load(uid_of("alice")) {
            Err(Error::CorruptRecord { reason, .. }) => {
                assert!(reason.contains("a symbolic link"), "{reason}");
                assert!(reason.contains(&path.display().to_string()), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            s.save(&with_failures("alice", 5)),
            Err(Error::CorruptRecord { .. })
        ));
        assert!(matches!(
            s.inspect(uid_of("alice")),
            Err(Error::CorruptRecord { .. })
        ));
        assert_eq!(fs::read(&outside).unwrap(), before);
        assert!(fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink());
        fs::remove_file(&path).unwrap();

        let good = file_bytes(&with_failures("alice", 0)).unwrap();
        let set = |mode: u32, uid: u32| {
            let _ = fs::remove_file(&path);
            fs::write(&path, &good).unwrap();
            // chown first: it clears set-id bits.
            std::os::unix::fs::chown(&path, Some(uid), None).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        };
        for (mode, uid, needle) in [
            (0o666, 0, "mode 0666"),
            (0o644, 0, "mode 0644"),
            (0o640, 0, "mode 0640"),
            (0o4600, 0, "mode 4600"),
            (0o600, 65534, "owned by uid 65534"),
        ] {
            set(mode, uid);
            let err = s.load(uid_of("alice")).unwrap_err().to_string();
            assert!(err.contains(needle) && err.contains("expected"), "{err}");
            let saved = s.save(&with_failures("alice", 5));
            assert!(
                matches!(saved, Err(Error::CorruptRecord { .. })),
                "{saved:?}"
            );
            assert_eq!(fs::read(&path).unwrap(), good);
            assert_eq!(
                s.load(uid_of("bob")).unwrap(),
                Some(with_failures("bob", 1))
            );
        }
        // A second name (hard link) elsewhere.
        set(0o600, 0);
        let other_name = dir.path().join("other-name");
        fs::hard_link(&path, &other_name).unwrap();
        let err = s.load(uid_of("alice")).unwrap_err().to_string();
        assert!(err.contains("2 link(s)"), "{err}");
        fs::remove_file(&other_name).unwrap();
        assert_eq!(
            s.load(uid_of("alice")).unwrap(),
            Some(with_failures("alice", 0))
        );
        // A FIFO is refused without blocking.
        fs::remove_file(&path).unwrap();
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = s.load(uid_of("alice")).unwrap_err().to_string();
        assert!(err.contains("a FIFO"), "{err}");
    }

    #[test]
    fn an_unsafe_state_directory_is_refused_and_left_as_it_is() {
        assert!(nix::unistd::geteuid().is_root(), "this test needs root");
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        FileStore::open(&state).unwrap();
        for (target, mode) in [(state.clone(), 0o755), (state.join("users"), 0o750)] {
            fs::set_permissions(&target, fs::Permissions::from_mode(mode)).unwrap();
            let err = FileStore::open(&state).err().unwrap();
            assert!(err.contains(&target.display().to_string()), "{err}");
            assert!(err.contains(&format!("mode {mode:04o}")), "{err}");
            assert!(err.contains("expected a directory owned by uid 0"), "{err}");
            assert!(err.contains("mode 0700"), "{err}");
            // Not silently chmod-ed.
            assert_eq!(fs::metadata(&target).unwrap().mode() & 0o777, mode);
            fs::set_permissions(&target, fs::Permissions::from_mode(0o700)).unwrap();
        }
        FileStore::open(&state).unwrap();
        FileStore::check(&state).unwrap();
        FileStore::check(&dir.path().join("not-yet")).unwrap();
        assert!(!dir.path().join("not-yet").exists());
        fs::set_permissions(&state, fs::Permissions::from_mode(0o701)).unwrap();
        assert!(FileStore::check(&state).unwrap_err().contains("mode 0701"));
        fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
        // A parent others may write to.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let err = FileStore::open(&state).err().unwrap();
        assert!(err.contains("unsafe path") && err.contains("0777"), "{err}");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        // A file where the directory should be.
        let file = dir.path().join("file");
        fs::write(&file, b"").unwrap();
        let err = FileStore::open(&file).err().unwrap();
        assert!(err.contains("a regular file"), "{err}");
    }

    #[test]
    fn a_record_that_outgrows_its_slots_is_rewritten_whole() {
        let (_d, s) = store();
        s.save(&rec("alice")).unwrap();
        let mut big = rec("alice");
        for i in 0..200 {
            big.events.push(crate::core::record::Event {
                at: crate::core::UnixTime(i),
                what: "x".repeat(40),
                kind: crate::core::audit::EventKind::Unknown,
                service: String::new(),
                rhost: String::new(),
                tty: String::new(),
                method: String::new(),
                actor: String::new(),
                actor_uid: None,
                caller_uid: None,
            });
        }
        s.save(&big).unwrap();
        assert_eq!(s.load(uid_of("alice")).unwrap(), Some(big.clone()));
        let len = fs::metadata(s.path_for(uid_of("alice"))).unwrap().len();
        assert!(
            len > 2 * BLOCK as u64 && len % (2 * BLOCK as u64) == 0,
            "{len}"
        );
        // And the generation went on: a later in-place save still wins.
        s.save(&with_failures("alice", 4)).unwrap();
        assert_eq!(
            s.load(uid_of("alice")).unwrap(),
            Some(with_failures("alice", 4))
        );
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

    fn acct(user: &str) -> Account {
        Account {
            name: user.into(),
            uid: uid_of(user),
            gid: uid_of(user),
        }
    }

    fn enrolled(user: &str) -> Record {
        let mut r = rec(user);
        let key = crate::core::record::TotpKey {
            secret: crate::core::record::Secret("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ".into()),
            algorithm: twostep_config::Algorithm::SHA1,
            digits: 6,
            period: 30,
            created: UnixTime(1),
        };
        r.replace_authenticators(key, 1, UnixTime(1));
        r
    }

    fn list_file(dir: &tempfile::TempDir) -> String {
        fs::read_to_string(dir.path().join("state").join(ENROLLED_FILE)).unwrap()
    }

    #[test]
    fn the_enrolment_list_follows_enrolments_and_a_listed_missing_record_fails_closed() {
        use crate::core::store::{update, Store, Write};
        let (dir, s) = store();
        assert_eq!(list_file(&dir), format!("{ENROLLED_HEADER}\n"));
        let set = |user: &str, r: Record| {
            update(&s, &acct(user), |slot| {
                *slot = Some(r);
                (Write::Save, Ok(()))
            })
        };
        set("alice", enrolled("alice")).unwrap();
        set("bob", enrolled("bob")).unwrap();
        set("carol", rec("carol")).unwrap();
        assert_eq!(list_file(&dir), format!("{ENROLLED_HEADER}\n1001\n1002\n"));
        // Bob is switched off: taken off the list; carol (never enrolled) was never on it.
        set("bob", rec("bob")).unwrap();
        assert_eq!(list_file(&dir), format!("{ENROLLED_HEADER}\n1001\n"));

        fs::remove_file(s.path_for(uid_of("alice"))).unwrap();
        fs::remove_file(s.path_for(uid_of("bob"))).unwrap();
        let err = Store::load(&s, &acct("alice")).unwrap_err();
        assert!(matches!(err, Error::CorruptRecord { .. }), "{err}");
        assert!(err.to_string().contains("missing"), "{err}");
        let ran = update(&s, &acct("alice"), |_| (Write::Save, Ok(())));
        assert!(ran.is_err(), "the closure never runs on a vanished record");
        // Bob is simply not enrolled any more; the list is in the listing.
        assert_eq!(Store::load(&s, &acct("bob")).unwrap(), None);
        assert_eq!(Store::list(&s).unwrap(), vec![1001, 1003]);
        // Read back at the next start.
        drop(s);
        let s = FileStore::open(&dir.path().join("state")).unwrap();
        assert!(Store::load(&s, &acct("alice")).is_err());
        // The admin's way out; a record that exists is never replaced this way.
        assert!(s.replace_vanished(&acct("alice"), &rec("alice")).unwrap());
        assert_eq!(Store::load(&s, &acct("alice")).unwrap(), Some(rec("alice")));
        assert!(!s.replace_vanished(&acct("alice"), &rec("alice")).unwrap());
        assert_eq!(list_file(&dir), format!("{ENROLLED_HEADER}\n"));
    }

    #[test]
    fn a_state_dir_without_a_list_gets_one_with_every_account_that_has_a_record() {
        let (dir, s) = store();
        s.save(&enrolled("alice")).unwrap();
        s.save(&rec("carol")).unwrap();
        drop(s);
        fs::remove_file(dir.path().join("state").join(ENROLLED_FILE)).unwrap();
        let s = FileStore::open(&dir.path().join("state")).unwrap();
        assert_eq!(list_file(&dir), format!("{ENROLLED_HEADER}\n1001\n1003\n"));
        let meta = fs::metadata(dir.path().join("state").join(ENROLLED_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // An untrusted or garbled list refuses the start.
        drop(s);
        let list = dir.path().join("state").join(ENROLLED_FILE);
        fs::write(&list, "not a list\n").unwrap();
        assert!(FileStore::open(&dir.path().join("state")).is_err());
        fs::write(&list, format!("{ENROLLED_HEADER}\n1001\n")).unwrap();
        assert!(FileStore::check(&dir.path().join("state")).is_ok());
        fs::set_permissions(&list, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(FileStore::open(&dir.path().join("state")).is_err());
        assert!(FileStore::check(&dir.path().join("state")).is_err());
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
            fs::write(s.path_for(uid_of("alice")), &bytes).unwrap();
            assert!(matches!(
                s.load(uid_of("alice")),
                Err(Error::CorruptRecord { .. })
            ));
            assert!(s.load(uid_of("bob")).unwrap().is_some());
            let saved = s.save(&with_failures("alice", 1));
            assert!(
                matches!(saved, Err(Error::CorruptRecord { .. })),
                "{saved:?}"
            );
            assert_eq!(fs::read(s.path_for(uid_of("alice"))).unwrap(), bytes);
        }
        // A record copied under another account's uid is refused too.
        fs::copy(s.path_for(uid_of("bob")), s.path_for(uid_of("alice"))).unwrap();
        assert!(matches!(
            s.load(uid_of("alice")),
            Err(Error::CorruptRecord { .. })
        ));
        let err = s.load(uid_of("alice")).unwrap_err().to_string();
        assert!(
            err.contains("uid 1001") && err.contains("another account"),
            "{err}"
        );
    }

    #[test]
    fn file_bytes_is_what_the_store_reads() {
        let (_d, s) = store();
        let r = with_failures("carol", 2);
        write_private(&s.path_for(uid_of("carol")), &file_bytes(&r).unwrap());
        assert_eq!(s.load(uid_of("carol")).unwrap(), Some(r.clone()));
        assert_eq!(
            decode(&file_bytes(&r).unwrap(), uid_of("carol")).unwrap(),
            r
        );
        assert!(decode(&file_bytes(&r).unwrap(), uid_of("dave")).is_err());
    }

    #[test]
    fn failed_write_keeps_the_old_record() {
        let (_d, s) = store();
        let r = with_failures("alice", 1);
        s.save(&r).unwrap();
        // Make the record path a directory: a save refuses it (not a regular file), and the
        // whole-file write under it fails and leaves no temp file.
        let p = s.path_for(uid_of("carol"));
        fs::create_dir(&p).unwrap();
        fs::write(p.join("x"), b"x").unwrap();
        assert!(matches!(
            s.save(&rec("carol")),
            Err(Error::CorruptRecord { .. })
        ));
        assert!(matches!(
            s.write_whole(uid_of("carol"), "carol", b"{}", 1),
            Err(Error::Storage { .. })
        ));
        let leftovers: Vec<_> = fs::read_dir(&s.users)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        assert_eq!(s.load(uid_of("alice")).unwrap(), Some(r));
    }

    #[test]
    fn foreign_owned_state_dir_is_refused() {
        // Why root: only root can hand a directory to another uid (CI runs tests as root).
        assert!(nix::unistd::geteuid().is_root(), "this test needs root");
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        fs::create_dir(&state).unwrap();
        nix::unistd::chown(&state, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        let err = FileStore::open(&state).err().unwrap();
        assert!(err.contains("owned by uid 65534"), "{err}");
    }

    #[test]
    fn a_name_keyed_record_moves_to_its_uid_once_and_durably() {
        let (_d, s) = store();
        let mut old = Record::new("alice");
        old.failures = 2;
        old.replace_authenticators(
            enrolled("alice").authenticators[0].key.clone(),
            7,
            UnixTime(1),
        );
        let legacy = s.users.join(legacy_file_name("alice"));
        write_private(&legacy, &file_bytes(&old).unwrap());
        assert_eq!(s.legacy_names().unwrap(), ["alice"]);
        assert_eq!(s.load(1001).unwrap(), None);
        // Another name's legacy file is not this user's.
        assert_eq!(s.migrate_legacy("bob", 1001).unwrap(), Migration::Nothing);
        let Migration::Moved(moved) = s.migrate_legacy("alice", 1001).unwrap() else {
            panic!("not moved")
        };
        assert_eq!(
            (moved.uid, moved.failures, moved.highest_step()),
            (Some(1001), 2, Some(7))
        );
        assert_eq!(s.load(1001).unwrap(), Some(*moved.clone()));
        assert!(!legacy.exists());
        assert!(s.legacy_names().unwrap().is_empty());
        assert_eq!(s.users().unwrap(), [1001]);
        // A crash between the write and the removal leaves both: the next call removes
        // the old file and keeps the record.
        write_private(&legacy, &file_bytes(&old).unwrap());
        assert!(matches!(
            s.migrate_legacy("alice", 1001),
            Ok(Migration::Moved(_))
        ));
        assert!(!legacy.exists());
        // A different record already under the uid wins; the old file is left alone.
        s.save(&with_failures("alice", 0)).unwrap();
        write_private(&legacy, &file_bytes(&old).unwrap());
        assert_eq!(
            s.migrate_legacy("alice", 1001).unwrap(),
            Migration::Conflict
        );
        assert!(legacy.exists());
        assert_eq!(s.load(1001).unwrap(), Some(with_failures("alice", 0)));
        // An unreadable old file fails closed and stays.
        write_private(&s.users.join(legacy_file_name("carol")), b"{garbage");
        assert!(matches!(
            s.migrate_legacy("carol", 1003),
            Err(Error::CorruptRecord { .. })
        ));
        assert_eq!(s.load(1003).unwrap(), None);
    }
}
