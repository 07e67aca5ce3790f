//! The backup.yml commands: `config check|example`, `run` (cron mode, `--now`, `--daemon`),
//! `schedule --crontab|--systemd`, `log`. Each parses, makes one library call
//! ([`snap::plan`]) and prints.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use snap::plan::file::Action;
use snap::plan::runner::{self, Runner};
use snap::plan::schedule::{self, Clock, SimClock, SystemClock};
use snap::plan::{Plan, runlog};

use super::Ctx;

/// Exit code of `snap run` when a job was skipped (its previous run still held the job lock)
/// and none failed.
pub const SKIPPED: u8 = 34;
/// Exit code of `snap run` when a job failed (after its retries), or wrote an incomplete
/// snapshot.
pub const FAILED: u8 = 35;

#[derive(clap::Args, Clone)]
pub struct ConfigArg {
    /// The plan file
    #[arg(
        short = 'c',
        long = "config",
        env = "SNAP_CONFIG",
        default_value = "/etc/snap/backup.yml"
    )]
    pub config: PathBuf,
}

impl ConfigArg {
    /// The file, absolute (crontab lines and units name it from anywhere).
    fn path(&self) -> Result<PathBuf> {
        std::path::absolute(&self.config)
            .with_context(|| format!("cannot resolve {}", self.config.display()))
    }

    fn load(&self) -> Result<Plan> {
        Ok(snap::plan::load(&self.path()?).map_err(snap::error::Error::from)?)
    }
}

#[derive(clap::Subcommand)]
pub enum Config {
    /// Validate backup.yml: every error names the file, line, column and key
    Check(ConfigArg),
    /// Print a commented example covering the critical, important and normal classes
    Example,
}

pub fn config(ctx: &Ctx, c: Config) -> Result<u8> {
    match c {
        Config::Example => {
            print!("{}", snap::plan::example::EXAMPLE);
            Ok(0)
        }
        Config::Check(a) => {
            let plan = a.load()?;
            if ctx.json {
                let jobs: Vec<_> = plan
                    .jobs
                    .iter()
                    .map(|j| {
                        serde_json::json!({"job": j.name, "class": j.class,
                            "repository": j.repository, "copy_to": j.copy_to,
                            "schedules": j.schedules.iter().map(|(a, s)| (a.as_str(), s.text.clone()))
                                .collect::<std::collections::BTreeMap<_, _>>()})
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({"ok": true, "file": plan.file, "log": plan.log, "jobs": jobs})
                );
            } else if !ctx.quiet {
                println!(
                    "{}: ok, {} repositories, {} jobs",
                    plan.file.display(),
                    plan.repositories.len(),
                    plan.jobs.len()
                );
                for j in &plan.jobs {
                    let s: Vec<String> = j
                        .schedules
                        .iter()
                        .map(|(a, s)| format!("{} \"{}\"", a.as_str(), s.text))
                        .collect();
                    println!("  {} ({}): {}", j.name, j.class, s.join(", "));
                }
            }
            Ok(0)
        }
    }
}

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Only these jobs (default: every job)
    jobs: Vec<String>,
    /// Run the named jobs (or all) at once instead of what is due this minute: `--kind`, or
    /// the backup kind whose schedule fired last
    #[arg(long, conflicts_with = "daemon")]
    now: bool,
    /// The work to do: full, incremental, differential, binlog or verify (crontab lines and
    /// systemd timers pass it; with --now it picks the kind)
    #[arg(long, value_parser = parse_action, conflicts_with = "daemon")]
    kind: Option<Action>,
    /// Keep running and carry out the schedule; SIGHUP reloads the file, SIGTERM stops after
    /// the running step
    #[arg(long)]
    daemon: bool,
    /// Simulated clock (tests, rehearsals): run as if it were this time (RFC 3339); snapshots
    /// record it. With --daemon, the calendar starts here and jumps from slot to slot
    #[arg(long, hide = true, value_parser = schedule::parse_time)]
    at: Option<chrono::DateTime<chrono::Local>>,
    /// With --daemon --at: where the simulated calendar ends
    #[arg(long, hide = true, requires = "at", value_parser = schedule::parse_time)]
    until: Option<chrono::DateTime<chrono::Local>>,
}

fn parse_action(s: &str) -> Result<Action, String> {
    Action::parse(s).ok_or_else(|| {
        format!("{s:?}: one of full, incremental, differential, binlog, verify is allowed")
    })
}

pub fn run(ctx: &Ctx, a: RunArgs) -> Result<u8> {
    let plan = a.config.load()?;
    let exe = std::env::current_exe().context("cannot find the snap binary")?;
    let mut runner = Runner {
        plan,
        exe,
        cache_dir: Some(ctx.cache_dir().to_path_buf()),
        interrupt: ctx.interrupt.clone(),
        verbose: !ctx.quiet,
    };
    if a.daemon {
        let reload = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())?;
        let mut sys = SystemClock;
        let mut sim;
        let clock: &mut dyn Clock = match a.at {
            Some(t) => {
                sim = SimClock::new(t, a.until);
                &mut sim
            }
            None => &mut sys,
        };
        let cfg = a.config.clone();
        let load = move || snap::plan::load(&cfg.path().unwrap_or_else(|_| cfg.config.clone()));
        runner::daemon(&mut runner, clock, &ctx.interrupt, &reload, &load);
        return Ok(0);
    }
    let clock: Box<dyn Clock> = match a.at {
        Some(t) => Box::new(SimClock::new(t, None)),
        None => Box::new(SystemClock),
    };
    let records = runner.run_due(&a.jobs, a.kind, a.now, clock.as_ref())?;
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&records)?);
    } else if !ctx.quiet && records.is_empty() {
        eprintln!(
            "snap: nothing due at {}",
            clock.now().format("%Y-%m-%d %H:%M")
        );
    }
    if ctx.interrupt.load(Ordering::SeqCst) {
        return Err(snap::error::Error::Interrupted.into());
    }
    Ok(
        if records
            .iter()
            .any(|r| r.result != "success" && r.result != "skipped")
        {
            FAILED
        } else if records.iter().any(|r| r.result == "skipped") {
            SKIPPED
        } else {
            0
        },
    )
}

#[derive(clap::Args)]
pub struct ScheduleArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Print crontab lines (install with `crontab FILE`)
    #[arg(long, required_unless_present = "systemd", conflicts_with = "systemd")]
    crontab: bool,
    /// Print (or, with --dir, write) a systemd timer and service per job and schedule
    #[arg(long)]
    systemd: bool,
    /// With --systemd: units for the user's service manager (systemctl --user)
    #[arg(long, requires = "systemd")]
    user: bool,
    /// With --systemd: write the units into this directory instead of printing them
    #[arg(long, requires = "systemd")]
    dir: Option<PathBuf>,
}

pub fn schedule(_ctx: &Ctx, a: ScheduleArgs) -> Result<u8> {
    let plan = a.config.load()?;
    let exe = std::env::current_exe().context("cannot find the snap binary")?;
    let config = a.config.path()?;
    if a.crontab {
        print!("{}", snap::plan::export::crontab(&plan, &exe, &config));
        return Ok(0);
    }
    let units = snap::plan::export::systemd(&plan, &exe, &config, a.user)
        .map_err(snap::error::Error::Usage)?;
    match &a.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            for u in &units {
                let p = d.join(&u.name);
                std::fs::write(&p, &u.text)
                    .with_context(|| format!("cannot write {}", p.display()))?;
            }
            let (dir, ctl) = if a.user {
                ("~/.config/systemd/user", "systemctl --user")
            } else {
                ("/etc/systemd/system", "systemctl")
            };
            eprintln!(
                "snap: wrote {} units to {}; copy them to {dir}, then `{ctl} daemon-reload` and \
                 `{ctl} enable --now` each .timer",
                units.len(),
                d.display()
            );
        }
        None => {
            for u in &units {
                println!("# ---- {} ----\n{}", u.name, u.text);
            }
        }
    }
    Ok(0)
}

#[derive(clap::Args)]
pub struct LogArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Only this job
    #[arg(long)]
    job: Option<String>,
    /// Only runs started since this time (RFC 3339), date (YYYY-MM-DD, local midnight) or this
    /// long ago (7d, 12h)
    #[arg(long)]
    since: Option<String>,
}

/// The runs `--job` and `--since` select.
fn select(plan: &Plan, job: Option<&str>, since: Option<&str>) -> Result<Vec<runlog::RunRecord>> {
    let (records, bad) = runlog::read(&plan.log)?;
    if bad > 0 {
        eprintln!(
            "snap: warning: {bad} unreadable line(s) in {}",
            plan.log.display()
        );
    }
    let since = match since {
        None => None,
        Some(s) => Some(snap::duration::since(s).map_err(|m| anyhow::anyhow!("--since {m}"))?),
    };
    Ok(records
        .into_iter()
        .filter(|r| job.is_none_or(|j| r.job == j))
        .filter(|r| {
            since.is_none_or(|t| {
                chrono::DateTime::parse_from_rfc3339(&r.start).is_ok_and(|s| s >= t)
            })
        })
        .collect())
}

pub fn log(ctx: &Ctx, a: LogArgs) -> Result<u8> {
    let plan = a.config.load()?;
    let runs = select(&plan, a.job.as_deref(), a.since.as_deref())?;
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(0);
    }
    println!(
        "{:<25}  {:<12}  {:<12}  {:<10}  {:>8}  {:>10}  {:<8}  error",
        "start", "job", "kind", "result", "seconds", "added", "snapshot"
    );
    for r in &runs {
        let line = format!(
            "{:<25}  {:<12}  {:<12}  {:<10}  {:>8.1}  {:>10}  {:<8}  {}",
            r.start,
            r.job,
            r.kind,
            r.result,
            r.duration_ms as f64 / 1000.0,
            super::bytes(r.bytes_added),
            r.snapshots
                .first()
                .map(|s| &s.id[..8.min(s.id.len())])
                .unwrap_or("-"),
            r.error.as_deref().unwrap_or("")
        );
        println!("{}", line.trim_end());
    }
    if !ctx.quiet {
        eprintln!("{} run(s) in {}", runs.len(), plan.log.display());
    }
    Ok(0)
}

fn runner(ctx: &Ctx, plan: Plan) -> Result<Runner> {
    Ok(Runner {
        plan,
        exe: std::env::current_exe().context("cannot find the snap binary")?,
        cache_dir: Some(ctx.cache_dir().to_path_buf()),
        interrupt: ctx.interrupt.clone(),
        verbose: false,
    })
}

#[derive(clap::Args)]
pub struct MetricsArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Write DIR/snap.prom for node-exporter's textfile collector (default: print)
    #[arg(long, value_name = "DIR")]
    textfile: Option<PathBuf>,
    /// Leave out repository sizes (they open each repository)
    #[arg(long)]
    no_repositories: bool,
}

pub fn metrics(ctx: &Ctx, a: MetricsArgs) -> Result<u8> {
    let plan = a.config.load()?;
    let runs = select(&plan, None, None)?;
    let status = snap::plan::metrics::job_status(&plan, &runs, chrono::Local::now());
    let r = runner(ctx, plan)?;
    let mut sizes = std::collections::BTreeMap::new();
    if !a.no_repositories {
        for name in r.plan.repositories.keys() {
            match r.query(name, &["stats"]) {
                Ok(s) => {
                    sizes.insert(name.clone(), s["repository_bytes"].as_u64().unwrap_or(0));
                }
                Err(e) => eprintln!("snap: warning: {e}"),
            }
        }
    }
    let text = snap::plan::metrics::render(&status, &sizes);
    match &a.textfile {
        Some(d) => {
            let p = snap::plan::metrics::write_textfile(d, &text)?;
            if !ctx.quiet {
                eprintln!("snap: wrote {}", p.display());
            }
        }
        None => print!("{text}"),
    }
    Ok(0)
}

#[derive(clap::Args)]
pub struct ReportArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Write the report as one self-contained HTML page (no network: scripts and styles inline)
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

pub fn report(ctx: &Ctx, a: ReportArgs) -> Result<u8> {
    if a.html.is_none() && !ctx.json {
        bail!("give --html FILE, --json, or both");
    }
    let plan = a.config.load()?;
    let runs = select(&plan, None, None)?;
    let r = runner(ctx, plan)?;
    let stats = |name: &str| r.query(name, &["stats"]).map_err(|e| e.to_string());
    let rep = snap::plan::report::build(&r.plan, &runs, chrono::Local::now(), &stats);
    if let Some(f) = &a.html {
        let page = snap::plan::report::html(&rep);
        // private like every file snap writes (the umask main sets): it names hosts and paths
        std::fs::write(f, page.as_bytes())
            .with_context(|| format!("cannot write {}", f.display()))?;
        if !ctx.quiet && !ctx.json {
            eprintln!(
                "snap: wrote {} ({} jobs, {} repositories)",
                f.display(),
                rep.jobs.len(),
                rep.repositories.len()
            );
        }
    }
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
    }
    Ok(0)
}
