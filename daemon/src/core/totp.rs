// SPDX-License-Identifier: MIT OR Apache-2.0
//! RFC 6238 codes (computed by totp-rs), the acceptance window and replay protection.

use subtle::ConstantTimeEq;
use totp_rs::TOTP;
use twostep_config::Algorithm;

use super::record::{Secret, TotpKey};
use super::UnixTime;

/// Bytes of a new secret: 160 bits, RFC 4226's recommendation.
pub const SECRET_BYTES: usize = 20;

/// Result of checking one code.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// The code matched this time step, later than any accepted before.
    Accepted { step: u64 },
    /// The code matched a step already used (or earlier): refused.
    Replayed,
    /// No step in the window matched.
    Wrong,
}

/// Why a key cannot be made or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The OS random number generator failed.
    #[error("random source: {0}")]
    Random(String),
    /// The secret is not base32 (a stored key: the record is damaged).
    #[error("stored secret is not valid base32")]
    NotBase32,
    /// Digits or period the TOTP library refuses.
    #[error("invalid key parameters: {0}")]
    Parameters(String),
    /// Base32 encoding of a fresh secret failed.
    #[error("base32 encoding failed")]
    Encoding,
}

impl From<KeyError> for String {
    fn from(e: KeyError) -> String {
        e.to_string()
    }
}

/// A new random key with the configured parameters.
///
/// # Errors
/// The OS random number generator failed.
pub fn new_key(
    algorithm: Algorithm,
    digits: u8,
    period: u64,
    now: UnixTime,
) -> Result<TotpKey, KeyError> {
    let mut raw = zeroize::Zeroizing::new([0u8; SECRET_BYTES]);
    getrandom::getrandom(raw.as_mut_slice()).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(TotpKey {
        secret: secret_from_raw(raw.as_slice())?,
        algorithm,
        digits,
        period,
        created: now,
    })
}

/// `raw` key bytes as the stored [`Secret`] (RFC 4648 base32 without padding, by totp-rs).
/// totp-rs's own copies are wiped when they drop (its `zeroize` feature); only the returned
/// [`Secret`], itself wiped on drop, remains.
///
/// # Errors
/// [`KeyError::Encoding`] if totp-rs does not hand back an encoded form.
pub fn secret_from_raw(raw: &[u8]) -> Result<Secret, KeyError> {
    match &totp_rs::Secret::Raw(raw.to_vec()).to_encoded() {
        totp_rs::Secret::Encoded(s) => Ok(Secret(s.clone())),
        totp_rs::Secret::Raw(_) => Err(KeyError::Encoding),
    }
}

/// Whether `key` can produce codes at all: base32 of at least 128 bits, 6 to 8 digits, a
/// non-zero period, an algorithm totp-rs has (what [`check`] needs). A record holding a key
/// that fails this is unreadable as a whole, so no answer is ever checked against part of
/// a user's keys.
///
/// # Errors
/// What is wrong with the key (never the secret).
pub fn usable(key: &TotpKey) -> Result<(), KeyError> {
    totp(key, None, "").map(|_| ())
}

fn totp(key: &TotpKey, issuer: Option<&str>, account: &str) -> Result<TOTP, KeyError> {
    if key.period == 0 {
        return Err(KeyError::Parameters("a period of 0 seconds".into()));
    }
    let raw = totp_rs::Secret::Encoded(key.secret.0.clone())
        .to_bytes()
        .map_err(|_| KeyError::NotBase32)?;
    let algorithm = match key.algorithm {
        Algorithm::SHA1 => totp_rs::Algorithm::SHA1,
        Algorithm::SHA256 => totp_rs::Algorithm::SHA256,
        Algorithm::SHA512 => totp_rs::Algorithm::SHA512,
    };
    TOTP::new(
        algorithm,
        usize::from(key.digits),
        0,
        key.period,
        raw,
        issuer.map(str::to_owned),
        account.to_owned(),
    )
    .map_err(|e| KeyError::Parameters(e.to_string()))
}

/// A base32 key in groups of four, for people typing it into an app.
pub fn group4(key: &str) -> String {
    key.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `otpauth://totp/ISSUER:USER?…` URI of Google's Key URI format.
///
/// # Errors
/// The key is unusable or a name contains `:`.
pub fn otpauth_uri(key: &TotpKey, issuer: &str, account: &str) -> Result<String, KeyError> {
    let mut uri = totp(key, Some(issuer), account)?.get_url();
    // Why: totp-rs leaves out parameters that equal the defaults; some apps guess them
    // wrong, so every parameter is always spelled out.
    for (name, value) in [
        ("algorithm", key.algorithm.as_str().to_owned()),
        ("digits", key.digits.to_string()),
        ("period", key.period.to_string()),
    ] {
        if !uri.contains(&format!("&{name}=")) && !uri.contains(&format!("?{name}=")) {
            uri.push_str(&format!("&{name}={value}"));
        }
    }
    Ok(uri)
}

/// Check `code` against every step within `window` of `now`, in constant time over the
/// window (every candidate is computed and compared), and refuse steps at or before
/// `last_step`.
///
/// # Errors
/// The stored key is unusable.
pub fn check(
    key: &TotpKey,
    code: &[u8],
    now: UnixTime,
    window: u64,
    last_step: Option<u64>,
) -> Result<Check, KeyError> {
    let typed: zeroize::Zeroizing<Vec<u8>>;
    let code = if twostep_proto::is_typed_code(code) {
        typed = zeroize::Zeroizing::new(twostep_proto::code_digits(code).collect());
        &typed[..]
    } else {
        code
    };
    let t = totp(key, None, "")?;
    let current = now.0 / key.period;
    let mut matched: Option<u64> = None;
    for step in current.saturating_sub(window)..=current.saturating_add(window) {
        let expected = t.generate(step.saturating_mul(key.period));
        let equal: bool = expected.as_bytes().ct_eq(code).into();
        if equal {
            matched = Some(matched.map_or(step, |m| m.max(step)));
        }
    }
    Ok(match matched {
        None => Check::Wrong,
        Some(step) if last_step.is_some_and(|last| step <= last) => Check::Replayed,
        Some(step) => Check::Accepted { step },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 6238 Appendix B: the seed is ASCII "1234567890" repeated to the hash's size.
    fn rfc_key(algorithm: Algorithm) -> TotpKey {
        let seed: &[u8] = match algorithm {
            Algorithm::SHA1 => b"12345678901234567890",
            Algorithm::SHA256 => b"12345678901234567890123456789012",
            Algorithm::SHA512 => {
                b"1234567890123456789012345678901234567890123456789012345678901234"
            }
        };
        TotpKey {
            secret: secret_from_raw(seed).unwrap(),
            algorithm,
            digits: 8,
            period: 30,
            created: UnixTime(0),
        }
    }

    #[test]
    fn rfc6238_appendix_b_vectors() {
        let vectors: [(u64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for (time, sha1, sha256, sha512) in vectors {
            for (alg, code) in [
                (Algorithm::SHA1, sha1),
                (Algorithm::SHA256, sha256),
                (Algorithm::SHA512, sha512),
            ] {
                let got = check(&rfc_key(alg), code.as_bytes(), UnixTime(time), 0, None).unwrap();
                assert_eq!(
                    got,
                    Check::Accepted { step: time / 30 },
                    "{alg:?} at {time}"
                );
            }
        }
    }

    #[test]
    fn window_edges() {
        let key = rfc_key(Algorithm::SHA1);
        // 94287082 is the code of step 1 (t = 30..59).
        let code = b"94287082";
        for (now, window, accepted) in [
            (59, 0, true),
            (60, 0, false),
            (89, 1, true), // step 2, one step late
            (90, 1, false),
            (0, 1, true), // step 0, one step early
            (119, 2, true),
            (120, 2, false),
        ] {
            let got = check(&key, code, UnixTime(now), window, None).unwrap();
            assert_eq!(
                got == (Check::Accepted { step: 1 }),
                accepted,
                "now={now} window={window}: {got:?}"
            );
        }
    }

    #[test]
    fn replay_refuses_the_same_and_earlier_steps() {
        let key = rfc_key(Algorithm::SHA1);
        let code = b"94287082"; // step 1
        let t = UnixTime(59);
        assert_eq!(
            check(&key, code, t, 1, Some(0)).unwrap(),
            Check::Accepted { step: 1 }
        );
        assert_eq!(check(&key, code, t, 1, Some(1)).unwrap(), Check::Replayed);
        assert_eq!(check(&key, code, t, 1, Some(2)).unwrap(), Check::Replayed);
    }

    #[test]
    fn malformed_codes_are_wrong() {
        let key = rfc_key(Algorithm::SHA1);
        for code in [
            &b""[..],
            b"9428708",
            b"942870822",
            b"+4287082",
            &[0xff; 8],
            &[b'9'; 10_000],
        ] {
            assert_eq!(
                check(&key, code, UnixTime(59), 1, None).unwrap(),
                Check::Wrong
            );
        }
    }

    #[test]
    fn new_keys_are_160_bit_random_base32() {
        let a = new_key(Algorithm::SHA1, 6, 30, UnixTime(0)).unwrap();
        let b = new_key(Algorithm::SHA1, 6, 30, UnixTime(0)).unwrap();
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.secret.0.len(), 32); // 160 bits = 32 base32 characters
        let raw = totp_rs::Secret::Encoded(a.secret.0.clone())
            .to_bytes()
            .unwrap();
        assert_eq!(raw.len(), SECRET_BYTES);
    }

    #[test]
    fn otpauth_uri_has_every_parameter() {
        for (alg, digits, name) in [
            (Algorithm::SHA256, 8, "SHA256"),
            (Algorithm::SHA1, 6, "SHA1"),
        ] {
            let mut key = rfc_key(alg);
            key.digits = digits;
            let uri = otpauth_uri(&key, "host.example", "alice").unwrap();
            assert!(
                uri.starts_with("otpauth://totp/host.example:alice?"),
                "{uri}"
            );
            for part in [
                "secret=".to_owned(),
                "issuer=host.example".to_owned(),
                format!("algorithm={name}"),
                format!("digits={digits}"),
                "period=30".to_owned(),
            ] {
                assert_eq!(uri.matches(part.as_str()).count(), 1, "{uri}: {part}");
            }
        }
    }
}
