#![no_main]
//! Blob envelope and decompression: arbitrary sealed bytes, compression flag and raw length.
use libfuzzer_sys::fuzz_target;
use snap::blob::{self, BlobType, Compression};
use snap::crypto::MasterKey;
use snap::id::Id;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let key = MasterKey::from_parts([1; 32], [2; 32]);
    let comp = if data[0] & 1 == 1 { Compression::Zstd } else { Compression::None };
    let raw_len = u16::from_le_bytes([data[1], data[2]]) as usize;
    let _ = blob::open_blob(&key, BlobType::Data, &Id([3; 32]), comp, raw_len, &data[3..]);
    let _ = blob::decompress(data[3..].to_vec(), comp, raw_len);
});
