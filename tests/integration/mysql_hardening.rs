//! Issue 10's database half through the `snap` binary on real MariaDB servers: tables without a
//! primary key (TEXT, LONGTEXT, BLOB, JSON, a unique key, MyISAM, one million rows) back up on a
//! server with default settings, restore and verify identical, and deduplicate day to day; and
//! no password (repository or database) shows in any output, snapshot, report, command line or
//! alert command environment.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

use snap::mysql::fingerprint;

use crate::common::{Env, bin, scratch_root};
use crate::mysql_common::{Server, server};

/// Source and restore target of the key-less tests (restores go to renamed databases).
const NOKEY: u16 = 3420;
/// The secrets tests' server, with an account whose password is distinctive.
const SECRETS: u16 = 3421;

/// The tests below share servers and the server-wide backup lock.
static SERIAL: Mutex<()> = Mutex::new(());

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_same_db(s: &Server, a: &str, b: &str) {
    let fa = fingerprint::fingerprint(&mut s.conn(), a).unwrap();
    let fb = fingerprint::fingerprint(&mut s.conn(), b).unwrap();
    let d = fingerprint::diff(&fa, &fb);
    assert!(d.is_empty(), "{a} and {b} differ:\n{}", d.join("\n"));
}

/// Restores `db` of snapshot `id` as `copy` (the restore verifies row counts and checksums),
/// compares it with the source by an independent fingerprint, and runs the verification drill.
fn restore_and_compare(env: &Env, s: &Server, id: &str, db: &str, copy: &str) {
    s.exec(&format!("DROP DATABASE IF EXISTS {copy}"));
    let o = env.run(&[
        "mysql",
        "restore",
        id,
        "--to",
        &s.url(),
        "--rename",
        &format!("{db}:{copy}"),
    ]);
    assert!(o.status.success(), "restore failed: {}", stderr(&o));
    assert_same_db(s, db, copy);
    s.exec(&format!("DROP DATABASE {copy}"));
    let report = env.path("drill.md");
    let o = env.run(&[
        "verify",
        id,
        "--scratch",
        &s.url(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "verify failed: {}", stderr(&o));
    let md = std::fs::read_to_string(&report).unwrap();
    assert!(md.contains("PASSED"), "{md}");
}

#[test]
fn keyless_tables_with_text_blob_json_back_up_and_restore() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = server(NOKEY);
    s.exec("DROP DATABASE IF EXISTS nokey");
    s.exec("CREATE DATABASE nokey");
    // Default server settings (sort_buffer_size 2 MiB): sorting by a LONGTEXT, MEDIUMBLOB or JSON
    // value of unbounded length is what failed with "Out of sort memory".
    s.exec("CREATE TABLE nokey.texts (a INT, b TEXT, c LONGTEXT, d MEDIUMTEXT) ENGINE=InnoDB");
    s.exec(
        "INSERT INTO nokey.texts VALUES (1, 'x', 'long x', 'm'), (2, 'y', REPEAT('é', 5000), NULL), \
         (1, 'x', 'long x', 'm'), (NULL, NULL, NULL, NULL), (3, 'Z', 'z', 'caf\\'e\\n')",
    );
    s.exec("CREATE TABLE nokey.blobs (a INT, b BLOB, c LONGBLOB) ENGINE=InnoDB");
    s.exec(
        "INSERT INTO nokey.blobs VALUES (1, X'00FF0A0D275C', X'DEADBEEF'), \
         (2, REPEAT(X'00', 60000), REPEAT(X'FF', 300000)), (3, '', NULL)",
    );
    s.exec("CREATE TABLE nokey.docs (j JSON, n INT) ENGINE=InnoDB");
    s.exec(
        "INSERT INTO nokey.docs VALUES ('{\"a\": [1, 2, {\"b\": null}]}', 1), ('[]', 2), \
         ('\"😀\"', 3), (NULL, 4)",
    );
    // A unique NOT NULL key is InnoDB's clustered index; a MyISAM table has no clustered order.
    s.exec("CREATE TABLE nokey.uniq (u INT NOT NULL, t LONGTEXT, UNIQUE KEY (u)) ENGINE=InnoDB");
    s.exec("INSERT INTO nokey.uniq VALUES (3, 'c'), (1, 'a'), (2, REPEAT('b', 100000))");
    s.exec("CREATE TABLE nokey.isam (t TEXT, b BLOB) ENGINE=MyISAM");
    s.exec("INSERT INTO nokey.isam VALUES ('one', X'01'), ('two', NULL), ('one', X'01')");
    s.exec("CREATE TABLE nokey.aria (t LONGTEXT) ENGINE=Aria");
    s.exec("INSERT INTO nokey.aria VALUES ('aria'), (NULL)");

    let env = Env::new(&[]);
    let o = env.run(&[
        "--json",
        "backup",
        "--mysql",
        &s.url(),
        "--mysql-database",
        "nokey",
    ]);
    assert!(
        o.status.success(),
        "backup of key-less tables failed: {}",
        stderr(&o)
    );
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = out["id"].as_str().unwrap().to_string();
    assert_eq!(out["snapshot"]["mysql"]["tables"], 6, "{out}");
    // the same data dumps to the same bytes (what lets an unchanged table deduplicate)
    let again = env.backup(&["--mysql", &s.url(), "--mysql-database", "nokey"]);
    let m1 = env.ok(&["cat", &id, "mysql/nokey/texts.rows"]);
    let m2 = env.ok(&[
        "cat",
        again["id"].as_str().unwrap(),
        "mysql/nokey/texts.rows",
    ]);
    assert_eq!(m1, m2);
    restore_and_compare(&env, s, &id, "nokey", "nokey_copy");
}

/// Bytes a backup added to the repository, from its `--json` summary.
fn added(out: &serde_json::Value) -> u64 {
    out["snapshot"]["summary"]["bytes_added"].as_u64().unwrap()
}

#[test]
fn keyless_million_rows_deduplicate_day_to_day() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = server(NOKEY);
    s.exec("DROP DATABASE IF EXISTS nokeybig");
    s.exec("CREATE DATABASE nokeybig");
    s.exec("CREATE TABLE nokeybig.log (at INT, host VARCHAR(40), msg TEXT) ENGINE=InnoDB");
    // generated by the server (the sequence engine), so the test stays fast
    s.exec(
        "INSERT INTO nokeybig.log SELECT seq, MD5(seq), REPEAT(CHAR(65 + seq % 26), 20 + seq % 40) \
         FROM nokeybig.seq_1_to_1000000",
    );
    let env = Env::new(&[]);
    let args = ["--mysql", &s.url(), "--mysql-database", "nokeybig"];
    let t0 = std::time::Instant::now();
    let full = env.backup(&args);
    let full_s = t0.elapsed().as_secs_f64();
    assert_eq!(full["snapshot"]["mysql"]["rows"], 1_000_000, "{full}");
    // A day of a log table: a few scattered updates, a few deletions, new rows appended.
    s.exec("UPDATE nokeybig.log SET msg = 'edited' WHERE at % 10000 = 17");
    s.exec("DELETE FROM nokeybig.log WHERE at % 25000 = 3");
    s.exec(
        "INSERT INTO nokeybig.log SELECT 1000000 + seq, MD5(seq), 'new' FROM nokeybig.seq_1_to_1000",
    );
    let t0 = std::time::Instant::now();
    let day2 = env.backup(&args);
    let day2_s = t0.elapsed().as_secs_f64();
    let (a1, a2) = (added(&full), added(&day2));
    eprintln!(
        "key-less 1M rows: dump {} bytes; full backup added {a1} bytes in {full_s:.1}s; after 100 \
         updates, 40 deletes, 1000 inserts the next added {a2} bytes ({:.2}%) in {day2_s:.1}s",
        full["snapshot"]["mysql"]["bytes"],
        100.0 * a2 as f64 / a1 as f64
    );
    assert!(
        a2 * 10 < a1,
        "the second backup added {a2} of {a1} bytes: the key-less order is not stable"
    );
    // Unchanged data dumps to the same bytes: only the manifest (its times) and the trees are
    // new, the largest being the dump directory's tree, which lists the 2,600-odd chunk ids of
    // the table's stream under a new mtime (the dump start).
    let again = env.backup(&args);
    let (same, blobs) = (
        added(&again),
        again["snapshot"]["summary"]["blobs_added"]
            .as_u64()
            .unwrap(),
    );
    eprintln!(
        "key-less 1M rows: a backup of the unchanged table added {same} bytes in {blobs} blobs"
    );
    assert!(
        blobs <= 5 && same * 100 < a1,
        "an unchanged table added {same} bytes in {blobs} blobs"
    );
    let id = day2["id"].as_str().unwrap().to_string();
    restore_and_compare(&env, s, &id, "nokeybig", "nokeybig_copy");
    s.exec("DROP DATABASE nokeybig");
}

// ---- secrets ------------------------------------------------------------------------------

const REPO_PW: &str = "Rz3repoPW-distinct-9917";
const NEW_PW: &str = "Kn5newPW-distinct-3308";
const MYSQL_PW: &str = "Mq7mysqlPW-distinct-4821";
const SECRETS_USER: &str = "secretuser";

/// A repository opened only through password files, and a server account with [`MYSQL_PW`].
struct Secrets {
    _dir: tempfile::TempDir,
    root: PathBuf,
    s: &'static Server,
}

impl Secrets {
    fn new() -> Secrets {
        let s = server(SECRETS);
        for host in ["127.0.0.1", "localhost"] {
            s.exec(&format!(
                "CREATE USER IF NOT EXISTS '{SECRETS_USER}'@'{host}' IDENTIFIED BY '{MYSQL_PW}'"
            ));
            s.exec(&format!(
                "GRANT ALL PRIVILEGES ON *.* TO '{SECRETS_USER}'@'{host}'"
            ));
        }
        s.exec("DROP DATABASE IF EXISTS secretdb");
        s.exec("CREATE DATABASE secretdb");
        s.exec("CREATE TABLE secretdb.t (id INT PRIMARY KEY, v TEXT)");
        s.exec("INSERT INTO secretdb.t SELECT seq, REPEAT('v', seq % 100) FROM secretdb.seq_1_to_20000");
        let dir = tempfile::Builder::new()
            .prefix("snap-secrets-")
            .tempdir_in(scratch_root())
            .unwrap();
        let root = dir.path().to_path_buf();
        for (f, pw) in [
            ("repo.pw", REPO_PW),
            ("new.pw", NEW_PW),
            ("mysql.pw", MYSQL_PW),
        ] {
            std::fs::write(root.join(f), format!("{pw}\n")).unwrap();
        }
        std::fs::create_dir_all(root.join("files")).unwrap();
        std::fs::write(root.join("files/a.txt"), "hello\n").unwrap();
        Secrets { _dir: dir, root, s }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.root.join(p)
    }

    /// The server URL without a password (it comes from --mysql-password-file or the env).
    fn url(&self) -> String {
        format!("mysql://{SECRETS_USER}@127.0.0.1:{}", self.s.port)
    }

    /// `snap --password-file repo.pw ARGS` with no password anywhere in its environment.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("--password-file")
            .arg(self.path("repo.pw"))
            .args(args)
            .env("SNAP_REPOSITORY", self.path("repo"))
            .env("SNAP_CACHE_DIR", self.path("cache"))
            .env("HOME", &self.root)
            .env_remove("SNAP_PASSWORD")
            .env_remove("SNAP_PASSWORD_FILE")
            .env_remove("SNAP_NEW_PASSWORD")
            .env_remove("SNAP_MYSQL_URL")
            .env_remove("SNAP_MYSQL_PASSWORD")
            .env_remove("MYSQL_PWD");
        c
    }
}

/// Everything a run showed: its command line (read from /proc while it ran), stdout, stderr.
struct Seen {
    text: String,
    /// Whether its command line was read while it ran (a very short run may end first).
    cmdline_seen: bool,
    status: std::process::ExitStatus,
    stdout: Vec<u8>,
}

fn watch(mut c: Command, what: &str) -> Seen {
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    while !waiter.is_finished() {
        if let Ok(c) = std::fs::read(format!("/proc/{pid}/cmdline"))
            && !c.is_empty()
        {
            cmdline = c;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let o = waiter.join().unwrap();
    let text = format!(
        "== {what} cmdline\n{}\n== stdout\n{}\n== stderr\n{}\n",
        String::from_utf8_lossy(&cmdline).replace('\0', " "),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    Seen {
        cmdline_seen: !cmdline.is_empty(),
        text,
        status: o.status,
        stdout: o.stdout,
    }
}

fn assert_no_secret(haystack: &str, what: &str) {
    for pw in [REPO_PW, NEW_PW, MYSQL_PW] {
        assert!(
            !haystack.contains(pw),
            "{what} shows the password {pw:?}:\n{haystack}"
        );
    }
}

#[test]
fn secrets_never_shown_by_any_command() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let x = Secrets::new();
    let url = x.url();
    let pwf = x.path("mysql.pw");
    let pwf = pwf.to_str().unwrap();
    let files = x.path("files");
    let mut seen = String::new();
    let mut cmdlines = 0;
    let mut run = |args: &[&str], extra: &[(&str, &str)]| -> Seen {
        let mut c = x.cmd(args);
        c.envs(extra.iter().copied());
        let r = watch(c, &args.join(" "));
        assert!(r.status.success(), "snap {args:?} failed:\n{}", r.text);
        seen.push_str(&r.text);
        cmdlines += usize::from(r.cmdline_seen);
        r
    };
    run(&["init", "--kdf-memory-kib", "19456"], &[]);
    let b = run(
        &[
            "--json",
            "backup",
            files.to_str().unwrap(),
            "--mysql",
            &url,
            "--mysql-password-file",
            pwf,
            "--mysql-database",
            "secretdb",
        ],
        &[],
    );
    let out: serde_json::Value = serde_json::from_slice(&b.stdout).unwrap();
    let id = out["id"].as_str().unwrap().to_string();
    assert_eq!(
        out["snapshot"]["mysql"]["source"],
        url.as_str(),
        "the snapshot names the server"
    );
    run(&["--json", "snapshots"], &[]);
    run(&["snapshots"], &[]);
    run(&["ls", &id, "--recursive"], &[]);
    run(&["cat", &id, "mysql/manifest.json"], &[]);
    let target = x.path("restored");
    run(&["restore", &id, "--target", target.to_str().unwrap()], &[]);
    run(&["check"], &[]);
    run(
        &[
            "key",
            "add",
            "--new-password-file",
            x.path("new.pw").to_str().unwrap(),
        ],
        &[],
    );
    run(&["key", "list"], &[]);
    x.s.exec("DROP DATABASE IF EXISTS secretdb_copy");
    run(
        &[
            "mysql",
            "restore",
            &id,
            "--to",
            &url,
            "--mysql-password-file",
            pwf,
            "--rename",
            "secretdb:secretdb_copy",
        ],
        &[],
    );
    // The drill, with the MySQL password from the environment this time, passing and failing;
    // the failing one runs the alert command, which records its environment.
    let report = x.path("report.md");
    let mysql_env = [("SNAP_MYSQL_PASSWORD", MYSQL_PW)];
    run(
        &[
            "verify",
            &id,
            "--scratch",
            &url,
            "--report",
            report.to_str().unwrap(),
        ],
        &mysql_env,
    );
    seen.push_str(&std::fs::read_to_string(&report).unwrap());
    let bad = tampered(&x, &id, &mut seen);
    let alert_env = x.path("alert.env");
    let mut c = x.cmd(&[
        "verify",
        &bad,
        "--scratch",
        &url,
        "--report",
        report.to_str().unwrap(),
        "--alert-cmd",
        &format!("env > {}", alert_env.display()),
    ]);
    // secrets a scheduler's environment may hold: none may reach the alert command
    let url_with_pw = format!("mysql://{SECRETS_USER}:{MYSQL_PW}@127.0.0.1:{}", x.s.port);
    c.env("SNAP_MYSQL_PASSWORD", MYSQL_PW)
        .env("SNAP_PASSWORD", REPO_PW)
        .env("SNAP_NEW_PASSWORD", NEW_PW)
        .env("SNAP_MYSQL_URL", &url_with_pw)
        .env("MYSQL_PWD", MYSQL_PW)
        .env("AWS_SECRET_ACCESS_KEY", REPO_PW)
        .env("AWS_SESSION_TOKEN", REPO_PW)
        .env("WEBHOOK_TOKEN", MYSQL_PW)
        .env("SOME_DB_PASSWORD", MYSQL_PW);
    assert!(
        cmdlines >= 8,
        "read only {cmdlines} command lines from /proc while the commands ran"
    );
    let r = watch(c, "verify tampered");
    assert_eq!(r.status.code(), Some(24), "{}", r.text);
    seen.push_str(&r.text);
    seen.push_str(&std::fs::read_to_string(&report).unwrap());
    let child_env = std::fs::read_to_string(&alert_env).expect("the alert command did not run");
    assert_no_secret(&child_env, "the alert command's environment");
    for kept in ["PATH=", "HOME=", "SNAP_REPORT=", "SNAP_SNAPSHOT="] {
        assert!(
            child_env.lines().any(|l| l.starts_with(kept)),
            "the alert command lost {kept}:\n{child_env}"
        );
    }
    assert_no_secret(&seen, "a command's output, report or command line");
}

/// A snapshot whose dump manifest records a wrong checksum (so its drill fails): the real
/// dump's streams restored as files, the manifest edited, the directory backed up again.
fn tampered(x: &Secrets, good: &str, seen: &mut String) -> String {
    let dir = x.path("tamper");
    let o = x
        .cmd(&[
            "restore",
            &format!("{good}:/mysql"),
            "--target",
            dir.join("mysql").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let mpath = dir.join("mysql/manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&mpath).unwrap()).unwrap();
    m["databases"][0]["tables"][0]["checksum"] = serde_json::Value::String("0".repeat(64));
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let o = x
        .cmd(&["--json", "backup", "."])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    seen.push_str(&String::from_utf8_lossy(&o.stdout));
    seen.push_str(&stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["id"].as_str().unwrap().to_string()
}

#[test]
fn password_in_url_works_with_a_warning_and_is_redacted_in_errors() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let x = Secrets::new();
    let port = x.s.port;
    let run = |args: &[&str]| x.cmd(args).output().unwrap();
    assert!(run(&["init", "--kdf-memory-kib", "19456"]).status.success());
    for scheme in ["mysql", "mariadb"] {
        let url = format!("{scheme}://{SECRETS_USER}:{MYSQL_PW}@127.0.0.1:{port}");
        let o = run(&["backup", "--mysql", &url, "--mysql-database", "secretdb"]);
        let err = stderr(&o);
        assert!(o.status.success(), "{scheme}:// URL with a password: {err}");
        assert!(
            err.contains("warning") && err.contains("process list"),
            "no warning: {err}"
        );
        assert!(err.contains("--mysql-password-file"), "{err}");
        assert_no_secret(&err, "the warning");
        assert_no_secret(&String::from_utf8_lossy(&o.stdout), "the summary");
    }
    // Refused URLs and failed connections name the server without its password.
    for (url, code) in [
        (format!("pgsql://u:{MYSQL_PW}@127.0.0.1:{port}"), 1),
        (format!("mysql://u:{MYSQL_PW}@127.0.0.1:notaport"), 1),
        (format!("mysql://u:{MYSQL_PW}"), 1),
        (format!("mariadb://u:{MYSQL_PW}@127.0.0.1:3419"), 20),
        (
            format!("mysql://{SECRETS_USER}:wrong{MYSQL_PW}@127.0.0.1:{port}"),
            21,
        ),
    ] {
        let o = run(&["backup", "--mysql", &url]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(code), "{url}: {err}");
        assert_no_secret(&err, "an error message");
        if code == 1 {
            assert!(err.contains("u:***"), "{url}: not redacted: {err}");
        }
    }
}

#[test]
fn password_file_wins_over_the_environment() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let x = Secrets::new();
    let ok = |o: Output, what: &str| assert!(o.status.success(), "{what}: {}", stderr(&o));
    ok(
        x.cmd(&["init", "--kdf-memory-kib", "19456"])
            .output()
            .unwrap(),
        "init",
    );
    std::fs::write(x.path("wrong.pw"), "wrong\n").unwrap();
    let wrong = x.path("wrong.pw");
    // --password-file (what cmd() passes) beats both variables
    ok(
        x.cmd(&["snapshots"])
            .env("SNAP_PASSWORD", "wrong")
            .env("SNAP_PASSWORD_FILE", &wrong)
            .output()
            .unwrap(),
        "--password-file with SNAP_PASSWORD and SNAP_PASSWORD_FILE set",
    );
    // SNAP_PASSWORD_FILE beats SNAP_PASSWORD; SNAP_PASSWORD alone still works
    let no_flag = |vars: &[(&str, &OsStr)]| {
        Command::new(bin())
            .arg("snapshots")
            .env_remove("SNAP_PASSWORD")
            .env_remove("SNAP_PASSWORD_FILE")
            .env("SNAP_REPOSITORY", x.path("repo"))
            .env("SNAP_CACHE_DIR", x.path("cache"))
            .envs(vars.iter().copied())
            .output()
            .unwrap()
    };
    let pw_file = x.path("repo.pw");
    ok(
        no_flag(&[("SNAP_PASSWORD_FILE", pw_file.as_os_str())]),
        "SNAP_PASSWORD_FILE",
    );
    ok(
        no_flag(&[
            ("SNAP_PASSWORD_FILE", pw_file.as_os_str()),
            ("SNAP_PASSWORD", OsStr::new("wrong")),
        ]),
        "SNAP_PASSWORD_FILE with SNAP_PASSWORD set",
    );
    ok(
        no_flag(&[("SNAP_PASSWORD", OsStr::new(REPO_PW))]),
        "SNAP_PASSWORD",
    );
}
