//! Status: where the copies of each backup are, for the 3-2-1 rule (three copies, two media, one
//! offsite) across the repositories a user names.
//!
//! For each repository: its snapshots grouped by host and paths (what a backup job is), with the
//! age of the newest in each group. Across them: for each group, how many repositories hold it and
//! whether one of them is offsite — an object store or an SFTP server
//! (`Location::is_offsite`), i.e. another machine. Snap cannot see media (two local directories
//! may be one disk), so it counts repositories and says which are offsite; the rest is the
//! user's to arrange. A repository that cannot be opened is reported with its error rather than
//! stopping the others: an unreachable offsite copy is exactly what status must show.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::backend::Location;
use crate::id::Id;
use crate::repo::Repository;

/// One backup job: the snapshots of one host and set of paths.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub host: String,
    pub paths: Vec<String>,
    pub snapshots: usize,
    /// The newest snapshot's id, time (as recorded) and age in seconds at the time of the status
    /// (negative for a snapshot from the future: a clock is wrong somewhere).
    pub newest: Id,
    pub newest_time: String,
    pub newest_age_secs: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RepoStatus {
    /// The location as given (credentials never appear in it).
    pub location: String,
    pub offsite: bool,
    /// The repository id (short form) when it opened.
    pub id: Option<String>,
    pub snapshots: usize,
    pub groups: Vec<Group>,
    /// Why it could not be read (unreachable, wrong password, no repository).
    pub error: Option<String>,
}

/// One group across every repository named.
#[derive(Debug, Clone, Serialize)]
pub struct Coverage {
    pub host: String,
    pub paths: Vec<String>,
    /// Repositories holding at least one snapshot of this group.
    pub copies: usize,
    /// Whether one of them is offsite, and the age of the newest snapshot there.
    pub offsite: bool,
    pub newest_offsite_age_secs: Option<i64>,
    /// The age of the newest snapshot anywhere.
    pub newest_age_secs: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub repositories: Vec<RepoStatus>,
    pub coverage: Vec<Coverage>,
}

/// A repository to report on and the password that opens it.
pub struct Target<'a> {
    pub location: Location,
    pub password: &'a [u8],
}

/// Opens each repository (no lock: only snapshot files are read) and reports on it; see the
/// module doc. Never fails as a whole: a repository's failure is in its `error`.
pub fn status(targets: &[Target<'_>], cache_dir: &Path) -> Status {
    let now = chrono::Utc::now();
    let repositories: Vec<RepoStatus> = targets
        .iter()
        .map(|t| {
            let mut r = RepoStatus {
                location: t.location.to_string(),
                offsite: t.location.is_offsite(),
                id: None,
                snapshots: 0,
                groups: Vec::new(),
                error: None,
            };
            match Repository::open(&t.location, t.password, cache_dir)
                .and_then(|mut repo| Ok((repo.config().id.short(), repo.snapshots()?)))
            {
                Ok((id, snaps)) => {
                    r.id = Some(id);
                    r.snapshots = snaps.len();
                    r.groups = groups(&snaps, now);
                }
                Err(e) => r.error = Some(e.to_string()),
            }
            r
        })
        .collect();
    let coverage = coverage(&repositories);
    Status {
        repositories,
        coverage,
    }
}

fn age(time: &str, now: chrono::DateTime<chrono::Utc>) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(time)
        .ok()
        .map(|t| now.signed_duration_since(t).num_seconds())
}

/// Snapshots (oldest first, as `Repository::snapshots` gives them) by host and paths.
fn groups(
    snaps: &[(Id, crate::snapshot::Snapshot)],
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<Group> {
    let mut by: BTreeMap<(String, Vec<String>), Group> = BTreeMap::new();
    for (id, s) in snaps {
        let g = by
            .entry((s.host.clone(), s.paths.clone()))
            .or_insert_with(|| Group {
                host: s.host.clone(),
                paths: s.paths.clone(),
                snapshots: 0,
                newest: *id,
                newest_time: s.time.clone(),
                newest_age_secs: None,
            });
        g.snapshots += 1;
        // Sorted oldest first: the last one seen is the newest.
        g.newest = *id;
        g.newest_time = s.time.clone();
        g.newest_age_secs = age(&s.time, now);
    }
    by.into_values().collect()
}

fn coverage(repos: &[RepoStatus]) -> Vec<Coverage> {
    let mut by: BTreeMap<(String, Vec<String>), Coverage> = BTreeMap::new();
    // The newer of two ages (the smaller), either possibly unknown.
    let newer = |a: Option<i64>, b: Option<i64>| match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    for r in repos {
        for g in &r.groups {
            let c = by
                .entry((g.host.clone(), g.paths.clone()))
                .or_insert_with(|| Coverage {
                    host: g.host.clone(),
                    paths: g.paths.clone(),
                    copies: 0,
                    offsite: false,
                    newest_offsite_age_secs: None,
                    newest_age_secs: None,
                });
            c.copies += 1;
            c.newest_age_secs = newer(c.newest_age_secs, g.newest_age_secs);
            if r.offsite {
                c.offsite = true;
                c.newest_offsite_age_secs = newer(c.newest_offsite_age_secs, g.newest_age_secs);
            }
        }
    }
    by.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(offsite: bool, groups: Vec<(&str, i64)>) -> RepoStatus {
        RepoStatus {
            location: "x".into(),
            offsite,
            id: None,
            snapshots: groups.len(),
            groups: groups
                .into_iter()
                .map(|(h, age)| Group {
                    host: h.into(),
                    paths: vec!["/srv".into()],
                    snapshots: 1,
                    newest: Id([0; 32]),
                    newest_time: String::new(),
                    newest_age_secs: Some(age),
                })
                .collect(),
            error: None,
        }
    }

    #[test]
    fn coverage_counts_copies_and_offsite_ages() {
        let c = coverage(&[
            repo(false, vec![("a", 10), ("b", 5)]),
            repo(true, vec![("a", 100)]),
            repo(true, vec![("a", 50)]),
        ]);
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[0].host.as_str(), c[0].copies, c[0].offsite),
            ("a", 3, true)
        );
        assert_eq!(c[0].newest_age_secs, Some(10));
        assert_eq!(c[0].newest_offsite_age_secs, Some(50));
        assert_eq!(
            (c[1].host.as_str(), c[1].copies, c[1].offsite),
            ("b", 1, false)
        );
        assert_eq!(c[1].newest_offsite_age_secs, None);
    }
}
