//! One run of a job, and the loops that decide which runs are due (`snap run`, `snap run
//! --daemon`).
//!
//! A run: take the job lock on the primary repository (held by this process, refreshed, removed
//! at the end; busy means the slot is skipped and logged), run the before hooks, the step
//! (`snap backup`, `snap mysql archive` or `snap verify`, each retried with exponential backoff
//! while it fails for a transient reason), the copies, then retention (`snap forget` with the
//! class's policy over the job's snapshots, at most once a day per job and repository, and
//! `snap prune` at most once a day per repository), then the after or on-failure hooks; the run
//! log gets one line and the notifications their event.
//!
//! Steps are child `snap` processes (see the module above). They get the passwords as
//! `/dev/fd/N` of an anonymous memory file (`memfd_create`), never in argv or their
//! environment; the variables backup.yml names for passwords are removed from every child's
//! environment, and hooks and notification commands get the scrubbed environment of
//! [`crate::secrets`].

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Local};

use super::file::{Action, Job, Plan, Repository, Secret};
use super::runlog::{self, Retention, RunRecord, SnapshotRef};
use super::schedule::{self, Clock};
use crate::error::{Error, Result};

/// Exit codes of a `snap` step that mean "try again later": lock not taken (11), storage
/// unreachable after its own retries (15), database unreachable (20), database backup lock not
/// granted in time (22), another dump of the server running (23).
pub const TRANSIENT: [i32; 5] = [11, 15, 20, 22, 23];

/// How late after its slot a `--kind` trigger (crontab line, systemd timer) may start and
/// still run the slot's work.
pub const LATE: Duration = Duration::from_secs(3600);

pub struct Runner {
    pub plan: Plan,
    /// The `snap` binary the steps run (this one).
    pub exe: PathBuf,
    pub cache_dir: Option<PathBuf>,
    pub interrupt: Arc<AtomicBool>,
    /// Print a line per run on stderr.
    pub verbose: bool,
}

/// A secret handed to a child as `/dev/fd/N`: an anonymous memory file the child inherits.
struct SecretFd(OwnedFd);

impl SecretFd {
    fn new(value: &[u8]) -> Result<SecretFd> {
        // no MFD_CLOEXEC: the child must inherit it; it lives only until the child is spawned
        let fd = rustix::fs::memfd_create("snap-secret", rustix::fs::MemfdFlags::empty())
            .map_err(|e| Error::io("cannot create", "memfd", e.into()))?;
        let mut f = std::fs::File::from(fd);
        f.write_all(value)
            .map_err(|e| Error::io("cannot write", "memfd", e))?;
        Ok(SecretFd(f.into()))
    }

    fn path(&self) -> String {
        format!("/dev/fd/{}", self.0.as_raw_fd())
    }
}

/// A child `snap` command with the secrets it needs kept alive until it is spawned.
struct Step {
    cmd: Command,
    secrets: Vec<SecretFd>,
    what: String,
}

impl Step {
    /// The job's database password, if it has one, as `--mysql-password-file`.
    fn mysql_password(&mut self, password: Option<&Secret>, job: &Job) -> Result<()> {
        if let Some(p) = password {
            let a = secret_arg(p, &mut self.secrets, &format!("job {} mysql", job.name))?;
            self.cmd.arg("--mysql-password-file").arg(a);
        }
        Ok(())
    }
}

/// What a finished step said.
struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Output {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// The step's own error message (snap's messages carry no secrets).
    fn error(&self, what: &str) -> String {
        let last = self
            .stderr
            .lines()
            .rev()
            .find(|l| l.starts_with("snap: error:"))
            .or_else(|| self.stderr.lines().rev().find(|l| !l.trim().is_empty()))
            .unwrap_or("");
        format!("{what} exited {}: {}", self.code, last.trim())
    }
}

/// Reads `secret`'s value (for the memory file) or names the file.
fn secret_arg(secret: &Secret, secrets: &mut Vec<SecretFd>, whose: &str) -> Result<String> {
    match secret {
        Secret::File(f) => Ok(f.display().to_string()),
        Secret::Env(v) => {
            let value = std::env::var_os(v).ok_or_else(|| {
                Error::Usage(format!(
                    "{whose}: password_env names {v}, which is not set in snap run's environment"
                ))
            })?;
            let fd = SecretFd::new(value.as_encoded_bytes())?;
            let p = fd.path();
            secrets.push(fd);
            Ok(p)
        }
    }
}

fn read_secret(secret: &Secret, whose: &str) -> Result<zeroize::Zeroizing<String>> {
    match secret {
        Secret::File(f) => {
            let s = zeroize::Zeroizing::new(
                std::fs::read_to_string(f).map_err(|e| Error::io("cannot read", f, e))?,
            );
            Ok(zeroize::Zeroizing::new(
                s.lines().next().unwrap_or_default().to_string(),
            ))
        }
        Secret::Env(v) => std::env::var(v).map(zeroize::Zeroizing::new).map_err(|_| {
            Error::Usage(format!(
                "{whose}: password_env names {v}, which is not set (or not UTF-8)"
            ))
        }),
    }
}

impl Runner {
    fn repo(&self, name: &str) -> Result<&Repository> {
        self.plan
            .repositories
            .get(name)
            .ok_or_else(|| Error::Usage(format!("no repository {name:?} in the plan")))
    }

    /// `snap --json -r URL --password-file … ARGS` for repository `name`.
    fn snap(&self, name: &str, what: &str) -> Result<Step> {
        let r = self.repo(name)?;
        let mut cmd = Command::new(&self.exe);
        // Our own steps need the ordinary environment (S3 credentials included); the passwords
        // go by argument, so their variables are removed.
        let named = crate::secrets::SECRET_VARS
            .iter()
            .filter(|v| !v.starts_with("AWS_"));
        for v in named.chain(&["SNAP_REPOSITORY"]) {
            cmd.env_remove(v);
        }
        for v in self.secret_vars() {
            cmd.env_remove(v);
        }
        let mut secrets = Vec::new();
        let pw = secret_arg(&r.password, &mut secrets, &format!("repository {name}"))?;
        cmd.args(["--json", "-q", "-r", &r.url, "--password-file", &pw]);
        if let Some(e) = &r.s3_endpoint {
            cmd.args(["--s3-endpoint", e]);
        }
        if let Some(c) = &self.cache_dir {
            cmd.arg("--cache-dir").arg(c);
        }
        Ok(Step {
            cmd,
            secrets,
            what: what.to_string(),
        })
    }

    /// `snap --json -r REPO ARGS` (a read-only query: `stats`, `status`), its parsed output.
    pub fn query(&self, repo: &str, args: &[&str]) -> Result<serde_json::Value> {
        let mut s = self.snap(repo, &format!("snap {}", args.join(" ")))?;
        s.cmd.args(args);
        let what = s.what.clone();
        let out = self.exec(s)?;
        if out.code != 0 {
            return Err(Error::Usage(format!(
                "repository {repo}: {}",
                out.error(&what)
            )));
        }
        Ok(out.json())
    }

    /// Every variable backup.yml names as a password source.
    fn secret_vars(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for r in self.plan.repositories.values() {
            if let Secret::Env(e) = &r.password {
                v.push(e.clone());
            }
        }
        for j in &self.plan.jobs {
            if let Some(Secret::Env(e)) = j.mysql.as_ref().and_then(|m| m.password.as_ref()) {
                v.push(e.clone());
            }
        }
        v
    }

    /// Runs `step` to its end; SIGTERM is passed on to it when this process is interrupted.
    fn exec(&self, mut step: Step) -> Result<Output> {
        let mut child = step
            .cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io("cannot run", &self.exe, e))?;
        drop(std::mem::take(&mut step.secrets));
        let mut out = child.stdout.take();
        let mut err = child.stderr.take();
        // stderr read beside stdout so neither pipe fills while the other is drained
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(e) = err.as_mut() {
                let _ = e.read_to_string(&mut s);
            }
            s
        });
        let interrupt = self.interrupt.clone();
        let pid = child.id();
        // Passes SIGTERM on when this process is interrupted; dropping `done` ends it at once.
        let (done, finished) = crossbeam_channel::bounded::<()>(0);
        let watcher = std::thread::spawn(move || {
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                finished.recv_timeout(Duration::from_millis(50))
            {
                if interrupt.load(Ordering::SeqCst) {
                    if let Ok(p) = i32::try_from(pid) {
                        // SAFETY: kill only sends a signal to our own child.
                        unsafe { libc::kill(p, libc::SIGTERM) };
                    }
                    return;
                }
            }
        });
        let mut stdout = String::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_string(&mut stdout);
        }
        let status = child
            .wait()
            .map_err(|e| Error::io("cannot wait for", &self.exe, e))?;
        drop(done);
        let _ = watcher.join();
        let stderr = err_reader.join().unwrap_or_default();
        Ok(Output {
            code: status.code().unwrap_or(130),
            stdout,
            stderr,
        })
    }

    /// Runs the step `make` builds until it succeeds, fails for good, or has been retried
    /// `job.retries` times; `retries` counts the retries spent.
    fn retrying(
        &self,
        job: &Job,
        retries: &mut u32,
        make: &dyn Fn() -> Result<Step>,
    ) -> Result<(Output, String)> {
        let mut delay = job.retry_backoff;
        loop {
            let step = make()?;
            let what = step.what.clone();
            let out = self.exec(step)?;
            if !TRANSIENT.contains(&out.code)
                || *retries >= job.retries
                || self.interrupt.load(Ordering::SeqCst)
            {
                return Ok((out, what));
            }
            *retries += 1;
            if self.verbose {
                eprintln!(
                    "snap: {} (transient); retry {}/{} in {}s",
                    out.error(&what),
                    retries,
                    job.retries,
                    delay.as_secs()
                );
            }
            let until = Instant::now() + delay;
            while Instant::now() < until && !self.interrupt.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            delay = delay.saturating_mul(2).min(Duration::from_secs(3600));
        }
    }

    /// Runs `action` of `job` now (on `clock`), whatever its schedule says; one record.
    pub fn run(&self, job: &Job, action: Action, clock: &dyn Clock) -> RunRecord {
        let start = clock.now();
        let wall = Instant::now();
        let mut rec = RunRecord {
            job: job.name.clone(),
            class: job.class.clone(),
            kind: action.as_str().to_string(),
            repositories: std::iter::once(job.repository.clone())
                .chain(job.copy_to.iter().cloned())
                .collect(),
            snapshots: Vec::new(),
            start: start.to_rfc3339(),
            end: String::new(),
            duration_ms: 0,
            bytes_read: 0,
            bytes_added: 0,
            bytes_total: 0,
            files: 0,
            db_lock_ms: None,
            result: "success".into(),
            error: None,
            retries: 0,
            last_event: None,
            retention: Vec::new(),
            host: crate::hostname(),
            pid: std::process::id(),
        };
        let outcome = self.locked(job, action, start, clock, &mut rec);
        match outcome {
            Ok(()) => {}
            Err(Error::JobRunning { holder, .. }) => {
                rec.result = "skipped".into();
                rec.error = Some(format!("previous run still going: {holder}"));
            }
            Err(e) => {
                if rec.result == "success" {
                    rec.result = "failure".into();
                }
                rec.error = Some(e.to_string());
            }
        }
        if rec.result != "skipped" {
            let hooks = if rec.ok() {
                &job.hooks.after
            } else {
                &job.hooks.on_failure
            };
            for h in hooks {
                if let Err(e) = hook(h, job, action, Some(&rec)) {
                    eprintln!("snap: warning: job {}: {e}", job.name);
                }
            }
        }
        let end = if clock.simulated() {
            start + chrono::Duration::milliseconds(wall.elapsed().as_millis() as i64)
        } else {
            clock.now()
        };
        rec.end = end.to_rfc3339();
        rec.duration_ms = u64::try_from(wall.elapsed().as_millis()).unwrap_or(u64::MAX);
        if let Err(e) = runlog::append(&self.plan.log, &rec) {
            eprintln!("snap: error: run log: {e}");
        }
        for e in super::notify::send(&job.notify, &rec) {
            eprintln!("snap: warning: job {}: {e}", job.name);
        }
        if self.verbose {
            eprintln!(
                "snap: job {} {} {}{}",
                rec.job,
                rec.kind,
                rec.result,
                rec.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
        }
        rec
    }

    /// The run under the job lock.
    fn locked(
        &self,
        job: &Job,
        action: Action,
        start: DateTime<Local>,
        clock: &dyn Clock,
        rec: &mut RunRecord,
    ) -> Result<()> {
        let primary = self.repo(&job.repository)?;
        let location =
            crate::backend::Location::parse(&primary.url, primary.s3_endpoint.as_deref())?;
        let pw = read_secret(&primary.password, &format!("repository {}", primary.name))?;
        let (backend, key) = crate::repo::open_for_lock(&location, pw.as_bytes())?;
        let _lock = crate::repo::lock::LockGuard::job(backend, &key, &job.name)?;
        for h in &job.hooks.before {
            hook(h, job, action, None).map_err(|e| Error::Usage(format!("before hook: {e}")))?;
        }
        match action {
            Action::Binlog => self.binlog(job, rec),
            Action::Verify => self.verify(job, rec),
            Action::Check => self.check(job, rec),
            _ => self.backup(job, action, start, clock, rec),
        }
    }

    fn backup(
        &self,
        job: &Job,
        action: Action,
        start: DateTime<Local>,
        clock: &dyn Clock,
        rec: &mut RunRecord,
    ) -> Result<()> {
        let make = || -> Result<Step> {
            let mut s = self.snap(&job.repository, "backup")?;
            s.cmd.arg("backup");
            s.cmd.args(&job.paths);
            for t in [job.tag(), format!("class={}", job.class)] {
                s.cmd.arg("--tag").arg(t);
            }
            for i in &job.include {
                s.cmd.arg("--include").arg(i);
            }
            for e in &job.exclude {
                s.cmd.arg("--exclude").arg(e);
            }
            if let Some(h) = &job.host {
                s.cmd.arg("--host").arg(h);
            }
            s.cmd.arg(match action {
                Action::Full => "--full",
                Action::Differential => "--differential",
                _ => "--incremental",
            });
            if clock.simulated() {
                // the snapshot records the simulated calendar's time (repo-format.md: run log)
                s.cmd.arg("--time").arg(start.fixed_offset().to_rfc3339());
            }
            if let Some(m) = &job.mysql {
                s.cmd.arg(format!("--mysql={}", m.url));
                s.mysql_password(m.password.as_ref(), job)?;
                for (flag, list) in [
                    ("--mysql-database", &m.databases),
                    ("--mysql-exclude-database", &m.exclude_databases),
                    ("--mysql-table", &m.tables),
                    ("--mysql-exclude-table", &m.exclude_tables),
                ] {
                    for v in list {
                        s.cmd.arg(flag).arg(v);
                    }
                }
            }
            Ok(s)
        };
        let (out, what) = self.retrying(job, &mut rec.retries, &make)?;
        let j = out.json();
        let id = j["id"].as_str().map(String::from);
        let Some(id) = id.filter(|_| out.code == 0 || out.code == 3) else {
            rec.result = "failure".into();
            return Err(Error::Usage(out.error(&what)));
        };
        let sum = &j["snapshot"]["summary"];
        rec.bytes_read = sum["bytes_read"].as_u64().unwrap_or(0);
        rec.bytes_added = sum["bytes_added"].as_u64().unwrap_or(0);
        rec.bytes_total = sum["bytes_total"].as_u64().unwrap_or(0);
        rec.files = ["files_new", "files_changed", "files_unmodified"]
            .iter()
            .map(|k| sum[k].as_u64().unwrap_or(0))
            .sum();
        rec.db_lock_ms = j["snapshot"]["mysql"]["lock_ms"].as_f64();
        rec.snapshots.push(SnapshotRef {
            repository: job.repository.clone(),
            id: id.clone(),
        });
        let incomplete = out.code == 3;
        let mut failed = Vec::new();
        for to in &job.copy_to {
            match self.copy(job, to, &id, rec) {
                Ok(copy) => rec.snapshots.push(SnapshotRef {
                    repository: to.clone(),
                    id: copy,
                }),
                Err(e) => failed.push(format!("copy to {to}: {e}")),
            }
        }
        if incomplete {
            rec.result = "incomplete".into();
            return Err(Error::Usage(format!(
                "snapshot {} written but incomplete: {}",
                &id[..8.min(id.len())],
                out.error(&what)
            )));
        }
        if !failed.is_empty() {
            rec.result = "failure".into();
            return Err(Error::Usage(failed.join("; ")));
        }
        self.retention(job, clock, rec)
    }

    /// `snap -r TO copy --from-repo PRIMARY ID`; the copy's id.
    fn copy(&self, job: &Job, to: &str, id: &str, rec: &mut RunRecord) -> Result<String> {
        let primary = self.repo(&job.repository)?;
        let make = || -> Result<Step> {
            let mut s = self.snap(to, "copy")?;
            let from_pw = secret_arg(
                &primary.password,
                &mut s.secrets,
                &format!("repository {}", primary.name),
            )?;
            s.cmd
                .args(["copy", "--from-repo", &primary.url, "--from-password-file"])
                .arg(from_pw)
                .arg(id);
            Ok(s)
        };
        let (out, what) = self.retrying(job, &mut rec.retries, &make)?;
        if out.code != 0 {
            return Err(Error::Usage(out.error(&what)));
        }
        let j = out.json();
        Ok(j["snapshots"][0]["copy"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Forget (per job and repository) and prune (per repository), each at most once a day.
    fn retention(&self, job: &Job, clock: &dyn Clock, rec: &mut RunRecord) -> Result<()> {
        let day = clock.now().format("%Y-%m-%d").to_string();
        let state = &self.plan.state;
        let p = &job.keep;
        for repo in std::iter::once(&job.repository).chain(job.copy_to.iter()) {
            let key = format!("forget:{}@{repo}", job.name);
            if runlog::ran_on(state, &key)?.as_deref() == Some(day.as_str()) {
                continue;
            }
            // prune at most once a day per repository, in the same process as the forget
            let pkey = format!("prune:{repo}");
            let prune = runlog::ran_on(state, &pkey)?.as_deref() != Some(day.as_str());
            let make = || -> Result<Step> {
                let mut s = self.snap(repo, if prune { "forget --prune" } else { "forget" })?;
                s.cmd.args(["forget", "--tag", &job.tag()]);
                if prune {
                    s.cmd.arg("--prune");
                }
                for (flag, n) in [
                    ("--keep-last", p.last),
                    ("--keep-hourly", p.hourly),
                    ("--keep-daily", p.daily),
                    ("--keep-weekly", p.weekly),
                    ("--keep-monthly", p.monthly),
                    ("--keep-yearly", p.yearly),
                ] {
                    if n > 0 {
                        s.cmd.arg(flag).arg(n.to_string());
                    }
                }
                Ok(s)
            };
            let (out, what) = self.retrying(job, &mut rec.retries, &make)?;
            if out.code != 0 {
                return Err(Error::Usage(out.error(&what)));
            }
            let j = out.json();
            let f = if prune { &j["forget"] } else { &j };
            let ids = |k: &str| -> Vec<String> {
                f["groups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|g| g[k].as_array().cloned().unwrap_or_default())
                    .filter_map(|d| d["id"].as_str().map(String::from))
                    .collect()
            };
            let r = Retention {
                repository: repo.clone(),
                kept: ids("keep"),
                removed: ids("remove"),
                pruned: prune,
                pruned_bytes: j["prune"]["bytes_freed"].as_u64().unwrap_or(0),
            };
            runlog::mark(state, &key, &day)?;
            if prune {
                runlog::mark(state, &pkey, &day)?;
            }
            rec.retention.push(r);
        }
        Ok(())
    }

    fn binlog(&self, job: &Job, rec: &mut RunRecord) -> Result<()> {
        let Some(m) = &job.mysql else {
            return Err(Error::Usage(format!(
                "job {} has no mysql source",
                job.name
            )));
        };
        let make = || -> Result<Step> {
            let mut s = self.snap(&job.repository, "mysql archive")?;
            s.cmd.args(["mysql", "archive", &m.url]);
            s.mysql_password(m.password.as_ref(), job)?;
            Ok(s)
        };
        let (out, what) = self.retrying(job, &mut rec.retries, &make)?;
        if out.code != 0 {
            rec.result = "failure".into();
            return Err(Error::Usage(out.error(&what)));
        }
        let j = out.json();
        rec.bytes_added = j["bytes"].as_u64().unwrap_or(0);
        rec.last_event = j["segments"]
            .as_array()
            .and_then(|s| s.iter().filter_map(|g| g["last_time"].as_i64()).max())
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            .map(|t| t.to_rfc3339());
        // `snap mysql archive --json` lists the snapshots it wrote (one per flushed range)
        for id in j["snapshots"].as_array().into_iter().flatten() {
            if let Some(id) = id.as_str() {
                rec.snapshots.push(SnapshotRef {
                    repository: job.repository.clone(),
                    id: id.to_string(),
                });
            }
        }
        Ok(())
    }

    fn verify(&self, job: &Job, rec: &mut RunRecord) -> Result<()> {
        let report = self
            .plan
            .log
            .with_file_name(format!("verify-{}.md", job.name));
        let make = || -> Result<Step> {
            let mut s = self.snap(&job.repository, "verify")?;
            s.cmd
                .args(["verify", "latest", "--tag", &job.tag(), "--report"]);
            s.cmd.arg(&report);
            let scratch = job
                .verify_scratch
                .as_deref()
                .or(job.mysql.as_ref().map(|m| m.url.as_str()));
            if let Some(url) = scratch {
                s.cmd.arg("--scratch").arg(url);
            }
            s.mysql_password(job.mysql.as_ref().and_then(|m| m.password.as_ref()), job)?;
            Ok(s)
        };
        let (out, what) = self.retrying(job, &mut rec.retries, &make)?;
        if out.code != 0 {
            rec.result = "failure".into();
            return Err(Error::Usage(out.error(&what)));
        }
        Ok(())
    }

    /// `snap check` of every repository the job writes to.
    fn check(&self, job: &Job, rec: &mut RunRecord) -> Result<()> {
        let mut failed = Vec::new();
        for repo in std::iter::once(&job.repository).chain(job.copy_to.iter()) {
            let make = || -> Result<Step> {
                let mut s = self.snap(repo, "check")?;
                s.cmd.arg("check");
                if let Some(sub) = &job.check_subset {
                    s.cmd.args(["--read-data-subset", sub]);
                }
                Ok(s)
            };
            let (out, what) = self.retrying(job, &mut rec.retries, &make)?;
            if out.code != 0 {
                failed.push(format!("{repo}: {}", out.error(&what)));
            }
        }
        if failed.is_empty() {
            return Ok(());
        }
        rec.result = "failure".into();
        Err(Error::Usage(failed.join("; ")))
    }

    /// `snap run` once: the work due in `clock`'s minute (or, with `now`, the named jobs' work
    /// at once: `action` or each job's current backup kind), for the jobs named (all if none).
    pub fn run_due(
        &self,
        names: &[String],
        action: Option<Action>,
        now: bool,
        clock: &dyn Clock,
    ) -> Result<Vec<RunRecord>> {
        let t = clock.now();
        let mut jobs = Vec::new();
        for n in names {
            let j = self
                .plan
                .jobs
                .iter()
                .find(|j| &j.name == n)
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "no job {n:?} in {}: jobs are {}",
                        self.plan.file.display(),
                        self.plan
                            .jobs
                            .iter()
                            .map(|j| j.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
            jobs.push(j.clone());
        }
        if jobs.is_empty() {
            jobs = self.plan.jobs.clone();
        }
        let work: Vec<(Job, Action)> = if now {
            jobs.iter()
                .filter_map(|j| {
                    let a = action.or_else(|| current_backup(j, t))?;
                    Some((j.clone(), a))
                })
                .collect()
        } else if let Some(a) = action {
            // A crontab line or timer per schedule: the trigger says the slot came (started up
            // to LATE after it: a busy machine), and it runs unless a fuller backup has the same
            // slot.
            jobs.iter()
                .filter_map(|j| {
                    let slot = j.schedule(a)?.previous_before(t)?;
                    let late = (t - slot).to_std().unwrap_or(Duration::ZERO);
                    (late < LATE && !schedule::superseded(j, a, slot)).then(|| (j.clone(), a))
                })
                .collect()
        } else {
            schedule::due(&jobs, None, t)
                .into_iter()
                .filter_map(|d| {
                    let j = jobs.iter().find(|j| j.name == d.job)?;
                    Some((j.clone(), d.action))
                })
                .collect()
        };
        let mut out = Vec::new();
        for (j, a) in work {
            if self.interrupt.load(Ordering::SeqCst) {
                break;
            }
            out.push(self.run(&j, a, clock));
        }
        Ok(out)
    }
}

/// The backup kind whose schedule fired last before `t` (the kind `--now` repeats); a job's
/// only backup kind if none has fired yet.
pub fn current_backup(job: &Job, t: DateTime<Local>) -> Option<Action> {
    let mut best: Option<(DateTime<Local>, Action)> = None;
    for (a, s) in job.schedules.iter().filter(|(a, _)| a.is_backup()) {
        let prev = s.previous_before(t);
        if let Some(p) = prev
            && best.is_none_or(|(bt, ba)| p > bt || (p == bt && *a > ba))
        {
            best = Some((p, *a));
        }
    }
    best.map(|(_, a)| a).or_else(|| {
        job.schedules
            .iter()
            .filter(|(a, _)| a.is_backup())
            .map(|(a, _)| *a)
            .max()
    })
}

/// Runs a hook (`sh -c`) with the scrubbed environment, `SNAP_JOB`, `SNAP_KIND` and, after the
/// run, `SNAP_RUN` (the record as JSON) and `SNAP_RESULT`.
fn hook(
    cmd: &str,
    job: &Job,
    action: Action,
    rec: Option<&RunRecord>,
) -> std::result::Result<(), String> {
    let mut c = Command::new("sh");
    crate::secrets::scrub_command(&mut c)
        .arg("-c")
        .arg(cmd)
        .env("SNAP_JOB", &job.name)
        .env("SNAP_CLASS", &job.class)
        .env("SNAP_KIND", action.as_str())
        .stdin(Stdio::null());
    if let Some(r) = rec {
        c.env("SNAP_RESULT", &r.result);
        if let Ok(j) = serde_json::to_string(r) {
            c.env("SNAP_RUN", j);
        }
    }
    match c.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("hook {cmd:?} exited with {s}")),
        Err(e) => Err(format!("hook {cmd:?}: {e}")),
    }
}

/// `snap run --daemon`: runs what falls due, on `clock`, until `stop`; on `reload` calls
/// `load` and keeps the old plan (saying why) when the new one does not validate.
pub fn daemon(
    runner: &mut Runner,
    clock: &mut dyn Clock,
    stop: &AtomicBool,
    reload: &AtomicBool,
    load: &dyn Fn() -> std::result::Result<Plan, super::PlanError>,
) {
    let mut cursor = clock.now();
    announce(runner, cursor);
    loop {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if reload.swap(false, Ordering::SeqCst) {
            match load() {
                Ok(p) => {
                    eprintln!("snap: reloaded {}", p.file.display());
                    runner.plan = p;
                }
                Err(e) => eprintln!("snap: error: reload refused, keeping the plan as it was: {e}"),
            }
            announce(runner, cursor);
        }
        let Some(next) = schedule::next_slot(&runner.plan.jobs, cursor) else {
            eprintln!("snap: nothing is scheduled; waiting for SIGHUP or SIGTERM");
            let far = cursor + chrono::Duration::days(3650);
            if !clock.sleep_until(far, &|| {
                stop.load(Ordering::SeqCst) || reload.load(Ordering::SeqCst)
            }) && clock.simulated()
            {
                break;
            }
            continue;
        };
        let woke = clock.sleep_until(next, &|| {
            stop.load(Ordering::SeqCst) || reload.load(Ordering::SeqCst)
        });
        if !woke {
            if clock.simulated() && !stop.load(Ordering::SeqCst) && !reload.load(Ordering::SeqCst) {
                break; // the simulated calendar's end
            }
            continue;
        }
        let now = clock.now();
        let work = schedule::due(&runner.plan.jobs, Some(cursor), now);
        cursor = now;
        for d in work {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let Some(job) = runner.plan.jobs.iter().find(|j| j.name == d.job).cloned() else {
                continue;
            };
            runner.run(&job, d.action, clock);
        }
        if !clock.simulated() {
            announce(runner, cursor);
        }
    }
    eprintln!("snap: daemon stopped");
}

fn announce(runner: &Runner, after: DateTime<Local>) {
    if let Some(next) = schedule::next_slot(&runner.plan.jobs, after) {
        let what: Vec<String> = schedule::due(&runner.plan.jobs, Some(after), next)
            .iter()
            .map(|d| format!("{} {}", d.job, d.action.as_str()))
            .collect();
        eprintln!("snap: next: {} at {}", what.join(", "), next.to_rfc3339());
    }
}
