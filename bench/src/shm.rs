// SPDX-License-Identifier: MIT OR Apache-2.0
//! Memory shared by the login workers, whether they are threads or forked processes: an
//! anonymous `MAP_SHARED` mapping made before any fork, holding only atomics.
//!
//! Layout: a header of counters, one `u64` state word per user (see [`UserState`]), and one
//! result slot per login.

use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

const HEADER_BYTES: usize = 4096;

/// Counters every worker updates.
#[repr(C)]
pub struct Header {
    /// Next position in the user permutation.
    pub pick: AtomicU64,
    /// Logins started (result slots handed out).
    pub started: AtomicU64,
    /// Set when the run must end (enough logins, time is up, or no user can log in).
    pub stop: AtomicU32,
    /// Why the run stopped: 1 count, 2 time, 3 no user left with a usable code.
    pub why: AtomicU32,
}

/// One login's result.
#[repr(C)]
pub struct Slot {
    /// Latency of the login.
    pub nanos: AtomicU64,
    /// When it finished, on the system-wide monotonic clock ([`monotonic_nanos`]).
    pub finish: AtomicU64,
    pub code: AtomicI32,
    /// 1 when written.
    pub done: AtomicU32,
}

/// A user's state word: bit 63 = a login for this user is in flight; bits 48..63 = attempts
/// this run; bits 0..48 = the last time step claimed for a right code (0 = none).
pub struct UserState;

impl UserState {
    pub const BUSY: u64 = 1 << 63;
    pub const STEP_MASK: u64 = (1 << 48) - 1;
    pub const ATTEMPT_SHIFT: u32 = 48;
    pub const ATTEMPT_MASK: u64 = 0x7fff;

    pub fn attempts(word: u64) -> u64 {
        (word >> Self::ATTEMPT_SHIFT) & Self::ATTEMPT_MASK
    }
}

/// A finished login, read back from its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    pub nanos: u64,
    pub finish: u64,
    pub code: i32,
}

/// CLOCK_MONOTONIC in nanoseconds: one clock for every process of the run.
pub fn monotonic_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// The mapping.
pub struct Shared {
    base: *mut u8,
    len: usize,
    users: usize,
    slots: usize,
}

// SAFETY: the mapping holds only atomics, accessed through shared references; it lives
// until `Shared` drops (after every worker thread has been joined).
unsafe impl Send for Shared {}
// SAFETY: as above: all access is through atomics.
unsafe impl Sync for Shared {}

impl Shared {
    /// A zeroed mapping for `users` users and `slots` logins.
    ///
    /// # Errors
    /// mmap failed.
    pub fn new(users: usize, slots: usize) -> Result<Shared, String> {
        let len = HEADER_BYTES + users * 8 + slots * std::mem::size_of::<Slot>();
        // SAFETY: a fresh anonymous mapping; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!("mmap: {}", std::io::Error::last_os_error()));
        }
        Ok(Shared {
            base: p.cast(),
            len,
            users,
            slots,
        })
    }

    pub fn header(&self) -> &Header {
        const { assert!(std::mem::size_of::<Header>() <= HEADER_BYTES) };
        // SAFETY: the header sits at the start of a zeroed, page-aligned mapping; all-zero is
        // a valid `Header` (atomics).
        unsafe { &*self.base.cast::<Header>() }
    }

    pub fn users(&self) -> usize {
        self.users
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    /// User `i`'s state word.
    pub fn user(&self, i: usize) -> &AtomicU64 {
        assert!(i < self.users);
        // SAFETY: in bounds (checked), 8-aligned (the header is 4096 bytes), zero-initialized.
        unsafe { &*self.base.add(HEADER_BYTES + i * 8).cast::<AtomicU64>() }
    }

    /// Result slot `i`.
    pub fn slot(&self, i: usize) -> &Slot {
        assert!(i < self.slots);
        let off = HEADER_BYTES + self.users * 8 + i * std::mem::size_of::<Slot>();
        // SAFETY: in bounds (checked), 8-aligned (Slot is 16 bytes after an 8-aligned start),
        // zero-initialized, which is a valid `Slot`.
        unsafe { &*self.base.add(off).cast::<Slot>() }
    }

    /// Results written so far, in slot order.
    pub fn results(&self) -> Vec<Written> {
        let n = (self.header().started.load(Ordering::SeqCst) as usize).min(self.slots);
        (0..n)
            .map(|i| self.slot(i))
            .filter(|s| s.done.load(Ordering::SeqCst) == 1)
            .map(|s| Written {
                nanos: s.nanos.load(Ordering::SeqCst),
                finish: s.finish.load(Ordering::SeqCst),
                code: s.code.load(Ordering::SeqCst),
            })
            .collect()
    }

    /// Indices of the users that had at least one attempt.
    pub fn touched(&self) -> Vec<u32> {
        (0..self.users)
            .filter(|&i| UserState::attempts(self.user(i).load(Ordering::SeqCst)) > 0)
            .filter_map(|i| u32::try_from(i).ok())
            .collect()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_and_addressable() {
        let s = Shared::new(10, 5).unwrap();
        assert_eq!(s.header().started.load(Ordering::SeqCst), 0);
        s.user(9).store(UserState::BUSY | 5, Ordering::SeqCst);
        s.user(3)
            .store(1 << UserState::ATTEMPT_SHIFT, Ordering::SeqCst);
        s.slot(4).nanos.store(7, Ordering::SeqCst);
        assert_eq!(s.touched(), vec![3]);
        s.header().started.store(5, Ordering::SeqCst);
        s.slot(4).done.store(1, Ordering::SeqCst);
        let r = s.results();
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].nanos, r[0].code), (7, 0));
    }
}
