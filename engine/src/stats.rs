//! Answer counters by response code and decline reason: one cache-line-padded set per
//! thread that answers (each shard, the completion stage, the front door), summed on read.

use crate::codes::{DeclineReason, ResponseCode};
use crossbeam::utils::CachePadded;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one thread; summed on read.
#[derive(Default)]
pub struct Counters {
    by_code: [AtomicU64; RESPONSE_CODES.len()],
    /// Codes not in `RESPONSE_CODES` (an issuer host's own).
    by_other_code: AtomicU64,
    /// By the reason's id (`DeclineReason::id`, 1 to `COUNT`).
    by_reason: [AtomicU64; DeclineReason::COUNT + 1],
}

static RESPONSE_CODES: [ResponseCode; 16] = [
    ResponseCode::Approved,
    ResponseCode::DoNotHonor,
    ResponseCode::InvalidTransaction,
    ResponseCode::InvalidAmount,
    ResponseCode::InvalidCard,
    ResponseCode::OriginalNotFound,
    ResponseCode::FormatError,
    ResponseCode::InsufficientFunds,
    ResponseCode::ExpiredCard,
    ResponseCode::NotPermitted,
    ResponseCode::AmountLimitExceeded,
    ResponseCode::SecurityViolation,
    ResponseCode::FrequencyLimitExceeded,
    ResponseCode::SystemUnavailable,
    ResponseCode::DuplicateTransmission,
    ResponseCode::SystemMalfunction,
];

/// Answer counters by response code and decline reason, one cache line set per thread.
pub struct EngineStats {
    slots: Vec<CachePadded<Counters>>,
}

impl EngineStats {
    pub(crate) fn new(slots: usize) -> EngineStats {
        EngineStats { slots: (0..slots).map(|_| CachePadded::new(Counters::default())).collect() }
    }

    pub(crate) fn record(&self, slot: usize, code: ResponseCode, reason: Option<DeclineReason>) {
        let Some(counters) = self.slots.get(slot) else { return };
        match RESPONSE_CODES.iter().position(|c| *c == code) {
            Some(index) => counters.by_code[index].fetch_add(1, Ordering::Relaxed),
            None => counters.by_other_code.fetch_add(1, Ordering::Relaxed),
        };
        if let Some(reason) = reason {
            counters.by_reason[usize::from(reason.id())].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Answers so far per response code (only codes seen).
    pub fn by_code(&self) -> BTreeMap<&'static str, u64> {
        let mut totals = BTreeMap::new();
        for (index, code) in RESPONSE_CODES.iter().enumerate() {
            let sum: u64 = self.slots.iter().map(|s| s.by_code[index].load(Ordering::Relaxed)).sum();
            if sum > 0 {
                totals.insert(code.as_str(), sum);
            }
        }
        let other: u64 = self.slots.iter().map(|s| s.by_other_code.load(Ordering::Relaxed)).sum();
        if other > 0 {
            totals.insert("other", other);
        }
        totals
    }

    /// Declines so far per reason (only reasons seen).
    pub fn by_reason(&self) -> BTreeMap<&'static str, u64> {
        let mut totals = BTreeMap::new();
        for reason in DeclineReason::all() {
            let index = usize::from(reason.id());
            let sum: u64 = self.slots.iter().map(|s| s.by_reason[index].load(Ordering::Relaxed)).sum();
            if sum > 0 {
                totals.insert(reason.name(), sum);
            }
        }
        totals
    }
}
