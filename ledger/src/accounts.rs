//! The ledger's accounts table, with copy-on-write for checkpoints.
//!
//! A checkpoint must capture every account as of one journal entry without stopping the
//! sequencer while millions of accounts are copied. So the table is copied in chunks of
//! buckets, each under the sequencer lock for about a millisecond, and while the copy is
//! under way an account about to change for the first time, in a bucket not copied yet,
//! keeps its value as of the checkpoint's entry on the side (`Copying::before`): the
//! copier takes that value instead of the current one. The result is exactly the table
//! at the checkpoint's entry.
//!
//! No account is added while a copy is under way (the ledger's `create_accounts` waits
//! for it), so buckets keep their places.

use crate::memory::HugePages;
use crate::state::AccountState;
use crate::types::AccountId;
use hashbrown::HashTable;
use rustc_hash::{FxBuildHasher, FxHashMap};
use std::hash::BuildHasher;

/// Accounts by id, on huge pages once large (see `memory.rs`).
pub(crate) struct AccountTable {
    table: HashTable<AccountState, HugePages>,
    hasher: FxBuildHasher,
    copying: Option<Copying>,
}

/// A checkpoint's copy under way.
#[derive(Default)]
struct Copying {
    /// Buckets before this one are copied.
    copied: usize,
    /// Values as of the checkpoint's entry of accounts in buckets not yet copied that
    /// changed since, by bucket.
    before: FxHashMap<usize, AccountState>,
}

impl Default for AccountTable {
    fn default() -> Self {
        AccountTable::with_capacity(0)
    }
}

impl std::fmt::Debug for AccountTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountTable").field("len", &self.table.len()).finish_non_exhaustive()
    }
}

impl AccountTable {
    pub fn with_capacity(capacity: usize) -> AccountTable {
        AccountTable { table: HashTable::with_capacity_in(capacity, HugePages), hasher: FxBuildHasher, copying: None }
    }

    fn hash(&self, id: &AccountId) -> u64 {
        self.hasher.hash_one(id)
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn get(&self, id: &AccountId) -> Option<&AccountState> {
        self.table.find(self.hash(id), |account| account.account.id == *id)
    }

    /// Before an account may change during a copy: keep its value as of the checkpoint.
    fn preserve(&mut self, id: &AccountId) {
        let Some(copying) = &mut self.copying else { return };
        let hash = self.hasher.hash_one(id);
        if let Some(bucket) = self.table.find_bucket_index(hash, |account| account.account.id == *id) {
            if bucket >= copying.copied && !copying.before.contains_key(&bucket) {
                if let Some(value) = self.table.get_bucket(bucket) {
                    copying.before.insert(bucket, value.clone());
                }
            }
        }
    }

    pub fn get_mut(&mut self, id: &AccountId) -> Option<&mut AccountState> {
        self.preserve(id);
        let hash = self.hash(id);
        self.table.find_mut(hash, |account| account.account.id == *id)
    }

    /// Two different accounts at once (either may be missing).
    pub fn get_disjoint_mut(&mut self, ids: [&AccountId; 2]) -> [Option<&mut AccountState>; 2] {
        self.preserve(ids[0]);
        self.preserve(ids[1]);
        let hashes = [self.hash(ids[0]), self.hash(ids[1])];
        self.table.get_disjoint_mut(hashes, |index, account| account.account.id == *ids[index])
    }

    /// Adds an account; false if the id is taken. Never during a copy.
    pub fn insert(&mut self, account: AccountState) -> bool {
        assert!(self.copying.is_none(), "an account added while a checkpoint copies the table");
        let hash = self.hash(&account.account.id);
        if self.get(&account.account.id).is_some() {
            return false;
        }
        let hasher = self.hasher;
        self.table.insert_unique(hash, account, |a| hasher.hash_one(a.account.id));
        true
    }

    pub fn values(&self) -> impl Iterator<Item = &AccountState> {
        self.table.iter()
    }

    /// Starts a checkpoint's copy: from now on, changes keep the values as of now.
    pub fn start_copy(&mut self) {
        self.copying = Some(Copying::default());
    }

    /// Copies the next `buckets` buckets' accounts as of the copy's start into `out`.
    /// True once the whole table is copied (the copy is then over).
    pub fn copy_chunk<T>(&mut self, buckets: usize, out: &mut Vec<T>, convert: impl Fn(&AccountState) -> T) -> bool {
        let Some(copying) = &mut self.copying else { return true };
        let end = (copying.copied + buckets).min(self.table.num_buckets());
        for bucket in copying.copied..end {
            // Most buckets did not change since the copy started: no look on the side.
            let before = if copying.before.is_empty() { None } else { copying.before.remove(&bucket) };
            if let Some(before) = before {
                out.push(convert(&before));
            } else if let Some(account) = self.table.get_bucket(bucket) {
                out.push(convert(account));
            }
        }
        copying.copied = end;
        let done = end == self.table.num_buckets();
        if done {
            self.copying = None;
        }
        done
    }

    /// Ends a copy early (its checkpoint failed).
    pub fn abandon_copy(&mut self) {
        self.copying = None;
    }
}
