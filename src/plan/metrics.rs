//! `snap metrics --textfile DIR`: the plan's state as Prometheus metrics for node-exporter's
//! textfile collector (`DIR/snap.prom`, written to a temporary file and renamed so the collector
//! never reads half a file). Per job: last run and last success times, duration, bytes, result,
//! runs by result, last verified time and the recovery point's age (time since the newest good
//! backup, or binary-log archive where one runs); per repository: its size.
//!
//! The file is 0644, unlike snap's other files: node-exporter runs as its own user and must read
//! it, and it holds only names, times and sizes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use chrono::{DateTime, FixedOffset, Local};
use serde::Serialize;

use super::file::Plan;
use super::runlog::RunRecord;
use crate::error::{Error, Result};

/// What the run log says about one job.
#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    pub job: String,
    pub class: String,
    pub last_run: Option<RunRecord>,
    /// End of the newest successful backup.
    pub last_backup: Option<String>,
    /// End of the newest successful binary-log archive run.
    pub last_binlog: Option<String>,
    /// Commit time of the newest archived binary-log event (see `RunRecord::last_event`).
    pub last_binlog_event: Option<String>,
    /// End of the newest successful restore drill.
    pub last_verified: Option<String>,
    /// Seconds from the start of the newest good backup or binary-log run to now.
    pub recovery_point_age_secs: Option<i64>,
    pub runs: BTreeMap<String, u64>,
}

fn end(r: &RunRecord) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(&r.end).ok()
}

/// Each job of the plan, from its runs (oldest first), as of `now`.
pub fn job_status(plan: &Plan, runs: &[RunRecord], now: DateTime<Local>) -> Vec<JobStatus> {
    plan.jobs
        .iter()
        .map(|j| {
            let mine: Vec<&RunRecord> = runs.iter().filter(|r| r.job == j.name).collect();
            let newest = |pred: &dyn Fn(&RunRecord) -> bool| {
                mine.iter()
                    .filter(|r| r.ok() && pred(r))
                    .filter_map(|r| end(r))
                    .max()
            };
            let backup =
                newest(&|r| ["full", "incremental", "differential"].contains(&r.kind.as_str()));
            let binlog = newest(&|r| r.kind == "binlog");
            let verified = newest(&|r| r.kind == "verify");
            // What a restore from the repository alone reaches: a backup stands for the moment
            // it started (a dump's consistent point is taken first), a binary-log run for the
            // moment it listed the server's logs, which it then copied to their end.
            let started = |pred: &dyn Fn(&RunRecord) -> bool| {
                mine.iter()
                    .filter(|r| r.ok() && pred(r))
                    .filter_map(|r| DateTime::parse_from_rfc3339(&r.start).ok())
                    .max()
            };
            let point = started(&|r| {
                ["full", "incremental", "differential", "binlog"].contains(&r.kind.as_str())
            });
            let last_event = mine
                .iter()
                .filter_map(|r| r.last_event.as_deref())
                .filter_map(|t| DateTime::parse_from_rfc3339(t).ok())
                .max();
            let mut by_result = BTreeMap::new();
            for r in &mine {
                *by_result.entry(r.result.clone()).or_insert(0) += 1;
            }
            JobStatus {
                job: j.name.clone(),
                class: j.class.clone(),
                last_run: mine.last().map(|r| (*r).clone()),
                last_backup: backup.map(|t| t.to_rfc3339()),
                last_binlog: binlog.map(|t| t.to_rfc3339()),
                last_binlog_event: last_event.map(|t| t.to_rfc3339()),
                last_verified: verified.map(|t| t.to_rfc3339()),
                recovery_point_age_secs: point
                    .map(|p| (now.fixed_offset() - p).num_seconds().max(0)),
                runs: by_result,
            }
        })
        .collect()
}

/// Prometheus label value escaping.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn secs(t: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(t).ok().map(|t| t.timestamp())
}

/// The metrics text. `sizes`: repository name → bytes it occupies.
pub fn render(status: &[JobStatus], sizes: &BTreeMap<String, u64>) -> String {
    let mut out = String::new();
    let mut family = |name: &str, help: &str, kind: &str, rows: Vec<(String, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in rows {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    };
    let jl = |s: &JobStatus| format!("job=\"{}\",class=\"{}\"", label(&s.job), label(&s.class));
    let per = |f: &dyn Fn(&JobStatus) -> Option<String>| -> Vec<(String, String)> {
        status
            .iter()
            .filter_map(|s| f(s).map(|v| (jl(s), v)))
            .collect()
    };
    family(
        "snap_job_last_run_timestamp_seconds",
        "Start of the job's last run (Unix time).",
        "gauge",
        per(&|s| {
            s.last_run
                .as_ref()
                .and_then(|r| secs(&r.start))
                .map(|v| v.to_string())
        }),
    );
    family(
        "snap_job_last_success_timestamp_seconds",
        "End of the job's newest successful backup (Unix time).",
        "gauge",
        per(&|s| {
            s.last_backup
                .as_deref()
                .and_then(secs)
                .map(|v| v.to_string())
        }),
    );
    family(
        "snap_job_last_run_duration_seconds",
        "How long the job's last run took.",
        "gauge",
        per(&|s| {
            s.last_run
                .as_ref()
                .map(|r| format!("{:.3}", r.duration_ms as f64 / 1000.0))
        }),
    );
    family(
        "snap_job_last_run_bytes_read",
        "Bytes the job's last run read from its sources.",
        "gauge",
        per(&|s| s.last_run.as_ref().map(|r| r.bytes_read.to_string())),
    );
    family(
        "snap_job_last_run_bytes_added",
        "Bytes the job's last run added to its repository (after dedup and compression).",
        "gauge",
        per(&|s| s.last_run.as_ref().map(|r| r.bytes_added.to_string())),
    );
    family(
        "snap_job_last_run_success",
        "1 when the job's last run succeeded, else 0.",
        "gauge",
        per(&|s| s.last_run.as_ref().map(|r| u8::from(r.ok()).to_string())),
    );
    let mut results = Vec::new();
    for s in status {
        if let Some(r) = &s.last_run {
            results.push((
                format!("{},result=\"{}\"", jl(s), label(&r.result)),
                "1".to_string(),
            ));
        }
    }
    family(
        "snap_job_last_run_result",
        "The job's last run's result (success, failure, skipped, incomplete).",
        "gauge",
        results,
    );
    let mut counts = Vec::new();
    for s in status {
        for (res, n) in &s.runs {
            counts.push((
                format!("{},result=\"{}\"", jl(s), label(res)),
                n.to_string(),
            ));
        }
    }
    family(
        "snap_job_runs_total",
        "Runs in the run log, by result.",
        "counter",
        counts,
    );
    family(
        "snap_job_last_verified_timestamp_seconds",
        "End of the job's newest successful restore drill (Unix time).",
        "gauge",
        per(&|s| {
            s.last_verified
                .as_deref()
                .and_then(secs)
                .map(|v| v.to_string())
        }),
    );
    family(
        "snap_job_last_binlog_timestamp_seconds",
        "End of the job's newest successful binary-log archive run (Unix time).",
        "gauge",
        per(&|s| {
            s.last_binlog
                .as_deref()
                .and_then(secs)
                .map(|v| v.to_string())
        }),
    );
    family(
        "snap_job_last_binlog_event_timestamp_seconds",
        "Commit time of the newest binary-log event the archive holds (Unix time).",
        "gauge",
        per(&|s| {
            s.last_binlog_event
                .as_deref()
                .and_then(secs)
                .map(|v| v.to_string())
        }),
    );
    family(
        "snap_job_recovery_point_age_seconds",
        "Seconds since the start of the newest good backup or binary-log archive run: what a loss now would cost.",
        "gauge",
        per(&|s| s.recovery_point_age_secs.map(|v| v.to_string())),
    );
    family(
        "snap_repository_size_bytes",
        "Bytes the repository's packs occupy.",
        "gauge",
        sizes
            .iter()
            .map(|(r, b)| (format!("repository=\"{}\"", label(r)), b.to_string()))
            .collect(),
    );
    out
}

/// Writes `text` as `dir/snap.prom`, atomically.
pub fn write_textfile(dir: &Path, text: &str) -> Result<std::path::PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".snap.prom.")
        .tempfile_in(dir)
        .map_err(|e| Error::io("cannot create a file in", dir, e))?;
    tmp.write_all(text.as_bytes())
        .and_then(|_| tmp.as_file().sync_data())
        .and_then(|_| {
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
        })
        .map_err(|e| Error::io("cannot write", tmp.path().to_path_buf(), e))?;
    let dest = dir.join("snap.prom");
    tmp.persist(&dest)
        .map_err(|e| Error::io("cannot rename into", &dest, e.error))?;
    Ok(dest)
}
