//! What the front ends note as it happens, for the operator's console (`console.rs`): the
//! ISO 8583 connections and who signed on over them (from where, when, their last echo),
//! and the last declines with their reasons. In memory only, bounded, gone at a restart:
//! the ledger and the metrics are the records; this is what an operator glances at.
//!
//! Card numbers are masked when noted (`MaskedCard`: first six and last four digits), so
//! nothing here can show more.
//!
//! Noting a decline is on the answer path of both front ends: it takes the ring's lock
//! only if no one holds it (a decline that finds it taken is not listed: the list is a
//! sample of the latest, never a log), and it allocates nothing (the ring is allocated
//! once, and a decline is a fixed-size copy).

use junction_engine::detail::{MaskedCard, Text};
use junction_engine::{DeclineReason, ResponseCode};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// Declines the console lists, newest last. About 120 bytes each, allocated at start.
pub const DECLINES_RECENT_MAX: usize = 256;

/// Milliseconds since the epoch, now.
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// One declined request as the console shows it.
#[derive(Debug, Clone, Copy)]
pub struct Decline {
    pub unix_ms: u64,
    /// The front end: `iso8583` or `qr` (`metrics::INTERFACE_*`).
    pub interface: &'static str,
    /// Who sent it: the acquirer (ISO 8583) or the wallet (QR); 0 when not signed on.
    pub participant: u64,
    /// ISO 8583 message type (QR: empty).
    pub mti: Text<4>,
    pub card: MaskedCard,
    /// What the request asked for, in minor units of `currency_numeric` (ISO 4217).
    pub amount: u64,
    pub currency_numeric: u16,
    pub code: ResponseCode,
    /// The engine's reason; none for what the gateway refused itself (format, MAC, shed).
    pub reason: Option<DeclineReason>,
    pub stan: Text<6>,
    /// Field 37, or a QR payment's reference.
    pub rrn: Text<12>,
}

/// The last `DECLINES_RECENT_MAX` declines.
pub struct RecentDeclines {
    ring: parking_lot::Mutex<VecDeque<Decline>>,
    /// Declines noted, and those skipped because the ring was busy, since start.
    noted: AtomicU64,
    skipped: AtomicU64,
}

impl Default for RecentDeclines {
    fn default() -> Self {
        RecentDeclines {
            ring: parking_lot::Mutex::new(VecDeque::with_capacity(DECLINES_RECENT_MAX)),
            noted: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }
}

impl RecentDeclines {
    /// Notes a decline, unless another thread is noting one at this instant.
    pub fn note(&self, decline: Decline) {
        let Some(mut ring) = self.ring.try_lock() else {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if ring.len() == DECLINES_RECENT_MAX {
            ring.pop_front();
        }
        ring.push_back(decline);
        self.noted.fetch_add(1, Ordering::Relaxed);
    }

    /// The declines kept, newest first, and how many were skipped since start.
    pub fn latest(&self) -> (Vec<Decline>, u64) {
        let list = self.ring.lock().iter().rev().copied().collect();
        (list, self.skipped.load(Ordering::Relaxed))
    }
}

/// One ISO 8583 connection as the console shows it.
#[derive(Debug, Clone)]
pub struct Session {
    pub connection: u64,
    pub peer: SocketAddr,
    pub connected_unix_ms: u64,
    /// The participant signed on over it, and since when.
    pub participant: Option<u64>,
    pub signed_on_unix_ms: Option<u64>,
    /// The participant's last echo test (0800, 70=301) on this connection.
    pub last_echo_unix_ms: Option<u64>,
}

/// The open ISO 8583 connections, and when each participant was last signed on. Both are
/// bounded by what they mirror: open connections (the process's file descriptors) and
/// configured participants (only a participant that signed on is remembered).
#[derive(Default)]
pub struct Sessions {
    next_connection: AtomicU64,
    state: parking_lot::Mutex<SessionsState>,
}

#[derive(Default)]
struct SessionsState {
    open: BTreeMap<u64, Session>,
    /// Participant -> when its last session ended (sign-off or connection closed).
    last_seen_unix_ms: BTreeMap<u64, u64>,
}

impl Sessions {
    /// A connection was accepted: its number for the calls below.
    pub fn opened(&self, peer: SocketAddr) -> u64 {
        let connection = self.next_connection.fetch_add(1, Ordering::Relaxed) + 1;
        let session = Session {
            connection,
            peer,
            connected_unix_ms: now_unix_ms(),
            participant: None,
            signed_on_unix_ms: None,
            last_echo_unix_ms: None,
        };
        self.state.lock().open.insert(connection, session);
        connection
    }

    pub fn signed_on(&self, connection: u64, participant: u64) {
        let mut state = self.state.lock();
        let now = now_unix_ms();
        if let Some(previous) = state.open.get(&connection).and_then(|s| s.participant) {
            state.last_seen_unix_ms.insert(previous, now);
        }
        if let Some(session) = state.open.get_mut(&connection) {
            session.participant = Some(participant);
            session.signed_on_unix_ms = Some(now);
            session.last_echo_unix_ms = None;
        }
    }

    pub fn signed_off(&self, connection: u64) {
        let mut state = self.state.lock();
        let now = now_unix_ms();
        let Some(session) = state.open.get_mut(&connection) else { return };
        let participant = session.participant.take();
        session.signed_on_unix_ms = None;
        session.last_echo_unix_ms = None;
        if let Some(participant) = participant {
            state.last_seen_unix_ms.insert(participant, now);
        }
    }

    /// The participant sent an echo test on the connection.
    pub fn echoed(&self, connection: u64) {
        if let Some(session) = self.state.lock().open.get_mut(&connection) {
            session.last_echo_unix_ms = Some(now_unix_ms());
        }
    }

    pub fn closed(&self, connection: u64) {
        let mut state = self.state.lock();
        if let Some(participant) = state.open.remove(&connection).and_then(|s| s.participant) {
            state.last_seen_unix_ms.insert(participant, now_unix_ms());
        }
    }

    /// The open connections, and per participant when its last session ended.
    pub fn snapshot(&self) -> (Vec<Session>, BTreeMap<u64, u64>) {
        let state = self.state.lock();
        (state.open.values().cloned().collect(), state.last_seen_unix_ms.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decline(amount: u64) -> Decline {
        Decline {
            unix_ms: 1,
            interface: "iso8583",
            participant: 3,
            mti: Text::new("0200"),
            card: MaskedCard::of("4000001234567899"),
            amount,
            currency_numeric: 840,
            code: ResponseCode::InsufficientFunds,
            reason: Some(DeclineReason::InsufficientFunds),
            stan: Text::new("000001"),
            rrn: Text::new("RRN000000001"),
        }
    }

    #[test]
    fn the_ring_keeps_the_latest_declines_newest_first() {
        let recent = RecentDeclines::default();
        for amount in 0..DECLINES_RECENT_MAX as u64 + 10 {
            recent.note(decline(amount));
        }
        let (list, skipped) = recent.latest();
        assert_eq!(list.len(), DECLINES_RECENT_MAX);
        assert_eq!(skipped, 0);
        assert_eq!(list[0].amount, DECLINES_RECENT_MAX as u64 + 9);
        assert_eq!(list[DECLINES_RECENT_MAX - 1].amount, 10);
        assert_eq!(recent.ring.lock().capacity(), DECLINES_RECENT_MAX, "the ring never grew");
        assert_eq!(format!("{:?}", list[0].card), "400000******7899");
    }

    #[test]
    fn sessions_follow_sign_on_echo_sign_off_and_close() {
        let sessions = Sessions::default();
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let first = sessions.opened(peer);
        let second = sessions.opened(peer);
        sessions.signed_on(first, 3);
        sessions.echoed(first);
        let (open, last_seen) = sessions.snapshot();
        assert_eq!(open.len(), 2);
        assert_eq!(open[0].participant, Some(3));
        assert!(open[0].last_echo_unix_ms.is_some());
        assert_eq!(open[1].participant, None);
        assert!(last_seen.is_empty());
        sessions.signed_off(first);
        sessions.closed(second);
        let (open, last_seen) = sessions.snapshot();
        assert_eq!(open.iter().filter(|s| s.participant.is_some()).count(), 0);
        assert_eq!(open.len(), 1);
        assert!(last_seen.contains_key(&3));
        sessions.closed(first);
        assert!(sessions.snapshot().0.is_empty());
    }
}
