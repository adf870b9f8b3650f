// SPDX-License-Identifier: MIT OR Apache-2.0
//! The login endpoint: the login interfaces (`Login1`, `Login2`, and nothing else) served
//! peer to peer on a unix socket (`[daemon] login_socket`, default
//! [`twostep_proto::LOGIN_SOCKET`]), as systemd serves root clients on
//! `/run/systemd/private`. pam_twostep tries it before the bus: no broker hop, no `Hello`,
//! no owner look-ups.
//!
//! Same contract, same trust model as on the bus:
//! - the caller's uid is the socket's `SO_PEERCRED` at `connect`, read by the kernel, never
//!   anything the peer sends (zbus's SASL `EXTERNAL` only accepts that same uid); each
//!   connection gets a name of its own (`peer/N`, never a bus name) for its sessions;
//! - every call then goes through the same `Shared::caller` as on the bus: the same
//!   authorization in the core (root for anyone, others for themselves), call rate and calls
//!   in flight per uid and per connection, shared with the bus;
//! - a login session ends with the connection that began it, as on the bus.
//!
//! What the bus did for us and this file does itself, so a local user cannot exhaust the
//! daemon's descriptors or memory: connections at once ([`MAX_PEERS`], [`MAX_PEERS_PER_UID`]
//! for a non-root uid), the time to authenticate ([`HANDSHAKE_TIMEOUT`]) and its bytes
//! ([`MAX_HANDSHAKE_BYTES`]), the length of one message ([`MAX_MESSAGE`]: zbus would
//! otherwise reserve what a 16-byte header claims, up to 128 MiB), messages queued
//! ([`MAX_QUEUED`]), idle time (the prompt timeout plus [`IDLE_SLACK`]), and no file
//! descriptors accepted.

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_lite::StreamExt as _;
use tokio::net::unix::OwnedReadHalf;
use tokio::net::{UnixListener, UnixStream};
use zbus::connection::socket::{BoxedSplit, ReadHalf, Split};
use zbus::fdo::ConnectionCredentials;
use zbus::{AuthMechanism, Guid, Message};

use super::iface::{peer_call, peer_shared, Shared};
use super::rate::{left_out, LogThrottle};
use crate::core::{Caller, Core};

/// Peer-to-peer connections open at once, all callers together.
pub const MAX_PEERS: usize = 256;
/// Peer-to-peer connections open at once per non-root uid (a screen locker holds one per
/// PAM transaction; the bus limits a uid's calls in flight to 8 as well).
pub const MAX_PEERS_PER_UID: usize = 16;
/// Of [`MAX_PEERS`], the places only root's connections may take: however many non-root
/// users fill theirs, root's logins (sshd, sudo, login) still get this many.
pub const ROOT_RESERVE: usize = 64;
/// Time from `accept` to the end of the SASL exchange (the module pipelines it).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes the SASL exchange may take (`AUTH EXTERNAL 30` and `BEGIN` are 30).
pub const MAX_HANDSHAKE_BYTES: usize = 4096;
/// The longest message taken from a peer; a longer one closes the connection. A `Begin`
/// or an `Answer` is a few hundred bytes (every argument is capped by
/// `twostep_proto::limits`); arguments up to this size still get the daemon's clear
/// `InvalidArgument`, as on the bus.
pub const MAX_MESSAGE: u64 = 256 * 1024;
/// Messages zbus keeps queued per connection.
pub const MAX_QUEUED: usize = 8;
/// Idle time beyond `[login] prompt_timeout_seconds` before a connection is closed (the
/// user types between two calls; the session is over by then anyway).
pub const IDLE_SLACK: Duration = Duration::from_secs(30);

/// What one connection of the login endpoint needs: the bus's shared state (limits, core).
/// Made by `bus::serve`.
#[derive(Clone)]
pub struct LoginServing {
    pub(super) shared: Shared,
    pub(super) core: Arc<Core>,
}

/// The listening socket of the login endpoint.
pub struct LoginEndpoint {
    listener: UnixListener,
    path: PathBuf,
}

impl LoginEndpoint {
    /// Binds `path` (inside a tokio runtime): creates its directory (0755) if missing and
    /// checks it is a directory owned by this process's uid and not writable by group or
    /// others; replaces a stale socket left at `path`; the socket is made 0666 (anyone may
    /// connect, the daemon decides, as on the bus).
    ///
    /// # Errors
    /// A directory that is not safe, a non-socket at `path`, or a failed bind, as text.
    pub fn bind(path: &Path) -> Result<LoginEndpoint, String> {
        let shown = path.display();
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .ok_or_else(|| format!("login_socket {shown} has no directory"))?;
        if std::fs::symlink_metadata(dir).is_err() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| format!("cannot chmod {}: {e}", dir.display()))?;
        }
        let meta = std::fs::symlink_metadata(dir)
            .map_err(|e| format!("cannot stat {}: {e}", dir.display()))?;
        let euid = nix::unistd::geteuid().as_raw();
        if !meta.is_dir() || meta.uid() != euid || meta.mode() & 0o022 != 0 {
            return Err(format!(
                "the directory of login_socket, {}, must be a directory owned by uid {euid} and \
                 not writable by group or others (pam_twostep refuses any other)",
                dir.display()
            ));
        }
        if let Ok(old) = std::fs::symlink_metadata(path) {
            if !old.file_type().is_socket() {
                return Err(format!("login_socket {shown} exists and is not a socket"));
            }
            // A stale socket is replaced; one somebody listens on (another daemon, on
            // another bus) is not taken over.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(format!(
                    "login_socket {shown} is in use by another process (another twostepd?)"
                ));
            }
            std::fs::remove_file(path).map_err(|e| format!("cannot remove {shown}: {e}"))?;
        }
        let listener = std::os::unix::net::UnixListener::bind(path)
            .map_err(|e| format!("cannot bind {shown}: {e}"))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
            .map_err(|e| format!("cannot chmod {shown}: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("{shown}: {e}"))?;
        let listener = UnixListener::from_std(listener).map_err(|e| format!("{shown}: {e}"))?;
        Ok(LoginEndpoint {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts connections for ever, each served by a task of its own.
    pub async fn run_shared(this: Arc<LoginEndpoint>, login: LoginServing) {
        this.run(login).await;
    }

    /// Accepts connections for ever, each served by a task of its own.
    pub async fn run(&self, login: LoginServing) {
        let guid = Guid::generate();
        let counts = Arc::new(Mutex::new(Counts::default()));
        // Refusals a local user can repeat at will are logged once per uid and interval.
        let quiet = LogThrottle::default();
        let mut next: u64 = 0;
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE, ENOMEM, …: the connection waits in the backlog meanwhile.
                    log::warn!("login_socket: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (uid, pid) = match stream.peer_cred() {
                Ok(cred) => (cred.uid(), cred.pid().and_then(|p| u32::try_from(p).ok())),
                Err(e) => {
                    if let Some(n) = quiet.admit(u32::MAX, std::time::Instant::now()) {
                        log::warn!(
                            "login_socket: no peer credentials, connection closed: {e}{}",
                            left_out(n)
                        );
                    }
                    continue;
                }
            };
            let Some(ticket) = Ticket::take(&counts, uid) else {
                if let Some(n) = quiet.admit(uid, std::time::Instant::now()) {
                    log::warn!(
                        "caller_uid={uid} outcome=refused reason=\"too many connections to the \
                         login socket\"{}",
                        left_out(n)
                    );
                }
                continue;
            };
            next += 1;
            let caller = Caller {
                uid,
                sender: format!("peer/{next}"),
            };
            tokio::spawn(serve_peer(
                stream,
                (caller, pid),
                ticket,
                login.clone(),
                guid.clone(),
            ));
        }
    }

    /// Removes the socket file (at a clean stop; a stale one would only refuse connections).
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One connection: authenticate within [`HANDSHAKE_TIMEOUT`], serve the login interfaces
/// until the peer hangs up or stays idle too long, then end its sessions.
async fn serve_peer(
    stream: UnixStream,
    (caller, pid): (Caller, Option<u32>),
    ticket: Ticket,
    login: LoginServing,
    guid: Guid<'static>,
) {
    let sender = caller.sender.clone();
    let uid = caller.uid;
    let (read, write) = stream.into_split();
    let socket: BoxedSplit = Split::new(Box::new(PeerRead::new(read, (uid, pid))), Box::new(write));
    let built = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        zbus::connection::Builder::socket(socket)
            .server(guid)?
            .p2p()
            .auth_mechanism(AuthMechanism::External)
            .max_queued(MAX_QUEUED)
            // The stream is live before the socket is read: the module's first call
            // arrives with the authentication.
            .build_message_stream()
            .await
    })
    .await;
    let mut calls = match built {
        Ok(Ok(calls)) => calls,
        Ok(Err(e)) => {
            log::debug!("login_socket: caller_uid={uid} not connected: {e}");
            return;
        }
        Err(_) => {
            log::debug!("login_socket: caller_uid={uid} did not authenticate in time");
            return;
        }
    };
    let conn = zbus::Connection::from(&calls);
    let shared = peer_shared(&login.shared, caller, pid);
    log::debug!("login_socket: caller_uid={uid} connected as {sender}");
    loop {
        let idle = Duration::from_secs(login.core.config().login.prompt_timeout_seconds.get())
            + IDLE_SLACK;
        let msg = tokio::select! {
            msg = calls.next() => match msg {
                Some(Ok(msg)) => msg,
                // The peer hung up, sent what is not a message, or broke a limit.
                Some(Err(_)) | None => break,
            },
            () = tokio::time::sleep(idle) => {
                log::debug!("login_socket: {sender} idle for {idle:?}, closed");
                break;
            }
        };
        if peer_call(&shared, &conn, &msg).await.is_err() {
            break;
        }
    }
    let _ = conn.close().await;
    login.core.end_connection(&sender);
    drop(ticket);
}

/// Connections open, in total and per non-root uid.
#[derive(Default)]
struct Counts {
    total: usize,
    by_uid: HashMap<u32, usize>,
}

/// One admitted connection; released on drop.
struct Ticket {
    counts: Arc<Mutex<Counts>>,
    uid: u32,
}

impl Ticket {
    /// A place for a connection of `uid`, if [`MAX_PEERS`], [`MAX_PEERS_PER_UID`] and (for
    /// non-root) [`ROOT_RESERVE`] allow.
    fn take(counts: &Arc<Mutex<Counts>>, uid: u32) -> Option<Ticket> {
        let mut c = counts.lock().unwrap_or_else(PoisonError::into_inner);
        let of_uid = c.by_uid.get(&uid).copied().unwrap_or(0);
        let of_others = c.total - c.by_uid.get(&0).copied().unwrap_or(0);
        if c.total >= MAX_PEERS
            || (uid != 0 && (of_uid >= MAX_PEERS_PER_UID || of_others >= MAX_PEERS - ROOT_RESERVE))
        {
            return None;
        }
        c.total += 1;
        *c.by_uid.entry(uid).or_insert(0) += 1;
        Some(Ticket {
            counts: Arc::clone(counts),
            uid,
        })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.by_uid.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                c.by_uid.remove(&self.uid);
            }
        }
    }
}

/// The whole length of the D-Bus message whose 16-byte fixed header is `fixed`: header,
/// header fields padded to 8, body. `None` for a bad endianness byte. Pure, table-tested.
fn message_len(fixed: &[u8; 16]) -> Option<u64> {
    let word = |at: usize| -> [u8; 4] {
        let mut w = [0u8; 4];
        w.copy_from_slice(fixed.get(at..at + 4).unwrap_or(&[0; 4]));
        w
    };
    let (body, fields) = match fixed[0] {
        b'l' => (u32::from_le_bytes(word(4)), u32::from_le_bytes(word(12))),
        b'B' => (u32::from_be_bytes(word(4)), u32::from_be_bytes(word(12))),
        _ => return None,
    };
    Some((16 + u64::from(fields)).next_multiple_of(8) + u64::from(body))
}

fn refused(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_owned())
}

/// The read half of a login endpoint connection: no file descriptors, a bounded SASL
/// exchange, messages of at most [`MAX_MESSAGE`] bytes.
#[derive(Debug)]
struct PeerRead {
    inner: NoFds,
    /// Bytes the SASL exchange may still take; `None` once messages flow.
    handshake_left: Option<usize>,
    /// The SASL lines seen so far, until `BEGIN`.
    lines: SaslLines,
    /// The peer's uid and pid, from `SO_PEERCRED` at `accept`.
    peer: (u32, Option<u32>),
}

impl PeerRead {
    fn new(read: OwnedReadHalf, peer: (u32, Option<u32>)) -> PeerRead {
        PeerRead {
            inner: NoFds(read),
            handshake_left: Some(MAX_HANDSHAKE_BYTES),
            lines: SaslLines::default(),
            peer,
        }
    }
}

/// Checks the SASL lines a peer sends before zbus reads them: every line must end in CR LF,
/// up to the `BEGIN` line (what follows it is the first message, binary). Why: zbus's SASL
/// reader looks at the byte before each LF and panics (index underflow) on an empty line or
/// a bare LF first; the task would die, but a local user could make every connection print a
/// panic.
#[derive(Debug, Default)]
struct SaslLines {
    /// The current line, up to [`MAX_HANDSHAKE_BYTES`].
    line: Vec<u8>,
    /// The byte before the next one (`None` at the start).
    prev: Option<u8>,
    /// `BEGIN` seen: the rest is the message stream.
    done: bool,
}

impl SaslLines {
    /// Takes the next `bytes` of the stream. Pure, table-tested.
    fn feed(&mut self, bytes: &[u8]) -> Result<(), &'static str> {
        for &b in bytes {
            if self.done {
                return Ok(());
            }
            if b == b'\n' {
                if self.prev != Some(b'\r') {
                    return Err("a SASL line not ended by CR LF");
                }
                self.done = self.line == b"BEGIN\r";
                self.line.clear();
            } else if self.line.len() < MAX_HANDSHAKE_BYTES {
                self.line.push(b);
            }
            self.prev = Some(b);
        }
        Ok(())
    }
}

/// tokio's read half, refusing file descriptors (none belongs in a login call; each would
/// hold a descriptor of the daemon).
#[derive(Debug)]
struct NoFds(OwnedReadHalf);

#[async_trait::async_trait]
impl ReadHalf for NoFds {
    async fn recvmsg(&mut self, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
        let (n, fds) = self.0.recvmsg(buf).await?;
        if !fds.is_empty() {
            // Dropped, so closed, here.
            return Err(refused("file descriptors are not accepted"));
        }
        Ok((n, fds))
    }
}

#[async_trait::async_trait]
impl ReadHalf for PeerRead {
    async fn recvmsg(&mut self, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
        let got = self.inner.recvmsg(buf).await?;
        if let Some(left) = self.handshake_left.as_mut() {
            *left = left
                .checked_sub(got.0)
                .ok_or_else(|| refused("over-long authentication"))?;
            self.lines
                .feed(buf.get(..got.0).unwrap_or_default())
                .map_err(refused)?;
        }
        Ok(got)
    }

    /// zbus's own reading, once the fixed header shows the message is within
    /// [`MAX_MESSAGE`] (zbus reserves the whole claimed length before reading it).
    async fn receive_message(
        &mut self,
        seq: u64,
        already_received_bytes: &mut Vec<u8>,
        already_received_fds: &mut Vec<OwnedFd>,
    ) -> zbus::Result<Message> {
        self.handshake_left = None;
        while already_received_bytes.len() < 16 {
            let mut buf = [0u8; 16];
            let want = 16 - already_received_bytes.len();
            let (n, _) = self.inner.recvmsg(&mut buf[..want]).await?;
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
            }
            already_received_bytes.extend_from_slice(&buf[..n]);
        }
        let mut fixed = [0u8; 16];
        fixed.copy_from_slice(&already_received_bytes[..16]);
        match message_len(&fixed) {
            Some(len) if len <= MAX_MESSAGE => {}
            _ => return Err(zbus::Error::ExcessData),
        }
        self.inner
            .receive_message(seq, already_received_bytes, already_received_fds)
            .await
    }

    fn can_pass_unix_fd(&self) -> bool {
        false
    }

    /// What zbus's SASL `EXTERNAL` check compares the claimed uid with: the `SO_PEERCRED`
    /// read at `accept`. Why not zbus's own look-up: it also resolves the peer's name and
    /// groups through NSS (`getpwuid_r`, `getgrouplist`) on a blocking thread at every
    /// connection — a linear scan of `/etc/passwd` and `/etc/group` per login for a caller
    /// far down the files, for groups nothing here uses. D-Bus allows groups to be absent.
    async fn peer_credentials(&mut self) -> io::Result<ConnectionCredentials> {
        let (uid, pid) = self.peer;
        let creds = ConnectionCredentials::default().set_unix_user_id(uid);
        Ok(match pid {
            Some(pid) => creds.set_process_id(pid),
            None => creds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_root_users_together_leave_roots_reserve() {
        let counts = Arc::new(Mutex::new(Counts::default()));
        let mut held = Vec::new();
        // Users 1000, 1001, … each take their own maximum until no non-root place is left.
        for uid in 1000.. {
            let mut got = 0;
            while let Some(t) = Ticket::take(&counts, uid) {
                held.push(t);
                got += 1;
            }
            if got == 0 {
                break;
            }
        }
        assert_eq!(held.len(), MAX_PEERS - ROOT_RESERVE);
        for _ in 0..ROOT_RESERVE {
            held.push(Ticket::take(&counts, 0).expect("root's reserve"));
        }
        assert!(Ticket::take(&counts, 0).is_none(), "MAX_PEERS in all");
        drop(held);
        assert!(Ticket::take(&counts, 1000).is_some(), "places come back");
    }

    #[test]
    fn message_length_from_the_fixed_header() {
        let mut le = [0u8; 16];
        le[0] = b'l';
        le[4..8].copy_from_slice(&10u32.to_le_bytes());
        le[12..16].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(message_len(&le), Some(24 + 10));
        let mut be = [0u8; 16];
        be[0] = b'B';
        be[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        be[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            message_len(&be),
            Some((16 + u64::from(u32::MAX)).next_multiple_of(8) + u64::from(u32::MAX))
        );
        assert!(message_len(&be).unwrap() > MAX_MESSAGE);
        let mut bad = le;
        bad[0] = b'x';
        assert_eq!(message_len(&bad), None);
    }

    #[test]
    fn sasl_lines_must_end_in_cr_lf_until_begin() {
        let fed = |chunks: &[&[u8]]| {
            let mut l = SaslLines::default();
            chunks.iter().try_for_each(|c| l.feed(c)).map(|()| l.done)
        };
        // The module's pipelined start, then binary message bytes with bare LFs.
        assert_eq!(
            fed(&[b"\0AUTH EXTERNAL 30\r\nBEGIN\r\nl\x01\n\n\n"]),
            Ok(true)
        );
        // Split anywhere, CR and LF in different reads included.
        assert_eq!(
            fed(&[b"\0AUTH EXTERNAL 30\r", b"\nBEG", b"IN\r", b"\n\n"]),
            Ok(true)
        );
        assert_eq!(fed(&[b"\0AUTH EXTERNAL 30\r\n"]), Ok(false));
        for bad in [
            &b"\n"[..],
            b"\0AUTH\n",
            b"\0AUTH EXTERNAL 30\r\n\nBEGIN\r\n",
        ] {
            assert!(fed(&[bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tickets_bound_connections_per_uid_and_in_total() {
        let counts = Arc::new(Mutex::new(Counts::default()));
        let held: Vec<_> = (0..MAX_PEERS_PER_UID)
            .map(|_| Ticket::take(&counts, 1000).unwrap())
            .collect();
        assert!(Ticket::take(&counts, 1000).is_none(), "per uid");
        let other = Ticket::take(&counts, 1001).unwrap();
        drop(held);
        assert!(Ticket::take(&counts, 1000).is_some(), "released on drop");
        drop(other);
        let root: Vec<_> = (0..MAX_PEERS)
            .map(|_| Ticket::take(&counts, 0).unwrap())
            .collect();
        assert!(Ticket::take(&counts, 0).is_none(), "in total, root too");
        assert!(Ticket::take(&counts, 1000).is_none());
        drop(root);
        let c = counts.lock().unwrap();
        assert_eq!((c.total, c.by_uid.len()), (0, 0));
    }
}
