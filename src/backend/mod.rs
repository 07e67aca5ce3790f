//! Backends: where repository files live. The repository sees only whole immutable files named
//! by relative paths (`config`, `keys/<id>`, `data/ab/<id>`, …); a backend stores, lists, reads
//! (whole or a range) and removes them, and makes a write atomic and durable before it returns.
//! Remote object stores (via opendal) implement the same trait in a later step.

pub mod local;

use crate::error::Result;

pub trait Backend: Send + Sync {
    /// Human-readable location for messages.
    fn location(&self) -> String;
    fn exists(&self, path: &str) -> Result<bool>;
    fn read(&self, path: &str) -> Result<Vec<u8>>;
    fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>>;
    fn size(&self, path: &str) -> Result<u64>;
    /// Hints that `len` bytes at `offset` will be read soon; a backend without such a notion
    /// ignores it.
    fn prefetch(&self, _path: &str, _offset: u64, _len: u64) {}
    /// Writes a whole file atomically and durably: after `Ok`, a crash cannot lose it or leave it
    /// half-written, and a concurrent reader never sees a partial file.
    fn write(&self, path: &str, bytes: &[u8]) -> Result<()>;
    /// Files below `dir` (recursively), as (relative path, size).
    fn list(&self, dir: &str) -> Result<Vec<(String, u64)>>;
    fn remove(&self, path: &str) -> Result<()>;
}

/// Where a pack lives: `data/<first two hex digits>/<id>`.
pub fn pack_path(id: &crate::id::Id) -> String {
    let h = id.to_hex();
    format!("data/{}/{}", &h[..2], h)
}
