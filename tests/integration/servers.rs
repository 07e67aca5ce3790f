//! Real storage servers on 127.0.0.1 for the remote-backend tests: an S3 server (moto_server,
//! from PyPI: it starts in a second, for CI), a private OpenSSH server for SFTP
//! (`scripts/sshd-sandbox.sh`), and a 3-node Garage cluster (`../shared/scripts/garage-cluster.sh`)
//! for the end-to-end test. A server that cannot start fails the test loudly — these tests are
//! the proof the backends work, and a silent skip would hide its absence. `.ci/run` installs
//! what they need.
//!
//! Each server starts on first use and is stopped when the test binary exits (one `atexit`
//! hook), so a run leaves nothing listening.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::common::Env;

/// moto_server for the tests (not the default 5000, which something else may hold).
const MOTO_PORT: u16 = 9300;
const SSHD_PORT: u16 = 2299;
// Below the kernel's ephemeral range (32768-60999): a port in it can be held, at any moment, by
// the local end of some other connection, and Garage's listener then fails with "address in use"
// (seen in a CI run).
const GARAGE_BASE: u16 = 29100;

pub const S3_KEY: &str = "snap-test-key";
pub const S3_SECRET: &str = "snap-test-secret";

enum Stop {
    Kill(Child),
    Script(PathBuf, Vec<String>),
}

static STOPS: Mutex<Vec<Stop>> = Mutex::new(Vec::new());

fn stop_at_exit(s: Stop) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    STOPS.lock().unwrap_or_else(|e| e.into_inner()).push(s);
    HOOK.call_once(|| {
        // SAFETY: registers a plain `extern "C" fn` that never unwinds (see `stop_all`).
        unsafe {
            libc::atexit(stop_all);
        }
    });
}

extern "C" fn stop_all() {
    let _ = std::panic::catch_unwind(|| {
        for s in std::mem::take(&mut *STOPS.lock().unwrap_or_else(|e| e.into_inner())) {
            match s {
                Stop::Kill(mut c) => {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                Stop::Script(script, args) => {
                    let _ = Command::new("bash")
                        .arg(script)
                        .args(args)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
    });
}

fn wait_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shared_script(name: &str) -> PathBuf {
    repo_root().join("../shared/scripts").join(name)
}

/// An S3-compatible server: its endpoint and the environment a snap process needs for it.
pub struct S3Server {
    pub endpoint: String,
    pub vars: Vec<(String, String)>,
}

impl S3Server {
    /// Creates a bucket (an unsigned PUT; moto accepts it) and returns its name.
    pub fn bucket(&self, name: &str) -> String {
        let hostport = self.endpoint.trim_start_matches("http://");
        let mut s = TcpStream::connect(hostport).unwrap();
        write!(
            s,
            "PUT /{name} HTTP/1.1\r\nHost: {hostport}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(
            resp.starts_with("HTTP/1.1 200") || resp.contains("BucketAlreadyOwnedByYou"),
            "cannot create bucket {name}: {resp}"
        );
        name.to_string()
    }

    /// A test environment whose repository is `s3://BUCKET/PREFIX-<pid>` on this server: a
    /// server left over from an earlier run (or shared with a parallel one) never hands a test
    /// someone else's repository.
    pub fn env(&self, bucket: &str, prefix: &str) -> Env {
        let mut env = Env::uninit();
        env.repo = PathBuf::from(format!("s3://{bucket}/{prefix}-{}", std::process::id()));
        env.vars = self.vars.clone();
        env
    }
}

/// moto_server on 127.0.0.1, started once per test binary.
pub fn moto() -> &'static S3Server {
    static S: OnceLock<S3Server> = OnceLock::new();
    S.get_or_init(|| {
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &MOTO_PORT.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start moto_server ({e}): pip install 'moto[server]' (.ci/run does)")
            });
        stop_at_exit(Stop::Kill(child));
        wait_port(MOTO_PORT, "moto_server");
        let endpoint = format!("http://127.0.0.1:{MOTO_PORT}");
        S3Server {
            vars: s3_vars(&endpoint, "us-east-1", S3_KEY, S3_SECRET),
            endpoint,
        }
    })
}

fn s3_vars(endpoint: &str, region: &str, key: &str, secret: &str) -> Vec<(String, String)> {
    [
        ("SNAP_S3_ENDPOINT", endpoint),
        ("AWS_REGION", region),
        ("AWS_ACCESS_KEY_ID", key),
        ("AWS_SECRET_ACCESS_KEY", secret),
        // Nothing from the machine's own ~/.aws may leak into a test.
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A 3-node Garage cluster (replication 3), started once per test binary. Its first start on a
/// machine compiles Garage (the script caches it in ~/.cargo/bin).
pub fn garage() -> &'static S3Server {
    static S: OnceLock<(S3Server, PathBuf)> = OnceLock::new();
    let (s, _) = S.get_or_init(|| {
        let dir = PathBuf::from("/var/tmp/snap-tests/garage");
        let script = shared_script("garage-cluster.sh");
        let start = || {
            Command::new("bash")
                .arg(&script)
                .arg("start")
                .arg(&dir)
                .arg("3")
                .arg(GARAGE_BASE.to_string())
                .output()
                .unwrap()
        };
        let stop = || {
            let _ = Command::new("bash")
                .arg(&script)
                .arg("stop")
                .arg(&dir)
                .output();
        };
        // A fresh cluster every run: restarted from an old directory the script does not
        // reconnect its nodes (it connects them only when it first configures them).
        stop();
        let _ = std::fs::remove_dir_all(&dir);
        // A loaded machine (CI beside other builds) can miss the script's 30 s health wait
        // once; the nodes it did start are stopped either way, never left running.
        let mut out = start();
        if !out.status.success() {
            stop();
            let _ = std::fs::remove_dir_all(&dir);
            out = start();
        }
        if !out.status.success() {
            stop();
        }
        assert!(
            out.status.success(),
            "Garage did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stop_at_exit(Stop::Script(
            script.clone(),
            vec!["stop".into(), dir.display().to_string()],
        ));
        let env = String::from_utf8_lossy(&out.stdout).into_owned();
        let get = |k: &str| -> String {
            env.lines()
                .filter_map(|l| l.trim().strip_prefix("export ").or(Some(l.trim())))
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .map(|v| v.trim_matches(|c| c == '"' || c == '\'').to_string())
                .unwrap_or_else(|| panic!("garage-cluster.sh printed no {k}: {env}"))
        };
        let endpoint = get("AWS_ENDPOINT_URL");
        let vars = s3_vars(
            &endpoint,
            &get("AWS_REGION"),
            &get("AWS_ACCESS_KEY_ID"),
            &get("AWS_SECRET_ACCESS_KEY"),
        );
        (S3Server { endpoint, vars }, dir)
    });
    s
}

/// SIGKILLs Garage node `n` (1-based); `garage_revive` starts it again.
pub fn garage_kill(n: u32) {
    let st = Command::new("bash")
        .arg(shared_script("garage-cluster.sh"))
        .args(["kill-node", "/var/tmp/snap-tests/garage", &n.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill-node {n} failed");
}

/// Starts every killed Garage node again and waits until the cluster is healthy.
pub fn garage_revive() {
    let st = Command::new("bash")
        .arg(shared_script("garage-cluster.sh"))
        .args([
            "start",
            "/var/tmp/snap-tests/garage",
            "3",
            &GARAGE_BASE.to_string(),
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "Garage did not come back");
}

/// The private sshd for SFTP, started once per test binary.
pub struct SshServer {
    pub port: u16,
    pub vars: Vec<(String, String)>,
    pub user: String,
}

impl SshServer {
    /// A test environment whose repository is `sftp://USER@127.0.0.1:PORT/DIR` (DIR is a local
    /// directory, served back to us over SFTP).
    pub fn env(&self) -> Env {
        let mut env = Env::uninit();
        let dir = env.path("sftp-repo");
        env.repo = PathBuf::from(format!(
            "sftp://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            dir.display()
        ));
        env.vars = self.vars.clone();
        env
    }
}

pub fn sshd() -> &'static SshServer {
    static S: OnceLock<SshServer> = OnceLock::new();
    S.get_or_init(|| {
        let dir = Path::new("/var/tmp/snap-tests/sshd");
        let script = repo_root().join("scripts/sshd-sandbox.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg(dir)
            .arg(SSHD_PORT.to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sshd did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stop_at_exit(Stop::Script(
            script,
            vec!["stop".into(), dir.display().to_string()],
        ));
        let user = String::from_utf8_lossy(&Command::new("id").arg("-un").output().unwrap().stdout)
            .trim()
            .to_string();
        SshServer {
            port: SSHD_PORT,
            user,
            vars: vec![
                (
                    "SNAP_SFTP_KEY".into(),
                    dir.join("id_ed25519").display().to_string(),
                ),
                // A throwaway server on loopback: no host key check (tests only).
                ("SNAP_SFTP_KNOWN_HOSTS".into(), "accept".into()),
            ],
        }
    })
}
