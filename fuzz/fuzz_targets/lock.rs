#![no_main]
//! Lock files: the sealed file and the plaintext decoder; age, staleness and the description
//! (time parsing) must never panic on any decoded lock.
use libfuzzer_sys::fuzz_target;
use snap::crypto::MasterKey;
use snap::lockfile::LockInfo;

fuzz_target!(|data: &[u8]| {
    let key = MasterKey::from_parts([1; 32], [2; 32]);
    let _ = LockInfo::decode(&key, data);
    if let Ok(l) = LockInfo::decode_plain(data) {
        let _ = l.age();
        let _ = l.describe();
        let again = LockInfo::decode_plain(&snap::cbor::to_vec(&l)).expect("re-encoded lock decodes");
        assert_eq!(again, l);
    }
});
