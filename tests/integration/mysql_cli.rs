//! The database half through the `snap` binary: one snapshot holding files and a dump, browsing
//! it, restoring with a safety snapshot and rollback, the verification drill, the skip when a
//! backup already runs, and the exit codes of the error cases. Real MariaDB servers throughout.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ::mysql::prelude::Queryable;
use snap::mysql::fingerprint;

use crate::common::{Env, assert_same_tree};
use crate::mysql_common::{Bank, Server, Transfers, scratch, server};

/// Fixture source for these tests (its own server: the skip test holds its backup lock).
const CLI_SOURCE: u16 = 3414;
/// Restore target and scratch server.
const CLI_TARGET: u16 = 3415;
/// Blocked on purpose by the lock give-up test.
const CLI_LOCKING: u16 = 3416;

/// One CLI database test at a time: they share servers and the server-wide backup lock.
static SERIAL: Mutex<()> = Mutex::new(());

fn source() -> &'static Server {
    static LOADED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let s = server(CLI_SOURCE);
    LOADED.get_or_init(|| {
        s.exec("DROP DATABASE IF EXISTS snapfix");
        s.source(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mysql-fixture.sql"),
            None,
        );
    });
    s
}

fn fp(s: &Server, db: &str) -> fingerprint::Fingerprint {
    fingerprint::fingerprint(&mut s.conn(), db).unwrap()
}

fn assert_same_db(a: &Server, adb: &str, b: &Server, bdb: &str) {
    let d = fingerprint::diff(&fp(a, adb), &fp(b, bdb));
    assert!(d.is_empty(), "{adb} and {bdb} differ:\n{}", d.join("\n"));
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn files_and_database_in_one_snapshot() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (src, dst) = (source(), server(CLI_TARGET));
    let env = Env::new(&[]);
    let files = env.path("files");
    std::fs::create_dir_all(files.join("etc")).unwrap();
    std::fs::write(files.join("etc/app.conf"), "listen 80\n").unwrap();
    let out = env.backup(&[
        files.to_str().unwrap(),
        "--mysql",
        &src.url(),
        "--mysql-database",
        "snapfix",
    ]);
    let m = &out["snapshot"]["mysql"];
    assert!(m["tables"].as_u64().unwrap() >= 10, "{m}");
    assert!(m["rows"].as_u64().unwrap() > 1000, "{m}");
    assert!(m["lock_ms"].as_f64().unwrap() < 1000.0, "{m}");
    assert!(m["binlog_position"].as_u64().is_some(), "{m}");
    let id = out["id"].as_str().unwrap();

    // Browse: the dump sits beside the files, and its streams are plain files.
    let top = env.ok(&["ls", id]);
    assert!(top.lines().any(|l| l.ends_with("/mysql")), "{top}");
    let all = env.ok(&["ls", id, "--recursive"]);
    assert!(all.contains("/mysql/snapfix/accounts.rows"), "{all}");
    assert!(all.contains("app.conf"), "{all}");
    let manifest: serde_json::Value =
        serde_json::from_str(&env.ok(&["cat", id, "mysql/manifest.json"])).unwrap();
    assert_eq!(manifest["databases"][0]["name"], "snapfix");
    let schema = env.ok(&["cat", id, "mysql/snapfix/accounts.schema.sql"]);
    assert!(schema.contains("CREATE TABLE"), "{schema}");

    // The dump restores into another server identical to its source, by fingerprint.
    dst.exec("DROP DATABASE IF EXISTS cli_copy");
    let o = env.run(&[
        "mysql",
        "restore",
        id,
        "--to",
        &dst.url(),
        "--rename",
        "snapfix:cli_copy",
    ]);
    assert!(o.status.success(), "restore failed: {}", stderr(&o));
    assert_same_db(src, "snapfix", dst, "cli_copy");

    // And the file part of the same snapshot restores identical.
    let target = env.path("restored");
    env.ok(&[
        "restore",
        &format!("{id}:{}", files.display()),
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_same_tree(&files, &target);
}

#[test]
fn second_backup_of_the_same_server_is_skipped() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let src = source();
    let env = Env::new(&[]);
    // A running snap database backup holds this server-wide lock for its whole dump.
    let mut holder = src.conn();
    let got: Option<i64> = holder
        .query_first("SELECT GET_LOCK('snap.backup', 0)")
        .unwrap();
    assert_eq!(got, Some(1));
    let o = env.run(&[
        "backup",
        "--mysql",
        &src.url(),
        "--mysql-database",
        "snapfix",
    ]);
    assert_eq!(o.status.code(), Some(23), "{}", stderr(&o));
    assert!(stderr(&o).contains("already running"), "{}", stderr(&o));
    let snaps = env.json(&["snapshots"]);
    assert_eq!(
        snaps.as_array().unwrap().len(),
        0,
        "a skipped backup wrote {snaps}"
    );
    // Released explicitly: a dropped connection frees the lock only once the server notices.
    holder.query_drop("DO RELEASE_LOCK('snap.backup')").unwrap();
    env.ok(&[
        "backup",
        "--mysql",
        &src.url(),
        "--mysql-database",
        "snapfix",
    ]);
}

/// A snapshot whose dump manifest records a wrong checksum for `accounts`: made by restoring a
/// real dump's streams as files, editing the manifest, and backing the directory up again.
fn tampered_snapshot(env: &Env, good: &str) -> String {
    let dir = env.path("tamper");
    env.ok(&[
        "restore",
        &format!("{good}:/mysql"),
        "--target",
        dir.join("mysql").to_str().unwrap(),
    ]);
    let mpath = dir.join("mysql/manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&mpath).unwrap()).unwrap();
    let tables = m["databases"][0]["tables"].as_array_mut().unwrap();
    let t = tables.iter_mut().find(|t| t["name"] == "accounts").unwrap();
    t["checksum"] = serde_json::Value::String("0".repeat(64));
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let o = env
        .cmd(&["--json", "backup", "."])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["id"].as_str().unwrap().to_string()
}

#[test]
fn failed_verification_rolls_back_and_drill_alerts() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (src, dst) = (source(), server(CLI_TARGET));
    let env = Env::new(&[]);
    let good = env.backup(&["--mysql", &src.url(), "--mysql-database", "snapfix"]);
    let good = good["id"].as_str().unwrap().to_string();

    // The live database on the target: the backup's data plus today's change.
    dst.exec("DROP DATABASE IF EXISTS snapfix");
    env.ok(&["mysql", "restore", &good, "--to", &dst.url()]);
    dst.exec("UPDATE snapfix.accounts SET balance = balance + 1 WHERE id = 1");
    let live = fp(dst, "snapfix");

    let bad = tampered_snapshot(&env, &good);
    let o = env.run(&["mysql", "restore", &bad, "--to", &dst.url()]);
    assert_eq!(o.status.code(), Some(24), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("rolled back") && err.contains("accounts"),
        "{err}"
    );
    let d = fingerprint::diff(&live, &fp(dst, "snapfix"));
    assert!(
        d.is_empty(),
        "rollback did not restore the live data:\n{}",
        d.join("\n")
    );
    let snaps = env.json(&["snapshots", "--tag", "pre-restore"]);
    assert!(
        !snaps.as_array().unwrap().is_empty(),
        "no pre-restore snapshot"
    );

    // The drill passes on the good snapshot and writes its report...
    let report = env.path("drill.md");
    let o = env.run(&[
        "verify",
        &good,
        "--scratch",
        &dst.url(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = std::fs::read_to_string(&report).unwrap();
    assert!(md.contains("PASSED") && md.contains("accounts"), "{md}");
    // ...and fails loudly on the tampered one, running the alert command.
    let alert = env.path("alert");
    let o = env.run(&[
        "verify",
        &bad,
        "--scratch",
        &dst.url(),
        "--report",
        report.to_str().unwrap(),
        "--alert-cmd",
        &format!("cp \"$SNAP_REPORT\" {}", alert.display()),
    ]);
    assert_eq!(o.status.code(), Some(24), "{}", stderr(&o));
    let alerted = std::fs::read_to_string(&alert).expect("alert command did not run");
    assert!(
        alerted.contains("FAILED") && alerted.contains("DIFFERS"),
        "{alerted}"
    );
    // Scratch databases are gone either way.
    let left: Vec<String> = dst
        .conn()
        .query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'snapverify%'")
        .unwrap();
    assert!(left.is_empty(), "scratch databases left: {left:?}");
}

#[test]
fn database_errors_have_their_own_exit_codes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new(&[]);
    let src = source();
    let wrong = src.url().replace("snap:snap@", "snap:wrong@");
    let o = env.run(&["backup", "--mysql", &wrong]);
    assert_eq!(o.status.code(), Some(21), "{}", stderr(&o));
    assert!(stderr(&o).contains("denied"), "{}", stderr(&o));
    let o = env.run(&["backup", "--mysql", "mysql://snap:snap@127.0.0.1:3419"]);
    assert_eq!(o.status.code(), Some(20), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot connect"), "{}", stderr(&o));

    // A long statement on a MyISAM table holds back the backup lock: snap gives up in time.
    let lk = server(CLI_LOCKING);
    lk.exec("DROP DATABASE IF EXISTS slow");
    lk.exec("CREATE DATABASE slow");
    lk.exec("CREATE TABLE slow.t (id INT PRIMARY KEY, v INT) ENGINE=MyISAM");
    lk.exec("INSERT INTO slow.t VALUES (1, 1)");
    let target = lk.target();
    let blocker = std::thread::spawn(move || {
        let mut c = target.connect().unwrap();
        let _ = c.query_drop("UPDATE slow.t SET v = v + 1 WHERE SLEEP(6) = 0");
    });
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    let o = env.run(&[
        "backup",
        "--mysql",
        &lk.url(),
        "--mysql-lock-timeout",
        "1.5",
    ]);
    let waited = t0.elapsed();
    assert_eq!(o.status.code(), Some(22), "{}", stderr(&o));
    assert!(
        waited < Duration::from_secs(5),
        "gave up only after {waited:?}"
    );
    assert!(stderr(&o).contains("gave up"), "{}", stderr(&o));
    blocker.join().unwrap();
    // Nothing was left locked: writes go through at once.
    lk.exec("UPDATE slow.t SET v = 0");
    let _ = scratch("cli-errors");
}

#[test]
fn backup_under_concurrent_transfers_is_consistent() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (src, dst) = (source(), server(CLI_TARGET));
    let bank = Bank::create(src, "clibank");
    let env = Env::new(&[]);
    let transfers = Transfers::start(src, "clibank");
    std::thread::sleep(Duration::from_millis(300));
    let mut ids = Vec::new();
    for _ in 0..2 {
        let before = transfers.moves.load(std::sync::atomic::Ordering::Relaxed);
        let out = env.backup(&["--mysql", &src.url(), "--mysql-database", "clibank"]);
        let during = transfers.moves.load(std::sync::atomic::Ordering::Relaxed) - before;
        ids.push((out["id"].as_str().unwrap().to_string(), during));
    }
    transfers.stop();
    assert!(
        ids.iter().any(|(_, n)| *n > 0),
        "no transfer ran during a backup"
    );
    for (i, (id, _)) in ids.iter().enumerate() {
        let name = format!("clibank_r{i}");
        dst.exec(&format!("DROP DATABASE IF EXISTS {name}"));
        env.ok(&[
            "mysql",
            "restore",
            id,
            "--to",
            &dst.url(),
            "--rename",
            &format!("clibank:{name}"),
        ]);
        assert_eq!(
            bank.total(dst, &name),
            bank.expected_total(),
            "backup {i} is inconsistent"
        );
        dst.exec(&format!("DROP DATABASE {name}"));
    }
}
