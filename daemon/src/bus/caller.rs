// SPDX-License-Identifier: MIT OR Apache-2.0
//! Who is calling: the message header's sender → GetConnectionCredentials → UnixUserID.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use zbus::fdo::DBusProxy;
use zbus::message::Header;
use zbus::names::BusName;

use crate::core::Caller;
use twostep_proto::Error;

/// Unique names remembered before the cache starts over.
const MAX_CACHED: usize = 4096;

#[derive(Clone)]
pub struct Identify {
    dbus: DBusProxy<'static>,
    /// uid per unique bus name. Why this is sound: the bus never reuses a unique name, and a
    /// connection's uid cannot change, so a name's answer stays true as long as the bus runs
    /// (and this connection with it).
    known: Arc<Mutex<HashMap<String, u32>>>,
}

impl Identify {
    pub fn new(dbus: DBusProxy<'static>) -> Identify {
        Identify {
            dbus,
            known: Arc::default(),
        }
    }

    fn cached(&self, sender: &str) -> Option<u32> {
        self.known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(sender)
            .copied()
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
        let creds = self
            .dbus
            .get_connection_credentials(BusName::Unique(sender.clone()))
            .await
            .map_err(|_| denied())?;
        let uid = creds.unix_user_id().ok_or_else(denied)?;
        self.remember(sender.as_str(), uid);
        Ok(Caller {
            uid,
            sender: sender.to_string(),
        })
    }
}
