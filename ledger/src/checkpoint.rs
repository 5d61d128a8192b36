//! Checkpoints: the in-memory state written to RocksDB at a journal position, so that
//! reopening loads it and replays only the journal after it, instead of everything.
//!
//! A checkpoint covers journal entries `1..=seq`. It is written only once entry `seq` is
//! durable, in one synced RocksDB write that replaces the previous checkpoint whole, so a
//! crash leaves either the old one or the new one. The journal itself is kept: clearing
//! and queries read it.

use crate::currency::Currency;
use crate::state::{AccountState, ClosedWindow, HistoryLinks, Hold, HoldStatus, State, TransferIndexEntry};
use crate::types::*;
use rkyv::rancor;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

/// Index-table entries per checkpoint chunk (one RocksDB value each, about 48 MB).
pub(crate) const CHECKPOINT_CHUNK_ENTRIES_MAX: usize = 1 << 20;

/// Bumped when the layout changes; a checkpoint of another version is ignored (the
/// journal is replayed in full instead).
pub(crate) const CHECKPOINT_FORMAT_VERSION: u32 = 1;

pub(crate) const META_KEY: &[u8] = b"meta";

pub(crate) fn chunk_key(index: u32) -> Vec<u8> {
    let mut key = b"chunk/".to_vec();
    key.extend_from_slice(&index.to_be_bytes());
    key
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CheckpointMeta {
    pub format_version: u32,
    /// Journal entries covered: `1..=seq`.
    pub seq: u64,
    pub chunks: u32,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy)]
pub(crate) struct SnapAccount {
    account: Account,
    balances: [u64; 4],
    last_seq: u64,
    previous_seq: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy)]
pub(crate) struct SnapTransfer {
    id: TransferId,
    seq: u64,
    timestamp: u64,
    window: WindowId,
    fingerprint: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy)]
pub(crate) struct SnapHold {
    id: TransferId,
    debit: AccountId,
    credit: AccountId,
    amount: u64,
    currency: Currency,
    expires_at: u64,
    status: u8,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy)]
pub(crate) struct SnapPosition {
    participant: ParticipantId,
    currency: Currency,
    debits: u128,
    credits: u128,
    debit_count: u64,
    credit_count: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone)]
pub(crate) struct SnapWindow {
    window: WindowId,
    closed_at: u64,
    transfer_count: u64,
    first_seq: u64,
    last_seq: u64,
    positions: Vec<SnapPosition>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone)]
pub(crate) enum Chunk {
    Scalars {
        window: WindowId,
        window_transfer_count: u64,
        window_first_seq: u64,
        last_timestamp: u64,
        next_seq: u64,
        positions: Vec<SnapPosition>,
        closed: Vec<SnapWindow>,
    },
    Accounts(Vec<SnapAccount>),
    Transfers(Vec<SnapTransfer>),
    Holds(Vec<SnapHold>),
}

fn snap_positions<'a>(
    positions: impl Iterator<Item = (&'a (ParticipantId, Currency), &'a Position)>,
) -> Vec<SnapPosition> {
    positions
        .map(|((participant, currency), p)| SnapPosition {
            participant: *participant,
            currency: *currency,
            debits: p.debits,
            credits: p.credits,
            debit_count: p.debit_count,
            credit_count: p.credit_count,
        })
        .collect()
}

fn status_code(status: HoldStatus) -> u8 {
    match status {
        HoldStatus::Pending => 0,
        HoldStatus::Posted => 1,
        HoldStatus::Voided => 2,
        HoldStatus::Expired => 3,
    }
}

/// Copies the state into chunks. Runs under the sequencer lock: a straight copy, no I/O.
pub(crate) fn snapshot(state: &State) -> Vec<Chunk> {
    let mut chunks = vec![Chunk::Scalars {
        window: state.window,
        window_transfer_count: state.window_transfer_count,
        window_first_seq: state.window_first_seq,
        last_timestamp: state.last_timestamp,
        next_seq: state.next_seq,
        positions: snap_positions(state.positions.iter()),
        closed: state
            .closed_windows
            .iter()
            .map(|(window, closed)| SnapWindow {
                window: *window,
                closed_at: closed.closed_at,
                transfer_count: closed.transfer_count,
                first_seq: closed.first_seq,
                last_seq: closed.last_seq,
                positions: snap_positions(closed.positions.iter()),
            })
            .collect(),
    }];
    let accounts: Vec<SnapAccount> = state
        .accounts
        .values()
        .map(|a| SnapAccount {
            account: a.account,
            balances: [
                a.balances.debits_pending,
                a.balances.debits_posted,
                a.balances.credits_pending,
                a.balances.credits_posted,
            ],
            last_seq: a.links.last_seq,
            previous_seq: a.links.previous_seq,
        })
        .collect();
    chunks.extend(accounts.chunks(CHECKPOINT_CHUNK_ENTRIES_MAX).map(|c| Chunk::Accounts(c.to_vec())));
    let mut transfers = Vec::with_capacity(state.transfers.len().min(CHECKPOINT_CHUNK_ENTRIES_MAX));
    for (id, entry) in &state.transfers {
        transfers.push(SnapTransfer {
            id: *id,
            seq: entry.seq,
            timestamp: entry.timestamp,
            window: entry.window,
            fingerprint: entry.fingerprint,
        });
        if transfers.len() == CHECKPOINT_CHUNK_ENTRIES_MAX {
            chunks.push(Chunk::Transfers(std::mem::take(&mut transfers)));
        }
    }
    if !transfers.is_empty() {
        chunks.push(Chunk::Transfers(transfers));
    }
    let holds: Vec<SnapHold> = state
        .holds
        .iter()
        .map(|(id, h)| SnapHold {
            id: *id,
            debit: h.debit,
            credit: h.credit,
            amount: h.amount,
            currency: h.currency,
            expires_at: h.expires_at,
            status: status_code(h.status),
        })
        .collect();
    chunks.extend(holds.chunks(CHECKPOINT_CHUNK_ENTRIES_MAX).map(|c| Chunk::Holds(c.to_vec())));
    chunks
}

pub(crate) fn encode<T>(value: &T) -> AlignedVec
where
    T: for<'a> rkyv::Serialize<
        rkyv::api::high::HighSerializer<AlignedVec, rkyv::ser::allocator::ArenaHandle<'a>, rancor::Error>,
    >,
{
    rkyv::to_bytes::<rancor::Error>(value).expect("serializing a checkpoint into memory cannot fail")
}

pub(crate) fn decode_meta(bytes: &[u8]) -> Result<CheckpointMeta, String> {
    let mut aligned: AlignedVec<16> = AlignedVec::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<CheckpointMeta, rancor::Error>(&aligned).map_err(|e| e.to_string())
}

pub(crate) fn decode_chunk(bytes: &[u8]) -> Result<Chunk, String> {
    let mut aligned: AlignedVec<16> = AlignedVec::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<Chunk, rancor::Error>(&aligned).map_err(|e| e.to_string())
}

/// Applies a chunk to a state being rebuilt.
pub(crate) fn restore(state: &mut State, chunk: Chunk) -> Result<(), String> {
    let position = |p: &SnapPosition| {
        (
            (p.participant, p.currency),
            Position { debits: p.debits, credits: p.credits, debit_count: p.debit_count, credit_count: p.credit_count },
        )
    };
    match chunk {
        Chunk::Scalars {
            window,
            window_transfer_count,
            window_first_seq,
            last_timestamp,
            next_seq,
            positions,
            closed,
        } => {
            state.window = window;
            state.window_transfer_count = window_transfer_count;
            state.window_first_seq = window_first_seq;
            state.last_timestamp = last_timestamp;
            state.next_seq = next_seq;
            state.positions = positions.iter().map(position).collect();
            state.closed_windows = closed
                .iter()
                .map(|w| {
                    (
                        w.window,
                        ClosedWindow {
                            closed_at: w.closed_at,
                            positions: w.positions.iter().map(position).collect(),
                            transfer_count: w.transfer_count,
                            first_seq: w.first_seq,
                            last_seq: w.last_seq,
                        },
                    )
                })
                .collect();
        }
        Chunk::Accounts(accounts) => {
            state.accounts.reserve(accounts.len());
            for a in accounts {
                let balances = Balances {
                    debits_pending: a.balances[0],
                    debits_posted: a.balances[1],
                    credits_pending: a.balances[2],
                    credits_posted: a.balances[3],
                };
                let links = HistoryLinks { last_seq: a.last_seq, previous_seq: a.previous_seq };
                state.accounts.insert(a.account.id, AccountState { account: a.account, balances, links });
            }
        }
        Chunk::Transfers(transfers) => {
            state.transfers.reserve(transfers.len());
            for t in transfers {
                state.transfers.insert(
                    t.id,
                    TransferIndexEntry {
                        seq: t.seq,
                        timestamp: t.timestamp,
                        window: t.window,
                        fingerprint: t.fingerprint,
                    },
                );
            }
        }
        Chunk::Holds(holds) => {
            for h in holds {
                let status = match h.status {
                    0 => HoldStatus::Pending,
                    1 => HoldStatus::Posted,
                    2 => HoldStatus::Voided,
                    3 => HoldStatus::Expired,
                    other => return Err(format!("hold status {other}")),
                };
                state.insert_hold(
                    h.id,
                    Hold {
                        debit: h.debit,
                        credit: h.credit,
                        amount: h.amount,
                        currency: h.currency,
                        expires_at: h.expires_at,
                        status,
                    },
                );
            }
        }
    }
    Ok(())
}
