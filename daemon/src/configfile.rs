// SPDX-License-Identifier: MIT OR Apache-2.0
//! Reading the configuration file the way every path that uses it must: `--check-config`,
//! start-up, `SIGHUP` and `Admin1.Reload` all go through [`load`], so none of them can run on
//! a policy the others would refuse.
//!
//! Before reading, the file and the directories on the way to it must be safe to trust
//! (as sshd's StrictModes). On top of [`Config::load`] (syntax, ranges, contradictions) this resolves the policy's
//! group names through NSS ([`Config::check_groups`]): a required group that does not
//! resolve is an error, because a misspelt name would silently switch 2FA off for the real
//! group; names that only widen protection when unknown are warnings, logged at start and
//! at every reload.

use std::path::Path;

use twostep_config::{Config, Finding};

use crate::core::trust;

/// A configuration that may be used, with what the admin should still hear about.
pub struct Loaded {
    pub config: Config,
    /// One sentence each, without the "warning:" prefix.
    pub warnings: Vec<String>,
}

/// Check that `path` is safe to trust ([`trust::check_config_file`]: owner, mode, the
/// directories on the way), read and parse it, and check it against the host's groups.
///
/// # Errors
/// Every reason the file cannot be used, one per line, each naming the file.
pub fn load(path: &Path) -> Result<Loaded, String> {
    trust::check_config_file(path)?;
    let config = Config::load(path).map_err(|e| e.to_string())?;
    checked(config, path, group_exists)
}

/// The steps of [`load`] after the file was read: `config` checked against the host's
/// groups (`exists` answers as [`group_exists`]). Apart for the fuzzer (`crate::fuzzing`).
pub(crate) fn checked(
    config: Config,
    path: &Path,
    group_exists: impl Fn(&str) -> Result<bool, String>,
) -> Result<Loaded, String> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for m in crate::mailer::check_files(&config.mail) {
        errors.push(format!("{}: {m}", path.display()));
    }
    let store = crate::core::store::postgres::tls_findings(&config.store);
    for f in config.check_groups(group_exists).into_iter().chain(store) {
        match f {
            Finding::Error(m) => errors.push(format!("{}: {m}", path.display())),
            Finding::Warning(m) => warnings.push(format!("{}: {m}", path.display())),
        }
    }
    if errors.is_empty() {
        Ok(Loaded { config, warnings })
    } else {
        Err(errors.join("\n"))
    }
}

/// Whether NSS knows the group `name` (exact look-up, getgrnam_r).
fn group_exists(name: &str) -> Result<bool, String> {
    nix::unistd::Group::from_name(name)
        .map(|g| g.is_some())
        .map_err(|e| e.to_string())
}

/// Log each warning at warning level.
pub fn log_warnings(loaded: &Loaded) {
    for w in &loaded.warnings {
        log::warn!("{w}");
    }
}
