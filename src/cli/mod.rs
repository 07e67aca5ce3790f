//! Command-line definitions and the shared plumbing of every command: repository location,
//! password, cache directory, interrupt flag and output mode.

mod audit;
mod backup;
mod browse;
mod check;
mod copy;
mod diff;
mod forget;
mod init;
mod key;
mod latest;
mod mysql;
mod mysql_args;
mod mysql_binlog;
mod plan;
mod progress;
mod prune;
mod restore;
mod snapshots;
mod stats;
mod status;
mod verify;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use snap::backend::Location;
use snap::error::Error;
use snap::repo::{Repository, lock};
use zeroize::Zeroizing;

#[derive(Parser)]
#[command(
    name = "snap",
    version,
    about = "Deduplicating, encrypted backups of files and databases"
)]
pub struct Cli {
    /// Repository location: a directory (or local:PATH), s3://BUCKET/PREFIX, or
    /// sftp://USER@HOST[:PORT]/PATH
    #[arg(short = 'r', long = "repo", env = "SNAP_REPOSITORY", global = true)]
    repo: Option<String>,
    /// S3 endpoint for an S3-compatible server, e.g. http://127.0.0.1:9000 (else
    /// SNAP_S3_ENDPOINT, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, or AWS)
    #[arg(long, global = true, value_name = "URL")]
    s3_endpoint: Option<String>,
    /// Read the repository password from this file (first line). Wins over SNAP_PASSWORD_FILE,
    /// which wins over SNAP_PASSWORD
    // no `env =`: the flag and SNAP_PASSWORD_FILE rank differently (see `Ctx::password`)
    #[arg(long, global = true)]
    password_file: Option<PathBuf>,
    /// Where the local index cache lives (default $XDG_CACHE_HOME/snap)
    #[arg(long, env = "SNAP_CACHE_DIR", global = true)]
    cache_dir: Option<PathBuf>,
    /// No progress bars or summaries
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Machine-readable output
    #[arg(long, global = true)]
    json: bool,
    /// After the command, print where its time went, stage by stage (read, chunk, hash, index
    /// lookup, compress, seal, pack, write, and waits on each queue) to stderr; a JSON object
    /// with --json
    #[arg(long, global = true)]
    stats: bool,
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new repository
    Init(init::Args),
    /// Back up files and directories
    Backup(backup::Args),
    /// List snapshots
    Snapshots(snapshots::Args),
    /// List the entries of a snapshot
    Ls(browse::LsArgs),
    /// Write one file of a snapshot to stdout
    Cat(browse::CatArgs),
    /// Restore a snapshot (or a path inside it) into a directory
    Restore(restore::Args),
    /// Show what changed between two snapshots (added, removed, modified, metadata)
    Diff(diff::Args),
    /// Remove snapshots by retention policy (--keep-daily 7 ...) or by id; their data stays until
    /// a prune
    Forget(forget::Args),
    /// Check the repository's structure (and with --read-data, every byte)
    Check(check::Args),
    /// Delete packs no snapshot uses (after a grace period) and repack partly used ones
    Prune(prune::Args),
    /// Sizes: restore size, unique raw and stored data, dedup and compression ratios, unused bytes
    Stats(stats::Args),
    /// Copy snapshots from another repository into this one (only blobs it lacks; resumable)
    Copy(copy::Args),
    /// Backups by host and paths in this and further repositories (--also), and whether each
    /// has an offsite copy (3-2-1)
    Status(status::Args),
    /// Remove stale locks
    Unlock(check::UnlockArgs),
    /// List the audit log: who (key, host, user) changed the repository, how and when
    Audit(audit::Args),
    /// Manage the passwords that open the repository
    #[command(subcommand)]
    Key(key::Key),
    /// Repair repository caches
    #[command(subcommand)]
    Repair(check::Repair),
    /// Database operations on snapshots
    #[command(subcommand)]
    Mysql(mysql::Mysql),
    /// Prove a snapshot restores: database into scratch databases, files into a scratch
    /// directory, everything compared with what the backup recorded; writes a report
    Verify(verify::Args),
    /// backup.yml: validate it, or print a commented example
    #[command(subcommand)]
    Config(plan::Config),
    /// Run the backup plan in backup.yml: what is due now (for `* * * * * snap run`), the named
    /// jobs at once (--now), or as a daemon (--daemon)
    Run(plan::RunArgs),
    /// Print the plan as crontab lines or systemd timers and services
    Schedule(plan::ScheduleArgs),
    /// Show the run log: one line per run of a job
    Log(plan::LogArgs),
    /// Prometheus metrics of the plan (node-exporter textfile collector: --textfile DIR)
    Metrics(plan::MetricsArgs),
    /// A report people can look at: one self-contained HTML page (--html FILE) or --json
    Report(plan::ReportArgs),
}

pub struct Ctx {
    repo: Option<String>,
    s3_endpoint: Option<String>,
    password_file: Option<PathBuf>,
    cache_dir: PathBuf,
    pub quiet: bool,
    pub json: bool,
    pub interrupt: Arc<AtomicBool>,
}

impl Ctx {
    /// The repository's location from `-r/--repo` or `SNAP_REPOSITORY`.
    pub fn location(&self) -> Result<Location> {
        let s = self.repo.as_deref().ok_or_else(|| {
            anyhow::anyhow!("no repository given: pass -r/--repo or set SNAP_REPOSITORY")
        })?;
        self.parse_location(s)
    }

    /// Any repository location given on the command line (`--copy-to`, `--from-repo`), with the
    /// same `--s3-endpoint`.
    pub fn parse_location(&self, s: &str) -> Result<Location> {
        Ok(Location::parse(s, self.s3_endpoint.as_deref())?)
    }

    /// The repository password, for every command, from the first of:
    /// 1. `--password-file FILE` on the command line,
    /// 2. the file named by `SNAP_PASSWORD_FILE`,
    /// 3. `SNAP_PASSWORD`.
    ///
    /// What the user named explicitly wins over what the environment happens to hold (a
    /// `SNAP_PASSWORD` exported in a shell profile must not silently override the file a cron
    /// job names), and a file wins over a value for the same reason.
    pub fn password(&self) -> Result<Zeroizing<String>> {
        if let Some(f) = &self.password_file {
            return read_password_file(f);
        }
        if let Some(f) = std::env::var_os("SNAP_PASSWORD_FILE").filter(|f| !f.is_empty()) {
            return read_password_file(std::path::Path::new(&f));
        }
        if let Some(p) = std::env::var_os("SNAP_PASSWORD") {
            let p = p
                .into_string()
                .map_err(|_| anyhow::anyhow!("SNAP_PASSWORD is not valid UTF-8"))?;
            return Ok(Zeroizing::new(p));
        }
        Err(Error::NoPassword.into())
    }

    pub fn open(&self) -> Result<Repository> {
        self.open_with(Repository::open)
    }

    fn open_with(
        &self,
        open: fn(
            &snap::backend::Location,
            &[u8],
            &std::path::Path,
        ) -> snap::error::Result<Repository>,
    ) -> Result<Repository> {
        let repo = open(
            &self.location()?,
            self.password()?.as_bytes(),
            &self.cache_dir,
        )?;
        self.notes(&repo.notes);
        Ok(repo)
    }

    /// The local cache directory (every repository has its own folder in it, by id).
    pub fn cache_dir(&self) -> &std::path::Path {
        &self.cache_dir
    }

    pub fn notes(&self, notes: &[String]) {
        if !self.quiet {
            for n in notes {
                eprintln!("snap: {n}");
            }
        }
    }

    /// The lock `op` needs (one table: `snap::repo::lock::Operation::lock`); losing it raises
    /// the interrupt flag, and `run` reports why.
    ///
    /// A prune may have marked or deleted packs between opening the repository and taking the
    /// lock, so commands that read or deduplicate against packs sync the index again now: with
    /// the lock held no pack is deleted until they end, so what the index says stays true.
    pub fn lock(&self, repo: &mut Repository, op: lock::Operation) -> Result<lock::LockGuard> {
        let guard = lock::LockGuard::for_op(repo, op, self.interrupt.clone())?;
        if syncs_after_lock(op) {
            let opened = repo.notes.len();
            repo.sync_index()?;
            self.notes(&repo.notes[opened..]);
        }
        Ok(guard)
    }

    /// Opens the repository and takes the lock `op` needs. The index is synced once, after the
    /// lock (see [`Ctx::lock`]), instead of at opening too: on an object store that is two
    /// listings fewer on every backup.
    pub fn open_locked(&self, op: lock::Operation) -> Result<(Repository, lock::LockGuard)> {
        let mut repo = if syncs_after_lock(op) {
            self.open_with(Repository::open_unsynced)?
        } else {
            self.open()?
        };
        let guard = self.lock(&mut repo, op)?;
        Ok((repo, guard))
    }

    /// Progress bars only for a human watching a terminal.
    pub fn show_progress(&self) -> bool {
        !self.quiet && !self.json && std::io::stderr().is_terminal()
    }
}

/// Whether [`Ctx::lock`] syncs the index for `op` (the commands that read or deduplicate
/// against packs; prune and the key and repair commands work from listings of their own).
fn syncs_after_lock(op: lock::Operation) -> bool {
    use lock::Operation::*;
    !matches!(
        op,
        Prune | PruneDelete | KeyList | KeyAdd | KeyRemove | KeyPasswd | RepairIndex
    )
}

pub fn run() -> Result<u8> {
    let cli = Cli::parse();
    let interrupt = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while we are shutting down cleanly ends the process at once.
        signal_hook::flag::register_conditional_shutdown(sig, 130, interrupt.clone())?;
        signal_hook::flag::register(sig, interrupt.clone())?;
    }
    let ctx = Ctx {
        repo: cli.repo,
        s3_endpoint: cli.s3_endpoint,
        password_file: cli.password_file,
        cache_dir: cli.cache_dir.unwrap_or_else(snap::repo::default_cache_dir),
        quiet: cli.quiet,
        json: cli.json,
        interrupt,
    };
    let (stats, started) = (cli.stats, snap::stages::Stages::snapshot());
    let r = match cli.cmd {
        Command::Init(a) => init::run(&ctx, a),
        Command::Backup(a) => backup::run(&ctx, a),
        Command::Snapshots(a) => snapshots::run(&ctx, a),
        Command::Ls(a) => browse::ls(&ctx, a),
        Command::Cat(a) => browse::cat(&ctx, a),
        Command::Restore(a) => restore::run(&ctx, a),
        Command::Diff(a) => diff::run(&ctx, a),
        Command::Forget(a) => forget::run(&ctx, a),
        Command::Check(a) => check::run(&ctx, a),
        Command::Prune(a) => prune::run(&ctx, a),
        Command::Stats(a) => stats::run(&ctx, a),
        Command::Copy(a) => copy::run(&ctx, a),
        Command::Status(a) => status::run(&ctx, a),
        Command::Unlock(a) => check::unlock(&ctx, a),
        Command::Audit(a) => audit::run(&ctx, a),
        Command::Key(k) => key::run(&ctx, k),
        Command::Repair(check::Repair::Index) => check::repair_index(&ctx),
        Command::Mysql(m) => mysql::run(&ctx, m),
        Command::Verify(a) => verify::run(&ctx, a),
        Command::Config(c) => plan::config(&ctx, c),
        Command::Run(a) => plan::run(&ctx, a),
        Command::Schedule(a) => plan::schedule(&ctx, a),
        Command::Log(a) => plan::log(&ctx, a),
        Command::Metrics(a) => plan::metrics(&ctx, a),
        Command::Report(a) => plan::report(&ctx, a),
    };
    if stats {
        // On stderr, so stdout stays the command's own output (one JSON document with --json).
        let report = started.report();
        if ctx.json {
            eprintln!("{}", serde_json::json!({ "stages": report }));
        } else {
            eprintln!("{report}");
        }
    }
    // An operation stopped because its lock could not be kept says so, not "interrupted".
    match (r, lock::lost()) {
        (Err(_), Some(lost)) => Err(lost.into()),
        (r, _) => r,
    }
}

/// The first line of a password file.
pub fn read_password_file(f: &std::path::Path) -> Result<Zeroizing<String>> {
    let s = Zeroizing::new(
        std::fs::read_to_string(f)
            .with_context(|| format!("cannot read password file {}", f.display()))?,
    );
    Ok(Zeroizing::new(
        s.lines().next().unwrap_or_default().to_string(),
    ))
}

/// Human-readable byte counts.
pub fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}
