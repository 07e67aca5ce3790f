//! `snap copy`: copy snapshots from another repository (`--from-repo`) into the one given by
//! `-r`; and the copy step of `snap backup --copy-to`, which shares [`copy_into`].

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Result;
use snap::backend::Location;
use snap::copy::{self, CopyOptions, CopyOutcome, CopyProgress};
use snap::id::Id;
use snap::repo::Repository;
use snap::repo::lock::Operation;
use snap::snapshot::{Snapshot, SnapshotFilter};
use zeroize::Zeroizing;

use super::progress::Ticker;
use super::{Ctx, bytes};

#[derive(clap::Args)]
pub struct Args {
    /// The repository to copy from: a directory (or local:PATH), s3://BUCKET/PREFIX or
    /// sftp://USER@HOST[:PORT]/PATH
    #[arg(long, value_name = "URL")]
    from_repo: String,
    /// Read the source repository's password from this file (default: the same password as the
    /// destination's)
    #[arg(long, value_name = "FILE")]
    from_password_file: Option<PathBuf>,
    /// Snapshots to copy: ids, unique prefixes or `latest` (default: every snapshot the
    /// --host/--tag filters accept). Snapshots the destination already has are skipped
    snapshots: Vec<String>,
    /// Only snapshots of this host
    #[arg(long)]
    host: Option<String>,
    /// Only snapshots with this tag (repeatable: all must match)
    #[arg(long)]
    tag: Vec<String>,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<u8> {
    let from = ctx.parse_location(&a.from_repo)?;
    let from_password = match &a.from_password_file {
        Some(f) => super::read_password_file(f)?,
        None => ctx.password()?,
    };
    let opts = CopyOptions {
        snapshots: a.snapshots,
        filter: SnapshotFilter {
            host: a.host,
            tags: a.tag,
            with_database: false,
        },
    };
    let mut src = open(ctx, &from, &from_password)?;
    let _src_lock = ctx.lock(&mut src, Operation::Copy)?;
    let mut dst = match ctx.open() {
        Ok(d) => d,
        Err(e) => {
            if let Some(snap::error::Error::NoRepository(to)) = e.downcast_ref() {
                eprintln!(
                    "snap: hint: create the destination with `snap -r {to} init --from-repo {from}`: \
                     it then shares blob ids with the source, and copies move blobs as they are"
                );
            }
            return Err(e);
        }
    };
    let _dst_lock = ctx.lock(&mut dst, Operation::Copy)?;
    let out = with_progress(ctx, |p| {
        copy::copy(&mut src, &mut dst, &opts, p, &ctx.interrupt)
    })?;
    ctx.notes(&src.notes);
    ctx.notes(&dst.notes);
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if !ctx.quiet {
        print_outcome(&out, &from, &dst);
    }
    Ok(0)
}

fn open(ctx: &Ctx, location: &Location, password: &Zeroizing<String>) -> Result<Repository> {
    let repo = Repository::open(location, password.as_bytes(), ctx.cache_dir())?;
    ctx.notes(&repo.notes);
    Ok(repo)
}

/// Runs `f` under a progress bar for a terminal.
fn with_progress<T>(ctx: &Ctx, f: impl FnOnce(&CopyProgress) -> T) -> T {
    let progress = Arc::new(CopyProgress::default());
    let p = progress.clone();
    let ticker = Ticker::start(
        ctx.show_progress(),
        "{spinner} {elapsed_precise} {msg}",
        move |bar| {
            bar.set_message(format!(
                "snapshot {}/{}, {} trees, {} blobs read ({})  {}",
                p.snapshots_done.load(Ordering::Relaxed),
                p.snapshots.load(Ordering::Relaxed),
                p.trees.load(Ordering::Relaxed),
                p.blobs_read.load(Ordering::Relaxed),
                bytes(p.bytes_read.load(Ordering::Relaxed)),
                p.current.lock().map(|c| c.clone()).unwrap_or_default()
            ));
            bar.tick();
        },
    );
    let out = f(&progress);
    drop(ticker);
    out
}

fn print_outcome(out: &CopyOutcome, from: &Location, dst: &Repository) {
    for c in &out.snapshots {
        if c.skipped {
            println!(
                "skipped {}: already in {} as {}",
                c.source.short(),
                dst.backend().location(),
                c.copy.short()
            );
        } else {
            println!(
                "copied {} → {}  {}  {}  {}",
                c.source.short(),
                c.copy.short(),
                c.time,
                c.host,
                c.paths.join(" ")
            );
        }
    }
    let s = &out.stats;
    println!(
        "{} snapshot(s) copied from {from}, {} already there ({}); read {} blobs ({}), added {} \
         blobs in {} packs ({}, {} before compression) in {:.1}s",
        out.copied,
        out.skipped,
        match out.mode {
            copy::CopyMode::SharedIds => "shared blob ids: nothing re-hashed",
            copy::CopyMode::Rekeyed => "unrelated repositories: ids computed again",
        },
        s.blobs_read,
        bytes(s.bytes_read),
        s.blobs_added,
        s.packs_written,
        bytes(s.bytes_added),
        bytes(s.bytes_added_raw),
        out.duration_ms as f64 / 1000.0
    );
}

/// `backup --copy-to`: copies the snapshot just written (`src` is locked by the backup) into
/// the repository at `to`, taking that one's lock.
pub fn copy_into(
    ctx: &Ctx,
    src: &mut Repository,
    to: &Location,
    password: &Zeroizing<String>,
    snapshot: (Id, Snapshot),
) -> Result<CopyOutcome> {
    let mut dst = open(ctx, to, password)?;
    let _lock = ctx.lock(&mut dst, Operation::Copy)?;
    let out = with_progress(ctx, |p| {
        copy::copy_selected(src, &mut dst, vec![snapshot], p, &ctx.interrupt)
    })?;
    ctx.notes(&dst.notes);
    Ok(out)
}
