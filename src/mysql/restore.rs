//! Loading a dump back into a server, then proving it arrived intact.
//!
//! Per target database: drop it when replacing (the caller has taken its safety snapshot), create
//! it with the dumped character set, sequences first (a column default may call `NEXTVAL`), every
//! table's `CREATE`, then the rows of all tables in parallel on N connections with foreign key
//! checks off, then routines, views, triggers and events — triggers last so loading rows does not
//! fire them. Restoring selected tables replaces just those tables and leaves the database's
//! other tables and objects alone.
//!
//! Each loaded table is read back with the dump's own row encoding ([`crate::mysql::rows`]) and
//! its row count, checksum and sampled rows compared with the manifest; the comparison is the
//! [`RestoreReport`], and [`RestoreReport::into_result`] turns a mismatch into an error.
//!
//! A renamed database (`DB:NEW`) has `` `DB`. `` rewritten to `` `NEW`. `` in view, routine,
//! trigger and event text: `SHOW CREATE VIEW` qualifies every reference with the database name, so
//! without the rewrite a renamed view would still read the original database.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::time::Instant;

use ::mysql::Conn;
use ::mysql::prelude::Queryable;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::mysql::conn::{MysqlTarget, ServerInfo, exec, quote_ident, quote_str};
use crate::mysql::manifest::{self, DatabaseEntry, DumpManifest, TableEntry};
use crate::mysql::rows;
use crate::mysql::script::read_statements;
use crate::mysql::streams::StreamSource;
use crate::mysql::workers::on_connections;

/// What to restore and how.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Databases to restore whole (names as dumped); empty with `tables` empty means all.
    pub databases: Vec<String>,
    /// Single tables as `db.table` (names as dumped), restored into their (renamed) database.
    pub tables: Vec<String>,
    /// `(dumped name, target name)`.
    pub renames: Vec<(String, String)>,
    /// Loader connections.
    pub threads: usize,
    /// Drop target databases (or, for `tables`, target tables) that exist; without it an
    /// existing target is an error and nothing is touched.
    pub replace: bool,
    /// Also create users and grants from `_users.sql`.
    pub users: bool,
    /// Read every loaded table back and compare with the manifest.
    pub verify: bool,
    /// Rows per `INSERT` at most, and bytes per `INSERT` at most (the server's
    /// `max_allowed_packet` must exceed the latter and the largest single row).
    pub batch_rows: usize,
    pub batch_bytes: usize,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            databases: Vec::new(),
            tables: Vec::new(),
            renames: Vec::new(),
            threads: 4,
            replace: false,
            users: false,
            verify: true,
            batch_rows: 1000,
            batch_bytes: 1 << 20,
        }
    }
}

/// One table's verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCheck {
    /// Target database and table.
    pub database: String,
    pub table: String,
    pub expected_rows: u64,
    pub actual_rows: u64,
    pub expected_checksum: String,
    pub actual_checksum: String,
    pub samples_checked: usize,
    /// Keys of sampled rows that were missing or differed.
    pub samples_failed: Vec<String>,
}

impl TableCheck {
    /// One line saying how the table compares with what the backup recorded.
    pub fn describe(&self) -> String {
        format!(
            "{}.{}: rows {} (expected {}), checksum {}, {} of {} sampled row(s) differ",
            self.database,
            self.table,
            self.actual_rows,
            self.expected_rows,
            if self.expected_checksum == self.actual_checksum {
                "matches"
            } else {
                "DIFFERS"
            },
            self.samples_failed.len(),
            self.samples_checked
        )
    }

    pub fn ok(&self) -> bool {
        self.expected_rows == self.actual_rows
            && self.expected_checksum == self.actual_checksum
            && self.samples_failed.is_empty()
    }
}

/// What a restore (or [`verify`]) found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreReport {
    /// Target databases created (or replaced).
    pub databases: Vec<String>,
    pub tables: Vec<TableCheck>,
    pub rows: u64,
    pub duration_ms: u64,
}

impl RestoreReport {
    pub fn mismatches(&self) -> Vec<&TableCheck> {
        self.tables.iter().filter(|t| !t.ok()).collect()
    }

    pub fn is_ok(&self) -> bool {
        self.mismatches().is_empty()
    }

    /// The report when every table matched, else [`Error::MysqlVerify`] naming the mismatches.
    pub fn into_result(self) -> Result<RestoreReport> {
        let bad: Vec<String> = self.mismatches().iter().map(|t| t.describe()).collect();
        if bad.is_empty() {
            Ok(self)
        } else {
            Err(Error::MysqlVerify {
                tables: bad.len(),
                details: bad.join("; "),
            })
        }
    }
}

/// Reads `manifest.json` from a source.
pub fn read_manifest(source: &dyn StreamSource) -> Result<DumpManifest> {
    let r = source.open(manifest::MANIFEST_PATH)?;
    let m: DumpManifest = serde_json::from_reader(r)
        .map_err(|e| Error::dump_stream(manifest::MANIFEST_PATH, e.to_string()))?;
    if m.format != manifest::FORMAT {
        return Err(Error::dump_stream(
            manifest::MANIFEST_PATH,
            format!(
                "dump format {} (this snap reads {})",
                m.format,
                manifest::FORMAT
            ),
        ));
    }
    Ok(m)
}

/// One table to load: where from, where to.
struct Job<'m> {
    target_db: String,
    entry: &'m TableEntry,
}

/// A database to restore: whole, or only some of its tables.
struct DbPlan<'m> {
    entry: &'m DatabaseEntry,
    target: String,
    whole: bool,
    tables: Vec<&'m TableEntry>,
}

fn plan<'m>(m: &'m DumpManifest, opts: &RestoreOptions) -> Result<Vec<DbPlan<'m>>> {
    let renames: BTreeMap<&str, &str> = opts
        .renames
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let target = |db: &str| renames.get(db).map_or(db, |t| t).to_string();
    let find_db = |name: &str| {
        m.database(name)
            .ok_or_else(|| Error::Usage(format!("database {name:?} is not in this dump")))
    };
    let mut plans: Vec<DbPlan> = Vec::new();
    let all = opts.databases.is_empty() && opts.tables.is_empty();
    let whole: Vec<&str> = if all {
        m.databases.iter().map(|d| d.info.name.as_str()).collect()
    } else {
        opts.databases.iter().map(String::as_str).collect()
    };
    for name in whole {
        let e = find_db(name)?;
        plans.push(DbPlan {
            entry: e,
            target: target(name),
            whole: true,
            tables: e.tables.iter().collect(),
        });
    }
    for spec in &opts.tables {
        let (db, table) = spec.split_once('.').ok_or_else(|| {
            Error::Usage(format!("table {spec:?} must be given as DATABASE.TABLE"))
        })?;
        let e = find_db(db)?;
        let t = e
            .tables
            .iter()
            .find(|t| t.name == table)
            .ok_or_else(|| Error::Usage(format!("table {spec:?} is not in this dump")))?;
        match plans.iter_mut().find(|p| p.entry.info.name == db) {
            Some(p) if p.whole => {}
            Some(p) => p.tables.push(t),
            None => plans.push(DbPlan {
                entry: e,
                target: target(db),
                whole: false,
                tables: vec![t],
            }),
        }
    }
    for (from, _) in &opts.renames {
        if !plans.iter().any(|p| &p.entry.info.name == from) {
            return Err(Error::Usage(format!(
                "rename of {from:?}, which is not being restored"
            )));
        }
    }
    Ok(plans)
}

/// Settings every restore connection uses: the dump's conventions (UTC, raw bytes for rows),
/// no foreign key or unique checks while loading, and zero values kept as given.
fn setup_load_session(conn: &mut Conn, server: &ServerInfo, names: &str) -> Result<()> {
    for sql in [
        names,
        "SET SESSION time_zone = '+00:00'",
        "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO'",
        "SET SESSION foreign_key_checks = 0",
        "SET SESSION unique_checks = 0",
        "SET SESSION max_sort_length = 8388608",
        "SET SESSION net_read_timeout = 3600",
        "SET SESSION net_write_timeout = 3600",
    ] {
        exec(conn, sql)?;
    }
    if server.flavor == crate::mysql::Flavor::Mariadb && server.at_least(10, 11) {
        // lets the loader write row_start/row_end of system-versioned history rows
        exec(conn, "SET SESSION system_versioning_insert_history = 1")?;
    }
    Ok(())
}

/// Restores from `source` into `target` (see the module doc for the order of work).
pub fn restore(
    target: &MysqlTarget,
    source: &dyn StreamSource,
    opts: &RestoreOptions,
) -> Result<RestoreReport> {
    let started = Instant::now();
    let m = read_manifest(source)?;
    let plans = plan(&m, opts)?;
    let mut control = target.connect()?;
    let server = ServerInfo::query(&mut control)?;
    setup_load_session(&mut control, &server, "SET NAMES utf8mb4")?;

    // refuse before touching anything when a target exists and replacing was not asked for
    for p in &plans {
        let exists: Option<String> = control
            .query_first(format!(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {}",
                quote_str(&p.target)
            ))
            .map_err(|e| Error::mysql("checking target databases", e))?;
        if exists.is_none() || opts.replace {
            continue;
        }
        if p.whole {
            return Err(Error::Usage(format!(
                "database {} exists on {target}; restore with replace, or rename",
                p.target
            )));
        }
        for t in &p.tables {
            let found: Option<String> = control
                .query_first(format!(
                    "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} \
                     AND TABLE_NAME = {}",
                    quote_str(&p.target),
                    quote_str(&t.name)
                ))
                .map_err(|e| Error::mysql("checking target tables", e))?;
            if found.is_some() {
                return Err(Error::Usage(format!(
                    "table {}.{} exists on {target}; restore with replace",
                    p.target, t.name
                )));
            }
        }
    }

    let mut report = RestoreReport::default();
    let mut jobs = Vec::new();
    for p in &plans {
        let db = quote_ident(&p.target);
        let info = &p.entry.info;
        if p.whole {
            exec(&mut control, &format!("DROP DATABASE IF EXISTS {db}"))?;
            exec(
                &mut control,
                &format!(
                    "CREATE DATABASE {db} CHARACTER SET {} COLLATE {}",
                    quote_ident(&info.charset),
                    quote_ident(&info.collation)
                ),
            )?;
            report.databases.push(p.target.clone());
        } else {
            exec(
                &mut control,
                &format!(
                    "CREATE DATABASE IF NOT EXISTS {db} CHARACTER SET {} COLLATE {}",
                    quote_ident(&info.charset),
                    quote_ident(&info.collation)
                ),
            )?;
        }
        exec(&mut control, &format!("USE {db}"))?;
        if p.whole
            && let Some(path) = &p.entry.sequences
        {
            run_script(&mut control, source, path, None)?;
        }
        for t in &p.tables {
            if !p.whole {
                exec(
                    &mut control,
                    &format!("DROP TABLE IF EXISTS {db}.{}", quote_ident(&t.name)),
                )?;
            }
            run_script(&mut control, source, &t.schema, None)?;
            jobs.push(Job {
                target_db: p.target.clone(),
                entry: t,
            });
        }
    }

    report.tables = load_tables(target, &server, source, jobs, opts)?;
    report.rows = report.tables.iter().map(|t| t.actual_rows).sum();

    for p in plans.iter().filter(|p| p.whole) {
        if let Some(path) = &p.entry.objects {
            // a fresh session per database: object scripts change sql_mode and character sets
            let mut c = target.connect()?;
            setup_load_session(&mut c, &server, "SET NAMES utf8mb4")?;
            exec(&mut c, &format!("USE {}", quote_ident(&p.target)))?;
            let rename = (p.target != p.entry.info.name)
                .then_some((p.entry.info.name.as_str(), p.target.as_str()));
            run_script(&mut c, source, path, rename)?;
        }
    }
    if opts.users
        && let Some(path) = &m.users
    {
        let mut c = target.connect()?;
        exec(&mut c, "SET NAMES utf8mb4")?;
        run_script(&mut c, source, path, None)?;
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Runs a statement script, rewriting `` `from`. `` to `` `to`. `` when renaming.
fn run_script(
    conn: &mut Conn,
    source: &dyn StreamSource,
    path: &str,
    rename: Option<(&str, &str)>,
) -> Result<()> {
    let mut r = BufReader::new(source.open(path)?);
    for st in read_statements(&mut r, path)? {
        let sql = match rename {
            Some((from, to)) => st.sql.replace(
                &format!("{}.", quote_ident(from)),
                &format!("{}.", quote_ident(to)),
            ),
            None => st.sql,
        };
        conn.query_drop(&sql)
            .map_err(|e| Error::mysql(format!("restoring {} from {path}", st.label), e))?;
    }
    Ok(())
}

/// Loads (and verifies) tables on `opts.threads` connections, biggest first.
fn load_tables(
    target: &MysqlTarget,
    server: &ServerInfo,
    source: &dyn StreamSource,
    mut jobs: Vec<Job<'_>>,
    opts: &RestoreOptions,
) -> Result<Vec<TableCheck>> {
    jobs.sort_by_key(|j| std::cmp::Reverse(j.entry.bytes));
    let n = opts.threads.max(1).min(jobs.len().max(1));
    let mut conns = Vec::new();
    for _ in 0..n {
        let mut c = target.connect()?;
        setup_load_session(&mut c, server, "SET NAMES binary")?;
        conns.push(c);
    }
    let checks = on_connections(&mut conns, jobs, |c, job| {
        load_table(c, source, &job, opts)?;
        if opts.verify {
            check_table(c, &job.target_db, job.entry).map(Some)
        } else {
            Ok(None)
        }
    })?;
    let mut checks: Vec<TableCheck> = checks.into_iter().flatten().collect();
    checks.sort_by(|a, b| (&a.database, &a.table).cmp(&(&b.database, &b.table)));
    Ok(checks)
}

/// Streams one `.rows` stream into multi-row `INSERT`s.
fn load_table(
    conn: &mut Conn,
    source: &dyn StreamSource,
    job: &Job<'_>,
    opts: &RestoreOptions,
) -> Result<()> {
    let t = job.entry;
    let path = &t.rows_path;
    let cols: Vec<String> = t
        .shape
        .columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect();
    let head = format!(
        "INSERT INTO {}.{} ({}) VALUES ",
        quote_ident(&job.target_db),
        quote_ident(&t.name),
        cols.join(",")
    );
    let mut r = BufReader::with_capacity(1 << 20, source.open(path)?);
    let mut sql = String::with_capacity(opts.batch_bytes + head.len());
    let mut line = Vec::new();
    let mut in_batch = 0usize;
    let mut lineno = 0u64;
    let flush = |conn: &mut Conn, sql: &mut String, in_batch: &mut usize| -> Result<()> {
        if *in_batch > 0 {
            conn.query_drop(sql.as_str()).map_err(|e| {
                Error::mysql(
                    format!("loading {}.{} from {path}", job.target_db, t.name),
                    e,
                )
            })?;
        }
        sql.clear();
        *in_batch = 0;
        Ok(())
    };
    loop {
        line.clear();
        let n = r
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::dump_stream(path, format!("read failed: {e}")))?;
        if n == 0 {
            break;
        }
        lineno += 1;
        if line.pop() != Some(b'\n') || line.first() != Some(&b'(') || line.last() != Some(&b')') {
            return Err(Error::dump_stream(
                path,
                format!("line {lineno} is not a row tuple"),
            ));
        }
        let text = std::str::from_utf8(&line)
            .map_err(|_| Error::dump_stream(path, format!("line {lineno} is not UTF-8")))?;
        if in_batch == 0 {
            sql.push_str(&head);
        } else {
            sql.push(',');
        }
        sql.push_str(text);
        in_batch += 1;
        if in_batch >= opts.batch_rows || sql.len() >= opts.batch_bytes {
            flush(conn, &mut sql, &mut in_batch)?;
        }
    }
    flush(conn, &mut sql, &mut in_batch)
}

/// Re-reads a loaded table with the dump's encoding and compares with its manifest entry.
pub fn check_table(conn: &mut Conn, db: &str, t: &TableEntry) -> Result<TableCheck> {
    let stats = rows::stream_table(conn, db, &t.name, &t.shape, &mut std::io::sink())?;
    let mut samples_failed = Vec::new();
    for s in &t.samples {
        let got = rows::sample_hash(conn, db, &t.name, &t.shape, &s.key)?;
        if got.as_deref() != Some(s.hash.as_str()) {
            samples_failed.push(s.key.clone());
        }
    }
    Ok(TableCheck {
        database: db.to_string(),
        table: t.name.clone(),
        expected_rows: t.rows,
        actual_rows: stats.rows,
        expected_checksum: t.checksum.clone(),
        actual_checksum: stats.checksum,
        samples_checked: t.samples.len(),
        samples_failed,
    })
}

/// Compares databases already on a server with a manifest (the restore's verification on its
/// own, for a verification drill or after a restore done elsewhere).
pub fn verify(
    target: &MysqlTarget,
    m: &DumpManifest,
    opts: &RestoreOptions,
) -> Result<RestoreReport> {
    let started = Instant::now();
    let plans = plan(m, opts)?;
    let mut conn = target.connect()?;
    let server = ServerInfo::query(&mut conn)?;
    setup_load_session(&mut conn, &server, "SET NAMES binary")?;
    let mut report = RestoreReport::default();
    for p in &plans {
        for t in &p.tables {
            report.tables.push(check_table(&mut conn, &p.target, t)?);
        }
    }
    report.rows = report.tables.iter().map(|t| t.actual_rows).sum();
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}
