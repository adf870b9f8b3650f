// SPDX-License-Identifier: MIT OR Apache-2.0
//! `org.twostep.Store1`: moving whole stores (export, import, key rotation). The core
//! authorizes (root only, `core::transfer`); files travel as descriptors the caller
//! opened, so the daemon never opens a path the caller names except the new key file,
//! which it trusts only as it trusts its own key file.

use std::io::BufReader;

use zbus::message::Header;
use zbus::zvariant::OwnedFd;

use super::iface::Shared;
use twostep_proto::Error;

/// `org.twostep.Store1` (see `twostep_proto::typed::Store`).
pub struct StoreIface(pub(super) Shared);

fn file(fd: OwnedFd) -> std::fs::File {
    std::fs::File::from(std::os::fd::OwnedFd::from(fd))
}

#[zbus::interface(name = "org.twostep.Store1")]
impl StoreIface {
    /// Write every account, secrets sealed, to `out`; returns (exported, problems).
    async fn export(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        out: OwnedFd,
    ) -> Result<(u32, Vec<String>), Error> {
        let (caller, _slot) = self.0.caller(&hdr).await?;
        self.0
            .run(move |core| {
                let r = core.export_records(&caller, &mut file(out))?;
                Ok((r.exported, r.problems))
            })
            .await
    }

    /// Add the accounts of the export in `input`; returns (created, unchanged, conflicts).
    async fn import(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        input: OwnedFd,
        dry_run: bool,
    ) -> Result<(u32, u32, Vec<String>), Error> {
        let (caller, _slot) = self.0.caller(&hdr).await?;
        self.0
            .run(move |core| {
                let mut input = BufReader::new(file(input));
                let r = core.import_records(&caller, &mut input, dry_run)?;
                Ok((r.created, r.unchanged, r.conflicts))
            })
            .await
    }

    /// Re-seal every record with the key in `new_key_file`; returns (old key id, new key
    /// id, re-sealed, unchanged, problems).
    async fn rotate_key(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        new_key_file: String,
    ) -> Result<(String, String, u32, u32, Vec<String>), Error> {
        let (caller, _slot) = self.0.caller(&hdr).await?;
        if new_key_file.len() > 4096 || !new_key_file.starts_with('/') {
            return Err(crate::core::Error::InvalidArgument(
                "the new key file must be an absolute path".into(),
            )
            .into());
        }
        self.0
            .run(move |core| {
                let r = core.rotate_key(&caller, std::path::Path::new(&new_key_file))?;
                Ok((r.old_key, r.new_key, r.resealed, r.unchanged, r.problems))
            })
            .await
    }
}
