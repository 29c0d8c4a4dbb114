//! Timestamps with 0.01 s precision: centiseconds since the Unix epoch.

use std::time::{SystemTime, UNIX_EPOCH};

/// Centiseconds since the Unix epoch.
pub type Centis = i64;

pub fn now() -> Centis {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_millis() / 10) as Centis
}

/// RFC 3339 in UTC with two decimals, e.g. `2026-11-21T05:20:11.37Z`.
pub fn format(c: Centis) -> String {
    let secs = c.div_euclid(100);
    let cs = c.rem_euclid(100);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{cs:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_with_centiseconds() {
        assert_eq!(super::format(0), "1970-01-01T00:00:00.00Z");
        assert_eq!(super::format(177_934_081_137), "2026-05-21T05:20:11.37Z");
        assert_eq!(super::format(95_178_240_005), "2000-02-29T00:00:00.05Z");
    }
}
