//! Net debit caps without a hot lock: each shard draws slices of a participant's
//! remaining headroom from a shared pool and spends them locally.
//!
//! The pool (`CapPool`, one parking_lot mutex) is touched only when a shard's slice runs
//! out, when the commit stage returns what failed transfers and incoming credits give
//! back (once per ledger batch), and when a window closes. A participant that 70% of the
//! traffic debits therefore costs each shard one lock per slice, not per payment.
//!
//! The invariant is that approvals never exceed the cap: headroom granted to shards plus
//! what remains in the pool never exceeds `cap + credits - debits` of the open window.
//! Slices shrink as the pool drains (a slice is at most the pool's `1 / SLICE_DIVISOR`),
//! so near the cap a shard may decline while another still holds a little headroom:
//! the error is on the safe side.

use junction_ledger::PositionKey;
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// A slice is at most the pool's available headroom divided by this. Larger means fewer
/// refills (lock acquisitions) but more headroom parked in idle shards.
pub const SLICE_DIVISOR: i128 = 16;

#[derive(Debug, Clone, Copy)]
struct PoolEntry {
    cap: u64,
    /// Headroom not yet granted to any shard.
    available: i128,
}

#[derive(Default)]
pub struct CapPool {
    entries: Mutex<FxHashMap<PositionKey, PoolEntry>>,
    /// Bumped when caps change, so shards drop their cached slices and "no cap" answers.
    generation: AtomicU64,
}

impl CapPool {
    pub fn new() -> CapPool {
        CapPool::default()
    }

    /// Sets a participant's cap in a currency. Headroom already spent stays spent.
    pub fn set_cap(&self, key: PositionKey, cap: u64) {
        let mut entries = self.entries.lock();
        match entries.get_mut(&key) {
            Some(entry) => {
                entry.available += i128::from(cap) - i128::from(entry.cap);
                entry.cap = cap;
            }
            None => {
                entries.insert(key, PoolEntry { cap, available: i128::from(cap) });
            }
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Gives headroom back: a failed or voided reservation, or credits the participant
    /// received, or the debits of a window that closed.
    pub fn give_back(&self, key: PositionKey, amount: i128) {
        if let Some(entry) = self.entries.lock().get_mut(&key) {
            entry.available += amount;
        }
    }

    /// Applies many give-backs under one lock acquisition.
    pub fn give_back_all(&self, amounts: &FxHashMap<PositionKey, i128>) {
        if amounts.is_empty() {
            return;
        }
        let mut entries = self.entries.lock();
        for (key, amount) in amounts {
            if let Some(entry) = entries.get_mut(key) {
                entry.available += amount;
            }
        }
    }

    /// Takes exactly `amount` of a participant's headroom (no slice): for a request that
    /// leaves for an issuer's host. True when there is no cap in this currency.
    pub fn take(&self, key: PositionKey, amount: u64) -> bool {
        let mut entries = self.entries.lock();
        let Some(entry) = entries.get_mut(&key) else { return true };
        if entry.available < i128::from(amount) {
            return false;
        }
        entry.available -= i128::from(amount);
        true
    }

    /// Headroom not granted to any shard (for metrics and tests).
    pub fn available(&self, key: PositionKey) -> Option<i128> {
        self.entries.lock().get(&key).map(|e| e.available)
    }

    /// Grants at least `need` if the pool has it, plus a slice for what comes next.
    /// `None`: the participant has no cap in this currency.
    fn grant(&self, key: PositionKey, need: i128) -> Option<Result<i128, ()>> {
        let mut entries = self.entries.lock();
        let entry = entries.get_mut(&key)?;
        if entry.available < need {
            return Some(Err(()));
        }
        let extra = ((entry.available - need) / SLICE_DIVISOR).max(0);
        let granted = need + extra;
        entry.available -= granted;
        Some(Ok(granted))
    }
}

#[derive(Debug, Clone, Copy)]
enum Slice {
    Unlimited,
    Headroom(i128),
}

/// One shard's slices. Owned by the shard thread: no locks.
#[derive(Default)]
pub struct LocalHeadroom {
    slices: FxHashMap<PositionKey, Slice>,
    generation: u64,
}

impl LocalHeadroom {
    /// Reserves `amount` of `key`'s headroom. False: it would breach the cap.
    pub fn reserve(&mut self, pool: &CapPool, key: PositionKey, amount: u64) -> bool {
        let generation = pool.generation();
        if generation != self.generation {
            self.flush(pool);
            self.generation = generation;
        }
        let amount = i128::from(amount);
        let slice = self.slices.entry(key).or_insert(Slice::Headroom(0));
        match slice {
            Slice::Unlimited => true,
            Slice::Headroom(local) if *local >= amount => {
                *local -= amount;
                true
            }
            Slice::Headroom(local) => match pool.grant(key, amount - *local) {
                None => {
                    *slice = Slice::Unlimited;
                    true
                }
                Some(Err(())) => false,
                Some(Ok(granted)) => {
                    *local += granted - amount;
                    true
                }
            },
        }
    }

    /// Puts back a reservation this shard made and will not use.
    pub fn unreserve(&mut self, key: PositionKey, amount: u64) {
        if let Some(Slice::Headroom(local)) = self.slices.get_mut(&key) {
            *local += i128::from(amount);
        }
    }

    /// Returns every slice to the pool (caps changed, or the shard stops).
    pub fn flush(&mut self, pool: &CapPool) {
        let mut returned: FxHashMap<PositionKey, i128> = FxHashMap::default();
        for (key, slice) in self.slices.drain() {
            if let Slice::Headroom(local) = slice {
                returned.insert(key, local);
            }
        }
        pool.give_back_all(&returned);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use junction_ledger::{Currency, ParticipantId};

    fn key() -> PositionKey {
        (ParticipantId(1), Currency::from_code("USD").unwrap())
    }

    #[test]
    fn shards_never_grant_more_than_the_cap() {
        let pool = CapPool::new();
        pool.set_cap(key(), 10_000);
        let mut shards: Vec<LocalHeadroom> = (0..4).map(|_| LocalHeadroom::default()).collect();
        let mut approved = 0u64;
        for i in 0..10_000usize {
            if shards[i % 4].reserve(&pool, key(), 7) {
                approved += 7;
            }
        }
        assert!(approved <= 10_000);
        // Near the cap some headroom may be parked in other shards, never much of it.
        assert!(approved > 10_000 - 4 * 7 * 16, "approved only {approved}");
        for shard in &mut shards {
            shard.flush(&pool);
        }
        assert_eq!(pool.available(key()), Some(10_000 - i128::from(approved)));
    }

    #[test]
    fn no_cap_means_unlimited_until_one_is_set() {
        let pool = CapPool::new();
        let mut shard = LocalHeadroom::default();
        assert!(shard.reserve(&pool, key(), u64::MAX));
        pool.set_cap(key(), 5);
        assert!(!shard.reserve(&pool, key(), 6));
        assert!(shard.reserve(&pool, key(), 5));
        pool.give_back(key(), 5);
        assert!(shard.reserve(&pool, key(), 5));
    }
}
