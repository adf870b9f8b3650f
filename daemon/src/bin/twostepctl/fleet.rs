// SPDX-License-Identifier: MIT OR Apache-2.0
//! `twostepctl admin …`: `export FILE`, `import twostep FILE` and `rotate-key
//! NEW_KEY_FILE` (root only): moving a host's accounts between stores without re-enrolment,
//! and changing the store key (docs/fleet.md); `import google-authenticator|oath` carries
//! enrolments over from other 2FA modules (import.rs, docs/migrating.md).

use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use clap::Subcommand;
use twostep_proto::StoreProxy;

use crate::io::explain;

/// `twostepctl admin …`
#[derive(Subcommand)]
pub enum AdminCommand {
    /// Write every account (secrets sealed with the store key) to FILE (created, mode
    /// 0600; an existing file is refused). Root only.
    Export { file: PathBuf },
    /// Add accounts: from a twostep export (root only), or carry enrolments over from
    /// another 2FA module. Root only.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Seal every secret with the key in NEW_KEY_FILE (32 random bytes, root only, 0600)
    /// and re-seal every record now; logins keep working. Then install the new key as the
    /// key file on every host (see docs/fleet.md). Root only.
    RotateKey {
        /// An absolute path the daemon reads.
        new_key_file: PathBuf,
    },
}

/// `twostepctl admin import …`
#[derive(Subcommand)]
pub enum ImportCommand {
    /// An export of twostep (`twostepctl admin export`): accounts the store does not have
    /// are created; the same record is left; another record is reported and left alone.
    Twostep {
        file: PathBuf,
        /// Only say what would change.
        #[arg(long)]
        dry_run: bool,
    },
    #[command(flatten)]
    From(crate::import::ImportFrom),
}

pub async fn run(conn: &zbus::Connection, cmd: AdminCommand) -> Result<(), String> {
    let store = || async { StoreProxy::new(conn).await.map_err(explain) };
    match cmd {
        AdminCommand::Import(ImportCommand::From(from)) => crate::import::run(conn, from).await,
        AdminCommand::Export { file } => {
            let out = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&file)
                .map_err(|e| format!("cannot create {}: {e}", file.display()))?;
            let (exported, problems) = store()
                .await?
                .export(out.as_fd().into())
                .await
                .map_err(explain)?;
            for p in &problems {
                outln!("not exported: {p}");
            }
            outln!("exported {exported} account(s) to {}", file.display());
            Ok(())
        }
        AdminCommand::Import(ImportCommand::Twostep { file, dry_run }) => {
            let input =
                File::open(&file).map_err(|e| format!("cannot open {}: {e}", file.display()))?;
            let (created, unchanged, conflicts) = store()
                .await?
                .import(input.as_fd().into(), dry_run)
                .await
                .map_err(explain)?;
            let verb = if dry_run { "would create" } else { "created" };
            for c in &conflicts {
                outln!("conflict: {c}");
            }
            outln!(
                "{verb} {created} account(s), {unchanged} already the same, {} conflict(s)",
                conflicts.len()
            );
            Ok(())
        }
        AdminCommand::RotateKey { new_key_file } => {
            let path = std::path::absolute(&new_key_file)
                .map_err(|e| format!("{}: {e}", new_key_file.display()))?;
            let (old, new, resealed, unchanged, problems) = store()
                .await?
                .rotate_key(&path.to_string_lossy())
                .await
                .map_err(explain)?;
            for p in &problems {
                outln!("not re-sealed: {p}");
            }
            outln!("store key {old} -> {new}: {resealed} record(s) re-sealed, {unchanged} already sealed with the new key");
            if problems.is_empty() {
                outln!(
                    "next, on every host: keep the old key as <key_file>.old, install {} as the key file, and reload twostepd",
                    path.display()
                );
                Ok(())
            } else {
                Err(format!(
                    "{} record(s) are still sealed with the old key: keep it, fix them and run rotate-key again",
                    problems.len()
                ))
            }
        }
    }
}
