// SPDX-License-Identifier: MIT OR Apache-2.0
//! The daemon's periodic task that announces expiring app passwords: once at start, then
//! every [`PERIOD`], it asks the core for the notices due (`Core::app_password_notices`:
//! found with `apppw::notices_due`, marked in the record once, logged, and mailed to the
//! user's confirmed address as `mail::Notice::AppPasswordExpiring` when mail is on).

use std::sync::Arc;
use std::time::Duration;

use crate::core::apppw::Notice;
use crate::core::{clock, Core};

/// Time between two rounds.
pub const PERIOD: Duration = Duration::from_secs(3600);

/// Run for ever: one round now, then one every [`PERIOD`]. A failed round is logged and
/// retried at the next.
pub async fn run(core: Arc<Core>) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let core = Arc::clone(&core);
        let round = tokio::task::spawn_blocking(move || core.app_password_notices(clock::now()));
        match round.await {
            Ok(Ok(notices)) => deliver(&notices),
            Ok(Err(e)) => log::warn!("action=app-password-notices outcome=failed reason={e}"),
            Err(e) => log::warn!("action=app-password-notices outcome=failed reason={e}"),
        }
    }
}

/// One line per round (once an hour), so a round can be seen to have run; each notice was
/// already logged, marked and mailed by the core.
fn deliver(notices: &[Notice]) {
    log::info!(
        "action=app-password-notices outcome=done announced={}",
        notices.len()
    );
}
