//! The repository: opening (config, keys, index cache), and the blob and snapshot store that every
//! command above uses. Writing blobs in bulk is the archiver's pack pipeline; this module owns the
//! rule it follows: a pack is durable before the index names it, and every blob of a snapshot is
//! durable before the snapshot file is written.

mod filecache;
pub mod keys;
pub mod lock;
mod spans;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use crate::backend::{Backend, Location, pack_path};
use crate::blob;
use crate::config::Config;
use crate::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{BlobLocation, Index};
use crate::keyfile::{KeyFile, KeyFileError};
use crate::pack::{self, PackEntry};
use crate::snapshot::{Snapshot, SnapshotFilter};
use crate::tree::{Node, Tree};

/// Options for `init` that tests and power users set; defaults suit production.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub kdf_memory_kib: u32,
    pub kdf_iterations: u32,
    pub pack_size: Option<u32>,
    pub compression: Option<i32>,
    pub chunker: Option<(u32, u32, u32)>,
    /// Chunk sizes for database dump streams.
    pub db_chunker: Option<(u32, u32, u32)>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            kdf_memory_kib: crate::keyfile::DEFAULT_MEMORY_KIB,
            kdf_iterations: crate::keyfile::DEFAULT_ITERATIONS,
            pack_size: None,
            compression: None,
            chunker: None,
            db_chunker: None,
        }
    }
}

pub struct Repository {
    backend: Arc<dyn Backend>,
    key: MasterKey,
    config: Config,
    index: Index,
    _temp_index: Option<tempfile::TempDir>,
    /// The key file that opened the repository (`keys/<id>`).
    key_path: String,
    /// Whether that key is append-only: then `backend` refuses deletes and overwrites.
    append_only: bool,
    /// This repository's directory in the local cache (`<cache>/<repo id>`).
    cache_dir: PathBuf,
    /// Tree blobs and snapshot files kept locally for a remote repository.
    files: filecache::FileCache,
    /// Read-ahead spans of packs, for a remote repository.
    spans: Option<spans::Spans>,
    /// Things the user should know about opening (index rebuilt, damaged packs skipped).
    pub notes: Vec<String>,
    /// "The index cache was missing", said by the first sync once it found packs to read.
    rebuilt: Option<String>,
}

/// `$SNAP_CACHE_DIR`, else `$XDG_CACHE_HOME/snap`, else `~/.cache/snap` with `~` from `HOME` or,
/// when that is unset (cron, systemd units), the user's home in the password database. Never a
/// shared directory such as `/tmp`: the cache names every backed-up path.
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SNAP_CACHE_DIR") {
        return d.into();
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("snap");
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache/snap"),
        None => passwd_home()
            .map(|h| h.join(".cache/snap"))
            .unwrap_or_else(|| PathBuf::from("/var/cache/snap")),
    }
}

/// The effective user's home directory from the password database.
fn passwd_home() -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: getpwuid_r writes into `pw` and `buf` (whose length it is given) and sets `out` to
    // `&pw` on success; both outlive every use of the strings it points into.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        let r = libc::getpwuid_r(
            libc::geteuid(),
            &mut pw,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut out,
        );
        if r != 0 || out.is_null() || pw.pw_dir.is_null() {
            return None;
        }
        let dir = std::ffi::CStr::from_ptr(pw.pw_dir).to_bytes();
        (!dir.is_empty()).then(|| PathBuf::from(std::ffi::OsStr::from_bytes(dir)))
    }
}

pub(crate) fn key_error(e: KeyFileError, path: &str) -> Error {
    match e {
        // A new key's parameters are the caller's choice, not damage.
        KeyFileError::BelowFloor { .. } => Error::Usage(e.to_string()),
        e => Error::corrupt(path, e.to_string()),
    }
}

/// Creates a new repository at `location`; returns its id.
pub fn init(location: &Location, password: &[u8], opts: &InitOptions) -> Result<Id> {
    init_with(location, password, opts, None)
}

/// Creates a new repository that shares `source`'s blob-id key and chunker parameters (file and
/// database) but has its own encryption key, repository id and passwords (`snap init
/// --from-repo`): the same content gets the same blob ids in both, so `snap copy` between them
/// moves blobs without re-chunking or rewriting trees. Chunker options are refused: the point is
/// to cut exactly as the source does.
///
/// Only the source's key and config are read (no index, no lock): nothing else of it is needed.
pub fn init_sharing_ids(
    location: &Location,
    password: &[u8],
    opts: &InitOptions,
    source: &Location,
    source_password: &[u8],
) -> Result<Id> {
    if opts.chunker.is_some() || opts.db_chunker.is_some() {
        return Err(Error::Usage(
            "a repository made from another takes its chunker parameters; drop the chunker options"
                .into(),
        ));
    }
    let backend = crate::backend::open(source)?;
    if !backend.exists("config")? {
        // As in `Repository::open`: a missing bucket says so rather than "no repository".
        backend.list("")?;
        return Err(Error::NoRepository(source.to_string()));
    }
    let (key, _, _) = open_key(backend.as_ref(), source_password)?;
    let config = read_config(backend.as_ref(), &key)?;
    init_with(location, password, opts, Some((&key, &config)))
}

fn read_config(backend: &dyn Backend, key: &MasterKey) -> Result<Config> {
    let cfg_bytes = backend.read("config")?;
    Config::decode(key, &cfg_bytes).map_err(|e| Error::Envelope {
        file: "config".into(),
        source: e,
    })
}

fn init_with(
    location: &Location,
    password: &[u8],
    opts: &InitOptions,
    source: Option<(&MasterKey, &Config)>,
) -> Result<Id> {
    let backend = crate::backend::open(location)?;
    if backend.exists("config")? {
        return Err(Error::RepositoryExists(location.to_string()));
    }
    let not_empty = match location.local_path() {
        Some(path) => {
            path.exists()
                && std::fs::read_dir(path)
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(false)
        }
        None => !backend.list("")?.is_empty(),
    };
    if not_empty {
        return Err(Error::Usage(format!(
            "{location} exists and is not empty; give a new or empty location"
        )));
    }
    backend.init_layout()?;
    let key = match source {
        Some((src_key, _)) => src_key.with_new_enc()?,
        None => MasterKey::generate()?,
    };
    let mut config = Config::new(&key)?;
    if let Some((_, src)) = source {
        // Stored explicitly (also the database chunker an older source leaves implicit), so the
        // two repositories cut alike whatever defaults a later snap has.
        config.chunker = src.chunker;
        config.db_chunker = Some(src.db_chunker());
    }
    match opts.pack_size {
        Some(s) => config.pack_size = s,
        None if backend.is_offsite() => config.pack_size = crate::config::DEFAULT_REMOTE_PACK_SIZE,
        None => {}
    }
    if let Some(c) = opts.compression {
        config.compression = c;
    }
    if let Some((min, avg, max)) = opts.chunker {
        config.chunker.min = min;
        config.chunker.avg = avg;
        config.chunker.max = max;
    }
    if let Some((min, avg, max)) = opts.db_chunker {
        config.db_chunker = Some(crate::chunker::ChunkerParams {
            min,
            avg,
            max,
            seed: config.chunker.seed,
        });
    }
    Config::decode_plain(&crate::cbor::to_vec(&config))
        .map_err(|e| Error::Usage(format!("invalid repository settings: {e}")))?;
    let kf = KeyFile::create(&key, password, opts.kdf_memory_kib, opts.kdf_iterations)
        .map_err(|e| key_error(e, "keys"))?;
    let kb = kf.encode();
    // The key first: a crash after it but before config leaves a directory `init` can be rerun on
    // after removal, never a config nobody can open.
    let key_id = Id::of_file_bytes(&kb).to_hex();
    backend.write(&format!("keys/{key_id}"), &kb)?;
    backend.write("config", &config.encode(&key)?)?;
    let summary = crate::audit::Summary {
        keys_added: vec![key_id.clone()],
        ..Default::default()
    };
    let rec = crate::audit::AuditRecord::new(crate::audit::Action::Init, &key_id, summary, None);
    crate::audit::write(backend.as_ref(), &key, &rec)?;
    Ok(config.id)
}

/// The backend and master key of the repository at `location`, without its index cache: enough
/// to hold a lock (`snap run`'s job lock) while other processes use the cache.
pub fn open_for_lock(
    location: &Location,
    password: &[u8],
) -> Result<(Arc<dyn Backend>, crate::crypto::MasterKey)> {
    let backend = crate::backend::open(location)?;
    if !backend.exists("config")? {
        backend.list("")?;
        return Err(Error::NoRepository(location.to_string()));
    }
    let (key, _, append_only) = open_key(backend.as_ref(), password)?;
    let backend: Arc<dyn Backend> = if append_only {
        Arc::new(crate::backend::append_only::AppendOnlyBackend::new(backend))
    } else {
        backend
    };
    Ok((backend, key))
}

impl Repository {
    pub fn open(location: &Location, password: &[u8], cache_dir: &Path) -> Result<Repository> {
        let mut repo = Self::open_unsynced(location, password, cache_dir)?;
        repo.sync_index()?;
        Ok(repo)
    }

    /// [`Repository::open`] without bringing the index up to date: for a command that takes a
    /// lock and syncs then (a remote repository is listed once instead of twice). Until
    /// [`Repository::sync_index`] runs the index may lack packs other hosts added.
    pub fn open_unsynced(
        location: &Location,
        password: &[u8],
        cache_dir: &Path,
    ) -> Result<Repository> {
        let backend = crate::backend::open(location)?;
        // Read at once rather than asked for first (one request fewer on every command).
        let cfg_bytes = match backend.read("config") {
            Ok(b) => b,
            Err(e) if e.is_not_found() => {
                // A missing bucket or a refused listing says so, rather than "no repository"
                // (an object store answers for a missing bucket's object with a bare 404).
                backend.list("")?;
                return Err(Error::NoRepository(location.to_string()));
            }
            Err(e) => return Err(e),
        };
        let (key, key_path, append_only) = open_key(backend.as_ref(), password)?;
        // The one choke point for append-only sessions: everything above writes and removes
        // through this backend.
        let backend: Arc<dyn Backend> = if append_only {
            Arc::new(crate::backend::append_only::AppendOnlyBackend::new(backend))
        } else {
            backend
        };
        let config = Config::decode(&key, &cfg_bytes).map_err(|e| Error::Envelope {
            file: "config".into(),
            source: e,
        })?;
        let mut notes = Vec::new();
        let repo_cache = cache_dir.join(config.id.to_hex());
        for d in [cache_dir, &repo_cache] {
            crate::private::private_dir(d).map_err(|e| Error::io("cannot create", d, e))?;
        }
        let index_dir = repo_cache.join("index");
        let (index, created, temp) = match Index::open(&index_dir) {
            Ok((i, c)) => (i, c, None),
            Err(e) => {
                // Most often another snap process holds the RocksDB lock. The index is only a cache,
                // so rebuild a private one rather than wait or fail.
                let tmp = tempfile::tempdir()
                    .map_err(|e| Error::io("cannot create", std::env::temp_dir(), e))?;
                notes.push(format!("index cache unavailable ({e}); using a temporary index rebuilt from pack headers"));
                let (i, _) = Index::open(&tmp.path().join("index"))?;
                (i, true, Some(tmp))
            }
        };
        // Said once the sync below has found packs to read (no listing of its own).
        let rebuilt = (created && temp.is_none()).then(|| {
            format!(
                "index cache {} was missing; rebuilding it from pack headers",
                index_dir.display()
            )
        });
        let backend_is_offsite = backend.is_offsite();
        let repo = Repository {
            backend,
            key,
            config,
            index,
            _temp_index: temp,
            key_path,
            append_only,
            files: filecache::FileCache::new(backend_is_offsite.then(|| repo_cache.clone())),
            spans: backend_is_offsite.then(spans::Spans::new),
            cache_dir: repo_cache,
            notes,
            rebuilt,
        };
        Ok(repo)
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub fn key(&self) -> &MasterKey {
        &self.key
    }

    /// The key file this session opened the repository with.
    pub fn key_path(&self) -> &str {
        &self.key_path
    }

    /// The id (file name) of the key file this session opened the repository with.
    pub fn key_id(&self) -> &str {
        self.key_path.rsplit('/').next().unwrap_or_default()
    }

    /// Whether the repository was opened with an append-only key (nothing may be deleted or
    /// overwritten, see `backend::append_only`).
    pub fn append_only(&self) -> bool {
        self.append_only
    }

    /// Fails with [`Error::AppendOnly`] when opened with an append-only key: deleting commands
    /// call it before they start, so they refuse before doing any work (the backend wrapper
    /// refuses the deletion itself whatever the caller).
    pub fn require_full_key(&self, op: &'static str, path: &str) -> Result<()> {
        if self.append_only {
            return Err(Error::AppendOnly {
                op,
                path: path.to_string(),
            });
        }
        Ok(())
    }

    /// This repository's directory in the local cache (index, verification record).
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Brings the index in line with the packs present and the newest prune record: drops packs
    /// the record lists deleted (one scan, no header read), marks the packs it marks (never used
    /// for deduplication), reads the headers of packs it lacks, and rebuilds from scratch when it
    /// names packs that vanished without a prune deleting them.
    pub fn sync_index(&mut self) -> Result<()> {
        let records = crate::prune::record::load(self.backend.as_ref(), &self.key)?;
        self.notes.extend(records.notes);
        let record = records.newest.map(|(_, r)| r).unwrap_or_default();
        let deleted = record.deleted_ids();
        let present: Vec<(Id, u64)> = self
            .backend
            .list("data")?
            .into_iter()
            .filter_map(|(p, size)| Some((Id::from_hex(p.rsplit('/').next()?)?, size)))
            .collect();
        let mut known = self.index.packs()?;
        let present_set: std::collections::HashSet<Id> = present.iter().map(|(i, _)| *i).collect();
        let (pruned, gone): (std::collections::HashSet<Id>, std::collections::HashSet<Id>) = known
            .keys()
            .filter(|k| !present_set.contains(k))
            .copied()
            .partition(|k| deleted.contains(k));
        if !pruned.is_empty() {
            self.index.remove_packs(&pruned)?;
            known.retain(|k, _| !pruned.contains(k));
        }
        // Blobs of vanished packs, kept as tombstones so `check` can name the pack they were in.
        let mut lost = std::collections::HashMap::new();
        if !gone.is_empty() {
            self.notes.push(format!(
                "{} indexed pack(s) are gone from the repository; rebuilding the index",
                gone.len()
            ));
            lost = self.index.tombstones()?;
            lost.extend(self.index.blobs_in_packs(&gone)?);
            self.index.clear()?;
            known.clear();
        }
        // Marks before new packs are added, so a copy in an unmarked pack is the preferred one.
        let mut marks: std::collections::HashMap<Id, i64> = record
            .marked
            .iter()
            .filter(|m| present_set.contains(&m.pack))
            .map(|m| (m.pack, m.marked_at))
            .collect();
        for d in &record.deleted {
            if present_set.contains(&d.pack) {
                marks.insert(d.pack, d.deleted_at);
            }
        }
        self.index.set_marks(&marks)?;
        let missing: Vec<&(Id, u64)> = present
            .iter()
            .filter(|(id, _)| !known.contains_key(id))
            .collect();
        let results: Vec<(Id, u64, Result<Vec<PackEntry>>)> = missing
            .par_iter()
            .map(|(id, size)| (*id, *size, self.read_pack_header(id, *size)))
            .collect();
        let mut added = 0;
        for (id, size, r) in results {
            match r {
                Ok(entries) => {
                    self.index.add_pack(&id, size, &entries)?;
                    added += 1;
                }
                Err(e) => self.notes.push(format!(
                    "skipped pack {}: {e} (run `snap check`)",
                    pack_path(&id)
                )),
            }
        }
        if !known.is_empty() && added > 0 {
            self.notes.push(format!(
                "index caught up with {added} pack(s) written by another process"
            ));
        }
        // A tombstone keeps only blobs that no present pack holds.
        for (pack, blobs) in lost {
            let mut still = Vec::new();
            for b in blobs {
                if !self.index.contains(&b)? {
                    still.push(b);
                }
            }
            if !still.is_empty() {
                self.index.set_tombstone(&pack, &still)?;
            }
        }
        if let Some(note) = self.rebuilt.take()
            && added > 0
        {
            self.notes.insert(0, note);
        }
        if missing.is_empty() && gone.is_empty() && pruned.is_empty() {
            return Ok(());
        }
        self.index.flush()
    }

    /// Drops the index and rebuilds it from the pack headers alone; returns the packs indexed.
    pub fn rebuild_index(&mut self) -> Result<usize> {
        self.index.clear()?;
        self.sync_index()?;
        Ok(self.index.packs()?.len())
    }

    /// Reads and opens the header of one pack.
    pub fn read_pack_header(&self, id: &Id, size: u64) -> Result<Vec<PackEntry>> {
        let path = pack_path(id);
        let tail_len = size.min(64 * 1024);
        let tail = self.backend.read_range(&path, size - tail_len, tail_len)?;
        let corrupt = |e: pack::PackError| Error::corrupt(&path, e.to_string());
        let (start, hdr_len) =
            pack::header_location(&tail[tail.len().saturating_sub(4)..], size).map_err(corrupt)?;
        let sealed = if start >= size - tail_len {
            let from = (start - (size - tail_len)) as usize;
            tail[from..from + hdr_len as usize].to_vec()
        } else {
            self.backend.read_range(&path, start, hdr_len)?
        };
        pack::open_header(&self.key, &sealed, size).map_err(corrupt)
    }

    pub fn locate(&self, id: &Id) -> Result<BlobLocation> {
        self.index.get(id)?.ok_or_else(|| {
            Error::corrupt(
                format!("blob {id}"),
                "is not in any pack of the repository (run `snap check`)",
            )
        })
    }

    /// Asks the backend to start reading these blobs, adjacent ones in one request each.
    pub fn prefetch<'a>(&self, locs: impl IntoIterator<Item = &'a BlobLocation>) {
        let mut run: Option<(Id, u64, u64)> = None;
        for loc in locs {
            let (start, end) = (loc.offset as u64, loc.offset as u64 + loc.length as u64);
            match &mut run {
                Some((pack, _, e))
                    if *pack == loc.pack && start >= *e && start - *e < 64 * 1024 =>
                {
                    *e = end
                }
                _ => {
                    if let Some((pack, s, e)) = run.take() {
                        self.backend.prefetch(&pack_path(&pack), s, e - s);
                    }
                    run = Some((loc.pack, start, end));
                }
            }
        }
        if let Some((pack, s, e)) = run {
            self.backend.prefetch(&pack_path(&pack), s, e - s);
        }
    }

    /// Whether blob reads cross a network (through read-ahead spans): a reader that knows which
    /// blobs it needs should read them pack by pack ([`Repository::read_pack_range`]).
    pub fn reads_ahead(&self) -> bool {
        self.spans.is_some()
    }

    /// Loads, opens, decompresses and id-checks one blob.
    pub fn load_blob(&self, id: &Id) -> Result<Vec<u8>> {
        self.load_blob_at(id, &self.locate(id)?)
    }

    /// [`Repository::load_blob`] where the caller already looked the blob up.
    pub fn load_blob_at(&self, id: &Id, loc: &BlobLocation) -> Result<Vec<u8>> {
        let path = pack_path(&loc.pack);
        let tree = loc.btype == blob::BlobType::Tree;
        if tree && let Some(sealed) = self.files.get(filecache::Kind::Tree, id) {
            match blob::open_blob_owned(
                &self.key,
                loc.btype,
                id,
                loc.compression,
                loc.raw_len as usize,
                sealed,
            ) {
                Ok(b) => return Ok(b),
                // Damaged in the cache: fetch it again (and the pack copy decides).
                Err(_) => self.files.evict(filecache::Kind::Tree, id),
            }
        }
        let (offset, length) = (loc.offset as u64, loc.length as u64);
        let sealed =
            crate::stages::time(crate::stages::Stage::Fetch, length, || match &self.spans {
                Some(s) => s.read(
                    &*self.backend,
                    &self.index,
                    &path,
                    &loc.pack,
                    offset,
                    length,
                ),
                None => self.backend.read_range(&path, offset, length),
            })?;
        if tree {
            self.files.put(filecache::Kind::Tree, id, &sealed);
        }
        self.open_sealed(id, loc, sealed)
    }

    fn open_sealed(&self, id: &Id, loc: &BlobLocation, mut sealed: Vec<u8>) -> Result<Vec<u8>> {
        self.open_in_place(id, loc, &mut sealed)
            .map(std::borrow::Cow::into_owned)
    }

    /// Opens, decompresses and id-checks blob `id` where its sealed bytes (at `loc`) lie in a
    /// buffer of the caller's ([`Repository::read_pack_range`]).
    pub fn open_in_place<'a>(
        &self,
        id: &Id,
        loc: &BlobLocation,
        sealed: &'a mut [u8],
    ) -> Result<std::borrow::Cow<'a, [u8]>> {
        blob::open_blob_in_place(
            &self.key,
            loc.btype,
            id,
            loc.compression,
            loc.raw_len as usize,
            sealed,
        )
        .map_err(|e| blob_error(id, loc, e))
    }

    /// Bytes `offset..offset+len` of pack `pack`, in one request around the read-ahead spans,
    /// handed to `sink` in pieces as they arrive: for a reader that plans its own pack reads
    /// (the pack-ordered restore). The time counted as fetching is the time not spent in `sink`.
    pub fn read_pack_with(
        &self,
        pack: &Id,
        offset: u64,
        len: u64,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        use crate::stages::{Stage, add_nanos};
        let started = std::time::Instant::now();
        let mut inside = std::time::Duration::ZERO;
        let r = self
            .backend
            .read_range_with(&pack_path(pack), offset, len, &mut |piece| {
                let t = std::time::Instant::now();
                let r = sink(piece);
                inside += t.elapsed();
                r
            });
        let waited = started.elapsed().saturating_sub(inside);
        add_nanos(
            Stage::Fetch,
            u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX),
            len,
        );
        r
    }

    pub fn load_tree(&self, id: &Id) -> Result<Tree> {
        let bytes = self.load_blob(id)?;
        Tree::decode(&bytes).map_err(|e| Error::corrupt(format!("tree {id}"), e))
    }

    /// Writes a finished pack durably, then records it in the index (the write order invariant).
    pub fn store_pack(&self, id: &Id, bytes: &[u8], entries: &[PackEntry]) -> Result<()> {
        use crate::stages::{Stage, time};
        time(Stage::Write, bytes.len() as u64, || {
            self.backend.write(&pack_path(id), bytes)
        })?;
        // The trees a backup just wrote are the ones the next one compares against.
        for e in entries.iter().filter(|e| e.btype == blob::BlobType::Tree) {
            let (start, end) = (e.offset as usize, e.offset as usize + e.length as usize);
            if let Some(sealed) = bytes.get(start..end) {
                self.files.put(filecache::Kind::Tree, &e.id, sealed);
            }
        }
        time(Stage::Index, 0, || {
            self.index.add_pack(id, bytes.len() as u64, entries)
        })
    }

    pub fn save_snapshot(&self, snap: &Snapshot) -> Result<Id> {
        let bytes = snap.encode(&self.key)?;
        let id = Id::of_file_bytes(&bytes);
        self.backend.write(&format!("snapshots/{id}"), &bytes)?;
        self.files.put(filecache::Kind::Snapshot, &id, &bytes);
        Ok(id)
    }

    pub fn load_snapshot(&self, id: &Id) -> Result<Snapshot> {
        let path = format!("snapshots/{id}");
        let bytes = match self.files.get(filecache::Kind::Snapshot, id) {
            Some(b) if Id::of_file_bytes(&b) == *id => b,
            _ => {
                let b = self.backend.read(&path)?;
                if Id::of_file_bytes(&b) == *id {
                    self.files.put(filecache::Kind::Snapshot, id, &b);
                }
                b
            }
        };
        if Id::of_file_bytes(&bytes) != *id {
            return Err(Error::corrupt(&path, "content does not match its name"));
        }
        Snapshot::decode(&self.key, &bytes).map_err(|e| Error::Envelope {
            file: path,
            source: e,
        })
    }

    /// Removes a snapshot file (forget). The caller holds the exclusive forget lock; the packs it
    /// referenced stay until a prune. Removing one already gone is not an error.
    pub fn remove_snapshot(&self, id: &Id) -> Result<()> {
        self.backend.remove(&format!("snapshots/{id}"))
    }

    /// Every snapshot, oldest first. Unreadable snapshot files are reported in `notes` and skipped.
    pub fn snapshots(&mut self) -> Result<Vec<(Id, Snapshot)>> {
        let mut out = Vec::new();
        let listed = self.backend.list("snapshots")?;
        self.files.retain_snapshots(
            &listed
                .iter()
                .filter_map(|(p, _)| p.rsplit('/').next().and_then(Id::from_hex))
                .collect(),
        );
        for (path, _) in listed {
            let Some(id) = path.rsplit('/').next().and_then(Id::from_hex) else {
                continue;
            };
            match self.load_snapshot(&id) {
                Ok(s) => out.push((id, s)),
                Err(e) => self.notes.push(format!("skipped {e}")),
            }
        }
        // By instant, not by string: times carry the writer's UTC offset.
        out.sort_by(|a, b| {
            a.1.time_parsed()
                .cmp(&b.1.time_parsed())
                .then(a.0.cmp(&b.0))
        });
        Ok(out)
    }

    /// Resolves `latest` (the newest snapshot `filter` accepts), a full id or a unique prefix.
    pub fn find_snapshot(&mut self, spec: &str, filter: &SnapshotFilter) -> Result<(Id, Snapshot)> {
        let all = self.snapshots()?;
        if spec == "latest" {
            return all
                .into_iter()
                .rev()
                .find(|(_, s)| filter.may_be_latest(s))
                .ok_or_else(|| Error::SnapshotNotFound(filter.describe_latest()));
        }
        let spec_l = spec.to_ascii_lowercase();
        let mut hits = all
            .into_iter()
            .filter(|(id, _)| id.to_hex().starts_with(&spec_l));
        match (hits.next(), hits.next()) {
            (Some(h), None) if !spec.is_empty() => Ok(h),
            (Some(_), Some(_)) => Err(Error::AmbiguousSnapshot(spec.into())),
            _ => Err(Error::SnapshotNotFound(spec.into())),
        }
    }

    /// The tree node at `path` (components separated by `/`) inside `tree`; the root when empty.
    pub fn find_path(&self, root: &Id, path: &[u8]) -> Result<Option<Node>> {
        let mut tree = self.load_tree(root)?;
        let comps: Vec<&[u8]> = path
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .collect();
        let mut node = None;
        for (i, c) in comps.iter().enumerate() {
            let Some(n) = tree.find(c).cloned() else {
                return Ok(None);
            };
            if i + 1 < comps.len() {
                let Some(sub) = n.subtree else {
                    return Ok(None);
                };
                tree = self.load_tree(&sub)?;
            }
            node = Some(n);
        }
        Ok(node)
    }

    /// Visits every node below `tree` depth-first, with its path (`prefix/name`). `visit` returns
    /// whether to descend into a directory.
    pub fn walk(
        &self,
        tree: &Id,
        prefix: &str,
        visit: &mut dyn FnMut(&str, &Node) -> Result<bool>,
    ) -> Result<()> {
        for node in self.load_tree(tree)?.nodes {
            let path = format!("{prefix}/{}", node.name_lossy());
            if visit(&path, &node)?
                && let Some(sub) = node.subtree
            {
                self.walk(&sub, &path, visit)?;
            }
        }
        Ok(())
    }

    /// Writes a file node's content (holes as zeros) to `out`.
    pub fn write_content(&self, node: &Node, out: &mut dyn std::io::Write) -> Result<()> {
        let zeros = vec![0u8; 64 * 1024];
        for ext in &node.content {
            let io = |e| Error::io("cannot write", "output", e);
            match ext.0 {
                Some(id) => out.write_all(&self.load_blob(&id)?).map_err(io)?,
                None => {
                    let mut left = ext.1;
                    while left > 0 {
                        let n = left.min(zeros.len() as u64) as usize;
                        out.write_all(&zeros[..n]).map_err(io)?;
                        left -= n as u64;
                    }
                }
            }
        }
        Ok(())
    }

    /// A directory node standing for a whole snapshot tree, so "the root" and "a subdirectory" are
    /// handled alike.
    pub fn root_node(tree: Id) -> Node {
        let mut root = Node::synthetic(b"/", crate::tree::NodeKind::Dir, 0o40755, 0, 0, 0);
        root.subtree = Some(tree);
        root
    }

    /// Resolves `path` inside snapshot tree `root`; the root itself for an empty path or `/`.
    pub fn resolve(&self, root: &Id, snapshot: &str, path: &str) -> Result<Node> {
        if path.trim_matches('/').is_empty() {
            return Ok(Self::root_node(*root));
        }
        self.find_path(root, path.as_bytes())?
            .ok_or_else(|| Error::PathNotFound {
                snapshot: snapshot.into(),
                path: path.into(),
            })
    }
}

/// The master key, the path of the key file that opened it, and whether that key is append-only.
fn blob_error(id: &Id, loc: &BlobLocation, e: String) -> Error {
    Error::corrupt(
        pack_path(&loc.pack),
        format!("blob {id} at offset {}: {e}", loc.offset),
    )
}

fn open_key(backend: &dyn Backend, password: &[u8]) -> Result<(MasterKey, String, bool)> {
    let keys = backend.list("keys")?;
    let mut damaged = Vec::new();
    for (path, _) in &keys {
        let bytes = match backend.read(path) {
            Ok(b) => b,
            Err(e) => {
                damaged.push(e.to_string());
                continue;
            }
        };
        // Key files are named by the hash of their bytes: a mismatch is damage, told apart from a
        // wrong password (which authenticated decryption alone cannot do).
        let named = path.rsplit('/').next().and_then(Id::from_hex);
        if named != Some(Id::of_file_bytes(&bytes)) {
            damaged.push(format!("{path}: content does not match its name (damaged)"));
        }
        let kf = match KeyFile::decode(&bytes) {
            Ok(kf) => kf,
            Err(e) => {
                damaged.push(format!("{path}: {e}"));
                continue;
            }
        };
        match kf.open(password) {
            Ok(k) => return Ok((k, path.clone(), kf.append_only)),
            Err(KeyFileError::WrongPassword) => {}
            Err(e) => damaged.push(format!("{path}: {e}")),
        }
    }
    if keys.is_empty() {
        return Err(Error::corrupt("keys/", "no key files"));
    }
    if !damaged.is_empty() {
        return Err(Error::corrupt(
            "keys/",
            format!(
                "no key opens with this password; either the password is wrong or its key file is \
                 damaged: {}",
                damaged.join("; ")
            ),
        ));
    }
    Err(Error::WrongPassword(backend.location()))
}
