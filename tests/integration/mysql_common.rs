//! Private MariaDB servers for the MySQL tests, started with the shared sandbox script. A server
//! that cannot start fails the test loudly: these tests are the proof the dump works, and a
//! silent skip would hide its absence.
//!
//! Every server a test starts is stopped when the test binary exits (a `libc::atexit` hook: the
//! servers live in a static map for the whole run, and statics are never dropped), so a test run
//! leaves no `mariadbd` behind. `SNAP_TEST_KEEP_SERVERS=1` opts in to leaving them running for
//! the next run to reuse (the sandbox script's `start` is idempotent), which saves their start
//! time when iterating on one test.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};

use ::mysql::prelude::Queryable;
use snap::mysql::MysqlTarget;

/// Source server holding the fixture; dumps of it are serialised (BACKUP STAGE is server-wide).
pub const SOURCE: u16 = 3410;
/// Restore targets.
pub const TARGET_B: u16 = 3411;
pub const TARGET_C: u16 = 3412;
/// The lock give-up test blocks this server's backup lock on purpose.
pub const LOCKING: u16 = 3413;
/// Nothing listens here.
pub const CLOSED_PORT: u16 = 3418;

pub const ROOT: &str = "/var/tmp/snap-tests";

fn script() -> PathBuf {
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/mariadb-sandbox.sh");
    if local.exists() {
        local
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/scripts/mariadb-sandbox.sh")
    }
}

pub struct Server {
    pub port: u16,
    pub dir: PathBuf,
}

static SERVERS: OnceLock<Mutex<HashMap<u16, &'static Server>>> = OnceLock::new();

/// The sandbox on `port`, started on first use.
pub fn server(port: u16) -> &'static Server {
    let mut map = SERVERS
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(s) = map.get(&port) {
        return s;
    }
    let dir = PathBuf::from(ROOT).join(format!("srv-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let script = script();
    let out = Command::new("bash")
        .arg(&script)
        .arg("start")
        .arg(&dir)
        .arg(port.to_string())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "MariaDB sandbox on port {port} did not start (install mariadb-server): {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    stop_at_exit(&dir);
    let s: &'static Server = Box::leak(Box::new(Server { port, dir }));
    map.insert(port, s);
    s
}

impl Server {
    pub fn url(&self) -> String {
        format!("mysql://snap:snap@127.0.0.1:{}", self.port)
    }

    pub fn target(&self) -> MysqlTarget {
        MysqlTarget::from_url(&self.url()).unwrap()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("mysqld.sock")
    }

    pub fn conn(&self) -> ::mysql::Conn {
        self.target().connect().unwrap()
    }

    pub fn exec(&self, sql: &str) {
        self.conn()
            .query_drop(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Feeds a SQL file to the `mariadb` client (which understands DELIMITER).
    pub fn source(&self, file: &Path, db: Option<&str>) {
        let mut c = Command::new("mariadb");
        c.args([
            "--no-defaults",
            "-h127.0.0.1",
            "-usnap",
            "-psnap",
            "--binary-mode",
        ])
        .arg(format!("-P{}", self.port));
        if let Some(db) = db {
            c.arg(db);
        }
        let out = c
            .stdin(Stdio::from(std::fs::File::open(file).unwrap()))
            .output()
            .expect("mariadb client");
        assert!(
            out.status.success(),
            "loading {} failed: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The source server with the fixture loaded (once per test run), and the guard that keeps
/// other dumps of it away while the caller dumps.
pub fn fixture_source() -> (&'static Server, MutexGuard<'static, ()>) {
    static LOADED: OnceLock<()> = OnceLock::new();
    static DUMPS: Mutex<()> = Mutex::new(());
    let s = server(SOURCE);
    let guard = DUMPS.lock().unwrap_or_else(|e| e.into_inner());
    LOADED.get_or_init(|| {
        s.source(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mysql-fixture.sql"),
            None,
        );
    });
    (s, guard)
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(ROOT).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Two tables of accounts whose total balance never changes: the invariant a consistent dump keeps.
pub struct Bank {
    rows: u64,
    start: u64,
}

impl Bank {
    pub fn create(s: &Server, db: &str) -> Bank {
        let bank = Bank {
            rows: 20_000,
            start: 1_000,
        };
        s.exec(&format!("DROP DATABASE IF EXISTS {db}"));
        s.exec(&format!("CREATE DATABASE {db}"));
        for t in ["checking", "savings"] {
            s.exec(&format!(
                "CREATE TABLE {db}.{t} (id INT PRIMARY KEY, balance BIGINT NOT NULL, note VARCHAR(100))"
            ));
            s.exec(&format!(
                "INSERT INTO {db}.{t} SELECT seq, {}, REPEAT('x', 80) FROM {db}.seq_1_to_{}",
                bank.start, bank.rows
            ));
        }
        bank
    }

    pub fn expected_total(&self) -> Option<u64> {
        Some(2 * self.rows * self.start)
    }

    pub fn total(&self, s: &Server, db: &str) -> Option<u64> {
        s.conn()
            .query_first(format!(
                "SELECT CAST((SELECT SUM(balance) FROM {db}.checking) + (SELECT SUM(balance) FROM {db}.savings) AS UNSIGNED)"
            ))
            .unwrap()
    }
}

/// A writer moving money between the two tables of a [`Bank`] in transactions until stopped.
pub struct Transfers {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub moves: std::sync::Arc<std::sync::atomic::AtomicU64>,
    handle: std::thread::JoinHandle<()>,
}

impl Transfers {
    pub fn start(s: &Server, db: &str) -> Transfers {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let moves = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (st, mv, target, db) = (stop.clone(), moves.clone(), s.target(), db.to_string());
        let handle = std::thread::spawn(move || {
            let mut c = target.connect().unwrap();
            let rows = 20_000u64;
            let mut i: u64 = 0;
            while !st.load(Ordering::Relaxed) {
                i += 1;
                let (a, b, amt) = (i * 7919 % rows + 1, i * 104_729 % rows + 1, i % 50 + 1);
                let (from, to) = if i.is_multiple_of(2) {
                    ("checking", "savings")
                } else {
                    ("savings", "checking")
                };
                c.query_drop("START TRANSACTION").unwrap();
                c.query_drop(format!(
                    "UPDATE {db}.{from} SET balance = balance - {amt} WHERE id = {a}"
                ))
                .unwrap();
                c.query_drop(format!(
                    "UPDATE {db}.{to} SET balance = balance + {amt} WHERE id = {b}"
                ))
                .unwrap();
                c.query_drop("COMMIT").unwrap();
                mv.fetch_add(1, Ordering::Relaxed);
            }
        });
        Transfers {
            stop,
            moves,
            handle,
        }
    }

    pub fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().unwrap();
    }
}

/// Data directories of the servers this test binary started, stopped by [`stop_servers`].
static STARTED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Remembers a started server and, the first time, registers the exit hook that stops them all
/// (unless `SNAP_TEST_KEEP_SERVERS` asks to keep them for reuse).
fn stop_at_exit(dir: &Path) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    if std::env::var_os("SNAP_TEST_KEEP_SERVERS").is_some_and(|v| !v.is_empty() && v != "0") {
        return;
    }
    STARTED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(dir.to_path_buf());
    HOOK.call_once(|| {
        // SAFETY: registers a plain `extern "C" fn` taking nothing; it never unwinds out (see
        // `stop_servers`). A failure to register only means the servers stay up, as before.
        unsafe {
            libc::atexit(stop_servers);
        }
    });
}

/// The exit hook: stops every started server in parallel (each takes a second or two to shut
/// down cleanly) and waits for them. Runs after `main` returns or `exit` is called, which is how
/// the test harness ends whether tests passed or failed.
extern "C" fn stop_servers() {
    let _ = std::panic::catch_unwind(|| {
        let dirs = std::mem::take(&mut *STARTED.lock().unwrap_or_else(|e| e.into_inner()));
        let script = script();
        let stops: Vec<_> = dirs
            .iter()
            .filter_map(|d| {
                Command::new("bash")
                    .arg(&script)
                    .arg("stop")
                    .arg(d)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .ok()
            })
            .collect();
        for mut c in stops {
            let _ = c.wait();
        }
    });
}

/// Binary-log helpers for the archive and point-in-time tests.
impl Server {
    /// The URL without a password (the tests give it through `SNAP_MYSQL_PASSWORD`).
    pub fn url_nopass(&self) -> String {
        format!("mysql://snap@127.0.0.1:{}", self.port)
    }

    /// The archive name snap gives this server.
    pub fn archive_source(&self) -> String {
        self.url_nopass()
    }

    /// Drops every binlog file: the server starts again at `binlog.000001`.
    pub fn reset_binlog(&self) {
        self.exec("RESET MASTER");
    }

    /// `SHOW MASTER STATUS`: the current file and the position after the last event.
    pub fn master_status(&self) -> (String, u64) {
        let row: ::mysql::Row = self
            .conn()
            .query_first("SHOW MASTER STATUS")
            .unwrap()
            .expect("binlog is on");
        (row.get(0).unwrap(), row.get(1).unwrap())
    }

    /// `SHOW BINARY LOGS` names, oldest first.
    pub fn binlog_files(&self) -> Vec<String> {
        let rows: Vec<::mysql::Row> = self.conn().query("SHOW BINARY LOGS").unwrap();
        rows.into_iter().map(|r| r.get(0).unwrap()).collect()
    }

    /// `PURGE BINARY LOGS TO file`, repeated until the server really dropped the older files.
    /// The server keeps a file a binlog dump thread still reads (a warning, not an error), and
    /// a snap process that just exited may not have been noticed as gone yet.
    pub fn purge_binlogs_to(&self, file: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            self.exec(&format!("PURGE BINARY LOGS TO '{file}'"));
            let files = self.binlog_files();
            if files.first().map(String::as_str) == Some(file) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "PURGE BINARY LOGS TO '{file}' left {files:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// The server's own copy of a binlog file.
    pub fn binlog_bytes(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.dir.join("data").join(file)).unwrap()
    }
}

/// A sandbox in `dir` on `port`, outside the per-port map (a second server taking over an
/// address another test server had): started now, stopped at exit like the others.
pub fn sandbox_at(dir: &Path, port: u16) -> Server {
    std::fs::create_dir_all(dir).unwrap();
    let out = Command::new("bash")
        .arg(script())
        .arg("start")
        .arg(dir)
        .arg(port.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sandbox {} on {port}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    stop_at_exit(dir);
    Server {
        port,
        dir: dir.to_path_buf(),
    }
}

/// Stops a sandbox now (clean shutdown).
pub fn stop_sandbox(dir: &Path) {
    let out = Command::new("bash")
        .arg(script())
        .arg("stop")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
