//! `backup.yml` as written: the serde shapes of the file (every struct refuses unknown keys) and
//! their validation into a [`Plan`]. Parsing is two steps so every error can name its place:
//! serde-saphyr reports syntax and shape errors with a line and column, serde_path_to_error adds
//! the dotted key path; the values that need more than a type (cron expressions, references to a
//! repository or class, durations, URLs) are read as [`Spanned`] and checked afterwards with the
//! location they were read from.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::PlanError;
use super::schedule::Schedule;
use crate::policy::retention::Policy;

/// The file's top level.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    version: Spanned<u32>,
    #[serde(default)]
    log: Option<PathBuf>,
    repositories: HashMap<String, RawRepository>,
    #[serde(default)]
    classes: BTreeMap<String, RawClass>,
    #[serde(default)]
    defaults: RawDefaults,
    jobs: HashMap<String, RawJob>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepository {
    url: Spanned<String>,
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default)]
    password_env: Option<String>,
    #[serde(default)]
    s3_endpoint: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClass {
    keep: RawKeep,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct RawKeep {
    #[serde(default)]
    last: u32,
    #[serde(default)]
    hourly: u32,
    #[serde(default)]
    daily: u32,
    #[serde(default)]
    weekly: u32,
    #[serde(default)]
    monthly: u32,
    #[serde(default)]
    yearly: u32,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    retry_backoff: Option<Spanned<String>>,
    #[serde(default)]
    notify: Vec<RawNotify>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    class: Spanned<String>,
    repository: Spanned<String>,
    #[serde(default)]
    copy_to: Vec<Spanned<String>>,
    #[serde(default)]
    paths: Vec<PathBuf>,
    #[serde(default)]
    include: Vec<Spanned<String>>,
    #[serde(default)]
    exclude: Vec<Spanned<String>>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    mysql: Option<RawMysql>,
    schedule: RawSchedule,
    #[serde(default)]
    binlog: Option<RawCron>,
    #[serde(default)]
    verify: Option<RawVerify>,
    #[serde(default)]
    check: Option<RawCheck>,
    #[serde(default)]
    keep: Option<RawKeep>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    retry_backoff: Option<Spanned<String>>,
    #[serde(default)]
    hooks: RawHooks,
    #[serde(default)]
    notify: Option<Vec<RawNotify>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMysql {
    url: Spanned<String>,
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default)]
    password_env: Option<String>,
    #[serde(default)]
    databases: Vec<String>,
    #[serde(default)]
    exclude_databases: Vec<String>,
    #[serde(default)]
    tables: Vec<String>,
    #[serde(default)]
    exclude_tables: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    #[serde(default)]
    full: Option<Spanned<String>>,
    #[serde(default)]
    incremental: Option<Spanned<String>>,
    #[serde(default)]
    differential: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCron {
    schedule: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVerify {
    schedule: Spanned<String>,
    #[serde(default)]
    scratch: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    schedule: Spanned<String>,
    /// `P%` or `n/t`, as `snap check --read-data-subset` takes it.
    #[serde(default)]
    read_data_subset: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHooks {
    #[serde(default)]
    before: Vec<String>,
    #[serde(default)]
    after: Vec<String>,
    #[serde(default)]
    on_failure: Vec<String>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    #[serde(default = "default_on")]
    on: Vec<Event>,
    #[serde(default)]
    command: Option<Spanned<String>>,
    #[serde(default)]
    webhook: Option<Spanned<String>>,
    #[serde(default)]
    email: Option<Spanned<String>>,
}

fn default_on() -> Vec<Event> {
    vec![Event::Failure, Event::Skip]
}

/// When a notification is sent.
#[derive(Deserialize, serde::Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    Success,
    Failure,
    Skip,
}

/// The validated plan: every reference resolved, every schedule parsed.
#[derive(Debug, Clone)]
pub struct Plan {
    pub file: PathBuf,
    /// The run log (default: next to the file, `<stem>.runs.jsonl`).
    pub log: PathBuf,
    /// Per-job run state (retention days), next to the log.
    pub state: PathBuf,
    pub repositories: BTreeMap<String, Repository>,
    pub jobs: Vec<Job>,
}

/// Where a secret comes from; never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    File(PathBuf),
    Env(String),
}

#[derive(Debug, Clone)]
pub struct Repository {
    pub name: String,
    pub url: String,
    pub password: Secret,
    pub s3_endpoint: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Mysql {
    pub url: String,
    pub password: Option<Secret>,
    pub databases: Vec<String>,
    pub exclude_databases: Vec<String>,
    pub tables: Vec<String>,
    pub exclude_tables: Vec<String>,
}

/// What one run of a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    // Ordered weakest first: when several fall in the same minute, the last (strongest) runs.
    Binlog,
    Incremental,
    Differential,
    Full,
    Verify,
    Check,
}

impl Action {
    pub const ALL: [Action; 6] = [
        Action::Binlog,
        Action::Incremental,
        Action::Differential,
        Action::Full,
        Action::Verify,
        Action::Check,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Binlog => "binlog",
            Action::Incremental => "incremental",
            Action::Differential => "differential",
            Action::Full => "full",
            Action::Verify => "verify",
            Action::Check => "check",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// A backup (as opposed to archiving binary logs or a drill).
    pub fn is_backup(self) -> bool {
        matches!(
            self,
            Action::Full | Action::Incremental | Action::Differential
        )
    }

    /// Which actions share a slot: of backups falling in one minute only the fullest runs;
    /// binary-log archiving, drills and checks are separate work.
    pub fn group(self) -> u8 {
        match self {
            Action::Binlog => 0,
            Action::Verify => 2,
            Action::Check => 3,
            _ => 1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Notify {
    pub on: Vec<Event>,
    pub target: NotifyTarget,
}

#[derive(Debug, Clone)]
pub enum NotifyTarget {
    Command(String),
    Webhook(String),
    Email(String),
}

#[derive(Debug, Clone, Default)]
pub struct Hooks {
    pub before: Vec<String>,
    pub after: Vec<String>,
    pub on_failure: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub class: String,
    pub repository: String,
    pub copy_to: Vec<String>,
    pub paths: Vec<PathBuf>,
    /// `snap backup --include`: only files matching (or under a directory matching) these.
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub host: Option<String>,
    pub mysql: Option<Mysql>,
    /// Each action with its schedule (at most one schedule per action).
    pub schedules: Vec<(Action, Schedule)>,
    pub verify_scratch: Option<String>,
    /// `snap check --read-data-subset` for the `check` action (headers only when absent).
    pub check_subset: Option<String>,
    pub keep: Policy,
    pub retries: u32,
    pub retry_backoff: Duration,
    pub hooks: Hooks,
    pub notify: Vec<Notify>,
}

impl Job {
    /// The tag every snapshot of this job carries, so retention sees the job's snapshots only.
    pub fn tag(&self) -> String {
        format!("job={}", self.name)
    }

    pub fn schedule(&self, a: Action) -> Option<&Schedule> {
        self.schedules.iter().find(|(x, _)| *x == a).map(|(_, s)| s)
    }
}

/// The seed's retention: 7 daily, 4 weekly, 12 monthly, for each built-in class.
pub const BUILTIN_CLASSES: [&str; 3] = ["critical", "important", "normal"];

fn default_keep() -> RawKeep {
    RawKeep {
        daily: 7,
        weekly: 4,
        monthly: 12,
        ..RawKeep::default()
    }
}

fn policy(k: RawKeep) -> Policy {
    Policy {
        last: k.last,
        hourly: k.hourly,
        daily: k.daily,
        weekly: k.weekly,
        monthly: k.monthly,
        yearly: k.yearly,
        within: None,
        tags: Vec::new(),
    }
}

/// Reads and validates `file`.
pub fn load(file: &Path) -> Result<Plan, PlanError> {
    let text = std::fs::read_to_string(file).map_err(|e| PlanError {
        file: file.to_path_buf(),
        line: 0,
        column: 0,
        key: String::new(),
        message: format!("cannot read: {e}"),
    })?;
    parse(file, &text)
}

/// Validates `text` as the contents of `file` (which names it in errors and places the log).
pub fn parse(file: &Path, text: &str) -> Result<Plan, PlanError> {
    let mut path = String::new();
    let mut opts = serde_saphyr::Options::default();
    opts.with_snippet = false;
    let raw: Result<RawPlan, serde_saphyr::Error> =
        serde_saphyr::with_deserializer_from_str_with_options(text, opts, |de| {
            serde_path_to_error::deserialize(de).map_err(|e| {
                path = e.path().to_string();
                e.into_inner()
            })
        });
    let raw = raw.map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        let msg = e.to_string();
        let suffix = format!(" at line {line}, column {column}");
        let msg = msg.strip_suffix(&suffix).unwrap_or(&msg).to_string();
        PlanError {
            file: file.to_path_buf(),
            line,
            column,
            key: if path == "." { String::new() } else { path },
            message: explain(&msg),
        }
    })?;
    Validator { file, text }.plan(raw)
}

/// serde's messages, with what is allowed where serde does not say it.
fn explain(msg: &str) -> String {
    if msg.starts_with("invalid u32") || msg.contains("expected u32") {
        return format!("{msg}: a whole number from 0 to 4294967295 is allowed here");
    }
    msg.to_string()
}

struct Validator<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Validator<'_> {
    fn err<T>(
        &self,
        at: &Spanned<T>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> PlanError {
        PlanError {
            file: self.file.to_path_buf(),
            line: at.referenced.line(),
            column: at.referenced.column(),
            key: key.into(),
            message: message.into(),
        }
    }

    /// An error about a map entry's key, placed at the entry: the line above its first field
    /// `at` (where the key is when, as usual, the field comes first).
    fn err_above<T>(
        &self,
        at: &Spanned<T>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> PlanError {
        let line = at.referenced.line().saturating_sub(1).max(1);
        let column = usize::try_from(line - 1)
            .ok()
            .and_then(|i| self.text.lines().nth(i))
            .and_then(|l| l.find(|c: char| !c.is_whitespace()))
            .map_or(1, |c| c as u64 + 1);
        PlanError {
            file: self.file.to_path_buf(),
            line,
            column,
            key: key.into(),
            message: message.into(),
        }
    }

    fn plan(&self, raw: RawPlan) -> Result<Plan, PlanError> {
        if raw.version.value != 1 {
            return Err(self.err(
                &raw.version,
                "version",
                format!(
                    "version {} is not known: only 1 is allowed",
                    raw.version.value
                ),
            ));
        }
        let mut repositories = BTreeMap::new();
        let mut repos: Vec<_> = raw.repositories.into_iter().collect();
        repos.sort_by_key(|(_, r)| r.url.referenced.span().offset());
        for (name, r) in repos {
            let key = format!("repositories.{name}");
            check_name(&name).map_err(|m| self.err(&r.url, &key, m))?;
            if r.url.value.trim().is_empty() {
                return Err(self.err(&r.url, format!("{key}.url"), "a repository URL is required: a directory, s3://BUCKET/PREFIX or sftp://USER@HOST/PATH"));
            }
            if let Err(e) = crate::backend::Location::parse(&r.url.value, r.s3_endpoint.as_deref())
            {
                return Err(self.err(&r.url, format!("{key}.url"), e.to_string()));
            }
            let password = match (r.password_file, r.password_env) {
                (Some(f), None) => Secret::File(f),
                (None, Some(v)) => Secret::Env(v),
                _ => {
                    return Err(self.err_above(
                        &r.url,
                        &key,
                        "exactly one of password_file (a file whose first line is the password) or \
                         password_env (the name of an environment variable) is required; a password \
                         is never written in this file",
                    ));
                }
            };
            repositories.insert(
                name.clone(),
                Repository {
                    name,
                    url: r.url.value,
                    password,
                    s3_endpoint: r.s3_endpoint,
                },
            );
        }
        let mut classes: BTreeMap<String, RawKeep> = BUILTIN_CLASSES
            .iter()
            .map(|c| (c.to_string(), default_keep()))
            .collect();
        for (name, c) in raw.classes {
            check_name(&name).map_err(|m| PlanError {
                file: self.file.to_path_buf(),
                line: 0,
                column: 0,
                key: format!("classes.{name}"),
                message: m,
            })?;
            classes.insert(name, c.keep);
        }
        let backoff =
            |s: &Option<Spanned<String>>, key: &str| -> Result<Option<Duration>, PlanError> {
                match s {
                    None => Ok(None),
                    Some(s) => crate::duration::parse(&s.value)
                        .map(Some)
                        .map_err(|m| self.err(s, key, m)),
                }
            };
        let default_backoff = backoff(&raw.defaults.retry_backoff, "defaults.retry_backoff")?
            .unwrap_or(Duration::from_secs(30));
        let default_retries = raw.defaults.retries.unwrap_or(3);
        let default_notify = self.notify(&raw.defaults.notify, "defaults.notify")?;
        let mut jobs = Vec::new();
        let mut raw_jobs: Vec<_> = raw.jobs.into_iter().collect();
        // file order: the order a reader expects jobs to be listed and run in
        raw_jobs.sort_by_key(|(_, j)| j.class.referenced.span().offset());
        for (name, j) in raw_jobs {
            let key = format!("jobs.{name}");
            check_name(&name).map_err(|m| self.err_above(&j.class, &key, m))?;
            let Some(keep) = classes.get(&j.class.value) else {
                return Err(self.err(
                    &j.class,
                    format!("{key}.class"),
                    format!(
                        "no class {:?}: allowed are {} (add one under `classes:`)",
                        j.class.value,
                        classes.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            };
            let keep = policy(j.keep.unwrap_or(*keep));
            let known = || repositories.keys().cloned().collect::<Vec<_>>().join(", ");
            if !repositories.contains_key(&j.repository.value) {
                return Err(self.err(
                    &j.repository,
                    format!("{key}.repository"),
                    format!(
                        "no repository {:?}: allowed are {} (the names under `repositories:`)",
                        j.repository.value,
                        known()
                    ),
                ));
            }
            let mut copy_to = Vec::new();
            for (i, c) in j.copy_to.iter().enumerate() {
                let k = format!("{key}.copy_to[{i}]");
                if !repositories.contains_key(&c.value) {
                    return Err(self.err(
                        c,
                        k,
                        format!("no repository {:?}: allowed are {}", c.value, known()),
                    ));
                }
                if c.value == j.repository.value || copy_to.contains(&c.value) {
                    return Err(self.err(
                        c,
                        k,
                        format!(
                            "repository {:?} is already a destination of this job",
                            c.value
                        ),
                    ));
                }
                copy_to.push(c.value.clone());
            }
            let mut schedules = Vec::new();
            for (action, s) in [
                (Action::Full, &j.schedule.full),
                (Action::Incremental, &j.schedule.incremental),
                (Action::Differential, &j.schedule.differential),
                (
                    Action::Binlog,
                    &j.binlog.as_ref().map(|b| b.schedule.clone()),
                ),
                (
                    Action::Verify,
                    &j.verify.as_ref().map(|v| v.schedule.clone()),
                ),
                (Action::Check, &j.check.as_ref().map(|c| c.schedule.clone())),
            ] {
                let Some(s) = s else { continue };
                let k = match action {
                    Action::Binlog => format!("{key}.binlog.schedule"),
                    Action::Verify => format!("{key}.verify.schedule"),
                    Action::Check => format!("{key}.check.schedule"),
                    a => format!("{key}.schedule.{}", a.as_str()),
                };
                let parsed = Schedule::parse(&s.value).map_err(|m| self.err(s, k, m))?;
                schedules.push((action, parsed));
            }
            if !schedules.iter().any(|(a, _)| a.is_backup()) {
                return Err(PlanError {
                    file: self.file.to_path_buf(),
                    line: j.class.referenced.line(),
                    column: 1,
                    key: format!("{key}.schedule"),
                    message:
                        "at least one of full, incremental or differential is required (a cron \
                              expression such as \"0 1 * * *\")"
                            .into(),
                });
            }
            let mysql = match j.mysql {
                None => None,
                Some(m) => {
                    let k = format!("{key}.mysql");
                    let u = &m.url.value;
                    if !(u.starts_with("mysql://") || u.starts_with("mariadb://")) {
                        return Err(self.err(
                            &m.url,
                            format!("{k}.url"),
                            "a server URL mysql://USER@HOST:PORT is allowed here",
                        ));
                    }
                    match crate::mysql::MysqlTarget::from_url(u) {
                        Ok(t) if t.password.is_some() => {
                            return Err(self.err(&m.url, format!("{k}.url"), "no password in the URL: give it with password_file or password_env (a URL is shown in the process list and logs)"));
                        }
                        Ok(_) => {}
                        Err(e) => return Err(self.err(&m.url, format!("{k}.url"), e.to_string())),
                    }
                    let password = match (m.password_file, m.password_env) {
                        (Some(f), None) => Some(Secret::File(f)),
                        (None, Some(v)) => Some(Secret::Env(v)),
                        (None, None) => None,
                        _ => {
                            return Err(self.err(
                                &m.url,
                                k,
                                "password_file and password_env exclude each other",
                            ));
                        }
                    };
                    Some(Mysql {
                        url: m.url.value,
                        password,
                        databases: m.databases,
                        exclude_databases: m.exclude_databases,
                        tables: m.tables,
                        exclude_tables: m.exclude_tables,
                    })
                }
            };
            if mysql.is_none() && j.paths.is_empty() {
                return Err(PlanError {
                    file: self.file.to_path_buf(),
                    line: j.class.referenced.line(),
                    column: 1,
                    key: key.clone(),
                    message: "nothing to back up: give paths, mysql, or both".into(),
                });
            }
            if mysql.is_none()
                && let Some(b) = &j.binlog
            {
                return Err(self.err(
                    &b.schedule,
                    format!("{key}.binlog"),
                    "binary-log archiving needs a mysql source in the same job",
                ));
            }
            if let Some(p) = j.paths.iter().find(|p| !p.is_absolute()) {
                return Err(PlanError {
                    file: self.file.to_path_buf(),
                    line: j.class.referenced.line(),
                    column: 1,
                    key: format!("{key}.paths"),
                    message: format!(
                        "{} is relative: only absolute paths are allowed (a scheduler's working directory is not yours)",
                        p.display()
                    ),
                });
            }
            let patterns = |list: &[Spanned<String>], name: &str| {
                let mut out = Vec::new();
                for (i, p) in list.iter().enumerate() {
                    crate::archiver::globset(std::slice::from_ref(&p.value)).map_err(|e| {
                        self.err(
                            p,
                            format!("{key}.{name}[{i}]"),
                            format!(
                                "{e}: a glob such as \"*.py\" or \"/srv/upload\" is allowed here"
                            ),
                        )
                    })?;
                    out.push(p.value.clone());
                }
                Ok::<_, PlanError>(out)
            };
            let include = patterns(&j.include, "include")?;
            let exclude = patterns(&j.exclude, "exclude")?;
            if !include.is_empty() && j.paths.is_empty() {
                return Err(self.err(
                    &j.include[0],
                    format!("{key}.include"),
                    "include patterns pick files under paths: give paths too",
                ));
            }
            let check_subset = match j.check.as_ref().and_then(|c| c.read_data_subset.as_ref()) {
                None => None,
                Some(s) => {
                    crate::checker::verified::ReadData::from_str(&s.value).map_err(|m| {
                        self.err(
                            s,
                            format!("{key}.check.read_data_subset"),
                            format!("{m}: P% (e.g. 5%) or n/t (e.g. 1/7) is allowed here"),
                        )
                    })?;
                    Some(s.value.clone())
                }
            };
            let retry_backoff = backoff(&j.retry_backoff, &format!("{key}.retry_backoff"))?
                .unwrap_or(default_backoff);
            let notify = match &j.notify {
                Some(n) => self.notify(n, &format!("{key}.notify"))?,
                None => default_notify.clone(),
            };
            jobs.push(Job {
                name,
                class: j.class.value,
                repository: j.repository.value,
                copy_to,
                paths: j.paths,
                include,
                exclude,
                host: j.host,
                mysql,
                schedules,
                verify_scratch: j.verify.and_then(|v| v.scratch),
                check_subset,
                keep,
                retries: j.retries.unwrap_or(default_retries),
                retry_backoff,
                hooks: Hooks {
                    before: j.hooks.before,
                    after: j.hooks.after,
                    on_failure: j.hooks.on_failure,
                },
                notify,
            });
        }
        let dir = self.file.parent().unwrap_or(Path::new("."));
        let stem = self
            .file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "backup".into());
        let log = match raw.log {
            Some(l) if l.is_absolute() => l,
            Some(l) => dir.join(l),
            None => dir.join(format!("{stem}.runs.jsonl")),
        };
        let state = log.with_extension("state.json");
        Ok(Plan {
            file: self.file.to_path_buf(),
            log,
            state,
            repositories,
            jobs,
        })
    }

    fn notify(&self, list: &[RawNotify], key: &str) -> Result<Vec<Notify>, PlanError> {
        let mut out = Vec::new();
        for (i, n) in list.iter().enumerate() {
            let k = format!("{key}[{i}]");
            let target = match (&n.command, &n.webhook, &n.email) {
                (Some(c), None, None) => NotifyTarget::Command(c.value.clone()),
                (None, Some(w), None) => {
                    if !(w.value.starts_with("http://") || w.value.starts_with("https://")) {
                        return Err(self.err(
                            w,
                            format!("{k}.webhook"),
                            "an http:// or https:// URL is allowed here",
                        ));
                    }
                    NotifyTarget::Webhook(w.value.clone())
                }
                (None, None, Some(e)) => {
                    if !e.value.contains('@')
                        || e.value.chars().any(|c| c.is_whitespace() || c == ',')
                    {
                        return Err(self.err(
                            e,
                            format!("{k}.email"),
                            "one e-mail address (user@host) is allowed here",
                        ));
                    }
                    NotifyTarget::Email(e.value.clone())
                }
                _ => {
                    let at = n
                        .command
                        .as_ref()
                        .or(n.webhook.as_ref())
                        .or(n.email.as_ref());
                    return Err(match at {
                        Some(at) => {
                            self.err(at, k, "exactly one of command, webhook or email per entry")
                        }
                        None => PlanError {
                            file: self.file.to_path_buf(),
                            line: 0,
                            column: 0,
                            key: k,
                            message: "exactly one of command, webhook or email per entry".into(),
                        },
                    });
                }
            };
            out.push(Notify {
                on: n.on.clone(),
                target,
            });
        }
        Ok(out)
    }
}

/// Names become tags, systemd unit names and file names: letters, digits, `-` and `_`.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "name {name:?}: only letters, digits, '-' and '_' are allowed (1 to 64 characters)"
        ));
    }
    Ok(())
}
