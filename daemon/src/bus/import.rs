// SPDX-License-Identifier: MIT OR Apache-2.0
//! `Admin1.ImportEnrolment`'s wire form ↔ `core::import`: bounded before anything is
//! looked at; the core authorizes and re-validates.

use zbus::zvariant::{OwnedValue, Value};
use zeroize::Zeroizing;

use twostep_config::Algorithm;
use twostep_proto::{
    import_key as key, limits, Error, ImportKey, Properties, MAX_IMPORT_CODES, MAX_IMPORT_KEYS,
};

use crate::core::import::{Imported, ImportedKey, Report};

/// Longest raw secret accepted (512 bits: SHA-512's block; google-authenticator and
/// pam_oath keys are 128 to 256 bits).
const MAX_SECRET_BYTES: usize = 64;

/// The wire arguments as the core's [`Imported`].
///
/// # Errors
/// `InvalidArgument` for too many keys or codes, an over-long field, an unknown
/// algorithm, or digits that do not fit (never echoing a secret).
pub(crate) fn decode(keys: Vec<ImportKey>, codes: Vec<String>) -> Result<Imported, Error> {
    let bad = |m: String| Err(Error::InvalidArgument(m));
    if keys.len() > MAX_IMPORT_KEYS || codes.len() > MAX_IMPORT_CODES {
        return bad(format!(
            "at most {MAX_IMPORT_KEYS} keys and {MAX_IMPORT_CODES} one-time codes per user"
        ));
    }
    let codes: Vec<Zeroizing<String>> = codes.into_iter().map(Zeroizing::new).collect();
    if codes.iter().any(|c| c.len() > limits::MAX_ANSWER_LEN) {
        return bad("a one-time code is too long".into());
    }
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        let secret = Zeroizing::new(k.secret);
        if secret.len() > MAX_SECRET_BYTES || k.name.len() > limits::MAX_USER_LEN {
            return bad("a key's secret or name is too long".into());
        }
        let algorithm = match k.algorithm.as_str() {
            "SHA1" => Algorithm::SHA1,
            "SHA256" => Algorithm::SHA256,
            "SHA512" => Algorithm::SHA512,
            _ => return bad("algorithm must be SHA1, SHA256 or SHA512".into()),
        };
        let Ok(digits) = u8::try_from(k.digits) else {
            return bad("digits out of range".into());
        };
        out.push(ImportedKey {
            name: k.name,
            secret,
            algorithm,
            digits,
            period: u64::from(k.period),
            last_step: k.has_last_step.then_some(k.last_step),
        });
    }
    Ok(Imported { keys: out, codes })
}

/// The reply: the keys of [`twostep_proto::import_key`].
pub(super) fn reply(r: Report) -> Properties {
    let mut m = Properties::new();
    let mut put = |k: &str, v: Value<'_>| {
        if let Ok(v) = OwnedValue::try_from(v) {
            m.insert(k.to_owned(), v);
        }
    };
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    put(key::OUTCOME, r.outcome.name(r.dry_run).into());
    put(key::AUTHENTICATORS, count(r.authenticators).into());
    put(key::RECOVERY_CODES, count(r.recovery_codes).into());
    put(key::WINDOW, r.window.into());
    put(key::MAX_FAILURES, r.max_failures.into());
    put(key::NOTES, r.notes.into());
    m
}
