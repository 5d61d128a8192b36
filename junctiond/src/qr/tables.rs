//! The QR gateway's in-memory tables: quotes (until they expire) and payment records (for
//! idempotent answers, `GET` and refunds). Both are bounded; neither is persisted. The
//! ledger holds the money: after a restart the records are gone, and the gateway answers
//! what it can from the ledger's transfers (see `recover` in the parent module).
//!
//! Each table is one `parking_lot` mutex held for a hash-map operation, never across an
//! `await` or a call into the engine.

use super::quote::Quote;
use junction_engine::codes::DeclineReason;
use junction_engine::model::RequestKey;
use junction_ledger::ParticipantId;
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::sync::Arc;

/// Quotes held at once (about 300 bytes each). Expired quotes are dropped first; when the
/// table is full of live quotes, new quotes are refused as overloaded (HTTP 503).
pub const QUOTES_MAX: usize = 262_144;
/// How long an expired quote is remembered, so that paying it says `quote_expired` rather
/// than `unknown_quote`.
pub const QUOTE_EXPIRED_KEPT_MS: u64 = 600_000;
/// Payment records held (about 400 bytes each); the oldest is forgotten first.
pub const PAYMENTS_MAX: usize = 262_144;
/// Refund records held (about 120 bytes each); the oldest is forgotten first.
pub const REFUNDS_MAX: usize = 262_144;
/// Refunds one payment may have (partial refunds are rare; this bounds a record's size).
pub const REFUNDS_PER_PAYMENT_MAX: usize = 16;

pub type Digest = [u8; 16];

struct StoredQuote {
    quote: Arc<Quote>,
    /// The payment that consumed it; a quote pays once.
    used_by: Option<RequestKey>,
}

#[derive(Default)]
struct QuoteTable {
    quotes: FxHashMap<u128, StoredQuote>,
    /// (expires_at_ms, id) in insertion order; with one TTL that is expiry order.
    order: VecDeque<(u64, u128)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuoteError {
    Unknown,
    Expired,
    /// Consumed by another payment.
    Used,
    Full,
}

#[derive(Default)]
pub struct Quotes {
    table: Mutex<QuoteTable>,
}

impl Quotes {
    pub fn insert(&self, quote: Arc<Quote>, now_ms: u64) -> Result<(), QuoteError> {
        let mut table = self.table.lock();
        let QuoteTable { quotes, order } = &mut *table;
        while let Some(&(expires_at_ms, id)) = order.front() {
            let long_gone = expires_at_ms.saturating_add(QUOTE_EXPIRED_KEPT_MS) <= now_ms;
            let full_and_expired = quotes.len() >= QUOTES_MAX && expires_at_ms <= now_ms;
            if !(long_gone || full_and_expired) {
                break;
            }
            order.pop_front();
            quotes.remove(&id);
        }
        if quotes.len() >= QUOTES_MAX {
            return Err(QuoteError::Full);
        }
        order.push_back((quote.expires_at_ms, quote.id));
        quotes.insert(quote.id, StoredQuote { quote, used_by: None });
        Ok(())
    }

    /// Takes a live quote of `wallet` for payment `key` (again, if `key` took it before).
    pub fn take(
        &self,
        id: u128,
        wallet: ParticipantId,
        key: RequestKey,
        now_ms: u64,
    ) -> Result<Arc<Quote>, QuoteError> {
        let mut table = self.table.lock();
        // Another wallet's quote is as good as unknown: ids are not secrets, but they are
        // not a way to learn about other wallets' payments either.
        let stored = table.quotes.get_mut(&id).filter(|s| s.quote.wallet == wallet).ok_or(QuoteError::Unknown)?;
        if stored.quote.expires_at_ms <= now_ms {
            return Err(QuoteError::Expired);
        }
        match stored.used_by {
            Some(user) if user != key => Err(QuoteError::Used),
            _ => {
                stored.used_by = Some(key);
                Ok(Arc::clone(&stored.quote))
            }
        }
    }

    /// Makes a quote usable again after its payment was declined or never reached the
    /// ledger.
    pub fn release(&self, id: u128, key: RequestKey) {
        if let Some(stored) = self.table.lock().quotes.get_mut(&id) {
            if stored.used_by == Some(key) {
                stored.used_by = None;
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Submitted to the engine, no answer yet.
    Pending,
    Approved {
        ledger_timestamp_ns: u64,
        auth_code: [u8; 6],
    },
    Declined(DeclineReason),
}

pub struct PaymentRecord {
    pub id: RequestKey,
    /// Digest of what was asked, to tell a resend from a conflicting reuse of the key.
    pub content: Digest,
    pub quote: Arc<Quote>,
    pub state: State,
    /// Payee currency, approved refunds.
    pub refunded_payee_minor: u64,
    /// Payer currency, what approved refunds credited.
    pub credited_payer_minor: u64,
    /// At most one refund of a payment is in flight (cumulative rounding needs order).
    pub refund_in_flight: bool,
    pub refunds: Vec<RequestKey>,
}

pub struct RefundRecord {
    pub id: RequestKey,
    pub payment: RequestKey,
    pub content: Digest,
    pub payee_minor: u64,
    pub payer_minor: u64,
    pub state: State,
}

/// A map that forgets its oldest entries past `max`: insertion order is kept in a queue of
/// (key, sequence); an entry removed early leaves a stale queue slot that eviction skips,
/// and the queue itself is bounded at twice the map.
pub struct BoundedMap<V> {
    map: FxHashMap<RequestKey, (u64, V)>,
    order: VecDeque<(RequestKey, u64)>,
    next_seq: u64,
    max: usize,
}

impl<V> BoundedMap<V> {
    pub fn new(max: usize) -> BoundedMap<V> {
        BoundedMap { map: FxHashMap::default(), order: VecDeque::new(), next_seq: 0, max: max.max(1) }
    }

    pub fn get(&self, key: &RequestKey) -> Option<&V> {
        self.map.get(key).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &RequestKey) -> Option<&mut V> {
        self.map.get_mut(key).map(|(_, v)| v)
    }

    pub fn insert(&mut self, key: RequestKey, value: V) {
        while self.map.len() >= self.max || self.order.len() >= 2 * self.max {
            let Some((oldest, seq)) = self.order.pop_front() else { break };
            if self.map.get(&oldest).is_some_and(|(s, _)| *s == seq) {
                self.map.remove(&oldest);
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.map.insert(key, (seq, value));
        self.order.push_back((key, seq));
    }

    pub fn remove(&mut self, key: &RequestKey) -> Option<V> {
        self.map.remove(key).map(|(_, v)| v)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

pub struct PaymentTable {
    pub payments: BoundedMap<PaymentRecord>,
    pub refunds: BoundedMap<RefundRecord>,
}

impl Default for PaymentTable {
    fn default() -> Self {
        PaymentTable { payments: BoundedMap::new(PAYMENTS_MAX), refunds: BoundedMap::new(REFUNDS_MAX) }
    }
}

#[derive(Default)]
pub struct Payments {
    pub table: Mutex<PaymentTable>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_map_forgets_the_oldest_and_stays_bounded() {
        let mut map = BoundedMap::new(3);
        for i in 1..=5u128 {
            map.insert(RequestKey(i), i);
        }
        assert_eq!(map.len(), 3);
        assert!(map.get(&RequestKey(2)).is_none() && map.get(&RequestKey(3)) == Some(&3));
        // Remove and re-insert many times: the queue stays bounded and the entry stays.
        for _ in 0..100 {
            map.remove(&RequestKey(5));
            map.insert(RequestKey(5), 5);
            assert!(map.order.len() <= 6);
        }
        assert_eq!(map.get(&RequestKey(5)), Some(&5));
        assert!(map.len() <= 3);
    }
}
