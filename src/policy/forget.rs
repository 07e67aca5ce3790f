//! `forget`: remove snapshot files by policy or by id. Only snapshot files: the packs they leave
//! unreferenced stay until a prune, so forget is quick, and a mistaken forget of a snapshot whose
//! data is still in the repository is a matter of writing the snapshot file back.
//!
//! The caller holds the exclusive [`Operation::Forget`](crate::repo::lock::Operation::Forget)
//! lock before listing (unless `dry_run`), so the plan is made and carried out over one view of
//! `snapshots/`: no backup adds a snapshot between the two, and no other forget removes one.
//! A snapshot file that cannot be read is reported (in the repository's notes) and left alone:
//! no policy can judge it, and `check` is the command that says what is wrong with it.

use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};

use super::retention::{self, GroupBy, Plan, Policy};
use crate::audit;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::Repository;
use crate::snapshot::SnapshotFilter;

#[derive(Debug, Clone, Default)]
pub struct ForgetOptions {
    pub policy: Policy,
    /// Snapshot ids or unique prefixes to remove; when given, the policy must be empty.
    pub ids: Vec<String>,
    pub filter: SnapshotFilter,
    pub group_by: GroupBy,
    pub dry_run: bool,
}

impl ForgetOptions {
    /// Refuses what would be a mistake before anything is opened or locked: no rule and no id
    /// (which would otherwise forget everything), or both.
    pub fn validate(&self) -> Result<()> {
        if self.ids.is_empty() && self.policy.is_empty() {
            return Err(retention::PolicyError::NoRule.into());
        }
        if !self.ids.is_empty() && !self.policy.is_empty() {
            return Err(Error::Usage(
                "give either snapshot ids or --keep-* rules, not both; run forget twice".into(),
            ));
        }
        Ok(())
    }
}

/// What forget decided, and how many snapshot files it removed (0 for a dry run).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ForgetOutcome {
    #[serde(flatten)]
    pub plan: Plan,
    pub dry_run: bool,
    pub removed: usize,
}

/// Plans by `opts` at `now` and, unless a dry run, removes the planned snapshot files.
pub fn forget(
    repo: &mut Repository,
    opts: &ForgetOptions,
    now: DateTime<Utc>,
    interrupt: &AtomicBool,
) -> Result<ForgetOutcome> {
    opts.validate()?;
    if !opts.dry_run {
        repo.require_full_key("remove snapshots from", "snapshots/")?;
    }
    let snapshots = repo.snapshots()?;
    let plan = if opts.ids.is_empty() {
        retention::plan(&opts.policy, &snapshots, &opts.filter, opts.group_by, now)?
    } else {
        retention::plan_ids(&snapshots, &opts.ids)?
    };
    let mut removed = Vec::new();
    if !opts.dry_run {
        // Recorded in the audit log, also when it stops part-way: which snapshots are gone.
        let summary = |removed: &[Id]| audit::Summary {
            snapshots_removed: removed.to_vec(),
            ..Default::default()
        };
        for id in plan.removals() {
            let r = if interrupt.load(Ordering::SeqCst) {
                Err(Error::Interrupted)
            } else {
                repo.remove_snapshot(id)
            };
            if let Err(e) = r {
                return Err(audit::record_failure(
                    repo,
                    audit::Action::Forget,
                    summary(&removed),
                    e,
                ));
            }
            removed.push(*id);
        }
        if !removed.is_empty() {
            audit::record(repo, audit::Action::Forget, summary(&removed))?;
        }
    }
    let removed = removed.len();
    Ok(ForgetOutcome {
        plan,
        dry_run: opts.dry_run,
        removed,
    })
}
