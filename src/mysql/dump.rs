//! A consistent full dump of a server into [`StreamSink`] streams: mydumper's method of one
//! short global lock during which several worker connections open the same consistent snapshot,
//! then read tables in parallel from it with no lock held.
//!
//! Order of work (see [`crate::mysql::lock`] for why each step sits where it does):
//! 1. open the control connection, the workers and a watchdog (before any lock: connecting is slow);
//! 2. block DDL within the lock timeout;
//! 3. read the catalog and write the schema, sequence and object streams;
//! 4. freeze the non-transactional tables (`LOCK TABLES … READ` on their own connection) and
//!    dump them while InnoDB commits keep flowing;
//! 5. block commits; every worker starts its consistent snapshot; read binlog position and
//!    GTID; unblock — this is the measured lock time; then unfreeze the tables of step 4;
//! 6. dump the transactional tables in parallel, biggest first;
//! 7. write `manifest.json` last, so a dump without one is visibly incomplete.

use std::io::Write;
use std::time::{Duration, Instant};

use ::mysql::Conn;
use ::mysql::prelude::Queryable;

use crate::error::{Error, Result};
use crate::mysql::conn::{Flavor, MysqlTarget, ServerInfo, exec, quote_str};
use crate::mysql::lock::{GlobalLock, Watchdog};
use crate::mysql::manifest::{self, DatabaseEntry, DumpManifest, TableEntry};
use crate::mysql::rows::{self, RowShape};
use crate::mysql::schema::{self, ObjectDef, Selection, TableInfo};
use crate::mysql::script::write_statement;
use crate::mysql::streams::StreamSink;
use crate::mysql::workers::on_connections;

/// What to dump and how.
#[derive(Debug, Clone)]
pub struct DumpOptions {
    pub selection: Selection,
    /// Worker connections reading tables in parallel (at least 1).
    pub threads: usize,
    /// How long each lock step may wait for statements holding it back before the dump gives
    /// up with [`Error::MysqlLockTimeout`].
    pub lock_timeout: Duration,
    /// Also dump users and their grants (`_users.sql`).
    pub grants: bool,
}

impl Default for DumpOptions {
    fn default() -> Self {
        DumpOptions {
            selection: Selection::default(),
            threads: 4,
            lock_timeout: Duration::from_secs(10),
            grants: false,
        }
    }
}

/// Dumps the selected databases of `target` into `sink` and returns the manifest (also written as
/// `manifest.json`).
pub fn dump(
    target: &MysqlTarget,
    sink: &dyn StreamSink,
    opts: &DumpOptions,
) -> Result<DumpManifest> {
    let started = Instant::now();
    let started_at = now();
    let sel = opts.selection.compile()?;
    let mut control = target.connect()?;
    let server = ServerInfo::query(&mut control)?;
    for sql in [
        "SET NAMES utf8mb4",
        // TIMESTAMP defaults in SHOW CREATE TABLE are shown in the session zone; restore uses
        // the same zone
        "SET SESSION time_zone = '+00:00'",
    ] {
        exec(&mut control, sql)?;
    }
    let (server_time_zone, system_time_zone) = control
        .query_first::<(String, String), _>("SELECT @@global.time_zone, @@system_time_zone")
        .map_err(|e| Error::mysql("reading the server time zone", e))?
        .unwrap_or_default();
    let mut lock = GlobalLock::new(server.flavor, target, opts.lock_timeout);
    lock.prepare(&mut control)?;
    let mut workers = Vec::new();
    for _ in 0..opts.threads.max(1) {
        let mut w = target.connect()?;
        rows::setup_read_session(&mut w)?;
        exec(
            &mut w,
            "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        )?;
        workers.push(w);
    }
    // reads the non-transactional tables under LOCK TABLES (see lock::freeze_tables)
    let mut frozen_reader = target.connect()?;
    rows::setup_read_session(&mut frozen_reader)?;
    lock.prepare(&mut frozen_reader)?;
    let dog = Watchdog::start(target)?;

    let mut bytes = 0u64;
    let result = locked_part(
        &mut control,
        &dog,
        &mut lock,
        &mut workers,
        &mut frozen_reader,
        sink,
        opts,
        &sel,
        &mut bytes,
    );
    let (databases, point, users) = match result {
        Ok(v) => v,
        Err(e) => {
            // give everything back before reporting; closing the connections would too
            let _ = lock.release(&mut control);
            return Err(e);
        }
    };
    lock.release(&mut control)?;
    drop(dog);
    drop(workers);

    let m = DumpManifest {
        format: manifest::FORMAT,
        server,
        binlog_file: point.binlog_file,
        binlog_position: point.binlog_position,
        gtid: point.gtid,
        server_time_zone,
        system_time_zone,
        started_at,
        finished_at: now(),
        lock_ms: lock.commit_ms,
        ddl_lock_ms: lock.ddl_ms,
        duration_ms: started.elapsed().as_millis() as u64,
        bytes,
        databases,
        users,
    };
    write_stream(sink, manifest::MANIFEST_PATH, &m.to_json())?;
    Ok(m)
}

/// Binlog coordinates of the snapshot.
#[derive(Default)]
struct SnapshotPoint {
    binlog_file: Option<String>,
    binlog_position: Option<u64>,
    gtid: Option<String>,
}

type Locked = (Vec<DatabaseEntry>, SnapshotPoint, Option<String>);

/// Steps 2–6; on error the caller releases the lock.
#[allow(clippy::too_many_arguments)]
fn locked_part(
    control: &mut Conn,
    dog: &Watchdog,
    lock: &mut GlobalLock,
    workers: &mut [Conn],
    frozen_reader: &mut Conn,
    sink: &dyn StreamSink,
    opts: &DumpOptions,
    sel: &schema::CompiledSelection,
    bytes: &mut u64,
) -> Result<Locked> {
    lock.block_ddl(control, dog)?;

    // catalog and definition streams, while DDL is blocked
    let mut dbs = Vec::new();
    let mut tables: Vec<TableInfo> = Vec::new();
    for info in schema::databases(control, sel)? {
        let db = info.name.clone();
        let db_tables = schema::tables(control, &db, sel)?;
        for t in &db_tables {
            let mut buf = Vec::new();
            write_statement(&mut buf, &format!("TABLE {}", t.name), &t.create_sql).map_err(
                |e| Error::dump_stream(manifest::schema_path(&db, &t.name), e.to_string()),
            )?;
            *bytes += write_stream(sink, &manifest::schema_path(&db, &t.name), &buf)?;
        }
        let seqs = schema::sequences(control, &db, sel)?;
        let sequences = write_script(sink, &manifest::sequences_path(&db), &seqs, bytes)?;
        let objs = schema::objects(control, &db)?;
        let objects = write_script(sink, &manifest::objects_path(&db), &objs, bytes)?;
        dbs.push(DatabaseEntry {
            info,
            sequences,
            tables: Vec::new(),
            objects,
        });
        tables.extend(db_tables);
    }
    let users = if opts.grants {
        let defs = users(control)?;
        write_script(sink, manifest::USERS_PATH, &defs, bytes)?
    } else {
        None
    };
    let (nontx, tx): (Vec<&TableInfo>, Vec<&TableInfo>) =
        tables.iter().partition(|t| !t.transactional);

    // frozen from here until after the snapshot, so their rows match it
    let frozen: Vec<(&str, &str)> = nontx
        .iter()
        .map(|t| (t.db.as_str(), t.name.as_str()))
        .collect();
    lock.freeze_tables(frozen_reader, dog, &frozen)?;
    let mut entries = dump_tables(std::slice::from_mut(frozen_reader), &nontx, sink)?;

    lock.block_commit(control, dog)?;
    for w in workers.iter_mut() {
        exec(w, "START TRANSACTION WITH CONSISTENT SNAPSHOT")?;
    }
    let point = match (lock.flavor, workers.first_mut()) {
        (Flavor::Mariadb, Some(w)) => mariadb_point(w)?,
        _ => mysql_point(control)?,
    };
    lock.unblock_commit(control)?;
    if !frozen.is_empty() {
        exec(frozen_reader, "UNLOCK TABLES")?;
    }

    entries.extend(dump_tables(workers, &tx, sink)?);
    for w in workers.iter_mut() {
        exec(w, "COMMIT")?;
    }

    for (db, entry) in entries {
        *bytes += entry.bytes;
        if let Some(d) = dbs.iter_mut().find(|d| d.info.name == db) {
            d.tables.push(entry);
        }
    }
    for d in &mut dbs {
        d.tables.sort_by(|a, b| a.name.cmp(&b.name));
    }
    Ok((dbs, point, users))
}

fn mariadb_point(w: &mut Conn) -> Result<SnapshotPoint> {
    let status: Vec<(String, String)> = w
        .query("SHOW STATUS LIKE 'binlog_snapshot_%'")
        .map_err(|e| Error::mysql("reading binlog_snapshot status", e))?;
    let mut p = SnapshotPoint::default();
    for (k, v) in status {
        match k.to_ascii_lowercase().as_str() {
            "binlog_snapshot_file" if !v.is_empty() => p.binlog_file = Some(v),
            "binlog_snapshot_position" => p.binlog_position = v.parse().ok(),
            _ => {}
        }
    }
    if p.binlog_file.is_none() {
        p.binlog_position = None;
    }
    p.gtid = w
        .query_first::<Option<String>, _>("SELECT @@gtid_binlog_pos")
        .map_err(|e| Error::mysql("reading @@gtid_binlog_pos", e))?
        .flatten();
    Ok(p)
}

fn mysql_point(control: &mut Conn) -> Result<SnapshotPoint> {
    // SHOW MASTER STATUS was renamed in 8.2; try the new name first
    let row: Option<::mysql::Row> = match control.query_first("SHOW BINARY LOG STATUS") {
        Ok(r) => r,
        Err(_) => control
            .query_first("SHOW MASTER STATUS")
            .map_err(|e| Error::mysql("reading binary log status", e))?,
    };
    let mut p = SnapshotPoint::default();
    if let Some(r) = row {
        p.binlog_file = r.get::<Option<String>, _>(0).flatten();
        p.binlog_position = r.get::<Option<u64>, _>(1).flatten();
    }
    p.gtid = control
        .query_first::<Option<String>, _>("SELECT @@global.gtid_executed")
        .map_err(|e| Error::mysql("reading @@gtid_executed", e))?
        .flatten();
    Ok(p)
}

/// Dumps `tables` with one thread per worker connection, biggest tables first. The first error
/// stops the others from starting new tables and is returned.
fn dump_tables(
    workers: &mut [Conn],
    tables: &[&TableInfo],
    sink: &dyn StreamSink,
) -> Result<Vec<(String, TableEntry)>> {
    let mut queue: Vec<&TableInfo> = tables.to_vec();
    queue.sort_by(|a, b| {
        b.data_length
            .cmp(&a.data_length)
            .then_with(|| (&a.db, &a.name).cmp(&(&b.db, &b.name)))
    });
    on_connections(workers, queue, |w, t| {
        dump_table(w, t, sink).map(|entry| (t.db.clone(), entry))
    })
}

fn dump_table(w: &mut Conn, t: &TableInfo, sink: &dyn StreamSink) -> Result<TableEntry> {
    let shape = RowShape {
        columns: t.columns.clone(),
        order_by: t.order_by.clone(),
        has_primary_key: t.has_primary_key,
        versioned: t.versioned,
    };
    let path = manifest::rows_path(&t.db, &t.name);
    let mut out = sink.create(&path)?;
    let stats = rows::stream_table(w, &t.db, &t.name, &shape, &mut out)?;
    out.finish()?;
    Ok(TableEntry {
        name: t.name.clone(),
        engine: t.engine.clone(),
        transactional: t.transactional,
        shape,
        schema: manifest::schema_path(&t.db, &t.name),
        rows_path: path,
        rows: stats.rows,
        bytes: stats.bytes,
        checksum: stats.checksum,
        samples: stats.samples,
    })
}

/// Writes a script of object statements, or nothing when there are no objects.
fn write_script(
    sink: &dyn StreamSink,
    path: &str,
    defs: &[ObjectDef],
    bytes: &mut u64,
) -> Result<Option<String>> {
    if defs.is_empty() {
        return Ok(None);
    }
    let mut buf = Vec::new();
    for d in defs {
        for sql in &d.statements {
            write_statement(&mut buf, &format!("{} {}", d.kind, d.name), sql)
                .map_err(|e| Error::dump_stream(path, e.to_string()))?;
        }
    }
    *bytes += write_stream(sink, path, &buf)?;
    Ok(Some(path.to_string()))
}

fn write_stream(sink: &dyn StreamSink, path: &str, data: &[u8]) -> Result<u64> {
    let mut w = sink.create(path)?;
    w.write_all(data)
        .map_err(|e| Error::dump_stream(path, format!("write failed: {e}")))?;
    w.finish()?;
    Ok(data.len() as u64)
}

/// Accounts (not roles, not the server's own) with `CREATE USER IF NOT EXISTS` and their grants.
fn users(control: &mut Conn) -> Result<Vec<ObjectDef>> {
    let list: Vec<(String, String)> = control
        .query(
            "SELECT User, Host FROM mysql.user WHERE User NOT IN \
             ('', 'root', 'mariadb.sys', 'mysql', 'mysql.sys', 'mysql.session', \
              'mysql.infoschema', 'PUBLIC') ORDER BY User, Host",
        )
        .map_err(|e| Error::mysql("listing users", e))?;
    let mut out = Vec::new();
    for (user, host) in list {
        let account = format!("{}@{}", quote_str(&user), quote_str(&host));
        let create: Option<String> =
            match control.query_first(format!("SHOW CREATE USER {account}")) {
                Ok(c) => c,
                // roles are listed in mysql.user on MariaDB but have no CREATE USER form
                Err(::mysql::Error::MySqlError(_)) => continue,
                Err(e) => return Err(Error::mysql(format!("reading user {account}"), e)),
            };
        let Some(create) = create else { continue };
        let create = create.replacen("CREATE USER ", "CREATE USER IF NOT EXISTS ", 1);
        let grants: Vec<String> = control
            .query(format!("SHOW GRANTS FOR {account}"))
            .map_err(|e| Error::mysql(format!("reading grants of {account}"), e))?;
        let mut statements = vec![create];
        statements.extend(grants);
        out.push(ObjectDef {
            kind: "USER",
            name: format!("{user}@{host}"),
            statements,
        });
    }
    Ok(out)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
