//! Helpers for the backup.yml tests: a plan directory (repositories, password files, the
//! config), a real HTTP listener on 127.0.0.1 that records what is posted to it, and a fake
//! `sendmail` on PATH that keeps every message it is given.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use crate::common::{Env, PASSWORD, bin};

/// MariaDB for the plan tests (issue 14's port range 3440–3449).
pub const DB_PORT: u16 = 3440;
/// Nothing listens here: a database job against it fails as unreachable.
pub const DEAD_DB_PORT: u16 = 3449;

/// A directory with repositories `local` (and `offsite`), their password files and a config.
pub struct PlanDir {
    pub local: Env,
    pub offsite: Env,
    pub dir: PathBuf,
    pub config: PathBuf,
    /// Directory put first on PATH (the fake sendmail lives here).
    pub bin_dir: PathBuf,
    pub mail_dir: PathBuf,
}

impl PlanDir {
    pub fn new() -> PlanDir {
        let local = Env::new(&[]);
        let offsite = Env::new(&[]);
        let dir = local.path("plan");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("local.pass"), format!("{PASSWORD}\n")).unwrap();
        std::fs::write(dir.join("offsite.pass"), format!("{PASSWORD}\n")).unwrap();
        std::fs::write(dir.join("mysql.pass"), "snap\n").unwrap();
        let bin_dir = dir.join("bin");
        let mail_dir = dir.join("mail");
        std::fs::create_dir_all(&bin_dir).unwrap();
        std::fs::create_dir_all(&mail_dir).unwrap();
        let sendmail = bin_dir.join("sendmail");
        std::fs::write(
            &sendmail,
            format!(
                "#!/bin/sh\n# fake sendmail: keeps each message and its arguments\n\
                 f={}/msg.$$.$(date +%s%N)\necho \"args: $*\" > \"$f\"\ncat >> \"$f\"\n",
                mail_dir.display()
            ),
        )
        .unwrap();
        crate::common::chmod_r("755", &sendmail);
        let config = dir.join("backup.yml");
        PlanDir {
            local,
            offsite,
            dir,
            config,
            bin_dir,
            mail_dir,
        }
    }

    /// The `repositories:` section for both repositories.
    pub fn repositories(&self) -> String {
        format!(
            "repositories:\n  local:\n    url: {}\n    password_file: {}\n  offsite:\n    url: {}\n    password_file: {}\n",
            self.local.repo.display(),
            self.dir.join("local.pass").display(),
            self.offsite.repo.display(),
            self.dir.join("offsite.pass").display(),
        )
    }

    pub fn write(&self, yaml: &str) {
        std::fs::write(&self.config, yaml).unwrap();
    }

    /// `snap ARGS` with the plan's environment: no repository or password variables (the
    /// plan names them), the fake sendmail first on PATH, local time UTC.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        let path = format!(
            "{}:{}",
            self.bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        c.args(args)
            .env_remove("SNAP_REPOSITORY")
            .env_remove("SNAP_PASSWORD")
            .env_remove("SNAP_PASSWORD_FILE")
            .env("SNAP_CACHE_DIR", &self.local.cache)
            .env("SNAP_CONFIG", &self.config)
            .env("PATH", path)
            .env("TZ", "UTC");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// The run log's records.
    pub fn runs(&self) -> Vec<serde_json::Value> {
        let log = self.dir.join("backup.runs.jsonl");
        match std::fs::read_to_string(&log) {
            Ok(t) => t
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Every message the fake sendmail was given.
    pub fn mails(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.mail_dir)
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        v.sort();
        v
    }
}

/// An HTTP server on 127.0.0.1:`port` answering 200 to everything and keeping each request
/// (head and body) in order.
pub struct Listener {
    pub requests: Arc<Mutex<Vec<(String, String)>>>,
}

impl Listener {
    pub fn start(port: u16) -> Listener {
        let l = TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("cannot listen on 127.0.0.1:{port}: {e}"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let r = requests.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let mut reader = BufReader::new(s.try_clone().unwrap());
                let mut head = String::new();
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    head.push_str(&line);
                }
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                r.lock()
                    .unwrap()
                    .push((head, String::from_utf8_lossy(&body).into_owned()));
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        Listener { requests }
    }

    pub fn bodies(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b.clone())
            .collect()
    }
}

/// Lines of `text` containing `needle`.
pub fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Renders a page in headless Chromium; its `<body data-status>` after the scripts ran.
pub fn chromium_status(page: &Path) -> String {
    let o = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium (apt-get install chromium)");
    assert!(
        o.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let dom = String::from_utf8_lossy(&o.stdout).into_owned();
    let at = dom
        .find("data-status=\"")
        .unwrap_or_else(|| panic!("no data-status in\n{dom}"));
    let rest = &dom[at + "data-status=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// A PNG screenshot of a page (1280 wide); checks it is a PNG of some size.
pub fn chromium_screenshot(page: &Path, png: &Path, height: u32) {
    let o = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--window-size=1280,{height}"))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let bytes = std::fs::read(png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000,
        "{} bytes",
        bytes.len()
    );
    // where a person can look at it (the report's description in the issue note comes from one)
    if let Some(keep) = std::env::var_os("SNAP_TEST_SCREENSHOT_DIR") {
        let dest = Path::new(&keep).join(png.file_name().unwrap());
        std::fs::copy(png, dest).unwrap();
    }
}
