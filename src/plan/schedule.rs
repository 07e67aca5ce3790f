//! When work is due: cron expressions (croner, POSIX/Vixie semantics in local time) and the clock
//! that says what time it is. The clock is a trait so the same scheduler code runs against the
//! wall clock (`snap run`, `snap run --daemon`) and against a simulated calendar that jumps from
//! one slot to the next (tests run a year in minutes; `snap run --at` for one slot).
//!
//! Due means: a schedule has an occurrence in the minute being looked at (cron's rule), or, for
//! the daemon, in the span since it last looked (a slot missed while another job ran is caught
//! up once, not once per missed slot). Of the backups of one job falling due together only the
//! fullest runs (`full` over `differential` over `incremental`), so a weekly full and a daily
//! incremental at the same time of day need no exclusions in their expressions.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Local, TimeZone, Timelike};

use super::file::{Action, Job};

/// A parsed cron expression and the text it came from.
#[derive(Clone)]
pub struct Schedule {
    pub text: String,
    cron: croner::Cron,
}

impl std::fmt::Debug for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Schedule({:?})", self.text)
    }
}

impl Schedule {
    /// Five fields (minute hour day-of-month month day-of-week) or an alias (`@daily`).
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let fields = text.split_whitespace().count();
        if !text.trim_start().starts_with('@') && fields != 5 {
            return Err(format!(
                "{text:?} has {fields} fields: a cron expression of five (minute hour \
                 day-of-month month day-of-week, e.g. \"0 1 * * *\") or @hourly/@daily/@weekly/\
                 @monthly is allowed here"
            ));
        }
        let cron = croner::parser::CronParser::new().parse(text).map_err(|e| {
            format!(
                "{text:?} is not a cron expression ({e}): five fields minute (0-59) hour \
                     (0-23) day-of-month (1-31) month (1-12) day-of-week (0-7) are allowed here"
            )
        })?;
        Ok(Schedule {
            text: text.trim().to_string(),
            cron,
        })
    }

    /// Whether the minute containing `t` is one of the schedule's.
    pub fn matches(&self, t: DateTime<Local>) -> bool {
        self.cron.is_time_matching(&minute(t)).unwrap_or(false)
    }

    /// The first occurrence strictly after `t`.
    pub fn next_after(&self, t: DateTime<Local>) -> Option<DateTime<Local>> {
        self.cron.find_next_occurrence(&t, false).ok()
    }

    /// The last occurrence at or before `t`.
    pub fn previous_before(&self, t: DateTime<Local>) -> Option<DateTime<Local>> {
        self.cron.find_previous_occurrence(&t, true).ok()
    }

    /// Whether an occurrence falls in `(after, until]`.
    pub fn due_between(&self, after: DateTime<Local>, until: DateTime<Local>) -> bool {
        self.next_after(after).is_some_and(|n| n <= until)
    }
}

/// `t` with seconds and below cleared.
pub fn minute(t: DateTime<Local>) -> DateTime<Local> {
    t.with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(t)
}

/// What time it is, and waiting for a later one.
pub trait Clock {
    fn now(&self) -> DateTime<Local>;
    /// Waits until `t`, returning early (false) when `stop` says so; true once `t` is reached.
    fn sleep_until(&mut self, t: DateTime<Local>, stop: &dyn Fn() -> bool) -> bool;
    /// A simulated clock: snapshots record its time instead of the wall clock's.
    fn simulated(&self) -> bool;
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Local> {
        Local::now()
    }

    fn sleep_until(&mut self, t: DateTime<Local>, stop: &dyn Fn() -> bool) -> bool {
        loop {
            if stop() {
                return false;
            }
            let left = (t - Local::now()).to_std().unwrap_or(Duration::ZERO);
            if left.is_zero() {
                return true;
            }
            // Short naps: a signal sets a flag, and the daemon must see it within a moment.
            std::thread::sleep(left.min(Duration::from_millis(200)));
        }
    }

    fn simulated(&self) -> bool {
        false
    }
}

/// A calendar that jumps: `sleep_until` moves time forward at once, until `end`.
pub struct SimClock {
    now: DateTime<Local>,
    end: Option<DateTime<Local>>,
}

impl SimClock {
    pub fn new(start: DateTime<Local>, end: Option<DateTime<Local>>) -> SimClock {
        SimClock { now: start, end }
    }
}

impl Clock for SimClock {
    fn now(&self) -> DateTime<Local> {
        self.now
    }

    fn sleep_until(&mut self, t: DateTime<Local>, stop: &dyn Fn() -> bool) -> bool {
        if stop() || self.end.is_some_and(|e| t > e) {
            return false;
        }
        if t > self.now {
            self.now = t;
        }
        true
    }

    fn simulated(&self) -> bool {
        true
    }
}

/// Parses an RFC 3339 time (`--at`, `--clock-end`) into local time.
pub fn parse_time(s: &str) -> Result<DateTime<Local>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| Local.from_utc_datetime(&t.naive_utc()))
        .map_err(|e| format!("{s:?}: {e}: an RFC 3339 time such as 2025-01-01T01:00:00+00:00"))
}

/// One unit of work the scheduler hands to the runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub job: String,
    pub action: Action,
}

/// The work due in `(after, until]` (with `after` = None: in `until`'s minute), in the file's
/// job order; per job, the fullest backup and then binary logs and drills.
pub fn due(jobs: &[Job], after: Option<DateTime<Local>>, until: DateTime<Local>) -> Vec<Due> {
    let mut out = Vec::new();
    for j in jobs {
        let mut best: BTreeMap<u8, Action> = BTreeMap::new();
        for (a, s) in &j.schedules {
            let hit = match after {
                Some(after) => s.due_between(after, until),
                None => s.matches(until),
            };
            if hit {
                let e = best.entry(a.group()).or_insert(*a);
                if *a > *e {
                    *e = *a;
                }
            }
        }
        // backups first (the binary logs then start where the dump ends), drills and checks last
        for g in [1u8, 0, 2, 3] {
            if let Some(a) = best.get(&g) {
                out.push(Due {
                    job: j.name.clone(),
                    action: *a,
                });
            }
        }
    }
    out
}

/// The earliest occurrence of any schedule after `t`.
pub fn next_slot(jobs: &[Job], t: DateTime<Local>) -> Option<DateTime<Local>> {
    jobs.iter()
        .flat_map(|j| j.schedules.iter())
        .filter_map(|(_, s)| s.next_after(t))
        .min()
}

/// Whether `action` of `job` is superseded in `t`'s minute by a fuller backup also due then (a
/// crontab line per schedule fires both; the fuller one does the work).
pub fn superseded(job: &Job, action: Action, t: DateTime<Local>) -> bool {
    job.schedules
        .iter()
        .any(|(a, s)| a.group() == action.group() && *a > action && s.matches(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_errors() {
        assert!(Schedule::parse("0 1 * * *").is_ok());
        assert!(Schedule::parse("@daily").is_ok());
        let e = Schedule::parse("0 1 * *").unwrap_err();
        assert!(e.contains("has 4 fields"), "{e}");
        let e = Schedule::parse("0 25 * * *").unwrap_err();
        assert!(e.contains("hour (0-23)"), "{e}");
    }

    fn plan() -> super::super::Plan {
        let yaml = "version: 1\nrepositories:\n  r: {url: /tmp/r, password_file: /p}\njobs:\n  \
                    app:\n    class: important\n    repository: r\n    paths: [/srv]\n    \
                    schedule: {full: \"0 2 * * 0\", incremental: \"0 2 * * *\"}\n    \
                    check: {schedule: \"0 2 * * *\"}\n";
        super::super::parse(std::path::Path::new("/etc/b.yml"), yaml).unwrap()
    }

    #[test]
    fn fullest_backup_of_a_minute_wins() {
        let p = plan();
        // local wall-clock times: cron is read in local time, whatever TZ the tests run in
        let at = |s: &str| {
            let n = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").unwrap();
            Local.from_local_datetime(&n).unwrap()
        };
        let kinds =
            |t| -> Vec<Action> { due(&p.jobs, None, at(t)).iter().map(|d| d.action).collect() };
        // 2025-01-05 is a Sunday: one full (not a full and an incremental), then the check
        assert_eq!(kinds("2025-01-05T02:00:30"), [Action::Full, Action::Check]);
        assert_eq!(
            kinds("2025-01-06T02:00:00"),
            [Action::Incremental, Action::Check]
        );
        assert!(kinds("2025-01-06T02:01:00").is_empty());
        // the daemon's span: Saturday night to Monday morning holds both kinds; the fullest runs once
        let span = due(
            &p.jobs,
            Some(at("2025-01-04T03:00:00")),
            at("2025-01-06T03:00:00"),
        );
        assert_eq!(
            span.iter().map(|d| d.action).collect::<Vec<_>>(),
            [Action::Full, Action::Check]
        );
        let j = &p.jobs[0];
        assert!(superseded(
            j,
            Action::Incremental,
            at("2025-01-05T02:00:00")
        ));
        assert!(!superseded(
            j,
            Action::Incremental,
            at("2025-01-06T02:00:00")
        ));
        assert!(!superseded(j, Action::Check, at("2025-01-05T02:00:00")));
        assert_eq!(
            next_slot(&p.jobs, at("2025-01-06T02:00:00")),
            Some(at("2025-01-07T02:00:00"))
        );
        let log = p.log.to_string_lossy().into_owned();
        assert_eq!(log, "/etc/b.runs.jsonl");
    }

    #[test]
    fn matches_and_next() {
        let s = Schedule::parse("30 2 * * 0").unwrap();
        let t = parse_time("2025-01-05T02:30:41+00:00").unwrap();
        let local = |s| parse_time(s).unwrap();
        // 2025-01-05 is a Sunday; the check is in local time, so compare in local time too
        assert_eq!(
            s.matches(t),
            t.format("%a %H:%M").to_string() == "Sun 02:30"
        );
        let n = s.next_after(local("2025-01-01T00:00:00+00:00")).unwrap();
        assert_eq!(n.format("%a %H:%M").to_string(), "Sun 02:30");
    }
}
