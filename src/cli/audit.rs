//! `snap audit [--since WHEN] [--json]`: the repository's audit log (`snap::audit`), oldest
//! first. Takes no lock: audit records are never removed or rewritten, so there is nothing a
//! concurrent command could take away mid-read, and a read-only listing writes nothing (an
//! auditor's storage credentials may be read-only).

use anyhow::Result;
use chrono::{DateTime, FixedOffset, Utc};
use snap::audit::{self, AuditRecord};

use super::Ctx;

#[derive(clap::Args)]
pub struct Args {
    /// Only records from this moment on: an RFC 3339 time (2026-12-01T09:00:00Z), a date
    /// (2026-12-01, local midnight) or an age (24h, 7d)
    #[arg(long, value_name = "WHEN", value_parser = snap::duration::since)]
    since: Option<DateTime<FixedOffset>>,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<u8> {
    let repo = ctx.open()?;
    let listing = audit::list(repo.backend().as_ref(), repo.key())?;
    ctx.notes(&listing.notes);
    let shown: Vec<&(snap::id::Id, AuditRecord)> = listing
        .records
        .iter()
        .filter(|(_, r)| match (&a.since, r.time_parsed()) {
            (Some(since), Some(t)) => t >= *since,
            (Some(_), None) => false,
            (None, _) => true,
        })
        .collect();
    if ctx.json {
        let out: Vec<serde_json::Value> = shown
            .iter()
            .map(|(id, r)| {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                v["id"] = serde_json::json!(id.to_hex());
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    for (id, r) in shown {
        println!("{}", line(id, r));
    }
    Ok(0)
}

/// One record as a line: time, action, who, outcome, what changed.
fn line(id: &snap::id::Id, r: &AuditRecord) -> String {
    let time = r
        .time_parsed()
        .map(|t| {
            t.with_timezone(&Utc)
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string()
        })
        .unwrap_or_else(|| r.time.clone());
    let s = &r.summary;
    let mut what = Vec::new();
    let ids = |v: &[snap::id::Id]| v.iter().map(|i| i.short()).collect::<Vec<_>>().join(" ");
    let keys = |v: &[String]| v.iter().map(|k| short(k)).collect::<Vec<_>>().join(" ");
    if !s.snapshots_added.is_empty() {
        what.push(format!("+snapshot {}", ids(&s.snapshots_added)));
    }
    if !s.snapshots_removed.is_empty() {
        what.push(format!("-snapshot {}", ids(&s.snapshots_removed)));
    }
    if s.packs_added > 0 {
        what.push(format!(
            "+{} pack(s) {}",
            s.packs_added,
            super::bytes(s.bytes_added)
        ));
    } else if s.bytes_added > 0 {
        what.push(format!("+{}", super::bytes(s.bytes_added)));
    }
    if s.packs_deleted > 0 {
        what.push(format!(
            "-{} pack(s) {}",
            s.packs_deleted,
            super::bytes(s.bytes_deleted)
        ));
    }
    if !s.keys_added.is_empty() {
        what.push(format!("+key {}", keys(&s.keys_added)));
    }
    if !s.keys_removed.is_empty() {
        what.push(format!("-key {}", keys(&s.keys_removed)));
    }
    if !s.locks_removed.is_empty() {
        what.push(format!("-{} lock(s)", s.locks_removed.len()));
    }
    if let Some(n) = &s.note {
        what.push(format!("({n})"));
    }
    let outcome = match &r.error {
        None if r.ok => "ok".to_string(),
        None => "FAILED".to_string(),
        Some(e) => format!("FAILED: {e}"),
    };
    format!(
        "{time}  {:<13} {}  key {}  {}@{} pid {}  {outcome}  {}",
        r.action,
        id.short(),
        short(&r.key),
        r.user,
        r.host,
        r.pid,
        what.join(", ")
    )
}

/// The first 8 characters (of a hex id; read from a record, so not sliced by bytes).
fn short(s: &str) -> String {
    s.chars().take(8).collect()
}
