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
//!
//! A reader that knows its whole order of reads (a restore: the files in walk order) announces it
//! as a [`ReadPlan`]: for each pack, the runs of steps that read it. Several walkers backed the
//! tree up, each filling its own packs, so a pack often ends one walker's subtree and begins the
//! next subtree that walker took, which a restore may reach much later: the least recently used
//! span is then exactly the one still needed (145 GETs for 88 packs on the 2 GiB corpus). With a
//! plan, eviction is Belady's: spans never read again go first, and over the hard budget the span
//! whose next read is furthest away. The plan costs a few words per run of steps per pack.

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

/// For each pack, the runs of steps (first, last) that read it, in order (see above).
#[derive(Default)]
pub(crate) struct ReadPlan {
    runs: HashMap<Id, Vec<(u64, u64)>>,
    /// Every run's first step and pack, by step: what to fetch next.
    starts: Vec<(u64, Id)>,
}

impl ReadPlan {
    /// Step `step` reads a blob of `pack`; steps come in non-decreasing order.
    pub fn add(&mut self, pack: Id, step: u64) {
        let runs = self.runs.entry(pack).or_default();
        match runs.last_mut() {
            // the next step, or one the run already has: the run goes on
            Some((_, last)) if step <= last.saturating_add(1) => *last = (*last).max(step),
            _ => runs.push((step, step)),
        }
    }

    fn finish(&mut self) {
        self.starts = self
            .runs
            .iter()
            .flat_map(|(p, runs)| runs.iter().map(|(first, _)| (*first, *p)))
            .collect();
        self.starts.sort();
    }

    /// Packs whose next run of reads begins after `now`, soonest first.
    fn upcoming(&self, now: u64) -> impl Iterator<Item = &Id> {
        let i = self.starts.partition_point(|(first, _)| *first <= now);
        self.starts[i..].iter().map(|(_, p)| p)
    }

    /// The first step at or after `now` that reads `pack`; `None` when none does.
    fn next_read(&self, pack: &Id, now: u64) -> Option<u64> {
        let runs = self.runs.get(pack)?;
        // runs are sorted and disjoint: the first that has not ended
        let i = runs.partition_point(|(_, last)| *last < now);
        runs.get(i).map(|(first, _)| (*first).max(now))
    }
}

#[derive(Default)]
struct Kept {
    /// Least recently used first.
    spans: VecDeque<Arc<Span>>,
    /// Blobs per pack that queued work announced ([`Spans::expect`]) and has not read yet.
    demand: HashMap<Id, u64>,
    /// The reader's whole order of reads, when it announced one, and where it is in it: the
    /// earliest step a worker is still reading (a large file's segments keep its step while
    /// other workers move on), else the latest begun.
    plan: Option<ReadPlan>,
    step: u64,
    in_flight: std::collections::BTreeMap<u64, usize>,
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

    /// With a plan, spans are fetched ahead in its order ([`Spans::fetch_ahead`]) and the
    /// restorer's per-file hints are ignored: they point up to a queue's length ahead, at packs
    /// the plan would drop first (each hint then cost a whole pack: 1,219 GETs for 88 packs).
    pub fn set_plan(&self, mut plan: ReadPlan) {
        plan.finish();
        let mut kept = self.lock();
        kept.plan = Some(plan);
        kept.step = 0;
    }

    /// Starts fetching the packs the plan reads next, up to [`AHEAD`] not yet read.
    pub fn fetch_ahead(&self, backend: &Arc<dyn Backend>, index: &Index) {
        let next: Vec<Id> = {
            let kept = self.lock();
            let Some(plan) = &kept.plan else { return };
            let waiting = kept
                .spans
                .iter()
                .filter(|s| !s.read.load(std::sync::atomic::Ordering::Relaxed))
                .count();
            // Only into free room: a span fetched ahead over the budget would be the first
            // dropped (its read is the furthest away) and fetched again at the next step.
            let room = HARD_BUDGET.saturating_sub(kept.spans.iter().map(|s| s.len()).sum());
            let sizes = self.sizes.get_or_init(|| index.packs().unwrap_or_default());
            let mut used = 0u64;
            plan.upcoming(kept.step)
                .filter(|p| !kept.spans.iter().any(|s| s.pack == **p))
                .take(AHEAD.saturating_sub(waiting))
                .take_while(|p| {
                    used = used.saturating_add(sizes.get(*p).copied().unwrap_or(SPAN).min(SPAN));
                    used <= room
                })
                .copied()
                .collect()
        };
        for pack in next {
            self.start_fetch(backend, index, &pack, 0);
        }
    }

    /// A worker begins reading for step `step` of the plan; [`Spans::end`] when it is done.
    pub fn begin(&self, step: u64) {
        let mut kept = self.lock();
        *kept.in_flight.entry(step).or_default() += 1;
        kept.step = kept.in_flight.keys().next().copied().unwrap_or(step);
    }

    pub fn end(&self, step: u64) {
        let mut kept = self.lock();
        if let Some(n) = kept.in_flight.get_mut(&step) {
            *n -= 1;
            if *n == 0 {
                kept.in_flight.remove(&step);
            }
        }
        if let Some(first) = kept.in_flight.keys().next().copied() {
            kept.step = first;
        }
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
        let kept = self.lock();
        let waiting = kept
            .spans
            .iter()
            .filter(|s| !s.read.load(std::sync::atomic::Ordering::Relaxed))
            .count();
        if waiting >= AHEAD || kept.plan.is_some() {
            return;
        }
        drop(kept);
        self.start_fetch(backend, index, pack, offset);
    }

    fn start_fetch(&self, backend: &Arc<dyn Backend>, index: &Index, pack: &Id, offset: u64) {
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
    /// [`HARD_BUDGET`], the least recently used one whatever (never the newest). With a plan:
    /// Belady's order instead (see above).
    fn evict(&mut self) {
        if self.plan.is_some() {
            return self.evict_planned();
        }
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

    fn evict_planned(&mut self) {
        let Some(plan) = &self.plan else { return };
        let mut total: u64 = self.spans.iter().map(|s| s.len()).sum();
        while total > BUDGET && self.spans.len() > 1 {
            let last = self.spans.len() - 1;
            let next: Vec<Option<u64>> = self
                .spans
                .iter()
                .take(last)
                .map(|s| plan.next_read(&s.pack, self.step))
                .collect();
            let victim = match next.iter().position(Option::is_none) {
                Some(i) => i,
                None if total > HARD_BUDGET => next
                    .iter()
                    .enumerate()
                    .max_by_key(|(_, n)| **n)
                    .map_or(0, |(i, _)| i),
                None => break,
            };
            if let Some(old) = self.spans.remove(victim) {
                total -= old.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_runs_and_next_reads() {
        let (a, b) = (Id([1; 32]), Id([2; 32]));
        let mut p = ReadPlan::default();
        for (pack, step) in [(a, 0), (a, 0), (a, 1), (b, 2), (a, 9), (b, 10), (a, 10)] {
            p.add(pack, step);
        }
        assert_eq!(p.runs[&a], vec![(0, 1), (9, 10)]);
        assert_eq!(p.runs[&b], vec![(2, 2), (10, 10)]);
        assert_eq!(p.next_read(&a, 0), Some(0));
        assert_eq!(p.next_read(&a, 2), Some(9));
        assert_eq!(p.next_read(&a, 10), Some(10));
        assert_eq!(p.next_read(&a, 11), None);
        assert_eq!(p.next_read(&Id([3; 32]), 0), None);
    }

    fn span(pack: Id) -> Arc<Span> {
        Arc::new(Span {
            pack,
            start: 0,
            end: crate::config::DEFAULT_REMOTE_PACK_SIZE as u64,
            data: OnceLock::new(),
            read: std::sync::atomic::AtomicBool::new(true),
        })
    }

    #[test]
    fn planned_eviction_keeps_packs_read_again_and_drops_finished_ones() {
        let packs: Vec<Id> = (0..9u8).map(|i| Id([i; 32])).collect();
        let mut p = ReadPlan::default();
        // pack 0 is read at steps 0 and 100; packs 1..9 once each, at steps 1..9
        p.add(packs[0], 0);
        for (i, pack) in packs.iter().enumerate().skip(1) {
            p.add(*pack, i as u64);
        }
        p.add(packs[0], 100);
        let mut kept = Kept {
            plan: Some(p),
            ..Kept::default()
        };
        for (i, pack) in packs.iter().enumerate() {
            kept.step = i as u64;
            kept.spans.push_back(span(*pack));
            kept.evict();
        }
        // the LRU would have dropped pack 0 long ago; the plan keeps it for step 100
        assert!(kept.spans.iter().any(|s| s.pack == packs[0]));
        let total: u64 = kept.spans.iter().map(|s| s.len()).sum();
        assert!(
            total <= BUDGET,
            "finished packs are dropped down to the soft budget"
        );
    }
}
