//! The server's binary log, seen from outside the repository: which files the server has, how
//! to copy them byte for byte, how to read event boundaries in them, and how to replay a range
//! of them into a server.
//!
//! Design (measured and argued in repo-format.md, "Binary-log archive"): the copy and the
//! replay use MariaDB's own `mariadb-binlog` as a child process ([`remote`], [`replay`]), and snap
//! reads only event headers and the few bodies that carry GTIDs and commit points ([`events`]).
//! The tool speaks the replica protocol with MariaDB's capabilities (so MariaDB sends its real
//! GTID events instead of dummies) and writes the server's bytes unchanged; the `mysql` crate's
//! binlog stream parses no MariaDB events and announces no capabilities.
//!
//! - [`events`]: the event framing, GTIDs, transaction boundaries.
//! - [`remote`]: the raw copy from a running server, resumable at any event boundary.
//! - [`replay`]: decoder piped into one client session.
//! - [`tools`]: child processes without passwords in argv or environment.

pub mod events;
pub mod remote;
pub mod replay;
pub mod tools;

use mysql::prelude::Queryable;

use crate::error::{Error, Result};
use crate::mysql::MysqlTarget;

/// What the server says about its binary logs now.
#[derive(Debug, Clone)]
pub struct ServerLogs {
    pub server_id: u32,
    /// `@@server_uuid` on MySQL; MariaDB has none.
    pub server_uuid: Option<String>,
    /// `SHOW BINARY LOGS`: name and size, oldest first.
    pub files: Vec<(String, u64)>,
    /// `@@gtid_binlog_state` (MariaDB) / `@@gtid_executed` (MySQL).
    pub gtid_state: String,
    /// Seconds after which the server purges a closed log (0: never).
    pub expire_seconds: u64,
}

impl ServerLogs {
    pub fn query(target: &MysqlTarget) -> Result<ServerLogs> {
        let mut c = target.connect()?;
        let q = |e| Error::mysql("reading binary-log status", e);
        let log_bin: Option<i64> = c.query_first("SELECT @@global.log_bin").map_err(q)?;
        if log_bin != Some(1) {
            return Err(Error::BinlogOff(target.to_string()));
        }
        let server_id: Option<u32> = c.query_first("SELECT @@global.server_id").map_err(q)?;
        let server_uuid: Option<String> = c
            .query_first::<Option<String>, _>(
                "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_VARIABLES \
                 WHERE VARIABLE_NAME = 'SERVER_UUID'",
            )
            .ok()
            .flatten()
            .flatten();
        let rows: Vec<mysql::Row> = c.query("SHOW BINARY LOGS").map_err(q)?;
        let mut files = Vec::new();
        for r in rows {
            let name: Option<String> = r.get(0);
            let size: Option<u64> = r.get(1);
            if let (Some(n), Some(s)) = (name, size) {
                files.push((n, s));
            }
        }
        let gtid_state: String = c
            .query_first::<Option<String>, _>("SELECT @@global.gtid_binlog_state")
            .or_else(|_| c.query_first("SELECT @@global.gtid_executed"))
            .ok()
            .flatten()
            .flatten()
            .unwrap_or_default();
        // MariaDB 10.6+: binlog_expire_logs_seconds; older: expire_logs_days (a fraction)
        let secs: Option<f64> = c
            .query_first::<Option<f64>, _>("SELECT @@global.binlog_expire_logs_seconds")
            .ok()
            .flatten()
            .flatten();
        let days: Option<f64> = c
            .query_first::<Option<f64>, _>("SELECT @@global.expire_logs_days")
            .ok()
            .flatten()
            .flatten();
        let expire_seconds = match (secs, days) {
            (Some(s), _) if s > 0.0 => s as u64,
            (_, Some(d)) if d > 0.0 => (d * 86_400.0) as u64,
            _ => 0,
        };
        Ok(ServerLogs {
            server_id: server_id.unwrap_or(0),
            server_uuid,
            files,
            gtid_state,
            expire_seconds,
        })
    }

    /// The file after `name` on the server, if any.
    pub fn after(&self, name: &str) -> Option<&str> {
        let i = self.files.iter().position(|(n, _)| n == name)?;
        self.files.get(i + 1).map(|(n, _)| n.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.files.iter().any(|(n, _)| n == name)
    }
}
