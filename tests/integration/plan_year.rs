//! A year of `snap config example` on a simulated calendar: `snap run --daemon --at 2025-01-01
//! --until 2026-01-01` against two real repositories and a real MariaDB, with a real HTTP
//! listener for the example's webhook and a fake sendmail. Checked against an independent
//! model, day by day:
//! - the runs (job, kind, time) are exactly what the cron expressions say, in order, one run
//!   log line each, all successful, and each webhook got its POST;
//! - after every retention step the job's kept snapshots in that repository are exactly what
//!   7 daily / 4 weekly / 12 monthly keeps of the snapshots that survived the day before plus
//!   today's (the model below is written from the policy's definition, not from snap's code);
//! - at the end, each repository holds exactly the last kept sets, every snapshot recording the
//!   simulated time of the run that made it, with the kind the schedule said.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, TimeZone, Utc};

use crate::common::code;
use crate::mysql_common::server;
use crate::plan_common::{DB_PORT, Listener, PlanDir, chromium_screenshot, chromium_status};

/// (time, job, kind) of every run the example's schedules make in 2025 (UTC).
fn expected_runs() -> Vec<(DateTime<Utc>, &'static str, &'static str)> {
    let mut out = Vec::new();
    let mut day = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
    while day.year() == 2025 {
        let at = |h, m| Utc.from_utc_datetime(&day.and_hms_opt(h, m, 0).unwrap());
        let first = day.day() == 1;
        let sunday = day.weekday() == chrono::Weekday::Sun;
        out.push((at(0, 30), "db", "binlog"));
        out.push((at(1, 0), "db", "full"));
        out.push((at(2, 0), "app", if sunday { "full" } else { "incremental" }));
        if first {
            out.push((at(3, 0), "uploads", "full"));
            out.push((at(5, 0), "db", "verify"));
        }
        if sunday {
            out.push((at(6, 0), "db", "check"));
        }
        for h in [6, 12, 18] {
            out.push((at(h, 30), "db", "binlog"));
        }
        day = day.succ_opt().unwrap();
    }
    out
}

/// The retention policy by its definition: for each of daily (date), weekly (ISO year and
/// week) and monthly (year and month), walk the snapshots newest first and keep the newest of
/// each new bucket until N buckets are kept, and the oldest snapshot when fewer than N buckets
/// exist; the kept set is the union.
fn keep(snaps: &BTreeMap<String, DateTime<FixedOffset>>) -> BTreeSet<String> {
    let mut by_time: Vec<(&String, &DateTime<FixedOffset>)> = snaps.iter().collect();
    by_time.sort_by(|a, b| b.1.cmp(a.1).then(b.0.cmp(a.0)));
    let mut kept = BTreeSet::new();
    type Bucket = fn(&DateTime<FixedOffset>) -> String;
    let rules: [(usize, Bucket); 3] = [
        (7, |t| t.format("%Y-%m-%d").to_string()),
        (4, |t| {
            let w = t.iso_week();
            format!("{}-{}", w.year(), w.week())
        }),
        (12, |t| t.format("%Y-%m").to_string()),
    ];
    for (n, bucket) in rules {
        let mut seen: Vec<String> = Vec::new();
        for (id, t) in &by_time {
            let b = bucket(t);
            if seen.last() != Some(&b) && seen.len() < n {
                seen.push(b);
                kept.insert((*id).clone());
            }
        }
        // restic's rule, which snap documents: a rule with buckets left when it reaches the
        // oldest snapshot keeps that one too (fewer buckets than asked for keep the oldest)
        if seen.len() < n
            && let Some((oldest, _)) = by_time.last()
        {
            kept.insert((*oldest).clone());
        }
    }
    kept
}

#[test]
#[ignore = "about 30 minutes on 2 cores (each step is a child process): run with --ignored"]
fn a_year_of_the_example_plan() {
    let db: &'static crate::mysql_common::Server = server(DB_PORT);
    db.exec("DROP DATABASE IF EXISTS planyear");
    db.exec("CREATE DATABASE planyear");
    db.exec("CREATE TABLE IF NOT EXISTS planyear.t (id INT PRIMARY KEY, v TEXT)");
    db.exec("REPLACE INTO planyear.t VALUES (1, 'one'), (2, 'two'), (3, 'three')");
    let p = PlanDir::new();
    let app = p.dir.join("srv-app");
    crate::common::make_files(&app.join("code"), 0..4, 3000);
    crate::common::make_files(&app.join("upload"), 10..13, 5000);
    let hook = Listener::start(9501);
    let example = String::from_utf8(p.run(&["config", "example"]).stdout).unwrap();
    let yaml = example
        .replace("/srv/backup/snap", p.local.repo.to_str().unwrap())
        .replace("/mnt/offsite/snap", p.offsite.repo.to_str().unwrap())
        .replace("/srv/app", app.to_str().unwrap())
        .replace("/etc/snap/", &format!("{}/", p.dir.display()))
        .replace(
            "mysql://backup@127.0.0.1:3306",
            &format!("mysql://snap@127.0.0.1:{DB_PORT}"),
        )
        .replace(
            "https://hooks.example.com/snap",
            "http://127.0.0.1:9501/snap",
        );
    // only locations changed: the schedules, classes and retention are the example's
    assert_eq!(
        yaml.lines()
            .filter(|l| l.contains("schedule") || l.contains("keep"))
            .count(),
        example
            .lines()
            .filter(|l| l.contains("schedule") || l.contains("keep"))
            .count()
    );
    p.write(&yaml);
    // the data grows while the year runs (on the wall clock): a file and a row now and then
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let grower = {
        let (stop, code_dir) = (stop.clone(), app.join("code"));
        std::thread::spawn(move || {
            let mut i = 100u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                // named as the example's app job includes them (`*.py`)
                let len = 2000 + (i as usize % 7) * 1000;
                crate::common::write(
                    &code_dir.join(format!("m{i}.py")),
                    &crate::common::random_bytes(i, len),
                );
                db.exec(&format!(
                    "REPLACE INTO planyear.t VALUES ({i}, REPEAT('x', {}))",
                    100 + i % 50
                ));
                i += 1;
                std::thread::sleep(std::time::Duration::from_millis(400));
            }
        })
    };
    let started = std::time::Instant::now();
    let o = p
        .cmd(&[
            "-q",
            "run",
            "--daemon",
            "--at",
            "2025-01-01T00:00:00+00:00",
            "--until",
            "2026-01-01T00:00:00+00:00",
        ])
        .output()
        .unwrap();
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    grower.join().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(code(&o), 0, "{err}");
    eprintln!(
        "a simulated year took {:.0}s of real time",
        took.as_secs_f64()
    );

    // 1. the runs, one log line each, exactly as scheduled
    let runs = p.runs();
    let want = expected_runs();
    let got: Vec<(DateTime<Utc>, String, String)> = runs
        .iter()
        .map(|r| {
            let t = DateTime::parse_from_rfc3339(r["start"].as_str().unwrap()).unwrap();
            (
                t.with_timezone(&Utc),
                r["job"].as_str().unwrap().into(),
                r["kind"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(got.len(), want.len(), "{err}");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!((g.0, g.1.as_str(), g.2.as_str()), *w, "run {i}");
    }
    for r in &runs {
        assert_eq!(r["result"], "success", "{r}");
    }
    // the webhook (the db job's, on success, failure and skip) heard of every db run
    let db_runs = runs.iter().filter(|r| r["job"] == "db").count();
    assert_eq!(hook.bodies().len(), db_runs);
    assert!(p.mails().is_empty(), "no failure, no mail: {:?}", p.mails());

    // 2. retention after each day against the model
    let mut alive: BTreeMap<(String, String), BTreeMap<String, DateTime<FixedOffset>>> =
        BTreeMap::new();
    let mut checked = 0;
    for r in &runs {
        let job = r["job"].as_str().unwrap().to_string();
        let start = DateTime::parse_from_rfc3339(r["start"].as_str().unwrap()).unwrap();
        if !["full", "incremental", "differential"].contains(&r["kind"].as_str().unwrap()) {
            continue;
        }
        for s in r["snapshots"].as_array().unwrap() {
            let repo = s["repository"].as_str().unwrap().to_string();
            alive
                .entry((job.clone(), repo))
                .or_default()
                .insert(s["id"].as_str().unwrap().to_string(), start);
        }
        let ret = r["retention"].as_array().cloned().unwrap_or_default();
        // retention runs after the first backup of each day, for every repository the job writes
        assert_eq!(
            ret.len(),
            r["repositories"].as_array().unwrap().len(),
            "{r}"
        );
        for e in ret {
            let repo = e["repository"].as_str().unwrap().to_string();
            let set = alive.entry((job.clone(), repo.clone())).or_default();
            let want = keep(set);
            let got: BTreeSet<String> = serde_json::from_value(e["kept"].clone()).unwrap();
            assert_eq!(got, want, "{job} in {repo} after {start}");
            set.retain(|id, _| want.contains(id));
            checked += 1;
        }
    }
    assert_eq!(checked, 365 * 2 + 365 * 2 + 12);
    // 3. what the repositories hold at the end
    let by_start: BTreeMap<String, (String, String)> = runs
        .iter()
        .flat_map(|r| {
            r["snapshots"].as_array().unwrap().iter().map(move |s| {
                (
                    s["id"].as_str().unwrap().to_string(),
                    (
                        r["start"].as_str().unwrap().to_string(),
                        r["kind"].as_str().unwrap().to_string(),
                    ),
                )
            })
        })
        .collect();
    for (env, repo) in [(&p.local, "local"), (&p.offsite, "offsite")] {
        for job in ["db", "app", "uploads"] {
            let snaps = env.json(&["snapshots", "--tag", &format!("job={job}")]);
            let ids: BTreeSet<String> = snaps
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_str().unwrap().to_string())
                .collect();
            let want: BTreeSet<String> = alive
                .get(&(job.to_string(), repo.to_string()))
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            assert_eq!(ids, want, "{job} in {repo}");
            for s in snaps.as_array().unwrap() {
                let (start, kind) = &by_start[s["id"].as_str().unwrap()];
                let t =
                    DateTime::parse_from_rfc3339(s["snapshot"]["time"].as_str().unwrap()).unwrap();
                assert_eq!(t, DateTime::parse_from_rfc3339(start).unwrap(), "{s}");
                assert_eq!(s["snapshot"]["kind"].as_str().unwrap(), kind, "{s}");
            }
        }
        env.assert_check_clean(&format!("{repo} after a year"));
    }

    // 4. the report of the year renders, one chart point per backup and chart
    let page = p.dir.join("report-year.html");
    let o = p.run(&["report", "--html", page.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let backups = runs
        .iter()
        .filter(|r| ["full", "incremental", "differential"].contains(&r["kind"].as_str().unwrap()))
        .count();
    assert_eq!(chromium_status(&page), format!("ok points={}", 3 * backups));
    chromium_screenshot(&page, &p.dir.join("report-year.png"), 1250);
    // to look at afterwards (the plan directory is removed with the test)
    if let Some(keep) = std::env::var_os("SNAP_KEEP_REPORT") {
        let keep = std::path::PathBuf::from(keep);
        std::fs::create_dir_all(&keep).unwrap();
        for f in ["report-year.html", "report-year.png"] {
            std::fs::copy(p.dir.join(f), keep.join(f)).unwrap();
        }
    }
}
