//! `snap mysql archive`, `snap mysql timeline`, `snap mysql consolidate` and
//! `snap mysql restore --until*`: parse the
//! options, make one library call, print (text or `--json`). Gaps are printed to stderr as
//! warnings and end the command with exit code 26, after everything that could be stored was.

use std::time::Duration;

use anyhow::{Result, bail};
use snap::database::DbRestoreOptions;
use snap::database::binlog::{self, ArchiveOptions, Chain, PitrOptions, Target};
use snap::error::Error;
use snap::repo::Repository;
use snap::repo::lock::Operation;
use snap::snapshot::BinlogGap;

use super::Ctx;
use super::mysql_args::Conn;

#[derive(clap::Args)]
pub struct ArchiveArgs {
    /// Server URL (default as for backup --mysql)
    url: Option<String>,
    #[command(flatten)]
    conn: Conn,
    /// Stay connected as a replica and archive as the server writes (until Ctrl-C / SIGTERM)
    #[arg(long)]
    follow: bool,
    /// With --follow: make what was received durable at least this often (e.g. 10s, 500ms, 1m)
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_flush_every)]
    flush_every: Duration,
    /// With --follow: the server id this replica announces (must be unique among the
    /// server's replicas)
    #[arg(long, default_value_t = 4_242_424_242)]
    replica_id: u32,
    /// Say how long until the server purges logs not yet archived
    #[arg(long)]
    warn_purge: bool,
    /// Archive under this name instead of the server's address (for a server that replaced
    /// another at the same address with its own binary-log history)
    #[arg(long, value_name = "NAME")]
    archive: Option<String>,
}

#[derive(clap::Args)]
pub struct TimelineArgs {
    /// Which archive (its source as `timeline` prints it); default: the only one, else the
    /// server the connection options name
    #[arg(long)]
    archive: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(clap::Args)]
pub struct ConsolidateArgs {
    /// The incremental or differential database snapshot (id prefix or `latest`: the newest
    /// one)
    #[arg(default_value = "latest")]
    snapshot: String,
    /// A server without the snapshot's databases, where the replay and the checks run (never
    /// the live server: one holding any of the databases is refused)
    #[arg(long, value_name = "URL")]
    scratch: String,
    #[command(flatten)]
    conn: Conn,
    /// Loader and dump connections
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

#[derive(clap::Args, Default)]
pub struct UntilArgs {
    /// Restore to this moment: every transaction committed at or before it (UTC unless a zone
    /// is given: 2026-12-01T13:00:05Z, "2026-12-01 14:00:05+01:00", "2026-12-01 13:00:05")
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Restore up to and including the transaction at this binlog position
    #[arg(long, value_name = "FILE:POS")]
    until_position: Option<String>,
    /// Restore up to and including this transaction (DOMAIN-SERVER-SEQ)
    #[arg(long, value_name = "GTID")]
    until_gtid: Option<String>,
    /// Stop before the target instead of including it
    #[arg(long)]
    exclusive: bool,
    /// Print the plan (full, binlog range, events) and change nothing
    #[arg(long)]
    dry_run: bool,
    /// Which archive (default: the only one, else the server the connection options name)
    #[arg(long)]
    archive: Option<String>,
}

impl UntilArgs {
    pub fn given(&self) -> bool {
        self.until.is_some() || self.until_position.is_some() || self.until_gtid.is_some()
    }

    fn target(&self) -> Result<Target> {
        match (&self.until, &self.until_position, &self.until_gtid) {
            (Some(t), None, None) => Ok(Target::Time(parse_time(t)?)),
            (None, Some(p), None) => {
                let Some((f, pos)) = p.rsplit_once(':') else {
                    bail!("--until-position takes FILE:POS, not {p:?}");
                };
                let pos: u64 = pos
                    .parse()
                    .map_err(|_| anyhow::anyhow!("--until-position: {pos:?} is not a number"))?;
                Ok(Target::Position(f.to_string(), pos))
            }
            (None, None, Some(g)) => Ok(Target::Gtid(g.parse().map_err(anyhow::Error::msg)?)),
            _ => bail!("give one of --until, --until-position, --until-gtid"),
        }
    }
}

/// `--flush-every`: a duration (`10s`, `500ms`, `2m`) above zero and below a day.
fn parse_flush_every(s: &str) -> std::result::Result<Duration, String> {
    let d = snap::duration::parse(s)?;
    if d.is_zero() || d >= Duration::from_secs(86_400) {
        return Err(format!("{s:?} must be between 0 and 24h"));
    }
    Ok(d)
}

/// A time in UTC unless it names a zone; seconds since the epoch.
fn parse_time(s: &str) -> Result<i64> {
    let t = s.trim();
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(d.timestamp());
    }
    for f in ["%Y-%m-%d %H:%M:%S%:z", "%Y-%m-%dT%H:%M:%S%:z"] {
        if let Ok(d) = chrono::DateTime::parse_from_str(t, f) {
            return Ok(d.timestamp());
        }
    }
    for f in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(d) = chrono::NaiveDateTime::parse_from_str(t, f) {
            return Ok(d.and_utc().timestamp());
        }
    }
    bail!("--until {t:?} is not a time (2026-12-01T13:00:05Z, \"2026-12-01 13:00:05\")")
}

/// The archive a command means: the named one, the only one, or the server's.
fn pick_source(repo: &mut Repository, named: Option<&str>, conn: &Conn) -> Result<String> {
    if let Some(n) = named {
        return Ok(n.to_string());
    }
    let mut sources: Vec<String> = repo
        .snapshots()?
        .into_iter()
        .filter_map(|(_, s)| s.binlog.map(|b| b.source))
        .collect();
    sources.sort();
    sources.dedup();
    if sources.len() == 1 {
        return Ok(sources.remove(0));
    }
    Ok(binlog::archive::source_name(&conn.target(None)?))
}

fn warn_gaps(ctx: &Ctx, gaps: &[BinlogGap]) -> Result<()> {
    for g in gaps {
        eprintln!("snap: WARNING: binary-log archive gap {g}");
    }
    let _ = ctx;
    match gaps.first() {
        Some(g) => Err(Error::ArchiveGap {
            count: gaps.len(),
            first: format!("{} before {}: {}", g.kind, g.before, g.detail),
        }
        .into()),
        None => Ok(()),
    }
}

pub fn archive(ctx: &Ctx, a: ArchiveArgs) -> Result<u8> {
    let target = a.conn.target(a.url.as_deref())?;
    let mut repo = ctx.open()?;
    // a one-shot run holds the lock throughout; a follower takes it per flush (see
    // ArchiveOptions::lock_per_flush)
    let _lock = if a.follow {
        None
    } else {
        Some(ctx.lock(&mut repo, Operation::Backup)?)
    };
    let opts = ArchiveOptions {
        target,
        follow: a.follow,
        flush_every: a.flush_every,
        replica_id: a.replica_id,
        host: None,
        work_dir: repo.cache_dir().join("work"),
        name: a.archive.clone(),
        lock_per_flush: a.follow.then(|| ctx.interrupt.clone()),
    };
    let report = binlog::archive(&mut repo, &opts, &ctx.interrupt)?;
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if !ctx.quiet {
        if report.segments.is_empty() {
            println!("nothing new to archive from {}", report.source);
        } else {
            let files: std::collections::BTreeSet<&str> =
                report.segments.iter().map(|s| s.file.as_str()).collect();
            println!(
                "archived {} from {} ({} file(s), {} range(s), {} snapshot(s)); the archive ends \
                 at {}",
                super::bytes(report.bytes),
                report.source,
                files.len(),
                report.segments.len(),
                report.snapshots.len(),
                report.end.as_deref().unwrap_or("?")
            );
        }
    }
    if a.warn_purge {
        let w = binlog::archive::purge_warning(&report, report.started);
        if ctx.json {
            eprintln!("{}", serde_json::to_string(&w)?);
        }
        match (w.expire_seconds, &w.oldest_unarchived, w.seconds_left) {
            (0, _, _) => eprintln!(
                "snap: the server never purges binary logs by age (binlog_expire_logs_seconds \
                 and expire_logs_days are 0)"
            ),
            (e, Some(f), Some(left)) => eprintln!(
                "snap: {}: {f} (closed {}) was not archived when this run started and the server \
                 may purge it at {} ({}); the server purges a log {e}s after it closes: archive \
                 at least that often (or keep `--follow` running)",
                if left < 0 { "WARNING" } else { "purge horizon" },
                w.closed_at.as_deref().unwrap_or("?"),
                w.purge_at.as_deref().unwrap_or("?"),
                if left < 0 {
                    format!("{}s overdue", -left)
                } else {
                    format!("{left}s after this run started")
                }
            ),
            (e, _, _) => eprintln!(
                "snap: every closed log was archived; the server purges a log {e}s after it \
                 closes: archive at least that often (or keep `--follow` running)"
            ),
        }
    }
    warn_gaps(ctx, &report.gaps)?;
    Ok(0)
}

pub fn timeline(ctx: &Ctx, a: TimelineArgs) -> Result<u8> {
    let (mut repo, _lock) = ctx.open_locked(Operation::Browse)?;
    let source = pick_source(&mut repo, a.archive.as_deref(), &a.conn)?;
    let all = repo.snapshots()?;
    let chain = Chain::from_snapshots(&all, &source);
    let tl = binlog::timeline(&all, &chain);
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&tl)?);
    } else {
        println!(
            "archive {} (server_id {})",
            tl.source,
            tl.server_id.unwrap_or(0)
        );
        for f in &tl.fulls {
            println!(
                "full      {}  {}  at {}:{}{}{}",
                &f.snapshot[..8],
                f.time,
                f.binlog_file,
                f.binlog_position,
                f.gtid
                    .as_deref()
                    .map(|g| format!(" GTID {g}"))
                    .unwrap_or_default(),
                if f.in_archive {
                    ""
                } else {
                    "  (not in the archive)"
                }
            );
        }
        for s in &tl.stretches {
            println!(
                "archived  {} .. {}  {} .. {}  GTID {} .. {}  ({} file(s), {})",
                s.from,
                s.to,
                s.first_time.as_deref().unwrap_or("?"),
                s.last_time.as_deref().unwrap_or("?"),
                s.gtid_first.as_deref().unwrap_or("-"),
                s.gtid_last.as_deref().unwrap_or("-"),
                s.files,
                super::bytes(s.bytes)
            );
        }
        for h in &tl.holes {
            println!("hole      {h}");
        }
        match &tl.recovery_point {
            Some(r) => println!(
                "recovery point: {} ({}, GTID state {}) from full {}",
                r.time.as_deref().unwrap_or("?"),
                r.position,
                r.gtid_state,
                &r.full[..8]
            ),
            None => println!("recovery point: none (no full backup lies in the archive)"),
        }
    }
    warn_gaps(ctx, &tl.gaps)?;
    Ok(0)
}

pub fn restore_to(ctx: &Ctx, u: &UntilArgs, conn: &Conn, restore: DbRestoreOptions) -> Result<u8> {
    let target = u.target()?;
    let (mut repo, _lock) = ctx.open_locked(Operation::MysqlRestore)?;
    let source = pick_source(&mut repo, u.archive.as_deref(), conn)?;
    run_plan(ctx, &mut repo, u, &source, target, None, restore)
}

/// `mysql restore SNAPSHOT` of an incremental or differential database backup: its full, then
/// the archived range to its end.
pub fn restore_range(
    ctx: &Ctx,
    repo: &mut Repository,
    m: &snap::snapshot::MysqlSummary,
    restore: DbRestoreOptions,
) -> Result<u8> {
    let (Some(file), Some(pos), Some(base)) = (&m.binlog_file, m.binlog_position, m.base) else {
        bail!("the snapshot's database part names no range end or full");
    };
    let target = Target::Position(file.clone(), pos);
    // the range ends at `pos`, which is where the next transaction starts: stop before it
    let until = UntilArgs {
        exclusive: true,
        ..UntilArgs::default()
    };
    run_plan(ctx, repo, &until, &m.source, target, Some(base), restore)
}

fn run_plan(
    ctx: &Ctx,
    repo: &mut Repository,
    u: &UntilArgs,
    source: &str,
    target: Target,
    force_full: Option<snap::id::Id>,
    restore: DbRestoreOptions,
) -> Result<u8> {
    let plan = binlog::plan(repo, source, &target, u.exclusive, force_full)?;
    let print_plan = |p: &binlog::PitrPlan| {
        println!(
            "plan: full {} ({}), then replay {} .. {} ({} file(s), {} events, {} transactions); \
             last transaction applied: {} at {}",
            &p.full[..8],
            p.full_time,
            p.from,
            p.to,
            p.files.len(),
            p.events,
            p.transactions,
            p.last_gtid.as_deref().unwrap_or("(none: the full itself)"),
            p.last_time.as_deref().unwrap_or("-")
        )
    };
    if u.dry_run {
        if ctx.json {
            println!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            print_plan(&plan);
        }
        return Ok(0);
    }
    if !ctx.json && !ctx.quiet {
        print_plan(&plan);
    }
    let opts = PitrOptions {
        target,
        exclusive: u.exclusive,
        restore,
        work_dir: repo.cache_dir().join("work"),
        scratch: false,
    };
    let out = binlog::restore_to(repo, plan, source, &opts, &ctx.interrupt)?;
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if !ctx.quiet {
        if let Some(pre) = &out.restore.pre_restore {
            println!(
                "saved the databases about to be replaced ({}) in snapshot {}",
                out.restore.replaced.join(", "),
                &pre[..8]
            );
        }
        println!(
            "restored full {} ({} tables verified) and replayed {} transactions to {} in {:.1}s",
            &out.plan.full[..8],
            out.restore.report.tables.len(),
            out.plan.transactions,
            out.plan.target,
            out.replay_ms as f64 / 1000.0
        );
    }
    Ok(0)
}

pub fn consolidate(ctx: &Ctx, a: ConsolidateArgs) -> Result<u8> {
    let scratch = a.conn.target(Some(&a.scratch))?;
    let (mut repo, _lock) = ctx.open_locked(Operation::Backup)?;
    let (id, _) = if a.snapshot == "latest" {
        let all = repo.snapshots()?;
        let newest = all
            .into_iter()
            .rev()
            .find(|(_, s)| s.mysql.as_ref().is_some_and(|m| !m.kind.is_full()));
        match newest {
            Some(found) => found,
            None => bail!("the repository holds no incremental or differential database backup"),
        }
    } else {
        repo.find_snapshot(&a.snapshot, &snap::snapshot::SnapshotFilter::default())?
    };
    let opts = binlog::ConsolidateOptions {
        scratch,
        threads: a.threads.max(1),
        host: None,
        work_dir: repo.cache_dir().join("work"),
    };
    let out = binlog::consolidate(&mut repo, &id, &opts, &ctx.interrupt)?;
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if !ctx.quiet {
        println!(
            "snapshot {} is a new full of {} at {}:{}: full {} plus {} replayed transaction(s), \
             {} table(s) verified against the replay in {:.1}s; the increments before it can now \
             be forgotten",
            &out.snapshot[..8],
            out.databases.join(", "),
            out.binlog_file,
            out.binlog_position,
            &out.base[..8],
            out.transactions_replayed,
            out.tables_verified,
            out.duration_ms as f64 / 1000.0
        );
    }
    Ok(0)
}
