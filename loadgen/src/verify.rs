//! `--verify`: does the ledger hold what loadgen saw approved?
//!
//! Before the run loadgen reads the open window's net positions; after it, the positions
//! of every window from that one to the one open now (a cut-off during the run closes
//! windows). The change, per participant and currency (debit and credit counts and
//! amounts), must equal what loadgen booked from the approvals it received: purchases and
//! completions move money from the card's issuer to the acquirer; refunds and reversals of
//! purchases from the acquirer to the issuer; authorizations, voids of holds, balance
//! inquiries, declines and duplicates move nothing.
//!
//! This holds only when loadgen is the only traffic on the switch during the run, and
//! only when every request's outcome is known: a timeout or a request lost with its
//! connection might or might not have moved money, so the check then fails as
//! inconclusive.

use crate::admin::{Admin, Snapshot};
use crate::stats::{Delta, Positions};
use crate::traffic::currency_code;
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;

/// One participant and currency: what loadgen expected and what the ledger shows.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub participant: u64,
    pub currency: String,
    pub expected_debit_count: u64,
    pub expected_credit_count: u64,
    pub expected_debits_minor: String,
    pub expected_credits_minor: String,
    pub ledger_debit_count: u64,
    pub ledger_credit_count: u64,
    pub ledger_debits_minor: String,
    pub ledger_credits_minor: String,
    pub matches: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub passed: bool,
    /// Why the comparison cannot be exact (timeouts, lost requests), if it cannot.
    pub inconclusive: Option<String>,
    pub windows: Vec<u64>,
    pub rows: Vec<Row>,
}

/// Positions (or their change) by participant and currency code.
pub type Change = BTreeMap<(u64, String), Delta>;

/// The change of positions since `before`, summed over the windows opened since.
pub fn ledger_change(admin: &Admin, before: &Snapshot) -> Result<(Vec<u64>, Change)> {
    let now = admin.positions(None)?;
    let mut change = Change::new();
    let windows: Vec<u64> = (before.window..=now.window).collect();
    for window in &windows {
        let snapshot = if *window == now.window { now.clone() } else { admin.positions(Some(*window))? };
        for (key, delta) in snapshot.rows {
            change.entry(key).or_default().add(&delta);
        }
    }
    for (key, delta) in &before.rows {
        let entry = change.entry(key.clone()).or_default();
        entry.debit_count = entry.debit_count.saturating_sub(delta.debit_count);
        entry.credit_count = entry.credit_count.saturating_sub(delta.credit_count);
        entry.debits_minor = entry.debits_minor.saturating_sub(delta.debits_minor);
        entry.credits_minor = entry.credits_minor.saturating_sub(delta.credits_minor);
    }
    Ok((windows, change))
}

pub fn compare(expected: &Positions, windows: Vec<u64>, ledger: &Change, inconclusive: Option<String>) -> Outcome {
    let mut keyed: BTreeMap<(u64, String), (Delta, Delta)> = BTreeMap::new();
    for ((participant, numeric), delta) in expected {
        keyed.entry((*participant, currency_code(*numeric).to_string())).or_default().0.add(delta);
    }
    for (key, delta) in ledger {
        keyed.entry(key.clone()).or_default().1.add(delta);
    }
    let rows: Vec<Row> = keyed
        .into_iter()
        .filter(|(_, (expected, ledger))| *expected != Delta::default() || *ledger != Delta::default())
        .map(|((participant, currency), (expected, ledger))| Row {
            participant,
            currency,
            expected_debit_count: expected.debit_count,
            expected_credit_count: expected.credit_count,
            expected_debits_minor: expected.debits_minor.to_string(),
            expected_credits_minor: expected.credits_minor.to_string(),
            ledger_debit_count: ledger.debit_count,
            ledger_credit_count: ledger.credit_count,
            ledger_debits_minor: ledger.debits_minor.to_string(),
            ledger_credits_minor: ledger.credits_minor.to_string(),
            matches: expected == ledger,
        })
        .collect();
    let passed = inconclusive.is_none() && rows.iter().all(|row| row.matches);
    Outcome { passed, inconclusive, windows, rows }
}

/// The comparison as a table for the terminal.
pub fn render(outcome: &Outcome) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "verify: positions change over window(s) {:?} against the approvals loadgen saw (valid only if loadgen was the \
         switch's only traffic)",
        outcome.windows
    );
    let _ = writeln!(
        text,
        "  {:>11} {:>3} | {:>22} {:>22} | {:>22} {:>22} |",
        "participant", "cur", "expected debits (n)", "expected credits (n)", "ledger debits (n)", "ledger credits (n)"
    );
    for row in &outcome.rows {
        let _ = writeln!(
            text,
            "  {:>11} {:>3} | {:>22} {:>22} | {:>22} {:>22} | {}",
            row.participant,
            row.currency,
            format!("{} ({})", row.expected_debits_minor, row.expected_debit_count),
            format!("{} ({})", row.expected_credits_minor, row.expected_credit_count),
            format!("{} ({})", row.ledger_debits_minor, row.ledger_debit_count),
            format!("{} ({})", row.ledger_credits_minor, row.ledger_credit_count),
            if row.matches { "ok" } else { "DIFFERENT" },
        );
    }
    if outcome.rows.is_empty() {
        let _ = writeln!(text, "  (no money moved, and none was expected to)");
    }
    if let Some(why) = &outcome.inconclusive {
        let _ = writeln!(text, "verify: INCONCLUSIVE: {why}");
    }
    let _ = writeln!(text, "verify: {}", if outcome.passed { "PASSED" } else { "FAILED" });
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::move_money;

    #[test]
    fn equal_changes_pass_and_differences_fail() {
        let mut expected = Positions::new();
        move_money(&mut expected, 1, 3, 840, 500);
        let mut ledger = BTreeMap::new();
        ledger.insert((1, "USD".to_string()), Delta { debit_count: 1, debits_minor: 500, ..Delta::default() });
        ledger.insert((3, "USD".to_string()), Delta { credit_count: 1, credits_minor: 500, ..Delta::default() });
        assert!(compare(&expected, vec![1], &ledger, None).passed);
        assert!(!compare(&expected, vec![1], &ledger, Some("1 timeout".into())).passed);
        ledger.insert((2, "JPY".to_string()), Delta { credit_count: 1, credits_minor: 1, ..Delta::default() });
        let outcome = compare(&expected, vec![1], &ledger, None);
        assert!(!outcome.passed);
        assert_eq!(outcome.rows.iter().filter(|r| !r.matches).count(), 1);
    }
}
