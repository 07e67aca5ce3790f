//! Content-defined chunking: FastCDC v2020 over any reader, with a keyed gear table.
//!
//! Cut points depend only on content (and the repository's gear seed), so an insertion early in a
//! file moves at most the chunks around it and the rest deduplicate. The seed comes from the master
//! key: without it, chunk sizes of a known file could betray that the file is stored.
//! Parameters were chosen by measurement on the shared corpus; see repo-format.md "Chunking".

use std::io::{self, Read};

use fastcdc::v2020::{Normalization, cut_gear, get_gear_with_seed, select_masks};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
    pub seed: u64,
}

pub const DEFAULT_MIN: u32 = 128 * 1024;
pub const DEFAULT_AVG: u32 = 512 * 1024;
pub const DEFAULT_MAX: u32 = 2 * 1024 * 1024;

/// Database dump streams (see `Config::db_chunker`).
pub const DB_DEFAULT_MIN: u32 = 8 * 1024;
pub const DB_DEFAULT_AVG: u32 = 32 * 1024;
pub const DB_DEFAULT_MAX: u32 = 128 * 1024;

impl ChunkerParams {
    pub fn db_default_with_seed(seed: u64) -> ChunkerParams {
        ChunkerParams {
            min: DB_DEFAULT_MIN,
            avg: DB_DEFAULT_AVG,
            max: DB_DEFAULT_MAX,
            seed,
        }
    }

    pub fn default_with_seed(seed: u64) -> ChunkerParams {
        ChunkerParams {
            min: DEFAULT_MIN,
            avg: DEFAULT_AVG,
            max: DEFAULT_MAX,
            seed,
        }
    }

    /// FastCDC's own limits, checked on every config read so a hostile config cannot make the
    /// chunker allocate a huge buffer or loop.
    pub fn validate(&self) -> Result<(), String> {
        use fastcdc::v2020::{
            AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN,
        };
        let (min, avg, max) = (self.min as usize, self.avg as usize, self.max as usize);
        let ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&min)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&avg)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&max)
            && min <= avg
            && avg <= max
            && min % 2 == 0
            && avg % 2 == 0
            && max % 2 == 0;
        if ok {
            Ok(())
        } else {
            Err(format!(
                "chunker parameters min={min} avg={avg} max={max} are outside FastCDC's limits"
            ))
        }
    }

    /// Streams the chunks of `r` with a fresh chunker (tests, benches; the archiver reuses one).
    pub fn chunks<R: Read>(&self, r: R) -> impl Iterator<Item = io::Result<Vec<u8>>> {
        let mut c = Chunker::new(*self);
        let mut r = r;
        std::iter::from_fn(move || c.next_chunk(&mut r).transpose())
    }
}

/// A reusable streaming chunker: one buffer of twice the maximum chunk for its whole life, so
/// cutting many small files costs no allocation or zeroing per file (a fresh 4 MiB buffer per
/// file was a tenth of a backup's CPU time). The buffer is page-aligned and every fill starts at
/// an aligned address, so a source may read into it with O_DIRECT (large files do, see
/// `source::readahead`).
pub struct Chunker {
    p: ChunkerParams,
    mask_s: u64,
    mask_l: u64,
    gear: std::borrow::Cow<'static, [u64]>,
    gear_ls: std::borrow::Cow<'static, [u64]>,
    buf: crate::direct::AlignedBuf,
    start: usize,
    end: usize,
    eof: bool,
}

impl Chunker {
    pub fn new(p: ChunkerParams) -> Chunker {
        let (mask_s, mask_l) = select_masks(p.avg as usize, Normalization::Level1);
        let (gear, gear_ls) = get_gear_with_seed(p.seed);
        Chunker {
            p,
            mask_s,
            mask_l,
            gear,
            gear_ls,
            // Whole pages, so every full fill ends aligned (an odd `max` must not turn the rest
            // of a file's reads buffered); cuts only need at least `max` bytes buffered.
            buf: crate::direct::AlignedBuf::zeroed(
                (2 * p.max as usize).div_ceil(crate::direct::ALIGN) * crate::direct::ALIGN
                    + crate::direct::ALIGN,
            ),
            start: 0,
            end: 0,
            eof: false,
        }
    }

    /// Starts a new stream (the previous one's leftover bytes are dropped).
    /// Length of the first chunk of `data` (all of it when it is shorter than a cut needs).
    fn cut(&self, data: &[u8]) -> usize {
        cut_gear(
            data,
            self.p.min as usize,
            self.p.avg as usize,
            self.p.max as usize,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.gear,
            &self.gear_ls,
        )
        .1
    }

    pub fn reset(&mut self) {
        self.start = 0;
        self.end = 0;
        self.eof = false;
    }

    /// The next chunk of `r`, `None` at the end. Call `reset` before each new stream.
    pub fn next_chunk(&mut self, r: &mut dyn Read) -> io::Result<Option<Vec<u8>>> {
        let max = self.p.max as usize;
        if self.end - self.start < max && !self.eof {
            // The leftover is moved so that it ends aligned: the fill then starts at an aligned
            // address, which lets an O_DIRECT source read straight into the buffer.
            let left = self.end - self.start;
            let pad = (crate::direct::ALIGN - left % crate::direct::ALIGN) % crate::direct::ALIGN;
            let buf = self.buf.as_mut_slice();
            buf.copy_within(self.start..self.end, pad);
            self.start = pad;
            self.end = pad + left;
            while self.end < buf.len() {
                match r.read(&mut buf[self.end..]) {
                    Ok(0) => {
                        self.eof = true;
                        break;
                    }
                    Ok(n) => self.end += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if self.start == self.end {
            return Ok(None);
        }
        let cut = self.cut(&self.buf.as_slice()[self.start..self.end]);
        let chunk = self.buf.as_slice()[self.start..self.start + cut].to_vec();
        self.start += cut;
        Ok(Some(chunk))
    }
}

/// The push form of [`Chunker`], for producers that write (a database dump) rather than being
/// read from: bytes go in with [`StreamChunker::push`], chunks come out through a callback. Cut
/// points are the same as the pull form's over the same bytes, because a cut is only taken once
/// `max` bytes are buffered or the stream has ended, exactly as there.
pub struct StreamChunker {
    chunker: Chunker,
    buf: Vec<u8>,
}

impl StreamChunker {
    pub fn new(p: ChunkerParams) -> StreamChunker {
        StreamChunker {
            chunker: Chunker::new(p),
            buf: Vec::with_capacity(2 * p.max as usize),
        }
    }

    pub fn push<E>(
        &mut self,
        mut data: &[u8],
        emit: &mut dyn FnMut(Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        let max = self.chunker.p.max as usize;
        while !data.is_empty() {
            let room = 2 * max - self.buf.len();
            let n = room.min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            self.drain(max, emit)?;
        }
        Ok(())
    }

    /// Cuts while at least `keep` bytes are buffered.
    fn drain<E>(
        &mut self,
        keep: usize,
        emit: &mut dyn FnMut(Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut start = 0;
        while self.buf.len() - start >= keep.max(1) {
            let cut = self.chunker.cut(&self.buf[start..]);
            emit(self.buf[start..start + cut].to_vec())?;
            start += cut;
        }
        self.buf.drain(..start);
        Ok(())
    }

    /// Emits what is left: the stream has ended.
    pub fn finish<E>(&mut self, emit: &mut dyn FnMut(Vec<u8>) -> Result<(), E>) -> Result<(), E> {
        self.drain(1, emit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_reassemble_and_respect_bounds() {
        let p = ChunkerParams {
            min: 4096,
            avg: 16384,
            max: 65536,
            seed: 7,
        };
        let mut data = vec![0u8; 1 << 20];
        let mut x = 1u32;
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        let chunks: Vec<Vec<u8>> = p.chunks(&data[..]).collect::<io::Result<_>>().unwrap();
        // Same cut points as the crate's own streaming chunker.
        let reference: Vec<Vec<u8>> = fastcdc::v2020::StreamCDC::with_level_and_seed(
            &data[..],
            4096,
            16384,
            65536,
            Normalization::Level1,
            7,
        )
        .map(|c| c.unwrap().data)
        .collect();
        assert_eq!(chunks, reference);
        assert!(chunks.len() > 16);
        assert_eq!(chunks.concat(), data);
        for c in &chunks[..chunks.len() - 1] {
            assert!(c.len() >= 4096 && c.len() <= 65536);
        }
    }

    #[test]
    fn push_form_cuts_where_pull_form_does() {
        let p = ChunkerParams {
            min: 4096,
            avg: 16384,
            max: 65536,
            seed: 9,
        };
        let mut data = vec![0u8; 700_001];
        let mut x = 7u32;
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = (x % 7) as u8;
        }
        let pulled: Vec<Vec<u8>> = p.chunks(&data[..]).map(|c| c.unwrap()).collect();
        let mut pushed = Vec::new();
        let mut sc = StreamChunker::new(p);
        let mut emit = |c: Vec<u8>| -> Result<(), ()> {
            pushed.push(c);
            Ok(())
        };
        for part in data.chunks(12_345) {
            sc.push(part, &mut emit).unwrap();
        }
        sc.finish(&mut emit).unwrap();
        assert_eq!(pulled, pushed);
    }
}
