// SPDX-License-Identifier: MIT OR Apache-2.0
//! Which way the module reaches the daemon in this test thread: the bus, or the login
//! socket peer to peer. Security tests run on both ([`both_transports!`](crate::both_transports)),
//! so neither path can be forgotten.
//!
//! The harness derives everything from the bus address: the login socket of the daemon on
//! a bus `/…/dir/bus.sock` is `/…/dir/twostep/login.sock`. [`Transport::P2p`]: the daemon
//! serves it and waits until it is there; [`Transport::Bus`] (the default): the daemon
//! serves none (`login_socket = ""`). The module's line names that socket in both modes
//! (`socket=…`): on the bus path it is absent, so every test on the bus also goes through
//! the module's fallback (`ENOENT` → the bus).

use std::cell::Cell;
use std::path::PathBuf;

/// The path the module is given and the daemon serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// The system bus path: no login socket.
    Bus,
    /// The login socket, peer to peer.
    P2p,
}

thread_local! {
    static CURRENT: Cell<Transport> = const { Cell::new(Transport::Bus) };
}

/// This thread's transport.
pub fn current() -> Transport {
    CURRENT.with(Cell::get)
}

/// Runs `f` with `t` as this thread's transport.
pub fn with<R>(t: Transport, f: impl FnOnce() -> R) -> R {
    let _scoped = Scoped::set(t);
    f()
}

/// Sets this thread's transport until dropped (for threads a test spawns).
pub struct Scoped(Transport);

impl Scoped {
    /// `t` for this thread from now until the guard drops.
    pub fn set(t: Transport) -> Scoped {
        Scoped(CURRENT.with(|c| c.replace(t)))
    }
}

impl Drop for Scoped {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

/// The login socket of the daemon on the bus at `bus_address` (`unix:path=/…/bus.sock`).
pub fn login_socket(bus_address: &str) -> PathBuf {
    let path = bus_address
        .strip_prefix("unix:path=")
        .unwrap_or(bus_address);
    let dir = std::path::Path::new(path)
        .parent()
        .unwrap_or_else(|| std::path::Path::new("/nonexistent"));
    dir.join("twostep").join("login.sock")
}

/// `socket=<login socket>` for the module's line, unless `extra_args` names one already.
pub fn module_arg(bus_address: &str, extra_args: &str) -> String {
    if extra_args
        .split_whitespace()
        .any(|a| a.starts_with("socket="))
    {
        String::new()
    } else {
        format!("socket={}", login_socket(bus_address).display())
    }
}

/// `login_socket` for the daemon's config on `bus_address`: the socket on
/// [`Transport::P2p`], none on [`Transport::Bus`].
pub fn daemon_socket(bus_address: &str) -> Option<PathBuf> {
    match current() {
        Transport::Bus => None,
        Transport::P2p => Some(login_socket(bus_address)),
    }
}

/// Two tests for each named function (which must not carry `#[test]` itself): `NAME::bus`
/// and `NAME::p2p`, running it with [`Transport::Bus`] and [`Transport::P2p`].
#[macro_export]
macro_rules! both_transports {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[test]
                fn bus() {
                    $crate::transport::with($crate::transport::Transport::Bus, super::$name);
                }

                #[test]
                fn p2p() {
                    $crate::transport::with($crate::transport::Transport::P2p, super::$name);
                }
            }
        )+
    };
}
