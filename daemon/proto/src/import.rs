// SPDX-License-Identifier: MIT OR Apache-2.0
//! `Admin1.ImportEnrolment`: one user's enrolment carried over from another 2FA module
//! (libpam-google-authenticator's `~/.google_authenticator`, pam_oath's usersfile), so the
//! same authenticator entries keep working. The CLI reads and parses the files; the daemon
//! re-validates everything and writes the user's record in one transaction.

/// Most keys one import carries (the most authenticators a record holds).
pub const MAX_IMPORT_KEYS: usize = 5;
/// Most one-time codes one import carries (google-authenticator makes at most 10).
pub const MAX_IMPORT_CODES: usize = 10;
/// Digits of an imported one-time (scratch) code: google-authenticator's are 8 digits,
/// `10000000..=99999999`.
pub const SCRATCH_CODE_DIGITS: usize = 8;

/// The keys of the `a{sv}` dict `Admin1.ImportEnrolment` returns.
pub mod import_key {
    /// `s`: what was done (or, on a dry run, would be): one of [`OUTCOMES`].
    pub const OUTCOME: &str = "outcome";
    /// `u`: how many authenticators the user has after the import.
    pub const AUTHENTICATORS: &str = "authenticators";
    /// `u`: how many unused recovery codes the user has after the import.
    pub const RECOVERY_CODES: &str = "recovery_codes";
    /// `t`: the host's acceptance window, in time steps either side of now (`[totp] window`).
    pub const WINDOW: &str = "window";
    /// `u`: the host's failures before a lock (`[lockout] max_failures`), 0: never locks.
    pub const MAX_FAILURES: &str = "max_failures";
    /// `as`: what differs for this user from before, one sentence each (never a secret).
    pub const NOTES: &str = "notes";
    /// The user had no enrolment; now the imported one is theirs.
    pub const IMPORTED: &str = "imported";
    /// The user's enrolment was replaced by the imported one (`replace`).
    pub const REPLACED: &str = "replaced";
    /// Dry run: [`IMPORTED`] would happen.
    pub const WOULD_IMPORT: &str = "would-import";
    /// Dry run: [`REPLACED`] would happen.
    pub const WOULD_REPLACE: &str = "would-replace";
    /// Every outcome.
    pub const OUTCOMES: &[&str] = &[IMPORTED, REPLACED, WOULD_IMPORT, WOULD_REPLACE];
    /// Every key.
    pub const ALL: &[&str] = &[
        OUTCOME,
        AUTHENTICATORS,
        RECOVERY_CODES,
        WINDOW,
        MAX_FAILURES,
        NOTES,
    ];
}

/// One imported TOTP key. On the wire a struct `(saysuubt)` in this field order (the
/// contract XML pins it). `Debug` is not derived: the secret must not reach a log.
#[cfg(feature = "zbus")]
#[derive(zbus::zvariant::Type, serde::Serialize, serde::Deserialize, Clone)]
pub struct ImportKey {
    /// The authenticator's name in twostep (`twostepctl authenticator list`).
    pub name: String,
    /// The raw shared secret (not base32).
    pub secret: Vec<u8>,
    /// The HMAC algorithm: `SHA1`, `SHA256` or `SHA512`.
    pub algorithm: String,
    /// Digits of a code.
    pub digits: u32,
    /// Seconds per time step.
    pub period: u32,
    /// Whether `last_step` holds the last time step the old module accepted.
    pub has_last_step: bool,
    /// The last time step (of `period`) the old module accepted: it and every earlier
    /// step are refused (replay).
    pub last_step: u64,
}
