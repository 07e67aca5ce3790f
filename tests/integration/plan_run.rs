//! `snap run` on real repositories: a job at once (`--now`) with its copy, the run log and `snap
//! log`; a job overlapping itself in two processes (the second is skipped and logged; a holder
//! killed with SIGKILL does not block the next run); a failing database source (retried as
//! transient, then the failure hook and notifications to a command, a real HTTP listener and a
//! fake sendmail); and the daemon under real SIGHUP and SIGTERM.

use std::io::BufRead;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{PASSWORD, code, make_files};
use crate::plan_common::{DEAD_DB_PORT, Listener, PlanDir, read};

fn files_job(p: &PlanDir, src: &std::path::Path, extra: &str) -> String {
    format!(
        "version: 1\n{}jobs:\n  app:\n    class: important\n    repository: local\n    copy_to: [offsite]\n    paths: [{}]\n    schedule:\n      full: \"0 2 * * 0\"\n      incremental: \"0 2 * * *\"\n{extra}",
        p.repositories(),
        src.display()
    )
}

#[test]
fn run_now_backs_up_copies_and_logs() {
    let p = PlanDir::new();
    let src = p.dir.join("src");
    make_files(&src, 0..5, 10_000);
    let envdump = p.dir.join("hook-env");
    p.write(&files_job(
        &p,
        &src,
        &format!(
            "    hooks:\n      before: [\"env > {}\"]\n",
            envdump.display()
        ),
    ));
    let o = p
        .cmd(&["run", "--now", "app"])
        .env("SNAP_PASSWORD", "must-not-leak")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let runs = p.runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let r = &runs[0];
    assert_eq!(r["job"], "app");
    assert_eq!(r["class"], "important");
    assert_eq!(r["result"], "success", "{r}");
    assert_eq!(r["repositories"], serde_json::json!(["local", "offsite"]));
    // both snapshots exist where the record says, tagged with the job and class
    let local = p.local.json(&["snapshots"]);
    let offsite = p.offsite.json(&["snapshots"]);
    let id_of = |v: &serde_json::Value| {
        v.as_array().unwrap().last().unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(r["snapshots"][0]["id"].as_str().unwrap(), id_of(&local));
    assert_eq!(r["snapshots"][1]["id"].as_str().unwrap(), id_of(&offsite));
    let mut tags: Vec<String> =
        serde_json::from_value(local[0]["snapshot"]["tags"].clone()).unwrap();
    tags.sort();
    assert_eq!(tags, ["class=important", "job=app"], "{local}");
    assert!(r["bytes_read"].as_u64().unwrap() >= 50_000, "{r}");
    assert_eq!(r["files"], 5);
    // retention ran once for each repository, and only once today
    assert_eq!(r["retention"].as_array().unwrap().len(), 2, "{r}");
    let o = p.run(&["run", "--now", "app"]);
    assert_eq!(code(&o), 0);
    let runs = p.runs();
    assert_eq!(runs.len(), 2);
    assert!(
        runs[1]["retention"].as_array().is_none_or(|a| a.is_empty()),
        "{}",
        runs[1]
    );
    // the hook saw neither a password nor its variables
    let env = read(&envdump);
    assert!(env.contains("SNAP_JOB=app"), "{env}");
    assert!(
        !env.contains(PASSWORD) && !env.contains("must-not-leak"),
        "{env}"
    );
    // snap log: a table, filters, JSON
    let o = p.run(&["log", "--job", "app"]);
    let table = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(
        table.lines().filter(|l| l.contains(" app ")).count(),
        2,
        "{table}"
    );
    let o = p.run(&["--json", "log", "--job", "nope"]);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap(),
        serde_json::json!([])
    );
    let o = p.run(&["--json", "log", "--since", "2999-01-01"]);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap(),
        serde_json::json!([])
    );
    let o = p.run(&["--json", "log", "--since", "1d"]);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&o.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // the log is private
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(p.dir.join("backup.runs.jsonl"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
    p.local.assert_check_clean("after snap run");
    p.offsite.assert_check_clean("after snap run");
}

/// Waits for `f` (up to 60 s).
fn wait_for(what: &str, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn overlapping_run_is_skipped_across_processes() {
    let p = PlanDir::new();
    let src = p.dir.join("src");
    make_files(&src, 0..3, 1000);
    let started = p.dir.join("started");
    let release = p.dir.join("release");
    // the before hook runs under the job lock: it holds the first run until told to go on
    p.write(&files_job(
        &p,
        &src,
        &format!(
            "    hooks:\n      before: [\"touch {} && while [ ! -e {} ]; do sleep 0.05; done\"]\n",
            started.display(),
            release.display()
        ),
    ));
    let mut first = p
        .cmd(&["run", "--now", "app"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the first run's hook", || started.exists());
    // a second process (as from the next cron minute) finds the job running: skipped, logged
    let o = p.run(&["run", "--now", "app"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(code(&o), 34, "{err}");
    assert!(err.contains("skipped"), "{err}");
    let runs = p.runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["result"], "skipped");
    assert!(
        runs[0]["error"].as_str().unwrap().contains("job \"app\""),
        "{}",
        runs[0]
    );
    std::fs::write(&release, "").unwrap();
    assert!(first.wait().unwrap().success());
    let runs = p.runs();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1]["result"], "success", "{}", runs[1]);
    assert_eq!(p.local.json(&["snapshots"]).as_array().unwrap().len(), 1);
    // a run killed with SIGKILL leaves its job lock behind; the next run passes the stale lock
    std::fs::remove_file(&started).unwrap();
    std::fs::remove_file(&release).unwrap();
    let mut killed = p
        .cmd(&["run", "--now", "app"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the run to be killed", || started.exists());
    killed.kill().unwrap();
    killed.wait().unwrap();
    // (its hook's shell lives on, waiting for `release`; let it end)
    std::fs::write(&release, "").unwrap();
    let o = p.run(&["run", "--now", "app"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(p.runs().last().unwrap()["result"], "success");
    p.local.assert_check_clean("after a killed run");
}

#[test]
fn failing_source_retries_then_hooks_and_notifies() {
    let p = PlanDir::new();
    let port = 9500;
    let listener = Listener::start(port);
    let hook_out = p.dir.join("on-failure");
    let cmd_out = p.dir.join("notify-cmd");
    p.write(&format!(
        "version: 1\n{}defaults:\n  retries: 1\n  retry_backoff: 1s\njobs:\n  db:\n    class: critical\n    repository: local\n    mysql:\n      url: mysql://snap@127.0.0.1:{DEAD_DB_PORT}\n      password_env: PLAN_TEST_DB_PASSWORD\n    schedule:\n      full: \"0 1 * * *\"\n    hooks:\n      on_failure: [\"echo \\\"$SNAP_JOB $SNAP_RESULT\\\" > {}\"]\n    notify:\n      - on: [failure]\n        command: \"cat > {}; echo >> {}; echo \\\"$SNAP_RUN\\\" >> {}\"\n      - on: [failure, success]\n        webhook: http://127.0.0.1:{port}/hook\n      - on: [failure]\n        email: ops@example.com\n      - on: [success]\n        email: never@example.com\n",
        p.repositories(),
        hook_out.display(),
        cmd_out.display(),
        cmd_out.display(),
        cmd_out.display(),
    ));
    let o = p
        .cmd(&["run", "--now", "db"])
        .env("PLAN_TEST_DB_PASSWORD", "db-secret-xyz")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(code(&o), 35, "{err}");
    assert!(err.contains("retry 1/1"), "{err}");
    let runs = p.runs();
    assert_eq!(runs.len(), 1);
    let r = &runs[0];
    assert_eq!(r["result"], "failure");
    assert_eq!(r["retries"], 1);
    assert!(r["error"].as_str().unwrap().contains("exited 20"), "{r}");
    assert!(p.local.json(&["snapshots"]).as_array().unwrap().is_empty());
    assert_eq!(read(&hook_out).trim(), "db failure");
    // the command got the record on stdin and in $SNAP_RUN
    let got = read(&cmd_out);
    let mut lines = got.lines();
    for l in [lines.next().unwrap(), lines.next().unwrap()] {
        let j: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(j["job"], "db");
        assert_eq!(j["result"], "failure");
    }
    // the webhook: one POST of the JSON
    let reqs = listener.requests.lock().unwrap().clone();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert!(reqs[0].0.starts_with("POST /hook "), "{}", reqs[0].0);
    assert!(
        reqs[0]
            .0
            .to_ascii_lowercase()
            .contains("content-type: application/json")
    );
    let j: serde_json::Value = serde_json::from_str(&reqs[0].1).unwrap();
    assert_eq!(j["kind"], "full");
    // e-mail: only the failure address, through sendmail -t
    let mails = p.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(
        mails[0].starts_with("args: -t -oi\nTo: ops@example.com\n"),
        "{}",
        mails[0]
    );
    assert!(
        mails[0].contains("Subject: snap: job db full failure"),
        "{}",
        mails[0]
    );
    for text in [
        got.as_str(),
        &reqs[0].1,
        &mails[0],
        &read(&p.dir.join("backup.runs.jsonl")),
    ] {
        assert!(
            !text.contains("db-secret-xyz") && !text.contains(PASSWORD),
            "{text}"
        );
    }
}

#[test]
fn daemon_reloads_on_sighup_and_stops_on_sigterm() {
    let p = PlanDir::new();
    let src = p.dir.join("src");
    make_files(&src, 0..2, 100);
    let plan = |name: &str, cron: &str| {
        format!(
            "version: 1\n{}jobs:\n  {name}:\n    class: normal\n    repository: local\n    paths: [{}]\n    schedule:\n      full: \"{cron}\"\n",
            p.repositories(),
            src.display()
        )
    };
    p.write(&plan("yearly", "0 0 1 1 *"));
    let mut d = p
        .cmd(&["run", "--daemon"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let err = d.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let expect = |want: &str| -> String {
        let start = Instant::now();
        loop {
            let left = Duration::from_secs(30).saturating_sub(start.elapsed());
            let l = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("daemon did not say {want:?}"));
            if l.contains(want) {
                return l;
            }
        }
    };
    let first = expect("snap: next:");
    assert!(first.contains("yearly full at "), "{first}");
    let pid = d.id() as i32;
    // SIGHUP with a changed plan: the new job is what comes next
    p.write(&plan("often", "*/5 * * * *"));
    // SAFETY: kill sends a signal to the child this test started.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    expect("snap: reloaded");
    let next = expect("snap: next:");
    assert!(next.contains("often full at "), "{next}");
    // SIGHUP with a broken plan: refused, the old plan stays
    std::fs::write(&p.config, "version: 1\njobs: {oops\n").unwrap();
    unsafe { libc::kill(pid, libc::SIGHUP) };
    let refused = expect("reload refused");
    assert!(refused.contains("backup.yml:"), "{refused}");
    let next = expect("snap: next:");
    assert!(next.contains("often full"), "{next}");
    // SIGTERM: a clean stop
    unsafe { libc::kill(pid, libc::SIGTERM) };
    expect("daemon stopped");
    let status = d.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

/// A database job of the critical class: a dump, then a binary-log run after new commits. The
/// run log records the binlog run's snapshots and the commit time of the newest archived event,
/// and `snap metrics` reports that event time (the recovery point a restore can reach), not the
/// time the run ended.
#[test]
fn binlog_runs_record_the_newest_archived_event() {
    let db: &'static crate::mysql_common::Server =
        crate::mysql_common::server(crate::plan_common::DB_PORT);
    db.exec("CREATE DATABASE IF NOT EXISTS planlog");
    db.exec("CREATE TABLE IF NOT EXISTS planlog.t (id INT PRIMARY KEY)");
    let p = PlanDir::new();
    p.write(&format!(
        "version: 1\n{}jobs:\n  db:\n    class: critical\n    repository: local\n    mysql:\n      url: mysql://snap@127.0.0.1:{}\n      password_file: {}\n      databases: [planlog]\n    schedule:\n      full: \"0 1 * * *\"\n    binlog:\n      schedule: \"*/15 * * * *\"\n",
        p.repositories(),
        crate::plan_common::DB_PORT,
        p.dir.join("mysql.pass").display()
    ));
    let o = p.run(&["run", "--now", "db", "--kind", "full"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    // The event's time is its statement's start, in whole seconds: between these two.
    let now = || -> i64 {
        use ::mysql::prelude::Queryable;
        db.conn()
            .query_first("SELECT UNIX_TIMESTAMP()")
            .unwrap()
            .unwrap()
    };
    let before = now();
    // a new row every time (the server outlives a test run: a REPLACE of the same row changes
    // nothing and logs nothing)
    db.exec("INSERT INTO planlog.t SELECT COALESCE(MAX(id), 0) + 1 FROM planlog.t");
    let after = now();
    std::thread::sleep(Duration::from_millis(2100));
    let o = p.run(&["run", "--now", "db", "--kind", "binlog"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let runs = p.runs();
    let b = runs.last().unwrap();
    assert_eq!(b["kind"], "binlog", "{b}");
    assert!(!b["snapshots"].as_array().unwrap().is_empty(), "{b}");
    let event = chrono::DateTime::parse_from_rfc3339(b["last_event"].as_str().unwrap()).unwrap();
    assert!(
        (before..=after).contains(&event.timestamp()),
        "{event} not in {before}..={after}: {runs:?}"
    );
    let end = chrono::DateTime::parse_from_rfc3339(b["end"].as_str().unwrap()).unwrap();
    assert!(end.timestamp() >= event.timestamp() + 2, "{b}");
    let dir = p.dir.join("textfile");
    let o = p.run(&["metrics", "--textfile", dir.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let text = read(&dir.join("snap.prom"));
    let line = format!(
        "snap_job_last_binlog_event_timestamp_seconds{{job=\"db\",class=\"critical\"}} {}",
        event.timestamp()
    );
    assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
}
