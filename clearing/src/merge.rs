//! One clearing set for a partitioned switch: the parts that each partition wrote for a
//! cluster-wide cut-off, merged.
//!
//! Each partition is a whole double-entry ledger of its own issuers, so each part's nets
//! already sum to zero: a set missing a part would look balanced. The merged manifest
//! therefore names every partition of the switch at the cut (`ClusterCut::partitions`)
//! and each part's own record counts and control totals; `verify_folder` checks that a
//! part is there for each partition and that the parts add up to the merged files.
//!
//! What the merged set holds, file by file:
//! - `positions.csv`: each participant's positions summed over the parts (an acquirer
//!   that is paid in two partitions has one row per currency);
//! - `transfers.csv`, `transactions.csv` and each participant's transactions file: the
//!   parts' rows, part after part in partition order;
//! - a camt.053 per participant and currency, its opening balance the sum of the parts'
//!   openings; a pacs.009 per currency, from the merged nets;
//! - `manifest.json` with `cluster` set; `window` is the cut's number.
//!
//! The merged folder appears whole or not at all, like a window's.

use super::format::Components;
use super::iso20022::{self, XML_FILE_BYTES_MAX};
use super::manifest::{
    cut_folder_name, ClusterCut, FileEntry, Manifest, PartEntry, RecordCounts, MANIFEST_FILE, MANIFEST_FORMAT,
    MANIFEST_FORMAT_VERSION, TRANSACTIONS_FILE, TRANSFERS_FILE,
};
use super::sink::{build_atomically, write_small_file};
use super::text::timestamp_string;
use super::verify::{self, read_limited, read_positions, signed_by, xml_amount, VerifyError};
use super::write::{write_settlement_files, Settlement};
use super::{ClearingConfig, ClearingError};
use junction_ledger::{Currency, ParticipantId, Position, PositionKey};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// One partition's clearing set of a cut: its window's folder.
#[derive(Debug, Clone)]
pub struct Part {
    pub partition: String,
    pub folder: PathBuf,
}

/// Why parts could not be merged. Nothing is written in that case.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("partition {0} has no part: a set without it would not be the whole switch's")]
    MissingPart(String),
    #[error("a part is given for {0}, which is not a partition of the switch at the cut")]
    UnexpectedPart(String),
    #[error("partition {0} is given two parts")]
    DuplicatePart(String),
    #[error("no partitions: a cut needs at least one")]
    NoPartitions,
    #[error("the part of partition {partition} ({}) does not verify: {source}", folder.display())]
    PartInvalid { partition: String, folder: PathBuf, source: Box<VerifyError> },
    #[error("the parts disagree about {what}: {first:?} and {other:?}")]
    PartsDisagree { what: &'static str, first: String, other: String },
    #[error(transparent)]
    Clearing(#[from] ClearingError),
}

/// Merges the parts of cut `cut` into `out_root/cut-<cut>/` and returns its manifest.
/// `partitions` is every partition of the switch at the cut; a part of each is needed.
/// Every part is verified first. Idempotent like `write_window_files`: a merged folder that
/// is already there and verifies is returned as it is.
pub fn merge_parts(
    cut: u64,
    partitions: &[String],
    parts: &[Part],
    out_root: &Path,
    config: &ClearingConfig,
) -> Result<Manifest, MergeError> {
    config.validate()?;
    let expected: BTreeSet<&str> = partitions.iter().map(String::as_str).collect();
    if expected.is_empty() {
        return Err(MergeError::NoPartitions);
    }
    let mut by_partition: BTreeMap<&str, &Part> = BTreeMap::new();
    for part in parts {
        if !expected.contains(part.partition.as_str()) {
            return Err(MergeError::UnexpectedPart(part.partition.clone()));
        }
        if by_partition.insert(part.partition.as_str(), part).is_some() {
            return Err(MergeError::DuplicatePart(part.partition.clone()));
        }
    }
    if let Some(missing) = expected.iter().find(|name| !by_partition.contains_key(*name)) {
        return Err(MergeError::MissingPart((*missing).to_string()));
    }
    let target = out_root.join(cut_folder_name(cut));
    if target.exists() {
        return match verify::verify_folder(&target) {
            Ok(report) => Ok(report.manifest),
            Err(source) => Err(ClearingError::ExistingFolderInvalid { path: target, source: Box::new(source) }.into()),
        };
    }
    let mut read = Vec::with_capacity(by_partition.len());
    for (partition, part) in &by_partition {
        let invalid = |source| MergeError::PartInvalid {
            partition: (*partition).to_string(),
            folder: part.folder.clone(),
            source,
        };
        let report = verify::verify_folder(&part.folder).map_err(|error| invalid(Box::new(error)))?;
        if report.manifest.cluster.is_some() {
            return Err(invalid(Box::new(VerifyError::Manifest("is a merged set, not one partition's part".into()))));
        }
        let summed = read_part(&part.folder, &report.manifest).map_err(|error| invalid(Box::new(error)))?;
        read.push(((*partition).to_string(), part.folder.clone(), report.manifest, summed));
    }
    for (_, _, manifest, _) in &read[1..] {
        let first = &read[0].2;
        let pairs = [
            ("the switch's BIC", &first.switch_bic, &manifest.switch_bic),
            ("the settlement bank's BIC", &first.settlement_bank_bic, &manifest.settlement_bank_bic),
        ];
        for (what, a, b) in pairs {
            if a != b {
                return Err(MergeError::PartsDisagree { what, first: a.clone(), other: b.clone() });
            }
        }
        if first.fee_participant != manifest.fee_participant {
            return Err(MergeError::PartsDisagree {
                what: "the fee participant",
                first: format!("{:?}", first.fee_participant),
                other: format!("{:?}", manifest.fee_participant),
            });
        }
    }

    let temp = out_root.join(format!(".{}.tmp", cut_folder_name(cut)));
    build_atomically(out_root, &temp, &target, |dir| build_merged(cut, partitions, &read, dir, config))
}

/// What one part adds to the merged settlement files.
#[derive(Default)]
struct PartSums {
    positions: BTreeMap<PositionKey, Position>,
    components: BTreeMap<PositionKey, Components>,
    openings: BTreeMap<PositionKey, i128>,
}

fn read_part(folder: &Path, manifest: &Manifest) -> Result<PartSums, VerifyError> {
    let mut sums = PartSums::default();
    for row in read_positions(folder, manifest)?.into_values() {
        let key = (ParticipantId(row.participant), row.currency);
        sums.positions.insert(key, row.position);
        sums.components.insert(key, row.components);
    }
    // The openings are the statements' (a partition's cumulative nets before this cut).
    for entry in manifest.files.iter().filter(|entry| entry.name.starts_with("camt053-")) {
        let file = entry.name.as_str();
        let xml = read_limited(folder, file, XML_FILE_BYTES_MAX)?;
        let parsed = iso20022::parse_statement(&xml).map_err(|problem| verify::malformed(file, "XML", problem))?;
        let participant = parsed
            .participant_ids
            .first()
            .and_then(|id| id.parse::<u64>().ok())
            .ok_or_else(|| verify::malformed(file, "XML", "no participant id"))?;
        let currency = Currency::from_code(&parsed.account_currency)
            .map_err(|_| verify::malformed(file, "XML", "the account currency is not ISO 4217"))?;
        let opening = parsed
            .balances
            .iter()
            .find(|balance| balance.code == iso20022::BALANCE_OPENING)
            .ok_or_else(|| verify::malformed(file, "XML", "no opening balance"))?;
        let amount = xml_amount(file, "the opening balance", "OPBD", &opening.amount, currency)?;
        let signed = signed_by(&opening.indicator, amount, file, "the opening balance")?;
        if signed != 0 {
            sums.openings.insert((ParticipantId(participant), currency), signed);
        }
    }
    Ok(sums)
}

type ReadPart = (String, PathBuf, Manifest, PartSums);

fn build_merged(
    cut: u64,
    partitions: &[String],
    parts: &[ReadPart],
    dir: &Path,
    config: &ClearingConfig,
) -> Result<Manifest, MergeError> {
    let mut positions: BTreeMap<PositionKey, Position> = BTreeMap::new();
    let mut components: BTreeMap<PositionKey, Components> = BTreeMap::new();
    let mut openings: BTreeMap<PositionKey, i128> = BTreeMap::new();
    for (_, _, _, sums) in parts {
        for (key, position) in &sums.positions {
            let merged = positions.entry(*key).or_default();
            merged.debits += position.debits;
            merged.credits += position.credits;
            merged.debit_count += position.debit_count;
            merged.credit_count += position.credit_count;
        }
        for (key, parts) in &sums.components {
            let merged = components.entry(*key).or_default();
            for (slot, part) in merged.iter_mut().zip(parts) {
                *slot += part;
            }
        }
        for (key, opening) in &sums.openings {
            *openings.entry(*key).or_default() += opening;
        }
    }
    // The cut's time is its latest part's: every partition had closed by then.
    let closed_at = parts.iter().map(|(_, _, manifest, _)| manifest.cut_off_ns).max().unwrap_or(0);

    let mut files = Vec::new();
    let folders: Vec<&Path> = parts.iter().map(|(_, folder, _, _)| folder.as_path()).collect();
    for name in [TRANSFERS_FILE, TRANSACTIONS_FILE] {
        files.push(concatenate(&folders, name, dir)?);
    }
    let participant_files: BTreeSet<&str> = parts
        .iter()
        .flat_map(|(_, _, manifest, _)| manifest.files.iter())
        .map(|entry| entry.name.as_str())
        .filter(|name| name.starts_with("transactions-"))
        .collect();
    for name in participant_files {
        let holding: Vec<&Path> = parts
            .iter()
            .filter(|(_, _, manifest, _)| manifest.files.iter().any(|entry| entry.name == name))
            .map(|(_, folder, _, _)| folder.as_path())
            .collect();
        files.push(concatenate(&holding, name, dir)?);
    }
    let settlement =
        Settlement { window: cut, closed_at, positions: &positions, components: &components, openings: &openings };
    let settlement = write_settlement_files(&settlement, config, dir)?;
    files.extend(settlement.files);
    files.sort_by(|a, b| a.name.cmp(&b.name));

    let mut records = RecordCounts {
        transfers: 0,
        transactions: 0,
        participant_transactions: 0,
        positions: positions.len() as u64,
        statements: settlement.statements,
        settlement_instructions: settlement.instructions,
    };
    let mut part_entries = Vec::with_capacity(parts.len());
    for (partition, folder, manifest, _) in parts {
        records.transfers += manifest.records.transfers;
        records.transactions += manifest.records.transactions;
        records.participant_transactions += manifest.records.participant_transactions;
        let (_, manifest_sha256) = super::sink::hash_file(&folder.join(MANIFEST_FILE))
            .map_err(ClearingError::io(folder.join(MANIFEST_FILE)))?;
        part_entries.push(PartEntry {
            partition: partition.clone(),
            window: manifest.window,
            cut_off: manifest.cut_off.clone(),
            journal_first_seq: manifest.journal_first_seq,
            journal_last_seq: manifest.journal_last_seq,
            manifest_sha256,
            records: manifest.records.clone(),
            currencies: manifest.currencies.clone(),
        });
    }
    let first = &parts[0].2;
    let mut partitions: Vec<String> = partitions.to_vec();
    partitions.sort();
    partitions.dedup();
    let manifest = Manifest {
        format: MANIFEST_FORMAT.to_string(),
        format_version: MANIFEST_FORMAT_VERSION,
        window: cut,
        cut_off: timestamp_string(closed_at),
        cut_off_ns: closed_at,
        journal_first_seq: 0,
        journal_last_seq: 0,
        switch_name: config.switch_name.clone(),
        switch_bic: first.switch_bic.clone(),
        settlement_bank_bic: first.settlement_bank_bic.clone(),
        fee_participant: first.fee_participant,
        records,
        currencies: settlement.totals.into_values().collect(),
        files,
        cluster: Some(ClusterCut { cut, partitions, parts: part_entries }),
    };
    let mut json = serde_json::to_vec_pretty(&manifest).map_err(ClearingError::from)?;
    json.push(b'\n');
    write_small_file(dir, MANIFEST_FILE, &json).map_err(ClearingError::io(dir.join(MANIFEST_FILE)))?;
    Ok(manifest)
}

/// Writes `dir/name` as the header of the first folder's `name` and then every folder's
/// rows, hashing as it goes; fsynced.
fn concatenate(folders: &[&Path], name: &str, dir: &Path) -> Result<FileEntry, ClearingError> {
    let path = dir.join(name);
    let io_error = ClearingError::io(&path);
    let written = (|| -> io::Result<FileEntry> {
        let file = File::options().write(true).create_new(true).open(&path)?;
        let mut out =
            HashingWriter { inner: io::BufWriter::with_capacity(1 << 20, file), hasher: Sha256::new(), bytes: 0 };
        for (index, folder) in folders.iter().enumerate() {
            let mut reader = BufReader::with_capacity(1 << 20, File::open(folder.join(name))?);
            let mut header = Vec::new();
            reader.read_until(b'\n', &mut header)?;
            if index == 0 {
                out.write_all(&header)?;
            }
            io::copy(&mut reader, &mut out)?;
        }
        out.flush()?;
        let HashingWriter { inner, hasher, bytes } = out;
        let file = inner.into_inner().map_err(|error| error.into_error())?;
        file.sync_all()?;
        Ok(FileEntry { name: name.to_string(), bytes, sha256: hex::encode(hasher.finalize()) })
    })();
    written.map_err(io_error)
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
