//! Helpers shared by Junction's end-to-end tests (the tests themselves live in `tests/`).

/// The transfer id of transfer `index` of batch `batch` in a crash-test run: batch and
/// index are packed so the checker can tell a whole batch from a part of one.
pub fn crash_transfer_id(run: u32, batch: u64, index: u32) -> u128 {
    (u128::from(run) << 96) | (u128::from(batch) << 32) | u128::from(index) | (1 << 127)
}
