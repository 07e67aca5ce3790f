//! Read-ahead spans: how blobs are read one at a time from a repository across a network.
//!
//! On disk a blob read is a `pread` served from the page cache, which the kernel fills ahead of
//! the reader. Across a network every read is a request with a round trip and, at most providers,
//! a price; reading 2 GiB of small files blob by blob cost 11,882 GET requests and 62 s against
//! a local S3 server, where restic (which downloads whole packs) needed 96 and 7.8 s. Readers that
//! take blobs one by one (`ls` and `diff` over trees, `cat`, `copy`, mount) read them in roughly
//! the order they were written, so this does what the kernel does for a disk: a read that misses
//! fetches its whole pack (a window of [`SPAN`] bytes of a larger one) in one request, and the
//! next reads of that pack are served from memory. A reader that knows every blob it needs
//! beforehand (the restore) does better still by reading pack by pack (`restorer::packwise`).
//!
//! Spans are shared: a thread whose blob lies in a span another thread is still fetching waits for
//! that fetch instead of starting its own (a `OnceLock` per span). Memory is bounded: at most
//! [`BUDGET`] bytes of spans are kept, least recently used dropped first (a reader still copying
//! out of a dropped span keeps it alive until it is done). A failed span fetch is forgotten and
//! the blob read on its own, so the error reported is the backend's own for that blob.

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
/// Bytes of spans kept: four packs of the remote default size, enough for the few packs a tree
/// walk or a copy reads in turn.
pub const BUDGET: u64 = 4 * crate::config::DEFAULT_REMOTE_PACK_SIZE as u64;

struct Span {
    pack: Id,
    start: u64,
    end: u64,
    data: OnceLock<Option<Vec<u8>>>,
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

pub(crate) struct Spans {
    /// Pack sizes from the index, read at the first miss (a span never runs past its pack).
    sizes: OnceLock<HashMap<Id, u64>>,
    /// Least recently used first.
    kept: Mutex<VecDeque<Arc<Span>>>,
}

impl Spans {
    pub fn new() -> Spans {
        Spans {
            sizes: OnceLock::new(),
            kept: Mutex::new(VecDeque::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Span>>> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
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
        let Some(end) = offset.checked_add(len) else {
            return backend.read_range(path, offset, len);
        };
        let Some(span) = self.span(index, pack, offset, end) else {
            return backend.read_range(path, offset, len);
        };
        let (lo, hi) = (offset - span.start, end - span.start);
        match span.get(backend, path, lo, hi) {
            Some(bytes) => Ok(bytes),
            None => {
                self.forget(&span);
                backend.read_range(path, offset, len)
            }
        }
    }

    /// The span holding `offset..end` of `pack`: a kept one, or a new one, not yet fetched. None
    /// when the pack's size is unknown (a pack newer than this process's
    /// view of the index) or the range runs past it.
    fn span(&self, index: &Index, pack: &Id, offset: u64, end: u64) -> Option<Arc<Span>> {
        // One lock over the lookup and the insertion: two workers missing at once on
        // neighbouring blobs must not fetch overlapping spans.
        let mut kept = self.lock();
        if let Some(i) = kept
            .iter()
            .position(|s| s.pack == *pack && s.start <= offset && end <= s.end)
        {
            let s = kept.remove(i)?;
            kept.push_back(s.clone());
            return Some(s);
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
        });
        kept.push_back(span.clone());
        // Over the budget, the least recently used go (never the one just added).
        let mut total: u64 = kept.iter().map(|s| s.len()).sum();
        while total > BUDGET && kept.len() > 1 {
            if let Some(old) = kept.pop_front() {
                total -= old.len();
            }
        }
        Some(span)
    }

    fn forget(&self, span: &Arc<Span>) {
        self.lock().retain(|s| !Arc::ptr_eq(s, span));
    }
}
