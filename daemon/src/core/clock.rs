// SPDX-License-Identifier: MIT OR Apache-2.0
//! The one place that reads the wall clock.

use serde::{Deserialize, Serialize};

/// Seconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixTime(pub u64);

impl UnixTime {
    pub fn plus(self, secs: u64) -> UnixTime {
        UnixTime(self.0.saturating_add(secs))
    }
}

/// The current time. A clock before 1970 reads as 0, which accepts no current code.
#[allow(clippy::disallowed_methods)] // Why: the single allowed call; core takes time as a parameter.
pub fn now() -> UnixTime {
    UnixTime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
}
