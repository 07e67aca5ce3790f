//! `snap diff SNAP1[:PATH] SNAP2[:PATH]`: what changed between two snapshots (or subtrees).

use std::io::Write;

use anyhow::Result;
use snap::diff::{self, Change};
use snap::error::Error;
use snap::id::Id;
use snap::repo::Repository;
use snap::repo::lock::Operation;
use snap::tree::NodeKind;

use super::latest::LatestArgs;
use super::{Ctx, bytes};

#[derive(clap::Args)]
pub struct Args {
    /// The earlier snapshot: SNAPSHOT or SNAPSHOT:SUBPATH (`latest` works)
    before: String,
    /// The later snapshot, same forms
    after: String,
    #[command(flatten)]
    latest: LatestArgs,
}

/// The tree a `SNAPSHOT[:PATH]` names.
fn tree_of(repo: &mut Repository, spec: &str, latest: &LatestArgs) -> Result<Id> {
    let (snap_spec, sub) = spec.split_once(':').unwrap_or((spec, ""));
    let (id, snap) = repo.find_snapshot(snap_spec, &latest.filter())?;
    let node = repo.resolve(&snap.tree, &id.short(), sub)?;
    match (node.kind, node.subtree) {
        (NodeKind::Dir, Some(t)) => Ok(t),
        _ => Err(Error::Usage(format!("{spec} is not a directory: diff compares trees")).into()),
    }
}

pub fn run(ctx: &Ctx, a: Args) -> Result<u8> {
    let (mut repo, _lock) = ctx.open_locked(Operation::Browse)?;
    let before = tree_of(&mut repo, &a.before, &a.latest)?;
    let after = tree_of(&mut repo, &a.after, &a.latest)?;
    let mut changes: Vec<Change> = Vec::new();
    let out = std::io::stdout();
    let mut out = out.lock();
    let json = ctx.json;
    let stats = diff::diff(&repo, &before, &after, &mut |c| {
        if json {
            changes.push(c);
        } else {
            let what = if c.what.is_empty() {
                String::new()
            } else {
                format!("  ({})", c.what.join(", "))
            };
            writeln!(
                out,
                "{}    {}{}{what}",
                c.change.code(),
                c.path,
                if c.is_dir { "/" } else { "" }
            )
            .map_err(|e| Error::io("cannot write", "stdout", e))?;
        }
        Ok(())
    })?;
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"changes": changes, "stats": stats}))?
        )?;
    } else if !ctx.quiet {
        writeln!(
            out,
            "\n{} added, {} removed, {} modified, {} type changed, {} metadata only; +{} -{}",
            stats.added,
            stats.removed,
            stats.modified,
            stats.type_changed,
            stats.metadata_changed,
            bytes(stats.bytes_added),
            bytes(stats.bytes_removed)
        )?;
    }
    Ok(0)
}
