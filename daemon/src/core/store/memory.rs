// SPDX-License-Identifier: MIT OR Apache-2.0
//! A store in memory, for unit tests: the same transaction rule as the file store (one
//! lock, the closure's `Write` decides), nothing durable.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use super::{Store, Write};
use crate::core::engine::lock;
use crate::core::record::Record;
use crate::core::users::Account;
use crate::core::Error;

/// Records in a map, plus the enrolment list, under one lock.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    records: BTreeMap<u32, Record>,
    enrolled: BTreeSet<u32>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Drop `uid`'s record but keep it on the enrolment list, as a deleted file would (for
    /// tests of the fail-closed rule).
    pub fn lose(&self, uid: u32) {
        lock(&self.inner).records.remove(&uid);
    }
}

fn vanished(who: &Account) -> Error {
    Error::CorruptRecord {
        user: format!("{} (uid {})", who.name, who.uid),
        reason: "the account is enrolled but its record is missing".into(),
    }
}

impl Store for MemoryStore {
    fn load(&self, who: &Account) -> Result<Option<Record>, Error> {
        let inner = lock(&self.inner);
        match inner.records.get(&who.uid) {
            None if inner.enrolled.contains(&who.uid) => Err(vanished(who)),
            found => Ok(found.cloned()),
        }
    }

    fn load_uid(&self, uid: u32) -> Result<Option<Record>, Error> {
        Ok(lock(&self.inner).records.get(&uid).cloned())
    }

    fn list(&self) -> Result<Vec<u32>, Error> {
        let inner = lock(&self.inner);
        let all: BTreeSet<u32> = inner
            .records
            .keys()
            .chain(inner.enrolled.iter())
            .copied()
            .collect();
        Ok(all.into_iter().collect())
    }

    fn remove(&self, uid: u32) -> Result<(), Error> {
        let mut inner = lock(&self.inner);
        inner.records.remove(&uid);
        inner.enrolled.remove(&uid);
        Ok(())
    }

    fn transact(
        &self,
        who: &Account,
        f: &mut dyn FnMut(&mut Option<Record>) -> Write,
    ) -> Result<(), Error> {
        let mut inner = lock(&self.inner);
        let mut record = match inner.records.get(&who.uid) {
            None if inner.enrolled.contains(&who.uid) => return Err(vanished(who)),
            found => found.cloned(),
        };
        if f(&mut record) == Write::Save {
            if let Some(r) = record {
                if r.enrolled() {
                    inner.enrolled.insert(who.uid);
                } else {
                    inner.enrolled.remove(&who.uid);
                }
                inner.records.insert(who.uid, r);
            }
        }
        Ok(())
    }

    fn replace_vanished(&self, who: &Account, fresh: &Record) -> Result<bool, Error> {
        let mut inner = lock(&self.inner);
        if inner.records.contains_key(&who.uid) || !inner.enrolled.contains(&who.uid) {
            return Ok(false);
        }
        inner.enrolled.remove(&who.uid);
        inner.records.insert(who.uid, fresh.clone());
        Ok(true)
    }
}
