//! Untrusted numbers: values read from source files, arguments and repository bytes are
//! checked or clamped, never wrapped into something else; new key files respect the argon2 floor.

use std::path::Path;

use crate::common::*;
use snap::tree::{Extent, Node, NodeKind, Tree};

/// 2300-01-01T00:00:00Z, after the last instant i64 nanoseconds can hold (2262-04-11).
const YEAR_2300: i64 = 10_413_792_000;

fn set_mtime(p: &Path, secs: i64) {
    filetime::set_symlink_file_times(
        p,
        filetime::FileTime::from_unix_time(secs, 0),
        filetime::FileTime::from_unix_time(secs, 0),
    )
    .unwrap();
    use std::os::unix::fs::MetadataExt;
    let got = std::fs::symlink_metadata(p).unwrap().mtime();
    assert_eq!(got, secs, "the scratch file system cannot store this mtime");
}

#[test]
fn untrusted_mtime_after_2262_is_clamped_and_reported() {
    let env = Env::new(&[]);
    let src = env.path("src");
    write(&src.join("future.txt"), b"from the future");
    write(&src.join("now.txt"), b"ordinary");
    set_mtime(&src.join("future.txt"), YEAR_2300);
    let o = env.run(&["--json", "backup", src.to_str().unwrap()]);
    assert_no_panic(&o);
    assert_eq!(code(&o), 3, "reported, not silent: {}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let errors = v["snapshot"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{v}");
    assert!(errors[0]["path"].as_str().unwrap().ends_with("future.txt"));
    let msg = errors[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("2262") && msg.contains("modification time"),
        "{msg}"
    );
    // The file is still backed up, with the clamped time (not a wrapped date in 1715).
    let file = src.join("future.txt");
    // `ls --json` prints one object per line.
    let ls = env.ok(&["--json", "ls", "latest", src.to_str().unwrap()]);
    let node: serde_json::Value = ls
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|n| n["path"].as_str().unwrap_or("").ends_with("future.txt"))
        .unwrap_or_else(|| panic!("{ls}"));
    assert_eq!(node["mtime_ns"], i64::MAX, "{node}");
    assert_eq!(
        env.ok(&["cat", "latest", file.to_str().unwrap()]),
        "from the future"
    );
    // Change detection compares the same clamped values: the next backup reads nothing again.
    let o = env.run(&["--json", "backup", src.to_str().unwrap()]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["snapshot"]["summary"]["files_unmodified"], 2, "{v}");
}

#[test]
fn untrusted_pack_size_that_would_wrap_is_a_usage_error() {
    for bad in ["4097", "0", "1025"] {
        let env = Env::uninit();
        let o = env.run(&["init", "--kdf-memory-kib", "19456", "--pack-size-mib", bad]);
        assert_no_panic(&o);
        assert_eq!(code(&o), 2, "--pack-size-mib {bad}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("1..=1024"),
            "names the range: {}",
            stderr(&o)
        );
        assert!(!env.repo.join("config").exists());
    }
    let env = Env::uninit();
    let o = env.run(&[
        "init",
        "--kdf-memory-kib",
        "19456",
        "--chunker-kib",
        "64,4194304,4194304",
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("too large"), "{}", stderr(&o));
    // The largest allowed value is the configured size, not a wrapped one.
    let env = Env::uninit();
    env.ok(&[
        "init",
        "--kdf-memory-kib",
        "19456",
        "--pack-size-mib",
        "1024",
    ]);
    let repo = env.open_lib();
    assert_eq!(repo.config().pack_size, 1024 * 1024 * 1024);
}

#[test]
fn untrusted_new_keys_below_the_argon2_floor_are_refused() {
    let env = Env::uninit();
    let o = env.run(&["init", "--kdf-memory-kib", "19455"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("19456"),
        "names the floor: {}",
        stderr(&o)
    );
    assert!(!env.repo.join("config").exists());
    let env = Env::new(&[]);
    for cmd in ["add", "passwd"] {
        let o = env
            .cmd(&["key", cmd, "--kdf-memory-kib", "1024"])
            .env("SNAP_NEW_PASSWORD", "second")
            .output()
            .unwrap();
        assert_eq!(code(&o), 2, "key {cmd}: {}", stderr(&o));
        assert!(stderr(&o).contains("19456"), "{}", stderr(&o));
    }
    assert_eq!(walk_files(&env.repo.join("keys")).len(), 1);
    // The library refuses too, whatever the caller.
    let e = snap::keyfile::KeyFile::create(env.open_lib().key(), b"pw", 8192, 3).unwrap_err();
    assert!(e.to_string().contains("below the floor"), "{e}");
}

/// A key file an earlier version wrote at 1 MiB still opens (refusing it would lock its owner
/// out); only new key files must reach the floor.
#[test]
fn untrusted_existing_key_below_the_floor_still_opens() {
    use aes_gcm_siv::aead::{AeadInOut, KeyInit};
    let env = Env::new(&[]);
    let master = env.open_lib().key().to_bytes();
    let salt = b"an old salt 16 b".to_vec();
    let mut k = [0u8; 32];
    argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(1024, 1, 1, Some(32)).unwrap(),
    )
    .hash_password_into(b"old password", &salt, &mut k)
    .unwrap();
    let mut ad = snap::envelope::header(snap::envelope::Kind::Key).to_vec();
    ad.extend_from_slice(&salt);
    let nonce = [7u8; 12];
    let mut sealed = nonce.to_vec();
    sealed.extend_from_slice(&master);
    let tag = aes_gcm_siv::Aes256GcmSiv::new(&k.into())
        .encrypt_inout_detached(&nonce.into(), &ad, (&mut sealed[12..]).into())
        .unwrap();
    sealed.extend_from_slice(tag.as_slice());
    let old = snap::keyfile::KeyFile {
        kdf: "argon2id".into(),
        memory_kib: 1024,
        iterations: 1,
        lanes: 1,
        salt,
        host: "old".into(),
        user: "old".into(),
        created: "2026-01-01T00:00:00+00:00".into(),
        sealed,
        append_only: false,
    };
    assert!(old.below_floor());
    let bytes = old.encode();
    let name = snap::id::Id::of_file_bytes(&bytes).to_hex();
    std::fs::write(env.repo.join("keys").join(name), bytes).unwrap();
    let o = env
        .cmd(&["snapshots"])
        .env("SNAP_PASSWORD", "old password")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

fn file_node(size: u64, content: Vec<Extent>) -> Node {
    let mut n = Node::synthetic(b"f", NodeKind::File, 0o100644, 0, 0, 0);
    n.size = size;
    n.content = content;
    n
}

#[test]
fn untrusted_extent_lengths_that_wrap_are_invalid() {
    // u64::MAX + 6 wraps to 5: the extents would cover 2^64 bytes of a "5-byte" file.
    let t = Tree {
        nodes: vec![file_node(5, vec![Extent(None, u64::MAX), Extent(None, 6)])],
    };
    let e = Tree::decode(&t.encode()).unwrap_err();
    assert!(e.contains("inconsistent"), "{e}");
    let ok = Tree {
        nodes: vec![file_node(
            u64::MAX,
            vec![Extent(None, u64::MAX - 1), Extent(None, 1)],
        )],
    };
    assert_eq!(Tree::decode(&ok.encode()).unwrap(), ok);
    assert_eq!(ok.nodes[0].data_bytes(), 0);
}

#[test]
fn untrusted_cbor_lengths_do_not_size_allocations() {
    // {"nodes": array of 2^64 − 1 elements}, then nothing: an error, not an allocation.
    let mut b = vec![0xa1, 0x65];
    b.extend_from_slice(b"nodes");
    b.push(0x9b);
    b.extend_from_slice(&[0xff; 8]);
    assert!(Tree::decode(&b).is_err());
    // A node name claiming 2^63 bytes.
    let mut b = vec![0xa1, 0x65];
    b.extend_from_slice(b"nodes");
    b.extend_from_slice(&[0x81, 0xa1, 0x64]);
    b.extend_from_slice(b"name");
    b.push(0x5b);
    b.extend_from_slice(&(1u64 << 63).to_be_bytes());
    assert!(Tree::decode(&b).is_err());
    assert!(
        snap::keyfile::KeyFile::decode(&{
            let mut k = snap::envelope::header(snap::envelope::Kind::Key).to_vec();
            k.extend_from_slice(&[0xa1, 0x64]);
            k.extend_from_slice(b"salt");
            k.push(0x5b);
            k.extend_from_slice(&u64::MAX.to_be_bytes());
            k
        })
        .is_err()
    );
}
