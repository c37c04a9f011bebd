//! Time as the relay writes it: CTIM's UTC timestamps, and OTX's times
//! given the zone CTIM wants. The lowest layer: it imports nothing of the
//! relay.

use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC time as `YYYY-MM-DDTHH:MM:SS.sssZ`.
pub fn format_time(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
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

/// An OTX time with the `Z` CTIM wants, unless it already carries a zone.
pub fn utc(time: &str) -> String {
    // Byte-wise after the date: OTX's text is not checked, so what follows
    // byte 10 may be empty or start with a multi-byte character.
    let has_zone = time.ends_with('Z')
        || time.ends_with('z')
        || time
            .get(10..)
            .is_some_and(|rest| rest.contains('+') || rest.bytes().skip(1).any(|b| b == b'-'));
    if has_zone {
        time.to_owned()
    } else {
        format!("{time}Z")
    }
}

/// Seconds since the epoch of an OTX time (`2026-11-29T14:03:22`, with or
/// without fractional seconds or a trailing `Z`; read as UTC). `None` for
/// anything else.
pub fn parse_otx_time(time: &str) -> Option<u64> {
    let b = time.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u64> {
        let digits = time.get(range)?;
        digits
            .bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year as i64, month as u32, day as u32);
    u64::try_from(days)
        .ok()
        .map(|d| d * 86_400 + hour * 3600 + minute * 60 + second)
}

/// (year, month, day) to days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDTHH:MM:SS` (no fraction, no zone), as OTX's `modified_since` takes it.
pub fn format_seconds(secs: u64) -> String {
    let text = format_time(UNIX_EPOCH + std::time::Duration::from_secs(secs));
    text[..19].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn zones() {
        assert_eq!(utc("2020-07-01T12:00:00"), "2020-07-01T12:00:00Z");
        assert_eq!(
            utc("2020-07-01T12:00:00.123456"),
            "2020-07-01T12:00:00.123456Z"
        );
        assert_eq!(utc("2020-07-01T12:00:00Z"), "2020-07-01T12:00:00Z");
        assert_eq!(
            utc("2020-07-01T12:00:00+02:00"),
            "2020-07-01T12:00:00+02:00"
        );
        assert_eq!(
            utc("2020-07-01T12:00:00-05:00"),
            "2020-07-01T12:00:00-05:00"
        );
    }

    #[test]
    fn odd_times_never_panic() {
        // Found by fuzzing (fuzz target otx_general): a multi-byte character
        // right after byte 10, or nothing after it, panicked on `rest[1..]`.
        let accents = format!("20{}", "é".repeat(10));
        assert_eq!(utc(&accents), format!("{accents}Z"));
        assert_eq!(utc("20éééé"), "20ééééZ");
        assert_eq!(utc("2020-07-01"), "2020-07-01Z");
        assert_eq!(utc("2020-07-01é-05:00"), "2020-07-01é-05:00");
    }

    #[test]
    fn time_format() {
        assert_eq!(format_time(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_709_251_199_123); // leap year end of Feb
        assert_eq!(format_time(t), "2024-02-29T23:59:59.123Z");
        let t = UNIX_EPOCH + Duration::from_secs(4_102_444_800); // 2100-01-01
        assert_eq!(format_time(t), "2100-01-01T00:00:00.000Z");
    }

    #[test]
    fn otx_times_parse_to_the_second() {
        assert_eq!(parse_otx_time("1970-01-01T00:00:00"), Some(0));
        assert_eq!(
            parse_otx_time("2024-02-29T23:59:59.123456"),
            Some(1_709_251_199)
        );
        assert_eq!(parse_otx_time("2100-01-01T00:00:00Z"), Some(4_102_444_800));
        for bad in [
            "",
            "2024-02-29",
            "2024-13-01T00:00:00",
            "2024-02-29 23:59:59",
            "2024-02-29T2x:00:00",
            "20é4-02-29T23:59:59",
        ] {
            assert_eq!(parse_otx_time(bad), None, "{bad}");
        }
        assert_eq!(format_seconds(1_709_251_199), "2024-02-29T23:59:59");
        for secs in [0, 86_399, 951_782_400, 1_709_251_199, 4_102_444_800] {
            assert_eq!(parse_otx_time(&format_seconds(secs)), Some(secs));
        }
    }
}
