//! Calendar arithmetic the rules need, without a date library on the hot path.

pub use junction_wire::calendar::civil_from_days;
use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_unix_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// YYMM (as in ISO 8583 field 14) of a Unix time, in UTC.
pub fn yymm(unix_s: u64) -> u16 {
    let (year, month, _) = civil_from_days((unix_s / 86_400) as i64);
    ((year.rem_euclid(100) * 100) as u16) + month as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_517), (2026, 3, 5));
        assert_eq!(yymm(1_795_651_200), 2611); // 2026-11-26
        assert_eq!(yymm(1_764_028_800), 2511); // 2025-11-25
    }
}
