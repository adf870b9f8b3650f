// SPDX-License-Identifier: MIT OR Apache-2.0
//! [`BusDaemon`]: the [`Daemon`] trait over D-Bus, with rustbus for the messages.
//!
//! One connection per call of the module, opened on `Begin` and closed when the
//! `BusDaemon` drops: to the daemon's login socket if it is there, else to exactly the
//! `bus=` address. Every phase is bounded by `timeout=`: neither the bus nor the socket
//! ever times a reply out.
//!
//! # The login socket (peer to peer)
//!
//! First the module connects to the login socket (`socket=`, default
//! [`twostep_proto::LOGIN_SOCKET`]; never from the environment), where twostepd serves the
//! login interfaces peer to peer, as systemd serves root clients on `/run/systemd/private`.
//! Trust rests on the kernel, as on the bus:
//! - the listener's uid is read from the connected socket (`SO_PEERCRED`: the uid of the
//!   process that called `listen`, recorded by the kernel, nothing the peer can say) and
//!   must be `bus_uid=` (0); checked after `connect`, on the very connection used, so there
//!   is no window between check and use. A socket served by anyone else is an impostor:
//!   logged at alert, nothing is sent to it (the user name included), the login fails
//!   closed, and the bus is **not** tried (an attacker able to place a socket there could
//!   otherwise choose which path the module takes);
//! - defence in depth: the socket's directory must be owned by `bus_uid` and not writable by
//!   group or others (else someone else could put a socket there next time);
//! - then SASL `AUTH EXTERNAL` (the effective uid, which twostepd's zbus checks against its
//!   own `SO_PEERCRED`) + `BEGIN` + `Login2.Begin` go out together: one round trip, no
//!   `Hello`, no names, no owner look-up (messages on a peer-to-peer connection carry no
//!   sender; the only peer is the daemon whose uid was checked). The daemon identifies the
//!   caller from its side of the same socket.
//!
//! Only `connect` failing with `ENOENT` (no socket) or `ECONNREFUSED` (a stale socket
//! nobody listens on) falls back to the bus: the daemon is then positively not serving
//! there, and the bus is where it would be. Every other failure — another errno (`EACCES`,
//! `EAGAIN`, …), a wrong listener uid, an unsafe directory, a refused authentication, a
//! hang-up or a timeout — fails closed exactly like a daemon failing on the bus.
//!
//! # The bus
//!
//! The daemon's well-known name is resolved to its unique name and the uid owning that name
//! is checked before any reply of the daemon is used and before an answer is sent; every
//! login call goes to the unique name, so a name that changes hands mid-login cannot take
//! over the conversation (unique names are never reused on a bus).
//!
//! Round trips after `connect`; the calls of one round trip are written together:
//! 1. SASL `AUTH EXTERNAL` + `BEGIN` + `Hello` + `GetNameOwner(BUS_NAME)`: the bus answers
//!    `OK`, then the two replies. (Pipelining the authentication like this is what sd-bus
//!    does; dbus-daemon and dbus-broker keep the bytes after `BEGIN` as the first messages.
//!    A bus that refuses the authentication closes the connection or answers something
//!    other than `OK`, and the login fails closed.) When nobody owns the name yet:
//!    `StartServiceByName`, then `GetNameOwner` again, one round trip each;
//! 2. `GetConnectionUnixUser(owner)` + `Login2.Begin` sent to the owner: Begin's reply is
//!    looked at only after the uid check has passed, and dropped unread if it fails. Begin
//!    carries the user name and the login context, never an answer. A daemon older than
//!    `Login2` answers `UnknownInterface` (or `UnknownMethod`): then, and only when that
//!    error comes from the checked owner, one more round trip calls `Login1.Begin`, and the
//!    conversation stays on `Login1` (see [`Version`]);
//! 3. one round trip per `Answer`, on the interface Begin used.
//!
//! The bytes — socket, SASL, framing — move in [`conn`]; this file decides whom to trust:
//! the listener and owner checks, the calls and the routing of replies.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Instant;

use rustbus::message_builder::{MarshalledMessage, MessageBodyParser, MessageBuilder, MessageType};
use rustbus::params::validate_object_path;
use rustbus::params::{validate_busname, validate_interface, validate_membername};
use rustbus::wire::errors::UnmarshalError;
use twostep_proto::{
    login, Step, UnknownStep, BUS_NAME, ERROR_PREFIX, LOGIN2_INTERFACE, LOGIN_INTERFACE,
    OBJECT_PATH,
};

use crate::args::ModuleArgs;
use crate::flow::{
    describe_step, Absence, Answer, BeginError, Daemon, DaemonError, ErrorName, LoginContext,
    Session,
};
use crate::log::{Field, Log};

mod conn;
#[doc(hidden)]
pub mod fuzzing;
use conn::{Conn, OpenError};

const DBUS_NAME: &str = "org.freedesktop.DBus";
const DBUS_PATH: &str = "/org/freedesktop/DBus";
const DBUS_INTERFACE: &str = "org.freedesktop.DBus";
const NAME_HAS_NO_OWNER: &str = "org.freedesktop.DBus.Error.NameHasNoOwner";
/// The bus driver's answer to `StartServiceByName` for a name nothing can start.
const SERVICE_UNKNOWN: &str = "org.freedesktop.DBus.Error.ServiceUnknown";
/// What a D-Bus server answers for an interface or method it does not serve: from the
/// checked owner in reply to `Login2.Begin`, "a daemon older than Login2".
const NOT_SERVED: [&str; 2] = [
    "org.freedesktop.DBus.Error.UnknownInterface",
    "org.freedesktop.DBus.Error.UnknownMethod",
];

/// The login interface one connection speaks.
///
/// Why fall back rather than fail closed on a daemon without `Login2`: the module and the
/// daemon are upgraded separately (two packages, fleets), and failing closed would lock
/// every login out between the two upgrades, `sudo` included. The fallback gives an old
/// daemon nothing it did not have: `Login1` carries a subset of the same steps, decoded as
/// strictly as before; the verdicts mean the same; and only the owner whose uid was checked
/// can trigger it (an error from anyone else is not taken as its reply, see [`route`]). It
/// is logged at notice level on every login, so a half-done upgrade is visible.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Version {
    Login2,
    Login1,
}

impl Version {
    fn interface(self) -> &'static str {
        match self {
            Version::Login2 => LOGIN2_INTERFACE,
            Version::Login1 => LOGIN_INTERFACE,
        }
    }
}

/// Transport error names. From whatever owns the daemon's name, in reply to a login call,
/// they mean "no usable answer": [`DaemonError::Unanswered`], which fails closed like any
/// other error name (a name's owner that says "no reply" has replied; only the bus driver
/// can say the daemon is not there, see [`Absence`]). Any other name that is not one of the
/// daemon's own is a protocol error.
const UNANSWERED_ERRORS: [&str; 9] = [
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
    /// An error reply from the one sender the call waits for (the bus driver for the
    /// bus's own methods, the daemon's unique name for login calls): its name and message.
    Reply { name: String, message: String },
    /// An error from the bus driver about a call to another peer: it could not be
    /// delivered (the daemon's connection is gone, a policy refused it, …).
    Bus { name: String, message: String },
    /// Bytes that are not a D-Bus message (or not an `OK` from SASL), or a message this
    /// module cannot build.
    Malformed(String),
}

impl CallError {
    /// The owner's "I do not serve that interface / method".
    fn says_not_served(&self) -> bool {
        matches!(self, CallError::Reply { name, .. } if NOT_SERVED.contains(&name.as_str()))
    }
}

impl CallError {
    /// For a log line, escaped.
    fn show(&self) -> String {
        match self {
            CallError::Timeout => "no reply within timeout=".into(),
            CallError::Disconnected => "disconnected".into(),
            CallError::Reply { name, message } => format!("{name} {}", Field(Some(message))),
            CallError::Bus { name, message } => {
                format!("the bus answered {name} {}", Field(Some(message)))
            }
            CallError::Malformed(why) => format!("malformed: {}", Field(Some(why))),
        }
    }

    /// A failed login call, as the flow sees it: never an [`Absence`] (the call was sent).
    fn classify(&self) -> DaemonError {
        match self {
            CallError::Timeout | CallError::Disconnected | CallError::Bus { .. } => {
                DaemonError::Unanswered(self.show())
            }
            CallError::Reply { name, message } => classify(name, message),
            CallError::Malformed(_) => DaemonError::Protocol(self.show()),
        }
    }

    /// The bus driver's answer to `GetNameOwner`: "nobody owns that name". (Replies to the
    /// bus's own methods are taken from the sender `org.freedesktop.DBus` only, see
    /// [`route`], so this is the driver speaking.)
    fn says_no_owner(&self) -> bool {
        matches!(self, CallError::Reply { name, .. } if name == NAME_HAS_NO_OWNER)
    }
}

/// twostepd, reached over the bus named by the module arguments.
pub struct BusDaemon<'a> {
    args: &'a ModuleArgs,
    log: &'a Log,
    conn: RefCell<Option<Connected>>,
}

/// A new connection and the result of its first `Login2.Begin` (not yet looked at).
type Begun = (Connected, Result<MarshalledMessage, CallError>);

/// A connection, whom its login calls go to and the login interface it speaks.
struct Connected {
    conn: Conn,
    /// On the bus: the daemon's checked unique name, the destination of every login call
    /// and the only sender of their replies. `None` on the login socket: the peer is the
    /// daemon (its uid checked at connect), messages carry no names.
    daemon: Option<String>,
    version: Version,
}

impl<'a> BusDaemon<'a> {
    /// No I/O yet: the connection is opened by the first [`Daemon::begin`].
    pub fn new(args: &'a ModuleArgs, log: &'a Log) -> BusDaemon<'a> {
        BusDaemon {
            args,
            log,
            conn: RefCell::new(None),
        }
    }

    /// Round trips 1 and 2: connects, registers, resolves and checks the daemon, and returns
    /// the connection with the result of `Login2.Begin` (not yet looked at).
    ///
    /// [`BeginError::Absent`] comes from two places only, both before Begin is sent:
    /// [`Conn::open`] (`ENOENT`, `ECONNREFUSED` from `connect`) and [`Self::register`] (the
    /// bus driver's `NameHasNoOwner`). Everything from [`Self::checked_begin`] on is a
    /// [`DaemonError`].
    fn connect_and_begin(&self, user: &str, ctx: &LoginContext) -> Result<Begun, BeginError> {
        if let Some(path) = &self.args.socket {
            if let Some(direct) = self.direct_begin(path, user, ctx)? {
                return Ok(direct);
            }
        }
        let bus = &self.args.bus;
        let path = bus.strip_prefix("unix:path=").ok_or_else(|| {
            DaemonError::Protocol(format!(
                "bus address {} is not unix:path=",
                Field(Some(bus))
            ))
        })?;
        // One timeout= for connecting, authenticating and registering, as when libdbus did
        // its handshake inside the time of the Hello call.
        let deadline = Instant::now() + self.args.timeout;
        let mut conn = Conn::open(path, deadline).map_err(|e| match e {
            OpenError::Absent(why) => {
                self.log
                    .debug(&format!("cannot connect to {bus}: {}", why.describe()));
                BeginError::Absent(why)
            }
            OpenError::Failed(why) => {
                DaemonError::Unanswered(format!("cannot connect to {bus}: {why}")).into()
            }
        })?;
        let daemon = self.register(&mut conn, deadline)?;
        let begun = self.checked_begin(&mut conn, &daemon, user, ctx)?;
        let connected = Connected {
            conn,
            daemon: Some(daemon),
            version: Version::Login2,
        };
        Ok((connected, begun))
    }

    /// The login socket at `path`, peer to peer: connect, check who listens, then SASL
    /// `AUTH EXTERNAL` + `BEGIN` + `Login2.Begin` in one round trip (no `Hello`, no names).
    ///
    /// `Ok(None)` only when `connect` fails with `ENOENT` or `ECONNREFUSED` (no socket,
    /// or a stale one nobody listens on): then, and only then, the bus is used. Any other
    /// failure fails closed like the daemon failing on the bus: a listener that is not
    /// `bus_uid` ([`DaemonError::WrongOwner`]; its reply is never read, Begin is never
    /// sent to it), a directory of the socket that is not `bus_uid`'s alone, a refused
    /// authentication, a timeout.
    fn direct_begin(
        &self,
        path: &str,
        user: &str,
        ctx: &LoginContext,
    ) -> Result<Option<Begun>, BeginError> {
        let deadline = Instant::now() + self.args.timeout;
        let mut conn = match Conn::open(path, deadline) {
            Ok(conn) => conn,
            Err(OpenError::Absent(why)) => {
                self.log.debug(&format!(
                    "no login socket at {path} ({}); using the bus",
                    why.describe()
                ));
                return Ok(None);
            }
            Err(OpenError::Failed(why)) => {
                return Err(
                    DaemonError::Unanswered(format!("cannot connect to {path}: {why}")).into(),
                )
            }
        };
        let want = self.args.bus_uid;
        let uid = conn
            .peer_uid()
            .map_err(|why| DaemonError::Unanswered(format!("{path}: {why}")))?;
        if uid != want {
            self.log.alert(&format!(
                "the login socket {path} is served by uid {uid}, not uid {want}: an impostor                  or a misconfiguration; not trusted, login refused"
            ));
            return Err(DaemonError::WrongOwner { uid }.into());
        }
        if let Err(why) = safe_socket_dir(path, want) {
            self.log.alert(&format!(
                "the login socket {path} is in an unsafe directory ({why}); not trusted,                  login refused"
            ));
            return Err(DaemonError::Unanswered(format!("{path}: {why}")).into());
        }
        self.log
            .debug(&format!("connected to {path}, served by uid {uid}"));
        let begin = begin_call(None, Version::Login2, user, ctx)?;
        self.log
            .debug(&format!("calling {LOGIN2_INTERFACE}.{}", login::BEGIN));
        let begun = self.call(&mut conn, &begin, None);
        let connected = Connected {
            conn,
            daemon: None,
            version: Version::Login2,
        };
        Ok(Some((connected, begun)))
    }

    /// Round trip 1: SASL, `Hello` and `GetNameOwner` together; the unique name owning
    /// [`BUS_NAME`], asking the bus to start the daemon (D-Bus activation) if nobody owns it.
    ///
    /// # Errors
    /// [`BeginError::Absent`] ([`Absence::NoOwner`]) only when the bus driver says the name
    /// has no owner, also after the start was asked for; every other failure (no `OK`, a
    /// hang-up, a timeout, an error other than `NameHasNoOwner`) fails closed.
    fn register(&self, conn: &mut Conn, deadline: Instant) -> Result<String, BeginError> {
        let bus = &self.args.bus;
        let unregistered = |e: &CallError| {
            DaemonError::Unanswered(format!("cannot register on {bus}: {}", e.show()))
        };
        let unresolved = |e: &CallError| {
            DaemonError::Unanswered(format!(
                "cannot resolve the daemon's bus name: {}",
                e.show()
            ))
        };
        // Why Hello by hand: the bus must see it first, and its reply (our unique name) is
        // of no use to the module.
        let hello = bus_method("Hello")?;
        let query = name_owner_query()?;
        let [hello_serial, query_serial] = conn
            .send([&hello, &query], deadline)
            .map_err(|e| unregistered(&e))?;
        let mut pending = vec![Pending::bus(hello_serial), Pending::bus(query_serial)];
        let mut owner = None;
        while !pending.is_empty() {
            let registered = !pending.iter().any(|p| p.serial == hello_serial);
            let (serial, result) = match conn.next_reply(&mut pending, deadline, self.log) {
                Ok(got) => got,
                Err(e) if registered => return Err(unresolved(&e).into()),
                Err(e) => return Err(unregistered(&e).into()),
            };
            if serial == hello_serial {
                result.map_err(|e| unregistered(&e))?;
            } else {
                owner = Some(result);
            }
        }
        let owner = owner
            .ok_or_else(|| DaemonError::Protocol("no reply to GetNameOwner".into()))?
            .and_then(|reply| unique_owner(&reply));
        match owner {
            Ok(owner) => Ok(owner),
            Err(e) if e.says_no_owner() => self.start_and_resolve(conn),
            Err(e) => Err(unresolved(&e).into()),
        }
    }

    /// After the bus driver said nobody owns [`BUS_NAME`]: `StartServiceByName`, then
    /// `GetNameOwner` again, one round trip each.
    ///
    /// Only a daemon the bus cannot start at all — the driver answers `ServiceUnknown`: no
    /// activation file — is absent. A daemon that is activatable but fails to start (it
    /// exits: `Spawn.ChildExited`; it hangs: `TimedOut`; a limit or a policy refuses the
    /// start), or that was started and then does not own its name, is a broken daemon, not
    /// a missing one, and fails closed whatever `failmode=` says: refusing to start is how
    /// twostepd refuses an unsafe configuration.
    fn start_and_resolve(&self, conn: &mut Conn) -> Result<String, BeginError> {
        self.log.debug(&format!(
            "{BUS_NAME} has no owner; asking the bus to start it"
        ));
        let mut start = bus_method("StartServiceByName")?;
        start
            .body
            .push_param2(BUS_NAME, 0u32)
            .map_err(|e| DaemonError::Protocol(format!("StartServiceByName: {e}")))?;
        match self.call(conn, &start, Some(DBUS_NAME)) {
            // Started, or started by someone else meanwhile: it must own its name now.
            Ok(_) => {}
            // Only the bus driver's replies reach here (`call` routes by sender).
            Err(CallError::Reply { name, .. }) if name == SERVICE_UNKNOWN => {
                return Err(BeginError::Absent(Absence::NoOwner))
            }
            Err(e) => {
                return Err(DaemonError::Unanswered(format!(
                    "the bus could not start twostepd: {}",
                    e.show()
                ))
                .into())
            }
        }
        self.call(conn, &name_owner_query()?, Some(DBUS_NAME))
            .and_then(|reply| unique_owner(&reply))
            .map_err(|e| {
                DaemonError::Unanswered(format!(
                    "twostepd was started but does not own its name (it exited or hangs): {}",
                    e.show()
                ))
                .into()
            })
    }

    /// Round trip 2: `GetConnectionUnixUser(daemon)` and `Login2.Begin` to `daemon`,
    /// together. Returns Begin's result (a reply or the owner's error, for
    /// [`Self::begin`] to judge) only once the owner's uid has been checked.
    fn checked_begin(
        &self,
        conn: &mut Conn,
        daemon: &str,
        user: &str,
        ctx: &LoginContext,
    ) -> Result<Result<MarshalledMessage, CallError>, DaemonError> {
        let bus = &self.args.bus;
        let unasked = |e: &CallError| {
            DaemonError::Unanswered(format!(
                "cannot ask the bus who owns {BUS_NAME}: {}",
                e.show()
            ))
        };
        let mut query = bus_method("GetConnectionUnixUser")?;
        query
            .body
            .push_param(daemon)
            .map_err(|e| DaemonError::Protocol(format!("GetConnectionUnixUser: {e}")))?;
        let begin = begin_call(Some(daemon), Version::Login2, user, ctx)?;
        self.log
            .debug(&format!("calling {LOGIN2_INTERFACE}.{}", login::BEGIN));
        let deadline = Instant::now() + self.args.timeout;
        let [uid_serial, begin_serial] = conn
            .send([&query, &begin], deadline)
            .map_err(|e| unasked(&e))?;
        let mut pending = vec![Pending::bus(uid_serial), Pending::to(begin_serial, daemon)];
        let mut checked = false;
        let mut begun = None;
        while !pending.is_empty() {
            let (serial, result) = match conn.next_reply(&mut pending, deadline, self.log) {
                Ok(got) => got,
                Err(e) if !checked => return Err(unasked(&e)),
                Err(e) => return Err(self.failed(login::BEGIN, &e)),
            };
            if serial == uid_serial {
                let uid = result
                    .map_err(|e| unasked(&e))?
                    .body
                    .parser()
                    .get::<u32>()
                    .map_err(|e| {
                        DaemonError::Protocol(format!("GetConnectionUnixUser reply: {e}"))
                    })?;
                if uid != self.args.bus_uid {
                    // Begin's reply, here or still on its way, is dropped unread.
                    self.log.alert(&format!(
                        "{BUS_NAME} on {bus} is owned by {daemon} running as uid {uid}, not uid \
                         {}: an impostor or a misconfigured bus; not trusted, login refused",
                        self.args.bus_uid
                    ));
                    return Err(DaemonError::WrongOwner { uid });
                }
                self.log.debug(&format!(
                    "connected to {bus}; {BUS_NAME} is {daemon}, uid {uid}"
                ));
                checked = true;
            } else {
                // Kept unread until the uid check above has passed.
                begun = Some(result);
            }
        }
        match (checked, begun) {
            (true, Some(result)) => Ok(result),
            _ => Err(DaemonError::Protocol("Begin: replies missing".into())),
        }
    }

    /// Sends one call and waits, at most `timeout=`, for its reply from `sender`.
    ///
    /// No bus work happens between calls: while the user types, the connection sits idle
    /// and whatever arrives (signals) waits in the socket until the next call drops it.
    fn call(
        &self,
        conn: &mut Conn,
        msg: &MarshalledMessage,
        sender: Option<&str>,
    ) -> Result<MarshalledMessage, CallError> {
        let deadline = Instant::now() + self.args.timeout;
        let [serial] = conn.send([msg], deadline)?;
        let mut pending = vec![Pending::from(serial, sender)];
        let (_, result) = conn.next_reply(&mut pending, deadline, self.log)?;
        result
    }

    /// A failed login call: logged (debug) and classified.
    fn failed(&self, member: &str, e: &CallError) -> DaemonError {
        self.log.debug(&format!("{member} failed: {}", e.show()));
        e.classify()
    }

    fn decoded(&self, step: Result<Step, UnknownStep>) -> Result<Step, DaemonError> {
        let step = step.map_err(|e| DaemonError::Protocol(e.to_string()))?;
        self.log.debug(&format!("step: {}", describe_step(&step)));
        Ok(step)
    }
}

impl Daemon for BusDaemon<'_> {
    fn begin(&self, user: &str, ctx: &LoginContext) -> Result<(Session, Step), BeginError> {
        let mut slot = self
            .conn
            .try_borrow_mut()
            .map_err(|_| DaemonError::Protocol("Begin while a call is running".into()))?;
        let result = match slot.as_mut() {
            // A second Begin on the same connection: the owner is checked already, and its
            // interface known.
            Some(c) => {
                let begin = begin_call(c.daemon.as_deref(), c.version, user, ctx)?;
                self.log.debug(&format!(
                    "calling {}.{}",
                    c.version.interface(),
                    login::BEGIN
                ));
                self.call(&mut c.conn, &begin, c.daemon.as_deref())
            }
            None => {
                let (connected, result) = self.connect_and_begin(user, ctx)?;
                *slot = Some(connected);
                result
            }
        };
        let Some(c) = slot.as_mut() else {
            return Err(DaemonError::Protocol("Begin without a connection".into()).into());
        };
        let result = match result {
            // Only the checked owner's own error reply gets here (route): an old daemon.
            Err(e) if c.version == Version::Login2 && e.says_not_served() => {
                self.log.notice(&format!(
                    "twostepd does not serve {LOGIN2_INTERFACE} ({}): a daemon older than this \
                     module; using {LOGIN_INTERFACE}. Upgrade twostepd.",
                    e.show()
                ));
                c.version = Version::Login1;
                let begin = begin_call(c.daemon.as_deref(), Version::Login1, user, ctx)?;
                self.log
                    .debug(&format!("calling {LOGIN_INTERFACE}.{}", login::BEGIN));
                self.call(&mut c.conn, &begin, c.daemon.as_deref())
            }
            other => other,
        };
        let reply = result.map_err(|e| self.failed(login::BEGIN, &e))?;
        expect_signature(&reply, c.version, login::BEGIN)?;
        let mut parser = reply.body.parser();
        let session = parser
            .get::<String>()
            .map_err(|e| DaemonError::Protocol(format!("Begin reply: {e}")))?;
        let step = self.decoded(read_step(&mut parser, c.version, login::BEGIN)?)?;
        let session = Session::for_first_step(session, &step).ok_or_else(|| {
            DaemonError::Protocol("Begin reply: session token missing or over-long".into())
        })?;
        Ok((session, step))
    }

    fn answer(&self, session: &Session, answer: &Answer) -> Result<Step, DaemonError> {
        let mut slot = self
            .conn
            .try_borrow_mut()
            .map_err(|_| DaemonError::Protocol("Answer while a call is running".into()))?;
        let Some(c) = slot.as_mut() else {
            return Err(DaemonError::Protocol("Answer before Begin".into()));
        };
        let mut msg = login_method(c.daemon.as_deref(), c.version, login::ANSWER)?;
        // Room for everything up front, so the buffer holding the answer never moves (a
        // move would leave an unwiped copy behind).
        msg.body
            .reserve(64 + session.as_str().len() + answer.as_bytes().len());
        let pushed = msg.body.push_param2(session.as_str(), answer.as_bytes());
        let reply = match pushed {
            Ok(()) => {
                self.log.debug(&format!(
                    "calling {}.{}",
                    c.version.interface(),
                    login::ANSWER
                ));
                self.call(&mut c.conn, &msg, c.daemon.as_deref())
            }
            Err(e) => Err(CallError::Malformed(format!("cannot build Answer: {e}"))),
        };
        wipe_body(&mut msg);
        drop(msg);
        let reply = reply.map_err(|e| self.failed(login::ANSWER, &e))?;
        expect_signature(&reply, c.version, login::ANSWER)?;
        let step = read_step(&mut reply.body.parser(), c.version, login::ANSWER)?;
        self.decoded(step)
    }
}

/// Routing replies is deciding whom to trust, so it lives here, not with the bytes.
impl Conn {
    /// Reads until one of the `pending` calls has its reply, takes that call out of
    /// `pending` and returns its serial with the reply. Signals and replies to nothing
    /// pending are dropped; a reply to a pending serial from another sender is a forgery:
    /// dropped and logged (an error from the bus driver about a call to the daemon is not:
    /// see [`route`]).
    fn next_reply(
        &mut self,
        pending: &mut Vec<Pending>,
        deadline: Instant,
        log: &Log,
    ) -> Result<(u32, Result<MarshalledMessage, CallError>), CallError> {
        loop {
            let msg = self.read_message(deadline)?;
            match route(&msg, pending) {
                Route::Drop => {}
                Route::Forged { serial, expected } => log.alert(&format!(
                    "dropped a forged reply to call {serial}: it came from {}, not {expected}",
                    Field(msg.dynheader.sender.as_deref())
                )),
                Route::Reply(serial) => {
                    pending.retain(|p| p.serial != serial);
                    return Ok((serial, reply_result(msg)));
                }
                Route::Bus(serial) => {
                    pending.retain(|p| p.serial != serial);
                    let (name, message) = match reply_result(msg) {
                        Err(CallError::Reply { name, message }) => (name, message),
                        _ => (String::new(), String::new()),
                    };
                    return Ok((serial, Err(CallError::Bus { name, message })));
                }
            }
        }
    }
}

/// A call this module waits for: its serial and who alone may answer it.
struct Pending {
    serial: u32,
    /// `None` on the login socket: the one peer, whose uid was checked at connect.
    sender: Option<String>,
}

impl Pending {
    fn bus(serial: u32) -> Pending {
        Pending::to(serial, DBUS_NAME)
    }

    fn to(serial: u32, sender: &str) -> Pending {
        Pending::from(serial, Some(sender))
    }

    fn from(serial: u32, sender: Option<&str>) -> Pending {
        Pending {
            serial,
            sender: sender.map(str::to_owned),
        }
    }
}

/// What to do with one incoming message.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// A signal (NameAcquired, …), a call, or a reply to nothing pending: dropped.
    Drop,
    /// A reply to a pending serial from another sender: dropped, and worth an alert.
    Forged { serial: u32, expected: String },
    /// The reply to the pending call with this serial.
    Reply(u32),
    /// An error from the bus driver about the pending call with this serial, which went
    /// to another peer: the bus could not deliver it. It ends that call (closed).
    Bus(u32),
}

/// Matches a message to the pending calls: by reply serial AND sender. Pure, table-tested.
///
/// Replies to the bus's own methods are taken from the bus driver only; replies to a login
/// call from the daemon's unique name only, or an *error* from the bus driver (which alone
/// can say the call was not delivered; it never answers for the daemon).
fn route(msg: &MarshalledMessage, pending: &[Pending]) -> Route {
    if !matches!(msg.typ, MessageType::Reply | MessageType::Error) {
        return Route::Drop;
    }
    let Some(serial) = msg.dynheader.response_serial else {
        return Route::Drop;
    };
    let Some(call) = pending.iter().find(|p| p.serial == serial) else {
        return Route::Drop;
    };
    let Some(expected) = call.sender.as_deref() else {
        // Peer to peer: nobody else is on the connection.
        return Route::Reply(serial);
    };
    let sender = msg.dynheader.sender.as_deref();
    if sender == Some(expected) {
        Route::Reply(serial)
    } else if sender == Some(DBUS_NAME) && msg.typ == MessageType::Error {
        Route::Bus(serial)
    } else {
        Route::Forged {
            serial,
            expected: expected.to_owned(),
        }
    }
}

/// An error reply as [`CallError::Reply`]; a method return as it is.
fn reply_result(msg: MarshalledMessage) -> Result<MarshalledMessage, CallError> {
    if msg.typ != MessageType::Error {
        return Ok(msg);
    }
    Err(CallError::Reply {
        name: msg.dynheader.error_name.clone().unwrap_or_default(),
        // The first argument of an error is its message, when it is a string.
        message: msg.body.parser().get::<String>().unwrap_or_default(),
    })
}

/// The unique name in a `GetNameOwner` reply.
fn unique_owner(reply: &MarshalledMessage) -> Result<String, CallError> {
    let failed = |message: &str| CallError::Reply {
        name: String::new(),
        message: message.into(),
    };
    let owner = reply
        .body
        .parser()
        .get::<String>()
        .map_err(|_| failed("GetNameOwner reply is not a string"))?;
    if owner.starts_with(':') && validate_busname(&owner).is_ok() {
        Ok(owner)
    } else {
        Err(failed("GetNameOwner returned no unique name"))
    }
}

/// A method call built from validated names (an invalid one would only fail later, when
/// the header is marshalled).
/// Without a `dest` on the login socket (peer to peer, messages carry no names).
fn method(
    dest: Option<&str>,
    path: &str,
    iface: &str,
    member: &str,
) -> Result<MarshalledMessage, DaemonError> {
    let bad = |what: &str, e: rustbus::params::validation::Error| {
        DaemonError::Protocol(format!("bad {what}: {e}"))
    };
    if let Some(dest) = dest {
        validate_busname(dest).map_err(|e| bad("bus name", e))?;
    }
    validate_object_path(path).map_err(|e| bad("object path", e))?;
    validate_interface(iface).map_err(|e| bad("interface", e))?;
    validate_membername(member).map_err(|e| bad("member", e))?;
    let call = MessageBuilder::new()
        .call(member)
        .with_interface(iface)
        .on(path);
    Ok(match dest {
        Some(dest) => call.at(dest).build(),
        None => call.build(),
    })
}

fn bus_method(member: &str) -> Result<MarshalledMessage, DaemonError> {
    method(Some(DBUS_NAME), DBUS_PATH, DBUS_INTERFACE, member)
}

fn login_method(
    daemon: Option<&str>,
    version: Version,
    member: &str,
) -> Result<MarshalledMessage, DaemonError> {
    method(daemon, OBJECT_PATH, version.interface(), member)
}

fn name_owner_query() -> Result<MarshalledMessage, DaemonError> {
    let mut query = bus_method("GetNameOwner")?;
    query
        .body
        .push_param(BUS_NAME)
        .map_err(|e| DaemonError::Protocol(format!("GetNameOwner: {e}")))?;
    Ok(query)
}

/// `Begin(s user, a{ss} context)` of `version` to the daemon's unique name (none on the
/// login socket).
fn begin_call(
    daemon: Option<&str>,
    version: Version,
    user: &str,
    ctx: &LoginContext,
) -> Result<MarshalledMessage, DaemonError> {
    let mut begin = login_method(daemon, version, login::BEGIN)?;
    let context: HashMap<&str, &str> = ctx.entries().into_iter().collect();
    begin
        .body
        .push_param2(user, context)
        .map_err(|e| DaemonError::Protocol(format!("Begin: {e}")))?;
    Ok(begin)
}

/// A reply of `member` has exactly the signature of `version`: nothing missing, nothing
/// added.
fn expect_signature(
    reply: &MarshalledMessage,
    version: Version,
    member: &str,
) -> Result<(), DaemonError> {
    let step = match version {
        Version::Login2 => "sssuub",
        Version::Login1 => "sssu",
    };
    let want = if member == login::BEGIN {
        format!("s{step}")
    } else {
        step.to_owned()
    };
    if reply.get_sig() == want {
        Ok(())
    } else {
        Err(DaemonError::Protocol(format!(
            "{member} reply of {}: signature {}, not {want}",
            version.interface(),
            Field(Some(reply.get_sig()))
        )))
    }
}

/// The step in a reply of `member` (after Begin's session token), in the wire form of
/// `version`; a reply that has another signature is a protocol error.
fn read_step(
    parser: &mut MessageBodyParser<'_>,
    version: Version,
    member: &str,
) -> Result<Result<Step, UnknownStep>, DaemonError> {
    let bad = |e: UnmarshalError| DaemonError::Protocol(format!("{member} reply: {e}"));
    let step = match version {
        Version::Login2 => {
            let (kind, message, prompt, digits, max) = parser
                .get5::<String, String, String, u32, u32>()
                .map_err(bad)?;
            let echo = parser.get::<bool>().map_err(bad)?;
            Step::from_wire2((kind, message, prompt, digits, max, echo))
        }
        Version::Login1 => {
            Step::from_wire(parser.get4::<String, String, String, u32>().map_err(bad)?)
        }
    };
    Ok(step)
}

/// Overwrites the body of a sent message (the answer) in place.
///
/// rustbus keeps the body in a private `Vec` with no mutable access, and frees it without
/// wiping. `reset` keeps the allocation, so pushing as many zero bytes as the old body had
/// writes over it (a 4-byte length, then zeros) without moving it; `black_box` keeps the
/// writes from being dropped as dead stores before the free. What cannot be wiped: a copy
/// rustbus made while growing the buffer (the caller reserves room first so it makes none),
/// the kernel's socket buffers, and the daemon's copies.
fn wipe_body(msg: &mut MarshalledMessage) {
    let len = msg.get_buf().len();
    msg.body.reset();
    let zeros = vec![0u8; len.saturating_sub(4)];
    // Cannot fail: a byte array of at most the old length.
    let _ = msg.body.push_param(zeros.as_slice());
    std::hint::black_box(msg.get_buf());
}

/// Whether the directory of the socket at `path` is `uid`'s alone: owned by it and not
/// writable by group or others (followed through symbolic links: the directory the kernel
/// resolves). Defence in depth: the listener's uid is what is trusted (`SO_PEERCRED`), but a
/// directory others may write to would let them put their own socket in place next time.
fn safe_socket_dir(path: &str, uid: u32) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let dir = std::path::Path::new(path)
        .parent()
        .ok_or_else(|| "no directory".to_owned())?;
    let meta = std::fs::metadata(dir).map_err(|e| format!("stat {}: {e}", dir.display()))?;
    if meta.uid() != uid {
        return Err(format!(
            "{} is owned by uid {}, not uid {uid}",
            dir.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is writable by group or others (mode {:o})",
            dir.display(),
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// Classifies a D-Bus error reply from the daemon's unique name to a login call, by name.
/// Pure, so it is table-tested. Never an [`Absence`], whatever the name.
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
    } else if UNANSWERED_ERRORS.contains(&name) {
        DaemonError::Unanswered(text)
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
    use super::conn::{connect_absence, frame_len, parse_frame, sasl_auth, sasl_reply};
    use super::*;
    use crate::flow::Reply;
    use nix::errno::Errno;
    use std::io::{Read, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use twostep_proto::{error_name, Accept, Verdict};

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
    fn transport_error_names_from_the_owner_are_unanswered_and_the_rest_protocol() {
        // Whatever the name: a DaemonError, which has no way to fail open.
        for name in UNANSWERED_ERRORS {
            assert!(
                matches!(classify(name, "m"), DaemonError::Unanswered(_)),
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
    fn a_step_this_module_cannot_render_fails_closed_with_the_reason_logged() {
        // What a daemon sends on Login1 for a step that interface cannot carry. This module
        // (and every module before Login2: `classify` is unchanged) does not know the name:
        // a protocol error, PAM_AUTH_ERR whatever failmode, and the daemon's reason in the
        // log line.
        let why = twostep_proto::NotInLogin1.to_string();
        let e = classify(error_name::NEEDS_NEWER_MODULE, &why);
        let DaemonError::Protocol(text) = &e else {
            panic!("not a protocol error: {e:?}");
        };
        assert!(text.contains("NeedsNewerModule"), "{text}");
        assert!(text.contains("needs a newer pam_twostep"), "{text}");
        let outcome = crate::flow::Outcome::Daemon(e);
        for failmode in [crate::args::FailMode::Open, crate::args::FailMode::Closed] {
            let args = ModuleArgs {
                failmode,
                ..ModuleArgs::default()
            };
            assert_eq!(
                crate::flow::pam_code(&outcome, &args),
                pam::constants::PamResultCode::PAM_AUTH_ERR
            );
            assert_eq!(
                crate::flow::notice(&outcome, &args),
                Some(crate::flow::MSG_PROTOCOL)
            );
        }
        assert!(outcome.describe().contains("needs a newer pam_twostep"));
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
        assert!(method(Some(DBUS_NAME), DBUS_PATH, DBUS_INTERFACE, "Hello").is_ok());
        assert!(method(Some(":1.42"), OBJECT_PATH, LOGIN_INTERFACE, login::BEGIN).is_ok());
        assert!(matches!(
            method(
                Some("not a name"),
                OBJECT_PATH,
                LOGIN_INTERFACE,
                login::BEGIN
            ),
            Err(DaemonError::Protocol(_))
        ));
        assert!(matches!(
            method(Some(":1.42"), "relative", LOGIN_INTERFACE, login::BEGIN),
            Err(DaemonError::Protocol(_))
        ));
    }

    #[test]
    fn nothing_is_sent_before_begin() {
        let args = ModuleArgs {
            bus: "unix:path=/nonexistent/twostep-test".into(),
            socket: None,
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
    fn a_missing_socket_is_absent() {
        let args = ModuleArgs {
            bus: "unix:path=/nonexistent/twostep-test".into(),
            socket: None,
            ..ModuleArgs::default()
        };
        let log = Log::new(false);
        let daemon = BusDaemon::new(&args, &log);
        let got = daemon.begin("alice", &LoginContext::default());
        assert_eq!(got.unwrap_err(), BeginError::Absent(Absence::NoSocket));
    }

    #[test]
    fn a_socket_nobody_listens_on_is_absent() {
        let (args, listener) = scripted_bus(Duration::from_secs(5));
        drop(listener);
        let log = Log::new(false);
        let got = BusDaemon::new(&args, &log).begin("alice", &LoginContext::default());
        assert_eq!(
            got.unwrap_err(),
            BeginError::Absent(Absence::ConnectionRefused)
        );
        let _ = std::fs::remove_file(args.bus.trim_start_matches("unix:path="));
    }

    #[test]
    fn only_enoent_and_econnrefused_from_connect_prove_an_absence() {
        assert_eq!(connect_absence(Errno::ENOENT), Some(Absence::NoSocket));
        assert_eq!(
            connect_absence(Errno::ECONNREFUSED),
            Some(Absence::ConnectionRefused)
        );
        for errno in [
            Errno::EMFILE,
            Errno::ENFILE,
            Errno::ENOMEM,
            Errno::ENOBUFS,
            Errno::EAGAIN,
            Errno::EACCES,
            Errno::EPERM,
            Errno::ETIMEDOUT,
            Errno::ENOTDIR,
            Errno::ELOOP,
            Errno::ENAMETOOLONG,
            Errno::EPROTOTYPE,
            Errno::ECONNRESET,
            Errno::EINTR,
            Errno::EIO,
        ] {
            assert_eq!(connect_absence(errno), None, "{errno}");
        }
    }

    #[test]
    fn a_path_through_a_file_is_not_absent() {
        // connect() fails with ENOTDIR, which proves nothing about the daemon.
        let dir =
            std::path::PathBuf::from(format!("/tmp/pam_twostep-notdir-{}", std::process::id()));
        std::fs::write(&dir, b"").unwrap();
        let args = ModuleArgs {
            bus: format!("unix:path={}/bus.sock", dir.display()),
            socket: None,
            ..ModuleArgs::default()
        };
        let log = Log::new(false);
        let got = BusDaemon::new(&args, &log).begin("alice", &LoginContext::default());
        let _ = std::fs::remove_file(&dir);
        assert!(
            matches!(got, Err(BeginError::Failed(DaemonError::Unanswered(_)))),
            "{got:?}"
        );
    }

    // ---- SASL, framing, routing: pure parts ----

    #[test]
    fn sasl_claims_the_effective_uid_in_hex_ascii() {
        assert_eq!(sasl_auth(0), "\0AUTH EXTERNAL 30\r\n");
        assert_eq!(sasl_auth(1000), "\0AUTH EXTERNAL 31303030\r\n");
        assert_eq!(
            sasl_auth(u32::MAX),
            "\0AUTH EXTERNAL 34323934393637323935\r\n"
        );
    }

    #[test]
    fn sasl_accepts_only_ok_with_a_guid() {
        let guid = b"OK 0123456789abcdef0123456789abcdef\r\n";
        assert_eq!(sasl_reply(guid), Some(Ok(guid.len())));
        // The first message may follow at once (pipelined).
        assert_eq!(sasl_reply(b"OK 1234\r\nl\x02\x01\x01"), Some(Ok(9)));
        for incomplete in [&b""[..], b"OK 0123", b"OK 0123\r", b"\r"] {
            assert_eq!(sasl_reply(incomplete), None, "{incomplete:?}");
        }
        for refused in [
            &b"REJECTED EXTERNAL\r\n"[..],
            b"ERROR\r\n",
            b"OK\r\n",
            b"OK \r\n",
            b"OK 12 34\r\n",
            b"OK 12zz\r\n",
            b"ok 1234\r\n",
            b"\xff\xfe\r\n",
            b"\r\n",
        ] {
            assert!(matches!(sasl_reply(refused), Some(Err(_))), "{refused:?}");
        }
        let Some(Err(text)) = sasl_reply(b"REJECTED\nforged line\r\n") else {
            panic!("accepted");
        };
        assert!(!text.contains('\n'), "{text}");
    }

    #[test]
    fn frames_are_measured_and_capped_at_the_dbus_limit() {
        let frame = wire(
            2,
            9,
            &[F::ReplySerial(1), F::Sender(DBUS_NAME)],
            &body_of("x"),
        );
        assert_eq!(frame_len(&frame), Ok(Some(frame.len())));
        assert_eq!(frame_len(&frame[..15]), Ok(None));
        assert_eq!(frame_len(&frame[..16]), Ok(Some(frame.len())));
        let with = |body_len: u32, fields_len: u32| {
            let mut f = frame[..16].to_vec();
            f[4..8].copy_from_slice(&body_len.to_le_bytes());
            f[12..16].copy_from_slice(&fields_len.to_le_bytes());
            frame_len(&f)
        };
        assert_eq!(with(0, 0), Ok(Some(16)));
        assert_eq!(with(1, 1), Ok(Some(25)));
        assert_eq!(with((1 << 27) - 24, 1), Ok(Some(1 << 27)));
        assert!(with((1 << 27) - 23, 1).is_err());
        assert!(with(u32::MAX, u32::MAX).is_err());
        let mut bad_order = frame.clone();
        bad_order[0] = b'X';
        assert!(frame_len(&bad_order).is_err());
    }

    #[test]
    fn a_frame_is_parsed_by_rustbus() {
        let frame = wire(
            3,
            9,
            &[
                F::ReplySerial(4),
                F::Sender(":1.7"),
                F::Error(error_name::LOCKED),
            ],
            &body_of("locked out"),
        );
        let msg = parse_frame(&frame).unwrap();
        assert_eq!(msg.typ, MessageType::Error);
        assert_eq!(msg.dynheader.response_serial, Some(4));
        assert_eq!(msg.dynheader.sender.as_deref(), Some(":1.7"));
        let Err(CallError::Reply { name, message }) = reply_result(msg) else {
            panic!("not an error reply");
        };
        assert_eq!(
            (name.as_str(), message.as_str()),
            (error_name::LOCKED, "locked out")
        );
        // Trailing bytes are not part of it.
        let mut longer = frame.clone();
        longer.push(0);
        assert!(parse_frame(&longer).is_err());
    }

    /// Mutated and truncated messages, as a hostile peer could send them: errors, never
    /// a panic (rustbus indexes slices in places).
    #[test]
    fn hostile_frames_never_panic() {
        let mut begin_reply = MarshalledMessage::new();
        begin_reply
            .body
            .push_param5("tok", "prompt-code", "msg", "Code: ", 6u32)
            .unwrap();
        let seeds = [
            wire(2, 9, &[F::ReplySerial(3), F::Sender(":1.7")], &begin_reply),
            wire(
                3,
                9,
                &[F::ReplySerial(3), F::Sender(":1.7"), F::Error("a.b.C")],
                &body_of("m"),
            ),
            wire(
                4,
                2,
                &[
                    F::Sender(DBUS_NAME),
                    F::Path(DBUS_PATH),
                    F::Interface(DBUS_INTERFACE),
                    F::Member("NameAcquired"),
                ],
                &body_of(":1.5"),
            ),
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let pending = [Pending::to(3, ":1.7")];
        for round in 0..30_000 {
            let seed = &seeds[round % seeds.len()];
            let mut frame = seed.clone();
            for _ in 0..=(next() % 4) {
                let at = (next() as usize) % frame.len();
                frame[at] = next() as u8;
            }
            if next() % 4 == 0 {
                frame.truncate((next() as usize) % frame.len());
            }
            if let Ok(Some(len)) = frame_len(&frame) {
                if let Some(whole) = frame.get(..len) {
                    if let Ok(msg) = parse_frame(whole) {
                        let _ = route(&msg, &pending);
                        if let Ok(msg) = reply_result(msg) {
                            let _ = msg
                                .body
                                .parser()
                                .get5::<String, String, String, String, u32>();
                            let _ = msg.body.parser().get4::<String, String, String, u32>();
                            let _ = msg.body.parser().get::<u32>();
                            let _ = unique_owner(&msg);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn replies_are_matched_by_serial_and_sender() {
        let msg = |typ, reply_to: Option<u32>, sender: Option<&str>| {
            let mut m = MarshalledMessage::new();
            m.typ = typ;
            m.dynheader.response_serial = reply_to;
            m.dynheader.sender = sender.map(str::to_owned);
            m
        };
        let pending = [Pending::bus(2), Pending::to(3, ":1.7")];
        let forged = |serial, expected: &str| Route::Forged {
            serial,
            expected: expected.into(),
        };
        let cases = [
            (
                msg(MessageType::Reply, Some(2), Some(DBUS_NAME)),
                Route::Reply(2),
            ),
            (
                msg(MessageType::Error, Some(3), Some(":1.7")),
                Route::Reply(3),
            ),
            (
                msg(MessageType::Reply, Some(3), Some(DBUS_NAME)),
                forged(3, ":1.7"),
            ),
            // The bus driver may refuse a call to the daemon (not delivered), never answer
            // it; and an error to one of its own calls is just its reply.
            (
                msg(MessageType::Error, Some(3), Some(DBUS_NAME)),
                Route::Bus(3),
            ),
            (
                msg(MessageType::Error, Some(2), Some(DBUS_NAME)),
                Route::Reply(2),
            ),
            (
                msg(MessageType::Reply, Some(3), Some(":1.8")),
                forged(3, ":1.7"),
            ),
            (
                msg(MessageType::Error, Some(2), Some(":1.7")),
                forged(2, DBUS_NAME),
            ),
            (msg(MessageType::Reply, Some(3), None), forged(3, ":1.7")),
            (msg(MessageType::Reply, Some(4), Some(":1.7")), Route::Drop),
            (msg(MessageType::Reply, None, Some(":1.7")), Route::Drop),
            (msg(MessageType::Signal, Some(3), Some(":1.7")), Route::Drop),
            (msg(MessageType::Call, Some(3), Some(":1.7")), Route::Drop),
        ];
        for (i, (m, want)) in cases.into_iter().enumerate() {
            assert_eq!(route(&m, &pending), want, "case {i}");
        }
    }

    #[test]
    fn a_sent_answer_is_wiped_in_place() {
        let mut msg = login_method(Some(":1.7"), Version::Login2, login::ANSWER).unwrap();
        msg.body.reserve(64 + 3 + 6);
        msg.body.push_param2("tok", &b"987654"[..]).unwrap();
        let before = msg.get_buf().as_ptr();
        let len = msg.get_buf().len();
        assert!(msg.get_buf().windows(6).any(|w| w == b"987654"));
        wipe_body(&mut msg);
        assert_eq!(msg.get_buf().as_ptr(), before, "the buffer moved");
        assert_eq!(msg.get_buf().len(), len);
        assert!(msg.get_buf()[4..].iter().all(|&b| b == 0));
    }

    #[test]
    fn the_login_context_goes_out_as_a_dict() {
        let ctx = LoginContext {
            service: Some("sshd".into()),
            rhost: Some("10.0.0.1".into()),
            tty: None,
            app_password: false,
            forward_pass: false,
        };
        let begin = begin_call(Some(":1.7"), Version::Login2, "alice", &ctx).unwrap();
        assert_eq!(begin.get_sig(), "sa{ss}");
        assert_eq!(begin.dynheader.interface.as_deref(), Some(LOGIN2_INTERFACE));
        let (user, context) = begin
            .body
            .parser()
            .get2::<String, HashMap<String, String>>()
            .unwrap();
        assert_eq!(user, "alice");
        assert_eq!(context.len(), 2);
        assert_eq!(context[login::CTX_SERVICE], "sshd");
        assert_eq!(context[login::CTX_RHOST], "10.0.0.1");
    }

    // ---- Against a scripted bus on a real socket ----

    #[test]
    fn a_login_takes_two_round_trips_before_the_prompt() {
        let (args, listener) = scripted_bus(Duration::from_secs(5));
        let bus = serve(listener, |peer| {
            // Round trip 1: SASL and both calls are read before anything is answered, so a
            // client that waited for OK, or for Hello's reply before asking for the owner,
            // would time out.
            let euid = nix::unistd::geteuid().as_raw();
            assert_eq!(peer.line(), sasl_auth(euid).into_bytes());
            assert_eq!(peer.line(), b"BEGIN\r\n");
            let hello = peer.call("Hello");
            let query = peer.call("GetNameOwner");
            peer.send(b"OK 0123456789abcdef0123456789abcdef\r\n");
            assert_eq!(query.body.parser().get::<String>().unwrap(), BUS_NAME);
            peer.reply(&hello, DBUS_NAME, body_of(":1.5"));
            peer.signal(DBUS_NAME, "NameAcquired", ":1.5");
            peer.reply(&query, DBUS_NAME, body_of(":1.7"));
            // Round trip 2: the uid query and Begin together.
            let uid = peer.call("GetConnectionUnixUser");
            assert_eq!(uid.body.parser().get::<String>().unwrap(), ":1.7");
            let begin = peer.call(login::BEGIN);
            assert_eq!(begin.dynheader.destination.as_deref(), Some(":1.7"));
            assert_eq!(begin.body.parser().get::<String>().unwrap(), "alice");
            // A forged Begin reply (right serial, wrong sender) and a reply to nothing,
            // before the uid and the real one.
            peer.reply(&begin, ":1.66", step_body("", &done_step()));
            peer.reply_to_serial(9999, ":1.7", step_body("", &done_step()));
            peer.reply(&uid, DBUS_NAME, body_of(0u32));
            peer.reply(&begin, ":1.7", step_body("tok", &code_step()));
            // Answer: one round trip, to the unique name.
            let answer = peer.call(login::ANSWER);
            assert_eq!(answer.dynheader.destination.as_deref(), Some(":1.7"));
            let (session, code) = answer.body.parser().get2::<String, Vec<u8>>().unwrap();
            assert_eq!((session.as_str(), code.as_slice()), ("tok", &b"123456"[..]));
            peer.reply(&answer, ":1.7", wire_step(&done_step()));
            peer.assert_closed();
        });
        let log = Log::new(false);
        let daemon = BusDaemon::new(&args, &log);
        let (session, step) = daemon.begin("alice", &LoginContext::default()).unwrap();
        assert_eq!(step, code_step());
        let Reply::Answer(answer) = Reply::from_bytes(Some(b"123456")) else {
            panic!("no answer");
        };
        assert_eq!(daemon.answer(&session, &answer).unwrap(), done_step());
        drop(daemon);
        bus.join().unwrap();
    }

    #[test]
    fn an_error_from_the_bus_about_a_login_call_ends_it_at_once() {
        // The daemon's connection is gone (restarted, killed): the bus driver answers the
        // call for it. The login was under way: closed, and without waiting for timeout=.
        let (args, listener) = scripted_bus(Duration::from_secs(30));
        let bus = serve(listener, |peer| {
            let uid = peer.register(":1.7");
            let begin = peer.call(login::BEGIN);
            peer.reply(&uid, DBUS_NAME, body_of(0u32));
            peer.reply(&begin, ":1.7", step_body("tok", &code_step()));
            let answer = peer.call(login::ANSWER);
            peer.error(
                &answer,
                DBUS_NAME,
                "org.freedesktop.DBus.Error.ServiceUnknown",
            );
            peer.assert_closed();
        });
        let log = Log::new(false);
        let daemon = BusDaemon::new(&args, &log);
        let (session, _) = daemon.begin("alice", &LoginContext::default()).unwrap();
        let Reply::Answer(answer) = Reply::from_bytes(Some(b"123456")) else {
            panic!("no answer");
        };
        let started = Instant::now();
        let got = daemon.answer(&session, &answer);
        assert!(matches!(got, Err(DaemonError::Unanswered(_))), "{got:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
        drop(daemon);
        bus.join().unwrap();
    }

    #[test]
    fn transport_error_names_from_the_owner_fail_closed_for_begin_and_answer() {
        for name in UNANSWERED_ERRORS {
            let (args, listener) = scripted_bus(Duration::from_secs(5));
            let bus = serve(listener, move |peer| {
                let uid = peer.register(":1.7");
                let begin = peer.call(login::BEGIN);
                peer.reply(&uid, DBUS_NAME, body_of(0u32));
                peer.error(&begin, ":1.7", name);
                peer.assert_closed();
            });
            let log = Log::new(false);
            let got = BusDaemon::new(&args, &log).begin("alice", &LoginContext::default());
            assert!(
                matches!(got, Err(BeginError::Failed(DaemonError::Unanswered(_)))),
                "{name}: {got:?}"
            );
            bus.join().unwrap();
        }
    }

    #[test]
    fn an_unowned_name_that_cannot_be_started_is_absent() {
        let (args, listener) = scripted_bus(Duration::from_secs(5));
        let bus = serve(listener, |peer| {
            peer.authenticate();
            let hello = peer.call("Hello");
            let query = peer.call("GetNameOwner");
            peer.reply(&hello, DBUS_NAME, body_of(":1.5"));
            peer.error(&query, DBUS_NAME, NAME_HAS_NO_OWNER);
            let start = peer.call("StartServiceByName");
            peer.error(&start, DBUS_NAME, SERVICE_UNKNOWN);
            // No login call follows.
            peer.assert_closed();
        });
        let log = Log::new(false);
        let got = BusDaemon::new(&args, &log).begin("alice", &LoginContext::default());
        assert_eq!(got.unwrap_err(), BeginError::Absent(Absence::NoOwner));
        bus.join().unwrap();
    }

    #[test]
    fn a_daemon_that_fails_to_start_or_to_stay_is_not_absent() {
        // The start fails (exits, hangs, a limit), or it "starts" and then owns nothing:
        // a broken daemon fails closed, never open.
        let failed_starts = [
            "org.freedesktop.DBus.Error.Spawn.ChildExited",
            "org.freedesktop.DBus.Error.TimedOut",
            "org.freedesktop.DBus.Error.LimitsExceeded",
            "org.freedesktop.DBus.Error.AccessDenied",
            "org.freedesktop.systemd1.NoSuchUnit",
        ];
        for name in failed_starts.iter().map(|n| Some(*n)).chain([None]) {
            let (args, listener) = scripted_bus(Duration::from_secs(5));
            let bus = serve(listener, move |peer| {
                peer.authenticate();
                let hello = peer.call("Hello");
                let query = peer.call("GetNameOwner");
                peer.reply(&hello, DBUS_NAME, body_of(":1.5"));
                peer.error(&query, DBUS_NAME, NAME_HAS_NO_OWNER);
                let start = peer.call("StartServiceByName");
                match name {
                    Some(n) => peer.error(&start, DBUS_NAME, n),
                    None => {
                        peer.reply(&start, DBUS_NAME, body_of(1u32));
                        let query = peer.call("GetNameOwner");
                        peer.error(&query, DBUS_NAME, NAME_HAS_NO_OWNER);
                    }
                }
                peer.assert_closed();
            });
            let log = Log::new(false);
            let got = BusDaemon::new(&args, &log).begin("alice", &LoginContext::default());
            assert!(
                matches!(got, Err(BeginError::Failed(DaemonError::Unanswered(_)))),
                "{name:?}: {got:?}"
            );
            bus.join().unwrap();
        }
    }

    #[test]
    fn no_owner_from_anyone_but_the_bus_driver_is_not_absence() {
        // A forged NameHasNoOwner (from a peer, not the driver) is dropped: no reply comes
        // within timeout=, which fails closed.
        let (args, listener) = scripted_bus(Duration::from_millis(300));
        let bus = serve(listener, |peer| {
            peer.authenticate();
            let hello = peer.call("Hello");
            let query = peer.call("GetNameOwner");
            peer.reply(&hello, DBUS_NAME, body_of(":1.5"));
            peer.error(&query, ":1.66", NAME_HAS_NO_OWNER);
            peer.assert_closed();
        });
        let log = Log::new(false);
        let got = BusDaemon::new(&args, &log).begin("alice", &LoginContext::default());
        assert!(
            matches!(got, Err(BeginError::Failed(DaemonError::Unanswered(_)))),
            "{got:?}"
        );
        bus.join().unwrap();
    }

    #[test]
    fn other_errors_while_resolving_the_name_fail_closed() {
        // The driver's other errors to GetNameOwner, and a start that gets no answer.
        for (first, start_answered) in [
            ("org.freedesktop.DBus.Error.ServiceUnknown", false),
            ("org.freedesktop.DBus.Error.LimitsExceeded", false),
            (NAME_HAS_NO_OWNER, false),
            (NAME_HAS_NO_OWNER, true),
        ] {
            let (args, listener) = scripted_bus(Duration::from_millis(300));
            let bus = serve(listener, move |peer| {
                peer.authenticate();
                let hello = peer.call("Hello");
                let query = peer.call("GetNameOwner");
                peer.reply(&hello, DBUS_NAME, body_of(":1.5"));
                peer.error(&query, DBUS_NAME, first);
                if first == NAME_HAS_NO_OWNER {
                    let start = peer.call("StartServiceByName");
                    if start_answered {
                        peer.reply(&start, DBUS_NAME, body_of(1u32));
                        // The owner question again, answered by the driver with another
                        // error than NameHasNoOwner.
                        let query = peer.call("GetNameOwner");
                        peer.error(&query, DBUS_NAME, "org.freedesktop.DBus.Error.NoMemory");
                    }
                }
                peer.assert_closed();
            });
            let log = Log::new(false);
            let got = BusDaemon::new(&args, &log).begin("alice", &LoginContext::default());
            assert!(
                matches!(got, Err(BeginError::Failed(DaemonError::Unanswered(_)))),
                "{first} {start_answered}: {got:?}"
            );
            bus.join().unwrap();
        }
    }

    #[test]
    fn a_name_owned_by_another_uid_is_refused_and_begins_reply_dropped() {
        let (args, listener) = scripted_bus(Duration::from_secs(5));
        let bus = serve(listener, |peer| {
            let uid = peer.register(":1.7");
            let begin = peer.call(login::BEGIN);
            // The impostor answers first; the client must not use it.
            peer.reply(&begin, ":1.7", step_body("", &done_step()));
            peer.reply(&uid, DBUS_NAME, body_of(1000u32));
            // Nothing else is sent (no Answer): the client hangs up.
            peer.assert_closed();
        });
        let log = Log::new(false);
        let daemon = BusDaemon::new(&args, &log);
        assert_eq!(
            daemon.begin("alice", &LoginContext::default()).unwrap_err(),
            BeginError::Failed(DaemonError::WrongOwner { uid: 1000 })
        );
        drop(daemon);
        bus.join().unwrap();
    }

    #[test]
    fn an_unowned_name_is_activated_then_resolved() {
        let (args, listener) = scripted_bus(Duration::from_secs(5));
        let bus = serve(listener, |peer| {
            peer.authenticate();
            let hello = peer.call("Hello");
            let query = peer.call("GetNameOwner");
            peer.reply(&hello, DBUS_NAME, body_of(":1.5"));
            peer.error(&query, DBUS_NAME, NAME_HAS_NO_OWNER);
            let start = peer.call("StartServiceByName");
            peer.reply(&start, DBUS_NAME, body_of(1u32));
            let query = peer.call("GetNameOwner");
            peer.reply(&query, DBUS_NAME, body_of(":1.9"));
            let uid = peer.call("GetConnectionUnixUser");
            let begin = peer.call(login::BEGIN);
            peer.reply(&uid, DBUS_NAME, body_of(0u32));
            peer.error(&begin, ":1.9", error_name::LOCKED);
            peer.assert_closed();
        });
        let log = Log::new(false);
        let daemon = BusDaemon::new(&args, &log);
        assert_eq!(
            daemon.begin("alice", &LoginContext::default()).unwrap_err(),
            BeginError::Failed(DaemonError::Refused(ErrorName::Locked))
        );
        drop(daemon);
        bus.join().unwrap();
    }

    #[test]
    fn a_bus_that_never_answers_is_bounded_by_the_timeout() {
        // Nobody accepts or reads: connect succeeds (backlog), SASL gets no answer.
        let (args, _listener) = scripted_bus(Duration::from_millis(300));
        let log = Log::new(false);
        let started = Instant::now();
        let got = BusDaemon::new(&args, &log).begin("alice", &LoginContext::default());
        assert!(
            matches!(got, Err(BeginError::Failed(DaemonError::Unanswered(_)))),
            "{got:?}"
        );
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
        let _ = std::fs::remove_file(args.bus.trim_start_matches("unix:path="));
    }

    #[test]
    fn a_bus_closing_during_sasl_fails_closed_at_once() {
        let (args, listener) = scripted_bus(Duration::from_secs(5));
        let bus = serve(listener, |peer| {
            let _ = peer.line();
            // Dropped: closed before any OK.
        });
        let log = Log::new(false);
        let started = Instant::now();
        let got = BusDaemon::new(&args, &log).begin("alice", &LoginContext::default());
        assert!(
            matches!(got, Err(BeginError::Failed(DaemonError::Unanswered(_)))),
            "{got:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        bus.join().unwrap();
    }

    #[test]
    fn a_hung_daemon_is_bounded_by_the_timeout_and_fails_closed() {
        let (args, listener) = scripted_bus(Duration::from_millis(400));
        let bus = serve(listener, |peer| {
            let uid = peer.register(":1.7");
            let _begin = peer.call(login::BEGIN);
            peer.reply(&uid, DBUS_NAME, body_of(0u32));
            // Begin is never answered.
            peer.assert_closed();
        });
        let log = Log::new(false);
        let started = Instant::now();
        let got = BusDaemon::new(&args, &log).begin("alice", &LoginContext::default());
        assert!(
            matches!(got, Err(BeginError::Failed(DaemonError::Unanswered(_)))),
            "{got:?}"
        );
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(400), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
        bus.join().unwrap();
    }

    #[test]
    fn a_bus_gone_before_the_answer_fails_closed() {
        let (args, listener) = scripted_bus(Duration::from_secs(5));
        let bus = serve(listener, |peer| {
            let uid = peer.register(":1.7");
            let begin = peer.call(login::BEGIN);
            peer.reply(&uid, DBUS_NAME, body_of(0u32));
            peer.reply(&begin, ":1.7", step_body("tok", &code_step()));
            // Hangs up while the user types.
        });
        let log = Log::new(false);
        let daemon = BusDaemon::new(&args, &log);
        let (session, _) = daemon.begin("alice", &LoginContext::default()).unwrap();
        bus.join().unwrap();
        let Reply::Answer(answer) = Reply::from_bytes(Some(b"123456")) else {
            panic!("no answer");
        };
        let got = daemon.answer(&session, &answer);
        assert!(matches!(got, Err(DaemonError::Unanswered(_))), "{got:?}");
    }

    // ---- Versions: Login2 first, Login1 on a daemon older than that ----

    fn answer_of(bytes: &[u8]) -> Answer {
        let Reply::Answer(answer) = Reply::from_bytes(Some(bytes)) else {
            panic!("no answer");
        };
        answer
    }

    #[test]
    fn a_new_daemon_is_spoken_to_on_login2_with_shapes_by_form() {
        let email = Step::Prompt {
            message: "Where should the code go?".into(),
            prompt: "Email address: ".into(),
            accept: Accept::Text {
                max: 64,
                echo: true,
            },
        };
        let sent = email.clone();
        let (args, listener) = scripted_bus(Duration::from_secs(5));
        let bus = serve(listener, move |peer| {
            let uid = peer.register(":1.7");
            let begin = peer.call_on(LOGIN2_INTERFACE, login::BEGIN);
            peer.reply(&uid, DBUS_NAME, body_of(0u32));
            peer.reply(&begin, ":1.7", step_body("tok", &sent));
            let answer = peer.call_on(LOGIN2_INTERFACE, login::ANSWER);
            peer.reply(&answer, ":1.7", wire_step(&done_step()));
            peer.assert_closed();
        });
        let log = Log::new(false);
        let daemon = BusDaemon::new(&args, &log);
        let (session, step) = daemon.begin("alice", &LoginContext::default()).unwrap();
        assert_eq!(step, email);
        let answer = daemon.answer(&session, &answer_of(b"a@example.org"));
        assert_eq!(answer.unwrap(), done_step());
        drop(daemon);
        bus.join().unwrap();
    }

    #[test]
    fn a_daemon_without_login2_is_spoken_to_on_login1() {
        for not_served in NOT_SERVED {
            let (args, listener) = scripted_bus(Duration::from_secs(5));
            let bus = serve(listener, move |peer| {
                let uid = peer.register(":1.7");
                let begin = peer.call_on(LOGIN2_INTERFACE, login::BEGIN);
                peer.reply(&uid, DBUS_NAME, body_of(0u32));
                peer.error(&begin, ":1.7", not_served);
                // One more round trip, to the same checked owner, on Login1.
                let begin = peer.call_on(LOGIN_INTERFACE, login::BEGIN);
                assert_eq!(begin.dynheader.destination.as_deref(), Some(":1.7"));
                assert_eq!(begin.body.parser().get::<String>().unwrap(), "alice");
                peer.reply(&begin, ":1.7", step_body1("tok", &code_step()));
                let answer = peer.call_on(LOGIN_INTERFACE, login::ANSWER);
                peer.reply(&answer, ":1.7", wire_step1(&code_step()));
                let answer = peer.call_on(LOGIN_INTERFACE, login::ANSWER);
                peer.reply(&answer, ":1.7", wire_step1(&done_step()));
                peer.assert_closed();
            });
            let log = Log::new(false);
            let daemon = BusDaemon::new(&args, &log);
            let (session, step) = daemon.begin("alice", &LoginContext::default()).unwrap();
            assert_eq!(step, code_step());
            let again = daemon.answer(&session, &answer_of(b"111111")).unwrap();
            assert_eq!(again, code_step());
            let last = daemon.answer(&session, &answer_of(b"123456")).unwrap();
            assert_eq!(last, done_step());
            drop(daemon);
            bus.join().unwrap();
        }
    }

    #[test]
    fn only_the_checked_owner_saying_it_lacks_login2_means_an_old_daemon() {
        // The bus driver (the call was not delivered), any other error of the owner, and a
        // Login1-shaped reply to Login2's Begin: no second Begin, the login fails closed.
        let cases: [(&str, &str, bool); 4] = [
            (DBUS_NAME, "org.freedesktop.DBus.Error.UnknownMethod", false),
            (
                DBUS_NAME,
                "org.freedesktop.DBus.Error.UnknownInterface",
                false,
            ),
            (":1.7", "org.freedesktop.DBus.Error.UnknownObject", false),
            (":1.7", "", true),
        ];
        for (sender, name, login1_reply) in cases {
            let (args, listener) = scripted_bus(Duration::from_secs(5));
            let bus = serve(listener, move |peer| {
                let uid = peer.register(":1.7");
                let begin = peer.call_on(LOGIN2_INTERFACE, login::BEGIN);
                peer.reply(&uid, DBUS_NAME, body_of(0u32));
                if login1_reply {
                    peer.reply(&begin, ":1.7", step_body1("tok", &code_step()));
                } else {
                    peer.error(&begin, sender, name);
                }
                peer.assert_closed();
            });
            let log = Log::new(false);
            let got = BusDaemon::new(&args, &log).begin("alice", &LoginContext::default());
            match got {
                Err(BeginError::Failed(DaemonError::Unanswered(_) | DaemonError::Protocol(_))) => {}
                other => panic!("{sender} {name}: {other:?}"),
            }
            bus.join().unwrap();
        }
    }

    #[test]
    fn a_reply_with_more_than_its_signature_is_refused() {
        for on_answer in [false, true] {
            let (args, listener) = scripted_bus(Duration::from_secs(5));
            let bus = serve(listener, move |peer| {
                let uid = peer.register(":1.7");
                let begin = peer.call_on(LOGIN2_INTERFACE, login::BEGIN);
                peer.reply(&uid, DBUS_NAME, body_of(0u32));
                let mut body = step_body("tok", &code_step());
                if !on_answer {
                    body.body.push_param(7u32).unwrap();
                    peer.reply(&begin, ":1.7", body);
                    peer.assert_closed();
                    return;
                }
                peer.reply(&begin, ":1.7", body);
                let answer = peer.call_on(LOGIN2_INTERFACE, login::ANSWER);
                let mut body = wire_step(&done_step());
                body.body.push_param("more").unwrap();
                peer.reply(&answer, ":1.7", body);
                peer.assert_closed();
            });
            let log = Log::new(false);
            let daemon = BusDaemon::new(&args, &log);
            let begun = daemon.begin("alice", &LoginContext::default());
            if on_answer {
                let (session, _) = begun.unwrap();
                let got = daemon.answer(&session, &answer_of(b"123456"));
                assert!(matches!(got, Err(DaemonError::Protocol(_))), "{got:?}");
            } else {
                assert!(
                    matches!(begun, Err(BeginError::Failed(DaemonError::Protocol(_)))),
                    "{begun:?}"
                );
            }
            drop(daemon);
            bus.join().unwrap();
        }
    }

    #[test]
    fn an_impostor_saying_it_lacks_login2_is_not_asked_again() {
        let (args, listener) = scripted_bus(Duration::from_secs(5));
        let bus = serve(listener, |peer| {
            let uid = peer.register(":1.7");
            let begin = peer.call_on(LOGIN2_INTERFACE, login::BEGIN);
            peer.error(&begin, ":1.7", NOT_SERVED[0]);
            peer.reply(&uid, DBUS_NAME, body_of(1000u32));
            peer.assert_closed();
        });
        let log = Log::new(false);
        let got = BusDaemon::new(&args, &log).begin("alice", &LoginContext::default());
        assert_eq!(
            got.unwrap_err(),
            BeginError::Failed(DaemonError::WrongOwner { uid: 1000 })
        );
        bus.join().unwrap();
    }

    // ---- Test plumbing ----

    fn code_step() -> Step {
        Step::Prompt {
            message: String::new(),
            prompt: "Code: ".into(),
            accept: Accept::Digits { n: 6 },
        }
    }

    fn done_step() -> Step {
        Step::Done {
            verdict: Verdict::Success,
            message: String::new(),
        }
    }

    fn body_of<P: rustbus::Marshal>(p: P) -> MarshalledMessage {
        let mut m = MarshalledMessage::new();
        m.body.push_param(p).unwrap();
        m
    }

    /// Login2 Begin's reply: the session token, then the step.
    fn step_body(session: &str, step: &Step) -> MarshalledMessage {
        let mut m = MarshalledMessage::new();
        m.body.push_param(session).unwrap();
        push_step2(&mut m, step.to_wire2());
        m
    }

    /// Login2 Answer's reply: the step.
    fn wire_step(step: &Step) -> MarshalledMessage {
        let mut m = MarshalledMessage::new();
        push_step2(&mut m, step.to_wire2());
        m
    }

    fn push_step2(m: &mut MarshalledMessage, wire: twostep_proto::WireStep2) {
        let (kind, message, prompt, digits, max, echo) = wire;
        m.body
            .push_param5(kind, message, prompt, digits, max)
            .unwrap();
        m.body.push_param(echo).unwrap();
    }

    /// Login1 Begin's reply, as a daemon before Login2 sends it.
    fn step_body1(session: &str, step: &Step) -> MarshalledMessage {
        let (kind, message, prompt, digits) = step.to_wire().unwrap();
        let mut m = MarshalledMessage::new();
        m.body
            .push_param5(session, kind, message, prompt, digits)
            .unwrap();
        m
    }

    /// Login1 Answer's reply.
    fn wire_step1(step: &Step) -> MarshalledMessage {
        let (kind, message, prompt, digits) = step.to_wire().unwrap();
        let mut m = MarshalledMessage::new();
        m.body.push_param4(kind, message, prompt, digits).unwrap();
        m
    }

    /// A header field of [`wire`].
    enum F<'a> {
        ReplySerial(u32),
        Sender(&'a str),
        Error(&'a str),
        Path(&'a str),
        Interface(&'a str),
        Member(&'a str),
    }

    /// A message as the bus sends it, little-endian, with `body`'s signature and bytes.
    /// By hand, and only in tests: rustbus's marshaller writes neither the sender nor the
    /// error name, and a client never needs them.
    fn wire(typ: u8, serial: u32, fields: &[F<'_>], body: &MarshalledMessage) -> Vec<u8> {
        fn pad8(v: &mut Vec<u8>) {
            while v.len() % 8 != 0 {
                v.push(0);
            }
        }
        fn text(v: &mut Vec<u8>, code: u8, sig: u8, s: &str) {
            pad8(v);
            v.extend([code, 1, sig, 0]);
            v.extend(u32::try_from(s.len()).unwrap().to_le_bytes());
            v.extend(s.as_bytes());
            v.push(0);
        }
        // The fields start at offset 16, so aligning within them aligns in the message.
        let mut f = Vec::new();
        for field in fields {
            match field {
                F::ReplySerial(r) => {
                    pad8(&mut f);
                    f.extend([5, 1, b'u', 0]);
                    f.extend(r.to_le_bytes());
                }
                F::Sender(s) => text(&mut f, 7, b's', s),
                F::Error(s) => text(&mut f, 4, b's', s),
                F::Path(s) => text(&mut f, 1, b'o', s),
                F::Interface(s) => text(&mut f, 2, b's', s),
                F::Member(s) => text(&mut f, 3, b's', s),
            }
        }
        let sig = body.get_sig();
        if !sig.is_empty() {
            pad8(&mut f);
            f.extend([8, 1, b'g', 0, u8::try_from(sig.len()).unwrap()]);
            f.extend(sig.as_bytes());
            f.push(0);
        }
        let mut m = vec![b'l', typ, 0, 1];
        m.extend(u32::try_from(body.get_buf().len()).unwrap().to_le_bytes());
        m.extend(serial.to_le_bytes());
        m.extend(u32::try_from(f.len()).unwrap().to_le_bytes());
        m.extend(f);
        pad8(&mut m);
        m.extend(body.get_buf());
        m
    }

    /// Module arguments naming a fresh socket, and its listener.
    fn scripted_bus(timeout: Duration) -> (ModuleArgs, UnixListener) {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = format!(
            "/tmp/pam_twostep-bus-test-{}-{}.sock",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let args = ModuleArgs {
            bus: format!("unix:path={path}"),
            socket: None,
            timeout,
            ..ModuleArgs::default()
        };
        (args, listener)
    }

    /// Runs `script` as the bus, on its own thread (test-only: the module has none).
    #[allow(clippy::disallowed_methods)]
    fn serve(
        listener: UnixListener,
        script: impl FnOnce(&mut Peer) + Send + 'static,
    ) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut peer = Peer {
                stream,
                buf: Vec::new(),
                serial: 100,
            };
            script(&mut peer);
            if let Ok(addr) = listener.local_addr() {
                if let Some(path) = addr.as_pathname() {
                    let _ = std::fs::remove_file(path);
                }
            }
        })
    }

    /// The bus side of one connection.
    struct Peer {
        stream: UnixStream,
        buf: Vec<u8>,
        serial: u32,
    }

    impl Peer {
        fn fill(&mut self) -> usize {
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).unwrap();
            self.buf.extend_from_slice(&chunk[..n]);
            n
        }

        fn line(&mut self) -> Vec<u8> {
            loop {
                if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    return self.buf.drain(..end + 2).collect();
                }
                assert!(self.fill() > 0, "closed before a whole line");
            }
        }

        /// SASL, then round trip 1 answered with `owner` as the daemon's unique name;
        /// returns the `GetConnectionUnixUser` call of round trip 2.
        fn register(&mut self, owner: &str) -> MarshalledMessage {
            self.authenticate();
            let hello = self.call("Hello");
            let query = self.call("GetNameOwner");
            self.reply(&hello, DBUS_NAME, body_of(":1.5"));
            self.reply(&query, DBUS_NAME, body_of(owner));
            self.call("GetConnectionUnixUser")
        }

        fn authenticate(&mut self) {
            let euid = nix::unistd::geteuid().as_raw();
            assert_eq!(self.line(), sasl_auth(euid).into_bytes());
            self.send(b"OK 0123456789abcdef0123456789abcdef\r\n");
            assert_eq!(self.line(), b"BEGIN\r\n");
        }

        fn message(&mut self) -> MarshalledMessage {
            loop {
                if let Some(len) = frame_len(&self.buf).unwrap() {
                    if self.buf.len() >= len {
                        let frame: Vec<u8> = self.buf.drain(..len).collect();
                        return parse_frame(&frame).unwrap();
                    }
                }
                assert!(self.fill() > 0, "closed before a whole message");
            }
        }

        /// The next message, which must be a call of `member`.
        fn call(&mut self, member: &str) -> MarshalledMessage {
            let msg = self.message();
            assert_eq!(msg.typ, MessageType::Call);
            assert_eq!(msg.dynheader.member.as_deref(), Some(member));
            msg
        }

        /// The next message, which must be a call of `member` of `interface`.
        fn call_on(&mut self, interface: &str, member: &str) -> MarshalledMessage {
            let msg = self.call(member);
            assert_eq!(msg.dynheader.interface.as_deref(), Some(interface));
            msg
        }

        fn send(&mut self, bytes: &[u8]) {
            // The client may be gone already (a refused login): not this script's failure.
            let _ = self.stream.write_all(bytes);
        }

        fn next_serial(&mut self) -> u32 {
            self.serial += 1;
            self.serial
        }

        fn reply(&mut self, to: &MarshalledMessage, sender: &str, body: MarshalledMessage) {
            self.reply_to_serial(to.dynheader.serial.unwrap(), sender, body);
        }

        fn reply_to_serial(&mut self, serial: u32, sender: &str, body: MarshalledMessage) {
            let s = self.next_serial();
            let frame = wire(2, s, &[F::ReplySerial(serial), F::Sender(sender)], &body);
            self.send(&frame);
        }

        fn error(&mut self, to: &MarshalledMessage, sender: &str, name: &str) {
            let s = self.next_serial();
            let fields = [
                F::ReplySerial(to.dynheader.serial.unwrap()),
                F::Sender(sender),
                F::Error(name),
            ];
            let frame = wire(3, s, &fields, &body_of("refused"));
            self.send(&frame);
        }

        fn signal(&mut self, sender: &str, member: &str, arg: &str) {
            let s = self.next_serial();
            let fields = [
                F::Sender(sender),
                F::Path(DBUS_PATH),
                F::Interface(DBUS_INTERFACE),
                F::Member(member),
            ];
            let frame = wire(4, s, &fields, &body_of(arg));
            self.send(&frame);
        }

        /// Nothing more comes from the client: it hangs up.
        fn assert_closed(&mut self) {
            assert!(self.buf.is_empty(), "unread bytes: {:?}", self.buf);
            assert_eq!(self.fill(), 0, "the client sent more: {:?}", self.buf);
        }
    }
}
