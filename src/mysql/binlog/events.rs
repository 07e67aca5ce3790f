//! Reading a binary log file's bytes as events: just enough of the format to know where each
//! event starts and ends, when it was written, which transaction (GTID) it belongs to and where
//! a transaction commits. Nothing here decodes row images: replay hands the bytes to
//! `mariadb-binlog`, which knows every event type; the archive and the restore planner only need
//! boundaries, times and GTIDs, and those sit in fixed places.
//!
//! ```text
//! file   = magic "\xfe" "bin" | event*
//! event  = header (19 bytes, little endian) | body | checksum (4 bytes when the format
//!          description event says CRC32)
//! header = timestamp u32 (s) | type u8 | server_id u32 | event_size u32 (header..checksum)
//!          | log_pos u32 (end position of the event in its file; 0 for artificial events, and
//!          MariaDB 11.4+ writes 0 inside transactions) | flags u16
//! ```
//! MariaDB bodies read here:
//! - GTID (0xa2): `seq_no u64 | domain_id u32 | flags2 u8 ...`; flags2 bit 0 `FL_STANDALONE`
//!   marks a group without COMMIT/XID (DDL): it ends with its first query event.
//! - GTID_LIST (0xa3): `count u32 (low 28 bits) | (domain u32 | server_id u32 | seq u64)*`, the
//!   binlog state at the start of the file; the continuity check compares it with the state at
//!   the end of the previous archived file.
//! - ROTATE (0x04): `position u64 | next file name`.
//! - QUERY (0x02): post-header `thread u32 | exec_time u32 | db_len u8 | error u16 |
//!   status_len u16`, then status vars, db name, NUL, statement (`COMMIT` ends a group).
//! - XID (0x10): ends a group.
//! - TABLE_MAP (0x13): post-header `table_id u48 | flags u16`, then `db_len u8 | db | NUL`:
//!   the database a row event changes (for the replay's choice of filter).
//! - FORMAT_DESCRIPTION (0x0f): the checksum algorithm is the byte before the last 4.

use std::collections::BTreeMap;
use std::fmt;

/// The 4 bytes every binlog file starts with.
pub const MAGIC: &[u8; 4] = b"\xfebin";
/// Fixed event header length (binlog version 4).
pub const HEADER_LEN: usize = 19;
/// Offsets inside the header.
const TYPE_AT: usize = 4;
const SERVER_ID_AT: usize = 5;
const SIZE_AT: usize = 9;
const LOG_POS_AT: usize = 13;
const FLAGS_AT: usize = 17;

pub const QUERY: u8 = 0x02;
pub const STOP: u8 = 0x03;
pub const ROTATE: u8 = 0x04;
pub const FORMAT_DESCRIPTION: u8 = 0x0f;
pub const XID: u8 = 0x10;
pub const TABLE_MAP: u8 = 0x13;
pub const HEARTBEAT: u8 = 0x1b;
pub const MARIA_BINLOG_CHECKPOINT: u8 = 0xa1;
pub const MARIA_GTID: u8 = 0xa2;
pub const MARIA_GTID_LIST: u8 = 0xa3;
/// `LOG_EVENT_ARTIFICIAL_F`: made up by the server for the stream, not in any file.
pub const FLAG_ARTIFICIAL: u16 = 0x20;
/// `LOG_EVENT_BINLOG_IN_USE_F` on a format description event: the file is open (or the server
/// crashed with it open). The server clears it in what it sends and when it closes the file.
pub const FLAG_IN_USE: u16 = 0x01;
/// Offset of the flags' low byte in a file (magic + header offset): the one byte in which an
/// archived open file may differ from the server's copy.
pub const IN_USE_BYTE: usize = 4 + FLAGS_AT;
const GTID_FL_STANDALONE: u8 = 0x01;
/// Upper bound on an event size we accept (MariaDB's `max_allowed_packet` limit is 1 GiB).
pub const MAX_EVENT: u32 = 1 << 30;

/// A MariaDB GTID: domain, originating server, sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gtid {
    pub domain: u32,
    pub server: u32,
    pub seq: u64,
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.seq)
    }
}

impl std::str::FromStr for Gtid {
    type Err = String;
    fn from_str(s: &str) -> Result<Gtid, String> {
        let bad = || format!("{s:?} is not a GTID (DOMAIN-SERVER-SEQ, e.g. 0-1-42)");
        let mut it = s.trim().split('-');
        let (Some(d), Some(sv), Some(q), None) = (it.next(), it.next(), it.next(), it.next())
        else {
            return Err(bad());
        };
        Ok(Gtid {
            domain: d.parse().map_err(|_| bad())?,
            server: sv.parse().map_err(|_| bad())?,
            seq: q.parse().map_err(|_| bad())?,
        })
    }
}

/// The binlog state: per (domain, server) the last sequence number seen, as GTID_LIST events
/// and `@@gtid_binlog_state` hold it.
pub type GtidState = BTreeMap<(u32, u32), u64>;

/// `0-1-5,1-2-9`: a state as MariaDB prints it.
pub fn state_string(s: &GtidState) -> String {
    s.iter()
        .map(|(&(domain, server), &seq)| {
            Gtid {
                domain,
                server,
                seq,
            }
            .to_string()
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// One event's header, and where it is in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub timestamp: u32,
    pub kind: u8,
    pub server_id: u32,
    pub size: u32,
    pub log_pos: u32,
    pub flags: u16,
}

impl Header {
    pub fn parse(b: &[u8]) -> Option<Header> {
        let h = b.get(..HEADER_LEN)?;
        Some(Header {
            timestamp: u32_at(h, 0)?,
            kind: h[TYPE_AT],
            server_id: u32_at(h, SERVER_ID_AT)?,
            size: u32_at(h, SIZE_AT)?,
            log_pos: u32_at(h, LOG_POS_AT)?,
            flags: u16::from_le_bytes([h[FLAGS_AT], h[FLAGS_AT + 1]]),
        })
    }

    pub fn artificial(&self) -> bool {
        self.flags & FLAG_ARTIFICIAL != 0
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// A malformed event: what and at which byte of the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("binlog {file} at byte {at}: {what}")]
pub struct FormatError {
    pub file: String,
    pub at: u64,
    pub what: String,
}

/// A transaction (event group) in a file: from its GTID event to the end of its commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trx {
    pub gtid: Gtid,
    pub start: u64,
    pub end: u64,
    /// Timestamp of its last event: when it committed (seconds since the epoch).
    pub time: u32,
}

/// What one event tells the reader, with its position in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub at: u64,
    pub header: Header,
    /// Set when this event ended a transaction.
    pub committed: Option<Trx>,
    /// ROTATE: the next file's name.
    pub rotate_to: Option<String>,
    /// GTID_LIST: the state at the start of this file.
    pub gtid_list: Option<GtidState>,
    /// QUERY other than BEGIN/COMMIT/ROLLBACK: the statement's default database (empty when
    /// it ran without one), which is what the decoder's `--database` filters by.
    pub query_db: Option<String>,
    /// QUERY run without a default database: its text (to see which databases it names).
    pub query_text: Option<String>,
    /// TABLE_MAP: the database of the table the next row events change.
    pub table_db: Option<String>,
}

impl Event {
    pub fn end(&self) -> u64 {
        self.at + u64::from(self.header.size)
    }
}

/// Walks the events of one file from its first byte, keeping the open transaction and the GTID
/// state across calls so a file can be read in pieces as it grows.
#[derive(Debug, Clone)]
pub struct FileReader {
    pub file: String,
    /// Next byte to read, as a position in the file.
    pub pos: u64,
    /// Checksum bytes at the end of each event (4 with CRC32, from the format description).
    checksum: usize,
    open: Option<(Gtid, u64, bool)>,
    /// State after the last complete transaction read.
    pub state: GtidState,
}

impl FileReader {
    /// A reader at the start of `file` (it expects the magic first).
    pub fn new(file: &str) -> FileReader {
        FileReader {
            file: file.to_string(),
            pos: 0,
            checksum: 0,
            open: None,
            state: GtidState::new(),
        }
    }

    fn err(&self, at: u64, what: impl Into<String>) -> FormatError {
        FormatError {
            file: self.file.clone(),
            at,
            what: what.into(),
        }
    }

    /// Reads the complete events at the start of `buf` (the file's bytes from `self.pos`);
    /// returns them and how many bytes they took. A partial event at the end is left for the
    /// next call.
    pub fn read(&mut self, buf: &[u8]) -> Result<(Vec<Event>, usize), FormatError> {
        let mut used = 0usize;
        let mut out = Vec::new();
        if self.pos == 0 {
            if buf.len() < MAGIC.len() {
                return Ok((out, 0));
            }
            if &buf[..4] != MAGIC {
                return Err(self.err(0, "does not start with the binlog magic"));
            }
            used = 4;
            self.pos = 4;
        }
        while let Some(h) = Header::parse(&buf[used..]) {
            if h.size < HEADER_LEN as u32 || h.size > MAX_EVENT {
                return Err(self.err(self.pos, format!("event size {} is impossible", h.size)));
            }
            let size = h.size as usize;
            let Some(body) = buf.get(used..used + size) else {
                break;
            };
            let at = self.pos;
            let end = at + u64::from(h.size);
            if h.log_pos != 0 && !h.artificial() && u64::from(h.log_pos) != end {
                return Err(self.err(
                    at,
                    format!("event ends at {end} but says it ends at {}", h.log_pos),
                ));
            }
            let ev = self.event(at, h, body)?;
            out.push(ev);
            used += size;
            self.pos = end;
        }
        Ok((out, used))
    }

    fn event(&mut self, at: u64, h: Header, ev: &[u8]) -> Result<Event, FormatError> {
        let body_end = ev.len().saturating_sub(self.checksum).max(HEADER_LEN);
        let body = &ev[HEADER_LEN..body_end];
        let mut e = Event {
            at,
            header: h,
            committed: None,
            rotate_to: None,
            gtid_list: None,
            query_db: None,
            query_text: None,
            table_db: None,
        };
        let end = at + u64::from(h.size);
        match h.kind {
            FORMAT_DESCRIPTION => {
                // checksum algorithm byte then 4 checksum bytes close the event; alg 1 = CRC32
                let alg = ev.len().checked_sub(5).and_then(|i| ev.get(i)).copied();
                self.checksum = if alg == Some(1) { 4 } else { 0 };
            }
            MARIA_GTID => {
                let seq = u64_at(body, 0).ok_or_else(|| self.err(at, "short GTID event"))?;
                let domain = u32_at(body, 8).ok_or_else(|| self.err(at, "short GTID event"))?;
                let standalone = body.get(12).is_some_and(|f| f & GTID_FL_STANDALONE != 0);
                let g = Gtid {
                    domain,
                    server: h.server_id,
                    seq,
                };
                self.open = Some((g, at, standalone));
            }
            MARIA_GTID_LIST => {
                let n =
                    u32_at(body, 0).ok_or_else(|| self.err(at, "short GTID list"))? & 0x0fff_ffff;
                let mut s = GtidState::new();
                for i in 0..n as usize {
                    let o = 4 + i * 16;
                    let (Some(d), Some(sv), Some(q)) =
                        (u32_at(body, o), u32_at(body, o + 4), u64_at(body, o + 8))
                    else {
                        return Err(self.err(at, "GTID list shorter than its count"));
                    };
                    s.insert((d, sv), q);
                }
                // the state at the start of the file: what the reader continues from
                for (k, v) in &s {
                    self.state.insert(*k, *v);
                }
                e.gtid_list = Some(s);
            }
            ROTATE if !h.artificial() => {
                let name = body.get(8..).unwrap_or_default();
                e.rotate_to = Some(String::from_utf8_lossy(name).into_owned());
            }
            XID => e.committed = self.commit(end, h.timestamp),
            QUERY => {
                let standalone = matches!(self.open, Some((_, _, true)));
                let text = query_text(body);
                if standalone || text.is_some_and(is_commit) {
                    e.committed = self.commit(end, h.timestamp);
                }
                if !text.is_some_and(|q| is_commit(q) || q.eq_ignore_ascii_case(b"BEGIN")) {
                    let db = query_db(body).unwrap_or_default();
                    if db.is_empty() {
                        e.query_text = text.map(|t| String::from_utf8_lossy(t).into_owned());
                    }
                    e.query_db = Some(db);
                }
            }
            TABLE_MAP => {
                let len = body.get(8).map(|l| usize::from(*l));
                e.table_db = len
                    .and_then(|l| body.get(9..9 + l))
                    .map(|d| String::from_utf8_lossy(d).into_owned());
            }
            _ => {}
        }
        Ok(e)
    }

    fn commit(&mut self, end: u64, time: u32) -> Option<Trx> {
        let (gtid, start, _) = self.open.take()?;
        self.state.insert((gtid.domain, gtid.server), gtid.seq);
        Some(Trx {
            gtid,
            start,
            end,
            time,
        })
    }
}

fn query_text(body: &[u8]) -> Option<&[u8]> {
    let db_len = usize::from(*body.get(8)?);
    let status_len = usize::from(u16::from_le_bytes([*body.get(11)?, *body.get(12)?]));
    let start = 13usize
        .checked_add(status_len)?
        .checked_add(db_len)?
        .checked_add(1)?;
    body.get(start..)
}

fn query_db(body: &[u8]) -> Option<String> {
    let db_len = usize::from(*body.get(8)?);
    let status_len = usize::from(u16::from_le_bytes([*body.get(11)?, *body.get(12)?]));
    let start = 13usize.checked_add(status_len)?;
    let db = body.get(start..start.checked_add(db_len)?)?;
    Some(String::from_utf8_lossy(db).into_owned())
}

fn is_commit(q: &[u8]) -> bool {
    q.eq_ignore_ascii_case(b"COMMIT") || q.eq_ignore_ascii_case(b"ROLLBACK")
}

/// Every transaction in a whole file's bytes.
pub fn transactions(file: &str, bytes: &[u8]) -> Result<(Vec<Trx>, u64), FormatError> {
    let mut r = FileReader::new(file);
    let (events, used) = r.read(bytes)?;
    if used != bytes.len() {
        return Err(r.err(r.pos, "ends inside an event"));
    }
    let n = events.len() as u64;
    Ok((events.into_iter().filter_map(|e| e.committed).collect(), n))
}

/// The numeric suffix of `binlog.000123`, for ordering files of one server.
pub fn file_number(name: &str) -> Option<u64> {
    name.rsplit_once('.')?.1.parse().ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An event with a valid header (checksum bytes zero: nothing here verifies them).
    pub fn event(kind: u8, ts: u32, server: u32, at: u64, body: &[u8], crc: bool) -> Vec<u8> {
        let size = (HEADER_LEN + body.len() + if crc { 4 } else { 0 }) as u32;
        let mut v = Vec::new();
        v.extend_from_slice(&ts.to_le_bytes());
        v.push(kind);
        v.extend_from_slice(&server.to_le_bytes());
        v.extend_from_slice(&size.to_le_bytes());
        v.extend_from_slice(&(at as u32 + size).to_le_bytes());
        v.extend_from_slice(&0u16.to_le_bytes());
        v.extend_from_slice(body);
        if crc {
            v.extend_from_slice(&[0; 4]);
        }
        v
    }

    fn fde() -> Vec<u8> {
        // version 4, server version, create time, header len, post-header lengths, alg CRC32
        let mut b = vec![4, 0];
        b.extend_from_slice(&[0u8; 50]);
        b.extend_from_slice(&[0; 4]);
        b.push(19);
        b.extend_from_slice(&[0u8; 10]);
        b.push(1);
        b
    }

    #[test]
    fn groups_times_and_resume() {
        let mut f = MAGIC.to_vec();
        let push = |f: &mut Vec<u8>, kind, ts, body: &[u8]| {
            let at = f.len() as u64;
            f.extend(event(kind, ts, 7, at, body, true));
        };
        push(&mut f, FORMAT_DESCRIPTION, 100, &fde());
        let mut gl = 1u32.to_le_bytes().to_vec();
        gl.extend(0u32.to_le_bytes());
        gl.extend(7u32.to_le_bytes());
        gl.extend(4u64.to_le_bytes());
        push(&mut f, MARIA_GTID_LIST, 100, &gl);
        let gtid = |seq: u64, flags: u8| {
            let mut b = seq.to_le_bytes().to_vec();
            b.extend(0u32.to_le_bytes());
            b.push(flags);
            b.extend([0u8; 6]);
            b
        };
        let t1 = f.len() as u64;
        push(&mut f, MARIA_GTID, 101, &gtid(5, 0));
        push(&mut f, 0x17, 101, &[1, 2, 3]);
        push(&mut f, XID, 102, &9u64.to_le_bytes());
        let t2 = f.len() as u64;
        push(&mut f, MARIA_GTID, 103, &gtid(6, GTID_FL_STANDALONE));
        let mut q = vec![0u8; 13];
        q.extend(b"\0CREATE TABLE x(a int)");
        push(&mut f, QUERY, 103, &q);
        let (trx, n) = transactions("binlog.000001", &f).unwrap();
        assert_eq!(n, 7);
        assert_eq!(trx.len(), 2);
        assert_eq!(trx[0].gtid.to_string(), "0-7-5");
        assert_eq!((trx[0].start, trx[0].time), (t1, 102));
        assert_eq!(trx[0].end, t2);
        assert_eq!(trx[1].end, f.len() as u64);
        // in pieces, split inside events: the same events
        let mut r = FileReader::new("binlog.000001");
        let mut all = Vec::new();
        let mut off = 0;
        for cut in [3, 50, 51, 200, f.len()] {
            let (ev, used) = r.read(&f[off..cut]).unwrap();
            off += used;
            all.extend(ev);
        }
        assert_eq!(all.len(), 7);
        assert_eq!(state_string(&r.state), "0-7-6");
        // a lying log_pos is refused with the byte it happened at
        let mut bad = f.clone();
        bad[t1 as usize + LOG_POS_AT] ^= 1;
        let e = transactions("b", &bad).unwrap_err();
        assert_eq!(e.at, t1);
        assert!(transactions("b", &f[..f.len() - 1]).is_err());
        assert!(transactions("b", b"\xfebxx").is_err());
    }

    #[test]
    fn gtid_parse() {
        let g: Gtid = "0-1-42".parse().unwrap();
        assert_eq!((g.domain, g.server, g.seq), (0, 1, 42));
        assert!("0-1".parse::<Gtid>().is_err());
        assert!("a-b-c".parse::<Gtid>().is_err());
        assert_eq!(file_number("binlog.000012"), Some(12));
    }
}
