// SPDX-License-Identifier: MIT OR Apache-2.0
//! A stand-in for `twostepd` on a private [`Bus`]: it owns `org.twostep.Twostep1` as root
//! (so it passes the module's `bus_uid=0` owner check, as any root process could), serves
//! `org.twostep.Login1`, answers each call as the test scripts it, and counts the calls.
//!
//! What it is for: the module's answer to error names a daemon (or anything owning the
//! name) sends, such as `org.freedesktop.DBus.Error.NoReply`, which the real daemon never
//! sends; and counting that a login made no call at all.
//!
//! zbus (the workspace's D-Bus crate) on a tokio runtime of its own, in the test process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use zbus::fdo;

use crate::bus::TWOSTEP_NAME;
use crate::Bus;

/// The daemon's object path and login interface (the proto crate defines the same).
const OBJECT_PATH: &str = "/org/twostep/Twostep1";

/// One of the `org.freedesktop.DBus.Error.*` names the stand-in can answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusError {
    NoReply,
    ServiceUnknown,
    Timeout,
    TimedOut,
    NameHasNoOwner,
    Disconnected,
}

impl BusError {
    /// Every name, for tests that try them all.
    pub const ALL: [BusError; 6] = [
        BusError::NoReply,
        BusError::ServiceUnknown,
        BusError::Timeout,
        BusError::TimedOut,
        BusError::NameHasNoOwner,
        BusError::Disconnected,
    ];

    /// The full D-Bus error name.
    pub fn name(self) -> &'static str {
        match self {
            BusError::NoReply => "org.freedesktop.DBus.Error.NoReply",
            BusError::ServiceUnknown => "org.freedesktop.DBus.Error.ServiceUnknown",
            BusError::Timeout => "org.freedesktop.DBus.Error.Timeout",
            BusError::TimedOut => "org.freedesktop.DBus.Error.TimedOut",
            BusError::NameHasNoOwner => "org.freedesktop.DBus.Error.NameHasNoOwner",
            BusError::Disconnected => "org.freedesktop.DBus.Error.Disconnected",
        }
    }

    fn error(self) -> fdo::Error {
        let text = "sent by the twostep-e2e stand-in daemon".to_string();
        match self {
            BusError::NoReply => fdo::Error::NoReply(text),
            BusError::ServiceUnknown => fdo::Error::ServiceUnknown(text),
            BusError::Timeout => fdo::Error::Timeout(text),
            BusError::TimedOut => fdo::Error::TimedOut(text),
            BusError::NameHasNoOwner => fdo::Error::NameHasNoOwner(text),
            BusError::Disconnected => fdo::Error::Disconnected(text),
        }
    }
}

/// How the stand-in answers one method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `Begin`: a 6-digit code prompt (session `fake-session`); `Answer`: a denied verdict.
    Normally,
    /// This error name.
    Error(BusError),
    /// `Begin`: as [`Answer::Normally`]; `Answer`: a success verdict, whatever was typed
    /// (an always-yes impostor, for tests proving the module never reaches it).
    Yes,
}

/// What the stand-in does for `Begin` and for `Answer`.
#[derive(Clone, Copy, Debug)]
pub struct Script {
    pub begin: Answer,
    pub answer: Answer,
}

struct Login {
    script: Script,
    begins: Arc<AtomicUsize>,
    answers: Arc<AtomicUsize>,
}

#[zbus::interface(name = "org.twostep.Login1")]
impl Login {
    async fn begin(
        &self,
        _user: String,
        _context: HashMap<String, String>,
    ) -> fdo::Result<(String, String, String, String, u32)> {
        self.begins.fetch_add(1, Ordering::SeqCst);
        match self.script.begin {
            Answer::Normally | Answer::Yes => Ok((
                "fake-session".into(),
                "prompt-code".into(),
                String::new(),
                crate::prompts::CODE_ONLY.into(),
                6,
            )),
            Answer::Error(e) => Err(e.error()),
        }
    }

    async fn answer(
        &self,
        _session: String,
        _answer: Vec<u8>,
    ) -> fdo::Result<(String, String, String, u32)> {
        self.answers.fetch_add(1, Ordering::SeqCst);
        match self.script.answer {
            Answer::Normally => Ok(("denied".into(), String::new(), String::new(), 0)),
            Answer::Yes => Ok(("success".into(), String::new(), String::new(), 0)),
            Answer::Error(e) => Err(e.error()),
        }
    }
}

/// The stand-in, owning the daemon's name until dropped.
pub struct FakeOwner {
    begins: Arc<AtomicUsize>,
    answers: Arc<AtomicUsize>,
    // Fields drop in order: the connection (releasing the name) before its runtime.
    conn: Option<zbus::Connection>,
    runtime: tokio::runtime::Runtime,
}

impl FakeOwner {
    /// Connect to `bus` as root, own `org.twostep.Twostep1` and serve `script`.
    pub fn start(bus: &Bus, script: Script) -> FakeOwner {
        crate::require_root();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let begins = Arc::new(AtomicUsize::new(0));
        let answers = Arc::new(AtomicUsize::new(0));
        let login = Login {
            script,
            begins: Arc::clone(&begins),
            answers: Arc::clone(&answers),
        };
        let conn = runtime
            .block_on(async {
                zbus::connection::Builder::address(bus.address())?
                    .name(TWOSTEP_NAME)?
                    .serve_at(OBJECT_PATH, login)?
                    .build()
                    .await
            })
            .unwrap_or_else(|e| panic!("the stand-in daemon cannot own {TWOSTEP_NAME}: {e}"));
        assert!(
            bus.name_has_owner(TWOSTEP_NAME),
            "the stand-in does not own {TWOSTEP_NAME}"
        );
        FakeOwner {
            begins,
            answers,
            conn: Some(conn),
            runtime,
        }
    }

    /// How many `Begin` calls reached the stand-in.
    pub fn begins(&self) -> usize {
        self.begins.load(Ordering::SeqCst)
    }

    /// How many `Answer` calls reached the stand-in.
    pub fn answers(&self) -> usize {
        self.answers.load(Ordering::SeqCst)
    }
}

impl Drop for FakeOwner {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.runtime.block_on(async move { drop(conn) });
        }
    }
}
