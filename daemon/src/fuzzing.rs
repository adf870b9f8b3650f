// SPDX-License-Identifier: MIT OR Apache-2.0
//! Fuzzing entry points: bytes in, nothing out, a panic on a broken invariant. Run by the
//! libFuzzer targets under `fuzz/` (nightly) and, on the saved corpus, by
//! `tests/tests/fuzz_corpus.rs` (stable, every `cargo test`). Not an API.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use twostep_config::{Bounded, Config};
use twostep_proto::fuzzing::Input;
use twostep_proto::{ImportKey, Step, MAX_IMPORT_CODES};
use zeroize::Zeroizing;

use crate::core::admin::Action;
use crate::core::audit::LoginContext;
use crate::core::policy::Override;
use crate::core::store::file;
use crate::core::store::memory::MemoryStore;
use crate::core::users::FakeAccounts;
use crate::core::{Caller, Core, Error, UnixTime};
use crate::import::{google_authenticator, oath};

/// The configuration load path after the file is read ([`crate::configfile::load`]):
/// parse, contradictions, group checks against a fake NSS.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/etc/twostep/twostep.toml");
    match Config::parse(text, path) {
        Ok(config) => {
            // Groups whose names have an even length exist; "down" cannot be looked up.
            let exists = |g: &str| match g {
                "down" => Err("NSS is down".to_owned()),
                g => Ok(g.len() % 2 == 0),
            };
            let _ = crate::configfile::checked(config, path, exists);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// Record decoding ([`file::decode`]): the first byte picks the raw file, or a file built
/// from the rest with valid checksums — two slots with their own payload, generation and
/// magic (current, before issue 19, zeros, a bad checksum) — so the JSON of every record
/// shape is reached. A decoded record encodes to a file that decodes to the same record.
pub fn record(data: &[u8]) {
    let mut input = Input::new(data);
    let uid = 1000;
    let bytes = match input.byte() % 3 {
        0 => input.rest().to_vec(),
        1 => match file::file_bytes_of_json(input.rest()) {
            Ok(b) => b,
            Err(_) => return,
        },
        _ => {
            let a = (input.byte(), u64::from(input.byte()));
            let b = (input.byte(), u64::from(input.byte()));
            let pa = input.bytes(4000);
            let pb = input.rest();
            two_slots([(a.0, a.1, pa), (b.0, b.1, pb)])
        }
    };
    let Ok(record) = file::decode(&bytes, uid) else {
        return;
    };
    let again = file::file_bytes(&record).map(|b| file::decode(&b, uid));
    match again {
        Ok(Ok(back)) => assert_eq!(back, record, "a decoded record survives a save"),
        Ok(Err(e)) => panic!("a saved record does not decode: {e}"),
        Err(_) => {} // too large for a slot: the daemon refuses the save.
    }
}

/// A record file of two 4 KiB-multiple slots: header (magic, generation, length, CRC-32 of
/// the three) and payload, as `store/file.rs` documents the format.
fn two_slots(slots: [(u8, u64, &[u8]); 2]) -> Vec<u8> {
    let size = slots
        .iter()
        .map(|(_, _, p)| (24 + p.len()).div_ceil(4096) * 4096)
        .max()
        .unwrap_or(4096);
    let mut out = Vec::with_capacity(2 * size);
    for (how, generation, payload) in slots {
        let mut slot = Vec::with_capacity(size);
        if how % 4 != 2 {
            let length = u32::try_from(payload.len()).unwrap_or(u32::MAX);
            let mut crc = crc32fast::Hasher::new();
            crc.update(&generation.to_le_bytes());
            crc.update(&length.to_le_bytes());
            crc.update(payload);
            let crc = crc.finalize() ^ u32::from(how % 4 == 3);
            slot.extend_from_slice(if how % 4 == 1 {
                b"twostep\x01"
            } else {
                b"twostep\x02"
            });
            slot.extend_from_slice(&generation.to_le_bytes());
            slot.extend_from_slice(&length.to_le_bytes());
            slot.extend_from_slice(&crc.to_le_bytes());
            slot.extend_from_slice(payload);
        }
        slot.resize(size, 0);
        out.extend_from_slice(&slot);
    }
    out
}

/// `~/.google_authenticator` parsing and what an import would carry.
pub fn google_authenticator(data: &[u8]) {
    if let Ok(f) = google_authenticator::parse(data) {
        let _ = f.to_imported();
    }
}

/// pam_oath usersfile parsing and what an import would carry per user.
pub fn oath(data: &[u8]) {
    if let Ok(f) = oath::parse(data) {
        for tokens in f.users.values().flatten() {
            let _ = oath::to_imported(tokens, |t| Some(t.and_utc().timestamp()));
        }
    }
}

/// Accounts of the core target: root, two users, an admin (group `wheel`).
const PEOPLE: [(&str, u32); 4] = [("root", 0), ("alice", 1000), ("bob", 1001), ("carol", 1002)];

/// What the script remembers to give right answers sometimes.
#[derive(Default)]
struct Known {
    /// Base32 secrets of keys (pending or confirmed), per uid.
    secrets: HashMap<u32, Vec<String>>,
    /// Recovery codes shown, per uid.
    codes: HashMap<u32, Vec<String>>,
    /// Session ids handed out.
    sessions: Vec<String>,
}

/// The daemon's handling of method arguments, through the core API as the bus adapter calls
/// it: a script of calls by root, users and an admin, with arbitrary names, answers, proofs,
/// session ids and import arguments, against a [`MemoryStore`] and [`FakeAccounts`]. Checks
/// that no call panics, and that a caller who is neither root nor an admin learns nothing
/// about another account: the refusal is the one it gets for a name nobody has.
pub fn core_calls(data: &[u8]) {
    let mut config = Config::default();
    config.totp.issuer = "fuzz".into();
    config.recovery.count = Bounded::new(1); // argon2 per code: keep a run fast
    config.lockout.max_failures = Bounded::new(3);
    config.policy.admin_group = "wheel".into();
    let mut accounts = FakeAccounts::new();
    for (name, uid) in PEOPLE {
        let groups: &[&str] = if name == "carol" {
            &["carol", "wheel"]
        } else {
            &[name]
        };
        accounts = accounts.with(name, uid, groups);
    }
    let store = Arc::new(MemoryStore::new());
    let core = Core::with_parts(config, Box::new(store), Box::new(accounts));
    let mut input = Input::new(data);
    let mut now = UnixTime(1_800_000_000);
    let mut known = Known::default();
    for _ in 0..64 {
        if input.is_empty() {
            break;
        }
        call(&core, &mut input, &mut known, &mut now);
    }
}

fn call(core: &Core, input: &mut Input<'_>, known: &mut Known, now: &mut UnixTime) {
    let (name, uid) = PEOPLE[usize::from(input.byte()) % PEOPLE.len()];
    let caller = Caller {
        uid,
        sender: format!(":1.{}", input.byte() % 3),
    };
    let t = *now;
    match input.byte() % 16 {
        0 => begin(core, input, known, &caller, name, t),
        1 => {
            let id = session(input, known);
            let answer = answer(input, known, uid, t);
            let _ = core.answer(&caller, &id, &answer, t);
        }
        2 => {
            let proof = answer(input, known, uid, t);
            if let Ok(p) = core.enroll_begin(&caller, &proof, t) {
                known
                    .secrets
                    .entry(uid)
                    .or_default()
                    .push(p.secret_base32.clone());
            }
        }
        3 => {
            let code = answer(input, known, uid, t);
            if let Ok(codes) = core.enroll_confirm(&caller, &code, t) {
                remember_codes(known, uid, &codes);
            }
        }
        4 => {
            let (n, proof) = (target(input), answer(input, known, uid, t));
            if let Ok(p) = core.authenticator_add(&caller, &n, &proof, t) {
                known
                    .secrets
                    .entry(uid)
                    .or_default()
                    .push(p.secret_base32.clone());
            }
        }
        5 => {
            let (n, code) = (target(input), answer(input, known, uid, t));
            let _ = core.authenticator_confirm(&caller, &n, &code, t);
        }
        6 => {
            let (n, proof) = (target(input), answer(input, known, uid, t));
            let _ = core.authenticator_remove(&caller, &n, &proof, t);
        }
        7 => {
            let proof = answer(input, known, uid, t);
            if let Ok(codes) = core.regenerate_recovery(&caller, &proof, t) {
                remember_codes(known, uid, &codes);
            }
        }
        8 => {
            let proof = answer(input, known, uid, t);
            let _ = core.disable(&caller, &proof, t);
        }
        9 => {
            let _ = core.status(&caller, t);
            let _ = core.authenticators(&caller, t);
        }
        10 => admin(core, input, &caller, t),
        11 => import(core, input, &caller, t),
        12 => core.end_connection(&caller.sender),
        _ => *now = UnixTime(now.0 + u64::from(input.byte()) * 7),
    }
}

fn remember_codes(known: &mut Known, uid: u32, codes: &[Zeroizing<String>]) {
    let mine = known.codes.entry(uid).or_default();
    mine.extend(codes.iter().map(|c| c.as_str().to_owned()));
}

/// A user name: one of the accounts, a name nobody has, or anything.
fn target(input: &mut Input<'_>) -> String {
    match input.byte() % 6 {
        b @ 0..=3 => PEOPLE[usize::from(b)].0.to_owned(),
        4 => "nobody-here".to_owned(),
        _ => input.string(300),
    }
}

/// A session id seen before, or anything.
fn session(input: &mut Input<'_>, known: &Known) -> String {
    let pick = usize::from(input.byte());
    match known.sessions.get(pick % 4) {
        Some(id) if pick < 128 => id.clone(),
        _ => input.string(200),
    }
}

/// An answer or proof: a current code of one of the caller's keys, one of its recovery
/// codes, a neighbour's code, or arbitrary bytes.
fn answer(input: &mut Input<'_>, known: &Known, uid: u32, now: UnixTime) -> Vec<u8> {
    let pick = usize::from(input.byte());
    let secret = known.secrets.get(&uid).and_then(|s| s.get(pick % 4));
    let code = known.codes.get(&uid).and_then(|c| c.get(pick % 4));
    match (pick % 4, secret, code) {
        (0, Some(s), _) => totp_code(s, now),
        (1, Some(s), _) => totp_code(s, UnixTime(now.0.saturating_sub(30))),
        (2, _, Some(c)) => c.clone().into_bytes(),
        _ => input.bytes(600).to_vec(),
    }
}

/// The 6-digit SHA1/30 s code of base32 `secret` at `at` (RFC 6238, totp-rs).
fn totp_code(secret: &str, at: UnixTime) -> Vec<u8> {
    let Ok(raw) = totp_rs::Secret::Encoded(secret.into()).to_bytes() else {
        return Vec::new();
    };
    totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 0, 30, raw, None, String::new())
        .generate(at.0)
        .into_bytes()
}

fn begin(
    core: &Core,
    input: &mut Input<'_>,
    known: &mut Known,
    caller: &Caller,
    own: &str,
    t: UnixTime,
) {
    let user = target(input);
    let ctx = LoginContext {
        service: input.string(100),
        rhost: input.string(300),
        tty: input.string(100),
        app_password: input.byte() % 4 == 0,
        forward_pass: input.byte() % 4 == 0,
        audit_session: (input.byte() % 2 == 0).then(|| u32::from(input.byte())),
        caller_uid: 0,
    };
    let got = core.begin_login(caller, &user, ctx, t);
    if caller.uid != 0 && user != own {
        let nobody = core.begin_login(caller, "nobody-zz", LoginContext::default(), t);
        match (&got, &nobody) {
            (Err(Error::InvalidArgument(_)), _) => {}
            (Err(e @ Error::AccessDenied(_)), Err(n @ Error::AccessDenied(_))) => {
                assert_eq!(
                    e.to_string(),
                    n.to_string(),
                    "another account looks like nobody"
                );
            }
            _ => panic!(
                "uid {} began a login of {user:?}: {:?}",
                caller.uid,
                got.map(|_| ())
            ),
        }
    }
    if let Ok((id, Step::Prompt { .. })) = got {
        known.sessions.push(id);
    }
}

fn admin(core: &Core, input: &mut Input<'_>, caller: &Caller, t: UnixTime) {
    let user = target(input);
    let action = match input.byte() % 9 {
        0 => Action::Reset,
        1 => Action::Disable,
        2 => Action::Require(Override::Required),
        3 => Action::Require(Override::Exempt),
        4 => Action::Require(Override::Default),
        5 => Action::Toggle(Some(true)),
        6 => Action::Toggle(None),
        7 => Action::Unlock,
        _ => {
            let _ = core.admin_list(caller, t);
            let _ = core.admin_show(caller, &user, t);
            return;
        }
    };
    let done = core.admin_act(caller, &user, action, t);
    if !matches!(caller.uid, 0 | 1002) {
        assert!(
            matches!(
                done,
                Err(Error::AccessDenied(_) | Error::InvalidArgument(_))
            ),
            "uid {} acted on {user:?}",
            caller.uid
        );
    }
}

/// `Admin1.ImportEnrolment`: the adapter's argument check, then the core.
fn import(core: &Core, input: &mut Input<'_>, caller: &Caller, t: UnixTime) {
    let user = target(input);
    let keys = (0..input.byte() % 7)
        .map(|_| ImportKey {
            name: input.string(80),
            secret: input.bytes(80).to_vec(),
            algorithm: ["SHA1", "SHA256", "SHA512", "MD5"][usize::from(input.byte() % 4)].into(),
            digits: u32::from(input.byte() % 12),
            period: match input.byte() {
                0 => 0,
                b if b < 128 => 30,
                _ => input.u32(),
            },
            has_last_step: input.byte() & 1 == 1,
            last_step: u64::from(input.u32()),
        })
        .collect();
    // argon2 per code: at most two, or one past the limit (refused before any hashing).
    let count = match input.byte() % 4 {
        3 => MAX_IMPORT_CODES + 1,
        n => usize::from(n % 3),
    };
    let codes = (0..count).map(|_| input.string(40)).collect();
    let Ok(imported) = crate::bus::import::decode(keys, codes) else {
        return;
    };
    let flags = input.byte();
    let _ = crate::core::import::import(
        core,
        caller,
        &user,
        &imported,
        flags & 1 == 1,
        flags & 2 == 2,
        t,
    );
}
