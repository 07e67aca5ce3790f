#![no_main]
//! Snapshots: the sealed file and the plaintext CBOR decoder.
use libfuzzer_sys::fuzz_target;
use snap::crypto::MasterKey;
use snap::snapshot::Snapshot;

fuzz_target!(|data: &[u8]| {
    let key = MasterKey::from_parts([1; 32], [2; 32]);
    let _ = Snapshot::decode(&key, data);
    if let Ok(s) = Snapshot::decode_plain(data) {
        let again = Snapshot::decode_plain(&snap::cbor::to_vec(&s)).expect("re-encoded snapshot decodes");
        assert_eq!(again, s);
    }
});
