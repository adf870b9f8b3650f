// SPDX-License-Identifier: MIT OR Apache-2.0
//! Who is calling: the message header's sender → GetConnectionCredentials → UnixUserID.
//!
//! The answer is remembered per unique name, and [`Identify::watch`] asks for it as soon as a
//! connection appears on the bus and forgets it when the connection is gone. Why ahead of
//! time: a PAM module opens a new connection for every login, and its first call would
//! otherwise wait for one more round trip through the bus. The uid still comes only from
//! the bus, for exactly that unique name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use zbus::fdo::DBusProxy;
use zbus::message::Header;
use zbus::names::{BusName, UniqueName};

use crate::core::Caller;
use twostep_proto::Error;

/// Unique names remembered before the cache starts over.
const MAX_CACHED: usize = 4096;

/// What to do when a connection leaves the bus (its unique name).
type GoneHook = Arc<dyn Fn(&str) + Send + Sync>;

#[derive(Clone)]
pub struct Identify {
    dbus: DBusProxy<'static>,
    gone: Option<GoneHook>,
    /// uid per unique bus name. Why this is sound: the bus never reuses a unique name, and a
    /// connection's uid cannot change, so a name's answer stays true as long as the bus runs
    /// (and this connection with it).
    known: Arc<Mutex<HashMap<String, u32>>>,
}

impl Identify {
    pub fn new(dbus: DBusProxy<'static>) -> Identify {
        Identify {
            dbus,
            gone: None,
            known: Arc::default(),
        }
    }

    /// Also call `hook` with the unique name of every connection that leaves the bus
    /// (seen by [`Identify::watch`]): per-connection state ends with the connection.
    #[must_use]
    pub fn on_gone(mut self, hook: impl Fn(&str) + Send + Sync + 'static) -> Identify {
        self.gone = Some(Arc::new(hook));
        self
    }

    fn cached(&self, sender: &str) -> Option<u32> {
        self.known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(sender)
            .copied()
    }

    fn forget(&self, sender: &str) {
        self.known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(sender);
    }

    fn remember(&self, sender: &str, uid: u32) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        if known.len() >= MAX_CACHED {
            known.clear();
        }
        known.insert(sender.to_owned(), uid);
    }

    /// The caller's uid as the bus reports it. A missing sender or uid, or a failed
    /// look-up, is a denial, never a default.
    ///
    /// # Errors
    /// [`Error::AccessDenied`].
    pub async fn caller(&self, hdr: &Header<'_>) -> Result<Caller, Error> {
        let denied = || Error::AccessDenied("cannot identify the caller".into());
        let sender = hdr.sender().ok_or_else(denied)?;
        if let Some(uid) = self.cached(sender.as_str()) {
            return Ok(Caller {
                uid,
                sender: sender.to_string(),
            });
        }
        let uid = self.look_up(sender).await.ok_or_else(denied)?;
        Ok(Caller {
            uid,
            sender: sender.to_string(),
        })
    }

    /// The pid the bus reports for the sender of `hdr` (`GetConnectionUnixProcessID`: the
    /// process that connected, as the kernel told the bus), `None` when it cannot say.
    pub async fn process_id(&self, hdr: &Header<'_>) -> Option<u32> {
        let sender = hdr.sender()?;
        self.dbus
            .get_connection_unix_process_id(BusName::Unique(sender.clone()))
            .await
            .ok()
    }

    /// Ask the bus for the uid of `name`, and remember it.
    async fn look_up(&self, name: &UniqueName<'_>) -> Option<u32> {
        let creds = self
            .dbus
            .get_connection_credentials(BusName::Unique(name.clone()))
            .await
            .ok()?;
        let uid = creds.unix_user_id()?;
        self.remember(name.as_str(), uid);
        Some(uid)
    }

    /// Learn the uid of each new connection as it appears and forget connections that are
    /// gone, until the bus connection ends (then the daemon has nobody to answer).
    ///
    /// # Errors
    /// The bus refused the subscription.
    pub async fn watch(&self) -> zbus::Result<()> {
        use futures_lite::StreamExt;
        let mut changes = self.dbus.receive_name_owner_changed().await?;
        while let Some(signal) = changes.next().await {
            let Ok(args) = signal.args() else { continue };
            let BusName::Unique(name) = args.name() else {
                continue;
            };
            match (args.old_owner().as_ref(), args.new_owner().as_ref()) {
                (None, Some(_)) => {
                    let this = self.clone();
                    let name = name.to_owned();
                    tokio::spawn(async move { this.look_up(&name).await });
                }
                (_, None) => {
                    self.forget(name.as_str());
                    if let Some(gone) = &self.gone {
                        gone(name.as_str());
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}
