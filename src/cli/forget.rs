//! `snap forget`: remove snapshots by retention policy or by id (snapshot files only; their data
//! stays until a prune). Parses the policy, takes the exclusive lock unless `--dry-run`, calls
//! [`snap::policy::forget::forget`], prints the plan per group.

use anyhow::Result;
use snap::policy::forget::{ForgetOptions, ForgetOutcome, forget};
use snap::policy::retention::{self, Decision, Duration, GroupBy, Policy};
use snap::repo::lock::{LockGuard, Operation};
use snap::snapshot::SnapshotFilter;

use super::Ctx;

#[derive(clap::Args)]
pub struct Args {
    /// Snapshots to remove (ids or unique prefixes), instead of a policy; removes even young
    /// `pre-restore` safety copies
    #[arg(conflicts_with_all = ["keep_last", "keep_hourly", "keep_daily", "keep_weekly",
        "keep_monthly", "keep_yearly", "keep_within", "keep_tag", "host", "tag", "group_by"])]
    ids: Vec<String>,
    /// Keep the N newest snapshots
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_last: u32,
    /// Keep the newest snapshot of each of the last N hours (in each snapshot's own UTC offset)
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_hourly: u32,
    /// Keep the newest snapshot of each of the last N days
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_daily: u32,
    /// Keep the newest snapshot of each of the last N ISO weeks
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_weekly: u32,
    /// Keep the newest snapshot of each of the last N months
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_monthly: u32,
    /// Keep the newest snapshot of each of the last N years
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_yearly: u32,
    /// Keep every snapshot younger than this before the group's newest (e.g. 1y2m3d4h)
    #[arg(long, value_name = "DURATION", value_parser = Duration::parse)]
    keep_within: Option<Duration>,
    /// Keep every snapshot with these tags (comma-separated: all must be present; repeatable)
    #[arg(long, value_name = "T[,T...]", value_parser = tag_list)]
    keep_tag: Vec<TagList>,
    /// Only consider snapshots of this host
    #[arg(long)]
    host: Option<String>,
    /// Only consider snapshots with this tag (repeatable: all must match)
    #[arg(long)]
    tag: Vec<String>,
    /// Apply the policy separately to each group of snapshots sharing these fields
    #[arg(long, value_name = "host,paths,tags", value_parser = GroupBy::parse)]
    group_by: Option<GroupBy>,
    /// Print what would be removed; remove nothing (takes no lock)
    #[arg(long)]
    dry_run: bool,
    /// How long to wait for running backups, restores and checks to let go (forget takes the
    /// exclusive lock; it retries in the gaps between them)
    #[arg(long, default_value = "10m", value_parser = snap::duration::parse)]
    lock_wait: std::time::Duration,
    /// Then prune with prune's defaults (`--max-unused 5%`, `--grace 24h`): unused packs are
    /// marked now and deleted by a prune a grace period later
    #[arg(long)]
    prune: bool,
}

/// One `--keep-tag` value (a newtype: clap reads `Vec<Vec<_>>` as values grouped per occurrence).
#[derive(Clone)]
struct TagList(Vec<String>);

fn tag_list(s: &str) -> Result<TagList, retention::PolicyError> {
    retention::parse_tag_list(s).map(TagList)
}

pub fn run(ctx: &Ctx, a: Args) -> Result<u8> {
    let opts = ForgetOptions {
        policy: Policy {
            last: a.keep_last,
            hourly: a.keep_hourly,
            daily: a.keep_daily,
            weekly: a.keep_weekly,
            monthly: a.keep_monthly,
            yearly: a.keep_yearly,
            within: a.keep_within,
            tags: a.keep_tag.into_iter().map(|t| t.0).collect(),
        },
        ids: a.ids,
        filter: SnapshotFilter {
            host: a.host,
            tags: a.tag,
            with_database: false,
        },
        group_by: a.group_by.unwrap_or_default(),
        dry_run: a.dry_run,
    };
    opts.validate()?;
    let out = {
        let mut repo = ctx.open()?;
        let _lock = if opts.dry_run {
            None
        } else {
            Some(LockGuard::escalate(
                &repo,
                Operation::Forget,
                ctx.interrupt.clone(),
                a.lock_wait,
            )?)
        };
        let out = forget(&mut repo, &opts, chrono::Utc::now(), &ctx.interrupt)?;
        ctx.notes(&repo.notes);
        out
    };
    if !ctx.json {
        print(ctx, &out);
    }
    if !a.prune {
        if ctx.json {
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        return Ok(0);
    }
    // The forget lock (exclusive) is released before prune takes its own, which backups share.
    let popts = super::prune::default_options(opts.dry_run);
    let pruned = super::prune::prune_locked(ctx, &popts)?;
    if ctx.json {
        let both = serde_json::json!({"forget": out, "prune": pruned});
        println!("{}", serde_json::to_string_pretty(&both)?);
        return Ok(0);
    }
    super::prune::print(ctx, &pruned, popts.dry_run)
}

fn print(ctx: &Ctx, out: &ForgetOutcome) {
    for g in &out.plan.groups {
        if !(g.keep.is_empty() && g.remove.is_empty()) {
            println!("{}:", g.group);
        }
        table("keep", &g.keep, true);
        let removing = if out.dry_run {
            "would remove"
        } else {
            "remove"
        };
        // Forgotten by id, the reason ("named") is worth showing; by policy there is none.
        let named = g.remove.iter().any(|d| !d.reasons.is_empty());
        table(removing, &g.remove, named);
        println!();
    }
    if ctx.quiet {
        return;
    }
    let planned = out.plan.removals().count();
    if out.dry_run {
        println!("dry run: would remove {planned} snapshot(s); nothing was removed");
    } else {
        println!(
            "removed {} snapshot(s); their data stays in the repository until a prune",
            out.removed
        );
    }
}

fn table(what: &str, list: &[Decision], reasons: bool) {
    println!("{what} {} snapshot(s)", list.len());
    if list.is_empty() {
        return;
    }
    let header = format!(
        "  {:<8}  {:<26}  {:<12}  {:<16}  {}",
        "id",
        "time",
        "host",
        "tags",
        if reasons { "reasons" } else { "" }
    );
    println!("{}", header.trim_end());
    for d in list {
        let time = chrono::DateTime::parse_from_rfc3339(&d.time)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S %:z").to_string())
            .unwrap_or_else(|_| d.time.clone());
        let why: Vec<String> = d.reasons.iter().map(|r| r.to_string()).collect();
        let line = format!(
            "  {:<8}  {:<26}  {:<12}  {:<16}  {}",
            d.short_id,
            time,
            d.host,
            d.tags.join(","),
            why.join(", ")
        );
        println!("{}", line.trim_end());
    }
}
