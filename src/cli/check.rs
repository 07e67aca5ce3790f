//! `snap check` and `snap unlock`.

use anyhow::Result;
use snap::checker;
use snap::repo::lock::{self, LockGuard};

use super::{Ctx, bytes};

#[derive(clap::Args)]
pub struct Args {
    /// Also read every pack and verify every blob
    #[arg(long)]
    read_data: bool,
}

#[derive(clap::Args)]
pub struct UnlockArgs {
    /// Remove every lock, not only stale ones (only when no snap is running anywhere)
    #[arg(long)]
    remove_all: bool,
}

#[derive(clap::Subcommand)]
pub enum Repair {
    /// Delete the local index cache and rebuild it from pack headers
    Index,
}

pub fn repair_index(ctx: &Ctx) -> Result<u8> {
    let mut repo = ctx.open()?;
    let packs = repo.rebuild_index()?;
    ctx.notes(&repo.notes);
    if ctx.json {
        println!("{}", serde_json::json!({"packs": packs}));
    } else if !ctx.quiet {
        println!("index rebuilt from {packs} pack headers");
    }
    Ok(0)
}

pub fn run(ctx: &Ctx, a: Args) -> Result<u8> {
    let mut repo = ctx.open()?;
    let _lock = LockGuard::take(repo.backend().clone(), repo.key(), false)?;
    let r = checker::check(&mut repo, a.read_data)?;
    ctx.notes(&repo.notes);
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        for p in &r.problems {
            println!(
                "DAMAGED {}: {}{}",
                p.file,
                p.what,
                if p.affected.is_empty() {
                    String::new()
                } else {
                    format!(" (affects {})", p.affected.join(", "))
                }
            );
        }
        if !ctx.quiet {
            for p in &r.unreferenced_packs {
                println!(
                    "info: pack {p} is not referenced by any snapshot (left by an interrupted backup; reused or pruned later)"
                );
            }
            println!(
                "checked {} snapshots, {} trees, {} data blobs, {} packs{}: {}",
                r.snapshots,
                r.trees,
                r.data_blobs_referenced,
                r.packs,
                if a.read_data {
                    format!(" ({} read)", bytes(r.bytes_read))
                } else {
                    String::new()
                },
                if r.problems.is_empty() {
                    "no errors".to_string()
                } else {
                    format!("{} problem(s)", r.problems.len())
                }
            );
        }
    }
    Ok(if r.problems.is_empty() { 0 } else { 1 })
}

pub fn unlock(ctx: &Ctx, a: UnlockArgs) -> Result<u8> {
    let repo = ctx.open()?;
    let removed = lock::remove_stale(repo.backend().as_ref(), repo.key(), a.remove_all)?;
    if ctx.json {
        println!("{}", serde_json::json!({"removed": removed}));
    } else if !ctx.quiet {
        println!("removed {} lock(s)", removed.len());
    }
    Ok(0)
}
