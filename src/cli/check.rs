//! `snap check` and `snap unlock`.

use anyhow::Result;
use snap::checker::{self, ReadData};
use snap::repo::lock::{self, Operation};

use super::{Ctx, bytes};

#[derive(clap::Args)]
pub struct Args {
    /// Also read every pack and verify every blob
    #[arg(long, conflicts_with = "read_data_subset")]
    read_data: bool,
    /// Read part of the packs: `P%` (least recently verified first, so repeated runs cover the
    /// repository) or `n/t` (group n of t)
    #[arg(long, value_name = "SPEC")]
    read_data_subset: Option<ReadData>,
}

#[derive(clap::Args)]
pub struct UnlockArgs {
    /// Also remove other hosts' locks that missed two refreshes (never a lock whose process
    /// runs on this host, nor one refreshed within the last two refresh periods)
    #[arg(long)]
    remove_all: bool,
}

#[derive(clap::Subcommand)]
pub enum Repair {
    /// Delete the local index cache and rebuild it from pack headers
    Index,
}

pub fn repair_index(ctx: &Ctx) -> Result<u8> {
    let (mut repo, _lock) = ctx.open_locked(Operation::RepairIndex)?;
    let opened = repo.notes.len();
    let packs = repo.rebuild_index()?;
    ctx.notes(&repo.notes[opened..]);
    if ctx.json {
        println!("{}", serde_json::json!({"packs": packs}));
    } else if !ctx.quiet {
        println!("index rebuilt from {packs} pack headers");
    }
    Ok(0)
}

pub fn run(ctx: &Ctx, a: Args) -> Result<u8> {
    let (mut repo, _lock) = ctx.open_locked(Operation::Check)?;
    let read = match (a.read_data, a.read_data_subset) {
        (_, Some(subset)) => subset,
        (true, None) => ReadData::All,
        (false, None) => ReadData::None,
    };
    let opened = repo.notes.len();
    let progress = std::sync::Arc::new(checker::CheckProgress::default());
    let p = progress.clone();
    let ticker = super::progress::Ticker::start(
        ctx.show_progress() && read != ReadData::None,
        "{elapsed_precise} [{bar:30}] {percent:>3}% {bytes}/{total_bytes} read and verified, ETA {eta}",
        move |bar| {
            use std::sync::atomic::Ordering::Relaxed;
            bar.set_length(p.bytes_total.load(Relaxed));
            bar.set_position(p.bytes_read.load(Relaxed));
        },
    );
    let r = checker::check_with_progress(&mut repo, read, &progress);
    drop(ticker);
    let r = r?;
    ctx.notes(&repo.notes[opened..]);
    // loud in every mode: a gap limits what can be restored
    for a in &r.binlog {
        for g in &a.gaps {
            eprintln!(
                "snap: WARNING: binary-log archive {} has a gap {g}",
                a.source
            );
        }
        for h in &a.holes {
            eprintln!(
                "snap: WARNING: binary-log archive {} has a hole: {h}",
                a.source
            );
        }
    }
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(exit_code(&r));
    }
    for p in &r.problems {
        println!("DAMAGED {}: {}", p.file, p.what);
        for a in &p.affected {
            println!("  affects {a}");
        }
        if p.affected_omitted > 0 {
            println!("  affects {} more path(s)", p.affected_omitted);
        }
    }
    for a in r.binlog.iter().filter(|_| !ctx.quiet) {
        match &a.recovery_point {
            Some(p) => println!(
                "binary-log archive {}: recovery point {} ({}, GTID state {})",
                a.source,
                p.time.as_deref().unwrap_or("?"),
                p.position,
                p.gtid_state
            ),
            None => println!(
                "binary-log archive {}: no recovery point (no full backup lies in it)",
                a.source
            ),
        }
    }
    if !ctx.quiet {
        for l in &r.locks {
            println!("info: lock {l}");
        }
        for p in &r.unreferenced_packs {
            println!(
                "info: pack {p} is not referenced by any snapshot (left by an interrupted backup or a removed snapshot; reused or pruned later)"
            );
        }
        println!(
            "checked {} snapshots, {} trees, {} data blob references, {} packs{}: {}",
            r.snapshots,
            r.trees,
            r.data_blob_references,
            r.packs,
            if r.packs_read.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} read in full, {})",
                    r.packs_read.len(),
                    bytes(r.bytes_read)
                )
            },
            if r.problems.is_empty() {
                "no errors".to_string()
            } else {
                format!("{} problem(s)", r.problems.len())
            }
        );
    }
    Ok(exit_code(&r))
}

/// 0 clean, 1 damage found, 26 no damage but a binary-log archive has a gap or hole (usage
/// errors are 2, a missing repository 10: see `main`).
fn exit_code(r: &checker::CheckReport) -> u8 {
    if !r.problems.is_empty() {
        1
    } else if r
        .binlog
        .iter()
        .any(|a| !a.gaps.is_empty() || !a.holes.is_empty())
    {
        26
    } else {
        0
    }
}

pub fn unlock(ctx: &Ctx, a: UnlockArgs) -> Result<u8> {
    let repo = ctx.open()?;
    let r = lock::remove_stale(repo.backend().as_ref(), repo.key(), a.remove_all)?;
    if !r.removed.is_empty() {
        let summary = snap::audit::Summary {
            locks_removed: r.removed.clone(),
            ..Default::default()
        };
        snap::audit::record(&repo, snap::audit::Action::Unlock, summary)?;
    }
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else if !ctx.quiet {
        println!("removed {} lock(s)", r.removed.len());
        for k in &r.kept {
            println!("kept {k}");
        }
    }
    Ok(0)
}
