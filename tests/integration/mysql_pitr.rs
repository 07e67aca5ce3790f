//! Consolidation, retention of database chains, `--warn-purge`, point-in-time restores of
//! chosen databases, a purge while following and a GTID hole, on real MariaDB servers with
//! binlog on (ports 3450-3459; the archive tests in `mysql_binlog` use 3430-3436).
//!
//! Each judge is independent of snap's own encoding: rows read back with SQL and the server's
//! `CHECKSUM TABLE … EXTENDED` / `SHOW CREATE` ([`snap::mysql::fingerprint`]).

use std::time::Duration;

use ::mysql::prelude::Queryable;
use snap::mysql::fingerprint::{Fingerprint, diff, fingerprint};

use crate::common::{code, stderr};
use crate::mysql_binlog::{env_for, max_id, snap, snap_json, snap_ok, snapshot_json};
use crate::mysql_common::{Server, server};

const CONSOLIDATE: u16 = 3450;
const SCRATCH: u16 = 3451;
const PURGE: u16 = 3452;
const DATABASES: u16 = 3453;
const PURGED_WHILE_FOLLOWING: u16 = 3454;
const GTID_HOLE: u16 = 3457;

fn fp(s: &Server, db: &str) -> Fingerprint {
    fingerprint(&mut s.conn(), db).unwrap()
}

fn schemas(s: &Server) -> Vec<String> {
    s.conn()
        .query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY 1")
        .unwrap()
}

/// `snap mysql consolidate` makes a full equal to full + replayed increments; a later
/// incremental continues from it; `forget` keeps what kept snapshots need (an increment's full
/// and predecessors, a full's archive) and prune then leaves a repository that restores.
#[test]
fn consolidate_makes_a_verified_full_and_retention_keeps_what_chains_need() {
    let s = server(CONSOLIDATE);
    let scratch = server(SCRATCH);
    s.reset_binlog();
    s.exec("DROP DATABASE IF EXISTS con");
    s.exec("CREATE DATABASE con");
    s.exec("CREATE TABLE con.r (id BIGINT PRIMARY KEY, v VARCHAR(20))");
    s.exec("INSERT INTO con.r VALUES (1, 'full')");
    let env = env_for(s);
    let url = s.url_nopass();
    let scratch_url = scratch.url_nopass();
    let backup = |extra: &[&str]| -> String {
        let mut a = vec![
            "--json",
            "backup",
            "--mysql",
            &url,
            "--mysql-database",
            "con",
        ];
        a.extend_from_slice(extra);
        let v: serde_json::Value = serde_json::from_str(&snap_ok(&env, &a)).unwrap();
        v["id"].as_str().unwrap().to_string()
    };
    let full = backup(&[]);
    s.exec("INSERT INTO con.r VALUES (2, 'i1')");
    let i1 = backup(&["--incremental"]);
    // DDL, a rotation, updates and a deletion inside the chain
    s.exec("ALTER TABLE con.r ADD COLUMN n INT DEFAULT 7");
    s.exec("FLUSH BINARY LOGS");
    s.exec("INSERT INTO con.r (id, v) VALUES (3, 'i2'), (4, 'i2')");
    s.exec("UPDATE con.r SET v = 'changed' WHERE id = 1");
    s.exec("DELETE FROM con.r WHERE id = 3");
    s.exec("CREATE TABLE con.t (k VARCHAR(10) PRIMARY KEY) ENGINE=InnoDB");
    s.exec("INSERT INTO con.t VALUES ('x'), ('y')");
    let i2 = backup(&["--incremental"]);
    let want = fp(s, "con");

    // the live server is never a scratch server
    let o = snap(&env, &["mysql", "consolidate", "--scratch", &url]);
    assert_eq!(code(&o), 30, "{}", stderr(&o));
    assert!(schemas(s).contains(&"con".to_string()));
    // a full is not consolidated
    let o = snap(
        &env,
        &["mysql", "consolidate", &full, "--scratch", &scratch_url],
    );
    assert_eq!(code(&o), 2, "{}", stderr(&o));

    let before = schemas(scratch);
    let out = snap_json(&env, &["mysql", "consolidate", "--scratch", &scratch_url]);
    assert_eq!(out["consolidates"], i2.as_str(), "{out}");
    assert_eq!(out["base"], full.as_str(), "{out}");
    assert!(out["tables_verified"].as_u64().unwrap() >= 2, "{out}");
    assert_eq!(
        schemas(scratch),
        before,
        "the scratch server is left as found"
    );
    let c = out["snapshot"].as_str().unwrap().to_string();
    let (jc, j2) = (snapshot_json(&env, &c), snapshot_json(&env, &i2));
    assert!(jc["mysql"]["kind"].is_null(), "a full: {jc}");
    assert_eq!(jc["mysql"]["consolidates"], i2.as_str(), "{jc}");
    assert_eq!(jc["mysql"]["source"], j2["mysql"]["source"], "{jc}");
    assert_eq!(
        jc["mysql"]["binlog_file"], j2["mysql"]["binlog_file"],
        "{jc}"
    );
    assert_eq!(
        jc["mysql"]["binlog_position"], j2["mysql"]["binlog_position"],
        "{jc}"
    );
    assert!(
        jc["tags"]
            .as_array()
            .unwrap()
            .contains(&"consolidated".into())
    );

    // its content is the chain's: restore it alone and compare with the server's own state
    s.exec("DROP DATABASE con");
    snap_ok(&env, &["mysql", "restore", &c, "--mysql-url", &url]);
    let d = diff(&want, &fp(s, "con"));
    assert!(d.is_empty(), "consolidated full differs: {d:?}");

    // the next incremental continues from the consolidated full
    s.exec("INSERT INTO con.r (id, v) VALUES (5, 'i3')");
    let i3 = backup(&["--incremental"]);
    let j3 = snapshot_json(&env, &i3);
    assert_eq!(j3["mysql"]["base"], c.as_str(), "{j3}");
    let want3 = fp(s, "con");
    let plan = snap_json(
        &env,
        &[
            "mysql",
            "restore",
            "--mysql-url",
            &url,
            "--until-position",
            &format!(
                "{}:{}",
                j3["mysql"]["binlog_file"].as_str().unwrap(),
                j3["mysql"]["binlog_position"]
            ),
            "--exclusive",
            "--dry-run",
        ],
    );
    assert_eq!(
        plan["full"],
        c.as_str(),
        "replay starts at the new full: {plan}"
    );

    // retention: keep the newest database backup only; what it needs stays
    let mysql_group = |v: &serde_json::Value| -> serde_json::Value {
        v["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| {
                g["keep"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|d| d["id"] == i3.as_str())
            })
            .cloned()
            .unwrap()
    };
    let dry = snap_json(&env, &["forget", "--keep-last", "1", "--dry-run"]);
    let g = mysql_group(&dry);
    let ids = |k: &str| -> Vec<String> {
        g[k].as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (keep, remove) = (ids("keep"), ids("remove"));
    assert!(keep.contains(&c), "the increment's full is kept: {g}");
    for old in [&full, &i1, &i2] {
        assert!(remove.contains(old), "{old} may go: {g}");
    }
    let reason = g["keep"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == c.as_str())
        .unwrap()["reasons"]
        .to_string();
    assert!(reason.contains("needed by"), "{reason}");
    // forgetting the needed full by id is refused
    let o = snap(&env, &["forget", &c]);
    assert_eq!(code(&o), 32, "{}", stderr(&o));
    // for real, then prune: the chain and the archive after the new full still restore
    snap_ok(&env, &["forget", "--keep-last", "1"]);
    let left: Vec<String> = snap_json(&env, &["snapshots"])
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    for old in [&full, &i1, &i2] {
        assert!(!left.contains(old), "{old} was forgotten");
    }
    assert!(left.contains(&c) && left.contains(&i3));
    snap_ok(&env, &["prune"]);
    let (code_, report, err) = env.check(&["--read-data"]);
    assert_eq!(code_, 0, "{report} {err}");
    s.exec("DROP DATABASE con");
    snap_ok(&env, &["mysql", "restore", &i3, "--mysql-url", &url]);
    let d = diff(&want3, &fp(s, "con"));
    assert!(d.is_empty(), "incremental on the consolidated full: {d:?}");
    // and a point in time after it, through the kept archive
    s.exec("INSERT INTO con.r (id, v) VALUES (6, 'after')");
    snap_ok(&env, &["mysql", "archive", &url]);
    let gtid: String = s
        .conn()
        .query_first("SELECT @@gtid_binlog_pos")
        .unwrap()
        .unwrap();
    s.exec("DROP DATABASE con");
    snap_ok(
        &env,
        &[
            "mysql",
            "restore",
            "--mysql-url",
            &url,
            "--until-gtid",
            &gtid,
        ],
    );
    assert_eq!(max_id(s, "con"), Some(6));
}

/// `--warn-purge` on a server that purges after an hour: the oldest log not yet archived, when
/// it closed, and how long the server keeps it.
#[test]
fn warn_purge_says_how_long_until_unarchived_logs_are_purged() {
    let s = server(PURGE);
    s.reset_binlog();
    s.exec("SET GLOBAL binlog_expire_logs_seconds = 3600");
    s.exec("DROP DATABASE IF EXISTS wp");
    s.exec("CREATE DATABASE wp");
    s.exec("CREATE TABLE wp.r (id BIGINT PRIMARY KEY)");
    let env = env_for(s);
    let url = s.url_nopass();
    s.exec("INSERT INTO wp.r VALUES (1)");
    let first = s.binlog_files()[0].clone();
    s.exec("FLUSH BINARY LOGS");
    let closed = chrono::Utc::now().timestamp();
    s.exec("INSERT INTO wp.r VALUES (2)");
    let run = |env: &crate::common::Env| -> serde_json::Value {
        let o = snap(env, &["--json", "mysql", "archive", &url, "--warn-purge"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let line = stderr(&o).lines().next().unwrap_or_default().to_string();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {}", stderr(&o)))
    };
    let w = run(&env);
    s.exec("SET GLOBAL binlog_expire_logs_seconds = 0");
    assert_eq!(w["expire_seconds"], 3600, "{w}");
    assert_eq!(w["oldest_unarchived"], first.as_str(), "{w}");
    let left = w["seconds_left"].as_i64().unwrap();
    let want = 3600 - (chrono::Utc::now().timestamp() - closed);
    assert!((want - 5..=3600).contains(&left), "{left} vs {want}: {w}");
    // everything closed is archived now, and the server purges nothing by age
    let w = run(&env);
    assert!(w["oldest_unarchived"].is_null(), "{w}");
    assert_eq!(w["expire_seconds"], 0, "{w}");
}

/// `--until* --database DB` loads DB from the full and replays only DB's events; the other
/// database on the server is not touched. `--table` and `--rename` are refused with `--until*`.
#[test]
fn point_in_time_restore_of_chosen_databases_leaves_the_others_alone() {
    let s = server(DATABASES);
    s.reset_binlog();
    for db in ["pa", "pb", "pc"] {
        s.exec(&format!("DROP DATABASE IF EXISTS {db}"));
        s.exec(&format!("CREATE DATABASE {db}"));
        s.exec(&format!("CREATE TABLE {db}.r (id BIGINT PRIMARY KEY)"));
        s.exec(&format!("INSERT INTO {db}.r VALUES (1)"));
    }
    let env = env_for(s);
    let url = s.url_nopass();
    snap_ok(&env, &["backup", "--mysql", &url]);
    for db in ["pa", "pb", "pc"] {
        s.exec(&format!("INSERT INTO {db}.r VALUES (2)"));
    }
    // a transaction touching two databases
    s.exec("INSERT INTO pa.r SELECT 3 FROM pc.r WHERE id = 1");
    s.exec("FLUSH BINARY LOGS");
    for db in ["pa", "pb", "pc"] {
        s.exec(&format!("INSERT INTO {db}.r VALUES (4)"));
    }
    snap_ok(&env, &["mysql", "archive", &url]);
    let gtid: String = s
        .conn()
        .query_first("SELECT @@gtid_binlog_pos")
        .unwrap()
        .unwrap();
    // the local state of pb, which the restore must not touch
    s.exec("DELETE FROM pb.r");
    s.exec("INSERT INTO pb.r VALUES (99)");
    s.exec("DROP DATABASE pa");
    s.exec("DROP DATABASE pc");
    snap_ok(
        &env,
        &[
            "mysql",
            "restore",
            "--mysql-url",
            &url,
            "--until-gtid",
            &gtid,
            "--database",
            "pa",
            "--database",
            "pc",
        ],
    );
    let ids = |db: &str| -> Vec<u64> {
        s.conn()
            .query(format!("SELECT id FROM {db}.r ORDER BY id"))
            .unwrap()
    };
    assert_eq!(ids("pa"), vec![1, 2, 3, 4]);
    assert_eq!(ids("pc"), vec![1, 2, 4]);
    assert_eq!(ids("pb"), vec![99], "another database was touched");
    for extra in [["--table", "pa.r"], ["--rename", "pa:px"]] {
        let mut a = vec![
            "mysql",
            "restore",
            "--mysql-url",
            &url,
            "--until-gtid",
            &gtid,
        ];
        a.extend_from_slice(&extra);
        let o = snap(&env, &a);
        assert_eq!(code(&o), 2, "{extra:?}: {}", stderr(&o));
    }
    assert_eq!(ids("pb"), vec![99]);
    // a statement without a default database cannot be attributed to one: refused while the
    // range also changes pb, before anything changes
    s.exec("CREATE TABLE pa.t2 (x INT)");
    s.exec("INSERT INTO pa.r VALUES (5)");
    s.exec("INSERT INTO pb.r VALUES (5)");
    snap_ok(&env, &["mysql", "archive", &url]);
    let o = snap(
        &env,
        &[
            "mysql",
            "restore",
            "--mysql-url",
            &url,
            "--until-position",
            &{
                let (f, p) = s.master_status();
                format!("{f}:{p}")
            },
            "--database",
            "pa",
        ],
    );
    assert_eq!(code(&o), 25, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("without a default database"),
        "{}",
        stderr(&o)
    );
    assert_eq!(ids("pa"), vec![1, 2, 3, 4, 5], "nothing changed");
    assert_eq!(ids("pb"), vec![5, 99]);
}

/// Direct children of process `pid` (the follower's copy tool).
fn children(pid: u32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .collect()
}

/// A purge while `--follow` runs: the follower is frozen (SIGSTOP, its copy tool too), the
/// server drops its replica connection, rotates and purges the file the follower was in; once
/// thawed, the follower reconnects, reports the gap at once, records it, and goes on archiving
/// from the server's oldest log. `check` and `timeline` show the gap; what was archived is
/// byte-exact.
#[test]
fn a_purge_while_following_is_a_reported_gap_and_archiving_goes_on() {
    let s = server(PURGED_WHILE_FOLLOWING);
    s.reset_binlog();
    s.exec("DROP DATABASE IF EXISTS pf");
    s.exec("CREATE DATABASE pf");
    s.exec("CREATE TABLE pf.r (id BIGINT PRIMARY KEY)");
    let env = env_for(s);
    let url = s.url_nopass();
    let mut follower = env
        .cmd(&[
            "mysql",
            "archive",
            &url,
            "--follow",
            "--flush-every",
            "200ms",
        ])
        .env("SNAP_MYSQL_PASSWORD", "snap")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    s.exec("INSERT INTO pf.r VALUES (1)");
    std::thread::sleep(Duration::from_millis(1000));
    let frozen: Vec<i32> = std::iter::once(follower.id() as i32)
        .chain(children(follower.id()))
        .collect();
    assert!(
        frozen.len() >= 2,
        "the follower runs its copy tool: {frozen:?}"
    );
    for p in &frozen {
        // SAFETY: our own child and its child
        unsafe { libc::kill(*p, libc::SIGSTOP) };
    }
    let dumps: Vec<u64> = s
        .conn()
        .query("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'")
        .unwrap();
    assert!(!dumps.is_empty(), "the follower is a replica");
    for d in dumps {
        s.exec(&format!("KILL {d}"));
    }
    s.exec("INSERT INTO pf.r VALUES (2)");
    s.exec("FLUSH BINARY LOGS");
    s.exec("INSERT INTO pf.r VALUES (3)");
    s.exec("FLUSH BINARY LOGS");
    let last = s.binlog_files().last().unwrap().clone();
    // a file is purgeable once its binlog checkpoint has passed: the helper retries
    s.purge_binlogs_to(&last);
    assert_eq!(s.binlog_files(), vec![last.clone()], "the purge happened");
    for p in frozen.iter().rev() {
        // SAFETY: as above
        unsafe { libc::kill(*p, libc::SIGCONT) };
    }
    s.exec("INSERT INTO pf.r VALUES (4)");
    std::thread::sleep(Duration::from_millis(4000));
    s.exec("INSERT INTO pf.r VALUES (5)");
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: our own child, not yet waited for
    unsafe { libc::kill(follower.id() as i32, libc::SIGTERM) };
    let mut err = String::new();
    std::io::Read::read_to_string(follower.stderr.as_mut().unwrap(), &mut err).unwrap();
    let status = follower.wait().unwrap();
    assert_eq!(status.code(), Some(26), "{err}");
    assert!(err.contains("gap (purged)"), "{err}");
    // archiving went on after the gap: the surviving file is archived whole and exact
    let mut repo = env.open_lib();
    let all = repo.snapshots().unwrap();
    let chain = snap::database::binlog::Chain::from_snapshots(&all, &s.archive_source());
    let got = chain.read_file(&repo, &last).unwrap();
    let mut want = s.binlog_bytes(&last);
    let flag = snap::mysql::binlog::events::IN_USE_BYTE;
    want[flag] = got[flag];
    assert!(
        got == want,
        "{last} archived after the gap differs from the server's"
    );
    let (code_, report, cerr) = env.check(&[]);
    assert_eq!(code_, 26, "{report} {cerr}");
    assert_eq!(report["binlog"][0]["gaps"][0]["kind"], "purged", "{report}");
    let o = snap(&env, &["--json", "mysql", "timeline"]);
    assert_eq!(code(&o), 26, "{}", stderr(&o));
}

/// A GTID hole: a file whose GTID_LIST (the server's state when it began) is not the state the
/// archive reached at the end of the file before. Made on one real server by deleting a GTID
/// domain from its binlog state (`FLUSH BINARY LOGS DELETE_DOMAIN_ID`), which is the mismatch a
/// failover to a server with another history shows. Recorded and reported (exit 26) by
/// archive, timeline and check; a restore across it is refused (exit 25).
#[test]
fn a_gtid_hole_is_recorded_reported_and_not_replayed_across() {
    let s = server(GTID_HOLE);
    s.reset_binlog();
    s.exec("DROP DATABASE IF EXISTS gh");
    s.exec("CREATE DATABASE gh");
    s.exec("CREATE TABLE gh.r (id BIGINT PRIMARY KEY)");
    let env = env_for(s);
    let url = s.url_nopass();
    snap_ok(&env, &["backup", "--mysql", &url, "--mysql-database", "gh"]);
    let mut c = s.conn();
    c.query_drop("SET SESSION gtid_domain_id = 5").unwrap();
    c.query_drop("INSERT INTO gh.r VALUES (1)").unwrap();
    c.query_drop("SET SESSION gtid_domain_id = 0").unwrap();
    c.query_drop("INSERT INTO gh.r VALUES (2)").unwrap();
    drop(c);
    snap_ok(&env, &["mysql", "archive", &url]);
    s.exec("FLUSH BINARY LOGS");
    s.exec("FLUSH BINARY LOGS");
    snap_ok(&env, &["mysql", "archive", &url]);
    // everything holding domain 5 is archived; the server forgets the domain
    let last = s.binlog_files().last().unwrap().clone();
    s.purge_binlogs_to(&last);
    s.exec("FLUSH BINARY LOGS DELETE_DOMAIN_ID = (5)");
    s.exec("INSERT INTO gh.r VALUES (3)");
    let o = snap(&env, &["mysql", "archive", &url]);
    assert_eq!(code(&o), 26, "{}", stderr(&o));
    assert!(stderr(&o).contains("gap (gtid-hole)"), "{}", stderr(&o));
    let o = snap(&env, &["--json", "mysql", "timeline"]);
    assert_eq!(code(&o), 26, "{}", stderr(&o));
    let tl: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(tl["gaps"][0]["kind"], "gtid-hole", "{tl}");
    let (code_, report, err) = env.check(&[]);
    assert_eq!(code_, 26, "{report} {err}");
    assert!(err.contains("gap (gtid-hole)"), "{err}");
    let gtid: String = s
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
            &gtid,
            "--dry-run",
        ],
    );
    assert_eq!(code(&o), 25, "{}", stderr(&o));
    assert!(stderr(&o).contains("gap"), "{}", stderr(&o));
}
