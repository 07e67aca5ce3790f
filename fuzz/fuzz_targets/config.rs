#![no_main]
//! Config: both the sealed file (envelope checks) and the plaintext decoder with validation.
use libfuzzer_sys::fuzz_target;
use snap::config::Config;
use snap::crypto::MasterKey;

fuzz_target!(|data: &[u8]| {
    let key = MasterKey::from_parts([1; 32], [2; 32]);
    let _ = Config::decode(&key, data);
    if let Ok(c) = Config::decode_plain(data) {
        assert!(c.chunker.validate().is_ok());
    }
});
