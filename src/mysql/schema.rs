//! The catalog a dump needs, read from the server: which databases and tables to dump, each
//! table's dumped columns (how to encode each), its order key and its `CREATE` statement, and the
//! other objects of each database (sequences, routines, views, triggers, events) as replayable
//! statements with the session settings they were created under.
//!
//! It is read once, on the control connection, while DDL is blocked, so what it says matches the
//! consistent snapshot the rows come from.

use std::collections::{BTreeMap, BTreeSet};

use ::mysql::Conn;
use ::mysql::prelude::Queryable;
use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::mysql::conn::{quote_ident, quote_str};

/// Schemas that are the server's own and are not dumped unless asked for.
pub const SYSTEM_SCHEMAS: &[&str] = &["mysql", "information_schema", "performance_schema", "sys"];

/// How a column's values are written in the row encoding (see [`crate::mysql::rows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueClass {
    /// Integer, decimal, float: the server's text form, unquoted.
    Number,
    /// Character, binary, temporal, ENUM/SET, JSON: the column's raw bytes as a quoted literal
    /// when they are UTF-8, as `X'…'` otherwise (loaded with `SET NAMES binary`, so both are exact).
    Bytes,
    /// BIT and spatial types: always `X'…'` (their bytes are a number or a binary structure).
    Hex,
}

/// One dumped column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnInfo {
    pub name: String,
    /// `DATA_TYPE` from information_schema (informational).
    pub data_type: String,
    pub class: ValueClass,
}

/// One table as the dump sees it.
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub db: String,
    pub name: String,
    pub engine: String,
    /// Rows are read from the consistent snapshot (InnoDB and friends); otherwise they are read
    /// while writes to the table are blocked by the global lock.
    pub transactional: bool,
    /// System-versioned: rows are read `FOR SYSTEM_TIME ALL` with their period columns.
    pub versioned: bool,
    /// Dumped columns in table order: generated columns are left out (the server recomputes
    /// them), period columns of a versioned table are included (they carry the history).
    pub columns: Vec<ColumnInfo>,
    /// Columns that order the rows: the primary key (plus the row-end column of a versioned table),
    /// or none when there is no primary key: such a table is read in the engine's own order (see
    /// [`crate::mysql::rows::select_sql`]), never sorted by its values.
    pub order_by: Vec<String>,
    pub has_primary_key: bool,
    /// Estimated size, to hand big tables out first.
    pub data_length: u64,
    pub create_sql: String,
}

/// One non-table object: the statements that recreate it, in order.
#[derive(Debug, Clone)]
pub struct ObjectDef {
    pub kind: &'static str,
    pub name: String,
    /// Session settings first (`SET …`), then the `CREATE`, then any state (`SETVAL`).
    pub statements: Vec<String>,
}

/// A database's own attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseInfo {
    pub name: String,
    pub charset: String,
    pub collation: String,
}

/// Which databases and tables a dump includes: glob patterns on database names and on
/// `db.table`; an empty include list means everything (but system schemas, unless
/// `include_system`); excludes win over includes.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub databases: Vec<String>,
    pub exclude_databases: Vec<String>,
    pub tables: Vec<String>,
    pub exclude_tables: Vec<String>,
    pub include_system: bool,
}

/// A [`Selection`] with its patterns compiled.
pub struct CompiledSelection {
    dbs: Option<GlobSet>,
    ex_dbs: GlobSet,
    tables: Option<GlobSet>,
    ex_tables: GlobSet,
    include_system: bool,
}

fn globs(patterns: &[String]) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(Glob::new(p).map_err(|e| Error::Usage(format!("bad pattern {p:?}: {e}")))?);
    }
    b.build()
        .map_err(|e| Error::Usage(format!("bad patterns: {e}")))
}

impl Selection {
    pub fn compile(&self) -> Result<CompiledSelection> {
        let opt = |p: &[String]| -> Result<Option<GlobSet>> {
            if p.is_empty() {
                Ok(None)
            } else {
                globs(p).map(Some)
            }
        };
        Ok(CompiledSelection {
            dbs: opt(&self.databases)?,
            ex_dbs: globs(&self.exclude_databases)?,
            tables: opt(&self.tables)?,
            ex_tables: globs(&self.exclude_tables)?,
            include_system: self.include_system,
        })
    }
}

impl CompiledSelection {
    pub fn database(&self, db: &str) -> bool {
        if !self.include_system && SYSTEM_SCHEMAS.contains(&db.to_ascii_lowercase().as_str()) {
            return false;
        }
        self.dbs.as_ref().is_none_or(|g| g.is_match(db)) && !self.ex_dbs.is_match(db)
    }

    pub fn table(&self, db: &str, table: &str) -> bool {
        let full = format!("{db}.{table}");
        self.tables.as_ref().is_none_or(|g| g.is_match(&full)) && !self.ex_tables.is_match(&full)
    }
}

fn q(conn: &mut Conn, what: &str, sql: &str) -> Result<Vec<::mysql::Row>> {
    conn.query(sql)
        .map_err(|e| Error::mysql(format!("reading {what}"), e))
}

/// Text of column `i`: NULL becomes `None`; anything not UTF-8 is an error (catalog text is
/// always read on a utf8mb4 connection).
fn text(row: &::mysql::Row, i: usize, what: &str) -> Result<Option<String>> {
    match row.as_ref(i) {
        None | Some(::mysql::Value::NULL) => Ok(None),
        Some(::mysql::Value::Bytes(b)) => {
            String::from_utf8(b.clone())
                .map(Some)
                .map_err(|_| Error::DumpStream {
                    path: what.to_string(),
                    what: "server sent non-UTF-8 catalog text".into(),
                })
        }
        Some(v) => Ok(Some(v.as_sql(true).trim_matches('\'').to_string())),
    }
}

fn req(row: &::mysql::Row, i: usize, what: &str) -> Result<String> {
    text(row, i, what)?.ok_or_else(|| Error::DumpStream {
        path: what.to_string(),
        what: format!("server returned NULL (column {i}); does the user lack privileges?"),
    })
}

/// The selected databases, sorted by name.
pub fn databases(conn: &mut Conn, sel: &CompiledSelection) -> Result<Vec<DatabaseInfo>> {
    let rows = q(
        conn,
        "databases",
        "SELECT SCHEMA_NAME, DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME \
         FROM information_schema.SCHEMATA ORDER BY SCHEMA_NAME",
    )?;
    let mut out = Vec::new();
    for r in rows {
        let name = req(&r, 0, "SCHEMATA")?;
        if sel.database(&name) {
            out.push(DatabaseInfo {
                name,
                charset: req(&r, 1, "SCHEMATA")?,
                collation: req(&r, 2, "SCHEMATA")?,
            });
        }
    }
    Ok(out)
}

/// Engines whose reads come from the consistent snapshot.
fn is_transactional(engine: &str) -> bool {
    matches!(
        engine.to_ascii_lowercase().as_str(),
        "innodb" | "xtradb" | "rocksdb" | "tokudb"
    )
}

fn classify(data_type: &str) -> ValueClass {
    match data_type.to_ascii_lowercase().as_str() {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "decimal"
        | "numeric" | "float" | "double" | "real" => ValueClass::Number,
        "bit" | "geometry" | "point" | "linestring" | "polygon" | "multipoint"
        | "multilinestring" | "multipolygon" | "geometrycollection" | "geomcollection" => {
            ValueClass::Hex
        }
        _ => ValueClass::Bytes,
    }
}

/// The names in `PERIOD FOR SYSTEM_TIME (`a`, `b`)` of a CREATE TABLE, if declared explicitly.
fn system_period(create: &str) -> Option<(String, String)> {
    let at = create.find("PERIOD FOR SYSTEM_TIME (")?;
    let rest = &create[at + "PERIOD FOR SYSTEM_TIME (".len()..];
    let inner = &rest[..rest.find(')')?];
    let (a, b) = inner.split_once(", ")?;
    let unq = |s: &str| s.trim().trim_matches('`').replace("``", "`");
    Some((unq(a), unq(b)))
}

/// Base tables (including system-versioned ones) of a database that the selection keeps, sorted.
pub fn tables(conn: &mut Conn, db: &str, sel: &CompiledSelection) -> Result<Vec<TableInfo>> {
    let listed = q(
        conn,
        "tables",
        &format!(
            "SELECT TABLE_NAME, TABLE_TYPE, COALESCE(ENGINE, ''), COALESCE(DATA_LENGTH, 0) \
             FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} \
             AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') ORDER BY TABLE_NAME",
            quote_str(db)
        ),
    )?;
    let mut out = Vec::new();
    for r in listed {
        let name = req(&r, 0, "TABLES")?;
        if !sel.table(db, &name) {
            continue;
        }
        let versioned = req(&r, 1, "TABLES")? == "SYSTEM VERSIONED";
        let engine = req(&r, 2, "TABLES")?;
        let data_length = req(&r, 3, "TABLES")?.parse().unwrap_or(0);
        out.push(table(conn, db, &name, engine, versioned, data_length)?);
    }
    Ok(out)
}

fn table(
    conn: &mut Conn,
    db: &str,
    name: &str,
    engine: String,
    versioned: bool,
    data_length: u64,
) -> Result<TableInfo> {
    let full = format!("{}.{}", quote_ident(db), quote_ident(name));
    let create_rows = q(
        conn,
        "table definition",
        &format!("SHOW CREATE TABLE {full}"),
    )?;
    let create_sql = match create_rows.first() {
        Some(r) => req(r, 1, &full)?,
        None => {
            return Err(Error::dump_stream(
                &full,
                "SHOW CREATE TABLE returned nothing",
            ));
        }
    };
    let period = if versioned {
        Some(system_period(&create_sql).unwrap_or(("row_start".into(), "row_end".into())))
    } else {
        None
    };
    let cols = q(
        conn,
        "columns",
        &format!(
            "SELECT COLUMN_NAME, DATA_TYPE, IS_GENERATED FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {} ORDER BY ORDINAL_POSITION",
            quote_str(db),
            quote_str(name)
        ),
    )?;
    let mut columns = Vec::new();
    for c in cols {
        let cname = req(&c, 0, &full)?;
        let data_type = req(&c, 1, &full)?;
        let generated = text(&c, 2, &full)?.is_some_and(|g| g == "ALWAYS");
        let is_period = period
            .as_ref()
            .is_some_and(|(s, e)| *s == cname || *e == cname);
        if generated && !is_period {
            continue;
        }
        columns.push(ColumnInfo {
            class: classify(&data_type),
            name: cname,
            data_type,
        });
    }
    if let Some((s, e)) = &period {
        // implicit period columns are invisible to information_schema; they are timestamps
        for p in [s, e] {
            if !columns.iter().any(|c| &c.name == p) {
                columns.push(ColumnInfo {
                    name: p.clone(),
                    data_type: "timestamp".into(),
                    class: ValueClass::Bytes,
                });
            }
        }
    }
    let pk = q(
        conn,
        "primary key",
        &format!(
            "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = {} \
             AND TABLE_NAME = {} AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
            quote_str(db),
            quote_str(name)
        ),
    )?;
    let mut order_by = pk
        .iter()
        .map(|r| req(r, 0, &full))
        .collect::<Result<Vec<_>>>()?;
    let has_primary_key = !order_by.is_empty();
    // history rows share the key; the row end tells them apart. Without a key nothing orders
    // the rows: sorting by every column sorts unbounded TEXT/BLOB values, which a server with
    // default settings refuses ("Out of sort memory") and which is a heavy query on a big table.
    if has_primary_key
        && let Some((_, e)) = &period
        && !order_by.contains(e)
    {
        order_by.push(e.clone());
    }
    Ok(TableInfo {
        db: db.to_string(),
        name: name.to_string(),
        transactional: is_transactional(&engine),
        engine,
        versioned,
        columns,
        order_by,
        has_primary_key,
        data_length,
        create_sql,
    })
}

/// `SHOW CREATE {what} {full}` for routines and triggers, whose rows are (name, sql_mode,
/// create statement, character_set_client, collation_connection): the statement preceded by
/// the session settings it was created under.
fn show_create(conn: &mut Conn, label: &str, what: &str, full: &str) -> Result<Vec<String>> {
    let rows = q(conn, label, &format!("SHOW CREATE {what} {full}"))?;
    let r = rows
        .first()
        .ok_or_else(|| Error::dump_stream(full, format!("SHOW CREATE {what} returned nothing")))?;
    let create = req(r, 2, full)?;
    let set = session(
        Some(&req(r, 1, full)?),
        None,
        &req(r, 3, full)?,
        &req(r, 4, full)?,
        &create,
    );
    Ok(vec![set, create])
}

/// `SET` statement restoring the session a routine/trigger/view/event was created in. The
/// client character set is kept only when the body is ASCII: we read bodies over utf8mb4, so
/// replaying non-ASCII text under another client charset would change it.
fn session(
    sql_mode: Option<&str>,
    time_zone: Option<&str>,
    charset: &str,
    collation: &str,
    body: &str,
) -> String {
    let mut parts = Vec::new();
    if let Some(m) = sql_mode {
        parts.push(format!("sql_mode = {}", quote_str(m)));
    }
    if let Some(tz) = time_zone {
        parts.push(format!("time_zone = {}", quote_str(tz)));
    }
    if body.is_ascii() {
        parts.push(format!("character_set_client = {}", quote_str(charset)));
        parts.push(format!("collation_connection = {}", quote_str(collation)));
    } else {
        parts.push("character_set_client = utf8mb4".into());
        parts.push("collation_connection = utf8mb4_general_ci".into());
    }
    format!("SET SESSION {}", parts.join(", "))
}

fn names(conn: &mut Conn, what: &str, sql: String) -> Result<Vec<String>> {
    q(conn, what, &sql)?
        .iter()
        .map(|r| req(r, 0, what))
        .collect()
}

/// Sequences with their current state (the next value a restored server hands out is the
/// next value not yet cached on this one, so no value is ever handed out twice).
pub fn sequences(conn: &mut Conn, db: &str, sel: &CompiledSelection) -> Result<Vec<ObjectDef>> {
    let list = names(
        conn,
        "sequences",
        format!(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} \
             AND TABLE_TYPE = 'SEQUENCE' ORDER BY TABLE_NAME",
            quote_str(db)
        ),
    )?;
    let mut out = Vec::new();
    for name in list.into_iter().filter(|n| sel.table(db, n)) {
        let full = format!("{}.{}", quote_ident(db), quote_ident(&name));
        let rows = q(conn, "sequence", &format!("SHOW CREATE SEQUENCE {full}"))?;
        let create = match rows.first() {
            Some(r) => req(r, 1, &full)?,
            None => {
                return Err(Error::dump_stream(
                    &full,
                    "SHOW CREATE SEQUENCE returned nothing",
                ));
            }
        };
        let state = q(
            conn,
            "sequence state",
            &format!("SELECT next_not_cached_value, cycle_count FROM {full}"),
        )?;
        let (next, cycles) = match state.first() {
            Some(r) => (req(r, 0, &full)?, req(r, 1, &full)?),
            None => return Err(Error::dump_stream(&full, "sequence has no state row")),
        };
        let ident = quote_ident(&name);
        out.push(ObjectDef {
            kind: "SEQUENCE",
            name,
            statements: vec![
                create,
                format!(
                    "SELECT SETVAL({ident}, {}, 0, {})",
                    number(&next, &full)?,
                    number(&cycles, &full)?
                ),
            ],
        });
    }
    Ok(out)
}

fn number(s: &str, what: &str) -> Result<String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        Ok(s.to_string())
    } else {
        Err(Error::dump_stream(what, format!("not an integer: {s:?}")))
    }
}

/// Functions and procedures, then views in dependency order, then triggers (in their action
/// order per table), then events: the order a restore creates them in, after the tables.
pub fn objects(conn: &mut Conn, db: &str) -> Result<Vec<ObjectDef>> {
    let mut out = Vec::new();
    let qdb = quote_str(db);
    let routines = q(
        conn,
        "routines",
        &format!(
            "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES \
             WHERE ROUTINE_SCHEMA = {qdb} AND ROUTINE_TYPE IN ('FUNCTION', 'PROCEDURE') \
             ORDER BY ROUTINE_TYPE, ROUTINE_NAME"
        ),
    )?;
    for r in routines {
        let kind = if req(&r, 0, "ROUTINES")? == "FUNCTION" {
            "FUNCTION"
        } else {
            "PROCEDURE"
        };
        let name = req(&r, 1, "ROUTINES")?;
        let full = format!("{}.{}", quote_ident(db), quote_ident(&name));
        // Procedure/Function, sql_mode, Create, character_set_client, collation_connection, …
        out.push(ObjectDef {
            kind,
            name,
            statements: show_create(conn, "routine", kind, &full)?,
        });
    }
    out.extend(views(conn, db)?);
    let triggers = names(
        conn,
        "triggers",
        format!(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {qdb} \
             ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER"
        ),
    )?;
    for name in triggers {
        let full = format!("{}.{}", quote_ident(db), quote_ident(&name));
        // Trigger, sql_mode, SQL Original Statement, character_set_client, collation_connection
        out.push(ObjectDef {
            kind: "TRIGGER",
            name,
            statements: show_create(conn, "trigger", "TRIGGER", &full)?,
        });
    }
    let events = names(
        conn,
        "events",
        format!(
            "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {qdb} \
             ORDER BY EVENT_NAME"
        ),
    )?;
    for name in events {
        let full = format!("{}.{}", quote_ident(db), quote_ident(&name));
        // Event, sql_mode, time_zone, Create Event, character_set_client, collation_connection
        let rows = q(conn, "event", &format!("SHOW CREATE EVENT {full}"))?;
        let r = rows
            .first()
            .ok_or_else(|| Error::dump_stream(&full, "SHOW CREATE EVENT returned nothing"))?;
        let create = req(r, 3, &full)?;
        let set = session(
            Some(&req(r, 1, &full)?),
            Some(&req(r, 2, &full)?),
            &req(r, 4, &full)?,
            &req(r, 5, &full)?,
            &create,
        );
        out.push(ObjectDef {
            kind: "EVENT",
            name,
            statements: vec![set, create],
        });
    }
    Ok(out)
}

/// Views, each after every view of the same database its definition names. `SHOW CREATE VIEW`
/// qualifies every table reference as `` `db`.`name` ``, so a textual search for that form is
/// exact enough; ties are broken by name so the order is deterministic.
fn views(conn: &mut Conn, db: &str) -> Result<Vec<ObjectDef>> {
    let list = names(
        conn,
        "views",
        format!(
            "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {} \
             ORDER BY TABLE_NAME",
            quote_str(db)
        ),
    )?;
    let mut defs = BTreeMap::new();
    for name in list {
        let full = format!("{}.{}", quote_ident(db), quote_ident(&name));
        // View, Create View, character_set_client, collation_connection
        let rows = q(conn, "view", &format!("SHOW CREATE VIEW {full}"))?;
        let r = rows
            .first()
            .ok_or_else(|| Error::dump_stream(&full, "SHOW CREATE VIEW returned nothing"))?;
        let create = req(r, 1, &full)?;
        let set = session(None, None, &req(r, 2, &full)?, &req(r, 3, &full)?, &create);
        defs.insert(name, (set, create));
    }
    let deps: BTreeMap<String, BTreeSet<String>> = defs
        .iter()
        .map(|(name, (_, create))| {
            let uses = defs
                .keys()
                .filter(|other| *other != name)
                .filter(|other| {
                    create.contains(&format!("{}.{}", quote_ident(db), quote_ident(other)))
                })
                .cloned()
                .collect();
            (name.clone(), uses)
        })
        .collect();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    while done.len() < deps.len() {
        let ready: Vec<String> = deps
            .iter()
            .filter(|(n, uses)| !done.contains(*n) && uses.iter().all(|u| done.contains(u)))
            .map(|(n, _)| n.clone())
            .collect();
        // a cycle cannot exist among views; should the textual search invent one, fall back
        // to name order for the rest rather than loop
        let batch = if ready.is_empty() {
            deps.keys()
                .filter(|n| !done.contains(*n))
                .cloned()
                .collect()
        } else {
            ready
        };
        for n in batch {
            if let Some((set, create)) = defs.remove(&n) {
                out.push(ObjectDef {
                    kind: "VIEW",
                    name: n.clone(),
                    statements: vec![set, create],
                });
            }
            done.insert(n);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn period_names() {
        let c = "CREATE TABLE `t` (\n  `s` timestamp(6) GENERATED ALWAYS AS ROW START,\n  PERIOD FOR SYSTEM_TIME (`s`, `e``x`)\n)";
        assert_eq!(system_period(c), Some(("s".into(), "e`x".into())));
        assert_eq!(system_period("CREATE TABLE `t` (a int)"), None);
    }

    #[test]
    fn selection() {
        let s = Selection {
            tables: vec!["app.*".into()],
            exclude_tables: vec!["app.tmp_*".into()],
            ..Default::default()
        }
        .compile()
        .unwrap();
        assert!(s.database("app"));
        assert!(!s.database("mysql"));
        assert!(s.table("app", "users"));
        assert!(!s.table("app", "tmp_x"));
        assert!(!s.table("other", "users"));
    }
}
