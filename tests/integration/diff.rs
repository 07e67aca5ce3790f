//! `snap diff`: every kind of change between two real backups is reported with restic's codes,
//! and identical subtrees are skipped unread.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::common::*;

#[test]
fn diff_reports_added_removed_modified_type_and_metadata_changes() {
    let env = Env::new(&[]);
    let src = env.path("src");
    write(&src.join("keep/same.txt"), b"unchanged\n");
    write(&src.join("edit.txt"), b"before\n");
    write(&src.join("gone.txt"), b"removed later\n");
    write(&src.join("gone-dir/inner.txt"), b"x\n");
    write(&src.join("becomes-dir"), b"a file first\n");
    write(&src.join("chmod.txt"), b"mode changes\n");
    env.backup(&[src.to_str().unwrap()]);
    let first = env.json(&["snapshots"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    write(&src.join("edit.txt"), b"after, and longer\n");
    fs::remove_file(src.join("gone.txt")).unwrap();
    fs::remove_dir_all(src.join("gone-dir")).unwrap();
    fs::remove_file(src.join("becomes-dir")).unwrap();
    write(&src.join("becomes-dir/child"), b"now a directory\n");
    write(&src.join("new/deep/file.bin"), &random_bytes(5, 1000));
    fs::set_permissions(src.join("chmod.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    env.backup(&[src.to_str().unwrap()]);

    let s = src.display().to_string();
    let out = env.json(&["diff", &format!("{first}:{s}"), &format!("latest:{s}")]);
    let got: BTreeMap<String, String> = out["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap().to_string(),
                c["change"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // The expectation, written from what the test did (not from snap's output); only the
    // snapshot root's directory had entries change, and the root is not a path of its own.
    let want: BTreeMap<String, String> = [
        ("/edit.txt", "M"),
        ("/gone.txt", "-"),
        ("/gone-dir", "-"),
        ("/gone-dir/inner.txt", "-"),
        ("/becomes-dir", "T"),
        ("/becomes-dir/child", "+"),
        ("/new", "+"),
        ("/new/deep", "+"),
        ("/new/deep/file.bin", "+"),
        ("/chmod.txt", "U"),
    ]
    .into_iter()
    .map(|(p, c)| (p.to_string(), c.to_string()))
    .collect();
    assert_eq!(got, want, "{out:#}");
    assert_eq!(out["stats"]["added"], 4);
    assert_eq!(out["stats"]["removed"], 3);
    assert!(
        out["stats"]["identical_subtrees"].as_u64().unwrap() >= 1,
        "keep/ skipped: {out}"
    );
    let chmod = out["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == "/chmod.txt")
        .unwrap();
    assert_eq!(chmod["what"][0], "mode");

    // Text output: one line per change with its code, then a summary.
    let text = env.ok(&["diff", &format!("{first}:{s}"), &format!("latest:{s}")]);
    assert!(text.contains("M    /edit.txt"), "{text}");
    assert!(text.contains("+    /new/"), "{text}");
    assert!(
        text.contains("4 added, 3 removed, 1 modified, 1 type changed"),
        "{text}"
    );

    // A snapshot against itself: nothing.
    let same = env.json(&["diff", "latest", "latest"]);
    assert_eq!(same["changes"].as_array().unwrap().len(), 0);
    // A file is not a tree: a usage error.
    let o = env.run(&["diff", &format!("latest:{s}/edit.txt"), "latest"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("is not a directory"), "{}", stderr(&o));
}
