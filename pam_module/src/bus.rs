// SPDX-License-Identifier: MIT OR Apache-2.0
//! [`BusDaemon`]: the [`Daemon`] trait over libdbus (the `dbus` crate, blocking).
//!
//! One private connection per call of the module, to exactly the `bus=` address, opened on
//! `Begin` and closed when the `BusDaemon` drops. Before anything is sent to the daemon, its
//! well-known name is resolved to the unique name and the uid owning that name is checked;
//! every call then goes to the unique name, so a name that changes hands mid-login cannot
//! take over the conversation. Every call carries the `timeout=` limit: the bus itself never
//! times a reply out.
//!
//! Why calls are driven here rather than by `send_with_reply_and_block`: libdbus first
//! flushes with no time limit, which hangs for ever while a stuck bus never finishes the
//! authentication handshake; and it matches a reply by serial alone, while serials are
//! sequential and easy to guess. `BusDaemon::call` waits with a deadline and accepts only a
//! reply to its serial from the expected sender (a forgery is dropped and logged).

use std::cell::OnceCell;
use std::time::Instant;

use dbus::arg::Dict;
use dbus::channel::Channel;
use dbus::strings::{BusName, Interface, Member, Path};
use dbus::{Message, MessageType};
use twostep_proto::{login, Step, BUS_NAME, ERROR_PREFIX, LOGIN_INTERFACE, OBJECT_PATH};

use crate::args::ModuleArgs;
use crate::flow::{describe_step, Answer, Daemon, DaemonError, ErrorName, LoginContext, Session};
use crate::log::{Field, Log};

const DBUS_NAME: &str = "org.freedesktop.DBus";
const DBUS_PATH: &str = "/org/freedesktop/DBus";
const DBUS_INTERFACE: &str = "org.freedesktop.DBus";
const NAME_HAS_NO_OWNER: &str = "org.freedesktop.DBus.Error.NameHasNoOwner";

/// Errors that mean "the daemon cannot be reached" (so `failmode` applies). Anything else
/// that is not one of the daemon's own names is a protocol error and fails closed.
const TRANSPORT_ERRORS: [&str; 9] = [
    "org.freedesktop.DBus.Error.NoReply",
    "org.freedesktop.DBus.Error.Timeout",
    "org.freedesktop.DBus.Error.TimedOut",
    "org.freedesktop.DBus.Error.Disconnected",
    "org.freedesktop.DBus.Error.ServiceUnknown",
    NAME_HAS_NO_OWNER,
    "org.freedesktop.DBus.Error.NoServer",
    "org.freedesktop.DBus.Error.NoNetwork",
    "org.freedesktop.DBus.Error.IOError",
];

/// Why one call got no usable reply.
enum CallError {
    /// No reply within `timeout=`.
    Timeout,
    /// The connection is gone.
    Disconnected,
    /// An error reply: its name and message.
    Reply { name: String, message: String },
}

impl CallError {
    /// For a log line, escaped.
    fn show(&self) -> String {
        match self {
            CallError::Timeout => "no reply within timeout=".into(),
            CallError::Disconnected => "disconnected".into(),
            CallError::Reply { name, message } => format!("{name} {}", Field(Some(message))),
        }
    }

    /// A failed login call, as the flow sees it.
    fn classify(&self) -> DaemonError {
        match self {
            CallError::Timeout | CallError::Disconnected => DaemonError::Unreachable(self.show()),
            CallError::Reply { name, message } => classify(name, message),
        }
    }
}

/// twostepd, reached over the bus named by the module arguments.
pub struct BusDaemon<'a> {
    args: &'a ModuleArgs,
    log: &'a Log,
    conn: OnceCell<Connected>,
}

/// A registered connection and the checked unique name of the daemon.
struct Connected {
    channel: Channel,
    daemon: String,
}

impl<'a> BusDaemon<'a> {
    /// No I/O yet: the connection is opened by the first [`Daemon::begin`].
    pub fn new(args: &'a ModuleArgs, log: &'a Log) -> BusDaemon<'a> {
        BusDaemon {
            args,
            log,
            conn: OnceCell::new(),
        }
    }

    fn connected(&self) -> Result<&Connected, DaemonError> {
        if let Some(conn) = self.conn.get() {
            return Ok(conn);
        }
        let conn = self.connect()?;
        Ok(self.conn.get_or_init(|| conn))
    }

    fn connect(&self) -> Result<Connected, DaemonError> {
        let bus = &self.args.bus;
        // Why open_private with an explicit address: the library defaults read DBUS_*
        // variables, which a user controls inside setuid sudo.
        let channel = Channel::open_private(bus).map_err(|e| {
            DaemonError::Unreachable(format!(
                "cannot connect to {bus}: {} {}",
                e.name().unwrap_or("(unnamed error)"),
                Field(e.message())
            ))
        })?;
        // Why Hello by hand rather than Channel::register: dbus_bus_register waits libdbus's
        // default 25 s, after a flush without any limit; this call waits at most timeout=.
        let hello = method(DBUS_NAME, DBUS_PATH, DBUS_INTERFACE, "Hello")?;
        self.call(&channel, DBUS_NAME, hello).map_err(|e| {
            DaemonError::Unreachable(format!("cannot register on {bus}: {}", e.show()))
        })?;
        let daemon = self.name_owner(&channel)?;
        let query = method(
            DBUS_NAME,
            DBUS_PATH,
            DBUS_INTERFACE,
            "GetConnectionUnixUser",
        )?
        .append1(daemon.as_str());
        let uid: u32 = self
            .call(&channel, DBUS_NAME, query)
            .map_err(|e| {
                DaemonError::Unreachable(format!(
                    "cannot ask the bus who owns {BUS_NAME}: {}",
                    e.show()
                ))
            })?
            .read1()
            .map_err(|e| DaemonError::Protocol(format!("GetConnectionUnixUser reply: {e}")))?;
        if uid != self.args.bus_uid {
            self.log.alert(&format!(
                "{BUS_NAME} on {bus} is owned by {daemon} running as uid {uid}, not uid {}: \
                 an impostor or a misconfigured bus; not trusted, login refused",
                self.args.bus_uid
            ));
            return Err(DaemonError::WrongOwner { uid });
        }
        self.log.debug(&format!(
            "connected to {bus}; {BUS_NAME} is {daemon}, uid {uid}"
        ));
        Ok(Connected { channel, daemon })
    }

    /// The unique name owning [`BUS_NAME`], asking the bus to start the daemon (D-Bus
    /// activation) if nobody owns it yet.
    fn name_owner(&self, channel: &Channel) -> Result<String, DaemonError> {
        let unreachable =
            |what: &str, e: &CallError| DaemonError::Unreachable(format!("{what}: {}", e.show()));
        match self.get_name_owner(channel) {
            Ok(owner) => Ok(owner),
            Err(CallError::Reply { name, .. }) if name == NAME_HAS_NO_OWNER => {
                self.log.debug(&format!(
                    "{BUS_NAME} has no owner; asking the bus to start it"
                ));
                let start = method(DBUS_NAME, DBUS_PATH, DBUS_INTERFACE, "StartServiceByName")?
                    .append2(BUS_NAME, 0u32);
                self.call(channel, DBUS_NAME, start).map_err(|e| {
                    unreachable("twostepd is not running and could not be started", &e)
                })?;
                self.get_name_owner(channel)
                    .map_err(|e| unreachable("twostepd was started but owns no name", &e))
            }
            Err(e) => Err(unreachable("cannot resolve the daemon's bus name", &e)),
        }
    }

    fn get_name_owner(&self, channel: &Channel) -> Result<String, CallError> {
        let failed = |message: &str| CallError::Reply {
            name: String::new(),
            message: message.into(),
        };
        let query = method(DBUS_NAME, DBUS_PATH, DBUS_INTERFACE, "GetNameOwner")
            .map_err(|_| failed("cannot build GetNameOwner"))?
            .append1(BUS_NAME);
        let owner: String = self
            .call(channel, DBUS_NAME, query)?
            .read1()
            .map_err(|_| failed("GetNameOwner reply is not a string"))?;
        // A unique name, and one libdbus will accept as a destination.
        if owner.starts_with(':') && BusName::new(owner.as_str()).is_ok() {
            Ok(owner)
        } else {
            Err(failed("GetNameOwner returned no unique name"))
        }
    }

    /// Sends `msg` and waits, at most `timeout=`, for the reply to it from `sender`.
    ///
    /// No bus work happens between calls; while the user types, the connection sits idle and
    /// whatever arrives (signals) waits in libdbus's queue until the next call drops it.
    fn call(&self, channel: &Channel, sender: &str, msg: Message) -> Result<Message, CallError> {
        let deadline = Instant::now() + self.args.timeout;
        // Queues the message and writes what it can without blocking.
        let serial = channel.send(msg).map_err(|()| CallError::Disconnected)?;
        loop {
            while let Some(mut reply) = channel.pop_message() {
                let is_reply = matches!(
                    reply.msg_type(),
                    MessageType::MethodReturn | MessageType::Error
                );
                if !is_reply || reply.get_reply_serial() != Some(serial) {
                    // A signal such as NameAcquired, or a late reply to nothing we wait for.
                    continue;
                }
                let from = reply.sender().map(|s| s.to_string());
                if from.as_deref() != Some(sender) {
                    self.log.alert(&format!(
                        "dropped a forged reply to call {serial}: it came from {}, not {sender}",
                        Field(from.as_deref())
                    ));
                    continue;
                }
                if let Err(e) = reply.as_result() {
                    return Err(CallError::Reply {
                        name: e.name().unwrap_or("").into(),
                        message: e.message().unwrap_or("").into(),
                    });
                }
                return Ok(reply);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CallError::Timeout);
            }
            // One bounded round of I/O: authentication, writing, reading.
            if channel.read_write(Some(left)).is_err() || !channel.is_connected() {
                return Err(CallError::Disconnected);
            }
        }
    }

    /// Sends one `org.twostep.Login1` call to the checked unique name.
    fn login_call(
        &self,
        member: &str,
        build: impl FnOnce(Message) -> Message,
    ) -> Result<Message, DaemonError> {
        let conn = self.connected()?;
        let msg = build(method(&conn.daemon, OBJECT_PATH, LOGIN_INTERFACE, member)?);
        self.log.debug(&format!("calling {member}"));
        self.call(&conn.channel, &conn.daemon, msg).map_err(|e| {
            self.log.debug(&format!("{member} failed: {}", e.show()));
            e.classify()
        })
    }

    fn decoded(&self, step: Result<Step, twostep_proto::UnknownStep>) -> Result<Step, DaemonError> {
        let step = step.map_err(|e| DaemonError::Protocol(e.to_string()))?;
        self.log.debug(&format!("step: {}", describe_step(&step)));
        Ok(step)
    }
}

impl Daemon for BusDaemon<'_> {
    fn begin(&self, user: &str, ctx: &LoginContext) -> Result<(Session, Step), DaemonError> {
        let entries = ctx.entries();
        let reply = self.login_call(login::BEGIN, |m| {
            m.append2(user, Dict::new(entries.iter().copied()))
        })?;
        let (session, kind, message, prompt, digits) = reply
            .read5::<String, String, String, String, u32>()
            .map_err(|e| DaemonError::Protocol(format!("Begin reply: {e}")))?;
        let step = self.decoded(Step::from_wire((kind, message, prompt, digits)))?;
        let session = Session::for_first_step(session, &step).ok_or_else(|| {
            DaemonError::Protocol("Begin reply: session token missing or over-long".into())
        })?;
        Ok((session, step))
    }

    fn answer(&self, session: &Session, answer: &Answer) -> Result<Step, DaemonError> {
        if self.conn.get().is_none() {
            return Err(DaemonError::Protocol("Answer before Begin".into()));
        }
        // The answer is copied into libdbus's message buffer, which libdbus frees without
        // wiping; it lives there only until the call returns.
        let reply = self.login_call(login::ANSWER, |m| {
            m.append2(session.as_str(), answer.as_bytes())
        })?;
        let wire = reply
            .read4::<String, String, String, u32>()
            .map_err(|e| DaemonError::Protocol(format!("Answer reply: {e}")))?;
        self.decoded(Step::from_wire(wire))
    }
}

/// A method call built from validated names (the `From<&str>` conversions would panic on a
/// malformed name).
fn method(dest: &str, path: &str, iface: &str, member: &str) -> Result<Message, DaemonError> {
    let bad = |what: &str, e: String| DaemonError::Protocol(format!("bad {what}: {e}"));
    let dest = BusName::new(dest).map_err(|e| bad("bus name", e))?;
    let path = Path::new(path).map_err(|e| bad("object path", e))?;
    let iface = Interface::new(iface).map_err(|e| bad("interface", e))?;
    let member = Member::new(member).map_err(|e| bad("member", e))?;
    Message::new_method_call(dest, path, iface, member).map_err(|e| bad("message", e))
}

/// A D-Bus error reply to a login call, by name. Pure, so it is table-tested.
fn classify(name: &str, message: &str) -> DaemonError {
    if let Some(ours) = ErrorName::from_dbus(name) {
        return DaemonError::Refused(ours);
    }
    let text = format!("{name}: {}", Field(Some(message)));
    if name
        .strip_prefix(ERROR_PREFIX)
        .is_some_and(|rest| rest.starts_with('.'))
    {
        DaemonError::Protocol(format!("unknown daemon error {text}"))
    } else if TRANSPORT_ERRORS.contains(&name) {
        DaemonError::Unreachable(text)
    } else {
        DaemonError::Protocol(text)
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
    use crate::flow::Reply;
    use twostep_proto::error_name;

    #[test]
    fn error_replies_by_name() {
        let refused = |n| DaemonError::Refused(n);
        let cases = [
            (error_name::ACCESS_DENIED, refused(ErrorName::AccessDenied)),
            (error_name::UNKNOWN_USER, refused(ErrorName::UnknownUser)),
            (
                error_name::INVALID_ARGUMENT,
                refused(ErrorName::InvalidArgument),
            ),
            (error_name::UNAVAILABLE, refused(ErrorName::Unavailable)),
            (error_name::NO_SESSION, refused(ErrorName::NoSession)),
            (error_name::BUSY, refused(ErrorName::Busy)),
            (error_name::NOT_ENROLLED, refused(ErrorName::NotEnrolled)),
            (
                error_name::NO_PENDING_ENROLLMENT,
                refused(ErrorName::NoPendingEnrollment),
            ),
            (error_name::WRONG_CODE, refused(ErrorName::WrongCode)),
            (error_name::LOCKED, refused(ErrorName::Locked)),
        ];
        for (name, want) in cases {
            assert_eq!(classify(name, "m"), want, "{name}");
        }
    }

    #[test]
    fn transport_errors_are_unreachable_and_the_rest_fails_closed() {
        for name in TRANSPORT_ERRORS {
            assert!(
                matches!(classify(name, "m"), DaemonError::Unreachable(_)),
                "{name}"
            );
        }
        for name in [
            "org.twostep.Error.SomethingNew",
            "org.twostep.ErrorX",
            "org.freedesktop.DBus.Error.AccessDenied",
            "org.freedesktop.DBus.Error.UnknownMethod",
            "org.freedesktop.DBus.Error.UnknownObject",
            "org.freedesktop.DBus.Error.InvalidArgs",
            "org.freedesktop.DBus.Error.Failed",
            "org.freedesktop.DBus.Error.LimitsExceeded",
            "",
        ] {
            assert!(
                matches!(classify(name, "m"), DaemonError::Protocol(_)),
                "{name}"
            );
        }
    }

    #[test]
    fn error_text_is_escaped() {
        let DaemonError::Protocol(text) = classify("x.y.Z", "a\nforged line") else {
            panic!("not a protocol error");
        };
        assert!(!text.contains('\n'), "{text}");
    }

    #[test]
    fn method_calls_are_built_without_panics() {
        assert!(method(DBUS_NAME, DBUS_PATH, DBUS_INTERFACE, "Hello").is_ok());
        assert!(method(":1.42", OBJECT_PATH, LOGIN_INTERFACE, login::BEGIN).is_ok());
        assert!(matches!(
            method("not a name", OBJECT_PATH, LOGIN_INTERFACE, login::BEGIN),
            Err(DaemonError::Protocol(_))
        ));
        assert!(matches!(
            method(":1.42", "relative", LOGIN_INTERFACE, login::BEGIN),
            Err(DaemonError::Protocol(_))
        ));
    }

    #[test]
    fn nothing_is_sent_before_begin() {
        let args = ModuleArgs {
            bus: "unix:path=/nonexistent/twostep-test".into(),
            ..ModuleArgs::default()
        };
        let log = Log::new(false);
        let daemon = BusDaemon::new(&args, &log);
        let Reply::Answer(answer) = Reply::from_bytes(Some(b"123456")) else {
            panic!("no answer");
        };
        let session = Session::new("s".into()).unwrap();
        assert!(matches!(
            daemon.answer(&session, &answer),
            Err(DaemonError::Protocol(_))
        ));
    }

    #[test]
    fn a_missing_socket_is_unreachable() {
        let args = ModuleArgs {
            bus: "unix:path=/nonexistent/twostep-test".into(),
            ..ModuleArgs::default()
        };
        let log = Log::new(false);
        let daemon = BusDaemon::new(&args, &log);
        let got = daemon.begin("alice", &LoginContext::default());
        assert!(matches!(got, Err(DaemonError::Unreachable(_))));
    }
}
