// SPDX-License-Identifier: MIT OR Apache-2.0
//! pam_oath's usersfile (liboath `usersfile.c`): one token per line,
//!
//! ```text
//! TYPE  USER  PASSWORD  HEXSECRET  [FACTOR  LAST-OTP  TIME]
//! ```
//!
//! - TYPE is one of `HOTP`, `HOTP/E`, `HOTP/E/{6,7,8}` (counter-based) or
//!   `HOTP/T30`, `HOTP/T60`, `HOTP/T{30,60}/{6,7,8}` (time-based, 30 or 60 s steps; digits
//!   default 6);
//! - PASSWORD is `-` (none), `+` (checked by another module) or a password pam_oath
//!   checks itself;
//! - the last three fields are written by pam_oath after a success, all or none: for a
//!   time-based token FACTOR is the signed offset of the accepted step from the step of
//!   TIME, LAST-OTP the code, and TIME its local time as `%Y-%m-%dT%H:%M:%SL` (a literal
//!   `L`); so the last accepted step is `TIME / step + FACTOR`;
//! - blank lines and lines starting with `#` are skipped; a user may have several lines
//!   (any of their tokens is accepted).
//!
//! Per user: all their lines or none. A user with a counter-based or malformed line is
//! skipped as a whole; a malformed line that names no user refuses the whole file, since
//! it could have been anyone's.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use zeroize::Zeroizing;

use super::{window_note, Skip};
use crate::core::import::{Imported, ImportedKey};
use twostep_config::Algorithm;

/// The largest usersfile read.
pub const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;
/// Longest secret liboath reads (bytes).
pub const MAX_SECRET_BYTES: usize = 32;
/// pam_oath's `TIME` format.
pub const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%SL";

/// One time-based token. `Debug` never shows the secret or the last code.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The line it is on (1-based).
    pub line: usize,
    /// Seconds per step: 30 or 60.
    pub period: u64,
    pub digits: u8,
    pub secret: Zeroizing<Vec<u8>>,
    /// Whether pam_oath checked a password of its own on this line.
    pub has_password: bool,
    /// The last success: FACTOR and TIME (local time, as written).
    pub last: Option<(i64, NaiveDateTime)>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("line", &self.line)
            .field("period", &self.period)
            .field("digits", &self.digits)
            .field("secret", &"[redacted]")
            .field("has_password", &self.has_password)
            .field("last", &self.last)
            .finish()
    }
}

impl Token {
    /// The last step pam_oath accepted, with `to_epoch` turning the file's local time into
    /// Unix seconds (`None`: it names no instant).
    ///
    /// # Errors
    /// [`Skip::Malformed`] when the time names no instant or the step is out of range.
    pub fn last_step(
        &self,
        to_epoch: impl Fn(NaiveDateTime) -> Option<i64>,
    ) -> Result<Option<u64>, Skip> {
        let Some((factor, time)) = self.last else {
            return Ok(None);
        };
        let bad = || Skip::Malformed(format!("line {}: the time of the last use", self.line));
        let secs = to_epoch(time).ok_or_else(bad)?;
        let period = i64::try_from(self.period).map_err(|_| bad())?;
        let step = secs
            .div_euclid(period)
            .checked_add(factor)
            .filter(|s| *s >= 0)
            .ok_or_else(bad)?;
        Ok(Some(u64::try_from(step).map_err(|_| bad())?))
    }
}

/// A usersfile, by user (in name order).
#[derive(Debug, Default)]
pub struct UsersFile {
    /// Each user's time-based tokens, or why the user is skipped.
    pub users: BTreeMap<String, Result<Vec<Token>, Skip>>,
}

/// A line's type word: `(time step, digits)`, step 0 for counter-based.
fn token_type(word: &str) -> Option<(u64, u8)> {
    let (mode, digits) = match word.rsplit_once('/') {
        Some((m, d @ ("6" | "7" | "8"))) if m != "HOTP" => (m, d.parse().ok()?),
        _ => (word, 6),
    };
    match mode {
        "HOTP" | "HOTP/E" => Some((0, digits)),
        "HOTP/T30" => Some((30, digits)),
        "HOTP/T60" => Some((60, digits)),
        _ => None,
    }
}

/// A line's token, for `user`.
fn token(number: usize, fields: &[&str]) -> Result<Token, Skip> {
    let bad = |what: &str| Skip::Malformed(format!("line {number}: {what}"));
    let (step, digits) = fields
        .first()
        .and_then(|t| token_type(t))
        .ok_or_else(|| bad("unknown token type"))?;
    if step == 0 {
        return Err(Skip::Unsupported(format!(
            "line {number}: a counter-based (HOTP) token; twostep has time-based codes only, \
             so the user enrols anew (twostepctl enroll)"
        )));
    }
    let password = fields.get(2).ok_or_else(|| bad("no password field"))?;
    let hex = fields.get(3).ok_or_else(|| bad("no secret"))?;
    let secret = Zeroizing::new(hex::decode(hex).map_err(|_| bad("the secret is not hex"))?);
    if secret.is_empty() || secret.len() > MAX_SECRET_BYTES {
        return Err(bad("the secret has 1 to 32 bytes"));
    }
    let last = match fields.get(4..) {
        None | Some([]) => None,
        Some([factor, _otp, time]) => {
            let factor = factor
                .parse::<i64>()
                .ok()
                .filter(|f| f.unsigned_abs() <= 1_000_000)
                .ok_or_else(|| bad("the moving factor is not a number"))?;
            let time = NaiveDateTime::parse_from_str(time, TIME_FORMAT)
                .map_err(|_| bad("the time of the last use"))?;
            Some((factor, time))
        }
        Some(_) => {
            return Err(bad(
                "after the secret come none or all of: moving factor, last code, time",
            ))
        }
    };
    Ok(Token {
        line: number,
        period: step,
        digits,
        secret,
        has_password: *password != "-" && *password != "+",
        last,
    })
}

/// Parse a usersfile.
///
/// # Errors
/// [`Skip::Malformed`] for the whole file: too large, not text, or a malformed line that
/// names no user.
pub fn parse(bytes: &[u8]) -> Result<UsersFile, Skip> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(Skip::Malformed(format!(
            "{} bytes: at most {MAX_FILE_BYTES} are read",
            bytes.len()
        )));
    }
    let text =
        std::str::from_utf8(bytes).map_err(|_| Skip::Malformed("the file is not text".into()))?;
    let mut file = UsersFile::default();
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        match fields.first() {
            None => continue,
            Some(first) if first.starts_with('#') => continue,
            Some(_) => {}
        }
        let Some(user) = fields.get(1) else {
            return Err(Skip::Malformed(format!(
                "line {number} names no user: nothing in this file is imported"
            )));
        };
        let entry = file
            .users
            .entry((*user).to_owned())
            .or_insert_with(|| Ok(Vec::new()));
        let Ok(tokens) = entry else {
            continue; // the user is skipped already, for their first bad line
        };
        match token(number, &fields) {
            Ok(t) => tokens.push(t),
            Err(skip) => *entry = Err(skip),
        }
    }
    Ok(file)
}

/// What the daemon is asked to import for one user's `tokens`: authenticators named
/// `oath` (one token) or `oath-1`, `oath-2`, … (in file order), with their replay marks.
///
/// # Errors
/// A token's time names no instant ([`Token::last_step`]).
pub fn to_imported(
    tokens: &[Token],
    to_epoch: impl Fn(NaiveDateTime) -> Option<i64> + Copy,
) -> Result<Imported, Skip> {
    let mut keys = Vec::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        keys.push(ImportedKey {
            name: if tokens.len() == 1 {
                "oath".to_owned()
            } else {
                format!("oath-{}", i + 1)
            },
            secret: t.secret.clone(),
            algorithm: Algorithm::SHA1,
            digits: t.digits,
            period: t.period,
            last_step: t.last_step(to_epoch)?,
        });
    }
    Ok(Imported {
        keys,
        codes: Vec::new(),
    })
}

/// How logins change for a user with `tokens`, against this host's window (`pam_oath`'s
/// own is its `window=` argument, which the file does not say).
pub fn notes(tokens: &[Token], host_window: u64) -> Vec<String> {
    let mut notes = Vec::new();
    if tokens.iter().any(|t| t.has_password) {
        notes.push(
            "pam_oath also checked a password of its own from the usersfile; twostep does \
             not: the password is the PAM module before pam_twostep (pam_unix)"
                .into(),
        );
    }
    notes.extend(window_note(
        "pam_oath's window= argument",
        (0, 0),
        host_window,
    ));
    notes
}

/// Unix seconds of a local time of this host (`TZ`, else `/etc/localtime`). A time that
/// occurs twice (the hour a clock goes back) counts as the later one: a replay mark too
/// late refuses a code for a moment; one too early would accept a used code again.
pub fn local_to_epoch(time: NaiveDateTime) -> Option<i64> {
    use chrono::TimeZone;
    match chrono::Local.from_local_datetime(&time) {
        chrono::LocalResult::Single(t) => Some(t.timestamp()),
        chrono::LocalResult::Ambiguous(a, b) => Some(a.timestamp().max(b.timestamp())),
        chrono::LocalResult::None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(t: NaiveDateTime) -> Option<i64> {
        Some(t.and_utc().timestamp())
    }

    const SECRET_HEX: &str = "3132333435363738393031323334353637383930";

    #[test]
    fn lines_of_every_kind() {
        let text = format!(
            "# comment\n\n\
             HOTP/T30 alice - {SECRET_HEX}\n\
             HOTP/T60/8\tbob\tpin\t{SECRET_HEX}\t-1\t123456\t2026-11-30T00:00:30L\n\
             HOTP carol - {SECRET_HEX}\n\
             HOTP/T30/7 dave + {SECRET_HEX} 0 1234567\n\
             HOTP/T30/6 erin - {SECRET_HEX} 2 123456 2026-11-30T00:00:00L\n\
             HOTP/T30 erin - {SECRET_HEX}\n"
        );
        let f = parse(text.as_bytes()).unwrap();
        let alice = f.users["alice"].as_ref().unwrap();
        assert_eq!(
            (alice[0].period, alice[0].digits, alice[0].last),
            (30, 6, None)
        );
        assert_eq!(alice[0].secret.as_slice(), b"12345678901234567890");
        assert!(!format!("{alice:?}").contains("49"), "{alice:?}");
        let bob = f.users["bob"].as_ref().unwrap();
        assert_eq!(
            (bob[0].period, bob[0].digits, bob[0].has_password),
            (60, 8, true)
        );
        // 2026-11-30T00:00:30Z is 1_795_996_830; step 29_933_280, minus 1.
        assert_eq!(bob[0].last_step(utc).unwrap(), Some(1_795_996_830 / 60 - 1));
        let carol = f.users["carol"].as_ref().unwrap_err();
        assert!(carol.to_string().contains("HOTP"), "{carol}");
        let dave = f.users["dave"].as_ref().unwrap_err();
        assert!(dave.to_string().contains("line 6"), "{dave}");
        let erin = f.users["erin"].as_ref().unwrap();
        let imported = to_imported(erin, utc).unwrap();
        let names: Vec<&str> = imported.keys.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["oath-1", "oath-2"]);
        assert_eq!(imported.keys[0].last_step, Some(1_795_996_800 / 30 + 2));
        assert_eq!(imported.keys[1].last_step, None);
        assert_eq!(notes(bob, 1).len(), 1);
    }

    #[test]
    fn a_bad_line_skips_its_user_and_a_nameless_one_the_file() {
        let cases: &[(&str, &str)] = &[
            ("HOTP/T30/9 u - 00", "unknown token type"),
            ("HOTP/T90 u - 00", "unknown token type"),
            ("HOTP/T30 u -", "no secret"),
            ("HOTP/T30 u", "no password"),
            ("HOTP/T30 u - 0g", "not hex"),
            ("HOTP/T30 u - 123", "not hex"),
            (
                "HOTP/T30 u - 00 x 123456 2026-11-30T00:00:00L",
                "moving factor",
            ),
            (
                "HOTP/T30 u - 00 1 123456 2026-11-30X00:00:00L",
                "time of the last use",
            ),
            ("HOTP/T30 u - 00 1 123456", "none or all"),
            ("HOTP/E/8 u - 00", "HOTP"),
        ];
        for (line, want) in cases {
            let text =
                format!("HOTP/T30 other - {SECRET_HEX}\n{line}\nHOTP/T30 u - {SECRET_HEX}\n");
            let f = parse(text.as_bytes()).unwrap();
            let e = f.users["u"].as_ref().unwrap_err().to_string();
            assert!(e.contains(want), "{line}: {e}");
            assert!(f.users["other"].is_ok());
        }
        let e = parse(format!("HOTP/T30 a - {SECRET_HEX}\nHOTP/T30\n").as_bytes()).unwrap_err();
        assert!(e.to_string().contains("line 2 names no user"), "{e}");
        assert!(parse(b"\xff\n").is_err());
    }

    #[test]
    fn a_time_that_names_no_instant_is_refused() {
        let f = parse(format!("HOTP/T30 u - {SECRET_HEX} 0 1 2026-03-29T02:30:00L\n").as_bytes())
            .unwrap();
        let t = f.users["u"].as_ref().unwrap();
        assert!(to_imported(t, |_| None).is_err());
    }
}
