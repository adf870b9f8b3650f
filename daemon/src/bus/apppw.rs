// SPDX-License-Identifier: MIT OR Apache-2.0
//! `org.twostep.AppPassword1`: app passwords of the caller, and of any user for admins.
//! Each method: identify the caller, run the core off the bus executor, map the error (the
//! core authorizes). The login-side check is not here: it runs in the login conversation.

use zbus::message::Header;
use zeroize::Zeroizing;

use twostep_proto::{AppPasswordEntry, Error};

use super::iface::Shared;
use crate::core::apppw::{AppPasswordInfo, NewAppPassword};
use crate::core::clock;

/// The served interface.
pub struct AppPasswordIface(pub(super) Shared);

/// Bounds on what a create carries (the core checks the values).
const MAX_ARG_LEN: usize = 256;
const MAX_SERVICES: usize = 64;

fn entry(a: AppPasswordInfo) -> AppPasswordEntry {
    let (last_used, last_service, last_rhost) =
        a.last_used.map_or((0, String::new(), String::new()), |u| {
            (u.at.0, u.service, u.rhost)
        });
    AppPasswordEntry {
        name: a.name,
        id: a.id,
        services: a.services,
        created: a.created.0,
        expires: a.expires.map_or(0, |t| t.0),
        revoked: a.revoked.map_or(0, |t| t.0),
        last_used,
        last_service,
        last_rhost,
    }
}

fn bounded(values: &[&String]) -> Result<(), Error> {
    if values.iter().any(|v| v.len() > MAX_ARG_LEN) {
        return Err(Error::InvalidArgument("an argument is too long".into()));
    }
    Ok(())
}

#[zbus::interface(name = "org.twostep.AppPassword1")]
impl AppPasswordIface {
    /// Create an app password for the caller; `proof` is a current code or a recovery
    /// code. Returns the password (once) and its entry.
    async fn create(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        name: String,
        services: Vec<String>,
        expires_in: u64,
        proof: Vec<u8>,
    ) -> Result<(String, AppPasswordEntry), Error> {
        let (caller, _slot) = self.0.caller(&hdr).await?;
        let proof = Zeroizing::new(proof);
        if services.len() > MAX_SERVICES {
            return Err(Error::InvalidArgument("too many services".into()));
        }
        bounded(&services.iter().chain([&name]).collect::<Vec<_>>())?;
        let created = self
            .0
            .run(move |core| {
                let new = NewAppPassword {
                    name: &name,
                    services: &services,
                    expires_in,
                };
                core.app_password_create(&caller, &new, &proof, clock::now())
            })
            .await?;
        Ok((created.password.to_string(), entry(created.info)))
    }

    /// The caller's app passwords.
    async fn list(&self, #[zbus(header)] hdr: Header<'_>) -> Result<Vec<AppPasswordEntry>, Error> {
        let (caller, _slot) = self.0.caller(&hdr).await?;
        let list = self.0.run(move |core| core.app_passwords(&caller)).await?;
        Ok(list.into_iter().map(entry).collect())
    }

    /// Revoke the caller's app password `key` (name or id).
    async fn revoke(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        key: String,
    ) -> Result<AppPasswordEntry, Error> {
        let (caller, _slot) = self.0.caller(&hdr).await?;
        bounded(&[&key])?;
        let a = self
            .0
            .run(move |core| core.app_password_revoke(&caller, &key, clock::now()))
            .await?;
        Ok(entry(a))
    }

    /// Admins: `user`'s app passwords.
    async fn list_user(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        user: String,
    ) -> Result<Vec<AppPasswordEntry>, Error> {
        let (caller, _slot) = self.0.caller(&hdr).await?;
        let list = self
            .0
            .run(move |core| core.admin_app_passwords(&caller, &user))
            .await?;
        Ok(list.into_iter().map(entry).collect())
    }

    /// Admins: revoke `user`'s app password `key` (name or id).
    async fn revoke_user(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        user: String,
        key: String,
    ) -> Result<AppPasswordEntry, Error> {
        let (caller, _slot) = self.0.caller(&hdr).await?;
        bounded(&[&key])?;
        let a = self
            .0
            .run(move |core| core.admin_app_password_revoke(&caller, &user, &key, clock::now()))
            .await?;
        Ok(entry(a))
    }
}
