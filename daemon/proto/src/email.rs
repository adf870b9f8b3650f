// SPDX-License-Identifier: MIT OR Apache-2.0
//! `org.twostep.Email1`: codes by email and the mailer, an interface of its own beside
//! `User1` and `Admin1` (same object, same error names).

/// Name of the email interface.
pub const EMAIL_INTERFACE: &str = "org.twostep.Email1";

/// `org.twostep.Email1`.
#[zbus::proxy(
    interface = "org.twostep.Email1",
    default_service = "org.twostep.Twostep1",
    default_path = "/org/twostep/Twostep1",
    gen_blocking = false
)]
pub trait Email {
    /// Make `address` the pending address of `user` (empty: the caller; another user:
    /// admins only) and mail it a confirming code; returns the masked address. `proof`: a
    /// current code or recovery code when the caller changes their own account that
    /// already has a second factor, else empty.
    fn set(&self, user: &str, address: &str, proof: &[u8]) -> Result<String, crate::Error>;
    /// Confirm the caller's pending address with the mailed `code`; returns recovery codes
    /// made now (shown once; empty when the caller has some).
    fn confirm(&self, code: &[u8]) -> Result<Vec<String>, crate::Error>;
    /// Remove the address of `user` (empty: the caller, with `proof` as for `set`;
    /// another user: admins only).
    fn remove(&self, user: &str, proof: &[u8]) -> Result<(), crate::Error>;
    /// Admins: send a test message to `address`; returns the mail server's answer.
    fn test(&self, address: &str) -> Result<String, crate::Error>;
}
