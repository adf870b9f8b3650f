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
/// Prefix of every error name the daemon sends.
pub const ERROR_PREFIX: &str = "org.twostep.Error";

/// The system bus socket: the module's default, never taken from the environment.
pub const SYSTEM_BUS_ADDRESS: &str = "unix:path=/run/dbus/system_bus_socket";

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
    pub const NAMES: &[&str] = &["bus", "bus_uid", "nullok", "debug", "timeout", "failmode"];
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

#[cfg(feature = "zbus")]
mod typed;
#[cfg(feature = "zbus")]
pub use typed::*;
