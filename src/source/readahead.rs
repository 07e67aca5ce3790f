//! Reading file content for the backup walker.
//!
//! Files of at least [`DIRECT_MIN`] bytes are read by the walker itself with O_DIRECT, straight
//! into the chunker's page-aligned buffer (see [`crate::chunker::Chunker`]). On the benchmark VM a
//! cold buffered read of the 2 GiB corpus costs 2.4 s of system time (the kernel finds fresh
//! page-cache pages, fills them and copies them out) where O_DIRECT costs 0.05 s; a backup reads
//! every byte once, so caching it would only evict the server's working set. The walkers (several,
//! see `archiver::walker`) keep several reads in flight. Reading large files here rather than in
//! a read-ahead thread that hands blocks over saved a copy of every byte: 0.3 s of CPU and 20 MiB
//! of peak memory on the benchmark, 4.39 s against 4.49 s (means of six interleaved runs).
//! Any refusal of O_DIRECT (tmpfs, an unaligned tail) falls back to buffered reads.
//!
//! Small files are many and each costs a device round trip, so one read-ahead thread per walker
//! reads them, in exactly the order the walker will ask for them, with the kernel asked to fetch
//! the next [`ADVISE_FILES`] at once (`WILLNEED`); each is dropped from the page cache once read.
//! The contract: the walker [`ReadAhead::request`]s each such file, in order, then for each in the
//! same order either [`ReadAhead::open`]s it or [`ReadAhead::skip`]s it. A file opened without a
//! request (a large one, a hard link whose first link could not be read, an unchanged file whose
//! blobs are gone) is read in the caller's thread. Memory per walker is bounded by [`PIECES`]
//! pieces of at most [`BLOCK`] bytes, the requests the walker keeps ahead (a few hundred paths)
//! and [`ADVISE_FILES`] open descriptors. Files are opened without following symlinks or
//! blocking on a FIFO that replaced them (see [`super::files::open_regular`]).

use std::collections::VecDeque;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::thread::Scope;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

use super::files::{data_regions, drop_cache, open_regular};
use crate::direct::ALIGN;

/// Files at least this large are read with O_DIRECT by the walker; smaller ones through the
/// read-ahead thread and the page cache.
pub const DIRECT_MIN: u64 = 256 * 1024;
/// The largest single read of the read-ahead thread, so one piece stays small even if a large
/// file is requested.
const BLOCK: usize = 1024 * 1024;
/// Pieces (blocks and file markers) in flight between the reader and the walker.
const PIECES: usize = 8;
/// How many small files ahead of the reader the kernel is asked to prefetch.
const ADVISE_FILES: usize = 64;
/// Buffered reads are dropped from the page cache in steps of this size.
const DROP_BEHIND: u64 = 8 * 1024 * 1024;

struct Request {
    path: PathBuf,
    size: u64,
    blocks: u64,
    /// Opened (and advised) ahead of its turn.
    file: Option<io::Result<File>>,
}

/// What the reader sends for each requested file: `Open`, then `Bytes` in file order holding
/// only the data regions, then `End` (or `Failed` at the first error). An `Open(Err)` is the
/// file's only piece.
enum Piece {
    Open(io::Result<Vec<(u64, u64)>>),
    Bytes(Vec<u8>),
    End,
    Failed(io::Error),
}

/// The walker's end of the read-ahead thread.
/// Dropping it ends the reader: the request channel closes (the reader stops when it next waits
/// for a request) and so does the piece channel (a send it is blocked on fails).
pub struct ReadAhead {
    requests: Sender<Request>,
    pieces: Receiver<Piece>,
    /// Requested and not yet opened or skipped, oldest first.
    asked: VecDeque<PathBuf>,
}

impl ReadAhead {
    pub fn start<'scope>(scope: &'scope Scope<'scope, '_>) -> ReadAhead {
        let (req_tx, req_rx) = unbounded();
        let (piece_tx, piece_rx) = bounded(PIECES);
        scope.spawn(move || reader(req_rx, piece_tx));
        ReadAhead {
            requests: req_tx,
            pieces: piece_rx,
            asked: VecDeque::new(),
        }
    }

    /// Asks for `path` to be read ahead; `md` is what the walker's `lstat` saw.
    pub fn request(&mut self, path: PathBuf, md: &Metadata) {
        let req = Request {
            path: path.clone(),
            size: md.size(),
            blocks: md.blocks(),
            file: None,
        };
        if self.requests.send(req).is_ok() {
            self.asked.push_back(path);
        }
    }

    /// The data of `path`: from the reader when it was the next request, else read here.
    pub fn open(&mut self, path: &Path, md: &Metadata) -> io::Result<FileSource<'_>> {
        if self.asked.front().is_some_and(|p| p == path) {
            self.asked.pop_front();
            let mut src = Ahead::new(self);
            return match src.next_piece()? {
                Some(Piece::Open(Ok(regions))) => Ok(FileSource {
                    regions,
                    inner: Inner::Ahead(src),
                }),
                Some(Piece::Open(Err(e))) => {
                    src.done = true;
                    Err(e)
                }
                _ => Err(io::Error::other("read-ahead out of step with the walker")),
            };
        }
        let file = open_regular(path, 0)?;
        super::files::advise_sequential(&file);
        let regions = data_regions(&file, md.size(), md.blocks())?;
        // A second descriptor for O_DIRECT, kept only if it is the same file (a rename between
        // the two opens must not splice two files together).
        let direct = if md.size() >= DIRECT_MIN {
            let same = |d: &File| match (d.metadata(), file.metadata()) {
                (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
                _ => false,
            };
            open_regular(path, libc::O_DIRECT).ok().filter(same)
        } else {
            None
        };
        Ok(FileSource {
            regions,
            inner: Inner::Local(Local {
                file,
                direct,
                direct_bytes: 0,
                region: 0,
                offset: 0,
                read: 0,
                dropped: 0,
                done: false,
            }),
        })
    }

    /// Forgets `path` if it is the next request that was neither opened nor skipped yet.
    pub fn skip(&mut self, path: &Path) {
        if self.asked.front().is_some_and(|p| p == path) {
            self.asked.pop_front();
            drop(Ahead::new(self));
        }
    }
}

/// One file's bytes: its data regions, and a reader over their concatenation.
pub struct FileSource<'a> {
    regions: Vec<(u64, u64)>,
    inner: Inner<'a>,
}

impl FileSource<'_> {
    /// The byte ranges of the file that hold data (holes are neither read nor stored).
    pub fn regions(&self) -> &[(u64, u64)] {
        &self.regions
    }
}

enum Inner<'a> {
    Ahead(Ahead<'a>),
    Local(Local),
}

impl Read for FileSource<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Ahead(a) => a.read(out),
            Inner::Local(l) => l.read(&self.regions, out),
        }
    }
}

struct Ahead<'a> {
    ra: &'a ReadAhead,
    cur: Vec<u8>,
    /// Bytes of `cur` already handed out.
    used: usize,
    done: bool,
}

impl<'a> Ahead<'a> {
    /// The pieces of the next requested file (dropped unread, it drains them).
    fn new(ra: &'a ReadAhead) -> Self {
        Ahead {
            ra,
            cur: Vec::new(),
            used: 0,
            done: false,
        }
    }

    fn next_piece(&mut self) -> io::Result<Option<Piece>> {
        if self.done {
            return Ok(None);
        }
        match self.ra.pieces.recv() {
            Ok(p) => Ok(Some(p)),
            Err(_) => {
                self.done = true;
                Err(io::Error::other("the read-ahead thread stopped"))
            }
        }
    }

    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.used < self.cur.len() {
                let n = out.len().min(self.cur.len() - self.used);
                out[..n].copy_from_slice(&self.cur[self.used..self.used + n]);
                self.used += n;
                return Ok(n);
            }
            match self.next_piece()? {
                None => return Ok(0),
                Some(Piece::Bytes(b)) => {
                    self.cur = b;
                    self.used = 0;
                }
                Some(Piece::End) => {
                    self.done = true;
                    return Ok(0);
                }
                Some(Piece::Failed(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Some(Piece::Open(_)) => {
                    self.done = true;
                    return Err(io::Error::other("read-ahead out of step with the walker"));
                }
            }
        }
    }
}

impl Drop for Ahead<'_> {
    /// A file abandoned half way (an error, a skip) is drained, so the next one starts in step.
    fn drop(&mut self) {
        while let Ok(Some(p)) = self.next_piece() {
            match p {
                Piece::Bytes(_) | Piece::Open(Ok(_)) => {}
                Piece::Open(Err(_)) | Piece::End | Piece::Failed(_) => self.done = true,
            }
        }
    }
}

/// A file read in the caller's thread: with O_DIRECT while the caller's buffer, the offset and
/// the length allow it, through the page cache otherwise.
struct Local {
    file: File,
    /// The same file opened with O_DIRECT, used while offsets, lengths and memory are aligned.
    direct: Option<File>,
    /// Bytes read through `direct`.
    direct_bytes: u64,
    region: usize,
    offset: u64,
    read: u64,
    dropped: u64,
    done: bool,
}

impl Local {
    fn read(&mut self, regions: &[(u64, u64)], out: &mut [u8]) -> io::Result<usize> {
        while !self.done {
            let Some(&(start, len)) = regions.get(self.region) else {
                self.done = true;
                break;
            };
            if self.offset == len {
                self.region += 1;
                self.offset = 0;
                continue;
            }
            let mut want = out.len().min((len - self.offset) as usize);
            let at = start + self.offset;
            let mut file = &self.file;
            let mut is_direct = false;
            if let Some(d) = &self.direct
                && at.is_multiple_of(ALIGN as u64)
                && (out.as_ptr() as usize).is_multiple_of(ALIGN)
                && want >= ALIGN
            {
                want -= want % ALIGN;
                file = d;
                is_direct = true;
            }
            let n = match file.read_at(&mut out[..want], at) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) && self.direct.is_some() => {
                    self.direct = None;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if n == 0 {
                // The file shrank while being read: it ends here.
                self.done = true;
                break;
            }
            self.offset += n as u64;
            self.read += n as u64;
            if is_direct {
                self.direct_bytes += n as u64;
            }
            // Only what was read through the page cache is dropped from it: pages of a file read
            // around the cache may be the server's own, and are left alone.
            if self.direct_bytes == 0 && self.read - self.dropped >= DROP_BEHIND {
                drop_cache(&self.file, 0, start + self.offset);
                self.dropped = self.read;
            }
            return Ok(n);
        }
        Ok(0)
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        if self.direct_bytes == 0 {
            drop_cache(&self.file, 0, 0);
        }
    }
}

/// The reader thread: serves requests in order until the walker hangs up.
fn reader(requests: Receiver<Request>, out: Sender<Piece>) {
    let mut queue: VecDeque<Request> = VecDeque::new();
    loop {
        if queue.is_empty() {
            match requests.recv() {
                Ok(r) => queue.push_back(r),
                Err(_) => return,
            }
        }
        queue.extend(requests.try_iter());
        advise_ahead(&mut queue);
        let Some(req) = queue.pop_front() else {
            continue;
        };
        if read_one(req, &out).is_err() {
            return; // the walker is gone
        }
    }
}

/// Opens the next few files and asks the kernel to fetch them, so their reads overlap.
fn advise_ahead(queue: &mut VecDeque<Request>) {
    for req in queue.iter_mut().take(ADVISE_FILES) {
        if req.file.is_some() {
            continue;
        }
        let f = open_regular(&req.path, 0);
        if let Ok(f) = &f {
            // SAFETY: advisory call on a valid fd; failure is harmless.
            unsafe {
                libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_WILLNEED);
            }
        }
        req.file = Some(f);
    }
}

/// The walker hung up; stop reading.
struct Gone;

fn send(out: &Sender<Piece>, p: Piece) -> Result<(), Gone> {
    out.send(p).map_err(|_| Gone)
}

fn read_one(mut req: Request, out: &Sender<Piece>) -> Result<(), Gone> {
    let file = match req
        .file
        .take()
        .unwrap_or_else(|| open_regular(&req.path, 0))
    {
        Ok(f) => f,
        Err(e) => return send(out, Piece::Open(Err(e))),
    };
    let regions = match data_regions(&file, req.size, req.blocks) {
        Ok(r) => r,
        Err(e) => return send(out, Piece::Open(Err(e))),
    };
    send(out, Piece::Open(Ok(regions.clone())))?;
    let mut read = 0u64;
    let mut dropped = 0u64;
    'regions: for (start, len) in regions {
        let end = start + len;
        let mut pos = start;
        while pos < end {
            let mut block = vec![0; BLOCK.min((end - pos) as usize)];
            let t = std::time::Instant::now();
            let r = file.read_at(&mut block, pos);
            crate::stages::add(
                crate::stages::Stage::ReadAhead,
                t,
                *r.as_ref().unwrap_or(&0) as u64,
            );
            let n = match r {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return send(out, Piece::Failed(e)),
            };
            if n == 0 {
                break 'regions; // the file shrank while being read: it ends here
            }
            block.truncate(n);
            read += n as u64;
            pos += n as u64;
            send(out, Piece::Bytes(block))?;
            if read - dropped >= DROP_BEHIND {
                drop_cache(&file, 0, pos);
                dropped = read;
            }
        }
    }
    drop_cache(&file, 0, 0);
    send(out, Piece::End)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(ra: &mut ReadAhead, path: &Path) -> (Vec<(u64, u64)>, Vec<u8>) {
        let md = std::fs::metadata(path).unwrap();
        let mut src = ra.open(path, &md).unwrap();
        let regions = src.regions().to_vec();
        let mut data = Vec::new();
        src.read_to_end(&mut data).unwrap();
        (regions, data)
    }

    #[test]
    fn reads_in_request_order_with_skips_and_unrequested_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        // Sizes around the O_DIRECT threshold, the block size and the alignment.
        for (i, size) in [0usize, 1, 4095, 300_000, 1 << 20, 3 * (1 << 20) + 17, 5000]
            .into_iter()
            .enumerate()
        {
            let data: Vec<u8> = (0..size).map(|j| (j * 31 + i * 7) as u8).collect();
            let p = dir.path().join(format!("f{i}"));
            std::fs::write(&p, &data).unwrap();
            files.push((p, data));
        }
        std::thread::scope(|s| {
            let mut ra = ReadAhead::start(s);
            for (p, _) in &files {
                ra.request(p.clone(), &std::fs::metadata(p).unwrap());
            }
            for (i, (p, data)) in files.iter().enumerate() {
                if i == 4 {
                    ra.skip(p);
                    continue;
                }
                if i == 5 {
                    // Abandoned after one read: the rest must be drained.
                    let md = std::fs::metadata(p).unwrap();
                    let mut src = ra.open(p, &md).unwrap();
                    let mut b = [0u8; 10];
                    src.read_exact(&mut b).unwrap();
                    assert_eq!(&b[..], &data[..10]);
                    continue;
                }
                let (regions, got) = read_all(&mut ra, p);
                assert_eq!(&got, data, "file {i}");
                let expect: Vec<(u64, u64)> = if data.is_empty() {
                    vec![]
                } else {
                    vec![(0, data.len() as u64)]
                };
                assert_eq!(regions, expect);
            }
            // Not requested: read locally.
            let (_, got) = read_all(&mut ra, &files[4].0);
            assert_eq!(got, files[4].1);
        });
    }

    #[test]
    fn large_files_are_read_directly_and_chunk_as_in_memory() {
        use crate::chunker::{Chunker, ChunkerParams};
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let data: Vec<u8> = (0..3 * (1 << 20) + 12_345)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        let p = dir.path().join("big");
        std::fs::write(&p, &data).unwrap();
        let params = ChunkerParams {
            min: 64 * 1024,
            avg: 256 * 1024,
            max: 1024 * 1024,
            seed: 3,
        };
        let expected: Vec<Vec<u8>> = params.chunks(&data[..]).map(|c| c.unwrap()).collect();
        std::thread::scope(|s| {
            let mut ra = ReadAhead::start(s);
            let md = std::fs::metadata(&p).unwrap();
            let mut src = ra.open(&p, &md).unwrap();
            let direct = |src: &FileSource| match &src.inner {
                Inner::Local(l) => (l.direct.is_some(), l.direct_bytes),
                Inner::Ahead(_) => (false, 0),
            };
            let (direct_before, _) = direct(&src);
            let mut chunker = Chunker::new(params);
            let mut got = Vec::new();
            let len = src.regions()[0].1;
            let mut region = (&mut src).take(len);
            while let Some(c) = chunker.next_chunk(&mut region).unwrap() {
                got.push(c);
            }
            assert_eq!(got, expected);
            // A file system that takes O_DIRECT at open takes the aligned reads too: all but the
            // unaligned tail of each fill went around the page cache.
            let (direct_after, direct_bytes) = direct(&src);
            assert_eq!(direct_after, direct_before);
            if direct_before {
                assert!(
                    direct_bytes >= data.len() as u64 - 4 * 4096,
                    "{direct_bytes}"
                );
            }
        });
    }

    #[test]
    fn sparse_regions_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sparse");
        let f = File::create(&p).unwrap();
        f.write_all_at(&[7u8; 5000], 1 << 20).unwrap();
        f.write_all_at(&[9u8; 70_000], 8 << 20).unwrap();
        f.set_len(12 << 20).unwrap();
        drop(f);
        let gone = dir.path().join("gone");
        std::fs::write(&gone, b"x").unwrap();
        let gone_md = std::fs::metadata(&gone).unwrap();
        std::thread::scope(|s| {
            let mut ra = ReadAhead::start(s);
            ra.request(gone.clone(), &gone_md);
            ra.request(p.clone(), &std::fs::metadata(&p).unwrap());
            std::fs::remove_file(&gone).unwrap();
            let e = ra.open(&gone, &gone_md).err().unwrap();
            assert_eq!(e.kind(), io::ErrorKind::NotFound);
            let (regions, data) = read_all(&mut ra, &p);
            let total: u64 = regions.iter().map(|r| r.1).sum();
            assert_eq!(total as usize, data.len());
            assert!(total < 1 << 20, "holes were read: {regions:?}");
            let mut expect = Vec::new();
            let full = std::fs::read(&p).unwrap();
            for (s, l) in &regions {
                expect.extend_from_slice(&full[*s as usize..(*s + *l) as usize]);
            }
            assert_eq!(data, expect);
            assert!(data.iter().filter(|&&b| b == 7).count() == 5000);
            assert!(data.iter().filter(|&&b| b == 9).count() == 70_000);
        });
    }
}
