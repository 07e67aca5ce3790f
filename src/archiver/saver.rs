//! The blob saver: the back half of the backup pipeline.
//!
//! ```text
//! caller (walk, read, chunk) ──jobs──► workers × N (hash, dedup, compress, seal) ──blobs──►
//!     packer (one data pack, one tree pack in memory) ──full packs──► writers × 2 (write, fsync,
//!     rename, then index)
//! ```
//! Every queue is bounded, so memory is a constant number of chunks and packs however large the
//! backup. A blob id is `pending` from the moment it is queued until its pack is in the index; the
//! dedup check looks at both, so the same chunk is never stored twice in one run.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{Scope, ScopedJoinHandle};

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::blob::{BlobType, SealedBlob, seal_blob};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::pack::PackBuilder;
use crate::repo::Repository;

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
    failure: &'scope Mutex<Option<Error>>,
    threads: Vec<ScopedJoinHandle<'scope, ()>>,
}

/// A blob to store. Data chunks arrive without an id: the worker hashes them (so the walking thread
/// only reads and cuts) and answers on `reply` as soon as the id is known.
struct Job {
    btype: BlobType,
    id: Option<Id>,
    data: Vec<u8>,
    reply: Option<Sender<Id>>,
}

/// The id of a chunk a worker is still hashing; `wait` blocks until it is known.
pub struct PendingId(Receiver<Id>);

impl PendingId {
    pub fn wait(self) -> Result<Id> {
        self.0
            .recv()
            .map_err(|_| Error::Usage("backup pipeline stopped before hashing a chunk".into()))
    }
}

/// Shared state the saver's threads borrow; lives outside the scope.
#[derive(Default)]
pub struct SaverState {
    pub pending: Mutex<HashSet<Id>>,
    pub failure: Mutex<Option<Error>>,
    pub stats: SaverStats,
}

fn fail(state: &Mutex<Option<Error>>, e: Error) {
    let mut f = state.lock().unwrap_or_else(|p| p.into_inner());
    if f.is_none() {
        *f = Some(e);
    }
}

impl<'scope> Saver<'scope> {
    pub fn start<'env>(
        scope: &'scope Scope<'scope, 'env>,
        repo: &'scope Repository,
        state: &'scope SaverState,
    ) -> Saver<'scope> {
        let sealers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .max(2);
        let (job_tx, job_rx) = bounded::<Job>(sealers * 2);
        let (blob_tx, blob_rx) = bounded::<SealedBlob>(sealers * 2);
        let (pack_tx, pack_rx) = bounded::<(Id, Vec<u8>, Vec<crate::pack::PackEntry>)>(0);
        let mut threads = Vec::new();
        let level = repo.config().compression;
        for _ in 0..sealers {
            let (rx, tx) = (job_rx.clone(), blob_tx.clone());
            threads.push(scope.spawn(move || {
                for job in rx {
                    let id = job.id.unwrap_or_else(|| repo.key().blob_id(&job.data));
                    let new = match job.id {
                        Some(_) => true, // the caller already claimed it
                        None => match claim(repo, &state.pending, &id) {
                            Ok(n) => n,
                            Err(e) => return fail(&state.failure, e),
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
                            if tx.send(b).is_err() {
                                return;
                            }
                        }
                        Err(e) => return fail(&state.failure, e.into()),
                    }
                }
            }));
        }
        drop((job_rx, blob_tx));
        threads.push(scope.spawn(move || packer(repo, blob_rx, pack_tx, state)));
        // Two writers overlap one pack's fsync with the next pack's write; the rendezvous
        // channel above keeps at most one pack per writer in memory.
        for _ in 0..2 {
            let rx = pack_rx.clone();
            threads.push(scope.spawn(move || writer(repo, rx, state)));
        }
        Saver {
            repo,
            jobs: Some(job_tx),
            pending: &state.pending,
            failure: &state.failure,
            threads,
        }
    }

    fn check_failure(&self) -> Result<()> {
        match self
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
        if tx.send(job).is_err() {
            self.check_failure()?;
            return Err(Error::Usage("backup pipeline stopped unexpectedly".into()));
        }
        Ok(())
    }

    /// Queues a data chunk; a worker hashes it, and stores it unless the repository or this run
    /// already has it.
    pub fn save_chunk(&self, data: Vec<u8>) -> Result<PendingId> {
        let (reply, rx) = bounded(1);
        self.send(Job {
            btype: BlobType::Data,
            id: None,
            data,
            reply: Some(reply),
        })?;
        Ok(PendingId(rx))
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
                    self.failure,
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
    if p.contains(id) || repo.index().contains(id)? {
        return Ok(false);
    }
    p.insert(*id);
    Ok(true)
}

fn packer(
    repo: &Repository,
    rx: Receiver<SealedBlob>,
    tx: Sender<(Id, Vec<u8>, Vec<crate::pack::PackEntry>)>,
    state: &SaverState,
) {
    let target = repo.config().pack_size as usize;
    // Room for the target plus the largest chunk and its envelope: no reallocation, ever.
    let capacity = target + repo.config().chunker.max as usize + 4096;
    let mut data = PackBuilder::with_capacity(capacity);
    let mut tree = PackBuilder::new();
    let ship = |pb: PackBuilder| -> bool {
        match pb.finish(repo.key()) {
            Ok(p) => tx.send(p).is_ok(),
            Err(e) => {
                fail(&state.failure, e.into());
                false
            }
        }
    };
    for b in rx {
        let pb = if b.btype == BlobType::Tree {
            &mut tree
        } else {
            &mut data
        };
        pb.add(&b);
        if pb.is_full(target) {
            let fresh = if b.btype == BlobType::Tree {
                PackBuilder::new()
            } else {
                PackBuilder::with_capacity(capacity)
            };
            let full = std::mem::replace(pb, fresh);
            if !ship(full) {
                return;
            }
        }
    }
    for pb in [data, tree] {
        if !pb.is_empty() && !ship(pb) {
            return;
        }
    }
}

fn writer(
    repo: &Repository,
    rx: Receiver<(Id, Vec<u8>, Vec<crate::pack::PackEntry>)>,
    state: &SaverState,
) {
    for (id, bytes, entries) in rx {
        if let Err(e) = repo.store_pack(&id, &bytes, &entries) {
            return fail(&state.failure, e);
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
    }
}
