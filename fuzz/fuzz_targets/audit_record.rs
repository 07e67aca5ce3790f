#![no_main]
//! Audit records: the sealed file and the plaintext decoder never panic, and a decoded record
//! re-encodes to one that decodes to itself.
use libfuzzer_sys::fuzz_target;
use snap::auditfile::AuditRecord;
use snap::crypto::MasterKey;

fuzz_target!(|data: &[u8]| {
    let key = MasterKey::from_parts([1; 32], [2; 32]);
    let _ = AuditRecord::decode(&key, data);
    if let Ok(r) = snap::cbor::read::<AuditRecord>(data) {
        let again: AuditRecord =
            snap::cbor::read(&snap::cbor::to_vec(&r)).expect("re-encoded record decodes");
        assert_eq!(again, r);
        let _ = r.time_parsed();
    }
});
