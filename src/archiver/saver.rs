//! The blob saver: the back half of the backup pipeline.
//!
//! ```text
//! caller (walk, read, chunk) ──jobs──► workers × N (hash, dedup, compress, seal) ──blobs──►
//!     packer (a data pack per walker, one tree pack, in memory) ──full packs──► writers × 2 (write, fsync,
//!     rename, then index)
//! ```
//! Every queue is bounded, so memory is a constant number of chunks and packs however large the
//! backup.
//!
//! Data chunks carry a stream number (the walker that cut them) and the packer keeps one data pack
//! open per stream. Several walkers feed the sealers at once; with one shared pack, a pack held
//! blobs of three subtrees interleaved, and a restore, which walks one subtree after the other,
//! needed each pack three times far apart. Its reads from a remote repository (whole packs, kept
//! in a small memory budget, see `repo::spans`) were then dropped and fetched again: 942 GETs for
//! 88 packs. With a pack per stream, a pack holds one subtree's files in walk order, the order a
//! restore reads them. The cost is one more open pack per extra walker. A blob id is `pending` from the moment it is queued until its pack is in the index; the
//! dedup check looks at both, so the same chunk is never stored twice in one run.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::blob::{BlobType, SealedBlob, seal_blob};
use crate::direct::AlignedVec;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::pack::{PackBuilder, PackEntry};
use crate::repo::Repository;
use crate::stages::{self, Stage};

#[derive(Default)]
pub struct SaverStats {
    pub blobs_added: AtomicU64,
    pub bytes_added: AtomicU64,
    pub bytes_added_raw: AtomicU64,
    pub packs_written: AtomicU64,
}

pub struct Saver<'scope> {
    repo: &'scope Repository,
    jobs: Option<Sender<Job>>,
    pending: &'scope Mutex<HashSet<Id>>,
    state: &'scope SaverState,
    threads: Vec<ScopedJoinHandle<'scope, ()>>,
}

/// A blob to store. Data chunks arrive without an id: the worker hashes them (so the walking thread
/// only reads and cuts) and answers on `reply` as soon as the id is known.
struct Job {
    btype: BlobType,
    /// The pack stream (see above); trees and unnumbered callers use stream 0.
    stream: usize,
    id: Option<Id>,
    data: Vec<u8>,
    reply: Option<Sender<Id>>,
}

/// The id of a chunk a worker is still hashing; `wait` blocks until it is known, or until the
/// pipeline has failed (its job may then sit in the queue for good).
pub struct PendingId {
    reply: Receiver<Id>,
    dead: Receiver<()>,
}

impl PendingId {
    pub fn wait(self) -> Result<Id> {
        if let Ok(id) = self.reply.try_recv() {
            return Ok(id);
        }
        let _t = stages::Span::start(Stage::WaitIds, 0);
        crossbeam_channel::select! {
            recv(self.reply) -> id => id.map_err(|_| Error::PipelineStopped),
            recv(self.dead) -> _ => self.reply.try_recv().map_err(|_| Error::PipelineStopped),
        }
    }
}

/// Shared state the saver's threads borrow; lives outside the scope.
pub struct SaverState {
    pub pending: Mutex<HashSet<Id>>,
    pub failure: Mutex<Option<Error>>,
    pub stats: SaverStats,
    /// Dropped at the first failure, which wakes everything waiting on a [`PendingId`].
    alive: Mutex<Option<Sender<()>>>,
    dead: Receiver<()>,
}

impl Default for SaverState {
    fn default() -> Self {
        let (alive, dead) = bounded(0);
        SaverState {
            pending: Mutex::default(),
            failure: Mutex::default(),
            stats: SaverStats::default(),
            alive: Mutex::new(Some(alive)),
            dead,
        }
    }
}

fn fail(state: &SaverState, e: Error) {
    let mut f = state.failure.lock().unwrap_or_else(|p| p.into_inner());
    if f.is_none() {
        *f = Some(e);
    }
    drop(f);
    state.alive.lock().unwrap_or_else(|p| p.into_inner()).take();
}

impl<'scope> Saver<'scope> {
    pub fn start<'env>(
        scope: &'scope Scope<'scope, 'env>,
        repo: &'scope Repository,
        state: &'scope SaverState,
    ) -> Saver<'scope> {
        // One worker per core. With a single walker a spare one helped (-3% wall) while the
        // walker waited on the disk; with several walkers feeding the queue it only added
        // switching (benchmark: 4.07-4.17 s and 116-121 MiB with two, 4.19-4.38 s and 125-133 MiB
        // with three).
        let sealers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .max(2);
        let (job_tx, job_rx) = bounded::<Job>(sealers * 4);
        let (blob_tx, blob_rx) = bounded::<(usize, SealedBlob)>(sealers * 2);
        let (pack_tx, pack_rx) = bounded::<Finished>(0);
        // Buffers of written packs, back to the packer (one per writer), so packs reuse warm memory.
        let (free_tx, free_rx) = bounded::<AlignedVec>(2);
        let mut threads = Vec::new();
        let level = repo.config().compression;
        for _ in 0..sealers {
            let (rx, tx) = (job_rx.clone(), blob_tx.clone());
            threads.push(scope.spawn(move || {
                loop {
                    let idle = Instant::now();
                    let Ok(job) = rx.recv() else { break };
                    stages::add(Stage::WaitWork, idle, 0);
                    let id = match job.id {
                        Some(id) => id,
                        None => stages::time(Stage::Hash, job.data.len() as u64, || {
                            repo.key().blob_id(&job.data)
                        }),
                    };
                    let new = match job.id {
                        Some(_) => true, // the caller already claimed it
                        None => match stages::time(Stage::Lookup, 0, || {
                            claim(repo, &state.pending, &id)
                        }) {
                            Ok(n) => n,
                            Err(e) => return fail(state, e),
                        },
                    };
                    if let Some(reply) = job.reply {
                        let _ = reply.send(id);
                    }
                    if !new {
                        continue;
                    }
                    match seal_blob(repo.key(), job.btype, id, &job.data, level) {
                        Ok(b) => {
                            let t = Instant::now();
                            if tx.send((job.stream, b)).is_err() {
                                return;
                            }
                            stages::add(Stage::WaitWriters, t, 0);
                        }
                        Err(e) => return fail(state, e.into()),
                    }
                }
            }));
        }
        drop((job_rx, blob_tx));
        threads.push(scope.spawn(move || packer(repo, blob_rx, pack_tx, free_rx, state)));
        // Writers overlap one pack's fsync (or PUT) with the next pack's write; the rendezvous
        // channel above keeps at most one pack per writer in memory.
        for _ in 0..repo.backend().pack_writers() {
            let (rx, free) = (pack_rx.clone(), free_tx.clone());
            threads.push(scope.spawn(move || writer(repo, rx, free, state)));
        }
        Saver {
            repo,
            jobs: Some(job_tx),
            pending: &state.pending,
            state,
            threads,
        }
    }

    fn check_failure(&self) -> Result<()> {
        match self
            .state
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn send(&self, job: Job) -> Result<()> {
        let tx = self.jobs.as_ref().ok_or(Error::Interrupted)?;
        // Timed only when the queue is full: that wait is the sealers being the limit.
        let job = match tx.try_send(job) {
            Ok(()) => return Ok(()),
            Err(crossbeam_channel::TrySendError::Full(job)) => job,
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => {
                self.check_failure()?;
                return Err(Error::PipelineStopped);
            }
        };
        let t = Instant::now();
        if tx.send(job).is_err() {
            self.check_failure()?;
            return Err(Error::PipelineStopped);
        }
        stages::add(Stage::WaitSealers, t, 0);
        Ok(())
    }

    /// Queues a data chunk; a worker hashes it, and stores it unless the repository or this run
    /// already has it.
    pub fn save_chunk(&self, data: Vec<u8>) -> Result<PendingId> {
        self.save_chunk_to(0, data)
    }

    /// [`Saver::save_chunk`] into pack stream `stream`.
    pub fn save_chunk_to(&self, stream: usize, data: Vec<u8>) -> Result<PendingId> {
        let (reply, rx) = bounded(1);
        self.send(Job {
            btype: BlobType::Data,
            stream,
            id: None,
            data,
            reply: Some(reply),
        })?;
        Ok(PendingId {
            reply: rx,
            dead: self.state.dead.clone(),
        })
    }

    /// Stores a blob hashed by the caller (trees: the parent needs the id at once); returns
    /// its id and whether it was new.
    pub fn save(&self, btype: BlobType, data: Vec<u8>) -> Result<(Id, bool)> {
        let id = self.repo.key().blob_id(&data);
        if !claim(self.repo, self.pending, &id)? {
            return Ok((id, false));
        }
        self.send(Job {
            btype,
            stream: 0,
            id: Some(id),
            data,
            reply: None,
        })?;
        Ok((id, true))
    }

    /// Flushes the last packs and waits until everything queued is durable and indexed.
    pub fn finish(mut self) -> Result<()> {
        self.jobs = None;
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                fail(
                    self.state,
                    Error::Usage("a backup pipeline thread panicked".into()),
                );
            }
        }
        self.check_failure()
    }
}

/// Marks `id` as being stored by this run; false when the repository or the run already has it.
fn claim(repo: &Repository, pending: &Mutex<HashSet<Id>>, id: &Id) -> Result<bool> {
    let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
    if p.contains(id) || repo.index().usable(id)? {
        return Ok(false);
    }
    p.insert(*id);
    Ok(true)
}

/// A finished pack on its way to a writer.
type Finished = (Id, AlignedVec, Vec<PackEntry>);

fn pack_error(e: crate::pack::PackError) -> Error {
    match e {
        crate::pack::PackError::Memory(source) => {
            Error::io("cannot allocate", "a pack buffer", source)
        }
        e => Error::Usage(format!("cannot finish a pack: {e}")),
    }
}

fn packer(
    repo: &Repository,
    rx: Receiver<(usize, SealedBlob)>,
    tx: Sender<Finished>,
    free: Receiver<AlignedVec>,
    state: &SaverState,
) {
    let target = repo.config().pack_size as usize;
    // Room for the target plus the largest chunk and its envelope: no reallocation, ever.
    let capacity = target + repo.config().chunker.max as usize + 4096;
    // Writers hand buffers back; a new one is allocated only while none is free.
    let fresh_data = || match free.try_recv() {
        Ok(buf) if buf.capacity() >= capacity => Ok(PackBuilder::reuse(buf)),
        _ => PackBuilder::with_capacity(capacity),
    };
    let fresh_tree = || PackBuilder::with_capacity(64 * 1024);
    let mut tree = match fresh_tree() {
        Ok(b) => b,
        Err(e) => {
            return fail(state, Error::io("cannot allocate", "a pack buffer", e));
        }
    };
    // One open data pack per stream, made at the stream's first blob.
    let mut data: Vec<Option<PackBuilder>> = Vec::new();
    let ship = |pb: PackBuilder| -> bool {
        match stages::time(Stage::Pack, 0, || pb.finish(repo.key())) {
            Ok(p) => stages::time(Stage::WaitWriters, 0, || tx.send(p).is_ok()),
            Err(e) => {
                fail(state, pack_error(e));
                false
            }
        }
    };
    for (stream, b) in rx {
        let is_tree = b.btype == BlobType::Tree;
        let pb = if is_tree {
            &mut tree
        } else {
            // Streams are walker numbers (a handful): the vector stays tiny.
            if data.len() <= stream {
                data.resize_with(stream + 1, || None);
            }
            match &mut data[stream] {
                Some(pb) => pb,
                slot => match fresh_data() {
                    Ok(pb) => slot.insert(pb),
                    Err(e) => {
                        return fail(state, Error::io("cannot allocate", "a pack buffer", e));
                    }
                },
            }
        };
        if let Err(e) = stages::time(Stage::Pack, 0, || pb.add(&b)) {
            return fail(state, pack_error(e));
        }
        if pb.is_full(target) {
            let fresh = match if is_tree { fresh_tree() } else { fresh_data() } {
                Ok(f) => f,
                Err(e) => {
                    return fail(state, Error::io("cannot allocate", "a pack buffer", e));
                }
            };
            let full = std::mem::replace(pb, fresh);
            if !ship(full) {
                return;
            }
        }
    }
    // The walkers' last packs are partly filled: merged while they fit one buffer, so a run
    // ends with as few pack writes as one walker would make.
    let mut last: Option<PackBuilder> = None;
    for pb in data.into_iter().flatten().filter(|p| !p.is_empty()) {
        match last.as_mut() {
            Some(acc) if acc.len() + pb.len() <= capacity => {
                if let Err(e) = acc.absorb(pb) {
                    return fail(state, pack_error(e));
                }
            }
            _ => {
                if let Some(full) = last.replace(pb)
                    && !ship(full)
                {
                    return;
                }
            }
        }
    }
    for pb in last.into_iter().chain([tree]) {
        if !pb.is_empty() && !ship(pb) {
            return;
        }
    }
}

fn writer(repo: &Repository, rx: Receiver<Finished>, free: Sender<AlignedVec>, state: &SaverState) {
    for (id, bytes, entries) in rx {
        if let Err(e) = repo.store_pack(&id, &bytes, &entries) {
            return fail(state, e);
        }
        let s = &state.stats;
        s.packs_written.fetch_add(1, Ordering::Relaxed);
        s.blobs_added
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        s.bytes_added
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        s.bytes_added_raw.fetch_add(
            entries.iter().map(|e| e.raw_len as u64).sum::<u64>(),
            Ordering::Relaxed,
        );
        let mut p = state.pending.lock().unwrap_or_else(|e| e.into_inner());
        for e in &entries {
            p.remove(&e.id);
        }
        drop(p);
        // A full pool (or a finished packer) just drops the buffer.
        let _ = free.try_send(bytes);
    }
}
