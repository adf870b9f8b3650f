// SPDX-License-Identifier: MIT OR Apache-2.0
//! The one rule for showing a time (issue 20 item 8): always UTC, to the second.
//!
//! - [`human`] for text a person reads (CLI output, login and mail texts, repair
//!   reports): `2026-11-30 03:12:45 UTC`.
//! - [`rfc3339`] for machine-read output (every `--json` document) and `key=value` log
//!   lines: `2026-11-30T03:12:45Z`.
//!
//! Why UTC and not the local zone: the daemon, the CLI and the admin reading a log or a
//! mail may be in different zones; one unambiguous rule reads the same everywhere.
//! Calendar arithmetic is humantime's.

use std::time::{Duration, UNIX_EPOCH};

use super::UnixTime;

/// The latest second RFC 3339 can write (9999-12-31T23:59:59Z); later times (the
/// `u64::MAX` "until an admin unlocks" sentinel of the bus) are shown as it.
pub const LATEST: u64 = 253_402_300_799;

/// `t` as RFC 3339 in UTC, to the second: `2026-11-30T03:12:45Z` (clamped to [`LATEST`]).
pub fn rfc3339(t: UnixTime) -> String {
    let at = UNIX_EPOCH + Duration::from_secs(t.0.min(LATEST));
    humantime::format_rfc3339_seconds(at).to_string()
}

/// `t` for people: `2026-11-30 03:12:45 UTC` (clamped to [`LATEST`]).
pub fn human(t: UnixTime) -> String {
    // Why from the RFC 3339 text: it is `YYYY-MM-DDTHH:MM:SSZ`, fixed width, ASCII.
    let s = rfc3339(t);
    format!("{} UTC", s.trim_end_matches('Z').replacen('T', " ", 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_for_times() {
        assert_eq!(rfc3339(UnixTime(0)), "1970-01-01T00:00:00Z");
        assert_eq!(human(UnixTime(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(rfc3339(UnixTime(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(human(UnixTime(951_782_400)), "2000-02-29 00:00:00 UTC");
        assert_eq!(rfc3339(UnixTime(1_796_008_365)), "2026-11-30T03:12:45Z");
        assert_eq!(human(UnixTime(1_796_008_365)), "2026-11-30 03:12:45 UTC");
        assert_eq!(rfc3339(UnixTime(LATEST)), "9999-12-31T23:59:59Z");
        // The bus's "until an admin unlocks" sentinel does not panic.
        assert_eq!(rfc3339(UnixTime(u64::MAX)), "9999-12-31T23:59:59Z");
        assert_eq!(human(UnixTime(u64::MAX)), "9999-12-31 23:59:59 UTC");
    }
}
