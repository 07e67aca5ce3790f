//! Test helpers shared by every integration test: a scratch repository, running the real `snap`
//! binary, and the independent manifest script.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const PASSWORD: &str = "test password";

pub struct Env {
    pub dir: tempfile::TempDir,
    /// A directory, or a remote location URL (`s3://…`, `sftp://…`) for the remote tests.
    pub repo: PathBuf,
    pub cache: PathBuf,
    /// Extra environment for every snap process (S3 credentials and endpoint, SFTP key).
    pub vars: Vec<(String, String)>,
}

/// The snap binary under test: cargo's, or `SNAP_TEST_BIN` (a copy, so a long run such as the
/// year-long plan test is not disturbed by a rebuild meanwhile).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("SNAP_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_snap").to_string())
    })
}

impl Env {
    /// A new, initialised repository (cheap KDF, optional extra init args).
    pub fn new(init_args: &[&str]) -> Env {
        let env = Env::uninit();
        let mut args = vec!["init", "--kdf-memory-kib", "19456"];
        args.extend_from_slice(init_args);
        env.ok(&args);
        env
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .env("SNAP_REPOSITORY", &self.repo)
            .env("SNAP_PASSWORD", PASSWORD)
            .env("SNAP_CACHE_DIR", &self.cache)
            .env_remove("SNAP_PASSWORD_FILE")
            .envs(self.vars.iter().map(|(k, v)| (k, v)));
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs and asserts exit code 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "snap {args:?} failed: {}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs with --json and parses stdout.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    pub fn backup(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["backup"];
        a.extend_from_slice(args);
        self.json(&a)
    }

    pub fn pack_files(&self) -> Vec<PathBuf> {
        walk_files(&self.repo.join("data"))
    }

    /// `snap --json check ARGS`: exit code, parsed report (Null when stdout is not JSON) and
    /// stderr; asserts that nothing panicked.
    pub fn check(&self, args: &[&str]) -> (i32, serde_json::Value, String) {
        let mut a = vec!["--json", "check"];
        a.extend_from_slice(args);
        let o = self.run(&a);
        assert_no_panic(&o);
        let report = serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null);
        (code(&o), report, stderr(&o))
    }

    /// The repository opened through the library, with a cache of its own (so it never shares
    /// RocksDB with a `snap` process).
    pub fn open_lib(&self) -> snap::repo::Repository {
        snap::repo::Repository::open(
            &self.repo.as_path().into(),
            PASSWORD.as_bytes(),
            &self.path("cache-lib"),
        )
        .unwrap()
    }

    /// A repository file's path relative to the repository (as `check` names it).
    pub fn rel(&self, p: &Path) -> String {
        p.strip_prefix(&self.repo)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string()
    }

    /// The only file directly in `repo/<dir>` (e.g. the one key of a fresh repository).
    pub fn only_file(&self, dir: &str) -> PathBuf {
        let files = walk_files(&self.repo.join(dir));
        assert_eq!(files.len(), 1, "{files:?}");
        files.into_iter().next().unwrap()
    }
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn assert_no_panic(o: &Output) {
    let e = stderr(o);
    assert!(!e.contains("panicked"), "snap panicked: {e}");
    assert!(o.status.code().is_some(), "snap died of a signal: {e}");
}

/// Rewrites a repository file in place (they are written read-only).
pub fn modify(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    use std::os::unix::fs::PermissionsExt;
    let mut bytes = std::fs::read(path).unwrap();
    f(&mut bytes);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(path, &bytes).unwrap();
}

/// The problems in a check report whose file is `file`.
pub fn problems<'a>(report: &'a serde_json::Value, file: &str) -> Vec<&'a serde_json::Value> {
    report["problems"]
        .as_array()
        .unwrap_or_else(|| panic!("no problems list: {report}"))
        .iter()
        .filter(|p| p["file"] == file)
        .collect()
}

/// Every `affected` entry of these problems.
pub fn affected(problems: &[&serde_json::Value]) -> Vec<String> {
    problems
        .iter()
        .flat_map(|p| p["affected"].as_array().unwrap().iter())
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// Scratch space on the real disk (not tmpfs), so sparse files and xattrs behave as in production.
/// The largest of some files: a data pack rather than a (small) tree pack.
pub fn largest_file(files: impl IntoIterator<Item = PathBuf>) -> PathBuf {
    files
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap()
}

pub fn scratch_root() -> PathBuf {
    // World-traversable, so a test can run snap as another user; on disk, not tmpfs.
    let p = std::env::var_os("SNAP_TEST_TMP")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/snap-tests"));
    std::fs::create_dir_all(&p).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o1777));
    p
}

pub fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect();
    out.sort();
    out
}

/// The independent manifest of a tree (scripts/manifest.py: Python's os.lstat and hashlib).
pub fn manifest(dir: &Path) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/manifest.py");
    let o = Command::new("python3")
        .arg(script)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "manifest failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

pub fn assert_same_tree(a: &Path, b: &Path) {
    let (ma, mb) = (manifest(a), manifest(b));
    if ma != mb {
        let la: Vec<&str> = ma.lines().collect();
        let lb: Vec<&str> = mb.lines().collect();
        let only_a: Vec<&&str> = la.iter().filter(|l| !lb.contains(l)).take(10).collect();
        let only_b: Vec<&&str> = lb.iter().filter(|l| !la.contains(l)).take(10).collect();
        panic!(
            "trees differ ({} vs {} entries)\nsource only: {only_a:#?}\nrestore only: {only_b:#?}",
            la.len(),
            lb.len()
        );
    }
    assert!(!ma.is_empty(), "manifest of {a:?} is empty");
}

/// Deterministic pseudo-random bytes (xorshift), incompressible.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn write(path: &Path, data: &[u8]) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, data).unwrap();
}

pub fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// `chmod -R MODE path`, when `path` exists.
pub fn chmod_r(mode: &str, path: &Path) {
    if !path.exists() {
        return;
    }
    let ok = Command::new("chmod")
        .args(["-R", mode])
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "chmod -R {mode} {path:?}");
}

/// Runs snap as user `nobody` (root only) on `env`'s repository, with a cache of its own.
pub fn snap_as_nobody(env: &Env, args: &[&std::ffi::OsStr]) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", bin()])
        .args(args)
        .env("SNAP_REPOSITORY", &env.repo)
        .env("SNAP_PASSWORD", PASSWORD)
        .env("SNAP_CACHE_DIR", env.path("cache-nobody"))
        .env("HOME", env.dir.path())
        .output()
        .unwrap()
}

impl Env {
    /// A scratch directory with no repository yet (for testing `init` itself).
    pub fn uninit() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("snap-it-")
            .tempdir_in(scratch_root())
            .unwrap();
        let repo = dir.path().join("repo");
        let cache = dir.path().join("cache");
        Env {
            dir,
            repo,
            cache,
            vars: Vec::new(),
        }
    }
}

/// The ids of the repository's snapshots (`snap snapshots --json`), as full hex.
pub fn snapshot_ids(env: &Env) -> std::collections::BTreeSet<String> {
    env.json(&["snapshots"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

/// `snap --json forget ARGS`, parsed.
pub fn forget_json(env: &Env, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["forget"];
    a.extend_from_slice(args);
    env.json(&a)
}

// ---- prune helpers ----

/// Files `f<seed>` of `len` pseudo-random bytes each, one per seed, in `dir`.
pub fn make_files(dir: &Path, seeds: impl IntoIterator<Item = u64>, len: usize) {
    for s in seeds {
        write(&dir.join(format!("f{s}")), &random_bytes(s, len));
    }
}

impl Env {
    /// Snapshot file ids, sorted.
    pub fn snapshot_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.repo.join("snapshots"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with(".tmp-"))
            .collect();
        ids.sort();
        ids
    }

    /// Backs up `src`; returns the new snapshot's id.
    pub fn backup_id(&self, src: &Path) -> String {
        let before = self.snapshot_ids();
        self.ok(&["-q", "backup", src.to_str().unwrap()]);
        let after = self.snapshot_ids();
        let new: Vec<&String> = after.iter().filter(|i| !before.contains(i)).collect();
        assert_eq!(new.len(), 1, "one new snapshot expected");
        new[0].clone()
    }

    /// What `forget ID` will do: removes the snapshot file.
    pub fn remove_snapshot(&self, id: &str) {
        std::fs::remove_file(self.repo.join("snapshots").join(id)).unwrap();
    }

    /// `snap --json prune ARGS`, asserting success.
    pub fn prune(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["prune"];
        a.extend_from_slice(args);
        self.json(&a)
    }

    /// `check --read-data` exits 0 with no problem.
    pub fn assert_check_clean(&self, when: &str) {
        let (code, report, err) = self.check(&["--read-data"]);
        assert_eq!(code, 0, "{when}: check failed: {report:#}\n{err}");
        assert!(
            report["problems"].as_array().unwrap().is_empty(),
            "{when}: {report:#}"
        );
    }

    /// Restores snapshot `id` and compares it with `src` (which must not have changed since).
    pub fn assert_restores(&self, id: &str, src: &Path) {
        let target = self.path(&format!("restore-{id}"));
        let _ = std::fs::remove_dir_all(&target);
        self.ok(&["-q", "restore", id, "--target", target.to_str().unwrap()]);
        assert_same_tree(src, &target.join(src.strip_prefix("/").unwrap()));
        std::fs::remove_dir_all(&target).unwrap();
    }
}
