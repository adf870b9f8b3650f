// SPDX-License-Identifier: MIT OR Apache-2.0
//! The D-Bus contract between `pam_twostep.so`, `twostepd` and `twostepctl`, defined once.
//!
//! Without features this crate is names, limits and the wire codec of a login step: that is
//! all the PAM module links. The `zbus` feature adds the typed error enum and the proxies
//! used by the daemon, the CLI and the tests.
#![forbid(unsafe_code)]

/// Well-known bus name owned by `twostepd` (only root may own it: packaging/dbus policy).
pub const BUS_NAME: &str = "org.twostep.Twostep1";
/// The one object the daemon serves.
pub const OBJECT_PATH: &str = "/org/twostep/Twostep1";
/// Login conversations, driven by the daemon and rendered by the PAM module: the first
/// version, with steps named by method ([`WireStep`]). Still served for modules older than
/// [`LOGIN2_INTERFACE`], and used by a new module on a daemon older than that.
pub const LOGIN_INTERFACE: &str = "org.twostep.Login1";
/// Login conversations with answer shapes named by form ([`WireStep2`]): what the module
/// calls first. Same methods and arguments as [`LOGIN_INTERFACE`]; the replies differ.
pub const LOGIN2_INTERFACE: &str = "org.twostep.Login2";
/// Self-service for the calling user (enrol, status).
pub const USER_INTERFACE: &str = "org.twostep.User1";
/// Admin methods (root or the admin group).
pub const ADMIN_INTERFACE: &str = "org.twostep.Admin1";
/// App passwords: the caller's own (create with a code as proof, list, revoke) and, for
/// admins, any user's (list, revoke). The check at login runs in the login conversation
/// (`mode=app-password` in the context, [`login::MODE_APP_PASSWORD`]).
pub const APP_PASSWORD_INTERFACE: &str = "org.twostep.AppPassword1";
/// Moving whole stores (export, import, key rotation): root only.
pub const STORE_INTERFACE: &str = "org.twostep.Store1";
/// Prefix of every error name the daemon sends.
pub const ERROR_PREFIX: &str = "org.twostep.Error";

/// The system bus socket: the module's default, never taken from the environment.
pub const SYSTEM_BUS_ADDRESS: &str = "unix:path=/run/dbus/system_bus_socket";
/// The login endpoint: twostepd serves the login interfaces on it peer to peer (no bus,
/// no `Hello`, the caller's uid from `SO_PEERCRED`), and the module tries it before the
/// bus. Compiled in (the module's `socket=` may name another one), never from the
/// environment; twostepd's `[daemon] login_socket`.
pub const LOGIN_SOCKET: &str = "/run/twostep/login.sock";

/// Method names of [`LOGIN_INTERFACE`] and [`LOGIN2_INTERFACE`].
pub mod login {
    /// Login1: `Begin(s user, a{ss} context) -> (s session, s kind, s message, s prompt,
    /// u digits)`; Login2: `Begin(s user, a{ss} context) -> (s session, s kind, s message,
    /// s prompt, u digits, u max, b echo)`. `session` is empty exactly when the first step
    /// is final (nothing to answer).
    pub const BEGIN: &str = "Begin";
    /// Login1: `Answer(s session, ay answer) -> (s kind, s message, s prompt, u digits)`
    /// ([`crate::WireStep`]); Login2: `-> (s kind, s message, s prompt, u digits, u max,
    /// b echo)` ([`crate::WireStep2`]).
    pub const ANSWER: &str = "Answer";
    /// Context keys the module sends with `Begin`.
    pub const CTX_SERVICE: &str = "service";
    pub const CTX_RHOST: &str = "rhost";
    pub const CTX_TTY: &str = "tty";
    /// Context key naming what the login checks; absent: the second factor. An unknown
    /// value is refused.
    pub const CTX_MODE: &str = "mode";
    /// [`CTX_MODE`] value of `pam_twostep.so app_password`: the one answer is an app
    /// password of the user for this service (a secret text prompt, echo off).
    pub const MODE_APP_PASSWORD: &str = "app-password";
    /// [`CTX_MODE`] value of `pam_twostep.so forward_pass`: the code arrives with the
    /// password, before any password module has checked it, so the daemon starts nothing
    /// on such a Begin (no enrolment, no grace period, no mailed code) and offers only an
    /// enrolled user's code prompt.
    pub const MODE_FORWARD_PASS: &str = "forward-pass";
}

/// Error names (suffixes of [`ERROR_PREFIX`]) that clients branch on.
pub mod error_name {
    pub const ACCESS_DENIED: &str = "org.twostep.Error.AccessDenied";
    pub const UNKNOWN_USER: &str = "org.twostep.Error.UnknownUser";
    pub const INVALID_ARGUMENT: &str = "org.twostep.Error.InvalidArgument";
    pub const UNAVAILABLE: &str = "org.twostep.Error.Unavailable";
    pub const NO_SESSION: &str = "org.twostep.Error.NoSession";
    pub const BUSY: &str = "org.twostep.Error.Busy";
    pub const NOT_ENROLLED: &str = "org.twostep.Error.NotEnrolled";
    pub const ALREADY_ENROLLED: &str = "org.twostep.Error.AlreadyEnrolled";
    pub const NO_PENDING_ENROLLMENT: &str = "org.twostep.Error.NoPendingEnrollment";
    pub const WRONG_CODE: &str = "org.twostep.Error.WrongCode";
    pub const LOCKED: &str = "org.twostep.Error.Locked";
    /// Sent on `Login1` for a step that interface cannot carry: the login needs a module
    /// that speaks `Login2`. Modules before Login2 do not know this name and fail closed.
    pub const NEEDS_NEWER_MODULE: &str = "org.twostep.Error.NeedsNewerModule";
}

/// The arguments `pam_twostep.so` accepts in `/etc/pam.d` (anything else makes it refuse
/// every login). `twostepctl doctor` checks PAM lines against this same list.
pub mod module_args {
    pub const NAMES: &[&str] = &[
        "bus",
        "bus_uid",
        "socket",
        "nullok",
        "debug",
        "timeout",
        "failmode",
        "app_password",
        "forward_pass",
    ];
}

/// The PAM results `pam_twostep.so` returns from `pam_sm_authenticate`, by libpam's token
/// names (the `PAM_` constant without its prefix, lower-cased: the words a bracketed control
/// in `/etc/pam.d` uses). `twostepctl doctor` checks stacks against these lists; a unit test
/// in the module (`pam_module/src/contract_tests.rs`) runs the module's code mapping over
/// every outcome and argument set and ties it to them, both ways.
pub mod module_results {
    /// What the module returns when the second factor was *not* proven: a wrong or missing
    /// code, a lock, an unreachable or refusing daemon, a failed conversation, bad module
    /// arguments (`service_err`), an internal error (`system_err`). A stack must fail on
    /// every one of them.
    pub const FAILURES: &[&str] = &[
        "auth_err",
        "maxtries",
        "authinfo_unavail",
        "user_unknown",
        "conv_err",
        "service_err",
        "system_err",
    ];
    /// What the module returns when the login may go on: `success` (the code was proven, or
    /// `failmode=open` let a login through with the daemon absent) and `ignore` (`nullok`
    /// and the user has no second factor and none is required).
    pub const PASSES: &[&str] = &["success", "ignore"];
}

/// The keys of the `a{sv}` dicts the daemon returns: `User1.Status` (those in [`STATUS`](status_key::STATUS)),
/// `Admin1.ListUsers` and `Admin1.ShowUser` (all of them; [`EVENTS`](status_key::EVENTS)
/// only in `ShowUser`). Times are Unix seconds, 0 = never/none, `u64::MAX` = until unlocked.
pub mod status_key {
    /// `b`: the user has a confirmed second factor.
    pub const ENROLLED: &str = "enrolled";
    /// `b`: an enrolment was begun and not yet confirmed (or expired).
    pub const PENDING_ENROLLMENT: &str = "pending_enrollment";
    /// `u`: unused recovery codes.
    pub const RECOVERY_CODES_LEFT: &str = "recovery_codes_left";
    /// `b`: policy requires a second factor for this user.
    pub const REQUIRED: &str = "required";
    /// `b`: the user may switch 2FA off themselves.
    pub const MAY_TOGGLE: &str = "may_toggle";
    /// `u`: failed attempts counted toward the lock.
    pub const FAILURES: &str = "failures";
    /// `t`: locked until this time.
    pub const LOCKED_UNTIL: &str = "locked_until";
    /// `t`: the last successful second factor.
    pub const LAST_SUCCESS: &str = "last_success";
    /// `t`: the last failed attempt.
    pub const LAST_FAILURE: &str = "last_failure";
    /// `a(stt)`: the confirmed authenticators in the order they were added: name, when
    /// added, when last used (0 = never). Never a key.
    pub const AUTHENTICATORS: &str = "authenticators";
    /// `s`: the confirmed address for codes by email; empty: none.
    pub const EMAIL: &str = "email";
    /// `s`: an address waiting for its confirming code; empty: none.
    pub const EMAIL_PENDING: &str = "email_pending";
    /// `x`: a refused code of this user was the code of a step this many steps from the
    /// host's (negative: the app's clock is behind), outside the window; 0: none seen
    /// (issue 20 item 10). Diagnosis only: such codes stay refused.
    pub const CLOCK_SKEW: &str = "clock_skew";
    /// `x`: [`CLOCK_SKEW`] in seconds (steps × period).
    pub const CLOCK_SKEW_SECONDS: &str = "clock_skew_seconds";
    /// `u`: how many refused codes in a row showed that offset.
    pub const CLOCK_SKEW_TIMES: &str = "clock_skew_times";
    /// `t`: when that offset was last seen.
    pub const CLOCK_SKEW_SEEN: &str = "clock_skew_seen";
    /// `s`: the authenticator whose codes showed it.
    pub const CLOCK_SKEW_AUTHENTICATOR: &str = "clock_skew_authenticator";
    /// `t`: the host clock read this many seconds earlier than the user's last recorded
    /// login (codes already used are refused until it catches up); 0: not seen.
    pub const CLOCK_BACK: &str = "clock_back";
    /// `t`: when the host clock was last seen stepped back.
    pub const CLOCK_BACK_SEEN: &str = "clock_back_seen";
    /// `u`: wrong app passwords counted toward the app passwords' own lock (review M4;
    /// never part of [`FAILURES`]).
    pub const APP_PASSWORD_FAILURES: &str = "app_password_failures";
    /// `t`: app passwords (only they) are locked until this time; 0: not locked.
    pub const APP_PASSWORD_LOCKED_UNTIL: &str = "app_password_locked_until";
    /// `s` (admin only): the account name.
    pub const USER: &str = "user";
    /// `u` (admin only): the account's uid.
    pub const UID: &str = "uid";
    /// `s` (admin only): the name the record was enrolled under.
    pub const ENROLLED_AS: &str = "enrolled_as";
    /// `s` (admin only): why 2FA is or is not required.
    pub const WHY: &str = "why";
    /// `s` (admin only): the per-user requirement override (`required`, `exempt`, `default`).
    pub const OVERRIDE: &str = "override";
    /// `s` (admin only): why the record cannot be read (empty: readable).
    pub const ERROR: &str = "error";
    /// `aa{sv}` (`ShowUser` only): the latest events, oldest first, each with the keys of
    /// [`crate::event_key`].
    pub const EVENTS: &str = "events";
    /// `a(ssst)` (`ShowUser` only, present when not empty): the remember windows in force
    /// on this host (`[services.NAME] remember_seconds`): service, remote host, tty, end.
    pub const REMEMBERED: &str = "remembered";
    /// The keys of `User1.Status`.
    pub const STATUS: &[&str] = &[
        ENROLLED,
        PENDING_ENROLLMENT,
        RECOVERY_CODES_LEFT,
        REQUIRED,
        MAY_TOGGLE,
        FAILURES,
        LOCKED_UNTIL,
        LAST_SUCCESS,
        LAST_FAILURE,
        AUTHENTICATORS,
        EMAIL,
        EMAIL_PENDING,
        CLOCK_SKEW,
        CLOCK_SKEW_SECONDS,
        CLOCK_SKEW_TIMES,
        CLOCK_SKEW_SEEN,
        CLOCK_SKEW_AUTHENTICATOR,
        CLOCK_BACK,
        CLOCK_BACK_SEEN,
        APP_PASSWORD_FAILURES,
        APP_PASSWORD_LOCKED_UNTIL,
    ];
    /// The keys an admin sees of every user (`Admin1.ListUsers` entries): those of
    /// [`STATUS`] and these; `Admin1.ShowUser` adds [`EVENTS`], and [`REMEMBERED`] when
    /// the user has remember windows in force.
    pub const ADMIN_EXTRA: &[&str] = &[USER, UID, ENROLLED_AS, WHY, OVERRIDE, ERROR];
}

/// The keys of one event dict in `ShowUser`'s `events` (issue 20 item 8). Strings are
/// empty when unknown (events of older records); `actor_uid` is absent then.
pub mod event_key {
    /// `t`: when, Unix seconds.
    pub const AT: &str = "at";
    /// `s`: what happened, in words (never a code).
    pub const WHAT: &str = "what";
    /// `s`: one word: `success`, `failure`, `replay`, `lock`, `unlock`, `reset`, `enrol`,
    /// `disable`, `recovery-codes`, `email`, `app-password`, `admin`, `grace`; `-` unknown.
    pub const KIND: &str = "kind";
    /// `s`: the PAM service of a login, `twostepctl` for a D-Bus call.
    pub const SERVICE: &str = "service";
    /// `s`: the remote host of a login.
    pub const RHOST: &str = "rhost";
    /// `s`: the terminal of a login.
    pub const TTY: &str = "tty";
    /// `s`: the method used or tried (several joined by `,`).
    pub const METHOD: &str = "method";
    /// `s`: the acting user's name at the time (the admin's for admin actions).
    pub const ACTOR: &str = "actor";
    /// `u`: the acting user's uid.
    pub const ACTOR_UID: &str = "actor_uid";
    /// `u`: the uid of the process that called for the login, when it was not root (then
    /// service, rhost and tty are what that process said).
    pub const CALLER_UID: &str = "caller_uid";
    /// Every key (`actor_uid` only when known, `caller_uid` only when not root).
    pub const ALL: &[&str] = &[
        AT, WHAT, KIND, SERVICE, RHOST, TTY, METHOD, ACTOR, ACTOR_UID, CALLER_UID,
    ];
}

/// The keys of the `a{sv}` dict `Admin1.RepairUser` returns.
pub mod repair_key {
    /// `s`: the record file.
    pub const PATH: &str = "path";
    /// `s`: what is damaged (empty: intact, nothing to do).
    pub const DAMAGE: &str = "damage";
    /// `as`: what each slot holds.
    pub const SLOTS: &str = "slots";
    /// `as`: what a repair may lose.
    pub const MAY_BE_LOST: &str = "may_be_lost";
    /// `as`: what a repair restores.
    pub const RESTORED: &str = "restored";
    /// `b`: the repair was written.
    pub const WRITTEN: &str = "written";
    /// `s`: where the damaged file was kept.
    pub const KEPT: &str = "kept";
    /// Every key, in the order above.
    pub const ALL: &[&str] = &[PATH, DAMAGE, SLOTS, MAY_BE_LOST, RESTORED, WRITTEN, KEPT];
}

/// Bounds on what crosses the bus, enforced on both sides.
pub mod limits {
    /// Longest user name accepted (Linux allows 32; NSS back ends may allow more).
    pub const MAX_USER_LEN: usize = 256;
    /// Longest answer the module sends and the daemon reads.
    pub const MAX_ANSWER_LEN: usize = 128;
    /// Longest context value (service, rhost, tty).
    pub const MAX_CONTEXT_LEN: usize = 256;
    /// Most context entries.
    pub const MAX_CONTEXT_ENTRIES: usize = 8;
    /// Longest text (message + prompt) the module renders.
    pub const MAX_TEXT_LEN: usize = 16 * 1024;
    /// Longest session token.
    pub const MAX_SESSION_LEN: usize = 64;
}

mod step;
pub use step::*;

#[doc(hidden)]
pub mod fuzzing;

mod import;
pub use import::*;

#[cfg(feature = "zbus")]
mod email;
#[cfg(feature = "zbus")]
pub use email::*;
#[cfg(feature = "zbus")]
mod typed;
#[cfg(feature = "zbus")]
pub use typed::*;
