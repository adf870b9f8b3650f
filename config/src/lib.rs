// SPDX-License-Identifier: MIT OR Apache-2.0
//! The typed configuration of `twostepd`: `/etc/twostep/twostep.toml`.
//!
//! Every table denies unknown keys, every key has a documented default, and every error
//! names the file, line and column. The PAM module reads none of this: its inputs are its
//! arguments in `/etc/pam.d`.
#![forbid(unsafe_code)]

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub mod mail;
pub mod services;
pub use mail::{Mail, MethodName};
pub use services::{SecondFactor, ServiceName, ServiceRule, Services};

/// Where the daemon looks when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/twostep/twostep.toml";

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Format version of this file; only `1` exists.
    pub version: Version,
    pub daemon: Daemon,
    pub totp: Totp,
    pub lockout: Lockout,
    pub enrollment: Enrollment,
    pub recovery: Recovery,
    pub policy: Policy,
    pub login: Login,
    pub app_passwords: AppPasswords,
    pub mail: Mail,
    pub store: Store,
    /// `[services.NAME]`: per-PAM-service rules; a service without a table follows
    /// `[policy]`.
    pub services: Services,
}

/// `version = 1`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(try_from = "i64", into = "i64")]
pub struct Version;

impl TryFrom<i64> for Version {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        if v == 1 {
            Ok(Version)
        } else {
            Err(format!(
                "unsupported config version {v}; this twostepd reads version 1"
            ))
        }
    }
}

impl From<Version> for i64 {
    fn from(_: Version) -> i64 {
        1
    }
}

/// Where twostepd serves the login interfaces peer to peer, and where pam_twostep looks
/// for them first (`[daemon] login_socket`, pam_twostep's `socket=`).
pub const DEFAULT_LOGIN_SOCKET: &str = twostep_proto::LOGIN_SOCKET;

/// `[daemon]`
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Daemon {
    /// Directory of the embedded store (created 0700, owned by root). Default `/var/lib/twostep`.
    /// Must be absolute: a relative path would depend on the daemon's working directory.
    #[serde(deserialize_with = "absolute_path")]
    pub state_dir: PathBuf,
    /// `"system"` (default) or a `unix:path=/…` address of a private bus.
    pub bus: BusAddress,
    /// The login endpoint: a unix socket serving only the login interfaces peer to peer
    /// (no bus hop), for pam_twostep. Its directory is created root-owned 0755 if missing
    /// and must be owned by the daemon's user and not writable by group or others; the
    /// socket is 0666 (screen lockers run as the user). Default `/run/twostep/login.sock`
    /// (pam_twostep's compiled-in path); `""`: serve the bus only.
    #[serde(deserialize_with = "optional_absolute_path")]
    pub login_socket: PathBuf,
}

impl Default for Daemon {
    fn default() -> Self {
        Daemon {
            state_dir: PathBuf::from("/var/lib/twostep"),
            bus: BusAddress::System,
            login_socket: PathBuf::from(DEFAULT_LOGIN_SOCKET),
        }
    }
}

/// An absolute path, checked while parsing so the error carries its position.
fn absolute_path<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let p = PathBuf::deserialize(d)?;
    if p.is_absolute() {
        Ok(p)
    } else {
        Err(serde::de::Error::custom(format!(
            "{} is not an absolute path",
            p.display()
        )))
    }
}

/// An absolute path, or `""` for none.
fn optional_absolute_path<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let p = PathBuf::deserialize(d)?;
    if p.as_os_str().is_empty() || p.is_absolute() {
        Ok(p)
    } else {
        Err(serde::de::Error::custom(format!(
            "{} is not an absolute path",
            p.display()
        )))
    }
}

/// `[store]`: where records live, and the key that seals their secrets at rest.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Store {
    /// `"files"` (default: the embedded store in `[daemon] state_dir`) or `"postgres"` (one
    /// database shared by every host of a fleet).
    pub backend: Backend,
    /// The store key (32 bytes, or 64 hex digits): seals every TOTP secret at rest, in both
    /// backends. Regular file, owned by root, no access for group or others; the same file
    /// on every host of a fleet. Default `/etc/twostep/store.key`.
    #[serde(deserialize_with = "absolute_path")]
    pub key_file: PathBuf,
    /// PostgreSQL connection string (`postgresql://user@host:port/db` or `key=value` form),
    /// without a password. Required with `backend = "postgres"`.
    pub url: String,
    /// File holding the database password (root only); `""`: none (peer or certificate
    /// authentication).
    #[serde(deserialize_with = "optional_absolute_path")]
    pub password_file: PathBuf,
    /// TLS to the database: `"verify-full"` (default: encrypt, check the certificate
    /// against `ca_file` and the host name), `"require"` (encrypt, no check; a warning for
    /// a host that is not loopback), or `"disable"` (loopback or unix socket only; refused
    /// otherwise by the daemon's checks).
    pub tls: Tls,
    /// PEM file of the certificate authorities `verify-full` trusts.
    #[serde(deserialize_with = "optional_absolute_path")]
    pub ca_file: PathBuf,
    /// Database connections held at most, 1 to 64. Default 4.
    pub pool_size: Bounded<1, 64>,
    /// Seconds a new connection may take, 1 to 30. Default 2.
    pub connect_timeout_seconds: Bounded<1, 30>,
    /// Milliseconds one store transaction may take once connected, 100 to 30000 (also the
    /// server's `statement_timeout`). Default 2000.
    pub statement_timeout_ms: Bounded<100, 30000>,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            backend: Backend::Files,
            key_file: PathBuf::from("/etc/twostep/store.key"),
            url: String::new(),
            password_file: PathBuf::new(),
            tls: Tls::VerifyFull,
            ca_file: PathBuf::new(),
            pool_size: Bounded::new(4),
            connect_timeout_seconds: Bounded::new(2),
            statement_timeout_ms: Bounded::new(2000),
        }
    }
}

/// `[store] backend`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    #[default]
    Files,
    Postgres,
}

/// `[store] tls`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Tls {
    Disable,
    Require,
    #[default]
    VerifyFull,
}

/// Which bus the daemon serves on.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(try_from = "String", into = "String")]
pub enum BusAddress {
    #[default]
    System,
    /// A `unix:path=/absolute/socket` address.
    Address(String),
}

impl TryFrom<String> for BusAddress {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s == "system" {
            return Ok(BusAddress::System);
        }
        match s.strip_prefix("unix:path=") {
            Some(p) if p.starts_with('/') && !p.contains([',', ';']) => Ok(BusAddress::Address(s)),
            _ => Err(format!(
                "bus must be \"system\" or \"unix:path=/absolute/socket\", not {s:?}"
            )),
        }
    }
}

impl From<BusAddress> for String {
    fn from(b: BusAddress) -> String {
        match b {
            BusAddress::System => "system".into(),
            BusAddress::Address(a) => a,
        }
    }
}

/// HMAC of RFC 6238.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum Algorithm {
    #[default]
    SHA1,
    SHA256,
    SHA512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::SHA1 => "SHA1",
            Algorithm::SHA256 => "SHA256",
            Algorithm::SHA512 => "SHA512",
        }
    }
}

/// A number within `MIN..=MAX`, checked while parsing so the error carries its position.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(try_from = "i64", into = "i64")]
pub struct Bounded<const MIN: u64, const MAX: u64>(u64);

impl<const MIN: u64, const MAX: u64> Bounded<MIN, MAX> {
    /// # Panics
    /// At compile time of a `const` use, or in tests, when `v` is out of range.
    pub const fn new(v: u64) -> Self {
        assert!(v >= MIN && v <= MAX);
        Bounded(v)
    }
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl<const MIN: u64, const MAX: u64> TryFrom<i64> for Bounded<MIN, MAX> {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        match u64::try_from(v) {
            Ok(u) if (MIN..=MAX).contains(&u) => Ok(Bounded(u)),
            _ => Err(format!("{v} is out of range {MIN}..={MAX}")),
        }
    }
}

impl<const MIN: u64, const MAX: u64> From<Bounded<MIN, MAX>> for i64 {
    fn from(b: Bounded<MIN, MAX>) -> i64 {
        i64::try_from(b.0).unwrap_or(i64::MAX)
    }
}

/// `[totp]`
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Totp {
    /// Default `SHA1`: what every authenticator app supports.
    pub algorithm: Algorithm,
    /// Code length, 6 to 8. Default 6.
    pub digits: Bounded<6, 8>,
    /// Seconds per time step, 15 to 300. Default 30.
    pub period: Bounded<15, 300>,
    /// Time steps accepted either side of now, 0 to 2. Default 1. RFC 6238 §5.2
    /// recommends at most one step for network delay; a wider window multiplies the codes
    /// an attacker may guess (2 × window + 1 of them per attempt) and says the clocks are
    /// wrong, which NTP fixes.
    pub window: Bounded<0, 2>,
    /// Issuer shown by authenticator apps; empty (default) means the host name.
    pub issuer: String,
}

impl Default for Totp {
    fn default() -> Self {
        Totp {
            algorithm: Algorithm::SHA1,
            digits: Bounded::new(6),
            period: Bounded::new(30),
            window: Bounded::new(1),
            issuer: String::new(),
        }
    }
}

/// `[lockout]`
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Lockout {
    /// Consecutive failures that lock the user. Default 5.
    pub max_failures: Bounded<1, 100>,
    /// How long a lock lasts; 0 means until an admin unlocks. Default 300.
    pub lockout_seconds: Bounded<0, 31_536_000>,
    /// Failures older than this stop counting (until the first lock; after it, the count
    /// stays until a success or an unlock). Default 900.
    pub failure_window_seconds: Bounded<1, 31_536_000>,
    /// Each further lock lasts twice as long as the one before, up to
    /// `max_lockout_seconds`. Default false.
    pub backoff: bool,
    /// The longest a lock lasts with `backoff`. Default 86400.
    pub max_lockout_seconds: Bounded<1, 31_536_000>,
}

impl Default for Lockout {
    fn default() -> Self {
        Lockout {
            max_failures: Bounded::new(5),
            lockout_seconds: Bounded::new(300),
            failure_window_seconds: Bounded::new(900),
            backoff: false,
            max_lockout_seconds: Bounded::new(86_400),
        }
    }
}

/// `[enrollment]`
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Enrollment {
    /// How long a started enrolment waits for its confirming code. Default 600.
    pub pending_seconds: Bounded<60, 86_400>,
}

impl Default for Enrollment {
    fn default() -> Self {
        Enrollment {
            pending_seconds: Bounded::new(600),
        }
    }
}

/// `[recovery]`
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Recovery {
    /// Recovery codes handed out at enrolment, 1 to 50. Default 10.
    pub count: Bounded<1, 50>,
    /// What using one does. Default `single-use`.
    pub mode: RecoveryMode,
}

impl Default for Recovery {
    fn default() -> Self {
        Recovery {
            count: Bounded::new(10),
            mode: RecoveryMode::SingleUse,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RecoveryMode {
    /// A code logs in once.
    #[default]
    SingleUse,
    /// A code logs in once and switches 2FA off for the user, who must enrol again.
    #[serde(rename = "disables-2fa")]
    Disables2fa,
}

/// `[login]`: login conversations (a prompt the daemon waits on). Every bound holds for
/// root callers too (sshd, sudo and su call as root for every user).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Login {
    /// How long a prompt waits for its answer, in seconds, 10 to 3600. Default 300.
    pub prompt_timeout_seconds: Bounded<10, 3600>,
    /// Conversations open at once on one bus connection, 1 to 16 (a PAM transaction needs
    /// one, two when it runs the auth stack twice). Default 2.
    pub max_sessions_per_connection: Bounded<1, 16>,
    /// Conversations open at once for one account (uid), 1 to 4096. Default 16.
    pub max_sessions_per_user: Bounded<1, 4096>,
    /// Conversations open at once in all, 16 to 65536. Default 4096.
    pub max_sessions: Bounded<16, 65536>,
}

impl Default for Login {
    fn default() -> Self {
        Login {
            prompt_timeout_seconds: Bounded::new(300),
            max_sessions_per_connection: Bounded::new(2),
            max_sessions_per_user: Bounded::new(16),
            max_sessions: Bounded::new(4096),
        }
    }
}

/// `[app_passwords]`: passwords for programs that cannot ask for a code (mail clients,
/// FTP, backup scripts), each limited to some PAM services. Off until `services` names one.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AppPasswords {
    /// PAM service names (`PAM_SERVICE`, the file name in `/etc/pam.d`) that accept app
    /// passwords at all, through `pam_twostep.so app_password`. Empty (default): none; no
    /// app password can be created or used.
    pub services: Vec<String>,
    /// The longest validity of a new app password, in days, 1 to 3650. Default 365. A
    /// create without an expiry gets this one.
    pub max_days: Bounded<1, 3650>,
    /// Whether an app password may never expire (`--expires never`). Default false.
    pub allow_never: bool,
    /// Days before its expiry that an app password is announced to its user (once: logged,
    /// marked in the record, mailed when `[mail]` is on), 0 to 365; 0: never. Default 7.
    pub notice_days: Bounded<0, 365>,
    /// Wrong app passwords of one user (each within `failure_window_seconds` of the one
    /// before) that lock that user's app passwords, 1 to 1000. Default 10. Their own
    /// counter (review M4): they never count toward `[lockout]`, so a wrong app password at
    /// IMAP cannot lock anyone out of SSH, sudo or the console.
    pub max_failures: Bounded<1, 1000>,
    /// How long such a lock lasts, in seconds, 1 to 86400. Default 300. It never turns into
    /// a lock until an admin unlocks: an app password is a 124-bit secret, so a lock only
    /// slows a flood; a longer one would only help whoever wants the user's mail cut off.
    pub lockout_seconds: Bounded<1, 86400>,
    /// Wrong app passwords older than this stop counting, in seconds, 1 to 86400. Default 900.
    pub failure_window_seconds: Bounded<1, 86400>,
}

impl Default for AppPasswords {
    fn default() -> Self {
        AppPasswords {
            services: Vec::new(),
            max_days: Bounded::new(365),
            allow_never: false,
            notice_days: Bounded::new(7),
            max_failures: Bounded::new(10),
            lockout_seconds: Bounded::new(300),
            failure_window_seconds: Bounded::new(900),
        }
    }
}

/// `[policy]`
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Who must use a second factor: `none` (default: users opt in), `all`, or `groups`.
    pub require: Require,
    /// With `require = "groups"`: members of these Unix groups (resolved through NSS).
    pub groups: Vec<String>,
    /// Members of these groups are never required (an admin's per-user override wins).
    pub exempt_groups: Vec<String>,
    /// Members of this group may use the admin commands (root always may). Empty: root only.
    pub admin_group: String,
    /// Whether users may switch their own 2FA off (when not required). Default true.
    pub may_toggle: bool,
    /// Days a required user may still log in without 2FA (with a reminder at each login),
    /// counted from the first login at which the requirement applied. 0 (default): enrol
    /// at that login.
    pub enroll_grace_days: Bounded<0, 365>,
    /// The verification methods this host allows: `totp`, `email` (needs `[mail]`).
    /// Default `["totp"]`.
    pub methods: Vec<MethodName>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            require: Require::None,
            groups: Vec::new(),
            exempt_groups: Vec::new(),
            admin_group: String::new(),
            may_toggle: true,
            enroll_grace_days: Bounded::new(0),
            methods: vec![MethodName::Totp],
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Require {
    #[default]
    None,
    All,
    Groups,
}

/// A configuration file that cannot be used, with where and why.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the error has no position (the file could not be read).
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Read and check `path`.
    ///
    /// # Errors
    /// The file cannot be read, is not TOML, has an unknown key or a value out of range.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: 0,
            column: 0,
            message: e.to_string(),
        })?;
        Config::parse(&text, path)
    }

    /// Parse `text`, naming `file` in errors.
    ///
    /// # Errors
    /// As [`Config::load`], and settings that contradict each other (see
    /// [`Config::contradictions`]); those carry no position.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            ConfigError {
                file: file.to_owned(),
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })?;
        match config.contradictions() {
            Some(message) => Err(ConfigError {
                file: file.to_owned(),
                line: 0,
                column: 0,
                message,
            }),
            None => Ok(config),
        }
    }

    /// Settings that are each valid but together protect less than they say: an error.
    ///
    /// - `require = "groups"` without any group requires nobody;
    /// - `groups` listed with `require = "none"`: the admin names groups, nobody is required;
    /// - a group both required and exempt (exempt wins at login): it requires nobody.
    pub fn contradictions(&self) -> Option<String> {
        self.store
            .contradictions()
            .or_else(|| self.policy_contradictions())
            .or_else(|| self.mail.contradictions())
            .or_else(|| self.methods_contradictions())
            .or_else(|| services::contradictions(&self.services, &self.policy.methods))
    }

    /// `[policy] methods`: at least one, each once, and `email` only with `[mail]`.
    fn methods_contradictions(&self) -> Option<String> {
        let m = &self.policy.methods;
        if m.is_empty() {
            return Some("[policy] methods must name at least one method".into());
        }
        if m.iter().enumerate().any(|(i, x)| m[..i].contains(x)) {
            return Some("[policy] methods names a method twice".into());
        }
        if m.contains(&MethodName::Email) && !self.mail.enabled() {
            return Some(
                "[policy] methods = [\"email\", …] needs [mail] (transport = \"smtp\" or \"sendmail\")"
                    .into(),
            );
        }
        None
    }

    fn policy_contradictions(&self) -> Option<String> {
        let p = &self.policy;
        match p.require {
            Require::Groups if p.groups.is_empty() => Some(
                "[policy] require = \"groups\" but groups is empty: that requires nobody; \
                 list the groups whose members must use a second factor"
                    .into(),
            ),
            Require::None if !p.groups.is_empty() => Some(
                "[policy] groups is set but require = \"none\": nobody is required; \
                 set require = \"groups\" (or remove groups)"
                    .into(),
            ),
            Require::Groups => p
                .groups
                .iter()
                .find(|g| p.exempt_groups.contains(g))
                .map(|g| {
                    format!(
                        "[policy] group {g:?} is in both groups and exempt_groups: its members \
                         would not be required; remove it from one of them"
                    )
                }),
            _ => None,
        }
    }

    /// Check the group names against the host's groups (NSS through `exists`, which
    /// answers `Ok(true)`, `Ok(false)` or the look-up's error).
    ///
    /// A group in `groups` (with `require = "groups"`) that does not resolve, or whose
    /// look-up fails, is an error: its members would silently not be asked for a second
    /// factor (a misspelt name switches 2FA off for the real group). Unknown
    /// `exempt_groups` (exempts nobody) and an unknown `admin_group` (root only) are
    /// warnings: they protect more than they say, not less; so is `groups` with
    /// `require = "all"` (ignored).
    pub fn check_groups(&self, exists: impl Fn(&str) -> Result<bool, String>) -> Vec<Finding> {
        let p = &self.policy;
        let mut out = Vec::new();
        let unknown = |name: &str| match exists(name) {
            Ok(true) => None,
            Ok(false) => Some(format!("group {name:?} does not exist")),
            Err(e) => Some(format!("group {name:?} cannot be looked up: {e}")),
        };
        if p.require == Require::Groups {
            for why in p.groups.iter().filter_map(|g| unknown(g)) {
                out.push(Finding::Error(format!(
                    "[policy] groups: {why}; its members would not be asked for a second factor"
                )));
            }
        }
        if p.require == Require::All && !p.groups.is_empty() {
            out.push(Finding::Warning(
                "[policy] groups is ignored: require = \"all\" requires everyone".into(),
            ));
        }
        for g in &p.exempt_groups {
            if let Some(why) = unknown(g) {
                out.push(Finding::Warning(format!(
                    "[policy] exempt_groups: {why}; it exempts nobody"
                )));
            }
        }
        if !p.admin_group.is_empty() {
            if let Some(why) = unknown(&p.admin_group) {
                out.push(Finding::Warning(format!(
                    "[policy] admin_group: {why}; only root may use the admin commands"
                )));
            }
        }
        out
    }
}

impl Store {
    /// `[store]` settings that cannot work together: PostgreSQL without a `url`, a
    /// password inside the `url` (it belongs in `password_file`, readable by root only),
    /// `verify-full` without a `ca_file`.
    pub fn contradictions(&self) -> Option<String> {
        if self.backend != Backend::Postgres {
            return None;
        }
        if self.url.is_empty() {
            return Some(
                "[store] backend = \"postgres\" needs url (postgresql://user@host/db)".into(),
            );
        }
        let lower = self.url.to_ascii_lowercase();
        let in_userinfo = lower
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('@'))
            .is_some_and(|(userinfo, _)| userinfo.contains(':'));
        if in_userinfo || lower.contains("password=") {
            return Some(
                "[store] url holds a password: put it in password_file (owned by root, mode \
                 0600) and remove it from the url"
                    .into(),
            );
        }
        if self.tls == Tls::VerifyFull && self.ca_file.as_os_str().is_empty() {
            return Some(
                "[store] tls = \"verify-full\" needs ca_file (the PEM certificate of the \
                 authority that signed the database server's certificate)"
                    .into(),
            );
        }
        None
    }
}

/// What [`Config::check_groups`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// The daemon must not run on this: `--check-config` fails, start and reload refuse it.
    Error(String),
    /// Protects more than it says; logged at start and reload, printed by `--check-config`.
    Warning(String),
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Error(m) => write!(f, "error: {m}"),
            Finding::Warning(m) => write!(f, "warning: {m}"),
        }
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("t.toml"))
    }

    #[test]
    fn empty_file_is_all_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.daemon.state_dir, Path::new("/var/lib/twostep"));
        assert_eq!(c.daemon.bus, BusAddress::System);
        assert_eq!(c.totp.algorithm, Algorithm::SHA1);
        assert_eq!(c.totp.digits.get(), 6);
        assert_eq!(c.totp.period.get(), 30);
        assert_eq!(c.totp.window.get(), 1);
        assert_eq!(c.lockout.max_failures.get(), 5);
    }

    #[test]
    fn full_file_parses() {
        let c = parse(
            r#"
version = 1
[daemon]
state_dir = "/tmp/x"
bus = "unix:path=/tmp/bus.sock"
[totp]
algorithm = "SHA512"
digits = 8
period = 60
window = 2
issuer = "example"
[lockout]
max_failures = 3
lockout_seconds = 0
failure_window_seconds = 60
[enrollment]
pending_seconds = 120
[recovery]
count = 5
mode = "disables-2fa"
[policy]
require = "groups"
groups = ["staff"]
exempt_groups = ["robots"]
admin_group = "wheel"
may_toggle = false
"#,
        )
        .unwrap();
        assert_eq!(
            c.daemon.bus,
            BusAddress::Address("unix:path=/tmp/bus.sock".into())
        );
        assert_eq!(c.totp.algorithm, Algorithm::SHA512);
        assert_eq!(c.totp.digits.get(), 8);
        assert_eq!(c.lockout.lockout_seconds.get(), 0);
        assert_eq!(c.recovery.mode, RecoveryMode::Disables2fa);
        assert_eq!(c.policy.require, Require::Groups);
        assert!(!c.policy.may_toggle);
    }

    #[test]
    fn errors_carry_file_line_and_column() {
        let cases = [
            ("[totp]\ndigits = 9\n", 2, 10, "out of range"),
            ("[totp]\n  nonsense = 1\n", 2, 3, "unknown field"),
            ("[daemon]\nbus = \"tcp:host=x\"\n", 2, 7, "bus must be"),
            ("version = 2\n", 1, 11, "unsupported config version"),
            ("[totp]\nalgorithm = \"MD5\"\n", 2, 13, "unknown variant"),
            ("[lockout\n", 1, 9, ""),
            ("[totp]\nwindow = 10\n", 2, 10, "out of range 0..=2"),
            (
                "[daemon]\nstate_dir = \"var/lib/x\"\n",
                2,
                13,
                "not an absolute path",
            ),
        ];
        for (text, line, column, needle) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!((e.line, e.column), (line, column), "{text:?}: {e}");
            assert!(e.message.contains(needle), "{text:?}: {e}");
            assert!(e
                .to_string()
                .starts_with(&format!("t.toml:{line}:{column}: ")));
        }
    }

    #[test]
    fn login_socket_is_absolute_or_empty() {
        assert_eq!(
            Config::default().daemon.login_socket,
            PathBuf::from("/run/twostep/login.sock")
        );
        let off = parse("[daemon]\nlogin_socket = \"\"\n").unwrap();
        assert_eq!(off.daemon.login_socket, PathBuf::new());
        let other = parse("[daemon]\nlogin_socket = \"/run/x/l.sock\"\n").unwrap();
        assert_eq!(other.daemon.login_socket, PathBuf::from("/run/x/l.sock"));
        let e = parse("[daemon]\nlogin_socket = \"run/l.sock\"\n").unwrap_err();
        assert!(e.message.contains("not an absolute path"), "{e}");
    }

    #[test]
    fn shipped_example_parses_and_states_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/twostep.toml.example");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(Config::parse(&text, &path).unwrap(), Config::default());
        // Every key appears, commented out with "# ", under prose comments that start with
        // "##"; uncommenting the keys must give the defaults too.
        let uncommented: String = text
            .lines()
            .filter(|l| !l.starts_with("##"))
            .map(|l| l.strip_prefix("# ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        // The one example table, `[services.sudo]` with every key at its default, behaves
        // as no table; the rest is the defaults.
        let mut parsed = Config::parse(&uncommented, &path).unwrap();
        let example: Vec<_> = std::mem::take(&mut parsed.services).into_iter().collect();
        assert_eq!(example.len(), 1);
        assert_eq!(example[0].0.as_str(), "sudo");
        assert_eq!(example[0].1.second_factor, SecondFactor::Policy);
        assert_eq!(
            example[0].1.methods.as_deref(),
            Some(&parsed.policy.methods[..])
        );
        assert_eq!(example[0].1.remember_seconds.get(), 0);
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn store_settings_that_cannot_work_are_errors() {
        for (text, needle) in [
            ("[store]\nbackend = \"postgres\"\n", "needs url"),
            (
                "[store]\nbackend = \"postgres\"\nurl = \"postgresql://u:pw@h/db\"\ntls = \"require\"\n",
                "holds a password",
            ),
            (
                "[store]\nbackend = \"postgres\"\nurl = \"host=h password=x\"\ntls = \"require\"\n",
                "holds a password",
            ),
            (
                "[store]\nbackend = \"postgres\"\nurl = \"postgresql://u@h/db\"\n",
                "needs ca_file",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.message.contains(needle), "{text:?}: {e}");
        }
        let ok = parse(
            "[store]\nbackend = \"postgres\"\nurl = \"postgresql://u@h/db\"\n\
             ca_file = \"/etc/twostep/ca.pem\"\npassword_file = \"/etc/twostep/db.pw\"\n",
        )
        .unwrap();
        assert_eq!(ok.store.backend, Backend::Postgres);
        assert!(parse("[store]\npassword_file = \"db.pw\"\n")
            .unwrap_err()
            .message
            .contains("not an absolute path"));
        assert!(parse("[store]\nstatement_timeout_ms = 50\n").is_err());
    }

    #[test]
    fn policies_that_require_nobody_are_errors() {
        for (text, needle) in [
            ("[policy]\nrequire = \"groups\"\n", "groups is empty"),
            (
                "[policy]\nrequire = \"groups\"\ngroups = []\n",
                "groups is empty",
            ),
            ("[policy]\ngroups = [\"staff\"]\n", "nobody is required"),
            (
                "[policy]\nrequire = \"groups\"\ngroups = [\"a\", \"staff\"]\nexempt_groups = [\"staff\"]\n",
                "in both groups and exempt_groups",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.message.contains(needle), "{text:?}: {e}");
            assert!(e.to_string().starts_with("t.toml: [policy]"), "{e}");
        }
        assert!(parse("[policy]\nrequire = \"groups\"\ngroups = [\"staff\"]\n").is_ok());
        assert!(parse("[policy]\nrequire = \"all\"\ngroups = [\"staff\"]\n").is_ok());
    }

    #[test]
    fn unknown_groups_are_errors_where_they_would_exempt_people() {
        let exists = |g: &str| match g {
            "staff" | "wheel" => Ok(true),
            "broken" => Err("nss down".to_owned()),
            _ => Ok(false),
        };
        let c = parse(
            "[policy]\nrequire = \"groups\"\ngroups = [\"staff\", \"stafff\", \"broken\"]\n\
             exempt_groups = [\"robots\"]\nadmin_group = \"wheell\"\n",
        )
        .unwrap();
        let f = c.check_groups(exists);
        let errors: Vec<_> = f
            .iter()
            .filter(|x| matches!(x, Finding::Error(_)))
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors.len(), 2, "{f:?}");
        assert!(
            errors[0].contains("\"stafff\" does not exist"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains("cannot be looked up: nss down"),
            "{errors:?}"
        );
        let warnings: Vec<_> = f
            .iter()
            .filter(|x| matches!(x, Finding::Warning(_)))
            .map(ToString::to_string)
            .collect();
        assert_eq!(warnings.len(), 2, "{f:?}");
        assert!(warnings[0].contains("exempts nobody"), "{warnings:?}");
        assert!(warnings[1].contains("only root"), "{warnings:?}");

        let ok = parse(
            "[policy]\nrequire = \"groups\"\ngroups = [\"staff\"]\nadmin_group = \"wheel\"\n",
        )
        .unwrap();
        assert_eq!(ok.check_groups(exists), vec![]);
        let all = parse("[policy]\nrequire = \"all\"\ngroups = [\"nosuch\"]\n").unwrap();
        assert!(
            matches!(all.check_groups(exists).as_slice(), [Finding::Warning(w)] if w.contains("ignored"))
        );
    }

    #[test]
    fn unreadable_file_is_a_clear_error() {
        let e = Config::load(Path::new("/nonexistent/twostep.toml")).unwrap_err();
        assert_eq!(e.line, 0);
        assert!(e.to_string().starts_with("/nonexistent/twostep.toml: "));
    }
}
