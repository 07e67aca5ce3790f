//! `snap stats`: a thin shell over `snap::stats`.

use anyhow::Result;
use snap::repo::lock::Operation;
use snap::snapshot::SnapshotFilter;

use super::{Ctx, bytes};

#[derive(Clone, Copy, clap::ValueEnum)]
enum Mode {
    /// What restoring the snapshots would write
    RestoreSize,
    /// The unique blobs they use, before and after compression
    RawData,
}

#[derive(clap::Args)]
pub struct Args {
    /// Snapshots to count (`latest`, ids or prefixes); all when none is given
    snapshots: Vec<String>,
    /// What the headline counts (both are in --json)
    #[arg(long, value_enum, default_value = "restore-size")]
    mode: Mode,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<u8> {
    let (mut repo, _lock) = ctx.open_locked(Operation::Stats)?;
    let all = a.snapshots.is_empty();
    let chosen: Vec<_> = if all {
        repo.snapshots()?
            .into_iter()
            .map(|(id, s)| (id, s.tree))
            .collect()
    } else {
        let mut v = Vec::new();
        for spec in &a.snapshots {
            let (id, s) = repo.find_snapshot(spec, &SnapshotFilter::default())?;
            v.push((id, s.tree));
        }
        v
    };
    let s = snap::stats::stats(&repo, &chosen, all)?;
    ctx.notes(&repo.notes);
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(0);
    }
    match a.mode {
        Mode::RestoreSize => println!(
            "{} snapshots: {} files, {} restore size",
            s.snapshots,
            s.files,
            bytes(s.restore_size)
        ),
        Mode::RawData => println!(
            "{} snapshots: {} unique blobs, {} raw, {} stored",
            s.snapshots,
            s.blobs,
            bytes(s.raw_bytes),
            bytes(s.stored_bytes)
        ),
    }
    println!(
        "dedup ratio {:.2}, compression ratio {:.2}; {} of {} packs ({})",
        s.dedup_ratio,
        s.compression_ratio,
        s.packs,
        s.repository_packs,
        bytes(s.repository_bytes)
    );
    if let Some(u) = s.unused_bytes {
        println!("unused: {} (what `snap prune` can give back)", bytes(u));
    }
    Ok(0)
}
