//! The binary-log archive and point-in-time restore on a real MariaDB with binlog on: archived
//! bytes equal the server's files; restores to a time, a position and a GTID, inclusive and
//! exclusive, land on exactly the expected last row; gaps are reported; `--follow` survives
//! FLUSH BINARY LOGS and SIGKILL without losing or duplicating a byte.
//!
//! Each test has its own server (ports 3430-3435; 3420 and 3421 are mysql_hardening's), so binlog positions are its own.

use std::time::{Duration, Instant};

use ::mysql::prelude::Queryable;
use snap::database::binlog::Chain;
use snap::mysql::binlog::events::IN_USE_BYTE;

use crate::common::{Env, code, stderr};
use crate::mysql_common::{Server, server};

const PITR: u16 = 3430;
const FOLLOW: u16 = 3431;
const GAPS: u16 = 3432;

pub(crate) fn env_for(s: &Server) -> Env {
    let _ = s;
    Env::new(&[])
}

/// `snap ARGS` with the MySQL password in the environment (never in argv).
pub(crate) fn snap(env: &Env, args: &[&str]) -> std::process::Output {
    env.cmd(args)
        .env("SNAP_MYSQL_PASSWORD", "snap")
        .output()
        .unwrap()
}

pub(crate) fn snap_ok(env: &Env, args: &[&str]) -> String {
    let o = snap(env, args);
    assert!(
        o.status.success(),
        "snap {args:?}: {}\n{}",
        o.status,
        stderr(&o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn snap_json(env: &Env, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    serde_json::from_str(&snap_ok(env, &a)).unwrap()
}

/// Every binlog file the server has, as the archive holds it, compared with the server's copy.
/// The open file's format description may differ in its in-use flag only (the server clears it
/// in what it sends). Also: the records name each byte once (nothing stored twice).
pub(crate) fn assert_archive_equals_server(env: &Env, s: &Server) {
    let mut repo = env.open_lib();
    let all = repo.snapshots().unwrap();
    let chain = Chain::from_snapshots(&all, &s.archive_source());
    let files = s.binlog_files();
    let open = files.last().cloned();
    let mut recorded = 0u64;
    for (_, snap) in &all {
        if let Some(b) = &snap.binlog {
            recorded += b.segments.iter().map(|g| g.end - g.start).sum::<u64>();
        }
    }
    let mut total = 0u64;
    for f in &files {
        let mut want = s.binlog_bytes(f);
        let got = chain.read_file(&repo, f).unwrap();
        if Some(f) == open.as_ref() && got.len() > IN_USE_BYTE {
            want[IN_USE_BYTE] = got[IN_USE_BYTE];
        }
        assert_eq!(got.len(), want.len(), "{f}: archived length");
        assert!(got == want, "{f}: archived bytes differ from the server's");
        total += got.len() as u64;
    }
    assert_eq!(recorded, total, "archive records name some bytes twice");
}

/// One committed row: its commit second, GTID, and the binlog position its
/// transaction starts at.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub time: i64,
    pub gtid: String,
    pub file: String,
    pub start: u64,
}

/// Waits until the wall clock is 100 ms into a fresh second, so the next commit's binlog
/// timestamp (whole seconds) differs from the previous one's.
pub(crate) fn next_second() {
    let now = chrono::Utc::now();
    let ms = now.timestamp_subsec_millis() as u64;
    std::thread::sleep(Duration::from_millis(1100 - ms));
}

pub(crate) fn max_id(s: &Server, db: &str) -> Option<u64> {
    s.conn()
        .query_first(format!("SELECT MAX(id) FROM {db}.r"))
        .unwrap()
        .flatten()
}

/// Commits a row with `sql` on `c` and records where it went.
pub(crate) fn commit(s: &Server, c: &mut ::mysql::Conn, sql: &str) -> Row {
    next_second();
    let (file, start) = s.master_status();
    // the statement's binlog timestamp is its session's: pinned, so a loaded machine that
    // lets the commit slip into the next second cannot make the recorded time wrong
    let time: i64 = c.query_first("SELECT UNIX_TIMESTAMP()").unwrap().unwrap();
    c.query_drop(format!("SET SESSION timestamp = {time}"))
        .unwrap();
    c.query_drop(sql).unwrap();
    c.query_drop("SET SESSION timestamp = DEFAULT").unwrap();
    let gtid: String = c.query_first("SELECT @@last_gtid").unwrap().unwrap();
    Row {
        time,
        gtid,
        file,
        start,
    }
}

pub(crate) fn iso(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[test]
fn restore_to_time_position_and_gtid_lands_on_the_exact_row() {
    let s = server(PITR);
    s.reset_binlog();
    s.exec("DROP DATABASE IF EXISTS pitr");
    s.exec("CREATE DATABASE pitr");
    s.exec("CREATE TABLE pitr.r (id BIGINT PRIMARY KEY, v VARCHAR(20))");
    s.exec("INSERT INTO pitr.r VALUES (0, 'before the full')");
    let env = env_for(s);
    let url = s.url_nopass();
    snap_ok(
        &env,
        &["backup", "--mysql", &url, "--mysql-database", "pitr"],
    );
    let mut c = s.conn();
    let mut rows = Vec::new();
    rows.push(commit(s, &mut c, "INSERT INTO pitr.r VALUES (1, 'one')"));
    // DDL inside the range
    c.query_drop("ALTER TABLE pitr.r ADD COLUMN note VARCHAR(10) DEFAULT 'n'")
        .unwrap();
    rows.push(commit(
        s,
        &mut c,
        "INSERT INTO pitr.r (id, v) VALUES (2, 'two')",
    ));
    rows.push(commit(
        s,
        &mut c,
        "INSERT INTO pitr.r (id, v) VALUES (3, 'three')",
    ));
    // a temporary table created before a rotation and used after it: statement format logs
    // it, and only a replay in one session still has it after the rotation
    c.query_drop("SET SESSION binlog_format = 'STATEMENT'")
        .unwrap();
    c.query_drop("CREATE TEMPORARY TABLE pitr.tmp (id BIGINT, v VARCHAR(20))")
        .unwrap();
    c.query_drop("INSERT INTO pitr.tmp VALUES (4, 'from tmp')")
        .unwrap();
    c.query_drop("FLUSH BINARY LOGS").unwrap();
    rows.push(commit(
        s,
        &mut c,
        "INSERT INTO pitr.r (id, v) SELECT id, v FROM pitr.tmp",
    ));
    c.query_drop("SET SESSION binlog_format = 'ROW'").unwrap();
    rows.push(commit(
        s,
        &mut c,
        "INSERT INTO pitr.r (id, v) VALUES (5, 'five')",
    ));
    // a quiet second between 5 and 6, for a target strictly between two commits
    std::thread::sleep(Duration::from_secs(2));
    rows.push(commit(
        s,
        &mut c,
        "INSERT INTO pitr.r (id, v) VALUES (6, 'six')",
    ));
    drop(c);
    assert_ne!(rows[2].file, rows[3].file, "the rotation happened");
    snap_ok(&env, &["mysql", "archive", &url]);
    assert_archive_equals_server(&env, s);
    let tl = snap_json(&env, &["mysql", "timeline"]);
    assert_eq!(tl["stretches"].as_array().unwrap().len(), 1, "{tl}");
    assert!(tl["recovery_point"]["full"].is_string(), "{tl}");

    let restore = |args: &[&str]| -> Option<u64> {
        let mut a = vec!["mysql", "restore", "--mysql-url", &url];
        a.extend_from_slice(args);
        snap_ok(&env, &a);
        max_id(s, "pitr")
    };
    let r = |i: usize| &rows[i - 1];
    // time: inclusive takes the row committed in that second, exclusive stops before it
    assert_eq!(restore(&["--until", &iso(r(3).time)]), Some(3));
    assert_eq!(
        restore(&["--until", &iso(r(3).time), "--exclusive"]),
        Some(2)
    );
    // a zone given explicitly, and a time between two commits
    let t4 = chrono::DateTime::from_timestamp(r(4).time, 0)
        .unwrap()
        .with_timezone(&chrono::FixedOffset::east_opt(3600).unwrap())
        .format("%Y-%m-%d %H:%M:%S%:z")
        .to_string();
    assert_eq!(
        restore(&["--until", &t4]),
        Some(4),
        "temp table across rotation"
    );
    // strictly between two commits: inclusive and exclusive both stop after the earlier one
    assert!(r(6).time - r(5).time >= 2, "{:?} {:?}", r(5), r(6));
    assert_eq!(restore(&["--until", &iso(r(5).time + 1)]), Some(5));
    assert_eq!(
        restore(&["--until", &iso(r(5).time + 1), "--exclusive"]),
        Some(5)
    );
    // position: the transaction starting there is included, or (exclusive) not
    let p5 = format!("{}:{}", r(5).file, r(5).start);
    assert_eq!(restore(&["--until-position", &p5]), Some(5));
    assert_eq!(restore(&["--until-position", &p5, "--exclusive"]), Some(4));
    // GTID
    assert_eq!(restore(&["--until-gtid", &r(2).gtid]), Some(2));
    assert_eq!(
        restore(&["--until-gtid", &r(2).gtid, "--exclusive"]),
        Some(1)
    );
    assert_eq!(restore(&["--until-gtid", &r(6).gtid]), Some(6));
    // the DDL was replayed too
    let note: Option<String> = s
        .conn()
        .query_first("SELECT note FROM pitr.r WHERE id = 6")
        .unwrap();
    assert_eq!(note.as_deref(), Some("n"));
    // dry run: the plan, nothing changed
    s.exec("DELETE FROM pitr.r WHERE id = 6");
    let plan = snap_json(
        &env,
        &[
            "mysql",
            "restore",
            "--mysql-url",
            &url,
            "--until-gtid",
            &r(5).gtid,
            "--dry-run",
        ],
    );
    assert_eq!(plan["last_gtid"], r(5).gtid.as_str(), "{plan}");
    // 5 rows, the ALTER, and the statement-logged CREATE TEMPORARY TABLE and its INSERT
    assert_eq!(plan["transactions"].as_u64(), Some(8), "{plan}");
    assert_eq!(max_id(s, "pitr"), Some(5));
    // past the archive's end: refused, naming the newest recoverable moment
    let o = snap(
        &env,
        &[
            "mysql",
            "restore",
            "--mysql-url",
            &url,
            "--until",
            &iso(r(6).time + 3600),
        ],
    );
    assert_eq!(code(&o), 25, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("newest recoverable moment is"),
        "{}",
        stderr(&o)
    );
    let o = snap(
        &env,
        &[
            "mysql",
            "restore",
            "--mysql-url",
            &url,
            "--until-gtid",
            "0-1-999999",
        ],
    );
    assert_eq!(code(&o), 25, "{}", stderr(&o));
}

#[test]
fn follow_survives_flush_and_sigkill_without_loss_or_duplication() {
    let s = server(FOLLOW);
    s.reset_binlog();
    s.exec("DROP DATABASE IF EXISTS fol");
    s.exec("CREATE DATABASE fol");
    s.exec("CREATE TABLE fol.r (id BIGINT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(100))");
    let env = env_for(s);
    let url = s.url_nopass();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, t) = (stop.clone(), s.target());
        std::thread::spawn(move || {
            let mut c = t.connect().unwrap();
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                c.query_drop("INSERT INTO fol.r (v) VALUES (REPEAT('w', 80))")
                    .unwrap();
                n += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            n
        })
    };
    // a clean --follow run across two rotations, stopped with SIGTERM
    let child = env
        .cmd(&[
            "mysql",
            "archive",
            &url,
            "--follow",
            "--flush-every",
            "200ms",
        ])
        .env("SNAP_MYSQL_PASSWORD", "snap")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    s.exec("FLUSH BINARY LOGS");
    // a follower holds the repository lock only while it flushes: forget's exclusive lock
    // gets in between
    snap_ok(
        &env,
        &["forget", "--keep-last", "100000", "--lock-wait", "5s"],
    );
    std::thread::sleep(Duration::from_millis(500));
    s.exec("FLUSH BINARY LOGS");
    std::thread::sleep(Duration::from_millis(800));
    // SAFETY: signals our own child, which has not been waited for yet
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 20 SIGKILLs at varied moments, some right after a rotation
    let mut rng = 12345u64;
    for i in 0..20 {
        let child = env
            .cmd(&[
                "mysql",
                "archive",
                &url,
                "--follow",
                "--flush-every",
                "150ms",
            ])
            .env("SNAP_MYSQL_PASSWORD", "snap")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let wait = 100 + (rng >> 33) % 700;
        if i % 5 == 2 {
            std::thread::sleep(Duration::from_millis(wait / 2));
            s.exec("FLUSH BINARY LOGS");
            std::thread::sleep(Duration::from_millis(wait / 2));
        } else {
            std::thread::sleep(Duration::from_millis(wait));
        }
        let mut child = child;
        // SAFETY: signals our own child, which has not been waited for yet
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        child.wait().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(written > 100, "the writer ran ({written} rows)");
    // the copy tool died with snap: nothing is left replicating
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let rows: Vec<::mysql::Row> = s.conn().query("SHOW SLAVE HOSTS").unwrap();
        if rows.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a replica connection outlived snap"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // one last one-shot run catches up; then every byte is archived exactly once
    snap_ok(&env, &["mysql", "archive", &url]);
    assert_archive_equals_server(&env, s);
    assert!(s.binlog_files().len() >= 7, "{:?}", s.binlog_files());
    let (code_, report, err) = env.check(&["--read-data"]);
    assert_eq!(code_, 0, "{report} {err}");
}

#[test]
fn purged_logs_are_a_reported_gap_and_restores_across_it_are_refused() {
    let s = server(GAPS);
    s.reset_binlog();
    s.exec("DROP DATABASE IF EXISTS gap");
    s.exec("CREATE DATABASE gap");
    s.exec("CREATE TABLE gap.r (id BIGINT PRIMARY KEY)");
    let env = env_for(s);
    let url = s.url_nopass();
    snap_ok(
        &env,
        &["backup", "--mysql", &url, "--mysql-database", "gap"],
    );
    s.exec("INSERT INTO gap.r VALUES (1)");
    let g1: String = s
        .conn()
        .query_first("SELECT @@gtid_binlog_pos")
        .unwrap()
        .unwrap();
    snap_ok(&env, &["mysql", "archive", &url]);
    // logs written and purged while no archive ran
    s.exec("INSERT INTO gap.r VALUES (2)");
    s.exec("FLUSH BINARY LOGS");
    s.exec("INSERT INTO gap.r VALUES (3)");
    s.exec("FLUSH BINARY LOGS");
    let last = s.binlog_files().last().unwrap().clone();
    s.purge_binlogs_to(&last);
    s.exec("INSERT INTO gap.r VALUES (4)");
    let o = snap(&env, &["mysql", "archive", &url, "--warn-purge"]);
    assert_eq!(code(&o), 26, "{}", stderr(&o));
    assert!(stderr(&o).contains("gap (purged)"), "{}", stderr(&o));
    assert!(stderr(&o).contains("never purges"), "{}", stderr(&o));
    // the archive run stored what it could
    let o = snap(&env, &["--json", "mysql", "timeline"]);
    assert_eq!(code(&o), 26, "{}", stderr(&o));
    let tl: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(tl["gaps"][0]["kind"], "purged", "{tl}");
    assert_eq!(tl["stretches"].as_array().unwrap().len(), 2, "{tl}");
    // check says so too: no damage, but exit 26 and a warning naming the gap
    let (code_, report, err) = env.check(&[]);
    assert_eq!(code_, 26, "{report} {err}");
    assert!(err.contains("has a gap (purged)"), "{err}");
    assert_eq!(report["binlog"][0]["gaps"][0]["kind"], "purged", "{report}");
    assert!(
        report["problems"].as_array().unwrap().is_empty(),
        "{report}"
    );
    // the only full is before the gap: a target after it is refused ...
    let g4: String = s
        .conn()
        .query_first("SELECT @@gtid_binlog_pos")
        .unwrap()
        .unwrap();
    let o = snap(
        &env,
        &[
            "mysql",
            "restore",
            "--mysql-url",
            &url,
            "--until-gtid",
            &g4,
            "--dry-run",
        ],
    );
    assert_eq!(code(&o), 25, "{}", stderr(&o));
    // ... one before it is not
    let plan = snap_json(
        &env,
        &[
            "mysql",
            "restore",
            "--mysql-url",
            &url,
            "--until-gtid",
            &g1,
            "--dry-run",
        ],
    );
    assert_eq!(plan["last_gtid"], g1.as_str(), "{plan}");
    // a new full after the gap makes the newer moments recoverable again
    snap_ok(
        &env,
        &["backup", "--mysql", &url, "--mysql-database", "gap"],
    );
    s.exec("INSERT INTO gap.r VALUES (5)");
    let _ = snap(&env, &["mysql", "archive", &url]);
    let g5: String = s
        .conn()
        .query_first("SELECT @@gtid_binlog_pos")
        .unwrap()
        .unwrap();
    snap_ok(
        &env,
        &["mysql", "restore", "--mysql-url", &url, "--until-gtid", &g5],
    );
    assert_eq!(max_id(s, "gap"), Some(5));
}

const INCR: u16 = 3433;

pub(crate) fn snapshot_json(env: &Env, id: &str) -> serde_json::Value {
    let all = snap_json(env, &["snapshots"]);
    all.as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no snapshot {id}"))["snapshot"]
        .clone()
}

#[test]
fn incremental_and_differential_database_backups_restore_like_the_full_plus_replay() {
    let s = server(INCR);
    s.reset_binlog();
    s.exec("DROP DATABASE IF EXISTS inc");
    s.exec("CREATE DATABASE inc");
    s.exec("CREATE TABLE inc.r (id BIGINT PRIMARY KEY, v VARCHAR(20))");
    let env = env_for(s);
    let url = s.url_nopass();
    let backup = |extra: &[&str]| -> String {
        let mut a = vec![
            "--json",
            "backup",
            "--mysql",
            &url,
            "--mysql-database",
            "inc",
        ];
        a.extend_from_slice(extra);
        let v: serde_json::Value = serde_json::from_str(&snap_ok(&env, &a)).unwrap();
        v["id"].as_str().unwrap().to_string()
    };
    let f1 = backup(&[]);
    // a second plain database backup is a full dump, and says so (its files part has a parent)
    let f2 = backup(&[]);
    let s2 = snapshot_json(&env, &f2);
    assert_eq!(s2["kind"], "incremental", "files part: {s2}");
    assert!(s2["mysql"]["kind"].is_null(), "database part is full: {s2}");
    let listing = snap_ok(&env, &["snapshots"]);
    assert!(listing.contains("db full"), "{listing}");
    assert_ne!(f1, f2);
    for i in 1..=3 {
        s.exec(&format!("INSERT INTO inc.r VALUES ({i}, 'a')"));
    }
    let i1 = backup(&["--incremental"]);
    s.exec("UPDATE inc.r SET v = 'b' WHERE id = 2");
    s.exec("FLUSH BINARY LOGS");
    for i in 4..=5 {
        s.exec(&format!("INSERT INTO inc.r VALUES ({i}, 'a')"));
    }
    let i2 = backup(&["--incremental"]);
    s.exec("INSERT INTO inc.r VALUES (6, 'a')");
    let d = backup(&["--differential"]);
    let (j1, j2, jd) = (
        snapshot_json(&env, &i1),
        snapshot_json(&env, &i2),
        snapshot_json(&env, &d),
    );
    assert_eq!(j1["mysql"]["kind"], "incremental", "{j1}");
    assert_eq!(j1["mysql"]["base"], j1["mysql"]["since"], "{j1}");
    assert_eq!(j2["mysql"]["kind"], "incremental", "{j2}");
    assert_eq!(j2["mysql"]["base"], j1["mysql"]["base"], "{j2}");
    assert_eq!(
        j2["mysql"]["binlog_start"].as_str().unwrap(),
        format!(
            "{}:{}",
            j1["mysql"]["binlog_file"].as_str().unwrap(),
            j1["mysql"]["binlog_position"]
        ),
        "an incremental starts where the previous one ended"
    );
    assert_eq!(jd["mysql"]["kind"], "differential", "{jd}");
    assert_eq!(jd["mysql"]["since"], jd["mysql"]["base"], "{jd}");
    assert_eq!(
        jd["mysql"]["binlog_start"], j1["mysql"]["binlog_start"],
        "{jd}"
    );
    let listing = snap_ok(&env, &["snapshots"]);
    assert!(listing.contains("db incremental"), "{listing}");
    assert!(listing.contains("db differential"), "{listing}");
    // the archive snapshots the ranges came from are forgotten: the increments hold the bytes
    let archive: Vec<String> = snap_json(&env, &["snapshots", "--tag", "binlog"])
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    assert!(!archive.is_empty());
    let mut a = vec!["forget"];
    a.extend(archive.iter().map(String::as_str));
    snap_ok(&env, &a);
    let rows = |s: &Server| -> Vec<(u64, String)> {
        s.conn()
            .query("SELECT id, v FROM inc.r ORDER BY id")
            .unwrap()
    };
    snap_ok(&env, &["mysql", "restore", &i1, "--mysql-url", &url]);
    assert_eq!(
        rows(s),
        vec![(1, "a".into()), (2, "a".into()), (3, "a".into())]
    );
    snap_ok(&env, &["mysql", "restore", &i2, "--mysql-url", &url]);
    let after_i2 = rows(s);
    assert_eq!(after_i2.len(), 5);
    assert_eq!(after_i2[1], (2, "b".into()));
    snap_ok(&env, &["mysql", "restore", &d, "--mysql-url", &url]);
    let after_d = rows(s);
    assert_eq!(after_d.len(), 6);
    // the same point reached by replaying from the full
    let end = format!(
        "{}:{}",
        jd["mysql"]["binlog_file"].as_str().unwrap(),
        jd["mysql"]["binlog_position"]
    );
    s.exec("DELETE FROM inc.r");
    snap_ok(
        &env,
        &[
            "mysql",
            "restore",
            "--mysql-url",
            &url,
            "--until-position",
            &end,
        ],
    );
    assert_eq!(rows(s), after_d);
    let (code_, report, err) = env.check(&["--read-data"]);
    assert_eq!(code_, 0, "{report} {err}");
}

const LOST: u16 = 3434;
const REBUILT: u16 = 3435;

/// The recovery-point figure: with `--follow --flush-every 1s` running, a writer commits
/// numbered rows, the server is SIGKILLed and its data directory deleted; a restore from the
/// repository alone into another server brings back all but the last interval's commits.
/// Also prints how long commits took to become durable (median, p99).
#[test]
fn recovery_point_after_losing_the_server() {
    let s = server(LOST);
    s.reset_binlog();
    s.exec("DROP DATABASE IF EXISTS rp");
    s.exec("CREATE DATABASE rp");
    s.exec("CREATE TABLE rp.r (id BIGINT PRIMARY KEY, v VARCHAR(40))");
    let env = env_for(s);
    let url = s.url_nopass();
    snap_ok(&env, &["backup", "--mysql", &url, "--mysql-database", "rp"]);
    let follower = env
        .cmd(&["mysql", "archive", &url, "--follow", "--flush-every", "1s"])
        .env("SNAP_MYSQL_PASSWORD", "snap")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let mut c = s.conn();
    let mut commits: Vec<(u64, String, chrono::DateTime<chrono::Utc>)> = Vec::new();
    let started = Instant::now();
    let mut id = 0u64;
    while started.elapsed() < Duration::from_secs(6) {
        id += 1;
        c.query_drop(format!("INSERT INTO rp.r VALUES ({id}, 'committed')"))
            .unwrap();
        let gtid: String = c.query_first("SELECT @@last_gtid").unwrap().unwrap();
        commits.push((id, gtid, chrono::Utc::now()));
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(c);
    // the server dies with everything on it
    let pid: i32 = std::fs::read_to_string(s.dir.join("mysqld.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: the sandbox server this test started
    unsafe { libc::kill(pid, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(300));
    std::fs::remove_dir_all(s.dir.join("data")).unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    let mut follower = follower;
    // SAFETY: our own child, not yet waited for
    unsafe { libc::kill(follower.id() as i32, libc::SIGTERM) };
    follower.wait().unwrap();
    // commit → durable: the first archive snapshot holding each GTID
    let mut durable: Vec<(u64, u64, String)> = Vec::new(); // (last seq, time_end ms, file)
    for v in snap_json(&env, &["snapshots", "--tag", "binlog"])
        .as_array()
        .unwrap()
    {
        let sn = &v["snapshot"];
        let t = chrono::DateTime::parse_from_rfc3339(sn["time_end"].as_str().unwrap())
            .unwrap()
            .timestamp_millis() as u64;
        for seg in sn["binlog"]["segments"].as_array().unwrap() {
            if let Some(g) = seg["gtid_last"].as_str() {
                let seq: u64 = g.rsplit('-').next().unwrap().parse().unwrap();
                durable.push((seq, t, seg["file"].as_str().unwrap().to_string()));
            }
        }
    }
    durable.sort();
    let mut lat: Vec<i64> = commits
        .iter()
        .filter_map(|(_, g, at)| {
            let seq: u64 = g.rsplit('-').next().unwrap().parse().unwrap();
            durable
                .iter()
                .find(|d| d.0 >= seq)
                .map(|d| d.1 as i64 - at.timestamp_millis())
        })
        .collect();
    lat.sort();
    // restore from the repository alone into another server
    let t = server(REBUILT);
    t.exec("DROP DATABASE IF EXISTS rp");
    let tl = snap_json(&env, &["mysql", "timeline"]);
    let rp = tl["recovery_point"]["position"]
        .as_str()
        .unwrap()
        .to_string();
    snap_ok(
        &env,
        &[
            "mysql",
            "restore",
            "--to",
            &t.url_nopass(),
            "--archive",
            &s.archive_source(),
            "--until-position",
            &rp,
        ],
    );
    let back: u64 = t
        .conn()
        .query_first("SELECT COUNT(*) FROM rp.r")
        .unwrap()
        .unwrap();
    let max: Option<u64> = t
        .conn()
        .query_first("SELECT MAX(id) FROM rp.r")
        .unwrap()
        .unwrap();
    eprintln!(
        "recovery point: {back} of {} committed transactions restored (last id {max:?}); \
         commit -> durable with --flush-every 1s over {} commits: median {} ms, p99 {} ms",
        commits.len(),
        lat.len(),
        lat.get(lat.len() / 2).copied().unwrap_or(-1),
        lat.get(lat.len() * 99 / 100).copied().unwrap_or(-1)
    );
    assert_eq!(
        max,
        Some(back),
        "the restored rows are a prefix of the commits"
    );
    // everything received before the crash was flushed when the copy ended
    assert!(
        back + 5 >= commits.len() as u64,
        "{back} of {} came back",
        commits.len()
    );
}

const SWITCH: u16 = 3436;

/// Another server (its own binlog history, the same file names, the same server_id) takes over
/// the address: the archive refuses to append its bytes to the old server's files, and archives
/// it under a new name when asked.
#[test]
fn another_history_at_the_same_address_is_refused_not_appended() {
    let a = server(SWITCH);
    a.reset_binlog();
    a.exec("DROP DATABASE IF EXISTS sw");
    a.exec("CREATE DATABASE sw");
    a.exec("CREATE TABLE sw.r (id BIGINT PRIMARY KEY)");
    a.exec("INSERT INTO sw.r VALUES (1)");
    let env = env_for(a);
    let url = a.url_nopass();
    snap_ok(&env, &["mysql", "archive", &url]);
    crate::mysql_common::stop_sandbox(&a.dir);
    let bdir = std::path::PathBuf::from(crate::mysql_common::ROOT).join(format!("srv-{SWITCH}-b"));
    let _ = std::fs::remove_dir_all(&bdir);
    let b = crate::mysql_common::sandbox_at(&bdir, SWITCH);
    b.exec("CREATE DATABASE IF NOT EXISTS other");
    b.exec("CREATE TABLE other.big (id BIGINT PRIMARY KEY, v TEXT)");
    b.exec("INSERT INTO other.big SELECT seq, REPEAT('b', 500) FROM other.seq_1_to_200");
    let o = snap(&env, &["mysql", "archive", &url]);
    assert_eq!(code(&o), 26, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("another binary-log history"),
        "{}",
        stderr(&o)
    );
    snap_ok(
        &env,
        &["mysql", "archive", &url, "--archive", "db1-after-failover"],
    );
    let tl = snap_json(
        &env,
        &["mysql", "timeline", "--archive", "db1-after-failover"],
    );
    assert_eq!(tl["stretches"].as_array().unwrap().len(), 1, "{tl}");
    // the first server comes back for later runs of this test
    crate::mysql_common::stop_sandbox(&bdir);
    crate::mysql_common::sandbox_at(&a.dir, SWITCH);
}
