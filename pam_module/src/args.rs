// SPDX-License-Identifier: MIT OR Apache-2.0
//! Module arguments from the `/etc/pam.d` line: the module's only input besides PAM items.
//!
//! Parsing is strict: an unknown, duplicated or malformed argument is an error, and the hook
//! answers `PAM_SERVICE_ERR`. A typo such as `nulok` must never silently change behaviour.

use std::ffi::CStr;
use std::fmt;
use std::time::Duration;

/// Default for `timeout=`: the time each bus call may take, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 10;
/// Bounds for `timeout=`.
pub const TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 1..=120;

/// The longest unix socket path (`sun_path` holds 108 bytes with the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;
/// `(uid_t)-1` means "no uid" to the kernel; it can own nothing.
const NO_UID: u64 = u32::MAX as u64;

/// What the module does when the daemon cannot be reached at all.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FailMode {
    /// Refuse the login (`PAM_AUTHINFO_UNAVAIL`). The default.
    Closed,
    /// Let the login through without a second factor, with a loud syslog line.
    Open,
}

/// What the module checks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// The second factor, after a password module (the default).
    SecondFactor,
    /// `app_password`: the password is an app password of the user for this service.
    AppPassword,
    /// `forward_pass`: one prompt for the password and the code; the password goes on to
    /// the next module as `PAM_AUTHTOK`.
    ForwardPass,
}

/// The parsed module arguments.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ModuleArgs {
    /// `bus=`: the D-Bus address, always `unix:path=/absolute`.
    pub bus: String,
    /// `bus_uid=`: the uid that must own the daemon's well-known name, and listen on the
    /// login socket.
    pub bus_uid: u32,
    /// `socket=`: the daemon's login socket, tried before the bus (default
    /// [`twostep_proto::LOGIN_SOCKET`]); `socket=none`: the bus only.
    pub socket: Option<String>,
    /// `nullok`: a user the daemon reports as not enrolled (and not required) is let through.
    pub nullok: bool,
    /// `debug`: step-level syslog lines.
    pub debug: bool,
    /// `timeout=`: the time each bus call may take.
    pub timeout: Duration,
    /// `failmode=`.
    pub failmode: FailMode,
    /// `app_password` or `forward_pass` (at most one of them).
    pub mode: Mode,
}

impl Default for ModuleArgs {
    fn default() -> Self {
        ModuleArgs {
            bus: twostep_proto::SYSTEM_BUS_ADDRESS.to_owned(),
            bus_uid: 0,
            socket: Some(twostep_proto::LOGIN_SOCKET.to_owned()),
            nullok: false,
            debug: false,
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
            failmode: FailMode::Closed,
            mode: Mode::SecondFactor,
        }
    }
}

/// Why the arguments were refused. `Display` names the offending argument, escaped.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ArgError {
    /// The argument at this position is not UTF-8.
    NotUtf8 { position: usize },
    /// Not an argument this module knows (a typo?).
    Unknown(String),
    /// The same argument given twice.
    Duplicate(&'static str),
    /// A known argument with a bad value, or a value where none belongs.
    Malformed {
        name: &'static str,
        value: String,
        why: &'static str,
    },
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::NotUtf8 { position } => {
                write!(f, "module argument #{} is not valid UTF-8", position + 1)
            }
            ArgError::Unknown(arg) => {
                write!(f, "unknown module argument \"{}\"", arg.escape_debug())
            }
            ArgError::Duplicate(name) => write!(f, "module argument {name} given more than once"),
            ArgError::Malformed { name, value, why } => write!(
                f,
                "module argument {name}=\"{}\": {why}",
                value.escape_debug()
            ),
        }
    }
}

impl std::error::Error for ArgError {}

impl ModuleArgs {
    /// Parses the arguments of the `/etc/pam.d` line.
    ///
    /// # Errors
    /// [`ArgError`] for the first unknown, duplicated, malformed or non-UTF-8 argument.
    pub fn parse(raw: &[&CStr]) -> Result<ModuleArgs, ArgError> {
        let mut args = ModuleArgs::default();
        let mut seen = Seen::default();
        for (position, arg) in raw.iter().enumerate() {
            let arg = arg.to_str().map_err(|_| ArgError::NotUtf8 { position })?;
            let (key, value) = match arg.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (arg, None),
            };
            match key {
                "bus" => {
                    once(&mut seen.bus, "bus")?;
                    args.bus = parse_bus(value.ok_or_else(|| needs_value("bus"))?)?;
                }
                "bus_uid" => {
                    once(&mut seen.bus_uid, "bus_uid")?;
                    args.bus_uid = parse_uid(value.ok_or_else(|| needs_value("bus_uid"))?)?;
                }
                "socket" => {
                    once(&mut seen.socket, "socket")?;
                    args.socket = parse_socket(value.ok_or_else(|| needs_value("socket"))?)?;
                }
                "timeout" => {
                    once(&mut seen.timeout, "timeout")?;
                    args.timeout = parse_timeout(value.ok_or_else(|| needs_value("timeout"))?)?;
                }
                "failmode" => {
                    once(&mut seen.failmode, "failmode")?;
                    args.failmode = parse_failmode(value.ok_or_else(|| needs_value("failmode"))?)?;
                }
                "nullok" => {
                    once(&mut seen.nullok, "nullok")?;
                    no_value("nullok", value)?;
                    args.nullok = true;
                }
                "debug" => {
                    once(&mut seen.debug, "debug")?;
                    no_value("debug", value)?;
                    args.debug = true;
                }
                "app_password" | "forward_pass" => {
                    let (name, mode) = if key == "app_password" {
                        ("app_password", Mode::AppPassword)
                    } else {
                        ("forward_pass", Mode::ForwardPass)
                    };
                    no_value(name, value)?;
                    if args.mode == mode {
                        return Err(ArgError::Duplicate(name));
                    }
                    if args.mode != Mode::SecondFactor {
                        return Err(ArgError::Malformed {
                            name,
                            value: String::new(),
                            why: "app_password and forward_pass exclude each other",
                        });
                    }
                    args.mode = mode;
                }
                _ => return Err(ArgError::Unknown(arg.to_owned())),
            }
        }
        // Why: in app_password mode the module is the service's only password check; an
        // absent daemon letting every login through would open the service to anyone.
        if args.mode == Mode::AppPassword && args.failmode == FailMode::Open {
            return Err(ArgError::Malformed {
                name: "failmode",
                value: "open".into(),
                why: "app_password is the password check itself and never fails open",
            });
        }
        Ok(args)
    }
}

/// Which arguments were given already.
#[derive(Default)]
struct Seen {
    bus: bool,
    bus_uid: bool,
    socket: bool,
    timeout: bool,
    failmode: bool,
    nullok: bool,
    debug: bool,
}

/// Marks an argument as given; the second time is an error.
fn once(given: &mut bool, name: &'static str) -> Result<(), ArgError> {
    if std::mem::replace(given, true) {
        Err(ArgError::Duplicate(name))
    } else {
        Ok(())
    }
}

fn needs_value(name: &'static str) -> ArgError {
    ArgError::Malformed {
        name,
        value: String::new(),
        why: "needs a value (name=value)",
    }
}

fn no_value(name: &'static str, value: Option<&str>) -> Result<(), ArgError> {
    match value {
        None => Ok(()),
        Some(v) => Err(ArgError::Malformed {
            name,
            value: v.to_owned(),
            why: "takes no value",
        }),
    }
}

fn malformed(name: &'static str, value: &str, why: &'static str) -> ArgError {
    ArgError::Malformed {
        name,
        value: value.to_owned(),
        why,
    }
}

/// Only `unix:path=/absolute`, with a path of plain characters: no `,` (another key),
/// no `;` (a fallback address, e.g. TCP), no `%` escapes, nothing a bus library would reinterpret.
fn parse_bus(value: &str) -> Result<String, ArgError> {
    let bad = |why| malformed("bus", value, why);
    let path = value
        .strip_prefix("unix:path=")
        .ok_or_else(|| bad("only unix:path=/absolute/socket addresses are accepted"))?;
    socket_path("bus", value, path)?;
    Ok(value.to_owned())
}

/// `none`, or an absolute path of plain characters (as in `bus=`).
fn parse_socket(value: &str) -> Result<Option<String>, ArgError> {
    if value == "none" {
        return Ok(None);
    }
    socket_path("socket", value, value)?;
    Ok(Some(value.to_owned()))
}

/// An absolute socket path of ASCII letters, digits, '/', '.', '-' and '_' only.
fn socket_path(name: &'static str, value: &str, path: &str) -> Result<(), ArgError> {
    let bad = |why| malformed(name, value, why);
    if !path.starts_with('/') {
        return Err(bad("the socket path must be absolute"));
    }
    if path.len() > MAX_SOCKET_PATH {
        return Err(bad("the socket path is too long"));
    }
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'-' | b'_');
    if !path.bytes().all(plain) {
        return Err(bad(
            "the socket path may hold only ASCII letters, digits, '/', '.', '-' and '_'",
        ));
    }
    Ok(())
}

/// A decimal number of ASCII digits only: `parse` alone would take `+10`.
fn decimal(value: &str) -> Option<u64> {
    if value.is_empty() || value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

fn parse_uid(value: &str) -> Result<u32, ArgError> {
    decimal(value)
        .filter(|uid| *uid < NO_UID)
        .and_then(|uid| u32::try_from(uid).ok())
        .ok_or_else(|| malformed("bus_uid", value, "must be a numeric uid"))
}

fn parse_timeout(value: &str) -> Result<Duration, ArgError> {
    decimal(value)
        .filter(|secs| TIMEOUT_RANGE.contains(secs))
        .map(Duration::from_secs)
        .ok_or_else(|| malformed("timeout", value, "must be whole seconds from 1 to 120"))
}

fn parse_failmode(value: &str) -> Result<FailMode, ArgError> {
    match value {
        "closed" => Ok(FailMode::Closed),
        "open" => Ok(FailMode::Open),
        _ => Err(malformed("failmode", value, "must be closed or open")),
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use std::ffi::CString;

    fn parse(args: &[&str]) -> Result<ModuleArgs, ArgError> {
        let owned: Vec<CString> = args.iter().map(|a| CString::new(*a).unwrap()).collect();
        let borrowed: Vec<&CStr> = owned.iter().map(CString::as_c_str).collect();
        ModuleArgs::parse(&borrowed)
    }

    #[test]
    fn the_shared_argument_list_is_exactly_what_parse_accepts() {
        // `twostepctl doctor` judges PAM lines by twostep_proto::module_args::NAMES.
        let valid = |name: &str| match name {
            "bus" => "bus=unix:path=/run/x.sock".to_owned(),
            "bus_uid" => "bus_uid=0".to_owned(),
            "socket" => "socket=/run/x/login.sock".to_owned(),
            "timeout" => "timeout=5".to_owned(),
            "failmode" => "failmode=closed".to_owned(),
            flag => flag.to_owned(),
        };
        for name in twostep_proto::module_args::NAMES {
            assert!(parse(&[&valid(name)]).is_ok(), "{name}");
        }
        for unknown in ["grace=60", "nulok", "try_first_pass", "use_first_pass"] {
            assert!(parse(&[unknown]).is_err(), "{unknown}");
        }
    }

    #[test]
    fn no_arguments_gives_the_documented_defaults() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.bus, "unix:path=/run/dbus/system_bus_socket");
        assert_eq!(args.bus_uid, 0);
        assert_eq!(args.socket.as_deref(), Some("/run/twostep/login.sock"));
        assert!(!args.nullok);
        assert!(!args.debug);
        assert_eq!(args.timeout, Duration::from_secs(10));
        assert_eq!(args.failmode, FailMode::Closed);
    }

    #[test]
    fn accepted_arguments() {
        let d = ModuleArgs::default;
        let cases: Vec<(&[&str], ModuleArgs)> = vec![
            (
                &["nullok"],
                ModuleArgs {
                    nullok: true,
                    ..d()
                },
            ),
            (&["debug"], ModuleArgs { debug: true, ..d() }),
            (
                &["bus=unix:path=/tmp/t-1/bus.sock"],
                ModuleArgs {
                    bus: "unix:path=/tmp/t-1/bus.sock".into(),
                    ..d()
                },
            ),
            (&["bus_uid=0"], d()),
            (
                &["socket=/tmp/t-1/login.sock"],
                ModuleArgs {
                    socket: Some("/tmp/t-1/login.sock".into()),
                    ..d()
                },
            ),
            (
                &["socket=none"],
                ModuleArgs {
                    socket: None,
                    ..d()
                },
            ),
            (
                &["bus_uid=1000"],
                ModuleArgs {
                    bus_uid: 1000,
                    ..d()
                },
            ),
            (
                &["bus_uid=4294967294"],
                ModuleArgs {
                    bus_uid: 4_294_967_294,
                    ..d()
                },
            ),
            (
                &["timeout=1"],
                ModuleArgs {
                    timeout: Duration::from_secs(1),
                    ..d()
                },
            ),
            (
                &["timeout=120"],
                ModuleArgs {
                    timeout: Duration::from_secs(120),
                    ..d()
                },
            ),
            (&["failmode=closed"], d()),
            (
                &["failmode=open"],
                ModuleArgs {
                    failmode: FailMode::Open,
                    ..d()
                },
            ),
            (
                &[
                    "debug",
                    "nullok",
                    "timeout=30",
                    "failmode=open",
                    "bus_uid=7",
                    "bus=unix:path=/run/x",
                    "socket=/run/y",
                ],
                ModuleArgs {
                    bus: "unix:path=/run/x".into(),
                    bus_uid: 7,
                    socket: Some("/run/y".into()),
                    nullok: true,
                    debug: true,
                    timeout: Duration::from_secs(30),
                    failmode: FailMode::Open,
                    mode: Mode::SecondFactor,
                },
            ),
            (
                &["app_password"],
                ModuleArgs {
                    mode: Mode::AppPassword,
                    ..d()
                },
            ),
            (
                &["forward_pass", "nullok"],
                ModuleArgs {
                    mode: Mode::ForwardPass,
                    nullok: true,
                    ..d()
                },
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(parse(raw), Ok(want), "{raw:?}");
        }
    }

    #[test]
    fn modes_exclude_each_other_and_app_password_never_fails_open() {
        assert_eq!(
            parse(&["app_password", "app_password"]),
            Err(ArgError::Duplicate("app_password"))
        );
        assert!(parse(&["app_password", "forward_pass"]).is_err());
        assert!(parse(&["forward_pass", "app_password"]).is_err());
        assert!(parse(&["app_password=1"]).is_err());
        assert!(parse(&["app_password", "failmode=open"]).is_err());
        assert!(parse(&["forward_pass", "failmode=open"]).is_ok());
    }

    #[test]
    fn refused_arguments() {
        let unknown = |s: &str| ArgError::Unknown(s.into());
        let bad = |name, value: &str, why| ArgError::Malformed {
            name,
            value: value.into(),
            why,
        };
        let only_unix = "only unix:path=/absolute/socket addresses are accepted";
        let plain = "the socket path may hold only ASCII letters, digits, '/', '.', '-' and '_'";
        let uid = "must be a numeric uid";
        let secs = "must be whole seconds from 1 to 120";
        let long_path = format!("bus=unix:path=/{}", "a".repeat(107));
        let cases: Vec<(Vec<&str>, ArgError)> = vec![
            (vec!["nulok"], unknown("nulok")),
            (vec!["NULLOK"], unknown("NULLOK")),
            (vec!["nullok "], unknown("nullok ")),
            (vec![""], unknown("")),
            (vec!["try_first_pass"], unknown("try_first_pass")),
            (vec!["=x"], unknown("=x")),
            (vec!["nullok", "nullok"], ArgError::Duplicate("nullok")),
            (vec!["debug", "debug"], ArgError::Duplicate("debug")),
            (
                vec!["timeout=5", "timeout=5"],
                ArgError::Duplicate("timeout"),
            ),
            (
                vec!["bus=unix:path=/a", "bus=unix:path=/b"],
                ArgError::Duplicate("bus"),
            ),
            (
                vec!["bus_uid=0", "bus_uid=0"],
                ArgError::Duplicate("bus_uid"),
            ),
            (
                vec!["socket=none", "socket=/a"],
                ArgError::Duplicate("socket"),
            ),
            (
                vec!["socket"],
                bad("socket", "", "needs a value (name=value)"),
            ),
            (
                vec!["socket=run/login.sock"],
                bad(
                    "socket",
                    "run/login.sock",
                    "the socket path must be absolute",
                ),
            ),
            (vec!["socket=/run/a;b"], bad("socket", "/run/a;b", plain)),
            (
                vec!["socket="],
                bad("socket", "", "the socket path must be absolute"),
            ),
            (
                vec!["failmode=open", "failmode=closed"],
                ArgError::Duplicate("failmode"),
            ),
            (vec!["nullok=1"], bad("nullok", "1", "takes no value")),
            (vec!["nullok="], bad("nullok", "", "takes no value")),
            (vec!["debug=yes"], bad("debug", "yes", "takes no value")),
            (
                vec!["timeout"],
                bad("timeout", "", "needs a value (name=value)"),
            ),
            (vec!["timeout=abc"], bad("timeout", "abc", secs)),
            (vec!["timeout="], bad("timeout", "", secs)),
            (vec!["timeout=0"], bad("timeout", "0", secs)),
            (vec!["timeout=121"], bad("timeout", "121", secs)),
            (vec!["timeout=+10"], bad("timeout", "+10", secs)),
            (vec!["timeout=-1"], bad("timeout", "-1", secs)),
            (vec!["timeout= 10"], bad("timeout", " 10", secs)),
            (vec!["timeout=1.5"], bad("timeout", "1.5", secs)),
            (vec!["timeout=١٠"], bad("timeout", "١٠", secs)),
            (
                vec!["timeout=99999999999999999999"],
                bad("timeout", "99999999999999999999", secs),
            ),
            (
                vec!["bus_uid"],
                bad("bus_uid", "", "needs a value (name=value)"),
            ),
            (vec!["bus_uid=root"], bad("bus_uid", "root", uid)),
            (vec!["bus_uid=-1"], bad("bus_uid", "-1", uid)),
            (vec!["bus_uid=+0"], bad("bus_uid", "+0", uid)),
            (
                vec!["bus_uid=4294967295"],
                bad("bus_uid", "4294967295", uid),
            ),
            (
                vec!["bus_uid=4294967296"],
                bad("bus_uid", "4294967296", uid),
            ),
            (
                vec!["failmode=OPEN"],
                bad("failmode", "OPEN", "must be closed or open"),
            ),
            (
                vec!["failmode="],
                bad("failmode", "", "must be closed or open"),
            ),
            (
                vec!["failmode"],
                bad("failmode", "", "needs a value (name=value)"),
            ),
            (vec!["bus"], bad("bus", "", "needs a value (name=value)")),
            (vec!["bus="], bad("bus", "", only_unix)),
            (
                vec!["bus=tcp:host=localhost,port=1"],
                bad("bus", "tcp:host=localhost,port=1", only_unix),
            ),
            (
                vec!["bus=unix:abstract=/x"],
                bad("bus", "unix:abstract=/x", only_unix),
            ),
            (
                vec!["bus=unix:path=relative/sock"],
                bad(
                    "bus",
                    "unix:path=relative/sock",
                    "the socket path must be absolute",
                ),
            ),
            (
                vec!["bus=unix:path=/a;tcp:host=evil,port=1"],
                bad("bus", "unix:path=/a;tcp:host=evil,port=1", plain),
            ),
            (
                vec!["bus=unix:path=/a,guid=0"],
                bad("bus", "unix:path=/a,guid=0", plain),
            ),
            (
                vec!["bus=unix:path=/a%2c"],
                bad("bus", "unix:path=/a%2c", plain),
            ),
            (
                vec!["bus=unix:path=/a b"],
                bad("bus", "unix:path=/a b", plain),
            ),
            (
                vec![long_path.as_str()],
                bad(
                    "bus",
                    &long_path["bus=".len()..],
                    "the socket path is too long",
                ),
            ),
            // The first bad argument is reported, even after good ones.
            (vec!["debug", "nullok", "nulok"], unknown("nulok")),
        ];
        for (raw, want) in cases {
            assert_eq!(parse(&raw), Err(want), "{raw:?}");
        }
    }

    #[test]
    fn a_non_utf8_argument_is_refused() {
        let raw = [c"debug", c"null\xffok"];
        assert_eq!(
            ModuleArgs::parse(&raw),
            Err(ArgError::NotUtf8 { position: 1 })
        );
        assert_eq!(
            ArgError::NotUtf8 { position: 1 }.to_string(),
            "module argument #2 is not valid UTF-8"
        );
    }

    #[test]
    fn errors_display_escaped() {
        assert_eq!(
            ArgError::Unknown("a\nb".into()).to_string(),
            "unknown module argument \"a\\nb\""
        );
        assert_eq!(
            bad_timeout().to_string(),
            "module argument timeout=\"x\\u{1b}\": must be whole seconds from 1 to 120"
        );
    }

    fn bad_timeout() -> ArgError {
        parse(&["timeout=x\u{1b}"]).unwrap_err()
    }
}
