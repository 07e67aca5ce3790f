//! `snap snapshots`: list snapshots, optionally filtered by host and tag.

use anyhow::Result;
use snap::snapshot::SnapshotFilter;

use super::{Ctx, bytes};

#[derive(clap::Args)]
pub struct Args {
    /// Only snapshots of this host
    #[arg(long)]
    host: Option<String>,
    /// Only snapshots with this tag (repeatable: all must match)
    #[arg(long)]
    tag: Vec<String>,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<u8> {
    let mut repo = ctx.open()?;
    let filter = SnapshotFilter {
        host: a.host,
        tags: a.tag,
        with_database: false,
    };
    let list: Vec<_> = repo
        .snapshots()?
        .into_iter()
        .filter(|(_, s)| filter.matches(s))
        .collect();
    ctx.notes(&repo.notes);
    if ctx.json {
        let v: Vec<_> = list.iter().map(|(id, s)| serde_json::json!({"id": id.to_hex(), "short_id": id.short(), "snapshot": s})).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    println!(
        "{:<8}  {:<19}  {:<12}  {:<12}  {:>10}  {:<12}  paths",
        "id", "time", "host", "kind", "size", "tags"
    );
    for (id, s) in &list {
        let time = s
            .time_parsed()
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_else(|| s.time.clone());
        println!(
            "{:<8}  {:<19}  {:<12}  {:<12}  {:>10}  {:<12}  {}{}",
            id.short(),
            time,
            s.host,
            kind(s),
            bytes(s.summary.bytes_total),
            s.tags.join(","),
            s.paths.join(" "),
            if s.incomplete { "  (incomplete)" } else { "" }
        );
    }
    if !ctx.quiet {
        println!("{} snapshot(s)", list.len());
    }
    Ok(0)
}

/// The kind column: the files part's kind, the database part's, or both (each part has its own:
/// a second `backup --mysql` dumps in full although its empty files part has a parent).
fn kind(s: &snap::snapshot::Snapshot) -> String {
    match (&s.mysql, s.paths.is_empty()) {
        (Some(m), true) => format!("db {}", m.kind.as_str()),
        (Some(m), false) => format!("{}+db {}", s.kind.as_str(), m.kind.as_str()),
        (None, _) => s.kind.as_str().to_string(),
    }
}
