//! The index is a cache: deleted, it is rebuilt from pack headers; stale (another writer with
//! its own cache added packs), it catches up; either way restores stay correct.

use crate::common::*;

#[test]
fn index_is_rebuilt_when_missing_and_catches_up_with_other_writers() {
    let env = Env::new(&[]);
    let src = env.path("src");
    write(&src.join("one"), &random_bytes(1, 1_500_000));
    let s = src.to_str().unwrap();
    env.backup(&[s]);
    std::fs::remove_dir_all(&env.cache).unwrap();
    let o = env.run(&["snapshots"]);
    assert!(o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("rebuilding it from pack headers"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // After the rebuild, a second backup deduplicates against everything.
    let again = env.backup(&[s, "--full"]);
    // Only trees can be new (directory times along the path changed); no data blob is.
    let raw = again["snapshot"]["summary"]["bytes_added_raw"]
        .as_u64()
        .unwrap();
    assert!(raw < 10_000, "{again}");

    // Another machine (another cache directory) adds data.
    write(&src.join("two"), &random_bytes(2, 1_500_000));
    let other_cache = env.path("other-cache");
    let o = env
        .cmd(&["--json", "backup", s])
        .env("SNAP_CACHE_DIR", &other_cache)
        .output()
        .unwrap();
    assert!(o.status.success());
    // Our cache has never seen those packs: it notices and catches up, then restores them.
    let target = env.path("restore");
    let o = env.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("caught up"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
    env.ok(&["check", "--read-data"]);
}

#[test]
fn repair_index_rebuilds_from_pack_headers_alone() {
    let env = Env::new(&[]);
    let src = env.path("src");
    write(&src.join("a"), &random_bytes(5, 800_000));
    write(&src.join("b/c"), b"small");
    env.backup(&[src.to_str().unwrap()]);
    let packs = env.pack_files().len() as u64;
    let out = env.json(&["repair", "index"]);
    assert_eq!(out["packs"].as_u64().unwrap(), packs, "{out}");
    let target = env.path("restore");
    env.ok(&[
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--verify",
    ]);
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
}
