// SPDX-License-Identifier: MIT OR Apache-2.0
//! Microbenchmarks of the daemon's verification core and of the per-login work around it,
//! calling the daemon crate's own functions: TOTP check (right and wrong code), recovery-code
//! check at the configured argon2id cost, the store's durable save and its load, and the
//! NSS look-up the daemon does per login.
//!
//! Each figure is the median over batches of the time per call.

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use twostep_config::Algorithm;
use twostepd::core::record::{Record, Secret, TotpKey};
use twostepd::core::recovery::{self, HashPool};
use twostepd::core::store::FileStore;
use twostepd::core::totp::{self, Check};
use twostepd::core::UnixTime;

use crate::driver::unix_now;
use crate::otp;
use crate::stats::median;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Micro {
    pub name: String,
    /// Median time per call, in microseconds.
    pub micros: f64,
    pub calls: usize,
}

/// Median over `batches` of the time per call of `f`, in microseconds.
fn per_call(batches: usize, per_batch: usize, mut f: impl FnMut()) -> f64 {
    let mut v = Vec::with_capacity(batches);
    for _ in 0..batches {
        let t = Instant::now();
        for _ in 0..per_batch {
            f();
        }
        v.push(t.elapsed().as_secs_f64() * 1e6 / per_batch as f64);
    }
    median(&v)
}

fn entry(name: &str, micros: f64, calls: usize) -> Micro {
    Micro {
        name: name.to_owned(),
        micros,
        calls,
    }
}

/// TOTP and recovery-code checks. `scale` 1 is the full run; smaller is quicker.
///
/// # Errors
/// A check did not give the expected answer (the benchmark would measure the wrong thing).
pub fn core(scale: usize) -> Result<Vec<Micro>, String> {
    let scale = scale.max(1);
    let secret = otp::secret_for(0);
    let key = TotpKey {
        secret: Secret(otp::base32(&secret)),
        algorithm: Algorithm::SHA1,
        digits: 6,
        period: 30,
        created: UnixTime(0),
    };
    let now = UnixTime(unix_now());
    let step = now.0 / 30;
    let right = otp::code(&secret, step);
    let wrong = otp::wrong_code(&secret, step - 11, step + 11, 42);
    let mut out = Vec::new();
    for window in [1u64, 10] {
        match totp::check(&key, &right, now, window, None) {
            Ok(Check::Accepted { .. }) => {}
            other => return Err(format!("totp::check(right) = {other:?}")),
        }
        match totp::check(&key, &wrong, now, window, None) {
            Ok(Check::Wrong) => {}
            other => return Err(format!("totp::check(wrong) = {other:?}")),
        }
        let calls = 2_000 * scale;
        out.push(entry(
            &format!("totp::check, right code, window {window}"),
            per_call(10, calls / 10, || {
                let _ = std::hint::black_box(totp::check(&key, &right, now, window, None));
            }),
            calls,
        ));
        out.push(entry(
            &format!("totp::check, wrong code, window {window}"),
            per_call(10, calls / 10, || {
                let _ = std::hint::black_box(totp::check(&key, &wrong, now, window, None));
            }),
            calls,
        ));
    }

    let pool = HashPool::new(2);
    let (shown, stored) = recovery::generate(10, &pool)?;
    let good = shown.get(3).ok_or("no code")?.as_bytes().to_vec();
    if recovery::find(&good, &stored, &pool) != Some(3) {
        return Err("recovery::find(right) did not find the code".into());
    }
    let mut bad_secret = good.clone();
    if let Some(last) = bad_secret.last_mut() {
        *last = if *last == b'a' { b'b' } else { b'a' };
    }
    // An id that no stored code has: no hash is computed.
    let mut unknown = good.clone();
    'search: for a in recovery::ALPHABET {
        for b in recovery::ALPHABET {
            for c in recovery::ALPHABET {
                let id = [*a, *b, *c];
                if !stored.iter().any(|s| s.id.as_bytes() == id) {
                    unknown[..3].copy_from_slice(&id);
                    break 'search;
                }
            }
        }
    }
    let hashes = 3 * scale.min(4);
    out.push(entry(
        "recovery::find, right code (one argon2id: m=19 MiB, t=2, p=1)",
        per_call(hashes, 1, || {
            let _ = std::hint::black_box(recovery::find(&good, &stored, &pool));
        }),
        hashes,
    ));
    out.push(entry(
        "recovery::find, known id, wrong secret (one argon2id)",
        per_call(hashes, 1, || {
            let _ = std::hint::black_box(recovery::find(&bad_secret, &stored, &pool));
        }),
        hashes,
    ));
    out.push(entry(
        "recovery::find, unknown id (no hash)",
        per_call(10, 1_000, || {
            let _ = std::hint::black_box(recovery::find(&unknown, &stored, &pool));
        }),
        10_000,
    ));
    out.push(entry(
        "recovery::find, a 6-digit code (not a recovery code)",
        per_call(10, 1_000, || {
            let _ = std::hint::black_box(recovery::find(&right, &stored, &pool));
        }),
        10_000,
    ));
    Ok(out)
}

/// The store's durable save (temp file, fsync, rename, directory fsync) and its load, for a
/// realistic record, in the store at `state_dir` (`where_` says which, for the table),
/// sealing and opening its secret with `sealer` as the daemon does.
///
/// # Errors
/// The store cannot be opened or written.
pub fn store(
    state_dir: &Path,
    record: &Record,
    scale: usize,
    where_: &str,
    sealer: std::sync::Arc<twostepd::core::seal::Sealer>,
) -> Result<Vec<Micro>, String> {
    let store = FileStore::open_with(state_dir, sealer)?;
    store.save(record).map_err(|e| e.to_string())?;
    let saves = 20 * scale.max(1);
    let loads = 2_000 * scale.max(1);
    let bytes = serde_json::to_vec(record).map(|b| b.len()).unwrap_or(0);
    Ok(vec![
        entry(
            &format!(
                "Store::save of a {bytes}-byte record in {where_} (seal, the other slot in place + fdatasync)"
            ),
            per_call(saves, 1, || {
                let _ = std::hint::black_box(store.save(record));
            }),
            saves,
        ),
        entry(
            &format!("Store::load in {where_} (open, read 8 KiB, 2 CRC-32, parse JSON, open the secret)"),
            per_call(10, loads / 10, || {
                let _ = std::hint::black_box(store.load(record.uid.unwrap_or_default()));
            }),
            loads,
        ),
    ])
}

/// The daemon's `users::by_name` (getpwnam through NSS) for `name`.
pub fn getpwnam(name: &str, calls: usize) -> Micro {
    let calls = calls.max(10);
    entry(
        &format!("users::by_name({name}) (getpwnam)"),
        per_call(10, calls / 10, || {
            let _ = std::hint::black_box(twostepd::core::users::by_name(name));
        }),
        calls,
    )
}
