//! `snap report --html FILE` / `--json`: what the plan has done, for people. One data model
//! ([`Report`]) built from the run log, the plan and each repository's `snap stats`; the JSON is
//! that model, and the HTML page is a fixed template (`report.html`: CSS and JavaScript inline,
//! no network) with the model embedded, drawn as SVG charts in the browser. The page writes its
//! own state into `<body data-status>` ("ok points=N", or the script error), so a headless
//! browser test can tell a page that drew its charts from one that did not.

use std::collections::BTreeMap;

use chrono::{DateTime, Local};
use serde::Serialize;

use super::file::Plan;
use super::metrics::{JobStatus, job_status};
use super::runlog::RunRecord;

const TEMPLATE: &str = include_str!("report.html");
/// Where the template takes the data.
const SLOT: &str = "/*SNAP_REPORT_DATA*/null";

#[derive(Debug, Serialize)]
pub struct Report {
    pub generated: String,
    pub plan: String,
    pub jobs: Vec<JobReport>,
    pub repositories: Vec<RepositoryReport>,
}

#[derive(Debug, Serialize)]
pub struct JobReport {
    #[serde(flatten)]
    pub status: JobStatus,
    pub repository: String,
    pub copy_to: Vec<String>,
    /// Every backup run: when, what, how it went, sizes.
    pub series: Vec<Point>,
    /// 3-2-1: the newest backup is in `copies` repositories, `offsite` of them offsite.
    pub copies: usize,
    pub offsite: usize,
    pub rule_321: bool,
}

#[derive(Debug, Serialize)]
pub struct Point {
    pub t: String,
    pub kind: String,
    pub result: String,
    pub duration_s: f64,
    pub bytes_added: u64,
    /// Logical size of the snapshot.
    pub bytes_total: u64,
    /// Sum of `bytes_added` of the job's runs so far: what its backups stored.
    pub stored: u64,
}

#[derive(Debug, Serialize)]
pub struct RepositoryReport {
    pub name: String,
    pub location: String,
    pub offsite: bool,
    /// `snap stats --json`, or why it could not be had.
    pub stats: serde_json::Value,
    pub error: Option<String>,
    /// End of the newest successful `check` run that covered this repository.
    pub last_checked: Option<String>,
    /// End of the newest successful drill of a snapshot in this repository.
    pub last_drilled: Option<String>,
}

/// Builds the report; `stats` gives each repository's `snap stats` (or its error).
pub fn build(
    plan: &Plan,
    runs: &[RunRecord],
    now: DateTime<Local>,
    stats: &dyn Fn(&str) -> Result<serde_json::Value, String>,
) -> Report {
    let status = job_status(plan, runs, now);
    let offsite = |name: &str| {
        plan.repositories.get(name).is_some_and(|r| {
            crate::backend::Location::parse(&r.url, r.s3_endpoint.as_deref())
                .is_ok_and(|l| l.is_offsite())
        })
    };
    let jobs = plan
        .jobs
        .iter()
        .zip(status)
        .map(|(j, status)| {
            let mut stored = 0u64;
            let series: Vec<Point> = runs
                .iter()
                // backups only: binary-log, drill and check runs have no snapshot sizes
                .filter(|r| {
                    r.job == j.name
                        && ["full", "incremental", "differential"].contains(&r.kind.as_str())
                })
                .map(|r| {
                    stored = stored.saturating_add(r.bytes_added);
                    Point {
                        t: r.start.clone(),
                        kind: r.kind.clone(),
                        result: r.result.clone(),
                        duration_s: r.duration_ms as f64 / 1000.0,
                        bytes_added: r.bytes_added,
                        bytes_total: r.bytes_total,
                        stored,
                    }
                })
                .collect();
            let newest = runs.iter().rev().find(|r| {
                r.job == j.name && r.ok() && !r.snapshots.is_empty() && r.kind != "binlog"
            });
            let held: Vec<&str> = newest
                .map(|r| r.snapshots.iter().map(|s| s.repository.as_str()).collect())
                .unwrap_or_default();
            let off = held.iter().filter(|r| offsite(r)).count();
            JobReport {
                status,
                repository: j.repository.clone(),
                copy_to: j.copy_to.clone(),
                series,
                copies: held.len(),
                offsite: off,
                rule_321: held.len() >= 2 && off >= 1,
            }
        })
        .collect();
    let repositories = plan
        .repositories
        .values()
        .map(|r| {
            let (stats, error) = match stats(&r.name) {
                Ok(s) => (s, None),
                Err(e) => (serde_json::Value::Null, Some(e)),
            };
            let newest = |kind: &str, primary_only: bool| {
                runs.iter()
                    .filter(|x| x.kind == kind && x.ok())
                    .filter(|x| {
                        if primary_only {
                            x.repositories.first() == Some(&r.name)
                        } else {
                            x.repositories.contains(&r.name)
                        }
                    })
                    .filter_map(|x| chrono::DateTime::parse_from_rfc3339(&x.end).ok())
                    .max()
                    .map(|t| t.to_rfc3339())
            };
            RepositoryReport {
                last_checked: newest("check", false),
                last_drilled: newest("verify", true),
                name: r.name.clone(),
                location: crate::secrets::redact_url(&r.url),
                offsite: offsite(&r.name),
                stats,
                error,
            }
        })
        .collect();
    Report {
        generated: now.to_rfc3339(),
        plan: plan.file.display().to_string(),
        jobs,
        repositories,
    }
}

/// The page: the template with the report embedded as a JSON literal (`<` escaped so no string
/// in it can close the script element).
pub fn html(r: &Report) -> String {
    let json = serde_json::to_string(r)
        .unwrap_or_else(|_| "null".into())
        .replace('<', "\\u003c");
    TEMPLATE.replacen(SLOT, &json, 1)
}

/// Counts of the report's chart points, per job (what the page should draw).
pub fn points(r: &Report) -> BTreeMap<String, usize> {
    r.jobs
        .iter()
        .map(|j| (j.status.job.clone(), j.series.len()))
        .collect()
}
