// SPDX-License-Identifier: MIT OR Apache-2.0
//! Where records live, behind one seam whose unit is a per-account transaction.
//!
//! [`Store::transact`] (and its typed front [`update`]) runs a closure over the account's
//! record under that account's lock: the closure sees the record as stored (`None` when the
//! account has none), changes it in place, and says with [`Write`] whether the change is
//! committed; what it answers is separate. So a charged wrong attempt is saved *and*
//! answered "wrong" by one closure, and durability is checked in one place: nothing is
//! answered unless the write it depends on returned. Every login, self-service and admin
//! operation on a record is one such call.
//!
//! Implementations: [`file::FileStore`] (the embedded store, one file per account, with the
//! per-uid locks and the authoritative enrolment list inside it), [`postgres::PgStore`] (one
//! PostgreSQL database shared by a fleet: one row per account with the record as `jsonb`,
//! a row lock per transaction, the enrolment list a table written in the same transaction)
//! and [`memory::MemoryStore`] (for unit tests).
//!
//! Both durable stores seal the secrets of every record they write with the store key and
//! open them when they read (see [`crate::core::seal`]): the engine only ever sees plain records.

pub mod file;
pub mod memory;
pub mod postgres;

pub use file::{
    decode, decode_with, enrolled_file_bytes, file_bytes, file_bytes_of_json, file_bytes_sealed,
    file_name, FileStore, Inspection, Migration, SlotView, ENROLLED_FILE,
};

use std::collections::BTreeSet;

use super::record::Record;
use super::seal::Sealer;
use super::users::Account;
use super::Error;

/// Whether a transaction's change to the record is committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Write {
    /// Leave the stored record as it was (the closure's changes are dropped).
    Keep,
    /// Store the record as the closure left it, durably, before the call returns.
    Save,
}

/// The records of accounts, keyed by uid.
pub trait Store: Send + Sync {
    /// `who`'s record as stored, `None` when the account has none (and is not enrolled).
    ///
    /// # Errors
    /// [`Error::CorruptRecord`] when the record cannot be read or, for an enrolled account,
    /// is missing (fails closed, logged); [`Error::Storage`] for an I/O failure.
    fn load(&self, who: &Account) -> Result<Option<Record>, Error>;

    /// The record stored under `uid`, whoever has that uid now (for admin listings).
    ///
    /// # Errors
    /// As [`Store::load`].
    fn load_uid(&self, uid: u32) -> Result<Option<Record>, Error>;

    /// The uids with a record or on the enrolment list, ascending.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store cannot be listed.
    fn list(&self) -> Result<Vec<u32>, Error>;

    /// Remove `uid`'s record and take it off the enrolment list, durably.
    ///
    /// # Errors
    /// [`Error::Storage`] when the record exists and cannot be removed.
    fn remove(&self, uid: u32) -> Result<(), Error>;

    /// Run `f` over `who`'s record (`None`: none stored; `f` may create one) under the
    /// account's lock, and store the result durably when `f` returns [`Write::Save`]. The
    /// record is read before `f` runs: an unreadable or vanished record fails the call and
    /// `f` never runs. A `Save` of `None` stores nothing.
    ///
    /// # Errors
    /// As [`Store::load`], or the write's [`Error::Storage`] (then nothing was committed).
    fn transact(
        &self,
        who: &Account,
        f: &mut dyn FnMut(&mut Option<Record>) -> Write,
    ) -> Result<(), Error>;

    /// When `who` is on the enrolment list but its record is gone, store `fresh` (a record
    /// without a factor) in its place and take the account off the list: an admin's reset,
    /// the way out of a vanished record. Returns whether it did. A record that exists (even
    /// a damaged one) is left alone.
    ///
    /// # Errors
    /// [`Error::Storage`] when the write fails.
    fn replace_vanished(&self, who: &Account, fresh: &Record) -> Result<bool, Error>;

    /// The capabilities only the file store has (legacy migration, slot inspection and
    /// repair); `None` for other stores.
    fn files(&self) -> Option<&FileStore> {
        None
    }

    /// The keys that seal and open this store's secrets; `None` for a store that keeps
    /// none at rest (memory).
    fn sealer(&self) -> Option<&Sealer> {
        None
    }

    /// The ids of the keys the stored secrets are sealed with (see [`crate::core::seal`]), for the check
    /// at start that the daemon holds every one. Records that cannot be read are skipped
    /// (they fail closed on their own).
    ///
    /// # Errors
    /// The store cannot be listed or read.
    fn key_ids(&self) -> Result<BTreeSet<String>, Error> {
        Ok(BTreeSet::new())
    }

    /// Rewrite the record of `uid` when one of its secrets is plain or sealed with another
    /// key than the sealing one (`twostepctl admin rotate-key`), in one transaction.
    /// Returns whether it did.
    ///
    /// # Errors
    /// The record cannot be read (see [`Store::load`]) or written.
    fn reseal(&self, _uid: u32) -> Result<bool, Error> {
        Ok(false)
    }
}

/// A shared store is a store (the daemon owns one box; a test keeps a handle on it).
impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    fn load(&self, who: &Account) -> Result<Option<Record>, Error> {
        (**self).load(who)
    }

    fn load_uid(&self, uid: u32) -> Result<Option<Record>, Error> {
        (**self).load_uid(uid)
    }

    fn list(&self) -> Result<Vec<u32>, Error> {
        (**self).list()
    }

    fn remove(&self, uid: u32) -> Result<(), Error> {
        (**self).remove(uid)
    }

    fn transact(
        &self,
        who: &Account,
        f: &mut dyn FnMut(&mut Option<Record>) -> Write,
    ) -> Result<(), Error> {
        (**self).transact(who, f)
    }

    fn replace_vanished(&self, who: &Account, fresh: &Record) -> Result<bool, Error> {
        (**self).replace_vanished(who, fresh)
    }

    fn files(&self) -> Option<&FileStore> {
        (**self).files()
    }

    fn sealer(&self) -> Option<&Sealer> {
        (**self).sealer()
    }

    fn key_ids(&self) -> Result<BTreeSet<String>, Error> {
        (**self).key_ids()
    }

    fn reseal(&self, uid: u32) -> Result<bool, Error> {
        (**self).reseal(uid)
    }
}

/// Run `f` over `who`'s record in one transaction (see [`Store::transact`]) and return what
/// it answers. `f` returns the commit decision and the answer separately, so an answer can
/// be an error whose change is still saved (a charged wrong attempt).
///
/// # Errors
/// The store's errors (then nothing `f` answered is returned), else `f`'s answer.
pub fn update<T>(
    store: &dyn Store,
    who: &Account,
    f: impl FnOnce(&mut Option<Record>) -> (Write, Result<T, Error>),
) -> Result<T, Error> {
    let mut f = Some(f);
    let mut answer = None;
    store.transact(who, &mut |record| match f.take() {
        Some(f) => {
            let (write, out) = f(record);
            answer = Some(out);
            write
        }
        // Why: only a store that retries (compare-and-swap) calls twice, and a closure that
        // already ran cannot run again: fail closed, commit nothing. (Such a store would
        // give `update` an `FnMut` bound.)
        None => {
            answer = Some(Err(Error::Internal(
                "a store transaction was retried".into(),
            )));
            Write::Keep
        }
    })?;
    answer.unwrap_or_else(|| {
        Err(Error::Internal(
            "the store committed a transaction without running it".into(),
        ))
    })
}
