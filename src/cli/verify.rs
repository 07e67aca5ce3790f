//! `snap verify`: the verification drill (restore into scratch, compare, report, alert).

use std::path::PathBuf;

use anyhow::{Context, Result};
use snap::database::drill::{self, DrillOptions};
use snap::repo::lock::Operation;

use super::Ctx;
use super::latest::LatestArgs;
use super::mysql_args::Conn;

#[derive(clap::Args)]
pub struct Args {
    /// Snapshot id prefix or `latest`
    snapshot: String,
    /// Scratch server for the database part (URL; default as for backup --mysql). Scratch
    /// databases are named snapverify_<snapshot>_<db> and dropped afterwards
    #[arg(long, value_name = "URL")]
    scratch: Option<String>,
    #[command(flatten)]
    conn: Conn,
    /// Directory for the file part's temporary restore
    #[arg(long, default_value = "/var/tmp")]
    scratch_dir: PathBuf,
    /// Write the report as Markdown to this file
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Run this shell command when the drill fails (the report is in $SNAP_REPORT). It gets
    /// snap's environment without passwords, tokens and secrets (see snap::secrets)
    #[arg(long, env = "SNAP_ALERT_CMD", value_name = "CMD")]
    alert_cmd: Option<String>,
    #[arg(long, default_value_t = 2)]
    threads: usize,
    #[command(flatten)]
    latest: LatestArgs,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<u8> {
    let (repo, _lock) = ctx.open_locked(Operation::Verify)?;
    let mut repo = repo;
    let (id, _) = repo.find_snapshot(&a.snapshot, &a.latest.filter())?;
    let opts = DrillOptions {
        scratch: Some(a.conn.target(a.scratch.as_deref())?),
        scratch_dir: a.scratch_dir,
        threads: a.threads.max(1),
    };
    let r = drill::run(&repo, &id, &opts, &ctx.interrupt)?;
    let md = r.markdown();
    let report = match &a.report {
        Some(f) => f.clone(),
        None => std::env::temp_dir().join(format!("snap-verify-{}.md", id.short())),
    };
    std::fs::write(&report, &md).with_context(|| format!("cannot write {}", report.display()))?;
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else if !ctx.quiet {
        print!("{md}");
        println!("\nreport written to {}", report.display());
    }
    if r.ok {
        return Ok(0);
    }
    for f in &r.failures {
        eprintln!("snap: verification failed: {f}");
    }
    if let Some(cmd) = &a.alert_cmd {
        let mut sh = std::process::Command::new("sh");
        let status = snap::secrets::scrub_command(&mut sh)
            .arg("-c")
            .arg(cmd)
            .env("SNAP_REPORT", &report)
            .env("SNAP_SNAPSHOT", id.to_hex())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("snap: the alert command failed: {status:?}");
        }
    }
    Ok(24)
}
