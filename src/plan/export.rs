//! The plan as crontab lines or systemd timer and service units (`snap schedule`), so a user who
//! prefers cron or systemd gets the plan `snap run --daemon` would carry out: one line (or one
//! timer) per job and schedule, each running `snap run -c FILE --kind ACTION JOB`. When a weekly
//! full and a daily incremental fire in the same minute, both triggers start and the
//! incremental one sees the fuller backup due and does nothing (`schedule::superseded`), as the
//! daemon would.
//!
//! systemd's calendar events are a different language from cron's: lists, ranges and steps map
//! one to one, but cron's "day-of-month OR day-of-week" (when both are restricted) has no
//! systemd equivalent, and neither have croner's extensions (`L`, `W`, `#`); those are refused
//! with the reason, never approximated.

use std::path::Path;

use super::file::Plan;

/// Quotes `s` for a POSIX shell (crontab lines are run by `sh`) when it needs it.
fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:@,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn command(exe: &Path, config: &Path, job: &str, action: &str) -> Vec<String> {
    vec![
        exe.display().to_string(),
        "run".into(),
        "-c".into(),
        config.display().to_string(),
        "--kind".into(),
        action.into(),
        job.into(),
    ]
}

/// The crontab: one line per job and schedule.
pub fn crontab(plan: &Plan, exe: &Path, config: &Path) -> String {
    let mut out = format!(
        "# snap backup plan from {} (snap schedule --crontab); install with `crontab FILE`\n\
         SHELL=/bin/sh\n",
        config.display()
    );
    for j in &plan.jobs {
        for (a, s) in &j.schedules {
            let cmd: Vec<String> = command(exe, config, &j.name, a.as_str())
                .iter()
                .map(|s| sh_quote(s))
                .collect();
            out.push_str(&format!("{}  {}\n", expand_alias(&s.text), cmd.join(" ")));
        }
    }
    out
}

/// A systemd unit file: its name and contents.
pub struct Unit {
    pub name: String,
    pub text: String,
}

/// A timer and a service per job and schedule (`user`: for the user's own service manager).
pub fn systemd(plan: &Plan, exe: &Path, config: &Path, user: bool) -> Result<Vec<Unit>, String> {
    let mut units = Vec::new();
    for j in &plan.jobs {
        for (a, s) in &j.schedules {
            let base = format!("snap-{}-{}", j.name, a.as_str());
            let cal = on_calendar(&s.text)
                .map_err(|e| format!("job {} {} schedule {:?}: {e}", j.name, a.as_str(), s.text))?;
            // systemd's own quoting: words with spaces in double quotes
            let exec: Vec<String> = command(exe, config, &j.name, a.as_str())
                .into_iter()
                .map(|w| {
                    if w.contains([' ', '"', '\\', '\'', '$', '%']) {
                        format!(
                            "\"{}\"",
                            w.replace('\\', "\\\\")
                                .replace('"', "\\\"")
                                .replace('%', "%%")
                                .replace('$', "$$")
                        )
                    } else {
                        w
                    }
                })
                .collect();
            let network = if user {
                ""
            } else {
                "After=network-online.target\nWants=network-online.target\n"
            };
            units.push(Unit {
                name: format!("{base}.service"),
                text: format!(
                    "[Unit]\nDescription=snap backup: job {job} ({action})\n{network}\n\
                     [Service]\nType=oneshot\nExecStart={exec}\nNice=10\nIOSchedulingClass=idle\n",
                    job = j.name,
                    action = a.as_str(),
                    exec = exec.join(" "),
                ),
            });
            units.push(Unit {
                name: format!("{base}.timer"),
                text: format!(
                    "[Unit]\nDescription=snap backup schedule: job {job} ({action}), cron \"{cron}\"\n\n\
                     [Timer]\nOnCalendar={cal}\n# on time to the second: the run checks which backup \
                     is due in its minute\nAccuracySec=1s\nUnit={base}.service\n\n\
                     [Install]\nWantedBy=timers.target\n",
                    job = j.name,
                    action = a.as_str(),
                    cron = s.text,
                ),
            });
        }
    }
    Ok(units)
}

fn expand_alias(text: &str) -> String {
    match text.trim() {
        "@hourly" => "0 * * * *",
        "@daily" | "@midnight" => "0 0 * * *",
        "@weekly" => "0 0 * * 0",
        "@monthly" => "0 0 1 * *",
        "@yearly" | "@annually" => "0 0 1 1 *",
        t => t,
    }
    .to_string()
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
const SYSTEMD_DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

fn number(s: &str, names: &[&str], base: u32) -> Result<u32, String> {
    if let Ok(n) = s.parse::<u32>() {
        return Ok(n);
    }
    let l = s.to_ascii_lowercase();
    names
        .iter()
        .position(|n| *n == l)
        .map(|i| i as u32 + base)
        .ok_or_else(|| format!("{s:?} cannot be written as a systemd calendar event"))
}

/// One numeric cron field as a systemd calendar component.
fn component(field: &str, lo: u32, names: &[&str], base: u32) -> Result<String, String> {
    if field == "*" {
        return Ok("*".into());
    }
    let mut items = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (
                r,
                Some(s.parse::<u32>().ok().filter(|s| *s > 0).ok_or_else(|| {
                    format!("step {s:?} cannot be written as a systemd calendar event")
                })?),
            ),
            None => (item, None),
        };
        let s = match (range.split_once('-'), step) {
            _ if range == "*" => format!("{lo}/{}", step.unwrap_or(1)),
            (Some((a, b)), None) => {
                format!("{}..{}", number(a, names, base)?, number(b, names, base)?)
            }
            (Some((a, b)), Some(st)) => {
                let (a, b) = (number(a, names, base)?, number(b, names, base)?);
                (a..=b)
                    .step_by(st as usize)
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            }
            (None, Some(st)) => format!("{}/{st}", number(range, names, base)?),
            (None, None) => number(range, names, base)?.to_string(),
        };
        items.push(s);
    }
    Ok(items.join(","))
}

/// The days of week a cron field names (0 and 7 are Sunday).
fn weekdays(field: &str) -> Result<Vec<usize>, String> {
    let mut days = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<usize>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or("bad step")?,
            ),
            None => (item, 1),
        };
        let (a, b) = match range.split_once('-') {
            _ if range == "*" => (0, 6),
            Some((a, b)) => (number(a, &DAYS, 0)? as usize, number(b, &DAYS, 0)? as usize),
            None => {
                let n = number(range, &DAYS, 0)? as usize;
                (n, if step > 1 { 6 } else { n })
            }
        };
        if a > 7 || b > 7 || a > b {
            return Err(format!("day-of-week {item:?} is out of range"));
        }
        for d in (a..=b).step_by(step) {
            days[d % 7] = true;
        }
    }
    Ok((0..7).filter(|d| days[*d]).collect())
}

/// The systemd `OnCalendar=` expression for a five-field cron expression.
pub fn on_calendar(cron: &str) -> Result<String, String> {
    let text = expand_alias(cron);
    let f: Vec<&str> = text.split_whitespace().collect();
    let [min, hour, dom, month, dow] = f[..] else {
        return Err("only five-field cron expressions can be written as systemd timers".into());
    };
    if text.contains(['#', '?']) {
        return Err("# and ? have no systemd calendar equivalent".into());
    }
    if dom != "*" && dow != "*" {
        return Err(
            "day-of-month and day-of-week are both restricted: cron runs when either \
                    matches, systemd only when both do; split it into two schedules"
                .into(),
        );
    }
    let days = if dow == "*" {
        String::new()
    } else {
        let d = weekdays(dow)?;
        format!(
            "{} ",
            d.iter()
                .map(|d| SYSTEMD_DAYS[*d])
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    Ok(format!(
        "{days}*-{}-{} {}:{}:00",
        component(month, 1, &MONTHS, 1)?,
        component(dom, 1, &[], 0)?,
        component(hour, 0, &[], 0)?,
        component(min, 0, &[], 0)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_events() {
        assert_eq!(on_calendar("0 1 * * *").unwrap(), "*-*-* 1:0:00");
        assert_eq!(on_calendar("30 */6 * * *").unwrap(), "*-*-* 0/6:30:00");
        assert_eq!(on_calendar("0 2 * * 0").unwrap(), "Sun *-*-* 2:0:00");
        assert_eq!(on_calendar("0 5 1 * *").unwrap(), "*-*-1 5:0:00");
        assert_eq!(
            on_calendar("*/15 8-18 * * 1-5").unwrap(),
            "Mon,Tue,Wed,Thu,Fri *-*-* 8..18:0/15:00"
        );
        assert_eq!(on_calendar("0 0 1 jan,jul *").unwrap(), "*-1,7-1 0:0:00");
        assert_eq!(on_calendar("@weekly").unwrap(), "Sun *-*-* 0:0:00");
        assert!(
            on_calendar("0 0 1 * 1")
                .unwrap_err()
                .contains("both restricted")
        );
        assert!(on_calendar("0 0 L * *").is_err());
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(sh_quote("/etc/snap/backup.yml"), "/etc/snap/backup.yml");
        assert_eq!(sh_quote("/my dir/it's"), "'/my dir/it'\\''s'");
    }
}
