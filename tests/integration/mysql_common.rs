//! Private MariaDB servers for the MySQL tests, started with the shared sandbox script. A server
//! that cannot start fails the test loudly: these tests are the proof the dump works, and a
//! silent skip would hide its absence. Servers stay up after the run (the script reuses them).

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
