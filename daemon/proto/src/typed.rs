// SPDX-License-Identifier: MIT OR Apache-2.0
//! The zbus face of the contract: typed errors and proxies.

use std::collections::HashMap;

use zbus::zvariant::OwnedValue;

/// Every error the daemon sends. Clients branch on the name, never on the text; the text
/// names the user and the reason, never a code or a secret.
#[derive(zbus::DBusError, Debug)]
#[zbus(prefix = "org.twostep.Error")]
pub enum Error {
    #[zbus(error)]
    ZBus(zbus::Error),
    /// The caller may not do this (decided by the uid the bus reports).
    AccessDenied(String),
    /// No such user in NSS.
    UnknownUser(String),
    /// An argument is malformed or too long.
    InvalidArgument(String),
    /// The daemon cannot answer for this user now (unreadable record, storage failure);
    /// the login fails closed.
    Unavailable(String),
    /// The login session is unknown, expired or belongs to another caller.
    NoSession(String),
    /// Too many calls or sessions in flight.
    Busy(String),
    /// The user has no second factor.
    NotEnrolled(String),
    /// Enrolment was asked for a user who already has a confirmed method.
    AlreadyEnrolled(String),
    /// Confirm without a pending enrolment, or after it expired.
    NoPendingEnrollment(String),
    /// The code was wrong.
    WrongCode(String),
    /// Too many failures; nothing was evaluated.
    Locked(String),
    /// On `Login1`: the next step has a shape that interface cannot carry (the caller's
    /// module predates `Login2`). The login fails closed; nothing was evaluated for it.
    NeedsNewerModule(String),
}

/// `a{sv}` as returned by `Status`.
pub type Properties = HashMap<String, OwnedValue>;

/// What `EnrollBegin` returns: the pending secret, shown once so the user can add it to an
/// authenticator app. It is never returned again after confirmation. On the wire a struct
/// `(sssuut)` in this field order (the contract XML pins it). `Debug` is not derived: the
/// secret must not reach a log.
#[derive(zbus::zvariant::Type, serde::Serialize, serde::Deserialize)]
pub struct PendingEnrollment {
    /// The shared secret, base32 without padding.
    pub secret_base32: String,
    /// The `otpauth://totp/...` URI an authenticator app scans (holds the secret).
    pub otpauth_uri: String,
    /// The HMAC algorithm: `SHA1`, `SHA256` or `SHA512`.
    pub algorithm: String,
    /// Digits of a code.
    pub digits: u32,
    /// Seconds per time step.
    pub period: u32,
    /// When the pending enrolment expires, Unix seconds.
    pub expires_at: u64,
}

/// The secret and the URI holding it are wiped when the value drops.
impl Drop for PendingEnrollment {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret_base32);
        zeroize::Zeroize::zeroize(&mut self.otpauth_uri);
    }
}

/// One app password as `org.twostep.AppPassword1` lists it: on the wire a struct
/// `(ssasttttss)` in this field order. Never the password or its hash. Times are Unix
/// seconds, 0 = never/none.
#[derive(
    zbus::zvariant::Type, serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq,
)]
pub struct AppPasswordEntry {
    /// The name the user gave it.
    pub name: String,
    /// The public id: the password's first group.
    pub id: String,
    /// The PAM services it opens (where the host's `[app_passwords] services` lists them).
    pub services: Vec<String>,
    /// When it was created.
    pub created: u64,
    /// When it expires; 0 = never.
    pub expires: u64,
    /// When it was revoked; 0 = not revoked.
    pub revoked: u64,
    /// Its latest accepted use; 0 = never.
    pub last_used: u64,
    /// `PAM_SERVICE` of that use (empty: never used).
    pub last_service: String,
    /// `PAM_RHOST` of that use (empty: never used, or no remote host).
    pub last_rhost: String,
}

/// `AppPassword1.Create`'s `expires_in`: the longest validity the host allows.
pub const APP_PASSWORD_LONGEST: u64 = 0;
/// `AppPassword1.Create`'s `expires_in`: never expires (where the host allows it).
pub const APP_PASSWORD_NEVER: u64 = u64::MAX;

#[zbus::proxy(
    interface = "org.twostep.AppPassword1",
    default_service = "org.twostep.Twostep1",
    default_path = "/org/twostep/Twostep1",
    gen_blocking = false
)]
pub trait AppPassword {
    /// Create an app password for the calling user, named `name` (1 to 64 bytes), for the
    /// PAM `services` (each one the host's `[app_passwords] services` lists), expiring
    /// `expires_in` seconds from now ([`APP_PASSWORD_LONGEST`], [`APP_PASSWORD_NEVER`]);
    /// `proof` is a current code or a recovery code. Returns the password (shown once,
    /// never again) and its entry.
    fn create(
        &self,
        name: &str,
        services: &[&str],
        expires_in: u64,
        proof: &[u8],
    ) -> zbus::Result<(String, AppPasswordEntry)>;

    /// The calling user's app passwords, revoked and expired ones included, oldest first.
    fn list(&self) -> zbus::Result<Vec<AppPasswordEntry>>;

    /// Revoke the calling user's app password `key` (its name or its id); returns it.
    fn revoke(&self, key: &str) -> zbus::Result<AppPasswordEntry>;

    /// Admins: `user`'s app passwords.
    fn list_user(&self, user: &str) -> zbus::Result<Vec<AppPasswordEntry>>;

    /// Admins: revoke `user`'s app password `key` (its name or its id); returns it.
    fn revoke_user(&self, user: &str, key: &str) -> zbus::Result<AppPasswordEntry>;
}

#[zbus::proxy(
    interface = "org.twostep.Login1",
    default_service = "org.twostep.Twostep1",
    default_path = "/org/twostep/Twostep1",
    gen_blocking = false
)]
pub trait Login {
    /// Open a login conversation for `user`; returns the session token and the first step.
    fn begin(
        &self,
        user: &str,
        context: HashMap<&str, &str>,
    ) -> zbus::Result<(String, String, String, String, u32)>;

    /// Answer the current prompt of `session`; returns the next step.
    fn answer(&self, session: &str, answer: &[u8]) -> zbus::Result<crate::WireStep>;
}

/// `Begin`'s reply on Login2: the session token, then a [`crate::WireStep2`] flat.
pub type Begin2Reply = (String, String, String, String, u32, u32, bool);

#[zbus::proxy(
    interface = "org.twostep.Login2",
    default_service = "org.twostep.Twostep1",
    default_path = "/org/twostep/Twostep1",
    gen_blocking = false
)]
pub trait Login2 {
    /// Open a login conversation for `user`; returns the session token and the first step.
    fn begin(&self, user: &str, context: HashMap<&str, &str>) -> zbus::Result<Begin2Reply>;

    /// Answer the current prompt of `session`; returns the next step.
    fn answer(&self, session: &str, answer: &[u8]) -> zbus::Result<crate::WireStep2>;
}

#[zbus::proxy(
    interface = "org.twostep.User1",
    default_service = "org.twostep.Twostep1",
    default_path = "/org/twostep/Twostep1",
    gen_blocking = false
)]
pub trait User {
    /// Start enrolment of the calling user, or with `proof` (a current code or a recovery
    /// code) move to a new authenticator: the pending key ([`PendingEnrollment`]).
    fn enroll_begin(&self, proof: &[u8]) -> zbus::Result<PendingEnrollment>;

    /// Confirm the pending key with a current code; it becomes active. Returns the new
    /// recovery codes on a first enrolment (shown once), none on a move to a new phone.
    fn enroll_confirm(&self, code: &[u8]) -> zbus::Result<Vec<String>>;

    /// New recovery codes (the old ones die at once); needs a current code or recovery code.
    fn regenerate_recovery_codes(&self, proof: &[u8]) -> zbus::Result<Vec<String>>;

    /// Switch 2FA off for the calling user (when policy allows); needs a code.
    fn disable(&self, proof: &[u8]) -> zbus::Result<()>;

    /// The calling user's state, keyed by [`crate::status_key::STATUS`]: `enrolled` b,
    /// `pending_enrollment` b, `recovery_codes_left` u, `required` b, `may_toggle` b,
    /// `failures` u, `locked_until` t, `last_success` t, `last_failure` t,
    /// `authenticators` a(stt), `email` s, `email_pending` s, and the `clock_*` keys of
    /// clock trouble seen (times in Unix seconds, 0 = never/none, u64::MAX = until
    /// unlocked).
    fn status(&self) -> zbus::Result<Properties>;

    /// Start adding an authenticator called `name` (1 to 64 bytes, printable, unique per
    /// user) beside the others; `proof` is a current code of any of them or a recovery
    /// code. Returns the pending key; confirm it with [`authenticator_confirm`](Self::authenticator_confirm).
    fn authenticator_add(&self, name: &str, proof: &[u8]) -> zbus::Result<PendingEnrollment>;

    /// Confirm the authenticator being added as `name` with a current code of it (a
    /// confirm for another name than the pending one finds nothing to confirm).
    fn authenticator_confirm(&self, name: &str, code: &[u8]) -> zbus::Result<()>;

    /// The calling user's authenticators, in the order they were added: name, when added,
    /// when last used (Unix seconds, 0 = never). Never a key.
    fn authenticator_list(&self) -> zbus::Result<Vec<(String, u64, u64)>>;

    /// Remove the authenticator `name`; `proof` is a current code of ANOTHER authenticator
    /// or a recovery code. The last one is removed only as `Disable` switches 2FA off
    /// (never while 2FA is required; then any current code or a recovery code).
    fn authenticator_remove(&self, name: &str, proof: &[u8]) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.twostep.Admin1",
    default_service = "org.twostep.Twostep1",
    default_path = "/org/twostep/Twostep1",
    gen_blocking = false
)]
pub trait Admin {
    /// Every user with a record: the keys of `Status` plus `user` s, `why` s,
    /// `override` s, `error` s.
    fn list_users(&self) -> zbus::Result<Vec<Properties>>;

    /// Users the policy requires who have no factor yet, with the keys of `ListUsers`.
    fn list_pending(&self) -> zbus::Result<Vec<Properties>>;

    /// One user, plus `events` aa{sv}: the latest events, oldest first (keys:
    /// [`crate::event_key`]).
    fn show_user(&self, user: &str) -> zbus::Result<Properties>;

    /// Forget the user's factors: they enrol again.
    fn reset_user(&self, user: &str) -> zbus::Result<()>;

    /// Switch 2FA off for the user.
    fn disable_user(&self, user: &str) -> zbus::Result<()>;

    /// Per-user override: `required`, `exempt` or `default`.
    fn set_requirement(&self, user: &str, requirement: &str) -> zbus::Result<()>;

    /// Per-user "may switch 2FA off": `allow`, `deny` or `default`.
    fn set_may_toggle(&self, user: &str, setting: &str) -> zbus::Result<()>;

    /// Clear the user's failures and lock.
    fn unlock(&self, user: &str) -> zbus::Result<()>;

    /// Re-read the configuration file; an invalid file is refused and the old one stays.
    fn reload(&self) -> zbus::Result<()>;

    /// A user whose record is damaged (a slot fails its checksum) fails closed until this:
    /// shows what each slot holds and what a repair writes, and with `confirm` writes it
    /// (never lowering failures, locks or replay marks; unused recovery codes become spent;
    /// the damaged file is kept). Returns `path` s, `damage` s (empty: intact, nothing to
    /// do), `slots` as, `may_be_lost` as, `restored` as, `written` b, `kept` s.
    fn repair_user(&self, user: &str, confirm: bool) -> zbus::Result<Properties>;

    /// Carry `user`'s enrolment over from another 2FA module: `keys` become the user's
    /// authenticators (each with its replay mark), `codes` (8-digit one-time scratch codes)
    /// unused recovery codes, stored hashed. Refused with `AlreadyEnrolled` when the user
    /// has an authenticator, unless `replace`. With `dry_run` everything is checked and
    /// nothing is written. Returns the keys of [`crate::import_key`].
    fn import_enrolment(
        &self,
        user: &str,
        keys: &[crate::ImportKey],
        codes: &[&str],
        replace: bool,
        dry_run: bool,
    ) -> zbus::Result<Properties>;
}

#[zbus::proxy(
    interface = "org.twostep.Store1",
    default_service = "org.twostep.Twostep1",
    default_path = "/org/twostep/Twostep1",
    gen_blocking = false
)]
pub trait Store {
    /// Write every account, secrets sealed, to `out` (a file the caller opened for
    /// writing) in the export format (docs/fleet.md). Root only. Returns how many were
    /// written and one sentence per account left out.
    fn export(&self, out: zbus::zvariant::Fd<'_>) -> zbus::Result<(u32, Vec<String>)>;

    /// Add the accounts of the export read from `input`; with `dry_run`, only say what
    /// would change. Root only. Returns created, unchanged, and one sentence per conflict.
    fn import(
        &self,
        input: zbus::zvariant::Fd<'_>,
        dry_run: bool,
    ) -> zbus::Result<(u32, u32, Vec<String>)>;

    /// Seal every write with the key in `new_key_file` (a path the daemon reads) and
    /// re-seal every record. Root only. Returns the old and new key ids, re-sealed,
    /// unchanged, and one sentence per account not re-sealed.
    fn rotate_key(
        &self,
        new_key_file: &str,
    ) -> zbus::Result<(String, String, u32, u32, Vec<String>)>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_name;
    use zbus::DBusError;

    #[test]
    fn error_names_match_the_constants_the_module_uses() {
        let s = String::new;
        let cases = [
            (Error::AccessDenied(s()), error_name::ACCESS_DENIED),
            (Error::UnknownUser(s()), error_name::UNKNOWN_USER),
            (Error::InvalidArgument(s()), error_name::INVALID_ARGUMENT),
            (Error::Unavailable(s()), error_name::UNAVAILABLE),
            (Error::NoSession(s()), error_name::NO_SESSION),
            (Error::Busy(s()), error_name::BUSY),
            (Error::NotEnrolled(s()), error_name::NOT_ENROLLED),
            (Error::AlreadyEnrolled(s()), error_name::ALREADY_ENROLLED),
            (
                Error::NoPendingEnrollment(s()),
                error_name::NO_PENDING_ENROLLMENT,
            ),
            (Error::WrongCode(s()), error_name::WRONG_CODE),
            (Error::Locked(s()), error_name::LOCKED),
            (Error::NeedsNewerModule(s()), error_name::NEEDS_NEWER_MODULE),
        ];
        for (err, name) in cases {
            assert_eq!(err.name().as_str(), name);
            assert!(name.starts_with(crate::ERROR_PREFIX));
        }
    }
}
