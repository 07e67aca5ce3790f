//! Content-defined chunking: FastCDC v2020 over any reader, with a keyed gear table.
//!
//! Cut points depend only on content (and the repository's gear seed), so an insertion early in a
//! file moves at most the chunks around it and the rest deduplicate. The seed comes from the master
//! key: without it, chunk sizes of a known file could betray that the file is stored.
//! Parameters were chosen by measurement on the shared corpus; see repo-format.md "Chunking".

use std::io::{self, Read};

use fastcdc::v2020::{Normalization, StreamCDC};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
    pub seed: u64,
}

pub const DEFAULT_MIN: u32 = 256 * 1024;
pub const DEFAULT_AVG: u32 = 1024 * 1024;
pub const DEFAULT_MAX: u32 = 4 * 1024 * 1024;

impl ChunkerParams {
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

    /// Streams the chunks of `r`; each item owns at most `max` bytes.
    pub fn chunks<R: Read>(&self, r: R) -> impl Iterator<Item = io::Result<Vec<u8>>> {
        StreamCDC::with_level_and_seed(
            r,
            self.min as usize,
            self.avg as usize,
            self.max as usize,
            Normalization::Level1,
            self.seed,
        )
        .map(|c| match c {
            Ok(c) => Ok(c.data),
            Err(fastcdc::v2020::Error::IoError(e)) => Err(e),
            Err(e) => Err(io::Error::other(e.to_string())),
        })
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
        assert!(chunks.len() > 16);
        assert_eq!(chunks.concat(), data);
        for c in &chunks[..chunks.len() - 1] {
            assert!(c.len() >= 4096 && c.len() <= 65536);
        }
    }
}
