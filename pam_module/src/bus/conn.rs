// SPDX-License-Identifier: MIT OR Apache-2.0
//! How bytes move between the module and the bus: the socket, the SASL lines, framing.
//! Nothing here decides whom to trust; [`super`] does, on the messages this returns.
//!
//! rustbus builds, validates, marshals and parses every message. This module owns the socket:
//! rustbus's `DuplexConn` can only be made by `connect_to_bus`, which has no time limit and
//! authenticates with rustbus's SASL client (`rustbus::auth::do_auth`), and that client
//! cannot be used here:
//! - it claims the *real* uid (`getuid`) while the bus checks the *effective* uid of the
//!   socket, so the bus rejects setuid hosts whose real uid is the user's (`su`);
//! - it loops for ever, at full CPU, when the bus closes the socket before its `OK` line
//!   (a read of 0 bytes is not taken as the end), e.g. a bus dropping incomplete
//!   connections under load;
//! - it has no time limit, no cap on the line, and panics on a line that is not UTF-8.
//!
//! So the three SASL lines the module needs are written here, bounded (`Conn::send`,
//! `Conn::finish_auth`),
//! and so is moving bytes: non-blocking, `poll` against the deadline, `MSG_NOSIGNAL` (a bus
//! that went away must not kill the host with SIGPIPE; rustbus's `sendmsg` does not set it).

use std::fmt::Write as _;
use std::os::unix::io::RawFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags};
use nix::sys::socket::{self, sockopt, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};
use nix::sys::time::{TimeVal, TimeValLike};
use rustbus::message_builder::MarshalledMessage;
use rustbus::wire::{marshal, unmarshal, util};
use zeroize::Zeroizing;

use super::CallError;
use crate::flow::Absence;
use crate::log::Field;

/// The longest message the D-Bus specification allows (2^27 bytes, header, padding and body).
///
/// Why this is the memory bound: rustbus's parser checks every length field against the
/// bytes it is given (strings, arrays, header fields) and never reserves memory from a
/// length field, and it is only ever given one whole message, which [`frame_len`] caps here
/// before a byte of it is stored. The buffer then grows only as bytes really arrive, within
/// `timeout=`; a longer message ends the login as malformed.
pub(super) const MAX_MESSAGE_LEN: u64 = 1 << 27;
/// The longest SASL line accepted from the bus (`OK <32 hex digits>` is 35 bytes).
pub(super) const MAX_AUTH_LINE: usize = 512;
/// Bytes taken from the socket per read.
pub(super) const READ_CHUNK: usize = 8192;

/// The whole length of the message at the start of `buf`, once its 16-byte fixed header is
/// there (`None` before): header, header fields padded to 8, body. The same sum as
/// rustbus's `RecvConn::bytes_needed_for_current_message`, from rustbus's own header
/// parser, but capped at [`MAX_MESSAGE_LEN`] and without overflow.
pub(super) fn frame_len(buf: &[u8]) -> Result<Option<usize>, String> {
    let Some(fixed) = buf.get(..16) else {
        return Ok(None);
    };
    let (_, header) = unmarshal::unmarshal_header(fixed, 0).map_err(|e| e.to_string())?;
    let (_, fields_len) = util::parse_u32(fixed.get(12..).unwrap_or_default(), header.byteorder)
        .map_err(|e| e.to_string())?;
    let body_start = (16 + u64::from(fields_len)).next_multiple_of(8);
    let total = body_start + u64::from(header.body_len);
    if total > MAX_MESSAGE_LEN {
        return Err(format!(
            "a message of {total} bytes (D-Bus allows {MAX_MESSAGE_LEN})"
        ));
    }
    usize::try_from(total).map(Some).map_err(|e| e.to_string())
}

/// One whole message (exactly [`frame_len`] bytes), parsed by rustbus.
pub(super) fn parse_frame(frame: &[u8]) -> Result<MarshalledMessage, String> {
    let (fixed, header) = unmarshal::unmarshal_header(frame, 0).map_err(|e| e.to_string())?;
    let (fields, dynheader) =
        unmarshal::unmarshal_dynamic_header(&header, frame, fixed).map_err(|e| e.to_string())?;
    let (body, msg) = unmarshal::unmarshal_next_message(&header, dynheader, frame, fixed + fields)
        .map_err(|e| e.to_string())?;
    if fixed + fields + body != frame.len() {
        return Err("message length does not add up".into());
    }
    Ok(msg)
}

/// The first SASL line: a NUL byte, then `AUTH EXTERNAL` with the uid in ASCII decimal,
/// hex-encoded. The effective uid: the one the bus reads from the socket (`SO_PEERCRED`).
pub(super) fn sasl_auth(euid: u32) -> String {
    let mut line = String::from("\0AUTH EXTERNAL ");
    for digit in euid.to_string().bytes() {
        let _ = write!(line, "{digit:02x}");
    }
    line.push_str("\r\n");
    line
}

/// The bus's answer to [`sasl_auth`], once a whole line is in `buf` (`None` before): the
/// length of that line, which must be `OK <guid>`. What follows it is the first message
/// (the authentication was pipelined with `BEGIN` and the first calls).
pub(super) fn sasl_reply(buf: &[u8]) -> Option<Result<usize, String>> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    let line = buf.get(..end).unwrap_or_default();
    let guid = line.strip_prefix(b"OK ").unwrap_or_default();
    Some(
        if !guid.is_empty() && guid.iter().all(u8::is_ascii_hexdigit) {
            Ok(end + 2)
        } else {
            Err(format!(
                "the bus answered {}",
                Field(Some(&String::from_utf8_lossy(line)))
            ))
        },
    )
}

/// Time left before `deadline`, `None` once it has passed.
pub(super) fn time_left(deadline: Instant) -> Option<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    (!left.is_zero()).then_some(left)
}

/// Why [`Conn::open`] has no connection.
pub(super) enum OpenError {
    /// The socket is not there or nobody listens: the daemon is positively absent.
    Absent(Absence),
    /// Anything else (a resource error, a permission, a timeout): fails closed.
    Failed(String),
}

/// The [`Absence`] a failed `connect()` to a unix socket proves, if any: `ENOENT` (no
/// socket at the path) and `ECONNREFUSED` (a socket nobody listens on). Every other errno
/// (`EACCES`, `EAGAIN`, `ENOMEM`, `ETIMEDOUT`, …) says nothing about the daemon being
/// gone and fails closed. Pure, table-tested.
pub(super) fn connect_absence(errno: Errno) -> Option<Absence> {
    match errno {
        Errno::ENOENT => Some(Absence::NoSocket),
        Errno::ECONNREFUSED => Some(Absence::ConnectionRefused),
        _ => None,
    }
}

/// The socket, closed on drop (nix 0.26 hands out raw descriptors).
pub(super) struct Socket(RawFd);

impl Drop for Socket {
    fn drop(&mut self) {
        let _ = nix::unistd::close(self.0);
    }
}

/// One connection to the bus: the socket, bytes read and not yet taken, the next serial.
pub(super) struct Conn {
    sock: Socket,
    inbuf: Vec<u8>,
    serial: u32,
    sasl: Sasl,
}

/// Where the connection's authentication stands.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Sasl {
    /// Nothing sent yet: `AUTH` and `BEGIN` go out in front of the first messages.
    Unsent,
    /// Sent; the bus's `OK` comes before any reply.
    AwaitingOk,
    Done,
}

impl Conn {
    /// Connects to the socket at `path` before `deadline`.
    ///
    /// # Errors
    /// [`OpenError::Absent`] only for `connect` failing with `ENOENT` or `ECONNREFUSED`
    /// ([`connect_absence`]); anything else, `socket()` failing (`EMFILE`, `ENOMEM`, …)
    /// included, is [`OpenError::Failed`].
    pub(super) fn open(path: &str, deadline: Instant) -> Result<Conn, OpenError> {
        let failed =
            |what: &str, e: &dyn std::fmt::Display| OpenError::Failed(format!("{what}: {e}"));
        let addr = UnixAddr::new(path).map_err(|e| failed("bad socket path", &e))?;
        // Why CLOEXEC: the host may fork and exec while the user types; the connection
        // must not leak into the child.
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| failed("socket()", &e))?;
        let sock = Socket(fd);
        // Why a blocking connect under SO_SNDTIMEO: connecting to a unix socket waits while
        // the listener's backlog is full (a hung bus); non-blocking, it fails with EAGAIN
        // and gives nothing to wait on. The kernel bounds that wait by SO_SNDTIMEO.
        let timed_out = || OpenError::Failed("no connection within timeout=".into());
        loop {
            let left = time_left(deadline).ok_or_else(timed_out)?;
            let micros = i64::try_from(left.as_micros()).unwrap_or(i64::MAX).max(1);
            socket::setsockopt(fd, sockopt::SendTimeout, &TimeVal::microseconds(micros))
                .map_err(|e| failed("setsockopt(SO_SNDTIMEO)", &e))?;
            match socket::connect(fd, &addr) {
                Ok(()) | Err(Errno::EISCONN) => break,
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN | Errno::EINPROGRESS) => return Err(timed_out()),
                Err(e) => {
                    return Err(match connect_absence(e) {
                        Some(why) => OpenError::Absent(why),
                        None => failed("connect()", &e),
                    })
                }
            }
        }
        fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(|e| failed("fcntl()", &e))?;
        Ok(Conn {
            sock,
            inbuf: Vec::new(),
            serial: 1,
            sasl: Sasl::Unsent,
        })
    }

    /// The uid of the process listening on the other end, as the kernel recorded it at its
    /// `listen` (`SO_PEERCRED`): nothing the peer says.
    pub(super) fn peer_uid(&self) -> Result<u32, String> {
        socket::getsockopt(self.sock.0, sockopt::PeerCredentials)
            .map(|c| c.uid())
            .map_err(|e| format!("getsockopt(SO_PEERCRED): {e}"))
    }

    /// The bus's `OK` to the pipelined `AUTH EXTERNAL`, before `deadline`; the bytes after
    /// it stay for [`Conn::read_message`].
    pub(super) fn finish_auth(&mut self, deadline: Instant) -> Result<(), CallError> {
        loop {
            if let Some(verdict) = sasl_reply(&self.inbuf) {
                let line = verdict.map_err(CallError::Malformed)?;
                self.inbuf.drain(..line);
                self.sasl = Sasl::Done;
                return Ok(());
            }
            if self.inbuf.len() > MAX_AUTH_LINE {
                return Err(CallError::Malformed("over-long SASL line".into()));
            }
            self.recv_some(deadline)?;
        }
    }

    /// Writes the messages together (one round trip), before `deadline`; returns their
    /// serials.
    pub(super) fn send<const N: usize>(
        &mut self,
        msgs: [&MarshalledMessage; N],
        deadline: Instant,
    ) -> Result<[u32; N], CallError> {
        let mut serials = [0u32; N];
        let mut headers = Vec::with_capacity(N);
        for (slot, msg) in serials.iter_mut().zip(msgs) {
            *slot = self.serial;
            self.serial = self.serial.checked_add(1).ok_or(CallError::Disconnected)?;
            let mut header = Vec::new();
            marshal::marshal(msg, *slot, &mut header)
                .map_err(|e| CallError::Malformed(format!("cannot marshal a call: {e}")))?;
            headers.push(header);
        }
        // SASL EXTERNAL with the effective uid, then BEGIN, in front of the first messages.
        let auth = match self.sasl {
            Sasl::Unsent => {
                let mut line = sasl_auth(nix::unistd::geteuid().as_raw());
                line.push_str("BEGIN\r\n");
                line
            }
            Sasl::AwaitingOk | Sasl::Done => String::new(),
        };
        let begin = auth.as_bytes();
        let total = begin.len()
            + headers.iter().map(Vec::len).sum::<usize>()
            + msgs.iter().map(|m| m.get_buf().len()).sum::<usize>();
        // An Answer's bytes pass through here: wiped on drop, sized once so it never moves.
        let mut out = Zeroizing::new(Vec::with_capacity(total));
        out.extend_from_slice(begin);
        for (header, msg) in headers.iter().zip(msgs) {
            out.extend_from_slice(header);
            out.extend_from_slice(msg.get_buf());
        }
        self.write_all(&out, deadline)?;
        if self.sasl == Sasl::Unsent {
            self.sasl = Sasl::AwaitingOk;
        }
        Ok(serials)
    }

    /// The next whole message, parsed.
    pub(super) fn read_message(
        &mut self,
        deadline: Instant,
    ) -> Result<MarshalledMessage, CallError> {
        if self.sasl == Sasl::AwaitingOk {
            self.finish_auth(deadline)?;
        }
        loop {
            if let Some(len) = frame_len(&self.inbuf).map_err(CallError::Malformed)? {
                if self.inbuf.len() >= len {
                    let rest = self.inbuf.split_off(len);
                    let frame = std::mem::replace(&mut self.inbuf, rest);
                    return parse_frame(&frame).map_err(CallError::Malformed);
                }
            }
            self.recv_some(deadline)?;
        }
    }

    /// One read of what the socket has, waiting for it at most until `deadline`.
    pub(super) fn recv_some(&mut self, deadline: Instant) -> Result<(), CallError> {
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            // Checked before every read: a bus that keeps talking cannot stretch the wait.
            time_left(deadline).ok_or(CallError::Timeout)?;
            match socket::recv(self.sock.0, &mut chunk, MsgFlags::MSG_DONTWAIT) {
                Ok(0) => return Err(CallError::Disconnected),
                Ok(n) => {
                    self.inbuf
                        .extend_from_slice(chunk.get(..n).unwrap_or_default());
                    return Ok(());
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => self.wait(PollFlags::POLLIN, deadline)?,
                Err(_) => return Err(CallError::Disconnected),
            }
        }
    }

    /// Writes all of `bytes` before `deadline`.
    pub(super) fn write_all(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), CallError> {
        let mut rest = bytes;
        while !rest.is_empty() {
            time_left(deadline).ok_or(CallError::Timeout)?;
            // Why MSG_NOSIGNAL: a closed connection must be an error, not a SIGPIPE that
            // kills the host.
            match socket::send(
                self.sock.0,
                rest,
                MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(0) => return Err(CallError::Disconnected),
                Ok(n) => rest = rest.get(n..).unwrap_or_default(),
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => self.wait(PollFlags::POLLOUT, deadline)?,
                Err(_) => return Err(CallError::Disconnected),
            }
        }
        Ok(())
    }

    /// Waits until the socket is ready for `events` (or hung up), at most until `deadline`.
    pub(super) fn wait(&self, events: PollFlags, deadline: Instant) -> Result<(), CallError> {
        loop {
            let left = time_left(deadline).ok_or(CallError::Timeout)?;
            // Rounded up, so the last wait does not spin at 0 ms.
            let millis = left.as_micros().div_ceil(1000);
            let millis = i32::try_from(millis).unwrap_or(i32::MAX);
            let mut fds = [PollFd::new(self.sock.0, events)];
            match poll(&mut fds, millis) {
                Ok(0) | Err(Errno::EINTR) => {}
                Ok(_) => return Ok(()),
                Err(_) => return Err(CallError::Disconnected),
            }
        }
    }
}
