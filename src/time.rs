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
}
