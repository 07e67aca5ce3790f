//! `snap mysql restore`: load a snapshot's database dump into a server, safely.

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
    Restore(RestoreArgs),
}

#[derive(clap::Args)]
pub struct RestoreArgs {
    /// Snapshot id prefix or `latest`
    snapshot: String,
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
    let Mysql::Restore(a) = m;
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
    let mut repo = ctx.open()?;
    let _lock = ctx.lock(&mut repo, Operation::MysqlRestore)?;
    let (id, _) = repo.find_snapshot(&a.snapshot, &a.latest.database_filter())?;
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
