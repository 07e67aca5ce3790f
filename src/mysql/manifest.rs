//! The dump manifest (`manifest.json`): what was dumped, from which server, at which binlog
//! position, and per table what a restore needs to load it and a verification needs to judge it
//! (columns and their encoding, row count, checksum, sampled rows). Written last, so a dump
//! without a manifest is incomplete; also returned to the caller, who records it in the snapshot.
//!
//! Stream paths are built here so writer and reader agree: names are percent-encoded into path
//! components (anything but `[A-Za-z0-9_$-]`, including `.` and `%`), so any database or table
//! name maps to one safe component, and since an encoded name has no `.`, a table's
//! `<name>.rows`/`<name>.schema.sql` can never collide with `_objects.sql` or `_sequences.sql`.

use serde::{Deserialize, Serialize};

use crate::mysql::conn::ServerInfo;
use crate::mysql::rows::{RowSample, RowShape};
use crate::mysql::schema::DatabaseInfo;

/// Bumped when a reader of an older format would misread the streams.
pub const FORMAT: u32 = 1;

pub const MANIFEST_PATH: &str = "manifest.json";
pub const USERS_PATH: &str = "_users.sql";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DumpManifest {
    pub format: u32,
    pub server: ServerInfo,
    /// Binary log file and position of the consistent snapshot (`None` when binlog is off).
    pub binlog_file: Option<String>,
    pub binlog_position: Option<u64>,
    /// MariaDB `@@gtid_binlog_pos` / MySQL `@@gtid_executed` at the snapshot.
    pub gtid: Option<String>,
    /// The server's `@@global.time_zone` and `@@system_time_zone` (informational: the dump
    /// itself reads and writes temporal values in UTC).
    pub server_time_zone: String,
    pub system_time_zone: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub finished_at: String,
    /// How long commits were blocked (MariaDB `BACKUP STAGE BLOCK_COMMIT`, MySQL FTWRL).
    pub lock_ms: f64,
    /// How long DDL and writes to non-transactional tables were blocked.
    pub ddl_lock_ms: f64,
    pub duration_ms: u64,
    /// Bytes of all streams except the manifest.
    pub bytes: u64,
    pub databases: Vec<DatabaseEntry>,
    /// Users and grants, when dumped.
    pub users: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatabaseEntry {
    #[serde(flatten)]
    pub info: DatabaseInfo,
    /// Sequences (before tables: a column default may call NEXTVAL).
    pub sequences: Option<String>,
    pub tables: Vec<TableEntry>,
    /// Routines, views, triggers, events (after tables).
    pub objects: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableEntry {
    pub name: String,
    pub engine: String,
    pub transactional: bool,
    #[serde(flatten)]
    pub shape: RowShape,
    /// Stream holding the `CREATE TABLE`.
    pub schema: String,
    /// Stream holding the rows.
    pub rows_path: String,
    pub rows: u64,
    pub bytes: u64,
    /// BLAKE3 of the rows stream and row count (see `rows`).
    pub checksum: String,
    pub samples: Vec<RowSample>,
}

impl DumpManifest {
    pub fn database(&self, name: &str) -> Option<&DatabaseEntry> {
        self.databases.iter().find(|d| d.info.name == name)
    }

    pub fn to_json(&self) -> Vec<u8> {
        // serialising plain data cannot fail; fall back to an empty object rather than panic
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_else(|_| b"{}".to_vec());
        v.push(b'\n');
        v
    }
}

/// One path component for a database or table name.
pub fn component(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn schema_path(db: &str, table: &str) -> String {
    format!("{}/{}.schema.sql", component(db), component(table))
}

pub fn rows_path(db: &str, table: &str) -> String {
    format!("{}/{}.rows", component(db), component(table))
}

pub fn objects_path(db: &str) -> String {
    format!("{}/_objects.sql", component(db))
}

pub fn sequences_path(db: &str) -> String {
    format!("{}/_sequences.sql", component(db))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_safe_and_distinct() {
        assert_eq!(component("app_1"), "app_1");
        assert_eq!(component("a.b"), "a%2Eb");
        assert_eq!(component("a/b%"), "a%2Fb%25");
        assert_eq!(component("é"), "%C3%A9");
        assert_ne!(rows_path("a", "b.c"), rows_path("a.b", "c"));
    }
}
