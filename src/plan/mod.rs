//! A backup strategy as one file, `backup.yml`: named repositories, data classes with their
//! retention, and jobs (sources, schedules, copies, hooks, notifications, drills), and the
//! machinery that carries it out (`snap run`, `snap run --daemon`, `snap schedule`, `snap log`,
//! `snap metrics`, `snap report`).
//!
//! Shaped so a job means exactly what the same command line means: the runner carries out each
//! step by running this very `snap` binary (`backup`, `copy`, `forget`, `prune`, `mysql archive`,
//! `verify`, `check`) with the arguments a user would type. Every step then keeps the command's
//! locks,
//! exit codes and crash safety unchanged, a step that dies takes only itself down (the daemon
//! lives on), and memory stays bounded per step. What the runner adds around the steps: the job
//! lock (skip if still running, across hosts), retries of transient failures, retention once a
//! day, hooks, the run log and notifications.
//!
//! - [`file`]: the YAML format and its validation (every error names file, line, column, key);
//! - [`schedule`]: cron expressions, what is due, and the injectable clock;
//! - [`runner`]: one run of a job, and the due-work loop of `snap run` and its daemon;
//! - [`runlog`]: the run log (one JSON line per run) and the per-day retention state;
//! - [`notify`]: command, webhook and e-mail notifications;
//! - [`export`]: the same plan as crontab lines or systemd timers;
//! - [`metrics`], [`report`]: node-exporter textfile metrics and the HTML/JSON report.

pub mod example;
pub mod export;
pub mod file;
pub mod metrics;
pub mod notify;
pub mod report;
pub mod runlog;
pub mod runner;
pub mod schedule;

use std::path::PathBuf;

pub use file::{Action, Job, Plan, load, parse};

/// Why backup.yml does not validate, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    pub file: PathBuf,
    /// 1-based; 0 when the file could not be read at all.
    pub line: u64,
    pub column: u64,
    /// The dotted key path (`jobs.db.schedule.full`); empty for the top level.
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for PlanError {}

impl From<PlanError> for crate::error::Error {
    fn from(e: PlanError) -> Self {
        crate::error::Error::PlanInvalid(e)
    }
}
