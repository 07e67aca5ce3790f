//! Statement scripts: the `.sql` streams of a dump (schemas, objects, sequences, users).
//!
//! Routine and trigger bodies contain `;`, and any statement may contain a line that looks like a
//! delimiter inside a string, so statements are framed by length rather than split on a
//! delimiter: each one is preceded by a header line `-- snap:statement <bytes> <label>` and
//! followed by a newline. The file stays readable SQL (headers are comments), a reader never has
//! to parse SQL, and any statement text survives byte for byte. Lines starting with `--` between
//! statements are comments.

use std::io::{BufRead, Read, Write};

use crate::error::{Error, Result};

const HEADER: &str = "-- snap:statement ";
/// The largest statement length a stream may claim: a server's max_allowed_packet limit.
const MAX_STATEMENT: usize = 1 << 30;

/// Appends one framed statement. `label` is for people reading the stream (kind and name).
pub fn write_statement(out: &mut dyn Write, label: &str, sql: &str) -> std::io::Result<()> {
    let label: String = label
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    writeln!(out, "{HEADER}{} {label}", sql.len())?;
    out.write_all(sql.as_bytes())?;
    out.write_all(b"\n")
}

/// One statement read back: its label and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub label: String,
    pub sql: String,
}

/// Reads every statement of a script; `path` names the stream in errors.
pub fn read_statements(input: &mut dyn BufRead, path: &str) -> Result<Vec<Statement>> {
    let mut out = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = input
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::dump_stream(path, format!("read failed: {e}")))?;
        if n == 0 {
            return Ok(out);
        }
        let text = std::str::from_utf8(&line)
            .map_err(|_| Error::dump_stream(path, "header line is not UTF-8"))?
            .trim_end_matches('\n');
        let Some(rest) = text.strip_prefix(HEADER) else {
            if text.is_empty() || text.starts_with("--") {
                continue;
            }
            return Err(Error::dump_stream(
                path,
                format!("expected a statement header, found {:?}", short(text)),
            ));
        };
        let (len, label) = rest.split_once(' ').unwrap_or((rest, ""));
        let len: usize = len
            .parse()
            .map_err(|_| Error::dump_stream(path, format!("bad statement length {len:?}")))?;
        // The length is read from the stream: bounded by the largest statement a server takes
        // (max_allowed_packet is at most 1 GiB), and memory grows only with bytes really read.
        if len > MAX_STATEMENT {
            return Err(Error::dump_stream(
                path,
                format!("statement {label:?} claims {len} bytes, more than a server accepts"),
            ));
        }
        let mut body = Vec::with_capacity(len.min(1 << 20) + 1);
        let want = len as u64 + 1;
        let got = (&mut *input)
            .take(want)
            .read_to_end(&mut body)
            .map_err(|e| Error::dump_stream(path, format!("statement {label:?} truncated: {e}")))?;
        if got as u64 != want {
            return Err(Error::dump_stream(
                path,
                format!("statement {label:?} truncated: {got} of {want} bytes"),
            ));
        }
        if body.pop() != Some(b'\n') {
            return Err(Error::dump_stream(
                path,
                format!("statement {label:?} not followed by a newline"),
            ));
        }
        let sql = String::from_utf8(body)
            .map_err(|_| Error::dump_stream(path, format!("statement {label:?} is not UTF-8")))?;
        out.push(Statement {
            label: label.to_string(),
            sql,
        });
    }
}

fn short(s: &str) -> String {
    s.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_awkward_bodies() {
        let mut buf = Vec::new();
        let bodies = [
            "CREATE PROCEDURE p() BEGIN SELECT 1;\n-- snap:statement 3 x\n;; END",
            "",
            "SELECT 'é'",
        ];
        buf.extend_from_slice(b"-- a comment\n\n");
        for (i, b) in bodies.iter().enumerate() {
            write_statement(&mut buf, &format!("s{i}\nx"), b).unwrap();
        }
        let got = read_statements(&mut &buf[..], "t").unwrap();
        let sql: Vec<&str> = got.iter().map(|s| s.sql.as_str()).collect();
        assert_eq!(sql, bodies);
        assert_eq!(got[0].label, "s0 x");
        assert!(read_statements(&mut &buf[..buf.len() - 3], "t").is_err());
    }
}
