//! What a connection counts, merged into the run's totals by the reporter.

use crate::traffic::{Kind, KINDS};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;

/// Longest latency the histograms record; longer ones are recorded as this. A request
/// is a timeout long before (`--timeout`).
pub const LATENCY_US_MAX: u64 = 3_600_000_000;

/// Significant decimal digits of the latency histograms (0.1% resolution).
pub const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;

/// Response codes are two characters; numeric ones (all the switch sends) index a table.
pub const CODE_SLOTS: usize = 101;

/// Slot of codes that are not two digits.
const CODE_SLOT_OTHER: usize = 100;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, LATENCY_SIGNIFICANT_DIGITS).expect("constant, valid histogram bounds")
}

pub fn code_slot(code: &[u8]) -> usize {
    match code {
        [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => usize::from(a - b'0') * 10 + usize::from(b - b'0'),
        _ => CODE_SLOT_OTHER,
    }
}

pub fn slot_code(slot: usize) -> String {
    if slot == CODE_SLOT_OTHER {
        "other".into()
    } else {
        format!("{slot:02}")
    }
}

/// Money loadgen saw approved for one participant in one currency, as the ledger's
/// positions count it: one debit or credit per transfer, amounts in minor units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    pub debit_count: u64,
    pub credit_count: u64,
    pub debits_minor: u128,
    pub credits_minor: u128,
}

impl Delta {
    pub fn add(&mut self, other: &Delta) {
        self.debit_count += other.debit_count;
        self.credit_count += other.credit_count;
        self.debits_minor += other.debits_minor;
        self.credits_minor += other.credits_minor;
    }
}

/// Positions per (participant, ISO 4217 numeric currency).
pub type Positions = BTreeMap<(u64, u16), Delta>;

/// Records a transfer of `amount` from `debtor` to `creditor`; an on-us transfer (same
/// participant) moves no position, as in the ledger.
pub fn move_money(positions: &mut Positions, debtor: u64, creditor: u64, currency: u16, amount: u64) {
    if debtor == creditor {
        return;
    }
    let debit = positions.entry((debtor, currency)).or_default();
    debit.debit_count += 1;
    debit.debits_minor += u128::from(amount);
    let credit = positions.entry((creditor, currency)).or_default();
    credit.credit_count += 1;
    credit.credits_minor += u128::from(amount);
}

/// Counters of one connection (and, merged, of the run).
#[derive(Clone, Debug)]
pub struct Counters {
    /// Requests written, by kind actually sent.
    pub sent: [u64; KINDS.len()],
    /// Answers matched to a request, by kind and response code slot.
    pub answers: [[u64; CODE_SLOTS]; KINDS.len()],
    pub timeouts: [u64; KINDS.len()],
    /// Requests in flight when their connection failed: outcome unknown.
    pub lost: u64,
    /// Answers matching no request in flight (late after a timeout, or unknown).
    pub unmatched_answers: u64,
    /// Connections moved to another of the switch's nodes, and requests resent there.
    pub failovers: u64,
    pub resent_after_failover: u64,
    /// Answers the switch gave standing in for the card's issuer (field 44 "1"), one per
    /// decision: deliberate duplicates, answered with the same mark, are not counted.
    pub stood_in: u64,
    /// Answers whose MAC did not verify or that did not decode.
    pub bad_answers: u64,
    /// Kinds drawn but sent as their fallback (no hold to complete, nothing to repeat).
    pub fallbacks: [u64; KINDS.len()],
    pub duplicates_matched: u64,
    pub duplicates_mismatched: u64,
    /// Duplicates whose original or resend was answered 91 (overloaded): not comparable.
    pub duplicates_overloaded: u64,
    /// Requests of a kind that must get one code (unknown card 14, funds 51) that got
    /// another (91 excluded).
    pub expected_code_mismatched: [u64; KINDS.len()],
    /// A few descriptions of mismatches, for the report.
    pub mismatch_examples: Vec<String>,
    /// Money moved by approved requests, as loadgen saw it.
    pub positions: Positions,
    /// Answers whose code is not two digits (QR mode: HTTP status and error code, e.g.
    /// `200`, `422:insufficient_headroom`), per kind.
    pub named: BTreeMap<String, [u64; KINDS.len()]>,
}

/// The QR mode's code of an approved payment.
pub const NAMED_APPROVED: &str = "200";

/// The QR mode's code of a payment refused for overload.
pub const NAMED_OVERLOADED: &str = "503:overloaded";

/// Descriptions of mismatches kept per connection.
pub const MISMATCH_EXAMPLES_MAX: usize = 8;

impl Default for Counters {
    fn default() -> Self {
        Counters {
            sent: [0; KINDS.len()],
            answers: [[0; CODE_SLOTS]; KINDS.len()],
            timeouts: [0; KINDS.len()],
            lost: 0,
            failovers: 0,
            resent_after_failover: 0,
            unmatched_answers: 0,
            stood_in: 0,
            bad_answers: 0,
            fallbacks: [0; KINDS.len()],
            duplicates_matched: 0,
            duplicates_mismatched: 0,
            duplicates_overloaded: 0,
            expected_code_mismatched: [0; KINDS.len()],
            mismatch_examples: Vec::new(),
            positions: Positions::new(),
            named: BTreeMap::new(),
        }
    }
}

impl Counters {
    pub fn merge(&mut self, other: &Counters) {
        for kind in 0..KINDS.len() {
            self.sent[kind] += other.sent[kind];
            self.timeouts[kind] += other.timeouts[kind];
            self.fallbacks[kind] += other.fallbacks[kind];
            self.expected_code_mismatched[kind] += other.expected_code_mismatched[kind];
            for slot in 0..CODE_SLOTS {
                self.answers[kind][slot] += other.answers[kind][slot];
            }
        }
        self.lost += other.lost;
        self.failovers += other.failovers;
        self.resent_after_failover += other.resent_after_failover;
        self.unmatched_answers += other.unmatched_answers;
        self.stood_in += other.stood_in;
        self.bad_answers += other.bad_answers;
        self.duplicates_matched += other.duplicates_matched;
        self.duplicates_mismatched += other.duplicates_mismatched;
        self.duplicates_overloaded += other.duplicates_overloaded;
        for example in &other.mismatch_examples {
            if self.mismatch_examples.len() < MISMATCH_EXAMPLES_MAX {
                self.mismatch_examples.push(example.clone());
            }
        }
        for (key, delta) in &other.positions {
            self.positions.entry(*key).or_default().add(delta);
        }
        for (code, counts) in &other.named {
            let mine = self.named.entry(code.clone()).or_insert([0; KINDS.len()]);
            for (total, count) in mine.iter_mut().zip(counts) {
                *total += count;
            }
        }
    }

    /// Counts an answer with a named (non-numeric) code.
    pub fn answer_named(&mut self, kind: Kind, code: &str) {
        self.named.entry(code.to_string()).or_insert([0; KINDS.len()])[kind.index()] += 1;
    }

    fn named_total(&self, code: &str) -> u64 {
        self.named.get(code).map_or(0, |counts| counts.iter().sum())
    }

    /// Approvals: ISO 8583 code 00 or QR HTTP 200.
    pub fn approved_total(&self) -> u64 {
        self.answered_with(0) + self.named_total(NAMED_APPROVED)
    }

    /// Refused for overload: ISO 8583 code 91 or QR `503:overloaded`.
    pub fn overloaded_total(&self) -> u64 {
        self.answered_with(91) + self.named_total(NAMED_OVERLOADED)
    }

    pub fn sent_total(&self) -> u64 {
        self.sent.iter().sum()
    }

    pub fn answered_total(&self) -> u64 {
        self.answers.iter().flatten().sum::<u64>() + self.named.values().flatten().sum::<u64>()
    }

    pub fn timeouts_total(&self) -> u64 {
        self.timeouts.iter().sum()
    }

    pub fn answered_with(&self, slot: usize) -> u64 {
        self.answers.iter().map(|codes| codes[slot]).sum()
    }

    /// Answers by response code, over all kinds.
    pub fn by_code(&self) -> BTreeMap<String, u64> {
        let mut codes = BTreeMap::new();
        for slot in 0..CODE_SLOTS {
            let count = self.answered_with(slot);
            if count > 0 {
                codes.insert(slot_code(slot), count);
            }
        }
        for code in self.named.keys() {
            codes.insert(code.clone(), self.named_total(code));
        }
        codes
    }

    pub fn by_code_of(&self, kind: Kind) -> BTreeMap<String, u64> {
        let mut codes = BTreeMap::new();
        for (slot, count) in self.answers[kind.index()].iter().enumerate() {
            if *count > 0 {
                codes.insert(slot_code(slot), *count);
            }
        }
        for (code, counts) in &self.named {
            if counts[kind.index()] > 0 {
                codes.insert(code.clone(), counts[kind.index()]);
            }
        }
        codes
    }

    pub fn note_mismatch(&mut self, description: String) {
        if self.mismatch_examples.len() < MISMATCH_EXAMPLES_MAX {
            self.mismatch_examples.push(description);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_slots_round_trip() {
        assert_eq!(code_slot(b"00"), 0);
        assert_eq!(code_slot(b"91"), 91);
        assert_eq!(code_slot(b"X1"), CODE_SLOT_OTHER);
        assert_eq!(slot_code(51), "51");
    }

    #[test]
    fn on_us_moves_nothing() {
        let mut positions = Positions::new();
        move_money(&mut positions, 1, 1, 840, 100);
        assert!(positions.is_empty());
        move_money(&mut positions, 1, 3, 840, 100);
        move_money(&mut positions, 3, 1, 840, 30);
        let issuer = positions[&(1, 840)];
        assert_eq!(
            (issuer.debit_count, issuer.credit_count, issuer.debits_minor, issuer.credits_minor),
            (1, 1, 100, 30)
        );
    }
}
