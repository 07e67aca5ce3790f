//! The row encoding of a `.rows` stream and its checksum.
//!
//! One row per line, each line a SQL value tuple `(v1,v2,…)` for the table's dumped columns
//! (manifest order), rows in order-key order (the primary key), or for a table without one in
//! the engine's own order. One line per row is what makes the stream friendly
//! to content-defined chunking: a changed row changes one line, an inserted row adds one, and
//! every other byte of the stream stays where a chunk boundary can find it again. The loader
//! groups lines into multi-row `INSERT`s itself, so no batch header shifts when a row is added.
//!
//! Values are read over a `SET NAMES binary` connection, so the server sends each column's
//! stored bytes untranslated, and are written so the same bytes go back under `SET NAMES binary`:
//! - numbers: the server's text form, unquoted (integers and DECIMAL are exact; DOUBLE is printed
//!   in a form that reads back to the same value; FLOAT is read widened to DOUBLE, see
//!   [`select_sql`]);
//! - character, binary, temporal, ENUM/SET, JSON: `'…'` with `\0 \n \r \\ \' \Z` escaped when the
//!   bytes are UTF-8, else `X'…'` (a latin1 `é` is not UTF-8; either form loads the same bytes);
//! - BIT and spatial: `X'…'` (big-endian bits; SRID + WKB);
//! - NULL: `NULL`.
//!
//! Temporal values are exact because both sides use `time_zone = '+00:00'` (no DST gaps or
//! repeats for TIMESTAMP).
//!
//! ## Tables without a primary key
//!
//! They are read in the engine's own order inside the consistent snapshot (`USE INDEX ()`, no
//! `ORDER BY`), never sorted by their values. Why this and not the alternatives:
//! - Sorting by every column (the first rule) sorts unbounded values: on MariaDB 10.11 with
//!   default settings (`sort_buffer_size` 2 MiB) a LONGTEXT, MEDIUMBLOB or JSON column fails the
//!   whole backup with `ERROR 1038 (HY001): Out of sort memory` once the sort key may be as long
//!   as the value, and on a big table it is a full filesort on production (1 M rows of a log
//!   table: 9 merge passes, 2.8 s against 1.6 s for the plain scan, measured here).
//! - Sorting by a bounded prefix (the server's default `max_sort_length`) still filesorts the
//!   whole table, and rows equal in their prefix come in whatever order the sort leaves them.
//! - A unique NOT NULL key needs no rule of its own: InnoDB clusters a key-less table by its
//!   first such key, so the engine's order already is that key's order.
//! - The engine's order is deterministic for unchanged data and stable day to day where it
//!   matters: InnoDB's clustered index on its hidden row id keeps rows in insertion order, an
//!   update stays in place and a new row goes to the end, so an append-mostly log table changes
//!   at its tail and at the updated rows only (measured in `tests/integration/mysql_hardening.rs`
//!   and repo-format.md: a day of 100 updates, 40 deletes and 1000 inserts on 1 M rows adds a
//!   small fraction of a full dump). MyISAM and Aria return rows in file order, which a deletion
//!   followed by an insertion can change; their dumps deduplicate less but are still exact.
//!
//! A restore inserts the rows in stream order, and a freshly loaded key-less table scans in the
//! order the dump read it (insertion order; for InnoDB with a unique NOT NULL key, that key's
//! order, which the dump followed too), so the verification's re-read gives the same checksum.
//! Such tables have no sampled rows (there is no key to find a row by).
//!
//! The checksum is BLAKE3 over the stream bytes plus the row count, computed while streaming,
//! so it describes exactly what the consistent snapshot held. (`CHECKSUM TABLE` would not do: it
//! reads the latest committed rows, not the transaction's snapshot.) Verification re-reads a
//! loaded table with the same function and compares.

use std::io::Write;

use ::mysql::prelude::Queryable;
use ::mysql::{Conn, Value};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::mysql::conn::quote_ident;
use crate::mysql::schema::{ColumnInfo, ValueClass};

/// What a `.rows` stream's reader needs to know about its table, as stored in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowShape {
    pub columns: Vec<ColumnInfo>,
    pub order_by: Vec<String>,
    pub has_primary_key: bool,
    pub versioned: bool,
}

/// A row remembered for the verification drill: its key and the hash of its encoded line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowSample {
    /// `col = literal` conditions joined by ` AND `, in order-key order.
    pub key: String,
    /// BLAKE3 of the row's line (without the newline), hex.
    pub hash: String,
}

/// What streaming a table produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowStats {
    pub rows: u64,
    pub bytes: u64,
    /// BLAKE3 over the stream bytes, hex.
    pub checksum: String,
    pub samples: Vec<RowSample>,
}

/// At most this many sampled rows per table; a row is sampled when its key hash falls in
/// 1/`SAMPLE_RATE` of the hash space, so the choice does not depend on the dump's timing.
const MAX_SAMPLES: usize = 16;
const SAMPLE_RATE: u16 = 64;

/// The select list: column names, except that FLOAT is read as `col + 0e0`. The server prints a
/// FLOAT with 6 significant digits (123456.79 comes back as "123457"), which loses bits;
/// widened to DOUBLE it prints the float's exact value in a form that reads back to the same
/// double, and storing that double into the FLOAT column gives back the original bits.
fn select_list(shape: &RowShape) -> String {
    let cols: Vec<String> = shape
        .columns
        .iter()
        .map(|c| {
            if c.data_type.eq_ignore_ascii_case("float") {
                format!("({} + 0e0)", quote_ident(&c.name))
            } else {
                quote_ident(&c.name)
            }
        })
        .collect();
    cols.join(",")
}

/// The `SELECT` that reads a table in stream order.
///
/// With an order key (the primary key) the server walks that index. Without one (`order_by`
/// empty) the rows come in the engine's own order: `USE INDEX ()` makes it a full scan of the
/// table itself, which for InnoDB is its clustered index (the first `UNIQUE NOT NULL` key, else
/// the hidden row id that grows with insertion), so a covering secondary index the optimizer
/// might prefer on another day cannot reorder the stream, and nothing is sorted. (Manifests
/// written before this rule list every column as the order key; they are still read that way,
/// strings compared by their bytes, so a verification of an old dump compares like with like.)
pub fn select_sql(db: &str, table: &str, shape: &RowShape) -> String {
    let order: Vec<String> = shape
        .order_by
        .iter()
        .map(|name| {
            let class = shape
                .columns
                .iter()
                .find(|c| &c.name == name)
                .map(|c| c.class);
            if !shape.has_primary_key && class == Some(ValueClass::Bytes) {
                format!("CAST({} AS BINARY)", quote_ident(name))
            } else {
                quote_ident(name)
            }
        })
        .collect();
    let history = if shape.versioned {
        " FOR SYSTEM_TIME ALL"
    } else {
        ""
    };
    let mut sql = format!(
        "SELECT {} FROM {}.{}{history}",
        select_list(shape),
        quote_ident(db),
        quote_ident(table)
    );
    if order.is_empty() {
        sql.push_str(" USE INDEX ()");
    } else {
        sql.push_str(" ORDER BY ");
        sql.push_str(&order.join(","));
    }
    sql
}

/// Appends one value's literal to `out`.
pub fn encode_value(out: &mut Vec<u8>, class: ValueClass, v: &Value, what: &str) -> Result<()> {
    let bytes: &[u8] = match v {
        Value::NULL => {
            out.extend_from_slice(b"NULL");
            return Ok(());
        }
        Value::Bytes(b) => b,
        // the text protocol sends only bytes or NULL; anything else means a prepared statement
        other => {
            return Err(Error::dump_stream(
                what,
                format!("unexpected binary-protocol value {other:?}"),
            ));
        }
    };
    match class {
        ValueClass::Number => {
            let ok = !bytes.is_empty()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'));
            if !ok {
                return Err(Error::dump_stream(
                    what,
                    format!("number column sent {:?}", String::from_utf8_lossy(bytes)),
                ));
            }
            out.extend_from_slice(bytes);
        }
        ValueClass::Bytes if std::str::from_utf8(bytes).is_ok() => {
            out.push(b'\'');
            for &b in bytes {
                match b {
                    0 => out.extend_from_slice(b"\\0"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\'' => out.extend_from_slice(b"\\'"),
                    0x1a => out.extend_from_slice(b"\\Z"),
                    b => out.push(b),
                }
            }
            out.push(b'\'');
        }
        ValueClass::Bytes | ValueClass::Hex => {
            out.extend_from_slice(b"X'");
            out.extend_from_slice(hex::encode_upper(bytes).as_bytes());
            out.push(b'\'');
        }
    }
    Ok(())
}

/// Reads every row of `db.table` on `conn` (already set up by [`setup_read_session`], inside the
/// snapshot transaction when there is one) and writes its encoding to `out`. Memory stays at
/// one row: rows are pulled from the server as they are written.
pub fn stream_table(
    conn: &mut Conn,
    db: &str,
    table: &str,
    shape: &RowShape,
    out: &mut dyn Write,
) -> Result<RowStats> {
    let what = format!("{db}.{table}");
    let sql = select_sql(db, table, shape);
    let key_idx: Vec<usize> = shape
        .order_by
        .iter()
        .filter_map(|k| shape.columns.iter().position(|c| &c.name == k))
        .collect();
    let mut hasher = blake3::Hasher::new();
    let mut rows = 0u64;
    let mut bytes = 0u64;
    let mut samples = Vec::new();
    let mut line = Vec::with_capacity(4096);
    let mut key = Vec::new();
    let result = conn
        .query_iter(&sql)
        .map_err(|e| Error::mysql(format!("reading rows of {what}"), e))?;
    for row in result {
        let row = row.map_err(|e| Error::mysql(format!("reading rows of {what}"), e))?;
        line.clear();
        line.push(b'(');
        for (i, col) in shape.columns.iter().enumerate() {
            if i > 0 {
                line.push(b',');
            }
            let v = row.as_ref(i).unwrap_or(&Value::NULL);
            encode_value(&mut line, col.class, v, &what)?;
        }
        line.push(b')');
        if shape.has_primary_key && samples.len() < MAX_SAMPLES {
            key.clear();
            for (n, &i) in key_idx.iter().enumerate() {
                if n > 0 {
                    key.extend_from_slice(b" AND ");
                }
                key.extend_from_slice(quote_ident(&shape.columns[i].name).as_bytes());
                key.extend_from_slice(b" <=> ");
                let v = row.as_ref(i).unwrap_or(&Value::NULL);
                encode_value(&mut key, shape.columns[i].class, v, &what)?;
            }
            let h = blake3::hash(&key);
            let pick = u16::from_le_bytes([h.as_bytes()[0], h.as_bytes()[1]]);
            if rows == 0 || pick < u16::MAX / SAMPLE_RATE {
                samples.push(RowSample {
                    key: String::from_utf8_lossy(&key).into_owned(),
                    hash: blake3::hash(&line).to_hex().to_string(),
                });
            }
        }
        line.push(b'\n');
        hasher.update(&line);
        out.write_all(&line).map_err(|e| {
            Error::dump_stream(format!("{what}.rows"), format!("write failed: {e}"))
        })?;
        rows += 1;
        bytes += line.len() as u64;
    }
    hasher.update(&rows.to_le_bytes());
    Ok(RowStats {
        rows,
        bytes,
        checksum: hasher.finalize().to_hex().to_string(),
        samples,
    })
}

/// Re-reads one sampled row and returns the hash of its line, or `None` when no row has that key.
pub fn sample_hash(
    conn: &mut Conn,
    db: &str,
    table: &str,
    shape: &RowShape,
    key: &str,
) -> Result<Option<String>> {
    let what = format!("{db}.{table}");
    let history = if shape.versioned {
        " FOR SYSTEM_TIME ALL"
    } else {
        ""
    };
    let sql = format!(
        "SELECT {} FROM {}.{}{history} WHERE {key} LIMIT 1",
        select_list(shape),
        quote_ident(db),
        quote_ident(table)
    );
    let row: Option<::mysql::Row> = conn
        .query_first(&sql)
        .map_err(|e| Error::mysql(format!("reading a sampled row of {what}"), e))?;
    let Some(row) = row else { return Ok(None) };
    let mut line = vec![b'('];
    for (i, col) in shape.columns.iter().enumerate() {
        if i > 0 {
            line.push(b',');
        }
        encode_value(
            &mut line,
            col.class,
            row.as_ref(i).unwrap_or(&Value::NULL),
            &what,
        )?;
    }
    line.push(b')');
    Ok(Some(blake3::hash(&line).to_hex().to_string()))
}

/// Session settings for reading rows: untranslated bytes, UTC temporal values, and a sort key
/// long enough to compare whole values, which only the all-columns order key of manifests
/// written before key-less tables were read in engine order needs (a primary key is walked in
/// its index, nothing is sorted).
pub fn setup_read_session(conn: &mut Conn) -> Result<()> {
    for sql in [
        "SET NAMES binary",
        "SET SESSION time_zone = '+00:00'",
        "SET SESSION max_sort_length = 8388608",
        "SET SESSION net_write_timeout = 3600",
        "SET SESSION net_read_timeout = 3600",
    ] {
        crate::mysql::conn::exec(conn, sql)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(class: ValueClass, b: &[u8]) -> String {
        let mut out = Vec::new();
        encode_value(&mut out, class, &Value::Bytes(b.to_vec()), "t").unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn literals() {
        assert_eq!(
            enc(ValueClass::Bytes, b"a'b\\c\0\n\r\x1a"),
            r"'a\'b\\c\0\n\r\Z'"
        );
        assert_eq!(enc(ValueClass::Bytes, b"caf\xe9"), "X'636166E9'");
        assert_eq!(enc(ValueClass::Bytes, "😀".as_bytes()), "'😀'");
        assert_eq!(enc(ValueClass::Hex, b""), "X''");
        assert_eq!(enc(ValueClass::Number, b"-1.5e-10"), "-1.5e-10");
        let mut out = Vec::new();
        assert!(
            encode_value(
                &mut out,
                ValueClass::Number,
                &Value::Bytes(b"1;DROP".to_vec()),
                "t"
            )
            .is_err()
        );
        encode_value(&mut out, ValueClass::Bytes, &Value::NULL, "t").unwrap();
        assert_eq!(out, b"NULL");
    }
}
