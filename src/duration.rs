//! Spans of time as people type them on a command line or in backup.yml: `500ms`, `30s`, `5m`,
//! `24h`, `2d`, or a plain number of seconds. One parser for every option that takes one
//! (`prune --grace`, `--lock-wait`, `archive --flush-every`, `retry_backoff`, `audit --since`),
//! so a value that works in one place works in all; callers add their own bounds. Moments
//! (`--since`) are an RFC 3339 time, a date, or such a span back from now.

use std::time::Duration;

use chrono::{DateTime, FixedOffset, Local};

/// Parses `N[.F][ms|s|m|h|d]`; the message says what is allowed.
pub fn parse(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad = || {
        format!(
            "{s:?} is not a duration: a number with ms, s, m, h or d is allowed (e.g. 30s, 5m, 24h, 2d)"
        )
    };
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale = match unit {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => return Err(bad()),
    };
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return Err(bad());
    }
    let n: f64 = num.parse().map_err(|_| bad())?;
    Duration::try_from_secs_f64(n * scale).map_err(|_| bad())
}

/// `--since`: an RFC 3339 time, a date (`2026-12-01`, midnight in the machine's zone, as the
/// schedules are) or an age (`24h`, `7d`) back from now.
pub fn since(s: &str) -> Result<DateTime<FixedOffset>, String> {
    let t = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(t) {
        return Ok(t);
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return d
            .and_hms_opt(0, 0, 0)
            .and_then(|m| m.and_local_timezone(Local).earliest())
            .map(|m| m.fixed_offset())
            .ok_or_else(|| format!("{s:?}: that midnight does not exist here"));
    }
    let age = parse(t).map_err(|_| {
        format!(
            "{s:?} is not a time (2026-12-01T09:00:00Z), a date (2026-12-01) or an age (24h, 7d)"
        )
    })?;
    chrono::Duration::from_std(age)
        .ok()
        .and_then(|a| Local::now().checked_sub_signed(a))
        .map(|m| m.fixed_offset())
        .ok_or_else(|| format!("{s:?} reaches before the calendar starts"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_plain_seconds() {
        let s = Duration::from_secs;
        assert_eq!(parse("0"), Ok(s(0)));
        assert_eq!(parse("90"), Ok(s(90)));
        assert_eq!(parse("30s"), Ok(s(30)));
        assert_eq!(parse(" 5m "), Ok(s(300)));
        assert_eq!(parse("24h"), Ok(s(86_400)));
        assert_eq!(parse("2d"), Ok(s(172_800)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn bad_input_says_what_is_allowed() {
        for b in [
            "",
            "s",
            "5x",
            "-1s",
            "1.s",
            ".5s",
            "1..2s",
            "99999999999999999999999999d",
        ] {
            let e = parse(b).unwrap_err();
            assert!(e.contains("is not a duration"), "{b:?}: {e}");
        }
    }

    #[test]
    fn moments() {
        let t = since("2026-12-01T09:00:00Z").unwrap();
        assert_eq!(t.timestamp(), 1_796_115_600);
        let d = since("2026-12-01").unwrap();
        assert_eq!(d.date_naive().to_string(), "2026-12-01");
        let a = since("2h").unwrap();
        let want = Local::now().timestamp() - 7200;
        assert!((a.timestamp() - want).abs() <= 2);
        assert!(since("yesterday").unwrap_err().contains("is not a time"));
        assert!(
            since("9999999999d")
                .unwrap_err()
                .contains("before the calendar")
        );
    }
}
