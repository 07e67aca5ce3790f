//! Pack-ordered filling of file contents, for a repository across a network.
//!
//! The walk-order restore (`super::fill`) reads blob by blob in the order the files come, and
//! leaves reading ahead to the page cache on a disk and to `repo::spans` across a network. There
//! that order costs a pack's request once for every subtree with blobs in it (131 GETs for 88
//! packs on the 2 GiB corpus even with Belady's eviction over the whole plan), and a worker
//! waits on each. This turns the order around, as restic does for every restore: a window of
//! files, in walk order, is grouped by pack; each pack of the window is read once (the bytes its
//! blobs occupy, in one request, or a few when the gaps between them are large), as a stream, and
//! each blob is opened as soon as its last byte arrived and written to every place, in every file
//! of the window, that holds it. [`Backend::parallel_reads`](crate::backend::Backend::parallel_reads)
//! workers each take a pack, so that many requests are in flight while the blobs that came are
//! opened and written; streamed, a worker holds a blob and a few pieces, not a pack (restic holds
//! whole packs: 155–181 MiB of RSS for the 2 GiB corpus against snap's 90–110).
//!
//! A window is bounded by open files (a queued file holds its descriptor, exactly as in the
//! walk-order restore: a file is never reopened by name) and by blob references (memory). The
//! first window is small so the first requests go out while the walk is still creating files;
//! every later one is as large as those bounds allow. A pack that two windows read is requested
//! twice, each time for the blobs of that window only, so no byte is fetched twice for that.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Receiver, bounded};

use super::{FileJob, Job, Outcome};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::BlobLocation;
use crate::repo::Repository;

/// Blobs of one pack further apart than this are read in separate requests: skipping the bytes
/// between them saves more than the round trip a request costs (20 ms at object stores' usual
/// latency is 2 MiB at 100 MB/s).
const GAP: u64 = 2 * 1024 * 1024;

/// One request reads at most this much: a larger pack (`--pack-size-mib`, up to 1 GiB) is read in
/// parts, so a failed read repeats at most this much. Twice the default remote pack: a pack ends
/// past its target size by up to a blob, and was then read in two requests.
const RANGE_MAX: u64 = 2 * crate::config::DEFAULT_REMOTE_PACK_SIZE as u64;

/// Blob references a window holds at most, whatever its files: about 100 bytes each.
const WINDOW_REFS: usize = 128 * 1024;

/// The first window: enough bytes for a pack per worker, few enough files that the walk has
/// created them within moments. Every later window is as large as the limits allow: a window
/// needs a part of most packs it touches (several walkers filled each pack, from subtrees far
/// apart in walk order), so each window boundary costs a request per pack. Measured on the
/// 2 GiB corpus (84 data packs): 171 requests with windows doubling from this size, 86 with
/// one window, in the same time.
const FIRST_FILES: usize = 256;
const FIRST_BYTES: u64 = 64 * 1024 * 1024;

/// A place a blob is written to: a file and an offset in it. `len` is the tree's length of the
/// extent, checked against the blob's.
struct Place {
    file: Arc<FileJob>,
    offset: u64,
    len: u64,
}

struct Want {
    id: Id,
    loc: BlobLocation,
    places: Vec<Place>,
}

/// One pack's blobs that a window needs, in the order they lie in the pack.
struct PackTask {
    pack: Id,
    wants: Vec<Want>,
}

impl PackTask {
    /// A failed or skipped task: its files not yet complete are removed.
    fn abandon(&self) {
        for p in self.wants.iter().flat_map(|w| &w.places) {
            if p.file.remaining.load(Ordering::Acquire) > 0 {
                p.file.abandon();
            }
        }
    }

    /// The wants, cut into runs each read by one request (see [`GAP`], [`RANGE_MAX`]).
    fn requests(&self) -> Vec<&[Want]> {
        let mut out = Vec::new();
        let mut first = 0;
        for i in 1..=self.wants.len() {
            let cut = self.wants.get(i).is_none_or(|w| {
                let (start, end) = (span(&self.wants[first]).0, span(&self.wants[i - 1]).1);
                let (lo, hi) = span(w);
                lo.saturating_sub(end) > GAP || hi.saturating_sub(start) > RANGE_MAX
            });
            if cut {
                out.push(&self.wants[first..i]);
                first = i;
            }
        }
        out
    }
}

fn span(w: &Want) -> (u64, u64) {
    let start = u64::from(w.loc.offset);
    (start, start + u64::from(w.loc.length))
}

/// The files a window holds, grouped by pack in the order their packs are first needed.
#[derive(Default)]
struct Window {
    tasks: Vec<PackTask>,
    /// Task of each pack.
    packs: HashMap<Id, usize>,
    /// Task and want of each blob.
    blobs: HashMap<Id, (usize, usize)>,
    files: usize,
    bytes: u64,
    refs: usize,
}

impl Window {
    fn add(&mut self, repo: &Repository, file: &Arc<FileJob>) -> Result<()> {
        self.files += 1;
        let mut off = 0u64;
        for ext in &file.node.content {
            if let Some(id) = ext.0 {
                self.refs += 1;
                self.bytes = self.bytes.saturating_add(ext.1);
                let place = Place {
                    file: file.clone(),
                    offset: off,
                    len: ext.1,
                };
                if let Some(&(t, w)) = self.blobs.get(&id) {
                    self.tasks[t].wants[w].places.push(place);
                } else {
                    let loc = repo
                        .locate(&id)
                        .map_err(|e| e.context(format!("restoring {}", file.snap_path)))?;
                    let t = *self.packs.entry(loc.pack).or_insert_with(|| {
                        self.tasks.push(PackTask {
                            pack: loc.pack,
                            wants: Vec::new(),
                        });
                        self.tasks.len() - 1
                    });
                    let wants = &mut self.tasks[t].wants;
                    self.blobs.insert(id, (t, wants.len()));
                    wants.push(Want {
                        id,
                        loc,
                        places: vec![place],
                    });
                }
            }
            // Cannot overflow: `super::segments` checked the sum.
            off += ext.1;
        }
        Ok(())
    }

    fn into_tasks(self) -> Vec<PackTask> {
        let mut tasks = self.tasks;
        for t in &mut tasks {
            t.wants.sort_by_key(|w| w.loc.offset);
        }
        tasks
    }
}

/// Fills the files the walk sends (whole files, see `Walk::whole_files`) on `workers` threads of
/// scope `s`; a window is closed at `max_files` files (see [`super::window_files`]).
pub(super) fn spawn<'s, 'e: 's>(
    s: &'s std::thread::Scope<'s, 'e>,
    repo: &'e Repository,
    jobs: Receiver<Job>,
    out: &'e Outcome<'e>,
    max_files: usize,
    interrupt: &'e AtomicBool,
) {
    let workers = repo.backend().parallel_reads().max(1);
    let (tx, rx) = bounded::<PackTask>(workers);
    for _ in 0..workers {
        let rx = rx.clone();
        s.spawn(move || {
            // One blob buffer per worker, reused: fresh pages for every blob cost more in page
            // faults than the decryption of it.
            let mut buf = Vec::new();
            for task in rx {
                if out.failed() {
                    task.abandon();
                    continue;
                }
                let r = if interrupt.load(Ordering::Relaxed) {
                    Err(Error::Interrupted)
                } else {
                    read_pack(repo, &task, out, &mut buf)
                };
                if let Err(e) = r {
                    task.abandon();
                    out.fail(e);
                }
            }
        });
    }
    s.spawn(move || {
        let (mut files, mut bytes) = (FIRST_FILES.min(max_files), FIRST_BYTES);
        let mut window = Window::default();
        for job in jobs {
            if out.failed() {
                job.file.abandon();
                continue;
            }
            if job.file.remaining.load(Ordering::Acquire) == 0 {
                // No stored content (empty, or holes only): complete at once.
                if let Err(e) = out.complete(repo, &job.file) {
                    job.file.abandon();
                    out.fail(e);
                }
                continue;
            }
            if let Err(e) = window.add(repo, &job.file) {
                job.file.abandon();
                out.fail(e);
                continue;
            }
            if window.files >= files || window.bytes >= bytes || window.refs >= WINDOW_REFS {
                (files, bytes) = (max_files, u64::MAX);
                if !dispatch(std::mem::take(&mut window), &tx) {
                    break;
                }
            }
        }
        if out.failed() {
            for t in std::mem::take(&mut window).into_tasks() {
                t.abandon();
            }
        } else {
            dispatch(window, &tx);
        }
    });
}

/// Sends a window's tasks to the workers; false once they are gone.
fn dispatch(window: Window, tx: &crossbeam_channel::Sender<PackTask>) -> bool {
    for task in window.into_tasks() {
        if let Err(e) = tx.send(task) {
            e.0.abandon();
            return false;
        }
    }
    true
}

/// Reads a task's blobs from its pack, as a stream, and writes each to all its places as soon
/// as its last byte arrived; completes every file whose last blob this wrote. `blob` is the
/// worker's buffer for the blob being assembled.
fn read_pack(
    repo: &Repository,
    task: &PackTask,
    out: &Outcome<'_>,
    blob: &mut Vec<u8>,
) -> Result<()> {
    for wants in task.requests() {
        let (Some(first), Some(last)) = (wants.first(), wants.last()) else {
            continue;
        };
        let (start, end) = (span(first).0, span(last).1);
        // Where the stream is in the pack, and the want whose bytes come next.
        let (mut pos, mut next) = (start, 0usize);
        blob.clear();
        repo.read_pack_with(&task.pack, start, end - start, &mut |mut piece| {
            while let Some(want) = wants.get(next) {
                if piece.is_empty() {
                    break;
                }
                let (lo, hi) = span(want);
                // Bytes between blobs (within the gap allowance) are skipped.
                let skip = usize::try_from(lo.saturating_sub(pos))
                    .unwrap_or(usize::MAX)
                    .min(piece.len());
                piece = &piece[skip..];
                pos += skip as u64;
                let take = usize::try_from(hi - pos)
                    .unwrap_or(usize::MAX)
                    .min(piece.len());
                blob.extend_from_slice(&piece[..take]);
                piece = &piece[take..];
                pos += take as u64;
                if pos == hi {
                    write_blob(repo, want, blob, out)?;
                    blob.clear();
                    next += 1;
                }
            }
            Ok(())
        })?;
        if next != wants.len() {
            return Err(Error::corrupt(
                crate::backend::pack_path(&task.pack),
                format!("the read of {start}..{end} ended at {pos}"),
            ));
        }
    }
    Ok(())
}

/// Opens one blob (its sealed bytes in `sealed`) and writes it to all its places.
fn write_blob(repo: &Repository, want: &Want, sealed: &mut [u8], out: &Outcome<'_>) -> Result<()> {
    let ctx = |e: Error| match want.places.first() {
        Some(p) => e.context(format!("restoring {}", p.file.snap_path)),
        None => e,
    };
    let data = repo
        .open_in_place(&want.id, &want.loc, sealed)
        .map_err(ctx)?;
    for place in &want.places {
        let file = &place.file;
        if data.len() as u64 != place.len {
            return Err(Error::corrupt(
                format!("blob {}", want.id),
                format!("is {} bytes, tree says {}", data.len(), place.len),
            )
            .context(format!("restoring {}", file.snap_path)));
        }
        crate::stages::time(crate::stages::Stage::Output, place.len, || {
            file.file.write_at(&data, place.offset)
        })
        .map_err(|e| Error::io("cannot write", &file.path, e))?;
        out.progress.bytes.fetch_add(place.len, Ordering::Relaxed);
        if file.remaining.fetch_sub(1, Ordering::AcqRel) == 1
            && let Err(e) = out.complete(repo, file)
        {
            file.abandon();
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::{BlobType, Compression};

    fn want(offset: u32, length: u32) -> Want {
        Want {
            id: Id([0; 32]),
            loc: BlobLocation {
                pack: Id([1; 32]),
                offset,
                length,
                raw_len: length,
                btype: BlobType::Data,
                compression: Compression::None,
            },
            places: Vec::new(),
        }
    }

    #[test]
    fn requests_cut_at_large_gaps_and_at_the_range_limit() {
        const M: u32 = 1024 * 1024;
        let task = PackTask {
            pack: Id([1; 32]),
            wants: vec![
                want(0, M),
                want(M, M),
                // a gap of exactly GAP: still one request
                want(4 * M, M),
                // a gap of more than GAP: a new request
                want(7 * M + 1, M),
                // past RANGE_MAX from the run's start: a new request
                want(7 * M + 1 + RANGE_MAX as u32, M),
            ],
        };
        let runs: Vec<usize> = task.requests().iter().map(|r| r.len()).collect();
        assert_eq!(runs, vec![3, 1, 1]);
        let empty = PackTask {
            pack: Id([1; 32]),
            wants: Vec::new(),
        };
        assert!(empty.requests().is_empty());
    }
}
