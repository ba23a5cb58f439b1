//! Time formatting for the stand-in: RFC 3339 (status file, CRI log lines), klog headers and
//! Go-style durations ("10s", "2m40s", "200ms") as the real kubelet prints them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Broken-down UTC time.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
}

fn civil(t: SystemTime) -> Civil {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: (rem / 3600) as u32,
        minute: ((rem % 3600) / 60) as u32,
        second: (rem % 60) as u32,
        nanos: d.subsec_nanos(),
    }
}

/// `2026-11-25T12:00:00Z` (what Kubernetes puts in `startedAt`).
pub fn rfc3339(t: SystemTime) -> String {
    let c = civil(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// `2026-11-25T12:00:00.000000000Z` (the CRI log line timestamp, always 9 digits).
pub fn rfc3339_nanos(t: SystemTime) -> String {
    let c = civil(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.nanos
    )
}

/// klog's header time: `1125 12:00:00.000000` (month, day, microseconds; UTC here).
pub fn klog_time(t: SystemTime) -> String {
    let c = civil(t);
    format!(
        "{:02}{:02} {:02}:{:02}:{:02}.{:06}",
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second,
        c.nanos / 1000
    )
}

/// Seconds and nanoseconds since the epoch (for machine-readable records).
pub fn unix_nanos(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos()
}

/// The inverse of [`unix_nanos`].
pub fn from_unix_nanos(n: u128) -> SystemTime {
    let secs = (n / 1_000_000_000) as u64;
    let nanos = (n % 1_000_000_000) as u32;
    UNIX_EPOCH + Duration::new(secs, nanos)
}

/// Go's `time.Duration.String()`: `10s`, `5m0s`, `1h0m0s`, `200ms`, `1.6s`, `0s`.
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", trim_fraction(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trim_fraction(nanos, 1_000_000));
    }
    let total_secs = d.as_secs();
    let hours = total_secs / 3600;
    let minutes = (total_secs % 3600) / 60;
    let secs_nanos = nanos % 60_000_000_000;
    let secs = trim_fraction(secs_nanos, 1_000_000_000);
    if hours > 0 {
        format!("{hours}h{minutes}m{secs}s")
    } else if minutes > 0 {
        format!("{minutes}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

/// `value / unit` printed with the fractional part trimmed of trailing zeros.
fn trim_fraction(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let frac = value % unit;
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.to_string().len() - 1;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(go_duration(Duration::from_secs(160)), "2m40s");
        assert_eq!(go_duration(Duration::from_millis(200)), "200ms");
        assert_eq!(go_duration(Duration::from_millis(1600)), "1.6s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn formats() {
        let t = UNIX_EPOCH + Duration::new(1_795_608_000, 5_000);
        assert_eq!(rfc3339(t), "2026-11-25T12:00:00Z");
        assert_eq!(rfc3339_nanos(t), "2026-11-25T12:00:00.000005000Z");
        assert_eq!(klog_time(t), "1125 12:00:00.000005");
        assert_eq!(from_unix_nanos(unix_nanos(t)), t);
    }
}
