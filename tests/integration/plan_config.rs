//! backup.yml as a file: `snap config check` on a table of broken files (each error names the
//! file, line, column and key, and what is allowed), `snap config example` validating itself,
//! and `snap schedule`: systemd units checked by `systemd-analyze verify`, their calendar events
//! compared slot by slot with the cron expressions (`systemd-analyze calendar` against croner),
//! and crontab lines parsed back and run.

use crate::common::code;
use crate::plan_common::{PlanDir, lines_with};

/// A valid plan; the table below breaks one thing at a time.
fn base(p: &PlanDir) -> String {
    format!(
        "version: 1\n{}jobs:\n  app:\n    class: important\n    repository: local\n    paths: [/srv/app]\n    schedule:\n      full: \"0 2 * * 0\"\n      incremental: \"0 2 * * *\"\n",
        p.repositories()
    )
}

#[test]
fn config_check_reports_line_column_key() {
    let p = PlanDir::new();
    p.write(&base(&p));
    let o = p.run(&["config", "check"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    // (what to replace, with what, expected line, column, key, words of the message)
    let repos_lines = p.repositories().lines().count() as u64;
    let job = 3 + repos_lines; // line of "  app:"
    let table: Vec<(&str, &str, u64, u64, &str, &str)> = vec![
        (
            "version: 1",
            "version: 2",
            1,
            10,
            "version",
            "only 1 is allowed",
        ),
        (
            "version: 1\n",
            "version: 1\njobz: {}\n",
            2,
            1,
            "jobz",
            "unknown field `jobz`, expected one of",
        ),
        (
            "class: important",
            "class: importnt",
            job + 1,
            12,
            "jobs.app.class",
            "allowed are critical, important, normal",
        ),
        (
            "repository: local",
            "repository: nas",
            job + 2,
            17,
            "jobs.app.repository",
            "allowed are local, offsite",
        ),
        (
            "full: \"0 2 * * 0\"",
            "full: \"0 25 * * 0\"",
            job + 5,
            13,
            "jobs.app.schedule.full",
            "hour (0-23)",
        ),
        (
            "full: \"0 2 * * 0\"",
            "full: \"0 2 * *\"",
            job + 5,
            13,
            "jobs.app.schedule.full",
            "has 4 fields",
        ),
        (
            "incremental:",
            "incremntal:",
            job + 6,
            7,
            "jobs.app.schedule.incremntal",
            "expected one of full, incremental, differential",
        ),
        (
            "    paths: [/srv/app]\n",
            "    paths: [srv/app]\n",
            job + 1,
            1,
            "jobs.app.paths",
            "only absolute paths",
        ),
        (
            "    paths: [/srv/app]\n",
            "    paths: [/srv/app]\n    retries: -1\n",
            job + 4,
            14,
            "jobs.app.retries",
            "whole number",
        ),
        (
            "    paths: [/srv/app]\n",
            "    paths: [/srv/app]\n    retry_backoff: soon\n",
            job + 4,
            20,
            "jobs.app.retry_backoff",
            "not a duration",
        ),
        (
            "    paths: [/srv/app]\n",
            "    paths: [/srv/app]\n    copy_to: [local]\n",
            job + 4,
            15,
            "jobs.app.copy_to[0]",
            "already a destination",
        ),
        (
            "    paths: [/srv/app]\n",
            "    paths: [/srv/app]\n    notify:\n      - webhook: ftp://x\n",
            job + 5,
            18,
            "jobs.app.notify[0].webhook",
            "http:// or https://",
        ),
        (
            "    paths: [/srv/app]\n",
            "    paths: [/srv/app]\n    notify:\n      - command: \"true\"\n        email: a@b\n",
            job + 5,
            18,
            "jobs.app.notify[0]",
            "exactly one of command, webhook or email",
        ),
        (
            "    paths: [/srv/app]\n",
            "    paths: [/srv/app]\n    notify:\n      - on: [sometimes]\n        email: a@b\n",
            job + 5,
            14,
            "jobs.app.notify[0].on[0]",
            "expected one of success, failure, skip",
        ),
        (
            "    paths: [/srv/app]\n",
            "    paths: [/srv/app]\n    binlog: {schedule: \"* * * * *\"}\n",
            job + 4,
            24,
            "jobs.app.binlog",
            "needs a mysql source",
        ),
        (
            "    paths: [/srv/app]\n",
            "    paths: [/srv/app]\n    mysql: {url: \"mysql://u:pw@h\"}\n",
            job + 4,
            18,
            "jobs.app.mysql.url",
            "no password in the URL",
        ),
        (
            "    paths: [/srv/app]\n",
            "    mysql: {url: \"postgres://h\"}\n",
            job + 3,
            18,
            "jobs.app.mysql.url",
            "mysql://USER@HOST:PORT",
        ),
        (
            "    schedule:\n",
            "    hooks: {before: [true], after: nope}\n    schedule:\n",
            job + 4,
            36,
            "jobs.app.hooks.after",
            "sequence",
        ),
        (
            "    password_file:",
            "    password_fil:",
            5,
            5,
            "repositories.local.password_fil",
            "expected one of url, password_file, password_env",
        ),
        (
            "    paths: [/srv/app]\n",
            "    paths: [/srv/app]\n    check: {schedule: \"0 6 * * 0\", read_data_subset: lots}\n",
            job + 4,
            54,
            "jobs.app.check.read_data_subset",
            "P% (e.g. 5%) or n/t",
        ),
        (
            "    paths: [/srv/app]\n",
            "    paths: [/srv/app]\n    include: [\"*.py\", \"a[\"]\n",
            job + 4,
            23,
            "jobs.app.include[1]",
            "a glob such as",
        ),
    ];
    let dir = p.dir.clone();
    let mut wrong = Vec::new();
    for (i, (from, to, line, col, key, words)) in table.iter().enumerate() {
        let text = base(&p).replacen(from, to, 1);
        assert_ne!(text, base(&p), "case {i}: {from:?} not in the base file");
        let f = dir.join(format!("broken-{i}.yml"));
        std::fs::write(&f, &text).unwrap();
        let o = p.run(&["config", "check", "-c", f.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(code(&o), 33, "case {i} ({to:?}): {err}");
        let want = format!("{}:{line}:{col}: {key}: ", f.display());
        if !err.contains(&want) || !err.contains(words) {
            wrong.push(format!(
                "case {i} ({to:?}): want {want:?} and {words:?} in\n{err}"
            ));
        }
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // a repository without a password source, and one with two
    let no_pw = base(&p).replacen(
        &format!(
            "    password_file: {}\n",
            p.dir.join("local.pass").display()
        ),
        "",
        1,
    );
    std::fs::write(dir.join("nopw.yml"), no_pw).unwrap();
    let o = p.run(&[
        "config",
        "check",
        "-c",
        dir.join("nopw.yml").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(code(&o), 33, "{err}");
    assert!(
        err.contains(":3:3: repositories.local: exactly one of password_file"),
        "{err}"
    );
    // a YAML syntax error
    std::fs::write(dir.join("syntax.yml"), "version: 1\njobs: [\n").unwrap();
    let o = p.run(&[
        "config",
        "check",
        "-c",
        dir.join("syntax.yml").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(code(&o), 33, "{err}");
    assert!(err.contains("syntax.yml:"), "{err}");
    // a missing file
    let o = p.run(&["config", "check", "-c", "/nonexistent/backup.yml"]);
    assert_eq!(code(&o), 33);
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/backup.yml: cannot read"));
}

#[test]
fn config_example_passes_check() {
    let p = PlanDir::new();
    let o = p.run(&["config", "example"]);
    assert_eq!(code(&o), 0);
    let example = String::from_utf8(o.stdout).unwrap();
    assert!(
        example
            .lines()
            .filter(|l| l.trim_start().starts_with('#'))
            .count()
            > 10
    );
    p.write(&example);
    let o = p.run(&["--json", "config", "check"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let classes: Vec<&str> = j["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["class"].as_str().unwrap())
        .collect();
    assert_eq!(classes, ["critical", "important", "normal"]);
    assert_eq!(j["jobs"][0]["schedules"]["binlog"], "30 */6 * * *");
    assert_eq!(j["jobs"][0]["schedules"]["verify"], "0 5 1 * *");
    assert_eq!(j["jobs"][0]["schedules"]["check"], "0 6 * * 0");
}

#[test]
fn readme_example_passes_check() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let at = readme.find("## The backup plan").unwrap();
    let start = at + readme[at..].find("```yaml\n").unwrap() + "```yaml\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let p = PlanDir::new();
    p.write(&readme[start..end]);
    let o = p.run(&["--json", "config", "check"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["jobs"].as_array().unwrap().len(), 3);
}

/// `systemd-analyze calendar --iterations N EXPR`: the next N elapse times, as printed.
fn systemd_elapses(expr: &str, n: usize) -> Vec<String> {
    let o = std::process::Command::new("systemd-analyze")
        .args(["calendar", "--iterations", &n.to_string(), expr])
        .env("TZ", "UTC")
        .output()
        .expect("systemd-analyze (apt-get install systemd)");
    assert!(
        o.status.success(),
        "{expr}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.contains("Next elapse:") || l.contains("Iter. #"))
        .map(|l| {
            // "  Next elapse: Wed 2026-12-02 01:00:00 UTC" -> "2026-12-02 01:00:00"
            let w: Vec<&str> = l.split_whitespace().collect();
            format!("{} {}", w[w.len() - 3], w[w.len() - 2])
        })
        .collect()
}

#[test]
fn schedule_systemd_units_verify_and_match_cron() {
    let p = PlanDir::new();
    p.write(&String::from_utf8(p.run(&["config", "example"]).stdout).unwrap());
    let plan = snap::plan::load(&p.config).unwrap();
    for (user, sub) in [(false, "system"), (true, "user")] {
        let d = p.dir.join(sub);
        let mut args = vec!["schedule", "--systemd", "--dir", d.to_str().unwrap()];
        if user {
            args.push("--user");
        }
        let o = p.run(&args);
        assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
        let mut units: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        units.sort();
        // a timer and a service for each of the schedules
        let schedules: usize = plan.jobs.iter().map(|j| j.schedules.len()).sum();
        assert_eq!(schedules, 7);
        assert_eq!(units.len(), 2 * schedules, "{units:?}");
        let mut verify = std::process::Command::new("systemd-analyze");
        if user {
            let rt = p.dir.join("runtime");
            std::fs::create_dir_all(&rt).unwrap();
            crate::common::chmod_r("700", &rt);
            verify.arg("--user").env("XDG_RUNTIME_DIR", &rt);
        }
        let o = verify.arg("verify").args(&units).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "systemd-analyze verify: {err}");
        assert!(
            lines_with(&err, "snap-").is_empty(),
            "systemd-analyze complained about our units:\n{err}"
        );
        // each timer's calendar fires exactly when its cron expression does
        for j in &plan.jobs {
            for (a, s) in &j.schedules {
                let timer = d.join(format!("snap-{}-{}.timer", j.name, a.as_str()));
                let text = std::fs::read_to_string(&timer).unwrap();
                let cal = text
                    .lines()
                    .find_map(|l| l.strip_prefix("OnCalendar="))
                    .unwrap();
                let service = std::fs::read_to_string(timer.with_extension("service")).unwrap();
                assert!(
                    service.contains(&format!("--kind {} {}", a.as_str(), j.name)),
                    "{service}"
                );
                assert_eq!(service.contains("network-online.target"), !user);
                let n = 8;
                let got = systemd_elapses(cal, n);
                let mut t = chrono::Local::now();
                let mut want = Vec::new();
                for _ in 0..n {
                    t = s.next_after(t).unwrap();
                    want.push(
                        t.with_timezone(&chrono::Utc)
                            .format("%Y-%m-%d %H:%M:%S")
                            .to_string(),
                    );
                }
                assert_eq!(
                    got,
                    want,
                    "{} {}: cron {:?} vs OnCalendar={cal}",
                    j.name,
                    a.as_str(),
                    s.text
                );
            }
        }
    }
}

#[test]
fn schedule_crontab_lines_parse_and_run() {
    let p = PlanDir::new();
    p.write(&String::from_utf8(p.run(&["config", "example"]).stdout).unwrap());
    let plan = snap::plan::load(&p.config).unwrap();
    let o = p.run(&["schedule", "--crontab"]);
    assert_eq!(code(&o), 0);
    let tab = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = tab
        .lines()
        .filter(|l| !l.starts_with('#') && !l.contains('=') && !l.trim().is_empty())
        .collect();
    let expected: usize = plan.jobs.iter().map(|j| j.schedules.len()).sum();
    assert_eq!(lines.len(), expected, "{tab}");
    for l in lines {
        let fields: Vec<&str> = l.split_whitespace().collect();
        let cron = fields[..5].join(" ");
        let cmd = fields[5..].join(" ");
        snap::plan::schedule::Schedule::parse(&cron).unwrap();
        let (job, kind) = (fields[fields.len() - 1], fields[fields.len() - 2]);
        let j = plan.jobs.iter().find(|j| j.name == job).unwrap();
        let a = snap::plan::Action::parse(kind).unwrap();
        assert_eq!(j.schedule(a).unwrap().text, cron, "{l}");
        assert!(cmd.starts_with(crate::common::bin()), "{cmd}");
        // the command as cron's sh would run it, at a time nothing is due: it parses, loads
        // the plan and does nothing
        let o = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{cmd} --at 2025-03-03T03:33:00+00:00"))
            .env("TZ", "UTC")
            .output()
            .unwrap();
        assert_eq!(code(&o), 0, "{cmd}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(p.runs().is_empty());
    }
}
