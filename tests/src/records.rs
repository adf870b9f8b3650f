// SPDX-License-Identifier: MIT OR Apache-2.0
//! Records in the earlier, name-keyed layout of the store (`users/<hex of the name>.rec`),
//! written the way a daemon from before records were keyed by uid left them: for the tests
//! that prove such state dirs keep working.

use std::path::Path;

use twostepd::core::record::{Authenticator, Record, Secret, TotpKey, DEFAULT_AUTHENTICATOR};
use twostepd::core::UnixTime;

use crate::{otp, unique};

/// A name-keyed record of `name` with one SHA1/6/30 authenticator of base32 `secret`,
/// added an hour ago.
pub fn with_key(name: &str, secret: &str) -> Record {
    let added = UnixTime(otp::now() - 3600);
    let mut record = Record::new(name);
    record.authenticators.push(Authenticator {
        name: DEFAULT_AUTHENTICATOR.into(),
        added,
        last_used: None,
        last_step: None,
        key: TotpKey {
            secret: Secret(secret.into()),
            algorithm: twostep_config::Algorithm::SHA1,
            digits: 6,
            period: 30,
            created: added,
        },
    });
    record
}

/// Write `record` as `name`'s name-keyed record under `state_dir/users` (mode 0600, as the
/// store makes them); the file name.
pub fn write_name_keyed(state_dir: &Path, name: &str, record: &Record) -> String {
    let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
    let file = format!("{hex}.rec");
    let path = state_dir.join("users").join(&file);
    let bytes = twostepd::core::store::file_bytes(record).expect("record bytes");
    std::fs::write(&path, bytes).expect("write name-keyed record");
    unique::chmod(&path, 0o600);
    file
}
