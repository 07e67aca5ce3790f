//! Tests of the retention policy: a reference written differently from the implementation (each
//! bucket rule as "the newest snapshot of each of the first N distinct calendar labels", labels
//! made with `format` strings rather than `Datelike`), compared over synthetic years of snapshots
//! at irregular hours with real EU daylight-saving offsets, plus hand-checked cases for DST, month
//! ends and ISO weeks across a year end.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, TimeDelta, TimeZone, Utc, Weekday};
use proptest::prelude::*;

use super::*;
use crate::snapshot::{BackupKind, Summary};

// ---------------------------------------------------------------- synthetic times

/// The last Sunday of `month` in `year`.
fn last_sunday(year: i32, month: u32) -> NaiveDate {
    let mut d = NaiveDate::from_ymd_opt(year, month + 1, 1).unwrap() - TimeDelta::days(1);
    while d.weekday() != Weekday::Sun {
        d -= TimeDelta::days(1);
    }
    d
}

/// `t` on a Central European wall clock: +02:00 from the last Sunday of March 01:00 UTC to the
/// last Sunday of October 01:00 UTC, +01:00 otherwise.
fn cet(t: DateTime<Utc>) -> DateTime<FixedOffset> {
    let y = t.year();
    let start = Utc.from_utc_datetime(&last_sunday(y, 3).and_hms_opt(1, 0, 0).unwrap());
    let end = Utc.from_utc_datetime(&last_sunday(y, 10).and_hms_opt(1, 0, 0).unwrap());
    let hours = if t >= start && t < end { 2 } else { 1 };
    t.with_timezone(&FixedOffset::east_opt(hours * 3600).unwrap())
}

fn at(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).unwrap()
}

/// A small deterministic generator (xorshift), so the synthetic year is the same every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Snapshots from `from` for `days` days: 0 to 4 a day (mostly 1 to 3) at irregular minutes,
/// with a few runs of the night hours around 01:00–03:00 UTC (where DST switches).
fn synthetic(from: &str, days: i64, seed: u64) -> Vec<DateTime<FixedOffset>> {
    let start = Utc.from_utc_datetime(
        &NaiveDate::parse_from_str(from, "%Y-%m-%d")
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap(),
    );
    let mut rng = Rng(seed | 1);
    let mut out = Vec::new();
    for day in 0..days {
        let n = [0, 1, 1, 2, 2, 3, 4][rng.below(7) as usize];
        for _ in 0..n {
            let minute = if rng.below(5) == 0 {
                60 + rng.below(150) // 01:00–03:30 UTC
            } else {
                rng.below(24 * 60)
            };
            let t = start
                + TimeDelta::days(day)
                + TimeDelta::minutes(minute as i64)
                + TimeDelta::seconds(rng.below(60) as i64);
            out.push(cet(t));
        }
    }
    out.sort();
    out.dedup();
    out
}

// ---------------------------------------------------------------- the reference

fn label(rule: Rule, t: &DateTime<FixedOffset>, nr: usize) -> String {
    match rule {
        Rule::Last => nr.to_string(),
        Rule::Hourly => t.format("%Y-%m-%d %H").to_string(),
        Rule::Daily => t.format("%Y-%m-%d").to_string(),
        Rule::Weekly => t.format("%G-W%V").to_string(),
        Rule::Monthly => t.format("%Y-%m").to_string(),
        Rule::Yearly => t.format("%Y").to_string(),
    }
}

/// Go's `AddDate(-y, -m, -d)` then `Add(-h)`, spelled out step by step.
fn reference_cutoff(d: &Duration, latest: DateTime<FixedOffset>) -> DateTime<FixedOffset> {
    let l = latest.naive_local();
    let mut year = l.year() - d.years as i32;
    let mut month = l.month() as i32 - d.months as i32;
    while month < 1 {
        month += 12;
        year -= 1;
    }
    let date = NaiveDate::from_ymd_opt(year, month as u32, 1).unwrap()
        + TimeDelta::days(l.day() as i64 - 1 - d.days as i64);
    let naive = date.and_time(l.time()) - TimeDelta::hours(d.hours as i64);
    latest.offset().from_local_datetime(&naive).unwrap()
}

/// The reasons each snapshot is kept for, as text, by the definition in the module doc.
fn reference(
    policy: &Policy,
    times: &[DateTime<FixedOffset>],
    tags: &[Vec<String>],
    now: DateTime<Utc>,
    count_safety: bool,
) -> Vec<BTreeSet<String>> {
    let mut out = vec![BTreeSet::new(); times.len()];
    let mut newest_first: Vec<usize> = (0..times.len()).collect();
    newest_first.sort_by(|&a, &b| times[b].cmp(&times[a]).then(b.cmp(&a)));
    let safety = |i: usize| tags[i].iter().any(|t| t == "pre-restore");
    let counted: Vec<usize> = newest_first
        .iter()
        .copied()
        .filter(|&i| count_safety || !safety(i))
        .collect();
    for (rule, n) in policy.counts() {
        if n == 0 {
            continue;
        }
        // Distinct labels in order of their newest snapshot; the first n are kept.
        let mut seen: Vec<(String, usize)> = Vec::new();
        for (nr, &i) in counted.iter().enumerate() {
            let l = label(rule, &times[i], nr);
            if !seen.iter().any(|(s, _)| *s == l) {
                seen.push((l, i));
            }
        }
        for (rank, (_, i)) in seen.iter().take(n as usize).enumerate() {
            out[*i].insert(format!("{} {}", rule.name(), rank + 1));
        }
        if seen.len() < n as usize {
            let oldest = *counted.last().unwrap();
            if !seen.iter().any(|(_, i)| *i == oldest) {
                out[oldest].insert(format!("{} {} (oldest)", rule.name(), seen.len() + 1));
            }
        }
    }
    if let Some(d) = policy.within {
        let latest = times.iter().filter(|t| **t < now).max();
        for (i, t) in times.iter().enumerate() {
            if latest.is_none_or(|l| *t > reference_cutoff(&d, *l)) {
                out[i].insert(format!("within {d}"));
            }
        }
    }
    for (i, have) in tags.iter().enumerate() {
        for l in &policy.tags {
            if l.iter().all(|t| have.contains(t)) {
                out[i].insert(format!("tag {}", l.join(",")));
            }
        }
        if safety(i) && times[i] > now - TimeDelta::days(7) {
            out[i].insert("pre-restore (7 days)".into());
        }
    }
    out
}

fn actual(
    policy: &Policy,
    times: &[DateTime<FixedOffset>],
    tags: &[Vec<String>],
    now: DateTime<Utc>,
    count_safety: bool,
) -> Vec<BTreeSet<String>> {
    let items: Vec<Item> = times
        .iter()
        .zip(tags)
        .map(|(t, tags)| Item {
            time: Some(*t),
            tags,
        })
        .collect();
    apply(policy, &items, now, count_safety)
        .into_iter()
        .map(|r| r.iter().map(|r| r.to_string()).collect())
        .collect()
}

fn compare(
    name: &str,
    policy: &Policy,
    times: &[DateTime<FixedOffset>],
    tags: &[Vec<String>],
    now: DateTime<Utc>,
    count_safety: bool,
) -> usize {
    let want = reference(policy, times, tags, now, count_safety);
    let got = actual(policy, times, tags, now, count_safety);
    for i in 0..times.len() {
        assert_eq!(
            got[i], want[i],
            "{name}: snapshot {} ({i}) kept for {:?}, reference says {:?}",
            times[i], got[i], want[i]
        );
    }
    got.iter().filter(|r| !r.is_empty()).count()
}

/// Keeps of `policy` over `times` (no tags) as the set of kept times' RFC 3339 strings.
fn kept(policy: &Policy, times: &[&str]) -> Vec<String> {
    let times: Vec<_> = times.iter().map(|s| at(s)).collect();
    let tags = vec![Vec::new(); times.len()];
    let got = actual(policy, &times, &tags, Utc::now(), false);
    let mut out: Vec<String> = times
        .iter()
        .zip(got)
        .filter(|(_, r)| !r.is_empty())
        .map(|(t, _)| t.to_rfc3339())
        .collect();
    out.sort();
    out
}

fn policy(last: u32, hourly: u32, daily: u32, weekly: u32, monthly: u32, yearly: u32) -> Policy {
    Policy {
        last,
        hourly,
        daily,
        weekly,
        monthly,
        yearly,
        ..Policy::default()
    }
}

// ---------------------------------------------------------------- tables against the reference

#[test]
fn policy_table_over_a_year_matches_reference() {
    let year = synthetic("2023-12-18", 400, 7); // 2024 (leap, DST both ways) and both year ends
    let winter = synthetic("2022-12-10", 100, 11); // Feb 28 of a common year, 2022-W52 on Jan 1
    let week53 = synthetic("2020-12-15", 40, 13); // 2020 has an ISO week 53
    assert!(year.len() > 600, "{}", year.len());
    let within = |s: &str| Policy {
        within: Some(Duration::parse(s).unwrap()),
        ..Policy::default()
    };
    let cases: Vec<(&str, Policy)> = vec![
        ("seed 7d/4w/12m", policy(0, 0, 7, 4, 12, 0)),
        ("last 1", policy(1, 0, 0, 0, 0, 0)),
        ("last 5", policy(5, 0, 0, 0, 0, 0)),
        ("hourly 48", policy(0, 48, 0, 0, 0, 0)),
        ("hourly 5000", policy(0, 5000, 0, 0, 0, 0)),
        ("daily 1", policy(0, 0, 1, 0, 0, 0)),
        ("daily 30", policy(0, 0, 30, 0, 0, 0)),
        ("daily 400", policy(0, 0, 400, 0, 0, 0)),
        ("daily 5000 (oldest)", policy(0, 0, 5000, 0, 0, 0)),
        ("weekly 60", policy(0, 0, 0, 60, 0, 0)),
        ("monthly 13", policy(0, 0, 0, 0, 13, 0)),
        ("monthly 100", policy(0, 0, 0, 0, 100, 0)),
        ("yearly 3", policy(0, 0, 0, 0, 0, 3)),
        ("everything", policy(3, 24, 7, 4, 12, 2)),
        ("within 2d", within("2d")),
        ("within 1m", within("1m")),
        ("within 1y2m3d4h", within("1y2m3d4h")),
        ("within 36h", within("36h")),
        (
            "within 1m + daily 3",
            Policy {
                daily: 3,
                ..within("1m")
            },
        ),
    ];
    for (set, times) in [("year", &year), ("winter", &winter), ("week53", &week53)] {
        let tags = vec![Vec::new(); times.len()];
        let now = times.last().unwrap().with_timezone(&Utc) + TimeDelta::hours(5);
        for (name, p) in &cases {
            let n = compare(&format!("{set}: {name}"), p, times, &tags, now, false);
            assert!(n > 0, "{set}: {name} kept nothing");
        }
    }
}

#[test]
fn policy_seed_policy_keeps_what_the_calendar_says() {
    let year = synthetic("2023-12-18", 400, 7);
    let p = policy(0, 0, 7, 4, 12, 0);
    let tags = vec![Vec::new(); year.len()];
    let got = actual(&p, &year, &tags, Utc::now(), false);
    let days: BTreeSet<_> = year.iter().map(|t| t.format("%F").to_string()).collect();
    let newest_days: Vec<_> = days.iter().rev().take(7).cloned().collect();
    for (t, r) in year.iter().zip(&got) {
        let day = t.format("%F").to_string();
        let newest_of_day = year
            .iter()
            .filter(|u| u.format("%F").to_string() == day)
            .max();
        if newest_days.contains(&day) && newest_of_day == Some(t) {
            assert!(r.iter().any(|r| r.starts_with("daily")), "{t}: {r:?}");
        }
    }
    // 7 days + at most 4 weeks + at most 12 months, overlapping.
    let n = got.iter().filter(|r| !r.is_empty()).count();
    assert!((12..=23).contains(&n), "{n}");
}

#[test]
fn policy_tags_and_safety_copies_match_reference() {
    let times = synthetic("2024-03-01", 60, 3);
    let mut rng = Rng(99);
    let tags: Vec<Vec<String>> = times
        .iter()
        .map(|_| match rng.below(6) {
            0 => vec!["pre-restore".into(), "restore-of-x".into()],
            1 => vec!["nightly".into()],
            2 => vec!["nightly".into(), "db".into()],
            _ => vec![],
        })
        .collect();
    let now = times[times.len() - 1].with_timezone(&Utc) + TimeDelta::days(1);
    let p = Policy {
        daily: 10,
        weekly: 3,
        tags: vec![vec!["nightly".into(), "db".into()]],
        ..Policy::default()
    };
    for count_safety in [false, true] {
        compare("tags", &p, &times, &tags, now, count_safety);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn policy_random_policies_match_reference(
        seed in 1u64..u64::MAX,
        days in 1i64..500,
        start in 0i64..2000,
        counts in proptest::collection::vec(0u32..20, 6),
        within in proptest::option::of((0u32..2, 0u32..14, 0u32..40, 0u32..72)),
        now_after_h in -200i64..200,
    ) {
        let from = (NaiveDate::from_ymd_opt(2019, 1, 1).unwrap() + TimeDelta::days(start))
            .format("%F").to_string();
        let times = synthetic(&from, days, seed);
        prop_assume!(!times.is_empty());
        let p = Policy {
            last: counts[0], hourly: counts[1], daily: counts[2],
            weekly: counts[3], monthly: counts[4], yearly: counts[5],
            within: within
                .map(|(years, months, days, hours)| Duration { years, months, days, hours })
                .filter(|d| !d.is_zero()),
            tags: Vec::new(),
        };
        let tags = vec![Vec::new(); times.len()];
        let now = times.last().unwrap().with_timezone(&Utc) + TimeDelta::hours(now_after_h);
        compare("random", &p, &times, &tags, now, false);
    }
}

// ---------------------------------------------------------------- hand-checked calendars

#[test]
fn policy_dst_buckets_follow_the_recorded_offset() {
    // Spring forward (2024-03-31 02:00 CET -> 03:00 CEST): one day, two hours.
    let spring = ["2024-03-31T01:30:00+01:00", "2024-03-31T03:30:00+02:00"];
    assert_eq!(kept(&policy(0, 0, 1, 0, 0, 0), &spring), vec![spring[1]]);
    assert_eq!(kept(&policy(0, 2, 0, 0, 0, 0), &spring).len(), 2);
    // Fall back (2024-10-27 03:00 CEST -> 02:00 CET): 02:30+02:00 and 02:15+01:00 are 45 min
    // apart in different UTC hours but the same wall-clock hour.
    let fall = ["2024-10-27T02:30:00+02:00", "2024-10-27T02:15:00+01:00"];
    assert_eq!(kept(&policy(0, 1, 0, 0, 0, 0), &fall), vec![fall[1]]);
    // 00:30+02:00 on the 27th is the 26th in UTC; the local day is the 27th, as the operator saw.
    let day = ["2024-10-27T00:30:00+02:00", "2024-10-27T23:30:00+01:00"];
    assert_eq!(kept(&policy(0, 0, 1, 0, 0, 0), &day), vec![day[1]]);
    let two_days = [
        "2024-10-26T23:30:00+02:00",
        "2024-10-27T00:30:00+02:00",
        "2024-10-27T23:30:00+01:00",
    ];
    assert_eq!(
        kept(&policy(0, 0, 2, 0, 0, 0), &two_days),
        vec![two_days[0], two_days[2]]
    );
}

#[test]
fn policy_month_ends_and_leap_day() {
    let t = [
        "2024-01-31T23:59:00+01:00",
        "2024-02-01T00:01:00+01:00",
        "2024-02-28T22:00:00+01:00",
        "2024-02-29T21:00:00+01:00",
        "2024-03-01T00:00:00+01:00",
    ];
    assert_eq!(
        kept(&policy(0, 0, 0, 0, 3, 0), &t),
        vec![t[0], t[3], t[4]],
        "newest of January, February (the 29th), March"
    );
    assert_eq!(kept(&policy(0, 0, 2, 0, 0, 0), &t), vec![t[3], t[4]]);
    let common = ["2023-02-28T23:00:00+01:00", "2023-03-01T01:00:00+01:00"];
    assert_eq!(kept(&policy(0, 0, 0, 0, 2, 0), &common).len(), 2);
}

#[test]
fn policy_iso_weeks_across_the_year_end() {
    // 2024-12-29 is a Sunday in 2024-W52; 2024-12-30 (Monday) to 2025-01-05 is 2025-W01.
    let t = [
        "2024-12-29T20:00:00+01:00",
        "2024-12-30T08:00:00+01:00",
        "2025-01-05T22:00:00+01:00",
    ];
    assert_eq!(kept(&policy(0, 0, 0, 2, 0, 0), &t), vec![t[0], t[2]]);
    // ...while the yearly rule splits them at January 1st.
    assert_eq!(kept(&policy(0, 0, 0, 0, 0, 2), &t), vec![t[1], t[2]]);
    // 2021-01-03 is still 2020-W53.
    let w53 = [
        "2020-12-28T10:00:00+01:00",
        "2021-01-03T10:00:00+01:00",
        "2021-01-04T10:00:00+01:00",
    ];
    assert_eq!(kept(&policy(0, 0, 0, 2, 0, 0), &w53), vec![w53[1], w53[2]]);
}

#[test]
fn policy_oldest_is_kept_while_buckets_are_left() {
    let t = [
        "2024-05-01T08:00:00+02:00",
        "2024-05-01T09:00:00+02:00",
        "2024-05-02T09:00:00+02:00",
    ];
    // Two days, three asked for: the oldest snapshot of the oldest day stays too.
    assert_eq!(kept(&policy(0, 0, 3, 0, 0, 0), &t), vec![t[0], t[1], t[2]]);
    assert_eq!(kept(&policy(0, 0, 2, 0, 0, 0), &t), vec![t[1], t[2]]);
    let items: Vec<_> = t
        .iter()
        .map(|s| Item {
            time: Some(at(s)),
            tags: &[],
        })
        .collect();
    let r = apply(&policy(0, 0, 3, 0, 0, 0), &items, Utc::now(), false);
    assert_eq!(r[0][0].to_string(), "daily 3 (oldest)");
    assert_eq!(r[2][0].to_string(), "daily 1");
}

#[test]
fn policy_within_uses_restic_calendar_steps() {
    let d = |s: &str| Duration::parse(s).unwrap();
    // Go normalises "February 31" to March 3 (common year) / March 2 (leap year).
    assert_eq!(
        d("1m").before(at("2023-03-31T12:00:00+02:00")),
        Some(at("2023-03-03T12:00:00+02:00"))
    );
    assert_eq!(
        d("1m").before(at("2024-03-31T12:00:00+02:00")),
        Some(at("2024-03-02T12:00:00+02:00"))
    );
    assert_eq!(
        d("1y").before(at("2024-02-29T12:00:00+01:00")),
        Some(at("2023-03-01T12:00:00+01:00"))
    );
    assert_eq!(
        d("1y2m3d4h").before(at("2024-05-10T03:00:00+02:00")),
        Some(at("2023-03-06T23:00:00+02:00"))
    );
    assert_eq!(
        d("4000000000y").before(at("2024-05-10T03:00:00+02:00")),
        None
    );
    // Relative to the newest snapshot, strictly after the cut-off, and a future one is not newest.
    let t = [
        "2024-05-01T12:00:00+02:00",
        "2024-05-02T12:00:00+02:00",
        "2024-05-03T12:00:00+02:00",
    ];
    let p = Policy {
        within: Some(d("1d")),
        ..Policy::default()
    };
    assert_eq!(kept(&p, &t), vec![t[2]]);
    let items: Vec<_> = t
        .iter()
        .map(|s| Item {
            time: Some(at(s)),
            tags: &[],
        })
        .collect();
    let now = at("2024-05-02T13:00:00+02:00").with_timezone(&Utc);
    let r = apply(&p, &items, now, false);
    assert!(r[0].is_empty());
    assert_eq!(r[1], vec![Reason::Within(d("1d"))]);
    assert_eq!(r[2], vec![Reason::Within(d("1d"))]);
}

#[test]
fn policy_safety_copies_kept_a_week_and_never_take_a_bucket() {
    let backup: Vec<String> = vec![];
    let safety: Vec<String> = vec!["pre-restore".into()];
    let now = at("2024-05-10T12:00:00+02:00").with_timezone(&Utc);
    let items = [
        Item {
            time: Some(at("2024-05-10T10:00:00+02:00")),
            tags: &backup,
        },
        Item {
            time: Some(at("2024-05-10T11:00:00+02:00")),
            tags: &safety,
        },
        Item {
            time: Some(at("2024-05-01T11:00:00+02:00")),
            tags: &safety,
        },
    ];
    let r = apply(&policy(1, 0, 1, 0, 0, 0), &items, now, false);
    assert_eq!(
        r[0].iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        ["last 1", "daily 1"]
    );
    assert_eq!(r[1], vec![Reason::PreRestore]);
    assert_eq!(r[1][0].to_string(), "pre-restore (7 days)");
    assert!(r[2].is_empty(), "nine days old: {:?}", r[2]);
    // Selected by their tag, they are ordinary snapshots for the buckets.
    let r = apply(&policy(1, 0, 0, 0, 0, 0), &items[1..], now, true);
    assert_eq!(r[0].len(), 2);
    assert!(r[1].is_empty());
}

// ---------------------------------------------------------------- parsing

#[test]
fn policy_duration_parse() {
    let d = Duration::parse("1y2m3d4h").unwrap();
    assert_eq!(
        d,
        Duration {
            years: 1,
            months: 2,
            days: 3,
            hours: 4
        }
    );
    assert_eq!(d.to_string(), "1y2m3d4h");
    assert_eq!(Duration::parse(" 2d ").unwrap().to_string(), "2d");
    assert_eq!(Duration::parse("36h").unwrap().hours, 36);
    for bad in ["", "5", "d", "1x", "1d1d", "99999999999d", "-1d", "1d 2h"] {
        assert!(
            matches!(Duration::parse(bad), Err(PolicyError::BadDuration { .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn policy_group_by_and_tag_list_parse() {
    assert_eq!(GroupBy::parse("host,paths").unwrap(), GroupBy::default());
    let all = GroupBy::parse("tags, host,paths").unwrap();
    assert!(all.host && all.paths && all.tags);
    let none = GroupBy::parse("").unwrap();
    assert!(!none.host && !none.paths && !none.tags);
    assert!(GroupBy::parse("host,user").is_err());
    assert_eq!(parse_tag_list("a, b").unwrap(), ["a", "b"]);
    assert!(parse_tag_list(" , ").is_err());
}

// ---------------------------------------------------------------- plans over snapshots

fn snap(time: &str, host: &str, paths: &[&str], tags: &[&str]) -> Snapshot {
    Snapshot {
        time: time.into(),
        time_end: time.into(),
        host: host.into(),
        user: "u".into(),
        paths: paths.iter().map(|p| p.to_string()).collect(),
        tags: tags.iter().map(|p| p.to_string()).collect(),
        kind: BackupKind::Full,
        parent: None,
        tree: Id::default(),
        incomplete: false,
        errors: Vec::new(),
        summary: Summary::default(),
        program: "snap test".into(),
        mysql: None,
        original: None,
        binlog: None,
    }
}

fn id(first: u8, second: u8) -> Id {
    let mut b = [7u8; 32];
    b[0] = first;
    b[1] = second;
    Id(b)
}

#[test]
fn policy_plan_groups_filters_and_refuses_an_empty_policy() {
    let list = vec![
        (
            id(1, 1),
            snap("2024-05-01T10:00:00+02:00", "a", &["/srv"], &[]),
        ),
        (
            id(2, 1),
            snap("2024-05-01T11:00:00+02:00", "b", &["/srv"], &[]),
        ),
        (
            id(3, 1),
            snap("2024-05-02T10:00:00+02:00", "a", &["/srv"], &[]),
        ),
        (
            id(4, 1),
            snap("2024-05-02T11:00:00+02:00", "a", &["/etc"], &[]),
        ),
        (id(5, 1), snap("not a time", "a", &["/srv"], &[])),
    ];
    let now = Utc::now();
    let last1 = policy(1, 0, 0, 0, 0, 0);
    let all = SnapshotFilter::default();
    let p = plan(&last1, &list, &all, GroupBy::default(), now).unwrap();
    assert_eq!(p.groups.len(), 3);
    let keep: BTreeSet<Id> = p
        .groups
        .iter()
        .flat_map(|g| g.keep.iter().map(|d| d.id))
        .collect();
    assert_eq!(keep, [id(2, 1), id(3, 1), id(4, 1), id(5, 1)].into());
    assert_eq!(p.removals().copied().collect::<Vec<_>>(), [id(1, 1)]);
    let a_srv = p
        .groups
        .iter()
        .find(|g| {
            g.group.host.as_deref() == Some("a") && g.group.paths == Some(vec!["/srv".into()])
        })
        .unwrap();
    assert_eq!(a_srv.keep[0].id, id(3, 1), "newest first");
    assert_eq!(a_srv.keep[1].reasons, [Reason::TimeUnreadable]);
    // One group: only the newest of all is kept (and the unreadable one).
    let p = plan(&last1, &list, &all, GroupBy::parse("").unwrap(), now).unwrap();
    assert_eq!(p.groups.len(), 1);
    assert_eq!(p.removals().count(), 3);
    // A filter leaves the others out entirely.
    let only_b = SnapshotFilter {
        host: Some("b".into()),
        ..SnapshotFilter::default()
    };
    let p = plan(&last1, &list, &only_b, GroupBy::default(), now).unwrap();
    assert_eq!(p.groups.len(), 1);
    assert_eq!(p.removals().count(), 0);
    assert!(matches!(
        plan(&Policy::default(), &list, &all, GroupBy::default(), now),
        Err(PolicyError::NoRule)
    ));
    let zero = Policy {
        within: Some(Duration::default()),
        ..Policy::default()
    };
    assert!(zero.is_empty());
}

#[test]
fn policy_plan_ids_by_prefix() {
    let list = vec![
        (
            id(0xab, 0x10),
            snap("2024-05-01T10:00:00+02:00", "a", &[], &[]),
        ),
        (
            id(0xab, 0x20),
            snap("2024-05-02T10:00:00+02:00", "a", &[], &["pre-restore"]),
        ),
        (
            id(0xcd, 0x10),
            snap("2024-05-03T10:00:00+02:00", "a", &[], &[]),
        ),
    ];
    let p = plan_ids(&list, &["ab2".into(), "CD".into(), "cd10".into()]).unwrap();
    let removed: Vec<Id> = p.removals().copied().collect();
    assert_eq!(
        removed,
        [id(0xcd, 0x10), id(0xab, 0x20)],
        "newest first, once each"
    );
    assert_eq!(p.groups[0].remove[0].reasons, [Reason::Named]);
    assert!(matches!(
        plan_ids(&list, &["ab".into()]),
        Err(crate::error::Error::AmbiguousSnapshot(_))
    ));
    assert!(matches!(
        plan_ids(&list, &["ef".into()]),
        Err(crate::error::Error::SnapshotNotFound(_))
    ));
    assert!(matches!(
        plan_ids(&list, &["".into()]),
        Err(crate::error::Error::SnapshotNotFound(_))
    ));
}

#[test]
fn policy_synthetic_clock_switches_on_the_right_sundays() {
    // Sanity check of the synthetic clock: the offsets switch on the right Sundays.
    assert_eq!(
        last_sunday(2024, 3),
        NaiveDate::from_ymd_opt(2024, 3, 31).unwrap()
    );
    assert_eq!(
        last_sunday(2024, 10),
        NaiveDate::from_ymd_opt(2024, 10, 27).unwrap()
    );
    let before = Utc.with_ymd_and_hms(2024, 3, 31, 0, 59, 0).unwrap();
    assert_eq!(cet(before).to_rfc3339(), "2024-03-31T01:59:00+01:00");
    assert_eq!(
        cet(before + TimeDelta::minutes(1)).to_rfc3339(),
        "2024-03-31T03:00:00+02:00"
    );
}
