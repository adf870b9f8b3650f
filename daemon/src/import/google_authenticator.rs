// SPDX-License-Identifier: MIT OR Apache-2.0
//! libpam-google-authenticator's `~/.google_authenticator`, as its module reads it
//! (upstream `FILEFORMAT` and `src/pam_google_authenticator.c`):
//!
//! - the first line is the base32 secret (spaces and `-` ignored, either case; `0`, `1`
//!   and `8` read as `O`, `L` and `B`, as the module's decoder does);
//! - option lines start with `" ` and an upper-case name: `TOTP_AUTH` (time-based),
//!   `HOTP_COUNTER n` (counter-based, takes precedence), `STEP_SIZE n` (seconds, 1–60,
//!   default 30), `WINDOW_SIZE n` (1–100, default 3: codes of steps `-(n-1)/2 ..= n/2`
//!   around now are accepted), `DISALLOW_REUSE [step …]` (the time steps — counter values,
//!   skew included — used recently; without it a code may be reused), `RATE_LIMIT n m
//!   [time …]` (n logins per m seconds, then the times of recent attempts), `TIME_SKEW n`
//!   (steps the module learned the phone's clock is off by) and `RESETTING_TIME_SKEW …`
//!   (its work in progress);
//! - every other line is an 8-digit one-time scratch code (`10000000..=99999999`), at most
//!   10 (what `google-authenticator -e` allows);
//! - at most 64 KiB, no NUL byte.
//!
//! Stricter than the module where it ignores things: an unknown option, an option given
//! twice or a line that is neither is "malformed" — an import should never guess.

use zeroize::Zeroizing;

use super::{window_note, Reach, Skip};
use crate::core::import::{Imported, ImportedKey};
use twostep_config::Algorithm;

/// The largest file the module reads.
pub const MAX_FILE_BYTES: usize = 64 * 1024;
/// The most scratch codes `google-authenticator -e` makes.
pub const MAX_SCRATCH_CODES: usize = 10;
/// The authenticator name an imported key gets in twostep.
pub const AUTHENTICATOR_NAME: &str = "google-authenticator";
/// What google-authenticator's codes have (its module checks 6 digits only).
pub const DIGITS: u8 = 6;

/// One parsed `~/.google_authenticator` of a time-based enrolment. `Debug` never shows
/// the secret or a scratch code.
#[derive(Clone, PartialEq, Eq)]
pub struct GaFile {
    /// The raw secret.
    pub secret: Zeroizing<Vec<u8>>,
    /// Seconds per step (`STEP_SIZE`).
    pub step_size: u64,
    /// `WINDOW_SIZE`.
    pub window_size: u64,
    /// `DISALLOW_REUSE`'s used steps; `None`: reuse was allowed.
    pub disallow_reuse: Option<Vec<u64>>,
    /// `RATE_LIMIT`'s logins and seconds.
    pub rate_limit: Option<(u64, u64)>,
    /// `TIME_SKEW`, in steps.
    pub time_skew: i64,
    /// The unused scratch codes.
    pub scratch_codes: Vec<Zeroizing<String>>,
}

impl std::fmt::Debug for GaFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GaFile")
            .field("secret", &"[redacted]")
            .field("step_size", &self.step_size)
            .field("window_size", &self.window_size)
            .field("disallow_reuse", &self.disallow_reuse)
            .field("rate_limit", &self.rate_limit)
            .field("time_skew", &self.time_skew)
            .field("scratch_codes", &self.scratch_codes.len())
            .finish()
    }
}

impl GaFile {
    /// The last step the module accepted (the highest of `DISALLOW_REUSE`), twostep's replay
    /// mark for the key.
    pub fn last_step(&self) -> Option<u64> {
        self.disallow_reuse.as_ref()?.iter().copied().max()
    }

    /// Steps early and late the module accepted around now (skew aside).
    pub fn reach(&self) -> Reach {
        let w = self.window_size;
        (w.saturating_sub(1) / 2, w / 2)
    }

    /// What the daemon is asked to import.
    pub fn to_imported(&self) -> Imported {
        Imported {
            keys: vec![ImportedKey {
                name: AUTHENTICATOR_NAME.to_owned(),
                secret: self.secret.clone(),
                algorithm: Algorithm::SHA1,
                digits: DIGITS,
                period: self.step_size,
                last_step: self.last_step(),
            }],
            codes: self.scratch_codes.clone(),
        }
    }

    /// How logins change for this user, against this host's window (steps either side)
    /// and lockout (failures before a lock), one sentence each.
    pub fn notes(&self, host_window: u64, host_max_failures: u32) -> Vec<String> {
        let mut notes = Vec::new();
        notes.extend(window_note(
            "google-authenticator",
            self.reach(),
            host_window,
        ));
        if self.time_skew != 0 {
            let off = self.time_skew.unsigned_abs();
            let what = if off > host_window {
                "its codes are refused until the phone's clock is set right"
            } else {
                "within this host's window, so its codes still work"
            };
            notes.push(format!(
                "google-authenticator had learned this phone's clock is off by {} step(s) \
                 ({} s); twostep keeps no per-user skew: {what}",
                self.time_skew,
                self.time_skew
                    .saturating_mul(i64::try_from(self.step_size).unwrap_or(30))
            ));
        }
        if self.disallow_reuse.is_none() {
            notes.push(
                "google-authenticator let a code be used twice (no DISALLOW_REUSE); twostep \
                 refuses every reuse"
                    .into(),
            );
        }
        if let Some((n, m)) = self.rate_limit {
            notes.push(format!(
                "google-authenticator allowed {n} login(s) per {m} s (RATE_LIMIT); twostep's \
                 lockout applies instead: a lock after {host_max_failures} failure(s) in a row"
            ));
        }
        notes
    }
}

fn malformed(msg: impl Into<String>) -> Skip {
    Skip::Malformed(msg.into())
}

/// The secret of the first line, decoded as the module decodes it.
fn secret(line: &str) -> Result<Zeroizing<Vec<u8>>, Skip> {
    let mut normalized = Zeroizing::new(String::with_capacity(line.len()));
    for c in line.chars() {
        match c {
            ' ' | '\t' | '\r' | '-' => {}
            '0' => normalized.push('O'),
            '1' => normalized.push('L'),
            '8' => normalized.push('B'),
            'a'..='z' | 'A'..='Z' | '2'..='7' => normalized.push(c.to_ascii_uppercase()),
            _ => return Err(malformed("the first line is not a base32 secret")),
        }
    }
    if normalized.is_empty() {
        return Err(malformed("the first line (the secret) is empty"));
    }
    totp_rs::Secret::Encoded(normalized.to_string())
        .to_bytes()
        .map(Zeroizing::new)
        .map_err(|_| malformed("the first line is not a base32 secret"))
}

/// A number option's value within `min..=max`.
fn number(name: &str, value: &str, min: u64, max: u64) -> Result<u64, Skip> {
    match value.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) && !value.starts_with('+') => Ok(n),
        _ => Err(malformed(format!(
            "{name} must be a number from {min} to {max}"
        ))),
    }
}

/// A list of unsigned numbers.
fn numbers(name: &str, value: &str) -> Result<Vec<u64>, Skip> {
    value
        .split_ascii_whitespace()
        .map(|v| {
            v.parse::<u64>()
                .ok()
                .filter(|_| !v.starts_with('+'))
                .ok_or_else(|| malformed(format!("{name} holds something that is not a number")))
        })
        .collect()
}

/// The options seen, for "twice" checks.
#[derive(Default)]
struct Options {
    totp: bool,
    hotp: bool,
    step_size: Option<u64>,
    window_size: Option<u64>,
    disallow_reuse: Option<Vec<u64>>,
    rate_limit: Option<(u64, u64)>,
    time_skew: Option<i64>,
    resetting: bool,
}

impl Options {
    fn take(&mut self, name: &str, value: &str) -> Result<(), Skip> {
        let twice = || malformed(format!("option {name} is given twice"));
        match name {
            "TOTP_AUTH" => {
                if self.totp {
                    return Err(twice());
                }
                self.totp = true;
            }
            "HOTP_COUNTER" => {
                if self.hotp {
                    return Err(twice());
                }
                self.hotp = true;
            }
            "STEP_SIZE" => {
                if self.step_size.is_some() {
                    return Err(twice());
                }
                self.step_size = Some(number(name, value, 1, 60)?);
            }
            "WINDOW_SIZE" => {
                if self.window_size.is_some() {
                    return Err(twice());
                }
                self.window_size = Some(number(name, value, 1, 100)?);
            }
            "DISALLOW_REUSE" => {
                if self.disallow_reuse.is_some() {
                    return Err(twice());
                }
                self.disallow_reuse = Some(numbers(name, value)?);
            }
            "RATE_LIMIT" => {
                if self.rate_limit.is_some() {
                    return Err(twice());
                }
                let mut parts = value.split_ascii_whitespace();
                let n = number(name, parts.next().unwrap_or(""), 1, 100)?;
                let m = number(name, parts.next().unwrap_or(""), 1, 3600)?;
                numbers(name, &parts.collect::<Vec<_>>().join(" "))?;
                self.rate_limit = Some((n, m));
            }
            "TIME_SKEW" => {
                if self.time_skew.is_some() {
                    return Err(twice());
                }
                let skew = value
                    .parse::<i64>()
                    .ok()
                    .filter(|s| s.unsigned_abs() <= 1_000_000)
                    .ok_or_else(|| malformed("TIME_SKEW must be a number of steps"))?;
                self.time_skew = Some(skew);
            }
            // The module's own bookkeeping while it learns a skew: nothing to carry over.
            "RESETTING_TIME_SKEW" => {
                if self.resetting {
                    return Err(twice());
                }
                self.resetting = true;
            }
            other => {
                return Err(malformed(format!(
                    "unknown option {:?}",
                    other.chars().take(40).collect::<String>()
                )))
            }
        }
        Ok(())
    }
}

/// Parse a `~/.google_authenticator` file.
///
/// # Errors
/// [`Skip::Malformed`] saying what and where (never the secret or a code);
/// [`Skip::Unsupported`] for a counter-based (HOTP) enrolment, or one that is neither
/// time- nor counter-based.
pub fn parse(bytes: &[u8]) -> Result<GaFile, Skip> {
    if bytes.is_empty() || bytes.len() > MAX_FILE_BYTES {
        return Err(malformed(format!(
            "{} bytes: the file holds 1 to {MAX_FILE_BYTES}",
            bytes.len()
        )));
    }
    if bytes.contains(&0) {
        return Err(malformed("the file holds a NUL byte"));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| malformed("the file is not text"))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let secret = secret(lines.next().unwrap_or_default())?;
    let mut options = Options::default();
    let mut scratch_codes: Vec<Zeroizing<String>> = Vec::new();
    for (i, line) in lines.enumerate() {
        let number = i + 2;
        if line.is_empty() {
            continue;
        }
        if let Some(option) = line.strip_prefix("\" ") {
            let (name, value) = option
                .split_once([' ', '\t'])
                .map_or((option, ""), |(n, v)| {
                    (n, v.trim_start_matches([' ', '\t']))
                });
            options.take(name, value.trim_end())?;
            continue;
        }
        let is_code =
            line.len() == 8 && line.bytes().all(|b| b.is_ascii_digit()) && !line.starts_with('0');
        if !is_code {
            return Err(malformed(format!(
                "line {number} is neither an option nor an 8-digit scratch code"
            )));
        }
        if scratch_codes.iter().any(|c| c.as_str() == line) {
            return Err(malformed(format!("line {number} repeats a scratch code")));
        }
        scratch_codes.push(Zeroizing::new(line.to_owned()));
    }
    if scratch_codes.len() > MAX_SCRATCH_CODES {
        return Err(malformed(format!(
            "{} scratch codes: google-authenticator makes at most {MAX_SCRATCH_CODES}",
            scratch_codes.len()
        )));
    }
    if options.hotp {
        return Err(Skip::Unsupported(
            "counter-based (HOTP_COUNTER): twostep has time-based codes only; the user \
             enrols anew (twostepctl enroll)"
                .into(),
        ));
    }
    if !options.totp {
        return Err(Skip::Unsupported(
            "neither TOTP_AUTH nor HOTP_COUNTER: the file holds no usable authenticator".into(),
        ));
    }
    Ok(GaFile {
        secret,
        step_size: options.step_size.unwrap_or(30),
        window_size: options.window_size.unwrap_or(3),
        disallow_reuse: options.disallow_reuse,
        rate_limit: options.rate_limit,
        time_skew: options.time_skew.unwrap_or(0),
        scratch_codes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // A file as `google-authenticator -t -d -r 3 -R 30 -w 3 -e 5` writes it.
    const MADE: &str = "XWZKIC3HG75BD3NLXFQULYIOBU\n\" RATE_LIMIT 3 30\n\" WINDOW_SIZE 3\n\
                        \" DISALLOW_REUSE\n\" TOTP_AUTH\n49133232\n49061488\n49633076\n10462713\n\
                        97007135\n";

    #[test]
    fn a_file_the_program_made() {
        let f = parse(MADE.as_bytes()).unwrap();
        assert_eq!(f.secret.len(), 16);
        assert_eq!(f.step_size, 30);
        assert_eq!(f.window_size, 3);
        assert_eq!(f.reach(), (1, 1));
        assert_eq!(f.disallow_reuse, Some(vec![]));
        assert_eq!(f.last_step(), None);
        assert_eq!(f.rate_limit, Some((3, 30)));
        assert_eq!(f.scratch_codes.len(), 5);
        let imported = f.to_imported();
        assert_eq!(imported.keys[0].period, 30);
        assert_eq!(imported.codes.len(), 5);
        let shown = format!("{f:?} {imported:?}");
        assert!(!shown.contains("49133232"), "{shown}");
        assert_eq!(f.notes(1, 5).len(), 1, "{:?}", f.notes(1, 5)); // the rate limit
    }

    #[test]
    fn used_steps_skew_step_size_and_window() {
        let text = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\r\n\" STEP_SIZE 60\r\n\" WINDOW_SIZE 17\r\n\
                    \" TIME_SKEW -3\n\" DISALLOW_REUSE 100 102 101\n\" RESETTING_TIME_SKEW 1+2\n\
                    \" TOTP_AUTH";
        let f = parse(text.as_bytes()).unwrap();
        assert_eq!(f.secret.as_slice(), b"12345678901234567890");
        assert_eq!((f.step_size, f.window_size, f.time_skew), (60, 17, -3));
        assert_eq!(f.last_step(), Some(102));
        assert_eq!(f.reach(), (8, 8));
        let notes = f.notes(1, 5).join("\n");
        assert!(notes.contains("8 step(s) early"), "{notes}");
        assert!(notes.contains("off by -3 step(s) (-180 s)"), "{notes}");
        assert!(notes.contains("refused until"), "{notes}");
        assert_eq!(f.to_imported().keys[0].last_step, Some(102));
    }

    #[test]
    fn the_secret_is_read_as_the_module_reads_it() {
        let f = parse(b"gezd-gnbv gy3t qojq gezd gnbv gy3t qojq\n\" TOTP_AUTH\n").unwrap();
        assert_eq!(f.secret.as_slice(), b"12345678901234567890");
        // 0, 1, 8 are O, L, B.
        let a = parse(b"OLBAAAAAAAAAAAAAAAAAAAAAAA\n\" TOTP_AUTH\n").unwrap();
        let b = parse(b"018AAAAAAAAAAAAAAAAAAAAAAA\n\" TOTP_AUTH\n").unwrap();
        assert_eq!(a.secret, b.secret);
    }

    #[test]
    fn refusals_say_why_and_never_the_secret() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "1 to"),
            (b"GEZDGNBV\0\n\" TOTP_AUTH\n", "NUL"),
            (b"\n\" TOTP_AUTH\n", "empty"),
            (b"GEZDG=NBV\n\" TOTP_AUTH\n", "not a base32"),
            (b"GEZDGNBV\n\" TOTP_AUTH\n1234567\n", "line 3 is neither"),
            (b"GEZDGNBV\n\" TOTP_AUTH\n01234567\n", "line 3"),
            (b"GEZDGNBV\n\" TOTP_AUTH\n12345678\n12345678\n", "repeats"),
            (b"GEZDGNBV\n\" TOTP_AUTH\n\" TOTP_AUTH\n", "twice"),
            (
                b"GEZDGNBV\n\" TOTP_AUTH\n\" WINDOW_SIZE 0\n",
                "WINDOW_SIZE must",
            ),
            (
                b"GEZDGNBV\n\" TOTP_AUTH\n\" STEP_SIZE 61\n",
                "STEP_SIZE must",
            ),
            (
                b"GEZDGNBV\n\" TOTP_AUTH\n\" DISALLOW_REUSE 1 x\n",
                "not a number",
            ),
            (
                b"GEZDGNBV\n\" TOTP_AUTH\n\" RATE_LIMIT 3\n",
                "RATE_LIMIT must",
            ),
            (
                b"GEZDGNBV\n\" TOTP_AUTH\n\" OTP_DISABLED\n",
                "unknown option",
            ),
            (b"GEZDGNBV\n\" HOTP_COUNTER 1\n", "HOTP"),
            (b"GEZDGNBV\n\" TOTP_AUTH\n\" HOTP_COUNTER 4\n", "HOTP"),
            (b"GEZDGNBV\n12345678\n", "neither TOTP_AUTH"),
            (b"\xff\xfe\n", "not text"),
        ];
        for (bytes, want) in cases {
            let e = parse(bytes).unwrap_err().to_string();
            assert!(e.contains(want), "{e:?} (wanted {want:?})");
            assert!(!e.contains("GEZDG") && !e.contains("2345678"), "{e}");
        }
        let many: String = (0..11).map(|i| format!("{}\n", 10_000_000 + i)).collect();
        let e = parse(format!("GEZDGNBV\n\" TOTP_AUTH\n{many}").as_bytes()).unwrap_err();
        assert!(e.to_string().contains("at most 10"), "{e}");
        assert!(parse(&vec![b'A'; MAX_FILE_BYTES + 1]).is_err());
    }
}
