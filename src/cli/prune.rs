//! `snap prune`: a thin shell over `snap::prune` — parse the limits, take the prune lock,
//! print the plan and what was done.

use std::time::Duration;

use anyhow::Result;
use snap::prune::{self, Limit, PruneOptions};
use snap::repo::lock::Operation;

use super::{Ctx, bytes};

#[derive(clap::Args)]
pub struct Args {
    /// Unused space tolerated in kept packs: a percentage of the used bytes (`5%`) or a size
    /// (`100M`); partly used packs are repacked until the rest is below it
    #[arg(long, default_value = "5%", value_parser = parse_limit)]
    max_unused: Limit,
    /// Copy at most this many bytes while repacking (`1G`, `500M`)
    #[arg(long, value_parser = parse_size)]
    max_repack: Option<u64>,
    /// Delete a pack only this long after it was found unused (`24h`, `30m`, `0`)
    #[arg(long, default_value = "24h", value_parser = snap::duration::parse)]
    grace: Duration,
    /// How long to wait for running backups before deleting (the exclusive lock)
    #[arg(long, default_value = "10m", value_parser = snap::duration::parse)]
    lock_wait: Duration,
    /// Print the plan only; change nothing
    #[arg(long, short = 'n')]
    dry_run: bool,
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 500M, 2G, 1048576)"))?;
    let mult: u64 = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("{s:?}: unknown size unit (use K, M, G or T)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

fn parse_limit(s: &str) -> Result<Limit, String> {
    match s.trim().strip_suffix('%') {
        Some(p) => {
            let v: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a percentage (e.g. 5%)"))?;
            if !(0.0..=100.0).contains(&v) {
                return Err(format!("{s:?}: a percentage is between 0% and 100%"));
            }
            Ok(Limit::Percent(v))
        }
        None => parse_size(s).map(Limit::Bytes),
    }
}

pub fn run(ctx: &Ctx, a: Args) -> Result<u8> {
    run_with(
        ctx,
        PruneOptions {
            max_unused: a.max_unused,
            max_repack: a.max_repack,
            grace: a.grace,
            dry_run: a.dry_run,
            lock_wait: a.lock_wait,
        },
    )
}

/// The options `snap prune` has by default (what `forget --prune` runs with).
pub fn default_options(dry_run: bool) -> PruneOptions {
    PruneOptions {
        max_unused: Limit::Percent(5.0),
        max_repack: None,
        grace: Duration::from_secs(24 * 3600),
        dry_run,
        lock_wait: Duration::from_secs(600),
    }
}

/// Prunes with `opts` under the prune lock (released on return).
pub fn prune_locked(ctx: &Ctx, opts: &PruneOptions) -> Result<prune::PruneReport> {
    let (mut repo, _lock) = ctx.open_locked(Operation::Prune)?;
    let opened = repo.notes.len();
    let r = prune::prune(&mut repo, opts, ctx.interrupt.clone())?;
    ctx.notes(&repo.notes[opened..]);
    Ok(r)
}

/// Prunes with `opts` and prints the result.
pub fn run_with(ctx: &Ctx, opts: PruneOptions) -> Result<u8> {
    let r = prune_locked(ctx, &opts)?;
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(0);
    }
    print(ctx, &r, opts.dry_run)
}

/// The plan and what was done, for a human.
pub fn print(ctx: &Ctx, r: &prune::PruneReport, dry_run: bool) -> Result<u8> {
    if ctx.quiet && !dry_run {
        return Ok(0);
    }
    let p = &r.plan;
    let s = &p.stats;
    println!(
        "{} snapshots, {} trees; {} packs, {} ({} used by {} blobs, {} unused)",
        r.snapshots,
        r.trees,
        s.packs,
        bytes(s.bytes),
        bytes(s.used_bytes),
        s.blobs_kept,
        bytes(s.unused_bytes)
    );
    println!(
        "plan: mark {} unused pack(s), keep {} marked, recover {}, repack {} ({} copied), delete {} ({}), {} freed later",
        p.mark.len(),
        p.keep_marked.len(),
        p.recover.len(),
        p.repack.len(),
        bytes(s.repack_bytes),
        p.due.len(),
        bytes(s.bytes_freed),
        bytes(s.bytes_freed_later)
    );
    if dry_run {
        for id in &p.due {
            println!("would delete {}", snap::backend::pack_path(id));
        }
        for id in &p.repack {
            println!("would repack {}", snap::backend::pack_path(id));
        }
        if let Some(ms) = r.estimate_ms {
            println!(
                "time estimate for the real run: {:.1} s (the walk measured now, repacking at the read rate measured now)",
                ms as f64 / 1000.0
            );
        }
        println!("dry run: nothing changed");
        return Ok(0);
    }
    if r.repacked.packs_read > 0 {
        println!(
            "repacked {} pack(s): {} blobs into {} new pack(s), {}",
            r.repacked.packs_read,
            r.repacked.blobs_copied,
            r.repacked.packs_written,
            bytes(r.repacked.bytes_written)
        );
    }
    for p in &r.recovered_at_sweep {
        println!("recovered {p}: a snapshot written during the prune uses it");
    }
    println!(
        "deleted {} pack(s), freed {}; exclusive lock held {}",
        r.deleted.len(),
        bytes(r.bytes_freed),
        match r.exclusive_lock_ms {
            Some(ms) => format!("{ms} ms"),
            None => "never".into(),
        }
    );
    if let Some(d) = &r.deferred {
        eprintln!("snap: {d}");
    }
    Ok(0)
}
