// SPDX-License-Identifier: MIT OR Apache-2.0
//! Who is calling: the message header's sender → GetConnectionCredentials → UnixUserID.

use zbus::fdo::DBusProxy;
use zbus::message::Header;
use zbus::names::BusName;

use crate::core::Caller;
use twostep_proto::Error;

#[derive(Clone)]
pub struct Identify {
    dbus: DBusProxy<'static>,
}

impl Identify {
    pub fn new(dbus: DBusProxy<'static>) -> Identify {
        Identify { dbus }
    }

    /// The caller's uid as the bus reports it. A missing sender or uid, or a failed
    /// look-up, is a denial, never a default.
    ///
    /// # Errors
    /// [`Error::AccessDenied`].
    pub async fn caller(&self, hdr: &Header<'_>) -> Result<Caller, Error> {
        let denied = || Error::AccessDenied("cannot identify the caller".into());
        let sender = hdr.sender().ok_or_else(denied)?;
        let creds = self
            .dbus
            .get_connection_credentials(BusName::Unique(sender.clone()))
            .await
            .map_err(|_| denied())?;
        let uid = creds.unix_user_id().ok_or_else(denied)?;
        Ok(Caller {
            uid,
            sender: sender.to_string(),
        })
    }
}
