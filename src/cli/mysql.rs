//! `snap mysql restore`: load a snapshot's database dump into a server, safely; with `--until*`
//! to a point in time (full + archived binary logs). `archive`, `timeline` and `consolidate` are in
//! [`super::mysql_binlog`].

use anyhow::{Result, bail};
use snap::database::{self, DbRestoreOptions};
use snap::mysql::restore::RestoreOptions;
use snap::repo::lock::Operation;

use super::Ctx;
use super::latest::LatestArgs;
use super::mysql_args::Conn;

#[derive(clap::Subcommand)]
pub enum Mysql {
    /// Restore databases from a snapshot; what would be overwritten is first saved in a
    /// `pre-restore` snapshot, and put back if loading or verification fails
    Restore(Box<RestoreArgs>),
    /// Copy the server's binary logs into the repository (byte for byte, deduplicated,
    /// encrypted); with --follow stay connected as a replica
    Archive(super::mysql_binlog::ArchiveArgs),
    /// What can be recovered: full backups, archived binary-log ranges, gaps, recovery point
    Timeline(super::mysql_binlog::TimelineArgs),
    /// Make a new full from an incremental/differential database snapshot (its full plus the
    /// replayed range, done on a scratch server and verified), so older increments can be
    /// forgotten
    Consolidate(super::mysql_binlog::ConsolidateArgs),
}

#[derive(clap::Args)]
pub struct RestoreArgs {
    /// Snapshot id prefix or `latest` (not with --until*: the newest full before the target is
    /// chosen)
    snapshot: Option<String>,
    #[command(flatten)]
    pub pitr: super::mysql_binlog::UntilArgs,
    /// Only this database (repeatable; names as dumped)
    #[arg(long)]
    database: Vec<String>,
    /// Only this table, as DB.TABLE (repeatable)
    #[arg(long)]
    table: Vec<String>,
    /// Restore database DB under the name NEW (repeatable), touching nothing else
    #[arg(long, value_name = "DB:NEW")]
    rename: Vec<String>,
    /// Server to restore into (URL; default as for backup --mysql)
    #[arg(long, value_name = "URL")]
    to: Option<String>,
    #[command(flatten)]
    conn: Conn,
    /// Loader connections
    #[arg(long, default_value_t = 2)]
    threads: usize,
    #[command(flatten)]
    latest: LatestArgs,
}

pub fn run(ctx: &Ctx, m: Mysql) -> Result<u8> {
    let a = match m {
        Mysql::Restore(a) => *a,
        Mysql::Archive(a) => return super::mysql_binlog::archive(ctx, a),
        Mysql::Timeline(a) => return super::mysql_binlog::timeline(ctx, a),
        Mysql::Consolidate(a) => return super::mysql_binlog::consolidate(ctx, a),
    };
    let mut renames = Vec::new();
    for r in &a.rename {
        match r.split_once(':') {
            Some((from, to)) if !from.is_empty() && !to.is_empty() => {
                renames.push((from.to_string(), to.to_string()))
            }
            _ => bail!("--rename takes DB:NEW, not {r:?}"),
        }
    }
    let opts = DbRestoreOptions {
        target: a.conn.target(a.to.as_deref())?,
        load: RestoreOptions {
            databases: a.database,
            tables: a.table,
            renames,
            threads: a.threads.max(1),
            ..RestoreOptions::default()
        },
        host: None,
    };
    if a.pitr.given() {
        if a.snapshot.is_some() {
            bail!("give a snapshot or --until*, not both (--until picks the full itself)");
        }
        return super::mysql_binlog::restore_to(ctx, &a.pitr, &a.conn, opts);
    }
    let Some(snapshot) = &a.snapshot else {
        bail!("name a snapshot (or `latest`), or a point in time with --until*");
    };
    let (mut repo, _lock) = ctx.open_locked(Operation::MysqlRestore)?;
    let (id, snap) = repo.find_snapshot(snapshot, &a.latest.database_filter())?;
    if let Some(m) = snap.mysql.as_ref().filter(|m| !m.kind.is_full()) {
        return super::mysql_binlog::restore_range(ctx, &mut repo, m, opts);
    }
    let out = database::restore(&mut repo, &id, &opts, &ctx.interrupt)?;
    // The pre-restore snapshot is recorded as a backup by the archiver; this says why it exists.
    let summary = snap::audit::Summary {
        snapshots_added: out
            .pre_restore
            .iter()
            .filter_map(|p| snap::id::Id::from_hex(p))
            .collect(),
        note: Some(format!(
            "restored database(s) {} from snapshot {}",
            out.report.databases.join(", "),
            id.short()
        )),
        ..Default::default()
    };
    snap::audit::record(&repo, snap::audit::Action::MysqlRestore, summary)?;
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if !ctx.quiet {
        if let Some(pre) = &out.pre_restore {
            println!(
                "saved the databases about to be replaced ({}) in snapshot {}",
                out.replaced.join(", "),
                &pre[..8]
            );
        }
        let samples: usize = out.report.tables.iter().map(|t| t.samples_checked).sum();
        println!(
            "restored {} database(s) from snapshot {} into {}: {} tables, {} rows in {:.1}s; \
             row counts, checksums and {} sampled rows verified",
            out.report.databases.len(),
            id.short(),
            opts.target,
            out.report.tables.len(),
            out.report.rows,
            out.report.duration_ms as f64 / 1000.0,
            samples
        );
    }
    Ok(0)
}
