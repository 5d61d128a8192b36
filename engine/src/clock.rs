//! Calendar arithmetic the rules need, without a date library on the hot path.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_unix_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// YYMM (as in ISO 8583 field 14) of a Unix time, in UTC.
pub fn yymm(unix_s: u64) -> u16 {
    let (year, month, _) = civil_from_days((unix_s / 86_400) as i64);
    ((year.rem_euclid(100) * 100) as u16) + month as u16
}

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01 (Howard Hinnant's
/// algorithm).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
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
