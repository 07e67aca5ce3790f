//! `snap ls` and `snap cat`: browse a snapshot without restoring it.

use std::io::Write;

use anyhow::Result;
use snap::error::Error;
use snap::repo::lock::Operation;
use snap::tree::{Node, NodeKind};

use super::Ctx;
use super::latest::LatestArgs;

#[derive(clap::Args)]
pub struct LsArgs {
    /// Snapshot id prefix or `latest`
    snapshot: String,
    /// Directory inside the snapshot
    #[arg(default_value = "/")]
    path: String,
    /// Show mode, owner, size and time
    #[arg(short, long)]
    long: bool,
    /// List subdirectories too
    #[arg(short = 'R', long)]
    recursive: bool,
    #[command(flatten)]
    latest: LatestArgs,
}

#[derive(clap::Args)]
pub struct CatArgs {
    /// Snapshot id prefix or `latest`
    snapshot: String,
    /// File inside the snapshot
    path: String,
    #[command(flatten)]
    latest: LatestArgs,
}

fn kind_char(k: NodeKind) -> char {
    match k {
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::Chardev => 'c',
        NodeKind::Blockdev => 'b',
        NodeKind::Socket => 's',
        NodeKind::File => '-',
    }
}

fn line(path: &str, n: &Node, long: bool, json: bool) -> String {
    if json {
        return serde_json::json!({
            "path": path, "type": n.kind, "mode": n.mode & 0o7777, "uid": n.uid, "gid": n.gid,
            "size": n.size, "mtime_ns": n.mtime, "target": n.target.as_ref().map(|t| String::from_utf8_lossy(t)),
        })
        .to_string();
    }
    let shown = path.escape_debug().to_string();
    if !long {
        return shown;
    }
    let t = chrono::DateTime::from_timestamp(n.mtime.div_euclid(1_000_000_000), 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default();
    let target = n
        .target
        .as_ref()
        .map(|t| format!(" -> {}", String::from_utf8_lossy(t)))
        .unwrap_or_default();
    format!(
        "{}{:04o} {:>6} {:>6} {:>12} {t} {shown}{target}",
        kind_char(n.kind),
        n.mode & 0o7777,
        n.uid,
        n.gid,
        n.size
    )
}

pub fn ls(ctx: &Ctx, a: LsArgs) -> Result<u8> {
    let (mut repo, _lock) = ctx.open_locked(Operation::Browse)?;
    let (id, snap) = repo.find_snapshot(&a.snapshot, &a.latest.filter())?;
    let node = repo.resolve(&snap.tree, &id.short(), &a.path)?;
    let out = std::io::stdout();
    let mut out = out.lock();
    let prefix = a.path.trim_end_matches('/').to_string();
    let Some(tree) = node.subtree else {
        writeln!(out, "{}", line(&prefix, &node, a.long, ctx.json))?;
        return Ok(0);
    };
    repo.walk(&tree, &prefix, &mut |p, n| {
        writeln!(out, "{}", line(p, n, a.long, ctx.json))
            .map_err(|e| Error::io("cannot write", "stdout", e))?;
        Ok(a.recursive)
    })?;
    Ok(0)
}

pub fn cat(ctx: &Ctx, a: CatArgs) -> Result<u8> {
    let (mut repo, _lock) = ctx.open_locked(Operation::Browse)?;
    let (id, snap) = repo.find_snapshot(&a.snapshot, &a.latest.filter())?;
    let node = repo.resolve(&snap.tree, &id.short(), &a.path)?;
    if node.kind != NodeKind::File {
        anyhow::bail!(
            "{} in snapshot {} is a {:?}, not a file",
            a.path,
            id.short(),
            node.kind
        );
    }
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    repo.write_content(&node, &mut out)?;
    out.flush()?;
    Ok(0)
}
