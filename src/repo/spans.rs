//! Read-ahead spans: how blobs are read from a repository across a network.
//!
//! On disk a blob read is a `pread` served from the page cache, which the kernel fills ahead of
//! the reader. Across a network every read is a request with a round trip and, at most providers,
//! a price; restoring 2 GiB of small files blob by blob cost 11,882 GET requests and 62 s against
//! a local S3 server, where restic (which downloads whole packs) needed 96 and 7.8 s. Restores,
//! copies and checks read blobs in roughly the order they were written (a backup writes a
//! directory's files one after the other into the same pack), so this does what the kernel does
//! for a disk: a read that misses fetches its whole pack (a window of [`SPAN`] bytes of a larger
//! one) in one request, the next reads of that pack are served from memory, and the restorer
//! hints the packs of the files it queues so the next pack is on its way while this one is used.
//!
//! Spans are shared: a worker whose blob lies in a span another worker is still fetching waits for
//! that fetch instead of starting its own (a `OnceLock` per span), so four workers restoring four
//! consecutive small files cost one request, not four. Memory is bounded: at most [`BUDGET`] bytes
//! of spans are kept, least recently used dropped first (a worker still copying out of a dropped
//! span keeps it alive until it is done). That is enough because a backup fills one pack per
//! walker (`archiver::saver`), so a pack holds one subtree's files in the order a restore reads
//! them; with packs shared by the walkers the same budget dropped spans before their last use
//! (942 GETs for 88 packs). A failed span fetch is forgotten and the blob read on its own, so the
//! error reported is the backend's own for that blob.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use crate::backend::Backend;
use crate::error::Result;
use crate::id::Id;
use crate::index::Index;

/// A pack up to this size is fetched whole on its first miss (every pack snap writes, at the
/// default sizes of 8 and 16 MiB); a larger one (`--pack-size-mib` up to 1 GiB) in windows of this
/// size from the blob that missed. One request then carries every blob of a pack: a request costs
/// a round trip, and 16 MiB at 100 MiB/s is 160 ms of transfer against a round trip of
/// milliseconds.
pub const SPAN: u64 = 32 * 1024 * 1024;
/// Bytes of spans kept while some are not needed by queued work: four packs of the remote default
/// size (one in use by the small files, one by a large file's segment, two fetched ahead).
pub const BUDGET: u64 = 4 * crate::config::DEFAULT_REMOTE_PACK_SIZE as u64;
/// Bytes of spans kept at most, needed or not. A restore walks subtrees that different walkers
/// backed up, so it reads a few packs in turn; measured on the 2 GiB corpus, the LRU alone at
/// [`BUDGET`] fetched packs 3.5 times each (299 GETs for 85 packs), cycling through five or six.
pub const HARD_BUDGET: u64 = 7 * crate::config::DEFAULT_REMOTE_PACK_SIZE as u64;
/// Spans fetched ahead of any reader (on a hint) at most: enough to keep a request in flight
/// while the workers open the pack before it, few enough not to evict packs still in use.
const AHEAD: usize = 4;

struct Span {
    pack: Id,
    start: u64,
    end: u64,
    data: OnceLock<Option<Vec<u8>>>,
    /// A reader has used it (a hinted span not yet read counts against [`AHEAD`]).
    read: std::sync::atomic::AtomicBool,
}

impl Span {
    fn len(&self) -> u64 {
        self.end - self.start
    }

    fn fetch(&self, backend: &dyn Backend, path: &str) -> Option<&Vec<u8>> {
        self.data
            .get_or_init(|| {
                backend
                    .read_range(path, self.start, self.len())
                    .ok()
                    .filter(|d| d.len() as u64 == self.len())
            })
            .as_ref()
    }

    /// Bytes `lo..hi` of the span (relative to its start).
    fn get(&self, backend: &dyn Backend, path: &str, lo: u64, hi: u64) -> Option<Vec<u8>> {
        let d = self.fetch(backend, path)?;
        d.get(usize::try_from(lo).ok()?..usize::try_from(hi).ok()?)
            .map(<[u8]>::to_vec)
    }
}

#[derive(Default)]
struct Kept {
    /// Least recently used first.
    spans: VecDeque<Arc<Span>>,
    /// Blobs per pack that queued work announced ([`Spans::expect`]) and has not read yet.
    demand: HashMap<Id, u64>,
}

pub(crate) struct Spans {
    /// Pack sizes from the index, read at the first miss (a span never runs past its pack).
    sizes: OnceLock<HashMap<Id, u64>>,
    kept: Mutex<Kept>,
}

impl Spans {
    pub fn new() -> Spans {
        Spans {
            sizes: OnceLock::new(),
            kept: Mutex::new(Kept::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queued work will read one blob of `pack`: its span is kept until then, in preference to
    /// spans no queued work needs (see [`HARD_BUDGET`]).
    pub fn expect(&self, pack: &Id) {
        *self.lock().demand.entry(*pack).or_default() += 1;
    }

    /// Bytes `offset..offset+len` of pack `pack` (file `path`).
    pub fn read(
        &self,
        backend: &dyn Backend,
        index: &Index,
        path: &str,
        pack: &Id,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>> {
        let r = self.read_span(backend, index, path, pack, offset, len);
        let mut kept = self.lock();
        if let Some(d) = kept.demand.get_mut(pack) {
            *d = d.saturating_sub(1);
            if *d == 0 {
                kept.demand.remove(pack);
            }
        }
        r
    }

    fn read_span(
        &self,
        backend: &dyn Backend,
        index: &Index,
        path: &str,
        pack: &Id,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>> {
        let Some(end) = offset.checked_add(len) else {
            return backend.read_range(path, offset, len);
        };
        let Some((span, _)) = self.span(index, pack, offset, end) else {
            return backend.read_range(path, offset, len);
        };
        span.read.store(true, std::sync::atomic::Ordering::Relaxed);
        let (lo, hi) = (offset - span.start, end - span.start);
        match span.get(backend, path, lo, hi) {
            Some(bytes) => Ok(bytes),
            None => {
                self.forget(&span);
                backend.read_range(path, offset, len)
            }
        }
    }

    /// Starts fetching the span of `pack` that holds `offset` in the background, unless it is
    /// kept already or [`AHEAD`] spans are waiting for their first reader: the restorer hints
    /// the pack of each file it queues, so the next pack is on its way while the workers open
    /// this one.
    pub fn hint(&self, backend: &Arc<dyn Backend>, index: &Index, pack: &Id, offset: u64) {
        let waiting = self
            .lock()
            .spans
            .iter()
            .filter(|s| !s.read.load(std::sync::atomic::Ordering::Relaxed))
            .count();
        if waiting >= AHEAD {
            return;
        }
        let Some((span, new)) = self.span(index, pack, offset, offset.saturating_add(1)) else {
            return;
        };
        if !new {
            return;
        }
        let backend = backend.clone();
        let path = crate::backend::pack_path(pack);
        // Detached: the span is shared, and a reader needing it meanwhile waits on the same
        // fetch; a failed fetch leaves the span empty and the reader reads its blob alone.
        let _ = std::thread::Builder::new()
            .name("snap-prefetch".into())
            .spawn(move || {
                span.fetch(&*backend, &path);
            });
    }

    /// The span holding `offset..end` of `pack`: a kept one (false), or a new one, not yet
    /// fetched (true). None when the pack's size is unknown (a pack newer than this process's
    /// view of the index) or the range runs past it.
    fn span(&self, index: &Index, pack: &Id, offset: u64, end: u64) -> Option<(Arc<Span>, bool)> {
        // One lock over the lookup and the insertion: two workers missing at once on
        // neighbouring blobs must not fetch overlapping spans.
        let mut kept = self.lock();
        if let Some(i) = kept
            .spans
            .iter()
            .position(|s| s.pack == *pack && s.start <= offset && end <= s.end)
        {
            let s = kept.spans.remove(i)?;
            kept.spans.push_back(s.clone());
            return Some((s, false));
        }
        let sizes = self.sizes.get_or_init(|| index.packs().unwrap_or_default());
        let size = *sizes.get(pack)?;
        if end > size {
            return None;
        }
        let start = if size <= SPAN { 0 } else { offset };
        let span = Arc::new(Span {
            pack: *pack,
            start,
            end: start.saturating_add(SPAN).min(size).max(end),
            data: OnceLock::new(),
            read: std::sync::atomic::AtomicBool::new(false),
        });
        kept.spans.push_back(span.clone());
        kept.evict();
        Some((span, true))
    }

    fn forget(&self, span: &Arc<Span>) {
        self.lock().spans.retain(|s| !Arc::ptr_eq(s, span));
    }
}

impl Kept {
    /// Over [`BUDGET`], drops the least recently used span no queued work needs; over
    /// [`HARD_BUDGET`], the least recently used one whatever (never the newest).
    fn evict(&mut self) {
        let mut total: u64 = self.spans.iter().map(|s| s.len()).sum();
        while total > BUDGET && self.spans.len() > 1 {
            let last = self.spans.len() - 1;
            let unneeded = self
                .spans
                .iter()
                .take(last)
                .position(|s| !self.demand.contains_key(&s.pack));
            let victim = match unneeded {
                Some(i) => i,
                None if total > HARD_BUDGET => 0,
                None => break,
            };
            if let Some(old) = self.spans.remove(victim) {
                total -= old.len();
            }
        }
    }
}
