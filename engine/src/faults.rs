//! Fault injection for the crash tests: make one pipeline stage panic on its next turn,
//! to prove that a broken invariant on any thread ends the whole process (and that a
//! supervisor's restart recovers from the journal). Off unless someone asks: the
//! daemon only exposes it when started with `--enable-fault-injection`.
//!
//! A stage looks at one relaxed atomic once per burst or batch, not per request.

use std::sync::atomic::{AtomicU8, Ordering};

/// A thread of the pipeline that a fault can be injected into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    Shard = 1,
    Commit = 2,
    Completion = 3,
    /// The ledger's durable writer (the ledger injects it itself).
    LedgerWriter = 4,
}

impl Stage {
    pub fn parse(name: &str) -> Option<Stage> {
        match name {
            "shard" => Some(Stage::Shard),
            "commit" => Some(Stage::Commit),
            "completion" => Some(Stage::Completion),
            "ledger-writer" => Some(Stage::LedgerWriter),
            _ => None,
        }
    }
}

const NONE: u8 = 0;

/// Which stage should panic next, if any.
#[derive(Debug, Default)]
pub struct Faults {
    panic_in: AtomicU8,
}

impl Faults {
    pub fn inject_panic(&self, stage: Stage) {
        self.panic_in.store(stage as u8, Ordering::Release);
    }

    /// Panics if a fault was injected into `stage`.
    #[inline]
    pub fn check(&self, stage: Stage) {
        if self.panic_in.load(Ordering::Relaxed) == stage as u8 {
            self.panic_in.store(NONE, Ordering::Relaxed);
            panic!("fault injected into the {stage:?} stage");
        }
    }
}
