//! Checkpoints: the in-memory state written to RocksDB at a journal position, so that
//! reopening loads it and replays only the journal after it, instead of everything.
//!
//! A checkpoint covers journal entries `1..=seq`. It is written only once entry `seq` is
//! durable, as one SST file that RocksDB ingests atomically in place of the previous
//! checkpoint, so a crash leaves either the old one or the new one. The journal itself is kept: clearing
//! and queries read it.

use crate::accounts::AccountTable;
use crate::currency::Currency;
use crate::state::{AccountState, ClosedWindow, HistoryLinks, Hold, HoldStatus, State, Velocity, VELOCITY_BUCKETS};
use crate::store::{self, Store, StoredBytes};
use crate::types::*;
use rkyv::rancor;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

/// Entries per checkpoint chunk (one RocksDB value each, a few MB): small enough that
/// encoding and decoding reuse one buffer, large enough that the per-value cost vanishes.
pub(crate) const CHECKPOINT_CHUNK_ENTRIES_MAX: usize = 1 << 16;

/// Chunks decoded ahead of the inserts while a table loads (each a few MB).
const LOAD_CHUNKS_AHEAD: usize = 2;

/// Bumped when the layout changes; a checkpoint of another version is ignored (the
/// journal is replayed in full instead).
pub(crate) const CHECKPOINT_FORMAT_VERSION: u32 = 4;

/// Names the SST file a checkpoint is written to before RocksDB takes it in. It sits in
/// the database folder (so the ingest is a rename) under a name RocksDB never uses.
pub(crate) const FILE_PREFIX: &str = "junction-checkpoint-";

/// Removes checkpoint files a crash left behind before they were ingested.
pub(crate) fn remove_stray_files(folder: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(folder) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(FILE_PREFIX) {
            if let Err(error) = std::fs::remove_file(entry.path()) {
                tracing::warn!(%error, file = %entry.path().display(), "could not remove a stray checkpoint file");
            }
        }
    }
}

/// Keys of the checkpoint column family, in the byte order an SST file needs them:
/// `chunk/a<index>`, `chunk/h<index>`, `meta`, `scalars`. (Format 3 and older also held
/// the transfer index, `chunk/t<index>`: it now lives in the cold index, see `index.rs`.)
pub(crate) const META_KEY: &[u8] = b"meta";
const SCALARS_KEY: &[u8] = b"scalars";
const CHUNK_PREFIX: &[u8] = b"chunk/";

/// The tables a checkpoint holds, each as its own run of chunks. The discriminant is
/// the table's slot in `CheckpointMeta`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    Accounts,
    Holds,
}

impl Table {
    /// In key order.
    const ALL: [Table; 2] = [Table::Accounts, Table::Holds];

    fn tag(self) -> u8 {
        match self {
            Table::Accounts => b'a',
            Table::Holds => b'h',
        }
    }
}

pub(crate) fn chunk_key(table: Table, index: u32) -> Vec<u8> {
    let mut key = CHUNK_PREFIX.to_vec();
    key.push(table.tag());
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// Key ranges `[from, to)` holding no chunk of the checkpoint described by `meta`: what
/// an earlier, larger checkpoint (or one of format 1) left behind.
pub(crate) fn stale_ranges(meta: &CheckpointMeta) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut first_tag = CHUNK_PREFIX.to_vec();
    first_tag.push(Table::Accounts.tag());
    let mut ranges = vec![(CHUNK_PREFIX.to_vec(), first_tag)];
    for table in Table::ALL {
        let mut end = CHUNK_PREFIX.to_vec();
        end.push(table.tag() + 1);
        ranges.push((chunk_key(table, meta.chunks(table)), end));
    }
    // Tables of older formats, after the last one of this format.
    let mut after = CHUNK_PREFIX.to_vec();
    after.push(Table::Holds.tag() + 1);
    let mut end = CHUNK_PREFIX.to_vec();
    end.push(u8::MAX);
    ranges.push((after, end));
    ranges
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CheckpointMeta {
    pub format_version: u32,
    /// Journal entries covered: `1..=seq`.
    pub seq: u64,
    /// Entries and chunks per table, in `Table::ALL` order.
    pub entries: [u64; 2],
    pub chunks: [u32; 2],
}

impl CheckpointMeta {
    pub fn entries(&self, table: Table) -> usize {
        self.entries[table as usize] as usize
    }

    pub fn chunks(&self, table: Table) -> u32 {
        self.chunks[table as usize]
    }
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy)]
pub(crate) struct SnapAccount {
    account: Account,
    balances: [u64; 4],
    last_seq: u64,
    previous_seq: u64,
    velocity_bucket: u32,
    velocity_counts: [u32; VELOCITY_BUCKETS],
    velocity_amounts: [u64; VELOCITY_BUCKETS],
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
pub(crate) struct Scalars {
    window: WindowId,
    window_transfer_count: u64,
    window_first_seq: u64,
    last_timestamp: u64,
    next_seq: u64,
    positions: Vec<SnapPosition>,
    closed: Vec<SnapWindow>,
}

/// A copy of the state, taken under the sequencer lock and written after it is released.
pub(crate) struct Snapshot {
    scalars: Scalars,
    accounts: Vec<SnapAccount>,
    holds: Vec<SnapHold>,
}

fn snap_positions<'a>(positions: impl Iterator<Item = (&'a PositionKey, &'a Position)>) -> Vec<SnapPosition> {
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

/// Starts a checkpoint at the state's last entry, under the sequencer lock: copies the
/// scalars and the pending holds (small), lists the resolved holds (whose endings go to
/// the cold index instead), and starts the accounts' copy-on-write copy, which
/// `copy_accounts` then takes a chunk at a time. No I/O.
pub(crate) fn begin_snapshot(state: &mut State) -> (Snapshot, Vec<(TransferId, HoldStatus)>) {
    let scalars = Scalars {
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
    };
    let mut holds = Vec::new();
    let mut resolved = Vec::new();
    for (id, h) in &state.holds {
        if h.status == HoldStatus::Pending {
            holds.push(SnapHold {
                id: *id,
                debit: h.debit,
                credit: h.credit,
                amount: h.amount,
                currency: h.currency,
                expires_at: h.expires_at,
                status: status_code(h.status),
            });
        } else {
            resolved.push((*id, h.status));
        }
    }
    state.accounts.start_copy();
    let accounts = Vec::with_capacity(state.accounts.len());
    (Snapshot { scalars, accounts, holds }, resolved)
}

/// Copies the next chunk of accounts into the snapshot, under the sequencer lock; true
/// once all are copied.
pub(crate) fn copy_accounts(state: &mut State, snapshot: &mut Snapshot, buckets: usize) -> bool {
    state.accounts.copy_chunk(buckets, &mut snapshot.accounts, |a| SnapAccount {
        account: a.account,
        balances: [
            a.balances.debits_pending,
            a.balances.debits_posted,
            a.balances.credits_pending,
            a.balances.credits_posted,
        ],
        last_seq: a.links.last_seq,
        previous_seq: a.links.previous_seq,
        velocity_bucket: a.velocity.newest_bucket,
        velocity_counts: a.velocity.counts,
        velocity_amounts: a.velocity.amounts,
    })
}

/// Writes the snapshot as one sorted SST file at `path` (synced when finished), ready to
/// be ingested into the checkpoint column family in one atomic step. No write-ahead log
/// and no memtable: each byte is written once. Returns the meta record it holds.
pub(crate) fn write_sst(path: &std::path::Path, seq: u64, snapshot: &Snapshot) -> Result<CheckpointMeta, String> {
    let mut meta = CheckpointMeta { format_version: CHECKPOINT_FORMAT_VERSION, seq, entries: [0; 2], chunks: [0; 2] };
    store::write_sst_file(path, &rocksdb::Options::default(), |file| {
        let mut buffer = AlignedVec::new();
        for table in Table::ALL {
            let mut put = |index: usize, encoded: &AlignedVec| file.put(&chunk_key(table, index as u32), encoded);
            let (chunks, entries) = match table {
                Table::Accounts => (write_chunks(&snapshot.accounts, &mut buffer, &mut put), snapshot.accounts.len()),
                Table::Holds => (write_chunks(&snapshot.holds, &mut buffer, &mut put), snapshot.holds.len()),
            };
            meta.chunks[table as usize] = chunks?;
            meta.entries[table as usize] = entries as u64;
        }
        file.put(META_KEY, encode_into(&meta, &mut buffer))?;
        file.put(SCALARS_KEY, encode_into(&snapshot.scalars, &mut buffer))
    })?;
    Ok(meta)
}

/// Encodes `entries` chunk by chunk through reused buffers; returns the chunk count.
fn write_chunks<T: Copy>(
    entries: &[T],
    buffer: &mut AlignedVec,
    put: &mut impl FnMut(usize, &AlignedVec) -> Result<(), String>,
) -> Result<u32, String>
where
    Vec<T>: for<'a> rkyv::Serialize<
        rkyv::api::high::HighSerializer<AlignedVec, rkyv::ser::allocator::ArenaHandle<'a>, rancor::Error>,
    >,
{
    let mut scratch = Vec::with_capacity(entries.len().min(CHECKPOINT_CHUNK_ENTRIES_MAX));
    let mut count = 0;
    for (index, chunk) in entries.chunks(CHECKPOINT_CHUNK_ENTRIES_MAX).enumerate() {
        scratch.clear();
        scratch.extend_from_slice(chunk);
        put(index, encode_into(&scratch, buffer))?;
        count += 1;
    }
    Ok(count)
}

fn encode_into<'b, T>(value: &T, buffer: &'b mut AlignedVec) -> &'b AlignedVec
where
    T: for<'a> rkyv::Serialize<
        rkyv::api::high::HighSerializer<AlignedVec, rkyv::ser::allocator::ArenaHandle<'a>, rancor::Error>,
    >,
{
    buffer.clear();
    *buffer = rkyv::api::high::to_bytes_in::<_, rancor::Error>(value, std::mem::take(buffer))
        .expect("serializing a checkpoint into memory cannot fail");
    buffer
}

fn decode<T>(bytes: &[u8], buffer: &mut AlignedVec<16>) -> Result<T, String>
where
    T: Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rancor::Error>>
        + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rancor::Error>>,
{
    buffer.clear();
    buffer.extend_from_slice(bytes);
    rkyv::from_bytes::<T, rancor::Error>(buffer).map_err(|e| e.to_string())
}

pub(crate) fn decode_meta(bytes: &[u8]) -> Result<CheckpointMeta, String> {
    decode(bytes, &mut AlignedVec::new())
}

/// Loads the latest checkpoint: the state it holds and the journal entry it covers up
/// to, `Ok(None)` if there is none, or why it cannot be used.
pub(crate) fn load(store: &Store) -> Result<Option<(State, u64)>, String> {
    let get = |key: &[u8]| -> Result<StoredBytes<'_>, String> {
        store.checkpoint_value(key)?.ok_or_else(|| format!("{} is missing", show_key(key)))
    };
    let meta = match store.checkpoint_value(META_KEY)? {
        Some(bytes) => decode_meta(&bytes)?,
        None => return Ok(None),
    };
    if meta.format_version != CHECKPOINT_FORMAT_VERSION {
        return Err(format!("format {} (this build reads {CHECKPOINT_FORMAT_VERSION})", meta.format_version));
    }
    let scalars: Scalars = decode(&get(SCALARS_KEY)?, &mut AlignedVec::new())?;
    let mut state = State::new();
    restore_scalars(&mut state, scalars);
    if state.next_seq != meta.seq + 1 {
        return Err(format!("scalars end at entry {}, meta at {}", state.next_seq - 1, meta.seq));
    }
    // The accounts table is sized once, then refilled in the order it was copied in
    // (front to back, see `begin_snapshot`); the holds are small.
    let mut accounts = AccountTable::with_capacity(meta.entries(Table::Accounts));
    load_table(&get, &meta, Table::Accounts, |a: SnapAccount| {
        let balances = Balances {
            debits_pending: a.balances[0],
            debits_posted: a.balances[1],
            credits_pending: a.balances[2],
            credits_posted: a.balances[3],
        };
        let links = HistoryLinks { last_seq: a.last_seq, previous_seq: a.previous_seq };
        let velocity =
            Velocity { newest_bucket: a.velocity_bucket, counts: a.velocity_counts, amounts: a.velocity_amounts };
        if accounts.insert(AccountState { account: a.account, balances, links, velocity }) {
            Ok(())
        } else {
            Err(format!("account {:?} twice", a.account.id))
        }
    })?;
    state.accounts = accounts;
    load_table(&get, &meta, Table::Holds, |h: SnapHold| {
        let status = match h.status {
            0 => HoldStatus::Pending,
            1 => HoldStatus::Posted,
            2 => HoldStatus::Voided,
            3 => HoldStatus::Expired,
            other => return Err(format!("hold status {other}")),
        };
        let hold = Hold {
            debit: h.debit,
            credit: h.credit,
            amount: h.amount,
            currency: h.currency,
            expires_at: h.expires_at,
            status,
        };
        state.insert_hold(h.id, hold);
        Ok(())
    })?;
    Ok(Some((state, meta.seq)))
}

fn show_key(key: &[u8]) -> String {
    match key.strip_prefix(CHUNK_PREFIX) {
        Some([tag, index @ ..]) if index.len() == 4 => {
            format!("chunk {}{}", *tag as char, u32::from_be_bytes([index[0], index[1], index[2], index[3]]))
        }
        _ => String::from_utf8_lossy(key).into_owned(),
    }
}

/// Reads a table's chunks and hands each entry to `visit`; returns how many there were.
fn load_table<'g, T>(
    get: &(dyn Fn(&[u8]) -> Result<StoredBytes<'g>, String> + Sync),
    meta: &CheckpointMeta,
    table: Table,
    mut visit: impl FnMut(T) -> Result<(), String>,
) -> Result<usize, String>
where
    T: Send,
    Vec<T>: Archive,
    <Vec<T> as Archive>::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rancor::Error>>
        + rkyv::Deserialize<Vec<T>, rkyv::api::high::HighDeserializer<rancor::Error>>,
{
    // Reading and decoding the chunks runs on a thread of its own, ahead of the inserts
    // (and of faulting in the table): the two overlap instead of taking turns.
    std::thread::scope(|scope| {
        let (chunks, decoded) = crossbeam::channel::bounded::<Result<Vec<T>, String>>(LOAD_CHUNKS_AHEAD);
        scope.spawn(move || {
            let mut buffer = AlignedVec::new();
            for index in 0..meta.chunks(table) {
                let key = chunk_key(table, index);
                let entries = get(&key)
                    .and_then(|bytes| decode(&bytes, &mut buffer).map_err(|e| format!("{}: {e}", show_key(&key))));
                let failed = entries.is_err();
                if chunks.send(entries).is_err() || failed {
                    return;
                }
            }
        });
        let mut count = 0;
        for entries in decoded {
            for entry in entries? {
                visit(entry)?;
                count += 1;
            }
        }
        if count != meta.entries(table) {
            return Err(format!("{table:?}: {count} entries loaded, meta says {}", meta.entries(table)));
        }
        Ok(count)
    })
}

fn restore_scalars(state: &mut State, scalars: Scalars) {
    let position = |p: &SnapPosition| {
        (
            (p.participant, p.currency),
            Position { debits: p.debits, credits: p.credits, debit_count: p.debit_count, credit_count: p.credit_count },
        )
    };
    state.window = scalars.window;
    state.window_transfer_count = scalars.window_transfer_count;
    state.window_first_seq = scalars.window_first_seq;
    state.last_timestamp = scalars.last_timestamp;
    state.next_seq = scalars.next_seq;
    state.positions = scalars.positions.iter().map(position).collect();
    state.closed_windows = scalars
        .closed
        .iter()
        .map(|w| {
            let closed = ClosedWindow {
                closed_at: w.closed_at,
                positions: w.positions.iter().map(position).collect(),
                transfer_count: w.transfer_count,
                first_seq: w.first_seq,
                last_seq: w.last_seq,
            };
            (w.window, closed)
        })
        .collect();
}
