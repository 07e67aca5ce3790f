//! Retention: which snapshots `snap forget` keeps. Pure logic over times and tags (no repository),
//! so every rule is unit-tested against an independent reference.
//!
//! The semantics are restic's (`internal/data/snapshot_policy.go`), so a restic user's policy
//! means the same here:
//!
//! - Snapshots are split into groups (`--group-by`, default host and paths: a policy of "7 daily"
//!   keeps 7 days of *each* machine's `/srv`, not 7 days of whichever ran last). Within a group
//!   they are ordered newest first (by instant; equal instants: the later one in the input first).
//! - `last N` keeps the N newest. `hourly/daily/weekly/monthly/yearly N` keeps the newest snapshot
//!   of each of the N newest calendar buckets (hour, day, ISO 8601 week, month, year): walking
//!   newest to oldest, a snapshot whose bucket differs from the previous (newer) one's starts a new
//!   bucket and is kept, until N buckets have been kept. Buckets are read in **the snapshot's own
//!   recorded UTC offset** (the wall clock of the machine that took it), so across a DST change
//!   `01:30+01:00` and `01:30+02:00` are both "01:00 on that day", exactly as the operator saw it.
//! - Like restic, when a bucket rule still has buckets left at the group's oldest snapshot, that
//!   oldest snapshot is kept too (reason `daily 5 (oldest)`): with fewer buckets than asked for,
//!   the longest history is kept.
//! - `within D` keeps every snapshot strictly younger than D before the group's newest snapshot
//!   (not before "now", so a host that stopped backing up keeps its last history). Snapshots in the
//!   future are not "newest". D is `1y2m3d4h`; years, months and days are calendar steps in the
//!   newest snapshot's offset with Go's normalisation as restic uses it (March 31 minus a month is
//!   "February 31" = March 3), hours are exact.
//! - `tag L` keeps every snapshot carrying all tags of the list `L` (`--keep-tag a,b`).
//! - A snapshot kept by any rule is kept; each kept snapshot lists every rule that kept it.
//!
//! snap adds one rule of its own, for the safety copies `snap mysql restore` takes (tag
//! [`PRE_RESTORE_TAG`]): they are kept for [`SAFETY_COPY_DAYS`] days after they were taken, whatever
//! the policy (reason `pre-restore (7 days)`), because their point is to undo a restore that turns
//! out wrong days later. They also do not compete for buckets or `last` (as they are never
//! `latest`): a safety copy taken at 23:00 must not displace that day's real backup from the
//! `daily` rule. A filter naming the tag (`--tag pre-restore`) makes them ordinary snapshots for
//! the bucket rules. Only forgetting them by id removes a young one. A snapshot whose time cannot
//! be read is kept (`time unreadable`): no rule can say it is old.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, TimeDelta, TimeZone, Timelike, Utc};
use serde::{Serialize, Serializer};

use crate::id::Id;
use crate::snapshot::{PRE_RESTORE_TAG, Snapshot, SnapshotFilter};

/// How long a `pre-restore` safety copy is kept whatever the policy.
pub const SAFETY_COPY_DAYS: i64 = 7;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "invalid duration {input:?}: {why} (write it like 1y2m3d4h: years, months, days, hours)"
    )]
    BadDuration { input: String, why: String },
    #[error(
        "invalid group-by {input:?}: {why} (use a comma-separated subset of host,paths,tags, or \"\" for one group)"
    )]
    BadGroupBy { input: String, why: String },
    #[error("invalid tag list {0:?}: give one or more tags separated by commas")]
    BadTagList(String),
    #[error(
        "no retention rule given: pass at least one --keep-* option (e.g. --keep-daily 7) or the \
         ids of the snapshots to forget; nothing was removed"
    )]
    NoRule,
}

/// A calendar duration as restic writes it: `1y2m3d4h` (each unit at most once, any subset).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Duration {
    pub years: u32,
    pub months: u32,
    pub days: u32,
    pub hours: u32,
}

impl Duration {
    pub fn parse(input: &str) -> Result<Duration, PolicyError> {
        let bad = |why: &str| PolicyError::BadDuration {
            input: input.into(),
            why: why.into(),
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        let mut d = Duration::default();
        let mut seen = [false; 4];
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            if digits == 0 {
                return Err(bad("expected a number"));
            }
            let n: u32 = rest[..digits]
                .parse()
                .map_err(|_| bad("number too large"))?;
            let mut after = rest[digits..].chars();
            let (slot, field) = match after.next() {
                Some('y') => (0, &mut d.years),
                Some('m') => (1, &mut d.months),
                Some('d') => (2, &mut d.days),
                Some('h') => (3, &mut d.hours),
                Some(_) => return Err(bad("units are y, m, d and h")),
                None => return Err(bad("a unit (y, m, d or h) must follow the number")),
            };
            if std::mem::replace(&mut seen[slot], true) {
                return Err(bad("a unit is given twice"));
            }
            *field = n;
            rest = after.as_str();
        }
        Ok(d)
    }

    pub fn is_zero(&self) -> bool {
        *self == Duration::default()
    }

    /// The instant `self` before `t`: years, months and days stepped on `t`'s calendar (in its
    /// offset) with Go's `AddDate` normalisation (an overflowing day rolls into the next month),
    /// then hours subtracted exactly. `None` when that is before the representable range (every
    /// time is then within).
    pub fn before(&self, t: DateTime<FixedOffset>) -> Option<DateTime<FixedOffset>> {
        let local = t.naive_local();
        let months = i64::from(local.year()) * 12 + i64::from(local.month0())
            - i64::from(self.years) * 12
            - i64::from(self.months);
        let year = i32::try_from(months.div_euclid(12)).ok()?;
        let month = u32::try_from(months.rem_euclid(12)).ok()? + 1;
        let first = NaiveDate::from_ymd_opt(year, month, 1)?;
        let day_offset = i64::from(local.day()) - 1 - i64::from(self.days);
        let date = first.checked_add_signed(TimeDelta::try_days(day_offset)?)?;
        let naive = date
            .and_time(local.time())
            .checked_sub_signed(TimeDelta::try_hours(i64::from(self.hours))?)?;
        t.offset().from_local_datetime(&naive).single()
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return write!(f, "0h");
        }
        for (n, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

/// The counting rules, in restic's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::Last => "last",
            Rule::Hourly => "hourly",
            Rule::Daily => "daily",
            Rule::Weekly => "weekly",
            Rule::Monthly => "monthly",
            Rule::Yearly => "yearly",
        }
    }

    /// The calendar bucket of `t` in its own offset; `nr` (the position newest first) makes
    /// every snapshot its own bucket for `last`.
    fn bucket(self, t: &DateTime<FixedOffset>, nr: usize) -> (i32, u32, u32, u32) {
        match self {
            Rule::Last => (0, 0, 0, u32::try_from(nr).unwrap_or(u32::MAX)),
            Rule::Hourly => (t.year(), t.month(), t.day(), t.hour()),
            Rule::Daily => (t.year(), t.month(), t.day(), 0),
            Rule::Weekly => (t.iso_week().year(), t.iso_week().week(), 0, 0),
            Rule::Monthly => (t.year(), t.month(), 0, 0),
            Rule::Yearly => (t.year(), 0, 0, 0),
        }
    }
}

/// What to keep. All zero / empty keeps nothing, and [`plan`] refuses it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
    pub within: Option<Duration>,
    /// Each list keeps the snapshots carrying all of its tags.
    pub tags: Vec<Vec<String>>,
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        self.counts().iter().all(|(_, n)| *n == 0)
            && self.within.is_none_or(|d| d.is_zero())
            && self.tags.is_empty()
    }

    fn counts(&self) -> [(Rule, u32); 6] {
        [
            (Rule::Last, self.last),
            (Rule::Hourly, self.hourly),
            (Rule::Daily, self.daily),
            (Rule::Weekly, self.weekly),
            (Rule::Monthly, self.monthly),
            (Rule::Yearly, self.yearly),
        ]
    }
}

/// `--keep-tag a,b`: the snapshots carrying both `a` and `b`.
pub fn parse_tag_list(s: &str) -> Result<Vec<String>, PolicyError> {
    let tags: Vec<String> = s
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect();
    if tags.is_empty() {
        return Err(PolicyError::BadTagList(s.into()));
    }
    Ok(tags)
}

/// Why a snapshot is kept (or, for [`Reason::Named`], removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The `n`-th bucket (1 = newest) of `rule`; `oldest` when kept as the group's oldest
    /// snapshot while the rule had buckets left.
    Bucket {
        rule: Rule,
        n: u32,
        oldest: bool,
    },
    Within(Duration),
    Tag(Vec<String>),
    /// A young `pre-restore` safety copy.
    PreRestore,
    TimeUnreadable,
    /// Named on the command line (a removal).
    Named,
    /// Needed by the kept snapshot with this short id (see [`super::needs`]).
    Needed(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Bucket { rule, n, oldest } => {
                write!(f, "{} {n}", rule.name())?;
                if *oldest {
                    write!(f, " (oldest)")?;
                }
                Ok(())
            }
            Reason::Within(d) => write!(f, "within {d}"),
            Reason::Tag(l) => write!(f, "tag {}", l.join(",")),
            Reason::PreRestore => write!(f, "{PRE_RESTORE_TAG} ({SAFETY_COPY_DAYS} days)"),
            Reason::TimeUnreadable => write!(f, "time unreadable"),
            Reason::Named => write!(f, "named"),
            Reason::Needed(by) => write!(f, "needed by {by}"),
        }
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One snapshot as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    pub time: Option<DateTime<FixedOffset>>,
    pub tags: &'a [String],
}

fn is_safety_copy(tags: &[String]) -> bool {
    tags.iter().any(|t| t == PRE_RESTORE_TAG)
}

/// The reasons to keep each of `items` (one group), in the same order; empty means remove.
/// `count_safety_copies`: `pre-restore` copies take part in `last` and the bucket rules (when the
/// selection asked for them by tag).
pub fn apply(
    policy: &Policy,
    items: &[Item],
    now: DateTime<Utc>,
    count_safety_copies: bool,
) -> Vec<Vec<Reason>> {
    let mut out = vec![Vec::new(); items.len()];
    let mut order: Vec<(usize, DateTime<FixedOffset>)> = items
        .iter()
        .enumerate()
        .filter_map(|(i, it)| it.time.map(|t| (i, t)))
        .collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    for (i, it) in items.iter().enumerate() {
        if it.time.is_none() {
            out[i].push(Reason::TimeUnreadable);
        }
        for l in &policy.tags {
            if l.iter().all(|t| it.tags.contains(t)) {
                out[i].push(Reason::Tag(l.clone()));
            }
        }
    }
    if let Some(d) = policy.within.filter(|d| !d.is_zero()) {
        let latest = order
            .iter()
            .map(|(_, t)| *t)
            .filter(|t| t.with_timezone(&Utc) < now)
            .max();
        // No newest snapshot in the past, or a cut-off before the calendar: all are within.
        let cutoff = latest.and_then(|l| d.before(l));
        for &(i, t) in &order {
            if cutoff.is_none_or(|c| t > c) {
                out[i].push(Reason::Within(d));
            }
        }
    }
    let counted: Vec<(usize, DateTime<FixedOffset>)> = order
        .iter()
        .copied()
        .filter(|(i, _)| count_safety_copies || !is_safety_copy(items[*i].tags))
        .collect();
    for (rule, count) in policy.counts() {
        let mut left = count;
        let mut previous = None;
        for (nr, (i, t)) in counted.iter().enumerate() {
            if left == 0 {
                break;
            }
            let bucket = Some(rule.bucket(t, nr));
            let same = bucket == previous;
            if !same || nr + 1 == counted.len() {
                previous = bucket;
                left -= 1;
                out[*i].push(Reason::Bucket {
                    rule,
                    n: count - left,
                    oldest: same,
                });
            }
        }
    }
    let young = now - TimeDelta::days(SAFETY_COPY_DAYS);
    for &(i, t) in &order {
        if is_safety_copy(items[i].tags) && t.with_timezone(&Utc) > young {
            out[i].push(Reason::PreRestore);
        }
    }
    out
}

/// Which snapshot fields make a group (`--group-by host,paths,tags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupBy {
    pub host: bool,
    pub paths: bool,
    pub tags: bool,
}

impl Default for GroupBy {
    fn default() -> Self {
        GroupBy {
            host: true,
            paths: true,
            tags: false,
        }
    }
}

impl GroupBy {
    pub fn parse(input: &str) -> Result<GroupBy, PolicyError> {
        let mut g = GroupBy {
            host: false,
            paths: false,
            tags: false,
        };
        for part in input.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" => g.host = true,
                "paths" => g.paths = true,
                "tags" => g.tags = true,
                other => {
                    return Err(PolicyError::BadGroupBy {
                        input: input.into(),
                        why: format!("unknown field {other:?}"),
                    });
                }
            }
        }
        Ok(g)
    }

    fn key(&self, s: &Snapshot) -> GroupKey {
        GroupKey {
            host: self.host.then(|| s.host.clone()),
            paths: self.paths.then(|| s.paths.clone()),
            tags: self.tags.then(|| {
                let mut t = s.tags.clone();
                t.sort();
                t.dedup();
                t
            }),
        }
    }
}

/// What a group's snapshots share (the fields not grouped by are absent).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct GroupKey {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(h) = &self.host {
            parts.push(format!("host {h}"));
        }
        if let Some(p) = &self.paths {
            parts.push(format!("paths [{}]", p.join(" ")));
        }
        if let Some(t) = &self.tags {
            parts.push(format!("tags [{}]", t.join(",")));
        }
        if parts.is_empty() {
            write!(f, "all snapshots")
        } else {
            write!(f, "{}", parts.join(", "))
        }
    }
}

/// One snapshot's fate.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub id: Id,
    pub short_id: String,
    pub time: String,
    pub host: String,
    pub paths: Vec<String>,
    pub tags: Vec<String>,
    /// Why it is kept (or, when forgotten by id, `named`).
    pub reasons: Vec<Reason>,
}

impl Decision {
    fn new(id: &Id, s: &Snapshot, reasons: Vec<Reason>) -> Decision {
        Decision {
            id: *id,
            short_id: id.short(),
            time: s.time.clone(),
            host: s.host.clone(),
            paths: s.paths.clone(),
            tags: s.tags.clone(),
            reasons,
        }
    }
}

/// A group's snapshots, newest first in each list.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub group: GroupKey,
    pub keep: Vec<Decision>,
    pub remove: Vec<Decision>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub groups: Vec<Group>,
}

impl Plan {
    /// The snapshots to remove, every group.
    pub fn removals(&self) -> impl Iterator<Item = &Id> {
        self.groups
            .iter()
            .flat_map(|g| g.remove.iter().map(|d| &d.id))
    }
}

/// The plan for `policy` over `snapshots` (as the repository lists them, oldest first): the ones
/// `filter` selects, grouped by `group_by`; the rest are not touched (nor listed).
pub fn plan(
    policy: &Policy,
    snapshots: &[(Id, Snapshot)],
    filter: &SnapshotFilter,
    group_by: GroupBy,
    now: DateTime<Utc>,
) -> Result<Plan, PolicyError> {
    if policy.is_empty() {
        return Err(PolicyError::NoRule);
    }
    let count_safety_copies = filter.tags.iter().any(|t| t == PRE_RESTORE_TAG);
    let mut groups: BTreeMap<GroupKey, Vec<&(Id, Snapshot)>> = BTreeMap::new();
    for entry in snapshots.iter().filter(|(_, s)| filter.matches(s)) {
        groups
            .entry(group_by.key(&entry.1))
            .or_default()
            .push(entry);
    }
    let mut out = Plan::default();
    for (key, members) in groups {
        let items: Vec<Item> = members
            .iter()
            .map(|(_, s)| Item {
                time: s.time_parsed(),
                tags: &s.tags,
            })
            .collect();
        let reasons = apply(policy, &items, now, count_safety_copies);
        let mut decided: Vec<(Option<DateTime<FixedOffset>>, usize, Decision)> = members
            .iter()
            .zip(reasons)
            .enumerate()
            .map(|(i, ((id, s), r))| (s.time_parsed(), i, Decision::new(id, s, r)))
            .collect();
        // Newest first; unreadable times (None) last.
        decided.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
        let (keep, remove) = decided
            .into_iter()
            .map(|(_, _, d)| d)
            .partition(|d| !d.reasons.is_empty());
        out.groups.push(Group {
            group: key,
            keep,
            remove,
        });
    }
    keep_needed(&mut out, snapshots);
    Ok(out)
}

/// Moves every planned removal that a kept snapshot needs ([`super::needs`]) to the kept ones:
/// no rule may keep an increment without its full, or a full without the archive it replays.
fn keep_needed(plan: &mut Plan, snapshots: &[(Id, Snapshot)]) {
    let removed: std::collections::BTreeSet<Id> = plan.removals().copied().collect();
    let kept = snapshots
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !removed.contains(id))
        .collect();
    let missing = super::needs::missing(snapshots, &kept, super::needs::Needs::All);
    if missing.is_empty() {
        return;
    }
    for g in &mut plan.groups {
        let (back, stay): (Vec<Decision>, Vec<Decision>) = std::mem::take(&mut g.remove)
            .into_iter()
            .partition(|d| missing.contains_key(&d.id));
        g.remove = stay;
        for mut d in back {
            if let Some(by) = missing.get(&d.id) {
                d.reasons.push(Reason::Needed(by.short()));
            }
            g.keep.push(d);
        }
        g.keep
            .sort_by_key(|d| std::cmp::Reverse(DateTime::parse_from_rfc3339(&d.time).ok()));
    }
}

/// The plan that removes exactly the snapshots named by `specs` (full ids or unique prefixes),
/// whatever their tags: naming a snapshot is the explicit choice the safety-copy rule waits for.
pub fn plan_ids(
    snapshots: &[(Id, Snapshot)],
    specs: &[String],
) -> Result<Plan, crate::error::Error> {
    use crate::error::Error;
    let mut chosen: BTreeMap<Id, &Snapshot> = BTreeMap::new();
    for spec in specs {
        let lower = spec.trim().to_ascii_lowercase();
        let mut hits = snapshots
            .iter()
            .filter(|(id, _)| !lower.is_empty() && id.to_hex().starts_with(&lower));
        match (hits.next(), hits.next()) {
            (Some((id, s)), None) => {
                chosen.insert(*id, s);
            }
            (Some(_), Some(_)) => return Err(Error::AmbiguousSnapshot(spec.clone())),
            _ => return Err(Error::SnapshotNotFound(spec.clone())),
        }
    }
    let mut remove: Vec<Decision> = chosen
        .iter()
        .map(|(id, s)| Decision::new(id, s, vec![Reason::Named]))
        .collect();
    remove.sort_by_key(|d| std::cmp::Reverse(DateTime::parse_from_rfc3339(&d.time).ok()));
    let kept = snapshots
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !chosen.contains_key(id))
        .collect();
    if let Some((id, by)) = super::needs::missing(snapshots, &kept, super::needs::Needs::Restore)
        .into_iter()
        .find(|(id, _)| chosen.contains_key(id))
    {
        return Err(Error::SnapshotNeeded {
            id: id.short(),
            by: by.short(),
        });
    }
    Ok(Plan {
        groups: vec![Group {
            group: GroupKey::default(),
            keep: Vec::new(),
            remove,
        }],
    })
}

#[cfg(test)]
mod tests;
