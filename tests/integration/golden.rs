//! Golden bytes: the worked examples in repo-format.md, read from the spec file itself, must
//! decode through the library to the values the spec describes and encode back to the same bytes.
//! Editing the spec or the code without the other fails here.
//!
//! Each example is a fenced block opened by ```` ```hex golden:NAME ````: hex digits and
//! whitespace, `#` starts a comment to the end of the line. Sealed examples use the spec's fixed
//! master key (`enc` = 00 01 … 1f, `id` = 20 21 … 3f) and fixed nonces; the library always draws
//! nonces at random, so the sealed bytes are recomputed here with the AEAD crate directly (an
//! independent check of what the spec says about keys, nonces and associated data), while the
//! library's own encoder is checked through its plaintext, header and length.

use std::collections::HashMap;

use aes_gcm_siv::aead::{AeadInOut, KeyInit};
use aes_gcm_siv::{Aes256GcmSiv, Nonce, Tag};
use snap::blob::{self, BlobType, Compression};
use snap::chunker::ChunkerParams;
use snap::config::Config;
use snap::crypto::MasterKey;
use snap::envelope::{self, Kind};
use snap::id::Id;
use snap::keyfile::KeyFile;
use snap::lockfile::LockInfo;
use snap::pack::{self, PackEntry};
use snap::snapshot::{
    BackupKind, BinlogGap, BinlogRecord, BinlogSegment, MysqlSummary, Snapshot, SourceError,
    Summary,
};
use snap::tree::{Extent, Node, NodeKind, Tree, Xattr};

const GOLDEN_PASSWORD: &[u8] = b"golden password";
const BLOB_PLAINTEXT: &[u8] = b"hello, snap\n";

fn spec_text() -> String {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/repo-format.md");
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("cannot read {p}: {e}"))
}

/// Every ```` ```hex golden:NAME ```` block of the spec, decoded.
fn golden_blocks(spec: &str) -> HashMap<String, Vec<u8>> {
    let mut out = HashMap::new();
    let mut lines = spec.lines();
    while let Some(l) = lines.next() {
        let Some(name) = l.trim().strip_prefix("```hex golden:") else {
            continue;
        };
        let mut hex = String::new();
        for body in lines.by_ref() {
            if body.trim_start().starts_with("```") {
                break;
            }
            let code = body.split('#').next().unwrap_or("");
            hex.extend(code.chars().filter(|c| !c.is_whitespace()));
        }
        let bytes =
            hex::decode(&hex).unwrap_or_else(|e| panic!("golden:{name} is not hex: {e} ({hex})"));
        assert!(
            out.insert(name.trim().to_string(), bytes).is_none(),
            "golden:{name} appears twice in repo-format.md"
        );
    }
    out
}

struct Golden(HashMap<String, Vec<u8>>);

impl Golden {
    fn load() -> Golden {
        Golden(golden_blocks(&spec_text()))
    }

    fn get(&self, name: &str) -> &[u8] {
        self.0
            .get(name)
            .unwrap_or_else(|| panic!("repo-format.md has no ```hex golden:{name} block"))
    }
}

fn seq(from: u8) -> [u8; 32] {
    std::array::from_fn(|i| from + i as u8)
}

/// The spec's fixed test master key.
fn master() -> MasterKey {
    MasterKey::from_parts(seq(0x00), seq(0x20))
}

/// The fixed nonce of each example: twelve bytes of `0xA0 + kind`.
fn nonce(kind: Kind) -> [u8; 12] {
    [0xA0 + kind as u8; 12]
}

/// AES-256-GCM-SIV with an explicit nonce, straight from the AEAD crate: what the spec says a
/// sealed body is (`nonce ‖ ciphertext ‖ tag`).
fn seal_fixed(key: &[u8; 32], nonce: [u8; 12], ad: &[u8], plain: &[u8]) -> Vec<u8> {
    let cipher = Aes256GcmSiv::new(&(*key).into());
    let mut out = nonce.to_vec();
    out.extend_from_slice(plain);
    let tag = cipher
        .encrypt_inout_detached(&Nonce::from(nonce), ad, (&mut out[12..]).into())
        .unwrap();
    out.extend_from_slice(tag.as_slice());
    out
}

/// Opens a sealed body with the AEAD crate directly (for bytes the library sealed).
fn open_direct(key: &[u8; 32], ad: &[u8], sealed: &[u8]) -> Vec<u8> {
    let (n, rest) = sealed.split_at(12);
    let (ct, tag) = rest.split_at(rest.len() - 16);
    let mut out = ct.to_vec();
    Aes256GcmSiv::new(&(*key).into())
        .decrypt_inout_detached(
            &Nonce::from(<[u8; 12]>::try_from(n).unwrap()),
            ad,
            (&mut out[..]).into(),
            &Tag::from(<[u8; 16]>::try_from(tag).unwrap()),
        )
        .expect("the library's sealed bytes open with the spec's key and AD");
    out
}

fn ad(kind: Kind, bound: Option<&Id>) -> Vec<u8> {
    let mut a = envelope::header(kind).to_vec();
    if let Some(id) = bound {
        a.extend_from_slice(&id.0);
    }
    a
}

/// A sealed file of the spec: `H(kind) ‖ seal(nonce(kind), AD = H(kind), plain)`; checks that the
/// library opens it to `plain` and that the library's own encoding has the same layout.
fn check_sealed_file(kind: Kind, file: &[u8], plain: &[u8], library_encoding: &[u8]) {
    let k = master();
    let mut want = envelope::header(kind).to_vec();
    want.extend_from_slice(&seal_fixed(&seq(0), nonce(kind), &ad(kind, None), plain));
    assert_eq!(
        hex::encode(file),
        hex::encode(&want),
        "the spec's sealed {} is not H({}) ‖ AES-256-GCM-SIV(enc, nonce, AD = H({}), plaintext)",
        kind.name(),
        kind as u8,
        kind as u8
    );
    assert_eq!(envelope::open_file(&k, kind, file).unwrap(), plain);
    assert_eq!(library_encoding.len(), file.len());
    assert_eq!(library_encoding[..8], file[..8]);
    assert_eq!(
        open_direct(&seq(0), &ad(kind, None), &library_encoding[8..]),
        plain
    );
}

#[test]
fn golden_envelope_headers() {
    let g = Golden::load();
    let hs = g.get("envelope-headers");
    assert_eq!(hs.len(), 8 * 8, "one 8-byte header per kind 1..=8");
    for (i, h) in hs.chunks(8).enumerate() {
        let kind = Kind::from_u8(i as u8 + 1).unwrap();
        assert_eq!(h, envelope::header(kind), "header of kind {}", kind.name());
        assert_eq!(envelope::check_header(kind, h).unwrap(), b"");
    }
    // Each byte the spec says a reader refuses is refused.
    let h = envelope::header(Kind::Snapshot);
    for (at, v) in [(0, b'X'), (4, 4), (5, 2), (6, 1), (7, 1)] {
        let mut bad = h;
        bad[at] = v;
        assert!(
            envelope::check_header(Kind::Snapshot, &bad).is_err(),
            "byte {at} = {v}"
        );
    }
}

#[test]
fn golden_empty_tree() {
    let g = Golden::load();
    let bytes = g.get("empty-tree");
    let t = Tree::decode(bytes).unwrap();
    assert_eq!(t, Tree::default());
    assert_eq!(t.encode(), bytes);
}

fn golden_node() -> Node {
    Node {
        name: b"hosts".to_vec(),
        kind: NodeKind::File,
        mode: 0o100644,
        uid: 0,
        gid: 0,
        size: 4196,
        mtime: 1_732_562_000_123_456_789,
        ctime: -1_000_000_000,
        inode: 131_074,
        dev: 2049,
        nlink: 1,
        rdev: 0,
        target: None,
        content: vec![Extent(Some(Id([0x11; 32])), 100), Extent(None, 4096)],
        subtree: None,
        xattrs: vec![Xattr(b"user.k".to_vec(), b"v".to_vec())],
    }
}

#[test]
fn golden_tree_one_node() {
    let g = Golden::load();
    let bytes = g.get("tree-one-node");
    let t = Tree::decode(bytes).unwrap();
    assert_eq!(
        t,
        Tree {
            nodes: vec![golden_node()]
        }
    );
    assert_eq!(hex::encode(t.encode()), hex::encode(bytes));
}

fn golden_snapshot() -> Snapshot {
    Snapshot {
        time: "2026-11-25T10:00:00.123456789+01:00".into(),
        time_end: "2026-11-25T10:00:01.987654321+01:00".into(),
        host: "web1".into(),
        user: "root".into(),
        paths: vec!["/etc".into(), "/srv/app".into()],
        tags: vec!["daily".into()],
        kind: BackupKind::Incremental,
        parent: Some(Id([0x33; 32])),
        tree: Id([0x44; 32]),
        incomplete: true,
        errors: vec![SourceError {
            path: "/srv/app/locked".into(),
            message: "Permission denied (os error 13)".into(),
        }],
        summary: Summary {
            files_new: 2,
            files_changed: 1,
            files_unmodified: 40,
            dirs: 5,
            other_entries: 1,
            bytes_read: 5000,
            bytes_total: 1_310_720,
            blobs_added: 3,
            bytes_added: 2100,
            bytes_added_raw: 5000,
            packs_written: 1,
            duration_ms: 1234,
        },
        program: "snap 0.1.0".into(),
        mysql: Some(MysqlSummary {
            source: "mysql://backup@db1:3306".into(),
            server: "MariaDB 10.11.19".into(),
            binlog_file: Some("mysql-bin.000042".into()),
            binlog_position: Some(1_048_576),
            gtid: None,
            lock_ms: 25.5,
            ddl_lock_ms: 1234.567,
            duration_ms: 90_000,
            bytes: 300_000_000,
            databases: 2,
            tables: 30,
            rows: 1_000_000,
            kind: BackupKind::Full,
            base: None,
            since: None,
            binlog_start: None,
            consolidates: None,
        }),
        original: None,
        binlog: None,
    }
}

#[test]
fn golden_snapshot_plaintext_and_file() {
    let g = Golden::load();
    let plain = g.get("snapshot-plain");
    let s = Snapshot::decode_plain(plain).unwrap();
    assert_eq!(s, golden_snapshot());
    assert_eq!(hex::encode(snap::cbor::to_vec(&s)), hex::encode(plain));
    // Sealed like every file (the lock and config examples show those bytes): H(3) ‖ nonce ‖
    // ciphertext ‖ tag, AD = H(3).
    let file = s.encode(&master()).unwrap();
    assert_eq!(file[..8], envelope::header(Kind::Snapshot));
    assert_eq!(file.len(), 8 + 12 + plain.len() + 16);
    assert_eq!(
        open_direct(&seq(0), &ad(Kind::Snapshot, None), &file[8..]),
        plain
    );
    assert_eq!(Snapshot::decode(&master(), &file).unwrap(), s);
}

#[test]
fn golden_copied_snapshot_records_its_original() {
    let g = Golden::load();
    let plain = g.get("snapshot-copy-plain");
    let s = Snapshot::decode_plain(plain).unwrap();
    let want = Snapshot {
        time: "2026-11-26T02:00:00+01:00".into(),
        time_end: "2026-11-26T02:00:03+01:00".into(),
        host: "web1".into(),
        user: "root".into(),
        paths: vec!["/srv".into()],
        tags: vec![],
        kind: BackupKind::Full,
        parent: None,
        tree: Id([0x44; 32]),
        incomplete: false,
        errors: vec![],
        summary: Summary {
            files_new: 3,
            dirs: 1,
            bytes_read: 5000,
            bytes_total: 5000,
            blobs_added: 4,
            bytes_added: 2100,
            bytes_added_raw: 5000,
            packs_written: 2,
            duration_ms: 3000,
            ..Summary::default()
        },
        program: "snap 0.1.0".into(),
        mysql: None,
        original: Some(Id([0x55; 32])),
        binlog: None,
    };
    assert_eq!(s, want);
    assert_eq!(s.origin(Id([0x66; 32])), Id([0x55; 32]));
    assert_eq!(hex::encode(snap::cbor::to_vec(&s)), hex::encode(plain));
    // A backup's snapshot has no `original` key at all (the snapshot-plain example).
    let backup = golden_snapshot();
    assert!(backup.original.is_none());
    assert!(!hex::encode(snap::cbor::to_vec(&backup)).contains(&hex::encode(b"original")));
}

#[test]
fn golden_binlog_record() {
    let g = Golden::load();
    let plain = g.get("binlog-record");
    let want = BinlogRecord {
        source: "mysql://backup@db1:3306".into(),
        server_id: 1,
        server_uuid: None,
        segments: vec![BinlogSegment {
            file: "binlog.000007".into(),
            start: 0,
            end: 1234,
            path: "binlog/binlog.000007/0".into(),
            first_time: Some(1_796_130_660),
            last_time: Some(1_796_130_679),
            gtid_first: Some("0-1-11".into()),
            gtid_last: Some("0-1-14".into()),
            gtid_state: "0-1-14".into(),
            gtid_list: Some("0-1-10".into()),
            events: 21,
            transactions: 4,
            ended: true,
            next: Some("binlog.000008".into()),
        }],
        gaps: vec![BinlogGap {
            kind: "purged".into(),
            after: Some("binlog.000005:8810".into()),
            before: "binlog.000007:4".into(),
            detail: "binlog.000006 was purged before it was archived".into(),
            detected: "2026-11-25T10:00:00Z".into(),
        }],
    };
    let r: BinlogRecord = snap::cbor::read(plain).unwrap();
    assert_eq!(r, want);
    assert_eq!(hex::encode(snap::cbor::to_vec(&r)), hex::encode(plain));
}

#[test]
fn golden_lock() {
    let g = Golden::load();
    let plain = g.get("lock-plain");
    let l = LockInfo::decode_plain(plain).unwrap();
    let want = LockInfo {
        host: "web1".into(),
        pid: 4242,
        user: "root".into(),
        time: "2026-11-25T09:00:00+00:00".into(),
        exclusive: false,
        prune: false,
        job: None,
    };
    assert_eq!(l, want);
    assert_eq!(hex::encode(snap::cbor::to_vec(&l)), hex::encode(plain));
    let file = g.get("lock-file");
    assert_eq!(LockInfo::decode(&master(), file).unwrap(), l);
    check_sealed_file(Kind::Lock, file, plain, &l.encode(&master()).unwrap());
}

#[test]
fn golden_audit_record() {
    use snap::auditfile::{AuditRecord, Summary};
    let g = Golden::load();
    let plain = g.get("audit-plain");
    let r: AuditRecord = snap::cbor::read(plain).unwrap();
    let want = AuditRecord {
        time: "2026-11-25T09:00:00+00:00".into(),
        action: "forget".into(),
        key: "66".repeat(32),
        host: "web1".into(),
        user: "root".into(),
        pid: 4242,
        ok: true,
        error: None,
        summary: Summary {
            snapshots_removed: vec![Id([0x33; 32])],
            ..Summary::default()
        },
    };
    assert_eq!(r, want);
    assert_eq!(hex::encode(snap::cbor::to_vec(&r)), hex::encode(plain));
    let file = g.get("audit-file");
    assert_eq!(AuditRecord::decode(&master(), file).unwrap(), r);
    check_sealed_file(
        Kind::AuditRecord,
        file,
        plain,
        &r.encode(&master()).unwrap(),
    );
}

#[test]
fn golden_config() {
    let g = Golden::load();
    let plain = g.get("config-plain");
    let c = Config::decode_plain(plain).unwrap();
    // §3: the gear seed is the keyed BLAKE3 of the context string under the id key.
    let seed = master().derive_u64("snap chunker gear seed");
    let want = Config {
        version: 1,
        id: Id([0x55; 32]),
        chunker: ChunkerParams::default_with_seed(seed),
        db_chunker: Some(ChunkerParams::db_default_with_seed(seed)),
        compression: 3,
        pack_size: 8 * 1024 * 1024,
        created: "2026-11-25T09:00:00+00:00".into(),
    };
    assert_eq!(c, want);
    assert_eq!(hex::encode(snap::cbor::to_vec(&c)), hex::encode(plain));
    let file = g.get("config-file");
    assert_eq!(Config::decode(&master(), file).unwrap(), c);
    check_sealed_file(Kind::Config, file, plain, &c.encode(&master()).unwrap());
}

/// The key-derivation key of the golden key file, computed as §4 says, with the argon2 crate
/// directly.
fn golden_kdf_key(salt: &[u8]) -> [u8; 32] {
    let params = argon2::Params::new(19456, 1, 1, Some(32)).unwrap();
    let mut k = [0u8; 32];
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_into(GOLDEN_PASSWORD, salt, &mut k)
        .unwrap();
    k
}

#[test]
fn golden_key_file() {
    let g = Golden::load();
    let bytes = g.get("key-file");
    let kf = KeyFile::decode(bytes).unwrap();
    assert_eq!(
        (kf.kdf.as_str(), kf.memory_kib, kf.iterations, kf.lanes),
        ("argon2id", 19456, 1, 1)
    );
    assert_eq!(kf.salt, b"snap golden salt");
    assert_eq!(
        (kf.host.as_str(), kf.user.as_str(), kf.created.as_str()),
        ("web1", "root", "2026-11-25T09:00:00+00:00")
    );
    assert_eq!(kf.encode(), bytes);
    // `sealed` = nonce ‖ AES-256-GCM-SIV_K(enc ‖ id) ‖ tag, K = argon2id, AD = H(2) ‖ salt.
    let mut key_ad = envelope::header(Kind::Key).to_vec();
    key_ad.extend_from_slice(&kf.salt);
    let master_bytes: Vec<u8> = (0u8..64).collect();
    let want = seal_fixed(
        &golden_kdf_key(&kf.salt),
        nonce(Kind::Key),
        &key_ad,
        &master_bytes,
    );
    assert_eq!(hex::encode(&kf.sealed), hex::encode(want));
    assert_eq!(
        &kf.open(GOLDEN_PASSWORD).unwrap().to_bytes()[..],
        master_bytes
    );
    assert!(kf.open(b"not the password").is_err());
    // A new key file at the floor: same layout, and it opens with its password.
    let new = KeyFile::create(&master(), GOLDEN_PASSWORD, 19456, 1).unwrap();
    let nb = new.encode();
    assert_eq!(nb[..8], bytes[..8]);
    let back = KeyFile::decode(&nb).unwrap();
    assert_eq!(back.sealed.len(), 92);
    assert_eq!(
        back.open(GOLDEN_PASSWORD).unwrap().to_bytes()[..],
        master_bytes
    );
}

#[test]
fn golden_key_file_append_only() {
    let g = Golden::load();
    let bytes = g.get("key-file-append-only");
    let kf = KeyFile::decode(bytes).unwrap();
    assert!(kf.append_only);
    assert_eq!(kf.encode(), bytes);
    // The same fields as the full key file but the flag and the seal.
    let full = KeyFile::decode(g.get("key-file")).unwrap();
    assert!(!full.append_only);
    assert_eq!(
        KeyFile {
            sealed: full.sealed.clone(),
            append_only: false,
            ..kf.clone()
        },
        full
    );
    // `sealed` = the master key under the argon2id key, AD = H(2) ‖ salt ‖ "append-only".
    let mut key_ad = envelope::header(Kind::Key).to_vec();
    key_ad.extend_from_slice(&kf.salt);
    key_ad.extend_from_slice(b"append-only");
    let master_bytes: Vec<u8> = (0u8..64).collect();
    let want = seal_fixed(
        &golden_kdf_key(&kf.salt),
        nonce(Kind::Key),
        &key_ad,
        &master_bytes,
    );
    assert_eq!(hex::encode(&kf.sealed), hex::encode(want));
    assert_eq!(
        &kf.open(GOLDEN_PASSWORD).unwrap().to_bytes()[..],
        master_bytes
    );
    // Clearing the flag does not give a full key.
    let cleared = KeyFile {
        append_only: false,
        ..kf.clone()
    };
    assert!(cleared.open(GOLDEN_PASSWORD).is_err());
    let new = KeyFile::create_with(&master(), GOLDEN_PASSWORD, 19456, 1, true).unwrap();
    assert!(
        KeyFile::decode(&new.encode())
            .unwrap()
            .open(GOLDEN_PASSWORD)
            .is_ok()
    );
}

#[test]
fn golden_pack() {
    let g = Golden::load();
    let k = master();
    let id = k.blob_id(BLOB_PLAINTEXT);
    let entry = PackEntry {
        btype: BlobType::Data,
        compression: Compression::None,
        offset: 8,
        length: (BLOB_PLAINTEXT.len() + 28) as u32,
        raw_len: BLOB_PLAINTEXT.len() as u32,
        id,
    };
    // The header plaintext: count ‖ entries.
    let plain = g.get("pack-header-plain");
    assert_eq!(
        hex::encode(pack::encode_entries(&[entry])),
        hex::encode(plain)
    );
    let file = g.get("pack");
    assert_eq!(pack::read_whole(&k, file).unwrap(), vec![entry]);
    // Byte for byte: H(5) ‖ sealed blob ‖ sealed header ‖ header length.
    let sealed_blob = seal_fixed(
        &seq(0),
        nonce(Kind::DataBlob),
        &ad(Kind::DataBlob, Some(&id)),
        BLOB_PLAINTEXT,
    );
    let sealed_hdr = seal_fixed(
        &seq(0),
        nonce(Kind::PackHeader),
        &ad(Kind::PackHeader, None),
        plain,
    );
    let mut want = envelope::header(Kind::Pack).to_vec();
    want.extend_from_slice(&sealed_blob);
    want.extend_from_slice(&sealed_hdr);
    want.extend_from_slice(&(sealed_hdr.len() as u32).to_le_bytes());
    assert_eq!(hex::encode(file), hex::encode(&want));
    let blob_bytes = &file[8..8 + entry.length as usize];
    let opened = blob::open_blob(&k, BlobType::Data, &id, Compression::None, 12, blob_bytes);
    assert_eq!(opened.unwrap(), BLOB_PLAINTEXT);
    // The library's writer lays out the same pack (its nonces are random).
    let mut pb = pack::PackBuilder::with_capacity(4096).unwrap();
    pb.add(&blob::seal_blob(&k, BlobType::Data, id, BLOB_PLAINTEXT, 3).unwrap())
        .unwrap();
    let (pid, bytes, entries) = pb.finish(&k).unwrap();
    assert_eq!(entries, vec![entry]);
    assert_eq!(bytes.len(), file.len());
    assert_eq!(bytes[..8], file[..8]);
    assert_eq!(bytes[bytes.len() - 4..], file[file.len() - 4..]);
    assert_eq!(pid, Id::of_file_bytes(&bytes));
    let hdr_at = 8 + entry.length as usize;
    assert_eq!(
        open_direct(
            &seq(0),
            &ad(Kind::PackHeader, None),
            &bytes[hdr_at..bytes.len() - 4]
        ),
        plain
    );
}

/// The spec's pack entry limit is the code's.
#[test]
fn golden_pack_entry_limit() {
    assert_eq!(pack::MAX_ENTRIES, 399_456);
    // The most entries whose sealed header (4 + 42n + 28 bytes) fits MAX_HEADER_LEN, and no more.
    const _: () = assert!(4 + 42 * pack::MAX_ENTRIES + 28 <= pack::MAX_HEADER_LEN);
    const _: () = assert!(4 + 42 * (pack::MAX_ENTRIES + 1) + 28 > pack::MAX_HEADER_LEN);
    let spec = spec_text();
    assert!(spec.contains("399,456") && !spec.contains("399,457"));
}

/// Values the generator of the spec's examples needs that only snap's primitives compute (run
/// with `--ignored --nocapture` when changing an example).
#[test]
#[ignore]
fn golden_print_values() {
    let k = master();
    println!("blob id: {}", k.blob_id(BLOB_PLAINTEXT).to_hex());
    println!("seed: {}", k.derive_u64("snap chunker gear seed"));
    println!(
        "kdf key: {}",
        hex::encode(golden_kdf_key(b"snap golden salt"))
    );
}
