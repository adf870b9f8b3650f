// SPDX-License-Identifier: MIT OR Apache-2.0
//! Moving records between stores and keys (issue 15): `twostepctl admin export FILE`,
//! `twostepctl admin import twostep FILE` and `twostepctl admin rotate-key NEW_KEY_FILE`.
//! Root only: they move whole stores (every sealed secret and recovery-code hash).
//!
//! # The export format (version [`EXPORT_VERSION`])
//!
//! JSON lines. The first line is a header, `{"format": "twostep-export", "version": 1,
//! "sealed_with": "<key id>", "records": N}`; each further line is one account,
//! `{"uid": U, "record": {…}}`, the record exactly as a store keeps it with every secret
//! sealed under the exporting daemon's store key (a plain secret is sealed on the way
//! out). The file alone therefore reveals no secret; importing it needs the same key (the
//! fleet's key file). A reader refuses a newer version.
//!
//! # Import
//!
//! Every line is read, opened and checked before anything is written: a file with one bad
//! line imports nothing. Then each account is one store transaction: created when the
//! target has no record or one without any factor, left alone when it has the same one,
//! reported as a conflict (and left alone) when it has another (`twostepctl user reset` first to take the imported
//! one). `--dry-run` reports the same without writing.

use std::io::{BufRead, Write as _};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::authz::Caller;
use super::record::Record;
use super::seal::Sealer;
use super::store::{self, Store, Write};
use super::users::Account;
use super::Error;

/// The `format` of an export's header.
pub const EXPORT_FORMAT: &str = "twostep-export";
/// The export format this daemon writes and the newest it reads.
pub const EXPORT_VERSION: u32 = 1;
/// The largest export line read, in bytes (a record is well under 256 KiB).
const MAX_LINE: usize = 1024 * 1024;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
    sealed_with: String,
    records: usize,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    uid: u32,
    record: Value,
}

/// What an export wrote.
#[derive(Debug, Default)]
pub struct ExportReport {
    pub exported: u32,
    /// One sentence per account left out (unreadable record, enrolled without a record).
    pub problems: Vec<String>,
}

/// What an import did (or, with `dry_run`, would do).
#[derive(Debug, Default)]
pub struct ImportReport {
    pub created: u32,
    pub unchanged: u32,
    /// One sentence per account whose record in the store differs (left alone).
    pub conflicts: Vec<String>,
}

/// What a key rotation did.
#[derive(Debug, Default)]
pub struct RotateReport {
    /// The key id that sealed writes before, and the one that seals them now.
    pub old_key: String,
    pub new_key: String,
    pub resealed: u32,
    pub unchanged: u32,
    /// One sentence per account that could not be re-sealed (still sealed with the old
    /// key: keep it until a second run reports none).
    pub problems: Vec<String>,
}

fn root_only(caller: &Caller, what: &str) -> Result<(), Error> {
    if caller.uid == 0 {
        Ok(())
    } else {
        Err(Error::AccessDenied(format!(
            "{what} moves every account's sealed secrets: root only"
        )))
    }
}

fn sealer_of(store: &dyn Store) -> Result<&Sealer, Error> {
    store
        .sealer()
        .filter(|s| s.sealing_id().is_some())
        .ok_or_else(|| Error::InvalidArgument("this store seals no secrets (no store key)".into()))
}

fn io(what: &str, e: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("{what}: {e}"))
}

/// Write every account of `store` to `out` in the export format.
///
/// # Errors
/// Not root, no store key, the store cannot be listed, or `out` cannot be written.
pub fn export(
    caller: &Caller,
    store: &dyn Store,
    out: &mut dyn std::io::Write,
) -> Result<ExportReport, Error> {
    root_only(caller, "export")?;
    let sealer = sealer_of(store)?;
    let sealed_with = sealer.sealing_id().unwrap_or_default();
    let mut report = ExportReport::default();
    let mut lines = Vec::new();
    for uid in store.list()? {
        match store.load_uid(uid) {
            Ok(Some(record)) => {
                let record = sealer
                    .encode(&record)
                    .map_err(|e| Error::Internal(format!("seal uid {uid}: {e}")))?;
                lines.push(Line { uid, record });
            }
            Ok(None) => report.problems.push(format!(
                "uid {uid}: enrolled but its record is missing; not exported"
            )),
            Err(e) => report
                .problems
                .push(format!("uid {uid}: {e}; not exported")),
        }
    }
    let header = Header {
        format: EXPORT_FORMAT.into(),
        version: EXPORT_VERSION,
        sealed_with,
        records: lines.len(),
    };
    let mut w = std::io::BufWriter::new(out);
    write_line(&mut w, &header)?;
    for line in &lines {
        write_line(&mut w, line)?;
    }
    w.flush().map_err(|e| io("write the export", e))?;
    report.exported = u32::try_from(lines.len()).unwrap_or(u32::MAX);
    log::info!(
        "action=export uid={} exported={} left_out={} outcome=done",
        caller.uid,
        report.exported,
        report.problems.len()
    );
    Ok(report)
}

/// `v` as one JSON line.
fn write_line(w: &mut impl std::io::Write, v: &impl Serialize) -> Result<(), Error> {
    serde_json::to_writer(&mut *w, v)
        .map_err(std::io::Error::from)
        .and_then(|()| w.write_all(b"\n"))
        .map_err(|e| io("write the export", e))
}

/// Read an export from `input` and add its accounts to `store` (see the module doc).
///
/// # Errors
/// Not root, no store key, a line that is not valid (nothing is written then; the message
/// names the line), a secret sealed with a key this host lacks, or a store failure.
pub fn import(
    caller: &Caller,
    store: &dyn Store,
    input: &mut dyn BufRead,
    dry_run: bool,
) -> Result<ImportReport, Error> {
    root_only(caller, "import")?;
    let sealer = sealer_of(store)?;
    let mut records: Vec<Record> = Vec::new();
    let mut header: Option<Header> = None;
    let mut n = 0usize;
    loop {
        let mut line = Vec::new();
        let read = std::io::Read::take(&mut *input, MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| io("read the export", e))?;
        if read == 0 {
            break;
        }
        n += 1;
        if line.len() > MAX_LINE {
            return Err(io("read the export", format!("line {n} is too long")));
        }
        let bad =
            |e: String| Error::InvalidArgument(format!("export line {n}: {e}; nothing imported"));
        if header.is_none() {
            let h: Header = serde_json::from_slice(&line).map_err(|e| bad(e.to_string()))?;
            if h.format != EXPORT_FORMAT {
                return Err(bad("not a twostep export".into()));
            }
            if h.version > EXPORT_VERSION {
                return Err(bad(format!(
                    "format version {} is newer than this twostepd reads ({EXPORT_VERSION})",
                    h.version
                )));
            }
            header = Some(h);
            continue;
        }
        let l: Line = serde_json::from_slice(&line).map_err(|e| bad(e.to_string()))?;
        let record = sealer.decode(l.record).map_err(bad)?;
        if record.uid != Some(l.uid) {
            return Err(bad(format!("the record is not of uid {}", l.uid)));
        }
        if records.iter().any(|r| r.uid == record.uid) {
            return Err(bad(format!("uid {} appears twice", l.uid)));
        }
        records.push(record);
    }
    let header = header.ok_or_else(|| io("read the export", "the file is empty"))?;
    if header.records != records.len() {
        return Err(io(
            "read the export",
            format!(
                "the header announces {} records, the file holds {}; nothing imported",
                header.records,
                records.len()
            ),
        ));
    }
    let mut report = ImportReport::default();
    for record in records {
        let uid = record.uid.unwrap_or_default();
        let who = Account {
            name: record.user.clone(),
            uid,
            gid: 0,
        };
        let user = record.user.clone();
        let mut incoming = Some(record);
        let outcome = store::update(store, &who, |slot| match (slot.as_ref(), incoming.take()) {
            (None, Some(r)) => {
                *slot = Some(r);
                (
                    if dry_run { Write::Keep } else { Write::Save },
                    Ok(Some(true)),
                )
            }
            (Some(existing), Some(r)) if *existing == r => (Write::Keep, Ok(Some(false))),
            // A record without any factor (made by a status call or a login of a user not
            // enrolled here) holds nothing an enrolment would lose: replaced.
            (Some(existing), Some(r)) if without_factor(existing) => {
                *slot = Some(r);
                (
                    if dry_run { Write::Keep } else { Write::Save },
                    Ok(Some(true)),
                )
            }
            _ => (Write::Keep, Ok(None)),
        })?;
        match outcome {
            Some(true) => report.created += 1,
            Some(false) => report.unchanged += 1,
            None => report.conflicts.push(format!(
                "{user} (uid {uid}): the store holds another record; left alone (run \
                 `twostepctl user reset {user}` first to take the imported one)"
            )),
        }
    }
    log::info!(
        "action=import uid={} dry_run={dry_run} created={} unchanged={} conflicts={} outcome=done",
        caller.uid,
        report.created,
        report.unchanged,
        report.conflicts.len()
    );
    Ok(report)
}

/// Whether `r` holds no second factor at all (no authenticator, pending key or recovery
/// code).
fn without_factor(r: &Record) -> bool {
    !r.enrolled() && r.pending.is_none() && r.recovery.is_empty()
}

/// Seal every write with the key in `new_key` from now on and re-seal every record that is
/// plain or sealed with another key, one account transaction at a time (logins keep
/// working throughout: each waits at most for one account's re-seal).
///
/// # Errors
/// Not root, no store key, the new key file is not usable, or the store cannot be listed.
pub fn rotate_key(
    caller: &Caller,
    store: &dyn Store,
    new_key: &Path,
) -> Result<RotateReport, Error> {
    root_only(caller, "rotate-key")?;
    let sealer = sealer_of(store)?;
    let old_key = sealer.sealing_id().unwrap_or_default();
    let new_key = sealer
        .seal_with_file(new_key)
        .map_err(Error::InvalidArgument)?;
    log::info!("action=rotate-key from={old_key} to={new_key} outcome=started");
    let mut report = RotateReport {
        old_key,
        new_key,
        ..RotateReport::default()
    };
    for uid in store.list()? {
        match store.reseal(uid) {
            Ok(true) => report.resealed += 1,
            Ok(false) => report.unchanged += 1,
            Err(e) => report.problems.push(format!("uid {uid}: {e}")),
        }
    }
    log::info!(
        "action=rotate-key to={} resealed={} unchanged={} problems={} outcome=done",
        report.new_key,
        report.resealed,
        report.unchanged,
        report.problems.len()
    );
    Ok(report)
}

/// The key ids the store's records need that `sealer` does not hold: the check at start.
///
/// # Errors
/// The store cannot be read.
pub fn missing_keys(store: &dyn Store, sealer: &Sealer) -> Result<Vec<String>, Error> {
    Ok(store
        .key_ids()?
        .into_iter()
        .filter(|id| !sealer.holds(id))
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::sync::Arc;

    use super::*;
    use crate::core::record::{Secret, TotpKey};
    use crate::core::seal::{StoreKey, KEY_LEN};
    use crate::core::store::FileStore;
    use crate::core::test_support::caller;
    use crate::core::UnixTime;

    const B32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    fn store(dir: &Path) -> FileStore {
        let sealer = Sealer::with_key(StoreKey::from_bytes(&[9; KEY_LEN]));
        FileStore::open_with(dir, Arc::new(sealer)).unwrap()
    }

    fn enrolled(name: &str, uid: u32) -> Record {
        let mut r = Record::for_account(name, uid);
        r.replace_authenticators(
            TotpKey {
                secret: Secret(B32.into()),
                algorithm: twostep_config::Algorithm::SHA1,
                digits: 6,
                period: 30,
                created: UnixTime(1),
            },
            1,
            UnixTime(1),
        );
        // An event with every audit field: the export carries them (issue 20 item 8).
        let from = crate::core::audit::Source::example();
        r.note(
            UnixTime(2),
            crate::core::audit::EventKind::Failure,
            "x",
            &from,
        );
        r
    }

    fn put(s: &FileStore, r: &Record) {
        let who = Account {
            name: r.user.clone(),
            uid: r.uid.unwrap(),
            gid: 0,
        };
        let r = r.clone();
        store::update(s, &who, |slot| {
            *slot = Some(r);
            (Write::Save, Ok(()))
        })
        .unwrap();
    }

    #[test]
    fn export_then_import_moves_every_account_with_secrets_sealed() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (from, to) = (store(&a.path().join("s")), store(&b.path().join("s")));
        put(&from, &enrolled("alice", 1001));
        put(&from, &enrolled("bob", 1002));
        let mut out = Vec::new();
        let r = export(&caller(0), &from, &mut out).unwrap();
        assert_eq!(r.exported, 2);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(!text.contains(B32), "{text}");
        assert!(text.starts_with("{\"format\":\"twostep-export\""), "{text}");
        // Dry run: says what, writes nothing.
        let dry = import(&caller(0), &to, &mut out.as_slice(), true).unwrap();
        assert_eq!((dry.created, dry.unchanged), (2, 0));
        assert_eq!(to.list().unwrap(), Vec::<u32>::new());
        let real = import(&caller(0), &to, &mut out.as_slice(), false).unwrap();
        assert_eq!((real.created, real.unchanged), (2, 0));
        assert_eq!(to.load_uid(1001).unwrap().unwrap(), enrolled("alice", 1001));
        let again = import(&caller(0), &to, &mut out.as_slice(), false).unwrap();
        assert_eq!((again.created, again.unchanged), (0, 2));
        // Another record of an account: a conflict, left alone.
        let mut moved = enrolled("alice", 1001);
        moved.failures = 3;
        put(&to, &moved);
        let c = import(&caller(0), &to, &mut out.as_slice(), false).unwrap();
        assert_eq!(c.conflicts.len(), 1);
        assert_eq!(to.load_uid(1001).unwrap().unwrap().failures, 3);
    }

    #[test]
    fn a_bad_line_imports_nothing_and_non_root_is_refused() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (from, to) = (store(&a.path().join("s")), store(&b.path().join("s")));
        put(&from, &enrolled("alice", 1001));
        put(&from, &enrolled("bob", 1002));
        let mut out = Vec::new();
        export(&caller(0), &from, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let broken = text.replacen("\"uid\":1002", "\"uid\":1003", 1);
        let e = import(&caller(0), &to, &mut broken.as_bytes(), false).unwrap_err();
        assert!(e.to_string().contains("nothing imported"), "{e}");
        assert_eq!(to.list().unwrap(), Vec::<u32>::new());
        let newer = text.replacen("\"version\":1", "\"version\":2", 1);
        let e = import(&caller(0), &to, &mut newer.as_bytes(), false).unwrap_err();
        assert!(e.to_string().contains("newer"), "{e}");
        assert!(matches!(
            export(&caller(1000), &from, &mut Vec::new()),
            Err(Error::AccessDenied(_))
        ));
        assert!(matches!(
            import(&caller(1000), &to, &mut text.as_bytes(), false),
            Err(Error::AccessDenied(_))
        ));
        // Sealed with a key this store lacks: refused, naming the key.
        let c = tempfile::tempdir().unwrap();
        let other = FileStore::open_with(
            &c.path().join("s"),
            Arc::new(Sealer::with_key(StoreKey::from_bytes(&[7; KEY_LEN]))),
        )
        .unwrap();
        let e = import(&caller(0), &other, &mut text.as_bytes(), false).unwrap_err();
        assert!(e.to_string().contains("does not have"), "{e}");
    }
}
