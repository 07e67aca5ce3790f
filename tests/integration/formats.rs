//! proptest round trips for every on-disk encoding, and arbitrary bytes never panic a decoder.

use proptest::prelude::*;
use snap::blob::{BlobType, Compression};
use snap::chunker::ChunkerParams;
use snap::config::Config;
use snap::crypto::MasterKey;
use snap::id::Id;
use snap::keyfile::KeyFile;
use snap::pack::{self, PackEntry};
use snap::snapshot::{BackupKind, Snapshot, SourceError, Summary};
use snap::tree::{Extent, Node, NodeKind, Tree, Xattr};

fn key() -> MasterKey {
    MasterKey::from_parts([7; 32], [9; 32])
}

fn id() -> impl Strategy<Value = Id> {
    any::<[u8; 32]>().prop_map(Id)
}

fn kind() -> impl Strategy<Value = NodeKind> {
    prop_oneof![
        Just(NodeKind::File),
        Just(NodeKind::Dir),
        Just(NodeKind::Symlink),
        Just(NodeKind::Fifo),
        Just(NodeKind::Chardev),
        Just(NodeKind::Blockdev),
        Just(NodeKind::Socket)
    ]
}

fn node() -> impl Strategy<Value = Node> {
    (
        proptest::collection::vec(1u8..=255, 1..40),
        kind(),
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<i64>(),
            any::<i64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
        ),
        proptest::collection::vec((proptest::option::of(id()), 0u64..1 << 40), 0..5),
        id(),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..30)),
        proptest::collection::vec(
            (
                proptest::collection::vec(any::<u8>(), 1..10),
                proptest::collection::vec(any::<u8>(), 0..10),
            ),
            0..3,
        ),
    )
        .prop_map(
            |(
                name,
                kind,
                (mode, uid, gid, mtime, ctime, inode, dev, rdev),
                ext,
                sub,
                target,
                xattrs,
            )| {
                let name: Vec<u8> = name
                    .into_iter()
                    .map(|b| if b == b'/' { b'x' } else { b })
                    .collect();
                let content: Vec<Extent> = if kind == NodeKind::File {
                    ext.into_iter().map(|(i, l)| Extent(i, l)).collect()
                } else {
                    vec![]
                };
                Node {
                    name,
                    kind,
                    mode,
                    uid,
                    gid,
                    size: content.iter().map(|e| e.1).sum(),
                    mtime,
                    ctime,
                    inode,
                    dev,
                    nlink: 1,
                    rdev,
                    target: if kind == NodeKind::Symlink {
                        Some(target.unwrap_or_default())
                    } else {
                        None
                    },
                    content,
                    subtree: if kind == NodeKind::Dir {
                        Some(sub)
                    } else {
                        None
                    },
                    xattrs: xattrs.into_iter().map(|(a, b)| Xattr(a, b)).collect(),
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn tree_round_trip(nodes in proptest::collection::vec(node(), 0..20)) {
        let mut nodes = nodes;
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        nodes.dedup_by(|a, b| a.name == b.name);
        nodes.retain(|n| n.name != b"." && n.name != b"..");
        let t = Tree { nodes };
        prop_assert_eq!(Tree::decode(&t.encode()).unwrap(), t);
    }

    #[test]
    fn pack_header_round_trip(entries in proptest::collection::vec((id(), any::<bool>(), any::<bool>(), 28u32..1_000_000, any::<u32>()), 0..50)) {
        let mut off = 8u32;
        let es: Vec<PackEntry> = entries.into_iter().map(|(id, t, c, len, raw)| {
            // Lengths a writer can produce: stored raw, sealed = raw + 28; compressed, smaller.
            let raw = if c { len - 28 + 1 + raw % 1_000_000 } else { len - 28 };
            let e = PackEntry { btype: if t { BlobType::Tree } else { BlobType::Data }, compression: if c { Compression::Zstd } else { Compression::None }, offset: off, length: len, raw_len: raw, id };
            off += len;
            e
        }).collect();
        let plain = pack::encode_entries(&es);
        let hdr_len = 100u64;
        prop_assert_eq!(pack::decode_entries(&plain, off as u64 + hdr_len + 4, hdr_len).unwrap(), es);
    }

    #[test]
    fn snapshot_round_trip(host in ".{0,20}", paths in proptest::collection::vec(".{0,30}", 0..4), tags in proptest::collection::vec("[a-z]{0,8}", 0..3), tree in id(), parent in proptest::option::of(id()), n in any::<u64>(), errs in proptest::collection::vec((".{0,10}", ".{0,10}"), 0..3)) {
        let s = Snapshot {
            time: "2026-11-25T10:00:00.123456789+00:00".into(), time_end: "2026-11-25T10:00:01+00:00".into(),
            host, user: "root".into(), paths, tags, kind: BackupKind::Differential, parent, tree,
            incomplete: !errs.is_empty(), errors: errs.into_iter().map(|(path, message)| SourceError { path, message }).collect(),
            summary: Summary { files_new: n, bytes_added: n / 3, ..Summary::default() }, program: "snap test".into(), mysql: if n % 2 == 0 { None } else { Some(snap::snapshot::MysqlSummary { source: "db:3306".into(), server: "MariaDB 10.11".into(), binlog_position: Some(n), lock_ms: 1.5, tables: n, ..Default::default() }) }, binlog: None,
            original: parent.map(|p| Id([p.0[0] ^ 1; 32])),
        };
        let k = key();
        prop_assert_eq!(Snapshot::decode(&k, &s.encode(&k).unwrap()).unwrap(), s);
    }

    #[test]
    fn config_round_trip(min_k in 64u32..256, level in 0i32..20, pack_mib in 1u32..64, seed in any::<u64>(), rid in id()) {
        let k = key();
        let c = Config { version: 1, id: rid, chunker: ChunkerParams { min: min_k * 1024, avg: min_k * 4096, max: min_k * 16384, seed }, db_chunker: if level % 2 == 0 { Some(ChunkerParams::db_default_with_seed(seed)) } else { None }, compression: level, pack_size: pack_mib << 20, created: "now".into() };
        prop_assert_eq!(Config::decode(&k, &c.encode(&k).unwrap()).unwrap(), c);
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let k = key();
        let _ = Tree::decode(&bytes);
        let _ = KeyFile::decode(&bytes);
        let _ = Config::decode_plain(&bytes);
        let _ = Snapshot::decode_plain(&bytes);
        let _ = pack::decode_entries(&bytes, 10_000, 100);
        let _ = pack::read_whole(&k, &bytes);
        let _ = snap::envelope::open_file(&k, snap::envelope::Kind::Snapshot, &bytes);
    }
}

#[test]
fn key_file_round_trip_and_version_check() {
    let m = key();
    let kf = KeyFile::create(&m, b"pw", snap::keyfile::MIN_MEMORY_KIB, 1).unwrap();
    let bytes = kf.encode();
    let back = KeyFile::decode(&bytes).unwrap();
    assert_eq!(back, kf);
    assert_eq!(back.open(b"pw").unwrap().blob_id(b"x"), m.blob_id(b"x"));
    let mut newer = bytes.clone();
    newer[5] = 2;
    let e = KeyFile::decode(&newer).unwrap_err().to_string();
    assert!(e.contains("version 2") && e.contains("upgrade snap"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Prune records round-trip, and arbitrary bytes never panic their decoder.
    #[test]
    fn prune_record_round_trip(
        generation in any::<u64>(),
        host in ".{0,20}",
        marked in proptest::collection::vec((id(), any::<u64>(), any::<i64>()), 0..20),
        deleted in proptest::collection::vec((id(), any::<i64>()), 0..20),
        junk in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        use snap::prunefile::{DeletedPack, MarkedPack, PruneRecord};
        let rec = PruneRecord {
            generation,
            time: "2026-12-01T00:00:00+00:00".into(),
            host,
            marked: marked.into_iter().map(|(pack, size, marked_at)| MarkedPack { pack, size, marked_at }).collect(),
            deleted: deleted.into_iter().map(|(pack, deleted_at)| DeletedPack { pack, deleted_at }).collect(),
        };
        let k = key();
        let bytes = rec.encode(&k).unwrap();
        prop_assert_eq!(PruneRecord::decode(&k, &bytes).unwrap(), rec);
        let _ = PruneRecord::decode(&k, &junk);
        let _ = snap::cbor::read::<PruneRecord>(&junk);
    }
}
