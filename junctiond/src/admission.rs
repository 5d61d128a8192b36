//! Admission: how many requests the daemon has handed to the engine and not yet answered,
//! over both front ends, and the most it takes on. Past the bound a request is declined at
//! once (ISO 8583 91, HTTP 503 `overloaded`) instead of queueing behind the others, so
//! what is accepted keeps a bounded wait and memory stays bounded whatever the offered load.
//!
//! A replicated primary also admits only while its lease is surely its own: the lease
//! keeper moves `serving_until` forward at each renewal, and past it every request is
//! declined the same way (see `replication.rs`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// Microseconds on a monotonic clock private to this process.
pub fn monotonic_us() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// Milliseconds on the same clock.
pub fn monotonic_ms() -> u64 {
    monotonic_us() / 1000
}

/// Default bound: about two full ledger batches, and well under a second of work at the
/// rates one machine sustains.
pub const REQUESTS_IN_FLIGHT_MAX_DEFAULT: usize = 16_384;

#[derive(Debug)]
pub struct Admission {
    in_flight: AtomicUsize,
    max: usize,
    /// Requests are admitted before this time (`monotonic_ms`); `u64::MAX`: always.
    serving_until: AtomicU64,
}

impl Admission {
    pub fn new(max: usize) -> Admission {
        Admission { in_flight: AtomicUsize::new(0), max, serving_until: AtomicU64::new(u64::MAX) }
    }

    /// Admits requests until `monotonic_ms()` reaches `until` (0: stop at once).
    pub fn serve_until(&self, until: u64) {
        self.serving_until.store(until, Ordering::Release);
    }

    /// Whether requests are admitted now (the lease, for a replicated primary).
    pub fn serving(&self) -> bool {
        let until = self.serving_until.load(Ordering::Acquire);
        until == u64::MAX || monotonic_ms() < until
    }

    /// Takes a place for one request; false (nothing taken) when all are in use, or
    /// when this node may not serve now.
    pub fn try_admit(&self) -> bool {
        if !self.serving() {
            return false;
        }
        let previous = self.in_flight.fetch_add(1, Ordering::AcqRel);
        if previous >= self.max {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Gives back the place of a request that has been answered.
    pub fn release(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// A place that is given back when dropped (for a request whose caller may go away).
    pub fn admit(&self) -> Option<Admitted<'_>> {
        self.try_admit().then(|| Admitted(self))
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

/// One admitted request; its place is given back on drop.
pub struct Admitted<'a>(&'a Admission);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// Where the engine's answer goes for an HTTP front end: a tokio oneshot, so the handler
/// awaits it without blocking a thread.
struct OneshotReply(parking_lot::Mutex<Option<tokio::sync::oneshot::Sender<junction_engine::model::Response>>>);

impl junction_engine::model::ReplySink for OneshotReply {
    fn send(&self, response: junction_engine::model::Response) {
        if let Some(sender) = self.0.lock().take() {
            // The handler may be gone (client disconnected); the transfer stands regardless.
            let _ = sender.send(response);
        }
    }
}

/// A reply sink that answers nobody: for a request built before it is submitted (its
/// sink is replaced by `round_trip`).
pub fn no_reply() -> std::sync::Arc<dyn junction_engine::model::ReplySink> {
    std::sync::Arc::new(OneshotReply(parking_lot::Mutex::new(None)))
}

/// Submits a request to the engine inside the in-flight bound and waits for its answer
/// without blocking a thread; declined at once as overloaded at the bound.
pub async fn round_trip(
    engine: &junction_engine::Engine,
    admission: &Admission,
    mut request: junction_engine::model::Request,
) -> junction_engine::model::Response {
    use junction_engine::codes::DeclineReason;
    use junction_engine::model::Response;
    let Some(_admitted) = admission.admit() else {
        return Response::declined(0, request.key, DeclineReason::Overloaded);
    };
    let (sender, receiver) = tokio::sync::oneshot::channel();
    request.reply = std::sync::Arc::new(OneshotReply(parking_lot::Mutex::new(Some(sender))));
    let key = request.key;
    engine.submit(request);
    // The engine answers every request it accepted; if it is stopping, the sink is
    // dropped unanswered.
    receiver.await.unwrap_or_else(|_| Response::declined(0, key, DeclineReason::SystemError))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn admits_up_to_the_bound_and_again_after_a_release() {
        let admission = Admission::new(2);
        let first = admission.admit().unwrap();
        assert!(admission.try_admit());
        assert!(admission.admit().is_none());
        assert!(admission.admit().is_none());
        assert_eq!(admission.in_flight(), 2, "a refusal gives nothing back");
        drop(first);
        assert!(admission.try_admit());
        assert!(!admission.try_admit());
        admission.release();
        admission.release();
        assert_eq!(admission.in_flight(), 0);
    }

    #[test]
    fn concurrent_admissions_never_pass_the_bound() {
        let admission = Admission::new(100);
        let admitted = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..1_000 {
                        if admission.try_admit() {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.load(Ordering::Relaxed), 100);
        assert_eq!(admission.in_flight(), 100);
    }

    #[test]
    fn admits_nothing_past_the_serving_deadline() {
        let admission = Admission::new(10);
        assert!(admission.try_admit());
        admission.serve_until(0);
        assert!(!admission.try_admit());
        admission.serve_until(monotonic_ms() + 60_000);
        assert!(admission.try_admit());
        assert_eq!(admission.in_flight(), 2);
    }
}
