// SPDX-License-Identifier: MIT OR Apache-2.0
//! Secrets at rest (issue 15): every secret a record must read back (the TOTP keys of its
//! authenticators and of a pending enrolment) is sealed with XChaCha20-Poly1305 (RustCrypto
//! `chacha20poly1305`) under the store key, a 32-byte file readable by root only
//! (`[store] key_file`, default `/etc/twostep/store.key`), in every backend. A database dump
//! or a copied state directory alone reveals no secret.
//!
//! # Where sealing happens, and why there
//!
//! In the stores' encode and decode ([`Sealer::encode`], [`Sealer::decode`]), over the
//! record's JSON, not in a sealed form of [`Secret`](super::record::Secret) inside
//! `record.rs`:
//! - the engine needs the plain key for every TOTP check, so a record in memory holds it
//!   plain either way; sealing is a property of storage, like the file store's checksums;
//! - serde has no context to carry a key into `Deserialize`, so a sealed `Secret` would need
//!   a global key or a second record type; here the key never leaves the store;
//! - `record.rs`, the engine and every method stay unchanged (other branches add fields
//!   there at the same time); a new secret that must be read back adds its path to
//!   [`SECRET_PATHS`].
//!
//! # The sealed form
//!
//! A secret's JSON string becomes `{"key": "<key id>", "nonce": "<hex>", "data": "<hex>"}`:
//! the key id names the key that sealed it (16 hex digits of SHA-256 over a fixed context
//! and the key, so it tells keys apart without revealing them), the nonce is 24 random
//! bytes, and the additional data binds the sealed secret to its record's uid (a sealed
//! secret copied into another account's record does not open). A secret still stored as a
//! string (written before sealing) is read as it is and sealed at the record's next write,
//! or by `twostepctl admin rotate-key`.
//!
//! # Keys
//!
//! [`Sealer::open`] reads the key file (it seals every write) and, when present, the same
//! path with `.old` and `.new` appended (read only: the keys of a rotation in progress on a
//! fleet). Each must be a regular file owned by root (or the daemon's uid) with no
//! permission bits for group or others, reached through trusted directories (see
//! [`super::trust`]), holding 32 bytes or 64 hex digits. A secret sealed with a key the
//! daemon does not hold makes it look at those files again (at most once every
//! [`RESCAN_EVERY`]), so a key copied to a running host is found without a restart.

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde_json::Value;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::record::Record;
use super::trust;

/// Bytes of a store key.
pub const KEY_LEN: usize = 32;
/// Bytes of an XChaCha20-Poly1305 nonce.
const NONCE_LEN: usize = 24;
/// Context of the key id hash.
const ID_CONTEXT: &[u8] = b"twostep store key id v1\0";
/// How often an unknown key id may make the daemon read its key files again.
pub const RESCAN_EVERY: Duration = Duration::from_secs(2);
/// The suffixes of the read-only key files beside the key file.
pub const EXTRA_KEY_SUFFIXES: [&str; 2] = [".old", ".new"];

/// Where secrets that must be read back live in a stored record: object keys, with `*` for
/// every element of an array. `totp.secret` is the earlier single-key shape (read only).
///
/// The emailed code's hash is sealed too: a 6–8 digit code under a salted hash falls to a
/// million hashes, so a reader of the store (a replica, a backup, `pg_dump`) would recover
/// the code in force within its life (security review, finding M1).
pub const SECRET_PATHS: &[&[&str]] = &[
    &["authenticators", "*", "key", "secret"],
    &["pending", "key", "secret"],
    &["email", "code", "hash"],
    &["totp", "secret"],
];

/// One store key: its id and the cipher over it (the key bytes live only in the cipher,
/// which wipes them on drop).
pub struct StoreKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

/// Shows the id only, never the key.
impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreKey({})", self.id)
    }
}

impl StoreKey {
    /// The key of `bytes` (exactly [`KEY_LEN`]).
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> StoreKey {
        let mut h = Sha256::new();
        h.update(ID_CONTEXT);
        h.update(bytes);
        let id = hex::encode(&h.finalize()[..8]);
        StoreKey {
            id,
            cipher: XChaCha20Poly1305::new(bytes.into()),
        }
    }

    /// The key's id: 16 hex digits, derived from the key by a one-way hash.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The keys a store seals and opens secrets with.
pub struct Sealer {
    keys: RwLock<Keyring>,
    /// The key file; `None`: no key at all (secrets are written in the clear; tests and
    /// tools only, never the daemon).
    key_file: Option<PathBuf>,
    last_scan: Mutex<Option<Instant>>,
    /// Changes whenever the keys do ([`Sealer::epoch`]).
    epoch: AtomicU64,
}

#[derive(Default)]
struct Keyring {
    /// Seals every write.
    sealing: Option<Arc<StoreKey>>,
    /// Every key that opens secrets (the sealing one included).
    all: Vec<Arc<StoreKey>>,
}

impl Keyring {
    fn add(&mut self, key: Arc<StoreKey>) {
        if !self.all.iter().any(|k| k.id == key.id) {
            self.all.push(key);
        }
    }

    fn get(&self, id: &str) -> Option<Arc<StoreKey>> {
        self.all.iter().find(|k| k.id == id).cloned()
    }
}

impl Sealer {
    /// A sealer without keys: reads plain secrets, writes them plain, and cannot open a
    /// sealed one. For unit tests and tools that prepare state directories.
    pub fn plaintext() -> Sealer {
        Sealer {
            keys: RwLock::new(Keyring::default()),
            key_file: None,
            last_scan: Mutex::new(None),
            epoch: AtomicU64::new(0),
        }
    }

    /// A sealer over one key (tests, and the tools that hold a key already).
    pub fn with_key(key: StoreKey) -> Sealer {
        let key = Arc::new(key);
        Sealer {
            keys: RwLock::new(Keyring {
                sealing: Some(Arc::clone(&key)),
                all: vec![key],
            }),
            key_file: None,
            last_scan: Mutex::new(None),
            epoch: AtomicU64::new(0),
        }
    }

    /// The sealer of the daemon: `key_file` seals, and `key_file.old` / `key_file.new`
    /// open too when present (see the module doc).
    ///
    /// # Errors
    /// A message naming the file and what is wrong with it (missing, untrusted owner or
    /// mode, not a key).
    pub fn open(key_file: &Path) -> Result<Sealer, String> {
        let sealing = Arc::new(read_key_file(key_file)?);
        let mut ring = Keyring {
            sealing: Some(Arc::clone(&sealing)),
            all: vec![sealing],
        };
        for extra in extra_key_files(key_file) {
            if let Some(key) = read_optional_key_file(&extra)? {
                ring.add(Arc::new(key));
            }
        }
        Ok(Sealer {
            keys: RwLock::new(ring),
            key_file: Some(key_file.to_owned()),
            last_scan: Mutex::new(None),
            epoch: AtomicU64::new(0),
        })
    }

    /// Read the key files again (SIGHUP): the key file seals from now on; keys already
    /// held stay (a record sealed with one of them keeps opening).
    ///
    /// # Errors
    /// As [`Sealer::open`]; the keys in force are then unchanged.
    pub fn reload(&self) -> Result<(), String> {
        let Some(path) = &self.key_file else {
            return Ok(());
        };
        let fresh = Sealer::open(path)?;
        let fresh = fresh.keys.into_inner().unwrap_or_else(|e| e.into_inner());
        let mut ring = self.ring_mut();
        for k in fresh.all {
            ring.add(k);
        }
        ring.sealing = fresh.sealing;
        Ok(())
    }

    /// Seal every write with the key in `path` from now on (the other keys keep opening):
    /// the first step of `twostepctl admin rotate-key`. Returns the key's id.
    ///
    /// # Errors
    /// As [`Sealer::open`] for `path`.
    pub fn seal_with_file(&self, path: &Path) -> Result<String, String> {
        let key = Arc::new(read_key_file(path)?);
        let id = key.id.clone();
        let mut ring = self.ring_mut();
        ring.add(Arc::clone(&key));
        ring.sealing = ring.get(&id);
        Ok(id)
    }

    /// The id of the key that seals writes, `None` without one.
    pub fn sealing_id(&self) -> Option<String> {
        self.ring().sealing.as_ref().map(|k| k.id.clone())
    }

    /// The ids of every key held.
    pub fn key_ids(&self) -> BTreeSet<String> {
        self.ring().all.iter().map(|k| k.id.clone()).collect()
    }

    /// Whether the key `id` is held, reading the key files again (rate-limited) when it
    /// is not yet.
    pub fn holds(&self, id: &str) -> bool {
        self.key(id).is_some()
    }

    fn ring(&self) -> std::sync::RwLockReadGuard<'_, Keyring> {
        self.keys.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The keys, to change them: every change moves [`Sealer::epoch`] on.
    fn ring_mut(&self) -> std::sync::RwLockWriteGuard<'_, Keyring> {
        let ring = self.keys.write().unwrap_or_else(|e| e.into_inner());
        self.epoch.fetch_add(1, Ordering::SeqCst);
        ring
    }

    /// A number that changes whenever the keys held or the sealing key change: what a
    /// decode found (a record, a re-seal needed) holds for the same bytes while it stays.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// The key `id`, reading the key files again (rate-limited) if it is not held.
    fn key(&self, id: &str) -> Option<Arc<StoreKey>> {
        if let Some(k) = self.ring().get(id) {
            return Some(k);
        }
        let path = self.key_file.as_ref()?;
        {
            let mut last = super::engine::lock(&self.last_scan);
            if last.is_some_and(|t| t.elapsed() < RESCAN_EVERY) {
                return None;
            }
            *last = Some(Instant::now());
        }
        let mut found = Vec::new();
        for file in std::iter::once(path.clone()).chain(extra_key_files(path)) {
            match read_optional_key_file(&file) {
                Ok(Some(k)) => found.push(Arc::new(k)),
                Ok(None) => {}
                Err(e) => log::error!("store key: {e}"),
            }
        }
        let mut ring = self.ring_mut();
        for k in found {
            ring.add(k);
        }
        ring.get(id)
    }

    /// `record` as stored: its JSON with every secret sealed under the sealing key (plain
    /// when this sealer has none).
    ///
    /// # Errors
    /// The record cannot be serialized, or the random source failed.
    pub fn encode(&self, record: &Record) -> Result<Value, String> {
        let mut value = serde_json::to_value(record).map_err(|e| e.to_string())?;
        let Some(key) = self.ring().sealing.clone() else {
            return Ok(value);
        };
        let aad = aad(&value);
        let mut failed = None;
        for path in SECRET_PATHS {
            visit(&mut value, path, &mut |secret| {
                if let Value::String(plain) = secret {
                    let plain = Zeroizing::new(std::mem::take(plain));
                    match seal(&key, plain.as_bytes(), &aad) {
                        Ok(sealed) => *secret = sealed,
                        Err(e) => failed = Some(e),
                    }
                }
            });
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(value),
        }
    }

    /// The record stored as `value`: every sealed secret opened (a plain one is taken as
    /// it is), then read as a [`Record`] (which checks it).
    ///
    /// # Errors
    /// A secret sealed with a key this daemon does not hold (the message names the key id
    /// and the files it read), one that does not open (wrong key, altered, or copied from
    /// another account), or the record itself is invalid.
    pub fn decode(&self, value: Value) -> Result<Record, String> {
        self.decode_noting(value).map(|(record, _)| record)
    }

    /// [`Sealer::decode`], and whether `value` needs a re-seal ([`Sealer::needs_reseal`]),
    /// found on the same walk over its secrets.
    ///
    /// # Errors
    /// As [`Sealer::decode`].
    pub fn decode_noting(&self, mut value: Value) -> Result<(Record, bool), String> {
        let aad = aad(&value);
        let sealing = self.sealing_id();
        let mut failed = None;
        let mut needs = false;
        for path in SECRET_PATHS {
            visit(&mut value, path, &mut |secret| {
                needs |= needs_reseal_of(secret, sealing.as_deref());
                if failed.is_none() && secret.is_object() {
                    match self.open_secret(secret, &aad) {
                        Ok(plain) => *secret = Value::String(plain),
                        Err(e) => failed = Some(e),
                    }
                }
            });
        }
        if let Some(e) = failed {
            return Err(e);
        }
        let record = serde_json::from_value(value).map_err(|e| format!("invalid record: {e}"))?;
        Ok((record, needs))
    }

    fn open_secret(&self, sealed: &Value, aad: &[u8]) -> Result<String, String> {
        let field = |name: &str| {
            sealed
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("a sealed secret without `{name}`"))
        };
        if sealed.as_object().map_or(0, |o| o.len()) != 3 {
            return Err("a sealed secret has unknown fields".into());
        }
        let id = field("key")?;
        let key = self.key(id).ok_or_else(|| self.missing_key(id))?;
        let nonce =
            hex::decode(field("nonce")?).map_err(|_| "a sealed secret's nonce is not hex")?;
        let data = hex::decode(field("data")?).map_err(|_| "a sealed secret's data is not hex")?;
        if nonce.len() != NONCE_LEN {
            return Err("a sealed secret's nonce has the wrong length".into());
        }
        let plain = Zeroizing::new(
            key.cipher
                .decrypt(XNonce::from_slice(&nonce), Payload { msg: &data, aad })
                .map_err(|_| {
                    format!(
                        "a secret sealed with key {id} does not open (altered, or copied from \
                         another account's record)"
                    )
                })?,
        );
        String::from_utf8(plain.to_vec()).map_err(|_| "a sealed secret is not text".into())
    }

    fn missing_key(&self, id: &str) -> String {
        let held: Vec<String> = self.key_ids().into_iter().collect();
        let held = if held.is_empty() {
            "none".to_owned()
        } else {
            held.join(", ")
        };
        let read = match &self.key_file {
            Some(path) => format!(
                "; read from {} and its .old/.new); copy the fleet's key file to this host",
                path.display()
            ),
            None => ")".to_owned(),
        };
        format!("a secret is sealed with store key {id}, which this host does not have (it holds {held}{read}")
    }

    /// Whether `value` (a record as stored) holds a secret that is plain or sealed with
    /// another key than the sealing one (a re-seal would change it).
    pub fn needs_reseal(&self, value: &Value) -> bool {
        let sealing = self.sealing_id();
        let mut needs = false;
        for path in SECRET_PATHS {
            for secret in nodes_at(value, path) {
                needs |= needs_reseal_of(secret, sealing.as_deref());
            }
        }
        needs
    }
}

/// Whether one stored secret would change at a re-seal with the key `sealing`: plain while
/// a key seals, or sealed with another key.
fn needs_reseal_of(secret: &Value, sealing: Option<&str>) -> bool {
    match secret {
        Value::String(_) => sealing.is_some(),
        other => other.get("key").and_then(Value::as_str) != sealing,
    }
}

/// The ids of the keys that sealed the secrets of `value` (a record as stored); plain
/// secrets add nothing.
pub fn key_ids_in(value: &Value) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for path in SECRET_PATHS {
        for secret in nodes_at(value, path) {
            if let Some(id) = secret.get("key").and_then(Value::as_str) {
                ids.insert(id.to_owned());
            }
        }
    }
    ids
}

/// Whether `value` (a record as stored) holds a secret in the clear.
pub fn has_plain_secret(value: &Value) -> bool {
    let mut plain = false;
    let mut value = value.clone();
    for path in SECRET_PATHS {
        visit(&mut value, path, &mut |secret| plain |= secret.is_string());
    }
    plain
}

/// The additional data of a record's secrets: its uid (or that it has none).
fn aad(value: &Value) -> Vec<u8> {
    match value.get("uid").and_then(Value::as_u64) {
        Some(uid) => format!("twostep secret v1 uid {uid}").into_bytes(),
        None => b"twostep secret v1 no uid".to_vec(),
    }
}

fn seal(key: &StoreKey, plain: &[u8], aad: &[u8]) -> Result<Value, String> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::getrandom(&mut nonce).map_err(|e| format!("random source: {e}"))?;
    let data = key
        .cipher
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad })
        .map_err(|_| "sealing failed".to_owned())?;
    Ok(serde_json::json!({
        "key": key.id,
        "nonce": hex::encode(nonce),
        "data": hex::encode(data),
    }))
}

/// Call `f` on every node at `path` under `value` (`*`: every array element).
fn visit(value: &mut Value, path: &[&str], f: &mut dyn FnMut(&mut Value)) {
    let Some((first, rest)) = path.split_first() else {
        f(value);
        return;
    };
    if *first == "*" {
        if let Value::Array(items) = value {
            for item in items {
                visit(item, rest, f);
            }
        }
    } else if let Some(next) = value.get_mut(*first) {
        if !next.is_null() {
            visit(next, rest, f);
        }
    }
}

/// The nodes at `path` under `value`, as [`visit`] finds them, read only.
fn nodes_at<'v>(value: &'v Value, path: &[&str]) -> Vec<&'v Value> {
    let mut nodes = vec![value];
    for step in path {
        nodes = nodes
            .into_iter()
            .flat_map(|node| match (*step, node) {
                ("*", Value::Array(items)) => items.iter().collect(),
                ("*", _) => Vec::new(),
                (key, _) => node.get(key).filter(|n| !n.is_null()).into_iter().collect(),
            })
            .collect();
    }
    nodes
}

/// `key_file.old` and `key_file.new`.
pub fn extra_key_files(key_file: &Path) -> Vec<PathBuf> {
    EXTRA_KEY_SUFFIXES
        .iter()
        .map(|s| {
            let mut p = key_file.as_os_str().to_owned();
            p.push(s);
            PathBuf::from(p)
        })
        .collect()
}

fn read_optional_key_file(path: &Path) -> Result<Option<StoreKey>, String> {
    match trust::resolve(path)? {
        (_, None) => Ok(None),
        _ => read_key_file(path).map(Some),
    }
}

/// Read and check a key file (see the module doc, "Keys").
///
/// # Errors
/// A message for the operator naming the file and what is wrong.
pub fn read_key_file(path: &Path) -> Result<StoreKey, String> {
    let bytes = read_private_file(path, "store key").map_err(|e| {
        if e.ends_with("is missing") {
            format!(
                "{e}; create it (the same file on every host of a fleet) with: \
                 (umask 077; head -c 32 /dev/urandom > {})",
                path.display()
            )
        } else {
            e
        }
    })?;
    let key = parse_key(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(StoreKey::from_bytes(&key))
}

/// Read a small secret file (at most 4 KiB) the daemon trusts only when root alone could
/// have written or read it: a regular file owned by root (or the daemon's uid) with no
/// permission bits for group or others, reached through trusted directories, opened
/// without following links. `what` names it in messages.
///
/// # Errors
/// The file is missing (`… is missing`), untrusted, or unreadable.
pub fn read_private_file(path: &Path, what: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let (resolved, meta) = trust::resolve(path)?;
    let Some(meta) = meta else {
        return Err(format!("the {what} {} is missing", path.display()));
    };
    check_private_meta(&resolved, &meta, what)?;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&resolved)
        .map_err(|e| format!("cannot open the {what} {}: {e}", path.display()))?;
    let opened = file
        .metadata()
        .map_err(|e| format!("cannot inspect the {what} {}: {e}", path.display()))?;
    check_private_meta(&resolved, &opened, what)?;
    if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
        return Err(format!("{} changed while it was opened", path.display()));
    }
    let mut bytes = Zeroizing::new(Vec::new());
    (&mut file)
        .take(4096)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))?;
    Ok(bytes)
}

/// A private file's metadata: a regular file of a trusted owner, no bits for group or
/// others.
fn check_private_meta(path: &Path, meta: &std::fs::Metadata, what: &str) -> Result<(), String> {
    if !meta.is_file()
        || !(meta.uid() == 0 || meta.uid() == trust::euid())
        || meta.mode() & 0o077 != 0
    {
        return Err(format!(
            "unsafe {what} {}: expected a regular file owned by {} with mode 0600 or \
             stricter (no access for group or others)",
            trust::describe(path, meta),
            trust::expected_owner()
        ));
    }
    Ok(())
}

/// A key file's content: 32 bytes, or 64 hex digits (with an optional line end).
///
/// # Errors
/// Neither.
pub fn parse_key(bytes: &[u8]) -> Result<Zeroizing<[u8; KEY_LEN]>, String> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    if bytes.len() == KEY_LEN {
        key.copy_from_slice(bytes);
        return Ok(key);
    }
    let text = bytes.trim_ascii();
    if text.len() == 2 * KEY_LEN && hex::decode_to_slice(text, &mut key[..]).is_ok() {
        return Ok(key);
    }
    Err(format!(
        "not a store key: expected {KEY_LEN} bytes or {} hex digits, found {} bytes",
        2 * KEY_LEN,
        bytes.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::{Pending, Secret, TotpKey};
    use crate::core::UnixTime;
    use twostep_config::Algorithm;

    const B32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    fn record() -> Record {
        let key = TotpKey {
            secret: Secret(B32.into()),
            algorithm: Algorithm::SHA1,
            digits: 6,
            period: 30,
            created: UnixTime(1),
        };
        let mut r = Record::for_account("alice", 1000);
        r.replace_authenticators(key.clone(), 1, UnixTime(1));
        r.pending = Some(Pending {
            key,
            expires: UnixTime(2),
            name: None,
            replay_mark: None,
        });
        // An event with every audit field: a sealed record carries them (issue 20 item 8).
        let from = crate::core::audit::Source::example();
        r.note(UnixTime(2), crate::core::audit::EventKind::Lock, "x", &from);
        r
    }

    fn key(b: u8) -> StoreKey {
        StoreKey::from_bytes(&[b; KEY_LEN])
    }

    /// `store.key` holding [`key`]`(1)` and `new.key` holding `key(2)` in `dir`, 0600.
    fn key_files(dir: &Path) -> (PathBuf, PathBuf) {
        let (old, new) = (dir.join("store.key"), dir.join("new.key"));
        for (p, b) in [(&old, 1u8), (&new, 2u8)] {
            std::fs::write(p, [b; 32]).unwrap();
            std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
        }
        (old, new)
    }

    #[test]
    fn sealed_records_hold_no_secret_and_round_trip() {
        let s = Sealer::with_key(key(1));
        let stored = s.encode(&record()).unwrap();
        let text = stored.to_string();
        assert!(!text.contains(B32), "{text}");
        assert!(!text.contains("1234567890"), "{text}");
        assert_eq!(key_ids_in(&stored).len(), 1);
        assert!(key_ids_in(&stored).contains(key(1).id()));
        assert!(!has_plain_secret(&stored));
        assert_eq!(s.decode(stored).unwrap(), record());
    }

    #[test]
    fn plain_records_read_and_are_sealed_on_write() {
        let plain = Sealer::plaintext().encode(&record()).unwrap();
        assert!(plain.to_string().contains(B32));
        let s = Sealer::with_key(key(1));
        assert!(s.needs_reseal(&plain));
        let r = s.decode(plain).unwrap();
        let sealed = s.encode(&r).unwrap();
        assert!(!s.needs_reseal(&sealed));
    }

    #[test]
    fn decoding_notes_a_reseal_exactly_when_needs_reseal_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = key_files(dir.path());
        let one = Sealer::with_key(key(1));
        // Seals with key 2, still opens key 1's secrets: a rotation under way.
        let two = Sealer::open(&old).unwrap();
        two.seal_with_file(&new).unwrap();
        let plain = Sealer::plaintext().encode(&record()).unwrap();
        let sealed = one.encode(&record()).unwrap();
        for (sealer, stored, needs) in [
            (&one, &plain, true),
            (&one, &sealed, false),
            (&two, &sealed, true),
            (&Sealer::plaintext(), &plain, false),
        ] {
            assert_eq!(sealer.needs_reseal(stored), needs);
            let (r, noted) = sealer.decode_noting(stored.clone()).unwrap();
            assert_eq!((r, noted), (record(), needs));
        }
    }

    #[test]
    fn a_missing_key_an_altered_secret_and_another_uid_fail() {
        let stored = Sealer::with_key(key(1)).encode(&record()).unwrap();
        let e = Sealer::with_key(key(2)).decode(stored.clone()).unwrap_err();
        assert!(e.contains(key(1).id()), "{e}");
        assert!(!e.contains(B32));
        let mut moved = stored.clone();
        moved["uid"] = 1001.into();
        let e = Sealer::with_key(key(1)).decode(moved).unwrap_err();
        assert!(e.contains("does not open"), "{e}");
        let mut altered = stored;
        let data = altered["pending"]["key"]["secret"]["data"]
            .as_str()
            .unwrap()
            .to_owned();
        let flipped = if data.starts_with('0') { "1" } else { "0" };
        altered["pending"]["key"]["secret"]["data"] = format!("{flipped}{}", &data[1..]).into();
        assert!(Sealer::with_key(key(1)).decode(altered).is_err());
    }

    #[test]
    fn key_ids_are_stable_distinct_and_not_the_key() {
        assert_eq!(key(1).id(), key(1).id());
        assert_ne!(key(1).id(), key(2).id());
        assert_eq!(key(1).id().len(), 16);
        assert!(!key(1).id().contains("0101"));
    }

    #[test]
    fn key_files_are_raw_or_hex() {
        assert!(parse_key(&[7u8; 32]).is_ok());
        let hex = format!("{}\n", hex::encode([7u8; 32]));
        assert_eq!(*parse_key(hex.as_bytes()).unwrap(), [7u8; 32]);
        assert!(parse_key(b"short").is_err());
    }

    #[test]
    fn rotation_seals_with_the_new_key_and_opens_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = key_files(dir.path());
        let s = Sealer::open(&old).unwrap();
        let before = s.encode(&record()).unwrap();
        assert_eq!(s.seal_with_file(&new).unwrap(), key(2).id());
        assert!(s.needs_reseal(&before));
        let after = s.encode(&s.decode(before).unwrap()).unwrap();
        assert!(key_ids_in(&after).contains(key(2).id()));
        // A group-readable key is refused.
        std::fs::set_permissions(&new, std::os::unix::fs::PermissionsExt::from_mode(0o640))
            .unwrap();
        assert!(read_key_file(&new)
            .unwrap_err()
            .contains("unsafe store key"));
    }
}
