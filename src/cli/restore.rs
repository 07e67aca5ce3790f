//! `snap restore`: restore a snapshot or a path inside it into a directory.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Result;
use snap::repo::lock::Operation;
use snap::restorer::{self, RestoreOptions, RestoreProgress};

use super::latest::LatestArgs;
use super::progress::Ticker;
use super::{Ctx, bytes};

#[derive(clap::Args)]
pub struct Args {
    /// SNAPSHOT or SNAPSHOT:SUBPATH (`latest` works)
    snapshot: String,
    /// Directory to restore into
    #[arg(short, long)]
    target: PathBuf,
    /// Only restore paths matching this glob (repeatable)
    #[arg(long)]
    include: Vec<String>,
    /// Skip paths matching this glob (repeatable)
    #[arg(long)]
    exclude: Vec<String>,
    /// Read every restored file back and compare it with the snapshot
    #[arg(long)]
    verify: bool,
    #[command(flatten)]
    latest: LatestArgs,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<u8> {
    let (spec, sub) = a.snapshot.split_once(':').unwrap_or((&a.snapshot, ""));
    let (mut repo, _lock) = ctx.open_locked(Operation::Restore)?;
    let (id, snap) = repo.find_snapshot(spec, &a.latest.filter())?;
    let root = repo.resolve(&snap.tree, &id.short(), sub)?;
    let opts = RestoreOptions {
        target: a.target,
        includes: a.include,
        excludes: a.exclude,
        verify: a.verify,
    };
    let progress = Arc::new(RestoreProgress::default());
    progress
        .bytes_total
        .store(snap.summary.bytes_total, Ordering::Relaxed);
    let p = progress.clone();
    let ticker = Ticker::start(
        ctx.show_progress(),
        "{elapsed_precise} [{bar:30}] {percent:>3}% {bytes}/{total_bytes} ETA {eta} {msg}",
        move |bar| {
            bar.set_length(p.bytes_total.load(Ordering::Relaxed));
            bar.set_position(p.bytes.load(Ordering::Relaxed));
            bar.set_message(format!("{} files", p.files.load(Ordering::Relaxed)));
        },
    );
    let summary = restorer::restore(&repo, &root, &opts, &progress, &ctx.interrupt);
    drop(ticker);
    let summary = summary?;
    for w in &summary.warnings {
        eprintln!("snap: warning: {w}");
    }
    if summary.setid_dropped > 0 && !ctx.quiet {
        eprintln!(
            "snap: note: setuid/setgid bits not restored on {} entries (only root restores them)",
            summary.setid_dropped
        );
    }
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({"snapshot": id.to_hex(), "summary": summary})
        );
    } else if !ctx.quiet {
        println!(
            "restored snapshot {} into {}: {} files, {} dirs, {} other entries, {}{}",
            id.short(),
            opts.target.display(),
            summary.files,
            summary.dirs,
            summary.other,
            bytes(summary.bytes),
            if opts.verify {
                format!("; {} files verified", summary.verified_files)
            } else {
                String::new()
            }
        );
    }
    Ok(if summary.warnings.is_empty() { 0 } else { 3 })
}
