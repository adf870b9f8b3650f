// SPDX-License-Identifier: MIT OR Apache-2.0
//! Helpers the core's unit tests share (no root, no NSS, no bus).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::{Caller, UnixTime};

/// A caller with `uid` on a connection of its own.
pub fn caller(uid: u32) -> Caller {
    Caller {
        uid,
        sender: format!(":1.{uid}"),
    }
}

/// The 6-digit SHA1/30 s code of base32 `secret` at `at` (RFC 6238), through totp-rs.
pub fn code(secret: &str, at: UnixTime) -> String {
    let raw = totp_rs::Secret::Encoded(secret.into()).to_bytes().unwrap();
    totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 0, 30, raw, None, String::new())
        .unwrap()
        .generate(at.0)
}
