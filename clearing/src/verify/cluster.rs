//! A partitioned switch's merged set: a part for every partition, and parts that add up.
//!
//! Every partition's own nets sum to zero, so a merged set that lost a part would still
//! look balanced; what gives it away is here: the partitions the manifest names against
//! its parts, and the parts' record counts and control totals against the merged files'.

use super::{mismatch, VerifyError};
use crate::manifest::{ClusterCut, Manifest, MANIFEST_FILE};
use std::collections::{BTreeMap, BTreeSet};

pub(super) fn check_cluster(manifest: &Manifest, cluster: &ClusterCut) -> Result<(), VerifyError> {
    let file = MANIFEST_FILE;
    if cluster.partitions.is_empty() {
        return Err(VerifyError::Manifest("a merged set names no partitions".into()));
    }
    if cluster.cut != manifest.window {
        return Err(mismatch(file, "cluster", "the cut", manifest.window, cluster.cut));
    }
    let expected: BTreeSet<&str> = cluster.partitions.iter().map(String::as_str).collect();
    if expected.len() != cluster.partitions.len() {
        return Err(VerifyError::Manifest("a merged set names a partition twice".into()));
    }
    let mut present = BTreeSet::new();
    for part in &cluster.parts {
        if !expected.contains(part.partition.as_str()) {
            return Err(VerifyError::Manifest(format!(
                "holds a part of {}, which is not one of the switch's partitions at the cut",
                part.partition
            )));
        }
        if !present.insert(part.partition.as_str()) {
            return Err(VerifyError::Manifest(format!("holds two parts of partition {}", part.partition)));
        }
    }
    if let Some(missing) = expected.iter().find(|name| !present.contains(*name)) {
        return Err(VerifyError::Manifest(format!(
            "partition {missing}'s part is missing: this set is not the whole switch's"
        )));
    }
    let sum = |get: fn(&crate::manifest::RecordCounts) -> u64| -> u64 {
        cluster.parts.iter().map(|part| get(&part.records)).sum()
    };
    let counts = [
        ("transfers", sum(|r| r.transfers), manifest.records.transfers),
        ("transactions", sum(|r| r.transactions), manifest.records.transactions),
        ("participant transactions", sum(|r| r.participant_transactions), manifest.records.participant_transactions),
    ];
    for (what, parts, merged) in counts {
        if parts != merged {
            return Err(mismatch(file, "cluster", &format!("the {what} of the set (the parts' sum)"), parts, merged));
        }
    }
    // Per currency: the parts' debits, credits and counts add up to the set's.
    let mut sums: BTreeMap<&str, [u128; 4]> = BTreeMap::new();
    for part in &cluster.parts {
        for totals in &part.currencies {
            let location = format!("cluster, partition {}, {}", part.partition, totals.currency);
            let parse = |text: &str| {
                text.parse::<u128>().map_err(|_| {
                    VerifyError::Manifest(format!("{location}: {text:?} is not a whole number of minor units"))
                })
            };
            if totals.net_sum_minor != "0" {
                return Err(mismatch(file, &location, "the part's net sum", 0, &totals.net_sum_minor));
            }
            let slot = sums.entry(totals.currency.as_str()).or_default();
            slot[0] += parse(&totals.debits_minor)?;
            slot[1] += parse(&totals.credits_minor)?;
            slot[2] += u128::from(totals.debit_count);
            slot[3] += u128::from(totals.credit_count);
        }
    }
    let merged: BTreeMap<&str, [u128; 4]> = manifest
        .currencies
        .iter()
        .map(|totals| {
            let value = [
                totals.debits_minor.parse().unwrap_or(u128::MAX),
                totals.credits_minor.parse().unwrap_or(u128::MAX),
                u128::from(totals.debit_count),
                u128::from(totals.credit_count),
            ];
            (totals.currency.as_str(), value)
        })
        .collect();
    for currency in sums.keys().chain(merged.keys()).collect::<BTreeSet<_>>() {
        let parts = sums.get(currency).copied().unwrap_or_default();
        let whole = merged.get(currency).copied().unwrap_or_default();
        for (index, what) in ["debits", "credits", "debit count", "credit count"].iter().enumerate() {
            if parts[index] != whole[index] {
                return Err(mismatch(
                    file,
                    format!("cluster, {currency}"),
                    &format!("the {what} (the parts' sum)"),
                    parts[index],
                    whole[index],
                ));
            }
        }
    }
    Ok(())
}
