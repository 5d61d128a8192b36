//! Calendar arithmetic for date fields on the wire (ISO 8583 field 7 MMDDhhmmss, field 14
//! YYMM), without a date library on the hot path.

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

/// Days since 1970-01-01 of a civil date (the inverse of `civil_from_days`).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The Unix time of an ISO 8583 transmission date and time (field 7, `MMDDhhmmss`, UTC),
/// which has no year: the year that puts it nearest to `now_unix_s`. `None` when the
/// field is not a valid date and time.
pub fn transmission_unix_s(field_7: &str, now_unix_s: u64) -> Option<u64> {
    let bytes = field_7.as_bytes();
    if bytes.len() != 10 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| field_7[range].parse::<u32>().ok();
    let (month, day, hour, minute, second) =
        (number(0..2)?, number(2..4)?, number(4..6)?, number(6..8)?, number(8..10)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let (now_year, _, _) = civil_from_days((now_unix_s / 86_400) as i64);
    let seconds_of_day = i64::from(hour * 3600 + minute * 60 + second);
    let now = now_unix_s as i64;
    (now_year - 1..=now_year + 1)
        .filter_map(|year| {
            let days = days_from_civil(year, month, day);
            // A day past the month's end (31 April) rolls into the next month: refused.
            (civil_from_days(days) == (year, month, day)).then_some(days * 86_400 + seconds_of_day)
        })
        .min_by_key(|time| (time - now).abs())
        .and_then(|time| u64::try_from(time).ok())
}

/// Field 7 (`MMDDhhmmss`, UTC) of a Unix time.
pub fn transmission_time(unix_s: u64) -> String {
    let (_, month, day) = civil_from_days((unix_s / 86_400) as i64);
    let seconds = unix_s % 86_400;
    format!("{month:02}{day:02}{:02}{:02}{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transmission_time_round_trips() {
        let now = 1_796_200_000; // 2026-12-02
        let field = transmission_time(now);
        assert_eq!(field.len(), 10);
        assert_eq!(transmission_unix_s(&field, now), Some(now));
    }

    #[test]
    fn civil_days_round_trip() {
        for days in [-800_000i64, -1, 0, 59, 60, 10_957, 20_517, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn transmission_time_takes_the_nearest_year() {
        let now = 1_796_169_600; // 2026-12-02T00:00:00Z
        assert_eq!(transmission_unix_s("1202000000", now), Some(now));
        // 25 November: this year; 5 January: next year, nearer than last January.
        assert_eq!(transmission_unix_s("1125120000", now), Some(now - 6 * 86_400 - 12 * 3600));
        assert_eq!(transmission_unix_s("0105000000", now), Some(now + 34 * 86_400));
        assert_eq!(transmission_unix_s("0431000000", now), None);
        assert_eq!(transmission_unix_s("1302000000", now), None);
        assert_eq!(transmission_unix_s("12020000", now), None);
    }
}
