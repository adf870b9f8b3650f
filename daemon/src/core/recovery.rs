// SPDX-License-Identifier: MIT OR Apache-2.0
//! Recovery codes: shown once, stored as argon2id hashes, each with a public id so one
//! attempt costs one hash.
//!
//! A code reads `abc-defgh-jkmnp`-like: 15 characters from a 31-letter alphabet without
//! look-alikes (no i, l, o, 0, 1), in three groups of five. The first three characters are
//! the public id; the other twelve are the secret (12 × log2(31) ≈ 59 bits).

use std::sync::{Condvar, Mutex, PoisonError};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::UnixTime;

pub const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
const ID_LEN: usize = 3;
/// Public id length of an imported 8-digit one-time code (see [`import_scratch`]).
pub const SCRATCH_ID_LEN: usize = 1;
const CODE_LEN: usize = 15;
const GROUP: usize = 5;

/// OWASP's argon2id minimum: 19 MiB, 2 passes, 1 lane.
pub const ARGON2_M_KIB: u32 = 19 * 1024;
pub const ARGON2_T: u32 = 2;
pub const ARGON2_P: u32 = 1;

/// One stored recovery code. `Debug` leaves the hash out.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StoredCode {
    /// Public id: the code's first three characters.
    pub id: String,
    /// PHC string of argon2id over the whole normalized code.
    pub hash: String,
    pub used: Option<UnixTime>,
}

impl std::fmt::Debug for StoredCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCode")
            .field("id", &self.id)
            .field("hash", &"[redacted]")
            .field("used", &self.used)
            .finish()
    }
}

/// Why recovery codes cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum CodesError {
    /// The OS random number generator failed.
    #[error("random source: {0}")]
    Random(String),
    /// argon2 refused its parameters or failed to hash.
    #[error("argon2: {0}")]
    Hash(String),
}

impl From<CodesError> for String {
    fn from(e: CodesError) -> String {
        e.to_string()
    }
}

pub(super) fn argon2() -> Result<Argon2<'static>, CodesError> {
    let params = Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, None)
        .map_err(|e| CodesError::Hash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// At most this many argon2 computations run at once, whatever the number of callers:
/// one caller flooding recovery codes cannot take every core or much memory.
pub struct HashPool {
    free: Mutex<usize>,
    cv: Condvar,
}

impl HashPool {
    pub fn new(size: usize) -> HashPool {
        HashPool {
            free: Mutex::new(size.max(1)),
            cv: Condvar::new(),
        }
    }

    /// Run `f` (an argon2 computation) when one of the pool's slots is free.
    pub(super) fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        {
            let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
            while *free == 0 {
                free = self.cv.wait(free).unwrap_or_else(PoisonError::into_inner);
            }
            *free -= 1;
        }
        let out = f();
        *self.free.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.cv.notify_one();
        out
    }
}

/// Random characters from [`ALPHABET`], without modulo bias.
pub(super) fn random_chars(n: usize) -> Result<Zeroizing<Vec<u8>>, CodesError> {
    let mut out = Zeroizing::new(Vec::with_capacity(n));
    let limit = 256 - (256 % ALPHABET.len()); // reject bytes >= limit
    let mut buf = Zeroizing::new([0u8; 64]);
    while out.len() < n {
        getrandom::getrandom(buf.as_mut_slice()).map_err(|e| CodesError::Random(e.to_string()))?;
        for &b in buf.iter() {
            if usize::from(b) < limit && out.len() < n {
                if let Some(&c) = ALPHABET.get(usize::from(b) % ALPHABET.len()) {
                    out.push(c);
                }
            }
        }
    }
    Ok(out)
}

/// Lower-case, dashes and spaces removed; `None` unless it is a well-formed code.
/// Whether `input` reads as a recovery code as people type it (either case, dashes or
/// spaces between groups).
pub fn looks_like_code(input: &[u8]) -> bool {
    normalize(input).is_some()
}

fn normalize(input: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if input.len() > 64 {
        return None;
    }
    let v: Vec<u8> = input
        .iter()
        .filter(|b| **b != b'-' && **b != b' ')
        .map(u8::to_ascii_lowercase)
        .collect();
    let v = Zeroizing::new(v);
    (v.len() == CODE_LEN && v.iter().all(|b| ALPHABET.contains(b))).then_some(v)
}

fn display(code: &[u8]) -> String {
    code.chunks(GROUP)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

/// `count` new codes: the plain codes (to show once) and what to store.
///
/// # Errors
/// The random source or argon2 failed.
pub fn generate(
    count: usize,
    pool: &HashPool,
) -> Result<(Vec<Zeroizing<String>>, Vec<StoredCode>), CodesError> {
    let a2 = argon2()?;
    let mut shown = Vec::with_capacity(count);
    let mut stored: Vec<StoredCode> = Vec::with_capacity(count);
    while shown.len() < count {
        let code = random_chars(CODE_LEN)?;
        let id = String::from_utf8_lossy(code.get(..ID_LEN).unwrap_or_default()).into_owned();
        if stored.iter().any(|s| s.id == id) {
            continue; // ids are unique within a set, so a check costs one hash
        }
        let hash = hash_with(&a2, &code, pool)?;
        shown.push(Zeroizing::new(display(&code)));
        stored.push(StoredCode {
            id,
            hash,
            used: None,
        });
    }
    Ok((shown, stored))
}

/// `code` if it is an imported one-time code as typed: exactly
/// [`SCRATCH_CODE_DIGITS`](twostep_proto::SCRATCH_CODE_DIGITS) ASCII digits, the first not
/// `0` (google-authenticator's scratch codes are `10000000..=99999999`).
pub fn scratch_code(input: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    (input.len() == twostep_proto::SCRATCH_CODE_DIGITS
        && input.iter().all(u8::is_ascii_digit)
        && input.first() != Some(&b'0'))
    .then(|| Zeroizing::new(input.to_vec()))
}

/// Store imported one-time codes (google-authenticator's 8-digit scratch codes) as
/// unused recovery codes: argon2id over the whole code, the first
/// [`SCRATCH_ID_LEN`] digit(s) as the public id.
///
/// Why a one-digit id: an 8-digit code has only ≈26 bits, so every character kept in
/// the clear shortens an offline search of a stolen store tenfold; a twostep code's
/// three id characters would leave 5 digits. One digit keeps the expected cost of a
/// wrong attempt near one hash (codes sharing the id are all tried: at most
/// [`MAX_IMPORT_CODES`](twostep_proto::MAX_IMPORT_CODES)), while the id, being one
/// character, never equals a twostep code's three.
///
/// # Errors
/// A code that is not [`scratch_code`]-shaped ([`CodesError::Hash`] naming its position,
/// never the code), the random source or argon2.
pub fn import_scratch(codes: &[&[u8]], pool: &HashPool) -> Result<Vec<StoredCode>, CodesError> {
    let a2 = argon2()?;
    let mut stored = Vec::with_capacity(codes.len());
    for (i, input) in codes.iter().enumerate() {
        let code = scratch_code(input)
            .ok_or_else(|| CodesError::Hash(format!("one-time code {} is not 8 digits", i + 1)))?;
        let id = String::from_utf8_lossy(code.get(..SCRATCH_ID_LEN).unwrap_or_default());
        stored.push(StoredCode {
            id: id.into_owned(),
            hash: hash_with(&a2, &code, pool)?,
            used: None,
        });
    }
    Ok(stored)
}

/// Index of the stored code (`unused`: only unused ones; else only spent ones) with the
/// id of `code`'s first `id_len` characters whose hash `code` opens. Costs one hash per
/// stored code of that id.
fn matching(
    code: &[u8],
    id_len: usize,
    stored: &[StoredCode],
    unused: bool,
    pool: &HashPool,
) -> Option<usize> {
    let id = code.get(..id_len)?;
    stored
        .iter()
        .enumerate()
        .filter(|(_, s)| s.used.is_none() == unused && s.id.as_bytes() == id)
        .find(|(_, s)| verify(code, &s.hash, pool))
        .map(|(i, _)| i)
}

/// Index of the SPENT stored code that `input` (an 8-digit one-time code) opens: an
/// import that replaces an enrolment keeps such a code spent.
pub fn find_spent_scratch(input: &[u8], stored: &[StoredCode], pool: &HashPool) -> Option<usize> {
    matching(&scratch_code(input)?, SCRATCH_ID_LEN, stored, false, pool)
}

/// Index of the unused stored code that `input` opens, if any. Costs at most one hash.
/// An imported 8-digit one-time code ([`import_scratch`]) costs one hash per unused code
/// sharing its first digit.
pub fn find(input: &[u8], stored: &[StoredCode], pool: &HashPool) -> Option<usize> {
    if let Some(code) = scratch_code(input) {
        return matching(&code, SCRATCH_ID_LEN, stored, true, pool);
    }
    let code = normalize(input)?;
    matching(&code, ID_LEN, stored, true, pool)
}

/// The PHC string of argon2id over `secret` with a fresh random salt, on `pool`.
///
/// # Errors
/// The random source or argon2 failed.
pub(super) fn hash(secret: &[u8], pool: &HashPool) -> Result<String, CodesError> {
    hash_with(&argon2()?, secret, pool)
}

fn hash_with(a2: &Argon2<'_>, secret: &[u8], pool: &HashPool) -> Result<String, CodesError> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| CodesError::Random(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| CodesError::Hash(e.to_string()))?;
    pool.run(|| a2.hash_password(secret, &salt).map(|h| h.to_string()))
        .map_err(|e| CodesError::Hash(e.to_string()))
}

/// Whether `secret` matches the PHC string `phc` (one argon2 computation on `pool`; false
/// for a malformed `phc`, without computing).
pub(super) fn verify(secret: &[u8], phc: &str, pool: &HashPool) -> bool {
    let (Ok(parsed), Ok(a2)) = (PasswordHash::new(phc), argon2()) else {
        return false;
    };
    pool.run(|| a2.verify_password(secret, &parsed).is_ok())
}

/// Unused codes left.
pub fn left(stored: &[StoredCode]) -> usize {
    stored.iter().filter(|s| s.used.is_none()).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_typeable_unique_and_check_once() {
        let pool = HashPool::new(2);
        let (shown, mut stored) = generate(3, &pool).unwrap();
        assert_eq!(shown.len(), 3);
        for (code, s) in shown.iter().zip(&stored) {
            assert_eq!(code.len(), 17);
            assert!(
                twostep_proto::is_recovery_shape(code.as_bytes()),
                "{}",
                code.as_str()
            );
            assert!(
                s.hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
                "{}",
                s.hash
            );
            assert!(!s.hash.contains(code.as_str()));
        }
        let first = shown.first().unwrap();
        assert_eq!(find(first.as_bytes(), &stored, &pool), Some(0));
        // Upper case and without dashes is the same code.
        let loose = first.to_uppercase().replace('-', "");
        assert_eq!(find(loose.as_bytes(), &stored, &pool), Some(0));
        stored[0].used = Some(UnixTime(1));
        assert_eq!(find(first.as_bytes(), &stored, &pool), None);
        assert_eq!(left(&stored), 2);
        // Right id, wrong secret.
        let mut wrong = first.as_bytes().to_vec();
        let last = wrong.len() - 1;
        wrong[last] = if wrong[last] == b'a' { b'b' } else { b'a' };
        stored[0].used = None;
        assert_eq!(find(&wrong, &stored, &pool), None);
        for junk in [&b""[..], b"123456", &[0xff; 15], &[b'a'; 1000]] {
            assert_eq!(find(junk, &stored, &pool), None);
        }
    }

    #[test]
    fn imported_scratch_codes_open_once_and_never_as_another_kind() {
        let pool = HashPool::new(2);
        let mut stored = import_scratch(&[b"12345678", b"19999999", b"87654321"], &pool).unwrap();
        assert!(stored.iter().all(|s| s.id.len() == SCRATCH_ID_LEN));
        assert!(stored.iter().all(|s| !s.hash.contains("12345678")));
        // Two codes share the id "1": both are found.
        assert_eq!(find(b"12345678", &stored, &pool), Some(0));
        assert_eq!(find(b"19999999", &stored, &pool), Some(1));
        assert_eq!(find(b"87654321", &stored, &pool), Some(2));
        for wrong in [
            &b"12345679"[..],
            b"1234567",
            b"123456789",
            b"02345678",
            b"1234567a",
        ] {
            assert_eq!(find(wrong, &stored, &pool), None);
        }
        stored[1].used = Some(UnixTime(5));
        assert_eq!(find(b"19999999", &stored, &pool), None);
        assert_eq!(find_spent_scratch(b"19999999", &stored, &pool), Some(1));
        assert_eq!(find_spent_scratch(b"12345678", &stored, &pool), None);
        // Beside generated codes: neither kind opens the other.
        let (shown, generated) = generate(2, &pool).unwrap();
        stored.extend(generated);
        assert_eq!(find(shown[0].as_bytes(), &stored, &pool), Some(3));
        assert_eq!(find(b"87654321", &stored, &pool), Some(2));
        assert!(import_scratch(&[b"01234567"], &pool).is_err());
    }

    #[test]
    fn argon2_parameters_meet_owasp() {
        const { assert!(ARGON2_M_KIB >= 19 * 1024 && ARGON2_T >= 2 && ARGON2_P >= 1) };
    }

    #[test]
    fn alphabet_has_no_look_alikes() {
        for c in b"il0o1" {
            assert!(!ALPHABET.contains(c));
        }
        assert_eq!(ALPHABET.len(), 31);
        // 12 secret characters carry at least 50 bits.
        assert!(12.0 * (ALPHABET.len() as f64).log2() >= 50.0);
    }
}
