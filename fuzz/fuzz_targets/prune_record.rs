#![no_main]
//! Prune records: the sealed file and the plaintext decoder never panic, and a decoded record
//! re-encodes to one that decodes to itself.
use libfuzzer_sys::fuzz_target;
use snap::crypto::MasterKey;
use snap::prunefile::PruneRecord;

fuzz_target!(|data: &[u8]| {
    let key = MasterKey::from_parts([1; 32], [2; 32]);
    let _ = PruneRecord::decode(&key, data);
    if let Ok(r) = snap::cbor::read::<PruneRecord>(data) {
        let again: PruneRecord =
            snap::cbor::read(&snap::cbor::to_vec(&r)).expect("re-encoded record decodes");
        assert_eq!(again, r);
    }
});
