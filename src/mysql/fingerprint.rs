//! A server-side description of a database, for tests (and drills) to compare two copies with a
//! judge independent of snap's own row encoding: `CHECKSUM TABLE … EXTENDED` for every table,
//! `SHOW CREATE` for every table, view, routine, trigger, event and sequence, and a sequence's
//! state. The database's own name is replaced by `<db>` in every text, so a copy restored under
//! another name compares equal.

use std::collections::BTreeMap;

use ::mysql::Conn;
use ::mysql::prelude::Queryable;

use crate::error::{Error, Result};
use crate::mysql::conn::{exec, quote_ident, quote_str};

/// Sorted `kind name` → description.
pub type Fingerprint = BTreeMap<String, String>;

fn rows(conn: &mut Conn, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
    let rs: Vec<::mysql::Row> = conn
        .query(sql)
        .map_err(|e| Error::mysql(format!("fingerprint: {sql}"), e))?;
    Ok(rs
        .into_iter()
        .map(|r| {
            (0..r.len())
                .map(|i| match r.as_ref(i) {
                    None | Some(::mysql::Value::NULL) => None,
                    Some(::mysql::Value::Bytes(b)) => Some(String::from_utf8_lossy(b).into_owned()),
                    Some(v) => Some(v.as_sql(true)),
                })
                .collect()
        })
        .collect())
}

fn col(r: &[Option<String>], i: usize) -> String {
    r.get(i).cloned().flatten().unwrap_or_else(|| "NULL".into())
}

/// The fingerprint of database `db` on `conn`.
pub fn fingerprint(conn: &mut Conn, db: &str) -> Result<Fingerprint> {
    exec(conn, "SET NAMES utf8mb4")?;
    exec(conn, "SET SESSION time_zone = '+00:00'")?;
    let qdb = quote_str(db);
    let idb = quote_ident(db);
    let norm = |s: String| s.replace(&format!("{idb}."), "<db>.");
    let mut fp = Fingerprint::new();
    for r in rows(
        conn,
        &format!(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM \
             information_schema.SCHEMATA WHERE SCHEMA_NAME = {qdb}"
        ),
    )? {
        fp.insert("database".into(), format!("{} {}", col(&r, 0), col(&r, 1)));
    }
    let tables = rows(
        conn,
        &format!(
            "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = {qdb} ORDER BY TABLE_NAME"
        ),
    )?;
    for t in tables {
        let name = col(&t, 0);
        let kind = col(&t, 1);
        let full = format!("{idb}.{}", quote_ident(&name));
        match kind.as_str() {
            "VIEW" => {
                let r = rows(conn, &format!("SHOW CREATE VIEW {full}"))?;
                let text = r.first().map(|r| col(r, 1)).unwrap_or_default();
                fp.insert(format!("view {name}"), norm(text));
            }
            "SEQUENCE" => {
                let r = rows(conn, &format!("SHOW CREATE SEQUENCE {full}"))?;
                let text = r.first().map(|r| col(r, 1)).unwrap_or_default();
                fp.insert(format!("sequence {name}"), text);
                let s = rows(conn, &format!("SELECT * FROM {full}"))?;
                let state = s.first().map(|r| {
                    r.iter()
                        .map(|v| v.clone().unwrap_or_default())
                        .collect::<Vec<_>>()
                        .join(" ")
                });
                fp.insert(format!("sequence-state {name}"), state.unwrap_or_default());
            }
            _ => {
                let r = rows(conn, &format!("SHOW CREATE TABLE {full}"))?;
                let text = r.first().map(|r| col(r, 1)).unwrap_or_default();
                fp.insert(format!("table {name}"), text);
                let c = rows(conn, &format!("CHECKSUM TABLE {full} EXTENDED"))?;
                fp.insert(
                    format!("checksum {name}"),
                    c.first().map(|r| col(r, 1)).unwrap_or_default(),
                );
                if kind == "SYSTEM VERSIONED" {
                    let c = rows(
                        conn,
                        &format!("SELECT COUNT(*) FROM {full} FOR SYSTEM_TIME ALL"),
                    )?;
                    fp.insert(
                        format!("history-rows {name}"),
                        c.first().map(|r| col(r, 0)).unwrap_or_default(),
                    );
                }
            }
        }
    }
    for (kind, list_sql, create_col, mode_col) in [
        (
            "FUNCTION",
            format!(
                "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {qdb} AND ROUTINE_TYPE = 'FUNCTION' ORDER BY 1"
            ),
            2,
            Some(1),
        ),
        (
            "PROCEDURE",
            format!(
                "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {qdb} AND ROUTINE_TYPE = 'PROCEDURE' ORDER BY 1"
            ),
            2,
            Some(1),
        ),
        (
            "TRIGGER",
            format!(
                "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {qdb} ORDER BY 1"
            ),
            2,
            Some(1),
        ),
        (
            "EVENT",
            format!(
                "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {qdb} ORDER BY 1"
            ),
            3,
            Some(1),
        ),
    ] {
        for n in rows(conn, &list_sql)? {
            let name = col(&n, 0);
            let r = rows(
                conn,
                &format!("SHOW CREATE {kind} {idb}.{}", quote_ident(&name)),
            )?;
            if let Some(r) = r.first() {
                let mode = mode_col.map(|i| col(r, i)).unwrap_or_default();
                fp.insert(
                    format!("{} {name}", kind.to_ascii_lowercase()),
                    format!("[{mode}] {}", norm(col(r, create_col))),
                );
            }
        }
    }
    Ok(fp)
}

/// Human-readable differences between two fingerprints (empty when equal).
pub fn diff(a: &Fingerprint, b: &Fingerprint) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in a {
        match b.get(k) {
            None => out.push(format!("only in first: {k}")),
            Some(w) if w != v => out.push(format!("{k}:\n  first:  {v}\n  second: {w}")),
            _ => {}
        }
    }
    for k in b.keys().filter(|k| !a.contains_key(*k)) {
        out.push(format!("only in second: {k}"));
    }
    out
}
