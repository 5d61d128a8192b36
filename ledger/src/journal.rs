//! The journal: an ordered stream of entries, each one RocksDB value encoded with rkyv.
//!
//! Entry `n` holds everything one commit changed, so replaying entries 1..=n rebuilds the
//! state exactly. This is also the unit a replication transport ships.
//!
//! Format 2 (2026-12): transfer records carry a command digest, entries carry the answers
//! of commands, accounts carry debit limits. Format 3 (2026-12): metadata changes are
//! journal entries too, so that the journal (and a replica following it) holds everything
//! the ledger stores. Format 4 (2026-12): transfer entries carry the memos of the commands
//! they answered (`DetailRecord`). Format 5 (2026-12): memos are journaled at their own
//! length, and a memo's record no longer repeats what its answer or transfer says
//! (`JournaledDetail`). Older journals are refused at open.

use crate::types::{
    Account, AccountUpdate, AnswerRecord, ArchivedAnswerRecord, ArchivedTransferId, ArchivedTransferRecord,
    DetailRecord, Memo, TransferId, TransferRecord, WindowId, MEMO_BYTES,
};
use rkyv::rancor;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

/// Bumped when the encoding changes; an entry with another version is refused.
pub(crate) const JOURNAL_FORMAT_VERSION: u8 = 5;

/// Room for an entry's own fields and the version byte, beyond its records.
const ENTRY_OVERHEAD_BYTES: usize = 256;

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(crate) enum JournalEntry {
    /// Holds that expired before this commit, then the transfers it committed, in order.
    /// Also the answers of the commands whose transfer records do not say them, and the
    /// memos of the commands answered (for the clearing files; replay ignores them).
    Transfers {
        expired: Vec<TransferId>,
        records: Vec<TransferRecord>,
        answers: Vec<AnswerRecord>,
        details: Vec<JournaledDetail>,
        /// The memos of `details`, one after another.
        memos: Vec<u8>,
    },
    Accounts {
        accounts: Vec<Account>,
    },
    AccountUpdate(AccountUpdate),
    CloseWindow {
        window: WindowId,
        closed_at: u64,
    },
    /// Opaque records of the ledger's users (provisioning, routes, advices): written to
    /// the metadata column family in the same RocksDB write as this entry.
    Metadata(MetadataChange),
}

/// A command's memo as journaled: where its answer is, and where its memo ends in the
/// entry's memo bytes (it starts where the one before ends). The key, outcome, reference
/// and time are its answer's, so they are not written twice: 16 bytes and the memo's own,
/// instead of a fixed record of about 230.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JournaledDetail {
    /// Its answer in the entry's `answers`, or `ANSWERED_BY_RECORD`: its first transfer
    /// record answers it (a commit whose own transfer was created).
    pub answer: u32,
    pub first_record: u32,
    pub records: u32,
    pub memo_end: u32,
}

/// `JournaledDetail::answer` of a command its own transfer record answers.
pub(crate) const ANSWERED_BY_RECORD: u32 = u32::MAX;

/// The memos of an entry as `DetailRecord`s, in order, each or why it does not fit the
/// entry's records (a caller looking for one stops at it: nothing is collected).
pub(crate) fn detail_records<'a>(
    records: &'a [TransferRecord],
    answers: &'a [AnswerRecord],
    details: &'a [JournaledDetail],
    memos: &'a [u8],
) -> impl Iterator<Item = Result<DetailRecord, String>> + 'a {
    let mut start = 0usize;
    details.iter().map(move |detail| {
        let end = detail.memo_end as usize;
        let bytes = memos.get(start..end).filter(|b| b.len() <= MEMO_BYTES).ok_or("a memo is out of bounds")?;
        let memo = Memo::new(bytes).ok_or("a memo is too long")?;
        start = end;
        let (key, outcome, reference, timestamp) = if detail.answer == ANSWERED_BY_RECORD {
            let record = records.get(detail.first_record as usize).ok_or("a memo names a missing record")?;
            (record.transfer.id, 0, record.transfer.id.folded(), record.timestamp)
        } else {
            let answer = answers.get(detail.answer as usize).ok_or("a memo names a missing answer")?;
            (answer.key, answer.outcome, answer.reference, answer.timestamp)
        };
        Ok(DetailRecord {
            key,
            outcome,
            reference,
            timestamp,
            first_record: detail.first_record,
            records: detail.records,
            memo,
        })
    })
}

/// Metadata records put and deleted by one journal entry.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub(crate) struct MetadataChange {
    pub puts: Vec<(Vec<u8>, Vec<u8>)>,
    pub deletes: Vec<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("journal entry is empty")]
    Empty,
    #[error("journal entry has format version {0}, this build reads {JOURNAL_FORMAT_VERSION}")]
    Version(u8),
    #[error("journal entry does not decode: {0}")]
    Rkyv(String),
}

/// Encodes an entry. The format version travels at the end, so the rkyv bytes need no
/// second copy to make room for it at the front.
pub(crate) fn encode(entry: &JournalEntry) -> AlignedVec {
    // Sized up front: growing a megabyte buffer by doubling copies it several times.
    let capacity = match entry {
        JournalEntry::Transfers { expired, records, answers, details, memos } => {
            records.len() * std::mem::size_of::<ArchivedTransferRecord>()
                + expired.len() * std::mem::size_of::<ArchivedTransferId>()
                + answers.len() * std::mem::size_of::<ArchivedAnswerRecord>()
                + details.len() * std::mem::size_of::<ArchivedJournaledDetail>()
                + memos.len()
                + ENTRY_OVERHEAD_BYTES
        }
        JournalEntry::Metadata(change) => {
            change.puts.iter().map(|(key, value)| key.len() + value.len() + 16).sum::<usize>()
                + change.deletes.iter().map(|key| key.len() + 8).sum::<usize>()
                + ENTRY_OVERHEAD_BYTES
        }
        _ => ENTRY_OVERHEAD_BYTES,
    };
    let mut bytes = rkyv::api::high::to_bytes_in::<_, rancor::Error>(entry, AlignedVec::with_capacity(capacity))
        .expect("serializing a journal entry into memory cannot fail");
    bytes.push(JOURNAL_FORMAT_VERSION);
    bytes
}

/// Decodes and validates (rkyv's bytecheck) an entry read from disk.
pub(crate) fn decode(bytes: &[u8]) -> Result<JournalEntry, DecodeError> {
    let (&version, body) = bytes.split_last().ok_or(DecodeError::Empty)?;
    if version != JOURNAL_FORMAT_VERSION {
        return Err(DecodeError::Version(version));
    }
    // rkyv needs the bytes aligned; RocksDB's are not.
    let mut aligned: AlignedVec<16> = AlignedVec::with_capacity(body.len());
    aligned.extend_from_slice(body);
    rkyv::from_bytes::<JournalEntry, rancor::Error>(&aligned).map_err(|e| DecodeError::Rkyv(e.to_string()))
}
