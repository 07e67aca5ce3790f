#![no_main]
//! Key file bytes: decode must never panic; a decoded file must re-encode to a decodable file.
use libfuzzer_sys::fuzz_target;
use snap::keyfile::KeyFile;

fuzz_target!(|data: &[u8]| {
    if let Ok(kf) = KeyFile::decode(data) {
        let again = KeyFile::decode(&kf.encode()).expect("re-encoded key file decodes");
        assert_eq!(again, kf);
    }
});
