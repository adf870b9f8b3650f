// SPDX-License-Identifier: MIT OR Apache-2.0
//! `org.twostep.Email1` ([`twostep_proto::EMAIL_INTERFACE`]): identify the caller, bound
//! the arguments, run `core::email_flows` off the bus executor, map the error.

use zbus::message::Header;
use zeroize::Zeroizing;

use super::iface::Shared;
use crate::core::email::MAX_ADDRESS_LEN;
use crate::core::{clock, email_flows};
use twostep_proto::{limits, Error};

/// `org.twostep.Email1`.
pub struct EmailIface(pub(super) Shared);

fn bounded(what: &str, value: &str, max: usize) -> Result<(), Error> {
    if value.len() > max {
        return Err(Error::InvalidArgument(format!("{what} is too long")));
    }
    Ok(())
}

fn bounded_proof(proof: &[u8]) -> Result<(), Error> {
    if proof.len() > limits::MAX_ANSWER_LEN {
        return Err(Error::InvalidArgument("proof is too long".into()));
    }
    Ok(())
}

#[zbus::interface(name = "org.twostep.Email1")]
impl EmailIface {
    /// Make `address` the pending address of `user` (empty: the caller's own; another
    /// user: admins only) and mail it a confirming code; the masked address. `proof`: a
    /// current code or recovery code, needed when the caller changes their own account
    /// that already has a second factor (empty otherwise).
    async fn set(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        user: String,
        address: String,
        proof: Vec<u8>,
    ) -> Result<String, Error> {
        let proof = Zeroizing::new(proof);
        bounded("user", &user, limits::MAX_USER_LEN)?;
        bounded("address", &address, MAX_ADDRESS_LEN + 2)?;
        bounded_proof(&proof)?;
        let (caller, _slot) = self.0.caller(&hdr).await?;
        self.0
            .run(move |core| email_flows::set(core, &caller, &user, &address, &proof, clock::now()))
            .await
    }

    /// Confirm the caller's pending address with the mailed `code`; recovery codes made
    /// now (shown once), or none.
    async fn confirm(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        code: Vec<u8>,
    ) -> Result<Vec<String>, Error> {
        let code = Zeroizing::new(code);
        if code.len() > limits::MAX_ANSWER_LEN {
            return Err(Error::InvalidArgument("code is too long".into()));
        }
        let (caller, _slot) = self.0.caller(&hdr).await?;
        let shown = self
            .0
            .run(move |core| email_flows::confirm_own(core, &caller, &code, clock::now()))
            .await?;
        Ok(shown.iter().map(|c| c.to_string()).collect())
    }

    /// Remove the address of `user` (empty: the caller's own, with `proof` as for `Set`;
    /// another user: admins only).
    async fn remove(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        user: String,
        proof: Vec<u8>,
    ) -> Result<(), Error> {
        let proof = Zeroizing::new(proof);
        bounded("user", &user, limits::MAX_USER_LEN)?;
        bounded_proof(&proof)?;
        let (caller, _slot) = self.0.caller(&hdr).await?;
        self.0
            .run(move |core| email_flows::remove(core, &caller, &user, &proof, clock::now()))
            .await
    }

    /// Admins: send a test message to `address`; the mail server's answer.
    async fn test(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        address: String,
    ) -> Result<String, Error> {
        bounded("address", &address, MAX_ADDRESS_LEN + 2)?;
        let (caller, _slot) = self.0.caller(&hdr).await?;
        self.0
            .run(move |core| email_flows::test(core, &caller, &address))
            .await
    }
}
