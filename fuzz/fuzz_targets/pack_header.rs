#![no_main]
//! Pack header plaintext and whole packs: offsets must stay inside the pack.
use libfuzzer_sys::fuzz_target;
use snap::crypto::MasterKey;
use snap::pack;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let pack_len = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as u64;
    let hdr_len = u16::from_le_bytes([data[4], data[5]]) as u64;
    if let Ok(entries) = pack::decode_entries(&data[8..], pack_len, hdr_len) {
        for e in entries {
            assert!(e.offset as u64 + e.length as u64 + hdr_len + 4 <= pack_len);
        }
    }
    let key = MasterKey::from_parts([1; 32], [2; 32]);
    let _ = pack::read_whole(&key, data);
});
